//! restic recovery (issue 16, defects 1–4), on the real restic: what a killed restic leaves
//! (keys without a config, a second init's key, a lock of a dead process, a new key's
//! password file) is found and cleared by a plain re-run, and status says so until then.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    create_client::bash_value,
    test::{Output, Site},
};

fn repository(site: &Site, id: &str) -> PathBuf {
    site.backup_root().join(format!("client-{id}"))
}

fn create(site: &Site, id: &str) -> Output {
    site.test()
        .args(["--json", "create-client", &format!("CLIENT_ID={id}"), "CLIENT_NAME=Recovery"])
        .arg(&format!("CLIENT_DOMAIN={id}.example.com"))
        .run()
}

/// restic itself (no agency code) on the client's repository with `password`.
fn restic(site: &Site, id: &str, password: &str, args: &[&str]) -> std::process::Output {
    Command::new("restic")
        .args(args)
        .arg("--no-cache")
        .env("RESTIC_REPOSITORY", repository(site, id))
        .env("RESTIC_PASSWORD", password)
        .env("HOME", site.path())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn password(site: &Site, id: &str) -> String {
    bash_value(&site.secrets_file(id), "RESTIC_PASSWORD")
}

fn files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn keys(site: &Site, id: &str) -> Vec<String> {
    files(&repository(site, id).join("keys"))
}

/// The repository opens with the password on disk, whichever of its keys restic tries.
fn opens_with_every_key(site: &Site, id: &str) {
    for key in keys(site, id) {
        let output = restic(site, id, &password(site, id), &[&format!("--key-hint={key}"), "cat", "config"]);
        assert!(output.status.success(), "key {key}: {}", String::from_utf8_lossy(&output.stderr));
    }
}

fn steps(output: &Output) -> Vec<String> {
    output.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["changes"].as_array().unwrap().clone())
        .filter(|c| c["outcome"] != "unchanged")
        .map(|c| format!("{} {}: {}", c["outcome"].as_str().unwrap(), c["action"].as_str().unwrap(), c["detail"]))
        .collect()
}

fn status_of(site: &Site, id: &str, deep: bool) -> serde_json::Value {
    let mut test = site.test().args(["--json", "multi-tenancy-status"]);
    if deep {
        test = test.arg("DEEP=1");
    }
    let output = test.run_unchecked();
    let json = output.json();
    let text = json.to_string();
    assert!(text.contains(id), "{text}");
    json
}

fn status_says(site: &Site, id: &str, deep: bool, text: &str) {
    let report = status_of(site, id, deep).to_string();
    assert!(report.contains(text), "status (DEEP={deep}) does not say {text:?}:\n{report}");
}

#[test]
fn a_stopped_init_is_initialized_again_with_one_key() {
    let site = Site::new();
    create(&site, "rc-init");
    // What a kill between restic's key and its config leaves: keys/<id>, no config, no data.
    fs::remove_file(repository(&site, "rc-init").join("config")).unwrap();
    status_says(&site, "rc-init", false, "has keys but no config (an init was stopped)");

    let rerun = create(&site, "rc-init");
    assert!(
        steps(&rerun).iter().any(|s| s.starts_with("created restic init") && s.contains("stopped init")),
        "{:?}",
        steps(&rerun)
    );
    assert_eq!(keys(&site, "rc-init").len(), 1, "exactly one key");
    opens_with_every_key(&site, "rc-init");
}

#[test]
fn an_init_stopped_while_writing_its_key_is_initialized_again_with_one_key_file() {
    let site = Site::new();
    create(&site, "rc-tmpkey");
    // What a kill inside restic's key write leaves (seen in the chaos test): no config, and a
    // half-written `<id>-tmp-<random>` beside where the key would be.
    let repo = repository(&site, "rc-tmpkey");
    fs::remove_file(repo.join("config")).unwrap();
    let key = keys(&site, "rc-tmpkey").remove(0);
    fs::rename(repo.join("keys").join(&key), repo.join("keys").join(format!("{key}-tmp-123456"))).unwrap();

    let rerun = create(&site, "rc-tmpkey");
    assert!(steps(&rerun).iter().any(|s| s.starts_with("created restic init")), "{:?}", steps(&rerun));
    let files: Vec<_> = fs::read_dir(repo.join("keys")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files.len(), 1, "one key file, no half-written one beside it: {files:?}");
    opens_with_every_key(&site, "rc-tmpkey");
}

#[test]
fn a_key_that_does_not_open_the_config_is_removed_and_never_one_that_does() {
    let site = Site::new();
    create(&site, "rc-keys");
    let password = password(&site, "rc-keys");
    // A second init over a stopped one (what runs before this fix did): two keys of the one
    // password, the config sealed with the second's master key.
    fs::remove_file(repository(&site, "rc-keys").join("config")).unwrap();
    assert!(restic(&site, "rc-keys", &password, &["init"]).status.success());
    assert_eq!(keys(&site, "rc-keys").len(), 2);
    status_says(&site, "rc-keys", false, "2 keys in the repository (1 expected)");

    let rerun = create(&site, "rc-keys");
    let removed: Vec<String> =
        steps(&rerun).into_iter().filter(|s| s.starts_with("removed restic key remove")).collect();
    assert_eq!(removed.len(), 1, "{:?}", steps(&rerun));
    assert!(removed[0].contains("does not open the repository with the password on disk"), "{removed:?}");
    assert_eq!(keys(&site, "rc-keys").len(), 1);
    opens_with_every_key(&site, "rc-keys");
    // Nothing left to remove: a third run changes nothing.
    let third = create(&site, "rc-keys");
    assert!(steps(&third).is_empty(), "{:?}", steps(&third));
}

/// A restic that takes an exclusive lock and is then killed: the lock of a dead PID stays.
fn leave_stale_lock(site: &Site, id: &str) {
    let fifo = site.path().join("never-written");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut child: Child = Command::new("restic")
        .args(["key", "passwd", "--no-cache", "--new-password-file"])
        .arg(&fifo)
        .env("RESTIC_REPOSITORY", repository(site, id))
        .env("RESTIC_PASSWORD", password(site, id))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    // A finished lock (its 64-hex name), not restic's temp file of one still being written.
    let locked = || files(&repository(site, id).join("locks")).iter().any(|f| f.len() == 64);
    while !locked() {
        assert!(start.elapsed() < Duration::from_secs(30), "restic took no lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_stale_lock_of_a_dead_restic_is_reported_then_removed_before_a_backup() {
    let site = Site::new();
    create(&site, "rc-lock");
    leave_stale_lock(&site, "rc-lock");
    status_says(&site, "rc-lock", false, "1 lock file(s)");
    status_says(&site, "rc-lock", true, "stale lock(s) of restic PID");

    let backup = site.test().args(["--json", "backup-client", "CLIENT_ID=rc-lock"]).run();
    let unlocked: Vec<String> = steps(&backup).into_iter().filter(|s| s.contains("restic unlock")).collect();
    assert_eq!(unlocked.len(), 1, "{:?}", steps(&backup));
    assert!(unlocked[0].contains("(gone)"), "{unlocked:?}");
    assert!(files(&repository(&site, "rc-lock").join("locks")).is_empty(), "no lock is left");
    let snapshots = restic(&site, "rc-lock", &password(&site, "rc-lock"), &["snapshots", "--json"]);
    assert!(String::from_utf8_lossy(&snapshots.stdout).contains("\"id\""), "the backup was made");
}

#[test]
fn a_live_lock_is_never_removed() {
    let site = Site::new();
    create(&site, "rc-live");
    let fifo = site.path().join("never-written");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut holder = Command::new("restic")
        .args(["key", "passwd", "--no-cache", "--new-password-file"])
        .arg(&fifo)
        .env("RESTIC_REPOSITORY", repository(&site, "rc-live"))
        .env("RESTIC_PASSWORD", password(&site, "rc-live"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while files(&repository(&site, "rc-live").join("locks")).is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
    site.test()
        .args(["backup-client", "CLIENT_ID=rc-live"])
        .status(1)
        .stderr_contains("is locked by another process")
        .run();
    assert_eq!(files(&repository(&site, "rc-live").join("locks")).len(), 1, "the live lock stays");
    holder.kill().unwrap();
    holder.wait().unwrap();
}

/// A shim in front of restic: `key add` runs the real one, records the password file it was
/// given, then waits to be killed (the key is written, restic has not exited).
fn key_add_shim(site: &Site) -> String {
    let dir = site.path().join("shims");
    fs::create_dir_all(&dir).unwrap();
    let real = which::which("restic").unwrap();
    let marks = site.path().display();
    let script = format!(
        "#!/bin/sh\ncase \" $* \" in *' key add '*)\n  for a in \"$@\"; do case \"$a\" in --new-password-file=*) \
         echo \"${{a#--new-password-file=}}\" > '{marks}/key-file';; esac; done\n  '{real}' \"$@\" || exit $?\n  \
         touch '{marks}/added'; exec sleep 60;;\nesac\nexec '{real}' \"$@\"\n",
        real = real.display()
    );
    fs::write(dir.join("restic"), script).unwrap();
    fs::set_permissions(dir.join("restic"), fs::Permissions::from_mode(0o755)).unwrap();
    let site_path = site.env().into_iter().find(|(key, _)| key == "PATH").map(|(_, value)| value).unwrap();
    format!("{}:{site_path}", dir.display())
}

#[test]
fn a_rotation_killed_in_key_add_leaves_its_password_file_only_in_the_secrets_dir_and_a_rerun_ends_with_one_key() {
    let site = Site::new();
    create(&site, "rc-rot");
    let old = password(&site, "rc-rot");
    let path = key_add_shim(&site);
    let mut agency = Command::new(env!("CARGO_BIN_EXE_agency"))
        .args(["rotate-secrets", "CLIENT_ID=rc-rot", "SECRET=RESTIC_PASSWORD"])
        .env_clear()
        .envs(site.env())
        .env("PATH", &path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !site.path().join("added").exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "key add never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(agency.id() as i32, libc::SIGKILL) };
    agency.wait().unwrap();

    let key_file = PathBuf::from(fs::read_to_string(site.path().join("key-file")).unwrap().trim());
    let secrets_dir = site.secrets_file("rc-rot").parent().unwrap().to_path_buf();
    assert_eq!(key_file.parent(), Some(secrets_dir.as_path()), "the new password's file lies in the secrets dir");
    assert!(key_file.exists(), "a SIGKILL leaves it (nothing runs after one)");
    assert_eq!(fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);

    site.test().args(["rotate-secrets", "CLIENT_ID=rc-rot", "SECRET=RESTIC_PASSWORD"]).run();
    assert!(!key_file.exists(), "the next run removed it");
    let new = password(&site, "rc-rot");
    assert_ne!(new, old);
    assert_eq!(keys(&site, "rc-rot").len(), 1, "exactly one key after the rotation");
    opens_with_every_key(&site, "rc-rot");
    assert!(
        !restic(&site, "rc-rot", &old, &["cat", "config"]).status.success(),
        "the rotated-away password no longer opens it"
    );
    let leftovers: Vec<String> =
        files(&secrets_dir).into_iter().filter(|n| n.starts_with('.') && n.ends_with(".tmp")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A key of another password: what a rotation killed in `key add` leaves once its password
/// is rotated away (restic wrote the key; the password is no longer on disk).
fn add_foreign_key(site: &Site, id: &str, foreign: &str) {
    let file = site.path().join(format!("{id}-foreign"));
    fs::write(&file, foreign).unwrap();
    let added =
        restic(site, id, &password(site, id), &["key", "add", &format!("--new-password-file={}", file.display())]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    fs::remove_file(&file).unwrap();
}

fn opens_with(site: &Site, id: &str, password: &str) -> bool {
    restic(site, id, password, &["cat", "config"]).status.success()
}

#[test]
fn a_key_no_password_on_disk_opens_is_removed_by_the_next_run_and_never_the_one_that_does() {
    let site = Site::new();
    create(&site, "rc-extra");
    let foreign = "a-rotated-away-password";
    add_foreign_key(&site, "rc-extra", foreign);
    assert!(opens_with(&site, "rc-extra", foreign));
    status_says(&site, "rc-extra", false, "2 keys in the repository (1 expected)");
    status_says(&site, "rc-extra", false, "removes every key the password on disk does not open");

    let backup = site.test().args(["--json", "backup-client", "CLIENT_ID=rc-extra"]).run();
    let removed: Vec<String> = steps(&backup).into_iter().filter(|s| s.contains("restic key remove")).collect();
    assert_eq!(removed.len(), 1, "{:?}", steps(&backup));
    assert!(removed[0].contains("does not open the repository with the password on disk"), "{removed:?}");
    assert_eq!(keys(&site, "rc-extra").len(), 1, "exactly one key");
    assert!(!opens_with(&site, "rc-extra", foreign), "the rotated-away password no longer opens it");
    opens_with_every_key(&site, "rc-extra");
    let report = status_of(&site, "rc-extra", false).to_string();
    assert!(!report.contains("keys in the repository"), "{report}");
    // Nothing left: the next backup removes nothing.
    let again = site.test().args(["--json", "backup-client", "CLIENT_ID=rc-extra"]).run();
    assert!(!steps(&again).iter().any(|s| s.contains("restic key remove")), "{:?}", steps(&again));
}

#[test]
fn during_a_rotation_the_pending_passwords_key_is_kept_and_a_foreign_one_removed() {
    let site = Site::new();
    create(&site, "rc-pend");
    // A rotation stopped after its key add: secrets.env.next holds the new password, whose
    // key is in the repository; a foreign key besides.
    let secrets = site.secrets_file("rc-pend");
    let next = secrets.with_file_name("secrets.env.next");
    let current = fs::read_to_string(&secrets).unwrap();
    let old = password(&site, "rc-pend");
    let new = "the-pending-rotations-password";
    fs::write(&next, current.replace(&old, new)).unwrap();
    fs::set_permissions(&next, fs::Permissions::from_mode(0o600)).unwrap();
    add_foreign_key(&site, "rc-pend", new);
    add_foreign_key(&site, "rc-pend", "a-foreign-password");
    assert_eq!(keys(&site, "rc-pend").len(), 3);
    status_says(&site, "rc-pend", false, "3 keys in the repository (2 expected)");

    site.test().args(["backup-client", "CLIENT_ID=rc-pend"]).run();
    assert_eq!(keys(&site, "rc-pend").len(), 2, "the current and the pending password's keys");
    assert!(opens_with(&site, "rc-pend", &old) && opens_with(&site, "rc-pend", new));
    assert!(!opens_with(&site, "rc-pend", "a-foreign-password"));

    // The rotation completes with one key: the pending password's.
    site.test().args(["rotate-secrets", "CLIENT_ID=rc-pend", "SECRET=RESTIC_PASSWORD"]).run();
    assert_eq!(password(&site, "rc-pend"), new);
    assert_eq!(keys(&site, "rc-pend").len(), 1);
    assert!(!opens_with(&site, "rc-pend", &old));
    opens_with_every_key(&site, "rc-pend");
}

fn list_health(site: &Site, id: &str) -> String {
    let output = site.test().args(["--json", "list-clients"]).run_unchecked();
    let text = output.stdout;
    let rows: serde_json::Value = serde_json::from_str(&text).unwrap();
    let found = rows.to_string();
    let row = rows["tasks"][0]["result"]["clients"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == id).cloned())
        .unwrap_or_else(|| panic!("{id} not listed: {found}"));
    row["health"].as_str().unwrap().to_string()
}

#[test]
fn create_client_refuses_new_secrets_for_a_client_that_lost_them_unless_asked() {
    let site = Site::new();
    create(&site, "rc-lost");
    let secrets = site.secrets_file("rc-lost");
    let original = fs::read_to_string(&secrets).unwrap();
    let again = || {
        site.test().args([
            "create-client",
            "CLIENT_ID=rc-lost",
            "CLIENT_NAME=Recovery",
            "CLIENT_DOMAIN=rc-lost.example.com",
        ])
    };

    fs::remove_file(&secrets).unwrap();
    again()
        .status(1)
        .stderr_contains("client rc-lost has a client.env and a restic repository")
        .stderr_contains("its secrets.env is gone")
        .stderr_contains("/history")
        .stderr_contains("REGENERATE_SECRETS=1")
        .run();
    assert!(!secrets.exists(), "no new secrets were made");
    assert_eq!(list_health(&site, "rc-lost"), "broken");

    // Only the RESTIC_PASSWORD line gone.
    let without: String =
        original.lines().filter(|l| !l.starts_with("RESTIC_PASSWORD=")).map(|l| format!("{l}\n")).collect();
    fs::write(&secrets, &without).unwrap();
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o600)).unwrap();
    again().status(1).stderr_contains("its secrets.env holds no RESTIC_PASSWORD").run();
    assert_eq!(fs::read_to_string(&secrets).unwrap(), without, "secrets.env unchanged");
    // And list-clients and a plain status keep saying so (not only DEEP=1).
    assert_eq!(list_health(&site, "rc-lost"), "broken");
    status_says(&site, "rc-lost", false, "secrets.env holds no RESTIC_PASSWORD");

    // A line bash would read differently (a CR at its end) is as broken.
    fs::write(&secrets, original.replacen('\n', "\r\n", 1)).unwrap();
    assert_eq!(list_health(&site, "rc-lost"), "broken");
    status_says(&site, "rc-lost", false, "secrets.env: line 1: a carriage return");
    fs::write(&secrets, &without).unwrap();

    // Asked for: new ones.
    again().env("REGENERATE_SECRETS", "1").run();
    assert!(fs::read_to_string(&secrets).unwrap().contains("RESTIC_PASSWORD="));
}
