//! setup-log-segmentation (SPEC §7, issue 7): log dir and files with modes, a logrotate
//! policy that Debian's logrotate accepts and can act on, all clients when CLIENT_ID is
//! omitted, nothing of other tenants touched.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    create_client::create,
    test::{Site, audit_lines},
};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

/// Debian's logrotate, or None (with a loud SKIP) when it is not installed outside CI.
fn logrotate() -> Option<PathBuf> {
    let found = which_logrotate();
    if found.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "logrotate is not installed (apt install logrotate)");
        eprintln!("SKIP: logrotate is not installed (apt install logrotate); policy test not run");
    }
    found
}

fn which_logrotate() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join("logrotate"))
        .find(|candidate| candidate.is_file())
}

/// Segments the logs of client `id`, whose config dir is made first (on its own the task
/// serves existing clients only).
fn segment(site: &Site, id: &str) {
    fs::create_dir_all(site.client_dir(id)).unwrap();
    site.test().args(["setup-log-segmentation", &format!("CLIENT_ID={id}")]).run();
}

#[test]
fn log_dir_and_files_get_their_modes() {
    let site = Site::new();
    segment(&site, "acme");
    let dir = site.log_root().join("clients/acme");
    assert_eq!(mode(&dir), 0o750);
    for log in ["access.log", "error.log", "audit.log", "backup.log"] {
        assert_eq!(mode(&dir.join(log)), 0o640, "{log}");
    }
    assert_eq!(mode(&site.logrotate_dir().join("agency_stack-acme")), 0o644);
}

#[test]
fn modes_are_repaired_and_log_contents_kept() {
    let site = Site::new();
    segment(&site, "acme");
    let dir = site.log_root().join("clients/acme");
    fs::write(dir.join("access.log"), "GET / 200\n").unwrap();
    fs::set_permissions(dir.join("access.log"), fs::Permissions::from_mode(0o666)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let policy = site.logrotate_dir().join("agency_stack-acme");
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o666)).unwrap();
    fs::remove_file(dir.join("error.log")).unwrap();

    segment(&site, "acme");
    assert_eq!(mode(&dir), 0o750);
    assert_eq!(mode(&dir.join("access.log")), 0o640);
    assert_eq!(fs::read_to_string(dir.join("access.log")).unwrap(), "GET / 200\n");
    assert_eq!(mode(&dir.join("error.log")), 0o640);
    assert_eq!(mode(&policy), 0o644, "logrotate ignores a world-writable policy");
}

#[test]
fn logrotate_accepts_the_policy() {
    let Some(logrotate) = logrotate() else { return };
    let site = Site::new();
    segment(&site, "acme");
    let policy = site.logrotate_dir().join("agency_stack-acme");
    let state = site.path().join("logrotate.state");
    let output = Command::new(&logrotate).arg("-d").arg("-s").arg(&state).arg(&policy).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let all = format!("{stdout}{stderr}");
    assert!(output.status.success(), "logrotate -d failed:\n{all}");
    // logrotate exits 0 even when it ignores a policy (bad mode or owner): look for errors.
    assert!(!all.contains("error:"), "logrotate complained:\n{all}");
    let dir = site.log_root().join("clients/acme");
    for log in ["access.log", "error.log", "audit.log", "backup.log"] {
        assert!(all.contains(&format!("considering log {}", dir.join(log).display())), "{log} not covered:\n{all}");
    }
}

#[test]
fn logrotate_renames_every_log_and_creates_it_again_with_its_mode() {
    let Some(logrotate) = logrotate() else { return };
    let site = Site::new();
    segment(&site, "acme");
    let dir = site.log_root().join("clients/acme");
    fs::write(dir.join("access.log"), "GET / 200\n").unwrap();
    let audit_before = fs::read_to_string(dir.join("audit.log")).unwrap();
    assert!(!audit_before.is_empty(), "setup-log-segmentation audited itself");

    let policy = site.logrotate_dir().join("agency_stack-acme");
    let state = site.path().join("logrotate.state");
    let output = Command::new(&logrotate).arg("-f").arg("-s").arg(&state).arg(&policy).output().unwrap();
    assert!(output.status.success(), "logrotate -f failed: {}", String::from_utf8_lossy(&output.stderr));

    // create 0640: every writer opens per write, so the old lines move whole into .1 (a
    // copytruncate could lose what is appended between its copy and its truncate).
    assert_eq!(fs::read_to_string(dir.join("access.log.1")).unwrap(), "GET / 200\n");
    assert_eq!(fs::metadata(dir.join("access.log")).unwrap().len(), 0);
    assert_eq!(mode(&dir.join("access.log")), 0o640);
    // create 0640: audit.log renamed whole, a fresh one with the same mode
    assert_eq!(fs::read_to_string(dir.join("audit.log.1")).unwrap(), audit_before);
    assert_eq!(mode(&dir.join("audit.log")), 0o640);
    assert_eq!(mode(&dir.join("audit.log.1")), 0o640);

    // The next run appends to the new audit.log.
    segment(&site, "acme");
    assert_eq!(audit_lines(&site, "acme").len(), 1);
}

#[test]
fn all_clients_when_client_id_is_omitted() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    create(&site, "beta", "Beta");
    fs::remove_dir_all(site.log_root().join("clients/beta")).unwrap();
    fs::remove_file(site.logrotate_dir().join("agency_stack-beta")).unwrap();
    let acme_lines = audit_lines(&site, "acme").len();

    // A stray directory that is no client id is named and skipped, not fatal.
    fs::create_dir_all(site.root().join("clients/Not_A_Client")).unwrap();
    site.test()
        .arg("setup-log-segmentation")
        .stdout_contains("skipping Not_A_Client")
        .stdout_contains("6 created, 0 updated")
        .run();
    // beta's log dir is back with its files and policy
    let beta = site.log_root().join("clients/beta");
    assert_eq!(mode(&beta), 0o750);
    assert_eq!(mode(&beta.join("audit.log")), 0o640);
    assert!(site.logrotate_dir().join("agency_stack-beta").is_file());

    // Each client's audit trail gets one line, holding only that client's steps.
    let acme = audit_lines(&site, "acme");
    assert_eq!(acme.len(), acme_lines + 1);
    let beta_lines = audit_lines(&site, "beta");
    assert_eq!(beta_lines.len(), 1, "beta's old audit.log was removed");
    let line = &beta_lines[0];
    assert_eq!(line["task"], "setup-log-segmentation");
    let targets: Vec<&str> =
        line["changes"].as_array().unwrap().iter().map(|c| c["target"].as_str().unwrap()).collect();
    assert!(targets.iter().any(|t| t.ends_with("agency_stack-beta")), "{targets:?}");
    assert!(targets.iter().all(|t| !t.contains("acme")), "acme's steps in beta's audit line: {targets:?}");
}

#[test]
fn no_clients_is_said_plainly() {
    let site = Site::new();
    site.test().arg("setup-log-segmentation").stdout_contains("no clients under").run();
}

#[test]
fn one_client_run_leaves_other_tenants_untouched() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    create(&site, "beta", "Beta");
    let beta = |s: Vec<(String, u32, Option<Vec<u8>>)>| {
        s.into_iter().filter(|(p, _, _)| p.contains("/beta") || p.contains("-beta")).collect::<Vec<_>>()
    };
    let before = beta(site.snapshot());
    fs::remove_dir_all(site.log_root().join("clients/acme")).unwrap();
    segment(&site, "acme");
    assert_eq!(beta(site.snapshot()), before);
}

#[test]
fn dry_run_creates_nothing_and_audits_nothing() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    fs::remove_file(site.log_root().join("clients/acme/error.log")).unwrap();
    let before = site.snapshot();
    site.test()
        .args(["-n", "setup-log-segmentation", "CLIENT_ID=acme"])
        .stdout_contains("would create file ")
        .stdout_contains("error.log")
        .run();
    assert_eq!(site.snapshot(), before, "a dry run wrote a file (the audit log?)");
}

#[test]
fn compose_logging_is_tagged_with_the_client() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let text = fs::read_to_string(site.client_dir("acme").join("docker-compose.override.yml")).unwrap();
    let compose = &yaml_rust2::YamlLoader::load_from_str(&text).unwrap()[0];
    let services = compose["services"].as_hash().expect("services");
    assert!(!services.is_empty());
    for (name, service) in services {
        let tag = service["logging"]["options"]["tag"].as_str().unwrap_or_else(|| panic!("{name:?} has no log tag"));
        assert!(tag.contains("acme"), "{name:?} log tag {tag:?} does not name the client");
    }
}
