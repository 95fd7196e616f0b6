//! Master seeds: parsing, seed plans from the environment, the per-test seed
//! loop, and the simulator's generator ([`SimRng`]).
//!
//! # What this module owns
//!
//! Every random choice in a simulation descends from **one master `u64`
//! seed**. This module turns text into that seed ([`parse_seed`]), decides
//! which seeds a test runs ([`Seeds`], from `PASST_SIM_SEED` /
//! `PASST_SIM_SEEDS`), runs a test body once per seed and prints the exact
//! command that reproduces a failure ([`for_each_seed`]), and hands out named
//! child generators per subsystem ([`SimRng::child`]).
//!
//! It must never read the clock or OS randomness: a seed either comes from
//! the caller (a test's fixed default), from the environment, or from a
//! deterministic derivation of those.
//!
//! # Seed syntax ([`parse_seed`])
//!
//! Leading and trailing whitespace is ignored. Then, in this order:
//!
//! 1. `0x` / `0X` followed by 1 to 16 hex digits: that hex number.
//! 2. Exactly 40 hex digits (a full git commit hash, either case): the 160
//!    bits are **XOR-folded** to 64 bits. Read the 20 bytes the hash spells
//!    (big-endian, first digit most significant) as `w0 = bytes[0..8]`,
//!    `w1 = bytes[8..16]` (both big-endian `u64`) and `w2 = bytes[16..20]`
//!    (big-endian `u32`); the seed is `w0 ^ w1 ^ (w2 << 32)`. A 40-digit
//!    decimal string is read this way too (it could not fit a `u64` anyway).
//! 3. 1 to 20 decimal digits that fit a `u64`: that number.
//!
//! Anything else is a [`SeedError`] that says which rule it broke. Failure
//! reports always print the folded decimal seed, so a reproduction never
//! needs the original spelling.
//!
//! # Seed plans ([`Seeds`])
//!
//! - Nothing set: the test's own default seed, once.
//! - `PASST_SIM_SEED=<seed>`: that seed instead of the default (this is what
//!   a failure report tells you to set).
//! - `PASST_SIM_SEEDS=<N>` (N ≥ 1): a sweep of N seeds. The first is the base
//!   seed (`PASST_SIM_SEED` if set, else the test's default); the next N−1 are
//!   drawn from a SplitMix64 stream started at the base, so a sweep is itself
//!   reproducible and every seed in it can be replayed alone.

use core::fmt;
use core::time::Duration;
use std::panic::{self, AssertUnwindSafe};

use passt_engine::Rng;
use passt_engine::rng::splitmix64;

/// Environment variable that overrides a test's seed.
pub const SEED_ENV: &str = "PASST_SIM_SEED";
/// Environment variable that asks for a sweep of N seeds.
pub const SEEDS_ENV: &str = "PASST_SIM_SEEDS";

/// Why a seed (or a sweep count) could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SeedError {
    /// The text was empty (or only whitespace).
    #[error("empty seed: give a decimal u64, 0x-prefixed hex, or a 40-hex-digit commit hash")]
    Empty,
    /// `0x` prefix followed by something that is not 1..=16 hex digits.
    #[error("invalid hex seed {0:?}: after 0x give 1 to 16 hex digits")]
    InvalidHex(String),
    /// All decimal digits, but larger than `u64::MAX`.
    #[error("decimal seed {0:?} does not fit in a u64 (max 18446744073709551615)")]
    DecimalOverflow(String),
    /// Hex digits without a `0x` prefix and not exactly 40 of them.
    #[error(
        "seed {0:?} looks like hex: prefix it with 0x, or give a full 40-hex-digit commit hash"
    )]
    AmbiguousHex(String),
    /// Not a number in any accepted syntax.
    #[error(
        "invalid seed {0:?}: give a decimal u64, 0x-prefixed hex, or a 40-hex-digit commit hash"
    )]
    Invalid(String),
    /// `PASST_SIM_SEEDS` was not a decimal count ≥ 1.
    #[error("invalid {SEEDS_ENV} value {0:?}: give a decimal number of seeds >= 1")]
    InvalidCount(String),
}

/// Parses a master seed (syntax in the [module docs](self)).
///
/// ```
/// use passt_sim::seed::parse_seed;
/// assert_eq!(parse_seed("42"), Ok(42));
/// assert_eq!(parse_seed("0xff"), Ok(255));
/// assert!(parse_seed("cafe").is_err()); // hex needs 0x unless it is a full commit hash
/// ```
pub fn parse_seed(text: &str) -> Result<u64, SeedError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(SeedError::Empty);
    }
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SeedError::InvalidHex(s.to_string()));
        }
        return u64::from_str_radix(hex, 16).map_err(|_| SeedError::InvalidHex(s.to_string()));
    }
    if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(fold_commit_hash(s));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map_err(|_| SeedError::DecimalOverflow(s.to_string()));
    }
    if s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SeedError::AmbiguousHex(s.to_string()));
    }
    Err(SeedError::Invalid(s.to_string()))
}

/// XOR-folds a 40-hex-digit commit hash to 64 bits (the caller has checked
/// that `hex` is exactly 40 ASCII hex digits).
fn fold_commit_hash(hex: &str) -> u64 {
    let mut bytes = [0u8; 20];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let hi = hex_value(pair[0]);
        let lo = hex_value(pair[1]);
        bytes[i] = (hi << 4) | lo;
    }
    let mut w0 = [0u8; 8];
    let mut w1 = [0u8; 8];
    let mut w2 = [0u8; 4];
    w0.copy_from_slice(&bytes[0..8]);
    w1.copy_from_slice(&bytes[8..16]);
    w2.copy_from_slice(&bytes[16..20]);
    u64::from_be_bytes(w0) ^ u64::from_be_bytes(w1) ^ (u64::from(u32::from_be_bytes(w2)) << 32)
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0,
    }
}

/// Which seeds a test runs: a base seed and how many seeds to sweep from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seeds {
    /// The first seed run (the override or the test's default).
    pub base: u64,
    /// How many seeds to run (≥ 1).
    pub count: u64,
}

impl Seeds {
    /// Exactly one seed.
    pub const fn single(seed: u64) -> Self {
        Seeds {
            base: seed,
            count: 1,
        }
    }

    /// A plan from the values of `PASST_SIM_SEED` and `PASST_SIM_SEEDS`
    /// (`None` = unset), falling back to `default_seed`. Pure, so it can be
    /// tested without touching the process environment.
    pub fn from_values(
        seed_var: Option<&str>,
        seeds_var: Option<&str>,
        default_seed: u64,
    ) -> Result<Self, SeedError> {
        let base = match seed_var {
            Some(text) => parse_seed(text)?,
            None => default_seed,
        };
        let count = match seeds_var {
            None => 1,
            Some(text) => match text.trim().parse::<u64>() {
                Ok(n) if n >= 1 => n,
                _ => return Err(SeedError::InvalidCount(text.to_string())),
            },
        };
        Ok(Seeds { base, count })
    }

    /// A plan from the process environment (see the [module docs](self)).
    /// An unset or empty variable counts as unset.
    pub fn from_env(default_seed: u64) -> Result<Self, SeedError> {
        let seed_var = non_empty_env(SEED_ENV);
        let seeds_var = non_empty_env(SEEDS_ENV);
        Self::from_values(seed_var.as_deref(), seeds_var.as_deref(), default_seed)
    }

    /// `default_count` seeds from `default_seed`, unless either variable is
    /// set: then the environment's plan ([`Seeds::from_env`]), so that a
    /// printed reproduce line (which sets only `PASST_SIM_SEED`) runs
    /// exactly its seed.
    pub fn from_env_or(default_seed: u64, default_count: u64) -> Result<Self, SeedError> {
        if non_empty_env(SEED_ENV).is_some() || non_empty_env(SEEDS_ENV).is_some() {
            return Self::from_env(default_seed);
        }
        Ok(Seeds {
            base: default_seed,
            count: default_count.max(1),
        })
    }

    /// The seeds of this plan, in run order: `base`, then `count - 1` values
    /// of a SplitMix64 stream started at `base`.
    pub fn iter(&self) -> impl Iterator<Item = u64> + use<> {
        let mut state = self.base;
        let base = self.base;
        (0..self.count).map(move |i| if i == 0 { base } else { splitmix64(&mut state) })
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The line a failure prints so the exact run can be repeated.
pub fn reproduce_line(test_name: &str, seed: u64) -> String {
    format!("reproduce: {SEED_ENV}={seed} cargo test -p passt-sim -- {test_name}")
}

/// Runs `body` once per seed of the environment's plan (see [`Seeds`]; the
/// plan falls back to `default_seed`).
///
/// On the first failing seed it panics with a message ending in a
/// copy-pasteable [`reproduce_line`]. A `body` that panics itself (an
/// `assert!`) gets the reproduce line printed to stderr before its panic
/// continues. An unparsable environment variable is a panic too: a test
/// cannot run on a seed it did not understand.
pub fn for_each_seed<F>(test_name: &str, default_seed: u64, body: F)
where
    F: FnMut(u64) -> Result<(), String>,
{
    let plan = match Seeds::from_env(default_seed) {
        Ok(plan) => plan,
        Err(e) => panic!("{test_name}: {e}"),
    };
    for_each_seed_in(&plan, test_name, body);
}

/// [`for_each_seed`] for a test that sweeps `default_count` seeds from
/// `default_seed` unless the environment says otherwise: either variable
/// set means the environment's plan (so a printed reproduce line, which sets
/// only `PASST_SIM_SEED`, runs exactly that seed).
pub fn for_each_seeds<F>(test_name: &str, default_seed: u64, default_count: u64, body: F)
where
    F: FnMut(u64) -> Result<(), String>,
{
    let plan = match Seeds::from_env_or(default_seed, default_count) {
        Ok(plan) => plan,
        Err(e) => panic!("{test_name}: {e}"),
    };
    for_each_seed_in(&plan, test_name, body);
}

/// [`for_each_seed`] with an explicit plan instead of the environment.
pub fn for_each_seed_in<F>(plan: &Seeds, test_name: &str, mut body: F)
where
    F: FnMut(u64) -> Result<(), String>,
{
    for (run, seed) in plan.iter().enumerate() {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| body(seed)));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(message)) => panic!(
                "simulation test `{test_name}` failed with seed {seed} (run {} of {}): {message}\n{}",
                run + 1,
                plan.count,
                reproduce_line(test_name, seed)
            ),
            Err(payload) => {
                eprintln!(
                    "simulation test `{test_name}` panicked with seed {seed} (run {} of {})\n{}",
                    run + 1,
                    plan.count,
                    reproduce_line(test_name, seed)
                );
                panic::resume_unwind(payload);
            }
        }
    }
}

/// The simulator's generator: the engine's xoshiro256** [`Rng`] plus the
/// draws the simulator needs (probabilities, ranges, normal variates).
///
/// Every draw helper consumes a fixed number of values from the stream
/// whatever its arguments (e.g. [`SimRng::chance`] draws even for `p = 0`),
/// so tweaking a probability never shifts the draws that follow it.
#[derive(Clone, Debug)]
pub struct SimRng {
    rng: Rng,
}

impl SimRng {
    /// The root generator of a run.
    pub fn from_seed(seed: u64) -> Self {
        SimRng {
            rng: Rng::from_seed(seed),
        }
    }

    /// A child generator for a named subsystem (a link, a host, the fault
    /// chain of one direction…): the same for the same (parent, label),
    /// independent of the parent's later draws. Built on [`Rng::child`].
    pub fn child(&self, label: &str) -> SimRng {
        SimRng {
            rng: self.rng.child(label),
        }
    }

    /// A child generator as an engine [`Rng`], e.g. to build the engine
    /// under test from the master seed.
    pub fn engine_rng(&self, label: &str) -> Rng {
        self.rng.child(label)
    }

    /// The underlying engine generator.
    pub fn as_rng_mut(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Uniform in `0..bound` (0 yields 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.rng.below(bound)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        self.rng.next_f64()
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        self.rng.fill(buf)
    }

    /// True with probability `p` (values outside `[0, 1]` act as 0 or 1;
    /// NaN acts as 0). Always draws exactly one value.
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// Uniform integer in `lo..=hi` (`hi < lo` yields `lo`). One draw.
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            self.next_u64();
            return lo;
        }
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.below(span),
            None => self.next_u64(),
        }
    }

    /// Uniform float in `[lo, hi)` (`hi <= lo` yields `lo`). One draw.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let u = self.next_f64();
        if hi > lo { lo + (hi - lo) * u } else { lo }
    }

    /// Uniform duration in `lo..=hi`, nanosecond resolution. One draw.
    pub fn duration_between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let lo_ns = u64::try_from(lo.as_nanos()).unwrap_or(u64::MAX);
        let hi_ns = u64::try_from(hi.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.range_inclusive(lo_ns, hi_ns))
    }

    /// A standard normal variate (mean 0, variance 1) by the Box–Muller
    /// transform; always two draws, the second output is discarded.
    pub fn standard_normal(&mut self) -> f64 {
        // 1 - u is in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (core::f64::consts::TAU * u2).cos()
    }
}

impl fmt::Display for Seeds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 1 {
            write!(f, "seed {}", self.base)
        } else {
            write!(f, "{} seeds from {}", self.count, self.base)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal() {
        assert_eq!(parse_seed("0"), Ok(0));
        assert_eq!(parse_seed("  12345\n"), Ok(12345));
        assert_eq!(parse_seed("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_seed("18446744073709551616"),
            Err(SeedError::DecimalOverflow("18446744073709551616".into()))
        );
    }

    #[test]
    fn parses_prefixed_hex() {
        assert_eq!(parse_seed("0xff"), Ok(255));
        assert_eq!(parse_seed("0XDEADbeef"), Ok(0xdead_beef));
        assert_eq!(parse_seed("0xffffffffffffffff"), Ok(u64::MAX));
        assert!(matches!(parse_seed("0x"), Err(SeedError::InvalidHex(_))));
        assert!(matches!(
            parse_seed("0x1ffffffffffffffff"),
            Err(SeedError::InvalidHex(_))
        ));
        assert!(matches!(parse_seed("0xfg"), Err(SeedError::InvalidHex(_))));
    }

    #[test]
    fn folds_commit_hash_as_documented() {
        let hash = "0123456789abcdef0011223344556677deadbeef";
        let expected = 0x0123_4567_89ab_cdef_u64 ^ 0x0011_2233_4455_6677 ^ (0xdead_beef_u64 << 32);
        assert_eq!(parse_seed(hash), Ok(expected));
        // Case does not matter.
        assert_eq!(parse_seed(&hash.to_uppercase()), Ok(expected));
        // Every bit of the hash counts: flipping the last digit changes the seed.
        let other = "0123456789abcdef0011223344556677deadbeee";
        assert_ne!(parse_seed(other), Ok(expected));
        // 40 decimal digits are a hash, not an overflowing decimal.
        let digits = "1234567890123456789012345678901234567890";
        assert_eq!(parse_seed(digits), Ok(fold_commit_hash(digits)));
    }

    #[test]
    fn rejects_invalid_with_clear_errors() {
        assert_eq!(parse_seed(""), Err(SeedError::Empty));
        assert_eq!(parse_seed("   "), Err(SeedError::Empty));
        assert_eq!(
            parse_seed("cafe"),
            Err(SeedError::AmbiguousHex("cafe".into()))
        );
        // 39 hex digits: an abbreviated hash is refused, not silently folded.
        assert!(matches!(
            parse_seed("0123456789abcdef0011223344556677deadbee"),
            Err(SeedError::AmbiguousHex(_))
        ));
        assert_eq!(parse_seed("-1"), Err(SeedError::Invalid("-1".into())));
        assert_eq!(
            parse_seed("seed=4"),
            Err(SeedError::Invalid("seed=4".into()))
        );
        let msg = parse_seed("cafe").unwrap_err().to_string();
        assert!(msg.contains("0x") && msg.contains("40"), "{msg}");
    }

    #[test]
    fn plans_from_values() {
        assert_eq!(Seeds::from_values(None, None, 7), Ok(Seeds::single(7)));
        assert_eq!(
            Seeds::from_values(Some("0x10"), None, 7),
            Ok(Seeds::single(16))
        );
        assert_eq!(
            Seeds::from_values(None, Some("5"), 7),
            Ok(Seeds { base: 7, count: 5 })
        );
        assert_eq!(
            Seeds::from_values(Some("9"), Some(" 3 "), 7),
            Ok(Seeds { base: 9, count: 3 })
        );
        assert!(matches!(
            Seeds::from_values(None, Some("0"), 7),
            Err(SeedError::InvalidCount(_))
        ));
        assert!(matches!(
            Seeds::from_values(None, Some("many"), 7),
            Err(SeedError::InvalidCount(_))
        ));
        assert!(Seeds::from_values(Some("zz"), None, 7).is_err());
    }

    #[test]
    fn sweep_starts_at_base_and_is_reproducible_and_distinct() {
        let plan = Seeds { base: 7, count: 50 };
        let a: Vec<u64> = plan.iter().collect();
        let b: Vec<u64> = plan.iter().collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 50);
        assert_eq!(a[0], 7);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 50, "sweep seeds must be distinct");
    }

    #[test]
    fn runs_every_seed_of_the_plan() {
        let plan = Seeds { base: 3, count: 4 };
        let mut seen = Vec::new();
        for_each_seed_in(&plan, "runs_every_seed_of_the_plan", |seed| {
            seen.push(seed);
            Ok(())
        });
        assert_eq!(seen, plan.iter().collect::<Vec<_>>());
    }

    #[test]
    fn failure_panics_with_reproduce_line() {
        let plan = Seeds {
            base: 11,
            count: 10,
        };
        let failing = plan.iter().nth(2).unwrap_or_default();
        let mut runs = 0;
        let caught = panic::catch_unwind(AssertUnwindSafe(|| {
            for_each_seed_in(&plan, "some::test_name", |seed| {
                runs += 1;
                if seed == failing {
                    Err("boom".to_string())
                } else {
                    Ok(())
                }
            })
        }));
        let payload = caught.expect_err("a failing seed must panic");
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(msg.contains("boom"), "{msg}");
        assert!(
            msg.ends_with(&format!(
                "reproduce: PASST_SIM_SEED={failing} cargo test -p passt-sim -- some::test_name"
            )),
            "{msg}"
        );
        assert_eq!(runs, 3, "stops at the first failing seed");
    }

    #[test]
    fn sim_rng_children_and_helpers() {
        let root = SimRng::from_seed(5);
        let mut a = root.child("link");
        let mut b = root.child("link");
        let mut c = root.child("host");
        let x = a.next_u64();
        assert_eq!(x, b.next_u64());
        assert_ne!(x, c.next_u64());

        let mut r = SimRng::from_seed(1);
        for _ in 0..1000 {
            let v = r.range_inclusive(3, 5);
            assert!((3..=5).contains(&v));
            let d = r.duration_between(Duration::from_millis(1), Duration::from_millis(2));
            assert!(d >= Duration::from_millis(1) && d <= Duration::from_millis(2));
        }
        assert_eq!(r.range_inclusive(9, 2), 9);
        // The full range is the raw 64-bit draw.
        let expected = r.clone().next_u64();
        assert_eq!(r.range_inclusive(0, u64::MAX), expected);

        // chance() draws exactly once whatever p is.
        let mut p0 = SimRng::from_seed(2);
        let mut p1 = SimRng::from_seed(2);
        assert!(!p0.chance(0.0));
        assert!(p1.chance(1.0));
        assert_eq!(p0.next_u64(), p1.next_u64());
    }

    #[test]
    fn standard_normal_moments() {
        let mut r = SimRng::from_seed(3);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| r.standard_normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
        assert!(xs.iter().all(|x| x.is_finite()));
    }
}
