//! restore-client in place (SPEC §11): the dumps into the client's running databases (a
//! server holding tables is refused without FORCE, which replaces its databases), and the
//! named volumes' files into the client's volumes (refused while any container of the client
//! runs: a live service would write between the files). Every check runs before any change.

use anyhow::{Result, bail};

use crate::{
    drivers::{
        docker::Docker,
        restic::{BackupSnapshot, Repo},
    },
    effects::Outcome,
    tenant::{
        backup::{self, CLIENT_LABEL},
        client_data::{self, DUMP_TAG, Database, tables_text},
        context::Context,
        databases,
        layout::ClientLayout,
        repository,
    },
};

/// One database restored (or planned).
#[derive(Debug, Clone)]
pub struct RestoredDump {
    pub service: String,
    pub container: String,
    pub snapshot: String,
    pub tables: String,
    /// A dry run's: nothing was restored.
    pub planned: bool,
}

/// The named volumes restored (or planned) from one files snapshot.
#[derive(Debug, Clone)]
pub struct RestoredVolumes {
    pub snapshot: String,
    pub volumes: Vec<String>,
    /// A dry run's: nothing was restored.
    pub planned: bool,
}

/// The snapshot an operator named (`latest` or an id prefix), or `None` for the newest.
fn chosen<'a>(snapshots: &'a [BackupSnapshot], id: &str, wanted: &str) -> Result<Option<&'a BackupSnapshot>> {
    if wanted.is_empty() || wanted == "latest" {
        return Ok(None);
    }
    let matching: Vec<&BackupSnapshot> = snapshots.iter().filter(|s| s.id.starts_with(wanted)).collect();
    match matching.as_slice() {
        [one] => Ok(Some(one)),
        [] => bail!("snapshot {wanted} is not in the repository of {id}"),
        _ => bail!("snapshot prefix {wanted} matches {} snapshots of {id}; give more digits", matching.len()),
    }
}

fn open(cx: &Context, id: &str) -> Result<(ClientLayout, Repo, Vec<BackupSnapshot>)> {
    let (layout, config) = repository::setup(cx, id)?;
    repository::recover(cx, &layout, &config)?;
    let repo = backup::repo(&repository::locate()?, &layout, &config)?;
    let snapshots = repo.snapshots(&[])?;
    Ok((layout, repo, snapshots))
}

/// The dumps of `snapshot` (or the newest) into the client's running databases.
pub fn restore_databases(cx: &Context, id: &str, snapshot: &str, force: bool) -> Result<Vec<RestoredDump>> {
    let docker = Docker::locate()?;
    let (found, stopped) = client_data::databases(&docker, id)?;
    if found.is_empty() {
        let why = if stopped.is_empty() {
            "no database service".to_string()
        } else {
            format!("{} not running", stopped.join(", "))
        };
        bail!("client {id} has no running database to restore into ({why}); deploy-client first");
    }
    let (layout, repo, snapshots) = open(cx, id)?;
    let chosen = chosen(&snapshots, id, snapshot)?;
    let password = client_data::root_password(&layout)?;
    let mut plan: Vec<(&Database, &BackupSnapshot)> = Vec::new();
    for database in &found {
        let Some(dump) = client_data::dump_of(&snapshots, &database.service, chosen) else {
            let which = chosen.map_or("any snapshot".to_string(), |c| format!("the snapshot set of {}", c.short_id));
            bail!(
                "the repository of {id} holds no dump of service {} in {which}; run backup-client first",
                database.service
            );
        };
        // A read, but `docker exec`s: with FORCE the answer changes nothing.
        if !force {
            client_data::wait_ready(&docker, &database.container, database.engine, &database.admin, &password)?;
            let counts =
                client_data::table_counts(&docker, &database.container, database.engine, &database.admin, &password)?;
            if !databases::is_empty(&counts) {
                bail!(
                    "the {} database of {id} ({}) holds tables ({}); restoring would overwrite them — FORCE=1 replaces its databases with the dump",
                    database.service,
                    database.container,
                    tables_text(&counts)
                );
            }
        }
        plan.push((database, dump));
    }
    let mut restored = Vec::new();
    for (database, dump) in plan {
        let detail = format!(
            "{} of snapshot {}{}",
            database.file_name(),
            dump.short_id,
            if force { "; FORCE: its databases are replaced" } else { "" }
        );
        let mut tables = String::new();
        let applied = cx.effects.apply("database restore", &database.container, &detail, Outcome::Updated, || {
            client_data::wait_ready(&docker, &database.container, database.engine, &database.admin, &password)?;
            let server = client_data::Server {
                docker: &docker,
                container: &database.container,
                engine: database.engine,
                admin: &database.admin,
                password: &password,
            };
            let (_, expected) = client_data::load_dump(&repo, dump, &database.file_name(), server, force)?;
            let now =
                client_data::table_counts(&docker, &database.container, database.engine, &database.admin, &password)?;
            let missing: Vec<String> = expected
                .iter()
                .filter(|(db, n)| now.get(*db) != Some(n))
                .map(|(db, n)| format!("{db}: {n} in the dump, {} now", now.get(db).copied().unwrap_or(0)))
                .collect();
            if !missing.is_empty() {
                bail!(
                    "the restore into {} left other tables than the dump holds ({})",
                    database.container,
                    missing.join("; ")
                );
            }
            tables = tables_text(&expected);
            let line = format!("restore ok service={} snapshot={} tables={tables}", database.service, dump.short_id);
            if let Err(e) = backup::log_result(&layout, &line) {
                cx.output.warn(&format!("could not append to the backup.log of {id}: {e}"));
            }
            Ok(())
        })?;
        restored.push(RestoredDump {
            service: database.service.clone(),
            container: database.container.clone(),
            snapshot: dump.short_id.clone(),
            tables,
            planned: applied.value.is_none(),
        });
    }
    Ok(restored)
}

/// The files of the client's named volumes from `snapshot` (or the newest files snapshot)
/// back into the volumes; the volumes' names restored.
pub fn restore_volumes(cx: &Context, id: &str, snapshot: &str) -> Result<RestoredVolumes> {
    let docker = Docker::locate()?;
    let filter = [(CLIENT_LABEL.to_string(), id.to_string())];
    let running: Vec<String> = docker
        .list_containers_with_labels(&filter)?
        .into_iter()
        .filter(|c| c.label(CLIENT_LABEL) == Some(id) && c.state == "running" && !c.is_probe())
        .map(|c| c.name)
        .collect();
    if !running.is_empty() {
        bail!(
            "containers of {id} are running ({}); stop-client first, so no service writes into its volumes while they are restored",
            running.join(", ")
        );
    }
    let volumes = backup::client_volumes(id)?.unwrap_or_default();
    let (_, repo, snapshots) = open(cx, id)?;
    let files: Vec<&BackupSnapshot> = snapshots.iter().filter(|s| !s.tags.iter().any(|t| t == DUMP_TAG)).collect();
    let source = match chosen(&snapshots, id, snapshot)? {
        Some(one) if !one.tags.iter().any(|t| t == DUMP_TAG) => Some(one),
        // A dump names its set: the files snapshot of the same run.
        Some(dump) => {
            let set = client_data::tag_value(dump, "set");
            files.iter().copied().find(|s| set.is_some() && client_data::tag_value(s, "set") == set)
        }
        None => files.iter().copied().max_by_key(|s| s.system_time().ok()),
    };
    let Some(source) = source else { bail!("the repository of {id} holds no files snapshot to restore volumes from") };
    let held: Vec<&backup::ClientVolume> =
        volumes.iter().filter(|v| source.paths.iter().any(|p| p == &v.mountpoint)).collect();
    if held.is_empty() {
        bail!("snapshot {} holds none of the volumes of {id}", source.short_id);
    }
    let names: Vec<String> = held.iter().map(|v| v.name.clone()).collect();
    let includes: Vec<String> = held.iter().map(|v| v.mountpoint.display().to_string()).collect();
    let detail = format!("snapshot {}: {}", source.short_id, names.join(" "));
    let applied = cx.effects.apply("volume restore", id, &detail, Outcome::Updated, || {
        repo.restore(&source.id, std::path::Path::new("/"), &includes)
    })?;
    Ok(RestoredVolumes { snapshot: source.short_id.clone(), volumes: names, planned: applied.value.is_none() })
}
