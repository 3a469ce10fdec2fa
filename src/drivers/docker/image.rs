//! The probe/test image: a static busybox in a `FROM scratch` image.

use super::*;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

/// The Dockerfile of the probe/test image: nothing but a static busybox.
pub(crate) const BUSYBOX_DOCKERFILE: &str = "FROM scratch\n\
COPY busybox /bin/busybox\n\
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
LABEL agency.probe-image=true\n\
CMD [\"/bin/sh\"]\n";

/// Where a static busybox usually is (Debian's `busybox-static` installs `/bin/busybox`).
pub fn find_static_busybox() -> Result<PathBuf> {
    let candidates = ["/bin/busybox", "/usr/bin/busybox"];
    let mut last_error = None;
    for candidate in candidates {
        let path = Path::new(candidate);
        if path.exists() {
            match check_static_elf(path) {
                Ok(()) => return Ok(path.to_path_buf()),
                Err(e) => last_error = Some(e),
            }
        }
    }
    Err(last_error.unwrap_or_else(|| {
        anyhow!("no busybox binary was found; install a static one (Debian/Ubuntu: `apt-get install busybox-static`)")
    }))
}

/// Fails unless `path` is an ELF executable without a program interpreter (statically
/// linked), which is what runs in a `FROM scratch` image.
pub(crate) fn check_static_elf(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("could not read {}", path.display()))?;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        bail!("{} is not an ELF executable", path.display());
    }
    let is64 = bytes[4] == 2;
    let little = bytes[5] == 1;
    let read = |offset: usize, size: usize| -> Option<u64> {
        let slice = bytes.get(offset..offset + size)?;
        let mut value = 0u64;
        for (i, byte) in slice.iter().enumerate() {
            let shift = if little { 8 * i } else { 8 * (size - 1 - i) };
            value |= u64::from(*byte) << shift;
        }
        Some(value)
    };
    let (phoff, phentsize, phnum) = if is64 {
        (read(0x20, 8), read(0x36, 2), read(0x38, 2))
    } else {
        (read(0x1C, 4), read(0x2A, 2), read(0x2C, 2))
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (phoff, phentsize, phnum) else {
        bail!("{} is a truncated ELF file", path.display());
    };
    for index in 0..phnum {
        let Some(kind) = read((phoff + index * phentsize) as usize, 4) else {
            bail!("{} is a truncated ELF file", path.display());
        };
        if kind == 3 {
            bail!(
                "{} is dynamically linked and cannot run in a FROM scratch image; install a static busybox \
                 (Debian/Ubuntu: `apt-get install busybox-static`)",
                path.display()
            );
        }
    }
    Ok(())
}

impl Docker {
    /// Builds `tag` `FROM scratch` with the static busybox at `busybox` (applets installed as
    /// symlinks in /bin) and returns the image ID. Building again is cheap (the builder's
    /// cache) and safe while another build of the same tag runs.
    pub fn build_busybox_image(&self, tag: &str, busybox: &Path) -> Result<String> {
        check_static_elf(busybox)?;
        let context = tempfile::tempdir().context("could not create a build directory")?;
        std::fs::copy(busybox, context.path().join("busybox"))
            .with_context(|| format!("could not copy {}", busybox.display()))?;
        std::fs::write(context.path().join("Dockerfile"), BUSYBOX_DOCKERFILE)
            .context("could not write the Dockerfile")?;
        let dir = context.path().to_string_lossy().into_owned();
        let output = self.checked(&format!("build -t {tag}"), &["build", "-q", "-t", tag, &dir])?;
        Ok(output.stdout.trim().to_string())
    }

    /// True when the engine has an image of that name.
    pub fn image_exists(&self, image: &str) -> Result<bool> {
        let output = self.run(&self.command(["image", "inspect", "--format", "{{.Id}}", "--", image]))?;
        if output.success() {
            return Ok(true);
        }
        if let Some(connect) = classify_connect_failure(&output.stderr) {
            return Err(connect.into());
        }
        Ok(false)
    }
}
