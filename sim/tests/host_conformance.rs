//! The simulated arm of the `HostIo` conformance scenarios: every scenario
//! of `passt_conformance` (the same functions that pass against the Linux
//! kernel in `conformance/tests/real_kernel`) run against
//! `SimHost` through `SimWorld`, in both address families, over several
//! seeds.

use passt_conformance::{self as conformance, World};
use passt_engine::host_io::Family;
use passt_sim::{SimHost, SimWorld, for_each_seed};

fn run(name: &str) {
    let mut ran = 0;
    for_each_seed(name, 0x5eed_0001, |seed| {
        for (n, scenario) in conformance::all::<SimWorld>() {
            if n != name {
                continue;
            }
            for family in [Family::V4, Family::V6] {
                let mut w = SimWorld::new(SimHost::with_seed(seed));
                scenario(&mut w, family).map_err(|f| format!("{family:?}: {f}"))?;
                ran += 1;
            }
        }
        Ok(())
    });
    assert!(ran > 0, "no scenario named {name}");
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(stringify!($name));
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

#[test]
fn every_scenario_is_listed_here() {
    assert_eq!(conformance::all::<SimWorld>().len(), 16);
}

#[test]
fn ping_echo() {
    for family in [Family::V4, Family::V6] {
        let mut w = SimWorld::new(SimHost::with_seed(7));
        let ok = conformance::ping_echo(&mut w, family, 0x4242).expect("ping_echo");
        assert!(ok, "ping sockets are allowed by default in the simulator");
    }
}

/// With ping sockets disallowed, the scenario reports "skipped", as the
/// real arm does when `ping_group_range` excludes us.
#[test]
fn ping_echo_denied_is_skipped() {
    let cfg = passt_sim::SimHostConfig {
        ping_allowed: false,
        ..Default::default()
    };
    let mut w = SimWorld::new(SimHost::new(cfg, passt_sim::SimRng::from_seed(1)));
    assert_eq!(conformance::ping_echo(&mut w, Family::V4, 1), Ok(false));
}

/// All scenarios back to back in one world: nothing leaks between them.
#[test]
fn all_scenarios_in_one_world() {
    for family in [Family::V4, Family::V6] {
        let mut w = SimWorld::new(SimHost::with_seed(99));
        for (n, scenario) in conformance::all::<SimWorld>() {
            if let Err(f) = scenario(&mut w, family) {
                panic!("{n} {family:?}: {f}");
            }
        }
        // Let orphans finish their FIN exchange.
        for _ in 0..10 {
            w.settle();
        }
        let host = w.into_host();
        assert_eq!(
            passt_engine::HostIo::local_addr(&host, passt_engine::SockId(0)),
            Err(passt_engine::HostError::BadSocket),
            "every host socket was closed"
        );
    }
}

#[allow(dead_code)]
fn assert_world<W: World>() {}
