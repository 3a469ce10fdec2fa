//! `restic::` — each client's restic repository. Functions take a client id: the repository
//! and settings come from the client's `backup/config.sh`, the password from its
//! `secrets.env` — a script never sees it, and restic gets it through its environment.
//!
//! | function | mutates | returns |
//! |---|---|---|
//! | `restic::config(id)` | no | map of `backup/config.sh` over the defaults (what create-client writes back) |
//! | `restic::init(id)` | yes | "created" / "unchanged"; a local repository with its config file is not opened (no key derivation); a stopped init (keys, no config, no data) is redone, and a key of the password that does not open the config is removed |
//! | `restic::start_init(id)` | yes | a `Background` step: decided (and recorded, in a dry run) as `init` is, restic started and left running; `step.wait()` returns what `init` returns, or throws restic's error. A task's steps nobody awaited are awaited when it ends |
//! | `restic::open(id)` | no | proves the password in secrets.env opens the repository (≈ 0.75 s), or throws why not; nothing to open when this dry run only planned the repository |
//! | `restic::volumes(id)` | no | `[#{name, mountpoint}]`: Docker volumes labelled exactly `agency.client=<id>` |
//! | `restic::backup(id)` | yes | `#{snapshot, files, files_new, files_changed, bytes, added, seconds, paths, volumes, tags, planned}`; appends to backup.log |
//! | `restic::backup(id, tags)` | yes | the same, with extra tags for this snapshot |
//! | `restic::forget(id)` | yes | `#{kept, removed}` (short ids) after the retention policy of backup/config.sh, pruned when `PRUNE=1` |
//! | `restic::snapshots(id)` | no | `[#{id, short_id, time, tags, paths}]`, oldest first |
//! | `restic::restore(id, snapshot, target, force)` | yes | `#{snapshot, time, target, paths, tags, planned}` (`planned`: a dry run, nothing restored); `target` must be empty or new unless `force` |
//! | `restic::restore(id, snapshot, target, force, includes)` | yes | the same, only the paths matching `includes` |
//! | `restic::verify(id)` | no² | `#{ok, check, sample, snapshots, message}`: restic check, then a test restore of client.env |
//! | `restic::verify(id, subset)` | no | the same, reading back `subset` of the data (`10%`, `1/7`) |
//! | `restic::status(ids, deep)` | no | per client with a client.env, in the order of `ids`: `#{client, level, ok, message, initialized, snapshots, newest, age_seconds, age, repository, remote, deep}`; `level` is ok / warning / problem / unchecked (a remote repository without `deep`, or AGENCY_BACKUPS=off) |
//! | `restic::status(id, deep)` | no | the same for one client |
//! | `restic::add_pending_key(id)` | yes | rotation: adds a key for the `RESTIC_PASSWORD` of `secrets.env.next` ("unchanged" when it opens the repository already) |
//! | `restic::remove_previous_keys(id)` | yes | rotation: removes every key that neither the current `RESTIC_PASSWORD` nor a pending one opens (the previous password's after the swap; in a dry run, the on-disk password's when the swap is planned); the number removed |
//!
//! Every backup appends a result line to the client's `backup.log`; on a TTY it shows a
//! progress bar fed by restic's JSON status, with `-v` elsewhere a line every 10 %.
//!
//! ² Before `backup`, `forget`, `verify`, `add_pending_key` and `remove_previous_keys` use a
//! local repository holding lock files, the locks of restic processes of this host that are
//! gone are removed (a `restic unlock` step naming their PIDs), and so is every key that
//! neither the password on disk nor a pending rotation's opens (a `restic key remove` step);
//! `status` counts keys and lock files, and with `deep` names the stale locks.

use std::{
    path::{Path, PathBuf},
    rc::Rc,
    time::SystemTime,
};

use anyhow::{Context, Result, anyhow, bail};
use rhai::{Array, Dynamic, INT, Map, Module};
use serde_json::json;

use super::{Host, ScriptResult, script_error};
use crate::{
    drivers::restic::{BackupSnapshot, BackupSummary, ResticError},
    effects::progress::Progress,
    effects::{Background, Outcome},
    format::envfile,
    tenant::backup::{self, BackupConfig, RepoStatus},
    tenant::check::{Check, Status},
    tenant::client_data,
    tenant::dump_verify,
    tenant::layout::ClientLayout,
    tenant::repository,
};

fn text(value: impl Into<String>) -> Dynamic {
    Dynamic::from(value.into())
}

fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Dynamic {
    Dynamic::from(items.into_iter().map(|s| Dynamic::from(s.into())).collect::<Array>())
}

fn int(value: u64) -> Dynamic {
    Dynamic::from(INT::try_from(value).unwrap_or(INT::MAX))
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

fn snapshot_map(snapshot: &BackupSnapshot) -> Map {
    let mut map = Map::new();
    map.insert("id".into(), text(&snapshot.id));
    map.insert("short_id".into(), text(&snapshot.short_id));
    map.insert("time".into(), text(snapshot.system_time().map(rfc3339).unwrap_or_else(|_| snapshot.time.clone())));
    map.insert("tags".into(), strings(snapshot.tags.clone()));
    map.insert("paths".into(), strings(snapshot.paths.iter().map(|p| p.display().to_string())));
    map
}

fn status_map(status: &RepoStatus, now: SystemTime) -> Map {
    let mut map = Map::new();
    map.insert("client".into(), text(&status.client));
    map.insert("repository".into(), text(&status.repository));
    map.insert("remote".into(), Dynamic::from(status.remote));
    map.insert("deep".into(), Dynamic::from(status.deep));
    map.insert("initialized".into(), status.initialized.map_or(Dynamic::UNIT, Dynamic::from));
    map.insert("snapshots".into(), status.snapshots.map_or(Dynamic::UNIT, |n| int(n as u64)));
    map.insert("newest".into(), status.newest.map_or(Dynamic::UNIT, |t| text(rfc3339(t))));
    let age = status.age(now);
    map.insert("age_seconds".into(), age.map_or(Dynamic::UNIT, |a| int(a.as_secs())));
    map.insert("age".into(), age.map_or(Dynamic::UNIT, |a| text(backup::format_age(a))));
    map.insert("level".into(), text(status.level.as_str()));
    map.insert("ok".into(), Dynamic::from(status.level != backup::Level::Problem));
    map.insert("message".into(), text(&status.message));
    map
}

fn summary_line(summary: &BackupSummary, volumes: usize) -> String {
    format!(
        "snapshot={} files={} new={} changed={} bytes={} added={} seconds={:.1} volumes={volumes}",
        summary.snapshot_id,
        summary.total_files_processed,
        summary.files_new,
        summary.files_changed,
        summary.total_bytes_processed,
        summary.data_added,
        summary.total_duration,
    )
}

/// One line for the log: restic's message without line breaks.
fn one_line(error: &anyhow::Error) -> String {
    format!("{error:#}").replace(['\n', '\r'], " ")
}

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();

    let h = host.clone();
    module.set_native_fn("config", move |id: &str| -> ScriptResult<Map> {
        let layout = repository::layout(&h, id).map_err(script_error)?;
        let entries = BackupConfig::entries(&layout).map_err(script_error)?;
        // Reject what the runner could not use before create-client writes it.
        BackupConfig::from_entries(&layout, &entries)
            .with_context(|| format!("invalid backup configuration {}", layout.backup_config.display()))
            .map_err(script_error)?;
        Ok(entries.into_iter().map(|(k, v)| (k.into(), Dynamic::from(v))).collect())
    });

    let h = host.clone();
    module.set_native_fn("init", move |id: &str| -> ScriptResult<String> {
        let started = repository::start_init(&h, id).map_err(script_error)?;
        Ok(h.effects.wait(&started).map_err(script_error)?.as_str().into())
    });

    let h = host.clone();
    module.set_native_fn("start_init", move |id: &str| -> ScriptResult<Background> {
        repository::start_init(&h, id).map_err(script_error)
    });

    let h = host.clone();
    module.set_native_fn("open", move |id: &str| -> ScriptResult<()> {
        if !repository::backups_on(&h).map_err(script_error)? {
            return Ok(());
        }
        let (layout, config) = repository::setup(&h, id).map_err(script_error)?;
        // A repository this dry run only planned to create has nothing to open yet.
        if h.effects.planned_on(&config.repository.to_string()) {
            return Ok(());
        }
        let repo =
            backup::repo(&repository::locate().map_err(script_error)?, &layout, &config).map_err(script_error)?;
        h.output.begin("restic open", &config.repository.to_string());
        repo.open().map_err(script_error)?;
        h.effects.unchanged(
            "restic open",
            &config.repository.to_string(),
            "the RESTIC_PASSWORD in secrets.env opens it",
        );
        Ok(())
    });

    module.set_native_fn("volumes", move |id: &str| -> ScriptResult<Array> {
        crate::format::validate::client_id(id).map_err(|e| format!("invalid client id: {e}"))?;
        let volumes = backup::client_volumes(id).map_err(script_error)?.unwrap_or_default();
        Ok(volumes
            .into_iter()
            .map(|v| {
                let mut map = Map::new();
                map.insert("name".into(), text(v.name));
                map.insert("mountpoint".into(), text(v.mountpoint.display().to_string()));
                Dynamic::from(map)
            })
            .collect())
    });

    let h = host.clone();
    module.set_native_fn("backup", move |id: &str| -> ScriptResult<Map> {
        run_backup(&h, id, &[], &[]).map_err(script_error)
    });
    let h = host.clone();
    module.set_native_fn("backup", move |id: &str, tags: Array| -> ScriptResult<Map> {
        let tags: Vec<String> = tags.into_iter().map(|t| t.to_string()).collect();
        run_backup(&h, id, &tags, &[]).map_err(script_error)
    });
    let h = host.clone();
    module.set_native_fn("backup", move |id: &str, tags: Array, excludes: Array| -> ScriptResult<Map> {
        let tags: Vec<String> = tags.into_iter().map(|t| t.to_string()).collect();
        let excludes: Vec<String> = excludes.into_iter().map(|t| t.to_string()).collect();
        run_backup(&h, id, &tags, &excludes).map_err(script_error)
    });

    let h = host.clone();
    module.set_native_fn("forget", move |id: &str| -> ScriptResult<Map> { forget(&h, id).map_err(script_error) });

    let h = host.clone();
    module.set_native_fn("snapshots", move |id: &str| -> ScriptResult<Array> {
        let (layout, config) = repository::setup(&h, id).map_err(script_error)?;
        let repo =
            backup::repo(&repository::locate().map_err(script_error)?, &layout, &config).map_err(script_error)?;
        let snapshots = repo.snapshots(&[]).map_err(script_error)?;
        Ok(snapshots.iter().map(|s| Dynamic::from(snapshot_map(s))).collect())
    });

    let h = host.clone();
    module.set_native_fn("restore", move |id: &str, snapshot: &str, target: &str, force: bool| -> ScriptResult<Map> {
        restore(&h, id, snapshot, target, force, &[]).map_err(script_error)
    });
    let h = host.clone();
    module.set_native_fn(
        "restore",
        move |id: &str, snapshot: &str, target: &str, force: bool, includes: Array| -> ScriptResult<Map> {
            let includes: Vec<String> = includes.into_iter().map(|t| t.to_string()).collect();
            restore(&h, id, snapshot, target, force, &includes).map_err(script_error)
        },
    );

    let h = host.clone();
    module.set_native_fn("verify", move |id: &str| -> ScriptResult<Map> { verify(&h, id, None).map_err(script_error) });
    let h = host.clone();
    module.set_native_fn("verify", move |id: &str, subset: &str| -> ScriptResult<Map> {
        verify(&h, id, Some(subset).filter(|s| !s.is_empty())).map_err(script_error)
    });

    let h = host.clone();
    module.set_native_fn("status", move |ids: Array, deep: bool| -> ScriptResult<Array> {
        // A directory without client.env is not a client (status reports it as invalid).
        let is_client = |id: &String| ClientLayout::new(&h.roots, id).is_ok_and(|l| l.env_file.exists());
        let ids: Vec<String> = ids.into_iter().map(|i| i.to_string()).filter(is_client).collect();
        status(&h, &ids, deep).map(|all| all.into_iter().map(Dynamic::from).collect()).map_err(script_error)
    });
    let h = host.clone();
    module.set_native_fn("status", move |id: &str, deep: bool| -> ScriptResult<Map> {
        let mut all = status(&h, &[id.to_string()], deep).map_err(script_error)?;
        Ok(all.remove(0))
    });

    let h = host.clone();
    module.set_native_fn("add_pending_key", move |id: &str| -> ScriptResult<String> {
        Ok(repository::add_pending_key(&h, id).map_err(script_error)?.as_str().into())
    });
    let h = host.clone();
    module.set_native_fn("remove_previous_keys", move |id: &str| -> ScriptResult<INT> {
        Ok(repository::remove_previous_keys(&h, id).map_err(script_error)? as INT)
    });
    module
}

fn run_backup(host: &Host, id: &str, extra_tags: &[String], excludes: &[String]) -> Result<Map> {
    let (layout, config) = repository::setup(host, id)?;
    let mut plan = backup::plan(&host.roots, &layout, &config, extra_tags)?;
    if let Some(relative) = excludes.iter().find(|e| !e.starts_with('/')) {
        bail!("exclude {relative:?} is not an absolute path");
    }
    plan.request.excludes.extend(excludes.iter().cloned());
    let target = config.repository.to_string();
    let volume_names: Vec<String> = plan.volumes.iter().map(|v| v.name.clone()).collect();
    let detail = format!(
        "{} path(s), {} volume(s){}{}; tags {}",
        plan.request.paths.len() - plan.volumes.len(),
        plan.volumes.len(),
        if volume_names.is_empty() { String::new() } else { format!(" ({})", volume_names.join(" ")) },
        if excludes.is_empty() { String::new() } else { format!(", {} dumped data dir(s) left out", excludes.len()) },
        plan.request.tags.join(",")
    );
    repository::recover(host, &layout, &config)?;
    let summary = host
        .effects
        .apply("restic backup", &target, &detail, Outcome::Created, || {
            let result = (|| {
                let repo = backup::repo(&repository::locate()?, &layout, &config)?;
                let progress = Progress::start(&host.output, id);
                repo.backup(&plan.request, |status| progress.update(status))
            })();
            let line = match &result {
                Ok(s) => format!("backup ok {}", summary_line(s, plan.volumes.len())),
                Err(e) => match ResticError::of(e) {
                    Some(ResticError::PartialBackup { summary, unreadable, .. }) => format!(
                        "backup partial {} unreadable={}",
                        summary_line(summary, plan.volumes.len()),
                        unreadable.len().max(1)
                    ),
                    _ => format!("backup failed error={:?}", one_line(e)),
                },
            };
            if let Err(e) = backup::log_result(&layout, &line) {
                host.output.warn(&format!("could not append to the backup.log of {id}: {e}"));
            }
            result
        })?
        .value;
    let mut map = Map::new();
    map.insert("planned".into(), Dynamic::from(summary.is_none()));
    map.insert("paths".into(), strings(plan.request.paths.iter().map(|p| p.display().to_string())));
    map.insert("volumes".into(), strings(volume_names));
    map.insert("tags".into(), strings(plan.request.tags.clone()));
    if let Some(s) = summary {
        map.insert("snapshot".into(), text(&s.snapshot_id));
        map.insert("files".into(), int(s.total_files_processed));
        map.insert("files_new".into(), int(s.files_new));
        map.insert("files_changed".into(), int(s.files_changed));
        map.insert("bytes".into(), int(s.total_bytes_processed));
        map.insert("added".into(), int(s.data_added));
        map.insert("seconds".into(), Dynamic::from(s.total_duration as rhai::FLOAT));
    }
    Ok(map)
}

/// `restic::forget`: a `--dry-run` look first, so the step says what goes (and a run that
/// removes nothing neither locks the repository exclusively nor prunes).
fn forget(host: &Host, id: &str) -> Result<Map> {
    let (layout, config) = repository::setup(host, id)?;
    let target = config.repository.to_string();
    let policy = config.retention_summary();
    let mut map = Map::new();
    if config.retention.is_empty() {
        host.effects.unchanged("restic forget", &target, "no retention policy in backup/config.sh");
        map.insert("kept".into(), strings(Vec::<String>::new()));
        map.insert("removed".into(), strings(Vec::<String>::new()));
        return Ok(map);
    }
    repository::recover(host, &layout, &config)?;
    let repo = backup::repo(&repository::locate()?, &layout, &config)?;
    let planned = match repo.forget_plan(&config.retention) {
        Ok(plan) => plan,
        Err(e)
            if host.effects.planned_on(&target)
                && matches!(ResticError::of(&e), Some(ResticError::RepositoryMissing { .. })) =>
        {
            host.effects.unchanged("restic forget", &target, "repository not created yet");
            map.insert("kept".into(), strings(Vec::<String>::new()));
            map.insert("removed".into(), strings(Vec::<String>::new()));
            return Ok(map);
        }
        Err(e) => return Err(e),
    };
    // The files by the policy, then each service's dumps by the same rules, apart.
    let dumps = repo.snapshots(&[client_data::DUMP_TAG.to_string()])?;
    let mut policies = vec![("files".to_string(), config.retention.clone(), planned)];
    for retention in client_data::dump_retention(&config, &dumps) {
        let plan = repo.forget_plan(&retention)?;
        policies.push((format!("dumps of {}", retention.tags[1]), retention, plan));
    }
    let (mut kept, mut removed) = (Vec::new(), Vec::new());
    for (what, retention, planned) in policies {
        let needed = if planned.removed.is_empty() { Outcome::Unchanged } else { Outcome::Removed };
        let detail = format!(
            "{what}: {policy}; {} snapshot(s) to remove, {} kept{}",
            planned.removed.len(),
            planned.kept.len(),
            if config.prune && needed == Outcome::Removed { "; prune" } else { "" }
        );
        let mut report = planned.clone();
        host.effects.apply("restic forget", &target, &detail, needed, || {
            report = repo.forget(&retention, config.prune)?;
            Ok(())
        })?;
        kept.extend(report.kept.iter().map(|s| s.short_id.clone()));
        removed.extend(report.removed.iter().map(|s| s.short_id.clone()));
    }
    map.insert("kept".into(), strings(kept));
    map.insert("removed".into(), strings(removed));
    Ok(map)
}

/// Whether `dir` holds anything (a missing dir holds nothing).
fn has_entries(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(true),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

fn restore(host: &Host, id: &str, snapshot: &str, target: &str, force: bool, includes: &[String]) -> Result<Map> {
    let (layout, config) = repository::setup(host, id)?;
    let target_path = PathBuf::from(target);
    if target.is_empty() || !target_path.is_absolute() {
        bail!("the restore target {target:?} must be an absolute directory");
    }
    if target_path.starts_with(&host.roots.backup_root) {
        bail!("the restore target {target} lies inside the backup repositories ({})", host.roots.backup_root.display());
    }
    if !force && has_entries(&target_path)? {
        bail!(
            "the restore target {target} is not empty; restoring there could overwrite live data — \
             choose an empty or new directory, or pass FORCE=1"
        );
    }
    let repo = backup::repo(&repository::locate()?, &layout, &config)?;
    let snapshots = repo.snapshots(&[])?;
    let chosen = if snapshot.is_empty() || snapshot == "latest" {
        snapshots.iter().max_by_key(|s| s.system_time().ok())
    } else {
        let matching: Vec<&BackupSnapshot> = snapshots.iter().filter(|s| s.id.starts_with(snapshot)).collect();
        if matching.len() > 1 {
            bail!("snapshot prefix {snapshot} matches {} snapshots of {id}; give more digits", matching.len());
        }
        matching.first().copied()
    };
    let Some(chosen) = chosen else {
        if snapshots.is_empty() {
            bail!("the repository of {id} holds no snapshot yet; run backup-client first");
        }
        let known: Vec<&str> = snapshots.iter().rev().take(5).map(|s| s.short_id.as_str()).collect();
        bail!("snapshot {snapshot} is not in the repository of {id} (newest: {})", known.join(", "));
    };
    let when = chosen.system_time().map(rfc3339).unwrap_or_else(|_| chosen.time.clone());
    let detail = format!(
        "snapshot {} of {when}{}{}",
        chosen.short_id,
        if includes.is_empty() { String::new() } else { format!("; only {}", includes.join(" ")) },
        if force { "; FORCE" } else { "" }
    );
    let restored = host.effects.apply("restic restore", target, &detail, Outcome::Created, || {
        repo.restore(&chosen.id, &target_path, includes)
    })?;
    let mut map = snapshot_map(chosen);
    map.insert("planned".into(), Dynamic::from(restored.value.is_none()));
    map.insert("snapshot".into(), text(&chosen.short_id));
    map.insert("target".into(), text(target));
    Ok(map)
}

/// `restic check` (reading back a share of the data), then a test restore of a sample —
/// the client's `client.env` from the newest snapshot, which must name this client.
fn verify(host: &Host, id: &str, subset: Option<&str>) -> Result<Map> {
    let (layout, config) = repository::setup(host, id)?;
    let mut map = Map::new();
    map.insert("client".into(), text(id));
    map.insert("repository".into(), text(config.repository.to_string()));
    repository::recover(host, &layout, &config)?;
    let mut dumps = Array::new();
    let outcome = (|| -> Result<(usize, String, String)> {
        let repo = backup::repo(&repository::locate()?, &layout, &config)?;
        let snapshots = repo.snapshots(&[])?;
        let subset = subset.unwrap_or(&config.check_subset);
        repo.check(Some(subset).filter(|s| !s.is_empty() && *s != "0%" && *s != "0"))?;
        let check = if subset.is_empty() { "ok".to_string() } else { format!("ok (read back {subset} of the data)") };
        let files = snapshots.iter().filter(|s| !s.tags.iter().any(|t| t == client_data::DUMP_TAG));
        let Some(newest) = files.max_by_key(|s| s.system_time().ok()) else {
            bail!("the repository holds no snapshot to restore a sample from");
        };
        let scratch =
            tempfile::Builder::new().prefix("agency-verify-").tempdir().context("cannot create a scratch dir")?;
        let sample = &layout.env_file;
        let in_snapshot = newest.paths.iter().any(|p| sample.starts_with(p));
        if !in_snapshot {
            bail!("snapshot {} does not contain {}", newest.short_id, sample.display());
        }
        repo.restore(&newest.id, scratch.path(), &[sample.display().to_string()])?;
        let restored = scratch.path().join(sample.strip_prefix("/").unwrap_or(sample));
        let restored_text = std::fs::read_to_string(&restored).map_err(|e| {
            anyhow!(
                "the test restore of {} from snapshot {} gave no readable file: {e}",
                sample.display(),
                newest.short_id
            )
        })?;
        let values = envfile::parse(&restored_text).context("the restored client.env does not parse")?;
        match values.get("CLIENT_ID") {
            Some(found) if found == id => {}
            other => bail!("the restored client.env names client {other:?}, not {id}"),
        }
        let mut sample =
            format!("a copy of {} from snapshot {} restored into a scratch dir", sample.display(), newest.short_id);
        let verdicts = dump_verify::verify_dumps(host, &layout, &repo, &snapshots)?;
        for verdict in &verdicts {
            let mut entry = Map::new();
            entry.insert("service".into(), text(&verdict.service));
            entry.insert("snapshot".into(), text(&verdict.snapshot));
            entry.insert("ok".into(), Dynamic::from(verdict.ok));
            entry.insert("message".into(), text(&verdict.message));
            dumps.push(Dynamic::from(entry));
        }
        let failed: Vec<&str> = verdicts.iter().filter(|v| !v.ok).map(|v| v.message.as_str()).collect();
        if !failed.is_empty() {
            bail!("{}", failed.join("; "));
        }
        for verdict in &verdicts {
            sample.push_str(&format!("; {}", verdict.message));
        }
        Ok((snapshots.len(), check, sample))
    })();
    map.insert("dumps".into(), Dynamic::from(dumps));
    match outcome {
        Ok((count, check, sample)) => {
            map.insert("ok".into(), Dynamic::from(true));
            map.insert("snapshots".into(), int(count as u64));
            map.insert("check".into(), text(check));
            map.insert("sample".into(), text(&sample));
            map.insert("message".into(), text(format!("{count} snapshot(s); check ok; {sample}")));
        }
        Err(e) => {
            map.insert("ok".into(), Dynamic::from(false));
            map.insert("message".into(), text(format!("{e:#}")));
        }
    }
    Ok(map)
}

/// Why every backup check is skipped when backups are off.
const BACKUPS_OFF: &str = "backups are off on this host (AGENCY_BACKUPS=off)";

fn status(host: &Host, ids: &[String], deep: bool) -> Result<Vec<Map>> {
    let now = SystemTime::now();
    let Some(statuses) = repo_statuses(host, ids, deep)? else {
        return ids
            .iter()
            .map(|id| {
                let layout = repository::layout(host, id)?;
                let mut map = Map::new();
                map.insert("client".into(), text(id));
                map.insert("repository".into(), text(layout.repository));
                map.insert("level".into(), text("unchecked"));
                map.insert("ok".into(), Dynamic::from(true));
                map.insert("message".into(), text(BACKUPS_OFF));
                Ok(map)
            })
            .collect();
    };
    Ok(statuses.iter().map(|s| status_map(s, now)).collect())
}

/// The repository status of each of `ids`; `None` when backups are off on this host.
fn repo_statuses(host: &Host, ids: &[String], deep: bool) -> Result<Option<Vec<RepoStatus>>> {
    if !repository::backups_on(host)? {
        return Ok(None);
    }
    let clients: Vec<(ClientLayout, Result<BackupConfig, String>)> = ids
        .iter()
        .map(|id| {
            let layout = repository::layout(host, id)?;
            let config = BackupConfig::load(&layout).map_err(|e| format!("{e:#}"));
            Ok((layout, config))
        })
        .collect::<Result<_>>()?;
    let restic = if deep { Some(repository::locate()?) } else { None };
    Ok(Some(backup::status_many(restic.as_ref(), &clients, backup::deep_workers())))
}

/// The `backup` check of each of `ids` (clients with a client.env), in their order: the
/// repository present and initialized, the age of its newest snapshot; with `deep` opened
/// with the password on disk.
pub(super) fn backup_checks(host: &Host, ids: &[String], deep: bool) -> Result<Vec<Check>> {
    let now = SystemTime::now();
    let mut checks = Vec::with_capacity(ids.len());
    // A few hundred at a time: their layouts and backup configs are dropped once checked.
    for chunk in ids.chunks(256) {
        let Some(statuses) = repo_statuses(host, chunk, deep)? else {
            for id in chunk {
                let repository = repository::layout(host, id)?.repository;
                let evidence = json!({
                    "repository": repository, "deep": null, "snapshots": null, "newest": null, "age_seconds": null,
                });
                checks.push(Check::new("backup", Status::Skip, BACKUPS_OFF).evidence(evidence));
            }
            continue;
        };
        checks.extend(statuses.iter().map(|s| backup_check(s, now)));
    }
    Ok(checks)
}

fn backup_check(status: &RepoStatus, now: SystemTime) -> Check {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let evidence = json!({
        "repository": status.repository,
        "deep": status.deep,
        "snapshots": status.snapshots.map(|n| count(n as u64)),
        "newest": status.newest.map(rfc3339),
        "age_seconds": status.age(now).map(|age| count(age.as_secs())),
    });
    let check = |level| Check::new("backup", level, &status.message).evidence(evidence.clone());
    match status.level {
        backup::Level::Ok => check(Status::Ok),
        backup::Level::Warning => check(Status::Warn),
        backup::Level::Unchecked => check(Status::Skip),
        backup::Level::Problem => check(Status::Fail).fix(
            "FIX=1 cannot: create-client initializes a missing repository; a password that does not open it must be restored from the secrets history",
        ),
    }
}
