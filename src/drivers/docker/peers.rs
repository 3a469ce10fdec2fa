//! The containers of a `PROBE=1` run besides the probes themselves ([`Docker::run_probe`]):
//! peers (a TCP service on a client's networks, the positive control and the counter of forged
//! pings that arrive), and what a probe does when it also forges (sends with a source address
//! it does not own). All are throwaway: `--rm`, labelled `agency.probe=true`, never pulled, and
//! each peer ends by itself after [`PEER_LIFETIME_SECS`] should the runner be killed before it
//! removes them.

use std::{collections::BTreeMap, net::Ipv4Addr, sync::atomic::Ordering};

use anyhow::{Result, anyhow};

use super::{Docker, LABEL_MANAGED, LABEL_PROBE, PROBE_COUNTER, classify_connect_failure, docker_line};

/// The TCP port a peer answers on.
pub(crate) const PEER_PORT: u16 = 20007;

/// A peer stops by itself after this long.
pub(crate) const PEER_LIFETIME_SECS: u32 = 180;

/// A peer answers every connection with its network namespace's ICMP counters (two
/// `Icmp:` lines of `/proc/net/snmp`), so whoever connects learns how many echo requests
/// reached it. Nothing but the probe's forger knows its address.
fn peer_script() -> String {
    format!("exec timeout {PEER_LIFETIME_SECS} nc -ll -p {PEER_PORT} -e grep ^Icmp: /proc/net/snmp")
}

/// What a forging probe does after its tries: take `forged` as its only address, then send
/// `count` echo requests to `target` and `count` UDP datagrams (tftp read requests) to the host
/// at `gateway:host_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgerSpec {
    pub gateway: Ipv4Addr,
    pub forged: Ipv4Addr,
    pub target: Ipv4Addr,
    /// `None`: nothing is sent to the host.
    pub host_port: Option<u16>,
    pub count: u32,
}

/// The forger's script: it prints `forger ready` once its address is set, `forger done` at
/// the end (or `forger setup failed`). The address change needs NET_ADMIN, in the forger's own
/// namespace only; what it then sends is what any container with NET_RAW can send through a
/// raw socket.
pub(crate) fn forger_script(spec: &ForgerSpec) -> String {
    let (forged, gateway, target, count) = (spec.forged, spec.gateway, spec.target, spec.count);
    let mut script = format!(
        "if ! {{ ip addr flush dev eth0 && ip addr add {forged}/32 dev eth0 && ip route add {gateway} dev eth0 \
         && ip route add default via {gateway} dev eth0; }}; then echo 'forger setup failed'; exit 0; fi\n\
         echo 'forger ready'\n\
         ping -q -c {count} -i 0.02 -W 1 {target} >/dev/null 2>&1 &\n"
    );
    // The datagrams go out while the pings do: each part is mostly a wait for answers.
    if let Some(port) = spec.host_port {
        script.push_str(&format!(
            "for i in $(seq {count}); do timeout 1 tftp -g -r x -l /dev/null {gateway} {port} >/dev/null 2>&1 & done\n"
        ));
    }
    script.push_str("wait\necho 'forger done'\n");
    script
}

fn probe_name(kind: &str) -> String {
    format!("agency-{kind}-{}-{}", std::process::id(), PROBE_COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn throwaway_args(name: &str, network: &str, labels: &BTreeMap<String, String>) -> Vec<String> {
    let mut args: Vec<String> =
        ["run", "--rm", "--pull", "never", "--name", name, "--network", network, "--cap-drop", "ALL", "--read-only"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    for (key, value) in [(LABEL_PROBE, "true"), (LABEL_MANAGED, "true")]
        .into_iter()
        .chain(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        args.push("--label".into());
        args.push(format!("{key}={value}"));
    }
    args
}

impl Docker {
    /// Starts a peer on `networks` (detached): on the first, then connected to each other one
    /// (a connect costs the engine a quarter of a start). The container id, and why it is not on
    /// a network it could not be connected to; an error when it did not start.
    pub(crate) fn start_peer(
        &self,
        image: &str,
        networks: &[String],
        labels: &BTreeMap<String, String>,
    ) -> Result<(String, BTreeMap<String, String>)> {
        let network = networks.first().ok_or_else(|| anyhow!("a peer needs a network"))?;
        let name = probe_name("peer");
        let mut args = throwaway_args(&name, network, labels);
        args.insert(1, "-d".into());
        args.extend(["--entrypoint", "/bin/sh", image, "-c"].iter().map(|s| s.to_string()));
        args.push(peer_script());
        let output = self.run(&self.command(args))?;
        if !output.success() {
            return Err(match classify_connect_failure(&output.stderr) {
                Some(connect) => connect.into(),
                None => anyhow!(
                    "the probe's peer on network {network} did not start (image {image}): {}",
                    docker_line(&output.stderr)
                ),
            });
        }
        let id = output.stdout.trim().to_string();
        let mut not_connected = BTreeMap::new();
        for other in &networks[1..] {
            let output = self.run(&self.command(["network", "connect", other, &id]))?;
            if !output.success() {
                not_connected.insert(
                    other.clone(),
                    format!("the probe's peer could not join network {other}: {}", docker_line(&output.stderr)),
                );
            }
        }
        Ok((id, not_connected))
    }

    /// The IPv4 address of each container on each of its networks (one `docker inspect`).
    pub(crate) fn container_addresses(&self, ids: &[&str]) -> Result<BTreeMap<String, BTreeMap<String, Ipv4Addr>>> {
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let format = "{{.Id}}{{range $name, $n := .NetworkSettings.Networks}} {{$name}}={{$n.IPAddress}}{{end}}";
        let mut args = vec!["inspect", "--type", "container", "--format", format, "--"];
        args.extend_from_slice(ids);
        let output = self.checked("inspect", &args)?;
        Ok(parse_addresses(&output.stdout))
    }

    /// Removes containers, running or not (`docker rm -f`); ones already gone are fine.
    pub(crate) fn remove_containers(&self, ids: &[&str]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut args = vec!["rm", "-f", "--"];
        args.extend_from_slice(ids);
        let output = self.run(&self.command(&args))?;
        let unexpected = output
            .stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .find(|l| !l.contains("No such container") && !l.contains("is already in progress"));
        match unexpected {
            Some(line) if !output.success() => Err(self.failure("rm", line)),
            _ => Ok(()),
        }
    }
}

/// Reads `ID net=addr net=addr` lines.
fn parse_addresses(stdout: &str) -> BTreeMap<String, BTreeMap<String, Ipv4Addr>> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let id = words.next()?.to_string();
            let networks = words
                .filter_map(|w| w.split_once('='))
                .filter_map(|(network, address)| Some((network.to_string(), address.parse().ok()?)))
                .collect();
            Some((id, networks))
        })
        .collect()
}

/// The `InEchos` counter of the two `Icmp:` lines a peer answers with.
pub(crate) fn parse_in_echos(text: &str) -> Option<u64> {
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("Icmp:")).collect();
    let names: Vec<&str> = lines.first()?.split_whitespace().collect();
    let values: Vec<&str> = lines.get(1)?.split_whitespace().collect();
    let at = names.iter().position(|n| *n == "InEchos")?;
    values.get(at)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forger_script_and_peer_answers() {
        let spec = ForgerSpec {
            gateway: Ipv4Addr::new(10, 201, 0, 193),
            forged: Ipv4Addr::new(10, 201, 1, 190),
            target: Ipv4Addr::new(10, 201, 1, 130),
            host_port: Some(40000),
            count: 20,
        };
        let script = forger_script(&spec);
        assert!(
            script.starts_with("if ! { ip addr flush dev eth0 && ip addr add 10.201.1.190/32 dev eth0"),
            "{script}"
        );
        assert!(script.contains("ping -q -c 20 -i 0.02 -W 1 10.201.1.130"), "{script}");
        assert!(script.contains("tftp -g -r x -l /dev/null 10.201.0.193 40000"), "{script}");
        let no_host = forger_script(&ForgerSpec { host_port: None, ..spec });
        assert!(!no_host.contains("tftp"), "{no_host}");
        assert_eq!(parse_in_echos("Icmp: InMsgs InErrors InEchos\nIcmp: 5 0 3\n"), Some(3));
        assert_eq!(parse_in_echos("garbage"), None);
        let addresses = parse_addresses("abc a_backend=10.201.0.66 b=x\ndef\n");
        assert_eq!(addresses["abc"]["a_backend"], Ipv4Addr::new(10, 201, 0, 66));
        assert!(addresses["def"].is_empty());
    }
}
