//! rotate-secrets (issue 6, SPEC §7): values change (all or one), the restic repository
//! opens with the new password and not the old, old snapshots still restore, history kept
//! 0600 and pruned, unknown names listed, the live Keycloak password follows, a crash at
//! every step leaves the repository openable and a re-run completes, and no secret value
//! ever appears in any output or log.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use indexmap::IndexMap;

use crate::{
    create_client::create,
    support::fake_keycloak::FakeKeycloak,
    test::{Output, Site},
};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

fn secrets(site: &Site, id: &str) -> IndexMap<String, String> {
    agency::format::envfile::parse(&fs::read_to_string(site.secrets_file(id)).unwrap()).unwrap()
}

fn secrets_dir(site: &Site, id: &str) -> PathBuf {
    site.secrets_file(id).parent().unwrap().to_path_buf()
}

fn history(site: &Site, id: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(secrets_dir(site, id).join("history"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

fn repository(site: &Site, id: &str) -> PathBuf {
    site.backup_root().join(format!("client-{id}"))
}

/// Whether `password` opens the client's repository (restic itself, no agency code).
fn opens(site: &Site, id: &str, password: &str) -> bool {
    Command::new("restic")
        .args(["cat", "config", "--no-cache"])
        .env("RESTIC_REPOSITORY", repository(site, id))
        .env("RESTIC_PASSWORD", password)
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .status
        .success()
}

fn key_count(site: &Site, id: &str) -> usize {
    let output = Command::new("restic")
        .args(["key", "list", "--json", "--no-cache"])
        .env("RESTIC_REPOSITORY", repository(site, id))
        .env("RESTIC_PASSWORD", &secrets(site, id)["RESTIC_PASSWORD"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice::<Vec<serde_json::Value>>(&output.stdout).unwrap().len()
}

fn rotate<'a>(site: &'a Site, id: &str) -> crate::test::Test<'a> {
    site.test().arg("rotate-secrets").arg(&format!("CLIENT_ID={id}"))
}

fn result(output: &Output) -> serde_json::Value {
    output.json()["tasks"].as_array().unwrap().last().unwrap()["result"].clone()
}

fn assert_modes(site: &Site, id: &str) {
    assert_eq!(mode(&site.secrets_file(id)), 0o600, "secrets.env");
    assert_eq!(mode(&secrets_dir(site, id)), 0o700, "secrets dir");
    let pending = secrets_dir(site, id).join("secrets.env.next");
    if pending.exists() {
        assert_eq!(mode(&pending), 0o600, "secrets.env.next");
    }
    let history_dir = secrets_dir(site, id).join("history");
    if history_dir.exists() {
        assert_eq!(mode(&history_dir), 0o700, "history dir");
        for file in history(site, id) {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }
}

#[test]
fn rotating_all_then_one_rekeys_the_repository_and_keeps_old_snapshots() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let output = site.test().args(["--json", "backup-client", "CLIENT_ID=acme"]).run();
    let before_snapshot = result(&output)["backup"]["snapshot"].as_str().unwrap().to_string();
    let original = secrets(&site, "acme");

    let output = rotate(&site, "acme").arg("--json").run();
    let report = result(&output);
    let rotated: Vec<&str> = report["rotated"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(rotated, ["RESTIC_PASSWORD", "REALM_ADMIN_PASSWORD", "DB_ROOT_PASSWORD", "DB_PASSWORD"]);
    assert!(report["applied"]["RESTIC_PASSWORD"].as_str().unwrap().starts_with("restic repository"));
    for name in ["REALM_ADMIN_PASSWORD", "DB_ROOT_PASSWORD", "DB_PASSWORD"] {
        assert!(report["on_disk_only"][name].is_string(), "{name} is reported as changed on disk only: {report}");
    }
    let first = secrets(&site, "acme");
    for (key, value) in &original {
        assert_ne!(&first[key], value, "{key} was not rotated");
        assert_eq!(first[key].len(), 43, "{key} is a fresh 32-byte value");
    }
    assert!(opens(&site, "acme", &first["RESTIC_PASSWORD"]), "the new password opens the repository");
    assert!(!opens(&site, "acme", &original["RESTIC_PASSWORD"]), "the old password no longer does");
    assert_eq!(key_count(&site, "acme"), 1, "only the current key is left");
    assert_modes(&site, "acme");
    let kept = history(&site, "acme");
    assert_eq!(kept.len(), 1);
    assert_eq!(agency::format::envfile::parse(&fs::read_to_string(&kept[0]).unwrap()).unwrap(), original);
    assert!(!secrets_dir(&site, "acme").join("secrets.env.next").exists());

    // A snapshot made before the rotation restores with the new password.
    let target = site.path().join("restored");
    site.test()
        .args(["restore-client", "CLIENT_ID=acme"])
        .arg(&format!("SNAPSHOT={before_snapshot}"))
        .arg(&format!("TARGET={}", target.display()))
        .run();
    let restored = target.join(site.client_dir("acme").strip_prefix("/").unwrap()).join("client.env");
    assert_eq!(fs::read(restored).unwrap(), fs::read(site.client_dir("acme").join("client.env")).unwrap());

    // One secret: only it changes; the repository key stays.
    rotate(&site, "acme").arg("SECRET=DB_PASSWORD").stdout_contains("DB_PASSWORD: rotated on disk only").run();
    let second = secrets(&site, "acme");
    for (key, value) in &first {
        assert_eq!(&second[key] != value, key == "DB_PASSWORD", "{key}");
    }
    assert!(opens(&site, "acme", &second["RESTIC_PASSWORD"]));
    assert_eq!(key_count(&site, "acme"), 1);

    // Re-running create-client never touches the rotated values.
    create(&site, "acme", "ACME");
    assert_eq!(secrets(&site, "acme"), second);
    assert_modes(&site, "acme");
}

#[test]
fn an_unknown_secret_lists_the_valid_names_and_changes_nothing() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let before = secrets(&site, "acme");
    rotate(&site, "acme")
        .arg("SECRET=DB_PASWORD")
        .status(2)
        .stderr_contains("unknown secret DB_PASWORD for client acme (did you mean DB_PASSWORD?)")
        .stderr_contains("its secrets are RESTIC_PASSWORD, REALM_ADMIN_PASSWORD, DB_ROOT_PASSWORD, DB_PASSWORD")
        .run();
    assert_eq!(secrets(&site, "acme"), before);
    assert!(history(&site, "acme").is_empty());
    assert!(!secrets_dir(&site, "acme").join("secrets.env.next").exists());
    rotate(&site, "acme").arg("SECRETS_HISTORY=0").status(1).stderr_contains("at least 1").run();
}

#[test]
fn history_keeps_the_newest_generations_only() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let mut values = vec![secrets(&site, "acme")["DB_PASSWORD"].clone()];
    for _ in 0..3 {
        rotate(&site, "acme").args(["SECRET=DB_PASSWORD", "SECRETS_HISTORY=2"]).run();
        values.push(secrets(&site, "acme")["DB_PASSWORD"].clone());
    }
    let kept = history(&site, "acme");
    assert_eq!(kept.len(), 2);
    let kept_values: Vec<String> = kept
        .iter()
        .map(|f| agency::format::envfile::parse(&fs::read_to_string(f).unwrap()).unwrap()["DB_PASSWORD"].clone())
        .collect();
    assert_eq!(kept_values, values[1..3], "the two generations before the current one, oldest first");
    assert_modes(&site, "acme");
}

#[test]
fn a_dry_run_names_what_would_rotate_and_changes_nothing() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let values = secrets(&site, "acme");
    let before = site.snapshot();
    let output = rotate(&site, "acme")
        .arg("-n")
        .stdout_contains("would create write")
        .stdout_contains("secrets.env.next")
        .stdout_contains("would create restic key add")
        .stdout_contains("would update swap in")
        .stdout_contains("would remove restic key remove")
        .stdout_contains("RESTIC_PASSWORD: would rotate")
        .run();
    let json = rotate(&site, "acme").args(["-n", "--json"]).run();
    assert_eq!(site.snapshot(), before, "a dry run changed files");
    for value in values.values() {
        assert!(!output.stdout.contains(value.as_str()) && !output.stderr.contains(value.as_str()));
        assert!(!json.stdout.contains(value.as_str()) && !json.stderr.contains(value.as_str()));
    }
}

#[test]
fn the_live_keycloak_realm_admin_password_follows_the_rotation() {
    const ADMIN_PASSWORD: &str = "Kc-admin-pw-rotation";
    let fake = FakeKeycloak::builder().admin("admin", ADMIN_PASSWORD).start();
    let site = Site::new();
    fn live<'a>(test: crate::test::Test<'a>, fake: &FakeKeycloak) -> crate::test::Test<'a> {
        test.env("KEYCLOAK_URL", &fake.url())
            .env("KEYCLOAK_ADMIN", "admin")
            .env("KEYCLOAK_ADMIN_PASSWORD", ADMIN_PASSWORD)
    }
    live(site.test(), &fake)
        .args(["create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"])
        .run();
    let before = secrets(&site, "acme")["REALM_ADMIN_PASSWORD"].clone();
    assert_eq!(fake.user_password("acme", "realm-admin").as_deref(), Some(before.as_str()));

    let output = live(rotate(&site, "acme"), &fake).args(["--json", "SECRET=REALM_ADMIN_PASSWORD"]).run();
    let report = result(&output);
    assert!(report["applied"]["REALM_ADMIN_PASSWORD"].as_str().unwrap().starts_with("Keycloak"), "{report}");
    let after = secrets(&site, "acme")["REALM_ADMIN_PASSWORD"].clone();
    assert_ne!(after, before);
    assert_eq!(fake.user_password("acme", "realm-admin").as_deref(), Some(after.as_str()));
    assert!(!output.stdout.contains(&after) && !output.stderr.contains(&after));
}

/// Kills the runner after each mutation of rotate-secrets in turn (a test-only fault point:
/// `AGENCY_FAULT_CRASH_AFTER=N` aborts right after the Nth change), checks what must hold
/// after any crash, and that a plain re-run completes the rotation. First as a client's
/// first rotation (no history dir yet), then with a full history (so pruning happens).
#[cfg(feature = "fault-injection")]
#[test]
fn a_crash_at_every_step_leaves_an_openable_repository_and_a_rerun_completes() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    site.test().args(["backup-client", "CLIENT_ID=acme"]).run();
    let history_dir = secrets_dir(&site, "acme").join("history");
    let mut crashed_after = Vec::new();
    for first_rotation in [true, false] {
        let mut step = if first_rotation { 1 } else { crashed_after.len() };
        loop {
            if first_rotation && history_dir.exists() {
                // The previous rotation completed (its old key is gone): as if it never was.
                fs::remove_dir_all(&history_dir).unwrap();
            }
            let before = secrets(&site, "acme");
            let crashed = rotate(&site, "acme")
                .arg("SECRETS_HISTORY=1")
                .env("AGENCY_FAULT_CRASH_AFTER", &step.to_string())
                .run_unchecked();
            if crashed.status == 0 {
                break;
            }
            assert!(
                crashed.stderr.contains(&format!("injected crash after mutation {step}")),
                "step {step}: exit {}\n{}\n{}",
                crashed.status,
                crashed.stdout,
                crashed.stderr
            );
            let last = crashed.stdout.lines().rev().find(|l| l.starts_with("  ")).unwrap_or("").trim().to_string();
            crashed_after.push(last);

            // What must hold after a crash anywhere.
            assert_modes(&site, "acme");
            let now = secrets(&site, "acme");
            let previous = history(&site, "acme").last().map(|f| {
                agency::format::envfile::parse(&fs::read_to_string(f).unwrap()).unwrap()["RESTIC_PASSWORD"].clone()
            });
            assert!(
                opens(&site, "acme", &now["RESTIC_PASSWORD"])
                    || previous.as_deref().is_some_and(|p| opens(&site, "acme", p)),
                "after a crash at step {step} no password on disk opens the repository"
            );
            assert!(opens(&site, "acme", &now["RESTIC_PASSWORD"]), "step {step}: the current password always opens it");

            // A plain re-run completes it.
            rotate(&site, "acme").arg("SECRETS_HISTORY=1").run();
            let after = secrets(&site, "acme");
            for (key, value) in &before {
                assert_ne!(&after[key], value, "step {step}: {key} is not rotated after the re-run");
            }
            assert!(opens(&site, "acme", &after["RESTIC_PASSWORD"]));
            assert!(!opens(&site, "acme", &before["RESTIC_PASSWORD"]), "step {step}: the old key is still there");
            assert_eq!(key_count(&site, "acme"), 1, "step {step}: a stray key is left");
            assert!(!secrets_dir(&site, "acme").join("secrets.env.next").exists());
            assert_eq!(history(&site, "acme").len(), 1, "step {step}: SECRETS_HISTORY=1");
            assert_modes(&site, "acme");
            step += 1;
        }
    }
    eprintln!("rotate-secrets crash points tested:\n  {}", crashed_after.join("\n  "));
    for step in [
        "write .*/secrets.env.next ",
        "restic key add ",
        "mkdir .*/history ",
        "write .*/history/secrets.env.",
        "swap in .*/secrets.env ",
        "restic key remove ",
        "remove .*/history/secrets.env.",
    ] {
        let pattern = regex::Regex::new(step).unwrap();
        assert!(crashed_after.iter().any(|l| pattern.is_match(l)), "no crash after `{step}`: {crashed_after:#?}");
    }

    // The snapshot taken before all this still restores.
    let target = site.path().join("restored");
    site.test().args(["restore-client", "CLIENT_ID=acme"]).arg(&format!("TARGET={}", target.display())).run();
    assert!(target.join(site.client_dir("acme").strip_prefix("/").unwrap()).join("client.env").is_file());
}

/// Every task with `-v`, `--json` and `-n`: no secret value (current, pending or any kept
/// generation) in stdout, stderr, the audit log or backup.log.
#[test]
fn no_task_ever_prints_a_secret_value() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let list = site.test().args(["--list", "--json"]).run().json();
    let tasks: Vec<String> =
        list["tasks"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect();
    assert!(tasks.contains(&"rotate-secrets".to_string()) && tasks.contains(&"backup-client".to_string()));
    let mut seen = String::new();
    let mut ran: BTreeMap<String, usize> = BTreeMap::new();
    for (round, flags) in [&["-v"][..], &["--json"], &["-n"], &["-n", "--json"], &["-v"]].iter().enumerate() {
        for task in &tasks {
            let explain = site.test().arg("--explain").arg(task).arg("--json").run().json();
            let mut test = site.test();
            for flag in *flags {
                test = test.arg(flag);
            }
            test = test.arg(task);
            for var in explain["vars"].as_array().unwrap() {
                let name = var["name"].as_str().unwrap();
                let value = match name {
                    "CLIENT_ID" => "acme".to_string(),
                    "CLIENT_NAME" => "ACME".to_string(),
                    "CLIENT_DOMAIN" => "acme.example.com".to_string(),
                    "TARGET" => site.path().join(format!("restore-{task}-{round}")).display().to_string(),
                    "UNIT" => "agency-backup@acme.service".to_string(),
                    _ if var["required"] == true => panic!("no test value for the required {name} of {task}"),
                    _ => continue,
                };
                test = test.arg(&format!("{name}={value}"));
            }
            let output = test.run_unchecked();
            *ran.entry(task.clone()).or_default() += 1;
            seen.push_str(&output.stdout);
            seen.push_str(&output.stderr);
        }
    }
    assert!(ran.values().all(|n| *n == 5), "{ran:?}");
    for log in ["audit.log", "backup.log"] {
        seen.push_str(&fs::read_to_string(site.log_root().join("clients/acme").join(log)).unwrap());
    }
    assert!(history(&site, "acme").len() >= 2, "rotate-secrets ran for real twice");
    let mut files = history(&site, "acme");
    files.push(site.secrets_file("acme"));
    let mut checked = 0;
    for file in files {
        for (key, value) in agency::format::envfile::parse(&fs::read_to_string(&file).unwrap()).unwrap() {
            assert!(!seen.contains(&value), "{key} of {} appears in an output or log", file.display());
            checked += 1;
        }
    }
    assert!(checked >= 12, "three generations of four secrets were checked");
}
