//! Wire formats: zero-copy parsing and in-place building of the frames the
//! engine exchanges with the guest.
//!
//! Each protocol has a `XxxPacket<T: AsRef<[u8]>>` view (`new_checked`
//! validates lengths, accessors read fields) and a `XxxRepr` with the
//! meaning of the fields (`parse` validates semantics and checksums, `emit`
//! writes into a caller-provided slice). On top of those, [`parse_frame`]
//! decodes a whole guest frame in one call and the `build_*` functions
//! write a whole frame for the guest, every checksum computed, in a shape
//! that fits [`crate::txq::TxQueue::push_with`].
//!
//! This module owns byte layouts and checksums only. It never allocates,
//! never panics on untrusted input (every error is a [`WireError`]), and
//! never decides what to do with a packet: that is the dispatcher's and
//! the protocol modules' job.

pub mod arp;
pub mod checksum;
mod describe;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

#[cfg(test)]
mod tests;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use checksum::{Checksum, PseudoHeader};
pub use ethernet::{EthernetFrame, EthernetRepr, ethertype};
pub use icmpv4::{Icmpv4Packet, Icmpv4Repr};
pub use icmpv6::{
    AddrList, DomainList, Icmpv6Packet, Icmpv6Repr, NdpOption, NdpOptions, NdpRepr, PrefixInfo,
};
pub use ipv4::{Ipv4Packet, Ipv4Repr, protocol};
pub use ipv6::{Ipv6Packet, Ipv6Repr};
pub use tcp::{SackBlock, TcpFlags, TcpOptions, TcpPacket, TcpRepr};
pub use udp::{UdpPacket, UdpRepr};

use crate::addr::MacAddr;
use crate::counters::DropReason;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Why bytes could not be parsed or a frame could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than the headers or lengths it claims (or, when building,
    /// the output buffer is too small).
    #[error("truncated")]
    Truncated,
    /// A field holds an impossible value.
    #[error("malformed")]
    Malformed,
    /// A checksum did not verify.
    #[error("bad checksum")]
    BadChecksum,
    /// An IPv4 fragment (MF set or non-zero offset).
    #[error("IPv4 fragment")]
    Ipv4Fragment,
    /// An IPv6 fragment header in the extension chain.
    #[error("IPv6 fragment")]
    Ipv6Fragment,
    /// An EtherType other than IPv4, IPv6 and ARP.
    #[error("unknown EtherType {0:#06x}")]
    UnknownEtherType(u16),
    /// Valid but outside what this layer handles (ARP over another
    /// hardware, an unknown ARP opcode, IPv6 extension headers on emit).
    #[error("unsupported")]
    Unsupported,
}

impl From<WireError> for DropReason {
    fn from(e: WireError) -> DropReason {
        match e {
            WireError::Truncated => DropReason::Truncated,
            WireError::Malformed => DropReason::Malformed,
            WireError::BadChecksum => DropReason::BadChecksum,
            WireError::Ipv4Fragment => DropReason::Ipv4Fragment,
            WireError::Ipv6Fragment => DropReason::Ipv6Fragment,
            WireError::UnknownEtherType(_) => DropReason::UnknownEtherType,
            WireError::Unsupported => DropReason::UnsupportedProtocol,
        }
    }
}

/// Six bytes as a MAC (the caller guarantees the length).
pub(crate) fn read_mac(b: &[u8]) -> MacAddr {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[..6]);
    MacAddr(m)
}

/// Four bytes as an IPv4 address (the caller guarantees the length).
pub(crate) fn read_ipv4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// Sixteen bytes as an IPv6 address (the caller guarantees the length).
pub(crate) fn read_ipv6(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}

// ---------------------------------------------------------------------------
// One-call parsing
// ---------------------------------------------------------------------------

/// A guest frame, decoded down to the transport layer, every checksum
/// verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Ethernet header.
    pub eth: EthernetRepr,
    /// Network layer.
    pub l3: L3<'a>,
}

/// The network layer of a [`Frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3<'a> {
    /// ARP.
    Arp(ArpRepr),
    /// IPv4 and its payload.
    Ipv4 {
        /// Header.
        ip: Ipv4Repr,
        /// Payload.
        l4: L4<'a>,
    },
    /// IPv6 and its upper-layer payload.
    Ipv6 {
        /// Header, extension chain resolved.
        ip: Ipv6Repr,
        /// Upper-layer payload.
        l4: L4<'a>,
    },
}

/// The transport layer of a [`Frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4<'a> {
    /// TCP segment.
    Tcp {
        /// Header.
        tcp: TcpRepr,
        /// Data.
        payload: &'a [u8],
    },
    /// UDP datagram.
    Udp {
        /// Header.
        udp: UdpRepr,
        /// Data (exactly the UDP length minus 8).
        payload: &'a [u8],
    },
    /// ICMP over IPv4.
    Icmpv4(Icmpv4Repr<'a>),
    /// ICMPv6.
    Icmpv6(Icmpv6Repr<'a>),
    /// Any other protocol (including ICMPv6 over IPv4 and ICMPv4 over
    /// IPv6, which are meaningless): left to the caller to drop.
    Other {
        /// Protocol / next header.
        protocol: u8,
        /// Its bytes.
        payload: &'a [u8],
    },
}

fn parse_l4<'a>(proto: u8, payload: &'a [u8], pseudo: PseudoHeader) -> Result<L4<'a>, WireError> {
    Ok(match (proto, pseudo) {
        (protocol::TCP, _) => {
            let p = TcpPacket::new_checked(payload)?;
            let tcp = TcpRepr::parse(&p, &pseudo)?;
            L4::Tcp {
                tcp,
                payload: &payload[p.header_len()..],
            }
        }
        (protocol::UDP, _) => {
            let p = UdpPacket::new_checked(payload)?;
            let udp = UdpRepr::parse(&p, &pseudo)?;
            L4::Udp {
                udp,
                payload: &payload[udp::HEADER_LEN..usize::from(p.len())],
            }
        }
        (protocol::ICMP, PseudoHeader::V4 { .. }) => {
            let p = Icmpv4Packet::new_checked(payload)?;
            L4::Icmpv4(Icmpv4Repr::parse(&p)?)
        }
        (protocol::ICMPV6, PseudoHeader::V6 { src, dst }) => {
            let p = Icmpv6Packet::new_checked(payload)?;
            L4::Icmpv6(Icmpv6Repr::parse(&p, src, dst)?)
        }
        (protocol, _) => L4::Other { protocol, payload },
    })
}

/// Decodes a guest frame down to its transport header, verifying every
/// checksum. Trailing Ethernet padding is ignored. Unknown EtherTypes
/// (802.1Q tags included) are [`WireError::UnknownEtherType`].
pub fn parse_frame(frame: &[u8]) -> Result<Frame<'_>, WireError> {
    let eth_frame = EthernetFrame::new_checked(frame)?;
    let eth = EthernetRepr::parse(&eth_frame)?;
    let body = &frame[ethernet::HEADER_LEN..];
    let l3 = match eth.ethertype {
        ethertype::ARP => L3::Arp(ArpRepr::parse(&ArpPacket::new_checked(body)?)?),
        ethertype::IPV4 => {
            let p = Ipv4Packet::new_checked(body)?;
            let ip = Ipv4Repr::parse(&p)?;
            let payload = &body[p.header_len()..usize::from(p.total_len())];
            let pseudo = PseudoHeader::V4 {
                src: ip.src_addr,
                dst: ip.dst_addr,
            };
            L3::Ipv4 {
                ip,
                l4: parse_l4(ip.protocol, payload, pseudo)?,
            }
        }
        ethertype::IPV6 => {
            let p = Ipv6Packet::new_checked(body)?;
            let ip = Ipv6Repr::parse(&p)?;
            let start = ip.upper_layer_offset();
            let payload = &body[start..start + ip.payload_len];
            let pseudo = PseudoHeader::V6 {
                src: ip.src_addr,
                dst: ip.dst_addr,
            };
            L3::Ipv6 {
                ip,
                l4: parse_l4(ip.next_header, payload, pseudo)?,
            }
        }
        other => return Err(WireError::UnknownEtherType(other)),
    };
    Ok(Frame { eth, l3 })
}

// ---------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------

/// Length of an ARP frame ([`build_arp`]).
pub const ARP_FRAME_LEN: usize = ethernet::HEADER_LEN + arp::PACKET_LEN;
/// Ethernet + IPv4 header bytes a builder writes before the L4 header.
pub const IPV4_HEADERS_LEN: usize = ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN;
/// Ethernet + IPv6 header bytes a builder writes before the L4 header.
pub const IPV6_HEADERS_LEN: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN;

fn emit_eth(buf: &mut [u8], src: MacAddr, dst: MacAddr, ethertype: u16) -> Result<(), WireError> {
    EthernetRepr {
        src,
        dst,
        ethertype,
    }
    .emit(buf)
}

/// Writes an Ethernet/ARP frame; returns its length (42).
pub fn build_arp(
    buf: &mut [u8],
    src_mac: MacAddr,
    dst_mac: MacAddr,
    arp: &ArpRepr,
) -> Result<usize, WireError> {
    if buf.len() < ARP_FRAME_LEN {
        return Err(WireError::Truncated);
    }
    emit_eth(buf, src_mac, dst_mac, ethertype::ARP)?;
    arp.emit(&mut buf[ethernet::HEADER_LEN..])?;
    Ok(ARP_FRAME_LEN)
}

/// Writes Ethernet + IPv4 headers for an L4 packet of `l4_len` bytes whose
/// protocol is `proto`; `ip.protocol` and `ip.payload_len` are overridden.
fn emit_ipv4_headers(
    buf: &mut [u8],
    src_mac: MacAddr,
    dst_mac: MacAddr,
    ip: &Ipv4Repr,
    proto: u8,
    l4_len: usize,
) -> Result<(), WireError> {
    emit_eth(buf, src_mac, dst_mac, ethertype::IPV4)?;
    Ipv4Repr {
        protocol: proto,
        payload_len: l4_len,
        ..*ip
    }
    .emit(&mut buf[ethernet::HEADER_LEN..])
}

/// Same for IPv6; `ip.next_header`, `ip.payload_len` are overridden and
/// `ip.ext_headers_len` is ignored (no extension headers are written).
fn emit_ipv6_headers(
    buf: &mut [u8],
    src_mac: MacAddr,
    dst_mac: MacAddr,
    ip: &Ipv6Repr,
    proto: u8,
    l4_len: usize,
) -> Result<(), WireError> {
    emit_eth(buf, src_mac, dst_mac, ethertype::IPV6)?;
    Ipv6Repr {
        next_header: proto,
        payload_len: l4_len,
        ext_headers_len: 0,
        ..*ip
    }
    .emit(&mut buf[ethernet::HEADER_LEN..])
}

/// The IP side of a frame to build: IPv4 or IPv6 header fields. Protocol
/// and payload length are filled in by the builders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpRepr {
    /// IPv4.
    V4(Ipv4Repr),
    /// IPv6.
    V6(Ipv6Repr),
}

impl IpRepr {
    /// Ethernet plus IP header bytes.
    pub const fn headers_len(&self) -> usize {
        match self {
            IpRepr::V4(_) => IPV4_HEADERS_LEN,
            IpRepr::V6(_) => IPV6_HEADERS_LEN,
        }
    }

    /// The pseudo-header for the upper-layer checksum.
    pub const fn pseudo_header(&self) -> PseudoHeader {
        match self {
            IpRepr::V4(ip) => PseudoHeader::V4 {
                src: ip.src_addr,
                dst: ip.dst_addr,
            },
            IpRepr::V6(ip) => PseudoHeader::V6 {
                src: ip.src_addr,
                dst: ip.dst_addr,
            },
        }
    }

    fn emit_headers(
        &self,
        buf: &mut [u8],
        src_mac: MacAddr,
        dst_mac: MacAddr,
        proto: u8,
        l4_len: usize,
    ) -> Result<(), WireError> {
        match self {
            IpRepr::V4(ip) => emit_ipv4_headers(buf, src_mac, dst_mac, ip, proto, l4_len),
            IpRepr::V6(ip) => emit_ipv6_headers(buf, src_mac, dst_mac, ip, proto, l4_len),
        }
    }
}

impl From<Ipv4Repr> for IpRepr {
    fn from(ip: Ipv4Repr) -> Self {
        IpRepr::V4(ip)
    }
}
impl From<Ipv6Repr> for IpRepr {
    fn from(ip: Ipv6Repr) -> Self {
        IpRepr::V6(ip)
    }
}

/// Writes an Ethernet/IP/UDP frame whose payload is produced in place by
/// `fill`: it gets a slice of `min(max_payload, room left in buf)` bytes
/// and returns how many it wrote (clamped to the slice). Returns the frame
/// length. The IP protocol, lengths and both checksums are computed here.
pub fn build_udp_with<F>(
    buf: &mut [u8],
    src_mac: MacAddr,
    dst_mac: MacAddr,
    ip: IpRepr,
    udp: &UdpRepr,
    max_payload: usize,
    fill: F,
) -> Result<usize, WireError>
where
    F: FnOnce(&mut [u8]) -> usize,
{
    let start = ip.headers_len() + udp::HEADER_LEN;
    if buf.len() < start {
        return Err(WireError::Truncated);
    }
    let room = (buf.len() - start).min(max_payload);
    let n = fill(&mut buf[start..start + room]).min(room);
    let l4_len = udp::HEADER_LEN + n;
    ip.emit_headers(buf, src_mac, dst_mac, protocol::UDP, l4_len)?;
    udp.emit(&mut buf[ip.headers_len()..start + n], &ip.pseudo_header())?;
    Ok(start + n)
}

/// [`build_udp_with`] with the payload copied from a slice (Truncated if
/// it does not fit).
pub fn build_udp(
    buf: &mut [u8],
    src_mac: MacAddr,
    dst_mac: MacAddr,
    ip: IpRepr,
    udp: &UdpRepr,
    payload: &[u8],
) -> Result<usize, WireError> {
    if buf.len() < ip.headers_len() + udp::HEADER_LEN + payload.len() {
        return Err(WireError::Truncated);
    }
    build_udp_with(buf, src_mac, dst_mac, ip, udp, payload.len(), |b| {
        b[..payload.len()].copy_from_slice(payload);
        payload.len()
    })
}

/// Writes an Ethernet/IP/TCP frame (options as `tcp.options` asks) whose
/// payload is produced in place by `fill`, as for [`build_udp_with`].
/// Returns the frame length.
pub fn build_tcp_with<F>(
    buf: &mut [u8],
    src_mac: MacAddr,
    dst_mac: MacAddr,
    ip: IpRepr,
    tcp: &TcpRepr,
    max_payload: usize,
    fill: F,
) -> Result<usize, WireError>
where
    F: FnOnce(&mut [u8]) -> usize,
{
    let l4_start = ip.headers_len();
    let start = l4_start + tcp.header_len();
    if buf.len() < start {
        return Err(WireError::Truncated);
    }
    let room = (buf.len() - start).min(max_payload);
    let n = fill(&mut buf[start..start + room]).min(room);
    ip.emit_headers(buf, src_mac, dst_mac, protocol::TCP, tcp.header_len() + n)?;
    tcp.emit(&mut buf[l4_start..start + n], &ip.pseudo_header())?;
    Ok(start + n)
}

/// [`build_tcp_with`] with the payload copied from a slice (Truncated if
/// it does not fit).
pub fn build_tcp(
    buf: &mut [u8],
    src_mac: MacAddr,
    dst_mac: MacAddr,
    ip: IpRepr,
    tcp: &TcpRepr,
    payload: &[u8],
) -> Result<usize, WireError> {
    if buf.len() < ip.headers_len() + tcp.header_len() + payload.len() {
        return Err(WireError::Truncated);
    }
    build_tcp_with(buf, src_mac, dst_mac, ip, tcp, payload.len(), |b| {
        b[..payload.len()].copy_from_slice(payload);
        payload.len()
    })
}

/// Writes an Ethernet/IPv4/ICMP frame; returns its length.
pub fn build_icmpv4(
    buf: &mut [u8],
    src_mac: MacAddr,
    dst_mac: MacAddr,
    ip: &Ipv4Repr,
    icmp: &Icmpv4Repr<'_>,
) -> Result<usize, WireError> {
    let len = IPV4_HEADERS_LEN + icmp.buffer_len();
    if buf.len() < len {
        return Err(WireError::Truncated);
    }
    emit_ipv4_headers(buf, src_mac, dst_mac, ip, protocol::ICMP, icmp.buffer_len())?;
    icmp.emit(&mut buf[IPV4_HEADERS_LEN..len])?;
    Ok(len)
}

/// Writes an Ethernet/IPv6/ICMPv6 frame (NDP messages with their options
/// included); returns its length.
pub fn build_icmpv6(
    buf: &mut [u8],
    src_mac: MacAddr,
    dst_mac: MacAddr,
    ip: &Ipv6Repr,
    icmp: &Icmpv6Repr<'_>,
) -> Result<usize, WireError> {
    let len = IPV6_HEADERS_LEN + icmp.buffer_len();
    if buf.len() < len {
        return Err(WireError::Truncated);
    }
    emit_ipv6_headers(
        buf,
        src_mac,
        dst_mac,
        ip,
        protocol::ICMPV6,
        icmp.buffer_len(),
    )?;
    icmp.emit(ip.src_addr, ip.dst_addr, &mut buf[IPV6_HEADERS_LEN..len])?;
    Ok(len)
}
