use super::*;
use crate::{
    drivers::docker::{ContainerSummary, Endpoint, HostAddress, LABEL_MANAGED, NetworkDetails, ProbeResult},
    format::validate::ProbeTargets,
    tenant::{isolation::TIERS, subnet::Ipv4Net},
};

fn networks(client: &str, base: u8) -> Vec<NetworkDetails> {
    TIERS
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let subnet: Ipv4Net = format!("10.201.{base}.{}/26", i * 64).parse().unwrap();
            NetworkDetails {
                id: format!("id-{client}-{}", t.name),
                name: format!("{client}_{}", t.name),
                created: String::new(),
                driver: "bridge".into(),
                scope: "local".into(),
                internal: t.internal,
                attachable: false,
                ingress: false,
                subnets: vec![subnet],
                gateways: vec![subnet.first_host()],
                labels: [(LABEL_MANAGED, "true"), (LABEL_CLIENT, client), ("agency.tier", t.name)]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                containers: Vec::new(),
                bridge: Some(crate::drivers::docker::bridge_name(subnet)),
            }
        })
        .collect()
}

fn web(name: &str, client: &str, ports: &str) -> ContainerSummary {
    ContainerSummary {
        id: format!("cid-{name}"),
        name: name.into(),
        image: "img".into(),
        state: "running".into(),
        labels: [(LABEL_CLIENT.to_string(), client.to_string())].into(),
        networks: vec![format!("{client}_frontend")],
        ports: ports.into(),
    }
}

fn scene() -> (Snapshot, HostNetInfo, ProbeSettings) {
    let mut all = networks("a", 0);
    let mut b = networks("b", 1);
    b[2].containers.push(Endpoint {
        container_id: "c1".into(),
        name: "b-db".into(),
        ipv4: Some(Ipv4Addr::new(10, 201, 1, 130)),
    });
    all.extend(b);
    all.extend(networks("c", 2));
    let containers = vec![
        // b's site on every address and on b's frontend gateway; a's own site; c's on loopback only.
        web("b-web", "b", "0.0.0.0:8080->80/tcp, :::8080->80/tcp, 10.201.1.1:8443->443/tcp"),
        web("a-web", "a", "0.0.0.0:9090->80/tcp"),
        web("c-web", "c", "127.0.0.1:7070->80/tcp"),
    ];
    let snapshot = Snapshot::new(all, containers, &["a".into(), "b".into(), "c".into()]);
    let host = HostNetInfo {
        addresses: vec![
            HostAddress { interface: "lo".into(), address: Ipv4Addr::LOCALHOST, prefix: 8 },
            HostAddress { interface: "eth0".into(), address: Ipv4Addr::new(192, 0, 2, 2), prefix: 24 },
            HostAddress { interface: "agb-0ac90100".into(), address: Ipv4Addr::new(10, 201, 1, 1), prefix: 26 },
        ],
        default_gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
        // sshd on all, 53 on all (allowed), a database on eth0 only, something on loopback,
        // docker-proxy for a's 9090 and b's 8080.
        proc_net_tcp: [
            "0: 00000000:0016 00000000:0000 0A",
            "1: 00000000:0035 00000000:0000 0A",
            "2: 020200C0:1538 00000000:0000 0A",
            "3: 0100007F:0CEA 00000000:0000 0A",
            "4: 00000000:2382 00000000:0000 0A",
            "5: 00000000:1F90 00000000:0000 0A",
        ]
        .map(String::from)
        .to_vec(),
    };
    let settings = ProbeSettings {
        image: "img".into(),
        ports: vec![22],
        beyond: ProbeTargets::default(),
        timeout_secs: 1,
        max_tenant_targets: 8,
    };
    (snapshot, host, settings)
}

fn known() -> Vec<String> {
    vec!["a".into(), "b".into(), "c".into()]
}

#[test]
fn plans_published_ports_from_routed_tiers_and_listeners_from_every_tier() {
    let (snapshot, host, settings) = scene();
    let probes = plan(&snapshot, "a", &host, &settings, &BTreeSet::from([53]), &known());
    assert_eq!(probes.len(), 4);
    let frontend = &probes[0];
    let published: Vec<(Ipv4Addr, u16, &str)> =
        frontend.published.iter().map(|p| (p.address, p.port, p.container.as_str())).collect();
    // b's 8080 on a's own gateway and the host's eth0 address; b's 8443 on b's gateway; not
    // a's own port, not c's loopback one.
    assert_eq!(
        published,
        vec![
            (Ipv4Addr::new(10, 201, 0, 1), 8080, "b-web"),
            (Ipv4Addr::new(192, 0, 2, 2), 8080, "b-web"),
            (Ipv4Addr::new(10, 201, 1, 1), 8443, "b-web"),
        ]
    );
    let database = &probes[2];
    assert!(database.base.internal);
    assert!(database.published.is_empty(), "internal tiers reach no published port but through listeners");
    // 22 and 8080 (a listener, docker-proxy) on the gateway; the same plus 5432 on eth0;
    // 53 is allowed, 9090 is a's own, 3306 is on loopback.
    assert_eq!(
        database.listeners,
        vec![
            (Ipv4Addr::new(10, 201, 0, 129), 22),
            (Ipv4Addr::new(10, 201, 0, 129), 8080),
            (Ipv4Addr::new(192, 0, 2, 2), 22),
            (Ipv4Addr::new(192, 0, 2, 2), 5432),
            (Ipv4Addr::new(192, 0, 2, 2), 8080),
        ]
    );
    // The spec tries them all, one target per address; and the peer once it runs.
    let mut probe = database.clone();
    probe.peer = Some(Ipv4Addr::new(10, 201, 0, 130));
    let spec = probe.spec();
    let eth0 = spec.targets.iter().find(|t| t.address == Ipv4Addr::new(192, 0, 2, 2)).unwrap();
    assert_eq!(eth0.ports, vec![22, 5432, 8080]);
    assert_eq!(spec.targets.iter().filter(|t| t.address == Ipv4Addr::new(192, 0, 2, 2)).count(), 1);
    assert!(spec.targets.iter().any(|t| t.address == Ipv4Addr::new(10, 201, 0, 130) && t.ports == vec![PEER_PORT]));
    assert_eq!(database.base.tenants.len(), 1);

    // Clients of other roots are not probed: not b's database, gateways or published ports.
    let alone = plan(&snapshot, "a", &host, &settings, &BTreeSet::new(), &["a".into()]);
    assert!(alone.iter().all(|p| p.base.tenants.is_empty() && p.published.is_empty()), "{alone:?}");
    let b_addresses = |a: &Ipv4Addr| (u32::from(*a) >> 8) == u32::from(Ipv4Addr::new(10, 201, 1, 0)) >> 8;
    for probe in &alone {
        assert!(probe.spec().targets.iter().all(|t| !b_addresses(&t.address)), "{probe:?}");
    }
}

#[test]
fn forgeries_go_into_another_tenants_internal_network_one_client_each() {
    let (snapshot, _, _) = scene();
    let forgeries = plan_forgeries(&snapshot, &["a".into(), "b".into()], &[]);
    let summary: Vec<(&str, &str, Ipv4Addr)> =
        forgeries.iter().map(|f| (f.network.as_str(), f.target_network.as_str(), f.forged)).collect();
    assert_eq!(
        summary,
        vec![
            ("a_frontend", "b_database", Ipv4Addr::new(10, 201, 1, 190)),
            ("a_network", "b_database", Ipv4Addr::new(10, 201, 1, 189)),
            ("b_frontend", "a_database", Ipv4Addr::new(10, 201, 0, 190)),
            ("b_network", "a_database", Ipv4Addr::new(10, 201, 0, 189)),
        ]
    );
    assert_eq!(forgeries[0].gateway, Ipv4Addr::new(10, 201, 0, 1));
    // Probed alone, a client forges into another's database all the same.
    let alone = plan_forgeries(&snapshot, &["c".into()], &["a".into(), "c".into()]);
    assert!(alone.iter().all(|f| f.target_network == "a_database"), "{alone:?}");
    // Only clients of this root are forged into.
    assert!(plan_forgeries(&snapshot, &["c".into()], &["c".into()]).is_empty());
    assert_eq!(alone.len(), 2);
}

fn report(probe: &NetworkProbe, open: &[(Ipv4Addr, u16)]) -> anyhow::Result<ProbeReport> {
    let spec = probe.spec();
    Ok(ProbeReport {
        network: probe.base.network.clone(),
        source: vec![],
        results: spec
            .targets
            .iter()
            .map(|t| ProbeResult {
                address: t.address,
                icmp: t.icmp.then_some(false),
                tcp: t
                    .ports
                    .iter()
                    .map(|p| (*p, if open.contains(&(t.address, *p)) { TcpOutcome::Open } else { TcpOutcome::Timeout }))
                    .collect(),
            })
            .collect(),
        forged: None,
    })
}

#[test]
fn open_paths_fail_and_blocked_ones_pass_with_working_controls() {
    let (snapshot, host, settings) = scene();
    let mut probes = plan(&snapshot, "a", &host, &settings, &BTreeSet::new(), &known());
    for (i, probe) in probes.iter_mut().enumerate() {
        probe.peer = Some(Ipv4Addr::new(10, 201, 0, 64 * i as u8 + 10));
    }
    let peers: Vec<(Ipv4Addr, u16)> = probes.iter().map(|p| (p.peer.unwrap(), PEER_PORT)).collect();
    let forgeries = plan_forgeries(&snapshot, &["a".into()], &["a".into(), "b".into()]);
    let host_to_peer: BTreeMap<String, Option<bool>> =
        probes.iter().map(|p| (p.base.network.clone(), Some(true))).collect();
    let none = BTreeMap::new();
    let judge_with = |reports: &[anyhow::Result<ProbeReport>], forged: &[Forged], host_to_peer| {
        let retries: Vec<_> = probes.iter().map(|_| None).collect();
        judge(&Answers {
            probes: &probes,
            forgeable: true,
            reports,
            retries: &retries,
            peer_errors: &none,
            host_to_peer,
            forged,
        })
    };
    let blocked: Vec<_> = probes.iter().map(|p| report(p, &peers)).collect();
    let clean: Vec<Forged> =
        forgeries.iter().map(|f| Forged { forgery: f.clone(), result: Ok((Some(0), Some(0))) }).collect();
    let check = judge_with(&blocked, &clean, &host_to_peer);
    assert_eq!(check.status, Status::Ok, "{check:?}");
    assert!(check.summary.contains("forged sources, published ports and the host's listening ports blocked"));

    // Every path open: each one named.
    let database_gateway = Ipv4Addr::new(10, 201, 0, 129);
    let mut open = peers.clone();
    open.extend([(Ipv4Addr::new(192, 0, 2, 2), 8080), (database_gateway, 22)]);
    let opened: Vec<_> = probes.iter().map(|p| report(p, &open)).collect();
    let leaky: Vec<Forged> =
        forgeries.iter().map(|f| Forged { forgery: f.clone(), result: Ok((Some(20), Some(3))) }).collect();
    let check = judge_with(&opened, &leaky, &host_to_peer);
    assert_eq!(check.status, Status::Fail);
    for expected in [
        "a_frontend reaches client b's published port 8080 on 192.0.2.2 (b-web)",
        "a_database reaches the host's port 22 on 10.201.0.129",
        "20 of 20 forged packets from a_frontend (source 10.201.1.190, inside b_database) reached a container on b_database of client b",
        "3 forged UDP datagrams from a_network (source 10.201.1.189; 20 sent, resends of a container's tftp too) reached the host",
    ] {
        assert!(check.summary.contains(expected), "{expected:?} not in {}", check.summary);
    }
    let frontend = &check.evidence[0];
    assert_eq!(frontend["published"][1]["open"], true, "{frontend:#}");
    assert_eq!(frontend["forged"][0]["delivered_into_container"], 20, "{frontend:#}");

    // A reach seen once and not on the second look is a warning.
    let retries: Vec<_> = probes.iter().map(|p| Some(report(p, &peers))).collect();
    let check = judge(&Answers {
        probes: &probes,
        forgeable: true,
        reports: &opened,
        retries: &retries,
        peer_errors: &none,
        host_to_peer: &host_to_peer,
        forged: &clean,
    });
    assert_eq!(check.status, Status::Warn, "{check:?}");
    assert!(check.summary.contains("once, not on a second try"), "{}", check.summary);
    assert!(retry_spec(&probes[0], opened[0].as_ref().unwrap()).is_some());
    assert!(retry_spec(&probes[0], blocked[0].as_ref().unwrap()).is_none());

    // Controls: a probe that cannot reach its own network's peer, the host that cannot reach a
    // container, proves nothing.
    let no_peers: Vec<_> = probes.iter().map(|p| report(p, &[])).collect();
    let mut broken_host = host_to_peer.clone();
    broken_host.insert("a_backend".into(), Some(false));
    let check = judge_with(&no_peers, &clean, &broken_host);
    assert_eq!(check.status, Status::Fail);
    assert!(check.summary.contains("traffic within a_backend does not work"), "{}", check.summary);
    assert!(check.summary.contains("the host cannot connect to a container on a_backend"), "{}", check.summary);
}
