//! The traffic guard of SPEC §14 for tests that start containers: a netfilter table of the
//! test's own that counts, and drops, every packet from the test subnets that the host would
//! route off the machine. Such a packet leaves through a physical interface or one holding a
//! default route; everything a test may reach (containers, bridges, its own namespaces,
//! loopback, the host's addresses) is elsewhere. The test asserts the count is zero; the table
//! goes when the guard drops.

use std::{fs, path::PathBuf};

use agency::drivers::process::Command;

use super::docker::unique;

/// The address ranges tests give their clients' networks: the default pool and the scratch
/// pools of `support::docker::scratch_pool`.
pub const TEST_SUBNETS: &[&str] = &["10.201.0.0/16", "10.224.0.0/11"];

pub struct TrafficGuard {
    nft: PathBuf,
    table: String,
}

impl TrafficGuard {
    /// Starts counting packets from `TEST_SUBNETS`. Panics when the table cannot be made, in CI
    /// and elsewhere: a test that starts containers must not run unguarded.
    pub fn start() -> Self {
        Self::counting_exits(&exit_interfaces())
    }

    /// A guard that takes `exits` for the ways off the machine (its own test uses a namespace's
    /// link, so it can see the counter move without a packet leaving).
    pub fn counting_exits(exits: &[String]) -> Self {
        let nft =
            which::which("nft").unwrap_or_else(|_| panic!("the traffic guard needs nft (apt-get install nftables)"));
        let table = format!("agency_guard_{}", unique("t"));
        let exits: Vec<String> = exits.iter().map(|i| format!("\"{i}\"")).collect();
        let rule = if exits.is_empty() {
            // No way off the machine: the chain stays empty, and so does the count.
            String::new()
        } else {
            format!("ip saddr {{ {} }} oifname {{ {} }} counter drop", TEST_SUBNETS.join(", "), exits.join(", "))
        };
        let ruleset = format!(
            "table inet {table} {{\n  chain leaving {{\n    type filter hook forward priority -20; policy accept;\n    {rule}\n  }}\n}}\n"
        );
        let output = Command::new(&nft).args(["-f", "-"]).stdin(ruleset.as_bytes()).output().unwrap();
        assert!(output.success(), "could not create the traffic guard table {table}: {}", output.stderr);
        Self { nft, table }
    }

    /// Packets counted (and dropped) so far.
    pub fn leaked(&self) -> u64 {
        let output = Command::new(&self.nft).args(["list", "table", "inet", &self.table]).output().unwrap();
        assert!(output.success(), "could not read the traffic guard {}: {}", self.table, output.stderr);
        output
            .stdout
            .split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .map_or(0, |n| n.parse().unwrap_or_else(|_| panic!("guard counter {n:?} is not a number")))
    }

    /// Fails the test when any packet from a test subnet was routed off the machine.
    pub fn assert_nothing_left_the_host(&self) {
        let leaked = self.leaked();
        assert_eq!(leaked, 0, "{leaked} packet(s) from the test subnets were routed off this machine (dropped)");
    }
}

impl Drop for TrafficGuard {
    fn drop(&mut self) {
        let _ = Command::new(&self.nft).args(["delete", "table", "inet", &self.table]).output();
    }
}

/// Interfaces a routed packet would leave the machine by: physical ones and those holding a
/// default route.
pub fn exit_interfaces() -> Vec<String> {
    let mut interfaces: Vec<String> = fs::read_dir("/sys/class/net")
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().join("device").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    for family in ["-4", "-6"] {
        let Ok(output) = Command::new(&which::which("ip").expect("ip (iproute2)"))
            .args([family, "-o", "route", "show", "default"])
            .output()
        else {
            continue;
        };
        let words: Vec<&str> = output.stdout.split_whitespace().collect();
        for pair in words.windows(2).filter(|w| w[0] == "dev") {
            if !interfaces.iter().any(|i| i == pair[1]) {
                interfaces.push(pair[1].to_string());
            }
        }
    }
    interfaces
}
