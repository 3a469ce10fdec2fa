//! Runs `PROBE=1`: peers first (one per client on all its probed networks, one on every network
//! a forger sends into), then the probes (those on routed tiers forge too), the second looks,
//! the counters, and the peers removed again at the end of each batch of clients, also when
//! something fails. Where they run is the [`Place`]'s: network namespaces of the runner when
//! the engine is on this machine, throwaway containers otherwise.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Result;

use super::{
    Answers, FORGED_COUNT, Forged, Forgery, NetworkProbe,
    namespaces::Namespaces,
    place::{Containers, Place},
};
use crate::{
    drivers::docker::{Docker, ForgerSpec, HostNetInfo, ProbeReport, ProbeSpec},
    tenant::check::Check,
    tenant::isolation::{ProbeSettings, Snapshot},
};

/// Datagrams that reach a socket of the runner on every host address, counted by source.
struct HostSocket {
    port: u16,
    counts: Arc<Mutex<HashMap<Ipv4Addr, u64>>>,
    stop: Arc<AtomicBool>,
}

impl HostSocket {
    fn listen() -> Result<Self> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let port = socket.local_addr()?.port();
        let (counts, stop) = (Arc::new(Mutex::new(HashMap::new())), Arc::new(AtomicBool::new(false)));
        let (c, s) = (counts.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buffer = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if let Ok((_, SocketAddr::V4(from))) = socket.recv_from(&mut buffer) {
                    *c.lock().unwrap_or_else(|e| e.into_inner()).entry(*from.ip()).or_default() += 1;
                }
            }
        });
        Ok(Self { port, counts, stop })
    }

    fn received(&self, source: Ipv4Addr) -> u64 {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).get(&source).copied().unwrap_or(0)
    }
}

impl Drop for HostSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// True when `address` (a bridge's gateway) is an address of this machine: the engine runs
/// here, so the runner itself can connect to containers and count what reaches the host.
fn is_local(address: Ipv4Addr) -> bool {
    UdpSocket::bind((address, 0)).is_ok()
}

/// The subnets the host routes to interfaces of its own (see [`super::listeners::on_host_routes`]),
/// read now; `None` when the engine is not here (its routes are not this machine's).
fn on_host_routes(local: bool) -> Option<Vec<crate::tenant::subnet::Ipv4Net>> {
    if !local {
        return None;
    }
    let exits: Vec<String> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .filter(|e| e.path().join("device").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let text = std::fs::read_to_string("/proc/net/route").ok()?;
    let default_via: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (words.get(1) == Some(&"00000000")).then(|| words[0].to_string())
        })
        .collect();
    let exits: Vec<String> = exits.into_iter().chain(default_via).collect();
    Some(super::listeners::on_host_routes(&text, &exits))
}

/// Keeps the targets that stay on this machine as it is now: its own addresses and addresses
/// of networks it still routes itself, plus what the operator named beyond the host. The
/// snapshot is seconds old when probes start, and a network that went since (another run
/// removed it) would have its addresses routed off the host.
fn stay_on_host(spec: &mut ProbeSpec, beyond: &[Ipv4Addr], routes: Option<&[crate::tenant::subnet::Ipv4Net]>) {
    let Some(routes) = routes else { return };
    spec.targets
        .retain(|t| beyond.contains(&t.address) || is_local(t.address) || routes.iter().any(|r| r.contains(t.address)));
}

/// The `probe` check of every client of `ids`, in order.
pub fn probe_clients(
    docker: &Docker,
    snapshot: &Snapshot,
    ids: &[String],
    host: &HostNetInfo,
    settings: &ProbeSettings,
    allowed: &BTreeSet<u16>,
    known: &[String],
) -> Result<Vec<(String, Check)>> {
    // The engine is here when a bridge's gateway is one of this machine's addresses.
    let local = ids
        .iter()
        .flat_map(|id| snapshot.client_networks(id))
        .flat_map(|n| n.gateways.iter().copied())
        .next()
        .is_some_and(is_local);
    let mut place: Box<dyn Place + '_> = match local.then(|| Namespaces::new(snapshot)).flatten() {
        Some(namespaces) => Box::new(namespaces),
        None => Box::new(Containers { docker, image: settings.image.clone(), peers: Vec::new() }),
    };
    let mut checks = Vec::new();
    for batch in ids.chunks(place.batch_size()) {
        let batch = Batch { snapshot, ids: batch, host, settings, allowed, known, local };
        let result = batch.probe(place.as_mut());
        place.end_batch();
        checks.extend(result?);
    }
    Ok(checks)
}

/// Clients probed together, and what their probes need to know.
struct Batch<'a> {
    snapshot: &'a Snapshot,
    ids: &'a [String],
    host: &'a HostNetInfo,
    settings: &'a ProbeSettings,
    allowed: &'a BTreeSet<u16>,
    known: &'a [String],
    /// The runner is on the engine's host: it counts and connects itself.
    local: bool,
}

impl Batch<'_> {
    fn probe(&self, place: &mut dyn Place) -> Result<Vec<(String, Check)>> {
        let Batch { snapshot, ids, host, settings, allowed, known, local } = *self;
        let mut plans: Vec<Vec<NetworkProbe>> =
            ids.iter().map(|id| super::plan(snapshot, id, host, settings, allowed, known)).collect();
        let forgeries = super::plan_forgeries(snapshot, ids, known);
        let avoid: Vec<Ipv4Addr> = forgeries.iter().map(|f| f.forged).collect();

        // Peers: one per client on all its probed networks (the controls), one per forger on
        // the network it forges into (so what that one counts came from that forger alone).
        let mut jobs: Vec<Vec<(Peer, String)>> = plans
            .iter()
            .filter(|probes| !probes.is_empty())
            .map(|probes| {
                probes.iter().map(|p| (Peer::Control(p.base.network.clone()), p.base.network.clone())).collect()
            })
            .collect();
        jobs.extend(forgeries.iter().enumerate().map(|(i, f)| vec![(Peer::Receiver(i), f.target_network.clone())]));
        let owned: Vec<(String, Vec<String>)> = jobs
            .iter()
            .map(|job| {
                let networks: Vec<String> = job.iter().map(|(_, network)| network.clone()).collect();
                let owner = snapshot.owner(&networks[0]).map(|(c, _)| c.to_string()).unwrap_or_default();
                (owner, networks)
            })
            .collect();
        let mut peer_errors: BTreeMap<Peer, String> = BTreeMap::new();
        let mut peer_address: BTreeMap<Peer, Ipv4Addr> = BTreeMap::new();
        for (job, started) in jobs.into_iter().zip(place.start_peers(&owned, &avoid)) {
            match started {
                Ok((addresses, not_connected)) => {
                    for (key, network) in job {
                        match (not_connected.get(&network), addresses.get(&network)) {
                            (Some(error), _) => drop(peer_errors.insert(key, error.clone())),
                            (None, Some(address)) => drop(peer_address.insert(key, *address)),
                            (None, None) => {}
                        }
                    }
                }
                Err(error) => {
                    let error = format!("{error:#}");
                    peer_errors.extend(job.into_iter().map(|(key, _)| (key, error.clone())));
                }
            }
        }
        for probe in plans.iter_mut().flatten() {
            probe.peer = peer_address.get(&Peer::Control(probe.base.network.clone())).copied();
        }
        let socket = if local { Some(HostSocket::listen()?) } else { None };

        // The probes, forging too on routed tiers, then their second looks (see
        // `isolation::retry_spec`).
        let flat: Vec<&NetworkProbe> = plans.iter().flatten().collect();
        let routes = on_host_routes(local);
        let specs: Vec<ProbeSpec> = flat
            .iter()
            .map(|p| {
                let mut spec = p.spec();
                stay_on_host(&mut spec, &p.base.beyond, routes.as_deref());
                spec.forge =
                    forgeries.iter().enumerate().find(|(_, f)| f.network == p.base.network).and_then(|(i, f)| {
                        Some(ForgerSpec {
                            gateway: f.gateway,
                            forged: f.forged,
                            target: *peer_address.get(&Peer::Receiver(i))?,
                            host_port: socket.as_ref().map(|s| s.port),
                            count: FORGED_COUNT,
                        })
                    });
                spec
            })
            .collect();
        let reports = place.run_probes(&specs, &avoid);
        let retries = second_looks(place, &flat, &reports, local, &avoid);
        std::thread::sleep(Duration::from_millis(300));

        // Counters and host→container, from the runner (when the engine is here).
        let answered: BTreeMap<Peer, Option<u64>> = if local {
            let (keys, addresses): (Vec<Peer>, Vec<Ipv4Addr>) =
                peer_address.iter().map(|(k, a)| (k.clone(), *a)).unzip();
            keys.into_iter().zip(place.ask_peers(&addresses)).collect()
        } else {
            BTreeMap::new()
        };
        let forged: Vec<Forged> = forgeries
            .iter()
            .enumerate()
            .map(|(i, forgery)| {
                let key = Peer::Receiver(i);
                let result = match (peer_errors.get(&key), peer_address.contains_key(&key)) {
                    (Some(error), _) => Err(format!("no peer on {}: {error}", forgery.target_network)),
                    (None, false) => Err(format!("the peer on {} has no address", forgery.target_network)),
                    (None, true) => {
                        let probe = flat.iter().position(|p| p.base.network == forgery.network);
                        let ran = probe.map(|i| match &reports[i] {
                            Ok(report) => report.forged.clone().unwrap_or(Err("it was not asked to forge".into())),
                            Err(error) => Err(format!("{error:#}")),
                        });
                        count(forgery, ran, answered.get(&key).copied(), socket.as_ref())
                    }
                };
                Forged { forgery: forgery.clone(), result }
            })
            .collect();
        drop(socket);

        let control_errors: BTreeMap<String, String> = peer_errors
            .into_iter()
            .filter_map(|(key, error)| match key {
                Peer::Control(network) => Some((network, error)),
                Peer::Receiver(_) => None,
            })
            .collect();
        let host_to_peer: BTreeMap<String, Option<bool>> = peer_address
            .keys()
            .filter_map(|key| match key {
                Peer::Control(network) => Some((
                    network.clone(),
                    if local { Some(answered.get(key).copied().flatten().is_some()) } else { None },
                )),
                Peer::Receiver(_) => None,
            })
            .collect();
        let mut reports = reports.into_iter();
        let mut retries = retries.into_iter();
        let mut checks = Vec::new();
        for (id, probes) in ids.iter().zip(&plans) {
            let reports: Vec<_> = reports.by_ref().take(probes.len()).collect();
            let retries: Vec<_> = retries.by_ref().take(probes.len()).collect();
            let forged: Vec<Forged> = forged.iter().filter(|f| f.forgery.client == *id).cloned().collect();
            let answers = Answers {
                probes,
                forgeable: forged.iter().any(|f| f.forgery.client == *id) || !probes.iter().any(|p| !p.base.internal),
                reports: &reports,
                retries: &retries,
                peer_errors: &control_errors,
                host_to_peer: &host_to_peer,
                forged: &forged,
            };
            checks.push((id.clone(), super::judge(&answers)));
        }
        Ok(checks)
    }
}

/// Tries every forbidden reach twice more, 0.5 s apart: it counts only when every try reaches it.
fn second_looks(
    place: &mut dyn Place,
    flat: &[&NetworkProbe],
    reports: &[Result<ProbeReport>],
    local: bool,
    avoid: &[Ipv4Addr],
) -> Vec<Option<Result<ProbeReport>>> {
    let mut retries: Vec<Option<Result<ProbeReport>>> = flat.iter().map(|_| None).collect();
    let mut pending: Vec<(usize, ProbeSpec)> = flat
        .iter()
        .zip(reports)
        .enumerate()
        .filter_map(|(i, (probe, report))| {
            report.as_ref().ok().and_then(|r| super::retry_spec(probe, r)).map(|s| (i, s))
        })
        .collect();
    for _ in 0..2 {
        if pending.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        let routes = on_host_routes(local);
        let specs: Vec<ProbeSpec> = pending
            .iter()
            .map(|(i, spec)| {
                let mut spec = spec.clone();
                stay_on_host(&mut spec, &flat[*i].base.beyond, routes.as_deref());
                spec
            })
            .collect();
        let mut next = Vec::new();
        for ((i, _), result) in pending.iter().zip(place.run_probes(&specs, avoid)) {
            if let Ok(report) = &result
                && let Some(spec) = super::retry_spec(flat[*i], report)
            {
                next.push((*i, spec));
            }
            retries[*i] = Some(result);
        }
        pending = next;
    }
    retries
}

/// What one forging probe delivered: into its peer on the target network (that peer's echo
/// counter; nothing else sends it echo requests) and to the runner's socket.
fn count(
    forgery: &Forgery,
    ran: Option<Result<(), String>>,
    answered: Option<Option<u64>>,
    socket: Option<&HostSocket>,
) -> Result<(Option<u64>, Option<u64>), String> {
    ran.ok_or("no probe ran on its network")??;
    let Some(socket) = socket else { return Ok((None, None)) };
    let into =
        answered.flatten().ok_or_else(|| format!("its peer on {} did not answer the host", forgery.target_network))?;
    Ok((Some(into), Some(socket.received(forgery.forged))))
}

/// A peer of a batch: the control on a probed network, or the receiver of forgery `i`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Peer {
    Control(String),
    Receiver(usize),
}
