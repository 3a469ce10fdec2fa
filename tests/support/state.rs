//! A client as a user would compare it between two sites, and the create-client runs the
//! fault tests (tests/crash.rs) and the concurrency test make.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
};

use agency::{drivers::docker::Docker, tenant::subnet::Ipv4Net};

use crate::{
    support::docker::client_networks,
    test::{Output, Site},
};

/// create-client in `site` for `id`, with the subnet pool every run of a test shares.
pub fn create_args(id: &str, pool: &str) -> Vec<String> {
    vec![
        "create-client".into(),
        format!("CLIENT_ID={id}"),
        "CLIENT_NAME=Crash \"Test\" $(id) Ltd".into(),
        format!("CLIENT_DOMAIN={id}.example.com"),
        format!("AGENCY_SUBNET_POOL={pool}"),
        "AGENCY_SUBNET_PREFIX=28".into(),
    ]
}

pub fn run_create(site: &Site, id: &str, pool: &str, extra: &[(&str, &str)]) -> Output {
    let mut test = site.test().arg("--json");
    for arg in create_args(id, pool) {
        test = test.arg(&arg);
    }
    for (key, value) in extra {
        test = test.env(key, value);
    }
    test.run_unchecked()
}

/// The steps of a run's `--json` report that changed something.
pub fn changed_steps(output: &Output) -> Vec<String> {
    output.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["changes"].as_array().unwrap().clone())
        .filter(|c| c["outcome"] != "unchanged")
        .map(|c| format!("{} {} {}", c["outcome"].as_str().unwrap(), c["action"].as_str().unwrap(), c["target"]))
        .collect()
}

pub fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

pub fn secrets(site: &Site, id: &str) -> Option<BTreeMap<String, String>> {
    let text = fs::read_to_string(site.secrets_file(id)).ok()?;
    Some(agency::format::envfile::parse(&text).unwrap().into_iter().collect())
}

/// `restic ARGS` on the client's repository with `password` (restic itself, no agency code).
fn restic(site: &Site, id: &str, password: &str, args: &[&str]) -> std::process::Output {
    Command::new("restic")
        .args(args)
        .arg("--no-cache")
        .env("RESTIC_REPOSITORY", site.backup_root().join(format!("client-{id}")))
        .env("RESTIC_PASSWORD", password)
        .env("HOME", site.path())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Temp files of atomic writes (`.NAME.XXXXXX.tmp`) anywhere under the site.
pub fn temp_files(site: &Site) -> Vec<String> {
    walkdir::WalkDir::new(site.path())
        .into_iter()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy();
            name.starts_with('.') && name.ends_with(".tmp")
        })
        .map(|e| e.path().display().to_string())
        .collect()
}

/// Everything a user would compare between two clients made in two sites: each path under
/// the roots (site dir and client id replaced by placeholders) with its mode and contents.
/// Values that differ by design are reduced to what must hold of them: secrets to their
/// names, subnets to "allocated in the pool" (checked against the networks), the creation
/// time to its shape, the audit log to "whole JSON lines", the repository to "opens with
/// the password on disk, one key".
pub fn client_state(site: &Site, id: &str, docker: &Docker, pool: &str) -> BTreeMap<String, String> {
    let site_text = site.path().display().to_string();
    let normalize =
        |text: &str| text.replace(&site_text, "<site>").replace(site.firewall_table(), "<table>").replace(id, "<id>");
    let recorded = fs::read_to_string(site.client_dir(id).join("client.env"))
        .map(|text| agency::format::envfile::parse(&text).unwrap())
        .unwrap_or_default();
    let pool: Ipv4Net = pool.parse().unwrap();
    let mut state = BTreeMap::new();
    let repository = site.backup_root().join(format!("client-{id}"));
    for root in [site.root(), site.log_root(), site.logrotate_dir(), site.backup_root()] {
        let walk = walkdir::WalkDir::new(&root)
            .into_iter()
            .filter_entry(|e| e.path() == repository || !e.path().starts_with(&repository));
        for entry in walk.flatten() {
            let path = entry.path();
            let key = normalize(&path.display().to_string());
            let mut value = format!("mode {:04o}", mode(path));
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if entry.file_type().is_file() {
                let text = fs::read_to_string(path).unwrap();
                match name.as_str() {
                    "secrets.env" => {
                        let keys: Vec<String> = agency::format::envfile::parse(&text).unwrap().into_keys().collect();
                        value += &format!("; keys {}", keys.join(" "));
                    }
                    "audit.log" => {
                        for line in text.lines() {
                            let record: serde_json::Value = serde_json::from_str(line)
                                .unwrap_or_else(|e| panic!("{}: a broken audit line ({e}): {line:?}", path.display()));
                            assert!(record["task"].is_string(), "{line}");
                        }
                    }
                    "client.env" => {
                        for (key, v) in agency::format::envfile::parse(&text).unwrap() {
                            let shown = if key.ends_with("_SUBNET") {
                                let subnet: Ipv4Net = v.parse().unwrap();
                                assert!(pool.contains(subnet.network()), "{key} {subnet} is outside the pool {pool}");
                                "<subnet>".to_string()
                            } else if let Some(tier) = key.strip_suffix("_BRIDGE") {
                                let subnet: Ipv4Net = recorded[&format!("{tier}_SUBNET")].parse().unwrap();
                                assert_eq!(v, agency::tenant::firewall::bridge_name(subnet), "{key}");
                                "<named after its subnet>".to_string()
                            } else if key == "CLIENT_CREATED" {
                                assert!(v.ends_with('Z') && v.len() >= 20, "CLIENT_CREATED {v:?}");
                                "<time>".to_string()
                            } else {
                                normalize(&v)
                            };
                            value += &format!("\n{key}={shown}");
                        }
                    }
                    _ if path.parent().is_some_and(|p| p.ends_with("firewall")) => {
                        // The saved table: holds each of the client's recorded bridges.
                        for (key, bridge) in recorded.iter().filter(|(k, _)| k.ends_with("_BRIDGE")) {
                            assert!(text.contains(&format!("\"{bridge}\"")), "{key} {bridge} not in {text}");
                        }
                        value += "; the table with the client's bridges";
                    }
                    _ => value += &format!("\n{}", normalize(&text)),
                }
            }
            state.insert(key, value);
        }
    }

    // The repository: initialized, opened by the password on disk, one key.
    let password = secrets(site, id).and_then(|s| s.get("RESTIC_PASSWORD").cloned()).unwrap_or_default();
    let keys = restic(site, id, &password, &["key", "list", "--json"]);
    assert!(
        keys.status.success(),
        "{id}: the password in secrets.env does not open the repository: {}",
        String::from_utf8_lossy(&keys.stderr)
    );
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&keys.stdout).unwrap();
    state.insert("<repository>".into(), format!("opens with RESTIC_PASSWORD; {} key(s)", keys.len()));

    // The four networks, labelled, subnets as recorded.
    let env =
        agency::format::envfile::parse(&fs::read_to_string(site.client_dir(id).join("client.env")).unwrap()).unwrap();
    let names = client_networks(id);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let networks = docker.inspect_networks(&names).unwrap();
    assert_eq!(networks.len(), 4, "{id}: {networks:?}");
    for (network, key) in networks_in_order(&networks, &names).into_iter().zip([
        "FRONTEND_SUBNET",
        "BACKEND_SUBNET",
        "DATABASE_SUBNET",
        "CLIENT_SUBNET",
    ]) {
        assert_eq!(
            network.subnets.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            [env[key].clone()],
            "{}",
            network.name
        );
        let labels: Vec<String> = network.labels.iter().map(|(k, v)| format!("{k}={}", normalize(v))).collect();
        state.insert(
            format!("<network {}>", normalize(&network.name)),
            format!(
                "{}, internal {}, labels {}, bridge {}",
                network.driver,
                network.internal,
                labels.join(" "),
                if network.bridge.as_ref() == env.get(&key.replace("_SUBNET", "_BRIDGE")) {
                    "as recorded"
                } else {
                    "NOT as recorded"
                }
            ),
        );
    }
    state
}

fn networks_in_order<'a>(
    networks: &'a [agency::drivers::docker::NetworkDetails],
    names: &[&str],
) -> Vec<&'a agency::drivers::docker::NetworkDetails> {
    names.iter().map(|n| networks.iter().find(|d| d.name == *n).unwrap_or_else(|| panic!("no network {n}"))).collect()
}
