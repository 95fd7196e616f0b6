//! One flow table for TCP, UDP and ICMP echo: one limit shared by every
//! protocol, a clean refusal from each when it is full (TCP: RST+ACK; UDP
//! and echo: a counted drop and a destination unreachable, RFC 1812
//! §5.2.7.1 "administratively prohibited"), and one set of flow counters.
//! Driven by hand over `SimHost` so that nothing but the engine decides.

mod guest_frames;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use guest_frames::*;
use passt_engine::wire::TcpFlags;
use passt_engine::{Config, DropReason, Engine, Instant};
use passt_sim::SimHost;

const REMOTE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

fn remote(port: u16) -> SocketAddr {
    SocketAddr::new(REMOTE.into(), port)
}

fn engine(capacity: usize) -> (Engine<SimHost>, Config) {
    let mut c = Config::example();
    c.flow_capacity = capacity;
    let e = Engine::new(c.clone(), SimHost::with_seed(7), 7).expect("engine");
    (e, c)
}

fn take(e: &mut Engine<SimHost>) -> Vec<Seen> {
    let q = e.tx_queue();
    let out = q.iter().map(seen).collect();
    q.clear();
    out
}

/// One flow of each protocol: TCP (connect in progress), UDP, echo.
fn one_of_each(e: &mut Engine<SimHost>, c: &Config, now: Instant) {
    e.handle_frame(now, &syn(c, 40000, remote(80), 1000));
    e.handle_frame(now, &udp(c, 40001, remote(53), b"q"));
    e.flush(now);
    e.handle_frame(now, &echo(c, REMOTE, 7, 1));
    take(e);
}

#[test]
fn a_full_table_refuses_a_new_flow_of_every_protocol_and_counts_it() {
    let (mut e, c) = engine(3);
    let now = Instant::ZERO;
    one_of_each(&mut e, &c, now);
    assert_eq!(
        (
            e.tcp().flow_count(),
            e.udp().flow_count(),
            e.icmp().flow_count()
        ),
        (1, 1, 1)
    );
    assert_eq!(e.counters().flows_opened, 3);

    e.handle_frame(now, &syn(&c, 41000, remote(80), 5000));
    assert_eq!(
        take(&mut e),
        vec![Seen::Tcp(TcpFlags::RST | TcpFlags::ACK, 0, 5001, vec![])],
        "TCP: RST+ACK acknowledging the SYN (RFC 9293 §3.10.7.1)"
    );
    e.handle_frame(now, &udp(&c, 41001, remote(53), b"q"));
    assert_eq!(take(&mut e), vec![Seen::Unreachable(13)], "UDP");
    e.handle_frame(now, &echo(&c, REMOTE, 8, 1));
    assert_eq!(take(&mut e), vec![Seen::Unreachable(13)], "echo");

    let k = e.counters();
    assert_eq!(k.drops(DropReason::FlowTableFull), 3);
    assert_eq!((k.flows_opened, k.flows_closed), (3, 0));
    assert_eq!(
        (
            e.tcp().flow_count(),
            e.udp().flow_count(),
            e.icmp().flow_count()
        ),
        (1, 1, 1),
        "nothing opened beyond the limit"
    );
}

#[test]
fn a_flow_closed_in_one_protocol_frees_room_for_another() {
    let (mut e, c) = engine(3);
    let t0 = Instant::ZERO;
    one_of_each(&mut e, &c, t0);
    // The UDP flow expires (one way, 30 s); the TCP connect times out
    // (10 s, RST to the guest); the echo flow (60 s) stays.
    let later = t0 + Duration::from_secs(31);
    e.handle_timeout(later);
    take(&mut e);
    assert_eq!(
        (
            e.tcp().flow_count(),
            e.udp().flow_count(),
            e.icmp().flow_count()
        ),
        (0, 0, 1)
    );
    assert_eq!(
        (e.counters().flows_opened, e.counters().flows_closed),
        (3, 2)
    );
    // Two places are free: two echo flows fit, the third does not.
    e.handle_frame(later, &echo(&c, REMOTE, 8, 1));
    e.handle_frame(later, &echo(&c, REMOTE, 9, 1));
    assert!(take(&mut e).is_empty());
    e.handle_frame(later, &echo(&c, REMOTE, 10, 1));
    assert_eq!(take(&mut e), vec![Seen::Unreachable(13)]);
    assert_eq!(e.icmp().flow_count(), 3);
    let k = e.counters();
    assert_eq!((k.flows_opened, k.flows_closed), (5, 2));
    assert_eq!(k.drops(DropReason::FlowTableFull), 1);
}

#[test]
fn the_limit_holds_for_tcp_alone_at_the_configured_capacity() {
    let (mut e, c) = engine(5);
    let now = Instant::ZERO;
    for i in 0..8u16 {
        e.handle_frame(now, &syn(&c, 42000 + i, remote(80), 100));
    }
    assert_eq!(e.tcp().flow_count(), 5);
    assert_eq!(e.counters().drops(DropReason::FlowTableFull), 3);
    let rsts = take(&mut e)
        .into_iter()
        .filter(|s| matches!(s, Seen::Tcp(f, ..) if f.contains(TcpFlags::RST)))
        .count();
    assert_eq!(rsts, 3);
}

#[test]
fn a_late_event_for_a_freed_flow_is_ignored_after_its_slot_is_reused() {
    use passt_engine::Readiness;
    use passt_engine::flow::token;
    let (mut e, c) = engine(4);
    let server = remote(5000);
    let rs = e.host_mut().remote_udp_bind(server).expect("remote bind");
    let t0 = Instant::ZERO;
    e.handle_frame(t0, &udp(&c, 40001, server, b"first"));
    e.flush(t0);
    let old = token::flow(token::UDP_FLOW, 0, 0);
    // The flow expires (30 s one way) and a new one takes its slot.
    let t1 = t0 + Duration::from_secs(31);
    e.host_mut().advance(t1);
    e.handle_timeout(t1);
    assert_eq!(e.udp().flow_count(), 0);
    e.handle_frame(t1, &udp(&c, 40002, server, b"second"));
    e.flush(t1);
    let new = token::flow(token::UDP_FLOW, 0, 1);
    assert_eq!(e.counters().flows_opened, 2);
    // The server answers the second flow only.
    let t2 = t1 + Duration::from_secs(1);
    e.host_mut().advance(t2);
    let mut buf = [0u8; 16];
    e.host_mut().remote_udp_recv(rs, &mut buf).expect("first");
    let (_, second) = e.host_mut().remote_udp_recv(rs, &mut buf).expect("second");
    assert_eq!(&buf[..6], b"second");
    e.host_mut()
        .remote_udp_send(rs, b"reply", second)
        .expect("send");
    let t3 = t2 + Duration::from_secs(1);
    e.host_mut().advance(t3);
    take(&mut e);
    let readable = Readiness {
        readable: true,
        ..Readiness::default()
    };
    e.handle_host_event(t3, old, readable);
    assert!(take(&mut e).is_empty(), "the stale token reached nothing");
    e.handle_host_event(t3, new, readable);
    assert_eq!(take(&mut e), vec![Seen::Udp(b"reply".to_vec())]);
}
