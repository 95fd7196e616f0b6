//! Address mapping between the guest's view and the host's: the only NAT
//! passt does.
//!
//! passt hands the guest the host's own addresses, so most traffic needs no
//! translation at all. The exceptions, all driven by [`crate::config::Mapping`]:
//! - the gateway address (by default) stands for the host's loopback, in
//!   both directions;
//! - `--map-guest-addr` stands for the host's own address;
//! - `--dns-forward` stands for the host's resolver (`--dns-host`).
//!
//! This module is pure: it maps addresses and never touches sockets.
//! (Foundation version: host-loopback mapping only; the UDP/forwarding issue
//! completes it.)

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::Config;

/// Where on the host a guest packet addressed to `dst` must go.
pub fn host_destination(config: &Config, dst: IpAddr) -> IpAddr {
    let m = &config.mapping;
    match dst {
        IpAddr::V4(a) if Some(a) == m.host_loopback_v4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if Some(a) == m.host_loopback_v6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// The address a host peer at `peer` appears from to the guest. `None`
/// when the peer cannot be represented (a loopback peer with the mapping
/// switched off).
pub fn guest_source(config: &Config, peer: IpAddr) -> Option<IpAddr> {
    let m = &config.mapping;
    match peer {
        IpAddr::V4(a) if a.is_loopback() => m.host_loopback_v4.map(IpAddr::V4),
        IpAddr::V6(a) if a.is_loopback() => m.host_loopback_v6.map(IpAddr::V6),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => guest_source(config, IpAddr::V4(v4)),
            None => Some(peer),
        },
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
