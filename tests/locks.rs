//! Locks (issue 9, SPEC §7): every task that changes something takes the client's lock (or
//! all clients'), a second run waits with a message or fails fast with `--no-wait`, and a
//! read-only run never waits. The holder in these tests is `agency::task::lock::acquire` itself,
//! the code every mutating run goes through, held by the test for as long as it likes.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
};

use agency::{
    effects::output::{Output, Verbosity},
    task::lock::{self, LockGuard},
};

use crate::{create_client::create, test::Site};

/// Holds what a create-client run for `client` holds (`None`: what a task over all clients holds).
fn hold(site: &Site, client: Option<&str>) -> LockGuard {
    let output = Output::new(true, Verbosity::Quiet);
    lock::acquire(&site.root().join(".locks"), client, true, true, &output).unwrap_or_else(|e| panic!("{e}"))
}

fn status<'a>(site: &'a Site, args: &[&str]) -> crate::test::Test<'a> {
    site.test().arg("multi-tenancy-status").args(args)
}

#[test]
fn status_never_waits_but_fix_takes_the_lock_of_what_it_repairs() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    create(&site, "other", "Other");
    let held = hold(&site, Some("acme"));

    // Read-only: runs beside the holder.
    let output = status(&site, &["--no-wait"]).run_unchecked();
    assert!(!output.stderr.contains("another agency run"), "{}", output.stderr);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);

    // FIX=1 for acme, or for every client, must not run while acme is being changed.
    status(&site, &["--no-wait", "FIX=1", "CLIENT_ID=acme"])
        .status(1)
        .stderr_contains("another agency run is working on client acme; not waiting (--no-wait)")
        .run();
    status(&site, &["--no-wait", "FIX=1"])
        .status(1)
        .stderr_contains("another agency run is working on all clients; not waiting (--no-wait)")
        .run();
    // Another client is not blocked.
    status(&site, &["--no-wait", "FIX=1", "CLIENT_ID=other"]).run();
    drop(held);
    status(&site, &["--no-wait", "FIX=1"]).run();

    // And a FIX=1 over all clients blocks every client's create-client.
    let held = hold(&site, None);
    site.test()
        .args(["--no-wait", "create-client", "CLIENT_ID=other", "CLIENT_NAME=Other", "CLIENT_DOMAIN=other.example.com"])
        .status(1)
        .stderr_contains("another agency run is working on all clients")
        .run();
    drop(held);
}

/// Without `--no-wait` a second run says that it waits, and goes on once the first is done:
/// here it repairs the mode the holder left broken, so it cannot have run before the release.
#[test]
fn a_second_run_waits_with_a_message_then_completes() {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::new();
    create(&site, "acme", "ACME");
    let held = hold(&site, Some("acme"));
    let secrets = site.secrets_file("acme");
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_agency"))
        .args(["multi-tenancy-status", "CLIENT_ID=acme", "FIX=1"])
        .env_clear()
        .envs(site.env())
        .current_dir(site.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = lines.send(line);
        }
    });
    let first = received.recv().expect("the waiting run says so on stderr");
    assert_eq!(first, "waiting for another agency run working on client acme ...");
    assert!(child.try_wait().unwrap().is_none(), "the second run did not wait");
    assert_eq!(std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777, 0o644, "it repaired while waiting");

    drop(held);
    let output = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("repair the mode of secrets.env (0600)"), "{stdout}");
    assert_eq!(std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777, 0o600);
}

/// Every built-in task whose dry run plans a change, run with the variables that make it
/// change the most (every bool set), takes a lock for those variables.
#[test]
fn every_task_that_changes_something_takes_a_lock() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    // Things for the repairs and rotations to plan.
    std::fs::remove_file(site.log_root().join("clients/acme/error.log")).unwrap();
    let list = site.test().args(["--list", "--json"]).run().json();
    let mut mutating = Vec::new();
    for task in list["tasks"].as_array().unwrap() {
        let name = task["name"].as_str().unwrap();
        let explain = site.test().args(["--explain", name, "--json"]).run().json();
        let mut test = site.test().args(["-n", "--json", "--yes"]).arg(name);
        let mut values = std::collections::BTreeMap::new();
        for var in explain["vars"].as_array().unwrap() {
            let var_name = var["name"].as_str().unwrap();
            let value = match (var_name, var["kind"].as_str()) {
                ("CLIENT_ID", _) => "acme".to_string(),
                ("CLIENT_NAME", _) => "ACME".to_string(),
                ("CLIENT_DOMAIN", _) => "acme.example.com".to_string(),
                ("TARGET", _) => site.path().join("restore-target").display().to_string(),
                ("UNIT", _) => "agency-backup@acme.service".to_string(),
                (_, Some("bool")) if var_name != "PROBE" => "1".to_string(),
                _ if var["required"] == true => panic!("no test value for the required {var_name} of {name}"),
                _ => continue,
            };
            test = test.arg(&format!("{var_name}={value}"));
            values.insert(var_name.to_string(), value);
        }
        let plan = test.run_unchecked();
        assert_ne!(plan.status, 2, "{name}: {}", plan.stderr);
        let changes = plan.json()["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["changes"].as_array().unwrap().clone())
            .filter(|c| c["outcome"] != "unchanged")
            .count();
        if changes == 0 {
            continue;
        }
        // collect-logs serializes its runs on `logs/collect.lock` itself (src/tenant/logs), so
        // the minutely job never waits for a client's lock.
        if name == "collect-logs" {
            mutating.push(name.to_string());
            continue;
        }
        let lock = explain["lock"].as_str().unwrap();
        let effective = match explain["lock_when"].as_str() {
            Some(var) if values.get(var).map(String::as_str) != Some("1") => "none",
            _ => lock,
        };
        assert_ne!(effective, "none", "{name} plans {changes} change(s) with {values:?} but takes no lock");
        mutating.push(name.to_string());
    }
    for expected in ["create-client", "rotate-secrets", "multi-tenancy-status", "setup-log-segmentation"] {
        assert!(mutating.iter().any(|n| n == expected), "{expected} planned no change: {mutating:?}");
    }
}

#[test]
fn lock_when_names_a_bool_variable_and_explain_shows_it() {
    let site = Site::new();
    site.test()
        .args(["--explain", "multi-tenancy-status"])
        .stdout_contains("lock:     the client's (all clients' when CLIENT_ID is empty) when FIX is true, else none")
        .run();
    site.test().args(["--explain", "create-client"]).stdout_contains("lock:     the client's").run();

    site.site_file(
        "tasks/fixer.toml",
        "description = \"d\"\nlock_when = \"FIX\"\nscript = '1'\n\n[vars.FIX]\nkind = \"text\"\n",
    );
    site.test()
        .arg("--list")
        .status(2)
        .stderr_contains("invalid task file for fixer: lock_when \"FIX\" must name a variable of kind \"bool\"")
        .run();
    site.site_file(
        "tasks/fixer.toml",
        "description = \"d\"\nlock = \"none\"\nlock_when = \"FIX\"\nscript = '1'\n\n[vars.FIX]\nkind = \"bool\"\n",
    );
    site.test().arg("--list").status(2).stderr_contains("lock_when needs lock = \"client\" or \"all\"").run();
}

/// A dry run creates nothing, not even the lock file of a client that has none yet.
#[test]
fn a_dry_run_creates_no_lock_file() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let before = site.snapshot();
    site.test()
        .args(["-n", "create-client", "CLIENT_ID=newco", "CLIENT_NAME=New", "CLIENT_DOMAIN=newco.example.com"])
        .stdout_contains("would create")
        .run();
    site.test().args(["-n", "rotate-secrets", "CLIENT_ID=acme"]).run();
    assert!(!site.root().join(".locks/client-newco.lock").exists());
    assert_eq!(site.snapshot(), before);
}
