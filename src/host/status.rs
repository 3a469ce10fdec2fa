//! `checks::builtin` — the built-in checks of multi-tenancy-status over all clients in one
//! call: each client's client.env is read once, every check is made in Rust and kept as JSON
//! in the report (no Rhai map per client), the files of the clients are checked by two
//! workers, and the firewall table is listed meanwhile. The task's script names the checks and
//! their order, so a site's copy of the task drops or reorders them, and adds its own with
//! `checks::append`.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use anyhow::{Result, anyhow, bail};
use rhai::{Array, Map};

use super::{Host, checks::KeptCheck, docker::DockerSnapshot, firewall, keycloak, restic, stack::StackInspection};
use crate::{
    format::envfile,
    tenant::check::{Check, Status},
    tenant::filecheck,
    tenant::isolation::{self, Snapshot},
    tenant::layout::{ClientLayout, Roots},
    tenant::stack_status::Inspection,
};

/// The checks `checks::builtin` makes, in the order status shows them.
const BUILTIN_CHECKS: [&str; 10] =
    ["networks", "firewall", "cross_tenant", "capabilities", "logs", "secrets", "config", "realm", "backup", "stack"];

/// Workers checking the clients' files: the files are most of status's work, and the
/// machines it runs on have a few cores.
const FILE_WORKERS: usize = 2;

/// What `checks::builtin` is given: the checks to make and what they read.
pub(super) struct Options {
    names: Vec<String>,
    snapshot: Option<DockerSnapshot>,
    stacks: Option<StackInspection>,
    /// Per client, its containers that have NET_RAW (`docker::net_raw`).
    net_raw: Option<HashMap<String, Vec<String>>>,
    /// DEEP=1: open each repository with its password.
    deep: bool,
}

impl Options {
    pub(super) fn parse(names: &[String], options: &Map) -> Result<Self> {
        if let Some(unknown) = names.iter().find(|n| !BUILTIN_CHECKS.contains(&n.as_str())) {
            bail!("checks::builtin: no built-in check {unknown:?} (there are {})", BUILTIN_CHECKS.join(", "));
        }
        let net_raw = options.get("net_raw").and_then(|m| m.read_lock::<Map>()).map(|clients| {
            let names = |list: &rhai::Dynamic| {
                list.read_lock::<Array>().map(|l| l.iter().map(|n| n.to_string()).collect()).unwrap_or_default()
            };
            clients.iter().map(|(id, list)| (id.to_string(), names(list))).collect()
        });
        Ok(Self {
            names: names.to_vec(),
            snapshot: options.get("snap").and_then(|s| s.clone().try_cast::<DockerSnapshot>()),
            stacks: options.get("stacks").and_then(|s| s.clone().try_cast::<StackInspection>()),
            net_raw,
            deep: options.get("deep").and_then(|d| d.as_bool().ok()).unwrap_or(false),
        })
    }

    fn wants(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }
}

/// An option a check needs, or the error naming it.
fn needed<'a, T>(value: Option<&'a T>, check: &str, option: &str) -> Result<&'a T> {
    value.ok_or_else(|| anyhow!("checks::builtin: the {check} check needs `{option}`"))
}

/// What the workers read to check one client.
struct Shared<'a> {
    names: &'a [String],
    roots: &'a Roots,
    site_dir: &'a Path,
    network_driver: &'a str,
    snapshot: Option<&'a Snapshot>,
    stacks: Option<&'a Inspection>,
    net_raw: Option<&'a HashMap<String, Vec<String>>>,
    /// Realms are checked live, with the run's connection: by the calling thread, in turn.
    realm_live: bool,
}

impl Shared<'_> {
    /// Whether the workers make check `name` (the others need the run: each made in turn, or
    /// for all clients at once).
    fn by_workers(&self, name: &str) -> bool {
        let by_the_run = matches!(name, "firewall" | "backup") || (name == "realm" && self.realm_live);
        !by_the_run
    }
}

/// A client's client.env, or why it is not a valid client: missing, outside the roots through
/// a symlink, unreadable (path:line), or naming another client. Read through the effects, so a
/// dry run's planned file is what counts.
fn client_env(host: &Host, layout: &ClientLayout) -> Result<BTreeMap<String, String>, String> {
    let path = &layout.env_file;
    if !host.effects.exists(path) {
        return Err(format!("{} is missing: not a valid client (run create-client)", path.display()));
    }
    let path = host.roots.confine(&path.to_string_lossy()).map_err(|e| format!("{e:#}"))?;
    let read = host.effects.read(&path);
    let env: BTreeMap<String, String> =
        envfile::parse_read(&path, read).map_err(|e| format!("{e:#}"))?.into_iter().collect();
    match env.get("CLIENT_ID") {
        Some(id) if *id == layout.id => Ok(env),
        other => Err(format!(
            "{}: CLIENT_ID is {}, not {}",
            layout.env_file.display(),
            other.map_or("missing", String::as_str),
            layout.id
        )),
    }
}

/// A client to check: its layout, and its client.env or why it is not a valid client.
type Client = (ClientLayout, Result<BTreeMap<String, String>, String>);

/// A client's checks, in the order of the names, or why it is not a valid client.
pub(super) type ClientChecks = (String, Result<Vec<KeptCheck>, String>);

/// Clients read and checked at a time: their layouts and client.env files are dropped once
/// their checks are made, so thousands of clients never hold them all.
const CHUNK: usize = 256;

/// A client's checks so far, or why it is not a valid client; and its realm check when that
/// is made with the run's live connection.
struct Made {
    id: String,
    checks: Result<Vec<KeptCheck>, String>,
    live_realm: Option<KeptCheck>,
}

/// Each client of `ids` with the checks `options` names (in the order of the names), or why
/// it is not a valid client. Checks are kept as JSON as soon as they are made.
pub(super) fn builtin_checks(host: &Host, ids: &[String], options: &Options) -> Result<Vec<ClientChecks>> {
    let snapshot = options.snapshot.as_ref().map(|s| &*s.0);
    let firewall = match options.wants("firewall") {
        true => Some((firewall::settings(host)?, needed(snapshot, "firewall", "snap")?)),
        false => None,
    };
    let mut shared = Shared {
        names: &options.names,
        roots: &host.roots,
        site_dir: &host.site_dir,
        network_driver: host.settings.get("NETWORK_DRIVER"),
        snapshot,
        stacks: options.stacks.as_ref().map(|s| &*s.0),
        net_raw: options.net_raw.as_ref(),
        realm_live: false,
    };
    let roots = &host.roots;
    std::thread::scope(|scope| {
        // `nft list table` takes a third of a second at thousands of clients: it runs meanwhile
        // (for every id: an invalid client's is dropped).
        let firewall = firewall.as_ref().map(|(settings, snapshot)| {
            scope.spawn(move || {
                let checks = firewall::checks(settings, roots, snapshot, ids)?;
                Ok::<Vec<KeptCheck>, anyhow::Error>(checks.into_iter().map(KeptCheck::from).collect())
            })
        });
        let mut made = Vec::with_capacity(ids.len());
        let mut live_known = false;
        for chunk in ids.chunks(CHUNK) {
            let clients: Vec<Client> = chunk
                .iter()
                .map(|id| {
                    let layout = ClientLayout::new(roots, id)?;
                    let env = client_env(host, &layout);
                    Ok((layout, env))
                })
                .collect::<Result<_>>()?;
            // Asked once there is a realm to check.
            if !live_known && options.wants("realm") && clients.iter().any(|(_, env)| env.is_ok()) {
                shared.realm_live = keycloak::live(host)?;
                live_known = true;
            }
            let shared = &shared;
            let checks = crate::parallel::map(&clients, FILE_WORKERS, |(layout, env)| {
                env.as_ref().ok().map(|env| worker_checks(shared, layout, env)).transpose()
            });
            for ((layout, env), checks) in clients.iter().zip(checks) {
                let (checks, live_realm) = match (env, checks?) {
                    (Ok(env), Some(checks)) => {
                        let live_realm = shared.realm_live.then(|| realm_check(host, layout, env)).transpose()?;
                        (Ok(checks), live_realm.map(KeptCheck::from))
                    }
                    (Err(reason), _) => (Err(reason.clone()), None),
                    (Ok(_), None) => unreachable!("the workers check every valid client"),
                };
                made.push(Made { id: layout.id.clone(), checks, live_realm });
            }
        }
        let valid: Vec<String> = made.iter().filter(|m| m.checks.is_ok()).map(|m| m.id.clone()).collect();
        let backups = if options.wants("backup") { restic::backup_checks(host, &valid, options.deep)? } else { vec![] };
        let (mut backups, mut firewalls) = (backups.into_iter(), join(firewall)?.into_iter());
        Ok(made
            .into_iter()
            .map(|Made { id, checks, mut live_realm }| {
                // One per id, in their order (none when not wanted).
                let mut firewall = firewalls.next();
                let checks = checks.map(|mut checks| {
                    // In the order of the names, so each lands after those named before it.
                    for (position, name) in options.names.iter().enumerate().filter(|(_, n)| !shared.by_workers(n)) {
                        let check = match name.as_str() {
                            "firewall" => firewall.take().expect("a firewall check per id"),
                            "backup" => KeptCheck::from(backups.next().expect("a backup check per valid client")),
                            _ => live_realm.take().expect("a live realm check per valid client"),
                        };
                        checks.insert(position, check);
                    }
                    checks
                });
                (id, checks)
            })
            .collect())
    })
}

/// A scoped thread's result (its panic goes on); nothing when there is no thread.
fn join<T: Default>(thread: Option<std::thread::ScopedJoinHandle<'_, Result<T>>>) -> Result<T> {
    match thread {
        Some(thread) => thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        None => Ok(T::default()),
    }
}

/// The checks of one valid client that the workers make, in the order of the names.
fn worker_checks(shared: &Shared, layout: &ClientLayout, env: &BTreeMap<String, String>) -> Result<Vec<KeptCheck>> {
    let id = layout.id.as_str();
    let roots = shared.roots;
    let mut checks = Vec::with_capacity(shared.names.len());
    for name in shared.names.iter().filter(|n| shared.by_workers(n)) {
        let check = match name.as_str() {
            "networks" => {
                let driver = isolation::client_driver(env, shared.network_driver);
                needed(shared.snapshot, name, "snap")?.network_check(id, &driver, env)
            }
            "cross_tenant" => needed(shared.snapshot, name, "snap")?.cross_tenant_check(id),
            "capabilities" => {
                let net_raw = needed(shared.net_raw, name, "net_raw")?;
                capabilities_check(net_raw.get(id).cloned().unwrap_or_default())
            }
            "logs" => filecheck::logs(&roots.confine_entry(&layout.log_dir.to_string_lossy())?),
            "secrets" => {
                let secrets_dir = roots.confine_entry(&layout.secrets_dir.to_string_lossy())?;
                filecheck::secrets(&secrets_dir, &layout.secrets_file)
            }
            "config" => {
                roots.confine_entry(&layout.config_dir.to_string_lossy())?;
                filecheck::config(layout)
            }
            "realm" => {
                let (_, problems) = keycloak::realm_file_status(
                    roots,
                    realm_name(layout, env),
                    &layout.realm_file.display().to_string(),
                    &|key| env.get(key).cloned(),
                )?;
                realm_check_of(layout, false, problems)
            }
            "stack" => needed(shared.stacks, name, "stacks")?.check(shared.site_dir, id),
            other => bail!("checks::builtin: {other} is not made by the workers"),
        };
        checks.push(KeptCheck::from(check));
    }
    Ok(checks)
}

/// Containers of the client that have NET_RAW, which sends packets with forged sources (the
/// firewall table drops them; dropping the capability stops them where they start).
fn capabilities_check(net_raw: Vec<String>) -> Check {
    if net_raw.is_empty() {
        return Check::new("capabilities", Status::Ok, "no container of the client has NET_RAW");
    }
    Check::new("capabilities", Status::Warn, format!("NET_RAW (can forge packets): {}", net_raw.join(", ")))
        .evidence(serde_json::json!({ "net_raw": net_raw }))
        .fix("FIX=1 cannot: recreate them with cap_drop: [NET_RAW]")
}

/// The realm the client's Keycloak realm is named: `CLIENT_REALM`, else its id.
fn realm_name<'a>(layout: &'a ClientLayout, env: &'a BTreeMap<String, String>) -> &'a str {
    env.get("CLIENT_REALM").map_or(layout.id.as_str(), String::as_str)
}

/// The realm check with the live realm (its settings, roles, groups and OIDC clients, their
/// secrets compared with secrets.env, never shown), made with the run's connection.
fn realm_check(host: &Host, layout: &ClientLayout, env: &BTreeMap<String, String>) -> Result<Check> {
    let realm_file = layout.realm_file.display().to_string();
    let secrets_file = layout.secrets_file.display().to_string();
    let setting = |key: &str| env.get(key).cloned();
    let realm = keycloak::realm_status(host, realm_name(layout, env), &realm_file, &setting, Some(&secrets_file))
        .map_err(|e| anyhow!("{e}"))?;
    Ok(realm_check_of(layout, realm.live, realm.problems))
}

/// The `realm` check from the problems found in the realm file (and the live realm).
fn realm_check_of(layout: &ClientLayout, live: bool, problems: Vec<String>) -> Check {
    let source = if live { "live" } else { "file" };
    let evidence =
        serde_json::json!({ "file": layout.realm_file.display().to_string(), "source": source, "problems": problems });
    if problems.is_empty() {
        let summary = if live {
            "realm.json and the live realm with its settings, roles and groups"
        } else {
            "realm.json with its roles and admin user"
        };
        Check::new("realm", Status::Ok, summary).evidence(evidence)
    } else {
        Check::new("realm", Status::Fail, problems.join("; "))
            .evidence(evidence)
            .fix(format!("FIX=1 cannot: run setup-roles CLIENT_ID={}", layout.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_name_the_containers_with_net_raw() {
        let ok = capabilities_check(vec![]);
        assert_eq!((ok.status, ok.evidence.is_null()), (Status::Ok, true));
        let warn = capabilities_check(vec!["acme-web".into(), "acme-db".into()]);
        assert_eq!(warn.status, Status::Warn);
        assert_eq!(warn.summary, "NET_RAW (can forge packets): acme-web, acme-db");
        assert_eq!(warn.evidence, serde_json::json!({ "net_raw": ["acme-web", "acme-db"] }));
        assert!(warn.fix.contains("cap_drop"));
    }

    #[test]
    fn only_built_in_checks_can_be_named() {
        let options = Map::new();
        let error = Options::parse(&["networks".into(), "weather".into()], &options).err().unwrap();
        assert!(error.to_string().contains("no built-in check \"weather\""), "{error}");
        let parsed = Options::parse(&["logs".into()], &options).unwrap();
        assert!(parsed.wants("logs") && !parsed.wants("networks"));
        assert!(needed(parsed.snapshot.as_ref(), "networks", "snap").is_err());
    }
}
