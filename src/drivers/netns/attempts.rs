//! The packets of a probe, sent by the runner itself from inside a namespace (see
//! [`super::Namespace::run_inside`]): every TCP SYN and ICMP echo of a probe at once through
//! raw sockets, one `poll` waiting for the answers; forged packets the same way; a peer's
//! listening socket and its namespace's echo counter.

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

const ICMP: u8 = 1;
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
    if *packet.get(9)? != ICMP {
        return None;
    }
    let header = usize::from(packet.first()? & 0x0f) * 4;
    let icmp = packet.get(header..header + 8)?;
    (icmp[0] == ECHO_REPLY && u16::from_be_bytes([icmp[4], icmp[5]]) == identifier)
        .then(|| u16::from_be_bytes([icmp[6], icmp[7]]))
}

/// The first source port of a probe's SYNs: attempt `i` sends from `FIRST_PORT + i` (above
/// Linux's ephemeral range, so no socket of the namespace answers for it).
const FIRST_PORT: u16 = 61000;

/// Attempts of one probe at most (one source port each).
pub const MAX_ATTEMPTS: usize = (u16::MAX - FIRST_PORT) as usize;

const TCP: u8 = 6;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
const DESTINATION_UNREACHABLE: u8 = 3;

/// A TCP SYN from `source:source_port` to `destination:port`, its checksum over the
/// pseudo-header.
fn tcp_syn(source: Ipv4Addr, source_port: u16, destination: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut segment = Vec::with_capacity(20);
    segment.extend(source_port.to_be_bytes());
    segment.extend(port.to_be_bytes());
    segment.extend(u32::from(source_port).wrapping_mul(2_654_435_761).to_be_bytes());
    segment.extend([0, 0, 0, 0, 0x50, TCP_SYN, 0xfa, 0xf0, 0, 0, 0, 0]);
    let mut pseudo = Vec::with_capacity(32);
    pseudo.extend(source.octets());
    pseudo.extend(destination.octets());
    pseudo.extend([0, TCP, 0, 20]);
    pseudo.extend(&segment);
    let sum = checksum(&pseudo);
    segment[16..18].copy_from_slice(&sum.to_be_bytes());
    segment
}

/// What a received IPv4 packet says of a SYN of ours: (its source port, the remote address
/// and port, the outcome). A SYN-ACK is open, a reset refused, an ICMP destination unreachable
/// quoting the SYN unreachable.
fn syn_answer(packet: &[u8]) -> Option<(u16, Ipv4Addr, u16, TcpOutcome)> {
    let header = usize::from(packet.first()? & 0x0f) * 4;
    let from = Ipv4Addr::new(*packet.get(12)?, packet[13], packet[14], packet[15]);
    let body = packet.get(header..)?;
    match *packet.get(9)? {
        TCP => {
            let flags = *body.get(13)?;
            let outcome = match flags {
                f if f & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK => TcpOutcome::Open,
                f if f & TCP_RST != 0 => TcpOutcome::Refused,
                _ => return None,
            };
            Some((u16::from_be_bytes([body[2], body[3]]), from, u16::from_be_bytes([body[0], body[1]]), outcome))
        }
        ICMP if body.first() == Some(&DESTINATION_UNREACHABLE) => {
            let quoted = body.get(8..)?;
            let quoted_header = usize::from(quoted.first()? & 0x0f) * 4;
            if *quoted.get(9)? != TCP {
                return None;
            }
            let to = Ipv4Addr::new(*quoted.get(16)?, quoted[17], quoted[18], quoted[19]);
            let ports = quoted.get(quoted_header..quoted_header + 4)?;
            Some((
                u16::from_be_bytes([ports[0], ports[1]]),
                to,
                u16::from_be_bytes([ports[2], ports[3]]),
                TcpOutcome::Unreachable,
            ))
        }
        _ => None,
    }
}

/// Tries every target at once from `source` (the namespace's address), each for at most
/// `timeout`: one echo request where asked, and a TCP SYN to each port (resent once halfway),
/// its answer telling open (a SYN-ACK: a connection would be made; the namespace's kernel
/// then resets it) from refused. Raw sockets, two for the whole probe, rather than a socket
/// per connect: hundreds of probes at once would take more files than a process may open.
/// Results in the order of `targets`, ports in the order asked.
pub fn try_targets(source: Ipv4Addr, targets: &[ProbeTarget], timeout: Duration) -> Result<Vec<ProbeResult>> {
    let mut results: Vec<ProbeResult> = targets
        .iter()
        .map(|t| ProbeResult { address: t.address, icmp: t.icmp.then_some(false), tcp: Vec::new() })
        .collect();
    let attempts: Vec<(usize, u16)> =
        targets.iter().enumerate().flat_map(|(i, t)| t.ports.iter().map(move |p| (i, *p))).collect();
    if attempts.len() > MAX_ATTEMPTS {
        anyhow::bail!("{} TCP attempts are more than one probe makes ({MAX_ATTEMPTS})", attempts.len());
    }
    let mut outcomes: Vec<Option<TcpOutcome>> = vec![None; attempts.len()];
    // Raw sockets (root's; a namespace allows no unprivileged ping): they see every ICMP
    // packet and TCP segment that arrives, and send SYNs with the headers made here.
    let icmp = socket(SocketType::RAW, Some(ipproto::ICMP)).context("an ICMP socket for the probe")?;
    let tcp = socket(SocketType::RAW, Some(ipproto::TCP)).context("a raw TCP socket for the probe")?;
    let raw = socket(SocketType::RAW, Some(ipproto::RAW)).context("a raw socket for the probe's SYNs")?;
    for socket in [&icmp, &tcp] {
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(socket, 1 << 20);
    }
    let identifier = (std::process::id() & 0xffff) as u16;
    let mut echoes_pending = 0;
    for (index, target) in targets.iter().enumerate().filter(|(_, t)| t.icmp) {
        let to = SocketAddrV4::new(target.address, 0);
        if rustix::net::sendto(&icmp, &echo_request(identifier, index as u16), SendFlags::empty(), &to).is_ok() {
            echoes_pending += 1;
        }
    }
    let send_syns = |outcomes: &[Option<TcpOutcome>]| {
        for (attempt, (target, port)) in attempts.iter().enumerate().filter(|(a, _)| outcomes[*a].is_none()) {
            let address = targets[*target].address;
            let syn = tcp_syn(source, FIRST_PORT + attempt as u16, address, *port);
            let to = SocketAddrV4::new(address, 0);
            let _ = rustix::net::sendto(&raw, &ipv4_packet(source, address, TCP, &syn), SendFlags::empty(), &to);
        }
    };
    send_syns(&outcomes);
    let started = Instant::now();
    let (resend, deadline) = (started + timeout / 2, started + timeout);
    let mut resent = false;
    let mut buffer = [0u8; 1500];
    while (outcomes.iter().any(Option::is_none) || echoes_pending > 0) && Instant::now() < deadline {
        if !resent && Instant::now() >= resend {
            send_syns(&outcomes);
            resent = true;
        }
        let until = if resent { deadline } else { resend };
        let left = until.saturating_duration_since(Instant::now());
        let mut fds = [PollFd::new(&icmp, PollFlags::IN), PollFd::new(&tcp, PollFlags::IN)];
        let wait = Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) };
        match rustix::event::poll(&mut fds, Some(&wait)) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(error) => return Err(error).context("waiting for the probe's answers"),
        }
        for socket in [&icmp, &tcp] {
            while let Ok((_, length, _)) = rustix::net::recvfrom(socket, &mut buffer[..], RecvFlags::DONTWAIT) {
                let packet = &buffer[..length.min(buffer.len())];
                if let Some(sequence) = echo_reply_sequence(packet, identifier)
                    && let Some(result) = results.get_mut(usize::from(sequence))
                    && packet.get(12..16) == Some(&result.address.octets()[..])
                    && result.icmp == Some(false)
                {
                    result.icmp = Some(true);
                    echoes_pending -= 1;
                }
                let Some((own_port, address, port, outcome)) = syn_answer(packet) else { continue };
                let Some(attempt) = own_port.checked_sub(FIRST_PORT).map(usize::from) else { continue };
                if let Some((target, tried)) = attempts.get(attempt)
                    && targets[*target].address == address
                    && *tried == port
                    && outcomes[attempt].is_none()
                {
                    outcomes[attempt] = Some(outcome);
                }
            }
        }
    }
    for ((target, port), outcome) in attempts.iter().zip(outcomes) {
        results[*target].tcp.push((*port, outcome.unwrap_or(TcpOutcome::Timeout)));
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
        send(spec.target, ipv4_packet(spec.forged, spec.target, ICMP, &echo))?;
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
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 9), Ipv4Addr::new(10, 0, 1, 2));
        let syn = tcp_syn(a, 61003, b, 443);
        assert_eq!((syn[13], &syn[..4]), (TCP_SYN, &[0xee, 0x4b, 0x01, 0xbb][..]));
        let mut answer = ipv4_packet(b, a, TCP, &[&syn[2..4], &syn[..2], &syn[4..]].concat());
        answer[20 + 13] = TCP_SYN | TCP_ACK;
        assert_eq!(syn_answer(&answer), Some((61003, b, 443, TcpOutcome::Open)));
        answer[20 + 13] = TCP_RST | TCP_ACK;
        assert_eq!(syn_answer(&answer), Some((61003, b, 443, TcpOutcome::Refused)));
        let quoted = ipv4_packet(a, b, TCP, &syn);
        let unreachable =
            ipv4_packet(b, a, 1, &[&[DESTINATION_UNREACHABLE, 1, 0, 0, 0, 0, 0, 0][..], &quoted].concat());
        assert_eq!(syn_answer(&unreachable), Some((61003, b, 443, TcpOutcome::Unreachable)));
    }

    /// Real packets on loopback (this namespace's own; raw sockets need root): an open and a
    /// refused port.
    #[test]
    fn connects_on_loopback_tell_open_from_refused() {
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = open.local_addr().unwrap().port();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let target = ProbeTarget { address: Ipv4Addr::LOCALHOST, icmp: false, ports: vec![closed, port] };
        let results =
            try_targets(Ipv4Addr::LOCALHOST, &[target], Duration::from_secs(2)).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(results[0].tcp, vec![(closed, TcpOutcome::Refused), (port, TcpOutcome::Open)]);
    }
}
