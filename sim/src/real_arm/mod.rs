//! The real arm: a [`Scenario`] run against the real kernel instead of the
//! simulated host, so that the simulator is trusted only where both arms
//! agree.
//!
//! # What this module owns
//!
//! [`run`] builds, from the same scenario file and seed as
//! [`Scenario::run`], the same smoltcp guest and the same guest↔engine
//! [`Link`]s with the same fault chains, but drives the unchanged engine
//! as `Engine<RealHost>` (Linux sockets, epoll) against real services on
//! the host's loopback ([`services::RealServices`]), in wall-clock time:
//!
//! - every `[[remote]]` service the TCP/UDP scenarios use (`tcp-echo`,
//!   `tcp-sink`, `tcp-source`, `udp-echo`) is started as a thread bound to
//!   `127.0.0.1` on an ephemeral port;
//! - the guest's workload destinations are translated
//!   ([`Translation`]): scenario address → gateway address (which the
//!   engine maps to the host's loopback) with the real service's port. A
//!   TCP destination without a service (or one of `host_faults.refuse_ports`)
//!   goes to a loopback port nothing listens on, so the kernel refuses it;
//! - `host_faults.reset_after` is reproduced by the services (a RST once
//!   that many bytes crossed the connection); the other host faults, the
//!   remote-path properties (latency, bandwidth, reachability) and the
//!   `dns`/`http` services have no real counterpart here: a scenario that
//!   needs them is refused with a clear error, or, for path latency,
//!   listed in [`RealRunReport::ignored`];
//! - time is the wall clock since the start of the run, as an engine
//!   [`Instant`]; the loop waits in [`RealHost::wait`] until the next
//!   deadline (link delivery, engine timer, guest timer), then feeds the
//!   engine through the driver contract ([`Driver`]), as the simulated arm
//!   does: due guest frames, flush, host readiness, timers, then the guest
//!   runs and the engine's queue is drained into the link (the driver's
//!   frame sink, which drains it earlier whenever it is full).
//!
//! The result is the simulated arm's [`RunReport`], judged by the same
//! `[expect]` criteria, wrapped in a [`RealRunReport`]; [`disagreements`]
//! compares the two arms' outcomes.
//!
//! # What it must never do
//!
//! Let the engine reach anything but the host's loopback: before the run
//! every translated destination is checked to be the gateway mapped to
//! loopback, and every frame the link delivers to the engine goes through
//! [`loopback_only`] (frames to any other destination are blocked,
//! counted, and fail the run). It never runs unbounded: the scenario's
//! duration (capped by [`RealArmOptions::max_wall`]) ends the loop, and the
//! service threads are stopped and joined before [`run`] returns.
//!
//! Unlike the rest of the crate this arm reads the wall clock and is not
//! deterministic: no trace hash is recorded.

pub mod services;

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use passt_engine::driver::{Admit, Driver, FrameSink};
use passt_engine::runtime::RealHost;
use passt_engine::wire::{self, Icmpv6Repr, L3, L4};
use passt_engine::{Config, Engine, Instant, Readiness, Token, TxQueue};

use crate::guest::{SimGuest, SmolGuest, SmolGuestConfig, Workload, WorkloadReport, WorkloadSpec};
use crate::link::{Link, LinkConfig};
use crate::scenario::{RunReport, Scenario, ScenarioError, secs};
use crate::sched::Scheduler;
use crate::seed::SimRng;
use crate::simulation::{Direction, FrameClass, Retransmits, SimCounters, StopReason, drained};
use passt_engine::pcap::{PcapWriter, TsResolution};

use services::{RealServices, TcpService};

/// Longest single wait in the loop, so the clock and the guest are looked
/// at often even when nothing is due.
const MAX_WAIT: Duration = Duration::from_millis(20);

/// Options of a real run.
#[derive(Clone, Copy, Debug)]
pub struct RealArmOptions {
    /// Capture the guest side of the wire as pcap (wall-clock stamps).
    pub capture: bool,
    /// Upper bound on the run's wall time, whatever the scenario's
    /// duration says.
    pub max_wall: Duration,
}

impl Default for RealArmOptions {
    fn default() -> Self {
        RealArmOptions {
            capture: false,
            max_wall: Duration::from_secs(300),
        }
    }
}

/// Transport of a translated destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// One scenario destination and where the real arm sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Translation {
    /// TCP or UDP.
    pub proto: Proto,
    /// The address in the scenario file.
    pub scenario: SocketAddrV4,
    /// What the guest targets instead: the gateway, with the real port.
    pub guest_target: SocketAddrV4,
    /// Where the engine's socket ends up (127.0.0.1, same port).
    pub host_target: SocketAddr,
    /// The service there, or `"closed port"`.
    pub service: String,
}

/// What a real run did: the simulated arm's report plus the real arm's
/// own facts.
#[derive(Clone, Debug)]
pub struct RealRunReport {
    /// The outcome, in the simulated arm's terms (times are wall-clock
    /// since the start; `trace_hash` and `trace_events` are 0).
    pub report: RunReport,
    /// Destination translations applied to the guest's workloads.
    pub translations: Vec<Translation>,
    /// Frames the loopback guard kept from the engine.
    pub blocked_frames: u64,
    /// Scenario properties the real arm could not reproduce (and ignored).
    pub ignored: Vec<String>,
    /// Connections the services accepted.
    pub accepted: u64,
    /// Reset-after faults delivered as RSTs.
    pub resets: u64,
    /// Reset-after faults that could not be delivered as RSTs.
    pub resets_failed: u64,
    /// Wall time of the run.
    pub wall: Duration,
    /// Loop iterations.
    pub steps: u64,
}

impl RealRunReport {
    /// Whether every criterion held.
    pub fn passed(&self) -> bool {
        self.report.passed()
    }
}

impl fmt::Display for RealRunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "arm               real (Engine<RealHost>, loopback, wall clock)"
        )?;
        for t in &self.translations {
            writeln!(
                f,
                "translated        {:?} {} -> guest {} -> host {} ({})",
                t.proto, t.scenario, t.guest_target, t.host_target, t.service
            )?;
        }
        for i in &self.ignored {
            writeln!(f, "ignored           {i}")?;
        }
        write!(f, "{}", self.report)?;
        writeln!(
            f,
            "services          {} connections accepted, {} resets sent, {} resets failed",
            self.accepted, self.resets, self.resets_failed
        )?;
        if self.blocked_frames > 0 {
            writeln!(
                f,
                "loopback guard    {} frames blocked",
                self.blocked_frames
            )?;
        }
        writeln!(f, "loop steps        {}", self.steps)
    }
}

/// How a workload ended, for comparing arms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EndKind {
    /// Finished without error.
    Success,
    /// TCP: closed by the peer before it was established.
    Refused,
    /// TCP: reset once established.
    Reset,
    /// Not finished by its timeout.
    Timeout,
    /// Any other error (wrong byte count, corruption, ...).
    OtherError,
    /// Still running when the run stopped.
    Unfinished,
}

/// Classifies a workload's end from its report.
pub fn end_kind(w: &WorkloadReport) -> EndKind {
    match (&w.error, w.finished) {
        (None, Some(_)) => EndKind::Success,
        (None, None) => EndKind::Unfinished,
        (Some(e), _) if e.starts_with("connection refused") => EndKind::Refused,
        (Some(e), _) if e.starts_with("connection reset") => EndKind::Reset,
        (Some(e), _) if e.starts_with("timed out") => EndKind::Timeout,
        (Some(_), _) => EndKind::OtherError,
    }
}

/// Where two reports of the same scenario (simulated arm, real arm)
/// disagree on the outcome: the verdict, each workload's end
/// ([`EndKind`]), and for workloads that succeeded in both the bytes each
/// way (TCP) or the requests sent (datagrams; replies only when neither
/// run's guest links dropped anything). Empty when they agree.
pub fn disagreements(sim: &RunReport, real: &RunReport) -> Vec<String> {
    let mut d = Vec::new();
    if sim.passed() != real.passed() {
        d.push(format!(
            "verdict: sim {} real {} (sim failures {:?}; real failures {:?})",
            verdict(sim),
            verdict(real),
            sim.failures,
            real.failures
        ));
    }
    if sim.workloads.len() != real.workloads.len() {
        d.push(format!(
            "workload count: sim {} real {}",
            sim.workloads.len(),
            real.workloads.len()
        ));
    }
    let lossless = sim.up.dropped_total() + sim.down.dropped_total() == 0
        && real.up.dropped_total() + real.down.dropped_total() == 0;
    for (s, r) in sim.workloads.iter().zip(&real.workloads) {
        let (ks, kr) = (end_kind(s), end_kind(r));
        if ks != kr {
            d.push(format!(
                "workload `{}`: sim {ks:?} ({}) real {kr:?} ({})",
                s.name,
                s.error.as_deref().unwrap_or("ok"),
                r.error.as_deref().unwrap_or("ok")
            ));
            continue;
        }
        if ks != EndKind::Success {
            continue;
        }
        let datagrams = s.sent > 0 || r.sent > 0;
        if datagrams {
            if s.sent != r.sent {
                d.push(format!(
                    "workload `{}`: sent sim {} real {}",
                    s.name, s.sent, r.sent
                ));
            }
            if lossless && s.received != r.received {
                d.push(format!(
                    "workload `{}`: received sim {} real {} on lossless links",
                    s.name, s.received, r.received
                ));
            }
        } else if (s.bytes_sent, s.bytes_received) != (r.bytes_sent, r.bytes_received) {
            d.push(format!(
                "workload `{}`: bytes sent/received sim {}/{} real {}/{}",
                s.name, s.bytes_sent, s.bytes_received, r.bytes_sent, r.bytes_received
            ));
        }
    }
    d
}

fn verdict(r: &RunReport) -> &'static str {
    if r.passed() { "PASS" } else { "FAIL" }
}

/// Whether a frame from the guest may reach the engine of the real arm:
/// only frames the engine answers itself (ARP, DHCP, NDP, DHCPv6) or that
/// it maps to the host's loopback (anything for the gateway, which
/// `config.mapping` maps to 127.0.0.1 / ::1). A frame that does not parse
/// is let through: the engine parses with the same function and drops it.
pub fn loopback_only(config: &Config, frame: &[u8]) -> bool {
    let Ok(parsed) = wire::parse_frame(frame) else {
        return true;
    };
    let gw4 = config.mapping.host_loopback_v4;
    let gw6 = config.mapping.host_loopback_v6;
    match parsed.l3 {
        L3::Arp(_) => true,
        L3::Ipv4 { ip, l4 } => {
            if Some(ip.dst_addr) == gw4 {
                return true;
            }
            // DHCPv4 (RFC 2131 §4.1: to the broadcast address, port 67).
            matches!(l4, L4::Udp { udp, .. } if udp.dst_port == 67)
                && (ip.dst_addr == Ipv4Addr::BROADCAST
                    || config
                        .ipv4
                        .as_ref()
                        .is_some_and(|c| c.gateway == ip.dst_addr))
        }
        L3::Ipv6 { ip, l4 } => {
            if Some(ip.dst_addr) == gw6 {
                return true;
            }
            match l4 {
                L4::Icmpv6(Icmpv6Repr::Ndp(_)) => true,
                // DHCPv6 (RFC 8415 §7.1: All_DHCP_Relay_Agents_and_Servers).
                L4::Udp { udp, .. } => udp.dst_port == 547 && ip.dst_addr.is_multicast(),
                _ => false,
            }
        }
    }
}

#[derive(Debug)]
enum Ev {
    ToEngine(FrameClass, Vec<u8>),
    ToGuest(FrameClass, Vec<u8>),
}

/// The driver's frame sink: the engine→guest link, which takes every frame
/// (counted per class, and as a retransmission if it is one).
struct LinkSink<'a> {
    link: &'a mut Link,
    sched: &'a mut Scheduler<Ev>,
    counters: &'a mut SimCounters,
    retransmits: &'a mut Retransmits,
}

impl FrameSink for LinkSink<'_> {
    type Error = Infallible;

    fn accept(&mut self, _now: Instant, frames: &TxQueue) -> Result<usize, Infallible> {
        for frame in frames.iter() {
            let class = self
                .retransmits
                .count_sent(self.counters, Direction::Down, frame);
            self.link
                .send(self.sched, frame.to_vec(), |f| Ev::ToGuest(class, f));
        }
        Ok(frames.len())
    }
}

/// Starts the services of `sc` and translates its workloads; refuses what
/// the real arm cannot reproduce.
fn prepare(
    sc: &Scenario,
    config: &Config,
    services: &mut RealServices,
    ignored: &mut Vec<String>,
) -> Result<(Vec<WorkloadSpec>, Vec<Translation>), ScenarioError> {
    let invalid = |m: String| ScenarioError::Invalid(format!("real arm: {m}"));
    if sc.is_script()? {
        return Err(invalid(
            "scripted guests name exact addresses; only smoltcp guests run on the real arm".into(),
        ));
    }
    if !sc.forward.is_empty() || !sc.inbound.is_empty() {
        return Err(invalid(
            "[[forward]] / [[inbound]] (inbound connections) are not implemented on the real arm"
                .into(),
        ));
    }
    let hf = &sc.host_faults;
    let unsupported = [
        ("swarm", hf.swarm == Some(true)),
        (
            "refuse_probability",
            hf.refuse_probability.unwrap_or(0.0) > 0.0,
        ),
        ("eagain", hf.eagain.unwrap_or(0.0) > 0.0),
        ("max_read", hf.max_read.is_some()),
        ("max_write", hf.max_write.is_some()),
    ];
    for (key, on) in unsupported {
        if on {
            return Err(invalid(format!(
                "host_faults.{key} has no counterpart on real sockets"
            )));
        }
    }
    for (i, r) in sc.remote.iter().enumerate() {
        if r.fin_first.is_some() || r.abort_after.is_some() {
            return Err(invalid(format!(
                "remote[{i}]: fin_first / abort_after are not implemented on the real arm"
            )));
        }
    }
    for (i, w) in sc.guest.workload.iter().enumerate() {
        if w.pause_after.is_some() || w.abort_after.is_some() || w.buffer.is_some() {
            return Err(invalid(format!(
                "guest.workload[{i}]: buffer / pause_after / abort_after are not implemented on the real arm"
            )));
        }
    }
    if sc.engine.flow_capacity.is_some() || sc.engine.tx_queue_frames.is_some() {
        return Err(invalid(
            "engine.flow_capacity / tx_queue_frames are not implemented on the real arm".into(),
        ));
    }
    for h in &sc.remote_host {
        if h.reach.as_deref().is_some_and(|r| r != "reachable") {
            return Err(invalid(format!(
                "remote_host {}: reach = {:?} has no counterpart on loopback",
                h.ip, h.reach
            )));
        }
        if h.latency.is_some() || h.bandwidth.is_some() || h.mss.is_some() {
            ignored.push(format!(
                "remote_host {}: latency/bandwidth/mss (loopback has its own)",
                h.ip
            ));
        }
    }
    let gw = match (&config.ipv4, config.mapping.host_loopback_v4) {
        (Some(v4), Some(map)) if map == v4.gateway => v4.gateway,
        _ => {
            return Err(invalid(
                "the engine's configuration does not map the gateway to the host's loopback".into(),
            ));
        }
    };

    // Real services, keyed by (transport, scenario address).
    let mut table: BTreeMap<(Proto, SocketAddrV4), (SocketAddr, String)> = BTreeMap::new();
    for (i, r) in sc.remote.iter().enumerate() {
        let at: SocketAddr = r
            .addr
            .parse()
            .map_err(|_| invalid(format!("remote[{i}].addr `{}`", r.addr)))?;
        let SocketAddr::V4(at) = at else {
            ignored.push(format!(
                "remote[{i}] {at}: IPv6 services (the smoltcp guest is IPv4-only)"
            ));
            continue;
        };
        let io = |e: std::io::Error| invalid(format!("remote[{i}]: cannot start: {e}"));
        let (proto, real) = match r.service.as_str() {
            "tcp-echo" => (
                Proto::Tcp,
                services.start_tcp(TcpService::Echo).map_err(io)?,
            ),
            "tcp-sink" => (
                Proto::Tcp,
                services
                    .start_tcp(TcpService::Sink { rate: r.rate })
                    .map_err(io)?,
            ),
            "tcp-source" => (
                Proto::Tcp,
                services
                    .start_tcp(TcpService::Source {
                        bytes: r.bytes.unwrap_or(100_000),
                    })
                    .map_err(io)?,
            ),
            "udp-echo" => (Proto::Udp, services.start_udp_echo().map_err(io)?),
            other => {
                return Err(invalid(format!(
                    "remote[{i}]: service `{other}` is not implemented on the real arm (tcp-echo, tcp-sink, tcp-source, udp-echo)"
                )));
            }
        };
        table.insert((proto, at), (real, r.service.clone()));
    }

    let mut translations: Vec<Translation> = Vec::new();
    let mut translate = |proto: Proto, dst: SocketAddrV4| -> Result<SocketAddrV4, ScenarioError> {
        if let Some(t) = translations
            .iter()
            .find(|t| t.proto == proto && t.scenario == dst)
        {
            return Ok(t.guest_target);
        }
        let refused = proto == Proto::Tcp && hf.refuse_ports.contains(&dst.port());
        let (real, service) = match table.get(&(proto, dst)) {
            Some((real, name)) if !refused => (*real, name.clone()),
            _ if proto == Proto::Tcp => (
                services::closed_tcp_port()
                    .map_err(|e| invalid(format!("cannot pick a closed port: {e}")))?,
                "closed port".to_string(),
            ),
            _ => {
                // A UDP port nothing listens on: the same trick.
                let s = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                    .and_then(|s| s.local_addr())
                    .map_err(|e| invalid(format!("cannot pick a closed port: {e}")))?;
                (s, "closed port".to_string())
            }
        };
        let t = Translation {
            proto,
            scenario: dst,
            guest_target: SocketAddrV4::new(gw, real.port()),
            host_target: real,
            service,
        };
        let target = t.guest_target;
        translations.push(t);
        Ok(target)
    };
    let mut specs = sc.workloads()?;
    for spec in &mut specs {
        spec.workload = match spec.workload.clone() {
            Workload::Ping {
                dst,
                count,
                interval,
                size,
            } => {
                if dst.is_some_and(|d| d != gw) {
                    ignored.push(format!(
                        "ping {}: sent to the gateway (host loopback) instead",
                        dst.map(|d| d.to_string()).unwrap_or_default()
                    ));
                }
                Workload::Ping {
                    dst: None,
                    count,
                    interval,
                    size,
                }
            }
            Workload::UdpEcho {
                dst,
                count,
                interval,
                size,
            } => Workload::UdpEcho {
                dst: translate(Proto::Udp, dst)?,
                count,
                interval,
                size,
            },
            Workload::TcpEcho { dst, bytes } => Workload::TcpEcho {
                dst: translate(Proto::Tcp, dst)?,
                bytes,
            },
            Workload::TcpSend { dst, bytes } => Workload::TcpSend {
                dst: translate(Proto::Tcp, dst)?,
                bytes,
            },
            Workload::TcpRecv { dst, bytes } => Workload::TcpRecv {
                dst: translate(Proto::Tcp, dst)?,
                bytes,
            },
            Workload::TcpHalfClose { dst, bytes } => Workload::TcpHalfClose {
                dst: translate(Proto::Tcp, dst)?,
                bytes,
            },
            Workload::TcpServe { .. } => {
                return Err(invalid(
                    "tcp-serve (inbound connections) is not implemented on the real arm".into(),
                ));
            }
        };
    }
    // The loopback rule, checked before anything runs.
    for t in &translations {
        if *t.guest_target.ip() != gw || !t.host_target.ip().is_loopback() {
            return Err(invalid(format!(
                "translation {t:?} does not stay on the host's loopback"
            )));
        }
    }
    Ok((specs, translations))
}

/// Runs `sc` with `seed` on the real arm (see the [module docs](self)).
pub fn run(sc: &Scenario, seed: u64, opts: RealArmOptions) -> Result<RealRunReport, ScenarioError> {
    let root = SimRng::from_seed(seed);
    let mut config = Config::example();
    if let Some(mtu) = sc.engine.mtu {
        config.mtu = mtu;
    }
    let mut ignored = Vec::new();
    let mut services = RealServices::new(sc.host_faults.reset_after);
    let (specs, translations) = prepare(sc, &config, &mut services, &mut ignored)?;
    let names: Vec<String> = sc
        .workloads()?
        .iter()
        .map(|w| w.workload.describe())
        .collect();

    let mut g = SmolGuestConfig::new(root.child("guest").next_u64());
    g.dhcp = sc.guest.dhcp.unwrap_or(true);
    g.mtu = sc.guest.mtu.unwrap_or(1500);
    if let Some(v4) = &config.ipv4 {
        g.static_v4 = Some((v4.addr, v4.prefix_len, v4.gateway));
    }
    g.workloads = specs;
    let mut guest = SimGuest::Smol(Box::new(SmolGuest::new(g, Instant::ZERO)));
    let link_cfg = LinkConfig {
        bandwidth_bps: sc.link.bandwidth,
        latency: secs(sc.link.latency, 0.0001, "link.latency")?,
    };
    let up_chain = sc.chain(
        &sc.merged(sc.faults.up.as_ref()),
        root.child("link-up"),
        root.child("swarm-up").next_u64(),
    )?;
    let down_chain = sc.chain(
        &sc.merged(sc.faults.down.as_ref()),
        root.child("link-down"),
        root.child("swarm-down").next_u64(),
    )?;
    let mut to_engine = Link::new("guest->engine", link_cfg, up_chain);
    let mut to_guest = Link::new("engine->guest", link_cfg, down_chain);

    let host =
        RealHost::new().map_err(|e| ScenarioError::Invalid(format!("real arm: RealHost: {e}")))?;
    let guard_config = config.clone();
    let mut driver = Driver::for_config(&config);
    let mut engine = Engine::new(config, host, root.child("engine").next_u64())?;

    let mut capture = if opts.capture {
        PcapWriter::new(Vec::new(), TsResolution::Nanos).ok()
    } else {
        None
    };
    let mut sched: Scheduler<Ev> = Scheduler::starting_at(Instant::ZERO);
    let mut counters = SimCounters::default();
    let mut retx = Retransmits::default();
    let mut blocked = 0u64;
    let mut events: Vec<(Token, Readiness)> = Vec::with_capacity(256);
    let mut guest_out: Vec<Vec<u8>> = Vec::new();
    // Guest frames the driver refused, offered again first (in order).
    let mut refused: VecDeque<Vec<u8>> = VecDeque::new();

    let started = std::time::Instant::now();
    let clock = || Instant::ZERO + started.elapsed();
    let end = Instant::ZERO + sc.duration().min(opts.max_wall);

    let stop = loop {
        if guest.finished() {
            break StopReason::GuestFinished;
        }
        let now = clock();
        if now >= end {
            break StopReason::TimeUp;
        }
        counters.steps += 1;

        // Wait for the kernel until the next deadline.
        let next = [
            sched.peek_time(),
            (!refused.is_empty()).then_some(now),
            engine.poll_timeout(),
            guest.poll_at(),
            Some(end),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(end);
        let wait = next.saturating_duration_since(now).min(MAX_WAIT);
        events.clear();
        if let Err(e) = engine.host_mut().wait(Some(wait), &mut events) {
            return Err(ScenarioError::Invalid(format!("real arm: epoll: {e}")));
        }
        let now = clock();
        let mut sink = LinkSink {
            link: &mut to_guest,
            sched: &mut sched,
            counters: &mut counters,
            retransmits: &mut retx,
        };

        // Guest frames refused earlier, then deliveries due.
        let mut guest_got_frames = false;
        while let Some(frame) = refused.pop_front() {
            if drained(driver.guest_frame(&mut engine, &mut sink, now, &frame)) == Admit::Full {
                refused.push_front(frame);
                break;
            }
        }
        while let Some((_, ev)) = sink.sched.pop_due(now) {
            sink.counters.deliveries += 1;
            match ev {
                Ev::ToEngine(class, frame) => {
                    if !loopback_only(&guard_config, &frame) {
                        blocked += 1;
                        continue;
                    }
                    sink.counters.up.delivered[class as usize] += 1;
                    if !refused.is_empty()
                        || drained(driver.guest_frame(&mut engine, &mut sink, now, &frame))
                            == Admit::Full
                    {
                        refused.push_back(frame);
                    }
                }
                Ev::ToGuest(class, frame) => {
                    sink.counters.down.delivered[class as usize] += 1;
                    if let Some(w) = capture.as_mut() {
                        let _ =
                            w.record_at(std::time::Duration::from_nanos(now.as_nanos()), &frame);
                    }
                    guest.on_frame(now, &frame);
                    guest_got_frames = true;
                }
            }
        }
        let _ = sink.sched.advance_to(now);
        drained(driver.flush(&mut engine, &mut sink, now));

        // Host readiness; a report held back comes again at the next wait
        // (epoll is level-triggered).
        for &(token, r) in &events {
            if drained(driver.host_event(&mut engine, &mut sink, now, token, r)) {
                sink.counters.host_events += 1;
            }
        }

        if drained(driver.timers(&mut engine, &mut sink, now)) {
            sink.counters.engine_timers += 1;
        }

        if guest_got_frames || guest.poll_at().is_some_and(|t| t <= now) {
            sink.counters.guest_polls += 1;
            guest.poll(now, &mut guest_out);
            for frame in guest_out.drain(..) {
                let class = sink
                    .retransmits
                    .count_sent(sink.counters, Direction::Up, &frame);
                if let Some(w) = capture.as_mut() {
                    let _ = w.record_at(std::time::Duration::from_nanos(now.as_nanos()), &frame);
                }
                to_engine.send(sink.sched, frame, |f| Ev::ToEngine(class, f));
            }
        }

        // The engine's frames for the guest.
        drained(driver.drain(&mut engine, &mut sink, now));
    };
    let wall = started.elapsed();
    let virtual_end = clock();
    // Close the engine's sockets before the services go.
    let engine_counters = engine.counters().clone();
    drop(engine);
    services.stop();
    let stats = services.stats();

    let smol = guest.as_smol();
    let mut workloads = smol.map(|g| g.reports()).unwrap_or_default();
    for (w, name) in workloads.iter_mut().zip(&names) {
        w.name.clone_from(name);
    }
    let mut report = RunReport {
        name: sc.name().to_string(),
        seed,
        stop,
        virtual_end,
        trace_hash: 0,
        trace_events: 0,
        sim: counters,
        engine: engine_counters,
        up: *to_engine.counters(),
        down: *to_guest.counters(),
        guest_address: smol.and_then(|g| g.address()).map(|a| a.to_string()),
        guest_router: smol.and_then(|g| g.router()),
        guest_dns: smol.map(|g| g.dns_servers().to_vec()).unwrap_or_default(),
        workloads,
        inbound: Vec::new(),
        script: None,
        udp_echoed: stats.udp_echoed.load(std::sync::atomic::Ordering::Relaxed),
        sink_bytes: stats.sink_bytes.load(std::sync::atomic::Ordering::Relaxed),
        pcap: capture.and_then(|w| w.into_inner().ok()),
        failures: Vec::new(),
    };
    report.failures = sc.judge(&report, &guest);
    if blocked > 0 {
        report.failures.push(format!(
            "{blocked} guest frames to destinations other than the host's loopback were blocked"
        ));
    }
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    Ok(RealRunReport {
        accepted: load(&stats.accepted),
        resets: load(&stats.resets),
        resets_failed: load(&stats.resets_failed),
        steps: report.sim.steps,
        report,
        translations,
        blocked_frames: blocked,
        ignored,
        wall,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use passt_engine::MacAddr;
    use passt_engine::wire::{IpRepr, Ipv4Repr, TcpFlags, TcpRepr};

    fn tcp_to(dst: Ipv4Addr) -> Vec<u8> {
        let ip = IpRepr::V4(Ipv4Repr::new(Ipv4Addr::new(192, 0, 2, 15), dst, 0, 64));
        let tcp = TcpRepr {
            src_port: 40000,
            dst_port: 7,
            seq: 1,
            flags: TcpFlags::SYN,
            window: 100,
            ..TcpRepr::default()
        };
        let mut buf = vec![0; 200];
        let n = wire::build_tcp(
            &mut buf,
            crate::demo::GUEST_MAC,
            MacAddr::PASST_DEFAULT,
            ip,
            &tcp,
            &[],
        )
        .expect("build");
        buf.truncate(n);
        buf
    }

    #[test]
    fn the_guard_passes_the_gateway_only() {
        let c = Config::example();
        assert!(loopback_only(&c, &tcp_to(Ipv4Addr::new(192, 0, 2, 1))));
        assert!(!loopback_only(&c, &tcp_to(Ipv4Addr::new(203, 0, 113, 7))));
        // The DNS address is forwarded to the host's resolver: not loopback.
        assert!(!loopback_only(&c, &tcp_to(Ipv4Addr::new(192, 0, 2, 53))));
        assert!(!loopback_only(&c, &tcp_to(Ipv4Addr::new(127, 0, 0, 1))));
        // Garbage is for the engine to drop.
        assert!(loopback_only(&c, &[0u8; 10]));
    }

    #[test]
    fn end_kinds_follow_the_guest_messages() {
        let mut w = WorkloadReport {
            finished: Some(Instant::ZERO),
            ..WorkloadReport::default()
        };
        assert_eq!(end_kind(&w), EndKind::Success);
        w.error = Some("connection refused (closed before it was established) after 0 B".into());
        assert_eq!(end_kind(&w), EndKind::Refused);
        w.error = Some("connection reset after 5 B sent, 0 B received".into());
        assert_eq!(end_kind(&w), EndKind::Reset);
        w.error = Some("timed out after 1s".into());
        assert_eq!(end_kind(&w), EndKind::Timeout);
        w.error = Some("received 3 bytes, expected 4".into());
        assert_eq!(end_kind(&w), EndKind::OtherError);
    }
}
