//! The one error type of the runner, and the exit code each kind maps to.

use std::{fmt, path::PathBuf};

/// Exit codes of SPEC §2, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Success = 0,
    /// A task failed, or a status task found a problem.
    Failure = 1,
    /// Usage or definition error: bad flag, unknown task or variable, invalid TOML or Rhai.
    Usage = 2,
    /// Stopped by SIGINT (128 + 2), as a shell reports it.
    Interrupted = 130,
    /// Stopped by SIGTERM (128 + 15).
    Terminated = 143,
}

/// A place in a source file that an error points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpan {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// The whole offending line, shown under the location with a caret.
    pub text: String,
    /// Characters to underline (at least one).
    pub width: usize,
}

impl SourceSpan {
    /// Locates a byte offset range inside `source`.
    pub fn from_offset(file: impl Into<PathBuf>, source: &str, offset: usize, len: usize) -> Self {
        let offset = offset.min(source.len());
        let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[offset..].find('\n').map_or(source.len(), |i| offset + i);
        let text = source[line_start..line_end].trim_end_matches('\r').to_string();
        Self {
            file: file.into(),
            line: source[..offset].matches('\n').count() + 1,
            column: source[line_start..offset].chars().count() + 1,
            width: source[offset..(offset + len).min(line_end)].chars().count().max(1),
            text,
        }
    }

    /// Locates a 1-based line and column (as Rhai reports them) inside `source`.
    pub fn from_line_column(file: impl Into<PathBuf>, source: &str, line: usize, column: usize) -> Self {
        let text = source.lines().nth(line.saturating_sub(1)).unwrap_or("").to_string();
        Self { file: file.into(), line, column: column.max(1), text, width: 1 }
    }
}

impl fmt::Display for SourceSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let number = self.line.to_string();
        let gutter = " ".repeat(number.len());
        writeln!(f, "{gutter}--> {}:{}:{}", self.file.display(), self.line, self.column)?;
        writeln!(f, "{gutter} |")?;
        writeln!(f, "{number} | {}", self.text)?;
        let pad: String = self.text.chars().take(self.column - 1).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
        write!(f, "{gutter} | {pad}{}", "^".repeat(self.width))
    }
}

/// Every error the runner reports: one clear sentence, optional detail, and an exit code.
#[derive(Debug)]
pub struct Error {
    pub code: ExitCode,
    pub message: String,
    pub span: Option<Box<SourceSpan>>,
    pub detail: Option<String>,
}

impl Error {
    pub fn usage(message: impl Into<String>) -> Self {
        Self { code: ExitCode::Usage, message: message.into(), span: None, detail: None }
    }

    pub fn failure(message: impl Into<String>) -> Self {
        Self { code: ExitCode::Failure, message: message.into(), span: None, detail: None }
    }

    /// A run stopped by SIGINT or SIGTERM before it was done.
    pub fn interrupted(signal: i32, message: impl Into<String>) -> Self {
        let code = if signal == libc::SIGTERM { ExitCode::Terminated } else { ExitCode::Interrupted };
        Self { code, message: message.into(), span: None, detail: None }
    }

    pub fn with_span(mut self, span: SourceSpan) -> Self {
        self.span = Some(Box::new(span));
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(span) = &self.span {
            write!(f, "\n{span}")?;
        }
        if let Some(detail) = &self.detail {
            write!(f, "\n{detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<anyhow::Error> for Error {
    fn from(error: anyhow::Error) -> Self {
        match error.downcast::<Error>() {
            Ok(error) => error,
            Err(error) => Self::failure(format!("{error:#}")),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
