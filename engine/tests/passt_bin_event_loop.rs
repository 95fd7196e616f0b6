//! The event loop in-process, as tap-harness and the binaries use it: frames
//! in over a QEMU stream reach the engine, queued frames go out with their
//! length prefix (and into the capture), the stop handle and time limit end
//! the loop, and the listener serves one client at a time.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use passt_engine::runtime::RealHost;
use passt_engine::runtime::event_loop::{EventLoop, ExitReason, RESERVED_TOKENS_START};
use passt_engine::runtime::pcap::PcapWriter;
use passt_engine::runtime::transport::{GuestTransport, StreamTransport};
use passt_engine::{Config, Engine};

fn engine() -> Engine<RealHost> {
    Engine::new(Config::example(), RealHost::new().unwrap(), 7).unwrap()
}

fn frame(tag: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.resize(len, tag);
    f
}

fn prefixed(f: &[u8]) -> Vec<u8> {
    let mut out = (f.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(f);
    out
}

fn scratch(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("passt-loop-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn reserved_tokens_are_at_the_top() {
    use passt_engine::runtime::event_loop::{
        TOKEN_GUEST, TOKEN_LISTENER, TOKEN_SIGNAL, TOKEN_STOP,
    };
    for t in [TOKEN_SIGNAL, TOKEN_STOP, TOKEN_LISTENER, TOKEN_GUEST] {
        assert!(t.0 >= RESERVED_TOKENS_START);
    }
}

#[test]
fn frames_flow_both_ways_over_a_connected_stream() {
    let dir = scratch("stream");
    let pcap_path = dir.join("c.pcap");
    let (ours, mut guest) = UnixStream::pair().unwrap();
    let mut lp = EventLoop::new(engine(), StreamTransport::connected(ours).unwrap()).unwrap();
    lp.set_pcap(PcapWriter::create(&pcap_path).unwrap());
    // Frames the engine has queued for the guest: one short (padded to 60
    // on the wire), one large.
    let out_small = frame(0xaa, 42);
    let out_big = frame(0xbb, 9000);
    lp.engine_mut().tx_queue().push(&out_small).unwrap();
    lp.engine_mut().tx_queue().push(&out_big).unwrap();

    let worker = std::thread::spawn(move || {
        let r = lp.run_for(Duration::from_secs(10));
        (r.unwrap(), lp)
    });

    // Three frames in, split awkwardly across writes.
    let mut stream = Vec::new();
    for (i, len) in [60usize, 1514, 14].iter().enumerate() {
        stream.extend_from_slice(&prefixed(&frame(i as u8 + 1, *len)));
    }
    for chunk in stream.chunks(7) {
        guest.write_all(chunk).unwrap();
    }
    // Read what the loop sent: both queued frames.
    guest
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let want = 4 + 60 + 4 + 9000;
    let mut got = vec![0u8; want];
    guest.read_exact(&mut got).unwrap();
    assert_eq!(&got[..4], &60u32.to_be_bytes());
    assert_eq!(&got[4..46], &out_small[..]);
    assert!(got[46..64].iter().all(|b| *b == 0), "zero padding");
    assert_eq!(&got[64..68], &9000u32.to_be_bytes());
    assert_eq!(&got[68..], &out_big[..]);
    drop(guest);

    let (reason, lp) = worker.join().unwrap();
    assert_eq!(
        reason,
        ExitReason::GuestGone,
        "-F style streams are one-off"
    );
    let stats = lp.stats();
    assert_eq!(stats.frames_from_guest, 3);
    assert_eq!(stats.frames_to_guest, 2);
    let engine = lp.into_engine();
    assert_eq!(engine.counters().frames_in, 3);
    assert_eq!(engine.counters().bytes_in, 60 + 1514 + 14);

    // The capture has all five frames, unpadded.
    let bytes = std::fs::read(&pcap_path).unwrap();
    let mut r = pcap_file::pcap::PcapReader::new(&bytes[..]).unwrap();
    let mut lens = Vec::new();
    while let Some(p) = r.next_packet() {
        lens.push(p.unwrap().data.len());
    }
    lens.sort_unstable();
    assert_eq!(lens, vec![14, 42, 60, 1514, 9000]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stop_handle_and_time_limit_end_the_loop() {
    let dir = scratch("stop");
    let sock = dir.join("s.socket");
    let mut lp = EventLoop::new(engine(), StreamTransport::listen(&sock).unwrap()).unwrap();
    assert_eq!(lp.socket_path(), Some(sock.as_path()));

    let t0 = Instant::now();
    assert_eq!(
        lp.run_for(Duration::from_millis(150)).unwrap(),
        ExitReason::TimeLimit
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_secs(3),
        "{took:?}"
    );

    let stop = lp.stop_handle();
    let worker = std::thread::spawn(move || (lp.run(), lp));
    std::thread::sleep(Duration::from_millis(50));
    stop.stop();
    let (r, lp) = worker.join().unwrap();
    assert_eq!(r.unwrap(), ExitReason::Stopped);
    assert!(sock.exists());
    drop(lp);
    assert!(!sock.exists(), "socket file removed when the loop goes");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn listener_serves_one_client_and_survives_bad_lengths() {
    let dir = scratch("listen");
    let sock = dir.join("s.socket");
    // A stale socket file (nobody listening) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let mut lp = EventLoop::new(engine(), StreamTransport::listen(&sock).unwrap()).unwrap();
    let stop = lp.stop_handle();
    let worker = std::thread::spawn(move || (lp.run_for(Duration::from_secs(20)), lp));

    let read_until_closed = |s: &mut UnixStream| {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 256];
        loop {
            match s.read(&mut b) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) => panic!("expected close: {e}"),
            }
        }
    };

    let mut a = UnixStream::connect(&sock).unwrap();
    a.write_all(&prefixed(&frame(1, 60))).unwrap();
    a.write_all(&[0, 0, 0, 5]).unwrap(); // shorter than an Ethernet header
    read_until_closed(&mut a);

    let mut b = UnixStream::connect(&sock).unwrap();
    b.write_all(&prefixed(&frame(2, 60))).unwrap();
    let mut c = UnixStream::connect(&sock).unwrap();
    read_until_closed(&mut c);
    b.write_all(&prefixed(&frame(3, 60))).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stop.stop();

    let (r, lp) = worker.join().unwrap();
    assert_eq!(r.unwrap(), ExitReason::Stopped);
    let s = lp.stats();
    assert_eq!(s.framing_resets, 1);
    assert_eq!(s.clients_accepted, 2);
    assert_eq!(s.clients_refused, 1);
    assert_eq!(s.frames_from_guest, 3);
    assert!(lp.guest_connected(), "b is still connected");
    drop(b);
    drop(lp);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn probing_skips_live_sockets() {
    let dir = scratch("probe");
    let live = std::os::unix::net::UnixListener::bind(dir.join("t_1.socket")).unwrap();
    let t = StreamTransport::listen_probe_in(&dir, "t").unwrap();
    assert_eq!(t.socket_path(), Some(dir.join("t_2.socket").as_path()));
    drop(live);
    drop(t);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A who-has for the example configuration's gateway, length-prefixed.
fn arp_request_prefixed() -> Vec<u8> {
    use passt_engine::wire::{self, ArpOperation, ArpRepr};
    let mac = passt_engine::MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    let mut buf = vec![0; 64];
    let n = wire::build_arp(
        &mut buf,
        mac,
        passt_engine::MacAddr::BROADCAST,
        &ArpRepr {
            operation: ArpOperation::Request,
            sender_hw: mac,
            sender_ip: std::net::Ipv4Addr::new(192, 0, 2, 15),
            target_hw: passt_engine::MacAddr([0; 6]),
            target_ip: std::net::Ipv4Addr::new(192, 0, 2, 1),
        },
    )
    .unwrap();
    prefixed(&buf[..n])
}

/// Complete length-prefixed frames at the front of `buf` (removed).
fn count_frames(buf: &mut Vec<u8>) -> usize {
    let mut at = 0;
    let mut n = 0;
    while buf.len() - at >= 4 {
        let len = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
        if buf.len() - at - 4 < len {
            break;
        }
        at += 4 + len;
        n += 1;
    }
    buf.drain(..at);
    n
}

#[test]
fn a_guest_that_stops_reading_holds_intake_back_and_loses_no_reply() {
    const REQUESTS: usize = 20_000;
    let mut config = Config::example();
    config.ipv6 = None;
    config.tx_queue_frames = 16;
    let engine = Engine::new(config, RealHost::new().unwrap(), 7).unwrap();
    let (ours, mut guest) = UnixStream::pair().unwrap();
    let mut lp = EventLoop::new(engine, StreamTransport::connected(ours).unwrap()).unwrap();
    guest.set_nonblocking(true).unwrap();
    let stream: Vec<u8> = (0..REQUESTS).flat_map(|_| arp_request_prefixed()).collect();

    // The guest writes and never reads: the replies fill the socket, then
    // the queue, and the loop must stop taking requests.
    let mut written = 0;
    for _ in 0..10_000 {
        match guest.write(&stream[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("write: {e}"),
        }
        lp.iterate(Some(Duration::from_millis(1))).unwrap();
        if lp.driver_stats().guest_frames_refused > 0 && written < stream.len() {
            break;
        }
    }
    assert!(
        lp.driver_stats().guest_frames_refused > 0,
        "the loop held guest frames back: {:?}",
        lp.driver_stats()
    );
    assert!(written < stream.len(), "the guest's writes were held back");
    assert_eq!(
        lp.engine()
            .counters()
            .drops(passt_engine::DropReason::TxQueueFull),
        0
    );

    // The guest reads again: every request is answered.
    let mut replies = 0;
    let mut inbox = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let end = Instant::now() + Duration::from_secs(30);
    while replies < REQUESTS && Instant::now() < end {
        if written < stream.len() {
            match guest.write(&stream[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("write: {e}"),
            }
        }
        lp.iterate(Some(Duration::from_millis(1))).unwrap();
        loop {
            match guest.read(&mut chunk) {
                Ok(0) => panic!("the loop closed the guest"),
                Ok(n) => inbox.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        replies += count_frames(&mut inbox);
    }
    assert_eq!(replies, REQUESTS);
    assert_eq!(lp.stats().frames_from_guest, REQUESTS as u64);
    assert_eq!(lp.engine().counters().total_drops(), 0);
}

#[test]
fn control_socket_tokens_are_reserved_and_clash_with_no_other() {
    use passt_engine::runtime::control;
    use passt_engine::runtime::event_loop::{
        TOKEN_GUEST, TOKEN_LISTENER, TOKEN_SIGNAL, TOKEN_STOP,
    };
    let others = [TOKEN_SIGNAL, TOKEN_STOP, TOKEN_LISTENER, TOKEN_GUEST];
    for t in control::tokens() {
        assert!(t.0 >= RESERVED_TOKENS_START, "{t:?}");
        assert!(!others.contains(&t), "{t:?}");
        // u64::MAX - 8 is pasta's namespace exit watch.
        assert_ne!(t.0, u64::MAX - 8, "{t:?}");
    }
}
