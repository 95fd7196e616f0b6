//! DHCPv4 server for the guest (RFC 2131, options from RFC 2132, RFC 3397,
//! RFC 3442, RFC 4702, client identifier echo per RFC 6842).
//!
//! # What it owns
//!
//! Answering one client message, given as the UDP payload of a datagram to
//! port 67, with one reply payload for port 68, plus the addressing of that
//! reply. The engine's dispatcher parses and checks Ethernet/IPv4/UDP, calls
//! [`handle`], and wraps the reply in UDP/IPv4/Ethernet itself (source port
//! [`SERVER_PORT`], destination port [`CLIENT_PORT`]).
//!
//! # Behaviour
//!
//! Like upstream passt, the server is stateless: the guest always gets
//! [`Ipv4Config::addr`](crate::Ipv4Config::addr), whatever it asks for.
//!
//! | client sends | server answers |
//! |---|---|
//! | DISCOVER | OFFER of the configured address |
//! | REQUEST naming another server (option 54) | nothing: the client chose another server |
//! | REQUEST for the configured address (selecting, init-reboot, renewing, rebinding) | ACK |
//! | REQUEST for another address | NAK |
//! | REQUEST naming no address at all (no option 50, `ciaddr` 0) | nothing |
//! | INFORM | ACK without `yiaddr` and without lease times |
//! | RELEASE, DECLINE | nothing (there is no lease state to change) |
//! | BOOTP request (no option 53) | BOOTREPLY with the address and the configuration options, without the DHCP-only ones (51, 53, 54, 58, 59, 81, 119) |
//!
//! Requests are ignored, with a [`DhcpIgnoreReason`], when `op` is not
//! BOOTREQUEST, when `htype`/`hlen` are not Ethernet, when `chaddr` is not
//! the frame's source MAC, and when `giaddr` is set: there are no relays on
//! the point-to-point link to the guest.
//!
//! ## Options in OFFER and ACK
//!
//! 1 subnet mask, 3 router, 6 DNS servers (omitted if none), 12 host name
//! ([`Config::hostname`]), 15 domain name (first search domain), 26 interface
//! MTU, 51 lease time, 53 message type, 54 server identifier (the gateway
//! address), 58/59 T1/T2 (lease/2 and lease*7/8, RFC 2131 §4.4.5), 61 client
//! identifier echoed (RFC 6842), 81 client FQDN ([`Config::fqdn`], flags N=1
//! "the server does no DNS updates", in the client's encoding), 119 domain
//! search list (RFC 1035 names, compressed as RFC 3397 allows), and 121
//! classless static routes when the gateway is outside the guest's subnet: a
//! /32 route to the gateway through 0.0.0.0 (on-link) and a default route
//! through the gateway. RFC 3442 §3 says clients ignore option 3 when option
//! 121 is present, so the default route is repeated in 121; option 3 is still
//! sent for clients that do not know 121, as RFC 3442 §3 recommends.
//!
//! The parameter request list (55) is honoured loosely: every option is sent,
//! as most servers do. A lease time of `u32::MAX` seconds or more is sent as
//! infinite (0xffffffff) and T1/T2 are then left out.
//!
//! ## Size limit
//!
//! A reply never exceeds what the client accepts: the IP datagram size from
//! option 57 (RFC 2132 §9.10), taken as at least 576 bytes, the datagram every
//! client must accept (RFC 2131 §2), and at most the link MTU; 28 bytes are
//! kept for the IPv4 and UDP headers (the stricter reading of option 57). A
//! BOOTP reply stays within the length of the request, but at least 300
//! bytes. When the reply is too big, options are dropped in this order, least
//! important first: 119 domain search, 15 domain name, 81 FQDN, 12 host name,
//! 58 and 59 renewal times, 26 MTU, 6 DNS servers. The options the client
//! cannot work without (53, 54, 51, 1, 3, 121, 61) are never dropped; if they
//! alone do not fit, the request is ignored ([`DhcpIgnoreReason::ReplyTooLarge`]).
//! Replies are padded to 300 bytes, the minimum BOOTP message (RFC 1542 §2.1).
//!
//! ## Reply addressing (RFC 2131 §4.1)
//!
//! - NAK: always broadcast (255.255.255.255, ff:ff:ff:ff:ff:ff), as §4.1
//!   requires when `giaddr` is 0;
//! - `ciaddr` set (renewing/rebinding REQUEST, INFORM): unicast to `ciaddr`
//!   and the client's MAC;
//! - otherwise broadcast, whether or not the broadcast flag is set. §4.1
//!   prefers a unicast to `yiaddr` when the flag is clear but allows an IP
//!   broadcast when unicasting is not possible. On passt's point-to-point
//!   link the broadcast reaches the same single guest, and it also works for
//!   clients that cannot yet receive unicast but do not set the flag.
//!
//! # What it must never do
//!
//! Panic or read out of bounds on guest input (the request reader in
//! [`request`] checks every length; `dhcproto`'s own decoder is not used on
//! guest input because some of its option decoders assert on lengths), keep
//! per-client state, or touch anything but its arguments.
//!
//! # Allocation
//!
//! Options are encoded with `dhcproto`, which allocates (a `BTreeMap` of
//! options, a `Vec` for the encoded bytes). That is acceptable here: DHCP is
//! a few messages per guest boot and renewal, not a per-packet hot path.

pub mod request;

use crate::addr::{MacAddr, ipv4_mask};
use crate::config::{Config, Ipv4Config};
use crate::counters::DropReason;
use dhcproto::Encodable;
use dhcproto::Name;
use dhcproto::v4::{self, DhcpOption, DhcpOptions, OptionCode, UnknownOption};
use std::net::Ipv4Addr;

pub use request::{DhcpParseError, DhcpRequest, FLAG_BROADCAST, HEADER_LEN, MAGIC_COOKIE};

/// UDP port of the server (RFC 2131 §4.1).
pub const SERVER_PORT: u16 = 67;
/// UDP port of the client.
pub const CLIENT_PORT: u16 = 68;
/// IP datagram size every DHCP client must accept (RFC 2131 §2).
pub const MIN_CLIENT_DATAGRAM: usize = 576;
/// IPv4 plus UDP header bytes around the DHCP message.
pub const IPV4_UDP_OVERHEAD: usize = 20 + 8;
/// Minimum BOOTP message length; replies are padded to it (RFC 1542 §2.1).
pub const MIN_MESSAGE_LEN: usize = 300;
/// Lease time sent as "infinite" (RFC 2131 §3.3).
pub const INFINITE_LEASE: u32 = u32::MAX;

/// DHCP message types (RFC 2132 §9.6).
pub mod message_type {
    /// DHCPDISCOVER
    pub const DISCOVER: u8 = 1;
    /// DHCPOFFER
    pub const OFFER: u8 = 2;
    /// DHCPREQUEST
    pub const REQUEST: u8 = 3;
    /// DHCPDECLINE
    pub const DECLINE: u8 = 4;
    /// DHCPACK
    pub const ACK: u8 = 5;
    /// DHCPNAK
    pub const NAK: u8 = 6;
    /// DHCPRELEASE
    pub const RELEASE: u8 = 7;
    /// DHCPINFORM
    pub const INFORM: u8 = 8;
}

/// BOOTP `op` values (RFC 951).
const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
/// ARP hardware type for Ethernet (RFC 1700) and its address length.
const HTYPE_ETHERNET: u8 = 1;
const HLEN_ETHERNET: u8 = 6;

/// What kind of reply was produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DhcpReplyKind {
    /// DHCPOFFER, answering DISCOVER.
    Offer,
    /// DHCPACK, answering REQUEST.
    Ack,
    /// DHCPACK answering INFORM: configuration only, no address, no lease.
    InformAck,
    /// DHCPNAK, answering a REQUEST for an address that is not the guest's.
    Nak,
    /// BOOTREPLY to a plain BOOTP request.
    BootReply,
}

/// A reply written into the caller's buffer, and where to send it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DhcpReply {
    /// Bytes of `out` holding the reply (the UDP payload).
    pub len: usize,
    /// IPv4 destination.
    pub dst_ip: Ipv4Addr,
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// IPv4 source: the server identifier, i.e. the gateway address.
    pub src_ip: Ipv4Addr,
    /// What the reply is.
    pub kind: DhcpReplyKind,
}

/// Why a message got no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DhcpIgnoreReason {
    /// DHCP is switched off, or there is no IPv4 configuration.
    #[error("DHCPv4 service disabled")]
    Disabled,
    /// The message could not be read.
    #[error("malformed DHCP message: {0}")]
    Malformed(DhcpParseError),
    /// `op` is not BOOTREQUEST.
    #[error("op {0} is not BOOTREQUEST")]
    NotBootRequest(u8),
    /// `htype`/`hlen` are not Ethernet's.
    #[error("hardware type {htype}, length {hlen} is not Ethernet")]
    NotEthernet {
        /// `htype`
        htype: u8,
        /// `hlen`
        hlen: u8,
    },
    /// `chaddr` is not the source MAC of the frame.
    #[error("chaddr {chaddr} differs from the frame's source {frame_source}")]
    ChaddrMismatch {
        /// Address in `chaddr`.
        chaddr: MacAddr,
        /// Source MAC of the frame.
        frame_source: MacAddr,
    },
    /// `giaddr` is set: relayed messages are not served.
    #[error("relayed message (giaddr {0})")]
    Relayed(Ipv4Addr),
    /// A REQUEST naming another server: the client chose that one.
    #[error("REQUEST for server {0}, not us")]
    OtherServer(Ipv4Addr),
    /// A REQUEST that names no address (no option 50, `ciaddr` 0).
    #[error("REQUEST without requested address or ciaddr")]
    NoRequestedAddress,
    /// DHCPRELEASE: no state to release, no reply defined.
    #[error("DHCPRELEASE (no reply)")]
    Release,
    /// DHCPDECLINE: no other address to offer, no reply defined.
    #[error("DHCPDECLINE (no reply)")]
    Decline,
    /// A message type a server does not answer (OFFER, ACK, lease queries...).
    #[error("message type {0} is not answered by a server")]
    UnexpectedMessageType(u8),
    /// Even the essential options do not fit the client's size limit or the
    /// output buffer.
    #[error("reply does not fit in {limit} bytes")]
    ReplyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// `dhcproto` refused to encode an option.
    #[error("reply encoding failed")]
    EncodeFailed,
}

impl DhcpIgnoreReason {
    /// The counter a caller should bump for this outcome.
    pub fn drop_reason(&self) -> DropReason {
        match self {
            DhcpIgnoreReason::Disabled => DropReason::ServiceDisabled,
            _ => DropReason::DhcpIgnored,
        }
    }
}

/// Result of [`handle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DhcpOutcome {
    /// A reply is in `out[..reply.len]`.
    Reply(DhcpReply),
    /// No reply, and why.
    Ignored(DhcpIgnoreReason),
}

/// Options dropped, in this order, when a reply exceeds the size limit.
const DROP_ORDER: [OptionCode; 8] = [
    OptionCode::DomainSearch,
    OptionCode::DomainName,
    OptionCode::ClientFQDN,
    OptionCode::Hostname,
    OptionCode::Renewal,
    OptionCode::Rebinding,
    OptionCode::InterfaceMtu,
    OptionCode::DomainNameServer,
];

/// Answers one client message.
///
/// `client_mac` is the Ethernet source of the frame that carried `request`
/// (the UDP payload). The reply is written to `out`, which should hold at
/// least [`MIN_CLIENT_DATAGRAM`] bytes; a smaller buffer limits the reply.
pub fn handle(config: &Config, client_mac: MacAddr, request: &[u8], out: &mut [u8]) -> DhcpOutcome {
    match respond(config, client_mac, request, out) {
        Ok(reply) => DhcpOutcome::Reply(reply),
        Err(reason) => DhcpOutcome::Ignored(reason),
    }
}

fn respond(
    config: &Config,
    client_mac: MacAddr,
    bytes: &[u8],
    out: &mut [u8],
) -> Result<DhcpReply, DhcpIgnoreReason> {
    let v4 = match &config.ipv4 {
        Some(v4) if config.services.dhcp => v4,
        _ => return Err(DhcpIgnoreReason::Disabled),
    };
    let req = DhcpRequest::parse(bytes).map_err(DhcpIgnoreReason::Malformed)?;
    if req.op != BOOTREQUEST {
        return Err(DhcpIgnoreReason::NotBootRequest(req.op));
    }
    if req.htype != HTYPE_ETHERNET || req.hlen != HLEN_ETHERNET {
        return Err(DhcpIgnoreReason::NotEthernet {
            htype: req.htype,
            hlen: req.hlen,
        });
    }
    let mut chaddr = [0; 6];
    chaddr.copy_from_slice(&req.chaddr[..6]);
    if chaddr != client_mac.0 {
        return Err(DhcpIgnoreReason::ChaddrMismatch {
            chaddr: MacAddr(chaddr),
            frame_source: client_mac,
        });
    }
    if req.giaddr != Ipv4Addr::UNSPECIFIED {
        return Err(DhcpIgnoreReason::Relayed(req.giaddr));
    }

    let server_id = v4.gateway;
    let kind = match req.message_type {
        None => DhcpReplyKind::BootReply,
        Some(message_type::DISCOVER) => DhcpReplyKind::Offer,
        Some(message_type::REQUEST) => request_verdict(&req, v4)?,
        Some(message_type::INFORM) => DhcpReplyKind::InformAck,
        Some(message_type::RELEASE) => return Err(DhcpIgnoreReason::Release),
        Some(message_type::DECLINE) => return Err(DhcpIgnoreReason::Decline),
        Some(other) => return Err(DhcpIgnoreReason::UnexpectedMessageType(other)),
    };

    // RFC 2131 §4.3.1 table 3 for the header fields of each reply.
    let yiaddr = match kind {
        DhcpReplyKind::Offer | DhcpReplyKind::Ack | DhcpReplyKind::BootReply => v4.addr,
        DhcpReplyKind::InformAck | DhcpReplyKind::Nak => Ipv4Addr::UNSPECIFIED,
    };
    let ciaddr = match kind {
        DhcpReplyKind::Ack | DhcpReplyKind::InformAck | DhcpReplyKind::BootReply => req.ciaddr,
        DhcpReplyKind::Offer | DhcpReplyKind::Nak => Ipv4Addr::UNSPECIFIED,
    };

    let (dst_ip, dst_mac) = if kind == DhcpReplyKind::Nak || req.ciaddr.is_unspecified() {
        (Ipv4Addr::BROADCAST, MacAddr::BROADCAST)
    } else {
        (req.ciaddr, client_mac)
    };

    let limit = size_limit(config, &req, bytes.len(), out.len());
    let mut options = reply_options(config, v4, &req, kind);
    let header = ReplyHeader {
        xid: req.xid,
        flags: req.flags & FLAG_BROADCAST,
        ciaddr,
        yiaddr,
        chaddr: req.chaddr,
    };
    let len = encode_within(&header, &mut options, limit, out)?;
    Ok(DhcpReply {
        len,
        dst_ip,
        dst_mac,
        src_ip: server_id,
        kind,
    })
}

/// RFC 2131 §4.3.2: ACK, NAK or silence for a DHCPREQUEST.
fn request_verdict(
    req: &DhcpRequest<'_>,
    v4: &Ipv4Config,
) -> Result<DhcpReplyKind, DhcpIgnoreReason> {
    // SELECTING: option 54 names the chosen server. If it is not us the
    // client declined our offer: stay silent.
    match req.server_id {
        Some(server) if server != v4.gateway => {
            return Err(DhcpIgnoreReason::OtherServer(server));
        }
        _ => {}
    }
    // SELECTING and INIT-REBOOT carry option 50; RENEWING and REBINDING
    // carry the address in `ciaddr` instead.
    let wanted = match (req.requested_ip, req.ciaddr) {
        (Some(ip), _) => ip,
        (None, ip) if !ip.is_unspecified() => ip,
        (None, _) => return Err(DhcpIgnoreReason::NoRequestedAddress),
    };
    Ok(if wanted == v4.addr {
        DhcpReplyKind::Ack
    } else {
        DhcpReplyKind::Nak
    })
}

/// The largest reply, in bytes of DHCP message, this client accepts.
fn size_limit(config: &Config, req: &DhcpRequest<'_>, request_len: usize, out_len: usize) -> usize {
    let link = usize::from(config.mtu).max(MIN_CLIENT_DATAGRAM) - IPV4_UDP_OVERHEAD;
    let client = if req.message_type.is_none() {
        // BOOTP clients may have a fixed 300-byte buffer (64-byte vendor
        // area): do not send more than they did.
        request_len.max(MIN_MESSAGE_LEN)
    } else {
        req.max_message_size
            .map_or(MIN_CLIENT_DATAGRAM, usize::from)
            .max(MIN_CLIENT_DATAGRAM)
            - IPV4_UDP_OVERHEAD
    };
    client.min(link).min(out_len)
}

/// Lease time, T1 and T2 in seconds; T1/T2 are `None` for infinite leases.
fn lease_times(config: &Config) -> (u32, Option<(u32, u32)>) {
    let secs = config.dhcp_lease_time.as_secs();
    match u32::try_from(secs) {
        Ok(lease) if lease != INFINITE_LEASE => {
            // RFC 2131 §4.4.5: T1 = 0.5 * lease, T2 = 0.875 * lease.
            let t2 = (u64::from(lease) * 7 / 8) as u32;
            (lease, Some((lease / 2, t2)))
        }
        _ => (INFINITE_LEASE, None),
    }
}

fn parse_name(name: &str) -> Option<Name> {
    let mut parsed = Name::from_ascii(name).ok()?;
    parsed.set_fqdn(true);
    (!parsed.is_root()).then_some(parsed)
}

/// RFC 3442 §3 encoding of option 121: for each route, the prefix length,
/// the significant octets of the destination, then the router.
fn classless_routes(v4: &Ipv4Config) -> Vec<u8> {
    let gw = v4.gateway.octets();
    let mut data = Vec::with_capacity(14);
    // gateway/32 via 0.0.0.0: the gateway is on-link.
    data.push(32);
    data.extend_from_slice(&gw);
    data.extend_from_slice(&[0, 0, 0, 0]);
    // 0.0.0.0/0 via the gateway: no destination octets.
    data.push(0);
    data.extend_from_slice(&gw);
    data
}

fn reply_options(
    config: &Config,
    v4: &Ipv4Config,
    req: &DhcpRequest<'_>,
    kind: DhcpReplyKind,
) -> DhcpOptions {
    let mut opts = DhcpOptions::new();
    if let Some(client_id) = req.client_id {
        // RFC 6842 §3: the server MUST echo option 61.
        opts.insert(DhcpOption::ClientIdentifier(client_id.to_vec()));
    }
    let message_type = match kind {
        DhcpReplyKind::Offer => Some(v4::MessageType::Offer),
        DhcpReplyKind::Ack | DhcpReplyKind::InformAck => Some(v4::MessageType::Ack),
        DhcpReplyKind::Nak => Some(v4::MessageType::Nak),
        DhcpReplyKind::BootReply => None,
    };
    if let Some(t) = message_type {
        opts.insert(DhcpOption::MessageType(t));
        opts.insert(DhcpOption::ServerIdentifier(v4.gateway));
    }
    if kind == DhcpReplyKind::Nak {
        // RFC 2131 table 3: a NAK carries only 53, 54, 56 and 61.
        opts.insert(DhcpOption::Message(
            "requested address is not the one assigned to this client".to_string(),
        ));
        return opts;
    }

    if matches!(kind, DhcpReplyKind::Offer | DhcpReplyKind::Ack) {
        let (lease, renew) = lease_times(config);
        opts.insert(DhcpOption::AddressLeaseTime(lease));
        if let Some((t1, t2)) = renew {
            opts.insert(DhcpOption::Renewal(t1));
            opts.insert(DhcpOption::Rebinding(t2));
        }
    }

    opts.insert(DhcpOption::SubnetMask(ipv4_mask(v4.prefix_len)));
    opts.insert(DhcpOption::Router(vec![v4.gateway]));
    if config.ipv4_gateway_off_subnet() {
        opts.insert(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::ClasslessStaticRoute,
            classless_routes(v4),
        )));
    }
    if !v4.dns.is_empty() {
        opts.insert(DhcpOption::DomainNameServer(v4.dns.clone()));
    }
    // RFC 2132 §5.1: the MTU option's minimum is 68, which Config enforces.
    if config.announce_mtu {
        opts.insert(DhcpOption::InterfaceMtu(config.mtu));
    }
    if let Some(hostname) = config.hostname.as_deref().filter(|h| !h.is_empty()) {
        opts.insert(DhcpOption::Hostname(hostname.to_string()));
    }
    if let Some(domain) = config.dns_search.first().filter(|d| !d.is_empty()) {
        opts.insert(DhcpOption::DomainName(
            domain.trim_end_matches('.').to_string(),
        ));
    }
    let search: Vec<Name> = config
        .dns_search
        .iter()
        .filter_map(|d| parse_name(d))
        .collect();
    if !search.is_empty() && kind != DhcpReplyKind::BootReply {
        opts.insert(DhcpOption::DomainSearch(search));
    }
    let fqdn = config.fqdn.as_deref().and_then(parse_name);
    if let Some(fqdn) = fqdn.filter(|_| kind != DhcpReplyKind::BootReply) {
        // RFC 4702 §2.1: N=1 (the server performs no DNS updates, so S=0),
        // E mirrors the client's encoding, canonical wire format by default.
        let canonical = req.fqdn_flags.is_none_or(|f| f & 0x04 != 0);
        let flags = v4::fqdn::FqdnFlags::new(0).set_n(true).set_e(canonical);
        let mut option = v4::fqdn::ClientFQDN::new(flags, fqdn);
        // RFC 4702 §2.2: servers send 255 in both RCODE fields.
        option.set_r1(255).set_r2(255);
        opts.insert(DhcpOption::ClientFQDN(option));
    }
    opts
}

/// Fixed fields of a reply (RFC 2131 §2 figure 1, values per §4.3.1 table 3).
struct ReplyHeader {
    xid: u32,
    flags: u16,
    ciaddr: Ipv4Addr,
    yiaddr: Ipv4Addr,
    chaddr: [u8; 16],
}

impl ReplyHeader {
    /// Writes the 236-byte header and the magic cookie into `out`, which
    /// holds at least 240 bytes. Returns the offset of the options.
    fn emit(&self, out: &mut [u8]) -> usize {
        let header = &mut out[..HEADER_LEN];
        header.fill(0);
        header[0] = BOOTREPLY;
        header[1] = HTYPE_ETHERNET;
        header[2] = HLEN_ETHERNET;
        // hops 0; xid copied; secs 0.
        header[4..8].copy_from_slice(&self.xid.to_be_bytes());
        header[10..12].copy_from_slice(&self.flags.to_be_bytes());
        header[12..16].copy_from_slice(&self.ciaddr.octets());
        header[16..20].copy_from_slice(&self.yiaddr.octets());
        // siaddr 0 (no next boot server), giaddr 0 (no relay).
        header[28..44].copy_from_slice(&self.chaddr);
        // sname and file empty. The magic cookie is sent even to BOOTP
        // clients that sent none: the RFC 1497 vendor extensions it introduces
        // are the only way to tell them the mask, router and name servers.
        out[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&MAGIC_COOKIE);
        HEADER_LEN + 4
    }
}

/// Encodes header and options into `out` within `limit` bytes, dropping
/// options in [`DROP_ORDER`] until they fit, and pads to 300 bytes.
fn encode_within(
    header: &ReplyHeader,
    options: &mut DhcpOptions,
    limit: usize,
    out: &mut [u8],
) -> Result<usize, DhcpIgnoreReason> {
    let options_at = HEADER_LEN + MAGIC_COOKIE.len();
    if limit < options_at || out.len() < options_at {
        return Err(DhcpIgnoreReason::ReplyTooLarge { limit });
    }
    let mut droppable = DROP_ORDER.iter();
    let encoded = loop {
        let encoded = options
            .to_vec()
            .map_err(|_| DhcpIgnoreReason::EncodeFailed)?;
        if options_at + encoded.len() <= limit {
            break encoded;
        }
        // Drop the next droppable option that is present.
        loop {
            match droppable.next() {
                Some(code) => {
                    if options.remove(*code).is_some() {
                        break;
                    }
                }
                None => return Err(DhcpIgnoreReason::ReplyTooLarge { limit }),
            }
        }
    };
    let at = header.emit(out);
    let end = at + encoded.len();
    out[at..end].copy_from_slice(&encoded);
    let len = end.max(MIN_MESSAGE_LEN.min(limit));
    out[end..len].fill(0);
    Ok(len)
}

#[cfg(test)]
mod tests;
