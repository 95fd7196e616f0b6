//! Peak resident memory of a passt binary holding N concurrent TCP
//! connections (docs/performance.md). Root only: it makes a network
//! namespace of its own (loopback, and a veth pair as the template
//! interface Debian's passt insists on), starts each binary given on the
//! command line in it, and plays a guest over the UNIX socket that opens
//! N connections from distinct ports to a listener on the host's loopback
//! (through the gateway address, which both map to it), completes every
//! handshake, and reads the binary's `VmHWM` / `VmRSS` from /proc once all
//! are established (and accepted by the listener).
//!
//! ```text
//! cargo build --release -p passt-engine --bin passt
//! cargo run -p passt-engine --example rss_connections -- 10000 \
//!     target/release/passt /usr/bin/passt
//! ```
//!
//! Not a test: it measures, it does not judge. Every wait is bounded and
//! every child is killed by PID.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use passt_engine::MacAddr;
use passt_engine::runtime::FrameReader;
use passt_engine::wire::{self, IpRepr, Ipv4Repr, L3, L4, TcpFlags, TcpOptions, TcpRepr};

const GUEST_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const GUEST4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 15);
const GW4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const FIRST_PORT: u16 = 10_000;
const LIMIT: Duration = Duration::from_secs(180);
const GRACE: Duration = Duration::from_secs(10);

fn sh(cmd: &str) {
    let st = Command::new("sh").args(["-c", cmd]).status().expect("sh");
    assert!(st.success(), "{cmd}: {st}");
}

fn raise_nofile() {
    let lim = libc::rlimit {
        rlim_cur: 1 << 20,
        rlim_max: 1 << 20,
    };
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        let lim = libc::rlimit {
            rlim_cur: 65536,
            rlim_max: 65536,
        };
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

/// VmHWM and VmRSS of `pid`, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn segment(src_port: u16, dst_port: u16, seq: u32, ack: u32, flags: TcpFlags) -> Vec<u8> {
    let repr = TcpRepr {
        src_port,
        dst_port,
        seq,
        ack,
        flags,
        window: 65535,
        urgent: 0,
        options: TcpOptions::default(),
    };
    let ip = IpRepr::V4(Ipv4Repr::new(GUEST4, GW4, wire::protocol::TCP, 64));
    let mut buf = vec![0u8; 4 + 128];
    let n = wire::build_tcp(
        &mut buf[4..],
        GUEST_MAC,
        MacAddr::PASST_DEFAULT,
        ip,
        &repr,
        &[],
    )
    .expect("fits");
    buf[..4].copy_from_slice(&(n as u32).to_be_bytes());
    buf.truncate(4 + n);
    buf
}

/// Runs one binary; returns (established, idle KiB, peak KiB, rss KiB).
fn measure(binary: &str, n: u16, tag: usize) -> (usize, u64, u64, u64) {
    let dir = std::env::temp_dir().join(format!("rss-conn-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    // Debian's passt switches to nobody before creating its socket.
    sh(&format!("chmod 777 {}", dir.display()));
    let sock = dir.join("s.socket");
    let child = Command::new(binary)
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
        .arg("-s")
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let child = Killed(child);
    let pid = child.0.id();
    let start = Instant::now();
    let mut s = loop {
        match UnixStream::connect(&sock) {
            Ok(s) => break s,
            Err(_) if start.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("{binary}: socket: {e}"),
        }
    };
    std::thread::sleep(Duration::from_millis(200));
    let (_, idle) = memory(pid);

    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let acceptor = {
        let (accepted, stop) = (accepted.clone(), stop.clone());
        listener.set_nonblocking(true).expect("nonblocking");
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((c, _)) => {
                        held.push(c);
                        accepted.store(held.len(), Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            held.len()
        })
    };

    s.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let mut established = vec![false; usize::from(n)];
    let mut count = 0;
    let mut reader = FrameReader::new();
    let mut next_syn = 0u16;
    let mut peak = 0;
    let mut all_at: Option<Instant> = None;
    while start.elapsed() < LIMIT {
        // SYNs in batches of 500, so the guest's window of work stays small.
        if next_syn < n && usize::from(next_syn) < count + 500 {
            let mut batch = Vec::new();
            for k in next_syn..n.min(next_syn + 100) {
                batch.extend(segment(FIRST_PORT + k, port, 1000, 0, TcpFlags::SYN));
            }
            s.write_all(&batch).expect("write SYNs");
            next_syn = n.min(next_syn + 100);
        }
        match s.read(reader.spare()) {
            Ok(0) => panic!("{binary} closed the socket"),
            Ok(k) => reader.commit(k),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{binary}: read: {e}"),
        }
        let mut acks = Vec::new();
        while let Ok(Some(f)) = reader.next_frame() {
            let Ok(p) = wire::parse_frame(f) else {
                continue;
            };
            let L3::Ipv4 {
                l4: L4::Tcp { tcp, .. },
                ..
            } = p.l3
            else {
                continue;
            };
            let Some(i) = tcp.dst_port.checked_sub(FIRST_PORT).map(usize::from) else {
                continue;
            };
            if i >= established.len() || !tcp.flags.contains(TcpFlags::SYN | TcpFlags::ACK) {
                continue;
            }
            acks.extend(segment(
                tcp.dst_port,
                port,
                1001,
                tcp.seq.wrapping_add(1),
                TcpFlags::ACK,
            ));
            if !established[i] {
                established[i] = true;
                count += 1;
            }
        }
        if !acks.is_empty() {
            s.write_all(&acks).expect("write ACKs");
        }
        peak = peak.max(memory(pid).0);
        if count == usize::from(n) {
            let at = *all_at.get_or_insert_with(Instant::now);
            // The listener's accept queue can overflow and lose a few
            // (the kernel's business, not the binary's): 10 s of grace.
            if accepted.load(Ordering::Relaxed) >= usize::from(n) || at.elapsed() > GRACE {
                break;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let (hwm, rss) = memory(pid);
    stop.store(true, Ordering::Relaxed);
    let held = acceptor.join().expect("acceptor");
    eprintln!(
        "{binary}: {count} established by the guest after {:.1} s, {held} accepted",
        all_at.map_or(start.elapsed(), |t| t - start).as_secs_f64()
    );
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    (count, idle, hwm.max(peak), rss)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u16 = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: rss_connections N BINARY...");
    let binaries: Vec<String> = args.collect();
    // SAFETY: unshare on this (the only) thread before any other starts.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        eprintln!("needs root (unshare CLONE_NEWNET failed)");
        std::process::exit(2);
    }
    sh("ip link set lo up");
    sh("ip link add rc0 type veth peer name rc1");
    sh("ip addr add 192.0.2.2/24 dev rc0 && ip link set rc0 up && ip link set rc1 up");
    sh("ip route add default via 192.0.2.1");
    raise_nofile();
    println!("| binary | connections | idle RSS | peak RSS (VmHWM) | RSS at the end |");
    println!("|---|---|---|---|---|");
    for (tag, b) in binaries.iter().enumerate() {
        let (count, idle, hwm, rss) = measure(b, n, tag);
        println!("| `{b}` | {count} | {idle} KiB | {hwm} KiB | {rss} KiB |");
    }
}
