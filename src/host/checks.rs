//! `checks::` — building status reports from named checks (see `crate::check`). A check is a
//! map `#{ name, status, summary, evidence, fix }`; a client report collects them and gets a
//! verdict; `table` renders reports for people, the maps themselves go to `--json`.
//!
//! | function | returns |
//! |---|---|
//! | `checks::ok(name, summary)` / `checks::ok(name, summary, evidence)` | a passing check |
//! | `checks::warn(...)`, `checks::fail(...)`, `checks::skip(...)` | same shape, other status |
//! | `checks::client(id, [checks], [repairs])` | `#{ client, valid, isolated, verdict, checks, repairs }` |
//! | `checks::invalid(id, reason)` | the report of a directory that is not a valid client |
//! | `checks::table([reports])` | the people's table: a row per client, a line per problem |
//! | `checks::flag(value)` | a bool variable's value (`1`, `true`, `yes`, `on`) as a bool |
//! | `checks::octal(mode)` | `"0640"`, or `"missing"` for -1 (as `fs::mode` returns) |
//!
//! Other modules add their own checks to a client's list (`backup`, `realm` ...); a `fail`
//! makes the client NOT ISOLATED and the status run exit 1, a `warn` is shown but passes.

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

fn parse_report(value: &Dynamic) -> ScriptResult<ClientReport> {
    let map = value.read_lock::<Map>().ok_or("a client report must be a map (from checks::client)")?;
    let client = map.get("client").map(|v| v.to_string()).unwrap_or_default();
    let valid = map.get("valid").and_then(|v| v.as_bool().ok()).unwrap_or(false);
    let checks = match map.get("checks").and_then(|v| v.read_lock::<Array>().map(|a| a.clone())) {
        Some(checks) => checks.iter().map(parse_check).collect::<ScriptResult<Vec<_>>>()?,
        None => Vec::new(),
    };
    let repairs = map
        .get("repairs")
        .and_then(|v| v.read_lock::<Array>().map(|a| a.iter().map(|r| r.to_string()).collect()))
        .unwrap_or_default();
    Ok(ClientReport::new(&client, valid, checks, repairs))
}

fn client(id: &str, checks: Array, repairs: Array) -> ScriptResult<Dynamic> {
    let checks = checks.iter().map(parse_check).collect::<ScriptResult<Vec<_>>>()?;
    let repairs = repairs.iter().map(|r| r.to_string()).collect();
    rhai::serde::to_dynamic(ClientReport::new(id, true, checks, repairs))
}

pub fn create_module() -> Module {
    let mut module = Module::new();
    for (name, status) in [("ok", Status::Ok), ("warn", Status::Warn), ("fail", Status::Fail), ("skip", Status::Skip)] {
        module.set_native_fn(name, move |check_name: &str, summary: &str| {
            check(check_name, status, summary, Dynamic::UNIT)
        });
        module.set_native_fn(name, move |check_name: &str, summary: &str, evidence: Dynamic| {
            check(check_name, status, summary, evidence)
        });
    }
    module.set_native_fn("client", |id: &str, checks: Array| client(id, checks, Array::new()));
    module.set_native_fn("client", |id: &str, checks: Array, repairs: Array| client(id, checks, repairs));
    module.set_native_fn("invalid", |id: &str, reason: &str| -> ScriptResult<Dynamic> {
        rhai::serde::to_dynamic(ClientReport::new(id, false, vec![Check::new("client", Status::Fail, reason)], vec![]))
    });
    module.set_native_fn("table", |reports: Array| -> ScriptResult<String> {
        let reports = reports.iter().map(parse_report).collect::<ScriptResult<Vec<_>>>()?;
        Ok(render_table(&reports))
    });
    module.set_native_fn("flag", |value: &str| -> ScriptResult<bool> {
        crate::validate::parse_bool(value).map_err(Into::into)
    });
    module.set_native_fn("octal", |mode: INT| -> ScriptResult<String> {
        Ok(if mode < 0 { "missing".to_string() } else { format!("{mode:04o}") })
    });
    module
}
