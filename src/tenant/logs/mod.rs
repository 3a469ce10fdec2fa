//! Log collection (SPEC §12): the ingress's access log split into each client's `access.log`
//! (`access`), the client's containers' stderr into its `error.log` (`errors`), requests no
//! client's router served into one host-level file, `$AGENCY_LOG_ROOT/ingress/unrouted.log`.
//!
//! Exact across runs, rotations and kills: a cursor per source (the access log's
//! [`source::FileCursor`], each container's [`errors::ContainerCursor`]) lives in one state
//! file, `$AGENCY_ROOT/logs/state.json` (0600 in a 0700 dir), replaced atomically. A run
//! 1. undoes what a killed run appended without committing (below),
//! 2. reads every source from its cursor,
//! 3. records, per file it will append to, the file's identity and size (`pending`, an
//!    atomic write of the state with the old cursors),
//! 4. appends and syncs,
//! 5. commits the new cursors with no `pending` (an atomic write).
//!
//! Killed between 3 and 5, the next run finds a file of `pending` longer than recorded (same
//! device and inode) and truncates it back; the old cursors then give the same lines again.
//! One run at a time: `$AGENCY_ROOT/logs/collect.lock` (flock, waited for).

pub mod access;
pub mod errors;
pub mod source;

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::{
    drivers::{
        container_logs,
        docker::{Docker, LABEL_MANAGED, LABEL_SHARED_INGRESS},
    },
    effects::{Effects, Outcome},
    format::validate,
    fsutil,
    tenant::layout::{ClientLayout, Roots},
    tenant::policy::{CLIENT_LABEL, LOG_DIR_MODE, LOG_FILE_MODE},
};
use errors::{ContainerCursor, ErrorLine};
use source::FileCursor;

const STATE_MODE: u32 = 0o600;

/// The directory of the collection's state and lock.
pub fn state_dir(roots: &Roots) -> PathBuf {
    roots.root.join("logs")
}

/// The ingress's JSON access log (setup-ingress mounts its directory into the container).
pub fn ingress_access_log(roots: &Roots) -> PathBuf {
    crate::tenant::ingress::log_dir(roots).join("access.json")
}

/// Where requests that are no client's go.
pub fn unrouted_log(roots: &Roots) -> PathBuf {
    crate::tenant::ingress::log_dir(roots).join("unrouted.log")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    dev: u64,
    ino: u64,
    size: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    files: BTreeMap<String, FileCursor>,
    #[serde(default)]
    containers: BTreeMap<String, ContainerCursor>,
    #[serde(default)]
    pending: BTreeMap<String, Pending>,
}

/// What one collection did.
#[derive(Debug, Default)]
pub struct Report {
    /// Lines appended to each client's access.log / error.log.
    pub access: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    /// Lines appended to the host-level file.
    pub unrouted: u64,
    /// Sources whose rotated part was gone before it was read.
    pub lost: Vec<String>,
    /// Containers whose logs could not be read this time (their cursor stays).
    pub warnings: Vec<String>,
    /// Why no container's output was collected (the engine did not answer), if so.
    pub docker_error: Option<String>,
}

/// What to collect.
#[derive(Clone)]
pub struct Scope<'a> {
    /// One client's containers only (stop-client and deploy-client, before they remove
    /// containers); `None`: everything.
    pub client: Option<&'a str>,
    /// The docker program; `None` when the engine is not to be asked (no container output).
    pub docker: Option<Result<PathBuf, String>>,
}

fn line_count(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b'\n').count() as u64
}

fn load_state(path: &Path) -> Result<State> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a collection state; move it away to start over", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_state(effects: &Effects, path: &Path, state: &State, detail: &str) -> Result<()> {
    let bytes = serde_json::to_vec(state)?;
    let shown = path.display().to_string();
    effects.apply("write", &shown, detail, Outcome::Updated, || {
        fsutil::write_atomic(path, &bytes, STATE_MODE).with_context(|| format!("cannot write {shown}"))
    })?;
    Ok(())
}

/// Step 1: cuts back what a killed run appended after recording `pending`.
fn undo_unfinished(effects: &Effects, state: &State) -> Result<()> {
    for (path, pending) in &state.pending {
        let Ok(meta) = std::fs::symlink_metadata(path) else { continue };
        let created_by_it = pending.ino == 0;
        if !created_by_it && (meta.dev() != pending.dev || meta.ino() != pending.ino) || meta.len() <= pending.size {
            continue;
        }
        let detail = format!("{} bytes an unfinished collection appended", meta.len() - pending.size);
        effects.apply("truncate", path, &detail, Outcome::Updated, || {
            let file = OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
            file.set_len(pending.size)?;
            file.sync_all().with_context(|| format!("cannot truncate {path}"))
        })?;
    }
    Ok(())
}

/// A client's log, opened to append: never through a symlink, never a hard-linked file.
fn open_for_append(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(LOG_FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    crate::fsutil::refuse_hard_link(path, &file.metadata()?)?;
    Ok(file)
}

/// Writes `bytes` in two parts (a crash point between them: a half-finished append) and syncs.
fn append(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = open_for_append(path)?;
    let half = bytes[..bytes.len() / 2].iter().rposition(|b| *b == b'\n').map_or(bytes.len() / 2, |i| i + 1);
    file.write_all(&bytes[..half])?;
    crate::effects::crash_point("lines partly appended");
    file.write_all(&bytes[half..])?;
    file.sync_data().with_context(|| format!("cannot write {}", path.display()))
}

/// The clients of this root with a valid id (another directory under clients/ is status's
/// to report), or just `only`.
fn clients(roots: &Roots, only: Option<&str>) -> Result<Vec<String>> {
    if let Some(id) = only {
        ClientLayout::new(roots, id)?;
        return Ok(vec![id.to_string()]);
    }
    Ok(roots.client_ids()?.into_iter().filter(|id| validate::client_id(id).is_ok()).collect())
}

/// The error lines of the clients' containers since their cursors; the cursors of containers
/// that are gone are dropped (only those of the clients collected).
fn collect_errors(
    docker: &Path,
    clients: &[String],
    state: &mut State,
    report: &mut Report,
) -> Result<BTreeMap<String, Vec<ErrorLine>>> {
    let engine = Docker::with_program(docker);
    let containers = engine
        .list_containers_with_labels(&[(LABEL_MANAGED.into(), "true".into()), (CLIENT_LABEL.into(), String::new())])?;
    let mut found: BTreeMap<String, Vec<ErrorLine>> = BTreeMap::new();
    let mut seen = Vec::new();
    for container in &containers {
        let Some(client) = container.label(CLIENT_LABEL) else { continue };
        if container.is_probe()
            || container.label(LABEL_SHARED_INGRESS) == Some("true")
            || clients.binary_search_by(|c| c.as_str().cmp(client)).is_err()
        {
            continue;
        }
        seen.push(container.id.clone());
        let service = container
            .label("agency.service")
            .or_else(|| container.label("com.docker.compose.service"))
            .unwrap_or(&container.name);
        let cursor = state
            .containers
            .get(&container.id)
            .cloned()
            .unwrap_or_else(|| ContainerCursor { client: client.to_string(), ..Default::default() });
        let since = Some(cursor.since.as_str()).filter(|s| !s.is_empty());
        match container_logs::stderr_since(docker, &container.id, since) {
            Ok(stderr) => {
                let (lines, next) = errors::take_new(&stderr, service, &cursor);
                found.entry(client.to_string()).or_default().extend(lines);
                // A container that never wrote to stderr needs no cursor (and no state write).
                if next != cursor || state.containers.contains_key(&container.id) {
                    state.containers.insert(container.id.clone(), next);
                }
            }
            Err(e) => report.warnings.push(format!("{e:#}")),
        }
    }
    state.containers.retain(|id, cursor| {
        seen.contains(id) || clients.binary_search_by(|c| c.as_str().cmp(&cursor.client)).is_err()
    });
    for lines in found.values_mut() {
        lines.sort_by(|a, b| a.time.cmp(&b.time));
    }
    Ok(found)
}

/// Brings the clients' access.log and error.log (and the host-level file) up to date.
pub fn collect(roots: &Roots, effects: &Effects, scope: Scope) -> Result<Report> {
    let dir = state_dir(roots);
    if !effects.is_dir(&dir) {
        // Never collected. A run that finds nothing to write leaves no trace (stop-client of a
        // client without containers, a refused delete-client); one that does makes the
        // directory and starts over under the lock (another first run may have come first).
        if let Some(report) = collect_locked(roots, effects, scope.clone(), false)? {
            return Ok(report);
        }
        effects.mkdir(&dir, 0o700)?;
    }
    let _lock = effects.lock(&dir.join("collect.lock"), &[])?;
    collect_locked(roots, effects, scope, true).map(|r| r.expect("may write"))
}

/// [`collect`] with the lock held (or no state yet); `None` when it would write and `may_write`
/// is false.
fn collect_locked(roots: &Roots, effects: &Effects, scope: Scope, may_write: bool) -> Result<Option<Report>> {
    let state_file = state_dir(roots).join("state.json");
    let before = load_state(&state_file)?;
    undo_unfinished(effects, &before)?;
    let mut state =
        State { files: before.files.clone(), containers: before.containers.clone(), pending: BTreeMap::new() };
    let clients = clients(roots, scope.client)?;
    let mut report = Report::default();
    // Destination file → bytes to append, in the order they were found.
    let mut appends: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    let log_dir = |id: &str| roots.log_root.join("clients").join(id);

    if scope.client.is_none() {
        let source = ingress_access_log(roots);
        let key = source.display().to_string();
        let cursor = state.files.get(&key).cloned().unwrap_or_default();
        let gained = source::read_since(&source, &cursor).with_context(|| format!("cannot read {key}"))?;
        if gained.lost {
            report.lost.push(key.clone());
        }
        let routes = access::Routes::new(&clients);
        let mut per_client: Vec<Vec<u8>> = vec![Vec::new(); clients.len()];
        let mut unrouted = Vec::new();
        let mut line = Vec::new();
        for raw in gained.bytes.split_inclusive(|b| *b == b'\n') {
            let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            line.clear();
            match access::split_line(&routes, raw, &mut line) {
                Some(index) => per_client[index].extend_from_slice(&line),
                None => unrouted.extend_from_slice(&line),
            }
        }
        for (id, bytes) in clients.iter().zip(per_client) {
            if !bytes.is_empty() {
                report.access.insert(id.clone(), line_count(&bytes));
                appends.insert(log_dir(id).join("access.log"), bytes);
            }
        }
        if !unrouted.is_empty() {
            report.unrouted = line_count(&unrouted);
            appends.insert(unrouted_log(roots), unrouted);
        }
        state.files.insert(key, gained.cursor);
    }

    match scope.docker {
        Some(Ok(docker)) => match collect_errors(&docker, &clients, &mut state, &mut report) {
            Ok(found) => {
                for (id, lines) in found {
                    if lines.is_empty() {
                        continue;
                    }
                    report.errors.insert(id.clone(), lines.len() as u64);
                    let bytes: Vec<u8> = lines.into_iter().flat_map(|l| l.text).collect();
                    appends.insert(log_dir(&id).join("error.log"), bytes);
                }
            }
            Err(e) => report.docker_error = Some(format!("{e:#}")),
        },
        Some(Err(e)) => report.docker_error = Some(e),
        None => {}
    }

    let cursors_moved = before.files != state.files || before.containers != state.containers;
    if appends.is_empty() && !cursors_moved && before.pending.is_empty() {
        effects.unchanged("collect", "logs", "nothing new");
        return Ok(Some(report));
    }
    if !may_write {
        return Ok(None);
    }
    // Step 3: the identity and size of every file about to grow, with the old cursors.
    let mut pending = BTreeMap::new();
    for path in appends.keys() {
        if let Some(parent) = path.parent().filter(|p| !p.is_dir()) {
            let shown = parent.display().to_string();
            effects.apply("mkdir", &shown, "mode 0750", Outcome::Created, || {
                fsutil::create_dir(parent, LOG_DIR_MODE).map(drop).with_context(|| format!("cannot create {shown}"))
            })?;
        }
        // A file that does not exist yet is recorded as inode 0: whatever it holds later is
        // the unfinished append's.
        let recorded = match std::fs::symlink_metadata(path) {
            Ok(meta) => Pending { dev: meta.dev(), ino: meta.ino(), size: meta.len() },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Pending { dev: 0, ino: 0, size: 0 },
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        pending.insert(path.display().to_string(), recorded);
    }
    if !appends.is_empty() {
        let recorded = State { files: before.files.clone(), containers: before.containers.clone(), pending };
        write_state(effects, &state_file, &recorded, "the sizes of the files collection appends to")?;
    }
    // Step 4.
    for (path, bytes) in &appends {
        let shown = path.display().to_string();
        effects.apply("append", &shown, &format!("{} lines", line_count(bytes)), Outcome::Updated, || {
            append(path, bytes)
        })?;
    }
    // Step 5.
    state.pending.clear();
    write_state(effects, &state_file, &state, "the cursors past what was appended")?;
    Ok(Some(report))
}
