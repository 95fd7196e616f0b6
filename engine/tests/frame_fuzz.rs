//! Property tests at the engine's front door: arbitrary bytes, and valid
//! frames captured from real clients with bytes flipped, cut or extended,
//! go through `Engine::handle_frame`. The engine must never panic, must
//! count every frame, and everything it queues for the guest must be a
//! well-formed frame from our MAC (checked by our parser and by etherparse).

use passt_engine::host_io::NoHost;
use passt_engine::wire::parse_frame;
use passt_engine::{Config, Engine, Instant, MacAddr};
use pcap_file::pcap::PcapReader;
use proptest::prelude::*;
use std::fs::File;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Frames from every client capture in `corpus/clients`.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../corpus/clients");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("corpus/clients")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
            .collect();
        names.sort();
        let mut frames = Vec::new();
        for name in names {
            let mut r = PcapReader::new(File::open(&name).unwrap()).unwrap();
            while let Some(p) = r.next_packet() {
                frames.push(p.unwrap().data.into_owned());
            }
        }
        assert!(frames.len() >= 10, "client corpus holds frames");
        frames
    })
}

fn check_output(engine: &mut Engine<NoHost>) {
    for out in engine.tx_queue().iter() {
        let parsed = parse_frame(out).expect("our own frame parses");
        assert_eq!(parsed.eth.src, MacAddr::PASST_DEFAULT);
        etherparse::SlicedPacket::from_ethernet(out).expect("etherparse accepts our frame");
    }
    engine.tx_queue().clear();
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Extend(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Extend),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(frames in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..200), 1..8)) {
        let mut engine = Engine::new(Config::example(), NoHost, 3).unwrap();
        for (i, f) in frames.iter().enumerate() {
            engine.handle_frame(Instant::from_millis(i as u64), f);
            check_output(&mut engine);
        }
        prop_assert_eq!(engine.counters().frames_in, frames.len() as u64);
    }

    #[test]
    fn mutated_client_frames_never_panic(
        picks in proptest::collection::vec((any::<prop::sample::Index>(),
            proptest::collection::vec(mutation(), 0..4)), 1..6),
    ) {
        let seeds = seeds();
        let mut engine = Engine::new(Config::example(), NoHost, 4).unwrap();
        for (n, (pick, muts)) in picks.iter().enumerate() {
            let mut f = seeds[pick.index(seeds.len())].clone();
            for m in muts {
                match m {
                    Mutation::Flip(i, x) => {
                        if !f.is_empty() {
                            let at = i % f.len();
                            f[at] ^= x;
                        }
                    }
                    Mutation::Truncate(at) => {
                        let len = f.len();
                        f.truncate(at % (len + 1));
                    }
                    Mutation::Extend(tail) => f.extend_from_slice(tail),
                }
            }
            let now = Instant::from_millis(n as u64 * 10);
            engine.handle_frame(now, &f);
            engine.handle_timeout(now);
            check_output(&mut engine);
        }
        let c = engine.counters();
        prop_assert_eq!(c.frames_in, picks.len() as u64);
    }
}

#[test]
fn unmutated_client_frames_are_all_handled_without_drops_of_malformed_kinds() {
    // The seeds themselves are valid frames: none may be dropped as
    // malformed, truncated or with a bad checksum (the veth captures with
    // offloaded checksums are the known exception and are excluded here).
    let mut engine = Engine::new(Config::example(), NoHost, 5).unwrap();
    for (i, f) in seeds().iter().enumerate() {
        engine.handle_frame(Instant::from_millis(i as u64), f);
        check_output(&mut engine);
    }
    let c = engine.counters();
    assert_eq!(c.drops(passt_engine::DropReason::Truncated), 0);
    assert_eq!(c.drops(passt_engine::DropReason::Malformed), 0);
}
