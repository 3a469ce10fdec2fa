//! multi-tenancy-status against the real engine (SPEC §7): isolation proven with real
//! containers, each kind of drift failing the right check, FIX=1, PROBE=1.

use std::{fs, os::unix::fs::PermissionsExt};

use crate::{
    require_docker,
    support::docker::{Scratch, TEST_IMAGE, busybox_image, check, checks_with, report, unique},
    test::{Output, Site},
};

fn create(site: &Site, id: &str) {
    site.test()
        .args([
            "create-client",
            &format!("CLIENT_ID={id}"),
            "CLIENT_NAME=Tenant",
            &format!("CLIENT_DOMAIN={id}.example.com"),
        ])
        .run();
}

fn status(site: &Site, args: &[&str]) -> (Output, serde_json::Value) {
    let mut test = site.test().args(["--json", "multi-tenancy-status"]);
    for arg in args {
        test = test.arg(arg);
    }
    let output = test.run_unchecked();
    let json = output.json();
    (output, json)
}

/// Runs `argv` in a container; true when it exits 0.
fn succeeds(scratch: &Scratch, container: &str, argv: &[&str]) -> bool {
    let output = agency::drivers::process::Command::new(&which::which("docker").unwrap())
        .args(["exec", container])
        .args(argv.iter().copied())
        .output()
        .unwrap();
    let _ = scratch;
    output.success()
}

#[test]
fn two_clients_are_isolated_by_real_packets_and_probe_reports_what_a_database_reaches() {
    let docker = require_docker!();
    let image = busybox_image(&docker);
    let scratch = Scratch::new(&docker);
    let site = Site::with_docker();
    let a = scratch.client(&unique("iso"));
    let b = scratch.client(&unique("iso"));
    create(&site, &a);
    create(&site, &b);
    let a_database = format!("{a}_database");
    let a_backend = format!("{a}_backend");
    let b_database = format!("{b}_database");
    let a_db = scratch.server(&unique("a-db"), &a_database, &[("agency.client", &a)]);
    let a_app1 = scratch.server(&unique("a-app"), &a_backend, &[("agency.client", &a)]);
    let a_app2 = scratch.server(&unique("a-app"), &a_backend, &[("agency.client", &a)]);
    let b_db = scratch.server(&unique("b-db"), &b_database, &[("agency.client", &b)]);
    let b_ip = scratch.address(&b_db, &b_database).to_string();
    let app2_ip = scratch.address(&a_app2, &a_backend).to_string();

    // Another tenant's database is out of reach, by ICMP and by TCP.
    assert!(!succeeds(&scratch, &a_db, &["ping", "-c", "1", "-W", "1", &b_ip]), "a's database pinged b's");
    assert!(!succeeds(&scratch, &a_db, &["nc", "-w", "2", &b_ip, "80"]), "a's database connected to b's");
    // Two containers of one client's backend reach each other.
    assert!(succeeds(&scratch, &a_app1, &["ping", "-c", "1", "-W", "2", &app2_ip]));
    assert!(succeeds(&scratch, &a_app1, &["nc", "-w", "2", &app2_ip, "80"]));

    let (output, json) = status(&site, &[]);
    assert_eq!(output.status, 0, "{}", output.stderr);
    assert_eq!(report(&json, &a)["verdict"], "isolated");
    assert_eq!(report(&json, &b)["verdict"], "isolated");
    let cross = check(report(&json, &a), "cross_tenant");
    assert_eq!(cross["evidence"]["containers_on_client_networks"], 3);

    // PROBE=1: what a container on a's database network reaches, checked against what a plain
    // container there really reaches.
    let (output, json) = status(&site, &[&format!("CLIENT_ID={a}"), "PROBE=1", &format!("PROBE_IMAGE={TEST_IMAGE}")]);
    assert_eq!(output.status, 0, "{}", output.stderr);
    let probe = check(report(&json, &a), "probe");
    let database = probe["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["network"] == a_database.as_str())
        .unwrap_or_else(|| panic!("no probe of {a_database}: {probe:#}"));
    assert_eq!(database["internal"], true);
    let tenant = database["other_tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["address"] == b_ip.as_str())
        .unwrap_or_else(|| panic!("b's database was not probed: {database:#}"));
    assert_eq!(tenant["reachable"], false);
    assert!(database["beyond"].as_array().unwrap().iter().all(|t| t["reachable"] == false), "{database:#}");
    let hosts = database["host"].as_array().unwrap();
    assert!(!hosts.is_empty());
    for host in hosts {
        let address = host["address"].as_str().unwrap();
        let measured = scratch.docker_status(&[
            "run",
            "--rm",
            "--network",
            &a_database,
            image,
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            address,
        ]);
        assert_eq!(host["reachable"], measured, "probe and a real container disagree about {address}: {host:#}");
    }
    let reached_host = hosts.iter().any(|h| h["reachable"] == true);
    assert_eq!(probe["status"], if reached_host { "warn" } else { "ok" }, "{probe:#}");
    if reached_host {
        assert!(probe["summary"].as_str().unwrap().contains("reaches the host's own addresses"), "{probe:#}");
    }
    // Probe containers removed themselves.
    assert!(docker.list_containers().unwrap().iter().all(|c| !c.is_probe() || !c.networks.contains(&a_database)));
}

#[test]
fn each_drift_fails_its_check_and_fix_repairs_what_it_can() {
    let docker = require_docker!();
    busybox_image(&docker);
    let scratch = Scratch::new(&docker);
    let site = Site::with_docker();
    let a = scratch.client(&unique("drift"));
    let b = scratch.client(&unique("drift"));
    create(&site, &a);
    create(&site, &b);
    let a_arg = format!("CLIENT_ID={a}");
    let failing = |expected: &[&str]| {
        let (output, json) = status(&site, &[&a_arg]);
        assert_eq!(output.status, 1, "{}", output.stderr);
        let report = report(&json, &a);
        assert_eq!(report["verdict"], "NOT ISOLATED");
        assert_eq!(checks_with(report, "fail"), expected, "{report:#}");
        report.clone()
    };
    let (output, _) = status(&site, &[&a_arg]);
    assert_eq!(output.status, 0, "{}", output.stderr);

    // A network removed.
    docker.remove_network(&format!("{a}_frontend")).unwrap();
    let found = failing(&["networks"]);
    assert!(check(&found, "networks")["summary"].as_str().unwrap().contains(&format!("{a}_frontend is missing")));
    // The database network recreated without --internal (and a container on it).
    let database = format!("{a}_database");
    docker.remove_network(&database).unwrap();
    scratch.docker(&[
        "network",
        "create",
        "--label",
        "agency.managed=true",
        "--label",
        &format!("agency.client={a}"),
        "--label",
        "agency.tier=database",
        &database,
    ]);
    let found = failing(&["networks"]);
    assert!(check(&found, "networks")["summary"].as_str().unwrap().contains(&format!("{database} is not internal")));
    // A container on both tenants' backends.
    let both = scratch.server(&unique("both"), &format!("{a}_backend"), &[]);
    scratch.docker(&["network", "connect", &format!("{b}_backend"), &both]);
    let found = failing(&["networks", "cross_tenant"]);
    let cross = check(&found, "cross_tenant");
    assert!(cross["summary"].as_str().unwrap().contains(&format!("{both} is attached to networks of {a} and {b}")));
    assert_eq!(cross["evidence"]["violations"][0]["container"], both.as_str());
    let (_, json) = status(&site, &[]);
    assert_eq!(check(report(&json, &b), "cross_tenant")["status"], "fail");
    // secrets.env readable by others.
    fs::set_permissions(site.secrets_file(&a), fs::Permissions::from_mode(0o644)).unwrap();
    failing(&["networks", "cross_tenant", "secrets"]);
    // A log file missing.
    fs::remove_file(site.log_root().join(format!("clients/{a}/error.log"))).unwrap();
    let found = failing(&["networks", "cross_tenant", "logs", "secrets"]);
    assert!(check(&found, "logs")["summary"].as_str().unwrap().contains("error.log is missing"));

    // FIX=1 will not recreate a network that has a container attached, and says so.
    let guest = scratch.server(&unique("guest"), &database, &[("agency.client", &a)]);
    let database_id = docker.inspect_networks(&[&database]).unwrap()[0].id.clone();
    let (output, json) = status(&site, &[&a_arg, "FIX=1"]);
    assert_eq!(output.status, 1);
    let repairs: Vec<String> =
        report(&json, &a)["repairs"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
    assert!(
        repairs.iter().any(|r| r.starts_with("not repaired:") && r.contains(&database) && r.contains(&guest)),
        "{repairs:?}"
    );
    assert!(repairs.iter().any(|r| r.starts_with(&format!("create {a}_frontend"))), "{repairs:?}");
    assert!(repairs.iter().any(|r| r.contains("error.log")), "{repairs:?}");
    assert!(repairs.iter().any(|r| r.contains("secrets.env")), "{repairs:?}");
    assert_eq!(docker.inspect_networks(&[&database]).unwrap()[0].id, database_id, "a network in use was touched");
    assert_eq!(checks_with(report(&json, &a), "fail"), ["networks", "cross_tenant"]);
    assert!(check(report(&json, &a), "cross_tenant")["fix"].as_str().unwrap().contains("cannot"));

    // Once nothing is attached, FIX=1 recreates it internal; after detaching the bridge
    // container status is clean again.
    scratch.docker(&["rm", "-f", &guest]);
    let (_, json) = status(&site, &[&a_arg, "FIX=1"]);
    let repairs = report(&json, &a)["repairs"].to_string();
    assert!(repairs.contains(&format!("recreate {database}")), "{repairs}");
    assert!(docker.inspect_networks(&[&database]).unwrap()[0].internal);
    scratch.docker(&["network", "disconnect", &format!("{b}_backend"), &both]);
    let (output, json) = status(&site, &[]);
    assert_eq!(output.status, 0, "{}", output.stderr);
    assert_eq!(report(&json, &a)["verdict"], "isolated");
    assert_eq!(report(&json, &b)["verdict"], "isolated");
    assert_eq!(fs::metadata(site.secrets_file(&a)).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_client_dir_without_client_env_is_reported_invalid() {
    // The fake engine is enough: no network is involved.
    let site = Site::new();
    fs::create_dir_all(site.client_dir("ghost")).unwrap();
    let output = site.test().args(["--json", "multi-tenancy-status"]).status(1).run();
    let json = output.json();
    let ghost = report(&json, "ghost");
    assert_eq!(ghost["valid"], false);
    assert_eq!(ghost["verdict"], "INVALID");
    site.test()
        .args(["multi-tenancy-status"])
        .status(1)
        .stdout_contains("ghost")
        .stdout_contains("INVALID")
        .stdout_contains("client.env is missing: not a valid client")
        .run();
}
