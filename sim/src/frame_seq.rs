//! Sequences of guest frames against the engine over the simulated host,
//! decoded from arbitrary bytes: the one driver behind the stateful
//! `handle_frame` fuzz target (`fuzz/fuzz_targets/engine_frames.rs`) and
//! its proptest twin in CI (`sim/tests/frame_sequences.rs`).
//!
//! # What this module owns
//!
//! - The byte encoding of a sequence ([`Op`], [`decode`], [`encode`]): a
//!   fuzzer mutates it freely, and every byte string decodes to some
//!   sequence.
//! - A small fixed world ([`FrameSeqWorld`]): the engine on [`SimHost`]
//!   with TCP and UDP echo services at the addresses the corpus traces
//!   use, a small flow table (so "table full" is reachable), every step
//!   driven through [`passt_engine::Driver`] as the real event loop does.
//! - The invariants checked after every step ([`Violation`]): every frame
//!   to the guest parses (our parser, every checksum) and comes from our
//!   MAC, every guest frame is counted, flows open = flows opened - flows
//!   closed, and no table holds more than the limit.
//!
//! # What it must never do
//!
//! Panic on any input (a panic here is a finding in the engine or the
//! host model), run unbounded (every loop has a fixed budget), or use
//! anything but the seed for randomness.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use passt_engine::wire::parse_frame;
use passt_engine::{
    Config, Driver, Engine, FrameSink, Instant, MacAddr, Readiness, Token, TxQueue,
};

use crate::host::services::RemoteService;
use crate::scenario::{UdpEcho, UdpEchoStats};
use crate::{SimHost, SimHostConfig, SimRng};

/// The remote the corpus traces talk to (`corpus/replay/sim-*`).
pub const REMOTE_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
/// Flow table size of the world: small, so fuzzing reaches "full".
pub const FLOW_CAPACITY: usize = 24;
/// Most scheduling rounds one [`Op::Advance`] runs.
const ROUNDS_PER_ADVANCE: usize = 256;
/// Largest time step one [`Op::Advance`] takes.
const MAX_STEP: Duration = Duration::from_secs(70);

/// One step of a sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A guest frame for `handle_frame`.
    Frame(Vec<u8>),
    /// Virtual time moves on by this much, with the host model, host
    /// readiness and the engine's timers run along the way.
    Advance(Duration),
    /// The driver's flush step (host sends queued by frames leave).
    Flush,
}

const TAG_FRAME: u8 = 0;
const TAG_ADVANCE: u8 = 1;
const TAG_FLUSH: u8 = 2;

/// Decodes `bytes` into ops. Every byte string is a sequence: a tag byte
/// (modulo 3: frame, advance, flush); a frame is a 16-bit little-endian
/// length then that many bytes (fewer if the input ends); an advance is a
/// 16-bit little-endian count of milliseconds, scaled so that large values
/// reach the engine's long timers.
pub fn decode(bytes: &[u8]) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut rest = bytes;
    while let Some((&tag, tail)) = rest.split_first() {
        rest = tail;
        match tag % 3 {
            TAG_FRAME => {
                let (len, tail) = take_u16(rest);
                let n = usize::from(len).min(tail.len());
                ops.push(Op::Frame(tail[..n].to_vec()));
                rest = &tail[n..];
            }
            TAG_ADVANCE => {
                let (v, tail) = take_u16(rest);
                rest = tail;
                // Below 1000: milliseconds; above: seconds (up to MAX_STEP).
                let d = if v < 1000 {
                    Duration::from_millis(u64::from(v))
                } else {
                    Duration::from_secs(u64::from(v - 1000)).min(MAX_STEP)
                };
                ops.push(Op::Advance(d));
            }
            _ => ops.push(Op::Flush),
        }
    }
    ops
}

fn take_u16(b: &[u8]) -> (u16, &[u8]) {
    match b {
        [lo, hi, rest @ ..] => (u16::from_le_bytes([*lo, *hi]), rest),
        [lo] => (u16::from(*lo), &[]),
        [] => (0, &[]),
    }
}

/// Encodes ops so that [`decode`] gives them back (frames longer than
/// 65535 bytes are cut; advances are rounded to what the encoding holds).
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        match op {
            Op::Frame(f) => {
                let n = f.len().min(usize::from(u16::MAX));
                out.push(TAG_FRAME);
                out.extend_from_slice(&(n as u16).to_le_bytes());
                out.extend_from_slice(&f[..n]);
            }
            Op::Advance(d) => {
                let v = if *d < Duration::from_secs(1) {
                    d.as_millis() as u16
                } else {
                    1000 + d.as_secs().min(MAX_STEP.as_secs()) as u16
                };
                out.push(TAG_ADVANCE);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Op::Flush => out.push(TAG_FLUSH),
        }
    }
    out
}

/// An invariant that did not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A frame to the guest that our own parser rejects.
    #[error("frame to the guest does not parse: {0}")]
    BadOutput(String),
    /// A frame to the guest from another MAC than ours.
    #[error("frame to the guest from {0}, not our MAC")]
    ForeignSource(MacAddr),
    /// Guest frames handed in and frames counted differ.
    #[error("{fed} guest frames fed, {counted} counted")]
    Uncounted {
        /// Frames handed to the engine.
        fed: u64,
        /// `Counters::frames_in`.
        counted: u64,
    },
    /// The flow counters and the tables disagree.
    #[error("{opened} flows opened, {closed} closed, {live} in the tables")]
    FlowAccounting {
        /// `Counters::flows_opened`.
        opened: u64,
        /// `Counters::flows_closed`.
        closed: u64,
        /// TCP + UDP + echo flows in the tables.
        live: u64,
    },
    /// More flows than the limit.
    #[error("{0} flows in a table of {FLOW_CAPACITY}")]
    OverLimit(u64),
}

/// The guest side: takes every frame and checks it.
#[derive(Debug, Default)]
struct CheckingSink {
    violation: Option<Violation>,
    taken: u64,
}

impl FrameSink for CheckingSink {
    type Error = Infallible;

    fn accept(&mut self, _now: Instant, frames: &TxQueue) -> Result<usize, Infallible> {
        for f in frames.iter() {
            if self.violation.is_none() {
                self.violation = match parse_frame(f) {
                    Err(e) => Some(Violation::BadOutput(format!("{e:?}"))),
                    Ok(p) if p.eth.src != MacAddr::PASST_DEFAULT => {
                        Some(Violation::ForeignSource(p.eth.src))
                    }
                    Ok(_) => None,
                };
            }
        }
        self.taken += frames.len() as u64;
        Ok(frames.len())
    }
}

/// The engine on a simulated host with echo services, driven op by op.
pub struct FrameSeqWorld {
    engine: Engine<SimHost>,
    driver: Driver,
    sink: CheckingSink,
    now: Instant,
    fed: u64,
    events: Vec<(Token, Readiness)>,
}

impl FrameSeqWorld {
    /// The world for `seed`: `Config::example()` with a flow table of
    /// [`FLOW_CAPACITY`]; TCP echo at [`REMOTE_V4`] port 7 and 80 and at
    /// the host's loopback port 7 (the gateway, mapped); UDP echo at
    /// [`REMOTE_V4`] port 7 and loopback port 7777.
    pub fn new(seed: u64) -> FrameSeqWorld {
        let mut config = Config::example();
        config.flow_capacity = FLOW_CAPACITY;
        let rng = SimRng::from_seed(seed);
        let mut host = SimHost::new(SimHostConfig::default(), rng.child("host"));
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for addr in [
            SocketAddr::new(REMOTE_V4.into(), 7),
            SocketAddr::new(REMOTE_V4.into(), 80),
            SocketAddr::new(lo, 7),
        ] {
            host.remote_tcp_serve(addr, 64, RemoteService::Echo)
                .expect("fresh host: address free");
        }
        for addr in [
            SocketAddr::new(REMOTE_V4.into(), 7),
            SocketAddr::new(lo, 7777),
        ] {
            host.remote_udp_serve(addr, Box::new(UdpEcho::new(UdpEchoStats::default())))
                .expect("fresh host: address free");
        }
        let driver = Driver::for_config(&config);
        let engine = Engine::new(config, host, seed).expect("example config is valid");
        FrameSeqWorld {
            engine,
            driver,
            sink: CheckingSink::default(),
            now: Instant::ZERO,
            fed: 0,
            events: Vec::with_capacity(64),
        }
    }

    /// The engine, for checks beyond the invariants.
    pub fn engine(&self) -> &Engine<SimHost> {
        &self.engine
    }

    /// Frames the guest side took so far.
    pub fn frames_to_guest(&self) -> u64 {
        self.sink.taken
    }

    /// Runs one op, then checks the invariants.
    pub fn apply(&mut self, op: &Op) -> Result<(), Violation> {
        let (e, d, s) = (&mut self.engine, &mut self.driver, &mut self.sink);
        match op {
            Op::Frame(f) => {
                // The sink takes everything, so there is always room.
                let Ok(_) = d.guest_frame(e, s, self.now, f);
                self.fed += 1;
            }
            Op::Flush => {
                let Ok(()) = d.flush(e, s, self.now);
            }
            Op::Advance(step) => self.advance(*step),
        }
        self.check()
    }

    /// Runs a whole sequence, stopping at the first violation.
    pub fn run(&mut self, ops: &[Op]) -> Result<(), Violation> {
        ops.iter().try_for_each(|op| self.apply(op))
    }

    /// Moves virtual time to `now + step` through every host and engine
    /// deadline on the way (at most [`ROUNDS_PER_ADVANCE`] rounds).
    fn advance(&mut self, step: Duration) {
        let until = self.now + step;
        for _ in 0..ROUNDS_PER_ADVANCE {
            let (e, d, s) = (&mut self.engine, &mut self.driver, &mut self.sink);
            e.host_mut().advance(self.now);
            self.events.clear();
            e.host_mut().take_events(&mut self.events);
            for &(t, r) in &self.events {
                let Ok(_) = d.host_event(e, s, self.now, t, r);
            }
            let Ok(()) = d.finish(e, s, self.now);
            if e.host_mut().has_ready_events() && !self.events.is_empty() {
                // Level-triggered work left at this instant: another round.
                continue;
            }
            let next = [e.poll_timeout(), e.host_mut().poll_timeout()]
                .into_iter()
                .flatten()
                .filter(|&t| t > self.now)
                .min();
            match next {
                Some(t) if t <= until => self.now = t,
                _ => break,
            }
        }
        self.now = self.now.max(until);
        let (e, d, s) = (&mut self.engine, &mut self.driver, &mut self.sink);
        e.host_mut().advance(self.now);
        let Ok(()) = d.finish(e, s, self.now);
    }

    fn check(&mut self) -> Result<(), Violation> {
        if let Some(v) = self.sink.violation.take() {
            return Err(v);
        }
        let c = self.engine.counters();
        if c.frames_in != self.fed {
            return Err(Violation::Uncounted {
                fed: self.fed,
                counted: c.frames_in,
            });
        }
        let live = (self.engine.tcp().flow_count()
            + self.engine.udp().flow_count()
            + self.engine.icmp().flow_count()) as u64;
        if c.flows_opened.checked_sub(c.flows_closed) != Some(live) {
            return Err(Violation::FlowAccounting {
                opened: c.flows_opened,
                closed: c.flows_closed,
                live,
            });
        }
        if live > FLOW_CAPACITY as u64 {
            return Err(Violation::OverLimit(live));
        }
        Ok(())
    }
}

/// Turns a capture's frames (times in nanoseconds from the first) into a
/// sequence: the guest's frames (those not from our MAC) in order, an
/// advance for each gap, a flush after each frame. For seed corpora.
pub fn ops_from_trace(frames: &[(Instant, Vec<u8>)]) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut last = Instant::ZERO;
    for (at, f) in frames {
        if f.get(6..12) == Some(&MacAddr::PASST_DEFAULT.0[..]) {
            continue;
        }
        if *at > last {
            ops.push(Op::Advance(*at - last));
            last = *at;
        }
        ops.push(Op::Frame(f.clone()));
        ops.push(Op::Flush);
    }
    ops.push(Op::Advance(Duration::from_secs(1)));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_gives_the_ops_back() {
        let ops = vec![
            Op::Frame(vec![1, 2, 3]),
            Op::Advance(Duration::from_millis(250)),
            Op::Flush,
            Op::Advance(Duration::from_secs(31)),
            Op::Frame(vec![]),
        ];
        assert_eq!(decode(&encode(&ops)), ops);
    }

    #[test]
    fn every_byte_string_decodes() {
        assert_eq!(decode(&[]), vec![]);
        assert_eq!(decode(&[0]), vec![Op::Frame(vec![])]);
        assert_eq!(decode(&[0, 9, 0, 1]), vec![Op::Frame(vec![1])]);
        assert_eq!(decode(&[4]), vec![Op::Advance(Duration::from_millis(0))]);
    }
}
