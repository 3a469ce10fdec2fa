//! What domain operations of one run share: the host-wide settings, the roots they name, the
//! effects layer every change passes through, the output, and the site directory.

use std::{path::PathBuf, rc::Rc};

use anyhow::Result;

use crate::{
    effects::{Effects, Mode, Outcome, output::Output},
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
    pub fn new(settings: Settings, mode: Mode, output: Rc<Output>) -> Self {
        Self {
            roots: Roots::from_settings(&settings),
            settings,
            effects: Effects::new(mode, output.clone()),
            output,
            site_dir: PathBuf::new(),
        }
    }

    /// Atomic write of a path inside the roots through the effects layer
    /// ([`Effects::write_file`]).
    pub fn write_file(&self, path: &str, bytes: &[u8], mode: u32, detail: &str) -> Result<Outcome> {
        self.effects.write_file(&self.roots.confine_change(path)?, bytes, mode, detail)
    }
}
