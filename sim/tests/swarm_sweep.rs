//! The simulator's swarm sweep in CI (issue #15): scenarios whose faults
//! are drawn from the seed (`[faults] swarm`, `[host_faults] swarm`) run
//! over a fixed list of seeds, each of which must pass. A failure prints
//! its seed and the command that reproduces it (`for_each_seed_in`);
//! `passt-sim sweep FILE --seeds A..B` runs more of them.

use std::path::PathBuf;

use passt_sim::Seeds;
use passt_sim::scenario::{RunReport, Scenario};
use passt_sim::seed::for_each_seed_in;

/// The fixed seed list, 1 to 16 (the same every run: CI is deterministic).
const FIRST: &str = "1";
const COUNT: &str = "16";

fn shipped(name: &str) -> Scenario {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name);
    Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"))
}

fn sweep(sc: &Scenario, test: &str, judge: impl Fn(&RunReport) -> bool) {
    let plan = Seeds::from_values(Some(FIRST), Some(COUNT), 1).expect("seed list");
    let mut passed = 0;
    for_each_seed_in(&plan, test, |seed| {
        let r = sc.run(seed, false).map_err(|e| e.to_string())?;
        if !r.passed() || !judge(&r) {
            return Err(format!("{r}"));
        }
        passed += 1;
        Ok(())
    });
    assert_eq!(passed, 16);
}

#[test]
fn udp_echo_under_swarm_link_faults_passes_every_listed_seed() {
    sweep(
        &shipped("udp-echo-swarm.toml"),
        "udp_echo_under_swarm_link_faults_passes_every_listed_seed",
        |_| true,
    );
}

/// TCP echo with both the guest link's faults and the host's drawn from
/// the seed: every byte comes back or the connection fails cleanly within
/// its timeout (a reset drawn by the host is a clean failure).
const TCP_SWARM: &str = r#"
description = "TCP echo under swarm link and host faults"
duration = 120
[guest]
kind = "smoltcp"
[[guest.workload]]
type = "tcp-echo"
dst = "203.0.113.7:7"
bytes = 100000
timeout = 100
[[remote]]
service = "tcp-echo"
addr = "203.0.113.7:7"
[faults]
swarm = true
[host_faults]
swarm = true
[expect]
workloads_succeed = false
"#;

#[test]
fn tcp_echo_under_swarm_link_and_host_faults_passes_every_listed_seed() {
    let sc = Scenario::from_toml(TCP_SWARM, "tcp-swarm.toml", None).expect("scenario");
    let whole = std::cell::Cell::new(0);
    sweep(
        &sc,
        "tcp_echo_under_swarm_link_and_host_faults_passes_every_listed_seed",
        |r| {
            r.workloads.iter().all(|w| {
                let clean_failure = w
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("reset") || e.contains("refused"));
                whole.set(whole.get() + u32::from(w.succeeded()));
                w.corrupt == 0 && (w.succeeded() || clean_failure)
            })
        },
    );
    // Not vacuous: most seeds carry the whole stream through the faults.
    assert!(whole.get() >= 8, "{} of 16 echoed everything", whole.get());
    eprintln!("{} of 16 seeds echoed all 100,000 bytes", whole.get());
}
