//! `checks::builtin` — the built-in checks of multi-tenancy-status over all clients in one
//! call: each client's client.env is read once, every check is made in Rust and handed to the
//! report as it is (no Rhai map per client), and the firewall table is listed while the files
//! are checked. The task's script names the checks and their order, so a site's copy of the
//! task drops or reorders them, and adds its own with `checks::append`.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use rhai::{Array, Map};

use super::{Host, checks::KeptCheck, docker::DockerSnapshot, firewall, keycloak, restic, stack::StackInspection};
use crate::{
    format::envfile,
    tenant::check::{Check, Status},
    tenant::filecheck,
    tenant::isolation::{self, Snapshot},
    tenant::layout::ClientLayout,
};

/// The checks `checks::builtin` makes, in the order status shows them.
pub const BUILTIN_CHECKS: [&str; 10] =
    ["networks", "firewall", "cross_tenant", "capabilities", "logs", "secrets", "config", "realm", "backup", "stack"];

/// What `checks::builtin` is given: the checks to make and what they read.
pub(super) struct Options {
    pub names: Vec<String>,
    pub snapshot: Option<DockerSnapshot>,
    pub stacks: Option<StackInspection>,
    /// Per client, its containers that have NET_RAW (`docker::net_raw`).
    pub net_raw: Option<Map>,
    /// DEEP=1: open each repository with its password.
    pub deep: bool,
}

impl Options {
    pub(super) fn parse(names: &[String], options: &Map) -> Result<Self> {
        if let Some(unknown) = names.iter().find(|n| !BUILTIN_CHECKS.contains(&n.as_str())) {
            bail!("checks::builtin: no built-in check {unknown:?} (there are {})", BUILTIN_CHECKS.join(", "));
        }
        Ok(Self {
            names: names.to_vec(),
            snapshot: options.get("snap").and_then(|s| s.clone().try_cast::<DockerSnapshot>()),
            stacks: options.get("stacks").and_then(|s| s.clone().try_cast::<StackInspection>()),
            net_raw: options.get("net_raw").and_then(|m| m.clone().try_cast::<Map>()),
            deep: options.get("deep").and_then(|d| d.as_bool().ok()).unwrap_or(false),
        })
    }

    fn wants(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    fn snapshot(&self, check: &str) -> Result<&Snapshot> {
        self.snapshot
            .as_ref()
            .map(|s| &*s.0)
            .ok_or_else(|| anyhow!("checks::builtin: the {check} check needs `snap` (docker::snapshot())"))
    }
}

/// A client's client.env, or why it is not a valid client: missing, unreadable (path:line), or
/// naming another client. Read through the effects, so a dry run's planned file is what counts.
fn client_env(host: &Host, layout: &ClientLayout) -> Result<BTreeMap<String, String>, String> {
    let path = &layout.env_file;
    let read = host.effects.read(path);
    if read.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        return Err(format!("{} is missing: not a valid client (run create-client)", path.display()));
    }
    let env: BTreeMap<String, String> =
        envfile::parse_read(path, read).map_err(|e| format!("{e:#}"))?.into_iter().collect();
    match env.get("CLIENT_ID") {
        Some(id) if *id == layout.id => Ok(env),
        other => Err(format!(
            "{}: CLIENT_ID is {}, not {}",
            path.display(),
            other.map_or("missing", String::as_str),
            layout.id
        )),
    }
}

/// The checks made for all clients at once, after the others: each goes to its place in
/// the order of the names.
const BATCH_CHECKS: [&str; 2] = ["firewall", "backup"];

/// Each client of `ids` with the checks `options` names (in the order of the names), or why
/// it is not a valid client. A client's checks are kept as JSON as soon as they are made,
/// and its client.env is dropped, so thousands of clients hold little at once.
pub(super) fn builtin_checks(
    host: &Host,
    ids: &[String],
    options: &Options,
) -> Result<Vec<(String, Result<Vec<KeptCheck>, String>)>> {
    let firewall =
        if options.wants("firewall") { Some((firewall::settings(host)?, options.snapshot("firewall")?)) } else { None };
    let roots = &host.roots;
    // `nft list table` takes a third of a second at thousands of clients: it runs meanwhile
    // (for every id: a client found invalid below drops its check).
    std::thread::scope(|scope| {
        let firewall = firewall.as_ref().map(|(settings, snapshot)| {
            scope.spawn(move || {
                let checks = firewall::checks(settings, roots, snapshot, ids)?;
                Ok::<Vec<KeptCheck>, anyhow::Error>(checks.into_iter().map(KeptCheck::from).collect())
            })
        });
        let mut clients = ids
            .iter()
            .map(|id| {
                let layout = ClientLayout::new(roots, id)?;
                let checks = match client_env(host, &layout) {
                    Ok(env) => Ok(options
                        .names
                        .iter()
                        .filter(|name| !BATCH_CHECKS.contains(&name.as_str()))
                        .map(|name| client_check(host, options, name, &layout, &env).map(KeptCheck::from))
                        .collect::<Result<Vec<_>>>()?),
                    Err(reason) => Err(reason),
                };
                Ok((layout.id, checks))
            })
            .collect::<Result<Vec<_>>>()?;
        let valid: Vec<String> =
            clients.iter().filter(|(_, checks)| checks.is_ok()).map(|(id, _)| id.clone()).collect();
        let backups = if options.wants("backup") { restic::backup_checks(host, &valid, options.deep)? } else { vec![] };
        let firewalls = match firewall {
            Some(thread) => thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?,
            None => vec![],
        };
        let (mut backups, mut firewalls) = (backups.into_iter(), firewalls.into_iter());
        for (_, checks) in &mut clients {
            // One per id, in their order (none when not wanted).
            let mut firewall = firewalls.next();
            let Ok(checks) = checks else { continue };
            // In the order of the names, so each lands after those named before it.
            for (position, name) in options.names.iter().enumerate() {
                let check = match name.as_str() {
                    "firewall" => firewall.take().expect("a firewall check per id"),
                    "backup" => KeptCheck::from(backups.next().expect("a backup check per valid client")),
                    _ => continue,
                };
                checks.insert(position, check);
            }
        }
        Ok(clients)
    })
}

/// One check of one valid client (all but the batch checks).
fn client_check(
    host: &Host,
    options: &Options,
    name: &str,
    layout: &ClientLayout,
    env: &BTreeMap<String, String>,
) -> Result<Check> {
    let id = layout.id.as_str();
    Ok(match name {
        "networks" => {
            let driver = isolation::client_driver(env, host.settings.get("NETWORK_DRIVER"));
            options.snapshot(name)?.network_check(id, &driver, env)
        }
        "cross_tenant" => options.snapshot(name)?.cross_tenant_check(id),
        "capabilities" => {
            let net_raw = options.net_raw.as_ref().ok_or_else(|| {
                anyhow!("checks::builtin: the capabilities check needs `net_raw` (docker::net_raw(snap, ids))")
            })?;
            let names: Vec<String> = net_raw
                .get(id)
                .and_then(|list| list.read_lock::<Array>().map(|l| l.iter().map(|n| n.to_string()).collect()))
                .unwrap_or_default();
            capabilities_check(names)
        }
        "logs" => filecheck::logs(&host.roots.confine_entry(&layout.log_dir.to_string_lossy())?),
        "secrets" => {
            let secrets_dir = host.roots.confine_entry(&layout.secrets_dir.to_string_lossy())?;
            filecheck::secrets(&secrets_dir, &layout.secrets_file)
        }
        "config" => {
            host.roots.confine_entry(&layout.config_dir.to_string_lossy())?;
            filecheck::config(layout)
        }
        "realm" => realm_check(host, layout, env)?,
        "stack" => {
            let stacks = options
                .stacks
                .as_ref()
                .ok_or_else(|| anyhow!("checks::builtin: the stack check needs `stacks` (stack::inspect())"))?;
            stacks.0.check(&host.site_dir, id)
        }
        other => bail!("checks::builtin: {other} is made for all clients at once"),
    })
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

/// The realm file, and the live realm with its settings, roles, groups and OIDC clients (their
/// secrets compared with secrets.env, never shown) when KEYCLOAK_URL is set.
fn realm_check(host: &Host, layout: &ClientLayout, env: &BTreeMap<String, String>) -> Result<Check> {
    let id = layout.id.as_str();
    let realm_name = env.get("CLIENT_REALM").map_or(id, String::as_str);
    let realm_file = layout.realm_file.display().to_string();
    let secrets_file = layout.secrets_file.display().to_string();
    let setting = |key: &str| env.get(key).cloned();
    let realm = keycloak::realm_status(host, realm_name, &realm_file, &setting, Some(&secrets_file))
        .map_err(|e| anyhow!("{e}"))?;
    let evidence = serde_json::json!({ "file": realm_file, "source": realm.source(), "problems": realm.problems });
    Ok(if realm.problems.is_empty() {
        let summary = if realm.live {
            "realm.json and the live realm with its settings, roles and groups"
        } else {
            "realm.json with its roles and admin user"
        };
        Check::new("realm", Status::Ok, summary).evidence(evidence)
    } else {
        Check::new("realm", Status::Fail, realm.problems.join("; "))
            .evidence(evidence)
            .fix(format!("FIX=1 cannot: run setup-roles CLIENT_ID={id}"))
    })
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
        assert!(parsed.snapshot("networks").is_err());
    }
}
