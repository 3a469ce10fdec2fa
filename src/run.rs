//! Parses the command line, does one thing, prints any error once and maps it to an exit code.

use std::{ffi::OsString, path::PathBuf};

use clap::Parser;

use crate::{
    cli::Opts,
    effects::output::{self, Verbosity, print_stdout},
    error::{Error, ExitCode, Result},
    format::validate::quote,
    task::catalog::Catalog,
    task::complete,
    task::listing,
    task::makefile,
    task::runner::{self, RunOptions},
    task::vars::Invocation,
    tenant::notify::{self, Notifier},
};

const DEFAULT_SITE_DIR: &str = "/etc/agency_stack";

/// Runs `agency` with `args` (program name first) and returns the process exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args: Vec<OsString> = args.into_iter().collect();
    if complete::answer(&args) {
        return ExitCode::Success as i32;
    }
    let opts = match Opts::try_parse_from(&args) {
        Ok(opts) => opts,
        Err(error) if !error.use_stderr() => {
            let _ = error.print(); // --help, --version
            return ExitCode::Success as i32;
        }
        Err(error) => {
            // CI asked for JSON: even a bad flag answers in JSON.
            if args.iter().any(|a| a == "--json") {
                let text = error.to_string();
                let first_line = text.lines().next().unwrap_or_default().trim_start_matches("error: ");
                report(&Error::usage(first_line), true);
            } else {
                let _ = error.print();
            }
            return ExitCode::Usage as i32;
        }
    };
    let json = opts.json;
    match dispatch(opts) {
        Ok(()) => ExitCode::Success as i32,
        Err(error) => {
            report(&error, json);
            error.code as i32
        }
    }
}

fn report(error: &Error, json: bool) {
    if error.message.is_empty() {
        return; // Already reported inside a --json run report.
    }
    if json {
        let value = serde_json::json!({ "ok": false, "error": runner::error_json(error) });
        // The error itself could not be written when stdout is what failed: stderr says it.
        if print_stdout(&(serde_json::to_string_pretty(&value).expect("serializes") + "\n")).is_err() {
            eprintln!("error: {error}");
        }
    } else {
        let stderr = std::io::stderr();
        let label = output::painted(output::colors(&stderr), output::RED, "error:");
        eprintln!("{label} {error}");
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The site directory: `-C DIR`, else `$AGENCY_HOME`, else the default.
pub fn site_dir(dir: Option<PathBuf>) -> PathBuf {
    dir.or_else(|| env("AGENCY_HOME").filter(|d| !d.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SITE_DIR))
}

fn dispatch(opts: Opts) -> Result<()> {
    // --list, --makefile and --completions take no target: a word after them is a mistake
    // (`agency --list create-client` meant --explain), not something to ignore.
    let only = [("--list", opts.list), ("--makefile", opts.makefile), ("--completions", opts.completions.is_some())];
    if let (Some((flag, _)), Some(extra)) = (only.iter().find(|(_, given)| *given), opts.args.first()) {
        let hint = if *flag == "--list" { "; `agency --explain TASK` describes one task" } else { "" };
        return Err(Error::usage(format!("{flag} takes no target or VAR=VALUE, got {}{hint}", quote(extra))));
    }
    if let Some(shell) = opts.completions {
        return print_stdout(&complete::registration(shell)?);
    }
    // Set up from the raw command line before anything else, so a run that fails before its
    // script starts (a bad variable, a task file that does not parse) still reports it.
    let is_run = !opts.makefile && !opts.list && opts.explain.is_none();
    let makeflags = env("MAKEFLAGS");
    let make_dry_run = Invocation::parse(&opts.args, makeflags.as_deref(), env).is_ok_and(|i| i.make_dry_run);
    let notifier = match is_run && !opts.dry_run && !make_dry_run {
        true => Notifier::for_run(&opts.args, makeflags.as_deref(), &env)?
            .filter(|n| n.task != crate::tenant::schedule::NOTIFY_TASK),
        false => None,
    };
    let Some(notifier) = notifier else { return dispatch_run(opts, None) };
    warn_undelivered(notifier.started());
    let mut problems = Vec::new();
    let result = dispatch_run(opts, Some(&mut problems));
    warn_undelivered(notifier.finished(result.as_ref().err(), &problems));
    result
}

fn warn_undelivered(sent: anyhow::Result<()>) {
    if let Err(e) = sent {
        eprintln!("warning: {e:#}");
    }
}

fn dispatch_run(opts: Opts, problems: Option<&mut Vec<notify::Problem>>) -> Result<()> {
    let site_dir = site_dir(opts.dir.clone());
    if opts.dir.is_some() && !site_dir.is_dir() {
        return Err(Error::usage(format!("site directory {} does not exist", site_dir.display())));
    }
    let catalog = Catalog::load(&site_dir)?;
    if opts.makefile {
        return print_stdout(&makefile::render(&catalog));
    }
    if opts.list {
        return print_stdout(&listing::list(&catalog, opts.json));
    }
    if let Some(target) = &opts.explain {
        return print_stdout(&listing::explain(&catalog, target, opts.json)?);
    }
    let invocation = Invocation::parse(&opts.args, env("MAKEFLAGS").as_deref(), env)?;
    if opts.verbose > 0 && !opts.json {
        crate::drivers::process::trace_commands();
    }
    let options = RunOptions {
        dry_run: opts.dry_run || invocation.make_dry_run,
        json: opts.json,
        yes: opts.yes,
        no_wait: opts.no_wait,
        verbosity: match (opts.quiet, opts.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, _) => Verbosity::Verbose,
        },
    };
    runner::run(&catalog, &invocation, &options, &env, problems)
}
