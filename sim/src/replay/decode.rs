//! A lenient look at one captured frame: addresses, ports, TCP numbers,
//! where the transport header sits.
//!
//! # What this module owns
//!
//! Reading the fields replay needs through the engine's zero-copy packet
//! views (`wire::*Packet::new_checked`), which check lengths but not
//! checksums: captures taken on a tap hold frames whose checksums the
//! guest left to offload, and replay recomputes them anyway.
//!
//! # What it must never do
//!
//! Panic on any input (every length is checked by the views or here), or
//! judge a frame: whether the engine accepts it is the engine's business.

use std::net::{IpAddr, SocketAddr};

use passt_engine::MacAddr;
use passt_engine::wire::{
    ArpPacket, EthernetFrame, Ipv4Packet, Ipv6Packet, TcpFlags, TcpOptions, TcpPacket, UdpPacket,
    ethertype, protocol,
};

/// ICMPv6 next header value.
const ICMPV6: u8 = 58;

/// What a frame carries, as far as replay cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// ARP: operation (1 request, 2 reply), sender and target IPv4.
    Arp {
        /// 1 request, 2 reply.
        op: u16,
        /// Sender protocol address.
        sender: IpAddr,
        /// Target protocol address.
        target: IpAddr,
    },
    /// A TCP segment.
    Tcp {
        /// Source.
        src: SocketAddr,
        /// Destination.
        dst: SocketAddr,
        /// Sequence number.
        seq: u32,
        /// Acknowledgment number.
        ack: u32,
        /// Control bits.
        flags: TcpFlags,
        /// Advertised window, unscaled (as in the header).
        window: u16,
        /// Window scale option (SYN segments only; RFC 7323 §2.2).
        wscale: Option<u8>,
        /// Data.
        payload: &'a [u8],
        /// Offset of the TCP header in the frame.
        l4_at: usize,
        /// Length of the segment (header and data).
        l4_len: usize,
    },
    /// A UDP datagram.
    Udp {
        /// Source.
        src: SocketAddr,
        /// Destination.
        dst: SocketAddr,
        /// Data.
        payload: &'a [u8],
        /// Offset of the UDP header in the frame.
        l4_at: usize,
        /// Length of the datagram (header and data).
        l4_len: usize,
    },
    /// ICMP or ICMPv6: type, and for echo messages the identifier.
    Icmp {
        /// Source.
        src: IpAddr,
        /// Destination.
        dst: IpAddr,
        /// Message type.
        icmp_type: u8,
        /// Identifier (echo request/reply), else 0.
        ident: u16,
        /// Whether it is ICMPv6.
        v6: bool,
        /// Bytes of the message.
        len: usize,
        /// The message itself (header and data; the model guest resends
        /// echo requests as recorded).
        message: &'a [u8],
    },
    /// Anything else (other EtherTypes, fragments, protocols).
    Other,
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Destination MAC.
    pub dst_mac: MacAddr,
    /// What it carries.
    pub kind: Kind<'a>,
}

/// Decodes `frame`; `None` if it is not even an Ethernet header.
pub fn decode(frame: &[u8]) -> Option<Decoded<'_>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (src_mac, dst_mac) = (eth.src(), eth.dst());
    let body = frame.get(14..)?;
    let kind = match eth.ethertype() {
        ethertype::ARP => match ArpPacket::new_checked(body) {
            Ok(a) => Kind::Arp {
                op: a.opcode(),
                sender: IpAddr::V4(a.sender_ip()),
                target: IpAddr::V4(a.target_ip()),
            },
            Err(_) => Kind::Other,
        },
        ethertype::IPV4 => ipv4(body).unwrap_or(Kind::Other),
        ethertype::IPV6 => ipv6(body).unwrap_or(Kind::Other),
        _ => Kind::Other,
    };
    Some(Decoded {
        src_mac,
        dst_mac,
        kind,
    })
}

fn ipv4(body: &[u8]) -> Option<Kind<'_>> {
    let p = Ipv4Packet::new_checked(body).ok()?;
    if p.more_frags() || p.frag_offset() != 0 {
        return Some(Kind::Other);
    }
    let hl = p.header_len();
    let total = usize::from(p.total_len()).min(body.len());
    let l4 = body.get(hl..total)?;
    let (src, dst) = (IpAddr::V4(p.src_addr()), IpAddr::V4(p.dst_addr()));
    l4_kind(p.protocol(), src, dst, l4, 14 + hl, false)
}

fn ipv6(body: &[u8]) -> Option<Kind<'_>> {
    let p = Ipv6Packet::new_checked(body).ok()?;
    let (nh, off) = p.upper_layer().ok()?;
    let start = 40 + off;
    let end = (40 + usize::from(p.payload_len())).min(body.len());
    let l4 = body.get(start..end)?;
    let (src, dst) = (IpAddr::V6(p.src_addr()), IpAddr::V6(p.dst_addr()));
    l4_kind(nh, src, dst, l4, 14 + start, true)
}

fn l4_kind(
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    l4: &[u8],
    l4_at: usize,
    v6: bool,
) -> Option<Kind<'_>> {
    Some(match proto {
        protocol::TCP => {
            let t = TcpPacket::new_checked(l4).ok()?;
            let hl = t.header_len();
            Kind::Tcp {
                src: SocketAddr::new(src, t.src_port()),
                dst: SocketAddr::new(dst, t.dst_port()),
                seq: t.seq_number(),
                ack: t.ack_number(),
                flags: t.flags(),
                window: t.window(),
                wscale: TcpOptions::parse(t.options())
                    .ok()
                    .and_then(|o| o.window_scale),
                payload: l4.get(hl..)?,
                l4_at,
                l4_len: l4.len(),
            }
        }
        protocol::UDP => {
            let u = UdpPacket::new_checked(l4).ok()?;
            let len = usize::from(u.len()).clamp(8, l4.len());
            Kind::Udp {
                src: SocketAddr::new(src, u.src_port()),
                dst: SocketAddr::new(dst, u.dst_port()),
                payload: l4.get(8..len)?,
                l4_at,
                l4_len: len,
            }
        }
        protocol::ICMP | ICMPV6 if (proto == ICMPV6) == v6 && l4.len() >= 8 => Kind::Icmp {
            src,
            dst,
            icmp_type: l4[0],
            ident: u16::from_be_bytes([l4[4], l4[5]]),
            v6,
            len: l4.len(),
            message: l4,
        },
        _ => Kind::Other,
    })
}

/// Sequence space a TCP segment occupies (RFC 9293 §3.4: data, SYN and
/// FIN; a RST none).
pub fn seq_len(flags: TcpFlags, payload_len: usize) -> u32 {
    if flags.contains(TcpFlags::RST) {
        return 0;
    }
    payload_len as u32
        + u32::from(flags.contains(TcpFlags::SYN))
        + u32::from(flags.contains(TcpFlags::FIN))
}
