//! The `passt` binary under bursts, over its UNIX socket: frames for the
//! guest are held back, never dropped, when the guest reads slower than
//! work arrives (the driver contract's backpressure, `engine/src/driver.rs`).
//!
//! - 20,000 ARP requests written in 200 KB chunks, the socket read all the
//!   while: exactly 20,000 replies.
//! - 100,000 UDP datagrams from 10,000 source ports to an echo server on
//!   loopback: every one comes back.
//!
//! The UDP test runs in a network namespace of its own (the test thread
//! `unshare`s one; passt, spawned from that thread, inherits it); without
//! the privilege to create one (not root) it says so and returns. Every
//! wait is bounded; every spawned passt is killed by PID on drop.

mod netns;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use passt_engine::MacAddr;
use passt_engine::wire::{self, ArpOperation, ArpRepr, IpRepr, Ipv4Repr, L3, L4, UdpRepr};

const PASST: &str = env!("CARGO_BIN_EXE_passt");
const GUEST_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const OUR_MAC: MacAddr = MacAddr::PASST_DEFAULT;
const GUEST4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 15);
const GW4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Longest any one test may take.
const LIMIT: Duration = Duration::from_secs(60);
/// Bytes written to the socket per write call.
const CHUNK: usize = 200_000;

/// A passt child in the foreground, IPv4 only; killed by PID and reaped,
/// and its scratch directory removed, on drop.
struct Passt {
    child: Child,
    dir: PathBuf,
}

impl Passt {
    /// Starts passt and waits for its pid file (written once everything is
    /// set up).
    fn start(name: &str) -> Passt {
        let dir = std::env::temp_dir().join(format!("passt-bp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Started as root, passt runs as nobody: its files go where nobody
        // may write (sticky, like /tmp).
        std::fs::set_permissions(
            &dir,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o1777),
        )
        .unwrap();
        let child = Command::new(PASST)
            .args([
                "-f",
                "-4",
                "-a",
                "192.0.2.15",
                "-n",
                "24",
                "-g",
                "192.0.2.1",
            ])
            .args(["-D", "192.0.2.53", "-s"])
            .arg(dir.join("s.socket"))
            .arg("-P")
            .arg(dir.join("pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn passt");
        let mut p = Passt { child, dir };
        let end = Instant::now() + LIMIT;
        while !std::fs::read_to_string(p.dir.join("pid")).is_ok_and(|s| s.ends_with('\n')) {
            if let Some(st) = p.child.try_wait().unwrap() {
                panic!("passt exited early: {st:?}");
            }
            assert!(Instant::now() < end, "passt never became ready");
            std::thread::sleep(Duration::from_millis(10));
        }
        p
    }

    /// The guest's end of the QEMU stream: (writer, reader).
    fn connect(&self) -> (UnixStream, UnixStream) {
        let s = UnixStream::connect(self.dir.join("s.socket")).expect("connect to passt");
        s.set_write_timeout(Some(LIMIT)).unwrap();
        let r = s.try_clone().unwrap();
        r.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        (s, r)
    }
}

impl Drop for Passt {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill(2) on our own child, by PID.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Appends `frame` to `out` with its 4-byte length prefix.
fn push_framed(out: &mut Vec<u8>, frame: &[u8]) {
    out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    out.extend_from_slice(frame);
}

/// Writes `stream` in [`CHUNK`]-byte writes.
fn write_in_chunks(mut s: UnixStream, stream: Vec<u8>) {
    for chunk in stream.chunks(CHUNK) {
        s.write_all(chunk).expect("passt takes the guest's frames");
    }
}

/// Reads frames from `r` and hands each to `count` until it returns true
/// (everything expected arrived), `stop` is set or [`LIMIT`] passes.
fn read_frames(mut r: UnixStream, stop: &AtomicBool, mut count: impl FnMut(&[u8]) -> bool) {
    let end = Instant::now() + LIMIT;
    let mut buf = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 16];
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        match r.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => panic!("read from passt: {e}"),
        }
        let mut at = 0;
        while buf.len() - at >= 4 {
            let len = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            if buf.len() - at - 4 < len {
                break;
            }
            if count(&buf[at + 4..at + 4 + len]) {
                return;
            }
            at += 4 + len;
        }
        buf.drain(..at);
    }
}

fn arp_request(sender: Ipv4Addr) -> Vec<u8> {
    let mut buf = vec![0; 64];
    let n = wire::build_arp(
        &mut buf,
        GUEST_MAC,
        MacAddr::BROADCAST,
        &ArpRepr {
            operation: ArpOperation::Request,
            sender_hw: GUEST_MAC,
            sender_ip: sender,
            target_hw: MacAddr([0; 6]),
            target_ip: GW4,
        },
    )
    .unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn twenty_thousand_arp_requests_in_200_kb_chunks_get_twenty_thousand_replies() {
    const REQUESTS: usize = 20_000;
    let passt = Passt::start("arp");
    let (w, r) = passt.connect();
    let mut stream = Vec::with_capacity(REQUESTS * 46);
    for _ in 0..REQUESTS {
        push_framed(&mut stream, &arp_request(GUEST4));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut replies = 0usize;
            read_frames(r, &stop, |f| {
                let is_reply = wire::parse_frame(f).is_ok_and(|p| {
                    matches!(p.l3, L3::Arp(a) if a.operation == ArpOperation::Reply && a.sender_ip == GW4)
                });
                replies += usize::from(is_reply);
                replies == REQUESTS
            });
            replies
        })
    };
    write_in_chunks(w, stream);
    let replies = reader.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    assert_eq!(replies, REQUESTS, "every ARP request answered");
}

/// A guest datagram to `gw_port` on the gateway (the host's loopback) from
/// guest port `sport`, whose payload is `id`.
fn udp_to_gateway(sport: u16, gw_port: u16, id: u32) -> Vec<u8> {
    let ip = IpRepr::V4(Ipv4Repr {
        src_addr: GUEST4,
        dst_addr: GW4,
        protocol: wire::protocol::UDP,
        hop_limit: 64,
        dscp: 0,
        ecn: 0,
        ident: 1,
        dont_frag: false,
        payload_len: 0,
    });
    let udp = UdpRepr {
        src_port: sport,
        dst_port: gw_port,
    };
    let mut buf = vec![0u8; 64];
    let n = wire::build_udp(&mut buf, GUEST_MAC, OUR_MAC, ip, &udp, &id.to_be_bytes()).unwrap();
    buf.truncate(n);
    buf
}

/// Makes `s`'s receive buffer `bytes` large, past `rmem_max` (we are root
/// in our own namespace), so the echo server itself drops nothing.
fn force_rcvbuf(s: &UdpSocket, bytes: i32) {
    // SAFETY: setsockopt with a live int on our own socket.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &bytes as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
}

#[test]
fn a_hundred_thousand_udp_datagrams_from_ten_thousand_ports_all_come_back() {
    const PORTS: u32 = 10_000;
    const PER_PORT: u32 = 10;
    const TOTAL: usize = (PORTS * PER_PORT) as usize;
    if !netns::enter_or_skip() {
        return;
    }
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    force_rcvbuf(&server, 256 << 20);
    server
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = server.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut echoed = 0usize;
            let end = Instant::now() + LIMIT;
            while echoed < TOTAL && Instant::now() < end && !stop.load(Ordering::Relaxed) {
                match server.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        server.send_to(&buf[..n], from).unwrap();
                        echoed += 1;
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => panic!("echo server: {e}"),
                }
            }
            echoed
        })
    };

    let passt = Passt::start("udp");
    let (w, r) = passt.connect();
    // Round-robin over the ports: every flow is open early and busy late.
    let mut stream = Vec::with_capacity(TOTAL * 50);
    for round in 0..PER_PORT {
        for p in 0..PORTS {
            let sport = 20_000 + p as u16;
            push_framed(&mut stream, &udp_to_gateway(sport, port, round * PORTS + p));
        }
    }
    let reader = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            let gw = SocketAddr::new(GW4.into(), port);
            read_frames(r, &stop, |f| {
                if let Ok(p) = wire::parse_frame(f)
                    && let L3::Ipv4 {
                        ip,
                        l4: L4::Udp { udp, payload },
                    } = p.l3
                    && SocketAddr::new(ip.src_addr.into(), udp.src_port) == gw
                    && let Ok(id) = <[u8; 4]>::try_from(payload)
                {
                    let id = u32::from_be_bytes(id);
                    assert_eq!(
                        u32::from(udp.dst_port),
                        20_000 + id % PORTS,
                        "echo to its port"
                    );
                    seen.insert(id);
                }
                seen.len() == TOTAL
            });
            seen.len()
        })
    };
    write_in_chunks(w, stream);
    let echoes = reader.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let echoed = echo.join().unwrap();
    assert_eq!(echoed, TOTAL, "the echo server got every datagram");
    assert_eq!(echoes, TOTAL, "every echo reached the guest");
    drop(passt);
}
