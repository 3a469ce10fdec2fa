//! Network isolation of clients, judged from one look at the engine: a [`Snapshot`] holds
//! every network (with subnets and attached containers) and every container (with its
//! networks), taken in three `docker` calls whatever the number of clients. Everything here
//! is pure: the checks of `multi-tenancy-status`, what `FIX=1` would repair, and what a
//! `PROBE=1` probe should try and what its answers mean.

mod cross_tenant;
mod probe;
mod repair;
mod snapshot;
#[cfg(test)]
mod tests;

pub use cross_tenant::*;
pub use probe::*;
pub use repair::*;
pub use snapshot::*;

use std::collections::BTreeMap;

use crate::{
    drivers::docker::{LABEL_CLIENT, LABEL_MANAGED, LABEL_TIER, NetworkDetails},
    tenant::subnet::Ipv4Net,
};

/// A container with this label set to `true` may sit on the frontend networks of several
/// clients (a shared reverse proxy such as Traefik); on any other tier it still counts as a
/// cross-tenant attachment.
pub(crate) use crate::drivers::docker::LABEL_SHARED_INGRESS;

/// The key in client.env recording the driver of the client's networks.
pub const ENV_DRIVER: &str = "NETWORK_DRIVER";

pub use crate::tenant::policy::{TIERS, Tier, tier};

/// The driver names the runner accepts for `NETWORK_DRIVER`.
pub fn check_driver(driver: &str) -> anyhow::Result<()> {
    match driver {
        "bridge" | "overlay" => Ok(()),
        other => anyhow::bail!("NETWORK_DRIVER {other:?} is not supported; use bridge (one host) or overlay (Swarm)"),
    }
}

/// What one of a client's networks must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub client: String,
    pub tier: Tier,
    pub name: String,
    pub driver: String,
    /// The subnet recorded in client.env, if any.
    pub subnet: Option<Ipv4Net>,
}

impl Expected {
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_CLIENT.to_string(), self.client.clone()),
            (LABEL_TIER.to_string(), self.tier.name.to_string()),
        ])
    }

    /// What `docker network create` needs (the subnet is decided by the caller).
    pub fn spec(&self, subnet: Option<Ipv4Net>) -> crate::drivers::docker::NetworkSpec {
        crate::drivers::docker::NetworkSpec {
            name: self.name.clone(),
            driver: self.driver.clone(),
            internal: self.tier.internal,
            attachable: self.driver == "overlay",
            labels: self.labels(),
            subnet,
            name_bridge: true,
        }
    }

    /// `bridge, internal, attachable, agency.tier=database` for plans and reports.
    pub fn describe(&self, subnet: Option<Ipv4Net>) -> String {
        let mut parts = vec![self.driver.clone()];
        if self.tier.internal {
            parts.push("internal".into());
        }
        if self.driver == "overlay" {
            parts.push("attachable".into());
        }
        if let Some(subnet) = subnet {
            parts.push(format!("subnet {subnet}"));
            if self.driver == "bridge" {
                parts.push(format!("bridge {}", crate::tenant::firewall::bridge_name(subnet)));
            }
        }
        parts.push(format!(
            "labels {LABEL_MANAGED}=true {LABEL_CLIENT}={} {LABEL_TIER}={}",
            self.client, self.tier.name
        ));
        parts.join(", ")
    }
}

/// The four networks of `client` as client.env (`recorded`) and `driver` say they must be.
/// A recorded subnet that does not parse is ignored (status reports it).
pub fn expected_networks(client: &str, driver: &str, recorded: &BTreeMap<String, String>) -> Vec<Expected> {
    TIERS
        .iter()
        .map(|tier| Expected {
            client: client.to_string(),
            tier: *tier,
            name: format!("{client}_{}", tier.name),
            driver: driver.to_string(),
            subnet: recorded.get(tier.env_subnet).and_then(|s| s.parse().ok()),
        })
        .collect()
}

/// The driver a client's networks use: client.env's `NETWORK_DRIVER`, else `setting`, else bridge.
pub fn client_driver(recorded: &BTreeMap<String, String>, setting: &str) -> String {
    recorded
        .get(ENV_DRIVER)
        .filter(|d| !d.is_empty())
        .cloned()
        .or_else(|| (!setting.is_empty()).then(|| setting.to_string()))
        .unwrap_or_else(|| "bridge".to_string())
}

/// How an existing network compares with what it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Ok,
    Missing,
    /// A network of that name exists but does not carry this client's labels.
    Foreign,
    /// Ours, with wrong settings.
    Drift(Vec<String>),
}

impl State {
    pub fn word(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Missing => "missing",
            Self::Foreign => "foreign",
            Self::Drift(_) => "drift",
        }
    }
}

/// Compares one network with its expectation.
pub fn assess(expected: &Expected, actual: Option<&NetworkDetails>) -> State {
    let Some(network) = actual else { return State::Missing };
    let ours = network.label(LABEL_MANAGED) == Some("true") && network.label(LABEL_CLIENT) == Some(&expected.client);
    if !ours {
        return State::Foreign;
    }
    let mut problems = Vec::new();
    if network.label(LABEL_TIER) != Some(expected.tier.name) {
        problems.push(format!(
            "is labelled {LABEL_TIER}={} instead of {}",
            network.label(LABEL_TIER).unwrap_or("(none)"),
            expected.tier.name
        ));
    }
    if network.internal != expected.tier.internal {
        problems.push(if expected.tier.internal { "is not internal".into() } else { "is internal".into() });
    }
    if network.driver != expected.driver {
        problems.push(format!("uses driver {} instead of {}", network.driver, expected.driver));
    }
    if expected.driver == "overlay" && !network.attachable {
        problems.push("is not attachable".into());
    }
    if problems.is_empty() { State::Ok } else { State::Drift(problems) }
}
