//! agency's own nftables table (SPEC §9), generated from the clients' records: every bridge
//! network's interface, subnet and tier as client.env holds them. Docker never touches a table
//! it did not make, and `nft -f` replaces the whole table in one transaction, so there is no
//! moment without it. Everything per client lives in named sets; the rules are fixed, so a
//! table is compared with the kernel's by its sets' elements and its rules' text. Pure: no
//! process runs here (`drivers::nft` runs `nft`).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, anyhow, bail};

use crate::{
    tenant::isolation::{TIERS, client_driver},
    tenant::subnet::Ipv4Net,
};

pub use crate::drivers::docker::bridge_name;
pub(crate) use crate::drivers::docker::docker_bridge_name;

/// An interface name that may appear in a rule: 1 to 15 of `A-Z a-z 0-9 _ . -` (what a
/// client.env holds is checked, so no value there can change the ruleset's syntax).
pub(crate) fn valid_interface(name: &str) -> bool {
    (1..=15).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The firewall settings: `AGENCY_FIREWALL_TABLE`, `FIREWALL`, `FIREWALL_HOST_ALLOW`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FirewallSettings {
    /// The table's name in the `inet` family.
    pub table: String,
    /// `FIREWALL=off`: no table is applied, and status says isolation is not enforced.
    pub enabled: bool,
    pub host_tcp: BTreeSet<u16>,
    pub host_udp: BTreeSet<u16>,
}

impl FirewallSettings {
    pub(crate) fn parse(table: &str, firewall: &str, host_allow: &str) -> Result<Self> {
        let valid_table = table.len() <= 32
            && table.starts_with(|c: char| c.is_ascii_alphabetic())
            && table.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid_table {
            bail!(
                "AGENCY_FIREWALL_TABLE {table:?} is not a table name (a letter, then letters, digits or _; at most 32)"
            );
        }
        let enabled = match firewall.to_ascii_lowercase().as_str() {
            "" | "on" | "1" | "true" | "yes" => true,
            "off" | "0" | "false" | "no" => false,
            other => bail!("FIREWALL {other:?} is neither on nor off"),
        };
        let (mut host_tcp, mut host_udp) = (BTreeSet::new(), BTreeSet::new());
        for item in host_allow.split([',', ' ']).filter(|i| !i.is_empty()) {
            let (port, protocol) = item.split_once('/').unwrap_or((item, "tcp"));
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| anyhow!("FIREWALL_HOST_ALLOW: {item:?} is not PORT, PORT/tcp or PORT/udp"))?;
            match protocol {
                "tcp" => host_tcp.insert(port),
                "udp" => host_udp.insert(port),
                _ => bail!("FIREWALL_HOST_ALLOW: {item:?} is not PORT, PORT/tcp or PORT/udp"),
            };
        }
        Ok(Self { table: table.to_string(), enabled, host_tcp, host_udp })
    }
}

/// One bridge network of a client, as its client.env records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bridge {
    pub client: String,
    pub network: String,
    pub internal: bool,
    pub interface: String,
    pub subnet: Ipv4Net,
}

/// A client's bridges from its client.env, and what keeps a network out of the table (no
/// bridge recorded, an invalid name or subnet). Overlay clients have no bridges.
pub(crate) fn client_bridges(client: &str, env: &BTreeMap<String, String>) -> (Vec<Bridge>, Vec<String>) {
    let (mut bridges, mut problems) = (Vec::new(), Vec::new());
    if client_driver(env, "") != "bridge" {
        return (bridges, problems);
    }
    for tier in TIERS {
        let network = env.get(tier.env_network).cloned().unwrap_or_else(|| format!("{client}_{}", tier.name));
        let interface = env.get(tier.env_bridge).map(String::as_str).unwrap_or("");
        let subnet = env.get(tier.env_subnet).and_then(|s| s.parse::<Ipv4Net>().ok());
        match subnet {
            _ if interface.is_empty() => {
                problems.push(format!("client.env records no {} for {network}", tier.env_bridge))
            }
            _ if !valid_interface(interface) => {
                problems.push(format!("client.env {}={interface:?} is not an interface name", tier.env_bridge))
            }
            None => problems.push(format!("client.env records no valid {} for {network}", tier.env_subnet)),
            Some(subnet) => bridges.push(Bridge {
                client: client.to_string(),
                network,
                internal: tier.internal,
                interface: interface.to_string(),
                subnet,
            }),
        }
    }
    (bridges, problems)
}

/// (name, type) of the sets every table has.
const SETS: [(&str, &str); 4] =
    [("bridges", "ifname"), ("internal", "ifname"), ("host_tcp", "inet_service"), ("host_udp", "inet_service")];

/// First in both chains: a source the bridge it came in on does not route back to is forged.
const SOURCE_RULE: &str =
    "iifname @bridges fib saddr . iif oif missing drop comment \"source outside its bridge subnet\"";

/// The chains' fixed rules, written as `nft list` prints them back (that is how they are
/// compared). A bridge's sources and the traffic within it are judged by the kernel's own
/// routes (`fib ... . iif`), which bind each subnet to its bridge: a source is accepted only
/// when the way back to it is the bridge it came in on, and traffic stays within a bridge when
/// its destination is reached through the bridge it came in on. Sets of (interface, subnet)
/// did the same, but were more than half of `nft -f`'s work at 1,000 clients. Docker's bridges
/// are `docker0`, `docker_gwbridge` and `br-<id>`, agency's `agb-<hex>`; an uplink that is
/// itself a bridge (`br0`) is not among them, so outbound traffic still flows.
const CHAINS: [(&str, &str, &[&str]); 2] = [
    (
        "forward",
        "type filter hook forward priority filter - 10; policy accept;",
        &[
            SOURCE_RULE,
            "iifname @bridges fib daddr . iif oif exists accept comment \"within one bridge\"",
            "iifname @bridges meta nfproto ipv6 drop comment \"client networks are IPv4\"",
            "iifname @internal drop comment \"nothing routed out of an internal tier\"",
            "oifname @internal drop comment \"nothing routed into an internal tier\"",
            "iifname @bridges oifname @bridges drop comment \"to another client bridge\"",
            "iifname @bridges oifname \"agb-*\" drop comment \"to another bridge\"",
            "iifname @bridges oifname \"br-*\" drop comment \"to another bridge\"",
            "iifname @bridges oifname \"docker*\" drop comment \"to another bridge\"",
            "iifname \"agb-*\" oifname @bridges drop comment \"from another bridge\"",
            "iifname \"br-*\" oifname @bridges drop comment \"from another bridge\"",
            "iifname \"docker*\" oifname @bridges drop comment \"from another bridge\"",
        ],
    ),
    (
        "input",
        "type filter hook input priority filter - 10; policy accept;",
        &[
            SOURCE_RULE,
            "iifname @bridges ct state established,related accept comment \"replies to the host\"",
            "iifname @bridges meta nfproto ipv6 drop comment \"client networks are IPv4\"",
            "iifname @bridges tcp dport @host_tcp accept comment \"FIREWALL_HOST_ALLOW\"",
            "iifname @bridges udp dport @host_udp accept comment \"FIREWALL_HOST_ALLOW\"",
            "iifname @bridges drop comment \"nothing else from client networks to the host\"",
        ],
    ),
];

/// The sets' elements that `bridges` imply (the host ports' empty), written as `nft list`
/// prints them.
fn bridge_sets(bridges: &[Bridge]) -> BTreeMap<String, BTreeSet<String>> {
    let mut sets: BTreeMap<String, BTreeSet<String>> =
        SETS.iter().map(|(n, _)| (n.to_string(), BTreeSet::new())).collect();
    for bridge in bridges {
        let name = format!("\"{}\"", bridge.interface);
        if bridge.internal {
            sets.entry("internal".into()).or_default().insert(name.clone());
        }
        sets.entry("bridges".into()).or_default().insert(name);
    }
    sets
}

/// The table for a set of bridges.
#[derive(Debug, Clone)]
pub(crate) struct Ruleset {
    pub table: String,
    pub bridges: Vec<Bridge>,
    host_tcp: BTreeSet<u16>,
    host_udp: BTreeSet<u16>,
}

impl Ruleset {
    pub(crate) fn new(settings: &FirewallSettings, bridges: Vec<Bridge>) -> Self {
        Self {
            table: settings.table.clone(),
            bridges,
            host_tcp: settings.host_tcp.clone(),
            host_udp: settings.host_udp.clone(),
        }
    }

    /// Each set's elements, written as `nft list` prints them.
    pub(crate) fn sets(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut sets = bridge_sets(&self.bridges);
        sets.insert("host_tcp".into(), self.host_tcp.iter().map(u16::to_string).collect());
        sets.insert("host_udp".into(), self.host_udp.iter().map(u16::to_string).collect());
        sets
    }

    /// The `nft -f` script that replaces the table in one transaction (creating it first, so
    /// the delete never fails).
    pub(crate) fn script(&self) -> String {
        let table = &self.table;
        let mut out = format!("table inet {table}\ndelete table inet {table}\ntable inet {table} {{\n");
        let sets = self.sets();
        for (name, kind) in SETS {
            out.push_str(&format!("\tset {name} {{\n\t\ttype {kind}\n"));
            let elements = &sets[name];
            if !elements.is_empty() {
                let list: Vec<&str> = elements.iter().map(String::as_str).collect();
                out.push_str(&format!("\t\telements = {{ {} }}\n", list.join(",\n\t\t\t     ")));
            }
            out.push_str("\t}\n");
        }
        for (name, header, rules) in CHAINS {
            out.push_str(&format!("\tchain {name} {{\n"));
            for line in std::iter::once(header).chain(rules.iter().copied()) {
                out.push_str(&format!("\t\t{line}\n"));
            }
            out.push_str("\t}\n");
        }
        out.push_str("}\n");
        out
    }

    /// How the kernel's table (`None`: there is none) differs from this one.
    pub(crate) fn compare(&self, live: Option<&Listing>) -> Comparison {
        let Some(live) = live else {
            return Comparison { present: false, ..Comparison::default() };
        };
        let mut comparison = Comparison { present: true, ..Comparison::default() };
        let sets = self.sets();
        for (name, elements) in &sets {
            match live.sets.get(name) {
                None => comparison.rules.push(format!("set {name} is missing")),
                Some(found) => {
                    comparison.added.extend(elements.difference(found).map(|e| format!("{name} {e}")));
                    comparison.removed.extend(found.difference(elements).map(|e| format!("{name} {e}")));
                }
            }
        }
        for name in live.sets.keys().filter(|n| !sets.contains_key(*n)) {
            comparison.rules.push(format!("set {name} is not agency's"));
        }
        for (name, header, rules) in CHAINS {
            let expected = std::iter::once(header).chain(rules.iter().copied());
            match live.chains.get(name) {
                None => comparison.rules.push(format!("chain {name} is missing")),
                Some(found) if !found.iter().map(String::as_str).eq(expected) => {
                    comparison.rules.push(format!("chain {name} has other rules"))
                }
                Some(_) => {}
            }
        }
        for name in live.chains.keys().filter(|n| !CHAINS.iter().any(|(c, _, _)| c == n)) {
            comparison.rules.push(format!("chain {name} is not agency's"));
        }
        comparison
    }
}

/// The elements of `bridges` (one client's) that the kernel's table lacks.
pub(crate) fn missing(bridges: &[Bridge], live: &Listing) -> Vec<String> {
    bridge_sets(bridges)
        .into_iter()
        .flat_map(|(name, elements)| {
            let found = live.sets.get(&name);
            elements
                .into_iter()
                .filter(move |e| !found.is_some_and(|f| f.contains(e)))
                .map(move |e| format!("{name} {e}"))
        })
        .collect()
}

/// A table as `nft list table` prints it: each set's elements and each chain's lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Listing {
    pub sets: BTreeMap<String, BTreeSet<String>>,
    pub chains: BTreeMap<String, Vec<String>>,
}

/// Reads `nft list table inet NAME` output. Element lists may wrap over several lines;
/// no element agency writes contains a comma or a brace.
pub(crate) fn parse_listing(text: &str) -> Listing {
    let mut listing = Listing::default();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    while let Some(line) = lines.next() {
        if let Some(name) = line.strip_prefix("set ").and_then(|l| l.strip_suffix(" {")) {
            let mut elements = BTreeSet::new();
            let mut collecting = false;
            for line in lines.by_ref() {
                if line == "}" && !collecting {
                    break;
                }
                let rest = if let Some(rest) = line.strip_prefix("elements = {") {
                    collecting = true;
                    rest
                } else if collecting {
                    line
                } else {
                    continue;
                };
                let (items, closed) = match rest.strip_suffix('}') {
                    Some(items) => (items, true),
                    None => (rest, false),
                };
                elements.extend(items.split(',').map(str::trim).filter(|e| !e.is_empty()).map(String::from));
                if closed {
                    collecting = false;
                }
            }
            listing.sets.insert(name.to_string(), elements);
        } else if let Some(name) = line.strip_prefix("chain ").and_then(|l| l.strip_suffix(" {")) {
            let rules = lines.by_ref().take_while(|l| *l != "}").map(String::from).collect();
            listing.chains.insert(name.to_string(), rules);
        }
    }
    listing
}

/// What differs between the table the records imply and the kernel's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Comparison {
    /// False when the kernel has no such table.
    pub present: bool,
    /// `set element` lines the kernel lacks, and those it has beyond the records.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Sets or chains that are missing, foreign or hold other rules.
    pub rules: Vec<String>,
}

impl Comparison {
    pub(crate) fn is_equal(&self) -> bool {
        self.present && self.added.is_empty() && self.removed.is_empty() && self.rules.is_empty()
    }

    /// The diff, one line each: `+ bridges "agb-0ac90000"`, `- ...`, `~ chain input ...`.
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.present {
            lines.push("+ the whole table".to_string());
        }
        lines.extend(self.rules.iter().map(|r| format!("~ {r}")));
        lines.extend(self.added.iter().map(|a| format!("+ {a}")));
        lines.extend(self.removed.iter().map(|r| format!("- {r}")));
        lines
    }

    /// One line for people: what applying the records would change.
    pub(crate) fn summary(&self) -> String {
        if !self.present {
            return "missing".to_string();
        }
        let mut parts = Vec::new();
        if !self.rules.is_empty() {
            parts.push(self.rules.join(", "));
        }
        if !self.added.is_empty() {
            parts.push(format!("{} element(s) missing", self.added.len()));
        }
        if !self.removed.is_empty() {
            parts.push(format!("{} element(s) the records do not hold", self.removed.len()));
        }
        if parts.is_empty() { "equal to the records".to_string() } else { parts.join("; ") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(client: &str, base: u8, bridges: bool) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for (i, tier) in TIERS.iter().enumerate() {
            let subnet: Ipv4Net = format!("10.201.{base}.{}/26", i * 64).parse().unwrap();
            env.insert(tier.env_network.to_string(), format!("{client}_{}", tier.name));
            env.insert(tier.env_subnet.to_string(), subnet.to_string());
            if bridges {
                env.insert(tier.env_bridge.to_string(), bridge_name(subnet));
            }
        }
        env
    }

    fn ruleset(clients: &[(&str, u8)]) -> Ruleset {
        let settings = FirewallSettings::parse("agency", "on", "53/udp,22").unwrap();
        let bridges = clients.iter().flat_map(|(c, b)| client_bridges(c, &env(c, *b, true)).0).collect();
        Ruleset::new(&settings, bridges)
    }

    #[test]
    fn bridge_names_come_from_the_subnet_and_fit_linux() {
        let name = bridge_name("10.201.3.64/26".parse().unwrap());
        assert_eq!(name, "agb-0ac90340");
        assert!(valid_interface(&name));
        assert_ne!(name, bridge_name("10.201.3.128/26".parse().unwrap()));
        assert_eq!(docker_bridge_name("0123456789abcdef0123"), "br-0123456789ab");
        for bad in ["", "a\"b", "x y", "sixteen-chars-xx", "a;b", "a}b"] {
            assert!(!valid_interface(bad), "{bad:?}");
        }
    }

    #[test]
    fn settings_are_checked() {
        let s = FirewallSettings::parse("agency_t1", "off", "53/udp, 8080/tcp 22").unwrap();
        assert!(!s.enabled);
        assert_eq!(s.host_tcp, BTreeSet::from([22, 8080]));
        assert_eq!(s.host_udp, BTreeSet::from([53]));
        for (table, firewall, allow) in [("1x", "on", ""), ("a-b", "on", ""), ("ok", "maybe", ""), ("ok", "on", "0")] {
            assert!(FirewallSettings::parse(table, firewall, allow).is_err(), "{table} {firewall} {allow}");
        }
        assert!(FirewallSettings::parse("ok", "on", "53/icmp").is_err());
        assert!(FirewallSettings::parse("ok", "on", "70000").is_err());
    }

    #[test]
    fn records_become_bridges_and_problems() {
        let (bridges, problems) = client_bridges("acme", &env("acme", 0, true));
        assert_eq!(bridges.len(), 4);
        assert!(problems.is_empty());
        assert_eq!(bridges.iter().filter(|b| b.internal).count(), 2);
        let (bridges, problems) = client_bridges("old", &env("old", 1, false));
        assert!(bridges.is_empty());
        assert_eq!(problems.len(), 4, "{problems:?}");
        let mut hostile = env("evil", 2, true);
        hostile.insert("BACKEND_BRIDGE".into(), "x\" accept #".into());
        let (bridges, problems) = client_bridges("evil", &hostile);
        assert_eq!(bridges.len(), 3);
        assert!(problems[0].contains("not an interface name"), "{problems:?}");
        let mut overlay = env("swarm", 3, false);
        overlay.insert("NETWORK_DRIVER".into(), "overlay".into());
        assert_eq!(client_bridges("swarm", &overlay), (Vec::new(), Vec::new()));
    }

    #[test]
    fn the_script_holds_every_bridge_in_its_sets() {
        let rules = ruleset(&[("acme", 0), ("beta", 1)]);
        let script = rules.script();
        assert!(script.starts_with("table inet agency\ndelete table inet agency\ntable inet agency {\n"));
        let sets = rules.sets();
        assert_eq!(sets["bridges"].len(), 8);
        assert_eq!(sets["internal"].len(), 4);
        assert_eq!(sets.keys().collect::<Vec<_>>(), ["bridges", "host_tcp", "host_udp", "internal"]);
        assert_eq!(sets["host_udp"], BTreeSet::from(["53".to_string()]));
        assert!(script.contains("priority filter - 10; policy accept;"));
        assert!(script.contains("\"agb-0ac90140\""));
        // The source check comes first in both chains; no subnet is written into the table.
        for chain in ["forward", "input"] {
            let body = &script[script.find(&format!("chain {chain} {{")).unwrap()..];
            assert!(body.lines().nth(2).unwrap().ends_with(SOURCE_RULE), "{body}");
        }
        assert!(script.contains("iifname @bridges fib daddr . iif oif exists accept comment \"within one bridge\""));
        // Client bridges are kept apart whatever their names (one Docker named itself, say).
        assert!(script.contains("iifname @bridges oifname @bridges drop"), "{script}");
        assert!(!script.contains("10.201."), "{script}");
    }

    #[test]
    fn a_listing_round_trips_and_differences_are_named() {
        let rules = ruleset(&[("acme", 0), ("beta", 1)]);
        // What the kernel prints for the script: the script's own body, tabs and wrapping alike.
        let body: String = rules.script().lines().skip(2).map(|l| format!("{l}\n")).collect();
        let listing = parse_listing(&body);
        assert!(rules.compare(Some(&listing)).is_equal(), "{:?}", rules.compare(Some(&listing)));
        assert!(!rules.compare(None).is_equal());
        assert_eq!(rules.compare(None).lines(), ["+ the whole table"]);

        let fewer = ruleset(&[("acme", 0)]);
        let diff = fewer.compare(Some(&listing));
        assert_eq!(diff.removed.len(), 4 + 2, "{diff:?}");
        assert!(diff.added.is_empty());
        assert!(diff.lines().contains(&"- bridges \"agb-0ac90100\"".to_string()), "{:?}", diff.lines());
        let more = ruleset(&[("acme", 0), ("beta", 1), ("gamma", 2)]);
        assert_eq!(more.compare(Some(&listing)).added.len(), 6);

        let mut edited = listing.clone();
        edited.chains.get_mut("input").unwrap().pop();
        edited.chains.insert("extra".into(), vec![]);
        let diff = rules.compare(Some(&edited));
        assert_eq!(diff.rules, ["chain input has other rules", "chain extra is not agency's"]);
        assert!(diff.summary().contains("chain input has other rules"));
    }

    #[test]
    fn a_client_misses_only_its_own_elements_that_the_kernel_lacks() {
        let rules = ruleset(&[("acme", 0), ("beta", 1)]);
        let body: String = rules.script().lines().skip(2).map(|l| format!("{l}\n")).collect();
        let mut listing = parse_listing(&body);
        let acme = client_bridges("acme", &env("acme", 0, true)).0;
        let beta = client_bridges("beta", &env("beta", 1, true)).0;
        assert!(missing(&acme, &listing).is_empty());
        listing.sets.get_mut("bridges").unwrap().remove("\"agb-0ac90040\"");
        listing.sets.remove("internal");
        assert_eq!(
            missing(&acme, &listing),
            ["bridges \"agb-0ac90040\"", "internal \"agb-0ac90040\"", "internal \"agb-0ac90080\""]
        );
        assert_eq!(missing(&beta, &listing).len(), 2, "{:?}", missing(&beta, &listing));
    }

    #[test]
    fn subnets_of_any_length_share_the_fixed_rules() {
        let settings = FirewallSettings::parse("agency", "on", "").unwrap();
        let mut wide = env("wide", 9, false);
        for (i, tier) in TIERS.iter().enumerate() {
            let subnet: Ipv4Net = format!("10.202.{i}.0/24").parse().unwrap();
            wide.insert(tier.env_subnet.to_string(), subnet.to_string());
            wide.insert(tier.env_bridge.to_string(), bridge_name(subnet));
        }
        let bridges: Vec<Bridge> =
            [client_bridges("acme", &env("acme", 0, true)).0, client_bridges("wide", &wide).0].concat();
        let rules = Ruleset::new(&settings, bridges);
        assert_eq!(rules.sets()["bridges"].len(), 8);
        let chains = |script: String| script[script.find("\tchain forward").unwrap()..].to_string();
        assert_eq!(chains(rules.script()), chains(ruleset(&[("acme", 0)]).script()));
    }
}
