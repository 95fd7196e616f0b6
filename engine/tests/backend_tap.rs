//! A real tap device inside a network namespace this test creates: the
//! kernel's ARP request comes out of our descriptor, our ARP reply goes in,
//! and the datagram that was waiting for it follows, addressed to our MAC.
//!
//! Needs root, `/dev/net/tun` and `ip`; skips with a printed reason
//! otherwise. Only addresses inside the test's own namespace are used.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use passt_engine::HostError;
use passt_engine::runtime::Tap;

/// Deletes the namespace (and so the tap in it) when dropped.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("run ip");
    assert!(st.success(), "ip {args:?} failed");
}

fn skip_reason() -> Option<String> {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun missing".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("`ip` not installed".into());
    }
    None
}

/// Waits (bounded) for a frame matching `pred`.
fn read_until(tap: &Tap, pred: impl Fn(&[u8]) -> bool, limit: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline {
        match tap.read_frame(&mut buf) {
            Ok(n) if pred(&buf[..n]) => return Some(buf[..n].to_vec()),
            Ok(_) => {}
            Err(HostError::WouldBlock) => {
                let mut pfd = libc::pollfd {
                    fd: tap.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, 100) };
            }
            Err(e) => panic!("tap read: {e:?}"),
        }
    }
    None
}

const NS_IP: [u8; 4] = [10, 200, 0, 1];
const OUR_IP: [u8; 4] = [10, 200, 0, 2];
const OUR_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xbb, 0xcc, 0x02];

fn is_arp_request_for_us(f: &[u8]) -> bool {
    f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 1] && f[38..42] == OUR_IP
}

fn is_udp_to_us(f: &[u8]) -> bool {
    f.len() >= 42
        && f[0..6] == OUR_MAC
        && f[12..14] == [0x08, 0x00]
        && f[23] == 17 // UDP
        && f[30..34] == OUR_IP
        && f[36..38] == [0, 9] // destination port (IHL 5)
}

#[test]
fn tap_in_namespace_reads_and_writes_frames() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipping tap test: {reason}");
        return;
    }
    let name = format!("bk-test-{}", std::process::id());
    ip(&["netns", "add", &name]);
    let ns = Netns(name);
    let tap = Tap::open_in_netns(Path::new(&format!("/run/netns/{}", ns.0)), "bktap0")
        .expect("open tap in netns");
    assert_eq!(tap.name(), "bktap0");
    // The tap is not in our namespace.
    assert!(!Path::new("/sys/class/net/bktap0").exists());
    ip(&["-n", &ns.0, "link", "set", "bktap0", "up"]);
    ip(&["-n", &ns.0, "addr", "add", "10.200.0.1/24", "dev", "bktap0"]);

    // A datagram sent from inside the namespace to 10.200.0.2 makes the
    // kernel resolve that address first (no external tools needed).
    let ns_path = format!("/run/netns/{}", ns.0);
    let _sender = std::thread::spawn(move || {
        let f = File::open(ns_path).expect("open netns");
        // SAFETY: plain syscall on a descriptor we hold open; affects only
        // this thread.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let s = UdpSocket::bind("10.200.0.1:0").expect("bind in netns");
        s.send_to(b"hello tap", "10.200.0.2:9")
            .expect("send in netns");
        s
    })
    .join()
    .expect("sender thread");

    let req = read_until(&tap, is_arp_request_for_us, Duration::from_secs(5))
        .expect("no ARP request for 10.200.0.2 came out of the tap");
    assert_eq!(req[28..32], NS_IP, "ARP sender IP");
    let ns_mac: [u8; 6] = req[6..12].try_into().expect("6 bytes");

    // ARP reply (RFC 826): we are 10.200.0.2 at OUR_MAC.
    let mut reply = Vec::with_capacity(42);
    reply.extend_from_slice(&ns_mac);
    reply.extend_from_slice(&OUR_MAC);
    reply.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    reply.extend_from_slice(&OUR_MAC);
    reply.extend_from_slice(&OUR_IP);
    reply.extend_from_slice(&ns_mac);
    reply.extend_from_slice(&NS_IP);
    tap.write_frame(&reply).expect("write ARP reply");

    let udp = read_until(&tap, is_udp_to_us, Duration::from_secs(5))
        .expect("no datagram to our MAC after the ARP reply");
    assert_eq!(udp[26..30], NS_IP);
    assert_eq!(&udp[42..51], b"hello tap");
    drop(ns);
}

#[test]
fn tap_name_too_long_is_rejected() {
    assert_eq!(
        Tap::open("a-name-longer-than-15").map(|_| ()),
        Err(HostError::Other(libc::EINVAL))
    );
}
