//! Writes the seed corpora of the cargo-fuzz targets (docs/fuzzing.md):
//!
//! ```text
//! cargo run -p passt-sim --example fuzz_seeds -- fuzz/corpus [TCPDUMP_DIR]
//! ```
//!
//! From the repository's captures (`corpus/replay`, `corpus/clients`) and
//! tcpdump's test captures (default `../shared/corpus/tcpdump`):
//! - `wire`: every distinct Ethernet frame;
//! - `engine_frames`: each repository capture's guest frames as one
//!   sequence (`passt_sim::frame_seq`), and each tcpdump capture's
//!   Ethernet frames as one;
//! - `framing`: each repository capture's frames as a QEMU stream;
//! - `dhcp`, `dhcpv6`: the UDP payloads to ports 67 and 547;
//! - `replay_pcap`: the capture files themselves (those under 64 KiB);
//! - `fwd_spec`, `cli_args`: the forms docs/cli.md describes.
//!
//! File names are the FNV-1a hash of the content, so reruns add nothing new.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use passt_engine::Instant;
use passt_engine::wire::{Frame, L3, L4, parse_frame};
use passt_sim::frame_seq::{encode, ops_from_trace};
use passt_sim::pcap::{Capture, LINKTYPE_ETHERNET};

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

struct Out {
    root: PathBuf,
    written: BTreeSet<(String, u64)>,
}

impl Out {
    fn put(&mut self, target: &str, bytes: &[u8]) {
        let h = fnv(bytes);
        if !self.written.insert((target.to_string(), h)) {
            return;
        }
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("create corpus directory");
        std::fs::write(dir.join(format!("{h:016x}")), bytes).expect("write seed");
    }
}

fn captures(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        eprintln!("skipping {}: not readable", dir.display());
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    v.sort();
    v
}

/// The Ethernet frames of a capture with their times from the first.
fn frames(bytes: &[u8]) -> Vec<(Instant, Vec<u8>)> {
    let Ok(mut cap) = Capture::new(bytes) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut t0 = None;
    while let Some(Ok(rec)) = cap.next_record() {
        if rec.linktype != LINKTYPE_ETHERNET {
            continue;
        }
        let t0 = *t0.get_or_insert(rec.ts_nanos);
        out.push((
            Instant::from_nanos(rec.ts_nanos.saturating_sub(t0)),
            rec.data.to_vec(),
        ));
    }
    out
}

fn udp_payload_to(frame: &Frame<'_>, port: u16) -> Option<Vec<u8>> {
    let (L3::Ipv4 { l4, .. } | L3::Ipv6 { l4, .. }) = &frame.l3 else {
        return None;
    };
    match l4 {
        L4::Udp { udp, payload } if udp.dst_port == port => Some(payload.to_vec()),
        _ => None,
    }
}

const FWD_SPECS: &[&str] = &[
    "22",
    "22,80,443",
    "1000-1010",
    "8080:80",
    "10000-10010:20000-20010",
    "~22",
    "1-1024,~80",
    "all",
    "none",
    "auto",
    "127.0.0.1/22",
    "::1/8080:80",
    "192.0.2.2%eth0/443",
    "%lo/5000",
    "22\n80\n22",
    "0",
    "65535",
    "70000",
    "5-3",
    "22a",
];

/// Command lines, arguments separated by spaces (NUL bytes in the seeds).
const CLI_LINES: &[&str] = &[
    "-f -s /tmp/passt.socket",
    "--foreground --socket /tmp/s -t 22,80 -u 53",
    "-4 -a 192.0.2.15 -n 24 -g 192.0.2.1",
    "-6 -a 2001:db8::15 -g fe80::1",
    "-m 1500 -D 192.0.2.53 -S example.test",
    "--no-dhcp --no-ndp --no-dhcpv6 --no-ra",
    "-T none -U none --map-gw",
    "--no-map-gw --dns-forward 192.0.2.53",
    "-n 255.255.255.0 -M 02:00:00:00:00:01",
    "--pcap /tmp/x.pcap -P /tmp/pid -d --trace",
    "--mtu 65520 -t all",
    "--version",
    "-h",
];

fn main() {
    let mut args = std::env::args_os().skip(1);
    let root = PathBuf::from(
        args.next()
            .expect("usage: fuzz_seeds OUT_DIR [TCPDUMP_DIR]"),
    );
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tcpdump = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| here.join("../../shared/corpus/tcpdump"));
    let mut out = Out {
        root,
        written: BTreeSet::new(),
    };
    let ours: Vec<PathBuf> = [
        here.join("../corpus/replay"),
        here.join("../corpus/clients"),
    ]
    .iter()
    .flat_map(|d| captures(d))
    .collect();
    let theirs = captures(&tcpdump);
    for (i, path) in ours.iter().chain(&theirs).enumerate() {
        let ours = i < ours.len();
        let bytes = std::fs::read(path).expect("readable capture");
        if bytes.len() <= 64 * 1024 {
            out.put("replay_pcap", &bytes);
        }
        let fs = frames(&bytes);
        for (_, f) in &fs {
            out.put("wire", f);
            if let Ok(p) = parse_frame(f) {
                if let Some(d) = udp_payload_to(&p, 67) {
                    out.put("dhcp", &d);
                }
                if let Some(d) = udp_payload_to(&p, 547) {
                    out.put("dhcpv6", &d);
                }
            }
        }
        if fs.is_empty() {
            continue;
        }
        if ours {
            out.put("engine_frames", &encode(&ops_from_trace(&fs)));
            let mut stream = vec![0x11, 0x22];
            for (_, f) in fs.iter().take(64) {
                stream.extend_from_slice(&(f.len() as u32).to_be_bytes());
                stream.extend_from_slice(f);
            }
            out.put("framing", &stream);
        } else {
            // Foreign captures: their frames as is (not the guest's
            // addresses, so mostly drops, but every parser path).
            let seq: Vec<_> = fs.into_iter().take(200).collect();
            out.put("engine_frames", &encode(&ops_from_trace(&seq)));
        }
    }
    for s in FWD_SPECS {
        out.put("fwd_spec", s.as_bytes());
    }
    for s in CLI_LINES {
        out.put("cli_args", s.replace(' ', "\0").as_bytes());
    }
    let mut counts = std::collections::BTreeMap::new();
    for (t, _) in &out.written {
        *counts.entry(t.as_str()).or_insert(0) += 1;
    }
    for (t, n) in counts {
        println!("{t}: {n} seeds");
    }
}
