//! The `passt` binary end to end over its UNIX socket: pid file, one client
//! at a time, reset on a bad length prefix, one-off mode, clean exit on
//! SIGTERM (socket and pid file removed, capture readable by tcpdump), and
//! going to the background.
//!
//! Every wait is bounded; every spawned process is killed on failure.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const PASST: &str = env!("CARGO_BIN_EXE_passt");
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const OUR_MAC: [u8; 6] = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55];
const GUEST_IP: [u8; 4] = [10, 200, 0, 15];
const GATEWAY_IP: [u8; 4] = [10, 200, 0, 1];
/// IEEE 802 local experimental EtherType: frames nobody answers.
const EXPERIMENTAL: [u8; 2] = [0x88, 0xb5];

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("passt-bin-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        // Started as root, passt runs as nobody: its files go where nobody
        // may write (sticky, like /tmp).
        std::fs::set_permissions(
            &p,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o1777),
        )
        .unwrap();
        Scratch(p)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running passt child, killed on drop.
struct Passt {
    child: Child,
}

impl Passt {
    fn spawn(args: &[&str]) -> Passt {
        let child = Command::new(PASST)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn passt");
        Passt { child }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let end = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < end, "passt did not exit in {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Passt {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wait_for_file(path: &Path, limit: Duration) -> String {
    let end = Instant::now() + limit;
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && s.ends_with('\n')
        {
            return s;
        }
        assert!(Instant::now() < end, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_gone(path: &Path, limit: Duration) {
    let end = Instant::now() + limit;
    while path.exists() {
        assert!(Instant::now() < end, "{} still there", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect to passt");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// A 60-byte broadcast frame with an experimental EtherType and `tag` in its
/// payload, length-prefixed for the QEMU stream.
fn tagged_frame(tag: u8) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&EXPERIMENTAL);
    f.resize(60, tag);
    let mut out = (f.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&f);
    out
}

/// Reads until end of stream or reset; panics if the peer stays open.
fn expect_closed(s: &mut UnixStream) {
    let mut buf = [0u8; 4096];
    for _ in 0..1000 {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
            Err(e) => panic!("expected the connection to close, got {e}"),
        }
    }
    panic!("connection kept sending");
}

/// The connection stays open for `d` (reads time out rather than end).
fn expect_open(s: &mut UnixStream, d: Duration) {
    s.set_read_timeout(Some(d)).unwrap();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + d;
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => panic!("connection closed by passt"),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return,
            Err(e) => panic!("connection failed: {e}"),
        }
    }
}

/// Frames in a pcap file, as parsed by the pcap-file crate.
fn pcap_frames(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let mut r = pcap_file::pcap::PcapReader::new(&bytes[..]).expect("pcap header");
    assert_eq!(r.header().datalink, pcap_file::DataLink::ETHERNET);
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.expect("pcap record").data.into_owned());
    }
    out
}

#[test]
fn serves_one_client_at_a_time_resets_bad_lengths_and_cleans_up_on_sigterm() {
    let dir = Scratch::new("main");
    let (sock, pid, pcap) = (dir.path("s.socket"), dir.path("pid"), dir.path("c.pcap"));
    let mut passt = Passt::spawn(&[
        "-f",
        "-q",
        "-4",
        "-a",
        "10.200.0.15",
        "-n",
        "24",
        "-g",
        "10.200.0.1",
        "-s",
        sock.to_str().unwrap(),
        "-P",
        pid.to_str().unwrap(),
        "-p",
        pcap.to_str().unwrap(),
    ]);
    let pid_text = wait_for_file(&pid, Duration::from_secs(10));
    assert_eq!(pid_text.trim(), passt.child.id().to_string());
    assert!(sock.exists());

    // Client A: one good frame, then an impossible length: reset.
    let mut a = connect(&sock);
    a.write_all(&tagged_frame(1)).unwrap();
    a.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).unwrap();
    expect_closed(&mut a);

    // Client B is served; C, arriving while B is connected, is refused.
    let mut b = connect(&sock);
    b.write_all(&tagged_frame(2)).unwrap();
    let mut c = connect(&sock);
    expect_closed(&mut c);
    expect_open(&mut b, Duration::from_millis(300));
    b.write_all(&tagged_frame(3)).unwrap();
    // Give passt a moment to read it before the signal.
    std::thread::sleep(Duration::from_millis(200));

    passt.signal(libc::SIGTERM);
    let status = passt.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(!sock.exists(), "socket file removed");
    assert!(!pid.exists(), "pid file removed");

    // The capture holds the three good frames from the guest, in order.
    let tagged: Vec<u8> = pcap_frames(&pcap)
        .iter()
        .filter(|f| f.len() == 60 && f[12..14] == EXPERIMENTAL)
        .map(|f| f[59])
        .collect();
    assert_eq!(tagged, vec![1, 2, 3]);

    match Command::new("tcpdump")
        .args(["-n", "-r", pcap.to_str().unwrap()])
        .output()
    {
        Ok(o) => {
            assert!(o.status.success(), "tcpdump -r failed: {o:?}");
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(
                text.lines().count() >= 3,
                "tcpdump shows the frames: {text}"
            );
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            eprintln!("tcpdump not installed: checked with pcap-file only");
        }
        Err(e) => panic!("tcpdump: {e}"),
    }
}

#[test]
fn one_off_exits_when_the_client_leaves() {
    let dir = Scratch::new("oneoff");
    let sock = dir.path("s.socket");
    let mut passt = Passt::spawn(&["-f", "-q", "-1", "-s", sock.to_str().unwrap()]);
    let end = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < end, "socket never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The socket file appears at bind, before listen: retry a refused connect.
    let mut s = loop {
        match UnixStream::connect(&sock) {
            Ok(s) => break s,
            Err(e) if Instant::now() < end && e.kind() == ErrorKind::ConnectionRefused => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("connect: {e}"),
        }
    };
    s.write_all(&tagged_frame(9)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        passt.child.try_wait().unwrap().is_none(),
        "still running while the client is connected"
    );
    drop(s);
    let status = passt.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(!sock.exists(), "socket file removed");
}

#[test]
fn background_mode_writes_the_daemon_pid() {
    let dir = Scratch::new("daemon");
    let (sock, pid) = (dir.path("s.socket"), dir.path("pid"));
    let mut parent = Passt::spawn(&[
        "-q",
        "-s",
        sock.to_str().unwrap(),
        "-P",
        pid.to_str().unwrap(),
    ]);
    let status = parent.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "the foreground process exits 0");
    let daemon: i32 = wait_for_file(&pid, Duration::from_secs(5))
        .trim()
        .parse()
        .unwrap();
    let _guard = KillOnDrop(daemon);
    assert_ne!(daemon, parent.child.id() as i32);
    assert!(sock.exists(), "the daemon listens");
    // SAFETY: signal 0 only checks that the process exists.
    assert_eq!(unsafe { libc::kill(daemon, 0) }, 0, "daemon alive");
    // The daemon is not our child: watch its clean-up instead of waiting.
    // SAFETY: kill(2) on the daemon we started.
    assert_eq!(unsafe { libc::kill(daemon, libc::SIGTERM) }, 0);
    wait_gone(&sock, Duration::from_secs(10));
    wait_gone(&pid, Duration::from_secs(10));
}

/// Kills a daemon we started (not our child) if the test fails midway.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: signals the daemon this test started, by pid; harmless
        // (ESRCH) once it has exited.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

/// An ARP request for the gateway, broadcast, length-prefixed.
fn arp_request_for_gateway() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&[0x08, 0x06]);
    // RFC 826: Ethernet, IPv4, hlen 6, plen 4, request.
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&GUEST_IP);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&GATEWAY_IP);
    let mut out = (f.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&f);
    out
}

/// Reads length-prefixed frames until an ARP reply from the gateway turns
/// up (or 5 s pass) and returns it.
fn read_arp_reply(s: &mut UnixStream) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    let mut stream = Vec::new();
    let mut buf = [0u8; 65536];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => stream.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return None,
        }
        while stream.len() >= 4 {
            let len = u32::from_be_bytes([stream[0], stream[1], stream[2], stream[3]]) as usize;
            if stream.len() < 4 + len {
                break;
            }
            let frame: Vec<u8> = stream[4..4 + len].to_vec();
            stream.drain(..4 + len);
            if frame.len() >= 42
                && frame[12..14] == [0x08, 0x06]
                && frame[20..22] == [0, 2]
                && frame[28..32] == GATEWAY_IP
            {
                return Some(frame);
            }
        }
    }
    None
}

#[test]
fn arp_reply_through_socket() {
    let dir = Scratch::new("arp");
    let (sock, pid) = (dir.path("s.socket"), dir.path("pid"));
    let mut passt = Passt::spawn(&[
        "-f",
        "-q",
        "-4",
        "-a",
        "10.200.0.15",
        "-n",
        "24",
        "-g",
        "10.200.0.1",
        "-s",
        sock.to_str().unwrap(),
        "-P",
        pid.to_str().unwrap(),
    ]);
    wait_for_file(&pid, Duration::from_secs(10));
    let mut s = connect(&sock);
    s.write_all(&arp_request_for_gateway()).unwrap();
    let reply = read_arp_reply(&mut s).expect("an ARP reply for the gateway");
    assert_eq!(&reply[0..6], &GUEST_MAC, "sent to the guest");
    assert_eq!(&reply[6..12], &OUR_MAC, "from our MAC");
    assert_eq!(&reply[22..28], &OUR_MAC, "sender hardware address");
    assert_eq!(&reply[32..38], &GUEST_MAC, "target hardware address");
    assert_eq!(&reply[38..42], &GUEST_IP, "target protocol address");
    passt.signal(libc::SIGTERM);
    assert!(passt.wait_exit(Duration::from_secs(10)).success());
}
