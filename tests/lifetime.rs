//! Children inside agency's lifetime (issue 16, defects 2, 4, 13, 15): a killed agency takes
//! its children with it; SIGINT and SIGTERM are forwarded to the running child, awaited, and
//! end the run with an audit line `interrupted` and exit 130 / 143; a task's timeout stops a
//! child at the deadline. The child is a shim in front of the real restic (or docker) that
//! records its pid and the signals it gets, and waits where the test wants it to.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    support::state::temp_files,
    test::{Site, audit_lines},
};

/// A shim dir in front of the site's PATH holding `program`: for a command line containing
/// ` when ` it writes its pid to `pid`, traps SIGINT/SIGTERM into `signals` and waits a
/// minute; anything else runs the real program.
fn shim(site: &Site, program: &str, when: &str) -> String {
    let dir = site.path().join("shims");
    fs::create_dir_all(&dir).unwrap();
    let real = which::which(program).map(|p| p.display().to_string()).unwrap_or_else(|_| program.to_string());
    let marks = site.path().display().to_string();
    let script = format!(
        "#!/bin/sh\ncase \" $* \" in *' {when} '*)\n  \
         trap 'echo INT >> \"{marks}/signals\"; kill $sleeper; exit 130' INT\n  \
         trap 'echo TERM >> \"{marks}/signals\"; kill $sleeper; exit 143' TERM\n  \
         sleep 60 & sleeper=$!\n  echo $$ > \"{marks}/pid.tmp\" && mv \"{marks}/pid.tmp\" \"{marks}/pid\"\n  \
         wait $sleeper; exit 0;;\nesac\nexec '{real}' \"$@\"\n"
    );
    let path = dir.join(program);
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    let site_path = site.env().into_iter().find(|(key, _)| key == "PATH").map(|(_, value)| value).unwrap();
    format!("{}:{site_path}", dir.display())
}

fn spawn(site: &Site, path: &str, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_agency"))
        .args(args)
        .env_clear()
        .envs(site.env())
        .env("PATH", path)
        .current_dir(site.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The pid the shim wrote once it is waiting (at most 60 s).
fn shim_pid(site: &Site) -> i32 {
    let file = site.path().join("pid");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Ok(text) = fs::read_to_string(&file) {
            return text.trim().parse().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the shim never started");
}

/// Whether `pid` is a live process (a zombie is dead).
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

/// Waits up to 10 s for `pid` to end.
fn ends(pid: i32) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn signal(pid: u32, signal: i32) {
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}

fn create(id: &str) -> Vec<String> {
    vec![
        "create-client".into(),
        format!("CLIENT_ID={id}"),
        "CLIENT_NAME=Lifetime".into(),
        format!("CLIENT_DOMAIN={id}.example.com"),
    ]
}

#[test]
fn a_killed_agency_takes_its_restic_child_with_it() {
    let site = Site::new();
    let path = shim(&site, "restic", "init");
    let args = create("lt-kill");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut agency = spawn(&site, &path, &args);
    let child = shim_pid(&site);
    signal(agency.id(), libc::SIGKILL);
    agency.wait().unwrap();
    assert!(ends(child), "restic (pid {child}) outlived the agency that started it");
    // It was asked to stop (and so could remove its lock), not left to die at its next write.
    let signals = fs::read_to_string(site.path().join("signals")).unwrap();
    assert!(signals.starts_with("TERM\n"), "the child got {signals:?}");
}

fn interrupted_create_client(sig: i32, name: &str, code: i32) {
    let site = Site::new();
    let id = format!("lt-{}", name.to_lowercase());
    let path = shim(&site, "restic", "init");
    let args = create(&id);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agency = spawn(&site, &path, &args);
    let child = shim_pid(&site);
    signal(agency.id(), sig);
    let output = agency.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "exit code; stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("create-client interrupted by {name}"))
            && stderr.contains("a plain re-run completes it"),
        "stderr says what happened:\n{stderr}"
    );
    // Forwarded once to the child, which was awaited.
    assert_eq!(fs::read_to_string(site.path().join("signals")).unwrap(), format!("{}\n", &name[3..]));
    assert!(!alive(child), "restic (pid {child}) still runs after agency exited");
    let last = audit_lines(&site, &id).pop().expect("an audit line");
    assert_eq!(last["task"], "create-client");
    assert_eq!(last["outcome"], "interrupted", "{last}");
    assert!(temp_files(&site).is_empty(), "temp files left: {:?}", temp_files(&site));

    // A plain re-run (the real restic now) completes the client.
    let rerun = site.test().args([args[0], args[1], args[2], args[3]]).run();
    assert!(rerun.stdout.contains("restic init"), "{}", rerun.stdout);
}

#[test]
fn sigint_during_create_client_is_forwarded_awaited_and_audited() {
    interrupted_create_client(libc::SIGINT, "SIGINT", 130);
}

#[test]
fn sigterm_during_create_client_is_forwarded_awaited_and_audited() {
    interrupted_create_client(libc::SIGTERM, "SIGTERM", 143);
}

#[test]
fn a_task_timeout_stops_the_child_at_the_deadline() {
    let site = Site::new();
    site.site_file(
        "tasks/slow-version.toml",
        "description = \"docker version, bounded\"\nlock = \"none\"\ntimeout = \"1s\"\nscript = \"docker::version()\"\n",
    );
    let path = shim(&site, "docker", "version");
    let mut agency = spawn(&site, &path, &["slow-version"]);
    let child = shim_pid(&site);
    // The deadline stops the child; agency does not wait for its minute.
    assert!(ends(child), "docker (pid {child}) ran past the task's deadline");
    let status = agency.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(agency.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the task's timeout expired"), "{stderr}");
    assert_eq!(fs::read_to_string(site.path().join("signals")).unwrap(), "TERM\n");
}
