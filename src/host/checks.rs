//! `checks::` — status reports built from named checks (see `crate::tenant::check`). A check is a map
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
//! | `checks::builtin(report, ids, names, options)` | adds every client of `ids` with the built-in checks `names` (in that order; any of `networks firewall cross_tenant capabilities logs secrets config realm backup stack`), made in Rust over all clients at once, each client's client.env read once; a client without a valid client.env is added invalid. `options`: `snap` (`docker::snapshot()`, for `networks firewall cross_tenant`), `net_raw` (`docker::net_raw(snap, ids)`, for `capabilities`), `stacks` (`stack::inspect()`, for `stack`), `deep` (DEEP=1, for `backup`) |
//! | `checks::append(report, id, checks)` | more checks of a client after those it has (a site's own checks, the probe's); a client not reported yet gets them as its checks, an invalid one keeps its one reason |
//! | `checks::repairs(report, id, texts)` | notes what FIX=1 did (or refused) for a client |
//! | `checks::invalid(report, id, reason)` | a directory that is not a valid client |
//! | `checks::table(report)` | a row per client, a column per check, the verdict; a line per problem and repair |
//! | `checks::isolated(report)` | true when every client is valid and no isolation check failed |
//! | `checks::healthy(report)` | true when no health check (`backup`, `logs`) failed |
//! | `checks::count(report)` | clients reported |
//! | `checks::isolated_count(report)` | clients isolated |
//! | `checks::message(report)` | the one-line verdict for the exit status |
//! | `checks::clients(report)` | the reports as maps `#{ client, valid, isolated, verdict, healthy, health, checks, repairs }`; once per report (the check maps are handed over, not copied) |
//! | `checks::octal(mode)` | `"0640"`, or `"missing"` for -1 (as `fs::mode` returns) |
//! | `checks::logs(id)` | the client's log dir 0750 with its four files 0640, no symlinks, none hard-linked (`logs` check) |
//! | `checks::secrets(id)` | the client's secrets.env 0600 in a 0700 dir, no symlinks, not hard-linked (`secrets` check) |
//! | `checks::config(id)` | the client's config dirs and files (client.env, compose override, realm.json, backup config, traefik.yml): no symlinks, none hard-linked (`config` check) |
//!
//! Other modules add their own checks to a client's list (`backup` ...): a `fail` makes the
//! client NOT ISOLATED and the status run exit 1, a `warn` is shown but passes; a `fail` of a
//! health check (`backup`, `logs`) makes the client unhealthy (HEALTH FAIL), not NOT ISOLATED.

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    rc::Rc,
};

use rhai::{Array, Dynamic, INT, Map, Module};

use super::{Host, ScriptResult, script_error, status};
use crate::{
    tenant::check::{Check, ClientReport, Status, render_table},
    tenant::filecheck,
    tenant::layout::ClientLayout,
};

/// Whether `value` is plain data (what `--json` can show): unit, bool, numbers, strings,
/// characters, and arrays and maps of those.
fn is_plain(value: &Dynamic) -> bool {
    if let Some(array) = value.read_lock::<Array>() {
        return array.iter().all(is_plain);
    }
    if let Some(map) = value.read_lock::<Map>() {
        return map.values().all(is_plain);
    }
    value.is_unit() || value.is_bool() || value.is_int() || value.is_float() || value.is_string() || value.is_char()
}

/// A check as scripts see it, the shape `Check` serializes to: `#{ name, status, summary,
/// evidence }` (and `fix` once set). Built directly, without a round trip through JSON.
fn check_map(name: &str, status: Status, summary: &str, evidence: Dynamic) -> Map {
    let mut map = Map::new();
    map.insert("name".into(), name.into());
    map.insert("status".into(), status.as_str().into());
    map.insert("summary".into(), summary.into());
    map.insert("evidence".into(), evidence);
    map
}

/// A check made in Rust as scripts see it (the map of [`check_map`], `fix` when set). Built
/// directly: status makes several per client, and serde's Dynamic serializer costs more.
pub fn check_dynamic(check: &Check) -> Dynamic {
    let mut map = check_map(&check.name, check.status, &check.summary, json_dynamic(&check.evidence));
    if !check.fix.is_empty() {
        map.insert("fix".into(), check.fix.as_str().into());
    }
    map.into()
}

/// Plain JSON data as a Rhai value (numbers that fit an `INT` as integers).
fn json_dynamic(value: &serde_json::Value) -> Dynamic {
    use serde_json::Value;
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => (i as INT).into(),
            None => n.as_f64().unwrap_or(f64::NAN).into(),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => items.iter().map(json_dynamic).collect::<Array>().into(),
        Value::Object(entries) => {
            entries.iter().map(|(k, v)| (k.as_str().into(), json_dynamic(v))).collect::<Map>().into()
        }
    }
}

fn check(name: &str, status: Status, summary: &str, evidence: Dynamic) -> ScriptResult<Map> {
    if !is_plain(&evidence) {
        return Err(format!(
            "check {name}: evidence must be plain data (strings, numbers, bools, arrays, maps), not {}",
            evidence.type_name()
        )
        .into());
    }
    Ok(check_map(name, status, summary, evidence))
}

/// The name, status, summary and fix of a check map (its evidence stays in the map).
fn parse_check(value: &Dynamic) -> ScriptResult<Check> {
    let map = value.read_lock::<Map>().ok_or("a check must be a map #{ name, status, summary }")?;
    let text = |key: &str| map.get(key).map(|v| v.to_string()).unwrap_or_default();
    let name = text("name");
    if name.is_empty() {
        return Err("a check needs a name".into());
    }
    let status = Status::parse(&text("status"))
        .ok_or_else(|| format!("check {name}: status must be ok, warn, fail or skip, not {:?}", text("status")))?;
    if let Some(evidence) = map.get("evidence")
        && !is_plain(evidence)
    {
        return Err(format!("check {name}: evidence must be plain data, not {}", evidence.type_name()).into());
    }
    Ok(Check::new(&name, status, text("summary")).fix(text("fix")))
}

/// One client's report: its verdict and the checks' heads for the table, and the check maps
/// as the script made them (evidence included) for `checks::clients`, kept as compact JSON:
/// as Rhai maps thousands of clients' evidence took most of status's memory (≈ 20 KB a client
/// against 4.5 KB).
struct Entry {
    report: ClientReport,
    checks_json: String,
}

/// The check maps of an entry, as the script made them (JSON keeps plain data as it was: the
/// evidence is plain, numbers that fit an `INT` are integers).
fn checks_array(checks_json: &str) -> Array {
    match serde_json::from_str(checks_json) {
        Ok(serde_json::Value::Array(items)) => items.iter().map(json_dynamic).collect(),
        _ => Array::new(),
    }
}

/// A check made in Rust as the report keeps it: its head (no evidence) for the table and the
/// verdicts, and the whole check as compact JSON for `checks::clients` (as the serialized
/// list of them all would hold it).
pub(super) struct KeptCheck {
    head: Check,
    json: String,
}

impl From<Check> for KeptCheck {
    fn from(mut check: Check) -> Self {
        let json = serde_json::to_string(&check).expect("plain data serializes");
        check.evidence = serde_json::Value::Null;
        Self { head: check, json }
    }
}

/// Two JSON arrays, as `serde_json` writes them, as one.
fn joined_arrays(first: &str, second: &str) -> String {
    match (first, second) {
        ("[]", _) => second.to_string(),
        (_, "[]") => first.to_string(),
        _ => format!("{},{}", &first[..first.len() - 1], &second[1..]),
    }
}

/// A script's array of checks: their heads and the array as JSON.
fn parsed_checks(id: &str, checks: &Array) -> ScriptResult<(Vec<Check>, String)> {
    let heads = checks.iter().map(parse_check).collect::<ScriptResult<Vec<_>>>()?;
    let json = serde_json::to_string(checks).map_err(|e| format!("checks of {id}: {e}"))?;
    Ok((heads, json))
}

#[derive(Default)]
struct ReportState {
    clients: Vec<Entry>,
    /// Where each client's entry is (`checks::append`).
    positions: HashMap<String, usize>,
    pending_repairs: BTreeMap<String, Vec<String>>,
    /// `checks::clients` gave the check maps away.
    handed_over: bool,
}

impl ReportState {
    fn reports(&self) -> impl Iterator<Item = &ClientReport> {
        self.clients.iter().map(|e| &e.report)
    }

    /// A client's entry, with the repairs noted for it so far.
    fn push(&mut self, id: &str, valid: bool, heads: Vec<Check>, checks_json: String) {
        let repairs = self.pending_repairs.remove(id).unwrap_or_default();
        self.positions.insert(id.to_string(), self.clients.len());
        self.clients.push(Entry { report: ClientReport::new(id, valid, heads, repairs), checks_json });
    }
}

/// The clients' reports of one status run (shared by every copy a script makes).
#[derive(Clone, Default)]
pub struct StatusReport(Rc<RefCell<ReportState>>);

impl StatusReport {
    fn add(&mut self, id: &str, checks: Array) -> ScriptResult<()> {
        let (heads, checks_json) = parsed_checks(id, &checks)?;
        self.0.borrow_mut().push(id, true, heads, checks_json);
        Ok(())
    }

    /// A client's checks made in Rust.
    fn add_kept(&mut self, id: &str, checks: Vec<KeptCheck>) {
        let (heads, json): (Vec<Check>, Vec<String>) = checks.into_iter().map(|c| (c.head, c.json)).unzip();
        self.0.borrow_mut().push(id, true, heads, format!("[{}]", json.join(",")));
    }

    /// More checks of a client after those it has (a client not reported yet gets them as its
    /// checks; an invalid one keeps its one reason).
    fn append(&mut self, id: &str, checks: Array) -> ScriptResult<()> {
        let Some(position) = self.0.borrow().positions.get(id).copied() else { return self.add(id, checks) };
        let (mut heads, checks_json) = parsed_checks(id, &checks)?;
        let mut state = self.0.borrow_mut();
        if state.handed_over {
            return Err("checks::append after checks::clients: the check maps were handed over".into());
        }
        let entry = &mut state.clients[position];
        if !entry.report.valid {
            return Ok(());
        }
        let report = std::mem::replace(&mut entry.report, ClientReport::new(id, false, vec![], vec![]));
        let mut all = report.checks;
        all.append(&mut heads);
        entry.report = ClientReport::new(id, true, all, report.repairs);
        entry.checks_json = joined_arrays(&entry.checks_json, &checks_json);
        Ok(())
    }

    fn invalid(&mut self, id: &str, reason: &str) {
        let checks: Array = vec![check_map("client", Status::Fail, reason, Dynamic::UNIT).into()];
        let checks_json = serde_json::to_string(&checks).expect("plain data serializes");
        self.0.borrow_mut().push(id, false, vec![Check::new("client", Status::Fail, reason)], checks_json);
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
        self.0.borrow().reports().all(|c| c.isolated)
    }

    fn healthy(&mut self) -> bool {
        self.0.borrow().reports().all(|c| c.healthy)
    }

    fn message(&mut self) -> String {
        let state = self.0.borrow();
        let names = |bad: Vec<&str>| {
            let shown: Vec<&str> = bad.iter().take(10).copied().collect();
            let more = if bad.len() > 10 { format!(" and {} more", bad.len() - 10) } else { String::new() };
            format!("{}{more}", shown.join(", "))
        };
        let total = state.clients.len();
        let bad: Vec<&str> = state.reports().filter(|c| !c.isolated).map(|c| c.client.as_str()).collect();
        let mut message = if bad.is_empty() {
            format!("{total} client(s), all isolated")
        } else {
            format!("{} of {total} client(s) not fully isolated: {}", bad.len(), names(bad))
        };
        let unhealthy: Vec<&str> = state.reports().filter(|c| !c.healthy).map(|c| c.client.as_str()).collect();
        if !unhealthy.is_empty() {
            message.push_str(&format!("; health problems (backups, logs) in {}", names(unhealthy)));
        }
        message
    }

    /// The reports as maps `#{ client, valid, isolated, verdict, checks, repairs }` (the shape
    /// `ClientReport` serializes to), the checks as the script made them. The check maps are
    /// handed over, not copied (thousands of clients' evidence): a second call is an error.
    fn clients(&mut self) -> ScriptResult<Array> {
        let mut state = self.0.borrow_mut();
        if std::mem::replace(&mut state.handed_over, true) {
            return Err("checks::clients was already called for this report; keep its result".into());
        }
        Ok(state
            .clients
            .iter_mut()
            .map(|entry| {
                let report = &entry.report;
                let mut map = Map::new();
                map.insert("client".into(), report.client.as_str().into());
                map.insert("valid".into(), report.valid.into());
                map.insert("isolated".into(), report.isolated.into());
                map.insert("verdict".into(), report.verdict.as_str().into());
                map.insert("healthy".into(), report.healthy.into());
                map.insert("health".into(), report.health.as_str().into());
                map.insert("checks".into(), checks_array(&std::mem::take(&mut entry.checks_json)).into());
                map.insert(
                    "repairs".into(),
                    report.repairs.iter().map(|r| Dynamic::from(r.clone())).collect::<Array>().into(),
                );
                map.into()
            })
            .collect())
    }

    /// Each client's verdict and heads of its checks.
    pub fn visit(&self, mut each: impl FnMut(&ClientReport)) {
        for entry in &self.0.borrow().clients {
            each(&entry.report);
        }
    }

    /// Each client's verdict and heads of its checks, and the check maps as the script made
    /// them (evidence included; empty once `checks::clients` has handed them over).
    pub fn visit_with_checks(&self, mut each: impl FnMut(&ClientReport, &Array)) {
        for entry in &self.0.borrow().clients {
            each(&entry.report, &checks_array(&entry.checks_json));
        }
    }

    fn table(&self) -> String {
        let state = self.0.borrow();
        let reports: Vec<&ClientReport> = state.reports().collect();
        render_table(&reports)
    }
}

pub fn create_module(host: &Rc<Host>) -> Module {
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
    let h = host.clone();
    module.set_native_fn(
        "builtin",
        move |mut r: StatusReport, ids: Array, names: Array, options: Map| -> ScriptResult<()> {
            let ids: Vec<String> = ids.iter().map(|v| v.to_string()).collect();
            let names: Vec<String> = names.iter().map(|v| v.to_string()).collect();
            let options = status::Options::parse(&names, &options).map_err(script_error)?;
            for (id, checks) in status::builtin_checks(&h, &ids, &options).map_err(script_error)? {
                match checks {
                    Ok(checks) => r.add_kept(&id, checks),
                    Err(reason) => r.invalid(&id, &reason),
                }
            }
            Ok(())
        },
    );
    module.set_native_fn("append", |mut r: StatusReport, id: &str, checks: Array| r.append(id, checks));
    module.set_native_fn("repairs", |mut r: StatusReport, id: &str, repairs: Array| -> ScriptResult<()> {
        r.repairs(id, repairs);
        Ok(())
    });
    module.set_native_fn("invalid", |mut r: StatusReport, id: &str, reason: &str| -> ScriptResult<()> {
        r.invalid(id, reason);
        Ok(())
    });
    module.set_native_fn("table", |r: StatusReport| -> ScriptResult<String> { Ok(r.table()) });
    module.set_native_fn("isolated", |mut r: StatusReport| -> ScriptResult<bool> { Ok(r.isolated()) });
    module.set_native_fn("healthy", |mut r: StatusReport| -> ScriptResult<bool> { Ok(r.healthy()) });
    module.set_native_fn("count", |r: StatusReport| -> ScriptResult<INT> { Ok(r.0.borrow().clients.len() as INT) });
    module.set_native_fn("isolated_count", |r: StatusReport| -> ScriptResult<INT> {
        Ok(r.0.borrow().reports().filter(|c| c.isolated).count() as INT)
    });
    module.set_native_fn("message", |mut r: StatusReport| -> ScriptResult<String> { Ok(r.message()) });
    module.set_native_fn("clients", |mut r: StatusReport| -> ScriptResult<Array> { r.clients() });
    module.set_native_fn("octal", |mode: INT| -> ScriptResult<String> {
        Ok(if mode < 0 { "missing".to_string() } else { format!("{mode:04o}") })
    });
    // The file checks run once per client on every status run: in Rust, one lstat a place.
    let h = host.clone();
    module.set_native_fn("logs", move |id: &str| -> ScriptResult<Dynamic> {
        let layout = ClientLayout::new(&h.roots, id).map_err(script_error)?;
        let log_dir = h.roots.confine_entry(&layout.log_dir.to_string_lossy()).map_err(script_error)?;
        Ok(check_dynamic(&filecheck::logs(&log_dir)))
    });
    let h = host.clone();
    module.set_native_fn("secrets", move |id: &str| -> ScriptResult<Dynamic> {
        let layout = ClientLayout::new(&h.roots, id).map_err(script_error)?;
        let secrets_dir = h.roots.confine_entry(&layout.secrets_dir.to_string_lossy()).map_err(script_error)?;
        Ok(check_dynamic(&filecheck::secrets(&secrets_dir, &layout.secrets_file)))
    });
    let h = host.clone();
    module.set_native_fn("config", move |id: &str| -> ScriptResult<Dynamic> {
        let layout = ClientLayout::new(&h.roots, id).map_err(script_error)?;
        h.roots.confine_entry(&layout.config_dir.to_string_lossy()).map_err(script_error)?;
        Ok(check_dynamic(&filecheck::config(&layout)))
    });
    module
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rust_check_reads_in_scripts_as_the_map_a_script_would_make() {
        let check = Check::new("logs", Status::Fail, "audit.log is missing")
            .evidence(serde_json::json!({ "dir_mode": "0750", "files": [{ "name": "audit.log", "size": 3 }] }))
            .fix("FIX=1 creates missing log files and repairs modes");
        let value = check_dynamic(&check);
        let map = value.read_lock::<Map>().unwrap();
        assert_eq!(map["status"].to_string(), "fail");
        assert_eq!(map["fix"].to_string(), "FIX=1 creates missing log files and repairs modes");
        let evidence = map["evidence"].read_lock::<Map>().unwrap();
        let files = evidence["files"].read_lock::<Array>().unwrap();
        let first = files[0].read_lock::<Map>().unwrap();
        assert_eq!(first["size"].as_int().unwrap(), 3);
        assert!(is_plain(&value));
        assert_eq!(parse_check(&value).unwrap(), check.clone().evidence(serde_json::Value::Null));
        assert!(!check_dynamic(&Check::new("x", Status::Ok, "fine")).read_lock::<Map>().unwrap().contains_key("fix"));
    }

    #[test]
    fn rust_checks_and_appended_ones_read_as_one_list() {
        let mut report = StatusReport::default();
        let networks = Check::new("networks", Status::Ok, "4 ok").evidence(serde_json::json!({ "count": 4 }));
        let logs = Check::new("logs", Status::Warn, "audit.log is missing").fix("FIX=1 creates it");
        report.add_kept("acme", vec![KeptCheck::from(networks), KeptCheck::from(logs)]);
        report.invalid("broken", "client.env is missing");
        let probe = check_map("probe", Status::Fail, "acme reaches beta", Dynamic::UNIT).into();
        report.append("acme", vec![probe]).unwrap();
        // An invalid client keeps its one reason; a new one is added.
        report.append("broken", vec![check_dynamic(&Check::new("probe", Status::Ok, "fine"))]).unwrap();
        report.append("late", vec![check_dynamic(&Check::new("site", Status::Ok, "fine"))]).unwrap();
        assert!(report.table().contains("FAIL acme: probe: acme reaches beta"));
        assert_eq!(report.0.borrow().clients.len(), 3);
        let clients = report.clients().unwrap();
        let acme = clients[0].read_lock::<Map>().unwrap();
        assert_eq!(acme["verdict"].to_string(), "NOT ISOLATED");
        let checks = acme["checks"].read_lock::<Array>().unwrap();
        let names: Vec<String> = checks.iter().map(|c| c.read_lock::<Map>().unwrap()["name"].to_string()).collect();
        assert_eq!(names, ["networks", "logs", "probe"]);
        let first = checks[0].read_lock::<Map>().unwrap();
        assert_eq!(first["evidence"].read_lock::<Map>().unwrap()["count"].as_int().unwrap(), 4);
        assert_eq!(checks[1].read_lock::<Map>().unwrap()["fix"].to_string(), "FIX=1 creates it");
        let broken = clients[1].read_lock::<Map>().unwrap();
        assert_eq!(broken["checks"].read_lock::<Array>().unwrap().len(), 1);
        assert!(report.append("acme", vec![]).unwrap_err().to_string().contains("handed over"));
    }

    #[test]
    fn json_arrays_join() {
        assert_eq!(joined_arrays("[]", "[1]"), "[1]");
        assert_eq!(joined_arrays("[1]", "[]"), "[1]");
        assert_eq!(joined_arrays("[1,2]", "[3]"), "[1,2,3]");
    }

    #[test]
    fn clients_hands_the_checks_over_once() {
        let mut report = StatusReport::default();
        let check = check_dynamic(&Check::new("logs", Status::Ok, "fine"));
        report.add("acme", vec![check]).unwrap();
        report.invalid("broken", "client.env is missing");
        let clients = report.clients().unwrap();
        assert_eq!(clients.len(), 2);
        let acme = clients[0].read_lock::<Map>().unwrap();
        assert_eq!(acme["checks"].read_lock::<Array>().unwrap().len(), 1);
        assert!(report.clients().unwrap_err().to_string().contains("already called"));
        // The verdicts stay: the table and the counts do not need the check maps.
        assert!(report.table().contains("acme"));
        assert!(!report.isolated());
    }
}
