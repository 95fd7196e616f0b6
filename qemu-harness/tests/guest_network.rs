//! The first QEMU-guest regression checks against the passt binary under test
//! (`PASST_BIN`, default Debian's /usr/bin/passt). Each test boots one guest.
//! Skips visibly (`QEMU-HARNESS-SKIPPED`) where QEMU, the binary or root is missing.

use std::time::Duration;

use qemu_harness::services::{EchoClose, HttpOnceServer, TcpEchoServer};
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
