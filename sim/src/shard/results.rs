//! The JSON-lines results a shard writes: one header line, one line per
//! seed, one footer line (format [`FORMAT`], docs/sweeps.md).
//!
//! The header names the run (command, target, seed range, shard) so a
//! merge can tell shards of different runs apart and knows which seeds
//! each shard owes; the footer is written only after the last seed, so a
//! file without one is a shard that was killed or truncated. Each line is
//! flushed as it is written, so whatever a killed shard finished survives.
//!
//! This module only encodes and decodes; it never judges (that is
//! [`super::merge`]) and never runs a simulation.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use super::{SeedRange, Shard};

/// The `format` every header carries; a merge refuses anything else.
pub const FORMAT: &str = "passt-sim-results/1";

/// What one seed came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every pass criterion held.
    Pass,
    /// The run finished and a criterion failed.
    Fail,
    /// The run could not be carried out (the scenario could not be built,
    /// the determinism check found two different runs, ...).
    Error,
}

/// One line of a results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "lowercase", deny_unknown_fields)]
pub enum Record {
    /// First line: which run and which shard.
    Header(Header),
    /// One seed's outcome.
    Seed(SeedResult),
    /// Last line: how many seeds the shard ran.
    Footer(Footer),
}

/// The first line of a shard's results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// `sweep` or `replay`.
    pub command: String,
    /// The scenario or trace, as given on the command line.
    pub target: String,
    /// The whole seed range, `A..=B`.
    pub seeds: String,
    /// This shard, 1-based.
    pub shard: u64,
    /// How many shards split the range.
    pub shards: u64,
    /// How many seeds this shard owes.
    pub expected: u64,
}

/// One seed's line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedResult {
    /// The master seed.
    pub seed: u64,
    /// Pass, fail or error.
    pub verdict: Verdict,
    /// Virtual seconds the run lasted.
    pub virtual_s: f64,
    /// Wall-clock seconds the run took (the one non-deterministic field).
    pub wall_s: f64,
    /// The run's trace hash, 16 hex digits (`null` when it did not run).
    pub trace_hash: Option<String>,
    /// Why it failed: every failed criterion, `; `-joined (`null` on pass).
    pub reason: Option<String>,
    /// The command that runs this seed alone.
    pub reproduce: String,
}

/// The last line of a shard's results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Footer {
    /// This shard, 1-based.
    pub shard: u64,
    /// Seeds run.
    pub run: u64,
    /// Seeds that passed.
    pub passed: u64,
    /// Seeds that failed or could not run.
    pub failed: u64,
}

impl Header {
    /// The header for `shard` of `range`.
    pub fn new(command: &str, target: &str, range: SeedRange, shard: Shard) -> Self {
        Self {
            format: FORMAT.to_string(),
            command: command.to_string(),
            target: target.to_string(),
            seeds: range.to_string(),
            shard: shard.index,
            shards: shard.count,
            expected: shard.seed_count(range),
        }
    }
}

/// Writes a shard's results line by line: the header at once, each seed
/// as it is recorded, the footer from [`ResultsWriter::finish`].
pub struct ResultsWriter<W: Write> {
    out: W,
    shard: u64,
    run: u64,
    passed: u64,
}

impl<W: Write> ResultsWriter<W> {
    /// Starts a results stream with `header`.
    pub fn new(mut out: W, header: &Header) -> io::Result<Self> {
        write_line(&mut out, &Record::Header(header.clone()))?;
        Ok(Self {
            out,
            shard: header.shard,
            run: 0,
            passed: 0,
        })
    }

    /// Records one seed.
    pub fn seed(&mut self, r: &SeedResult) -> io::Result<()> {
        self.run += 1;
        if r.verdict == Verdict::Pass {
            self.passed += 1;
        }
        write_line(&mut self.out, &Record::Seed(r.clone()))
    }

    /// Writes the footer: the shard ran to its end.
    pub fn finish(mut self) -> io::Result<Footer> {
        let footer = Footer {
            shard: self.shard,
            run: self.run,
            passed: self.passed,
            failed: self.run - self.passed,
        };
        write_line(&mut self.out, &Record::Footer(footer.clone()))?;
        Ok(footer)
    }
}

fn write_line<W: Write>(out: &mut W, r: &Record) -> io::Result<()> {
    let line = serde_json::to_string(r).map_err(io::Error::other)?;
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Parses one line of a results file.
pub fn parse_line(line: &str) -> Result<Record, String> {
    serde_json::from_str(line).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_one_line_each() {
        let range = SeedRange::parse("1..11").unwrap();
        let header = Header::new("sweep", "x.toml", range, Shard::new(2, 3).unwrap());
        assert_eq!(header.expected, 3);
        let mut w = ResultsWriter::new(Vec::new(), &header).unwrap();
        let seed = SeedResult {
            seed: u64::MAX,
            verdict: Verdict::Fail,
            virtual_s: 1.5,
            wall_s: 0.01,
            trace_hash: Some("00000000deadbeef".into()),
            reason: Some("echo: short".into()),
            reproduce: "passt-sim run x.toml --seed 18446744073709551615".into(),
        };
        w.seed(&seed).unwrap();
        let footer = w.finish().unwrap();
        assert_eq!((footer.run, footer.passed, footer.failed), (1, 0, 1));
        let out = String::from_utf8(w_out(header.clone(), &seed)).unwrap();
        let lines: Vec<Record> = out.lines().map(|l| parse_line(l).unwrap()).collect();
        assert_eq!(
            lines,
            vec![
                Record::Header(header),
                Record::Seed(seed),
                Record::Footer(footer)
            ]
        );
    }

    fn w_out(header: Header, seed: &SeedResult) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = ResultsWriter::new(&mut buf, &header).unwrap();
        w.seed(seed).unwrap();
        w.finish().unwrap();
        buf
    }

    #[test]
    fn lines_that_are_not_records_are_errors() {
        for bad in [
            "",
            "{}",
            "[1]",
            "{\"record\":\"seed\"}",
            "garbage",
            "{\"record\":\"x\"}",
        ] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
    }
}
