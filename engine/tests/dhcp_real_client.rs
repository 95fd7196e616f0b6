//! Round trip with a real DHCP client: busybox udhcpc configures itself from
//! the DHCPv4 server in this crate.
//!
//! The test creates two network namespaces joined by a veth pair, runs
//! `busybox udhcpc` in one, and in the other re-executes this test binary
//! as the server ([`server_child`], driven through an ordinary UDP socket on
//! port 67: the kernel adds the UDP/IP/Ethernet headers the engine's
//! dispatcher would). udhcpc's script writes what it was told to a file,
//! which the test checks; then a renewal (SIGUSR1) must be acknowledged by
//! unicast. Namespaces and processes are removed at the end.
//!
//! Needs root, `ip` and `busybox` with udhcpc; without them the test says
//! so on stderr and passes without checking anything.

use passt_engine::dhcp::{self, DhcpOutcome};
use passt_engine::dhcpv6::{self, Dhcpv6Outcome};
use passt_engine::{Config, MacAddr};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x15]);
const SERVER_ENV: &str = "PASST_DHCP_REAL_CLIENT_SERVER";

fn server_config() -> Config {
    let mut c = Config::example();
    c.hostname = Some("guest".into());
    c.mtu = 1500;
    c
}

/// The server side, run by [`udhcpc_round_trip`] inside the server
/// namespace; ignored in normal runs.
#[test]
#[ignore = "helper process for the round-trip tests"]
fn server_child() {
    match std::env::var(SERVER_ENV).as_deref() {
        Ok("v4") => serve_v4(),
        Ok("v6") => serve_v6(),
        _ => {}
    }
}

fn serve_v4() {
    let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, dhcp::SERVER_PORT))
        .expect("bind port 67");
    sock.set_broadcast(true).expect("SO_BROADCAST");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let config = server_config();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 1500];
    let mut out = [0u8; 1500];
    while Instant::now() < deadline {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let outcome = dhcp::handle(&config, CLIENT_MAC, &buf[..n], &mut out);
        eprintln!("server: {n} bytes from {from}: {outcome:?}");
        if let DhcpOutcome::Reply(r) = outcome {
            let to = SocketAddrV4::new(r.dst_ip, dhcp::CLIENT_PORT);
            sock.send_to(&out[..r.len], to).expect("send reply");
        }
    }
}

/// Lease for the DHCPv6 round trip: short, so that dhclient renews (at
/// T1 = 2 s) while the test watches.
const V6_LEASE: Duration = Duration::from_secs(4);

fn serve_v6() {
    let ifindex: u32 = std::fs::read_to_string("/sys/class/net/srv0/ifindex")
        .expect("srv0 ifindex")
        .trim()
        .parse()
        .expect("ifindex");
    let sock = UdpSocket::bind(SocketAddrV6::new(
        Ipv6Addr::UNSPECIFIED,
        dhcpv6::SERVER_PORT,
        0,
        0,
    ))
    .expect("bind port 547");
    // All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1).
    let group: Ipv6Addr = "ff02::1:2".parse().expect("literal");
    sock.join_multicast_v6(&group, ifindex)
        .expect("join ff02::1:2");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut config = server_config();
    config.dhcp_lease_time = V6_LEASE;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 1500];
    let mut out = [0u8; 1500];
    while Instant::now() < deadline {
        let Ok((n, std::net::SocketAddr::V6(from))) = sock.recv_from(&mut buf) else {
            continue;
        };
        let outcome = dhcpv6::handle(&config, CLIENT_MAC, *from.ip(), &buf[..n], &mut out);
        eprintln!("server: {n} bytes from {from}: {outcome:?}");
        if let Dhcpv6Outcome::Reply(r) = outcome {
            let to = SocketAddrV6::new(r.dst_ip, dhcpv6::CLIENT_PORT, 0, ifindex);
            sock.send_to(&out[..r.len], to).expect("send reply");
        }
    }
}

fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(args: &[&str]) {
    let status = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(status.success(), "{args:?} failed");
}

/// Deletes the namespaces and kills the processes it holds, whatever happens.
struct Cleanup {
    namespaces: Vec<String>,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_for(path: &Path, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {} within {timeout:?}; it holds:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn value<'a>(log: &'a str, event: &str, key: &str) -> &'a str {
    let line = log
        .lines()
        .find(|l| l.starts_with(&format!("{event} ")))
        .unwrap_or_else(|| panic!("no {event} line in:\n{log}"));
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Two namespaces joined by a veth pair (cli0 with the guest's MAC, srv0
/// with ours), a scratch directory, and the server child running in the
/// server namespace.
fn setup(tag: &str, server_mode: &str) -> (Cleanup, String) {
    let id = std::process::id();
    let client_ns = format!("dhcprt-{tag}c-{id}");
    let server_ns = format!("dhcprt-{tag}s-{id}");
    let dir = std::env::temp_dir().join(format!("dhcprt-{tag}-{id}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut cleanup = Cleanup {
        namespaces: vec![client_ns.clone(), server_ns.clone()],
        children: Vec::new(),
        dir,
    };
    run(&["ip", "netns", "add", &client_ns]);
    run(&["ip", "netns", "add", &server_ns]);
    for ns in [&client_ns, &server_ns] {
        // No duplicate address detection: link-local addresses are usable
        // at once (DHCPv6 needs them).
        run(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.default.accept_dad=0",
        ]);
    }
    run(&[
        "ip",
        "-n",
        &client_ns,
        "link",
        "add",
        "cli0",
        "address",
        "02:00:00:00:00:15",
        "type",
        "veth",
        "peer",
        "name",
        "srv0",
        "address",
        "9a:55:9a:55:9a:55",
        "netns",
        &server_ns,
    ]);
    run(&["ip", "-n", &client_ns, "link", "set", "cli0", "up"]);
    run(&["ip", "-n", &server_ns, "link", "set", "srv0", "up"]);
    run(&[
        "ip",
        "-n",
        &server_ns,
        "addr",
        "add",
        "192.0.2.1/24",
        "dev",
        "srv0",
    ]);
    // Limited broadcast (255.255.255.255) needs a route to leave by.
    run(&[
        "ip", "-n", &server_ns, "route", "add", "default", "dev", "srv0",
    ]);

    let exe = std::env::current_exe().expect("test binary");
    let server = Command::new("ip")
        .args(["netns", "exec", &server_ns])
        .arg(&exe)
        .args(["--ignored", "--exact", "server_child", "--nocapture"])
        .env(SERVER_ENV, server_mode)
        .stdout(Stdio::null())
        .spawn()
        .expect("server process");
    cleanup.children.push(server);
    std::thread::sleep(Duration::from_millis(500));
    (cleanup, client_ns)
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).expect("script");
    run(&["chmod", "+x", path.to_str().expect("utf-8 path")]);
}

#[test]
fn udhcpc_round_trip() {
    // Never run `busybox udhcpc` to probe for it: without arguments it
    // would start a client on the host's eth0.
    let has_udhcpc = Command::new("busybox")
        .arg("--list")
        .output()
        .is_ok_and(|o| o.stdout.split(|b| *b == b'\n').any(|l| l == b"udhcpc"));
    if !is_root() || !have("ip", "-V") || !has_udhcpc {
        eprintln!("skipped: needs root, iproute2 and busybox udhcpc");
        return;
    }
    let (mut cleanup, client_ns) = setup("4", "v4");
    let log = cleanup.dir.join("events");
    let script = cleanup.dir.join("script");
    write_script(
        &script,
        &format!(
            "case \"$1\" in\n\
             bound|renew)\n\
             \tip addr replace \"$ip/24\" dev \"$interface\"\n\
             \techo \"$1 ip=$ip subnet=$subnet router=$router dns=$dns \
             domain=$domain search=$search lease=$lease mtu=$mtu \
             hostname=$hostname serverid=$serverid\" >> {log}\n;;\n\
             esac\n",
            log = log.display()
        ),
    );

    let client = Command::new("ip")
        .args([
            "netns", "exec", &client_ns, "busybox", "udhcpc", "-f", "-i", "cli0",
        ])
        .args(["-t", "5", "-T", "1", "-s"])
        .arg(&script)
        .stdout(Stdio::null())
        .spawn()
        .expect("udhcpc");
    let client_pid = client.id();
    cleanup.children.push(client);

    let text = wait_for(&log, "bound ", Duration::from_secs(15));
    assert_eq!(value(&text, "bound", "ip"), "192.0.2.15");
    assert_eq!(value(&text, "bound", "subnet"), "255.255.255.0");
    assert_eq!(value(&text, "bound", "router"), "192.0.2.1");
    assert_eq!(value(&text, "bound", "dns"), "192.0.2.53");
    assert_eq!(value(&text, "bound", "domain"), "example.test");
    assert_eq!(value(&text, "bound", "search"), "example.test");
    assert_eq!(value(&text, "bound", "lease"), "3600");
    assert_eq!(value(&text, "bound", "mtu"), "1500");
    assert_eq!(value(&text, "bound", "hostname"), "guest");
    assert_eq!(value(&text, "bound", "serverid"), "192.0.2.1");

    // Renewal: udhcpc unicasts a REQUEST with ciaddr from 192.0.2.15; our
    // unicast ACK must reach it and re-run the script with "renew".
    run(&["kill", "-USR1", &client_pid.to_string()]);
    let text = wait_for(&log, "renew ", Duration::from_secs(10));
    assert_eq!(value(&text, "renew", "ip"), "192.0.2.15");
    assert_eq!(value(&text, "renew", "lease"), "3600");
    drop(cleanup);
}

/// ISC dhclient -6: SOLICIT, ADVERTISE, REQUEST, REPLY, then a RENEW at
/// T1 (2 s with the short lease the server child uses).
#[test]
fn dhclient6_round_trip() {
    if !is_root() || !have("ip", "-V") || !have("dhclient", "--version") {
        eprintln!("skipped: needs root, iproute2 and ISC dhclient");
        return;
    }
    let (mut cleanup, client_ns) = setup("6", "v6");
    let log = cleanup.dir.join("events");
    let script = cleanup.dir.join("script");
    // dhclient-script(8) variables; nothing is configured.
    write_script(
        &script,
        &format!(
            "echo \"$reason addr=$new_ip6_address/$new_ip6_prefixlen \
             preferred=$new_preferred_life valid=$new_max_life \
             dns=$new_dhcp6_name_servers search=$new_dhcp6_domain_search \
             fqdn=$new_dhcp6_fqdn_fqdn \
             server=$new_dhcp6_server_id\" >> {log}\n",
            log = log.display()
        ),
    );
    let dir = cleanup.dir.clone();
    let client = Command::new("ip")
        .args([
            "netns", "exec", &client_ns, "dhclient", "-6", "-d", "-1", "-sf",
        ])
        .arg(&script)
        .arg("-lf")
        .arg(dir.join("leases"))
        .arg("-pf")
        .arg(dir.join("pid"))
        .arg("cli0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dhclient");
    cleanup.children.push(client);

    let text = wait_for(&log, "BOUND6 ", Duration::from_secs(15));
    assert_eq!(value(&text, "BOUND6", "addr"), "2001:db8::15/128");
    assert_eq!(value(&text, "BOUND6", "preferred"), "4");
    assert_eq!(value(&text, "BOUND6", "valid"), "4");
    assert_eq!(value(&text, "BOUND6", "dns"), "2001:db8::53");
    assert_eq!(value(&text, "BOUND6", "search"), "example.test.");
    assert_eq!(
        value(&text, "BOUND6", "server"),
        "0:3:0:1:9a:55:9a:55:9a:55"
    );
    // Renewal at T1.
    let text = wait_for(&log, "RENEW6 ", Duration::from_secs(10));
    assert_eq!(value(&text, "RENEW6", "addr"), "2001:db8::15/128");
    drop(cleanup);
}
