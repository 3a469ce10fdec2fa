//! Peers and probes as network namespaces of the runner (the engine is on this machine): a
//! probe is a namespace with one veth on its network's bridge, an address of that subnet no
//! container uses (the highest free ones: Docker allocates from the bottom) and its default
//! route via the gateway; a peer is a namespace with a veth on each of its networks and a
//! listening socket. The runner sends a probe's packets itself, from a thread inside the
//! namespace ([`crate::drivers::netns::attempts`]). Nothing is started by the engine.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::fd::OwnedFd,
    time::Duration,
};

use anyhow::{Context, Result, anyhow};

use super::place::{Joined, Place};
use crate::{
    drivers::{
        docker::{NetworkDetails, PEER_PORT, ProbeReport, ProbeSpec, parse_in_echos},
        netns::{self, Link, Namespace, attempts},
    },
    tenant::isolation::Snapshot,
};

/// Clients probed together: each holds six of the host's neighbour entries (its peers'
/// addresses, which the host connects to), and the host's table starts dropping entries past
/// 512 (Linux's default `gc_thresh2`), so a batch stays well below that.
const BATCH: usize = 50;

/// Namespaces joined at once (each costs two `ip` processes and the kernel's work).
const PARALLEL: usize = 16;

/// The highest address of `network`'s subnet that no container or gateway holds, nor is `taken`.
pub(super) fn free_address(network: &NetworkDetails, taken: impl Fn(&Ipv4Addr) -> bool) -> Option<Ipv4Addr> {
    let subnet = network.subnets.first()?;
    let used: BTreeSet<Ipv4Addr> = network.containers.iter().filter_map(|e| e.ipv4).collect();
    (1..subnet.size().saturating_sub(1))
        .map(|k| Ipv4Addr::from(u32::from(subnet.broadcast()) - k as u32))
        .find(|a| !used.contains(a) && !network.gateways.contains(a) && !taken(a))
}

struct PeerNamespace {
    namespace: Namespace,
    addresses: Vec<Ipv4Addr>,
    _listener: OwnedFd,
}

pub(super) struct Namespaces<'a> {
    snapshot: &'a Snapshot,
    veths: netns::Veths,
    /// Addresses this run's namespaces took, per batch.
    taken: BTreeSet<Ipv4Addr>,
    probes: BTreeMap<String, (Namespace, Ipv4Addr)>,
    peers: Vec<PeerNamespace>,
}

impl<'a> Namespaces<'a> {
    /// `None` when this runner cannot make namespaces (it is not root, or has no `ip`).
    pub fn new(snapshot: &'a Snapshot) -> Option<Self> {
        if !rustix::process::geteuid().is_root() {
            return None;
        }
        raise_open_files();
        let veths = netns::Veths::new().ok()?;
        Some(Self { snapshot, veths, taken: BTreeSet::new(), probes: BTreeMap::new(), peers: Vec::new() })
    }

    /// A link on `network` at a free address (taken from now on), with the default route via
    /// the gateway when `route`.
    fn link(&mut self, network: &str, avoid: &[Ipv4Addr], route: bool) -> Result<Link> {
        let details = self.snapshot.network(network).ok_or_else(|| anyhow!("network {network} is gone"))?;
        let bridge = details.bridge.clone().ok_or_else(|| anyhow!("network {network} has no bridge on this host"))?;
        let taken = |a: &Ipv4Addr| self.taken.contains(a) || avoid.contains(a);
        let address = free_address(details, taken).ok_or_else(|| anyhow!("network {network} has no free address"))?;
        self.taken.insert(address);
        let prefix = details.subnets[0].prefix();
        Ok(Link { bridge, address, prefix, gateway: route.then(|| details.gateways.first().copied()).flatten() })
    }
}

/// Each probe and peer holds a few files (its namespace, raw sockets, a listener): a batch
/// passes the usual soft limit of 1024, which a process may raise to its hard one.
fn raise_open_files() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum });
}

impl Place for Namespaces<'_> {
    fn batch_size(&self) -> usize {
        BATCH
    }

    fn start_peers(&mut self, jobs: &[(String, Vec<String>)], avoid: &[Ipv4Addr]) -> Vec<Result<Joined>> {
        let planned: Vec<Result<Vec<(String, Link)>>> = jobs
            .iter()
            .map(|(_, networks)| networks.iter().map(|n| Ok((n.clone(), self.link(n, avoid, false)?))).collect())
            .collect();
        let veths = &self.veths;
        let started = crate::parallel::map(&planned, PARALLEL, |planned| -> Result<(PeerNamespace, Joined)> {
            let planned = planned.as_ref().map_err(|e| anyhow!("{e:#}"))?;
            let namespace = veths.join(&planned.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>())?;
            let listener = namespace.run_inside(|| attempts::listen(PEER_PORT))??;
            let on: BTreeMap<String, Ipv4Addr> = planned.iter().map(|(n, l)| (n.clone(), l.address)).collect();
            let addresses = on.values().copied().collect();
            Ok((PeerNamespace { namespace, addresses, _listener: listener }, (on, BTreeMap::new())))
        });
        started
            .into_iter()
            .map(|started| {
                let (peer, joined) = started.context("the probe's peer namespace")?;
                self.peers.push(peer);
                Ok(joined)
            })
            .collect()
    }

    fn run_probes(&mut self, specs: &[ProbeSpec], avoid: &[Ipv4Addr]) -> Vec<Result<ProbeReport>> {
        let new: BTreeSet<&str> =
            specs.iter().map(|s| s.network.as_str()).filter(|n| !self.probes.contains_key(*n)).collect();
        let planned: Vec<(String, Result<Link>)> =
            new.into_iter().map(|n| (n.to_string(), self.link(n, avoid, true))).collect();
        let veths = &self.veths;
        let joined = crate::parallel::map(&planned, PARALLEL, |(_, link)| match link {
            Ok(link) => veths.join(std::slice::from_ref(link)).map(|n| (n, link.address)),
            Err(error) => Err(anyhow!("{error:#}")),
        });
        let mut failed: BTreeMap<String, String> = BTreeMap::new();
        for ((network, _), result) in planned.into_iter().zip(joined) {
            match result {
                Ok(probe) => drop(self.probes.insert(network, probe)),
                Err(error) => drop(failed.insert(network, format!("{error:#}"))),
            }
        }
        let probes = &self.probes;
        // Every probe at once: each mostly waits for the answers of blocked paths.
        crate::parallel::map(specs, specs.len(), |spec| {
            let Some((namespace, address)) = probes.get(&spec.network) else {
                let error = failed.get(&spec.network).cloned().unwrap_or_default();
                return Err(anyhow!("the probe namespace on network {} was not made: {error}", spec.network));
            };
            let timeout = Duration::from_secs(u64::from(spec.timeout_secs.max(1)));
            namespace.run_inside(|| -> Result<ProbeReport> {
                // Forged first: what arrives is counted after the tries, which take the timeout.
                let forged = spec.forge.as_ref().map(|f| attempts::forge(f).map_err(|e| format!("{e:#}")));
                let results = attempts::try_targets(*address, &spec.targets, timeout)?;
                Ok(ProbeReport { network: spec.network.clone(), source: vec![*address], results, forged })
            })?
        })
    }

    fn ask_peers(&self, addresses: &[Ipv4Addr]) -> Vec<Option<u64>> {
        crate::parallel::map(addresses, addresses.len(), |address| {
            let peer = self.peers.iter().find(|p| p.addresses.contains(address))?;
            // Tried twice: with a few hundred peers at once the host's first SYN to one is now
            // and then lost while it resolves the address (measured at 50 clients; a second
            // connect always went through).
            let connect =
                || TcpStream::connect_timeout(&SocketAddr::from((*address, PEER_PORT)), Duration::from_secs(2));
            connect().or_else(|_| connect()).ok()?;
            let counters = peer.namespace.run_inside(attempts::icmp_counters).ok()?.ok()?;
            parse_in_echos(&counters)
        })
    }

    fn end_batch(&mut self) {
        self.probes.clear();
        self.peers.clear();
        self.veths.await_removal();
        self.taken.clear();
    }
}

impl Drop for Namespaces<'_> {
    fn drop(&mut self) {
        self.end_batch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::docker::Endpoint;

    #[test]
    fn a_namespace_takes_the_highest_address_nothing_holds() {
        let network = NetworkDetails {
            id: "n".into(),
            name: "a_backend".into(),
            created: String::new(),
            driver: "bridge".into(),
            scope: "local".into(),
            internal: false,
            attachable: false,
            ingress: false,
            subnets: vec!["10.201.0.64/26".parse().unwrap()],
            gateways: vec![Ipv4Addr::new(10, 201, 0, 65)],
            labels: BTreeMap::new(),
            containers: vec![Endpoint {
                container_id: "c".into(),
                name: "app".into(),
                ipv4: Some(Ipv4Addr::new(10, 201, 0, 126)),
            }],
            bridge: Some("agb-0ac90040".into()),
        };
        let mut taken = BTreeSet::from([Ipv4Addr::new(10, 201, 0, 125)]);
        assert_eq!(free_address(&network, |a| taken.contains(a)), Some(Ipv4Addr::new(10, 201, 0, 124)));
        taken.extend((66..=124).map(|d| Ipv4Addr::new(10, 201, 0, d)));
        assert_eq!(free_address(&network, |a| taken.contains(a)), None, "neither the gateway nor the network address");
    }
}
