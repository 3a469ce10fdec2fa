//! SPEC §3: the Rhai sandbox.

use crate::test::Site;

fn task(site: &Site, name: &str, script: &str) {
    site.site_file(
        &format!("tasks/{name}.toml"),
        &format!("description = \"{name}\"\nscript_file = \"{name}.rhai\"\n"),
    );
    site.site_file(&format!("tasks/{name}.rhai"), script);
}

#[test]
fn eval_is_disabled() {
    let site = Site::new();
    task(&site, "ev", "eval(\"1 + 1\");\n");
    site.test().arg("ev").status(2).stderr_contains("eval").run();
}

#[test]
fn undefined_variables_are_rejected_before_running() {
    let site = Site::new();
    task(&site, "strict", "print(\"started\");\nprint(NOT_DECLARED);\n");
    let output = site.test().arg("strict").status(2).stderr_contains("NOT_DECLARED").run();
    assert!(!output.stdout.contains("started"));
}

#[test]
fn endless_loops_hit_the_operation_limit() {
    let site = Site::new();
    site.site_file(
        "tasks/spin.toml",
        "description = \"spin\"\nmax_operations = 10000\nscript = 'let i = 0; loop { i += 1; }'\n",
    );
    site.test().arg("spin").status(1).stderr_contains("spin failed").run();
}

#[test]
fn timeout_stops_a_task() {
    let site = Site::new();
    site.site_file("tasks/slow.toml", "description = \"slow\"\ntimeout = \"200ms\"\nscript = 'loop { }'\n");
    site.test().arg("slow").status(1).stderr_contains("timeout expired").run();
}

#[test]
fn deep_recursion_hits_the_call_depth_limit() {
    let site = Site::new();
    task(&site, "deep", "fn f(n) { f(n + 1) }\nf(0);\n");
    site.test().arg("deep").status(1).stderr_contains("deep failed").run();
}

#[test]
fn imports_resolve_beside_the_script_only() {
    let site = Site::new();
    site.site_file("tasks/lib/greet.rhai", "fn hello(name) { \"hello \" + name }\n");
    task(&site, "imp", "import \"lib/greet\" as g;\nprint(g::hello(\"acme\"));\n");
    site.test().arg("imp").stdout_contains("hello acme").run();

    task(&site, "escape", "import \"../../secret\" as s;\n");
    site.test().arg("escape").status(1).stderr_contains("is not allowed").run();
    task(&site, "absolute", "import \"/etc/passwd\" as s;\n");
    site.test().arg("absolute").status(1).stderr_contains("is not allowed").run();
}

#[test]
fn files_outside_the_roots_are_refused() {
    let site = Site::new();
    task(&site, "out", "fs::write(\"/tmp/agency-escape-test\", \"x\", 0o644);\n");
    site.test().arg("out").status(1).stderr_contains("outside the configured roots").run();
    assert!(!std::path::Path::new("/tmp/agency-escape-test").exists());
    task(&site, "dots", "fs::read(layout::roots().root + \"/../../etc/passwd\");\n");
    site.test().arg("dots").status(1).stderr_contains("must not contain '.' or '..'").run();
}

#[test]
fn symlinks_out_of_a_root_are_refused() {
    let site = Site::new();
    std::fs::create_dir_all(site.root()).unwrap();
    std::os::unix::fs::symlink("/etc", site.root().join("etc")).unwrap();
    task(&site, "link", "fs::read(layout::roots().root + \"/etc/hostname\");\n");
    site.test().arg("link").status(1).stderr_contains("through a symlink").run();
}
