//! The generated Makefile driven by real GNU make: variables and `make -n` reach agency.

use std::process::Command;

use crate::test::Site;

fn make(site: &Site, args: &[&str]) -> std::process::Output {
    let makefile = site.path().join("Makefile");
    let generated = Command::new(env!("CARGO_BIN_EXE_agency")).arg("--makefile").envs(site.env()).output().unwrap();
    std::fs::write(&makefile, generated.stdout).unwrap();
    Command::new("make")
        .arg("-f")
        .arg(&makefile)
        .args(args)
        .arg(format!("AGENCY={}", env!("CARGO_BIN_EXE_agency")))
        .env_clear()
        .envs(site.env())
        .current_dir(site.path())
        .output()
        .expect("GNU make is installed")
}

#[test]
fn make_create_client_runs_the_task() {
    let site = Site::new();
    let output = make(
        &site,
        &["create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME Corporation", "CLIENT_DOMAIN=acme.example.com"],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let env = site.client_dir("acme").join("client.env");
    assert_eq!(crate::create_client::bash_value(&env, "CLIENT_NAME"), "ACME Corporation");
}

#[test]
fn make_dash_n_is_a_dry_run() {
    let site = Site::new();
    let before = site.snapshot();
    let output =
        make(&site, &["-n", "create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("would create"));
    let after: Vec<_> = site.snapshot().into_iter().filter(|(p, _, _)| !p.ends_with("/Makefile")).collect();
    assert_eq!(after, before);
}

#[test]
fn make_misspelt_variable_gets_did_you_mean() {
    let site = Site::new();
    let output = make(&site, &["create-client", "CLIENT_ID=acme", "CLIENT_NAME=A", "CLIENT_DOMIAN=a.example.com"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("did you mean CLIENT_DOMAIN?"));
}

#[test]
fn make_yes_1_confirms_a_destructive_task_without_a_terminal() {
    let site = Site::new();
    let create = ["create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"];
    assert!(make(&site, &create).status.success());
    let refused = make(&site, &["delete-client", "CLIENT_ID=acme"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("through make: YES=1"));
    assert!(site.client_dir("acme").exists());
    let confirmed = make(&site, &["delete-client", "CLIENT_ID=acme", "YES=1"]);
    assert!(confirmed.status.success(), "{}", String::from_utf8_lossy(&confirmed.stderr));
    assert!(!site.client_dir("acme").exists());
    // YES= is for tasks that confirm; elsewhere it is an unknown variable, and it must be a bool.
    let elsewhere = make(&site, &["list-clients", "YES=1"]);
    assert!(String::from_utf8_lossy(&elsewhere.stderr).contains("unknown variable YES for list-clients"));
    let bad = make(&site, &["delete-client", "CLIENT_ID=acme", "YES=sure"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid YES: \"sure\" is not a boolean"));
}

#[test]
fn plain_make_lists_the_tasks() {
    let site = Site::new();
    let output = make(&site, &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("create-client") && stdout.contains("list-clients"), "{stdout}");
    assert!(!site.root().join("clients").exists() && !site.log_root().exists(), "no task ran");
    assert!(String::from_utf8_lossy(&make(&site, &["help"]).stdout).contains("delete-client"));
}
