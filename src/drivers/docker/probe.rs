//! Throwaway probe containers that try to reach addresses, and the host's own addresses seen
//! from the host network.

use super::*;

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    sync::atomic::{AtomicUsize, Ordering},
};

use anyhow::{Result, anyhow};

/// One address a probe tries to reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    pub address: Ipv4Addr,
    /// Send one ICMP echo.
    pub icmp: bool,
    /// TCP ports to connect to.
    pub ports: Vec<u16>,
}

/// A throwaway container on `network` that tries to reach `targets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Needs busybox applets `sh`, `ping`, `nc`, `timeout`, `ip`.
    pub image: String,
    pub network: String,
    pub targets: Vec<ProbeTarget>,
    /// Per-attempt timeout in seconds (all attempts run at once).
    pub timeout_secs: u32,
    /// Extra labels for the probe container (it always carries `agency.probe=true`).
    pub labels: BTreeMap<String, String>,
    /// After its tries the probe forges (with NET_ADMIN too, in its own namespace, to take the
    /// forged address): one container does both, since a container start is most of a probe.
    pub forge: Option<ForgerSpec>,
}

/// How a TCP connection attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOutcome {
    /// Connected: something listens there.
    Open,
    /// The host answered with a reset: reachable, nothing listening.
    Refused,
    /// No answer within the timeout (dropped by a firewall or nobody there).
    Timeout,
    /// ICMP unreachable / no route.
    Unreachable,
    /// Some other error.
    Error,
}

impl TcpOutcome {
    /// True when a packet reached the host and came back.
    pub(crate) fn reached(self) -> bool {
        matches!(self, TcpOutcome::Open | TcpOutcome::Refused)
    }
}

/// What a probe found for one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub address: Ipv4Addr,
    /// `Some(true)` when an ICMP echo came back; `None` when not tried.
    pub icmp: Option<bool>,
    pub tcp: Vec<(u16, TcpOutcome)>,
}

impl ProbeResult {
    /// True when any packet reached the address and came back.
    pub fn reachable(&self) -> bool {
        self.icmp == Some(true) || self.tcp.iter().any(|(_, outcome)| outcome.reached())
    }

    /// Ports that accepted a connection.
    pub(crate) fn open_ports(&self) -> Vec<u16> {
        self.tcp.iter().filter(|(_, o)| *o == TcpOutcome::Open).map(|(p, _)| *p).collect()
    }
}

/// What one probe container found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    pub network: String,
    /// The probe's own addresses on the network.
    pub source: Vec<Ipv4Addr>,
    pub results: Vec<ProbeResult>,
    /// Whether the forging asked for ran to its end (`None`: none was asked for).
    pub forged: Option<Result<(), String>>,
}

impl ProbeReport {
    pub fn result(&self, address: Ipv4Addr) -> Option<&ProbeResult> {
        self.results.iter().find(|r| r.address == address)
    }
}

/// The shell script a probe container runs: every attempt in the background at once, one
/// result line per attempt. A port counts as open only when nc ran its `-e` program, i.e. it
/// connected: an nc that `timeout` had to stop (a starved machine) proves nothing.
pub(crate) fn probe_script(targets: &[ProbeTarget], timeout_secs: u32) -> String {
    let t = timeout_secs.max(1);
    let mut script = format!(
        "T={t}\n\
         icmp() {{ if ping -c 1 -W $T \"$1\" >/dev/null 2>&1; then echo \"icmp $1 ok\"; else echo \"icmp $1 fail\"; fi; }}\n\
         tcp() {{ r=$(timeout $((T+1)) nc -w $T \"$1\" \"$2\" -e sh -c 'echo connected >&2' </dev/null 2>&1 >/dev/null); \
         case \"$r\" in *connected*) o=open;; *efused*) o=refused;; *'timed out'*|'') o=timeout;; \
         *nreachable*|*'No route'*) o=unreachable;; *) o=error;; esac; \
         echo \"tcp $1 $2 $o\"; }}\n\
         ip -4 -o addr | while read n i f a rest; do [ \"$i\" = lo ] || echo \"self $a\"; done\n"
    );
    for target in targets {
        if target.icmp {
            script.push_str(&format!("icmp {} &\n", target.address));
        }
        for port in &target.ports {
            script.push_str(&format!("tcp {} {port} &\n", target.address));
        }
    }
    script.push_str("wait\n");
    script
}

/// Parses a probe's output into a report, in the order of `targets`.
pub(crate) fn parse_probe_output(network: &str, targets: &[ProbeTarget], stdout: &str) -> ProbeReport {
    let mut source = Vec::new();
    let mut results: Vec<ProbeResult> =
        targets.iter().map(|t| ProbeResult { address: t.address, icmp: None, tcp: Vec::new() }).collect();
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["self", address] => {
                if let Some(address) = address.split('/').next().and_then(|a| a.parse().ok()) {
                    source.push(address);
                }
            }
            ["icmp", address, outcome] => {
                if let Some(result) = results.iter_mut().find(|r| r.address.to_string() == *address) {
                    result.icmp = Some(*outcome == "ok");
                }
            }
            ["tcp", address, port, outcome] => {
                let Ok(port) = port.parse::<u16>() else {
                    continue;
                };
                let outcome = match *outcome {
                    "open" => TcpOutcome::Open,
                    "refused" => TcpOutcome::Refused,
                    "timeout" => TcpOutcome::Timeout,
                    "unreachable" => TcpOutcome::Unreachable,
                    _ => TcpOutcome::Error,
                };
                if let Some(result) = results.iter_mut().find(|r| r.address.to_string() == *address) {
                    result.tcp.push((port, outcome));
                }
            }
            _ => {}
        }
    }
    for (result, target) in results.iter_mut().zip(targets) {
        // Keep the ports in the order asked for.
        result.tcp.sort_by_key(|(port, _)| target.ports.iter().position(|p| p == port));
    }
    ProbeReport { network: network.to_string(), source, results, forged: None }
}

/// Parses `ip -4 -o addr`, `ip -4 route` and `/proc/net/tcp{,6}`, separated by `---` lines.
pub(crate) fn parse_host_net_info(stdout: &str) -> HostNetInfo {
    let mut info = HostNetInfo::default();
    let mut part = 0;
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"---") {
            part += 1;
            continue;
        }
        if part >= 2 {
            info.proc_net_tcp.push(line.to_string());
        } else if part == 1 {
            if let ["default", "via", gateway, ..] = words.as_slice() {
                info.default_gateway = info.default_gateway.or_else(|| gateway.parse().ok());
            }
        } else if let [_, interface, "inet", cidr, ..] = words.as_slice()
            && let Some((address, prefix)) = cidr.split_once('/')
            && let (Ok(address), Ok(prefix)) = (address.parse(), prefix.parse())
        {
            info.addresses.push(HostAddress { interface: interface.to_string(), address, prefix });
        }
    }
    info
}

pub(super) static PROBE_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Docker {
    /// Runs one throwaway probe container (`--rm`, no capabilities but NET_RAW for ping, never
    /// pulls) on `spec.network` and reports what it reached.
    pub fn run_probe(&self, spec: &ProbeSpec) -> Result<ProbeReport> {
        let name = format!("agency-probe-{}-{}", std::process::id(), PROBE_COUNTER.fetch_add(1, Ordering::Relaxed));
        let mut args: Vec<String> = [
            "run",
            "--rm",
            "--pull",
            "never",
            "--name",
            &name,
            "--network",
            &spec.network,
            "--cap-drop",
            "ALL",
            "--cap-add",
            "NET_RAW",
            "--read-only",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if spec.forge.is_some() {
            args.extend(["--cap-add".into(), "NET_ADMIN".into()]);
        }
        args.push("--label".into());
        args.push(format!("{LABEL_PROBE}=true"));
        args.push("--label".into());
        args.push(format!("{LABEL_MANAGED}=true"));
        for (key, value) in &spec.labels {
            args.push("--label".into());
            args.push(format!("{key}={value}"));
        }
        args.extend(["--entrypoint", "/bin/sh", &spec.image, "-c"].iter().map(|s| s.to_string()));
        let mut script = probe_script(&spec.targets, spec.timeout_secs);
        if let Some(forge) = &spec.forge {
            script.push_str(&forger_script(forge));
        }
        args.push(script);
        let output = self.run(&self.command(args))?;
        if !output.success() {
            return Err(match classify_connect_failure(&output.stderr) {
                Some(connect) => connect.into(),
                None => anyhow!(
                    "the probe container on network {} did not run (image {}): {}",
                    spec.network,
                    spec.image,
                    docker_line(&output.stderr)
                ),
            });
        }
        let mut report = parse_probe_output(&spec.network, &spec.targets, &output.stdout);
        report.forged = spec.forge.as_ref().map(|_| match output.stdout.contains("forger done") {
            true => Ok(()),
            false => Err(format!(
                "it did not finish: {}",
                output.stdout.lines().find(|l| l.starts_with("forger")).unwrap_or("no forger output")
            )),
        });
        Ok(report)
    }

    /// Runs several probes, at most `parallel` at a time; results in the order of `specs`.
    pub fn run_probes(&self, specs: &[ProbeSpec], parallel: usize) -> Vec<Result<ProbeReport>> {
        crate::parallel::map(specs, parallel, |spec| self.run_probe(spec))
    }

    /// The engine host's own IPv4 addresses and default gateway, read by a throwaway container
    /// on the host network (works for a remote engine too).
    pub fn host_net_info(&self, image: &str) -> Result<HostNetInfo> {
        let args = [
            "run",
            "--rm",
            "--pull",
            "never",
            "--network",
            "host",
            "--cap-drop",
            "ALL",
            "--read-only",
            "--label",
            "agency.probe=true",
            "--label",
            "agency.managed=true",
            "--entrypoint",
            "/bin/sh",
            image,
            "-c",
            "ip -4 -o addr; echo ---; ip -4 route; echo ---; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; true",
        ];
        let output = self.checked("run (host network probe)", &args)?;
        Ok(parse_host_net_info(&output.stdout))
    }
}
