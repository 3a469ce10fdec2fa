//! create-client under faults (issue 9), on the real engine and real restic: killed after each
//! of its steps in turn (`AGENCY_FAULT_CRASH_AFTER=N`), inside each file write
//! (`AGENCY_FAULT_CRASH_DURING=N`) or with step N failing (`AGENCY_FAULT_FAIL_AT=N`), a plain
//! re-run completes it and the client ends up exactly as an uninterrupted run leaves it: files
//! with contents and modes, networks with labels, the repository initialized and opened by the
//! password on disk, secrets never regenerated once written, no temp file left.
//!
//! Each fault point runs in a site and with a client id of its own, a few at a time.

use std::{
    collections::BTreeMap,
    fs,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use agency::drivers::docker::Docker;

use crate::{
    support::{
        docker::{Scratch, scratch_pool, unique},
        state::{changed_steps, client_state, create_args, mode, run_create, secrets, temp_files},
    },
    test::Site,
};

/// Fault-point runs at a time: the machine has 2 cores and restic init spends ≈ 2.5 s of one.
const PARALLEL: usize = 4;

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
    step.replace(&site.path().display().to_string(), "<site>")
        .replace(site.firewall_table(), "<table>")
        .replace(id, "<id>")
}

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
            target
                .replace("<site>", &site.path().display().to_string())
                .replace("<table>", site.firewall_table())
                .replace("<id>", &id)
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

/// Killed inside each file write of create-client, between its complete temp file and the
/// rename (`AGENCY_FAULT_CRASH_DURING=N`): the file is either absent or whole, the re-run
/// completes the client and removes the temp file, and the state is the uninterrupted one.
#[test]
fn a_crash_inside_any_file_write_of_create_client_leaves_no_temp_file_after_the_rerun() {
    let docker = crate::require_docker!();
    let scratch = Scratch::new(&docker);
    let pool = scratch_pool(21);
    let reference = reference(&docker, &scratch, &pool);
    let writes: Vec<usize> =
        (1..=reference.steps.len()).filter(|n| reference.steps[n - 1].starts_with("created write ")).collect();
    assert!(writes.len() >= 7, "{:#?}", reference.steps);
    let points = Mutex::new(writes.clone().into_iter());

    in_parallel(1..=writes.len(), |_| {
        let n = points.lock().unwrap().next().unwrap();
        let scratch = Scratch::new(&docker);
        let site = Site::with_docker();
        let id = scratch.client(&unique("cd"));
        let crashed = run_create(&site, &id, &pool, &[("AGENCY_FAULT_CRASH_DURING", &n.to_string())]);
        assert!(
            crashed
                .stderr
                .contains(&format!("injected crash during mutation {n} (temp file written, not renamed yet)")),
            "step {n}: {}\n{}",
            crashed.stdout,
            crashed.stderr
        );
        let temps = temp_files(&site);
        assert_eq!(temps.len(), 1, "step {n}: the crash left its temp file: {temps:?}");
        let written = secrets(&site, &id);

        let rerun = run_create(&site, &id, &pool, &[]);
        assert_eq!(
            rerun.status, 0,
            "the re-run after a crash inside step {n} failed:\n{}\n{}",
            rerun.stdout, rerun.stderr
        );
        let redone: Vec<String> = changed_steps(&rerun).iter().map(|s| step_name(s, &site, &id)).collect();
        assert_eq!(redone, reference.steps[n - 1..], "after a crash inside step {n} the re-run redoes it and the rest");
        assert!(temp_files(&site).is_empty(), "step {n}: temp files left: {:?}", temp_files(&site));
        if let Some(values) = written {
            assert_eq!(secrets(&site, &id).unwrap(), values, "secrets written before step {n} changed");
        }
        assert_eq!(
            client_state(&site, &id, &docker, &pool),
            reference.state,
            "final state after a crash inside step {n}"
        );
    });
    eprintln!("create-client: {} crash points inside file writes, each completed by a re-run", writes.len());
}
