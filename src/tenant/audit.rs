//! The per-client audit trail: one JSON line per task run that touched a client, appended
//! with a single `O_APPEND` write so concurrent runs never interleave. Dry runs write
//! nothing (they change nothing, and the log is a file).

use std::path::Path;

use serde::Serialize;

use crate::{effects::Change, fsutil, tenant::layout::ClientLayout, tenant::policy::LOG_FILE_MODE};

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
/// name of the process's uid in the user database, else `uid N`.
pub fn current_user() -> String {
    if let Some(name) =
        ["SUDO_USER", "USER", "LOGNAME"].iter().find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    {
        return name;
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    user_name(uid).unwrap_or_else(|| format!("uid {uid}"))
}

/// The name of `uid` in the user database (`getpwuid_r`: /etc/passwd, LDAP ... as nsswitch
/// says), `None` when it has none.
fn user_name(uid: libc::uid_t) -> Option<String> {
    let mut buffer = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: an all-zero passwd is a valid value for getpwuid_r to fill in.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is to a live local, `buffer` of the length given; on success the
        // strings of `entry` point into `buffer`, which outlives their use below.
        let rc = unsafe { libc::getpwuid_r(uid, &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
        if rc == libc::ERANGE && buffer.len() < 1 << 20 {
            buffer.resize(buffer.len() * 2, 0);
            continue;
        }
        if rc != 0 || found.is_null() || entry.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success pw_name is a NUL-terminated string inside `buffer`.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.pw_name) };
        return Some(name.to_string_lossy().into_owned());
    }
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
    fn user_names_come_from_the_user_database() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        let listed: Vec<u32> = passwd.lines().filter_map(|l| l.split(':').nth(2)?.parse().ok()).collect();
        let unlisted = (60000..65000).find(|uid| !listed.contains(uid)).unwrap();
        assert_eq!(user_name(unlisted), None);
    }

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
