//! VAR=VALUE handling: precedence, unknown names, required values, validators, MAKEFLAGS.

use crate::test::{Site, Test};

const TASK: &str = r#"
description = "Echo variables"
group = "test"
script = '''
print("GREETING=" + GREETING + " COUNT=" + COUNT);
'''

[vars.GREETING]
default = "from-default"

[vars.COUNT]
kind = "int"
default = "1"
"#;

fn site() -> Site {
    let site = Site::new();
    site.site_file("tasks/echo.toml", TASK);
    site
}

#[test]
fn command_line_beats_environment_beats_default() {
    let site = site();
    site.test().arg("echo").stdout_contains("GREETING=from-default").run();
    site.test().arg("echo").env("GREETING", "from-env").stdout_contains("GREETING=from-env").run();
    site.test()
        .args(["GREETING=from-cli", "echo"])
        .env("GREETING", "from-env")
        .stdout_contains("GREETING=from-cli")
        .run();
}

#[test]
fn bool_and_int_variables_reach_scripts_typed() {
    let site = Site::new();
    site.site_file(
        "tasks/typed.toml",
        r#"
description = "Typed variables"
script = '''
let hook_view = VARS.FLAG;
print(`FLAG=${type_of(FLAG)}:${FLAG} VARS=${type_of(hook_view)} COUNT=${type_of(COUNT)}:${COUNT + 1} UNSET=${type_of(UNSET)}`);
if FLAG { print("flag is on"); }
'''

[vars.FLAG]
kind = "bool"
default = "0"

[vars.COUNT]
kind = "int"
default = "1"

[vars.UNSET]
kind = "int"
"#,
    );
    site.test()
        .args(["typed", "FLAG=yes", "COUNT=41"])
        .stdout_contains("FLAG=bool:true VARS=bool COUNT=i64:42 UNSET=()")
        .stdout_contains("flag is on")
        .run();
    let off = site.test().args(["typed"]).stdout_contains("FLAG=bool:false").stdout_contains("COUNT=i64:2").run();
    assert!(!off.stdout.contains("flag is on"), "{}", off.stdout);
}

#[test]
fn assignments_may_come_before_and_after_the_target() {
    site().test().args(["COUNT=7", "echo", "GREETING=hi"]).stdout_contains("GREETING=hi COUNT=7").run();
}

#[test]
fn unknown_variable_names_the_closest() {
    Test::new()
        .args(["create-client", "CLIENT_ID=acme", "CLIENT_NAME=A", "CLIENT_DOMIAN=a.example.com"])
        .status(2)
        .stderr_contains("unknown variable CLIENT_DOMIAN for create-client; did you mean CLIENT_DOMAIN?")
        .run();
}

#[test]
fn settings_are_accepted_by_every_task() {
    let site = site();
    let root = site.path().join("elsewhere").display().to_string();
    site.test().args(["echo", &format!("AGENCY_ROOT={root}")]).run();
}

#[test]
fn required_variable_missing() {
    Test::new()
        .args(["create-client", "CLIENT_ID=acme", "CLIENT_NAME=A"])
        .status(2)
        .stderr_contains("missing required variable CLIENT_DOMAIN for create-client")
        .run();
}

#[test]
fn validators_reject_bad_values_with_exit_2() {
    let cases = [
        ("CLIENT_ID=Acme", "invalid CLIENT_ID"),
        ("CLIENT_ID=master", "reserved"),
        ("CLIENT_ID=../etc", "invalid CLIENT_ID"),
        ("CLIENT_ID=ab", "invalid CLIENT_ID"),
    ];
    for (assignment, message) in cases {
        Test::new()
            .args(["create-client", assignment, "CLIENT_NAME=A", "CLIENT_DOMAIN=a.example.com"])
            .status(2)
            .stderr_contains(message)
            .run();
    }
    Test::new()
        .args(["create-client", "CLIENT_ID=acme", "CLIENT_NAME=A\nB", "CLIENT_DOMAIN=a.example.com"])
        .status(2)
        .stderr_contains("invalid CLIENT_NAME")
        .run();
    Test::new()
        .args(["create-client", "CLIENT_ID=acme", "CLIENT_NAME=A", "CLIENT_DOMAIN=A.example.com"])
        .status(2)
        .stderr_contains("invalid CLIENT_DOMAIN")
        .run();
    site().test().args(["echo", "COUNT=many"]).status(2).stderr_contains("invalid COUNT").run();
}

#[test]
fn makeflags_carry_make_dry_run_and_variables() {
    let site = site();
    site.test().arg("echo").env("MAKEFLAGS", r" -- GREETING=two\ words").stdout_contains("GREETING=two words").run();
    site.test()
        .arg("echo")
        .env("MAKEFLAGS", r" -- GRETING=x")
        .status(2)
        .stderr_contains("unknown variable GRETING for echo; did you mean GREETING?")
        .run();
    site.test().arg("echo").env("MAKEFLAGS", " -- AGENCY=/bin/agency").run();
    site.test().arg("echo").env("MAKEFLAGS", "n").stdout_contains("(dry run: nothing is changed)").run();
}

/// A bad host setting stops create-client before its first change, with exit 2 and a
/// message naming the setting; nothing is written.
#[test]
fn bad_settings_stop_a_run_before_anything_is_written() {
    for (name, value, says) in [
        ("AGENCY_SUBNET_PREFIX", "abc", "AGENCY_SUBNET_PREFIX"),
        ("AGENCY_SUBNET_POOL", "10.201.0.0/99", "AGENCY_SUBNET_POOL"),
        ("AGENCY_BACKUPS", "maybe", "AGENCY_BACKUPS must be restic or off"),
        ("AGENCY_ROOT", "relative/root", "AGENCY_ROOT must be an absolute path"),
        ("NETWORK_DRIVER", "macvlan", "NETWORK_DRIVER must be empty or bridge or overlay"),
        ("KEYCLOAK_URL", "ftp://sso", "KEYCLOAK_URL"),
        ("INGRESS_HTTP_PORT", "80x", "INGRESS_HTTP_PORT must be a port number"),
    ] {
        let site = Site::new();
        let before = site.snapshot();
        site.test()
            .args(["create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"])
            .env(name, value)
            .status(2)
            .stderr_contains(says)
            .run();
        assert_eq!(site.snapshot(), before, "{name}={value} changed files");
    }
}
