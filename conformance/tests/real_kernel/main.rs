//! The real arm of the `HostIo` conformance scenarios: `RealHost` against
//! the Linux kernel over loopback (127.0.0.1 and ::1 only), in both peek
//! modes. The simulated arm is `sim/tests/host_conformance.rs`.
#![cfg(target_os = "linux")]

mod world;

use passt_conformance as conformance;
use passt_engine::host_io::Family;
use passt_engine::runtime::{PeekMode, RealHost};
use world::RealWorld;

fn world(mode: Option<PeekMode>) -> RealWorld {
    let host = match mode {
        None => RealHost::new(),
        Some(m) => RealHost::with_peek_mode(m),
    }
    .expect("RealHost");
    RealWorld::new(host)
}

fn ipv6_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

fn run(name: &str, mode: Option<PeekMode>) {
    let mut ran = 0;
    for (n, scenario) in conformance::all::<RealWorld>() {
        if n != name {
            continue;
        }
        for family in [Family::V4, Family::V6] {
            if family == Family::V6 && !ipv6_available() {
                eprintln!("skipping {n} over IPv6: ::1 not available");
                continue;
            }
            let mut w = world(mode);
            if let Err(f) = scenario(&mut w, family) {
                panic!("{family:?} ({mode:?}): {f}");
            }
            ran += 1;
        }
    }
    assert!(ran > 0, "no scenario named {name}");
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(stringify!($name), None);
            }
        )*
    };
}

scenarios!(
    connect_then_writable,
    connect_refused,
    listen_accept,
    listen_addr_in_use,
    partial_writes,
    peek_offset_discard,
    fin_after_data,
    close_with_unread_data_resets,
    abort_resets,
    shutdown_write,
    peer_reset_is_reported,
    tcp_info_counts,
    splice_moves_bytes,
    splice_into_full_destination,
    udp_batches,
    udp_port_unreachable,
);

/// The peek scenarios again with the fallback that copies from the head.
#[test]
fn peek_fallback_mode() {
    run("peek_offset_discard", Some(PeekMode::CopyFromHead));
    run("fin_after_data", Some(PeekMode::CopyFromHead));
    run("shutdown_write", Some(PeekMode::CopyFromHead));
}

#[test]
fn every_scenario_is_listed_here() {
    // Keeps this file and `conformance::all` in step.
    assert_eq!(conformance::all::<RealWorld>().len(), 16);
}

/// Restores `ping_group_range` when dropped.
struct PingRangeGuard(Option<String>);

impl Drop for PingRangeGuard {
    fn drop(&mut self) {
        if let Some(orig) = self.0.take() {
            let _ = std::fs::write("/proc/sys/net/ipv4/ping_group_range", orig);
        }
    }
}

#[test]
fn ping_sockets_echo_on_loopback() {
    const PATH: &str = "/proc/sys/net/ipv4/ping_group_range";
    let mut guard = PingRangeGuard(None);
    let mut w = world(None);
    let mut ok = conformance::ping_echo(&mut w, Family::V4, 0x4242).expect("v4");
    if !ok {
        // Root may widen the range for the test; put it back afterwards.
        let orig = std::fs::read_to_string(PATH).expect("read ping_group_range");
        if std::fs::write(PATH, "0 2147483647").is_ok() {
            eprintln!("widened {PATH} from {:?} for the test", orig.trim());
            guard.0 = Some(orig);
            ok = conformance::ping_echo(&mut w, Family::V4, 0x4242).expect("v4 after widening");
        }
    }
    if !ok {
        eprintln!("skipping: ping sockets not permitted and {PATH} not writable");
        return;
    }
    if ipv6_available() {
        assert!(conformance::ping_echo(&mut w, Family::V6, 0x4343).expect("v6"));
    }
    drop(guard);
}
