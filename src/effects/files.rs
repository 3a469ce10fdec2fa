//! Files and directories through the effects layer. Every mutation is a step; in a dry run
//! the step is only planned, and what it would have left is kept here so that the reads of
//! later steps ([`Effects::read`], [`Effects::mode`] ...) see it: a plan reads its own writes.
//! Paths arrive confined to the roots by the caller.

use std::{
    collections::BTreeMap,
    fs, io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail, ensure};

use super::{Effects, Outcome};
use crate::fsutil;

/// What a planned step left at a path.
#[derive(Debug, Clone)]
enum Entry {
    File { bytes: Vec<u8>, mode: u32 },
    Dir { mode: u32 },
    Gone,
}

/// The paths planned steps of a dry run changed, each with what it would hold now.
#[derive(Debug, Default)]
pub(super) struct PlannedFiles(BTreeMap<PathBuf, Entry>);

impl PlannedFiles {
    /// The planned entry at `path`: its own, or `Gone` when a planned removal or move took
    /// away a directory above it.
    fn get(&self, path: &Path) -> Option<Entry> {
        if let Some(entry) = self.0.get(path) {
            return Some(entry.clone());
        }
        path.ancestors().skip(1).find_map(|dir| matches!(self.0.get(dir), Some(Entry::Gone)).then_some(Entry::Gone))
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} does not exist", path.display()))
}

impl Effects {
    fn planned(&self, path: &Path) -> Option<Entry> {
        self.planned_files.borrow().get(path)
    }

    /// Keeps what a step would have left at `path`, when this run only plans.
    fn plan(&self, path: &Path, entry: Entry) {
        if self.dry_run {
            self.planned_files.borrow_mut().0.insert(path.to_path_buf(), entry);
        }
    }

    /// The bytes of the file at `path`, as the steps so far left it.
    pub fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        match self.planned(path) {
            Some(Entry::File { bytes, .. }) => Ok(bytes),
            Some(Entry::Dir { .. }) => Err(io::Error::new(io::ErrorKind::IsADirectory, path.display().to_string())),
            Some(Entry::Gone) => Err(not_found(path)),
            None => fs::read(path),
        }
    }

    /// [`Effects::read`] as text.
    pub fn read_to_string(&self, path: &Path) -> io::Result<String> {
        String::from_utf8(self.read(path)?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// The permission bits at `path` (following a symlink), `None` when nothing is there.
    pub fn mode(&self, path: &Path) -> Option<u32> {
        match self.planned(path) {
            Some(Entry::File { mode, .. } | Entry::Dir { mode }) => Some(mode),
            Some(Entry::Gone) => None,
            None => fsutil::mode(path),
        }
    }

    /// Whether anything is at `path` (following a symlink).
    pub fn exists(&self, path: &Path) -> bool {
        self.mode(path).is_some()
    }

    /// Whether `path` is a directory (following a symlink).
    pub fn is_dir(&self, path: &Path) -> bool {
        match self.planned(path) {
            Some(entry) => matches!(entry, Entry::Dir { .. }),
            None => path.is_dir(),
        }
    }

    /// `"file"`, `"dir"`, `"symlink"`, `"other"` or `"missing"`, never following a symlink.
    pub fn kind(&self, path: &Path) -> &'static str {
        match self.planned(path) {
            Some(Entry::File { .. }) => "file",
            Some(Entry::Dir { .. }) => "dir",
            Some(Entry::Gone) => "missing",
            None => fsutil::kind(fs::symlink_metadata(path).ok().as_ref()),
        }
    }

    /// The sorted names in `dir`, none when it is missing.
    pub fn list(&self, dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = match self.planned(dir) {
            Some(Entry::Gone) => return Vec::new(),
            _ => fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect(),
        };
        for (path, entry) in &self.planned_files.borrow().0 {
            let Some(name) = path.strip_prefix(dir).ok().filter(|_| path.parent() == Some(dir)) else { continue };
            let name = name.display().to_string();
            match entry {
                Entry::Gone => names.retain(|n| *n != name),
                _ if !names.contains(&name) => names.push(name),
                _ => {}
            }
        }
        names.sort();
        names
    }

    /// Writes `bytes` atomically, the file having `mode` from its creation; `detail` replaces
    /// the default "mode NNNN" (env files list their keys there, never their values).
    pub fn write_file(&self, path: &Path, bytes: &[u8], mode: u32, detail: &str) -> Result<Outcome> {
        let needed = match (self.read(path), self.mode(path)) {
            (Ok(current), Some(current_mode)) if current == bytes && current_mode == mode => Outcome::Unchanged,
            (Ok(_), _) => Outcome::Updated,
            (Err(_), _) => Outcome::Created,
        };
        let detail = if detail.is_empty() { format!("mode {mode:04o}") } else { format!("mode {mode:04o}; {detail}") };
        let outcome = self
            .apply("write", &path.display().to_string(), &detail, needed, || {
                if let Some(parent) = path.parent() {
                    ensure!(self.is_dir(parent), "directory {} does not exist", parent.display());
                }
                Ok(fsutil::write_atomic(path, bytes, mode)?)
            })?
            .outcome;
        if outcome != Outcome::Unchanged {
            self.plan(path, Entry::File { bytes: bytes.to_vec(), mode });
        }
        Ok(outcome)
    }

    /// Creates a directory with `mode`, or repairs the mode of one that is there.
    pub fn mkdir(&self, path: &Path, mode: u32) -> Result<Outcome> {
        let needed = match self.mode(path) {
            None => Outcome::Created,
            Some(current) if current != mode => Outcome::Updated,
            Some(_) => Outcome::Unchanged,
        };
        let outcome = self
            .apply("mkdir", &path.display().to_string(), &format!("mode {mode:04o}"), needed, || {
                fsutil::create_dir(path, mode)?;
                Ok(fs::set_permissions(path, PermissionsExt::from_mode(mode))?)
            })?
            .outcome;
        if outcome != Outcome::Unchanged {
            self.plan(path, Entry::Dir { mode });
        }
        Ok(outcome)
    }

    /// Creates an empty file if none is there, and repairs its mode. Refuses a symlink.
    pub fn touch(&self, path: &Path, mode: u32) -> Result<Outcome> {
        refuse_symlink(self, path)?;
        let (needed, detail) = match self.mode(path) {
            None => (Outcome::Created, format!("mode {mode:04o}")),
            Some(current) if current != mode => (Outcome::Updated, format!("mode {current:04o} -> {mode:04o}")),
            Some(_) => (Outcome::Unchanged, format!("mode {mode:04o}")),
        };
        let outcome = self
            .apply("file", &path.display().to_string(), &detail, needed, || {
                fsutil::create_file(path, mode)?;
                Ok(fs::set_permissions(path, PermissionsExt::from_mode(mode))?)
            })?
            .outcome;
        self.plan_mode(path, mode, outcome);
        Ok(outcome)
    }

    /// Repairs the mode of what is at `path`. Refuses a symlink and a missing path.
    pub fn chmod(&self, path: &Path, mode: u32) -> Result<Outcome> {
        refuse_symlink(self, path)?;
        let Some(current) = self.mode(path) else { bail!("{} does not exist", path.display()) };
        let (needed, detail) = if current == mode {
            (Outcome::Unchanged, format!("mode {mode:04o}"))
        } else {
            (Outcome::Updated, format!("mode {current:04o} -> {mode:04o}"))
        };
        let outcome = self
            .apply("chmod", &path.display().to_string(), &detail, needed, || {
                Ok(fs::set_permissions(path, PermissionsExt::from_mode(mode))?)
            })?
            .outcome;
        self.plan_mode(path, mode, outcome);
        Ok(outcome)
    }

    /// Keeps a planned mode change (or a planned empty file) at `path`.
    fn plan_mode(&self, path: &Path, mode: u32, outcome: Outcome) {
        if outcome == Outcome::Unchanged {
            return;
        }
        let entry = if self.is_dir(path) {
            Entry::Dir { mode }
        } else {
            Entry::File { bytes: self.read(path).unwrap_or_default(), mode }
        };
        self.plan(path, entry);
    }

    /// Removes a file; `detail` says what it was.
    pub fn remove_file(&self, path: &Path, detail: &str) -> Result<Outcome> {
        let needed = if self.exists(path) { Outcome::Removed } else { Outcome::Unchanged };
        let outcome =
            self.apply("remove", &path.display().to_string(), detail, needed, || Ok(fs::remove_file(path)?))?.outcome;
        if outcome != Outcome::Unchanged {
            self.plan(path, Entry::Gone);
        }
        Ok(outcome)
    }

    /// Removes the symlink at `path` itself, never its target; "unchanged" when no symlink
    /// is there.
    pub fn remove_symlink(&self, path: &Path) -> Result<Outcome> {
        let target = if self.planned(path).is_some() { None } else { fs::read_link(path).ok() };
        let needed = if target.is_some() { Outcome::Removed } else { Outcome::Unchanged };
        let detail = target.map(|t| format!("symlink to {}", t.display())).unwrap_or_else(|| "no symlink".into());
        let outcome = self
            .apply("remove symlink", &path.display().to_string(), &detail, needed, || {
                // remove_file on a symlink removes the link, never its target.
                if !fs::symlink_metadata(path)?.file_type().is_symlink() {
                    bail!("{} is no longer a symlink; left alone", path.display());
                }
                Ok(fs::remove_file(path)?)
            })?
            .outcome;
        if outcome != Outcome::Unchanged {
            self.plan(path, Entry::Gone);
        }
        Ok(outcome)
    }

    /// Moves a file or a whole directory, never over something at `to`; "unchanged" when
    /// `from` is gone and `to` exists (an earlier, interrupted run moved it).
    pub fn rename(&self, from: &Path, to: &Path) -> Result<Outcome> {
        let (from_kind, to_kind) = (self.kind(from), self.kind(to));
        let needed = match (from_kind != "missing", to_kind != "missing") {
            (true, false) => Outcome::Moved,
            (false, true) => Outcome::Unchanged,
            (true, true) => bail!("cannot move {} to {}: it already exists", from.display(), to.display()),
            (false, false) => bail!("cannot move {}: it does not exist", from.display()),
        };
        let outcome = self
            .apply("rename", &from.display().to_string(), &format!("to {}", to.display()), needed, || {
                if let Some(parent) = to.parent() {
                    ensure!(parent.is_dir(), "directory {} does not exist", parent.display());
                }
                Ok(fsutil::rename_durable(from, to)?)
            })?
            .outcome;
        if outcome != Outcome::Unchanged {
            let moved = match self.mode(from) {
                Some(mode) if self.is_dir(from) => Entry::Dir { mode },
                mode => Entry::File { bytes: self.read(from).unwrap_or_default(), mode: mode.unwrap_or(0o600) },
            };
            self.plan(to, moved);
            self.plan(from, Entry::Gone);
        }
        Ok(outcome)
    }

    /// Puts the file `from` in the place of `to` in one rename, so `to` is always whole (the
    /// old file or the new one); "unchanged" when `from` is gone. `detail` says what changes.
    pub fn swap_in(&self, from: &Path, to: &Path, detail: &str) -> Result<Outcome> {
        let needed = if self.exists(from) { Outcome::Updated } else { Outcome::Unchanged };
        let outcome = self
            .apply("swap in", &to.display().to_string(), detail, needed, || {
                fs::File::open(from)?.sync_all()?;
                fs::rename(from, to)
                    .map_err(|e| anyhow::anyhow!("cannot rename {} over {}: {e}", from.display(), to.display()))?;
                if let Some(dir) = to.parent() {
                    fs::File::open(dir)?.sync_all()?;
                }
                Ok(())
            })?
            .outcome;
        if outcome != Outcome::Unchanged {
            let bytes = self.read(from).unwrap_or_default();
            self.plan(to, Entry::File { bytes, mode: self.mode(from).unwrap_or(0o600) });
            self.plan(from, Entry::Gone);
        }
        Ok(outcome)
    }

    /// An exclusive lock on the file at `path` (mode 0600), held while the returned file
    /// lives. A run that changes things first creates `dirs` (each with its mode) and the
    /// file; a dry run creates nothing and locks only a file that is there (a missing one
    /// is held by nobody): `None`.
    pub fn lock(&self, path: &Path, dirs: &[(&Path, u32)]) -> Result<Option<fs::File>> {
        use std::os::unix::fs::OpenOptionsExt;
        let create = !self.dry_run;
        if create {
            for (dir, mode) in dirs {
                fsutil::create_dir(dir, *mode).with_context(|| format!("cannot create {}", dir.display()))?;
            }
        }
        // A dry run opens read-only (flock needs no write access): it works on a read-only root.
        let opened =
            fs::OpenOptions::new().read(true).write(create).create(create).truncate(false).mode(0o600).open(path);
        let file = match opened {
            Ok(file) => file,
            Err(_) if !create => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        };
        file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(Some(file))
    }
}

/// Fails when `path` is a symlink: a mode or a file is never set through one.
fn refuse_symlink(effects: &Effects, path: &Path) -> Result<()> {
    if effects.kind(path) == "symlink" {
        bail!(
            "{} is a symlink; not following it (remove the link, e.g. with FIX=1 of multi-tenancy-status)",
            path.display()
        );
    }
    Ok(())
}
