//! The `nft` program (Debian's `nftables`): reading one table, replacing it in one
//! transaction (`nft -f -`, the script on stdin), deleting it.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};

use super::process::{self, Command, ProcessOutput};

pub(crate) const INSTALL_HINT: &str = "install Debian's `nftables` package (`apt-get install nftables`), or set FIREWALL=off \
                                to run without agency's firewall (status then reports isolation as not enforced)";

#[derive(Debug, Clone)]
pub struct Nft {
    program: PathBuf,
}

impl Nft {
    /// Finds `nft` on PATH (or in /usr/sbin, where Debian puts it and a user's PATH may not
    /// reach), or says what to install.
    pub fn locate() -> Result<Self> {
        let program = process::locate("nft", INSTALL_HINT).or_else(|error| {
            let sbin = Path::new("/usr/sbin/nft");
            if sbin.is_file() { Ok(sbin.to_path_buf()) } else { Err(error) }
        })?;
        Ok(Self { program })
    }

    pub(crate) fn program(&self) -> &Path {
        &self.program
    }

    fn failure(&self, what: &str, output: &ProcessOutput) -> anyhow::Error {
        let line = output.first_error_line();
        if line.contains("Operation not permitted") {
            anyhow!("`nft {what}` was refused: changing or reading the firewall needs root (CAP_NET_ADMIN)")
        } else {
            anyhow!("`nft {what}` failed: {line}")
        }
    }

    /// `nft list table inet NAME`, or `None` when there is no such table.
    pub fn list_table(&self, table: &str) -> Result<Option<String>> {
        let output = Command::new(&self.program).args(["list", "table", "inet", table]).output()?;
        if output.success() {
            Ok(Some(output.stdout))
        } else if output.stderr.contains("No such file or directory") {
            Ok(None)
        } else {
            Err(self.failure(&format!("list table inet {table}"), &output))
        }
    }

    /// Runs an `nft -f` script, read from stdin: all of it or nothing.
    pub(crate) fn apply(&self, script: &str) -> Result<()> {
        let output = Command::new(&self.program).args(["-f", "-"]).stdin(script.as_bytes()).output()?;
        if output.success() { Ok(()) } else { Err(self.failure("-f", &output)) }
    }

    /// Deletes `table`; `Ok(false)` when there was none.
    pub fn delete_table(&self, table: &str) -> Result<bool> {
        let output = Command::new(&self.program).args(["delete", "table", "inet", table]).output()?;
        if output.success() {
            Ok(true)
        } else if output.stderr.contains("No such file or directory") {
            Ok(false)
        } else {
            Err(self.failure(&format!("delete table inet {table}"), &output))
        }
    }
}
