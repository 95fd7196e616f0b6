//! Fault injection: rules that decide each frame's fate on a link, the
//! ordered chain that combines them, host-side fault descriptors, and swarm
//! mode.
//!
//! # What this module owns
//!
//! A [`FaultRule`] looks at one frame (its bytes and the virtual time it
//! reaches the rule) and returns a [`Decision`]: pass, delay, drop, duplicate,
//! corrupt one bit, truncate, or hold until a [`HoldHandle`] releases it.
//! Stock rules: [`BernoulliLoss`], [`GilbertElliott`] burst loss, [`Latency`]
//! with [`Jitter`], [`Duplication`], [`Corruption`], [`TokenBucket`] rate
//! limit, [`MtuClamp`], [`Partition`] windows, [`HoldGate`]; [`FnRule`] wraps
//! a closure for scripted scenarios.
//!
//! A [`FaultChain`] runs rules in order. Each rule gets **its own** child
//! generator (`rule<index>:<name>` under the chain's generator), so adding or
//! retuning one rule never shifts the random draws of the others.
//!
//! # Combination semantics
//!
//! A frame enters the chain at time `t` and walks the rules in order, with an
//! accumulated delay `d` (initially zero). Each rule sees the frame as
//! modified so far, at time `t + d`:
//!
//! - **Pass**: continue with the next rule.
//! - **Delay(x)**: `d += x`, continue (delays add up).
//! - **Drop**: the frame is gone; nothing after this rule sees it (the first
//!   Drop wins). Copies spawned earlier are separate frames and are not
//!   affected.
//! - **Duplicate(extra)**: one copy per entry of `extra`. Each copy starts
//!   as the frame at this point (including earlier corruption/truncation),
//!   with delay `d + extra[i]`, and continues **through the rest of the chain
//!   independently** (rules after this one see and may drop, delay or
//!   corrupt each copy separately, like duplication on an early hop of a
//!   lossy path). The original continues too. The original finishes the
//!   chain first, then the copies in order. At most [`MAX_COPIES_PER_FRAME`]
//!   copies are made per entering frame; further duplicate requests are
//!   ignored (a guard against a runaway custom rule).
//! - **Corrupt { bit }**: bit `bit` of the frame (bit 0 = least significant
//!   bit of byte 0) is flipped, continue. A bit index outside the frame is a
//!   no-op.
//! - **Truncate(len)**: the frame is cut to `len` bytes (a no-op if it is not
//!   longer), continue.
//! - **Hold(handle)**: evaluation stops; the frame waits (in the link) until
//!   the handle is open and the link's owner calls its release. Released
//!   frames resume at the **next** rule, at the release time (the delay
//!   accumulated before the hold counts as spent waiting).
//!
//! Every stock rule consumes a fixed number of random draws per frame,
//! whatever its parameters, so a decision sequence is a pure function of
//! (seed, rule parameters, frame sizes and times).
//!
//! # What it must never do
//!
//! Read the wall clock, draw OS randomness, or iterate unordered collections.

use core::fmt;
use core::num::NonZeroUsize;
use core::time::Duration;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use passt_engine::Instant;

use crate::seed::SimRng;

/// Upper bound on copies a [`FaultChain`] makes of one entering frame.
pub const MAX_COPIES_PER_FRAME: usize = 64;

/// Why a fault rule dropped a frame (link counters are kept per cause).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropCause {
    /// Independent (Bernoulli) loss.
    Loss,
    /// Gilbert–Elliott burst loss.
    BurstLoss,
    /// The rate limiter's queue was full.
    QueueFull,
    /// Longer than the MTU clamp allows.
    Mtu,
    /// Inside a partition / blackhole window.
    Partition,
    /// A scripted ([`FnRule`]) or other custom rule.
    Scripted,
}

impl DropCause {
    /// Number of causes.
    pub const COUNT: usize = 6;
    /// Every cause, in counter order.
    pub const ALL: [DropCause; DropCause::COUNT] = [
        DropCause::Loss,
        DropCause::BurstLoss,
        DropCause::QueueFull,
        DropCause::Mtu,
        DropCause::Partition,
        DropCause::Scripted,
    ];

    /// Position in [`DropCause::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Short name for reports.
    pub const fn name(self) -> &'static str {
        match self {
            DropCause::Loss => "loss",
            DropCause::BurstLoss => "burst-loss",
            DropCause::QueueFull => "queue-full",
            DropCause::Mtu => "mtu",
            DropCause::Partition => "partition",
            DropCause::Scripted => "scripted",
        }
    }
}

impl fmt::Display for DropCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A shared switch that holds frames while closed. Clones share the switch.
///
/// Closing it makes [`HoldGate`] rules return [`Decision::Hold`]; opening it
/// lets the link release the frames it keeps (the link's owner calls
/// `Link::release_held`; the link also releases on every send).
#[derive(Clone, Debug, Default)]
pub struct HoldHandle {
    closed: Arc<AtomicBool>,
}

impl HoldHandle {
    /// A new, open handle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts holding frames.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Stops holding; frames already held become releasable.
    pub fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
    }

    /// Whether frames are being held.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// A [`HoldGate`] rule controlled by this handle.
    pub fn gate(&self) -> HoldGate {
        HoldGate {
            handle: self.clone(),
        }
    }
}

impl PartialEq for HoldHandle {
    /// Two handles are equal when they share the same switch.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.closed, &other.closed)
    }
}

impl Eq for HoldHandle {}

/// What a rule decides for one frame (semantics in the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Leave the frame alone.
    Pass,
    /// Delay the frame by this much more.
    Delay(Duration),
    /// Lose the frame.
    Drop(DropCause),
    /// Make one extra copy per entry; the entry is that copy's extra delay
    /// (zero for none).
    Duplicate(Vec<Duration>),
    /// Flip this bit (bit 0 = LSB of byte 0).
    Corrupt {
        /// Index of the flipped bit.
        bit: usize,
    },
    /// Cut the frame to this many bytes.
    Truncate(usize),
    /// Keep the frame until this handle is open and the link releases it.
    Hold(HoldHandle),
}

/// One fault rule: looks at a frame at a virtual time and decides its fate.
///
/// `rng` is the rule's own generator (a child of its chain's). Rules may keep
/// state (a Markov chain, a token bucket) but must be deterministic in
/// (their state, `now`, `frame`, `rng`).
pub trait FaultRule: fmt::Debug + Send {
    /// Short name (used for the rule's generator label and reports).
    fn name(&self) -> &'static str;
    /// Decides the fate of `frame`, which reaches this rule at `now`.
    fn apply(&mut self, now: Instant, frame: &[u8], rng: &mut SimRng) -> Decision;
}

/// Independent loss: each frame is dropped with probability `p`. One draw.
#[derive(Clone, Debug, PartialEq)]
pub struct BernoulliLoss {
    /// Drop probability in `[0, 1]`.
    pub p: f64,
}

impl BernoulliLoss {
    /// Loss with probability `p`.
    pub fn new(p: f64) -> Self {
        BernoulliLoss { p }
    }
}

impl FaultRule for BernoulliLoss {
    fn name(&self) -> &'static str {
        "loss"
    }
    fn apply(&mut self, _now: Instant, _frame: &[u8], rng: &mut SimRng) -> Decision {
        if rng.chance(self.p) {
            Decision::Drop(DropCause::Loss)
        } else {
            Decision::Pass
        }
    }
}

/// Gilbert–Elliott burst loss: a two-state Markov chain (Good, Bad) with a
/// loss probability per state.
///
/// Per frame (two draws): the frame is lost with the current state's loss
/// probability, then the state moves (Good→Bad with `p_good_to_bad`,
/// Bad→Good with `p_bad_to_good`). The chain starts in Good. A Bad sojourn
/// lasts `1 / p_bad_to_good` frames on average (geometric), so with
/// `loss_bad = 1` and `loss_good = 0` the mean loss burst is
/// `1 / p_bad_to_good` and the long-run loss rate is
/// `p_good_to_bad / (p_good_to_bad + p_bad_to_good)`.
#[derive(Clone, Debug, PartialEq)]
pub struct GilbertElliott {
    /// Probability of moving Good → Bad after a frame.
    pub p_good_to_bad: f64,
    /// Probability of moving Bad → Good after a frame.
    pub p_bad_to_good: f64,
    /// Loss probability in the Good state.
    pub loss_good: f64,
    /// Loss probability in the Bad state.
    pub loss_bad: f64,
    bad: bool,
}

impl GilbertElliott {
    /// A chain starting in the Good state.
    pub fn new(p_good_to_bad: f64, p_bad_to_good: f64, loss_good: f64, loss_bad: f64) -> Self {
        GilbertElliott {
            p_good_to_bad,
            p_bad_to_good,
            loss_good,
            loss_bad,
            bad: false,
        }
    }

    /// Whether the chain is in the Bad state now.
    pub fn is_bad(&self) -> bool {
        self.bad
    }

    /// Long-run fraction of frames lost.
    pub fn stationary_loss(&self) -> f64 {
        let total = self.p_good_to_bad + self.p_bad_to_good;
        if total <= 0.0 {
            return if self.bad {
                self.loss_bad
            } else {
                self.loss_good
            };
        }
        let bad_share = self.p_good_to_bad / total;
        bad_share * self.loss_bad + (1.0 - bad_share) * self.loss_good
    }
}

impl FaultRule for GilbertElliott {
    fn name(&self) -> &'static str {
        "burst-loss"
    }
    fn apply(&mut self, _now: Instant, _frame: &[u8], rng: &mut SimRng) -> Decision {
        let loss = if self.bad {
            self.loss_bad
        } else {
            self.loss_good
        };
        let lost = rng.chance(loss);
        let flip = if self.bad {
            self.p_bad_to_good
        } else {
            self.p_good_to_bad
        };
        if rng.chance(flip) {
            self.bad = !self.bad;
        }
        if lost {
            Decision::Drop(DropCause::BurstLoss)
        } else {
            Decision::Pass
        }
    }
}

/// How a [`Latency`] rule varies its delay per frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Jitter {
    /// Always exactly the base delay (one value is still drawn and ignored,
    /// so draw counts do not depend on the jitter kind's parameters).
    None,
    /// Extra delay uniform in `0..=max`. One draw.
    Uniform {
        /// Largest extra delay.
        max: Duration,
    },
    /// Extra delay `mean + sigma·z` (z standard normal), clamped to
    /// `[mean − 4σ, mean + 4σ] ∩ [0, ∞)`. Two draws.
    Normal {
        /// Mean extra delay.
        mean: Duration,
        /// Standard deviation.
        sigma: Duration,
    },
}

impl Jitter {
    /// Largest extra delay this jitter can add.
    pub fn max_extra(&self) -> Duration {
        match *self {
            Jitter::None => Duration::ZERO,
            Jitter::Uniform { max } => max,
            Jitter::Normal { mean, sigma } => mean.saturating_add(sigma.saturating_mul(4)),
        }
    }

    /// Smallest extra delay this jitter can add.
    pub fn min_extra(&self) -> Duration {
        match *self {
            Jitter::None | Jitter::Uniform { .. } => Duration::ZERO,
            Jitter::Normal { mean, sigma } => mean.saturating_sub(sigma.saturating_mul(4)),
        }
    }
}

/// Propagation latency with jitter. Frames get independent delays, so a
/// jittered link reorders frames naturally.
#[derive(Clone, Debug, PartialEq)]
pub struct Latency {
    /// Delay every frame gets.
    pub base: Duration,
    /// Per-frame variation on top of `base`.
    pub jitter: Jitter,
}

impl Latency {
    /// A fixed delay.
    pub fn fixed(base: Duration) -> Self {
        Latency {
            base,
            jitter: Jitter::None,
        }
    }

    /// `base` plus a uniform extra delay in `0..=max_jitter`.
    pub fn uniform(base: Duration, max_jitter: Duration) -> Self {
        Latency {
            base,
            jitter: Jitter::Uniform { max: max_jitter },
        }
    }

    /// `base` plus normally distributed jitter (see [`Jitter::Normal`]).
    pub fn normal(base: Duration, mean: Duration, sigma: Duration) -> Self {
        Latency {
            base,
            jitter: Jitter::Normal { mean, sigma },
        }
    }
}

impl FaultRule for Latency {
    fn name(&self) -> &'static str {
        "latency"
    }
    fn apply(&mut self, _now: Instant, _frame: &[u8], rng: &mut SimRng) -> Decision {
        let extra = match self.jitter {
            Jitter::None => {
                rng.next_u64();
                Duration::ZERO
            }
            Jitter::Uniform { max } => rng.duration_between(Duration::ZERO, max),
            Jitter::Normal { mean, sigma } => {
                let z = rng.standard_normal().clamp(-4.0, 4.0);
                let ns = mean.as_nanos() as f64 + sigma.as_nanos() as f64 * z;
                let lo = self.jitter.min_extra().as_nanos() as f64;
                let hi = self.jitter.max_extra().as_nanos() as f64;
                Duration::from_nanos(ns.clamp(lo, hi) as u64)
            }
        };
        let total = self.base.saturating_add(extra);
        if total.is_zero() {
            Decision::Pass
        } else {
            Decision::Delay(total)
        }
    }
}

/// Duplication: with probability `p` a frame gets one extra copy, delayed by
/// a uniform extra in `0..=max_extra_delay`. Two draws.
#[derive(Clone, Debug, PartialEq)]
pub struct Duplication {
    /// Probability of one extra copy.
    pub p: f64,
    /// Largest extra delay of the copy.
    pub max_extra_delay: Duration,
}

impl Duplication {
    /// Duplication with probability `p`, copies delayed by up to `max_extra_delay`.
    pub fn new(p: f64, max_extra_delay: Duration) -> Self {
        Duplication { p, max_extra_delay }
    }
}

impl FaultRule for Duplication {
    fn name(&self) -> &'static str {
        "duplicate"
    }
    fn apply(&mut self, _now: Instant, _frame: &[u8], rng: &mut SimRng) -> Decision {
        let dup = rng.chance(self.p);
        let extra = rng.duration_between(Duration::ZERO, self.max_extra_delay);
        if dup {
            Decision::Duplicate(vec![extra])
        } else {
            Decision::Pass
        }
    }
}

/// Corruption: with probability `p`, one uniformly chosen bit of the frame
/// (past its first `skip` bytes) is flipped. Two draws. Frames no longer
/// than `skip` pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Corruption {
    /// Probability of flipping one bit.
    pub p: f64,
    /// Bytes at the start of the frame never flipped.
    pub skip: usize,
}

/// Length of the Ethernet header that [`Corruption::past_ethernet`] spares.
pub const ETHERNET_HEADER_LEN: usize = 14;

impl Corruption {
    /// Corruption with probability `p`, anywhere in the frame.
    pub fn new(p: f64) -> Self {
        Corruption { p, skip: 0 }
    }

    /// Corruption with probability `p` past the Ethernet header: what a
    /// real link can deliver. A flipped bit in the MAC addresses or the
    /// EtherType would fail the frame check sequence and be dropped by the
    /// NIC; above it only the IP, TCP and UDP checksums protect the frame,
    /// which is what this tests. (Flipping a source MAC that passes every
    /// check would show the engine a guest that changed its MAC, which it
    /// follows, as it must for a rebooted VM.)
    pub fn past_ethernet(p: f64) -> Self {
        Corruption {
            p,
            skip: ETHERNET_HEADER_LEN,
        }
    }
}

impl FaultRule for Corruption {
    fn name(&self) -> &'static str {
        "corrupt"
    }
    fn apply(&mut self, _now: Instant, frame: &[u8], rng: &mut SimRng) -> Decision {
        let hit = rng.chance(self.p);
        let span = frame.len().saturating_sub(self.skip) as u64 * 8;
        let bit = self.skip * 8 + rng.below(span.max(1)) as usize;
        if hit && span > 0 {
            Decision::Corrupt { bit }
        } else {
            Decision::Pass
        }
    }
}

/// Token-bucket rate limiter that *shapes*: frames are delayed (FIFO) so that
/// over any window of length `w` the bytes leaving it are at most
/// `burst + rate·w`.
///
/// The bucket holds up to `burst` bytes of credit and refills at `rate`
/// bytes per second. A frame of `L` bytes reaching the limiter at `t` leaves
/// at the first time ≥ max(`t`, previous departure) when the bucket holds `L`
/// bytes; the credit is then spent. With `queue_limit` set, a frame that
/// would have to wait while `queue_limit` bytes (counting itself) are
/// already waiting is dropped ([`DropCause::QueueFull`]) instead.
///
/// `burst` should be at least the largest frame: a larger frame waits for a
/// full bucket and then borrows (the bucket goes negative), so the bound is
/// then `max(burst, largest frame) + rate·w`. No random draws.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBucket {
    rate_bytes_per_sec: u64,
    burst_bytes: u64,
    queue_limit_bytes: Option<u64>,
    /// Credit in units of 10⁻⁹ byte (so refill per nanosecond is `rate`).
    credit: i128,
    /// Time `credit` is accounted up to; also the last departure time.
    last: Instant,
    /// Frames waiting to leave: (departure, length).
    waiting: VecDeque<(Instant, u64)>,
    waiting_bytes: u64,
}

const NANOS_PER_SEC: i128 = 1_000_000_000;

impl TokenBucket {
    /// A limiter of `rate_bytes_per_sec` (at least 1) with a `burst_bytes`
    /// bucket, starting full, with no queue limit.
    pub fn new(rate_bytes_per_sec: u64, burst_bytes: u64) -> Self {
        let rate = rate_bytes_per_sec.max(1);
        TokenBucket {
            rate_bytes_per_sec: rate,
            burst_bytes,
            queue_limit_bytes: None,
            credit: i128::from(burst_bytes) * NANOS_PER_SEC,
            last: Instant::ZERO,
            waiting: VecDeque::new(),
            waiting_bytes: 0,
        }
    }

    /// The same limiter, dropping frames when more than `limit` bytes would
    /// be waiting.
    pub fn with_queue_limit(mut self, limit_bytes: u64) -> Self {
        self.queue_limit_bytes = Some(limit_bytes);
        self
    }

    /// Configured rate, bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate_bytes_per_sec
    }

    /// Configured bucket size, bytes.
    pub fn burst(&self) -> u64 {
        self.burst_bytes
    }

    /// Bytes waiting at time `now` (frames admitted but not yet departed).
    pub fn backlog(&self, now: Instant) -> u64 {
        self.waiting
            .iter()
            .filter(|(depart, _)| *depart > now)
            .map(|(_, len)| *len)
            .sum()
    }
}

impl FaultRule for TokenBucket {
    fn name(&self) -> &'static str {
        "rate-limit"
    }
    fn apply(&mut self, now: Instant, frame: &[u8], _rng: &mut SimRng) -> Decision {
        while let Some(&(depart, len)) = self.waiting.front() {
            if depart > now {
                break;
            }
            self.waiting.pop_front();
            self.waiting_bytes -= len;
        }
        let rate = i128::from(self.rate_bytes_per_sec);
        let cap = i128::from(self.burst_bytes) * NANOS_PER_SEC;
        let len = frame.len() as u64;
        let need = i128::from(len) * NANOS_PER_SEC;
        let need_to_wait_for = need.min(cap);

        let start = now.max(self.last);
        let elapsed = i128::from((start - self.last).as_nanos() as u64);
        let credit_at_start = (self.credit + elapsed * rate).min(cap);
        let (depart, credit_at_depart) = if credit_at_start >= need_to_wait_for {
            (start, credit_at_start)
        } else {
            let missing = need_to_wait_for - credit_at_start;
            let wait_ns = (missing + rate - 1) / rate;
            let credit = (credit_at_start + wait_ns * rate).min(cap);
            (
                start.saturating_add(Duration::from_nanos(wait_ns as u64)),
                credit,
            )
        };
        if depart > now {
            if let Some(limit) = self.queue_limit_bytes {
                if self.waiting_bytes + len > limit {
                    return Decision::Drop(DropCause::QueueFull);
                }
            }
            self.waiting.push_back((depart, len));
            self.waiting_bytes += len;
        }
        self.credit = credit_at_depart - need;
        self.last = depart;
        let delay = depart - now;
        if delay.is_zero() {
            Decision::Pass
        } else {
            Decision::Delay(delay)
        }
    }
}

/// What an [`MtuClamp`] does with a frame longer than its MTU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MtuAction {
    /// Drop it ([`DropCause::Mtu`]).
    Drop,
    /// Cut it to the MTU.
    Truncate,
}

/// MTU clamp: frames longer than `mtu` bytes are dropped or truncated
/// (`mtu` counts whole frame bytes, headers included). No random draws.
#[derive(Clone, Debug, PartialEq)]
pub struct MtuClamp {
    /// Largest frame that passes untouched.
    pub mtu: usize,
    /// What happens to longer frames.
    pub action: MtuAction,
}

impl MtuClamp {
    /// Drops frames longer than `mtu`.
    pub fn drop_above(mtu: usize) -> Self {
        MtuClamp {
            mtu,
            action: MtuAction::Drop,
        }
    }

    /// Truncates frames longer than `mtu`.
    pub fn truncate_above(mtu: usize) -> Self {
        MtuClamp {
            mtu,
            action: MtuAction::Truncate,
        }
    }
}

impl FaultRule for MtuClamp {
    fn name(&self) -> &'static str {
        "mtu"
    }
    fn apply(&mut self, _now: Instant, frame: &[u8], _rng: &mut SimRng) -> Decision {
        if frame.len() <= self.mtu {
            return Decision::Pass;
        }
        match self.action {
            MtuAction::Drop => Decision::Drop(DropCause::Mtu),
            MtuAction::Truncate => Decision::Truncate(self.mtu),
        }
    }
}

/// Partition / blackhole: every frame reaching the rule inside one of the
/// half-open windows `[start, end)` is dropped. No random draws.
#[derive(Clone, Debug, PartialEq)]
pub struct Partition {
    /// The windows, `(start, end)`.
    pub windows: Vec<(Instant, Instant)>,
}

impl Partition {
    /// One window `[start, end)`.
    pub fn between(start: Instant, end: Instant) -> Self {
        Partition {
            windows: vec![(start, end)],
        }
    }

    /// Adds a window.
    pub fn and(mut self, start: Instant, end: Instant) -> Self {
        self.windows.push((start, end));
        self
    }

    /// Whether `t` falls in a window.
    pub fn covers(&self, t: Instant) -> bool {
        self.windows.iter().any(|&(s, e)| s <= t && t < e)
    }
}

impl FaultRule for Partition {
    fn name(&self) -> &'static str {
        "partition"
    }
    fn apply(&mut self, now: Instant, _frame: &[u8], _rng: &mut SimRng) -> Decision {
        if self.covers(now) {
            Decision::Drop(DropCause::Partition)
        } else {
            Decision::Pass
        }
    }
}

/// Holds frames while its [`HoldHandle`] is closed. No random draws.
#[derive(Clone, Debug)]
pub struct HoldGate {
    handle: HoldHandle,
}

impl HoldGate {
    /// The handle controlling this gate.
    pub fn handle(&self) -> &HoldHandle {
        &self.handle
    }
}

impl FaultRule for HoldGate {
    fn name(&self) -> &'static str {
        "hold"
    }
    fn apply(&mut self, _now: Instant, _frame: &[u8], _rng: &mut SimRng) -> Decision {
        if self.handle.is_closed() {
            Decision::Hold(self.handle.clone())
        } else {
            Decision::Pass
        }
    }
}

/// A rule from a closure, for scripted scenarios ("drop the third SYN").
pub struct FnRule<F> {
    name: &'static str,
    f: F,
}

impl<F> FnRule<F>
where
    F: FnMut(Instant, &[u8], &mut SimRng) -> Decision + Send,
{
    /// A rule called `name` that asks `f` for each decision.
    pub fn new(name: &'static str, f: F) -> Self {
        FnRule { name, f }
    }
}

impl<F> fmt::Debug for FnRule<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnRule").field("name", &self.name).finish()
    }
}

impl<F> FaultRule for FnRule<F>
where
    F: FnMut(Instant, &[u8], &mut SimRng) -> Decision + Send,
{
    fn name(&self) -> &'static str {
        self.name
    }
    fn apply(&mut self, now: Instant, frame: &[u8], rng: &mut SimRng) -> Decision {
        (self.f)(now, frame, rng)
    }
}

/// The fate of one frame (or one copy of it) after a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Leaves the chain `delay` after it entered (or, for a released frame,
    /// after the release), as these bytes.
    Deliver {
        /// Total delay the rules added.
        delay: Duration,
        /// The frame as the rules left it.
        frame: Vec<u8>,
    },
    /// Dropped by rule `rule` for `cause`.
    Dropped {
        /// Why.
        cause: DropCause,
        /// Name of the dropping rule.
        rule: &'static str,
    },
    /// Held by a gate; give it back to [`FaultChain::resume`] once released.
    Held(HeldFrame),
}

/// A frame stopped by a [`Decision::Hold`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldFrame {
    /// The handle that must be open for the frame to move on.
    pub handle: HoldHandle,
    /// The frame as it was when held.
    pub frame: Vec<u8>,
    /// When it was held.
    pub held_at: Instant,
    /// Index of the rule to resume at.
    next_rule: usize,
}

/// Counts of decision effects a chain applied (per copy, so a corrupted
/// duplicate counts once for itself).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainEffects {
    /// Extra copies made.
    pub duplicated: u64,
    /// Bits flipped (one per corrupted frame or copy).
    pub corrupted: u64,
    /// Frames or copies actually shortened.
    pub truncated: u64,
}

/// An ordered chain of fault rules (semantics in the [module docs](self)).
#[derive(Debug)]
pub struct FaultChain {
    rng: SimRng,
    rules: Vec<(Box<dyn FaultRule>, SimRng)>,
}

impl FaultChain {
    /// An empty chain (everything passes) whose rules will draw from
    /// children of `rng`.
    pub fn new(rng: SimRng) -> Self {
        FaultChain {
            rng,
            rules: Vec::new(),
        }
    }

    /// Appends a rule; it gets the child generator `rule<index>:<name>`.
    pub fn push(&mut self, rule: impl FaultRule + 'static) {
        let label = format!("rule{}:{}", self.rules.len(), rule.name());
        let rng = self.rng.child(&label);
        self.rules.push((Box::new(rule), rng));
    }

    /// Builder form of [`FaultChain::push`].
    pub fn with(mut self, rule: impl FaultRule + 'static) -> Self {
        self.push(rule);
        self
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the chain has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules' names, in order.
    pub fn rule_names(&self) -> Vec<&'static str> {
        self.rules.iter().map(|(r, _)| r.name()).collect()
    }

    /// Runs `frame`, entering at `at`, through the whole chain. Appends one
    /// [`Fate`] per resulting frame (the original first, then copies) to
    /// `out` and adds the effects applied to `effects`.
    pub fn run(
        &mut self,
        at: Instant,
        frame: Vec<u8>,
        out: &mut Vec<Fate>,
        effects: &mut ChainEffects,
    ) {
        self.walk(at, frame, 0, out, effects);
    }

    /// Resumes a held frame at `at` (its release time), from the rule after
    /// the one that held it. Delays in the resulting fates are relative to
    /// `at`.
    pub fn resume(
        &mut self,
        held: HeldFrame,
        at: Instant,
        out: &mut Vec<Fate>,
        effects: &mut ChainEffects,
    ) {
        let at = at.max(held.held_at);
        self.walk(at, held.frame, held.next_rule, out, effects);
    }

    fn walk(
        &mut self,
        entry: Instant,
        frame: Vec<u8>,
        first_rule: usize,
        out: &mut Vec<Fate>,
        effects: &mut ChainEffects,
    ) {
        let mut copies_left = MAX_COPIES_PER_FRAME;
        let mut work: VecDeque<(Vec<u8>, usize, Duration)> = VecDeque::new();
        work.push_back((frame, first_rule, Duration::ZERO));
        'frames: while let Some((mut frame, start, mut delay)) = work.pop_front() {
            for index in start..self.rules.len() {
                let (rule, rng) = &mut self.rules[index];
                let now = entry.saturating_add(delay);
                match rule.apply(now, &frame, rng) {
                    Decision::Pass => {}
                    Decision::Delay(d) => delay = delay.saturating_add(d),
                    Decision::Drop(cause) => {
                        out.push(Fate::Dropped {
                            cause,
                            rule: rule.name(),
                        });
                        continue 'frames;
                    }
                    Decision::Duplicate(extra) => {
                        for extra_delay in extra {
                            if copies_left == 0 {
                                break;
                            }
                            copies_left -= 1;
                            effects.duplicated += 1;
                            work.push_back((
                                frame.clone(),
                                index + 1,
                                delay.saturating_add(extra_delay),
                            ));
                        }
                    }
                    Decision::Corrupt { bit } => {
                        if let Some(byte) = frame.get_mut(bit / 8) {
                            *byte ^= 1 << (bit % 8);
                            effects.corrupted += 1;
                        }
                    }
                    Decision::Truncate(len) => {
                        if len < frame.len() {
                            frame.truncate(len);
                            effects.truncated += 1;
                        }
                    }
                    Decision::Hold(handle) => {
                        out.push(Fate::Held(HeldFrame {
                            handle,
                            frame,
                            held_at: now,
                            next_rule: index + 1,
                        }));
                        continue 'frames;
                    }
                }
            }
            out.push(Fate::Deliver { delay, frame });
        }
    }

    /// A chain whose rules and parameters are drawn from `seed` (see
    /// [`SwarmParams`]).
    pub fn swarm(seed: u64) -> FaultChain {
        let root = SimRng::from_seed(seed);
        let params = SwarmParams::draw(&mut root.child("swarm-params"));
        params.build(root.child("swarm-chain"))
    }
}

/// Gilbert–Elliott parameters as drawn by swarm mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BurstLossParams {
    /// Good → Bad transition probability.
    pub p_good_to_bad: f64,
    /// Bad → Good transition probability.
    pub p_bad_to_good: f64,
    /// Loss probability in Bad (Good loses nothing in swarm mode).
    pub loss_bad: f64,
}

/// Fault parameters drawn from a seed ("swarm testing": every seed explores
/// a different mix of faults). Each fault is switched on with probability ½;
/// when on, its parameters lie within these sane bounds:
///
/// | fault | bounds |
/// |---|---|
/// | Bernoulli loss | p ≤ 4% |
/// | burst loss | Good→Bad ≤ 1.5%, Bad→Good in [25%, 75%], Bad loss in [20%, 100%] (long-run ≤ 6%) |
/// | latency | base ≤ 50 ms, uniform jitter ≤ 20 ms |
/// | duplication | p ≤ 5%, copy delay ≤ 10 ms |
/// | corruption | p ≤ 1% |
/// | rate limit | 125 kB/s to 12.5 MB/s (1 to 100 Mbit/s), burst 16 to 64 KiB, queue 64 to 512 KiB |
/// | partition | one window starting within the first 30 s, lasting ≤ 2 s |
///
/// So total loss (before the rate limiter's queue and partitions) stays
/// below 10% ([`SwarmParams::expected_random_loss`]). There is no MTU clamp:
/// an MTU below the engine's would make every run fail the same boring way.
#[derive(Clone, Debug, PartialEq)]
pub struct SwarmParams {
    /// Bernoulli loss probability.
    pub loss: Option<f64>,
    /// Gilbert–Elliott burst loss.
    pub burst_loss: Option<BurstLossParams>,
    /// Base latency (zero when latency is off).
    pub latency: Duration,
    /// Largest uniform jitter.
    pub jitter: Option<Duration>,
    /// Duplication probability and largest copy delay.
    pub duplication: Option<(f64, Duration)>,
    /// Corruption probability.
    pub corruption: Option<f64>,
    /// Rate limit: (bytes/s, burst bytes, queue limit bytes).
    pub rate_limit: Option<(u64, u64, u64)>,
    /// Partition window `[start, end)`.
    pub partition: Option<(Instant, Instant)>,
}

impl SwarmParams {
    /// Draws parameters (a fixed number of draws whatever is switched on).
    pub fn draw(rng: &mut SimRng) -> Self {
        let loss_on = rng.chance(0.5);
        let loss = rng.uniform(0.0, 0.04);
        let burst_on = rng.chance(0.5);
        let burst = BurstLossParams {
            p_good_to_bad: rng.uniform(0.001, 0.015),
            p_bad_to_good: rng.uniform(0.25, 0.75),
            loss_bad: rng.uniform(0.2, 1.0),
        };
        let latency_on = rng.chance(0.5);
        let latency = rng.duration_between(Duration::ZERO, Duration::from_millis(50));
        let jitter_on = rng.chance(0.5);
        let jitter = rng.duration_between(Duration::ZERO, Duration::from_millis(20));
        let dup_on = rng.chance(0.5);
        let dup = (
            rng.uniform(0.0, 0.05),
            rng.duration_between(Duration::ZERO, Duration::from_millis(10)),
        );
        let corrupt_on = rng.chance(0.5);
        let corrupt = rng.uniform(0.0, 0.01);
        let rate_on = rng.chance(0.5);
        let rate = (
            rng.range_inclusive(125_000, 12_500_000),
            rng.range_inclusive(16 * 1024, 64 * 1024),
            rng.range_inclusive(64 * 1024, 512 * 1024),
        );
        let partition_on = rng.chance(0.5);
        let start = rng.duration_between(Duration::ZERO, Duration::from_secs(30));
        let length = rng.duration_between(Duration::ZERO, Duration::from_secs(2));
        SwarmParams {
            loss: loss_on.then_some(loss),
            burst_loss: burst_on.then_some(burst),
            latency: if latency_on { latency } else { Duration::ZERO },
            jitter: jitter_on.then_some(jitter),
            duplication: dup_on.then_some(dup),
            corruption: corrupt_on.then_some(corrupt),
            rate_limit: rate_on.then_some(rate),
            partition: partition_on.then(|| {
                let s = Instant::ZERO + start;
                (s, s + length)
            }),
        }
    }

    /// Parameters for `seed` (the same ones [`FaultChain::swarm`] uses).
    pub fn from_seed(seed: u64) -> Self {
        Self::draw(&mut SimRng::from_seed(seed).child("swarm-params"))
    }

    /// Long-run fraction of frames lost to random loss (Bernoulli and burst
    /// loss combined; not counting queue overflow or partitions).
    pub fn expected_random_loss(&self) -> f64 {
        let bernoulli = self.loss.unwrap_or(0.0);
        let burst = self.burst_loss.map_or(0.0, |b| {
            GilbertElliott::new(b.p_good_to_bad, b.p_bad_to_good, 0.0, b.loss_bad).stationary_loss()
        });
        1.0 - (1.0 - bernoulli) * (1.0 - burst)
    }

    /// The chain: partition, rate limit, burst loss, loss, corruption,
    /// duplication, latency (only the rules switched on).
    pub fn build(&self, rng: SimRng) -> FaultChain {
        let mut chain = FaultChain::new(rng);
        if let Some((s, e)) = self.partition {
            chain.push(Partition::between(s, e));
        }
        if let Some((rate, burst, queue)) = self.rate_limit {
            chain.push(TokenBucket::new(rate, burst).with_queue_limit(queue));
        }
        if let Some(b) = self.burst_loss {
            chain.push(GilbertElliott::new(
                b.p_good_to_bad,
                b.p_bad_to_good,
                0.0,
                b.loss_bad,
            ));
        }
        if let Some(p) = self.loss {
            chain.push(BernoulliLoss::new(p));
        }
        if let Some(p) = self.corruption {
            chain.push(Corruption::past_ethernet(p));
        }
        if let Some((p, max)) = self.duplication {
            chain.push(Duplication::new(p, max));
        }
        if !self.latency.is_zero() || self.jitter.is_some() {
            chain.push(Latency::uniform(
                self.latency,
                self.jitter.unwrap_or(Duration::ZERO),
            ));
        }
        chain
    }
}

/// Which connection attempts the simulated host refuses (ECONNREFUSED).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RefuseConnections {
    /// Probability that any attempt is refused.
    pub probability: f64,
    /// Destination ports always refused.
    pub ports: BTreeSet<u16>,
}

/// Reset a connection (ECONNRESET / RST) once this many bytes have crossed
/// it, counting both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetAfter {
    /// Bytes after which the connection is reset.
    pub bytes: u64,
}

/// Spurious EAGAIN / EWOULDBLOCK on socket calls.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EagainStorm {
    /// Probability that a given call fails with EAGAIN.
    pub probability: f64,
}

/// Short reads and writes: a call moves at most this many bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShortIo {
    /// Largest read per call (`None`: unlimited).
    pub max_read: Option<NonZeroUsize>,
    /// Largest write per call (`None`: unlimited).
    pub max_write: Option<NonZeroUsize>,
}

/// Host-side faults for the simulated host sockets (descriptors only; the
/// simulated host applies them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostFaults {
    /// Refused connection attempts.
    pub refuse: RefuseConnections,
    /// Connection reset after some bytes.
    pub reset_after: Option<ResetAfter>,
    /// EAGAIN storms.
    pub eagain: EagainStorm,
    /// Short reads and writes.
    pub short_io: ShortIo,
}

impl HostFaults {
    /// No host faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether a connection attempt to `port` is refused. One draw.
    pub fn refuses(&self, port: u16, rng: &mut SimRng) -> bool {
        let random = rng.chance(self.refuse.probability);
        random || self.refuse.ports.contains(&port)
    }

    /// Whether this socket call fails with EAGAIN. One draw.
    pub fn eagain(&self, rng: &mut SimRng) -> bool {
        rng.chance(self.eagain.probability)
    }

    /// How many of `len` requested bytes a read may return.
    pub fn clamp_read(&self, len: usize) -> usize {
        self.short_io.max_read.map_or(len, |m| len.min(m.get()))
    }

    /// How many of `len` offered bytes a write may take.
    pub fn clamp_write(&self, len: usize) -> usize {
        self.short_io.max_write.map_or(len, |m| len.min(m.get()))
    }

    /// Host faults drawn from `seed`, each switched on with probability ½:
    /// refusal ≤ 5%, reset after 1 KiB to 1 MiB, EAGAIN ≤ 20% per call,
    /// short I/O limits of 1 to 4096 bytes per call.
    pub fn swarm(seed: u64) -> Self {
        let mut rng = SimRng::from_seed(seed).child("swarm-host");
        let refuse_on = rng.chance(0.5);
        let refuse_p = rng.uniform(0.0, 0.05);
        let reset_on = rng.chance(0.5);
        let reset_bytes = rng.range_inclusive(1024, 1024 * 1024);
        let eagain_on = rng.chance(0.5);
        let eagain_p = rng.uniform(0.0, 0.2);
        let short_read_on = rng.chance(0.5);
        let short_read = rng.range_inclusive(1, 4096) as usize;
        let short_write_on = rng.chance(0.5);
        let short_write = rng.range_inclusive(1, 4096) as usize;
        HostFaults {
            refuse: RefuseConnections {
                probability: if refuse_on { refuse_p } else { 0.0 },
                ports: BTreeSet::new(),
            },
            reset_after: reset_on.then_some(ResetAfter { bytes: reset_bytes }),
            eagain: EagainStorm {
                probability: if eagain_on { eagain_p } else { 0.0 },
            },
            short_io: ShortIo {
                max_read: NonZeroUsize::new(short_read).filter(|_| short_read_on),
                max_write: NonZeroUsize::new(short_write).filter(|_| short_write_on),
            },
        }
    }
}

#[cfg(test)]
mod tests;
