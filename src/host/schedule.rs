//! `schedule::` — installs the `schedule` task's jobs (see `crate::tenant::schedule`) as systemd units
//! or a cron file, through the effects layer (a dry run plans every file), converging: a file
//! already as it should be is unchanged, a unit or link of ours that is no longer wanted goes.
//!
//! | function | mutates | does |
//! |---|---|---|
//! | `schedule::apply(vars, clients)` | yes | writes the units (or the cron file) and the settings file for the `schedule` task's variables and the client ids; `#{ mode, units, timers, cron_file, env_file }` |
//! | `schedule::remove(vars)` | yes | removes every unit and timer link, the cron file and the settings file schedule wrote (their first line says so); `#{ removed }` |

use std::{
    path::{Path, PathBuf},
    rc::Rc,
};

use anyhow::{Context, Result, anyhow, bail};
use rhai::{Array, Dynamic, Map, Module};

use super::{Host, ScriptResult, script_error};
use crate::{
    drivers::process,
    effects::Outcome,
    format::validate,
    fsutil,
    tenant::schedule::{self, Job, MARKER, Plan, UNIT_PREFIX},
    tenant::settings::SETTINGS,
};

const UNIT_MODE: u32 = 0o644;
/// The settings file holds webhook and ping URLs: credentials.
const ENV_MODE: u32 = 0o600;
const WANTS: &str = "timers.target.wants";

fn var(vars: &Map, name: &str) -> String {
    vars.get(name).map(|v| v.to_string()).unwrap_or_default()
}

/// Whether systemd runs here: its runtime directory (`SYSTEMD_RUNTIME`, default
/// `/run/systemd/system`, what `sd_booted()` looks at) exists.
fn systemd_runs(vars: &Map) -> bool {
    let dir = var(vars, "SYSTEMD_RUNTIME");
    Path::new(if dir.is_empty() { "/run/systemd/system" } else { &dir }).is_dir()
}

fn systemd_analyze() -> Result<PathBuf> {
    process::locate("systemd-analyze", "it checks the calendars; install it (Debian: apt-get install systemd)")
}

/// A calendar's normalized form, or the error systemd-analyze gives for it.
fn normalized(calendar: &str) -> Result<String> {
    let output = process::Command::new(&systemd_analyze()?).args(["calendar", calendar]).output()?;
    let line = output.stdout.lines().find_map(|l| l.trim().strip_prefix("Normalized form:").map(str::trim));
    match line {
        Some(form) if output.success() => Ok(form.to_string()),
        _ => bail!("invalid calendar {calendar:?}: {}", output.first_error_line()),
    }
}

/// Seconds of a systemd time span (`1h`, `30min`, `90`).
fn span_seconds(span: &str) -> Result<u64> {
    if let Ok(seconds) = span.parse::<u64>() {
        return Ok(seconds);
    }
    humantime::parse_duration(span).map(|d| d.as_secs()).map_err(|e| anyhow!("invalid delay {span:?}: {e}"))
}

/// The jobs the variables ask for; a job with an empty calendar is off.
fn jobs(vars: &Map) -> Vec<Job> {
    let delay = Some(var(vars, "BACKUP_DELAY")).filter(|d| !d.is_empty() && d != "0");
    let job = |name, task: &str, args: &[&str], per_client, calendar: &str, delay: Option<String>| Job {
        name,
        task: task.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
        per_client,
        calendar: var(vars, calendar),
        delay,
    };
    let logs_task = var(vars, "LOGS_TASK");
    let mut jobs = vec![
        job("backup", "backup-client", &[], true, "BACKUP_CALENDAR", delay.clone()),
        job("verify", "verify-backup", &[], true, "VERIFY_CALENDAR", delay),
        job("status", "multi-tenancy-status", &[], false, "STATUS_CALENDAR", None),
        job("digest", "multi-tenancy-status", &["DIGEST=1"], false, "DIGEST_CALENDAR", None),
        job("rotate", "rotate-secrets", &[], true, "ROTATE_CALENDAR", None),
    ];
    if !logs_task.is_empty() {
        jobs.push(job("logs", &logs_task, &[], false, "LOGS_CALENDAR", None));
    }
    jobs.retain(|j| !j.calendar.is_empty());
    jobs
}

fn plan(vars: &Map, clients: &Array) -> Result<Plan> {
    let agency = match var(vars, "AGENCY_BIN") {
        bin if bin.is_empty() => std::env::current_exe()
            .context("cannot tell where this agency binary is; set AGENCY_BIN")?
            .display()
            .to_string(),
        bin => bin,
    };
    let plan = Plan {
        agency,
        site_dir: var(vars, "SITE_DIR"),
        env_file: var(vars, "ENV_FILE"),
        jobs: jobs(vars),
        // A directory under clients/ that is not a valid id (status calls it INVALID) gets no job.
        clients: clients.iter().map(|c| c.to_string()).filter(|id| validate::client_id(id).is_ok()).collect(),
    };
    for (what, value) in [("AGENCY_BIN", &plan.agency), ("SITE_DIR", &plan.site_dir), ("ENV_FILE", &plan.env_file)] {
        schedule::check_plain(what, value)?;
    }
    for job in &plan.jobs {
        schedule::check_plain("the task name", &job.task)?;
        if job.calendar.contains(['\n', '%']) {
            bail!("invalid calendar {:?} for the {} job", job.calendar, job.name);
        }
    }
    Ok(plan)
}

/// The settings the scheduled runs need: every setting this run has that differs from its
/// default (roots, METRICS_DIR, NOTIFY_URL ...), and the site dir of AGENCY_HOME.
fn env_file_text(host: &Host) -> Result<String> {
    let mut text = format!("{MARKER}: the settings of the scheduled runs.\n");
    let home = std::env::var("AGENCY_HOME").ok().filter(|h| !h.is_empty());
    let values = host
        .settings
        .iter()
        .filter(|(name, value)| SETTINGS.iter().any(|s| s.name == *name && s.default != *value))
        .map(|(name, value)| (name, value.to_string()))
        .chain(home.map(|h| ("AGENCY_HOME", h)));
    for (name, value) in values {
        if value.contains(['\'', '\\', '\n', '\r']) {
            bail!(
                "the setting {name} cannot go into the schedule's settings file (it holds a quote, backslash or newline)"
            );
        }
        text.push_str(&format!("{name}='{value}'\n"));
    }
    Ok(text)
}

/// Writes `path` with `text` and `mode` unless it already is exactly that.
fn converge_file(host: &Host, path: &Path, text: &str, mode: u32) -> Result<Outcome> {
    let current = std::fs::read_to_string(path).ok();
    let needed = match current {
        None => Outcome::Created,
        Some(found) if found != text || fsutil::mode(path) != Some(mode) => Outcome::Updated,
        Some(_) => Outcome::Unchanged,
    };
    let target = path.display().to_string();
    host.effects
        .apply("write", &target, &format!("mode {mode:04o}"), needed, || {
            fsutil::write_atomic(path, text.as_bytes(), mode).with_context(|| format!("cannot write {target}"))
        })
        .map(|applied| applied.outcome)
}

/// Whether `path` is a regular file `schedule` wrote (it starts with [`MARKER`]).
fn written_by_us(path: &Path) -> bool {
    let Ok(meta) = path.symlink_metadata() else { return false };
    let mut start = [0u8; MARKER.len()];
    meta.is_file()
        && std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut start)).is_ok()
        && start == MARKER.as_bytes()
}

/// Whether `path` is a file `schedule` wrote, or a link to one.
fn is_ours(path: &Path) -> bool {
    match std::fs::read_link(path) {
        Ok(target) => written_by_us(&path.parent().unwrap_or(Path::new("/")).join(target)),
        Err(_) => written_by_us(path),
    }
}

/// Removes `path` when [`is_ours`]; whether it did.
fn remove_ours(host: &Host, path: &Path) -> Result<bool> {
    if !is_ours(path) {
        return Ok(false);
    }
    let target = path.display().to_string();
    host.effects.apply("remove", &target, "", Outcome::Removed, || {
        std::fs::remove_file(path).with_context(|| format!("cannot remove {target}"))
    })?;
    Ok(true)
}

/// The `agency-*` units and links in `dir`; [`remove_ours`] tells which `schedule` wrote.
fn agency_units(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(UNIT_PREFIX) && (name.ends_with(".service") || name.ends_with(".timer"))
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

fn systemctl(host: &Host, args: &[&str]) -> Result<()> {
    let program = process::locate("systemctl", "systemd runs but systemctl is missing")?;
    host.effects.apply("systemctl", &args.join(" "), "", Outcome::Updated, || {
        process::Command::new(&program).args(args).checked_output().map(drop)
    })?;
    Ok(())
}

fn ensure_dir(host: &Host, dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let target = dir.display().to_string();
    host.effects.apply("mkdir", &target, "mode 0755", Outcome::Created, || {
        fsutil::create_dir(dir, 0o755).map(drop).with_context(|| format!("cannot create {target}"))
    })?;
    Ok(())
}

fn apply(host: &Host, vars: &Map, clients: &Array) -> Result<Map> {
    let plan = plan(vars, clients)?;
    let mode = match var(vars, "MODE").as_str() {
        "auto" | "" => {
            if systemd_runs(vars) {
                "systemd"
            } else {
                "cron"
            }
        }
        "systemd" => "systemd",
        "cron" => "cron",
        other => bail!("MODE must be auto, systemd or cron, not {other:?}"),
    };
    // Every calendar is checked before anything is written.
    let forms = plan.jobs.iter().map(|j| normalized(&j.calendar)).collect::<Result<Vec<_>>>()?;
    for job in &plan.jobs {
        if let Some(delay) = &job.delay {
            span_seconds(delay)?;
        }
    }
    // A calendar without a cron form is refused here too, before the settings file is written.
    let cron_text = if mode == "cron" {
        let lookup = |calendar: &str| {
            let index = plan.jobs.iter().position(|j| j.calendar == calendar).expect("a job's calendar");
            Ok(forms[index].clone())
        };
        Some(schedule::cron_file(&plan, &lookup, &span_seconds)?)
    } else {
        None
    };
    let env_file = PathBuf::from(&plan.env_file);
    if let Some(parent) = env_file.parent() {
        ensure_dir(host, parent)?;
    }
    converge_file(host, &env_file, &env_file_text(host)?, ENV_MODE)?;
    let systemd_dir = PathBuf::from(var(vars, "SYSTEMD_DIR"));
    let cron_file = PathBuf::from(var(vars, "CRON_FILE"));
    let mut result = Map::new();
    result.insert("mode".into(), mode.into());
    result.insert("env_file".into(), plan.env_file.clone().into());
    if let Some(text) = cron_text {
        if let Some(parent) = cron_file.parent() {
            ensure_dir(host, parent)?;
        }
        converge_file(host, &cron_file, &text, UNIT_MODE)?;
        // Switched from systemd: the timers go, or every job would also run from them.
        for stale in agency_units(&systemd_dir.join(WANTS)).into_iter().chain(agency_units(&systemd_dir)) {
            remove_ours(host, &stale)?;
        }
        result.insert("cron_file".into(), cron_file.display().to_string().into());
        return Ok(result);
    }
    ensure_dir(host, &systemd_dir)?;
    let files = schedule::unit_files(&plan);
    for (name, text) in &files {
        converge_file(host, &systemd_dir.join(name), text, UNIT_MODE)?;
    }
    let wants = systemd_dir.join(WANTS);
    ensure_dir(host, &wants)?;
    let links = schedule::enabled_timers(&plan);
    let mut started = Vec::new();
    for (name, unit) in &links {
        let link = wants.join(name);
        let target = PathBuf::from("..").join(unit);
        let needed = match std::fs::read_link(&link) {
            Ok(found) if found == target => Outcome::Unchanged,
            Ok(_) => Outcome::Updated,
            Err(_) if link.symlink_metadata().is_ok() => Outcome::Updated,
            Err(_) => Outcome::Created,
        };
        if needed != Outcome::Unchanged {
            started.push(name.clone());
        }
        let shown = link.display().to_string();
        host.effects.apply("enable", &shown, &format!("-> {}", target.display()), needed, || {
            if link.symlink_metadata().is_ok() {
                std::fs::remove_file(&link)?;
            }
            std::os::unix::fs::symlink(&target, &link).with_context(|| format!("cannot link {shown}"))
        })?;
    }
    for stale in agency_units(&wants) {
        let name = stale.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if !links.iter().any(|(n, _)| *n == name) {
            remove_ours(host, &stale)?;
        }
    }
    // After the links: a stale link is told ours by the unit it points to.
    for stale in agency_units(&systemd_dir) {
        let name = stale.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if !files.iter().any(|(n, _)| *n == name) {
            remove_ours(host, &stale)?;
        }
    }
    remove_ours(host, &cron_file)?;
    if systemd_runs(vars) {
        systemctl(host, &["daemon-reload"])?;
        if !started.is_empty() {
            let mut args = vec!["start"];
            args.extend(started.iter().map(String::as_str));
            systemctl(host, &args)?;
        }
    }
    let units: Array = files.iter().map(|(n, _)| Dynamic::from(n.clone())).collect();
    let timers: Array = links.iter().map(|(n, _)| Dynamic::from(n.clone())).collect();
    result.insert("units".into(), units.into());
    result.insert("timers".into(), timers.into());
    Ok(result)
}

fn remove(host: &Host, vars: &Map) -> Result<Map> {
    let systemd_dir = PathBuf::from(var(vars, "SYSTEMD_DIR"));
    let wants = systemd_dir.join(WANTS);
    let timers: Vec<String> = agency_units(&wants)
        .iter()
        .filter(|p| is_ours(p))
        .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned())
        .collect();
    if systemd_runs(vars) && !timers.is_empty() {
        let mut args = vec!["stop"];
        args.extend(timers.iter().map(String::as_str));
        systemctl(host, &args)?;
    }
    let mut removed = Array::new();
    let files = agency_units(&wants)
        .into_iter()
        .chain(agency_units(&systemd_dir))
        .chain([PathBuf::from(var(vars, "CRON_FILE")), PathBuf::from(var(vars, "ENV_FILE"))]);
    for path in files {
        if remove_ours(host, &path)? {
            removed.push(path.display().to_string().into());
        }
    }
    if systemd_runs(vars) {
        systemctl(host, &["daemon-reload"])?;
    }
    Ok(Map::from_iter([("removed".into(), removed.into())]))
}

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();
    let h = host.clone();
    module.set_native_fn("apply", move |vars: Map, clients: Array| -> ScriptResult<Map> {
        apply(&h, &vars, &clients).map_err(script_error)
    });
    let h = host.clone();
    module.set_native_fn("remove", move |vars: Map| -> ScriptResult<Map> { remove(&h, &vars).map_err(script_error) });
    module
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_in_systemd_spans() {
        assert_eq!(span_seconds("1h").unwrap(), 3600);
        assert_eq!(span_seconds("90").unwrap(), 90);
        assert_eq!(span_seconds("30min").unwrap(), 1800);
        assert!(span_seconds("soon").is_err());
    }
}
