//! Per-client restic backups (issue 5, SPEC §5-§7) with the real restic and, for volumes,
//! the real Docker engine: round trip byte for byte, two clients apart, retention, clear
//! errors, no password in restic's argv, status cheap and deep.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use crate::{
    create_client::{bash_value, create},
    support::docker::{Scratch, TEST_LABEL, unique},
    test::{Output, Site},
};

/// The result map of the last task of a `--json` run.
fn result(output: &Output) -> serde_json::Value {
    let json = output.json();
    json["tasks"].as_array().unwrap().last().unwrap()["result"].clone()
}

fn backup(site: &Site, id: &str) -> serde_json::Value {
    let output = site.test().args(["--json", "backup-client"]).arg(&format!("CLIENT_ID={id}")).run();
    result(&output)["backup"].clone()
}

fn repository(site: &Site, id: &str) -> PathBuf {
    site.backup_root().join(format!("client-{id}"))
}

/// Runs the real restic on a client's repository with the password from its secrets.env.
fn restic(site: &Site, id: &str, args: &[&str]) -> std::process::Output {
    Command::new("restic")
        .args(args)
        .arg("--no-cache")
        .env("RESTIC_REPOSITORY", repository(site, id))
        .env("RESTIC_PASSWORD", bash_value(&site.secrets_file(id), "RESTIC_PASSWORD"))
        .stdin(Stdio::null())
        .output()
        .expect("restic runs")
}

fn snapshots(site: &Site, id: &str) -> Vec<serde_json::Value> {
    let output = restic(site, id, &["snapshots", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Every entry below `root`: kind, mode and bytes (what "byte for byte" means to a user).
fn tree(root: &Path) -> BTreeMap<PathBuf, (u32, Option<Vec<u8>>)> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.path().symlink_metadata().unwrap();
            let contents = meta.is_file().then(|| fs::read(e.path()).unwrap());
            (e.path().strip_prefix(root).unwrap().to_path_buf(), (meta.permissions().mode() & 0o7777, contents))
        })
        .collect()
}

/// Where restore-client puts a backed-up absolute path below TARGET.
fn under(target: &Path, original: &Path) -> PathBuf {
    target.join(original.strip_prefix("/").unwrap())
}

#[test]
fn restore_of_the_first_snapshot_equals_the_original_byte_for_byte() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let config_dir = site.client_dir("acme");
    let secrets_dir = site.secrets_file("acme").parent().unwrap().to_path_buf();
    fs::create_dir_all(config_dir.join("uploads/deep")).unwrap();
    let binary: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    fs::write(config_dir.join("uploads/deep/blob.bin"), &binary).unwrap();
    fs::write(config_dir.join("uploads/empty"), b"").unwrap();
    let original_config = tree(&config_dir);
    let original_secrets = tree(&secrets_dir);

    let first = backup(&site, "acme");
    let first_id = first["snapshot"].as_str().unwrap().to_string();
    assert!(first["files"].as_i64().unwrap() >= 8, "{first}");

    fs::write(config_dir.join("uploads/deep/blob.bin"), b"changed after the first backup").unwrap();
    fs::write(config_dir.join("uploads/new"), b"new").unwrap();
    let second = backup(&site, "acme");
    assert_ne!(second["snapshot"], first["snapshot"]);
    assert_eq!(second["files_changed"], 1);
    assert_eq!(second["files_new"], 1);
    assert_eq!(snapshots(&site, "acme").len(), 2, "the default retention keeps both (within 2d)");

    let target = site.path().join("restored");
    site.test()
        .args(["restore-client", "CLIENT_ID=acme"])
        .arg(&format!("SNAPSHOT={first_id}"))
        .arg(&format!("TARGET={}", target.display()))
        .stdout_contains(&format!("snapshot {first_id}"))
        .run();
    assert_eq!(tree(&under(&target, &config_dir)), original_config, "config dir differs from the first snapshot");
    assert_eq!(tree(&under(&target, &secrets_dir)), original_secrets, "secrets differ from the first snapshot");

    // backup.log holds one result line per run, naming the snapshot.
    let log = fs::read_to_string(site.log_root().join("clients/acme/backup.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].contains(&format!("backup ok snapshot={first_id} ")), "{log}");

    // A target that holds files is refused unless FORCE=1; nothing was written there.
    let target_arg = format!("TARGET={}", target.display());
    let before = tree(&target);
    site.test()
        .args(["restore-client", "CLIENT_ID=acme"])
        .arg(&target_arg)
        .status(1)
        .stderr_contains("is not empty")
        .stderr_contains("FORCE=1")
        .run();
    assert_eq!(tree(&target), before);
    site.test().args(["restore-client", "CLIENT_ID=acme", "FORCE=1"]).arg(&target_arg).run();
    let blob = under(&target, &config_dir).join("uploads/deep/blob.bin");
    assert_eq!(fs::read(blob).unwrap(), b"changed after the first backup", "latest restored over it");

    // An unknown snapshot names the ones there are.
    site.test()
        .args(["restore-client", "CLIENT_ID=acme", "SNAPSHOT=abcdef12"])
        .arg(&format!("TARGET={}", site.path().join("elsewhere").display()))
        .status(1)
        .stderr_contains("snapshot abcdef12 is not in the repository of acme")
        .run();
}

#[test]
fn retention_keeps_what_the_policy_says() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let config = site.client_dir("acme").join("backup/config.sh");
    let text = fs::read_to_string(&config).unwrap();
    let edited: String = text
        .lines()
        .map(|line| match line.split_once('=').map(|(k, _)| k) {
            Some("KEEP_LAST") => "KEEP_LAST='2'".to_string(),
            Some("KEEP_DAILY" | "KEEP_WEEKLY" | "KEEP_MONTHLY" | "KEEP_WITHIN") => {
                format!("{}=''", line.split_once('=').unwrap().0)
            }
            _ => line.to_string(),
        })
        .map(|line| line + "\n")
        .collect();
    fs::write(&config, edited).unwrap();

    let mut made = Vec::new();
    for round in 0..4 {
        fs::write(site.client_dir("acme").join("round"), format!("{round}")).unwrap();
        made.push(backup(&site, "acme")["snapshot"].as_str().unwrap().to_string());
    }
    let kept: Vec<String> =
        snapshots(&site, "acme").iter().map(|s| s["short_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(kept, made[2..], "KEEP_LAST=2 keeps the two newest");

    // A snapshot without the policy's tags is not the runner's to forget.
    let manual = restic(&site, "acme", &["backup", "--tag", "manual", &site.client_dir("acme").display().to_string()]);
    assert!(manual.status.success());
    let output = site.test().args(["backup-client", "CLIENT_ID=acme"]).stdout_contains("removed").run();
    assert!(output.stdout.contains("1 snapshot(s) to remove"), "{}", output.stdout);
    assert_eq!(snapshots(&site, "acme").len(), 3, "two of the runner's and the manual one");

    // Re-running create-client keeps the operator's policy.
    create(&site, "acme", "ACME");
    assert_eq!(bash_value(&config, "KEEP_LAST"), "2");
    assert_eq!(bash_value(&config, "KEEP_DAILY"), "");
}

/// Holds an exclusive lock on a repository: `restic key passwd` locks, then waits forever
/// for its new password from a FIFO nobody writes to.
struct LockHolder(Child);

impl LockHolder {
    fn hold(site: &Site, id: &str) -> Self {
        let fifo = site.path().join("never-written");
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let child = Command::new("restic")
            .args(["key", "passwd", "--no-cache", "--new-password-file"])
            .arg(&fifo)
            .env("RESTIC_REPOSITORY", repository(site, id))
            .env("RESTIC_PASSWORD", bash_value(&site.secrets_file(id), "RESTIC_PASSWORD"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let holder = Self(child);
        for _ in 0..600 {
            if fs::read_dir(repository(site, id).join("locks")).unwrap().next().is_some() {
                return holder;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("restic key passwd did not take its lock");
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn wrong_password_missing_and_locked_repositories_each_fail_clearly() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let run = || site.test().args(["backup-client", "CLIENT_ID=acme"]).status(1);

    // Locked by a live restic process.
    {
        let _holder = LockHolder::hold(&site, "acme");
        let output = run().stderr_contains("is locked by another process").stderr_contains("restic unlock").run();
        assert_eq!(output.stderr.trim_end().lines().count(), 1, "one line: {}", output.stderr);
    }
    restic(&site, "acme", &["unlock"]);

    // The password on disk does not open the repository.
    let secrets = site.secrets_file("acme");
    let original = fs::read_to_string(&secrets).unwrap();
    let right = bash_value(&secrets, "RESTIC_PASSWORD");
    fs::write(&secrets, original.replace(&right, "not-the-password")).unwrap();
    let output = run().stderr_contains("the password does not open the restic repository at").run();
    assert!(!output.stderr.contains("not-the-password"), "{}", output.stderr);
    let deep = ["create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com", "DEEP=1"];
    site.test().args(deep).status(1).stderr_contains("the password does not open").run();
    fs::write(&secrets, &original).unwrap();
    site.test().arg("-v").args(deep).stdout_contains("unchanged    restic open").run();

    // No repository at all.
    fs::rename(repository(&site, "acme"), site.path().join("moved-away")).unwrap();
    run().stderr_contains("there is no restic repository at").stderr_contains("client-acme").run();
    site.test()
        .args(["verify-backup", "CLIENT_ID=acme"])
        .status(1)
        .stdout_contains("acme: FAILED: there is no restic repository")
        .run();

    // No restic at all: what to install.
    let empty = site.path().join("empty-path");
    fs::create_dir_all(&empty).unwrap();
    run()
        .env("PATH", &empty.display().to_string())
        .stderr_contains("`restic` was not found on PATH; install it with `apt-get install restic`")
        .run();

    // Every failed run left its line in backup.log.
    let log = fs::read_to_string(site.log_root().join("clients/acme/backup.log")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains(" backup failed ")).count(), 4, "{log}");
}

#[test]
fn restic_never_sees_a_password_in_its_arguments() {
    let site = Site::new();
    let shims = site.path().join("shims");
    fs::create_dir_all(&shims).unwrap();
    let real = which::which("restic").expect("restic is installed");
    let log = site.path().join("restic-argv.log");
    let shim = shims.join("restic");
    fs::write(
        &shim,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"--- $(date +%s)\" \"$@\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).unwrap();
    // In front of the site's PATH (its fake docker first), not the system's: this test must not
    // create networks on the real engine.
    let site_path = site.env().into_iter().find(|(key, _)| key == "PATH").map(|(_, value)| value).unwrap();
    let path = format!("{}:{site_path}", shims.display());

    let with_shim = |args: &[&str]| {
        let test = site.test().env("PATH", &path).args(args);
        test.run()
    };
    with_shim(&["create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com", "DEEP=1"]);
    let verbose = with_shim(&["-v", "backup-client", "CLIENT_ID=acme"]);
    assert!(verbose.stderr.contains("restic backup acme: "), "-v shows restic's progress:\n{}", verbose.stderr);
    with_shim(&["restore-client", "CLIENT_ID=acme", &format!("TARGET={}", site.path().join("r").display())]);
    with_shim(&["verify-backup", "CLIENT_ID=acme"]);

    let argv = fs::read_to_string(&log).unwrap();
    for command in ["init", "cat", "backup", "forget", "snapshots", "restore", "check"] {
        assert!(argv.lines().any(|l| l == command), "restic {command} went through the shim:\n{argv}");
    }
    let secrets = fs::read_to_string(site.secrets_file("acme")).unwrap();
    let values = agency::format::envfile::parse(&secrets).unwrap();
    assert!(values.contains_key("RESTIC_PASSWORD"));
    for (key, value) in &values {
        assert!(!argv.contains(value.as_str()), "{key} appears in restic's argv");
    }
}

#[test]
fn dry_runs_change_nothing() {
    let site = Site::new();
    let create_args = ["create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"];
    site.test().arg("-n").args(create_args).stdout_contains("would create restic init").run();
    assert!(!repository(&site, "acme").exists(), "a dry run initialized the repository");

    create(&site, "acme", "ACME");
    let before = site.snapshot();
    site.test()
        .args(["-n", "backup-client", "CLIENT_ID=acme"])
        .stdout_contains("would create restic backup")
        .stdout_contains("2 path(s)")
        .run();
    site.test()
        .args(["-n", "restore-client", "CLIENT_ID=acme"])
        .arg(&format!("TARGET={}", site.path().join("r").display()))
        .status(1)
        .stderr_contains("holds no snapshot yet")
        .run();
    assert_eq!(site.snapshot(), before, "a dry run changed files");

    backup(&site, "acme");
    let before = site.snapshot();
    site.test()
        .args(["-n", "restore-client", "CLIENT_ID=acme"])
        .arg(&format!("TARGET={}", site.path().join("r").display()))
        .stdout_contains("would create restic restore")
        .run();
    assert_eq!(site.snapshot(), before);
}

/// A site task that returns `restic::status` of every client, for the status checks.
fn status(site: &Site, deep: bool) -> Vec<serde_json::Value> {
    site.site_file(
        "tasks/backup-status-probe.toml",
        "description = \"probe\"\nlock = \"none\"\nscript = 'restic::status(layout::clients(), DEEP)'\n\n\
         [vars.DEEP]\ndefault = \"0\"\nkind = \"bool\"\n",
    );
    let output = site.test().args(["--json", "backup-status-probe"]).arg(if deep { "DEEP=1" } else { "DEEP=0" }).run();
    result(&output).as_array().unwrap().clone()
}

#[test]
fn status_is_cheap_by_default_and_opens_repositories_when_deep() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    create(&site, "beta", "Beta");
    backup(&site, "acme");

    let cheap = status(&site, false);
    let by_client = |all: &[serde_json::Value], id: &str| all.iter().find(|s| s["client"] == id).unwrap().clone();
    let acme = by_client(&cheap, "acme");
    assert_eq!(
        (acme["level"].as_str(), acme["snapshots"].as_i64(), acme["deep"].as_bool()),
        (Some("ok"), Some(1), Some(false))
    );
    assert!(acme["age_seconds"].as_i64().unwrap() < 3600);
    let beta = by_client(&cheap, "beta");
    assert_eq!(beta["level"], "warning");
    assert_eq!(beta["message"], "no snapshot yet");

    // A wrong password is invisible to the cheap check and a problem to the deep one.
    let secrets = site.secrets_file("beta");
    let text = fs::read_to_string(&secrets).unwrap();
    fs::write(&secrets, text.replace(&bash_value(&secrets, "RESTIC_PASSWORD"), "wrong")).unwrap();
    assert_eq!(by_client(&status(&site, false), "beta")["level"], "warning");
    let deep = status(&site, true);
    let beta = by_client(&deep, "beta");
    assert_eq!(beta["level"], "problem");
    assert!(beta["message"].as_str().unwrap().contains("the password does not open"), "{beta}");
    let acme = by_client(&deep, "acme");
    assert_eq!(
        (acme["level"].as_str(), acme["snapshots"].as_i64(), acme["deep"].as_bool()),
        (Some("ok"), Some(1), Some(true))
    );

    // A missing repository is a problem to both.
    fs::remove_dir_all(repository(&site, "acme")).unwrap();
    let acme = by_client(&status(&site, false), "acme");
    assert_eq!(acme["level"], "problem");
    assert!(acme["message"].as_str().unwrap().starts_with("no restic repository at "), "{acme}");
}

#[test]
fn each_client_repository_holds_only_its_own_data_and_volumes() {
    let docker = crate::require_docker!();
    let scratch = Scratch::new(&docker);
    let site = Site::with_docker();
    // Unique ids (networks and volumes are engine-wide); `<id>2` has `<id>` as a prefix.
    let one = scratch.client(&unique("bk"));
    let two = scratch.client(&format!("{one}2"));
    let mountpoint = |name: &str| -> PathBuf {
        PathBuf::from(scratch.docker(&["volume", "inspect", "--format", "{{.Mountpoint}}", name]).trim())
    };
    for id in [&one, &two] {
        let name = scratch.volume(&format!("{id}_data"));
        let label = format!("agency.client={id}");
        scratch.docker(&["volume", "create", "--label", &label, "--label", &format!("{TEST_LABEL}=backup"), &name]);
    }
    let volumes_readable = mountpoint(&format!("{one}_data")).is_dir();
    if !volumes_readable {
        crate::support::loud_skip("volume data: not readable here (not root?); volume backups untested");
    }

    for id in [&one, &two] {
        create(&site, id, "Tenant");
        fs::write(site.client_dir(id).join("marker"), format!("data of {id}")).unwrap();
        let config = site.client_dir(id).join("backup/config.sh");
        if volumes_readable {
            fs::write(mountpoint(&format!("{id}_data")).join("db.sql"), format!("rows of {id}")).unwrap();
        } else {
            let text = fs::read_to_string(&config).unwrap();
            fs::write(&config, text.replace("BACKUP_VOLUMES='1'", "BACKUP_VOLUMES='0'")).unwrap();
        }
    }
    for id in [&one, &two] {
        let result = backup(&site, id);
        if volumes_readable {
            assert_eq!(result["volumes"], serde_json::json!([format!("{id}_data")]), "only its own volume");
        }
    }

    // Component-wise comparisons: `bk…2` must not count as inside `bk…`.
    let own_paths = |id: &str| -> Vec<PathBuf> {
        let mut paths = vec![site.client_dir(id), site.secrets_file(id).parent().unwrap().to_path_buf()];
        if volumes_readable {
            paths.push(mountpoint(&format!("{id}_data")));
        }
        paths
    };
    for (id, other) in [(&one, &two), (&two, &one)] {
        let list = snapshots(&site, id);
        assert_eq!(list.len(), 1);
        let mut paths: Vec<PathBuf> =
            list[0]["paths"].as_array().unwrap().iter().map(|p| PathBuf::from(p.as_str().unwrap())).collect();
        paths.sort();
        let mut expected = own_paths(id);
        expected.sort();
        assert_eq!(paths, expected, "the snapshot of {id} holds exactly its own directories and volumes");

        let target = site.path().join(format!("restore-{id}"));
        site.test()
            .args(["restore-client"])
            .arg(&format!("CLIENT_ID={id}"))
            .arg(&format!("TARGET={}", target.display()))
            .run();
        let restored = tree(&target);
        assert!(restored.contains_key(&under(Path::new(""), &site.client_dir(id).join("marker"))));
        for foreign in own_paths(other) {
            let foreign = under(Path::new(""), &foreign);
            assert!(!restored.keys().any(|k| k.starts_with(&foreign)), "{id}'s restore holds {}", foreign.display());
        }
        if volumes_readable {
            let sql = under(&target, &mountpoint(&format!("{id}_data"))).join("db.sql");
            assert_eq!(fs::read_to_string(sql).unwrap(), format!("rows of {id}"));
        }
        // The other client's password does not open this repository.
        let wrong = Command::new("restic")
            .args(["cat", "config", "--no-cache"])
            .env("RESTIC_REPOSITORY", repository(&site, id))
            .env("RESTIC_PASSWORD", bash_value(&site.secrets_file(other), "RESTIC_PASSWORD"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!wrong.status.success(), "{id}'s repository opens with {other}'s password");
    }

    // verify-backup checks every client and test-restores a sample of each.
    let output = site.test().args(["verify-backup"]).run();
    for id in [&one, &two] {
        assert!(output.stdout.contains(&format!("{id}: ok: 1 snapshot(s); check ok")), "{}", output.stdout);
    }
}

#[test]
fn multi_tenancy_status_reports_each_clients_backups() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let status = |deep: bool| {
        let output = site
            .test()
            .args(["--json", "multi-tenancy-status", "CLIENT_ID=acme"])
            .arg(if deep { "DEEP=1" } else { "DEEP=0" })
            .run_unchecked();
        let report = crate::support::docker::report(&output.json(), "acme").clone();
        assert_eq!(report["verdict"], "isolated", "backups are the client's health, not its isolation");
        assert_eq!(report["healthy"], report["health"] != "FAIL");
        (output.status, crate::support::docker::check(&report, "backup").clone())
    };
    let (code, check) = status(false);
    assert_eq!((code, check["status"].as_str(), check["summary"].as_str()), (0, Some("warn"), Some("no snapshot yet")));

    backup(&site, "acme");
    let (code, check) = status(true);
    assert_eq!((code, check["status"].as_str()), (0, Some("ok")), "{check}");
    assert_eq!(check["evidence"]["snapshots"], 1);
    assert_eq!(check["evidence"]["deep"], true);

    // The password on disk no longer opens the repository: only the deep check can tell.
    let secrets = site.secrets_file("acme");
    let text = fs::read_to_string(&secrets).unwrap();
    fs::write(&secrets, text.replace(&bash_value(&secrets, "RESTIC_PASSWORD"), "wrong")).unwrap();
    assert_eq!(status(false).1["status"], "ok");
    // A failing health check: reported, and the exit status stays 0 (isolation is intact).
    let (code, check) = status(true);
    assert_eq!((code, check["status"].as_str()), (0, Some("fail")), "{check}");
    assert!(check["summary"].as_str().unwrap().contains("the password does not open"), "{check}");
}
