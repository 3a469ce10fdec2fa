//! The Docker driver against the real engine.

use std::collections::BTreeMap;

use agency::{
    drivers::docker::{
        self, ConnectError, CreateNetworkError, Docker, LABEL_CLIENT, LABEL_MANAGED, NetworkSpec, ProbeSpec,
        ProbeTarget, TcpOutcome,
    },
    tenant::networks,
    tenant::subnet::{Allocator, Ipv4Net, Pool},
};

use crate::{
    require_docker,
    support::docker::{Scratch, TEST_LABEL, busybox_image, scratch_pool, unique},
};

fn spec(name: &str) -> NetworkSpec {
    NetworkSpec::bridge(name).label(TEST_LABEL, "true")
}

#[test]
fn engine_answers_and_an_unreachable_daemon_is_named() {
    let docker = require_docker!();
    assert!(!docker.server_version().unwrap().is_empty());

    let dir = tempfile::tempdir().unwrap();
    let socket = format!("unix://{}/none.sock", dir.path().display());
    let down = Docker::with_program(docker.program()).env("DOCKER_HOST", &socket);
    let error = down.server_version().unwrap_err();
    let connect = error.downcast_ref::<ConnectError>().expect("a connection error");
    assert_eq!(connect, &ConnectError::DaemonDown { endpoint: socket.clone() });
    assert!(error.to_string().contains("start it"), "{error}");
    // Any later call says the same, not a parse error.
    let error = down.list_networks().unwrap_err().to_string();
    assert!(error.contains("not running or not reachable"), "{error}");

    let bad_context = Docker::with_program(docker.program()).env("DOCKER_CONTEXT", "agency-no-such-context");
    let error = bad_context.server_version().unwrap_err().to_string();
    assert!(error.starts_with("the Docker engine could not be reached: "), "{error}");
}

#[test]
fn network_lifecycle_with_labels_subnet_and_typed_errors() {
    let docker = require_docker!();
    let scratch = Scratch::new(&docker);
    let name = scratch.network(&unique("agt-net"));
    let pool = Pool::from_settings(Some(&scratch_pool(24)), Some("26")).unwrap();
    let mut allocator = Allocator::new(pool, networks::used_subnets(&docker).unwrap());
    let wanted = NetworkSpec { internal: true, ..spec(&name) }.label(LABEL_MANAGED, "true").label(LABEL_CLIENT, "x");
    let (id, subnet) = networks::create_network_in_pool(&docker, &wanted, &mut allocator).unwrap();
    assert!(pool.is_block(&subnet));

    // ls: one call, Internal and labels included.
    let listed = docker.list_networks().unwrap();
    let summary = listed.iter().find(|n| n.name == name).expect("listed");
    assert_eq!(summary.id, id);
    assert!(summary.internal);
    assert_eq!(summary.label(LABEL_CLIENT), Some("x"));

    // inspect: subnets, gateway, labels; a missing name is simply absent.
    let missing = unique("agt-missing");
    let details = docker.inspect_networks(&[&name, &missing]).unwrap();
    assert_eq!(details.len(), 1);
    assert_eq!(details[0].subnets, vec![subnet]);
    assert_eq!(details[0].gateways, vec![subnet.first_host()]);
    assert!(details[0].internal && !details[0].attachable);
    assert_eq!(details[0].driver, "bridge");
    assert_eq!(details[0].label(LABEL_MANAGED), Some("true"));
    assert!(networks::used_subnets(&docker).unwrap().contains(&subnet));

    // Same name again: typed "name taken".
    let again = docker.create_network(&spec(&name)).unwrap_err();
    assert!(matches!(again, CreateNetworkError::NameTaken { .. }), "{again}");

    // Another name on the same subnet: typed "overlap".
    let other = scratch.network(&unique("agt-net"));
    let overlap = docker.create_network(&NetworkSpec { subnet: Some(subnet), ..spec(&other) }).unwrap_err();
    assert!(matches!(overlap, CreateNetworkError::SubnetOverlaps { .. }), "{overlap}");
    assert!(docker.inspect_networks(&[&other]).unwrap().is_empty());

    assert!(docker.remove_network(&name).unwrap());
    assert!(!docker.remove_network(&name).unwrap());
    assert!(docker.inspect_networks(&[&name]).unwrap().is_empty());
}

#[test]
fn concurrent_allocations_from_one_snapshot_never_fail_on_overlap() {
    let docker = require_docker!();
    let scratch = Scratch::new(&docker);
    let pool = Pool::from_settings(Some(&scratch_pool(24)), Some("28")).unwrap();
    // Every thread starts from the same picture of the engine, as separate runners would, so
    // they all propose the same first blocks and must recover from Docker's overlap errors.
    let taken = networks::used_subnets(&docker).unwrap();
    let calls_before = docker.calls();
    let names: Vec<String> = (0..6).map(|_| scratch.network(&unique("agt-race"))).collect();
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| {
                let docker = docker.clone();
                let taken = taken.clone();
                scope.spawn(move || {
                    let mut allocator = Allocator::new(pool, taken);
                    networks::create_network_in_pool(&docker, &spec(name), &mut allocator).map(|(_, subnet)| subnet)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let subnets: Vec<Ipv4Net> = results.into_iter().map(|r| r.unwrap_or_else(|e| panic!("{e}"))).collect();
    for (i, a) in subnets.iter().enumerate() {
        assert!(pool.is_block(a));
        for b in &subnets[i + 1..] {
            assert!(!a.overlaps(b), "{a} and {b} overlap");
        }
    }
    // Later threads really met Docker's overlap error and moved on.
    assert!(docker.calls() - calls_before > names.len(), "no overlap was retried");
    let inspected = docker.inspect_networks(&names.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    assert_eq!(inspected.len(), names.len());
}

#[test]
fn a_full_pool_is_a_clear_error() {
    let docker = require_docker!();
    let scratch = Scratch::new(&docker);
    // A /27 pool holds two /28 blocks.
    let pool = Pool::from_settings(Some(&scratch_pool(27)), Some("28")).unwrap();
    let mut allocator = Allocator::new(pool, networks::used_subnets(&docker).unwrap());
    let mut created = 0;
    let error = loop {
        let name = scratch.network(&unique("agt-full"));
        match networks::create_network_in_pool(&docker, &spec(&name), &mut allocator) {
            Ok(_) => created += 1,
            Err(error) => break error,
        }
        assert!(created <= 2, "a /27 pool gave more than two /28 blocks");
    };
    let message = error.to_string();
    assert!(message.contains(&format!("the subnet pool {} has no free /28 block left", pool.net())), "{message}");
    assert!(message.contains("AGENCY_SUBNET_POOL"), "{message}");
}

#[test]
fn containers_list_their_networks_and_networks_their_containers() {
    let docker = require_docker!();
    let scratch = Scratch::new(&docker);
    let a = scratch.network(&unique("agt-a"));
    let b = scratch.network(&unique("agt-b"));
    let pool = Pool::from_settings(Some(&scratch_pool(24)), Some("26")).unwrap();
    let mut allocator = Allocator::new(pool, networks::used_subnets(&docker).unwrap());
    for name in [&a, &b] {
        networks::create_network_in_pool(&docker, &NetworkSpec { internal: true, ..spec(name) }, &mut allocator)
            .unwrap();
    }
    let server = scratch.server(&unique("agt-srv"), &a, &[(LABEL_CLIENT, "a")]);
    scratch.docker(&["network", "connect", &b, &server]);

    let containers = docker.list_containers().unwrap();
    let found = containers.iter().find(|c| c.name == server).expect("listed");
    let mut networks = found.networks.clone();
    networks.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(networks, expected);
    assert_eq!(found.label(LABEL_CLIENT), Some("a"));
    assert_eq!(found.state, "running");

    let details = docker.inspect_networks(&[&a]).unwrap();
    assert_eq!(details[0].containers.len(), 1);
    assert_eq!(details[0].containers[0].name, server);
    assert_eq!(details[0].containers[0].ipv4, Some(scratch.address(&server, &a)));

    let error = docker.remove_network(&a).unwrap_err().to_string();
    assert!(error.contains("still has containers attached"), "{error}");
}

#[test]
fn exec_feeds_stdin_and_masks_it_in_errors() {
    let docker = require_docker!();
    let scratch = Scratch::new(&docker);
    let net = scratch.network(&unique("agt-exec"));
    let mut allocator = Allocator::new(
        Pool::from_settings(Some(&scratch_pool(24)), Some("26")).unwrap(),
        networks::used_subnets(&docker).unwrap(),
    );
    networks::create_network_in_pool(&docker, &spec(&net), &mut allocator).unwrap();
    let server = scratch.server(&unique("agt-exec"), &net, &[]);

    let out = docker
        .exec_with_stdin(
            &server,
            &["sh", "-c", "read line; echo got:$line"],
            b"Secret-Value-42\n",
            &["Secret-Value-42"],
        )
        .unwrap();
    assert_eq!(out.trim(), "got:Secret-Value-42");

    let out = docker
        .exec(&server, &["sh", "-c", "echo $DB_PASSWORD | wc -c"], &[("DB_PASSWORD", "0123456789")], None, &[])
        .unwrap();
    assert_eq!(out.trim(), "11");

    let error = docker
        .exec_with_stdin(
            &server,
            &["sh", "-c", "read line; echo \"bad input: $line\" >&2; exit 3"],
            b"Secret-Value-42\n",
            &["Secret-Value-42\n"],
        )
        .unwrap_err()
        .to_string();
    assert!(error.contains("exit 3"), "{error}");
    assert!(!error.contains("Secret-Value-42"), "{error}");
}

#[test]
fn volumes_are_listed_by_label_with_mountpoints() {
    let docker = require_docker!();
    let scratch = Scratch::new(&docker);
    let client = unique("agtvol");
    let name = scratch.volume(&format!("{client}_data"));
    let label = format!("{LABEL_CLIENT}={client}");
    scratch.docker(&["volume", "create", "--label", &label, "--label", &format!("{TEST_LABEL}=true"), &name]);
    let volumes = docker.list_volumes(Some(&label)).unwrap();
    assert_eq!(volumes.len(), 1);
    assert_eq!(volumes[0].name, name);
    assert!(volumes[0].mountpoint.contains(&name), "{}", volumes[0].mountpoint);
    assert_eq!(volumes[0].labels.get(LABEL_CLIENT), Some(&client));
}

#[test]
fn probe_on_an_internal_network_reaches_the_host_but_not_another_network() {
    let docker = require_docker!();
    let image = busybox_image(&docker);
    let scratch = Scratch::new(&docker);
    let a = scratch.network(&unique("agt-pa"));
    let b = scratch.network(&unique("agt-pb"));
    let pool = Pool::from_settings(Some(&scratch_pool(24)), Some("26")).unwrap();
    let mut allocator = Allocator::new(pool, networks::used_subnets(&docker).unwrap());
    let (_, subnet_a) =
        networks::create_network_in_pool(&docker, &NetworkSpec { internal: true, ..spec(&a) }, &mut allocator).unwrap();
    let (_, subnet_b) =
        networks::create_network_in_pool(&docker, &NetworkSpec { internal: true, ..spec(&b) }, &mut allocator).unwrap();
    let neighbour = scratch.server(&unique("agt-pn"), &a, &[]);
    let stranger = scratch.server(&unique("agt-ps"), &b, &[]);
    let neighbour_ip = scratch.address(&neighbour, &a);
    let stranger_ip = scratch.address(&stranger, &b);

    let host = docker.host_net_info(image).unwrap();
    assert!(host.addresses.iter().any(|h| h.address == subnet_a.first_host()), "{host:?}");
    let host_ip = host
        .addresses
        .iter()
        .find(|h| !h.address.is_loopback() && !h.interface.starts_with("br-") && h.interface != "docker0")
        .map(|h| h.address);

    let mut targets = vec![
        ProbeTarget { address: neighbour_ip, icmp: true, ports: vec![80] },
        ProbeTarget { address: stranger_ip, icmp: true, ports: vec![80] },
        ProbeTarget { address: subnet_a.first_host(), icmp: true, ports: vec![] },
        ProbeTarget { address: subnet_b.first_host(), icmp: true, ports: vec![] },
    ];
    targets.extend(host_ip.map(|address| ProbeTarget { address, icmp: true, ports: vec![] }));
    let probe = ProbeSpec {
        image: image.to_string(),
        network: a.clone(),
        targets,
        timeout_secs: 2,
        labels: BTreeMap::from([(TEST_LABEL.to_string(), "true".to_string())]),
        forge: None,
    };
    let report = docker.run_probe(&probe).unwrap();
    assert_eq!(report.source.len(), 1);
    assert!(subnet_a.contains(report.source[0]));

    let neighbour_result = report.result(neighbour_ip).unwrap();
    assert_eq!(neighbour_result.icmp, Some(true));
    assert_eq!(neighbour_result.tcp, vec![(80, TcpOutcome::Open)]);
    let stranger_result = report.result(stranger_ip).unwrap();
    assert!(!stranger_result.reachable(), "{stranger_result:?}");
    // What this engine does: an internal network still reaches the host's own addresses.
    assert!(report.result(subnet_a.first_host()).unwrap().reachable());
    assert!(report.result(subnet_b.first_host()).unwrap().reachable());
    if let Some(host_ip) = host_ip {
        assert!(report.result(host_ip).unwrap().reachable());
    }

    // The probe removed itself.
    let left: Vec<_> = docker.list_containers().unwrap().into_iter().filter(|c| c.networks.contains(&a)).collect();
    assert_eq!(left.len(), 1, "{left:?}");

    // Several probes at once keep their order.
    let reports = docker.run_probes(&[probe.clone(), ProbeSpec { network: b.clone(), ..probe }], 2);
    assert_eq!(reports[0].as_ref().unwrap().network, a);
    assert_eq!(reports[1].as_ref().unwrap().network, b);
    assert!(reports[1].as_ref().unwrap().result(stranger_ip).unwrap().reachable());
}

#[test]
fn the_test_image_is_static_busybox() {
    let docker = require_docker!();
    let image = busybox_image(&docker);
    assert!(docker.image_exists(image).unwrap());
    assert!(!docker.image_exists(&unique("agency-no-such-image")).unwrap());
    assert!(docker::find_static_busybox().is_ok());
}
