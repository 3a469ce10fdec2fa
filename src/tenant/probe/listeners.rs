//! What listens on the host, as the host itself says: its `/proc/net/tcp` and
//! `/proc/net/tcp6`, and the ports Docker publishes for containers (`docker ps`'s `Ports`).
//! Pure parsing; the probe decides what to try from these.

use std::net::Ipv4Addr;

/// A TCP socket listening on the host, reachable over IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listener {
    /// `None`: every address (`0.0.0.0`, or `::` which takes IPv4 too unless v6-only).
    pub address: Option<Ipv4Addr>,
    pub port: u16,
}

impl Listener {
    /// True when a connection to `address` reaches it.
    pub fn listens_on(&self, address: Ipv4Addr) -> bool {
        self.address.is_none_or(|own| own == address)
    }
}

/// The kernel's state number of a listening socket in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// Reads the lines of `/proc/net/tcp` and `/proc/net/tcp6` (headers and anything else are
/// skipped): the listening sockets an IPv4 packet can reach, loopback ones left out (a
/// container never reaches the host's loopback), sorted, without duplicates.
pub fn parse_proc_net_tcp<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<Listener> {
    let mut listeners: Vec<Listener> = lines
        .into_iter()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let (local, state) = (*words.get(1)?, *words.get(3)?);
            if state != TCP_LISTEN {
                return None;
            }
            let (address, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let address = match address.len() {
                8 => Some(ipv4_word(address)?),
                32 => ipv6_as_ipv4(address)?,
                _ => return None,
            };
            match address {
                Some(a) if a.is_loopback() => None,
                Some(Ipv4Addr::UNSPECIFIED) => Some(Listener { address: None, port }),
                _ => Some(Listener { address, port }),
            }
        })
        .collect();
    listeners.sort();
    listeners.dedup();
    listeners
}

/// One 32-bit word of `/proc/net/tcp`: the address in the host's byte order, printed in hex
/// (little-endian here: `0100007F` is 127.0.0.1).
fn ipv4_word(hex: &str) -> Option<Ipv4Addr> {
    let value = u32::from_str_radix(hex, 16).ok()?;
    Some(Ipv4Addr::from(value.to_le_bytes()))
}

/// A `/proc/net/tcp6` address as IPv4: `Some(None)` for `::` (every address), the IPv4 address
/// of a `::ffff:a.b.c.d` one, `None` (unreachable over IPv4) otherwise.
fn ipv6_as_ipv4(hex: &str) -> Option<Option<Ipv4Addr>> {
    let words: Vec<u32> =
        (0..4).map(|i| u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok()).collect::<Option<_>>()?;
    if words.iter().all(|w| *w == 0) {
        return Some(None);
    }
    // The words are in the host's byte order; ::ffff:a.b.c.d has 0, 0, ffff (as bytes 00 00 ff ff).
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    if bytes[..10].iter().all(|b| *b == 0) && bytes[10..12] == [0xff, 0xff] {
        return Some(Some(Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15])));
    }
    None
}

/// A port Docker publishes for a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// `None`: every address of the host (`0.0.0.0` or `::`).
    pub address: Option<Ipv4Addr>,
    pub port: u16,
}

/// At most this many ports of one published range are tried.
const MAX_RANGE: u16 = 16;

/// Reads `docker ps`'s `Ports` (`0.0.0.0:8080->80/tcp, :::8080->80/tcp, 127.0.0.1:5432->5432/tcp,
/// 0.0.0.0:9000-9001->9000-9001/tcp, 53/udp`): the published TCP ports an IPv4 packet can
/// reach from a container, loopback ones left out, without duplicates.
pub fn parse_published(text: &str) -> Vec<Published> {
    let mut published = Vec::new();
    for item in text.split(',').map(str::trim) {
        let Some((host, container)) = item.split_once("->") else { continue };
        if !container.ends_with("/tcp") {
            continue;
        }
        let Some((address, ports)) = host.rsplit_once(':') else { continue };
        let address = match address {
            "0.0.0.0" | "::" | "[::]" | "" => None,
            other => match other.parse::<Ipv4Addr>() {
                Ok(a) if a.is_loopback() => continue,
                Ok(a) => Some(a),
                Err(_) => continue,
            },
        };
        let (first, last) = ports.split_once('-').unwrap_or((ports, ports));
        let (Ok(first), Ok(last)) = (first.parse::<u16>(), last.parse::<u16>()) else { continue };
        for port in first..=last.min(first.saturating_add(MAX_RANGE - 1)) {
            let entry = Published { address, port };
            if !published.contains(&entry) {
                published.push(entry);
            }
        }
    }
    published
}

/// Reads `/proc/net/route`: the subnets the host routes to an interface of its own, not
/// through `exits` (the interfaces off the machine) and not the default route. A probe sends
/// to another tenant's address only while such a route covers it: once the network is gone
/// the address would be routed off the host.
pub fn on_host_routes(text: &str, exits: &[String]) -> Vec<crate::tenant::subnet::Ipv4Net> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let (interface, destination, mask) = (*words.first()?, *words.get(1)?, *words.get(7)?);
            if exits.iter().any(|e| e == interface) {
                return None;
            }
            let (destination, mask) = (ipv4_word(destination)?, ipv4_word(mask)?);
            let prefix = u32::from(mask).count_ones() as u8;
            (prefix > 0).then(|| crate::tenant::subnet::Ipv4Net::truncating(destination, prefix))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_on_the_host_leave_out_exits_and_the_default() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
agb-0ac90000\t0000C90A\t00000000\t0001\t0\t0\t0\tC0FFFFFF\t0\t0\t0
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
";
        let routes = on_host_routes(text, &["eth0".to_string()]);
        let shown: Vec<String> = routes.iter().map(ToString::to_string).collect();
        assert_eq!(shown, vec!["10.201.0.0/26", "172.17.0.0/16"]);
    }

    #[test]
    fn proc_net_tcp_gives_the_listening_sockets_reachable_over_ipv4() {
        let text = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 020200C0:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 020200C0:0016 010200C0:D431 01 00000000:00000000 00:00000000 00000000     0        0 4 1
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 0 0 0
   1: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 0 0 0
   2: 0000000000000000FFFF00000100C90A:1538 00000000000000000000000000000000:0000 0A 0 0 0
   3: 000080FE00000000FF005450B6AB01FE:01BB 00000000000000000000000000000000:0000 0A 0 0 0
   4: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 0 0 0";
        let listeners = parse_proc_net_tcp(text.lines());
        assert_eq!(
            listeners,
            vec![
                Listener { address: None, port: 22 },
                Listener { address: None, port: 80 },
                Listener { address: Some(Ipv4Addr::new(10, 201, 0, 1)), port: 5432 },
                Listener { address: Some(Ipv4Addr::new(192, 0, 2, 2)), port: 8080 },
            ]
        );
        assert!(listeners[0].listens_on(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(!listeners[3].listens_on(Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn published_ports_from_ps() {
        let text = "0.0.0.0:8080->80/tcp, :::8080->80/tcp, 127.0.0.1:5432->5432/tcp, 10.201.0.1:9000-9001->9000-9001/tcp, \
                    53/udp, 0.0.0.0:53->53/udp, [::1]:7->7/tcp, 443/tcp";
        assert_eq!(
            parse_published(text),
            vec![
                Published { address: None, port: 8080 },
                Published { address: Some(Ipv4Addr::new(10, 201, 0, 1)), port: 9000 },
                Published { address: Some(Ipv4Addr::new(10, 201, 0, 1)), port: 9001 },
            ]
        );
        assert_eq!(parse_published("0.0.0.0:1000-65535->1000-65535/tcp").len(), 16);
        assert!(parse_published("").is_empty());
    }
}
