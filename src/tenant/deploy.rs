//! What deploying a client's stack needs besides Compose: the client's limits, the compose
//! process's environment (client values, secrets, the variables the stack names), and a
//! fingerprint per service of everything its container is made from, carried by the container
//! (label `agency.deploy`), so an up-to-date stack is recognised from one `docker ps` without
//! starting Compose (≈ 0.5 s for Debian's `docker-compose`).

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use sha2::{Digest, Sha256};

use crate::{
    drivers::{compose::LABEL_SERVICE as COMPOSE_SERVICE, docker::ContainerSummary, swarm},
    tenant::stack::{LABEL_DEPLOY, Stack, interpolate},
};

/// Defaults of the limits create-client records in client.env.
pub const DEFAULT_CPU_LIMIT: &str = "1.0";
pub const DEFAULT_MEMORY_LIMIT: &str = "512m";
pub const DEFAULT_PIDS_LIMIT: &str = "512";

/// A client's limits, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub cpus: f64,
    pub memory: String,
    pub pids: i64,
}

impl Limits {
    /// From client.env (`CPU_LIMIT`, `MEMORY_LIMIT`, `PIDS_LIMIT`), the defaults for keys it lacks.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Limits> {
        let get = |key: &str, default: &'static str| env.get(key).map(String::as_str).unwrap_or(default).to_string();
        let cpu = get("CPU_LIMIT", DEFAULT_CPU_LIMIT);
        let cpus = cpu.parse::<f64>().ok().filter(|c| c.is_finite() && *c > 0.0 && *c <= 1024.0);
        let Some(cpus) = cpus else { bail!("CPU_LIMIT must be a number of CPUs such as 0.5 or 2, got {cpu:?}") };
        let memory = get("MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT).to_lowercase();
        let digits = memory.trim_end_matches(['b', 'k', 'm', 'g']);
        if digits.is_empty()
            || !digits.chars().all(|c| c.is_ascii_digit())
            || memory.len() - digits.len() > 1
            || digits.parse::<u64>().is_err()
        {
            bail!("MEMORY_LIMIT must be a size such as 512m or 2g, got {memory:?}");
        }
        let pids_text = get("PIDS_LIMIT", DEFAULT_PIDS_LIMIT);
        let Some(pids) = pids_text.parse::<i64>().ok().filter(|p| *p > 0) else {
            bail!("PIDS_LIMIT must be a positive number of processes, got {pids_text:?}");
        };
        Ok(Limits { cpus, memory, pids })
    }
}

/// The compose process's environment: client.env, then secrets.env, the issuer of the
/// client's realm as `OIDC_ISSUER` when Keycloak is configured (`keycloak_base`: KEYCLOAK_URL
/// with its path prefix), then (for
/// variables the stack names that none of them sets) the runner's own environment; every
/// reference without a default must be set.
pub fn compose_env(
    stack: &Stack,
    client: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, String>,
    keycloak_base: Option<&str>,
    outside: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>> {
    let mut env = client.clone();
    env.extend(secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some(base) = keycloak_base {
        let realm = client.get("CLIENT_REALM").or_else(|| client.get("CLIENT_ID")).cloned().unwrap_or_default();
        env.insert(crate::tenant::realm::ISSUER_VARIABLE.into(), crate::tenant::realm::issuer(base, &realm));
    }
    let mut missing = Vec::new();
    for reference in stack.references() {
        if env.contains_key(&reference.name) {
            continue;
        }
        match outside(&reference.name) {
            Some(value) => {
                env.insert(reference.name.clone(), value);
            }
            None if reference.default.is_none() => missing.push(format!("${{{}}}", reference.name)),
            None => {}
        }
    }
    if !missing.is_empty() {
        bail!(
            "stack {} refers to {}, which neither client.env, secrets.env nor the environment sets",
            stack.name,
            missing.join(", ")
        );
    }
    Ok(env)
}

/// Each service's image name, its references filled in.
pub fn images(stack: &Stack, env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    stack.services.iter().map(|s| (s.name.clone(), interpolate(&s.image, env))).collect()
}

/// Per service: a SHA-256 of its section of the stack, its section of the override, the values
/// of the variables it refers to, its image's id and the stack's volumes. Values of secrets
/// go in only through the hash.
pub fn fingerprints(
    stack: &Stack,
    rendered: &serde_json::Value,
    env: &BTreeMap<String, String>,
    image_ids: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let images = images(stack, env);
    stack
        .services
        .iter()
        .map(|service| {
            let mut hash = Sha256::new();
            let mut part = |bytes: &[u8]| {
                hash.update((bytes.len() as u64).to_le_bytes());
                hash.update(bytes);
            };
            part(service.name.as_bytes());
            part(service.config.to_string().as_bytes());
            part(rendered["services"][&service.name].to_string().as_bytes());
            part(rendered["volumes"].to_string().as_bytes());
            for reference in crate::tenant::stack::references_in(&service.config) {
                part(reference.name.as_bytes());
                part(env.get(&reference.name).map_or(b"\0unset" as &[u8], |v| v.as_bytes()));
            }
            let image = images.get(&service.name).cloned().unwrap_or_default();
            part(image.as_bytes());
            part(image_ids.get(&image).map_or("", String::as_str).as_bytes());
            let digest = hash.finalize();
            let text: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
            (service.name.clone(), text)
        })
        .collect()
}

/// What a deploy must do, judged from what runs of the client's stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Needed {
    /// Every service has one running instance deployed from the same inputs, and nothing else
    /// runs in the project.
    UpToDate,
    /// Nothing deployed yet.
    Create,
    /// These services (and instances of services no longer in the stack) change.
    Update(Vec<String>),
}

/// One deployed instance of a service: a Compose container, or a Swarm service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance<'a> {
    pub service: &'a str,
    /// Running as wanted (a container running; all of a Swarm service's tasks).
    pub running: bool,
    /// Its `agency.deploy` label.
    pub fingerprint: Option<&'a str>,
}

/// The instances of a Compose project's containers.
pub fn container_instances(containers: &[ContainerSummary]) -> Vec<Instance<'_>> {
    containers
        .iter()
        .map(|c| Instance {
            service: c.label(COMPOSE_SERVICE).unwrap_or(""),
            running: c.state == "running",
            fingerprint: c.label(LABEL_DEPLOY),
        })
        .collect()
}

/// The instances of a Swarm stack's services.
pub fn service_instances<'a>(namespace: &str, services: &'a [swarm::Service]) -> Vec<Instance<'a>> {
    services
        .iter()
        .map(|s| Instance {
            service: s.short_name(namespace),
            running: s.desired > 0 && s.running == s.desired,
            fingerprint: s.labels.get(LABEL_DEPLOY).map(String::as_str),
        })
        .collect()
}

pub fn needed(fingerprints: &BTreeMap<String, String>, instances: &[Instance]) -> Needed {
    if instances.is_empty() {
        return Needed::Create;
    }
    let mut changed: Vec<String> = Vec::new();
    for (service, fingerprint) in fingerprints {
        let mine: Vec<&Instance> = instances.iter().filter(|i| i.service == service).collect();
        let fresh = matches!(mine.as_slice(), [i] if i.running && i.fingerprint == Some(fingerprint.as_str()));
        if !fresh {
            changed.push(service.clone());
        }
    }
    for instance in instances {
        if !fingerprints.contains_key(instance.service) {
            changed.push(format!("{} (not in the stack)", instance.service));
        }
    }
    if changed.is_empty() { Needed::UpToDate } else { Needed::Update(changed) }
}

/// A line diff of two texts for plans (`-`/`+` lines with two of context).
pub fn diff(old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new).unified_diff().context_radius(2).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(service: &str, state: &str, fingerprint: &str) -> ContainerSummary {
        ContainerSummary {
            id: service.into(),
            name: service.into(),
            image: "x".into(),
            state: state.into(),
            labels: [(COMPOSE_SERVICE.to_string(), service.to_string()), (LABEL_DEPLOY.into(), fingerprint.into())]
                .into(),
            networks: vec![],
            ports: String::new(),
        }
    }

    #[test]
    fn limits_are_checked() {
        let env = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert_eq!(Limits::from_env(&BTreeMap::new()).unwrap().pids, 512);
        assert_eq!(Limits::from_env(&env("MEMORY_LIMIT", "2G")).unwrap().memory, "2g");
        for (k, v) in [("CPU_LIMIT", "0"), ("CPU_LIMIT", "x"), ("MEMORY_LIMIT", "12mb"), ("PIDS_LIMIT", "-1")] {
            assert!(Limits::from_env(&env(k, v)).is_err(), "{k}={v}");
        }
    }

    #[test]
    fn judges_what_a_deploy_must_do() {
        let prints: BTreeMap<String, String> = [("web".into(), "a".into()), ("db".into(), "b".into())].into();
        assert_eq!(needed(&prints, &[]), Needed::Create);
        let fresh = [container("web", "running", "a"), container("db", "running", "b")];
        assert_eq!(needed(&prints, &container_instances(&fresh)), Needed::UpToDate);
        let stale =
            [container("web", "running", "old"), container("db", "exited", "b"), container("cron", "running", "c")];
        assert_eq!(
            needed(&prints, &container_instances(&stale)),
            Needed::Update(vec!["db".into(), "web".into(), "cron (not in the stack)".into()])
        );
        let twice =
            [container("web", "running", "a"), container("web", "running", "a"), container("db", "running", "b")];
        assert_eq!(needed(&prints, &container_instances(&twice)), Needed::Update(vec!["web".into()]));
    }

    #[test]
    fn judges_a_swarm_stack_by_its_services() {
        let prints: BTreeMap<String, String> = [("web".into(), "a".into())].into();
        let service = |name: &str, running: u32, fingerprint: &str| swarm::Service {
            id: name.into(),
            name: format!("acme_{name}"),
            running,
            desired: 1,
            labels: [(LABEL_DEPLOY.to_string(), fingerprint.to_string())].into(),
        };
        assert_eq!(needed(&prints, &service_instances("acme", &[service("web", 1, "a")])), Needed::UpToDate);
        assert_eq!(
            needed(&prints, &service_instances("acme", &[service("web", 0, "a")])),
            Needed::Update(vec!["web".into()])
        );
        assert_eq!(
            needed(&prints, &service_instances("acme", &[service("web", 1, "b"), service("old", 1, "c")])),
            Needed::Update(vec!["web".into(), "old (not in the stack)".into()])
        );
    }
}
