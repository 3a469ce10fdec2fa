//! Why a `docker` call failed: the engine unreachable, a network that cannot be created or
//! removed, as typed errors with one sentence each.

use std::fmt;

use anyhow::anyhow;

use crate::format::ipv4::Ipv4Net;

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
pub(crate) fn classify_connect_failure(stderr: &str) -> Option<ConnectError> {
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
pub(crate) fn classify_create_failure(name: &str, subnet: Option<Ipv4Net>, stderr: &str) -> CreateNetworkError {
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
pub(crate) struct NetworkInUse {
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

/// Docker's error line without the "Error response from daemon: " prefix.
pub(super) fn docker_line(stderr: &str) -> String {
    let line = stderr.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("(no error output)");
    line.strip_prefix("Error response from daemon: ").unwrap_or(line).to_string()
}

/// "network x not found" (daemon) or "No such network: x" (newer CLIs).
pub(super) fn is_not_found(line: &str) -> bool {
    let lower = line.to_lowercase();
    lower.contains("not found") || lower.contains("no such network")
}
