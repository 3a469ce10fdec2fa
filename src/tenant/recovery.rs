//! Bringing a client's restic repository back from what a killed run left, through the
//! effects layer (so a dry run plans it and the step list says it): locks of restic
//! processes of this host that are gone, keys of a second init that do not open the config,
//! and the new-key password file of a stopped `key add`. A stopped `init` is redone by
//! `restic::init` (see `Location::is_half_initialized`).

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::{
    drivers::restic::{Location, NEW_KEY_FILE, Repo, repair},
    effects::Outcome,
    fsutil,
    tenant::context::Context,
    tenant::layout::ClientLayout,
};

/// How long a lock of a live restic process of this host may take to go away by itself.
const LIVE_LOCK_GRACE: Duration = Duration::from_secs(10);

/// Before a run uses the repository at `location`: the stale locks removed (reported as a
/// step), and a new-key password file that a killed rotation left in the secrets dir.
/// `repo` opens the repository, only when it holds lock files.
pub fn before_use(
    cx: &Context,
    layout: &ClientLayout,
    location: &Location,
    repo: impl FnOnce() -> Result<Repo>,
) -> Result<()> {
    if layout.secrets_dir.is_dir() {
        cx.effects.side_effect(|| {
            let prefix = format!(".{NEW_KEY_FILE}.");
            Ok(fsutil::remove_stale_temp_files(&layout.secrets_dir, &prefix, std::time::Duration::ZERO)?)
        })?;
    }
    if location.lock_files()?.is_empty() {
        return Ok(());
    }
    let repo = repo()?;
    let locks = repo.host_locks()?;
    // The restic child of a run killed a moment ago is still cleaning up (its dying parent
    // sent it SIGTERM): give it a few seconds before its lock counts as live. This run holds
    // the client lock, so no run of agency's own holds it.
    let waited = Instant::now();
    while locks.iter().any(|(_, pid)| !repair::process_gone(*pid)) && waited.elapsed() < LIVE_LOCK_GRACE {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = location.lock_files()?;
    let stale: Vec<(String, i64)> =
        locks.into_iter().filter(|(id, pid)| left.contains(id) && repair::process_gone(*pid)).collect();
    if stale.is_empty() {
        return Ok(());
    }
    let pids: Vec<String> = stale.iter().map(|(_, pid)| pid.to_string()).collect();
    let detail = format!("stale lock(s) of restic PID {} (gone)", pids.join(", "));
    let ids: Vec<String> = stale.into_iter().map(|(id, _)| id).collect();
    let target = repo.location().to_string();
    cx.effects.apply("restic unlock", &target, &detail, Outcome::Removed, || repo.remove_locks(&ids))?;
    Ok(())
}

/// Keys that the password on disk opens but that do not open the config (left by a second
/// `init` of one repository) are removed; a key that opens it never is.
pub fn remove_keys_not_opening_config(cx: &Context, repo: &Repo) -> Result<usize> {
    let ids = repo.keys_not_opening_config()?;
    let target = repo.location().to_string();
    for id in &ids {
        let detail = format!("key {} does not open the repository's config", &id[..id.len().min(8)]);
        cx.effects.apply("restic key remove", &target, &detail, Outcome::Removed, || repo.remove_key_file(id))?;
    }
    Ok(ids.len())
}
