//! QEMU-guest regression checks against the passt binary under test (`PASST_BIN`,
//! default this workspace's own `passt`). Most tests boot their own guest; tests
//! marked "shared boot" read their checks from one boot run by whichever of them
//! starts first (each boot costs ~5 s under TCG), and report separately.
//! Skips visibly (`QEMU-HARNESS-SKIPPED`) where QEMU or root is missing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use qemu_harness::netns::{HOST_V6_ADDR, HOST_V6_GATEWAY};
use qemu_harness::services::{
    BootCounterServer, BulkStats, DnsQuery, EchoClose, EchoStats, HttpOnceServer, InboundProbe,
    InboundStats, TcpEchoServer, TcpSendServer, TcpSinkServer, TftpTransfer, start_dns_responder,
    start_tftp_server,
};
use qemu_harness::{CheckReport, GuestScript, RunOutcome, RunReport, RunSpec, run_guest};

/// DHCPv4 through passt; prints the lease and what the guest actually applied.
const DHCP_CHECK: &str = r#"udhcpc -i eth0 -n -q -t 5 -O mtu || exit 1
cat /tmp/lease
echo "link_mtu=$(cat /sys/class/net/eth0/mtu)"
echo "link_addr=$(ip -4 -o addr show dev eth0 | awk '{print $4}')"
echo "default_via=$(ip route | awk '/^default/ {print $3}')""#;

fn check_passed<'a>(report: &'a RunReport, name: &str) -> &'a CheckReport {
    let check = report
        .check(name)
        .unwrap_or_else(|e| panic!("{e}\n{}", report.summary()));
    assert!(
        check.passed(),
        "check {name} did not pass\n{}",
        report.summary()
    );
    check
}

fn value<'a>(report: &RunReport, check: &'a CheckReport, key: &str) -> &'a str {
    check.value(key).unwrap_or_else(|| {
        panic!(
            "check {} printed no {key}=\n{}",
            check.name,
            report.summary()
        )
    })
}

/// Boots with `spec`, printing the summary; `None` when the environment skips; a
/// harness error as an error value (for shared boots, which must not panic).
fn try_run<T: Send + 'static>(
    spec: &RunSpec,
    setup: impl FnOnce() -> anyhow::Result<(GuestScript, T)> + Send + 'static,
) -> BootResult<T> {
    Ok(match run_guest(spec, setup)? {
        RunOutcome::Skipped(_) => None,
        RunOutcome::Ran(report, extra) => {
            eprintln!("{}", report.summary());
            Some((report, extra))
        }
    })
}

/// Boots with `spec`, printing the summary; `None` when the environment skips.
fn run<T: Send + 'static>(
    spec: &RunSpec,
    setup: impl FnOnce() -> anyhow::Result<(GuestScript, T)> + Send + 'static,
) -> Option<(Box<RunReport>, T)> {
    match run_guest(spec, setup).expect("harness error") {
        RunOutcome::Skipped(_) => None,
        RunOutcome::Ran(report, extra) => {
            eprintln!("{}", report.summary());
            Some((report, extra))
        }
    }
}

#[test]
fn dhcpv4_lease_matches_passt_configuration() {
    let spec = RunSpec::new("dhcpv4_lease");
    let cfg = spec.passt.clone();
    let Some((report, ())) = run(&spec, || {
        Ok((GuestScript::new().check("dhcp", DHCP_CHECK), ()))
    }) else {
        return;
    };
    let dhcp = check_passed(&report, "dhcp");
    let dns: Vec<String> = cfg.dns.iter().map(|d| d.to_string()).collect();
    assert_eq!(value(&report, dhcp, "ip"), cfg.address.to_string());
    assert_eq!(value(&report, dhcp, "mask"), cfg.prefix_len.to_string());
    assert_eq!(value(&report, dhcp, "router"), cfg.gateway.to_string());
    assert_eq!(value(&report, dhcp, "mtu"), cfg.mtu.to_string());
    assert_eq!(value(&report, dhcp, "dns"), dns.join(" "));
    assert_eq!(value(&report, dhcp, "link_mtu"), cfg.mtu.to_string());
    assert_eq!(
        value(&report, dhcp, "link_addr"),
        format!("{}/{}", cfg.address, cfg.prefix_len)
    );
    assert_eq!(value(&report, dhcp, "default_via"), cfg.gateway.to_string());
    assert_eq!(report.outbound_tx_packets, 0, "{}", report.summary());
    eprintln!(
        "TIMING dhcpv4_lease: QEMU start -> lease applied {:.2}s ({} {})",
        report
            .check_done_at("dhcp")
            .unwrap_or_default()
            .as_secs_f64(),
        report.accel.accel.as_arg(),
        report.passt_bin.path.display()
    );
}

/// Echo requests to the gateway address reach the host's loopback (the gateway is
/// mapped to it, as for TCP and UDP). Debian's passt (0.0~git20230309) does not map
/// ICMP for the gateway: it sends the echo to the gateway address through the host's
/// routes (observed: 0/3 replies and ARP leaving the namespace's veth), so it fails
/// this test; see docs/testing.md.
#[test]
fn ping_gateway() {
    let spec = RunSpec::new("ping_gateway");
    let gw = spec.passt.gateway;
    let Some((report, ())) = run(&spec, move || {
        Ok((
            GuestScript::new()
                .check("dhcp", DHCP_CHECK)
                .check("ping", &format!("ping -c 3 -W 3 {gw}")),
            (),
        ))
    }) else {
        return;
    };
    check_passed(&report, "dhcp");
    let ping = check_passed(&report, "ping");
    assert!(
        ping.output.iter().any(|l| l.contains("3 packets received")),
        "{}",
        report.summary()
    );
    assert_eq!(report.outbound_tx_packets, 0, "{}", report.summary());
}

/// `seq 1 12000`: 60894 bytes the host side can recompute.
fn seq_payload() -> Vec<u8> {
    (1..=12000)
        .flat_map(|n| format!("{n}\n").into_bytes())
        .collect()
}

fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// When the guest half-closes its side of the echo connection.
#[derive(Clone, Copy)]
enum GuestClose {
    /// Right behind its last data segment (nc reading a file).
    WithLastData,
    /// Only once the whole echo has come back.
    AfterEcho,
}

/// Guest `nc` to the gateway address, `seq 1 12000` through a host echo server on
/// 127.0.0.1. Two checks in one boot: `tcp_echo` (both ends saw exactly the payload)
/// and `tcp_fin` (`nc` ended by itself within 3 s of the last echoed byte, i.e. the
/// host's close reached the guest as a FIN); both are asserted.
fn tcp_echo_case(test: &str, close: EchoClose, guest: GuestClose) {
    let spec = RunSpec::new(test);
    let gw = spec.passt.gateway;
    let payload = seq_payload();
    let expected_len = payload.len();
    let Some((report, server)) = run(&spec, move || {
        let server = TcpEchoServer::start_with(expected_len, close, Duration::from_secs(80))?;
        let port = server.port;
        // Either nc's stdin is the file (FIN right behind the last data segment), or
        // stdin stays open until the whole echo is back (FIN strictly after it).
        let feed = match guest {
            GuestClose::WithLastData => "cat /tmp/payload".to_string(),
            GuestClose::AfterEcho => format!(
                "(cat /tmp/payload; i=0; while [ \"$(wc -c < /tmp/echo)\" -lt {expected_len} ] \
                 && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done)"
            ),
        };
        let echo = format!(
            r#"seq 1 12000 > /tmp/payload
: > /tmp/echo
{feed} | nc {gw} {port} > /tmp/echo &
pid=$!
i=0
while [ "$(wc -c < /tmp/echo)" -lt {expected_len} ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
i=0
while kill -0 $pid 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done
if kill -0 $pid 2>/dev/null; then
    kill $pid; echo no > /tmp/nc_exited
else
    wait $pid; echo "yes rc=$?" > /tmp/nc_exited
fi
echo "sent=$(wc -c < /tmp/payload)"
echo "received=$(wc -c < /tmp/echo)"
cmp /tmp/payload /tmp/echo && echo "echo_matches=yes""#
        );
        let fin = r#"echo "nc_exited=$(cat /tmp/nc_exited)"
grep -q '^yes rc=0$' /tmp/nc_exited"#;
        Ok((
            GuestScript::new()
                .check("dhcp", DHCP_CHECK)
                .check("tcp_echo", &echo)
                .check("tcp_fin", fin),
            server,
        ))
    }) else {
        return;
    };
    check_passed(&report, "dhcp");
    let tcp = check_passed(&report, "tcp_echo");
    assert_eq!(value(&report, tcp, "sent"), expected_len.to_string());
    assert_eq!(value(&report, tcp, "received"), expected_len.to_string());
    assert_eq!(value(&report, tcp, "echo_matches"), "yes");
    let stats = server.join().expect("echo server");
    assert_eq!(stats.bytes, expected_len);
    assert_eq!(stats.fnv64, fnv64(&payload), "host saw different bytes");
    assert!(stats.peer.ip().is_loopback(), "peer {}", stats.peer);
    assert_eq!(report.outbound_tx_packets, 0, "{}", report.summary());
    check_passed(&report, "tcp_fin");
}

/// TCP from the guest to the gateway address reaches a server on the host's
/// 127.0.0.1 (passt's gateway mapping), strictly serialised: payload, whole echo,
/// then the guest's FIN, the server's close, and passt's FIN to the guest.
#[test]
fn tcp_echo_via_gateway_to_host_loopback() {
    tcp_echo_case(
        "tcp_echo_gateway",
        EchoClose::AfterPeerEof,
        GuestClose::AfterEcho,
    );
}

/// Classic echo where the guest's FIN rides right behind its last data (nc reading a
/// file). Debian's passt 0.0~git20230309 fails this intermittently here (about 1 run
/// in 2; host kernel 6.18, TCG guest): it never sends the guest a FIN although the
/// host socket was closed, and in some runs it sends 1-2 extra segments of stale
/// bytes past the end of the stream, which the guest accepts (see docs/testing.md).
#[test]
fn tcp_echo_guest_fin_with_last_data() {
    tcp_echo_case(
        "tcp_echo_fin_with_data",
        EchoClose::AfterPeerEof,
        GuestClose::WithLastData,
    );
}

/// The server closes as soon as it has echoed the expected bytes, so its close
/// crosses the guest's FIN. Debian's passt 0.0~git20230309 fails this reliably here:
/// no FIN reaches the guest, and in some runs it first sends ~164 KB of stale bytes
/// past the end of the stream, which the guest accepts (see docs/testing.md).
#[test]
fn tcp_echo_host_close_crossing_guest_fin() {
    tcp_echo_case(
        "tcp_echo_crossing_close",
        EchoClose::AfterExpectedBytes,
        GuestClose::WithLastData,
    );
}

/// busybox wget over passt to a host HTTP server. Note: Debian's busybox-static
/// 1.35 is built without FEATURE_WGET_TIMEOUT, and `wget -T N` then writes through a
/// NULL pointer while parsing options (segfault before any network I/O, on the host
/// too, with any -cpu): use the `timeout` applet instead of `-T`.
#[test]
fn http_wget_via_gateway() {
    let spec = RunSpec::new("http_wget_gateway");
    let gw = spec.passt.gateway;
    let body = b"0123456789abcdef".repeat(4096);
    let len = body.len();
    let Some((report, server)) = run(&spec, move || {
        let server = HttpOnceServer::start(body, Duration::from_secs(80))?;
        let port = server.port;
        let script = format!(
            r#"timeout 30 wget -q -O /tmp/body http://{gw}:{port}/file || exit $?
echo "size=$(wc -c < /tmp/body)"
echo "lines=$(fold -w 16 /tmp/body | sort -u | wc -l)""#
        );
        Ok((
            GuestScript::new()
                .check("dhcp", DHCP_CHECK)
                .check("wget", &script),
            server,
        ))
    }) else {
        return;
    };
    check_passed(&report, "dhcp");
    let wget = check_passed(&report, "wget");
    assert_eq!(value(&report, wget, "size"), len.to_string());
    assert_eq!(
        value(&report, wget, "lines"),
        "1",
        "body not a repeat of one block"
    );
    let head = server.join().expect("http server");
    assert!(head.starts_with("GET /file HTTP/1."), "request: {head:?}");
    assert_eq!(report.outbound_tx_packets, 0, "{}", report.summary());
}

// ---------------------------------------------------------------------------
// Shared boots: several #[test]s, one guest.

/// The outcome of a boot shared by several tests: `None` when skipped, an error
/// string when the harness failed (so every test sharing it fails with the cause).
type Shared<T> = OnceLock<Result<Option<(Box<RunReport>, T)>, String>>;

/// What a shared boot function returns: `None` when the environment skips.
type BootResult<T> = anyhow::Result<Option<(Box<RunReport>, T)>>;

/// The first caller runs `boot`; later (and concurrent) callers get its result.
/// `boot` must not panic (a panic would make the next caller boot again).
fn shared<T: Send + Sync + 'static>(
    cell: &'static Shared<T>,
    boot: fn() -> BootResult<T>,
) -> Option<&'static (Box<RunReport>, T)> {
    match cell.get_or_init(|| boot().map_err(|e| format!("{e:#}"))) {
        Ok(Some(x)) => Some(x),
        Ok(None) => None,
        Err(e) => panic!("shared boot failed: {e}"),
    }
}

/// A host-side outcome kept for the tests reading a shared boot.
type Outcome<T> = Result<T, String>;

fn outcome<T>(r: anyhow::Result<T>) -> Outcome<T> {
    r.map_err(|e| format!("{e:#}"))
}

fn expect_outcome<'a, T>(report: &RunReport, what: &str, o: &'a Outcome<T>) -> &'a T {
    o.as_ref()
        .unwrap_or_else(|e| panic!("host side of {what}: {e}\n{}", report.summary()))
}

/// The MAC passt uses for itself (and for every address it answers ARP/NDP for).
const PASST_MAC: &str = "9a:55:9a:55:9a:55";

/// Prints the link-layer address the guest's neighbour table holds for `$1`.
const LLADDR_FN: &str = r#"lladdr_of() {
    ip "$2" neigh show dev eth0 | awk -v a="$1" '$1 == a { for (i = 2; i < NF; i++) if ($i == "lladdr") print $(i + 1) }' | head -1
}"#;

// -- IPv6 and neighbour resolution (shared boot "dual_stack") ----------------

struct DualStackHost {
    tcp4: Outcome<EchoStats>,
    tcp6: Outcome<EchoStats>,
}

static DUAL_STACK: Shared<DualStackHost> = OnceLock::new();

const SMALL_ECHO_LEN: usize = 20000;

/// One guest with IPv4 and IPv6: DHCPv4, SLAAC from passt's RA (busybox 1.35 has
/// no DHCPv6 client), TCP over both families and ICMPv6 echo to the gateway, then
/// the guest's neighbour tables.
fn dual_stack_boot() -> BootResult<DualStackHost> {
    let spec = RunSpec::dual_stack("dual_stack");
    let gw4 = spec.passt.gateway;
    let gw6 = HOST_V6_GATEWAY;
    let Some((report, (s4, s6))) = try_run(&spec, move || {
        let s4 = TcpEchoServer::start_on(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            SMALL_ECHO_LEN,
            EchoClose::AfterPeerEof,
            Duration::from_secs(80),
        )?;
        let s6 = TcpEchoServer::start_on(
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            SMALL_ECHO_LEN,
            EchoClose::AfterPeerEof,
            Duration::from_secs(80),
        )?;
        // Serialised (the guest's FIN only after the whole echo is back): the
        // close orderings have tests of their own above.
        let echo = |gw: String, port: u16| {
            format!(
                r#"head -c {SMALL_ECHO_LEN} /dev/urandom > /tmp/e
: > /tmp/e_back
(cat /tmp/e; i=0; while [ "$(wc -c < /tmp/e_back)" -lt {SMALL_ECHO_LEN} ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done) | timeout 20 nc {gw} {port} > /tmp/e_back || exit $?
echo "received=$(wc -c < /tmp/e_back)"
cmp /tmp/e /tmp/e_back && echo "echo_matches=yes""#
            )
        };
        let slaac = r#"i=0
while [ $i -lt 150 ]; do
    a=$(ip -6 -o addr show dev eth0 scope global | grep -v tentative | awk '{print $4}' | head -1)
    r=$(ip -6 route show default | awk '{print $3}' | head -1)
    [ -n "$a" ] && [ -n "$r" ] && break
    sleep 0.1; i=$((i+1))
done
ip -6 addr show dev eth0
ip -6 route
echo "mac=$(cat /sys/class/net/eth0/address)"
echo "slaac_addr=$a"
echo "default6_via=$r"
echo "$r" > /tmp/router6
[ -n "$a" ] && [ -n "$r" ]"#;
        let neigh4 = format!(
            r#"{LLADDR_FN}
ip neigh show dev eth0
echo "gw4_lladdr=$(lladdr_of {gw4} -4)""#
        );
        let neigh6 = format!(
            r#"{LLADDR_FN}
ip -6 neigh show dev eth0
echo "router6=$(cat /tmp/router6)"
echo "router6_lladdr=$(lladdr_of "$(cat /tmp/router6)" -6)"
echo "gw6_lladdr=$(lladdr_of {gw6} -6)""#
        );
        Ok((
            GuestScript::new()
                .check("dhcp", DHCP_CHECK)
                .check("slaac", slaac)
                .check("tcp4_echo", &echo(gw4.to_string(), s4.port))
                .check("ping6_gateway", &format!("ping6 -c 3 -W 3 {gw6}"))
                .check("tcp6_echo", &echo(gw6.to_string(), s6.port))
                .check("neigh4", &neigh4)
                .check("neigh6", &neigh6),
            (s4, s6),
        ))
    })?
    else {
        return Ok(None);
    };
    let host = DualStackHost {
        tcp4: outcome(s4.join()),
        tcp6: outcome(s6.join()),
    };
    Ok(Some((report, host)))
}

/// The EUI-64 interface identifier of a MAC (RFC 4291 appendix A), as SLAAC forms it.
fn eui64_address(prefix: Ipv6Addr, mac: &str) -> Option<Ipv6Addr> {
    let b: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).ok())
        .collect::<Option<_>>()?;
    if b.len() != 6 {
        return None;
    }
    let p = prefix.segments();
    Some(Ipv6Addr::new(
        p[0],
        p[1],
        p[2],
        p[3],
        u16::from_be_bytes([b[0] ^ 0x02, b[1]]),
        u16::from_be_bytes([b[2], 0xff]),
        u16::from_be_bytes([0xfe, b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
    ))
}

/// SLAAC: passt's RA carries the template's /64 with the A flag, so the guest forms
/// its EUI-64 address there, and its default route points at the RA's (link-local)
/// source. (DHCPv6 is not checked: busybox 1.35 has no `udhcpc6`.) Shared boot.
#[test]
fn ipv6_slaac_address_and_default_route_from_ra() {
    let Some((report, _)) = shared(&DUAL_STACK, dual_stack_boot) else {
        return;
    };
    let slaac = check_passed(report, "slaac");
    let mac = value(report, slaac, "mac");
    let expected = eui64_address(HOST_V6_ADDR, mac).expect("guest MAC");
    assert_eq!(
        value(report, slaac, "slaac_addr"),
        format!("{expected}/64"),
        "{}",
        report.summary()
    );
    let router: Ipv6Addr = value(report, slaac, "default6_via")
        .parse()
        .unwrap_or_else(|e| panic!("default route: {e}\n{}", report.summary()));
    assert_eq!(
        router.segments()[0] & 0xffc0,
        0xfe80,
        "the default router is the RA's link-local source, not {router}"
    );
}

/// ICMPv6 echo and TCP to the IPv6 gateway reach the host's `::1` (gateway mapping
/// for IPv6), and TCP to the IPv4 gateway still works alongside. Shared boot.
#[test]
fn ipv6_ping_and_tcp_via_gateway_to_host_loopback() {
    let Some((report, host)) = shared(&DUAL_STACK, dual_stack_boot) else {
        return;
    };
    let ping = check_passed(report, "ping6_gateway");
    assert!(
        ping.output.iter().any(|l| l.contains("3 packets received")),
        "{}",
        report.summary()
    );
    for (check, stats, family) in [
        ("tcp4_echo", &host.tcp4, "v4"),
        ("tcp6_echo", &host.tcp6, "v6"),
    ] {
        let c = check_passed(report, check);
        assert_eq!(value(report, c, "received"), SMALL_ECHO_LEN.to_string());
        assert_eq!(value(report, c, "echo_matches"), "yes");
        let stats = expect_outcome(report, check, stats);
        assert_eq!(stats.bytes, SMALL_ECHO_LEN, "{family}");
        assert!(
            stats.peer.ip().is_loopback(),
            "{family} peer {}",
            stats.peer
        );
        assert_eq!(stats.peer.is_ipv6(), family == "v6", "peer {}", stats.peer);
    }
    assert_eq!(report.outbound_tx_packets, 0, "{}", report.summary());
}

/// After traffic to the gateways, the guest's ARP and NDP tables map the IPv4
/// gateway, the IPv6 gateway and the RA's router address to passt's MAC. Shared
/// boot.
#[test]
fn arp_and_ndp_resolve_gateway_to_passt_mac() {
    let Some((report, _)) = shared(&DUAL_STACK, dual_stack_boot) else {
        return;
    };
    // The neighbour entries only exist if the traffic before them happened.
    check_passed(report, "tcp4_echo");
    check_passed(report, "tcp6_echo");
    let n4 = check_passed(report, "neigh4");
    let n6 = check_passed(report, "neigh6");
    let seen = [
        ("IPv4 gateway", value(report, n4, "gw4_lladdr")),
        ("IPv6 gateway", value(report, n6, "gw6_lladdr")),
        ("RA router", value(report, n6, "router6_lladdr")),
    ];
    // One MAC for every address passt stands for, and it is passt's own.
    for (what, mac) in seen {
        assert_eq!(
            mac,
            PASST_MAC,
            "{what} resolved to {mac}, not passt's MAC (all: {seen:?})\n{}",
            report.summary()
        );
    }
}

// -- Bulk TCP and UDP (shared boot "bulk_udp") -------------------------------

const BULK_LEN_DEFAULT: usize = 8 * 1024 * 1024;

/// Bytes each way in the bulk checks: 8 MiB, or `QEMU_HARNESS_BULK_LEN` (a
/// multiple of 64 KiB) when set, which `scripts/corpus-qemu.sh` uses to keep its
/// `--pcap` captures small.
fn bulk_len() -> usize {
    match std::env::var("QEMU_HARNESS_BULK_LEN") {
        Ok(v) => {
            let n: usize = v
                .parse()
                .unwrap_or_else(|_| panic!("QEMU_HARNESS_BULK_LEN={v:?}: not a byte count"));
            assert!(
                n > 0 && n % 65536 == 0,
                "QEMU_HARNESS_BULK_LEN={n}: must be a positive multiple of 65536"
            );
            n
        }
        Err(_) => BULK_LEN_DEFAULT,
    }
}
const TFTP_LEN: usize = 100_000;
const DNS_NAME: &str = "probe.qemu-harness.test";
const DNS_ANSWER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// `--dns-forward`: the address the guest sends DNS queries to.
const DNS_FORWARD: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);

struct BulkHost {
    download: Outcome<BulkStats>,
    upload: Outcome<BulkStats>,
    tftp: Outcome<Vec<TftpTransfer>>,
}

static BULK: Shared<BulkHost> = OnceLock::new();

/// 8 MiB that do not compress or repeat (xorshift64*).
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn bulk_boot() -> BootResult<BulkHost> {
    let mut spec = RunSpec::new("bulk_udp");
    spec.timeout = Duration::from_secs(150);
    let gw = spec.passt.gateway;
    let Some((report, (down, up, tftp))) = try_run(&spec, move || {
        let deadline = Duration::from_secs(140);
        let down = TcpSendServer::start(pseudo_random(bulk_len(), 0x5eed), deadline)?;
        let up = TcpSinkServer::start(deadline)?;
        let tftp = start_tftp_server(deadline)?;
        let download = format!(
            r#"timeout 45 nc {gw} {port} < /dev/null > /tmp/dl; rc=$?
echo "bytes=$(wc -c < /tmp/dl)"
echo "sha256=$(sha256sum /tmp/dl | cut -d' ' -f1)"
rm -f /tmp/dl
exit $rc"#,
            port = down.port
        );
        let upload = format!(
            r#"dd if=/dev/urandom of=/tmp/up bs=65536 count={blocks} 2>/dev/null
echo "bytes=$(wc -c < /tmp/up)"
echo "sha256=$(sha256sum /tmp/up | cut -d' ' -f1)"
timeout 45 nc {gw} {port} < /tmp/up > /tmp/up_reply; rc=$?
echo "reply_bytes=$(wc -c < /tmp/up_reply)"
rm -f /tmp/up
exit $rc"#,
            blocks = bulk_len() / 65536,
            port = up.port
        );
        let udp = format!(
            r#"head -c {TFTP_LEN} /dev/urandom > /tmp/tf
echo "sent_sha256=$(sha256sum /tmp/tf | cut -d' ' -f1)"
timeout 60 tftp -p -l /tmp/tf -r echo {gw} {port} || exit 10
timeout 60 tftp -g -l /tmp/tf_back -r echo {gw} {port} || exit 11
echo "back_bytes=$(wc -c < /tmp/tf_back)"
echo "back_sha256=$(sha256sum /tmp/tf_back | cut -d' ' -f1)"
cmp /tmp/tf /tmp/tf_back"#,
            port = tftp.port
        );
        Ok((
            GuestScript::new()
                .check("dhcp", DHCP_CHECK)
                .check("tcp_download", &download)
                .check("tcp_upload", &upload)
                .check("udp_tftp", &udp),
            (down, up, tftp),
        ))
    })?
    else {
        return Ok(None);
    };
    let host = BulkHost {
        download: outcome(down.join()),
        upload: outcome(up.join()),
        tftp: outcome(tftp.finish()),
    };
    eprintln!(
        "TIMING bulk: download {:?}, upload {:?} (host time between check markers)",
        duration_of(&report, "tcp_download"),
        duration_of(&report, "tcp_upload")
    );
    Ok(Some((report, host)))
}

fn duration_of(report: &RunReport, check: &str) -> Option<Duration> {
    let c = report.check(check).ok()?;
    Some(c.ended_at? - c.began_at?)
}

/// 8 MiB host -> guest over TCP (host 127.0.0.1 via the gateway address); the
/// guest's SHA-256 of what it received equals the host's of what it sent. Shared
/// boot.
#[test]
fn tcp_download_8mib_checksum() {
    let Some((report, host)) = shared(&BULK, bulk_boot) else {
        return;
    };
    let c = check_passed(report, "tcp_download");
    let sent = expect_outcome(report, "download", &host.download);
    assert_eq!(sent.bytes, bulk_len());
    assert_eq!(value(report, c, "bytes"), bulk_len().to_string());
    assert_eq!(
        value(report, c, "sha256"),
        sent.sha256,
        "{}",
        report.summary()
    );
    assert!(sent.peer.ip().is_loopback());
}

/// 8 MiB guest -> host over TCP; the host's SHA-256 of what it received equals the
/// guest's of what it sent. Shared boot.
#[test]
fn tcp_upload_8mib_checksum() {
    let Some((report, host)) = shared(&BULK, bulk_boot) else {
        return;
    };
    let c = check_passed(report, "tcp_upload");
    let got = expect_outcome(report, "upload", &host.upload);
    assert_eq!(value(report, c, "bytes"), bulk_len().to_string());
    assert_eq!(got.bytes, bulk_len(), "{}", report.summary());
    assert_eq!(
        got.sha256,
        value(report, c, "sha256"),
        "{}",
        report.summary()
    );
    assert_eq!(value(report, c, "reply_bytes"), "0");
}

/// UDP through the gateway mapping, both directions, checked on both ends: the
/// guest `tftp -p`s 100,000 random bytes to a TFTP server on the host's 127.0.0.1
/// and `tftp -g`s them back (196 DATA/ACK round trips each way). This stands in for
/// a UDP echo with `nc -u`: Debian's busybox 1.35 `nc` has no `-u`. Shared boot.
#[test]
fn udp_tftp_put_and_get_back_via_gateway() {
    let Some((report, host)) = shared(&BULK, bulk_boot) else {
        return;
    };
    let c = check_passed(report, "udp_tftp");
    let sent = value(report, c, "sent_sha256");
    assert_eq!(value(report, c, "back_bytes"), TFTP_LEN.to_string());
    assert_eq!(value(report, c, "back_sha256"), sent);
    let transfers = expect_outcome(report, "tftp", &host.tftp);
    assert_eq!(transfers.len(), 2, "{transfers:?}");
    let (put, get) = (&transfers[0], &transfers[1]);
    assert!(
        put.write && put.completed && put.bytes == TFTP_LEN,
        "{put:?}"
    );
    assert_eq!(put.sha256, sent, "the host received other bytes");
    assert!(!get.write && get.completed, "{get:?}");
    assert!(put.peer.ip().is_loopback(), "peer {}", put.peer);
    assert_eq!(report.outbound_tx_packets, 0, "{}", report.summary());
}

// -- DNS forwarding -----------------------------------------------------------

/// `--dns-forward 10.0.2.3 --dns-host 127.0.0.1`: the guest's query to 10.0.2.3
/// reaches a resolver on the host's 127.0.0.1:53, and its answer comes back as if
/// from 10.0.2.3 (busybox `nslookup` discards answers from other addresses). Own
/// boot: Debian's passt (0.0~git20230309) has no `--dns-host` and refuses to start.
#[test]
fn dns_forward_to_resolver_on_host_loopback() {
    let mut spec = RunSpec::new("dns_forward");
    spec.passt.extra_args = vec![
        "--dns-forward".into(),
        DNS_FORWARD.to_string(),
        "--dns-host".into(),
        "127.0.0.1".into(),
    ];
    let Some((report, dns)) = run(&spec, move || {
        let dns = start_dns_responder(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 53)),
            vec![(DNS_NAME.to_string(), DNS_ANSWER)],
            Duration::from_secs(80),
        )?;
        let check = format!(
            r#"timeout 20 nslookup -type=a {DNS_NAME} {DNS_FORWARD} > /tmp/ns 2>&1; echo "nslookup_rc=$?"
cat /tmp/ns
grep -q '{DNS_ANSWER}' /tmp/ns && echo "resolved=yes""#
        );
        Ok((
            GuestScript::new()
                .check("dhcp", DHCP_CHECK)
                .check("dns", &check),
            dns,
        ))
    }) else {
        return;
    };
    let queries: Vec<DnsQuery> = dns.finish().expect("dns responder");
    let c = check_passed(&report, "dns");
    assert_eq!(value(&report, c, "resolved"), "yes", "{}", report.summary());
    assert_eq!(report.outbound_tx_packets, 0, "{}", report.summary());
    assert!(
        queries
            .iter()
            .any(|q| q.name == DNS_NAME && q.qtype == 1 && q.peer.ip().is_loopback()),
        "resolver saw {queries:?}"
    );
}

// -- Inbound TCP through -t ----------------------------------------------------

const INBOUND_HOST_PORT: u16 = 10080;
const INBOUND_GUEST_PORT: u16 = 8080;
const INBOUND_LEN: usize = 65536;

/// `passt -t 10080:8080`: a connection to the host's 127.0.0.1:10080 reaches
/// `nc -l -p 8080` in the guest; the host reads the guest's 64 KiB (checksum
/// compared) and the guest reads the host's greeting.
#[test]
fn inbound_tcp_forward_into_guest() {
    let mut spec = RunSpec::new("inbound_tcp");
    spec.passt.extra_args = vec![
        "-t".into(),
        format!("{INBOUND_HOST_PORT}:{INBOUND_GUEST_PORT}"),
    ];
    let gw = spec.passt.gateway;
    let greeting = b"hello from the host side\n".to_vec();
    let Some((report, probe)) = run(&spec, move || {
        let probe = InboundProbe::start(INBOUND_HOST_PORT, greeting, Duration::from_secs(80))?;
        let body = format!(
            r#"head -c {INBOUND_LEN} /dev/urandom > /tmp/served
echo "served_sha256=$(sha256sum /tmp/served | cut -d' ' -f1)"
timeout 40 nc -l -p {INBOUND_GUEST_PORT} < /tmp/served > /tmp/from_host &
pid=$!
i=0
while ! netstat -ltn | grep -q ':{INBOUND_GUEST_PORT} ' && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
echo ready | timeout 10 nc {gw} {ready}
wait $pid; rc=$?
echo "from_host=$(cat /tmp/from_host)"
exit $rc"#,
            ready = probe.ready_port
        );
        Ok((
            GuestScript::new()
                .check("dhcp", DHCP_CHECK)
                .check("inbound", &body),
            probe,
        ))
    }) else {
        return;
    };
    check_passed(&report, "dhcp");
    let stats: Result<InboundStats, _> = probe.join();
    let c = report.check("inbound").expect("inbound check");
    let stats = stats.unwrap_or_else(|e| {
        panic!(
            "host side of the inbound connection: {e:#}\n{}",
            report.summary()
        )
    });
    assert!(c.passed(), "{}", report.summary());
    assert_eq!(stats.ready_line, "ready");
    assert_eq!(stats.bytes, INBOUND_LEN, "{}", report.summary());
    assert_eq!(stats.sha256, value(&report, c, "served_sha256"));
    assert_eq!(value(&report, c, "from_host"), "hello from the host side");
}

// -- Reboot and sequential guests --------------------------------------------

/// Asks the host's boot counter which boot this is; the reply echoes a random
/// token, so a pass proves a full TCP round trip. Leaves `boot=N` in /tmp/boot.
fn boot_counter_check(gw: Ipv4Addr, port: u16) -> String {
    format!(
        r#"tok="t$(head -c 8 /dev/urandom | md5sum | cut -c1-12)"
out=$(echo "token=$tok" | timeout 20 nc {gw} {port})
echo "$out"
echo "$out" | grep -qx "echo=token=$tok" || exit 1
echo "$out" | grep '^boot=' > /tmp/boot"#
    )
}

/// The guest reboots (`reboot -f`, QEMU without `-no-reboot`) once the host said
/// "boot=1", and after the reboot gets a lease and TCP through the same passt
/// (started without `-1`) over the same QEMU socket connection.
#[test]
fn guest_reboot_reconnects_to_same_passt() {
    let mut spec = RunSpec::new("guest_reboot");
    spec.passt.one_off = false;
    spec.allow_reboot = true;
    let gw = spec.passt.gateway;
    let Some((report, counter)) = run(&spec, move || {
        let counter = BootCounterServer::start(2, Duration::from_secs(80))?;
        let script = GuestScript::new()
            .check("dhcp", DHCP_CHECK)
            .check("counter", &boot_counter_check(gw, counter.port))
            .step(
                r#"if grep -qx 'boot=1' /tmp/boot 2>/dev/null; then
    echo "@@WARN rebooting after boot 1"
    reboot -f
    sleep 30
fi"#,
            );
        Ok((script, counter))
    }) else {
        return;
    };
    let lines = counter.join().expect("boot counter");
    let boots = report.boots();
    assert_eq!(boots.len(), 2, "{}", report.summary());
    for (i, boot) in boots.iter().enumerate() {
        for c in &boot.checks {
            assert!(
                c.passed(),
                "boot {} check {} {:?}\n{}",
                i + 1,
                c.name,
                c.status,
                report.summary()
            );
        }
        let counter = boot.checks.iter().find(|c| c.name == "counter");
        assert_eq!(
            counter.and_then(|c| c.value("boot")),
            Some((i + 1).to_string().as_str()),
            "{}",
            report.summary()
        );
    }
    assert!(boots[1].done_at.is_some(), "{}", report.summary());
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(report.qemu_runs.len(), 1);
    assert!(
        report.qemu_runs[0].exit.is_some_and(|s| s.success()),
        "{}",
        report.summary()
    );
    assert_eq!(report.outbound_tx_packets, 0, "{}", report.summary());
}

/// Two QEMU processes one after the other against one passt (no `-1`): the second
/// connects to the same socket after the first powered off, gets a lease and TCP.
#[test]
fn two_guests_in_sequence_on_one_passt() {
    let mut spec = RunSpec::new("two_guests");
    spec.passt.one_off = false;
    spec.guests = 2;
    let gw = spec.passt.gateway;
    let Some((report, counter)) = run(&spec, move || {
        let counter = BootCounterServer::start(2, Duration::from_secs(80))?;
        let script = GuestScript::new()
            .check("dhcp", DHCP_CHECK)
            .check("counter", &boot_counter_check(gw, counter.port));
        Ok((script, counter))
    }) else {
        return;
    };
    let lines = counter.join().expect("boot counter");
    assert_eq!(report.passt_gone_before_guest, None, "{}", report.summary());
    assert_eq!(report.qemu_runs.len(), 2, "{}", report.summary());
    for (i, run) in report.qemu_runs.iter().enumerate() {
        assert_eq!(run.boots.len(), 1, "{}", report.summary());
        let boot = &run.boots[0];
        for c in &boot.checks {
            assert!(
                c.passed(),
                "guest {} check {} {:?}\n{}",
                i + 1,
                c.name,
                c.status,
                report.summary()
            );
        }
        let counter = boot.checks.iter().find(|c| c.name == "counter");
        assert_eq!(
            counter.and_then(|c| c.value("boot")),
            Some((i + 1).to_string().as_str())
        );
        let dhcp = boot.checks.iter().find(|c| c.name == "dhcp");
        assert_eq!(
            dhcp.and_then(|c| c.value("ip")),
            Some(spec.passt.address.to_string().as_str())
        );
    }
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(report.outbound_tx_packets, 0, "{}", report.summary());
}

#[test]
fn eui64_matches_rfc_4291_example() {
    assert_eq!(
        eui64_address(HOST_V6_ADDR, "52:54:00:12:34:56"),
        Some("2001:db8:1:0:5054:ff:fe12:3456".parse().expect("v6"))
    );
}
