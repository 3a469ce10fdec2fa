//! The Docker engine, driven through the `docker` CLI.
//!
//! Every method is one `docker` process (two for [`Docker::inspect_all_networks`]), whatever
//! the number of clients, so status checks stay O(1) in docker calls: list everything once,
//! then work on the parsed lists. `DOCKER_HOST` and `DOCKER_CONTEXT` reach the CLI through the
//! inherited environment, so one runner can drive a remote engine.
//!
//! Measured on the development engine (Docker 20.10, 200 networks): `network create` ≈ 100 ms,
//! `network rm` ≈ 210 ms (both serialized by the daemon), `network ls` ≈ 18 ms, `ps -a` ≈ 11 ms,
//! `network ls -q` + `network inspect` of all ≈ 235 ms, `version` ≈ 16 ms.

use std::{
    collections::BTreeMap,
    fmt,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use crate::{
    drivers::process::{self, Output},
    firewall,
    subnet::{Allocator, Ipv4Net},
};

mod probe;
pub use probe::{ForgerSpec, PEER_PORT, forger_script, parse_in_echos};

/// What to install when there is no `docker` on PATH.
pub const INSTALL_HINT: &str = "install the Docker CLI and engine (Debian/Ubuntu: `apt-get install docker.io`; \
     elsewhere see https://docs.docker.com/engine/install/), or put `docker` on PATH";

/// Label every network and container the runner manages carries.
pub const LABEL_MANAGED: &str = "agency.managed";
/// Label naming the client a resource belongs to.
pub const LABEL_CLIENT: &str = "agency.client";
/// Label naming a network's tier (frontend, backend, database, network).
pub const LABEL_TIER: &str = "agency.tier";
/// Label on throwaway probe containers.
pub const LABEL_PROBE: &str = "agency.probe";
/// Label of a container allowed on several clients' frontend networks (a shared reverse proxy).
pub const LABEL_SHARED_INGRESS: &str = "agency.shared-ingress";

/// Labels read exactly from `ls`/`ps` output. Docker prints a resource's labels there as one
/// comma-joined `k=v,k=v` string, so `--label 'x=1,agency.client=b'` would read as two labels;
/// these keys are asked for one by one with the template function `.Label`, and any other
/// `agency.*` key found in the joined string is dropped (it cannot be told from a spoof).
pub const EXACT_LABELS: [&str; 10] = [
    LABEL_MANAGED,
    LABEL_CLIENT,
    LABEL_TIER,
    LABEL_PROBE,
    LABEL_SHARED_INGRESS,
    "agency.role",
    "agency.test",
    // The db-passwords plugin's labels on a client's database containers.
    "agency.db",
    "agency.db-user",
    "agency.db-admin",
];

/// A Docker engine reached through the `docker` CLI. Cheap to clone; clones share the call
/// counter.
#[derive(Debug, Clone)]
pub struct Docker {
    program: PathBuf,
    env: Vec<(String, String)>,
    calls: Arc<AtomicUsize>,
}

/// Why the engine could not be reached, as one sentence with what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// No `docker` program on PATH.
    Missing(String),
    /// The CLI could not reach a daemon at the endpoint.
    DaemonDown { endpoint: String },
    /// The socket exists but the user may not use it.
    PermissionDenied { endpoint: String },
    /// Anything else (bad context, TLS, …), with Docker's own line.
    Other(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Missing(message) => write!(f, "{message}"),
            ConnectError::DaemonDown { endpoint } => write!(
                f,
                "the Docker daemon is not running or not reachable at {endpoint}; start it \
                 (`sudo systemctl start docker`) or point DOCKER_HOST / DOCKER_CONTEXT at a running engine"
            ),
            ConnectError::PermissionDenied { endpoint } => write!(
                f,
                "permission denied on the Docker daemon socket {endpoint}; add the user to the `docker` \
                 group (`sudo usermod -aG docker $USER`, then log in again) or run with sudo"
            ),
            ConnectError::Other(line) => {
                write!(f, "the Docker engine could not be reached: {line}")
            }
        }
    }
}

impl std::error::Error for ConnectError {}

/// Reads a failed `docker` invocation's stderr: a connection problem, or `None` for an
/// ordinary command error.
pub fn classify_connect_failure(stderr: &str) -> Option<ConnectError> {
    let line = stderr.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_string();
    let endpoint = |text: &str| -> String {
        // "… daemon at unix:///var/run/docker.sock. Is …" / "… daemon socket at unix:///…: Get …"
        text.split_once(" at ")
            .map(|(_, rest)| {
                let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
                rest[..end].trim_end_matches(['.', ':']).to_string()
            })
            .filter(|e| !e.is_empty())
            .unwrap_or_else(default_endpoint)
    };
    let lower = stderr.to_lowercase();
    if lower.contains("permission denied") && lower.contains("docker") {
        return Some(ConnectError::PermissionDenied { endpoint: endpoint(&line) });
    }
    if lower.contains("cannot connect to the docker daemon")
        || lower.contains("is the docker daemon running")
        || lower.contains("error during connect")
    {
        return Some(ConnectError::DaemonDown { endpoint: endpoint(&line) });
    }
    if lower.contains("failed to initialize") || lower.contains("context not found") {
        return Some(ConnectError::Other(line));
    }
    None
}

/// The endpoint the CLI will use, for messages: DOCKER_HOST, else DOCKER_CONTEXT, else the
/// default socket.
fn default_endpoint() -> String {
    if let Ok(host) = std::env::var("DOCKER_HOST")
        && !host.is_empty()
    {
        return format!("{host} (DOCKER_HOST)");
    }
    if let Ok(context) = std::env::var("DOCKER_CONTEXT")
        && !context.is_empty()
    {
        return format!("context {context} (DOCKER_CONTEXT)");
    }
    "unix:///var/run/docker.sock".to_string()
}

/// A network as `docker network ls` reports it (no subnets, no containers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSummary {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub scope: String,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

impl NetworkSummary {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// A container attached to a network, as `docker network inspect` reports it (running
/// containers only; `docker ps -a` also shows stopped ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub container_id: String,
    pub name: String,
    pub ipv4: Option<Ipv4Addr>,
}

/// A network as `docker network inspect` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkDetails {
    pub id: String,
    pub name: String,
    /// Creation time as Docker prints it (RFC 3339, UTC).
    pub created: String,
    pub driver: String,
    pub scope: String,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    /// IPv4 subnets (IPv6 ones are left out).
    pub subnets: Vec<Ipv4Net>,
    /// IPv4 gateways: the configured one, else the subnet's first address (what Docker gives
    /// the bridge when a subnet is set without a gateway).
    pub gateways: Vec<Ipv4Addr>,
    pub labels: BTreeMap<String, String>,
    pub containers: Vec<Endpoint>,
    /// The interface of a bridge network (its `com.docker.network.bridge.name`, else Docker's
    /// `br-<id>`); `None` for other drivers, or when not known (`network ls` does not say).
    pub bridge: Option<String>,
}

impl NetworkDetails {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    /// `bridge` (single host) or `overlay` (Swarm, multi-host).
    pub driver: String,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    /// An explicit subnet; `None` lets Docker pick from its default pools.
    pub subnet: Option<Ipv4Net>,
    /// A bridge network with a subnet gets the interface [`firewall::bridge_name`] of it, so
    /// agency's firewall can key its rules on a name that cannot be forged.
    pub name_bridge: bool,
}

impl NetworkSpec {
    /// A bridge network with no labels and no subnet.
    pub fn bridge(name: &str) -> Self {
        Self {
            name: name.to_string(),
            driver: "bridge".to_string(),
            internal: false,
            attachable: false,
            labels: BTreeMap::new(),
            subnet: None,
            name_bridge: false,
        }
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    fn create_args(&self, subnet: Option<Ipv4Net>) -> Vec<String> {
        let mut args = vec!["network".to_string(), "create".to_string(), "--driver".to_string(), self.driver.clone()];
        if self.internal {
            args.push("--internal".to_string());
        }
        if self.attachable {
            args.push("--attachable".to_string());
        }
        if let Some(subnet) = subnet {
            args.push("--subnet".to_string());
            args.push(subnet.to_string());
            if self.name_bridge && self.driver == "bridge" {
                args.push("--opt".to_string());
                args.push(format!("{}={}", firewall::BRIDGE_NAME_OPTION, firewall::bridge_name(subnet)));
            }
        }
        for (key, value) in &self.labels {
            args.push("--label".to_string());
            args.push(format!("{key}={value}"));
        }
        args.push("--".to_string());
        args.push(self.name.clone());
        args
    }
}

/// Why `docker network create` failed.
#[derive(Debug)]
pub enum CreateNetworkError {
    /// A network of that name exists (ours or not): inspect it and decide.
    NameTaken { name: String },
    /// The subnet overlaps a network Docker knows (in the same address space): try another.
    SubnetOverlaps { name: String, subnet: Option<Ipv4Net> },
    /// An overlay network needs this node to be a Swarm manager.
    SwarmRequired { name: String },
    /// Anything else, as one sentence.
    Failed(anyhow::Error),
}

impl fmt::Display for CreateNetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateNetworkError::NameTaken { name } => {
                write!(f, "a Docker network named {name} already exists")
            }
            CreateNetworkError::SubnetOverlaps { name, subnet: Some(subnet) } => {
                write!(f, "could not create network {name}: subnet {subnet} overlaps an existing Docker network")
            }
            CreateNetworkError::SubnetOverlaps { name, subnet: None } => write!(
                f,
                "could not create network {name}: Docker found no free, non-overlapping address pool \
                 (its default pools hold about 29 networks); give the network an explicit subnet"
            ),
            CreateNetworkError::SwarmRequired { name } => write!(
                f,
                "could not create overlay network {name}: this Docker node is not a Swarm manager; run \
                 `docker swarm init` (or join a swarm as manager) or use NETWORK_DRIVER=bridge"
            ),
            CreateNetworkError::Failed(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for CreateNetworkError {}

/// Reads `docker network create`'s stderr into a typed error.
pub fn classify_create_failure(name: &str, subnet: Option<Ipv4Net>, stderr: &str) -> CreateNetworkError {
    let lower = stderr.to_lowercase();
    if lower.contains("already exists") {
        CreateNetworkError::NameTaken { name: name.to_string() }
    } else if lower.contains("pool overlaps") || lower.contains("overlaps with") {
        CreateNetworkError::SubnetOverlaps { name: name.to_string(), subnet }
    } else if lower.contains("non-overlapping") && subnet.is_none() {
        CreateNetworkError::SubnetOverlaps { name: name.to_string(), subnet: None }
    } else if lower.contains("not a swarm manager") {
        CreateNetworkError::SwarmRequired { name: name.to_string() }
    } else if let Some(connect) = classify_connect_failure(stderr) {
        CreateNetworkError::Failed(connect.into())
    } else {
        CreateNetworkError::Failed(anyhow!("could not create network {name}: {}", docker_line(stderr)))
    }
}

/// A network that cannot be removed because containers (running or stopped) are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInUse {
    pub name: String,
    /// The containers, when known.
    pub containers: Vec<String>,
}

impl fmt::Display for NetworkInUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.containers.is_empty() {
            write!(f, "network {} still has containers attached; disconnect or remove them first", self.name)
        } else {
            write!(
                f,
                "network {} has containers attached ({}); disconnect or remove them first",
                self.name,
                self.containers.join(", ")
            )
        }
    }
}

impl std::error::Error for NetworkInUse {}

/// A container as `docker ps -a` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    pub id: String,
    pub name: String,
    pub image: String,
    /// `running`, `exited`, `created`, …
    pub state: String,
    pub labels: BTreeMap<String, String>,
    /// Names of the networks it is attached to.
    pub networks: Vec<String>,
    /// Its published ports as `ps` prints them (`0.0.0.0:8080->80/tcp, :::8080->80/tcp`).
    pub ports: String,
}

impl ContainerSummary {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// A throwaway probe container of the runner.
    pub fn is_probe(&self) -> bool {
        self.label(LABEL_PROBE) == Some("true")
    }
}

/// A volume as `docker volume ls` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    /// Where the data lives on the engine's host (empty for drivers that do not say).
    pub mountpoint: String,
}

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
    pub fn reached(self) -> bool {
        matches!(self, TcpOutcome::Open | TcpOutcome::Refused)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TcpOutcome::Open => "open",
            TcpOutcome::Refused => "refused",
            TcpOutcome::Timeout => "timeout",
            TcpOutcome::Unreachable => "unreachable",
            TcpOutcome::Error => "error",
        }
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
    pub fn open_ports(&self) -> Vec<u16> {
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
}

impl ProbeReport {
    pub fn result(&self, address: Ipv4Addr) -> Option<&ProbeResult> {
        self.results.iter().find(|r| r.address == address)
    }
}

/// An address of the engine's host, seen from a container on the host network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddress {
    pub interface: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
}

/// The engine host's IPv4 addresses and default gateway.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostNetInfo {
    pub addresses: Vec<HostAddress>,
    pub default_gateway: Option<Ipv4Addr>,
    /// The host's `/proc/net/tcp` and `/proc/net/tcp6` lines (its listening sockets).
    pub proc_net_tcp: Vec<String>,
}

/// Docker's error line without the "Error response from daemon: " prefix.
fn docker_line(stderr: &str) -> String {
    let line = stderr.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("(no error output)");
    line.strip_prefix("Error response from daemon: ").unwrap_or(line).to_string()
}

/// Orders networks by creation time (then ID): Docker prints RFC 3339 times with a variable
/// number of fraction digits, so the fraction is padded before comparing.
fn network_age_key(network: &NetworkDetails) -> (String, String) {
    let created = &network.created;
    let key = match created.split_once('.') {
        Some((seconds, rest)) => {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let zone = &rest[digits.len()..];
            format!("{seconds}.{digits:0<9}{zone}")
        }
        None => match created.find(['Z', '+']) {
            Some(at) => format!("{}.000000000{}", &created[..at], &created[at..]),
            None => created.clone(),
        },
    };
    (key, network.id.clone())
}

/// "network x not found" (daemon) or "No such network: x" (newer CLIs).
fn is_not_found(line: &str) -> bool {
    let lower = line.to_lowercase();
    lower.contains("not found") || lower.contains("no such network")
}

/// The `--format` of an `ls`/`ps` call: the `{{json .}}` line, then a tab and the JSON string
/// of each of `keys` (`.Label`, exact). JSON never holds a raw tab, so the fields split cleanly.
pub fn exact_format(keys: &[&str]) -> String {
    let mut format = "{{json .}}".to_string();
    for key in keys {
        format.push_str(&format!("\t{{{{json (.Label \"{key}\")}}}}"));
    }
    format
}

/// True for a label key that can go into a Go template and a `--filter` unquoted.
pub fn plain_label_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
}

/// Splits an [`exact_format`] line into its `{{json .}}` part and the labels: those of the
/// joined string without any `agency.*` key, then the exact values of `keys` (empty = absent).
fn split_exact_line<'a>(what: &str, line: &'a str, keys: &[&str]) -> Result<(&'a str, ExactLabels)> {
    let mut fields = line.split('\t');
    let json = fields.next().unwrap_or("");
    let mut exact = Vec::new();
    for key in keys {
        let Some(field) = fields.next() else { break };
        let value: String = serde_json::from_str(field)
            .with_context(|| format!("could not read the output of `docker {what}`: {line}"))?;
        if !value.is_empty() {
            exact.push((key.to_string(), value));
        }
    }
    Ok((json, exact))
}

/// The labels of one `ls`/`ps` line: the joined string's, minus every `agency.*` key, plus the
/// exact ones.
fn merge_labels(joined: &str, exact: ExactLabels) -> BTreeMap<String, String> {
    let mut labels = parse_label_list(joined);
    labels.retain(|key, _| !key.starts_with("agency."));
    labels.extend(exact);
    labels
}

/// Labels read with `.Label`, as (key, value) pairs.
type ExactLabels = Vec<(String, String)>;

fn exact_lines<T: for<'de> Deserialize<'de>>(what: &str, stdout: &str, keys: &[&str]) -> Result<Vec<(T, ExactLabels)>> {
    stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (json, exact) = split_exact_line(what, line, keys)?;
            let raw = serde_json::from_str(json)
                .with_context(|| format!("could not read the output of `docker {what}`: {line}"))?;
            Ok((raw, exact))
        })
        .collect()
}

/// Parses the `a=b,c=d` label list of `ls`/`ps` output. Not exact: a value holding a comma
/// reads as more labels (see [`EXACT_LABELS`]); inspect output is exact.
pub fn parse_label_list(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((key, value)) => (key.to_string(), value.to_string()),
            None => (item.to_string(), String::new()),
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawNetworkLine {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    #[serde(default)]
    driver: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    internal: String,
    #[serde(default)]
    labels: String,
}

/// Parses `docker network ls --no-trunc --format` [`exact_format`]`(&EXACT_LABELS)`.
pub fn parse_network_ls(stdout: &str) -> Result<Vec<NetworkSummary>> {
    Ok(exact_lines::<RawNetworkLine>("network ls", stdout, &EXACT_LABELS)?
        .into_iter()
        .map(|(raw, exact)| NetworkSummary {
            id: raw.id,
            name: raw.name,
            driver: raw.driver,
            scope: raw.scope,
            internal: raw.internal == "true",
            labels: merge_labels(&raw.labels, exact),
        })
        .collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawNetwork {
    name: String,
    id: String,
    #[serde(default)]
    created: String,
    #[serde(default)]
    driver: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    internal: bool,
    #[serde(default)]
    attachable: bool,
    #[serde(default)]
    ingress: bool,
    #[serde(rename = "IPAM", default)]
    ipam: RawIpam,
    #[serde(default)]
    containers: Option<BTreeMap<String, RawEndpoint>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    options: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawIpam {
    #[serde(default)]
    config: Option<Vec<RawIpamConfig>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawIpamConfig {
    #[serde(default)]
    subnet: String,
    #[serde(default)]
    gateway: String,
}

#[derive(Deserialize)]
struct RawEndpoint {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "IPv4Address", default)]
    ipv4_address: String,
}

/// The containers of [`Docker::with_net_raw`]'s output lines that have NET_RAW: privileged,
/// adding it (or ALL), or keeping Docker's default set, which holds it, without dropping it.
pub fn parse_net_raw(stdout: &str) -> Vec<String> {
    let caps = |json: &str| -> Vec<String> {
        serde_json::from_str::<Option<Vec<String>>>(json)
            .ok()
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.to_uppercase().trim_start_matches("CAP_").to_string())
            .collect()
    };
    let names = |list: &[String]| list.iter().any(|c| c == "NET_RAW" || c == "ALL");
    stdout
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let (id, privileged, add, drop) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
            let raw = privileged == "true" || names(&caps(add)) || !names(&caps(drop));
            raw.then(|| id.to_string())
        })
        .collect()
}

/// Parses `docker network inspect` output (a JSON array).
pub fn parse_network_inspect(stdout: &str) -> Result<Vec<NetworkDetails>> {
    let trimmed = stdout.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let raws: Vec<RawNetwork> =
        serde_json::from_str(trimmed).context("could not read the output of `docker network inspect`")?;
    Ok(raws
        .into_iter()
        .map(|raw| {
            let mut subnets = Vec::new();
            let mut gateways = Vec::new();
            for config in raw.ipam.config.unwrap_or_default() {
                let Some((address, prefix)) = config.subnet.split_once('/') else {
                    continue;
                };
                let (Ok(address), Ok(prefix)) = (address.parse::<Ipv4Addr>(), prefix.parse::<u8>()) else {
                    continue;
                };
                let net = Ipv4Net::truncating(address, prefix);
                subnets.push(net);
                gateways.push(config.gateway.parse::<Ipv4Addr>().unwrap_or_else(|_| net.first_host()));
            }
            let containers = raw
                .containers
                .unwrap_or_default()
                .into_iter()
                // Swarm's per-network load balancer endpoint is not a container.
                .filter(|(id, _)| !id.starts_with("lb-"))
                .map(|(id, endpoint)| Endpoint {
                    container_id: id,
                    name: endpoint.name,
                    ipv4: endpoint.ipv4_address.split('/').next().and_then(|a| a.parse().ok()),
                })
                .collect();
            let bridge = (raw.driver == "bridge").then(|| {
                raw.options
                    .as_ref()
                    .and_then(|o| o.get(firewall::BRIDGE_NAME_OPTION))
                    .filter(|name| !name.is_empty())
                    .cloned()
                    .unwrap_or_else(|| firewall::docker_bridge_name(&raw.id))
            });
            NetworkDetails {
                bridge,
                id: raw.id,
                name: raw.name,
                created: raw.created,
                driver: raw.driver,
                scope: raw.scope,
                internal: raw.internal,
                attachable: raw.attachable,
                ingress: raw.ingress,
                subnets,
                gateways,
                labels: raw.labels.unwrap_or_default(),
                containers,
            }
        })
        .collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawContainerLine {
    #[serde(rename = "ID")]
    id: String,
    #[serde(default)]
    names: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    labels: String,
    #[serde(default)]
    networks: String,
    #[serde(default)]
    ports: String,
}

/// Parses `docker ps -a --no-trunc --format` [`exact_format`]`(keys)`.
pub fn parse_ps(stdout: &str, keys: &[&str]) -> Result<Vec<ContainerSummary>> {
    Ok(exact_lines::<RawContainerLine>("ps", stdout, keys)?
        .into_iter()
        .map(|(raw, exact)| ContainerSummary {
            id: raw.id,
            name: raw.names.split(',').next().unwrap_or("").to_string(),
            image: raw.image,
            state: raw.state,
            labels: merge_labels(&raw.labels, exact),
            networks: raw.networks.split(',').filter(|n| !n.is_empty()).map(str::to_string).collect(),
            ports: raw.ports,
        })
        .collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawVolumeLine {
    name: String,
    #[serde(default)]
    driver: String,
    #[serde(default)]
    labels: String,
    #[serde(default)]
    mountpoint: String,
}

/// Parses `docker volume ls --format` [`exact_format`]`(&EXACT_LABELS)`.
pub fn parse_volume_ls(stdout: &str) -> Result<Vec<Volume>> {
    Ok(exact_lines::<RawVolumeLine>("volume ls", stdout, &EXACT_LABELS)?
        .into_iter()
        .map(|(raw, exact)| Volume {
            name: raw.name,
            driver: raw.driver,
            labels: merge_labels(&raw.labels, exact),
            mountpoint: raw.mountpoint,
        })
        .collect())
}

/// The shell script a probe container runs: every attempt in the background at once, one
/// result line per attempt.
pub fn probe_script(targets: &[ProbeTarget], timeout_secs: u32) -> String {
    let t = timeout_secs.max(1);
    let mut script = format!(
        "T={t}\n\
         icmp() {{ if ping -c 1 -W $T \"$1\" >/dev/null 2>&1; then echo \"icmp $1 ok\"; else echo \"icmp $1 fail\"; fi; }}\n\
         tcp() {{ r=$(timeout $((T+1)) nc -w $T \"$1\" \"$2\" </dev/null 2>&1 >/dev/null); c=$?; \
         case \"$r\" in *efused*) o=refused;; *'timed out'*) o=timeout;; *nreachable*|*'No route'*) o=unreachable;; \
         '') if [ $c = 0 ] || [ $c = 143 ] || [ $c = 124 ]; then o=open; else o=error; fi;; *) o=error;; esac; \
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
pub fn parse_probe_output(network: &str, targets: &[ProbeTarget], stdout: &str) -> ProbeReport {
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
    ProbeReport { network: network.to_string(), source, results }
}

/// Parses `ip -4 -o addr`, `ip -4 route` and `/proc/net/tcp{,6}`, separated by `---` lines.
pub fn parse_host_net_info(stdout: &str) -> HostNetInfo {
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

/// Masks every word of `secret` (longer than 3 bytes) found in `text`, so a tool that echoes
/// its input in an error cannot leak a password into a message.
pub fn redact(text: &str, secret: &str) -> String {
    let mut words: Vec<&str> = secret.split(|c: char| c.is_whitespace() || "'\";".contains(c)).collect();
    words.retain(|w| w.len() > 3);
    words.sort_by_key(|w| std::cmp::Reverse(w.len()));
    words.into_iter().fold(text.to_string(), |text, word| text.replace(word, "<redacted>"))
}

static PROBE_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Docker {
    /// Finds `docker` on PATH and checks that the engine answers; errors say what to install
    /// or start.
    pub fn connect() -> Result<Docker> {
        let program = process::locate("docker", INSTALL_HINT).map_err(|e| ConnectError::Missing(e.to_string()))?;
        let docker = Docker::with_program(program);
        docker.check()?;
        Ok(docker)
    }

    /// Finds `docker` on PATH without asking the engine anything (the first real call reports
    /// an unreachable daemon in the same words as [`Docker::connect`]).
    pub fn locate() -> Result<Docker> {
        let program = process::locate("docker", INSTALL_HINT).map_err(|e| ConnectError::Missing(e.to_string()))?;
        Ok(Docker::with_program(program))
    }

    /// A client for a given `docker` program, without checking the engine.
    pub fn with_program(program: impl Into<PathBuf>) -> Docker {
        Docker { program: program.into(), env: Vec::new(), calls: Arc::new(AtomicUsize::new(0)) }
    }

    /// Sets a variable for every `docker` process of this client (e.g. `DOCKER_HOST` for one
    /// engine among several); by default the CLI sees the runner's own environment.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// How many `docker` processes this client (and its clones) started.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    fn command<I, S>(&self, args: I) -> process::Command
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString>,
    {
        let mut command = process::Command::new(&self.program).args(args);
        for (key, value) in &self.env {
            command = command.env(key, value);
        }
        command
    }

    fn run(&self, command: &process::Command) -> Result<Output> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        command.output()
    }

    /// Runs `docker ARGS`; a failure is one sentence naming the command.
    fn checked(&self, what: &str, args: &[&str]) -> Result<Output> {
        let output = self.run(&self.command(args))?;
        if output.success() {
            return Ok(output);
        }
        Err(self.failure(what, &output.stderr))
    }

    fn failure(&self, what: &str, stderr: &str) -> anyhow::Error {
        match classify_connect_failure(stderr) {
            Some(connect) => connect.into(),
            None => anyhow!("`docker {what}` failed: {}", docker_line(stderr)),
        }
    }

    /// Checks that the engine answers (one `docker version` call).
    pub fn check(&self) -> Result<()> {
        self.server_version().map(drop)
    }

    /// The engine's version (`docker version`); the connection check.
    pub fn server_version(&self) -> Result<String> {
        let output = self.run(&self.command(["version", "--format", "{{.Server.Version}}"]))?;
        let version = output.stdout.trim().to_string();
        if output.success() && !version.is_empty() {
            return Ok(version);
        }
        Err(classify_connect_failure(&output.stderr)
            .unwrap_or_else(|| ConnectError::Other(docker_line(&output.stderr)))
            .into())
    }

    /// Every network, in one `docker network ls` call.
    pub fn list_networks(&self) -> Result<Vec<NetworkSummary>> {
        let format = exact_format(&EXACT_LABELS);
        let output = self.checked("network ls", &["network", "ls", "--no-trunc", "--format", &format])?;
        parse_network_ls(&output.stdout)
    }

    /// The named networks (names or full IDs), in one `docker network inspect` call. Names
    /// that do not exist are left out of the result, as are networks that only matched by
    /// ID prefix.
    pub fn inspect_networks(&self, names: &[&str]) -> Result<Vec<NetworkDetails>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["network", "inspect", "--"];
        args.extend_from_slice(names);
        let output = self.run(&self.command(&args))?;
        if !output.success() {
            let unexpected = output.stderr.lines().map(str::trim).filter(|l| !l.is_empty()).find(|l| !is_not_found(l));
            if let Some(line) = unexpected {
                return Err(self.failure("network inspect", line));
            }
        }
        let mut networks = parse_network_inspect(&output.stdout)?;
        networks.retain(|n| names.iter().any(|name| *name == n.name || *name == n.id));
        Ok(networks)
    }

    /// The IDs among `ids` of containers that have NET_RAW, the capability that forges packets
    /// (one `docker inspect`; a container gone meanwhile is left out).
    pub fn with_net_raw(&self, ids: &[&str]) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let format = "{{.Id}}\t{{.HostConfig.Privileged}}\t{{json .HostConfig.CapAdd}}\t{{json .HostConfig.CapDrop}}";
        let mut args = vec!["inspect", "--type", "container", "--format", format, "--"];
        args.extend_from_slice(ids);
        let output = self.run(&self.command(&args))?;
        if !output.success() {
            let unexpected = output.stderr.lines().map(str::trim).filter(|l| !l.is_empty()).find(|l| !is_not_found(l));
            if let Some(line) = unexpected {
                return Err(self.failure("inspect", line));
            }
        }
        Ok(parse_net_raw(&output.stdout))
    }

    /// Every network with its subnets and containers: `network ls -q` then one
    /// `network inspect` (two calls).
    pub fn inspect_all_networks(&self) -> Result<Vec<NetworkDetails>> {
        let output = self.checked("network ls", &["network", "ls", "-q", "--no-trunc"])?;
        let ids: Vec<&str> = output.stdout.split_whitespace().collect();
        let mut all = Vec::with_capacity(ids.len());
        // A network removed between the two calls is simply not listed.
        for chunk in ids.chunks(1000) {
            all.extend(self.inspect_networks(chunk)?);
        }
        Ok(all)
    }

    /// Every IPv4 subnet in use by any network of the engine (for the allocator).
    pub fn used_subnets(&self) -> Result<Vec<Ipv4Net>> {
        Ok(self.inspect_all_networks()?.into_iter().flat_map(|n| n.subnets).collect())
    }

    /// Creates a network and returns its ID.
    pub fn create_network(&self, spec: &NetworkSpec) -> std::result::Result<String, CreateNetworkError> {
        self.create_with_subnet(spec, spec.subnet)
    }

    fn create_with_subnet(
        &self,
        spec: &NetworkSpec,
        subnet: Option<Ipv4Net>,
    ) -> std::result::Result<String, CreateNetworkError> {
        let output = self.run(&self.command(spec.create_args(subnet))).map_err(CreateNetworkError::Failed)?;
        if output.success() {
            Ok(output.stdout.trim().to_string())
        } else {
            Err(classify_create_failure(&spec.name, subnet, &output.stderr))
        }
    }

    /// Creates a network with the next free block of `allocator` (ignoring `spec.subnet`).
    /// When Docker says the block overlaps (another runner took it meanwhile), marks it taken
    /// and tries the next; fails when the pool is full. Returns the ID and the subnet.
    pub fn create_network_in_pool(
        &self,
        spec: &NetworkSpec,
        allocator: &mut Allocator,
    ) -> std::result::Result<(String, Ipv4Net), CreateNetworkError> {
        loop {
            let subnet = allocator.peek().map_err(CreateNetworkError::Failed)?;
            allocator.mark_taken(subnet);
            let id = match self.create_with_subnet(spec, Some(subnet)) {
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
            let networks = self.inspect_all_networks().map_err(CreateNetworkError::Failed)?;
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
            self.remove_network(&id).map_err(CreateNetworkError::Failed)?;
        }
    }

    /// Removes a network (by name or full ID; pass names you listed, since Docker also accepts
    /// an ID prefix). `Ok(false)` when it did not exist.
    pub fn remove_network(&self, name: &str) -> Result<bool> {
        let output = self.run(&self.command(["network", "rm", "--", name]))?;
        if output.success() {
            return Ok(true);
        }
        let lower = output.stderr.to_lowercase();
        if is_not_found(&output.stderr) {
            Ok(false)
        } else if lower.contains("active endpoints") {
            Err(NetworkInUse { name: name.to_string(), containers: Vec::new() }.into())
        } else {
            Err(self.failure(&format!("network rm {name}"), &output.stderr))
        }
    }

    /// Disconnects a container from a network, forcibly (also a stopped container).
    /// `Ok(false)` when it was not connected or either is gone.
    pub fn disconnect_network(&self, network: &str, container: &str) -> Result<bool> {
        let output = self.run(&self.command(["network", "disconnect", "--force", "--", network, container]))?;
        if output.success() {
            return Ok(true);
        }
        let lower = output.stderr.to_lowercase();
        if is_not_found(&output.stderr) || lower.contains("is not connected") {
            Ok(false)
        } else {
            Err(self.failure(&format!("network disconnect {network} {container}"), &output.stderr))
        }
    }

    /// Removes several networks in one call; missing ones are fine. Fails naming those that
    /// could not be removed (after removing the rest).
    pub fn remove_networks(&self, names: &[&str]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let mut args = vec!["network", "rm", "--"];
        args.extend_from_slice(names);
        let output = self.run(&self.command(&args))?;
        if output.success() {
            return Ok(());
        }
        let failures: Vec<&str> =
            output.stderr.lines().map(str::trim).filter(|l| !l.is_empty() && !is_not_found(l)).collect();
        match failures.first() {
            None => Ok(()),
            Some(first) => Err(self.failure("network rm", first)),
        }
    }

    /// Every container, running or not, with its networks, in one `docker ps -a` call.
    pub fn list_containers(&self) -> Result<Vec<ContainerSummary>> {
        let format = exact_format(&EXACT_LABELS);
        let output = self.checked("ps", &["ps", "-a", "--no-trunc", "--format", &format])?;
        parse_ps(&output.stdout, &EXACT_LABELS)
    }

    /// The containers, running or stopped, attached to `network` now (one `docker ps -a`).
    pub fn containers_on(&self, network: &str) -> Result<Vec<ContainerSummary>> {
        Ok(self.list_containers()?.into_iter().filter(|c| c.networks.iter().any(|n| n == network)).collect())
    }

    /// Containers (running or not) carrying every label of `labels` (an empty value matches any
    /// value), in one `docker ps -a` call filtered by the engine.
    pub fn list_containers_with_labels(&self, labels: &[(String, String)]) -> Result<Vec<ContainerSummary>> {
        let mut args: Vec<String> = vec!["ps".into(), "-a".into(), "--no-trunc".into()];
        let mut keys: Vec<&str> = EXACT_LABELS.to_vec();
        for (key, value) in labels {
            if !plain_label_key(key) || value.contains([',', '\n']) {
                bail!("label filter {key:?}={value:?} is not a valid Docker label");
            }
            if !keys.contains(&key.as_str()) {
                keys.push(key);
            }
            args.push("--filter".into());
            args.push(if value.is_empty() { format!("label={key}") } else { format!("label={key}={value}") });
        }
        args.extend(["--format".into(), exact_format(&keys)]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = self.checked("ps", &args)?;
        parse_ps(&output.stdout, &keys)
    }

    /// Volumes, optionally filtered by label (`key` or `key=value`), with their mountpoints,
    /// in one `docker volume ls` call.
    pub fn list_volumes(&self, label: Option<&str>) -> Result<Vec<Volume>> {
        let format = exact_format(&EXACT_LABELS);
        let mut args = vec!["volume", "ls", "--format", &format];
        let filter;
        if let Some(label) = label {
            filter = format!("label={label}");
            args.push("--filter");
            args.push(&filter);
        }
        let output = self.checked("volume ls", &args)?;
        parse_volume_ls(&output.stdout)
    }

    /// Runs `argv` in a running container with `stdin` fed to it (`docker exec -i`, the way to
    /// hand a password to a tool inside the container) and returns its stdout. A non-zero exit
    /// is an error quoting the tool's error line with every word of each of `secrets` masked
    /// (pass `&[stdin]` to mask all of the input).
    pub fn exec_with_stdin(&self, container: &str, argv: &[&str], stdin: &[u8], secrets: &[&str]) -> Result<String> {
        self.exec(container, argv, &[], Some(stdin), secrets)
    }

    /// Runs `argv` in a running container. `env` values reach the process through the docker
    /// CLI's environment (`docker exec -e NAME`), never its argument list; `stdin`, if any, is
    /// fed to it. The values of `env` and every word of `secrets` are masked in errors.
    pub fn exec(
        &self,
        container: &str,
        argv: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
        secrets: &[&str],
    ) -> Result<String> {
        if argv.is_empty() {
            bail!("nothing to run in container {container}: the command is empty");
        }
        let mut args: Vec<String> = vec!["exec".into()];
        if stdin.is_some() {
            args.push("-i".into());
        }
        for (key, _) in env {
            if key.is_empty() || key.contains('=') {
                bail!("`{key}` is not a valid environment variable name");
            }
            args.push("-e".into());
            args.push((*key).to_string());
        }
        args.push("--".into());
        args.push(container.into());
        args.extend(argv.iter().map(|a| a.to_string()));
        let mut command = self.command(args);
        for (key, value) in env {
            command = command.env(key, value);
        }
        if let Some(bytes) = stdin {
            command = command.stdin(bytes.to_vec());
        }
        let output = self.run(&command)?;
        if output.success() {
            return Ok(output.stdout);
        }
        if let Some(connect) = classify_connect_failure(&output.stderr) {
            return Err(connect.into());
        }
        let mut message = docker_line(&output.stderr);
        for secret in secrets.iter().copied().chain(env.iter().map(|(_, v)| *v)) {
            message = redact(&message, secret);
        }
        // Docker's own refusals (no such container, not running) are not the tool's failure.
        if message.contains("No such container") || message.contains("is not running") {
            bail!("`docker exec` in container {container} failed: {message}");
        }
        bail!("`{}` in container {container} failed (exit {}): {message}", argv[0], output.code)
    }

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
            "--label",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("{LABEL_PROBE}=true"));
        args.push("--label".into());
        args.push(format!("{LABEL_MANAGED}=true"));
        for (key, value) in &spec.labels {
            args.push("--label".into());
            args.push(format!("{key}={value}"));
        }
        args.extend(["--entrypoint", "/bin/sh", &spec.image, "-c"].iter().map(|s| s.to_string()));
        args.push(probe_script(&spec.targets, spec.timeout_secs));
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
        Ok(parse_probe_output(&spec.network, &spec.targets, &output.stdout))
    }

    /// Runs several probes, at most `parallel` at a time; results in the order of `specs`.
    pub fn run_probes(&self, specs: &[ProbeSpec], parallel: usize) -> Vec<Result<ProbeReport>> {
        let parallel = parallel.max(1);
        let mut results: Vec<Option<Result<ProbeReport>>> = specs.iter().map(|_| None).collect();
        for (chunk_index, chunk) in specs.chunks(parallel).enumerate() {
            let chunk_results: Vec<Result<ProbeReport>> = std::thread::scope(|scope| {
                let handles: Vec<_> = chunk.iter().map(|spec| scope.spawn(move || self.run_probe(spec))).collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("a probe thread panicked"))))
                    .collect()
            });
            for (offset, result) in chunk_results.into_iter().enumerate() {
                results[chunk_index * parallel + offset] = Some(result);
            }
        }
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(anyhow!("probe did not run")))).collect()
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

/// The Dockerfile of the probe/test image: nothing but a static busybox.
pub const BUSYBOX_DOCKERFILE: &str = "FROM scratch\n\
COPY busybox /bin/busybox\n\
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
LABEL agency.probe-image=true\n\
CMD [\"/bin/sh\"]\n";

/// Where a static busybox usually is (Debian's `busybox-static` installs `/bin/busybox`).
pub fn find_static_busybox() -> Result<PathBuf> {
    let candidates = ["/bin/busybox", "/usr/bin/busybox"];
    let mut last_error = None;
    for candidate in candidates {
        let path = Path::new(candidate);
        if path.exists() {
            match check_static_elf(path) {
                Ok(()) => return Ok(path.to_path_buf()),
                Err(e) => last_error = Some(e),
            }
        }
    }
    Err(last_error.unwrap_or_else(|| {
        anyhow!("no busybox binary was found; install a static one (Debian/Ubuntu: `apt-get install busybox-static`)")
    }))
}

/// Fails unless `path` is an ELF executable without a program interpreter (statically
/// linked), which is what runs in a `FROM scratch` image.
pub fn check_static_elf(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("could not read {}", path.display()))?;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        bail!("{} is not an ELF executable", path.display());
    }
    let is64 = bytes[4] == 2;
    let little = bytes[5] == 1;
    let read = |offset: usize, size: usize| -> Option<u64> {
        let slice = bytes.get(offset..offset + size)?;
        let mut value = 0u64;
        for (i, byte) in slice.iter().enumerate() {
            let shift = if little { 8 * i } else { 8 * (size - 1 - i) };
            value |= u64::from(*byte) << shift;
        }
        Some(value)
    };
    let (phoff, phentsize, phnum) = if is64 {
        (read(0x20, 8), read(0x36, 2), read(0x38, 2))
    } else {
        (read(0x1C, 4), read(0x2A, 2), read(0x2C, 2))
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (phoff, phentsize, phnum) else {
        bail!("{} is a truncated ELF file", path.display());
    };
    for index in 0..phnum {
        let Some(kind) = read((phoff + index * phentsize) as usize, 4) else {
            bail!("{} is a truncated ELF file", path.display());
        };
        if kind == 3 {
            bail!(
                "{} is dynamically linked and cannot run in a FROM scratch image; install a static busybox \
                 (Debian/Ubuntu: `apt-get install busybox-static`)",
                path.display()
            );
        }
    }
    Ok(())
}

impl Docker {
    /// Builds `tag` `FROM scratch` with the static busybox at `busybox` (applets installed as
    /// symlinks in /bin) and returns the image ID. Building again is cheap (the builder's
    /// cache) and safe while another build of the same tag runs.
    pub fn build_busybox_image(&self, tag: &str, busybox: &Path) -> Result<String> {
        check_static_elf(busybox)?;
        let context = tempfile::tempdir().context("could not create a build directory")?;
        std::fs::copy(busybox, context.path().join("busybox"))
            .with_context(|| format!("could not copy {}", busybox.display()))?;
        std::fs::write(context.path().join("Dockerfile"), BUSYBOX_DOCKERFILE)
            .context("could not write the Dockerfile")?;
        let dir = context.path().to_string_lossy().into_owned();
        let output = self.checked(&format!("build -t {tag}"), &["build", "-q", "-t", tag, &dir])?;
        Ok(output.stdout.trim().to_string())
    }

    /// True when the engine has an image of that name.
    pub fn image_exists(&self, image: &str) -> Result<bool> {
        let output = self.run(&self.command(["image", "inspect", "--format", "{{.Id}}", "--", image]))?;
        if output.success() {
            return Ok(true);
        }
        if let Some(connect) = classify_connect_failure(&output.stderr) {
            return Err(connect.into());
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_connection_failures() {
        let down = classify_connect_failure(
            "Cannot connect to the Docker daemon at unix:///tmp/x.sock. Is the docker daemon running?\n",
        )
        .unwrap();
        assert_eq!(down, ConnectError::DaemonDown { endpoint: "unix:///tmp/x.sock".into() });
        assert!(down.to_string().contains("systemctl start docker"));

        let denied = classify_connect_failure(
            "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: \
             Get \"http://%2Fvar%2Frun%2Fdocker.sock/v1.50/version\": dial unix /var/run/docker.sock: connect: permission denied",
        )
        .unwrap();
        assert_eq!(denied, ConnectError::PermissionDenied { endpoint: "unix:///var/run/docker.sock".into() });
        assert!(denied.to_string().contains("docker` group"));

        let old_denied = classify_connect_failure(
            "Got permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: ...",
        );
        assert!(matches!(old_denied, Some(ConnectError::PermissionDenied { .. })));

        let context = classify_connect_failure(
            "Failed to initialize: unable to resolve docker endpoint: context \"nope\": context not found: open ...",
        );
        assert!(matches!(context, Some(ConnectError::Other(_))));

        assert_eq!(classify_connect_failure("Error response from daemon: network x not found"), None);
    }

    #[test]
    fn classifies_create_failures_from_real_messages() {
        let taken =
            classify_create_failure("a", None, "Error response from daemon: network with name a already exists\n");
        assert!(matches!(taken, CreateNetworkError::NameTaken { .. }));
        let subnet: Ipv4Net = "10.201.0.0/26".parse().unwrap();
        let overlap = classify_create_failure(
            "a",
            Some(subnet),
            "Error response from daemon: Pool overlaps with other one on this address space\n",
        );
        assert!(matches!(overlap, CreateNetworkError::SubnetOverlaps { subnet: Some(s), .. } if s == subnet));
        assert!(overlap.to_string().contains("10.201.0.0/26 overlaps"));
        let newer = classify_create_failure(
            "a",
            Some(subnet),
            "Error response from daemon: invalid pool request: Pool overlaps with other one on this address space",
        );
        assert!(matches!(newer, CreateNetworkError::SubnetOverlaps { .. }));
        let exhausted = classify_create_failure(
            "a",
            None,
            "Error response from daemon: could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network",
        );
        assert!(exhausted.to_string().contains("explicit subnet"), "{exhausted}");
        let swarm = classify_create_failure(
            "a",
            None,
            "Error response from daemon: This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.",
        );
        assert!(matches!(swarm, CreateNetworkError::SwarmRequired { .. }));
        let other = classify_create_failure("a", None, "Error response from daemon: plugin \"x\" not found");
        assert_eq!(other.to_string(), "could not create network a: plugin \"x\" not found");
    }

    #[test]
    fn parses_network_ls() {
        let exact = |values: [&str; 10]| values.map(|v| format!("\t{}", serde_json::json!(v))).concat();
        let out = format!(
            "{}{}\n{}{}\n{}{}\n",
            r#"{"CreatedAt":"2026-11-27 12:22:41 +0000 UTC","Driver":"bridge","ID":"978e","IPv4":"false","IPv6":"false","Internal":"false","Labels":"","Name":"bridge","Scope":"local"}"#,
            exact(["", "", "", "", "", "", "", "", "", ""]),
            r#"{"CreatedAt":"2026-11-27 12:25:27 +0000 UTC","Driver":"bridge","ID":"a59e","IPv4":"false","IPv6":"false","Internal":"true","Labels":"agency.client=acme,agency.managed=true,c=","Name":"acme_database","Scope":"local"}"#,
            exact(["true", "acme", "", "", "", "", "", "", "", ""]),
            // Real Docker 20.10 output for `--label 'note=x,agency.client=b' --label agency.tier=backend`.
            r#"{"Driver":"bridge","ID":"b1","Internal":"false","Labels":"agency.tier=backend,note=x,agency.client=b","Name":"spoof","Scope":"local"}"#,
            exact(["", "", "backend", "", "", "", "", "", "", ""]),
        );
        let networks = parse_network_ls(&out).unwrap();
        assert_eq!(networks.len(), 3);
        assert!(!networks[0].internal);
        assert!(networks[0].labels.is_empty());
        assert!(networks[1].internal);
        assert_eq!(networks[1].label("agency.client"), Some("acme"));
        assert_eq!(networks[1].label("c"), Some(""));
        assert_eq!(networks[2].label("agency.client"), None, "{:?}", networks[2].labels);
        assert_eq!(networks[2].label("agency.tier"), Some("backend"));
        assert_eq!(networks[2].label("note"), Some("x"));
        assert!(parse_network_ls("not json").is_err());
        assert_eq!(exact_format(&["agency.client"]), "{{json .}}\t{{json (.Label \"agency.client\")}}");
    }

    #[test]
    fn parses_network_inspect() {
        let out = r#"[
    {"Name": "zz_t1","Id": "a7e6","Scope": "local","Driver": "bridge","EnableIPv6": false,
     "IPAM": {"Driver": "default","Options": {},"Config": [{"Subnet": "10.250.0.0/26"}, {"Subnet": "fd00::/64"}]},
     "Internal": false,"Attachable": true,"Ingress": false,
     "Containers": {"c1": {"Name": "web","IPv4Address": "10.250.0.2/26","IPv6Address": ""},
                    "lb-zz_t1": {"Name": "zz_t1-endpoint","IPv4Address": "10.250.0.3/26"}},
     "Options": {},"Labels": {"agency.test": "x"}},
    {"Name": "zz_t4","Id": "a59e","Scope": "local","Driver": "bridge",
     "IPAM": {"Driver": "default","Options": {},"Config": [{"Subnet": "172.18.0.0/16","Gateway": "172.18.0.1"}]},
     "Internal": true,"Attachable": false,"Ingress": false,"Containers": {},"Labels": null}
]"#;
        let networks = parse_network_inspect(out).unwrap();
        assert_eq!(networks[0].subnets, vec!["10.250.0.0/26".parse().unwrap()]);
        assert_eq!(networks[0].gateways, vec![Ipv4Addr::new(10, 250, 0, 1)]);
        assert!(networks[0].attachable);
        assert_eq!(
            networks[0].containers,
            vec![Endpoint { container_id: "c1".into(), name: "web".into(), ipv4: Some(Ipv4Addr::new(10, 250, 0, 2)) }]
        );
        assert!(networks[1].internal);
        assert!(networks[1].labels.is_empty());
        assert_eq!(networks[1].gateways, vec![Ipv4Addr::new(172, 18, 0, 1)]);
        assert!(parse_network_inspect("").unwrap().is_empty());
        assert!(parse_network_inspect("[]").unwrap().is_empty());
    }

    #[test]
    fn parses_ps_and_volume_ls() {
        let keys = [LABEL_CLIENT, LABEL_PROBE, LABEL_SHARED_INGRESS];
        let ps = concat!(
            r#"{"Command":"\"sh\"","ID":"cddd","Image":"img","Labels":"agency.client=a,agency.probe=true","Names":"srv","Networks":"a_backend,b_backend","State":"running"}"#,
            "\t\"a\"\t\"true\"\t\"\"\n",
            r#"{"ID":"5024","Image":"img","Labels":"","Names":"other","Networks":"","State":"exited"}"#,
            "\t\"\"\t\"\"\t\"\"\n",
            // Real Docker 20.10 output for `--label 'x=1,agency.shared-ingress=true'`.
            r#"{"ID":"77","Image":"img","Labels":"agency.probe-image=true,x=1,agency.shared-ingress=true","Names":"sneaky","Networks":"n","State":"running"}"#,
            "\t\"\"\t\"\"\t\"\"\n",
        );
        let containers = parse_ps(ps, &keys).unwrap();
        assert_eq!(containers[0].networks, vec!["a_backend", "b_backend"]);
        assert!(containers[0].is_probe());
        assert_eq!(containers[0].label(LABEL_CLIENT), Some("a"));
        assert!(containers[1].networks.is_empty());
        assert_eq!(containers[1].state, "exited");
        assert_eq!(containers[2].label(LABEL_SHARED_INGRESS), None, "{:?}", containers[2].labels);
        assert_eq!(containers[2].label("x"), Some("1"));

        let volumes = parse_volume_ls(&format!(
            "{}\t\"\"\t\"zz\"\t\"\"\t\"\"\t\"\"\t\"\"\t\"\"",
            r#"{"Availability":"N/A","Driver":"local","Group":"N/A","Labels":"agency.client=zz","Links":"N/A","Mountpoint":"/var/lib/docker/volumes/zz_vol/_data","Name":"zz_vol","Scope":"local","Size":"N/A","Status":"N/A"}"#,
        ))
        .unwrap();
        assert_eq!(volumes[0].mountpoint, "/var/lib/docker/volumes/zz_vol/_data");
        assert_eq!(volumes[0].labels.get("agency.client").map(String::as_str), Some("zz"));
    }

    #[test]
    fn create_args_put_the_name_last_after_a_separator() {
        let spec = NetworkSpec { internal: true, attachable: true, ..NetworkSpec::bridge("acme_database") }
            .label("agency.tier", "database");
        let args = spec.create_args(Some("10.201.0.0/26".parse().unwrap()));
        assert_eq!(
            args.join(" "),
            "network create --driver bridge --internal --attachable --subnet 10.201.0.0/26 --label agency.tier=database -- acme_database"
        );
    }

    #[test]
    fn probe_script_and_output() {
        let targets = vec![
            ProbeTarget { address: Ipv4Addr::new(10, 0, 0, 1), icmp: true, ports: vec![80, 22] },
            ProbeTarget { address: Ipv4Addr::new(10, 0, 1, 2), icmp: true, ports: vec![] },
        ];
        let script = probe_script(&targets, 2);
        assert!(script.contains("icmp 10.0.0.1 &\ntcp 10.0.0.1 80 &\ntcp 10.0.0.1 22 &\nicmp 10.0.1.2 &\nwait\n"));
        let report = parse_probe_output(
            "a_database",
            &targets,
            "self 10.0.0.3/26\ntcp 10.0.0.1 22 open\nicmp 10.0.1.2 fail\nicmp 10.0.0.1 ok\ntcp 10.0.0.1 80 refused\n",
        );
        assert_eq!(report.source, vec![Ipv4Addr::new(10, 0, 0, 3)]);
        let gateway = report.result(Ipv4Addr::new(10, 0, 0, 1)).unwrap();
        assert_eq!(gateway.tcp, vec![(80, TcpOutcome::Refused), (22, TcpOutcome::Open)]);
        assert!(gateway.reachable());
        assert_eq!(gateway.open_ports(), vec![22]);
        let other = report.result(Ipv4Addr::new(10, 0, 1, 2)).unwrap();
        assert_eq!(other.icmp, Some(false));
        assert!(!other.reachable());
    }

    #[test]
    fn parses_host_net_info() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                   4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever\n\
                   5: docker0    inet 172.17.0.1/16 brd 172.17.255.255 scope global docker0\n\
                   ---\n\
                   default via 192.0.2.1 dev eth0\n\
                   172.17.0.0/16 dev docker0 proto kernel scope link src 172.17.0.1\n";
        let info = parse_host_net_info(out);
        assert_eq!(info.default_gateway, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(info.addresses.len(), 3);
        assert_eq!(
            info.addresses[1],
            HostAddress { interface: "eth0".into(), address: Ipv4Addr::new(192, 0, 2, 2), prefix: 24 }
        );
    }

    #[test]
    fn redaction_masks_stdin_words() {
        let message = redact(
            "ERROR: syntax error at LINE 1: ALTER USER app PASSWORD 's3cr3t-Pa55'",
            "ALTER USER app PASSWORD 's3cr3t-Pa55';\n",
        );
        assert!(!message.contains("s3cr3t-Pa55"), "{message}");
        assert_eq!(redact("plain", ""), "plain");
        let text = "ERROR 1064: near 'IDENTIFIED BY s3cretValue' at line 1";
        let shown = redact(text, "old-pass\n\nALTER USER 'root' IDENTIFIED BY 's3cretValue';");
        assert!(!shown.contains("s3cretValue"), "{shown}");
    }

    #[test]
    fn net_raw_is_default_unless_dropped() {
        let out = "a\tfalse\tnull\tnull\nb\tfalse\tnull\t[\"NET_RAW\"]\nc\tfalse\t[\"CAP_NET_RAW\"]\t[\"ALL\"]\n\
                   d\ttrue\tnull\t[\"ALL\"]\ne\tfalse\tnull\t[\"all\"]\n";
        assert_eq!(parse_net_raw(out), ["a", "c", "d"]);
    }

    #[test]
    fn network_age_pads_fractions() {
        let at = |created: &str, id: &str| NetworkDetails {
            id: id.into(),
            name: String::new(),
            created: created.into(),
            driver: String::new(),
            scope: String::new(),
            internal: false,
            attachable: false,
            ingress: false,
            subnets: Vec::new(),
            gateways: Vec::new(),
            labels: BTreeMap::new(),
            containers: Vec::new(),
            bridge: None,
        };
        let a = network_age_key(&at("2026-11-27T12:33:03.8Z", "b"));
        let b = network_age_key(&at("2026-11-27T12:33:03.80000001Z", "a"));
        assert!(a < b);
        let c = network_age_key(&at("2026-11-27T12:33:03Z", "z"));
        assert!(c < a);
        assert!(network_age_key(&at("2026-11-27T12:33:03Z", "a")) < c);
    }

    #[test]
    fn static_elf_check() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("script");
        std::fs::write(&text, "#!/bin/sh\n").unwrap();
        assert!(check_static_elf(&text).unwrap_err().to_string().contains("not an ELF"));
        // The test binary itself is dynamically linked.
        let me = std::env::current_exe().unwrap();
        assert!(check_static_elf(&me).unwrap_err().to_string().contains("dynamically linked"));
    }

    #[test]
    fn label_lists() {
        let labels = parse_label_list("a=b,c=,d");
        assert_eq!(labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(labels.get("c").map(String::as_str), Some(""));
        assert_eq!(labels.get("d").map(String::as_str), Some(""));
        assert!(parse_label_list("").is_empty());
    }
}
