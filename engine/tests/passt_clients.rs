//! The command lines the programs that start passt really build, as exact
//! argv arrays: libvirt 9.0 and libvirt 10+ (`qemuPasstStart`: `--one-off
//! --socket P --pid F ...`, port specifications `[ADDR][%DEV]/PORTS[:TO]`),
//! and QEMU 10.1's `-netdev passt` (net/passt.c: `passt --quiet [options]
//! --pid TMP --fd 3`, the socket on descriptor 3, one run per option it can
//! add). Each must start the way the client starts it (in the background:
//! the client waits for the parent to exit 0, then reads the pid file),
//! bind its forwarded ports, and serve a DHCP exchange to the fake guest on
//! the client's socket. Then the guest leaves, and passt (one-off) exits.
//!
//! Also here, end to end: a forwarded connection is opened to the target
//! address of its rule, a port bound to an interface, and `-o` binding
//! outbound sockets.
//!
//! Every test runs in a network namespace of its own (see `netns`); without
//! the privilege, the tests say so and return. Every wait is bounded; the
//! daemon is killed by the PID it wrote when a test fails.

mod netns;

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use passt_engine::MacAddr;
use passt_engine::host_io::{Family, HostIo, Place};
use passt_engine::runtime::host::RealHost;
use passt_engine::wire::{self, IpRepr, Ipv4Repr, L3, L4, TcpFlags, UdpRepr};

const PASST: &str = env!("CARGO_BIN_EXE_passt");
const GUEST_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Scratch directory, the daemon
// ---------------------------------------------------------------------------

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("passt-client-{name}-{}", std::process::id()));
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
    fn path(&self, f: &str) -> String {
        self.0.join(f).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The daemon a client started, by the PID it wrote; killed on drop if it
/// is still there.
struct Daemon {
    pid: i32,
}

impl Daemon {
    fn alive(&self) -> bool {
        // A zombie (reparented, not reaped yet) counts as gone.
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(s) => !s
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }

    fn wait_gone(&self) -> bool {
        let end = Instant::now() + WAIT;
        while self.alive() {
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.alive() {
            // SAFETY: kill(2) on the daemon's own PID.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

/// Runs `argv` (after the program name) as a client does: waits for the
/// command to exit (the daemon forks away), checks status 0, and reads the
/// daemon's PID from `pid_file`. `fd3`: a socket handed over as descriptor
/// 3 (QEMU).
fn start_like_a_client(argv: &[String], pid_file: &str, fd3: Option<UnixStream>) -> Daemon {
    let mut cmd = Command::new(PASST);
    cmd.args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(s) = fd3 {
        let raw = s.into_raw_fd();
        // SAFETY: between fork and exec, only async-signal-safe calls.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(raw, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if raw != 3 {
                    libc::close(raw);
                }
                Ok(())
            });
        }
        let out = run_bounded(cmd);
        // SAFETY: our copy of the descriptor, no longer needed.
        unsafe { libc::close(raw) };
        return daemon_of(argv, out, pid_file);
    }
    let out = run_bounded(cmd);
    daemon_of(argv, out, pid_file)
}

fn run_bounded(mut cmd: Command) -> std::process::Output {
    let mut child = cmd.spawn().expect("spawn passt");
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("passt's parent did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn daemon_of(argv: &[String], out: std::process::Output, pid_file: &str) -> Daemon {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{argv:?}: {:?}: {stderr}", out.status);
    let pid = if pid_file.is_empty() {
        daemon_by_argv(argv).expect("the daemon in /proc")
    } else {
        let text = std::fs::read_to_string(pid_file).expect("pid file");
        text.trim().parse().expect("a PID in the pid file")
    };
    let d = Daemon { pid };
    assert!(d.alive(), "{argv:?}: the daemon is gone: {stderr}");
    d
}

/// The PID of the passt process whose command line is `argv` (libvirt 9.0
/// passes no `--pid`: the test finds its daemon as libvirt's own pid file
/// handling cannot).
fn daemon_by_argv(argv: &[String]) -> Option<i32> {
    let mut want = Vec::new();
    for a in argv {
        want.extend_from_slice(a.as_bytes());
        want.push(0);
    }
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let exe = std::fs::read_link(e.path().join("exe")).ok()?;
        (exe == Path::new(PASST) && cmdline.ends_with(&want)).then_some(pid)
    })
}

// ---------------------------------------------------------------------------
// The guest's end
// ---------------------------------------------------------------------------

struct Guest {
    s: UnixStream,
    buf: Vec<u8>,
}

impl Guest {
    fn new(s: UnixStream) -> Guest {
        s.set_nonblocking(true).unwrap();
        Guest { s, buf: Vec::new() }
    }

    fn connect(path: &str) -> Guest {
        Guest::new(UnixStream::connect(path).expect("connect to passt's socket"))
    }

    fn send(&mut self, frame: &[u8]) {
        let mut out = (frame.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(frame);
        self.s.set_nonblocking(false).unwrap();
        self.s.set_write_timeout(Some(WAIT)).unwrap();
        self.s.write_all(&out).expect("write to passt");
        self.s.set_nonblocking(true).unwrap();
    }

    fn recv(&mut self, out: &mut VecDeque<Vec<u8>>) {
        let mut p = libc::pollfd {
            fd: self.s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd on a live descriptor.
        unsafe { libc::poll(&mut p, 1, 50) };
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

    /// The first frame `pick` accepts within `limit`, if any.
    fn wait_for<T>(
        &mut self,
        limit: Duration,
        mut pick: impl FnMut(&[u8]) -> Option<T>,
    ) -> Option<T> {
        let end = Instant::now() + limit;
        let mut q: VecDeque<Vec<u8>> = VecDeque::new();
        loop {
            while let Some(f) = q.pop_front() {
                if let Some(t) = pick(&f) {
                    return Some(t);
                }
            }
            if Instant::now() > end {
                return None;
            }
            self.recv(&mut q);
        }
    }
}

fn udp_frame(src: SocketAddr, dst: SocketAddr, dst_mac: MacAddr, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        panic!("IPv4 only here");
    };
    let ip = IpRepr::V4(Ipv4Repr {
        src_addr: s,
        dst_addr: d,
        protocol: wire::protocol::UDP,
        hop_limit: 64,
        dscp: 0,
        ecn: 0,
        ident: 1,
        dont_frag: false,
        payload_len: 0,
    });
    let udp = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    let mut buf = vec![0u8; 14 + 20 + 8 + payload.len()];
    let n = wire::build_udp(&mut buf, GUEST_MAC, dst_mac, ip, &udp, payload).unwrap();
    buf.truncate(n);
    buf
}

/// DHCPDISCOVER then DHCPREQUEST; returns the address acknowledged, or
/// `None` when no offer comes within `limit`.
fn dhcp_lease(g: &mut Guest, limit: Duration) -> Option<(Ipv4Addr, v4::Message)> {
    let xid = 0x5eed_0014;
    let client = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 68);
    let server = SocketAddr::new(Ipv4Addr::BROADCAST.into(), 67);
    let msg = |t: MessageType, extra: &[DhcpOption]| {
        let mut m = v4::Message::new_with_id(
            xid,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &GUEST_MAC.0,
        );
        m.opts_mut().insert(DhcpOption::MessageType(t));
        for o in extra {
            m.opts_mut().insert(o.clone());
        }
        udp_frame(client, server, MacAddr::BROADCAST, &m.to_vec().unwrap())
    };
    let reply = |f: &[u8]| -> Option<v4::Message> {
        let p = wire::parse_frame(f).ok()?;
        let L3::Ipv4 {
            l4: L4::Udp { udp, payload },
            ..
        } = p.l3
        else {
            return None;
        };
        if udp.src_port != 67 {
            return None;
        }
        let m = v4::Message::decode(&mut Decoder::new(payload)).ok()?;
        (m.xid() == xid).then_some(m)
    };
    g.send(&msg(MessageType::Discover, &[]));
    let offer = g.wait_for(limit, reply)?;
    assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
    let server_id = match offer.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(a)) => *a,
        other => panic!("server identifier: {other:?}"),
    };
    g.send(&msg(
        MessageType::Request,
        &[
            DhcpOption::RequestedIpAddress(offer.yiaddr()),
            DhcpOption::ServerIdentifier(server_id),
        ],
    ));
    let ack = g.wait_for(WAIT, reply).expect("a DHCPACK");
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    Some((ack.yiaddr(), ack))
}

/// Host ports nothing listens on in this namespace, TCP and UDP.
fn free_ports(n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for port in 20000..30000u16 {
        if out.len() == n {
            break;
        }
        if TcpListener::bind(("0.0.0.0", port)).is_ok()
            && UdpSocket::bind(("0.0.0.0", port)).is_ok()
        {
            out.push(port);
        }
    }
    assert_eq!(out.len(), n);
    out
}

fn tcp_bound(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_err()
}

fn udp_bound(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_err()
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Serves one lease, then the guest leaves and the one-off daemon exits.
fn lease_then_leave(d: Daemon, mut g: Guest, want: Ipv4Addr) -> v4::Message {
    let (addr, ack) = dhcp_lease(&mut g, WAIT).expect("a DHCPOFFER");
    assert_eq!(addr, want);
    drop(g);
    assert!(
        d.wait_gone(),
        "one-off passt still running after the guest left"
    );
    ack
}

// ---------------------------------------------------------------------------
// libvirt
// ---------------------------------------------------------------------------

/// libvirt 9.0 (Debian 12, `qemuPasstStart`): `--one-off --socket P
/// --mac-addr M [--mtu N] [--interface DEV] [--log-file L] --address A
/// --netmask PREFIX` and one `--tcp-ports` or `--udp-ports` per
/// `<portForward>`, `ADDR[%DEV]/` before the ranges,
/// `START[-END][:TO[-TOEND]]`, `~` for exclusions, `all` without ranges.
/// No `--pid` (the strings of Debian's `libvirt_driver_qemu.so` 9.0.0 have
/// none) and `--mac-addr` is the guest's own MAC.
#[test]
fn libvirt_9_0_command_line() {
    if !netns::enter_or_skip() {
        return;
    }
    let dir = Scratch::new("libvirt9");
    let sock = dir.path("net0.sock");
    let p = free_ports(4);
    let argv = args(&[
        "--one-off",
        "--socket",
        &sock,
        "--mac-addr",
        "52:54:00:12:34:56",
        "--mtu",
        "1500",
        "--address",
        "10.0.2.15",
        "--netmask",
        "24",
        "--tcp-ports",
        &format!("127.0.0.1%lo/{}:22", p[0]),
        "--tcp-ports",
        &format!("{}-{},~{}", p[1], p[2], p[2]),
        "--udp-ports",
        &format!("{}:53", p[3]),
    ]);
    let d = start_like_a_client(&argv, "", None);
    assert!(tcp_bound(p[0]) && tcp_bound(p[1]), "TCP forwards bound");
    assert!(!tcp_bound(p[2]), "excluded port left alone");
    assert!(
        udp_bound(p[3]) && !tcp_bound(p[3]),
        "UDP forward bound, UDP only"
    );
    let ack = lease_then_leave(d, Guest::connect(&sock), Ipv4Addr::new(10, 0, 2, 15));
    assert_eq!(
        ack.opts().get(OptionCode::InterfaceMtu),
        Some(&DhcpOption::InterfaceMtu(1500))
    );
    assert_eq!(
        ack.opts().get(OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
}

/// libvirt 10 and later: `[--vhost-user] --one-off --socket P --pid F
/// [--mtu N] [--interface DEV] [--log-file L] [--hostname H] [--fqdn F]
/// --address A [--netmask PREFIX] --tcp-ports/--udp-ports
/// [ADDR][%DEV]/PORTS` (without vhost-user: that is refused, see
/// `vhost_user_is_refused_cleanly`).
#[test]
fn libvirt_10_command_line() {
    if !netns::enter_or_skip() {
        return;
    }
    let dir = Scratch::new("libvirt10");
    let (sock, pid, log) = (dir.path("s.sock"), dir.path("p.pid"), dir.path("passt.log"));
    let p = free_ports(3);
    let argv = args(&[
        "--one-off",
        "--socket",
        &sock,
        "--pid",
        &pid,
        "--mtu",
        "9000",
        "--log-file",
        &log,
        "--hostname",
        "vm1",
        "--fqdn",
        "vm1.example.test",
        "--address",
        "10.0.2.15",
        "--netmask",
        "24",
        "--tcp-ports",
        &format!("%lo/{}:22", p[0]),
        "--tcp-ports",
        &format!("127.0.0.1/{}", p[1]),
        "--udp-ports",
        &format!("127.0.0.1%lo/{}", p[2]),
    ]);
    let d = start_like_a_client(&argv, &pid, None);
    assert!(tcp_bound(p[0]) && tcp_bound(p[1]) && udp_bound(p[2]));
    let ack = lease_then_leave(d, Guest::connect(&sock), Ipv4Addr::new(10, 0, 2, 15));
    assert_eq!(
        ack.opts().get(OptionCode::Hostname),
        Some(&DhcpOption::Hostname("vm1".into()))
    );
    assert_eq!(
        ack.opts().get(OptionCode::InterfaceMtu),
        Some(&DhcpOption::InterfaceMtu(9000))
    );
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("UNIX domain socket bound at"),
        "{log_text}"
    );
}

#[test]
fn vhost_user_is_refused_cleanly() {
    let out = Command::new(PASST)
        .args([
            "--vhost-user",
            "--one-off",
            "--socket",
            "/nonexistent/s",
            "--pid",
            "/nonexistent/p",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end(),
        "--vhost-user: vhost-user is not supported yet (use the UNIX domain socket, -s)"
    );
    let out = Command::new(PASST)
        .arg("--print-capabilities")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\n  \"type\": \"net\"\n}\n"
    );
}

// ---------------------------------------------------------------------------
// QEMU 10.1 -netdev passt
// ---------------------------------------------------------------------------

/// What net/passt.c can add between `--quiet` and `--pid TMP --fd 3`, one
/// entry per `-netdev passt` property, with what the lease must show
/// (`None`: the option turns DHCPv4 off, and no offer may come).
fn qemu_options(ports: &[u16]) -> Vec<(Vec<String>, Option<Ipv4Addr>)> {
    let dflt = Some(Ipv4Addr::new(169, 254, 2, 1));
    let a = Some(Ipv4Addr::new(10, 0, 2, 15));
    let o = |v: &[&str], want: Option<Ipv4Addr>| (args(v), want);
    vec![
        o(&[], dflt),
        o(&["--mtu", "1500"], dflt),
        o(&["--address", "10.0.2.15"], a),
        o(&["--address", "10.0.2.15", "--netmask", "255.255.255.0"], a),
        o(&["--mac-addr", "02:00:00:00:00:09"], dflt),
        o(&["--gateway", "169.254.2.9"], dflt),
        o(&["--interface", "lo"], dflt),
        o(&["--outbound", "127.0.0.1"], dflt),
        o(&["--outbound-if4", "lo"], dflt),
        o(&["--outbound-if6", "lo"], dflt),
        o(&["--dns", "192.0.2.53"], dflt),
        o(&["--fqdn", "vm.example.test"], dflt),
        o(&["--no-dhcp-dns"], dflt),
        o(&["--no-dhcp-search"], dflt),
        o(&["--map-host-loopback", "169.254.2.2"], dflt),
        o(&["--map-guest-addr", "169.254.2.7"], dflt),
        o(&["--dns-forward", "169.254.2.53"], dflt),
        o(&["--dns-host", "127.0.0.1"], dflt),
        o(&["--no-tcp"], dflt),
        o(&["--no-udp"], dflt),
        o(&["--no-icmp"], dflt),
        o(&["--no-dhcp"], None),
        o(&["--no-ndp"], dflt),
        o(&["--no-dhcpv6"], dflt),
        o(&["--no-ra"], dflt),
        o(&["--freebind"], dflt),
        o(&["--ipv6-only", "--address", "2001:db8::15"], None),
        o(&["--ipv4-only"], dflt),
        o(&["--search", "a.test b.test"], dflt),
        o(
            &["--tcp-ports", &format!("{},{}:22", ports[0], ports[1])],
            dflt,
        ),
        o(&["--udp-ports", &format!("{}", ports[2])], dflt),
        // `param=-d`: after --quiet; the last one wins, not an error.
        o(&["-d"], dflt),
    ]
}

#[test]
fn qemu_10_1_command_lines() {
    if !netns::enter_or_skip() {
        return;
    }
    let ports = free_ports(3);
    for (i, (extra, want)) in qemu_options(&ports).into_iter().enumerate() {
        let dir = Scratch::new(&format!("qemu{i}"));
        // QEMU creates the pid file (empty) with g_file_open_tmp.
        let pid = dir.path("passt-XXXXXX.pid");
        std::fs::write(&pid, "").unwrap();
        let mut argv = args(&["--quiet"]);
        argv.extend(extra.iter().cloned());
        argv.extend(args(&["--pid", &pid, "--fd", "3"]));
        let (ours, theirs) = UnixStream::pair().unwrap();
        let d = start_like_a_client(&argv, &pid, Some(theirs));
        if extra.first().is_some_and(|o| o == "--tcp-ports") {
            assert!(tcp_bound(ports[0]) && tcp_bound(ports[1]), "{argv:?}");
        }
        if extra.first().is_some_and(|o| o == "--udp-ports") {
            assert!(udp_bound(ports[2]), "{argv:?}");
        }
        let mut g = Guest::new(ours);
        match want {
            Some(addr) => {
                let (got, _) =
                    dhcp_lease(&mut g, WAIT).unwrap_or_else(|| panic!("{argv:?}: no DHCPOFFER"));
                assert_eq!(got, addr, "{argv:?}");
            }
            None => assert!(
                dhcp_lease(&mut g, Duration::from_millis(500)).is_none(),
                "{argv:?}: DHCPv4 answered"
            ),
        }
        drop(g);
        assert!(
            d.wait_gone(),
            "{argv:?}: passt still running after QEMU left"
        );
        assert!(!Path::new(&pid).exists(), "{argv:?}: pid file left behind");
    }
}

// ---------------------------------------------------------------------------
// Target addresses, interfaces, outbound binding
// ---------------------------------------------------------------------------

fn foreground(dir: &Scratch, extra: &[&str]) -> (std::process::Child, String) {
    let sock = dir.path("s.sock");
    let pid = dir.path("pid");
    let child = Command::new(PASST)
        .args([
            "-f",
            "-4",
            "-a",
            "10.0.2.15",
            "-n",
            "24",
            "-g",
            "10.0.2.2",
            "-s",
            &sock,
            "-P",
            &pid,
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path("stderr")).unwrap())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&pid).is_ok_and(|s| s.ends_with('\n')) {
        assert!(Instant::now() < end, "passt never became ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, sock)
}

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `-t HOST:ADDR/GUEST`: the SYN of a forwarded connection goes to ADDR,
/// not to the guest's own address.
#[test]
fn forwarded_connections_go_to_the_rules_target_address() {
    if !netns::enter_or_skip() {
        return;
    }
    let dir = Scratch::new("target");
    let p = free_ports(2);
    let specs = [format!("{}:10.0.2.99/8080", p[0]), format!("{}", p[1])];
    let (child, sock) = foreground(&dir, &["-t", &specs[0], "-t", &specs[1]]);
    let _kill = Kill(child);
    let mut g = Guest::connect(&sock);
    let syn_to = |g: &mut Guest, port: u16| -> (Ipv4Addr, u16) {
        let _c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        g.wait_for(WAIT, |f| {
            let p = wire::parse_frame(f).ok()?;
            match p.l3 {
                L3::Ipv4 {
                    ip,
                    l4: L4::Tcp { tcp, .. },
                } if tcp.flags.0 & TcpFlags::SYN.0 != 0 => Some((ip.dst_addr, tcp.dst_port)),
                _ => None,
            }
        })
        .expect("a SYN toward the guest")
    };
    assert_eq!(syn_to(&mut g, p[0]), (Ipv4Addr::new(10, 0, 2, 99), 8080));
    assert_eq!(syn_to(&mut g, p[1]), (Ipv4Addr::new(10, 0, 2, 15), p[1]));
}

/// `-u HOST:ADDR/GUEST`: datagrams on the forwarded port go to ADDR.
#[test]
fn forwarded_datagrams_go_to_the_rules_target_address() {
    if !netns::enter_or_skip() {
        return;
    }
    let dir = Scratch::new("target-udp");
    let p = free_ports(1)[0];
    let spec = format!("{p}:10.0.2.99/5353");
    let (child, sock) = foreground(&dir, &["-u", &spec]);
    let _kill = Kill(child);
    let mut g = Guest::connect(&sock);
    let host = UdpSocket::bind("127.0.0.1:0").unwrap();
    host.send_to(b"to the target", ("127.0.0.1", p)).unwrap();
    let got = g.wait_for(WAIT, |f| {
        let p = wire::parse_frame(f).ok()?;
        match p.l3 {
            L3::Ipv4 {
                ip,
                l4: L4::Udp { udp, payload },
            } if payload == b"to the target" => Some((ip.dst_addr, udp.dst_port)),
            _ => None,
        }
    });
    assert_eq!(got, Some((Ipv4Addr::new(10, 0, 2, 99), 5353)));
}

/// `--stats DELAY`: event counts in the log once events were handled.
#[test]
fn stats_are_logged() {
    if !netns::enter_or_skip() {
        return;
    }
    let dir = Scratch::new("stats");
    let (child, sock) = foreground(&dir, &["--stats", "0"]);
    let _kill = Kill(child);
    let mut g = Guest::connect(&sock);
    dhcp_lease(&mut g, WAIT).expect("a lease");
    let end = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(dir.path("stderr")).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.starts_with("Stats: ") && l.contains("DHCP replies 2"))
        {
            assert!(line.contains("frames from guest 2"), "{line}");
            break;
        }
        assert!(Instant::now() < end, "no Stats line: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `%IF/PORT`: bound to the interface; an interface that does not exist
/// fails the start like any bind failure.
#[test]
fn ports_bound_to_an_interface() {
    if !netns::enter_or_skip() {
        return;
    }
    let p = free_ports(1)[0];
    let dir = Scratch::new("ifbind");
    let spec = format!("%lo/{p}");
    let (child, _sock) = foreground(&dir, &["-t", &spec]);
    let _kill = Kill(child);
    assert!(tcp_bound(p));
    TcpStream::connect(("127.0.0.1", p)).expect("passt listens on lo");
    drop(_kill);

    let dir = Scratch::new("ifbind-missing");
    let spec = format!("%nosuchif0/{p}");
    let out = Command::new(PASST)
        .args([
            "-f",
            "-4",
            "-a",
            "10.0.2.15",
            "-s",
            &dir.path("s.sock"),
            "-t",
            &spec,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "Failed to bind port {p} (No such device) for option '-t {spec}'"
        )),
        "{err}"
    );
}

/// `-o ADDR`: a guest's UDP flow leaves from ADDR.
#[test]
fn outbound_address_binds_outbound_sockets() {
    if !netns::enter_or_skip() {
        return;
    }
    for a in ["10.9.9.1/32", "10.9.9.2/32"] {
        let st = Command::new("ip")
            .args(["addr", "add", a, "dev", "lo"])
            .status();
        if !st.is_ok_and(|s| s.success()) {
            eprintln!("SKIPPED: cannot add {a} to lo (no ip(8)?)");
            return;
        }
    }
    let server = UdpSocket::bind("10.9.9.1:0").unwrap();
    server.set_read_timeout(Some(WAIT)).unwrap();
    let dst = server.local_addr().unwrap();
    let dir = Scratch::new("outbound");
    let (child, sock) = foreground(&dir, &["-o", "10.9.9.2"]);
    let _kill = Kill(child);
    let mut g = Guest::connect(&sock);
    let src = SocketAddr::new(Ipv4Addr::new(10, 0, 2, 15).into(), 40000);
    g.send(&udp_frame(src, dst, MacAddr::PASST_DEFAULT, b"hello"));
    let mut buf = [0u8; 16];
    let (n, from) = server.recv_from(&mut buf).expect("the datagram");
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(from.ip(), IpAddr::V4(Ipv4Addr::new(10, 9, 9, 2)));

    // ICMP echo: the ping socket the engine opens for -o is bound there.
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")
        .expect("ping_group_range of our own netns");
    let mut h = RealHost::new().unwrap();
    let local = IpAddr::V4(Ipv4Addr::new(10, 9, 9, 2));
    let s = h
        .ping_open_at(Place::HOST, Family::V4, 7, Some(local))
        .expect("a ping socket bound to the -o address");
    assert_eq!(h.local_addr(s).unwrap().ip(), local);
}
