//! `docker::` — the Docker engine through the `docker` CLI. Reads run in dry runs too (so a
//! plan is exact); every change goes through the effects layer. `DOCKER_HOST` and
//! `DOCKER_CONTEXT` pass through, so one runner can drive a remote engine.
//!
//! | function | mutates | returns |
//! |---|---|---|
//! | `docker::available()` | no | whether a `docker` program is on PATH (the engine may still be down) |
//! | `docker::version()` | no | the engine's version; fails with what to install or start |
//! | `docker::networks()` | no | every network: maps of `id name driver scope internal labels` (one `network ls`) |
//! | `docker::network(name)` | no | `name id driver internal attachable subnets gateways labels containers`, or `()` |
//! | `docker::list_containers(labels)` | no | containers, running or not, carrying every `label: value` of the map (`""` matches any value; `#{}` for all): `#{ id, name, image, state, labels, networks }` (one `ps -a`) |
//! | `docker::attached(network)` | no | names of the containers (running or not) attached to it |
//! | `docker::volumes(label)` | no | volumes with that label (`key` or `key=value`; `""` for all): `name driver labels mountpoint` |
//! | `docker::snapshot()` | no | a light `DockerSnapshot` of all networks and containers: `network ls` + `ps -a`, two docker calls for any number of clients (no subnets) |
//! | `docker::snapshot(true)` | no | a detailed one: every network inspected too (subnets, gateways, endpoints; ≈2.5 ms per network on the engine) |
//! | `docker::network_check(snap, id, env)` | no | the `networks` check of a client (`env`: its client.env map) |
//! | `docker::cross_tenant_check(snap, id)` | no | the `cross_tenant` check of a client |
//! | `docker::pool_usage(snap)` | no | `#{ pool, prefix, used, total, source }` of `AGENCY_SUBNET_POOL`: the subnets the clients' client.env files record, plus every network's when `snap` is detailed |
//! | `docker::probe(snap, [ids], options)` | no¹ | map id → `probe` check; options `image ports beyond timeout` |
//! | `docker::net_raw(snap, [ids])` | no | map id → names of the client's containers (labelled for it or on its networks) that have NET_RAW (one `docker inspect` of them all) |
//! | `docker::calls()` | no | docker processes started so far in this run |
//! | `docker::ensure_networks(id, env)` | yes | creates the client's four networks; `#{ driver, networks, subnets, bridges }` (`bridges`: each bridge network's interface); fails on a foreign or drifted network |
//! | `docker::repair_networks(snap, id, env)` | yes | `FIX=1` for networks (also names a bridge Docker named `br-<id>`, when nothing is attached): `#{ repairs, subnets, bridges, changed }` |
//! | `docker::repair_networks(snap, id, env, adopt)` | yes | the same; `adopt` (`ADOPT=1`) also replaces an empty network of a client network's exact name that is labelled for no other client |
//! | `docker::network_create(spec)` | yes | spec `#{ name, driver, internal, attachable, labels, subnet, name_bridge }` (`name_bridge`: the interface is named after the subnet) |
//! | `docker::network_remove(name)` | yes | "removed" / "unchanged" (absent) |
//! | `docker::network_disconnect(network, container)` | yes | disconnects a container (running or not) from a network: "removed" / "unchanged" (not attached, or either absent) |
//! | `docker::exec_with_stdin(container, argv, stdin)` | yes | runs `argv` in a running container with `stdin` fed to it (`docker exec -i`); its stdout (`""` in a dry run). Errors mask every word of `stdin` |
//! | `docker::exec_with_stdin(container, argv, stdin, secrets)` | yes | the same; errors mask exactly the values of the array `secrets` (so the tool's message stays readable) |
//!
//! ¹ a probe starts and removes throwaway containers; dry runs skip it.

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashSet},
    rc::Rc,
};

use anyhow::{Context, Result, anyhow, bail};
use rhai::{Array, Dynamic, INT, Map, Module, NativeCallContext};

use super::{Host, ScriptResult, checks::check_dynamic, located_error, script_error};
use crate::{
    drivers::docker::{
        self, ContainerSummary, Docker, HostNetInfo, LABEL_CLIENT, NetworkDetails, NetworkSpec, NetworkSummary,
    },
    effects::Outcome,
    tenant::check::{Check, Status},
    tenant::firewall,
    tenant::isolation::{self, ProbeSettings, Snapshot},
    tenant::networks,
    tenant::subnet::Ipv4Net,
};

/// The image `PROBE=1` uses unless `PROBE_IMAGE` names another; built on first use from the
/// host's static busybox (`apt-get install busybox-static`).
pub const DEFAULT_PROBE_IMAGE: &str = "agency-probe-busybox:latest";

/// A snapshot handed to scripts (cheap to copy).
#[derive(Clone)]
pub struct DockerSnapshot(pub Rc<Snapshot>);

/// The engine client, found on first use, and what this run learned that never changes.
#[derive(Default)]
struct DockerState {
    docker: RefCell<Option<Docker>>,
    host_info: RefCell<Option<HostNetInfo>>,
    images_ready: RefCell<Vec<String>>,
}

impl DockerState {
    fn docker(&self) -> Result<Docker> {
        let mut slot = self.docker.borrow_mut();
        if let Some(docker) = slot.as_ref() {
            return Ok(docker.clone());
        }
        let docker = Docker::locate()?;
        *slot = Some(docker.clone());
        Ok(docker)
    }
}

fn map_of(entries: &BTreeMap<String, String>) -> Map {
    entries.iter().map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone()))).collect()
}

fn strings(items: impl IntoIterator<Item = String>) -> Array {
    items.into_iter().map(Dynamic::from).collect()
}

fn summary_map(network: &NetworkSummary) -> Map {
    let NetworkSummary { id, name, driver, scope, internal, labels } = network;
    network_map(id, name, driver, scope, *internal, labels)
}

fn details_map(network: &NetworkDetails) -> Map {
    let NetworkDetails { id, name, driver, scope, internal, labels, .. } = network;
    let mut map = network_map(id, name, driver, scope, *internal, labels);
    map.insert("attachable".into(), network.attachable.into());
    map.insert("subnets".into(), strings(network.subnets.iter().map(ToString::to_string)).into());
    map.insert("gateways".into(), strings(network.gateways.iter().map(ToString::to_string)).into());
    map.insert("containers".into(), strings(network.containers.iter().map(|c| c.name.clone())).into());
    map
}

/// What a network's summary and its details both tell scripts.
fn network_map(
    id: &str,
    name: &str,
    driver: &str,
    scope: &str,
    internal: bool,
    labels: &BTreeMap<String, String>,
) -> Map {
    let mut map = Map::new();
    map.insert("id".into(), id.into());
    map.insert("name".into(), name.into());
    map.insert("driver".into(), driver.into());
    map.insert("scope".into(), scope.into());
    map.insert("internal".into(), internal.into());
    map.insert("labels".into(), map_of(labels).into());
    map
}

fn container_map(container: &ContainerSummary) -> Map {
    let mut map = Map::new();
    map.insert("id".into(), container.id.clone().into());
    map.insert("name".into(), container.name.clone().into());
    map.insert("image".into(), container.image.clone().into());
    map.insert("state".into(), container.state.clone().into());
    map.insert("labels".into(), map_of(&container.labels).into());
    map.insert("networks".into(), strings(container.networks.clone()).into());
    map
}

/// A script's client.env map as strings.
fn env_of(env: &Map) -> BTreeMap<String, String> {
    env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn probe_settings(options: &Map) -> Result<ProbeSettings> {
    let get = |key: &str| options.get(key).map(|v| v.to_string()).filter(|v| !v.is_empty());
    let image = get("image").unwrap_or_else(|| DEFAULT_PROBE_IMAGE.to_string());
    let ports = isolation::parse_ports(&get("ports").unwrap_or_else(|| "22,53,80,443".to_string()))?;
    // Nothing is sent beyond the host unless the operator names a target.
    let beyond = crate::format::validate::probe_targets(&get("beyond").unwrap_or_default())
        .map_err(|e| anyhow!("PROBE_BEYOND: {e}"))?;
    let timeout = match get("timeout") {
        Some(t) => t.parse::<u32>().map_err(|_| anyhow!("probe timeout {t:?} is not a number of seconds"))?,
        None => 2,
    };
    Ok(ProbeSettings { image, ports, beyond, timeout_secs: timeout.clamp(1, 30), max_tenant_targets: 32 })
}

fn ensure_probe_image(host: &Host, state: &DockerState, docker: &Docker, image: &str) -> Result<()> {
    if state.images_ready.borrow().iter().any(|i| i == image) {
        return Ok(());
    }
    if !docker.image_exists(image)? {
        if image != DEFAULT_PROBE_IMAGE {
            bail!(
                "the probe image {image} is not on the engine; pull or build it (it needs busybox's sh, ping, nc, \
                 timeout and ip), or leave PROBE_IMAGE unset to have {DEFAULT_PROBE_IMAGE} built from busybox-static"
            );
        }
        let busybox = docker::find_static_busybox().context("PROBE=1 builds its probe image from a static busybox")?;
        host.effects.apply(
            "image build",
            image,
            &format!("FROM scratch + {}", busybox.display()),
            Outcome::Created,
            || docker.build_busybox_image(image, &busybox),
        )?;
    }
    state.images_ready.borrow_mut().push(image.to_string());
    Ok(())
}

/// `docker::probe`; a dry run starts no probe (a probe starts containers): each client's check
/// is a skip.
fn probe(host: &Host, state: &DockerState, snapshot: &Snapshot, ids: &[String], options: &Map) -> Result<Map> {
    if let Some(result) = host.effects.side_effect(|| probe_now(host, state, snapshot, ids, options))? {
        return Ok(result);
    }
    let check = Check::new("probe", Status::Skip, "not probed in a dry run (a probe starts containers)");
    Ok(ids.iter().map(|id| (id.as_str().into(), check_dynamic(&check))).collect())
}

fn probe_now(host: &Host, state: &DockerState, snapshot: &Snapshot, ids: &[String], options: &Map) -> Result<Map> {
    let mut result = Map::new();
    let settings = probe_settings(options)?;
    let docker = state.docker()?;
    ensure_probe_image(host, state, &docker, &settings.image)?;
    if state.host_info.borrow().is_none() {
        let info = docker.host_net_info(&settings.image)?;
        *state.host_info.borrow_mut() = Some(info);
    }
    let host_info = state.host_info.borrow().clone().unwrap_or_default();
    // With a remote engine its host's addresses are known only now.
    if let Some(own) = settings.beyond.addresses.iter().find(|a| host_info.addresses.iter().any(|h| h.address == **a)) {
        bail!("PROBE_BEYOND: {own} is an address of the engine's host, not beyond it");
    }
    let allowed = firewall::FirewallSettings::parse(
        host.settings.get("AGENCY_FIREWALL_TABLE"),
        host.settings.get("FIREWALL"),
        host.settings.get("FIREWALL_HOST_ALLOW"),
    )?
    .host_tcp;
    let known = host.roots.client_ids()?;
    let networks: usize = ids.iter().map(|id| snapshot.client_networks(id).len()).sum();
    host.output.begin("probe", &format!("{networks} network(s)"));
    for (id, check) in
        crate::tenant::probe::run::probe_clients(&docker, snapshot, ids, &host_info, &settings, &allowed, &known)?
    {
        result.insert(id.as_str().into(), check_dynamic(&check));
    }
    Ok(result)
}

/// Per client of `ids`, the names of its containers (labelled for it or on its networks,
/// running or not) that have NET_RAW: one `docker inspect` of them all.
fn net_raw(state: &DockerState, snapshot: &Snapshot, ids: &[String]) -> Result<Map> {
    // Sets: thousands of clients each with containers made the lookups below quadratic.
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut owned: Vec<(&ContainerSummary, Vec<&str>)> = Vec::new();
    for container in &snapshot.containers {
        let mut owners: Vec<&str> =
            container.networks.iter().filter_map(|n| snapshot.owner(n).map(|(c, _)| c)).collect();
        owners.extend(container.label(LABEL_CLIENT));
        owners.retain(|o| wanted.contains(o));
        owners.dedup();
        if !owners.is_empty() {
            owned.push((container, owners));
        }
    }
    let all: Vec<&str> = owned.iter().map(|(c, _)| c.id.as_str()).collect();
    let raw: HashSet<String> =
        if all.is_empty() { HashSet::new() } else { state.docker()?.with_net_raw(&all)?.into_iter().collect() };
    let mut result: Map = ids.iter().map(|id| (id.as_str().into(), Array::new().into())).collect();
    for (container, owners) in owned.iter().filter(|(c, _)| raw.contains(&c.id)) {
        for owner in owners {
            if let Some(list) = result.get_mut(*owner).and_then(|v| v.write_lock::<Array>()).as_mut() {
                list.push(container.name.clone().into());
            }
        }
    }
    Ok(result)
}

/// `docker exec -i` through the effects layer: recorded in a dry run (returning `""`), done
/// otherwise. The step names the program and the size of its input, never the input.
fn exec_effect(
    context: &NativeCallContext,
    host: &Host,
    state: &DockerState,
    container: &str,
    argv: Array,
    stdin: &str,
    secrets: &[&str],
) -> ScriptResult<String> {
    let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    let program = argv.first().cloned().unwrap_or_default();
    let detail = format!("{program}; {} bytes on stdin", stdin.len());
    let docker = state.docker().map_err(|e| located_error(context, e))?;
    let mut stdout = String::new();
    host.effects
        .apply("docker exec", container, &detail, Outcome::Updated, || {
            stdout = docker.exec_with_stdin(container, &args, stdin.as_bytes(), secrets)?;
            Ok(())
        })
        .map_err(|e| located_error(context, e))?;
    Ok(stdout)
}

/// A light snapshot (`network ls` + `ps -a`, plus one inspect of client overlay networks if
/// there are any), or a detailed one (`network ls -q` + `network inspect` of all + `ps -a`).
fn take_snapshot(host: &Host, state: &DockerState, detailed: bool) -> Result<DockerSnapshot> {
    let docker = state.docker()?;
    let known = host.roots.client_ids()?;
    let snapshot = if detailed {
        let networks = docker.inspect_all_networks()?;
        Snapshot::new(networks, docker.list_containers()?, &known)
    } else {
        let listed = docker.list_networks()?;
        let overlays = Snapshot::client_overlays(&listed, &known);
        let names: Vec<&str> = overlays.iter().map(String::as_str).collect();
        let inspected = docker.inspect_networks(&names)?;
        let mut snapshot = Snapshot::from_list(listed, inspected, docker.list_containers()?, &known);
        // `network ls` does not show a bridge's interface; a bridge Docker named itself is
        // seen on this host (a remote engine's are not, and stay unknown).
        for network in snapshot.networks.iter_mut().filter(|n| n.driver == "bridge" && n.bridge.is_none()) {
            let docker_name = firewall::docker_bridge_name(&network.id);
            if std::path::Path::new("/sys/class/net").join(&docker_name).exists() {
                network.bridge = Some(docker_name);
            }
        }
        snapshot
    };
    Ok(DockerSnapshot(Rc::new(snapshot)))
}

fn network_spec(spec: &Map) -> Result<NetworkSpec> {
    let get = |key: &str| spec.get(key).map(|v| v.to_string());
    let flag = |key: &str| spec.get(key).and_then(|v| v.as_bool().ok()).unwrap_or(false);
    let name = get("name").filter(|n| !n.is_empty()).ok_or_else(|| anyhow!("network_create needs a name"))?;
    let labels = match spec.get("labels") {
        Some(value) => value
            .read_lock::<Map>()
            .ok_or_else(|| anyhow!("labels of {name} must be a map"))?
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        None => BTreeMap::new(),
    };
    let subnet = match get("subnet").filter(|s| !s.is_empty()) {
        Some(text) => Some(text.parse::<Ipv4Net>()?),
        None => None,
    };
    Ok(NetworkSpec {
        name,
        driver: get("driver").filter(|d| !d.is_empty()).unwrap_or_else(|| "bridge".into()),
        internal: flag("internal"),
        attachable: flag("attachable"),
        labels,
        subnet,
        name_bridge: flag("name_bridge"),
    })
}

fn string_map(entries: BTreeMap<String, String>) -> Map {
    entries.into_iter().map(|(k, v)| (k.into(), v.into())).collect()
}

fn provisioned_map(done: networks::Provisioned) -> Map {
    Map::from_iter([
        ("driver".into(), done.driver.into()),
        ("networks".into(), string_map(done.networks).into()),
        ("subnets".into(), string_map(done.subnets).into()),
        ("bridges".into(), string_map(done.bridges).into()),
    ])
}

fn repaired(
    host: &Host,
    state: &DockerState,
    snapshot: &Snapshot,
    id: &str,
    env: &Map,
    adopt: bool,
) -> ScriptResult<Map> {
    let done =
        networks::repair_networks(host, &|| state.docker(), snapshot, id, &env_of(env), adopt).map_err(script_error)?;
    Ok(Map::from_iter([
        ("repairs".into(), strings(done.repairs).into()),
        ("subnets".into(), string_map(done.subnets).into()),
        ("bridges".into(), string_map(done.bridges).into()),
        ("changed".into(), done.changed.into()),
    ]))
}

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();
    let state = Rc::new(DockerState::default());

    let s = state.clone();
    module.set_native_fn("version", move || -> ScriptResult<String> {
        s.docker().and_then(|d| d.server_version()).map_err(script_error)
    });

    let s = state.clone();
    module.set_native_fn("networks", move || -> ScriptResult<Array> {
        let networks = s.docker().and_then(|d| d.list_networks()).map_err(script_error)?;
        Ok(networks.iter().map(|n| summary_map(n).into()).collect())
    });

    let s = state.clone();
    module.set_native_fn("network", move |name: &str| -> ScriptResult<Dynamic> {
        let found = s.docker().and_then(|d| d.inspect_networks(&[name])).map_err(script_error)?;
        Ok(found.first().map_or(Dynamic::UNIT, |n| details_map(n).into()))
    });

    module.set_native_fn("available", || -> ScriptResult<bool> { Ok(Docker::locate().is_ok()) });

    let s = state.clone();
    module.set_native_fn("list_containers", move |context: NativeCallContext, labels: Map| -> ScriptResult<Array> {
        let labels: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let containers =
            s.docker().and_then(|d| d.list_containers_with_labels(&labels)).map_err(|e| located_error(&context, e))?;
        Ok(containers.iter().map(|c| container_map(c).into()).collect())
    });

    let s = state.clone();
    module.set_native_fn("attached", move |network: &str| -> ScriptResult<Array> {
        let containers = s.docker().and_then(|d| d.list_containers()).map_err(script_error)?;
        Ok(strings(containers.into_iter().filter(|c| c.networks.iter().any(|n| n == network)).map(|c| c.name)))
    });

    let s = state.clone();
    module.set_native_fn("volumes", move |label: &str| -> ScriptResult<Array> {
        let filter = (!label.is_empty()).then_some(label);
        let volumes = s.docker().and_then(|d| d.list_volumes(filter)).map_err(script_error)?;
        Ok(volumes
            .iter()
            .map(|v| {
                let mut map = Map::new();
                map.insert("name".into(), v.name.clone().into());
                map.insert("driver".into(), v.driver.clone().into());
                map.insert("labels".into(), map_of(&v.labels).into());
                map.insert("mountpoint".into(), v.mountpoint.clone().into());
                map.into()
            })
            .collect())
    });

    let (h, s) = (host.clone(), state.clone());
    module.set_native_fn("snapshot", move || -> ScriptResult<DockerSnapshot> {
        take_snapshot(&h, &s, false).map_err(script_error)
    });

    let (h, s) = (host.clone(), state.clone());
    module.set_native_fn("snapshot", move |detailed: bool| -> ScriptResult<DockerSnapshot> {
        take_snapshot(&h, &s, detailed).map_err(script_error)
    });

    let h = host.clone();
    module.set_native_fn("network_check", move |snap: DockerSnapshot, id: &str, env: Map| -> ScriptResult<Dynamic> {
        let recorded = env_of(&env);
        let driver = isolation::client_driver(&recorded, h.settings.get("NETWORK_DRIVER"));
        Ok(check_dynamic(&snap.0.network_check(id, &driver, &recorded)))
    });

    module.set_native_fn("cross_tenant_check", move |snap: DockerSnapshot, id: &str| -> ScriptResult<Dynamic> {
        Ok(check_dynamic(&snap.0.cross_tenant_check(id)))
    });

    let h = host.clone();
    module.set_native_fn("pool_usage", move |snap: DockerSnapshot| -> ScriptResult<Map> {
        let pool = networks::pool(&h).map_err(script_error)?;
        // A detailed snapshot knows every network on the engine; a light one only what the
        // clients' client.env files record.
        let mut taken = networks::recorded_subnets(&h).map_err(script_error)?;
        if snap.0.detailed {
            taken.extend(snap.0.used_subnets());
        }
        let usage = pool.usage(&taken);
        Ok(Map::from_iter([
            ("pool".into(), pool.net().to_string().into()),
            ("prefix".into(), (pool.block_prefix() as INT).into()),
            ("used".into(), (usage.used as INT).into()),
            ("total".into(), (usage.total as INT).into()),
            ("source".into(), (if snap.0.detailed { "engine" } else { "client.env" }).into()),
        ]))
    });

    let (h, s) = (host.clone(), state.clone());
    module.set_native_fn("probe", move |snap: DockerSnapshot, ids: Array, options: Map| -> ScriptResult<Map> {
        let ids: Vec<String> = ids.iter().map(|v| v.to_string()).collect();
        probe(&h, &s, &snap.0, &ids, &options).map_err(script_error)
    });

    let s = state.clone();
    module.set_native_fn("net_raw", move |snap: DockerSnapshot, ids: Array| -> ScriptResult<Map> {
        let ids: Vec<String> = ids.iter().map(|v| v.to_string()).collect();
        net_raw(&s, &snap.0, &ids).map_err(script_error)
    });

    let s = state.clone();
    module.set_native_fn("calls", move || -> ScriptResult<INT> {
        Ok(s.docker.borrow().as_ref().map_or(0, |d| d.calls() as INT))
    });

    let (h, s) = (host.clone(), state.clone());
    module.set_native_fn("ensure_networks", move |id: &str, env: Map| -> ScriptResult<Map> {
        let done = networks::ensure_networks(&h, &|| s.docker(), id, &env_of(&env)).map_err(script_error)?;
        Ok(provisioned_map(done))
    });

    let (h, s) = (host.clone(), state.clone());
    module.set_native_fn("repair_networks", move |snap: DockerSnapshot, id: &str, env: Map| -> ScriptResult<Map> {
        repaired(&h, &s, &snap.0, id, &env, false)
    });
    let (h, s) = (host.clone(), state.clone());
    module.set_native_fn(
        "repair_networks",
        move |snap: DockerSnapshot, id: &str, env: Map, adopt: bool| -> ScriptResult<Map> {
            repaired(&h, &s, &snap.0, id, &env, adopt)
        },
    );

    let (h, s) = (host.clone(), state.clone());
    module.set_native_fn("network_create", move |spec: Map| -> ScriptResult<String> {
        let spec = network_spec(&spec).map_err(script_error)?;
        let docker = s.docker().map_err(script_error)?;
        let exists = !docker.inspect_networks(&[&spec.name]).map_err(script_error)?.is_empty();
        let needed = if exists { Outcome::Unchanged } else { Outcome::Created };
        let detail = format!(
            "{}{}{}{}",
            spec.driver,
            if spec.internal { ", internal" } else { "" },
            if spec.attachable { ", attachable" } else { "" },
            spec.subnet.map(|s| format!(", subnet {s}")).unwrap_or_default()
        );
        h.effects
            .apply("network", &spec.name, &detail, needed, || docker.create_network(&spec).map_err(Into::into))
            .map(|applied| applied.outcome.as_str().into())
            .map_err(script_error)
    });

    let (h, s) = (host.clone(), state.clone());
    module.set_native_fn("network_remove", move |name: &str| -> ScriptResult<String> {
        let docker = s.docker().map_err(script_error)?;
        let found = docker.inspect_networks(&[name]).map_err(script_error)?;
        let Some(network) = found.first() else {
            h.effects.unchanged("network", name, "absent");
            return Ok(Outcome::Unchanged.as_str().into());
        };
        let id = network.id.clone();
        h.effects
            .apply("network", name, &format!("id {id}"), Outcome::Removed, || {
                docker.remove_network(&id)?;
                Ok(())
            })
            .map(|applied| applied.outcome.as_str().into())
            .map_err(script_error)
    });

    let (h, s) = (host.clone(), state.clone());
    module.set_native_fn("network_disconnect", move |network: &str, container: &str| -> ScriptResult<String> {
        let docker = s.docker().map_err(script_error)?;
        let attached = docker.is_attached(network, container).map_err(script_error)?;
        let needed = if attached { Outcome::Removed } else { Outcome::Unchanged };
        h.effects
            .apply("network disconnect", network, &format!("container {container}"), needed, || {
                docker.disconnect_network(network, container)?;
                Ok(())
            })
            .map(|applied| applied.outcome.as_str().into())
            .map_err(script_error)
    });

    let (h, s) = (host.clone(), state.clone());
    module.set_native_fn(
        "exec_with_stdin",
        move |context: NativeCallContext, container: &str, argv: Array, stdin: &str| -> ScriptResult<String> {
            exec_effect(&context, &h, &s, container, argv, stdin, &[stdin])
        },
    );

    let (h, s) = (host.clone(), state.clone());
    module.set_native_fn(
        "exec_with_stdin",
        move |context: NativeCallContext,
              container: &str,
              argv: Array,
              stdin: &str,
              secrets: Array|
              -> ScriptResult<String> {
            let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
            let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
            exec_effect(&context, &h, &s, container, argv, stdin, &secrets)
        },
    );

    module
}
