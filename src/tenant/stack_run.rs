//! Deploying and stopping a client's stack (SPEC §10). deploy-client writes the client's copy
//! of the stack and its rendered override, then runs them as project `<id>`: with Compose, or
//! with `docker stack deploy` for a client on overlay networks when the engine is a Swarm
//! manager ([`Runner::choose`]). Either way an up-to-date stack is recognised from the
//! fingerprints its containers or services carry, without starting Compose or touching Swarm.

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{
    drivers::{
        compose::{self, Compose, Project},
        swarm,
    },
    effects::Outcome,
    tenant::{
        context::Context,
        deploy::{self, Limits, Needed},
        isolation,
        layout::ClientLayout,
        stack::{ClientSpec, DEFAULT_STACK, Stack},
        swarm::{Runner, swarm_override},
    },
};

/// How long stop-client waits for a Swarm stack's containers to go (Docker's stop grace
/// period is 10 s).
const SWARM_STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// What [`deploy`] did.
pub struct Deployed {
    pub stack: String,
    pub outcome: Outcome,
    pub services: Vec<String>,
    /// The command line run (or, in a dry run, that would run); `""` when nothing ran.
    pub command: String,
    pub runner: Runner,
}

pub fn read_env(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))?;
    Ok(crate::format::envfile::parse(&text)?.into_iter().collect())
}

/// The stack named in client.env (`STACK`), the built-in default for clients without one.
pub fn stack_of(site_dir: &Path, env: &BTreeMap<String, String>) -> Result<Stack> {
    Stack::load(site_dir, env.get("STACK").map_or(DEFAULT_STACK, String::as_str))
}

/// The client's override for `runner`, as data and as the file's text.
pub fn render(stack: &Stack, id: &str, env: &BTreeMap<String, String>, runner: Runner) -> Result<(Value, String)> {
    let limits = Limits::from_env(env)?;
    let spec = ClientSpec { id, cpus: limits.cpus, memory: &limits.memory, pids: limits.pids };
    let rendered = match runner {
        Runner::Compose => stack.render_override(&spec),
        Runner::Swarm => swarm_override(&stack.render_override(&spec)),
    };
    let text = format!(
        "# Rendered by agency from stack {} ({}) for client {id}; re-rendered on every deploy.\n{}",
        stack.name,
        stack.origin,
        crate::format::yaml::render(&rendered)
    );
    Ok((rendered, text))
}

/// Writes `text` through the effects layer; in a dry run a changed file's diff is printed.
fn write_shown(cx: &Context, path: &Path, text: &str) -> Result<Outcome> {
    let current = std::fs::read_to_string(path).unwrap_or_default();
    if current != text {
        cx.effects.plan_note(|| format!("--- {}\n{}", path.display(), deploy::diff(&current, text)));
    }
    cx.write_file(&path.display().to_string(), text.as_bytes(), 0o640, "")
}

/// The client's Swarm services when it runs on one (overlay networks, a manager engine; one
/// `docker service ls` and at most one `docker service inspect`), else `None`.
fn swarm_services(
    cx: &Context,
    docker: &Path,
    id: &str,
    client: &BTreeMap<String, String>,
) -> Result<Option<Vec<swarm::Service>>> {
    if isolation::client_driver(client, cx.settings.get(isolation::ENV_DRIVER)) != "overlay" {
        return Ok(None);
    }
    swarm::services(docker, id)
}

/// The runner of a client with client.env `client`; the engine (`docker`) is asked only for a
/// client on overlay networks.
pub fn runner(
    cx: &Context,
    docker: &dyn Fn() -> Result<std::path::PathBuf>,
    id: &str,
    client: &BTreeMap<String, String>,
) -> Result<Runner> {
    let driver = isolation::client_driver(client, cx.settings.get(isolation::ENV_DRIVER));
    if driver != "overlay" {
        return Ok(Runner::Compose);
    }
    Ok(Runner::choose(&driver, swarm_services(cx, &docker()?, id, client)?.is_some()))
}

fn join<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
    items.into_iter().map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// deploy-client's work: the files, then Compose or Swarm unless every service already runs
/// as deployed. `compose` locates Compose, looked for only when something is to be done;
/// `before_change` runs just before containers change (log collection), never on a no-op.
/// `keycloak_base` gives where the realms' issuers start (KEYCLOAK_URL with its path
/// prefix), `None` without Keycloak.
pub fn deploy(
    cx: &Context,
    docker: &Path,
    compose: &dyn Fn() -> Result<Compose>,
    keycloak_base: &dyn Fn() -> Result<Option<String>>,
    before_change: &dyn Fn() -> Result<()>,
    id: &str,
) -> Result<Deployed> {
    let layout = ClientLayout::new(&cx.roots, id)?;
    if !layout.env_file.exists() {
        bail!("client {id} does not exist: {} is missing (run create-client)", layout.env_file.display());
    }
    let client = read_env(&layout.env_file)?;
    let secrets = read_env(&layout.secrets_file)?;
    let stack = stack_of(&cx.site_dir, &client)?;
    let services = swarm_services(cx, docker, id, &client)?;
    let runner =
        Runner::choose(&isolation::client_driver(&client, cx.settings.get(isolation::ENV_DRIVER)), services.is_some());
    let (rendered, override_text) = render(&stack, id, &client, runner)?;
    let base = layout.config_dir.join("compose.yml");
    write_shown(cx, &base, &stack.text)?;
    write_shown(cx, &layout.compose_override, &override_text)?;

    let keycloak_base = keycloak_base()?;
    let mut env =
        deploy::compose_env(&stack, &client, &secrets, keycloak_base.as_deref(), &|name| std::env::var(name).ok())?;
    let images = deploy::images(&stack, &env);
    let mut names: Vec<&str> = images.values().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let image_ids = compose::image_ids(docker, &names)?;
    let fingerprints = deploy::fingerprints(&stack, &rendered, &env, &image_ids);
    for service in &stack.services {
        env.insert(service.deploy_variable(), fingerprints[&service.name].clone());
    }
    let containers;
    let instances = match &services {
        Some(services) => deploy::service_instances(id, services),
        None => {
            containers = compose::project_containers(docker, id)?;
            deploy::container_instances(&containers)
        }
    };
    let (needed, detail) = match deploy::needed(&fingerprints, &instances) {
        Needed::UpToDate => {
            (Outcome::Unchanged, format!("{}: {} service(s) up to date", stack.name, fingerprints.len()))
        }
        Needed::Create => (Outcome::Created, format!("{}: services {}", stack.name, join(fingerprints.keys()))),
        Needed::Update(changed) => (Outcome::Updated, format!("{}: {} changed", stack.name, changed.join(", "))),
    };
    let env: Vec<(String, String)> = env.into_iter().collect();
    let project =
        Project { name: id, directory: &layout.config_dir, files: [&base, &layout.compose_override], env: &env };
    let up = ["up", "-d", "--remove-orphans"];
    let mut command = String::new();
    if needed != Outcome::Unchanged {
        command = match runner {
            Runner::Compose => compose()?.describe(&project, &up),
            Runner::Swarm => swarm::describe_deploy(&project),
        };
        cx.effects.plan_note(|| format!("would run: {command}"));
        before_change()?;
    }
    let (action, subject) = match runner {
        Runner::Compose => ("compose up", format!("stack {id}")),
        Runner::Swarm => ("stack deploy", format!("swarm stack {id}")),
    };
    cx.effects.apply(action, &subject, &detail, needed, || match runner {
        Runner::Compose => compose()?.run(&project, &up),
        Runner::Swarm => swarm::deploy(docker, &project),
    })?;
    Ok(Deployed {
        stack: stack.name.clone(),
        outcome: needed,
        services: stack.services.iter().map(|s| s.name.clone()).collect(),
        command,
        runner,
    })
}

/// stop-client's work: the client's Swarm stack removed (when it has one) and its Compose
/// containers stopped and removed; volumes, networks and files stay.
pub fn stop(cx: &Context, docker: &Path, id: &str) -> Result<Outcome> {
    let layout = ClientLayout::new(&cx.roots, id)?;
    // A client deleted half-way has no client.env: only its Compose containers are looked for.
    let client = read_env(&layout.env_file).unwrap_or_default();
    let mut outcome = Outcome::Unchanged;
    if let Some(services) = swarm_services(cx, docker, id, &client)?
        && !services.is_empty()
    {
        let names: Vec<&String> = services.iter().map(|s| &s.name).collect();
        let detail = format!("services {}; volumes kept", join(names));
        cx.effects.apply("stack rm", &format!("swarm stack {id}"), &detail, Outcome::Removed, || {
            swarm::remove(docker, id, SWARM_STOP_TIMEOUT)
        })?;
        outcome = Outcome::Removed;
    }
    let containers = compose::project_containers(docker, id)?;
    if !containers.is_empty() {
        let ids: Vec<&str> = containers.iter().map(|c| c.id.as_str()).collect();
        let detail = format!("containers {}; volumes kept", join(containers.iter().map(|c| &c.name)));
        cx.effects.apply("stack stop", &format!("stack {id}"), &detail, Outcome::Removed, || {
            compose::stop_and_remove(docker, &ids, 10)
        })?;
        outcome = Outcome::Removed;
    }
    if outcome == Outcome::Unchanged {
        cx.effects.unchanged("stack stop", &format!("stack {id}"), "no containers");
    }
    Ok(outcome)
}
