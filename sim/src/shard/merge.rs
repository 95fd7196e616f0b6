//! `passt-sim merge`: shards' results files judged together.
//!
//! Every file must start with a [`Header`] of the same run (command,
//! target, seed range, shard count). The merge then checks that every
//! shard is present exactly once and ended with its footer, that every
//! seed line belongs to its shard and appears once, and counts what is
//! missing. Anything wrong is a *problem* (one line each); a merge with
//! problems is incomplete whatever the seeds said.
//!
//! It never trusts a count it can recompute: the seeds a shard owes come
//! from the range and [`Shard`], not from the header's `expected`. Loops
//! are bounded by what the files hold, never by a count read from them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::results::{FORMAT, Footer, Header, Record, SeedResult, Verdict, parse_line};
use super::{SeedRange, Shard};

/// How many missing shards or seeds a problem line names before "...".
const LIST: usize = 8;

/// The combined verdict of a set of results files.
#[derive(Clone, Debug, Default)]
pub struct Merged {
    /// The run's header (the first valid one), if any file had one.
    pub header: Option<Header>,
    /// Shards present (distinct, valid headers).
    pub shards_present: u64,
    /// Seeds the whole range holds.
    pub expected: u128,
    /// Seed lines recorded (distinct seeds).
    pub run: u64,
    /// Seeds that passed.
    pub passed: u64,
    /// Seeds that failed or could not run, in seed order.
    pub failures: Vec<SeedResult>,
    /// Seeds of the range with no line: missing shards, truncated shards.
    pub missing: u128,
    /// What makes the merge incomplete or its input bad, one line each.
    pub problems: Vec<String>,
}

impl Merged {
    /// 0 when every seed of the range ran and passed, 1 when all ran and
    /// some failed, 2 when seeds or shards are missing or the input is bad.
    pub fn exit_code(&self) -> u8 {
        if !self.problems.is_empty() || self.header.is_none() || self.missing > 0 {
            2
        } else if !self.failures.is_empty() {
            1
        } else {
            0
        }
    }

    /// The human summary `passt-sim merge` prints.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        if let Some(h) = &self.header {
            let _ = writeln!(
                s,
                "merge             {} {}, seeds {}, {} of {} shards",
                h.command, h.target, h.seeds, self.shards_present, h.shards
            );
        }
        let _ = writeln!(
            s,
            "seeds             {} expected, {} run, {} passed, {} failed, {} missing",
            self.expected,
            self.run,
            self.passed,
            self.failures.len(),
            self.missing
        );
        for f in &self.failures {
            let verdict = match f.verdict {
                Verdict::Error => "error",
                _ => "fail",
            };
            let reason = f.reason.as_deref().unwrap_or("-");
            let _ = writeln!(s, "failed seed       {} ({verdict}): {reason}", f.seed);
            let _ = writeln!(s, "reproduce         {}", f.reproduce);
        }
        for p in &self.problems {
            let _ = writeln!(s, "problem           {p}");
        }
        let result = match self.exit_code() {
            0 => "PASS",
            1 => "FAIL",
            _ => "INCOMPLETE",
        };
        let _ = writeln!(s, "result            {result}");
        s
    }
}

/// One shard's lines, as read.
struct ShardData {
    file: String,
    seeds: BTreeMap<u64, SeedResult>,
    footer: Option<Footer>,
}

/// Merges results files, given as `(name, contents)`.
pub fn merge(files: &[(String, Vec<u8>)]) -> Merged {
    let mut m = Merged::default();
    // The run every file must belong to: its header, its file, its range.
    let mut run: Option<(Header, String, SeedRange)> = None;
    let mut shards: BTreeMap<u64, ShardData> = BTreeMap::new();
    for (file, bytes) in files {
        let text = String::from_utf8_lossy(bytes);
        let complete_last = text.ends_with('\n');
        let mut lines = text
            .split('\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(_, l)| !l.trim().is_empty())
            .peekable();
        let Some((n, first)) = lines.next() else {
            m.problems
                .push(format!("{file}: empty: the shard never started"));
            continue;
        };
        let header = match parse_line(first) {
            Ok(Record::Header(h)) => h,
            Ok(_) => {
                m.problems
                    .push(format!("{file}:{n}: the first line is not a header"));
                continue;
            }
            Err(e) => {
                m.problems
                    .push(format!("{file}:{n}: not a passt-sim results file ({e})"));
                continue;
            }
        };
        let Some((shard, range)) = check_header(file, &header, run.as_ref(), &mut m.problems)
        else {
            continue;
        };
        if run.is_none() {
            run = Some((header.clone(), file.clone(), range));
        }
        if let Some(other) = shards.get(&shard.index) {
            m.problems.push(format!(
                "shard {shard} appears twice ({} and {file}); only the first is counted",
                other.file
            ));
            continue;
        }
        let mut data = ShardData {
            file: file.clone(),
            seeds: BTreeMap::new(),
            footer: None,
        };
        while let Some((n, line)) = lines.next() {
            let last = lines.peek().is_none();
            let record = match parse_line(line) {
                Ok(r) => r,
                Err(_) if last && !complete_last => {
                    m.problems
                        .push(format!("{file}:{n}: the last line is cut off"));
                    continue;
                }
                Err(e) => {
                    m.problems
                        .push(format!("{file}:{n}: not a results line ({e})"));
                    continue;
                }
            };
            if data.footer.is_some() {
                m.problems
                    .push(format!("{file}:{n}: a line after the footer"));
                continue;
            }
            match record {
                Record::Header(_) => m.problems.push(format!("{file}:{n}: a second header")),
                Record::Seed(r) => {
                    if !shard.owns(range, r.seed) {
                        m.problems.push(format!(
                            "{file}:{n}: seed {} is not one of shard {shard}'s seeds",
                            r.seed
                        ));
                    } else {
                        let seed = r.seed;
                        if let std::collections::btree_map::Entry::Vacant(slot) =
                            data.seeds.entry(seed)
                        {
                            slot.insert(r);
                        } else {
                            m.problems
                                .push(format!("{file}:{n}: seed {seed} recorded twice"));
                        }
                    }
                }
                Record::Footer(f) => {
                    let passed = data
                        .seeds
                        .values()
                        .filter(|r| r.verdict == Verdict::Pass)
                        .count() as u64;
                    let run = data.seeds.len() as u64;
                    if f.shard != shard.index
                        || f.run != run
                        || f.passed != passed
                        || f.failed != run - passed
                    {
                        m.problems.push(format!(
                            "{file}:{n}: footer says shard {} ran {} ({} passed, {} failed) but the file holds {run} ({passed} passed)",
                            f.shard, f.run, f.passed, f.failed
                        ));
                    }
                    data.footer = Some(f);
                }
            }
        }
        shards.insert(shard.index, data);
    }
    let Some((header, _, range)) = run else {
        m.problems
            .push("no results: no file starts with a passt-sim results header".into());
        return m;
    };
    let n = header.shards;
    m.expected = range.len();
    m.shards_present = shards.len() as u64;
    let mut failures = BTreeMap::new();
    for (k, data) in &shards {
        let shard = Shard {
            index: *k,
            count: n,
        };
        for r in data.seeds.values() {
            m.run += 1;
            if r.verdict == Verdict::Pass {
                m.passed += 1;
            } else {
                failures.insert(r.seed, r.clone());
            }
        }
        let owed = shard.seed_count(range);
        let short = owed - data.seeds.len() as u64;
        m.missing += u128::from(short);
        if data.footer.is_none() || short > 0 {
            let absent: Vec<String> = shard
                .seeds(range)
                .filter(|s| !data.seeds.contains_key(s))
                .take(LIST)
                .map(|s| s.to_string())
                .collect();
            let more = if short as usize > absent.len() {
                ", ..."
            } else {
                ""
            };
            let why = if data.footer.is_none() {
                "has no footer (killed, truncated or still running)"
            } else {
                "ended early"
            };
            m.problems.push(format!(
                "shard {shard} ({}) {why}: {} of {owed} seeds recorded, missing {}{more}",
                data.file,
                data.seeds.len(),
                if absent.is_empty() {
                    "none".into()
                } else {
                    absent.join(", ")
                },
            ));
        }
    }
    // Missing shards: walk 1..=n past the present ones, naming at most LIST.
    let mut named = 0;
    let mut k = 1u64;
    while k <= n && named < LIST {
        if !shards.contains_key(&k) {
            let shard = Shard { index: k, count: n };
            let owed = shard.seed_count(range);
            let some: Vec<String> = shard.seeds(range).take(3).map(|s| s.to_string()).collect();
            let more = if owed > 3 { ", ..." } else { "" };
            m.problems.push(format!(
                "shard {shard} missing ({owed} seeds: {}{more})",
                some.join(", ")
            ));
            named += 1;
        }
        k += 1;
    }
    let absent_shards = n - m.shards_present;
    if absent_shards > named as u64 {
        m.problems.push(format!(
            "... and {} more shards missing",
            absent_shards - named as u64
        ));
    }
    // Seeds of absent shards: all seeds minus what present shards owe.
    let owed_present: u128 = shards
        .keys()
        .map(|k| {
            u128::from(
                Shard {
                    index: *k,
                    count: n,
                }
                .seed_count(range),
            )
        })
        .sum();
    m.missing += m.expected - owed_present;
    m.failures = failures.into_values().collect();
    m.header = Some(header);
    m
}

/// Checks a header against the format, itself and the run's first header;
/// returns its shard and range, or records why the file is skipped.
fn check_header(
    file: &str,
    h: &Header,
    run: Option<&(Header, String, SeedRange)>,
    problems: &mut Vec<String>,
) -> Option<(Shard, SeedRange)> {
    if h.format != FORMAT {
        problems.push(format!(
            "{file}: format {:?}, this merge reads {FORMAT:?}",
            h.format
        ));
        return None;
    }
    let Some(shard) = Shard::new(h.shard, h.shards) else {
        problems.push(format!(
            "{file}: shard {}/{} is not valid",
            h.shard, h.shards
        ));
        return None;
    };
    let range = match SeedRange::parse(&h.seeds) {
        Ok(r) => r,
        Err(e) => {
            problems.push(format!("{file}: {e}"));
            return None;
        }
    };
    if h.expected != shard.seed_count(range) {
        problems.push(format!(
            "{file}: header says shard {shard} owes {} seeds, the range gives {}",
            h.expected,
            shard.seed_count(range)
        ));
        return None;
    }
    if let Some((r, rfile, _)) = run
        && (r.command != h.command
            || r.target != h.target
            || r.seeds != h.seeds
            || r.shards != h.shards)
    {
        problems.push(format!(
            "{file}: another run ({} {} seeds {} in {} shards) than {rfile} ({} {} seeds {} in {} shards); skipped",
            h.command, h.target, h.seeds, h.shards, r.command, r.target, r.seeds, r.shards
        ));
        return None;
    }
    Some((shard, range))
}

#[cfg(test)]
mod tests {
    use super::super::results::ResultsWriter;
    use super::*;

    /// A shard's file for `1..=10` in `n` shards; seeds in `fail` fail.
    fn shard_file(k: u64, n: u64, fail: &[u64], footer: bool) -> (String, Vec<u8>) {
        let range = SeedRange { first: 1, last: 10 };
        let shard = Shard::new(k, n).unwrap();
        let mut buf = Vec::new();
        let mut w =
            ResultsWriter::new(&mut buf, &Header::new("sweep", "x.toml", range, shard)).unwrap();
        for seed in shard.seeds(range) {
            let failed = fail.contains(&seed);
            w.seed(&SeedResult {
                seed,
                verdict: if failed { Verdict::Fail } else { Verdict::Pass },
                virtual_s: 1.0,
                wall_s: 0.0,
                trace_hash: Some(format!("{seed:016x}")),
                reason: failed.then(|| "boom".into()),
                reproduce: format!("passt-sim run x.toml --seed {seed}"),
            })
            .unwrap();
        }
        if footer {
            w.finish().unwrap();
        }
        (format!("shard{k}.jsonl"), buf)
    }

    #[test]
    fn complete_passing_shards_merge_to_a_pass() {
        let files: Vec<_> = (1..=3).map(|k| shard_file(k, 3, &[], true)).collect();
        let m = merge(&files);
        assert_eq!((m.run, m.passed, m.missing), (10, 10, 0), "{}", m.to_text());
        assert_eq!(m.exit_code(), 0, "{}", m.to_text());
    }

    #[test]
    fn failing_seeds_are_listed_with_their_reproduce_lines() {
        let files: Vec<_> = (1..=3).map(|k| shard_file(k, 3, &[4, 8], true)).collect();
        let m = merge(&files);
        assert_eq!(m.exit_code(), 1);
        let seeds: Vec<u64> = m.failures.iter().map(|f| f.seed).collect();
        assert_eq!(seeds, vec![4, 8]);
        assert!(m.to_text().contains("passt-sim run x.toml --seed 8"));
    }

    #[test]
    fn a_missing_shard_is_named_with_its_seeds() {
        let files = vec![shard_file(1, 3, &[], true), shard_file(3, 3, &[], true)];
        let m = merge(&files);
        assert_eq!(m.exit_code(), 2);
        assert_eq!(m.missing, 3);
        assert!(
            m.to_text().contains("shard 2/3 missing (3 seeds: 2, 5, 8)"),
            "{}",
            m.to_text()
        );
    }

    #[test]
    fn a_shard_without_footer_or_with_a_cut_line_is_incomplete() {
        let (name, mut bytes) = shard_file(2, 3, &[], false);
        bytes.truncate(bytes.len() - 20);
        let files = vec![
            shard_file(1, 3, &[], true),
            (name, bytes),
            shard_file(3, 3, &[], true),
        ];
        let m = merge(&files);
        assert_eq!(m.exit_code(), 2);
        assert_eq!(m.missing, 1);
        let text = m.to_text();
        assert!(text.contains("the last line is cut off"), "{text}");
        assert!(
            text.contains("shard 2/3 (shard2.jsonl) has no footer"),
            "{text}"
        );
    }

    #[test]
    fn garbage_duplicates_and_foreign_runs_are_problems_not_panics() {
        let mut files = vec![
            ("junk".to_string(), b"\xff\xfe not json\n".to_vec()),
            ("empty".to_string(), Vec::new()),
            shard_file(1, 2, &[], true),
            shard_file(1, 2, &[], true),
            shard_file(1, 3, &[], true),
        ];
        files.push(("big".into(), br#"{"record":"header","format":"passt-sim-results/1","command":"sweep","target":"x.toml","seeds":"0..=18446744073709551615","shard":1,"shards":18446744073709551615,"expected":1}"#.to_vec()));
        let m = merge(&files);
        assert_eq!(m.exit_code(), 2);
        assert!(m.problems.len() >= 5, "{:?}", m.problems);
        assert!(merge(&[]).exit_code() == 2);
        assert!(merge(&files[..2]).to_text().contains("no results"));
    }
}
