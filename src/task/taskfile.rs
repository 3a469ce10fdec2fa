//! One task definition: `tasks/<name>.toml`, parsed and checked.

use std::{path::PathBuf, time::Duration};

use indexmap::IndexMap;
use serde::Deserialize;

use crate::{
    error::{Error, Result, SourceSpan},
    format::validate::Kind,
};

/// Where a task (or its script) was loaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Compiled into the binary from the repo's `tasks/` or `plugins/`.
    Builtin,
    /// The site directory (`-C`, `AGENCY_HOME`).
    Site,
    /// A plugin, built-in or site.
    Plugin { name: String, builtin: bool },
}

impl Origin {
    /// Compiled into the binary: its definitions are checked by the tests of this build.
    pub(crate) fn is_compiled_in(&self) -> bool {
        matches!(self, Self::Builtin | Self::Plugin { builtin: true, .. })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Builtin => write!(f, "built-in"),
            Self::Site => write!(f, "site dir"),
            Self::Plugin { name, builtin: true } => write!(f, "built-in plugin {name}"),
            Self::Plugin { name, builtin: false } => write!(f, "site plugin {name}"),
        }
    }
}

/// A file the runner can read: compiled in, or on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourcePath {
    /// A key of the embedded file table, e.g. `tasks/create-client.rhai`.
    Embedded(String),
    Disk(PathBuf),
}

impl SourcePath {
    /// The path shown in messages.
    pub(crate) fn display(&self) -> String {
        match self {
            Self::Embedded(key) => format!("<built-in>/{key}"),
            Self::Disk(path) => path.display().to_string(),
        }
    }

    /// A file or directory inside this directory (`rel` uses `/`).
    pub(crate) fn join(&self, rel: &str) -> Self {
        match self {
            Self::Embedded(key) if key.is_empty() => Self::Embedded(rel.to_string()),
            Self::Embedded(key) => Self::Embedded(format!("{key}/{rel}")),
            Self::Disk(path) => Self::Disk(path.join(rel)),
        }
    }

    /// The directory holding this file.
    pub(crate) fn parent(&self) -> Self {
        match self {
            Self::Embedded(key) => Self::Embedded(key.rsplit_once('/').map_or("", |(dir, _)| dir).to_string()),
            Self::Disk(path) => Self::Disk(path.parent().map(PathBuf::from).unwrap_or_default()),
        }
    }

    /// A sibling file: `script_file` and `import` resolve next to the file that names them.
    pub(crate) fn sibling(&self, name: &str) -> Self {
        match self {
            Self::Embedded(key) => {
                let dir = key.rsplit_once('/').map_or("", |(dir, _)| dir);
                Self::Embedded(if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") })
            }
            Self::Disk(path) => Self::Disk(path.with_file_name(name)),
        }
    }
}

/// Enough for status over thousands of clients; a runaway loop still ends.
pub(crate) const DEFAULT_MAX_OPERATIONS: u64 = 100_000_000;

/// Which lock a task takes while it runs (SPEC §7: per-client lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockScope {
    /// Exclusive on the client named by `CLIENT_ID` (shared on "all clients").
    #[default]
    Client,
    /// Exclusive on every client: for tasks that change all of them.
    All,
    /// Read-only tasks.
    None,
}

impl LockScope {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::All => "all",
            Self::None => "none",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VarSpec {
    #[serde(default)]
    pub required: bool,
    pub default: Option<String>,
    pub kind: Option<Kind>,
    /// A regular expression the whole value must match.
    pub pattern: Option<String>,
    pub help: Option<String>,
    /// A secret value: redacted in plans, reports and the audit log.
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    description: String,
    group: Option<String>,
    #[serde(default)]
    deps: Vec<String>,
    #[serde(default)]
    confirm: bool,
    timeout: Option<String>,
    max_operations: Option<u64>,
    #[serde(default)]
    lock: LockScope,
    lock_when: Option<String>,
    script: Option<String>,
    script_file: Option<String>,
    #[serde(default)]
    vars: IndexMap<String, VarSpec>,
}

/// The Rhai body of a task, with where it came from (for error locations and imports).
#[derive(Debug, Clone)]
pub struct Script {
    pub text: String,
    pub path: SourcePath,
    /// Line of the script's first line within `path` (inline scripts sit inside the TOML).
    pub line_offset: usize,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub description: String,
    pub group: String,
    pub deps: Vec<String>,
    pub confirm: bool,
    pub timeout: Option<Duration>,
    /// Rhai operation limit for this task's script (default [`DEFAULT_MAX_OPERATIONS`]).
    pub max_operations: u64,
    pub lock: LockScope,
    /// A bool variable of the task: the lock is taken only when it is true (a read-only task
    /// with a mutating mode, e.g. `FIX` of multi-tenancy-status). `None`: always.
    pub lock_when: Option<String>,
    pub vars: IndexMap<String, VarSpec>,
    pub script: Script,
    pub origin: Origin,
    pub path: SourcePath,
    /// Definitions this one replaced, in loading order (shown by `--explain`).
    pub overrides: Vec<(Origin, SourcePath)>,
}

impl Task {
    /// Parses `text` (the TOML at `path`); `read` fetches a `script_file` beside it.
    pub fn parse(
        name: &str,
        text: &str,
        path: SourcePath,
        origin: Origin,
        read: impl Fn(&SourcePath) -> Option<String>,
    ) -> Result<Self> {
        let raw: RawTask = toml::from_str(text).map_err(|error| {
            let span = error.span().unwrap_or(0..0);
            Error::usage(format!("invalid task file for {name}: {}", error.message().trim()))
                .with_span(SourceSpan::from_offset(path.display(), text, span.start, span.len()))
        })?;
        let definition_error = |message: String| {
            Error::usage(format!("invalid task file for {name}: {message}"))
                .with_detail(format!("  --> {}", path.display()))
        };

        let script = match (raw.script, raw.script_file) {
            (Some(text_inline), None) => {
                let line_offset = text.find(&text_inline).map_or(0, |offset| text[..offset].matches('\n').count());
                Script { text: text_inline, path: path.clone(), line_offset }
            }
            (None, Some(file)) => {
                if file.contains("..") || file.starts_with('/') || file.contains('\\') {
                    return Err(definition_error(format!(
                        "script_file {file:?} must name a file beside the task file"
                    )));
                }
                let script_path = path.sibling(&file);
                let text = read(&script_path)
                    .ok_or_else(|| definition_error(format!("script_file {} not found", script_path.display())))?;
                Script { text, path: script_path, line_offset: 0 }
            }
            (Some(_), Some(_)) => return Err(definition_error("give either script or script_file, not both".into())),
            (None, None) => return Err(definition_error("no script or script_file".into())),
        };

        let timeout = raw
            .timeout
            .map(|t| {
                humantime::parse_duration(&t)
                    .map_err(|_| definition_error(format!("timeout {t:?} is not a duration like 30m")))
            })
            .transpose()?;

        for (var, spec) in &raw.vars {
            if crate::format::validate::secret_name(var).is_err() {
                return Err(definition_error(format!("variable name {var:?} must be UPPER_CASE")));
            }
            // Syntax only: compiling the automaton is done when a value is checked, so loading
            // every task for `--list` stays cheap; a compiled-in pattern was checked by the tests
            // (`catalog::tests::every_compiled_in_pattern_is_a_regex`).
            if let Some(pattern) = spec.pattern.as_ref().filter(|_| !origin.is_compiled_in()) {
                regex_syntax::Parser::new()
                    .parse(pattern)
                    .map_err(|e| definition_error(format!("pattern of {var}: {e}")))?;
            }
            if spec.required && spec.default.is_some() {
                return Err(definition_error(format!("{var} is required and has a default; choose one")));
            }
        }
        if let Some(var) = &raw.lock_when {
            if raw.vars.get(var).is_none_or(|spec| spec.kind != Some(Kind::Bool)) {
                return Err(definition_error(format!("lock_when {var:?} must name a variable of kind \"bool\"")));
            }
            if raw.lock == LockScope::None {
                return Err(definition_error("lock_when needs lock = \"client\" or \"all\"".into()));
            }
        }

        Ok(Self {
            name: name.to_string(),
            description: raw.description,
            group: raw.group.unwrap_or_else(|| "other".into()),
            deps: raw.deps,
            confirm: raw.confirm,
            timeout,
            max_operations: raw.max_operations.unwrap_or(DEFAULT_MAX_OPERATIONS),
            lock: raw.lock,
            lock_when: raw.lock_when,
            vars: raw.vars,
            script,
            origin,
            path,
            overrides: Vec::new(),
        })
    }

    /// The lock this run of the task takes: [`Task::lock`], or none when `lock_when` names a
    /// variable that is false in `vars`.
    pub(crate) fn lock_for(&self, vars: &IndexMap<String, String>) -> LockScope {
        match &self.lock_when {
            Some(var) if !vars.get(var).is_some_and(|v| crate::format::validate::parse_bool(v).unwrap_or(true)) => {
                LockScope::None
            }
            _ => self.lock,
        }
    }
}
