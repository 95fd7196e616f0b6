//! Exact-segment TCP tests: a scripted guest sends hand-built segments, the
//! engine's answers are decoded and snapshotted (sequence numbers relative
//! to the ISNs, no host ephemeral ports, no windows, which depend on the
//! host's buffer sizes). The host side is the real kernel on loopback.
#![cfg(target_os = "linux")]

mod tcp_common;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use passt_engine::wire::{TcpFlags, TcpOptions};
use passt_engine::{Config, MacAddr};
use tcp_common::*;

const ACK: TcpFlags = TcpFlags::ACK;
const GUEST_ISN: u32 = 1_000_000;
const WAIT: Duration = Duration::from_secs(5);

fn syn_opts(mss: Option<u16>, ws: Option<u8>) -> TcpOptions {
    TcpOptions {
        mss,
        window_scale: ws,
        sack_permitted: true,
        timestamps: Some((1, 0)),
        ..TcpOptions::default()
    }
}

fn guest_addr(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(GUEST_V4), port)
}

/// A scripted connection through the gateway to a fresh loopback listener.
struct Conn {
    s: Script,
    listener: TcpListener,
    our_isn: u32,
    log: Vec<String>,
}

impl Conn {
    fn start(config: Config, guest_port: u16) -> Conn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = Script::new(
            config,
            guest_addr(guest_port),
            SocketAddr::new(IpAddr::V4(GW_V4), port),
        );
        Conn {
            s,
            listener,
            our_isn: 0,
            log: Vec::new(),
        }
    }

    /// SYN, SYN-ACK, ACK. Returns the SYN-ACK.
    fn handshake(&mut self, opts: TcpOptions, syn_window: u16, ack_window: u16) -> Seg {
        self.s
            .send_opts(GUEST_ISN, 0, TcpFlags::SYN, syn_window, opts, &[]);
        let mut segs = self.s.take();
        if segs.is_empty() {
            segs = self.s.pump_until_seg(WAIT);
        }
        assert_eq!(segs.len(), 1, "{segs:?}");
        let sa = segs.remove(0);
        assert!(sa.has(TcpFlags::SYN | TcpFlags::ACK), "{sa:?}");
        self.our_isn = sa.tcp.seq;
        self.note("SYN-ACK", &sa);
        self.s.send(
            GUEST_ISN + 1,
            self.our_isn.wrapping_add(1),
            ACK,
            ack_window,
            &[],
        );
        sa
    }

    fn note(&mut self, what: &str, seg: &Seg) {
        let line = format!("{what}: {}", describe(seg, self.our_isn, GUEST_ISN));
        self.log.push(line);
    }

    fn note_all(&mut self, what: &str, segs: &[Seg]) {
        for s in segs {
            self.note(what, s);
        }
    }

    fn seq(&self, rel: u32) -> u32 {
        self.our_isn.wrapping_add(rel)
    }

    /// Pumps host readiness until the segments sent to the guest carry
    /// `bytes` of payload in all (or [`WAIT`] passes); returns them.
    fn segments_carrying(&mut self, bytes: usize) -> Vec<Seg> {
        let mut segs: Vec<Seg> = Vec::new();
        let t = std::time::Instant::now();
        while segs.iter().map(|s| s.payload.len()).sum::<usize>() < bytes && t.elapsed() < WAIT {
            segs.extend(self.s.pump(Duration::from_millis(10)));
        }
        segs
    }

    fn accept(&self) -> TcpStream {
        let (p, _) = self.listener.accept().unwrap();
        p.set_read_timeout(Some(WAIT)).unwrap();
        p
    }
}

#[test]
fn outbound_handshake_and_data() {
    let mut c = Conn::start(Config::example(), 50000);
    let sa = c.handshake(syn_opts(Some(1460), Some(6)), 64240, 1000);
    assert_eq!(sa.dst_mac, GUEST_MAC);
    assert_eq!(sa.src.ip(), IpAddr::V4(GW_V4));
    assert_eq!(sa.dst, guest_addr(50000));
    assert!(sa.tcp.window > 0);
    let mut peer = c.accept();
    // Guest -> host.
    c.s.send(GUEST_ISN + 1, c.seq(1), ACK | TcpFlags::PSH, 1000, b"hello");
    let acks = c.s.take();
    c.note_all("after 5 bytes", &acks);
    let mut buf = [0u8; 5];
    peer.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    // Host -> guest.
    peer.write_all(b"world!").unwrap();
    let segs = c.s.pump_until_seg(WAIT);
    c.note_all("host wrote 6", &segs);
    assert_eq!(segs[0].payload, b"world!");
    c.s.send(GUEST_ISN + 6, c.seq(7), ACK, 1000, &[]);
    // Guest FIN, then host FIN.
    c.s.send(GUEST_ISN + 6, c.seq(7), ACK | TcpFlags::FIN, 1000, &[]);
    let acks = c.s.take();
    c.note_all("guest FIN", &acks);
    assert_eq!(peer.read(&mut buf).unwrap(), 0, "host saw the FIN");
    drop(peer);
    let segs = c.s.pump_until_seg(WAIT);
    c.note_all("host closed", &segs);
    c.s.send(GUEST_ISN + 7, c.seq(8), ACK, 1000, &[]);
    // The flow is gone: a stray ACK now gets a RST.
    c.s.send(GUEST_ISN + 7, c.seq(8), ACK, 1000, &[]);
    let rst = c.s.take();
    c.note_all("after teardown", &rst);
    insta::assert_snapshot!(c.log.join("\n"));
}

#[test]
fn options_without_window_scale_and_small_mss() {
    let mut c = Conn::start(Config::example(), 50001);
    // No window scale offered: none in the SYN-ACK; segments of at most
    // the guest's MSS.
    c.handshake(
        TcpOptions {
            mss: Some(1000),
            ..TcpOptions::default()
        },
        65535,
        65535,
    );
    let mut peer = c.accept();
    peer.write_all(&pattern(3500, 1)).unwrap();
    let segs = c.segments_carrying(3500);
    c.note_all("host wrote 3500", &segs);
    assert!(segs.iter().all(|s| s.payload.len() <= 1000));
    insta::assert_snapshot!(c.log.join("\n"));
}

#[test]
fn guest_window_is_respected_with_scaling() {
    let mut c = Conn::start(Config::example(), 50002);
    c.handshake(syn_opts(Some(1460), Some(6)), 64240, 10); // 10 << 6 = 640 bytes
    let mut peer = c.accept();
    peer.write_all(&pattern(5000, 2)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let segs = c.s.pump_until_seg(WAIT);
    let total: usize = segs.iter().map(|s| s.payload.len()).sum();
    assert_eq!(total, 640, "{segs:?}");
    // Window update to 1460 << 6: the rest, in MSS-sized segments.
    c.s.send(GUEST_ISN + 1, c.seq(641), ACK, 1460, &[]);
    let mut segs = c.s.take();
    let t = std::time::Instant::now();
    while segs.iter().map(|s| s.payload.len()).sum::<usize>() < 4360 && t.elapsed() < WAIT {
        segs.extend(c.s.pump(Duration::from_millis(10)));
    }
    c.note_all("window opened", &segs);
    assert!(segs.iter().all(|s| s.payload.len() <= 1460));
    insta::assert_snapshot!(c.log.join("\n"));
}

/// Regression: a refused connection is answered with RST+ACK, seq 0,
/// ack = ISN + 1.
#[test]
fn refused_gets_rst_ack() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut s = Script::new(
        Config::example(),
        guest_addr(50003),
        SocketAddr::new(IpAddr::V4(GW_V4), port),
    );
    s.send_opts(
        GUEST_ISN,
        0,
        TcpFlags::SYN,
        64240,
        syn_opts(Some(1460), Some(7)),
        &[],
    );
    let mut segs = s.take();
    if segs.is_empty() {
        segs = s.pump_until_seg(WAIT);
    }
    assert_eq!(segs.len(), 1);
    let r = &segs[0];
    assert_eq!(r.tcp.flags, TcpFlags::RST | TcpFlags::ACK);
    assert_eq!(r.tcp.seq, 0);
    assert_eq!(r.tcp.ack, GUEST_ISN + 1);
    insta::assert_snapshot!(describe(r, 0, GUEST_ISN));
}

/// SYN retransmissions from the guest while the host connect is pending
/// are absorbed; after the connect timeout the guest gets RST+ACK. The
/// connect is kept pending by a listener whose accept queue is full (the
/// kernel drops the SYNs).
#[test]
fn connect_timeout_after_absorbed_syn_retransmissions() {
    use passt_engine::HostIo;
    use passt_engine::runtime::RealHost;
    let mut side = RealHost::new().unwrap();
    let l = side
        .tcp_listen(SocketAddr::from(([127, 0, 0, 1], 0)), 0)
        .unwrap();
    let port = side.local_addr(l).unwrap().port();
    // Fill the accept queue (backlog 0 admits one).
    let mut fillers = Vec::new();
    for _ in 0..2 {
        fillers.push(
            side.tcp_connect(None, SocketAddr::from(([127, 0, 0, 1], port)))
                .unwrap(),
        );
    }
    std::thread::sleep(Duration::from_millis(50));
    let mut s = Script::new(
        Config::example(),
        guest_addr(50004),
        SocketAddr::new(IpAddr::V4(GW_V4), port),
    );
    s.send_opts(
        GUEST_ISN,
        0,
        TcpFlags::SYN,
        64240,
        syn_opts(Some(1460), None),
        &[],
    );
    let first = s.pump(Duration::from_millis(300));
    if !first.is_empty() {
        eprintln!("skipping: this kernel completed the connect ({first:?})");
        return;
    }
    // Retransmitted SYNs: nothing to the guest.
    for _ in 0..3 {
        s.now += Duration::from_secs(1);
        s.send_opts(
            GUEST_ISN,
            0,
            TcpFlags::SYN,
            64240,
            syn_opts(Some(1460), None),
            &[],
        );
        assert!(s.pump(Duration::from_millis(10)).is_empty());
    }
    let segs = s.advance(Duration::from_secs(8));
    assert_eq!(segs.len(), 1, "{segs:?}");
    assert_eq!(segs[0].tcp.flags, TcpFlags::RST | TcpFlags::ACK);
    assert_eq!(segs[0].tcp.ack, GUEST_ISN + 1);
    assert_flow_gone(&mut s);
}

/// A stray ACK for the flow draws a RST with seq = its ack (RFC 9293
/// §3.10.7.1): the flow is gone from the table.
fn assert_flow_gone(s: &mut Script) {
    s.send(GUEST_ISN + 5, 12345, ACK, 1000, &[]);
    let r = s.take();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].tcp.flags, TcpFlags::RST);
    assert_eq!(r[0].tcp.seq, 12345);
}

/// The host socket takes less than the guest sends: ACK only what it took,
/// duplicate ACKs for what follows; once it has room, a window update and
/// three duplicate ACKs make the guest retransmit.
#[test]
fn partial_write_duplicate_acks() {
    let mut c = Conn::start(Config::example(), 50005);
    c.handshake(syn_opts(Some(65000), Some(7)), 65535, 65535);
    let mut peer = c.accept();
    let chunk = pattern(60_000, 3);
    let mut seq = GUEST_ISN + 1;
    let mut last_ack = None;
    let mut partial_at = None;
    // Ignore the window and push until the socket refuses (bounded).
    for _ in 0..2000 {
        c.s.send(seq, c.seq(1), ACK, 65535, &chunk);
        let acks = c.s.take();
        let a = acks.last().expect("an ACK per data segment").tcp.ack;
        last_ack = Some(a);
        seq = seq.wrapping_add(chunk.len() as u32);
        if a != seq {
            partial_at = Some(a);
            break;
        }
    }
    let took = partial_at.expect("the socket never refused");
    assert_eq!(last_ack, Some(took));
    // The next segment lies beyond the hole: duplicate ACK.
    c.s.send(seq, c.seq(1), ACK, 65535, &chunk);
    let dup = c.s.take();
    assert_eq!(dup.len(), 1);
    assert_eq!(dup[0].tcp.ack, took);
    assert!(dup[0].payload.is_empty());
    // Host drains: window update plus three duplicate ACKs.
    peer.set_nonblocking(true).unwrap();
    let mut sink = vec![0u8; 1 << 20];
    let mut updates = Vec::new();
    let t = std::time::Instant::now();
    while updates.len() < 4 && t.elapsed() < WAIT {
        loop {
            match peer.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        updates.extend(c.s.pump(Duration::from_millis(10)));
    }
    assert!(updates.len() >= 4, "{updates:?}");
    assert!(
        updates
            .iter()
            .all(|u| u.tcp.ack == took && u.payload.is_empty())
    );
    assert!(updates.iter().all(|u| u.tcp.window > 0));
    let w = updates[0].tcp.window;
    assert!(
        updates[1..4].iter().all(|u| u.tcp.window == w),
        "dup ACKs keep the window"
    );
}

/// Data the guest does not acknowledge is resent from the socket after
/// the RTO, with exponential backoff. Script time stands still during the
/// handshake, so the SYN-ACK's RTT sample is 0 and RTO is at its 200 ms
/// floor (the 1 s initial RTO shows in the inbound SYN test).
#[test]
fn retransmission_after_rto_with_backoff() {
    let mut c = Conn::start(Config::example(), 50006);
    c.handshake(syn_opts(Some(1460), Some(7)), 65535, 65535);
    let mut peer = c.accept();
    peer.write_all(&pattern(1000, 4)).unwrap();
    let segs = c.s.pump_until_seg(WAIT);
    c.note_all("t=0", &segs);
    assert!(c.s.advance(Duration::from_millis(150)).is_empty());
    let r1 = c.s.advance(Duration::from_millis(100));
    c.note_all("t=250ms", &r1);
    assert_eq!(r1.len(), 1);
    assert_eq!(r1[0].payload, segs[0].payload);
    assert!(c.s.advance(Duration::from_millis(300)).is_empty());
    let r2 = c.s.advance(Duration::from_millis(100));
    c.note_all("t=650ms", &r2);
    assert_eq!(r2.len(), 1);
    // Acknowledged: nothing more.
    c.s.send(GUEST_ISN + 1, c.seq(1001), ACK, 65535, &[]);
    assert!(c.s.advance(Duration::from_secs(10)).is_empty());
    insta::assert_snapshot!(c.log.join("\n"));
}

/// An ACK of new data ends the backoff (as Linux clears `icsk_backoff`):
/// in a recovery where every segment is a retransmission no RTT sample
/// comes, and a timer left doubling would reach its 60 s ceiling.
#[test]
fn backoff_ends_when_new_data_is_acknowledged() {
    let mut c = Conn::start(Config::example(), 50016);
    c.handshake(syn_opts(Some(1000), Some(7)), 65535, 65535);
    let mut peer = c.accept();
    peer.write_all(&pattern(2000, 9)).unwrap();
    let segs = c.segments_carrying(2000);
    assert_eq!(segs.len(), 2, "{segs:?}");
    // Two timeouts: 200 ms, then 400 ms later (both go back to byte 1).
    let mut timeouts = Vec::new();
    for ms in 1..=800u64 {
        let r = c.s.advance(Duration::from_millis(1));
        if !r.is_empty() {
            assert_eq!(r[0].tcp.seq, c.seq(1), "{r:?}");
            timeouts.push(ms);
        }
    }
    assert_eq!(
        timeouts,
        [200, 600],
        "RTO 200 ms (the minimum), doubled once"
    );
    // The guest acknowledges the first segment: the RTO for the second is
    // the undoubled 200 ms again, not 800 ms.
    c.s.send(GUEST_ISN + 1, c.seq(1001), ACK, 65535, &[]);
    let mut next = None;
    for ms in 1..=1200u64 {
        let r = c.s.advance(Duration::from_millis(1));
        if r.iter()
            .any(|s| s.tcp.seq == c.seq(1001) && !s.payload.is_empty())
        {
            next = Some(ms);
            break;
        }
    }
    assert_eq!(next, Some(200), "backoff cleared by the ACK of new data");
}

/// Three duplicate ACKs: go back to the first unacknowledged byte.
#[test]
fn fast_retransmit_on_three_duplicate_acks() {
    let mut c = Conn::start(Config::example(), 50007);
    c.handshake(syn_opts(Some(1000), Some(7)), 65535, 65535);
    let mut peer = c.accept();
    peer.write_all(&pattern(3000, 5)).unwrap();
    let segs = c.segments_carrying(3000);
    c.note_all("sent", &segs);
    c.s.send(GUEST_ISN + 1, c.seq(1001), ACK, 65535, &[]);
    for i in 0..3 {
        c.s.send(GUEST_ISN + 1, c.seq(1001), ACK, 65535, &[]);
        let r = c.s.take();
        c.note_all(&format!("dup ack {}", i + 1), &r);
    }
    let resent: Vec<u32> = c
        .log
        .iter()
        .filter(|l| l.starts_with("dup ack 3"))
        .map(|_| 0)
        .collect();
    assert_eq!(resent.len(), 2, "{:?}", c.log);
    insta::assert_snapshot!(c.log.join("\n"));
}

/// A zero window: nothing is sent, then probes with backoff: pure ACKs one
/// below the first unacknowledged byte, which the guest must answer with
/// its window and which consume no sequence space; when the window opens,
/// everything goes from the first byte.
#[test]
fn zero_window_probe() {
    let mut c = Conn::start(Config::example(), 50008);
    c.handshake(syn_opts(Some(1460), Some(7)), 65535, 0);
    let mut peer = c.accept();
    peer.write_all(&pattern(100, 6)).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert!(c.s.pump(Duration::from_millis(50)).is_empty());
    let p1 = c.s.advance(Duration::from_millis(250));
    c.note_all("t=250ms", &p1);
    assert_eq!(p1.len(), 1);
    assert!(p1[0].payload.is_empty(), "a pure ACK");
    assert_eq!(
        p1[0].tcp.seq,
        c.seq(0),
        "one below the first unacknowledged byte"
    );
    // The guest still has no room; the next probe comes after the
    // backed-off timeout (400 ms).
    c.s.send(GUEST_ISN + 1, c.seq(1), ACK, 0, &[]);
    assert!(c.s.advance(Duration::from_millis(300)).is_empty());
    let p2 = c.s.advance(Duration::from_millis(200));
    c.note_all("t=750ms", &p2);
    assert_eq!(p2.len(), 1);
    // Window opens.
    c.s.send(GUEST_ISN + 1, c.seq(1), ACK, 100, &[]);
    let d = c.s.take();
    c.note_all("window opened", &d);
    assert_eq!(d.iter().map(|s| s.payload.len()).sum::<usize>(), 100);
    insta::assert_snapshot!(c.log.join("\n"));
}

/// Inbound: the guest never sent a frame, so the SYN goes to the broadcast
/// MAC, and is retransmitted; the guest's SYN-ACK is ACKed at once.
#[test]
fn inbound_syn_broadcast_retransmit_and_immediate_ack() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut s = Script::new(
        Config::example(),
        guest_addr(8080),
        SocketAddr::new(IpAddr::V4(GW_V4), 0),
    );
    s.net
        .engine
        .tcp_listen(SocketAddr::from(([127, 0, 0, 1], port)), 8080)
        .unwrap();
    let client = std::thread::spawn(move || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).map(|_| b)
    });
    let syn = s.pump_until_seg(WAIT);
    assert_eq!(syn.len(), 1);
    let syn = &syn[0];
    assert_eq!(syn.dst_mac, MacAddr::BROADCAST);
    assert_eq!(syn.dst, guest_addr(8080));
    assert_eq!(syn.src.ip(), IpAddr::V4(GW_V4));
    let isn = syn.tcp.seq;
    let mut log = vec![format!("SYN: {}", describe(syn, isn, 0))];
    let again = s.advance(Duration::from_millis(1100));
    assert_eq!(again.len(), 1);
    log.push(format!("t=1.1s: {}", describe(&again[0], isn, 0)));
    // The guest answers.
    s.remote = syn.src;
    s.send_opts(
        GUEST_ISN,
        isn.wrapping_add(1),
        TcpFlags::SYN | ACK,
        65535,
        syn_opts(Some(1460), Some(7)),
        &[],
    );
    let ack = s.take();
    assert_eq!(ack.len(), 1, "{ack:?}");
    assert_eq!(ack[0].dst_mac, GUEST_MAC);
    log.push(format!(
        "after SYN-ACK: {}",
        describe(&ack[0], isn, GUEST_ISN)
    ));
    // Server in the guest speaks first.
    s.send(
        GUEST_ISN + 1,
        isn.wrapping_add(1),
        ACK | TcpFlags::PSH,
        65535,
        b"hello",
    );
    let t = std::time::Instant::now();
    while !client.is_finished() && t.elapsed() < WAIT {
        s.pump(Duration::from_millis(10));
    }
    assert_eq!(&client.join().unwrap().unwrap(), b"hello");
    insta::assert_snapshot!(log.join("\n"));
}

/// Keep-alive probes after 60 s of guest silence; after four unanswered
/// ones the flow is reset both ways.
#[test]
fn keepalive_then_reset_when_guest_vanishes() {
    let mut c = Conn::start(Config::example(), 50009);
    c.handshake(syn_opts(Some(1460), Some(7)), 65535, 65535);
    let mut peer = c.accept();
    assert!(c.s.advance(Duration::from_secs(59)).is_empty());
    let k1 = c.s.advance(Duration::from_secs(2));
    c.note_all("t=61s", &k1);
    // Answered: the timer restarts.
    c.s.send(GUEST_ISN + 1, c.seq(1), ACK, 65535, &[]);
    assert!(c.s.advance(Duration::from_secs(50)).is_empty());
    for i in 0..4 {
        let k = c.s.advance(Duration::from_secs(15));
        c.note_all(&format!("unanswered {}", i + 1), &k);
    }
    let r = c.s.advance(Duration::from_secs(15));
    c.note_all("then", &r);
    assert!(r.iter().any(|s| s.has(TcpFlags::RST)));
    let mut b = [0u8; 1];
    let e = peer.read(&mut b).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionReset);
    insta::assert_snapshot!(c.log.join("\n"));
}

/// Two hours without data either way: reset both ways, even though the
/// guest answers keep-alives.
#[test]
fn inactivity_timeout() {
    let mut c = Conn::start(Config::example(), 50010);
    c.handshake(syn_opts(Some(1460), Some(7)), 65535, 65535);
    let mut peer = c.accept();
    let mut rst = false;
    for _ in 0..130 {
        let segs = c.s.advance(Duration::from_secs(60));
        rst |= segs.iter().any(|s| s.has(TcpFlags::RST));
        if rst {
            break;
        }
        c.s.send(GUEST_ISN + 1, c.seq(1), ACK, 65535, &[]);
    }
    assert!(rst, "no reset after 130 minutes");
    let mut b = [0u8; 1];
    assert_eq!(
        peer.read(&mut b).unwrap_err().kind(),
        ErrorKind::ConnectionReset
    );
}

/// A RST from the guest aborts the host socket.
#[test]
fn guest_rst_resets_host() {
    let mut c = Conn::start(Config::example(), 50011);
    c.handshake(syn_opts(Some(1460), Some(7)), 65535, 65535);
    let mut peer = c.accept();
    // Out of window: ignored.
    c.s.send(GUEST_ISN + 100_000_000, 0, TcpFlags::RST, 0, &[]);
    c.s.send(GUEST_ISN + 1, 0, TcpFlags::RST, 0, &[]);
    let mut b = [0u8; 1];
    assert_eq!(
        peer.read(&mut b).unwrap_err().kind(),
        ErrorKind::ConnectionReset
    );
    assert_flow_gone(&mut c.s);
}

/// The table is full: a new SYN gets RST+ACK and is counted.
#[test]
fn full_table_refuses_with_rst() {
    let mut cfg = Config::example();
    cfg.flow_capacity = 1;
    let mut c = Conn::start(cfg, 50012);
    c.handshake(syn_opts(Some(1460), Some(7)), 65535, 65535);
    c.s.local = guest_addr(50013);
    c.s.send(GUEST_ISN, 0, TcpFlags::SYN, 65535, &[]);
    let r = c.s.take();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].tcp.flags, TcpFlags::RST | ACK);
    assert_eq!(r[0].tcp.ack, GUEST_ISN + 1);
    assert_eq!(
        c.s.net
            .engine
            .counters()
            .drops(passt_engine::DropReason::FlowTableFull),
        1
    );
}

/// After both sides sent their FIN, the host socket reports `EPOLLHUP` on
/// every wait whatever the interest. While the flow waits for the guest's
/// last ACK it must not spin on that report: the socket is deregistered,
/// and the wait sleeps.
#[test]
fn no_busy_loop_while_waiting_for_the_guests_last_ack() {
    let mut c = Conn::start(Config::example(), 50099);
    c.handshake(syn_opts(Some(1460), Some(6)), 64240, 1000);
    let peer = c.accept();
    c.s.send(GUEST_ISN + 1, c.seq(1), ACK | TcpFlags::FIN, 1000, &[]);
    c.s.take();
    drop(peer);
    let segs = c.s.pump_until_seg(WAIT);
    assert!(
        segs.iter().any(|s| s.has(TcpFlags::FIN)),
        "host FIN relayed"
    );
    // The guest never ACKs our FIN. Count readiness reports over ~300 ms.
    let mut events = Vec::with_capacity(64);
    let mut reports = 0;
    let start = std::time::Instant::now();
    for _ in 0..3 {
        events.clear();
        let _ =
            c.s.net
                .engine
                .host_mut()
                .wait(Some(Duration::from_millis(100)), &mut events);
        reports += events.len();
        for (t, r) in events.drain(..) {
            c.s.net.engine.handle_host_event(c.s.now, t, r);
        }
    }
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "the waits slept"
    );
    assert!(reports <= 2, "{reports} readiness reports while idle");
    // The flow still completes when the guest finally ACKs.
    c.s.send(GUEST_ISN + 2, c.seq(2), ACK, 1000, &[]);
    c.s.send(GUEST_ISN + 2, c.seq(2), ACK, 1000, &[]);
    let rst = c.s.take();
    assert!(
        rst.iter().any(|s| s.has(TcpFlags::RST)),
        "flow gone after the last ACK"
    );
}

// ---------------------------------------------------------------------------
// Guest -> host backpressure: window updates and FIN ordering
// ---------------------------------------------------------------------------

/// Shrinks the receive buffer of the connections `l` accepts (inherited
/// from the listener), so that a peer that does not read fills the
/// engine's socket quickly.
fn set_rcvbuf(l: &TcpListener, bytes: i32) {
    use std::os::fd::AsRawFd;
    // SAFETY: valid descriptor and option buffer.
    let r = unsafe {
        libc::setsockopt(
            l.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &bytes as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
}

/// Window scale the backpressure tests offer; the engine's windows are in
/// units of 2^OUR_WS (it offers 7 when the guest offers scaling).
const ENGINE_WS: u32 = 7;

/// The engine's window in an ACK, in bytes.
fn window_of(s: &Seg) -> u32 {
    u32::from(s.tcp.window) << ENGINE_WS
}

/// A connection for the backpressure tests: the guest offers a large MSS,
/// the host peer has a small receive buffer and does not read yet.
/// Returns the connection, the peer, the engine's MSS and its first window.
fn backpressure_conn(guest_port: u16) -> (Conn, TcpStream, u32, u32) {
    let mut c = Conn::start(Config::example(), guest_port);
    set_rcvbuf(&c.listener, 64 * 1024);
    let sa = c.handshake(syn_opts(Some(65000), Some(7)), 65535, 65535);
    let mss = u32::from(sa.tcp.options.mss.expect("MSS in the SYN-ACK"));
    let peer = c.accept();
    (c, peer, mss, u32::from(sa.tcp.window))
}

/// Sends guest data strictly within the engine's window, in segments of
/// at most `mss`, until the window offered is smaller than one segment.
/// Asserts the socket took every byte (the window never promised more
/// than the socket takes). Returns the next sequence number and the last
/// window (bytes).
fn fill_within_window(c: &mut Conn, mss: u32, first_window: u32) -> (u32, u32) {
    let data = pattern(mss as usize, 21);
    let mut seq = GUEST_ISN + 1;
    let mut wnd = first_window;
    for _ in 0..100_000 {
        if wnd < mss {
            return (seq, wnd);
        }
        let n = wnd.min(mss) as usize;
        c.s.send(seq, c.seq(1), ACK, 65535, &data[..n]);
        let acks = c.s.take();
        let last = acks.last().expect("an ACK per data segment");
        seq = seq.wrapping_add(n as u32);
        assert_eq!(
            last.tcp.ack, seq,
            "the socket refused data within the window"
        );
        wnd = window_of(last);
    }
    panic!("the window never fell below one segment");
}

/// Reads from the peer until `total` bytes arrived (pumping the engine
/// meanwhile when `pump`); returns the segments the engine sent.
fn drain_peer(
    c: &mut Conn,
    peer: &mut TcpStream,
    total: &mut u64,
    target: u64,
    pump: bool,
) -> Vec<Seg> {
    peer.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut segs = Vec::new();
    let t = std::time::Instant::now();
    while *total < target {
        assert!(t.elapsed() < WAIT, "peer got {total} of {target} bytes");
        match peer.read(&mut buf) {
            Ok(0) => panic!("EOF after {total} of {target} bytes"),
            Ok(n) => *total += n as u64,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if pump {
                    segs.extend(c.s.pump(Duration::from_millis(1)));
                } else {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
    segs
}

/// The engine offered a window smaller than one segment (a Linux guest
/// then sends nothing and waits for its persist timer, which backs off
/// exponentially): once the host socket drains, a window update must
/// follow without any segment from the guest.
#[test]
fn small_window_is_updated_when_the_socket_drains() {
    let (mut c, mut peer, mss, w0) = backpressure_conn(50020);
    let (seq, wnd) = fill_within_window(&mut c, mss, w0);
    assert!(
        wnd > 0 && wnd < mss,
        "scenario: small nonzero window, got {wnd}"
    );
    let sent = u64::from(seq.wrapping_sub(GUEST_ISN + 1));
    let mut got = 0;
    let mut segs = drain_peer(&mut c, &mut peer, &mut got, sent, true);
    let t = std::time::Instant::now();
    while !segs.iter().any(|s| window_of(s) >= mss) && t.elapsed() < WAIT {
        segs.extend(c.s.pump(Duration::from_millis(10)));
    }
    let upd = segs
        .iter()
        .find(|s| window_of(s) >= mss)
        .unwrap_or_else(|| panic!("no window update after the socket drained: {segs:?}"));
    assert_eq!(upd.tcp.ack, seq);
    assert!(upd.payload.is_empty());
}

/// Pushes guest data past the window until the socket refuses some; returns
/// the engine's ACK (the next sequence number the guest must send).
fn push_until_refused(c: &mut Conn, mut seq: u32) -> u32 {
    let data = pattern(60_000, 22);
    for _ in 0..100_000 {
        c.s.send(seq, c.seq(1), ACK, 65535, &data);
        let acks = c.s.take();
        let a = acks.last().expect("an ACK per data segment").tcp.ack;
        if a != seq.wrapping_add(data.len() as u32) {
            return a;
        }
        seq = a;
    }
    panic!("the socket never refused");
}

/// A writable report that is stale by the time it is handled (the guest
/// filled the socket again in between) must not end the engine's interest
/// in the socket's room: once it drains, the guest hears about it.
#[test]
fn stale_writable_report_does_not_stall_window_updates() {
    let (mut c, mut peer, mss, w0) = backpressure_conn(50021);
    let (seq, _) = fill_within_window(&mut c, mss, w0);
    let seq = push_until_refused(&mut c, seq);
    let mut got = 0;
    drain_peer(
        &mut c,
        &mut peer,
        &mut got,
        u64::from(seq.wrapping_sub(GUEST_ISN + 1)),
        false,
    );
    // The socket has room: collect the report without handling it yet.
    let mut events = Vec::with_capacity(64);
    let t = std::time::Instant::now();
    while !events
        .iter()
        .any(|(_, r): &(passt_engine::Token, passt_engine::Readiness)| r.writable)
        && t.elapsed() < WAIT
    {
        let _ =
            c.s.net
                .engine
                .host_mut()
                .wait(Some(Duration::from_millis(10)), &mut events);
    }
    assert!(
        events.iter().any(|(_, r)| r.writable),
        "writable report: {events:?}"
    );
    // The guest fills the socket again, then the stale report is handled.
    let seq = push_until_refused(&mut c, seq);
    for (t, r) in events.drain(..) {
        c.s.net.engine.handle_host_event(c.s.now, t, r);
    }
    c.s.take();
    let target = u64::from(seq.wrapping_sub(GUEST_ISN + 1));
    drain_peer(&mut c, &mut peer, &mut got, target, false);
    // Time passes (real, for the host; virtual, for the engine's timers:
    // far less than a guest's persist timer backs off to).
    let mut segs = Vec::new();
    for _ in 0..100 {
        segs.extend(c.s.advance(Duration::from_millis(20)));
        segs.extend(c.s.pump(Duration::from_millis(10)));
        if segs.iter().any(|s| window_of(s) >= mss) {
            break;
        }
    }
    let upd = segs
        .iter()
        .find(|s| window_of(s) >= mss)
        .unwrap_or_else(|| panic!("no window update after the socket drained: {segs:?}"));
    assert_eq!(upd.tcp.ack, seq);
}

/// The guest's FIN arrives while the socket still refuses earlier data:
/// neither the FIN nor the refused bytes are acknowledged, the host peer
/// sees no EOF; once the guest resends the rest with its FIN, the peer
/// gets every byte, in order, then EOF.
#[test]
fn guest_fin_waits_for_refused_data() {
    let (mut c, mut peer, mss, w0) = backpressure_conn(50022);
    let (seq, _) = fill_within_window(&mut c, mss, w0);
    let hole = push_until_refused(&mut c, seq);
    // The rest of the stream, FIN included, while the socket is full: the
    // part past the hole and a bare FIN at the end are not acknowledged.
    let tail = pattern(30_000, 24);
    c.s.send(hole, c.seq(1), ACK | TcpFlags::FIN, 65535, &tail);
    let end = hole.wrapping_add(tail.len() as u32);
    c.s.send(end, c.seq(1), ACK | TcpFlags::FIN, 65535, &[]);
    let acks = c.s.take();
    assert!(!acks.is_empty());
    let acked = acks.last().unwrap().tcp.ack;
    assert!(
        seq::lt_or_eq(acked, end),
        "FIN acknowledged before the data: ack {acked} end {end}"
    );
    // The peer reads what was taken, and sees no EOF yet.
    let mut got = 0;
    let taken = u64::from(acked.wrapping_sub(GUEST_ISN + 1));
    drain_peer(&mut c, &mut peer, &mut got, taken, true);
    let mut b = [0u8; 1];
    std::thread::sleep(Duration::from_millis(50));
    match peer.read(&mut b) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the peer must wait for more data: {other:?}"),
    }
    // The guest resends from the ACK with its FIN, until all is taken.
    let mut at = acked;
    let mut fin_acked = false;
    for _ in 0..1000 {
        let off = at.wrapping_sub(hole) as usize;
        c.s.send(
            at,
            c.seq(1),
            ACK | TcpFlags::FIN,
            65535,
            &tail[off.min(tail.len())..],
        );
        let a = c.s.take().last().expect("ACK").tcp.ack;
        if a == end.wrapping_add(1) {
            fin_acked = true;
            break;
        }
        at = a;
        let target = u64::from(at.wrapping_sub(GUEST_ISN + 1));
        drain_peer(&mut c, &mut peer, &mut got, target, true);
    }
    assert!(fin_acked, "FIN never taken");
    let total = u64::from(end.wrapping_sub(GUEST_ISN + 1));
    drain_peer(&mut c, &mut peer, &mut got, total, true);
    peer.set_nonblocking(false).unwrap();
    assert_eq!(peer.read(&mut b).unwrap(), 0, "EOF after every byte");
    assert_eq!(got, total);
}

mod seq {
    pub fn lt_or_eq(a: u32, b: u32) -> bool {
        (b.wrapping_sub(a) as i32) >= 0
    }
}

/// Fills the socket strictly within the windows the engine offers, in
/// segments of `seg` bytes (smaller when the window is), down to a zero
/// window or the first refusal; returns the bytes taken and refused.
fn refused_within_window(port: u16, rcvbuf: Option<i32>, seg: u32) -> (u64, u64) {
    let mut c = Conn::start(Config::example(), port);
    if let Some(b) = rcvbuf {
        set_rcvbuf(&c.listener, b);
    }
    let sa = c.handshake(syn_opts(Some(65000), Some(7)), 65535, 65535);
    let _peer = c.accept();
    let data = pattern(seg as usize, 25);
    let mut seq = GUEST_ISN + 1;
    let mut wnd = u32::from(sa.tcp.window);
    let mut refused = 0u64;
    let mut sent = 0u64;
    for _ in 0..200_000 {
        if wnd == 0 {
            break;
        }
        let n = wnd.min(seg) as usize;
        c.s.send(seq, c.seq(1), ACK, 65535, &data[..n]);
        let acks = c.s.take();
        let last = acks.last().expect("an ACK per data segment");
        let took = last.tcp.ack.wrapping_sub(seq);
        refused += n as u64 - u64::from(took);
        sent += u64::from(took);
        seq = last.tcp.ack;
        wnd = window_of(last);
        if refused > 0 {
            break;
        }
    }
    (sent, refused)
}

/// The window offered never exceeds what the host socket takes, down to a
/// full buffer (the peer does not read): the kernel charges its per-buffer
/// overhead against `SO_SNDBUF`, which `SIOCOUTQ` does not count, and with
/// megabytes queued that overhead exceeds the free space that is left.
/// What the guest sends past a refusal is lost to it (we keep no buffer):
/// without SACK it recovers by retransmission timeouts that back off.
#[test]
fn window_never_promises_more_than_the_socket_takes() {
    let mut bad = Vec::new();
    for (i, (rcvbuf, seg)) in [
        (None, 65_000),
        (None, 1448),
        (Some(64 * 1024), 1448),
        (None, 9000),
    ]
    .into_iter()
    .enumerate()
    {
        let (sent, refused) = refused_within_window(50030 + i as u16, rcvbuf, seg);
        eprintln!("rcvbuf {rcvbuf:?} seg {seg}: sent {sent} refused {refused}");
        if refused > 0 {
            bad.push(format!(
                "rcvbuf {rcvbuf:?} seg {seg}: {refused} bytes refused after {sent}"
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "the socket refused data within the window: {bad:?}"
    );
}

#[path = "udp_support/mod.rs"]
mod udp_support;

/// DNS over TCP to the `--dns-forward` address reaches the host resolver
/// (`--dns-host`), as DNS over UDP does; other ports on that address are
/// not redirected. Runs in a network namespace of its own, so binding
/// port 53 on its loopback touches nothing else.
#[test]
fn dns_over_tcp_follows_dns_forward() {
    if !udp_support::enter_private_netns() {
        eprintln!("SKIPPED dns_over_tcp_follows_dns_forward: not root (no private namespace)");
        return;
    }
    let resolver = TcpListener::bind("127.0.0.1:53").expect("port 53 in our own namespace");
    let mut config = Config::example();
    let forward = std::net::Ipv4Addr::new(192, 0, 2, 53);
    config.mapping.dns_forward_v4 = Some(forward);
    config.mapping.dns_host_v4 = Some(std::net::Ipv4Addr::LOCALHOST);
    let mut s = Script::new(
        config,
        guest_addr(50200),
        SocketAddr::new(IpAddr::V4(forward), 53),
    );
    s.send_opts(
        GUEST_ISN,
        0,
        TcpFlags::SYN,
        64240,
        syn_opts(Some(1460), None),
        &[],
    );
    let mut segs = s.take();
    if segs.is_empty() {
        segs = s.pump_until_seg(WAIT);
    }
    assert!(
        segs.iter()
            .any(|seg| seg.has(TcpFlags::SYN | TcpFlags::ACK)),
        "connected through to the resolver: {segs:?}"
    );
    resolver.set_nonblocking(false).unwrap();
    let (conn, peer) = resolver.accept().expect("the resolver got the connection");
    assert!(peer.ip().is_loopback());
    drop(conn);
}

/// The guest's segment 1 is lost and segment 2 arrives beyond the hole, so
/// it is dropped (we keep no out-of-order data). When the guest resends
/// segment 1, the cumulative ACK (a partial ACK: segment 2 is still
/// missing) goes out alone: a NewReno guest resends segment 2 on it. This
/// guest does not, so 20 ms later it gets the nudge (a window update and
/// duplicates) and is taken for a sender that needs duplicate ACKs (RFC
/// 5681 §3.2): from then on every partial ACK comes with four duplicates
/// at once.
#[test]
fn dropped_data_after_a_hole_is_asked_for_again_at_once() {
    let mut c = Conn::start(Config::example(), 50300);
    c.handshake(syn_opts(Some(1460), None), 64240, 1000);
    let _peer = c.accept();
    let seg = |n: u8| [b'0' + n; 100];
    let at = |n: u32| GUEST_ISN + 1 + 100 * (n - 1);
    // Segment 2 first: beyond the hole, dropped, one duplicate ACK.
    c.s.send(at(2), c.seq(1), ACK, 1000, &seg(2));
    let dup = c.s.take();
    assert_eq!(dup.len(), 1, "{dup:?}");
    assert_eq!(dup[0].tcp.ack, at(1));
    // Segment 1 fills the hole: the partial ACK alone (a probe).
    c.s.send(at(1), c.seq(1), ACK, 1000, &seg(1));
    let probe = c.s.take();
    assert_eq!(probe.len(), 1, "{probe:?}");
    assert_eq!(probe[0].tcp.ack, at(2));
    // No answer within 20 ms: the nudge, five identical ACKs.
    assert!(c.s.advance(Duration::from_millis(19)).is_empty());
    let nudge = c.s.advance(Duration::from_millis(2));
    assert_eq!(nudge.len(), 5, "{nudge:?}");
    assert!(
        nudge
            .iter()
            .all(|a| a.tcp.ack == at(2) && a.payload.is_empty())
    );
    // Segment 2 again: in order now, a single ACK (nothing dropped beyond).
    c.s.send(at(2), c.seq(1), ACK, 1000, &seg(2));
    let last = c.s.take();
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(last[0].tcp.ack, at(3));
    // The next hole: segment 4 dropped, segment 3 fills: the ACK and four
    // duplicates of it at once, all with the same window.
    c.s.send(at(4), c.seq(1), ACK, 1000, &seg(4));
    assert_eq!(c.s.take().len(), 1);
    c.s.send(at(3), c.seq(1), ACK, 1000, &seg(3));
    let acks = c.s.take();
    assert_eq!(acks.len(), 5, "{acks:?}");
    assert!(
        acks.iter()
            .all(|a| a.tcp.ack == at(4) && a.payload.is_empty())
    );
    assert!(
        acks.windows(2).all(|w| w[0].tcp.window == w[1].tcp.window),
        "same window: true duplicates"
    );
}

/// A guest that resends the next missing segment on a partial ACK alone
/// (NewReno, RFC 6582: Linux without SACK) gets no duplicate bursts once
/// it did so three times: on top of its own recovery they only make it
/// send new data beyond the hole, dropped again. If it later answers a
/// nudge at once instead, it is taken for one that needs duplicates.
#[test]
fn newreno_guest_gets_partial_acks_alone() {
    let mut c = Conn::start(Config::example(), 50301);
    c.handshake(syn_opts(Some(1460), None), 64240, 1000);
    let _peer = c.accept();
    let seg = |n: u32| [b'a' + (n % 26) as u8; 100];
    let at = |n: u32| GUEST_ISN + 1 + 100 * (n - 1);
    // Segment 1 lost; 2..=6 arrive and are dropped.
    for n in 2..=6 {
        c.s.send(at(n), c.seq(1), ACK, 1000, &seg(n));
    }
    assert_eq!(c.s.take().len(), 5, "one duplicate ACK each");
    // The guest resends 1, then each next segment on each partial ACK.
    for n in 1..=5 {
        c.s.send(at(n), c.seq(1), ACK, 1000, &seg(n));
        let acks = c.s.take();
        assert_eq!(acks.len(), 1, "segment {n}: a lone partial ACK: {acks:?}");
        assert_eq!(acks[0].tcp.ack, at(n + 1));
    }
    c.s.send(at(6), c.seq(1), ACK, 1000, &seg(6));
    assert_eq!(c.s.take().len(), 1);
    // A new hole later: still no bursts, and no nudge for 4 s.
    c.s.send(at(8), c.seq(1), ACK, 1000, &seg(8));
    c.s.send(at(9), c.seq(1), ACK, 1000, &seg(9));
    assert_eq!(c.s.take().len(), 2);
    c.s.send(at(7), c.seq(1), ACK, 1000, &seg(7));
    let acks = c.s.take();
    assert_eq!(acks.len(), 1, "{acks:?}");
    for _ in 0..39 {
        assert!(c.s.advance(Duration::from_millis(100)).is_empty());
    }
    // Left open for 4 s: one nudge (a guest may have lost its timer).
    let late = c.s.advance(Duration::from_millis(200));
    assert_eq!(late.len(), 5, "{late:?}");
    // The guest answers the nudge at once: it needed duplicate ACKs after
    // all (early answers can mislead), so the next partial ACK comes with
    // four duplicates.
    c.s.send(at(8), c.seq(1), ACK, 1000, &seg(8));
    let acks = c.s.take();
    assert_eq!(acks.len(), 5, "{acks:?}");
    assert!(acks.iter().all(|a| a.tcp.ack == at(9)));
}

/// When the guest does not resend what we dropped beyond a hole (its
/// duplicate count was spoiled, or its retransmission was lost), the engine
/// asks again on a timer: five identical ACKs whose window differs from the
/// last one sent by one unit of our scale (a window update, then true
/// duplicates), alternating up and down, backing off, and stopping once the
/// hole is gone.
#[test]
fn unanswered_hole_is_nudged_with_alternating_windows() {
    let mut c = Conn::start(Config::example(), 50310);
    c.handshake(syn_opts(Some(1460), Some(7)), 64240, 1000);
    let mut peer = c.accept();
    let one = [b'1'; 100];
    let two = [b'2'; 100];
    let three = [b'3'; 100];
    // Segments 2 and 3 arrive beyond a hole and are dropped.
    c.s.send(GUEST_ISN + 101, c.seq(1), ACK, 1000, &two);
    c.s.send(GUEST_ISN + 201, c.seq(1), ACK, 1000, &three);
    let dups = c.s.take();
    assert_eq!(dups.len(), 2, "{dups:?}");
    // Segment 1 fills the hole: the partial ACK alone (a probe: does the
    // guest resend on it?).
    c.s.send(GUEST_ISN + 1, c.seq(1), ACK, 1000, &one);
    let probe = c.s.take();
    assert_eq!(probe.len(), 1, "the partial ACK alone: {probe:?}");
    let w0 = probe[0].tcp.window;
    // Nothing more from the guest. Step 1 ms at a time and record the
    // bursts: the first when the probe gives up (20 ms), then twice the
    // smoothed RTT (the handshake's sample is ~0 here, so the 5 ms
    // minimum) doubled each time.
    let mut at = Vec::new();
    let mut windows = vec![w0];
    for ms in 1..=100u32 {
        let segs = c.s.advance(Duration::from_millis(1));
        if segs.is_empty() {
            continue;
        }
        assert_eq!(segs.len(), 5, "at {ms} ms: {segs:?}");
        assert!(
            segs.iter()
                .all(|s| s.tcp.ack == GUEST_ISN + 101 && s.payload.is_empty())
        );
        assert!(segs.windows(2).all(|w| w[0].tcp.window == w[1].tcp.window));
        at.push(ms);
        windows.push(segs[0].tcp.window);
    }
    assert_eq!(
        at,
        [20, 30, 50, 90],
        "20 ms (the partial ACK's probe), then waits of 10, 20, 40 ms"
    );
    for w in windows.windows(2) {
        assert_eq!(
            w[0].abs_diff(w[1]),
            1,
            "one unit of scale apart: {windows:?}"
        );
    }
    for w in windows.windows(3) {
        assert_eq!(w[0], w[2], "alternating: {windows:?}");
    }
    // The guest resends 2 and 3: no more nudges.
    c.s.send(GUEST_ISN + 101, c.seq(1), ACK, 1000, &two);
    c.s.send(GUEST_ISN + 201, c.seq(1), ACK, 1000, &three);
    let acks = c.s.take();
    assert_eq!(
        acks.last().map(|s| s.tcp.ack),
        Some(GUEST_ISN + 301),
        "{acks:?}"
    );
    for _ in 0..20 {
        let later = c.s.advance(Duration::from_millis(100));
        assert!(
            later.iter().all(|s| s.tcp.ack == GUEST_ISN + 301),
            "{later:?}"
        );
        assert!(later.len() <= 1, "nudged after the hole closed: {later:?}");
    }
    let mut got = vec![0u8; 300];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got[..100], &one[..]);
    assert_eq!(&got[100..200], &two[..]);
    assert_eq!(&got[200..], &three[..]);
}

/// Nudges back off to one every 4 s and never give up while the hole is
/// open: a guest may have lost its own retransmission timer (smoltcp 0.14
/// does when a retransmission meets an expired neighbour entry).
#[test]
fn nudges_back_off_to_a_ceiling_and_go_on() {
    let mut c = Conn::start(Config::example(), 50311);
    c.handshake(syn_opts(Some(1460), Some(7)), 64240, 1000);
    let _peer = c.accept();
    c.s.send(GUEST_ISN + 101, c.seq(1), ACK, 1000, &[b'2'; 100]);
    assert_eq!(c.s.take().len(), 1);
    let mut at = Vec::new();
    for step in 1..=400u64 {
        let segs = c.s.advance(Duration::from_millis(50));
        assert!(segs.is_empty() || segs.len() == 5, "{segs:?}");
        if segs.len() == 5 {
            at.push(step * 50);
        }
    }
    // 5 ms, then waits of 10, 20, ... 2560 ms (seen at 50 ms steps), then
    // 4 s for ever: 14 bursts in 20 s of silence.
    let gaps: Vec<u64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(at.len() >= 13, "{at:?}");
    assert!(gaps.iter().all(|&g| g <= 4000), "{gaps:?}");
    assert_eq!(gaps[gaps.len() - 2..], [4000, 4000], "{at:?}");
}
