//! Network isolation of clients, judged from one look at the engine: a [`Snapshot`] holds
//! every network (with subnets and attached containers) and every container (with its
//! networks), taken in three `docker` calls whatever the number of clients. Everything here
//! is pure: the checks of `multi-tenancy-status`, what `FIX=1` would repair, and what a
//! `PROBE=1` probe should try and what its answers mean.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::Ipv4Addr,
};

use serde_json::json;

use crate::{
    check::{Check, Status},
    drivers::docker::{
        ContainerSummary, HostNetInfo, LABEL_CLIENT, LABEL_MANAGED, LABEL_TIER, NetworkDetails, NetworkSummary,
        ProbeReport, ProbeSpec, ProbeTarget,
    },
    subnet::{Ipv4Net, Pool, PoolUsage},
    validate::ProbeTargets,
};

/// A container with this label set to `true` may sit on the frontend networks of several
/// clients (a shared reverse proxy such as Traefik); on any other tier it still counts as a
/// cross-tenant attachment.
pub use crate::drivers::docker::LABEL_SHARED_INGRESS;

/// The key in client.env recording the driver of the client's networks.
pub const ENV_DRIVER: &str = "NETWORK_DRIVER";

/// One of the four networks every client has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub name: &'static str,
    /// `--internal`: no route out of the host.
    pub internal: bool,
    /// client.env key holding the network's name.
    pub env_network: &'static str,
    /// client.env key holding the network's subnet.
    pub env_subnet: &'static str,
    /// client.env key holding the name of the network's bridge interface (bridge driver).
    pub env_bridge: &'static str,
}

pub const TIERS: [Tier; 4] = [
    Tier {
        name: "frontend",
        internal: false,
        env_network: "FRONTEND_NETWORK",
        env_subnet: "FRONTEND_SUBNET",
        env_bridge: "FRONTEND_BRIDGE",
    },
    Tier {
        name: "backend",
        internal: true,
        env_network: "BACKEND_NETWORK",
        env_subnet: "BACKEND_SUBNET",
        env_bridge: "BACKEND_BRIDGE",
    },
    Tier {
        name: "database",
        internal: true,
        env_network: "DATABASE_NETWORK",
        env_subnet: "DATABASE_SUBNET",
        env_bridge: "DATABASE_BRIDGE",
    },
    Tier {
        name: "network",
        internal: false,
        env_network: "CLIENT_NETWORK",
        env_subnet: "CLIENT_SUBNET",
        env_bridge: "CLIENT_BRIDGE",
    },
];

pub fn tier(name: &str) -> Option<Tier> {
    TIERS.iter().copied().find(|t| t.name == name)
}

/// The driver names the runner accepts for `NETWORK_DRIVER`.
pub fn check_driver(driver: &str) -> anyhow::Result<()> {
    match driver {
        "bridge" | "overlay" => Ok(()),
        other => anyhow::bail!("NETWORK_DRIVER {other:?} is not supported; use bridge (one host) or overlay (Swarm)"),
    }
}

/// What one of a client's networks must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub client: String,
    pub tier: Tier,
    pub name: String,
    pub driver: String,
    /// The subnet recorded in client.env, if any.
    pub subnet: Option<Ipv4Net>,
}

impl Expected {
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_CLIENT.to_string(), self.client.clone()),
            (LABEL_TIER.to_string(), self.tier.name.to_string()),
        ])
    }

    /// What `docker network create` needs (the subnet is decided by the caller).
    pub fn spec(&self, subnet: Option<Ipv4Net>) -> crate::drivers::docker::NetworkSpec {
        crate::drivers::docker::NetworkSpec {
            name: self.name.clone(),
            driver: self.driver.clone(),
            internal: self.tier.internal,
            attachable: self.driver == "overlay",
            labels: self.labels(),
            subnet,
            name_bridge: true,
        }
    }

    /// `bridge, internal, attachable, agency.tier=database` for plans and reports.
    pub fn describe(&self, subnet: Option<Ipv4Net>) -> String {
        let mut parts = vec![self.driver.clone()];
        if self.tier.internal {
            parts.push("internal".into());
        }
        if self.driver == "overlay" {
            parts.push("attachable".into());
        }
        if let Some(subnet) = subnet {
            parts.push(format!("subnet {subnet}"));
            if self.driver == "bridge" {
                parts.push(format!("bridge {}", crate::firewall::bridge_name(subnet)));
            }
        }
        parts.push(format!(
            "labels {LABEL_MANAGED}=true {LABEL_CLIENT}={} {LABEL_TIER}={}",
            self.client, self.tier.name
        ));
        parts.join(", ")
    }
}

/// The four networks of `client` as client.env (`recorded`) and `driver` say they must be.
/// A recorded subnet that does not parse is ignored (status reports it).
pub fn expected_networks(client: &str, driver: &str, recorded: &BTreeMap<String, String>) -> Vec<Expected> {
    TIERS
        .iter()
        .map(|tier| Expected {
            client: client.to_string(),
            tier: *tier,
            name: format!("{client}_{}", tier.name),
            driver: driver.to_string(),
            subnet: recorded.get(tier.env_subnet).and_then(|s| s.parse().ok()),
        })
        .collect()
}

/// The driver a client's networks use: client.env's `NETWORK_DRIVER`, else `setting`, else bridge.
pub fn client_driver(recorded: &BTreeMap<String, String>, setting: &str) -> String {
    recorded
        .get(ENV_DRIVER)
        .filter(|d| !d.is_empty())
        .cloned()
        .or_else(|| (!setting.is_empty()).then(|| setting.to_string()))
        .unwrap_or_else(|| "bridge".to_string())
}

/// How an existing network compares with what it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Ok,
    Missing,
    /// A network of that name exists but does not carry this client's labels.
    Foreign,
    /// Ours, with wrong settings.
    Drift(Vec<String>),
}

impl State {
    pub fn word(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Missing => "missing",
            Self::Foreign => "foreign",
            Self::Drift(_) => "drift",
        }
    }
}

/// Compares one network with its expectation.
pub fn assess(expected: &Expected, actual: Option<&NetworkDetails>) -> State {
    let Some(network) = actual else { return State::Missing };
    let ours = network.label(LABEL_MANAGED) == Some("true") && network.label(LABEL_CLIENT) == Some(&expected.client);
    if !ours {
        return State::Foreign;
    }
    let mut problems = Vec::new();
    if network.label(LABEL_TIER) != Some(expected.tier.name) {
        problems.push(format!(
            "is labelled {LABEL_TIER}={} instead of {}",
            network.label(LABEL_TIER).unwrap_or("(none)"),
            expected.tier.name
        ));
    }
    if network.internal != expected.tier.internal {
        problems.push(if expected.tier.internal { "is not internal".into() } else { "is internal".into() });
    }
    if network.driver != expected.driver {
        problems.push(format!("uses driver {} instead of {}", network.driver, expected.driver));
    }
    if expected.driver == "overlay" && !network.attachable {
        problems.push("is not attachable".into());
    }
    if problems.is_empty() { State::Ok } else { State::Drift(problems) }
}

/// Every network and container of the engine, indexed for per-client questions. A light
/// snapshot comes from `network ls` (names, labels, driver, internal) and `ps -a` alone: two
/// docker calls whatever the number of networks. Inspecting costs the engine ≈2.5 ms per
/// network (measured), so only a detailed snapshot (`INSPECT=1`, `PROBE=1`) has every
/// network's subnets, gateways and endpoints; a light one has them only for the networks in
/// `inspected` (overlay networks of clients, whose `attachable` flag `ls` does not show).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub networks: Vec<NetworkDetails>,
    pub containers: Vec<ContainerSummary>,
    /// True when every network was inspected.
    pub detailed: bool,
    /// Networks with full details in a light snapshot.
    inspected: BTreeSet<String>,
    by_name: HashMap<String, usize>,
    containers_by_network: HashMap<String, Vec<usize>>,
    /// Network name → (client, tier), from labels or from the `<client>_<tier>` name of a known client.
    owners: HashMap<String, (String, String)>,
    /// Client → its network names.
    client_networks: HashMap<String, Vec<String>>,
    /// Client → the containers that join it with another client (see [`Snapshot::cross_tenant`]).
    cross: HashMap<String, Vec<CrossTenant>>,
    /// Names that more than one network carries (two racing creates), with their count.
    shared_names: HashMap<String, usize>,
}

impl Snapshot {
    /// Indexes the engine's state; `known_clients` are the client ids of this root (their
    /// networks are recognised by name even without labels).
    pub fn new(networks: Vec<NetworkDetails>, containers: Vec<ContainerSummary>, known_clients: &[String]) -> Self {
        let known: BTreeSet<&str> = known_clients.iter().map(String::as_str).collect();
        let mut by_name = HashMap::new();
        let mut owners = HashMap::new();
        let mut client_networks: HashMap<String, Vec<String>> = HashMap::new();
        let mut shared_names: HashMap<String, usize> = HashMap::new();
        for (index, network) in networks.iter().enumerate() {
            if by_name.insert(network.name.clone(), index).is_some() {
                *shared_names.entry(network.name.clone()).or_insert(1) += 1;
            }
            let labelled = (network.label(LABEL_MANAGED) == Some("true"))
                .then(|| network.label(LABEL_CLIENT))
                .flatten()
                .map(|client| (client.to_string(), network.label(LABEL_TIER).unwrap_or("").to_string()));
            let named = network.name.rsplit_once('_').and_then(|(client, tier_name)| {
                (known.contains(client) && tier(tier_name).is_some())
                    .then(|| (client.to_string(), tier_name.to_string()))
            });
            if let Some((client, tier_name)) = named.or(labelled) {
                client_networks.entry(client.clone()).or_default().push(network.name.clone());
                owners.insert(network.name.clone(), (client, tier_name));
            }
        }
        let mut containers_by_network: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, container) in containers.iter().enumerate() {
            for network in &container.networks {
                containers_by_network.entry(network.clone()).or_default().push(index);
            }
        }
        let inspected = networks.iter().map(|n| n.name.clone()).collect();
        let mut snapshot = Self {
            networks,
            containers,
            detailed: true,
            inspected,
            by_name,
            containers_by_network,
            owners,
            client_networks,
            cross: HashMap::new(),
            shared_names,
        };
        snapshot.cross = snapshot.find_cross_tenant();
        snapshot
    }

    /// A light snapshot from `network ls` output, with the details of the networks in
    /// `inspected` (a subset) merged in.
    pub fn from_list(
        listed: Vec<NetworkSummary>,
        inspected: Vec<NetworkDetails>,
        containers: Vec<ContainerSummary>,
        known_clients: &[String],
    ) -> Self {
        let names: BTreeSet<String> = inspected.iter().map(|n| n.name.clone()).collect();
        let mut listed_names: HashMap<String, usize> = HashMap::new();
        for network in &listed {
            *listed_names.entry(network.name.clone()).or_default() += 1;
        }
        let mut networks: Vec<NetworkDetails> =
            listed.into_iter().filter(|n| !names.contains(&n.name)).map(details_from_summary).collect();
        networks.extend(inspected);
        let mut snapshot = Self::new(networks, containers, known_clients);
        // `network ls` shows every network of a shared name; an inspection by name, one.
        snapshot.shared_names.extend(listed_names.into_iter().filter(|(_, count)| *count > 1));
        snapshot.detailed = false;
        snapshot.inspected = names;
        snapshot
    }

    /// Names of the overlay networks that belong to clients (for [`Snapshot::from_list`]).
    pub fn client_overlays(listed: &[NetworkSummary], known_clients: &[String]) -> Vec<String> {
        // Whose a network is depends on the network alone: index only the overlay ones.
        let overlays = listed.iter().filter(|n| n.driver == "overlay").cloned().map(details_from_summary).collect();
        let light = Self::new(overlays, Vec::new(), known_clients);
        light.networks.iter().filter(|n| light.owner(&n.name).is_some()).map(|n| n.name.clone()).collect()
    }

    /// True when this network's subnets, gateways and endpoints are known.
    pub fn is_inspected(&self, network: &str) -> bool {
        self.inspected.contains(network)
    }

    pub fn network(&self, name: &str) -> Option<&NetworkDetails> {
        self.by_name.get(name).map(|&i| &self.networks[i])
    }

    /// Containers attached to `network`, running or stopped (Docker removes a network whose
    /// only containers are stopped, and they fail to start afterwards), probes included: a
    /// label proves nothing about who started a container.
    pub fn attached(&self, network: &str) -> Vec<&ContainerSummary> {
        self.containers_by_network
            .get(network)
            .map(|indexes| indexes.iter().map(|&i| &self.containers[i]).collect())
            .unwrap_or_default()
    }

    /// The client and tier a network belongs to.
    pub fn owner(&self, network: &str) -> Option<(&str, &str)> {
        self.owners.get(network).map(|(c, t)| (c.as_str(), t.as_str()))
    }

    /// Every IPv4 subnet in use on the engine.
    pub fn used_subnets(&self) -> Vec<Ipv4Net> {
        self.networks.iter().flat_map(|n| n.subnets.iter().copied()).collect()
    }

    pub fn pool_usage(&self, pool: &Pool) -> PoolUsage {
        pool.usage(&self.used_subnets())
    }

    /// The networks check of one client: all four exist, carry its labels, and have the
    /// settings of their tier.
    pub fn network_check(&self, client: &str, driver: &str, recorded: &BTreeMap<String, String>) -> Check {
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        let mut fixes = Vec::new();
        let mut refusals = Vec::new();
        let mut evidence = Vec::new();
        for expected in expected_networks(client, driver, recorded) {
            let actual = self.network(&expected.name);
            let state = assess(&expected, actual);
            let attached: Vec<String> = self.attached(&expected.name).iter().map(|c| c.name.clone()).collect();
            if let Some(count) = self.shared_names.get(&expected.name) {
                problems.push(format!("{count} networks are named {}", expected.name));
                refusals.push(format!(
                    "{count} networks are named {}: `docker network rm {}` removes only one; remove the extra by id",
                    expected.name, expected.name
                ));
            }
            match &state {
                State::Ok => {}
                State::Missing => {
                    problems.push(format!("{} is missing", expected.name));
                    fixes.push(format!("creates {}", expected.name));
                }
                State::Foreign => {
                    problems.push(format!("{} exists but is not labelled as {client}'s", expected.name));
                    let network = actual.expect("foreign implies a network");
                    refusals.push(foreign_advice(network, &attached, client));
                }
                State::Drift(drift) => {
                    problems.push(format!("{} {}", expected.name, drift.join(", ")));
                    if attached.is_empty() {
                        fixes.push(format!("recreates {} (no container attached)", expected.name));
                    } else {
                        refusals.push(format!(
                            "{} has containers attached ({}): detach them, then FIX=1 recreates it",
                            expected.name,
                            attached.join(", ")
                        ));
                    }
                }
            }
            let inspected = self.is_inspected(&expected.name);
            let actual_subnets: Option<Vec<String>> =
                actual.filter(|_| inspected).map(|n| n.subnets.iter().map(ToString::to_string).collect());
            if let (Some(network), Some(recorded_subnet)) = (actual, expected.subnet)
                && inspected
                && state != State::Foreign
                && !network.subnets.contains(&recorded_subnet)
            {
                notes.push(format!(
                    "{} has subnet {} but client.env records {recorded_subnet}",
                    expected.name,
                    actual_subnets.clone().unwrap_or_default().join(",")
                ));
            }
            if let Some(text) = recorded.get(expected.tier.env_subnet)
                && expected.subnet.is_none()
            {
                notes.push(format!("client.env {}={text:?} is not an IPv4 CIDR", expected.tier.env_subnet));
            }
            let problems_of = match &state {
                State::Drift(drift) => drift.clone(),
                _ => Vec::new(),
            };
            evidence.push(json!({
                "name": expected.name,
                "tier": expected.tier.name,
                "state": state.word(),
                "problems": problems_of,
                "exists": actual.is_some(),
                "id": actual.map(|n| n.id.clone()),
                "driver": actual.map(|n| n.driver.clone()),
                "internal": actual.map(|n| n.internal),
                "attachable": actual.filter(|_| inspected).map(|n| n.attachable),
                "subnets": actual_subnets,
                "recorded_subnet": expected.subnet.map(|s| s.to_string()),
                "labels": actual.map(|n| n.labels.clone()),
                "expected": { "driver": expected.driver, "internal": expected.tier.internal },
                "containers": attached,
            }));
        }
        let mut fix = Vec::new();
        if !fixes.is_empty() {
            fix.push(format!("FIX=1 {}", fixes.join("; ")));
        }
        if !refusals.is_empty() {
            fix.push(format!("FIX=1 cannot: {}", refusals.join("; ")));
        }
        let (status, summary) = if !problems.is_empty() {
            (Status::Fail, problems.join("; "))
        } else if !notes.is_empty() {
            (Status::Warn, notes.join("; "))
        } else {
            (Status::Ok, format!("4 networks, {driver}, backend and database internal"))
        };
        let mut summary = summary;
        if status == Status::Fail && !notes.is_empty() {
            summary = format!("{summary}; {}", notes.join("; "));
        }
        Check::new("networks", status, summary).evidence(json!(evidence)).fix(fix.join("; "))
    }

    /// Containers that join this client with another client, from the client's side: a
    /// container belongs to a client when it is labelled `agency.client=<id>` or attached to
    /// one of the client's networks. It fails the check of every client it belongs to when it
    /// belongs to two clients, or when it shares any network (a plain one, the default
    /// `bridge`, `host`) with a container of another client. A container labelled
    /// `agency.shared-ingress=true` whose client networks are all frontends (Traefik) belongs
    /// to no client and is allowed; on any other client network it counts like any other.
    pub fn cross_tenant(&self, client: &str) -> Vec<CrossTenant> {
        self.cross.get(client).cloned().unwrap_or_default()
    }

    fn find_cross_tenant(&self) -> HashMap<String, Vec<CrossTenant>> {
        struct Seen {
            owners: BTreeSet<String>,
            shared: bool,
            /// (network, owning client or "")
            networks: Vec<(String, String)>,
        }
        let seen: Vec<Seen> = self
            .containers
            .iter()
            .map(|container| {
                let networks: Vec<(String, String)> = container
                    .networks
                    .iter()
                    .map(|n| (n.clone(), self.owner(n).map(|(c, _)| c.to_string()).unwrap_or_default()))
                    .collect();
                let client_tiers: Vec<&str> =
                    container.networks.iter().filter_map(|n| self.owner(n).map(|(_, t)| t)).collect();
                let shared = container.label(LABEL_SHARED_INGRESS) == Some("true")
                    && client_tiers.iter().all(|tier| *tier == "frontend");
                let mut owners = BTreeSet::new();
                if !shared {
                    owners.extend(container.label(LABEL_CLIENT).filter(|c| !c.is_empty()).map(str::to_string));
                    owners.extend(networks.iter().filter(|(_, c)| !c.is_empty()).map(|(_, c)| c.clone()));
                }
                Seen { owners, shared, networks }
            })
            .collect();
        // (client, container index) → reasons, fix commands
        let mut found: BTreeMap<(String, usize), (Vec<String>, Vec<String>)> = BTreeMap::new();
        let disconnect = |network: &str, container: &ContainerSummary| {
            format!("docker network disconnect {network} {}", container.name)
        };
        for (index, (container, seen)) in self.containers.iter().zip(&seen).enumerate() {
            if seen.owners.len() < 2 {
                continue;
            }
            let label = container.label(LABEL_CLIENT).filter(|c| !c.is_empty());
            for client in &seen.owners {
                let others: Vec<&str> = seen.owners.iter().map(String::as_str).filter(|c| c != client).collect();
                let on_own = seen.networks.iter().any(|(_, c)| c == client);
                let on_others = seen.networks.iter().any(|(_, c)| !c.is_empty() && c != client);
                let reason = if container.label(LABEL_SHARED_INGRESS) == Some("true") {
                    let inner: Vec<&str> = seen
                        .networks
                        .iter()
                        .filter(|(n, c)| !c.is_empty() && self.owner(n).is_some_and(|(_, t)| t != "frontend"))
                        .map(|(n, _)| n.as_str())
                        .collect();
                    format!(
                        "{} is marked {LABEL_SHARED_INGRESS} but is attached to {}, not only to frontend networks, \
                         joining {client} and {}",
                        container.name,
                        inner.join(", "),
                        others.join(", ")
                    )
                } else if on_own && on_others {
                    format!("{} is attached to networks of {client} and {}", container.name, others.join(", "))
                } else if on_own {
                    format!(
                        "{} is labelled {LABEL_CLIENT}={} but is attached to {client}'s networks",
                        container.name,
                        label.unwrap_or("?")
                    )
                } else {
                    format!(
                        "{} is labelled {LABEL_CLIENT}={client} but is attached to networks of {}",
                        container.name,
                        others.join(", ")
                    )
                };
                // The container stays with the client of its label (else with the one whose row
                // this is) and leaves every other client's network; a shared ingress leaves
                // every client network that is not a frontend.
                let fix: Vec<String> = if container.label(LABEL_SHARED_INGRESS) == Some("true") {
                    seen.networks
                        .iter()
                        .filter(|(n, c)| !c.is_empty() && self.owner(n).is_some_and(|(_, t)| t != "frontend"))
                        .map(|(n, _)| disconnect(n, container))
                        .collect()
                } else {
                    let home = label.unwrap_or(client);
                    let fix: Vec<String> = seen
                        .networks
                        .iter()
                        .filter(|(_, c)| !c.is_empty() && c != home)
                        .map(|(n, _)| disconnect(n, container))
                        .collect();
                    if fix.is_empty() {
                        vec![format!("remove {} or relabel it (it is labelled for {home})", container.name)]
                    } else {
                        fix
                    }
                };
                let entry = found.entry((client.clone(), index)).or_default();
                entry.0.push(reason);
                entry.1.extend(fix);
            }
        }
        // Any network (not the client networks, handled above: a container there belongs to
        // that client) that holds containers of two clients joins them.
        for (network, indexes) in &self.containers_by_network {
            if network == "none" || self.owner(network).is_some() {
                continue;
            }
            let mut by_client: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for &index in indexes {
                for owner in &seen[index].owners {
                    by_client.entry(owner.as_str()).or_default().push(index);
                }
            }
            if by_client.len() < 2 {
                continue;
            }
            for (client, members) in &by_client {
                let others: Vec<String> = by_client
                    .iter()
                    .filter(|(c, _)| c != &client)
                    .map(|(c, m)| format!("{c} ({})", self.containers[m[0]].name))
                    .collect();
                for &index in members {
                    let container = &self.containers[index];
                    let entry = found.entry((client.to_string(), index)).or_default();
                    entry.0.push(format!(
                        "{} shares network {network} with containers of {}",
                        container.name,
                        others.join(", ")
                    ));
                    entry.1.push(disconnect(network, container));
                }
            }
        }
        // Allowed shared ingress, shown per client whose frontend it is on.
        for (index, seen) in seen.iter().enumerate() {
            if !seen.shared {
                continue;
            }
            let clients: BTreeSet<&str> =
                seen.networks.iter().filter(|(_, c)| !c.is_empty()).map(|(_, c)| c.as_str()).collect();
            if clients.len() < 2 {
                continue;
            }
            for client in clients {
                found.entry((client.to_string(), index)).or_default();
            }
        }
        let mut result: HashMap<String, Vec<CrossTenant>> = HashMap::new();
        for ((client, index), (reasons, mut fix)) in found {
            let container = &self.containers[index];
            fix.dedup();
            result.entry(client).or_default().push(CrossTenant {
                container: container.name.clone(),
                container_id: container.id.clone(),
                state: container.state.clone(),
                networks: seen[index].networks.clone(),
                shared_ingress: seen[index].shared,
                reason: reasons.join("; "),
                fix: fix.join("; "),
            });
        }
        for list in result.values_mut() {
            list.sort_by(|a, b| (&a.container, &a.container_id).cmp(&(&b.container, &b.container_id)));
        }
        result
    }

    /// The cross-tenant check of one client.
    pub fn cross_tenant_check(&self, client: &str) -> Check {
        let findings = self.cross_tenant(client);
        let violations: Vec<&CrossTenant> = findings.iter().filter(|f| !f.reason.is_empty()).collect();
        let shared: Vec<&str> = findings.iter().filter(|f| f.reason.is_empty()).map(|f| f.container.as_str()).collect();
        let evidence = json!({
            "containers_on_client_networks": self.client_networks.get(client).into_iter().flatten()
                .map(|n| self.attached(n).len()).sum::<usize>(),
            "violations": violations.iter().map(|f| json!({
                "container": f.container, "id": f.container_id, "state": f.state, "reason": f.reason,
                "networks": f.networks.iter().map(|(n, c)| json!({"network": n, "client": c})).collect::<Vec<_>>(),
                "fix": f.fix,
            })).collect::<Vec<_>>(),
            "shared_ingress": shared,
        });
        if violations.is_empty() {
            let summary = if shared.is_empty() {
                "no container joins another client's networks".to_string()
            } else {
                format!("no container joins another client's networks (shared ingress: {})", shared.join(", "))
            };
            Check::new("cross_tenant", Status::Ok, summary).evidence(evidence)
        } else {
            let fix = violations.iter().map(|f| f.fix.as_str()).collect::<Vec<_>>().join("; ");
            Check::new(
                "cross_tenant",
                Status::Fail,
                violations.iter().map(|f| f.reason.as_str()).collect::<Vec<_>>().join("; "),
            )
            .evidence(evidence)
            .fix(format!("FIX=1 cannot detach containers: {fix}"))
        }
    }

    /// The networks of `client` this snapshot knows, in tier order where possible.
    pub fn client_networks(&self, client: &str) -> Vec<&NetworkDetails> {
        let mut networks: Vec<&NetworkDetails> =
            self.client_networks.get(client).into_iter().flatten().filter_map(|n| self.network(n)).collect();
        networks.sort_by_key(|n| {
            TIERS.iter().position(|t| Some(t.name) == self.owner(&n.name).map(|(_, tier)| tier)).unwrap_or(TIERS.len())
        });
        networks
    }

    /// Running containers of other clients with an address, one per network, at most `limit`.
    fn other_tenant_targets(&self, client: &str, limit: usize) -> Vec<(Ipv4Addr, String, String)> {
        let mut targets = Vec::new();
        for network in &self.networks {
            let Some((owner, _)) = self.owner(&network.name) else { continue };
            if owner == client {
                continue;
            }
            let endpoint = network.containers.iter().find_map(|e| e.ipv4.map(|ip| (ip, e.name.clone())));
            if let Some((ip, name)) = endpoint {
                targets.push((ip, name, owner.to_string()));
                if targets.len() >= limit {
                    break;
                }
            }
        }
        targets
    }
}

/// What `network ls` says about a network, in the shape of an inspected one (no subnets,
/// gateways or endpoints; `attachable` unknown, taken as false).
fn details_from_summary(summary: NetworkSummary) -> NetworkDetails {
    NetworkDetails {
        id: summary.id,
        name: summary.name,
        created: String::new(),
        driver: summary.driver,
        scope: summary.scope,
        internal: summary.internal,
        attachable: false,
        ingress: false,
        subnets: Vec::new(),
        gateways: Vec::new(),
        labels: summary.labels,
        containers: Vec::new(),
        bridge: None,
    }
}

/// A container joining a client with another client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossTenant {
    pub container: String,
    pub container_id: String,
    /// `running`, `exited`, … (a stopped container joins the clients again when started).
    pub state: String,
    /// (network, client, or "" for a network of no client) of every network it is on.
    pub networks: Vec<(String, String)>,
    pub shared_ingress: bool,
    /// Empty for an allowed shared-ingress attachment.
    pub reason: String,
    /// The commands that end it (`docker network disconnect NETWORK CONTAINER; ...`).
    pub fix: String,
}

/// A repair `FIX=1` makes to one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    Create(Expected),
    /// Remove the drifted network (by ID) and create it again.
    Recreate {
        expected: Expected,
        id: String,
        subnet: Option<Ipv4Net>,
    },
    /// Cannot be repaired safely; the message says why.
    Refuse(String),
}

/// A network of the client's name that `FIX=1 ADOPT=1` may replace: labelled for no other
/// client, and with no container attached (running or stopped).
fn adoptable(network: &NetworkDetails, attached: &[String], client: &str) -> bool {
    network.label(LABEL_CLIENT).is_none_or(|owner| owner == client) && attached.is_empty()
}

/// The next step for a network of the client's name that is not the client's.
fn foreign_advice(network: &NetworkDetails, attached: &[String], client: &str) -> String {
    let name = &network.name;
    match network.label(LABEL_CLIENT) {
        Some(owner) if owner != client => format!("{name} is labelled as client {owner}'s; left alone"),
        _ if !attached.is_empty() => format!(
            "{name} is not {client}'s and has containers attached ({}); left alone: detach them \
             (`docker network disconnect {name} CONTAINER`), then run FIX=1 ADOPT=1 to replace it",
            attached.join(", ")
        ),
        _ => format!(
            "{name} is not {client}'s and is empty; left alone: remove it (`docker network rm {name}`) and run \
             FIX=1, or run FIX=1 ADOPT=1 to replace it"
        ),
    }
}

/// What `FIX=1` would do for the client's networks; with `adopt` (`ADOPT=1`), an empty
/// network of exactly a client network's name, labelled for no other client, is replaced.
pub fn plan_repairs(
    snapshot: &Snapshot,
    client: &str,
    driver: &str,
    recorded: &BTreeMap<String, String>,
    adopt: bool,
) -> Vec<Repair> {
    let mut repairs = Vec::new();
    for expected in expected_networks(client, driver, recorded) {
        let actual = snapshot.network(&expected.name);
        match assess(&expected, actual) {
            State::Ok => {
                // Made before agency named its bridges: recreated with a name, when nothing is
                // attached (until then the firewall covers it by Docker's `br-<id>` name).
                let network = actual.expect("ok implies a network");
                if expected.driver != "bridge"
                    || network.bridge.as_deref() != Some(crate::firewall::docker_bridge_name(&network.id).as_str())
                {
                    continue;
                }
                let attached: Vec<String> = snapshot.attached(&expected.name).iter().map(|c| c.name.clone()).collect();
                if attached.is_empty() {
                    let subnet = expected.subnet.or_else(|| network.subnets.first().copied());
                    repairs.push(Repair::Recreate { expected, id: network.id.clone(), subnet });
                } else {
                    repairs.push(Repair::Refuse(format!(
                        "{}'s bridge has no name of agency's ({}) but has containers attached ({}); not touched: the \
                         firewall covers it by that name; detach them and run FIX=1 again to name it",
                        expected.name,
                        network.bridge.as_deref().unwrap_or_default(),
                        attached.join(", ")
                    )));
                }
            }
            State::Missing => repairs.push(Repair::Create(expected)),
            State::Foreign => {
                let network = actual.expect("foreign implies a network");
                let attached: Vec<String> = snapshot.attached(&expected.name).iter().map(|c| c.name.clone()).collect();
                if adopt && adoptable(network, &attached, client) {
                    let subnet = expected.subnet;
                    repairs.push(Repair::Recreate { expected, id: network.id.clone(), subnet });
                } else {
                    repairs.push(Repair::Refuse(foreign_advice(network, &attached, client)));
                }
            }
            State::Drift(problems) => {
                let network = actual.expect("drift implies a network");
                let attached: Vec<String> = snapshot.attached(&expected.name).iter().map(|c| c.name.clone()).collect();
                if attached.is_empty() {
                    let subnet = expected.subnet.or_else(|| network.subnets.first().copied());
                    repairs.push(Repair::Recreate { expected, id: network.id.clone(), subnet });
                } else {
                    repairs.push(Repair::Refuse(format!(
                        "{} {} but has containers attached ({}); not touched: detach them and run FIX=1 again",
                        expected.name,
                        problems.join(", "),
                        attached.join(", ")
                    )));
                }
            }
        }
    }
    repairs
}

/// Settings of a `PROBE=1` run.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub image: String,
    /// TCP ports tried on the host's addresses (and on other tenants' containers).
    pub ports: Vec<u16>,
    /// What the operator asked to try beyond the host (`PROBE_BEYOND`); nothing by default.
    pub beyond: ProbeTargets,
    pub timeout_secs: u32,
    /// At most this many other-tenant containers per probe.
    pub max_tenant_targets: usize,
}

/// One probe container to run, and what each of its targets stands for.
#[derive(Debug, Clone)]
pub struct ProbePlan {
    pub client: String,
    pub network: String,
    pub internal: bool,
    pub spec: ProbeSpec,
    /// (address, container, client)
    pub tenants: Vec<(Ipv4Addr, String, String)>,
    /// (address, what it is)
    pub host: Vec<(Ipv4Addr, String)>,
    pub beyond: Vec<Ipv4Addr>,
}

/// Parses `PROBE_PORTS` (`22,80,443`).
pub fn parse_ports(text: &str) -> anyhow::Result<Vec<u16>> {
    text.split([',', ' '])
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u16>().map_err(|_| anyhow::anyhow!("PROBE_PORTS: {p:?} is not a port number")))
        .collect()
}

/// The probes for one client: one container on each of its existing networks.
pub fn plan_probes(snapshot: &Snapshot, client: &str, host: &HostNetInfo, settings: &ProbeSettings) -> Vec<ProbePlan> {
    let tenants = snapshot.other_tenant_targets(client, settings.max_tenant_targets);
    let mut plans = Vec::new();
    for network in snapshot.client_networks(client) {
        let internal = network.internal;
        let mut host_targets: Vec<(Ipv4Addr, String)> = Vec::new();
        let mut add_host = |address: Ipv4Addr, what: String| {
            if !host_targets.iter().any(|(a, _)| *a == address) {
                host_targets.push((address, what));
            }
        };
        for gateway in &network.gateways {
            add_host(*gateway, format!("gateway of {}", network.name));
        }
        for address in &host.addresses {
            // Bridges of other networks come and go (named bridges too); an address that
            // vanished during the probe would be routed to the default gateway, off the host.
            // Their gateways are covered by the gateway targets; docker0's stays. A bridge made
            // since the snapshot is not among the networks but is named `br-`/`agb-`.
            let other_bridge = snapshot
                .networks
                .iter()
                .any(|n| n.name != "bridge" && n.subnets.iter().any(|s| s.contains(address.address)));
            if address.address.is_loopback()
                || other_bridge
                || address.interface.starts_with("br-")
                || address.interface.starts_with(crate::firewall::BRIDGE_PREFIX)
                || address.interface.starts_with("veth")
            {
                continue;
            }
            add_host(address.address, format!("host address on {}", address.interface));
        }
        // One other client's gateway: every bridge's gateway is an address of the host.
        if let Some(other) = snapshot
            .networks
            .iter()
            .find(|n| snapshot.owner(&n.name).is_some_and(|(c, _)| c != client) && !n.gateways.is_empty())
        {
            add_host(other.gateways[0], format!("gateway of {}", other.name));
        }
        let mut beyond: Vec<Ipv4Addr> = host.default_gateway.filter(|_| settings.beyond.gateway).into_iter().collect();
        for address in &settings.beyond.addresses {
            if !beyond.contains(address) {
                beyond.push(*address);
            }
        }
        let mut targets: Vec<ProbeTarget> = Vec::new();
        for (address, _, _) in &tenants {
            targets.push(ProbeTarget { address: *address, icmp: true, ports: settings.ports.clone() });
        }
        for (address, _) in &host_targets {
            targets.push(ProbeTarget { address: *address, icmp: true, ports: settings.ports.clone() });
        }
        for address in &beyond {
            targets.push(ProbeTarget { address: *address, icmp: true, ports: vec![443] });
        }
        plans.push(ProbePlan {
            client: client.to_string(),
            network: network.name.clone(),
            internal,
            spec: ProbeSpec {
                image: settings.image.clone(),
                network: network.name.clone(),
                targets,
                timeout_secs: settings.timeout_secs,
                labels: BTreeMap::from([(LABEL_CLIENT.to_string(), client.to_string())]),
            },
            tenants: tenants.clone(),
            host: host_targets,
            beyond,
        });
    }
    plans
}

/// The second look at what a first probe reached that it must not (another tenant; beyond the
/// host from an internal network): `None` when nothing needs confirming.
///
/// Measured on Docker 20.10: every `docker network create` lifts the bridges' isolation for a
/// few milliseconds (it deletes and re-inserts its `FORWARD -j DOCKER-ISOLATION-STAGE-1` jump),
/// and about one ping in that window crosses to another bridge, internal ones included. A
/// probe that coincides with another run creating networks sees that; a second try a moment
/// later tells a steady leak from the transient one.
pub fn retry_spec(plan: &ProbePlan, report: &ProbeReport) -> Option<ProbeSpec> {
    let reached = |address: &Ipv4Addr| report.result(*address).is_some_and(|r| r.reachable());
    let mut addresses: Vec<Ipv4Addr> = plan.tenants.iter().map(|(a, _, _)| *a).filter(reached).collect();
    if plan.internal {
        addresses.extend(plan.beyond.iter().copied().filter(reached));
    }
    if addresses.is_empty() {
        return None;
    }
    let targets = plan.spec.targets.iter().filter(|t| addresses.contains(&t.address)).cloned().collect();
    Some(ProbeSpec { targets, ..plan.spec.clone() })
}

/// Reads the probes' answers into the client's `probe` check: another tenant reached, or an
/// internal network reaching beyond the host, fails when the second try (`retries`, from
/// [`retry_spec`]) reaches it again and is a warning when only the first did; the host's own
/// addresses answering is a warning (Docker's `--internal` does not filter traffic to the host
/// itself).
pub fn probe_check(
    plans: &[ProbePlan],
    reports: &[anyhow::Result<ProbeReport>],
    retries: &[Option<anyhow::Result<ProbeReport>>],
) -> Check {
    let mut transient = Vec::new();
    let mut failures = Vec::new();
    let mut warnings = Vec::new();
    let mut evidence = Vec::new();
    let mut tenants_probed = 0usize;
    let mut reaching_host: Vec<(String, bool)> = Vec::new();
    let mut host_addresses: Vec<Ipv4Addr> = Vec::new();
    let mut open_ports: BTreeMap<u16, Vec<Ipv4Addr>> = BTreeMap::new();
    for (index, (plan, report)) in plans.iter().zip(reports).enumerate() {
        let report = match report {
            Ok(report) => report,
            Err(error) => {
                failures.push(format!("probe on {} did not run: {error:#}", plan.network));
                evidence.push(json!({ "network": plan.network, "error": format!("{error:#}") }));
                continue;
            }
        };
        let retry = retries.get(index).and_then(|r| r.as_ref());
        // A first reach counts only when the second try confirms it.
        let confirmed = |address: Ipv4Addr| match retry {
            Some(Ok(second)) => second.result(address).is_some_and(|r| r.reachable()),
            _ => true,
        };
        let result = |address: Ipv4Addr| report.result(address);
        let tenants: Vec<serde_json::Value> = plan
            .tenants
            .iter()
            .map(|(address, container, owner)| {
                let r = result(*address);
                let first = r.is_some_and(|r| r.reachable());
                json!({ "address": address.to_string(), "container": container, "client": owner,
                        "reachable": first && confirmed(*address),
                        "reached_once": first && !confirmed(*address),
                        "open_ports": r.map(|r| r.open_ports()).unwrap_or_default() })
            })
            .collect();
        tenants_probed = tenants_probed.max(plan.tenants.len());
        for (address, container, owner) in &plan.tenants {
            if result(*address).is_some_and(|r| r.reachable()) {
                if confirmed(*address) {
                    failures.push(format!("{} reaches {container} of client {owner} ({address})", plan.network));
                } else {
                    transient.push(format!("{} reached {container} of client {owner} ({address}) once", plan.network));
                }
            }
        }
        let host: Vec<serde_json::Value> = plan
            .host
            .iter()
            .map(|(address, what)| {
                let r = result(*address);
                json!({ "address": address.to_string(), "what": what,
                        "reachable": r.is_some_and(|r| r.reachable()),
                        "icmp": r.and_then(|r| r.icmp),
                        "open_ports": r.map(|r| r.open_ports()).unwrap_or_default() })
            })
            .collect();
        let mut reached_any = false;
        for (address, _) in &plan.host {
            let Some(r) = result(*address).filter(|r| r.reachable()) else { continue };
            reached_any = true;
            if !host_addresses.contains(address) {
                host_addresses.push(*address);
            }
            for port in r.open_ports() {
                let listeners = open_ports.entry(port).or_default();
                if !listeners.contains(address) {
                    listeners.push(*address);
                }
            }
        }
        if reached_any {
            reaching_host.push((plan.network.clone(), plan.internal));
        }
        let beyond: Vec<serde_json::Value> = plan
            .beyond
            .iter()
            .map(|address| json!({ "address": address.to_string(), "reachable": result(*address).is_some_and(|r| r.reachable()) }))
            .collect();
        let reached_beyond: Vec<String> = plan
            .beyond
            .iter()
            .filter(|a| result(**a).is_some_and(|r| r.reachable()) && (!plan.internal || confirmed(**a)))
            .map(ToString::to_string)
            .collect();
        if plan.internal {
            for address in plan.beyond.iter().filter(|a| result(**a).is_some_and(|r| r.reachable()) && !confirmed(**a))
            {
                transient.push(format!("{} reached {address} beyond the host once", plan.network));
            }
        }
        if plan.internal && !reached_beyond.is_empty() {
            failures.push(format!(
                "internal network {} reaches beyond the host ({})",
                plan.network,
                reached_beyond.join(", ")
            ));
        }
        evidence.push(json!({
            "network": plan.network,
            "internal": plan.internal,
            "source": report.source.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "other_tenants": tenants,
            "host": host,
            "beyond": beyond,
        }));
    }
    if plans.is_empty() {
        return Check::new("probe", Status::Skip, "no network of this client exists to probe");
    }
    if !reaching_host.is_empty() {
        let who = if reaching_host.len() == plans.len() {
            if reaching_host.iter().any(|(_, internal)| *internal) {
                "every network, internal ones too,".to_string()
            } else {
                "every network".to_string()
            }
        } else {
            reaching_host.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
        };
        let list = |addresses: &[Ipv4Addr]| {
            let shown: Vec<String> = addresses.iter().take(4).map(ToString::to_string).collect();
            let more = addresses.len().saturating_sub(4);
            if more > 0 { format!("{} and {more} more", shown.join(", ")) } else { shown.join(", ") }
        };
        let mut text = format!("{who} reaches the host's own addresses ({})", list(&host_addresses));
        if !open_ports.is_empty() {
            let ports: Vec<String> =
                open_ports.iter().map(|(port, addresses)| format!("{port} on {}", list(addresses))).collect();
            text.push_str(&format!("; listening there: {}", ports.join("; ")));
        }
        warnings.push(text);
    }
    if !transient.is_empty() {
        warnings.push(format!(
            "{}, not on a second try: Docker lifts its isolation for a few ms while it creates a network \
             (another run was probably creating one)",
            transient.join("; ")
        ));
    }
    if tenants_probed == 0 {
        warnings.push("no other client has a running container, so tenant isolation was not exercised".into());
    }
    let status = if !failures.is_empty() {
        Status::Fail
    } else if !warnings.is_empty() {
        Status::Warn
    } else {
        Status::Ok
    };
    let beyond_probed = plans.iter().any(|p| !p.beyond.is_empty());
    let summary = failures.iter().chain(&warnings).cloned().collect::<Vec<_>>().join("; ");
    let summary = match (summary.is_empty(), beyond_probed) {
        (true, true) => "no other tenant, host address or outside address reachable".to_string(),
        (true, false) => {
            "no other tenant or host address reachable; beyond the host: not probed (set PROBE_BEYOND)".to_string()
        }
        (false, true) => summary,
        (false, false) => format!("{summary}; beyond the host: not probed (set PROBE_BEYOND)"),
    };
    Check::new("probe", status, summary).evidence(json!(evidence))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::docker::{Endpoint, HostAddress, ProbeResult, TcpOutcome};

    fn network(name: &str, labels: &[(&str, &str)], internal: bool, subnet: &str) -> NetworkDetails {
        let subnet: Ipv4Net = subnet.parse().unwrap();
        NetworkDetails {
            id: format!("id-{name}"),
            name: name.into(),
            created: String::new(),
            driver: "bridge".into(),
            scope: "local".into(),
            internal,
            attachable: false,
            ingress: false,
            subnets: vec![subnet],
            gateways: vec![subnet.first_host()],
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            containers: Vec::new(),
            bridge: Some(crate::firewall::bridge_name(subnet)),
        }
    }

    fn client_networks(client: &str, base: u8) -> Vec<NetworkDetails> {
        TIERS
            .iter()
            .enumerate()
            .map(|(i, t)| {
                network(
                    &format!("{client}_{}", t.name),
                    &[(LABEL_MANAGED, "true"), (LABEL_CLIENT, client), (LABEL_TIER, t.name)],
                    t.internal,
                    &format!("10.201.{base}.{}/26", i * 64),
                )
            })
            .collect()
    }

    fn container(name: &str, networks: &[&str], labels: &[(&str, &str)]) -> ContainerSummary {
        ContainerSummary {
            id: format!("cid-{name}"),
            name: name.into(),
            image: "img".into(),
            state: "running".into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            networks: networks.iter().map(|n| n.to_string()).collect(),
            ports: String::new(),
        }
    }

    fn recorded(base: u8) -> BTreeMap<String, String> {
        TIERS
            .iter()
            .enumerate()
            .map(|(i, t)| (t.env_subnet.to_string(), format!("10.201.{base}.{}/26", i * 64)))
            .collect()
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn healthy_client_passes() {
        let snapshot = Snapshot::new(client_networks("acme", 0), vec![], &ids(&["acme"]));
        let check = snapshot.network_check("acme", "bridge", &recorded(0));
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert_eq!(check.evidence.as_array().unwrap().len(), 4);
        assert_eq!(check.evidence[2]["state"], "ok");
        assert!(plan_repairs(&snapshot, "acme", "bridge", &recorded(0), false).is_empty());
    }

    #[test]
    fn missing_foreign_and_drift_are_failures_with_fixes() {
        let mut networks = client_networks("acme", 0);
        networks.retain(|n| n.name != "acme_backend");
        networks.iter_mut().find(|n| n.name == "acme_database").unwrap().internal = false;
        networks.iter_mut().find(|n| n.name == "acme_frontend").unwrap().labels.clear();
        let snapshot = Snapshot::new(networks, vec![], &ids(&["acme"]));
        let check = snapshot.network_check("acme", "bridge", &recorded(0));
        assert_eq!(check.status, Status::Fail);
        assert!(check.summary.contains("acme_backend is missing"), "{}", check.summary);
        assert!(check.summary.contains("acme_database is not internal"), "{}", check.summary);
        assert!(check.summary.contains("acme_frontend exists but is not labelled as acme's"), "{}", check.summary);
        assert!(check.fix.contains("creates acme_backend"), "{}", check.fix);
        assert!(check.fix.contains("recreates acme_database"), "{}", check.fix);
        let repairs = plan_repairs(&snapshot, "acme", "bridge", &recorded(0), false);
        assert!(matches!(&repairs[0], Repair::Refuse(m) if m.contains("acme_frontend")));
        assert!(matches!(&repairs[1], Repair::Create(e) if e.name == "acme_backend"
            && e.subnet == Some("10.201.0.64/26".parse().unwrap())));
        assert!(matches!(&repairs[2], Repair::Recreate { expected, subnet, .. } if expected.name == "acme_database"
            && *subnet == Some("10.201.0.128/26".parse().unwrap())));
    }

    #[test]
    fn two_networks_of_one_name_fail() {
        let mut networks = client_networks("acme", 0);
        let mut twin = networks[1].clone();
        twin.id = "another-id".into();
        twin.subnets = vec!["10.201.3.0/26".parse().unwrap()];
        networks.push(twin.clone());
        let snapshot = Snapshot::new(networks, vec![], &ids(&["acme"]));
        let check = snapshot.network_check("acme", "bridge", &recorded(0));
        assert_eq!(check.status, Status::Fail);
        assert!(check.summary.contains("2 networks are named acme_backend"), "{}", check.summary);
        assert!(check.fix.contains("remove the extra by id"), "{}", check.fix);

        // A light snapshot (status without INSPECT=1) sees them in `network ls`.
        let listed: Vec<NetworkSummary> = snapshot
            .networks
            .iter()
            .map(|n| NetworkSummary {
                id: n.id.clone(),
                name: n.name.clone(),
                driver: n.driver.clone(),
                scope: n.scope.clone(),
                internal: n.internal,
                labels: n.labels.clone(),
            })
            .collect();
        let light = Snapshot::from_list(listed, vec![], vec![], &ids(&["acme"]));
        let check = light.network_check("acme", "bridge", &recorded(0));
        assert!(check.summary.contains("2 networks are named acme_backend"), "{}", check.summary);
    }

    #[test]
    fn drift_with_containers_attached_is_refused() {
        let mut networks = client_networks("acme", 0);
        networks.iter_mut().find(|n| n.name == "acme_database").unwrap().internal = false;
        let snapshot = Snapshot::new(networks, vec![container("db", &["acme_database"], &[])], &ids(&["acme"]));
        let repairs = plan_repairs(&snapshot, "acme", "bridge", &recorded(0), false);
        assert!(matches!(&repairs[..], [Repair::Refuse(m)] if m.contains("containers attached (db)")), "{repairs:?}");
        let check = snapshot.network_check("acme", "bridge", &recorded(0));
        assert!(check.fix.contains("cannot"), "{}", check.fix);
    }

    #[test]
    fn adopt_replaces_only_an_empty_network_labelled_for_no_other_client() {
        let by_hand = |labels: &[(&str, &str)], containers: Vec<ContainerSummary>| {
            let mut networks = client_networks("acme", 0);
            let database = networks.iter_mut().find(|n| n.name == "acme_database").unwrap();
            database.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Snapshot::new(networks, containers, &ids(&["acme"]))
        };
        let empty = by_hand(&[], vec![]);
        let check = empty.network_check("acme", "bridge", &recorded(0));
        assert!(
            check.fix.contains("remove it (`docker network rm acme_database`) and run FIX=1, or run FIX=1 ADOPT=1"),
            "{}",
            check.fix
        );
        assert!(matches!(&plan_repairs(&empty, "acme", "bridge", &recorded(0), false)[..], [Repair::Refuse(_)]));
        let adopted = plan_repairs(&empty, "acme", "bridge", &recorded(0), true);
        assert!(
            matches!(&adopted[..], [Repair::Recreate { expected, subnet, .. }] if expected.name == "acme_database"
                && *subnet == Some("10.201.0.128/26".parse().unwrap())),
            "{adopted:?}"
        );
        let in_use = by_hand(&[], vec![container("db", &["acme_database"], &[])]);
        let refused = plan_repairs(&in_use, "acme", "bridge", &recorded(0), true);
        assert!(matches!(&refused[..], [Repair::Refuse(m)] if m.contains("containers attached (db)")), "{refused:?}");
        let other = by_hand(&[(LABEL_CLIENT, "beta")], vec![]);
        let refused = plan_repairs(&other, "acme", "bridge", &recorded(0), true);
        assert!(matches!(&refused[..], [Repair::Refuse(m)] if m.contains("client beta's")), "{refused:?}");
    }

    #[test]
    fn a_different_subnet_is_a_warning() {
        let snapshot = Snapshot::new(client_networks("acme", 0), vec![], &ids(&["acme"]));
        let check = snapshot.network_check("acme", "bridge", &recorded(7));
        assert_eq!(check.status, Status::Warn);
        assert!(check.summary.contains("client.env records 10.201.7.0/26"), "{}", check.summary);
    }

    #[test]
    fn a_light_snapshot_checks_everything_but_subnets() {
        let listed: Vec<NetworkSummary> = client_networks("acme", 0)
            .into_iter()
            .map(|n| NetworkSummary {
                id: n.id,
                name: n.name,
                driver: n.driver,
                scope: n.scope,
                internal: n.internal,
                labels: n.labels,
            })
            .collect();
        let mut listed = listed;
        listed[2].internal = false;
        let snapshot = Snapshot::from_list(listed, vec![], vec![], &ids(&["acme"]));
        assert!(!snapshot.detailed);
        // Recorded subnets that differ cannot be seen, drift can.
        let check = snapshot.network_check("acme", "bridge", &recorded(9));
        assert_eq!(check.status, Status::Fail);
        assert_eq!(check.summary, "acme_database is not internal");
        assert!(check.evidence[0]["subnets"].is_null());
    }

    #[test]
    fn overlay_expectations() {
        let mut networks = client_networks("acme", 0);
        for n in &mut networks {
            n.driver = "overlay".into();
            n.attachable = true;
        }
        networks[0].attachable = false;
        let snapshot = Snapshot::new(networks, vec![], &ids(&["acme"]));
        let check = snapshot.network_check("acme", "overlay", &recorded(0));
        assert!(check.summary.contains("acme_frontend is not attachable"), "{}", check.summary);
        let check = snapshot.network_check("acme", "bridge", &recorded(0));
        assert!(check.summary.contains("uses driver overlay instead of bridge"), "{}", check.summary);
    }

    #[test]
    fn cross_tenant_containers() {
        let mut networks = client_networks("a", 0);
        networks.extend(client_networks("b", 1));
        networks.push(network("other", &[], false, "172.30.0.0/16"));
        let containers = vec![
            container("bridge-x", &["a_backend", "b_backend"], &[]),
            container("traefik", &["a_frontend", "b_frontend"], &[(LABEL_SHARED_INGRESS, "true")]),
            container("sneaky-proxy", &["a_frontend", "b_database"], &[(LABEL_SHARED_INGRESS, "true")]),
            container("guest", &["a_database"], &[(LABEL_CLIENT, "b")]),
            container("app", &["a_backend", "other"], &[(LABEL_CLIENT, "a")]),
            container("agency-probe-1", &["a_backend"], &[("agency.probe", "true")]),
        ];
        let snapshot = Snapshot::new(networks, containers, &ids(&["a", "b"]));
        let found = snapshot.cross_tenant("a");
        let names: Vec<&str> = found.iter().map(|f| f.container.as_str()).collect();
        assert_eq!(names, vec!["bridge-x", "guest", "sneaky-proxy", "traefik"]);
        assert!(found[0].reason.contains("attached to networks of a and b"));
        assert!(found[1].reason.contains("labelled agency.client=b"));
        assert!(found[2].reason.contains("not only to frontend networks"), "{}", found[2].reason);
        assert_eq!(found[2].fix, "docker network disconnect b_database sneaky-proxy");
        assert!(found[3].reason.is_empty() && found[3].shared_ingress);
        let check = snapshot.cross_tenant_check("a");
        assert_eq!(check.status, Status::Fail);
        assert!(check.fix.contains("docker network disconnect b_backend bridge-x"), "{}", check.fix);
        assert!(check.fix.contains("docker network disconnect a_database guest"), "{}", check.fix);
        assert!(!check.fix.contains("a_frontend"), "{}", check.fix);
        assert_eq!(check.evidence["shared_ingress"][0], "traefik");
        // From b's side: the same, the guest included (it is b's container in a's network).
        let from_b = snapshot.cross_tenant("b");
        let names: Vec<&str> = from_b.iter().map(|f| f.container.as_str()).collect();
        assert_eq!(names, vec!["bridge-x", "guest", "sneaky-proxy", "traefik"]);
        // The ingress is told to leave b's database, never the frontend it may use.
        assert_eq!(from_b[2].fix, "docker network disconnect b_database sneaky-proxy");
    }

    #[test]
    fn tenants_sharing_any_other_network_are_joined() {
        let mut networks = client_networks("a", 0);
        networks.extend(client_networks("b", 1));
        networks.extend(client_networks("c", 2));
        let containers = vec![
            // a's container (by its network) and b's (by its label) on a plain network.
            container("a-app", &["a_backend", "plain-x"], &[]),
            container("b-app", &["plain-x"], &[(LABEL_CLIENT, "b")]),
            // Two tenants on Docker's default bridge.
            container("b-old", &["b_backend", "bridge"], &[]),
            container("c-old", &["bridge"], &[(LABEL_CLIENT, "c")]),
            // Alone with no tenant: fine.
            container("c-tool", &["c_backend", "tools"], &[]),
            container("infra", &["tools"], &[]),
            // A spoofed probe label exempts nothing.
            container("fake-probe", &["c_database", "plain-x"], &[("agency.probe", "true")]),
            // Traefik on frontends and a proxy network of its own: allowed.
            container("traefik", &["a_frontend", "b_frontend", "proxy"], &[(LABEL_SHARED_INGRESS, "true")]),
            container("c-web", &["c_frontend", "none"], &[]),
        ];
        let snapshot = Snapshot::new(networks, containers, &ids(&["a", "b", "c"]));
        let names = |client: &str| -> Vec<String> {
            snapshot.cross_tenant(client).into_iter().filter(|f| !f.reason.is_empty()).map(|f| f.container).collect()
        };
        assert_eq!(names("a"), vec!["a-app"]);
        assert_eq!(names("b"), vec!["b-app", "b-old"]);
        assert_eq!(names("c"), vec!["c-old", "fake-probe"]);
        let a = &snapshot.cross_tenant("a")[0];
        assert!(
            a.reason.contains("a-app shares network plain-x with containers of b (b-app), c (fake-probe)"),
            "{}",
            a.reason
        );
        assert_eq!(a.fix, "docker network disconnect plain-x a-app");
        assert_eq!(snapshot.cross_tenant_check("a").status, Status::Fail);
        let b_old = snapshot.cross_tenant("b").into_iter().find(|f| f.container == "b-old").unwrap();
        assert!(b_old.reason.contains("shares network bridge with containers of c (c-old)"), "{}", b_old.reason);
    }

    #[test]
    fn networks_of_clients_from_other_roots_count_by_label() {
        let mut networks = client_networks("a", 0);
        networks.extend(client_networks("elsewhere", 1));
        let snapshot =
            Snapshot::new(networks, vec![container("x", &["a_backend", "elsewhere_backend"], &[])], &ids(&["a"]));
        assert_eq!(snapshot.cross_tenant_check("a").status, Status::Fail);
    }

    #[test]
    fn probe_plan_and_verdicts() {
        let mut networks = client_networks("a", 0);
        let mut b = client_networks("b", 1);
        b[2].containers.push(Endpoint {
            container_id: "c1".into(),
            name: "b-db".into(),
            ipv4: Some(Ipv4Addr::new(10, 201, 1, 130)),
        });
        networks.extend(b);
        let snapshot = Snapshot::new(networks, vec![], &ids(&["a", "b"]));
        let host = HostNetInfo {
            addresses: vec![
                HostAddress { interface: "lo".into(), address: Ipv4Addr::LOCALHOST, prefix: 8 },
                HostAddress { interface: "eth0".into(), address: Ipv4Addr::new(192, 0, 2, 2), prefix: 24 },
                HostAddress { interface: "docker0".into(), address: Ipv4Addr::new(172, 17, 0, 1), prefix: 16 },
                HostAddress { interface: "br-1234".into(), address: Ipv4Addr::new(10, 201, 1, 1), prefix: 26 },
            ],
            default_gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
            proc_net_tcp: vec![],
        };
        let settings = ProbeSettings {
            image: "img".into(),
            ports: vec![22],
            beyond: ProbeTargets { addresses: vec![Ipv4Addr::new(198, 51, 100, 7)], gateway: true },
            timeout_secs: 1,
            max_tenant_targets: 8,
        };
        let plans = plan_probes(&snapshot, "a", &host, &settings);
        assert_eq!(plans.len(), 4);
        let db = &plans[2];
        assert_eq!(db.network, "a_database");
        assert!(db.internal);
        assert_eq!(db.tenants, vec![(Ipv4Addr::new(10, 201, 1, 130), "b-db".into(), "b".into())]);
        let host_addresses: Vec<Ipv4Addr> = db.host.iter().map(|(a, _)| *a).collect();
        assert_eq!(
            host_addresses,
            vec![
                Ipv4Addr::new(10, 201, 0, 129),
                Ipv4Addr::new(192, 0, 2, 2),
                Ipv4Addr::new(172, 17, 0, 1),
                Ipv4Addr::new(10, 201, 1, 1)
            ]
        );
        assert_eq!(db.beyond, vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 7)]);
        // By default nothing beyond the host is tried, not even its gateway.
        let defaults = ProbeSettings { beyond: ProbeTargets::default(), ..settings.clone() };
        assert!(plan_probes(&snapshot, "a", &host, &defaults).iter().all(|p| p.beyond.is_empty()));

        // As measured: the host answers, the other tenant and the outside do not.
        let answer = |plan: &ProbePlan| -> anyhow::Result<ProbeReport> {
            Ok(ProbeReport {
                network: plan.network.clone(),
                source: vec![],
                results: plan
                    .spec
                    .targets
                    .iter()
                    .map(|t| {
                        let host = plan.host.iter().any(|(a, _)| *a == t.address);
                        let open = t.address == Ipv4Addr::new(192, 0, 2, 2);
                        ProbeResult {
                            address: t.address,
                            icmp: Some(host),
                            tcp: t
                                .ports
                                .iter()
                                .map(|p| {
                                    (
                                        *p,
                                        if open {
                                            TcpOutcome::Open
                                        } else if host {
                                            TcpOutcome::Refused
                                        } else {
                                            TcpOutcome::Timeout
                                        },
                                    )
                                })
                                .collect(),
                        }
                    })
                    .collect(),
            })
        };
        let reports: Vec<_> = plans.iter().map(answer).collect();
        let none: Vec<Option<anyhow::Result<ProbeReport>>> = plans.iter().map(|_| None).collect();
        assert!(plans.iter().zip(&reports).all(|(p, r)| retry_spec(p, r.as_ref().unwrap()).is_none()));
        let check = probe_check(&plans, &reports, &none);
        assert_eq!(check.status, Status::Warn, "{check:?}");
        assert!(
            check
                .summary
                .starts_with("every network, internal ones too, reaches the host's own addresses (10.201.0.1, "),
            "{}",
            check.summary
        );
        assert!(check.summary.contains("listening there: 22 on 192.0.2.2"), "{}", check.summary);
        assert_eq!(check.evidence[2]["other_tenants"][0]["reachable"], false);

        // Another tenant answering fails, and so does an internal network reaching outside.
        let mut reports = reports;
        if let Ok(report) = &mut reports[2] {
            for r in &mut report.results {
                if r.address == Ipv4Addr::new(10, 201, 1, 130) || r.address == Ipv4Addr::new(198, 51, 100, 7) {
                    r.icmp = Some(true);
                }
            }
        }
        let retry = retry_spec(&plans[2], reports[2].as_ref().unwrap()).expect("a reach to confirm");
        let retried: Vec<Ipv4Addr> = retry.targets.iter().map(|t| t.address).collect();
        assert_eq!(retried, vec![Ipv4Addr::new(10, 201, 1, 130), Ipv4Addr::new(198, 51, 100, 7)]);
        // Confirmed on the second try: a failure.
        let mut retries: Vec<Option<anyhow::Result<ProbeReport>>> = plans.iter().map(|_| None).collect();
        retries[2] = Some(Ok(reports[2].as_ref().unwrap().clone()));
        let check = probe_check(&plans, &reports, &retries);
        assert_eq!(check.status, Status::Fail);
        assert!(check.summary.contains("a_database reaches b-db of client b"), "{}", check.summary);
        assert!(
            check.summary.contains("internal network a_database reaches beyond the host (198.51.100.7)"),
            "{}",
            check.summary
        );
        // Not reached on the second try: the transient window of a network create, a warning.
        let mut quiet = reports[2].as_ref().unwrap().clone();
        for r in &mut quiet.results {
            r.icmp = Some(false);
            r.tcp.clear();
        }
        retries[2] = Some(Ok(quiet));
        let check = probe_check(&plans, &reports, &retries);
        assert_eq!(check.status, Status::Warn, "{check:?}");
        assert!(check.summary.contains("a_database reached b-db of client b (10.201.1.130) once"), "{}", check.summary);
        assert_eq!(check.evidence[2]["other_tenants"][0]["reached_once"], true);
    }

    #[test]
    fn ports_and_drivers() {
        assert_eq!(parse_ports("22, 80,443").unwrap(), vec![22, 80, 443]);
        assert!(parse_ports("http").is_err());
        assert!(check_driver("overlay").is_ok());
        assert!(check_driver("macvlan").is_err());
        let recorded = BTreeMap::from([(ENV_DRIVER.to_string(), "overlay".to_string())]);
        assert_eq!(client_driver(&recorded, ""), "overlay");
        assert_eq!(client_driver(&BTreeMap::new(), ""), "bridge");
        assert_eq!(client_driver(&BTreeMap::new(), "overlay"), "overlay");
    }
}
