//! DHCPv6 server for the guest (RFC 8415; DNS options per RFC 3646; Client
//! FQDN per RFC 4704).
//!
//! # What it owns
//!
//! Answering one client message, given as the UDP payload of a datagram to
//! port 547, with one reply payload, plus the reply's addressing: unicast to
//! the client's (link-local) source address and MAC, port
//! [`CLIENT_PORT`], from [`Ipv6Config::our_link_local`](crate::Ipv6Config)
//! port [`SERVER_PORT`]. The engine's dispatcher parses Ethernet/IPv6/UDP,
//! passes the source address in, and wraps the reply itself.
//!
//! # Behaviour
//!
//! Stateless, like upstream passt: the guest always gets
//! [`Ipv6Config::addr`](crate::Ipv6Config::addr).
//!
//! | client sends | server answers |
//! |---|---|
//! | SOLICIT | ADVERTISE with Preference 255 (the client need not wait for other servers, §18.2.1); REPLY with Rapid Commit if the client sent Rapid Commit (§18.3.1) |
//! | REQUEST, RENEW, REBIND | REPLY with the IAs |
//! | CONFIRM | REPLY, status Success if every address is in the guest's /64, NotOnLink otherwise; nothing if it lists no address (§18.3.3) |
//! | INFORMATION-REQUEST | REPLY with DNS servers, domain list, FQDN, no IA |
//! | RELEASE, DECLINE | REPLY with status Success (§18.3.7, §18.3.8); nothing to forget |
//!
//! Server DUID: DUID-LL (type 3, hardware type 1) from [`Config::our_mac`]
//! (RFC 8415 §11.4). The transaction id and the Client Identifier are echoed.
//!
//! Validation per RFC 8415 §16: a message without Client Identifier (except
//! INFORMATION-REQUEST) is discarded; REQUEST, RENEW, RELEASE and DECLINE
//! must name our Server Identifier; SOLICIT, CONFIRM and REBIND must not
//! carry one; an INFORMATION-REQUEST naming another server is discarded.
//!
//! ## Identity associations
//!
//! - IA_NA: the client's IAID is echoed with one IA Address, the configured
//!   address. Preferred and valid lifetimes are [`Config::dhcp_lease_time`]
//!   (the same lease as DHCPv4: one hour by default), T1 = 0.5 and T2 = 0.8
//!   of it as RFC 8415 §21.4 recommends; a lease of `u32::MAX` seconds or
//!   more is "infinity" (0xffffffff) for all four (§7.7). Finite lifetimes
//!   make the guest come back, so a restarted passt with another address is
//!   picked up within a lease. In RENEW and REBIND, other addresses the client
//!   still holds come back with lifetimes 0 (§18.3.4, §18.3.5) so it drops
//!   them.
//! - IA_TA and IA_PD are answered inside the IA, as RFC 8415 prescribes for
//!   IAs a server will not serve: status NoAddrsAvail (IA_TA) or
//!   NoPrefixAvail (IA_PD) in SOLICIT/REQUEST, NoBinding in RENEW/REBIND.
//!   Linux clients (dhclient, systemd-networkd, NetworkManager) then go on
//!   with the IA_NA they got, rather than restarting as they may when an IA
//!   is silently missing.
//!
//! ## Options
//!
//! 23 DNS servers ([`Ipv6Config::dns`](crate::Ipv6Config), omitted if
//! empty), 24 domain search list ([`Config::dns_search`], omitted if empty;
//! names uncompressed as RFC 8415 §10 requires), 39 Client FQDN when
//! [`Config::fqdn`] is set (flags N=1: the server performs no DNS updates).
//! These go in replies to SOLICIT, REQUEST, RENEW, REBIND and
//! INFORMATION-REQUEST. A reply larger than the link allows
//! (`max(mtu, 1280) - 48` bytes) or than the output buffer drops 24, then 39,
//! then 23.
//!
//! # What it must never do
//!
//! Panic or read out of bounds on guest input (requests are read by
//! [`request`], which checks every length; `dhcproto`'s own decoder is not
//! used on guest input because some of its option decoders underflow on short
//! options), keep per-client state, or touch anything but its arguments.
//!
//! # Allocation
//!
//! Replies are encoded with `dhcproto`, which allocates (option vectors, the
//! encoded bytes). That is acceptable: DHCPv6 is a handful of messages per
//! guest boot and renewal, not a per-packet hot path.

pub mod request;

use crate::addr::{MacAddr, ipv6_prefix};
use crate::config::{Config, Ipv6Config};
use crate::counters::DropReason;
use dhcproto::Encodable;
use dhcproto::Name;
use dhcproto::v6::{
    DhcpOption, DhcpOptions, IAAddr, IANA, IAPD, IATA, OptionCode, Status, StatusCode,
    UnknownOption,
};
use std::net::Ipv6Addr;

pub use request::{Dhcpv6ParseError, Dhcpv6Request, IaNa, code};

/// UDP port of servers and relays (RFC 8415 §7.2).
pub const SERVER_PORT: u16 = 547;
/// UDP port of clients.
pub const CLIENT_PORT: u16 = 546;
/// "Infinity" for lifetimes, T1 and T2 (RFC 8415 §7.7).
pub const INFINITY: u32 = u32::MAX;
/// IPv6 plus UDP header bytes around the DHCPv6 message.
pub const IPV6_UDP_OVERHEAD: usize = 40 + 8;
/// Minimum IPv6 link MTU (RFC 8200 §5).
pub const IPV6_MIN_MTU: usize = 1280;

/// DHCPv6 message types (RFC 8415 §7.3).
pub mod message_type {
    /// SOLICIT
    pub const SOLICIT: u8 = 1;
    /// ADVERTISE
    pub const ADVERTISE: u8 = 2;
    /// REQUEST
    pub const REQUEST: u8 = 3;
    /// CONFIRM
    pub const CONFIRM: u8 = 4;
    /// RENEW
    pub const RENEW: u8 = 5;
    /// REBIND
    pub const REBIND: u8 = 6;
    /// REPLY
    pub const REPLY: u8 = 7;
    /// RELEASE
    pub const RELEASE: u8 = 8;
    /// DECLINE
    pub const DECLINE: u8 = 9;
    /// INFORMATION-REQUEST
    pub const INFORMATION_REQUEST: u8 = 11;
}

/// What kind of reply was produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dhcpv6ReplyKind {
    /// ADVERTISE, answering SOLICIT.
    Advertise,
    /// REPLY, answering everything else (and SOLICIT with Rapid Commit).
    Reply,
}

/// A reply written into the caller's buffer, and where to send it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dhcpv6Reply {
    /// Bytes of `out` holding the reply (the UDP payload).
    pub len: usize,
    /// IPv6 destination: the request's source address.
    pub dst_ip: Ipv6Addr,
    /// Ethernet destination: the request's source MAC.
    pub dst_mac: MacAddr,
    /// IPv6 source: our link-local address.
    pub src_ip: Ipv6Addr,
    /// ADVERTISE or REPLY.
    pub kind: Dhcpv6ReplyKind,
    /// The message type answered.
    pub answers: u8,
}

/// Why a message got no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Dhcpv6IgnoreReason {
    /// DHCPv6 is switched off, or there is no IPv6 configuration.
    #[error("DHCPv6 service disabled")]
    Disabled,
    /// The message could not be read.
    #[error("malformed DHCPv6 message: {0}")]
    Malformed(Dhcpv6ParseError),
    /// A type a server does not answer (ADVERTISE, REPLY, relay messages...).
    #[error("message type {0} is not answered by a server")]
    UnexpectedMessageType(u8),
    /// No Client Identifier where RFC 8415 §16 requires one.
    #[error("message type {0} without Client Identifier")]
    MissingClientId(u8),
    /// No Server Identifier where RFC 8415 §16 requires one.
    #[error("message type {0} without Server Identifier")]
    MissingServerId(u8),
    /// A Server Identifier where RFC 8415 §16 forbids one.
    #[error("message type {0} must not carry a Server Identifier")]
    UnexpectedServerId(u8),
    /// The Server Identifier is another server's DUID.
    #[error("message type {0} is for another server")]
    OtherServer(u8),
    /// A CONFIRM listing no address: no reply (§18.3.3).
    #[error("CONFIRM without addresses")]
    NothingToConfirm,
    /// Even the essential options do not fit the link or the output buffer.
    #[error("reply does not fit in {limit} bytes")]
    ReplyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// `dhcproto` refused to encode an option.
    #[error("reply encoding failed")]
    EncodeFailed,
}

impl Dhcpv6IgnoreReason {
    /// The counter a caller should bump for this outcome.
    pub fn drop_reason(&self) -> DropReason {
        match self {
            Dhcpv6IgnoreReason::Disabled => DropReason::ServiceDisabled,
            _ => DropReason::DhcpIgnored,
        }
    }
}

/// Result of [`handle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dhcpv6Outcome {
    /// A reply is in `out[..reply.len]`.
    Reply(Dhcpv6Reply),
    /// No reply, and why.
    Ignored(Dhcpv6IgnoreReason),
}

/// Options dropped, in this order, when a reply is too large.
const DROP_ORDER: [u16; 3] = [code::DOMAIN_LIST, code::CLIENT_FQDN, code::DNS_SERVERS];

/// Our DUID: DUID-LL, hardware type 1 (Ethernet), our MAC (RFC 8415 §11.4).
pub fn server_duid(our_mac: MacAddr) -> [u8; 10] {
    let m = our_mac.0;
    [0, 3, 0, 1, m[0], m[1], m[2], m[3], m[4], m[5]]
}

/// Answers one client message.
///
/// `client_mac` and `client_ip` are the Ethernet and IPv6 sources of the
/// frame that carried `request` (the UDP payload); the reply goes back to
/// them. `out` should hold a full reply (a few hundred bytes; 1280 is
/// always enough for the essential options).
pub fn handle(
    config: &Config,
    client_mac: MacAddr,
    client_ip: Ipv6Addr,
    request: &[u8],
    out: &mut [u8],
) -> Dhcpv6Outcome {
    match respond(config, client_mac, client_ip, request, out) {
        Ok(reply) => Dhcpv6Outcome::Reply(reply),
        Err(reason) => Dhcpv6Outcome::Ignored(reason),
    }
}

/// What RFC 8415 §16 requires of the Server Identifier for a message type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ServerIdRule {
    /// Must be present and ours.
    Required,
    /// Must be absent.
    Forbidden,
    /// If present, must be ours.
    Optional,
}

fn respond(
    config: &Config,
    client_mac: MacAddr,
    client_ip: Ipv6Addr,
    bytes: &[u8],
    out: &mut [u8],
) -> Result<Dhcpv6Reply, Dhcpv6IgnoreReason> {
    use message_type as mt;
    let v6 = match &config.ipv6 {
        Some(v6) if config.services.dhcpv6 => v6,
        _ => return Err(Dhcpv6IgnoreReason::Disabled),
    };
    let req = Dhcpv6Request::parse(bytes).map_err(Dhcpv6IgnoreReason::Malformed)?;
    let t = req.msg_type;
    let rule = match t {
        mt::SOLICIT | mt::CONFIRM | mt::REBIND => ServerIdRule::Forbidden,
        mt::REQUEST | mt::RENEW | mt::RELEASE | mt::DECLINE => ServerIdRule::Required,
        mt::INFORMATION_REQUEST => ServerIdRule::Optional,
        other => return Err(Dhcpv6IgnoreReason::UnexpectedMessageType(other)),
    };
    if t != mt::INFORMATION_REQUEST && req.client_id().is_none() {
        return Err(Dhcpv6IgnoreReason::MissingClientId(t));
    }
    let duid = server_duid(config.our_mac);
    match (rule, req.server_id()) {
        (ServerIdRule::Required, None) => return Err(Dhcpv6IgnoreReason::MissingServerId(t)),
        (ServerIdRule::Forbidden, Some(_)) => {
            return Err(Dhcpv6IgnoreReason::UnexpectedServerId(t));
        }
        (ServerIdRule::Required | ServerIdRule::Optional, Some(id)) if id != duid => {
            return Err(Dhcpv6IgnoreReason::OtherServer(t));
        }
        _ => {}
    }

    let mut opts = DhcpOptions::new();
    opts.insert(DhcpOption::ServerId(duid.to_vec()));
    if let Some(client_id) = req.client_id() {
        opts.insert(DhcpOption::ClientId(client_id.to_vec()));
    }
    let mut kind = Dhcpv6ReplyKind::Reply;
    match t {
        mt::SOLICIT => {
            if req.rapid_commit() {
                // §18.3.1: commit at once, tell the client we did.
                opts.insert(DhcpOption::RapidCommit);
            } else {
                kind = Dhcpv6ReplyKind::Advertise;
                opts.insert(DhcpOption::Preference(255));
            }
            add_ias(config, v6, &req, IaContext::Assign, &mut opts);
            add_config_options(config, v6, &mut opts);
        }
        mt::REQUEST => {
            add_ias(config, v6, &req, IaContext::Assign, &mut opts);
            add_config_options(config, v6, &mut opts);
        }
        mt::RENEW | mt::REBIND => {
            add_ias(config, v6, &req, IaContext::Extend, &mut opts);
            add_config_options(config, v6, &mut opts);
        }
        mt::INFORMATION_REQUEST => add_config_options(config, v6, &mut opts),
        mt::CONFIRM => {
            let prefix = ipv6_prefix(v6.addr, 64);
            let mut addresses = req.all_ia_addresses().peekable();
            if addresses.peek().is_none() {
                return Err(Dhcpv6IgnoreReason::NothingToConfirm);
            }
            let on_link = addresses.all(|a| ipv6_prefix(a, 64) == prefix);
            opts.insert(if on_link {
                status(Status::Success, "all addresses are on link")
            } else {
                status(Status::NotOnLink, "addresses are not on this link")
            });
        }
        // RELEASE and DECLINE: nothing is bound, so nothing to do (§18.3.7,
        // §18.3.8 still want a Reply with Success).
        _ => opts.insert(status(Status::Success, "")),
    }

    let limit = out
        .len()
        .min(usize::from(config.mtu).max(IPV6_MIN_MTU) - IPV6_UDP_OVERHEAD);
    let reply_type = match kind {
        Dhcpv6ReplyKind::Advertise => mt::ADVERTISE,
        Dhcpv6ReplyKind::Reply => mt::REPLY,
    };
    let len = encode_within(reply_type, req.xid, &mut opts, limit, out)?;
    Ok(Dhcpv6Reply {
        len,
        dst_ip: client_ip,
        dst_mac: client_mac,
        src_ip: v6.our_link_local,
        kind,
        answers: t,
    })
}

fn status(status: Status, msg: &str) -> DhcpOption {
    DhcpOption::StatusCode(StatusCode {
        status,
        msg: msg.to_string(),
    })
}

/// Why IAs are being answered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IaContext {
    /// SOLICIT or REQUEST: new bindings.
    Assign,
    /// RENEW or REBIND: existing bindings.
    Extend,
}

/// Lifetime (preferred = valid), T1 and T2 for the IA_NA.
fn lifetimes(config: &Config) -> (u32, u32, u32) {
    match u32::try_from(config.dhcp_lease_time.as_secs()) {
        Ok(life) if life != INFINITY => {
            // RFC 8415 §21.4: T1 = 0.5, T2 = 0.8 of the preferred lifetime.
            let t2 = (u64::from(life) * 4 / 5) as u32;
            (life, life / 2, t2)
        }
        _ => (INFINITY, INFINITY, INFINITY),
    }
}

fn add_ias(
    config: &Config,
    v6: &Ipv6Config,
    req: &Dhcpv6Request<'_>,
    context: IaContext,
    opts: &mut DhcpOptions,
) {
    let (life, t1, t2) = lifetimes(config);
    for ia in req.ia_nas() {
        let mut ia_opts = DhcpOptions::new();
        if context == IaContext::Extend {
            // §18.3.4/§18.3.5: addresses not valid here go back with
            // lifetimes 0.
            for stale in ia.addresses().filter(|a| *a != v6.addr) {
                ia_opts.insert(DhcpOption::IAAddr(IAAddr {
                    addr: stale,
                    preferred_life: 0,
                    valid_life: 0,
                    opts: DhcpOptions::new(),
                }));
            }
        }
        // Inserted last so that it comes first: dhcproto places a new option
        // before the existing ones with the same code.
        ia_opts.insert(DhcpOption::IAAddr(IAAddr {
            addr: v6.addr,
            preferred_life: life,
            valid_life: life,
            opts: DhcpOptions::new(),
        }));
        opts.insert(DhcpOption::IANA(IANA {
            id: ia.iaid,
            t1,
            t2,
            opts: ia_opts,
        }));
    }
    let (ta_status, pd_status) = match context {
        IaContext::Assign => (Status::NoAddrsAvail, Status::NoPrefixAvail),
        IaContext::Extend => (Status::NoBinding, Status::NoBinding),
    };
    for id in req.ia_ta_ids() {
        let mut ia_opts = DhcpOptions::new();
        ia_opts.insert(status(ta_status, "no temporary addresses on this link"));
        opts.insert(DhcpOption::IATA(IATA { id, opts: ia_opts }));
    }
    for id in req.ia_pd_ids() {
        let mut ia_opts = DhcpOptions::new();
        ia_opts.insert(status(pd_status, "no prefix delegation on this link"));
        opts.insert(DhcpOption::IAPD(IAPD {
            id,
            t1: 0,
            t2: 0,
            opts: ia_opts,
        }));
    }
}

/// Appends `name` in uncompressed RFC 1035 §3.1 wire format (RFC 8415 §10).
/// Returns false, appending nothing, if it is not a valid domain name.
fn push_dns_name(name: &str, out: &mut Vec<u8>) -> bool {
    let Ok(parsed) = Name::from_ascii(name) else {
        return false;
    };
    if parsed.is_root() {
        return false;
    }
    for label in parsed.iter() {
        // Name guarantees 1..=63-byte labels and a 255-byte total.
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
    true
}

fn add_config_options(config: &Config, v6: &Ipv6Config, opts: &mut DhcpOptions) {
    if !v6.dns.is_empty() {
        opts.insert(DhcpOption::DomainNameServers(v6.dns.clone()));
    }
    let mut search = Vec::new();
    for domain in &config.dns_search {
        push_dns_name(domain, &mut search);
    }
    if !search.is_empty() {
        opts.insert(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::DomainSearchList,
            search,
        )));
    }
    if let Some(fqdn) = config.fqdn.as_deref() {
        // RFC 4704 §4.1: flags (N=1: the server does no DNS updates), then
        // the name in DNS wire format.
        let mut data = vec![0x04];
        if push_dns_name(fqdn, &mut data) {
            opts.insert(DhcpOption::Unknown(UnknownOption::new(
                OptionCode::ClientFqdn,
                data,
            )));
        }
    }
}

/// Writes the 4-byte header (RFC 8415 §8) and the options into `out`
/// within `limit` bytes, dropping options in [`DROP_ORDER`] until they fit.
fn encode_within(
    msg_type: u8,
    xid: [u8; 3],
    opts: &mut DhcpOptions,
    limit: usize,
    out: &mut [u8],
) -> Result<usize, Dhcpv6IgnoreReason> {
    let mut droppable = DROP_ORDER.iter();
    let encoded = loop {
        let encoded = opts
            .to_vec()
            .map_err(|_| Dhcpv6IgnoreReason::EncodeFailed)?;
        if 4 + encoded.len() <= limit {
            break encoded;
        }
        loop {
            match droppable.next() {
                Some(code) => {
                    if opts.remove(OptionCode::from(*code)).is_some() {
                        break;
                    }
                }
                None => return Err(Dhcpv6IgnoreReason::ReplyTooLarge { limit }),
            }
        }
    };
    let len = 4 + encoded.len();
    out[0] = msg_type;
    out[1..4].copy_from_slice(&xid);
    out[4..len].copy_from_slice(&encoded);
    Ok(len)
}

#[cfg(test)]
mod tests;
