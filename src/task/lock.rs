//! Locks that keep two runs from interleaving on one client (SPEC §7): an exclusive lock
//! per client, taken under a shared lock on "all clients"; tasks that change every
//! client take "all clients" exclusively.

use std::{
    fs::{File, OpenOptions, TryLockError},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use crate::{
    effects::output::Output,
    error::{Error, Result},
    fsutil,
};

/// Held locks; dropping it releases them.
pub struct LockGuard {
    files: Vec<File>,
}

impl Drop for LockGuard {
    /// Unlocks before the files close: a child forked at this moment shares the open files
    /// until its exec, and closing alone would leave the lock held through it.
    fn drop(&mut self) {
        for file in &self.files {
            let _ = file.unlock();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Shared,
    Exclusive,
}

/// Takes one lock file, creating it unless this is a dry run (`create` false): then a missing
/// file is no lock to wait for, and `None` comes back.
fn take(
    dir: &Path,
    name: &str,
    mode: Mode,
    create: bool,
    no_wait: bool,
    output: &Output,
    what: &str,
) -> Result<Option<File>> {
    let path = dir.join(name);
    // A dry run opens read-only (flock needs no write access): it must work on a read-only root.
    let opened = OpenOptions::new().read(true).write(create).create(create).truncate(false).mode(0o600).open(&path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::failure(format!("cannot open lock file {}: {e}", path.display()))),
    };
    let attempt = match mode {
        Mode::Shared => file.try_lock_shared(),
        Mode::Exclusive => file.try_lock(),
    };
    match attempt {
        Ok(()) => return Ok(Some(file)),
        Err(TryLockError::Error(e)) => return Err(Error::failure(format!("cannot lock {}: {e}", path.display()))),
        Err(TryLockError::WouldBlock) if no_wait => {
            return Err(Error::failure(format!("another agency run is working on {what}; not waiting (--no-wait)")));
        }
        Err(TryLockError::WouldBlock) => output.note(&format!("waiting for another agency run working on {what} ...")),
    }
    let locked = match mode {
        Mode::Shared => file.lock_shared(),
        Mode::Exclusive => file.lock(),
    };
    locked.map_err(|e| Error::failure(format!("cannot lock {}: {e}", path.display())))?;
    Ok(Some(file))
}

/// Locks one client (`Some(id)`) or every client (`None`). Without `create` (the runner's
/// dry run) nothing may be created: only lock files that exist are taken (a missing one is
/// held by nobody).
pub fn acquire(
    locks_dir: &Path,
    client: Option<&str>,
    create: bool,
    no_wait: bool,
    output: &Output,
) -> Result<LockGuard> {
    if !create && !locks_dir.is_dir() {
        return Ok(LockGuard { files: Vec::new() });
    }
    if create {
        // The root itself must stay traversable for the group that reads client configs.
        if let Some(root) = locks_dir.parent() {
            fsutil::create_dir(root, 0o755)
                .map_err(|e| Error::failure(format!("cannot create {}: {e}", root.display())))?;
        }
        fsutil::create_dir(locks_dir, 0o700)
            .map_err(|e| Error::failure(format!("cannot create lock directory {}: {e}", locks_dir.display())))?;
    }
    let files = match client {
        Some(id) => vec![
            take(locks_dir, "all.lock", Mode::Shared, create, no_wait, output, "all clients")?,
            take(
                locks_dir,
                &format!("client-{id}.lock"),
                Mode::Exclusive,
                create,
                no_wait,
                output,
                &format!("client {id}"),
            )?,
        ],
        None => vec![take(locks_dir, "all.lock", Mode::Exclusive, create, no_wait, output, "all clients")?],
    };
    Ok(LockGuard { files: files.into_iter().flatten().collect() })
}
