//! Containers that join two clients, found for all clients in one pass over the snapshot.

use super::*;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::Ipv4Addr,
};

use serde_json::json;

use crate::{
    drivers::docker::{ContainerSummary, LABEL_CLIENT, NetworkDetails},
    tenant::check::{Check, Status},
};

/// A container joining a client with another client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossTenant {
    pub container: String,
    pub container_id: String,
    /// `running`, `exited`, … (a stopped container joins the clients again when started).
    pub state: String,
    /// (network, client, or "" for a network of no client) of every network it is on.
    pub networks: Vec<(String, String)>,
    pub shared_ingress: bool,
    /// Empty for an allowed shared-ingress attachment.
    pub reason: String,
    /// The commands that end it (`docker network disconnect NETWORK CONTAINER; ...`).
    pub fix: String,
}

impl Snapshot {
    /// Containers that join this client with another client, from the client's side: a
    /// container belongs to a client when it is labelled `agency.client=<id>` or attached to
    /// one of the client's networks. It fails the check of every client it belongs to when it
    /// belongs to two clients, or when it shares any network (a plain one, the default
    /// `bridge`, `host`) with a container of another client. A container labelled
    /// `agency.shared-ingress=true` whose client networks are all frontends (Traefik) belongs
    /// to no client and is allowed; on any other client network it counts like any other.
    pub fn cross_tenant(&self, client: &str) -> Vec<CrossTenant> {
        self.cross.get(client).cloned().unwrap_or_default()
    }

    pub(super) fn find_cross_tenant(&self) -> HashMap<String, Vec<CrossTenant>> {
        struct Seen {
            owners: BTreeSet<String>,
            shared: bool,
            /// (network, owning client or "")
            networks: Vec<(String, String)>,
        }
        let seen: Vec<Seen> = self
            .containers
            .iter()
            .map(|container| {
                let networks: Vec<(String, String)> = container
                    .networks
                    .iter()
                    .map(|n| (n.clone(), self.owner(n).map(|(c, _)| c.to_string()).unwrap_or_default()))
                    .collect();
                let client_tiers: Vec<&str> =
                    container.networks.iter().filter_map(|n| self.owner(n).map(|(_, t)| t)).collect();
                let shared = container.label(LABEL_SHARED_INGRESS) == Some("true")
                    && client_tiers.iter().all(|tier| *tier == "frontend");
                let mut owners = BTreeSet::new();
                if !shared {
                    owners.extend(container.label(LABEL_CLIENT).filter(|c| !c.is_empty()).map(str::to_string));
                    owners.extend(networks.iter().filter(|(_, c)| !c.is_empty()).map(|(_, c)| c.clone()));
                }
                Seen { owners, shared, networks }
            })
            .collect();
        // (client, container index) → reasons, fix commands
        let mut found: BTreeMap<(String, usize), (Vec<String>, Vec<String>)> = BTreeMap::new();
        let disconnect = |network: &str, container: &ContainerSummary| {
            format!("docker network disconnect {network} {}", container.name)
        };
        for (index, (container, seen)) in self.containers.iter().zip(&seen).enumerate() {
            if seen.owners.len() < 2 {
                continue;
            }
            let label = container.label(LABEL_CLIENT).filter(|c| !c.is_empty());
            for client in &seen.owners {
                let others: Vec<&str> = seen.owners.iter().map(String::as_str).filter(|c| c != client).collect();
                let on_own = seen.networks.iter().any(|(_, c)| c == client);
                let on_others = seen.networks.iter().any(|(_, c)| !c.is_empty() && c != client);
                let reason = if container.label(LABEL_SHARED_INGRESS) == Some("true") {
                    let inner: Vec<&str> = seen
                        .networks
                        .iter()
                        .filter(|(n, c)| !c.is_empty() && self.owner(n).is_some_and(|(_, t)| t != "frontend"))
                        .map(|(n, _)| n.as_str())
                        .collect();
                    format!(
                        "{} is marked {LABEL_SHARED_INGRESS} but is attached to {}, not only to frontend networks, \
                         joining {client} and {}",
                        container.name,
                        inner.join(", "),
                        others.join(", ")
                    )
                } else if on_own && on_others {
                    format!("{} is attached to networks of {client} and {}", container.name, others.join(", "))
                } else if on_own {
                    format!(
                        "{} is labelled {LABEL_CLIENT}={} but is attached to {client}'s networks",
                        container.name,
                        label.unwrap_or("?")
                    )
                } else {
                    format!(
                        "{} is labelled {LABEL_CLIENT}={client} but is attached to networks of {}",
                        container.name,
                        others.join(", ")
                    )
                };
                // The container stays with the client of its label (else with the one whose row
                // this is) and leaves every other client's network; a shared ingress leaves
                // every client network that is not a frontend.
                let fix: Vec<String> = if container.label(LABEL_SHARED_INGRESS) == Some("true") {
                    seen.networks
                        .iter()
                        .filter(|(n, c)| !c.is_empty() && self.owner(n).is_some_and(|(_, t)| t != "frontend"))
                        .map(|(n, _)| disconnect(n, container))
                        .collect()
                } else {
                    let home = label.unwrap_or(client);
                    let fix: Vec<String> = seen
                        .networks
                        .iter()
                        .filter(|(_, c)| !c.is_empty() && c != home)
                        .map(|(n, _)| disconnect(n, container))
                        .collect();
                    if fix.is_empty() {
                        vec![format!("remove {} or relabel it (it is labelled for {home})", container.name)]
                    } else {
                        fix
                    }
                };
                let entry = found.entry((client.clone(), index)).or_default();
                entry.0.push(reason);
                entry.1.extend(fix);
            }
        }
        // Any network (not the client networks, handled above: a container there belongs to
        // that client) that holds containers of two clients joins them.
        for (network, indexes) in &self.containers_by_network {
            if network == "none" || self.owner(network).is_some() {
                continue;
            }
            let mut by_client: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for &index in indexes {
                for owner in &seen[index].owners {
                    by_client.entry(owner.as_str()).or_default().push(index);
                }
            }
            if by_client.len() < 2 {
                continue;
            }
            for (client, members) in &by_client {
                let others: Vec<String> = by_client
                    .iter()
                    .filter(|(c, _)| c != &client)
                    .map(|(c, m)| format!("{c} ({})", self.containers[m[0]].name))
                    .collect();
                for &index in members {
                    let container = &self.containers[index];
                    let entry = found.entry((client.to_string(), index)).or_default();
                    entry.0.push(format!(
                        "{} shares network {network} with containers of {}",
                        container.name,
                        others.join(", ")
                    ));
                    entry.1.push(disconnect(network, container));
                }
            }
        }
        // Allowed shared ingress, shown per client whose frontend it is on.
        for (index, seen) in seen.iter().enumerate() {
            if !seen.shared {
                continue;
            }
            let clients: BTreeSet<&str> =
                seen.networks.iter().filter(|(_, c)| !c.is_empty()).map(|(_, c)| c.as_str()).collect();
            if clients.len() < 2 {
                continue;
            }
            for client in clients {
                found.entry((client.to_string(), index)).or_default();
            }
        }
        let mut result: HashMap<String, Vec<CrossTenant>> = HashMap::new();
        for ((client, index), (reasons, mut fix)) in found {
            let container = &self.containers[index];
            fix.dedup();
            result.entry(client).or_default().push(CrossTenant {
                container: container.name.clone(),
                container_id: container.id.clone(),
                state: container.state.clone(),
                networks: seen[index].networks.clone(),
                shared_ingress: seen[index].shared,
                reason: reasons.join("; "),
                fix: fix.join("; "),
            });
        }
        for list in result.values_mut() {
            list.sort_by(|a, b| (&a.container, &a.container_id).cmp(&(&b.container, &b.container_id)));
        }
        result
    }

    /// The cross-tenant check of one client.
    pub fn cross_tenant_check(&self, client: &str) -> Check {
        let findings = self.cross_tenant(client);
        let violations: Vec<&CrossTenant> = findings.iter().filter(|f| !f.reason.is_empty()).collect();
        let shared: Vec<&str> = findings.iter().filter(|f| f.reason.is_empty()).map(|f| f.container.as_str()).collect();
        let evidence = json!({
            "containers_on_client_networks": self.client_networks.get(client).into_iter().flatten()
                .map(|n| self.attached(n).len()).sum::<usize>(),
            "violations": violations.iter().map(|f| json!({
                "container": f.container, "id": f.container_id, "state": f.state, "reason": f.reason,
                "networks": f.networks.iter().map(|(n, c)| json!({"network": n, "client": c})).collect::<Vec<_>>(),
                "fix": f.fix,
            })).collect::<Vec<_>>(),
            "shared_ingress": shared,
        });
        if violations.is_empty() {
            let summary = if shared.is_empty() {
                "no container joins another client's networks".to_string()
            } else {
                format!("no container joins another client's networks (shared ingress: {})", shared.join(", "))
            };
            Check::new("cross_tenant", Status::Ok, summary).evidence(evidence)
        } else {
            let fix = violations.iter().map(|f| f.fix.as_str()).collect::<Vec<_>>().join("; ");
            Check::new(
                "cross_tenant",
                Status::Fail,
                violations.iter().map(|f| f.reason.as_str()).collect::<Vec<_>>().join("; "),
            )
            .evidence(evidence)
            .fix(format!("FIX=1 cannot detach containers: {fix}"))
        }
    }

    /// The networks of `client` this snapshot knows, in tier order where possible.
    pub fn client_networks(&self, client: &str) -> Vec<&NetworkDetails> {
        let mut networks: Vec<&NetworkDetails> =
            self.client_networks.get(client).into_iter().flatten().filter_map(|n| self.network(n)).collect();
        networks.sort_by_key(|n| {
            TIERS.iter().position(|t| Some(t.name) == self.owner(&n.name).map(|(_, tier)| tier)).unwrap_or(TIERS.len())
        });
        networks
    }

    /// Running containers of other clients with an address, one per network, at most `limit`.
    pub(super) fn other_tenant_targets(&self, client: &str, limit: usize) -> Vec<(Ipv4Addr, String, String)> {
        let mut targets = Vec::new();
        for network in &self.networks {
            let Some((owner, _)) = self.owner(&network.name) else { continue };
            if owner == client {
                continue;
            }
            let endpoint = network.containers.iter().find_map(|e| e.ipv4.map(|ip| (ip, e.name.clone())));
            if let Some((ip, name)) = endpoint {
                targets.push((ip, name, owner.to_string()));
                if targets.len() >= limit {
                    break;
                }
            }
        }
        targets
    }
}
