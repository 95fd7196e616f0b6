//! Issue #4's integrity matrix: 64 MiB each way (smoltcp guest → remote
//! echo → guest), byte-exact against the stream pattern, over a clean link
//! and over a link with every fault at once (5% loss, 1% duplication,
//! reordering by jitter, 0.1% corruption), 200 seeds each.
//!
//! The seeds are spread over the machine's cores (each run is independent
//! and deterministic on its own); a failure names its seed and prints the
//! reproduce line. `PASST_SIM_SEED` / `PASST_SIM_SEEDS` override the plan
//! as everywhere else; `passt-sim sweep` on the same scenario files runs
//! more seeds.

use std::path::PathBuf;
use std::thread;
use std::time::Instant as WallInstant;

use passt_sim::scenario::{RunReport, Scenario};
use passt_sim::seed::reproduce_line;
use passt_sim::{DropCause, Seeds};

const BYTES: u64 = 64 << 20;
const SEEDS: u64 = 200;

fn load(name: &str) -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name);
    Scenario::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// What every run must show, faults or not.
fn check_integrity(r: &RunReport) -> Result<(), String> {
    if !r.passed() {
        return Err(format!("run failed:\n{r}"));
    }
    let w = r.workloads.first().ok_or("no workload report")?;
    if (w.bytes_sent, w.bytes_received, w.corrupt) != (BYTES, BYTES, 0) {
        return Err(format!(
            "sent {} received {} corrupt {} (want {BYTES} each way, 0 corrupt):\n{r}",
            w.bytes_sent, w.bytes_received, w.corrupt
        ));
    }
    Ok(())
}

/// Runs `scenario` over the plan's seeds on every core; panics with the
/// first failing seed (in plan order) and its reproduce line.
fn matrix(test_name: &str, scenario: &str, extra: fn(&RunReport) -> Result<(), String>) {
    let plan = Seeds::from_env_or(1, SEEDS).unwrap_or_else(|e| panic!("{test_name}: {e}"));
    let seeds: Vec<u64> = plan.iter().collect();
    let cores = thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(seeds.len());
    let started = WallInstant::now();
    let mut results: Vec<(usize, u64, Result<f64, String>)> = thread::scope(|s| {
        let handles: Vec<_> = (0..cores)
            .map(|k| {
                let seeds = &seeds;
                s.spawn(move || {
                    let sc = load(scenario);
                    let mut out = Vec::new();
                    for (i, &seed) in seeds.iter().enumerate().skip(k).step_by(cores) {
                        let outcome =
                            sc.run(seed, false)
                                .map_err(|e| e.to_string())
                                .and_then(|r| {
                                    check_integrity(&r)?;
                                    extra(&r)?;
                                    Ok(r.virtual_end.as_nanos() as f64 / 1e9)
                                });
                        let failed = outcome.is_err();
                        out.push((i, seed, outcome));
                        if failed {
                            break;
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("matrix worker panicked"))
            .collect()
    });
    results.sort_by_key(|(i, _, _)| *i);
    if let Some((i, seed, Err(message))) = results.iter().find(|(_, _, o)| o.is_err()) {
        panic!(
            "`{test_name}` failed with seed {seed} (run {} of {}): {message}\n{}",
            i + 1,
            seeds.len(),
            reproduce_line(test_name, *seed)
        );
    }
    let virt: Vec<f64> = results
        .iter()
        .filter_map(|(_, _, o)| o.clone().ok())
        .collect();
    let max = virt.iter().copied().fold(0.0, f64::max);
    let mean = virt.iter().sum::<f64>() / virt.len().max(1) as f64;
    eprintln!(
        "{test_name}: {} seeds × {} MiB each way byte-exact on {cores} cores in {:.1} s; \
         virtual time mean {mean:.1} s, max {max:.1} s",
        virt.len(),
        BYTES >> 20,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(virt.len(), seeds.len(), "every seed ran");
}

#[test]
fn integrity_64mib_each_way_clean_link() {
    matrix(
        "integrity_64mib_each_way_clean_link",
        "tcp-integrity-clean.toml",
        |r| {
            // A clean link needs no recovery at all.
            if r.sim.tcp_retransmits_up + r.sim.tcp_retransmits_down != 0 {
                return Err(format!("retransmissions on a clean link:\n{r}"));
            }
            if r.engine.total_drops() != 0 {
                return Err(format!("engine drops on a clean link:\n{r}"));
            }
            Ok(())
        },
    );
}

#[test]
fn integrity_64mib_each_way_lossy_duplicating_reordering_corrupting_link() {
    matrix(
        "integrity_64mib_each_way_lossy_duplicating_reordering_corrupting_link",
        "tcp-integrity-faults.toml",
        |r| {
            // The faults really happened, both ways, and both ends recovered.
            for (dir, l) in [("up", &r.up), ("down", &r.down)] {
                let lost = l.dropped(DropCause::Loss);
                if lost == 0 || l.duplicated == 0 || l.corrupted == 0 {
                    return Err(format!(
                        "{dir}: lost {lost} duplicated {} corrupted {}: faults not applied\n{r}",
                        l.duplicated, l.corrupted
                    ));
                }
            }
            if r.sim.tcp_retransmits_up == 0 || r.sim.tcp_retransmits_down == 0 {
                return Err(format!("no retransmissions in one direction:\n{r}"));
            }
            Ok(())
        },
    );
}
