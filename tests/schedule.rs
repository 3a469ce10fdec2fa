//! `schedule` (SPEC §13): systemd units for two clients that `systemd-analyze verify`
//! accepts, a cron file whose lines parse, converging re-runs and REMOVE=1.

use std::{fs, os::unix::fs::PermissionsExt, path::Path, process::Command};

use crate::{create_client::create, test::Site};

fn systemd_analyze() -> Option<std::path::PathBuf> {
    match which::which("systemd-analyze") {
        Ok(path) => Some(path),
        Err(_) => {
            crate::containers::skip(module_path!(), "systemd-analyze is not installed (apt-get install systemd)");
            None
        }
    }
}

/// `systemd-analyze verify` of unit files: its complaints, empty when it accepts them.
fn verify(program: &Path, files: &[std::path::PathBuf]) -> Result<(), String> {
    let output = Command::new(program).arg("verify").args(files).output().expect("systemd-analyze runs");
    let complaints = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() && complaints.trim().is_empty() { Ok(()) } else { Err(complaints) }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn units_for_two_clients_pass_systemd_analyze_verify_and_re_runs_converge() {
    let Some(analyze) = systemd_analyze() else { return };
    let site = Site::new();
    create(&site, "acme", "Tenant");
    create(&site, "beta", "Tenant");
    let units = site.path().join("systemd");
    let env_file = site.path().join("etc").join("schedule.env");
    let args = [
        "schedule".to_string(),
        "MODE=systemd".into(),
        format!("SYSTEMD_DIR={}", units.display()),
        format!("ENV_FILE={}", env_file.display()),
        format!("METRICS_DIR={}", site.path().join("textfile").display()),
        "NOTIFY_URL=http://127.0.0.1:9/hook".into(),
    ];
    let run = |extra: &[&str]| {
        let mut test = site.test();
        for arg in args.iter().map(String::as_str).chain(extra.iter().copied()) {
            test = test.arg(arg);
        }
        test.run()
    };
    run(&[]);

    let wants = units.join("timers.target.wants");
    assert_eq!(
        names(&wants),
        [
            "agency-backup@acme.timer",
            "agency-backup@beta.timer",
            "agency-digest.timer",
            "agency-logs.timer",
            "agency-status.timer",
            "agency-verify@acme.timer",
            "agency-verify@beta.timer"
        ]
    );
    let mut files: Vec<_> = names(&wants).iter().map(|n| wants.join(n)).collect();
    files.extend(names(&units).iter().filter(|n| n.ends_with(".service")).map(|n| units.join(n)));
    verify(&analyze, &files)
        .unwrap_or_else(|complaints| panic!("systemd-analyze verify rejects the units:\n{complaints}"));

    let timer = fs::read_to_string(units.join("agency-backup@.timer")).unwrap();
    for line in ["OnCalendar=daily", "RandomizedDelaySec=1h", "Persistent=true", "WantedBy=timers.target"] {
        assert!(timer.lines().any(|l| l == line), "{line} missing:\n{timer}");
    }
    let service = fs::read_to_string(units.join("agency-backup@.service")).unwrap();
    assert!(service.contains("OnFailure=agency-notify@%n.service"), "{service}");
    assert!(service.contains(" backup-client CLIENT_ID=%i\n"), "{service}");
    assert!(fs::read_to_string(units.join("agency-status.timer")).unwrap().contains("OnCalendar=*:0/15\n"));
    assert!(fs::read_to_string(units.join("agency-verify@.timer")).unwrap().contains("OnCalendar=weekly\n"));
    // Log collection every minute, by collect-logs.
    assert!(fs::read_to_string(units.join("agency-logs.timer")).unwrap().contains("OnCalendar=minutely\n"));
    let logs = fs::read_to_string(units.join("agency-logs.service")).unwrap();
    assert!(logs.lines().any(|l| l.starts_with("ExecStart=") && l.ends_with(" collect-logs")), "{logs}");
    assert!(!units.join("agency-rotate@.timer").exists(), "rotation is off unless asked");
    // The settings file carries the webhook URL (a credential): root only.
    assert_eq!(fs::metadata(&env_file).unwrap().permissions().mode() & 0o777, 0o600);
    let settings = fs::read_to_string(&env_file).unwrap();
    assert!(settings.contains("NOTIFY_URL='http://127.0.0.1:9/hook'\n"), "{settings}");
    assert!(!service.contains("127.0.0.1"), "the URL stays out of the world-readable unit");

    // A broken copy is rejected, so the verify above could fail.
    let broken = site.path().join("broken");
    fs::create_dir(&broken).unwrap();
    fs::write(broken.join("agency-status.timer"), timer.replace("OnCalendar=daily", "OnCalendar=sometimes")).unwrap();
    fs::copy(units.join("agency-status.service"), broken.join("agency-status.service")).unwrap();
    assert!(verify(&analyze, &[broken.join("agency-status.timer")]).is_err());

    // Another task's agency-* units (setup-firewall's boot unit) are not schedule's to touch.
    let firewall = units.join("agency-firewall.service");
    fs::write(&firewall, "[Unit]\nDescription=agency's nft table\n").unwrap();
    fs::write(units.join("agency-other.timer"), "[Timer]\nOnCalendar=daily\n").unwrap();
    std::os::unix::fs::symlink("../agency-other.timer", wants.join("agency-other.timer")).unwrap();

    // Re-running changes nothing; a client gone loses its timers; ROTATE_CALENDAR adds rotation.
    let again = run(&[]);
    assert!(again.stdout.contains("0 created, 0 updated, 0 removed"), "{}", again.stdout);
    fs::remove_dir_all(site.client_dir("beta")).unwrap();
    run(&["ROTATE_CALENDAR=monthly"]);
    let enabled = names(&wants);
    assert!(!enabled.iter().any(|n| n.contains("beta")), "{enabled:?}");
    assert!(enabled.contains(&"agency-rotate@acme.timer".to_string()), "{enabled:?}");
    run(&[]);
    assert!(!units.join("agency-rotate@.timer").exists());

    assert!(names(&wants).contains(&"agency-other.timer".to_string()));
    run(&["REMOVE=1"]);
    assert_eq!(names(&wants), ["agency-other.timer"]);
    assert_eq!(names(&units), ["agency-firewall.service", "agency-other.timer", "timers.target.wants"]);
    assert_eq!(fs::read_to_string(&firewall).unwrap(), "[Unit]\nDescription=agency's nft table\n");
    assert!(!env_file.exists());
}

#[test]
fn without_systemd_the_jobs_are_cron_lines_that_parse() {
    if systemd_analyze().is_none() {
        return;
    }
    let site = Site::new();
    create(&site, "acme", "Tenant");
    create(&site, "beta", "Tenant");
    let cron = site.path().join("cron.d").join("agency");
    // Switching from systemd leaves no timer behind.
    site.test()
        .args(["schedule", "MODE=systemd"])
        .arg(&format!("ENV_FILE={}", site.path().join("schedule.env").display()))
        .run();
    let systemd_dir = site.path().join("systemd");
    assert!(!names(&systemd_dir.join("timers.target.wants")).is_empty());
    site.test()
        .args(["schedule", "MODE=cron", "VERIFY_CALENDAR=Mon..Fri 03:30"])
        .arg(&format!("CRON_FILE={}", cron.display()))
        .arg(&format!("ENV_FILE={}", site.path().join("schedule.env").display()))
        .run();
    assert!(names(&systemd_dir.join("timers.target.wants")).is_empty(), "a timer stayed enabled");
    assert!(names(&systemd_dir).iter().all(|n| !n.starts_with("agency-")), "{:?}", names(&systemd_dir));
    assert_eq!(fs::metadata(&cron).unwrap().permissions().mode() & 0o777, 0o644);
    let text = fs::read_to_string(&cron).unwrap();
    let jobs: Vec<&str> = text.lines().filter(|l| l.contains(" root ")).collect();
    assert_eq!(jobs.len(), 7, "{text}");
    for line in &jobs {
        let fields: Vec<&str> = line.splitn(7, ' ').collect();
        let schedule = fields[..5].join(" ");
        schedule.parse::<croner::Cron>().unwrap_or_else(|e| panic!("{schedule:?} does not parse: {e}"));
        assert_eq!(fields[5], "root");
        let syntax = Command::new("sh").args(["-n", "-c", fields[6]]).output().unwrap();
        assert!(syntax.status.success(), "{}: {}", fields[6], String::from_utf8_lossy(&syntax.stderr));
    }
    assert!(jobs.iter().any(|l| l.starts_with("0 0 * * * root ") && l.ends_with(" backup-client CLIENT_ID=beta")));
    assert!(jobs.iter().any(|l| l.starts_with("30 3 * * 1-5 root ") && l.ends_with(" verify-backup CLIENT_ID=acme")));
    assert!(jobs.iter().any(|l| l.starts_with("0-59/15 * * * * root ") && l.ends_with(" multi-tenancy-status")));
    assert!(jobs.iter().any(|l| l.ends_with(" multi-tenancy-status DIGEST=1")));
    assert!(jobs.iter().any(|l| l.starts_with("* * * * * root ") && l.ends_with(" collect-logs")), "{text}");
}

/// Where systemd runs (its runtime directory exists: the test makes one), schedule reloads
/// systemd and starts the timers it enabled, and REMOVE=1 stops them first. systemd does not
/// run in the test's container, so `systemctl` is a stand-in that records each call and, for
/// `start` and `stop`, runs the real `systemd-analyze verify` on every unit named, as linked
/// in timers.target.wants: it fails unless the units are in place (and valid) at that moment.
#[test]
fn where_systemd_runs_timers_are_started_with_systemctl_and_stopped_before_removal() {
    let Some(analyze) = systemd_analyze() else { return };
    let site = Site::new();
    create(&site, "acme", "Tenant");
    let units = site.path().join("systemd");
    let runtime = site.path().join("run-systemd");
    fs::create_dir(&runtime).unwrap();
    let bin = site.path().join("systemctl-bin");
    fs::create_dir(&bin).unwrap();
    let calls = site.path().join("systemctl.log");
    let stand_in = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{calls}'\ncase \"$1\" in start|stop) shift; for t in \"$@\"; do \
         '{analyze}' verify '{wants}'/\"$t\" || {{ echo \"not a valid unit: $t\" >&2; exit 1; }}; done;; esac\n",
        calls = calls.display(),
        analyze = analyze.display(),
        wants = units.join("timers.target.wants").display()
    );
    fs::write(bin.join("systemctl"), stand_in).unwrap();
    fs::set_permissions(bin.join("systemctl"), fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run = |extra: &[&str]| {
        let mut test = site
            .test()
            .env("PATH", &path)
            .args(["schedule"])
            .arg(&format!("SYSTEMD_RUNTIME={}", runtime.display()))
            .arg(&format!("SYSTEMD_DIR={}", units.display()));
        for arg in extra {
            test = test.arg(arg);
        }
        test.run()
    };
    // Each call as its verb and its units in name order.
    let recorded = || -> Vec<String> {
        fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let mut words: Vec<&str> = line.split(' ').collect();
                words[1..].sort();
                words.join(" ")
            })
            .collect()
    };

    // MODE=auto picks systemd; the timers it enabled are started after the reload.
    let first = run(&[]).stdout;
    assert!(first.contains("timer(s) enabled"), "{first}");
    let timers =
        "agency-backup@acme.timer agency-digest.timer agency-logs.timer agency-status.timer agency-verify@acme.timer";
    assert_eq!(recorded(), ["daemon-reload".to_string(), format!("start {timers}")]);
    assert!(!site.path().join("cron.d").join("agency").exists(), "a cron file besides the timers");

    // A re-run reloads and starts nothing; a new client's timers are started alone.
    run(&[]);
    assert_eq!(recorded()[2..], ["daemon-reload"]);
    create(&site, "beta", "Tenant");
    run(&[]);
    assert_eq!(recorded()[3..], ["daemon-reload", "start agency-backup@beta.timer agency-verify@beta.timer"]);

    // REMOVE=1 stops every timer while its unit is still there, then removes and reloads.
    run(&["REMOVE=1"]);
    let all = "agency-backup@acme.timer agency-backup@beta.timer agency-digest.timer agency-logs.timer agency-status.timer agency-verify@acme.timer agency-verify@beta.timer";
    assert_eq!(recorded()[5..], [format!("stop {all}"), "daemon-reload".to_string()]);
    assert!(names(&units.join("timers.target.wants")).is_empty());
}

#[test]
fn a_bad_calendar_is_refused_before_anything_is_written() {
    if systemd_analyze().is_none() {
        return;
    }
    let site = Site::new();
    create(&site, "acme", "Tenant");
    let units = site.path().join("systemd");
    site.test()
        .args(["schedule", "MODE=systemd", "BACKUP_CALENDAR=every tuesday-ish"])
        .arg(&format!("SYSTEMD_DIR={}", units.display()))
        .arg(&format!("ENV_FILE={}", site.path().join("schedule.env").display()))
        .status(1)
        .stderr_contains("invalid calendar \"every tuesday-ish\"")
        .run();
    assert!(!units.exists());
    assert!(!site.path().join("schedule.env").exists());
}

#[test]
fn a_calendar_cron_cannot_express_is_refused_before_anything_is_written() {
    let site = Site::new();
    create(&site, "acme", "Tenant");
    let cron = site.path().join("cron.d").join("agency");
    let env_file = site.path().join("schedule.env");
    let refused = site
        .test()
        .args(["schedule", "MODE=cron", "BACKUP_CALENDAR=monthly"])
        .arg(&format!("CRON_FILE={}", cron.display()))
        .arg(&format!("ENV_FILE={}", env_file.display()))
        .status(1)
        .run();
    assert!(!refused.stdout.contains("write"), "a step ran before the refusal: {}", refused.stdout);
    assert!(!env_file.exists(), "the settings file was written before the refusal");
    assert!(!cron.exists());
}
