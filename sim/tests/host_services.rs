//! Remote services on the simulated internet, used through host sockets:
//! DNS over UDP, echo, source, HTTP-ish, scripted peers (both directions),
//! and ping to remote hosts.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use passt_engine::HostError;
use passt_engine::host_io::{Family, HostIo, Interest, Shutdown, SockId, Token, UdpRecv, UdpSend};
use passt_sim::SimHost;
use passt_sim::host::dns::{self, DnsResponder};
use passt_sim::host::services::pattern_byte;
use passt_sim::host::{PeerScript, PeerScriptStatus, PeerStep, Reach, RemoteService};

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
    assert!(until(h, Duration::from_secs(5), |h| h
        .readiness_of(s)
        .is_some_and(|r| r.writable || r.error)));
    assert_eq!(h.take_error(s), Ok(()));
    s
}

/// Sends all of `data` (stepping time when the buffer is full) and reads
/// until end of stream; returns what was read.
fn exchange(h: &mut SimHost, s: SockId, data: &[u8], shut: bool) -> Vec<u8> {
    let mut sent = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 8192];
    let mut shut_done = false;
    assert!(until(h, Duration::from_secs(60), |h| {
        if sent < data.len() {
            if let Ok(n) = h.tcp_send(s, &data[sent..]) {
                sent += n;
            }
        } else if shut && !shut_done {
            h.tcp_shutdown(s, Shutdown::Write).unwrap();
            shut_done = true;
        }
        loop {
            match h.tcp_peek(s, 0, &mut buf) {
                Ok(p) => {
                    got.extend_from_slice(&buf[..p.len]);
                    h.tcp_discard(s, p.len).unwrap();
                    if p.len == 0 && p.fin {
                        return true;
                    }
                }
                Err(HostError::WouldBlock) => return false,
                Err(e) => panic!("peek: {e:?}"),
            }
        }
    }));
    got
}

#[test]
fn dns_responder_round_trip() {
    let mut h = SimHost::with_seed(21);
    let server: SocketAddr = "192.0.2.53:53".parse().unwrap();
    let a: IpAddr = "203.0.113.80".parse().unwrap();
    let aaaa: IpAddr = "2001:db8:80::1".parse().unwrap();
    h.remote_udp_serve(
        server,
        Box::new(
            DnsResponder::new()
                .with("www.example.test", a)
                .with("www.example.test", aaaa),
        ),
    )
    .unwrap();
    let u = h.udp_bind("0.0.0.0:0".parse().unwrap()).unwrap();
    h.udp_connect(u, server).unwrap();
    let local = h.local_addr(u).unwrap();
    assert_eq!(
        local.ip(),
        "198.51.100.1".parse::<IpAddr>().unwrap(),
        "source fixed by connect"
    );
    let q1 = dns::build_query(0x1111, "WWW.example.test", dns::TYPE_A).unwrap();
    let q2 = dns::build_query(0x2222, "www.example.test.", dns::TYPE_AAAA).unwrap();
    let q3 = dns::build_query(0x3333, "nope.example.test", dns::TYPE_A).unwrap();
    let garbage = [0x44u8, 0x44, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xff];
    let msgs = [&q1[..], &q2[..], &q3[..], &garbage[..]].map(|p| UdpSend {
        dst: None,
        payload: p,
    });
    assert_eq!(h.udp_send_batch(u, &msgs), Ok(4));
    h.set_interest(u, Token(1), Interest::READ).unwrap();
    let t0 = h.now();
    let mut ev = Vec::new();
    assert!(until(&mut h, Duration::from_secs(1), |h| {
        ev.clear();
        h.take_events(&mut ev) > 0
    }));
    assert!(
        h.now() - t0 >= Duration::from_millis(20),
        "a round trip of 2 × 10 ms"
    );
    h.advance(h.now() + Duration::from_millis(1));
    let mut bufs = [[0u8; 512]; 5];
    let mut slots: Vec<UdpRecv<'_>> = bufs.iter_mut().map(|b| UdpRecv::new(b)).collect();
    assert_eq!(h.udp_recv_batch(u, &mut slots), Ok(4));
    let parsed: Vec<_> = slots[..4]
        .iter()
        .map(|s| {
            assert_eq!(s.src, Some(server));
            dns::parse_response(&s.buf[..s.len]).unwrap()
        })
        .collect();
    assert_eq!(
        (parsed[0].id, parsed[0].rcode),
        (0x1111, dns::RCODE_NOERROR)
    );
    assert_eq!(parsed[0].answers, vec![(a, 300)]);
    assert_eq!(parsed[1].answers, vec![(aaaa, 300)]);
    assert_eq!(
        (parsed[2].id, parsed[2].rcode),
        (0x3333, dns::RCODE_NXDOMAIN)
    );
    assert_eq!(
        (parsed[3].id, parsed[3].rcode),
        (0x4444, dns::RCODE_FORMERR)
    );
}

#[test]
fn udp_to_a_closed_remote_port_and_an_unreachable_host() {
    let mut h = SimHost::with_seed(22);
    let dead: IpAddr = "192.0.2.99".parse().unwrap();
    h.set_reach(dead, Reach::HostUnreachable);
    let u = h.udp_bind("0.0.0.0:0".parse().unwrap()).unwrap();
    let closed: SocketAddr = "192.0.2.1:9999".parse().unwrap();
    let send = |h: &mut SimHost, dst| {
        h.udp_send_batch(
            u,
            &[UdpSend {
                dst: Some(dst),
                payload: b"x",
            }],
        )
    };
    assert_eq!(send(&mut h, closed), Ok(1));
    assert_eq!(send(&mut h, SocketAddr::new(dead, 53)), Ok(1));
    h.advance(h.now() + Duration::from_millis(50));
    let mut b = [0u8; 8];
    let mut slots = [UdpRecv::new(&mut b)];
    // The router's host unreachable (at 2 × 10 ms) comes just before the
    // destination's port unreachable (10 ms + serialization, then 10 ms);
    // SO_ERROR holds the latest.
    assert_eq!(
        h.udp_recv_batch(u, &mut slots),
        Err(HostError::ConnectionRefused),
        "latest error"
    );
    let first = h.udp_recv_error(u).unwrap().unwrap();
    assert_eq!((first.icmp_type, first.icmp_code), (3, 1));
    assert_eq!(first.error, HostError::HostUnreachable);
    let second = h.udp_recv_error(u).unwrap().unwrap();
    assert_eq!(
        (second.icmp_type, second.icmp_code, second.dst),
        (3, 3, closed)
    );
    assert_eq!(second.error, HostError::ConnectionRefused);
    assert_eq!(second.origin, Some(closed.ip()));
    assert_eq!(h.udp_recv_error(u), Ok(None));
}

#[test]
fn echo_source_and_http() {
    let mut h = SimHost::with_seed(23);
    let echo: SocketAddr = "[2001:db8:e::7]:7".parse().unwrap();
    let source: SocketAddr = "203.0.113.19:19".parse().unwrap();
    let http: SocketAddr = "203.0.113.80:80".parse().unwrap();
    h.remote_tcp_serve(echo, 16, RemoteService::Echo).unwrap();
    h.remote_tcp_serve(source, 16, RemoteService::Source { bytes: 300_000 })
        .unwrap();
    h.remote_tcp_serve(http, 16, RemoteService::Http { body_len: 5000 })
        .unwrap();

    let s = connect(&mut h, echo);
    let data: Vec<u8> = (0..400_000u64).map(|i| pattern_byte(i * 7)).collect();
    let back = exchange(&mut h, s, &data, true);
    assert_eq!(back.len(), data.len());
    assert!(back == data, "echo returns the same bytes");
    h.close(s);

    let s = connect(&mut h, source);
    let got = exchange(&mut h, s, b"", false);
    assert_eq!(got.len(), 300_000);
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, b)| *b == pattern_byte(i as u64))
    );
    h.close(s);

    let s = connect(&mut h, http);
    let got = exchange(&mut h, s, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", false);
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = std::str::from_utf8(&got[..head_end]).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: 5000\r\n"));
    assert_eq!(got.len() - head_end, 5000);
    h.close(s);
}

/// A scripted server: the host connects, the script checks what it gets.
#[test]
fn scripted_server_passes_and_fails() {
    let mut h = SimHost::with_seed(24);
    let addr: SocketAddr = "203.0.113.5:4000".parse().unwrap();
    let script = PeerScript::new(vec![
        PeerStep::Expect(b"ping".to_vec()),
        PeerStep::Wait(Duration::from_millis(100)),
        PeerStep::Send(b"pong".to_vec()),
        PeerStep::ExpectEof,
        PeerStep::Close,
    ]);
    let report = script.report();
    h.remote_tcp_serve(addr, 4, RemoteService::Scripted(script))
        .unwrap();
    let s = connect(&mut h, addr);
    let t0 = h.now();
    let got = exchange(&mut h, s, b"ping", true);
    assert_eq!(got, b"pong");
    assert!(
        h.now() - t0 >= Duration::from_millis(100),
        "the Wait step waited"
    );
    h.advance(h.now() + Duration::from_millis(100));
    assert_eq!(report.status(), PeerScriptStatus::Passed);
    assert_eq!(report.received(), b"ping");
    h.close(s);

    // A wrong request: the script fails and resets the connection.
    let s = connect(&mut h, addr);
    assert_eq!(h.tcp_send(s, b"pong"), Ok(4));
    h.advance(h.now() + Duration::from_millis(100));
    assert_eq!(
        report.status(),
        PeerScriptStatus::Failed {
            step: 0,
            reason: "unexpected bytes".into()
        }
    );
    assert_eq!(report.runs(), 2);
    let mut b = [0u8; 4];
    assert_eq!(h.tcp_peek(s, 0, &mut b), Err(HostError::ConnectionReset));
    h.close(s);
}

/// A scripted client connecting in through a forwarded port.
#[test]
fn scripted_client_connects_inbound() {
    let mut h = SimHost::with_seed(25);
    let l = h.tcp_listen("0.0.0.0:8022".parse().unwrap(), 4).unwrap();
    let script = PeerScript::new(vec![
        PeerStep::Send(b"hello".to_vec()),
        PeerStep::Expect(b"world".to_vec()),
        PeerStep::ShutdownWrite,
        PeerStep::ExpectEof,
    ]);
    let report = script.report();
    h.remote_tcp_connect_app(
        "203.0.113.77:0".parse().unwrap(),
        "198.51.100.1:8022".parse().unwrap(),
        script.into_app(),
    )
    .unwrap();
    let mut acc = None;
    assert!(until(&mut h, Duration::from_secs(1), |h| {
        acc = h.tcp_accept(l).ok();
        acc.is_some()
    }));
    let (s, peer, _) = acc.unwrap();
    assert_eq!(peer.ip(), "203.0.113.77".parse::<IpAddr>().unwrap());
    let got = exchange(&mut h, s, b"world", false);
    assert_eq!(got, b"hello", "read until the script's FIN");
    h.close(s);
    h.advance(h.now() + Duration::from_millis(100));
    assert_eq!(report.status(), PeerScriptStatus::Passed);
}

#[test]
fn ping_remote_hosts() {
    let mut h = SimHost::with_seed(26);
    let quiet: IpAddr = "192.0.2.8".parse().unwrap();
    let mut cfg = h.config().default_remote.clone();
    cfg.answers_ping = false;
    h.set_remote_host(quiet, cfg);
    let p = h.ping_open(Family::V4, 77).unwrap();
    let msg = [8u8, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3];
    h.ping_send(p, "192.0.2.7".parse().unwrap(), &msg).unwrap();
    h.ping_send(p, quiet, &msg).unwrap();
    assert_eq!(
        h.ping_send(p, quiet, &[0u8; 8]),
        Err(HostError::Other(22)),
        "not a request"
    );
    h.advance(h.now() + Duration::from_millis(100));
    let mut buf = [0u8; 64];
    let (n, src) = h.ping_recv(p, &mut buf).unwrap();
    assert_eq!((n, src), (msg.len(), "192.0.2.7".parse().unwrap()));
    assert_eq!(u16::from_be_bytes([buf[4], buf[5]]), 77);
    // The checksum verifies (RFC 1071: the sum over the message is 0).
    let mut sum = 0u32;
    for c in buf[..n].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    assert_eq!(sum, 0xffff);
    assert_eq!(
        h.ping_recv(p, &mut buf),
        Err(HostError::WouldBlock),
        "the quiet host stays quiet"
    );
    // A second socket asking for the same id gets another one.
    let p2 = h.ping_open(Family::V4, 77).unwrap();
    assert_ne!(h.local_addr(p2).unwrap().port(), 77);
}
