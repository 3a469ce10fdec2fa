//! A client's Docker networks: each gets an explicit subnet from agency's pool, and a race
//! with another runner for the same block moves on to the next one.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Result, bail};

use crate::{
    drivers::docker::{
        self, CreateNetworkError, Docker, LABEL_CLIENT, LABEL_MANAGED, NetworkDetails, NetworkSpec, NetworkSummary,
        network_age_key,
    },
    effects::Outcome,
    tenant::{
        context::Context,
        firewall,
        isolation::{self, Expected, Repair, Snapshot, State},
        layout::ClientLayout,
        subnet::{Allocator, Ipv4Net, Pool},
    },
};

/// Every IPv4 subnet in use by any network of the engine (for the allocator).
pub fn used_subnets(docker: &Docker) -> Result<Vec<Ipv4Net>> {
    Ok(docker.inspect_all_networks()?.into_iter().flat_map(|n| n.subnets).collect())
}

/// Creates a network with the next free block of `allocator` (ignoring `spec.subnet`).
/// When Docker says the block overlaps (another runner took it meanwhile), marks it taken
/// and tries the next; fails when the pool is full. Returns the ID and the subnet.
pub fn create_network_in_pool(
    docker: &Docker,
    spec: &NetworkSpec,
    allocator: &mut Allocator,
) -> std::result::Result<(String, Ipv4Net), CreateNetworkError> {
    loop {
        let subnet = allocator.peek().map_err(CreateNetworkError::Failed)?;
        allocator.mark_taken(subnet);
        let id = match docker.create_with_subnet(spec, Some(subnet)) {
            Ok(id) => id,
            Err(CreateNetworkError::SubnetOverlaps { .. }) => continue,
            Err(other) => return Err(other),
        };
        if spec.driver == "bridge" {
            return Ok((id, subnet));
        }
        // Swarm does not refuse overlapping subnets (nor does it compare overlay and
        // bridge networks), so check afterwards: when an older network claims the block,
        // give it up and take the next one. Both racers apply the same rule, so exactly
        // one keeps the block.
        let networks = docker.inspect_all_networks().map_err(CreateNetworkError::Failed)?;
        let ours = networks.iter().find(|n| n.id == id);
        let loses = |other: &NetworkDetails| match ours {
            Some(ours) => network_age_key(other) < network_age_key(ours),
            None => false,
        };
        let older = networks
            .iter()
            .filter(|n| n.id != id && n.subnets.iter().any(|s| s.overlaps(&subnet)))
            .any(|other| loses(other) || ours.is_none());
        if !older {
            return Ok((id, subnet));
        }
        for network in &networks {
            for other in &network.subnets {
                allocator.mark_taken(*other);
            }
        }
        docker.remove_network(&id).map_err(CreateNetworkError::Failed)?;
    }
}

/// What [`ensure_networks`] made sure of: the driver, and per tier the network's name, subnet
/// and (bridge networks) interface.
pub(crate) struct Provisioned {
    pub driver: String,
    pub networks: BTreeMap<String, String>,
    pub subnets: BTreeMap<String, String>,
    pub bridges: BTreeMap<String, String>,
}

/// What [`repair_networks`] did (or would do): one line per repair, the subnets and bridges
/// as they are now, and whether anything changed.
pub(crate) struct Repaired {
    pub repairs: Vec<String>,
    pub subnets: BTreeMap<String, String>,
    pub bridges: BTreeMap<String, String>,
    pub changed: bool,
}

pub(crate) fn pool(cx: &Context) -> Result<Pool> {
    Pool::from_settings(Some(cx.settings.get("AGENCY_SUBNET_POOL")), Some(cx.settings.get("AGENCY_SUBNET_PREFIX")))
}

/// Creates `expected` with `preferred` if that block is free, else with the next free block
/// of the pool; Docker's overlap answer (another runner was faster) moves on to the next.
fn create_in_pool(
    docker: &Docker,
    expected: &Expected,
    preferred: Option<Ipv4Net>,
    allocator: &mut Allocator,
) -> Result<Ipv4Net> {
    if let Some(subnet) = preferred.filter(|s| allocator.is_free(s)) {
        allocator.mark_taken(subnet);
        match docker.create_network(&expected.spec(Some(subnet))) {
            Ok(_) => return Ok(subnet),
            Err(CreateNetworkError::SubnetOverlaps { .. }) => {}
            Err(other) => return Err(other.into()),
        }
    }
    create_network_in_pool(docker, &expected.spec(None), allocator).map(|(_, subnet)| subnet).map_err(Into::into)
}

/// The block a network to be created would get (for plans), marked taken.
fn planned_subnet(expected: &Expected, allocator: &mut Allocator) -> Result<Ipv4Net> {
    let subnet = match expected.subnet.filter(|s| allocator.is_free(s)) {
        Some(subnet) => subnet,
        None => allocator.peek()?,
    };
    allocator.mark_taken(subnet);
    Ok(subnet)
}

/// The subnet a network got from [`create_effect`], and whether it was only planned.
struct Created {
    subnet: Ipv4Net,
    planned: bool,
}

/// Creates one missing network through the effects layer; returns the subnet it got (the
/// planned one in a dry run, then taken for the networks planned after it).
fn create_effect(cx: &Context, docker: &Docker, expected: &Expected, allocator: &mut Allocator) -> Result<Created> {
    let mut probe_allocator = allocator.clone();
    let planned = planned_subnet(expected, &mut probe_allocator)?;
    let mut detail = expected.describe(Some(planned));
    if let Some(recorded) = expected.subnet.filter(|r| *r != planned) {
        // The recorded block is used by another network now: say so, in the plan too.
        let warning = format!(
            "{}: client.env records subnet {recorded}, which another network now uses; it gets {planned}",
            expected.name
        );
        cx.output.note(&warning);
        detail = format!("{detail} (client.env recorded {recorded}, now used by another network)");
    }
    let created = cx.effects.apply("network", &expected.name, &detail, Outcome::Created, || {
        match create_in_pool(docker, expected, expected.subnet.or(Some(planned)), allocator) {
            Ok(subnet) => Ok(subnet),
            // Another run (another root, or a site without the client lock) made it meanwhile:
            // fine if it is what this run would have made.
            Err(error) if matches!(error.downcast_ref(), Some(CreateNetworkError::NameTaken { .. })) => {
                let found = docker.inspect_networks(&[&expected.name])?;
                match (isolation::assess(expected, found.first()), found.first()) {
                    (State::Ok, Some(network)) => Ok(network.subnets.first().copied().unwrap_or(planned)),
                    _ => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    })?;
    match created.value {
        None => {
            *allocator = probe_allocator;
            Ok(Created { subnet: planned, planned: true })
        }
        Some(actual) => {
            if actual != planned {
                cx.output.note(&format!("{}: subnet {planned} was taken meanwhile; it got {actual}", expected.name));
            }
            Ok(Created { subnet: actual, planned: false })
        }
    }
}

pub(crate) fn ensure_networks(
    cx: &Context,
    connect: &dyn Fn() -> Result<Docker>,
    id: &str,
    recorded: &BTreeMap<String, String>,
) -> Result<Provisioned> {
    ClientLayout::new(&cx.roots, id)?;
    let setting = cx.settings.get("NETWORK_DRIVER");
    let driver = if setting.is_empty() { isolation::client_driver(recorded, "") } else { setting.to_string() };
    isolation::check_driver(&driver)?;
    let docker = connect()?;
    let expected = isolation::expected_networks(id, &driver, recorded);
    let names: Vec<&str> = expected.iter().map(|e| e.name.as_str()).collect();
    // A client that records subnets most likely has its networks: inspect them by name (one
    // call). A new one most likely has none: the engine's list (one call, which allocation
    // needs anyway) says which of its names exist, and only those are inspected.
    let mut listed = None;
    let existing = if expected.iter().any(|e| e.subnet.is_some()) {
        docker.inspect_networks(&names).map_err(|error| twins_error(&docker, id, &names).unwrap_or(error))?
    } else {
        let all = docker.list_networks()?;
        let present: Vec<&str> = names.iter().copied().filter(|name| all.iter().any(|n| n.name == *name)).collect();
        listed = Some(all);
        docker.inspect_networks(&present)?
    };
    let mut allocator: Option<Allocator> = None;
    let mut problems = Vec::new();
    let mut subnets = BTreeMap::new();
    let mut bridges = BTreeMap::new();
    let mut networks = BTreeMap::new();
    for expected in &expected {
        networks.insert(expected.tier.name.into(), expected.name.clone());
        let actual = existing.iter().find(|n| n.name == expected.name);
        let mut bridge = actual.and_then(|n| n.bridge.clone());
        let subnet = match isolation::assess(expected, actual) {
            State::Ok => {
                let network = actual.expect("ok implies a network");
                let subnet = network.subnets.first().copied();
                cx.effects.unchanged("network", &expected.name, &expected.describe(subnet));
                subnet
            }
            State::Foreign => {
                let labels = actual
                    .map(|n| n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
                    .unwrap_or_default();
                problems.push(format!(
                    "a Docker network named {name} already exists and is not {id}'s (labels: {}); if nothing uses \
                     it, remove it (`docker network rm {name}`) and run create-client again; else choose another \
                     CLIENT_ID",
                    if labels.is_empty() { "none".to_string() } else { labels },
                    name = expected.name,
                ));
                None
            }
            State::Drift(drift) => {
                problems.push(format!(
                    "network {} {} (drift); `agency multi-tenancy-status CLIENT_ID={id} FIX=1` recreates it when no \
                     container is attached",
                    expected.name,
                    drift.join(", ")
                ));
                actual.and_then(|n| n.subnets.first().copied())
            }
            State::Missing => {
                if allocator.is_none() {
                    let mut taken = client_used_subnets(cx, &docker, id, &driver, listed.take())?;
                    taken.extend(existing.iter().flat_map(|n| n.subnets.iter().copied()));
                    allocator = Some(Allocator::new(pool(cx)?, taken));
                }
                let allocator = allocator.as_mut().expect("just set");
                let subnet = create_effect(cx, &docker, expected, allocator)?.subnet;
                bridge = (driver == "bridge").then(|| firewall::bridge_name(subnet));
                Some(subnet)
            }
        };
        if let Some(subnet) = subnet {
            subnets.insert(expected.tier.name.into(), subnet.to_string());
        }
        if let Some(bridge) = bridge {
            bridges.insert(expected.tier.name.into(), bridge);
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(Provisioned { driver, networks, subnets, bridges })
}

/// FIX=1 for networks of one name: removes all but the one with the subnet client.env
/// records, by ID, when every one is labelled as the client's and no container (running or
/// stopped) is on a network of that name; else says why not. The message, and whether
/// anything was removed.
fn remove_twins(cx: &Context, docker: &Docker, id: &str, expected: &Expected) -> Result<(String, bool)> {
    let name = &expected.name;
    let ids: Vec<String> = docker.list_networks()?.into_iter().filter(|n| n.name == *name).map(|n| n.id).collect();
    let twins = docker.inspect_networks(&ids.iter().map(String::as_str).collect::<Vec<_>>())?;
    let count = twins.len();
    let refuse = |why: String| Ok((format!("not repaired: {count} networks are named {name}: {why}"), false));
    if twins.iter().any(|n| n.label(LABEL_MANAGED) != Some("true") || n.label(LABEL_CLIENT) != Some(id)) {
        return refuse(format!("not all are labelled as {id}'s; remove the foreign one by id by hand"));
    }
    let Some(recorded) = expected.subnet else {
        return refuse("client.env records no subnet for it, so none can be told to be the one to keep".into());
    };
    let Some(keep) = twins.iter().find(|n| n.subnets.contains(&recorded)) else {
        return refuse(format!(
            "none has the subnet client.env records ({recorded}); remove the wrong ones by id by hand"
        ));
    };
    let attached: Vec<String> = docker.containers_on(name)?.into_iter().map(|c| c.name).collect();
    if !attached.is_empty() {
        return refuse(format!(
            "containers are attached ({}), and Docker does not say to which of them; detach them and run FIX=1 again",
            attached.join(", ")
        ));
    }
    let mut removed = Vec::new();
    for twin in twins.iter().filter(|n| n.id != keep.id) {
        let subnets: Vec<String> = twin.subnets.iter().map(ToString::to_string).collect();
        let detail = format!(
            "the twin {} (subnet {}); {} with the recorded {recorded} stays",
            twin.id,
            subnets.join(" "),
            keep.id
        );
        cx.effects
            .apply("network rm", name, &detail, Outcome::Removed, || docker.remove_network(&twin.id).map(drop))?;
        removed.push(format!("{} ({})", &twin.id[..twin.id.len().min(12)], subnets.join(" ")));
    }
    Ok((
        format!(
            "{} the twin of {name}: {}; keep the one with subnet {recorded}",
            cx.effects.verb("remove"),
            removed.join(", ")
        ),
        true,
    ))
}

/// When a create was interrupted after Docker made the network and a re-run made it again,
/// two networks carry one name (Docker allows it only for racing creates) and inspecting by
/// name fails: the error that says so and what to run, or `None` when no name is shared.
fn twins_error(docker: &Docker, id: &str, names: &[&str]) -> Option<anyhow::Error> {
    let listed = docker.list_networks().ok()?;
    let shared: Vec<String> = names
        .iter()
        .map(|name| (name, listed.iter().filter(|n| n.name == *name).count()))
        .filter(|(_, count)| *count > 1)
        .map(|(name, count)| format!("{count} networks are named {name}"))
        .collect();
    (!shared.is_empty()).then(|| {
        anyhow::anyhow!(
            "{} (an interrupted create); nothing was changed: `agency multi-tenancy-status CLIENT_ID={id} FIX=1` \
             removes the extra ones by id, keeping the one with the subnet client.env records",
            shared.join(", ")
        )
    })
}

pub(crate) fn repair_networks(
    cx: &Context,
    connect: &dyn Fn() -> Result<Docker>,
    snapshot: &Snapshot,
    id: &str,
    recorded: &BTreeMap<String, String>,
    adopt: bool,
) -> Result<Repaired> {
    ClientLayout::new(&cx.roots, id)?;
    let driver = isolation::client_driver(recorded, cx.settings.get("NETWORK_DRIVER"));
    isolation::check_driver(&driver)?;
    let repairs = isolation::plan_repairs(snapshot, id, &driver, recorded, adopt);
    let mut messages = Vec::new();
    let mut subnets = BTreeMap::new();
    // Every bridge as it is known now (the snapshot's, then the repaired ones).
    let mut bridges: BTreeMap<String, String> = isolation::TIERS
        .iter()
        .filter_map(|tier| {
            let network =
                snapshot.network(recorded.get(tier.env_network).map_or(&format!("{id}_{}", tier.name), |n| n))?;
            Some((tier.name.into(), network.bridge.clone()?))
        })
        .collect();
    let mut changed = false;
    if repairs.is_empty() {
        return Ok(Repaired { repairs: Vec::new(), subnets, bridges, changed: false });
    }
    let docker = connect()?;
    let needs_subnets = repairs.iter().any(|r| !matches!(r, Repair::Refuse(_)));
    let taken = if snapshot.detailed || !needs_subnets {
        snapshot.used_subnets()
    } else {
        client_used_subnets(cx, &docker, id, &driver, None)?
    };
    let mut allocator = Allocator::new(pool(cx)?, taken);
    for repair in repairs {
        match repair {
            Repair::Refuse(message) => messages.push(format!("not repaired: {message}")),
            Repair::RemoveTwins(expected) => {
                let (message, removed) = remove_twins(cx, &docker, id, &expected)?;
                messages.push(message);
                changed |= removed;
            }
            Repair::Create(expected) => {
                let Created { subnet, planned } = create_effect(cx, &docker, &expected, &mut allocator)?;
                let would = if planned { "would " } else { "" };
                messages.push(format!("{would}create {} ({})", expected.name, expected.describe(Some(subnet))));
                subnets.insert(expected.tier.name.into(), subnet.to_string());
                if driver == "bridge" {
                    bridges.insert(expected.tier.name.into(), firewall::bridge_name(subnet));
                }
                changed = true;
            }
            Repair::Recreate { expected, id: network_id, subnet } => {
                // Docker removes a network whose containers are all stopped (they then fail to
                // start), so ask again right before touching it: any container, running or not.
                let attached: Vec<String> = docker.containers_on(&expected.name)?.into_iter().map(|c| c.name).collect();
                if !attached.is_empty() {
                    messages.push(format!(
                        "not repaired: {}",
                        docker::NetworkInUse { name: expected.name.clone(), containers: attached }
                    ));
                    continue;
                }
                let old = snapshot.network(&expected.name).cloned();
                let planned = match subnet {
                    Some(subnet) => subnet,
                    None => allocator.peek()?,
                };
                let applied = cx.effects.apply(
                    "network",
                    &expected.name,
                    &format!("remove {network_id}, then create {}", expected.describe(Some(planned))),
                    Outcome::Updated,
                    || {
                        docker.remove_network(&network_id)?;
                        // Its own old subnet is free again.
                        let mut free = Allocator::new(
                            *allocator.pool(),
                            allocator.taken().iter().copied().filter(|t| Some(*t) != subnet),
                        );
                        let created = create_in_pool(&docker, &expected, subnet, &mut free)?;
                        Ok((created, free))
                    },
                );
                let (actual, would) = match applied {
                    Ok(applied) => match applied.value {
                        Some((created, free)) => {
                            allocator = free;
                            (created, "")
                        }
                        None => (planned, "would "),
                    },
                    // A container attached meanwhile: Docker refused, nothing was changed.
                    Err(error) => match error.downcast_ref::<docker::NetworkInUse>() {
                        Some(in_use) => {
                            messages.push(format!("not repaired: {in_use}"));
                            continue;
                        }
                        None => return Err(error),
                    },
                };
                let was = old
                    .map(|n| {
                        let bridge = n.bridge.map(|b| format!(", bridge {b}")).unwrap_or_default();
                        format!("{}, {}{bridge}", n.driver, if n.internal { "internal" } else { "not internal" })
                    })
                    .unwrap_or_default();
                messages.push(format!(
                    "{would}recreate {} as {} (was: {was})",
                    expected.name,
                    expected.describe(Some(actual))
                ));
                subnets.insert(expected.tier.name.into(), actual.to_string());
                if driver == "bridge" {
                    bridges.insert(expected.tier.name.into(), firewall::bridge_name(actual));
                }
                changed = true;
            }
        }
    }
    Ok(Repaired { repairs: messages, subnets, bridges, changed })
}

/// The subnets every client of this root records in its client.env.
pub(crate) fn recorded_subnets(cx: &Context) -> Result<Vec<Ipv4Net>> {
    Ok(recorded_subnets_by_client(cx)?.into_values().flatten().collect())
}

/// Per client of this root (with any), the subnets its client.env records.
pub(crate) fn recorded_subnets_by_client(cx: &Context) -> Result<HashMap<String, Vec<Ipv4Net>>> {
    let mut by_client = HashMap::new();
    for id in cx.roots.client_ids()? {
        let Ok(layout) = ClientLayout::new(&cx.roots, &id) else { continue };
        let Ok(text) = std::fs::read_to_string(&layout.env_file) else { continue };
        let Ok(entries) = crate::format::envfile::parse(&text) else { continue };
        let subnets: Vec<Ipv4Net> = isolation::TIERS
            .iter()
            .filter_map(|tier| entries.get(tier.env_subnet).and_then(|s| s.parse().ok()))
            .collect();
        if !subnets.is_empty() {
            by_client.insert(id, subnets);
        }
    }
    Ok(by_client)
}

/// The subnets a new network of `client` (of `driver`) must avoid, as far as they need asking.
/// A network labelled as another client of this root is represented by that client's
/// client.env record (`client`'s own records are what it may reuse). A bridge subnet that
/// overlaps any other local network is refused by Docker, and the allocator then takes the
/// next block, so for bridge clients only networks of other drivers (overlay, macvlan ...),
/// which Docker does not compare, are inspected; for overlay clients every network not known
/// by a record is (Swarm refuses no overlap). On a usual host that is no inspect at all, where
/// inspecting the networks of a hundred clients takes the engine over a second. `listed` is
/// the engine's network list when the caller has it.
pub(crate) fn client_used_subnets(
    cx: &Context,
    docker: &Docker,
    client: &str,
    driver: &str,
    listed: Option<Vec<NetworkSummary>>,
) -> Result<Vec<Ipv4Net>> {
    let mut recorded = recorded_subnets_by_client(cx)?;
    recorded.remove(client);
    let listed = match listed {
        Some(listed) => listed,
        None => docker.list_networks()?,
    };
    let known = |n: &NetworkSummary| {
        n.label(LABEL_MANAGED) == Some("true") && n.label(LABEL_CLIENT).is_some_and(|c| recorded.contains_key(c))
    };
    let refused_by_docker =
        |n: &NetworkSummary| driver == "bridge" && matches!(n.driver.as_str(), "bridge" | "host" | "null");
    let others: Vec<&str> =
        listed.iter().filter(|n| !known(n) && !refused_by_docker(n)).map(|n| n.id.as_str()).collect();
    let mut taken: Vec<Ipv4Net> = docker.inspect_networks(&others)?.into_iter().flat_map(|n| n.subnets).collect();
    taken.extend(recorded.into_values().flatten());
    Ok(taken)
}
