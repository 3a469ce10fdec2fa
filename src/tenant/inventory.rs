//! What is on disk for each client, read without Docker or restic, for `list-clients`:
//! id, name, domain, creation time and a one-word health. A thousand clients cost one
//! small read and about fifteen `stat`s each.

use std::{fs, path::Path};

use serde::Serialize;

use crate::{
    format::envfile,
    fsutil::mode,
    tenant::layout::{ClientLayout, Roots},
    tenant::policy::LOG_FILES,
};

/// One word for a client's state on disk, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// client.env unreadable or naming another client, or secrets.env lost after the
    /// client was created: re-running create-client cannot repair it.
    Broken,
    /// Secrets or config readable by others: `multi-tenancy-status FIX=1` repairs modes.
    Insecure,
    /// Files of the layout missing (an interrupted create-client or log setup): a re-run
    /// of create-client completes it.
    Incomplete,
    Ok,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClientInfo {
    pub id: String,
    pub name: String,
    pub domain: String,
    /// `CLIENT_CREATED` from client.env (UTC, RFC 3339), empty when unknown.
    pub created: String,
    pub health: Health,
    /// Why the health is not "ok", one short phrase each.
    pub problems: Vec<String>,
}

struct Findings {
    health: Health,
    problems: Vec<String>,
}

impl Findings {
    fn add(&mut self, health: Health, problem: String) {
        self.health = self.health.min(health);
        self.problems.push(problem);
    }
}

/// Group or other bits that a private file must not have.
fn too_open(path: &Path, forbidden: u32) -> Option<u32> {
    mode(path).filter(|m| m & forbidden != 0)
}

/// Inspects one client by id; never fails, a problem is part of the answer. With `backups`
/// (AGENCY_BACKUPS is not `off`) a local repository must have its config file; a remote
/// one is not looked at (that would be a network call).
pub fn inspect(roots: &Roots, id: &str, backups: bool) -> ClientInfo {
    let mut info = ClientInfo {
        id: id.to_string(),
        name: String::new(),
        domain: String::new(),
        created: String::new(),
        health: Health::Ok,
        problems: Vec::new(),
    };
    let mut found = Findings { health: Health::Ok, problems: Vec::new() };
    let layout = match ClientLayout::new(roots, id) {
        Ok(layout) => layout,
        Err(e) => {
            found.add(Health::Broken, format!("{e:#}"));
            info.health = found.health;
            info.problems = found.problems;
            return info;
        }
    };

    // create-client writes secrets.env before client.env: a client.env without secrets
    // means the passwords were lost, not that creation was interrupted.
    let env_present = match fs::read_to_string(&layout.env_file) {
        Ok(text) => match envfile::parse(&text) {
            Ok(values) => {
                let get = |k: &str| values.get(k).cloned().unwrap_or_default();
                info.name = get("CLIENT_NAME");
                info.domain = get("CLIENT_DOMAIN");
                info.created = get("CLIENT_CREATED");
                let named = get("CLIENT_ID");
                if named != id {
                    found.add(Health::Broken, format!("client.env names client {named:?}"));
                }
                true
            }
            Err(e) => {
                found.add(Health::Broken, format!("client.env does not parse: {e:#}"));
                true
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            found.add(Health::Incomplete, "client.env missing".into());
            false
        }
        Err(e) => {
            found.add(Health::Broken, format!("client.env unreadable: {e}"));
            true
        }
    };

    match mode(&layout.secrets_file) {
        None if env_present => found.add(Health::Broken, "secrets.env missing".into()),
        None => found.add(Health::Incomplete, "secrets.env missing".into()),
        Some(m) if m & 0o077 != 0 => found.add(Health::Insecure, format!("secrets.env mode {m:04o}, want 0600")),
        Some(_) => match crate::tenant::secrets::read(&layout.secrets_file) {
            Err(e) => found.add(Health::Broken, format!("secrets.env: {e:#}")),
            Ok(values) if !values.contains_key(crate::tenant::backup::PASSWORD_KEY) => {
                found.add(Health::Broken, format!("secrets.env holds no {}", crate::tenant::backup::PASSWORD_KEY))
            }
            Ok(_) => {}
        },
    }
    if let Some(m) = too_open(&layout.secrets_dir, 0o077) {
        found.add(Health::Insecure, format!("secrets dir mode {m:04o}, want 0700"));
    }
    if let Some(m) = too_open(&layout.env_file, 0o007) {
        found.add(Health::Insecure, format!("client.env mode {m:04o}, want 0640"));
    }

    for (path, name) in [
        (&layout.compose_override, "docker-compose.override.yml"),
        (&layout.realm_file, "keycloak/realm.json"),
        (&layout.backup_config, "backup/config.sh"),
        (&layout.traefik_file, "traefik.yml"),
        (&layout.logrotate_file, "logrotate policy"),
    ] {
        if !path.exists() {
            found.add(Health::Incomplete, format!("{name} missing"));
        }
    }
    if backups && layout.repository.starts_with('/') && !Path::new(&layout.repository).join("config").is_file() {
        found.add(Health::Incomplete, "restic repository not initialized".into());
    }
    if layout.log_dir.is_dir() {
        let missing: Vec<&str> = LOG_FILES.iter().copied().filter(|f| !layout.log_dir.join(f).exists()).collect();
        if !missing.is_empty() {
            found.add(Health::Incomplete, format!("log files missing: {}", missing.join(" ")));
        }
    } else {
        found.add(Health::Incomplete, "log dir missing".into());
    }

    info.health = found.health;
    info.problems = found.problems;
    info
}

/// What list-clients and status say of a client whose delete stopped half-way.
pub fn interrupted_delete_problem(id: &str) -> String {
    format!("delete-client was interrupted; run delete-client CLIENT_ID={id} again to finish")
}

/// Clients whose delete-client stopped half-way, sorted: an archive `<id>-<stamp>` without
/// its archive.env (written last) while something of the client is still in its active
/// place (config dir, secrets dir or local repository), which is what a re-run completes.
pub fn interrupted_deletes(roots: &Roots) -> Vec<String> {
    let Ok(entries) = fs::read_dir(roots.root.join("archive")) else { return Vec::new() };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok().map(|name| (e.path(), name)))
        .filter(|(path, _)| path.is_dir() && !path.join("archive.env").exists())
        .filter_map(|(_, name)| {
            // `<id>-<stamp>`: the stamp holds no `-` (delete-client.rhai).
            let (id, stamp) = name.rsplit_once('-')?;
            (stamp.len() >= 16).then(|| id.to_string())
        })
        .filter(|id| {
            ClientLayout::new(roots, id).is_ok_and(|c| {
                c.config_dir.exists()
                    || c.secrets_dir.exists()
                    || (c.repository.starts_with('/') && Path::new(&c.repository).exists())
            })
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Every client with a config dir, and every client whose delete stopped half-way, sorted
/// by id.
pub fn all(roots: &Roots, backups: bool) -> anyhow::Result<Vec<ClientInfo>> {
    let mut clients: Vec<ClientInfo> = roots.client_ids()?.iter().map(|id| inspect(roots, id, backups)).collect();
    for id in interrupted_deletes(roots) {
        let problem = interrupted_delete_problem(&id);
        match clients.iter_mut().find(|c| c.id == id) {
            Some(client) => {
                client.health = Health::Broken;
                client.problems.insert(0, problem);
            }
            None => clients.push(ClientInfo {
                id,
                name: String::new(),
                domain: String::new(),
                created: String::new(),
                health: Health::Broken,
                problems: vec![problem],
            }),
        }
    }
    clients.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(clients)
}
