//! The `passt` binary end to end, as QEMU sees it: a test client speaks the
//! QEMU stream protocol (4-byte big-endian length, then the frame) on
//! passt's UNIX socket, and plays the guest — with frames built by the
//! engine's `wire` builders and `dhcproto`, or with smoltcp (an independent
//! TCP/IP stack) for TCP.
//!
//! Every test runs in a network namespace of its own (the test thread
//! `unshare`s one; passt, spawned from that thread, inherits it), so the
//! host's loopback, ports and `ping_group_range` are never touched. Without
//! the privilege to create one (not root) the tests say so and return.
//!
//! Every wait is bounded; every spawned passt is killed by PID on drop, so
//! also when a test fails.

mod netns;
mod tcp_common;

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use passt_engine::MacAddr;
use passt_engine::icmp::PING_NOT_PERMITTED_WARNING;
use passt_engine::wire::{
    self, Icmpv4Repr, Icmpv6Repr, IpRepr, Ipv4Repr, Ipv6Repr, L3, L4, NdpOption, NdpOptions,
    NdpRepr, UdpRepr,
};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};
use tcp_common::{QueueDevice, pattern};

const PASST: &str = env!("CARGO_BIN_EXE_passt");
const GUEST_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const OUR_MAC: MacAddr = MacAddr::PASST_DEFAULT;
const GUEST4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 15);
const GW4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const DNS4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
const GUEST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x15);
const GUEST6_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x15);
const GW6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Namespace, scratch directory, the passt process
// ---------------------------------------------------------------------------

/// Lets every group open ping sockets, in this thread's namespace only.
fn allow_ping_sockets() {
    std::fs::write(RANGE, "0 2147483647").expect("ping_group_range of our own netns");
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("passt-e2e-{name}-{}", std::process::id()));
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

/// A passt child in the foreground, standard error in a file; killed (by
/// its PID) and reaped on drop.
struct Passt {
    child: Child,
    sock: PathBuf,
    stderr: PathBuf,
    _dir: Scratch,
}

/// IPv4-only addressing as in `tcp_common` (smoltcp's guest).
const V4_ARGS: &[&str] = &[
    "-a",
    "192.0.2.15",
    "-n",
    "24",
    "-g",
    "192.0.2.1",
    "-D",
    "192.0.2.53",
];

impl Passt {
    fn command(dir: &Scratch, args: &[&str]) -> Command {
        let mut c = Command::new(PASST);
        c.args(["-f", "-s"])
            .arg(dir.path("s.socket"))
            .arg("-P")
            .arg(dir.path("pid"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path("stderr")).unwrap());
        c
    }

    /// Starts passt and waits until it has written its pid file (which
    /// happens once everything, forwarded ports included, is set up).
    fn start(name: &str, args: &[&str]) -> Passt {
        Self::start_with(name, args, |_| {})
    }

    fn start_with(name: &str, args: &[&str], tweak: impl FnOnce(&mut Command)) -> Passt {
        let dir = Scratch::new(name);
        let mut cmd = Self::command(&dir, args);
        tweak(&mut cmd);
        let child = cmd.spawn().expect("spawn passt");
        let mut p = Passt {
            child,
            sock: dir.path("s.socket"),
            stderr: dir.path("stderr"),
            _dir: dir,
        };
        let pid = p._dir.path("pid");
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if std::fs::read_to_string(&pid).is_ok_and(|s| s.ends_with('\n')) {
                break;
            }
            if let Some(st) = p.child.try_wait().unwrap() {
                panic!("passt exited early ({st:?}): {}", p.stderr_text());
            }
            assert!(Instant::now() < end, "passt never became ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn connect(&self) -> Guest {
        let s = UnixStream::connect(&self.sock).expect("connect to passt");
        s.set_nonblocking(true).unwrap();
        Guest { s, buf: Vec::new() }
    }

    fn terminate(&mut self) -> ExitStatus {
        // SAFETY: kill(2) on our own child, by PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < end, "passt ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Passt {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill(2) on our own child, by PID.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

/// Runs passt expecting it to exit by itself within `limit`; returns the
/// status and standard error.
fn run_to_exit(name: &str, args: &[&str], limit: Duration) -> (ExitStatus, String) {
    let dir = Scratch::new(name);
    let child = Passt::command(&dir, args).spawn().expect("spawn passt");
    let mut p = Passt {
        child,
        sock: dir.path("s.socket"),
        stderr: dir.path("stderr"),
        _dir: dir,
    };
    let end = Instant::now() + limit;
    loop {
        if let Some(st) = p.child.try_wait().unwrap() {
            return (st, p.stderr_text());
        }
        assert!(
            Instant::now() < end,
            "passt still running: {}",
            p.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// The guest's end of the QEMU stream
// ---------------------------------------------------------------------------

struct Guest {
    s: UnixStream,
    buf: Vec<u8>,
}

impl Guest {
    fn send(&mut self, frame: &[u8]) {
        let mut out = (frame.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(frame);
        let mut at = 0;
        let end = Instant::now() + WAIT;
        while at < out.len() {
            match self.s.write(&out[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(Instant::now() < end, "passt stopped reading");
                    self.wait_readable(Duration::from_millis(1));
                }
                Err(e) => panic!("write to passt: {e}"),
            }
        }
    }

    fn wait_readable(&self, d: Duration) {
        let mut p = libc::pollfd {
            fd: self.s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd on a live descriptor.
        unsafe { libc::poll(&mut p, 1, d.as_millis().max(1) as i32) };
    }

    /// Whole frames available now (after waiting up to `d` for the first
    /// bytes).
    fn recv_frames(&mut self, d: Duration, out: &mut VecDeque<Vec<u8>>) {
        if !d.is_zero() {
            self.wait_readable(d);
        }
        let mut chunk = [0u8; 65536];
        loop {
            match self.s.read(&mut chunk) {
                Ok(0) => panic!("passt closed the guest connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("read from passt: {e}"),
            }
        }
        let mut at = 0;
        while self.buf.len() - at >= 4 {
            let len = u32::from_be_bytes(self.buf[at..at + 4].try_into().unwrap()) as usize;
            if self.buf.len() - at - 4 < len {
                break;
            }
            out.push_back(self.buf[at + 4..at + 4 + len].to_vec());
            at += 4 + len;
        }
        self.buf.drain(..at);
    }

    /// The first frame for which `pick` returns something, within `WAIT`.
    fn expect<T>(&mut self, what: &str, mut pick: impl FnMut(&[u8]) -> Option<T>) -> T {
        let end = Instant::now() + WAIT;
        let mut q: VecDeque<Vec<u8>> = VecDeque::new();
        loop {
            while let Some(f) = q.pop_front() {
                if let Some(t) = pick(&f) {
                    return t;
                }
            }
            assert!(Instant::now() < end, "no {what} from passt within {WAIT:?}");
            self.recv_frames(Duration::from_millis(50), &mut q);
        }
    }
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8) -> Ipv4Repr {
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol,
        hop_limit: 64,
        dscp: 0,
        ecn: 0,
        ident: 1,
        dont_frag: false,
        payload_len: 0,
    }
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, hop_limit: u8) -> Ipv6Repr {
    Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header,
        hop_limit,
        traffic_class: 0,
        flow_label: 0,
        ext_headers_len: 0,
        payload_len: 0,
    }
}

fn udp_frame(dst_mac: MacAddr, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let ip = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => IpRepr::V4(ipv4(s, d, wire::protocol::UDP)),
        (IpAddr::V6(s), IpAddr::V6(d)) => IpRepr::V6(ipv6(s, d, wire::protocol::UDP, 64)),
        _ => panic!("mixed families"),
    };
    let udp = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    let mut buf = vec![0u8; 14 + 40 + 8 + payload.len()];
    let n = wire::build_udp(&mut buf, GUEST_MAC, dst_mac, ip, &udp, payload).unwrap();
    buf.truncate(n);
    buf
}

fn icmpv6_frame(dst_mac: MacAddr, ip: Ipv6Repr, icmp: &Icmpv6Repr<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 1500];
    let n = wire::build_icmpv6(&mut buf, GUEST_MAC, dst_mac, &ip, icmp).unwrap();
    buf.truncate(n);
    buf
}

/// A UDP datagram passt sent to the guest: (src, dst, payload).
fn as_udp(f: &[u8]) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
    let p = wire::parse_frame(f).ok()?;
    match p.l3 {
        L3::Ipv4 {
            ip,
            l4: L4::Udp { udp, payload },
        } => Some((
            SocketAddr::new(ip.src_addr.into(), udp.src_port),
            SocketAddr::new(ip.dst_addr.into(), udp.dst_port),
            payload.to_vec(),
        )),
        L3::Ipv6 {
            ip,
            l4: L4::Udp { udp, payload },
        } => Some((
            SocketAddr::new(ip.src_addr.into(), udp.src_port),
            SocketAddr::new(ip.dst_addr.into(), udp.dst_port),
            payload.to_vec(),
        )),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// DHCP, NDP
// ---------------------------------------------------------------------------

fn dhcp_frame(msg: &v4::Message) -> Vec<u8> {
    let body = msg.to_vec().expect("encode DHCP");
    udp_frame(
        MacAddr::BROADCAST,
        SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 68),
        SocketAddr::new(Ipv4Addr::BROADCAST.into(), 67),
        &body,
    )
}

fn dhcp_reply(f: &[u8], xid: u32) -> Option<v4::Message> {
    let (src, dst, payload) = as_udp(f)?;
    if src.port() != 67 || dst.port() != 68 {
        return None;
    }
    let m = v4::Message::decode(&mut Decoder::new(&payload)).ok()?;
    (m.xid() == xid).then_some(m)
}

#[test]
fn dhcp_discover_offer_request_ack() {
    if !netns::enter_or_skip() {
        return;
    }
    let mut args = V4_ARGS.to_vec();
    args.extend(["-4", "-m", "1500"]);
    let passt = Passt::start("dhcp", &args);
    let mut g = passt.connect();

    let xid = 0x1234_5678;
    let mut discover = v4::Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &GUEST_MAC.0,
    );
    discover
        .opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    g.send(&dhcp_frame(&discover));
    let offer = g.expect("DHCPOFFER", |f| dhcp_reply(f, xid));
    assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(offer.yiaddr(), GUEST4);
    assert_eq!(&offer.chaddr()[..6], &GUEST_MAC.0);
    let opts = offer.opts();
    assert_eq!(
        opts.get(OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(
        opts.get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![GW4]))
    );
    assert_eq!(
        opts.get(OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![DNS4]))
    );
    assert_eq!(
        opts.get(OptionCode::InterfaceMtu),
        Some(&DhcpOption::InterfaceMtu(1500))
    );
    let server = match opts.get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(a)) => *a,
        other => panic!("server identifier: {other:?}"),
    };

    let mut request = v4::Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &GUEST_MAC.0,
    );
    request
        .opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Request));
    request
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(GUEST4));
    request
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(server));
    g.send(&dhcp_frame(&request));
    let ack = g.expect("DHCPACK", |f| dhcp_reply(f, xid));
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), GUEST4);
    assert_eq!(
        ack.opts().get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![GW4]))
    );
}

fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

fn ndp_reply<'a>(f: &'a [u8]) -> Option<(Ipv6Repr, NdpRepr<'a>)> {
    match wire::parse_frame(f).ok()?.l3 {
        L3::Ipv6 {
            ip,
            l4: L4::Icmpv6(Icmpv6Repr::Ndp(ndp)),
        } => Some((ip, ndp)),
        _ => None,
    }
}

#[test]
fn ndp_neighbor_and_router_solicitations() {
    if !netns::enter_or_skip() {
        return;
    }
    let passt = Passt::start(
        "ndp",
        &[
            "-6",
            "-a",
            "2001:db8::15",
            "-g",
            "fe80::1",
            "-D",
            "2001:db8::53",
            "-m",
            "1500",
        ],
    );
    let mut g = passt.connect();
    let sll = [NdpOption::SourceLinkAddr(GUEST_MAC)];

    // NS for the gateway -> NA with our MAC.
    let ns = icmpv6_frame(
        MacAddr([0x33, 0x33, 0xff, 0, 0, 1]),
        ipv6(GUEST6_LL, solicited_node(GW6), wire::protocol::ICMPV6, 255),
        &Icmpv6Repr::Ndp(NdpRepr::NeighborSolicit {
            target: GW6,
            options: NdpOptions::List(&sll),
        }),
    );
    g.send(&ns);
    let (tll, solicited, ip_dst) = g.expect("neighbor advertisement", |f| {
        let (ip, ndp) = ndp_reply(f)?;
        match ndp {
            NdpRepr::NeighborAdvert {
                target,
                solicited,
                options,
                ..
            } if target == GW6 => Some((options.target_link_addr(), solicited, ip.dst_addr)),
            _ => None,
        }
    });
    assert_eq!(tll, Some(OUR_MAC));
    assert!(solicited);
    assert_eq!(ip_dst, GUEST6_LL);

    // RS -> RA carrying the prefix of the guest's address, and the MTU.
    let rs = icmpv6_frame(
        MacAddr([0x33, 0x33, 0, 0, 0, 2]),
        ipv6(
            GUEST6_LL,
            "ff02::2".parse().unwrap(),
            wire::protocol::ICMPV6,
            255,
        ),
        &Icmpv6Repr::Ndp(NdpRepr::RouterSolicit {
            options: NdpOptions::List(&sll),
        }),
    );
    g.send(&rs);
    let (prefixes, mtu, lifetime) = g.expect("router advertisement", |f| {
        let (_, ndp) = ndp_reply(f)?;
        match ndp {
            NdpRepr::RouterAdvert {
                router_lifetime,
                options,
                ..
            } => {
                let mut prefixes = Vec::new();
                let mut mtu = None;
                for o in options.iter() {
                    match o {
                        NdpOption::PrefixInfo(p) => prefixes.push((p.prefix, p.prefix_len)),
                        NdpOption::Mtu(m) => mtu = Some(m),
                        _ => {}
                    }
                }
                Some((prefixes, mtu, router_lifetime))
            }
            _ => None,
        }
    });
    assert_eq!(prefixes, vec![("2001:db8::".parse().unwrap(), 64)]);
    assert_eq!(mtu, Some(1500));
    assert!(lifetime > 0, "a default router");
}

// ---------------------------------------------------------------------------
// ICMP echo
// ---------------------------------------------------------------------------

fn echo_v4(seq: u16, data: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 1500];
    let n = wire::build_icmpv4(
        &mut buf,
        GUEST_MAC,
        OUR_MAC,
        &ipv4(GUEST4, GW4, wire::protocol::ICMP),
        &Icmpv4Repr::EchoRequest {
            ident: 0x4242,
            seq_no: seq,
            data,
        },
    )
    .unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn ping_the_gateway_reaches_host_loopback() {
    if !netns::enter_or_skip() {
        return;
    }
    allow_ping_sockets();
    let v6 = std::net::UdpSocket::bind("[::1]:0").is_ok();
    let mut args = V4_ARGS.to_vec();
    args.extend(["-a", "2001:db8::15", "-g", "fe80::1", "-m", "1500"]);
    if !v6 {
        args.push("-4");
    }
    let passt = Passt::start("ping", &args);
    let mut g = passt.connect();

    g.send(&echo_v4(1, b"hello gateway"));
    let (src, seq, data) = g.expect("echo reply", |f| match wire::parse_frame(f).ok()?.l3 {
        L3::Ipv4 {
            ip,
            l4:
                L4::Icmpv4(Icmpv4Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                }),
        } if ident == 0x4242 && ip.dst_addr == GUEST4 => Some((ip.src_addr, seq_no, data.to_vec())),
        _ => None,
    });
    assert_eq!((src, seq, &data[..]), (GW4, 1, &b"hello gateway"[..]));

    if v6 {
        let req = icmpv6_frame(
            OUR_MAC,
            ipv6(GUEST6, GW6, wire::protocol::ICMPV6, 64),
            &Icmpv6Repr::EchoRequest {
                ident: 0x77,
                seq_no: 9,
                data: b"v6",
            },
        );
        g.send(&req);
        let (src, data) = g.expect("ICMPv6 echo reply", |f| {
            match wire::parse_frame(f).ok()?.l3 {
                L3::Ipv6 {
                    ip,
                    l4:
                        L4::Icmpv6(Icmpv6Repr::EchoReply {
                            ident,
                            seq_no,
                            data,
                        }),
                } if ident == 0x77 && seq_no == 9 => Some((ip.src_addr, data.to_vec())),
                _ => None,
            }
        });
        assert_eq!(src, GW6);
        assert_eq!(data, b"v6");
    }
}

#[test]
fn ping_without_ping_sockets_warns_once() {
    if !netns::enter_or_skip() {
        return;
    }
    // A fresh namespace forbids ping sockets ("1 0").
    let range = std::fs::read_to_string(RANGE).unwrap();
    assert_eq!(range.split_whitespace().collect::<Vec<_>>(), ["1", "0"]);
    let mut args = V4_ARGS.to_vec();
    args.push("-4");
    let mut passt = Passt::start("noping", &args);
    let mut g = passt.connect();
    for seq in 1..=3 {
        g.send(&echo_v4(seq, b"x"));
    }
    // Let passt read them before the signal.
    let mut q = VecDeque::new();
    g.recv_frames(Duration::from_millis(300), &mut q);
    assert!(passt.terminate().success());
    let text = passt.stderr_text();
    assert_eq!(
        text.matches(PING_NOT_PERMITTED_WARNING).count(),
        1,
        "warning exactly once: {text}"
    );
}

// ---------------------------------------------------------------------------
// UDP
// ---------------------------------------------------------------------------

#[test]
fn udp_echo_through_the_gateway() {
    if !netns::enter_or_skip() {
        return;
    }
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server.set_read_timeout(Some(WAIT)).unwrap();
    let port = server.local_addr().unwrap().port();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for _ in 0..2 {
            let (n, from) = server.recv_from(&mut buf).expect("datagram from passt");
            server.send_to(&buf[..n], from).unwrap();
        }
    });
    let mut args = V4_ARGS.to_vec();
    args.push("-4");
    let passt = Passt::start("udp", &args);
    let mut g = passt.connect();
    let guest = SocketAddr::new(GUEST4.into(), 40001);
    let gw = SocketAddr::new(GW4.into(), port);
    for payload in [&b"first datagram"[..], &pattern(1400, 5)[..]] {
        g.send(&udp_frame(OUR_MAC, guest, gw, payload));
        let (src, dst, data) = g.expect("UDP echo", |f| {
            as_udp(f).filter(|(_, dst, _)| *dst == guest)
        });
        assert_eq!(src, gw, "the reply comes from where the guest sent it");
        assert_eq!(dst, guest);
        assert_eq!(data, payload);
    }
    echo.join().unwrap();
}

// ---------------------------------------------------------------------------
// TCP with smoltcp as the guest
// ---------------------------------------------------------------------------

/// smoltcp over passt's socket.
struct SmolGuest {
    iface: Interface,
    dev: QueueDevice,
    sockets: SocketSet<'static>,
    conn: Guest,
    start: Instant,
}

impl SmolGuest {
    fn new(conn: Guest, mtu: usize) -> SmolGuest {
        let mut dev = QueueDevice {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            mtu: mtu + 14,
        };
        let mut cfg = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(GUEST_MAC.0)));
        cfg.random_seed = 11;
        let start = Instant::now();
        let mut iface = Interface::new(cfg, &mut dev, smoltcp::time::Instant::from_micros(0));
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(GUEST4.into(), 24)).unwrap();
        });
        iface.routes_mut().add_default_ipv4_route(GW4).unwrap();
        SmolGuest {
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            conn,
            start,
        }
    }

    fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.start.elapsed().as_micros() as i64)
    }

    fn socket(&mut self) -> smoltcp::iface::SocketHandle {
        let s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 256 * 1024]),
            tcp::SocketBuffer::new(vec![0; 256 * 1024]),
        );
        self.sockets.add(s)
    }

    fn tcp(&mut self, h: smoltcp::iface::SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    /// One round: smoltcp's output to passt, passt's frames to smoltcp.
    fn step(&mut self) {
        let now = self.now();
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
        while let Some(f) = self.dev.tx.pop_front() {
            self.conn.send(&f);
        }
        let wait = self
            .iface
            .poll_delay(self.now(), &self.sockets)
            .map_or(Duration::from_millis(5), |d| {
                Duration::from_micros(d.total_micros())
            })
            .min(Duration::from_millis(5));
        self.conn.recv_frames(wait, &mut self.dev.rx);
    }
}

/// Moves `send` to the peer and reads `expect_len` bytes back on smoltcp
/// socket `h`, within `limit`.
fn smol_exchange(
    g: &mut SmolGuest,
    h: smoltcp::iface::SocketHandle,
    send: &[u8],
    expect_len: usize,
    limit: Duration,
) -> Vec<u8> {
    let end = Instant::now() + limit;
    let mut sent = 0;
    let mut got = Vec::with_capacity(expect_len);
    while sent < send.len() || got.len() < expect_len {
        g.step();
        let s = g.tcp(h);
        if s.can_send() && sent < send.len() {
            sent += s.send_slice(&send[sent..]).unwrap();
        }
        while s.can_recv() {
            s.recv(|b| {
                got.extend_from_slice(b);
                (b.len(), ())
            })
            .unwrap();
        }
        assert!(
            s.is_open(),
            "connection closed early: state {}, sent {sent}, got {}",
            s.state(),
            got.len()
        );
        assert!(
            Instant::now() < end,
            "timed out: sent {sent}/{}, got {}/{expect_len}",
            send.len(),
            got.len()
        );
    }
    got
}

const MIB: usize = 1 << 20;

#[test]
fn tcp_to_host_loopback_one_mib_each_way() {
    if !netns::enter_or_skip() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let up = pattern(MIB, 1);
    let down = pattern(MIB, 2);
    let (up2, down2) = (up.clone(), down.clone());
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut got = vec![0u8; MIB];
        s.read_exact(&mut got).unwrap();
        assert!(got == up2, "host received the guest's bytes exactly");
        s.write_all(&down2).unwrap();
        // Wait for the guest's FIN.
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        peer
    });

    let mut args = V4_ARGS.to_vec();
    args.extend(["-4", "-m", "65520"]);
    let passt = Passt::start("tcpout", &args);
    let mut g = SmolGuest::new(passt.connect(), 65520);
    let h = g.socket();
    let cx = g.iface.context();
    g.sockets
        .get_mut::<tcp::Socket>(h)
        .connect(cx, (IpAddr::V4(GW4), port), 40002)
        .unwrap();
    let got = smol_exchange(&mut g, h, &up, MIB, Duration::from_secs(60));
    assert!(got == down, "guest received the host's bytes exactly");
    g.tcp(h).close();
    let end = Instant::now() + WAIT;
    while !server.is_finished() {
        g.step();
        assert!(Instant::now() < end, "host never saw the FIN");
    }
    let peer = server.join().unwrap();
    assert_eq!(peer.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
}

#[test]
fn inbound_tcp_through_a_forwarded_port() {
    if !netns::enter_or_skip() {
        return;
    }
    let host_port = free_tcp_port();
    let guest_port = 8080;
    let spec = format!("{host_port}:{guest_port}");
    let mut args = V4_ARGS.to_vec();
    args.extend(["-4", "-m", "65520", "-t", &spec]);
    let passt = Passt::start("tcpin", &args);
    let mut g = SmolGuest::new(passt.connect(), 65520);
    let h = g.socket();
    g.tcp(h).listen(guest_port).unwrap();
    // smoltcp learns nothing until it speaks: have it send one frame so
    // that passt knows the guest's MAC (not required, but realistic).
    g.step();

    let to_guest = pattern(MIB / 2, 3);
    let to_host = pattern(MIB / 2, 4);
    let (tg, th) = (to_guest.clone(), to_host.clone());
    let client = std::thread::spawn(move || {
        let mut s =
            TcpStream::connect(("127.0.0.1", host_port)).expect("connect to forwarded port");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(&tg).unwrap();
        let mut got = vec![0u8; th.len()];
        s.read_exact(&mut got).unwrap();
        assert!(got == th, "host client received the guest's bytes exactly");
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        rest.len()
    });

    let end = Instant::now() + WAIT;
    while !g.tcp(h).is_active() || g.tcp(h).state() == tcp::State::SynReceived {
        g.step();
        assert!(Instant::now() < end, "no connection reached the guest");
    }
    let remote = g.tcp(h).remote_endpoint().unwrap();
    assert_eq!(
        remote.addr,
        smoltcp::wire::IpAddress::Ipv4(GW4),
        "host loopback appears as the gateway"
    );
    assert_eq!(g.tcp(h).local_endpoint().unwrap().port, guest_port);
    let got = smol_exchange(&mut g, h, &to_host, to_guest.len(), Duration::from_secs(60));
    assert!(
        got == to_guest,
        "guest received the host client's bytes exactly"
    );
    // The client half-closes; we close too.
    let end = Instant::now() + WAIT;
    while g.tcp(h).may_recv() {
        g.step();
        assert!(Instant::now() < end, "no FIN from the host client");
    }
    g.tcp(h).close();
    while !client.is_finished() {
        g.step();
        assert!(Instant::now() < end, "host client never saw our FIN");
    }
    assert_eq!(client.join().unwrap(), 0);
}

/// A TCP port free in this namespace (outside the ephemeral range, so that
/// nothing else takes it meanwhile).
fn free_tcp_port() -> u16 {
    for port in 20000..30000u16 {
        if TcpListener::bind(("0.0.0.0", port)).is_ok()
            && UdpSocket::bind(("0.0.0.0", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port");
}

// ---------------------------------------------------------------------------
// Bind failures
// ---------------------------------------------------------------------------

#[test]
fn forwarding_a_port_in_use_fails_like_upstream() {
    if !netns::enter_or_skip() {
        return;
    }
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let mut args = V4_ARGS.to_vec();
    args.extend(["-4", "-t", &port]);
    let (status, stderr) = run_to_exit("inuse", &args, WAIT);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let want =
        format!("Failed to bind port {port} (Address already in use) for option '-t {port}'");
    assert!(
        stderr.lines().any(|l| l == want),
        "expected {want:?} in {stderr}"
    );
    assert!(
        !stderr.contains("UNIX domain socket bound"),
        "fails before announcing the socket: {stderr}"
    );

    // The same for UDP (-u; UDP does not follow -t, docs/cli.md).
    let held_udp = UdpSocket::bind("0.0.0.0:0").unwrap();
    let uport = held_udp.local_addr().unwrap().port().to_string();
    let mut args = V4_ARGS.to_vec();
    let spec = format!("{uport}:22");
    args.extend(["-4", "-u", &spec]);
    let (status, stderr) = run_to_exit("inuse-udp", &args, WAIT);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "Failed to bind port {uport} (Address already in use) for option '-u {spec}'"
        )),
        "{stderr}"
    );
    // ... and a held UDP port does not stop -t alone.
    let mut args = V4_ARGS.to_vec();
    args.extend(["-4", "-t", &uport]);
    let mut passt = Passt::start("inuse-tcp-only", &args);
    assert!(passt.terminate().success());
    drop(held);
}

/// Narrows this namespace's ephemeral range so that `all` means few
/// enough ports for the descriptor limit of unprivileged containers
/// (`all` takes one socket per port, family and protocol).
fn set_ephemeral_range(first: u16, last: u16) {
    std::fs::write(
        "/proc/sys/net/ipv4/ip_local_port_range",
        format!("{first} {last}"),
    )
    .expect("ip_local_port_range of our own netns");
}

#[test]
fn forwarding_all_skips_ports_in_use() {
    if !netns::enter_or_skip() {
        return;
    }
    // Non-ephemeral: 1-1023 and 65001-65535.
    set_ephemeral_range(1024, 65000);
    // Ports in use: passt must leave them alone and start anyway.
    let held = TcpListener::bind("127.0.0.1:222").unwrap();
    let held_udp = UdpSocket::bind("0.0.0.0:53").unwrap();
    let mut args = V4_ARGS.to_vec();
    args.extend(["-4", "-d", "-t", "all", "-u", "all"]);
    let mut passt = Passt::start("all", &args);
    let text = passt.stderr_text();
    assert!(
        text.contains("skipped with 'all': 1 TCP, 1 UDP"),
        "the held TCP port 222 and UDP port 53 are skipped: {text}"
    );
    for line in [
        "Forwarding TCP 0.0.0.0:1-221 -> guest port 1-221",
        "Forwarding TCP 0.0.0.0:223-1023 -> guest port 223-1023",
        "Forwarding TCP 0.0.0.0:65001-65535 -> guest port 65001-65535",
        "Forwarding UDP 0.0.0.0:1-52 -> guest port 1-52",
        "Forwarding UDP 0.0.0.0:54-1023 -> guest port 54-1023",
        "Forwarding UDP 0.0.0.0:65001-65535 -> guest port 65001-65535",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing: {text}");
    }
    assert!(
        !text.contains(":1024"),
        "ephemeral ports left alone: {text}"
    );
    // A forwarded port accepts (passt listens); the held one is still ours.
    TcpStream::connect("127.0.0.1:223").expect("passt listens on 223");
    let c = TcpStream::connect("127.0.0.1:222").unwrap();
    let (_a, from) = held.accept().unwrap();
    assert_eq!(from, c.local_addr().unwrap());
    assert!(passt.terminate().success());
    drop(held_udp);
}

#[test]
fn forwarding_all_without_enough_descriptors_fails_like_upstream() {
    if !netns::enter_or_skip() {
        return;
    }
    // 1-30000 and 30101-65535: ~65000 ports per protocol.
    set_ephemeral_range(30001, 30100);
    let mut args = V4_ARGS.to_vec();
    args.extend(["-4", "-t", "all"]);
    let dir = Scratch::new("all-emfile");
    let mut cmd = Passt::command(&dir, &args);
    // SAFETY: setrlimit is async-signal-safe; runs in the child only.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 4096,
                rlim_max: 4096,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn passt");
    let mut p = Passt {
        child,
        sock: dir.path("s.socket"),
        stderr: dir.path("stderr"),
        _dir: dir,
    };
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = p.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < end, "passt still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = p.stderr_text();
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l == "Can't open enough sockets for port specifier: all"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// Run-time forwarding changes: the control socket (-c) and pesto
// ---------------------------------------------------------------------------

const PESTO: &str = env!("CARGO_BIN_EXE_pesto");

/// Runs pesto with `args`; returns its status, standard output and error.
fn pesto(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(PESTO)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run pesto");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// passt with a control socket; returns it and the socket's path.
fn passt_with_control(name: &str) -> (Passt, String) {
    let ctl = std::env::temp_dir().join(format!("passt-e2e-{name}-{}.ctl", std::process::id()));
    let ctl_s = ctl.to_str().unwrap().to_string();
    let mut args = V4_ARGS.to_vec();
    args.extend(["-4", "-m", "65520", "-c", &ctl_s]);
    (Passt::start(name, &args), ctl_s)
}

#[test]
fn pesto_adds_a_forward_live_and_deleting_it_keeps_established_connections() {
    if !netns::enter_or_skip() {
        return;
    }
    let (passt, ctl) = passt_with_control("pesto-live");
    let mut g = SmolGuest::new(passt.connect(), 65520);
    let h = g.socket();
    g.tcp(h).listen(8080).unwrap();
    g.step();
    let port = free_tcp_port();
    assert_eq!(
        TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| e.kind())
            .err(),
        Some(ErrorKind::ConnectionRefused),
        "nothing listens before the rule"
    );

    let spec = format!("{port}:8080");
    let (code, out, err) = pesto(&["-s", "-A", "-t", &spec, &ctl]);
    assert_eq!(code, Some(0), "{err}");
    let (before, after) = out.split_once("After:").expect("-s shows both tables");
    assert!(
        !before.contains(&spec) && after.contains(&format!("-t {spec}\n")),
        "{out}"
    );

    // A connection through the new rule reaches the guest.
    let to_guest = pattern(64 * 1024, 5);
    let to_host = pattern(64 * 1024, 6);
    let (tg, th) = (to_guest.clone(), to_host.clone());
    let (go_on_tx, go_on_rx) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the new port");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&tg[..tg.len() / 2]).unwrap();
        // The rule is deleted meanwhile: this connection goes on.
        go_on_rx.recv().unwrap();
        s.write_all(&tg[tg.len() / 2..]).unwrap();
        let mut got = vec![0u8; th.len()];
        s.read_exact(&mut got).unwrap();
        assert!(got == th, "the host client got the guest's bytes exactly");
    });
    let end = Instant::now() + WAIT;
    while !g.tcp(h).is_active() || g.tcp(h).state() == tcp::State::SynReceived {
        g.step();
        assert!(Instant::now() < end, "no connection reached the guest");
    }
    let first = smol_exchange(&mut g, h, &[], to_guest.len() / 2, WAIT);

    let (code, out, err) = pesto(&["-D", "-t", &port.to_string(), &ctl]);
    assert_eq!((code, out.as_str()), (Some(0), ""), "{err}");
    let (_, out, _) = pesto(&[&ctl]);
    assert!(!out.contains(&spec), "{out}");
    assert_eq!(
        TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| e.kind())
            .err(),
        Some(ErrorKind::ConnectionRefused),
        "the port is closed once the rule is deleted"
    );
    go_on_tx.send(()).unwrap();
    let rest = smol_exchange(&mut g, h, &to_host, to_guest.len() / 2, WAIT);
    assert!(
        [first, rest].concat() == to_guest,
        "the established connection carried everything"
    );
    let end = Instant::now() + WAIT;
    while !client.is_finished() {
        g.step();
        assert!(Instant::now() < end, "the host client never finished");
    }
    client.join().unwrap();
    assert!(passt.stderr_text().contains("pesto:"), "changes are logged");
}

#[test]
fn pesto_refuses_bad_changes_cleanly_and_leaves_the_rules_alone() {
    if !netns::enter_or_skip() {
        return;
    }
    let (passt, ctl) = passt_with_control("pesto-bad");
    let port = free_tcp_port().to_string();
    let (code, _, err) = pesto(&["-A", "-t", &port, &ctl]);
    assert_eq!(code, Some(0), "{err}");
    let (_, before, _) = pesto(&[&ctl]);

    // Refused by pesto itself: the grammar.
    let (code, _, err) = pesto(&["-A", "-t", "70000", &ctl]);
    assert_eq!(code, Some(2));
    assert!(err.contains("Invalid port specifier 70000"), "{err}");
    let (code, _, err) = pesto(&["-A", "-t", "22"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("missing PATH"), "{err}");

    // Refused by passt: the rules it has, its ports, its mode.
    let (code, _, err) = pesto(&["-A", "-t", &port, &ctl]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!("Overlapping port specifier {port}")),
        "{err}"
    );
    let held = TcpListener::bind("0.0.0.0:0").unwrap();
    let busy = held.local_addr().unwrap().port().to_string();
    let (code, _, err) = pesto(&["-A", "-t", &busy, &ctl]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!(
            "Failed to bind port {busy} (Address already in use) for option '-t {busy}'"
        )),
        "{err}"
    );
    let (code, _, err) = pesto(&["-D", "-u", "9", &ctl]);
    assert_eq!(code, Some(1));
    assert!(err.contains("No forwarding rule matches '-u 9'"), "{err}");
    let (code, _, err) = pesto(&["-A", "-t", "auto", &ctl]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("'auto' port forwarding is only allowed for pasta"),
        "{err}"
    );

    let (_, after, _) = pesto(&[&ctl]);
    assert_eq!(before, after, "refused requests changed nothing");
    drop(held);
    drop(passt);
    assert!(
        !std::path::Path::new(&ctl).exists() || UnixStream::connect(&ctl).is_err(),
        "no one answers on the control socket after passt is gone"
    );
}

/// Sends raw bytes to the control socket and returns what came back
/// before the connection closed (bounded by `WAIT`).
fn raw_control(ctl: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(ctl).expect("connect to the control socket");
    s.set_read_timeout(Some(WAIT)).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn a_hostile_control_client_can_neither_crash_nor_stall_passt() {
    if !netns::enter_or_skip() {
        return;
    }
    let (passt, ctl) = passt_with_control("pesto-hostile");

    // Garbage, huge lengths, text that is not UTF-8, no magic: each gets
    // an error reply and the connection closed.
    for (bytes, why) in [
        (b"GET / HTTP/1.0\r\n\r\n".to_vec(), "longer than the limit"),
        (
            vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
            "longer than the limit",
        ),
        ([&[0, 0, 0, 2][..], &[0xc3, 0x28]].concat(), "not UTF-8"),
        (
            [&[0, 0, 0, 5][..], b"hello"].concat(),
            "not a 'passt-control 1'",
        ),
    ] {
        let reply = raw_control(&ctl, &bytes);
        let text = String::from_utf8_lossy(reply.get(4..).unwrap_or_default());
        assert!(
            text.starts_with("error ") && text.contains(why),
            "{bytes:?}: {text:?}"
        );
    }
    // A client that says it will send 64 KiB and stops after 3 bytes, and
    // more idle clients than passt serves at once: passt keeps serving
    // the guest meanwhile, and drops them at their deadline.
    let mut idle: Vec<UnixStream> = (0..6)
        .map(|_| UnixStream::connect(&ctl).expect("connect"))
        .collect();
    idle[0].write_all(&[0, 1, 0, 0, b'p', b'a', b's']).unwrap();
    let mut g = passt.connect();
    let xid = 0x5e5707;
    let mut discover = v4::Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &GUEST_MAC.0,
    );
    discover
        .opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    let t0 = Instant::now();
    g.send(&dhcp_frame(&discover));
    g.expect("DHCPOFFER", |f| dhcp_reply(f, xid));
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "the guest was served while control clients hung"
    );
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, out, _) = pesto(&[&ctl]);
        if code == Some(0) {
            assert!(out.contains("listening socket"), "{out}");
            break;
        }
        assert!(
            Instant::now() < end,
            "idle control clients were never dropped"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut b = [0u8; 16];
        assert!(
            matches!(s.read(&mut b), Ok(0) | Err(_)),
            "each idle client was closed"
        );
    }
    // Still alive, and it stops cleanly.
    let mut passt = passt;
    assert!(
        passt.child.try_wait().unwrap().is_none(),
        "passt is running"
    );
    let status = passt.terminate();
    assert!(status.success(), "{status:?}: {}", passt.stderr_text());
}
