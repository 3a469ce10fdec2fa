//! restic, the backup program, driven through its command line.
//!
//! Every call passes the repository and its password to the child through the
//! environment (`RESTIC_REPOSITORY`, `RESTIC_PASSWORD`), and a new key's password through a
//! 0600 file (`--new-password-file`), so neither ever appears in an argument list (a `rest:`
//! URL may carry credentials too). Failures are classified from the exit code and stderr —
//! restic 0.14 exits 1 for nearly everything — into [`ResticError`], one clear sentence each.
//!
//! Opening a repository costs a key derivation (≈ 0.75 s here, `init` ≈ 2.5 s), so the cheap
//! checks [`Location::is_initialized`] and [`Location::snapshot_files`] look at the
//! files of a local repository instead and never run restic.

use std::{
    fmt, fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, de::DeserializeOwned};

use super::process::{self, Command, Output};

const INSTALL_HINT: &str = "install it with `apt-get install restic` (Debian/Ubuntu) or see https://restic.net";

/// The name of the temp file holding a new key's password: `.restic-new-key.XXXXXX.tmp`.
pub const NEW_KEY_FILE: &str = "restic-new-key";

/// Backends whose location is passed through to restic as it is.
const REMOTE_SCHEMES: &[&str] = &["s3:", "rest:", "sftp:", "b2:", "azure:", "gs:", "swift:", "rclone:"];

/// A repository password. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// An empty password is refused (restic would then prompt on stdin).
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        if value.is_empty() {
            bail!("a restic password must not be empty");
        }
        if value.trim() != value {
            // restic trims password files, so such a value would not survive a key change.
            bail!("a restic password must not start or end with whitespace");
        }
        Ok(Self(value))
    }

    fn expose(&self) -> &str {
        &self.0
    }

    /// The value, only to tell generations apart (never to print or pass on).
    pub fn expose_for_comparison(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Where a repository lives: a local directory, or a remote backend location
/// (`s3:`, `rest:`, `sftp:`, ...) handed to restic unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Remote(String),
}

impl Location {
    /// Parses a restic repository string; `local:/x` and plain paths are local.
    pub fn parse(repository: &str) -> Self {
        if let Some(path) = repository.strip_prefix("local:") {
            Self::Local(PathBuf::from(path))
        } else if REMOTE_SCHEMES.iter().any(|scheme| repository.starts_with(scheme)) {
            Self::Remote(repository.to_string())
        } else {
            Self::Local(PathBuf::from(repository))
        }
    }

    /// The repository of client `client_id`: `<base>/client-<id>` when `base` (the
    /// `RESTIC_REPOSITORY_BASE`) is set and not empty, else `<backup_root>/client-<id>`.
    pub fn for_client(client_id: &str, base: Option<&str>, backup_root: &Path) -> Self {
        let name = format!("client-{client_id}");
        match base.map(str::trim).filter(|base| !base.is_empty()) {
            Some(base) => {
                let separator = if base.ends_with('/') || base.ends_with(':') { "" } else { "/" };
                Self::parse(&format!("{base}{separator}{name}"))
            }
            None => Self::Local(backup_root.join(name)),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Self::Local(_))
    }

    /// The value restic takes as `RESTIC_REPOSITORY`.
    fn repository(&self) -> String {
        match self {
            Self::Local(path) => path.to_string_lossy().into_owned(),
            Self::Remote(url) => url.clone(),
        }
    }

    /// Cheap: whether a local repository has its `config` file (no key derivation).
    /// `None` for a remote repository: only opening it can tell.
    pub fn is_initialized(&self) -> Option<bool> {
        match self {
            Self::Local(path) => Some(path.join("config").is_file()),
            Self::Remote(_) => None,
        }
    }

    /// Cheap: the number of entries under `snapshots/` of a local repository and the
    /// modification time of its newest file (when its newest snapshot was written), `None`
    /// when it holds none. A remote repository is an error: its snapshots can only be listed
    /// by opening it.
    pub fn snapshot_files(&self) -> Result<(usize, Option<SystemTime>)> {
        let Self::Local(path) = self else {
            bail!("{self} is a remote repository; its snapshots can only be listed by opening it");
        };
        let dir = path.join("snapshots");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if self.is_initialized() == Some(true) {
                    bail!("the restic repository at {self} has no snapshots directory");
                }
                return Err(ResticError::RepositoryMissing { repo: self.to_string() }.into());
            }
            Err(error) => {
                return Err(error).with_context(|| format!("could not list {}", dir.display()));
            }
        };
        let (mut count, mut newest) = (0, None);
        for entry in entries {
            let entry = entry.with_context(|| format!("could not list {}", dir.display()))?;
            count += 1;
            let metadata = entry.metadata()?;
            if metadata.is_file() {
                let modified = metadata.modified()?;
                if newest.is_none_or(|newest| modified > newest) {
                    newest = Some(modified);
                }
            }
        }
        Ok((count, newest))
    }
}

impl fmt::Display for Location {
    /// The repository for messages: credentials in a URL (`rest:https://user:pass@host/`)
    /// are masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(path) => write!(f, "{}", path.display()),
            Self::Remote(url) => f.write_str(&mask_credentials(url)),
        }
    }
}

/// `scheme://user:secret@host/...` → `scheme://user:***@host/...`.
fn mask_credentials(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[start..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!("{}{}:***{}", &url[..start], &userinfo[..colon], &rest[at..]),
        None => url.to_string(),
    }
}

/// A restic failure, classified. Each renders as one sentence naming the repository.
#[derive(Debug)]
pub enum ResticError {
    /// No repository at the location (restic: "unable to open config file").
    RepositoryMissing { repo: String },
    /// The password opens no key of the repository.
    WrongPassword { repo: String },
    /// Another restic process holds a conflicting lock.
    Locked { repo: String, holder: String },
    /// `init` found a repository already there.
    AlreadyInitialized { repo: String },
    /// The snapshot asked for (an id or `latest`) does not exist.
    SnapshotNotFound { repo: String, snapshot: String },
    /// The backup finished (exit 3) but some files could not be read; the snapshot exists.
    PartialBackup { repo: String, summary: Box<BackupSummary>, unreadable: Vec<String> },
    /// `restic check` found damage.
    Damaged { repo: String, detail: String },
    /// Anything else, with restic's own first error line.
    Failed { repo: String, action: &'static str, code: i32, detail: String },
}

impl fmt::Display for ResticError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RepositoryMissing { repo } => {
                write!(f, "there is no restic repository at {repo} (it was never initialized or has been moved)")
            }
            Self::WrongPassword { repo } => {
                write!(
                    f,
                    "the password does not open the restic repository at {repo} (wrong password or its key was removed)"
                )
            }
            Self::Locked { repo, holder } => write!(
                f,
                "the restic repository at {repo} is locked by another process ({holder}); \
                 wait for it to finish, or run `restic unlock` if that process is gone"
            ),
            Self::AlreadyInitialized { repo } => {
                write!(f, "a restic repository already exists at {repo}")
            }
            Self::SnapshotNotFound { repo, snapshot } => {
                write!(f, "snapshot {snapshot} was not found in the restic repository at {repo}")
            }
            Self::PartialBackup { repo, summary, unreadable } => {
                write!(
                    f,
                    "the backup to {repo} saved snapshot {} but {} item(s) could not be read",
                    summary.snapshot_id,
                    unreadable.len().max(1)
                )?;
                if let Some(first) = unreadable.first() {
                    write!(f, " (first: {first})")?;
                }
                Ok(())
            }
            Self::Damaged { repo, detail } => {
                write!(f, "restic check found errors in the repository at {repo}: {detail}")
            }
            Self::Failed { repo, action, code, detail } => {
                write!(f, "restic {action} on {repo} failed (exit {code}): {detail}")
            }
        }
    }
}

impl std::error::Error for ResticError {}

impl ResticError {
    /// The classification of an error returned by this module, if it is one.
    pub fn of(error: &anyhow::Error) -> Option<&ResticError> {
        error.downcast_ref::<ResticError>()
    }
}

/// The restic program.
#[derive(Debug, Clone)]
pub struct Restic {
    program: PathBuf,
}

impl Restic {
    /// Finds `restic` on PATH, or says what to install.
    pub fn locate() -> Result<Self> {
        Ok(Self { program: process::locate("restic", INSTALL_HINT)? })
    }

    /// Uses a given program (tests put a logging shim here).
    pub fn with_program(program: impl Into<PathBuf>) -> Self {
        Self { program: program.into() }
    }

    /// `restic version`, e.g. "restic 0.14.0 compiled with go1.19.8 on linux/amd64".
    pub fn version(&self) -> Result<String> {
        let output = Command::new(&self.program).arg("version").checked_output()?;
        Ok(output.stdout.trim().to_string())
    }

    /// A handle on one repository, opened with `password` by each operation.
    pub fn repo(&self, location: Location, password: Password) -> Repo {
        Repo { program: self.program.clone(), location, password }
    }
}

/// What to back up.
#[derive(Debug, Clone, Default)]
pub struct BackupRequest {
    /// Absolute paths; restic stores them under their full path in the snapshot.
    pub paths: Vec<PathBuf>,
    pub tags: Vec<String>,
    /// Exclude patterns (`--exclude`).
    pub excludes: Vec<String>,
    /// The host name recorded in the snapshot (restic's default: this machine's).
    pub host: Option<String>,
}

/// One `status` line of `restic backup --json`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct BackupProgress {
    pub seconds_elapsed: u64,
    pub seconds_remaining: u64,
    pub percent_done: f64,
    pub total_files: u64,
    pub files_done: u64,
    pub total_bytes: u64,
    pub bytes_done: u64,
    pub error_count: u64,
    pub current_files: Vec<String>,
}

/// The `summary` line of `restic backup --json`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct BackupSummary {
    pub snapshot_id: String,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs_new: u64,
    pub dirs_changed: u64,
    pub dirs_unmodified: u64,
    pub data_blobs: i64,
    pub tree_blobs: i64,
    pub data_added: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
    pub total_duration: f64,
}

/// A snapshot as `restic snapshots --json` lists it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Snapshot {
    pub id: String,
    pub short_id: String,
    /// RFC 3339 with nanoseconds and the offset of the machine that made it.
    pub time: String,
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    #[serde(default)]
    pub hostname: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub tree: String,
    #[serde(default)]
    pub parent: Option<String>,
}

impl Snapshot {
    /// The snapshot's time as a `SystemTime`.
    pub fn system_time(&self) -> Result<SystemTime> {
        parse_rfc3339(&self.time)
    }
}

/// A key as `restic key list --json` lists it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Key {
    pub id: String,
    /// The key the password of this call opened.
    pub current: bool,
    #[serde(rename = "userName", default)]
    pub user_name: String,
    #[serde(rename = "hostName", default)]
    pub host_name: String,
    #[serde(default)]
    pub created: String,
}

/// A keep-policy for `restic forget`. Unset rules are not passed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    /// A restic duration such as `30d` or `1y2m`.
    pub keep_within: Option<String>,
    /// Only snapshots carrying all these tags are considered.
    pub tags: Vec<String>,
    /// restic's `--group-by`; `None` means no grouping (one policy over the whole
    /// repository, right for a per-client repository whose paths change as volumes come
    /// and go).
    pub group_by: Option<String>,
}

impl Retention {
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_hourly.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
            && self.keep_yearly.is_none()
            && self.keep_within.is_none()
    }

    fn args(&self) -> Result<Vec<String>> {
        let mut args = Vec::new();
        for (flag, value) in [
            ("--keep-last", self.keep_last),
            ("--keep-hourly", self.keep_hourly),
            ("--keep-daily", self.keep_daily),
            ("--keep-weekly", self.keep_weekly),
            ("--keep-monthly", self.keep_monthly),
            ("--keep-yearly", self.keep_yearly),
        ] {
            if let Some(value) = value {
                args.push(format!("{flag}={value}"));
            }
        }
        if let Some(within) = &self.keep_within {
            if within.is_empty() || !within.chars().all(|c| c.is_ascii_digit() || "ymdh".contains(c)) {
                bail!("keep-within {within:?} is not a restic duration such as 30d or 1y6m");
            }
            args.push(format!("--keep-within={within}"));
        }
        if let Some(filter) = tag_filter(&self.tags)? {
            args.push(filter);
        }
        args.push(format!("--group-by={}", self.group_by.as_deref().unwrap_or("")));
        Ok(args)
    }
}

/// What `forget` decided, each list oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ForgetReport {
    pub kept: Vec<Snapshot>,
    pub removed: Vec<Snapshot>,
}

#[derive(Deserialize)]
struct ForgetGroup {
    #[serde(default, deserialize_with = "null_as_empty")]
    keep: Vec<Snapshot>,
    #[serde(default, deserialize_with = "null_as_empty")]
    remove: Vec<Snapshot>,
}

/// A handle on one repository with its password.
#[derive(Debug, Clone)]
pub struct Repo {
    program: PathBuf,
    location: Location,
    password: Password,
}

impl Repo {
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// A restic command for this repository: repository and password in the environment;
    /// variables of the operator's shell that would override or conflict with them are
    /// emptied (restic treats an empty value as unset).
    fn command(&self) -> Command {
        let mut command = Command::new(&self.program)
            .env("RESTIC_REPOSITORY", &self.location.repository())
            .env("RESTIC_PASSWORD", self.password.expose())
            .env("RESTIC_REPOSITORY_FILE", "")
            .env("RESTIC_PASSWORD_FILE", "")
            .env("RESTIC_PASSWORD_COMMAND", "")
            .env("RESTIC_KEY_HINT", "");
        if self.location.is_local() {
            // The repository is on this disk already; a cache would only duplicate it
            // (and grow the operator's ~/.cache for every client).
            command = command.arg("--no-cache");
        }
        command
    }

    /// Runs a command to completion; non-zero exits are classified.
    fn run(&self, action: &'static str, command: Command) -> Result<Output> {
        let output = command.output()?;
        if output.success() { Ok(output) } else { Err(self.classify(action, &output).into()) }
    }

    fn classify(&self, action: &'static str, output: &Output) -> ResticError {
        let repo = self.location.to_string();
        let stderr = &output.stderr;
        if stderr.contains("wrong password or no key found") {
            ResticError::WrongPassword { repo }
        } else if stderr.contains("unable to open config file")
            || stderr.contains("Is there a repository at the following location?")
        {
            ResticError::RepositoryMissing { repo }
        } else if stderr.contains("repository is already locked") {
            ResticError::Locked { repo, holder: lock_holder(stderr) }
        } else if stderr.contains("config file already exists") {
            ResticError::AlreadyInitialized { repo }
        } else if stderr.contains("no matching ID found") || stderr.contains("no snapshot found") {
            let snapshot = quoted(stderr).unwrap_or_else(|| "latest".to_string());
            ResticError::SnapshotNotFound { repo, snapshot }
        } else {
            ResticError::Failed { repo, action, code: output.code, detail: error_line(stderr) }
        }
    }

    /// Creates the repository (≈ 2.5 s of key derivation). An existing one is
    /// [`ResticError::AlreadyInitialized`].
    pub fn init(&self) -> Result<()> {
        if self.location.is_initialized() == Some(true) {
            return Err(ResticError::AlreadyInitialized { repo: self.location.to_string() }.into());
        }
        self.run("init", self.command().arg("init"))?;
        Ok(())
    }

    /// Initializes unless already initialized; `true` when it created the repository.
    /// A local repository with its config file is left alone without running restic.
    pub fn ensure_initialized(&self) -> Result<bool> {
        if self.location.is_initialized() == Some(true) {
            return Ok(false);
        }
        match self.init() {
            Ok(()) => Ok(true),
            Err(error) if matches!(ResticError::of(&error), Some(ResticError::AlreadyInitialized { .. })) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Deep check: proves the password opens the repository (one key derivation).
    pub fn open(&self) -> Result<()> {
        self.run("open", self.command().args(["cat", "config"]))?;
        Ok(())
    }

    /// Backs up `request.paths`, calling `on_progress` for each JSON status line.
    /// Exit 3 (some files unreadable) is [`ResticError::PartialBackup`], which carries the
    /// summary of the snapshot that was still written.
    pub fn backup(
        &self,
        request: &BackupRequest,
        mut on_progress: impl FnMut(&BackupProgress),
    ) -> Result<BackupSummary> {
        if request.paths.is_empty() {
            bail!("nothing to back up to {}: no paths given", self.location);
        }
        let mut command = self.command().args(["backup", "--json"]);
        for tag in &request.tags {
            command = command.arg(tag_arg(tag)?);
        }
        for exclude in &request.excludes {
            command = command.arg(format!("--exclude={exclude}"));
        }
        if let Some(host) = &request.host {
            command = command.arg(format!("--host={host}"));
        }
        command = command.arg("--").args(&request.paths);

        let reader = command.spawn_reader()?;
        let mut summary = None;
        let mut lines = BufReader::new(&reader);
        let mut line = String::new();
        loop {
            line.clear();
            let read = lines
                .read_line(&mut line)
                .with_context(|| format!("could not read the output of restic backup to {}", self.location))?;
            if read == 0 {
                break;
            }
            match message_type(&line) {
                Some("status") => {
                    if let Ok(progress) = serde_json::from_str::<BackupProgress>(&line) {
                        on_progress(&progress);
                    }
                }
                Some("summary") => summary = serde_json::from_str::<BackupSummary>(&line).ok(),
                _ => {}
            }
        }
        let output = reader.finish().with_context(|| format!("restic backup to {}", self.location))?;
        let output = Output {
            code: output.status.code().unwrap_or(-1),
            stdout: String::new(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        match (output.code, summary) {
            (0, Some(summary)) => Ok(summary),
            (3, Some(summary)) => Err(ResticError::PartialBackup {
                repo: self.location.to_string(),
                summary: Box::new(summary),
                unreadable: unreadable_items(&output.stderr),
            }
            .into()),
            (0, None) => bail!("restic backup to {} printed no summary", self.location),
            _ => Err(self.classify("backup", &output).into()),
        }
    }

    /// All snapshots, or those carrying every tag in `tags`, oldest first.
    pub fn snapshots(&self, tags: &[String]) -> Result<Vec<Snapshot>> {
        let mut command = self.command().args(["snapshots", "--json"]);
        if let Some(filter) = tag_filter(tags)? {
            command = command.arg(filter);
        }
        let output = self.run("snapshots", command)?;
        first_json(&output.stdout, "snapshots", &self.location)
    }

    /// Applies `policy` (`restic forget`), then `prune`s unreferenced data when asked.
    pub fn forget(&self, policy: &Retention, prune: bool) -> Result<ForgetReport> {
        self.forget_with(policy, if prune { &["--prune"] } else { &[] })
    }

    /// What `forget` would keep and remove now, changing nothing (`restic forget --dry-run`).
    pub fn forget_plan(&self, policy: &Retention) -> Result<ForgetReport> {
        self.forget_with(policy, &["--dry-run"])
    }

    fn forget_with(&self, policy: &Retention, extra: &[&str]) -> Result<ForgetReport> {
        if policy.is_empty() {
            bail!("the retention policy for {} keeps nothing explicitly; refusing to forget", self.location);
        }
        let command = self.command().args(["forget", "--json"]).args(policy.args()?).args(extra);
        let output = self.run("forget", command)?;
        // With --prune, prune's text report follows the JSON on stdout.
        let groups: Vec<ForgetGroup> = if output.stdout.trim().is_empty() {
            Vec::new()
        } else {
            first_json(&output.stdout, "forget", &self.location)?
        };
        let mut report = ForgetReport::default();
        for group in groups {
            report.kept.extend(group.keep);
            report.removed.extend(group.remove);
        }
        // restic lists each group newest first; report oldest first, like `snapshots`.
        let oldest_first = |a: &Snapshot, b: &Snapshot| a.system_time().ok().cmp(&b.system_time().ok());
        report.kept.sort_by(oldest_first);
        report.removed.sort_by(oldest_first);
        Ok(report)
    }

    /// `restic check`, reading back `read_data_subset` of the data (e.g. `"10%"`, `"1/5"`)
    /// when given. Damage is [`ResticError::Damaged`].
    pub fn check(&self, read_data_subset: Option<&str>) -> Result<()> {
        let mut command = self.command().arg("check");
        if let Some(subset) = read_data_subset {
            if subset.is_empty() || subset.starts_with('-') {
                bail!("read-data-subset {subset:?} is not a fraction such as 10% or 1/5");
            }
            command = command.arg(format!("--read-data-subset={subset}"));
        }
        let output = command.output()?;
        if output.success() {
            return Ok(());
        }
        let error = self.classify("check", &output);
        match error {
            ResticError::Failed { repo, .. }
                if output.stderr.contains("repository contains errors") || output.stdout.contains("error") =>
            {
                let detail = output
                    .stdout
                    .lines()
                    .chain(output.stderr.lines())
                    .map(str::trim)
                    .find(|line| line.to_lowercase().contains("error") && !line.starts_with("Fatal"))
                    .unwrap_or("repository contains errors")
                    .to_string();
                Err(ResticError::Damaged { repo, detail }.into())
            }
            other => Err(other.into()),
        }
    }

    /// Restores `snapshot` (an id, a unique id prefix, or `latest`) into `target`,
    /// limited to paths matching `include` when not empty. Backed-up absolute paths land
    /// under `target` with their full path (`/srv/x` → `target/srv/x`).
    pub fn restore(&self, snapshot: &str, target: &Path, include: &[String]) -> Result<()> {
        check_snapshot_id(snapshot)?;
        let mut command = self.command().args(["restore", snapshot]).arg(format!("--target={}", target.display()));
        for pattern in include {
            command = command.arg(format!("--include={pattern}"));
        }
        self.run("restore", command)?;
        Ok(())
    }

    /// Adds a key opened by `new_password`. The new password reaches restic in a 0600
    /// temporary file in `secrets_dir` (the client's 0700 one), removed afterwards, or by the
    /// next run when a kill left it.
    pub fn key_add(&self, new_password: &Password, secrets_dir: &Path) -> Result<()> {
        let file = crate::fsutil::secret_temp_file(secrets_dir, NEW_KEY_FILE, new_password.expose().as_bytes())
            .with_context(|| format!("could not write the new restic password file in {}", secrets_dir.display()))?;
        let command = self.command().args(["key", "add"]).arg(format!("--new-password-file={}", file.path().display()));
        self.run("key add", command)?;
        Ok(())
    }

    /// The repository's keys; `current` marks the one this handle's password opens.
    pub fn key_list(&self) -> Result<Vec<Key>> {
        let output = self.run("key list", self.command().args(["key", "list", "--json"]))?;
        first_json(&output.stdout, "key list", &self.location)
    }

    /// Removes key `id` (restic refuses to remove the key in use by this handle).
    pub fn key_remove(&self, id: &str) -> Result<()> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("{id:?} is not a restic key id");
        }
        self.run("key remove", self.command().args(["key", "remove", id]))?;
        Ok(())
    }

    /// Removes stale locks (those of processes that are gone); live locks stay.
    pub fn unlock(&self) -> Result<()> {
        self.run("unlock", self.command().arg("unlock"))?;
        Ok(())
    }
}

/// `--tag=x`: the `=` form keeps a value from being read as a flag; restic splits
/// tags on commas, so a comma is refused.
fn tag_arg(tag: &str) -> Result<String> {
    if tag.is_empty() || tag.contains(',') || tag.chars().any(char::is_whitespace) {
        bail!("restic tag {tag:?} must be non-empty, without commas or spaces");
    }
    Ok(format!("--tag={tag}"))
}

/// A filter on snapshots carrying every one of `tags`: `--tag=a,b` (restic reads repeated
/// `--tag` options as "any of").
fn tag_filter(tags: &[String]) -> Result<Option<String>> {
    if tags.is_empty() {
        return Ok(None);
    }
    for tag in tags {
        tag_arg(tag)?;
    }
    Ok(Some(format!("--tag={}", tags.join(","))))
}

fn check_snapshot_id(snapshot: &str) -> Result<()> {
    if snapshot == "latest" || (!snapshot.is_empty() && snapshot.chars().all(|c| c.is_ascii_hexdigit())) {
        Ok(())
    } else {
        bail!("{snapshot:?} is not a snapshot id (hex digits) or `latest`")
    }
}

fn message_type(line: &str) -> Option<&str> {
    // Cheap pre-check before a full parse; status lines arrive up to 60 times a second.
    let start = line.find("\"message_type\":\"")? + "\"message_type\":\"".len();
    let end = line[start..].find('"')?;
    Some(&line[start..start + end])
}

/// Parses the first JSON value of `stdout` (restic may print text after it).
fn first_json<T: DeserializeOwned>(stdout: &str, action: &str, location: &Location) -> Result<T> {
    let start = stdout.find(['[', '{']).unwrap_or(0);
    serde_json::Deserializer::from_str(&stdout[start..])
        .into_iter::<T>()
        .next()
        .unwrap_or_else(|| serde_json::from_str::<T>(""))
        .with_context(|| format!("could not parse the JSON output of restic {action} for {location}"))
}

fn null_as_empty<'de, D, T>(deserializer: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// restic's own error line: the `Fatal:` line without the prefix, else the first line.
fn error_line(stderr: &str) -> String {
    let lines = || stderr.lines().map(str::trim).filter(|line| !line.is_empty());
    lines()
        .find_map(|line| line.strip_prefix("Fatal: "))
        .or_else(|| lines().next())
        .unwrap_or("no error message")
        .to_string()
}

/// "repository is already locked exclusively by PID 8277 on vm by root (UID 0, GID 0)"
/// → "exclusively by PID 8277 on vm by root".
fn lock_holder(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|line| line.split_once("repository is already locked ").map(|(_, rest)| rest))
        .map(|rest| rest.split(" (UID").next().unwrap_or(rest).trim().to_string())
        .unwrap_or_else(|| "another restic process".to_string())
}

fn quoted(text: &str) -> Option<String> {
    let start = text.find('"')? + 1;
    let end = text[start..].find('"')?;
    Some(text[start..start + end].to_string())
}

/// The items named by `{"message_type":"error",...,"item":"/path"}` lines on stderr.
fn unreadable_items(stderr: &str) -> Vec<String> {
    #[derive(Deserialize)]
    struct ErrorLine {
        message_type: String,
        #[serde(default)]
        item: String,
    }
    stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<ErrorLine>(line).ok())
        .filter(|line| line.message_type == "error" && !line.item.is_empty())
        .map(|line| line.item)
        .collect()
}

/// RFC 3339 with an optional fraction and a `Z` or `±hh:mm` offset → `SystemTime`.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime> {
    let invalid = || anyhow!("{text:?} is not an RFC 3339 time");
    let (base, offset_seconds) = if let Some(base) = text.strip_suffix('Z') {
        (base, 0i64)
    } else {
        let sign_at = text.rfind(['+', '-']).filter(|&i| i > 10).ok_or_else(invalid)?;
        let (base, offset) = text.split_at(sign_at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (hours, minutes) = offset[1..].split_once(':').ok_or_else(invalid)?;
        let hours: i64 = hours.parse().map_err(|_| invalid())?;
        let minutes: i64 = minutes.parse().map_err(|_| invalid())?;
        (base, sign * (hours * 3600 + minutes * 60))
    };
    let (seconds_part, nanos) = match base.split_once('.') {
        Some((seconds_part, fraction)) => {
            let digits: String = fraction.chars().take(9).collect();
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                return Err(invalid());
            }
            let nanos: u32 = format!("{digits:0<9}").parse().map_err(|_| invalid())?;
            (seconds_part, nanos)
        }
        None => (base, 0),
    };
    let local = humantime::parse_rfc3339_weak(seconds_part).map_err(|_| invalid())?;
    let local_seconds = local.duration_since(UNIX_EPOCH).map_err(|_| invalid())?.as_secs() as i64;
    let utc_seconds = u64::try_from(local_seconds - offset_seconds).map_err(|_| invalid())?;
    Ok(UNIX_EPOCH + Duration::new(utc_seconds, nanos))
}

pub mod repair;

#[cfg(test)]
mod tests;
