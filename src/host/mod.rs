//! What task scripts can call: one Rhai module per namespace (`fs::`, `layout::`, ...),
//! each built by `create_module(&Rc<Host>)` from closures sharing the run's state.
//! Mutating functions go through [`Effects`]; none decides dry-run by itself.

pub mod audit;
pub mod checks;
pub mod docker;
pub mod envfile;
pub mod firewall;
pub mod format;
pub mod fs;
pub mod keycloak;
pub mod layout;
pub mod restic;
pub mod secrets;

use std::rc::Rc;

use rhai::{Engine, EvalAltResult};

use crate::{effects::Effects, layout::Roots, output::Output, settings::Settings};

/// The state host functions share during one run.
pub struct Host {
    pub settings: Settings,
    pub roots: Roots,
    pub effects: Effects,
    pub output: Rc<Output>,
    /// Values of the running task's secret variables, redacted wherever a host function
    /// writes script data out (audit events).
    pub secret_values: std::cell::RefCell<Vec<String>>,
}

impl Host {
    pub fn new(settings: Settings, dry_run: bool, output: Rc<Output>) -> Self {
        Self {
            roots: Roots::from_settings(&settings),
            settings,
            effects: Effects::new(dry_run, output.clone()),
            output,
            secret_values: Default::default(),
        }
    }
}

/// Registers every host module on `engine`.
pub fn register(engine: &mut Engine, host: &Rc<Host>) {
    engine.register_static_module("fs", fs::create_module(host).into());
    engine.register_static_module("layout", layout::create_module(host).into());
    engine.register_static_module("envfile", envfile::create_module(host).into());
    engine.register_static_module("secrets", secrets::create_module(host).into());
    engine.register_static_module("restic", restic::create_module(host).into());
    engine.register_static_module("keycloak", keycloak::create_module(host).into());
    engine.register_static_module("format", format::create_module().into());
    engine.register_static_module("audit", audit::create_module(host).into());
    engine.register_static_module("docker", docker::create_module(host).into());
    engine.register_static_module("firewall", firewall::create_module(host).into());
    engine.register_static_module("checks", checks::create_module(host).into());
    engine.register_type_with_name::<checks::StatusReport>("StatusReport");
    engine.register_type_with_name::<docker::DockerSnapshot>("DockerSnapshot");
    engine.register_fn("timestamp_utc", crate::audit::now_rfc3339);
    engine.register_fn("flag", |value: &str| -> ScriptResult<bool> {
        crate::validate::parse_bool(value).map_err(|e| e.into())
    });
}

/// Host errors reach the script as runtime errors carrying the whole context chain.
pub fn script_error(error: anyhow::Error) -> Box<EvalAltResult> {
    format!("{error:#}").into()
}

pub type ScriptResult<T> = Result<T, Box<EvalAltResult>>;

/// Like [`script_error`], at the position of the call (Rhai leaves errors of module-qualified
/// native calls such as `docker::exec_with_stdin(..)` without one), so the message can
/// point at the script's line.
pub fn located_error(context: &rhai::NativeCallContext, error: anyhow::Error) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(format!("{error:#}").into(), context.call_position()).into()
}

/// Modes arrive from scripts as integers (`0o640`).
pub fn mode_arg(mode: rhai::INT) -> ScriptResult<u32> {
    u32::try_from(mode).ok().filter(|m| *m <= 0o7777).ok_or_else(|| format!("invalid file mode {mode:#o}").into())
}
