//! The whole-system driver: guest, links, engine and simulated host on one
//! virtual clock.
//!
//! # What this module owns
//!
//! [`Simulation`] owns the [`Scheduler`] of link deliveries, the
//! `Engine<SimHost>` under test, the [`SimGuest`] (smoltcp or scripted) and
//! the two [`Link`]s between guest and engine (each with its fault chain).
//! The engine is fed through the driver contract
//! ([`passt_engine::driver::Driver`]), as every driver of the engine is,
//! with the engine→guest link as its frame sink. One step of the loop:
//!
//! 1. the next time anything is due is
//!    `min(next delivery, engine.poll_timeout(), host.poll_timeout(),
//!    guest.poll_at())`; virtual time jumps there (nothing sleeps);
//! 2. the simulated host advances to that time (its own segments, ACKs,
//!    remote services);
//! 3. deliveries due are handed to the guest, or to the engine as guest
//!    frames (the driver drains the transmit queue first whenever it has no
//!    room), then the engine flushes what those frames queued for the host
//!    (batched UDP sends);
//! 4. host readiness goes to the engine (held back while a read burst
//!    would not fit the queue: the model is level-triggered, so it comes
//!    again), then due engine timers run;
//! 5. the guest runs, and what it sends enters the guest→engine link;
//! 6. the engine's transmit queue is drained into the engine→guest link.
//!
//! By default the link queues without bound (a guest that reads
//! continuously): a burst bigger than the transmit queue is drained into
//! the link in the middle of the step instead of overflowing the queue.
//! [`Simulation::limit_guest_rx`] bounds the frames in flight towards the
//! guest, as a guest's socket buffer does: the link then takes no more
//! beyond it, and the driver stops taking guest frames (kept, in order,
//! and offered again once frames reach the guest) and holds host readiness
//! back, as the real event loop does.
//!
//! Every processed event (deliveries, engine timers, host readiness, frames
//! sent by either side) is folded into a [`TraceHash`]; the host's own
//! trace hash is folded in by [`Simulation::trace_hash`]. The guest side of
//! the wire can be captured as pcap ([`Simulation::enable_capture`]).
//!
//! # What it must never do
//!
//! Read the wall clock, sleep, draw randomness other than from the seeds
//! handed in, or iterate unordered collections.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;

use passt_engine::driver::{Admit, Driver, DriverStats, FrameSink};
use passt_engine::host_io::Token;
use passt_engine::wire::{self, Icmpv6Repr, L3, L4};
use passt_engine::{Config, ConfigError, Engine, Instant, Readiness, TxQueue};

use crate::guest::SimGuest;
use crate::host::SimHost;
use crate::link::Link;
use crate::sched::{Scheduler, StableEncode, TraceHash};
use passt_engine::pcap::{PcapWriter, TsResolution};

/// What a frame carries, for per-protocol counts on the links.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FrameClass {
    /// ARP.
    Arp,
    /// DHCPv4 / DHCPv6.
    Dhcp,
    /// NDP (router and neighbour discovery).
    Ndp,
    /// ICMP / ICMPv6 other than NDP (echo, errors).
    Icmp,
    /// UDP other than DHCP.
    Udp,
    /// TCP.
    Tcp,
    /// Anything else, including frames that do not parse.
    Other,
}

impl FrameClass {
    /// Number of classes.
    pub const COUNT: usize = 7;
    /// Every class, in counter order.
    pub const ALL: [FrameClass; FrameClass::COUNT] = [
        FrameClass::Arp,
        FrameClass::Dhcp,
        FrameClass::Ndp,
        FrameClass::Icmp,
        FrameClass::Udp,
        FrameClass::Tcp,
        FrameClass::Other,
    ];

    /// Short name for reports.
    pub const fn name(self) -> &'static str {
        match self {
            FrameClass::Arp => "arp",
            FrameClass::Dhcp => "dhcp",
            FrameClass::Ndp => "ndp",
            FrameClass::Icmp => "icmp",
            FrameClass::Udp => "udp",
            FrameClass::Tcp => "tcp",
            FrameClass::Other => "other",
        }
    }

    /// Classifies a frame (as sent: before any fault touched it).
    pub fn of(frame: &[u8]) -> FrameClass {
        inspect(frame).0
    }
}

/// The sequence space a TCP segment occupies, for retransmission counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TcpSpan {
    /// (source, source port, destination, destination port).
    key: (IpAddr, u16, IpAddr, u16),
    /// Sequence number after the segment's last octet.
    end: u32,
}

/// Parses `frame` once: its class and, for a TCP segment that occupies
/// sequence space (RFC 9293 §3.4: data, SYN and FIN do; a RST does not
/// count), the span it ends at.
fn inspect(frame: &[u8]) -> (FrameClass, Option<TcpSpan>) {
    let Ok(parsed) = wire::parse_frame(frame) else {
        return (FrameClass::Other, None);
    };
    let (src, dst, l4) = match parsed.l3 {
        L3::Arp(_) => return (FrameClass::Arp, None),
        L3::Ipv4 { ip, l4 } => (IpAddr::V4(ip.src_addr), IpAddr::V4(ip.dst_addr), l4),
        L3::Ipv6 { ip, l4 } => (IpAddr::V6(ip.src_addr), IpAddr::V6(ip.dst_addr), l4),
    };
    let class = FrameClass::of_l4(&l4);
    let L4::Tcp { tcp, payload } = l4 else {
        return (class, None);
    };
    let len = payload.len() as u32
        + u32::from(tcp.flags.contains(wire::TcpFlags::SYN))
        + u32::from(tcp.flags.contains(wire::TcpFlags::FIN));
    if len == 0 || tcp.flags.contains(wire::TcpFlags::RST) {
        return (class, None);
    }
    let span = TcpSpan {
        key: (src, tcp.src_port, dst, tcp.dst_port),
        end: tcp.seq.wrapping_add(len),
    };
    (class, Some(span))
}

impl FrameClass {
    fn of_l4(l4: &L4<'_>) -> FrameClass {
        match l4 {
            L4::Tcp { .. } => FrameClass::Tcp,
            L4::Udp { udp, .. } => {
                if [67, 68, 546, 547].contains(&udp.src_port)
                    && [67, 68, 546, 547].contains(&udp.dst_port)
                {
                    FrameClass::Dhcp
                } else {
                    FrameClass::Udp
                }
            }
            L4::Icmpv6(Icmpv6Repr::Ndp(_)) => FrameClass::Ndp,
            L4::Icmpv4(_) | L4::Icmpv6(_) => FrameClass::Icmp,
            L4::Other { .. } => FrameClass::Other,
        }
    }
}

/// Frames per class sent into a link and delivered out of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassCounts {
    /// Frames sent into the link, by [`FrameClass`] index.
    pub sent: [u64; FrameClass::COUNT],
    /// Frames (including duplicates) delivered at the far end.
    pub delivered: [u64; FrameClass::COUNT],
}

impl ClassCounts {
    /// Frames of `class` sent.
    pub fn sent(&self, class: FrameClass) -> u64 {
        self.sent[class as usize]
    }
    /// Frames of `class` delivered.
    pub fn delivered(&self, class: FrameClass) -> u64 {
        self.delivered[class as usize]
    }
}

/// Which way a frame crosses the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Direction {
    /// Guest → engine.
    Up,
    /// Engine → guest.
    Down,
}

/// The one TCP retransmission detector, used by both arms: per direction
/// and connection, the highest sequence number sent so far.
#[derive(Debug, Default)]
pub(crate) struct Retransmits {
    highest: BTreeMap<(Direction, IpAddr, u16, IpAddr, u16), u32>,
}

impl Retransmits {
    /// Counts `frame`, sent in `dir`, in `counters` (per class, and as a
    /// TCP retransmission if it is one); returns its class.
    pub(crate) fn count_sent(
        &mut self,
        counters: &mut SimCounters,
        dir: Direction,
        frame: &[u8],
    ) -> FrameClass {
        let (class, span) = inspect(frame);
        let resent = span.is_some_and(|sp| self.resends(dir, sp));
        let (classes, retransmits) = match dir {
            Direction::Up => (&mut counters.up, &mut counters.tcp_retransmits_up),
            Direction::Down => (&mut counters.down, &mut counters.tcp_retransmits_down),
        };
        classes.sent[class as usize] += 1;
        if resent {
            *retransmits += 1;
        }
        class
    }

    /// Whether `span`, sent in `dir`, resends sequence space already sent
    /// (it ends at or below the highest sequence number sent so far; RFC
    /// 9293 §3.4: SYN and FIN occupy one each); records it if not.
    fn resends(&mut self, dir: Direction, span: TcpSpan) -> bool {
        let (src, sport, dst, dport) = span.key;
        let key = (dir, src, sport, dst, dport);
        match self.highest.get_mut(&key) {
            Some(high) => {
                if (span.end.wrapping_sub(*high) as i32) <= 0 {
                    true
                } else {
                    *high = span.end;
                    false
                }
            }
            None => {
                self.highest.insert(key, span.end);
                false
            }
        }
    }

    /// Whether a TCP `frame` sent in `dir` is a retransmission (as
    /// [`Retransmits::count_sent`] counts it).
    #[cfg(test)]
    fn is_retransmit(&mut self, dir: Direction, frame: &[u8]) -> bool {
        match inspect(frame) {
            (FrameClass::Tcp, Some(span)) => self.resends(dir, span),
            _ => false,
        }
    }
}

/// What the driver did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimCounters {
    /// Loop iterations.
    pub steps: u64,
    /// Link deliveries processed.
    pub deliveries: u64,
    /// Times the engine's timers ran.
    pub engine_timers: u64,
    /// Readiness events handed to the engine.
    pub host_events: u64,
    /// Times the guest ran.
    pub guest_polls: u64,
    /// Guest → engine, per class.
    pub up: ClassCounts,
    /// Engine → guest, per class.
    pub down: ClassCounts,
    /// TCP segments from the guest that resent sequence space already sent
    /// (SYN, data or FIN ending at or below the highest sent so far).
    pub tcp_retransmits_up: u64,
    /// Same for TCP segments from the engine.
    pub tcp_retransmits_down: u64,
}

/// Why [`Simulation::run_until`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The guest finished its work.
    GuestFinished,
    /// The time limit was reached.
    TimeUp,
    /// Nothing is pending anywhere: nothing can happen any more.
    Idle,
    /// Too many steps without virtual time moving (a livelock in a model).
    Stalled,
}

/// Most loop steps at one instant before the run is declared stalled.
const MAX_STEPS_PER_INSTANT: u64 = 100_000;

#[derive(Debug)]
enum SimEvent {
    ToEngine(FrameClass, Vec<u8>),
    ToGuest(FrameClass, Vec<u8>),
}

impl StableEncode for SimEvent {
    fn encode_stable(&self, out: &mut Vec<u8>) {
        let (tag, frame) = match self {
            SimEvent::ToEngine(_, f) => (0u8, f),
            SimEvent::ToGuest(_, f) => (1u8, f),
        };
        out.push(tag);
        frame.encode_stable(out);
    }
}

/// The whole simulated system (see the [module docs](self)).
pub struct Simulation {
    sched: Scheduler<SimEvent>,
    engine: Engine<SimHost>,
    driver: Driver,
    /// Guest frames the driver refused, offered again first (in order).
    refused: VecDeque<(FrameClass, Vec<u8>)>,
    /// Most frames in flight on the engine→guest link (`None`: no bound).
    guest_rx_limit: Option<usize>,
    /// Deliveries to the guest scheduled and not yet made.
    to_guest_in_flight: usize,
    guest: SimGuest,
    to_engine: Link,
    to_guest: Link,
    trace: TraceHash,
    capture: Option<PcapWriter<Vec<u8>>>,
    counters: SimCounters,
    host_events: Vec<(Token, Readiness)>,
    guest_out: Vec<Vec<u8>>,
    scratch: Vec<u8>,
    stalled_at: Option<(Instant, u64)>,
    retransmits: Retransmits,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("now", &self.now())
            .field("guest", &self.guest)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Simulation {
    /// Builds the engine (from `config`, on `host`, with `engine_seed`) and
    /// wires it to `guest` through `to_engine` and `to_guest`.
    pub fn new(
        config: Config,
        host: SimHost,
        engine_seed: u64,
        guest: SimGuest,
        to_engine: Link,
        to_guest: Link,
    ) -> Result<Self, ConfigError> {
        let driver = Driver::for_config(&config);
        let engine = Engine::new(config, host, engine_seed)?;
        Ok(Simulation {
            sched: Scheduler::starting_at(engine.host().now()),
            engine,
            driver,
            refused: VecDeque::new(),
            guest_rx_limit: None,
            to_guest_in_flight: 0,
            guest,
            to_engine,
            to_guest,
            trace: TraceHash::new(),
            capture: None,
            counters: SimCounters::default(),
            host_events: Vec::new(),
            guest_out: Vec::new(),
            scratch: Vec::new(),
            stalled_at: None,
            retransmits: Retransmits::default(),
        })
    }

    /// Starts capturing the guest side of the wire (frames the guest sends,
    /// when it sends them; frames it receives, when they arrive).
    pub fn enable_capture(&mut self) {
        if self.capture.is_none() {
            self.capture = PcapWriter::new(Vec::new(), TsResolution::Nanos).ok();
        }
    }

    /// The capture so far as a pcap file, ending the capture.
    pub fn take_pcap(&mut self) -> Option<Vec<u8>> {
        self.capture.take().and_then(|w| w.into_inner().ok())
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.sched.now()
    }

    /// The engine under test.
    pub fn engine(&self) -> &Engine<SimHost> {
        &self.engine
    }

    /// The engine, mutably (e.g. to open forwarded ports).
    pub fn engine_mut(&mut self) -> &mut Engine<SimHost> {
        &mut self.engine
    }

    /// The simulated host.
    pub fn host(&self) -> &SimHost {
        self.engine.host()
    }

    /// The simulated host, mutably (remote services, faults).
    pub fn host_mut(&mut self) -> &mut SimHost {
        self.engine.host_mut()
    }

    /// The guest.
    pub fn guest(&self) -> &SimGuest {
        &self.guest
    }

    /// The guest→engine link.
    pub fn link_to_engine(&self) -> &Link {
        &self.to_engine
    }

    /// The engine→guest link.
    pub fn link_to_guest(&self) -> &Link {
        &self.to_guest
    }

    /// The driver's counters.
    pub fn counters(&self) -> &SimCounters {
        &self.counters
    }

    /// Bounds the frames in flight towards the guest (sent into the
    /// engine→guest link, not yet delivered) at `frames` (at least one), as
    /// a guest's socket buffer would: see the [module docs](self).
    pub fn limit_guest_rx(&mut self, frames: usize) {
        self.guest_rx_limit = Some(frames.max(1));
    }

    /// What the driver contract did (frames refused, readiness held back,
    /// drains that stalled).
    pub fn driver_stats(&self) -> DriverStats {
        self.driver.stats()
    }

    /// Hash of the whole event trace: the driver's events and the host's
    /// internal events.
    pub fn trace_hash(&self) -> u64 {
        let mut t = self.trace.clone();
        t.write(&self.engine.host().trace_hash().value().to_le_bytes());
        t.value()
    }

    /// Number of events recorded in the trace (driver and host).
    pub fn trace_events(&self) -> u64 {
        self.trace.events() + self.engine.host().trace_hash().events()
    }

    /// The next time anything is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        // Level-triggered readiness left over (the engine read less than
        // was there): go again now, unless the driver holds it back for a
        // guest that has not taken its frames yet (a delivery wakes us).
        let ready = (self.engine.host().has_ready_events() && !self.driver.backpressured())
            .then(|| self.now());
        [
            ready,
            self.sched.peek_time(),
            // Refused guest frames wait for the guest to take frames (a
            // delivery) while the driver is held back, else go now.
            (!self.refused.is_empty() && !self.driver.backpressured()).then(|| self.now()),
            self.engine.poll_timeout(),
            self.engine.host().poll_timeout(),
            self.guest.poll_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs until the guest is finished, `end` is reached, nothing is
    /// pending, or the run stalls.
    pub fn run_until(&mut self, end: Instant) -> StopReason {
        self.run_until_observed(end, &mut |_| {})
    }

    /// [`Simulation::run_until`], calling `observe` after every step (to
    /// sample queues, flow tables and counters over the run).
    pub fn run_until_observed(
        &mut self,
        end: Instant,
        observe: &mut dyn FnMut(&Simulation),
    ) -> StopReason {
        self.run_loop(end, true, observe)
    }

    /// Runs until `end` whether or not the guest is finished (to let
    /// closes, timers and retransmissions play out), or until nothing is
    /// pending (`Idle`) or the run stalls; `observe` runs after every
    /// step. Never returns `GuestFinished`.
    pub fn settle_until(
        &mut self,
        end: Instant,
        observe: &mut dyn FnMut(&Simulation),
    ) -> StopReason {
        self.run_loop(end, false, observe)
    }

    fn run_loop(
        &mut self,
        end: Instant,
        stop_when_finished: bool,
        observe: &mut dyn FnMut(&Simulation),
    ) -> StopReason {
        loop {
            if stop_when_finished && self.guest.finished() {
                return StopReason::GuestFinished;
            }
            let Some(next) = self.next_deadline() else {
                return StopReason::Idle;
            };
            if next > end {
                let _ = self.sched.advance_to(end);
                self.engine.host_mut().advance(end);
                return StopReason::TimeUp;
            }
            if !self.step_at(next) {
                return StopReason::Stalled;
            }
            observe(self);
        }
    }

    /// One iteration of the loop at `at` (clamped to now). Returns false
    /// if the run is stalled.
    pub fn step_at(&mut self, at: Instant) -> bool {
        let now = at.max(self.now());
        match self.stalled_at {
            Some((t, n)) if t == now => {
                if n >= MAX_STEPS_PER_INSTANT {
                    return false;
                }
                self.stalled_at = Some((t, n + 1));
            }
            _ => self.stalled_at = Some((now, 1)),
        }
        self.counters.steps += 1;

        // The host's clock first: every HostIo call the engine makes below
        // happens at `now`.
        self.engine.host_mut().advance(now);

        let Simulation {
            sched,
            engine,
            driver,
            refused,
            guest,
            to_guest,
            trace,
            capture,
            counters,
            host_events,
            scratch,
            retransmits,
            guest_rx_limit,
            to_guest_in_flight,
            ..
        } = self;
        let mut sink = LinkSink {
            link: to_guest,
            sched,
            trace,
            counters,
            retransmits,
            scratch,
            limit: *guest_rx_limit,
            in_flight: to_guest_in_flight,
        };

        let mut guest_got_frames = false;
        while let Some((t, ev)) = sink.sched.pop_due(now) {
            sink.trace.record_event(t, &ev);
            sink.counters.deliveries += 1;
            match ev {
                SimEvent::ToEngine(class, frame) => {
                    if !refused.is_empty() {
                        refused.push_back((class, frame));
                    } else if let Err(back) = offer(driver, engine, &mut sink, now, class, frame) {
                        refused.push_back(back);
                    }
                }
                SimEvent::ToGuest(class, frame) => {
                    *sink.in_flight = sink.in_flight.saturating_sub(1);
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
        // Guest frames refused earlier (and those that arrived behind
        // them), in order, now that the guest may have taken frames.
        while let Some((class, frame)) = refused.pop_front() {
            if let Err(back) = offer(driver, engine, &mut sink, now, class, frame) {
                refused.push_front(back);
                break;
            }
        }
        // The frames delivered at this instant are one batch: what they
        // queued for the host (UDP datagrams) leaves now, batched.
        drained(driver.flush(engine, &mut sink, now));

        host_events.clear();
        engine.host_mut().take_events(host_events);
        for &(token, r) in host_events.iter() {
            // A report held back (no room for a read burst, and the guest
            // takes no more frames this step) comes again, as do the rest:
            // the model's readiness is level-triggered.
            if !drained(driver.host_event(engine, &mut sink, now, token, r)) {
                break;
            }
            sink.scratch.clear();
            sink.scratch.push(2);
            sink.scratch.extend_from_slice(&token.0.to_le_bytes());
            sink.scratch.push(
                u8::from(r.readable)
                    | u8::from(r.writable) << 1
                    | u8::from(r.read_closed) << 2
                    | u8::from(r.hangup) << 3
                    | u8::from(r.error) << 4,
            );
            sink.trace.record(now, sink.scratch);
            sink.counters.host_events += 1;
        }

        if drained(driver.timers(engine, &mut sink, now)) {
            sink.trace.record(now, b"engine-timer");
            sink.counters.engine_timers += 1;
        }

        if guest_got_frames || self.guest.poll_at().is_some_and(|t| t <= now) {
            self.counters.guest_polls += 1;
            let mut out = core::mem::take(&mut self.guest_out);
            self.guest.poll(now, &mut out);
            for frame in out.drain(..) {
                self.send_to_engine(now, frame);
            }
            self.guest_out = out;
        }

        self.drain_engine(now);
        true
    }

    fn send_to_engine(&mut self, now: Instant, frame: Vec<u8>) {
        let class = self
            .retransmits
            .count_sent(&mut self.counters, Direction::Up, &frame);
        self.scratch.clear();
        self.scratch.push(3);
        frame.encode_stable(&mut self.scratch);
        self.trace.record(now, &self.scratch);
        if let Some(w) = self.capture.as_mut() {
            let _ = w.record_at(std::time::Duration::from_nanos(now.as_nanos()), &frame);
        }
        self.to_engine
            .send(&mut self.sched, frame, |f| SimEvent::ToEngine(class, f));
    }

    fn drain_engine(&mut self, now: Instant) {
        let mut sink = LinkSink {
            link: &mut self.to_guest,
            sched: &mut self.sched,
            trace: &mut self.trace,
            counters: &mut self.counters,
            retransmits: &mut self.retransmits,
            scratch: &mut self.scratch,
            limit: self.guest_rx_limit,
            in_flight: &mut self.to_guest_in_flight,
        };
        drained(self.driver.drain(&mut self.engine, &mut sink, now));
    }
}

/// Hands `frame` to the engine through the driver; gives it back if the
/// driver refused it (no room in the transmit queue).
fn offer(
    driver: &mut Driver,
    engine: &mut Engine<SimHost>,
    sink: &mut LinkSink<'_>,
    now: Instant,
    class: FrameClass,
    frame: Vec<u8>,
) -> Result<(), (FrameClass, Vec<u8>)> {
    match drained(driver.guest_frame(engine, sink, now, &frame)) {
        Admit::Taken => {
            sink.counters.up.delivered[class as usize] += 1;
            Ok(())
        }
        Admit::Full => Err((class, frame)),
    }
}

/// The value of a driver step whose sink cannot fail.
pub(crate) fn drained<T>(r: Result<T, Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

/// The driver's frame sink: the engine→guest link, counting and tracing
/// every frame it takes. It takes every frame, or with a `limit` as many
/// as keep the deliveries in flight within it.
struct LinkSink<'a> {
    link: &'a mut Link,
    sched: &'a mut Scheduler<SimEvent>,
    trace: &'a mut TraceHash,
    counters: &'a mut SimCounters,
    retransmits: &'a mut Retransmits,
    scratch: &'a mut Vec<u8>,
    limit: Option<usize>,
    in_flight: &'a mut usize,
}

impl FrameSink for LinkSink<'_> {
    type Error = Infallible;

    fn accept(&mut self, now: Instant, frames: &TxQueue) -> Result<usize, Infallible> {
        let room = self
            .limit
            .map_or(usize::MAX, |l| l.saturating_sub(*self.in_flight));
        let take = frames.len().min(room);
        for frame in frames.iter().take(take) {
            let class = self
                .retransmits
                .count_sent(self.counters, Direction::Down, frame);
            self.scratch.clear();
            self.scratch.push(4);
            frame.encode_stable(self.scratch);
            self.trace.record(now, self.scratch);
            *self.in_flight += self
                .link
                .send(self.sched, frame.to_vec(), |f| SimEvent::ToGuest(class, f));
        }
        Ok(take)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::{Script, ScriptGuest};
    use passt_engine::MacAddr;
    use passt_engine::wire::{IpRepr, Ipv4Repr, TcpFlags, TcpRepr};

    fn tcp_frame(seq: u32, flags: TcpFlags, len: usize) -> Vec<u8> {
        let ip = IpRepr::V4(Ipv4Repr::new(
            "192.0.2.15".parse().unwrap(),
            "203.0.113.7".parse().unwrap(),
            0,
            64,
        ));
        let tcp = TcpRepr {
            src_port: 40000,
            dst_port: 7,
            seq,
            flags,
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
            &vec![7; len],
        )
        .unwrap();
        buf.truncate(n);
        buf
    }

    fn idle_sim() -> Simulation {
        let script = Script::parse("").unwrap();
        Simulation::new(
            Config::example(),
            SimHost::with_seed(1),
            1,
            SimGuest::Script(Box::new(ScriptGuest::new(
                script,
                MacAddr::PASST_DEFAULT,
                Instant::ZERO,
            ))),
            Link::ideal("up"),
            Link::ideal("down"),
        )
        .unwrap()
    }

    #[test]
    fn classifies_frames() {
        assert_eq!(
            FrameClass::of(&tcp_frame(1, TcpFlags::SYN, 0)),
            FrameClass::Tcp
        );
        assert_eq!(FrameClass::of(&[0u8; 10]), FrameClass::Other);
    }

    #[test]
    fn counts_retransmitted_sequence_space() {
        let mut r = Retransmits::default();
        let (up, down) = (Direction::Up, Direction::Down);
        let ack = TcpFlags::ACK;
        assert!(!r.is_retransmit(up, &tcp_frame(100, TcpFlags::SYN, 0)));
        assert!(r.is_retransmit(up, &tcp_frame(100, TcpFlags::SYN, 0)));
        assert!(!r.is_retransmit(up, &tcp_frame(101, ack, 10)));
        // A pure ACK occupies no sequence space.
        assert!(!r.is_retransmit(up, &tcp_frame(111, ack, 0)));
        assert!(r.is_retransmit(up, &tcp_frame(101, ack, 10)));
        assert!(!r.is_retransmit(up, &tcp_frame(111, ack, 10)));
        // The other direction is tracked apart.
        assert!(!r.is_retransmit(down, &tcp_frame(101, ack, 10)));
    }

    #[test]
    fn counting_a_sent_frame_counts_its_class_and_retransmission() {
        let mut r = Retransmits::default();
        let mut c = SimCounters::default();
        let syn = tcp_frame(100, TcpFlags::SYN, 0);
        assert_eq!(r.count_sent(&mut c, Direction::Down, &syn), FrameClass::Tcp);
        r.count_sent(&mut c, Direction::Down, &syn);
        r.count_sent(&mut c, Direction::Up, &[0u8; 10]);
        assert_eq!(c.down.sent(FrameClass::Tcp), 2);
        assert_eq!(c.up.sent(FrameClass::Other), 1);
        assert_eq!((c.tcp_retransmits_up, c.tcp_retransmits_down), (0, 1));
    }

    #[test]
    fn an_empty_script_finishes_at_once_and_time_stays() {
        let mut sim = idle_sim();
        assert_eq!(
            sim.run_until(Instant::from_secs(5)),
            StopReason::GuestFinished
        );
        assert_eq!(sim.now(), Instant::ZERO);
        assert!(sim.take_pcap().is_none(), "capture is opt-in");
    }
}
