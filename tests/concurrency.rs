//! Ten create-client runs for one client at once (issue 9), on the real engine, real restic
//! and the Keycloak fake: the client lock lets one make every change and the others find
//! it done, so there is one consistent client — the same secrets wherever they are applied,
//! four networks, every step made exactly once — and an audit log of whole lines.

use std::{collections::BTreeMap, process::Stdio};

use crate::{
    support::{
        docker::{Scratch, scratch_pool, unique},
        fake_keycloak::FakeKeycloak,
        state::{changed_steps, client_state, create_args, run_create, secrets, temp_files},
    },
    test::Site,
};

const RUNS: usize = 10;
const ADMIN_PASSWORD: &str = "Kc-admin-pw-concurrency";

#[test]
fn ten_concurrent_create_client_runs_make_one_consistent_client() {
    let docker = crate::require_docker!();
    let scratch = Scratch::new(&docker);
    let keycloak = FakeKeycloak::builder().admin("admin", ADMIN_PASSWORD).start();
    let site = Site::with_docker();
    let id = scratch.client(&unique("cc"));
    let pool = scratch_pool(24);

    let children: Vec<std::process::Child> = (0..RUNS)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_agency"))
                .arg("--json")
                .args(create_args(&id, &pool))
                .env_clear()
                .envs(site.env())
                .env("KEYCLOAK_URL", keycloak.url())
                .env("KEYCLOAK_ADMIN", "admin")
                .env("KEYCLOAK_ADMIN_PASSWORD", ADMIN_PASSWORD)
                .current_dir(site.path())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<std::process::Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();

    // Every run succeeds, and every change was made by exactly one of them.
    let mut made: BTreeMap<String, usize> = BTreeMap::new();
    let mut waited = 0;
    for output in &outputs {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "a run failed:\n{}\n{stderr}", String::from_utf8_lossy(&output.stdout));
        waited += usize::from(stderr.contains("waiting for another agency run working on client"));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        for task in report["tasks"].as_array().unwrap() {
            for change in task["changes"].as_array().unwrap() {
                if change["outcome"] != "unchanged" {
                    let step = format!("{} {} {}", change["outcome"], change["action"], change["target"]);
                    *made.entry(step).or_default() += 1;
                }
            }
        }
    }
    let twice: Vec<_> = made.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "changes made by more than one run: {twice:#?}");
    assert!(made.len() >= 22, "{made:#?}");
    assert!(made.keys().all(|step| step.starts_with("\"created\"")), "{made:#?}");

    // One set of secrets, the one everything was set up with.
    let values = secrets(&site, &id).unwrap();
    assert_eq!(values.len(), 4);
    let restic = std::process::Command::new("restic")
        .args(["key", "list", "--json", "--no-cache"])
        .env("RESTIC_REPOSITORY", site.backup_root().join(format!("client-{id}")))
        .env("RESTIC_PASSWORD", &values["RESTIC_PASSWORD"])
        .env("HOME", site.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(restic.status.success(), "RESTIC_PASSWORD does not open the repository");
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&restic.stdout).unwrap();
    assert_eq!(keys.len(), 1, "one repository key: {keys:?}");
    assert_eq!(
        keycloak.user_password(&id, "realm-admin").as_deref(),
        Some(values["REALM_ADMIN_PASSWORD"].as_str()),
        "the live realm admin has the password of secrets.env"
    );

    // Four networks of this client on the engine, labelled.
    let listed = scratch.docker(&[
        "network",
        "ls",
        "--filter",
        &format!("label=agency.client={id}"),
        "--format",
        "{{.Name}} {{.Label \"agency.tier\"}} {{.Internal}}",
    ]);
    let mut networks: Vec<&str> = listed.lines().collect();
    networks.sort_unstable();
    assert_eq!(
        networks,
        [
            format!("{id}_backend backend true"),
            format!("{id}_database database true"),
            format!("{id}_frontend frontend false"),
            format!("{id}_network network false"),
        ]
    );

    // Two audit lines a run (setup-log-segmentation, create-client), each whole.
    let audit = std::fs::read_to_string(site.log_root().join(format!("clients/{id}/audit.log"))).unwrap();
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("a broken audit line ({e}): {line:?}")))
        .collect();
    assert_eq!(records.len(), 2 * RUNS, "{audit}");
    assert!(records.iter().all(|r| r["outcome"] == "ok"), "{audit}");
    assert!(audit.ends_with('\n'));

    // And a further run finds nothing to do; the client holds together (files parse, the
    // repository opens, the networks carry the recorded subnets), no temp file is left.
    let again = run_create(
        &site,
        &id,
        &pool,
        &[("KEYCLOAK_URL", &keycloak.url()), ("KEYCLOAK_ADMIN", "admin"), ("KEYCLOAK_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    );
    assert_eq!(again.status, 0, "{}", again.stderr);
    assert!(changed_steps(&again).is_empty(), "{:?}", changed_steps(&again));
    assert_eq!(secrets(&site, &id).unwrap(), values);
    client_state(&site, &id, &docker, &pool);
    assert!(temp_files(&site).is_empty(), "{:?}", temp_files(&site));
    eprintln!("{RUNS} concurrent runs: {waited} said they waited for the lock; {} steps made once each", made.len());
}
