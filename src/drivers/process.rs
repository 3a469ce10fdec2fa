//! Running the external programs the runner drives (docker, restic, curl, logrotate).
//! Secrets reach a child only through its environment or stdin, never its arguments.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{Context, Result, anyhow};

use super::lifetime;

/// `-v`: every command line run is shown on stderr before it starts (arguments never hold
/// secrets; the environment, where secrets go, is not shown).
static TRACE: AtomicBool = AtomicBool::new(false);

/// Turns the command trace of `-v` on.
pub(crate) fn trace_commands() {
    TRACE.store(true, Ordering::Relaxed);
}

/// What a finished child process left behind.
#[derive(Debug, Clone)]
pub struct ProcessOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl ProcessOutput {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// The first non-empty stderr line, for one-line error messages.
    pub(crate) fn first_error_line(&self) -> &str {
        self.stderr.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or("")
    }
}

/// Finds `program` on PATH, or says what to install.
pub fn locate(program: &str, install_hint: &str) -> Result<PathBuf> {
    which::which(program).map_err(|_| anyhow!("`{program}` was not found on PATH; {install_hint}"))
}

/// A command line: the program, its (non-secret) arguments, extra environment and stdin.
#[derive(Debug, Clone)]
pub struct Command {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
}

impl Command {
    pub fn new(program: &Path) -> Self {
        Self { program: program.to_path_buf(), args: Vec::new(), env: Vec::new(), stdin: None }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds a variable to the child's environment (the place for passwords).
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Bytes written to the child's stdin (the other place for secrets).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// The command line as `-v` shows it: the program's name and its arguments, shell-quoted.
    fn shown(&self) -> String {
        let name = self.program.file_name().unwrap_or(self.program.as_os_str()).to_string_lossy();
        std::iter::once(name.into_owned())
            .chain(self.args.iter().map(|a| {
                let arg = a.to_string_lossy();
                shlex::try_quote(&arg).map_or_else(|_| format!("{arg:?}"), |q| q.into_owned())
            }))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The child as duct runs it: inside agency's lifetime (`lifetime::tie`).
    fn expression(&self, capture_stdout: bool) -> duct::Expression {
        if TRACE.load(Ordering::Relaxed) {
            eprintln!("  $ {}", self.shown());
        }
        let mut expression =
            duct::cmd(&self.program, &self.args).stderr_capture().unchecked().before_spawn(|command| {
                lifetime::tie(command);
                Ok(())
            });
        if capture_stdout {
            expression = expression.stdout_capture();
        }
        for (key, value) in &self.env {
            expression = expression.env(key, value);
        }
        match &self.stdin {
            Some(bytes) => expression.stdin_bytes(bytes.clone()),
            None => expression.stdin_null(),
        }
    }

    /// The child as `std::process` spawns it (for pipelines, whose plumbing duct does not
    /// expose): arguments, environment, and inside agency's lifetime.
    pub(super) fn std_command(&self) -> std::process::Command {
        if TRACE.load(Ordering::Relaxed) {
            eprintln!("  $ {}", self.shown());
        }
        let mut command = std::process::Command::new(&self.program);
        command.args(&self.args);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        lifetime::tie(&mut command);
        command
    }

    /// The program's file name, for messages.
    pub(super) fn name(&self) -> String {
        self.program.file_name().unwrap_or_default().to_string_lossy().into_owned()
    }

    pub(super) fn not_started(&self) -> String {
        format!("could not start {}", self.program.display())
    }

    /// Runs to completion and returns the output whatever the exit code. A child stopped
    /// by the task's deadline or by an interruption is an error saying so.
    pub fn output(&self) -> Result<ProcessOutput> {
        self.start()?.wait()
    }

    /// Starts the child and returns at once; [`Running::wait`] collects what
    /// [`Command::output`] returns. Call it from the thread that waits for everything else
    /// (the child dies with the thread that spawned it).
    pub(crate) fn start(&self) -> Result<Running> {
        if let Some(signal) = lifetime::interrupted() {
            return Err(lifetime::interrupted_error(signal));
        }
        let handle = self.expression(true).start().with_context(|| self.not_started())?;
        let watch = lifetime::Watch::start(handle.pids()[0]);
        Ok(Running { handle, watch, name: self.name(), not_started: self.not_started() })
    }

    /// Runs to completion; a non-zero exit is an error quoting the child's stderr.
    pub(crate) fn checked_output(&self) -> Result<ProcessOutput> {
        let output = self.output()?;
        if output.success() {
            Ok(output)
        } else {
            let name = self.program.file_name().unwrap_or_default().to_string_lossy();
            Err(anyhow!("{name} failed (exit {}): {}", output.code, output.first_error_line()))
        }
    }

    /// Starts the child with stdout as a pipe, for progress streams (e.g. `restic --json`).
    pub(crate) fn spawn_reader(&self) -> Result<Reader> {
        if let Some(signal) = lifetime::interrupted() {
            return Err(lifetime::interrupted_error(signal));
        }
        let handle = self.expression(false).reader().with_context(|| self.not_started())?;
        let watch = lifetime::Watch::start(handle.pids()[0]);
        Ok(Reader { handle, watch })
    }
}

/// A child started by [`Command::start`], inside agency's lifetime until it is awaited.
pub(crate) struct Running {
    handle: duct::Handle,
    watch: lifetime::Watch,
    name: String,
    not_started: String,
}

impl Running {
    /// Waits for the child's exit and returns its output whatever the exit code; a child
    /// stopped by the task's deadline or by an interruption is an error saying so.
    pub(crate) fn wait(self) -> Result<ProcessOutput> {
        let output = self.handle.into_output().with_context(|| self.not_started.clone())?;
        if let Some(stopped) = self.watch.stopped() {
            return Err(stopped.context(format!("{} was stopped", self.name)));
        }
        Ok(ProcessOutput {
            code: output.status.code().unwrap_or(-1),
            stdout: text_of(output.stdout),
            stderr: text_of(output.stderr),
        })
    }
}

/// A child's output as text, taken over when it is UTF-8 (`docker network ls` of thousands of
/// networks is megabytes: no copy of it).
fn text_of(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A running child whose stdout is read as it comes.
pub(crate) struct Reader {
    handle: duct::ReaderHandle,
    watch: lifetime::Watch,
}

impl std::io::Read for &Reader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        (&self.handle).read(buf)
    }
}

impl Reader {
    /// Once stdout is at its end: how the child exited (stderr captured), or why agency
    /// stopped it.
    pub(crate) fn finish(&self) -> Result<std::process::Output> {
        let output = self.handle.try_wait()?.ok_or_else(|| anyhow!("the child did not exit"))?;
        match self.watch.stopped() {
            Some(stopped) => Err(stopped),
            None => Ok(output.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn output_text_is_taken_over_or_read_lossily() {
        assert_eq!(super::text_of(b"ok\n".to_vec()), "ok\n");
        assert_eq!(super::text_of(vec![b'a', 0xff]), "a\u{fffd}");
    }
}
