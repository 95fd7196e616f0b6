//! Exact guest frames for tests that drive an `Engine<SimHost>` by hand
//! (no guest stack): TCP segments, UDP datagrams and echo requests from
//! the example configuration's guest, and a reader for what comes back.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use passt_engine::wire::{
    self, Icmpv4Repr, IpRepr, Ipv4Repr, L3, L4, TcpFlags, TcpOptions, TcpRepr, UdpRepr,
};
use passt_engine::{Config, MacAddr};

/// The guest's MAC.
pub const GUEST_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
/// The guest's address in [`Config::example`].
pub const GUEST4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 15);

fn v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Ipv4Repr {
    Ipv4Repr::new(src, dst, proto, 64)
}

fn dst4(a: SocketAddr) -> Ipv4Addr {
    match a.ip() {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => panic!("IPv4 only"),
    }
}

/// A TCP segment from the guest's `port` to `dst`.
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    config: &Config,
    port: u16,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    window: u16,
    payload: &[u8],
) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: port,
        dst_port: dst.port(),
        seq,
        ack,
        flags,
        window,
        urgent: 0,
        options: TcpOptions::default(),
    };
    let ip = IpRepr::V4(v4(GUEST4, dst4(dst), wire::protocol::TCP));
    let mut buf = vec![0u8; 14 + 20 + 60 + payload.len()];
    let n = wire::build_tcp(&mut buf, GUEST_MAC, config.our_mac, ip, &repr, payload)
        .expect("segment fits");
    buf.truncate(n);
    buf
}

/// A SYN (no options) from the guest's `port` to `dst`.
pub fn syn(config: &Config, port: u16, dst: SocketAddr, isn: u32) -> Vec<u8> {
    tcp(config, port, dst, isn, 0, TcpFlags::SYN, 65535, &[])
}

/// A UDP datagram from the guest's `port` to `dst`.
pub fn udp(config: &Config, port: u16, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let repr = UdpRepr {
        src_port: port,
        dst_port: dst.port(),
    };
    let ip = IpRepr::V4(v4(GUEST4, dst4(dst), wire::protocol::UDP));
    let mut buf = vec![0u8; 14 + 20 + 8 + payload.len()];
    let n = wire::build_udp(&mut buf, GUEST_MAC, config.our_mac, ip, &repr, payload)
        .expect("datagram fits");
    buf.truncate(n);
    buf
}

/// An echo request from the guest to `dst`.
pub fn echo(config: &Config, dst: Ipv4Addr, ident: u16, seq_no: u16) -> Vec<u8> {
    let icmp = Icmpv4Repr::EchoRequest {
        ident,
        seq_no,
        data: b"ping",
    };
    let ip = v4(GUEST4, dst, wire::protocol::ICMP);
    let mut buf = vec![0u8; wire::IPV4_HEADERS_LEN + icmp.buffer_len()];
    let n = wire::build_icmpv4(&mut buf, GUEST_MAC, config.our_mac, &ip, &icmp).expect("echo fits");
    buf.truncate(n);
    buf
}

/// What one frame for the guest is, in a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A TCP segment: flags, sequence, ack, payload.
    Tcp(TcpFlags, u32, u32, Vec<u8>),
    /// A UDP datagram's payload.
    Udp(Vec<u8>),
    /// ICMP destination unreachable with this code.
    Unreachable(u8),
    /// Anything else.
    Other,
}

/// Reads one frame for the guest (checksums verified).
pub fn seen(frame: &[u8]) -> Seen {
    let f = wire::parse_frame(frame).expect("valid frame");
    match f.l3 {
        L3::Ipv4 { l4, .. } => match l4 {
            L4::Tcp { tcp, payload } => Seen::Tcp(tcp.flags, tcp.seq, tcp.ack, payload.to_vec()),
            L4::Udp { payload, .. } => Seen::Udp(payload.to_vec()),
            L4::Icmpv4(Icmpv4Repr::DstUnreachable { code, .. }) => Seen::Unreachable(code),
            _ => Seen::Other,
        },
        _ => Seen::Other,
    }
}
