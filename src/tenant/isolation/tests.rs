//! Unit tests of isolation: expected networks, snapshot checks, cross-tenant, repairs, probes.

use super::*;
use std::net::Ipv4Addr;

use crate::drivers::docker::{Endpoint, HostAddress, ProbeResult, TcpOutcome};
use crate::{
    drivers::docker::{ContainerSummary, HostNetInfo, NetworkSummary, ProbeReport},
    format::validate::ProbeTargets,
    tenant::check::Status,
};

fn network(name: &str, labels: &[(&str, &str)], internal: bool, subnet: &str) -> NetworkDetails {
    let subnet: Ipv4Net = subnet.parse().unwrap();
    NetworkDetails {
        id: format!("id-{name}"),
        name: name.into(),
        created: String::new(),
        driver: "bridge".into(),
        scope: "local".into(),
        internal,
        attachable: false,
        ingress: false,
        subnets: vec![subnet],
        gateways: vec![subnet.first_host()],
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        containers: Vec::new(),
        bridge: Some(crate::tenant::firewall::bridge_name(subnet)),
    }
}

fn client_networks(client: &str, base: u8) -> Vec<NetworkDetails> {
    TIERS
        .iter()
        .enumerate()
        .map(|(i, t)| {
            network(
                &format!("{client}_{}", t.name),
                &[(LABEL_MANAGED, "true"), (LABEL_CLIENT, client), (LABEL_TIER, t.name)],
                t.internal,
                &format!("10.201.{base}.{}/26", i * 64),
            )
        })
        .collect()
}

fn container(name: &str, networks: &[&str], labels: &[(&str, &str)]) -> ContainerSummary {
    ContainerSummary {
        id: format!("cid-{name}"),
        name: name.into(),
        image: "img".into(),
        state: "running".into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        networks: networks.iter().map(|n| n.to_string()).collect(),
        ports: String::new(),
    }
}

fn recorded(base: u8) -> BTreeMap<String, String> {
    TIERS.iter().enumerate().map(|(i, t)| (t.env_subnet.to_string(), format!("10.201.{base}.{}/26", i * 64))).collect()
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn healthy_client_passes() {
    let snapshot = Snapshot::new(client_networks("acme", 0), vec![], &ids(&["acme"]));
    let check = snapshot.network_check("acme", "bridge", &recorded(0));
    assert_eq!(check.status, Status::Ok, "{check:?}");
    assert_eq!(check.evidence.as_array().unwrap().len(), 4);
    assert_eq!(check.evidence[2]["state"], "ok");
    assert!(plan_repairs(&snapshot, "acme", "bridge", &recorded(0), false).is_empty());
}

#[test]
fn missing_foreign_and_drift_are_failures_with_fixes() {
    let mut networks = client_networks("acme", 0);
    networks.retain(|n| n.name != "acme_backend");
    networks.iter_mut().find(|n| n.name == "acme_database").unwrap().internal = false;
    networks.iter_mut().find(|n| n.name == "acme_frontend").unwrap().labels.clear();
    let snapshot = Snapshot::new(networks, vec![], &ids(&["acme"]));
    let check = snapshot.network_check("acme", "bridge", &recorded(0));
    assert_eq!(check.status, Status::Fail);
    assert!(check.summary.contains("acme_backend is missing"), "{}", check.summary);
    assert!(check.summary.contains("acme_database is not internal"), "{}", check.summary);
    assert!(check.summary.contains("acme_frontend exists but is not labelled as acme's"), "{}", check.summary);
    assert!(check.fix.contains("creates acme_backend"), "{}", check.fix);
    assert!(check.fix.contains("recreates acme_database"), "{}", check.fix);
    let repairs = plan_repairs(&snapshot, "acme", "bridge", &recorded(0), false);
    assert!(matches!(&repairs[0], Repair::Refuse(m) if m.contains("acme_frontend")));
    assert!(matches!(&repairs[1], Repair::Create(e) if e.name == "acme_backend"
        && e.subnet == Some("10.201.0.64/26".parse().unwrap())));
    assert!(matches!(&repairs[2], Repair::Recreate { expected, subnet, .. } if expected.name == "acme_database"
        && *subnet == Some("10.201.0.128/26".parse().unwrap())));
}

#[test]
fn two_networks_of_one_name_fail() {
    let mut networks = client_networks("acme", 0);
    let mut twin = networks[1].clone();
    twin.id = "another-id".into();
    twin.subnets = vec!["10.201.3.0/26".parse().unwrap()];
    networks.push(twin.clone());
    let snapshot = Snapshot::new(networks, vec![], &ids(&["acme"]));
    let check = snapshot.network_check("acme", "bridge", &recorded(0));
    assert_eq!(check.status, Status::Fail);
    assert!(check.summary.contains("2 networks are named acme_backend"), "{}", check.summary);
    assert!(check.fix.contains("removes the extra acme_backend by id"), "{}", check.fix);
    let repairs = plan_repairs(&snapshot, "acme", "bridge", &recorded(0), false);
    assert!(matches!(&repairs[..], [Repair::RemoveTwins(e)] if e.name == "acme_backend"), "{repairs:?}");

    // A light snapshot (status without INSPECT=1) sees them in `network ls`.
    let listed: Vec<NetworkSummary> = snapshot
        .networks
        .iter()
        .map(|n| NetworkSummary {
            id: n.id.clone(),
            name: n.name.clone(),
            driver: n.driver.clone(),
            scope: n.scope.clone(),
            internal: n.internal,
            labels: n.labels.clone(),
        })
        .collect();
    let light = Snapshot::from_list(listed, vec![], vec![], &ids(&["acme"]));
    let check = light.network_check("acme", "bridge", &recorded(0));
    assert!(check.summary.contains("2 networks are named acme_backend"), "{}", check.summary);
}

#[test]
fn drift_with_containers_attached_is_refused() {
    let mut networks = client_networks("acme", 0);
    networks.iter_mut().find(|n| n.name == "acme_database").unwrap().internal = false;
    let snapshot = Snapshot::new(networks, vec![container("db", &["acme_database"], &[])], &ids(&["acme"]));
    let repairs = plan_repairs(&snapshot, "acme", "bridge", &recorded(0), false);
    assert!(matches!(&repairs[..], [Repair::Refuse(m)] if m.contains("containers attached (db)")), "{repairs:?}");
    let check = snapshot.network_check("acme", "bridge", &recorded(0));
    assert!(check.fix.contains("cannot"), "{}", check.fix);
}

#[test]
fn adopt_replaces_only_an_empty_network_labelled_for_no_other_client() {
    let by_hand = |labels: &[(&str, &str)], containers: Vec<ContainerSummary>| {
        let mut networks = client_networks("acme", 0);
        let database = networks.iter_mut().find(|n| n.name == "acme_database").unwrap();
        database.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Snapshot::new(networks, containers, &ids(&["acme"]))
    };
    let empty = by_hand(&[], vec![]);
    let check = empty.network_check("acme", "bridge", &recorded(0));
    assert!(
        check.fix.contains("remove it (`docker network rm acme_database`) and run FIX=1, or run FIX=1 ADOPT=1"),
        "{}",
        check.fix
    );
    assert!(matches!(&plan_repairs(&empty, "acme", "bridge", &recorded(0), false)[..], [Repair::Refuse(_)]));
    let adopted = plan_repairs(&empty, "acme", "bridge", &recorded(0), true);
    assert!(
        matches!(&adopted[..], [Repair::Recreate { expected, subnet, .. }] if expected.name == "acme_database"
            && *subnet == Some("10.201.0.128/26".parse().unwrap())),
        "{adopted:?}"
    );
    let in_use = by_hand(&[], vec![container("db", &["acme_database"], &[])]);
    let refused = plan_repairs(&in_use, "acme", "bridge", &recorded(0), true);
    assert!(matches!(&refused[..], [Repair::Refuse(m)] if m.contains("containers attached (db)")), "{refused:?}");
    let other = by_hand(&[(LABEL_CLIENT, "beta")], vec![]);
    let refused = plan_repairs(&other, "acme", "bridge", &recorded(0), true);
    assert!(matches!(&refused[..], [Repair::Refuse(m)] if m.contains("client beta's")), "{refused:?}");
}

#[test]
fn a_different_subnet_is_a_warning() {
    let snapshot = Snapshot::new(client_networks("acme", 0), vec![], &ids(&["acme"]));
    let check = snapshot.network_check("acme", "bridge", &recorded(7));
    assert_eq!(check.status, Status::Warn);
    assert!(check.summary.contains("client.env records 10.201.7.0/26"), "{}", check.summary);
}

#[test]
fn a_light_snapshot_checks_everything_but_subnets() {
    let listed: Vec<NetworkSummary> = client_networks("acme", 0)
        .into_iter()
        .map(|n| NetworkSummary {
            id: n.id,
            name: n.name,
            driver: n.driver,
            scope: n.scope,
            internal: n.internal,
            labels: n.labels,
        })
        .collect();
    let mut listed = listed;
    listed[2].internal = false;
    let snapshot = Snapshot::from_list(listed, vec![], vec![], &ids(&["acme"]));
    assert!(!snapshot.detailed);
    // Recorded subnets that differ cannot be seen, drift can.
    let check = snapshot.network_check("acme", "bridge", &recorded(9));
    assert_eq!(check.status, Status::Fail);
    assert_eq!(check.summary, "acme_database is not internal");
    assert!(check.evidence[0]["subnets"].is_null());
}

#[test]
fn overlay_expectations() {
    let mut networks = client_networks("acme", 0);
    for n in &mut networks {
        n.driver = "overlay".into();
        n.attachable = true;
    }
    networks[0].attachable = false;
    let snapshot = Snapshot::new(networks, vec![], &ids(&["acme"]));
    let check = snapshot.network_check("acme", "overlay", &recorded(0));
    assert!(check.summary.contains("acme_frontend is not attachable"), "{}", check.summary);
    let check = snapshot.network_check("acme", "bridge", &recorded(0));
    assert!(check.summary.contains("uses driver overlay instead of bridge"), "{}", check.summary);
}

#[test]
fn cross_tenant_containers() {
    let mut networks = client_networks("a", 0);
    networks.extend(client_networks("b", 1));
    networks.push(network("other", &[], false, "172.30.0.0/16"));
    let containers = vec![
        container("bridge-x", &["a_backend", "b_backend"], &[]),
        container("traefik", &["a_frontend", "b_frontend"], &[(LABEL_SHARED_INGRESS, "true")]),
        container("sneaky-proxy", &["a_frontend", "b_database"], &[(LABEL_SHARED_INGRESS, "true")]),
        container("guest", &["a_database"], &[(LABEL_CLIENT, "b")]),
        container("app", &["a_backend", "other"], &[(LABEL_CLIENT, "a")]),
        container("agency-probe-1", &["a_backend"], &[("agency.probe", "true")]),
    ];
    let snapshot = Snapshot::new(networks, containers, &ids(&["a", "b"]));
    let found = snapshot.cross_tenant("a");
    let names: Vec<&str> = found.iter().map(|f| f.container.as_str()).collect();
    assert_eq!(names, vec!["bridge-x", "guest", "sneaky-proxy", "traefik"]);
    assert!(found[0].reason.contains("attached to networks of a and b"));
    assert!(found[1].reason.contains("labelled agency.client=b"));
    assert!(found[2].reason.contains("not only to frontend networks"), "{}", found[2].reason);
    assert_eq!(found[2].fix, "docker network disconnect b_database sneaky-proxy");
    assert!(found[3].reason.is_empty() && found[3].shared_ingress);
    let check = snapshot.cross_tenant_check("a");
    assert_eq!(check.status, Status::Fail);
    assert!(check.fix.contains("docker network disconnect b_backend bridge-x"), "{}", check.fix);
    assert!(check.fix.contains("docker network disconnect a_database guest"), "{}", check.fix);
    assert!(!check.fix.contains("a_frontend"), "{}", check.fix);
    assert_eq!(check.evidence["shared_ingress"][0], "traefik");
    // From b's side: the same, the guest included (it is b's container in a's network).
    let from_b = snapshot.cross_tenant("b");
    let names: Vec<&str> = from_b.iter().map(|f| f.container.as_str()).collect();
    assert_eq!(names, vec!["bridge-x", "guest", "sneaky-proxy", "traefik"]);
    // The ingress is told to leave b's database, never the frontend it may use.
    assert_eq!(from_b[2].fix, "docker network disconnect b_database sneaky-proxy");
}

#[test]
fn tenants_sharing_any_other_network_are_joined() {
    let mut networks = client_networks("a", 0);
    networks.extend(client_networks("b", 1));
    networks.extend(client_networks("c", 2));
    let containers = vec![
        // a's container (by its network) and b's (by its label) on a plain network.
        container("a-app", &["a_backend", "plain-x"], &[]),
        container("b-app", &["plain-x"], &[(LABEL_CLIENT, "b")]),
        // Two tenants on Docker's default bridge.
        container("b-old", &["b_backend", "bridge"], &[]),
        container("c-old", &["bridge"], &[(LABEL_CLIENT, "c")]),
        // Alone with no tenant: fine.
        container("c-tool", &["c_backend", "tools"], &[]),
        container("infra", &["tools"], &[]),
        // A spoofed probe label exempts nothing.
        container("fake-probe", &["c_database", "plain-x"], &[("agency.probe", "true")]),
        // Traefik on frontends and a proxy network of its own: allowed.
        container("traefik", &["a_frontend", "b_frontend", "proxy"], &[(LABEL_SHARED_INGRESS, "true")]),
        container("c-web", &["c_frontend", "none"], &[]),
    ];
    let snapshot = Snapshot::new(networks, containers, &ids(&["a", "b", "c"]));
    let names = |client: &str| -> Vec<String> {
        snapshot.cross_tenant(client).into_iter().filter(|f| !f.reason.is_empty()).map(|f| f.container).collect()
    };
    assert_eq!(names("a"), vec!["a-app"]);
    assert_eq!(names("b"), vec!["b-app", "b-old"]);
    assert_eq!(names("c"), vec!["c-old", "fake-probe"]);
    let a = &snapshot.cross_tenant("a")[0];
    assert!(
        a.reason.contains("a-app shares network plain-x with containers of b (b-app), c (fake-probe)"),
        "{}",
        a.reason
    );
    assert_eq!(a.fix, "docker network disconnect plain-x a-app");
    assert_eq!(snapshot.cross_tenant_check("a").status, Status::Fail);
    let b_old = snapshot.cross_tenant("b").into_iter().find(|f| f.container == "b-old").unwrap();
    assert!(b_old.reason.contains("shares network bridge with containers of c (c-old)"), "{}", b_old.reason);
}

#[test]
fn networks_of_clients_from_other_roots_count_by_label() {
    let mut networks = client_networks("a", 0);
    networks.extend(client_networks("elsewhere", 1));
    let snapshot =
        Snapshot::new(networks, vec![container("x", &["a_backend", "elsewhere_backend"], &[])], &ids(&["a"]));
    assert_eq!(snapshot.cross_tenant_check("a").status, Status::Fail);
}

#[test]
fn probe_plan_and_verdicts() {
    let mut networks = client_networks("a", 0);
    let mut b = client_networks("b", 1);
    b[2].containers.push(Endpoint {
        container_id: "c1".into(),
        name: "b-db".into(),
        ipv4: Some(Ipv4Addr::new(10, 201, 1, 130)),
    });
    networks.extend(b);
    let snapshot = Snapshot::new(networks, vec![], &ids(&["a", "b"]));
    let host = HostNetInfo {
        addresses: vec![
            HostAddress { interface: "lo".into(), address: Ipv4Addr::LOCALHOST, prefix: 8 },
            HostAddress { interface: "eth0".into(), address: Ipv4Addr::new(192, 0, 2, 2), prefix: 24 },
            HostAddress { interface: "docker0".into(), address: Ipv4Addr::new(172, 17, 0, 1), prefix: 16 },
            HostAddress { interface: "br-1234".into(), address: Ipv4Addr::new(10, 201, 1, 1), prefix: 26 },
        ],
        default_gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
        proc_net_tcp: vec![],
    };
    let settings = ProbeSettings {
        image: "img".into(),
        ports: vec![22],
        beyond: ProbeTargets { addresses: vec![Ipv4Addr::new(198, 51, 100, 7)], gateway: true },
        timeout_secs: 1,
        max_tenant_targets: 8,
    };
    let plans = plan_probes(&snapshot, "a", &host, &settings);
    assert_eq!(plans.len(), 4);
    let db = &plans[2];
    assert_eq!(db.network, "a_database");
    assert!(db.internal);
    assert_eq!(db.tenants, vec![(Ipv4Addr::new(10, 201, 1, 130), "b-db".into(), "b".into())]);
    let host_addresses: Vec<Ipv4Addr> = db.host.iter().map(|(a, _)| *a).collect();
    assert_eq!(
        host_addresses,
        vec![
            Ipv4Addr::new(10, 201, 0, 129),
            Ipv4Addr::new(192, 0, 2, 2),
            Ipv4Addr::new(172, 17, 0, 1),
            Ipv4Addr::new(10, 201, 1, 1)
        ]
    );
    assert_eq!(db.beyond, vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 7)]);
    // By default nothing beyond the host is tried, not even its gateway.
    let defaults = ProbeSettings { beyond: ProbeTargets::default(), ..settings.clone() };
    assert!(plan_probes(&snapshot, "a", &host, &defaults).iter().all(|p| p.beyond.is_empty()));

    // As measured: the host answers, the other tenant and the outside do not.
    let answer = |plan: &ProbePlan| -> anyhow::Result<ProbeReport> {
        Ok(ProbeReport {
            network: plan.network.clone(),
            source: vec![],
            results: plan
                .spec
                .targets
                .iter()
                .map(|t| {
                    let host = plan.host.iter().any(|(a, _)| *a == t.address);
                    let open = t.address == Ipv4Addr::new(192, 0, 2, 2);
                    ProbeResult {
                        address: t.address,
                        icmp: Some(host),
                        tcp: t
                            .ports
                            .iter()
                            .map(|p| {
                                (
                                    *p,
                                    if open {
                                        TcpOutcome::Open
                                    } else if host {
                                        TcpOutcome::Refused
                                    } else {
                                        TcpOutcome::Timeout
                                    },
                                )
                            })
                            .collect(),
                    }
                })
                .collect(),
            forged: None,
        })
    };
    let reports: Vec<_> = plans.iter().map(answer).collect();
    let none: Vec<Option<anyhow::Result<ProbeReport>>> = plans.iter().map(|_| None).collect();
    assert!(plans.iter().zip(&reports).all(|(p, r)| retry_spec(p, r.as_ref().unwrap()).is_none()));
    let check = probe_check(&plans, &reports, &none);
    assert_eq!(check.status, Status::Warn, "{check:?}");
    assert!(
        check.summary.starts_with("every network, internal ones too, reaches the host's own addresses (10.201.0.1, "),
        "{}",
        check.summary
    );
    assert!(check.summary.contains("listening there: 22 on 192.0.2.2"), "{}", check.summary);
    assert_eq!(check.evidence[2]["other_tenants"][0]["reachable"], false);

    // Another tenant answering fails, and so does an internal network reaching outside.
    let mut reports = reports;
    if let Ok(report) = &mut reports[2] {
        for r in &mut report.results {
            if r.address == Ipv4Addr::new(10, 201, 1, 130) || r.address == Ipv4Addr::new(198, 51, 100, 7) {
                r.icmp = Some(true);
            }
        }
    }
    let retry = retry_spec(&plans[2], reports[2].as_ref().unwrap()).expect("a reach to confirm");
    let retried: Vec<Ipv4Addr> = retry.targets.iter().map(|t| t.address).collect();
    assert_eq!(retried, vec![Ipv4Addr::new(10, 201, 1, 130), Ipv4Addr::new(198, 51, 100, 7)]);
    // Confirmed on the second try: a failure.
    let mut retries: Vec<Option<anyhow::Result<ProbeReport>>> = plans.iter().map(|_| None).collect();
    retries[2] = Some(Ok(reports[2].as_ref().unwrap().clone()));
    let check = probe_check(&plans, &reports, &retries);
    assert_eq!(check.status, Status::Fail);
    assert!(check.summary.contains("a_database reaches b-db of client b"), "{}", check.summary);
    assert!(
        check.summary.contains("internal network a_database reaches beyond the host (198.51.100.7)"),
        "{}",
        check.summary
    );
    // Not reached on the second try: the transient window of a network create, a warning.
    let mut quiet = reports[2].as_ref().unwrap().clone();
    for r in &mut quiet.results {
        r.icmp = Some(false);
        r.tcp.clear();
    }
    retries[2] = Some(Ok(quiet));
    let check = probe_check(&plans, &reports, &retries);
    assert_eq!(check.status, Status::Warn, "{check:?}");
    assert!(check.summary.contains("a_database reached b-db of client b (10.201.1.130) once"), "{}", check.summary);
    assert_eq!(check.evidence[2]["other_tenants"][0]["reached_once"], true);
}

#[test]
fn ports_and_drivers() {
    assert_eq!(parse_ports("22, 80,443").unwrap(), vec![22, 80, 443]);
    assert!(parse_ports("http").is_err());
    assert!(check_driver("overlay").is_ok());
    assert!(check_driver("macvlan").is_err());
    let recorded = BTreeMap::from([(ENV_DRIVER.to_string(), "overlay".to_string())]);
    assert_eq!(client_driver(&recorded, ""), "overlay");
    assert_eq!(client_driver(&BTreeMap::new(), ""), "bridge");
    assert_eq!(client_driver(&BTreeMap::new(), "overlay"), "overlay");
}
