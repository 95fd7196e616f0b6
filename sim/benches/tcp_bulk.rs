//! Bulk TCP through the engine in the simulator: how much virtual traffic
//! one CPU second moves, each way, over clean and faulty links.
//!
//! Each iteration runs a whole scenario: the smoltcp guest opens a
//! connection through `Engine<SimHost>` and sends (or receives) `BYTES` to
//! (from) a simulated remote. Criterion reports bytes/s of virtual traffic
//! (payload delivered) per wall second. Before measuring, one run per case
//! prints segments/s and the simulator's work per TCP segment (loop
//! steps, link deliveries, guest polls, readiness events, trace events),
//! which shows whether virtual-time pacing makes many empty wake-ups. The
//! cost includes the guest's stack and the socket model, so it is an upper
//! bound on the engine's own cost per segment.
//!
//! The faulty cases, each way: 5 % loss, 2 ms jitter, 1 % duplication and
//! 0.1 % corruption in both directions of the guest link (the mix of the
//! integrity matrix, `sim/tests/tcp_integrity.rs`).
//!
//! "Per CPU second" is this thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`),
//! so a busy machine slows the figures less than wall time would.
//!
//! Run: `cargo bench -p passt-sim --bench tcp_bulk`.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use passt_sim::scenario::Scenario;
use passt_sim::simulation::FrameClass;

const BYTES: u64 = 8 << 20;

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn scenario(workload: &str, service: &str, faults: &str) -> Scenario {
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

[faults]
{faults}
"#
    );
    Scenario::from_toml(&text, workload, None).expect("bench scenario parses")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("tcp_bulk");
    group.throughput(Throughput::Bytes(BYTES));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let lossy = "loss = 0.05\njitter = 0.002\nduplicate = 0.01\ncorrupt = 0.001";
    for (name, workload, service, faults) in [
        ("guest_to_remote", "tcp-send", "tcp-sink", ""),
        ("remote_to_guest", "tcp-recv", "tcp-source", ""),
        (
            "guest_to_remote_5pct_loss_jitter",
            "tcp-send",
            "tcp-sink",
            lossy,
        ),
        (
            "remote_to_guest_5pct_loss_jitter",
            "tcp-recv",
            "tcp-source",
            lossy,
        ),
    ] {
        let sc = scenario(workload, service, faults);
        // One run outside the measurement: check it works and report
        // segments per second and work per segment.
        let start = thread_cpu();
        let r = sc.run(1, false).expect("bench run");
        let cpu = thread_cpu() - start;
        assert!(r.passed(), "{r}");
        let segments = r.sim.up.sent(FrameClass::Tcp) + r.sim.down.sent(FrameClass::Tcp);
        let per = |n: u64| n as f64 / segments as f64;
        println!(
            "{name}: {segments} TCP segments in {:.3} CPU s: {:.0} segments/s and {:.1} MiB/s of virtual traffic per CPU second; \
             {:.3} s virtual; per segment: {:.2} steps, {:.2} deliveries, {:.2} guest polls, \
             {:.2} host events, {:.2} engine timers, {:.2} trace events; retransmitted {} up, {} down",
            cpu.as_secs_f64(),
            segments as f64 / cpu.as_secs_f64(),
            (BYTES as f64 / (1 << 20) as f64) / cpu.as_secs_f64(),
            r.virtual_end.as_nanos() as f64 / 1e9,
            per(r.sim.steps),
            per(r.sim.deliveries),
            per(r.sim.guest_polls),
            per(r.sim.host_events),
            per(r.sim.engine_timers),
            per(r.trace_events),
            r.sim.tcp_retransmits_up,
            r.sim.tcp_retransmits_down,
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
