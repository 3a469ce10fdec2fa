//! `audit::` — lines a script adds to a client's audit trail, beside the one line the
//! runner writes for every task run (see `src/tenant/audit.rs`).
//!
//! | function | mutates | returns |
//! |---|---|---|
//! | `audit::append(client_id, event)` | yes | appends `{time, task, user, outcome: "event", event}` as one JSON line to the client's audit.log; any of the client's secrets and the task's secret variables inside `event` is redacted; "updated" |
//!
//! ```rhai
//! audit::append(CLIENT_ID, #{ action: "db password applied", container: "acme-db" });
//! ```

use std::rc::Rc;

use rhai::{Dynamic, Module};

use super::{Host, ScriptResult, script_error};
use crate::{
    effects::Outcome,
    tenant::audit::{self, AuditRecord},
    tenant::layout::ClientLayout,
};

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();

    let h = host.clone();
    module.set_native_fn("append", move |id: &str, event: Dynamic| -> ScriptResult<String> {
        let layout = ClientLayout::new(&h.roots, id).map_err(script_error)?;
        let mut event: serde_json::Value = rhai::serde::from_dynamic(&event)?;
        let secrets = crate::tenant::secrets::read(&layout.secrets_file).map_err(script_error)?;
        // A hand-set value shorter than 8 characters is not treated as a secret here: it
        // would blank out ordinary words. Secret task variables are redacted whatever their length.
        let mut secrets: Vec<String> = secrets.into_values().filter(|v| v.len() >= 8).collect();
        secrets.extend(h.secret_values.borrow().iter().cloned());
        audit::redact(&mut event, &secrets);
        let task = h.effects.task();
        let target = layout.audit_log.display().to_string();
        h.effects
            .apply("audit", &target, "event", Outcome::Updated, || {
                let record = AuditRecord {
                    time: audit::now_rfc3339(),
                    task: &task,
                    vars: serde_json::Map::new(),
                    user: audit::current_user(),
                    pid: std::process::id(),
                    outcome: "event",
                    error: None,
                    event: Some(event),
                    changes: &[],
                };
                let written = audit::append(&layout, &record)?;
                anyhow::ensure!(
                    written,
                    "log directory {} does not exist; run setup-log-segmentation CLIENT_ID={id}",
                    layout.log_dir.display()
                );
                Ok(())
            })
            .map(|applied| applied.outcome.as_str().into())
            .map_err(script_error)
    });

    module
}
