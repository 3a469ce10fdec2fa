//! What domain operations of one run share: the host-wide settings, the roots they name, the
//! effects layer every change passes through, the output, and the site directory.

use std::{fs, path::PathBuf, rc::Rc};

use anyhow::Result;

use crate::{
    effects::{Effects, Outcome, output::Output},
    fsutil,
    tenant::{layout::Roots, settings::Settings},
};

/// The run's settings, roots, effects and output, for the tenant domain.
pub struct Context {
    pub settings: Settings,
    pub roots: Roots,
    pub effects: Effects,
    pub output: Rc<Output>,
    /// The site directory (its `stacks/` win over the built-in ones).
    pub site_dir: PathBuf,
}

impl Context {
    pub fn new(settings: Settings, dry_run: bool, output: Rc<Output>) -> Self {
        Self {
            roots: Roots::from_settings(&settings),
            settings,
            effects: Effects::new(dry_run, output.clone()),
            output,
            site_dir: PathBuf::new(),
        }
    }

    /// Atomic write through the effects layer; `detail` replaces the default "mode NNNN"
    /// (env files list their keys there, never their values).
    pub fn write_file(&self, path: &str, bytes: &[u8], mode: u32, detail: &str) -> Result<Outcome> {
        let path = self.roots.confine_change(path)?;
        let needed = match (fs::read(&path), fsutil::mode(&path)) {
            (Ok(current), Some(current_mode)) if current == bytes && current_mode == mode => Outcome::Unchanged,
            (Ok(_), _) => Outcome::Updated,
            (Err(_), _) => Outcome::Created,
        };
        let detail = if detail.is_empty() { format!("mode {mode:04o}") } else { format!("mode {mode:04o}; {detail}") };
        self.effects.apply("write", &path.display().to_string(), &detail, needed, || {
            if let Some(parent) = path.parent() {
                anyhow::ensure!(parent.is_dir(), "directory {} does not exist", parent.display());
            }
            Ok(fsutil::write_atomic(&path, bytes, mode)?)
        })
    }
}
