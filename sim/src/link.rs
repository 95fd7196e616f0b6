//! One-directional links: serialization at a bandwidth, a fault chain, and
//! propagation latency, producing delivery events in the scheduler.
//!
//! # What this module owns
//!
//! A [`Link`] carries frames (byte vectors) one way, e.g. guest → engine.
//! A frame sent at virtual time `now` goes through three stages:
//!
//! 1. **Serialization** at the sender, FIFO: the frame starts when the
//!    transmitter is free (`max(now, previous frame's end)`) and takes
//!    `ceil(len · 8 / bandwidth)` (no time at all with unlimited bandwidth).
//! 2. **The fault chain** ([`FaultChain`]), entered at the end of
//!    serialization: it may drop, delay, duplicate, corrupt, truncate or hold
//!    the frame (semantics in [`crate::fault`]).
//! 3. **Propagation latency**, a constant added to every surviving copy.
//!
//! Each surviving copy becomes one delivery at
//! `serialization end + fault delay + latency`, scheduled in the
//! [`Scheduler`] as an event the caller builds from the frame bytes. Without
//! jitter every delay is monotonic in send order, so the link is FIFO (same-
//! time deliveries keep send order, as the scheduler breaks ties by insertion);
//! per-frame jitter in the chain reorders frames naturally.
//!
//! Held frames stay in the link until their [`HoldHandle`](crate::fault::HoldHandle)
//! is open and [`Link::release_held`] (or the next [`Link::send`]) releases
//! them: they then continue the chain after the gate, at the release time,
//! and are not serialized again.
//!
//! # Counters
//!
//! [`LinkCounters`] obey, at every moment:
//! `sent + duplicated == delivered + dropped_total + (held − released)`.
//! "Delivered" means handed to the scheduler for delivery; an event the
//! caller cancels afterwards is the caller's business.
//!
//! # What it must never do
//!
//! Read the wall clock or iterate unordered collections; it owns no
//! randomness of its own (all draws happen in the chain's per-rule
//! generators).

use core::time::Duration;

use passt_engine::Instant;

use crate::fault::{ChainEffects, DropCause, Fate, FaultChain, HeldFrame};
use crate::sched::Scheduler;
use crate::seed::SimRng;

/// Physical parameters of a link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkConfig {
    /// Bandwidth in bits per second (`None`: infinitely fast).
    pub bandwidth_bps: Option<u64>,
    /// Propagation latency added to every frame.
    pub latency: Duration,
}

impl LinkConfig {
    /// Infinitely fast, zero latency.
    pub const IDEAL: LinkConfig = LinkConfig {
        bandwidth_bps: None,
        latency: Duration::ZERO,
    };

    /// A link of `bandwidth_bps` bits per second and `latency`.
    pub fn new(bandwidth_bps: u64, latency: Duration) -> Self {
        LinkConfig {
            bandwidth_bps: Some(bandwidth_bps),
            latency,
        }
    }

    /// Time to put `len` bytes on the wire: `ceil(len · 8 · 10⁹ / bps)` ns.
    /// A bandwidth of 0 is treated as 1 bit/s rather than infinite time.
    pub fn serialization_delay(&self, len: usize) -> Duration {
        match self.bandwidth_bps {
            None => Duration::ZERO,
            Some(bps) => {
                let bps = u128::from(bps.max(1));
                let bits = len as u128 * 8;
                let ns = (bits * 1_000_000_000).div_ceil(bps);
                Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
            }
        }
    }
}

/// One scheduled delivery (the scheduler-free form of [`Link::send`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// When the frame arrives at the far end.
    pub at: Instant,
    /// The frame as it arrives.
    pub frame: Vec<u8>,
}

/// What happened on a link (invariant in the [module docs](self)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Frames sent into the link.
    pub sent: u64,
    /// Bytes sent into the link.
    pub sent_bytes: u64,
    /// Frames (including copies) handed to the scheduler for delivery.
    pub delivered: u64,
    /// Bytes delivered (after truncation).
    pub delivered_bytes: u64,
    /// Frames dropped, indexed by [`DropCause::index`].
    pub dropped: [u64; DropCause::COUNT],
    /// Extra copies made by duplication.
    pub duplicated: u64,
    /// Frames (or copies) with a flipped bit.
    pub corrupted: u64,
    /// Frames (or copies) shortened.
    pub truncated: u64,
    /// Frames ever held by a gate.
    pub held: u64,
    /// Held frames released so far.
    pub released: u64,
}

impl LinkCounters {
    /// Drops for one cause.
    pub fn dropped(&self, cause: DropCause) -> u64 {
        self.dropped[cause.index()]
    }

    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Frames held right now.
    pub fn held_now(&self) -> u64 {
        self.held - self.released
    }

    /// Whether `sent + duplicated == delivered + dropped + held_now`.
    pub fn is_balanced(&self) -> bool {
        self.sent + self.duplicated == self.delivered + self.dropped_total() + self.held_now()
    }
}

/// A one-directional link (see the [module docs](self)).
#[derive(Debug)]
pub struct Link {
    name: String,
    config: LinkConfig,
    chain: FaultChain,
    tx_free_at: Instant,
    counters: LinkCounters,
    held: Vec<HeldFrame>,
    fates: Vec<Fate>,
    deliveries: Vec<Delivery>,
}

impl Link {
    /// A link called `name` with physical `config` and fault `chain`.
    pub fn new(name: impl Into<String>, config: LinkConfig, chain: FaultChain) -> Self {
        Link {
            name: name.into(),
            config,
            chain,
            tx_free_at: Instant::ZERO,
            counters: LinkCounters::default(),
            held: Vec::new(),
            fates: Vec::new(),
            deliveries: Vec::new(),
        }
    }

    /// An instantaneous, fault-free link.
    pub fn ideal(name: impl Into<String>) -> Self {
        Self::new(
            name,
            LinkConfig::IDEAL,
            FaultChain::new(SimRng::from_seed(0)),
        )
    }

    /// The link's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Physical parameters.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// The fault chain (e.g. to add a rule mid-scenario).
    pub fn chain_mut(&mut self) -> &mut FaultChain {
        &mut self.chain
    }

    /// Counters so far.
    pub fn counters(&self) -> &LinkCounters {
        &self.counters
    }

    /// Frames waiting on a hold gate.
    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// When the transmitter is next free.
    pub fn busy_until(&self) -> Instant {
        self.tx_free_at
    }

    /// Sends `frame` at the scheduler's current time; schedules one event
    /// (built by `wrap` from the delivered bytes) per surviving copy, after
    /// first releasing held frames whose gate is open. Returns the number of
    /// events scheduled.
    pub fn send<E>(
        &mut self,
        sched: &mut Scheduler<E>,
        frame: Vec<u8>,
        mut wrap: impl FnMut(Vec<u8>) -> E,
    ) -> usize {
        let now = sched.now();
        let mut deliveries = core::mem::take(&mut self.deliveries);
        deliveries.clear();
        self.release_held_into(now, &mut deliveries);
        self.transmit(now, frame, &mut deliveries);
        let n = deliveries.len();
        for d in deliveries.drain(..) {
            sched.schedule(d.at, wrap(d.frame));
        }
        self.deliveries = deliveries;
        n
    }

    /// Releases, at the scheduler's current time, every held frame whose gate
    /// is open, scheduling the survivors. Returns the number of events
    /// scheduled.
    pub fn release_held<E>(
        &mut self,
        sched: &mut Scheduler<E>,
        mut wrap: impl FnMut(Vec<u8>) -> E,
    ) -> usize {
        let mut deliveries = core::mem::take(&mut self.deliveries);
        deliveries.clear();
        self.release_held_into(sched.now(), &mut deliveries);
        let n = deliveries.len();
        for d in deliveries.drain(..) {
            sched.schedule(d.at, wrap(d.frame));
        }
        self.deliveries = deliveries;
        n
    }

    /// Scheduler-free core of [`Link::send`] (without the release step):
    /// appends the deliveries of `frame`, sent at `now`, to `out`.
    pub fn transmit(&mut self, now: Instant, frame: Vec<u8>, out: &mut Vec<Delivery>) {
        self.counters.sent += 1;
        self.counters.sent_bytes += frame.len() as u64;
        let start = now.max(self.tx_free_at);
        let done = start + self.config.serialization_delay(frame.len());
        self.tx_free_at = done;
        let mut fates = core::mem::take(&mut self.fates);
        fates.clear();
        let mut fx = ChainEffects::default();
        self.chain.run(done, frame, &mut fates, &mut fx);
        self.account(done, &mut fates, fx, out);
        self.fates = fates;
    }

    /// Scheduler-free core of [`Link::release_held`]: releases, at `now`,
    /// the held frames whose gate is open (in the order they were held) and
    /// appends the survivors' deliveries to `out`.
    pub fn release_held_into(&mut self, now: Instant, out: &mut Vec<Delivery>) {
        if self.held.iter().all(|h| h.handle.is_closed()) {
            return;
        }
        let (ready, still): (Vec<HeldFrame>, Vec<HeldFrame>) = core::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| !h.handle.is_closed());
        self.held = still;
        for held in ready {
            self.counters.released += 1;
            let mut fates = core::mem::take(&mut self.fates);
            fates.clear();
            let mut fx = ChainEffects::default();
            self.chain.resume(held, now, &mut fates, &mut fx);
            self.account(now, &mut fates, fx, out);
            self.fates = fates;
        }
    }

    fn account(
        &mut self,
        chain_entry: Instant,
        fates: &mut Vec<Fate>,
        fx: ChainEffects,
        out: &mut Vec<Delivery>,
    ) {
        self.counters.duplicated += fx.duplicated;
        self.counters.corrupted += fx.corrupted;
        self.counters.truncated += fx.truncated;
        for fate in fates.drain(..) {
            match fate {
                Fate::Deliver { delay, frame } => {
                    self.counters.delivered += 1;
                    self.counters.delivered_bytes += frame.len() as u64;
                    out.push(Delivery {
                        at: chain_entry + delay + self.config.latency,
                        frame,
                    });
                }
                Fate::Dropped { cause, .. } => self.counters.dropped[cause.index()] += 1,
                Fate::Held(held) => {
                    self.counters.held += 1;
                    self.held.push(held);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{
        BernoulliLoss, Corruption, Duplication, HoldHandle, Latency, MtuClamp, TokenBucket,
    };
    use crate::sched::TraceHash;

    #[test]
    fn serialization_delay_math() {
        let c = LinkConfig::new(12_000_000, Duration::ZERO);
        assert_eq!(c.serialization_delay(1500), Duration::from_millis(1));
        assert_eq!(c.serialization_delay(0), Duration::ZERO);
        // 1 byte at 3 bit/s: 8/3 s, rounded up to the nanosecond.
        let slow = LinkConfig::new(3, Duration::ZERO);
        assert_eq!(
            slow.serialization_delay(1),
            Duration::from_nanos(2_666_666_667)
        );
        assert_eq!(
            LinkConfig::IDEAL.serialization_delay(1 << 20),
            Duration::ZERO
        );
    }

    #[test]
    fn back_to_back_frames_queue_at_the_transmitter() {
        let mut link = Link::new(
            "a->b",
            LinkConfig::new(12_000_000, Duration::from_millis(5)),
            FaultChain::new(SimRng::from_seed(0)),
        );
        let mut sched: Scheduler<(u8, usize)> = Scheduler::new();
        for i in 0..3u8 {
            link.send(&mut sched, vec![i; 1500], |f| (f[0], f.len()));
        }
        // 1 ms serialization each, 5 ms propagation.
        assert_eq!(sched.pop_next(), Some((Instant::from_millis(6), (0, 1500))));
        assert_eq!(sched.pop_next(), Some((Instant::from_millis(7), (1, 1500))));
        assert_eq!(sched.pop_next(), Some((Instant::from_millis(8), (2, 1500))));
        // An idle transmitter starts at once.
        sched.advance_to(Instant::from_millis(20)).ok();
        link.send(&mut sched, vec![3; 1500], |f| (f[0], f.len()));
        assert_eq!(
            sched.pop_next(),
            Some((Instant::from_millis(26), (3, 1500)))
        );
        assert_eq!(link.counters().sent, 4);
        assert_eq!(link.counters().delivered, 4);
        assert_eq!(link.counters().delivered_bytes, 6000);
    }

    fn arrival_order(link: &mut Link, n: u32) -> Vec<u32> {
        let mut sched: Scheduler<u32> = Scheduler::new();
        for i in 0..n {
            sched
                .advance_to(Instant::from_nanos(u64::from(i) * 100 * 1_000))
                .ok();
            // Deliveries may be due before the next send: drain them in order.
            link.send(&mut sched, i.to_be_bytes().to_vec(), |f| {
                u32::from_be_bytes([f[0], f[1], f[2], f[3]])
            });
        }
        let mut order = Vec::new();
        while let Some((_, id)) = sched.pop_next() {
            order.push(id);
        }
        order
    }

    #[test]
    fn fifo_without_jitter_reordered_with_it() {
        let mut plain = Link::new(
            "plain",
            LinkConfig::new(100_000_000, Duration::from_millis(3)),
            FaultChain::new(SimRng::from_seed(1)).with(Latency::fixed(Duration::from_millis(2))),
        );
        // advance_to would fail with events pending; use a link whose
        // deliveries are all later than the last send.
        let order = arrival_order(&mut plain, 10);
        assert_eq!(order, (0..10).collect::<Vec<_>>());

        let mut jittery = Link::new(
            "jittery",
            LinkConfig::new(100_000_000, Duration::from_millis(20)),
            FaultChain::new(SimRng::from_seed(1))
                .with(Latency::uniform(Duration::ZERO, Duration::from_millis(2))),
        );
        let order = arrival_order(&mut jittery, 100);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>(), "nothing lost");
        assert_ne!(order, sorted, "jitter reorders");
    }

    #[test]
    fn counters_balance_under_every_fault() {
        let handle = HoldHandle::new();
        let chain = FaultChain::new(SimRng::from_seed(5))
            .with(TokenBucket::new(1_000_000, 4_000).with_queue_limit(20_000))
            .with(BernoulliLoss::new(0.05))
            .with(MtuClamp::truncate_above(1000))
            .with(Corruption::new(0.05))
            .with(Duplication::new(0.05, Duration::from_millis(1)))
            .with(handle.gate())
            .with(Latency::uniform(Duration::ZERO, Duration::from_millis(3)));
        let mut link = Link::new("x", LinkConfig::new(50_000_000, Duration::ZERO), chain);
        let mut sched: Scheduler<Vec<u8>> = Scheduler::new();
        let mut rng = SimRng::from_seed(6);
        for i in 0..10_000u64 {
            if i == 3_000 {
                handle.close();
            }
            if i == 3_500 {
                handle.open();
            }
            let len = rng.range_inclusive(60, 1500) as usize;
            link.send(&mut sched, vec![0; len], |f| f);
            assert!(link.counters().is_balanced(), "{:?}", link.counters());
            // Keep virtual time moving with the offered load.
            while let Some(at) = sched.peek_time() {
                if at > Instant::from_nanos(i * 800 * 1_000) {
                    break;
                }
                sched.pop_next();
            }
            sched.advance_to(Instant::from_nanos(i * 800 * 1_000)).ok();
        }
        let c = *link.counters();
        assert_eq!(link.held_count(), 0);
        assert_eq!(c.held, c.released);
        assert!(c.held > 0 && c.dropped(DropCause::Loss) > 0 && c.duplicated > 0);
        assert!(c.corrupted > 0 && c.truncated > 0);
        assert!(c.is_balanced());
        // Every delivered frame respects the MTU clamp.
        let mut max_len = 0;
        while let Some((_, f)) = sched.pop_next() {
            max_len = max_len.max(f.len());
        }
        assert!(max_len <= 1000);
    }

    #[test]
    fn held_frames_wait_for_release() {
        let handle = HoldHandle::new();
        let mut link = Link::new(
            "held",
            LinkConfig::new(8_000_000, Duration::from_millis(1)),
            FaultChain::new(SimRng::from_seed(0)).with(handle.gate()),
        );
        let mut sched: Scheduler<Vec<u8>> = Scheduler::new();
        handle.close();
        assert_eq!(link.send(&mut sched, vec![1; 1000], |f| f), 0);
        assert_eq!(link.send(&mut sched, vec![2; 1000], |f| f), 0);
        assert_eq!(link.held_count(), 2);
        assert!(sched.is_empty());
        // Still closed: release does nothing.
        assert_eq!(link.release_held(&mut sched, |f| f), 0);
        sched.advance_to(Instant::from_millis(100)).ok();
        handle.open();
        assert_eq!(link.release_held(&mut sched, |f| f), 2);
        // Released at 100 ms, no re-serialization, 1 ms propagation, in order.
        assert_eq!(
            sched.pop_next(),
            Some((Instant::from_millis(101), vec![1; 1000]))
        );
        assert_eq!(
            sched.pop_next(),
            Some((Instant::from_millis(101), vec![2; 1000]))
        );
        assert_eq!(link.counters().released, 2);
        assert!(link.counters().is_balanced());
    }

    #[test]
    fn a_whole_link_run_is_deterministic_per_seed() {
        fn run(seed: u64) -> (u64, LinkCounters) {
            let mut link = Link::new(
                "swarm",
                LinkConfig::new(10_000_000, Duration::from_millis(2)),
                FaultChain::swarm(seed),
            );
            let mut sched: Scheduler<Vec<u8>> = Scheduler::new();
            let mut trace = TraceHash::new();
            for i in 0..3000u64 {
                link.send(&mut sched, (i as u32).to_le_bytes().repeat(50), |f| f);
                while sched
                    .peek_time()
                    .is_some_and(|t| t <= Instant::from_nanos(i * 300 * 1_000))
                {
                    sched.pop_next_traced(&mut trace);
                }
                sched.advance_to(Instant::from_nanos(i * 300 * 1_000)).ok();
            }
            while sched.pop_next_traced(&mut trace).is_some() {}
            (trace.value(), *link.counters())
        }
        assert_eq!(run(2024), run(2024));
        assert_ne!(run(2024).0, run(2025).0);
    }
}
