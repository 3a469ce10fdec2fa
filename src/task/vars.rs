//! `VAR=VALUE` assignments from the command line and from make's `MAKEFLAGS`, and their
//! resolution against a task's declared variables.

use std::collections::BTreeMap;

use indexmap::IndexMap;

use crate::{
    error::{Error, Result},
    format::suggest::did_you_mean,
    format::validate::{parse_assignment, parse_bool, quote},
    task::taskfile::Task,
    tenant::layout::Roots,
    tenant::settings::Settings,
};

/// Variables of the generated Makefile and of this repository's dev.mk (where the runner is
/// built and installed), which make also passes along.
const MAKEFILE_VARIABLES: &[&str] = &["AGENCY", "CARGO", "PREFIX", "BINDIR", "SBIN_PATH"];

/// `YES=1` on the command line (or make's) answers a confirming task's question, as `--yes`
/// does: `make delete-client CLIENT_ID=x YES=1` (make keeps `--yes` for itself). Never read
/// from the environment, where an old export would confirm unseen.
const YES_VARIABLE: &str = "YES";

/// The Keycloak admin's password: environment or credentials file only, never argv.
const KEYCLOAK_PASSWORD: &str = "KEYCLOAK_ADMIN_PASSWORD";

/// What the positional arguments and `MAKEFLAGS` said.
#[derive(Debug, Default)]
pub struct Invocation {
    pub target: Option<String>,
    pub assignments: BTreeMap<String, String>,
    /// `make -n` reached us through `MAKEFLAGS`.
    pub make_dry_run: bool,
}

impl Invocation {
    /// Reads the positional arguments, then `MAKEFLAGS` (command line wins over make's copy).
    pub fn parse(args: &[String], makeflags: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut invocation = Self::default();
        if let Some(flags) = makeflags {
            invocation.read_makeflags(flags, &env);
        }
        for arg in args {
            if let Some((name, value)) = parse_assignment(arg) {
                invocation.assignments.insert(name.to_string(), value.to_string());
            } else if let Some(target) = &invocation.target {
                return Err(Error::usage(format!("only one target may be given, got {target} and {}", quote(arg))));
            } else if arg.contains('=') {
                return Err(Error::usage(format!(
                    "{} is not a VAR=VALUE assignment (variable names are letters, digits and _)",
                    quote(arg)
                )));
            } else {
                invocation.target = Some(arg.clone());
            }
        }
        Ok(invocation)
    }

    /// Make passes `n` in the first word for `make -n` (someone setting `MAKEFLAGS` by hand
    /// may write `-n`, `-kn`, `--dry-run`, `--just-print` or `--recon`: each means a dry run
    /// too), and command-line variables after ` -- `
    /// with spaces and backslashes escaped and `$` doubled. Make also exports those variables
    /// with their final values, so the environment's copy is preferred when present.
    fn read_makeflags(&mut self, flags: &str, env: &impl Fn(&str) -> Option<String>) {
        let words = split_make_words(flags);
        let flag_words = words.iter().take_while(|w| *w != "--");
        let dry_run_word = |(index, word): (usize, &String)| {
            let letters = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphabetic()) && w.contains('n');
            (index == 0 && !word.starts_with('-') && !word.contains('=') && word.contains('n'))
                || word.strip_prefix('-').is_some_and(|rest| !rest.starts_with('-') && letters(rest))
                || matches!(word.as_str(), "--dry-run" | "--just-print" | "--recon")
        };
        if flag_words.enumerate().any(dry_run_word) {
            self.make_dry_run = true;
        }
        let Some(start) = words.iter().position(|w| w == "--") else { return };
        for word in &words[start + 1..] {
            if let Some((name, value)) = parse_assignment(word) {
                if MAKEFILE_VARIABLES.contains(&name) {
                    continue;
                }
                let value = env(name).unwrap_or_else(|| value.replace("$$", "$"));
                self.assignments.insert(name.to_string(), value);
            }
        }
    }

    /// Rejects assignments no task of the plan declares (settings excepted), with a suggestion.
    /// `roots` names the file an environment-only secret is read from.
    pub(crate) fn check_known(&self, plan: &[&Task], roots: &Roots) -> Result<()> {
        let target = plan.last().map_or("", |t| t.name.as_str());
        let confirms = plan.iter().any(|t| t.confirm);
        if self.assignments.contains_key(KEYCLOAK_PASSWORD) {
            return Err(Error::usage(format!(
                "{KEYCLOAK_PASSWORD} is never accepted on the command line, on purpose (every user sees a \
                 command line in `ps`, and shells keep it in their history): export it in the environment or put \
                 it in {} (mode 0600)",
                roots.keycloak_credentials().display()
            )));
        }
        for name in self.assignments.keys() {
            let declared = plan.iter().any(|t| t.vars.contains_key(name));
            if declared || Settings::is_setting(name) || (confirms && name == YES_VARIABLE) {
                continue;
            }
            let candidates = plan
                .iter()
                .flat_map(|t| t.vars.keys().map(String::as_str))
                .chain(crate::tenant::settings::SETTINGS.iter().map(|s| s.name));
            let hint = did_you_mean(name, candidates).map(|s| format!("; did you mean {s}?")).unwrap_or_default();
            return Err(Error::usage(format!("unknown variable {name} for {target}{hint}")));
        }
        Ok(())
    }

    /// Whether `YES=1` was given (checked by [`Invocation::check_known`] to be for a task that
    /// confirms).
    pub(crate) fn confirmed(&self) -> Result<bool> {
        self.assignments.get(YES_VARIABLE).map_or(Ok(false), |value| {
            parse_bool(value).map_err(|e| Error::usage(format!("invalid {YES_VARIABLE}: {e}")))
        })
    }

    /// Every task's variables, in plan order; all required variables missing anywhere in the
    /// plan are reported in one error.
    pub(crate) fn resolve_plan<'t>(
        &self,
        plan: &[&'t Task],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<(&'t Task, IndexMap<String, String>)>> {
        let mut missing: IndexMap<&str, Option<&str>> = IndexMap::new();
        for task in plan {
            for (name, spec) in task.vars.iter().filter(|(_, spec)| spec.required) {
                if self.value_of(name, &env).is_none_or(|v| v.is_empty()) {
                    let help = missing.entry(name.as_str()).or_default();
                    *help = help.or(spec.help.as_deref());
                }
            }
        }
        let target = plan.last().map_or("", |t| t.name.as_str());
        match missing.len() {
            0 => plan.iter().map(|task| Ok((*task, self.resolve(task, &env)?))).collect(),
            1 => {
                let (name, help) = missing.get_index(0).expect("one missing");
                let help = help.map(|h| format!(" ({h})")).unwrap_or_default();
                Err(Error::usage(format!("missing required variable {name} for {target}{help}")))
            }
            _ => {
                let names: Vec<&str> = missing.keys().copied().collect();
                let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
                let detail: Vec<String> =
                    missing.iter().map(|(name, help)| format!("  {name:<width$}  {}", help.unwrap_or(""))).collect();
                Err(Error::usage(format!("missing required variables for {target}: {}", names.join(", ")))
                    .with_detail(detail.join("\n").trim_end().to_string()))
            }
        }
    }

    /// A variable's value before the task's default: command line, then environment.
    fn value_of(&self, name: &str, env: &impl Fn(&str) -> Option<String>) -> Option<String> {
        self.assignments.get(name).cloned().or_else(|| env(name))
    }

    /// The task's variables: command line > environment > default; required ones present;
    /// each value checked by its kind and pattern.
    pub(crate) fn resolve(
        &self,
        task: &Task,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<IndexMap<String, String>> {
        let mut values = IndexMap::new();
        for (name, spec) in &task.vars {
            let value = self.value_of(name, &env).or_else(|| spec.default.clone());
            let value = match value {
                Some(v) if !(spec.required && v.is_empty()) => v,
                _ if spec.required => {
                    let help = spec.help.as_deref().map(|h| format!(" ({h})")).unwrap_or_default();
                    return Err(Error::usage(format!("missing required variable {name} for {}{help}", task.name)));
                }
                _ => String::new(),
            };
            if !value.is_empty() {
                if let Some(kind) = spec.kind {
                    kind.check(&value).map_err(|e| Error::usage(format!("invalid {name}: {e}")))?;
                }
                if let Some(pattern) = &spec.pattern {
                    // The syntax was checked at load; a pattern too large to compile is still the
                    // task file's fault.
                    let anchored = regex::Regex::new(&format!("^(?:{pattern})$"))
                        .map_err(|e| Error::usage(format!("pattern of {name} in task {}: {e}", task.name)))?;
                    if !anchored.is_match(&value) {
                        return Err(Error::usage(format!(
                            "invalid {name}: {} does not match {pattern}",
                            quote(&value)
                        )));
                    }
                }
            }
            values.insert(name.clone(), value);
        }
        Ok(values)
    }
}

/// Splits make's flag string on unescaped spaces, removing the backslash escapes.
fn split_make_words(flags: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = flags.chars();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
                in_word = true;
            }
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            _ => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn makeflags_dry_run_and_variables() {
        let inv = Invocation::parse(&[], Some(r"n -- X=it's\ $$$$x CLIENT_ID=a AGENCY=/bin/x PREFIX=/tmp/p"), no_env)
            .unwrap();
        assert!(inv.make_dry_run);
        assert_eq!(inv.assignments.get("X").unwrap(), "it's $$x");
        assert_eq!(inv.assignments.get("CLIENT_ID").unwrap(), "a");
        assert!(!inv.assignments.contains_key("AGENCY"));
        assert!(!inv.assignments.contains_key("PREFIX"));

        let inv = Invocation::parse(&[], Some(r" -- CLIENT_NAME=ACME\ Corp"), no_env).unwrap();
        assert!(!inv.make_dry_run);
        assert_eq!(inv.assignments.get("CLIENT_NAME").unwrap(), "ACME Corp");

        let inv = Invocation::parse(&[], Some("s --no-print-directory"), no_env).unwrap();
        assert!(!inv.make_dry_run);

        // MAKEFLAGS set by hand, in every form make itself accepts for a dry run.
        for flags in ["-n", "-kn", "--dry-run", "--just-print", "--recon", "-s -n", "--no-print-directory --dry-run"] {
            assert!(Invocation::parse(&[], Some(flags), no_env).unwrap().make_dry_run, "{flags}");
        }
        for flags in ["-k", "--no-print-directory", "-j4", "--jobserver-auth=3,4", " -- NAME=n"] {
            assert!(!Invocation::parse(&[], Some(flags), no_env).unwrap().make_dry_run, "{flags}");
        }
    }

    #[test]
    fn environment_copy_of_make_variables_wins() {
        let env = |name: &str| (name == "CLIENT_NAME").then(|| "ACME $x".to_string());
        let inv = Invocation::parse(&[], Some(r" -- CLIENT_NAME=ACME\ $$x"), env).unwrap();
        assert_eq!(inv.assignments.get("CLIENT_NAME").unwrap(), "ACME $x");
    }

    #[test]
    fn assignments_anywhere_and_one_target() {
        let args: Vec<String> = ["A=1", "create-client", "B=x=y"].map(String::from).to_vec();
        let inv = Invocation::parse(&args, None, no_env).unwrap();
        assert_eq!(inv.target.as_deref(), Some("create-client"));
        assert_eq!(inv.assignments.get("B").unwrap(), "x=y");
        let two: Vec<String> = ["a", "b"].map(String::from).to_vec();
        assert_eq!(Invocation::parse(&two, None, no_env).unwrap_err().code, crate::error::ExitCode::Usage);
    }
}
