//! `PROBE=1` against the real engine (SPEC §9): with agency's table the probe passes and its
//! controls work; without it (FIREWALL=off) the same probe reports NOT ISOLATED and names each
//! open path: another tenant's published port, a host listener (the test's own, found in the
//! host's /proc/net/tcp) from an internal tier, forged packets into another tenant's internal
//! network and to the host.

use std::net::TcpListener;

use crate::{
    require_docker,
    support::docker::{Scratch, TEST_IMAGE, busybox_image, check, report, scratch_pool, unique},
    test::Site,
};

/// create-client with the networks from `pool`, a pool of the test's own: its bridges' names
/// (derived from their subnets) then appear in no table another root on this host may still
/// hold, which would filter them too ("without agency's table" would not be without a table).
fn create(site: &Site, id: &str, pool: &str) {
    site.test()
        .args([
            "create-client",
            &format!("CLIENT_ID={id}"),
            "CLIENT_NAME=Tenant",
            &format!("CLIENT_DOMAIN={id}.example.com"),
            "AGENCY_BACKUPS=off",
            &format!("AGENCY_SUBNET_POOL={pool}"),
        ])
        .run();
}

fn probe(site: &Site, client: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut test = site.test().args([
        "--json",
        "multi-tenancy-status",
        "AGENCY_BACKUPS=off",
        "PROBE=1",
        &format!("PROBE_IMAGE={TEST_IMAGE}"),
        &format!("CLIENT_ID={client}"),
    ]);
    for arg in extra {
        test = test.arg(arg);
    }
    let output = test.run_unchecked();
    (output.status, output.json())
}

fn network_evidence<'a>(probe: &'a serde_json::Value, network: &str) -> &'a serde_json::Value {
    probe["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["network"] == network)
        .unwrap_or_else(|| panic!("no probe of {network}: {probe:#}"))
}

#[test]
fn probe_passes_with_the_table_and_names_every_open_path_without_it() {
    let docker = require_docker!();
    let image = busybox_image(&docker);
    let scratch = Scratch::new(&docker);
    let site = Site::with_docker();
    let a = scratch.client(&unique("pra"));
    let b = scratch.client(&unique("prb"));
    let pool = scratch_pool(22);
    create(&site, &a, &pool);
    create(&site, &b, &pool);
    let (b_frontend, b_database) = (format!("{b}_frontend"), format!("{b}_database"));
    scratch.server(&unique("b-db"), &b_database, &[("agency.client", &b)]);
    // b's site, published on b's frontend gateway (an address of the host).
    let gateway: agency::tenant::subnet::Ipv4Net = scratch
        .docker(&["network", "inspect", "--format", "{{(index .IPAM.Config 0).Subnet}}", &b_frontend])
        .trim()
        .parse()
        .unwrap();
    let published_on = gateway.first_host();
    let published_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let b_web = scratch.container(&unique("b-web"));
    scratch.docker(&[
        "run",
        "-d",
        "--pull",
        "never",
        "--name",
        &b_web,
        "--network",
        &b_frontend,
        "--label",
        &format!("agency.client={b}"),
        "-p",
        &format!("{published_on}:{published_port}:80"),
        image,
        "sh",
        "-c",
        "while true; do nc -l -p 80 -e echo hi; done",
    ]);
    // A host service on every address (as sshd would be); it closes each connection at once.
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let listening = listener.local_addr().unwrap().port();
    let acceptor = listener.try_clone().unwrap();
    std::thread::spawn(move || acceptor.incoming().for_each(drop));

    // With agency's table: isolated, every path blocked, the controls working.
    let (code, json) = probe(&site, &a, &[]);
    let checked = check(report(&json, &a), "probe");
    assert_eq!(code, 0, "{checked:#}");
    assert_eq!(checked["status"], "ok", "{checked:#}");
    for tier in ["frontend", "backend", "database", "network"] {
        let evidence = network_evidence(checked, &format!("{a}_{tier}"));
        assert_eq!(evidence["intra_client"]["works"], true, "{evidence:#}");
        assert_eq!(evidence["host_to_container"], true, "{evidence:#}");
        assert_eq!(evidence["listeners"], serde_json::json!([]), "{evidence:#}");
        assert!(evidence["listeners_tried"].as_u64().unwrap() > 0, "{evidence:#}");
    }
    let frontend = network_evidence(checked, &format!("{a}_frontend"));
    let published = frontend["published"].as_array().unwrap();
    let b_site = published
        .iter()
        .find(|p| p["port"] == published_port && p["address"] == published_on.to_string().as_str())
        .unwrap_or_else(|| panic!("b's published port was not tried: {frontend:#}"));
    assert_eq!(b_site["open"], false);
    for tier in ["frontend", "network"] {
        let forged = &network_evidence(checked, &format!("{a}_{tier}"))["forged"][0];
        assert_eq!(forged["into"], b_database.as_str(), "{forged:#}");
        assert_eq!(forged["delivered_into_container"], 0, "{forged:#}");
        assert_eq!(forged["delivered_to_host"], 0, "{forged:#}");
    }

    // Without it: NOT ISOLATED, each open path named, the controls still working.
    let nft = agency::drivers::nft::Nft::locate().unwrap();
    assert!(nft.delete_table(site.firewall_table()).unwrap());
    let (code, json) = probe(&site, &a, &["FIREWALL=off"]);
    assert_eq!(code, 1);
    assert_eq!(report(&json, &a)["verdict"], "NOT ISOLATED");
    let checked = check(report(&json, &a), "probe");
    assert_eq!(checked["status"], "fail", "{checked:#}");
    let summary = checked["summary"].as_str().unwrap();
    eprintln!("without agency's table: {summary}");
    for expected in [
        format!("{a}_frontend reaches client {b}'s published port {published_port} on {published_on}"),
        format!("{a}_database reaches"),
        format!("the host's port {listening} on"),
        format!("forged packets from {a}_network (source "),
        format!("reached a container on {b_database} of client {b}"),
        format!("forged UDP datagrams from {a}_network"),
    ] {
        assert!(summary.contains(&expected), "{expected:?} not in: {summary}");
    }
    assert!(!summary.contains("does not work") && !summary.contains("cannot connect"), "{summary}");
    let database = network_evidence(checked, &format!("{a}_database"));
    assert!(
        database["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().ends_with(&format!(":{listening}"))),
        "{database:#}"
    );
    let forged = &network_evidence(checked, &format!("{a}_network"))["forged"][0];
    assert!(forged["delivered_into_container"].as_u64().unwrap() > 0, "{forged:#}");
    assert!(forged["delivered_to_host"].as_u64().unwrap() > 0, "{forged:#}");

    // The probe's containers removed themselves.
    let ours = |n: &String| n.starts_with(&format!("{a}_")) || n.starts_with(&format!("{b}_"));
    assert!(docker.list_containers().unwrap().iter().all(|c| !c.is_probe() || !c.networks.iter().any(ours)));
}

/// Clients are probed together (several at once): one path opened for one client's database
/// tier alone (agency's table let through to a host port from that one bridge) is reported
/// for that client and that tier only, and every other client's probe passes.
#[test]
fn probes_of_several_clients_report_one_open_path_for_exactly_its_client() {
    let docker = require_docker!();
    let scratch = Scratch::new(&docker);
    let site = Site::with_docker();
    let pool = scratch_pool(22);
    let ids: Vec<String> = ["pma", "pmb", "pmc"].iter().map(|p| scratch.client(&unique(p))).collect();
    for id in &ids {
        create(&site, id, &pool);
        scratch.server(&unique(&format!("{id}-db")), &format!("{id}_database"), &[("agency.client", id)]);
    }
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let listening = listener.local_addr().unwrap().port();
    let acceptor = listener.try_clone().unwrap();
    std::thread::spawn(move || acceptor.incoming().for_each(drop));
    let (open, open_tier) = (&ids[1], format!("{}_database", ids[1]));
    let bridge = scratch.docker(&[
        "network",
        "inspect",
        "--format",
        "{{index .Options \"com.docker.network.bridge.name\"}}",
        &open_tier,
    ]);
    let rule = format!("iifname \"{}\" tcp dport {listening} accept", bridge.trim());
    let inserted = std::process::Command::new("nft")
        .args(["insert", "rule", "inet", site.firewall_table(), "input"])
        .args(rule.split(' '))
        .status()
        .unwrap();
    assert!(inserted.success(), "nft insert rule {rule}");

    let output = site
        .test()
        .args(["--json", "multi-tenancy-status", "AGENCY_BACKUPS=off", "PROBE=1", &format!("PROBE_IMAGE={TEST_IMAGE}")])
        .run_unchecked();
    assert_eq!(output.status, 1);
    let json = output.json();
    for id in &ids {
        let checked = check(report(&json, id), "probe");
        let summary = checked["summary"].as_str().unwrap();
        if id == open {
            assert_eq!(checked["status"], "fail", "{summary}\n{checked:#}");
            assert!(summary.contains(&format!("{open_tier} reaches the host's port {listening} on")), "{summary}");
            assert_eq!(summary.matches(" reaches the host's port ").count(), 1, "{summary}");
        } else {
            assert_eq!(checked["status"], "ok", "{summary}\n{checked:#}");
        }
        for tier in ["frontend", "backend", "database", "network"] {
            let network = format!("{id}_{tier}");
            let evidence = network_evidence(checked, &network);
            let reached = evidence["listeners"].as_array().unwrap();
            if network == open_tier {
                assert!(
                    reached.iter().any(|l| l.as_str().unwrap().ends_with(&format!(":{listening}"))),
                    "{evidence:#}"
                );
            } else {
                assert_eq!(evidence["listeners"], serde_json::json!([]), "{evidence:#}");
            }
            assert_eq!(evidence["intra_client"]["works"], true, "{evidence:#}");
            assert_eq!(evidence["host_to_container"], true, "{evidence:#}");
        }
    }
}
