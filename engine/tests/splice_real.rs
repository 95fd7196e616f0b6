//! pasta's loopback fast path against the real kernel: an engine over
//! `RealHost` whose guest namespace is one this test creates, with servers
//! on that namespace's loopback reached from the host's loopback through
//! forwarded ports (`-t`/`-u`), and the other way (`-T`/`-U`).
//!
//! The "host" is a private namespace too: the test thread enters one
//! before anything else, and every thread it spawns (the engine's
//! included) starts there. Only the loopbacks of these two namespaces are
//! ever touched. Without the privilege to create namespaces each test
//! prints SKIPPED and returns.
//!
//! Throughput figures are printed (`--nocapture`), never asserted; they go
//! to docs/performance.md.

#[path = "netns/mod.rs"]
mod netns;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use passt_engine::runtime::{NetNs, RealHost, clock};
use passt_engine::{Config, Counters, Engine, Splice};

/// The namespace standing for pasta's target, kept open by a thread that
/// lives in it until dropped.
struct GuestNs {
    /// For making the test's own sockets in it.
    ns: NetNs,
    done: Option<std::sync::mpsc::Sender<()>>,
    keeper: Option<JoinHandle<()>>,
}

impl Drop for GuestNs {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(k) = self.keeper.take() {
            let _ = k.join();
        }
    }
}

/// Enters a private "host" namespace and creates the guest one; `None`
/// (after a SKIPPED line) without the privilege. The second handle goes to
/// the engine.
fn namespaces() -> Option<(GuestNs, NetNs)> {
    if !netns::enter_or_skip() {
        return None;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let keeper = std::thread::spawn(move || {
        let r =
            netns::enter_private_netns().and_then(|()| Ok((NetNs::current()?, NetNs::current()?)));
        tx.send(r).expect("test alive");
        let _ = done_rx.recv();
    });
    match rx.recv().expect("keeper") {
        Ok((a, b)) => Some((
            GuestNs {
                ns: a,
                done: Some(done_tx),
                keeper: Some(keeper),
            },
            b,
        )),
        Err(e) => {
            eprintln!("SKIPPED: cannot create the guest namespace ({e})");
            drop(done_tx);
            let _ = keeper.join();
            None
        }
    }
}

/// Forwarded ports for one engine.
#[derive(Default, Clone)]
struct Ports {
    /// `-t`: host address, namespace port.
    tcp_in: Vec<(SocketAddr, u16)>,
    /// `-T`: namespace address, host port.
    tcp_out: Vec<(SocketAddr, u16)>,
    /// `-u`.
    udp_in: Vec<(SocketAddr, u16)>,
    /// `-U`.
    udp_out: Vec<(SocketAddr, u16)>,
}

/// An engine on its own thread, run as the event loop runs it (wait,
/// events, timers) until stopped.
struct Running {
    stop: Arc<AtomicBool>,
    /// Live spliced flows (TCP and UDP), as of the engine's last turn.
    live: Arc<AtomicUsize>,
    thread: Option<JoinHandle<(Counters, usize, usize)>>,
}

impl Running {
    fn start(guest: NetNs, ports: Ports) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let live = Arc::new(AtomicUsize::new(0));
        let live_flows = live.clone();
        let thread = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let mut host = RealHost::new().expect("RealHost");
                host.set_guest_netns(guest);
                let mut config = Config::example();
                config.splice = Splice::On;
                config.udp_timeout = Duration::from_secs(2);
                config.udp_timeout_bidir = Duration::from_secs(2);
                let mut engine = Engine::new(config, host, 7).expect("engine");
                for (a, p) in &ports.tcp_in {
                    engine.tcp_listen(*a, *p).expect("-t");
                }
                for (a, p) in &ports.tcp_out {
                    engine.tcp_listen_outbound(*a, *p).expect("-T");
                }
                for (a, p) in &ports.udp_in {
                    engine.udp_listen(*a, *p).expect("-u");
                }
                for (a, p) in &ports.udp_out {
                    engine.udp_listen_outbound(*a, *p).expect("-U");
                }
                ready_tx.send(()).expect("test alive");
                let mut events = Vec::with_capacity(256);
                while !flag.load(Ordering::Relaxed) {
                    events.clear();
                    let now = clock::now();
                    let wait = engine
                        .poll_timeout()
                        .map(|t| t.saturating_duration_since(now))
                        .unwrap_or(Duration::from_millis(20))
                        .min(Duration::from_millis(20));
                    engine
                        .host_mut()
                        .wait(Some(wait), &mut events)
                        .expect("wait");
                    let now = clock::now();
                    for &(t, r) in &events {
                        engine.handle_host_event(now, t, r);
                    }
                    if engine.poll_timeout().is_some_and(|t| t <= now) {
                        engine.handle_timeout(now);
                    }
                    live_flows.store(
                        engine.tcp().splices().len() + engine.udp().splices().len(),
                        Ordering::Relaxed,
                    );
                }
                (
                    engine.counters().clone(),
                    engine.tcp().splices().len(),
                    engine.udp().splices().len(),
                )
            })
            .expect("engine thread");
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("engine ready");
        Running {
            stop,
            live,
            thread: Some(thread),
        }
    }

    /// Stops the engine once its spliced flows are gone (the peers' last
    /// FINs take a turn of its loop; 30 s at most, generous for a loaded
    /// machine): its counters and the spliced flows still live (TCP, UDP).
    fn finish(mut self) -> (Counters, usize, usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.live.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("engine thread")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal")
}

/// Byte `i` of the test pattern (not periodic at any power of two).
fn pattern(i: u64) -> u8 {
    (i % 251) as u8 ^ (i / 251 % 256) as u8
}

fn fill(buf: &mut [u8], start: u64) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = pattern(start + k as u64);
    }
}

/// Writes `len` pattern bytes, then shuts down its write side.
fn send_pattern(s: &mut TcpStream, len: u64) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        fill(&mut buf[..n], off);
        s.write_all(&buf[..n]).expect("write");
        off += n as u64;
    }
    s.shutdown(Shutdown::Write).expect("shutdown");
}

/// Reads to end of stream, checking every byte against the pattern;
/// returns the count.
fn check_pattern(s: &mut TcpStream) -> u64 {
    let mut buf = vec![0u8; 256 * 1024];
    let mut expect = vec![0u8; 256 * 1024];
    let mut off = 0u64;
    loop {
        let n = s.read(&mut buf).expect("read");
        if n == 0 {
            return off;
        }
        fill(&mut expect[..n], off);
        if buf[..n] != expect[..n] {
            let k = (0..n).find(|&k| buf[k] != expect[k]).unwrap_or(0);
            panic!("byte {} differs", off + k as u64);
        }
        off += n as u64;
    }
}

/// A listener made inside `ns`.
fn listen_in(ns: &NetNs, a: SocketAddr) -> TcpListener {
    ns.run_in(|| TcpListener::bind(a))
        .expect("join")
        .expect("bind in namespace")
}

/// A connection made from inside `ns`.
fn connect_in(ns: &NetNs, a: SocketAddr) -> TcpStream {
    ns.run_in(|| TcpStream::connect(a))
        .expect("join")
        .expect("connect in namespace")
}

fn set_timeouts(s: &TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
}

/// Client sends `len` bytes, the server checks them, then sends `len`
/// back and the client checks them: both directions, byte-exact, each
/// half-closed at its end.
fn both_ways(client: TcpStream, listener: &TcpListener, len: u64) {
    let (server, _) = listener.accept().expect("accept");
    set_timeouts(&server);
    set_timeouts(&client);
    let srv = std::thread::spawn(move || {
        let mut server = server;
        let got = check_pattern(&mut server);
        send_pattern(&mut server, len);
        got
    });
    let mut client = client;
    send_pattern(&mut client, len);
    let back = check_pattern(&mut client);
    let got = srv.join().expect("server");
    assert_eq!(got, len, "toward the server");
    assert_eq!(back, len, "toward the client");
}

#[test]
fn sixty_four_mib_cross_a_forwarded_port_byte_exact_both_ways() {
    let Some((guest, engine_ns)) = namespaces() else {
        return;
    };
    let server = listen_in(&guest.ns, addr("127.0.0.1:6000"));
    let ports = Ports {
        tcp_in: vec![(addr("127.0.0.1:5000"), 6000)],
        ..Ports::default()
    };
    let engine = Running::start(engine_ns, ports);
    let client = TcpStream::connect(addr("127.0.0.1:5000")).expect("connect");
    both_ways(client, &server, 64 << 20);
    let (c, tcp, _) = engine.finish();
    assert_eq!(c.tcp_splice_opened, 1);
    assert_eq!(c.tcp_splice_bytes, 2 * (64 << 20));
    assert_eq!(c.tcp_splice_resets, 0);
    assert_eq!(tcp, 0, "the flow closed after both FINs");
    assert_eq!(c.frames_out, 0, "nothing crossed the guest transport");
}

#[test]
fn a_dash_t_capital_port_in_the_namespace_reaches_the_hosts_loopback() {
    let Some((guest, engine_ns)) = namespaces() else {
        return;
    };
    let server = TcpListener::bind(addr("[::1]:8000")).expect("host server");
    let ports = Ports {
        tcp_out: vec![(addr("[::1]:7000"), 8000)],
        ..Ports::default()
    };
    let engine = Running::start(engine_ns, ports);
    let client = connect_in(&guest.ns, addr("[::1]:7000"));
    both_ways(client, &server, 8 << 20);
    let (c, tcp, _) = engine.finish();
    assert_eq!(c.tcp_splice_opened, 1);
    assert_eq!(tcp, 0);
}

#[test]
fn a_half_close_passes_one_fin_while_the_other_direction_keeps_flowing() {
    let Some((guest, engine_ns)) = namespaces() else {
        return;
    };
    let server = listen_in(&guest.ns, addr("127.0.0.1:6001"));
    let ports = Ports {
        tcp_in: vec![(addr("127.0.0.1:5001"), 6001)],
        ..Ports::default()
    };
    let engine = Running::start(engine_ns, ports);
    let mut client = TcpStream::connect(addr("127.0.0.1:5001")).expect("connect");
    set_timeouts(&client);
    let (mut srv, _) = server.accept().expect("accept");
    set_timeouts(&srv);
    client.write_all(b"question").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    srv.read_to_end(&mut got).expect("server reads to the FIN");
    assert_eq!(got, b"question");
    // The server's direction is still open: it answers after the FIN.
    std::thread::sleep(Duration::from_millis(50));
    srv.write_all(b"answer after your FIN").unwrap();
    srv.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    client
        .read_to_end(&mut back)
        .expect("client reads to the FIN");
    assert_eq!(back, b"answer after your FIN");
    drop((client, srv));
    std::thread::sleep(Duration::from_millis(50));
    let (c, tcp, _) = engine.finish();
    assert_eq!((c.tcp_splice_resets, tcp), (0, 0));
}

/// Closes `s` with a RST (`SO_LINGER` 0).
fn reset(s: TcpStream) {
    let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` outlives the call; `fd` is open.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(s);
}

/// Reads until an error or end of stream; the error kind, if any.
fn read_outcome(s: &mut TcpStream) -> Option<ErrorKind> {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return None,
            Ok(_) => continue,
            Err(e) => return Some(e.kind()),
        }
    }
}

#[test]
fn a_reset_on_either_side_reaches_the_other_peer_as_a_reset() {
    let Some((guest, engine_ns)) = namespaces() else {
        return;
    };
    let server = listen_in(&guest.ns, addr("127.0.0.1:6002"));
    let ports = Ports {
        tcp_in: vec![(addr("127.0.0.1:5002"), 6002)],
        ..Ports::default()
    };
    let engine = Running::start(engine_ns, ports);
    // The server resets: the client sees ECONNRESET.
    let mut client = TcpStream::connect(addr("127.0.0.1:5002")).expect("connect");
    set_timeouts(&client);
    let (srv, _) = server.accept().expect("accept");
    client.write_all(b"x").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    reset(srv);
    assert_eq!(read_outcome(&mut client), Some(ErrorKind::ConnectionReset));
    // The client resets: the server sees ECONNRESET.
    let client = TcpStream::connect(addr("127.0.0.1:5002")).expect("connect");
    let (mut srv, _) = server.accept().expect("accept");
    set_timeouts(&srv);
    std::thread::sleep(Duration::from_millis(50));
    reset(client);
    assert_eq!(read_outcome(&mut srv), Some(ErrorKind::ConnectionReset));
    std::thread::sleep(Duration::from_millis(50));
    let (c, tcp, _) = engine.finish();
    assert_eq!((c.tcp_splice_opened, c.tcp_splice_resets, tcp), (2, 2, 0));
}

#[test]
fn a_port_with_nothing_listening_in_the_namespace_resets_the_client() {
    let Some((_guest, engine_ns)) = namespaces() else {
        return;
    };
    let ports = Ports {
        tcp_in: vec![(addr("127.0.0.1:5003"), 6003)],
        ..Ports::default()
    };
    let engine = Running::start(engine_ns, ports);
    let mut client = TcpStream::connect(addr("127.0.0.1:5003")).expect("connect");
    set_timeouts(&client);
    assert_eq!(read_outcome(&mut client), Some(ErrorKind::ConnectionReset));
    let (c, tcp, _) = engine.finish();
    assert_eq!((c.tcp_splice_opened, c.tcp_splice_refused, tcp), (0, 1, 0));
}

/// A server answering `n` connections: reads a request to its FIN, sends
/// it back reversed.
fn reverse_server(server: TcpListener, n: usize) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for _ in 0..n {
            let (mut s, _) = server.accept().expect("accept");
            set_timeouts(&s);
            let mut req = Vec::new();
            s.read_to_end(&mut req).expect("request");
            req.reverse();
            s.write_all(&req).expect("reply");
        }
    })
}

/// `n` sequential connections to `to`, each checked: connections per
/// second.
fn short_connections(to: SocketAddr, n: usize) -> f64 {
    let t0 = Instant::now();
    for i in 0..n {
        let mut c = TcpStream::connect(to).expect("connect");
        set_timeouts(&c);
        let msg = format!("request number {i}");
        c.write_all(msg.as_bytes()).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).expect("reply");
        let mut want = msg.into_bytes();
        want.reverse();
        assert_eq!(back, want, "connection {i}");
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

#[test]
fn many_short_connections_each_carry_their_bytes_and_leave_no_flow() {
    let Some((guest, engine_ns)) = namespaces() else {
        return;
    };
    let server = listen_in(&guest.ns, addr("127.0.0.1:6004"));
    let plain = TcpListener::bind(addr("127.0.0.1:6007")).expect("plain");
    let ports = Ports {
        tcp_in: vec![(addr("127.0.0.1:5004"), 6004)],
        ..Ports::default()
    };
    let engine = Running::start(engine_ns, ports);
    const N: usize = 300;
    let srv = reverse_server(server, N);
    let spliced = short_connections(addr("127.0.0.1:5004"), N);
    srv.join().expect("server");
    let srv = reverse_server(plain, N);
    let direct = short_connections(addr("127.0.0.1:6007"), N);
    srv.join().expect("server");
    eprintln!(
        "splice: {N} sequential connections, {spliced:.0}/s spliced, {direct:.0}/s plain \
         loopback, ratio {:.2}",
        spliced / direct
    );
    std::thread::sleep(Duration::from_millis(100));
    let (c, tcp, _) = engine.finish();
    assert_eq!(c.tcp_splice_opened, N as u64);
    assert_eq!((c.tcp_splice_resets, tcp), (0, 0));
    assert_eq!(c.flows_opened, c.flows_closed);
}

/// Echoes datagrams on `s` until `stop`.
fn udp_echo(s: UdpSocket, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut buf = [0u8; 65536];
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Ok((len, from)) = s.recv_from(&mut buf) {
                s.send_to(&buf[..len], from).expect("echo");
                n += 1;
            }
        }
        n
    })
}

/// Sends `count` datagrams of distinct sizes and contents and checks each
/// echo.
fn udp_round_trips(c: &UdpSocket, to: SocketAddr, count: usize) {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 65536];
    for i in 0..count {
        let len = 1 + (i * 977) % 9000;
        let mut msg = vec![0u8; len];
        fill(&mut msg, i as u64);
        c.send_to(&msg, to).expect("send");
        let (n, from) = c.recv_from(&mut buf).expect("echo");
        assert_eq!(from, to, "the reply comes from the forwarded port");
        assert_eq!(&buf[..n], &msg[..], "datagram {i}");
    }
}

#[test]
fn udp_echoes_cross_the_splice_both_ways_and_the_flows_expire() {
    let Some((guest, engine_ns)) = namespaces() else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let in_ns = guest
        .ns
        .run_in(|| UdpSocket::bind(addr("127.0.0.1:6300")))
        .expect("join")
        .expect("bind");
    let on_host = UdpSocket::bind(addr("[::1]:8300")).expect("bind");
    let e1 = udp_echo(in_ns, stop.clone());
    let e2 = udp_echo(on_host, stop.clone());
    let ports = Ports {
        udp_in: vec![(addr("127.0.0.1:5300"), 6300)],
        udp_out: vec![(addr("[::1]:7300"), 8300)],
        ..Ports::default()
    };
    let engine = Running::start(engine_ns, ports);
    // -u: from the host's loopback to the namespace's echo.
    let c1 = UdpSocket::bind(addr("127.0.0.1:0")).unwrap();
    udp_round_trips(&c1, addr("127.0.0.1:5300"), 200);
    // -U: from the namespace's loopback to the host's echo.
    let c2 = guest
        .ns
        .run_in(|| UdpSocket::bind(addr("[::1]:0")))
        .expect("join")
        .expect("bind");
    udp_round_trips(&c2, addr("[::1]:7300"), 200);
    // Idle past the (test's 2 s) timeout: both flows expire.
    std::thread::sleep(Duration::from_millis(2600));
    stop.store(true, Ordering::Relaxed);
    let echoed = e1.join().unwrap() + e2.join().unwrap();
    assert_eq!(echoed, 400);
    let (c, _, udp) = engine.finish();
    assert_eq!(c.udp_splice_datagrams, 800);
    assert_eq!(udp, 0, "idle flows expired");
    assert_eq!(c.frames_out, 0, "nothing crossed the guest transport");
}

/// Moves `len` bytes from `client` to the server behind `listener` (read
/// and discarded): Gbit/s.
fn bulk_gbps(client: TcpStream, listener: &TcpListener, len: u64) -> f64 {
    let (mut server, _) = listener.accept().expect("accept");
    let rd = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            match server.read(&mut buf) {
                Ok(0) => return n,
                Ok(k) => n += k as u64,
                Err(e) => panic!("read: {e}"),
            }
        }
    });
    let mut client = client;
    let buf = vec![0x5au8; 1 << 20];
    let t0 = Instant::now();
    let mut sent = 0u64;
    while sent < len {
        client.write_all(&buf).expect("write");
        sent += buf.len() as u64;
    }
    client.shutdown(Shutdown::Write).unwrap();
    let got = rd.join().expect("reader");
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(got, sent);
    sent as f64 * 8.0 / secs / 1e9
}

#[test]
fn splice_throughput_is_measured_against_plain_loopback() {
    let Some((guest, engine_ns)) = namespaces() else {
        return;
    };
    let server = listen_in(&guest.ns, addr("127.0.0.1:6005"));
    let plain = TcpListener::bind(addr("127.0.0.1:6006")).expect("plain");
    let ports = Ports {
        tcp_in: vec![(addr("127.0.0.1:5005"), 6005)],
        ..Ports::default()
    };
    let engine = Running::start(engine_ns, ports);
    const LEN: u64 = 512 << 20;
    let mut spliced = Vec::new();
    let mut direct = Vec::new();
    for _ in 0..3 {
        let c = TcpStream::connect(addr("127.0.0.1:6006")).unwrap();
        direct.push(bulk_gbps(c, &plain, LEN));
        let c = TcpStream::connect(addr("127.0.0.1:5005")).unwrap();
        spliced.push(bulk_gbps(c, &server, LEN));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (s, d) = (median(&mut spliced), median(&mut direct));
    eprintln!(
        "splice throughput: {s:.2} Gbit/s spliced, {d:.2} Gbit/s plain loopback, ratio {:.2} \
         (medians of 3 x 512 MiB; runs spliced {spliced:.2?}, plain {direct:.2?})",
        s / d
    );
    let (c, tcp, _) = engine.finish();
    assert_eq!(c.tcp_splice_opened, 3);
    assert_eq!(tcp, 0);
}
