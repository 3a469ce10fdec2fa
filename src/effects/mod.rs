//! The one layer every mutation passes through (SPEC §5). In a dry run it records the
//! action instead of doing it; otherwise it does it and records the outcome for the step
//! list, the audit log and `--json`. Details never hold secret values, only names.

mod background;
mod files;
pub mod output;
pub(crate) mod progress;

use std::{cell::RefCell, rc::Rc};

use serde::Serialize;

use crate::{drivers::lifetime, effects::output::Output};

pub use background::{Background, Finish};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Updated,
    Removed,
    /// Renamed elsewhere (an archive), not destroyed.
    Moved,
    Unchanged,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Removed => "removed",
            Self::Moved => "moved",
            Self::Unchanged => "unchanged",
            Self::Failed => "failed",
        }
    }

    /// What a dry run says instead.
    pub fn planned(self) -> &'static str {
        match self {
            Self::Created => "would create",
            Self::Updated => "would update",
            Self::Removed => "would remove",
            Self::Moved => "would move",
            Self::Unchanged => "unchanged",
            Self::Failed => "would fail",
        }
    }
}

/// One step of a run: what was (or would be) done to what.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub task: String,
    /// Short verb phrase: `mkdir`, `write`, `network create` ...
    pub action: String,
    pub target: String,
    pub outcome: Outcome,
    /// Mode, key names, labels: never a secret value.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// True in a dry run: the change was not made.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub planned: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The plugin whose hook made the change; `None` for the task's own script.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
}

#[derive(Default)]
struct State {
    task: String,
    plugin: Option<String>,
    changes: Vec<Change>,
    mutations: usize,
}

/// What [`Effects::apply`] did: the outcome it recorded, and the closure's value when the
/// closure ran (`None` when the step was unchanged or only planned).
#[derive(Debug)]
pub struct Applied<T> {
    pub outcome: Outcome,
    pub value: Option<T>,
}

/// Whether a run makes its changes or only plans them (`--dry-run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    Plan,
}

pub struct Effects {
    dry_run: bool,
    output: Rc<Output>,
    state: RefCell<State>,
    planned_files: RefCell<files::PlannedFiles>,
    background: RefCell<Vec<background::Step>>,
}

impl Effects {
    pub fn new(mode: Mode, output: Rc<Output>) -> Self {
        Self {
            dry_run: mode == Mode::Plan,
            output,
            state: RefCell::default(),
            planned_files: RefCell::default(),
            background: RefCell::default(),
        }
    }

    /// `verb` as a message of this run says it: `would repair` in a dry run, `repair` when the
    /// run makes its changes. Scripts word their lines with it and never ask which run this is.
    pub fn verb(&self, verb: &str) -> String {
        if self.dry_run { format!("would {verb}") } else { verb.to_string() }
    }

    /// Names the task whose steps follow.
    pub fn begin_task(&self, task: &str) {
        let mut state = self.state.borrow_mut();
        state.task = task.to_string();
        state.plugin = None;
    }

    /// Names the plugin whose hook makes the steps that follow (`None`: the task itself).
    pub fn set_plugin(&self, plugin: Option<&str>) {
        self.state.borrow_mut().plugin = plugin.map(str::to_string);
    }

    /// The task whose steps are being recorded.
    pub fn task(&self) -> String {
        self.state.borrow().task.clone()
    }

    pub fn changes(&self) -> Vec<Change> {
        self.state.borrow().changes.clone()
    }

    /// Changes recorded since index `from` (one task's share).
    pub fn changes_since(&self, from: usize) -> Vec<Change> {
        self.state.borrow().changes[from..].to_vec()
    }

    pub fn len(&self) -> usize {
        self.state.borrow().changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn change(&self, action: &str, target: &str, detail: &str, outcome: Outcome, error: Option<String>) -> Change {
        let state = self.state.borrow();
        Change {
            task: state.task.clone(),
            action: action.to_string(),
            target: target.to_string(),
            outcome,
            detail: detail.to_string(),
            planned: self.dry_run && outcome != Outcome::Unchanged,
            error,
            plugin: state.plugin.clone(),
        }
    }

    fn push(&self, action: &str, target: &str, detail: &str, outcome: Outcome, error: Option<String>) {
        let change = self.change(action, target, detail, outcome, error);
        self.state.borrow_mut().changes.push(change.clone());
        self.output.step(&change);
    }

    /// Adds `note` (a diff, the command a step would run) to the output of a dry run, where
    /// it shows what the plan means; a run that makes the change says nothing more.
    pub fn plan_note(&self, note: impl FnOnce() -> String) {
        if self.dry_run {
            self.output.note(&note());
        }
    }

    /// A side effect no step records (a notification sent, a crashed write's stale temp files
    /// swept, a probe's throwaway containers): done in a run that changes things, left out
    /// (`None`) of a dry run.
    pub fn side_effect<T>(&self, effect: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<Option<T>> {
        if self.dry_run { Ok(None) } else { effect().map(Some) }
    }

    /// Whether an earlier step of this run on `target` was only planned: what a later look at
    /// an outside system (a repository a planned step would fill) cannot see yet.
    pub fn planned_on(&self, target: &str) -> bool {
        self.state.borrow().changes.iter().any(|change| change.planned && change.target == target)
    }

    /// Records a step that needs no change.
    pub fn unchanged(&self, action: &str, target: &str, detail: &str) {
        self.push(action, target, detail, Outcome::Unchanged, None);
    }

    /// Makes the change `needed` (found by a read-only look beforehand) by calling `apply`,
    /// or in a dry run only records it. `Outcome::Unchanged` calls nothing.
    pub fn apply<T>(
        &self,
        action: &str,
        target: &str,
        detail: &str,
        needed: Outcome,
        apply: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<Applied<T>> {
        match self.mutate(action, target, detail, needed, apply)? {
            None => Ok(Applied { outcome: needed, value: None }),
            Some((number, Ok(value))) => {
                self.push(action, target, detail, needed, None);
                fault::after(number);
                Ok(Applied { outcome: needed, value: Some(value) })
            }
            Some((_, Err(error))) => Err(self.failed(action, target, detail, error)),
        }
    }

    /// The door `apply` and `start` share: a change that is not needed, or only planned, is
    /// recorded and `None`; otherwise `call` runs as the next mutation inside its fault points,
    /// and its number comes back with what `call` returned (not yet recorded).
    fn mutate<T>(
        &self,
        action: &str,
        target: &str,
        detail: &str,
        needed: Outcome,
        call: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<Option<(usize, anyhow::Result<T>)>> {
        if needed == Outcome::Unchanged || self.dry_run {
            self.push(action, target, detail, needed, None);
            return Ok(None);
        }
        let number = self.begin_mutation(action, target)?;
        let result = fault::before(number).and_then(|()| {
            fault::enter(number);
            let result = call();
            fault::leave();
            result
        });
        Ok(Some((number, result)))
    }

    /// The number of the mutation about to start, shown as begun; none once interrupted.
    fn begin_mutation(&self, action: &str, target: &str) -> anyhow::Result<usize> {
        if let Some(signal) = lifetime::interrupted() {
            return Err(lifetime::interrupted_error(signal).context(format!("{action} {target} not started")));
        }
        self.output.begin(action, target);
        let mut state = self.state.borrow_mut();
        state.mutations += 1;
        Ok(state.mutations)
    }

    /// Records a failed step; its error, naming the step.
    fn failed(&self, action: &str, target: &str, detail: &str, error: anyhow::Error) -> anyhow::Error {
        let error = error.context(format!("{action} {target} failed"));
        self.push(action, target, detail, Outcome::Failed, Some(format!("{error:#}")));
        error
    }
}

/// A place inside a mutation where a crash would leave something half done (an atomic
/// write's temp file, complete but not renamed yet). Test builds abort here when the
/// mutation running is the one named by `AGENCY_FAULT_CRASH_DURING=N`.
pub fn crash_point(place: &str) {
    fault::during(place);
}

/// Test-only fault points: `AGENCY_FAULT_FAIL_AT=N` makes the Nth mutation fail,
/// `AGENCY_FAULT_CRASH_AFTER=N` aborts the process right after the Nth mutation, and
/// `AGENCY_FAULT_CRASH_DURING=N` at the [`crash_point`] inside it. With a crash point set,
/// a background step ([`Effects::start`]) is awaited where it starts, so "after N" is one
/// moment at which mutations 1..=N are done and none after them has begun.
#[cfg(feature = "fault-injection")]
mod fault {
    use std::cell::Cell;

    thread_local! {
        /// The number of the mutation being applied, 0 outside one.
        static CURRENT: Cell<usize> = const { Cell::new(0) };
    }

    fn point(name: &str) -> Option<usize> {
        std::env::var(name).ok()?.parse().ok()
    }

    pub fn enter(number: usize) {
        CURRENT.set(number);
    }

    pub fn leave() {
        CURRENT.set(0);
    }

    pub fn during(place: &str) {
        let number = CURRENT.get();
        if number != 0 && point("AGENCY_FAULT_CRASH_DURING") == Some(number) {
            eprintln!("agency: injected crash during mutation {number} ({place})");
            std::process::abort();
        }
    }

    pub fn before(number: usize) -> anyhow::Result<()> {
        if point("AGENCY_FAULT_FAIL_AT") == Some(number) {
            anyhow::bail!("injected fault at mutation {number}");
        }
        Ok(())
    }

    pub fn after(number: usize) {
        if point("AGENCY_FAULT_CRASH_AFTER") == Some(number) {
            eprintln!("agency: injected crash after mutation {number}");
            std::process::abort();
        }
    }

    /// Whether a crash point is set: background steps then end before the next step starts.
    pub fn sequential() -> bool {
        point("AGENCY_FAULT_CRASH_AFTER").is_some() || point("AGENCY_FAULT_CRASH_DURING").is_some()
    }
}

#[cfg(not(feature = "fault-injection"))]
mod fault {
    #[inline(always)]
    pub fn enter(_: usize) {}

    #[inline(always)]
    pub fn leave() {}

    #[inline(always)]
    pub fn during(_: &str) {}

    #[inline(always)]
    pub fn before(_: usize) -> anyhow::Result<()> {
        Ok(())
    }

    #[inline(always)]
    pub fn after(_: usize) {}

    #[inline(always)]
    pub fn sequential() -> bool {
        false
    }
}
