//! pasta-shaped traffic in the simulator (`[engine] mode = "pasta"`):
//! pasta's defaults under the same fault matrix as passt's scenarios.

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

/// 4 MB each way, byte-exact, under loss and jitter, in segments larger
/// than a 1500-byte MTU could carry (pasta's 65520 on the tap).
#[test]
fn pasta_tcp_echo_survives_a_lossy_link_in_large_segments() {
    let sc = load("pasta-tcp-echo-lossy.toml");
    for_each_seed(
        "pasta_tcp_echo_survives_a_lossy_link_in_large_segments",
        8,
        |seed| {
            let r = sc.run(seed, false).map_err(|e| e.to_string())?;
            if !r.passed() {
                return Err(format!("{r}"));
            }
            let frames = r.sim.down.sent(FrameClass::Tcp);
            if frames == 0 || frames >= 4_000_000 / 1460 {
                return Err(format!(
                    "{frames} TCP frames to the guest: not large segments\n{r}"
                ));
            }
            Ok(())
        },
    );
}

#[test]
fn pasta_scenarios_are_deterministic() {
    let r =
        scenario::check_determinism(&load("pasta-tcp-echo-lossy.toml"), 3).expect("same run twice");
    assert!(r.passed(), "{r}");
}

#[test]
fn an_unknown_engine_mode_is_a_clear_error() {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/pasta-tcp-echo-lossy.toml"),
    )
    .unwrap()
    .replace("mode = \"pasta\"", "mode = \"slirp\"");
    let dir = std::env::temp_dir().join(format!("pasta-mode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let err = Scenario::load(&path)
        .and_then(|sc| sc.run(1, false).map(|_| ()))
        .expect_err("unknown mode");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(err.to_string().contains("engine.mode"), "{err}");
}
