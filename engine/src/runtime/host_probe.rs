//! The host probe: reads the live host state (`getifaddrs(3)`, `/proc`,
//! `/sys/class/net`, `/etc/resolv.conf`) and builds a [`HostNetwork`] with
//! the pure parsers of [`crate::hostnet`].
//!
//! It never changes anything on the host.

use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::hostnet::{
    HostCfgError, HostNetwork, IfAddr, assemble, parse_if_inet6, parse_ipv4_default_routes,
    parse_ipv6_default_routes,
};

/// Every address of every interface (`getifaddrs(3)`). IPv6 addresses come
/// from `/proc/net/if_inet6` when `getifaddrs` fails.
pub fn interface_addresses() -> Vec<IfAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` receives a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return std::fs::read_to_string("/proc/net/if_inet6")
            .map(|t| parse_if_inet6(&t))
            .unwrap_or_default();
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: non-null, NUL-terminated name owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: `ifa_addr` points to a sockaddr of at least the family's size.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        let (addr, prefix_len) = match family {
            libc::AF_INET => {
                // SAFETY: family says sockaddr_in; the netmask has the same family.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                let mask = if ifa.ifa_netmask.is_null() {
                    32
                } else {
                    // SAFETY: as above.
                    let m = unsafe { &*(ifa.ifa_netmask as *const libc::sockaddr_in) };
                    u32::from_be(m.sin_addr.s_addr).leading_ones() as u8
                };
                (
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))),
                    mask,
                )
            }
            libc::AF_INET6 => {
                // SAFETY: family says sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                let mask = if ifa.ifa_netmask.is_null() {
                    128
                } else {
                    // SAFETY: as above.
                    let m = unsafe { &*(ifa.ifa_netmask as *const libc::sockaddr_in6) };
                    u128::from_be_bytes(m.sin6_addr.s6_addr).leading_ones() as u8
                };
                (IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)), mask)
            }
            _ => continue,
        };
        out.push(IfAddr {
            ifname: name,
            addr,
            prefix_len,
        });
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

fn interface_exists(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('/')
        && std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Reads the host's configuration. `interface` (`-i`) forces the template
/// for both families, `outbound_if4`/`outbound_if6` for one each (`-i`
/// wins). Missing files mean "nothing there", not errors; only a forced
/// interface that does not exist is.
pub fn detect(
    interface: Option<&str>,
    outbound_if4: Option<&str>,
    outbound_if6: Option<&str>,
) -> Result<HostNetwork, HostCfgError> {
    let if4 = interface.or(outbound_if4);
    let if6 = interface.or(outbound_if6);
    for name in [if4, if6].into_iter().flatten() {
        if !interface_exists(name) {
            return Err(HostCfgError::NoSuchInterface(name.to_string()));
        }
    }
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let routes4 = parse_ipv4_default_routes(&read("/proc/net/route"));
    let routes6 = parse_ipv6_default_routes(&read("/proc/net/ipv6_route"));
    let mut net = assemble(
        &routes4,
        &routes6,
        interface_addresses(),
        if4,
        if6,
        &read("/etc/resolv.conf"),
    );
    let template = net
        .ipv4
        .as_ref()
        .map(|v| v.ifname.clone())
        .or(net.ipv6.as_ref().map(|v| v.ifname.clone()));
    if let Some(ifname) = template {
        let dir = std::path::Path::new("/sys/class/net").join(&ifname);
        net.mtu = std::fs::read_to_string(dir.join("mtu"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        net.mac = std::fs::read_to_string(dir.join("address"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_missing_interface_is_an_error() {
        let e = detect(Some("no-such-if0"), None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid interface name no-such-if0: No such device"
        );
    }

    /// The live machine: whatever it has, the answer is consistent with
    /// /proc and /sys.
    #[test]
    fn live_detection_is_sane() {
        let n = detect(None, None, None).unwrap();
        let route = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
        let has_v4_default = !parse_ipv4_default_routes(&route).is_empty();
        assert!(
            n.addrs.iter().any(|a| a.addr.is_loopback()),
            "lo has an address: {:?}",
            n.addrs
        );
        if let Some(v4) = &n.ipv4 {
            assert!(has_v4_default);
            assert!(interface_exists(&v4.ifname));
            assert!(!v4.addr.is_unspecified() && v4.prefix_len <= 32);
            let mtu = n.mtu.expect("template interface has an MTU");
            assert!((68..=65536).contains(&mtu), "mtu {mtu}");
        }
        if let Some(v6) = &n.ipv6 {
            assert!(interface_exists(&v6.ifname));
            assert!(!crate::addr::ipv6_is_link_local(v6.addr));
        }
        if has_v4_default {
            // A default route through an interface with an address: found.
            let best = &parse_ipv4_default_routes(&route)[0];
            let has_addr = n
                .addrs
                .iter()
                .any(|a| a.ifname == best.ifname && a.addr.is_ipv4());
            assert_eq!(n.ipv4.is_some(), has_addr);
        }
    }
}
