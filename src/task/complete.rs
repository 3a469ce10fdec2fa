//! Shell completion, as `just` does it: clap's dynamic completion. The shell's registration
//! script (`agency --completions bash`) asks the binary itself at each Tab
//! (`AGENCY_COMPLETE=bash agency -- agency create-client CL`), which answers from the site's
//! catalog: task names, and after a task its `VAR=` names.

use std::{
    ffi::{OsStr, OsString},
    path::PathBuf,
};

use clap::{CommandFactory, FromArgMatches};
use clap_complete::{CompletionCandidate, env::Shells};

use crate::{
    cli::Opts,
    error::{Error, Result},
    format::validate::parse_assignment,
    task::catalog::Catalog,
};

/// The environment variable that turns a run into a completion request.
pub const VAR: &str = "AGENCY_COMPLETE";

/// Answers a completion request when `AGENCY_COMPLETE` is set (returns false otherwise).
pub fn answer(args: &[OsString]) -> bool {
    let current_dir = std::env::current_dir().ok();
    clap_complete::CompleteEnv::with_factory(Opts::command)
        .var(VAR)
        .try_complete(args.iter().cloned(), current_dir.as_deref())
        .unwrap_or_else(|e| e.exit())
}

/// The registration script for `shell`: it calls `agency` on PATH for every completion.
pub fn registration(shell: clap_complete::Shell) -> Result<String> {
    let name = shell.to_string();
    let shells = Shells::builtins();
    let completer = shells.completer(&name).ok_or_else(|| {
        Error::usage(format!("no dynamic completion for {name}; use bash, elvish, fish, powershell or zsh"))
    })?;
    let mut script = Vec::new();
    completer
        .write_registration(VAR, "agency", "agency", "agency", &mut script)
        .map_err(|e| Error::failure(format!("cannot write the {name} completion script: {e}")))?;
    Ok(String::from_utf8_lossy(&script).into_owned())
}

/// The command line being completed, as the shell passed it after `--` (without the program).
fn words() -> Vec<OsString> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let start = args.iter().position(|a| a == "--").map_or(args.len(), |i| i + 1);
    args.into_iter().skip(start + 1).collect()
}

/// The catalog of the site named on the line being completed (`-C DIR`), or the default one.
fn catalog(opts: &Opts) -> Option<Catalog> {
    let site: PathBuf = crate::run::site_dir(opts.dir.clone());
    Catalog::load(&site).ok()
}

fn parsed(words: &[OsString]) -> Option<Opts> {
    let line = std::iter::once(OsString::from("agency")).chain(words.iter().cloned());
    let matches = Opts::command().ignore_errors(true).try_get_matches_from(line).ok()?;
    Opts::from_arg_matches(&matches).ok()
}

fn task_candidates(catalog: &Catalog, current: &str) -> Vec<CompletionCandidate> {
    catalog
        .tasks
        .values()
        .filter(|task| task.name.starts_with(current))
        .map(|task| CompletionCandidate::new(&task.name).help(Some(task.description.clone().into())))
        .collect()
}

/// `--explain TARGET`: the task names.
pub fn task(current: &OsStr) -> Vec<CompletionCandidate> {
    let (Some(current), Some(opts)) = (current.to_str(), parsed(&words())) else { return Vec::new() };
    catalog(&opts).map(|c| task_candidates(&c, current)).unwrap_or_default()
}

/// The positional words: a task name until one is given, then the `VAR=` names its run
/// takes (its deps' too) that the line does not give yet.
pub fn task_or_variable(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(current) = current.to_str() else { return Vec::new() };
    let mut words = words();
    if words.last().is_some_and(|w| w == current) {
        words.pop();
    }
    let Some(opts) = parsed(&words) else { return Vec::new() };
    let Some(catalog) = catalog(&opts) else { return Vec::new() };
    let given: Vec<&str> = opts.args.iter().filter_map(|a| parse_assignment(a).map(|(name, _)| name)).collect();
    let Some(target) = opts.args.iter().find(|a| parse_assignment(a).is_none()) else {
        return task_candidates(&catalog, current);
    };
    let Ok(plan) = catalog.plan(target) else { return Vec::new() };
    let mut names: Vec<(&str, Option<&str>)> = Vec::new();
    for task in &plan {
        for (name, spec) in &task.vars {
            if !names.iter().any(|(n, _)| n == name) {
                names.push((name, spec.help.as_deref()));
            }
        }
    }
    if plan.iter().any(|t| t.confirm) {
        names.push(("YES", Some("1 confirms without asking")));
    }
    names
        .into_iter()
        .filter(|(name, _)| !given.contains(name) && format!("{name}=").starts_with(current))
        .map(|(name, help)| CompletionCandidate::new(format!("{name}=")).help(help.map(|h| h.to_string().into())))
        .collect()
}
