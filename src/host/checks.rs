//! `checks::` — status reports built from named checks (see `crate::check`). A check is a map
//! `#{ name, status, summary, evidence, fix }`; a `StatusReport` collects them per client,
//! gives each client a verdict, renders the people's table and the `--json` list.
//!
//! | function | returns |
//! |---|---|
//! | `checks::ok(name, summary)` | a passing check |
//! | `checks::ok(name, summary, evidence)` | the same, with evidence (any map or array) for `--json` |
//! | `checks::warn(name, summary, evidence)` | a warning: shown, does not break isolation (also without evidence) |
//! | `checks::fail(name, summary, evidence)` | a failure: the client is not isolated (also without evidence) |
//! | `checks::skip(name, summary, evidence)` | not checked; the summary says why (also without evidence) |
//! | `checks::report()` | an empty `StatusReport` (kept in Rust: thousands of clients cost no re-scan of a growing script array) |
//! | `checks::add(report, id, checks)` | adds a client's array of checks (and the repairs noted for it) |
//! | `checks::repairs(report, id, texts)` | notes what FIX=1 did (or refused) for a client |
//! | `checks::invalid(report, id, reason)` | a directory that is not a valid client |
//! | `checks::table(report)` | a row per client, a column per check, the verdict; a line per problem and repair |
//! | `checks::isolated(report)` | true when every client is valid and no check failed |
//! | `checks::count(report)` | clients reported |
//! | `checks::isolated_count(report)` | clients isolated |
//! | `checks::message(report)` | the one-line verdict for the exit status |
//! | `checks::clients(report)` | the reports as maps `#{ client, valid, isolated, verdict, checks, repairs }` |
//! | `checks::flag(value)` | a bool variable's value (`1`, `true`, `yes`, `on`) as a bool |
//! | `checks::octal(mode)` | `"0640"`, or `"missing"` for -1 (as `fs::mode` returns) |
//!
//! Other modules add their own checks to a client's list (`backup` ...): a `fail` makes the
//! client NOT ISOLATED and the status run exit 1, a `warn` is shown but passes.

use std::{cell::RefCell, collections::BTreeMap, rc::Rc};

use rhai::{Array, Dynamic, INT, Map, Module};

use super::ScriptResult;
use crate::check::{Check, ClientReport, Status, render_table};

fn check(name: &str, status: Status, summary: &str, evidence: Dynamic) -> ScriptResult<Dynamic> {
    let evidence: serde_json::Value = rhai::serde::from_dynamic(&evidence)?;
    rhai::serde::to_dynamic(Check::new(name, status, summary).evidence(evidence))
}

fn parse_check(value: &Dynamic) -> ScriptResult<Check> {
    let map = value.read_lock::<Map>().ok_or("a check must be a map #{ name, status, summary }")?;
    let text = |key: &str| map.get(key).map(|v| v.to_string()).unwrap_or_default();
    let name = text("name");
    if name.is_empty() {
        return Err("a check needs a name".into());
    }
    let status = Status::parse(&text("status"))
        .ok_or_else(|| format!("check {name}: status must be ok, warn, fail or skip, not {:?}", text("status")))?;
    let evidence = match map.get("evidence") {
        Some(value) => rhai::serde::from_dynamic(value)?,
        None => serde_json::Value::Null,
    };
    Ok(Check::new(&name, status, text("summary")).evidence(evidence).fix(text("fix")))
}

#[derive(Default)]
struct ReportState {
    clients: Vec<ClientReport>,
    pending_repairs: BTreeMap<String, Vec<String>>,
}

/// The clients' reports of one status run (shared by every copy a script makes).
#[derive(Clone, Default)]
pub struct StatusReport(Rc<RefCell<ReportState>>);

impl StatusReport {
    fn add(&mut self, id: &str, checks: Array) -> ScriptResult<()> {
        let checks = checks.iter().map(parse_check).collect::<ScriptResult<Vec<_>>>()?;
        let mut state = self.0.borrow_mut();
        let repairs = state.pending_repairs.remove(id).unwrap_or_default();
        state.clients.push(ClientReport::new(id, true, checks, repairs));
        Ok(())
    }

    fn invalid(&mut self, id: &str, reason: &str) {
        let mut state = self.0.borrow_mut();
        let repairs = state.pending_repairs.remove(id).unwrap_or_default();
        state.clients.push(ClientReport::new(id, false, vec![Check::new("client", Status::Fail, reason)], repairs));
    }

    fn repairs(&mut self, id: &str, repairs: Array) {
        self.0
            .borrow_mut()
            .pending_repairs
            .entry(id.to_string())
            .or_default()
            .extend(repairs.iter().map(|r| r.to_string()));
    }

    fn isolated(&mut self) -> bool {
        self.0.borrow().clients.iter().all(|c| c.isolated)
    }

    fn message(&mut self) -> String {
        let state = self.0.borrow();
        let bad: Vec<&str> = state.clients.iter().filter(|c| !c.isolated).map(|c| c.client.as_str()).collect();
        if bad.is_empty() {
            return format!("{} client(s), all isolated", state.clients.len());
        }
        let shown: Vec<&str> = bad.iter().take(10).copied().collect();
        let more = if bad.len() > 10 { format!(" and {} more", bad.len() - 10) } else { String::new() };
        format!("{} of {} client(s) not fully isolated: {}{more}", bad.len(), state.clients.len(), shown.join(", "))
    }

    fn clients(&mut self) -> ScriptResult<Dynamic> {
        rhai::serde::to_dynamic(&self.0.borrow().clients)
    }
}

pub fn create_module() -> Module {
    let mut module = Module::new();
    module.set_native_fn("ok", |name: &str, summary: &str| check(name, Status::Ok, summary, Dynamic::UNIT));
    module
        .set_native_fn("ok", |name: &str, summary: &str, evidence: Dynamic| check(name, Status::Ok, summary, evidence));
    module.set_native_fn("warn", |name: &str, summary: &str| check(name, Status::Warn, summary, Dynamic::UNIT));
    module.set_native_fn("warn", |name: &str, summary: &str, evidence: Dynamic| {
        check(name, Status::Warn, summary, evidence)
    });
    module.set_native_fn("fail", |name: &str, summary: &str| check(name, Status::Fail, summary, Dynamic::UNIT));
    module.set_native_fn("fail", |name: &str, summary: &str, evidence: Dynamic| {
        check(name, Status::Fail, summary, evidence)
    });
    module.set_native_fn("skip", |name: &str, summary: &str| check(name, Status::Skip, summary, Dynamic::UNIT));
    module.set_native_fn("skip", |name: &str, summary: &str, evidence: Dynamic| {
        check(name, Status::Skip, summary, evidence)
    });
    module.set_native_fn("report", || -> ScriptResult<StatusReport> { Ok(StatusReport::default()) });
    module.set_native_fn("add", |mut r: StatusReport, id: &str, checks: Array| r.add(id, checks));
    module.set_native_fn("repairs", |mut r: StatusReport, id: &str, repairs: Array| -> ScriptResult<()> {
        r.repairs(id, repairs);
        Ok(())
    });
    module.set_native_fn("invalid", |mut r: StatusReport, id: &str, reason: &str| -> ScriptResult<()> {
        r.invalid(id, reason);
        Ok(())
    });
    module
        .set_native_fn("table", |r: StatusReport| -> ScriptResult<String> { Ok(render_table(&r.0.borrow().clients)) });
    module.set_native_fn("isolated", |mut r: StatusReport| -> ScriptResult<bool> { Ok(r.isolated()) });
    module.set_native_fn("count", |r: StatusReport| -> ScriptResult<INT> { Ok(r.0.borrow().clients.len() as INT) });
    module.set_native_fn("isolated_count", |r: StatusReport| -> ScriptResult<INT> {
        Ok(r.0.borrow().clients.iter().filter(|c| c.isolated).count() as INT)
    });
    module.set_native_fn("message", |mut r: StatusReport| -> ScriptResult<String> { Ok(r.message()) });
    module.set_native_fn("clients", |mut r: StatusReport| r.clients());
    module.set_native_fn("flag", |value: &str| -> ScriptResult<bool> {
        crate::validate::parse_bool(value).map_err(Into::into)
    });
    module.set_native_fn("octal", |mode: INT| -> ScriptResult<String> {
        Ok(if mode < 0 { "missing".to_string() } else { format!("{mode:04o}") })
    });
    module
}
