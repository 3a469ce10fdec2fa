//! verify-backup for dumps (SPEC §11): the newest dump of each service is loaded into a
//! throwaway server of the same image on a throwaway internal network; it must load without
//! errors, and the stream and each database's table count must match what backup-client
//! recorded. The throwaways carry the label `agency.verify=<client>` and unique names, are
//! removed when the check ends however it ends, and a run removes those a killed run left.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};

use crate::{
    drivers::{
        docker::{Docker, NetworkSpec, ThrowawaySpec},
        restic::{BackupSnapshot, Repo},
    },
    effects::Outcome,
    tenant::{
        client_data::{self, DUMP_TAG, DumpRecord, tables_text, tag_value},
        context::Context,
        databases::Engine,
        layout::ClientLayout,
        secrets,
    },
};

/// The label of the throwaway containers and networks, its value the client.
pub const LABEL_VERIFY: &str = "agency.verify";

/// The verdict on one service's newest dump.
#[derive(Debug, Clone)]
pub struct DumpVerdict {
    pub service: String,
    pub snapshot: String,
    pub ok: bool,
    pub message: String,
}

/// Removes the throwaway container and network when dropped.
struct Throwaway<'a> {
    docker: &'a Docker,
    container: Option<String>,
    network: Option<String>,
}

impl Drop for Throwaway<'_> {
    fn drop(&mut self) {
        if let Some(container) = self.container.take() {
            let _ = self.docker.remove_containers(&[&container]);
        }
        if let Some(network) = self.network.take() {
            let _ = self.docker.remove_network(&network);
        }
    }
}

/// Throwaways an earlier, killed run of this client left.
fn remove_leftovers(docker: &Docker, id: &str) -> Result<()> {
    let filter = [(LABEL_VERIFY.to_string(), id.to_string())];
    let left: Vec<String> = docker
        .list_containers_with_labels(&filter)?
        .into_iter()
        .filter(|c| c.label(LABEL_VERIFY) == Some(id))
        .map(|c| c.id)
        .collect();
    docker.remove_containers(&left.iter().map(String::as_str).collect::<Vec<_>>())?;
    for network in docker.list_networks()?.into_iter().filter(|n| n.label(LABEL_VERIFY) == Some(id)) {
        docker.remove_network(&network.name)?;
    }
    Ok(())
}

/// The newest dump of each service in the repository.
fn newest_dumps(snapshots: &[BackupSnapshot]) -> Vec<&BackupSnapshot> {
    let mut newest: BTreeMap<&str, &BackupSnapshot> = BTreeMap::new();
    for snapshot in snapshots.iter().filter(|s| s.tags.iter().any(|t| t == DUMP_TAG)) {
        let Some(service) = tag_value(snapshot, "service") else { continue };
        let newer = newest.get(service).is_none_or(|s| s.system_time().ok() < snapshot.system_time().ok());
        if newer {
            newest.insert(service, snapshot);
        }
    }
    newest.into_values().collect()
}

/// Verifies the newest dump of each service; a dry run plans the throwaway loads only.
pub fn verify_dumps(
    cx: &Context,
    layout: &ClientLayout,
    repo: &Repo,
    snapshots: &[BackupSnapshot],
) -> Result<Vec<DumpVerdict>> {
    let dumps = newest_dumps(snapshots);
    if dumps.is_empty() {
        return Ok(Vec::new());
    }
    let docker = Docker::locate()?;
    let records = client_data::records(layout)?;
    let mut verdicts = Vec::new();
    for dump in dumps {
        let service = tag_value(dump, "service").unwrap_or_default().to_string();
        let detail = format!("db-{service}.sql of snapshot {} into a throwaway server", dump.short_id);
        let mut verdict = None;
        cx.effects.apply("verify dump", &layout.id, &detail, Outcome::Created, || {
            remove_leftovers(&docker, &layout.id)?;
            verdict = Some(verify_one(&docker, &layout.id, repo, dump, &service, &records));
            Ok(())
        })?;
        if let Some(result) = verdict {
            let (ok, message) = match result {
                Ok(message) => (true, message),
                Err(error) => (false, format!("{error:#}")),
            };
            verdicts.push(DumpVerdict { service, snapshot: dump.short_id.clone(), ok, message });
        }
    }
    Ok(verdicts)
}

fn verify_one(
    docker: &Docker,
    id: &str,
    repo: &Repo,
    dump: &BackupSnapshot,
    service: &str,
    records: &[DumpRecord],
) -> Result<String> {
    // The record of this snapshot, else of its set's dump of this service (a snapshot put
    // in its place is judged against what backup saw).
    let set = tag_value(dump, "set");
    let record = records
        .iter()
        .rev()
        .find(|r| r.snapshot == dump.id)
        .or_else(|| records.iter().rev().find(|r| set == Some(r.set.as_str()) && r.service == service))
        .ok_or_else(|| anyhow!("backup/dumps.json has no record of dump {} of service {service}", dump.short_id))?;
    let engine = tag_value(dump, "engine")
        .and_then(Engine::from_label)
        .ok_or_else(|| anyhow!("dump {} names no engine", dump.short_id))?;
    let image = tag_value(dump, "image").ok_or_else(|| anyhow!("dump {} names no image", dump.short_id))?;
    let admin = engine.admin(None)?;
    let password = secrets::generate()?;
    let unique = client_data::new_set_id()?;
    let name = format!("agency-verify-{id}-{service}-{unique}");
    let labels = [(LABEL_VERIFY, id)];
    let mut throwaway = Throwaway { docker, container: None, network: None };
    let mut spec = NetworkSpec::bridge(&name).label(LABEL_VERIFY, id);
    spec.internal = true;
    docker.create_network(&spec).map_err(|e| anyhow!("{e}"))?;
    throwaway.network = Some(name.clone());
    let env = [(engine.init_password_variable(), password.as_str())];
    let container =
        docker.run_throwaway(&ThrowawaySpec { name: &name, image, network: &name, labels: &labels, env: &env })?;
    throwaway.container = Some(container.clone());
    client_data::wait_ready(docker, &container, engine, &admin, &password)?;
    let file = format!("db-{service}.sql");
    let server = client_data::Server { docker, container: &container, engine, admin: &admin, password: &password };
    let (sha256, streamed) = client_data::load_dump(repo, dump, &file, server, false)?;
    let loaded = client_data::table_counts(docker, &container, engine, &admin, &password)?;
    let loaded: BTreeMap<String, u64> = loaded.into_iter().filter(|(db, _)| record.tables.contains_key(db)).collect();
    if loaded != record.tables {
        bail!(
            "dump {} of {service} loads other tables than backup recorded: {} loaded, {} recorded",
            dump.short_id,
            tables_text(&loaded),
            tables_text(&record.tables)
        );
    }
    if sha256 != record.sha256 || streamed != record.tables {
        bail!("dump {} of {service} is not the stream backup recorded (its SHA-256 differs)", dump.short_id);
    }
    Ok(format!("db-{service}.sql of snapshot {} loads into {image}: {}", dump.short_id, tables_text(&loaded)))
}
