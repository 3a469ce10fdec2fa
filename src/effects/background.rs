//! Steps that run beside the ones after them (a `restic init`, seconds of key derivation,
//! beside the network creates of the same run). The step is decided, numbered and started
//! where the script starts it, so it keeps that place in the step list, the plan and the
//! fault points; its outcome is recorded when it is awaited — by the script, or by the
//! runner when the task ends, so no error is lost and no child outlives its task.

use anyhow::{Result, anyhow};

use super::{Change, Effects, Outcome, fault};

/// Waits for a started step's work; its error is the step's failure.
pub type Finish = Box<dyn FnOnce() -> Result<()>>;

/// A step started by [`Effects::start`], for [`Effects::wait`].
#[derive(Debug, Clone)]
pub struct Background {
    outcome: Outcome,
    /// Index into the run's background steps; `None`: nothing runs (unchanged, planned,
    /// or already finished when it was started).
    step: Option<usize>,
}

impl Background {
    /// A step that needed nothing started (the caller recorded it).
    pub fn done(outcome: Outcome) -> Self {
        Self { outcome, step: None }
    }
}

pub(super) struct Step {
    change: Change,
    /// How many changes were recorded when it started: its place in the list.
    slot: usize,
    number: usize,
    state: State,
}

enum State {
    Running(Finish),
    /// The outcome once awaited; a failure's message for a second wait.
    Done(Result<Outcome, String>),
}

impl Effects {
    /// Like [`Effects::apply`], but `start` only starts the change and returns how to wait
    /// for it: the caller goes on with other work until [`Effects::wait`]. Unchanged, a dry
    /// run, or a failed start are recorded at once, as `apply` records them.
    pub fn start(
        &self,
        action: &str,
        target: &str,
        detail: &str,
        needed: Outcome,
        start: impl FnOnce() -> Result<Finish>,
    ) -> Result<Background> {
        let (number, finish) = match self.mutate(action, target, detail, needed, start)? {
            None => return Ok(Background { outcome: needed, step: None }),
            Some((number, Ok(finish))) => (number, finish),
            Some((_, Err(error))) => return Err(self.failed(action, target, detail, error)),
        };
        let change = self.change(action, target, detail, needed, None);
        let slot = self.len();
        let mut steps = self.background.borrow_mut();
        steps.push(Step { change, slot, number, state: State::Running(finish) });
        let step = Background { outcome: needed, step: Some(steps.len() - 1) };
        drop(steps);
        // A crash point names a moment between two steps, which overlapping ones lack.
        if fault::sequential() {
            self.wait(&step)?;
        }
        Ok(step)
    }

    /// Waits for a started step and records its outcome in its place; the step's error when it
    /// failed (again on a later wait of the same step).
    pub fn wait(&self, step: &Background) -> Result<Outcome> {
        let Some(index) = step.step else { return Ok(step.outcome) };
        let (finish, mut change, number) = {
            let mut steps = self.background.borrow_mut();
            let entry = &mut steps[index];
            match std::mem::replace(&mut entry.state, State::Done(Ok(entry.change.outcome))) {
                State::Running(finish) => (finish, entry.change.clone(), entry.number),
                State::Done(done) => {
                    entry.state = State::Done(done.clone());
                    return done.map_err(|message| anyhow!(message));
                }
            }
        };
        self.output.waiting_for(&change.action, &change.target);
        let result = finish().map_err(|error| error.context(format!("{} {} failed", change.action, change.target)));
        if let Err(error) = &result {
            change.outcome = Outcome::Failed;
            change.error = Some(format!("{error:#}"));
        }
        self.background.borrow_mut()[index].state =
            State::Done(result.as_ref().map(|()| step.outcome).map_err(|error| format!("{error:#}")));
        self.record_at(index, change);
        if result.is_ok() {
            fault::after(number);
        }
        result.map(|()| step.outcome)
    }

    /// Waits for every started step nobody has awaited yet (what a task left running when it
    /// ended); the first of their errors.
    pub fn wait_all(&self) -> Result<()> {
        let running: Vec<usize> = (self.background.borrow().iter().enumerate())
            .filter(|(_, step)| matches!(step.state, State::Running(_)))
            .map(|(index, _)| index)
            .collect();
        let mut first_error = None;
        for index in running {
            let step = Background { outcome: self.background.borrow()[index].change.outcome, step: Some(index) };
            if let Err(error) = self.wait(&step) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Puts the change of background step `index` where it started: after the changes
    /// recorded then, and after those of steps started before it that are recorded already.
    fn record_at(&self, index: usize, change: Change) {
        let position = {
            let steps = self.background.borrow();
            let earlier_done = steps[..index].iter().filter(|step| matches!(step.state, State::Done(_))).count();
            steps[index].slot + earlier_done
        };
        self.state.borrow_mut().changes.insert(position, change.clone());
        self.output.step(&change);
    }
}
