//! The replay report: every flow, the trace and the replay side by side,
//! each divergence in words, the engine's drops, a summary; as text or as
//! JSON with stable keys (documented in docs/replay.md).
//!
//! # What this module owns
//!
//! Comparing the trace's flows with the replay's and rendering the result.
//!
//! # What it must never do
//!
//! Hold anything that differs between two runs of the same trace, seed and
//! options (wall-clock time, addresses of memory): `--check` and the
//! determinism test compare reports byte for byte.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::flows::{Dir, Flow, FlowKey};
use super::guest::Held;

/// One side (trace or replay) of a flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Side {
    /// Unique payload bytes from client to server.
    pub c2s_bytes: u64,
    /// Unique payload bytes from server to client.
    pub s2c_bytes: u64,
    /// `established`, `refused`, `no answer`, `not seen` (TCP);
    /// `answered`/`unanswered` (ICMP); `-` (UDP).
    pub handshake: String,
    /// Close events in order: `c:fin`, `s:fin`, `c:rst`, `s:rst`.
    pub close: Vec<String>,
    /// Retransmitted segments from the client.
    pub c2s_retransmits: u64,
    /// Retransmitted segments from the server.
    pub s2c_retransmits: u64,
}

impl Side {
    fn of(f: Option<&Flow>) -> Side {
        let Some(f) = f else {
            return Side {
                c2s_bytes: 0,
                s2c_bytes: 0,
                handshake: "absent".into(),
                close: Vec::new(),
                c2s_retransmits: 0,
                s2c_retransmits: 0,
            };
        };
        let (c, s): (&Dir, &Dir) = (f.c2s(), f.s2c());
        Side {
            c2s_bytes: c.bytes,
            s2c_bytes: s.bytes,
            handshake: f.handshake().into(),
            close: f.closes.clone(),
            c2s_retransmits: c.retransmits,
            s2c_retransmits: s.retransmits,
        }
    }
}

/// One flow of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowReport {
    /// `tcp`, `udp` or `icmp`.
    pub proto: String,
    /// Client address (`ip:port`; for ICMP the port is the echo id).
    pub client: String,
    /// Server address.
    pub server: String,
    /// As recorded.
    pub trace: Side,
    /// As replayed.
    pub replay: Side,
    /// Each difference, in words.
    pub divergences: Vec<String>,
}

/// Counts of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Frames in the trace.
    pub trace_frames: u64,
    /// Of which the guest sent.
    pub guest_frames: u64,
    /// Guest frames the replay fed to the engine.
    pub guest_frames_fed: u64,
    /// Frames the replayed engine sent to the guest.
    pub engine_frames: u64,
    /// Trace duration, seconds.
    pub trace_seconds: f64,
    /// Virtual duration of the replay, seconds.
    pub replay_seconds: f64,
    /// Why the run stopped.
    pub stopped: String,
    /// Flows the replay could not script, in words.
    pub unscripted: Vec<String>,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Master seed.
    pub seed: u64,
    /// Engine configuration taken from the trace, in words.
    pub config: BTreeMap<String, String>,
    /// Every flow of the trace, then flows only the replay has.
    pub flows: Vec<FlowReport>,
    /// Number of divergences over all flows.
    pub divergences: usize,
    /// The replayed engine's drops by reason.
    pub drops: BTreeMap<String, u64>,
    /// Counts.
    pub summary: Summary,
}

fn secs(t: passt_engine::Instant) -> f64 {
    t.as_nanos() as f64 / 1e9
}

/// Compares the flows of the trace and of the replay.
pub fn compare(trace: &[Flow], replay: &[Flow], held: &[Held], hold_secs: f64) -> Vec<FlowReport> {
    let by_key: BTreeMap<FlowKey, &Flow> = replay.iter().map(|f| (f.key, f)).collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for f in trace {
        seen.insert(f.key);
        let r = by_key.get(&f.key).copied();
        let (t, rs) = (Side::of(Some(f)), Side::of(r));
        let mut d = Vec::new();
        if r.is_none() {
            d.push("the replay has no such flow".to_string());
        } else {
            if t.handshake != rs.handshake {
                d.push(format!(
                    "handshake: {} in the trace, {} in the replay",
                    t.handshake, rs.handshake
                ));
            }
            if t.c2s_bytes != rs.c2s_bytes {
                d.push(format!(
                    "client to server: {} bytes in the trace, {} in the replay",
                    t.c2s_bytes, rs.c2s_bytes
                ));
            }
            if t.s2c_bytes != rs.s2c_bytes {
                d.push(format!(
                    "server to client: {} bytes in the trace, {} in the replay",
                    t.s2c_bytes, rs.s2c_bytes
                ));
            }
            if t.close != rs.close {
                d.push(format!(
                    "close: [{}] in the trace, [{}] in the replay",
                    t.close.join(" "),
                    rs.close.join(" ")
                ));
            }
        }
        for h in held.iter().filter(|h| h.key == f.key) {
            d.push(format!(
                "the guest's segment recorded at {:.6} s acknowledged {} bytes the engine had not \
                 sent after {hold_secs} s; sent anyway",
                secs(h.at),
                h.ahead
            ));
        }
        out.push(flow_report(f, t, rs, d));
    }
    for f in replay.iter().filter(|f| !seen.contains(&f.key)) {
        let d = vec!["not in the trace".to_string()];
        out.push(flow_report(f, Side::of(None), Side::of(Some(f)), d));
    }
    out
}

fn flow_report(f: &Flow, trace: Side, replay: Side, divergences: Vec<String>) -> FlowReport {
    FlowReport {
        proto: f.proto().name().into(),
        client: f.client().to_string(),
        server: f.server().to_string(),
        trace,
        replay,
        divergences,
    }
}

impl Report {
    /// The report as pretty JSON (stable key order: struct order, maps
    /// sorted).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The report as text.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "seed              {}", self.seed);
        for (k, v) in &self.config {
            let _ = writeln!(o, "{k:<17} {v}");
        }
        for (i, f) in self.flows.iter().enumerate() {
            let _ = writeln!(
                o,
                "\nflow {}  {}  {} -> {}",
                i + 1,
                f.proto,
                f.client,
                f.server
            );
            let _ = writeln!(o, "  {:<16} {:<24} replay", "", "trace");
            let row = |o: &mut String, name: &str, a: String, b: String| {
                let mark = if a == b { "" } else { "  <>" };
                let _ = writeln!(o, "  {name:<16} {a:<24} {b}{mark}");
            };
            let (t, r) = (&f.trace, &f.replay);
            row(
                &mut o,
                "c2s bytes",
                t.c2s_bytes.to_string(),
                r.c2s_bytes.to_string(),
            );
            row(
                &mut o,
                "s2c bytes",
                t.s2c_bytes.to_string(),
                r.s2c_bytes.to_string(),
            );
            row(
                &mut o,
                "handshake",
                t.handshake.clone(),
                r.handshake.clone(),
            );
            let close = |c: &[String]| {
                if c.is_empty() {
                    "-".to_string()
                } else {
                    c.join(" ")
                }
            };
            row(&mut o, "close", close(&t.close), close(&r.close));
            let tr = format!("{}/{}", t.c2s_retransmits, t.s2c_retransmits);
            let rr = format!("{}/{}", r.c2s_retransmits, r.s2c_retransmits);
            let _ = writeln!(o, "  {:<16} {tr:<24} {rr}", "retransmits c/s");
            for d in &f.divergences {
                let _ = writeln!(o, "  divergence: {d}");
            }
        }
        let _ = writeln!(o);
        if self.drops.is_empty() {
            let _ = writeln!(o, "engine drops      none");
        }
        for (reason, n) in &self.drops {
            let _ = writeln!(o, "engine drops      {reason}: {n}");
        }
        let s = &self.summary;
        for u in &s.unscripted {
            let _ = writeln!(o, "not scripted      {u}");
        }
        let _ = writeln!(
            o,
            "frames            trace {} (guest {}), fed {}, engine sent {}",
            s.trace_frames, s.guest_frames, s.guest_frames_fed, s.engine_frames
        );
        let _ = writeln!(
            o,
            "duration          trace {:.6} s, replay {:.6} s (virtual), stopped: {}",
            s.trace_seconds, s.replay_seconds, s.stopped
        );
        let _ = writeln!(
            o,
            "summary           {} flows, {} divergences",
            self.flows.len(),
            self.divergences
        );
        o
    }
}
