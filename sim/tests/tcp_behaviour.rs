//! TCP behaviour of the engine on the simulator arm (issue #4): a smoltcp
//! guest, the engine, `SimHost` and remote services on virtual time.
//!
//! The real-kernel counterparts are in `engine/tests/tcp_smoltcp.rs`; here
//! the same behaviours are checked with what only a simulation can see:
//! the host model's socket queues sampled after every step, the engine's
//! flow table and timers, and the guest side of the wire (pcap).
//!
//! - back-pressure: a slow remote reader throttles the guest through the
//!   window the engine advertises, with nothing buffered by the engine;
//!   a guest that stops reading stops the engine consuming from the
//!   host socket, which fills and blocks the remote sender;
//! - half-close in both directions, byte-exact;
//! - RST mid-transfer in both directions, with every piece of state
//!   reclaimed;
//! - connection refused (fast), connect timeout (a blackholed remote:
//!   the engine's connect timeout, in virtual time);
//! - 1,000 concurrent connections (twice, in a flow table of exactly
//!   1,000), all state reclaimed.
//!
//! Every test runs through `for_each_seed` (its failure prints
//! `PASST_SIM_SEED=... cargo test -p passt-sim -- NAME`); `PASST_SIM_SEEDS=N`
//! widens the sweep.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use passt_engine::wire::{self, L3, L4, TcpFlags};
use passt_engine::{DropReason, Instant};
use passt_sim::host::HostTcpSocket;
use passt_sim::pcap::Capture;
use passt_sim::scenario::{RunReport, Scenario, ScenarioRun};
use passt_sim::{Simulation, StopReason, for_each_seed, for_each_seeds};

const GUEST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 15);

fn inline(text: &str) -> Scenario {
    Scenario::from_toml(text, "inline.toml", None).unwrap_or_else(|e| panic!("{e}"))
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

fn secs(t: Instant) -> f64 {
    t.as_nanos() as f64 / 1e9
}

/// One TCP segment on the guest side of the wire, as captured (frames the
/// guest sends at their send time, frames it receives at their arrival).
#[derive(Clone, Copy, Debug)]
struct Seg {
    t: u64,
    from_guest: bool,
    peer: SocketAddr,
    seq: u32,
    ack: u32,
    win: u16,
    flags: TcpFlags,
    len: u32,
    wscale: Option<u8>,
}

fn segments(pcap: &[u8]) -> Vec<Seg> {
    let mut cap = Capture::new(pcap).expect("capture");
    let mut out = Vec::new();
    while let Some(Ok(rec)) = cap.next_record() {
        let Ok(f) = wire::parse_frame(rec.data) else {
            continue;
        };
        let L3::Ipv4 {
            ip,
            l4: L4::Tcp { tcp, payload },
        } = f.l3
        else {
            continue;
        };
        let from_guest = ip.src_addr == GUEST;
        let peer = if from_guest {
            SocketAddr::new(IpAddr::V4(ip.dst_addr), tcp.dst_port)
        } else {
            SocketAddr::new(IpAddr::V4(ip.src_addr), tcp.src_port)
        };
        out.push(Seg {
            t: rec.ts_nanos,
            from_guest,
            peer,
            seq: tcp.seq,
            ack: tcp.ack,
            win: tcp.window,
            flags: tcp.flags,
            len: payload.len() as u32,
            wscale: tcp.options.window_scale,
        });
    }
    out
}

/// One connection's segments with what its SYNs said.
struct Conn {
    segs: Vec<Seg>,
    guest_isn: u32,
    /// Shift of the windows the engine advertises (RFC 7323 §2.3: only
    /// when both SYNs carry the option).
    engine_shift: u8,
}

impl Conn {
    fn of(all: &[Seg], peer: SocketAddr) -> Result<Conn, String> {
        let segs: Vec<Seg> = all.iter().filter(|s| s.peer == peer).copied().collect();
        let syn = segs
            .iter()
            .find(|s| s.from_guest && s.flags.contains(TcpFlags::SYN))
            .ok_or_else(|| format!("no guest SYN to {peer}"))?;
        let synack = segs
            .iter()
            .find(|s| !s.from_guest && s.flags.contains(TcpFlags::SYN))
            .ok_or_else(|| format!("no SYN-ACK from {peer}"))?;
        let engine_shift = match (syn.wscale, synack.wscale) {
            (Some(_), Some(s)) => s,
            _ => 0,
        };
        Ok(Conn {
            guest_isn: syn.seq,
            engine_shift,
            segs,
        })
    }

    /// Guest payload bytes up to the end of `s` (stream offset).
    fn guest_end(&self, s: &Seg) -> u64 {
        u64::from(s.seq.wrapping_sub(self.guest_isn).wrapping_sub(1)) + u64::from(s.len)
    }

    /// Guest stream bytes the engine acknowledged with `s`.
    fn engine_acked(&self, s: &Seg) -> u64 {
        u64::from(s.ack.wrapping_sub(self.guest_isn).wrapping_sub(1))
    }

    /// Window the engine advertised with `s`, scaled.
    fn engine_window(&self, s: &Seg) -> u64 {
        u64::from(s.win) << self.engine_shift
    }

    /// Time of the first segment from `from_guest` carrying FIN.
    fn fin_time(&self, from_guest: bool) -> Option<u64> {
        self.segs
            .iter()
            .find(|s| s.from_guest == from_guest && s.flags.contains(TcpFlags::FIN))
            .map(|s| s.t)
    }

    /// Payload bytes in segments from `from_guest` captured after `t`.
    fn payload_after(&self, from_guest: bool, t: u64) -> u64 {
        self.segs
            .iter()
            .filter(|s| s.from_guest == from_guest && s.t > t)
            .map(|s| u64::from(s.len))
            .sum()
    }

    fn has_rst(&self, from_guest: bool) -> bool {
        self.segs
            .iter()
            .any(|s| s.from_guest == from_guest && s.flags.contains(TcpFlags::RST))
    }
}

/// Nothing of any TCP connection is left: no engine flow, no engine TCP
/// timer, no host socket the engine holds, no connection alive in the
/// host model (orphans included).
fn all_reclaimed(sim: &Simulation) -> Result<(), String> {
    let tcp = sim.engine().tcp();
    check(tcp.flow_count() == 0, || {
        format!("{} engine TCP flows left", tcp.flow_count())
    })?;
    check(tcp.poll_timeout().is_none(), || {
        format!("engine TCP timer still pending at {:?}", tcp.poll_timeout())
    })?;
    let host = sim.host();
    check(host.open_host_sockets() == 0, || {
        format!(
            "{} host sockets left open: {:?}",
            host.open_host_sockets(),
            host.host_tcp_sockets()
        )
    })?;
    check(host.live_tcp_connections() == 0, || {
        format!(
            "{} TCP connections alive in the host model",
            host.live_tcp_connections()
        )
    })?;
    let c = sim.engine().counters();
    check(c.flows_opened == c.flows_closed, || {
        format!(
            "flows opened/closed: {} / {}",
            c.flows_opened, c.flows_closed
        )
    })
}

fn run<'a>(
    sc: &'a Scenario,
    seed: u64,
    capture: bool,
    observe: &mut dyn FnMut(&Simulation),
) -> Result<(RunReport, ScenarioRun<'a>), String> {
    let mut r = sc.start(seed, capture).map_err(|e| e.to_string())?;
    let report = r.run(observe).map_err(|e| e.to_string())?;
    Ok((report, r))
}

fn host_sock_to(sim: &Simulation, peer: SocketAddr) -> Option<HostTcpSocket> {
    sim.host()
        .host_tcp_sockets()
        .into_iter()
        .find(|s| s.remote == peer)
}

// ---------------------------------------------------------------------
// Back-pressure
// ---------------------------------------------------------------------

const SLOW_READER: &str = r#"
name = "tcp-backpressure-slow-remote"
duration = 30
[guest]
dhcp = false
[[guest.workload]]
type = "tcp-send"
dst = "203.0.113.7:9"
bytes = 2000000
timeout = 25
[[remote]]
service = "tcp-sink"
addr = "203.0.113.7:9"
rate = 400000
"#;

/// A remote that reads 400 kB/s while the guest sends 2 MB: the host
/// socket's send queue fills up to `SO_SNDBUF` and no further, the engine
/// acknowledges to the guest only what that socket accepted (it buffers
/// nothing), the window it advertises closes, the guest never has more in
/// flight than that window allows, and every byte arrives in order.
#[test]
fn slow_remote_reader_throttles_the_guest_through_the_window() {
    let sc = inline(SLOW_READER);
    let peer: SocketAddr = "203.0.113.7:9".parse().unwrap();
    for_each_seed(
        "slow_remote_reader_throttles_the_guest_through_the_window",
        1,
        |seed| {
            // (time, bytes the host socket accepted so far)
            let mut accepted: Vec<(u64, u64)> = Vec::new();
            let mut max_queued = 0usize;
            let mut over_buf: Option<String> = None;
            let mut observe = |sim: &Simulation| {
                if let Some(s) = host_sock_to(sim, peer) {
                    max_queued = max_queued.max(s.send_queued);
                    if s.send_queued > s.send_buf && over_buf.is_none() {
                        over_buf = Some(format!("{s:?} at {}", sim.now()));
                    }
                    let a = s.bytes_acked + s.send_queued as u64;
                    if accepted.last().is_none_or(|l| l.1 != a) {
                        accepted.push((sim.now().as_nanos(), a));
                    }
                }
            };
            let (r, mut run) = run(&sc, seed, true, &mut observe)?;
            check(r.passed(), || format!("{r}"))?;
            // The guest is done once everything is acknowledged; the
            // remote still has up to two buffers to read.
            run.settle(Duration::from_secs(5), &mut observe);
            let sink = &run.sinks()[0];
            check(
                sink.bytes() == 2_000_000 && sink.corrupt() == 0 && sink.eofs() == 1,
                || {
                    format!(
                        "sink: {} B, {} corrupt, {} EOFs",
                        sink.bytes(),
                        sink.corrupt(),
                        sink.eofs()
                    )
                },
            )?;
            // The read rate paced the transfer: the guest cannot be done
            // before the reader has read all but what fits in the two
            // socket buffers, (2 MB - 512 KiB) / 400 kB/s = 3.7 s.
            let w = &r.workloads[0];
            let took = w.finished.unwrap_or(r.virtual_end) - w.started.unwrap_or(Instant::ZERO);
            check(took >= Duration::from_millis(3600), || {
                format!("2 MB through a 400 kB/s reader took only {took:?}")
            })?;
            // The host model's memory: the send queue reached SO_SNDBUF
            // (the guest really was held back) and never exceeded it.
            check(over_buf.is_none(), || {
                format!("send queue beyond SO_SNDBUF: {over_buf:?}")
            })?;
            let sndbuf = run.sim().host().config().send_buf;
            check(max_queued + 65_536 >= sndbuf, || {
                format!("send queue peaked at {max_queued} of {sndbuf}: never throttled")
            })?;

            let all = segments(r.pcap.as_deref().unwrap_or_default());
            let conn = Conn::of(&all, peer)?;
            let guest_fin = conn.fin_time(true).ok_or("no guest FIN")?;
            let mut edge = 0u64; // highest right edge advertised so far
            let mut min_wnd = u64::MAX;
            let mut max_acked = 0u64;
            for s in &conn.segs {
                if s.flags.contains(TcpFlags::SYN) {
                    if !s.from_guest {
                        // RFC 7323 §2.2: a SYN's window is never scaled.
                        edge = edge.max(u64::from(s.win));
                    }
                    continue;
                }
                if s.from_guest {
                    // In flight never beyond the window (one byte more
                    // for a zero-window probe, RFC 9293 §3.8.6.1).
                    let end = conn.guest_end(s);
                    check(s.len == 0 || end <= edge + 1, || {
                        format!("guest sent up to {end} at {} ns, window edge {edge}", s.t)
                    })?;
                } else {
                    // The guest's FIN occupies one more sequence number.
                    let acked = conn.engine_acked(s).min(2_000_000);
                    max_acked = max_acked.max(acked);
                    edge = edge.max(acked + conn.engine_window(s));
                    if s.t < guest_fin {
                        min_wnd = min_wnd.min(conn.engine_window(s));
                    }
                    // No buffer in the engine: it acknowledged only bytes
                    // the host socket had taken by then.
                    let i = accepted.partition_point(|(t, _)| *t <= s.t);
                    let taken = if i == 0 { 0 } else { accepted[i - 1].1 };
                    check(acked <= taken, || {
                        format!(
                            "engine acknowledged {acked} B at {} ns, the socket had taken {taken}",
                            s.t
                        )
                    })?;
                }
            }
            check(max_acked == 2_000_000, || {
                format!("engine acknowledged {max_acked} of 2000000 B")
            })?;
            check(min_wnd < 1460, || {
                format!("the window never closed (smallest {min_wnd} B)")
            })?;
            Ok(())
        },
    );
}

const GUEST_STALL: &str = r#"
name = "tcp-backpressure-guest-stall"
duration = 30
[guest]
dhcp = false
[[guest.workload]]
type = "tcp-recv"
dst = "203.0.113.7:19"
bytes = 3000000
pause_after = 500000
pause = 3
timeout = 25
[[remote]]
service = "tcp-source"
addr = "203.0.113.7:19"
bytes = 3000000
"#;

/// The guest's application stops reading for 3 s after 500 kB: smoltcp's
/// window closes, the engine stops consuming from the host socket, whose
/// receive queue fills to `SO_RCVBUF` and stays there: what the remote
/// sender got into the host is flat for the rest of the stall (it is
/// blocked). After the stall all 3 MB arrive, byte-exact.
#[test]
fn guest_that_stops_reading_blocks_the_remote_sender() {
    let sc = inline(GUEST_STALL);
    let peer: SocketAddr = "203.0.113.7:19".parse().unwrap();
    for_each_seed(
        "guest_that_stops_reading_blocks_the_remote_sender",
        1,
        |seed| {
            // (time, host socket bytes received, queued, rcvbuf, engine bytes out)
            let mut samples: Vec<(Instant, u64, usize, usize, u64)> = Vec::new();
            let mut observe = |sim: &Simulation| {
                if let Some(s) = host_sock_to(sim, peer) {
                    samples.push((
                        sim.now(),
                        s.bytes_received,
                        s.recv_queued,
                        s.recv_buf,
                        sim.engine().counters().bytes_out,
                    ));
                }
            };
            let (r, _run) = run(&sc, seed, false, &mut observe)?;
            check(r.passed(), || format!("{r}"))?;
            let w = &r.workloads[0];
            check(w.bytes_received == 3_000_000 && w.corrupt == 0, || {
                format!("{w:?}")
            })?;
            let (Some(paused), Some(resumed)) = (w.paused_at, w.resumed_at) else {
                return Err(format!("the workload never paused and resumed: {w:?}"));
            };
            check(resumed - paused >= Duration::from_secs(3), || {
                format!("paused {paused}, resumed {resumed}")
            })?;
            // One second into the stall everything is full; from then on
            // nothing moves from the remote into the host.
            let settled = paused + Duration::from_secs(1);
            let stalled: Vec<_> = samples
                .iter()
                .filter(|s| s.0 >= settled && s.0 < resumed)
                .collect();
            check(!stalled.is_empty(), || "no samples during the stall".into())?;
            let first = stalled[0];
            let last = stalled[stalled.len() - 1];
            check(first.1 == last.1, || {
                format!(
                    "the host socket kept receiving while the guest did not read: {} B at {}, {} B at {}",
                    first.1, first.0, last.1, last.0
                )
            })?;
            check(last.1 < 3_000_000, || {
                "the whole stream reached the host during the stall: nothing was held back".into()
            })?;
            check(stalled.iter().all(|s| s.2 == s.3), || {
                let q: Vec<_> = stalled.iter().map(|s| (s.2, s.3)).take(5).collect();
                format!("host receive queue not full during the stall: {q:?}")
            })?;
            // Window probes and ACKs only: far less than a window.
            let out = last.4 - first.4;
            check(out < 16 * 1024, || {
                format!("{out} B sent to the guest during the stall")
            })?;
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------
// Half-close
// ---------------------------------------------------------------------

const GUEST_FIN_FIRST: &str = r#"
name = "tcp-half-close-guest-first"
duration = 30
[guest]
dhcp = false
[[guest.workload]]
type = "tcp-half-close"
dst = "203.0.113.7:7"
bytes = 300000
timeout = 25
[[remote]]
service = "tcp-echo"
addr = "203.0.113.7:7"
"#;

/// The guest sends 300 kB and its FIN at once; the remote echo goes on
/// sending after that FIN (most of the echo crosses the wire after it),
/// every byte comes back in order, then the remote's FIN; nothing is left.
#[test]
fn guest_half_close_while_the_remote_still_sends() {
    let sc = inline(GUEST_FIN_FIRST);
    let peer: SocketAddr = "203.0.113.7:7".parse().unwrap();
    for_each_seed("guest_half_close_while_the_remote_still_sends", 1, |seed| {
        let (r, mut run) = run(&sc, seed, true, &mut |_| {})?;
        check(r.passed(), || format!("{r}"))?;
        let w = &r.workloads[0];
        check(
            w.bytes_sent == 300_000 && w.bytes_received == 300_000 && w.corrupt == 0,
            || format!("{w:?}"),
        )?;
        let conn = Conn::of(&segments(r.pcap.as_deref().unwrap_or_default()), peer)?;
        let guest_fin = conn.fin_time(true).ok_or("no guest FIN")?;
        let engine_fin = conn.fin_time(false).ok_or("no FIN to the guest")?;
        let after = conn.payload_after(false, guest_fin);
        check(after >= 100_000, || {
            format!("only {after} B reached the guest after its FIN")
        })?;
        check(engine_fin > guest_fin, || "FINs out of order".into())?;
        check(conn.payload_after(false, engine_fin) == 0, || {
            "data after the remote's FIN".into()
        })?;
        run.settle(Duration::from_secs(5), &mut |_| {});
        all_reclaimed(run.sim())
    });
}

const REMOTE_FIN_FIRST: &str = r#"
name = "tcp-half-close-remote-first"
duration = 30
[guest]
dhcp = false
[[guest.workload]]
type = "tcp-send"
dst = "203.0.113.7:9"
bytes = 1000000
timeout = 25
[[remote]]
service = "tcp-sink"
addr = "203.0.113.7:9"
fin_first = true
"#;

/// The remote half-closes as soon as it accepts; the guest, in CLOSE-WAIT,
/// still sends 1 MB (most of it after the FIN reached it), which all
/// arrives in order before its own FIN.
#[test]
fn remote_half_close_while_the_guest_still_sends() {
    let sc = inline(REMOTE_FIN_FIRST);
    let peer: SocketAddr = "203.0.113.7:9".parse().unwrap();
    for_each_seed("remote_half_close_while_the_guest_still_sends", 1, |seed| {
        let (r, mut run) = run(&sc, seed, true, &mut |_| {})?;
        check(r.passed(), || format!("{r}"))?;
        run.settle(Duration::from_secs(5), &mut |_| {});
        let sink = &run.sinks()[0];
        check(
            sink.bytes() == 1_000_000 && sink.corrupt() == 0 && sink.eofs() == 1,
            || {
                format!(
                    "sink: {} B, {} corrupt, {} EOFs",
                    sink.bytes(),
                    sink.corrupt(),
                    sink.eofs()
                )
            },
        )?;
        let conn = Conn::of(&segments(r.pcap.as_deref().unwrap_or_default()), peer)?;
        let remote_fin = conn.fin_time(false).ok_or("no FIN to the guest")?;
        let guest_fin = conn.fin_time(true).ok_or("no guest FIN")?;
        check(remote_fin < guest_fin, || {
            "the remote's FIN came last".into()
        })?;
        let after = conn.payload_after(true, remote_fin);
        // The remote's FIN crosses 10 ms of path: about one socket
        // buffer of data leaves before it arrives, the rest after.
        check(after >= 500_000, || {
            format!("only {after} B sent by the guest after the remote's FIN")
        })?;
        all_reclaimed(run.sim())
    });
}

// ---------------------------------------------------------------------
// Resets
// ---------------------------------------------------------------------

const GUEST_ABORTS: &str = r#"
name = "tcp-guest-aborts"
duration = 30
[guest]
dhcp = false
[[guest.workload]]
type = "tcp-send"
dst = "203.0.113.7:9"
bytes = 1000000
abort_after = 200000
timeout = 25
[[remote]]
service = "tcp-sink"
addr = "203.0.113.7:9"
"#;

/// The guest aborts after handing 200 kB to its socket: the engine resets
/// the host connection, the remote's read fails with a reset (no EOF),
/// what it read before is in order; nothing is left anywhere.
#[test]
fn guest_reset_mid_transfer_resets_the_remote() {
    let sc = inline(GUEST_ABORTS);
    let peer: SocketAddr = "203.0.113.7:9".parse().unwrap();
    for_each_seed("guest_reset_mid_transfer_resets_the_remote", 1, |seed| {
        let (r, mut run) = run(&sc, seed, true, &mut |_| {})?;
        check(r.passed(), || format!("{r}"))?;
        let w = &r.workloads[0];
        check(w.aborted_at.is_some() && w.bytes_sent == 200_000, || {
            format!("{w:?}")
        })?;
        let conn = Conn::of(&segments(r.pcap.as_deref().unwrap_or_default()), peer)?;
        check(conn.has_rst(true), || "the guest sent no RST".into())?;
        run.settle(Duration::from_secs(5), &mut |_| {});
        let sink = &run.sinks()[0];
        check(
            sink.resets() == 1
                && sink.eofs() == 0
                && sink.bytes() > 0
                && sink.bytes() <= 200_000
                && sink.corrupt() == 0,
            || {
                format!(
                    "sink: {} B, {} corrupt, {} EOFs, {} resets",
                    sink.bytes(),
                    sink.corrupt(),
                    sink.eofs(),
                    sink.resets()
                )
            },
        )?;
        all_reclaimed(run.sim())
    });
}

const REMOTE_ABORTS: &str = r#"
name = "tcp-remote-aborts"
duration = 30
[guest]
dhcp = false
[[guest.workload]]
type = "tcp-recv"
dst = "203.0.113.7:19"
bytes = 1000000
timeout = 25
[[guest.workload]]
type = "tcp-send"
dst = "203.0.113.7:9"
bytes = 1000000
timeout = 25
[[remote]]
service = "tcp-source"
addr = "203.0.113.7:19"
bytes = 1000000
abort_after = 300000
[[remote]]
service = "tcp-sink"
addr = "203.0.113.7:9"
abort_after = 300000
[expect]
workload_error = "connection reset"
"#;

/// The remote aborts mid-transfer, once while it sends (a source) and once
/// while the guest sends (a sink): the guest sees a reset each time (not
/// a FIN), after some of the stream, in order; nothing is left anywhere.
#[test]
fn remote_reset_mid_transfer_resets_the_guest() {
    let sc = inline(REMOTE_ABORTS);
    for_each_seed("remote_reset_mid_transfer_resets_the_guest", 1, |seed| {
        let (r, mut run) = run(&sc, seed, true, &mut |_| {})?;
        check(r.passed(), || format!("{r}"))?;
        let (recv, send) = (&r.workloads[0], &r.workloads[1]);
        check(
            recv.bytes_received > 0 && recv.bytes_received <= 300_000 + 65_536 && recv.corrupt == 0,
            || format!("download: {recv:?}"),
        )?;
        check(send.bytes_sent > 0 && send.bytes_sent < 1_000_000, || {
            format!("upload: {send:?}")
        })?;
        let all = segments(r.pcap.as_deref().unwrap_or_default());
        for port in [19, 9] {
            let conn = Conn::of(&all, SocketAddr::from(([203, 0, 113, 7], port)))?;
            check(conn.has_rst(false), || {
                format!("no RST to the guest from port {port}")
            })?;
            check(conn.fin_time(false).is_none(), || {
                format!("a FIN instead of a reset from port {port}")
            })?;
        }
        let sink = &run.sinks()[0];
        check(
            sink.corrupt() == 0 && sink.bytes() <= 300_000 + 65_536,
            || format!("sink: {} B, {} corrupt", sink.bytes(), sink.corrupt()),
        )?;
        run.settle(Duration::from_secs(5), &mut |_| {});
        all_reclaimed(run.sim())
    });
}

// ---------------------------------------------------------------------
// Refused, connect timeout
// ---------------------------------------------------------------------

const REFUSED: &str = r#"
name = "tcp-refused-fast"
duration = 10
[guest]
dhcp = false
[[guest.workload]]
type = "tcp-echo"
dst = "203.0.113.7:81"
bytes = 1000
timeout = 5
[expect]
workload_error = "connection refused"
"#;

/// Nothing listens: the remote host answers the SYN with a RST, the guest
/// gets its RST within a round trip (well under a second of virtual
/// time), and the flow is gone.
#[test]
fn refused_connection_fails_fast() {
    let sc = inline(REFUSED);
    for_each_seed("refused_connection_fails_fast", 1, |seed| {
        let (r, mut run) = run(&sc, seed, true, &mut |_| {})?;
        check(r.passed(), || format!("{r}"))?;
        let w = &r.workloads[0];
        let took = w.finished.unwrap_or(r.virtual_end) - w.started.unwrap_or(Instant::ZERO);
        // One round trip on the 10 ms path, and the guest's ARP for the
        // gateway.
        check(took < Duration::from_millis(200), || {
            format!("refusal took {took:?}")
        })?;
        let peer: SocketAddr = "203.0.113.7:81".parse().unwrap();
        let segs = segments(r.pcap.as_deref().unwrap_or_default());
        let syn = segs
            .iter()
            .find(|s| s.peer == peer && s.from_guest && s.flags.contains(TcpFlags::SYN))
            .ok_or("no SYN")?;
        let rst = segs
            .iter()
            .find(|s| s.peer == peer && !s.from_guest && s.flags.contains(TcpFlags::RST))
            .ok_or("no RST to the guest")?;
        // RFC 9293 §3.10.7.1: the RST acknowledges the SYN.
        check(rst.ack == syn.seq.wrapping_add(1), || {
            format!("RST {rst:?} for SYN {syn:?}")
        })?;
        run.settle(Duration::from_secs(1), &mut |_| {});
        all_reclaimed(run.sim())
    });
}

const BLACKHOLE: &str = r#"
name = "tcp-connect-timeout"
duration = 40
[guest]
dhcp = false
[[guest.workload]]
type = "tcp-echo"
dst = "203.0.113.99:80"
bytes = 1000
timeout = 30
[[remote_host]]
ip = "203.0.113.99"
reach = "blackhole"
[expect]
workload_error = "connection refused"
"#;

/// The remote swallows every SYN: the host connect never completes, the
/// engine gives up after its connect timeout (10 s of virtual time, well
/// before the kernel's own SYN retries would), resets the guest's
/// connection attempt and reclaims the flow and its socket.
#[test]
fn connect_to_a_blackhole_times_out() {
    let sc = inline(BLACKHOLE);
    for_each_seed("connect_to_a_blackhole_times_out", 1, |seed| {
        let mut max_flows = 0;
        let (r, mut run) = run(&sc, seed, true, &mut |sim| {
            max_flows = max_flows.max(sim.engine().tcp().flow_count());
        })?;
        check(r.passed(), || format!("{r}"))?;
        check(max_flows == 1, || format!("{max_flows} flows at most"))?;
        let w = &r.workloads[0];
        let took = w.finished.unwrap_or(r.virtual_end) - w.started.unwrap_or(Instant::ZERO);
        check(
            took >= Duration::from_secs(10) && took < Duration::from_millis(10_500),
            || format!("connect failed after {took:?}, expected the 10 s connect timeout"),
        )?;
        let conn = Conn::of(
            &segments(r.pcap.as_deref().unwrap_or_default()),
            "203.0.113.99:80".parse().unwrap(),
        );
        // No SYN-ACK ever, so `Conn::of` fails; look at the raw segments.
        check(conn.is_err(), || "a SYN-ACK from a blackhole".into())?;
        let rst = segments(r.pcap.as_deref().unwrap_or_default())
            .into_iter()
            .find(|s| !s.from_guest && s.flags.contains(TcpFlags::RST))
            .ok_or("no RST to the guest")?;
        check(rst.t >= 10_000_000_000, || {
            format!("RST at {} s", rst.t as f64 / 1e9)
        })?;
        run.settle(Duration::from_secs(2), &mut |_| {});
        all_reclaimed(run.sim())
    });
}

// ---------------------------------------------------------------------
// 1,000 concurrent connections
// ---------------------------------------------------------------------

const CONNECTIONS: usize = 1000;

fn thousand_connections() -> Scenario {
    let mut t = String::from(
        r#"
name = "tcp-1000-connections"
duration = 60
[engine]
flow_capacity = 1000
tx_queue_frames = 4096
[guest]
dhcp = false
[[remote]]
service = "tcp-echo"
addr = "203.0.113.7:7"
"#,
    );
    // Two rounds of 1,000, the second starting once the first is over:
    // with a table of exactly 1,000 flows it only fits if every flow of
    // the first round was reclaimed.
    for round in 0..2 {
        for _ in 0..CONNECTIONS {
            t.push_str(&format!(
                "[[guest.workload]]\ntype = \"tcp-echo\"\ndst = \"203.0.113.7:7\"\nbytes = 100\nbuffer = 1024\nstart = {}\ntimeout = 15\n",
                round * 20
            ));
        }
    }
    inline(&t)
}

/// 1,000 connections open at once (the guest opens them all at one
/// instant), each echoes 100 bytes and closes; then 1,000 more in the same
/// table of 1,000. Afterwards: no flow, no engine TCP timer, no host
/// socket, no connection in the host model.
#[test]
fn thousand_concurrent_connections_are_all_reclaimed() {
    let sc = thousand_connections();
    for_each_seed(
        "thousand_concurrent_connections_are_all_reclaimed",
        1,
        |seed| {
            let mut max_flows = 0;
            let mut max_socks = 0;
            let mut flows_between_rounds = None;
            let (r, mut run) = run(&sc, seed, false, &mut |sim| {
                let n = sim.engine().tcp().flow_count();
                max_flows = max_flows.max(n);
                max_socks = max_socks.max(sim.host().open_host_sockets());
                if flows_between_rounds.is_none() && secs(sim.now()) >= 19.0 {
                    flows_between_rounds = Some((
                        n,
                        sim.host().open_host_sockets(),
                        sim.host().live_tcp_connections(),
                    ));
                }
            })?;
            check(r.passed(), || {
                let failed: Vec<_> = r
                    .workloads
                    .iter()
                    .filter(|w| !w.succeeded())
                    .take(3)
                    .collect();
                format!("{} failures; first: {failed:?}", r.failures.len())
            })?;
            check(r.workloads.len() == 2 * CONNECTIONS, || "workloads".into())?;
            check(
                r.workloads
                    .iter()
                    .all(|w| w.bytes_sent == 100 && w.bytes_received == 100 && w.corrupt == 0),
                || "an echo was not byte-exact".into(),
            )?;
            check(max_flows == CONNECTIONS, || {
                format!("at most {max_flows} flows at once, expected {CONNECTIONS}")
            })?;
            check(max_socks >= CONNECTIONS, || {
                format!("at most {max_socks} host sockets at once")
            })?;
            check(flows_between_rounds == Some((0, 0, 0)), || {
                format!(
                    "between rounds (flows, host sockets, connections): {flows_between_rounds:?}"
                )
            })?;
            check(r.engine.drops(DropReason::FlowTableFull) == 0, || {
                format!("{r}")
            })?;
            run.settle(Duration::from_secs(5), &mut |_| {});
            all_reclaimed(run.sim())
        },
    );
}

/// The settle step itself is not vacuous: right after a run that leaves a
/// connection open, `all_reclaimed` fails.
#[test]
fn the_reclaim_check_sees_a_live_connection() {
    let sc = inline(
        r#"
duration = 3
[guest]
dhcp = false
[[guest.workload]]
type = "tcp-recv"
dst = "203.0.113.7:19"
bytes = 3000000
pause_after = 1000
pause = 100
timeout = 200
[[remote]]
service = "tcp-source"
addr = "203.0.113.7:19"
bytes = 3000000
"#,
    );
    let (r, run) = run(&sc, 1, false, &mut |_| {}).unwrap();
    assert_eq!(r.stop, StopReason::TimeUp, "{r}");
    let e = all_reclaimed(run.sim()).expect_err("a stalled connection is live");
    assert!(e.contains("flows left"), "{e}");
}

/// A 1 MB upload with 1 ms of jitter on both link directions (segments
/// and ACKs reordered, no loss). The engine keeps no out-of-order queue (by
/// design: no data buffer), so every reordered guest segment is dropped and
/// draws a duplicate ACK. This used to stall (seed 1 silent from 31.25 s
/// to 63.25 s with 65 kB unacknowledged, the guest's retransmission timer
/// backed off to 32 s) until the engine held its window steady for
/// duplicate ACKs and nudged guests that leave a hole open
/// (docs/decisions.md, "TCP loss recovery without an out-of-order buffer").
#[test]
fn upload_under_two_way_reordering_completes() {
    let sc = inline(
        r#"
duration = 60
[guest]
dhcp = false
[[guest.workload]]
type = "tcp-send"
dst = "203.0.113.7:9"
bytes = 1000000
timeout = 55
[[remote]]
service = "tcp-sink"
addr = "203.0.113.7:9"
[faults]
jitter = 0.001
"#,
    );
    for_each_seeds("upload_under_two_way_reordering_completes", 1, 20, |seed| {
        let (r, _run) = run(&sc, seed, false, &mut |_| {})?;
        check(r.passed(), || format!("{r}"))?;
        check(r.virtual_end.as_nanos() < 10_000_000_000, || {
            format!("a 1 MB upload took more than 10 s of virtual time: {r}")
        })
    });
}
