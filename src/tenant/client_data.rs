//! A client's data beside its files (SPEC §11): the logical dumps of its running databases,
//! streamed into its repository as one file per service (`db-<service>.sql`), one snapshot
//! set per run (tag `set=<id>` on the dumps and on the files snapshot); what each dump held
//! (bytes, SHA-256, tables per database) recorded in `backup/dumps.json` for verify-backup;
//! restores of a dump into the running database and of the named volumes into the client's
//! volumes.
//!
//! Dump snapshots carry the tags `dump`, `service=<name>`, `engine=<engine>`,
//! `image=<image>` and `set=<id>`, not the files' BACKUP_TAGS: retention keeps the files and
//! each service's dumps by the same policy, apart.

use std::{collections::BTreeMap, path::PathBuf, time::Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::{
    drivers::{
        docker::{Docker, LABEL_SERVICE},
        restic::{BackupSnapshot, Repo, Retention},
    },
    effects::Outcome,
    tenant::{
        backup::{self, BackupConfig, CLIENT_LABEL},
        context::Context,
        databases::{DumpReader, Engine, LABEL_DB, LABEL_DB_ADMIN, LABEL_DB_DATA, ROOT_PASSWORD_KEY},
        layout::ClientLayout,
        repository, secrets,
    },
};

/// The tag every dump snapshot carries.
pub const DUMP_TAG: &str = "dump";
/// How many dumps `backup/dumps.json` remembers.
const RECORDS_KEPT: usize = 200;

/// A running database container of the client.
#[derive(Debug, Clone)]
pub struct Database {
    pub container: String,
    pub service: String,
    pub engine: Engine,
    pub image: String,
    pub admin: String,
    /// Host paths of its data directory inside the client's volumes (left out of the files
    /// backup: the dump is the consistent copy).
    pub data_paths: Vec<PathBuf>,
}

impl Database {
    /// The dump's file name in the repository.
    pub fn file_name(&self) -> String {
        format!("db-{}.sql", self.service)
    }
}

/// What one dump held, as backup recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DumpRecord {
    pub snapshot: String,
    pub set: String,
    pub service: String,
    pub engine: String,
    pub image: String,
    pub bytes: u64,
    pub sha256: String,
    pub tables: BTreeMap<String, u64>,
    pub seconds: f64,
}

/// The client's running databases, and the names of database containers that are not
/// running (their volumes are backed up as files, as they are consistent at rest).
pub fn databases(docker: &Docker, id: &str) -> Result<(Vec<Database>, Vec<String>)> {
    // Every stack container carries its service's name; asking for the label returns it.
    let filter = [
        (CLIENT_LABEL.to_string(), id.to_string()),
        (LABEL_DB.to_string(), String::new()),
        (LABEL_SERVICE.to_string(), String::new()),
    ];
    // Two independent reads of the engine, each mostly the docker CLI's own start-up: at once.
    let (containers, volumes) = std::thread::scope(|scope| {
        let volumes = scope.spawn(|| backup::client_volumes(id));
        let containers = docker.list_containers_with_labels(&filter);
        (containers, volumes.join().expect("listing volumes panicked"))
    });
    let (containers, volumes) = (containers?, volumes?.unwrap_or_default());
    let (mut running, mut stopped) = (Vec::new(), Vec::new());
    for container in containers.into_iter().filter(|c| c.label(CLIENT_LABEL) == Some(id)) {
        let label = container.label(LABEL_DB).unwrap_or_default();
        let Some(engine) = Engine::from_label(label) else {
            bail!("container {} has {LABEL_DB}={label:?}; mariadb, mysql, postgres or postgresql", container.name);
        };
        if container.state != "running" {
            stopped.push(container.name.clone());
            continue;
        }
        let (image, mounts) = docker.image_and_mounts(&container.name)?;
        let data_dir = PathBuf::from(container.label(LABEL_DB_DATA).unwrap_or(engine.default_data_dir()));
        let mut data_paths = Vec::new();
        for mount in mounts.iter().filter(|m| m.kind == "volume") {
            let Some(volume) = volumes.iter().find(|v| v.name == mount.name) else { continue };
            let destination = PathBuf::from(&mount.destination);
            if let Ok(inside) = data_dir.strip_prefix(&destination) {
                data_paths.push(volume.mountpoint.join(inside));
            } else if destination.starts_with(&data_dir) {
                data_paths.push(volume.mountpoint.clone());
            }
        }
        let service = container.label(LABEL_SERVICE).unwrap_or(&container.name).to_string();
        running.push(Database {
            admin: engine.admin(container.label(LABEL_DB_ADMIN))?,
            container: container.name,
            service,
            engine,
            image,
            data_paths,
        });
    }
    running.sort_by(|a, b| a.service.cmp(&b.service));
    Ok((running, stopped))
}

/// The database superuser's password from secrets.env (never shown anywhere).
pub fn root_password(layout: &ClientLayout) -> Result<String> {
    let values = secrets::read(&layout.secrets_file)?;
    values.get(ROOT_PASSWORD_KEY).cloned().filter(|v| !v.is_empty()).ok_or_else(|| {
        anyhow!(
            "{} holds no {ROOT_PASSWORD_KEY}, the password of the client's databases",
            layout.secrets_file.display()
        )
    })
}

/// A new snapshot set's id: the time of the run and a random suffix.
pub fn new_set_id() -> Result<String> {
    let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let stamp: String = time.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let suffix: String = secrets::generate()?.chars().filter(|c| c.is_ascii_alphanumeric()).take(6).collect();
    Ok(format!("{stamp}-{}", suffix.to_lowercase()))
}

fn records_path(layout: &ClientLayout) -> PathBuf {
    layout.backup_dir.join("dumps.json")
}

/// The dumps backup recorded, oldest first.
pub fn records(layout: &ClientLayout) -> Result<Vec<DumpRecord>> {
    let path = records_path(layout);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("{} is not a list of dumps", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn append_record(layout: &ClientLayout, record: DumpRecord) -> Result<()> {
    let mut all = records(layout)?;
    all.push(record);
    let excess = all.len().saturating_sub(RECORDS_KEPT);
    all.drain(..excess);
    let text = serde_json::to_string_pretty(&all)? + "\n";
    crate::fsutil::write_atomic(&records_path(layout), text.as_bytes(), backup::CONFIG_MODE)
        .with_context(|| format!("cannot write {}", records_path(layout).display()))
}

/// `key=value` of a snapshot's tags.
pub fn tag_value<'a>(snapshot: &'a BackupSnapshot, key: &str) -> Option<&'a str> {
    snapshot.tags.iter().find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
}

/// `db:wordpress=12,other=0` for log lines.
pub fn tables_text(tables: &BTreeMap<String, u64>) -> String {
    tables.iter().map(|(db, n)| format!("{db}:{n}")).collect::<Vec<_>>().join(",")
}

/// The outcome of one service's dump.
#[derive(Debug, Clone)]
pub struct DumpResult {
    pub database: Database,
    /// `None` in a dry run.
    pub record: Option<DumpRecord>,
}

/// Dumps every running database of the client into its repository, tagged with `set` and
/// `extra_tags`; each dump is a step of its own, with a backup.log line. The first failure
/// is returned after the others ran.
pub fn backup_databases(cx: &Context, id: &str, set: &str, extra_tags: &[String]) -> Result<Vec<DumpResult>> {
    let (layout, config) = repository::setup(cx, id)?;
    let Ok(docker) = Docker::locate() else { return Ok(Vec::new()) };
    let (found, stopped) = databases(&docker, id)?;
    for name in stopped {
        cx.output.warn(&format!("{name} is not running: not dumped, its volume is backed up as files"));
    }
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let password = root_password(&layout)?;
    repository::recover(cx, &layout, &config)?;
    let mut results = Vec::new();
    let mut first_error = None;
    for database in found {
        let mut tags: Vec<String> = vec![
            DUMP_TAG.into(),
            format!("service={}", database.service),
            format!("engine={}", database.engine.as_str()),
            format!("image={}", database.image),
            format!("set={set}"),
        ];
        tags.extend(extra_tags.iter().filter(|t| !tags.contains(t)).cloned().collect::<Vec<_>>());
        let detail = format!(
            "{} ({}, {}) streamed into the repository",
            database.file_name(),
            database.engine.as_str(),
            database.image
        );
        let mut record = None;
        let applied = cx.effects.apply("database dump", &database.container, &detail, Outcome::Created, || {
            let result = dump_one(&layout, &config, &docker, &database, &password, set, &tags);
            let line = match &result {
                Ok(r) => format!(
                    "dump ok service={} engine={} snapshot={} bytes={} sha256={} seconds={:.1} tables={}",
                    r.service,
                    r.engine,
                    r.snapshot,
                    r.bytes,
                    r.sha256,
                    r.seconds,
                    tables_text(&r.tables)
                ),
                Err(e) => format!(
                    "dump failed service={} error={:?}",
                    database.service,
                    format!("{e:#}").replace(['\n', '\r'], " ")
                ),
            };
            if let Err(e) = backup::log_result(&layout, &line) {
                cx.output.warn(&format!("could not append to the backup.log of {id}: {e}"));
            }
            record = Some(result?);
            Ok(())
        });
        if let Err(error) = applied {
            first_error.get_or_insert(error);
        }
        results.push(DumpResult { database, record });
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(results),
    }
}

fn dump_one(
    layout: &ClientLayout,
    config: &BackupConfig,
    docker: &Docker,
    database: &Database,
    password: &str,
    set: &str,
    tags: &[String],
) -> Result<DumpRecord> {
    let repo = backup::repo(&repository::locate()?, layout, config)?;
    let argv = database.engine.dump_argv(&database.admin);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let source =
        docker.exec_command(&database.container, &argv, &[(database.engine.password_variable(), password)], false)?;
    let mut reader = DumpReader::new(database.engine);
    let started = Instant::now();
    let source_name = format!("the {} dump in {}", database.engine.as_str(), database.container);
    let streamed =
        repo.backup_stream(source, &source_name, &database.file_name(), tags, &mut |chunk| reader.feed(chunk))?;
    let (sha256, tables) = reader.finish();
    let record = DumpRecord {
        snapshot: streamed.summary.snapshot_id.clone(),
        set: set.to_string(),
        service: database.service.clone(),
        engine: database.engine.as_str().into(),
        image: database.image.clone(),
        bytes: streamed.bytes,
        sha256,
        tables,
        seconds: started.elapsed().as_secs_f64(),
    };
    append_record(layout, record.clone())?;
    Ok(record)
}

/// The retention policies of the client's dumps: the files' rules, per service.
pub fn dump_retention(config: &BackupConfig, snapshots: &[BackupSnapshot]) -> Vec<Retention> {
    let mut services: Vec<&str> = snapshots
        .iter()
        .filter(|s| s.tags.iter().any(|t| t == DUMP_TAG))
        .filter_map(|s| tag_value(s, "service"))
        .collect();
    services.sort();
    services.dedup();
    services
        .into_iter()
        .map(|service| Retention {
            tags: vec![DUMP_TAG.into(), format!("service={service}")],
            ..config.retention.clone()
        })
        .collect()
}

/// The dump of `service` to restore: the newest, or the one of the set `chosen` belongs to
/// (`chosen` may be the set's files snapshot or any of its dumps).
pub fn dump_of<'a>(
    snapshots: &'a [BackupSnapshot],
    service: &str,
    chosen: Option<&BackupSnapshot>,
) -> Option<&'a BackupSnapshot> {
    let set = chosen.map(|c| tag_value(c, "set"));
    snapshots
        .iter()
        .filter(|s| s.tags.iter().any(|t| t == DUMP_TAG) && tag_value(s, "service") == Some(service))
        .filter(|s| match set {
            None => true,
            Some(set) => set.is_some() && tag_value(s, "set") == set,
        })
        .max_by_key(|s| s.system_time().ok())
}

/// The tables per user database of a running server (a read: one `docker exec`).
pub fn table_counts(
    docker: &Docker,
    container: &str,
    engine: Engine,
    admin: &str,
    password: &str,
) -> Result<BTreeMap<String, u64>> {
    let argv = engine.tables_argv(admin);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = docker.exec(container, &argv, &[(engine.password_variable(), password)], None, &[password])?;
    crate::tenant::databases::parse_table_counts(&out)
}

/// A database server to log in to: its container, engine and superuser.
#[derive(Debug, Clone, Copy)]
pub struct Server<'a> {
    pub docker: &'a Docker,
    pub container: &'a str,
    pub engine: Engine,
    pub admin: &'a str,
    pub password: &'a str,
}

/// Loads the dump `snapshot` holds (`file_name`) into `server` (the database's own, or a
/// throwaway of its image): what the stream held, after the server's errors were judged.
pub fn load_dump(
    repo: &Repo,
    snapshot: &BackupSnapshot,
    file_name: &str,
    server: Server,
    replace: bool,
) -> Result<(String, BTreeMap<String, u64>)> {
    let Server { docker, container, engine, admin, password } = server;
    let argv = engine.load_argv(admin, replace);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let sink = docker.exec_command(container, &argv, &[(engine.password_variable(), password)], true)?;
    let mut reader = DumpReader::new(engine);
    let output = repo.dump_into(&snapshot.id, file_name, sink, &mut |chunk| reader.feed(chunk))?;
    let errors = engine.load_errors(&output.sink.stderr);
    if !output.sink.success() || !errors.is_empty() {
        let line = errors.first().map(String::as_str).unwrap_or_else(|| output.sink.first_error_line());
        bail!(
            "loading {file_name} of snapshot {} into {container} failed (exit {}): {}",
            snapshot.short_id,
            output.sink.code,
            crate::drivers::docker::redact(line, password)
        );
    }
    Ok(reader.finish())
}

/// How long a server may take to accept logins (a throwaway's first start initializes it).
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// Waits until the server in `container` accepts the admin's login.
pub fn wait_ready(docker: &Docker, container: &str, engine: Engine, admin: &str, password: &str) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match table_counts(docker, container, engine, admin, password) {
            Ok(_) => return Ok(()),
            Err(error) if Instant::now() > deadline => {
                return Err(error.context(format!("the database server in {container} did not accept logins")));
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(500)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme(dir: &std::path::Path) -> ClientLayout {
        let roots = crate::tenant::layout::Roots {
            root: dir.join("root"),
            log_root: dir.join("log"),
            backup_root: dir.join("backup"),
            logrotate_dir: dir.join("lr"),
            repository_base: String::new(),
        };
        ClientLayout::new(&roots, "acme").unwrap()
    }

    fn snapshot(id: &str, time: &str, tags: &[&str]) -> BackupSnapshot {
        serde_json::from_value(serde_json::json!({
            "id": format!("{id}{}", "0".repeat(60)), "short_id": id, "time": time, "tags": tags,
        }))
        .unwrap()
    }

    #[test]
    fn a_set_picks_its_own_dump_and_retention_keeps_each_service_apart() {
        let snapshots = [
            snapshot("a1", "2026-12-01T02:00:00Z", &["dump", "service=db", "set=s1"]),
            snapshot("a2", "2026-12-01T02:00:05Z", &["agency", "client-acme", "set=s1"]),
            snapshot("b1", "2026-12-02T02:00:00Z", &["dump", "service=db", "set=s2"]),
            snapshot("c1", "2026-12-02T02:00:01Z", &["dump", "service=pg", "set=s2"]),
            snapshot("b2", "2026-12-02T02:00:05Z", &["agency", "client-acme", "set=s2"]),
            snapshot("m1", "2026-12-03T02:00:00Z", &["agency", "client-acme"]),
        ];
        assert_eq!(dump_of(&snapshots, "db", None).unwrap().short_id, "b1");
        assert_eq!(dump_of(&snapshots, "db", Some(&snapshots[1])).unwrap().short_id, "a1");
        assert_eq!(dump_of(&snapshots, "pg", Some(&snapshots[1])), None, "set s1 has no dump of pg");
        // A snapshot of no set (made outside backup-client) names no dump.
        assert_eq!(dump_of(&snapshots, "db", Some(&snapshots[5])), None);

        let dir = tempfile::tempdir().unwrap();
        let layout = acme(dir.path());
        let config = BackupConfig::load(&layout).unwrap();
        let policies = dump_retention(&config, &snapshots);
        let tags: Vec<Vec<String>> = policies.iter().map(|p| p.tags.clone()).collect();
        assert_eq!(tags, [["dump", "service=db"], ["dump", "service=pg"]]);
        assert!(policies.iter().all(|p| p.keep_daily == config.retention.keep_daily));
        // The files' policy asks for tags no dump carries.
        assert!(snapshots[0].tags.iter().all(|t| !config.retention.tags.contains(t)));
    }

    #[test]
    fn records_are_kept_atomically_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let layout = acme(dir.path());
        std::fs::create_dir_all(&layout.backup_dir).unwrap();
        assert!(records(&layout).unwrap().is_empty());
        for n in 0..RECORDS_KEPT + 3 {
            let record = DumpRecord {
                snapshot: format!("{n:08x}"),
                set: "s".into(),
                service: "db".into(),
                engine: "mariadb".into(),
                image: "i".into(),
                bytes: n as u64,
                sha256: String::new(),
                tables: BTreeMap::from([("wordpress".into(), 12)]),
                seconds: 0.5,
            };
            append_record(&layout, record).unwrap();
        }
        let kept = records(&layout).unwrap();
        assert_eq!(kept.len(), RECORDS_KEPT);
        assert_eq!(kept[0].bytes, 3, "the oldest go first");
        assert_eq!(crate::fsutil::mode(&records_path(&layout)), Some(backup::CONFIG_MODE));
        assert_eq!(tables_text(&kept[0].tables), "wordpress:12");
    }
}
