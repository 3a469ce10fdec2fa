//! A client's stack on a Swarm (SPEC §10): when the client's networks are overlay
//! (`NETWORK_DRIVER`) and the engine is a Swarm manager, deploy-client runs `docker stack
//! deploy` instead of Compose. The override says the same in Swarm's terms: limits and the
//! restart policy under `deploy:`, the labels on the services too. `docker stack deploy` has
//! no `security_opt`: a Swarm service cannot ask for no-new-privileges (status says so).

use serde_json::{Map, Value, json};

/// How a client's stack runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// `docker compose` / `docker-compose`, project `<id>`.
    Compose,
    /// `docker stack deploy`, stack `<id>`.
    Swarm,
}

impl Runner {
    /// Swarm for a client on overlay networks when this engine is a Swarm manager; Compose
    /// otherwise (overlay networks are attachable, so Compose on a worker still works).
    pub fn choose(network_driver: &str, swarm_manager: bool) -> Runner {
        if network_driver == "overlay" && swarm_manager { Runner::Swarm } else { Runner::Compose }
    }
}

/// The message status gives for a Swarm client's missing no-new-privileges.
pub const NO_NEW_PRIVILEGES_NOTE: &str = "Swarm services cannot set no-new-privileges; \
     set \"no-new-privileges\": true in the engine's daemon.json";

/// The Compose override of [`crate::tenant::stack::Stack::render_override`] rewritten for
/// `docker stack deploy`: `cpus`, `mem_limit`, `pids_limit` become `deploy.resources.limits`,
/// `restart` a `deploy.restart_policy` (`any`), the container labels are the service's labels
/// too (where deploy-client reads its fingerprints), and `security_opt`, which Swarm ignores,
/// goes. Service names resolve to the tasks' own addresses (`endpoint_mode: dnsrr`): a
/// virtual IP needs the kernel's IPVS, which not every host has, and buys nothing without
/// published ports, which stacks may not have.
pub fn swarm_override(compose: &Value) -> Value {
    let mut rendered = compose.clone();
    let Some(services) = rendered.get_mut("services").and_then(Value::as_object_mut) else { return rendered };
    for service in services.values_mut() {
        let Some(config) = service.as_object_mut() else { continue };
        let mut limits = Map::new();
        if let Some(cpus) = config.remove("cpus") {
            // Swarm's loader reads the CPU limit as text ("0.5").
            limits.insert("cpus".into(), json!(cpus.to_string()));
        }
        if let Some(memory) = config.remove("mem_limit") {
            limits.insert("memory".into(), memory);
        }
        if let Some(pids) = config.remove("pids_limit") {
            limits.insert("pids".into(), pids);
        }
        config.remove("restart");
        config.remove("security_opt");
        let labels = config.get("labels").cloned().unwrap_or_else(|| json!({}));
        config.insert(
            "deploy".into(),
            json!({
                "labels": labels,
                "resources": { "limits": limits },
                "restart_policy": { "condition": "any" },
                "endpoint_mode": "dnsrr",
            }),
        );
    }
    rendered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::stack::{ClientSpec, Stack};

    #[test]
    fn swarm_only_for_overlay_clients_on_a_manager() {
        assert_eq!(Runner::choose("overlay", true), Runner::Swarm);
        assert_eq!(Runner::choose("overlay", false), Runner::Compose);
        assert_eq!(Runner::choose("bridge", true), Runner::Compose);
    }

    #[test]
    fn limits_and_labels_move_under_deploy() {
        let stack = Stack::parse(
            "site",
            "test",
            "services:\n  web:\n    image: x\n    labels: {agency.tiers: 'frontend', agency.http.port: 80}\n",
        )
        .unwrap();
        let compose = stack.render_override(&ClientSpec { id: "acme", cpus: 0.5, memory: "64m", pids: 50 });
        let swarm = swarm_override(&compose);
        let web = &swarm["services"]["web"];
        assert_eq!(web["deploy"]["resources"]["limits"], json!({"cpus": "0.5", "memory": "64m", "pids": 50}));
        assert_eq!(web["deploy"]["restart_policy"]["condition"], "any");
        assert_eq!(web["deploy"]["endpoint_mode"], "dnsrr");
        assert_eq!(web["deploy"]["labels"]["agency.client"], "acme");
        assert_eq!(web["deploy"]["labels"], web["labels"]);
        assert_eq!(web["cap_drop"], json!(["NET_RAW"]));
        for gone in ["cpus", "mem_limit", "pids_limit", "restart", "security_opt"] {
            assert!(web.get(gone).is_none(), "{gone} stayed");
        }
        assert_eq!(swarm["networks"], compose["networks"]);
    }
}
