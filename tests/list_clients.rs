//! list-clients (SPEC §7, issue 7): id, name, domain, created and a one-word health read
//! from disk; a table for people, the same rows as the `--json` result; no Docker needed.

use std::{fs, os::unix::fs::PermissionsExt};

use crate::{
    create_client::{bash_value, create},
    test::Site,
};

fn rows(site: &Site) -> Vec<serde_json::Value> {
    let output = site.test().args(["--json", "list-clients"]).run();
    output.json()["tasks"][0]["result"]["clients"].as_array().expect("clients array").clone()
}

fn health(rows: &[serde_json::Value], id: &str) -> (String, Vec<String>) {
    let row = rows.iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("{id} not listed"));
    let problems = row["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    (row["health"].as_str().unwrap().to_string(), problems)
}

#[test]
fn lists_each_client_with_name_domain_created_and_health() {
    let site = Site::new();
    create(&site, "acme", "ACME Corporation");
    create(&site, "beta", "Beta & Söhne");
    let output = site.test().arg("list-clients").run();
    let lines: Vec<&str> =
        output.stdout.lines().filter(|l| l.starts_with("ID") || l.contains(".example.com")).collect();
    assert_eq!(lines.len(), 3, "{}", output.stdout);
    let header = lines[0];
    for column in ["ID", "NAME", "DOMAIN", "CREATED", "HEALTH", "STACK"] {
        assert!(header.contains(column), "{header}");
    }
    let created = bash_value(&site.client_dir("acme").join("client.env"), "CLIENT_CREATED");
    let acme: Vec<&str> = lines[1].split("  ").filter(|c| !c.is_empty()).map(str::trim).collect();
    assert_eq!(acme, ["acme", "ACME Corporation", "acme.example.com", created.as_str(), "ok", "not deployed"]);
    assert!(
        lines[2].starts_with("beta ")
            && lines[2].contains("Beta & Söhne")
            && lines[2].contains(" ok ")
            && lines[2].ends_with(" not deployed")
    );

    let rows = rows(&site);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["id"], "acme");
    assert_eq!(rows[0]["name"], "ACME Corporation");
    assert_eq!(rows[0]["domain"], "acme.example.com");
    assert_eq!(rows[0]["created"], created.as_str());
    assert_eq!(rows[0]["health"], "ok");
    assert_eq!(rows[0]["problems"], serde_json::json!([]));
    assert_eq!(rows[1]["name"], "Beta & Söhne");
}

#[test]
fn health_says_incomplete_insecure_or_broken() {
    let site = Site::new();
    for id in ["good", "open", "half", "lost", "other", "nologs", "norepo"] {
        create(&site, id, id);
    }
    fs::set_permissions(site.secrets_file("open"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::remove_file(site.client_dir("half").join("traefik.yml")).unwrap();
    fs::remove_file(site.secrets_file("lost")).unwrap();
    let env = site.client_dir("other").join("client.env");
    fs::write(&env, fs::read_to_string(&env).unwrap().replace("CLIENT_ID='other'", "CLIENT_ID='acme'")).unwrap();
    fs::remove_file(site.log_root().join("clients/nologs/audit.log")).unwrap();
    fs::remove_dir_all(site.backup_root().join("client-norepo")).unwrap();
    // An interrupted create-client: dirs made, nothing written yet.
    fs::create_dir_all(site.client_dir("started")).unwrap();

    let rows = rows(&site);
    assert_eq!(health(&rows, "good"), ("ok".into(), vec![]));
    let (word, problems) = health(&rows, "open");
    assert_eq!(word, "insecure");
    assert!(problems[0].contains("secrets.env mode 0644"), "{problems:?}");
    let (word, problems) = health(&rows, "half");
    assert_eq!(word, "incomplete");
    assert!(problems.iter().any(|p| p.contains("traefik.yml")), "{problems:?}");
    assert_eq!(health(&rows, "lost").0, "broken", "secrets lost after creation cannot be regenerated");
    assert_eq!(health(&rows, "other").0, "broken");
    assert_eq!(health(&rows, "nologs").0, "incomplete");
    let (word, problems) = health(&rows, "norepo");
    assert_eq!(word, "incomplete");
    assert_eq!(problems, ["restic repository not initialized"]);
    assert_eq!(health(&rows, "started").0, "incomplete");

    // Re-running create-client completes an incomplete client.
    create(&site, "half", "half");
    create(&site, "started", "started");
    let rows = self::rows(&site);
    assert_eq!(health(&rows, "half").0, "ok");
    assert_eq!(health(&rows, "started").0, "ok");
}

/// Health is read from disk; only the stack column asks Docker (one `docker ps`), and a
/// failing Docker leaves the list whole, the stack column `unknown`.
#[test]
fn lists_without_a_working_docker() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    // A `docker` first on PATH that leaves a mark when called.
    let bin = site.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let marker = site.path().join("docker-was-called");
    fs::write(bin.join("docker"), format!("#!/bin/sh\ntouch '{}'\nexit 1\n", marker.display())).unwrap();
    fs::set_permissions(bin.join("docker"), fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let output = site.test().arg("list-clients").env("PATH", &path).run();
    assert!(
        output.stdout.lines().any(|l| l.starts_with("acme ") && l.contains(" ok ") && l.ends_with(" unknown")),
        "{}",
        output.stdout
    );
    assert!(output.stdout.contains("stack states unknown"), "{}", output.stdout);
    assert!(marker.exists(), "the one docker call for stack states");
}

#[test]
fn no_clients_is_said_plainly() {
    let site = Site::new();
    site.test().arg("list-clients").stdout_contains("no clients under").run();
    assert!(rows(&site).is_empty());
}

#[test]
fn list_clients_changes_nothing_and_is_not_audited() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let before = site.snapshot();
    site.test().arg("list-clients").stdout_lacks("created,").run();
    assert_eq!(site.snapshot(), before);
}
