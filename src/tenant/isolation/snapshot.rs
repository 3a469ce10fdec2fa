//! One look at the engine: every network and container, indexed for per-client questions,
//! and the network check of status.

use super::*;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::json;

use crate::{
    drivers::docker::{ContainerSummary, LABEL_CLIENT, LABEL_MANAGED, LABEL_TIER, NetworkDetails, NetworkSummary},
    tenant::check::{Check, Status},
    tenant::subnet::Ipv4Net,
};

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
    pub(super) inspected: BTreeSet<String>,
    pub(super) by_name: HashMap<String, usize>,
    pub(super) containers_by_network: HashMap<String, Vec<usize>>,
    /// Network name → (client, tier), from labels or from the `<client>_<tier>` name of a known client.
    pub(super) owners: HashMap<String, (String, String)>,
    /// Client → its network names.
    pub(super) client_networks: HashMap<String, Vec<String>>,
    /// Client → the containers that join it with another client (see [`Snapshot::cross_tenant`]).
    pub(super) cross: HashMap<String, Vec<CrossTenant>>,
    /// Names that more than one network carries (two racing creates), with their count.
    pub(super) shared_names: HashMap<String, usize>,
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
                fixes.push(format!(
                    "removes the extra {} by id (`docker network rm {}` would remove only one), keeping the one with \
                     the recorded subnet, when no container is attached",
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
