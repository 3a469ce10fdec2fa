//! Every hostile input of tests/data/hostile.jsonl, given as each of create-client's
//! variables: rejected with exit 2 and nothing written, or accepted and then every
//! generated file parses and holds the exact value, and nothing lands outside the roots.

use std::{fs, path::Path};

use crate::{create_client::bash_value, test::Site};

pub fn corpus() -> Vec<String> {
    let text = include_str!("data/hostile.jsonl");
    text.lines().map(|line| serde_json::from_str(line).expect("corpus line is a JSON string")).collect()
}

fn valid(var: &str) -> &'static str {
    match var {
        "CLIENT_ID" => "hostile",
        "CLIENT_NAME" => "Hostile Inc",
        _ => "hostile.example.com",
    }
}

/// Every file under `dir`, for checking that nothing was written outside the roots.
fn files_under(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir).into_iter().flatten().map(|e| e.path().display().to_string()).collect()
}

fn check_var(var: &str) {
    let mut accepted = 0;
    let mut rejected = 0;
    for value in corpus() {
        if value.contains('\0') {
            // No process can receive a NUL in argv or the environment; the OS stops it first.
            assert!(std::process::Command::new("true").arg(&value).status().is_err());
            rejected += 1;
            continue;
        }
        let site = Site::new();
        let assignments: Vec<String> = ["CLIENT_ID", "CLIENT_NAME", "CLIENT_DOMAIN"]
            .iter()
            .map(|name| format!("{name}={}", if *name == var { value.as_str() } else { valid(name) }))
            .collect();
        // Hostile values concern the files; a restic repository per run (≈ 2.5 s of key
        // derivation each) would add minutes and test nothing more.
        let mut test = site.test().env("AGENCY_BACKUPS", "off").arg("create-client");
        for assignment in &assignments {
            test = test.arg(assignment);
        }
        let before = site.snapshot();
        let output = test.run_unchecked();
        match output.status {
            2 => {
                rejected += 1;
                assert!(output.stderr.starts_with("error: "), "{var}={value:?}: {}", output.stderr);
                assert_eq!(
                    output.stderr.trim_end().lines().count(),
                    1,
                    "one-line error for {var}={value:?}: {}",
                    output.stderr
                );
                assert_eq!(site.snapshot(), before, "{var}={value:?} was rejected but wrote files");
            }
            0 => {
                accepted += 1;
                let id = if var == "CLIENT_ID" { value.as_str() } else { valid("CLIENT_ID") };
                let dir = site.client_dir(id);
                assert_eq!(dir.parent().unwrap(), site.root().join("clients"), "{var}={value:?}");
                let env = dir.join("client.env");
                assert_eq!(bash_value(&env, var), value, "{var}={value:?} does not round-trip through bash");
                let realm: serde_json::Value =
                    serde_json::from_str(&fs::read_to_string(dir.join("keycloak/realm.json")).unwrap()).unwrap();
                if var == "CLIENT_NAME" {
                    assert_eq!(realm["displayName"], value.as_str());
                }
                for yaml in ["docker-compose.override.yml", "traefik.yml"] {
                    let text = fs::read_to_string(dir.join(yaml)).unwrap();
                    yaml_rust2::YamlLoader::load_from_str(&text)
                        .unwrap_or_else(|e| panic!("{yaml} for {var}={value:?}: {e}"));
                }
                for path in files_under(site.path()) {
                    assert!(path.starts_with(&site.path().display().to_string()), "{path} outside the site");
                }
            }
            other => panic!("{var}={value:?}: exit {other}\n{}", output.stderr),
        }
    }
    assert!(accepted + rejected >= 60, "the corpus holds at least 60 inputs");
    assert!(!Path::new("/tmp/agency-hostile-pwned").exists(), "a hostile value ran a command");
}

#[test]
fn hostile_client_ids() {
    check_var("CLIENT_ID");
}

#[test]
fn hostile_client_names() {
    check_var("CLIENT_NAME");
}

#[test]
fn hostile_client_domains() {
    check_var("CLIENT_DOMAIN");
}
