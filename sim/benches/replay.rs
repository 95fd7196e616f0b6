//! `passt-sim replay` on a bulk capture: how fast a capture replays
//! through the engine in virtual time.
//!
//! The capture is made in the setup, by the simulator itself: the smoltcp
//! guest downloads `BYTES` from a simulated remote (`tcp-recv` from a
//! `tcp-source`) with the capture on, which is what
//! `passt-sim run SCENARIO --pcap FILE` writes. A few MiB of TCP make a
//! capture of several MB, too big to commit under corpus/.
//!
//! Before measuring, one replay prints the events per second and the ratio
//! of the trace's duration to wall time (the figures `passt-sim replay`
//! prints on stderr). Criterion then reports bytes of captured traffic
//! replayed per wall second.
//!
//! Run: `cargo bench -p passt-sim --bench replay`.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use passt_sim::replay::{Options, replay};
use passt_sim::scenario::Scenario;

/// Payload the guest downloads in the captured session.
const BYTES: u64 = 4 << 20;

/// The bulk capture: the guest side of a `BYTES` download, as a pcap.
fn bulk_capture() -> Vec<u8> {
    let text = format!(
        r#"
description = "bench: download {BYTES} bytes, captured for replay"
duration = 600

[guest]
kind = "smoltcp"

[[guest.workload]]
type = "tcp-recv"
dst = "203.0.113.9:9"
bytes = {BYTES}
timeout = 590

[[remote]]
service = "tcp-source"
addr = "203.0.113.9:9"
bytes = {BYTES}

[link]
latency = 0.0002
"#
    );
    let sc = Scenario::from_toml(&text, "replay-bench", None).expect("bench scenario parses");
    let r = sc.run(1, true).expect("capture run");
    assert!(r.passed(), "{r}");
    r.pcap.expect("capture requested")
}

fn bench(c: &mut Criterion) {
    let pcap = bulk_capture();
    let opts = Options {
        seed: 1,
        ..Options::default()
    };
    // One replay outside the measurement: check it reproduces the trace
    // and print the figures `passt-sim replay` prints.
    let started = Instant::now();
    let out = replay(&pcap, &opts).expect("the bulk capture replays");
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    let r = &out.report;
    assert_eq!(r.divergences, 0, "{}", r.to_text());
    println!(
        "replay bulk {} MiB: {} frames ({} bytes of capture), {} events in {wall:.3} s wall: \
         {:.0} events/s, trace {:.3} s / wall = {:.1}x",
        BYTES >> 20,
        r.summary.trace_frames,
        pcap.len(),
        out.events,
        out.events as f64 / wall,
        r.summary.trace_seconds,
        r.summary.trace_seconds / wall
    );

    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Bytes(pcap.len() as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("bulk_download", |b| {
        b.iter(|| {
            let out = replay(&pcap, &opts).expect("replay");
            assert_eq!(out.report.divergences, 0);
            out.events
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
