//! Running the external programs the runner drives (docker, restic, curl, logrotate).
//! Secrets reach a child only through its environment or stdin, never its arguments.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{Context, Result, anyhow};

/// `-v`: every command line run is shown on stderr before it starts (arguments never hold
/// secrets; the environment, where secrets go, is not shown).
static TRACE: AtomicBool = AtomicBool::new(false);

/// Turns the command trace of `-v` on.
pub fn trace_commands() {
    TRACE.store(true, Ordering::Relaxed);
}

/// What a finished child process left behind.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// The first non-empty stderr line, for one-line error messages.
    pub fn first_error_line(&self) -> &str {
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
    pub fn env(mut self, key: &str, value: &str) -> Self {
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

    fn trace(&self) {
        if TRACE.load(Ordering::Relaxed) {
            eprintln!("  $ {}", self.shown());
        }
    }

    fn expression(&self) -> duct::Expression {
        self.trace();
        let mut expression = duct::cmd(&self.program, &self.args).stdout_capture().stderr_capture().unchecked();
        for (key, value) in &self.env {
            expression = expression.env(key, value);
        }
        match &self.stdin {
            Some(bytes) => expression.stdin_bytes(bytes.clone()),
            None => expression.stdin_null(),
        }
    }

    /// Runs to completion and returns the output whatever the exit code.
    pub fn output(&self) -> Result<Output> {
        let output = self.expression().run().with_context(|| format!("could not start {}", self.program.display()))?;
        Ok(Output {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Runs to completion; a non-zero exit is an error quoting the child's stderr.
    pub fn checked_output(&self) -> Result<Output> {
        let output = self.output()?;
        if output.success() {
            Ok(output)
        } else {
            let name = self.program.file_name().unwrap_or_default().to_string_lossy();
            Err(anyhow!("{name} failed (exit {}): {}", output.code, output.first_error_line()))
        }
    }

    /// Starts the child with stdout as a pipe, for progress streams (e.g. `restic --json`).
    pub fn spawn_reader(&self) -> Result<duct::ReaderHandle> {
        self.trace();
        let mut expression = duct::cmd(&self.program, &self.args).stderr_capture().unchecked();
        for (key, value) in &self.env {
            expression = expression.env(key, value);
        }
        expression = match &self.stdin {
            Some(bytes) => expression.stdin_bytes(bytes.clone()),
            None => expression.stdin_null(),
        };
        expression.reader().with_context(|| format!("could not start {}", self.program.display()))
    }
}
