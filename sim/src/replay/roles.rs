//! Who is who in a trace, and the engine configuration it implies.
//!
//! # What this module owns
//!
//! - The engine's MAC: the source of DHCP replies (RFC 2131), DHCPv6
//!   replies (RFC 8415), router advertisements (RFC 4861 §4.2) and ARP
//!   replies (RFC 826), in that order of trust; `--set engine-mac=`
//!   overrides it. The guest is the first other source MAC.
//! - The [`Config`] of the replayed engine: the guest's address, prefix,
//!   gateway, DNS and MTU from the DHCP reply and the RA when the trace has
//!   them, else from the first addresses seen, then every `--set key=value`.
//!
//! # What it must never do
//!
//! Panic on a hostile trace (every option length is checked), or invent a
//! role it cannot see: no engine MAC is an input error.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use passt_engine::wire::{self, Icmpv6Repr, L3, L4, NdpOption, NdpRepr};
use passt_engine::{Config, Ipv4Config, Ipv6Config, MacAddr};

use super::decode::{Decoded, Kind, decode};
use super::input::TraceFrame;

/// The two ends of the trace's wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// The engine (passt) side.
    pub engine: MacAddr,
    /// The guest.
    pub guest: MacAddr,
}

/// `--set` keys and what they mean (for the error message and docs).
pub const SET_KEYS: &[&str] = &[
    "engine-mac",
    "addr",
    "prefix",
    "gateway",
    "dns",
    "addr6",
    "prefix6",
    "dns6",
    "mtu",
    "hold",
    "tail",
];

/// Replay options that are not engine configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// How long a guest frame acknowledging unsent data may wait.
    pub hold: Duration,
    /// How long the replay runs past the trace's last frame.
    pub tail: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            hold: Duration::from_secs(1),
            tail: Duration::from_secs(2),
        }
    }
}

fn parse_kv(sets: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut m = BTreeMap::new();
    for s in sets {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| format!("--set `{s}`: expected key=value"))?;
        if !SET_KEYS.contains(&k) {
            return Err(format!(
                "--set `{s}`: unknown key `{k}` (known: {})",
                SET_KEYS.join(", ")
            ));
        }
        m.insert(k.to_string(), v.to_string());
    }
    Ok(m)
}

fn bad(k: &str, v: &str) -> String {
    format!("--set {k}={v}: bad value")
}

/// Finds the engine and the guest.
pub fn find_roles(frames: &[TraceFrame], sets: &[String]) -> Result<Roles, String> {
    let kv = parse_kv(sets)?;
    let decoded: Vec<Decoded<'_>> = frames.iter().filter_map(|f| decode(&f.data)).collect();
    let engine = match kv.get("engine-mac") {
        Some(v) => v.parse::<MacAddr>().map_err(|_| bad("engine-mac", v))?,
        None => engine_mac(&decoded).ok_or(
            "cannot tell the engine from the guest: no DHCP reply, router advertisement \
             or ARP reply in the trace (use --set engine-mac=XX:XX:XX:XX:XX:XX)",
        )?,
    };
    let guest = decoded
        .iter()
        .map(|d| d.src_mac)
        .find(|m| *m != engine && m.is_unicast())
        .ok_or_else(|| format!("no frame from any MAC but the engine's ({engine})"))?;
    Ok(Roles { engine, guest })
}

fn engine_mac(decoded: &[Decoded<'_>]) -> Option<MacAddr> {
    let udp_from = |port: u16| {
        decoded.iter().find_map(|d| match d.kind {
            Kind::Udp { src, .. } if src.port() == port => Some(d.src_mac),
            _ => None,
        })
    };
    udp_from(67)
        .or_else(|| udp_from(547))
        .or_else(|| {
            decoded.iter().find_map(|d| match d.kind {
                Kind::Icmp {
                    icmp_type: 134,
                    v6: true,
                    ..
                } => Some(d.src_mac),
                _ => None,
            })
        })
        .or_else(|| {
            decoded.iter().find_map(|d| match d.kind {
                Kind::Arp { op: 2, .. } => Some(d.src_mac),
                _ => None,
            })
        })
}

/// What a DHCPv4 reply (RFC 2131 §2, RFC 2132 options) tells the guest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct DhcpLease {
    addr: Option<Ipv4Addr>,
    prefix: Option<u8>,
    router: Option<Ipv4Addr>,
    dns: Vec<Ipv4Addr>,
    mtu: Option<u16>,
}

/// Reads the fields of a DHCPv4 reply that configure the guest; bounded
/// by the message's length.
fn dhcp_lease(msg: &[u8]) -> Option<DhcpLease> {
    let yiaddr: [u8; 4] = msg.get(16..20)?.try_into().ok()?;
    if msg.get(236..240)? != [99, 130, 83, 99] {
        return None;
    }
    let mut lease = DhcpLease {
        addr: Some(Ipv4Addr::from(yiaddr)).filter(|a| !a.is_unspecified()),
        ..DhcpLease::default()
    };
    let mut at = 240;
    while let Some(&code) = msg.get(at) {
        match code {
            0 => {
                at += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        // A length running past the end ends the walk with what was read.
        let Some(&len) = msg.get(at + 1) else { break };
        let len = usize::from(len);
        let Some(val) = msg.get(at + 2..at + 2 + len) else {
            break;
        };
        let v4s = || {
            val.chunks_exact(4)
                .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
        };
        match code {
            1 if len == 4 => {
                let mask = u32::from_be_bytes([val[0], val[1], val[2], val[3]]);
                lease.prefix = Some(mask.leading_ones() as u8);
            }
            3 => lease.router = v4s().next(),
            6 => lease.dns = v4s().collect(),
            26 if len == 2 => lease.mtu = Some(u16::from_be_bytes([val[0], val[1]])),
            _ => {}
        }
        at += 2 + len;
    }
    Some(lease)
}

/// Walks DHCPv6 options (RFC 8415 §21.1: code, length, data), calling
/// `f` for each; stops at a length running past the end.
fn v6_options(mut b: &[u8], f: &mut dyn FnMut(u16, &[u8])) {
    while b.len() >= 4 {
        let code = u16::from_be_bytes([b[0], b[1]]);
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        let Some(val) = b.get(4..4 + len) else { break };
        f(code, val);
        b = &b[4 + len..];
    }
}

/// The address (IA_NA's IAADDR, RFC 8415 §21.4-21.6) and DNS servers
/// (RFC 3646 option 23) of a DHCPv6 Reply or Advertise.
fn dhcpv6_lease(msg: &[u8]) -> (Option<Ipv6Addr>, Vec<Ipv6Addr>) {
    let (mut addr, mut dns) = (None, Vec::new());
    // Message types 2 (Advertise) and 7 (Reply); 4 bytes of header.
    if !matches!(msg.first(), Some(2 | 7)) || msg.len() < 4 {
        return (addr, dns);
    }
    let v6 = |c: &[u8]| -> Option<Ipv6Addr> { Some(Ipv6Addr::from(<[u8; 16]>::try_from(c).ok()?)) };
    v6_options(&msg[4..], &mut |code, val| match code {
        3 if val.len() >= 12 => v6_options(&val[12..], &mut |c, v| {
            if c == 5 && v.len() >= 24 {
                addr = addr.or_else(|| v6(&v[..16]));
            }
        }),
        23 => dns = val.chunks_exact(16).filter_map(v6).collect(),
        _ => {}
    });
    (addr, dns)
}

/// Builds the replayed engine's configuration.
pub fn infer_config(
    frames: &[TraceFrame],
    roles: Roles,
    sets: &[String],
) -> Result<(Config, Tuning), String> {
    let kv = parse_kv(sets)?;
    let mut c = Config::example();
    c.our_mac = roles.engine;
    let mut v4 = c.ipv4.clone().expect("example has IPv4");
    let mut v6 = c.ipv6.clone().expect("example has IPv6");
    v6.our_link_local = roles.engine.ipv6_link_local();
    v6.gateway = v6.our_link_local;
    let (mut seen_v4, mut seen_v6, mut seen_gw) = (None, None, None);
    let (mut dns4_seen, mut dns6_seen) = (None, None);
    let (mut lease, mut ra_mtu, mut ra_prefix, mut rdnss) = (None, None, None, Vec::new());
    let (mut lease6, mut dns6_dhcp) = (None, Vec::new());
    for f in frames {
        let Some(d) = decode(&f.data) else { continue };
        let from_engine = d.src_mac == roles.engine;
        let from_guest = d.src_mac == roles.guest;
        match d.kind {
            Kind::Udp { src, payload, .. } if from_engine && src.port() == 67 => {
                if let Some(l) = dhcp_lease(payload).filter(|l| l.addr.is_some()) {
                    lease = Some(l);
                }
            }
            Kind::Udp { src, payload, .. } if from_engine && src.port() == 547 => {
                let (a, d) = dhcpv6_lease(payload);
                if a.is_some() {
                    lease6 = a;
                }
                if !d.is_empty() {
                    dns6_dhcp = d;
                }
            }
            Kind::Udp { dst, .. } if from_guest && dst.port() == 53 => match dst.ip() {
                IpAddr::V4(a) => _ = dns4_seen.get_or_insert(a),
                IpAddr::V6(a) => _ = dns6_seen.get_or_insert(a),
            },
            Kind::Icmp {
                icmp_type: 134,
                v6: true,
                ..
            } if from_engine => {
                if let Ok(wire::Frame {
                    l3:
                        L3::Ipv6 {
                            l4: L4::Icmpv6(Icmpv6Repr::Ndp(NdpRepr::RouterAdvert { options, .. })),
                            ..
                        },
                    ..
                }) = wire::parse_frame(&f.data)
                {
                    for o in options.iter() {
                        match o {
                            NdpOption::Mtu(m) => ra_mtu = Some(m),
                            NdpOption::PrefixInfo(p) => ra_prefix = Some((p.prefix, p.prefix_len)),
                            NdpOption::Rdnss { servers, .. } => rdnss = servers.iter().collect(),
                            _ => {}
                        }
                    }
                }
            }
            Kind::Arp {
                op: 2, sender: ip, ..
            } if from_engine => _ = seen_gw.get_or_insert(ip),
            _ => {}
        }
        if from_guest {
            match d.kind {
                Kind::Tcp { src, .. } | Kind::Udp { src, .. } => match src.ip() {
                    IpAddr::V4(a) if !a.is_unspecified() => _ = seen_v4.get_or_insert(a),
                    IpAddr::V6(a) if is_global6(a) => _ = seen_v6.get_or_insert(a),
                    _ => {}
                },
                Kind::Icmp {
                    src: IpAddr::V4(a), ..
                } if !a.is_unspecified() => _ = seen_v4.get_or_insert(a),
                Kind::Icmp {
                    src: IpAddr::V6(a), ..
                } if is_global6(a) => _ = seen_v6.get_or_insert(a),
                _ => {}
            }
        }
    }
    if let Some(l) = &lease {
        v4.addr = l.addr.unwrap_or(v4.addr);
        v4.prefix_len = l.prefix.unwrap_or(24);
        if let Some(r) = l.router {
            v4.gateway = r;
        }
        if !l.dns.is_empty() {
            v4.dns = l.dns.clone();
        }
    } else if let Some(a) = seen_v4 {
        v4.addr = a;
        v4.prefix_len = 24;
        v4.gateway = match seen_gw {
            Some(IpAddr::V4(g)) => g,
            _ => {
                let o = a.octets();
                Ipv4Addr::new(o[0], o[1], o[2], if o[3] == 1 { 2 } else { 1 })
            }
        };
        if let Some(d) = dns4_seen {
            v4.dns = vec![d];
        }
    }
    if let Some(a) = lease6.or(seen_v6) {
        v6.addr = a;
        v6.prefix_len = ra_prefix.map_or(64, |(_, l)| l);
    } else if let Some((p, l)) = ra_prefix {
        v6.addr = p;
        v6.prefix_len = l;
    }
    if !dns6_dhcp.is_empty() {
        v6.dns = dns6_dhcp;
    } else if !rdnss.is_empty() {
        v6.dns = rdnss;
    } else if let Some(d) = dns6_seen {
        v6.dns = vec![d];
    }
    c.mtu = lease
        .as_ref()
        .and_then(|l| l.mtu)
        .or(ra_mtu.and_then(|m| u16::try_from(m).ok()))
        .unwrap_or(c.mtu);
    let mut tuning = Tuning::default();
    apply_sets(&kv, &mut c.mtu, &mut v4, &mut v6, &mut tuning)?;
    c.mapping.host_loopback_v4 = Some(v4.gateway);
    c.mapping.host_loopback_v6 = Some(v6.gateway);
    c.ipv4 = Some(v4);
    c.ipv6 = Some(v6);
    c.validate()
        .map_err(|e| format!("the configuration taken from the trace is invalid: {e}"))?;
    Ok((c, tuning))
}

fn is_global6(a: Ipv6Addr) -> bool {
    !a.is_unspecified()
        && !a.is_loopback()
        && !a.is_multicast()
        && (a.segments()[0] & 0xffc0) != 0xfe80
}

fn apply_sets(
    kv: &BTreeMap<String, String>,
    mtu: &mut u16,
    v4: &mut Ipv4Config,
    v6: &mut Ipv6Config,
    t: &mut Tuning,
) -> Result<(), String> {
    for (k, v) in kv {
        let b = || bad(k, v);
        let secs = || -> Result<Duration, String> {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e6)
                .map(Duration::from_secs_f64)
                .ok_or_else(b)
        };
        match k.as_str() {
            "addr" => v4.addr = v.parse().map_err(|_| b())?,
            "prefix" => v4.prefix_len = v.parse().ok().filter(|p| *p <= 32).ok_or_else(b)?,
            "gateway" => v4.gateway = v.parse().map_err(|_| b())?,
            "dns" => {
                v4.dns = v
                    .split(',')
                    .map(|s| s.parse().map_err(|_| b()))
                    .collect::<Result<_, _>>()?
            }
            "addr6" => v6.addr = v.parse().map_err(|_| b())?,
            "prefix6" => v6.prefix_len = v.parse().ok().filter(|p| *p <= 128).ok_or_else(b)?,
            "dns6" => {
                v6.dns = v
                    .split(',')
                    .map(|s| s.parse().map_err(|_| b()))
                    .collect::<Result<_, _>>()?
            }
            "mtu" => *mtu = v.parse().map_err(|_| b())?,
            "hold" => t.hold = secs()?,
            "tail" => t.tail = secs()?,
            _ => {} // engine-mac: used by find_roles
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dhcp_reply_gives_address_prefix_router_dns_and_mtu() {
        let mut m = vec![0u8; 240];
        m[16..20].copy_from_slice(&[10, 0, 2, 15]);
        m[236..240].copy_from_slice(&[99, 130, 83, 99]);
        m.extend_from_slice(&[53, 1, 5, 1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 2, 2]);
        m.extend_from_slice(&[6, 4, 10, 0, 2, 3, 26, 2, 0x05, 0xdc, 255]);
        let l = dhcp_lease(&m).unwrap();
        assert_eq!(l.addr, Some(Ipv4Addr::new(10, 0, 2, 15)));
        assert_eq!(l.prefix, Some(24));
        assert_eq!(l.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(l.dns, vec![Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!(l.mtu, Some(1500));
        // An option running past the end stops the walk, no panic.
        let cut = &m[..m.len() - 3];
        assert!(dhcp_lease(cut).is_some());
    }

    #[test]
    fn a_dhcpv6_reply_gives_the_address_and_dns() {
        let addr: Ipv6Addr = "2001:db8::15".parse().unwrap();
        let dns: Ipv6Addr = "2001:db8::53".parse().unwrap();
        let mut iaaddr = vec![0, 5, 0, 24];
        iaaddr.extend_from_slice(&addr.octets());
        iaaddr.extend_from_slice(&[0; 8]);
        let mut m = vec![7, 1, 2, 3];
        m.extend_from_slice(&[0, 3]);
        m.extend_from_slice(&((12 + iaaddr.len()) as u16).to_be_bytes());
        m.extend_from_slice(&[0; 12]);
        m.extend_from_slice(&iaaddr);
        m.extend_from_slice(&[0, 23, 0, 16]);
        m.extend_from_slice(&dns.octets());
        assert_eq!(dhcpv6_lease(&m), (Some(addr), vec![dns]));
        // Cut anywhere: no panic, and no address invented.
        for n in 0..m.len() {
            let (a, _) = dhcpv6_lease(&m[..n]);
            assert!(a.is_none() || a == Some(addr));
        }
    }

    #[test]
    fn unknown_set_keys_are_refused_with_the_known_ones() {
        let e = parse_kv(&["colour=blue".into()]).unwrap_err();
        assert!(
            e.contains("unknown key `colour`") && e.contains("engine-mac"),
            "{e}"
        );
    }
}
