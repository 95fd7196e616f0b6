//! Backpressure toward the guest: the engine never reads more from a host
//! socket than its transmit queue has room for. With a queue of two frames,
//! a UDP socket holding 1,000 datagrams and a TCP stream of 200 kB reach
//! the guest whole, across many drains, none of it dropped for a full
//! queue: what does not fit stays in the (simulated) kernel and its
//! level-triggered readiness brings the engine back.
//!
//! The loop is written out by hand (the driver contract in miniature):
//! advance the host, run due timers, hand readiness to the engine while
//! the queue has room, drain the queue to the guest, and go round again at
//! once while anything was ready.

mod guest_frames;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use guest_frames::*;
use passt_engine::host_io::Token;
use passt_engine::wire::TcpFlags;
use passt_engine::{Config, DropReason, Engine, Instant, Readiness};
use passt_sim::SimHost;
use passt_sim::host::RemoteService;
use passt_sim::host::services::pattern_byte;

const REMOTE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const MTU: u16 = 1500;

/// An engine whose transmit queue holds two MTU-sized frames.
fn tiny_queue_engine(seed: u64) -> (Engine<SimHost>, Config) {
    let mut c = Config::example();
    c.mtu = MTU;
    c.tx_queue_frames = 2;
    c.tx_queue_bytes = 2 * (usize::from(MTU) + 14);
    let e = Engine::new(c.clone(), SimHost::with_seed(seed), seed).expect("engine");
    (e, c)
}

/// One round of the loop at `now`: returns the frames drained for the
/// guest and whether any host readiness was pending.
fn round(
    e: &mut Engine<SimHost>,
    now: Instant,
    events: &mut Vec<(Token, Readiness)>,
) -> (Vec<Vec<u8>>, bool) {
    e.host_mut().advance(now);
    // Timers first, into the queue the last round drained (an unsolicited
    // router advertisement must not meet a queue that host data filled).
    if e.poll_timeout().is_some_and(|t| t <= now) {
        e.handle_timeout(now);
    }
    events.clear();
    e.host_mut().take_events(events);
    let ready = !events.is_empty();
    for &(t, r) in events.iter() {
        if e.tx_room() == 0 {
            // Hold the rest: readiness is level-triggered.
            break;
        }
        e.handle_host_event(now, t, r);
    }
    let q = e.tx_queue();
    let frames = q.iter().map(<[u8]>::to_vec).collect();
    q.clear();
    (frames, ready)
}

/// The next instant worth a round after a quiet one.
fn next(e: &Engine<SimHost>, now: Instant) -> Option<Instant> {
    [e.poll_timeout(), e.host().poll_timeout()]
        .into_iter()
        .flatten()
        .min()
        .map(|t| t.max(now))
}

#[test]
fn a_udp_socket_holding_a_thousand_datagrams_delivers_all_of_them_through_a_two_frame_queue() {
    const N: usize = 1000;
    let (mut e, c) = tiny_queue_engine(11);
    let server = SocketAddr::new(IpAddr::V4(REMOTE), 5000);
    let rs = e.host_mut().remote_udp_bind(server).expect("remote bind");
    let mut now = Instant::ZERO;
    e.handle_frame(now, &udp(&c, 40000, server, b"hello"));
    e.flush(now);
    // The remote answers with N datagrams, all of them sitting in the
    // engine's host socket before the engine looks.
    now += Duration::from_secs(1);
    e.host_mut().advance(now);
    let mut buf = [0u8; 64];
    let (_, engine_sock) = e.host_mut().remote_udp_recv(rs, &mut buf).expect("hello");
    for i in 0..N as u32 {
        e.host_mut()
            .remote_udp_send(rs, &i.to_be_bytes(), engine_sock)
            .expect("send");
    }
    now += Duration::from_secs(1);
    e.host_mut().advance(now);

    let mut got = Vec::new();
    let mut events = Vec::new();
    let mut rounds = 0;
    for _ in 0..100_000 {
        let (frames, ready) = round(&mut e, now, &mut events);
        rounds += 1;
        for f in &frames {
            if let Seen::Udp(p) = seen(f) {
                got.push(u32::from_be_bytes(p.try_into().expect("4 bytes")));
            }
        }
        if got.len() == N {
            break;
        }
        if !ready && frames.is_empty() {
            match next(&e, now) {
                Some(t) => now = t.max(now + Duration::from_micros(1)),
                None => break,
            }
        }
    }
    assert_eq!(got.len(), N, "every datagram");
    let out_of_order = got.iter().enumerate().find(|(i, d)| **d != *i as u32);
    assert_eq!(out_of_order, None, "in order, none skipped");
    assert!(
        rounds >= N / 2,
        "the queue of two bounded every read ({rounds} rounds)"
    );
    let k = e.counters();
    assert_eq!(k.drops(DropReason::TxQueueFull), 0);
    assert_eq!(k.total_drops(), 0, "{k:?}");
    assert_eq!(k.udp_to_guest, N as u64);
    assert_eq!(e.host().stats().udp_dropped, 0);
}

#[test]
fn a_tcp_stream_reaches_the_guest_whole_through_a_two_frame_queue() {
    const BYTES: u64 = 200_000;
    let (mut e, c) = tiny_queue_engine(12);
    let server = SocketAddr::new(IpAddr::V4(REMOTE), 80);
    e.host_mut()
        .remote_tcp_serve(server, 16, RemoteService::Source { bytes: BYTES })
        .expect("serve");
    let port = 40000;
    let guest_isn = 1000u32;
    let mut now = Instant::ZERO;
    e.handle_frame(now, &syn(&c, port, server, guest_isn));

    let mut rcv_nxt: Option<u32> = None;
    let mut data = Vec::new();
    let mut fin = false;
    let mut events = Vec::new();
    for _ in 0..1_000_000 {
        let (frames, ready) = round(&mut e, now, &mut events);
        let mut ack = false;
        for f in &frames {
            let Seen::Tcp(flags, seq, _, payload) = seen(f) else {
                continue;
            };
            assert!(!flags.contains(TcpFlags::RST), "reset at {now:?}");
            if flags.contains(TcpFlags::SYN) {
                rcv_nxt = Some(seq.wrapping_add(1));
                ack = true;
                continue;
            }
            let Some(nxt) = rcv_nxt.as_mut() else {
                continue;
            };
            if seq == *nxt && !payload.is_empty() {
                data.extend_from_slice(&payload);
                *nxt = nxt.wrapping_add(payload.len() as u32);
                ack = true;
            }
            if flags.contains(TcpFlags::FIN) && seq.wrapping_add(payload.len() as u32) == *nxt {
                *nxt = nxt.wrapping_add(1);
                fin = true;
                ack = true;
            }
        }
        if ack {
            let a = rcv_nxt.expect("synchronised");
            let flags = if fin {
                TcpFlags::ACK | TcpFlags::FIN
            } else {
                TcpFlags::ACK
            };
            let seq = guest_isn.wrapping_add(1);
            e.handle_frame(now, &tcp(&c, port, server, seq, a, flags, 65535, &[]));
        }
        if fin {
            break;
        }
        if !ready && frames.is_empty() {
            match next(&e, now) {
                Some(t) => now = t.max(now + Duration::from_micros(1)),
                None => break,
            }
        }
    }
    assert!(
        fin,
        "the stream ended with a FIN ({} bytes so far)",
        data.len()
    );
    assert_eq!(data.len() as u64, BYTES);
    let bad = data
        .iter()
        .enumerate()
        .filter(|(i, b)| **b != pattern_byte(*i as u64))
        .count();
    assert_eq!(bad, 0, "bytes in order, none skipped or repeated");
    let k = e.counters();
    assert_eq!(k.drops(DropReason::TxQueueFull), 0);
    assert_eq!(k.tcp_rto_expiries, 0, "nothing had to be retransmitted");
    assert!(
        k.tcp_data_segments_out >= BYTES / 1460,
        "segments of at most the MSS: {}",
        k.tcp_data_segments_out
    );
}
