//! The properties of the simulator-side fuzz targets, one function per
//! target, each taking the raw input and panicking on a violation. The
//! cargo-fuzz targets (`fuzz/fuzz_targets/{engine_frames,replay_pcap}.rs`,
//! which include this file by path) and the proptest versions in CI
//! (`sim/tests/frame_sequences.rs`) call the same functions; every crash
//! a fuzzer finds is kept under `sim/tests/fuzz_regressions/TARGET/` and
//! replayed through them.
#![allow(dead_code)]

use passt_engine::Instant;
use passt_sim::frame_seq::{FrameSeqWorld, decode};
use passt_sim::replay::input::read_trace;

/// A target's property: panics on a violation.
pub type Check = fn(&[u8]);

/// The targets, by the names of their fuzz binaries and regression folders.
pub const TARGETS: &[(&str, Check)] = &[
    ("engine_frames", engine_frames),
    ("replay_pcap", replay_pcap),
];

/// `Engine::handle_frame` sequences on the simulated host: the input
/// decodes to guest frames, time steps and flushes
/// (`passt_sim::frame_seq`); every invariant holds after every step.
pub fn engine_frames(data: &[u8]) {
    let ops = decode(data);
    let mut world = FrameSeqWorld::new(1);
    if let Err(v) = world.run(&ops) {
        panic!("invariant violated: {v}");
    }
}

/// Replay's capture reader: the frames or one `InputError`; frames are
/// not empty, in time order, from zero.
pub fn replay_pcap(data: &[u8]) {
    if let Ok(frames) = read_trace(data) {
        assert!(!frames.is_empty());
        assert!(frames.windows(2).all(|w| w[0].at <= w[1].at));
        assert_eq!(frames[0].at, Instant::ZERO);
    }
}
