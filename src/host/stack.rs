//! `stack::` — a client's stack (SPEC §10) and the one shared ingress. Reads run in dry runs
//! too; every change goes through the effects layer. Compose gets the client's values and
//! secrets in its environment only.
//!
//! | function | mutates | returns |
//! |---|---|---|
//! | `stack::names()` | no | the stacks there are: the built-in ones and the site's `stacks/<name>/compose.yml` |
//! | `stack::load(name)` | no | the stack checked: `#{ name, origin, text, services: [#{ name, tiers, http_port, db, image }], volumes }`; fails naming what is wrong |
//! | `stack::override(name, id, env)` | no | the client's compose override (YAML text) for the client.env map `env` (its `CPU_LIMIT`, `MEMORY_LIMIT`, `PIDS_LIMIT`; in Swarm's terms for a client on overlay networks of a Swarm manager) |
//! | `stack::upstream(name, id)` | no | where the ingress sends the client's requests, `http://<id>-<service>:<port>`, or `""` when no service carries `agency.http.port` |
//! | `stack::domain_owner(id, domain)` | no | the id of another client whose client.env records `domain`, or `""` |
//! | `stack::deploy(id)` | yes | writes the client's compose.yml and override, runs `compose up -d --remove-orphans` as project `<id>` (for a client on overlay networks of a Swarm manager `docker stack deploy`) unless every service already runs as deployed: `#{ stack, outcome, services, command, runner }` (`command`: the command line, `""` when nothing ran; `runner`: `compose` / `swarm`) |
//! | `stack::deploy(id, before)` | yes | the same; `before` (a function of the id) is called just before containers change, never for an up-to-date stack (deploy-client collects their logs there) |
//! | `stack::stop(id)` | yes | stops and removes the client's containers (a Swarm stack: `docker stack rm`), keeps its volumes: "removed" / "unchanged" |
//! | `stack::states()` | no | map client id → `running` / `stopped` / `partial` of the clients with containers (one `docker ps`) |
//! | `stack::ingress_dir()` | no | the directory of the ingress's per-client dynamic files |
//! | `stack::ingress_file(id)` | no | the client's dynamic file there |
//! | `stack::setup_ingress()` | yes | the shared Traefik container (`INGRESS_*` settings), attached to every deployed client's frontend network: `#{ container, outcome, connected }` |
//! | `stack::connect_ingress(id)` | yes | attaches a running ingress to the client's frontend network: "created" / "unchanged" (no ingress, or attached) |
//! | `stack::inspect()` | no | a `StackInspection` of every agency container (one `docker ps` + one `docker inspect`) and the domains of all clients |
//! | `stack::check(inspection, id)` | no | the `stack` check of a client: services running (restarts, health), limits and hardened defaults, only the routed service on the frontend, its domain its own; with `KEYCLOAK_URL` set, a routed service with an OIDC client names the realm's issuer in its environment |

use std::{cell::RefCell, collections::BTreeMap, path::PathBuf, rc::Rc};

use anyhow::{Result, anyhow};
use rhai::{Array, Dynamic, FnPtr, Map, Module, NativeCallContext};

use super::{Host, ScriptResult, checks::check_dynamic, script_error};
use crate::{
    drivers::{
        compose::Compose,
        docker::{Docker, LABEL_MANAGED},
    },
    tenant::layout::ClientLayout,
    tenant::policy::CLIENT_LABEL,
    tenant::stack::Stack,
    tenant::stack_run,
    tenant::stack_status::{self, Inspection},
    tenant::swarm::Runner,
};

/// An inspection handed to scripts (cheap to copy).
#[derive(Clone)]
pub struct StackInspection(pub Rc<Inspection>);

#[derive(Default)]
struct State {
    docker: RefCell<Option<PathBuf>>,
    compose: RefCell<Option<Compose>>,
}

impl State {
    fn docker(&self) -> Result<PathBuf> {
        let mut slot = self.docker.borrow_mut();
        if slot.is_none() {
            *slot = Some(Docker::locate()?.program().to_path_buf());
        }
        Ok(slot.clone().expect("just set"))
    }

    fn compose(&self) -> Result<Compose> {
        let mut slot = self.compose.borrow_mut();
        if slot.is_none() {
            *slot = Some(Compose::locate(&self.docker()?)?);
        }
        Ok(slot.clone().expect("just set"))
    }
}

fn map_env(env: &Map) -> BTreeMap<String, String> {
    env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn upstream(stack: &Stack, id: &str) -> String {
    stack.routed().map(|s| format!("http://{id}-{}:{}", s.name, s.http_port.unwrap_or(80))).unwrap_or_default()
}

fn deploy(host: &Host, state: &State, id: &str, before_change: &dyn Fn() -> Result<()>) -> Result<Map> {
    let docker = state.docker()?;
    let keycloak_base = || super::keycloak::issuer_base(host);
    let deployed = stack_run::deploy(host, &docker, &|| state.compose(), &keycloak_base, before_change, id)?;
    let services: Array = deployed.services.into_iter().map(Dynamic::from).collect();
    let runner = match deployed.runner {
        Runner::Compose => "compose",
        Runner::Swarm => "swarm",
    };
    Ok(Map::from_iter([
        ("stack".into(), deployed.stack.into()),
        ("outcome".into(), deployed.outcome.as_str().into()),
        ("services".into(), services.into()),
        ("command".into(), deployed.command.into()),
        ("runner".into(), runner.into()),
    ]))
}

fn states(state: &State) -> Result<Map> {
    let docker = Docker::with_program(state.docker()?);
    let containers = docker.list_containers_with_labels(&[(LABEL_MANAGED.into(), "true".into())])?;
    let mut by_client: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for container in containers.iter().filter(|c| !c.is_probe()) {
        let Some(client) = container.label(CLIENT_LABEL) else { continue };
        let entry = by_client.entry(client.to_string()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(container.state == "running");
    }
    Ok(by_client
        .into_iter()
        .map(|(id, (all, running))| {
            let state = if running == all {
                "running"
            } else if running == 0 {
                "stopped"
            } else {
                "partial"
            };
            (id.into(), state.into())
        })
        .collect())
}

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();
    let state = Rc::new(State::default());

    let h = host.clone();
    module.set_native_fn("names", move || -> ScriptResult<Array> {
        let mut names = crate::tenant::stack::builtin_names();
        if let Ok(entries) = std::fs::read_dir(h.site_dir.join("stacks")) {
            names.extend(entries.flatten().filter_map(|e| e.file_name().into_string().ok()));
        }
        names.sort();
        names.dedup();
        Ok(names.into_iter().map(Dynamic::from).collect())
    });

    let h = host.clone();
    module.set_native_fn("load", move |name: &str| -> ScriptResult<Map> {
        let stack = Stack::load(&h.site_dir, name).map_err(script_error)?;
        let services: Array = stack
            .services
            .iter()
            .map(|s| {
                let tiers: Array = s.tiers.iter().map(|t| Dynamic::from(t.to_string())).collect();
                Dynamic::from(Map::from_iter([
                    ("name".into(), s.name.clone().into()),
                    ("tiers".into(), tiers.into()),
                    ("http_port".into(), s.http_port.map_or(Dynamic::UNIT, |p| (p as rhai::INT).into())),
                    ("db".into(), s.db.clone().map_or(Dynamic::UNIT, Dynamic::from)),
                    ("image".into(), s.image.clone().into()),
                ]))
            })
            .collect();
        let volumes: Array = stack.volumes.iter().map(|v| Dynamic::from(v.clone())).collect();
        Ok(Map::from_iter([
            ("name".into(), stack.name.clone().into()),
            ("origin".into(), stack.origin.clone().into()),
            ("text".into(), stack.text.clone().into()),
            ("services".into(), services.into()),
            ("volumes".into(), volumes.into()),
        ]))
    });

    let (h, s) = (host.clone(), state.clone());
    module.set_native_fn("override", move |name: &str, id: &str, env: Map| -> ScriptResult<String> {
        ClientLayout::new(&h.roots, id).map_err(script_error)?;
        let stack = Stack::load(&h.site_dir, name).map_err(script_error)?;
        let env = map_env(&env);
        let runner = stack_run::runner(&h, &|| s.docker(), id, &env).map_err(script_error)?;
        stack_run::render(&stack, id, &env, runner).map(|(_, text)| text).map_err(script_error)
    });

    let h = host.clone();
    module.set_native_fn("upstream", move |name: &str, id: &str| -> ScriptResult<String> {
        ClientLayout::new(&h.roots, id).map_err(script_error)?;
        Ok(upstream(&Stack::load(&h.site_dir, name).map_err(script_error)?, id))
    });

    let h = host.clone();
    module.set_native_fn("domain_owner", move |id: &str, domain: &str| -> ScriptResult<String> {
        Ok(stack_status::domains(&h.roots)
            .remove(domain)
            .unwrap_or_default()
            .into_iter()
            .find(|o| o != id)
            .unwrap_or_default())
    });

    let (h, s) = (host.clone(), state.clone());
    module.set_native_fn("deploy", move |id: &str| -> ScriptResult<Map> {
        deploy(&h, &s, id, &|| Ok(())).map_err(script_error)
    });

    let (h, s) = (host.clone(), state.clone());
    module.set_native_fn("deploy", move |context: NativeCallContext, id: &str, before: FnPtr| -> ScriptResult<Map> {
        let before_change = || -> Result<()> {
            before.call_within_context::<Dynamic>(&context, (id.to_string(),)).map(drop).map_err(|e| anyhow!("{e}"))
        };
        deploy(&h, &s, id, &before_change).map_err(script_error)
    });

    let (h, s) = (host.clone(), state.clone());
    module.set_native_fn("stop", move |id: &str| -> ScriptResult<String> {
        let docker = s.docker().map_err(script_error)?;
        stack_run::stop(&h, &docker, id).map(|o| o.as_str().into()).map_err(script_error)
    });

    let s = state.clone();
    module.set_native_fn("states", move || -> ScriptResult<Map> { states(&s).map_err(script_error) });

    let h = host.clone();
    module.set_native_fn("ingress_dir", move || -> ScriptResult<String> {
        Ok(crate::tenant::ingress::dynamic_dir(&h.roots).display().to_string())
    });

    let h = host.clone();
    module.set_native_fn("ingress_file", move |id: &str| -> ScriptResult<String> {
        ClientLayout::new(&h.roots, id).map_err(script_error)?;
        Ok(crate::tenant::ingress::dynamic_dir(&h.roots).join(format!("{id}.yml")).display().to_string())
    });

    let (h, s) = (host.clone(), state.clone());
    module.set_native_fn("setup_ingress", move || -> ScriptResult<Map> {
        let docker = s.docker().map_err(script_error)?;
        let (name, outcome, connected) = crate::tenant::ingress::setup(&h, &docker).map_err(script_error)?;
        let connected: Array = connected.into_iter().map(Dynamic::from).collect();
        Ok(Map::from_iter([
            ("container".into(), name.into()),
            ("outcome".into(), outcome.as_str().into()),
            ("connected".into(), connected.into()),
        ]))
    });

    let (h, s) = (host.clone(), state.clone());
    module.set_native_fn("connect_ingress", move |id: &str| -> ScriptResult<String> {
        let docker = s.docker().map_err(script_error)?;
        crate::tenant::ingress::connect(&h, &docker, id).map(|o| o.as_str().into()).map_err(script_error)
    });

    let (h, s) = (host.clone(), state.clone());
    module.set_native_fn("inspect", move || -> ScriptResult<StackInspection> {
        let docker = s.docker().map_err(script_error)?;
        let keycloak_base = super::keycloak::issuer_base(&h).map_err(|e| format!("{e:#}"));
        Inspection::take(&docker, &h.roots, keycloak_base.transpose())
            .map(|i| StackInspection(Rc::new(i)))
            .map_err(script_error)
    });

    let h = host.clone();
    module.set_native_fn("check", move |inspection: StackInspection, id: &str| -> ScriptResult<Dynamic> {
        Ok(check_dynamic(&inspection.0.check(&h.site_dir, id)))
    });

    module
}
