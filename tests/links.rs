//! Links inside the roots (issue 16, defect 9): no change follows a symlink below a root,
//! even one that stays inside it, and none reaches a hard-linked file (whose other name may
//! lie outside every root); multi-tenancy-status flags both.

use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use crate::test::Site;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn create<'a>(site: &'a Site, id: &str) -> crate::test::Test<'a> {
    site.test()
        .arg("create-client")
        .arg(&format!("CLIENT_ID={id}"))
        .arg("CLIENT_NAME=Links")
        .arg(&format!("CLIENT_DOMAIN={id}.example.com"))
}

fn status_json(site: &Site, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut test = site.test().args(["--json", "multi-tenancy-status"]);
    for arg in extra {
        test = test.arg(arg);
    }
    let output = test.run_unchecked();
    (output.status, output.json())
}

fn check<'a>(json: &'a serde_json::Value, id: &str, name: &str) -> &'a serde_json::Value {
    let clients = json["tasks"][0]["result"]["clients"].as_array().unwrap();
    let client = clients.iter().find(|c| c["client"] == id).unwrap_or_else(|| panic!("{id} not in {json}"));
    client["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no {name} check"))
}

#[test]
fn a_symlinked_keycloak_dir_into_another_clients_secrets_is_refused_not_followed() {
    let site = Site::new();
    create(&site, "lk-y").run();
    let other_secrets = site.secrets_file("lk-y").parent().unwrap().to_path_buf();
    let before: Vec<_> = fs::read_dir(&other_secrets).unwrap().flatten().map(|e| e.file_name()).collect();
    // A client whose keycloak dir was replaced (by hand, or by someone with write access to
    // it) with a link to another client's secrets: the link stays inside the root.
    create(&site, "lk-x").run();
    let config = site.client_dir("lk-x");
    fs::remove_dir_all(config.join("keycloak")).unwrap();
    std::os::unix::fs::symlink(&other_secrets, config.join("keycloak")).unwrap();

    let output = create(&site, "lk-x").status(1).run();
    assert!(output.stderr.contains("is a symlink; a change never follows one"), "{}", output.stderr);
    assert_eq!(mode(&other_secrets), 0o700, "mkdir made the other client's secrets dir {:o}", mode(&other_secrets));
    let after: Vec<_> = fs::read_dir(&other_secrets).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(before, after, "a file was written into the other client's secrets dir");

    // Status names the link in the config check.
    let (code, json) = status_json(&site, &["CLIENT_ID=lk-x"]);
    assert_eq!(code, 1);
    let config_check = check(&json, "lk-x", "config");
    assert_eq!(config_check["status"], "fail");
    let summary = config_check["summary"].as_str().unwrap();
    assert!(summary.contains("keycloak is a symlink (to"), "{summary}");

    // A write through a symlinked directory is refused too, from any task.
    site.site_file(
        "tasks/through.toml",
        "description = \"x\"\nscript = '''\nfs::write(layout::client(\"lk-x\").realm_file, \"{}\", 0o640);\n'''\n",
    );
    let output = site.test().arg("through").status(1).run();
    assert!(output.stderr.contains("leads through the symlink"), "{}", output.stderr);
    assert!(!other_secrets.join("realm.json").exists());
}

#[test]
fn hard_linked_logs_secrets_and_config_are_flagged_and_never_changed() {
    let site = Site::new();
    create(&site, "lk-h").run();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("shadow");
    fs::write(&victim, "root:secret\n").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    // The audit log replaced by a hard link to a file outside every root.
    let audit = site.log_root().join("clients/lk-h/audit.log");
    fs::remove_file(&audit).unwrap();
    fs::hard_link(&victim, &audit).unwrap();
    // client.env with a second name elsewhere.
    let env_file = site.client_dir("lk-h").join("client.env");
    fs::hard_link(&env_file, outside.path().join("client.env")).unwrap();

    let (code, json) = status_json(&site, &[]);
    assert_eq!(code, 1, "a hard-linked config file fails isolation");
    let logs = check(&json, "lk-h", "logs");
    assert_eq!(logs["status"], "fail");
    assert!(logs["summary"].as_str().unwrap().contains("audit.log is hard-linked (2 names share the file)"), "{logs}");
    assert!(logs["fix"].as_str().unwrap().starts_with("FIX=1 cannot"), "{logs}");
    let config = check(&json, "lk-h", "config");
    assert_eq!(config["summary"], "client.env is hard-linked (2 names share the file)");

    // FIX=1 says what it cannot do and changes neither file.
    let (_, json) = status_json(&site, &["FIX=1"]);
    let repairs = json.to_string();
    assert!(repairs.contains("not repaired: audit.log is hard-linked"), "{repairs}");
    assert_eq!(mode(&victim), 0o600, "FIX=1 made the linked file {:o}", mode(&victim));
    // A task run for the client appends no audit line to the linked file, and fails saying why.
    let output = site.test().args(["setup-log-segmentation", "CLIENT_ID=lk-h"]).status(1).run();
    assert!(output.stderr.contains("is hard-linked"), "{}", output.stderr);
    assert_eq!(fs::read_to_string(&victim).unwrap(), "root:secret\n");
    assert_eq!(mode(&victim), 0o600);

    // secrets.env hard-linked: flagged.
    let secrets = site.secrets_file("lk-h");
    let copy = outside.path().join("secrets.env");
    fs::hard_link(&secrets, &copy).unwrap();
    let (_, json) = status_json(&site, &[]);
    let secrets_check = check(&json, "lk-h", "secrets");
    assert_eq!(secrets_check["summary"], "secrets.env is hard-linked (2 names share the file)");
}
