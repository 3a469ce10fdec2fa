//! Plugins (SPEC §4): `plugins/<name>/` with a `plugin.toml` manifest, optional hooks in
//! `plugin.rhai` (`fn before_<task>(vars)`, `fn after_<task>(vars, result)`) and optional
//! tasks in `tasks/*.toml`. Built-in plugins are the repo's `plugins/`, compiled in; site
//! plugins live in `<site dir>/plugins/`, and one with a built-in plugin's name replaces it.

use std::{fs, path::Path};

use serde::Deserialize;

use crate::{
    builtin::BUILTIN_FILES,
    error::{Error, Result, SourceSpan},
    task::catalog::read_source,
    task::taskfile::{Origin, Script, SourcePath, Task},
};

/// The runner's own version, which `requires_agency` is compared with.
pub const AGENCY_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    name: String,
    version: String,
    description: String,
    /// The oldest runner the plugin works with: `"0.1"`, `"0.1.0"` or `">=0.1.0"`.
    requires_agency: String,
}

#[derive(Debug, Clone)]
pub struct Plugin {
    pub name: String,
    pub version: String,
    pub description: String,
    /// The oldest runner version the plugin works with.
    pub requires_agency: String,
    /// `Origin::Plugin { name, builtin }`.
    pub origin: Origin,
    /// The plugin's directory; its scripts import only from inside it.
    pub dir: SourcePath,
    /// `plugin.rhai`, when the plugin has hooks.
    pub hooks: Option<Script>,
    /// Names of the tasks the plugin defines, sorted.
    pub task_names: Vec<String>,
    /// The built-in plugin of the same name this site plugin replaced.
    pub replaces: Option<SourcePath>,
}

/// Hook functions a plugin defines for one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Before,
    After,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Before => "before",
            Self::After => "after",
        }
    }

    /// How many arguments the hook takes: `before_x(vars)`, `after_x(vars, result)`.
    pub fn arity(self) -> usize {
        match self {
            Self::Before => 1,
            Self::After => 2,
        }
    }
}

/// The hook function name for a task: `after_create_client`.
pub fn hook_name(phase: Phase, task: &str) -> String {
    format!("{}_{}", phase.as_str(), task.replace('-', "_"))
}

/// What a plugin's `requires_agency` accepts: a semver requirement (`>=0.2, <0.4`, `~0.3`),
/// a bare version (`0.1`, `0.1.0`) meaning that version or newer.
pub fn version_requirement(text: &str) -> Option<semver::VersionReq> {
    let text = text.trim();
    // Each comparator names a version: no bare wildcard (`*`, `x`), which semver would take.
    let names_versions = text.split(',').all(|comparator| {
        comparator.trim().trim_start_matches(['<', '>', '=', '~', '^', ' ']).starts_with(|c: char| c.is_ascii_digit())
    });
    if !names_versions {
        return None;
    }
    let text = if text.starts_with(|c: char| c.is_ascii_digit()) { format!(">={text}") } else { text.to_string() };
    semver::VersionReq::parse(&text).ok()
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

impl Plugin {
    /// Reads `<dir>/plugin.toml`, `<dir>/plugin.rhai` and `<dir>/tasks/*.toml`; returns the
    /// plugin and its tasks (in file-name order).
    fn load(
        dir_name: &str,
        dir: SourcePath,
        builtin: bool,
        task_files: Vec<(String, SourcePath)>,
    ) -> Result<(Self, Vec<Task>)> {
        let manifest_path = dir.join("plugin.toml");
        let where_ = || format!("  --> {}", manifest_path.display());
        let text = read_source(&manifest_path).ok_or_else(|| {
            Error::usage(format!("plugin directory {} has no plugin.toml", dir.display()))
                .with_detail("a plugin needs plugin.toml with name, version, description and requires_agency")
        })?;
        let manifest: Manifest = toml::from_str(&text).map_err(|error| {
            let span = error.span().unwrap_or(0..0);
            Error::usage(format!("invalid plugin.toml of plugin {dir_name}: {}", error.message().trim()))
                .with_span(SourceSpan::from_offset(manifest_path.display(), &text, span.start, span.len()))
        })?;
        let invalid = |message: String| {
            Error::usage(format!("invalid plugin.toml of plugin {dir_name}: {message}")).with_detail(where_())
        };
        if !valid_name(&manifest.name) {
            return Err(invalid(format!(
                "name {:?} must be lowercase letters, digits and '-', starting with a letter",
                manifest.name
            )));
        }
        if manifest.name != dir_name {
            return Err(invalid(format!(
                "name {:?} differs from its directory name {dir_name:?}; they must be the same",
                manifest.name
            )));
        }
        if manifest.version.trim().is_empty() || manifest.description.trim().is_empty() {
            return Err(invalid("version and description must not be empty".into()));
        }
        if manifest.description.contains('\n') {
            return Err(invalid("description must be one line".into()));
        }
        let Some(needed) = version_requirement(&manifest.requires_agency) else {
            return Err(invalid(format!(
                "requires_agency {:?} is not a version like \"0.1.0\"",
                manifest.requires_agency
            )));
        };
        let have = semver::Version::parse(AGENCY_VERSION).expect("the crate version parses");
        if !needed.matches(&have) {
            let wanted = manifest.requires_agency.trim();
            let wanted = match wanted.strip_prefix(">=") {
                Some(oldest) => format!("{} or newer", oldest.trim()),
                None if wanted.starts_with(|c: char| c.is_ascii_digit()) => format!("{wanted} or newer"),
                None => wanted.to_string(),
            };
            return Err(Error::usage(format!(
                "plugin {} {} needs agency {wanted}; this is agency {AGENCY_VERSION}",
                manifest.name, manifest.version,
            ))
            .with_detail(format!("{}\n  upgrade agency, or remove the plugin's directory", where_())));
        }

        let origin = Origin::Plugin { name: manifest.name.clone(), builtin };
        let hooks_path = dir.join("plugin.rhai");
        let hooks = read_source(&hooks_path).map(|text| Script { text, path: hooks_path, line_offset: 0 });
        let mut tasks = Vec::new();
        for (name, path) in task_files {
            let text =
                read_source(&path).ok_or_else(|| Error::usage(format!("cannot read task file {}", path.display())))?;
            tasks.push(Task::parse(&name, &text, path, origin.clone(), read_source)?);
        }
        let plugin = Self {
            name: manifest.name,
            version: manifest.version,
            description: manifest.description,
            requires_agency: manifest.requires_agency,
            origin,
            dir,
            hooks,
            task_names: tasks.iter().map(|t| t.name.clone()).collect(),
            replaces: None,
        };
        Ok((plugin, tasks))
    }

    /// The plugins compiled into the binary (the repo's `plugins/`), sorted by name.
    pub fn builtin() -> Result<Vec<(Self, Vec<Task>)>> {
        let mut names: Vec<&str> = BUILTIN_FILES
            .iter()
            .filter_map(|(key, _)| key.strip_prefix("plugins/")?.split_once('/').map(|(name, _)| name))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let prefix = format!("plugins/{name}/tasks/");
                let task_files = BUILTIN_FILES
                    .iter()
                    .filter_map(|(key, _)| {
                        let stem = key.strip_prefix(&prefix)?.strip_suffix(".toml")?;
                        (!stem.contains('/')).then(|| (stem.to_string(), SourcePath::Embedded(key.to_string())))
                    })
                    .collect();
                Self::load(name, SourcePath::Embedded(format!("plugins/{name}")), true, task_files)
            })
            .collect()
    }

    /// The plugins of a site directory's `plugins/`, sorted by name; none when it is missing.
    /// Entries that are not directories (a README) and hidden ones are skipped.
    pub fn from_dir(dir: &Path) -> Result<Vec<(Self, Vec<Task>)>> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::usage(format!("cannot read {}: {e}", dir.display()))),
        };
        let mut dirs: Vec<_> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .filter(|p| !p.file_name().unwrap_or_default().to_string_lossy().starts_with('.'))
            .collect();
        dirs.sort();
        dirs.into_iter()
            .map(|path| {
                let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                let task_files = crate::task::catalog::toml_files(&path.join("tasks"))?
                    .into_iter()
                    .map(|file| {
                        let stem = file.file_stem().unwrap_or_default().to_string_lossy().into_owned();
                        (stem, SourcePath::Disk(file))
                    })
                    .collect();
                Self::load(&name, SourcePath::Disk(path), false, task_files)
            })
            .collect()
    }

    /// Names of the functions `plugin.rhai` defines, sorted, found by parsing it without running
    /// anything (for `--explain`; the runner checks the real compiled script).
    pub fn functions(&self) -> Result<Vec<String>> {
        let Some(script) = &self.hooks else { return Ok(Vec::new()) };
        let mut engine = rhai::Engine::new_raw();
        engine.set_max_expr_depths(crate::task::script::MAX_EXPR_DEPTH, crate::task::script::MAX_FUNCTION_EXPR_DEPTH);
        let ast = engine.compile(&script.text).map_err(|e| {
            let mut error = Error::usage(format!("invalid Rhai in {}: {}", script.path.display(), e.0));
            if let (Some(line), Some(column)) = (e.1.line(), e.1.position()) {
                error =
                    error.with_span(SourceSpan::from_line_column(script.path.display(), &script.text, line, column));
            }
            error
        })?;
        let mut names: Vec<String> = ast.iter_functions().map(|f| f.name.to_string()).collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// The hooks `plugin.rhai` defines for `task`.
    pub fn hooks_for(&self, task: &str) -> Result<Vec<Phase>> {
        let functions = self.functions()?;
        Ok([Phase::Before, Phase::After]
            .into_iter()
            .filter(|phase| functions.contains(&hook_name(*phase, task)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        let accepts = |req: &str, version: &str| {
            version_requirement(req).unwrap().matches(&semver::Version::parse(version).unwrap())
        };
        assert!(accepts("0.1", "0.1.0") && accepts("0.1", "0.2.0"));
        assert!(accepts(">= 0.10.2", "0.10.2") && !accepts(">= 0.10.2", "0.10.1"));
        assert!(accepts("1.2.3-rc1", "1.2.3"));
        assert!(accepts("0.9.9", "0.10.0") && !accepts("0.10.0", "0.9.9"));
        assert!(accepts(">=0.1, <0.3", "0.2.5") && !accepts(">=0.1, <0.3", "0.3.0"));
        for bad in ["", "x", "1..2", "1.2.3.4", "v1", "1.-2"] {
            assert!(version_requirement(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn hook_names_use_underscores() {
        assert_eq!(hook_name(Phase::After, "create-client"), "after_create_client");
        assert_eq!(hook_name(Phase::Before, "rotate-secrets"), "before_rotate_secrets");
    }

    #[test]
    fn builtin_plugins_load() {
        let plugins = Plugin::builtin().unwrap();
        let names: Vec<&str> = plugins.iter().map(|(p, _)| p.name.as_str()).collect();
        assert!(names.contains(&"db-passwords"), "{names:?}");
        assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted: {names:?}");
    }
}
