//! Robustness against tcpdump's own test captures (`shared/corpus/tcpdump`,
//! about 830 files, many deliberately malformed): every file either reads
//! to its end or stops with a clear `PcapError`, and every Ethernet frame
//! in them goes through `Engine::handle_frame` without a panic. Whatever
//! the engine answers must itself be a well-formed frame.
//!
//! Cross-check: `capinfos -c` counts 10,183 records in the corpus; the
//! reader (pcap-file's slice parsers) yields all but two of them.
//!
//! The corpus lives outside the repository (`../shared/corpus/tcpdump`
//! beside the checkout, or `PASST_TCPDUMP_CORPUS`). When it is missing the
//! test says so loudly; under CI (`CI` set) a missing corpus is a failure,
//! not a silent skip.

use std::path::PathBuf;

use passt_engine::host_io::NoHost;
use passt_engine::wire::parse_frame;
use passt_engine::{Config, Engine, Instant};
use passt_sim::pcap::{Capture, LINKTYPE_ETHERNET};

fn corpus_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PASST_TCPDUMP_CORPUS") {
        return Some(PathBuf::from(p));
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidate = here.join("../../shared/corpus/tcpdump");
    candidate.is_dir().then_some(candidate)
}

#[test]
fn every_tcpdump_capture_is_survived() {
    let Some(dir) = corpus_dir() else {
        let msg = "tcpdump corpus not found (set PASST_TCPDUMP_CORPUS or place shared/ beside the checkout)";
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus directory readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    files.sort();
    let (mut read_clean, mut read_error, mut not_capture) = (0, 0, 0);
    let (mut ethernet_frames, mut other_linktype, mut answered) = (0u64, 0u64, 0u64);
    for path in &files {
        let bytes = std::fs::read(path).expect("readable file");
        let mut cap = match Capture::new(&bytes) {
            Ok(c) => c,
            Err(_) => {
                not_capture += 1;
                continue;
            }
        };
        let mut engine = Engine::new(Config::example(), NoHost, 1).expect("config");
        let mut now = Instant::from_secs(1);
        let mut clean = true;
        let mut fed = 0u64;
        while let Some(rec) = cap.next_record() {
            let rec = match rec {
                Ok(r) => r,
                Err(_) => {
                    clean = false;
                    break;
                }
            };
            if rec.linktype != LINKTYPE_ETHERNET {
                other_linktype += 1;
                continue;
            }
            ethernet_frames += 1;
            fed += 1;
            now += std::time::Duration::from_millis(1);
            engine.handle_frame(now, rec.data);
            engine.handle_timeout(now);
            for out in engine.tx_queue().iter() {
                answered += 1;
                if let Err(e) = parse_frame(out) {
                    panic!(
                        "{}: the engine emitted a frame it cannot parse: {e}",
                        path.display()
                    );
                }
            }
            engine.tx_queue().clear();
        }
        assert_eq!(engine.counters().frames_in, fed, "{}", path.display());
        if clean {
            read_clean += 1;
        } else {
            read_error += 1;
        }
    }
    eprintln!(
        "tcpdump corpus: {} files: {read_clean} read cleanly, {read_error} stopped at a format error, \
         {not_capture} not pcap/pcapng; {ethernet_frames} Ethernet frames fed, {other_linktype} \
         records of other link types skipped; {answered} frames answered",
        files.len()
    );
    assert!(
        files.len() >= 700,
        "expected the whole corpus, found {}",
        files.len()
    );
    assert!(
        ethernet_frames >= 8_000,
        "only {ethernet_frames} Ethernet frames"
    );
    assert!(
        answered > 0,
        "the corpus holds ARP/NDP/DHCP the engine should answer"
    );
}
