//! TCP translation against an independent TCP/IP stack: smoltcp is the
//! guest, the real kernel is the host, peers are std sockets on loopback
//! reached through the gateway mapping (192.0.2.1 -> 127.0.0.1,
//! fe80::1 -> ::1).
#![cfg(target_os = "linux")]

mod tcp_common;

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
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

/// A free loopback port (bound and released).
fn free_port(v6: bool) -> u16 {
    listener(v6).1
}

/// Inbound: a host client connects to a forwarded port, the smoltcp guest
/// listens and echoes. The guest has sent no frame before the connection
/// arrives (regression: frames go to broadcast until its MAC is known).
#[test]
fn inbound_echo_before_any_guest_frame() {
    let len = 2 << 20;
    let mut net = Net::new(config());
    let port = free_port(false);
    net.engine
        .tcp_listen(SocketAddr::from(([127, 0, 0, 1], port)), 8080)
        .expect("listen");
    let mut g = SmolGuest::new(net.now(), 65520);
    let h = g.tcp_socket(1 << 20, 1 << 20);
    g.tcp(h).listen(8080).unwrap();
    let data = pattern(len, 6);
    let d2 = data.clone();
    let client = thread::spawn(move || {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let mut w = s.try_clone().unwrap();
        let writer = thread::spawn(move || {
            w.write_all(&d2).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        (&s).read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        got
    });
    assert_eq!(net.engine.guest_mac(), None);
    let mut closed = false;
    run_until(&mut net, &mut g, LIMIT, |_, g| {
        let s = g.tcp(h);
        let mut buf = [0u8; 65536];
        while s.can_recv() && s.send_capacity() - s.send_queue() >= buf.len() {
            let n = s.recv_slice(&mut buf).unwrap();
            let m = s.send_slice(&buf[..n]).unwrap();
            assert_eq!(m, n);
        }
        if !s.may_recv() && s.recv_queue() == 0 && s.state() == State::CloseWait && !closed {
            s.close();
            closed = true;
        }
        client.is_finished()
    });
    let got = client.join().unwrap();
    assert_eq!(got.len(), len);
    assert!(got == data, "inbound echo differs");
}

/// Inbound where the host side only reads: the server in the guest speaks
/// first, so the guest's SYN-ACK must be ACKed at once (regression).
#[test]
fn inbound_guest_speaks_first() {
    let mut net = Net::new(config());
    let port = free_port(false);
    net.engine
        .tcp_listen(SocketAddr::from(([127, 0, 0, 1], port)), 2222)
        .expect("listen");
    let mut g = SmolGuest::new(net.now(), 65520);
    let h = g.tcp_socket(1 << 16, 1 << 16);
    g.tcp(h).listen(2222).unwrap();
    let client = thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        (got, s.peer_addr().unwrap())
    });
    let mut greeted = false;
    run_until(&mut net, &mut g, LIMIT, |_, g| {
        let s = g.tcp(h);
        if s.state() == State::Established && !greeted {
            // The peer as the guest sees it: the gateway (host loopback).
            assert_eq!(
                s.remote_endpoint().map(|e| SocketAddr::from(e).ip()),
                Some(IpAddr::V4(GW_V4))
            );
            s.send_slice(b"SSH-2.0-guest\r\n").unwrap();
            s.close();
            greeted = true;
        }
        client.is_finished()
    });
    let (got, _) = client.join().unwrap();
    assert_eq!(got, b"SSH-2.0-guest\r\n");
}

/// Refused: nothing listens; the guest gets a RST and gives up at once.
#[test]
fn refused_connection_resets_guest() {
    let port = free_port(false);
    let mut net = Net::new(config());
    let mut g = SmolGuest::new(net.now(), 65520);
    let h = g.tcp_socket(4096, 4096);
    g.connect(h, gw(false, port), 40010);
    let start = std::time::Instant::now();
    run_until(&mut net, &mut g, LIMIT, |_, g| {
        g.tcp(h).state() == State::Closed
    });
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "not refused promptly"
    );
}

fn set_linger_zero(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid descriptor and option buffer.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
}

/// The host peer resets mid-transfer: the guest gets a RST.
#[test]
fn host_reset_mid_transfer() {
    let (l, port) = listener(false);
    let sent_some = Arc::new(AtomicBool::new(false));
    let s2 = sent_some.clone();
    let go = Arc::new(AtomicBool::new(false));
    let go2 = go.clone();
    let peer = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(&pattern(100_000, 7)).unwrap();
        s2.store(true, Ordering::SeqCst);
        while !go2.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(1));
        }
        set_linger_zero(&s);
        drop(s);
    });
    let mut net = Net::new(config());
    let mut g = SmolGuest::new(net.now(), 65520);
    let h = g.tcp_socket(1 << 20, 1 << 16);
    g.connect(h, gw(false, port), 40011);
    let mut got = 0;
    run_until(&mut net, &mut g, LIMIT, |_, g| {
        let s = g.tcp(h);
        let mut buf = [0u8; 65536];
        while s.can_recv() {
            got += s.recv_slice(&mut buf).unwrap();
        }
        if got > 0 && sent_some.load(Ordering::SeqCst) {
            go.store(true, Ordering::SeqCst);
        }
        s.state() == State::Closed
    });
    peer.join().unwrap();
    assert!(got > 0);
    // The guest never called close(): reaching Closed (not CloseWait) means
    // it got a RST, not a FIN.
}

/// The guest resets mid-transfer: the host peer's read fails with a reset.
#[test]
fn guest_reset_mid_transfer() {
    let (l, port) = listener(false);
    let peer = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let mut buf = [0u8; 65536];
        let mut total = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n,
                Err(e) => return Err((e.kind(), total)),
            }
        }
    });
    let mut net = Net::new(config());
    let mut g = SmolGuest::new(net.now(), 65520);
    let h = g.tcp_socket(1 << 16, 1 << 16);
    g.connect(h, gw(false, port), 40012);
    let data = pattern(1 << 20, 8);
    let mut sent = 0;
    let mut aborted = false;
    run_until(&mut net, &mut g, LIMIT, |_, g| {
        let s = g.tcp(h);
        if s.can_send() && !aborted {
            sent += s.send_slice(&data[sent..]).unwrap();
        }
        if sent > 200_000 && !aborted {
            s.abort();
            aborted = true;
        }
        peer.is_finished()
    });
    let r = peer.join().unwrap();
    assert!(
        matches!(r, Err((std::io::ErrorKind::ConnectionReset, n)) if n > 0),
        "host peer saw {r:?}"
    );
}

/// Regression: after the guest half-closes, the host still sends 60 kB;
/// what the guest acknowledges must be consumed from the socket (2023
/// passt resent it over and over) and the host's FIN must arrive.
#[test]
fn guest_half_close_then_host_sends() {
    let (l, port) = listener(false);
    let reply = pattern(60_000, 9);
    let r2 = reply.clone();
    let peer = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let mut req = Vec::new();
        s.read_to_end(&mut req).unwrap();
        assert_eq!(req, b"GET / HTTP/1.0\r\n\r\n");
        s.write_all(&r2).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
    });
    let mut net = Net::new(config());
    let mut g = SmolGuest::new(net.now(), 1500);
    let h = g.tcp_socket(1 << 16, 1 << 16);
    g.connect(h, gw(false, port), 40013);
    let mut sent = false;
    let mut got = Vec::new();
    run_until(&mut net, &mut g, LIMIT, |_, g| {
        let s = g.tcp(h);
        if s.state() == State::Established && !sent {
            s.send_slice(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            s.close();
            sent = true;
        }
        let mut buf = [0u8; 65536];
        while s.can_recv() {
            let n = s.recv_slice(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        sent && matches!(s.state(), State::TimeWait | State::Closed)
    });
    peer.join().unwrap();
    assert!(got == reply, "got {} bytes", got.len());
    // Each byte went to the guest about once (2023: eleven times).
    let out = net.engine.counters().bytes_out;
    assert!(out < 2 * 60_000, "{out} bytes sent to the guest for 60 kB");
}

/// The host half-closes first; the guest keeps sending afterwards.
#[test]
fn host_half_close_then_guest_sends() {
    let (l, port) = listener(false);
    let upload = pattern(1 << 20, 10);
    let peer = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        s.write_all(b"220 ready\r\n").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut v = Vec::new();
        s.read_to_end(&mut v).unwrap();
        v
    });
    let mut net = Net::new(config());
    let mut g = SmolGuest::new(net.now(), 65520);
    let h = g.tcp_socket(1 << 16, 1 << 16);
    g.connect(h, gw(false, port), 40014);
    let mut got = Vec::new();
    let mut sent = 0;
    run_until(&mut net, &mut g, LIMIT, |_, g| {
        let s = g.tcp(h);
        let mut buf = [0u8; 1024];
        while s.can_recv() {
            let n = s.recv_slice(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        if !s.may_recv() && s.can_send() && sent < upload.len() {
            sent += s.send_slice(&upload[sent..]).unwrap();
            if sent == upload.len() {
                s.close();
            }
        }
        peer.is_finished()
    });
    assert_eq!(got, b"220 ready\r\n");
    let v = peer.join().unwrap();
    assert!(v == upload, "host got {} bytes", v.len());
}

/// 1,000 concurrent connections, opened and closed, twice, with a flow
/// table of exactly 1,000: every entry and socket is reclaimed.
#[test]
fn thousand_concurrent_connections_reclaimed() {
    const N: usize = 1000;
    let mut cfg = config();
    cfg.flow_capacity = N;
    cfg.tx_queue_frames = 4096;
    let mut net = Net::new(cfg);
    let mut ports = Vec::new();
    let mut g = SmolGuest::new(net.now(), 65520);
    for round in 0..2u16 {
        let (l, port) = listener(false);
        ports.push(port);
        let server = thread::spawn(move || {
            l.set_nonblocking(true).unwrap();
            let deadline = std::time::Instant::now() + LIMIT;
            let mut conns = Vec::new();
            while conns.len() < N {
                match l.accept() {
                    Ok((s, _)) => conns.push(s),
                    Err(_) => {
                        assert!(
                            std::time::Instant::now() < deadline,
                            "accepted {}",
                            conns.len()
                        );
                        thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            // All N are open at the same time here.
            for (i, s) in conns.iter_mut().enumerate() {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(LIMIT)).unwrap();
                let mut b = [0u8; 4];
                s.read_exact(&mut b).unwrap();
                assert_eq!(&b, b"ping");
                s.write_all(&(i as u32).to_be_bytes()).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
            }
            for s in conns.iter_mut() {
                let mut b = [0u8; 1];
                assert_eq!(s.read(&mut b).unwrap(), 0);
            }
        });
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let h = g.tcp_socket(256, 256);
                g.connect(h, gw(false, port), 20000 + round * 2000 + i as u16);
                h
            })
            .collect();
        let mut pinged = vec![false; N];
        let mut replies = 0;
        let mut seen_live = 0;
        run_until(&mut net, &mut g, LIMIT, |_, g| {
            if seen_live == 0 && pinged.iter().all(|p| *p) {
                // The check below is not vacuous: it sees live sockets.
                seen_live = attached_sockets_to(port);
            }
            for (i, &h) in handles.iter().enumerate() {
                let s = g.tcp(h);
                if s.state() == State::Established && !pinged[i] {
                    s.send_slice(b"ping").unwrap();
                    pinged[i] = true;
                }
                let mut b = [0u8; 4];
                if s.can_recv() && s.recv_slice(&mut b).unwrap() == 4 {
                    replies += 1;
                }
                if !s.may_recv() && s.state() == State::CloseWait {
                    s.close();
                }
            }
            server.is_finished()
                && handles
                    .iter()
                    .all(|&h| matches!(g.tcp(h).state(), State::Closed | State::TimeWait))
        });
        server.join().unwrap();
        assert_eq!(replies, N);
        assert!(seen_live > 0, "no live engine socket ever seen");
        for h in handles {
            g.sockets.remove(h);
        }
        assert_eq!(
            net.engine
                .counters()
                .drops(passt_engine::DropReason::FlowTableFull),
            0,
            "round {round}: flow table not reclaimed"
        );
    }
    // The last ACKs may still be on their way.
    let left = || ports.iter().map(|&p| attached_sockets_to(p)).sum::<usize>();
    let t = std::time::Instant::now();
    while left() > 0 && t.elapsed() < Duration::from_secs(5) {
        step(&mut net, &mut g);
    }
    assert_eq!(left(), 0, "engine sockets left open");
}
