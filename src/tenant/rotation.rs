//! Secret rotation (SPEC §7 rotate-secrets), the file side: the next generation written
//! beside the current one (`secrets.env.next`), the previous generations kept in
//! `history/` (0600, pruned to the newest few), and which values a generation changes.
//!
//! The crash-safe order is the task's (`tasks/rotate-secrets.rhai`): next generation
//! written → applied (restic key added, Keycloak password set) → previous generation copied
//! to the history and `secrets.env.next` renamed over `secrets.env` (atomic) → keys of
//! previous passwords removed → history pruned. A pending `secrets.env.next` left by an
//! interrupted run is always reused, never regenerated, since its values may already be
//! applied somewhere.

use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::{Result, bail};
use indexmap::IndexMap;

use crate::{effects::Effects, format::suggest, tenant::layout::ClientLayout, tenant::secrets};

/// The next generation, beside `secrets.env` while a rotation is under way.
pub const PENDING_FILE: &str = "secrets.env.next";
/// History files are `history/secrets.env.<UTC time to the nanosecond>`, so names sort by age.
pub const HISTORY_PREFIX: &str = "secrets.env.";

pub fn pending_path(layout: &ClientLayout) -> PathBuf {
    layout.secrets_dir.join(PENDING_FILE)
}

/// Reads an env file; `None` when it does not exist.
pub fn read_optional(effects: &Effects, path: &Path) -> Result<Option<IndexMap<String, String>>> {
    if effects.exists(path) { secrets::read_planned(effects, path).map(Some) } else { Ok(None) }
}

/// The client's current secrets; a client without them is an error.
pub fn current(effects: &Effects, layout: &ClientLayout) -> Result<IndexMap<String, String>> {
    let values = secrets::read_planned(effects, &layout.secrets_file)?;
    if values.is_empty() {
        bail!(
            "client {} has no secrets ({} is missing or empty); run create-client first",
            layout.id,
            layout.secrets_file.display()
        );
    }
    Ok(values)
}

/// The names to rotate: all of them when `requested` is empty. An unknown name is an error
/// that lists the valid ones.
pub fn check_names(
    layout: &ClientLayout,
    current: &IndexMap<String, String>,
    requested: &[String],
) -> Result<Vec<String>> {
    if requested.is_empty() {
        return Ok(current.keys().cloned().collect());
    }
    for name in requested {
        if !current.contains_key(name) {
            let hint = suggest::did_you_mean(name, current.keys().map(String::as_str))
                .map(|close| format!(" (did you mean {close}?)"))
                .unwrap_or_default();
            let valid: Vec<&str> = current.keys().map(String::as_str).collect();
            // The operator's usage error (exit 2), like an unknown variable.
            return Err(crate::error::Error::usage(format!(
                "unknown secret {name} for client {}{hint}; its secrets are {}",
                layout.id,
                valid.join(", ")
            ))
            .into());
        }
    }
    Ok(current.keys().filter(|k| requested.contains(k)).cloned().collect())
}

/// The generation a rotation swaps in.
#[derive(Debug, Clone, PartialEq)]
pub struct NextGeneration {
    pub values: IndexMap<String, String>,
    /// Every name whose value changes, in file order.
    pub rotating: Vec<String>,
    /// Of those, the ones a pending generation of an interrupted run already held.
    pub resumed: Vec<String>,
}

/// The next generation: the current values, with the values of an interrupted run's pending
/// generation where it changed them (they may be applied already), and fresh values from
/// `generate` for the names asked for that it did not change.
pub fn next_generation(
    current: &IndexMap<String, String>,
    pending: Option<&IndexMap<String, String>>,
    names: &[String],
    mut generate: impl FnMut() -> Result<String>,
) -> Result<NextGeneration> {
    let mut values = current.clone();
    let mut resumed = Vec::new();
    if let Some(pending) = pending {
        for (key, value) in pending {
            if current.get(key).is_some_and(|now| now != value) {
                values.insert(key.clone(), value.clone());
                resumed.push(key.clone());
            }
        }
    }
    for name in names {
        if !resumed.contains(name) {
            let mut fresh = generate()?;
            while Some(&fresh) == current.get(name) {
                fresh = generate()?;
            }
            values.insert(name.clone(), fresh);
        }
    }
    let rotating = current.keys().filter(|k| values.get(*k) != current.get(*k)).cloned().collect();
    let resumed = current.keys().filter(|k| resumed.contains(k)).cloned().collect();
    Ok(NextGeneration { values, rotating, resumed })
}

/// The history files, oldest first, as the steps so far left them.
pub fn history_files(effects: &Effects, layout: &ClientLayout) -> Vec<PathBuf> {
    let dir = &layout.secrets_history_dir;
    effects
        .list(dir)
        .into_iter()
        .filter(|name| name.starts_with(HISTORY_PREFIX))
        .map(|name| dir.join(name))
        .filter(|path| effects.kind(path) == "file")
        .collect()
}

/// The name of a new history file: `secrets.env.20261127T124739.123456789Z`.
pub fn history_name(now: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_nanos(now).to_string().replace(['-', ':'], "");
    format!("{HISTORY_PREFIX}{stamp}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> IndexMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn counter() -> impl FnMut() -> Result<String> {
        let mut n = 0;
        move || {
            n += 1;
            Ok(format!("fresh{n}"))
        }
    }

    #[test]
    fn fresh_values_for_the_names_asked() {
        let current = map(&[("A", "a"), ("B", "b"), ("C", "c")]);
        let next = next_generation(&current, None, &["B".into()], counter()).unwrap();
        assert_eq!(next.values, map(&[("A", "a"), ("B", "fresh1"), ("C", "c")]));
        assert_eq!(next.rotating, ["B"]);
        assert!(next.resumed.is_empty());
    }

    #[test]
    fn a_pending_generation_is_reused_not_regenerated() {
        let current = map(&[("A", "a"), ("B", "b"), ("C", "c")]);
        let pending = map(&[("A", "a"), ("B", "p-b"), ("C", "c")]);
        let same = next_generation(&current, Some(&pending), &["B".into()], counter()).unwrap();
        assert_eq!(same.values, pending);
        assert_eq!(
            (same.rotating.as_slice(), same.resumed.as_slice()),
            (&["B".to_string()][..], &["B".to_string()][..])
        );
        // Asked for more: the pending value stays, the rest is fresh.
        let all = next_generation(&current, Some(&pending), &["A".into(), "B".into(), "C".into()], counter()).unwrap();
        assert_eq!(all.values, map(&[("A", "fresh1"), ("B", "p-b"), ("C", "fresh2")]));
        assert_eq!(all.rotating, ["A", "B", "C"]);
        assert_eq!(all.resumed, ["B"]);
        // Asked for another one: the pending change is still completed.
        let other = next_generation(&current, Some(&pending), &["C".into()], counter()).unwrap();
        assert_eq!(other.rotating, ["B", "C"]);
    }

    #[test]
    fn a_fresh_value_never_equals_the_old_one() {
        let current = map(&[("A", "fresh1")]);
        let next = next_generation(&current, None, &["A".into()], counter()).unwrap();
        assert_eq!(next.values["A"], "fresh2");
    }

    #[test]
    fn history_names_sort_by_time() {
        let early = history_name(std::time::UNIX_EPOCH + std::time::Duration::new(1_800_000_000, 5));
        let late = history_name(std::time::UNIX_EPOCH + std::time::Duration::new(1_800_000_000, 40));
        assert_eq!(early, "secrets.env.20270115T080000.000000005Z");
        assert!(early < late);
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let roots = crate::tenant::layout::Roots {
            root: "/srv/a".into(),
            log_root: "/srv/l".into(),
            backup_root: "/srv/b".into(),
            logrotate_dir: "/srv/r".into(),
            repository_base: String::new(),
        };
        let layout = ClientLayout::new(&roots, "acme").unwrap();
        let current = map(&[("RESTIC_PASSWORD", "x"), ("DB_PASSWORD", "y")]);
        let error = check_names(&layout, &current, &["RESTIC_PASWORD".into()]).unwrap_err().to_string();
        assert_eq!(
            error,
            "unknown secret RESTIC_PASWORD for client acme (did you mean RESTIC_PASSWORD?); its secrets are RESTIC_PASSWORD, DB_PASSWORD"
        );
        assert_eq!(check_names(&layout, &current, &[]).unwrap(), ["RESTIC_PASSWORD", "DB_PASSWORD"]);
    }
}
