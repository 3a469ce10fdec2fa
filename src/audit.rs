//! The per-client audit trail: one JSON line per task run that touched a client, appended
//! with a single `O_APPEND` write so concurrent runs never interleave.

use std::path::Path;

use serde::Serialize;

use crate::{effects::Change, fsutil, layout::ClientLayout};

/// Mode of every log file.
pub const LOG_FILE_MODE: u32 = 0o640;

#[derive(Serialize)]
pub struct AuditRecord<'a> {
    /// UTC, RFC 3339.
    pub time: String,
    pub task: &'a str,
    /// Task variables; secret ones are replaced by "<redacted>".
    pub vars: serde_json::Map<String, serde_json::Value>,
    pub user: String,
    /// "ok" or "failed".
    pub outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub changes: &'a [Change],
}

/// Who ran the task: the invoking user behind sudo, else the login name, else the
/// name of the process's uid in /etc/passwd, else `uid N`.
pub fn current_user() -> String {
    if let Some(name) =
        ["SUDO_USER", "USER", "LOGNAME"].iter().find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    {
        return name;
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:").map(|r| r.split_whitespace().next().unwrap_or("").to_string()))
        })
        .unwrap_or_default();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|l| {
                let fields: Vec<&str> = l.split(':').collect();
                (fields.len() > 2 && fields[2] == uid).then(|| fields[0].to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Appends `record` to the client's audit.log when the client's log dir exists
/// (it is created by setup-log-segmentation); returns whether it was written.
pub fn append(layout: &ClientLayout, record: &AuditRecord) -> std::io::Result<bool> {
    if !Path::new(&layout.log_dir).is_dir() {
        return Ok(false);
    }
    let line = serde_json::to_string(record).map_err(std::io::Error::other)?;
    fsutil::append_line(&layout.audit_log, &line, LOG_FILE_MODE)?;
    Ok(true)
}
