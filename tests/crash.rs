//! create-client under faults (issue 9), on the real engine and real restic: killed after each
//! of its steps in turn (`AGENCY_FAULT_CRASH_AFTER=N`) or with step N failing
//! (`AGENCY_FAULT_FAIL_AT=N`), a plain re-run completes it and the client ends up exactly as
//! an uninterrupted run leaves it: files with contents and modes, networks with labels, the
//! repository initialized and opened by the password on disk, secrets never regenerated
//! once written, no temp file left.
//!
//! Each fault point runs in a site and with a client id of its own, a few at a time.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use agency::{drivers::docker::Docker, subnet::Ipv4Net};

use crate::{
    support::docker::{Scratch, client_networks, scratch_pool, unique},
    test::{Output, Site},
};

/// Fault-point runs at a time: the machine has 2 cores and restic init spends ≈ 2.5 s of one.
const PARALLEL: usize = 4;

/// create-client in `site` for `id`, with the subnet pool every run of a test shares.
pub fn create_args(id: &str, pool: &str) -> Vec<String> {
    vec![
        "create-client".into(),
        format!("CLIENT_ID={id}"),
        "CLIENT_NAME=Crash \"Test\" $(id) Ltd".into(),
        format!("CLIENT_DOMAIN={id}.example.com"),
        format!("AGENCY_SUBNET_POOL={pool}"),
        "AGENCY_SUBNET_PREFIX=28".into(),
    ]
}

pub fn run_create(site: &Site, id: &str, pool: &str, extra: &[(&str, &str)]) -> Output {
    let mut test = site.test().arg("--json");
    for arg in create_args(id, pool) {
        test = test.arg(&arg);
    }
    for (key, value) in extra {
        test = test.env(key, value);
    }
    test.run_unchecked()
}

/// The steps of a run's `--json` report that changed something.
pub fn changed_steps(output: &Output) -> Vec<String> {
    output.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["changes"].as_array().unwrap().clone())
        .filter(|c| c["outcome"] != "unchanged")
        .map(|c| format!("{} {} {}", c["outcome"].as_str().unwrap(), c["action"].as_str().unwrap(), c["target"]))
        .collect()
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

pub fn secrets(site: &Site, id: &str) -> Option<BTreeMap<String, String>> {
    let text = fs::read_to_string(site.secrets_file(id)).ok()?;
    Some(agency::envfile::parse(&text).unwrap().into_iter().collect())
}

/// `restic ARGS` on the client's repository with `password` (restic itself, no agency code).
fn restic(site: &Site, id: &str, password: &str, args: &[&str]) -> std::process::Output {
    Command::new("restic")
        .args(args)
        .arg("--no-cache")
        .env("RESTIC_REPOSITORY", site.backup_root().join(format!("client-{id}")))
        .env("RESTIC_PASSWORD", password)
        .env("HOME", site.path())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Temp files of atomic writes (`.NAME.XXXXXX.tmp`) anywhere under the site.
pub fn temp_files(site: &Site) -> Vec<String> {
    walkdir::WalkDir::new(site.path())
        .into_iter()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy();
            name.starts_with('.') && name.ends_with(".tmp")
        })
        .map(|e| e.path().display().to_string())
        .collect()
}

/// Everything a user would compare between two clients made in two sites: each path under
/// the roots (site dir and client id replaced by placeholders) with its mode and contents.
/// Values that differ by design are reduced to what must hold of them: secrets to their
/// names, subnets to "allocated in the pool" (checked against the networks), the creation
/// time to its shape, the audit log to "whole JSON lines", the repository to "opens with
/// the password on disk, one key".
pub fn client_state(site: &Site, id: &str, docker: &Docker, pool: &str) -> BTreeMap<String, String> {
    let site_text = site.path().display().to_string();
    let normalize = |text: &str| text.replace(&site_text, "<site>").replace(id, "<id>");
    let pool: Ipv4Net = pool.parse().unwrap();
    let mut state = BTreeMap::new();
    let repository = site.backup_root().join(format!("client-{id}"));
    for root in [site.root(), site.log_root(), site.logrotate_dir(), site.backup_root()] {
        let walk = walkdir::WalkDir::new(&root)
            .into_iter()
            .filter_entry(|e| e.path() == repository || !e.path().starts_with(&repository));
        for entry in walk.flatten() {
            let path = entry.path();
            let key = normalize(&path.display().to_string());
            let mut value = format!("mode {:04o}", mode(path));
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if entry.file_type().is_file() {
                let text = fs::read_to_string(path).unwrap();
                match name.as_str() {
                    "secrets.env" => {
                        let keys: Vec<String> = agency::envfile::parse(&text).unwrap().into_keys().collect();
                        value += &format!("; keys {}", keys.join(" "));
                    }
                    "audit.log" => {
                        for line in text.lines() {
                            let record: serde_json::Value = serde_json::from_str(line)
                                .unwrap_or_else(|e| panic!("{}: a broken audit line ({e}): {line:?}", path.display()));
                            assert!(record["task"].is_string(), "{line}");
                        }
                    }
                    "client.env" => {
                        for (key, v) in agency::envfile::parse(&text).unwrap() {
                            let shown = if key.ends_with("_SUBNET") {
                                let subnet: Ipv4Net = v.parse().unwrap();
                                assert!(pool.contains(subnet.network()), "{key} {subnet} is outside the pool {pool}");
                                "<subnet>".to_string()
                            } else if key == "CLIENT_CREATED" {
                                assert!(v.ends_with('Z') && v.len() >= 20, "CLIENT_CREATED {v:?}");
                                "<time>".to_string()
                            } else {
                                normalize(&v)
                            };
                            value += &format!("\n{key}={shown}");
                        }
                    }
                    _ => value += &format!("\n{}", normalize(&text)),
                }
            }
            state.insert(key, value);
        }
    }

    // The repository: initialized, opened by the password on disk, one key.
    let password = secrets(site, id).and_then(|s| s.get("RESTIC_PASSWORD").cloned()).unwrap_or_default();
    let keys = restic(site, id, &password, &["key", "list", "--json"]);
    assert!(
        keys.status.success(),
        "{id}: the password in secrets.env does not open the repository: {}",
        String::from_utf8_lossy(&keys.stderr)
    );
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&keys.stdout).unwrap();
    state.insert("<repository>".into(), format!("opens with RESTIC_PASSWORD; {} key(s)", keys.len()));

    // The four networks, labelled, subnets as recorded.
    let env = agency::envfile::parse(&fs::read_to_string(site.client_dir(id).join("client.env")).unwrap()).unwrap();
    let names = client_networks(id);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let networks = docker.inspect_networks(&names).unwrap();
    assert_eq!(networks.len(), 4, "{id}: {networks:?}");
    for (network, key) in networks_in_order(&networks, &names).into_iter().zip([
        "FRONTEND_SUBNET",
        "BACKEND_SUBNET",
        "DATABASE_SUBNET",
        "CLIENT_SUBNET",
    ]) {
        assert_eq!(
            network.subnets.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            [env[key].clone()],
            "{}",
            network.name
        );
        let labels: Vec<String> = network.labels.iter().map(|(k, v)| format!("{k}={}", normalize(v))).collect();
        state.insert(
            format!("<network {}>", normalize(&network.name)),
            format!("{}, internal {}, labels {}", network.driver, network.internal, labels.join(" ")),
        );
    }
    state
}

fn networks_in_order<'a>(
    networks: &'a [agency::drivers::docker::NetworkDetails],
    names: &[&str],
) -> Vec<&'a agency::drivers::docker::NetworkDetails> {
    names.iter().map(|n| networks.iter().find(|d| d.name == *n).unwrap_or_else(|| panic!("no network {n}"))).collect()
}

/// Runs `job(n)` for every n in `points`, `PARALLEL` at a time; panics of any are re-raised.
pub fn in_parallel(points: std::ops::RangeInclusive<usize>, job: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(*points.start());
    let end = *points.end();
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL {
            scope.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n > end {
                        break;
                    }
                    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(n))) {
                        let message = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        failures.lock().unwrap().push(format!("fault point {n}: {message}"));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{} fault point(s) failed:\n{}", failures.len(), failures.join("\n\n"));
}

/// The uninterrupted run every faulted one is compared with: its final state and its steps.
struct Reference {
    state: BTreeMap<String, String>,
    steps: Vec<String>,
}

fn reference(docker: &Docker, scratch: &Scratch, pool: &str) -> Reference {
    let site = Site::with_docker();
    let id = scratch.client(&unique("ref"));
    let output = run_create(&site, &id, pool, &[]);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let steps = changed_steps(&output).iter().map(|s| step_name(s, &site, &id)).collect();
    let rerun = run_create(&site, &id, pool, &[]);
    assert_eq!(rerun.status, 0, "{}", rerun.stderr);
    assert!(changed_steps(&rerun).is_empty(), "a re-run changed {:?}", changed_steps(&rerun));
    Reference { state: client_state(&site, &id, docker, pool), steps }
}

/// Names of the steps (without the site path and id), for messages.
fn step_name(step: &str, site: &Site, id: &str) -> String {
    step.replace(&site.path().display().to_string(), "<site>").replace(id, "<id>")
}

#[cfg(feature = "fault-injection")]
#[test]
fn a_crash_after_any_step_of_create_client_is_completed_by_a_rerun() {
    let docker = crate::require_docker!();
    let scratch = Scratch::new(&docker);
    let pool = scratch_pool(20);
    let reference = reference(&docker, &scratch, &pool);
    let total = reference.steps.len();
    assert!(total >= 20, "create-client makes at least 20 changes: {:#?}", reference.steps);
    let crashed_after = Mutex::new(BTreeMap::new());

    in_parallel(1..=total, |n| {
        // Each point removes its networks when done, while the others still work.
        let scratch = Scratch::new(&docker);
        let site = Site::with_docker();
        let id = scratch.client(&unique("cr"));
        let crashed = run_create(&site, &id, &pool, &[("AGENCY_FAULT_CRASH_AFTER", &n.to_string())]);
        assert_ne!(crashed.status, 0, "the run did not crash after step {n}");
        assert!(
            crashed.stderr.contains(&format!("injected crash after mutation {n}")),
            "{}\n{}",
            crashed.stdout,
            crashed.stderr
        );
        assert!(temp_files(&site).is_empty(), "temp files after a crash: {:?}", temp_files(&site));
        let written = secrets(&site, &id);
        if let Some(values) = &written {
            assert_eq!(mode(&site.secrets_file(&id)), 0o600);
            assert_eq!(values.len(), 4, "secrets.env is whole: {:?}", values.keys());
        }

        let rerun = run_create(&site, &id, &pool, &[]);
        assert_eq!(rerun.status, 0, "the re-run after a crash at step {n} failed:\n{}\n{}", rerun.stdout, rerun.stderr);
        let redone: Vec<String> = changed_steps(&rerun).iter().map(|s| step_name(s, &site, &id)).collect();
        assert_eq!(redone, reference.steps[n..], "after a crash at step {n} the re-run makes exactly the steps left");
        if let Some(values) = written {
            assert_eq!(secrets(&site, &id).unwrap(), values, "secrets written before the crash at step {n} changed");
        }
        assert!(temp_files(&site).is_empty(), "temp files: {:?}", temp_files(&site));
        assert_eq!(client_state(&site, &id, &docker, &pool), reference.state, "final state after a crash at step {n}");
        crashed_after.lock().unwrap().insert(n, reference.steps[n - 1].clone());
    });

    let crashed_after = crashed_after.into_inner().unwrap();
    assert_eq!(crashed_after.len(), total);
    eprintln!("create-client: {total} crash points, each completed by a re-run:");
    for (n, step) in &crashed_after {
        eprintln!("  {n:2} after {step}");
    }
}

#[cfg(feature = "fault-injection")]
#[test]
fn a_failure_of_any_step_of_create_client_is_named_and_a_rerun_completes() {
    let docker = crate::require_docker!();
    let scratch = Scratch::new(&docker);
    let pool = scratch_pool(20);
    let reference = reference(&docker, &scratch, &pool);
    let total = reference.steps.len();

    in_parallel(1..=total, |n| {
        let scratch = Scratch::new(&docker);
        let site = Site::with_docker();
        let id = scratch.client(&unique("fl"));
        let mut test = site.test().env("AGENCY_FAULT_FAIL_AT", &n.to_string());
        for arg in create_args(&id, &pool) {
            test = test.arg(&arg);
        }
        let failed = test.run_unchecked();
        assert_eq!(failed.status, 1, "step {n} failing: exit {}\n{}\n{}", failed.status, failed.stdout, failed.stderr);
        // "error: create-client failed: write <path> failed: injected fault at mutation 12"
        let step = &reference.steps[n - 1];
        let (action, target) = step
            .strip_prefix("created ")
            .and_then(|rest| rest.split_once(" \""))
            .map(|(action, target)| (action, target.trim_end_matches('"')))
            .unwrap_or_else(|| panic!("unexpected step {step}"));
        let named = format!(
            "failed: {action} {} failed: injected fault at mutation {n}",
            target.replace("<site>", &site.path().display().to_string()).replace("<id>", &id)
        );
        let error_line = failed.stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
        assert!(
            error_line.contains(&named),
            "step {n}: the error does not name the step ({named}):\n{}",
            failed.stderr
        );
        assert!(failed.stdout.contains(&format!("  failed       {action} ")), "step {n}:\n{}", failed.stdout);
        assert!(temp_files(&site).is_empty(), "temp files: {:?}", temp_files(&site));
        let written = secrets(&site, &id);
        // The failed run is on record as soon as the client's log dir exists (step 1): its
        // audit line creates audit.log if that step had not come yet.
        let audit_log = site.log_root().join(format!("clients/{id}/audit.log"));
        assert_eq!(audit_log.exists(), n > 1, "step {n}: the failed run's audit line");

        let rerun = run_create(&site, &id, &pool, &[]);
        assert_eq!(rerun.status, 0, "the re-run after step {n} failed:\n{}\n{}", rerun.stdout, rerun.stderr);
        let redone: Vec<String> = changed_steps(&rerun).iter().map(|s| step_name(s, &site, &id)).collect();
        let left: Vec<String> =
            reference.steps[n - 1..].iter().filter(|step| n == 1 || !step.ends_with("/audit.log\"")).cloned().collect();
        assert_eq!(redone, left, "after step {n} failed the re-run makes it and the steps after it");
        if let Some(values) = written {
            assert_eq!(secrets(&site, &id).unwrap(), values, "secrets written before step {n} failed changed");
        }
        if n > 1 {
            let audit = fs::read_to_string(&audit_log).unwrap();
            let failed_line = audit
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .find(|r| r["outcome"] == "failed")
                .unwrap_or_else(|| panic!("step {n}: no failed run in the audit log:\n{audit}"));
            assert!(failed_line["error"].as_str().unwrap().contains(&format!("injected fault at mutation {n}")));
        }
        assert_eq!(client_state(&site, &id, &docker, &pool), reference.state, "final state after step {n} failed");
    });
    eprintln!("create-client: {total} failing steps, each named and completed by a re-run");
}
