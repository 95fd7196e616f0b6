//! The engine refuses UDP flows it cannot open with a destination
//! unreachable to the guest, besides the counted drop: a full flow table
//! (administratively prohibited), and a host with no route (net / host
//! unreachable, inside a private network namespace whose routing table the
//! test writes itself). Refusals are rate-limited by a token bucket.

mod udp_support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use passt_engine::refusal::{REFUSAL_BURST, REFUSAL_INTERVAL};
use passt_engine::wire::{self, Icmpv4Repr, Icmpv6Repr, L3, L4};
use passt_engine::{Config, DropReason, Instant};
use udp_support::*;

/// What a destination unreachable to the guest says.
#[derive(Debug, PartialEq, Eq)]
struct Unreachable {
    from: IpAddr,
    to: IpAddr,
    code: u8,
    /// Quoted source and destination address, ports and UDP length.
    quoted: (IpAddr, IpAddr, u16, u16, u16),
}

fn as_unreachable(frame: &[u8]) -> Unreachable {
    let f = wire::parse_frame(frame).expect("valid frame (checksums verified)");
    match f.l3 {
        L3::Ipv4 {
            ip,
            l4: L4::Icmpv4(Icmpv4Repr::DstUnreachable { code, rest, data }),
        } => {
            assert_eq!(rest, 0);
            assert_eq!(data.len(), 28, "IPv4 header + UDP header");
            assert_eq!(data[0], 0x45);
            assert_eq!(data[9], 17, "quotes a UDP datagram");
            let a = |o: usize| {
                IpAddr::V4(Ipv4Addr::from(
                    <[u8; 4]>::try_from(&data[o..o + 4]).unwrap(),
                ))
            };
            let p = |o: usize| u16::from_be_bytes([data[o], data[o + 1]]);
            Unreachable {
                from: IpAddr::V4(ip.src_addr),
                to: IpAddr::V4(ip.dst_addr),
                code,
                quoted: (a(12), a(16), p(20), p(22), p(24)),
            }
        }
        L3::Ipv6 {
            ip,
            l4: L4::Icmpv6(Icmpv6Repr::DstUnreachable { code, data }),
        } => {
            assert_eq!(data.len(), 48, "IPv6 header + UDP header");
            assert_eq!(data[0] >> 4, 6);
            assert_eq!(data[6], 17, "quotes a UDP datagram");
            let a = |o: usize| {
                IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(&data[o..o + 16]).unwrap(),
                ))
            };
            let p = |o: usize| u16::from_be_bytes([data[o], data[o + 1]]);
            Unreachable {
                from: IpAddr::V6(ip.src_addr),
                to: IpAddr::V6(ip.dst_addr),
                code,
                quoted: (a(8), a(24), p(40), p(42), p(44)),
            }
        }
        other => panic!("not a destination unreachable: {other:?}"),
    }
}

fn peer(ip: IpAddr) -> UdpSocket {
    UdpSocket::bind(SocketAddr::new(ip, 0)).expect("peer bind")
}

#[test]
fn udp_full_table_refused_with_admin_prohibited_ipv4() {
    enter_private_netns();
    let mut c = Config::example();
    c.flow_capacity = 2;
    let mut h = Harness::new(c);
    let p = peer(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let dst = SocketAddr::new(IpAddr::V4(GW4), p.local_addr().unwrap().port());
    for port in [43001, 43002, 43003] {
        h.send_udp(SocketAddr::new(IpAddr::V4(GUEST4), port), dst, b"x");
    }
    let frames = h.take_frames();
    assert_eq!(frames.len(), 1, "one refusal");
    assert_eq!(
        as_unreachable(&frames[0]),
        Unreachable {
            from: IpAddr::V4(GW4),
            to: IpAddr::V4(GUEST4),
            code: 13,
            quoted: (IpAddr::V4(GUEST4), dst.ip(), 43003, dst.port(), 9),
        },
        "RFC 1812 §5.2.7.1: communication administratively prohibited"
    );
    let c = h.engine.counters();
    assert_eq!(c.drops(DropReason::FlowTableFull), 1);
    assert_eq!(c.icmp_refusals_to_guest, 1);
    assert_eq!(c.udp_to_host, 2);
    assert_eq!(h.engine.udp().flow_count(), 2);
    // Known flows still pass, unrefused.
    h.send_udp(SocketAddr::new(IpAddr::V4(GUEST4), 43001), dst, b"y");
    assert!(h.take_frames().is_empty());
    assert_eq!(h.engine.counters().udp_to_host, 3);
}

#[test]
fn udp_full_table_refused_with_admin_prohibited_ipv6() {
    enter_private_netns();
    if !ipv6_loopback() {
        eprintln!("skipping: no ::1");
        return;
    }
    let mut c = Config::example();
    c.flow_capacity = 1;
    let mut h = Harness::new(c);
    let p = peer(IpAddr::V6(Ipv6Addr::LOCALHOST));
    let dst = SocketAddr::new(IpAddr::V6(GW6), p.local_addr().unwrap().port());
    h.send_udp(SocketAddr::new(IpAddr::V6(GUEST6), 43101), dst, b"x");
    h.send_udp(SocketAddr::new(IpAddr::V6(GUEST6), 43102), dst, b"xyz");
    let frames = h.take_frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(
        as_unreachable(&frames[0]),
        Unreachable {
            from: IpAddr::V6(GW6),
            to: IpAddr::V6(GUEST6),
            code: 1,
            quoted: (IpAddr::V6(GUEST6), dst.ip(), 43102, dst.port(), 11),
        },
        "RFC 4443 §3.1: administratively prohibited"
    );
    assert_eq!(h.engine.counters().drops(DropReason::FlowTableFull), 1);
    assert_eq!(h.engine.counters().icmp_refusals_to_guest, 1);
}

#[test]
fn udp_refusals_are_rate_limited_by_a_token_bucket() {
    enter_private_netns();
    let mut c = Config::example();
    c.flow_capacity = 1;
    let mut h = Harness::new(c);
    let p = peer(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let dst = SocketAddr::new(IpAddr::V4(GW4), p.local_addr().unwrap().port());
    h.now = Instant::from_secs(100);
    h.send_udp(SocketAddr::new(IpAddr::V4(GUEST4), 43200), dst, b"x");
    const REFUSED: u16 = 40;
    for i in 0..REFUSED {
        h.send_udp(SocketAddr::new(IpAddr::V4(GUEST4), 43201 + i), dst, b"x");
    }
    let burst = REFUSAL_BURST as usize;
    let frames = h.take_frames();
    assert_eq!(frames.len(), burst);
    // The first ones are answered, in order.
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(as_unreachable(f).quoted.2, 43201 + i as u16);
    }
    let c = h.engine.counters();
    assert_eq!(c.drops(DropReason::FlowTableFull), u64::from(REFUSED));
    assert_eq!(c.icmp_refusals_to_guest, burst as u64);
    assert_eq!(
        c.icmp_refusals_rate_limited,
        u64::from(REFUSED) - burst as u64
    );
    // Half an interval later: still nothing; one interval: one token.
    h.now += REFUSAL_INTERVAL / 2;
    h.send_udp(SocketAddr::new(IpAddr::V4(GUEST4), 43300), dst, b"x");
    assert!(h.take_frames().is_empty());
    h.now = Instant::from_secs(100) + REFUSAL_INTERVAL;
    h.send_udp(SocketAddr::new(IpAddr::V4(GUEST4), 43301), dst, b"x");
    h.send_udp(SocketAddr::new(IpAddr::V4(GUEST4), 43302), dst, b"x");
    let frames = h.take_frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(as_unreachable(&frames[0]).quoted.2, 43301);
    // After a pause the full burst is back.
    h.now += Duration::from_secs(60);
    for i in 0..REFUSED {
        h.send_udp(SocketAddr::new(IpAddr::V4(GUEST4), 43400 + i), dst, b"x");
    }
    assert_eq!(h.take_frames().len(), burst);
}

/// Runs `ip ARGS` in this thread's network namespace (children inherit
/// it). False when `ip` is missing or fails.
fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn udp_unroutable_destination_refused_with_net_and_host_unreachable() {
    // Only inside a namespace of our own: its routing table is empty (no
    // route leaves it), and the routes added below exist only there.
    if !enter_private_netns() {
        eprintln!("skipping: cannot create a network namespace (not root)");
        return;
    }
    let mut h = Harness::new(Config::example());
    let guest = SocketAddr::new(IpAddr::V4(GUEST4), 43500);
    // TEST-NET-2: no route in this namespace -> connect gets ENETUNREACH.
    let dst = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), 9);
    h.send_udp(guest, dst, b"hello");
    let frames = h.take_frames();
    assert_eq!(frames.len(), 1, "{:?}", h.engine.counters());
    assert_eq!(
        as_unreachable(&frames[0]),
        Unreachable {
            from: IpAddr::V4(GW4),
            to: IpAddr::V4(GUEST4),
            code: 0,
            quoted: (IpAddr::V4(GUEST4), dst.ip(), 43500, 9, 13),
        },
        "net unreachable"
    );
    assert_eq!(h.engine.counters().drops(DropReason::HostSocketError), 1);
    assert_eq!(h.engine.udp().flow_count(), 0, "no flow opened");
    assert_eq!(h.engine.counters().udp_to_host, 0);

    if ipv6_loopback() {
        let guest6 = SocketAddr::new(IpAddr::V6(GUEST6), 43501);
        let dst6 = SocketAddr::new(IpAddr::V6("2001:db8:1::7".parse::<Ipv6Addr>().unwrap()), 9);
        h.send_udp(guest6, dst6, b"");
        let frames = h.take_frames();
        assert_eq!(frames.len(), 1);
        assert_eq!(
            as_unreachable(&frames[0]),
            Unreachable {
                from: IpAddr::V6(GW6),
                to: IpAddr::V6(GUEST6),
                code: 0,
                quoted: (IpAddr::V6(GUEST6), dst6.ip(), 43501, 9, 8),
            },
            "RFC 4443 §3.1: no route to destination"
        );
    }

    // Routes of type unreachable / prohibit (this namespace only): the
    // kernel answers EHOSTUNREACH / EACCES.
    if !ip(&["route", "add", "unreachable", "198.51.100.0/24"])
        || !ip(&["route", "add", "prohibit", "203.0.113.0/24"])
    {
        eprintln!("skipping the route-type part: `ip route add` unavailable");
        return;
    }
    h.send_udp(guest, dst, b"hello");
    let dst2 = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)), 9);
    h.send_udp(guest, dst2, b"hello");
    let frames = h.take_frames();
    assert_eq!(frames.len(), 2);
    assert_eq!(as_unreachable(&frames[0]).code, 1, "host unreachable");
    assert_eq!(as_unreachable(&frames[0]).quoted.1, dst.ip());
    assert_eq!(as_unreachable(&frames[1]).code, 13, "admin prohibited");
    assert_eq!(as_unreachable(&frames[1]).quoted.1, dst2.ip());
    let c = h.engine.counters();
    assert_eq!(c.icmp_refusals_to_guest, 3 + u64::from(ipv6_loopback()));
    assert_eq!(h.engine.udp().flow_count(), 0);
}
