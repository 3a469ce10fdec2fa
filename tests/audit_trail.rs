//! The audit trail (SPEC §5, §7; issue 7): one whole JSON line per task run on a client,
//! secrets redacted, dry runs not written, concurrent writers never interleaved.

use std::{collections::BTreeMap, fs};

use crate::{
    create_client::create,
    test::{Site, audit_lines},
};

/// A site task on one client, with a secret variable.
fn task(site: &Site, name: &str, lock: &str, script: &str) {
    site.site_file(
        &format!("tasks/{name}.toml"),
        &format!(
            "description = \"{name}\"\nlock = \"{lock}\"\nscript_file = \"{name}.rhai\"\n\n\
             [vars.CLIENT_ID]\nrequired = true\nkind = \"client_id\"\n\n\
             [vars.TOKEN]\ndefault = \"\"\nsecret = true\n\n\
             [vars.COUNT]\ndefault = \"1\"\nkind = \"int\"\n"
        ),
    );
    site.site_file(&format!("tasks/{name}.rhai"), script);
}

fn is_utc_rfc3339(time: &str) -> bool {
    let b = time.as_bytes();
    time.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
        && time.chars().filter(char::is_ascii_digit).count() == 14
}

#[test]
fn a_line_holds_time_task_vars_user_outcome_and_changes() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let lines = audit_lines(&site, "acme");
    assert_eq!(
        lines.iter().map(|l| l["task"].as_str().unwrap()).collect::<Vec<_>>(),
        ["setup-log-segmentation", "create-client"]
    );
    let line = &lines[1];
    assert!(is_utc_rfc3339(line["time"].as_str().unwrap()), "{}", line["time"]);
    assert_eq!(line["vars"]["CLIENT_NAME"], "ACME");
    assert_eq!(line["user"], "tester");
    assert_eq!(line["outcome"], "ok");
    let changes = line["changes"].as_array().unwrap();
    assert!(changes.iter().any(|c| c["outcome"] == "created" && c["target"].as_str().unwrap().ends_with("client.env")));
    assert!(line["pid"].as_u64().unwrap() > 0);

    site.test().args(["setup-log-segmentation", "CLIENT_ID=acme"]).env("SUDO_USER", "alice").run();
    assert_eq!(audit_lines(&site, "acme").last().unwrap()["user"], "alice", "the user behind sudo");
}

#[test]
fn secret_variables_and_secret_values_are_redacted() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    task(
        &site,
        "leak",
        "client",
        "let c = layout::client(CLIENT_ID);\n\
         let secrets = envfile::read(c.secrets_file);\n\
         audit::append(CLIENT_ID, #{ token: TOKEN, restic: \"pw=\" + secrets.RESTIC_PASSWORD, file: fs::read(c.secrets_file) });\n",
    );
    site.test().args(["leak", "CLIENT_ID=acme", "TOKEN=hunter2-is-my-token"]).run();
    let text = fs::read_to_string(site.log_root().join("clients/acme/audit.log")).unwrap();
    assert!(!text.contains("hunter2-is-my-token"), "a secret variable reached the audit log");
    let secrets = fs::read_to_string(site.secrets_file("acme")).unwrap();
    for line in secrets.lines() {
        let value = line.split_once('=').unwrap().1.trim_matches('\'');
        assert!(!text.contains(value), "a secret value reached the audit log");
    }
    let lines = audit_lines(&site, "acme");
    let event = lines.iter().find(|l| l["outcome"] == "event").expect("the script's event line");
    assert_eq!(event["task"], "leak");
    assert_eq!(event["event"]["restic"], "pw=<redacted>");
    let run = lines.last().unwrap();
    assert_eq!(run["task"], "leak");
    assert_eq!(run["vars"]["TOKEN"], "<redacted>");
}

#[test]
fn a_failed_run_is_audited_as_failed_with_its_changes() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    task(
        &site,
        "half",
        "client",
        "fs::touch(layout::client(CLIENT_ID).log_dir + \"/extra.log\", 0o640);\nthrow \"disk on fire\";\n",
    );
    site.test().args(["half", "CLIENT_ID=acme"]).status(1).stderr_contains("disk on fire").run();
    let line = audit_lines(&site, "acme").pop().unwrap();
    assert_eq!(line["task"], "half");
    assert_eq!(line["outcome"], "failed");
    assert!(line["error"].as_str().unwrap().contains("disk on fire"));
    assert!(line["changes"][0]["target"].as_str().unwrap().ends_with("extra.log"));
}

#[test]
fn dry_runs_write_no_audit_line() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let before = fs::read(site.log_root().join("clients/acme/audit.log")).unwrap();
    site.test()
        .args(["-n", "create-client", "CLIENT_ID=acme", "CLIENT_NAME=Renamed", "CLIENT_DOMAIN=acme.example.com"])
        .stdout_contains("would update write")
        .run();
    task(&site, "note", "client", "audit::append(CLIENT_ID, #{ note: \"hello\" });\n");
    site.test().args(["--dry-run", "note", "CLIENT_ID=acme"]).stdout_contains("would update audit").run();
    assert_eq!(fs::read(site.log_root().join("clients/acme/audit.log")).unwrap(), before);
}

#[test]
fn two_concurrent_runs_on_one_client_write_whole_lines_one_run_after_the_other() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let before = audit_lines(&site, "acme").len();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| create(&site, "acme", "ACME"));
        }
    });
    let lines = audit_lines(&site, "acme");
    let new = &lines[before..];
    assert_eq!(new.len(), 4, "two runs of two tasks each");
    // The client lock is held for the whole run: each run's two lines are adjacent.
    for pair in new.chunks(2) {
        assert_eq!(pair[0]["pid"], pair[1]["pid"], "runs interleaved: {pair:?}");
        assert_eq!(pair[0]["task"], "setup-log-segmentation");
        assert_eq!(pair[1]["task"], "create-client");
        assert_eq!(pair[1]["outcome"], "ok");
    }
    assert_ne!(new[0]["pid"], new[2]["pid"]);
}

#[test]
fn many_concurrent_appends_from_two_processes_never_interleave() {
    const COUNT: usize = 300;
    let site = Site::new();
    fs::create_dir_all(site.client_dir("acme")).unwrap();
    site.test().args(["setup-log-segmentation", "CLIENT_ID=acme"]).run();
    // No lock: both processes append at once. Lines of ~9 KB are larger than a pipe
    // buffer and a page, so anything but one write per line would tear them.
    task(
        &site,
        "spam",
        "none",
        "let pad = \"\";\npad.pad(9000, 'x');\n\
         for i in 0..COUNT { audit::append(CLIENT_ID, #{ n: i, pad: pad }); }\n",
    );
    let count = format!("COUNT={COUNT}");
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| site.test().args(["-q", "spam", "CLIENT_ID=acme", &count]).run());
        }
    });
    let lines = audit_lines(&site, "acme");
    let events: Vec<_> = lines.iter().filter(|l| l["outcome"] == "event").collect();
    assert_eq!(events.len(), 2 * COUNT);
    let mut by_pid: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for event in &events {
        assert_eq!(event["event"]["pad"].as_str().unwrap().len(), 9000);
        by_pid.entry(event["pid"].as_u64().unwrap()).or_default().push(event["event"]["n"].as_u64().unwrap());
    }
    assert_eq!(by_pid.len(), 2);
    for numbers in by_pid.values() {
        assert_eq!(*numbers, (0..COUNT as u64).collect::<Vec<_>>(), "each process's lines in order, none lost");
    }
    let runs: Vec<_> = lines.iter().filter(|l| l["task"] == "spam" && l["outcome"] == "ok").collect();
    assert_eq!(runs.len(), 2, "one run line per process");
    assert_eq!(runs[0]["changes"].as_array().unwrap().len(), COUNT);
}
