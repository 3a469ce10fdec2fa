//! Streams into and out of a repository: `source | restic backup --stdin` (one file per
//! stream, e.g. a database dump) and `restic dump | sink` (that file back into a program).

use super::*;

use anyhow::{Result, anyhow, bail};

use super::process::Command;
use crate::drivers::pipeline::{PipeOutput, Pipeline};

/// What a streamed backup left: the snapshot's summary and what passed through.
#[derive(Debug, Clone)]
pub(crate) struct StreamBackup {
    pub summary: BackupSummary,
    /// Bytes of the stream.
    pub bytes: u64,
}

/// A file name for `--stdin-filename`: one plain name, no directory.
fn check_file_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['/', '\0', '\n']) || name.starts_with('-') || name == "." || name == ".." {
        bail!("{name:?} is not a plain file name for a streamed backup");
    }
    Ok(())
}

impl Repo {
    /// `source | restic backup --stdin --stdin-filename=<file_name>` with `tags`; `inspect`
    /// sees the stream on its way. A failed source leaves no snapshot (restic is stopped
    /// before its input ends); `source_name` names it in the error.
    pub(crate) fn backup_stream(
        &self,
        source: Command,
        source_name: &str,
        file_name: &str,
        tags: &[String],
        inspect: &mut dyn FnMut(&[u8]),
    ) -> Result<StreamBackup> {
        check_file_name(file_name)?;
        let mut sink =
            self.command().args(["backup", "--json", "--stdin"]).arg(format!("--stdin-filename={file_name}"));
        for tag in tags {
            sink = sink.arg(tag_arg(tag)?);
        }
        let output = Pipeline::new(source, sink).run(inspect)?;
        if let Some(error) = self.stream_failure(&output, source_name, "backup") {
            return Err(error);
        }
        let summary = output
            .sink
            .stdout
            .lines()
            .filter(|line| message_type(line) == Some("summary"))
            .find_map(|line| serde_json::from_str::<BackupSummary>(line).ok())
            .ok_or_else(|| anyhow!("restic backup of {source_name} to {} printed no summary", self.location))?;
        Ok(StreamBackup { summary, bytes: output.bytes })
    }

    /// `restic dump <snapshot> /<file_name> | sink`; `inspect` sees the file on its way.
    /// The sink's output is returned whatever its exit code (the caller judges it); a failed
    /// `restic dump` is an error.
    pub(crate) fn dump_into(
        &self,
        snapshot: &str,
        file_name: &str,
        sink: Command,
        inspect: &mut dyn FnMut(&[u8]),
    ) -> Result<PipeOutput> {
        check_snapshot_id(snapshot)?;
        check_file_name(file_name)?;
        let source = self.command().args(["dump", snapshot]).arg(format!("/{file_name}"));
        let output = Pipeline::new(source, sink).run(inspect)?;
        if !output.source.success() {
            return Err(self.classify("dump", &output.source).into());
        }
        Ok(output)
    }

    fn stream_failure(&self, output: &PipeOutput, source_name: &str, action: &'static str) -> Option<anyhow::Error> {
        if !output.source.success() {
            return output.failure(source_name, "restic");
        }
        if !output.sink.success() {
            return Some(self.classify(action, &output.sink).into());
        }
        None
    }
}
