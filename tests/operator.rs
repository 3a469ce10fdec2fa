//! What a new operator meets first (issue 24): output levels, variables reported together,
//! confirmations through make, usage errors, and the wording of common messages.

use std::path::{Path, PathBuf};

use crate::test::{Site, Test};

const CREATE: [&str; 4] = ["create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"];

fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

#[test]
fn default_output_is_the_changes_and_a_summary() {
    let site = Site::new();
    let first = site.test().args(CREATE).run();
    assert!(first.stdout.contains("created      mkdir"), "{}", first.stdout);
    assert!(!first.stdout.contains("unchanged    "), "no unchanged steps by default:\n{}", first.stdout);
    assert!(first.stdout.lines().last().unwrap().starts_with("create-client: "), "{}", first.stdout);
    // A no-op re-run: the summary alone, no headings of tasks that changed nothing.
    let again = site.test().args(CREATE).run();
    let again = lines(&again.stdout);
    assert!(again.len() == 1 && again[0].starts_with("create-client: 0 created, 0 updated, 0 removed, "), "{again:?}");
}

#[test]
fn verbose_adds_unchanged_steps_and_the_commands_run_without_secrets() {
    let site = Site::new();
    site.test().args(CREATE).run();
    let verbose = site.test().arg("-v").args(CREATE).run();
    assert!(verbose.stdout.contains("setup-log-segmentation\n"), "headings: {}", verbose.stdout);
    assert!(verbose.stdout.contains("unchanged    network acme_database"), "{}", verbose.stdout);
    assert!(verbose.stderr.contains("$ docker network inspect -- acme_frontend"), "{}", verbose.stderr);
    let secrets = std::fs::read_to_string(site.secrets_file("acme")).unwrap();
    for line in secrets.lines() {
        let value = line.split_once('=').unwrap().1.trim_matches('\'');
        assert!(value.len() > 20 && !verbose.stderr.contains(value), "a secret in the -v output");
    }
    // The default hides both.
    let plain = site.test().args(CREATE).run();
    assert!(!plain.stderr.contains("$ docker"), "{}", plain.stderr);
}

#[test]
fn quiet_prints_errors_and_the_one_line_result() {
    let site = Site::new();
    let quiet = site.test().arg("-q").args(CREATE).run();
    let quiet = lines(&quiet.stdout);
    assert!(quiet.len() == 1 && quiet[0].starts_with("create-client: 2"), "{quiet:?}");
    // Read-only tasks: their table is hidden, their one-line result is not.
    site.test().args(["-q", "list-clients"]).stdout("list-clients: 1 client(s)\n").run();
    site.test().args(["-q", "multi-tenancy-status"]).stdout("multi-tenancy-status: 1 client(s), all isolated\n").run();
    // An error still shows.
    let failed = site.test().args(["-q", "setup-roles", "CLIENT_ID=nobody"]).status(1).run();
    assert_eq!(failed.stdout, "");
    assert!(failed.stderr.starts_with("error: "), "{}", failed.stderr);
}

#[test]
fn every_missing_required_variable_is_reported_at_once() {
    let out = Test::new().args(["create-client", "CLIENT_ID=acme"]).status(2).run();
    assert!(
        out.stderr.starts_with("error: missing required variables for create-client: CLIENT_NAME, CLIENT_DOMAIN\n"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("  CLIENT_DOMAIN  The client's public DNS name"), "{}", out.stderr);
    let json = Test::new().args(["--json", "create-client"]).status(2).run().json();
    assert_eq!(
        json["error"]["message"],
        "missing required variables for create-client: CLIENT_ID, CLIENT_NAME, CLIENT_DOMAIN"
    );
}

#[test]
fn deliberate_errors_of_built_in_tasks_show_the_message_only() {
    let site = Site::new();
    let out = site.test().args(["setup-roles", "CLIENT_ID=nobody"]).status(1).run();
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "one line: {}", out.stderr);
    assert!(out.stderr.contains("client nobody does not exist"), "{}", out.stderr);
    assert!(!out.stderr.contains("-->") && !out.stderr.contains('^'), "{}", out.stderr);
    // A real fault in a script still points at its line.
    site.site_file("tasks/typo.toml", "description = \"t\"\nscript = '''\nlet x = 1;\nno_such_function(x);\n'''\n");
    let out = site.test().arg("typo").status(1).run();
    assert!(out.stderr.contains("--> ") && out.stderr.contains("typo.toml:4:1"), "{}", out.stderr);
    assert!(out.stderr.contains("4 | no_such_function(x);\n"), "{}", out.stderr);
}

#[test]
fn an_unknown_secret_name_is_a_usage_error() {
    let site = Site::new();
    site.test().env("AGENCY_BACKUPS", "off").args(CREATE).run();
    site.test()
        .env("AGENCY_BACKUPS", "off")
        .args(["rotate-secrets", "CLIENT_ID=acme", "SECRET=NO_SUCH"])
        .status(2)
        .stderr_contains("unknown secret NO_SUCH for client acme")
        .run();
    let json = site
        .test()
        .env("AGENCY_BACKUPS", "off")
        .args(["--json", "rotate-secrets", "CLIENT_ID=acme", "SECRET=DB_PASWORD"])
        .status(2)
        .run()
        .json();
    assert_eq!(json["error"]["exit_code"], 2);
    assert!(json["error"]["message"].as_str().unwrap().contains("did you mean DB_PASSWORD?"), "{json}");
}

#[test]
fn per_client_tasks_refuse_an_id_that_has_no_client() {
    let site = Site::new();
    for task in ["setup-log-segmentation", "client-report"] {
        site.test()
            .args([task, "CLIENT_ID=nobody"])
            .status(1)
            .stderr_contains("no client nobody (run create-client)")
            .run();
    }
    assert!(!site.log_root().join("clients/nobody").exists(), "no log dir for a client nobody lists");
    assert!(!site.logrotate_dir().join("agency_stack-nobody").exists(), "no logrotate policy either");
    // As create-client's dep it makes the new client's logs, and on its own it serves clients that exist.
    site.test().args(CREATE).run();
    site.test().args(["setup-log-segmentation", "CLIENT_ID=acme"]).run();
    assert!(site.logrotate_dir().join("agency_stack-acme").exists());
}

#[test]
fn a_missing_backup_repository_is_a_health_problem_not_an_isolation_one() {
    let site = Site::new();
    site.test().args(CREATE).run();
    let repository = site.backup_root().join("client-acme");
    if !repository.exists() {
        eprintln!("SKIP: restic is not installed; no repository to remove");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "restic is not installed");
        return;
    }
    std::fs::remove_dir_all(&repository).unwrap();
    let table = site.test().arg("multi-tenancy-status").run();
    let header = table.stdout.lines().find(|l| l.starts_with("CLIENT")).unwrap();
    let row = table.stdout.lines().find(|l| l.starts_with("acme ")).unwrap();
    let cell = |name: &str| row.get(header.find(name).unwrap()..).unwrap().split_whitespace().next().unwrap();
    assert_eq!((cell("VERDICT"), cell("BACKUP"), cell("HEALTH")), ("isolated", "FAIL", "FAIL"), "{}", table.stdout);
    assert!(header.find("VERDICT") < header.find("BACKUP"), "health columns after the verdict: {header}");
    let json = site.test().args(["--json", "multi-tenancy-status"]).run().json();
    let result = &json["tasks"][0]["result"];
    assert_eq!((result["ok"].as_bool(), result["healthy"].as_bool()), (Some(true), Some(false)), "{result}");
    assert!(result["message"].as_str().unwrap().ends_with("; health problems (backups, logs) in acme"), "{result}");
    // A failing isolation check still fails the run.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(site.secrets_file("acme"), std::fs::Permissions::from_mode(0o644)).unwrap();
    site.test().arg("multi-tenancy-status").status(1).stdout_contains("NOT ISOLATED").run();
}

/// The guide's troubleshooting on the real engine: a network of the client's name made by hand
/// is refused with the next step, and `FIX=1 ADOPT=1` replaces it with the right one.
#[test]
fn an_empty_network_made_by_hand_is_replaced_with_fix_and_adopt() {
    use crate::support::docker::{Scratch, check, report, unique};
    let docker = crate::require_docker!();
    let scratch = Scratch::new(&docker);
    let site = Site::with_docker();
    let id = scratch.client(&unique("adopt"));
    site.test()
        .args([
            "create-client",
            &format!("CLIENT_ID={id}"),
            "CLIENT_NAME=A",
            &format!("CLIENT_DOMAIN={id}.example.com"),
        ])
        .run();
    let database = format!("{id}_database");
    docker.remove_network(&database).unwrap();
    scratch.docker(&["network", "create", "--label", "agency.test=true", &database]);
    let client = format!("CLIENT_ID={id}");
    let status = |extra: &[&str]| {
        let mut test = site.test().args(["--json", "multi-tenancy-status", &client]);
        for arg in extra {
            test = test.arg(arg);
        }
        test.run_unchecked()
    };
    let found = status(&[]);
    assert_eq!(found.status, 1);
    let fix = check(report(&found.json(), &id), "networks")["fix"].as_str().unwrap().to_string();
    assert!(
        fix.contains(&format!("remove it (`docker network rm {database}`) and run FIX=1, or run FIX=1 ADOPT=1")),
        "{fix}"
    );
    let by_hand = docker.inspect_networks(&[&database]).unwrap()[0].id.clone();
    assert_eq!(status(&["FIX=1"]).status, 1, "FIX=1 alone leaves it");
    assert_eq!(docker.inspect_networks(&[&database]).unwrap()[0].id, by_hand);
    let adopted = status(&["FIX=1", "ADOPT=1"]);
    assert_eq!(adopted.status, 0, "{}", adopted.stdout);
    let network = docker.inspect_networks(&[&database]).unwrap().remove(0);
    assert_ne!(network.id, by_hand);
    assert_eq!((network.label("agency.client"), network.internal), (Some(id.as_str()), true));
}

#[test]
fn common_messages_read_right() {
    let site = Site::new();
    let plan = site.test().arg("-n").args(CREATE).run();
    assert!(plan.stdout.contains("would create file ") && !plan.stdout.contains("create create"), "{}", plan.stdout);
    site.test().args(CREATE).run();
    // FIX=1 with nothing to repair: an unchanged mode is not shown as a change of it to itself.
    let fix = site.test().args(["-v", "multi-tenancy-status", "FIX=1"]).run_unchecked();
    assert!(fix.stdout.contains("unchanged    chmod ") && fix.stdout.contains("(mode 0700)"), "{}", fix.stdout);
    assert!(!fix.stdout.contains("0700 -> 0700"), "{}", fix.stdout);
    // verify-backup names the failed clients as a list, not as a script array.
    site.test()
        .args(["verify-backup", "CLIENT_ID=nobody"])
        .status(1)
        .stderr_contains("verify-backup found problems in 1 client(s): nobody\n")
        .run();
    if site.backup_root().join("client-acme").exists() {
        site.test().args(["backup-client", "CLIENT_ID=acme"]).run();
        site.test()
            .args(["verify-backup", "CLIENT_ID=acme"])
            .stdout_contains("/client.env from snapshot ")
            .stdout_contains(" restored into a scratch dir")
            .run();
    }
}

/// `list-clients` run by a user who cannot read the root: permission denied (exit 1), never
/// "no clients". Needs root to switch to `nobody` (setpriv, util-linux).
#[test]
fn list_clients_without_permission_to_read_the_root_says_so() {
    use std::os::unix::fs::PermissionsExt;
    if !is_root() {
        eprintln!("SKIP: not root; cannot run list-clients as another user");
        return;
    }
    let site = Site::new();
    site.test().args(CREATE).run();
    std::fs::set_permissions(site.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(site.root(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let output = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_agency"), "list-clients"])
        .env_clear()
        .envs(site.env())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("setpriv (util-linux) runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot read the clients of") && stderr.contains("Permission denied"), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("no clients"));
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn the_keycloak_admin_password_on_the_command_line_names_where_it_belongs() {
    let site = Site::new();
    let out = site.test().args(["setup-roles", "CLIENT_ID=acme", "KEYCLOAK_ADMIN_PASSWORD=hunter2"]).status(2).run();
    let file = site.root().join("secrets/keycloak.env");
    assert!(out.stderr.contains("never accepted on the command line, on purpose"), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("environment or put it in {}", file.display())), "{}", out.stderr);
    assert!(!out.stderr.contains("hunter2") && !out.stdout.contains("hunter2"));
}

#[test]
fn long_steps_off_a_terminal_print_a_line_when_they_start() {
    let site = Site::new();
    let out = site.test().args(CREATE).run();
    if !site.backup_root().join("client-acme").exists() {
        eprintln!("SKIP: restic is not installed; no long step to see");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "restic is not installed");
        return;
    }
    let lines: Vec<&str> = out.stdout.lines().collect();
    let started = lines.iter().position(|l| l.starts_with("  started      restic init ")).expect(&out.stdout);
    let done = lines.iter().position(|l| l.starts_with("  created      restic init ")).expect(&out.stdout);
    assert!(started < done, "{}", out.stdout);
    assert!(lines[started].ends_with("Z)"), "with the UTC time: {}", lines[started]);
    // Quick steps get no start line, and -q none at all.
    assert!(!out.stdout.contains("started      mkdir"), "{}", out.stdout);
    let quiet = site.test().args(["-q", "backup-client", "CLIENT_ID=acme"]).run();
    assert!(!quiet.stdout.contains("started"), "{}", quiet.stdout);
}

/// A fresh machine, as the README's first command meets it: `make` builds the runner (one line
/// off a terminal), installs it into `$(BINDIR)`, and installs the programs it drives that are
/// missing (apt-get when root, else the one command to run). PATH holds only what make's
/// recipes need; cargo and apt-get are stand-ins that record their arguments.
#[test]
fn a_fresh_machine_gets_the_binary_and_the_missing_programs() {
    let site = Site::new();
    let dir = site.path().join("clone");
    let bin = site.path().join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    for file in ["Makefile", "dev.mk"] {
        std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join(file), dir.join(file)).unwrap();
    }
    for tool in ["sh", "make", "cmp", "install", "mkdir", "cp", "id", "cat"] {
        let real = which(tool);
        std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
    }
    let script = |name: &str, body: &str| {
        use std::os::unix::fs::PermissionsExt;
        let path = bin.join(name);
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let log = site.path().join("calls.log");
    script("cargo", "echo \"cargo $*\" >> \"$CALLS\"\nmkdir -p target/release && cp \"$BUILT\" target/release/agency");
    script("apt-get", "echo \"apt-get $*\" >> \"$CALLS\"");
    let prefix = site.path().join("prefix");
    let make = |args: &[&str]| {
        let output = std::process::Command::new(bin.join("make"))
            .args(args)
            .arg(format!("PREFIX={}", prefix.display()))
            .arg("SBIN_PATH=/nonexistent")
            .env_clear()
            .env("PATH", &bin)
            .env("CALLS", &log)
            .env("BUILT", env!("CARGO_BIN_EXE_agency"))
            .envs(site.env().into_iter().filter(|(k, _)| k != "PATH"))
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{text}");
        text
    };
    let calls = || std::fs::read_to_string(&log).unwrap_or_default();

    let first = make(&[]);
    assert!(first.contains("building agency, first run"), "{first}");
    assert!(first.contains(&format!("installed {}/bin/agency", prefix.display())), "{first}");
    assert!(first.contains("installing restic logrotate nftables docker-compose docker.io (apt-get)"), "{first}");
    assert!(first.contains("create-client"), "plain make lists the tasks: {first}");
    assert_eq!(std::fs::read(prefix.join("bin/agency")).unwrap(), std::fs::read(env!("CARGO_BIN_EXE_agency")).unwrap());
    assert!(calls().contains("cargo build --release --quiet\n"), "{}", calls());
    assert!(
        calls().contains("apt-get install -y -qq restic logrotate nftables docker-compose docker.io\n"),
        "{}",
        calls()
    );

    // Built and installed: no first-run line, no reinstall. Not root: the command, not apt-get.
    std::fs::write(&log, "").unwrap();
    script("id", "echo 1000");
    let again = make(&["help"]);
    assert!(!again.contains("building agency") && !again.contains("installed "), "{again}");
    assert!(
        again.contains("install them with: sudo apt-get install restic logrotate nftables docker-compose docker.io"),
        "{again}"
    );
    assert!(!calls().contains("apt-get"), "{}", calls());

    // On a terminal cargo shows its own progress (no --quiet, no line of ours).
    std::fs::write(&log, "").unwrap();
    std::fs::remove_dir_all(dir.join("target")).unwrap();
    let command = format!("{} compile SBIN_PATH=/nonexistent", bin.join("make").display());
    let tty = std::process::Command::new(which("script"))
        .args(["-qec", &command, "/dev/null"])
        .env_clear()
        .env("PATH", &bin)
        .env("CALLS", &log)
        .env("BUILT", env!("CARGO_BIN_EXE_agency"))
        .current_dir(&dir)
        .output()
        .expect("util-linux script is installed");
    assert!(tty.status.success(), "{}", String::from_utf8_lossy(&tty.stdout));
    assert!(!String::from_utf8_lossy(&tty.stdout).contains("building agency"));
    assert_eq!(calls(), "cargo build --release\n");
}

fn which(tool: &str) -> PathBuf {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{tool} is not installed"))
}

/// What bash offers at Tab with the script of `agency --completions bash` sourced: the site's
/// task names (a site task too), then the chosen task's `VAR=` names not given yet.
#[test]
fn bash_completes_task_names_and_their_variables() {
    let site = Site::new();
    site.site_file(
        "tasks/cleanup-tmp.toml",
        "description = \"d\"\nscript = '1'\n\n[vars.OLDER_THAN]\ndefault = \"7d\"\n",
    );
    let bin = site.path().join("completion-bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_agency"), bin.join("agency")).unwrap();
    let complete = |line: &str| -> String {
        let script = r#"source <(agency --completions bash)
read -ra COMP_WORDS <<< "$LINE"; [[ "$LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMP_TYPE=9
_clap_complete_agency agency "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
printf '%s\n' "${COMPREPLY[@]}""#;
        let mut env = site.env();
        let path = env.iter_mut().find(|(k, _)| k == "PATH").unwrap();
        path.1 = format!("{}:{}", bin.display(), path.1);
        let output = std::process::Command::new("bash")
            .args(["-c", script])
            .env_clear()
            .envs(env)
            .env("LINE", line)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert_eq!(complete("agency cre"), "create-client\n");
    assert_eq!(complete("agency clean"), "cleanup-tmp\n");
    assert_eq!(complete("agency create-client CLIENT_ID=acme CLIENT_"), "CLIENT_NAME=\nCLIENT_DOMAIN=\n");
    assert_eq!(complete("agency cleanup-tmp O"), "OLDER_THAN=\n");
    assert!(complete("agency delete-client ").contains("YES=\n"));
    assert_eq!(complete("agency --explain multi"), "multi-tenancy-status\n");
}

#[test]
fn a_word_of_a_task_name_and_extra_words_after_list_are_usage_errors() {
    Test::new()
        .arg("status")
        .status(2)
        .stderr_contains("unknown task status; did you mean multi-tenancy-status?")
        .run();
    Test::new()
        .args(["--list", "create-client"])
        .status(2)
        .stderr_contains("--list takes no target or VAR=VALUE, got \"create-client\"")
        .run();
    Test::new().args(["--makefile", "X=1"]).status(2).run();
}
