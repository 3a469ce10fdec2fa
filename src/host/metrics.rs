//! `metrics::` — Prometheus textfile metrics into `METRICS_DIR` (see `crate::tenant::metrics`). Each
//! function writes its one file atomically (mode 0644) through the effects layer and returns
//! its path; with `METRICS_DIR` empty it writes nothing and returns `""`.
//!
//! | function | mutates | writes |
//! |---|---|---|
//! | `metrics::status(report, pool)` | yes | `agency-status.prom`: per client `agency_client_isolated`, `agency_check_ok{check}`, `agency_firewall_enforced`; the subnet pool (`pool` as `docker::pool_usage` returns it) |
//! | `metrics::backup(id)` | yes | `agency-backup-<id>.prom`: `agency_backup_last_success_timestamp_seconds` (now), `agency_backup_snapshots`, `agency_backup_repository_bytes` (local repositories) |
//! | `metrics::verify(id)` | yes | `agency-verify-<id>.prom`: `agency_verify_last_success_timestamp_seconds` (now) |
//! | `metrics::remove_client(id)` | yes | removes the client's `agency-backup-<id>.prom` and `agency-verify-<id>.prom` (delete-client: a deleted client's series would stand forever); the paths removed |

use std::{path::Path, rc::Rc, time::SystemTime};

use anyhow::{Context, Result, bail};
use rhai::{Map, Module};

use super::{Host, ScriptResult, checks::StatusReport, script_error};
use crate::{
    drivers::restic::Location,
    effects::Outcome,
    fsutil,
    tenant::backup::{self, BackupConfig},
    tenant::check::ClientReport,
    tenant::layout::ClientLayout,
    tenant::metrics::{self, Exposition, PoolUsage},
};

/// The textfile collector reads files of any mode it can open; nothing in them is secret.
const METRICS_MODE: u32 = 0o644;

/// Writes `METRICS_DIR/<name>.prom` with what `metrics` gives; `""` (and `metrics` is not
/// called: status of thousands of clients pays nothing) when no metrics directory is set.
fn write(host: &Host, name: &str, metrics: impl FnOnce() -> Result<Exposition>) -> Result<String> {
    let dir = host.settings.get("METRICS_DIR");
    if dir.is_empty() {
        return Ok(String::new());
    }
    if !Path::new(dir).is_dir() {
        bail!("METRICS_DIR {dir} is not a directory (create it, or point it at node_exporter's textfile directory)");
    }
    let path = Path::new(dir).join(format!("{name}.prom"));
    let target = path.display().to_string();
    let needed = if path.exists() { Outcome::Updated } else { Outcome::Created };
    let text = metrics()?.render();
    host.effects.apply("write metrics", &target, "0644", needed, || {
        fsutil::write_atomic_unlocked(&path, text.as_bytes(), METRICS_MODE)
            .with_context(|| format!("cannot write {target}"))
    })?;
    Ok(target)
}

fn pool_usage(pool: &Map) -> PoolUsage {
    let number = |key: &str| pool.get(key).and_then(|v| v.as_int().ok()).map_or(0, |n| n.max(0) as u64);
    PoolUsage { used: number("used"), total: number("total") }
}

fn status(host: &Host, report: &StatusReport, pool: &Map) -> Result<String> {
    write(host, "agency-status", || {
        let mut reports: Vec<ClientReport> = Vec::new();
        report.visit(|client| reports.push(client.clone()));
        let heads: Vec<&ClientReport> = reports.iter().collect();
        Ok(metrics::status(&heads, &pool_usage(pool), SystemTime::now()))
    })
}

fn backup(host: &Host, id: &str) -> Result<String> {
    let layout = ClientLayout::new(&host.roots, id)?;
    write(host, &format!("agency-backup-{id}"), || {
        let config = BackupConfig::load(&layout)?;
        let now = SystemTime::now();
        let snapshots = backup::status_cheap(&layout, &config, now).snapshots.map(|n| n as u64);
        let bytes = match &config.repository {
            Location::Local(path) if path.is_dir() => Some(metrics::tree_bytes(path)?),
            _ => None,
        };
        Ok(metrics::backup(id, snapshots, bytes, now))
    })
}

/// Removes the per-client files of `METRICS_DIR` (none when it is empty).
fn remove_client(host: &Host, id: &str) -> Result<rhai::Array> {
    ClientLayout::new(&host.roots, id)?;
    let dir = host.settings.get("METRICS_DIR");
    let mut removed = rhai::Array::new();
    if dir.is_empty() {
        return Ok(removed);
    }
    for name in [format!("agency-backup-{id}.prom"), format!("agency-verify-{id}.prom")] {
        let path = Path::new(dir).join(name);
        if path.symlink_metadata().is_err() {
            continue;
        }
        let target = path.display().to_string();
        host.effects.apply("remove", &target, "the deleted client's metrics", Outcome::Removed, || {
            std::fs::remove_file(&path).with_context(|| format!("cannot remove {target}"))
        })?;
        removed.push(target.into());
    }
    Ok(removed)
}

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();
    let h = host.clone();
    module.set_native_fn("status", move |report: StatusReport, pool: Map| -> ScriptResult<String> {
        status(&h, &report, &pool).map_err(script_error)
    });
    let h = host.clone();
    module.set_native_fn("backup", move |id: &str| -> ScriptResult<String> { backup(&h, id).map_err(script_error) });
    let h = host.clone();
    module.set_native_fn("verify", move |id: &str| -> ScriptResult<String> {
        ClientLayout::new(&h.roots, id).map_err(script_error)?;
        write(&h, &format!("agency-verify-{id}"), || Ok(metrics::verify(id, SystemTime::now()))).map_err(script_error)
    });
    let h = host.clone();
    module.set_native_fn("remove_client", move |id: &str| -> ScriptResult<rhai::Array> {
        remove_client(&h, id).map_err(script_error)
    });
    module
}
