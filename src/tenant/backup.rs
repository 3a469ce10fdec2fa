//! Per-client backups (SPEC §5-§7): the client's `backup/config.sh`, its repository and
//! password, what a backup takes (config dir, secrets, Docker volumes labelled for exactly
//! this client), the `backup.log` result line, and the repository status — cheap (files of
//! a local repository, no key derivation) or deep (opened with the password on disk).

use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

use anyhow::{Context, Result, anyhow, bail};
use indexmap::IndexMap;

use crate::{
    drivers::{
        docker::Docker,
        restic::{BackupRequest, Location, Password, Repo, Restic, Retention},
    },
    format::envfile,
    format::validate,
    fsutil,
    tenant::layout::{ClientLayout, Roots},
    tenant::secrets,
};

/// Mode of `backup/config.sh` (no secret in it).
pub const CONFIG_MODE: u32 = 0o640;
/// The key of the repository password in `secrets.env`.
pub const PASSWORD_KEY: &str = "RESTIC_PASSWORD";
pub use crate::tenant::policy::CLIENT_LABEL;

/// A client's backup settings, read from `backup/config.sh` over the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupConfig {
    pub client_id: String,
    pub repository: Location,
    pub paths: Vec<PathBuf>,
    pub volumes: bool,
    pub excludes: Vec<String>,
    pub tags: Vec<String>,
    pub retention: Retention,
    pub prune: bool,
    pub check_subset: String,
    pub max_age: Duration,
}

impl BackupConfig {
    /// The values create-client writes for a new client.
    pub fn default_entries(layout: &ClientLayout) -> IndexMap<String, String> {
        let paths = [&layout.config_dir, &layout.secrets_dir].map(|p| p.display().to_string()).join(":");
        let values = [
            ("CLIENT_ID", layout.id.clone()),
            ("RESTIC_REPOSITORY", layout.repository.clone()),
            ("BACKUP_PATHS", paths),
            ("BACKUP_VOLUMES", "1".into()),
            ("BACKUP_EXCLUDES", String::new()),
            ("BACKUP_TAGS", format!("agency,client-{}", layout.id)),
            ("KEEP_LAST", String::new()),
            ("KEEP_HOURLY", String::new()),
            ("KEEP_DAILY", "7".into()),
            ("KEEP_WEEKLY", "4".into()),
            ("KEEP_MONTHLY", "6".into()),
            ("KEEP_YEARLY", String::new()),
            ("KEEP_WITHIN", "2d".into()),
            ("PRUNE", "1".into()),
            ("CHECK_READ_DATA_SUBSET", "5%".into()),
            ("BACKUP_MAX_AGE", "26h".into()),
        ];
        values.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// The file's entries over the defaults: what an operator set is kept, a missing key is
    /// added, keys of its own are kept too. create-client writes this back, so a re-run
    /// changes nothing an operator tuned.
    pub fn entries(layout: &ClientLayout) -> Result<IndexMap<String, String>> {
        let mut entries = Self::default_entries(layout);
        match std::fs::read_to_string(&layout.backup_config) {
            Ok(text) => {
                let existing =
                    envfile::parse(&text).with_context(|| format!("in {}", layout.backup_config.display()))?;
                for (key, value) in existing {
                    entries.insert(key, value);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", layout.backup_config.display())),
        }
        Ok(entries)
    }

    /// Reads the client's configuration (defaults where the file is missing or silent).
    pub fn load(layout: &ClientLayout) -> Result<Self> {
        let entries = Self::entries(layout)?;
        Self::from_entries(layout, &entries)
            .with_context(|| format!("invalid backup configuration {}", layout.backup_config.display()))
    }

    pub fn from_entries(layout: &ClientLayout, entries: &IndexMap<String, String>) -> Result<Self> {
        let get = |key: &str| entries.get(key).map(|v| v.trim()).unwrap_or("");
        if get("CLIENT_ID") != layout.id {
            bail!("CLIENT_ID is {:?}, but the file belongs to client {}", get("CLIENT_ID"), layout.id);
        }
        let repository = get("RESTIC_REPOSITORY");
        if repository.is_empty() {
            bail!("RESTIC_REPOSITORY is empty");
        }
        let list = |key: &str, separator: char| -> Vec<String> {
            get(key).split(separator).map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
        };
        let flag = |key: &str| validate::parse_bool(get(key)).map_err(|e| anyhow!("{key}: {e}"));
        let count = |key: &str| -> Result<Option<u32>> {
            match get(key) {
                "" => Ok(None),
                value => value.parse().map(Some).map_err(|_| anyhow!("{key}={value:?} is not a whole number")),
            }
        };
        let paths: Vec<PathBuf> = list("BACKUP_PATHS", ':').into_iter().map(PathBuf::from).collect();
        if let Some(relative) = paths.iter().find(|p| !p.is_absolute()) {
            bail!("BACKUP_PATHS holds {}, which is not an absolute path", relative.display());
        }
        let max_age = humantime::parse_duration(get("BACKUP_MAX_AGE"))
            .map_err(|_| anyhow!("BACKUP_MAX_AGE={:?} is not a duration like 26h", get("BACKUP_MAX_AGE")))?;
        let tags = list("BACKUP_TAGS", ',');
        let retention = Retention {
            keep_last: count("KEEP_LAST")?,
            keep_hourly: count("KEEP_HOURLY")?,
            keep_daily: count("KEEP_DAILY")?,
            keep_weekly: count("KEEP_WEEKLY")?,
            keep_monthly: count("KEEP_MONTHLY")?,
            keep_yearly: count("KEEP_YEARLY")?,
            keep_within: Some(get("KEEP_WITHIN").to_string()).filter(|s| !s.is_empty()),
            // Only the runner's own snapshots: a manual `restic backup` is left alone.
            tags: tags.clone(),
            group_by: None,
        };
        Ok(Self {
            client_id: layout.id.clone(),
            repository: Location::parse(repository),
            paths,
            volumes: flag("BACKUP_VOLUMES")?,
            excludes: list("BACKUP_EXCLUDES", ':'),
            tags,
            retention,
            prune: flag("PRUNE")?,
            check_subset: get("CHECK_READ_DATA_SUBSET").to_string(),
            max_age,
        })
    }

    /// The retention policy in words, for plans and reports.
    pub fn retention_summary(&self) -> String {
        let r = &self.retention;
        let mut parts = Vec::new();
        for (name, value) in [
            ("last", r.keep_last),
            ("hourly", r.keep_hourly),
            ("daily", r.keep_daily),
            ("weekly", r.keep_weekly),
            ("monthly", r.keep_monthly),
            ("yearly", r.keep_yearly),
        ] {
            if let Some(n) = value {
                parts.push(format!("{name} {n}"));
            }
        }
        if let Some(within) = &r.keep_within {
            parts.push(format!("within {within}"));
        }
        if parts.is_empty() { "no retention policy".into() } else { format!("keep {}", parts.join(", ")) }
    }
}

/// The repository password from the client's `secrets.env` (never shown anywhere).
pub fn password(layout: &ClientLayout) -> Result<Password> {
    let values = secrets::read(&layout.secrets_file)?;
    let value = values.get(PASSWORD_KEY).ok_or_else(|| {
        anyhow!(
            "{} holds no {PASSWORD_KEY}; restore it from {} or a delete-client archive",
            layout.secrets_file.display(),
            layout.secrets_history_dir.display()
        )
    })?;
    Password::new(value.as_str()).with_context(|| format!("{PASSWORD_KEY} in {}", layout.secrets_file.display()))
}

/// The client's repository, opened with the password on disk.
pub fn repo(restic: &Restic, layout: &ClientLayout, config: &BackupConfig) -> Result<Repo> {
    Ok(restic.repo(config.repository.clone(), password(layout)?))
}

/// Refuses backup paths that hold another client's files (or every client's).
pub fn check_paths(roots: &Roots, layout: &ClientLayout, paths: &[PathBuf]) -> Result<()> {
    let own = [&layout.config_dir, &layout.secrets_dir, &layout.log_dir];
    let shared = [roots.clients_dir(), roots.root.join("secrets"), roots.log_root.join("clients")];
    for path in paths {
        if own.iter().any(|dir| path.starts_with(dir)) {
            continue;
        }
        if shared.iter().any(|dir| dir.starts_with(path) || path.starts_with(dir)) {
            bail!(
                "backup path {} of client {} holds other clients' files; only the client's own directories may be backed up",
                path.display(),
                layout.id
            );
        }
        if path.starts_with(&roots.backup_root) || roots.backup_root.starts_with(path) {
            bail!("backup path {} holds the backup repositories themselves", path.display());
        }
    }
    Ok(())
}

/// A Docker volume of the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientVolume {
    pub name: String,
    /// Where its data lives on the engine's host.
    pub mountpoint: PathBuf,
}

/// The volumes labelled `agency.client=<id>` exactly (`acme` never matches `acme2`): one
/// `docker volume ls` filtered by the label (Docker matches the value exactly), each volume's
/// label checked again here. `None` when docker is not installed (there are then no volumes
/// on this machine).
pub fn client_volumes(client_id: &str) -> Result<Option<Vec<ClientVolume>>> {
    let Ok(program) = which::which("docker") else { return Ok(None) };
    let volumes = Docker::with_program(program)
        .list_volumes(Some(&format!("{CLIENT_LABEL}={client_id}")))
        .with_context(|| {
            format!(
                "cannot list the Docker volumes of client {client_id} (BACKUP_VOLUMES='0' in its backup/config.sh backs up without them)"
            )
        })?;
    let mut result: Vec<ClientVolume> = volumes
        .into_iter()
        .filter(|v| v.labels.get(CLIENT_LABEL).is_some_and(|c| c == client_id))
        .map(|v| ClientVolume { name: v.name, mountpoint: PathBuf::from(v.mountpoint) })
        .collect();
    result.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Some(result))
}

/// What one backup of a client takes.
#[derive(Debug, Clone)]
pub struct BackupPlan {
    pub request: BackupRequest,
    pub volumes: Vec<ClientVolume>,
}

/// The paths of a backup: the configured directories (checked to be the client's own) and
/// the data of the client's Docker volumes, which must be readable on this machine.
pub fn plan(roots: &Roots, layout: &ClientLayout, config: &BackupConfig, extra_tags: &[String]) -> Result<BackupPlan> {
    check_paths(roots, layout, &config.paths)?;
    let mut paths: Vec<PathBuf> = config.paths.iter().filter(|p| p.exists()).cloned().collect();
    if paths.is_empty() {
        bail!("none of the backup paths of client {} exists ({})", layout.id, join_paths(&config.paths));
    }
    let volumes = if config.volumes { client_volumes(&layout.id)?.unwrap_or_default() } else { Vec::new() };
    for volume in &volumes {
        if !volume.mountpoint.is_dir() {
            bail!(
                "the data of Docker volume {} ({}) is not readable on this machine (a remote engine, or not run as root); \
                 back it up on the engine's host, or set BACKUP_VOLUMES='0' in backup/config.sh",
                volume.name,
                volume.mountpoint.display()
            );
        }
        paths.push(volume.mountpoint.clone());
    }
    let mut tags = config.tags.clone();
    tags.extend(extra_tags.iter().filter(|t| !tags.contains(t)).cloned().collect::<Vec<_>>());
    let request = BackupRequest { paths, tags, excludes: config.excludes.clone(), host: None };
    Ok(BackupPlan { request, volumes })
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Appends one line to the client's `backup.log` (when its log dir exists; it is made by
/// setup-log-segmentation). Returns whether it was written.
pub fn log_result(layout: &ClientLayout, line: &str) -> std::io::Result<bool> {
    if !layout.log_dir.is_dir() {
        return Ok(false);
    }
    let path = layout.log_dir.join("backup.log");
    fsutil::append_line(
        &path,
        &format!("{} {line}", crate::tenant::audit::now_rfc3339()),
        crate::tenant::policy::LOG_FILE_MODE,
    )?;
    Ok(true)
}

/// How a repository looks to `multi-tenancy-status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    Ok,
    /// No snapshot yet, or the newest is older than `BACKUP_MAX_AGE`.
    Warning,
    /// Missing, or it does not open with the password on disk.
    Problem,
    /// Not looked at: a remote repository without DEEP=1.
    Unchecked,
}

impl Level {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Problem => "problem",
            Self::Unchecked => "unchecked",
        }
    }
}

/// A client's repository status.
#[derive(Debug, Clone)]
pub struct RepoStatus {
    pub client: String,
    /// For messages (credentials masked).
    pub repository: String,
    pub remote: bool,
    /// Whether the repository was opened with the password.
    pub deep: bool,
    /// `None`: not known (a remote repository, checked cheaply).
    pub initialized: Option<bool>,
    pub snapshots: Option<usize>,
    pub newest: Option<SystemTime>,
    pub level: Level,
    pub message: String,
}

impl RepoStatus {
    pub fn age(&self, now: SystemTime) -> Option<Duration> {
        self.newest.map(|t| now.duration_since(t).unwrap_or_default())
    }
}

/// Rounds to minutes for people ("3h 5m"), "just now" under a minute.
pub fn format_age(age: Duration) -> String {
    let minutes = age.as_secs() / 60;
    if minutes == 0 {
        "just now".into()
    } else {
        humantime::format_duration(Duration::from_secs(minutes * 60)).to_string()
    }
}

fn judge(status: &mut RepoStatus, max_age: Duration, now: SystemTime) {
    let count = status.snapshots.unwrap_or(0);
    match status.age(now) {
        None => {
            status.level = Level::Warning;
            status.message = "no snapshot yet".into();
        }
        Some(age) if age > max_age => {
            status.level = Level::Warning;
            status.message = format!(
                "newest snapshot is {} old (BACKUP_MAX_AGE {})",
                format_age(age),
                humantime::format_duration(max_age)
            );
        }
        Some(age) => {
            status.level = Level::Ok;
            status.message = format!("{count} snapshot(s), newest {} ago", format_age(age));
        }
    }
}

/// The cheap check: no restic, no key derivation. A local repository's `config` file says
/// it is initialized, the files under `snapshots/` give the count and the newest time.
pub fn status_cheap(layout: &ClientLayout, config: &BackupConfig, now: SystemTime) -> RepoStatus {
    let location = &config.repository;
    let mut status = RepoStatus {
        client: layout.id.clone(),
        repository: location.to_string(),
        remote: !location.is_local(),
        deep: false,
        initialized: location.is_initialized(),
        snapshots: None,
        newest: None,
        level: Level::Ok,
        message: String::new(),
    };
    match (location, status.initialized) {
        (Location::Remote(_), _) => {
            status.level = Level::Unchecked;
            status.message = "remote repository: checked only with DEEP=1".into();
        }
        (Location::Local(_), Some(false)) => {
            status.level = Level::Problem;
            status.message = match location.is_half_initialized() {
                Ok(true) => format!(
                    "the restic repository at {location} has keys but no config (an init was stopped); \
                     re-run create-client to initialize it"
                ),
                Ok(false) => format!("no restic repository at {location} (create-client initializes it)"),
                Err(error) => format!("{error:#}"),
            };
        }
        (Location::Local(_), _) => match location.snapshot_files() {
            Ok((count, newest)) => {
                status.newest = newest;
                status.snapshots = Some(count);
                judge(&mut status, config.max_age, now);
            }
            Err(error) => {
                status.level = Level::Problem;
                status.message = format!("{error:#}");
            }
        },
    }
    if status.initialized == Some(true) && status.level != Level::Problem {
        judge_keys_and_locks(&mut status, layout, location);
    }
    status
}

/// One key outside a rotation (two while `secrets.env.next` is pending): more means a
/// password other than the one on disk may open the repository, or a key of a second
/// init fails it. Lock files are a warning (a run may be under way); the deep check and the
/// next backup, rotation or verify tell and remove the stale ones.
fn judge_keys_and_locks(status: &mut RepoStatus, layout: &ClientLayout, location: &Location) {
    let keys = location.key_files().map(|k| k.len()).unwrap_or(0);
    let expected = crate::tenant::recovery::expected_keys(crate::tenant::rotation::pending_path(layout).exists());
    if keys > expected {
        status.level = Level::Problem;
        status.message = format!(
            "{keys} keys in the repository ({expected} expected): a password other than the one on disk may \
             open it; the next backup-client, verify-backup or rotate-secrets removes every key the password \
             on disk does not open"
        );
        return;
    }
    let locks = location.lock_files().map(|l| l.len()).unwrap_or(0);
    if locks > 0 {
        status.level = Level::Warning;
        status.message = format!(
            "{}; {locks} lock file(s): a restic run is under way or was killed (DEEP=1 tells; the next backup removes a stale one)",
            status.message
        );
    }
}

/// The deep check: opens the repository with the password on disk and lists its snapshots
/// (one key derivation, ≈ 0.75 s here).
pub fn status_deep(restic: &Restic, layout: &ClientLayout, config: &BackupConfig, now: SystemTime) -> RepoStatus {
    let mut status = status_cheap(layout, config, now);
    status.deep = true;
    let cheap = (status.level.clone(), status.message.clone());
    // Stale locks first: an exclusive one would fail the listing with "locked".
    let listed = repo(restic, layout, config).and_then(|repo| match repo.stale_locks()? {
        stale if stale.is_empty() => Ok(Ok(repo.snapshots(&[])?)),
        stale => Ok(Err(stale)),
    });
    match listed {
        Ok(Ok(snapshots)) => {
            status.initialized = Some(true);
            status.snapshots = Some(snapshots.len());
            status.newest = snapshots.iter().filter_map(|s| s.system_time().ok()).max();
            judge(&mut status, config.max_age, now);
            if cheap.0 == Level::Problem {
                (status.level, status.message) = cheap;
            }
        }
        Ok(Err(stale)) => {
            let pids: Vec<String> = stale.iter().map(|(_, pid)| pid.to_string()).collect();
            status.level = Level::Problem;
            status.message = format!(
                "stale lock(s) of restic PID {} (gone): the next backup, rotation or verify removes them",
                pids.join(", ")
            );
        }
        Err(error) => {
            if matches!(
                crate::drivers::restic::ResticError::of(&error),
                Some(crate::drivers::restic::ResticError::RepositoryMissing { .. })
            ) {
                status.initialized = Some(false);
            }
            status.level = Level::Problem;
            status.message = match cheap {
                (Level::Problem, found) => format!("{found}; opening it: {error:#}"),
                _ => format!("{error:#}"),
            };
        }
    }
    status
}

/// The status of many clients; deep checks run in parallel (each restic open is a key
/// derivation bound by one core), at most `workers` at a time.
pub fn status_many(
    restic: Option<&Restic>,
    clients: &[(ClientLayout, Result<BackupConfig, String>)],
    workers: usize,
) -> Vec<RepoStatus> {
    let now = SystemTime::now();
    let one = |(layout, config): &(ClientLayout, Result<BackupConfig, String>)| match config {
        Err(error) => RepoStatus {
            client: layout.id.clone(),
            repository: layout.repository.clone(),
            remote: false,
            deep: restic.is_some(),
            initialized: None,
            snapshots: None,
            newest: None,
            level: Level::Problem,
            message: error.clone(),
        },
        Ok(config) => match restic {
            Some(restic) => status_deep(restic, layout, config, now),
            None => status_cheap(layout, config, now),
        },
    };
    // Cheap checks read a few files each: not worth a thread.
    crate::parallel::map(clients, if restic.is_some() { workers } else { 1 }, one)
}

/// How many repositories to open at once: restic's key derivation is CPU-bound.
pub fn deep_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn roots(dir: &Path) -> Roots {
        Roots {
            root: dir.join("root"),
            log_root: dir.join("log"),
            backup_root: dir.join("backup"),
            logrotate_dir: dir.join("lr"),
            repository_base: String::new(),
        }
    }

    #[test]
    fn config_defaults_and_operator_values() {
        let dir = tempfile::tempdir().unwrap();
        let roots = roots(dir.path());
        let layout = ClientLayout::new(&roots, "acme").unwrap();
        let config = BackupConfig::load(&layout).unwrap();
        assert_eq!(config.paths, [layout.config_dir.clone(), layout.secrets_dir.clone()]);
        assert_eq!(config.repository, Location::Local(roots.backup_root.join("client-acme")));
        assert_eq!(config.retention.keep_daily, Some(7));
        assert_eq!(config.retention.tags, ["agency", "client-acme"]);
        assert_eq!(config.max_age, Duration::from_secs(26 * 3600));
        assert_eq!(config.retention_summary(), "keep daily 7, weekly 4, monthly 6, within 2d");

        // An operator's edits survive; missing keys come back with defaults.
        std::fs::create_dir_all(&layout.backup_dir).unwrap();
        std::fs::write(&layout.backup_config, "CLIENT_ID='acme'\nKEEP_DAILY='30'\nMY_NOTE='kept'\n").unwrap();
        let entries = BackupConfig::entries(&layout).unwrap();
        assert_eq!(entries["KEEP_DAILY"], "30");
        assert_eq!(entries["MY_NOTE"], "kept");
        assert_eq!(entries["KEEP_WEEKLY"], "4");
        assert_eq!(BackupConfig::load(&layout).unwrap().retention.keep_daily, Some(30));

        std::fs::write(&layout.backup_config, "CLIENT_ID='acme2'\n").unwrap();
        let error = format!("{:#}", BackupConfig::load(&layout).unwrap_err());
        assert!(error.contains("belongs to client acme"), "{error}");
        std::fs::write(&layout.backup_config, "CLIENT_ID='acme'\nKEEP_DAILY='seven'\n").unwrap();
        let error = format!("{:#}", BackupConfig::load(&layout).unwrap_err());
        assert!(error.contains("KEEP_DAILY=\"seven\" is not a whole number"), "{error}");
    }

    #[test]
    fn backup_paths_stay_inside_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let roots = roots(dir.path());
        let acme = ClientLayout::new(&roots, "acme").unwrap();
        let acme2 = ClientLayout::new(&roots, "acme2").unwrap();
        assert!(check_paths(&roots, &acme, &[acme.config_dir.clone(), acme.secrets_dir.clone()]).is_ok());
        assert!(check_paths(&roots, &acme, &[acme.config_dir.join("keycloak")]).is_ok());
        assert!(check_paths(&roots, &acme, &[PathBuf::from("/srv/acme-uploads")]).is_ok());
        for foreign in [acme2.config_dir.clone(), acme2.secrets_dir.clone(), roots.clients_dir(), roots.root.clone()] {
            assert!(check_paths(&roots, &acme, std::slice::from_ref(&foreign)).is_err(), "{}", foreign.display());
        }
        assert!(check_paths(&roots, &acme, &[roots.backup_root.join("client-acme")]).is_err());
        assert!(check_paths(&roots, &acme, &[PathBuf::from("/")]).is_err());
    }

    #[test]
    fn ages_read_like_a_person_says_them() {
        assert_eq!(format_age(Duration::from_secs(59)), "just now");
        assert_eq!(format_age(Duration::from_secs(3 * 3600 + 5 * 60 + 7)), "3h 5m");
    }
}
