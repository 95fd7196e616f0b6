//! Bulk TCP through the engine in the simulator: how much virtual traffic
//! one CPU second moves, each way.
//!
//! Each iteration runs a whole scenario: the smoltcp guest opens a
//! connection through `Engine<SimHost>` and sends (or receives) `BYTES` to
//! (from) a simulated remote over clean links. Criterion reports bytes/s of
//! virtual traffic per wall second; the segments/s figure is printed once
//! per direction. The cost includes the guest's stack and the socket model,
//! so it is an upper bound on the engine's own cost per segment.
//!
//! Run: `cargo bench -p passt-sim --bench tcp_bulk`.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use passt_sim::scenario::Scenario;
use passt_sim::simulation::FrameClass;

const BYTES: u64 = 8 << 20;

fn scenario(workload: &str, service: &str) -> Scenario {
    let text = format!(
        r#"
description = "bench: {workload} {BYTES} bytes"
duration = 600

[guest]
kind = "smoltcp"

[[guest.workload]]
type = "{workload}"
dst = "203.0.113.9:9"
bytes = {BYTES}
timeout = 590

[[remote]]
service = "{service}"
addr = "203.0.113.9:9"
bytes = {BYTES}

[link]
latency = 0.0002
"#
    );
    Scenario::from_toml(&text, workload, None).expect("bench scenario parses")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("tcp_bulk");
    group.throughput(Throughput::Bytes(BYTES));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (name, workload, service) in [
        ("guest_to_remote", "tcp-send", "tcp-sink"),
        ("remote_to_guest", "tcp-recv", "tcp-source"),
    ] {
        let sc = scenario(workload, service);
        // One run outside the measurement: check it works and report
        // segments per second.
        let start = Instant::now();
        let r = sc.run(1, false).expect("bench run");
        let wall = start.elapsed();
        assert!(r.passed(), "{r}");
        let segments = r.sim.up.sent(FrameClass::Tcp) + r.sim.down.sent(FrameClass::Tcp);
        println!(
            "{name}: {segments} TCP segments in {:.3} s wall: {:.0} segments/s, {:.1} MiB/s of virtual traffic",
            wall.as_secs_f64(),
            segments as f64 / wall.as_secs_f64(),
            (BYTES as f64 / (1 << 20) as f64) / wall.as_secs_f64()
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                let r = sc.run(1, false).expect("bench run");
                assert!(r.passed());
                r.trace_events
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
