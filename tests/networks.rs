//! create-client's Docker networks against the real engine (SPEC §7): four labelled networks,
//! backend and database internal, subnets allocated from AGENCY_SUBNET_POOL, recorded and kept,
//! drift and foreign networks reported, race-safe allocation, overlay on a single-node swarm.

use std::{collections::BTreeMap, process::Command};

use agency::tenant::subnet::Ipv4Net;

use crate::{
    argv::Shim,
    create_client::bash_value,
    require_docker,
    support::docker::{Scratch, busybox_image, check, client_networks, docker_calls, report, scratch_pool, unique},
    support::swarm::SingleNodeSwarm,
    test::{Output, Site},
};

fn create(site: &Site, id: &str, extra: &[&str]) -> Output {
    let mut test = site.test().arg("create-client").args([
        &format!("CLIENT_ID={id}"),
        "CLIENT_NAME=Test Client",
        &format!("CLIENT_DOMAIN={id}.example.com"),
    ]);
    for arg in extra {
        test = test.arg(arg);
    }
    test.run_unchecked()
}

fn created(site: &Site, id: &str, extra: &[&str]) -> Output {
    let output = create(site, id, extra);
    assert_eq!(output.status, 0, "create-client {id} failed:\n{}\n{}", output.stdout, output.stderr);
    output
}

/// The recorded subnets of a client, by tier.
fn recorded_subnets(site: &Site, id: &str) -> BTreeMap<&'static str, Ipv4Net> {
    let env = site.client_dir(id).join("client.env");
    [
        ("frontend", "FRONTEND_SUBNET"),
        ("backend", "BACKEND_SUBNET"),
        ("database", "DATABASE_SUBNET"),
        ("network", "CLIENT_SUBNET"),
    ]
    .into_iter()
    .map(|(tier, key)| (tier, bash_value(&env, key).parse().unwrap()))
    .collect()
}

fn no_overlaps(subnets: &[Ipv4Net]) {
    for (i, a) in subnets.iter().enumerate() {
        for b in &subnets[i + 1..] {
            assert!(!a.overlaps(b), "{a} overlaps {b}");
        }
    }
}

#[test]
fn four_labelled_networks_with_recorded_subnets_kept_on_rerun() {
    let docker = require_docker!();
    let scratch = Scratch::new(&docker);
    let site = Site::with_docker();
    let id = scratch.client(&unique("net"));
    let pool: Ipv4Net = scratch_pool(24).parse().unwrap();
    let pool_arg = format!("AGENCY_SUBNET_POOL={pool}");
    created(&site, &id, &[&pool_arg]);

    let names = client_networks(&id);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let networks = docker.inspect_networks(&names).unwrap();
    assert_eq!(networks.len(), 4);
    let subnets = recorded_subnets(&site, &id);
    for (network, (tier, internal)) in networks_in_order(&networks, &names).iter().zip([
        ("frontend", false),
        ("backend", true),
        ("database", true),
        ("network", false),
    ]) {
        assert_eq!(network.driver, "bridge");
        assert_eq!(network.internal, internal, "{} internal", network.name);
        assert_eq!(network.label("agency.managed"), Some("true"));
        assert_eq!(network.label("agency.client"), Some(id.as_str()));
        assert_eq!(network.label("agency.tier"), Some(tier));
        assert_eq!(network.subnets, vec![subnets[tier]], "{} subnet is the recorded one", network.name);
        assert!(pool.covers(&subnets[tier]) && subnets[tier].prefix() == 26);
    }
    let env = site.client_dir(&id).join("client.env");
    assert_eq!(bash_value(&env, "NETWORK_DRIVER"), "bridge");
    assert_eq!(bash_value(&env, "DATABASE_NETWORK"), format!("{id}_database"));
    let ours: Vec<Ipv4Net> = subnets.values().copied().collect();
    no_overlaps(&ours);
    // No other network on the engine shares an address with them.
    for network in docker.inspect_all_networks().unwrap() {
        if network.label("agency.client") != Some(id.as_str()) {
            assert!(network.subnets.iter().all(|s| ours.iter().all(|o| !o.overlaps(s))), "{} overlaps", network.name);
        }
    }

    // A re-run changes nothing (-v lists the unchanged steps).
    let again = created(&site, &id, &[&pool_arg, "-v"]);
    assert!(again.stdout.contains(&format!("unchanged    network {id}_database")), "{}", again.stdout);
    assert_eq!(recorded_subnets(&site, &id), subnets);

    // A removed network comes back with its recorded subnet.
    docker.remove_network(&format!("{id}_database")).unwrap();
    let output = created(&site, &id, &[&pool_arg]);
    assert!(output.stdout.contains(&format!("created      network {id}_database")), "{}", output.stdout);
    let database = docker.inspect_networks(&[&format!("{id}_database")]).unwrap();
    assert_eq!(database[0].subnets, vec![subnets["database"]]);
    assert!(database[0].internal);
    assert_eq!(recorded_subnets(&site, &id), subnets);
}

fn networks_in_order<'a>(
    networks: &'a [agency::drivers::docker::NetworkDetails],
    names: &[&str],
) -> Vec<&'a agency::drivers::docker::NetworkDetails> {
    names.iter().map(|name| networks.iter().find(|n| n.name == *name).expect("network exists")).collect()
}

#[test]
fn dry_run_plans_the_networks_and_creates_none() {
    let docker = require_docker!();
    let scratch = Scratch::new(&docker);
    let site = Site::with_docker();
    let id = scratch.client(&unique("dry"));
    let output = site
        .test()
        .args(["-n", "create-client", &format!("CLIENT_ID={id}"), "CLIENT_NAME=Dry", "CLIENT_DOMAIN=dry.example.com"])
        .run();
    for tier in ["frontend", "backend", "database", "network"] {
        assert!(output.stdout.contains(&format!("would create network {id}_{tier}  (bridge")), "{}", output.stdout);
    }
    assert!(output.stdout.contains("internal, subnet 10."), "{}", output.stdout);
    let names = client_networks(&id);
    assert!(docker.inspect_networks(&names.iter().map(String::as_str).collect::<Vec<_>>()).unwrap().is_empty());
}

#[test]
fn a_foreign_network_of_the_same_name_is_left_alone_and_named() {
    let docker = require_docker!();
    let scratch = Scratch::new(&docker);
    let site = Site::with_docker();
    let id = scratch.client(&unique("foreign"));
    let squatter = format!("{id}_backend");
    scratch.docker(&["network", "create", "--label", "owner=someone-else", &squatter]);
    let before = docker.inspect_networks(&[&squatter]).unwrap();

    let output = create(&site, &id, &[]);
    assert_eq!(output.status, 1, "{}", output.stderr);
    assert!(
        output.stderr.contains(&format!("a Docker network named {squatter} already exists and is not {id}'s")),
        "{}",
        output.stderr
    );
    assert!(output.stderr.contains("owner=someone-else"), "{}", output.stderr);
    assert_eq!(docker.inspect_networks(&[&squatter]).unwrap(), before, "the foreign network was touched");
}

#[test]
fn a_drifted_network_is_reported_not_accepted() {
    let docker = require_docker!();
    let scratch = Scratch::new(&docker);
    let site = Site::with_docker();
    let id = scratch.client(&unique("drift"));
    created(&site, &id, &[]);
    // An old, non-internal database network with our labels.
    let database = scratch.recreate_database_network_not_internal(&id);
    let output = create(&site, &id, &[]);
    assert_eq!(output.status, 1, "{}", output.stdout);
    assert!(output.stderr.contains(&format!("network {database} is not internal (drift)")), "{}", output.stderr);
    assert!(output.stderr.contains("FIX=1"), "{}", output.stderr);
    assert!(!docker.inspect_networks(&[&database]).unwrap()[0].internal, "create-client must not change it silently");
}

#[test]
fn a_full_pool_fails_clearly() {
    let docker = require_docker!();
    let scratch = Scratch::new(&docker);
    let site = Site::with_docker();
    let id = scratch.client(&unique("full"));
    // Two /26 blocks for four networks.
    let pool = scratch_pool(25);
    let output = create(&site, &id, &[&format!("AGENCY_SUBNET_POOL={pool}")]);
    assert_eq!(output.status, 1, "{}", output.stdout);
    assert!(output.stderr.contains(&format!("the subnet pool {pool} has no free /26 block left")), "{}", output.stderr);
    assert!(output.stderr.contains("AGENCY_SUBNET_POOL"), "{}", output.stderr);
}

#[test]
fn concurrent_create_clients_in_different_roots_never_fail_on_overlap() {
    let docker = require_docker!();
    let scratch = Scratch::new(&docker);
    // 16 /27 blocks for 4 clients x 4 networks: every run needs what the others race for.
    let pool = scratch_pool(23);
    let pool_arg = format!("AGENCY_SUBNET_POOL={pool}");
    let runs: Vec<(Site, String)> = (0..4).map(|_| (Site::with_docker(), scratch.client(&unique("race")))).collect();
    let outputs: Vec<Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .iter()
            .map(|(site, id)| {
                let pool_arg = pool_arg.clone();
                scope.spawn(move || create(site, id, &[&pool_arg, "AGENCY_SUBNET_PREFIX=27"]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all = Vec::new();
    for ((site, id), output) in runs.iter().zip(&outputs) {
        assert_eq!(output.status, 0, "{id}: {}", output.stderr);
        let subnets = recorded_subnets(site, id);
        for (tier, subnet) in &subnets {
            let actual = docker.inspect_networks(&[&format!("{id}_{tier}")]).unwrap();
            assert_eq!(actual[0].subnets, vec![*subnet]);
        }
        all.extend(subnets.into_values());
    }
    assert_eq!(all.len(), 16);
    no_overlaps(&all);
}

#[test]
fn ten_clients_exceed_the_default_pools_and_status_stays_o1() {
    let docker = require_docker!();
    let scratch = Scratch::new(&docker);
    let site = Site::with_docker();
    let ids: Vec<String> = (0..10).map(|_| scratch.client(&unique("ten"))).collect();
    for id in &ids {
        created(&site, id, &[]);
    }
    let mut all = Vec::new();
    for id in &ids {
        all.extend(recorded_subnets(&site, id).into_values());
    }
    assert_eq!(all.len(), 40);
    no_overlaps(&all);

    let status = site.test().args(["--json", "multi-tenancy-status"]).run();
    let json = status.json();
    for id in &ids {
        assert_eq!(report(&json, id)["verdict"], "isolated", "{id}");
    }
    let pool = &json["tasks"][0]["result"]["pool"];
    assert_eq!(pool["source"], "client.env");
    assert_eq!(pool["used"], 40);
    let calls_all = docker_calls(&json);
    let one = site.test().args(["--json", "multi-tenancy-status", &format!("CLIENT_ID={}", ids[0])]).run().json();
    assert_eq!(calls_all, docker_calls(&one), "docker calls grow with the number of clients");

    // INSPECT=1 compares every network's subnet with client.env and counts the whole engine.
    let inspected = site.test().args(["--json", "multi-tenancy-status", "INSPECT=1"]).run().json();
    let pool = &inspected["tasks"][0]["result"]["pool"];
    assert_eq!(pool["source"], "engine");
    assert!(pool["used"].as_i64().unwrap() >= 40, "{pool}");
    for id in &ids {
        let networks = check(report(&inspected, id), "networks");
        assert_eq!(networks["status"], "ok", "{networks:#}");
        let subnets = recorded_subnets(&site, id);
        for entry in networks["evidence"].as_array().unwrap() {
            let tier = entry["tier"].as_str().unwrap();
            assert_eq!(entry["subnets"][0], subnets[tier].to_string().as_str(), "{entry:#}");
        }
    }
}

/// A new client's subnets avoid the other clients' recorded subnets without inspecting their
/// networks (hundreds of clients would cost seconds): one `network ls`, then its creates;
/// Docker itself refuses any other overlapping bridge subnet.
#[test]
fn create_client_takes_other_clients_subnets_from_their_records() {
    let docker = require_docker!();
    let scratch = Scratch::new(&docker);
    let site = Site::with_docker();
    let first = scratch.client(&unique("rec"));
    created(&site, &first, &[]);
    let names = client_networks(&first);
    let first_ids: Vec<String> =
        docker.inspect_networks(&names.each_ref().map(String::as_str)).unwrap().into_iter().map(|n| n.id).collect();
    assert_eq!(first_ids.len(), 4);

    let shim_dir = tempfile::tempdir().unwrap();
    let shim = Shim::new(shim_dir.path());
    let second = scratch.client(&unique("rec"));
    let output = site
        .test()
        .env("PATH", &shim.path())
        .arg("create-client")
        .args([&format!("CLIENT_ID={second}"), "CLIENT_NAME=Second", &format!("CLIENT_DOMAIN={second}.example.com")])
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let argvs = shim.argvs();
    let inspected: Vec<&str> = argvs
        .iter()
        .filter(|argv| argv.len() > 3 && argv[..3] == ["docker", "network", "inspect"])
        .flat_map(|argv| argv[3..].iter().map(String::as_str))
        .collect();
    let lists = argvs.iter().filter(|argv| argv.len() > 2 && argv[..3] == ["docker", "network", "ls"]).count();
    assert_eq!(lists, 1, "{argvs:?}");
    for network in first_ids.iter().chain(&client_networks(&first)) {
        assert!(!inspected.contains(&network.as_str()), "{first}'s network {network} was inspected: {inspected:?}");
    }
    let mut all: Vec<Ipv4Net> = recorded_subnets(&site, &first).into_values().collect();
    all.extend(recorded_subnets(&site, &second).into_values());
    assert_eq!(all.len(), 8);
    no_overlaps(&all);
}

#[test]
fn overlay_networks_on_a_single_node_swarm() {
    let docker = require_docker!();
    let image = busybox_image(&docker);
    let Some(_swarm) = SingleNodeSwarm::init("overlay test") else { return };
    let scratch = Scratch::new(&docker);

    let site = Site::with_docker();
    let id = scratch.client(&unique("ovl"));
    created(&site, &id, &["NETWORK_DRIVER=overlay"]);
    let subnets = recorded_subnets(&site, &id);
    for (tier, internal) in [("frontend", false), ("backend", true), ("database", true), ("network", false)] {
        let network = &docker.inspect_networks(&[&format!("{id}_{tier}")]).unwrap()[0];
        assert_eq!(network.driver, "overlay");
        assert_eq!(network.scope, "swarm");
        assert!(network.attachable, "{} attachable", network.name);
        assert_eq!(network.internal, internal, "{} internal", network.name);
        assert_eq!(network.subnets, vec![subnets[tier]]);
    }
    assert_eq!(bash_value(&site.client_dir(&id).join("client.env"), "NETWORK_DRIVER"), "overlay");
    // Attachable: a plain container joins the backend.
    let container = scratch.container(&unique("ovl-c"));
    scratch.docker(&["run", "--rm", "--name", &container, "--network", &format!("{id}_backend"), image, "true"]);

    // The recorded driver is kept on a re-run without NETWORK_DRIVER, and status agrees.
    let again = created(&site, &id, &[]);
    assert!(!again.stdout.contains("  created      network"), "{}", again.stdout);
    let status = site.test().args(["--json", "multi-tenancy-status", &format!("CLIENT_ID={id}")]).run().json();
    assert_eq!(report(&status, &id)["verdict"], "isolated");
    // Remove the overlay networks while the swarm still exists.
    drop(scratch);
}

#[test]
fn missing_docker_and_an_unreachable_daemon_are_named() {
    let site = Site::with_docker();
    site.test()
        .args(["multi-tenancy-status"])
        .env("PATH", "/nonexistent-agency-path")
        .status(1)
        .stderr_contains("`docker` was not found on PATH; install the Docker CLI and engine")
        .run();
    if which::which("docker").is_err() {
        crate::support::loud_skip("daemon check: no docker CLI");
        return;
    }
    site.test()
        .args(["multi-tenancy-status"])
        .env("DOCKER_HOST", "unix:///nonexistent/agency-test.sock")
        .status(1)
        .stderr_contains("the Docker daemon is not running or not reachable at unix:///nonexistent/agency-test.sock")
        .run();
}

/// Networks of one name, by id, and their subnets (`docker network ls` shows every one).
fn networks_named(docker: &agency::drivers::docker::Docker, name: &str) -> Vec<(String, Vec<Ipv4Net>)> {
    let ids: Vec<String> =
        docker.list_networks().unwrap().into_iter().filter(|n| n.name == name).map(|n| n.id).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    docker.inspect_networks(&ids).unwrap().into_iter().map(|n| (n.id, n.subnets)).collect()
}

/// Removes, when dropped, every network labelled for `client` by id (a name no longer names
/// one network once there are twins).
struct RemoveByLabel<'a>(&'a agency::drivers::docker::Docker, String);

impl Drop for RemoveByLabel<'_> {
    fn drop(&mut self) {
        for network in self.0.list_networks().unwrap_or_default() {
            if network.labels.get("agency.client") == Some(&self.1) {
                let _ = self.0.remove_network(&network.id);
            }
        }
    }
}

/// Replaces `<id>_backend` with two networks of that name, on `subnets[0]` (keeping agency's
/// bridge name) and `subnets[1]`: what a create killed mid-way and then re-run leaves. The
/// docker CLI always asks the daemon to refuse a taken name (`CheckDuplicate`), and racing two
/// creates makes twins only sometimes, so the second comes from the Engine API without it.
fn make_twins(docker: &agency::drivers::docker::Docker, id: &str, subnets: [Ipv4Net; 2]) -> usize {
    let name = format!("{id}_backend");
    let bridge = docker.inspect_networks(&[&name]).unwrap()[0].bridge.clone().unwrap();
    docker.remove_network(&name).unwrap();
    let client = format!("agency.client={id}");
    let (first, bridge_option) = (subnets[0].to_string(), format!("com.docker.network.bridge.name={bridge}"));
    let mut args = vec!["network", "create", "--internal", "--label", "agency.managed=true"];
    args.extend([
        "--label",
        &client,
        "--label",
        "agency.tier=backend",
        "--subnet",
        &first,
        "-o",
        &bridge_option,
        &name,
    ]);
    let created = Command::new(docker.program()).args(&args).output().unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let body = serde_json::json!({
        "Name": name, "CheckDuplicate": false, "Internal": true,
        "Labels": { "agency.managed": "true", "agency.client": id, "agency.tier": "backend" },
        "IPAM": { "Config": [{ "Subnet": subnets[1].to_string() }] },
    });
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let twin = Command::new("curl")
        .args(["-sS", "--fail", "--unix-socket", &socket, "-H", "Content-Type: application/json", "-X", "POST"])
        .args(["-d", &body.to_string(), "http://localhost/v1.41/networks/create"])
        .output()
        .unwrap();
    assert!(twin.status.success(), "{}", String::from_utf8_lossy(&twin.stderr));
    let count = networks_named(docker, &name).len();
    assert_eq!(count, 2, "the Engine API made no twin of {name}");
    count
}

#[test]
fn twin_networks_of_one_name_are_flagged_and_fix_keeps_the_recorded_one() {
    let docker = require_docker!();
    let scratch = Scratch::new(&docker);
    let site = Site::with_docker();
    let id = scratch.client(&unique("twin"));
    let _cleanup = RemoveByLabel(&docker, id.clone());
    let pool: Ipv4Net = scratch_pool(23).parse().unwrap();
    let pool_arg = format!("AGENCY_SUBNET_POOL={pool}");
    created(&site, &id, &[&pool_arg]);
    let recorded = recorded_subnets(&site, &id)["backend"];
    let used: Vec<Ipv4Net> = recorded_subnets(&site, &id).into_values().collect();
    let base = u32::from(pool.network());
    let other = (0..8)
        .map(|k| Ipv4Net::new(std::net::Ipv4Addr::from(base + k * 64), 26).unwrap())
        .find(|s| !used.contains(s))
        .unwrap();
    let name = format!("{id}_backend");
    let count = make_twins(&docker, &id, [recorded, other]);

    // Status flags them, with and without INSPECT=1.
    for extra in [None, Some("INSPECT=1")] {
        let mut test = site.test().args(["--json", "multi-tenancy-status", &format!("CLIENT_ID={id}")]);
        if let Some(extra) = extra {
            test = test.arg(extra);
        }
        test = test.arg(&pool_arg);
        let output = test.run_unchecked();
        assert_eq!(output.status, 1, "{extra:?}: {}", output.stdout);
        let networks = check(report(&output.json(), &id), "networks").clone();
        assert_eq!(networks["status"], "fail");
        let summary = networks["summary"].as_str().unwrap();
        assert!(summary.contains(&format!("{count} networks are named {name}")), "{extra:?}: {summary}");
    }

    // A plain re-run of create-client neither makes a third nor fails obscurely.
    let rerun = create(&site, &id, &[&pool_arg]);
    assert_eq!(rerun.status, 1, "{}", rerun.stdout);
    assert!(rerun.stderr.contains(&format!("{count} networks are named {name}")), "{}", rerun.stderr);
    assert!(rerun.stderr.contains("FIX=1"), "{}", rerun.stderr);
    assert_eq!(networks_named(&docker, &name).len(), count, "the re-run made another");

    // FIX=1 removes the extra ones by id and keeps the one with the recorded subnet.
    let fix = site
        .test()
        .args(["--json", "multi-tenancy-status", &format!("CLIENT_ID={id}"), "FIX=1"])
        .arg(&pool_arg)
        .run_unchecked();
    let repairs = report(&fix.json(), &id)["repairs"].to_string();
    assert!(repairs.contains(&format!("remove the twin of {name}")), "{repairs}");
    let left = networks_named(&docker, &name);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].1, vec![recorded]);
    let status = site.test().args(["--json", "multi-tenancy-status", &format!("CLIENT_ID={id}")]).arg(&pool_arg).run();
    assert_eq!(check(report(&status.json(), &id), "networks")["status"], "ok");
    created(&site, &id, &[&pool_arg]);
}
