//! Where a batch's peers and probes run ([`Place`]): throwaway containers of the engine
//! ([`Containers`], any engine, a remote one too), or network namespaces of the runner on the
//! engine's bridges ([`super::namespaces::Namespaces`], when the engine is on this machine and
//! the runner may make them). Both try the same targets and answer with the same reports, so
//! the plan and the judgement know nothing of where they ran.

use std::{
    collections::BTreeMap,
    io::Read,
    net::{Ipv4Addr, SocketAddr, TcpStream},
    time::Duration,
};

use anyhow::Result;

use crate::drivers::docker::{Docker, LABEL_CLIENT, PEER_PORT, ProbeReport, ProbeSpec, parse_in_echos};

/// A started peer: its address on each network it joined, and why it is not on the others.
pub(super) type Joined = (BTreeMap<String, Ipv4Addr>, BTreeMap<String, String>);

pub(super) trait Place {
    /// Clients probed together.
    fn batch_size(&self) -> usize;

    /// Starts a peer per job (its owner, its networks), in the order of `jobs`; `avoid` are
    /// addresses none of them may take (the batch's forged ones).
    fn start_peers(&mut self, jobs: &[(String, Vec<String>)], avoid: &[Ipv4Addr]) -> Vec<Result<Joined>>;

    /// Runs the probes, results in the order of `specs`.
    fn run_probes(&mut self, specs: &[ProbeSpec], avoid: &[Ipv4Addr]) -> Vec<Result<ProbeReport>>;

    /// Per address of a peer, asked from the host: the echo requests that peer received;
    /// `None` when it did not answer (host→container does not work).
    fn ask_peers(&self, addresses: &[Ipv4Addr]) -> Vec<Option<u64>>;

    /// Removes what the batch started.
    fn end_batch(&mut self);
}

/// Clients probed together in containers: their peers, probes and forgers run at once.
/// Bounded so that a batch ends well within [`crate::drivers::docker::PEER_LIFETIME_SECS`].
const BATCH: usize = 8;

/// Containers started at once (measured here: a `docker run` ≈ 0.7 s alone, eight at once
/// ≈ 0.4 s each; a `network connect` ≈ 0.17 s).
const PARALLEL: usize = 8;

/// Probes run at once: more than [`PARALLEL`], as most of a probe is its wait for the answers
/// of blocked paths (the timeout, then the forging), not the engine's work.
const PROBES_AT_ONCE: usize = 2 * PARALLEL;

/// Peers and probes as throwaway containers; the peers are removed at the end of a batch or
/// when this drops, and end by themselves should the runner be killed.
pub(super) struct Containers<'a> {
    pub docker: &'a Docker,
    pub image: String,
    pub peers: Vec<String>,
}

impl Place for Containers<'_> {
    fn batch_size(&self) -> usize {
        BATCH
    }

    fn start_peers(&mut self, jobs: &[(String, Vec<String>)], _avoid: &[Ipv4Addr]) -> Vec<Result<Joined>> {
        let started = crate::parallel::map(jobs, PARALLEL, |(owner, networks)| {
            self.docker.start_peer(&self.image, networks, &BTreeMap::from([(LABEL_CLIENT.to_string(), owner.clone())]))
        });
        self.peers.extend(started.iter().filter_map(|r| r.as_ref().ok()).map(|(id, _)| id.clone()));
        let ids: Vec<&str> = self.peers.iter().map(String::as_str).collect();
        let addresses = self.docker.container_addresses(&ids);
        started
            .into_iter()
            .map(|started| {
                let (id, not_connected) = started?;
                let on = match &addresses {
                    Ok(addresses) => addresses.get(&id).cloned().unwrap_or_default(),
                    Err(error) => anyhow::bail!("{error:#}"),
                };
                Ok((on.into_iter().filter(|(n, _)| !not_connected.contains_key(n)).collect(), not_connected))
            })
            .collect()
    }

    fn run_probes(&mut self, specs: &[ProbeSpec], _avoid: &[Ipv4Addr]) -> Vec<Result<ProbeReport>> {
        self.docker.run_probes(specs, PROBES_AT_ONCE)
    }

    fn ask_peers(&self, addresses: &[Ipv4Addr]) -> Vec<Option<u64>> {
        crate::parallel::map(addresses, PARALLEL, |address| ask_peer(*address))
    }

    fn end_batch(&mut self) {
        let ids: Vec<&str> = self.peers.iter().map(String::as_str).collect();
        let _ = self.docker.remove_containers(&ids);
        self.peers.clear();
    }
}

impl Drop for Containers<'_> {
    fn drop(&mut self) {
        self.end_batch();
    }
}

/// What a peer container answers: its count of echo requests received; `None` when it did
/// not answer.
fn ask_peer(address: Ipv4Addr) -> Option<u64> {
    let mut stream =
        TcpStream::connect_timeout(&SocketAddr::from((address, PEER_PORT)), Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    parse_in_echos(&text)
}
