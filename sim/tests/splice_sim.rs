//! pasta's loopback fast path in the simulator: the engine over `SimHost`,
//! whose guest namespace (`Netns::Guest`) is a second namespace with its
//! own loopback. Spliced flows carry data both ways byte-exact under the
//! host-side faults (EAGAIN storms, short reads and writes), resets
//! propagate, and the same seed gives the same run.
//!
//! Reproduce a failure with the seed it prints:
//! `PASST_SIM_SEED=N cargo test -p passt-sim --test splice_sim`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use passt_engine::host_io::{Shutdown, Token};
use passt_engine::{Config, Engine, HostError, Instant, Netns, Readiness, Splice};
use passt_sim::fault::{EagainStorm, ShortIo};
use passt_sim::host::{RemoteService, RemoteSock, RemoteTcpState};
use passt_sim::{HostFaults, SimHost, SimHostConfig, SimRng};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal")
}

fn seed_or(default: u64) -> u64 {
    std::env::var("PASST_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn faults() -> HostFaults {
    HostFaults {
        eagain: EagainStorm { probability: 0.3 },
        short_io: ShortIo {
            max_read: NonZeroUsize::new(3000),
            max_write: NonZeroUsize::new(7000),
        },
        ..HostFaults::none()
    }
}

/// An engine with splicing on, `-t 127.0.0.1:5000 -> 6000` and
/// `-T [::1]:7000 -> 8000`, an echo service on each side's loopback.
fn setup(seed: u64, faults: HostFaults) -> Engine<SimHost> {
    let mut host = SimHost::new(
        SimHostConfig::default(),
        SimRng::from_seed(seed).child("host"),
    );
    host.remote_tcp_serve_in(
        Netns::Guest,
        addr("127.0.0.1:6000"),
        16,
        RemoteService::Echo,
    )
    .expect("echo in the namespace");
    host.remote_tcp_serve(addr("[::1]:8000"), 16, RemoteService::Echo)
        .expect("echo on the host");
    host.set_faults(faults);
    let mut config = Config::example();
    config.splice = Splice::On;
    let mut engine = Engine::new(config, host, seed).expect("engine");
    engine.tcp_listen(addr("127.0.0.1:5000"), 6000).expect("-t");
    engine
        .tcp_listen_outbound(addr("[::1]:7000"), 8000)
        .expect("-T");
    engine
}

/// One step of the loop at `now`; the next time anything is due.
fn step(
    engine: &mut Engine<SimHost>,
    now: Instant,
    events: &mut Vec<(Token, Readiness)>,
) -> Option<Instant> {
    engine.host_mut().advance(now);
    events.clear();
    engine.host_mut().take_events(events);
    for &(t, r) in events.iter() {
        engine.handle_host_event(now, t, r);
    }
    if engine.poll_timeout().is_some_and(|t| t <= now) {
        engine.handle_timeout(now);
    }
    [engine.poll_timeout(), engine.host().poll_timeout()]
        .into_iter()
        .flatten()
        .min()
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i / 251) as u8 ^ salt)
        .collect()
}

/// A client that writes `data`, half-closes, and reads until end of
/// stream.
struct Client {
    sock: RemoteSock,
    data: Vec<u8>,
    sent: usize,
    shut: bool,
    got: Vec<u8>,
    eof: bool,
    error: Option<HostError>,
}

impl Client {
    fn poll(&mut self, h: &mut SimHost) {
        if self.eof || self.error.is_some() {
            return;
        }
        match h.remote_tcp_state(self.sock) {
            Ok(RemoteTcpState::Connected) => {}
            Ok(RemoteTcpState::Closed(e)) => {
                self.error = Some(e.unwrap_or(HostError::ConnectionReset));
                return;
            }
            _ => return,
        }
        while self.sent < self.data.len() {
            match h.remote_tcp_write(self.sock, &self.data[self.sent..]) {
                Ok(n) if n > 0 => self.sent += n,
                _ => break,
            }
        }
        if self.sent == self.data.len() && !self.shut {
            h.remote_tcp_shutdown(self.sock, Shutdown::Write)
                .expect("shutdown");
            self.shut = true;
        }
        let mut buf = [0u8; 65536];
        loop {
            match h.remote_tcp_read(self.sock, &mut buf) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(HostError::WouldBlock) => break,
                Err(e) => {
                    self.error = Some(e);
                    break;
                }
            }
        }
    }
}

/// Runs until every client saw end of stream or an error (bounded in
/// steps and virtual time); the virtual time it ended at.
fn run(engine: &mut Engine<SimHost>, clients: &mut [Client], seed: u64) -> Instant {
    let mut events = Vec::new();
    let mut now = Instant::ZERO;
    for _ in 0..2_000_000 {
        let next = step(engine, now, &mut events);
        for c in clients.iter_mut() {
            c.poll(engine.host_mut());
        }
        if clients.iter().all(|c| c.eof || c.error.is_some()) {
            return now;
        }
        now = match next {
            Some(t) if t > now => t,
            _ => now + Duration::from_micros(10),
        };
        assert!(
            now < Instant::from_millis(120_000),
            "stalled at {now:?}; reproduce with PASST_SIM_SEED={seed}"
        );
    }
    panic!("step bound reached; reproduce with PASST_SIM_SEED={seed}");
}

fn client(h: &mut SimHost, ns: Netns, from: &str, to: &str, data: Vec<u8>) -> Client {
    let sock = h
        .remote_tcp_connect_in(ns, addr(from), addr(to))
        .expect("connect");
    Client {
        sock,
        data,
        sent: 0,
        shut: false,
        got: Vec::new(),
        eof: false,
        error: None,
    }
}

/// Runs both directions (`-t` and `-T`) with `len` bytes each; the
/// engine and the clients afterwards.
fn both_ways(seed: u64, faults: HostFaults, len: usize) -> (Engine<SimHost>, Vec<Client>) {
    let mut engine = setup(seed, faults);
    let h = engine.host_mut();
    let mut clients = vec![
        client(
            h,
            Netns::Host,
            "127.0.0.1:0",
            "127.0.0.1:5000",
            pattern(len, 1),
        ),
        client(h, Netns::Guest, "[::1]:0", "[::1]:7000", pattern(len, 2)),
    ];
    run(&mut engine, &mut clients, seed);
    // Let the last FINs and ACKs settle so the flows close.
    let mut events = Vec::new();
    let mut now = engine.host().now();
    for _ in 0..10_000 {
        match step(&mut engine, now, &mut events) {
            Some(t) if t > now => now = t,
            Some(_) => now += Duration::from_micros(10),
            None => break,
        }
        if engine.tcp().splices().is_empty() {
            break;
        }
    }
    (engine, clients)
}

#[test]
fn spliced_flows_carry_data_both_ways_byte_exact_under_host_faults() {
    let seed = seed_or(0x5e1ce);
    const LEN: usize = 2 << 20;
    let (engine, clients) = both_ways(seed, faults(), LEN);
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(c.error, None, "client {i}; PASST_SIM_SEED={seed}");
        assert!(c.eof, "client {i} saw the echo's FIN");
        assert_eq!(c.got.len(), LEN, "client {i}; PASST_SIM_SEED={seed}");
        assert!(
            c.got == c.data,
            "client {i} byte-exact; PASST_SIM_SEED={seed}"
        );
    }
    let counters = engine.counters();
    assert_eq!(counters.tcp_splice_opened, 2);
    assert_eq!(counters.tcp_splice_bytes, 4 * LEN as u64);
    assert_eq!(counters.tcp_splice_resets, 0);
    assert_eq!(counters.frames_out, 0, "nothing crossed the guest side");
    assert!(engine.tcp().splices().is_empty(), "both flows closed");
    let stats = engine.host().stats();
    assert!(stats.eagain_injected > 100, "storm hit: {stats:?}");
    assert!(stats.short_io_injected > 100, "short I/O hit: {stats:?}");
}

#[test]
fn the_same_seed_splices_the_same_run() {
    let seed = seed_or(77);
    let a = both_ways(seed, faults(), 256 << 10).0;
    let b = both_ways(seed, faults(), 256 << 10).0;
    assert_eq!(a.host().now(), b.host().now());
    assert_eq!(
        a.host().trace_hash().value(),
        b.host().trace_hash().value(),
        "PASST_SIM_SEED={seed}"
    );
    assert_eq!(a.counters(), b.counters());
}

#[test]
fn a_reset_in_the_namespace_reaches_the_host_side_client_as_a_reset() {
    let seed = seed_or(5);
    let mut host = SimHost::new(
        SimHostConfig::default(),
        SimRng::from_seed(seed).child("host"),
    );
    let server = host
        .remote_tcp_listen_in(Netns::Guest, addr("127.0.0.1:6000"), 4)
        .expect("listen");
    let mut config = Config::example();
    config.splice = Splice::On;
    let mut engine = Engine::new(config, host, seed).expect("engine");
    engine.tcp_listen(addr("127.0.0.1:5000"), 6000).expect("-t");
    let mut c = client(
        engine.host_mut(),
        Netns::Host,
        "127.0.0.1:0",
        "127.0.0.1:5000",
        Vec::new(),
    );
    let mut events = Vec::new();
    let mut now = Instant::ZERO;
    let mut accepted = None;
    for _ in 0..100_000 {
        let next = step(&mut engine, now, &mut events);
        let h = engine.host_mut();
        if accepted.is_none()
            && let Ok((s, _)) = h.remote_tcp_accept(server)
        {
            h.remote_tcp_abort(s);
            accepted = Some(());
        }
        c.poll(h);
        if c.error.is_some() || c.eof {
            break;
        }
        now = match next {
            Some(t) if t > now => t,
            _ => now + Duration::from_micros(10),
        };
    }
    assert!(
        accepted.is_some(),
        "the namespace's server got the connection"
    );
    assert_eq!(c.error, Some(HostError::ConnectionReset), "not a FIN");
    assert_eq!(engine.counters().tcp_splice_resets, 1);
}

#[test]
fn the_namespace_loopback_is_not_the_hosts() {
    let mut host = SimHost::new(SimHostConfig::default(), SimRng::from_seed(1));
    host.remote_tcp_listen_in(Netns::Guest, addr("127.0.0.1:6000"), 4)
        .expect("listen in the namespace");
    // The same port on the host's loopback is free, and a connect there
    // finds nobody.
    host.remote_tcp_listen(addr("127.0.0.1:6000"), 4)
        .expect("the host's own port 6000");
    assert!(
        host.remote_tcp_listen_in(Netns::Guest, addr("127.0.0.1:6000"), 4)
            .is_err(),
        "taken in the namespace"
    );
    // Nothing but the loopback in there.
    assert_eq!(
        host.remote_tcp_connect_in(Netns::Guest, addr("127.0.0.1:0"), addr("203.0.113.7:7"))
            .err(),
        Some(HostError::NetworkUnreachable)
    );
}

/// An engine with `-t 0.0.0.0:5000 -> 6000` under `mode`, a sink in the
/// namespace; a connection from `from` to `to`: what the client saw after
/// a few virtual milliseconds, and the engine.
fn connect_under(mode: Splice, from: &str, to: &str) -> (Client, Engine<SimHost>) {
    let mut host = SimHost::new(SimHostConfig::default(), SimRng::from_seed(9));
    host.remote_tcp_serve_in(Netns::Guest, addr("127.0.0.1:6000"), 4, RemoteService::Echo)
        .expect("echo");
    let mut config = Config::example();
    config.splice = mode;
    let mut engine = Engine::new(config, host, 9).expect("engine");
    engine.tcp_listen(addr("0.0.0.0:5000"), 6000).expect("-t");
    let mut c = client(engine.host_mut(), Netns::Host, from, to, b"ping".to_vec());
    let mut events = Vec::new();
    let mut now = Instant::ZERO;
    while now < Instant::from_millis(50) {
        let next = step(&mut engine, now, &mut events);
        c.poll(engine.host_mut());
        now = match next {
            Some(t) if t > now && t < Instant::from_millis(50) => t,
            _ => now + Duration::from_micros(100),
        };
    }
    (c, engine)
}

#[test]
fn without_splicing_a_loopback_peer_goes_to_the_guest() {
    let (c, engine) = connect_under(Splice::Off, "127.0.0.1:0", "127.0.0.1:5000");
    assert_eq!(engine.counters().tcp_splice_opened, 0);
    assert_eq!(engine.tcp().flow_count(), 1, "a flow toward the guest");
    assert!(
        engine.counters().frames_out >= 1,
        "its SYN went to the guest"
    );
    assert!(
        c.got.is_empty() && c.error.is_none(),
        "no guest answers here"
    );
}

#[test]
fn splice_only_refuses_a_peer_off_loopback_and_splices_a_loopback_one() {
    let (c, engine) = connect_under(Splice::Only, "203.0.113.7:0", "198.51.100.1:5000");
    assert_eq!(c.error, Some(HostError::ConnectionReset));
    assert_eq!(engine.counters().tcp_splice_refused, 1);
    assert_eq!(engine.counters().frames_out, 0);
    let (c, engine) = connect_under(Splice::Only, "127.0.0.1:0", "127.0.0.1:5000");
    assert_eq!(c.error, None);
    assert_eq!(c.got, b"ping", "echoed through the splice");
    assert_eq!(engine.counters().tcp_splice_opened, 1);
}

#[test]
fn udp_datagrams_are_relayed_both_ways_and_the_flows_expire() {
    let seed = seed_or(11);
    let mut host = SimHost::new(
        SimHostConfig::default(),
        SimRng::from_seed(seed).child("host"),
    );
    let ns_echo = host
        .remote_udp_bind_in(Netns::Guest, addr("127.0.0.1:6300"))
        .expect("bind in the namespace");
    let host_echo = host.remote_udp_bind(addr("[::1]:8300")).expect("bind");
    let c1 = host.remote_udp_bind(addr("127.0.0.1:0")).expect("bind");
    let c2 = host
        .remote_udp_bind_in(Netns::Guest, addr("[::1]:0"))
        .expect("bind");
    let mut config = Config::example();
    config.splice = Splice::On;
    config.udp_timeout = Duration::from_secs(5);
    config.udp_timeout_bidir = Duration::from_secs(5);
    let mut engine = Engine::new(config, host, seed).expect("engine");
    engine.udp_listen(addr("127.0.0.1:5300"), 6300).expect("-u");
    engine
        .udp_listen_outbound(addr("[::1]:7300"), 8300)
        .expect("-U");
    const N: usize = 100;
    let msg = |i: usize| pattern(1 + i * 131 % 4000, i as u8);
    for i in 0..N {
        let h = engine.host_mut();
        h.remote_udp_send(c1, &msg(i), addr("127.0.0.1:5300"))
            .expect("send");
        h.remote_udp_send(c2, &msg(i), addr("[::1]:7300"))
            .expect("send");
    }
    let mut events = Vec::new();
    let mut now = Instant::ZERO;
    let mut got: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
    let mut buf = vec![0u8; 65536];
    while now < Instant::from_millis(200) {
        let next = step(&mut engine, now, &mut events);
        let h = engine.host_mut();
        for echo in [ns_echo, host_echo] {
            while let Ok((n, from)) = h.remote_udp_recv(echo, &mut buf) {
                h.remote_udp_send(echo, &buf[..n], from).expect("echo");
            }
        }
        for (k, c) in [c1, c2].into_iter().enumerate() {
            while let Ok((n, from)) = h.remote_udp_recv(c, &mut buf) {
                let want = if k == 0 {
                    "127.0.0.1:5300"
                } else {
                    "[::1]:7300"
                };
                assert_eq!(from, addr(want), "replies come from the forwarded port");
                got[k].push(buf[..n].to_vec());
            }
        }
        now = match next {
            Some(t) if t > now => t,
            _ => now + Duration::from_micros(100),
        };
    }
    for (k, g) in got.iter().enumerate() {
        assert_eq!(g.len(), N, "side {k}; PASST_SIM_SEED={seed}");
        for (i, d) in g.iter().enumerate() {
            assert!(*d == msg(i), "side {k} datagram {i}");
        }
    }
    assert_eq!(engine.counters().udp_splice_datagrams, 4 * N as u64);
    assert_eq!(engine.udp().splices().len(), 2);
    assert!(engine.udp().splices().iter().all(|f| f.bidirectional));
    // Idle past the timeout: both flows go.
    let end = now + Duration::from_secs(6);
    while now < end {
        let next = step(&mut engine, now, &mut events);
        now = match next {
            Some(t) if t > now && t <= end => t,
            _ => end,
        };
    }
    step(&mut engine, now, &mut events);
    assert_eq!(engine.udp().splices().len(), 0, "expired");
    assert_eq!(
        engine.counters().flows_opened,
        engine.counters().flows_closed
    );
}
