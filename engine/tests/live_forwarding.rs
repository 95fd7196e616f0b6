//! pasta's `auto` forwarding without the pasta binary, both ways: an engine over
//! `RealHost` in the event loop, a guest namespace this test created, the
//! loop's once-a-second rescan of the namespace's socket tables, and
//! listeners that appear on the host when a server starts in the
//! namespace and vanish when it stops.
//!
//! The test thread moves into a private network namespace first (the
//! "host"); a helper thread makes a second one inside it (the "guest")
//! and keeps it alive. Only those two namespaces' loopbacks are touched.

mod netns;

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use passt_engine::fwd::{self, Program, SpecContext};
use passt_engine::runtime::autoscan::{AutoScan, SocketTables};
use passt_engine::runtime::event_loop::EventLoop;
use passt_engine::runtime::forward::{Chan, ForwardTable};
use passt_engine::runtime::live::LiveForwarding;
use passt_engine::runtime::transport::StreamTransport;
use passt_engine::runtime::{NetNs, RealHost};
use passt_engine::{Config, Engine};

/// The guest namespace, held open by a thread until dropped.
struct GuestNs {
    ns: NetNs,
    /// A second handle on it (for a `RealHost`).
    again: Option<NetNs>,
    done: Option<mpsc::Sender<()>>,
    keeper: Option<std::thread::JoinHandle<()>>,
}

impl GuestNs {
    fn new() -> std::io::Result<GuestNs> {
        let (tx, rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let keeper = std::thread::spawn(move || {
            let ns = netns::enter_private_netns()
                .and_then(|()| Ok((NetNs::current()?, NetNs::current()?)));
            tx.send(ns).unwrap();
            let _ = done_rx.recv();
        });
        let (ns, again) = rx.recv().unwrap()?;
        Ok(GuestNs {
            ns,
            again: Some(again),
            done: Some(done_tx),
            keeper: Some(keeper),
        })
    }
}

impl Drop for GuestNs {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(k) = self.keeper.take() {
            let _ = k.join();
        }
    }
}

/// Runs the loop until `cond` holds, at most `limit`; returns how long it
/// took.
fn run_until<T: passt_engine::runtime::GuestTransport>(
    lp: &mut EventLoop<T>,
    limit: Duration,
    mut cond: impl FnMut(&EventLoop<T>) -> bool,
) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if cond(lp) {
            return Some(t0.elapsed());
        }
        lp.run_for(Duration::from_millis(50)).expect("loop");
    }
    cond(lp).then(|| t0.elapsed())
}

fn refused(port: u16) -> bool {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused)
}

#[test]
fn auto_opens_a_host_listener_for_a_server_started_in_the_namespace_and_closes_it_after() {
    if !netns::enter_or_skip() {
        return;
    }
    let guest = match GuestNs::new() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("SKIPPED: cannot create the guest namespace ({e})");
            return;
        }
    };
    let cx = SpecContext::new(Program::Pasta);
    let mut config = Config::example();
    config.ipv6 = None;
    let mut engine = Engine::new(config, RealHost::new().unwrap(), 7).unwrap();
    let mut table = ForwardTable::for_engine(&engine, cx);
    let mut rules = table.rules().clone();
    let auto = fwd::parse("auto", &cx).unwrap();
    ForwardTable::set_option(&mut rules, Chan::TCP_IN, &["auto".into()], auto.clone());
    ForwardTable::set_option(&mut rules, Chan::UDP_IN, &["auto".into()], auto);
    table
        .apply(&mut engine, rules)
        .expect("nothing to bind yet");
    let scan = AutoScan::open(Some(&guest.ns)).expect("both sides' tables");
    let (ours, _guest_end) = UnixStream::pair().unwrap();
    let mut lp = EventLoop::new(engine, StreamTransport::connected(ours).unwrap()).unwrap();
    lp.set_live(LiveForwarding::new(table).with_auto_scan(scan))
        .unwrap();
    lp.run_for(Duration::from_millis(100)).unwrap();
    assert!(
        lp.live().unwrap().scans() >= 1,
        "the first scan runs at once"
    );

    // A TCP server and a UDP socket start in the namespace after start-up.
    let (server, udp) = guest
        .ns
        .run_in(|| {
            (
                TcpListener::bind("0.0.0.0:0").unwrap(),
                UdpSocket::bind("0.0.0.0:0").unwrap(),
            )
        })
        .unwrap();
    let port = server.local_addr().unwrap().port();
    let uport = udp.local_addr().unwrap().port();
    assert!(refused(port), "not forwarded before the scan sees it");
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let seen = run_until(&mut lp, Duration::from_secs(3), |lp| {
        let t = lp.live().unwrap().table();
        t.is_bound(Chan::TCP_IN, any, port) && t.is_bound(Chan::UDP_IN, any, uport)
    })
    .expect("the listeners appeared on the host");
    assert!(
        seen <= Duration::from_millis(2200),
        "within a scan: {seen:?}"
    );
    let c = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("the host port listens");
    // UDP follows the TCP ports found, as upstream's scan does.
    assert!(lp.live().unwrap().table().is_bound(Chan::UDP_IN, any, port));
    assert!(
        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, uport)).is_err(),
        "the UDP port is taken on the host"
    );
    drop(c);

    drop(server);
    drop(udp);
    let gone = run_until(&mut lp, Duration::from_secs(3), |lp| {
        lp.live().unwrap().table().bound_count() == 0
    })
    .expect("the listeners closed after the servers did");
    assert!(
        gone <= Duration::from_millis(2200),
        "within a scan: {gone:?}"
    );
    assert!(refused(port), "the host port is closed again");
    assert!(UdpSocket::bind((Ipv4Addr::UNSPECIFIED, uport)).is_ok());
    let engine = lp.into_engine();
    assert_eq!(engine.tcp().listener_count(), 0);
    assert_eq!(engine.udp().listener_count(), (0, 0));
}

#[test]
fn the_scan_leaves_out_ports_the_table_bound_itself() {
    if !netns::enter_or_skip() {
        return;
    }
    // `-T auto` reads the host's table; `-t 7777` bound 7777 on the host
    // itself, which must not be forwarded back into the namespace.
    let cx = SpecContext::new(Program::Pasta);
    let mut engine = Engine::new(Config::example(), RealHost::new().unwrap(), 7).unwrap();
    let mut table = ForwardTable::for_engine(&engine, cx);
    let mut rules = table.rules().clone();
    ForwardTable::set_option(
        &mut rules,
        Chan::TCP_IN,
        &["7777".into()],
        fwd::parse("7777", &cx).unwrap(),
    );
    ForwardTable::set_option(
        &mut rules,
        Chan::TCP_OUT,
        &["auto".into()],
        fwd::parse("auto", &cx).unwrap(),
    );
    table.apply(&mut engine, rules).unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let scan = AutoScan {
        guest: None,
        host: Some(SocketTables::own().unwrap()),
    };
    let ports = scan.ports_for(&table, Chan::TCP_OUT).unwrap();
    assert!(!ports.contains(&7777), "{ports:?}");
    assert!(ports.contains(&other.local_addr().unwrap().port()));
    let none = AutoScan::default();
    assert_eq!(none.ports_for(&table, Chan::TCP_OUT), None);
    assert_eq!(
        scan.ports_for(&table, Chan::TCP_IN),
        None,
        "no guest tables"
    );
}

#[test]
fn auto_in_the_other_direction_splices_a_host_server_into_the_namespace() {
    if !netns::enter_or_skip() {
        return;
    }
    let mut guest = match GuestNs::new() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("SKIPPED: cannot create the guest namespace ({e})");
            return;
        }
    };
    let cx = SpecContext::new(Program::Pasta);
    let mut config = Config::example();
    config.ipv6 = None;
    config.splice = passt_engine::config::Splice::On;
    let mut host = RealHost::new().unwrap();
    host.set_guest_netns(guest.again.take().unwrap());
    let mut engine = Engine::new(config, host, 7).unwrap();
    let mut table = ForwardTable::for_engine(&engine, cx);
    let mut rules = table.rules().clone();
    let auto = fwd::parse("auto", &cx).unwrap();
    let none = fwd::parse("none", &cx).unwrap();
    let ns_forwarding = passt_engine::cli::Forwarding {
        tcp: auto,
        udp: none,
    };
    table.namespace_rules(&mut rules, &ns_forwarding, &["auto".into()], &[]);
    table.apply(&mut engine, rules).unwrap();
    let scan = AutoScan {
        guest: None,
        host: Some(SocketTables::own().unwrap()),
    };
    let (ours, _guest_end) = UnixStream::pair().unwrap();
    let mut lp = EventLoop::new(engine, StreamTransport::connected(ours).unwrap()).unwrap();
    lp.set_live(LiveForwarding::new(table).with_auto_scan(scan))
        .unwrap();
    lp.run_for(Duration::from_millis(100)).unwrap();

    // A server on the host's loopback, started after start-up.
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let port = server.local_addr().unwrap().port();
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let seen = run_until(&mut lp, Duration::from_secs(3), |lp| {
        lp.live()
            .unwrap()
            .table()
            .is_bound(Chan::TCP_OUT, any, port)
    })
    .expect("the listener appeared in the namespace");
    assert!(
        seen <= Duration::from_millis(2200),
        "within a scan: {seen:?}"
    );

    // From inside the namespace, the port reaches the host's server.
    let mut c = guest
        .ns
        .run_in(|| TcpStream::connect((Ipv4Addr::LOCALHOST, port)))
        .unwrap()
        .expect("the namespace port listens");
    std::io::Write::write_all(&mut c, b"ping").unwrap();
    let mut accepted = None;
    let mut got = Vec::new();
    run_until(&mut lp, Duration::from_secs(5), |_| {
        if accepted.is_none() {
            accepted = server.accept().ok().map(|(s, _)| s);
        }
        if let Some(s) = &mut accepted {
            let mut b = [0u8; 16];
            if let Ok(n) = std::io::Read::read(s, &mut b) {
                got.extend_from_slice(&b[..n]);
            }
        }
        got == b"ping"
    })
    .expect("the host server got the namespace client's bytes");
    drop(c);
    drop(accepted);

    drop(server);
    run_until(&mut lp, Duration::from_secs(3), |lp| {
        lp.live().unwrap().table().bound_count() == 0
    })
    .expect("the namespace listener closed after the host server did");
    let refused_inside = guest
        .ns
        .run_in(|| {
            TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused)
        })
        .unwrap();
    assert!(refused_inside, "the namespace port is closed again");
}
