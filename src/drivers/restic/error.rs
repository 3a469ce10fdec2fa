//! Why a restic call failed, classified from its stderr (wrong password, locked, missing
//! repository, unreadable items).

use super::*;

use std::fmt;

use serde::Deserialize;

/// A restic failure, classified. Each renders as one sentence naming the repository.
#[derive(Debug)]
pub(crate) enum ResticError {
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
    pub(crate) fn of(error: &anyhow::Error) -> Option<&ResticError> {
        error.downcast_ref::<ResticError>()
    }
}

/// restic's own error line: the `Fatal:` line without the prefix, else the first line.
pub(super) fn error_line(stderr: &str) -> String {
    let lines = || stderr.lines().map(str::trim).filter(|line| !line.is_empty());
    lines()
        .find_map(|line| line.strip_prefix("Fatal: "))
        .or_else(|| lines().next())
        .unwrap_or("no error message")
        .to_string()
}

/// "repository is already locked exclusively by PID 8277 on vm by root (UID 0, GID 0)"
/// → "exclusively by PID 8277 on vm by root".
pub(super) fn lock_holder(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|line| line.split_once("repository is already locked ").map(|(_, rest)| rest))
        .map(|rest| rest.split(" (UID").next().unwrap_or(rest).trim().to_string())
        .unwrap_or_else(|| "another restic process".to_string())
}

pub(super) fn quoted(text: &str) -> Option<String> {
    let start = text.find('"')? + 1;
    let end = text[start..].find('"')?;
    Some(text[start..start + end].to_string())
}

/// The items named by `{"message_type":"error",...,"item":"/path"}` lines on stderr.
pub(super) fn unreadable_items(stderr: &str) -> Vec<String> {
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
