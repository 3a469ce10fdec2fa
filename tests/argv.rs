//! What agency hands its children (issue 9, SPEC §5): a PATH shim records the argv of every
//! docker, restic and curl process of a full client cycle on the real engine, real restic and
//! the Keycloak fake. No secret value (any generation of secrets.env, the Keycloak admin
//! password, an issued token) is in any argv. And a dry run of every task starts no child that
//! changes anything, sends no changing request and writes no file: every mutation goes
//! through the effects layer. The client-data tests (tests/client_data.rs) run this shim
//! through backups, restores and verifications of real databases.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use crate::{
    support::{
        docker::{Scratch, scratch_pool, unique},
        fake_keycloak::FakeKeycloak,
    },
    test::{Site, Test},
};

const ADMIN_PASSWORD: &str = "Kc-admin-pw-argv-shim";

/// A directory of `docker`, `restic` and `curl` shims, first on PATH: each writes its argv
/// (NUL-separated, one file per process, so parallel children never mix) then runs the real
/// program.
pub(crate) struct Shim {
    bin: PathBuf,
    log: PathBuf,
}

impl Shim {
    pub(crate) fn new(dir: &Path) -> Self {
        let bin = dir.join("shim-bin");
        let log = dir.join("argv");
        fs::create_dir_all(&bin).unwrap();
        fs::create_dir_all(&log).unwrap();
        for program in ["docker", "restic", "curl"] {
            let real = crate::containers::which(program).unwrap_or_else(|| panic!("{program} on PATH"));
            let script = format!(
                "#!/bin/sh\nout='{}'/\"{program}.$$\"\nfor arg in {program} \"$@\"; do printf '%s\\0' \"$arg\"; done > \"$out\"\nexec '{}' \"$@\"\n",
                log.display(),
                real.display()
            );
            let path = bin.join(program);
            fs::write(&path, script).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        Self { bin, log }
    }

    /// PATH with the shims first.
    pub(crate) fn path(&self) -> String {
        format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap_or_default())
    }

    /// Every recorded argv, the program first.
    pub(crate) fn argvs(&self) -> Vec<Vec<String>> {
        let mut argvs: Vec<Vec<String>> = fs::read_dir(&self.log)
            .unwrap()
            .flatten()
            .map(|e| {
                let bytes = fs::read(e.path()).unwrap();
                bytes
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .collect();
        argvs.sort();
        argvs
    }

    fn clear(&self) {
        for entry in fs::read_dir(&self.log).unwrap().flatten() {
            fs::remove_file(entry.path()).unwrap();
        }
    }
}

fn live<'a>(test: Test<'a>, shim: &Shim, keycloak: &FakeKeycloak, pool: &str) -> Test<'a> {
    test.env("PATH", &shim.path())
        .env("KEYCLOAK_URL", &keycloak.url())
        .env("KEYCLOAK_ADMIN", "admin")
        .env("KEYCLOAK_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("AGENCY_SUBNET_POOL", pool)
        .env("AGENCY_SUBNET_PREFIX", "28")
}

/// Every secret value the site holds: all generations of secrets.env.
pub(crate) fn secret_values(site: &Site, id: &str) -> Vec<(String, String)> {
    let dir = site.secrets_file(id).parent().unwrap().to_path_buf();
    let mut files = vec![site.secrets_file(id)];
    if let Ok(history) = fs::read_dir(dir.join("history")) {
        files.extend(history.flatten().map(|e| e.path()));
    }
    let mut values = Vec::new();
    for file in files {
        for (key, value) in agency::format::envfile::parse(&fs::read_to_string(&file).unwrap()).unwrap() {
            values.push((format!("{key} of {}", file.display()), value));
        }
    }
    values
}

#[test]
fn no_secret_reaches_the_argv_of_any_child_in_a_full_cycle() {
    let docker = crate::require_docker!();
    let scratch = Scratch::new(&docker);
    let keycloak = FakeKeycloak::builder().admin("admin", ADMIN_PASSWORD).start();
    let site = Site::with_docker();
    let shim = Shim::new(site.path());
    let id = scratch.client(&unique("argv"));
    let pool = scratch_pool(24);
    let client = format!("CLIENT_ID={id}");
    let restored = site.path().join("restored").display().to_string();

    let runs: [&[&str]; 8] = [
        &["create-client", &client, "CLIENT_NAME=Argv Shim", &format!("CLIENT_DOMAIN={id}.example.com")],
        &["setup-roles", &client, "RESET_PASSWORD=1"],
        &["backup-client", &client],
        &["verify-backup", &client],
        &["rotate-secrets", &client],
        &["backup-client", &client],
        &["restore-client", &client, &format!("TARGET={restored}")],
        &["multi-tenancy-status", &client, "DEEP=1", "INSPECT=1"],
    ];
    let mut outputs = Vec::new();
    for (index, args) in runs.into_iter().enumerate() {
        if index == 1 {
            // A routed service with an OIDC client (as deploy-client records its stack's):
            // setup-roles creates it with its secret, rotate-secrets sets a new one.
            let env_file = site.client_dir(&id).join("client.env");
            let mut text = fs::read_to_string(&env_file).unwrap();
            text.push_str("OIDC_SERVICES='web'\n");
            fs::write(&env_file, text).unwrap();
        }
        let test = live(site.test(), &shim, &keycloak, &pool).args(args);
        let output = test.run();
        outputs.push((args.join(" "), format!("{}{}", output.stdout, output.stderr)));
    }
    assert!(keycloak.client_rep(&id, "web").is_some(), "the OIDC client was made");

    let argvs = shim.argvs();
    let count = |program: &str| argvs.iter().filter(|a| a[0] == program).count();
    assert!(count("docker") >= 5, "docker ran through the shim: {argvs:?}");
    assert!(count("restic") >= 8, "restic ran through the shim: {argvs:?}");
    assert!(count("curl") >= 10, "curl ran through the shim: {argvs:?}");
    // The restic key really changed and the live password followed (the cycle did its work).
    let history = site.secrets_file(&id).parent().unwrap().join("history");
    assert_eq!(fs::read_dir(&history).unwrap().count(), 1, "one rotation happened");

    let mut secrets = secret_values(&site, &id);
    assert!(secrets.len() >= 10, "two generations of five secrets");
    let client_secrets = secrets.iter().filter(|(name, _)| name.starts_with("OIDC_SECRET_WEB of")).count();
    assert_eq!(client_secrets, 2, "both generations of the OIDC client's secret are checked");
    secrets.push(("KEYCLOAK_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()));
    let tokens = keycloak.issued_tokens();
    assert!(!tokens.is_empty());
    secrets.extend(tokens.into_iter().map(|t| ("an issued Keycloak token".to_string(), t)));
    for argv in &argvs {
        for arg in argv {
            for (name, value) in &secrets {
                assert!(!arg.contains(value.as_str()), "{name} is in the argv of {argv:?}");
            }
        }
    }
    for (run, output) in &outputs {
        for (name, value) in &secrets {
            assert!(!output.contains(value.as_str()), "{name} is in the output of {run}");
        }
    }
    let mut programs: BTreeMap<&str, usize> = BTreeMap::new();
    for argv in &argvs {
        *programs.entry(argv[0].as_str()).or_default() += 1;
    }
    eprintln!("argv shim: {programs:?} children, {} secret values checked", secrets.len());
}

/// Whether a recorded child changes something (by its subcommand).
fn mutates(argv: &[String]) -> bool {
    let words: Vec<&str> = argv.iter().map(String::as_str).filter(|a| !a.starts_with('-')).collect();
    match words.as_slice() {
        ["docker", "network", sub, ..] => !matches!(*sub, "ls" | "inspect"),
        ["docker", "volume", sub, ..] => !matches!(*sub, "ls" | "inspect"),
        ["docker", "image", sub, ..] => !matches!(*sub, "ls" | "inspect"),
        ["docker", "compose", sub, ..] => !matches!(*sub, "version" | "config" | "ps"),
        ["docker", sub, ..] => !matches!(*sub, "version" | "info" | "ps" | "inspect" | "images"),
        ["restic", "key", sub, ..] => *sub != "list",
        ["restic", "forget", ..] => !argv.iter().any(|a| a == "--dry-run" || a == "-n"),
        // verify-backup's test restore into a private temp dir, removed afterwards: a read.
        ["restic", "restore", ..] => !argv.iter().any(|a| {
            a.strip_prefix("--target=")
                .is_some_and(|t| t.starts_with(&format!("{}/agency-verify-", std::env::temp_dir().display())))
        }),
        ["restic", sub, ..] => !matches!(*sub, "cat" | "snapshots" | "ls" | "stats" | "check" | "version" | "list"),
        _ => false,
    }
}

/// A dry run of every task (every bool variable set, so FIX=1 and friends plan their
/// repairs), on a client with something to repair and one not created yet: no child that
/// changes anything, no changing request to Keycloak, no file touched.
#[test]
fn a_dry_run_of_every_task_starts_no_changing_child_and_writes_nothing() {
    let docker = crate::require_docker!();
    let scratch = Scratch::new(&docker);
    let keycloak = FakeKeycloak::builder().admin("admin", ADMIN_PASSWORD).start();
    let site = Site::with_docker();
    let shim_dir = tempfile::tempdir().unwrap();
    let shim = Shim::new(shim_dir.path());
    let id = scratch.client(&unique("dry"));
    let fresh = scratch.client(&unique("new"));
    let pool = scratch_pool(24);
    live(site.test(), &shim, &keycloak, &pool)
        .args([
            "create-client",
            &format!("CLIENT_ID={id}"),
            "CLIENT_NAME=Dry",
            &format!("CLIENT_DOMAIN={id}.example.com"),
        ])
        .run();
    live(site.test(), &shim, &keycloak, &pool).args(["backup-client", &format!("CLIENT_ID={id}")]).run();
    // Things to repair, rotate, recreate.
    fs::remove_file(site.log_root().join(format!("clients/{id}/error.log"))).unwrap();
    fs::set_permissions(site.secrets_file(&id), fs::Permissions::from_mode(0o644)).unwrap();
    scratch.docker(&["network", "rm", &format!("{id}_backend")]);
    keycloak.clear_requests();
    shim.clear();
    let before = site.snapshot();

    let list = site.test().args(["--list", "--json"]).run().json();
    let mut planned = 0;
    for task in list["tasks"].as_array().unwrap() {
        let name = task["name"].as_str().unwrap();
        let explain = site.test().args(["--explain", name, "--json"]).run().json();
        for client in [&id, &fresh] {
            let mut test = live(site.test(), &shim, &keycloak, &pool).args(["-n", "--json"]).arg(name);
            for var in explain["vars"].as_array().unwrap() {
                let var_name = var["name"].as_str().unwrap();
                let value = match (var_name, var["kind"].as_str()) {
                    ("CLIENT_ID", _) => client.to_string(),
                    ("CLIENT_NAME", _) => "Dry".to_string(),
                    ("CLIENT_DOMAIN", _) => format!("{client}.example.com"),
                    ("TARGET", _) => site.path().join("restore-target").display().to_string(),
                    ("UNIT", _) => format!("agency-backup@{client}.service"),
                    (_, Some("bool")) if var_name != "PROBE" => "1".to_string(),
                    _ if var["required"] == true => panic!("no test value for the required {var_name} of {name}"),
                    _ => continue,
                };
                test = test.arg(&format!("{var_name}={value}"));
            }
            let output = test.run_unchecked();
            assert_ne!(output.status, 2, "{name}: {}", output.stderr);
            if output.stdout.trim_start().starts_with('{') {
                planned += output.json()["tasks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|t| t["changes"].as_array().unwrap().clone())
                    .filter(|c| c["planned"] == true)
                    .count();
            }
        }
    }
    assert!(planned >= 30, "the dry runs planned changes ({planned})");
    let changing: Vec<Vec<String>> = shim.argvs().into_iter().filter(|a| mutates(a)).collect();
    assert!(changing.is_empty(), "a dry run started children that change things: {changing:#?}");
    assert!(shim.argvs().iter().any(|a| a[0] == "docker"), "the dry runs still looked at the engine");
    let requests: Vec<String> = keycloak.mutations().iter().map(|r| r.line()).collect();
    assert!(requests.is_empty(), "a dry run sent changing requests to Keycloak: {requests:#?}");
    let after = site.snapshot();
    let changed: Vec<&String> = after
        .iter()
        .filter(|entry| !before.contains(entry))
        .chain(before.iter().filter(|entry| !after.contains(entry)))
        .map(|(path, _, _)| path)
        .collect();
    assert!(changed.is_empty(), "dry runs changed these files: {changed:#?}");
}
