//! The packets of a probe, sent by the runner itself from inside a namespace (see
//! [`super::Namespace::run_inside`]): every TCP connect and ICMP echo of a probe at once on
//! non-blocking sockets, one `poll` waiting for them all; forged packets through a raw socket;
//! a peer's listening socket and its namespace's echo counter.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::OwnedFd,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use rustix::{
    event::{PollFd, PollFlags, Timespec},
    io::Errno,
    net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, ipproto},
};

use crate::drivers::docker::{ForgerSpec, ProbeResult, ProbeTarget, TcpOutcome};

const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;

fn socket(kind: SocketType, protocol: Option<rustix::net::Protocol>) -> std::io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(AddressFamily::INET, kind, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC, protocol)?)
}

/// The Internet checksum (RFC 1071) of `bytes`.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP echo request (`identifier`, `sequence`, eight bytes of payload).
fn echo_request(identifier: u16, sequence: u16) -> Vec<u8> {
    let mut packet = vec![ECHO_REQUEST, 0, 0, 0];
    packet.extend(identifier.to_be_bytes());
    packet.extend(sequence.to_be_bytes());
    packet.extend(b"agency!!");
    let sum = checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    packet
}

/// An IPv4 header for `payload` of `protocol` from `source` to `destination` (the kernel fills
/// in its checksum and identification when sending through a raw socket).
fn ipv4_packet(source: Ipv4Addr, destination: Ipv4Addr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let length = (20 + payload.len()) as u16;
    let mut packet = vec![0x45, 0];
    packet.extend(length.to_be_bytes());
    packet.extend([0, 0, 0x40, 0, 64, protocol, 0, 0]);
    packet.extend(source.octets());
    packet.extend(destination.octets());
    packet.extend(payload);
    packet
}

/// A UDP datagram (no checksum, as IPv4 allows) from `source_port` to `port`.
fn udp_datagram(source_port: u16, port: u16, payload: &[u8]) -> Vec<u8> {
    let mut datagram = Vec::new();
    datagram.extend(source_port.to_be_bytes());
    datagram.extend(port.to_be_bytes());
    datagram.extend(((8 + payload.len()) as u16).to_be_bytes());
    datagram.extend([0, 0]);
    datagram.extend(payload);
    datagram
}

/// The sequence number of an echo reply to `identifier` in a received IPv4 packet.
fn echo_reply_sequence(packet: &[u8], identifier: u16) -> Option<u16> {
    let header = usize::from(packet.first()? & 0x0f) * 4;
    let icmp = packet.get(header..header + 8)?;
    (icmp[0] == ECHO_REPLY && u16::from_be_bytes([icmp[4], icmp[5]]) == identifier)
        .then(|| u16::from_be_bytes([icmp[6], icmp[7]]))
}

/// How a connect that ended with `error` went.
fn outcome(error: Option<Errno>) -> TcpOutcome {
    match error {
        None => TcpOutcome::Open,
        Some(Errno::CONNREFUSED) => TcpOutcome::Refused,
        Some(Errno::TIMEDOUT) => TcpOutcome::Timeout,
        Some(Errno::HOSTUNREACH | Errno::NETUNREACH | Errno::HOSTDOWN) => TcpOutcome::Unreachable,
        Some(_) => TcpOutcome::Error,
    }
}

/// Tries every target at once, each for at most `timeout`: one echo request where asked, a
/// TCP connect to each port (open only when it connected). Results in the order of `targets`,
/// ports in the order asked.
pub fn try_targets(targets: &[ProbeTarget], timeout: Duration) -> Result<Vec<ProbeResult>> {
    let mut results: Vec<ProbeResult> = targets
        .iter()
        .map(|t| ProbeResult { address: t.address, icmp: t.icmp.then_some(false), tcp: Vec::new() })
        .collect();
    let mut echoes_pending = targets.iter().filter(|t| t.icmp).count();
    // A raw socket (root's; a namespace allows no unprivileged ping): it sees every echo reply.
    let icmp = match echoes_pending {
        0 => None,
        _ => Some(socket(SocketType::RAW, Some(ipproto::ICMP)).context("an ICMP socket for the probe")?),
    };
    let identifier = (std::process::id() & 0xffff) as u16;
    if let Some(icmp) = &icmp {
        for (index, target) in targets.iter().enumerate().filter(|(_, t)| t.icmp) {
            let to = SocketAddrV4::new(target.address, 0);
            if rustix::net::sendto(icmp, &echo_request(identifier, index as u16), SendFlags::empty(), &to).is_err() {
                echoes_pending -= 1;
            }
        }
    }
    // (target, port, socket) of the connects still waiting; the others are done.
    let mut waiting: Vec<(usize, u16, OwnedFd)> = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        for port in &target.ports {
            let stream = socket(SocketType::STREAM, None).context("a TCP socket for the probe")?;
            match rustix::net::connect(&stream, &SocketAddrV4::new(target.address, *port)) {
                Ok(()) => results[index].tcp.push((*port, TcpOutcome::Open)),
                Err(Errno::INPROGRESS) => waiting.push((index, *port, stream)),
                Err(error) => results[index].tcp.push((*port, outcome(Some(error)))),
            }
        }
    }
    let deadline = Instant::now() + timeout;
    while (!waiting.is_empty() || echoes_pending > 0) && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let (ready_icmp, ready): (bool, Vec<bool>) = {
            let mut fds: Vec<PollFd> = icmp
                .iter()
                .map(|s| PollFd::new(s, PollFlags::IN))
                .chain(waiting.iter().map(|(_, _, s)| PollFd::new(s, PollFlags::OUT)))
                .collect();
            let skip = usize::from(icmp.is_some());
            let wait = Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) };
            match rustix::event::poll(&mut fds, Some(&wait)) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(error) => return Err(error).context("waiting for the probe's answers"),
            }
            (skip == 1 && !fds[0].revents().is_empty(), fds[skip..].iter().map(|f| !f.revents().is_empty()).collect())
        };
        if let Some(icmp) = icmp.as_ref().filter(|_| ready_icmp) {
            let mut buffer = [0u8; 1500];
            while let Ok((_, length, from)) = rustix::net::recvfrom(icmp, &mut buffer[..], RecvFlags::empty()) {
                let from = from.and_then(|a| SocketAddrV4::try_from(a).ok()).map(|a| *a.ip());
                let Some(sequence) = echo_reply_sequence(&buffer[..length], identifier) else { continue };
                if let Some(result) = results.get_mut(usize::from(sequence))
                    && Some(result.address) == from
                    && result.icmp == Some(false)
                {
                    result.icmp = Some(true);
                    echoes_pending -= 1;
                }
            }
        }
        let mut index = 0;
        waiting.retain(|(target, port, stream)| {
            let done = ready[index];
            index += 1;
            if done {
                let error = rustix::net::sockopt::socket_error(stream).ok().and_then(Result::err);
                results[*target].tcp.push((*port, outcome(error)));
            }
            !done
        });
    }
    for (target, port, _) in waiting {
        results[target].tcp.push((port, TcpOutcome::Timeout));
    }
    for (result, target) in results.iter_mut().zip(targets) {
        result.tcp.sort_by_key(|(port, _)| target.ports.iter().position(|p| p == port));
    }
    Ok(results)
}

/// Sends what a forger sends, through a raw socket with a source it does not own:
/// `spec.count` echo requests from `spec.forged` to `spec.target`, and as many UDP datagrams
/// to the host at `spec.gateway:host_port`. The kernel routes them by their destination, out of
/// the namespace's default route.
pub fn forge(spec: &ForgerSpec) -> Result<()> {
    let raw = socket(SocketType::RAW, Some(ipproto::RAW)).context("a raw socket for the forged packets")?;
    let identifier = (std::process::id() & 0xffff) as u16;
    let send = |destination: Ipv4Addr, packet: Vec<u8>| {
        rustix::net::sendto(&raw, &packet, SendFlags::empty(), &SocketAddrV4::new(destination, 0))
            .with_context(|| format!("sending a forged packet to {destination}"))
    };
    for sequence in 0..spec.count {
        let echo = echo_request(identifier, sequence as u16);
        send(spec.target, ipv4_packet(spec.forged, spec.target, 1, &echo))?;
        if let Some(port) = spec.host_port {
            let datagram = udp_datagram(40000 + sequence as u16, port, b"agency forged");
            send(spec.gateway, ipv4_packet(spec.forged, spec.gateway, 17, &datagram))?;
        }
    }
    Ok(())
}

/// A listening TCP socket on every address of the namespace it is made in: connects to it
/// complete in the kernel (nothing needs to accept them while the probe runs).
pub fn listen(port: u16) -> Result<OwnedFd> {
    let listener = socket(SocketType::STREAM, None).context("a peer's socket")?;
    rustix::net::sockopt::set_socket_reuseaddr(&listener, true)?;
    rustix::net::bind(&listener, &SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
        .with_context(|| format!("a peer listening on port {port}"))?;
    rustix::net::listen(&listener, 1024)?;
    Ok(listener)
}

/// The ICMP counters of the namespace the calling thread is in (`/proc/net/snmp` as a
/// container reads it, the thread's own namespace rather than the process's).
pub fn icmp_counters() -> Result<String> {
    std::fs::read_to_string("/proc/thread-self/net/snmp").context("reading a namespace's /proc/net/snmp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_built_as_the_wire_wants_them() {
        let echo = echo_request(0x1234, 7);
        assert_eq!(&echo[..2], &[8, 0]);
        assert_eq!(checksum(&echo), 0, "a packet with its checksum sums to zero");
        let packet = ipv4_packet(Ipv4Addr::new(10, 0, 0, 9), Ipv4Addr::new(10, 0, 1, 2), 1, &echo);
        assert_eq!(packet.len(), 20 + echo.len());
        assert_eq!(&packet[2..4], &((20 + echo.len()) as u16).to_be_bytes());
        assert_eq!(&packet[12..20], &[10, 0, 0, 9, 10, 0, 1, 2]);
        let udp = udp_datagram(40000, 69, b"x");
        assert_eq!(udp, vec![0x9c, 0x40, 0, 69, 0, 9, 0, 0, b'x']);
        let mut reply = ipv4_packet(Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 0, 9), 1, &echo);
        reply[20] = ECHO_REPLY;
        assert_eq!(echo_reply_sequence(&reply, 0x1234), Some(7));
        assert_eq!(echo_reply_sequence(&reply, 0x4321), None);
        assert_eq!(echo_reply_sequence(&packet, 0x1234), None, "a request is no reply");
        assert_eq!(outcome(None), TcpOutcome::Open);
        assert_eq!(outcome(Some(Errno::CONNREFUSED)), TcpOutcome::Refused);
        assert_eq!(outcome(Some(Errno::HOSTUNREACH)), TcpOutcome::Unreachable);
    }

    /// Real sockets on loopback (this namespace's own): an open and a refused port.
    #[test]
    fn connects_on_loopback_tell_open_from_refused() {
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = open.local_addr().unwrap().port();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let target = ProbeTarget { address: Ipv4Addr::LOCALHOST, icmp: false, ports: vec![closed, port] };
        let results = try_targets(&[target], Duration::from_secs(2)).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(results[0].tcp, vec![(closed, TcpOutcome::Refused), (port, TcpOutcome::Open)]);
    }
}
