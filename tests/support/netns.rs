//! A host "beyond this machine" that a test makes itself (SPEC §14): a network namespace
//! joined to the host by a veth pair with TEST-NET-2 addresses (198.51.100.0/24) and routed
//! like any outside address, so probes can reach beyond the host without a packet leaving it.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use agency::drivers::process::Command;

use super::docker::unique;

pub struct TestNamespace {
    ip: PathBuf,
    name: String,
    /// The host's end of the veth pair.
    pub host_link: String,
    /// The namespace's own address: the "outside" target.
    pub address: Ipv4Addr,
}

impl TestNamespace {
    /// Creates the namespace and its link. Panics when `ip netns` is not usable (root and
    /// iproute2 are needed, as for Docker itself).
    pub fn new() -> Self {
        let ip = which::which("ip").expect("ip (apt-get install iproute2)");
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = unique("n");
        // One /30 of 198.51.100.0/24 per namespace: a test process's namespaces never share
        // one, and processes start at different blocks.
        let block = (std::process::id().wrapping_mul(7) + NEXT.fetch_add(1, Ordering::Relaxed)) % 64;
        let base = u32::from(Ipv4Addr::new(198, 51, 100, 0)) + block * 4;
        let (host_side, ns_side) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        let name = format!("agency-{id}");
        // `veth` names: the probe leaves such links of the host alone (they come and go).
        let short: String = id.chars().rev().take(11).collect();
        let (host_link, ns_link) = (format!("veth{short}"), format!("vetn{short}"));
        let namespace = Self { ip: ip.clone(), name: name.clone(), host_link: host_link.clone(), address: ns_side };
        let run = |args: &[&str]| {
            let output = Command::new(&ip).args(args.iter().copied()).output().unwrap();
            assert!(output.success(), "ip {} failed: {}", args.join(" "), output.stderr);
        };
        run(&["netns", "add", &name]);
        run(&["link", "add", &host_link, "type", "veth", "peer", "name", &ns_link, "netns", &name]);
        run(&["addr", "add", &format!("{host_side}/30"), "dev", &host_link]);
        run(&["link", "set", &host_link, "up"]);
        run(&["-n", &name, "addr", "add", &format!("{ns_side}/30"), "dev", &ns_link]);
        run(&["-n", &name, "link", "set", &ns_link, "up"]);
        run(&["-n", &name, "link", "set", "lo", "up"]);
        run(&["-n", &name, "route", "add", "default", "via", &host_side.to_string()]);
        namespace
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair, and so the host's end.
        let _ = Command::new(&self.ip).args(["netns", "del", &self.name]).output();
    }
}
