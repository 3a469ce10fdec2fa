//! Chaos (issue 16): `kill -9` of agency, of its process group, or of agency and every
//! descendant at one instant (restic then dies by SIGKILL mid-write), at a random moment
//! of create-client, rotate-secrets, backup-client and delete-client (restic children
//! included: they run for most of each task), each followed by a plain re-run; then every
//! invariant a user would check. Real restic, the fake docker, a site of its own per run.
//!
//! Seeded (`AGENCY_CHAOS_SEED`, default 16) and sized by `AGENCY_CHAOS_RUNS` runs per
//! scenario (default 20, the floor; about seven minutes on 2 cores, beside the
//! rest of the suite). A failure names the seed, scenario, run, delay and kind of kill to replay it.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use crate::{
    support::state::temp_files,
    test::{Output, Site},
};

/// xorshift64*: a small seeded generator, so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Clone, Copy, Debug)]
enum Scenario {
    Create,
    Rotate,
    Backup,
    Delete,
}

impl Scenario {
    fn args(self, id: &str) -> Vec<String> {
        let id_arg = format!("CLIENT_ID={id}");
        match self {
            Self::Create => {
                vec![
                    "create-client".into(),
                    id_arg,
                    "CLIENT_NAME=Chaos".into(),
                    format!("CLIENT_DOMAIN={id}.example.com"),
                ]
            }
            Self::Rotate => vec!["rotate-secrets".into(), id_arg],
            Self::Backup => vec!["backup-client".into(), id_arg],
            Self::Delete => vec!["--yes".into(), "delete-client".into(), id_arg],
        }
    }

    /// About how long the task runs here (restic's key derivations dominate): kills fall
    /// anywhere in it, and a little past it.
    fn span_ms(self) -> u64 {
        match self {
            Self::Create => 4000,
            Self::Rotate => 5000,
            Self::Backup => 3000,
            Self::Delete => 3000,
        }
    }
}

fn agency(site: &Site, args: &[String]) -> Output {
    let test = site.test().args(args);
    test.run_unchecked()
}

/// What a kill takes down.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// agency alone: its children get the SIGTERM of their parent-death signal.
    Agency,
    /// agency's process group: every child has a group of its own, so again agency alone.
    Group,
    /// agency and every descendant at one instant (as a cgroup kill or the OOM killer
    /// would): restic dies by SIGKILL mid-write, with no chance to clean up.
    Tree,
}

impl Kill {
    fn pick(rng: &mut Rng) -> Self {
        [Self::Agency, Self::Group, Self::Tree][rng.below(3) as usize]
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Agency => "agency",
            Self::Group => "the process group",
            Self::Tree => "agency and all its descendants",
        }
    }
}

/// The parent of every process now running (from /proc/<pid>/stat).
fn parents() -> Vec<(i32, i32)> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, parents_of(pid)?)))
        .collect()
}

/// Pidfds of `root`'s descendants (a pidfd names one process: a pid that exits and is reused
/// meanwhile can never be signalled), parents before their children.
fn descendants(root: i32) -> Vec<i32> {
    let parents = parents();
    let mut tree = vec![(root, root)];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i].0;
        let children: Vec<(i32, i32)> = parents
            .iter()
            .filter(|(pid, ppid)| *ppid == parent && !tree.iter().any(|(p, _)| p == pid))
            .copied()
            .collect();
        tree.extend(children);
        i += 1;
    }
    tree.into_iter()
        .skip(1)
        .filter_map(|(pid, ppid)| {
            // SAFETY: pidfd_open(2) takes a pid and flags; no memory is involved.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
            if fd < 0 {
                return None;
            }
            // The pidfd names the process now at `pid`: still the one found only if its
            // parent is still the one it was found under.
            let still = parents_of(pid) == Some(ppid);
            if !still {
                // SAFETY: our own descriptor.
                unsafe { libc::close(fd) };
                return None;
            }
            Some(fd)
        })
        .collect()
}

fn parents_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Starts `args` in a process group of its own, and kills it as `kill` says after `delay`.
/// Only the agency this test started, and its own descendants, are ever signalled.
fn kill_during(site: &Site, args: &[String], delay: Duration, kill: Kill) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agency"))
        .args(args)
        .env_clear()
        .envs(site.env())
        .current_dir(site.path())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let pid = child.id() as i32;
    // SAFETY: kill(2) on our own child (not yet waited for, so its pid is its own) or its
    // process group; its descendants go through pidfds.
    match kill {
        Kill::Agency => unsafe { libc::kill(pid, libc::SIGKILL) },
        Kill::Group => unsafe { libc::kill(-pid, libc::SIGKILL) },
        Kill::Tree => {
            for fd in descendants(pid).into_iter().rev() {
                // SAFETY: pidfd_send_signal(2) on a pidfd of ours; no siginfo, no flags.
                unsafe {
                    libc::syscall(libc::SYS_pidfd_send_signal, fd, libc::SIGKILL, std::ptr::null::<u8>(), 0);
                    libc::close(fd);
                }
            }
            unsafe { libc::kill(pid, libc::SIGKILL) }
        }
    };
    child.wait().unwrap();
}

fn secrets_of(file: &Path) -> BTreeMap<String, String> {
    fs::read_to_string(file)
        .ok()
        .and_then(|text| agency::format::envfile::parse(&text).ok())
        .map(|values| values.into_iter().collect())
        .unwrap_or_default()
}

/// Every secrets.env under the root (the client's, its history, an archive's).
fn secrets_files(site: &Site) -> Vec<PathBuf> {
    walkdir::WalkDir::new(site.root())
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && e.file_name().to_string_lossy().starts_with("secrets.env"))
        .map(|e| e.path().to_path_buf())
        .collect()
}

/// The restic repositories under the backup root (active and archived).
fn repositories(site: &Site) -> Vec<PathBuf> {
    walkdir::WalkDir::new(site.backup_root())
        .max_depth(2)
        .into_iter()
        .flatten()
        .filter(|e| e.path().join("keys").is_dir())
        .map(|e| e.path().to_path_buf())
        .collect()
}

fn entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn restic_opens(site: &Site, repository: &Path, password: &str, key: &str) -> bool {
    Command::new("restic")
        .args(["--no-cache", &format!("--key-hint={key}"), "cat", "config"])
        .env("RESTIC_REPOSITORY", repository)
        .env("RESTIC_PASSWORD", password)
        .env("HOME", site.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The invariants after the re-run; `Err` says which one broke.
fn check_invariants(
    site: &Site,
    id: &str,
    scenario: Scenario,
    before: &BTreeMap<String, String>,
) -> Result<(), String> {
    let current = secrets_of(&site.secrets_file(id));
    match scenario {
        Scenario::Create | Scenario::Backup if !before.is_empty() && current != *before => {
            return Err("the secrets changed".into());
        }
        Scenario::Rotate if current.get("RESTIC_PASSWORD") == before.get("RESTIC_PASSWORD") => {
            return Err("the re-run did not complete the rotation".into());
        }
        _ => {}
    }
    let passwords: Vec<String> =
        secrets_files(site).iter().filter_map(|f| secrets_of(f).get("RESTIC_PASSWORD").cloned()).collect();
    let repositories = repositories(site);
    if repositories.is_empty() {
        return Err("no repository".into());
    }
    for repository in &repositories {
        let keys = entries(&repository.join("keys"));
        if keys.len() != 1 {
            return Err(format!("{} has {} keys", repository.display(), keys.len()));
        }
        // A lock restic was still writing when killed (`<id>-tmp-...`) is no lock: restic
        // passes over it, and so does agency's stale-lock repair.
        let locks: Vec<String> =
            entries(&repository.join("locks")).into_iter().filter(|name| !name.contains("-tmp-")).collect();
        if !locks.is_empty() {
            return Err(format!("{} holds lock(s) {locks:?}", repository.display()));
        }
        if !repository.join("config").is_file() {
            return Err(format!("{} has no config", repository.display()));
        }
        // The password on disk (the client's, or its archive's after a delete) opens it.
        let owner = if repository.ends_with(format!("client-{id}")) {
            current.get("RESTIC_PASSWORD").cloned().into_iter().collect::<Vec<_>>()
        } else {
            passwords.clone()
        };
        if !owner.iter().any(|p| restic_opens(site, repository, p, &keys[0])) {
            return Err(format!("the password on disk does not open {}", repository.display()));
        }
    }
    let temps = temp_files(site);
    if !temps.is_empty() {
        return Err(format!("temp files left: {temps:?}"));
    }
    // No secret value in any file outside the secrets dirs, their history and archives.
    let values: Vec<String> = secrets_files(site).iter().flat_map(|f| secrets_of(f).into_values()).collect();
    let secrets_dir = site.root().join("secrets");
    let archive = site.root().join("archive");
    for entry in walkdir::WalkDir::new(site.path()).into_iter().flatten() {
        let path = entry.path();
        if !entry.file_type().is_file()
            || path.starts_with(&secrets_dir)
            || path.starts_with(&archive)
            || path.starts_with(site.backup_root())
        {
            continue;
        }
        let Ok(text) = fs::read_to_string(path) else { continue };
        if values.iter().any(|v| text.contains(v.as_str())) {
            return Err(format!("a secret value in {}", path.display()));
        }
    }
    Ok(())
}

fn one_run(scenario: Scenario, seed: u64, run: u64) -> Result<(), String> {
    let mut rng = Rng(seed ^ (run + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ scenario as u64);
    rng.next();
    let site = Site::new();
    let id = format!("chaos-{}", run % 1000);
    let create = Scenario::Create.args(&id);
    if !matches!(scenario, Scenario::Create) {
        let made = agency(&site, &create);
        if made.status != 0 {
            return Err(format!("setup create-client failed: {}", made.stderr));
        }
    }
    let before = secrets_of(&site.secrets_file(&id));
    let delay = Duration::from_millis(rng.below(scenario.span_ms()));
    let kill = Kill::pick(&mut rng);
    let args = scenario.args(&id);
    kill_during(&site, &args, delay, kill);
    let context = format!("{scenario:?} run {run} (seed {seed}): kill -9 of {} after {delay:?}", kill.describe());

    // The secrets a killed create-client had written are the ones the re-run must keep.
    let before = if matches!(scenario, Scenario::Create) { secrets_of(&site.secrets_file(&id)) } else { before };
    // What delete-client itself takes as still there (its config dir, its secrets dir, or its
    // repository in the active place): a kill between two of its renames leaves a part.
    let still_there = site.client_dir(&id).exists()
        || site.secrets_file(&id).parent().is_some_and(Path::exists)
        || site.backup_root().join(format!("client-{id}")).exists();
    if !matches!(scenario, Scenario::Delete) || still_there {
        let rerun = agency(&site, &args);
        if rerun.status != 0 {
            return Err(format!("{context}: the re-run failed: {}", rerun.stderr));
        }
    }
    check_invariants(&site, &id, scenario, &before).map_err(|e| format!("{context}: {e}"))
}

#[test]
fn kill_9_at_random_moments_then_a_plain_rerun_keeps_every_invariant() {
    let seed = env_number("AGENCY_CHAOS_SEED", 16);
    let runs = env_number("AGENCY_CHAOS_RUNS", 20);
    // `AGENCY_CHAOS_SCENARIOS=delete,rotate` replays only those.
    let only = std::env::var("AGENCY_CHAOS_SCENARIOS").unwrap_or_default().to_lowercase();
    let scenarios: Vec<Scenario> = [Scenario::Create, Scenario::Rotate, Scenario::Backup, Scenario::Delete]
        .into_iter()
        .filter(|s| only.is_empty() || only.split(',').any(|o| o.trim() == format!("{s:?}").to_lowercase()))
        .collect();
    let total = runs * scenarios.len() as u64;
    // Two at a time: restic's key derivation takes a core.
    let halves: Vec<&[Scenario]> = scenarios.chunks(scenarios.len().div_ceil(2).max(1)).collect();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = halves
            .iter()
            .map(|half| {
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    for scenario in half.iter() {
                        for run in 0..runs {
                            if let Err(e) = one_run(*scenario, seed, run) {
                                failures.push(e);
                            }
                        }
                    }
                    failures
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    // The count shows in CI's log (cargo prints a passing test's output with --nocapture).
    eprintln!("chaos: seed {seed}, {runs} runs per scenario, {total} runs, {} broke an invariant", failures.len());
    assert!(failures.is_empty(), "{} of {} runs broke an invariant:\n{}", failures.len(), total, failures.join("\n"));
}
