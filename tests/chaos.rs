//! Chaos (issue 16): `kill -9` of agency, or of its whole process group, at a random moment
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

/// Starts `args` in a process group of its own, and kills it (`group`: the whole group)
/// after `delay`.
fn kill_during(site: &Site, args: &[String], delay: Duration, group: bool) {
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
    // SAFETY: kill(2) on our own child (or its process group).
    unsafe { libc::kill(if group { -pid } else { pid }, libc::SIGKILL) };
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
    let group = rng.below(2) == 1;
    let args = scenario.args(&id);
    kill_during(&site, &args, delay, group);
    let context = format!(
        "{scenario:?} run {run} (seed {seed}): kill -9 of {} after {delay:?}",
        if group { "the process group" } else { "agency" }
    );

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
    let scenarios = [Scenario::Create, Scenario::Rotate, Scenario::Backup, Scenario::Delete];
    // Two at a time: restic's key derivation takes a core.
    let halves = [&scenarios[..2], &scenarios[2..]];
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
    eprintln!("chaos: seed {seed}, {runs} runs per scenario, {} runs, {} broke an invariant", runs * 4, failures.len());
    assert!(
        failures.is_empty(),
        "{} of {} runs broke an invariant:\n{}",
        failures.len(),
        runs * 4,
        failures.join("\n")
    );
}
