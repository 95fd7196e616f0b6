//! ICMP / ICMPv6 echo through ping sockets in the simulator (issue #5): the
//! simulated arm of `engine/tests/icmp_echo.rs`. Identifier and sequence
//! number come back as the guest sent them, IPv4 (smoltcp guest and
//! scripted) and IPv6 (scripted), including when the host had to give the
//! ping socket another identifier.

mod udp_support;

use std::collections::BTreeSet;
use std::time::Duration;

use passt_engine::host_io::{HostIo, SockId};
use passt_engine::{Config, Instant};
use passt_sim::guest::{SimGuest, SmolGuest, SmolGuestConfig, Workload, WorkloadSpec};
use passt_sim::link::Link;
use passt_sim::seed::SimRng;
use passt_sim::simulation::{Simulation, StopReason};
use passt_sim::{FaultChain, for_each_seed};
use udp_support::*;

/// smoltcp pings the gateway (host loopback) and an internet host, 20 each,
/// over a link losing 10 % each way. Every reply it gets carries its
/// identifier (0x5100 + workload index), a sequence number it sent, and
/// the data of that request (smoltcp's workload counts anything else as
/// corrupt or ignores it); the engine's counters agree with the links.
#[test]
fn ping_v4_smoltcp_identifier_and_sequence_preserved() {
    for_each_seed(
        "ping_v4_smoltcp_identifier_and_sequence_preserved",
        21,
        |seed| {
            let root = SimRng::from_seed(seed);
            let mut g = SmolGuestConfig::new(root.child("guest").next_u64());
            for dst in [None, Some("203.0.113.7".parse().unwrap())] {
                let mut w = WorkloadSpec::new(Workload::Ping {
                    dst,
                    count: 20,
                    interval: Duration::from_millis(50),
                    size: 56,
                });
                w.linger = Duration::from_secs(3);
                g.workloads.push(w);
            }
            let chain = |label: &str| {
                let mut c = FaultChain::new(root.child(label));
                c.push(passt_sim::fault::BernoulliLoss::new(0.1));
                c
            };
            let mut sim = Simulation::new(
                Config::example(),
                host(seed),
                root.child("engine").next_u64(),
                SimGuest::Smol(Box::new(SmolGuest::new(g, Instant::ZERO))),
                Link::new("up", Default::default(), chain("link-up")),
                Link::new("down", Default::default(), chain("link-down")),
            )
            .map_err(|e| e.to_string())?;
            let stop = sim.run_until(Instant::from_secs(60));
            if stop != StopReason::GuestFinished {
                return Err(format!("{stop:?}"));
            }
            let reports = sim.guest().as_smol().ok_or("guest")?.reports();
            let c = sim.engine().counters();
            let (up, down) = (sim.counters().up, sim.counters().down);
            let icmp = passt_sim::simulation::FrameClass::Icmp;
            let received: u64 = reports.iter().map(|w| w.received + w.duplicates).sum();
            let msg = format!("{reports:?}\n{c:?}\nup {up:?}\ndown {down:?}");
            for w in &reports {
                if w.sent != 20 || w.corrupt != 0 || w.received == 0 {
                    return Err(format!("workload {}: {msg}", w.name));
                }
            }
            // Every request the link delivered went out on a ping socket; every
            // reply came back to the guest's link (nothing answered is lost on
            // the simulated host, which does not drop), and what the guest got
            // is what its link delivered.
            let ok = up.delivered(icmp) == c.echo_requests_sent
                && c.echo_replies_to_guest == c.echo_requests_sent
                && down.sent(icmp) == c.echo_replies_to_guest
                && down.delivered(icmp) == received
                && c.total_drops() == 0
                && sim.engine().icmp().flow_count() == 2;
            if ok { Ok(()) } else { Err(msg) }
        },
    );
}

/// Scripted guest, exact identifiers and sequence numbers, IPv4 and IPv6.
/// The same identifier toward two destinations needs two ping sockets; the
/// second cannot have that identifier on the host (it is taken), so the
/// kernel (and SimHost) picks another, and the engine must put the guest's
/// back into the replies.
#[test]
fn ping_identifier_and_sequence_preserved_v4_and_v6() {
    let script = "\
flow 192.0.2.15:0 > 203.0.113.7:0
0 > icmp echo id 7 seq 1 (56)
* < icmp echo-reply id 7 seq 1 (56)
flow 192.0.2.15:0 > 203.0.113.8:0
+0 > icmp echo id 7 seq 65535 \"second socket\"
* < icmp echo-reply id 7 seq 65535 \"second socket\"
flow 192.0.2.15:0 > 192.0.2.1:0
+0 > icmp echo id 0 seq 0 (0)
* < icmp echo-reply id 0 seq 0 (0)
flow [2001:db8::15]:0 > [2001:db8:5::7]:0
+0 > icmp echo id 9 seq 3 (100)
* < icmp echo-reply id 9 seq 3 (100)
flow [2001:db8::15]:0 > [fe80::1]:0
+0 > icmp echo id 9 seq 4 \"v6 gateway\"
* < icmp echo-reply id 9 seq 4 \"v6 gateway\"
flow [fe80::15]:0 > [fe80::1]:0
+0 > icmp echo id 65535 seq 5 (8)
* < icmp echo-reply id 65535 seq 5 (8)
+0.5 < nothing
";
    let mut sim = script_sim(Config::example(), host(9), script, 9);
    sim.run_until(Instant::from_secs(10));
    script_outcome(&sim).unwrap();
    let c = sim.engine().counters();
    assert_eq!((c.echo_requests_sent, c.echo_replies_to_guest), (6, 6));
    assert_eq!(c.total_drops(), 0, "{c:?}");
    assert_eq!(sim.engine().icmp().flow_count(), 6);
    // The host's ping sockets: one per flow; the identifiers the guest
    // used twice per family (7 for IPv4, 9 for IPv6) were available once.
    let ids: Vec<_> = (0..64u32)
        .filter_map(|i| sim.host().local_addr(SockId(i)).ok())
        .map(|a| (a.is_ipv4(), a.port()))
        .collect();
    assert_eq!(ids.len(), 6, "{ids:?}");
    let distinct: BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 6, "ping socket ids are unique: {ids:?}");
    assert!(
        ids.contains(&(true, 7)) && ids.contains(&(false, 9)),
        "{ids:?}"
    );
}

/// Echo flows close after `icmp_timeout` (60 s) without requests; a later
/// request opens a new ping socket and is answered with the same
/// identifier.
#[test]
fn ping_flow_expires_and_reopens() {
    let script = "\
flow 192.0.2.15:0 > 203.0.113.7:0
0 > icmp echo id 77 seq 1 (8)
* < icmp echo-reply id 77 seq 1 (8)
70 > icmp echo id 77 seq 2 (8)
* < icmp echo-reply id 77 seq 2 (8)
";
    let mut sim = script_sim(Config::example(), host(10), script, 10);
    advance(&mut sim, at(59.9));
    assert_eq!(sim.engine().icmp().flow_count(), 1);
    assert_eq!(open_host_sockets(sim.host()), 1);
    advance(&mut sim, at(60.1));
    assert_eq!(sim.engine().icmp().flow_count(), 0);
    assert_eq!(open_host_sockets(sim.host()), 0);
    sim.run_until(Instant::from_secs(80));
    script_outcome(&sim).unwrap();
    assert_eq!(sim.engine().icmp().flow_count(), 1);
    assert_eq!(sim.engine().counters().echo_replies_to_guest, 2);
}
