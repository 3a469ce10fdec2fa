//! restic's progress during a backup: the TTY bar, or (`-v`, no TTY) a line per 10 %.

use std::cell::Cell;

use crate::{drivers::restic::BackupProgress, effects::output::Output};

/// Feeds restic's JSON status into the TTY bar, or (`-v`, no TTY) a line per 10 %.
pub struct Progress<'a> {
    output: &'a Output,
    client: &'a str,
    bar: Option<indicatif::ProgressBar>,
    /// The bar replaces the spinner once restic knows the total (after opening, ≈ 1 s).
    styled: Cell<bool>,
    last_tenth: Cell<i64>,
}

impl<'a> Progress<'a> {
    pub fn start(output: &'a Output, client: &'a str) -> Self {
        let bar = output.start_bar(&format!("restic backup {client}"));
        Self { output, client, bar, styled: Cell::new(false), last_tenth: Cell::new(-1) }
    }

    pub fn update(&self, status: &BackupProgress) {
        if let Some(bar) = &self.bar {
            if status.total_bytes == 0 && status.bytes_done == 0 {
                return;
            }
            if !self.styled.replace(true) {
                bar.set_style(Output::bar_style());
            }
            bar.set_length(status.total_bytes.max(status.bytes_done));
            bar.set_position(status.bytes_done);
            return;
        }
        let tenth = (status.percent_done.clamp(0.0, 1.0) * 10.0).floor() as i64;
        if tenth > self.last_tenth.get() {
            self.last_tenth.set(tenth);
            self.output.verbose(&format!(
                "restic backup {}: {:>3}% ({} of {} files, {} of {} bytes)",
                self.client,
                tenth * 10,
                status.files_done,
                status.total_files,
                status.bytes_done,
                status.total_bytes
            ));
        }
    }
}

impl Drop for Progress<'_> {
    fn drop(&mut self) {
        if self.bar.is_some() {
            self.output.end_bar();
        }
    }
}
