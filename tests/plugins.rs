//! SPEC §4: plugins — hooks, loading order, overrides, conflicts, errors, dry run, imports.

use std::fs;

use crate::test::Site;

fn plugin(site: &Site, name: &str, hooks: &str) {
    site.site_file(
        &format!("plugins/{name}/plugin.toml"),
        &format!(
            "name = \"{name}\"\nversion = \"1.2.3\"\ndescription = \"test plugin {name}\"\nrequires_agency = \"0.1\"\n"
        ),
    );
    if !hooks.is_empty() {
        site.site_file(&format!("plugins/{name}/plugin.rhai"), hooks);
    }
}

/// A site task `greet` (after a dep `prep`) that writes a file, so after-hooks see a change.
fn greet_tasks(site: &Site) {
    site.site_file("tasks/prep.toml", "description = \"prep\"\nscript = 'print(\"task prep\");'\n");
    site.site_file(
        "tasks/greet.toml",
        "description = \"greet\"\ndeps = [\"prep\"]\nlock = \"none\"\nscript_file = \"greet.rhai\"\n\n\
         [vars.WHO]\ndefault = \"world\"\n\n[vars.MOOD]\nrequired = true\n",
    );
    site.site_file(
        "tasks/greet.rhai",
        "print(\"task greet \" + WHO);\n\
         fs::mkdir(layout::roots().root, 0o755);\n\
         fs::write(layout::roots().root + \"/greeting.txt\", \"hello \" + WHO, 0o644);\n\
         #{ greeting: \"hello \" + WHO }\n",
    );
}

fn recording_hooks(name: &str) -> String {
    format!(
        "fn before_prep(vars) {{ print(\"{name} before prep\"); }}\n\
         fn before_greet(vars) {{ print(\"{name} before greet WHO=\" + vars.WHO + \" MOOD=\" + vars.MOOD); }}\n\
         fn after_greet(vars, result) {{\n\
         \x20   let c = result.changes[result.changes.len() - 1];\n\
         \x20   print(\"{name} after greet \" + result.value.greeting + \" task=\" + result.task\n\
         \x20       + \" last=\" + c.action + \":\" + c.outcome + \" dry_run=\" + result.dry_run);\n\
         }}\n"
    )
}

fn lines_with<'a>(stdout: &'a str, words: &[&str]) -> Vec<&'a str> {
    stdout.lines().filter(|l| words.iter().any(|w| l.starts_with(w))).collect()
}

#[test]
fn hooks_run_in_loading_order_around_each_task_with_its_variables() {
    let site = Site::new();
    greet_tasks(&site);
    // Loading (and hook) order is by plugin name, whatever the creation order.
    plugin(&site, "zeta", &recording_hooks("zeta"));
    plugin(&site, "alpha", &recording_hooks("alpha"));
    let output = site.test().args(["greet", "MOOD=sunny"]).run();
    assert_eq!(
        lines_with(&output.stdout, &["alpha", "zeta", "task"]),
        [
            "alpha before prep",
            "zeta before prep",
            "task prep",
            "alpha before greet WHO=world MOOD=sunny",
            "zeta before greet WHO=world MOOD=sunny",
            "task greet world",
            "alpha after greet hello world task=greet last=write:created dry_run=false",
            "zeta after greet hello world task=greet last=write:created dry_run=false",
        ]
    );
}

#[test]
fn json_report_names_the_hooks_and_holds_their_output() {
    let site = Site::new();
    greet_tasks(&site);
    plugin(&site, "alpha", &recording_hooks("alpha"));
    let output = site.test().args(["--json", "greet", "MOOD=grey", "WHO=acme"]).run();
    let json = output.json();
    let greet = &json["tasks"][1];
    assert_eq!(greet["hooks"], serde_json::json!(["alpha: before_greet", "alpha: after_greet"]));
    let printed: Vec<&str> = greet["output"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(printed.contains(&"alpha before greet WHO=acme MOOD=grey"), "{printed:?}");
    // print() in a hook reaches the terminal (stderr under --json).
    assert!(output.stderr.contains("alpha after greet hello acme"), "{}", output.stderr);
}

#[test]
fn hook_changes_are_made_and_attributed_to_the_plugin() {
    let site = Site::new();
    greet_tasks(&site);
    plugin(
        &site,
        "stamp",
        "fn after_greet(vars, result) {\n    fs::write(layout::roots().root + \"/stamp.txt\", result.value.greeting, 0o600);\n}\n",
    );
    let output = site.test().args(["greet", "MOOD=ok"]).stdout_contains("[plugin stamp]").run();
    assert!(output.stdout.contains("stamp.txt"), "{}", output.stdout);
    let stamp = site.root().join("stamp.txt");
    assert_eq!(fs::read_to_string(&stamp).unwrap(), "hello world");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&stamp).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn dry_run_records_hook_mutations_without_doing_them() {
    let site = Site::new();
    greet_tasks(&site);
    plugin(&site, "alpha", &recording_hooks("alpha"));
    plugin(
        &site,
        "stamp",
        "fn before_greet(vars) {\n    fs::mkdir(layout::roots().root, 0o755);\n    fs::write(layout::roots().root + \"/before.txt\", \"x\", 0o644);\n}\n\
         fn after_greet(vars, result) {\n    fs::write(layout::roots().root + \"/after.txt\", \"y\", 0o644);\n}\n",
    );
    let before = site.snapshot();
    let output = site
        .test()
        .args(["-n", "greet", "MOOD=ok"])
        .stdout_contains("alpha after greet hello world task=greet last=write:created dry_run=true")
        .stdout_contains("nothing was changed")
        .run();
    let planned: Vec<&str> = output.stdout.lines().filter(|l| l.contains("[plugin stamp]")).collect();
    assert_eq!(planned.len(), 3, "{}", output.stdout);
    assert!(planned.iter().all(|l| l.contains("would create")), "{planned:?}");
    assert!(planned[1].contains("before.txt") && planned[2].contains("after.txt"), "{planned:?}");
    assert_eq!(site.snapshot(), before, "a dry run changed files");

    let json = site.test().args(["-n", "--json", "greet", "MOOD=ok"]).run().json();
    let changes = json["tasks"][1]["changes"].as_array().unwrap();
    let hooked: Vec<_> = changes.iter().filter(|c| c["plugin"] == "stamp").collect();
    assert_eq!(hooked.len(), 3);
    assert!(hooked.iter().all(|c| c["planned"] == true));
    assert_eq!(site.snapshot(), before);
}

#[test]
fn a_throwing_after_hook_fails_the_run_naming_plugin_file_and_line() {
    let site = Site::new();
    greet_tasks(&site);
    plugin(&site, "broken", "fn after_greet(vars, result) {\n    let x = 1;\n    throw \"cannot reach the CRM\";\n}\n");
    let output = site
        .test()
        .args(["greet", "MOOD=ok"])
        .status(1)
        .stderr_contains("greet failed: plugin broken: after_greet: cannot reach the CRM")
        .run();
    assert!(output.stderr.contains("plugins/broken/plugin.rhai:3:5"), "{}", output.stderr);
    assert!(output.stderr.contains("3 |     throw \"cannot reach the CRM\";"), "{}", output.stderr);

    let json = site.test().args(["--json", "greet", "MOOD=ok"]).status(1).run().json();
    assert_eq!(json["ok"], false);
    assert!(json["error"]["location"].as_str().unwrap().ends_with("plugins/broken/plugin.rhai:3:5"), "{json}");
    assert_eq!(json["error"]["exit_code"], 1);
}

#[test]
fn a_throwing_before_hook_stops_the_task_before_it_runs() {
    let site = Site::new();
    greet_tasks(&site);
    plugin(
        &site,
        "guard",
        "fn before_greet(vars) {\n    if vars.MOOD == \"bad\" {\n        throw \"not today\";\n    }\n}\n",
    );
    let output = site
        .test()
        .args(["greet", "MOOD=bad"])
        .status(1)
        .stderr_contains("plugin guard: before_greet: not today")
        .stdout_lacks("task greet")
        .run();
    assert!(output.stderr.contains("plugins/guard/plugin.rhai:3:9"), "{}", output.stderr);
    assert!(!site.root().join("greeting.txt").exists(), "the task ran after its before hook failed");
    site.test().args(["greet", "MOOD=good"]).stdout_contains("task greet").run();
}

#[test]
fn hook_errors_in_imported_plugin_code_name_that_file() {
    let site = Site::new();
    greet_tasks(&site);
    plugin(&site, "deep", "import \"lib/check\" as check;\nfn before_greet(vars) {\n    check::mood(vars.MOOD);\n}\n");
    site.site_file("plugins/deep/lib/check.rhai", "fn mood(m) {\n    if m == \"x\" { throw \"mood x refused\"; }\n}\n");
    site.test().args(["greet", "MOOD=fine"]).stdout_contains("task greet").run();
    let output = site.test().args(["greet", "MOOD=x"]).status(1).stderr_contains("mood x refused").run();
    assert!(output.stderr.contains("plugins/deep/lib/check.rhai:2:"), "{}", output.stderr);
}

#[test]
fn invalid_plugin_rhai_is_a_definition_error_and_nothing_runs() {
    let site = Site::new();
    greet_tasks(&site);
    plugin(&site, "typo", "fn after_greet(vars, result) {\n    let = 1;\n}\n");
    let output = site.test().args(["greet", "MOOD=ok"]).status(2).stdout_lacks("task prep").run();
    assert!(output.stderr.contains("plugins/typo/plugin.rhai:2:"), "{}", output.stderr);
}

#[test]
fn a_hook_with_the_wrong_parameters_is_a_definition_error() {
    let site = Site::new();
    greet_tasks(&site);
    plugin(&site, "arity", "fn after_greet(vars) { print(\"never\"); }\n");
    site.test()
        .args(["greet", "MOOD=ok"])
        .status(2)
        .stderr_contains("plugin arity: hook after_greet for task greet must take 2 parameter(s)")
        .run();
}

#[test]
fn a_plugin_needing_a_newer_runner_is_refused() {
    let site = Site::new();
    site.site_file(
        "plugins/future/plugin.toml",
        "name = \"future\"\nversion = \"3.0.0\"\ndescription = \"from the future\"\nrequires_agency = \">=99.1\"\n",
    );
    site.test()
        .arg("--list")
        .status(2)
        .stderr_contains(&format!(
            "plugin future 3.0.0 needs agency 99.1 or newer; this is agency {}",
            env!("CARGO_PKG_VERSION")
        ))
        .stderr_contains("plugins/future/plugin.toml")
        .run();
}

#[test]
fn manifest_errors_are_definition_errors() {
    let site = Site::new();
    site.site_file(
        "plugins/x1/plugin.toml",
        "name = \"other\"\nversion = \"1\"\ndescription = \"d\"\nrequires_agency = \"0.1\"\n",
    );
    site.test().arg("--list").status(2).stderr_contains("differs from its directory name \"x1\"").run();

    let site = Site::new();
    site.site_file("plugins/x2/plugin.toml", "name = \"x2\"\nversion = \"1\"\ndescription = \"d\"\n");
    site.test().arg("--list").status(2).stderr_contains("missing field `requires_agency`").run();

    let site = Site::new();
    site.site_file("plugins/x3/plugin.rhai", "fn before_x(v) {}\n");
    site.test().arg("--list").status(2).stderr_contains("has no plugin.toml").run();
}

#[test]
fn plugin_task_overrides_builtin_and_site_task_overrides_plugin_and_explain_says_so() {
    let site = Site::new();
    plugin(&site, "custom", "");
    site.site_file(
        "plugins/custom/tasks/setup-log-segmentation.toml",
        "description = \"Plugin logging\"\nscript = 'print(\"plugin version\");'\n\n[vars.CLIENT_ID]\nkind = \"client_id\"\n",
    );
    site.test().args(["setup-log-segmentation"]).stdout_contains("plugin version").run();
    site.test()
        .args(["--explain", "setup-log-segmentation"])
        .stdout_contains("loaded:   site plugin custom")
        .stdout_contains("overrides built-in (<built-in>/tasks/setup-log-segmentation.toml)")
        .run();
    let listed = site.test().args(["--list", "--json"]).run().json();
    let task =
        listed["tasks"].as_array().unwrap().iter().find(|t| t["name"] == "setup-log-segmentation").unwrap().clone();
    assert_eq!(task["origin"], "site plugin custom");

    // The site's own tasks/ has the last word.
    site.site_file(
        "tasks/setup-log-segmentation.toml",
        "description = \"Site logging\"\nscript = 'print(\"site version\");'\n\n[vars.CLIENT_ID]\nkind = \"client_id\"\n",
    );
    site.test().args(["setup-log-segmentation"]).stdout_contains("site version").stdout_lacks("plugin version").run();
    let explain = site.test().args(["--explain", "setup-log-segmentation"]).stdout_contains("loaded:   site dir").run();
    let overrides: Vec<&str> = explain.stdout.lines().filter(|l| l.trim_start().starts_with("overrides")).collect();
    assert_eq!(overrides.len(), 2, "{}", explain.stdout);
    assert!(overrides[0].contains("site plugin custom") && overrides[1].contains("built-in"), "{overrides:?}");
    let json = site.test().args(["--explain", "setup-log-segmentation", "--json"]).run().json();
    assert_eq!(json["overrides"][1]["origin"], "site plugin custom");
}

#[test]
fn explain_lists_the_hooks_a_task_gets() {
    let site = Site::new();
    greet_tasks(&site);
    plugin(&site, "alpha", &recording_hooks("alpha"));
    site.test()
        .args(["--explain", "greet"])
        .stdout_contains("hook:     before_greet from site plugin alpha (")
        .stdout_contains("hook:     after_greet from site plugin alpha (")
        .run();
    site.test()
        .args(["--explain", "alpha"])
        .stdout_contains("plugin alpha 1.2.3 - test plugin alpha")
        .stdout_contains("hooks:    after_greet, before_greet, before_prep (")
        .run();
    // Built-in example plugin: its hook shows on the task it hooks when that task exists.
    site.site_file(
        "tasks/rotate-secrets.toml",
        "description = \"r\"\nscript = '1'\n\n[vars.CLIENT_ID]\nkind = \"client_id\"\n",
    );
    site.test()
        .args(["--explain", "rotate-secrets"])
        .stdout_contains("hook:     after_rotate_secrets from built-in plugin db-passwords (<built-in>/plugins/db-passwords/plugin.rhai)")
        .run();
}

#[test]
fn two_plugins_defining_one_task_is_an_error_naming_both() {
    let site = Site::new();
    for name in ["one", "two"] {
        plugin(&site, name, "");
        site.site_file(&format!("plugins/{name}/tasks/dup.toml"), "description = \"dup\"\nscript = '1'\n");
    }
    let output =
        site.test().arg("--list").status(2).stderr_contains("task dup is defined by two plugins, one and two").run();
    assert!(output.stderr.contains("plugins/one/tasks/dup.toml"), "{}", output.stderr);
    assert!(output.stderr.contains("plugins/two/tasks/dup.toml"), "{}", output.stderr);

    // A site plugin clashing with a built-in plugin's task is the same conflict.
    let site = Site::new();
    plugin(&site, "mine", "");
    site.site_file("plugins/mine/tasks/client-report.toml", "description = \"mine\"\nscript = '1'\n");
    site.test()
        .arg("--list")
        .status(2)
        .stderr_contains("task client-report is defined by two plugins, client-report and mine")
        .run();
}

#[test]
fn a_site_plugin_named_like_a_builtin_one_replaces_it() {
    let site = Site::new();
    plugin(&site, "client-report", "");
    site.site_file(
        "plugins/client-report/tasks/client-report.toml",
        "description = \"site report\"\nlock = \"none\"\nscript = 'print(\"site report\");'\n",
    );
    site.test().arg("client-report").stdout_contains("site report").run();
    let json = site.test().args(["--list", "--json"]).run().json();
    let plugin = json["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "client-report").unwrap().clone();
    assert_eq!(plugin["origin"], "site plugin client-report");
    assert_eq!(plugin["replaces"], "<built-in>/plugins/client-report");
    let names: Vec<&str> = json["plugins"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["db-passwords", "stack-redeploy", "client-report"], "built-in plugins first, then site plugins");
}

#[test]
fn plugin_imports_stay_inside_the_plugin() {
    let site = Site::new();
    greet_tasks(&site);
    plugin(&site, "user", "import \"lib/util\" as u;\nfn before_greet(vars) { print(u::shout(vars.WHO)); }\n");
    site.site_file("plugins/user/lib/util.rhai", "fn shout(s) { s.to_upper() + \"!\" }\n");
    site.test().args(["greet", "MOOD=ok"]).stdout_contains("WORLD!").run();

    // Another plugin's directory, by path: refused before anything is read.
    plugin(&site, "other", "");
    site.site_file("plugins/other/lib/secret.rhai", "fn leak() { \"other plugin code\" }\n");
    site.site_file(
        "plugins/user/plugin.rhai",
        "import \"../other/lib/secret\" as s;\nfn before_greet(vars) { print(s::leak()); }\n",
    );
    site.test()
        .args(["greet", "MOOD=ok"])
        .status(1)
        .stderr_contains("is not allowed")
        .stdout_lacks("other plugin code")
        .run();

    // ... or through a symlink inside the plugin (to another plugin, or to the site's tasks/).
    std::os::unix::fs::symlink(site.site_dir().join("plugins/other/lib"), site.site_dir().join("plugins/user/other"))
        .unwrap();
    site.site_file(
        "plugins/user/plugin.rhai",
        "import \"other/secret\" as s;\nfn before_greet(vars) { print(s::leak()); }\n",
    );
    site.test()
        .args(["greet", "MOOD=ok"])
        .status(1)
        .stderr_contains("leads outside")
        .stdout_lacks("other plugin code")
        .run();
    site.site_file("tasks/lib/shared.rhai", "fn leak() { \"site task code\" }\n");
    std::os::unix::fs::symlink(site.site_dir().join("tasks/lib"), site.site_dir().join("plugins/user/tasklib"))
        .unwrap();
    site.site_file(
        "plugins/user/plugin.rhai",
        "import \"tasklib/shared\" as s;\nfn before_greet(vars) { print(s::leak()); }\n",
    );
    site.test()
        .args(["greet", "MOOD=ok"])
        .status(1)
        .stderr_contains("leads outside")
        .stdout_lacks("site task code")
        .run();
}

#[test]
fn list_shows_plugins_in_loading_order() {
    let site = Site::new();
    plugin(&site, "alpha", "");
    let output =
        site.test().arg("--list").stdout_contains("plugins (in loading order; hooks run in this order):").run();
    let section = output.stdout.split("plugins (in loading order").nth(1).unwrap();
    let names: Vec<&str> = section.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(names, ["client-report", "db-passwords", "stack-redeploy", "alpha"]);
}

#[test]
fn client_report_plugin_adds_a_read_only_task() {
    let site = Site::new();
    site.test()
        .args(["--explain", "client-report"])
        .stdout_contains(
            "loaded:   built-in plugin client-report (<built-in>/plugins/client-report/tasks/client-report.toml)",
        )
        .run();
    crate::create_client::create(&site, "acme", "ACME Corporation");
    let before = site.snapshot();
    let output = site
        .test()
        .arg("client-report")
        .stdout_contains("ID    NAME              DOMAIN            FILES  SECRETS  LOGS\nacme  ACME Corporation  acme.example.com  6/6    4        4\n")
        .run();
    assert!(!output.stdout.contains("missing"), "{}", output.stdout);
    let audit = site.log_root().join("clients/acme/audit.log").display().to_string();
    let without_audit =
        |s: Vec<(String, u32, Option<Vec<u8>>)>| s.into_iter().filter(|(p, _, _)| *p != audit).collect::<Vec<_>>();
    assert_eq!(without_audit(site.snapshot()), without_audit(before), "client-report changed files");

    fs::remove_file(site.client_dir("acme").join("traefik.yml")).unwrap();
    let json = site.test().args(["--json", "client-report", "CLIENT_ID=acme"]).run().json();
    let report = &json["tasks"][0]["result"]["clients"][0];
    assert_eq!(report["name"], "ACME Corporation");
    assert_eq!(report["missing"][0], site.client_dir("acme").join("traefik.yml").display().to_string());
    let secrets: Vec<&str> = report["secrets"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(secrets.contains(&"RESTIC_PASSWORD"), "{secrets:?}");
    let secret_file = fs::read_to_string(site.secrets_file("acme")).unwrap();
    for line in secret_file.lines() {
        let value = line.split_once('=').unwrap().1.trim_matches('\'');
        assert!(!json.to_string().contains(value), "a secret value in client-report's output");
    }
}

/// plugins/README.md's host API reference and the tables in src/host/*.rs stay in step with
/// what the host modules really register.
#[test]
fn plugin_readme_documents_every_host_function() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = fs::read_to_string(format!("{root}/plugins/README.md")).unwrap();
    let registered_re = regex::Regex::new(r#"(?:set_native_fn|register_fn)\(\s*"([a-z_]+)""#).unwrap();
    let mut registered = Vec::new();
    for entry in fs::read_dir(format!("{root}/src/host")).unwrap() {
        let path = entry.unwrap().path();
        let namespace = path.file_stem().unwrap().to_string_lossy().into_owned();
        let source = fs::read_to_string(&path).unwrap();
        let documented: Vec<&str> =
            source.lines().filter_map(|l| l.strip_prefix("//! | `")).filter_map(|l| l.split('`').next()).collect();
        for signature in &documented {
            assert!(readme.contains(&format!("| `{signature}` |")), "plugins/README.md lacks {signature}");
        }
        for name in registered_re.captures_iter(&source).map(|c| c[1].to_string()) {
            let qualified = if namespace == "mod" { format!("{name}(") } else { format!("{namespace}::{name}(") };
            if namespace != "mod" {
                assert!(
                    documented.iter().any(|s| s.starts_with(&qualified)),
                    "{} registers {qualified}...) but its doc table lacks it",
                    path.display()
                );
            }
            assert!(readme.contains(&format!("| `{qualified}")), "plugins/README.md lacks {qualified}...)");
            registered.push(qualified);
        }
    }
    let row_re = regex::Regex::new(r"(?m)^\| `([a-z_]+::[a-z_]+\()").unwrap();
    for documented in row_re.captures_iter(&readme).map(|c| c[1].to_string()) {
        assert!(
            registered.contains(&documented),
            "plugins/README.md documents {documented}...) which no host module registers"
        );
    }
}
