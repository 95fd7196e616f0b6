//! Seed ranges split across machines: which seeds a shard runs, which shard
//! this process is, the JSON-lines results a shard writes, and the merge of
//! those results into one verdict.
//!
//! # What this module owns
//!
//! - [`SeedRange`]: the `--seeds` syntax (`A..B`, `A..=B`, one seed) that
//!   `sweep` and `replay --seeds` share.
//! - [`Shard`]: `--shard K/N` (1-based K) or `--shard auto/N` (K from
//!   `JOB_COMPLETION_INDEX` or the `SLURM_ARRAY_TASK_*` variables), and the
//!   partition itself: shard K runs the seeds whose offset from the range's
//!   first seed is `K-1 (mod N)`. The partition depends only on the range
//!   and N, so N shards cover every seed of the range exactly once, whatever
//!   machine runs them and in whatever order.
//! - [`results`]: the JSON-lines records (a header, one line per seed, a
//!   footer) and their writer.
//! - [`merge`]: reading shards' result files back and judging them together
//!   (missing shards, truncated shards, failing seeds).
//!
//! It must never run a simulation itself (callers do, one seed at a time)
//! and never read anything from the environment but the shard variables
//! named here, and only through [`Shard::resolve`]'s lookup function.

pub mod merge;
pub mod results;

use core::fmt;

use crate::seed::parse_seed;

/// Kubernetes Indexed Jobs: the pod's 0-based completion index.
pub const K8S_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Slurm job arrays: this task's array index (in the array's own numbering).
pub const SLURM_ID_ENV: &str = "SLURM_ARRAY_TASK_ID";
/// Slurm job arrays: the lowest index of the array.
pub const SLURM_MIN_ENV: &str = "SLURM_ARRAY_TASK_MIN";
/// Slurm job arrays: the step between indices (`--array=0-20:2`).
pub const SLURM_STEP_ENV: &str = "SLURM_ARRAY_TASK_STEP";
/// Slurm job arrays: how many tasks the array has.
pub const SLURM_COUNT_ENV: &str = "SLURM_ARRAY_TASK_COUNT";

/// Why a seed range or a shard could not be determined.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// `--seeds` text that is not `A..B`, `A..=B` or one seed.
    #[error("--seeds `{0}`: {1}")]
    Seeds(String, String),
    /// `--shard` text that is not `K/N` or `auto/N`.
    #[error("--shard `{0}`: expected K/N with 1 <= K <= N, or auto/N")]
    Spec(String),
    /// `--shard auto/N` with neither scheduler's variable set.
    #[error(
        "--shard auto/{0}: neither {K8S_INDEX_ENV} (Kubernetes Indexed Job) nor {SLURM_ID_ENV} (Slurm array) is set; give K/N"
    )]
    NoScheduler(u64),
    /// A shard variable that does not fit the shard count or is not a number.
    #[error("--shard auto/{n}: {detail}")]
    Env {
        /// The shard count asked for.
        n: u64,
        /// What was wrong, naming the variable.
        detail: String,
    },
}

/// An inclusive range of master seeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedRange {
    /// First seed.
    pub first: u64,
    /// Last seed (included).
    pub last: u64,
}

impl SeedRange {
    /// Parses `A..B` (B excluded), `A..=B`, or one seed `A`; each seed in
    /// [`parse_seed`]'s syntax. An empty range is an error.
    pub fn parse(text: &str) -> Result<Self, ShardError> {
        let bad = |e: String| ShardError::Seeds(text.to_string(), e);
        let seed = |s: &str| parse_seed(s).map_err(|e| bad(e.to_string()));
        if let Some((a, b)) = text.split_once("..=") {
            let (first, last) = (seed(a)?, seed(b)?);
            if last < first {
                return Err(bad("empty range".into()));
            }
            Ok(Self { first, last })
        } else if let Some((a, b)) = text.split_once("..") {
            let (first, end) = (seed(a)?, seed(b)?);
            if end <= first {
                return Err(bad("empty range".into()));
            }
            Ok(Self {
                first,
                last: end - 1,
            })
        } else {
            let first = seed(text)?;
            Ok(Self { first, last: first })
        }
    }

    /// How many seeds the range holds (up to 2^64, hence `u128`).
    pub fn len(&self) -> u128 {
        u128::from(self.last - self.first) + 1
    }

    /// Always false: a range holds at least one seed.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `seed` lies in the range.
    pub fn contains(&self, seed: u64) -> bool {
        (self.first..=self.last).contains(&seed)
    }
}

impl fmt::Display for SeedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.first, self.last)
    }
}

/// One slice of a seed range: shard `index` (1-based) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Which shard, 1 ≤ index ≤ count.
    pub index: u64,
    /// How many shards split the range.
    pub count: u64,
}

impl Shard {
    /// The whole range in one shard.
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };

    /// Builds shard `index` of `count`, checking 1 ≤ index ≤ count.
    pub fn new(index: u64, count: u64) -> Option<Self> {
        (count >= 1 && (1..=count).contains(&index)).then_some(Self { index, count })
    }

    /// Resolves a `--shard` value. `K/N` is taken as written (1-based K).
    /// `auto/N` takes K from the scheduler, through `env` (a variable
    /// lookup; the binary passes `std::env::var`):
    ///
    /// - `JOB_COMPLETION_INDEX` (Kubernetes Indexed Jobs, 0-based): K = index + 1.
    /// - else `SLURM_ARRAY_TASK_ID`, numbered from `SLURM_ARRAY_TASK_MIN` in
    ///   steps of `SLURM_ARRAY_TASK_STEP` (default 1): K = (id − min) / step + 1,
    ///   so `--array=0-(N-1)` and `--array=1-N` both work. If
    ///   `SLURM_ARRAY_TASK_COUNT` is set it must equal N.
    ///
    /// An index outside 1..=N is an error, never wrapped around: a job with
    /// more tasks than shards would otherwise run some seeds twice.
    pub fn resolve(spec: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, ShardError> {
        let bad = || ShardError::Spec(spec.to_string());
        let (k, n) = spec.split_once('/').ok_or_else(bad)?;
        let n: u64 = n.trim().parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        if k.trim() != "auto" {
            let k: u64 = k.trim().parse().map_err(|_| bad())?;
            return Self::new(k, n).ok_or_else(bad);
        }
        let env_err = |detail: String| ShardError::Env { n, detail };
        let number =
            |name: &str| -> Result<Option<u64>, ShardError> {
                match env(name) {
                    None => Ok(None),
                    Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
                        env_err(format!("{name}={v:?} is not a non-negative integer"))
                    }),
                }
            };
        let k = if let Some(index) = number(K8S_INDEX_ENV)? {
            index.checked_add(1).filter(|k| *k <= n).ok_or_else(|| {
                env_err(format!(
                    "{K8S_INDEX_ENV}={index} is outside 0..{n}: give the Job completions: {n}"
                ))
            })?
        } else if let Some(id) = number(SLURM_ID_ENV)? {
            let min = number(SLURM_MIN_ENV)?.ok_or_else(|| {
                env_err(format!("{SLURM_ID_ENV} is set but {SLURM_MIN_ENV} is not"))
            })?;
            let step = number(SLURM_STEP_ENV)?.unwrap_or(1).max(1);
            if let Some(count) = number(SLURM_COUNT_ENV)?
                && count != n
            {
                return Err(env_err(format!(
                    "the Slurm array has {count} tasks ({SLURM_COUNT_ENV}) but the sweep is split in {n}"
                )));
            }
            let off = id.checked_sub(min).filter(|o| o % step == 0);
            off.map(|o| o / step + 1)
                .filter(|k| *k <= n)
                .ok_or_else(|| {
                    env_err(format!(
                        "{SLURM_ID_ENV}={id} is not one of {n} indices from {min} in steps of {step}"
                    ))
                })?
        } else {
            return Err(ShardError::NoScheduler(n));
        };
        Ok(Self { index: k, count: n })
    }

    /// Whether this shard runs `seed` of `range`.
    pub fn owns(&self, range: SeedRange, seed: u64) -> bool {
        range.contains(seed) && (seed - range.first) % self.count == self.index - 1
    }

    /// How many seeds of `range` this shard runs.
    pub fn seed_count(&self, range: SeedRange) -> u64 {
        let span = range.last - range.first;
        let skip = self.index - 1;
        if skip > span {
            0
        } else {
            (span - skip) / self.count + 1
        }
    }

    /// The seeds of `range` this shard runs, in increasing order.
    pub fn seeds(&self, range: SeedRange) -> ShardSeeds {
        let span = range.last - range.first;
        let skip = self.index - 1;
        ShardSeeds {
            first: range.first,
            span,
            step: self.count,
            next: (skip <= span).then_some(skip),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Iterator over one shard's seeds (see [`Shard::seeds`]); never overflows,
/// even for a range ending at `u64::MAX`.
#[derive(Clone, Debug)]
pub struct ShardSeeds {
    first: u64,
    span: u64,
    step: u64,
    /// Offset of the next seed from `first`, if any is left.
    next: Option<u64>,
}

impl Iterator for ShardSeeds {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let off = self.next?;
        self.next = off.checked_add(self.step).filter(|o| *o <= self.span);
        Some(self.first + off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn seed_ranges_parse_exclusive_inclusive_and_single() {
        assert_eq!(
            SeedRange::parse("1..101").unwrap(),
            SeedRange {
                first: 1,
                last: 100
            }
        );
        assert_eq!(
            SeedRange::parse("5..=5").unwrap(),
            SeedRange { first: 5, last: 5 }
        );
        assert_eq!(
            SeedRange::parse("0x10").unwrap(),
            SeedRange {
                first: 16,
                last: 16
            }
        );
        assert!(SeedRange::parse("5..5").is_err());
        assert!(SeedRange::parse("6..=5").is_err());
        assert!(SeedRange::parse("a..b").is_err());
        assert_eq!(
            SeedRange::parse("0..=18446744073709551615").unwrap().len(),
            1 << 64
        );
    }

    #[test]
    fn shards_cover_every_seed_exactly_once() {
        for (first, last) in [(0, 0), (1, 100), (7, 9), (u64::MAX - 10, u64::MAX)] {
            let range = SeedRange { first, last };
            for n in 1..=13 {
                let mut seen = BTreeMap::new();
                for k in 1..=n {
                    let s = Shard::new(k, n).unwrap();
                    let seeds: Vec<u64> = s.seeds(range).collect();
                    assert_eq!(seeds.len() as u64, s.seed_count(range), "{range} {s}");
                    for seed in seeds {
                        assert!(s.owns(range, seed));
                        assert!(seen.insert(seed, k).is_none(), "{seed} twice");
                    }
                }
                assert_eq!(seen.len() as u128, range.len(), "{range} in {n}");
            }
        }
    }

    #[test]
    fn explicit_shards_are_one_based_and_checked() {
        let none = env(&[("JOB_COMPLETION_INDEX", "0")]);
        assert_eq!(
            Shard::resolve("2/3", &none).unwrap(),
            Shard::new(2, 3).unwrap()
        );
        for bad in ["0/3", "4/3", "1/0", "3", "x/3", "auto", "auto/0", ""] {
            assert!(
                matches!(Shard::resolve(bad, &none), Err(ShardError::Spec(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn auto_shard_comes_from_the_kubernetes_completion_index() {
        let s = Shard::resolve("auto/4", env(&[("JOB_COMPLETION_INDEX", "0")])).unwrap();
        assert_eq!(s, Shard::new(1, 4).unwrap());
        let s = Shard::resolve("auto/4", env(&[("JOB_COMPLETION_INDEX", "3")])).unwrap();
        assert_eq!(s, Shard::new(4, 4).unwrap());
        assert!(Shard::resolve("auto/4", env(&[("JOB_COMPLETION_INDEX", "4")])).is_err());
        assert!(Shard::resolve("auto/4", env(&[("JOB_COMPLETION_INDEX", "-1")])).is_err());
    }

    #[test]
    fn auto_shard_counts_slurm_indices_from_the_array_minimum() {
        let one_based = |id: &str| {
            env(&[
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
            ])
        };
        assert_eq!(Shard::resolve("auto/3", one_based("1")).unwrap().index, 1);
        assert_eq!(Shard::resolve("auto/3", one_based("3")).unwrap().index, 3);
        assert!(Shard::resolve("auto/3", one_based("0")).is_err());
        assert!(Shard::resolve("auto/3", one_based("4")).is_err());
        let zero_based = env(&[("SLURM_ARRAY_TASK_ID", "0"), ("SLURM_ARRAY_TASK_MIN", "0")]);
        assert_eq!(Shard::resolve("auto/3", zero_based).unwrap().index, 1);
        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "20"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_STEP", "5"),
        ]);
        assert_eq!(Shard::resolve("auto/3", stepped).unwrap().index, 3);
        let wrong_count = env(&[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert!(Shard::resolve("auto/3", wrong_count).is_err());
        let no_min = env(&[("SLURM_ARRAY_TASK_ID", "1")]);
        assert!(Shard::resolve("auto/3", no_min).is_err());
        assert_eq!(
            Shard::resolve("auto/3", env(&[])),
            Err(ShardError::NoScheduler(3))
        );
    }
}
