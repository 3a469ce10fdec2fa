//! Runs a target: its deps first (each once, same variables), under the client lock, each
//! task's script in the sandboxed engine; then the report (steps, summary or `--json`)
//! and one audit line per task for the client it touched.

use std::{io::IsTerminal, rc::Rc};

use indexmap::IndexMap;
use rhai::{AST, Dynamic};
use serde::Serialize;

use crate::{
    drivers::lifetime,
    effects::output::{Output, Verbosity, print_stdout},
    effects::{Change, Mode, Outcome},
    error::{Error, Result},
    host::Host,
    task::catalog::Catalog,
    task::lock,
    task::plugin::{self, Phase, Plugin},
    task::script::{Limits, ScriptEngine, script_vars},
    task::taskfile::{LockScope, Task},
    task::vars::Invocation,
    tenant::audit::{self, AuditRecord},
    tenant::layout::{ClientLayout, Roots},
    tenant::notify::{self, Problem},
    tenant::settings::Settings,
};

/// How this run was asked to behave (from the command line, without clap).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub dry_run: bool,
    pub json: bool,
    pub yes: bool,
    pub no_wait: bool,
    pub verbosity: Verbosity,
}

#[derive(Serialize)]
struct TaskReport {
    task: String,
    ok: bool,
    vars: serde_json::Map<String, serde_json::Value>,
    changes: Vec<Change>,
    result: serde_json::Value,
    /// Plugin hooks that ran for this task, in order: `db-passwords: after_rotate_secrets`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hooks: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    output: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct RunReport {
    target: String,
    ok: bool,
    dry_run: bool,
    tasks: Vec<TaskReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<serde_json::Value>,
}

/// Variables as JSON for reports and the audit log, secret ones redacted.
fn shown_vars(task: &Task, vars: &IndexMap<String, String>) -> serde_json::Map<String, serde_json::Value> {
    vars.iter()
        .map(|(name, value)| {
            let secret = task.vars.get(name).is_some_and(|spec| spec.secret);
            let shown = if secret && !value.is_empty() { "<redacted>".to_string() } else { value.clone() };
            (name.clone(), serde_json::Value::String(shown))
        })
        .collect()
}

/// Asks before a confirming task runs, unless `already` (`--yes`, `YES=1`, a dry run).
fn confirm(task: &Task, vars: &IndexMap<String, String>, already: bool) -> Result<()> {
    if !task.confirm || already {
        return Ok(());
    }
    let client = vars.get("CLIENT_ID").map(|c| format!(" for {c}")).unwrap_or_default();
    if !std::io::stdin().is_terminal() {
        return Err(Error::failure(format!(
            "{}{client} asks for confirmation and stdin is not a terminal; re-run with --yes (through make: YES=1) to proceed",
            task.name
        )));
    }
    eprint!("{}{client}: {}. Proceed? [y/N] ", task.name, task.description);
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).map_err(|e| Error::failure(format!("cannot read the answer: {e}")))?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(Error::failure(format!("{} cancelled; nothing was changed", task.name)))
    }
}

/// The client a task touched, for locking and the audit log.
fn client_of(vars: &IndexMap<String, String>) -> Option<&str> {
    vars.get("CLIENT_ID").map(String::as_str).filter(|id| !id.is_empty())
}

/// A task reports a problem (exit 1) by ending with a map holding `ok: false`.
fn reported_problem(result: &Dynamic, task: &str) -> Option<String> {
    let map = result.read_lock::<rhai::Map>()?;
    let ok = map.get("ok")?.as_bool().ok()?;
    (!ok).then(|| map.get("message").map(|m| m.to_string()).unwrap_or_else(|| format!("{task} reported a problem")))
}

/// A probe target inside the subnet pool is a client network's address, not one beyond the
/// host: refused with the other checks of a value, before anything runs.
fn probe_targets_outside_pool(task: &Task, vars: &IndexMap<String, String>, settings: &Settings) -> Result<()> {
    let Ok(pool) = crate::tenant::subnet::Pool::from_settings(
        Some(settings.get("AGENCY_SUBNET_POOL")),
        Some(settings.get("AGENCY_SUBNET_PREFIX")),
    ) else {
        return Ok(());
    };
    for (name, spec) in &task.vars {
        if spec.kind != Some(crate::format::validate::Kind::ProbeTargets) {
            continue;
        }
        let targets = crate::format::validate::probe_targets(vars.get(name).map_or("", String::as_str))
            .map_err(|e| Error::usage(format!("invalid {name}: {e}")))?;
        if let Some(address) = targets.addresses.iter().find(|a| pool.net().contains(**a)) {
            return Err(Error::usage(format!(
                "invalid {name}: {address} is inside the subnet pool {} (a client network), not beyond the host",
                pool.net()
            )));
        }
    }
    Ok(())
}

/// The tasks of a plan, each with its resolved variables, in the order they run.
type Resolved<'t> = Vec<(&'t Task, IndexMap<String, String>)>;

pub fn run(
    catalog: &Catalog,
    invocation: &Invocation,
    options: &RunOptions,
    env: &dyn Fn(&str) -> Option<String>,
    mut problems: Option<&mut Vec<Problem>>,
) -> Result<()> {
    let target =
        invocation.target.as_deref().ok_or_else(|| Error::usage("no target given; `agency --list` shows the tasks"))?;
    let (settings, resolved) = resolve_and_confirm(catalog, invocation, options, env, target)?;

    let output = Rc::new(Output::new(options.json, options.verbosity));
    let mode = if options.dry_run { Mode::Plan } else { Mode::Apply };
    let host = Rc::new(Host::new(settings, mode, output.clone(), target).with_site_dir(&catalog.site_dir));
    let _lock = lock_for_plan(&resolved, &host, options, &output)?;
    // From here on an interruption stops the run between changes, with an audit line.
    lifetime::catch_interrupts();

    // The engine is built only now, so --list and --explain never pay for it; every
    // script (and every plugin's hooks) is compiled before the first runs, so a syntax
    // error changes nothing.
    let mut engine = ScriptEngine::new(&host);
    let typed: Vec<rhai::Map> = resolved.iter().map(|(task, vars)| script_vars(task, vars)).collect();
    let compiled = resolved
        .iter()
        .zip(&typed)
        .map(|((task, _), vars)| engine.compile(&task.script, vars))
        .collect::<Result<Vec<_>>>()?;
    let hooks = compile_hooks(&engine, catalog)?;

    let runner = TaskRunner { host: &host, output: &output, options, hooks: &hooks };
    let mut reports = Vec::new();
    let mut failure: Option<Error> = None;
    // The `message` of the target's result map, the one line `-q` prints for a read-only task.
    let mut result_message = None;
    for (((task, vars), ast), typed_vars) in resolved.iter().zip(&compiled).zip(&typed) {
        let finished = runner.run_task(&mut engine, task, vars, ast, typed_vars);
        result_message = finished.value.read_lock::<rhai::Map>().and_then(|m| m.get("message").map(|v| v.to_string()));
        if !finished.report.ok
            && let Some(problems) = problems.as_deref_mut()
        {
            problems.extend(notify::problems_of(&rhai::serde::from_dynamic(&finished.value).unwrap_or_default()));
        }
        reports.push(finished.report);
        if finished.failure.is_some() {
            failure = finished.failure;
            break;
        }
    }
    output.clear();

    if options.json {
        return print_json_report(target, options.dry_run, reports, failure);
    }
    if failure.is_none() {
        print_summary(&output, target, &host.effects.changes(), options.dry_run, result_message.as_deref());
    }
    failure.map_or(Ok(()), Err)
}

/// The run's settings and its plan's tasks with their variables, every value checked and
/// every confirmation given, before anything runs.
fn resolve_and_confirm<'c>(
    catalog: &'c Catalog,
    invocation: &Invocation,
    options: &RunOptions,
    env: &dyn Fn(&str) -> Option<String>,
    target: &str,
) -> Result<(Settings, Resolved<'c>)> {
    let plan = catalog.plan(target)?;
    let settings = Settings::resolve(&invocation.assignments, env);
    settings.check().map_err(Error::usage)?;
    // The firewall settings are read by whatever task applies or checks the table: a bad one
    // stops the run before anything changes.
    crate::tenant::firewall::FirewallSettings::parse(
        settings.get("AGENCY_FIREWALL_TABLE"),
        settings.get("FIREWALL"),
        settings.get("FIREWALL_HOST_ALLOW"),
    )
    .map_err(|e| Error::usage(format!("{e:#}")))?;
    invocation.check_known(&plan, &Roots::from_settings(&settings))?;
    let resolved = invocation.resolve_plan(&plan, env)?;
    let confirmed = options.yes || invocation.confirmed()?;
    for (task, vars) in &resolved {
        probe_targets_outside_pool(task, vars, &settings)?;
        confirm(task, vars, confirmed || options.dry_run)?;
    }
    Ok((settings, resolved))
}

/// The lock the plan's widest task needs: every client's, the target's client's, or none.
fn lock_for_plan(
    resolved: &Resolved<'_>,
    host: &Host,
    options: &RunOptions,
    output: &Output,
) -> Result<Option<lock::LockGuard>> {
    let target_vars = &resolved.last().expect("plan holds the target").1;
    let locks: Vec<LockScope> = resolved.iter().map(|(task, vars)| task.lock_for(vars)).collect();
    let lock_client = if locks.contains(&LockScope::All) {
        Some(None)
    } else if locks.contains(&LockScope::Client) {
        Some(client_of(target_vars))
    } else {
        None
    };
    lock_client
        .map(|client| lock::acquire(&host.roots.locks_dir(), client, !options.dry_run, options.no_wait, output))
        .transpose()
}

/// What one task's run leaves: its report, the value its script ended with, and the error
/// that stops the run after it.
struct FinishedTask {
    report: TaskReport,
    value: Dynamic,
    failure: Option<Error>,
}

/// Runs the tasks of one run, each with its plugins' hooks around it.
struct TaskRunner<'a> {
    host: &'a Host,
    output: &'a Output,
    options: &'a RunOptions,
    hooks: &'a [(&'a Plugin, AST)],
}

impl TaskRunner<'_> {
    /// Runs `task`'s script between its before and after hooks, records its audit line and
    /// reports it.
    fn run_task(
        &self,
        engine: &mut ScriptEngine,
        task: &Task,
        vars: &IndexMap<String, String>,
        ast: &AST,
        typed_vars: &rhai::Map,
    ) -> FinishedTask {
        let (host, options) = (self.host, self.options);
        self.output.task_heading(&task.name, options.dry_run);
        host.effects.begin_task(&task.name);
        *host.secret_values.borrow_mut() = task
            .vars
            .iter()
            .filter(|(_, spec)| spec.secret)
            .filter_map(|(name, _)| vars.get(name).filter(|v| !v.is_empty()).cloned())
            .collect();
        let first_change = host.effects.len();
        let mut hooks_ran = Vec::new();
        let result = self.run_script_with_hooks(engine, task, ast, typed_vars, &mut hooks_ran);
        // Steps the task left running in the background end with it (their error, if it has none).
        let waited = host.effects.wait_all().map_err(|e| Error::failure(format!("{e:#}")));
        let result = result.and_then(|value| waited.map(|()| value));
        let changes = host.effects.changes_since(first_change);
        let (ok, error, value, result) = match result {
            Ok(value) => match reported_problem(&value, &task.name) {
                Some(problem) => (false, Some(problem), value, Ok(())),
                None => (true, None, value, Ok(())),
            },
            Err(e) => (false, Some(e.to_string()), Dynamic::UNIT, Err(e)),
        };
        let interrupted = if ok { None } else { lifetime::interrupted() };
        if !options.dry_run {
            let outcome = match (ok, interrupted) {
                (true, _) => "ok",
                (false, Some(_)) => "interrupted",
                (false, None) => "failed",
            };
            record_audit(&host.roots, task, vars, outcome, error.as_deref(), &changes, self.output);
        }
        let failure = run_failure(task, &changes, interrupted, result, error.clone());
        let report = TaskReport {
            task: task.name.clone(),
            ok,
            vars: shown_vars(task, vars),
            changes,
            // Only the --json document shows it; a status of thousands of clients is large.
            result: if options.json {
                rhai::serde::from_dynamic(&value).unwrap_or(serde_json::Value::Null)
            } else {
                serde_json::Value::Null
            },
            hooks: hooks_ran,
            output: self.output.take_captured(),
            error,
        };
        FinishedTask { report, value, failure }
    }

    /// The before hooks, the script, then (unless the script reported a problem) the after
    /// hooks with the script's result; the script's value.
    fn run_script_with_hooks(
        &self,
        engine: &mut ScriptEngine,
        task: &Task,
        ast: &AST,
        typed_vars: &rhai::Map,
        hooks_ran: &mut Vec<String>,
    ) -> Result<Dynamic> {
        let effects = &self.host.effects;
        self.run_hooks(engine, task, Phase::Before, &|| vec![typed_vars.clone().into()], hooks_ran)?;
        let task_start = effects.len();
        let value = engine.run(ast, typed_vars, limits_of(task))?;
        if reported_problem(&value, &task.name).is_none() {
            let cell = std::cell::OnceCell::new();
            let result = || {
                cell.get_or_init(|| hook_result(task, &effects.changes_since(task_start), &value, self.options.dry_run))
                    .clone()
            };
            self.run_hooks(
                engine,
                task,
                Phase::After,
                &|| vec![typed_vars.clone().into(), result().into()],
                hooks_ran,
            )?;
        }
        Ok(value)
    }

    /// Calls every plugin's `phase` hook for `task`, noting each that ran in `hooks_ran`.
    fn run_hooks(
        &self,
        engine: &mut ScriptEngine,
        task: &Task,
        phase: Phase,
        args: &dyn Fn() -> Vec<Dynamic>,
        hooks_ran: &mut Vec<String>,
    ) -> Result<()> {
        let name = plugin::hook_name(phase, &task.name);
        for (plugin, ast) in self.hooks {
            // The arguments (the after-hook's result map copies the task's whole result)
            // are built only for a plugin that defines this hook.
            if !ast.iter_functions().any(|f| f.name == name) {
                continue;
            }
            self.host.effects.set_plugin(Some(&plugin.name));
            let called = engine.call_hook(ast, &name, args(), limits_of(task));
            self.host.effects.set_plugin(None);
            match called {
                Ok(true) => hooks_ran.push(format!("{}: {name}", plugin.name)),
                Ok(false) => {}
                Err(e) => {
                    let file = plugin.hooks.as_ref().map(|h| h.path.display()).unwrap_or_default();
                    let mut error = Error { message: format!("plugin {}: {name}: {}", plugin.name, e.message), ..e };
                    if error.span.is_none() && error.detail.is_none() {
                        error.detail = Some(format!("  --> {file}"));
                    }
                    return Err(error);
                }
            }
        }
        Ok(())
    }
}

/// A task's resource limits from its file.
fn limits_of(task: &Task) -> Limits {
    Limits { timeout: task.timeout, max_operations: task.max_operations }
}

/// The error that stops the run after `task`: an interruption (naming how many changes it
/// made), the script's error, or the problem its result reported.
fn run_failure(
    task: &Task,
    changes: &[Change],
    interrupted: Option<i32>,
    result: Result<()>,
    problem: Option<String>,
) -> Option<Error> {
    if let Some(signal) = interrupted {
        let made = changes
            .iter()
            .filter(|c| {
                !c.planned
                    && matches!(c.outcome, Outcome::Created | Outcome::Updated | Outcome::Removed | Outcome::Moved)
            })
            .count();
        return Some(Error::interrupted(
            signal,
            format!(
                "{} interrupted by {} after {} change(s); a plain re-run completes it",
                task.name,
                lifetime::signal_name(signal),
                made
            ),
        ));
    }
    if let Err(e) = result {
        return Some(Error { message: format!("{} failed: {}", task.name, e.message), ..e });
    }
    problem.map(Error::failure)
}

/// The `--json` document on stdout; a failure keeps its exit code, its message is in the document.
fn print_json_report(target: &str, dry_run: bool, tasks: Vec<TaskReport>, failure: Option<Error>) -> Result<()> {
    let report = RunReport {
        target: target.to_string(),
        ok: failure.is_none(),
        dry_run,
        tasks,
        error: failure.as_ref().map(error_json),
    };
    print_stdout(&(serde_json::to_string_pretty(&report).expect("report serializes") + "\n"))?;
    match failure {
        Some(e) => Err(Error { message: String::new(), ..e }),
        None => Ok(()),
    }
}

/// Every plugin's `plugin.rhai`, compiled, in hook order. A hook with the wrong number of
/// parameters for a task that exists is a definition error (it would never be called).
fn compile_hooks<'a>(engine: &ScriptEngine, catalog: &'a Catalog) -> Result<Vec<(&'a Plugin, AST)>> {
    let mut hooks = Vec::new();
    for plugin in &catalog.plugins {
        let Some(script) = &plugin.hooks else { continue };
        let ast = engine.compile(script, &rhai::Map::new())?;
        for function in ast.iter_functions() {
            for phase in [Phase::Before, Phase::After] {
                let task = catalog.tasks.keys().find(|t| plugin::hook_name(phase, t) == function.name);
                if let Some(task) = task
                    && function.params.len() != phase.arity()
                {
                    let signature = if phase == Phase::Before { "(vars)" } else { "(vars, result)" };
                    return Err(Error::usage(format!(
                        "plugin {}: hook {} for task {task} must take {} parameter(s): fn {}{signature}",
                        plugin.name,
                        function.name,
                        phase.arity(),
                        function.name
                    ))
                    .with_detail(format!("  --> {}", script.path.display())));
                }
            }
        }
        hooks.push((plugin, ast));
    }
    Ok(hooks)
}

/// The `vars` argument of a hook: the task's resolved variables.
/// The `result` argument of an `after_` hook: the task, whether this is a dry run, the changes
/// the task's script made (or planned), and the value it ended with.
fn hook_result(task: &Task, changes: &[Change], value: &Dynamic, dry_run: bool) -> rhai::Map {
    let changes: Vec<serde_json::Value> = changes
        .iter()
        .map(|c| {
            serde_json::json!({
                "action": c.action,
                "target": c.target,
                "outcome": c.outcome.as_str(),
                "detail": c.detail,
                "planned": c.planned,
            })
        })
        .collect();
    let mut map = rhai::Map::new();
    map.insert("task".into(), Dynamic::from(task.name.clone()));
    map.insert("dry_run".into(), Dynamic::from(dry_run));
    map.insert("changes".into(), rhai::serde::to_dynamic(changes).unwrap_or(Dynamic::UNIT));
    map.insert("value".into(), value.clone());
    map
}

/// One audit line per client the task touched: the client of `CLIENT_ID`, or, for a task
/// over all clients, every client some change belongs to (with that client's changes).
fn record_audit(
    roots: &Roots,
    task: &Task,
    vars: &IndexMap<String, String>,
    outcome: &str,
    error: Option<&str>,
    changes: &[Change],
    output: &Output,
) {
    let touched: Vec<(String, Vec<Change>)> = match client_of(vars) {
        Some(id) => vec![(id.to_string(), changes.to_vec())],
        None => {
            let mut by_client: IndexMap<String, Vec<Change>> = IndexMap::new();
            for change in changes {
                if let Some(id) = roots.client_of_target(&change.target) {
                    by_client.entry(id).or_default().push(change.clone());
                }
            }
            by_client.into_iter().collect()
        }
    };
    for (id, changes) in touched {
        let Ok(layout) = ClientLayout::new(roots, &id) else { continue };
        let record = AuditRecord {
            time: audit::now_rfc3339(),
            task: &task.name,
            vars: shown_vars(task, vars),
            user: audit::current_user(),
            pid: std::process::id(),
            outcome,
            error: error.map(str::to_string),
            event: None,
            changes: &changes,
        };
        if let Err(e) = audit::append(&layout, &record) {
            output.warn(&format!("could not append to {}: {e}", layout.audit_log.display()));
        }
    }
}

pub fn error_json(error: &Error) -> serde_json::Value {
    let mut value = serde_json::json!({ "message": error.message, "exit_code": error.code as i32 });
    if let Some(span) = &error.span {
        value["location"] = serde_json::json!(format!("{}:{}:{}", span.file.display(), span.line, span.column));
    }
    if let Some(detail) = &error.detail {
        value["detail"] = serde_json::json!(detail);
    }
    value
}

fn print_summary(output: &Output, target: &str, changes: &[Change], dry_run: bool, message: Option<&str>) {
    // A read-only task (a listing) made no steps at all: its output is the whole story, but
    // `-q` hides it, so there the result's message (or that it went well) is the one line.
    if changes.is_empty() && !dry_run {
        if output.verbosity == Verbosity::Quiet {
            output.summary(&format!("{target}: {}", message.unwrap_or("done")));
        }
        return;
    }
    let count = |outcome| changes.iter().filter(|c| c.outcome == outcome).count();
    let (created, updated, removed, moved, unchanged) = (
        count(Outcome::Created),
        count(Outcome::Updated),
        count(Outcome::Removed),
        count(Outcome::Moved),
        count(Outcome::Unchanged),
    );
    let changed = created + updated + removed + moved;
    let moves = |verb: &str| if moved > 0 { format!(", {moved} {verb}") } else { String::new() };
    let line = if dry_run {
        format!(
            "{target}: dry run, {changed} change(s) planned ({created} create, {updated} update, {removed} remove{}), {unchanged} unchanged; nothing was changed",
            moves("move")
        )
    } else {
        format!(
            "{target}: {created} created, {updated} updated, {removed} removed{}, {unchanged} unchanged",
            moves("moved")
        )
    };
    output.summary(&line);
}
