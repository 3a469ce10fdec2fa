//! restic, the backup program, driven through its command line.
//!
//! Every call passes the repository and its password to the child through the
//! environment (`RESTIC_REPOSITORY`, `RESTIC_PASSWORD`), and a new key's password through a
//! 0600 file (`--new-password-file`), so neither ever appears in an argument list (a `rest:`
//! URL may carry credentials too). Failures are classified from the exit code and stderr —
//! restic 0.14 exits 1 for nearly everything — into [`ResticError`], one clear sentence each.
//!
//! Opening a repository costs a key derivation (≈ 0.75 s here, `init` ≈ 2.5 s), so the cheap
//! checks [`Location::is_initialized`] and [`Location::snapshot_files`] look at the
//! files of a local repository instead and never run restic.

mod error;
mod model;
mod parse;
mod repo;
mod stream;

pub(crate) use error::*;
pub use model::*;
pub(crate) use parse::*;
pub use repo::*;

use std::{fmt, fs, path::PathBuf, time::SystemTime};

use anyhow::{Context, Result, bail};

use super::process::{self, Command};

const INSTALL_HINT: &str = "install it with `apt-get install restic` (Debian/Ubuntu) or see https://restic.net";

/// The name of the temp file holding a new key's password: `.restic-new-key.XXXXXX.tmp`.
pub(crate) const NEW_KEY_FILE: &str = "restic-new-key";

/// Backends whose location is passed through to restic as it is.
const REMOTE_SCHEMES: &[&str] = &["s3:", "rest:", "sftp:", "b2:", "azure:", "gs:", "swift:", "rclone:"];

/// A repository password. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// An empty password is refused (restic would then prompt on stdin).
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        if value.is_empty() {
            bail!("a restic password must not be empty");
        }
        if value.trim() != value {
            // restic trims password files, so such a value would not survive a key change.
            bail!("a restic password must not start or end with whitespace");
        }
        Ok(Self(value))
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Where a repository lives: a local directory, or a remote backend location
/// (`s3:`, `rest:`, `sftp:`, ...) handed to restic unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Remote(String),
}

impl Location {
    /// Parses a restic repository string; `local:/x` and plain paths are local.
    pub(crate) fn parse(repository: &str) -> Self {
        if let Some(path) = repository.strip_prefix("local:") {
            Self::Local(PathBuf::from(path))
        } else if REMOTE_SCHEMES.iter().any(|scheme| repository.starts_with(scheme)) {
            Self::Remote(repository.to_string())
        } else {
            Self::Local(PathBuf::from(repository))
        }
    }

    pub(crate) fn is_local(&self) -> bool {
        matches!(self, Self::Local(_))
    }

    /// The value restic takes as `RESTIC_REPOSITORY`.
    fn repository(&self) -> String {
        match self {
            Self::Local(path) => path.to_string_lossy().into_owned(),
            Self::Remote(url) => url.clone(),
        }
    }

    /// Cheap: whether a local repository has its `config` file (no key derivation).
    /// `None` for a remote repository: only opening it can tell.
    pub(crate) fn is_initialized(&self) -> Option<bool> {
        match self {
            Self::Local(path) => Some(path.join("config").is_file()),
            Self::Remote(_) => None,
        }
    }

    /// Cheap: the number of entries under `snapshots/` of a local repository and the
    /// modification time of its newest file (when its newest snapshot was written), `None`
    /// when it holds none. A remote repository is an error: its snapshots can only be listed
    /// by opening it.
    pub(crate) fn snapshot_files(&self) -> Result<(usize, Option<SystemTime>)> {
        let Self::Local(path) = self else {
            bail!("{self} is a remote repository; its snapshots can only be listed by opening it");
        };
        let dir = path.join("snapshots");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if self.is_initialized() == Some(true) {
                    bail!("the restic repository at {self} has no snapshots directory");
                }
                return Err(ResticError::RepositoryMissing { repo: self.to_string() }.into());
            }
            Err(error) => {
                return Err(error).with_context(|| format!("could not list {}", dir.display()));
            }
        };
        let (mut count, mut newest) = (0, None);
        for entry in entries {
            let entry = entry.with_context(|| format!("could not list {}", dir.display()))?;
            count += 1;
            let metadata = entry.metadata()?;
            if metadata.is_file() {
                let modified = metadata.modified()?;
                if newest.is_none_or(|newest| modified > newest) {
                    newest = Some(modified);
                }
            }
        }
        Ok((count, newest))
    }
}

impl fmt::Display for Location {
    /// The repository for messages: credentials in a URL (`rest:https://user:pass@host/`)
    /// are masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(path) => write!(f, "{}", path.display()),
            Self::Remote(url) => f.write_str(&mask_credentials(url)),
        }
    }
}

/// `scheme://user:secret@host/...` → `scheme://user:***@host/...`.
fn mask_credentials(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[start..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!("{}{}:***{}", &url[..start], &userinfo[..colon], &rest[at..]),
        None => url.to_string(),
    }
}

/// The restic program.
#[derive(Debug, Clone)]
pub struct Restic {
    program: PathBuf,
}

impl Restic {
    /// Finds `restic` on PATH, or says what to install.
    pub fn locate() -> Result<Self> {
        Ok(Self { program: process::locate("restic", INSTALL_HINT)? })
    }

    /// Uses a given program (tests put a logging shim here).
    #[cfg(test)]
    pub(crate) fn with_program(program: impl Into<PathBuf>) -> Self {
        Self { program: program.into() }
    }

    /// `restic version`, e.g. "restic 0.14.0 compiled with go1.19.8 on linux/amd64".
    pub fn version(&self) -> Result<String> {
        let output = Command::new(&self.program).arg("version").checked_output()?;
        Ok(output.stdout.trim().to_string())
    }

    /// A handle on one repository, opened with `password` by each operation.
    pub fn repo(&self, location: Location, password: Password) -> Repo {
        Repo { program: self.program.clone(), location, password }
    }
}

pub mod repair;

#[cfg(test)]
mod tests;
