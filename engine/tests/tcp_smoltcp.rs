//! TCP translation against an independent TCP/IP stack: smoltcp is the
//! guest, the real kernel is the host, peers are std sockets on loopback
//! reached through the gateway mapping (192.0.2.1 -> 127.0.0.1,
//! fe80::1 -> ::1).
#![cfg(target_os = "linux")]

mod tcp_common;

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use passt_engine::Config;
use smoltcp::socket::tcp::State;
use tcp_common::*;

const LIMIT: Duration = Duration::from_secs(60);

fn config() -> Config {
    Config::example()
}

fn listener(v6: bool) -> (TcpListener, u16) {
    let l = if v6 {
        TcpListener::bind("[::1]:0")
    } else {
        TcpListener::bind("127.0.0.1:0")
    }
    .expect("bind");
    let p = l.local_addr().unwrap().port();
    (l, p)
}

fn gw(v6: bool, port: u16) -> SocketAddr {
    if v6 {
        SocketAddr::new(IpAddr::V6(GW_V6), port)
    } else {
        SocketAddr::new(IpAddr::V4(GW_V4), port)
    }
}

/// Echo server for one connection: reads and writes back until EOF, then
/// closes. Returns the byte count.
fn echo_server(l: TcpListener) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf).expect("echo read");
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).expect("echo write");
            total += n;
        }
        s.shutdown(Shutdown::Write).ok();
        total
    })
}

/// Guest sends `data`, reads everything back, closes.
fn echo_through(v6: bool, len: usize, mtu: u16) {
    let mut cfg = config();
    cfg.mtu = mtu;
    let (l, port) = listener(v6);
    let server = echo_server(l);
    let mut net = Net::new(cfg);
    let mut g = SmolGuest::new(net.now(), mtu);
    let h = g.tcp_socket(1 << 20, 1 << 20);
    g.connect(h, gw(v6, port), 40000);
    let data = pattern(len, 1);
    let mut sent = 0;
    let mut got = Vec::with_capacity(len);
    let mut closed = false;
    run_until(&mut net, &mut g, LIMIT, |_, g| {
        let s = g.tcp(h);
        if s.can_send() && sent < data.len() {
            sent += s.send_slice(&data[sent..]).unwrap();
        }
        if sent == data.len() && !closed {
            s.close();
            closed = true;
        }
        let mut buf = [0u8; 65536];
        while s.can_recv() {
            let n = s.recv_slice(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        !s.may_recv() && closed
    });
    assert_eq!(got.len(), data.len(), "echoed length");
    assert!(got == data, "echoed bytes differ");
    assert_eq!(server.join().unwrap(), len);
    // The flow is torn down once the guest ACKs our FIN.
    run_until(&mut net, &mut g, LIMIT, |_, g| {
        matches!(g.tcp(h).state(), State::TimeWait | State::Closed)
    });
}

#[test]
fn echo_4mib_ipv4() {
    echo_through(false, 4 << 20, 65520);
}

#[test]
fn echo_4mib_ipv4_mtu1500() {
    echo_through(false, 4 << 20, 1500);
}

#[test]
fn echo_4mib_ipv6() {
    if !ipv6_available() {
        eprintln!("skipping: ::1 not available");
        return;
    }
    echo_through(true, 4 << 20, 65520);
}

/// Guest uploads, host sink; then host download, guest sink.
#[test]
fn upload_and_download_8mib() {
    let len = 8 << 20;
    // Upload.
    let (l, port) = listener(false);
    let sink = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let mut v = Vec::new();
        s.read_to_end(&mut v).unwrap();
        v
    });
    let mut net = Net::new(config());
    let mut g = SmolGuest::new(net.now(), 65520);
    let h = g.tcp_socket(1 << 20, 1 << 20);
    g.connect(h, gw(false, port), 40001);
    let data = pattern(len, 2);
    let mut sent = 0;
    run_until(&mut net, &mut g, LIMIT, |_, g| {
        let s = g.tcp(h);
        if s.can_send() && sent < data.len() {
            sent += s.send_slice(&data[sent..]).unwrap();
            if sent == data.len() {
                s.close();
            }
        }
        sent == data.len() && matches!(s.state(), State::FinWait2 | State::TimeWait)
    });
    let got = sink.join().unwrap();
    assert_eq!(got.len(), len);
    assert!(got == data, "uploaded bytes differ");

    // Download.
    let (l, port) = listener(false);
    let data2 = pattern(len, 3);
    let d2 = data2.clone();
    let source = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(&d2).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        // Wait for the guest's FIN.
        let mut b = [0u8; 1];
        s.set_read_timeout(Some(LIMIT)).unwrap();
        s.read(&mut b).unwrap()
    });
    let h2 = g.tcp_socket(1 << 20, 1 << 20);
    g.connect(h2, gw(false, port), 40002);
    let mut got = Vec::with_capacity(len);
    run_until(&mut net, &mut g, LIMIT, |_, g| {
        let s = g.tcp(h2);
        let mut buf = [0u8; 65536];
        while s.can_recv() {
            let n = s.recv_slice(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        if !s.may_recv() && s.state() == State::CloseWait {
            s.close();
        }
        got.len() == len && source.is_finished()
    });
    assert!(got == data2, "downloaded bytes differ");
    assert_eq!(source.join().unwrap(), 0, "host saw the guest's FIN");
}

/// Host peer reads slowly: the guest is throttled (its send buffer fills
/// up while the host is not reading) and nothing is lost.
#[test]
fn backpressure_slow_host_reader() {
    let len = 6 << 20;
    let (l, port) = listener(false);
    let reading = Arc::new(AtomicBool::new(false));
    let r2 = reading.clone();
    let sink = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        thread::sleep(Duration::from_millis(700));
        r2.store(true, Ordering::SeqCst);
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let mut v = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            v.extend_from_slice(&buf[..n]);
            thread::sleep(Duration::from_micros(50));
        }
        v
    });
    let mut net = Net::new(config());
    let mut g = SmolGuest::new(net.now(), 65520);
    let h = g.tcp_socket(1 << 18, 1 << 18);
    g.connect(h, gw(false, port), 40003);
    let data = pattern(len, 4);
    let mut sent = 0;
    let mut stalled_while_not_reading = false;
    run_until(&mut net, &mut g, LIMIT, |_, g| {
        let s = g.tcp(h);
        if s.can_send() && sent < data.len() {
            sent += s.send_slice(&data[sent..]).unwrap();
            if sent == data.len() {
                s.close();
            }
        }
        if !reading.load(Ordering::SeqCst) && s.state() == State::Established && !s.can_send() {
            stalled_while_not_reading = true;
        }
        sent == data.len() && matches!(s.state(), State::FinWait2 | State::TimeWait)
    });
    assert!(
        stalled_while_not_reading,
        "the guest was never throttled while the host did not read"
    );
    let got = sink.join().unwrap();
    assert_eq!(got.len(), len);
    assert!(got == data);
}

/// The guest stops reading: the engine stops consuming from the socket,
/// the host writer blocks; when the guest reads again everything arrives.
#[test]
fn backpressure_guest_stops_reading() {
    let len = 32 << 20;
    let (l, port) = listener(false);
    let written = Arc::new(AtomicUsize::new(0));
    let w2 = written.clone();
    let data = pattern(len, 5);
    let d2 = data.clone();
    let source = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_write_timeout(Some(LIMIT)).unwrap();
        for chunk in d2.chunks(16384) {
            s.write_all(chunk).unwrap();
            w2.fetch_add(chunk.len(), Ordering::SeqCst);
        }
        s.shutdown(Shutdown::Write).unwrap();
    });
    let mut net = Net::new(config());
    let mut g = SmolGuest::new(net.now(), 65520);
    let h = g.tcp_socket(1 << 18, 1 << 16);
    g.connect(h, gw(false, port), 40004);
    run_until(&mut net, &mut g, LIMIT, |_, g| {
        g.tcp(h).state() == State::Established
    });
    // Not reading for a while.
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_millis(800) {
        step(&mut net, &mut g);
    }
    let w_stalled = written.load(Ordering::SeqCst);
    let bytes_out_before = net.engine.counters().bytes_out;
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_millis(300) {
        step(&mut net, &mut g);
    }
    assert!(w_stalled < len, "host writer never blocked");
    assert_eq!(
        written.load(Ordering::SeqCst),
        w_stalled,
        "host kept writing while the guest did not read"
    );
    // Window probes only: well under one receive buffer of traffic.
    assert!(net.engine.counters().bytes_out - bytes_out_before < 1 << 16);
    let mut got = Vec::with_capacity(len);
    run_until(&mut net, &mut g, LIMIT, |_, g| {
        let s = g.tcp(h);
        let mut buf = [0u8; 65536];
        while s.can_recv() {
            let n = s.recv_slice(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        !s.may_recv()
    });
    source.join().unwrap();
    assert_eq!(got.len(), len);
    assert!(got == data);
}
