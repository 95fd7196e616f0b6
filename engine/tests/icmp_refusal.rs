//! Echo requests the engine cannot forward are refused with a destination
//! unreachable quoting the request: a full echo-flow table
//! (administratively prohibited) and a destination with no route (net
//! unreachable), inside a private network namespace (its own routing
//! table and `ping_group_range`; nothing leaves it).

mod udp_support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use passt_engine::wire::{self, Icmpv4Repr, Icmpv6Repr, L3, L4};
use passt_engine::{Config, DropReason};
use udp_support::*;

const RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";
const WAIT: Duration = Duration::from_secs(2);

fn echo_frame(h: &Harness, src: IpAddr, dst: IpAddr, ident: u16, seq_no: u16) -> Vec<u8> {
    udp_support::echo_frame(h, src, dst, ident, seq_no, b"refuse me")
}

/// (from, to, code, quoted dst, quoted echo type, ident, seq) of a
/// destination unreachable quoting an echo request.
fn as_refusal(frame: &[u8]) -> (IpAddr, IpAddr, u8, IpAddr, u8, u16, u16) {
    let f = wire::parse_frame(frame).expect("valid frame (checksums verified)");
    let (from, to, code, data, ip_len, dst_at, dst_len) = match f.l3 {
        L3::Ipv4 {
            ip,
            l4: L4::Icmpv4(Icmpv4Repr::DstUnreachable { code, data, .. }),
        } => {
            assert_eq!(data[9], 1, "quotes an ICMP packet");
            (
                IpAddr::V4(ip.src_addr),
                IpAddr::V4(ip.dst_addr),
                code,
                data,
                20,
                16,
                4,
            )
        }
        L3::Ipv6 {
            ip,
            l4: L4::Icmpv6(Icmpv6Repr::DstUnreachable { code, data }),
        } => {
            assert_eq!(data[6], 58, "quotes an ICMPv6 packet");
            (
                IpAddr::V6(ip.src_addr),
                IpAddr::V6(ip.dst_addr),
                code,
                data,
                40,
                24,
                16,
            )
        }
        other => panic!("not a destination unreachable: {other:?}"),
    };
    assert_eq!(data.len(), ip_len + 8, "IP header + echo header");
    let quoted_dst = if dst_len == 4 {
        IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(&data[dst_at..dst_at + 4]).unwrap(),
        ))
    } else {
        IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(&data[dst_at..dst_at + 16]).unwrap(),
        ))
    };
    let e = &data[ip_len..];
    (
        from,
        to,
        code,
        quoted_dst,
        e[0],
        u16::from_be_bytes([e[4], e[5]]),
        u16::from_be_bytes([e[6], e[7]]),
    )
}

/// A harness in a namespace of our own where ping sockets are allowed.
fn harness(config: Config) -> Option<Harness> {
    if !enter_private_netns() {
        eprintln!("skipping: cannot create a network namespace (not root)");
        return None;
    }
    std::fs::write(RANGE, "0 2147483647").expect("widen ping_group_range in our netns");
    Some(Harness::new(config))
}

#[test]
fn icmp_echo_full_table_refused_with_admin_prohibited() {
    let mut c = Config::example();
    c.flow_capacity = 1;
    let Some(mut h) = harness(c) else { return };
    let (g4, gw4) = (IpAddr::V4(GUEST4), IpAddr::V4(GW4));
    let f = echo_frame(&h, g4, gw4, 0x0101, 1);
    h.engine.handle_frame(h.now, &f);
    assert_eq!(h.expect_frames(WAIT).len(), 1, "the first flow is answered");
    assert_eq!(h.engine.icmp().flow_count(), 1);
    let f = echo_frame(&h, g4, gw4, 0x0202, 5);
    h.engine.handle_frame(h.now, &f);
    let frames = h.take_frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(
        as_refusal(&frames[0]),
        (gw4, g4, 13, gw4, 8, 0x0202, 5),
        "admin prohibited, quoting the echo request"
    );
    let c = h.engine.counters();
    assert_eq!(c.drops(DropReason::FlowTableFull), 1);
    assert_eq!(c.icmp_refusals_to_guest, 1);
}

#[test]
fn icmp_echo_unroutable_refused_with_net_unreachable() {
    let Some(mut h) = harness(Config::example()) else {
        return;
    };
    let g4 = IpAddr::V4(GUEST4);
    let far4 = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    let f = echo_frame(&h, g4, far4, 0x0303, 2);
    h.engine.handle_frame(h.now, &f);
    let frames = h.take_frames();
    assert_eq!(frames.len(), 1, "{:?}", h.engine.counters());
    assert_eq!(
        as_refusal(&frames[0]),
        (IpAddr::V4(GW4), g4, 0, far4, 8, 0x0303, 2)
    );
    assert_eq!(h.engine.counters().drops(DropReason::HostSocketError), 1);
    if ipv6_loopback() {
        let g6 = IpAddr::V6(GUEST6);
        let far6 = IpAddr::V6("2001:db8:1::7".parse().unwrap());
        let f = echo_frame(&h, g6, far6, 0x0404, 3);
        h.engine.handle_frame(h.now, &f);
        let frames = h.take_frames();
        assert_eq!(frames.len(), 1, "{:?}", h.engine.counters());
        assert_eq!(
            as_refusal(&frames[0]),
            (IpAddr::V6(GW6), g6, 0, far6, 128, 0x0404, 3),
            "no route to destination, quoting the ICMPv6 echo request"
        );
    }
}
