//! Address mapping between the guest's view and the host's: the only NAT
//! passt does.
//!
//! passt hands the guest the host's own addresses, so most traffic needs no
//! translation at all. The exceptions, all driven by [`crate::config::Mapping`]
//! (upstream's `--map-host-loopback`, `--no-map-gw`, `--map-guest-addr`,
//! `--dns-forward` and `--dns-host`, see passt(1)):
//! - the host-loopback address (by default the gateway) stands for the
//!   host's loopback (127.0.0.1 / ::1), in both directions;
//! - `--map-guest-addr` stands for the host's own address, both ways;
//! - `--dns-forward` stands for the host's resolver (`--dns-host`), for DNS
//!   (ports 53 and 853) only: the mapping is port-aware, so it lives in
//!   [`host_destination_port`] and [`guest_source_port`];
//! - traffic toward the guest is delivered to the address the guest itself
//!   uses ([`guest_destination`]), learnt from its frames.
//!
//! Replies within a flow never go through these functions: a flow records
//! the exact addresses the guest used and answers from them (so a reply from
//! host `::1` to a guest that wrote to `fe80::1` comes back from `fe80::1`).
//!
//! This module is pure: it maps addresses and never touches sockets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::addr::ipv6_is_link_local;
use crate::config::Config;
use crate::ctx::GuestState;

/// DNS port (RFC 1035 §4.2).
pub const DNS_PORT: u16 = 53;
/// DNS over TLS port (RFC 7858 §3.1), forwarded like port 53.
pub const DNS_TLS_PORT: u16 = 853;

/// Whether `port` is one `--dns-forward` maps (53 and 853, as upstream).
pub fn is_dns_port(port: u16) -> bool {
    port == DNS_PORT || port == DNS_TLS_PORT
}

/// Where traffic arriving on a forwarded host port goes in the guest: the
/// guest port, and the guest address when the rule names one
/// (`-t 22:192.0.2.5`); otherwise the guest's own address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenTarget {
    /// Guest port.
    pub port: u16,
    /// Guest address, if the rule gives one.
    pub addr: Option<IpAddr>,
}

impl ListenTarget {
    /// `port` on the guest's own address.
    pub const fn port(port: u16) -> Self {
        ListenTarget { port, addr: None }
    }

    /// The guest address for traffic whose source (as the guest sees it)
    /// is `src`: the rule's address, or `own` (the guest's). `None` when
    /// the rule's address is of the other family: such traffic cannot be
    /// delivered (the source has no address of that family).
    pub fn guest_addr(&self, src: IpAddr, own: IpAddr) -> Option<IpAddr> {
        match self.addr {
            None => Some(own),
            Some(a) if a.is_ipv4() == src.is_ipv4() => Some(a),
            Some(_) => None,
        }
    }
}

/// Where on the host a guest packet addressed to `dst` must go, for
/// address-only mappings (host loopback, `--map-guest-addr`). DNS forwarding
/// depends on the port: see [`host_destination_port`].
pub fn host_destination(config: &Config, dst: IpAddr) -> IpAddr {
    let m = &config.mapping;
    match dst {
        IpAddr::V4(a) if Some(a) == m.host_loopback_v4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if Some(a) == m.host_loopback_v6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V4(a) if Some(a) == m.guest_addr_v4 => match m.host_addr_v4 {
            Some(h) => IpAddr::V4(h),
            None => dst,
        },
        IpAddr::V6(a) if Some(a) == m.guest_addr_v6 => match m.host_addr_v6 {
            Some(h) => IpAddr::V6(h),
            None => dst,
        },
        other => other,
    }
}

/// Where on the host a guest packet for `dst` (address and port) must go:
/// DNS queries (port 53, UDP or TCP) to the `--dns-forward` address go to
/// the host's resolver (`--dns-host`, possibly a loopback one such as
/// systemd-resolved's 127.0.0.53); everything else as
/// [`host_destination`].
pub fn host_destination_port(config: &Config, dst: SocketAddr) -> SocketAddr {
    let m = &config.mapping;
    if is_dns_port(dst.port()) {
        match dst.ip() {
            IpAddr::V4(a) if Some(a) == m.dns_forward_v4 => {
                if let Some(h) = m.dns_host_v4 {
                    return SocketAddr::new(IpAddr::V4(h), dst.port());
                }
            }
            IpAddr::V6(a) if Some(a) == m.dns_forward_v6 => {
                if let Some(h) = m.dns_host_v6 {
                    return SocketAddr::new(IpAddr::V6(h), dst.port());
                }
            }
            _ => {}
        }
    }
    SocketAddr::new(host_destination(config, dst.ip()), dst.port())
}

/// The address a host peer at `peer` appears from to the guest. `None`
/// when the peer cannot be represented (a loopback peer with the mapping
/// switched off). IPv4-mapped IPv6 peers are treated as IPv4.
pub fn guest_source(config: &Config, peer: IpAddr) -> Option<IpAddr> {
    let m = &config.mapping;
    match peer {
        IpAddr::V4(a) if a.is_loopback() => m.host_loopback_v4.map(IpAddr::V4),
        IpAddr::V6(a) if a.is_loopback() => m.host_loopback_v6.map(IpAddr::V6),
        IpAddr::V4(a) if m.guest_addr_v4.is_some() && Some(a) == m.host_addr_v4 => {
            m.guest_addr_v4.map(IpAddr::V4)
        }
        IpAddr::V6(a) if m.guest_addr_v6.is_some() && Some(a) == m.host_addr_v6 => {
            m.guest_addr_v6.map(IpAddr::V6)
        }
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => guest_source(config, IpAddr::V4(v4)),
            None => Some(peer),
        },
        other => Some(other),
    }
}

/// Port-aware [`guest_source`]: a datagram from the host resolver's port 53
/// appears to come from the `--dns-forward` address.
pub fn guest_source_port(config: &Config, peer: SocketAddr) -> Option<SocketAddr> {
    let m = &config.mapping;
    if is_dns_port(peer.port()) {
        let ip = match peer.ip() {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(a) if m.dns_forward_v4.is_some() && Some(a) == m.dns_host_v4 => {
                return m
                    .dns_forward_v4
                    .map(|f| SocketAddr::new(IpAddr::V4(f), peer.port()));
            }
            IpAddr::V6(a) if m.dns_forward_v6.is_some() && Some(a) == m.dns_host_v6 => {
                return m
                    .dns_forward_v6
                    .map(|f| SocketAddr::new(IpAddr::V6(f), peer.port()));
            }
            _ => {}
        }
    }
    guest_source(config, peer.ip()).map(|ip| SocketAddr::new(ip, peer.port()))
}

/// The guest address new inbound traffic of `src`'s family goes to: the
/// address the guest has been seen using, else the configured one. For an
/// IPv6 link-local source, the guest's link-local address (scopes must
/// match, or the guest's stack would not answer from the right address).
pub fn guest_destination(config: &Config, guest: &GuestState, src: IpAddr) -> Option<IpAddr> {
    match src {
        IpAddr::V4(_) => guest
            .ipv4
            .or(config.ipv4.as_ref().map(|v4| v4.addr))
            .map(IpAddr::V4),
        IpAddr::V6(s) => {
            let global = guest.ipv6.or(config.ipv6.as_ref().map(|v6| v6.addr));
            let chosen = if ipv6_is_link_local(s) {
                guest.ipv6_link_local.or(global)
            } else {
                global.or(guest.ipv6_link_local)
            };
            chosen.map(IpAddr::V6)
        }
    }
}

/// Which way a packet crosses the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// From the guest to the host: `(src, dst)` are guest-side; the result
    /// is `(local address to bind on the host, host destination)`. The
    /// guest's source port is kept (bound where possible).
    Outbound,
    /// From a host peer into the guest: `(src, dst)` are the peer and the
    /// guest port it reaches (after port forwarding); the result is
    /// `(source the guest sees, guest destination)`.
    Inbound,
}

/// Translates one packet's endpoints across the engine (the whole mapping
/// of this module in one call; the table-driven tests go through it).
/// `None` when the packet cannot be represented on the other side.
pub fn translate(
    config: &Config,
    guest: &GuestState,
    direction: Direction,
    src: SocketAddr,
    dst: SocketAddr,
) -> Option<(SocketAddr, SocketAddr)> {
    match direction {
        Direction::Outbound => {
            let host_dst = host_destination_port(config, dst);
            let unspec = match host_dst.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            Some((SocketAddr::new(unspec, src.port()), host_dst))
        }
        Direction::Inbound => {
            let seen = guest_source_port(config, src)?;
            let to = guest_destination(config, guest, seen.ip())?;
            Some((seen, SocketAddr::new(to, dst.port())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rules_target_address_replaces_the_guests_own_in_its_family() {
        let own: IpAddr = "192.0.2.15".parse().unwrap();
        let src4: IpAddr = "192.0.2.1".parse().unwrap();
        let src6: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(ListenTarget::port(22).guest_addr(src4, own), Some(own));
        let t = ListenTarget {
            port: 22,
            addr: Some("192.0.2.99".parse().unwrap()),
        };
        assert_eq!(t.guest_addr(src4, own), t.addr);
        assert_eq!(t.guest_addr(src6, own), None, "no IPv6 source for it");
    }

    #[test]
    fn dns_forwarding_covers_ports_53_and_853_only() {
        let mut c = Config::example();
        c.mapping.dns_forward_v4 = Some(Ipv4Addr::new(192, 0, 2, 53));
        c.mapping.dns_host_v4 = Some(Ipv4Addr::new(127, 0, 0, 53));
        for port in [53, 853] {
            let dst = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53)), port);
            let host = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53)), port);
            assert_eq!(host_destination_port(&c, dst), host);
            assert_eq!(guest_source_port(&c, host), Some(dst));
        }
        let dst = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53)), 80);
        assert_eq!(host_destination_port(&c, dst), dst);
    }

    #[test]
    fn gateway_maps_to_loopback_and_back() {
        let c = Config::example();
        let gw4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(host_destination(&c, gw4), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(guest_source(&c, IpAddr::V4(Ipv4Addr::LOCALHOST)), Some(gw4));
        let gw6: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(host_destination(&c, gw6), IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(guest_source(&c, IpAddr::V6(Ipv6Addr::LOCALHOST)), Some(gw6));
        let other: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(host_destination(&c, other), other);
        assert_eq!(guest_source(&c, other), Some(other));
    }

    #[test]
    fn no_map_gw_leaves_loopback_unreachable() {
        let mut c = Config::example();
        c.mapping.host_loopback_v4 = None;
        let gw4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(host_destination(&c, gw4), gw4);
        assert_eq!(guest_source(&c, IpAddr::V4(Ipv4Addr::LOCALHOST)), None);
    }
}
