//! What the engine reports and what to create: networks, containers, volumes, host addresses.

use super::*;

/// The Docker network option naming a bridge network's interface.
pub(crate) const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// The interface name of a bridge network agency creates on `subnet`: `agb-` and the network
/// address in hex (12 characters; Linux allows 15). Bridge subnets never overlap on one
/// engine, so no two networks, of any client or any root, get the same name.
pub fn bridge_name(subnet: Ipv4Net) -> String {
    format!("{BRIDGE_PREFIX}{:08x}", u32::from(subnet.network()))
}

/// How the interface names of agency's bridges begin.
pub(crate) const BRIDGE_PREFIX: &str = "agb-";

/// The interface name Docker gives a bridge network it was not asked to name.
pub(crate) fn docker_bridge_name(network_id: &str) -> String {
    format!("br-{}", network_id.get(..12).unwrap_or(network_id))
}

use std::{collections::BTreeMap, net::Ipv4Addr};

use crate::format::ipv4::Ipv4Net;

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
    /// A bridge network with a subnet gets the interface [`bridge_name`] of it, so
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

    pub(super) fn create_args(&self, subnet: Option<Ipv4Net>) -> Vec<String> {
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
                args.push(format!("{}={}", BRIDGE_NAME_OPTION, bridge_name(subnet)));
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
