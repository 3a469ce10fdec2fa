//! `logs::` — log collection (see `crate::tenant::logs`): the ingress's access log split into the
//! clients' access.log, their containers' stderr into error.log, through the effects layer
//! (a dry run plans every append and changes no cursor).
//!
//! | function | mutates | does |
//! |---|---|---|
//! | `logs::collect()` | yes | everything new since the last collection: `#{ access, errors, unrouted, lost, warnings, docker_error }` (`access`/`errors`: client id → lines appended; `docker_error`: `""`, or why no container's output was read) |
//! | `logs::collect_client(id)` | yes | the error output of the client's containers only, the same map (stop-client and deploy-client run it before containers go) |

use std::rc::Rc;

use rhai::{Array, Dynamic, Map, Module};

use super::{Host, ScriptResult, script_error};
use crate::{
    drivers::docker::Docker,
    tenant::logs::{self, Report, Scope},
};

fn counts(counts: &std::collections::BTreeMap<String, u64>) -> Map {
    counts.iter().map(|(id, n)| (id.as_str().into(), Dynamic::from(*n as rhai::INT))).collect()
}

fn report_map(report: Report) -> Map {
    let list = |items: Vec<String>| -> Array { items.into_iter().map(Dynamic::from).collect() };
    Map::from_iter([
        ("access".into(), counts(&report.access).into()),
        ("errors".into(), counts(&report.errors).into()),
        ("unrouted".into(), Dynamic::from(report.unrouted as rhai::INT)),
        ("lost".into(), list(report.lost).into()),
        ("warnings".into(), list(report.warnings).into()),
        ("docker_error".into(), report.docker_error.unwrap_or_default().into()),
    ])
}

fn run(host: &Host, client: Option<&str>) -> ScriptResult<Map> {
    let docker = Some(Docker::locate().map(|d| d.program().to_path_buf()).map_err(|e| format!("{e:#}")));
    logs::collect(&host.roots, &host.effects, Scope { client, docker }).map(report_map).map_err(script_error)
}

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();
    let h = host.clone();
    module.set_native_fn("collect", move || run(&h, None));
    let h = host.clone();
    module.set_native_fn("collect_client", move |id: &str| run(&h, Some(id)));
    module
}
