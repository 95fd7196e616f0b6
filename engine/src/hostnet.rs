//! The host's network configuration as passt sees it ([`HostNetwork`]),
//! which passt copies into the guest by default, and the pure parsers that
//! build it from the host's files: default routes (`/proc/net/route`,
//! `/proc/net/ipv6_route`, see proc(5)), interface addresses
//! (`/proc/net/if_inet6`), resolvers and search domains (`/etc/resolv.conf`,
//! resolv.conf(5)).
//!
//! Every function here is pure, over strings and values, and tested on
//! them; reading the live files and `getifaddrs(3)` is the runtime's
//! (`runtime::host_probe`). The command line ([`crate::cli`]) combines
//! options with a [`HostNetwork`] without depending on the runtime.
//!
//! The template interface for each family is the one given (`-i`, or
//! `--outbound-if4`/`--outbound-if6`), otherwise the one carrying that
//! family's lowest-metric default route. A family with no default route (or
//! whose interface has no usable address) is reported absent; what the guest
//! gets then is decided by [`crate::cli::build_config`] (an IPv4 link-local
//! fallback, IPv6 off).
//!
//! It never reads or changes anything on the host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::addr::MacAddr;

/// `RTF_UP` (linux/route.h).
const RTF_UP: u32 = 0x0001;
/// `RTF_GATEWAY`.
const RTF_GATEWAY: u32 = 0x0002;
/// `RTF_REJECT`: unreachable routes (the IPv6 table keeps one on `lo`).
const RTF_REJECT: u32 = 0x0200;

/// A host failure that stops passt from starting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostCfgError {
    /// `-i`/`--outbound-if*` named an interface that does not exist (worded
    /// as upstream).
    #[error("Invalid interface name {0}: No such device")]
    NoSuchInterface(String),
}

/// One address of one host interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfAddr {
    /// Interface name.
    pub ifname: String,
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
}

/// The host's IPv4 template: the interface with the default route and its
/// first address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostIpv4 {
    /// Interface name.
    pub ifname: String,
    /// Its first IPv4 address.
    pub addr: Ipv4Addr,
    /// Prefix length of that address.
    pub prefix_len: u8,
    /// The default gateway through it, if the route has one.
    pub gateway: Option<Ipv4Addr>,
}

/// The host's IPv6 template: the interface with the default route and its
/// first global address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostIpv6 {
    /// Interface name.
    pub ifname: String,
    /// Its first global (not link-local) IPv6 address.
    pub addr: Ipv6Addr,
    /// Prefix length of that address.
    pub prefix_len: u8,
    /// The default gateway through it, if the route has one.
    pub gateway: Option<Ipv6Addr>,
}

/// What the host's network looks like, as far as passt cares.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HostNetwork {
    /// IPv4 template, `None` without an IPv4 default route.
    pub ipv4: Option<HostIpv4>,
    /// IPv6 template, `None` without an IPv6 default route.
    pub ipv6: Option<HostIpv6>,
    /// Every address of every interface (for `-n` matching).
    pub addrs: Vec<IfAddr>,
    /// MTU of the IPv4 (else IPv6) template interface.
    pub mtu: Option<u32>,
    /// MAC of the IPv4 (else IPv6) template interface.
    pub mac: Option<MacAddr>,
    /// Resolvers from resolv.conf, in order.
    pub dns: Vec<IpAddr>,
    /// Search domains from resolv.conf.
    pub search: Vec<String>,
}

impl HostNetwork {
    /// The prefix length of a host IPv4 address whose subnet contains
    /// `addr`, if any.
    pub fn v4_prefix_for(&self, addr: Ipv4Addr) -> Option<u8> {
        self.addrs.iter().find_map(|a| match a.addr {
            IpAddr::V4(h) if crate::addr::ipv4_same_subnet(h, addr, a.prefix_len) => {
                Some(a.prefix_len)
            }
            _ => None,
        })
    }

    /// The template interface names, as upstream prints them
    /// ("eth0 (IPv4), eth0 (IPv6)").
    pub fn describe_interfaces(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v4) = &self.ipv4 {
            parts.push(format!("{} (IPv4)", v4.ifname));
        }
        if let Some(v6) = &self.ipv6 {
            parts.push(format!("{} (IPv6)", v6.ifname));
        }
        if parts.is_empty() {
            "none (no default route)".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// A default route from one of the kernel's tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultRoute<A> {
    /// Outgoing interface.
    pub ifname: String,
    /// Next hop, `None` for a direct (device) route.
    pub gateway: Option<A>,
    /// Route metric (lower wins).
    pub metric: u32,
}

/// The default routes in `/proc/net/route` text, best (lowest metric) first.
/// Fields are hexadecimal; addresses are the kernel's network-order words
/// printed as host-order integers, so their bytes are the native-endian bytes
/// of the number.
pub fn parse_ipv4_default_routes(text: &str) -> Vec<DefaultRoute<Ipv4Addr>> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let (Some(dest), Some(gw), Some(flags), Some(metric), Some(mask)) = (
            hex(f[1]),
            hex(f[2]),
            hex(f[3]),
            f[6].parse::<u32>().ok(),
            hex(f[7]),
        ) else {
            continue;
        };
        if dest != 0 || mask != 0 || flags & RTF_UP == 0 || flags & RTF_REJECT != 0 {
            continue;
        }
        let gateway =
            (flags & RTF_GATEWAY != 0 && gw != 0).then(|| Ipv4Addr::from(gw.to_ne_bytes()));
        out.push(DefaultRoute {
            ifname: f[0].to_string(),
            gateway,
            metric,
        });
    }
    out.sort_by_key(|r| r.metric);
    out
}

fn parse_hex_ipv6(s: &str) -> Option<Ipv6Addr> {
    if s.len() != 32 {
        return None;
    }
    u128::from_str_radix(s, 16).ok().map(Ipv6Addr::from)
}

/// The default routes in `/proc/net/ipv6_route` text, best first. Columns:
/// destination, prefix length, source, source prefix length, next hop,
/// metric, refcount, use, flags, interface.
pub fn parse_ipv6_default_routes(text: &str) -> Vec<DefaultRoute<Ipv6Addr>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let (Some(dest), Ok(plen), Some(nh), Ok(metric), Ok(flags)) = (
            parse_hex_ipv6(f[0]),
            u8::from_str_radix(f[1], 16),
            parse_hex_ipv6(f[4]),
            u32::from_str_radix(f[5], 16),
            u32::from_str_radix(f[8], 16),
        ) else {
            continue;
        };
        if !dest.is_unspecified()
            || plen != 0
            || flags & RTF_UP == 0
            || flags & RTF_REJECT != 0
            || f[9] == "lo"
        {
            continue;
        }
        out.push(DefaultRoute {
            ifname: f[9].to_string(),
            gateway: (!nh.is_unspecified()).then_some(nh),
            metric,
        });
    }
    out.sort_by_key(|r| r.metric);
    out
}

/// The IPv6 addresses in `/proc/net/if_inet6` text: address, interface
/// index, prefix length, scope, flags, name (all hex but the name).
pub fn parse_if_inet6(text: &str) -> Vec<IfAddr> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6 {
                return None;
            }
            Some(IfAddr {
                ifname: f[5].to_string(),
                addr: IpAddr::V6(parse_hex_ipv6(f[0])?),
                prefix_len: u8::from_str_radix(f[2], 16).ok()?,
            })
        })
        .collect()
}

/// Resolvers and search domains from resolv.conf text (resolv.conf(5)):
/// `nameserver ADDR` lines in order (an IPv6 zone suffix `%if` is dropped);
/// the last `search` or `domain` line gives the search list.
pub fn parse_resolv_conf(text: &str) -> (Vec<IpAddr>, Vec<String>) {
    let mut dns = Vec::new();
    let mut search = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(a) = words.next() {
                    let a = a.split('%').next().unwrap_or(a);
                    if let Ok(ip) = a.parse::<IpAddr>()
                        && !dns.contains(&ip)
                    {
                        dns.push(ip);
                    }
                }
            }
            Some("search") | Some("domain") => {
                search = words
                    .take_while(|w| !w.starts_with('#') && !w.starts_with(';'))
                    .map(str::to_string)
                    .collect();
            }
            _ => {}
        }
    }
    (dns, search)
}

/// The candidate template interfaces for one family, in preference order:
/// the interface given, else the default routes' interfaces by metric. Each
/// comes with the gateway of a default route through it, if any.
fn candidates<A: Copy>(
    forced: Option<&str>,
    routes: &[DefaultRoute<A>],
) -> Vec<(String, Option<A>)> {
    match forced {
        Some(name) => {
            let gw = routes
                .iter()
                .find(|r| r.ifname == name)
                .and_then(|r| r.gateway);
            vec![(name.to_string(), gw)]
        }
        None => routes
            .iter()
            .map(|r| (r.ifname.clone(), r.gateway))
            .collect(),
    }
}

/// Builds the network description from already-read host state. `if4` and
/// `if6` force the template interfaces; otherwise the template is the
/// interface of the best default route that has an address of the family. A
/// forced interface without a default route still serves as template (its
/// gateway is then unknown).
pub fn assemble(
    routes4: &[DefaultRoute<Ipv4Addr>],
    routes6: &[DefaultRoute<Ipv6Addr>],
    addrs: Vec<IfAddr>,
    if4: Option<&str>,
    if6: Option<&str>,
    resolv_conf: &str,
) -> HostNetwork {
    let ipv4 = candidates(if4, routes4)
        .into_iter()
        .find_map(|(ifname, gateway)| {
            addrs.iter().find_map(|a| match a.addr {
                IpAddr::V4(addr) if a.ifname == ifname && !addr.is_loopback() => Some(HostIpv4 {
                    ifname: ifname.clone(),
                    addr,
                    prefix_len: a.prefix_len,
                    gateway,
                }),
                _ => None,
            })
        });
    let ipv6 = candidates(if6, routes6)
        .into_iter()
        .find_map(|(ifname, gateway)| {
            addrs.iter().find_map(|a| match a.addr {
                IpAddr::V6(addr)
                    if a.ifname == ifname
                        && !crate::addr::ipv6_is_link_local(addr)
                        && !addr.is_loopback() =>
                {
                    Some(HostIpv6 {
                        ifname: ifname.clone(),
                        addr,
                        prefix_len: a.prefix_len,
                        gateway,
                    })
                }
                _ => None,
            })
        });
    let (dns, search) = parse_resolv_conf(resolv_conf);
    HostNetwork {
        ipv4,
        ipv6,
        addrs,
        mtu: None,
        mac: None,
        dns,
        search,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on an x86-64 (little-endian) host; the address words are
    // native-endian, so this sample only holds there.
    #[cfg(target_endian = "little")]
    const ROUTE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth1\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
wg0\t00000000\t00000000\t0001\t0\t0\t50\t00000000\t0\t0\t0
bad\t00000000\t010200C0\t0202\t0\t0\t1\t00000000\t0\t0\t0
";

    const IPV6_ROUTE: &str = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";

    const IF_INET6: &str = "\
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
fd000000000000000000000000000002 04 40 00 82     eth0
00000000000000000000000000000001 01 80 10 80       lo
";

    #[cfg(target_endian = "little")]
    #[test]
    fn ipv4_default_routes() {
        let r = parse_ipv4_default_routes(ROUTE);
        let names: Vec<&str> = r.iter().map(|r| r.ifname.as_str()).collect();
        // Metric order; the subnet route and the rejected route are skipped.
        assert_eq!(names, vec!["wg0", "eth0", "eth1"]);
        assert_eq!(r[0].gateway, None, "device route has no next hop");
        assert_eq!(r[1].gateway, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(r[2].gateway, Some(Ipv4Addr::new(192, 168, 1, 1)));
        assert!(parse_ipv4_default_routes("").is_empty());
        assert!(parse_ipv4_default_routes("header\ngarbage line\n").is_empty());
    }

    #[test]
    fn ipv6_default_routes() {
        let r = parse_ipv6_default_routes(IPV6_ROUTE);
        assert_eq!(r.len(), 1, "lo's unreachable default is skipped: {r:?}");
        assert_eq!(r[0].ifname, "eth0");
        assert_eq!(r[0].gateway, Some("fd00::1".parse().unwrap()));
        assert_eq!(r[0].metric, 0x400);
    }

    #[test]
    fn if_inet6_addresses() {
        let a = parse_if_inet6(IF_INET6);
        assert_eq!(a.len(), 3);
        assert_eq!(a[1].addr, "fd00::2".parse::<IpAddr>().unwrap());
        assert_eq!(a[1].prefix_len, 64);
        assert_eq!(a[2].prefix_len, 128);
    }

    #[test]
    fn resolv_conf() {
        let (dns, search) = parse_resolv_conf(
            "# comment\nnameserver 127.0.0.53\nnameserver  fe80::1%eth0\n\
             nameserver 127.0.0.53\nnameserver bogus\ndomain one.test\n\
             search a.test b.test # trailing\noptions edns0\n",
        );
        assert_eq!(
            dns,
            vec![
                "127.0.0.53".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
        assert_eq!(search, vec!["a.test", "b.test"]);
        let (dns, search) = parse_resolv_conf("search x.test\ndomain y.test\n");
        assert!(dns.is_empty());
        assert_eq!(search, vec!["y.test"], "the last of search/domain wins");
    }

    fn addrs() -> Vec<IfAddr> {
        let mut v = parse_if_inet6(IF_INET6);
        v.insert(
            0,
            IfAddr {
                ifname: "eth0".into(),
                addr: "192.0.2.2".parse().unwrap(),
                prefix_len: 24,
            },
        );
        v.push(IfAddr {
            ifname: "lo".into(),
            addr: "127.0.0.1".parse().unwrap(),
            prefix_len: 8,
        });
        v
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn assemble_picks_default_route_interfaces() {
        let r4 = parse_ipv4_default_routes(ROUTE);
        let r6 = parse_ipv6_default_routes(IPV6_ROUTE);
        // wg0 has the best route but no address: the next route (eth0) wins.
        let n = assemble(&r4, &r6, addrs(), None, None, "nameserver 10.0.0.53\n");
        assert_eq!(n.ipv4.as_ref().map(|v| v.ifname.as_str()), Some("eth0"));
        assert_eq!(n.dns, vec!["10.0.0.53".parse::<IpAddr>().unwrap()]);
        // Forcing an interface without an address gives no template.
        let n = assemble(&r4, &r6, addrs(), Some("wg0"), None, "");
        assert_eq!(n.ipv4, None);
        // Forcing eth0 (as -i does) finds its address and gateway.
        let n = assemble(&r4, &r6, addrs(), Some("eth0"), Some("eth0"), "");
        let v4 = n.ipv4.clone().unwrap();
        assert_eq!(v4.addr, Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(v4.prefix_len, 24);
        assert_eq!(v4.gateway, Some(Ipv4Addr::new(192, 0, 2, 1)));
        let v6 = n.ipv6.clone().unwrap();
        assert_eq!(v6.addr, "fd00::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(v6.gateway, Some("fd00::1".parse().unwrap()));
        assert_eq!(n.describe_interfaces(), "eth0 (IPv4), eth0 (IPv6)");
        assert_eq!(n.v4_prefix_for(Ipv4Addr::new(192, 0, 2, 77)), Some(24));
        assert_eq!(n.v4_prefix_for(Ipv4Addr::new(10, 0, 0, 1)), None);
    }

    #[test]
    fn assemble_without_routes_is_empty() {
        let n = assemble(&[], &[], addrs(), None, None, "");
        assert_eq!(n.ipv4, None);
        assert_eq!(n.ipv6, None);
        assert_eq!(n.describe_interfaces(), "none (no default route)");
    }
}
