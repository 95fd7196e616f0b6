//! The `pasta` binary on the real kernel: each test runs pasta in a
//! host-shaped namespace of its own (`tap_harness::pasta::PastaHost`:
//! `ext0` with 198.51.100.2/24 and 2001:db8::2/64, default routes, a
//! resolver on its loopback) and the real Linux stack on the other side,
//! in a namespace pasta creates around a command, one the test created
//! (`ip netns add`, `--netns`), one a process holds (`pasta PID`), or one
//! prepared as rootless Podman and rootlesskit prepare it.
//!
//! The binary under test is this workspace's `pasta` by default and
//! Debian's with `PASTA_UNDER_TEST=debian` (docs/testing.md lists what
//! differs). Needs root, `/dev/net/tun`, `ip`, `nsenter`, `unshare`,
//! `setpriv`, busybox (`ping`) and socat; without root or the tools each
//! test prints `SKIP <name>: <reason>` and returns. A missing pasta binary
//! is a failure. Timings are printed as `TIMING ...` lines
//! (`cargo test -p tap-harness --test pasta -- --nocapture`).
#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use passt_engine::runtime::NetNs;
use serde_json::Value;
use tap_harness::pasta::clients::{
    self, PODMAN5_DNS_FORWARD, PODMAN5_HOST_ADDR, PortMapping, Rootlesskit,
};
use tap_harness::pasta::traffic::{
    Delivered, DnsResponder, UdpEcho, accept_within, bind_udp, connect_tcp, connect_tcp_until,
    echo_exchange, listen_tcp, receive_pattern, resolve, send_pattern, spawn_tcp_echo_once,
    with_deadline,
};
use tap_harness::pasta::{
    HOST_ADDR4, HOST_ADDR6, HOST_GW4, HOST_GW6, HOST_IF, HOST_PREFIX4, HOST_PREFIX6, HOST_RESOLVER,
    Launch, PastaBinary, PastaHost, REMOTE_ADDR4, UserNs, make_tun_world_accessible, run_in_netns,
    strings,
};
use tap_harness::{Background, Netns, busybox_has, print_skip, skip_reason, tool_available};

/// 64 MiB each way, as issue #13 asks.
const BULK: u64 = 64 * 1024 * 1024;
/// The whole bulk transfer, connection included.
const BULK_LIMIT: Duration = Duration::from_secs(120);
/// pasta's start-up until the namespace is configured.
const READY_LIMIT: Duration = Duration::from_secs(10);
/// pasta noticing that its namespace or process went away.
const EXIT_LIMIT: Duration = Duration::from_secs(5);

// ------------------------------------------------------------- set-up

/// The binary under test and a fresh host for it, or `None` (after a SKIP
/// line) when the machine cannot run the test.
fn setup(test: &str) -> Option<(&'static PastaBinary, PastaHost)> {
    let reason = skip_reason().or_else(|| {
        for (tool, args) in [
            ("nsenter", ["--version"]),
            ("unshare", ["--version"]),
            ("setpriv", ["--version"]),
            ("socat", ["-V"]),
        ] {
            if !tool_available(tool, &args) {
                return Some(format!("`{tool}` is not installed"));
            }
        }
        (!busybox_has("ping")).then(|| "busybox with `ping` is not installed".to_string())
    });
    if let Some(r) = reason {
        print_skip(test, &r);
        return None;
    }
    let bin = PastaBinary::under_test().expect("the pasta binary under test");
    eprintln!("{}", bin.describe());
    let host = PastaHost::create().expect("create the host namespace");
    Some((bin, host))
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Root runs get `--runas 0` (see `PastaHost::root_args`), then `args`.
fn root_args(args: &[&str]) -> Vec<String> {
    let mut a = PastaHost::root_args(&Launch::root());
    a.extend(strings(args));
    a
}

fn sock(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

// ------------------------------------------- what --config-net must do

/// What the namespace should look like after `--config-net`.
struct Expect {
    ifname: String,
    addr4: (Ipv4Addr, u8),
    addr6: Option<(Ipv6Addr, u8)>,
    mtu: u64,
    gw4: Ipv4Addr,
    gw6: Option<Ipv6Addr>,
}

impl Expect {
    /// A copy of the host's: its interface name, addresses, gateways, and
    /// pasta's default MTU.
    fn host_copy() -> Expect {
        Expect {
            ifname: HOST_IF.into(),
            addr4: (HOST_ADDR4, HOST_PREFIX4),
            addr6: Some((HOST_ADDR6, HOST_PREFIX6)),
            mtu: 65520,
            gw4: HOST_GW4,
            gw6: Some(HOST_GW6),
        }
    }
}

/// `ip -j addr`, `ip -j -4 route`, `ip -j -6 route` of a namespace.
struct NsConfig {
    addrs: Value,
    routes4: Value,
    routes6: Value,
}

fn parse_json(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or(Value::Null)
}

/// The script a command run by pasta uses to report the same.
const REPORT_SCRIPT: &str =
    "ip -j addr show; echo '=='; ip -j -4 route show; echo '=='; ip -j -6 route show";

impl NsConfig {
    fn of_netns(path: &Path) -> Result<NsConfig, String> {
        let get = |args: &[&str]| -> Result<Value, String> {
            let out = run_in_netns(path, "ip", args, Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(text(&out));
            }
            Ok(parse_json(&String::from_utf8_lossy(&out.stdout)))
        };
        Ok(NsConfig {
            addrs: get(&["-j", "addr", "show"])?,
            routes4: get(&["-j", "-4", "route", "show"])?,
            routes6: get(&["-j", "-6", "route", "show"])?,
        })
    }

    /// From the output of [`REPORT_SCRIPT`].
    fn of_report(s: &str) -> NsConfig {
        let mut parts = s.split("==\n");
        let mut next = || parse_json(parts.next().unwrap_or(""));
        NsConfig {
            addrs: next(),
            routes4: next(),
            routes6: next(),
        }
    }

    fn link(&self, name: &str) -> Option<&Value> {
        self.addrs
            .as_array()?
            .iter()
            .find(|l| l["ifname"].as_str() == Some(name))
    }

    fn has_addr(&self, ifname: &str, family: &str, local: &str, prefix: u8) -> bool {
        self.link(ifname)
            .and_then(|l| l["addr_info"].as_array())
            .is_some_and(|a| {
                a.iter().any(|i| {
                    i["family"].as_str() == Some(family)
                        && i["local"].as_str() == Some(local)
                        && i["prefixlen"].as_u64() == Some(u64::from(prefix))
                        && i["tentative"].as_bool() != Some(true)
                })
            })
    }

    fn default_via(routes: &Value, gw: &str, dev: &str) -> bool {
        routes.as_array().is_some_and(|r| {
            r.iter().any(|r| {
                r["dst"].as_str() == Some("default")
                    && r["gateway"].as_str() == Some(gw)
                    && r["dev"].as_str() == Some(dev)
            })
        })
    }

    /// Everything that differs from `e`, empty if nothing.
    fn problems(&self, e: &Expect) -> Vec<String> {
        let mut p = Vec::new();
        let Some(link) = self.link(&e.ifname) else {
            return vec![format!("no interface {} in {}", e.ifname, self.addrs)];
        };
        let flags: Vec<&str> = link["flags"]
            .as_array()
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !flags.contains(&"UP") {
            p.push(format!("{} is not up: {flags:?}", e.ifname));
        }
        if link["mtu"].as_u64() != Some(e.mtu) {
            p.push(format!(
                "{} has MTU {}, not {}",
                e.ifname, link["mtu"], e.mtu
            ));
        }
        let lo_up = self.link("lo").is_some_and(|l| {
            l["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f.as_str() == Some("UP")))
        });
        if !lo_up {
            p.push("lo is not up".into());
        }
        let (a4, n4) = e.addr4;
        if !self.has_addr(&e.ifname, "inet", &a4.to_string(), n4) {
            p.push(format!("no {a4}/{n4} on {}", e.ifname));
        }
        if let Some((a6, n6)) = e.addr6
            && !self.has_addr(&e.ifname, "inet6", &a6.to_string(), n6)
        {
            p.push(format!("no usable {a6}/{n6} on {}", e.ifname));
        }
        if !Self::default_via(&self.routes4, &e.gw4.to_string(), &e.ifname) {
            p.push(format!(
                "no IPv4 default route via {} dev {}",
                e.gw4, e.ifname
            ));
        }
        if let Some(gw6) = e.gw6
            && !Self::default_via(&self.routes6, &gw6.to_string(), &e.ifname)
        {
            p.push(format!("no IPv6 default route via {gw6} dev {}", e.ifname));
        }
        if !p.is_empty() {
            p.push(format!(
                "addresses: {}\nIPv4 routes: {}\nIPv6 routes: {}",
                self.addrs, self.routes4, self.routes6
            ));
        }
        p
    }
}

/// Polls the namespace at `path` until it matches `e` or [`READY_LIMIT`]
/// passes (or `pasta` exits); returns how long it took or what differed.
fn wait_configured(
    path: &Path,
    e: &Expect,
    mut pasta: Option<&mut Background>,
) -> Result<Duration, String> {
    let t = Instant::now();
    loop {
        let problems = match NsConfig::of_netns(path) {
            Ok(c) => c.problems(e),
            Err(err) => vec![err],
        };
        if problems.is_empty() {
            return Ok(t.elapsed());
        }
        if let Some(p) = pasta.as_deref_mut()
            && let Some(st) = p.try_wait()
        {
            return Err(format!(
                "pasta exited ({st}) before the namespace was ready: {problems:#?}"
            ));
        }
        if t.elapsed() >= READY_LIMIT {
            return Err(format!(
                "not configured after {READY_LIMIT:?}:\n{}",
                problems.join("\n")
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// pasta in the foreground (`-f`), joined to a namespace the test created.
struct Joined {
    target: Netns,
    net: NetNs,
    pasta: Option<Background>,
}

impl Joined {
    fn path(&self) -> PathBuf {
        self.target.path()
    }

    /// Stops pasta and returns its output, for failure messages.
    fn output(&mut self) -> String {
        match self.pasta.take() {
            Some(p) => match p.wait_timeout(Duration::from_millis(1)) {
                Ok(out) => text(&out),
                Err(e) => format!("(pasta was still running: {e})"),
            },
            None => "(pasta's output was already taken)".into(),
        }
    }
}

/// `pasta --runas 0 -f --config-net ARGS --netns /run/netns/NAME` on a
/// namespace created here (`prepare` runs first, e.g. to start servers in
/// it), once the namespace is configured.
fn join_with(
    bin: &PastaBinary,
    host: &PastaHost,
    args: &[&str],
    prepare: impl FnOnce(&NetNs),
) -> Joined {
    let target = Netns::create("pastans").expect("create the target namespace");
    let net = NetNs::open(&target.path()).expect("open the target namespace");
    prepare(&net);
    let mut all = root_args(&["-f", "--config-net"]);
    all.extend(strings(args));
    all.push("--netns".into());
    all.push(target.path().display().to_string());
    let mut pasta = host
        .spawn_pasta(bin, &Launch::root(), &all)
        .expect("start pasta");
    match wait_configured(&target.path(), &Expect::host_copy(), Some(&mut pasta)) {
        Ok(took) => eprintln!("TIMING pasta --netns: configured in {took:?}"),
        Err(e) => {
            let out = pasta
                .wait_timeout(Duration::from_millis(1))
                .map(|o| text(&o))
                .unwrap_or_default();
            panic!("{e}\npasta: {out}");
        }
    }
    Joined {
        target,
        net,
        pasta: Some(pasta),
    }
}

fn join(bin: &PastaBinary, host: &PastaHost, args: &[&str]) -> Joined {
    join_with(bin, host, args, |_| {})
}

/// A 64 KiB payload that differs at every offset of its period.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

// ------------------------------------------------ namespaces and exit

#[test]
fn pasta_around_a_command_gives_it_a_configured_copy_of_the_host_interface() {
    let Some((bin, host)) =
        setup("pasta_around_a_command_gives_it_a_configured_copy_of_the_host_interface")
    else {
        return;
    };
    let args = root_args(&["--config-net", "--", "sh", "-c", REPORT_SCRIPT]);
    let out = host
        .run_pasta(bin, &Launch::root(), &args, Duration::from_secs(20))
        .expect("pasta around a command");
    assert!(out.status.success(), "{}", text(&out));
    let config = NsConfig::of_report(&String::from_utf8_lossy(&out.stdout));
    let problems = config.problems(&Expect::host_copy());
    assert!(
        problems.is_empty(),
        "{}\n{}",
        problems.join("\n"),
        text(&out)
    );
}

#[test]
fn the_exit_status_of_the_command_is_the_exit_status_of_pasta() {
    let Some((bin, host)) = setup("the_exit_status_of_the_command_is_the_exit_status_of_pasta")
    else {
        return;
    };
    for code in [0, 3, 42] {
        let script = format!("exit {code}");
        let args = root_args(&["--config-net", "--", "sh", "-c", &script]);
        let out = host
            .run_pasta(bin, &Launch::root(), &args, Duration::from_secs(20))
            .expect("pasta around a command");
        assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    }
}

#[test]
fn pasta_joined_to_a_namespace_by_name_configures_addresses_and_routes() {
    let Some((bin, host)) =
        setup("pasta_joined_to_a_namespace_by_name_configures_addresses_and_routes")
    else {
        return;
    };
    let target = Netns::create("pastans").expect("target namespace");
    let args = root_args(&["-f", "--config-net", "--netns", target.name()]);
    let mut pasta = host
        .spawn_pasta(bin, &Launch::root(), &args)
        .expect("start pasta");
    let ready = wait_configured(&target.path(), &Expect::host_copy(), Some(&mut pasta));
    let out = pasta.wait_timeout(Duration::from_millis(1));
    assert!(
        ready.is_ok(),
        "{}\n{:?}",
        ready.unwrap_err(),
        out.map(|o| text(&o))
    );
}

#[test]
fn pasta_joined_to_a_process_configures_that_process_namespace() {
    let Some((bin, host)) = setup("pasta_joined_to_a_process_configures_that_process_namespace")
    else {
        return;
    };
    // A container-like process: its own user and network namespaces.
    let holder = host_process(&[
        "unshare",
        "--user",
        "--map-root-user",
        "--net",
        "sleep",
        "600",
    ]);
    let pid = holder.pid;
    let args = root_args(&["-f", "--config-net", &pid.to_string()]);
    let mut pasta = host
        .spawn_pasta(bin, &Launch::root(), &args)
        .expect("start pasta");
    let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let ready = wait_configured(&path, &Expect::host_copy(), Some(&mut pasta));
    let out = pasta.wait_timeout(Duration::from_millis(1));
    assert!(
        ready.is_ok(),
        "{}\n{:?}",
        ready.unwrap_err(),
        out.map(|o| text(&o))
    );
}

#[test]
fn pasta_exits_when_the_process_it_joined_exits() {
    let Some((bin, host)) = setup("pasta_exits_when_the_process_it_joined_exits") else {
        return;
    };
    let holder = host_process(&[
        "unshare",
        "--user",
        "--map-root-user",
        "--net",
        "sleep",
        "600",
    ]);
    let pid = holder.pid;
    let args = root_args(&["-f", "--config-net", &pid.to_string()]);
    let mut pasta = host
        .spawn_pasta(bin, &Launch::root(), &args)
        .expect("start pasta");
    let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    if let Err(e) = wait_configured(&path, &Expect::host_copy(), Some(&mut pasta)) {
        panic!("{e}");
    }
    let t = Instant::now();
    holder.process.stop();
    let out = pasta.wait_timeout(EXIT_LIMIT);
    assert!(
        out.is_ok(),
        "pasta still ran {EXIT_LIMIT:?} after the process it joined exited"
    );
    eprintln!(
        "TIMING pasta PID: exited {:?} after its process",
        t.elapsed()
    );
}

#[test]
fn pasta_exits_when_its_namespace_is_deleted() {
    let Some((bin, host)) = setup("pasta_exits_when_its_namespace_is_deleted") else {
        return;
    };
    let j = join(bin, &host, &[]);
    let Joined { target, net, pasta } = j;
    let pasta = pasta.expect("pasta");
    drop(net);
    let t = Instant::now();
    drop(target); // ip netns del
    let out = pasta.wait_timeout(EXIT_LIMIT);
    assert!(
        out.is_ok(),
        "pasta still ran {EXIT_LIMIT:?} after `ip netns del` of its namespace"
    );
    eprintln!(
        "TIMING pasta --netns: exited {:?} after ip netns del",
        t.elapsed()
    );
}

/// A process of the test in the host namespace's view (for `pasta PID`).
struct HostProcess {
    pid: u32,
    process: Background,
}

/// Starts `argv` and waits until it has exec'd `sleep` in a network
/// namespace other than ours.
fn host_process(argv: &[&str]) -> HostProcess {
    let mut cmd = std::process::Command::new(argv[0]);
    cmd.args(&argv[1..]);
    let process = Background::spawn(cmd).expect("spawn");
    let pid = process.id().expect("pid");
    let ours = std::fs::read_link("/proc/self/ns/net").ok();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let net = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        if comm.trim() == "sleep" && net.is_some() && net != ours {
            return HostProcess { pid, process };
        }
        assert!(Instant::now() < deadline, "{argv:?} did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ----------------------------------------------------------- traffic

#[test]
fn the_mapped_gateway_answers_ping_from_inside() {
    let Some((bin, host)) = setup("the_mapped_gateway_answers_ping_from_inside") else {
        return;
    };
    let j = join(
        bin,
        &host,
        &["-t", "none", "-u", "none", "-T", "none", "-U", "none"],
    );
    let gw4 = HOST_GW4.to_string();
    let gw6 = HOST_GW6.to_string();
    for args in [
        vec!["ping", "-c", "3", "-W", "3", gw4.as_str()],
        vec!["ping", "-6", "-c", "3", "-W", "3", gw6.as_str()],
    ] {
        let mut full = vec!["busybox"];
        full.extend(&args);
        let out = run_in_netns(&j.path(), full[0], &full[1..], Duration::from_secs(15))
            .expect("busybox ping");
        assert!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("3 packets received"),
            "{args:?}: {}",
            text(&out)
        );
    }
}

/// Which way the bytes go.
#[derive(Clone, Copy, Debug)]
enum Direction {
    /// From the namespace to the server on the host's loopback.
    Upload,
    /// From the server on the host's loopback to the namespace.
    Download,
}

/// 64 MiB one way between a client in the namespace (connecting to
/// `dest`) and a server on the host's loopback at 127.0.0.1:`port`;
/// pasta started with `args`.
fn bulk(test: &str, args: &[&str], dest: SocketAddr, port: u16, dir: Direction) {
    let Some((bin, host)) = setup(test) else {
        return;
    };
    let listener = listen_tcp(&host.net().unwrap(), sock(Ipv4Addr::LOCALHOST, port))
        .expect("listen on the host loopback");
    let mut j = join(bin, &host, args);
    let seed = 0x5eed_0000 + u64::from(port);
    let server = std::thread::spawn(move || -> std::io::Result<Option<Delivered>> {
        let mut s = accept_within(&listener, Duration::from_secs(30))?;
        match dir {
            Direction::Upload => Ok(Some((&receive_pattern(&mut s, seed)?).into())),
            Direction::Download => send_pattern(&mut s, seed, BULK).map(|()| None),
        }
    });
    let net = NetNs::open(&j.path()).expect("target");
    let t = Instant::now();
    let client = with_deadline(BULK_LIMIT, move || -> std::io::Result<Option<Delivered>> {
        let mut s = connect_tcp(&net, dest, Duration::from_secs(10))?;
        match dir {
            Direction::Upload => send_pattern(&mut s, seed, BULK).map(|()| None),
            Direction::Download => Ok(Some((&receive_pattern(&mut s, seed)?).into())),
        }
    });
    let took = t.elapsed();
    let client = match client {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!("client in the namespace: {e}\npasta: {}", j.output()),
        Err(e) => panic!("client in the namespace: {e}\npasta: {}", j.output()),
    };
    let server = server.join().expect("server thread");
    let server = match server {
        Ok(s) => s,
        Err(e) => panic!("server on the host loopback: {e}\npasta: {}", j.output()),
    };
    let delivered = client.or(server).expect("one side received");
    assert_eq!(
        delivered,
        Delivered {
            bytes: BULK,
            first_mismatch: None
        },
        "{dir:?} to/from {dest}"
    );
    eprintln!(
        "TIMING {test}: {BULK} bytes in {took:?} ({:.2} Gbit/s)",
        BULK as f64 * 8.0 / took.as_secs_f64() / 1e9
    );
}

const NO_FORWARDS: [&str; 8] = ["-t", "none", "-u", "none", "-T", "none", "-U", "none"];

#[test]
fn tcp_64mib_from_the_namespace_to_the_host_loopback_through_the_tap_is_byte_exact() {
    bulk(
        "tcp_64mib_from_the_namespace_to_the_host_loopback_through_the_tap_is_byte_exact",
        &NO_FORWARDS,
        sock(HOST_GW4, 5201),
        5201,
        Direction::Upload,
    );
}

#[test]
fn tcp_64mib_from_the_host_loopback_to_the_namespace_through_the_tap_is_byte_exact() {
    bulk(
        "tcp_64mib_from_the_host_loopback_to_the_namespace_through_the_tap_is_byte_exact",
        &NO_FORWARDS,
        sock(HOST_GW4, 5202),
        5202,
        Direction::Download,
    );
}

#[test]
fn tcp_64mib_from_the_namespace_loopback_to_the_host_loopback_through_the_splice_path_is_byte_exact()
 {
    bulk(
        "tcp_64mib_from_the_namespace_loopback_to_the_host_loopback_through_the_splice_path_is_byte_exact",
        &["-t", "none", "-u", "none", "-T", "5203", "-U", "none"],
        sock(Ipv4Addr::LOCALHOST, 5203),
        5203,
        Direction::Upload,
    );
}

#[test]
fn tcp_64mib_from_the_host_loopback_to_the_namespace_loopback_through_the_splice_path_is_byte_exact()
 {
    bulk(
        "tcp_64mib_from_the_host_loopback_to_the_namespace_loopback_through_the_splice_path_is_byte_exact",
        &["-t", "none", "-u", "none", "-T", "5204", "-U", "none"],
        sock(Ipv4Addr::LOCALHOST, 5204),
        5204,
        Direction::Download,
    );
}

#[test]
fn udp_datagrams_to_the_mapped_gateway_are_echoed_by_a_server_on_the_host_loopback() {
    let Some((bin, host)) =
        setup("udp_datagrams_to_the_mapped_gateway_are_echoed_by_a_server_on_the_host_loopback")
    else {
        return;
    };
    let echo = UdpEcho::spawn(
        bind_udp(&host.net().unwrap(), sock(Ipv4Addr::LOCALHOST, 5300)).expect("bind"),
    )
    .expect("echo");
    let mut j = join(bin, &host, &NO_FORWARDS);
    let client = bind_udp(&j.net, sock(Ipv4Addr::UNSPECIFIED, 0)).expect("client socket");
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let to = sock(HOST_GW4, 5300);
    let mut buf = vec![0u8; 65536];
    for len in [1usize, 512, 1472, 9000, 32000] {
        let sent = payload(len);
        let mut got = None;
        // Up to three tries per datagram: UDP may lose the first one while
        // the flow is being set up; the test fails if all three are lost.
        for _ in 0..3 {
            client.send_to(&sent, to).expect("send");
            if let Ok((n, from)) = client.recv_from(&mut buf) {
                got = Some((buf[..n].to_vec(), from));
                break;
            }
        }
        let (back, from) = got.unwrap_or_else(|| panic!("no echo of {len} bytes\n{}", j.output()));
        assert_eq!(from, to, "the echo of {len} bytes came from elsewhere");
        assert!(
            back == sent,
            "the echo of {len} bytes differs ({} bytes back)",
            back.len()
        );
    }
    assert!(echo.echoed() >= 5);
}

#[test]
fn a_dns_query_to_the_forward_address_is_answered_by_the_resolver_on_the_host_loopback() {
    let Some((bin, host)) = setup(
        "a_dns_query_to_the_forward_address_is_answered_by_the_resolver_on_the_host_loopback",
    ) else {
        return;
    };
    let answer = Ipv4Addr::new(203, 0, 113, 7);
    let dns = DnsResponder::spawn(
        bind_udp(&host.net().unwrap(), sock(HOST_RESOLVER, 53)).expect("bind :53"),
        answer,
    )
    .expect("responder");
    let forward = Ipv4Addr::new(192, 0, 2, 53);
    let fwd = forward.to_string();
    let mut args = NO_FORWARDS.to_vec();
    args.extend(["--dns-forward", fwd.as_str()]);
    let mut j = join(bin, &host, &args);
    let client = bind_udp(&j.net, sock(Ipv4Addr::UNSPECIFIED, 0)).expect("client socket");
    let reply = resolve(&client, sock(forward, 53), "pasta-test.example", 3);
    let reply = reply.unwrap_or_else(|e| {
        panic!(
            "{e} (the resolver answered {}, {} malformed)\npasta: {}",
            dns.answered(),
            dns.malformed(),
            j.output()
        )
    });
    assert_eq!(reply.name, "pasta-test.example");
    assert_eq!(reply.addrs, vec![answer]);
    assert!(dns.answered() >= 1);
}

#[test]
fn an_inbound_t_connection_from_the_host_loopback_reaches_a_server_in_the_namespace() {
    let Some((bin, host)) =
        setup("an_inbound_t_connection_from_the_host_loopback_reaches_a_server_in_the_namespace")
    else {
        return;
    };
    let mut server = None;
    let mut j = join_with(
        bin,
        &host,
        &["-t", "5401", "-u", "none", "-T", "none", "-U", "none"],
        |net| {
            let l = listen_tcp(net, sock(Ipv4Addr::UNSPECIFIED, 5401)).expect("listen in ns");
            server = Some(spawn_tcp_echo_once(l));
        },
    );
    let sent = payload(256 * 1024);
    let hnet = host.net().unwrap();
    let mut s = connect_tcp_until(
        &hnet,
        sock(Ipv4Addr::LOCALHOST, 5401),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("connect to the forwarded port: {e}\n{}", j.output()));
    let back = echo_exchange(&mut s, &sent).expect("exchange");
    assert!(back == sent, "{} bytes back of {}", back.len(), sent.len());
    let served = server.unwrap().join().expect("server").expect("server io");
    assert_eq!(served, sent.len() as u64);
}

#[test]
fn a_t_capital_connection_from_the_namespace_loopback_reaches_a_server_on_the_host_loopback() {
    let Some((bin, host)) = setup(
        "a_t_capital_connection_from_the_namespace_loopback_reaches_a_server_on_the_host_loopback",
    ) else {
        return;
    };
    let l = listen_tcp(&host.net().unwrap(), sock(Ipv4Addr::LOCALHOST, 5402)).expect("listen");
    let server = spawn_tcp_echo_once(l);
    let j = join(
        bin,
        &host,
        &["-t", "none", "-u", "none", "-T", "5402", "-U", "none"],
    );
    let sent = payload(256 * 1024);
    let mut s = connect_tcp_until(
        &j.net,
        sock(Ipv4Addr::LOCALHOST, 5402),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("connect to the -T port: {e}"));
    let back = echo_exchange(&mut s, &sent).expect("exchange");
    assert!(back == sent, "{} bytes back of {}", back.len(), sent.len());
    assert_eq!(
        server.join().expect("server").expect("io"),
        sent.len() as u64
    );
}

#[test]
fn auto_forwarding_picks_up_a_namespace_server_started_after_pasta() {
    let Some((bin, host)) =
        setup("auto_forwarding_picks_up_a_namespace_server_started_after_pasta")
    else {
        return;
    };
    let j = join(
        bin,
        &host,
        &["-t", "auto", "-u", "none", "-T", "none", "-U", "none"],
    );
    let l = listen_tcp(&j.net, sock(Ipv4Addr::UNSPECIFIED, 5501)).expect("listen in ns");
    let server = spawn_tcp_echo_once(l);
    let t = Instant::now();
    let mut s = connect_tcp_until(
        &host.net().unwrap(),
        sock(Ipv4Addr::LOCALHOST, 5501),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("the new server was not forwarded within 5 s: {e}"));
    eprintln!(
        "TIMING auto -t: forwarded {:?} after the server started",
        t.elapsed()
    );
    let back = echo_exchange(&mut s, b"picked up\n").expect("exchange");
    assert_eq!(back, b"picked up\n");
    assert_eq!(server.join().expect("server").expect("io"), 10);
}

#[test]
fn auto_forwarding_picks_up_a_host_server_started_after_pasta() {
    let Some((bin, host)) = setup("auto_forwarding_picks_up_a_host_server_started_after_pasta")
    else {
        return;
    };
    let j = join(
        bin,
        &host,
        &["-t", "none", "-u", "none", "-T", "auto", "-U", "none"],
    );
    let l = listen_tcp(&host.net().unwrap(), sock(Ipv4Addr::LOCALHOST, 5502)).expect("listen");
    let server = spawn_tcp_echo_once(l);
    let t = Instant::now();
    let mut s = connect_tcp_until(
        &j.net,
        sock(Ipv4Addr::LOCALHOST, 5502),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("the new server was not forwarded within 5 s: {e}"));
    eprintln!(
        "TIMING auto -T: forwarded {:?} after the server started",
        t.elapsed()
    );
    let back = echo_exchange(&mut s, b"picked up\n").expect("exchange");
    assert_eq!(back, b"picked up\n");
    assert_eq!(server.join().expect("server").expect("io"), 10);
}

// ------------------------------------------------------------ clients

/// A pasta a client started: the namespaces it serves, the daemon (killed
/// by PID if still running when this drops), and a handle to the network
/// namespace for the test's sockets.
struct ClientRun {
    userns: UserNs,
    daemon: tap_harness::pasta::PastaDaemon,
    net: NetNs,
}

/// Starts pasta with `args` as a client does (and waits for the parent to
/// return with its output closed), then checks the namespace against `e`.
fn client_start(
    bin: &PastaBinary,
    host: &PastaHost,
    userns: UserNs,
    launch: &Launch,
    args: &[String],
    e: &Expect,
) -> ClientRun {
    // Rootless clients need /dev/net/tun 0666, as distributions ship it
    // (this machine: 0600); see the unprivileged test.
    make_tun_world_accessible().expect("/dev/net/tun");
    let start = host
        .start_daemon(bin, launch, args, Duration::from_secs(20))
        .expect("start pasta");
    let shown = format!(
        "{args:?}: {}\n--- stdout\n{}--- stderr\n{}",
        start.status,
        String::from_utf8_lossy(&start.stdout),
        String::from_utf8_lossy(&start.stderr)
    );
    assert!(start.status.success(), "{shown}");
    assert!(
        start.output_closed,
        "pasta went to the background holding its output open (the client would wait forever): {shown}"
    );
    let daemon = start
        .daemon
        .unwrap_or_else(|| panic!("no pasta left running in the background: {shown}"));
    if let Err(err) = wait_configured(&userns.net_path(), e, None) {
        panic!("{err}\n{shown}");
    }
    let net = userns.net().expect("the namespace");
    ClientRun {
        userns,
        daemon,
        net,
    }
}

/// A TCP exchange from the host's loopback to a published port, served
/// by `server` in the namespace.
fn published_echo(
    host: &PastaHost,
    host_port: u16,
    server: std::thread::JoinHandle<std::io::Result<u64>>,
) {
    let sent = payload(64 * 1024);
    let mut s = connect_tcp_until(
        &host.net().unwrap(),
        sock(Ipv4Addr::LOCALHOST, host_port),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("connect to the published port {host_port}: {e}"));
    let back = echo_exchange(&mut s, &sent).expect("exchange");
    assert!(back == sent, "{} bytes back of {}", back.len(), sent.len());
    assert_eq!(
        server.join().expect("server").expect("io"),
        sent.len() as u64
    );
}

/// A TCP exchange from the namespace to `dest`, served by an echo server
/// on `host`'s address `serve`.
fn outbound_echo(run: &ClientRun, host: &PastaHost, dest: SocketAddr, serve: SocketAddr) {
    let l = listen_tcp(&host.net().unwrap(), serve).expect("listen on the host");
    let server = spawn_tcp_echo_once(l);
    let sent = payload(64 * 1024);
    let mut s = connect_tcp(&run.net, dest, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect from the namespace to {dest}: {e}"));
    let back = echo_exchange(&mut s, &sent).expect("exchange");
    assert!(back == sent, "{} bytes back of {}", back.len(), sent.len());
    assert_eq!(
        server.join().expect("server").expect("io"),
        sent.len() as u64
    );
}

/// Podman removes the namespace file when the container goes; pasta must
/// then exit by itself (Podman never kills it).
fn assert_exits_when_the_namespace_file_goes(mut run: ClientRun) {
    run.userns
        .remove_netns_file()
        .expect("remove the netns file");
    assert!(
        run.daemon.wait_exit(EXIT_LIMIT),
        "pasta (pid {}) still ran {EXIT_LIMIT:?} after its namespace file was removed",
        run.daemon.pid()
    );
}

#[test]
fn podman_4_4_argv_with_published_ports_starts_and_forwards_them() {
    let Some((bin, host)) = setup("podman_4_4_argv_with_published_ports_starts_and_forwards_them")
    else {
        return;
    };
    let userns = UserNs::create().expect("user namespace");
    let net = userns.net().expect("net");
    let tcp =
        spawn_tcp_echo_once(listen_tcp(&net, sock(Ipv4Addr::UNSPECIFIED, 80)).expect("listen :80"));
    let _udp = UdpEcho::spawn(bind_udp(&net, sock(Ipv4Addr::UNSPECIFIED, 53)).expect("bind :53"))
        .expect("udp echo");
    let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
    let args = clients::podman_4_4(
        &[
            PortMapping::tcp(Some(lo), 8080, 80),
            PortMapping::udp(Some(lo), 5353, 53),
        ],
        &[],
        userns.netns_file(),
    );
    let launch = Launch::nobody_in(userns.user_ns_path());
    let run = client_start(bin, &host, userns, &launch, &args, &Expect::host_copy());
    published_echo(&host, 8080, tcp);
    let u = bind_udp(&host.net().unwrap(), sock(Ipv4Addr::LOCALHOST, 0)).expect("udp client");
    let mut got = None;
    let mut buf = [0u8; 2048];
    for _ in 0..3 {
        u.send_to(b"published udp", sock(Ipv4Addr::LOCALHOST, 5353))
            .expect("send");
        if let Ok((n, _)) = u.recv_from(&mut buf) {
            got = Some(buf[..n].to_vec());
            break;
        }
    }
    assert_eq!(
        got.as_deref(),
        Some(&b"published udp"[..]),
        "UDP -u 127.0.0.1/5353-5353:53-53"
    );
    assert_exits_when_the_namespace_file_goes(run);
}

#[test]
fn podman_4_4_argv_with_nothing_published_starts_and_reaches_a_remote_server() {
    let Some((bin, host)) =
        setup("podman_4_4_argv_with_nothing_published_starts_and_reaches_a_remote_server")
    else {
        return;
    };
    let userns = UserNs::create().expect("user namespace");
    let args = clients::podman_4_4(&[], &[], userns.netns_file());
    assert!(args.windows(8).any(|w| w == NO_FORWARDS), "{args:?}");
    let launch = Launch::nobody_in(userns.user_ns_path());
    let run = client_start(bin, &host, userns, &launch, &args, &Expect::host_copy());
    outbound_echo(
        &run,
        &host,
        sock(REMOTE_ADDR4, 5601),
        sock(REMOTE_ADDR4, 5601),
    );
    assert_exits_when_the_namespace_file_goes(run);
}

#[test]
fn podman_5_argv_starts_writes_its_pid_and_reaches_the_host_through_the_guest_address() {
    let Some((bin, host)) =
        setup("podman_5_argv_starts_writes_its_pid_and_reaches_the_host_through_the_guest_address")
    else {
        return;
    };
    let userns = UserNs::create().expect("user namespace");
    let net = userns.net().expect("net");
    let tcp =
        spawn_tcp_echo_once(listen_tcp(&net, sock(Ipv4Addr::UNSPECIFIED, 80)).expect("listen :80"));
    let dns = DnsResponder::spawn(
        bind_udp(&host.net().unwrap(), sock(HOST_RESOLVER, 53)).expect("bind :53"),
        Ipv4Addr::new(203, 0, 113, 8),
    )
    .expect("resolver");
    let pid_file = userns.writable_dir().expect("run dir").join("pasta.pid");
    let args = clients::podman_5(
        &[PortMapping::tcp(None, 8080, 80)],
        &strings(&["-T", "6000"]),
        userns.netns_file(),
        &pid_file,
    );
    let launch = Launch::nobody_in(userns.user_ns_path());
    let run = client_start(bin, &host, userns, &launch, &args, &Expect::host_copy());
    let written = std::fs::read_to_string(&pid_file).unwrap_or_default();
    assert_eq!(
        written.trim(),
        run.daemon.pid().to_string(),
        "the --pid file"
    );
    // host.containers.internal: --map-guest-addr makes the address lead to
    // the host's own global address (pasta(1): "packets from the guest to
    // addr will be redirected to the address assigned to the guest ... by
    // default the host's global address"), not to its loopback.
    outbound_echo(
        &run,
        &host,
        sock(PODMAN5_HOST_ADDR, 7000),
        sock(HOST_ADDR4, 7000),
    );
    // The published port, and the user's own -T.
    published_echo(&host, 8080, tcp);
    outbound_echo(
        &run,
        &host,
        sock(Ipv4Addr::LOCALHOST, 6000),
        sock(Ipv4Addr::LOCALHOST, 6000),
    );
    // The resolver Podman writes into the container's resolv.conf.
    let c = bind_udp(&run.net, sock(Ipv4Addr::UNSPECIFIED, 0)).expect("udp");
    let reply = resolve(&c, sock(PODMAN5_DNS_FORWARD, 53), "host.example", 3)
        .unwrap_or_else(|e| panic!("DNS through {PODMAN5_DNS_FORWARD}: {e}"));
    assert_eq!(reply.addrs, vec![Ipv4Addr::new(203, 0, 113, 8)]);
    drop(dns);
    assert_exits_when_the_namespace_file_goes(run);
}

#[test]
fn rootlesskit_argv_starts_with_its_mtu_and_addresses_and_reaches_the_host() {
    let Some((bin, host)) =
        setup("rootlesskit_argv_starts_with_its_mtu_and_addresses_and_reaches_the_host")
    else {
        return;
    };
    let userns = UserNs::create().expect("user namespace");
    let rk = Rootlesskit {
        mtu: 1500,
        ..Rootlesskit::default()
    };
    let args = rk.args(&userns.user_ns_path(), userns.netns_file());
    let expect = Expect {
        ifname: rk.ifname.clone(),
        addr4: (rk.address(), rk.prefix_len),
        addr6: None,
        mtu: u64::from(rk.mtu),
        gw4: rk.gateway(),
        gw6: None,
    };
    // rootlesskit runs pasta from outside, as the user who owns the
    // namespaces, and names the user namespace with --userns.
    let run = client_start(bin, &host, userns, &Launch::nobody(), &args, &expect);
    outbound_echo(
        &run,
        &host,
        sock(rk.gateway(), 7001),
        sock(Ipv4Addr::LOCALHOST, 7001),
    );
    let dns = DnsResponder::spawn(
        bind_udp(&host.net().unwrap(), sock(HOST_RESOLVER, 53)).expect("bind :53"),
        Ipv4Addr::new(203, 0, 113, 9),
    )
    .expect("resolver");
    let c = bind_udp(&run.net, sock(Ipv4Addr::UNSPECIFIED, 0)).expect("udp");
    let reply = resolve(&c, sock(rk.dns(), 53), "host.example", 3)
        .unwrap_or_else(|e| panic!("DNS through {}: {e}", rk.dns()));
    assert_eq!(reply.addrs, vec![Ipv4Addr::new(203, 0, 113, 9)]);
    drop(dns);
}

// ------------------------------------------------------- unprivileged

#[test]
fn unprivileged_pasta_creates_its_own_user_namespace_around_a_command() {
    let Some((bin, host)) =
        setup("unprivileged_pasta_creates_its_own_user_namespace_around_a_command")
    else {
        return;
    };
    // /dev/net/tun is 0600 on this machine; distributions' udev rule makes
    // it 0666 so that rootless pasta can open it (the tap is then created
    // in pasta's own namespaces, which is what the kernel checks). Set it
    // as they do before running pasta as nobody.
    let mode = make_tun_world_accessible().expect("/dev/net/tun");
    eprintln!("/dev/net/tun was {mode:o}, now 666");
    let l = listen_tcp(&host.net().unwrap(), sock(Ipv4Addr::LOCALHOST, 5701)).expect("listen");
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let mut s = accept_within(&l, Duration::from_secs(20))?;
        s.write_all(b"hello from the host loopback\n")?;
        s.shutdown(Shutdown::Write)?;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)?;
        Ok(())
    });
    let script = format!(
        "echo uid_map; cat /proc/self/uid_map; echo ==; {REPORT_SCRIPT}; echo ==; \
         socat -t 10 -T 10 - TCP:{HOST_GW4}:5701 </dev/null"
    );
    let args = strings(&["--config-net", "--", "sh", "-c", &script]);
    let out = host
        .run_pasta(bin, &Launch::nobody(), &args, Duration::from_secs(30))
        .expect("pasta as nobody");
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (maps, rest) = stdout.split_once("==\n").unwrap_or_default();
    let map: Vec<&str> = maps
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(map.first().copied(), Some("0"), "root inside: {maps}");
    assert_eq!(
        map.get(1).copied(),
        Some("65534"),
        "mapped to nobody outside: {maps}"
    );
    let (report, greeting) = rest.rsplit_once("==\n").unwrap_or_default();
    let problems = NsConfig::of_report(report).problems(&Expect::host_copy());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(greeting, "hello from the host loopback\n", "{}", text(&out));
    server.join().expect("server").expect("server io");
}
