//! Unit tests of the Docker driver's parsing and argument building.

use super::*;
use std::{collections::BTreeMap, net::Ipv4Addr};

#[test]
fn classifies_connection_failures() {
    let down = classify_connect_failure(
        "Cannot connect to the Docker daemon at unix:///tmp/x.sock. Is the docker daemon running?\n",
    )
    .unwrap();
    assert_eq!(down, ConnectError::DaemonDown { endpoint: "unix:///tmp/x.sock".into() });
    assert!(down.to_string().contains("systemctl start docker"));

    let denied = classify_connect_failure(
        "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: \
         Get \"http://%2Fvar%2Frun%2Fdocker.sock/v1.50/version\": dial unix /var/run/docker.sock: connect: permission denied",
    )
    .unwrap();
    assert_eq!(denied, ConnectError::PermissionDenied { endpoint: "unix:///var/run/docker.sock".into() });
    assert!(denied.to_string().contains("docker` group"));

    let old_denied = classify_connect_failure(
        "Got permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: ...",
    );
    assert!(matches!(old_denied, Some(ConnectError::PermissionDenied { .. })));

    let context = classify_connect_failure(
        "Failed to initialize: unable to resolve docker endpoint: context \"nope\": context not found: open ...",
    );
    assert!(matches!(context, Some(ConnectError::Other(_))));

    assert_eq!(classify_connect_failure("Error response from daemon: network x not found"), None);
}

#[test]
fn classifies_create_failures_from_real_messages() {
    let taken = classify_create_failure("a", None, "Error response from daemon: network with name a already exists\n");
    assert!(matches!(taken, CreateNetworkError::NameTaken { .. }));
    let subnet: Ipv4Net = "10.201.0.0/26".parse().unwrap();
    let overlap = classify_create_failure(
        "a",
        Some(subnet),
        "Error response from daemon: Pool overlaps with other one on this address space\n",
    );
    assert!(matches!(overlap, CreateNetworkError::SubnetOverlaps { subnet: Some(s), .. } if s == subnet));
    assert!(overlap.to_string().contains("10.201.0.0/26 overlaps"));
    let newer = classify_create_failure(
        "a",
        Some(subnet),
        "Error response from daemon: invalid pool request: Pool overlaps with other one on this address space",
    );
    assert!(matches!(newer, CreateNetworkError::SubnetOverlaps { .. }));
    let exhausted = classify_create_failure(
        "a",
        None,
        "Error response from daemon: could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network",
    );
    assert!(exhausted.to_string().contains("explicit subnet"), "{exhausted}");
    let swarm = classify_create_failure(
        "a",
        None,
        "Error response from daemon: This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.",
    );
    assert!(matches!(swarm, CreateNetworkError::SwarmRequired { .. }));
    let other = classify_create_failure("a", None, "Error response from daemon: plugin \"x\" not found");
    assert_eq!(other.to_string(), "could not create network a: plugin \"x\" not found");
}

#[test]
fn parses_network_ls() {
    let exact = |values: [&str; 10]| values.map(|v| format!("\t{}", serde_json::json!(v))).concat();
    let out = format!(
        "{}{}\n{}{}\n{}{}\n",
        r#"{"CreatedAt":"2026-11-27 12:22:41 +0000 UTC","Driver":"bridge","ID":"978e","IPv4":"false","IPv6":"false","Internal":"false","Labels":"","Name":"bridge","Scope":"local"}"#,
        exact(["", "", "", "", "", "", "", "", "", ""]),
        r#"{"CreatedAt":"2026-11-27 12:25:27 +0000 UTC","Driver":"bridge","ID":"a59e","IPv4":"false","IPv6":"false","Internal":"true","Labels":"agency.client=acme,agency.managed=true,c=","Name":"acme_database","Scope":"local"}"#,
        exact(["true", "acme", "", "", "", "", "", "", "", ""]),
        // Real Docker 20.10 output for `--label 'note=x,agency.client=b' --label agency.tier=backend`.
        r#"{"Driver":"bridge","ID":"b1","Internal":"false","Labels":"agency.tier=backend,note=x,agency.client=b","Name":"spoof","Scope":"local"}"#,
        exact(["", "", "backend", "", "", "", "", "", "", ""]),
    );
    let networks = parse_network_ls(&out).unwrap();
    assert_eq!(networks.len(), 3);
    assert!(!networks[0].internal);
    assert!(networks[0].labels.is_empty());
    assert!(networks[1].internal);
    assert_eq!(networks[1].label("agency.client"), Some("acme"));
    assert_eq!(networks[1].label("c"), Some(""));
    assert_eq!(networks[2].label("agency.client"), None, "{:?}", networks[2].labels);
    assert_eq!(networks[2].label("agency.tier"), Some("backend"));
    assert_eq!(networks[2].label("note"), Some("x"));
    assert!(parse_network_ls("not json").is_err());
    assert_eq!(exact_format(&["agency.client"]), "{{json .}}\t{{json (.Label \"agency.client\")}}");
}

#[test]
fn parses_network_inspect() {
    let out = r#"[
{"Name": "zz_t1","Id": "a7e6","Scope": "local","Driver": "bridge","EnableIPv6": false,
 "IPAM": {"Driver": "default","Options": {},"Config": [{"Subnet": "10.250.0.0/26"}, {"Subnet": "fd00::/64"}]},
 "Internal": false,"Attachable": true,"Ingress": false,
 "Containers": {"c1": {"Name": "web","IPv4Address": "10.250.0.2/26","IPv6Address": ""},
                "lb-zz_t1": {"Name": "zz_t1-endpoint","IPv4Address": "10.250.0.3/26"}},
 "Options": {},"Labels": {"agency.test": "x"}},
{"Name": "zz_t4","Id": "a59e","Scope": "local","Driver": "bridge",
 "IPAM": {"Driver": "default","Options": {},"Config": [{"Subnet": "172.18.0.0/16","Gateway": "172.18.0.1"}]},
 "Internal": true,"Attachable": false,"Ingress": false,"Containers": {},"Labels": null}
]"#;
    let networks = parse_network_inspect(out).unwrap();
    assert_eq!(networks[0].subnets, vec!["10.250.0.0/26".parse().unwrap()]);
    assert_eq!(networks[0].gateways, vec![Ipv4Addr::new(10, 250, 0, 1)]);
    assert!(networks[0].attachable);
    assert_eq!(
        networks[0].containers,
        vec![Endpoint { container_id: "c1".into(), name: "web".into(), ipv4: Some(Ipv4Addr::new(10, 250, 0, 2)) }]
    );
    assert!(networks[1].internal);
    assert!(networks[1].labels.is_empty());
    assert_eq!(networks[1].gateways, vec![Ipv4Addr::new(172, 18, 0, 1)]);
    assert!(parse_network_inspect("").unwrap().is_empty());
    assert!(parse_network_inspect("[]").unwrap().is_empty());
}

#[test]
fn parses_ps_and_volume_ls() {
    let keys = [LABEL_CLIENT, LABEL_PROBE, LABEL_SHARED_INGRESS];
    let ps = concat!(
        r#"{"Command":"\"sh\"","ID":"cddd","Image":"img","Labels":"agency.client=a,agency.probe=true","Names":"srv","Networks":"a_backend,b_backend","State":"running"}"#,
        "\t\"a\"\t\"true\"\t\"\"\n",
        r#"{"ID":"5024","Image":"img","Labels":"","Names":"other","Networks":"","State":"exited"}"#,
        "\t\"\"\t\"\"\t\"\"\n",
        // Real Docker 20.10 output for `--label 'x=1,agency.shared-ingress=true'`.
        r#"{"ID":"77","Image":"img","Labels":"agency.probe-image=true,x=1,agency.shared-ingress=true","Names":"sneaky","Networks":"n","State":"running"}"#,
        "\t\"\"\t\"\"\t\"\"\n",
    );
    let containers = parse_ps(ps, &keys).unwrap();
    assert_eq!(containers[0].networks, vec!["a_backend", "b_backend"]);
    assert!(containers[0].is_probe());
    assert_eq!(containers[0].label(LABEL_CLIENT), Some("a"));
    assert!(containers[1].networks.is_empty());
    assert_eq!(containers[1].state, "exited");
    assert_eq!(containers[2].label(LABEL_SHARED_INGRESS), None, "{:?}", containers[2].labels);
    assert_eq!(containers[2].label("x"), Some("1"));

    let volumes = parse_volume_ls(&format!(
        "{}\t\"\"\t\"zz\"\t\"\"\t\"\"\t\"\"\t\"\"\t\"\"",
        r#"{"Availability":"N/A","Driver":"local","Group":"N/A","Labels":"agency.client=zz","Links":"N/A","Mountpoint":"/var/lib/docker/volumes/zz_vol/_data","Name":"zz_vol","Scope":"local","Size":"N/A","Status":"N/A"}"#,
    ))
    .unwrap();
    assert_eq!(volumes[0].mountpoint, "/var/lib/docker/volumes/zz_vol/_data");
    assert_eq!(volumes[0].labels.get("agency.client").map(String::as_str), Some("zz"));
}

/// `docker ps` names its fields: a template that touches `.Size` (as `{{json .}}` does) has the
/// CLI ask the daemon to measure every container's files.
#[test]
fn ps_asks_for_its_fields_and_never_for_sizes() {
    let format = container_format(&[LABEL_CLIENT]);
    assert!(!format.contains("{{json .}}") && !format.contains("Size"), "{format}");
    assert!(format.ends_with("\t{{json (.Label \"agency.client\")}}"), "{format}");
    // Real Docker 20.10 output for that format.
    let line = concat!(
        r#"{"ID":"c3ca05fd3b22","Names":"db_1","Image":"agency-test/mariadb:bookworm","State":"running","#,
        r#""Labels":"agency.client=acme,zz=1","Networks":"acme_database","Ports":""}"#,
        "\t\"acme\"\n"
    );
    let containers = parse_ps(line, &[LABEL_CLIENT]).unwrap();
    assert_eq!(containers[0].name, "db_1");
    assert_eq!(containers[0].networks, vec!["acme_database"]);
    assert_eq!(containers[0].label(LABEL_CLIENT), Some("acme"));
}

#[test]
fn create_args_put_the_name_last_after_a_separator() {
    let spec = NetworkSpec { internal: true, attachable: true, ..NetworkSpec::bridge("acme_database") }
        .label("agency.tier", "database");
    let args = spec.create_args(Some("10.201.0.0/26".parse().unwrap()));
    assert_eq!(
        args.join(" "),
        "network create --driver bridge --internal --attachable --subnet 10.201.0.0/26 --label agency.tier=database -- acme_database"
    );
}

#[test]
fn probe_script_and_output() {
    let targets = vec![
        ProbeTarget { address: Ipv4Addr::new(10, 0, 0, 1), icmp: true, ports: vec![80, 22] },
        ProbeTarget { address: Ipv4Addr::new(10, 0, 1, 2), icmp: true, ports: vec![] },
    ];
    let script = probe_script(&targets, 2);
    assert!(script.contains("icmp 10.0.0.1 &\ntcp 10.0.0.1 80 &\ntcp 10.0.0.1 22 &\nicmp 10.0.1.2 &\nwait\n"));
    let report = parse_probe_output(
        "a_database",
        &targets,
        "self 10.0.0.3/26\ntcp 10.0.0.1 22 open\nicmp 10.0.1.2 fail\nicmp 10.0.0.1 ok\ntcp 10.0.0.1 80 refused\n",
    );
    assert_eq!(report.source, vec![Ipv4Addr::new(10, 0, 0, 3)]);
    let gateway = report.result(Ipv4Addr::new(10, 0, 0, 1)).unwrap();
    assert_eq!(gateway.tcp, vec![(80, TcpOutcome::Refused), (22, TcpOutcome::Open)]);
    assert!(gateway.reachable());
    assert_eq!(gateway.open_ports(), vec![22]);
    let other = report.result(Ipv4Addr::new(10, 0, 1, 2)).unwrap();
    assert_eq!(other.icmp, Some(false));
    assert!(!other.reachable());
}

/// The probe script run by busybox on this host against loopback: a listener is open, a closed
/// port refused, and an nc that hangs without connecting (as on a starved machine, until
/// `timeout` stops it) is a timeout, never an open port.
#[test]
fn probe_script_counts_only_a_connection_as_open() {
    let busybox = std::path::Path::new("/usr/bin/busybox");
    if !busybox.exists() {
        assert!(std::env::var_os("CI").is_none(), "busybox is required in CI (apt-get install busybox-static)");
        eprintln!("*** SKIP probe_script_counts_only_a_connection_as_open: busybox is not installed ***");
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let run = |port: u16, hanging_nc: bool| {
        let targets = [ProbeTarget { address: Ipv4Addr::LOCALHOST, icmp: false, ports: vec![port] }];
        let mut script = probe_script(&targets, 1);
        if hanging_nc {
            let connect = "nc -w $T \"$1\" \"$2\" -e sh -c 'echo connected >&2'";
            assert!(script.contains(connect), "{script}");
            script = script.replace(connect, "sleep 10");
        }
        let out = std::process::Command::new(busybox).args(["sh", "-c", &script]).output().unwrap();
        let report = parse_probe_output("lo", &targets, &String::from_utf8_lossy(&out.stdout));
        report.result(Ipv4Addr::LOCALHOST).unwrap().tcp.clone()
    };
    assert_eq!(run(open, false), vec![(open, TcpOutcome::Open)]);
    assert_eq!(run(closed, false), vec![(closed, TcpOutcome::Refused)]);
    assert_eq!(run(open, true), vec![(open, TcpOutcome::Timeout)]);
    drop(listener);
}

#[test]
fn parses_host_net_info() {
    let out = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
               4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever\n\
               5: docker0    inet 172.17.0.1/16 brd 172.17.255.255 scope global docker0\n\
               ---\n\
               default via 192.0.2.1 dev eth0\n\
               172.17.0.0/16 dev docker0 proto kernel scope link src 172.17.0.1\n";
    let info = parse_host_net_info(out);
    assert_eq!(info.default_gateway, Some(Ipv4Addr::new(192, 0, 2, 1)));
    assert_eq!(info.addresses.len(), 3);
    assert_eq!(
        info.addresses[1],
        HostAddress { interface: "eth0".into(), address: Ipv4Addr::new(192, 0, 2, 2), prefix: 24 }
    );
}

#[test]
fn redaction_masks_stdin_words() {
    let message = redact(
        "ERROR: syntax error at LINE 1: ALTER USER app PASSWORD 's3cr3t-Pa55'",
        "ALTER USER app PASSWORD 's3cr3t-Pa55';\n",
    );
    assert!(!message.contains("s3cr3t-Pa55"), "{message}");
    assert_eq!(redact("plain", ""), "plain");
    let text = "ERROR 1064: near 'IDENTIFIED BY s3cretValue' at line 1";
    let shown = redact(text, "old-pass\n\nALTER USER 'root' IDENTIFIED BY 's3cretValue';");
    assert!(!shown.contains("s3cretValue"), "{shown}");
}

#[test]
fn net_raw_is_default_unless_dropped() {
    let out = "a\tfalse\tnull\tnull\nb\tfalse\tnull\t[\"NET_RAW\"]\nc\tfalse\t[\"CAP_NET_RAW\"]\t[\"ALL\"]\n\
               d\ttrue\tnull\t[\"ALL\"]\ne\tfalse\tnull\t[\"all\"]\n";
    assert_eq!(parse_net_raw(out), ["a", "c", "d"]);
}

#[test]
fn network_age_pads_fractions() {
    let at = |created: &str, id: &str| NetworkDetails {
        id: id.into(),
        name: String::new(),
        created: created.into(),
        driver: String::new(),
        scope: String::new(),
        internal: false,
        attachable: false,
        ingress: false,
        subnets: Vec::new(),
        gateways: Vec::new(),
        labels: BTreeMap::new(),
        containers: Vec::new(),
        bridge: None,
    };
    let a = network_age_key(&at("2026-11-27T12:33:03.8Z", "b"));
    let b = network_age_key(&at("2026-11-27T12:33:03.80000001Z", "a"));
    assert!(a < b);
    let c = network_age_key(&at("2026-11-27T12:33:03Z", "z"));
    assert!(c < a);
    assert!(network_age_key(&at("2026-11-27T12:33:03Z", "a")) < c);
}

#[test]
fn static_elf_check() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("script");
    std::fs::write(&text, "#!/bin/sh\n").unwrap();
    assert!(check_static_elf(&text).unwrap_err().to_string().contains("not an ELF"));
    // The test binary itself is dynamically linked.
    let me = std::env::current_exe().unwrap();
    assert!(check_static_elf(&me).unwrap_err().to_string().contains("dynamically linked"));
}

#[test]
fn label_lists() {
    let labels = parse_label_list("a=b,c=,d");
    assert_eq!(labels.get("a").map(String::as_str), Some("b"));
    assert_eq!(labels.get("c").map(String::as_str), Some(""));
    assert_eq!(labels.get("d").map(String::as_str), Some(""));
    assert!(parse_label_list("").is_empty());
}
