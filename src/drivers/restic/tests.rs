//! The restic driver against real local repositories in temp dirs (Debian's restic 0.14).
//! `init` costs ≈ 2.5 s of key derivation, so each test initializes one repository and
//! makes several independent assertions on it.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::{PermissionsExt, symlink},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, UNIX_EPOCH},
};

use tempfile::TempDir;

use super::*;

fn restic() -> Restic {
    Restic::locate().expect("restic is required for these tests (apt-get install restic)")
}

fn password(value: &str) -> Password {
    Password::new(value).unwrap()
}

/// A temp dir with an initialized repository in `repo/` and room for data next to it.
struct Fixture {
    dir: TempDir,
    repo: Repo,
}

impl Fixture {
    fn new(restic: &Restic, secret: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = restic.repo(Location::Local(dir.path().join("repo")), password(secret));
        assert!(repo.ensure_initialized().unwrap(), "a fresh repository is created");
        Self { dir, repo }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn with_password(&self, secret: &str) -> Repo {
        restic().repo(self.repo.location().clone(), password(secret))
    }
}

/// What a user compares after a restore: every entry's kind, mode, bytes or link target.
#[derive(Debug, PartialEq)]
enum Entry {
    Dir(u32),
    File(u32, Vec<u8>),
    Link(PathBuf),
}

fn tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|entry| {
            let entry = entry.unwrap();
            let metadata = entry.path().symlink_metadata().unwrap();
            let mode = metadata.permissions().mode() & 0o7777;
            let relative = entry.path().strip_prefix(root).unwrap().to_path_buf();
            let value = if metadata.file_type().is_symlink() {
                Entry::Link(fs::read_link(entry.path()).unwrap())
            } else if metadata.is_dir() {
                Entry::Dir(mode)
            } else {
                Entry::File(mode, fs::read(entry.path()).unwrap())
            };
            (relative, value)
        })
        .collect()
}

/// A small client-like tree: text, binary, empty, nested, a 0600 file and a symlink.
fn write_data(root: &Path) {
    fs::create_dir_all(root.join("keycloak/nested")).unwrap();
    fs::write(root.join("client.env"), "CLIENT_ID='acme'\nCLIENT_NAME='ACME \"Corp\"'\n").unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    let binary: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(root.join("keycloak/nested/blob.bin"), &binary).unwrap();
    fs::write(root.join("secrets.env"), "RESTIC_PASSWORD='x'\n").unwrap();
    fs::set_permissions(root.join("secrets.env"), fs::Permissions::from_mode(0o600)).unwrap();
    symlink("client.env", root.join("current.env")).unwrap();
}

#[test]
fn backup_change_restore_round_trip() {
    let restic = restic();
    let dir = tempfile::tempdir().unwrap();
    let location = Location::Local(dir.path().join("repo"));

    // Cheap checks before the repository exists.
    assert_eq!(location.is_initialized(), Some(false));
    let missing = location.snapshot_files().unwrap_err();
    assert!(matches!(ResticError::of(&missing), Some(ResticError::RepositoryMissing { .. })));

    let repo = restic.repo(location.clone(), password("first-password"));
    assert!(repo.ensure_initialized().unwrap());
    assert_eq!(location.is_initialized(), Some(true));
    assert_eq!(location.snapshot_files().unwrap(), (0, None));
    // Already initialized: answered from the config file, restic is not even run.
    let absent_program = Restic::with_program("/nonexistent/restic");
    let untouched = absent_program.repo(location.clone(), password("first-password"));
    assert!(!untouched.ensure_initialized().unwrap());
    let again = repo.init().unwrap_err();
    assert!(matches!(ResticError::of(&again), Some(ResticError::AlreadyInitialized { .. })), "{again}");

    let data = dir.path().join("data");
    write_data(&data);
    let original = tree(&data);
    let request = BackupRequest {
        paths: vec![data.clone()],
        tags: vec!["agency".into(), "client-acme".into()],
        ..BackupRequest::default()
    };
    let mut progress = Vec::new();
    let first = repo.backup(&request, |status| progress.push(status.clone())).unwrap();
    assert!(!first.snapshot_id.is_empty());
    assert_eq!(first.files_new, 4, "regular files of the tree: {first:?}");
    assert!(first.total_bytes_processed > 300_000);
    assert!(!progress.is_empty(), "restic --json status lines reach the callback");
    assert!(progress.iter().all(|p| (0.0..=1.0).contains(&p.percent_done)));
    let (count, newest) = location.snapshot_files().unwrap();
    assert_eq!(count, 1);
    let after_first = newest.expect("a snapshot file");

    // Change the live data and back up again.
    fs::write(data.join("client.env"), "CLIENT_ID='acme'\nCLIENT_NAME='changed'\n").unwrap();
    fs::write(data.join("new-file"), "added later").unwrap();
    fs::remove_file(data.join("empty")).unwrap();
    let second = repo.backup(&request, |_| {}).unwrap();
    assert_eq!((second.files_new, second.files_changed), (1, 1), "{second:?}");
    let (count, newest) = location.snapshot_files().unwrap();
    assert_eq!(count, 2);
    assert!(newest.unwrap() >= after_first);

    let snapshots = repo.snapshots(&[]).unwrap();
    let ids: Vec<&str> = snapshots.iter().map(|s| s.short_id.as_str()).collect();
    assert_eq!(ids, [first.snapshot_id.as_str(), second.snapshot_id.as_str()]);
    assert_eq!(snapshots[0].paths, std::slice::from_ref(&data));
    assert_eq!(snapshots[0].tags, ["agency", "client-acme"]);
    assert!(snapshots[0].system_time().unwrap() <= snapshots[1].system_time().unwrap());
    assert_eq!(repo.snapshots(&["client-acme".into()]).unwrap().len(), 2);
    assert_eq!(repo.snapshots(&["agency".into(), "client-acme".into()]).unwrap().len(), 2);
    assert!(repo.snapshots(&["client-acme2".into()]).unwrap().is_empty());
    assert!(repo.snapshots(&["agency".into(), "client-acme2".into()]).unwrap().is_empty(), "all tags must match");

    // The first snapshot restores byte for byte, modes and links included.
    let target = dir.path().join("restored");
    repo.restore(&first.snapshot_id, &target, &[]).unwrap();
    let restored_root = target.join(data.strip_prefix("/").unwrap());
    assert_eq!(tree(&restored_root), original);

    // `latest` with an include filter restores just that file, as it is now.
    let partial = dir.path().join("partial");
    let include = data.join("client.env").to_string_lossy().into_owned();
    repo.restore("latest", &partial, &[include]).unwrap();
    let partial_root = partial.join(data.strip_prefix("/").unwrap());
    let files: Vec<PathBuf> = tree(&partial_root)
        .into_iter()
        .filter(|(_, entry)| matches!(entry, Entry::File(..)))
        .map(|(path, _)| path)
        .collect();
    assert_eq!(files, [PathBuf::from("client.env")]);
    assert_eq!(
        fs::read_to_string(partial_root.join("client.env")).unwrap(),
        "CLIENT_ID='acme'\nCLIENT_NAME='changed'\n"
    );

    repo.check(Some("100%")).unwrap();
    repo.check(None).unwrap();
}

#[test]
fn retention_keeps_what_the_policy_says() {
    let restic = restic();
    let fixture = Fixture::new(&restic, "retention-password");
    let data = fixture.path("data");
    fs::create_dir_all(&data).unwrap();
    let tagged = |tag: &str| BackupRequest {
        paths: vec![data.clone()],
        tags: vec![tag.to_string()],
        ..BackupRequest::default()
    };
    let mut scheduled = Vec::new();
    for round in 0..4 {
        fs::write(data.join("file"), format!("round {round}")).unwrap();
        scheduled.push(fixture.repo.backup(&tagged("scheduled"), |_| {}).unwrap().snapshot_id);
    }
    let manual = fixture.repo.backup(&tagged("manual"), |_| {}).unwrap().snapshot_id;

    let policy = Retention { keep_last: Some(2), tags: vec!["scheduled".into()], ..Retention::default() };
    let plan = fixture.repo.forget_plan(&policy).unwrap();
    assert_eq!(plan.removed.len(), 2);
    assert_eq!(fixture.repo.snapshots(&[]).unwrap().len(), 5, "a plan changes nothing");
    let report = fixture.repo.forget(&policy, true).unwrap();
    let short = |snapshots: &[BackupSnapshot]| snapshots.iter().map(|s| s.short_id.clone()).collect::<Vec<_>>();
    assert_eq!(short(&report.removed), scheduled[..2]);
    assert_eq!(short(&report.kept), scheduled[2..]);

    let remaining = short(&fixture.repo.snapshots(&[]).unwrap());
    assert_eq!(remaining, [scheduled[2].clone(), scheduled[3].clone(), manual], "other tags are left alone");
    // Pruned data is really gone and what is left is consistent.
    fixture.repo.check(Some("100%")).unwrap();

    let nothing = fixture.repo.forget(&Retention::default(), true).unwrap_err();
    assert!(nothing.to_string().contains("keeps nothing"), "{nothing}");
}

/// Holds an exclusive lock on a repository: `restic key passwd` locks exclusively and
/// then waits to read the new password from a FIFO nobody writes to.
struct LockHolder(Child);

impl LockHolder {
    fn hold(fixture: &Fixture, secret: &str) -> Self {
        let fifo = fixture.path("never-written");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success());
        let restic = process::locate("restic", "").unwrap();
        let child = std::process::Command::new(restic)
            .args(["key", "passwd", "--no-cache", "--new-password-file"])
            .arg(&fifo)
            .env("RESTIC_REPOSITORY", fixture.path("repo"))
            .env("RESTIC_PASSWORD", secret)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let holder = Self(child);
        let locks = fixture.path("repo/locks");
        for _ in 0..600 {
            // A finished lock (its 64-hex name), not restic's temp file of one it is writing.
            if fs::read_dir(&locks).unwrap().flatten().any(|e| e.file_name().len() == 64) {
                return holder;
            }
            std::thread::sleep(Duration::from_millis(20));
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
fn failures_are_classified() {
    let restic = restic();

    // Missing repository: no init needed.
    let dir = tempfile::tempdir().unwrap();
    let missing = restic.repo(Location::Local(dir.path().join("nothing-here")), password("pw"));
    let error = missing.snapshots(&[]).unwrap_err();
    assert!(matches!(ResticError::of(&error), Some(ResticError::RepositoryMissing { .. })), "{error:?}");
    assert!(error.to_string().starts_with("there is no restic repository at "), "{error}");
    assert!(error.to_string().contains("nothing-here"));

    let fixture = Fixture::new(&restic, "right-password");
    let data = fixture.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("file"), "content").unwrap();

    // Wrong password, on every kind of operation.
    let wrong = fixture.with_password("wrong-password");
    for error in [
        wrong.open().unwrap_err(),
        wrong.snapshots(&[]).unwrap_err(),
        wrong.backup(&BackupRequest { paths: vec![data.clone()], ..Default::default() }, |_| {}).unwrap_err(),
    ] {
        assert!(matches!(ResticError::of(&error), Some(ResticError::WrongPassword { .. })), "{error:?}");
        assert!(!error.to_string().contains("wrong-password"), "no password in messages");
    }
    fixture.repo.open().unwrap();

    // Unknown snapshot; `latest` of an empty repository.
    let target = fixture.path("target");
    for snapshot in ["deadbeef", "latest"] {
        let error = fixture.repo.restore(snapshot, &target, &[]).unwrap_err();
        assert!(matches!(ResticError::of(&error), Some(ResticError::SnapshotNotFound { .. })), "{error:?}");
    }
    assert!(fixture.repo.restore("--help", &target, &[]).is_err(), "not passed as a flag");

    // Locked exclusively by a live process.
    {
        let _holder = LockHolder::hold(&fixture, "right-password");
        let error = fixture
            .repo
            .backup(&BackupRequest { paths: vec![data.clone()], ..Default::default() }, |_| {})
            .unwrap_err();
        match ResticError::of(&error) {
            Some(ResticError::Locked { holder, .. }) => assert!(holder.contains("PID"), "{holder}"),
            other => panic!("expected Locked, got {other:?}: {error}"),
        }
        assert!(error.to_string().contains("restic unlock"), "{error}");
    }
    // The holder was killed: its lock is stale, and unlock removes it.
    fixture.repo.unlock().unwrap();

    // Partial backup (exit 3): the snapshot is written, the unreadable item is named.
    // Reading /proc/self/mem at offset 0 fails with EIO, even for root.
    let request = BackupRequest { paths: vec![data.clone(), PathBuf::from("/proc/self/mem")], ..Default::default() };
    let error = fixture.repo.backup(&request, |_| {}).unwrap_err();
    match ResticError::of(&error) {
        Some(ResticError::PartialBackup { summary, unreadable, .. }) => {
            assert_eq!(unreadable, &["/proc/self/mem"]);
            let snapshots = fixture.repo.snapshots(&[]).unwrap();
            assert_eq!(snapshots.len(), 1);
            assert_eq!(snapshots[0].short_id, summary.snapshot_id);
        }
        other => panic!("expected PartialBackup, got {other:?}: {error}"),
    }
}

/// A shim on the program path that logs every argument, then runs the real restic.
fn logging_shim(dir: &Path) -> (Restic, PathBuf) {
    let real = process::locate("restic", "").unwrap();
    let log = dir.join("argv.log");
    let shim = dir.join("restic");
    fs::write(
        &shim,
        format!(
            "#!/bin/sh\nfor arg in \"$@\"; do printf '%s\\n' \"$arg\" >> '{}'; done\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).unwrap();
    (Restic::with_program(shim), log)
}

#[test]
fn keys_rotate_and_passwords_stay_out_of_argv() {
    let dir = tempfile::tempdir().unwrap();
    let (restic, log) = logging_shim(dir.path());
    let old_secret = "old-secret-Zq8w";
    let new_secret = "new-secret-Kp3x";
    let location = Location::Local(dir.path().join("repo"));
    let old = restic.repo(location.clone(), password(old_secret));
    let new = restic.repo(location.clone(), password(new_secret));
    old.ensure_initialized().unwrap();

    let data = dir.path().join("data");
    write_data(&data);
    let before = old.backup(&BackupRequest { paths: vec![data.clone()], ..Default::default() }, |_| {}).unwrap();

    let keys = old.key_list().unwrap();
    assert_eq!(keys.len(), 1);
    let old_id = keys[0].id.clone();
    assert!(keys[0].current);

    old.key_add(&password(new_secret), dir.path()).unwrap();
    let keys = new.key_list().unwrap();
    assert_eq!(keys.len(), 2);
    let current: Vec<&Key> = keys.iter().filter(|key| key.current).collect();
    assert_eq!(current.len(), 1);
    assert_ne!(current[0].id, old_id, "the new password opens the new key");
    old.open().unwrap();

    let refused = old.key_remove(&old_id).unwrap_err();
    assert!(refused.to_string().contains("key remove"), "{refused}");
    new.key_remove(&old_id).unwrap();
    let error = old.open().unwrap_err();
    assert!(matches!(ResticError::of(&error), Some(ResticError::WrongPassword { .. })), "{error:?}");
    assert_eq!(new.key_list().unwrap().len(), 1);

    // A snapshot made before the rotation restores with the new password.
    let target = dir.path().join("restored");
    new.restore(&before.snapshot_id, &target, &[]).unwrap();
    assert_eq!(tree(&target.join(data.strip_prefix("/").unwrap())), tree(&data));

    // Nothing secret was ever an argument; the new password went through a file that
    // is gone again.
    let argv = fs::read_to_string(&log).unwrap();
    assert!(argv.contains("key\nadd\n"), "the shim saw the calls:\n{argv}");
    for secret in [old_secret, new_secret] {
        assert!(!argv.contains(secret), "password in argv:\n{argv}");
    }
    assert!(!argv.contains(&location.to_string()), "the repository goes by environment too");
    let password_file =
        argv.lines().find_map(|line| line.strip_prefix("--new-password-file=")).expect("key add got a password file");
    assert!(!Path::new(password_file).exists(), "the temporary password file was removed");
}

#[test]
fn new_password_file_is_private_and_a_stale_one_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join(".restic-new-key.AbC123.tmp");
    fs::write(&stale, "left by a kill").unwrap();
    let file = crate::fsutil::secret_temp_file(dir.path(), NEW_KEY_FILE, b"s3cret").unwrap();
    assert!(!stale.exists(), "the temp file a killed run left is removed");
    assert_eq!(file.path().parent(), Some(dir.path()));
    let metadata = file.path().metadata().unwrap();
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::read_to_string(file.path()).unwrap(), "s3cret", "no trailing newline");
}

#[test]
fn client_locations() {
    assert_eq!(Location::parse("local:/srv/r"), Location::Local(PathBuf::from("/srv/r")));

    let remote = Location::parse("rest:https://agency:hunter2@backup.example.com:8000/client-acme");
    assert_eq!(remote.to_string(), "rest:https://agency:***@backup.example.com:8000/client-acme");
    assert_eq!(remote.is_initialized(), None, "remote repositories are only checked deep");
    assert!(remote.snapshot_files().is_err());
    assert_eq!(Location::parse("sftp:user@host:/srv/r").to_string(), "sftp:user@host:/srv/r");
}

#[test]
fn passwords_are_redacted_and_validated() {
    assert_eq!(format!("{:?}", password("visible?")), "Password(<redacted>)");
    assert!(Password::new("").is_err());
    assert!(Password::new(" padded").is_err());
}

#[test]
fn arguments_are_validated() {
    assert!(tag_arg("a,b").is_err());
    assert!(tag_arg("").is_err());
    assert_eq!(tag_arg("client-acme").unwrap(), "--tag=client-acme");
    assert!(check_snapshot_id("latest").is_ok());
    assert!(check_snapshot_id("26decc85").is_ok());
    assert!(check_snapshot_id("-x").is_err());
    let policy = Retention {
        keep_daily: Some(7),
        keep_weekly: Some(4),
        keep_within: Some("30d".into()),
        ..Retention::default()
    };
    assert_eq!(policy.args().unwrap(), ["--keep-daily=7", "--keep-weekly=4", "--keep-within=30d", "--group-by="]);
    let bad = Retention { keep_within: Some("--prune".into()), ..Retention::default() };
    assert!(bad.args().is_err());
}

#[test]
fn stderr_is_read_into_one_line() {
    let locked = "unable to create lock in backend: repository is already locked exclusively by PID 8277 on vm by root (UID 0, GID 0)\nlock was created at ...";
    assert_eq!(lock_holder(locked), "exclusively by PID 8277 on vm by root");
    assert_eq!(error_line("\nFatal: something broke\nmore"), "something broke");
    assert_eq!(error_line("invalid id \"x\": no matching ID"), "invalid id \"x\": no matching ID");
    let stderr = "{\"message_type\":\"error\",\"error\":{\"Op\":\"read\"},\"during\":\"archival\",\"item\":\"/a b\"}\nWarning: at least one source file could not be read\n";
    assert_eq!(unreadable_items(stderr), ["/a b"]);
    assert_eq!(message_type("{\"message_type\":\"status\",\"percent_done\":0}"), Some("status"));
}

#[test]
fn rfc3339_times_with_offsets() {
    let utc = parse_rfc3339("2026-11-27T12:25:21.791379322Z").unwrap();
    let offset = parse_rfc3339("2026-11-27T14:25:21.791379322+02:00").unwrap();
    let negative = parse_rfc3339("2026-11-27T07:55:21.791379322-04:30").unwrap();
    assert_eq!(utc, offset);
    assert_eq!(utc, negative);
    assert_eq!(utc.duration_since(UNIX_EPOCH).unwrap().subsec_nanos(), 791_379_322);
    assert!(parse_rfc3339("2026-11-27 12:25").is_err());
}
