//! Everything the runner prints: step lines (a spinner on a TTY, plain lines otherwise),
//! script `print()` output, notes and warnings. `--json` keeps stdout for the final document.

use std::{
    cell::RefCell,
    io::{IsTerminal, Write},
    time::Duration,
};

use anstyle::{AnsiColor, Style};
use indicatif::{ProgressBar, ProgressStyle};

use crate::effects::{Change, Outcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

pub struct Output {
    pub json: bool,
    pub verbosity: Verbosity,
    color: bool,
    spinner: RefCell<Option<ProgressBar>>,
    /// The heading of the task running, printed before its first visible line (a task that
    /// changes nothing and prints nothing prints no heading either).
    heading: RefCell<Option<String>>,
    /// Script output captured for `--json` (it goes to stderr there as well).
    captured: RefCell<Vec<String>>,
}

/// Writes a result to stdout. A reader that went away (`agency --json | head`) is not an
/// error; any other write error is (a full disk: a truncated file must not pass for a result).
pub(crate) fn print_stdout(text: &str) -> crate::error::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(crate::error::Error::failure(format!("cannot write the result to stdout: {error}")))
        }
        _ => Ok(()),
    }
}

/// Steps that take seconds: every restic call derives a key (about 0.75 s) before it starts
/// its work; a probe waits for replies.
fn takes_seconds(action: &str) -> bool {
    action.starts_with("restic ") || action == "probe"
}

const GREEN: Style = AnsiColor::Green.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
pub(crate) const RED: Style = AnsiColor::Red.on_default();
const DIM: Style = Style::new().dimmed();
const BOLD: Style = Style::new().bold();

/// Whether what is written to `stream` gets colour: a terminal that takes it, unless
/// `NO_COLOR` says no (or `CLICOLOR_FORCE` yes), as anstream reads them.
pub(crate) fn colors(stream: &impl anstream::stream::RawStream) -> bool {
    anstream::AutoStream::choice(stream) != anstream::ColorChoice::Never
}

/// `text` in `style` when `color`, plain otherwise.
pub(crate) fn painted(color: bool, style: Style, text: &str) -> String {
    if color { format!("{style}{text}{style:#}") } else { text.to_string() }
}

impl Output {
    pub fn new(json: bool, verbosity: Verbosity) -> Self {
        let tty = std::io::stdout().is_terminal();
        let color = colors(&std::io::stdout());
        let spinner = (tty && !json && verbosity != Verbosity::Quiet).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("static template"));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self {
            json,
            verbosity,
            color,
            spinner: RefCell::new(spinner),
            heading: RefCell::default(),
            captured: RefCell::default(),
        }
    }

    fn paint(&self, style: Style, text: &str) -> String {
        painted(self.color, style, text)
    }

    fn line(&self, text: &str) {
        if let Some(heading) = self.heading.borrow_mut().take() {
            self.write_line(&heading);
        }
        self.write_line(text);
    }

    fn write_line(&self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else if let Some(spinner) = self.spinner.borrow().as_ref() {
            spinner.println(text);
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
        }
    }

    /// Shows what is being done right now: the spinner's message on a TTY; off a TTY (a cron
    /// log) a `started` line with the time for a step that takes seconds (restic, probes), so
    /// the log shows where a run was.
    pub(crate) fn begin(&self, action: &str, target: &str) {
        if let Some(spinner) = self.spinner.borrow().as_ref() {
            spinner.set_message(format!("{action} {target}"));
        } else if !self.json && self.verbosity > Verbosity::Quiet && takes_seconds(action) {
            self.line(&format!(
                "  {:<12} {action} {target}  ({})",
                "started",
                humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            ));
        }
    }

    /// On a TTY, names the step the run now waits for (one started earlier, in the background).
    pub fn waiting_for(&self, action: &str, target: &str) {
        if let Some(spinner) = self.spinner.borrow().as_ref() {
            spinner.set_message(format!("{action} {target}"));
        }
    }

    /// The TTY spinner, to be turned into a byte progress bar (a long backup) with
    /// [`Output::bar_style`] once the total is known, until [`Output::end_bar`]; `None`
    /// without a TTY, under `--json` or `-q`.
    pub(crate) fn start_bar(&self, message: &str) -> Option<ProgressBar> {
        let spinner = self.spinner.borrow();
        let bar = spinner.as_ref()?;
        bar.set_message(message.to_string());
        Some(bar.clone())
    }

    /// The look of a byte progress bar (fits an 80-column terminal).
    pub(crate) fn bar_style() -> ProgressStyle {
        ProgressStyle::with_template("{spinner} {msg} [{bar:20}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}")
            .expect("static template")
            .progress_chars("=> ")
    }

    /// Turns the progress bar back into the step spinner.
    pub(crate) fn end_bar(&self) {
        if let Some(bar) = self.spinner.borrow().as_ref() {
            bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("static template"));
            bar.unset_length();
        }
    }

    /// A step line: changes (made or planned) and failures by default, unchanged steps with `-v`,
    /// none with `-q` or `--json`.
    pub(crate) fn step(&self, change: &Change) {
        let shown = match change.outcome {
            Outcome::Unchanged => self.verbosity == Verbosity::Verbose,
            _ => self.verbosity > Verbosity::Quiet,
        };
        if self.json || !shown {
            return;
        }
        let (word, code) = match (change.planned, change.outcome) {
            (_, Outcome::Failed) => ("failed", RED),
            (true, outcome) => (outcome.planned(), YELLOW),
            (false, Outcome::Unchanged) => ("unchanged", DIM),
            (false, Outcome::Updated) => ("updated", YELLOW),
            (false, outcome) => (outcome.as_str(), GREEN),
        };
        let detail = if change.detail.is_empty() { String::new() } else { format!("  ({})", change.detail) };
        let plugin = change.plugin.as_ref().map(|p| format!("  [plugin {p}]")).unwrap_or_default();
        self.line(&format!(
            "  {} {} {}{detail}{plugin}",
            self.paint(code, &format!("{word:<12}")),
            change.action,
            change.target
        ));
    }

    /// A heading for one task of the run, shown before the task's first line (`-v`: at once).
    pub(crate) fn task_heading(&self, task: &str, dry_run: bool) {
        if self.json || self.verbosity == Verbosity::Quiet {
            return;
        }
        let suffix = if dry_run { " (dry run: nothing is changed)" } else { "" };
        let heading = self.paint(BOLD, &format!("{task}{suffix}"));
        if self.verbosity == Verbosity::Verbose {
            self.heading.borrow_mut().take();
            self.write_line(&heading);
        } else {
            *self.heading.borrow_mut() = Some(heading);
        }
    }

    /// Output of a script's `print()`: the operator's terminal (not with `-q`), stderr under
    /// `--json` (and kept for the document).
    pub(crate) fn script_print(&self, text: &str) {
        if self.json {
            self.captured.borrow_mut().push(text.to_string());
        } else if self.verbosity == Verbosity::Quiet {
            return;
        }
        self.line(text);
    }

    pub(crate) fn take_captured(&self) -> Vec<String> {
        std::mem::take(&mut self.captured.borrow_mut())
    }

    /// Runner notes (waiting for a lock, skipped steps): stderr, hidden by `-q`.
    pub(crate) fn note(&self, text: &str) {
        if self.verbosity > Verbosity::Quiet {
            match self.spinner.borrow().as_ref() {
                Some(spinner) => spinner.suspend(|| eprintln!("{text}")),
                None => eprintln!("{text}"),
            }
        }
    }

    /// The closing line of a run (the one line `-q` keeps): stdout, not under `--json`.
    pub(crate) fn summary(&self, text: &str) {
        if !self.json {
            self.clear();
            let _ = print_stdout(&format!("{text}\n")); // The changes are made; a lost summary line is no failure.
        }
    }

    pub(crate) fn verbose(&self, text: &str) {
        if self.verbosity == Verbosity::Verbose {
            self.note(text);
        }
    }

    pub(crate) fn warn(&self, text: &str) {
        self.clear();
        eprintln!("{} {text}", self.paint(YELLOW, "warning:"));
    }

    /// Removes the spinner before anything else is printed for good.
    pub(crate) fn clear(&self) {
        if let Some(spinner) = self.spinner.borrow_mut().take() {
            spinner.finish_and_clear();
        }
    }
}
