//! The real kernel as the guest: each test creates its own namespaces and
//! tap (see `tap_harness::TapGuest`), runs the engine on it, and runs real
//! Linux tools in the guest namespace: busybox `udhcpc`, `ping`, `ping6`,
//! the kernel's own NDP/SLAAC, `socat`.
//!
//! The engine's host sockets live in a second private namespace (its
//! loopback is "the host's loopback" that the gateway addresses map to), so
//! tests can run in parallel and never touch the machine's own network.
//!
//! Needs root, `/dev/net/tun`, `ip`, busybox (and socat for UDP/TCP);
//! without them each test prints `SKIP <name>: <reason>` and returns.
//! Timings worth knowing are printed as `TIMING ...` lines
//! (`cargo test -p tap-harness -- --nocapture`).
#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket,
};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use tap_harness::{
    EngineReport, GuestOptions, HostSide, LossyLink, PatternChecker, PatternStream, Peer, TapGuest,
    busybox_has, check_pattern_file, default_config, print_skip, skip_reason, tool_available,
    write_pattern_file,
};

/// Returns why `test` cannot run here (after printing the SKIP line), given
/// the busybox applets and other programs it needs.
fn skipped(test: &str, applets: &[&str], programs: &[&str]) -> bool {
    let reason = skip_reason().or_else(|| {
        applets
            .iter()
            .find(|a| !busybox_has(a))
            .map(|a| format!("busybox with `{a}` is not installed"))
            .or_else(|| {
                programs
                    .iter()
                    .find(|p| !tool_available(p, &["-V"]))
                    .map(|p| format!("`{p}` is not installed"))
            })
    });
    match reason {
        Some(r) => {
            print_skip(test, &r);
            true
        }
        None => false,
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn our_mac() -> String {
    default_config().our_mac.to_string()
}

/// A guest with IPv4 configured statically and DAD off (so the IPv6
/// link-local address is usable at once).
fn static_guest(host: HostSide) -> TapGuest {
    static_guest_with(host, None, Peer::Engine)
}

/// [`static_guest`], with loss on the guest link if `lossy` is set.
fn static_guest_with(host: HostSide, lossy: Option<LossyLink>, peer: Peer) -> TapGuest {
    let mut opts = GuestOptions::new(default_config());
    opts.host = host;
    opts.dad = false;
    opts.lossy = lossy;
    opts.peer = peer;
    let g = TapGuest::start_with(opts).expect("start guest");
    g.configure_ipv4_static().expect("static IPv4");
    g
}

// ---------------------------------------------------------------- DHCP

/// A udhcpc script that records each event's environment to
/// `DIR/EVENT.env` and applies a lease (address, MTU, default route).
fn write_udhcpc_script(dir: &Path) -> std::path::PathBuf {
    let script = dir.join("udhcpc.script");
    let body = format!(
        r#"#!/bin/sh
# Apply first, then record: the test reads EVENT.env as "done".
fail() {{ env > "{dir}/$1.failed"; exit 1; }}
case "$1" in
bound|renew)
    ip addr replace "$ip/${{mask:-$subnet}}" dev "$interface" || fail "$1"
    if [ -n "$mtu" ]; then ip link set dev "$interface" mtu "$mtu" || fail "$1"; fi
    for r in $router; do ip route replace default via "$r" dev "$interface" || fail "$1"; break; done
    ;;
esac
env > "{dir}/$1.env.tmp" && mv "{dir}/$1.env.tmp" "{dir}/$1.env"
exit 0
"#,
        dir = dir.display()
    );
    std::fs::write(&script, body).expect("write script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

fn read_env(path: &Path) -> Option<BTreeMap<String, String>> {
    let s = std::fs::read_to_string(path).ok()?;
    Some(
        s.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn dhcp_config() -> passt_engine::Config {
    let mut c = default_config();
    // Not the tap's 1500 and not the default: DHCP must carry it.
    c.mtu = 9000;
    c.hostname = Some("tapguest".into());
    c
}

fn dhcp_guest() -> TapGuest {
    let mut opts = GuestOptions::new(dhcp_config());
    opts.tap_mtu = None; // 1500 until the lease says otherwise
    opts.accept_ra = false; // IPv4 only here: keep the capture quiet
    TapGuest::start_with(opts).expect("start guest")
}

fn assert_lease(env: &BTreeMap<String, String>, g: &TapGuest) {
    let get = |k: &str| env.get(k).map(String::as_str);
    assert_eq!(get("interface"), Some(g.tap_name()), "{env:?}");
    assert_eq!(get("ip"), Some("192.0.2.15"), "{env:?}");
    assert_eq!(get("subnet"), Some("255.255.255.0"), "{env:?}");
    assert_eq!(get("router"), Some("192.0.2.1"), "{env:?}");
    assert_eq!(get("dns"), Some("192.0.2.53"), "{env:?}");
    assert_eq!(get("mtu"), Some("9000"), "{env:?}");
    assert_eq!(get("lease"), Some("3600"), "{env:?}");
    assert_eq!(get("hostname"), Some("tapguest"), "{env:?}");
    assert_eq!(get("search"), Some("example.test"), "{env:?}");
    assert!(get("serverid").is_some(), "no server identifier: {env:?}");
}

fn assert_lease_applied(g: &TapGuest) {
    let ns = g.guest_ns();
    let addr = stdout(&ns.ip(&["-4", "addr", "show", "dev", g.tap_name()]).unwrap());
    assert!(addr.contains("inet 192.0.2.15/24"), "{addr}");
    let link = stdout(&ns.ip(&["link", "show", "dev", g.tap_name()]).unwrap());
    assert!(link.contains("mtu 9000"), "{link}");
    let route = stdout(&ns.ip(&["-4", "route", "show", "default"]).unwrap());
    assert!(route.contains("default via 192.0.2.1"), "{route}");
}

fn udhcpc_args<'a>(g: &'a TapGuest, script: &'a str, once: bool) -> Vec<&'a str> {
    let mut a = vec![
        "udhcpc",
        "-f",
        "-i",
        g.tap_name(),
        "-s",
        script,
        "-t",
        "5",
        "-T",
        "1",
        "-O",
        "mtu",
        "-O",
        "search",
        "-O",
        "hostname",
    ];
    if once {
        a.extend(["-q", "-n"]);
    }
    a
}

#[test]
fn dhcp_lease_with_udhcpc() {
    if skipped("dhcp_lease_with_udhcpc", &["udhcpc"], &[]) {
        return;
    }
    let g = dhcp_guest();
    let script = write_udhcpc_script(g.tmp_dir());
    let script = script.to_string_lossy().into_owned();
    let t = Instant::now();
    let up = g.elapsed();
    let out = g
        .run_in_ns(
            "busybox",
            &udhcpc_args(&g, &script, true),
            Duration::from_secs(20),
        )
        .expect("run udhcpc");
    let took = t.elapsed();
    assert!(out.status.success(), "udhcpc failed:\n{}", text(&out));
    eprintln!(
        "TIMING dhcp: udhcpc started {up:?} after tap up, bound in {took:?} (DISCOVER to exit)"
    );
    let env = read_env(&g.tmp_dir().join("bound.env")).unwrap_or_else(|| {
        panic!("no bound event:\n{}", text(&out));
    });
    assert_lease(&env, &g);
    assert_lease_applied(&g);
    // The lease works: the gateway answers ping through it.
    if busybox_has("ping") {
        let p = g
            .run_in_ns(
                "busybox",
                &["ping", "-c", "1", "-W", "3", "192.0.2.1"],
                Duration::from_secs(10),
            )
            .unwrap();
        assert!(p.status.success(), "ping after DHCP:\n{}", text(&p));
    }
    let report = g.finish().expect("engine report");
    assert!(report.counters.dhcp_replies >= 2, "{:?}", report.counters);
}

#[test]
fn dhcp_renew_with_udhcpc() {
    if skipped("dhcp_renew_with_udhcpc", &["udhcpc"], &[]) {
        return;
    }
    let g = dhcp_guest();
    let script = write_udhcpc_script(g.tmp_dir());
    let script = script.to_string_lossy().into_owned();
    let client = g
        .spawn_in_ns("busybox", &udhcpc_args(&g, &script, false))
        .expect("spawn udhcpc");
    let bound = g.tmp_dir().join("bound.env");
    let renew = g.tmp_dir().join("renew.env");
    let wait_file = |p: &Path, limit: Duration| {
        let t = Instant::now();
        while t.elapsed() < limit {
            if p.exists() {
                return Some(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    };
    let took = wait_file(&bound, Duration::from_secs(15)).expect("no lease within 15 s");
    eprintln!("TIMING dhcp (background udhcpc): bound {took:?} after start");
    // SIGUSR1: renew now (a unicast REQUEST with ciaddr set, RFC 2131 §4.3.2).
    //
    // Observed with busybox 1.35: the engine's unicast ACK (correct, sent
    // ~50 us after the REQUEST) is lost by udhcpc itself: it sends the
    // REQUEST from a socket bound to ciaddr:68 and connected to the server,
    // and the ACK arrives before that socket is closed, so the kernel
    // delivers it there (the more specific match) instead of to udhcpc's
    // listening socket. udhcpc then waits its timeout (-T 1), rebinds by
    // broadcast, and takes the second ACK through its raw socket: the renew
    // completes in about 1 s instead of at once. Not an engine fault; a
    // slower server (any real one across a network) never hits it.
    let pid = client.id().expect("pid") as i32;
    // SAFETY: plain syscall; the pid is our own child's.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGUSR1) }, 0);
    let took = wait_file(&renew, Duration::from_secs(10));
    let env = read_env(&renew);
    client.stop();
    let took = took.expect("udhcpc did not renew within 10 s");
    eprintln!("TIMING dhcp renew: {took:?} after SIGUSR1");
    assert_lease(&env.expect("renew env"), &g);
    assert_lease_applied(&g);
}

// ---------------------------------------------------------------- IPv6: RA, SLAAC, NDP

fn ipv6_prefix64(a: Ipv6Addr) -> [u16; 4] {
    let s = a.segments();
    [s[0], s[1], s[2], s[3]]
}

#[test]
fn slaac_address_and_default_route_from_ra() {
    if skipped("slaac_address_and_default_route_from_ra", &[], &[]) {
        return;
    }
    let g = TapGuest::start(default_config()).expect("start guest");
    let want_prefix = ipv6_prefix64(g.config().ipv6.as_ref().unwrap().addr);
    let tap = g.tap_name().to_string();
    let base = g.elapsed();
    let (addrs, t_addr) = g
        .wait_for_output(
            "ip",
            &["-6", "addr", "show", "dev", &tap, "scope", "global"],
            Duration::from_secs(10),
            |s| {
                s.lines().any(|l| {
                    l.contains("inet6 2001:db8::")
                        && !l.contains("tentative")
                        && !l.contains("dadfailed")
                })
            },
        )
        .unwrap_or_else(|last| panic!("no usable SLAAC address within 10 s; last:\n{last}"));
    let (routes, t_route) = g
        .wait_for_output(
            "ip",
            &["-6", "route", "show", "default"],
            Duration::from_secs(10),
            |s| s.contains("default via fe80::1 dev"),
        )
        .unwrap_or_else(|last| panic!("no default route via fe80::1 within 10 s; last:\n{last}"));
    let route_at = g.elapsed();
    eprintln!(
        "TIMING slaac: global address usable {:?}, default route seen {route_at:?} after the \
         tap came up (route poll took {t_route:?})",
        base + t_addr
    );
    // The address is an autoconfigured one in our /64, with lifetimes.
    let line = addrs
        .lines()
        .find(|l| l.contains("inet6 2001:db8::"))
        .unwrap();
    let a: Ipv6Addr = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.split('/').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse {line}"));
    assert_eq!(ipv6_prefix64(a), want_prefix, "{addrs}");
    assert!(line.contains("/64"), "{addrs}");
    assert!(addrs.contains("dynamic"), "address not from SLAAC: {addrs}");
    assert!(routes.contains(&format!("dev {tap}")), "{routes}");
    assert!(routes.contains("proto ra"), "{routes}");
    // The RA's MTU option reached the kernel.
    let mtu = g
        .guest_ns()
        .read_sysctl(&format!("net.ipv6.conf.{tap}.mtu"))
        .unwrap();
    assert_eq!(mtu, g.config().mtu.to_string());
    let report = g.finish().unwrap();
    assert!(
        report.counters.ndp_router_adverts >= 1,
        "{:?}",
        report.counters
    );
}

#[test]
fn ndp_resolves_gateway() {
    if skipped("ndp_resolves_gateway", &["ping6"], &[]) {
        return;
    }
    let mut opts = GuestOptions::new(default_config());
    // No RA: the gateway's link-layer address must come from an NA, not
    // from the RA's source link-layer option.
    // The kernel learns the router's MAC from an RA's source link-layer
    // option even with accept_ra off, so the engine sends none here: the
    // entry must come from the NA answering the kernel's NS.
    opts.config.services.ra = false;
    opts.accept_ra = false;
    opts.dad = false;
    let g = TapGuest::start_with(opts).expect("start guest");
    let tap = g.tap_name().to_string();
    let before = stdout(
        &g.guest_ns()
            .ip(&["-6", "neigh", "show", "dev", &tap])
            .unwrap(),
    );
    assert!(
        !before.contains("fe80::1 "),
        "resolved before any NS: {before}"
    );
    let out = g
        .run_in_ns(
            "busybox",
            &["ping6", "-c", "1", "-W", "3", "-I", &tap, "fe80::1"],
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(out.status.success(), "ping6 fe80::1:\n{}", text(&out));
    let neigh = stdout(
        &g.guest_ns()
            .ip(&["-6", "neigh", "show", "fe80::1", "dev", &tap])
            .unwrap(),
    );
    assert!(
        neigh.contains(&format!("lladdr {}", our_mac())),
        "gateway not resolved to our MAC: {neigh:?}"
    );
    assert!(
        neigh.contains("router"),
        "NA without the Router flag: {neigh:?}"
    );
    assert!(
        !neigh.contains("FAILED") && !neigh.contains("INCOMPLETE"),
        "{neigh:?}"
    );
    let c = g.finish().unwrap().counters;
    assert!(c.ndp_neighbor_adverts >= 1, "{c:?}");
    assert_eq!(c.ndp_router_adverts, 0, "{c:?}");
}

// ---------------------------------------------------------------- ARP

#[test]
fn arp_resolves_gateway() {
    if skipped("arp_resolves_gateway", &["ping", "arping"], &[]) {
        return;
    }
    let g = static_guest(HostSide::default());
    let tap = g.tap_name().to_string();
    let out = g
        .run_in_ns(
            "busybox",
            &["ping", "-c", "1", "-W", "3", "192.0.2.1"],
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(out.status.success(), "ping 192.0.2.1:\n{}", text(&out));
    let neigh = stdout(
        &g.guest_ns()
            .ip(&["-4", "neigh", "show", "192.0.2.1", "dev", &tap])
            .unwrap(),
    );
    assert!(
        neigh.contains(&format!("lladdr {}", our_mac())),
        "gateway not resolved to our MAC: {neigh:?}"
    );
    // Any other on-link address is "us" too (arping: one request, reply expected).
    let out = g
        .run_in_ns(
            "busybox",
            &["arping", "-c", "1", "-w", "3", "-I", &tap, "192.0.2.77"],
            Duration::from_secs(10),
        )
        .unwrap();
    let s = text(&out).to_ascii_lowercase();
    assert!(out.status.success(), "arping 192.0.2.77:\n{s}");
    assert!(
        s.contains(&our_mac()),
        "arping reply not from our MAC:\n{s}"
    );
}

// ---------------------------------------------------------------- ICMP

fn ping_ok(g: &TapGuest, args: &[&str]) {
    let t = Instant::now();
    let out = g
        .run_in_ns("busybox", args, Duration::from_secs(15))
        .unwrap();
    let s = text(&out);
    assert!(out.status.success(), "{args:?}:\n{s}");
    assert!(
        s.contains("3 packets transmitted, 3 packets received"),
        "{s}"
    );
    eprintln!("TIMING {args:?}: {:?}", t.elapsed());
}

#[test]
fn ping_gateway_v4() {
    if skipped("ping_gateway_v4", &["ping"], &[]) {
        return;
    }
    let g = static_guest(HostSide::default());
    ping_ok(
        &g,
        &["ping", "-c", "3", "-i", "0.2", "-W", "3", "192.0.2.1"],
    );
    let c = g.finish().unwrap().counters;
    assert!(
        c.echo_requests_sent >= 3 && c.echo_replies_to_guest >= 3,
        "{c:?}"
    );
    assert_eq!(c.ping_not_permitted, 0, "{c:?}");
}

#[test]
fn ping_gateway_v6() {
    if skipped("ping_gateway_v6", &["ping6"], &[]) {
        return;
    }
    let g = static_guest(HostSide::default());
    let tap = g.tap_name().to_string();
    ping_ok(
        &g,
        &[
            "ping6", "-c", "3", "-i", "0.2", "-W", "3", "-I", &tap, "fe80::1",
        ],
    );
    let c = g.finish().unwrap().counters;
    assert!(
        c.echo_requests_sent >= 3 && c.echo_replies_to_guest >= 3,
        "{c:?}"
    );
}

/// A host that forbids ping sockets (`ping_group_range` = `1 0`): the echo
/// goes unanswered and the engine counts it.
#[test]
fn ping_without_ping_sockets_is_counted() {
    if skipped("ping_without_ping_sockets_is_counted", &["ping"], &[]) {
        return;
    }
    let g = static_guest(HostSide::Private {
        ping_group_range: (1, 0),
    });
    let out = g
        .run_in_ns(
            "busybox",
            &["ping", "-c", "2", "-W", "1", "192.0.2.1"],
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(
        !out.status.success(),
        "ping answered without ping sockets:\n{}",
        text(&out)
    );
    let c = g.finish().unwrap().counters;
    assert!(c.ping_not_permitted >= 1, "{c:?}");
    assert_eq!(c.echo_replies_to_guest, 0, "{c:?}");
}

// ---------------------------------------------------------------- UDP

/// What the echo server saw: (sender, payload) per datagram.
type Echoed = Vec<(SocketAddr, Vec<u8>)>;

/// A UDP echo server on the host side's loopback: echoes datagrams until
/// `count` were echoed or 15 s pass, returning (sender, payload) of each.
fn udp_echo_server(
    g: &TapGuest,
    lo: IpAddr,
    count: usize,
) -> (u16, std::thread::JoinHandle<Echoed>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = g
        .spawn_in_host(move || {
            let s = UdpSocket::bind(SocketAddr::new(lo, 0)).expect("bind echo");
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            tx.send(s.local_addr().unwrap().port()).unwrap();
            let mut seen = Vec::new();
            let end = Instant::now() + Duration::from_secs(15);
            let mut buf = [0u8; 65536];
            while seen.len() < count && Instant::now() < end {
                match s.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        s.send_to(&buf[..n], from).expect("echo");
                        seen.push((from, buf[..n].to_vec()));
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => panic!("echo recv: {e}"),
                }
            }
            seen
        })
        .expect("echo thread");
    (
        rx.recv_timeout(Duration::from_secs(5)).expect("echo port"),
        h,
    )
}

fn udp_echo(lo: IpAddr, target: &str, test: &str, host: HostSide) {
    if skipped(test, &[], &["socat"]) {
        return;
    }
    let g = static_guest(host);
    let (port, server) = udp_echo_server(&g, lo, 2);
    let sport = 40_001;
    let target = target.replace("TAP", g.tap_name());
    // Two datagrams from one socket: the second uses the same flow.
    let script = format!(
        "(printf 'hello through the gateway'; sleep 0.3; printf 'second datagram') | \
         socat -t 2 - '{target}:{port},sourceport={sport}'"
    );
    let t = Instant::now();
    let out = g.guest_ns().sh(&script, Duration::from_secs(15)).unwrap();
    let elapsed = t.elapsed();
    let seen = server.join().expect("echo server");
    let got = stdout(&out);
    assert!(out.status.success(), "socat:\n{}", text(&out));
    assert_eq!(
        got,
        "hello through the gatewaysecond datagram",
        "echo did not come back:\n{}",
        text(&out)
    );
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (from, _) in &seen {
        assert_eq!(from.ip(), lo, "host peer sees the loopback source");
        assert_eq!(from.port(), sport, "guest source port preserved");
    }
    assert_eq!(seen[0].1, b"hello through the gateway");
    eprintln!("TIMING {test}: socat round trip {elapsed:?} (includes socat -t 2)");
    let c = g.finish().unwrap().counters;
    assert_eq!((c.udp_to_host, c.udp_to_guest), (2, 2), "{c:?}");
}

#[test]
fn udp_echo_through_gateway_v4() {
    udp_echo(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "UDP4:192.0.2.1",
        "udp_echo_through_gateway_v4",
        HostSide::default(),
    );
}

#[test]
fn udp_echo_through_gateway_v6() {
    udp_echo(
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        "UDP6:[fe80::1%TAP]",
        "udp_echo_through_gateway_v6",
        HostSide::default(),
    );
}

/// The engine's sockets in the test process's own namespace (as the
/// `passt` binary runs): the echo server is on that namespace's loopback.
#[test]
fn udp_echo_with_engine_in_current_namespace() {
    udp_echo(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "UDP4:192.0.2.1",
        "udp_echo_with_engine_in_current_namespace",
        HostSide::Current,
    );
}

// ---------------------------------------------------------------- TCP

const TCP_BYTES: u64 = 64 << 20;
/// Hard bound of one TCP transfer (a failure bound, not a speed target):
/// long enough for a Linux sender whose retransmission timer backed off
/// over a lossy link (see [`UPLOAD_LOSSY_LIMIT`]).
const TCP_LIMIT: Duration = Duration::from_secs(240);

/// A listener on the host side's loopback; returns its port.
fn tcp_listener(g: &TapGuest, lo: IpAddr) -> (u16, TcpListener) {
    let l = g
        .in_host(move || TcpListener::bind(SocketAddr::new(lo, 0)).expect("listen"))
        .unwrap();
    l.set_nonblocking(true).unwrap();
    (l.local_addr().unwrap().port(), l)
}

fn accept_within(l: &TcpListener, limit: Duration) -> Option<TcpStream> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                return Some(s);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    None
}

/// Which way the TCP client reaches the host's listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TcpPath {
    /// From the guest namespace through the tap and the engine (the test).
    ThroughEngine,
    /// From the host namespace straight to its loopback: the same client,
    /// server and checks without the engine, proving the test's own
    /// plumbing (so a failure of the real test is the engine's).
    PlainLoopback,
}

/// Runs the TCP client `args` over `path`; on failure, the panic message
/// includes the engine's counters.
/// Runs socat as the guest's (or the plain-loopback) client. Returns the
/// guest, still running: socat exits as soon as its last bytes are in its
/// kernel's send buffer (megabytes), so the engine must keep running until
/// the host side has seen the end of the stream.
fn run_tcp_client(g: TapGuest, path: TcpPath, args: &[String], what: &str) -> (Duration, TapGuest) {
    let t = Instant::now();
    let out = match path {
        TcpPath::ThroughEngine => g.run_in_ns("socat", args, TCP_LIMIT),
        TcpPath::PlainLoopback => g.host_ns().unwrap().run("socat", args, TCP_LIMIT),
    }
    .unwrap_or_else(|e| {
        // A timeout here is a transfer that stalled past the limit.
        let relay = g.relay_stats();
        panic!(
            "{what} ({path:?}) after {:?}: {e}; relay: {relay:?}",
            t.elapsed()
        )
    });
    let elapsed = t.elapsed();
    if !out.status.success() {
        let drops = g
            .finish()
            .map_or_else(|e| e.to_string(), |r| r.drop_summary());
        panic!("{what} ({path:?}):\n{}\nengine drops: {drops}", text(&out));
    }
    (elapsed, g)
}

fn tcp_target(g: &TapGuest, path: TcpPath, lo: IpAddr, target: &str, port: u16) -> String {
    match path {
        TcpPath::ThroughEngine => format!(
            "{}:{port},connect-timeout=10",
            target.replace("TAP", g.tap_name())
        ),
        TcpPath::PlainLoopback => match lo {
            IpAddr::V4(a) => format!("TCP4:{a}:{port},connect-timeout=10"),
            IpAddr::V6(a) => format!("TCP6:[{a}]:{port},connect-timeout=10"),
        },
    }
}

/// What a TCP bulk test moves and over which link.
#[derive(Clone, Debug)]
struct TcpRun {
    /// Bytes to transfer.
    bytes: u64,
    /// Loss on the guest link (`None`: the engine owns the tap).
    lossy: Option<LossyLink>,
    /// Our engine, or passt for comparison.
    peer: Peer,
}

impl Default for TcpRun {
    fn default() -> Self {
        TcpRun {
            bytes: TCP_BYTES,
            lossy: None,
            peer: Peer::Engine,
        }
    }
}

fn tcp_guest_to_host(lo: IpAddr, target: &str, test: &str, path: TcpPath) {
    tcp_guest_to_host_with(lo, target, test, path, TcpRun::default());
}

/// Uploads `run.bytes` from the guest to a host listener, byte-exact.
/// Returns the time from starting the client to the sink's EOF and the
/// engine's report, or `None` if skipped.
fn tcp_guest_to_host_with(
    lo: IpAddr,
    target: &str,
    test: &str,
    path: TcpPath,
    run: TcpRun,
) -> Option<(Duration, EngineReport)> {
    if skipped(test, &[], &["socat"]) {
        return None;
    }
    let bytes = run.bytes;
    let g = static_guest_with(HostSide::default(), run.lossy, run.peer.clone());
    let seed = 0x6a09_e667;
    let file = g.tmp_dir().join("upload.bin");
    write_pattern_file(&file, seed, bytes).unwrap();
    let (port, listener) = tcp_listener(&g, lo);
    let target = tcp_target(&g, path, lo, target, port);
    let sink = std::thread::spawn(move || {
        let mut s = accept_within(&listener, Duration::from_secs(20))?;
        let mut c = PatternChecker::new(seed);
        let mut buf = vec![0u8; 256 * 1024];
        let end = Instant::now() + TCP_LIMIT;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            // Over a lossy link a sender's retransmission timer backs off
            // to many seconds: wait as long as the test's limit allows.
            let wait = if run.lossy.is_some() {
                left.max(Duration::from_millis(1))
            } else {
                Duration::from_secs(10)
            };
            s.set_read_timeout(Some(wait)).unwrap();
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => c.feed(&buf[..n]),
                Err(e)
                    if run.lossy.is_some()
                        && matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    break; // the limit passed: the length check reports it
                }
                Err(e) => panic!("read after {} bytes: {e}", c.checked),
            }
        }
        Some(c)
    });
    let args = [
        "-u".to_string(),
        format!("OPEN:{},rdonly", file.display()),
        target,
    ];
    let t = Instant::now();
    let (_, g) = run_tcp_client(g, path, &args, "socat upload");
    // The engine runs until the sink saw EOF (or gave up): the guest's
    // kernel may still hold megabytes that socat handed it.
    let c = sink
        .join()
        .expect("sink thread")
        .expect("the host never saw a connection");
    let elapsed = t.elapsed();
    let report = g.finish().expect("engine report");
    assert_eq!(
        c.first_mismatch,
        None,
        "data differs; engine: {}",
        report.drop_summary()
    );
    assert_eq!(
        c.checked,
        bytes,
        "length; engine: {}",
        report.drop_summary()
    );
    eprintln!(
        "TIMING {test} ({path:?}): {} MiB in {elapsed:?} ({:.0} MiB/s)",
        bytes >> 20,
        (bytes >> 20) as f64 / elapsed.as_secs_f64()
    );
    Some((elapsed, report))
}

fn tcp_host_to_guest(lo: IpAddr, target: &str, test: &str, path: TcpPath) {
    tcp_host_to_guest_with(lo, target, test, path, TcpRun::default());
}

/// Downloads `run.bytes` from a host listener to the guest, byte-exact.
/// Returns the client's run time (connect to the file's EOF) and the
/// engine's report, or `None` if skipped.
fn tcp_host_to_guest_with(
    lo: IpAddr,
    target: &str,
    test: &str,
    path: TcpPath,
    run: TcpRun,
) -> Option<(Duration, EngineReport)> {
    if skipped(test, &[], &["socat"]) {
        return None;
    }
    let bytes = run.bytes;
    let lossy = run.lossy.is_some();
    let g = static_guest_with(HostSide::default(), run.lossy, run.peer.clone());
    let seed = 0xbb67_ae85;
    let dir = tap_harness::TempDir::new().unwrap();
    let file = dir.path().join("download.bin");
    let (port, listener) = tcp_listener(&g, lo);
    let target = tcp_target(&g, path, lo, target, port);
    let source = std::thread::spawn(move || {
        let Some(mut s) = accept_within(&listener, Duration::from_secs(20)) else {
            return false;
        };
        s.set_write_timeout(Some(if lossy {
            TCP_LIMIT
        } else {
            Duration::from_secs(10)
        }))
        .unwrap();
        let mut p = PatternStream::new(seed);
        let mut buf = vec![0u8; 256 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = (buf.len() as u64).min(left) as usize;
            p.fill(&mut buf[..n]);
            if s.write_all(&buf[..n]).is_err() {
                return false;
            }
            left -= n as u64;
        }
        let _ = s.shutdown(Shutdown::Write);
        true
    });
    let args = [
        "-u".to_string(),
        target,
        format!("CREATE:{}", file.display()),
    ];
    let (elapsed, g) = run_tcp_client(g, path, &args, "socat download");
    let report = g.finish().expect("engine report");
    assert!(
        source.join().expect("source thread"),
        "the host could not send everything; engine: {}",
        report.drop_summary()
    );
    let (len, mismatch) = check_pattern_file(&file, seed).unwrap();
    assert_eq!(
        mismatch,
        None,
        "data differs; engine: {}",
        report.drop_summary()
    );
    assert_eq!(len, bytes, "length; engine: {}", report.drop_summary());
    eprintln!(
        "TIMING {test} ({path:?}): {} MiB in {elapsed:?} ({:.0} MiB/s)",
        bytes >> 20,
        (bytes >> 20) as f64 / elapsed.as_secs_f64()
    );
    Some((elapsed, report))
}

/// The TCP tests' own client, server and byte-exact checks, over plain
/// loopback in the host namespace (no engine): runs now, so that the
/// ignored tests below fail only for the engine's sake.
#[test]
fn tcp_test_plumbing_over_plain_loopback() {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let test = "tcp_test_plumbing_over_plain_loopback";
    tcp_guest_to_host(lo, "", test, TcpPath::PlainLoopback);
    tcp_host_to_guest(lo, "", test, TcpPath::PlainLoopback);
}

#[test]
fn tcp_64mib_guest_to_host_v4() {
    tcp_guest_to_host(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "TCP4:192.0.2.1",
        "tcp_64mib_guest_to_host_v4",
        TcpPath::ThroughEngine,
    );
}

#[test]
fn tcp_64mib_host_to_guest_v4() {
    tcp_host_to_guest(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "TCP4:192.0.2.1",
        "tcp_64mib_host_to_guest_v4",
        TcpPath::ThroughEngine,
    );
}

#[test]
fn tcp_64mib_guest_to_host_v6() {
    tcp_guest_to_host(
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        "TCP6:[fe80::1%TAP]",
        "tcp_64mib_guest_to_host_v6",
        TcpPath::ThroughEngine,
    );
}

#[test]
fn tcp_64mib_host_to_guest_v6() {
    tcp_host_to_guest(
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        "TCP6:[fe80::1%TAP]",
        "tcp_64mib_host_to_guest_v6",
        TcpPath::ThroughEngine,
    );
}

// ---------------------------------------------------------------- TCP over a lossy link

/// Bytes moved by the lossy-link tests.
const LOSSY_BYTES: u64 = 16 << 20;
/// Loss each way on the lossy link.
const LOSSY_RATE: f64 = 0.02;
/// Longest acceptable lossy download (the engine is the sender): its loss
/// recovery must never stall (an RTO backing off to seconds, a hole never
/// filled). Far above what it takes (well under a second).
const LOSSY_LIMIT: Duration = Duration::from_secs(60);
/// Longest acceptable lossy upload (the guest's Linux is the sender). Known
/// limitation, measured: 2 s to about 115 s (before the engine stopped
/// sending duplicate-ACK bursts to NewReno guests: 13 s to over 240 s). We negotiate neither SACK nor
/// timestamps (as upstream) and keep no out-of-order data, so after a loss
/// Linux (NewReno) resends the rest of its window one segment per round
/// trip; a lost retransmission costs a timeout, and without timestamps no
/// ACK of retransmitted data gives Linux an RTT sample (Karn), so its
/// backoff (0.2, 0.4 ... 27 s) is never reset during recovery. Debian's
/// passt 2023 shows the same backoff and also resets the connection. This
/// bound checks integrity and catches a hang, not the speed.
const UPLOAD_LOSSY_LIMIT: Duration = Duration::from_secs(240);
/// Overrides the relay's seed (to reproduce or vary a run).
const LOSS_SEED_ENV: &str = "TAPHARNESS_LOSS_SEED";

fn lossy_link(default_seed: u64) -> LossyLink {
    let seed = std::env::var(LOSS_SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_seed);
    LossyLink::symmetric(seed, LOSSY_RATE)
}

/// Checks what a lossy run must show: loss happened both ways (so the run
/// tested recovery at all), the relay ran to the end, no stall.
///
/// `both_ways`: require drops in each direction (passt sends few ACKs: a
/// run may see none of its frames dropped).
fn assert_lossy_run(
    test: &str,
    link: LossyLink,
    result: Option<(Duration, EngineReport)>,
    both_ways: bool,
    limit: Duration,
) {
    let Some((elapsed, report)) = result else {
        return;
    };
    let (stats, end) = report.relay.clone().expect("the lossy relay's report");
    eprintln!(
        "TIMING {test}: {:.0}% loss each way (seed {}) in {elapsed:?}; \
         relay to engine {} relayed / {} dropped, to guest {} relayed / {} dropped \
         ({} refused by the tap); relay end {end:?}; engine drops: {}",
        LOSSY_RATE * 100.0,
        link.seed,
        stats.to_engine_relayed,
        stats.to_engine_dropped,
        stats.to_guest_relayed,
        stats.to_guest_dropped,
        stats.to_guest_blocked,
        report.drop_summary()
    );
    if both_ways {
        assert!(
            stats.to_engine_dropped > 0 && stats.to_guest_dropped > 0,
            "no loss in one direction, recovery untested: {stats:?}"
        );
    } else {
        assert!(
            stats.to_engine_dropped + stats.to_guest_dropped > 0,
            "no loss at all, recovery untested: {stats:?}"
        );
    }
    assert!(
        matches!(
            end,
            tap_harness::RelayEnd::EngineClosed | tap_harness::RelayEnd::Stopped
        ),
        "relay ended badly: {end:?}"
    );
    assert!(
        elapsed < limit,
        "{test} took {elapsed:?} (limit {limit:?}): a stall in loss recovery"
    );
}

/// One transfer through the lossy relay with our engine, checked by
/// [`assert_lossy_run`] (drops both ways, byte-exact, within `limit`).
fn lossy_transfer(test: &str, upload: bool, seed: u64, bytes: u64, limit: Duration) {
    let link = lossy_link(seed);
    let run = TcpRun {
        bytes,
        lossy: Some(link),
        peer: Peer::Engine,
    };
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let r = if upload {
        tcp_guest_to_host_with(lo, "TCP4:192.0.2.1", test, TcpPath::ThroughEngine, run)
    } else {
        tcp_host_to_guest_with(lo, "TCP4:192.0.2.1", test, TcpPath::ThroughEngine, run)
    };
    assert_lossy_run(test, link, r, true, limit);
}

/// Known limitation (see [`UPLOAD_LOSSY_LIMIT`] and docs/testing.md): this
/// took 2 s to over 240 s, so it is not run by default; the 4 MiB upload
/// below is.
#[test]
#[ignore = "known limitation: Linux's RTO backoff without SACK or timestamps makes this take up to minutes (docs/testing.md); run with --ignored"]
fn tcp_16mib_guest_to_host_v4_with_2pct_loss() {
    let test = "tcp_16mib_guest_to_host_v4_with_2pct_loss";
    lossy_transfer(test, true, 0x1f83_d9ab, LOSSY_BYTES, UPLOAD_LOSSY_LIMIT);
}

/// The Linux guest uploads 4 MiB through 2% loss each way, byte-exact:
/// integrity of guest-to-host recovery, run by default (the 16 MiB upload
/// above shows the speed limitation). Seed 35 drops frames 25, 26 and 33
/// towards the engine and 8 and 19 towards the guest, so both directions
/// lose frames in every run, however the timing goes (a run has at least
/// 80 frames each way).
#[test]
fn tcp_4mib_guest_to_host_v4_with_2pct_loss() {
    let test = "tcp_4mib_guest_to_host_v4_with_2pct_loss";
    lossy_transfer(test, true, 35, 4 << 20, UPLOAD_LOSSY_LIMIT);
}

#[test]
fn tcp_16mib_host_to_guest_v4_with_2pct_loss() {
    let test = "tcp_16mib_host_to_guest_v4_with_2pct_loss";
    lossy_transfer(test, false, 0x5be0_cd19, LOSSY_BYTES, LOSSY_LIMIT);
}

/// The relay without loss changes nothing: a transfer through it is
/// byte-exact and every frame is relayed.
#[test]
fn tcp_through_lossless_relay() {
    let test = "tcp_through_lossless_relay";
    let Some((elapsed, report)) = tcp_guest_to_host_with(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "TCP4:192.0.2.1",
        test,
        TcpPath::ThroughEngine,
        TcpRun {
            bytes: LOSSY_BYTES,
            lossy: Some(LossyLink::symmetric(1, 0.0)),
            peer: Peer::Engine,
        },
    ) else {
        return;
    };
    let (stats, end) = report.relay.clone().expect("relay report");
    eprintln!("TIMING {test}: {elapsed:?}, {stats:?}, {end:?}");
    assert_eq!((stats.to_engine_dropped, stats.to_guest_dropped), (0, 0));
    // The engine may stop before reading the last frames relayed to it; the
    // relay reads the engine's stream to its end.
    assert!(stats.to_engine_relayed >= report.stats.frames_from_guest);
    assert!(stats.to_engine_relayed > 0);
    assert_eq!(stats.to_guest_relayed, report.stats.frames_to_guest);
}

/// Debian's passt, for the comparisons below.
const PASST_BIN: &str = "/usr/bin/passt";

/// The lossy tests with passt instead of our engine, under the same relay
/// and seeds: a yardstick, not a check of ours (ignored by default; run
/// with `--ignored`). Skipped without `/usr/bin/passt`.
fn passt_lossy(test: &str, upload: bool, seed: u64) {
    if !Path::new(PASST_BIN).exists() {
        print_skip(test, "/usr/bin/passt is not installed");
        return;
    }
    let link = lossy_link(seed);
    let run = TcpRun {
        bytes: LOSSY_BYTES,
        lossy: Some(link),
        peer: Peer::Passt(PASST_BIN.into()),
    };
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let r = if upload {
        tcp_guest_to_host_with(lo, "TCP4:192.0.2.1", test, TcpPath::ThroughEngine, run)
    } else {
        tcp_host_to_guest_with(lo, "TCP4:192.0.2.1", test, TcpPath::ThroughEngine, run)
    };
    let limit = if upload {
        UPLOAD_LOSSY_LIMIT
    } else {
        LOSSY_LIMIT
    };
    assert_lossy_run(test, link, r, false, limit);
}

#[test]
#[ignore = "comparison with Debian's passt; run with --ignored"]
fn passt_tcp_16mib_guest_to_host_v4_with_2pct_loss() {
    passt_lossy(
        "passt_tcp_16mib_guest_to_host_v4_with_2pct_loss",
        true,
        0x1f83_d9ab,
    );
}

#[test]
#[ignore = "comparison with Debian's passt; run with --ignored"]
fn passt_tcp_16mib_host_to_guest_v4_with_2pct_loss() {
    passt_lossy(
        "passt_tcp_16mib_host_to_guest_v4_with_2pct_loss",
        false,
        0x5be0_cd19,
    );
}

// ---------------------------------------------------------------- the harness itself

#[test]
fn harness_removes_its_namespaces() {
    if skipped("harness_removes_its_namespaces", &[], &[]) {
        return;
    }
    let g = TapGuest::start(default_config()).expect("start guest");
    let guest = g.guest_ns().path();
    let host = g.host_ns().expect("private host namespace").path();
    assert!(guest.exists() && host.exists());
    // The tap is in the guest namespace, not in ours.
    let links = stdout(
        &g.guest_ns()
            .ip(&["link", "show", "dev", g.tap_name()])
            .unwrap(),
    );
    assert!(
        links.contains("state UP") || links.contains("LOWER_UP"),
        "{links}"
    );
    let report = g.finish().expect("report");
    assert_eq!(
        report.exit,
        passt_engine::runtime::event_loop::ExitReason::Stopped
    );
    assert!(!guest.exists(), "{guest:?} left behind");
    assert!(!host.exists(), "{host:?} left behind");
}

// ---------------------------------------------------------------- large packets

/// The largest unfragmented datagram each way through a 65520-byte MTU
/// tap: one 65534-byte frame each way.
fn udp_large(lo: IpAddr, test: &str) {
    if skipped(test, &[], &[]) {
        return;
    }
    let g = static_guest(HostSide::default());
    let (port, server) = udp_echo_server(&g, lo, 1);
    let tap = g.tap_name().to_string();
    // `ip -o link` lines start with "INDEX: NAME:".
    let link = stdout(
        &g.guest_ns()
            .ip(&["-o", "link", "show", "dev", &tap])
            .unwrap(),
    );
    let ifindex: u32 = link
        .split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ifindex in {link:?}"));
    let target = match lo {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), port),
        IpAddr::V6(_) => SocketAddr::V6(std::net::SocketAddrV6::new(
            "fe80::1".parse().unwrap(),
            port,
            0,
            ifindex,
        )),
    };
    // The largest datagram that fits one MTU-sized packet (65520 - IP
    // header - 8): anything larger is fragmented by the guest kernel, and
    // the engine does not reassemble (DropReason::Ipv4Fragment/Ipv6Fragment).
    let mtu = usize::from(g.config().mtu);
    let len = if lo.is_ipv4() { mtu - 28 } else { mtu - 48 };
    let mut payload = vec![0u8; len];
    PatternStream::new(5).fill(&mut payload);
    let sent = payload.clone();
    let got = g
        .guest_ns()
        .in_ns(move || {
            let bind: SocketAddr = if target.is_ipv4() {
                "0.0.0.0:0".parse().unwrap()
            } else {
                "[::]:0".parse().unwrap()
            };
            let s = UdpSocket::bind(bind).expect("guest bind");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.connect(target).expect("connect");
            s.send(&sent).expect("send");
            let mut buf = vec![0u8; 65_536];
            s.recv(&mut buf).map(|n| buf[..n].to_vec())
        })
        .unwrap();
    let seen = server.join().expect("echo server");
    assert_eq!(seen.len(), 1, "host got {} datagrams", seen.len());
    assert_eq!(seen[0].1.len(), len, "host side length");
    assert!(seen[0].1 == payload, "host side bytes differ");
    let got = got.unwrap_or_else(|e| {
        let drops = g.finish().map(|r| r.drop_summary());
        panic!("no echo of the {len}-byte datagram: {e}; engine: {drops:?}")
    });
    assert_eq!(got.len(), len);
    assert!(got == payload, "echoed bytes differ");
}

#[test]
fn udp_largest_datagram_v4() {
    udp_large(IpAddr::V4(Ipv4Addr::LOCALHOST), "udp_largest_datagram_v4");
}

#[test]
fn udp_largest_datagram_v6() {
    udp_large(IpAddr::V6(Ipv6Addr::LOCALHOST), "udp_largest_datagram_v6");
}

#[test]
fn ping_large_payload_v4() {
    if skipped("ping_large_payload_v4", &["ping"], &[]) {
        return;
    }
    let g = static_guest(HostSide::default());
    let out = g
        .run_in_ns(
            "busybox",
            &["ping", "-c", "2", "-W", "3", "-s", "60000", "192.0.2.1"],
            Duration::from_secs(15),
        )
        .unwrap();
    assert!(out.status.success(), "ping -s 60000:\n{}", text(&out));
    assert!(text(&out).contains("2 packets received"), "{}", text(&out));
}
