//! Files that lie (issue 16, defects 6, 7): one hand-broken client.env fails that client
//! only, with file:line, and every other client is still checked; a client.env naming
//! another client is a FAIL.

use std::fs;

use crate::test::Site;

fn create(site: &Site, id: &str) {
    site.test()
        .args(["create-client", &format!("CLIENT_ID={id}"), "CLIENT_NAME=Files"])
        .arg(&format!("CLIENT_DOMAIN={id}.example.com"))
        .run();
}

#[test]
fn one_bad_client_env_fails_that_client_only_with_file_and_line() {
    let site = Site::new();
    for id in ["bf-good", "bf-noeq", "bf-bytes", "bf-other"] {
        create(&site, id);
    }
    let env = |id: &str| site.client_dir(id).join("client.env");
    let text = fs::read_to_string(env("bf-noeq")).unwrap();
    fs::write(env("bf-noeq"), format!("{text}a line without an equals sign\n")).unwrap();
    let line = text.lines().count() + 1;
    let mut bytes = b"CLIENT_ID='bf-bytes'\n".to_vec();
    bytes.extend_from_slice(b"CLIENT_NAME='caf\xe9'\n");
    fs::write(env("bf-bytes"), bytes).unwrap();
    let other = fs::read_to_string(env("bf-other")).unwrap().replace("CLIENT_ID='bf-other'", "CLIENT_ID='bf-good'");
    fs::write(env("bf-other"), other).unwrap();

    for fix in [false, true] {
        let mut test = site.test().arg("multi-tenancy-status").status(1);
        if fix {
            test = test.arg("FIX=1");
        }
        let output = test.run();
        let out = &output.stdout;
        let row = |id: &str| {
            out.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("no row {id}:\n{out}")).to_string()
        };
        assert!(row("bf-good").contains(" isolated ") && !row("bf-good").contains("NOT"), "{out}");
        for id in ["bf-noeq", "bf-bytes", "bf-other"] {
            assert!(row(id).contains("NOT ISOLATED") || row(id).contains("INVALID"), "{id} fails:\n{out}");
        }
        let noeq = format!("{}:{line}: expected KEY='value'", env("bf-noeq").display());
        assert!(out.contains(&noeq), "{noeq} in:\n{out}");
        let bytes = format!("{}:2: not UTF-8 text", env("bf-bytes").display());
        assert!(out.contains(&bytes), "{bytes} in:\n{out}");
        assert!(out.contains("CLIENT_ID is bf-good, not bf-other"), "{out}");
        assert!(out.contains("4 client(s): 1 isolated, 3 not"), "{out}");
    }
}

/// Defect 8: a full disk under stdout is exit 1 with a message, never a panic or exit 0 with
/// an empty file; a reader that went away is no error and no panic.
#[test]
fn write_errors_on_stdout_are_exit_1_and_never_a_panic() {
    let site = Site::new();
    create(&site, "bf-full");
    for args in [
        &["--completions", "zsh"][..],
        &["--makefile"],
        &["--json", "list-clients"],
        &["--json", "multi-tenancy-status"],
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_agency"))
            .args(args)
            .env_clear()
            .envs(site.env())
            .stdin(std::process::Stdio::null())
            .stdout(fs::OpenOptions::new().write(true).open("/dev/full").unwrap())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.code() == Some(1), "{args:?} to /dev/full: {:?}\n{stderr}", output.status);
        assert!(stderr.contains("No space left on device"), "{args:?}: {stderr}");
    }
    // `| true`: the pipe is closed before agency writes.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_agency"))
        .args(["--completions", "zsh"])
        .env_clear()
        .envs(site.env())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
}

/// Undoes `chattr +i` on drop, so a failing test leaves nothing immutable behind.
struct Immutable(Vec<std::path::PathBuf>);

impl Drop for Immutable {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::process::Command::new("chattr").arg("-i").arg(path).status();
        }
    }
}

/// Defect 14: a dry run needs no writable root: its lock files are opened read-only.
#[test]
fn a_dry_run_works_on_lock_files_it_cannot_write() {
    let site = Site::new();
    create(&site, "bf-ro");
    let locks: Vec<std::path::PathBuf> =
        fs::read_dir(site.root().join(".locks")).unwrap().flatten().map(|e| e.path()).collect();
    assert!(!locks.is_empty());
    let immutable = Immutable(locks.clone());
    for path in &immutable.0 {
        assert!(std::process::Command::new("chattr").arg("+i").arg(path).status().unwrap().success());
    }
    assert!(fs::OpenOptions::new().write(true).open(&locks[0]).is_err(), "the lock file is not writable");
    site.test()
        .args(["-n", "create-client", "CLIENT_ID=bf-ro", "CLIENT_NAME=Files", "CLIENT_DOMAIN=bf-ro.example.com"])
        .stdout_contains("nothing was changed")
        .run();
}
