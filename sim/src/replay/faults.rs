//! `--faults FILE|SPEC`: the fault chains of the guest↔engine links, in
//! the scenarios' own vocabulary.
//!
//! # What this module owns
//!
//! Reading the argument into a scenario's `[faults]` table
//! ([`FaultsSection`]): a TOML file (a scenario file, or any file with a
//! `[faults]` table; other tables are ignored), or a one-line spec whose
//! `key=value` items, comma-separated, are that table's lines
//! (`loss=0.05,jitter=0.002`, `up.loss=1`, `burst_loss=[0.01,0.3,0.5]`).
//! Building the two chains goes through the scenario's own builder, so the
//! keys, units (seconds, probabilities) and checks are the same
//! (`docs/simulation.md`).
//!
//! # What it must never do
//!
//! Grow a grammar of its own: every key is a scenario key.

use std::path::Path;

use serde::Deserialize;

use crate::fault::FaultChain;
use crate::scenario::{FaultsSection, Scenario};
use crate::seed::SimRng;

/// A file holding a `[faults]` table.
#[derive(Deserialize)]
struct FaultsFile {
    faults: Option<FaultsSection>,
}

/// Parses `--faults`: a TOML file if `arg` names one, else a spec.
pub fn parse(arg: &str) -> Result<FaultsSection, String> {
    let path = Path::new(arg);
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--faults {arg}: cannot read: {e}"))?;
        let f: FaultsFile =
            toml::from_str(&text).map_err(|e| format!("--faults {arg}: {}", e.message()))?;
        return f
            .faults
            .ok_or_else(|| format!("--faults {arg}: no [faults] table"));
    }
    let mut table = String::from("[faults]\n");
    for item in split_items(arg) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!(
                "--faults `{arg}`: `{item}` is not key=value (or no such file)"
            ));
        };
        table.push_str(&format!("{} = {}\n", k.trim(), v.trim()));
    }
    let f: FaultsFile =
        toml::from_str(&table).map_err(|e| format!("--faults `{arg}`: {}", e.message()))?;
    let f = f.faults.unwrap_or_default();
    // Checks probabilities and durations now, not mid-run.
    chains(&f, &SimRng::from_seed(0)).map(|_| f)
}

/// Splits at commas outside brackets (`burst_loss=[a,b,c]` stays whole).
fn split_items(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// The (guest → engine, engine → guest) chains of `faults`, each rule
/// drawing from its own child of `root` as in a scenario run.
pub fn chains(faults: &FaultsSection, root: &SimRng) -> Result<(FaultChain, FaultChain), String> {
    let mut sc = Scenario::default();
    sc.faults = faults.clone();
    let up = sc
        .chain(
            &sc.merged(sc.faults.up.as_ref()),
            root.child("link-up"),
            root.child("swarm-up").next_u64(),
        )
        .map_err(|e| format!("--faults: {e}"))?;
    let down = sc
        .chain(
            &sc.merged(sc.faults.down.as_ref()),
            root.child("link-down"),
            root.child("swarm-down").next_u64(),
        )
        .map_err(|e| format!("--faults: {e}"))?;
    Ok((up, down))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_is_read_as_the_lines_of_a_faults_table() {
        let f =
            parse("loss=0.05, jitter=0.002,up.duplicate=0.1,burst_loss=[0.01,0.3,0.5]").unwrap();
        assert_eq!(f.both.loss, Some(0.05));
        assert_eq!(f.both.jitter, Some(0.002));
        assert_eq!(f.both.burst_loss, Some([0.01, 0.3, 0.5]));
        assert_eq!(f.up.and_then(|u| u.duplicate), Some(0.1));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_clear_errors() {
        let e = parse("lost=0.1").unwrap_err();
        assert!(e.contains("lost"), "{e}");
        let e = parse("loss=2").unwrap_err();
        assert!(e.contains("not a probability"), "{e}");
        let e = parse("loss").unwrap_err();
        assert!(e.contains("key=value"), "{e}");
    }
}
