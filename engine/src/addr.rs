//! Address types shared by every module: MAC addresses and the few IPv4/IPv6
//! helpers (prefix masks, link-local derivation, multicast MACs) that the wire
//! layer, the built-in services and the configuration all need.

use core::fmt;
use core::str::FromStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A 48-bit IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00
    pub const ZERO: MacAddr = MacAddr([0; 6]);
    /// The address upstream passt uses for itself by default, 9a:55:9a:55:9a:55.
    pub const PASST_DEFAULT: MacAddr = MacAddr([0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55]);

    /// The raw six bytes.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Group bit set (multicast or broadcast).
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// All ones.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// A unicast address that is not all zeroes.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && *self != Self::ZERO
    }

    /// The Ethernet multicast address for an IPv6 multicast group
    /// (RFC 2464 §7: 33:33 followed by the low 32 bits of the group).
    pub fn for_ipv6_multicast(group: Ipv6Addr) -> MacAddr {
        let o = group.octets();
        MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }

    /// The IPv6 link-local address with the modified EUI-64 interface
    /// identifier built from this MAC (RFC 4291 appendix A, RFC 2464 §4).
    pub fn ipv6_link_local(&self) -> Ipv6Addr {
        let m = self.0;
        Ipv6Addr::from([
            0xfe,
            0x80,
            0,
            0,
            0,
            0,
            0,
            0,
            m[0] ^ 0x02,
            m[1],
            m[2],
            0xff,
            0xfe,
            m[3],
            m[4],
            m[5],
        ])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error parsing a MAC address from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?} (expected six hex bytes like 9a:55:9a:55:9a:55)")]
pub struct MacParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let p = parts.next().ok_or_else(|| MacParseError(s.to_string()))?;
            if p.is_empty() || p.len() > 2 {
                return Err(MacParseError(s.to_string()));
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| MacParseError(s.to_string()))?;
        }
        if parts.next().is_some() {
            return Err(MacParseError(s.to_string()));
        }
        Ok(MacAddr(out))
    }
}

/// The IPv4 netmask for a prefix length (0..=32; larger values saturate).
pub fn ipv4_mask(prefix_len: u8) -> Ipv4Addr {
    let p = u32::from(prefix_len.min(32));
    let bits = if p == 0 { 0 } else { u32::MAX << (32 - p) };
    Ipv4Addr::from(bits)
}

/// Whether `a` and `b` share their first `prefix_len` bits.
pub fn ipv4_same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix_len: u8) -> bool {
    let m = u32::from(ipv4_mask(prefix_len));
    u32::from(a) & m == u32::from(b) & m
}

/// `addr` with every bit past `prefix_len` cleared.
pub fn ipv6_prefix(addr: Ipv6Addr, prefix_len: u8) -> Ipv6Addr {
    let p = u32::from(prefix_len.min(128));
    let bits = u128::from(addr);
    let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
    Ipv6Addr::from(bits & mask)
}

/// fe80::/10
pub fn ipv6_is_link_local(addr: Ipv6Addr) -> bool {
    addr.segments()[0] & 0xffc0 == 0xfe80
}

/// The solicited-node multicast group of `addr` (RFC 4291 §2.7.1):
/// ff02::1:ffXX:XXXX with the low 24 bits of the address.
pub fn ipv6_solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// A destination the guest may not name (in a datagram or an echo
/// request): nothing
/// unicast there (RFC 1122 §3.2.1.3 / RFC 4291 §2.5.2 unspecified,
/// broadcast, multicast), or the host's loopback, which the guest reaches
/// only through the mapping (RFC 1122 §3.2.1.3(g): 127/8 never appears
/// outside a host).
pub(crate) fn guest_may_not_address(dst: IpAddr) -> bool {
    match dst {
        IpAddr::V4(a) => {
            a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback()
        }
        IpAddr::V6(a) => {
            a.is_unspecified()
                || a.is_multicast()
                || a.is_loopback()
                || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_display() {
        let m: MacAddr = "9a:55:9a:55:9a:55".parse().unwrap();
        assert_eq!(m, MacAddr::PASST_DEFAULT);
        assert_eq!(m.to_string(), "9a:55:9a:55:9a:55");
        assert!("9a:55:9a:55:9a".parse::<MacAddr>().is_err());
        assert!("9a:55:9a:55:9a:55:00".parse::<MacAddr>().is_err());
        assert!("zz:55:9a:55:9a:55".parse::<MacAddr>().is_err());
        assert!("".parse::<MacAddr>().is_err());
    }

    #[test]
    fn mac_classes() {
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr::PASST_DEFAULT.is_unicast());
        assert!(!MacAddr::ZERO.is_unicast());
    }

    #[test]
    fn link_local_from_mac() {
        let ll = MacAddr::PASST_DEFAULT.ipv6_link_local();
        assert_eq!(ll, "fe80::9855:9aff:fe55:9a55".parse::<Ipv6Addr>().unwrap());
        assert!(ipv6_is_link_local(ll));
    }

    #[test]
    fn masks_and_prefixes() {
        assert_eq!(ipv4_mask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(ipv4_mask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(ipv4_mask(32), Ipv4Addr::new(255, 255, 255, 255));
        assert!(ipv4_same_subnet(
            Ipv4Addr::new(10, 0, 2, 15),
            Ipv4Addr::new(10, 0, 2, 2),
            24
        ));
        assert!(!ipv4_same_subnet(
            Ipv4Addr::new(10, 0, 2, 15),
            Ipv4Addr::new(10, 0, 3, 2),
            24
        ));
        let a: Ipv6Addr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(
            ipv6_prefix(a, 64),
            "2001:db8:1:2::".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            ipv6_solicited_node(a),
            "ff02::1:ff05:6".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            MacAddr::for_ipv6_multicast("ff02::1".parse().unwrap()),
            MacAddr([0x33, 0x33, 0, 0, 0, 1])
        );
    }
}
