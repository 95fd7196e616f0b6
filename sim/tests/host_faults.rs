//! Host-side faults on `SimHost` (EAGAIN storms, short I/O, refused
//! connections, reset after N bytes), and determinism: the same seed gives
//! the same event sequence, bit for bit.

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::time::Duration;

use passt_conformance as conformance;
use passt_engine::host_io::{
    Family, HostIo, Interest, Readiness, Shutdown, Token, UdpRecv, UdpSend,
};
use passt_engine::{HostError, Instant};
use passt_sim::fault::{EagainStorm, RefuseConnections, ResetAfter, ShortIo};
use passt_sim::host::dns::{self, DnsResponder};
use passt_sim::host::{RemoteService, SinkStats};
use passt_sim::{HostFaults, SimHost, SimHostConfig, SimRng, SimWorld, TraceHash};

const ECHO: &str = "203.0.113.7:7";
const SINK: &str = "203.0.113.9:9";
const DNS: &str = "192.0.2.53:53";

fn host(seed: u64, faults: HostFaults) -> SimHost {
    let mut h = SimHost::new(
        SimHostConfig::default(),
        SimRng::from_seed(seed).child("host"),
    );
    h.remote_tcp_serve(ECHO.parse().unwrap(), 16, RemoteService::Echo)
        .unwrap();
    h.remote_udp_serve(
        DNS.parse().unwrap(),
        Box::new(DnsResponder::new().with("a.test", "192.0.2.1".parse().unwrap())),
    )
    .unwrap();
    h.set_faults(faults);
    h
}

/// What one event-driven client run saw.
struct Run {
    echoed: Vec<u8>,
    events: TraceHash,
    would_blocks: u64,
    partial_sends: u64,
}

/// An event-driven program on the host: connect to the echo service, send
/// `data`, half-close, read everything back; a DNS query on the side. Only
/// acts on readiness (as the engine does), so a spurious `WouldBlock` must
/// be followed by readiness reported again, or the run stalls.
fn echo_client(h: &mut SimHost, data: &[u8]) -> Run {
    let mut events = TraceHash::new();
    let (s, _) = h.tcp_connect(None, ECHO.parse().unwrap()).unwrap();
    h.set_interest(s, Token(1), Interest::BOTH).unwrap();
    let u = h.udp_bind("0.0.0.0:0".parse().unwrap()).unwrap();
    h.set_interest(u, Token(2), Interest::BOTH).unwrap();
    let query = dns::build_query(5, "a.test", dns::TYPE_A).unwrap();
    let (mut connected, mut sent, mut shut, mut eof, mut dns_done, mut query_sent) =
        (false, 0usize, false, false, false, false);
    let (mut echoed, mut wb, mut partial) = (Vec::new(), 0u64, 0u64);
    let mut buf = vec![0u8; 4096];
    let mut ev: Vec<(Token, Readiness)> = Vec::new();
    for _ in 0..2_000_000 {
        if eof && dns_done {
            break;
        }
        ev.clear();
        h.take_events(&mut ev);
        if ev.is_empty() {
            let t = h.poll_timeout().expect("stalled: nothing pending");
            h.advance(t);
            continue;
        }
        let now = h.now();
        for &(t, r) in &ev {
            let mut enc = t.0.to_le_bytes().to_vec();
            enc.push(r.readable as u8 | (r.writable as u8) << 1 | (r.error as u8) << 2);
            events.record(now, &enc);
        }
        for (t, r) in ev.clone() {
            match t {
                Token(1) => {
                    if !connected && (r.writable || r.error) {
                        assert_eq!(h.take_error(s), Ok(()));
                        connected = true;
                    }
                    if r.writable && sent < data.len() {
                        match h.tcp_send(s, &data[sent..]) {
                            Ok(n) => {
                                partial += u64::from(n < data.len() - sent);
                                sent += n;
                            }
                            Err(HostError::WouldBlock) => wb += 1,
                            Err(e) => panic!("send: {e:?}"),
                        }
                    }
                    if sent == data.len() && !shut {
                        h.tcp_shutdown(s, Shutdown::Write).unwrap();
                        shut = true;
                        h.set_interest(s, Token(1), Interest::READ).unwrap();
                    }
                    if r.readable {
                        match h.tcp_peek(s, 0, &mut buf) {
                            Ok(p) => {
                                echoed.extend_from_slice(&buf[..p.len]);
                                assert_eq!(h.tcp_discard(s, p.len), Ok(p.len));
                                if p.len == 0 && p.fin {
                                    eof = true;
                                    h.set_interest(s, Token(1), Interest::NONE).unwrap();
                                }
                            }
                            Err(HostError::WouldBlock) => wb += 1,
                            Err(e) => panic!("peek: {e:?}"),
                        }
                    }
                }
                Token(2) => {
                    if r.writable && !query_sent {
                        let m = [UdpSend {
                            dst: Some(DNS.parse().unwrap()),
                            payload: &query,
                        }];
                        match h.udp_send_batch(u, &m) {
                            Ok(1) => {
                                query_sent = true;
                                h.set_interest(u, Token(2), Interest::READ).unwrap();
                            }
                            Err(HostError::WouldBlock) => wb += 1,
                            other => panic!("udp send: {other:?}"),
                        }
                    }
                    if r.readable {
                        let mut b = [0u8; 512];
                        let mut slots = [UdpRecv::new(&mut b)];
                        match h.udp_recv_batch(u, &mut slots) {
                            Ok(1) => {
                                let resp =
                                    dns::parse_response(&slots[0].buf[..slots[0].len]).unwrap();
                                assert_eq!(resp.answers.len(), 1);
                                dns_done = true;
                                h.set_interest(u, Token(2), Interest::NONE).unwrap();
                            }
                            Err(HostError::WouldBlock) => wb += 1,
                            other => panic!("udp recv: {other:?}"),
                        }
                    }
                }
                _ => unreachable!(),
            }
        }
    }
    assert!(eof && dns_done, "run did not finish");
    h.close(s);
    h.close(u);
    Run {
        echoed,
        events,
        would_blocks: wb,
        partial_sends: partial,
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 251) as u8).collect()
}

#[test]
fn eagain_storm_loses_nothing_and_readiness_comes_back() {
    let faults = HostFaults {
        eagain: EagainStorm { probability: 0.5 },
        ..HostFaults::none()
    };
    let mut h = host(31, faults);
    let data = payload(300_000);
    let run = echo_client(&mut h, &data);
    assert!(run.echoed == data, "echo intact through the storm");
    assert!(run.would_blocks > 100, "storm hit: {}", run.would_blocks);
    assert_eq!(h.stats().eagain_injected, run.would_blocks);
}

#[test]
fn short_io_cuts_calls_but_keeps_bytes() {
    let faults = HostFaults {
        short_io: ShortIo {
            max_read: NonZeroUsize::new(50),
            max_write: NonZeroUsize::new(100),
        },
        ..HostFaults::none()
    };
    let mut h = host(32, faults);
    let data = payload(20_000);
    let run = echo_client(&mut h, &data);
    assert!(run.echoed == data);
    assert!(
        run.partial_sends >= 199,
        "partial sends {}",
        run.partial_sends
    );
    assert!(h.stats().short_io_injected > 400);
    // Directly: a send takes at most 100, a peek gives at most 50.
    let (s, _) = h.tcp_connect(None, ECHO.parse().unwrap()).unwrap();
    h.advance(h.now() + Duration::from_millis(100));
    assert_eq!(h.tcp_send(s, &[1u8; 1000]), Ok(100));
    h.advance(h.now() + Duration::from_millis(100));
    let mut buf = [0u8; 1000];
    assert_eq!(h.tcp_peek(s, 0, &mut buf).map(|p| p.len), Ok(50));
}

#[test]
fn refused_ports_and_probability() {
    let faults = HostFaults {
        refuse: RefuseConnections {
            probability: 0.0,
            ports: BTreeSet::from([7]),
        },
        ..HostFaults::none()
    };
    let mut h = host(33, faults);
    let (s, _) = h.tcp_connect(None, ECHO.parse().unwrap()).unwrap();
    h.advance(h.now() + Duration::from_millis(100));
    assert_eq!(h.take_error(s), Err(HostError::ConnectionRefused));
    assert_eq!(h.stats().refused_injected, 1);
    h.close(s);
    // Certain refusal, any port.
    h.set_faults(HostFaults {
        refuse: RefuseConnections {
            probability: 1.0,
            ports: BTreeSet::new(),
        },
        ..HostFaults::none()
    });
    let (s, _) = h.tcp_connect(None, SINK.parse().unwrap()).unwrap();
    h.advance(h.now() + Duration::from_millis(100));
    assert_eq!(h.take_error(s), Err(HostError::ConnectionRefused));
    h.close(s);
    // Faults off: the echo service answers.
    h.set_faults(HostFaults::none());
    let (s, _) = h.tcp_connect(None, ECHO.parse().unwrap()).unwrap();
    h.advance(h.now() + Duration::from_millis(100));
    assert_eq!(h.take_error(s), Ok(()));
    assert!(h.readiness_of(s).unwrap().writable);
}

#[test]
fn reset_after_n_bytes() {
    let faults = HostFaults {
        reset_after: Some(ResetAfter { bytes: 10_000 }),
        ..HostFaults::none()
    };
    let mut h = host(34, faults);
    let stats = SinkStats::new();
    h.remote_tcp_serve(
        SINK.parse().unwrap(),
        4,
        RemoteService::Sink {
            stats: stats.clone(),
            rate: None,
        },
    )
    .unwrap();
    let (s, _) = h.tcp_connect(None, SINK.parse().unwrap()).unwrap();
    h.advance(h.now() + Duration::from_millis(100));
    assert_eq!(h.take_error(s), Ok(()));
    assert_eq!(h.tcp_send(s, &payload(50_000)), Ok(50_000));
    h.advance(h.now() + Duration::from_secs(1));
    let r = h.readiness_of(s).unwrap();
    assert!(r.error && r.hangup, "{r:?}");
    assert_eq!(h.tcp_send(s, b"x"), Err(HostError::ConnectionReset));
    assert_eq!(h.tcp_send(s, b"x"), Err(HostError::BrokenPipe));
    assert_eq!(h.stats().resets_injected, 1);
    let got = stats.bytes();
    assert!((10_000..50_000).contains(&got), "sink got {got}");
    h.close(s);
}

fn deterministic_run(seed: u64) -> (u64, u64, u64) {
    let faults = HostFaults {
        eagain: EagainStorm { probability: 0.2 },
        short_io: ShortIo {
            max_read: None,
            max_write: NonZeroUsize::new(3000),
        },
        ..HostFaults::none()
    };
    let mut h = host(seed, faults);
    let run = echo_client(&mut h, &payload(100_000));
    // And the conformance scenarios in a world of the same seed.
    let mut w = SimWorld::new(SimHost::with_seed(seed));
    for (n, scenario) in conformance::all::<SimWorld>() {
        if let Err(f) = scenario(&mut w, Family::V4) {
            panic!("{n}: {f}");
        }
    }
    let w = w.into_host();
    (
        h.trace_hash().value(),
        run.events.value(),
        w.trace_hash().value(),
    )
}

#[test]
fn same_seed_same_trace() {
    let a = deterministic_run(0xd00d);
    let b = deterministic_run(0xd00d);
    assert_eq!(
        a, b,
        "same seed, same internal events, readiness and scenario traces"
    );
    let c = deterministic_run(0xd00e);
    assert_ne!(a.0, c.0, "another seed draws other ports and faults");
    assert_ne!(a.2, c.2);
}

/// Time never goes backwards and nothing is scheduled in the past.
#[test]
fn clock_is_monotonic() {
    let mut h = host(35, HostFaults::none());
    let _ = echo_client(&mut h, &payload(10_000));
    let t = h.now();
    h.advance(Instant::ZERO);
    assert_eq!(h.now(), t);
    assert_eq!(h.scheduled_in_past(), 0);
}
