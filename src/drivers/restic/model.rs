//! What restic takes and reports: backup requests, progress and summary, snapshots, keys,
//! retention policies and what `forget` removed.

use super::*;

use std::{path::PathBuf, time::SystemTime};

use anyhow::{Result, bail};
use serde::Deserialize;

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
pub(crate) struct BackupSnapshot {
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

impl BackupSnapshot {
    /// The snapshot's time as a `SystemTime`.
    pub(crate) fn system_time(&self) -> Result<SystemTime> {
        parse_rfc3339(&self.time)
    }
}

/// A key as `restic key list --json` lists it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub(crate) struct Key {
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
pub(crate) struct Retention {
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
    pub(crate) fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_hourly.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
            && self.keep_yearly.is_none()
            && self.keep_within.is_none()
    }

    pub(super) fn args(&self) -> Result<Vec<String>> {
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
pub(crate) struct ForgetReport {
    pub kept: Vec<BackupSnapshot>,
    pub removed: Vec<BackupSnapshot>,
}

#[derive(Deserialize)]
pub(super) struct ForgetGroup {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(super) keep: Vec<BackupSnapshot>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(super) remove: Vec<BackupSnapshot>,
}
