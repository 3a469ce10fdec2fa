//! Notifications (SPEC §13): a JSON event POSTed to `NOTIFY_URL` when a run fails (its task
//! failed, or status found a problem), and healthchecks-style pings to `HEALTHCHECK_URL`:
//! `<url>/start` when a run begins, `<url>` when it succeeds, `<url>/fail` when it fails —
//! also when it fails before any script starts (a bad variable, a task file that does not
//! parse, a lock held), since the notifier is set up from the raw command line first.
//!
//! Every request goes through curl with its whole configuration, URL included, on stdin
//! (`curl -q -sS -K -`), as for Keycloak: webhook and ping URLs are credentials and never
//! reach an argument list, a log line or a message (which names only scheme and host). Events
//! carry the task, the client, the outcome, the run's error line (which can quote a value the
//! operator gave, such as an invalid CLIENT_DOMAIN) and the failing checks' summaries: never a
//! secret. Dry runs send nothing.

use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    drivers::{keycloak::config_quote, process},
    error::Error,
    format::validate,
    fsutil,
};

/// Seconds curl may spend on one notification: a dead endpoint must not hold up a run.
const CONNECT_TIMEOUT_SECS: u64 = 5;
const REQUEST_TIMEOUT_SECS: u64 = 10;
/// Failing checks an event lists; `problems_total` counts them all.
pub const MAX_PROBLEMS: usize = 50;

/// One failing check (or failed client) an event reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub client: String,
    pub check: String,
    pub summary: String,
}

/// The failing checks in a task's result: each client's checks with status `fail` (status),
/// or the client itself when it has `ok: false` and no checks (verify-backup).
pub fn problems_of(result: &Value) -> Vec<Problem> {
    let Some(clients) = result.get("clients").and_then(Value::as_array) else { return Vec::new() };
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let mut problems = Vec::new();
    for client in clients {
        match client.get("checks").and_then(Value::as_array) {
            Some(checks) => {
                problems.extend(checks.iter().filter(|c| c.get("status") == Some(&json!("fail"))).map(|c| Problem {
                    client: text(client, "client"),
                    check: text(c, "name"),
                    summary: text(c, "summary"),
                }))
            }
            None if client.get("ok") == Some(&json!(false)) => problems.push(Problem {
                client: text(client, "client"),
                check: String::new(),
                summary: text(client, "message"),
            }),
            None => {}
        }
    }
    problems
}

/// Where notifications go, for one run.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    webhook: Option<String>,
    /// With `{task}` and `{client}` filled in.
    healthcheck: Option<String>,
    pub task: String,
    pub client: String,
    /// The last failure event sent for this task and client; `None`: every failure is sent.
    memory: Option<Memory>,
    /// The last `unit-failed` event sent for this task and client's units.
    unit_memory: Option<Memory>,
    /// How this task and client's last run ended (`<key>.run.json`), for [`Self::unit_report`].
    last_run: Option<PathBuf>,
    /// systemd's `INVOCATION_ID` of this run.
    invocation: Option<String>,
}

/// What the last failure event of a task (for a client) reported, kept under AGENCY_ROOT, so a
/// problem that stands is sent once (and again every `NOTIFY_REPEAT`), not on every run of a
/// job that runs every 15 minutes; the first success after it sends a `recovered` event.
#[derive(Debug, Clone)]
struct Memory {
    path: PathBuf,
    repeat: Duration,
}

#[derive(Serialize, Deserialize)]
struct Remembered {
    fingerprint: String,
    sent_unix: u64,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Memory {
    fn recall(&self) -> Option<Remembered> {
        serde_json::from_slice(&std::fs::read(&self.path).ok()?).ok()
    }

    /// Whether a failure with `fingerprint` is news: none sent, a different one, or long ago.
    fn is_news(&self, fingerprint: &str) -> bool {
        match self.recall() {
            Some(last) => last.fingerprint != fingerprint || unix_now() >= last.sent_unix + self.repeat.as_secs(),
            None => true,
        }
    }

    fn remember(&self, fingerprint: &str) -> Result<()> {
        let dir = self.path.parent().expect("the memory file is in a dir");
        fsutil::create_dir(dir, 0o700)?;
        let record = Remembered { fingerprint: fingerprint.to_string(), sent_unix: unix_now() };
        fsutil::write_atomic_unlocked(&self.path, &serde_json::to_vec(&record)?, 0o600)?;
        Ok(())
    }

    /// Forgets the last failure; whether there was one.
    fn forget(&self) -> bool {
        std::fs::remove_file(&self.path).is_ok()
    }
}

/// How a run ended, as the runner records it for the `OnFailure=` unit that systemd starts
/// when the run exits non-zero. Status exits 1 when it finds a problem (the spec's exit code,
/// so no `SuccessExitStatus=` can tell it from a crash): that run has already sent its event
/// (or left it out as old news, the `NOTIFY_REPEAT` rule) and its `/fail` ping, and a
/// `unit-failed` event on top would defeat the de-duplication. Only the runner knows whether
/// its run got that far, so it says so here; a unit whose run did not (killed, timed out,
/// never started, failed without findings) is still reported, once per `NOTIFY_REPEAT`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ending {
    /// Started and not finished (yet, or ever: killed, timed out, aborted).
    Running,
    /// Succeeded.
    Ok,
    /// Failed with findings (status's failing checks, verify-backup's failed clients),
    /// reported by its own event and `/fail` ping.
    Reported,
    /// Failed with an error (docker unreachable, a bad variable): its `/fail` ping went out.
    Failed,
}

#[derive(Debug, Serialize, Deserialize)]
struct LastRun {
    ending: Ending,
    unix: u64,
    /// systemd's `INVOCATION_ID` of the run, matched against `MONITOR_INVOCATION_ID` (which
    /// systemd ≥ 251 gives the `OnFailure=` unit) when both are known.
    invocation: Option<String>,
}

/// How long after its run ended a unit's failure is that run's: `OnFailure=` starts at once;
/// an older record is a run before the one that could not start.
const RUN_FRESH_SECS: u64 = 600;

/// What a failed unit still needs: its `unit-failed` event, and the `/fail` ping its run did
/// not send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitReport {
    pub event: bool,
    pub ping: bool,
}

/// What to report of a failed unit whose run recorded `last` (`None`: no record, or one of
/// another invocation), `now`.
fn unit_report(last: Option<(Ending, u64)>, now: u64) -> UnitReport {
    match last.filter(|(_, unix)| now.saturating_sub(*unix) <= RUN_FRESH_SECS).map(|(ending, _)| ending) {
        Some(Ending::Reported) => UnitReport { event: false, ping: false },
        Some(Ending::Failed) => UnitReport { event: true, ping: false },
        Some(Ending::Running | Ending::Ok) | None => UnitReport { event: true, ping: true },
    }
}

/// `NOTIFY_REPEAT`: `None` for `0` (every failure is sent).
fn parse_repeat(text: &str) -> Result<Option<Duration>, Error> {
    match text {
        "0" => Ok(None),
        text => humantime::parse_duration(text)
            .map(Some)
            .map_err(|e| Error::usage(format!("invalid NOTIFY_REPEAT {text:?}: {e}"))),
    }
}

/// What makes two failures the same news: the exit code and the failing checks (not their
/// summaries, which carry ages and counts), or the message when there are none.
fn fingerprint(error: &Error, problems: &[Problem]) -> String {
    let mut heads: Vec<(&str, &str)> = problems.iter().map(|p| (p.client.as_str(), p.check.as_str())).collect();
    heads.sort_unstable();
    heads.dedup();
    if heads.is_empty() { json!([error.code as i32, error.message]) } else { json!([error.code as i32, heads]) }
        .to_string()
}

/// `scheme://host` of a URL: what messages may show of it.
fn shown(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    format!("{scheme}://{}", rest.split(['/', '?', '#']).next().unwrap_or_default())
}

/// The value of `name` as the run sees it: `NAME=VALUE` on the command line (or after ` -- `
/// in MAKEFLAGS), else the environment. Read raw, so a run whose other variables are bad
/// still knows where to report it.
fn raw_value(
    args: &[String],
    makeflags: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Option<String> {
    let prefix = format!("{name}=");
    let from_make = makeflags.and_then(|f| f.split_once(" -- ").map(|(_, vars)| vars.to_string())).unwrap_or_default();
    args.iter()
        .rev()
        .find_map(|a| a.strip_prefix(&prefix).map(str::to_string))
        .or_else(|| from_make.split_whitespace().rev().find_map(|a| a.strip_prefix(&prefix).map(str::to_string)))
        .or_else(|| env(name))
        .filter(|v| !v.is_empty())
}

impl Notifier {
    /// The notifier of a run of `args` (the target and its `VAR=VALUE`s), `None` when neither
    /// URL is set or there is no target. A URL that is not http(s) is a usage error.
    pub fn for_run(
        args: &[String],
        makeflags: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, Error> {
        let Some(task) = args.iter().find(|a| validate::parse_assignment(a).is_none()) else {
            return Ok(None);
        };
        let value = |name: &str| raw_value(args, makeflags, env, name);
        let client = value("CLIENT_ID").unwrap_or_default();
        let checked = |name: &str| -> Result<Option<String>, Error> {
            match value(name) {
                Some(url) => {
                    validate::url(&url).map(|()| Some(url)).map_err(|e| Error::usage(format!("invalid {name}: {e}")))
                }
                None => Ok(None),
            }
        };
        let webhook = checked("NOTIFY_URL")?;
        // Task names and client ids are [a-z0-9-]: nothing that could change the URL's meaning.
        let safe = |text: &str| text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let fill = |url: String| {
            let client = if safe(&client) { client.as_str() } else { "invalid" };
            let task = if safe(task) { task.as_str() } else { "invalid" };
            url.replace("{task}", task).replace("{client}", if client.is_empty() { "all" } else { client })
        };
        let healthcheck = checked("HEALTHCHECK_URL")?.map(fill);
        if webhook.is_none() && healthcheck.is_none() {
            return Ok(None);
        }
        let repeat = parse_repeat(&value("NOTIFY_REPEAT").unwrap_or_else(|| "24h".into()))?;
        let root = value("AGENCY_ROOT").unwrap_or_else(|| "/opt/agency_stack".into());
        let key = format!("{}@{}", fill("{task}".into()), fill("{client}".into()));
        let notifier = Self { webhook, healthcheck, task: task.clone(), client, ..Self::default() };
        Ok(Some(notifier.with_state(&root, &key, repeat, env("INVOCATION_ID"))))
    }

    /// The notify state of `key` under `root`. Only under a root that exists: a run that fails
    /// because it does not still reports.
    fn with_state(mut self, root: &str, key: &str, repeat: Option<Duration>, invocation: Option<String>) -> Self {
        let dir = PathBuf::from(root).join("notify");
        if PathBuf::from(root).is_dir() {
            let memory =
                |suffix: &str| repeat.map(|repeat| Memory { path: dir.join(format!("{key}{suffix}")), repeat });
            self.memory = memory(".json");
            self.unit_memory = memory(".unit.json");
            self.last_run = Some(dir.join(format!("{key}.run.json")));
        }
        self.invocation = invocation.filter(|i| !i.is_empty());
        self
    }

    /// A notifier for host functions, from the run's settings.
    pub fn from_settings(webhook: &str, healthcheck: &str, task: &str, client: &str) -> Self {
        let some = |url: &str| Some(url.to_string()).filter(|u| !u.is_empty());
        // As a run's own pings name a host-wide job: `all`.
        let named = if client.is_empty() { "all" } else { client };
        let healthcheck = some(healthcheck).map(|u| u.replace("{task}", task).replace("{client}", named));
        Self {
            webhook: some(webhook),
            healthcheck,
            task: task.to_string(),
            client: client.to_string(),
            ..Self::default()
        }
    }

    /// With the notify state the runs of `task` and `client` keep under `root` (the one
    /// [`Self::for_run`] reads), for a failed unit of that job.
    pub fn with_run_state(self, root: &str, repeat: &str) -> Result<Self, Error> {
        let repeat = parse_repeat(repeat)?;
        let key = format!("{}@{}", self.task, if self.client.is_empty() { "all" } else { &self.client });
        Ok(self.with_state(root, &key, repeat, None))
    }

    fn record_run(&self, ending: Ending) -> Result<()> {
        let Some(path) = &self.last_run else { return Ok(()) };
        fsutil::create_dir(path.parent().expect("the record is in a dir"), 0o700)?;
        let record = LastRun { ending, unix: unix_now(), invocation: self.invocation.clone() };
        fsutil::write_atomic_unlocked(path, &serde_json::to_vec(&record)?, 0o600)?;
        Ok(())
    }

    /// What a failed unit of this job still needs, given the run it started recorded how it
    /// ended; `monitored`: the failed run's `INVOCATION_ID` when systemd gives it.
    pub fn unit_report(&self, monitored: Option<&str>) -> UnitReport {
        let last = self.last_run.as_ref().and_then(|p| serde_json::from_slice::<LastRun>(&std::fs::read(p).ok()?).ok());
        let last = last.filter(|run| match (monitored, &run.invocation) {
            (Some(failed), Some(recorded)) => failed == recorded,
            _ => true,
        });
        unit_report(last.map(|run| (run.ending, run.unix)), unix_now())
    }

    /// A `unit-failed` event, unless it is the same as the last one and within `NOTIFY_REPEAT`;
    /// whether it was sent.
    pub fn send_unit_failed(&self, event: &Value) -> Result<bool> {
        let fingerprint = json!(["unit-failed", event["unit"]]).to_string();
        if !self.has_webhook() || !self.unit_memory.as_ref().is_none_or(|m| m.is_news(&fingerprint)) {
            return Ok(false);
        }
        self.send(event)?;
        if let Some(memory) = &self.unit_memory {
            memory.remember(&fingerprint)?;
        }
        Ok(true)
    }

    pub fn has_webhook(&self) -> bool {
        self.webhook.is_some()
    }

    /// `<url>/start`; the run is recorded as running until it finishes.
    pub fn started(&self) -> Result<()> {
        let recorded = self.record_run(Ending::Running);
        if let Some(url) = &self.healthcheck {
            post(&format!("{}/start", url.trim_end_matches('/')), "text/plain", "")?;
        }
        recorded
    }

    /// The run's end: the success ping, or the failure event and `/fail` ping.
    pub fn finished(&self, failure: Option<&Error>, problems: &[Problem]) -> Result<()> {
        let mut errors = Vec::new();
        if let Some(error) = failure {
            let ending = if problems.is_empty() { Ending::Failed } else { Ending::Reported };
            let fingerprint = fingerprint(error, problems);
            if self.webhook.is_some() && self.memory.as_ref().is_none_or(|m| m.is_news(&fingerprint)) {
                let event = self.event("failure", error, problems);
                match self.send(&event) {
                    Ok(()) => errors.extend(self.memory.as_ref().and_then(|m| m.remember(&fingerprint).err())),
                    Err(e) => errors.push(e),
                }
            }
            if let Some(url) = &self.healthcheck {
                let body = format!("{} failed (exit {}): {}", self.task, error.code as i32, error.message);
                errors.extend(post(&format!("{}/fail", url.trim_end_matches('/')), "text/plain", &body).err());
            }
            errors.extend(self.record_run(ending).err());
        } else {
            if let Some(url) = &self.healthcheck {
                errors.extend(post(url, "text/plain", "").err());
            }
            errors.extend(self.record_run(Ending::Ok).err());
            // Both forgotten: a failure after this success is news.
            let unit_failed = self.unit_memory.as_ref().is_some_and(Memory::forget);
            let failed = self.memory.as_ref().is_some_and(Memory::forget);
            if self.webhook.is_some() && (failed || unit_failed) {
                let mut event = self.envelope("recovered");
                event["outcome"] = json!("ok");
                event["message"] = json!(format!("{} succeeded after a failure that was reported", self.task));
                errors.extend(self.send(&event).err());
            }
        }
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `<url>/fail` with `message` as the body (a failed unit reported by systemd).
    pub fn failed_ping(&self, message: &str) -> Result<()> {
        match &self.healthcheck {
            Some(url) => post(&format!("{}/fail", url.trim_end_matches('/')), "text/plain", message),
            None => Ok(()),
        }
    }

    fn event(&self, kind: &str, error: &Error, problems: &[Problem]) -> Value {
        let mut event = self.envelope(kind);
        event["outcome"] = json!("failed");
        event["exit_code"] = json!(error.code as i32);
        event["message"] = json!(error.message);
        event["problems"] = json!(problems.iter().take(MAX_PROBLEMS).collect::<Vec<_>>());
        event["problems_total"] = json!(problems.len());
        event
    }

    /// The fields every event has: `source`, `event`, `task`, `client` (null for all), `host`, `time`.
    pub fn envelope(&self, kind: &str) -> Value {
        json!({
            "source": "agency",
            "event": kind,
            "task": self.task,
            "client": if self.client.is_empty() { Value::Null } else { json!(self.client) },
            "host": host_name(),
            "time": crate::tenant::audit::now_rfc3339(),
        })
    }

    /// POSTs `event` to the webhook.
    pub fn send(&self, event: &Value) -> Result<()> {
        match &self.webhook {
            Some(url) => post(url, "application/json", &event.to_string()),
            None => Ok(()),
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

fn curl() -> Result<PathBuf> {
    process::locate("curl", "notifications need it (Debian: apt-get install curl)")
}

/// POSTs `body` to `url` through curl, the URL and body on stdin; a 2xx answer is success.
fn post(url: &str, content_type: &str, body: &str) -> Result<()> {
    let mut config = String::new();
    for (key, value) in [
        ("url", url),
        ("request", "POST"),
        ("header", &format!("Content-Type: {content_type}")),
        ("header", "Expect:"),
        ("data-raw", body),
        ("output", "/dev/null"),
        ("write-out", "%{http_code}"),
        ("connect-timeout", &CONNECT_TIMEOUT_SECS.to_string()),
        ("max-time", &REQUEST_TIMEOUT_SECS.to_string()),
    ] {
        config.push_str(&format!("{key} = {}\n", config_quote(value)));
    }
    let output = process::Command::new(&curl()?).args(["-q", "-sS", "-K", "-"]).stdin(config.into_bytes()).output()?;
    let code = output.stdout.trim();
    if !output.success() {
        let reason = output.first_error_line().trim_start_matches("curl: ");
        bail!("could not notify {}: {reason}", shown(url));
    }
    if !code.starts_with('2') {
        return Err(anyhow!("{} answered HTTP {code} to a notification", shown(url)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_wide_job_pings_the_url_its_own_runs_ping() {
        let url = "http://127.0.0.1:9/ping/{task}-{client}";
        let job = Notifier::from_settings("", url, "multi-tenancy-status", "");
        assert_eq!(job.healthcheck.as_deref(), Some("http://127.0.0.1:9/ping/multi-tenancy-status-all"));
        let client = Notifier::from_settings("", url, "backup-client", "acme");
        assert_eq!(client.healthcheck.as_deref(), Some("http://127.0.0.1:9/ping/backup-client-acme"));
    }

    #[test]
    fn a_failed_unit_reports_only_what_its_run_did_not() {
        let now = 10_000;
        let (nothing, event, both) = (
            UnitReport { event: false, ping: false },
            UnitReport { event: true, ping: false },
            UnitReport { event: true, ping: true },
        );
        assert_eq!(unit_report(Some((Ending::Reported, now - 5)), now), nothing, "its findings were its own news");
        assert_eq!(unit_report(Some((Ending::Failed, now - 5)), now), event, "it pinged /fail itself");
        assert_eq!(unit_report(Some((Ending::Running, now - 5)), now), both, "killed or timed out");
        assert_eq!(unit_report(None, now), both, "never ran");
        // A record from a run before the one that could not start is not this failure's.
        assert_eq!(unit_report(Some((Ending::Reported, now - RUN_FRESH_SECS - 1)), now), both);
    }

    #[test]
    fn a_failed_unit_is_matched_to_its_run_by_invocation() {
        let root = std::env::temp_dir().join(format!("agency-notify-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let root_text = root.to_str().unwrap();
        let run = Notifier::from_settings("", "", "multi-tenancy-status", "").with_state(
            root_text,
            "multi-tenancy-status@all",
            None,
            Some("abc".into()),
        );
        run.record_run(Ending::Reported).unwrap();
        let unit = Notifier::from_settings("", "", "multi-tenancy-status", "").with_run_state(root_text, "0").unwrap();
        assert_eq!(unit.unit_report(None), UnitReport { event: false, ping: false });
        assert_eq!(unit.unit_report(Some("abc")), UnitReport { event: false, ping: false });
        assert_eq!(unit.unit_report(Some("def")), UnitReport { event: true, ping: true }, "another invocation");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_failing_checks_of_a_status_result() {
        let result = json!({ "clients": [
            { "client": "acme", "checks": [ { "name": "logs", "status": "ok", "summary": "fine" } ] },
            { "client": "beta", "checks": [ { "name": "secrets", "status": "fail", "summary": "mode 0644" },
                                            { "name": "backup", "status": "warn", "summary": "old" } ] },
            { "client": "gamma", "ok": false, "message": "check failed" },
        ]});
        let problems = problems_of(&result);
        assert_eq!(problems.len(), 2);
        assert_eq!(
            problems[0],
            Problem { client: "beta".into(), check: "secrets".into(), summary: "mode 0644".into() }
        );
        assert_eq!(problems[1].client, "gamma");
        assert!(problems_of(&json!({ "ok": false })).is_empty());
    }

    #[test]
    fn urls_come_from_the_command_line_before_the_environment_and_show_only_their_host() {
        let args: Vec<String> =
            ["backup-client", "CLIENT_ID=acme", "HEALTHCHECK_URL=https://hc.example/key/{task}-{client}"]
                .map(String::from)
                .to_vec();
        let env = |name: &str| (name == "NOTIFY_URL").then(|| "https://hooks.example/T0/secret".to_string());
        let notifier = Notifier::for_run(&args, None, &env).unwrap().unwrap();
        assert_eq!(notifier.healthcheck.as_deref(), Some("https://hc.example/key/backup-client-acme"));
        assert_eq!(notifier.webhook.as_deref(), Some("https://hooks.example/T0/secret"));
        assert_eq!(shown("https://hooks.example/T0/secret"), "https://hooks.example");
        let bad: Vec<String> = ["x", "NOTIFY_URL=ftp://x"].map(String::from).to_vec();
        assert!(Notifier::for_run(&bad, None, &|_| None).is_err());
        assert!(Notifier::for_run(&["x".to_string()], None, &|_| None).unwrap().is_none());
    }
}
