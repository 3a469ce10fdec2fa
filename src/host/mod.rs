//! What task scripts can call: one Rhai module per namespace (`fs::`, `layout::`, ...),
//! each built by `create_module(&Rc<Host>)` from closures sharing the run's state.
//! Mutating functions go through [`Effects`]; none decides dry-run by itself.

pub mod audit;
pub mod checks;
pub mod databases;
pub mod docker;
pub mod envfile;
pub mod firewall;
pub mod format;
pub mod fs;
pub mod html;
pub mod keycloak;
pub mod layout;
pub mod logs;
pub mod metrics;
pub mod notify;
pub mod restic;
pub mod schedule;
pub mod secrets;
pub mod stack;
mod status;

use std::rc::Rc;

use rhai::{Dynamic, Engine, EvalAltResult};

use crate::{effects::Mode, effects::output::Output, tenant::context::Context, tenant::settings::Settings};

/// The state host functions share during one run: the domain's [`Context`] (settings, roots,
/// effects, output, site directory; reached through `Deref`) and what only scripts need.
pub struct Host {
    pub context: Context,
    /// The task the operator asked for; the others of the run are its deps.
    pub target: String,
    /// Values of the running task's secret variables, redacted wherever a host function
    /// writes script data out (audit events).
    pub secret_values: std::cell::RefCell<Vec<String>>,
    /// The run's Keycloak connection, shared by `keycloak::` and `stack::` (the issuer).
    pub keycloak: keycloak::Connection,
}

impl std::ops::Deref for Host {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.context
    }
}

impl Host {
    pub fn new(settings: Settings, mode: Mode, output: Rc<Output>, target: &str) -> Self {
        Self {
            context: Context::new(settings, mode, output),
            target: target.to_string(),
            secret_values: Default::default(),
            keycloak: Default::default(),
        }
    }

    pub fn with_site_dir(mut self, site_dir: &std::path::Path) -> Self {
        self.context.site_dir = site_dir.to_path_buf();
        self
    }
}

/// Registers every host module on `engine`.
pub fn register(engine: &mut Engine, host: &Rc<Host>) {
    engine.register_static_module("fs", fs::create_module(host).into());
    engine.register_static_module("layout", layout::create_module(host).into());
    engine.register_static_module("envfile", envfile::create_module(host).into());
    engine.register_static_module("secrets", secrets::create_module(host).into());
    engine.register_static_module("restic", restic::create_module(host).into());
    engine.register_static_module("databases", databases::create_module(host).into());
    engine.register_static_module("keycloak", keycloak::create_module(host).into());
    engine.register_static_module("format", format::create_module().into());
    engine.register_static_module("audit", audit::create_module(host).into());
    engine.register_static_module("docker", docker::create_module(host).into());
    engine.register_static_module("firewall", firewall::create_module(host).into());
    engine.register_static_module("checks", checks::create_module(host).into());
    engine.register_static_module("stack", stack::create_module(host).into());
    engine.register_type_with_name::<stack::StackInspection>("StackInspection");
    engine.register_static_module("metrics", metrics::create_module(host).into());
    engine.register_static_module("html", html::create_module(host).into());
    engine.register_static_module("schedule", schedule::create_module(host).into());
    engine.register_static_module("notify", notify::create_module(host).into());
    engine.register_static_module("logs", logs::create_module(host).into());
    engine.register_type_with_name::<checks::StatusReport>("StatusReport");
    engine.register_type_with_name::<docker::DockerSnapshot>("DockerSnapshot");
    engine.register_type_with_name::<UsageError>("UsageError");
    // `step.wait()`: a step started in the background (`restic::start_init`) ends; its
    // outcome ("created", "unchanged"), or its error.
    engine.register_type_with_name::<crate::effects::Background>("Background");
    let h = host.clone();
    engine.register_fn("wait", move |step: &mut crate::effects::Background| -> ScriptResult<String> {
        Ok(h.effects.wait(step).map_err(script_error)?.as_str().into())
    });
    engine.register_fn("to_string", |e: &mut UsageError| e.0.clone());
    engine.register_fn("timestamp_utc", crate::tenant::audit::now_rfc3339);
}

/// Host errors reach the script as runtime errors carrying the whole context chain.
pub fn script_error(error: anyhow::Error) -> Box<EvalAltResult> {
    match usage_error(&error) {
        Some(usage) => EvalAltResult::ErrorRuntime(Dynamic::from(usage), rhai::Position::NONE).into(),
        None => format!("{error:#}").into(),
    }
}

/// A host function's error that is the operator's usage error (an unknown name given as a
/// variable's value): the run exits 2, as for an unknown variable. Scripts see its message.
#[derive(Debug, Clone)]
pub struct UsageError(pub String);

fn usage_error(error: &anyhow::Error) -> Option<UsageError> {
    let usage = error.downcast_ref::<crate::error::Error>()?;
    (usage.code == crate::error::ExitCode::Usage).then(|| UsageError(format!("{error:#}")))
}

pub type ScriptResult<T> = Result<T, Box<EvalAltResult>>;

/// Like [`script_error`], at the position of the call (Rhai leaves errors of module-qualified
/// native calls such as `docker::exec_with_stdin(..)` without one), so the message can
/// point at the script's line.
pub fn located_error(context: &rhai::NativeCallContext, error: anyhow::Error) -> Box<EvalAltResult> {
    let value = usage_error(&error).map_or_else(|| format!("{error:#}").into(), Dynamic::from);
    EvalAltResult::ErrorRuntime(value, context.call_position()).into()
}

/// Modes arrive from scripts as integers (`0o640`).
pub fn mode_arg(mode: rhai::INT) -> ScriptResult<u32> {
    u32::try_from(mode).ok().filter(|m| *m <= 0o7777).ok_or_else(|| format!("invalid file mode {mode:#o}").into())
}
