//! Running out of descriptors on the real kernel (issue #15): with the
//! process's `RLIMIT_NOFILE` lowered to a few above what is open, new TCP,
//! UDP and ICMP echo flows are refused as a full table refuses them (TCP:
//! RST+ACK; UDP and echo: destination unreachable, administratively
//! prohibited) and counted, while an existing UDP flow keeps working.
//!
//! One test in this binary: the limit is the whole process's.
#![cfg(target_os = "linux")]

mod udp_support;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use passt_engine::wire::{self, Icmpv4Repr, IpRepr, L3, L4, TcpFlags, TcpOptions, TcpRepr};
use passt_engine::{Config, DropReason};
use udp_support::*;

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count() as u64
}

fn set_nofile(soft: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let old = lim.rlim_cur;
        lim.rlim_cur = soft;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        old
    }
}

fn syn(h: &Harness, port: u16, dst: SocketAddr) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: port,
        dst_port: dst.port(),
        seq: 1000,
        ack: 0,
        flags: TcpFlags::SYN,
        window: 65535,
        urgent: 0,
        options: TcpOptions::default(),
    };
    let ip = match ip_repr(IpAddr::V4(GUEST4), dst.ip()) {
        IpRepr::V4(mut v4) => {
            v4.protocol = wire::protocol::TCP;
            IpRepr::V4(v4)
        }
        other => other,
    };
    let mut buf = vec![0u8; 128];
    let n = wire::build_tcp(&mut buf, GUEST_MAC, h.our_mac(), ip, &repr, &[]).expect("fits");
    buf.truncate(n);
    buf
}

#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Rst,
    Unreachable(u8),
    Other,
}

fn answer(frame: &[u8]) -> Answer {
    match wire::parse_frame(frame).expect("our frame parses").l3 {
        L3::Ipv4 {
            l4: L4::Tcp { tcp, .. },
            ..
        } if tcp.flags.contains(TcpFlags::RST) => Answer::Rst,
        L3::Ipv4 {
            l4: L4::Icmpv4(Icmpv4Repr::DstUnreachable { code, .. }),
            ..
        } => Answer::Unreachable(code),
        _ => Answer::Other,
    }
}

#[test]
fn out_of_descriptors_new_flows_are_refused_like_a_full_table_and_old_ones_carry_on() {
    if !enter_private_netns() {
        eprintln!("SKIPPED: cannot create a network namespace (not root)");
        return;
    }
    // Ping sockets for everyone in this namespace (its own sysctl).
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")
        .expect("ping_group_range in our netns");
    let mut h = Harness::new(Config::example());
    let peer = UdpSocket::bind("127.0.0.1:0").expect("peer");
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let server = SocketAddr::new(IpAddr::V4(GW4), peer.local_addr().unwrap().port());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let tcp_dst = SocketAddr::new(IpAddr::V4(GW4), listener.local_addr().unwrap().port());

    // An existing UDP flow, answered.
    let existing = SocketAddr::new(IpAddr::V4(GUEST4), 40000);
    h.send_udp(existing, server, b"before");
    let mut buf = [0u8; 64];
    let (n, from) = peer.recv_from(&mut buf).expect("first datagram");
    assert_eq!(&buf[..n], b"before");

    // No descriptor left beyond two.
    let old = set_nofile(open_fds() + 2);
    let mut answers = Vec::new();
    for k in 0..8u16 {
        let f = syn(&h, 41000 + k, tcp_dst);
        h.engine.handle_frame(h.now, &f);
        h.send_udp(
            SocketAddr::new(IpAddr::V4(GUEST4), 42000 + k),
            server,
            b"new",
        );
        let e = echo_frame(&h, IpAddr::V4(GUEST4), IpAddr::V4(GW4), 500 + k, 1, b"x");
        h.engine.handle_frame(h.now, &e);
        h.engine.flush(h.now);
        answers.extend(h.take_frames().iter().map(|f| answer(f)));
        h.now += Duration::from_secs(1);
    }
    // The existing flow still works while new ones are refused.
    peer.send_to(b"reply", from).expect("reply");
    h.pump_until(Duration::from_secs(2), |h| !h.engine.tx_queue().is_empty());
    let back = h.take_frames();
    set_nofile(old);

    let c = h.engine.counters().clone();
    let rsts = answers.iter().filter(|a| **a == Answer::Rst).count();
    let refused = c.drops(DropReason::HostSocketError);
    assert!(
        rsts >= 6,
        "SYNs past the limit get a RST: {answers:?} {c:?}"
    );
    assert!(
        answers.contains(&Answer::Unreachable(13)),
        "UDP and echo past the limit are refused: {answers:?} {c:?}"
    );
    assert!(refused >= 18, "every refusal counted: {c:?}");
    assert_eq!(c.drops(DropReason::FlowTableFull), 0);
    assert!(
        back.iter()
            .any(|f| as_udp(f).is_some_and(|u| u.payload == b"reply")),
        "the existing flow's reply: {c:?}"
    );
    assert_eq!(c.udp_to_guest, 1);
}
