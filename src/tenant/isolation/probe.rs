//! `PROBE=1`: what a probe container should try from each network, and what its answers
//! mean for the status check.

use super::*;

use std::{collections::BTreeMap, net::Ipv4Addr};

use serde_json::json;

use crate::{
    drivers::docker::{HostNetInfo, LABEL_CLIENT, ProbeReport, ProbeSpec, ProbeTarget},
    format::validate::ProbeTargets,
    tenant::check::{Check, Status},
};

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
            // Their gateways are covered by the gateway targets; docker0's stays.
            let other_bridge = snapshot
                .networks
                .iter()
                .any(|n| n.name != "bridge" && n.subnets.iter().any(|s| s.contains(address.address)));
            if address.address.is_loopback()
                || other_bridge
                || address.interface.starts_with("br-")
                || address.interface.starts_with(crate::drivers::docker::BRIDGE_PREFIX)
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
            network: network.name.clone(),
            internal,
            spec: ProbeSpec {
                image: settings.image.clone(),
                network: network.name.clone(),
                targets,
                timeout_secs: settings.timeout_secs,
                labels: BTreeMap::from([(LABEL_CLIENT.to_string(), client.to_string())]),
                forge: None,
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
