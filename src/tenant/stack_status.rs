//! The `stack` check of multi-tenancy-status, for all clients from two docker calls (`ps -q`
//! of agency's containers, one `inspect` of them all), and a third (`docker service ls`) when
//! some client runs on overlay networks: each deployed service running (restarts, health when
//! defined; a Swarm service's tasks), every container with the client's limits and the hardened
//! defaults, only the routed service (and the shared ingress) on the frontend network, and the
//! client's domain its own. Of a Swarm stack, the task containers on this node are checked.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::{
    drivers::{docker::LABEL_PROBE, process::Command, swarm},
    tenant::check::{Check, Status},
    tenant::deploy::Limits,
    tenant::isolation::ENV_DRIVER,
    tenant::layout::{ClientLayout, Roots},
    tenant::policy::CLIENT_LABEL,
    tenant::stack::{DEFAULT_STACK, LABEL_SERVICE, Stack},
    tenant::swarm::NO_NEW_PRIVILEGES_NOTE,
};

/// What status needs of one container.
#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
    pub service: String,
    pub status: String,
    pub health: Option<String>,
    pub restarts: u64,
    pub nano_cpus: i64,
    pub memory: i64,
    pub pids: i64,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub restart_policy: String,
    pub networks: Vec<String>,
    /// A Swarm task's container (Swarm restarts tasks; it cannot set no-new-privileges).
    pub swarm_task: bool,
    /// The values of its environment (secrets among them: only searched, never shown).
    pub env_values: Vec<String>,
}

pub struct Inspection {
    by_client: HashMap<String, Vec<Container>>,
    /// The Swarm services of clients, as `docker service ls` shows them (without labels).
    services: HashMap<String, Vec<swarm::Service>>,
    domains: BTreeMap<String, Vec<String>>,
    env: HashMap<String, BTreeMap<String, String>>,
    /// With Keycloak, where its realms' issuers start (KEYCLOAK_URL with the path prefix), or
    /// why that is not known: a routed service with an OIDC client must name its realm's issuer.
    keycloak_base: Option<std::result::Result<String, String>>,
}

/// Domain → the clients whose client.env records it.
pub fn domains(roots: &Roots) -> BTreeMap<String, Vec<String>> {
    domains_of(&client_envs(roots))
}

fn domains_of(envs: &[(String, BTreeMap<String, String>)]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, env) in envs {
        if let Some(domain) = env.get("CLIENT_DOMAIN") {
            map.entry(domain.clone()).or_default().push(id.clone());
        }
    }
    map
}

fn client_envs(roots: &Roots) -> Vec<(String, BTreeMap<String, String>)> {
    // An unreadable clients dir is reported by the task that lists clients; here it holds none.
    roots
        .client_ids()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|id| {
            let layout = ClientLayout::new(roots, &id).ok()?;
            let text = std::fs::read_to_string(&layout.env_file).ok()?;
            Some((id, crate::format::envfile::parse(&text).ok()?.into_iter().collect()))
        })
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

impl Inspection {
    pub fn take(
        docker: &Path,
        roots: &Roots,
        keycloak_base: Option<std::result::Result<String, String>>,
    ) -> Result<Inspection> {
        let listed = Command::new(docker)
            .args(["ps", "-a", "-q", "--no-trunc", "--filter", "label=agency.managed=true"])
            .output()?;
        if !listed.success() {
            bail!("`docker ps` failed: {}", listed.first_error_line());
        }
        let ids: Vec<&str> = listed.stdout.split_whitespace().collect();
        let mut by_client: HashMap<String, Vec<Container>> = HashMap::new();
        if !ids.is_empty() {
            let mut args = vec!["inspect", "--type", "container", "--"];
            args.extend(&ids);
            let output = Command::new(docker).args(&args).output()?;
            // A container removed between the two calls makes inspect fail for it alone.
            let inspected: Vec<Value> = serde_json::from_str(&output.stdout).unwrap_or_default();
            for c in inspected {
                let labels = &c["Config"]["Labels"];
                let label = |k: &str| labels[k].as_str().unwrap_or("").to_string();
                let client = label(CLIENT_LABEL);
                if client.is_empty() || label(LABEL_PROBE) == "true" {
                    continue;
                }
                let host = &c["HostConfig"];
                by_client.entry(client).or_default().push(Container {
                    name: c["Name"].as_str().unwrap_or("").trim_start_matches('/').to_string(),
                    service: label(LABEL_SERVICE),
                    status: c["State"]["Status"].as_str().unwrap_or("").to_string(),
                    health: c["State"]["Health"]["Status"].as_str().map(str::to_string),
                    restarts: c["RestartCount"].as_u64().unwrap_or(0),
                    nano_cpus: host["NanoCpus"].as_i64().unwrap_or(0),
                    memory: host["Memory"].as_i64().unwrap_or(0),
                    pids: host["PidsLimit"].as_i64().unwrap_or(0),
                    cap_drop: strings(&host["CapDrop"]),
                    security_opt: strings(&host["SecurityOpt"]),
                    restart_policy: host["RestartPolicy"]["Name"].as_str().unwrap_or("").to_string(),
                    networks: c["NetworkSettings"]["Networks"]
                        .as_object()
                        .map(|m| m.keys().cloned().collect())
                        .unwrap_or_default(),
                    swarm_task: !label(swarm::LABEL_NAMESPACE).is_empty(),
                    env_values: strings(&c["Config"]["Env"])
                        .into_iter()
                        .filter_map(|pair| pair.split_once('=').map(|(_, value)| value.to_string()))
                        .collect(),
                });
            }
        }
        let envs = client_envs(roots);
        let mut services: HashMap<String, Vec<swarm::Service>> = HashMap::new();
        if envs.iter().any(|(_, env)| env.get(ENV_DRIVER).is_some_and(|d| d == "overlay")) {
            // Not a manager: no client runs as a Swarm stack here.
            for service in swarm::list(docker, "agency.managed=true")?.unwrap_or_default() {
                if let Some((client, _)) = service.name.split_once('_') {
                    services.entry(client.to_string()).or_default().push(service);
                }
            }
        }
        Ok(Inspection {
            by_client,
            services,
            domains: domains_of(&envs),
            env: envs.into_iter().collect(),
            keycloak_base,
        })
    }

    pub fn check(&self, site_dir: &Path, id: &str) -> Check {
        let env = self.env.get(id).cloned().unwrap_or_default();
        let mut problems: Vec<String> = Vec::new();
        let mut warnings: Vec<String> = Vec::new();
        if let Some(domain) = env.get("CLIENT_DOMAIN") {
            let others: Vec<&String> = self.domains.get(domain).into_iter().flatten().filter(|o| *o != id).collect();
            if !others.is_empty() {
                problems.push(format!(
                    "domain {domain} is also recorded by {}",
                    others.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        let services = self.services.get(id).map(Vec::as_slice).unwrap_or_default();
        // A Swarm keeps the exited containers of replaced tasks: only its running ones count.
        let containers: Vec<&Container> =
            self.by_client.get(id).into_iter().flatten().filter(|c| !c.swarm_task || c.status == "running").collect();
        let stack_name = env.get("STACK").map_or(DEFAULT_STACK, String::as_str);
        let mut evidence = json!({
            "stack": stack_name,
            "containers": containers.iter().map(|c| json!({
                "name": c.name, "service": c.service, "status": c.status, "health": c.health, "restarts": c.restarts,
            })).collect::<Vec<_>>(),
        });
        if !services.is_empty() {
            evidence["swarm_services"] = services
                .iter()
                .map(|s| json!({ "name": s.name, "running": s.running, "desired": s.desired }))
                .collect();
        }
        for service in services.iter().filter(|s| s.running < s.desired || s.desired == 0) {
            warnings.push(format!("service {} runs {}/{} task(s)", service.name, service.running, service.desired));
        }
        if containers.is_empty() && services.is_empty() {
            return match problems.is_empty() {
                true => {
                    Check::new("stack", Status::Skip, format!("stack {stack_name} not deployed")).evidence(evidence)
                }
                false => Check::new("stack", Status::Fail, problems.join("; ")).evidence(evidence),
            };
        }
        let routed = Stack::load(site_dir, stack_name).ok().and_then(|s| s.routed().map(|r| r.name.clone()));
        let limits = Limits::from_env(&env).ok();
        let frontend = format!("{id}_frontend");
        let mut swarm_without_no_new_privileges = false;
        for c in &containers {
            if c.status != "running" {
                warnings.push(format!("{} is {}", c.name, c.status));
            } else if c.health.as_deref().is_some_and(|h| h != "healthy" && h != "starting") {
                warnings.push(format!("{} is {}", c.name, c.health.as_deref().unwrap_or("")));
            }
            if c.restarts > 0 {
                warnings.push(format!("{} restarted {} time(s)", c.name, c.restarts));
            }
            if !c
                .cap_drop
                .iter()
                .any(|cap| cap.eq_ignore_ascii_case("NET_RAW") || cap.eq_ignore_ascii_case("CAP_NET_RAW"))
            {
                problems.push(format!("{} keeps NET_RAW", c.name));
            }
            if !c.security_opt.iter().any(|o| o == "no-new-privileges:true" || o == "no-new-privileges") {
                if c.swarm_task {
                    swarm_without_no_new_privileges = true;
                } else {
                    problems.push(format!("{} lacks no-new-privileges", c.name));
                }
            }
            if !c.swarm_task && (c.restart_policy.is_empty() || c.restart_policy == "no") {
                warnings.push(format!("{} has no restart policy", c.name));
            }
            if let Some(limits) = &limits {
                let cpus = (limits.cpus * 1e9).round() as i64;
                if c.nano_cpus != cpus || c.memory != memory_bytes(&limits.memory) || c.pids != limits.pids {
                    problems.push(format!(
                        "{} runs without the client's limits (cpus {}, memory {}, pids {})",
                        c.name, limits.cpus, limits.memory, limits.pids
                    ));
                }
            }
            if c.networks.contains(&frontend) && routed.as_deref() != Some(c.service.as_str()) {
                problems.push(format!("{} is on {frontend} but is not the service the ingress routes to", c.name));
            }
        }
        if swarm_without_no_new_privileges {
            warnings.push(NO_NEW_PRIVILEGES_NOTE.to_string());
        }
        if let Some(routed) = routed.as_deref() {
            problems.extend(self.issuer_problems(id, &env, routed, &containers));
        }
        let running = containers.iter().filter(|c| c.status == "running").count();
        let (status, summary) = if !problems.is_empty() {
            (Status::Fail, [problems, warnings].concat().join("; "))
        } else if !warnings.is_empty() {
            (Status::Warn, warnings.join("; "))
        } else {
            (Status::Ok, format!("stack {stack_name}: {running} container(s) running, limited and hardened"))
        };
        Check::new("stack", status, summary).evidence(evidence)
    }
}

impl Inspection {
    /// With Keycloak configured, the routed service, when it has an OIDC client in the
    /// client's realm (OIDC_SERVICES), must name that realm's issuer in its environment:
    /// else it signs its users in elsewhere, or nowhere.
    fn issuer_problems(
        &self,
        id: &str,
        env: &BTreeMap<String, String>,
        routed: &str,
        containers: &[&Container],
    ) -> Vec<String> {
        let has_client = env.get("OIDC_SERVICES").is_some_and(|s| s.split(',').any(|s| s.trim() == routed));
        let Some(base) = self.keycloak_base.as_ref().filter(|_| has_client) else {
            return Vec::new();
        };
        let realm = env.get("CLIENT_REALM").map_or(id, String::as_str);
        let base = match base {
            Ok(base) => base,
            Err(e) => return vec![format!("the issuer of realm {realm} is not known: {e}")],
        };
        let issuer = crate::tenant::realm::issuer(base, realm);
        containers
            .iter()
            .filter(|c| c.service == routed && !c.env_values.iter().any(|v| v.trim_end_matches('/') == issuer))
            .map(|c| {
                format!(
                    "{} (service {routed}, an OIDC client of realm {realm}) does not name the realm's issuer {issuer} in \
                     its environment (${{{}}} hands it over)",
                    c.name,
                    crate::tenant::realm::ISSUER_VARIABLE
                )
            })
            .collect()
    }
}

/// Docker's byte count of a `512m`-style size.
fn memory_bytes(text: &str) -> i64 {
    let (digits, unit) = text.split_at(text.trim_end_matches(['b', 'k', 'm', 'g']).len());
    let base: i64 = digits.parse().unwrap_or(0);
    base * match unit {
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => 1,
    }
}
