//! The engine's fuzz targets in CI (stable toolchain): the same properties
//! as `fuzz/fuzz_targets/*.rs` (`fuzz_checks`), run by proptest with a
//! fixed number of cases over inputs shaped like the targets' seeds, and
//! every input a fuzzer ever crashed on (`fuzz_regressions/TARGET/`)
//! replayed. `handle_frame` itself is `frame_fuzz.rs` (NoHost) and
//! `sim/tests/frame_sequences.rs` (the simulated host).
#![cfg(target_os = "linux")]

mod fuzz_checks;

use std::fs::File;
use std::path::PathBuf;
use std::sync::OnceLock;

use pcap_file::pcap::PcapReader;
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

/// Frames of the real-client captures (`corpus/clients`).
fn client_frames() -> &'static [Vec<u8>] {
    static FRAMES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        let dir = here().join("../corpus/clients");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("corpus/clients")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
            .collect();
        names.sort();
        let mut frames = Vec::new();
        for name in names {
            let mut r = PcapReader::new(File::open(&name).expect("capture")).expect("pcap");
            while let Some(p) = r.next_packet() {
                frames.push(p.expect("record").data.into_owned());
            }
        }
        frames
    })
}

/// The UDP payloads to `port` in the client captures. Read by hand rather
/// than with `parse_frame`: some captures carry offloaded (unfilled) UDP
/// checksums, which our parser rightly rejects.
fn payloads_to(port: u16) -> Vec<Vec<u8>> {
    client_frames()
        .iter()
        .filter_map(|f| {
            let (proto, l4) = match u16::from_be_bytes([*f.get(12)?, *f.get(13)?]) {
                0x0800 => {
                    let ihl = usize::from(f.get(14)? & 0x0f) * 4;
                    (*f.get(23)?, f.get(14 + ihl..)?)
                }
                0x86dd => (*f.get(20)?, f.get(54..)?),
                _ => return None,
            };
            let dst = u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]);
            (proto == 17 && dst == port).then(|| l4.get(8..).map(<[u8]>::to_vec))?
        })
        .collect()
}

fn mutate(mut v: Vec<u8>, flips: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    if !v.is_empty() {
        for &(at, x) in flips {
            let i = at % v.len();
            v[i] ^= x;
        }
    }
    if let Some(c) = cut {
        v.truncate(c % (v.len() + 1));
    }
    v
}

/// A QEMU stream: frames of the given lengths, maybe a bad prefix after
/// them, maybe a torn tail.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<[u8; 2]>(),
        proptest::collection::vec(
            prop_oneof![14usize..100, 100usize..1600, Just(65535usize)],
            0..24,
        ),
        prop_oneof![
            Just(None),
            any::<u32>().prop_map(Some),
            prop_oneof![Just(0u32), Just(13), Just(65536)].prop_map(Some)
        ],
        0usize..40,
        any::<u8>(),
    )
        .prop_map(|(ab, lens, bad, tail, fill)| {
            let mut s = ab.to_vec();
            for (i, len) in lens.into_iter().enumerate() {
                s.extend_from_slice(&(len as u32).to_be_bytes());
                s.extend((0..len).map(|j| fill.wrapping_add((i * 31 + j) as u8)));
            }
            if let Some(b) = bad {
                s.extend_from_slice(&b.to_be_bytes());
            }
            s.extend(std::iter::repeat_n(fill, tail));
            s
        })
}

/// One port-spec token of the grammar docs/cli.md gives, or a stray one.
fn spec_token() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u16>().prop_map(|p| p.to_string()),
        (0u32..70000).prop_map(|p| p.to_string()),
        Just(",".to_string()),
        Just("-".to_string()),
        Just(":".to_string()),
        Just("~".to_string()),
        Just("/".to_string()),
        Just("%".to_string()),
        Just("all".to_string()),
        Just("auto".to_string()),
        Just("none".to_string()),
        Just("127.0.0.1".to_string()),
        Just("::1".to_string()),
        Just("eth0".to_string()),
        Just("\n".to_string()),
        "[ -~]{0,3}",
    ]
}

/// One command-line token: an option name or a value.
fn cli_token() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "-f",
            "-s",
            "-t",
            "-u",
            "-T",
            "-U",
            "-4",
            "-6",
            "-a",
            "-n",
            "-g",
            "-m",
            "-D",
            "-S",
            "-M",
            "-P",
            "-p",
            "-d",
            "-q",
            "--mtu",
            "--no-dhcp",
            "--no-ndp",
            "--no-dhcpv6",
            "--no-ra",
            "--map-gw",
            "--no-map-gw",
            "--dns-forward",
            "--pcap",
            "--trace",
            "--socket",
            "--foreground",
            "--runas",
            "--fqdn",
            "-H",
            "--help",
            "--version",
        ])
        .prop_map(str::to_string),
        prop::sample::select(vec![
            "22",
            "80:8080",
            "all",
            "none",
            "auto",
            "192.0.2.15",
            "2001:db8::15",
            "fe80::1",
            "24",
            "255.255.255.0",
            "65520",
            "576",
            "0",
            "/tmp/x",
            "example.test",
            "02:00:00:00:00:01",
            "~22",
        ])
        .prop_map(str::to_string),
        "[ -~]{0,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn framing_reader_and_writer_agree_with_the_whole_stream(s in stream()) {
        fuzz_checks::framing(&s);
    }

    #[test]
    fn arbitrary_bytes_are_a_stream_like_any_other(s in proptest::collection::vec(any::<u8>(), 0..300)) {
        fuzz_checks::framing(&s);
    }

    #[test]
    fn mutated_client_frames_hold_the_wire_property(
        pick in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..6),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let frames = client_frames();
        let f = mutate(frames[pick.index(frames.len())].clone(), &flips, cut);
        fuzz_checks::wire(&f);
    }

    #[test]
    fn mutated_client_dhcp_requests_hold_the_dhcp_properties(
        pick in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..6),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let v4 = payloads_to(67);
        fuzz_checks::dhcp(&mutate(v4[pick.index(v4.len())].clone(), &flips, cut));
        let v6 = payloads_to(547);
        fuzz_checks::dhcpv6(&mutate(v6[pick.index(v6.len())].clone(), &flips, cut));
    }

    #[test]
    fn port_specs_from_the_grammar_hold_the_spec_properties(
        tokens in proptest::collection::vec(spec_token(), 0..12),
    ) {
        fuzz_checks::fwd_spec(tokens.concat().as_bytes());
    }

    #[test]
    fn command_lines_from_option_tokens_never_panic(
        tokens in proptest::collection::vec(cli_token(), 0..10),
    ) {
        fuzz_checks::cli_args(tokens.join("\0").as_bytes());
    }
}

#[test]
fn the_client_captures_hold_dhcp_requests_of_both_families() {
    assert!(payloads_to(67).len() >= 3);
    assert!(payloads_to(547).len() >= 2);
}
