//! What a killed restic leaves in a local repository, and how to tell it from what is
//! whole: an `init` stopped after its key and before its `config`; a second init's key whose
//! master key does not open the config; locks of restic processes of this host that are
//! gone. Each test looks at the files first and runs restic only when they say it may be
//! needed (every restic call costs a key derivation). A remote repository is left alone:
//! only its own tools see its files.

use std::{fs, path::Path};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::{Location, Repo};

/// The entries of one directory of a local repository (none when it does not exist).
fn entries(dir: &Path) -> Result<Vec<String>> {
    match fs::read_dir(dir) {
        Ok(list) => list
            .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("could not list {}", dir.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(error).with_context(|| format!("could not list {}", dir.display())),
    }
}

/// Whether any file lies anywhere under `dir`.
fn holds_files(dir: &Path) -> bool {
    walkdir::WalkDir::new(dir).into_iter().flatten().any(|e| e.file_type().is_file())
}

impl Location {
    /// The key files of a local repository (their ids); empty for a remote one. A restic
    /// killed while writing a key leaves a `<id>-tmp-...` file that is no key.
    pub(crate) fn key_files(&self) -> Result<Vec<String>> {
        match self {
            Self::Local(path) => Ok(entries(&path.join("keys"))?.into_iter().filter(|name| is_file_id(name)).collect()),
            Self::Remote(_) => Ok(Vec::new()),
        }
    }

    /// The lock files of a local repository (their ids); empty for a remote one.
    pub(crate) fn lock_files(&self) -> Result<Vec<String>> {
        match self {
            // Only locks restic finished writing: a restic killed while writing one leaves a
            // `<id>-tmp-...` file that is no lock (restic itself passes over it).
            Self::Local(path) => {
                Ok(entries(&path.join("locks"))?.into_iter().filter(|name| is_file_id(name)).collect())
            }
            Self::Remote(_) => Ok(Vec::new()),
        }
    }

    /// A local repository whose `init` was stopped: key files (finished or half-written
    /// `<id>-tmp-...` ones) but no `config`, and no data, index or snapshot (nothing that a
    /// fresh init would lose).
    pub(crate) fn is_half_initialized(&self) -> Result<bool> {
        let Self::Local(path) = self else { return Ok(false) };
        if path.join("config").exists() || entries(&path.join("keys"))?.is_empty() {
            return Ok(false);
        }
        if ["data", "index", "snapshots"].iter().any(|dir| holds_files(&path.join(dir))) {
            bail!(
                "the restic repository at {self} holds data but no config file; restore its config \
                 from a copy of the repository (a new init would orphan the data)"
            );
        }
        Ok(true)
    }

    /// Removes the keys a stopped `init` left, so the next init makes the only one.
    pub(crate) fn clear_half_init(&self) -> Result<()> {
        let Self::Local(path) = self else { return Ok(()) };
        // Half-written ones too: restic leaves them beside the key a new init makes.
        for name in entries(&path.join("keys"))? {
            let file = path.join("keys").join(&name);
            fs::remove_file(&file).with_context(|| format!("could not remove {}", file.display()))?;
        }
        Ok(())
    }
}

/// What `restic cat lock` says of a lock.
#[derive(Debug, Deserialize)]
struct LockFile {
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    pid: i64,
}

/// This host's name as restic records it in a lock.
fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer it is given.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if result != 0 {
        return String::new();
    }
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

/// A restic file name: the 64 hex digits of its id.
fn is_file_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether process `pid` of this host is gone.
pub(crate) fn process_gone(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only asks whether the process exists.
    let result = unsafe { libc::kill(pid, 0) };
    result != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

impl Repo {
    /// Locks of restic processes of this host that are gone (their ids and pids).
    pub(crate) fn stale_locks(&self) -> Result<Vec<(String, i64)>> {
        Ok(self.host_locks()?.into_iter().filter(|(_, pid)| process_gone(*pid)).collect())
    }

    /// Locks taken by restic processes of this host, gone or not (their ids and pids).
    pub(crate) fn host_locks(&self) -> Result<Vec<(String, i64)>> {
        let ids = self.location.lock_files()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let host = hostname();
        let mut found = Vec::new();
        for id in ids {
            let output = self.run("cat lock", self.command().args(["--no-lock", "cat", "lock", &id]))?;
            let lock: LockFile = serde_json::from_str(&output.stdout)
                .with_context(|| format!("restic cat lock {id} of {} printed no lock", self.location))?;
            if lock.hostname == host {
                found.push((id, lock.pid));
            }
        }
        Ok(found)
    }

    /// Removes the lock files `ids` of a local repository.
    pub(crate) fn remove_locks(&self, ids: &[String]) -> Result<()> {
        let Location::Local(path) = &self.location else { return Ok(()) };
        for id in ids {
            let file = path.join("locks").join(id);
            match fs::remove_file(&file) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error).with_context(|| format!("could not remove {}", file.display())),
            }
        }
        Ok(())
    }

    /// Keys of a local repository that this handle's password opens but whose master key
    /// does not open the config (a second init's): safe to remove, as long as another key
    /// of the password opens the config, which is proved here too (else nothing is
    /// returned: a damaged config would fail every key alike).
    pub(crate) fn keys_not_opening_config(&self) -> Result<Vec<String>> {
        let ids = self.location.key_files()?;
        if ids.len() < 2 {
            return Ok(Vec::new());
        }
        let (mut opening, mut not_opening) = (0, Vec::new());
        for id in ids {
            let hinted = self.command().arg(format!("--key-hint={id}")).args(["key", "list", "--json"]);
            let output = hinted.output()?;
            if output.success() {
                let keys: Vec<super::Key> = super::first_json(&output.stdout, "key list", &self.location)?;
                if keys.iter().any(|k| k.current && id.starts_with(&k.id)) {
                    opening += 1;
                }
            } else if output.stderr.contains(&format!("{id} is damaged: ciphertext verification failed")) {
                not_opening.push(id);
            } else {
                return Err(self.classify("key list", &output).into());
            }
        }
        Ok(if opening > 0 { not_opening } else { Vec::new() })
    }

    /// Removes the key file `id` of a local repository (restic itself may not open the
    /// repository while the key sorts first).
    pub(crate) fn remove_key_file(&self, id: &str) -> Result<()> {
        let Location::Local(path) = &self.location else { bail!("{} is not a local repository", self.location) };
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("{id:?} is not a restic key id");
        }
        let file = path.join("keys").join(id);
        fs::remove_file(&file).with_context(|| format!("could not remove {}", file.display()))
    }
}
