//! `html::` — the one-page status report (see `crate::tenant::report`).
//!
//! | function | mutates | does |
//! |---|---|---|
//! | `html::report(path, report, pool)` | yes | writes the page for a `StatusReport` (`pool` as `docker::pool_usage` returns it) to `path` atomically, 0644; call it before `checks::clients(report)` (the backup ages come from the checks' evidence); returns `path` |

use std::{path::Path, rc::Rc};

use anyhow::{Context, Result, bail};
use rhai::{Array, Map, Module};

use super::{Host, ScriptResult, checks::StatusReport, script_error};
use crate::{
    effects::Outcome,
    fsutil,
    tenant::report::{self, Page, Row},
};

/// The page holds what status prints, no secret: readable like the table.
const REPORT_MODE: u32 = 0o644;

/// The backup check's `evidence.age_seconds`, among a client's check maps.
fn backup_age(checks: &Array) -> Option<u64> {
    checks.iter().find_map(|check| {
        let check = check.read_lock::<Map>()?;
        if check.get("name")?.to_string() != "backup" {
            return None;
        }
        let evidence = check.get("evidence")?.read_lock::<Map>()?;
        evidence.get("age_seconds")?.as_int().ok().and_then(|age| u64::try_from(age).ok())
    })
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "this host".into())
}

fn write_report(host: &Host, path: &str, status: &StatusReport, pool: &Map) -> Result<String> {
    if path.is_empty() {
        bail!("the report needs a file name (REPORT=path.html)");
    }
    // A bare file name is written beside the operator, in the current directory.
    let file = &std::path::absolute(Path::new(path)).with_context(|| format!("cannot resolve {path}"))?;
    if file.is_dir() {
        bail!("REPORT {path} is a directory; name the .html file to write");
    }
    let mut rows = Vec::new();
    status.visit_with_checks(|report, checks| {
        rows.push(Row { report: report.clone(), backup_age_seconds: backup_age(checks) })
    });
    let number = |key: &str| pool.get(key).and_then(|v| v.as_int().ok()).map_or(0, |n| n.max(0) as u64);
    let pool_name = pool.get("pool").map(|p| p.to_string()).unwrap_or_default();
    let page = Page {
        rows: &rows,
        generated: &crate::tenant::audit::now_rfc3339(),
        host: &host_name(),
        pool: &pool_name,
        pool_used: number("used"),
        pool_total: number("total"),
    };
    let html = report::render(&page);
    let needed = if file.exists() { Outcome::Updated } else { Outcome::Created };
    host.effects.apply("write report", path, "0644", needed, || {
        fsutil::write_atomic_unlocked(file, html.as_bytes(), REPORT_MODE)
            .with_context(|| format!("cannot write {path}"))
    })?;
    Ok(path.to_string())
}

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();
    let h = host.clone();
    module.set_native_fn("report", move |path: &str, status: StatusReport, pool: Map| -> ScriptResult<String> {
        write_report(&h, path, &status, &pool).map_err(script_error)
    });
    module
}
