//! The UDP and ping scenarios shipped in `sim/scenarios/` (issue #5) pass,
//! for their seeds, and are deterministic.

use std::path::PathBuf;

use passt_sim::for_each_seed;
use passt_sim::scenario::{self, Scenario};
use passt_sim::simulation::FrameClass;

fn load(name: &str) -> Scenario {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name);
    Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn udp_and_ping_scenarios_pass() {
    for name in [
        "udp-gateway-echo.toml",
        "ping-v4.toml",
        "ping-v6.toml",
        "udp-10k-lossy.toml",
    ] {
        let sc = load(name);
        for_each_seed(
            &format!("udp_and_ping_scenarios_pass ({name})"),
            1,
            |seed| {
                let r = sc.run(seed, false).map_err(|e| e.to_string())?;
                if !r.passed() {
                    return Err(format!("{r}"));
                }
                if name == "udp-10k-lossy.toml" {
                    let sent: u64 = r.workloads.iter().map(|w| w.sent).sum();
                    let udp = FrameClass::Udp;
                    let lost = (r.sim.up.sent(udp) - r.sim.up.delivered(udp))
                        + (r.sim.down.sent(udp) - r.sim.down.delivered(udp));
                    let received: u64 = r.workloads.iter().map(|w| w.received).sum();
                    if sent != 10_000 || received + lost != sent || r.engine.total_drops() != 0 {
                        return Err(format!("sent {sent} received {received} lost {lost}\n{r}"));
                    }
                }
                Ok(())
            },
        );
    }
}

#[test]
fn udp_scenarios_are_deterministic() {
    let r = scenario::check_determinism(&load("udp-gateway-echo.toml"), 3).expect("same run twice");
    assert!(r.passed(), "{r}");
    scenario::check_determinism(&load("ping-v6.toml"), 3).expect("same run twice");
}
