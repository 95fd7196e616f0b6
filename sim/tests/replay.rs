//! `passt-sim replay`: bad inputs end with one line and exit status 2;
//! captures of our own engine replay without divergence; the same trace,
//! seed and options give the same bytes; every capture of tcpdump's test
//! corpus gives a report or a clear error, never a panic.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use passt_sim::pcap::{PcapWriter, TsResolution};
use passt_sim::replay::{self, Options, ReplayError};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_passt-sim"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("passt-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.toml"))
}

/// A capture of our engine, made by running a scenario in the simulator.
fn capture_of(name: &str) -> PathBuf {
    let out = tmp(&format!("{name}.pcap"));
    let st = bin()
        .args(["run", scenario(name).to_str().expect("utf-8"), "--pcap"])
        .arg(&out)
        .output()
        .expect("passt-sim runs");
    assert!(st.status.success(), "{name}: {st:?}");
    out
}

fn replay_cmd(trace: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let o = bin()
        .arg("replay")
        .arg(trace)
        .args(extra)
        .output()
        .expect("passt-sim runs");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn pcap(frames: &[&[u8]], linktype: Option<u8>) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), TsResolution::Nanos).expect("writer");
    for (i, f) in frames.iter().enumerate() {
        w.record_at(Duration::from_millis(i as u64), f)
            .expect("record");
    }
    let mut b = w.into_inner().expect("bytes");
    if let Some(l) = linktype {
        b[20] = l;
    }
    b
}

/// An ARP reply from `mac` (Ethernet, RFC 826).
fn arp_reply(mac: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[192, 0, 2, 1]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[192, 0, 2, 15]);
    f
}

#[test]
fn each_bad_input_ends_with_one_line_naming_the_file_and_status_2() {
    let good = pcap(&[&arp_reply([2, 0, 0, 0, 0, 1])], None);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.pcap", Vec::new(), "empty file"),
        (
            "garbage.pcap",
            b"GIF89a, certainly not a capture".to_vec(),
            "not a pcap",
        ),
        (
            "truncated.pcap",
            good[..good.len() - 7].to_vec(),
            "truncated",
        ),
        ("raw.pcap", pcap(&[&[0x45; 40]], Some(101)), "link type 101"),
        ("engine-only.pcap", good.clone(), "no guest frames"),
    ];
    for (name, bytes, want) in cases {
        let path = tmp(name);
        std::fs::write(&path, &bytes).expect("write");
        let (code, out, err) = replay_cmd(&path, &[]);
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(out.is_empty(), "{name}: {out}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{name}: {err}");
        assert!(
            lines[0].contains(name) && lines[0].contains(want),
            "{name}: {err}"
        );
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

#[test]
fn captures_of_our_engine_replay_without_divergence() {
    for name in [
        "tcp-echo",
        "tcp-half-close",
        "tcp-refused",
        "tcp-reset",
        "udp-gateway-echo",
        "ping-v4",
        "ping-v6",
        "tcp-echo-lossy",
        "inbound-echo",
        "inbound-refused",
        "dhcp-ping",
    ] {
        let trace = capture_of(name);
        let (code, out, err) = replay_cmd(&trace, &["--check"]);
        assert_eq!(code, Some(0), "{name}:\n{out}\n{err}");
        assert!(out.contains(" 0 divergences"), "{name}:\n{out}");
        assert!(out.contains("flow 1"), "{name}: no flow found\n{out}");
    }
}

/// `trace` without the engine's last data segment to the guest: the
/// remote scripted from it never sends those bytes, so the guest's
/// recorded ACK of them acknowledges data the replayed engine never sent.
fn without_last_engine_data(trace: &Path) -> Vec<u8> {
    let bytes = std::fs::read(trace).expect("trace");
    let mut cap = passt_sim::pcap::Capture::new(&bytes).expect("capture");
    let mut recs = Vec::new();
    while let Some(r) = cap.next_record() {
        let r = r.expect("record");
        recs.push((r.ts_nanos, r.data.to_vec()));
    }
    let engine = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55];
    let last = recs
        .iter()
        .rposition(|(_, f)| f[6..12] == engine && f.len() > 60)
        .expect("an engine data segment");
    recs.remove(last);
    let mut w = PcapWriter::new(Vec::new(), TsResolution::Nanos).expect("writer");
    for (t, f) in &recs {
        w.record_at(Duration::from_nanos(*t), f).expect("record");
    }
    w.into_inner().expect("bytes")
}

#[test]
fn check_fails_on_a_divergence_and_json_counts_it() {
    let path = tmp("cut.pcap");
    std::fs::write(&path, without_last_engine_data(&capture_of("tcp-echo"))).expect("write");
    let (code, out, _) = replay_cmd(&path, &["--check", "--report", "json"]);
    assert_eq!(code, Some(1), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(v["divergences"].as_u64().expect("count") > 0, "{out}");
    let f = &v["flows"][0];
    for key in [
        "proto",
        "client",
        "server",
        "trace",
        "replay",
        "divergences",
    ] {
        assert!(!f[key].is_null(), "flows[].{key} missing: {out}");
    }
    for key in ["c2s_bytes", "s2c_bytes", "handshake", "close"] {
        assert!(
            !f["trace"][key].is_null() && !f["replay"][key].is_null(),
            "{key}"
        );
    }
    let words = f["divergences"].to_string();
    assert!(words.contains("had not sent"), "{words}");
    let (code, text, _) = replay_cmd(&path, &[]);
    assert_eq!(code, Some(0), "without --check a divergence is no failure");
    assert!(text.contains("divergence: "), "{text}");
}

#[test]
fn the_same_trace_seed_and_options_give_identical_bytes() {
    let trace = capture_of("tcp-echo-lossy");
    let (a, b) = (tmp("det-a.pcap"), tmp("det-b.pcap"));
    let run = |out: &Path| {
        let (code, report, _) = replay_cmd(
            &trace,
            &[
                "--seed",
                "7",
                "--report",
                "json",
                "--out",
                out.to_str().expect("utf-8"),
            ],
        );
        assert_eq!(code, Some(0));
        report
    };
    let (ra, rb) = (run(&a), run(&b));
    assert_eq!(ra, rb, "reports differ");
    let (pa, pb) = (std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
    assert!(pa.len() > 24, "empty capture");
    assert_eq!(pa, pb, "captures differ");
}

#[test]
fn the_replay_capture_reads_back_with_both_directions() {
    let trace = capture_of("tcp-echo");
    let out = tmp("both.pcap");
    let (code, _, _) = replay_cmd(&trace, &["--out", out.to_str().expect("utf-8")]);
    assert_eq!(code, Some(0));
    let bytes = std::fs::read(&out).expect("out");
    let mut r = pcap_file::pcap::PcapReader::new(&bytes[..]).expect("pcap");
    let mut srcs = std::collections::BTreeSet::new();
    while let Some(p) = r.next_packet() {
        let p = p.expect("record");
        srcs.insert(p.data[6..12].to_vec());
    }
    assert_eq!(srcs.len(), 2, "guest and engine frames");
    // tshark, when installed, must read it too.
    if let Ok(o) = Command::new("tshark").arg("-r").arg(&out).output() {
        assert!(o.status.success(), "tshark: {o:?}");
    } else {
        eprintln!("tshark not installed: checked with pcap-file only");
    }
}

fn tcpdump_corpus() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/tcpdump");
    p.is_dir().then_some(p)
}

#[test]
fn every_tcpdump_capture_replays_to_a_report_or_a_clear_error() {
    let Some(dir) = tcpdump_corpus() else {
        eprintln!(
            "SKIPPED: ../shared/corpus/tcpdump not found beside the workspace \
             (the tcpdump test captures are not part of this checkout)"
        );
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let (mut reports, mut errors) = (0, 0);
    let mut stalled = Vec::new();
    let opts = Options {
        seed: 1,
        sets: vec!["tail=0.5".into(), "hold=0.2".into()],
        ..Options::default()
    };
    for f in &files {
        let bytes = std::fs::read(f).expect("readable");
        match replay::replay(&bytes, &opts) {
            Ok(o) => {
                reports += 1;
                assert!(o.report.to_text().contains("summary"));
                if o.report.summary.stopped == "Stalled" {
                    stalled.push(f.display().to_string());
                }
            }
            Err(ReplayError::Input(e)) => {
                errors += 1;
                let line = e.to_string();
                assert!(
                    !line.is_empty() && !line.contains('\n'),
                    "{}: {line}",
                    f.display()
                );
            }
            Err(ReplayError::Usage(e)) => {
                errors += 1;
                assert!(!e.contains('\n'), "{}: {e}", f.display());
            }
        }
    }
    eprintln!(
        "tcpdump corpus: {} files: {reports} replayed to a report, {errors} clear errors",
        files.len()
    );
    assert!(
        files.len() >= 700,
        "expected the whole corpus, found {}",
        files.len()
    );
    assert!(reports > 0);
    assert!(stalled.is_empty(), "replays stalled: {stalled:?}");
}
