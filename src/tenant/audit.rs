//! The per-client audit trail: one JSON line per task run that touched a client, appended
//! with a single `O_APPEND` write so concurrent runs never interleave. Dry runs write
//! nothing (they change nothing, and the log is a file).

use std::path::Path;

use serde::Serialize;

use crate::{effects::Change, fsutil, tenant::layout::ClientLayout};

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
    /// The runner's process id: tells the lines of concurrent runs apart.
    pub pid: u32,
    /// "ok" or "failed" for a task run; "event" for a line a script wrote.
    pub outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<serde_json::Value>,
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

/// Replaces every occurrence of a (non-empty) secret value inside the strings of `value`
/// by `<redacted>`.
pub fn redact(value: &mut serde_json::Value, secrets: &[String]) {
    match value {
        serde_json::Value::String(text) => {
            for secret in secrets.iter().filter(|s| !s.is_empty()) {
                if text.contains(secret.as_str()) {
                    *text = text.replace(secret.as_str(), "<redacted>");
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| redact(v, secrets)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| redact(v, secrets)),
        _ => {}
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secret_values_anywhere() {
        let mut value = serde_json::json!({
            "note": "password is s3cr3t-value-123 ok",
            "list": ["s3cr3t-value-123", 5],
            "other": "abc",
        });
        redact(&mut value, &["s3cr3t-value-123".into(), String::new()]);
        assert_eq!(value["note"], "password is <redacted> ok");
        assert_eq!(value["list"][0], "<redacted>");
        assert_eq!(value["other"], "abc");
    }

    #[test]
    fn a_record_is_one_json_line() {
        let record = AuditRecord {
            time: now_rfc3339(),
            task: "t",
            vars: serde_json::Map::new(),
            user: "u".into(),
            pid: std::process::id(),
            outcome: "ok",
            error: Some("multi\nline".into()),
            event: None,
            changes: &[],
        };
        let line = serde_json::to_string(&record).unwrap();
        assert!(!line.contains('\n'));
        let time = serde_json::from_str::<serde_json::Value>(&line).unwrap()["time"].as_str().unwrap().to_string();
        assert!(humantime::parse_rfc3339(&time).is_ok() && time.ends_with('Z'), "{time}");
    }
}
