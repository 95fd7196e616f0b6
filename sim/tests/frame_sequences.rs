//! The simulator-side fuzz targets in CI (stable toolchain): the same
//! properties as `fuzz/fuzz_targets/{engine_frames,replay_pcap}.rs`
//! (`fuzz_checks`), run by proptest with a fixed number of cases over
//! inputs shaped like the targets' seeds (the repository's captures,
//! their guest frames mutated, reordered and interleaved with time steps),
//! and every input a fuzzer ever crashed on (`fuzz_regressions/TARGET/`)
//! replayed.

mod fuzz_checks;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use passt_engine::Instant;
use passt_sim::frame_seq::{FrameSeqWorld, Op, encode, ops_from_trace};
use passt_sim::pcap::{Capture, LINKTYPE_ETHERNET};
use proptest::prelude::*;

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_kept_fuzzer_finding_now_passes_its_check() {
    let mut replayed = 0;
    for (name, check) in fuzz_checks::TARGETS {
        let dir = here().join("tests/fuzz_regressions").join(name);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).expect("readable finding");
            eprintln!("replaying {}", f.display());
            check(&data);
            replayed += 1;
        }
    }
    eprintln!("{replayed} findings replayed");
}

/// The repository's captures (`corpus/replay`, `corpus/clients`): names
/// and bytes.
fn named_captures() -> &'static [(String, Vec<u8>)] {
    static CAPS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    CAPS.get_or_init(|| {
        let mut names = Vec::new();
        for d in ["../corpus/replay", "../corpus/clients"] {
            let rd = std::fs::read_dir(here().join(d)).expect("corpus folder");
            names.extend(
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "pcap")),
            );
        }
        names.sort();
        names
            .iter()
            .map(|p| {
                let name = p.file_name().expect("file").to_string_lossy().into_owned();
                (name, std::fs::read(p).expect("capture"))
            })
            .collect()
    })
}

fn captures() -> Vec<&'static [u8]> {
    named_captures().iter().map(|(_, b)| b.as_slice()).collect()
}

/// Each capture as a sequence of ops (the engine_frames seeds).
fn traces() -> &'static [Vec<Op>] {
    static OPS: OnceLock<Vec<Vec<Op>>> = OnceLock::new();
    OPS.get_or_init(|| {
        captures()
            .iter()
            .map(|bytes| {
                let mut cap = Capture::new(bytes).expect("our captures read");
                let mut frames = Vec::new();
                let mut t0 = None;
                while let Some(rec) = cap.next_record() {
                    let rec = rec.expect("our captures are whole");
                    assert_eq!(rec.linktype, LINKTYPE_ETHERNET);
                    let t0 = *t0.get_or_insert(rec.ts_nanos);
                    let at = Instant::from_nanos(rec.ts_nanos.saturating_sub(t0));
                    frames.push((at, rec.data.to_vec()));
                }
                ops_from_trace(&frames)
            })
            .collect()
    })
}

/// What a mutation does to one op of a trace.
#[derive(Clone, Debug)]
enum Edit {
    Flip(usize, u8),
    Cut(usize),
    Drop,
    Repeat,
    Wait(u16),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Edit::Flip(i, x)),
        1 => any::<usize>().prop_map(Edit::Cut),
        1 => Just(Edit::Drop),
        1 => Just(Edit::Repeat),
        1 => any::<u16>().prop_map(Edit::Wait),
    ]
}

fn apply_edits(ops: &[Op], edits: &[(prop::sample::Index, Edit)]) -> Vec<Op> {
    let mut ops = ops.to_vec();
    for (at, e) in edits {
        if ops.is_empty() {
            break;
        }
        let i = at.index(ops.len());
        match (e, &mut ops[i]) {
            (Edit::Flip(j, x), Op::Frame(f)) if !f.is_empty() => {
                let k = j % f.len();
                f[k] ^= x;
            }
            (Edit::Cut(j), Op::Frame(f)) => {
                let n = j % (f.len() + 1);
                f.truncate(n);
            }
            (Edit::Drop, _) => {
                ops.remove(i);
            }
            (Edit::Repeat, _) => {
                let op = ops[i].clone();
                ops.insert(i, op);
            }
            (Edit::Wait(ms), _) => {
                let d = Duration::from_millis(u64::from(*ms) * 2);
                ops.insert(i, Op::Advance(d));
            }
            _ => {}
        }
    }
    ops
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn mutated_capture_sequences_keep_every_engine_invariant(
        pick in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), edit()), 0..12),
    ) {
        let traces = traces();
        let ops = apply_edits(&traces[pick.index(traces.len())], &edits);
        // Through the byte encoding, as the fuzzer sees it.
        fuzz_checks::engine_frames(&encode(&ops));
    }

    #[test]
    fn spliced_capture_sequences_keep_every_engine_invariant(
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
        cut_a in any::<prop::sample::Index>(),
        cut_b in any::<prop::sample::Index>(),
    ) {
        // The head of one conversation, then the tail of another: state
        // from the first meets frames that expect another's.
        let traces = traces();
        let (x, y) = (&traces[a.index(traces.len())], &traces[b.index(traces.len())]);
        let mut ops = x[..cut_a.index(x.len() + 1)].to_vec();
        ops.extend_from_slice(&y[cut_b.index(y.len() + 1)..]);
        fuzz_checks::engine_frames(&encode(&ops));
    }

    #[test]
    fn arbitrary_bytes_keep_every_engine_invariant(
        data in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        fuzz_checks::engine_frames(&data);
    }

    #[test]
    fn mutated_captures_read_as_frames_or_one_error(
        pick in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let caps = captures();
        let mut bytes = caps[pick.index(caps.len())].to_vec();
        for (at, x) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len() + 1));
        }
        fuzz_checks::replay_pcap(&bytes);
    }
}

#[test]
fn every_capture_sequence_keeps_every_engine_invariant_unmutated() {
    for ops in traces() {
        let mut world = FrameSeqWorld::new(1);
        world.run(ops).expect("invariants");
        assert!(world.engine().counters().frames_in > 0);
    }
    assert!(traces().len() >= 20, "the repository's captures are found");
}

#[test]
fn the_world_answers_a_recorded_conversation() {
    // Not vacuous: the half-close trace's guest gets its lease and its
    // gateway's MAC and opens a TCP flow to the echo service. Its later
    // segments carry the recorded engine's sequence numbers, not ours, so
    // they are answered with RSTs (RFC 9293 §3.10.7.4), every one counted.
    let i = named_captures()
        .iter()
        .position(|(n, _)| n == "sim-tcp-half-close.pcap")
        .expect("corpus/replay/sim-tcp-half-close.pcap");
    let mut world = FrameSeqWorld::new(1);
    world.run(&traces()[i]).expect("invariants");
    let c = world.engine().counters();
    assert_eq!(
        (c.dhcp_replies, c.arp_replies, c.flows_opened),
        (2, 1, 1),
        "{c:?}"
    );
    assert!(c.tcp_rst_to_guest > 0, "{c:?}");
    assert_eq!(
        world.frames_to_guest(),
        c.frames_out,
        "every frame reached the guest"
    );
}
