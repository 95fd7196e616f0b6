//! The regression corpus (`corpus/replay/`, listed in `corpus/MANIFEST`):
//! every capture replays with seed 1 to the report in its snapshot. A
//! capture of correct behaviour (`yes` in the MANIFEST's last field)
//! replays without divergence; one marked `no, diverges` (a Debian passt
//! bug that our engine does not have) replays to at least one.

use std::path::Path;

use passt_sim::replay::{self, Options};

#[test]
fn every_corpus_capture_replays_to_its_snapshot() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/replay");
    let manifest = std::fs::read_to_string(dir.join("../MANIFEST")).expect("corpus/MANIFEST");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus/replay")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "corpus has {} captures", files.len());
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).expect("utf-8 name");
        let row = manifest
            .lines()
            .find(|l| l.starts_with(&format!("{name} |")))
            .unwrap_or_else(|| panic!("{name} is not listed in corpus/MANIFEST"));
        let verdict = row.rsplit('|').next().unwrap_or("").trim();
        let bytes = std::fs::read(f).expect("readable");
        let out = replay::replay(
            &bytes,
            &Options {
                seed: 1,
                ..Options::default()
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = out.report.to_text();
        if verdict.starts_with("yes") {
            assert_eq!(out.report.divergences, 0, "{name}:\n{text}");
        } else if verdict.starts_with("no, diverges") {
            assert!(out.report.divergences > 0, "{name} should diverge:\n{text}");
        } else {
            assert!(verdict.starts_with("no"), "{name}: verdict {verdict:?}");
        }
        insta::assert_snapshot!(name.trim_end_matches(".pcap").to_string(), text);
    }
}
