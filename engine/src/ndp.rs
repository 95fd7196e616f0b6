//! The built-in NDP responder (RFC 4861): neighbor advertisements for
//! every address but the guest's, and router advertisements (solicited and
//! periodic) describing the guest's IPv6 network.
//!
//! This module owns the decisions (what to answer, with which flags and
//! options) and the RA timer. It is a plain state machine: time comes in
//! as [`Instant`], replies go out as [`NdpReply`] values that the
//! dispatcher turns into frames with [`NdpReply::build`]. It never reads a
//! clock, never allocates per message and never sends anything itself.
//!
//! # Neighbor solicitations
//!
//! As with ARP, everything that is not the guest is "us": an NS for any
//! target gets an NA with our MAC, except:
//! - NS for the guest's configured address (`config.ipv6.addr`);
//! - NS whose target is its own source address (the guest asking about an
//!   address it already uses);
//! - every DAD probe (source `::`, RFC 4862 §5.4.2). A DAD NS is the guest
//!   checking that an address it is about to assign is free: its global
//!   address, its link-local (derived from a MAC we cannot know in advance)
//!   or a temporary address (RFC 8981). Answering any of them would make
//!   the guest's DAD fail and leave it without that address, so DAD probes
//!   are never answered, whatever their target;
//! - messages that fail RFC 4861 §7.1.1 validation (hop limit not 255,
//!   multicast target).
//!
//! The NA (§7.2.4) comes from the target address itself, goes to the
//! soliciting address (and to the MAC of its source link-layer address
//! option, or the frame's source MAC), with the Router, Solicited and
//! Override flags set and a target link-layer address option with our MAC.
//! The Router flag is set for every target: any of them may be the default
//! router the guest uses, and a cleared flag would remove it from the
//! guest's default router list (§7.2.5).
//!
//! # Router advertisements
//!
//! An RS (validated per §6.1.1) gets an RA sent to the soliciting address,
//! or to all-nodes (ff02::1) when the RS came from `::`; it is sent at once
//! (the random delay of §6.2.6 is a multicast-collision measure that a
//! single-router point-to-point link does not need). Unsolicited RAs go to
//! ff02::1 every `config.ra_interval` (clamped to at least 4 s, the lower
//! bound of MaxRtrAdvInterval in §6.2.1); the first
//! [`MAX_INITIAL_RTR_ADVERTISEMENTS`] are sent at most
//! [`MAX_INITIAL_RTR_ADVERT_INTERVAL`] apart (§6.2.4). The timer starts
//! when the guest is first seen ([`NdpResponder::guest_seen`]), with an RA
//! due immediately.
//!
//! The RA itself (from `config.ipv6.router_address()`, hop limit 255):
//! - cur hop limit 64;
//! - M and O flags set when the DHCPv6 service is on;
//! - router lifetime from `config.ra_router_lifetime`, capped at 65535 s:
//!   RFC 8319 lifted RFC 4861's 9000 s cap on AdvDefaultLifetime to the
//!   field's maximum;
//! - reachable time and retrans timer 0 (unspecified);
//! - options: source link-layer address (our MAC), MTU (`config.mtu`),
//!   prefix information for the /64 containing `config.ipv6.addr` with L
//!   and A set and the RFC 4861 §6.2.1 default lifetimes (valid 30 days,
//!   preferred 7 days; refreshed by every RA), RDNSS with `config.ipv6.dns`
//!   (at most [`MAX_RDNSS_SERVERS`], omitted if empty) and DNSSL with
//!   `config.dns_search` (omitted if empty), both with a lifetime of three
//!   RA intervals (RFC 8106 §5.1 and §5.2 recommend at least
//!   3 * MaxRtrAdvInterval).
//!
//! `config.services.ndp` switches everything off, `config.services.ra`
//! the router advertisements only.

use crate::MacAddr;
use crate::addr::{ipv6_is_link_local, ipv6_prefix};
use crate::config::Config;
use crate::counters::DropReason;
use crate::time::Instant;
use crate::wire::{
    self, AddrList, DomainList, Icmpv6Repr, Ipv6Repr, NdpOption, NdpOptions, NdpRepr, PrefixInfo,
    WireError,
};
use core::time::Duration;
use std::net::Ipv6Addr;

/// Hop limit of every NDP message, sent and required (RFC 4861 §6.1, §7.1).
pub const NDP_HOP_LIMIT: u8 = 255;
/// Cur hop limit announced in RAs.
pub const RA_CUR_HOP_LIMIT: u8 = 64;
/// Lower bound of the unsolicited RA interval (RFC 4861 §6.2.1).
pub const MIN_RA_INTERVAL: Duration = Duration::from_secs(4);
/// Initial RAs sent at the faster pace (RFC 4861 §10).
pub const MAX_INITIAL_RTR_ADVERTISEMENTS: u32 = 3;
/// Their maximum spacing (RFC 4861 §10).
pub const MAX_INITIAL_RTR_ADVERT_INTERVAL: Duration = Duration::from_secs(16);
/// Prefix valid lifetime (AdvValidLifetime default, RFC 4861 §6.2.1).
pub const PREFIX_VALID_LIFETIME: u32 = 30 * 24 * 3600;
/// Prefix preferred lifetime (AdvPreferredLifetime default).
pub const PREFIX_PREFERRED_LIFETIME: u32 = 7 * 24 * 3600;
/// Most DNS servers put in one RDNSS option.
pub const MAX_RDNSS_SERVERS: usize = 16;

/// The all-nodes multicast group ff02::1.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// An NDP message to send to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdpReply {
    /// A solicited neighbor advertisement for `target`.
    NeighborAdvert {
        /// Ethernet destination.
        dst_mac: MacAddr,
        /// IPv6 destination (the soliciting address).
        dst_ip: Ipv6Addr,
        /// The address we answer for (also the source).
        target: Ipv6Addr,
    },
    /// A router advertisement (solicited or periodic).
    RouterAdvert {
        /// Ethernet destination.
        dst_mac: MacAddr,
        /// IPv6 destination (soliciting address or ff02::1).
        dst_ip: Ipv6Addr,
    },
}

impl NdpReply {
    /// Builds the message and hands it, with the IPv6 header fields and
    /// MACs, to `f`. The options live on this stack frame.
    fn with_message<R>(
        &self,
        config: &Config,
        f: impl FnOnce(MacAddr, &Ipv6Repr, &Icmpv6Repr<'_>) -> R,
    ) -> Option<R> {
        let v6 = config.ipv6.as_ref()?;
        let ip = |src: Ipv6Addr, dst: Ipv6Addr| Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: wire::protocol::ICMPV6,
            hop_limit: NDP_HOP_LIMIT,
            traffic_class: 0,
            flow_label: 0,
            ext_headers_len: 0,
            payload_len: 0,
        };
        match *self {
            NdpReply::NeighborAdvert {
                dst_mac,
                dst_ip,
                target,
            } => {
                let opts = [NdpOption::TargetLinkAddr(config.our_mac)];
                let na = Icmpv6Repr::Ndp(NdpRepr::NeighborAdvert {
                    router: true,
                    solicited: true,
                    override_: true,
                    target,
                    options: NdpOptions::List(&opts),
                });
                Some(f(dst_mac, &ip(target, dst_ip), &na))
            }
            NdpReply::RouterAdvert { dst_mac, dst_ip } => {
                let interval = effective_interval(config);
                let dns_lifetime =
                    u32::try_from(interval.as_secs().saturating_mul(3)).unwrap_or(u32::MAX);
                let servers = &v6.dns[..v6.dns.len().min(MAX_RDNSS_SERVERS)];
                let mut opts = [NdpOption::Mtu(0); 5];
                let mut n = 0;
                let mut push = |o| {
                    opts[n] = o;
                    n += 1;
                };
                push(NdpOption::SourceLinkAddr(config.our_mac));
                if config.announce_mtu {
                    push(NdpOption::Mtu(u32::from(config.mtu)));
                }
                push(NdpOption::PrefixInfo(PrefixInfo {
                    prefix_len: 64,
                    on_link: true,
                    autonomous: true,
                    valid_lifetime: PREFIX_VALID_LIFETIME,
                    preferred_lifetime: PREFIX_PREFERRED_LIFETIME,
                    prefix: ipv6_prefix(v6.addr, 64),
                }));
                if !servers.is_empty() {
                    push(NdpOption::Rdnss {
                        lifetime: dns_lifetime,
                        servers: AddrList::Slice(servers),
                    });
                }
                if !config.dns_search.is_empty() {
                    push(NdpOption::Dnssl {
                        lifetime: dns_lifetime,
                        domains: DomainList::Names(&config.dns_search),
                    });
                }
                let dhcpv6 = config.services.dhcpv6;
                let ra = Icmpv6Repr::Ndp(NdpRepr::RouterAdvert {
                    cur_hop_limit: RA_CUR_HOP_LIMIT,
                    managed: dhcpv6,
                    other_config: dhcpv6,
                    router_lifetime: u16::try_from(config.ra_router_lifetime.as_secs())
                        .unwrap_or(u16::MAX),
                    reachable_time: 0,
                    retrans_timer: 0,
                    options: NdpOptions::List(&opts[..n]),
                });
                Some(f(dst_mac, &ip(v6.router_address(), dst_ip), &ra))
            }
        }
    }

    /// Length of the frame [`NdpReply::build`] writes (0 without IPv6).
    pub fn frame_len(&self, config: &Config) -> usize {
        self.with_message(config, |_, _, icmp| {
            wire::IPV6_HEADERS_LEN + icmp.buffer_len()
        })
        .unwrap_or(0)
    }

    /// Writes the frame into `buf`; returns its length. `Unsupported`
    /// when IPv6 is not configured.
    pub fn build(&self, config: &Config, buf: &mut [u8]) -> Result<usize, WireError> {
        self.with_message(config, |dst_mac, ip, icmp| {
            wire::build_icmpv6(buf, config.our_mac, dst_mac, ip, icmp)
        })
        .unwrap_or(Err(WireError::Unsupported))
    }
}

/// What to do with an NDP message from the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdpOutcome {
    /// Send this message.
    Reply(NdpReply),
    /// Send nothing; count the drop under this reason.
    Ignore(DropReason),
}

/// The unsolicited-RA interval in force.
fn effective_interval(config: &Config) -> Duration {
    config.ra_interval.max(MIN_RA_INTERVAL)
}

/// NDP service state: the periodic RA timer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NdpResponder {
    next_ra: Option<Instant>,
    unsolicited_sent: u32,
}

impl NdpResponder {
    /// A responder with no RA scheduled yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn ra_enabled(config: &Config) -> bool {
        config.ipv6.is_some() && config.services.ndp && config.services.ra
    }

    /// The guest showed up (any frame from it): starts periodic RAs, the
    /// first one due at `now`. Later calls do nothing.
    pub fn guest_seen(&mut self, config: &Config, now: Instant) {
        if self.next_ra.is_none() && self.unsolicited_sent == 0 && Self::ra_enabled(config) {
            self.next_ra = Some(now);
        }
    }

    /// When [`NdpResponder::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_ra
    }

    /// Produces the periodic RA if it is due, and schedules the next one.
    pub fn handle_timeout(&mut self, config: &Config, now: Instant) -> Option<NdpReply> {
        let due = self.next_ra?;
        if now < due {
            return None;
        }
        if !Self::ra_enabled(config) {
            self.next_ra = None;
            return None;
        }
        self.unsolicited_sent = self.unsolicited_sent.saturating_add(1);
        let mut interval = effective_interval(config);
        if self.unsolicited_sent < MAX_INITIAL_RTR_ADVERTISEMENTS {
            interval = interval.min(MAX_INITIAL_RTR_ADVERT_INTERVAL);
        }
        self.next_ra = Some(now + interval);
        Some(NdpReply::RouterAdvert {
            dst_mac: MacAddr::for_ipv6_multicast(ALL_NODES),
            dst_ip: ALL_NODES,
        })
    }

    /// Decides the answer to an NDP message from the guest. `eth_src` is
    /// the frame's source MAC, `ip` its IPv6 header.
    pub fn handle(
        &mut self,
        config: &Config,
        now: Instant,
        eth_src: MacAddr,
        ip: &Ipv6Repr,
        ndp: &NdpRepr<'_>,
    ) -> NdpOutcome {
        let Some(v6) = &config.ipv6 else {
            return NdpOutcome::Ignore(DropReason::ServiceDisabled);
        };
        if !config.services.ndp {
            return NdpOutcome::Ignore(DropReason::ServiceDisabled);
        }
        self.guest_seen(config, now);
        // RFC 4861 §6.1.1, §7.1.1: hop limit 255 proves on-link origin.
        if ip.hop_limit != NDP_HOP_LIMIT {
            return NdpOutcome::Ignore(DropReason::NdpIgnored);
        }
        let unspecified = ip.src_addr.is_unspecified();
        let reply_mac = ndp.options().source_link_addr().unwrap_or(eth_src);
        match *ndp {
            NdpRepr::NeighborSolicit { target, .. } => {
                if target.is_multicast()
                    || unspecified
                    || target == ip.src_addr
                    || target == v6.addr
                {
                    return NdpOutcome::Ignore(DropReason::NdpIgnored);
                }
                NdpOutcome::Reply(NdpReply::NeighborAdvert {
                    dst_mac: reply_mac,
                    dst_ip: ip.src_addr,
                    target,
                })
            }
            NdpRepr::RouterSolicit { options } => {
                if !config.services.ra {
                    return NdpOutcome::Ignore(DropReason::ServiceDisabled);
                }
                // §6.1.1: no source link-layer option from ::.
                if unspecified && options.source_link_addr().is_some() {
                    return NdpOutcome::Ignore(DropReason::NdpIgnored);
                }
                // The RA source must be link-local (§4.2); config provides
                // one unless it is inconsistent.
                if !ipv6_is_link_local(v6.router_address()) {
                    return NdpOutcome::Ignore(DropReason::NdpIgnored);
                }
                let (dst_mac, dst_ip) = if unspecified {
                    (MacAddr::for_ipv6_multicast(ALL_NODES), ALL_NODES)
                } else {
                    (reply_mac, ip.src_addr)
                };
                NdpOutcome::Reply(NdpReply::RouterAdvert { dst_mac, dst_ip })
            }
            NdpRepr::RouterAdvert { .. }
            | NdpRepr::NeighborAdvert { .. }
            | NdpRepr::Redirect { .. } => NdpOutcome::Ignore(DropReason::NdpIgnored),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{L3, L4, NdpOptions, parse_frame};
    use core::fmt::Write as _;
    use etherparse::icmpv6::{Icmpv6PayloadSlice, NdpOptionSlice};
    use etherparse::{Icmpv6Type, PacketBuilder, SlicedPacket, TransportSlice};

    const GUEST_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn guest_ll() -> Ipv6Addr {
        GUEST_MAC.ipv6_link_local()
    }

    /// An NDP frame from the guest, built by etherparse. `body` is what
    /// follows the 8-byte ICMPv6 header.
    fn frame(
        icmp: Icmpv6Type,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        body: &[u8],
    ) -> Vec<u8> {
        let dst_mac = if dst.is_multicast() {
            MacAddr::for_ipv6_multicast(dst)
        } else {
            MacAddr::PASST_DEFAULT
        };
        let mut v = Vec::new();
        PacketBuilder::ethernet2(GUEST_MAC.0, dst_mac.0)
            .ipv6(src.octets(), dst.octets(), hop_limit)
            .icmpv6(icmp)
            .write(&mut v, body)
            .unwrap();
        v
    }

    fn ns_body(target: Ipv6Addr, slla: bool) -> Vec<u8> {
        let mut b = target.octets().to_vec();
        if slla {
            b.extend_from_slice(&[1, 1]);
            b.extend_from_slice(&GUEST_MAC.0);
        }
        b
    }

    fn ns(src: Ipv6Addr, dst: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
        let slla = !src.is_unspecified();
        frame(
            Icmpv6Type::NeighborSolicitation,
            src,
            dst,
            255,
            &ns_body(target, slla),
        )
    }

    fn rs(src: Ipv6Addr) -> Vec<u8> {
        let mut body = Vec::new();
        if !src.is_unspecified() {
            body.extend_from_slice(&[1, 1]);
            body.extend_from_slice(&GUEST_MAC.0);
        }
        frame(
            Icmpv6Type::RouterSolicitation,
            src,
            a("ff02::2"),
            255,
            &body,
        )
    }

    /// Runs a guest frame through a fresh responder.
    fn run(config: &Config, frame: &[u8]) -> NdpOutcome {
        let f = parse_frame(frame).unwrap();
        let L3::Ipv6 {
            ip,
            l4: L4::Icmpv6(Icmpv6Repr::Ndp(ndp)),
        } = f.l3
        else {
            panic!("not NDP: {:?}", f.l3)
        };
        NdpResponder::new().handle(config, Instant::ZERO, f.eth.src, &ip, &ndp)
    }

    fn reply(config: &Config, frame: &[u8]) -> Vec<u8> {
        let NdpOutcome::Reply(r) = run(config, frame) else {
            panic!("no reply: {:?}", run(config, frame))
        };
        let mut buf = vec![0u8; 2000];
        let n = r.build(config, &mut buf).unwrap();
        assert_eq!(n, r.frame_len(config));
        buf.truncate(n);
        buf
    }

    /// A field-by-field decode of an NA or RA, by etherparse (our own
    /// parser only for RDNSS and DNSSL, which etherparse does not know).
    fn decode(frame: &[u8]) -> String {
        let p = SlicedPacket::from_ethernet(frame).unwrap();
        let mut s = String::new();
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else {
            panic!()
        };
        writeln!(
            s,
            "eth {} -> {}",
            MacAddr(eth.source()),
            MacAddr(eth.destination())
        )
        .unwrap();
        let Some(etherparse::NetSlice::Ipv6(ip)) = &p.net else {
            panic!()
        };
        let h = ip.header();
        writeln!(
            s,
            "ipv6 {} -> {} hop_limit {} next_header {:?}",
            h.source_addr(),
            h.destination_addr(),
            h.hop_limit(),
            h.next_header()
        )
        .unwrap();
        let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
            panic!()
        };
        writeln!(
            s,
            "icmpv6 checksum valid: {}",
            icmp.is_checksum_valid(h.source(), h.destination())
        )
        .unwrap();
        let options = match (icmp.icmp_type(), icmp.payload_slice().unwrap()) {
            (
                Icmpv6Type::NeighborAdvertisement(f),
                Icmpv6PayloadSlice::NeighborAdvertisement(p),
            ) => {
                writeln!(
                    s,
                    "neighbor advertisement target {} router {} solicited {} override {}",
                    p.target_address(),
                    f.router,
                    f.solicited,
                    f.r#override
                )
                .unwrap();
                p.options_iterator()
            }
            (Icmpv6Type::RouterAdvertisement(f), Icmpv6PayloadSlice::RouterAdvertisement(p)) => {
                writeln!(
                    s,
                    "router advertisement cur_hop_limit {} managed {} other {} router_lifetime {} reachable {} retrans {}",
                    f.cur_hop_limit,
                    f.managed_address_config,
                    f.other_config,
                    f.router_lifetime,
                    p.reachable_time(),
                    p.retrans_timer()
                )
                .unwrap();
                p.options_iterator()
            }
            (t, _) => panic!("unexpected {t:?}"),
        };
        for o in options {
            match o.unwrap() {
                NdpOptionSlice::SourceLinkLayerAddress(o) => {
                    writeln!(
                        s,
                        "  source link-layer address {:02x?}",
                        o.link_layer_address()
                    )
                }
                NdpOptionSlice::TargetLinkLayerAddress(o) => {
                    writeln!(
                        s,
                        "  target link-layer address {:02x?}",
                        o.link_layer_address()
                    )
                }
                NdpOptionSlice::Mtu(o) => writeln!(s, "  mtu {}", o.mtu()),
                NdpOptionSlice::PrefixInformation(o) => writeln!(
                    s,
                    "  prefix {}/{} on_link {} autonomous {} valid {} preferred {}",
                    Ipv6Addr::from(o.prefix()),
                    o.prefix_length(),
                    o.on_link(),
                    o.autonomous_address_configuration(),
                    o.valid_lifetime(),
                    o.preferred_lifetime()
                ),
                other => {
                    let bytes = other.as_bytes();
                    match NdpOptions::parse(bytes).unwrap().iter().next().unwrap() {
                        NdpOption::Rdnss { lifetime, servers } => writeln!(
                            s,
                            "  rdnss lifetime {} servers {:?}",
                            lifetime,
                            servers.iter().collect::<Vec<_>>()
                        ),
                        NdpOption::Dnssl { lifetime, domains } => writeln!(
                            s,
                            "  dnssl lifetime {} domains {:?} (option length {})",
                            lifetime,
                            domains.names().map(|n| n.to_string()).collect::<Vec<_>>(),
                            bytes.len()
                        ),
                        o => writeln!(s, "  other {o:?}"),
                    }
                }
            }
            .unwrap();
        }
        writeln!(s, "frame length {}", frame.len()).unwrap();
        s
    }

    #[test]
    fn snapshot_na_for_gateway() {
        let c = Config::example();
        let out = reply(&c, &ns(guest_ll(), a("ff02::1:ff00:1"), a("fe80::1")));
        insta::assert_snapshot!(decode(&out));
    }

    #[test]
    fn snapshot_ra_solicited() {
        let mut c = Config::example();
        c.dns_search = vec!["example.test".into(), "corp.example".into()];
        let out = reply(&c, &rs(guest_ll()));
        insta::assert_snapshot!(decode(&out));
    }

    #[test]
    fn snapshot_ra_unsolicited_minimal() {
        let mut c = Config::example();
        c.services.dhcpv6 = false;
        c.dns_search.clear();
        if let Some(v6) = c.ipv6.as_mut() {
            v6.dns.clear();
        }
        c.ra_router_lifetime = Duration::from_secs(100_000);
        c.mtu = 1500;
        let mut r = NdpResponder::new();
        r.guest_seen(&c, Instant::from_secs(1));
        let ra = r.handle_timeout(&c, Instant::from_secs(1)).unwrap();
        let mut buf = vec![0u8; 500];
        let n = ra.build(&c, &mut buf).unwrap();
        insta::assert_snapshot!(decode(&buf[..n]));
    }

    #[test]
    fn na_for_any_other_address() {
        let c = Config::example();
        // A global neighbour on the guest's prefix, the DNS server, and a
        // solicitation sent unicast (NUD) rather than to the
        // solicited-node group.
        for (dst, target) in [
            ("ff02::1:ff00:7", "2001:db8::7"),
            ("ff02::1:ff00:53", "2001:db8::53"),
            ("fe80::1", "fe80::1"),
        ] {
            let NdpOutcome::Reply(r) = run(&c, &ns(a("2001:db8::15"), a(dst), a(target))) else {
                panic!("{target}")
            };
            assert_eq!(
                r,
                NdpReply::NeighborAdvert {
                    dst_mac: GUEST_MAC,
                    dst_ip: a("2001:db8::15"),
                    target: a(target)
                }
            );
        }
        // Without a source link-layer option the reply goes to the
        // frame's source MAC.
        let f = frame(
            Icmpv6Type::NeighborSolicitation,
            guest_ll(),
            a("fe80::1"),
            255,
            &ns_body(a("fe80::1"), false),
        );
        let NdpOutcome::Reply(NdpReply::NeighborAdvert { dst_mac, .. }) = run(&c, &f) else {
            panic!()
        };
        assert_eq!(dst_mac, GUEST_MAC);
    }

    #[test]
    fn never_answers_the_guests_own_addresses() {
        let c = Config::example();
        let ignored = |f: &[u8]| run(&c, f) == NdpOutcome::Ignore(DropReason::NdpIgnored);
        // DAD for the global address, the link-local, and anything else.
        for target in [
            "2001:db8::15",
            &guest_ll().to_string(),
            "2001:db8::abcd",
            "fe80::1",
        ] {
            let t = a(target);
            let f = ns(
                Ipv6Addr::UNSPECIFIED,
                crate::addr::ipv6_solicited_node(t),
                t,
            );
            assert!(ignored(&f), "DAD for {target} answered");
        }
        // Resolution of the guest's global address (from anywhere).
        assert!(ignored(&ns(
            guest_ll(),
            a("ff02::1:ff00:15"),
            a("2001:db8::15")
        )));
        // Target equal to the solicitation's own source.
        assert!(ignored(&ns(guest_ll(), a("ff02::1:ff00:1"), guest_ll())));
        // Multicast target.
        assert!(ignored(&ns(guest_ll(), a("ff02::1"), a("ff02::1"))));
        // Hop limit not 255 (RFC 4861 §7.1.1).
        let f = frame(
            Icmpv6Type::NeighborSolicitation,
            guest_ll(),
            a("ff02::1:ff00:1"),
            64,
            &ns_body(a("fe80::1"), true),
        );
        assert!(ignored(&f));
        // Advertisements and redirects from the guest are never answered.
        let na = frame(
            Icmpv6Type::NeighborAdvertisement(etherparse::icmpv6::NeighborAdvertisementHeader {
                router: false,
                solicited: false,
                r#override: true,
            }),
            guest_ll(),
            a("ff02::1"),
            255,
            &a("2001:db8::15").octets(),
        );
        assert!(ignored(&na));
    }

    #[test]
    fn router_solicitations() {
        let c = Config::example();
        // From the guest's link-local: unicast back.
        assert_eq!(
            run(&c, &rs(guest_ll())),
            NdpOutcome::Reply(NdpReply::RouterAdvert {
                dst_mac: GUEST_MAC,
                dst_ip: guest_ll()
            })
        );
        // From :: (before the guest has an address): to all nodes.
        assert_eq!(
            run(&c, &rs(Ipv6Addr::UNSPECIFIED)),
            NdpOutcome::Reply(NdpReply::RouterAdvert {
                dst_mac: MacAddr([0x33, 0x33, 0, 0, 0, 1]),
                dst_ip: ALL_NODES
            })
        );
        // From :: with a source link-layer option: invalid (§6.1.1).
        let mut body = vec![1u8, 1];
        body.extend_from_slice(&GUEST_MAC.0);
        let bad = frame(
            Icmpv6Type::RouterSolicitation,
            Ipv6Addr::UNSPECIFIED,
            a("ff02::2"),
            255,
            &body,
        );
        assert_eq!(run(&c, &bad), NdpOutcome::Ignore(DropReason::NdpIgnored));
    }

    #[test]
    fn services_switches() {
        let mut c = Config::example();
        c.services.ra = false;
        assert_eq!(
            run(&c, &rs(guest_ll())),
            NdpOutcome::Ignore(DropReason::ServiceDisabled)
        );
        // NS still answered without RAs.
        assert!(matches!(
            run(&c, &ns(guest_ll(), a("ff02::1:ff00:1"), a("fe80::1"))),
            NdpOutcome::Reply(_)
        ));
        let mut r = NdpResponder::new();
        r.guest_seen(&c, Instant::ZERO);
        assert_eq!(r.poll_timeout(), None);

        c.services.ra = true;
        c.services.ndp = false;
        assert_eq!(
            run(&c, &ns(guest_ll(), a("ff02::1:ff00:1"), a("fe80::1"))),
            NdpOutcome::Ignore(DropReason::ServiceDisabled)
        );
        r.guest_seen(&c, Instant::ZERO);
        assert_eq!(r.poll_timeout(), None);

        let mut c = Config::example();
        c.ipv6 = None;
        r.guest_seen(&c, Instant::ZERO);
        assert_eq!(r.poll_timeout(), None);
        let ra = NdpReply::RouterAdvert {
            dst_mac: GUEST_MAC,
            dst_ip: ALL_NODES,
        };
        assert_eq!(ra.build(&c, &mut [0u8; 500]), Err(WireError::Unsupported));
    }

    #[test]
    fn unsolicited_ra_schedule() {
        let c = Config::example(); // ra_interval 60 s
        let mut r = NdpResponder::new();
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.handle_timeout(&c, Instant::from_secs(100)), None);
        r.guest_seen(&c, Instant::from_secs(5));
        r.guest_seen(&c, Instant::from_secs(6)); // no re-arm
        assert_eq!(r.poll_timeout(), Some(Instant::from_secs(5)));
        let mut sent = Vec::new();
        let mut now = Instant::from_secs(5);
        for _ in 0..6 {
            now = r.poll_timeout().unwrap();
            assert_eq!(
                r.handle_timeout(&c, Instant::from_nanos(now.as_nanos() - 1)),
                None
            );
            let ra = r.handle_timeout(&c, now).unwrap();
            assert_eq!(
                ra,
                NdpReply::RouterAdvert {
                    dst_mac: MacAddr([0x33, 0x33, 0, 0, 0, 1]),
                    dst_ip: ALL_NODES
                }
            );
            sent.push(now.as_nanos() / 1_000_000_000);
        }
        // Three fast initial RAs 16 s apart, then every 60 s.
        assert_eq!(sent, [5, 21, 37, 97, 157, 217]);
        assert_eq!(r.poll_timeout(), Some(now + Duration::from_secs(60)));
        // A tiny configured interval is clamped.
        let mut c = Config::example();
        c.ra_interval = Duration::ZERO;
        let mut r = NdpResponder::new();
        r.guest_seen(&c, Instant::ZERO);
        r.handle_timeout(&c, Instant::ZERO).unwrap();
        assert_eq!(r.poll_timeout(), Some(Instant::from_secs(4)));
    }

    #[test]
    fn ra_content_follows_config() {
        let mut c = Config::example();
        c.ra_router_lifetime = Duration::from_secs(1800);
        let out = reply(&c, &rs(guest_ll()));
        let f = parse_frame(&out).unwrap();
        let L3::Ipv6 {
            ip,
            l4:
                L4::Icmpv6(Icmpv6Repr::Ndp(NdpRepr::RouterAdvert {
                    managed,
                    other_config,
                    router_lifetime,
                    options,
                    ..
                })),
        } = f.l3
        else {
            panic!()
        };
        assert_eq!(ip.src_addr, a("fe80::1")); // the link-local gateway
        assert_eq!(ip.hop_limit, 255);
        assert!(managed && other_config);
        assert_eq!(router_lifetime, 1800);
        let prefix = options.iter().find_map(|o| match o {
            NdpOption::PrefixInfo(p) => Some(p),
            _ => None,
        });
        assert_eq!(prefix.unwrap().prefix, a("2001:db8::"));
        // A global gateway: RAs come from our own link-local instead.
        if let Some(v6) = c.ipv6.as_mut() {
            v6.gateway = a("2001:db8::1");
        }
        let out = reply(&c, &rs(guest_ll()));
        let L3::Ipv6 { ip, .. } = parse_frame(&out).unwrap().l3 else {
            panic!()
        };
        assert_eq!(ip.src_addr, MacAddr::PASST_DEFAULT.ipv6_link_local());
    }
}
