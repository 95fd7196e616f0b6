//! 10,000 UDP datagrams through the engine under loss, for several seeds,
//! with every datagram accounted for at every stage (issue #5): the
//! simulated arm of `udp_ten_thousand_datagrams_add_up` in
//! `engine/tests/udp_real.rs`.
//!
//! Stages, each checked on its own:
//!
//! ```text
//! guest workloads sent  == frames the guest put on its link (class udp)
//! link guest->engine    : sent == delivered + lost (the link's own counters)
//! engine (in)           : delivered == udp_to_host + engine drops (by reason)
//! simulated host        : udp_to_host == echoed by the services + host drops
//!                         echoed == udp_to_guest + engine drops toward the guest + host drops
//! link engine->guest    : sent == delivered + lost
//! guest                 : delivered == distinct replies + duplicates
//! ```

mod udp_support;

use std::time::Duration;

use passt_engine::{Config, DropReason, Instant};
use passt_sim::fault::{BernoulliLoss, Latency};
use passt_sim::guest::{SimGuest, SmolGuest, SmolGuestConfig, Workload, WorkloadSpec};
use passt_sim::host::Reach;
use passt_sim::link::{Link, LinkConfig};
use passt_sim::seed::SimRng;
use passt_sim::simulation::{FrameClass, Simulation, StopReason};
use passt_sim::{DropCause, FaultChain, for_each_seed};
use udp_support::*;

/// Datagrams in all.
const TOTAL: u32 = 10_000;
/// The workloads: `(destination, echo service on the host side (None: a
/// blackholed address, where the simulated host drops and counts every
/// datagram), payload size)`. Two echo services in the simulated internet,
/// two on the host loopback (reached through the gateway); the last one
/// echoes datagrams too big for the engine's MTU toward the guest, which
/// the engine drops and counts as `too_big`.
const SERVICES: [(&str, Option<&str>, usize); 5] = [
    ("203.0.113.7:7", Some("203.0.113.7:7"), 100),
    ("203.0.113.8:7", Some("203.0.113.8:7"), 100),
    ("192.0.2.1:7777", Some("127.0.0.1:7777"), 100),
    ("203.0.113.66:7", None, 100),
    ("192.0.2.1:7778", Some("127.0.0.1:7778"), 1200),
];
/// The engine's MTU: below the last workload's echoes (1228-byte packets).
const ENGINE_MTU: u16 = 1100;

fn lossy_chain(rng: SimRng, loss: f64) -> FaultChain {
    let mut chain = FaultChain::new(rng);
    chain.push(BernoulliLoss::new(loss));
    // Up to 1 ms of jitter: datagrams overtake each other.
    chain.push(Latency::uniform(Duration::ZERO, Duration::from_millis(1)));
    chain
}

fn ten_thousand(seed: u64) -> Result<(), String> {
    let root = SimRng::from_seed(seed);
    let mut host = host(seed);
    let mut logs = Vec::new();
    for (dst, service, _) in SERVICES {
        match service {
            Some(service) => {
                let (echo, log) = Recorder::boxed(true);
                host.remote_udp_serve(sa(service), echo)
                    .map_err(|e| e.to_string())?;
                logs.push(log);
            }
            None => host.set_reach(sa(dst).ip(), Reach::Blackhole),
        }
    }
    let mut g = SmolGuestConfig::new(root.child("guest").next_u64());
    // A static address: the accounting is about UDP, not DHCP retries.
    g.dhcp = false;
    let mut c = Config::example();
    c.mtu = ENGINE_MTU;
    let v4 = c.ipv4.as_ref().ok_or("no v4")?;
    g.static_v4 = Some((v4.addr, v4.prefix_len, v4.gateway));
    let per = TOTAL / SERVICES.len() as u32;
    for (dst, _, size) in SERVICES {
        let mut w = WorkloadSpec::new(Workload::UdpEcho {
            dst: dst.parse().map_err(|_| "dst")?,
            count: per,
            interval: Duration::from_millis(2),
            size,
        });
        w.linger = Duration::from_secs(3);
        g.workloads.push(w);
    }
    let link = LinkConfig {
        bandwidth_bps: None,
        latency: Duration::from_micros(200),
    };
    let mut sim = Simulation::new(
        c,
        host,
        root.child("engine").next_u64(),
        SimGuest::Smol(Box::new(SmolGuest::new(g, Instant::ZERO))),
        Link::new(
            "guest->engine",
            link,
            lossy_chain(root.child("link-up"), 0.05),
        ),
        Link::new(
            "engine->guest",
            link,
            lossy_chain(root.child("link-down"), 0.05),
        ),
    )
    .map_err(|e| e.to_string())?;
    let stop = sim.run_until(Instant::from_secs(60));
    if stop != StopReason::GuestFinished {
        return Err(format!("stopped: {stop:?} at {}", sim.now()));
    }
    // Let anything still in flight land (nothing should be).
    let end = sim.now() + Duration::from_secs(5);
    advance(&mut sim, end);

    let reports = sim.guest().as_smol().ok_or("guest")?.reports();
    let e = sim.engine().counters().clone();
    let hs = sim.host().stats();
    let (up, down) = (sim.counters().up, sim.counters().down);
    let (lu, ld) = (
        *sim.link_to_engine().counters(),
        *sim.link_to_guest().counters(),
    );
    let udp = FrameClass::Udp;
    let sent: u64 = reports.iter().map(|w| w.sent).sum();
    let received: u64 = reports.iter().map(|w| w.received).sum();
    let dups: u64 = reports.iter().map(|w| w.duplicates).sum();
    let corrupt: u64 = reports.iter().map(|w| w.corrupt).sum();
    let echoed: u64 = logs.iter().map(|l| entries(l).len() as u64).sum();
    let up_lost = up.sent(udp) - up.delivered(udp);
    let down_lost = down.sent(udp) - down.delivered(udp);
    let engine_down_drops = e.drops(DropReason::TxQueueFull) + e.drops(DropReason::TooBig);
    let engine_up_drops = e.total_drops() - engine_down_drops;
    let summary = format!(
        "guest sent {sent} received {received} dup {dups} corrupt {corrupt}; \
         up link udp sent {} delivered {} (link lost {} of all classes); \
         engine udp_to_host {} udp_to_guest {} drops {:?}; \
         host echoed {echoed} udp_dropped {}; \
         down link udp sent {} delivered {} (link lost {})",
        up.sent(udp),
        up.delivered(udp),
        lu.dropped(DropCause::Loss),
        e.udp_to_host,
        e.udp_to_guest,
        e.nonzero_drops().collect::<Vec<_>>(),
        hs.udp_dropped,
        down.sent(udp),
        down.delivered(udp),
        ld.dropped(DropCause::Loss),
    );
    let check = |ok: bool, what: &str| -> Result<(), String> {
        if ok {
            Ok(())
        } else {
            Err(format!("{what}\n{summary}"))
        }
    };
    eprintln!("seed {seed}: {summary}");
    check(
        reports.iter().all(|w| w.succeeded() || w.error.is_none()),
        "a workload failed",
    )?;
    check(sent == u64::from(TOTAL), "the guest sent every datagram")?;
    // Guest: nothing lost inside smoltcp.
    check(up.sent(udp) == sent, "guest frames = datagrams sent")?;
    // Links: their counters balance, nothing held or duplicated, and the
    // per-class losses add up to the link's own loss counter.
    for (name, l, counts) in [("up", lu, up), ("down", ld, down)] {
        check(l.is_balanced() && l.held_now() == 0, name)?;
        check(l.duplicated == 0, name)?;
        let per_class: u64 = FrameClass::ALL
            .iter()
            .map(|c| counts.sent(*c) - counts.delivered(*c))
            .sum();
        check(
            per_class == l.dropped_total() && l.dropped_total() == l.dropped(DropCause::Loss),
            &format!(
                "{name}: per-class losses {per_class} vs link {}",
                l.dropped_total()
            ),
        )?;
    }
    check(
        up_lost > 0 && down_lost > 0,
        "5 % loss each way lost something",
    )?;
    // Engine, guest side: every delivered datagram went to a host socket
    // or is a counted drop.
    check(
        up.delivered(udp) == e.udp_to_host + engine_up_drops,
        "engine in: delivered = to host + drops",
    )?;
    // Host: what left the engine reached an echo service, or the host
    // counted it dropped; echoes reached the engine's sockets and went to
    // the guest, or were counted (host receive buffer, engine drops).
    check(echoed <= e.udp_to_host, "echoed <= sent to host")?;
    check(
        e.udp_to_host == e.udp_to_guest + engine_down_drops + hs.udp_dropped,
        "host: to host = to guest + engine drops toward the guest + host drops",
    )?;
    check(
        echoed + hs.udp_dropped >= e.udp_to_host,
        "every datagram to the host echoed or counted",
    )?;
    // Engine -> guest link and the guest.
    check(
        down.sent(udp) == e.udp_to_guest,
        "engine frames = udp_to_guest",
    )?;
    check(
        down.delivered(udp) == received + dups,
        "guest got what the link delivered",
    )?;
    check(corrupt == 0, "no corrupt payloads")?;
    // The blackhole and the too-big echoes: nothing came back, and both
    // kinds of drop happened and were counted.
    check(
        reports[3].received == 0 && reports[4].received == 0,
        "no replies from the blackhole or through the MTU",
    )?;
    check(hs.udp_dropped > 0, "the host counted blackholed datagrams")?;
    check(
        e.drops(DropReason::TooBig) == entries(&logs[3]).len() as u64 && engine_down_drops > 0,
        "every too-big echo counted by the engine",
    )?;
    // End to end.
    check(
        sent == received
            + dups
            + up_lost
            + engine_up_drops
            + hs.udp_dropped
            + engine_down_drops
            + down_lost,
        "sent = received + every counted loss",
    )?;
    check(
        e.flows_opened == SERVICES.len() as u64,
        "one flow per service",
    )?;
    Ok(())
}

#[test]
fn udp_ten_thousand_datagrams_under_loss_add_up() {
    for default_seed in [1, 2, 3] {
        for_each_seed(
            "udp_ten_thousand_datagrams_under_loss_add_up",
            default_seed,
            ten_thousand,
        );
    }
}
