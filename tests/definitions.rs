//! Task files: site overrides, deps, and definition errors with file:line:column.

use crate::test::Site;

#[test]
fn site_task_overrides_builtin_and_explain_says_so() {
    let site = Site::new();
    site.site_file(
        "tasks/setup-log-segmentation.toml",
        "description = \"Site logging\"\ngroup = \"clients\"\nscript = 'print(\"site version\");'\n\n[vars.CLIENT_ID]\nkind = \"client_id\"\n",
    );
    site.test().args(["setup-log-segmentation"]).stdout_contains("site version").run();
    site.test()
        .args(["--explain", "setup-log-segmentation"])
        .stdout_contains("loaded:   site dir")
        .stdout_contains("overrides built-in")
        .run();
}

#[test]
fn deps_run_first_each_once() {
    let site = Site::new();
    site.site_file("tasks/a.toml", "description = \"a\"\ndeps = [\"b\", \"c\"]\nscript = 'print(\"ran a\");'\n");
    site.site_file("tasks/b.toml", "description = \"b\"\ndeps = [\"c\"]\nscript = 'print(\"ran b\");'\n");
    site.site_file("tasks/c.toml", "description = \"c\"\nscript = 'print(\"ran c\");'\n");
    let output = site.test().arg("a").run();
    let order: Vec<&str> = output.stdout.lines().filter(|l| l.starts_with("ran ")).collect();
    assert_eq!(order, ["ran c", "ran b", "ran a"]);
}

#[test]
fn dependency_cycle_is_named() {
    let site = Site::new();
    site.site_file("tasks/a.toml", "description = \"a\"\ndeps = [\"b\"]\nscript = '1'\n");
    site.site_file("tasks/b.toml", "description = \"b\"\ndeps = [\"a\"]\nscript = '1'\n");
    site.test().arg("--list").status(2).stderr_contains("dependency cycle: a -> b -> a").run();
}

#[test]
fn unknown_dependency_is_a_definition_error() {
    let site = Site::new();
    site.site_file("tasks/a.toml", "description = \"a\"\ndeps = [\"nope\"]\nscript = '1'\n");
    site.test().arg("--list").status(2).stderr_contains("task a depends on unknown task nope").run();
}

#[test]
fn invalid_toml_points_at_the_line() {
    let site = Site::new();
    site.site_file("tasks/broken.toml", "description = \"x\"\ngroup = = \"y\"\nscript = '1'\n");
    let output = site.test().arg("--list").status(2).stderr_contains("invalid task file for broken").run();
    assert!(output.stderr.contains("broken.toml:2:"), "{}", output.stderr);
    assert!(output.stderr.contains("2 | group = = \"y\""), "{}", output.stderr);
    assert!(output.stderr.contains('^'), "{}", output.stderr);
}

#[test]
fn unknown_field_is_rejected() {
    let site = Site::new();
    site.site_file("tasks/odd.toml", "description = \"x\"\nscrpt = '1'\n");
    site.test().arg("--list").status(2).stderr_contains("unknown field `scrpt`").run();
}

#[test]
fn rhai_syntax_error_points_at_file_line_column() {
    let site = Site::new();
    site.site_file("tasks/bad.toml", "description = \"bad\"\nscript_file = \"bad.rhai\"\n");
    site.site_file("tasks/bad.rhai", "let a = 1;\nlet b = ;\n");
    let output = site.test().arg("bad").status(2).run();
    assert!(output.stderr.contains("invalid Rhai in"), "{}", output.stderr);
    assert!(output.stderr.contains("bad.rhai:2:9"), "{}", output.stderr);
    assert!(output.stderr.contains("2 | let b = ;"), "{}", output.stderr);
}

#[test]
fn inline_script_errors_count_lines_of_the_toml() {
    let site = Site::new();
    site.site_file("tasks/bad.toml", "description = \"bad\"\nscript = '''\nlet a = 1;\nlet b = ;\n'''\n");
    let output = site.test().arg("bad").status(2).run();
    assert!(output.stderr.contains("bad.toml:4:"), "{}", output.stderr);
}

#[test]
fn syntax_error_in_a_dep_runs_nothing() {
    let site = Site::new();
    site.site_file("tasks/a.toml", "description = \"a\"\ndeps = [\"b\"]\nscript = 'let = ;'\n");
    site.site_file("tasks/b.toml", "description = \"b\"\nscript = 'print(\"b ran\");'\n");
    let output = site.test().arg("a").status(2).run();
    assert!(!output.stdout.contains("b ran"));
}

#[test]
fn runtime_error_is_a_task_failure_with_location() {
    let site = Site::new();
    site.site_file("tasks/boom.toml", "description = \"boom\"\nscript_file = \"boom.rhai\"\n");
    site.site_file("tasks/boom.rhai", "let x = 1;\nthrow \"something broke\";\n");
    let output = site.test().arg("boom").status(1).stderr_contains("boom failed: something broke").run();
    assert!(output.stderr.contains("boom.rhai:2:1"), "{}", output.stderr);
}

#[test]
fn task_reporting_a_problem_exits_1() {
    let site = Site::new();
    site.site_file(
        "tasks/check.toml",
        "description = \"check\"\nscript = '#{ ok: false, message: \"2 clients are not isolated\" }'\n",
    );
    site.test().arg("check").status(1).stderr_contains("2 clients are not isolated").run();
}

#[test]
fn script_file_cannot_escape_the_task_dir() {
    let site = Site::new();
    site.site_file("tasks/x.toml", "description = \"x\"\nscript_file = \"../../etc/passwd\"\n");
    site.test().arg("--list").status(2).stderr_contains("must name a file beside the task file").run();
}
