//! `notify::` — events a script sends itself (see `crate::tenant::notify`); failures and the pings of
//! every run are sent by the runner. Nothing is sent in a dry run or without `NOTIFY_URL`.
//!
//! | function | mutates | does |
//! |---|---|---|
//! | `notify::digest(report, pool)` | no | one `digest` event for all clients of a `StatusReport` to `NOTIFY_URL`: counts, the clients not isolated with their failing checks, the pool; true when sent |
//! | `notify::unit_failed(unit)` | no | for a failed `agency-*` systemd unit, what its run did not report itself: a `unit-failed` event (once per `NOTIFY_REPEAT`) and the `/fail` ping of its job, nothing after a run that reported its findings; true when an event was sent |

use std::rc::Rc;

use anyhow::{Result, bail};
use rhai::{Map, Module};
use serde_json::{Value, json};

use super::{Host, ScriptResult, checks::StatusReport, script_error};
use crate::{
    tenant::check::Status,
    tenant::notify::{MAX_PROBLEMS, Notifier},
    tenant::schedule::UNIT_PREFIX,
};

fn notifier(host: &Host, task: &str, client: &str) -> Notifier {
    let settings = &host.settings;
    Notifier::from_settings(settings.get("NOTIFY_URL"), settings.get("HEALTHCHECK_URL"), task, client)
}

fn digest(host: &Host, report: &StatusReport, pool: &Map) -> Result<bool> {
    let notifier = notifier(host, &host.effects.task(), "");
    if !notifier.has_webhook() {
        return Ok(false);
    }
    let (mut clients, mut isolated, mut warnings) = (0, 0, 0);
    let mut not_isolated = Vec::new();
    report.visit(|client| {
        clients += 1;
        warnings += client.checks.iter().filter(|c| c.status == Status::Warn).count();
        if client.isolated {
            isolated += 1;
        } else {
            let failing: Vec<&str> =
                client.checks.iter().filter(|c| c.status == Status::Fail).map(|c| c.name.as_str()).collect();
            not_isolated.push(json!({ "client": client.client, "verdict": client.verdict, "failing": failing }));
        }
    });
    let number = |key: &str| pool.get(key).and_then(|v| v.as_int().ok()).unwrap_or(0);
    let mut event = notifier.envelope("digest");
    event["clients"] = json!(clients);
    event["isolated"] = json!(isolated);
    event["warnings"] = json!(warnings);
    event["not_isolated_total"] = json!(not_isolated.len());
    not_isolated.truncate(MAX_PROBLEMS);
    event["not_isolated"] = Value::Array(not_isolated);
    event["pool"] = json!({
        "pool": pool.get("pool").map(|p| p.to_string()).unwrap_or_default(),
        "used": number("used"),
        "total": number("total"),
    });
    Ok(host.effects.side_effect(|| notifier.send(&event))?.is_some())
}

/// The task and client of one of schedule's units: `agency-backup@acme.service`.
fn job_of(unit: &str) -> Result<(String, String)> {
    let Some(name) = unit.strip_prefix(UNIT_PREFIX).and_then(|u| u.strip_suffix(".service")) else {
        bail!("{unit:?} is not one of schedule's units (agency-<job>[@<client>].service)");
    };
    let (job, client) = name.split_once('@').unwrap_or((name, ""));
    let task = match job {
        "backup" => "backup-client",
        "verify" => "verify-backup",
        "status" | "digest" => "multi-tenancy-status",
        "rotate" => "rotate-secrets",
        other => other,
    };
    Ok((task.to_string(), client.to_string()))
}

/// What the unit's own run did not report (see `tenant::notify::Ending`): nothing after a run
/// that sent or de-duplicated its findings itself, else the `unit-failed` event (once per
/// `NOTIFY_REPEAT`) and the `/fail` ping when its run did not send one.
fn unit_failed(host: &Host, unit: &str) -> Result<bool> {
    let (task, client) = job_of(unit)?;
    let settings = &host.settings;
    let notifier =
        notifier(host, &task, &client).with_run_state(settings.get("AGENCY_ROOT"), settings.get("NOTIFY_REPEAT"))?;
    let monitored = std::env::var("MONITOR_INVOCATION_ID").ok().filter(|i| !i.is_empty());
    let report = notifier.unit_report(monitored.as_deref());
    let message = format!("systemd reports that {unit} failed (journalctl -u {unit})");
    let mut event = notifier.envelope("unit-failed");
    event["unit"] = json!(unit);
    event["outcome"] = json!("failed");
    event["message"] = json!(message);
    let sent = host.effects.side_effect(|| {
        let webhook = if report.event { notifier.send_unit_failed(&event) } else { Ok(false) };
        if report.ping {
            notifier.failed_ping(&message)?;
        }
        webhook
    })?;
    Ok(sent.unwrap_or(false))
}

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();
    let h = host.clone();
    module.set_native_fn("digest", move |report: StatusReport, pool: Map| -> ScriptResult<bool> {
        digest(&h, &report, &pool).map_err(script_error)
    });
    let h = host.clone();
    module.set_native_fn("unit_failed", move |unit: &str| -> ScriptResult<bool> {
        unit_failed(&h, unit).map_err(script_error)
    });
    module
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_name_their_job() {
        assert_eq!(job_of("agency-backup@acme.service").unwrap(), ("backup-client".into(), "acme".into()));
        assert_eq!(job_of("agency-digest.service").unwrap(), ("multi-tenancy-status".into(), String::new()));
        assert!(job_of("sshd.service").is_err());
    }
}
