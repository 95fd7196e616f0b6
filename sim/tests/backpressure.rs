//! Backpressure in the simulated arm (issue #12, hostile-guest section): a
//! guest that sends in bursts loses nothing. The engine's transmit queue is
//! bounded (256 frames in `Config::example()`), so a burst of work bigger
//! than the queue only survives if the driver drains the queue before
//! handing the engine more work (`passt_engine::driver`).
//!
//! The links are ideal (infinitely fast): every frame of a burst reaches
//! the engine at the same instant, as one batch, the way a guest writing
//! 200 KB chunks hands the real loop thousands of frames per read. Each
//! burst runs twice: with a guest that takes every frame at once, and with
//! one that has room for only 64 frames in flight on a 1 ms link, so the
//! driver must stop taking the guest's frames and hold host readiness back
//! until the guest has taken its replies.

mod udp_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use passt_engine::{Config, DropReason, Instant};
use passt_sim::SimHost;
use passt_sim::fault::FaultChain;
use passt_sim::guest::{Script, ScriptGuest, SimGuest};
use passt_sim::link::{Link, LinkConfig};
use passt_sim::seed::SimRng;
use passt_sim::simulation::{FrameClass, Simulation, StopReason};
use udp_support::*;

/// Frames the bounded guest has room for in flight.
const GUEST_RX_FRAMES: usize = 64;

/// A simulation of `script`: over ideal links (`bounded` false), or with a
/// 1 ms engine→guest link and room for [`GUEST_RX_FRAMES`] in flight.
fn burst_sim(host: SimHost, script: &str, seed: u64, bounded: bool) -> Simulation {
    if !bounded {
        return script_sim(Config::example(), host, script, seed);
    }
    let config = Config::example();
    let script = Script::parse(script).unwrap_or_else(|e| panic!("{e}"));
    let guest = ScriptGuest::new(script, config.our_mac, Instant::ZERO);
    let down = Link::new(
        "engine->guest",
        LinkConfig {
            bandwidth_bps: None,
            latency: Duration::from_millis(1),
        },
        FaultChain::new(SimRng::from_seed(seed).child("down")),
    );
    let mut sim = Simulation::new(
        config,
        host,
        seed,
        SimGuest::Script(Box::new(guest)),
        Link::ideal("guest->engine"),
        down,
    )
    .expect("engine configuration");
    sim.limit_guest_rx(GUEST_RX_FRAMES);
    sim
}

/// A scripted guest sends 20,000 ARP requests for the gateway in one burst
/// and gets exactly 20,000 replies, in order.
#[test]
fn a_burst_of_twenty_thousand_arp_requests_gets_twenty_thousand_replies() {
    arp_burst(false);
}

/// The same, to a guest with room for 64 frames in flight: the engine
/// stops taking requests while the replies wait, and loses none.
#[test]
fn a_slow_guest_bursting_arp_requests_is_held_back_and_loses_no_reply() {
    let sim = arp_burst(true);
    assert!(
        sim.driver_stats().guest_frames_refused > 0,
        "{:?}",
        sim.driver_stats()
    );
}

fn arp_burst(bounded: bool) -> Simulation {
    const N: usize = 20_000;
    let mut script = String::from("option timeout 10\n");
    for _ in 0..N {
        script.push_str("0 > arp who-has 192.0.2.1 tell 192.0.2.15\n");
    }
    for _ in 0..N {
        script.push_str("* < arp reply 192.0.2.1 is-at 9a:55:9a:55:9a:55\n");
    }
    script.push_str("+1 < nothing\n");
    let mut sim = burst_sim(host(1), &script, 1, bounded);
    sim.run_until(Instant::from_secs(30));
    script_outcome(&sim).unwrap_or_else(|e| panic!("{}", tail(&e)));
    let c = sim.engine().counters();
    assert_eq!(c.arp_replies, N as u64);
    // Timers are never held back (driver contract): the engine's first
    // router advertisement, made due by the guest's first frame, may find
    // the queue full while the replies wait for the slow guest. Nothing
    // the guest sent goes unanswered.
    let ra_lost = if bounded { 1 } else { 0 };
    assert!(c.drops(DropReason::TxQueueFull) <= ra_lost, "{c:?}");
    assert_eq!(c.total_drops(), c.drops(DropReason::TxQueueFull), "{c:?}");
    let down = &sim.counters().down;
    assert_eq!(down.delivered(FrameClass::Arp), N as u64);
    sim
}

/// 100,000 UDP datagrams from 10,000 source ports to an echo service, all
/// sent in one burst: every one reaches the service and every echo comes
/// back to the guest. The service is on the host's loopback (the guest
/// writes to the gateway), a path of unlimited bandwidth, so the echoes
/// come back as a burst too: 10,000 sockets readable at the same instant.
#[test]
fn a_burst_of_udp_from_ten_thousand_ports_is_echoed_in_full() {
    udp_burst(false);
}

/// The same, to a guest with room for 64 frames in flight: host readiness
/// is held back (the echoes wait in the sockets) and none is lost.
#[test]
fn a_slow_guest_bursting_udp_holds_host_readiness_back_and_loses_no_echo() {
    let sim = udp_burst(true);
    let stats = sim.driver_stats();
    assert!(stats.host_events_held > 0, "{stats:?}");
}

fn udp_burst(bounded: bool) -> Simulation {
    const PORTS: u16 = 10_000;
    const PER_PORT: usize = 10;
    const TOTAL: usize = PORTS as usize * PER_PORT;
    let mut host = host(2);
    let (echo, log) = Recorder::boxed(true);
    host.remote_udp_serve(sa("127.0.0.1:7"), echo).unwrap();
    let mut script = String::new();
    for i in 0..PORTS {
        script.push_str(&format!("flow 192.0.2.15:{} > 192.0.2.1:7\n", 20_000 + i));
        for _ in 0..PER_PORT {
            script.push_str("0 > udp (32)\n");
        }
    }
    let mut sim = burst_sim(host, &script, 2, bounded);
    assert!(
        advance(&mut sim, Instant::ZERO + Duration::from_secs(10)) != StopReason::Stalled,
        "the run stalled"
    );
    script_outcome(&sim).unwrap_or_else(|e| panic!("{}", tail(&e)));

    let seen = entries(&log);
    assert_eq!(seen.len(), TOTAL, "datagrams that reached the service");
    let mut per_port: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    for (_, from, _, _) in &seen {
        *per_port.entry(*from).or_default() += 1;
    }
    assert_eq!(per_port.len(), usize::from(PORTS));
    assert!(per_port.values().all(|&n| n == PER_PORT), "{per_port:?}");

    let c = sim.engine().counters();
    assert_eq!(
        (c.udp_to_host, c.udp_to_guest),
        (TOTAL as u64, TOTAL as u64),
        "{c:?}"
    );
    assert_eq!(c.total_drops(), 0, "{c:?}");
    let down = &sim.counters().down;
    assert_eq!(down.delivered(FrameClass::Udp), TOTAL as u64);
    sim
}

/// A long failure message cut short: what failed (the first lines) and
/// the end of the transcript (a 40,000-line transcript is no help).
fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let head = &lines[..lines.len().min(3)];
    let end = &lines[lines.len().saturating_sub(10).max(head.len())..];
    format!("{}\n...\n{}", head.join("\n"), end.join("\n"))
}
