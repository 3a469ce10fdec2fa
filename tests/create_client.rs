//! create-client's file layout (SPEC §6, §7): contents, modes, idempotence, dry run.

use std::{fs, os::unix::fs::PermissionsExt, path::Path, process::Command};

use crate::test::Site;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

/// What bash sees after `source FILE; printf %s "$KEY"`.
pub fn bash_value(file: &Path, key: &str) -> String {
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("set -eu; source \"$1\"; printf %s \"${key}\""))
        .arg("bash")
        .arg(file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "bash could not source {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

pub fn create(site: &Site, id: &str, name: &str) -> crate::test::Output {
    site.test()
        .args([
            "create-client",
            &format!("CLIENT_ID={id}"),
            &format!("CLIENT_NAME={name}"),
            &format!("CLIENT_DOMAIN={id}.example.com"),
        ])
        .run()
}

/// Records `service` as the client's routed service with an OIDC client (what an operator or a
/// site plugin writes into client.env).
pub fn record_oidc_service(site: &Site, id: &str, service: &str) {
    let env_file = site.client_dir(id).join("client.env");
    let env = std::fs::read_to_string(&env_file).unwrap();
    std::fs::write(&env_file, format!("{env}OIDC_SERVICES='{service}'\n")).unwrap();
}

#[test]
fn creates_every_file_with_contents_and_modes() {
    let site = Site::new();
    create(&site, "acme", "ACME Corporation");
    let dir = site.client_dir("acme");

    let env = dir.join("client.env");
    assert_eq!(mode(&env), 0o640);
    assert_eq!(bash_value(&env, "CLIENT_ID"), "acme");
    assert_eq!(bash_value(&env, "CLIENT_NAME"), "ACME Corporation");
    assert_eq!(bash_value(&env, "CLIENT_DOMAIN"), "acme.example.com");
    assert_eq!(bash_value(&env, "CLIENT_NETWORK"), "acme_network");
    assert_eq!(bash_value(&env, "CLIENT_REALM"), "acme");
    assert_eq!(bash_value(&env, "DATABASE_NETWORK"), "acme_database");

    let secrets = site.secrets_file("acme");
    assert_eq!(mode(&secrets), 0o600);
    assert_eq!(mode(secrets.parent().unwrap()), 0o700);
    for key in ["RESTIC_PASSWORD", "REALM_ADMIN_PASSWORD", "DB_ROOT_PASSWORD", "DB_PASSWORD"] {
        let value = bash_value(&secrets, key);
        assert_eq!(value.len(), 43, "{key} is 32 random bytes in base64url");
        assert!(value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{key} is url-safe");
    }

    let realm: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("keycloak/realm.json")).unwrap()).unwrap();
    assert_eq!(realm["realm"], "acme");
    assert_eq!(realm["displayName"], "ACME Corporation");
    let realm_text = fs::read_to_string(dir.join("keycloak/realm.json")).unwrap();
    assert!(!realm_text.contains(&bash_value(&secrets, "REALM_ADMIN_PASSWORD")), "realm.json holds no secret");

    let backup = dir.join("backup/config.sh");
    assert!(bash_value(&backup, "RESTIC_REPOSITORY").ends_with("/client-acme"));

    for file in ["docker-compose.override.yml", "traefik.yml"] {
        let text = fs::read_to_string(dir.join(file)).unwrap();
        yaml_rust2::YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{file} is not YAML: {e}"));
    }
    let compose =
        &yaml_rust2::YamlLoader::load_from_str(&fs::read_to_string(dir.join("docker-compose.override.yml")).unwrap())
            .unwrap()[0];
    assert_eq!(compose["networks"]["database"]["name"].as_str(), Some("acme_database"));
    assert_eq!(compose["services"]["db"]["labels"]["agency.client"].as_str(), Some("acme"));

    let log_dir = site.log_root().join("clients/acme");
    assert_eq!(mode(&log_dir), 0o750);
    for log in ["access.log", "error.log", "audit.log", "backup.log"] {
        assert_eq!(mode(&log_dir.join(log)), 0o640, "{log}");
    }
}

#[test]
fn second_run_changes_nothing_and_keeps_secrets() {
    let site = Site::new();
    create(&site, "acme", "ACME Corporation");
    let secrets_before = fs::read_to_string(site.secrets_file("acme")).unwrap();
    let before = site.snapshot();
    let output = create(&site, "acme", "ACME Corporation");
    assert!(output.stdout.contains("0 created, 0 updated, 0 removed"), "{}", output.stdout);
    assert!(!output.stdout.contains("  created"), "{}", output.stdout);
    assert_eq!(fs::read_to_string(site.secrets_file("acme")).unwrap(), secrets_before);
    // Only the audit log grew.
    let audit = site.log_root().join("clients/acme/audit.log").display().to_string();
    let without_audit =
        |s: Vec<(String, u32, Option<Vec<u8>>)>| s.into_iter().filter(|(p, _, _)| *p != audit).collect::<Vec<_>>();
    assert_eq!(without_audit(site.snapshot()), without_audit(before));
}

#[test]
fn missing_secret_is_added_and_others_kept() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let path = site.secrets_file("acme");
    let restic = bash_value(&path, "RESTIC_PASSWORD");
    let text = fs::read_to_string(&path).unwrap();
    let kept: String = text.lines().filter(|l| !l.starts_with("DB_PASSWORD=")).map(|l| format!("{l}\n")).collect();
    fs::write(&path, kept).unwrap();
    create(&site, "acme", "ACME");
    assert_eq!(bash_value(&path, "RESTIC_PASSWORD"), restic);
    assert_eq!(bash_value(&path, "DB_PASSWORD").len(), 43);
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn dry_run_changes_nothing_at_all() {
    let site = Site::new();
    let before = site.snapshot();
    site.test()
        .args(["-n", "create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"])
        .stdout_contains("would create mkdir")
        .stdout_contains("secrets.env")
        .stdout_contains("nothing was changed")
        .stdout_lacks("  created")
        .run();
    assert_eq!(site.snapshot(), before, "dry run touched the tree");

    // After a real run the plan is exact: nothing to do.
    create(&site, "acme", "ACME");
    let before = site.snapshot();
    site.test()
        .args(["--dry-run", "create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"])
        .stdout_contains("0 change(s) planned")
        .run();
    assert_eq!(site.snapshot(), before);
}

#[test]
fn json_report_lists_changes_without_secret_values() {
    let site = Site::new();
    let output = site
        .test()
        .args(["--json", "create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"])
        .run();
    let json = output.json();
    assert_eq!(json["ok"], true);
    let tasks = json["tasks"].as_array().unwrap();
    assert_eq!(
        tasks.iter().map(|t| t["task"].as_str().unwrap()).collect::<Vec<_>>(),
        ["setup-log-segmentation", "create-client"]
    );
    let changes = tasks[1]["changes"].as_array().unwrap();
    assert!(
        changes.iter().any(|c| c["outcome"] == "created" && c["target"].as_str().unwrap().ends_with("secrets.env"))
    );
    let secrets = fs::read_to_string(site.secrets_file("acme")).unwrap();
    for line in secrets.lines() {
        let value = line.split_once('=').unwrap().1.trim_matches('\'');
        assert!(!output.stdout.contains(value), "secret value in --json output");
        let audit = fs::read_to_string(site.log_root().join("clients/acme/audit.log")).unwrap();
        assert!(!audit.contains(value), "secret value in audit log");
    }
}

#[test]
fn audit_log_records_each_task_run() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let audit = fs::read_to_string(site.log_root().join("clients/acme/audit.log")).unwrap();
    let records: Vec<serde_json::Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let create = records.iter().find(|r| r["task"] == "create-client").expect("create-client audited");
    assert_eq!(create["outcome"], "ok");
    assert_eq!(create["user"], "tester");
    assert_eq!(create["vars"]["CLIENT_ID"], "acme");
    assert!(create["time"].as_str().unwrap().ends_with('Z'));
    assert!(!create["changes"].as_array().unwrap().is_empty());
}

#[test]
fn hostile_names_round_trip_through_bash() {
    let names = [
        "O'Brien & Sons",
        "$(touch /tmp/agency-pwned) `id` ${HOME}",
        "quote \" and 'single' and \\ backslash",
        "Ünïcödé – 日本語 ✓",
        "semi; colon | pipe > redirect < in & amp",
        "'; rm -rf / #",
        "key: value # not a comment",
        "- list item",
    ];
    for (i, name) in names.iter().enumerate() {
        let site = Site::new();
        let id = format!("hostile{i}");
        create(&site, &id, name);
        let dir = site.client_dir(&id);
        assert_eq!(bash_value(&dir.join("client.env"), "CLIENT_NAME"), *name);
        let realm: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(dir.join("keycloak/realm.json")).unwrap()).unwrap();
        assert_eq!(realm["displayName"], *name);
    }
    assert!(!Path::new("/tmp/agency-pwned").exists());
}

#[test]
fn quiet_run_prints_only_the_result_line_on_success() {
    let site = Site::new();
    let quiet = site
        .test()
        .args(["-q", "create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"])
        .run();
    assert_eq!(quiet.stdout.lines().count(), 1, "{}", quiet.stdout);
    assert!(quiet.stdout.starts_with("create-client: "), "{}", quiet.stdout);
    assert!(site.client_dir("acme").join("client.env").exists());
}

#[test]
fn a_held_client_lock_fails_fast_with_no_wait() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let lock = fs::File::open(site.root().join(".locks/client-acme.lock")).unwrap();
    lock.lock().unwrap();
    site.test()
        .args(["--no-wait", "create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"])
        .status(1)
        .stderr_contains("another agency run is working on client acme")
        .run();
    // Another client is not blocked by acme's lock.
    site.test()
        .args(["--no-wait", "create-client", "CLIENT_ID=other", "CLIENT_NAME=O", "CLIENT_DOMAIN=other.example.com"])
        .run();
    lock.unlock().unwrap();
    site.test()
        .args(["--no-wait", "create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"])
        .run();
}

#[test]
fn allow_list_and_forward_auth_survive_a_rerun_without_them() {
    let site = Site::new();
    let args = ["create-client", "CLIENT_ID=guarded", "CLIENT_NAME=G", "CLIENT_DOMAIN=guarded.example.com"];
    site.test()
        .args(args)
        .args(["ALLOWED_IPS=10.0.0.0/8", "AUTH_URL=http://oauth2-proxy-{realm}:4180/oauth2/auth"])
        .env("AGENCY_BACKUPS", "off")
        .run();
    let traefik = site.client_dir("guarded").join("traefik.yml");
    let first = fs::read_to_string(&traefik).unwrap();
    assert!(first.contains("ipAllowList") && first.contains("forwardAuth"), "{first}");
    let env = site.client_dir("guarded").join("client.env");
    assert_eq!(bash_value(&env, "ALLOWED_IPS"), "10.0.0.0/8");

    // A repair run without the variables changes nothing.
    site.test().args(args).env("AGENCY_BACKUPS", "off").stdout_contains(" 0 created, 0 updated, 0 removed").run();
    assert_eq!(fs::read_to_string(&traefik).unwrap(), first);

    // New values replace the recorded ones.
    site.test().args(args).arg("ALLOWED_IPS=192.0.2.0/24").env("AGENCY_BACKUPS", "off").run();
    let replaced = fs::read_to_string(&traefik).unwrap();
    assert!(replaced.contains("192.0.2.0/24") && !replaced.contains("10.0.0.0/8"), "{replaced}");
    assert!(replaced.contains("forwardAuth"));
}

/// Writes an executable `fake-bin/NAME` (first on the site's PATH) holding `script`.
fn fake_program(site: &Site, name: &str, script: &str) {
    let path = site.path().join("fake-bin").join(name);
    let _ = fs::remove_file(&path);
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A shell loop that waits (at most 30 s, so a wrong order fails instead of hanging) until
/// `file` exists, else says `why` on stderr and exits 1.
fn wait_for(file: &Path, why: &str) -> String {
    format!(
        "i=0; until [ -e '{}' ]; do i=$((i+1)); if [ $i -gt 300 ]; then echo '{why}' >&2; exit 1; fi; sleep 0.1; done",
        file.display()
    )
}

#[test]
fn a_new_clients_restic_init_runs_while_its_networks_are_created() {
    let site = Site::new();
    let init_started = site.path().join("init-started");
    let network_made = site.path().join("fake-docker/networks/acme_frontend.json");
    let real_restic = which::which("restic").expect("restic is installed");
    let fake_docker = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake-docker");
    // Each side waits for the other to have begun: run one after the other (either way
    // round), the first waits for the second in vain and fails.
    fake_program(
        &site,
        "restic",
        &format!(
            "#!/bin/sh\ncase \" $* \" in *' init '*)\n  touch '{}'\n  {}\nesac\nexec '{}' \"$@\"\n",
            init_started.display(),
            wait_for(&network_made, "restic init ran alone: no network was created meanwhile"),
            real_restic.display()
        ),
    );
    fake_program(
        &site,
        "docker",
        &format!(
            "#!/bin/sh\ncase \"$1 ${{2:-}}\" in 'network create')\n  {}\nesac\nexec '{}' \"$@\"\n",
            wait_for(&init_started, "the networks were created before restic init started"),
            fake_docker.display()
        ),
    );
    let output = create(&site, "acme", "ACME");
    assert!(output.stdout.contains("  created      restic init "), "{}", output.stdout);
    assert!(site.backup_root().join("client-acme/config").is_file(), "the repository is initialized");
    for tier in ["frontend", "backend", "database", "network"] {
        assert!(site.path().join(format!("fake-docker/networks/acme_{tier}.json")).is_file(), "{tier}");
    }
    let again = create(&site, "acme", "ACME");
    assert!(again.stdout.contains("0 created, 0 updated, 0 removed"), "{}", again.stdout);
}

#[test]
fn a_failing_restic_init_fails_create_client_with_restics_error_after_the_networks() {
    let site = Site::new();
    let real_restic = which::which("restic").expect("restic is installed");
    fake_program(
        &site,
        "restic",
        &format!(
            "#!/bin/sh\ncase \" $* \" in *' init '*)\n  \
             echo 'Fatal: create key in repository failed: disk quota exceeded' >&2; exit 1;;\nesac\n\
             exec '{}' \"$@\"\n",
            real_restic.display()
        ),
    );
    let repository = site.backup_root().join("client-acme").display().to_string();
    let failed = site
        .test()
        .args(["create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"])
        .status(1)
        .stderr_contains(&format!(
            "create-client failed: restic init {repository} failed: restic init on {repository} failed (exit 1): \
             create key in repository failed: disk quota exceeded"
        ))
        .run();
    assert!(failed.stdout.contains(&format!("  failed       restic init {repository}")), "{}", failed.stdout);
    for tier in ["frontend", "backend", "database", "network"] {
        assert!(site.path().join(format!("fake-docker/networks/acme_{tier}.json")).is_file(), "{tier}");
    }
    let audit = crate::test::audit_lines(&site, "acme").pop().unwrap();
    assert_eq!(audit["outcome"], "failed", "{audit}");

    // A task that starts an init and never waits for it still fails with restic's error.
    site.site_file(
        "tasks/init-unawaited.toml",
        "description = \"starts an init, never waits\"\nscript = \"restic::start_init(CLIENT_ID); #{}\"\n\
         [vars.CLIENT_ID]\nrequired = true\nkind = \"client_id\"\n",
    );
    site.test()
        .args(["init-unawaited", "CLIENT_ID=acme"])
        .status(1)
        .stderr_contains(&format!("init-unawaited failed: restic init {repository} failed: "))
        .stderr_contains("disk quota exceeded")
        .run();

    // With a working restic a plain re-run completes the client.
    fs::remove_file(site.path().join("fake-bin/restic")).unwrap();
    let rerun = create(&site, "acme", "ACME");
    assert!(rerun.stdout.contains(&format!("  created      restic init {repository}")), "{}", rerun.stdout);
    assert!(site.backup_root().join("client-acme/config").is_file());
}
