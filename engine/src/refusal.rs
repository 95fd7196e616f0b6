//! The engine's own refusals: ICMP/ICMPv6 destination unreachable messages
//! it generates when it cannot forward a guest packet (a full flow table, a
//! host socket that cannot reach the destination), rate-limited by a token
//! bucket ([`RefusalLimiter`]; RFC 1812 §4.3.2.8, RFC 4443 §2.4(f)).
//!
//! The protocol modules that refuse (UDP, ICMP echo) build the quote of the
//! refused packet and call `refuse`. This module never touches a host
//! socket or a flow; it only builds frames for the guest.

use core::time::Duration;
use std::net::IpAddr;

use crate::ctx::{Ctx, HOP_LIMIT_TO_GUEST};
use crate::host_io::{HostError, HostIo};
use crate::time::Instant;
use crate::wire::{self, Icmpv4Repr, Icmpv6Repr, Ipv4Repr, Ipv6Repr, protocol};

/// Refusals the bucket can send back to back.
pub const REFUSAL_BURST: u32 = 16;
/// One token comes back every this long (8 refusals per second sustained).
pub const REFUSAL_INTERVAL: Duration = Duration::from_millis(125);

/// Why the engine refuses a guest packet, and so which destination
/// unreachable code the guest gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Policy or resources: a full flow table, out of host sockets, or the
    /// host forbade the operation (`EACCES`/`EPERM`). ICMPv4 code 13
    /// "communication administratively prohibited" (RFC 1812 §5.2.7.1);
    /// ICMPv6 code 1 "communication with destination administratively
    /// prohibited" (RFC 4443 §3.1).
    AdminProhibited,
    /// The host has no route (`ENETUNREACH`). ICMPv4 code 0 "net
    /// unreachable" (RFC 792); ICMPv6 code 0 "no route to destination".
    NetUnreachable,
    /// The host's neighbour resolution or a route of type unreachable failed
    /// (`EHOSTUNREACH`). ICMPv4 code 1 "host unreachable"; ICMPv6 code 3
    /// "address unreachable".
    HostUnreachable,
}

impl Refusal {
    /// The refusal matching a host socket error, if the error says the
    /// destination cannot be reached (others are only counted).
    pub fn from_host_error(e: HostError) -> Option<Refusal> {
        match e {
            HostError::NetworkUnreachable => Some(Refusal::NetUnreachable),
            HostError::HostUnreachable => Some(Refusal::HostUnreachable),
            HostError::PermissionDenied | HostError::NoResources => Some(Refusal::AdminProhibited),
            _ => None,
        }
    }

    /// ICMPv4 destination unreachable code (RFC 792, RFC 1812 §5.2.7.1).
    pub const fn icmpv4_code(self) -> u8 {
        match self {
            Refusal::NetUnreachable => 0,
            Refusal::HostUnreachable => 1,
            Refusal::AdminProhibited => 13,
        }
    }

    /// ICMPv6 destination unreachable code (RFC 4443 §3.1).
    pub const fn icmpv6_code(self) -> u8 {
        match self {
            Refusal::NetUnreachable => 0,
            Refusal::AdminProhibited => 1,
            Refusal::HostUnreachable => 3,
        }
    }
}

/// A token bucket bounding the refusals sent to the guest: at most
/// [`REFUSAL_BURST`] at once, then one per [`REFUSAL_INTERVAL`]
/// (RFC 1812 §4.3.2.8 asks routers to limit the ICMP errors they
/// originate; RFC 4443 §2.4(f) recommends a token bucket). One bucket per
/// module that refuses (UDP, echo): a guest flooding one cannot silence the
/// other. Refusals over the limit are counted in
/// [`crate::Counters::icmp_refusals_rate_limited`]; the packet itself is
/// counted as dropped either way.
#[derive(Clone, Copy, Debug)]
pub struct RefusalLimiter {
    tokens: u32,
    /// When the last token was credited.
    refilled: Instant,
}

impl Default for RefusalLimiter {
    fn default() -> Self {
        RefusalLimiter {
            tokens: REFUSAL_BURST,
            refilled: Instant::ZERO,
        }
    }
}

impl RefusalLimiter {
    /// Takes a token if one is left at `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        let interval = REFUSAL_INTERVAL.as_nanos() as u64;
        let elapsed = now.saturating_duration_since(self.refilled).as_nanos() as u64;
        let earned = elapsed / interval;
        if earned > 0 {
            let earned32 = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned32).min(REFUSAL_BURST);
            self.refilled += Duration::from_nanos(earned * interval);
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Sends the guest a destination unreachable for a packet it sent from
/// `guest` to `guest_peer`, quoting `quoted` (the start of that packet,
/// its IP header included: RFC 792 asks for the header and 64 bits of
/// data). The message comes from the guest's gateway, the router that
/// refuses (from `guest_peer` when no gateway is configured). Returns
/// whether a frame was queued; counts it, or counts the rate-limited
/// refusal.
pub(crate) fn refuse<H: HostIo>(
    cx: &mut Ctx<'_, H>,
    limiter: &mut RefusalLimiter,
    now: Instant,
    refusal: Refusal,
    guest: IpAddr,
    guest_peer: IpAddr,
    quoted: &[u8],
) -> bool {
    if !limiter.allow(now) {
        cx.counters.icmp_refusals_rate_limited += 1;
        return false;
    }
    let (our_mac, guest_mac) = (cx.config.our_mac, cx.guest.dst_mac());
    let sent = match (guest_peer, guest) {
        (IpAddr::V4(peer), IpAddr::V4(dst)) => {
            let src = cx
                .config
                .ipv4
                .as_ref()
                .map(|c| c.gateway)
                .filter(|g| !g.is_unspecified())
                .unwrap_or(peer);
            let icmp = Icmpv4Repr::DstUnreachable {
                code: refusal.icmpv4_code(),
                rest: 0,
                data: quoted,
            };
            let ip = Ipv4Repr::new(src, dst, protocol::ICMP, HOP_LIMIT_TO_GUEST);
            cx.emit(wire::IPV4_HEADERS_LEN + icmp.buffer_len(), |buf| {
                wire::build_icmpv4(buf, our_mac, guest_mac, &ip, &icmp).unwrap_or(0)
            })
        }
        (IpAddr::V6(peer), IpAddr::V6(dst)) => {
            // RFC 4443 §2.2: any of the node's addresses; the router's
            // link-local one is valid whatever scope the guest used.
            let src = cx
                .config
                .ipv6
                .as_ref()
                .map(|c| c.router_address())
                .filter(|g| !g.is_unspecified())
                .unwrap_or(peer);
            let icmp = Icmpv6Repr::DstUnreachable {
                code: refusal.icmpv6_code(),
                data: quoted,
            };
            let ip = Ipv6Repr::new(src, dst, protocol::ICMPV6, HOP_LIMIT_TO_GUEST);
            cx.emit(wire::IPV6_HEADERS_LEN + icmp.buffer_len(), |buf| {
                wire::build_icmpv6(buf, our_mac, guest_mac, &ip, &icmp).unwrap_or(0)
            })
        }
        _ => false,
    };
    if sent {
        cx.counters.icmp_refusals_to_guest += 1;
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_one_per_interval() {
        let mut l = RefusalLimiter::default();
        let t0 = Instant::from_secs(10);
        for i in 0..REFUSAL_BURST {
            assert!(l.allow(t0), "token {i}");
        }
        assert!(!l.allow(t0));
        assert!(!l.allow(t0 + REFUSAL_INTERVAL / 2));
        assert!(l.allow(t0 + REFUSAL_INTERVAL));
        assert!(!l.allow(t0 + REFUSAL_INTERVAL));
        // A long pause refills to the burst, never beyond.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..REFUSAL_BURST {
            assert!(l.allow(later));
        }
        assert!(!l.allow(later));
    }

    #[test]
    fn codes_follow_the_rfcs() {
        assert_eq!(Refusal::AdminProhibited.icmpv4_code(), 13);
        assert_eq!(Refusal::AdminProhibited.icmpv6_code(), 1);
        assert_eq!(Refusal::NetUnreachable.icmpv4_code(), 0);
        assert_eq!(Refusal::NetUnreachable.icmpv6_code(), 0);
        assert_eq!(Refusal::HostUnreachable.icmpv4_code(), 1);
        assert_eq!(Refusal::HostUnreachable.icmpv6_code(), 3);
        assert_eq!(
            Refusal::from_host_error(HostError::NetworkUnreachable),
            Some(Refusal::NetUnreachable)
        );
        assert_eq!(
            Refusal::from_host_error(HostError::HostUnreachable),
            Some(Refusal::HostUnreachable)
        );
        assert_eq!(
            Refusal::from_host_error(HostError::PermissionDenied),
            Some(Refusal::AdminProhibited)
        );
        assert_eq!(Refusal::from_host_error(HostError::WouldBlock), None);
        assert_eq!(Refusal::from_host_error(HostError::ConnectionRefused), None);
    }
}
