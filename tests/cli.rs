//! SPEC §2: flags, listing, explain, makefile, completions, exit codes.

use crate::test::Test;

#[test]
fn list_groups_tasks_with_descriptions() {
    Test::new()
        .arg("--list")
        .stdout_contains("clients:\n")
        .stdout_contains("create-client")
        .stdout_contains("Create a new client with full isolation")
        .run();
}

#[test]
fn list_json_is_machine_readable() {
    let output = Test::new().args(["--list", "--json"]).run();
    let tasks = output.json()["tasks"].as_array().unwrap().clone();
    let create = tasks.iter().find(|t| t["name"] == "create-client").expect("create-client listed");
    assert_eq!(create["group"], "clients");
    assert_eq!(create["origin"], "built-in");
}

#[test]
fn explain_shows_variables_deps_and_origin() {
    Test::new()
        .args(["--explain", "create-client"])
        .stdout_contains("CLIENT_ID (required, kind client_id) - Unique identifier")
        .stdout_contains("deps:     setup-log-segmentation")
        .stdout_contains("loaded:   built-in")
        .stdout_contains("AGENCY_SUBNET_POOL")
        .run();
}

#[test]
fn explain_json_lists_variables() {
    let output = Test::new().args(["--explain", "create-client", "--json"]).run();
    let json = output.json();
    assert_eq!(json["deps"][0], "setup-log-segmentation");
    let names: Vec<&str> = json["vars"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names[..3], ["CLIENT_ID", "CLIENT_NAME", "CLIENT_DOMAIN"]);
}

#[test]
fn unknown_task_suggests_the_closest() {
    Test::new()
        .arg("create-clinet")
        .status(2)
        .stderr_contains("unknown task create-clinet; did you mean create-client?")
        .run();
}

#[test]
fn no_target_is_a_usage_error() {
    Test::new().status(2).stderr_contains("no target given").run();
}

#[test]
fn bad_flag_is_a_usage_error() {
    Test::new().arg("--frobnicate").status(2).stderr_contains("--frobnicate").run();
}

#[test]
fn two_targets_are_a_usage_error() {
    Test::new().args(["create-client", "setup-log-segmentation"]).status(2).stderr_contains("only one target").run();
}

#[test]
fn missing_site_dir_given_with_dash_c_is_an_error() {
    Test::new().args(["-C", "/nonexistent/agency-site", "--list"]).status(2).stderr_contains("does not exist").run();
}

#[test]
fn makefile_has_one_phony_target_per_task() {
    let output = Test::new().arg("--makefile").run();
    assert!(output.stdout.contains(".PHONY: create-client\ncreate-client:\n\t+@$(AGENCY) $@\n"));
    assert!(output.stdout.contains("-include dev.mk"));
}

#[test]
fn repo_makefile_is_the_generated_one() {
    let output = Test::new().env_remove("AGENCY_HOME").args(["-C", env!("CARGO_MANIFEST_DIR"), "--makefile"]).run();
    let makefile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Makefile")).unwrap();
    assert_eq!(output.stdout, makefile, "Makefile is stale: run `agency --makefile > Makefile`");
}

#[test]
fn completions_for_bash() {
    // The dynamic registration: the shell asks agency itself (tests/operator.rs completes with it).
    Test::new()
        .args(["--completions", "bash"])
        .stdout_contains("_clap_complete_agency()")
        .stdout_contains("AGENCY_COMPLETE")
        .run();
}

#[test]
fn json_errors_are_json() {
    let output = Test::new().args(["--json", "nope"]).status(2).run();
    let json = output.json();
    assert_eq!(json["ok"], false);
    assert_eq!(json["error"]["exit_code"], 2);
}

#[test]
fn json_bad_flag_is_json() {
    let output = Test::new().args(["--json", "--bogus"]).status(2).run();
    let json = output.json();
    assert_eq!(json["error"]["exit_code"], 2);
    assert!(json["error"]["message"].as_str().unwrap().contains("--bogus"));
}

#[test]
fn version_and_help() {
    Test::new().arg("--version").stdout_contains("agency ").run();
    Test::new().arg("--help").stdout_contains("--dry-run").stdout_contains("Exit codes").run();
}

#[test]
fn a_closed_stdout_is_not_a_crash() {
    let site = crate::test::Site::new();
    // A report larger than the pipe buffer, so writing it outlasts `head`.
    site.site_file("tasks/big.toml", "description = \"big\"\nscript = 'let s = \"\"; for i in 0..3000 { s += \"0123456789012345678901234567890123456789\"; } s'\n");
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{} --json big | head -c 10 >/dev/null; echo \"status=${{PIPESTATUS[0]}}\"",
            env!("CARGO_BIN_EXE_agency")
        ))
        .envs(site.env())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.contains("status=0"), "{stdout}{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn confirmation_refuses_without_a_terminal_and_yes_proceeds() {
    let site = crate::test::Site::new();
    site.site_file("tasks/wipe.toml", "description = \"Wipe things\"\nconfirm = true\nscript = 'print(\"wiped\");'\n");
    let refused = site.test().arg("wipe").status(1).stderr_contains("re-run with --yes").run();
    assert!(!refused.stdout.contains("wiped"));
    site.test().args(["--yes", "wipe"]).stdout_contains("wiped").run();
    site.test().args(["-y", "wipe"]).stdout_contains("wiped").run();
}

/// Runs `agency ARGS` under a pseudo-terminal (util-linux `script`) and returns what it printed.
fn on_a_terminal(site: &crate::test::Site, args: &str, no_color: bool) -> String {
    let mut env = site.env();
    if no_color {
        env.push(("NO_COLOR".into(), "1".into()));
    }
    let output = std::process::Command::new("script")
        .args(["-qec", &format!("{} {args}", env!("CARGO_BIN_EXE_agency")), "/dev/null"])
        .env_clear()
        .envs(env)
        .env("TERM", "xterm")
        .output()
        .expect("util-linux script is installed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn colour_on_a_terminal_unless_no_color() {
    let site = crate::test::Site::new();
    let args = "create-client CLIENT_ID=acme CLIENT_NAME=ACME CLIENT_DOMAIN=acme.example.com";
    assert!(on_a_terminal(&site, args, false).contains("\x1b[32m"), "green outcomes on a terminal");
    let plain = on_a_terminal(&site, &format!("--dry-run {args}"), true);
    assert!(plain.contains("unchanged"), "{plain}");
    assert!(!plain.contains("\x1b[3"), "no colour codes with NO_COLOR: {plain:?}");
    // Not a terminal: plain lines.
    let piped = site
        .test()
        .args(["-n", "create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"])
        .run();
    assert!(!piped.stdout.contains('\x1b'));
}
