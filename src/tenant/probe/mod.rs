//! `PROBE=1` beyond pings between tenants ([`crate::tenant::isolation::plan_probes`]): the paths SPEC
//! §9 measured open on this engine, each tried with real packets and each a failure when open,
//! and the traffic that must keep working, tried too (a probe that reaches nothing proves
//! nothing when its own network is broken):
//!
//! - other tenants' **published ports** on the host's addresses, from every routed tier;
//! - the host's **listening ports**, as the host's `/proc/net/tcp` and `tcp6` list them, on
//!   the host's addresses, from every tier (internal ones too);
//! - **forged sources**: the probe on each routed tier sends echo requests into another
//!   tenant's internal network, and UDP to the host, from an address inside that internal
//!   subnet (a raw socket, as NET_RAW allows any container); what arrives is counted where it
//!   lands (the receiving peer's `/proc/net/snmp`, a socket of the runner);
//! - **controls**: a probe connects to a peer on its own network, and the host connects to
//!   every peer; either failing fails the check.
//!
//! This module plans and judges (pure); [`run`] runs it, in the places of [`place`].

pub mod listeners;
mod namespaces;
mod place;
pub mod run;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use serde_json::json;

use crate::{
    drivers::docker::{
        HostNetInfo, LABEL_CLIENT, LABEL_SHARED_INGRESS, PEER_PORT, ProbeReport, ProbeSpec, ProbeTarget, TcpOutcome,
    },
    tenant::check::{Check, Status},
    tenant::isolation::{self, ProbePlan, ProbeSettings, Snapshot},
};
use listeners::{Listener, parse_proc_net_tcp, parse_published};

/// At most this many of the host's listening ports are tried on one address.
pub const MAX_LISTENERS: usize = 200;

/// Forged echo requests (and UDP datagrams to the host) each forger sends.
pub const FORGED_COUNT: u32 = 20;

/// Another tenant's published port, as a probe tries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedTarget {
    pub address: Ipv4Addr,
    pub port: u16,
    pub client: String,
    pub container: String,
}

/// Everything a probe on one network tries.
#[derive(Debug, Clone)]
pub struct NetworkProbe {
    /// Other tenants' containers, the host's addresses, beyond the host (isolation's plan).
    pub base: ProbePlan,
    /// Other tenants' published ports (routed tiers only).
    pub published: Vec<PublishedTarget>,
    /// The host's listening ports on the host's addresses: (address, port).
    pub listeners: Vec<(Ipv4Addr, u16)>,
    /// The peer on this network, once it runs (the intra-client control).
    pub peer: Option<Ipv4Addr>,
}

impl NetworkProbe {
    /// The probe container's spec: isolation's targets with the ports added.
    pub fn spec(&self) -> ProbeSpec {
        let mut spec = self.base.spec.clone();
        let extra = self
            .published
            .iter()
            .map(|p| (p.address, p.port))
            .chain(self.listeners.iter().copied())
            .chain(self.peer.map(|p| (p, PEER_PORT)));
        add_ports(&mut spec.targets, extra);
        spec
    }

    /// The (address, port) pairs that must not connect, with what each is.
    fn forbidden(&self) -> Vec<(Ipv4Addr, u16, String)> {
        let published = self.published.iter().map(|p| {
            (
                p.address,
                p.port,
                format!("client {}'s published port {} on {} ({})", p.client, p.port, p.address, p.container),
            )
        });
        let listening = self
            .listeners
            .iter()
            .filter(|(a, p)| !self.published.iter().any(|x| x.address == *a && x.port == *p))
            .map(|(a, p)| (*a, *p, format!("the host's port {p} on {a}")));
        published.chain(listening).collect()
    }
}

/// Adds TCP ports to the targets, to the target of the same address when there is one.
fn add_ports(targets: &mut Vec<ProbeTarget>, pairs: impl IntoIterator<Item = (Ipv4Addr, u16)>) {
    for (address, port) in pairs {
        match targets.iter_mut().find(|t| t.address == address) {
            Some(target) if !target.ports.contains(&port) => target.ports.push(port),
            Some(_) => {}
            None => targets.push(ProbeTarget { address, icmp: false, ports: vec![port] }),
        }
    }
}

/// The host's addresses a probe on `network` tries ports on: the network's own gateway and the
/// host's addresses that are no other network's (bridges come and go; a vanished address
/// would be routed off the host), as read at the start of the probe.
fn host_addresses(snapshot: &Snapshot, plan: &ProbePlan, host: &HostNetInfo) -> Vec<Ipv4Addr> {
    let own: Vec<Ipv4Addr> = snapshot.network(&plan.network).map(|n| n.gateways.clone()).unwrap_or_default();
    let mut addresses = own.clone();
    for (address, _) in &plan.host {
        // An address of the host itself, not of a bridge (another network's, which may go).
        let on_host = host.addresses.iter().any(|h| {
            h.address == *address
                && !["br-", crate::drivers::docker::BRIDGE_PREFIX, "veth"].iter().any(|p| h.interface.starts_with(p))
        });
        let other_network = snapshot
            .networks
            .iter()
            .any(|n| n.name != "bridge" && n.name != plan.network && n.subnets.iter().any(|s| s.contains(*address)));
        if on_host && !other_network && !addresses.contains(address) {
            addresses.push(*address);
        }
    }
    addresses
}

/// Leaves out of a plan the containers and gateways of clients of other roots.
fn keep_this_root(snapshot: &Snapshot, base: &mut ProbePlan, known: &[String]) {
    let foreign = |address: &Ipv4Addr| {
        snapshot.networks.iter().any(|n| {
            snapshot.owner(&n.name).is_some_and(|(c, _)| !known.iter().any(|k| k == c))
                && n.subnets.iter().any(|s| s.contains(*address))
        })
    };
    base.tenants.retain(|(address, _, owner)| known.contains(owner) && !foreign(address));
    base.host.retain(|(address, _)| !foreign(address));
    let kept: Vec<Ipv4Addr> = base
        .tenants
        .iter()
        .map(|t| t.0)
        .chain(base.host.iter().map(|h| h.0))
        .chain(base.beyond.iter().copied())
        .collect();
    base.spec.targets.retain(|t| kept.contains(&t.address));
}

/// The published ports of containers of other clients of this root: (container, owner,
/// port). A container belongs to a client by its label or its networks; the shared ingress
/// and probes to none.
fn others_published(
    snapshot: &Snapshot,
    client: &str,
    known: &[String],
) -> Vec<(String, String, listeners::Published)> {
    let mut found = Vec::new();
    for container in &snapshot.containers {
        if container.is_probe() || container.state != "running" || container.label(LABEL_SHARED_INGRESS) == Some("true")
        {
            continue;
        }
        let owner = container
            .label(LABEL_CLIENT)
            .map(str::to_string)
            .or_else(|| container.networks.iter().find_map(|n| snapshot.owner(n).map(|(c, _)| c.to_string())));
        let Some(owner) = owner.filter(|o| o != client && known.iter().any(|k| k == o)) else { continue };
        for published in parse_published(&container.ports) {
            found.push((container.name.clone(), owner.clone(), published));
        }
    }
    found
}

/// The probes of one client: isolation's plan, plus the ports above. `allowed` are the
/// `FIREWALL_HOST_ALLOW` TCP ports, which client networks may reach on the host. Only clients
/// of this root (`known`) are probed as other tenants: another root's runner removes its
/// networks at any moment, and an address of a network gone would be routed off the host.
pub fn plan(
    snapshot: &Snapshot,
    client: &str,
    host: &HostNetInfo,
    settings: &ProbeSettings,
    allowed: &BTreeSet<u16>,
    known: &[String],
) -> Vec<NetworkProbe> {
    let listening: Vec<Listener> = parse_proc_net_tcp(host.proc_net_tcp.iter().map(String::as_str));
    let published = others_published(snapshot, client, known);
    // The client's own published ports are docker-proxy listeners too: reaching them is its own traffic.
    let own: BTreeSet<u16> = snapshot
        .containers
        .iter()
        .filter(|c| c.label(LABEL_CLIENT) == Some(client))
        .flat_map(|c| parse_published(&c.ports).into_iter().map(|p| p.port))
        .collect();
    isolation::plan_probes(snapshot, client, host, settings)
        .into_iter()
        .map(|mut base| {
            keep_this_root(snapshot, &mut base, known);
            let addresses = host_addresses(snapshot, &base, host);
            let mut targets = Vec::new();
            if !base.internal {
                for (container, owner, p) in &published {
                    let on: Vec<Ipv4Addr> = match p.address {
                        None => addresses.clone(),
                        Some(a) if host.addresses.iter().any(|h| h.address == a) => vec![a],
                        Some(_) => vec![],
                    };
                    for address in on {
                        let target = PublishedTarget {
                            address,
                            port: p.port,
                            client: owner.clone(),
                            container: container.clone(),
                        };
                        if !targets.contains(&target) {
                            targets.push(target);
                        }
                    }
                }
            }
            let mut ports = Vec::new();
            for address in &addresses {
                let on_address = listening
                    .iter()
                    .filter(|l| l.listens_on(*address) && !allowed.contains(&l.port) && !own.contains(&l.port))
                    .map(|l| (*address, l.port));
                let mut on_address: Vec<(Ipv4Addr, u16)> = on_address.take(MAX_LISTENERS).collect();
                on_address.sort();
                on_address.dedup();
                ports.extend(on_address);
            }
            NetworkProbe { base, published: targets, listeners: ports, peer: None }
        })
        .collect()
}

/// The second look at what the first try reached that it must not: isolation's (other
/// tenants, beyond the host from an internal tier) and the forbidden ports that connected.
pub fn retry_spec(probe: &NetworkProbe, report: &ProbeReport) -> Option<ProbeSpec> {
    let mut targets = isolation::retry_spec(&probe.base, report).map(|s| s.targets).unwrap_or_default();
    let open: Vec<(Ipv4Addr, u16)> =
        probe.forbidden().into_iter().filter(|(a, p, _)| is_open(report, *a, *p)).map(|(a, p, _)| (a, p)).collect();
    if targets.is_empty() && open.is_empty() {
        return None;
    }
    add_ports(&mut targets, open);
    Some(ProbeSpec { targets, ..probe.base.spec.clone() })
}

fn is_open(report: &ProbeReport, address: Ipv4Addr, port: u16) -> bool {
    report.result(address).is_some_and(|r| r.tcp.iter().any(|(p, o)| *p == port && *o == TcpOutcome::Open))
}

/// A forged-source try: a forger on `network` (a routed tier of `client`) takes `forged`, an
/// address inside `target_network` (another tenant's internal tier), and sends into it and
/// to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgery {
    pub client: String,
    pub network: String,
    pub gateway: Ipv4Addr,
    pub forged: Ipv4Addr,
    pub target_client: String,
    pub target_network: String,
}

/// What a forgery delivered: `None` when it could not be counted (a remote engine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forged {
    pub forgery: Forgery,
    pub result: Result<(Option<u64>, Option<u64>), String>,
}

/// The forgeries of `clients` (probed together): each client's routed tiers forge into one
/// internal network of another client of this root (`known`: its client ids), no internal
/// network taken by two clients (so what arrives there is one client's); the probed clients'
/// databases first, then the others'. Clients of other roots on the engine are left alone:
/// a forgery starts a container on the network it sends into.
pub fn plan_forgeries(snapshot: &Snapshot, clients: &[String], known: &[String]) -> Vec<Forgery> {
    let internal_of = |client: &str| {
        let networks = snapshot.client_networks(client);
        let mut internal: Vec<_> = networks.into_iter().filter(|n| n.internal && !n.subnets.is_empty()).collect();
        internal.sort_by_key(|n| snapshot.owner(&n.name).map(|(_, t)| t) != Some("database"));
        internal.first().map(|n| n.name.clone())
    };
    let others: Vec<String> = known.iter().filter(|k| !clients.contains(k)).filter_map(|k| internal_of(k)).collect();
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let mut forgeries = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let rotated = (1..clients.len()).filter_map(|k| internal_of(&clients[(i + k) % clients.len()]));
        let Some(target) = rotated.chain(others.iter().cloned()).find(|t| !taken.contains(t)) else { continue };
        let Some(target_details) = snapshot.network(&target) else { continue };
        let subnet = target_details.subnets[0];
        let used: Vec<Ipv4Addr> = target_details.containers.iter().filter_map(|e| e.ipv4).collect();
        let mut candidates = (1..subnet.size().saturating_sub(2))
            .map(|k| Ipv4Addr::from(u32::from(subnet.broadcast()) - k as u32))
            .filter(|a| !used.contains(a) && !target_details.gateways.contains(a));
        let target_client = snapshot.owner(&target).map(|(c, _)| c.to_string()).unwrap_or_default();
        for network in snapshot.client_networks(client).into_iter().filter(|n| !n.internal) {
            let (Some(gateway), Some(forged)) = (network.gateways.first(), candidates.next()) else { continue };
            forgeries.push(Forgery {
                client: client.clone(),
                network: network.name.clone(),
                gateway: *gateway,
                forged,
                target_client: target_client.clone(),
                target_network: target.clone(),
            });
        }
        taken.insert(target);
    }
    forgeries
}

/// The answers of one client's probes.
pub struct Answers<'a> {
    pub probes: &'a [NetworkProbe],
    /// False when no other client of the root had an internal network to forge into.
    pub forgeable: bool,
    pub reports: &'a [anyhow::Result<ProbeReport>],
    pub retries: &'a [Option<anyhow::Result<ProbeReport>>],
    /// Network → why its peer did not run.
    pub peer_errors: &'a BTreeMap<String, String>,
    /// Network → whether the host connected to its peer; `None` when not tried (remote engine).
    pub host_to_peer: &'a BTreeMap<String, Option<bool>>,
    pub forged: &'a [Forged],
}

/// The client's `probe` check: isolation's verdicts, plus a failure for every forbidden port
/// that connected (on every try), every forged packet that arrived, and every control that
/// did not work.
pub fn judge(answers: &Answers) -> Check {
    let bases: Vec<ProbePlan> = answers.probes.iter().map(|p| p.base.clone()).collect();
    let base = isolation::probe_check(&bases, answers.reports, answers.retries);
    let mut failures: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut evidence: Vec<serde_json::Value> = base.evidence.as_array().cloned().unwrap_or_default();
    for (index, (probe, report)) in answers.probes.iter().zip(answers.reports).enumerate() {
        let network = &probe.base.network;
        let Ok(report) = report else { continue };
        let retry = answers.retries.get(index).and_then(|r| r.as_ref());
        let confirmed = |a: Ipv4Addr, p: u16| match retry {
            Some(Ok(second)) => is_open(second, a, p),
            _ => true,
        };
        let mut reached = Vec::new();
        let mut once = Vec::new();
        for (address, port, what) in probe.forbidden() {
            if is_open(report, address, port) {
                if confirmed(address, port) { reached.push(what) } else { once.push(what) }
            }
        }
        if !reached.is_empty() {
            failures.push(format!("{network} reaches {}", reached.join(", ")));
        }
        if !once.is_empty() {
            warnings.push(format!("{network} reached {} once, not on a second try", once.join(", ")));
        }
        let intra = match (probe.peer, answers.peer_errors.get(network)) {
            (_, Some(error)) => {
                failures.push(format!("traffic within {network} could not be checked: {error}"));
                json!({ "error": error })
            }
            (Some(peer), None) => {
                let works = is_open(report, peer, PEER_PORT);
                if !works {
                    failures.push(format!(
                        "traffic within {network} does not work (its probe could not connect to a container on it), \
                         so its probe proves nothing"
                    ));
                }
                json!({ "peer": peer.to_string(), "works": works })
            }
            (None, None) => json!(null),
        };
        let host = answers.host_to_peer.get(network).copied().flatten();
        if host == Some(false) {
            failures.push(format!("the host cannot connect to a container on {network}"));
        }
        let forged: Vec<serde_json::Value> = answers
            .forged
            .iter()
            .filter(|f| f.forgery.network == *network)
            .map(|f| forged_evidence(f, &mut failures, &mut warnings))
            .collect();
        let extra = json!({
            "published": probe.published.iter().map(|p| json!({ "address": p.address.to_string(), "port": p.port,
                "client": p.client, "container": p.container, "open": is_open(report, p.address, p.port) })).collect::<Vec<_>>(),
            "listeners": probe.listeners.iter().filter(|(a, p)| is_open(report, *a, *p))
                .map(|(a, p)| format!("{a}:{p}")).collect::<Vec<_>>(),
            "listeners_tried": probe.listeners.len(),
            "intra_client": intra,
            "host_to_container": host,
            "forged": forged,
        });
        if let Some(entry) = evidence.iter_mut().find(|e| e["network"] == network.as_str())
            && let (Some(entry), Some(extra)) = (entry.as_object_mut(), extra.as_object())
        {
            entry.extend(extra.clone());
        }
    }
    if !answers.forgeable {
        warnings.push("forged sources: no other client of this root has an internal network to send into".into());
    }
    if answers.host_to_peer.values().any(Option::is_none) {
        warnings.push("host→container and forged sources not checked: the engine is not on this host".into());
    }
    if base.status == Status::Fail {
        failures.push(base.summary.clone());
    } else if !base.summary.is_empty() && base.status == Status::Warn {
        warnings.push(base.summary.clone());
    }
    let status = if !failures.is_empty() {
        Status::Fail
    } else if !warnings.is_empty() {
        Status::Warn
    } else {
        base.status
    };
    let summary = if failures.is_empty() && warnings.is_empty() {
        format!("{}; forged sources, published ports and the host's listening ports blocked", base.summary)
    } else {
        failures.into_iter().chain(warnings).collect::<Vec<_>>().join("; ")
    };
    Check::new("probe", status, summary).evidence(json!(evidence))
}

fn forged_evidence(forged: &Forged, failures: &mut Vec<String>, warnings: &mut Vec<String>) -> serde_json::Value {
    let f = &forged.forgery;
    let (into, to_host) = match &forged.result {
        Err(error) => {
            failures.push(format!("the forged-source probe on {} did not run: {error}", f.network));
            return json!({ "forged": f.forged.to_string(), "error": error });
        }
        Ok(counts) => *counts,
    };
    if let Some(n) = into.filter(|n| *n > 0) {
        failures.push(format!(
            "{n} of {FORGED_COUNT} forged packets from {} (source {}, inside {}) reached a container on {} of client {}",
            f.network, f.forged, f.target_network, f.target_network, f.target_client
        ));
    }
    if let Some(n) = to_host.filter(|n| *n > 0) {
        failures.push(format!(
            "{n} forged UDP datagrams from {} (source {}; {FORGED_COUNT} sent, resends of a container's tftp too) reached the host",
            f.network, f.forged
        ));
    }
    if into.is_none() && to_host.is_none() {
        warnings.push(format!("forged packets from {} were sent but not counted", f.network));
    }
    json!({ "forged": f.forged.to_string(), "into": f.target_network, "client": f.target_client,
            "delivered_into_container": into, "delivered_to_host": to_host, "sent": FORGED_COUNT })
}

#[cfg(test)]
mod tests;
