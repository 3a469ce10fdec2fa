//! Bringing a client's restic repository back from what a killed run left, through the
//! effects layer (so a dry run plans it and the step list says it): locks of restic
//! processes of this host that are gone, keys that no password on disk opens (a rotated-away
//! password's, a second init's), and the new-key password file of a stopped `key add`. A stopped `init` is redone by
//! `restic::init` (see `Location::is_half_initialized`).

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::{
    drivers::restic::{Location, NEW_KEY_FILE, Password, Repo, ResticError, repair},
    effects::Outcome,
    fsutil,
    tenant::{context::Context, layout::ClientLayout, repository, rotation},
};

/// How long a lock of a live restic process of this host may take to go away by itself.
const LIVE_LOCK_GRACE: Duration = Duration::from_secs(10);

/// Before a run uses the repository at `location`: the stale locks removed (reported as a
/// step), a new-key password file that a killed rotation left in the secrets dir, and keys
/// that no password on disk opens. `repo` opens the repository with the password on disk,
/// only when its files say something is left. Returns the number of keys removed.
pub fn before_use(
    cx: &Context,
    layout: &ClientLayout,
    location: &Location,
    repo: impl FnOnce() -> Result<Repo>,
) -> Result<usize> {
    if layout.secrets_dir.is_dir() {
        cx.effects.side_effect(|| {
            let prefix = format!(".{NEW_KEY_FILE}.");
            Ok(fsutil::remove_stale_temp_files(&layout.secrets_dir, &prefix, std::time::Duration::ZERO)?)
        })?;
    }
    let pending = rotation::read_optional(&cx.effects, &rotation::pending_path(layout))?;
    let extra_keys = location.key_files()?.len() > expected_keys(pending.is_some());
    if location.lock_files()?.is_empty() && !extra_keys {
        return Ok(0);
    }
    let repo = repo()?;
    remove_stale_locks(cx, location, &repo)?;
    if !extra_keys {
        return Ok(0);
    }
    let pending_password = match &pending {
        Some(values) => Some(repository::password_in(values, &rotation::pending_path(layout))?),
        None => None,
    };
    remove_keys_of_no_password_on_disk(cx, &repo, pending_password)
}

/// Key files a repository holds outside a rotation (one), and while `secrets.env.next` is
/// pending (the current password's and the new one's).
pub fn expected_keys(rotation_pending: bool) -> usize {
    if rotation_pending { 2 } else { 1 }
}

fn remove_stale_locks(cx: &Context, location: &Location, repo: &Repo) -> Result<()> {
    if location.lock_files()?.is_empty() {
        return Ok(());
    }
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

/// Why a removed key goes: the same words for every kind of key left behind.
fn removal_detail(id: &str) -> String {
    format!("key {} does not open the repository with the password on disk", &id[..id.len().min(8)])
}

/// Every key other than the one the password on disk opens (and, while a rotation is
/// pending, the one its new password opens) is removed: a rotated-away password's key that
/// a killed rotation left, or a second init's key whose master key does not open the
/// config. The key the password on disk opens never is; when that password opens nothing,
/// nothing is removed.
pub fn remove_keys_of_no_password_on_disk(cx: &Context, repo: &Repo, pending: Option<Password>) -> Result<usize> {
    let target = repo.location().to_string();
    cx.output.begin("restic key list", &target);
    let keys = match repo.key_list() {
        Ok(keys) => keys,
        // restic tried a second init's key first: the config does not open with it.
        Err(error) if format!("{error:#}").contains("ciphertext verification failed") => {
            let (removed, made) = remove_keys_not_opening_config(cx, repo)?;
            if removed == 0 {
                return Err(error);
            }
            // Keys only planned for removal are still there: listing again would fail alike.
            let rest = if made { remove_keys_of_no_password_on_disk(cx, repo, pending)? } else { 0 };
            return Ok(removed + rest);
        }
        Err(error) => return Err(error),
    };
    let mut keep: Vec<String> = keys.iter().filter(|k| k.current).map(|k| k.id.clone()).collect();
    if keep.is_empty() {
        return Ok(0);
    }
    if let Some(password) = pending {
        match repo.with_password(password).key_list() {
            Ok(listed) => keep.extend(listed.into_iter().filter(|k| k.current).map(|k| k.id)),
            Err(e) if matches!(ResticError::of(&e), Some(ResticError::WrongPassword { .. })) => {}
            Err(e) => return Err(e),
        }
    }
    let mut removed = 0;
    for key in keys.iter().filter(|k| !keep.contains(&k.id)) {
        cx.effects.apply("restic key remove", &target, &removal_detail(&key.id), Outcome::Removed, || {
            repo.key_remove(&key.id)
        })?;
        removed += 1;
    }
    Ok(removed)
}

/// Keys that the password on disk opens but that do not open the config (left by a second
/// `init` of one repository) are removed; a key that opens it never is. How many, and
/// whether any was removed now rather than only planned.
fn remove_keys_not_opening_config(cx: &Context, repo: &Repo) -> Result<(usize, bool)> {
    let ids = repo.keys_not_opening_config()?;
    let target = repo.location().to_string();
    let mut made = false;
    for id in &ids {
        let applied = cx
            .effects
            .apply("restic key remove", &target, &removal_detail(id), Outcome::Removed, || repo.remove_key_file(id))?;
        made |= applied.value.is_some();
    }
    Ok((ids.len(), made))
}
