//! ICMPv6 (RFC 4443) and the Neighbor Discovery messages and options
//! carried in it (RFC 4861; RDNSS and DNSSL options from RFC 8106).
//!
//! Owns the ICMPv6 header, its checksum over the IPv6 pseudo-header
//! (RFC 4443 §2.3, RFC 8200 §8.1), the NDP message bodies and the NDP
//! option area. Options are validated once at parse time (a zero length is
//! malformed, RFC 4861 §4.6) and then read through an allocation-free
//! iterator; options to send are given as a slice of [`NdpOption`] and
//! encoded on the fly (DNSSL names included). This module never decides
//! whether a message deserves an answer: that is `crate::ndp`'s job (hop
//! limit 255 checks included, since they need the IP header).

use super::checksum::ipv6_pseudo_header;
use super::ipv4::protocol;
use super::{WireError, read_ipv6, read_mac};
use crate::addr::MacAddr;
use core::fmt;
use std::net::Ipv6Addr;

/// Length of the ICMPv6 header (type, code, checksum, 4 bytes of body).
pub const HEADER_LEN: usize = 8;

/// ICMPv6 message types (RFC 4443 §2.1, RFC 4861 §4).
pub mod msg_type {
    /// Destination unreachable.
    pub const DST_UNREACHABLE: u8 = 1;
    /// Packet too big.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Router solicitation.
    pub const ROUTER_SOLICIT: u8 = 133;
    /// Router advertisement.
    pub const ROUTER_ADVERT: u8 = 134;
    /// Neighbor solicitation.
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbor advertisement.
    pub const NEIGHBOR_ADVERT: u8 = 136;
    /// Redirect.
    pub const REDIRECT: u8 = 137;
}

/// NDP option types (RFC 4861 §4.6, RFC 8106 §5).
pub mod option_type {
    /// Source link-layer address.
    pub const SOURCE_LINK_ADDR: u8 = 1;
    /// Target link-layer address.
    pub const TARGET_LINK_ADDR: u8 = 2;
    /// Prefix information.
    pub const PREFIX_INFO: u8 = 3;
    /// Redirected header.
    pub const REDIRECTED_HEADER: u8 = 4;
    /// MTU.
    pub const MTU: u8 = 5;
    /// Recursive DNS servers.
    pub const RDNSS: u8 = 25;
    /// DNS search list.
    pub const DNSSL: u8 = 31;
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A view of an ICMPv6 message.
#[derive(Debug, Clone, Copy)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps `buffer` (the whole upper-layer payload), checking it holds
    /// the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Icmpv6Packet { buffer })
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// Type.
    pub fn msg_type(&self) -> u8 {
        self.b()[0]
    }
    /// Code.
    pub fn code(&self) -> u8 {
        self.b()[1]
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.b()[2], self.b()[3]])
    }
    /// Bytes 4..8.
    pub fn rest_of_header(&self) -> u32 {
        be32(&self.b()[4..8])
    }
    /// Whether the checksum verifies with the pseudo-header of `src`/`dst`.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let b = self.b();
        let mut sum = ipv6_pseudo_header(src, dst, protocol::ICMPV6, b.len());
        sum.add_bytes(b).finish() == 0
    }
}

/// Prefix information option body (RFC 4861 §4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixInfo {
    /// Prefix length.
    pub prefix_len: u8,
    /// L: on-link.
    pub on_link: bool,
    /// A: usable for stateless address autoconfiguration (RFC 4862).
    pub autonomous: bool,
    /// Valid lifetime in seconds (0xffffffff is infinite).
    pub valid_lifetime: u32,
    /// Preferred lifetime in seconds.
    pub preferred_lifetime: u32,
    /// The prefix (bits past `prefix_len` should be zero).
    pub prefix: Ipv6Addr,
}

/// The addresses of an RDNSS option: on the wire (parsed) or a slice (to
/// send). Compared by content.
#[derive(Debug, Clone, Copy)]
pub enum AddrList<'a> {
    /// 16-byte addresses back to back, as on the wire.
    Wire(&'a [u8]),
    /// Addresses to encode.
    Slice(&'a [Ipv6Addr]),
}

impl<'a> AddrList<'a> {
    /// Number of addresses.
    pub fn len(&self) -> usize {
        match self {
            AddrList::Wire(b) => b.len() / 16,
            AddrList::Slice(s) => s.len(),
        }
    }
    /// No address.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The addresses in order.
    pub fn iter(&self) -> impl Iterator<Item = Ipv6Addr> + 'a {
        let (wire, slice): (&'a [u8], &'a [Ipv6Addr]) = match *self {
            AddrList::Wire(b) => (b, &[]),
            AddrList::Slice(s) => (&[], s),
        };
        wire.chunks_exact(16)
            .map(read_ipv6)
            .chain(slice.iter().copied())
    }
}

impl PartialEq for AddrList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}
impl Eq for AddrList<'_> {}

/// The domain names of a DNSSL option: on the wire (parsed, RFC 1035
/// §3.1 label encoding without compression) or as text (to send).
/// Compared label by label (exactly, not case-folded).
#[derive(Debug, Clone, Copy)]
pub enum DomainList<'a> {
    /// Encoded names followed by zero padding, as on the wire (validated).
    Wire(&'a [u8]),
    /// Dotted names to encode; empty names (and empty labels, such as a
    /// trailing dot) are skipped.
    Names(&'a [String]),
}

impl<'a> DomainList<'a> {
    /// The names in order.
    pub fn names(&self) -> DomainNames<'a> {
        DomainNames {
            list: *self,
            pos: 0,
        }
    }
    /// Bytes the names take once encoded (before option padding).
    fn encoded_len(&self) -> usize {
        self.names()
            .map(|n| n.labels().map(|l| l.len() + 1).sum::<usize>() + 1)
            .sum()
    }
}

impl PartialEq for DomainList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.names().eq(other.names())
    }
}
impl Eq for DomainList<'_> {}

/// Iterator over the names of a [`DomainList`].
#[derive(Debug, Clone)]
pub struct DomainNames<'a> {
    list: DomainList<'a>,
    pos: usize,
}

impl<'a> Iterator for DomainNames<'a> {
    type Item = DomainName<'a>;
    fn next(&mut self) -> Option<DomainName<'a>> {
        match self.list {
            DomainList::Wire(data) => {
                let start = self.pos;
                // A zero byte where a name would start is padding (RFC 8106
                // §5.2).
                let mut at = start;
                loop {
                    let len = usize::from(*data.get(at)?);
                    if len == 0 {
                        break;
                    }
                    at += 1 + len;
                }
                if at == start {
                    return None;
                }
                self.pos = at + 1;
                Some(DomainName::Wire(&data[start..at]))
            }
            DomainList::Names(names) => {
                while let Some(n) = names.get(self.pos) {
                    self.pos += 1;
                    if n.split('.').any(|l| !l.is_empty()) {
                        return Some(DomainName::Text(n));
                    }
                }
                None
            }
        }
    }
}

/// One domain name of a [`DomainList`].
#[derive(Debug, Clone, Copy)]
pub enum DomainName<'a> {
    /// Length-prefixed labels (without the final zero).
    Wire(&'a [u8]),
    /// Dotted text.
    Text(&'a str),
}

impl<'a> DomainName<'a> {
    /// The labels, in order, without dots or length bytes.
    pub fn labels(&self) -> Labels<'a> {
        match *self {
            DomainName::Wire(b) => Labels::Wire(b),
            DomainName::Text(s) => Labels::Text(s.split('.')),
        }
    }
}

impl PartialEq for DomainName<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.labels().eq(other.labels())
    }
}
impl Eq for DomainName<'_> {}

impl fmt::Display for DomainName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, label) in self.labels().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            for &c in label {
                if c.is_ascii_graphic() && c != b'.' && c != b'\\' {
                    write!(f, "{}", c as char)?;
                } else {
                    write!(f, "\\{c:03}")?;
                }
            }
        }
        Ok(())
    }
}

/// Iterator over the labels of a [`DomainName`].
#[derive(Debug, Clone)]
pub enum Labels<'a> {
    /// Remaining encoded labels.
    Wire(&'a [u8]),
    /// Remaining dotted text.
    Text(core::str::Split<'a, char>),
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        match self {
            Labels::Wire(b) => {
                let (&len, rest) = b.split_first()?;
                let len = usize::from(len);
                if len == 0 || rest.len() < len {
                    *b = &[];
                    return None;
                }
                let (label, tail) = rest.split_at(len);
                *b = tail;
                Some(label)
            }
            Labels::Text(split) => split.find(|l| !l.is_empty()).map(str::as_bytes),
        }
    }
}

/// One NDP option, parsed or to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdpOption<'a> {
    /// Source link-layer address (type 1), Ethernet only.
    SourceLinkAddr(MacAddr),
    /// Target link-layer address (type 2), Ethernet only.
    TargetLinkAddr(MacAddr),
    /// Prefix information (type 3).
    PrefixInfo(PrefixInfo),
    /// MTU (type 5).
    Mtu(u32),
    /// Recursive DNS servers (type 25, RFC 8106 §5.1).
    Rdnss {
        /// Lifetime in seconds.
        lifetime: u32,
        /// Servers (at least one).
        servers: AddrList<'a>,
    },
    /// DNS search list (type 31, RFC 8106 §5.2).
    Dnssl {
        /// Lifetime in seconds.
        lifetime: u32,
        /// Domains.
        domains: DomainList<'a>,
    },
    /// Any other option: its type and the bytes after type and length
    /// (emitted zero-padded to a multiple of 8 bytes in total).
    Unknown {
        /// Option type.
        kind: u8,
        /// Body.
        data: &'a [u8],
    },
}

/// Checks a DNSSL name area: names of labels of at most 63 bytes (no
/// compression pointers), each terminated inside the area.
fn check_dnssl_names(data: &[u8]) -> Result<(), WireError> {
    let mut at = 0;
    while at < data.len() {
        if data[at] == 0 {
            // Padding from here on.
            return Ok(());
        }
        let start = at;
        loop {
            let len = usize::from(*data.get(at).ok_or(WireError::Malformed)?);
            if len == 0 {
                at += 1;
                break;
            }
            if len > 63 {
                return Err(WireError::Malformed);
            }
            at += 1 + len;
        }
        if at - start > 255 {
            return Err(WireError::Malformed);
        }
    }
    Ok(())
}

impl<'a> NdpOption<'a> {
    /// Decodes the first option of `area`, returning it and the rest.
    fn decode(area: &'a [u8]) -> Result<(NdpOption<'a>, &'a [u8]), WireError> {
        let [kind, units, ..] = *area else {
            return Err(WireError::Truncated);
        };
        // RFC 4861 §4.6: a length of zero is invalid (discard the packet).
        if units == 0 {
            return Err(WireError::Malformed);
        }
        let len = usize::from(units) * 8;
        if area.len() < len {
            return Err(WireError::Truncated);
        }
        let (opt, rest) = area.split_at(len);
        let body = &opt[2..];
        let parsed = match kind {
            option_type::SOURCE_LINK_ADDR | option_type::TARGET_LINK_ADDR => {
                // RFC 4861 §4.6.1 with RFC 2464 §8: length 1 for Ethernet.
                if units != 1 {
                    return Err(WireError::Malformed);
                }
                let mac = read_mac(&body[..6]);
                if kind == option_type::SOURCE_LINK_ADDR {
                    NdpOption::SourceLinkAddr(mac)
                } else {
                    NdpOption::TargetLinkAddr(mac)
                }
            }
            option_type::PREFIX_INFO => {
                if units != 4 {
                    return Err(WireError::Malformed);
                }
                NdpOption::PrefixInfo(PrefixInfo {
                    prefix_len: body[0],
                    on_link: body[1] & 0x80 != 0,
                    autonomous: body[1] & 0x40 != 0,
                    valid_lifetime: be32(&body[2..6]),
                    preferred_lifetime: be32(&body[6..10]),
                    prefix: read_ipv6(&body[14..30]),
                })
            }
            option_type::MTU => {
                if units != 1 {
                    return Err(WireError::Malformed);
                }
                NdpOption::Mtu(be32(&body[2..6]))
            }
            option_type::RDNSS => {
                // RFC 8106 §5.1: length 3 + 2n (minimum 3).
                if units < 3 || units % 2 == 0 {
                    return Err(WireError::Malformed);
                }
                NdpOption::Rdnss {
                    lifetime: be32(&body[2..6]),
                    servers: AddrList::Wire(&body[6..]),
                }
            }
            option_type::DNSSL => {
                // RFC 8106 §5.2: minimum length 2.
                if units < 2 {
                    return Err(WireError::Malformed);
                }
                check_dnssl_names(&body[6..])?;
                NdpOption::Dnssl {
                    lifetime: be32(&body[2..6]),
                    domains: DomainList::Wire(&body[6..]),
                }
            }
            kind => NdpOption::Unknown { kind, data: body },
        };
        Ok((parsed, rest))
    }

    /// Bytes this option takes on the wire (a multiple of 8).
    pub fn buffer_len(&self) -> usize {
        match self {
            NdpOption::SourceLinkAddr(_) | NdpOption::TargetLinkAddr(_) | NdpOption::Mtu(_) => 8,
            NdpOption::PrefixInfo(_) => 32,
            NdpOption::Rdnss { servers, .. } => 8 + 16 * servers.len(),
            NdpOption::Dnssl { domains, .. } => (8 + domains.encoded_len()).div_ceil(8) * 8,
            NdpOption::Unknown { data, .. } => (2 + data.len()).div_ceil(8) * 8,
        }
    }

    /// Writes the option into the first [`NdpOption::buffer_len`] bytes of
    /// `buf`. Options that cannot be encoded (no RDNSS server, a label over
    /// 63 bytes, a name over 255, an option over 2040 bytes) are
    /// `Malformed`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let len = self.buffer_len();
        let units = u8::try_from(len / 8).map_err(|_| WireError::Malformed)?;
        let b = buf.get_mut(..len).ok_or(WireError::Truncated)?;
        b.fill(0);
        b[1] = units;
        match *self {
            NdpOption::SourceLinkAddr(mac) => {
                b[0] = option_type::SOURCE_LINK_ADDR;
                b[2..8].copy_from_slice(&mac.0);
            }
            NdpOption::TargetLinkAddr(mac) => {
                b[0] = option_type::TARGET_LINK_ADDR;
                b[2..8].copy_from_slice(&mac.0);
            }
            NdpOption::PrefixInfo(p) => {
                b[0] = option_type::PREFIX_INFO;
                b[2] = p.prefix_len;
                b[3] = (u8::from(p.on_link) << 7) | (u8::from(p.autonomous) << 6);
                b[4..8].copy_from_slice(&p.valid_lifetime.to_be_bytes());
                b[8..12].copy_from_slice(&p.preferred_lifetime.to_be_bytes());
                b[16..32].copy_from_slice(&p.prefix.octets());
            }
            NdpOption::Mtu(mtu) => {
                b[0] = option_type::MTU;
                b[4..8].copy_from_slice(&mtu.to_be_bytes());
            }
            NdpOption::Rdnss { lifetime, servers } => {
                if servers.is_empty() {
                    return Err(WireError::Malformed);
                }
                b[0] = option_type::RDNSS;
                b[4..8].copy_from_slice(&lifetime.to_be_bytes());
                for (slot, addr) in b[8..].chunks_exact_mut(16).zip(servers.iter()) {
                    slot.copy_from_slice(&addr.octets());
                }
            }
            NdpOption::Dnssl { lifetime, domains } => {
                b[0] = option_type::DNSSL;
                b[4..8].copy_from_slice(&lifetime.to_be_bytes());
                let mut at = 8;
                for name in domains.names() {
                    let name_start = at;
                    for label in name.labels() {
                        if label.len() > 63 {
                            return Err(WireError::Malformed);
                        }
                        b[at] = label.len() as u8;
                        b[at + 1..at + 1 + label.len()].copy_from_slice(label);
                        at += 1 + label.len();
                    }
                    b[at] = 0;
                    at += 1;
                    if at - name_start > 255 {
                        return Err(WireError::Malformed);
                    }
                }
            }
            NdpOption::Unknown { kind, data } => {
                b[0] = kind;
                b[2..2 + data.len()].copy_from_slice(data);
            }
        }
        Ok(())
    }
}

/// The option area of an NDP message: validated bytes (parsed) or a list
/// of options (to send). Compared option by option.
#[derive(Debug, Clone, Copy)]
pub enum NdpOptions<'a> {
    /// The option area as received (validated by the message parser).
    Wire(&'a [u8]),
    /// Options to encode, in order.
    List(&'a [NdpOption<'a>]),
}

impl<'a> NdpOptions<'a> {
    /// No options.
    pub const NONE: NdpOptions<'static> = NdpOptions::List(&[]);

    /// Validates a received option area.
    pub fn parse(area: &'a [u8]) -> Result<Self, WireError> {
        let mut rest = area;
        while !rest.is_empty() {
            rest = NdpOption::decode(rest)?.1;
        }
        Ok(NdpOptions::Wire(area))
    }

    /// The options in order.
    pub fn iter(&self) -> NdpOptionsIter<'a> {
        NdpOptionsIter {
            options: *self,
            pos: 0,
        }
    }

    /// The first source link-layer address option, if any.
    pub fn source_link_addr(&self) -> Option<MacAddr> {
        self.iter().find_map(|o| match o {
            NdpOption::SourceLinkAddr(m) => Some(m),
            _ => None,
        })
    }

    /// The first target link-layer address option, if any.
    pub fn target_link_addr(&self) -> Option<MacAddr> {
        self.iter().find_map(|o| match o {
            NdpOption::TargetLinkAddr(m) => Some(m),
            _ => None,
        })
    }

    /// Bytes the options take on the wire.
    pub fn buffer_len(&self) -> usize {
        match self {
            NdpOptions::Wire(b) => b.len(),
            NdpOptions::List(l) => l.iter().map(NdpOption::buffer_len).sum(),
        }
    }

    /// Writes the options into the first [`NdpOptions::buffer_len`] bytes
    /// of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        match self {
            NdpOptions::Wire(b) => {
                buf.get_mut(..b.len())
                    .ok_or(WireError::Truncated)?
                    .copy_from_slice(b);
            }
            NdpOptions::List(list) => {
                let mut at = 0;
                for opt in list.iter() {
                    opt.emit(buf.get_mut(at..).ok_or(WireError::Truncated)?)?;
                    at += opt.buffer_len();
                }
            }
        }
        Ok(())
    }
}

impl PartialEq for NdpOptions<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}
impl Eq for NdpOptions<'_> {}

/// Iterator over [`NdpOptions`].
#[derive(Debug, Clone)]
pub struct NdpOptionsIter<'a> {
    options: NdpOptions<'a>,
    pos: usize,
}

impl<'a> Iterator for NdpOptionsIter<'a> {
    type Item = NdpOption<'a>;
    fn next(&mut self) -> Option<NdpOption<'a>> {
        match self.options {
            NdpOptions::Wire(area) => {
                let rest = area.get(self.pos..)?;
                if rest.is_empty() {
                    return None;
                }
                match NdpOption::decode(rest) {
                    Ok((opt, tail)) => {
                        self.pos = area.len() - tail.len();
                        Some(opt)
                    }
                    Err(_) => {
                        self.pos = area.len();
                        None
                    }
                }
            }
            NdpOptions::List(list) => {
                let o = list.get(self.pos).copied();
                self.pos += 1;
                o
            }
        }
    }
}

/// An NDP message (RFC 4861 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdpRepr<'a> {
    /// Router solicitation (§4.1).
    RouterSolicit {
        /// Options (source link-layer address).
        options: NdpOptions<'a>,
    },
    /// Router advertisement (§4.2).
    RouterAdvert {
        /// Cur hop limit (0: unspecified).
        cur_hop_limit: u8,
        /// M: addresses via DHCPv6.
        managed: bool,
        /// O: other configuration via DHCPv6.
        other_config: bool,
        /// Router lifetime in seconds (0: not a default router).
        router_lifetime: u16,
        /// Reachable time in milliseconds (0: unspecified).
        reachable_time: u32,
        /// Retrans timer in milliseconds (0: unspecified).
        retrans_timer: u32,
        /// Options.
        options: NdpOptions<'a>,
    },
    /// Neighbor solicitation (§4.3).
    NeighborSolicit {
        /// Target address.
        target: Ipv6Addr,
        /// Options (source link-layer address).
        options: NdpOptions<'a>,
    },
    /// Neighbor advertisement (§4.4).
    NeighborAdvert {
        /// R: sender is a router.
        router: bool,
        /// S: sent in response to a solicitation.
        solicited: bool,
        /// O: override cached link-layer address.
        override_: bool,
        /// Target address.
        target: Ipv6Addr,
        /// Options (target link-layer address).
        options: NdpOptions<'a>,
    },
    /// Redirect (§4.5), parsed so it can be ignored.
    Redirect {
        /// Better first hop.
        target: Ipv6Addr,
        /// Destination being redirected.
        destination: Ipv6Addr,
        /// Options.
        options: NdpOptions<'a>,
    },
}

impl<'a> NdpRepr<'a> {
    /// The options of the message.
    pub fn options(&self) -> &NdpOptions<'a> {
        match self {
            NdpRepr::RouterSolicit { options }
            | NdpRepr::RouterAdvert { options, .. }
            | NdpRepr::NeighborSolicit { options, .. }
            | NdpRepr::NeighborAdvert { options, .. }
            | NdpRepr::Redirect { options, .. } => options,
        }
    }

    /// Type and length of the fixed part (ICMPv6 header included).
    fn fixed(&self) -> (u8, usize) {
        match self {
            NdpRepr::RouterSolicit { .. } => (msg_type::ROUTER_SOLICIT, 8),
            NdpRepr::RouterAdvert { .. } => (msg_type::ROUTER_ADVERT, 16),
            NdpRepr::NeighborSolicit { .. } => (msg_type::NEIGHBOR_SOLICIT, 24),
            NdpRepr::NeighborAdvert { .. } => (msg_type::NEIGHBOR_ADVERT, 24),
            NdpRepr::Redirect { .. } => (msg_type::REDIRECT, 40),
        }
    }

    fn parse(ty: u8, b: &'a [u8]) -> Result<Self, WireError> {
        let need = |n: usize| {
            if b.len() < n {
                Err(WireError::Truncated)
            } else {
                Ok(())
            }
        };
        Ok(match ty {
            msg_type::ROUTER_SOLICIT => NdpRepr::RouterSolicit {
                options: NdpOptions::parse(&b[8..])?,
            },
            msg_type::ROUTER_ADVERT => {
                need(16)?;
                NdpRepr::RouterAdvert {
                    cur_hop_limit: b[4],
                    managed: b[5] & 0x80 != 0,
                    other_config: b[5] & 0x40 != 0,
                    router_lifetime: u16::from_be_bytes([b[6], b[7]]),
                    reachable_time: be32(&b[8..12]),
                    retrans_timer: be32(&b[12..16]),
                    options: NdpOptions::parse(&b[16..])?,
                }
            }
            msg_type::NEIGHBOR_SOLICIT => {
                need(24)?;
                NdpRepr::NeighborSolicit {
                    target: read_ipv6(&b[8..24]),
                    options: NdpOptions::parse(&b[24..])?,
                }
            }
            msg_type::NEIGHBOR_ADVERT => {
                need(24)?;
                NdpRepr::NeighborAdvert {
                    router: b[4] & 0x80 != 0,
                    solicited: b[4] & 0x40 != 0,
                    override_: b[4] & 0x20 != 0,
                    target: read_ipv6(&b[8..24]),
                    options: NdpOptions::parse(&b[24..])?,
                }
            }
            _ => {
                need(40)?;
                NdpRepr::Redirect {
                    target: read_ipv6(&b[8..24]),
                    destination: read_ipv6(&b[24..40]),
                    options: NdpOptions::parse(&b[40..])?,
                }
            }
        })
    }

    /// Writes everything after the checksum field.
    fn emit_body(&self, b: &mut [u8]) -> Result<(), WireError> {
        let (_, fixed) = self.fixed();
        b[4..fixed].fill(0);
        match *self {
            NdpRepr::RouterSolicit { .. } => {}
            NdpRepr::RouterAdvert {
                cur_hop_limit,
                managed,
                other_config,
                router_lifetime,
                reachable_time,
                retrans_timer,
                ..
            } => {
                b[4] = cur_hop_limit;
                b[5] = (u8::from(managed) << 7) | (u8::from(other_config) << 6);
                b[6..8].copy_from_slice(&router_lifetime.to_be_bytes());
                b[8..12].copy_from_slice(&reachable_time.to_be_bytes());
                b[12..16].copy_from_slice(&retrans_timer.to_be_bytes());
            }
            NdpRepr::NeighborSolicit { target, .. } => {
                b[8..24].copy_from_slice(&target.octets());
            }
            NdpRepr::NeighborAdvert {
                router,
                solicited,
                override_,
                target,
                ..
            } => {
                b[4] = (u8::from(router) << 7)
                    | (u8::from(solicited) << 6)
                    | (u8::from(override_) << 5);
                b[8..24].copy_from_slice(&target.octets());
            }
            NdpRepr::Redirect {
                target,
                destination,
                ..
            } => {
                b[8..24].copy_from_slice(&target.octets());
                b[24..40].copy_from_slice(&destination.octets());
            }
        }
        self.options().emit(&mut b[fixed..])
    }
}

/// An ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6Repr<'a> {
    /// Echo request (type 128, code 0; RFC 4443 §4.1).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data.
        data: &'a [u8],
    },
    /// Echo reply (type 129, code 0; §4.2).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data.
        data: &'a [u8],
    },
    /// Destination unreachable (type 1; §3.1).
    DstUnreachable {
        /// Code (4: port unreachable).
        code: u8,
        /// As much of the invoking packet as fits the minimum MTU.
        data: &'a [u8],
    },
    /// Packet too big (type 2; §3.2).
    PacketTooBig {
        /// MTU of the next hop.
        mtu: u32,
        /// The invoking packet.
        data: &'a [u8],
    },
    /// Time exceeded (type 3; §3.3).
    TimeExceeded {
        /// Code.
        code: u8,
        /// The invoking packet.
        data: &'a [u8],
    },
    /// A neighbor discovery message.
    Ndp(NdpRepr<'a>),
    /// Any other message (including echo with a non-zero code).
    Other {
        /// Type.
        msg_type: u8,
        /// Code.
        code: u8,
        /// Bytes 4..8.
        rest: u32,
        /// Everything after the 8-byte header.
        data: &'a [u8],
    },
}

impl<'a> Icmpv6Repr<'a> {
    /// Verifies the checksum with the pseudo-header of `src`/`dst` and
    /// decodes the message. NDP messages with a non-zero code are
    /// `Malformed` (RFC 4861 §6.1, §7.1: discard).
    pub fn parse(
        packet: &Icmpv6Packet<&'a [u8]>,
        src: Ipv6Addr,
        dst: Ipv6Addr,
    ) -> Result<Self, WireError> {
        if !packet.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum);
        }
        let b: &'a [u8] = packet.buffer;
        let data = &b[HEADER_LEN..];
        let (ty, code) = (packet.msg_type(), packet.code());
        let echo = || {
            (
                u16::from_be_bytes([b[4], b[5]]),
                u16::from_be_bytes([b[6], b[7]]),
            )
        };
        Ok(match (ty, code) {
            (msg_type::ECHO_REQUEST, 0) => {
                let (ident, seq_no) = echo();
                Icmpv6Repr::EchoRequest {
                    ident,
                    seq_no,
                    data,
                }
            }
            (msg_type::ECHO_REPLY, 0) => {
                let (ident, seq_no) = echo();
                Icmpv6Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                }
            }
            (msg_type::DST_UNREACHABLE, code) => Icmpv6Repr::DstUnreachable { code, data },
            (msg_type::PACKET_TOO_BIG, 0) => Icmpv6Repr::PacketTooBig {
                mtu: packet.rest_of_header(),
                data,
            },
            (msg_type::TIME_EXCEEDED, code) => Icmpv6Repr::TimeExceeded { code, data },
            (msg_type::ROUTER_SOLICIT..=msg_type::REDIRECT, 0) => {
                Icmpv6Repr::Ndp(NdpRepr::parse(ty, b)?)
            }
            (msg_type::ROUTER_SOLICIT..=msg_type::REDIRECT, _) => {
                return Err(WireError::Malformed);
            }
            (msg_type, code) => Icmpv6Repr::Other {
                msg_type,
                code,
                rest: packet.rest_of_header(),
                data,
            },
        })
    }

    /// Bytes [`Icmpv6Repr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Icmpv6Repr::EchoRequest { data, .. }
            | Icmpv6Repr::EchoReply { data, .. }
            | Icmpv6Repr::DstUnreachable { data, .. }
            | Icmpv6Repr::PacketTooBig { data, .. }
            | Icmpv6Repr::TimeExceeded { data, .. }
            | Icmpv6Repr::Other { data, .. } => HEADER_LEN + data.len(),
            Icmpv6Repr::Ndp(ndp) => ndp.fixed().1 + ndp.options().buffer_len(),
        }
    }

    /// Writes the message into the first [`Icmpv6Repr::buffer_len`] bytes
    /// of `buf`, with the checksum for `src`/`dst`.
    pub fn emit(&self, src: Ipv6Addr, dst: Ipv6Addr, buf: &mut [u8]) -> Result<(), WireError> {
        let len = self.buffer_len();
        let b = buf.get_mut(..len).ok_or(WireError::Truncated)?;
        let mut simple = |ty: u8, code: u8, rest: u32, data: &[u8]| {
            b[0] = ty;
            b[1] = code;
            b[4..8].copy_from_slice(&rest.to_be_bytes());
            b[8..].copy_from_slice(data);
        };
        let echo = |ident: u16, seq: u16| (u32::from(ident) << 16) | u32::from(seq);
        match *self {
            Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => simple(msg_type::ECHO_REQUEST, 0, echo(ident, seq_no), data),
            Icmpv6Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => simple(msg_type::ECHO_REPLY, 0, echo(ident, seq_no), data),
            Icmpv6Repr::DstUnreachable { code, data } => {
                simple(msg_type::DST_UNREACHABLE, code, 0, data)
            }
            Icmpv6Repr::PacketTooBig { mtu, data } => {
                simple(msg_type::PACKET_TOO_BIG, 0, mtu, data)
            }
            Icmpv6Repr::TimeExceeded { code, data } => {
                simple(msg_type::TIME_EXCEEDED, code, 0, data)
            }
            Icmpv6Repr::Other {
                msg_type,
                code,
                rest,
                data,
            } => simple(msg_type, code, rest, data),
            Icmpv6Repr::Ndp(ndp) => {
                b[0] = ndp.fixed().0;
                b[1] = 0;
                ndp.emit_body(b)?;
            }
        }
        b[2..4].copy_from_slice(&[0, 0]);
        let mut sum = ipv6_pseudo_header(src, dst, protocol::ICMPV6, len);
        let c = sum.add_bytes(b).finish();
        b[2..4].copy_from_slice(&c.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ll(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn round_trip(r: Icmpv6Repr<'_>) {
        let (src, dst) = (ll("fe80::1"), ll("ff02::1"));
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(src, dst, &mut buf).unwrap();
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Icmpv6Repr::parse(&p, src, dst).unwrap(), r);
        assert_eq!(
            Icmpv6Repr::parse(&p, src, ll("ff02::2")),
            Err(WireError::BadChecksum)
        );
    }

    #[test]
    fn router_advert_with_every_option() {
        let dns = [ll("2001:db8::53"), ll("2001:db8::54")];
        let search = ["example.test".to_string(), "b.example.".to_string()];
        let opts = [
            NdpOption::SourceLinkAddr(MacAddr::PASST_DEFAULT),
            NdpOption::Mtu(65520),
            NdpOption::PrefixInfo(PrefixInfo {
                prefix_len: 64,
                on_link: true,
                autonomous: true,
                valid_lifetime: u32::MAX,
                preferred_lifetime: u32::MAX,
                prefix: ll("2001:db8::"),
            }),
            NdpOption::Rdnss {
                lifetime: 180,
                servers: AddrList::Slice(&dns),
            },
            NdpOption::Dnssl {
                lifetime: 180,
                domains: DomainList::Names(&search),
            },
        ];
        let ra = Icmpv6Repr::Ndp(NdpRepr::RouterAdvert {
            cur_hop_limit: 64,
            managed: true,
            other_config: true,
            router_lifetime: 9000,
            reachable_time: 0,
            retrans_timer: 0,
            options: NdpOptions::List(&opts),
        });
        // DNSSL: 8 + (14 + 11) = 33 -> 40 bytes.
        assert_eq!(ra.buffer_len(), 16 + 8 + 8 + 32 + 40 + 40);
        round_trip(ra);
        let mut buf = vec![0u8; ra.buffer_len()];
        ra.emit(ll("fe80::1"), ll("ff02::1"), &mut buf).unwrap();
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        let Icmpv6Repr::Ndp(parsed) = Icmpv6Repr::parse(&p, ll("fe80::1"), ll("ff02::1")).unwrap()
        else {
            panic!("not NDP")
        };
        let names: Vec<String> = parsed
            .options()
            .iter()
            .filter_map(|o| match o {
                NdpOption::Dnssl { domains, .. } => Some(domains),
                _ => None,
            })
            .flat_map(|d| d.names().map(|n| n.to_string()).collect::<Vec<_>>())
            .collect();
        assert_eq!(names, ["example.test", "b.example"]);
        assert_eq!(
            parsed.options().source_link_addr(),
            Some(MacAddr::PASST_DEFAULT)
        );
    }

    #[test]
    fn neighbor_messages() {
        let o = [NdpOption::TargetLinkAddr(MacAddr([2, 0, 0, 0, 0, 9]))];
        round_trip(Icmpv6Repr::Ndp(NdpRepr::NeighborAdvert {
            router: true,
            solicited: true,
            override_: false,
            target: ll("fe80::1"),
            options: NdpOptions::List(&o),
        }));
        round_trip(Icmpv6Repr::Ndp(NdpRepr::NeighborSolicit {
            target: ll("2001:db8::1"),
            options: NdpOptions::NONE,
        }));
        round_trip(Icmpv6Repr::Ndp(NdpRepr::RouterSolicit {
            options: NdpOptions::NONE,
        }));
        let unknown = [NdpOption::Unknown {
            kind: 4,
            data: &[0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
        }];
        round_trip(Icmpv6Repr::Ndp(NdpRepr::Redirect {
            target: ll("fe80::2"),
            destination: ll("2001:db8::99"),
            options: NdpOptions::List(&unknown),
        }));
        round_trip(Icmpv6Repr::PacketTooBig {
            mtu: 1280,
            data: &[0x60; 48],
        });
        round_trip(Icmpv6Repr::EchoRequest {
            ident: 3,
            seq_no: 4,
            data: b"ping",
        });
    }

    /// A hand-made NS (Linux-style, with a source link-layer option).
    fn ns_bytes(opt_len_units: u8) -> (Vec<u8>, Ipv6Addr, Ipv6Addr) {
        let src = ll("fe80::2");
        let dst = ll("ff02::1:ff00:1");
        let mut b = vec![135u8, 0, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&ll("fe80::1").octets());
        b.extend_from_slice(&[1, opt_len_units, 2, 0, 0, 0, 0, 2]);
        let mut sum = ipv6_pseudo_header(src, dst, 58, b.len());
        let c = sum.add_bytes(&b).finish();
        b[2..4].copy_from_slice(&c.to_be_bytes());
        (b, src, dst)
    }

    #[test]
    fn hand_made_ns() {
        let (b, src, dst) = ns_bytes(1);
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        let r = Icmpv6Repr::parse(&p, src, dst).unwrap();
        let Icmpv6Repr::Ndp(NdpRepr::NeighborSolicit { target, options }) = r else {
            panic!("{r:?}")
        };
        assert_eq!(target, ll("fe80::1"));
        assert_eq!(
            options.source_link_addr(),
            Some(MacAddr([2, 0, 0, 0, 0, 2]))
        );
        // Zero-length option: malformed (RFC 4861 §4.6).
        let (b, src, dst) = ns_bytes(0);
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Icmpv6Repr::parse(&p, src, dst), Err(WireError::Malformed));
        // Option longer than the message.
        let (b, src, dst) = ns_bytes(2);
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Icmpv6Repr::parse(&p, src, dst), Err(WireError::Truncated));
    }

    #[test]
    fn dnssl_validation() {
        assert!(check_dnssl_names(&[1, b'a', 0, 0, 0]).is_ok());
        assert_eq!(check_dnssl_names(&[64]), Err(WireError::Malformed));
        assert_eq!(check_dnssl_names(&[0xc0, 0x0c]), Err(WireError::Malformed));
        assert_eq!(
            check_dnssl_names(&[3, b'a', b'b']),
            Err(WireError::Malformed)
        );
        let long = ["a".repeat(64)];
        let o = NdpOption::Dnssl {
            lifetime: 1,
            domains: DomainList::Names(&long),
        };
        assert_eq!(o.emit(&mut [0u8; 128]), Err(WireError::Malformed));
        let none: [Ipv6Addr; 0] = [];
        let o = NdpOption::Rdnss {
            lifetime: 1,
            servers: AddrList::Slice(&none),
        };
        assert_eq!(o.emit(&mut [0u8; 128]), Err(WireError::Malformed));
    }

    #[test]
    fn ndp_code_must_be_zero() {
        let (mut b, src, dst) = ns_bytes(1);
        b[1] = 1;
        b[2] = 0;
        b[3] = 0;
        let mut sum = ipv6_pseudo_header(src, dst, 58, b.len());
        let c = sum.add_bytes(&b).finish();
        b[2..4].copy_from_slice(&c.to_be_bytes());
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Icmpv6Repr::parse(&p, src, dst), Err(WireError::Malformed));
    }
}
