//! multi-tenancy-status against the real engine (SPEC §7): isolation proven with real
//! containers, each kind of drift failing the right check, FIX=1, PROBE=1.

use std::{fs, os::unix::fs::PermissionsExt};

use crate::{
    require_docker,
    support::{
        docker::{Scratch, TEST_IMAGE, busybox_image, check, checks_with, report, unique},
        netns::TestNamespace,
    },
    test::{Output, Site, Test},
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
    let test = site.test().args(["--json", "multi-tenancy-status"]).args(args);
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
    // Nothing beyond the host is tried unless the operator names it.
    for network in probe["evidence"].as_array().unwrap() {
        assert_eq!(network["beyond"], serde_json::json!([]), "{network:#}");
    }
    assert!(probe["summary"].as_str().unwrap().contains("beyond the host: not probed (set PROBE_BEYOND)"), "{probe:#}");
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
    // The database network recreated without --internal (and a container on it): its bridge is
    // no longer the one the firewall table keys on.
    let database = scratch.recreate_database_network_not_internal(&a);
    let found = failing(&["networks", "firewall"]);
    assert!(check(&found, "firewall")["summary"].as_str().unwrap().contains("the network was recreated"));
    assert!(check(&found, "networks")["summary"].as_str().unwrap().contains(&format!("{database} is not internal")));
    // A container on both tenants' backends.
    let both = scratch.server(&unique("both"), &format!("{a}_backend"), &[]);
    scratch.docker(&["network", "connect", &format!("{b}_backend"), &both]);
    let found = failing(&["networks", "firewall", "cross_tenant"]);
    let cross = check(&found, "cross_tenant");
    assert!(cross["summary"].as_str().unwrap().contains(&format!("{both} is attached to networks of {a} and {b}")));
    assert_eq!(cross["evidence"]["violations"][0]["container"], both.as_str());
    let (_, json) = status(&site, &[]);
    assert_eq!(check(report(&json, &b), "cross_tenant")["status"], "fail");
    // secrets.env readable by others.
    fs::set_permissions(site.secrets_file(&a), fs::Permissions::from_mode(0o644)).unwrap();
    failing(&["networks", "firewall", "cross_tenant", "secrets"]);
    // A log file missing.
    fs::remove_file(site.log_root().join(format!("clients/{a}/error.log"))).unwrap();
    let found = failing(&["networks", "firewall", "cross_tenant", "logs", "secrets"]);
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
    // The table now covers the hand-made network under Docker's name for its bridge.
    assert_eq!(checks_with(report(&json, &a), "fail"), ["networks", "cross_tenant"]);
    assert_eq!(check(report(&json, &a), "firewall")["status"], "warn", "{json:#}");
    assert!(check(report(&json, &a), "cross_tenant")["fix"].as_str().unwrap().contains("cannot"));

    // Once nothing is attached, FIX=1 recreates it internal; after detaching the bridge
    // container status is clean again.
    scratch.docker(&["rm", "-f", &guest]);
    let (_, json) = status(&site, &[&a_arg, "FIX=1"]);
    let repairs = report(&json, &a)["repairs"].to_string();
    assert!(repairs.contains(&format!("recreate {database}")), "{repairs}");
    let recreated = &docker.inspect_networks(&[&database]).unwrap()[0];
    assert!(recreated.internal);
    assert_eq!(
        recreated.bridge.as_deref(),
        Some(agency::tenant::firewall::bridge_name(recreated.subnets[0]).as_str()),
        "FIX=1 names the bridge"
    );
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

/// The IPv4 address of `container` on `network`, and whether `from` pings it.
fn pings(scratch: &Scratch, from: &str, to: &str, network: &str) -> bool {
    let address = scratch.address(to, network).to_string();
    succeeds(scratch, from, &["ping", "-c", "1", "-W", "2", &address])
}

#[test]
fn tenants_sharing_a_plain_network_or_the_default_bridge_are_not_isolated() {
    let docker = require_docker!();
    busybox_image(&docker);
    let scratch = Scratch::new(&docker);
    let site = Site::with_docker();
    let a = scratch.client(&unique("shr"));
    let b = scratch.client(&unique("shr"));
    create(&site, &a);
    create(&site, &b);
    let plain = scratch.network(&unique("plain"));
    scratch.docker(&["network", "create", "--label", "agency.test=true", &plain]);
    let a_app = scratch.server(&unique("a-app"), &format!("{a}_backend"), &[("agency.client", &a)]);
    let b_app = scratch.server(&unique("b-app"), &plain, &[("agency.client", &b)]);
    scratch.docker(&["network", "connect", &plain, &a_app]);
    // They really talk.
    assert!(pings(&scratch, &a_app, &b_app, &plain), "the plain network does not join them");

    let (output, json) = status(&site, &[]);
    assert_eq!(output.status, 1, "tenants on a shared network were reported isolated: {}", output.stdout);
    for (client, container, other) in [(&a, &a_app, &b), (&b, &b_app, &a)] {
        let cross = check(report(&json, client), "cross_tenant");
        assert_eq!(cross["status"], "fail", "{cross:#}");
        let summary = cross["summary"].as_str().unwrap();
        assert!(
            summary.contains(&format!("{container} shares network {plain} with containers of {other}")),
            "{summary}"
        );
        assert!(cross["fix"].as_str().unwrap().contains(&format!("docker network disconnect {plain} {container}")));
    }

    // The same through Docker's default bridge.
    scratch.docker(&["network", "disconnect", &plain, &a_app]);
    let (output, _) = status(&site, &[]);
    assert_eq!(output.status, 0, "{}", output.stdout);
    scratch.docker(&["network", "connect", "bridge", &a_app]);
    scratch.docker(&["network", "connect", "bridge", &b_app]);
    assert!(pings(&scratch, &a_app, &b_app, "bridge"), "the default bridge does not join them");
    let (output, json) = status(&site, &[]);
    assert_eq!(output.status, 1, "{}", output.stdout);
    let cross = check(report(&json, &a), "cross_tenant");
    assert!(cross["summary"].as_str().unwrap().contains("shares network bridge"), "{cross:#}");
}

#[test]
fn labels_cannot_be_spoofed_through_commas_and_a_probe_label_exempts_nothing() {
    let docker = require_docker!();
    busybox_image(&docker);
    let scratch = Scratch::new(&docker);
    let site = Site::with_docker();
    let a = scratch.client(&unique("spf"));
    let b = scratch.client(&unique("spf"));
    create(&site, &a);
    create(&site, &b);
    let (output, _) = status(&site, &[]);
    assert_eq!(output.status, 0, "{}", output.stdout);

    // b's backend replaced by one whose labels only read as b's when split on commas.
    let b_backend = format!("{b}_backend");
    docker.remove_network(&b_backend).unwrap();
    scratch.docker(&[
        "network",
        "create",
        "--internal",
        "--label",
        &format!("note=x,agency.managed=true,agency.client={b},agency.tier=backend"),
        &b_backend,
    ]);
    let (output, json) = status(&site, &[&format!("CLIENT_ID={b}")]);
    assert_eq!(output.status, 1, "{}", output.stdout);
    let networks = check(report(&json, &b), "networks");
    assert!(
        networks["summary"].as_str().unwrap().contains(&format!("{b_backend} exists but is not labelled as {b}'s")),
        "{networks:#}"
    );

    // A container "shared ingress" only through a comma inside another label's value.
    let sneaky = scratch.server(&unique("sneaky"), &format!("{a}_frontend"), &[("x", "1,agency.shared-ingress=true")]);
    scratch.docker(&["network", "connect", &format!("{b}_frontend"), &sneaky]);
    let (output, json) = status(&site, &[&format!("CLIENT_ID={a}")]);
    assert_eq!(output.status, 1, "{}", output.stdout);
    let cross = check(report(&json, &a), "cross_tenant");
    assert!(cross["summary"].as_str().unwrap().contains(&format!("{sneaky} is attached to networks of {a} and {b}")));
    scratch.docker(&["rm", "-f", &sneaky]);

    // Anyone can put agency.probe=true on a container: it is judged like any other.
    let fake_probe = scratch.server(&unique("agency-probe-"), &format!("{a}_backend"), &[("agency.probe", "true")]);
    scratch.docker(&["network", "connect", &format!("{b}_database"), &fake_probe]);
    let (output, json) = status(&site, &[&format!("CLIENT_ID={a}")]);
    assert_eq!(output.status, 1, "{}", output.stdout);
    let cross = check(report(&json, &a), "cross_tenant");
    assert!(cross["summary"].as_str().unwrap().contains(&fake_probe), "{cross:#}");
}

#[test]
fn fix_never_recreates_a_network_with_a_stopped_or_probe_labelled_container() {
    let docker = require_docker!();
    busybox_image(&docker);
    let scratch = Scratch::new(&docker);
    let site = Site::with_docker();
    let a = scratch.client(&unique("stp"));
    create(&site, &a);
    let database = scratch.recreate_database_network_not_internal(&a);
    // A stopped container labelled as a probe: Docker itself would remove the network under it.
    let stopped = scratch.server(&unique("db"), &database, &[("agency.probe", "true"), ("agency.client", &a)]);
    scratch.docker(&["stop", "-t", "0", &stopped]);
    let id = docker.inspect_networks(&[&database]).unwrap()[0].id.clone();
    let (output, json) = status(&site, &[&format!("CLIENT_ID={a}"), "FIX=1"]);
    assert_eq!(output.status, 1, "{}", output.stdout);
    let repairs = report(&json, &a)["repairs"].to_string();
    assert!(repairs.contains("not repaired") && repairs.contains(&stopped), "{repairs}");
    assert!(!repairs.contains(&format!("recreate {database}")), "{repairs}");
    assert_eq!(docker.inspect_networks(&[&database]).unwrap()[0].id, id, "the network was recreated");
    let networks = check(report(&json, &a), "networks");
    assert!(networks["fix"].as_str().unwrap().contains(&stopped), "{networks:#}");
}

#[test]
fn symlinks_in_log_and_secrets_places_fail_their_checks_and_fix_removes_only_the_links() {
    // Files only: the fake engine is enough.
    let site = Site::new();
    create(&site, "lnk");
    let logs = site.log_root().join("clients/lnk");
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("outside.log");
    fs::write(&target, "keep me\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    fs::remove_file(logs.join("error.log")).unwrap();
    std::os::unix::fs::symlink(&target, logs.join("error.log")).unwrap();
    fs::remove_file(logs.join("audit.log")).unwrap();
    std::os::unix::fs::symlink("access.log", logs.join("audit.log")).unwrap();

    // Logs are the client's health: reported as a failure, without breaking the verdict (exit 0).
    let (output, json) = status(&site, &[]);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    assert_eq!(
        (report(&json, "lnk")["verdict"].as_str(), report(&json, "lnk")["health"].as_str()),
        (Some("isolated"), Some("FAIL"))
    );
    let logs_check = check(report(&json, "lnk"), "logs");
    assert_eq!(logs_check["status"], "fail");
    let summary = logs_check["summary"].as_str().unwrap();
    assert!(summary.contains(&format!("error.log is a symlink (to {})", target.display())), "{summary}");
    assert!(summary.contains("audit.log is a symlink (to access.log)"), "{summary}");

    // secrets.env as a symlink to a copy elsewhere.
    let secrets = site.secrets_file("lnk");
    let copy = outside.path().join("secrets.env");
    fs::copy(&secrets, &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o644)).unwrap();
    fs::remove_file(&secrets).unwrap();
    std::os::unix::fs::symlink(&copy, &secrets).unwrap();
    let (output, json) = status(&site, &[]);
    assert_eq!(output.status, 1);
    let secrets_check = check(report(&json, "lnk"), "secrets");
    assert!(secrets_check["summary"].as_str().unwrap().contains("secrets.env is a symlink"), "{secrets_check:#}");

    let (output, json) = status(&site, &["FIX=1"]);
    assert_eq!(output.status, 1, "{}", output.stderr);
    let repairs = report(&json, "lnk")["repairs"].to_string();
    assert!(repairs.contains("remove the symlink error.log"), "{repairs}");
    assert!(repairs.contains("not repaired: secrets.env is a symlink"), "{repairs}");
    // The links are gone, their targets untouched.
    assert!(!fs::symlink_metadata(logs.join("error.log")).unwrap().file_type().is_symlink());
    assert_eq!(fs::metadata(logs.join("error.log")).unwrap().permissions().mode() & 0o777, 0o640);
    assert_eq!(fs::read_to_string(&target).unwrap(), "keep me\n");
    assert_eq!(fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o644);
    assert_eq!(fs::metadata(&copy).unwrap().permissions().mode() & 0o777, 0o644, "chmod followed the link");
    assert!(fs::symlink_metadata(&secrets).unwrap().file_type().is_symlink());
    assert_eq!(checks_with(report(&json, "lnk"), "fail"), ["secrets"]);

    // With the real file back, status is clean.
    fs::remove_file(&secrets).unwrap();
    fs::copy(&copy, &secrets).unwrap();
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o600)).unwrap();
    let (output, _) = status(&site, &[]);
    assert_eq!(output.status, 0, "{}", output.stdout);
}

#[test]
fn status_takes_the_client_lock_only_with_fix() {
    let site = Site::new();
    create(&site, "lck");
    let locks = site.root().join(".locks");
    // Held as another run on client lck holds them: "all clients" shared, the client exclusive.
    let open = |name: &str| {
        fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(locks.join(name)).unwrap()
    };
    let all = open("all.lock");
    all.lock_shared().unwrap();
    let held = open("client-lck.lock");
    held.lock().unwrap();
    let (output, _) = status(&site, &["CLIENT_ID=lck"]);
    assert_eq!(output.status, 0, "a read-only status waited for or failed on the lock: {}", output.stderr);
    let output = site.test().args(["--no-wait", "multi-tenancy-status", "CLIENT_ID=lck", "FIX=1"]).run_unchecked();
    assert_ne!(output.status, 0);
    assert!(output.stderr.contains("another agency run is working on client lck"), "{}", output.stderr);
    // Every client: the all-clients lock, which a client's lock holds shared.
    let output = site.test().args(["--no-wait", "multi-tenancy-status", "FIX=1"]).run_unchecked();
    assert!(output.stderr.contains("another agency run is working on all clients"), "{}", output.stderr);
    // Unlocked, not only closed: a child that another test is forking at this moment shares the
    // open files until its exec, and closing ours would leave the lock held through it.
    held.unlock().unwrap();
    all.unlock().unwrap();
    let output = site.test().args(["--no-wait", "multi-tenancy-status", "FIX=1"]).run_unchecked();
    assert_eq!(output.status, 0, "{}", output.stderr);
}

#[test]
fn probe_reaches_a_namespace_beyond_the_host_from_routed_tiers_only() {
    let docker = require_docker!();
    busybox_image(&docker);
    let scratch = Scratch::new(&docker);
    let site = Site::with_docker();
    let outside = TestNamespace::new();
    let a = scratch.client(&unique("far"));
    create(&site, &a);
    let beyond = format!("PROBE_BEYOND={}", outside.address);
    let (output, json) =
        status(&site, &[&format!("CLIENT_ID={a}"), "PROBE=1", &format!("PROBE_IMAGE={TEST_IMAGE}"), &beyond]);
    assert_eq!(output.status, 0, "{}", output.stderr);
    let probe = check(report(&json, &a), "probe");
    let mut reached = Vec::new();
    for network in probe["evidence"].as_array().unwrap() {
        let targets = network["beyond"].as_array().unwrap();
        assert_eq!(targets.len(), 1, "{network:#}");
        assert_eq!(targets[0]["address"], outside.address.to_string());
        let internal = network["internal"].as_bool().unwrap();
        assert_eq!(targets[0]["reachable"], !internal, "{network:#}");
        if !internal {
            reached.push(network["network"].as_str().unwrap().to_string());
        }
    }
    reached.sort();
    assert_eq!(reached, vec![format!("{a}_frontend"), format!("{a}_network")]);
    assert!(!probe["summary"].as_str().unwrap().contains("not probed"), "{probe:#}");
}

#[test]
fn probe_beyond_refuses_what_is_not_beyond_the_host() {
    let own = agency::drivers::process::Command::new(&which::which("ip").unwrap())
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .unwrap()
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next().map(str::to_string))
        .expect("a global IPv4 address on this host");
    for (value, says) in [
        ("127.0.0.1", "127.0.0.1 is a loopback address: inside a probe it is the probe itself"),
        ("nonsense", "\"nonsense\" is neither an IPv4 address nor `gateway`"),
        ("169.254.10.1", "is link-local"),
        ("gateway,224.0.0.1", "224.0.0.1 is not a unicast address"),
        ("10.201.7.9", "10.201.7.9 is inside the subnet pool 10.201.0.0/16"),
        (own.as_str(), "is one of this host's own addresses"),
    ] {
        Test::new()
            .args(["multi-tenancy-status", "PROBE=1", &format!("PROBE_BEYOND={value}")])
            .status(2)
            .stderr_contains("invalid PROBE_BEYOND: ")
            .stderr_contains(says)
            .run();
    }
}
