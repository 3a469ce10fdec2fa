//! The command line (SPEC §2). Doc comments are the help text.

use std::path::PathBuf;

use clap::{ArgAction, Parser};
use clap_complete::ArgValueCompleter;

use crate::task::complete;

#[derive(Debug, Parser)]
#[command(
    name = "agency",
    version,
    about = "Provision and audit isolated tenants on a shared Docker host",
    after_help = "Variables: VAR=VALUE anywhere after the program name; command line > environment > task default.\nExit codes: 0 success, 1 a task failed or found a problem, 2 usage or definition error, 130/143 interrupted (SIGINT/SIGTERM)."
)]
pub struct Opts {
    /// The task to run, followed or preceded by VAR=VALUE assignments
    #[arg(value_name = "TARGET [VAR=VALUE]...", add = ArgValueCompleter::new(complete::task_or_variable))]
    pub args: Vec<String>,

    /// List tasks with one-line descriptions, grouped
    #[arg(short = 'l', long)]
    pub list: bool,

    /// Describe a task: variables, deps, and where it was loaded from
    #[arg(long, value_name = "TARGET", add = ArgValueCompleter::new(complete::task))]
    pub explain: Option<String>,

    /// Print every change the task would make, and change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Machine-readable output (plan, report, errors)
    #[arg(long)]
    pub json: bool,

    /// Answer yes to confirmations of destructive tasks
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Site directory holding tasks/ and plugins/ overrides [default: $AGENCY_HOME or /etc/agency_stack]
    #[arg(short = 'C', long = "dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Print a Makefile with one target per task
    #[arg(long)]
    pub makefile: bool,

    /// Print a shell completion script (it completes task names and their VAR= names)
    #[arg(long, value_name = "SHELL")]
    pub completions: Option<clap_complete::Shell>,

    /// Fail at once instead of waiting when another run holds the client's lock
    #[arg(long)]
    pub no_wait: bool,

    /// Print less (only errors and results)
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print more (unchanged steps, commands run); repeat for more
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,
}
