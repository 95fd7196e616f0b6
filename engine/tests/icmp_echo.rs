//! ICMP/ICMPv6 echo through ping sockets against the real kernel, inside a
//! private network namespace (its own `ping_group_range`, so the host's
//! setting is never touched): identifier and sequence preserved, the
//! kernel's identifier rewrite undone, idle expiry, and the "not
//! permitted" counter.

mod udp_support;

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use passt_engine::icmp::PING_NOT_PERMITTED_WARNING;
use passt_engine::wire::{self, Icmpv4Repr, Icmpv6Repr, L3, L4};
use passt_engine::{Config, DropReason, Instant};
use udp_support::*;

const RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";
const WAIT: Duration = Duration::from_secs(2);

/// (src, dst, ident, seq, data) of an echo reply frame.
fn as_echo_reply(frame: &[u8]) -> (IpAddr, IpAddr, u16, u16, Vec<u8>) {
    let f = wire::parse_frame(frame).expect("valid frame");
    match f.l3 {
        L3::Ipv4 {
            ip,
            l4:
                L4::Icmpv4(Icmpv4Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                }),
        } => (
            ip.src_addr.into(),
            ip.dst_addr.into(),
            ident,
            seq_no,
            data.to_vec(),
        ),
        L3::Ipv6 {
            ip,
            l4:
                L4::Icmpv6(Icmpv6Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                }),
        } => (
            ip.src_addr.into(),
            ip.dst_addr.into(),
            ident,
            seq_no,
            data.to_vec(),
        ),
        other => panic!("not an echo reply: {other:?}"),
    }
}

/// A ping socket of the test's own holding `ident`, so that the engine's
/// socket for the same identifier must take another one.
fn hold_ident(v6: bool, ident: u16) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket/bind calls on local values; results checked.
    unsafe {
        let (af, proto) = if v6 {
            (libc::AF_INET6, libc::IPPROTO_ICMPV6)
        } else {
            (libc::AF_INET, libc::IPPROTO_ICMP)
        };
        let fd = libc::socket(af, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, proto);
        if fd < 0 {
            return None;
        }
        let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
        let r = if v6 {
            let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
            sa.sin6_family = libc::AF_INET6 as _;
            sa.sin6_port = ident.to_be();
            libc::bind(
                fd,
                &sa as *const _ as *const _,
                size_of::<libc::sockaddr_in6>() as _,
            )
        } else {
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as _;
            sa.sin_port = ident.to_be();
            libc::bind(
                fd,
                &sa as *const _ as *const _,
                size_of::<libc::sockaddr_in>() as _,
            )
        };
        (r == 0).then_some(owned)
    }
}

fn ping(h: &mut Harness, src: IpAddr, dst: IpAddr, ident: u16, seq: u16, data: &[u8]) {
    let f = echo_frame(h, src, dst, ident, seq, data);
    h.engine.handle_frame(h.now, &f);
    let frames = h.expect_frames(WAIT);
    assert_eq!(
        frames.len(),
        1,
        "one reply; counters {:?}",
        h.engine.counters()
    );
    assert_eq!(
        as_echo_reply(&frames[0]),
        (dst, src, ident, seq, data.to_vec())
    );
}

#[test]
fn icmp_echo_identifier_and_sequence_preserved() {
    if !enter_private_netns() {
        eprintln!("skipping: cannot create a network namespace (not root)");
        return;
    }
    let mut h = Harness::new(Config::example());
    let g4 = IpAddr::V4(GUEST4);
    let gw4 = IpAddr::V4(GW4);
    // A fresh namespace forbids ping sockets ("1 0"): counted, warned once.
    assert_eq!(
        std::fs::read_to_string(RANGE)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1", "0"]
    );
    let f = echo_frame(&h, g4, gw4, 0x1234, 1, b"x");
    h.engine.handle_frame(h.now, &f);
    assert_eq!(h.engine.counters().ping_not_permitted, 1);
    assert_eq!(h.engine.counters().drops(DropReason::HostSocketError), 1);
    assert!(PING_NOT_PERMITTED_WARNING.contains("ping_group_range"));
    assert!(h.take_frames().is_empty());

    // This namespace's own range: nothing outside it changes.
    std::fs::write(RANGE, "0 2147483647").expect("widen ping_group_range in our netns");

    ping(&mut h, g4, gw4, 0x1234, 7, b"abcdefgh");
    ping(&mut h, g4, gw4, 0x1234, 8, b"");
    assert_eq!(h.engine.icmp().flow_count(), 1);

    // Identifier taken on the host: the kernel rewrites it; the guest
    // still sees its own.
    let _held = hold_ident(false, 0x4321).expect("hold ident");
    ping(&mut h, g4, gw4, 0x4321, 65535, &[0xa5; 1000]);
    assert_eq!(h.engine.icmp().flow_count(), 2);

    if ipv6_loopback() {
        let g6 = IpAddr::V6(GUEST6);
        let gw6 = IpAddr::V6(GW6);
        ping(&mut h, g6, gw6, 0x1234, 7, b"v6 data");
        let _held6 = hold_ident(true, 0x5555).expect("hold ident v6");
        ping(&mut h, g6, gw6, 0x5555, 3, b"v6 rewritten");
        // Link-local guest source, answered link-local to link-local.
        ping(&mut h, IpAddr::V6(GUEST6_LL), gw6, 0x77, 1, b"ll");
        // The guest may not ping the host's loopback directly.
        let f = echo_frame(&h, g6, IpAddr::V6(Ipv6Addr::LOCALHOST), 1, 1, b"");
        h.engine.handle_frame(h.now, &f);
        assert!(h.engine.counters().drops(DropReason::NotForUs) >= 1);
    }
    let c = h.engine.counters();
    assert_eq!(c.echo_requests_sent, c.echo_replies_to_guest);

    // 60 s idle timeout.
    let n = h.engine.icmp().flow_count();
    assert!(n >= 2);
    h.engine.handle_timeout(h.now + Duration::from_secs(59));
    assert_eq!(h.engine.icmp().flow_count(), n);
    h.engine.handle_timeout(h.now + Duration::from_secs(60));
    assert_eq!(h.engine.icmp().flow_count(), 0);
    assert_eq!(h.engine.icmp().poll_timeout(), None);
    // A new request after expiry opens a new flow.
    h.now = Instant::from_secs(100);
    ping(&mut h, g4, gw4, 0x1234, 9, b"again");
}
