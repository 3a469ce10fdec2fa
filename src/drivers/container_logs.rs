//! `docker logs` of one container: its stderr, each line with the engine's timestamp.

use std::path::Path;

use anyhow::{Result, bail};

use super::process::Command;

/// Whether `value` is a timestamp as `docker logs --timestamps` writes it (and takes back as
/// `--since`): digits, `-`, `:`, `.`, `T`, `Z`.
pub fn is_timestamp(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b':' | b'.' | b'T' | b'Z'))
}

/// The container's stderr since `since` (inclusive, as the engine filters it), every line
/// `TIMESTAMP MESSAGE`. Its stdout is not error output and is dropped.
pub fn stderr_since(docker: &Path, container: &str, since: Option<&str>) -> Result<String> {
    if container.is_empty() || !container.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("not a container id: {container:?}");
    }
    let mut args = vec!["logs", "--timestamps"];
    if let Some(since) = since {
        if !is_timestamp(since) {
            bail!("not a log timestamp: {since:?}");
        }
        args.extend(["--since", since]);
    }
    args.push(container);
    let output = Command::new(docker).args(args).output()?;
    if !output.success() {
        bail!("docker logs {container:.12} failed (exit {}): {}", output.code, output.first_error_line());
    }
    Ok(output.stderr)
}
