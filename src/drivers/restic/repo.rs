//! One repository: every restic command against it, with the password on stdin.

use super::*;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

use super::process::{Command, ProcessOutput, Running};

/// A handle on one repository with its password.
#[derive(Debug, Clone)]
pub struct Repo {
    pub(super) program: PathBuf,
    pub(super) location: Location,
    pub(super) password: Password,
}

impl Repo {
    pub(crate) fn location(&self) -> &Location {
        &self.location
    }

    /// The same repository opened with another password.
    pub(crate) fn with_password(&self, password: Password) -> Repo {
        Repo { password, ..self.clone() }
    }

    /// A restic command for this repository: repository and password in the environment;
    /// variables of the operator's shell that would override or conflict with them are
    /// emptied (restic treats an empty value as unset).
    pub(super) fn command(&self) -> Command {
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
    pub(super) fn run(&self, action: &'static str, command: Command) -> Result<ProcessOutput> {
        let output = command.output()?;
        if output.success() { Ok(output) } else { Err(self.classify(action, &output).into()) }
    }

    pub(super) fn classify(&self, action: &'static str, output: &ProcessOutput) -> ResticError {
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
        self.start_init()?.wait()
    }

    /// Starts creating the repository and returns while restic derives its key, so other
    /// work can run meanwhile; [`InitRunning::wait`] says how it ended, as [`Repo::init`].
    pub fn start_init(&self) -> Result<InitRunning> {
        if self.location.is_initialized() == Some(true) {
            return Err(ResticError::AlreadyInitialized { repo: self.location.to_string() }.into());
        }
        Ok(InitRunning { repo: self.clone(), child: self.command().arg("init").start()? })
    }

    /// Initializes unless already initialized; `true` when it created the repository.
    /// A local repository with its config file is left alone without running restic.
    #[cfg(test)]
    pub(crate) fn ensure_initialized(&self) -> Result<bool> {
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
    pub(crate) fn open(&self) -> Result<()> {
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
        let output = ProcessOutput {
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
    pub(crate) fn snapshots(&self, tags: &[String]) -> Result<Vec<BackupSnapshot>> {
        let mut command = self.command().args(["snapshots", "--json"]);
        if let Some(filter) = tag_filter(tags)? {
            command = command.arg(filter);
        }
        let output = self.run("snapshots", command)?;
        first_json(&output.stdout, "snapshots", &self.location)
    }

    /// Applies `policy` (`restic forget`), then `prune`s unreferenced data when asked.
    pub(crate) fn forget(&self, policy: &Retention, prune: bool) -> Result<ForgetReport> {
        self.forget_with(policy, if prune { &["--prune"] } else { &[] })
    }

    /// What `forget` would keep and remove now, changing nothing (`restic forget --dry-run`).
    pub(crate) fn forget_plan(&self, policy: &Retention) -> Result<ForgetReport> {
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
        let oldest_first = |a: &BackupSnapshot, b: &BackupSnapshot| a.system_time().ok().cmp(&b.system_time().ok());
        report.kept.sort_by(oldest_first);
        report.removed.sort_by(oldest_first);
        Ok(report)
    }

    /// `restic check`, reading back `read_data_subset` of the data (e.g. `"10%"`, `"1/5"`)
    /// when given. Damage is [`ResticError::Damaged`].
    pub(crate) fn check(&self, read_data_subset: Option<&str>) -> Result<()> {
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
    pub(crate) fn key_add(&self, new_password: &Password, secrets_dir: &Path) -> Result<()> {
        let file = crate::fsutil::secret_temp_file(secrets_dir, NEW_KEY_FILE, new_password.expose().as_bytes())
            .with_context(|| format!("could not write the new restic password file in {}", secrets_dir.display()))?;
        let command = self.command().args(["key", "add"]).arg(format!("--new-password-file={}", file.path().display()));
        self.run("key add", command)?;
        Ok(())
    }

    /// The repository's keys; `current` marks the one this handle's password opens.
    pub(crate) fn key_list(&self) -> Result<Vec<Key>> {
        let output = self.run("key list", self.command().args(["key", "list", "--json"]))?;
        first_json(&output.stdout, "key list", &self.location)
    }

    /// Removes key `id` (restic refuses to remove the key in use by this handle).
    pub(crate) fn key_remove(&self, id: &str) -> Result<()> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("{id:?} is not a restic key id");
        }
        self.run("key remove", self.command().args(["key", "remove", id]))?;
        Ok(())
    }

    /// Removes stale locks (those of processes that are gone); live locks stay.
    #[cfg(test)]
    pub(crate) fn unlock(&self) -> Result<()> {
        self.run("unlock", self.command().arg("unlock"))?;
        Ok(())
    }
}

/// A `restic init` started by [`Repo::start_init`].
pub struct InitRunning {
    repo: Repo,
    child: Running,
}

impl InitRunning {
    /// Waits for restic; a non-zero exit is classified as for any restic command.
    pub fn wait(self) -> Result<()> {
        let output = self.child.wait()?;
        if output.success() { Ok(()) } else { Err(self.repo.classify("init", &output).into()) }
    }
}
