//! Arguments and output of the restic CLI: tags, snapshot ids, JSON message lines, times.

use super::*;

use std::time::SystemTime;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, de::DeserializeOwned};

/// `--tag=x`: the `=` form keeps a value from being read as a flag; restic splits
/// tags on commas, so a comma is refused.
pub(super) fn tag_arg(tag: &str) -> Result<String> {
    if tag.is_empty() || tag.contains(',') || tag.chars().any(char::is_whitespace) {
        bail!("restic tag {tag:?} must be non-empty, without commas or spaces");
    }
    Ok(format!("--tag={tag}"))
}

/// A filter on snapshots carrying every one of `tags`: `--tag=a,b` (restic reads repeated
/// `--tag` options as "any of").
pub(super) fn tag_filter(tags: &[String]) -> Result<Option<String>> {
    if tags.is_empty() {
        return Ok(None);
    }
    for tag in tags {
        tag_arg(tag)?;
    }
    Ok(Some(format!("--tag={}", tags.join(","))))
}

pub(super) fn check_snapshot_id(snapshot: &str) -> Result<()> {
    if snapshot == "latest" || (!snapshot.is_empty() && snapshot.chars().all(|c| c.is_ascii_hexdigit())) {
        Ok(())
    } else {
        bail!("{snapshot:?} is not a snapshot id (hex digits) or `latest`")
    }
}

pub(super) fn message_type(line: &str) -> Option<&str> {
    // Cheap pre-check before a full parse; status lines arrive up to 60 times a second.
    let start = line.find("\"message_type\":\"")? + "\"message_type\":\"".len();
    let end = line[start..].find('"')?;
    Some(&line[start..start + end])
}

/// Parses the first JSON value of `stdout` (restic may print text after it).
pub(super) fn first_json<T: DeserializeOwned>(stdout: &str, action: &str, location: &Location) -> Result<T> {
    let start = stdout.find(['[', '{']).unwrap_or(0);
    serde_json::Deserializer::from_str(&stdout[start..])
        .into_iter::<T>()
        .next()
        .unwrap_or_else(|| serde_json::from_str::<T>(""))
        .with_context(|| format!("could not parse the JSON output of restic {action} for {location}"))
}

pub(super) fn null_as_empty<'de, D, T>(deserializer: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// RFC 3339 with an optional fraction and a `Z` or `±hh:mm` offset → `SystemTime`.
pub(crate) fn parse_rfc3339(text: &str) -> Result<SystemTime> {
    let time: jiff::Timestamp = text.parse().map_err(|_| anyhow!("{text:?} is not an RFC 3339 time"))?;
    Ok(SystemTime::from(time))
}
