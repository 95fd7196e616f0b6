//! `SimHost` TCP model beyond the conformance scenarios: send-buffer
//! accounting against a slow remote, connect failures, backlog overflow,
//! inbound connections, level-triggered readiness.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use passt_engine::host_io::{HostIo, Interest, Readiness, SockId, Token};
use passt_engine::{HostError, Instant};
use passt_sim::host::{Reach, RemoteService, RemoteTcpState, SinkStats};
use passt_sim::link::LinkConfig;
use passt_sim::{RemoteHostConfig, SimHost, SimHostConfig, SimRng};

const REMOTE: &str = "203.0.113.5";

fn remote_ip() -> IpAddr {
    REMOTE.parse().unwrap()
}

/// Steps through virtual time until `cond` holds or `limit` passes.
fn until(h: &mut SimHost, limit: Duration, mut cond: impl FnMut(&mut SimHost) -> bool) -> bool {
    let deadline = h.now() + limit;
    loop {
        if cond(h) {
            return true;
        }
        match h.poll_timeout() {
            Some(t) if t <= deadline => h.advance(t),
            _ => {
                h.advance(deadline);
                return cond(h);
            }
        }
    }
}

fn connect(h: &mut SimHost, to: SocketAddr) -> SockId {
    let (s, _) = h.tcp_connect(None, to).expect("connect");
    h.set_interest(s, Token(1), Interest::WRITE).unwrap();
    assert!(until(h, Duration::from_secs(5), |h| h
        .readiness_of(s)
        .is_some_and(|r| r.writable)));
    assert_eq!(h.take_error(s), Ok(()));
    s
}

fn small_host(send_buf: usize, remote_recv_buf: usize) -> SimHost {
    let cfg = SimHostConfig {
        send_buf,
        ..SimHostConfig::default()
    };
    let mut h = SimHost::new(cfg, SimRng::from_seed(3).child("host"));
    h.set_remote_host(
        remote_ip(),
        RemoteHostConfig {
            link: LinkConfig {
                bandwidth_bps: None,
                latency: Duration::from_millis(5),
            },
            mss: 1000,
            recv_buf: remote_recv_buf,
            ..RemoteHostConfig::internet()
        },
    );
    h
}

#[test]
fn send_buffer_accounting_with_a_remote_that_does_not_read() {
    let mut h = small_host(10_000, 4_000);
    let addr = SocketAddr::new(remote_ip(), 5000);
    let l = h.remote_tcp_listen(addr, 8).unwrap();
    let s = connect(&mut h, addr);
    let mut conn = None;
    assert!(until(&mut h, Duration::from_secs(1), |h| {
        conn = h.remote_tcp_accept(l).ok().map(|c| c.0);
        conn.is_some()
    }));
    let conn = conn.unwrap();
    let info = h.tcp_info(s).unwrap();
    assert_eq!(
        info.bytes_acked, 1,
        "the SYN counts, as tcpi_bytes_acked does"
    );
    assert_eq!(info.snd_wnd, 4_000);
    assert_eq!(info.snd_mss, 1000);
    assert!(info.rtt_us >= 10_000, "rtt {}", info.rtt_us);

    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    assert_eq!(h.tcp_send(s, &data), Ok(10_000), "partial write");
    assert_eq!(h.tcp_send(s, &data[10_000..]), Err(HostError::WouldBlock));
    let info = h.tcp_info(s).unwrap();
    assert_eq!(
        (info.send_queued, info.send_buf, info.send_space()),
        (10_000, 10_000, 0)
    );
    assert!(!h.readiness_of(s).unwrap().writable);

    // The remote's window (4000) fills; 4000 bytes get acked, 6000 stay.
    h.advance(h.now() + Duration::from_secs(1));
    let info = h.tcp_info(s).unwrap();
    assert_eq!(info.bytes_acked, 1 + 4_000);
    assert_eq!(info.send_queued, 6_000);
    assert_eq!(info.snd_wnd, 0, "zero window");
    // free 4000 >= queued/2: writable again (sk_stream_is_writeable).
    assert!(h.readiness_of(s).unwrap().writable);
    assert_eq!(h.tcp_send(s, &data[10_000..]), Ok(4_000));
    assert!(!h.readiness_of(s).unwrap().writable);

    // The remote drains everything; all 14000 bytes arrive in order.
    let mut got = Vec::new();
    let mut buf = [0u8; 1500];
    assert!(until(&mut h, Duration::from_secs(10), |h| {
        while let Ok(n) = h.remote_tcp_read(conn, &mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        got.len() == 14_000
    }));
    assert_eq!(got, data[..14_000]);
    h.advance(h.now() + Duration::from_millis(20));
    let info = h.tcp_info(s).unwrap();
    assert_eq!((info.send_queued, info.bytes_acked), (0, 1 + 14_000));
    assert_eq!(info.snd_wnd, 4_000, "window reopened");
}

/// A slow reader (100 kB/s) paces a 1 MB upload: the host sees partial
/// writes, `WouldBlock`, and writability again as the remote drains.
#[test]
fn slow_remote_paces_the_sender() {
    let mut h = small_host(64 * 1024, 32 * 1024);
    let addr = SocketAddr::new(remote_ip(), 9);
    let stats = SinkStats::new();
    h.remote_tcp_serve(
        addr,
        8,
        RemoteService::Sink {
            stats: stats.clone(),
            rate: Some(100_000),
        },
    )
    .unwrap();
    let s = connect(&mut h, addr);
    let start = h.now();
    const TOTAL: usize = 1_000_000;
    let data = vec![0x5a; TOTAL];
    let (mut sent, mut partial, mut blocked) = (0, 0, 0);
    let mut events = Vec::new();
    for _ in 0..100_000 {
        if sent == TOTAL {
            break;
        }
        events.clear();
        h.take_events(&mut events);
        if events.iter().any(|(_, r)| r.writable) {
            match h.tcp_send(s, &data[sent..]) {
                Ok(n) => {
                    partial += usize::from(n < TOTAL - sent);
                    sent += n;
                }
                Err(HostError::WouldBlock) => blocked += 1,
                Err(e) => panic!("send: {e:?}"),
            }
            continue;
        }
        let t = h.poll_timeout().expect("something pending");
        h.advance(t);
    }
    assert_eq!(sent, TOTAL);
    assert!(partial > 10, "partial writes: {partial}");
    assert_eq!(blocked, 0, "writable readiness was never a lie");
    h.tcp_shutdown(s, passt_engine::host_io::Shutdown::Write)
        .unwrap();
    assert!(until(&mut h, Duration::from_secs(60), |_| stats.eofs() == 1));
    assert_eq!(stats.bytes(), TOTAL as u64);
    let secs = (h.now() - start).as_secs_f64();
    assert!((9.0..11.5).contains(&secs), "took {secs} s at 100 kB/s");
}

#[test]
fn connect_failures() {
    let mut cfg = SimHostConfig {
        syn_retries: 2,
        ..Default::default()
    };
    cfg.default_remote.link.latency = Duration::from_millis(10);
    let mut h = SimHost::new(cfg, SimRng::from_seed(5));
    let refused: SocketAddr = "192.0.2.1:81".parse().unwrap();
    let unreach: IpAddr = "192.0.2.2".parse().unwrap();
    let hole: IpAddr = "192.0.2.3".parse().unwrap();
    let noroute: IpAddr = "192.0.2.4".parse().unwrap();
    h.set_reach(unreach, Reach::HostUnreachable);
    h.set_reach(hole, Reach::Blackhole);
    h.set_reach(noroute, Reach::NoRoute);
    assert_eq!(
        h.tcp_connect(None, SocketAddr::new(noroute, 80))
            .map(|_| ()),
        Err(HostError::NetworkUnreachable)
    );
    let cases = [
        (
            refused,
            HostError::ConnectionRefused,
            Duration::from_millis(20),
        ),
        (
            SocketAddr::new(unreach, 80),
            HostError::HostUnreachable,
            Duration::from_millis(20),
        ),
        // 1 + 2 + 4 s with two retries.
        (
            SocketAddr::new(hole, 80),
            HostError::TimedOut,
            Duration::from_secs(7),
        ),
    ];
    for (dst, err, after) in cases {
        let t0 = h.now();
        let (s, _) = h.tcp_connect(None, dst).unwrap();
        h.set_interest(s, Token(9), Interest::WRITE).unwrap();
        let mut ev = Vec::new();
        assert!(until(&mut h, Duration::from_secs(200), |h| {
            ev.clear();
            h.take_events(&mut ev) > 0
        }));
        let r = ev[0].1;
        assert!(r.error && r.hangup && r.writable, "{dst}: {r:?}");
        let took = h.now() - t0;
        assert!(
            took >= after && took < after + Duration::from_millis(1),
            "{dst}: {took:?}"
        );
        assert_eq!(h.take_error(s), Err(err), "{dst}");
        assert_eq!(h.take_error(s), Ok(()));
        assert_eq!(h.tcp_send(s, b"x"), Err(HostError::BrokenPipe));
        h.close(s);
    }
}

/// Backlog 0 admits one pending connection; further SYNs are dropped and
/// retried after the SYN timeout, getting in once `accept` made room.
#[test]
fn backlog_overflow_delays_connections() {
    let mut h = SimHost::with_seed(11);
    let l = h
        .tcp_listen("198.51.100.1:8080".parse().unwrap(), 0)
        .unwrap();
    let dst: SocketAddr = "198.51.100.1:8080".parse().unwrap();
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let from = SocketAddr::new(remote_ip(), 40000 + i);
            h.remote_tcp_connect(from, dst).unwrap()
        })
        .collect();
    h.advance(h.now() + Duration::from_millis(500));
    let states: Vec<_> = clients
        .iter()
        .map(|c| h.remote_tcp_state(*c).unwrap())
        .collect();
    assert_eq!(
        states
            .iter()
            .filter(|s| **s == RemoteTcpState::Connected)
            .count(),
        1,
        "{states:?}"
    );
    let (a, peer, local) = h.tcp_accept(l).unwrap();
    assert_eq!(local, dst);
    assert_eq!(peer.ip(), remote_ip());
    assert_eq!(h.tcp_accept(l).map(|_| ()), Err(HostError::WouldBlock));
    // The retry at t = 1 s gets one more in.
    h.advance(Instant::from_millis(1_100));
    assert!(h.tcp_accept(l).is_ok());
    h.advance(Instant::from_millis(3_100));
    assert!(h.tcp_accept(l).is_ok());
    for c in &clients {
        assert_eq!(h.remote_tcp_state(*c).unwrap(), RemoteTcpState::Connected);
    }
    h.close(a);
}

/// An inbound connection through a "forwarded port": the remote writes,
/// the host peeks/discards and answers; readiness is level-triggered and
/// comes in `SockId` order.
#[test]
fn inbound_connection_and_level_triggered_events() {
    let mut h = SimHost::with_seed(12);
    let l1 = h.tcp_listen("0.0.0.0:2222".parse().unwrap(), 8).unwrap();
    let l2 = h.tcp_listen("[::]:2222".parse().unwrap(), 8).unwrap();
    h.set_interest(l1, Token(100), Interest::READ).unwrap();
    h.set_interest(l2, Token(50), Interest::READ).unwrap();
    let c4 = h
        .remote_tcp_connect(
            "203.0.113.9:0".parse().unwrap(),
            "198.51.100.1:2222".parse().unwrap(),
        )
        .unwrap();
    let c6 = h
        .remote_tcp_connect(
            "[2001:db8:9::9]:0".parse().unwrap(),
            "[2001:db8:1::1]:2222".parse().unwrap(),
        )
        .unwrap();
    let mut ev: Vec<(Token, Readiness)> = Vec::new();
    assert!(until(&mut h, Duration::from_secs(1), |h| {
        ev.clear();
        h.take_events(&mut ev) == 2
    }));
    // SockId order (l1 before l2), whatever the tokens.
    assert_eq!(
        ev.iter().map(|e| e.0).collect::<Vec<_>>(),
        [Token(100), Token(50)]
    );
    // Level-triggered: reported again without anything happening.
    let mut again = Vec::new();
    h.take_events(&mut again);
    assert_eq!(again, ev);
    let (s, peer, local) = h.tcp_accept(l1).unwrap();
    assert_eq!(peer.ip(), "203.0.113.9".parse::<IpAddr>().unwrap());
    assert_eq!(local, "198.51.100.1:2222".parse().unwrap());
    let _ = h.tcp_accept(l2).unwrap();
    h.remote_tcp_write(c4, b"GET me\n").unwrap();
    h.set_interest(s, Token(7), Interest::READ).unwrap();
    h.set_interest(l1, Token(100), Interest::NONE).unwrap();
    h.set_interest(l2, Token(50), Interest::NONE).unwrap();
    assert!(until(&mut h, Duration::from_secs(1), |h| {
        ev.clear();
        h.take_events(&mut ev) == 1
    }));
    let mut buf = [0u8; 16];
    let p = h.tcp_peek(s, 0, &mut buf).unwrap();
    assert_eq!(&buf[..p.len], b"GET me\n");
    assert_eq!(h.tcp_discard(s, p.len), Ok(7));
    assert_eq!(h.tcp_send(s, b"ok"), Ok(2));
    h.close(s);
    let mut got = Vec::new();
    assert!(until(&mut h, Duration::from_secs(1), |h| {
        match h.remote_tcp_read(c4, &mut buf) {
            Ok(0) => true,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                false
            }
            Err(_) => false,
        }
    }));
    assert_eq!(got, b"ok");
    h.remote_close(c4);
    h.remote_close(c6);
}
