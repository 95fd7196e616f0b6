//! UDP translation in the simulator (issue #5): the simulated arm of
//! `engine/tests/udp_real.rs` and `udp_mapping_table.rs`.
//!
//! Request/response both ways (outbound to the internet and to the gateway,
//! which is the host's loopback; inbound through forwarded ports), flow
//! expiry and reuse on virtual time, ICMP port unreachable relayed with the
//! exact quote for IPv4 and IPv6, and rows of the mapping table end to end
//! (host loopback, `--map-guest-addr`, `--dns-forward` to the SimHost DNS
//! responder, `--no-map-gw`).

mod udp_support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use passt_engine::{Config, Instant};
use passt_sim::guest::{SimGuest, SmolGuest, SmolGuestConfig, Workload, WorkloadSpec};
use passt_sim::host::dns::{self, DnsResponder};
use passt_sim::link::Link;
use passt_sim::seed::SimRng;
use passt_sim::simulation::{Simulation, StopReason};
use udp_support::*;

/// smoltcp guest (DHCP) echoing 5 datagrams to the internet and 5 to the
/// gateway: the replies come from exactly the endpoint written to
/// (smoltcp counts anything else as corrupt), the guest's source ports are
/// kept on the host, and the gateway reaches the host's 127.0.0.1.
#[test]
fn udp_outbound_echo_to_the_internet_and_to_the_gateway() {
    let seed = 5;
    let mut host = host(seed);
    let (internet, internet_log) = Recorder::boxed(true);
    host.remote_udp_serve(sa("203.0.113.7:7"), internet)
        .unwrap();
    let (lo, lo_log) = Recorder::boxed(true);
    host.remote_udp_serve(sa("127.0.0.1:7777"), lo).unwrap();
    let mut g = SmolGuestConfig::new(SimRng::from_seed(seed).child("guest").next_u64());
    for dst in ["203.0.113.7:7", "192.0.2.1:7777"] {
        g.workloads.push(WorkloadSpec::new(Workload::UdpEcho {
            dst: dst.parse().unwrap(),
            count: 5,
            interval: Duration::from_millis(100),
            size: 64,
        }));
    }
    let mut sim = Simulation::new(
        Config::example(),
        host,
        seed,
        SimGuest::Smol(Box::new(SmolGuest::new(g, Instant::ZERO))),
        Link::ideal("up"),
        Link::ideal("down"),
    )
    .unwrap();
    assert_eq!(sim.run_until(at(30.0)), StopReason::GuestFinished);
    let reports = sim.guest().as_smol().unwrap().reports();
    for w in &reports {
        assert!(w.succeeded(), "{w:?}");
        assert_eq!((w.sent, w.received, w.corrupt, w.duplicates), (5, 5, 0, 0));
    }
    // smoltcp binds 41000 + workload index; the host keeps those ports.
    let seen = entries(&internet_log);
    assert_eq!(seen.len(), 5);
    for (_, from, to, _) in &seen {
        assert_eq!(*from, SocketAddr::new(IpAddr::V4(HOST4), 41000));
        assert_eq!(*to, sa("203.0.113.7:7"));
    }
    let seen = entries(&lo_log);
    assert_eq!(seen.len(), 5);
    for (_, from, to, _) in &seen {
        assert_eq!(*from, sa("127.0.0.1:41001"), "gateway is the host loopback");
        assert_eq!(*to, sa("127.0.0.1:7777"));
    }
    let c = sim.engine().counters();
    assert_eq!((c.udp_to_host, c.udp_to_guest, c.flows_opened), (10, 10, 2));
    assert_eq!(c.total_drops(), 0, "{c:?}");
    let flows: Vec<_> = sim.engine().udp().flows().collect();
    assert_eq!(flows.len(), 2);
    assert!(flows.iter().all(|f| f.bidirectional && !f.inbound));
    assert_eq!(
        flows[1].host_peer,
        sa("127.0.0.1:7777"),
        "mapped destination"
    );
    assert_eq!(flows[1].guest_peer, sa("192.0.2.1:7777"));
}

/// Scripted guest, exact endpoints: IPv4 to the internet and the gateway,
/// IPv6 from the global and the link-local address to the IPv6 gateway
/// (host `::1`). Every reply must come from the address and port the guest
/// wrote to, to the guest's own address and port (the 2023 passt bug
/// answered a global source from a link-local address).
#[test]
fn udp_outbound_replies_come_from_the_address_written_to() {
    let mut host = host(1);
    let (a, log4) = Recorder::boxed(true);
    host.remote_udp_serve(sa("203.0.113.7:7"), a).unwrap();
    let (b, lo4) = Recorder::boxed(true);
    host.remote_udp_serve(sa("127.0.0.1:7777"), b).unwrap();
    let (c, lo6) = Recorder::boxed(true);
    host.remote_udp_serve(sa("[::1]:7777"), c).unwrap();
    let script = "\
flow 192.0.2.15:40000 > 203.0.113.7:7
0 > udp \"internet\"
* < udp \"internet\"
+0 > udp (0)
* < udp (0)
flow 192.0.2.15:40001 > 192.0.2.1:7777
+0 > udp \"gateway\"
* < udp \"gateway\"
flow [2001:db8::15]:40002 > [fe80::1]:7777
+0 > udp \"v6 global\"
* < udp \"v6 global\"
flow [fe80::15]:40003 > [fe80::1]:7777
+0 > udp \"v6 link-local\"
* < udp \"v6 link-local\"
+1 < nothing
";
    let mut sim = script_sim(Config::example(), host, script, 1);
    sim.run_until(at(20.0));
    script_outcome(&sim).unwrap();
    let from = |log: &Log| -> Vec<SocketAddr> { entries(log).iter().map(|e| e.1).collect() };
    assert_eq!(
        from(&log4),
        vec![
            SocketAddr::new(IpAddr::V4(HOST4), 40000),
            SocketAddr::new(IpAddr::V4(HOST4), 40000)
        ]
    );
    assert_eq!(entries(&log4)[1].3, b"", "zero-length datagram");
    assert_eq!(from(&lo4), vec![sa("127.0.0.1:40001")]);
    assert_eq!(from(&lo6), vec![sa("[::1]:40002"), sa("[::1]:40003")]);
    let c = sim.engine().counters();
    assert_eq!((c.udp_to_host, c.udp_to_guest, c.flows_opened), (5, 5, 4));
    assert_eq!(c.total_drops(), 0, "{c:?}");
}

/// Remote peers send to forwarded host ports (`Engine::udp_listen`); the
/// guest sees each from the mapped source, answers that tuple, and the
/// peer hears the answer from the forwarded port. Peers: an internet host,
/// the host's loopback (appears as the gateway), `::1` (appears as
/// `fe80::1`), and the host's own address with `--map-guest-addr`.
#[test]
fn udp_inbound_through_forwarded_ports() {
    let mut config = Config::example();
    config.mapping.guest_addr_v4 = Some("192.0.2.2".parse().unwrap());
    config.mapping.host_addr_v4 = Some(HOST4);
    let script = "\
flow 192.0.2.15:7000 > 203.0.113.9:5555
0 > arp who-has 192.0.2.1 tell 192.0.2.15
+0 < arp reply 192.0.2.1 is-at 9a:55:9a:55:9a:55
* < udp \"from the internet\"
+0 > udp \"reply one\"
flow 192.0.2.15:7000 > 192.0.2.1:5556
* < udp \"from loopback\"
+0 > udp \"reply two\"
flow [2001:db8::15]:7000 > [fe80::1]:5557
* < udp \"from v6 loopback\"
+0 > udp \"reply three\"
flow 192.0.2.15:7000 > 192.0.2.2:5558
* < udp \"from the host itself\"
+0 > udp \"reply four\"
flow 192.0.2.15:7000 > 203.0.113.9:5555
* < udp \"again\"
+0.5 < nothing
";
    let mut sim = script_sim(config, host(2), script, 2);
    sim.engine_mut()
        .udp_listen(sa("0.0.0.0:8053"), 7000)
        .expect("listen v4");
    sim.engine_mut()
        .udp_listen(sa("[::]:8053"), 7000)
        .expect("listen v6");
    let peers = [
        ("203.0.113.9:5555", "198.51.100.1:8053", "from the internet"),
        ("127.0.0.1:5556", "127.0.0.1:8053", "from loopback"),
        ("[::1]:5557", "[::1]:8053", "from v6 loopback"),
        (
            "198.51.100.1:5558",
            "198.51.100.1:8053",
            "from the host itself",
        ),
    ];
    let mut socks = Vec::new();
    let mut t = 0.1;
    for (peer, fwd, msg) in peers {
        advance(&mut sim, at(t));
        let s = sim.host_mut().remote_udp_bind(sa(peer)).unwrap();
        sim.host_mut()
            .remote_udp_send(s, msg.as_bytes(), sa(fwd))
            .unwrap();
        socks.push((s, fwd));
        t += 0.5;
    }
    advance(&mut sim, at(t));
    // The guest's answers reached each peer from the forwarded port.
    let replies = ["reply one", "reply two", "reply three", "reply four"];
    for ((s, fwd), want) in socks.iter().zip(replies) {
        let mut buf = [0u8; 64];
        let (n, from) = sim.host_mut().remote_udp_recv(*s, &mut buf).unwrap();
        assert_eq!(&buf[..n], want.as_bytes());
        assert_eq!(from, sa(fwd), "reply leaves through the forwarded port");
    }
    // A second datagram from the first peer joins its flow.
    let (s0, fwd0) = socks[0];
    sim.host_mut()
        .remote_udp_send(s0, b"again", sa(fwd0))
        .unwrap();
    sim.run_until(at(t + 5.0));
    script_outcome(&sim).unwrap();
    let flows: Vec<_> = sim.engine().udp().flows().collect();
    assert_eq!(flows.len(), 4, "{flows:?}");
    assert!(flows.iter().all(|f| f.inbound && f.bidirectional));
    let c = sim.engine().counters();
    assert_eq!((c.udp_to_host, c.udp_to_guest, c.flows_opened), (4, 5, 4));
    assert_eq!(c.total_drops(), 0, "{c:?}");
}

/// Expiry on virtual time with the defaults: 30 s for a flow that only
/// carried traffic one way, 120 s once both sides spoke. An expired flow's
/// host socket is closed; the next datagram opens a new flow (on the same
/// preserved source port).
#[test]
fn udp_flow_expiry_and_reuse_in_virtual_time() {
    let mut host = host(3);
    let (sink, sink_log) = Recorder::boxed(false);
    host.remote_udp_serve(sa("203.0.113.20:9"), sink).unwrap();
    let (echo, _) = Recorder::boxed(true);
    host.remote_udp_serve(sa("203.0.113.7:7"), echo).unwrap();
    let script = "\
flow 192.0.2.15:40000 > 203.0.113.20:9
0 > udp \"one way\"
flow 192.0.2.15:40001 > 203.0.113.7:7
0 > udp \"both ways\"
* < udp \"both ways\"
flow 192.0.2.15:40000 > 203.0.113.20:9
45 > udp \"one way again\"
flow 192.0.2.15:40001 > 203.0.113.7:7
45 > udp \"late\"
* < udp \"late\"
200 > udp \"after expiry\"
* < udp \"after expiry\"
";
    let mut sim = script_sim(Config::example(), host, script, 3);
    let flows = |sim: &Simulation| sim.engine().udp().flow_count();
    let counts = |sim: &Simulation| {
        let c = sim.engine().counters();
        (c.flows_opened, c.flows_closed)
    };
    advance(&mut sim, at(29.9));
    assert_eq!(flows(&sim), 2);
    assert_eq!(open_host_sockets(sim.host()), 2);
    // The one-way flow (opened at 0.0001 s: link latency) goes at 30.0001 s.
    advance(&mut sim, at(30.1));
    assert_eq!(flows(&sim), 1);
    assert_eq!(counts(&sim), (2, 1));
    assert_eq!(open_host_sockets(sim.host()), 1, "expired flow's socket");
    assert!(sim.engine().udp().flows().all(|f| f.bidirectional));
    // 45 s: the echo flow's datagram refreshes it; the sink gets a new flow.
    advance(&mut sim, at(46.0));
    assert_eq!(flows(&sim), 2);
    assert_eq!(counts(&sim), (3, 1));
    let seen = entries(&sink_log);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].1, seen[1].1, "same preserved source port");
    assert_eq!(seen[1].1.port(), 40000);
    // The new one-way flow expires 30 s after 45 s.
    advance(&mut sim, at(75.1));
    assert_eq!((flows(&sim), counts(&sim)), (1, (3, 2)));
    // The bidirectional one lives 120 s after its last datagram: the echo
    // of "late", back at about 45.02 s (10 ms each way to 203.0.113.7).
    advance(&mut sim, at(164.99));
    assert_eq!(flows(&sim), 1);
    advance(&mut sim, at(165.1));
    assert_eq!(flows(&sim), 0);
    assert_eq!(counts(&sim), (3, 3));
    assert_eq!(open_host_sockets(sim.host()), 0);
    assert_eq!(sim.engine().udp().poll_timeout(), None);
    // 200 s: a new flow, and the echo comes back through it.
    sim.run_until(at(230.0));
    script_outcome(&sim).unwrap();
    assert_eq!((flows(&sim), counts(&sim)), (1, (4, 3)));
    assert_eq!(sim.engine().counters().total_drops(), 0);
}

/// A datagram to a port nobody listens on: the simulated destination (or
/// the host's loopback, through the gateway) answers ICMP port
/// unreachable, SimHost queues it on the flow's socket, and the engine
/// sends the guest exactly one ICMP/ICMPv6 destination unreachable (port)
/// from the address the guest wrote to, quoting the guest's datagram
/// header. Compared byte for byte with frames built independently here.
#[test]
fn udp_port_unreachable_relayed_with_the_exact_quote() {
    let cases = [
        ("v4 internet", "192.0.2.15:41000", "203.0.113.7:4444"),
        ("v4 gateway", "192.0.2.15:41001", "192.0.2.1:9999"),
        (
            "v6 internet",
            "[2001:db8::15]:41002",
            "[2001:db8:5::7]:4444",
        ),
        ("v6 gateway", "[2001:db8::15]:41003", "[fe80::1]:9999"),
    ];
    for (name, guest, dst) in cases {
        let (guest, dst) = (sa(guest), sa(dst));
        let payload = b"knock knock";
        let script = format!(
            "0 > hex {}\n* < hex {}\n+1 < nothing\n",
            hex(&guest_udp_frame(guest, dst, payload)),
            hex(&port_unreachable_frame(guest, dst, payload.len())),
        );
        let mut sim = script_sim(Config::example(), host(4), &script, 4);
        sim.run_until(at(10.0));
        script_outcome(&sim).unwrap_or_else(|e| panic!("{name}: {e}"));
        let c = sim.engine().counters();
        assert_eq!(
            (c.udp_to_host, c.icmp_errors_to_guest, c.udp_to_guest),
            (1, 1, 0),
            "{name}"
        );
        assert_eq!(c.total_drops(), 0, "{name}: {c:?}");
        assert_eq!(sim.host().stats().icmp_errors, 1, "{name}");
        // The flow stays (a later datagram may find the port open).
        assert_eq!(sim.engine().udp().flow_count(), 1, "{name}");
    }
}

/// The guest answers through a forwarded port to a peer that has closed
/// its socket: the error comes back on the forwarded socket and reaches
/// the guest, appearing to come from the peer as the guest sees it.
#[test]
fn udp_inbound_port_unreachable_relayed() {
    let guest = sa("192.0.2.15:7001");
    let seen_peer = sa("192.0.2.1:5600"); // 127.0.0.1:5600 through the mapping
    let script = format!(
        "flow {guest} > {seen_peer}\n\
         * < udp \"hello\"\n\
         +0.5 > hex {}\n\
         * < hex {}\n",
        hex(&guest_udp_frame(guest, seen_peer, b"knock")),
        hex(&port_unreachable_frame(guest, seen_peer, 5)),
    );
    let mut sim = script_sim(Config::example(), host(6), &script, 6);
    sim.engine_mut()
        .udp_listen(sa("127.0.0.1:8054"), 7001)
        .unwrap();
    let s = sim
        .host_mut()
        .remote_udp_bind(sa("127.0.0.1:5600"))
        .unwrap();
    sim.host_mut()
        .remote_udp_send(s, b"hello", sa("127.0.0.1:8054"))
        .unwrap();
    advance(&mut sim, at(0.1));
    sim.host_mut().remote_close(s);
    sim.run_until(at(5.0));
    script_outcome(&sim).unwrap();
    assert_eq!(sim.engine().counters().icmp_errors_to_guest, 1);
    assert_eq!(sim.engine().counters().total_drops(), 0);
}

/// `--dns-forward`: a query to the forward address reaches the host's
/// resolver (here a loopback one, as systemd-resolved's 127.0.0.53, and a
/// remote one for IPv6) and the answer comes back from the forward
/// address. The answer is the SimHost DNS responder's, byte for byte.
#[test]
fn dns_forward_reaches_the_host_resolver() {
    let mut config = Config::example();
    let m = &mut config.mapping;
    m.dns_forward_v4 = Some("192.0.2.53".parse().unwrap());
    m.dns_host_v4 = Some("127.0.0.53".parse().unwrap());
    m.dns_forward_v6 = Some("2001:db8::53".parse().unwrap());
    m.dns_host_v6 = Some("2001:db8:2::53".parse().unwrap());
    let answers = DnsResponder::new()
        .with("example.test", "203.0.113.7".parse().unwrap())
        .with("example.test", "2001:db8:5::7".parse().unwrap());
    let mut host = host(7);
    host.remote_udp_serve(sa("127.0.0.53:53"), Box::new(answers.clone()))
        .unwrap();
    host.remote_udp_serve(sa("[2001:db8:2::53]:53"), Box::new(answers.clone()))
        .unwrap();
    // Port 80 on the forward address is not DNS: it goes to that address.
    let (web, web_log) = Recorder::boxed(true);
    host.remote_udp_serve(sa("192.0.2.53:80"), web).unwrap();
    let q4 = dns::build_query(0x1234, "example.test", 1).unwrap();
    let q6 = dns::build_query(0x5678, "example.test", 28).unwrap();
    let a4 = answers.clone().answer(&q4).unwrap();
    let a6 = answers.clone().answer(&q6).unwrap();
    let r4 = dns::parse_response(&a4).unwrap();
    assert_eq!(r4.rcode, 0);
    assert!(!r4.answers.is_empty());
    let script = format!(
        "flow 192.0.2.15:5353 > 192.0.2.53:53\n\
         0 > udp {q4}\n\
         * < udp {a4}\n\
         flow [2001:db8::15]:5354 > [2001:db8::53]:53\n\
         +0 > udp {q6}\n\
         * < udp {a6}\n\
         flow 192.0.2.15:5355 > 192.0.2.53:80\n\
         +0 > udp \"not dns\"\n\
         * < udp \"not dns\"\n",
        q4 = script_bytes(&q4),
        a4 = script_bytes(&a4),
        q6 = script_bytes(&q6),
        a6 = script_bytes(&a6),
    );
    let mut sim = script_sim(config, host, &script, 7);
    sim.run_until(at(10.0));
    script_outcome(&sim).unwrap();
    let flows: Vec<_> = sim.engine().udp().flows().collect();
    let peers: Vec<_> = flows.iter().map(|f| (f.guest_peer, f.host_peer)).collect();
    assert_eq!(
        peers,
        vec![
            (sa("192.0.2.53:53"), sa("127.0.0.53:53")),
            (sa("[2001:db8::53]:53"), sa("[2001:db8:2::53]:53")),
            (sa("192.0.2.53:80"), sa("192.0.2.53:80")),
        ]
    );
    assert_eq!(entries(&web_log).len(), 1);
    assert_eq!(sim.engine().counters().total_drops(), 0);
}

/// Rows of the mapping table (`engine/tests/udp_mapping_table.rs`) run end
/// to end: the guest writes to `dst`, the service at `service` must see the
/// datagram from `host_src`, and its echo must reach the guest from `dst`.
#[test]
fn udp_mapping_rows_end_to_end() {
    type Row = (
        &'static str,
        fn(&mut Config),
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    );
    fn none(_: &mut Config) {}
    fn map_guest_addr(c: &mut Config) {
        c.mapping.guest_addr_v4 = Some("192.0.2.2".parse().unwrap());
        c.mapping.host_addr_v4 = Some(HOST4);
        c.mapping.guest_addr_v6 = Some("2001:db8::2".parse().unwrap());
        c.mapping.host_addr_v6 = Some(HOST6);
    }
    fn no_map_gw(c: &mut Config) {
        c.mapping.host_loopback_v4 = None;
        c.mapping.host_loopback_v6 = None;
    }
    #[rustfmt::skip]
    let rows: [Row; 8] = [
        ("gateway is host loopback", none, "192.0.2.15:5000", "192.0.2.1:80", "127.0.0.1:80", "127.0.0.1:5000"),
        ("other addresses untouched", none, "192.0.2.15:5000", "198.51.100.7:80", "198.51.100.7:80", "198.51.100.1:5000"),
        ("--map-guest-addr", map_guest_addr, "192.0.2.15:5000", "192.0.2.2:22", "198.51.100.1:22", "198.51.100.1:5000"),
        ("v6 gateway is ::1", none, "[2001:db8::15]:5000", "[fe80::1]:80", "[::1]:80", "[::1]:5000"),
        ("v6 link-local source too", none, "[fe80::15]:5000", "[fe80::1]:80", "[::1]:80", "[::1]:5000"),
        ("v6 --map-guest-addr", map_guest_addr, "[2001:db8::15]:5000", "[2001:db8::2]:22", "[2001:db8:1::1]:22", "[2001:db8:1::1]:5000"),
        ("--no-map-gw", no_map_gw, "192.0.2.15:5000", "192.0.2.1:80", "192.0.2.1:80", "198.51.100.1:5000"),
        ("--no-map-gw v6", no_map_gw, "[2001:db8::15]:5000", "[fe80::1]:80", "[fe80::1]:80", "[2001:db8:1::1]:5000"),
    ];
    for (name, tweak, guest, dst, service, host_src) in rows {
        let mut config = Config::example();
        tweak(&mut config);
        let mut host = host(8);
        let (echo, log) = Recorder::boxed(true);
        host.remote_udp_serve(sa(service), echo).unwrap();
        let script = format!(
            "flow {guest} > {dst}\n0 > udp \"{name}\"\n* < udp \"{name}\"\n+0.1 < nothing\n"
        );
        let mut sim = script_sim(config, host, &script, 8);
        sim.run_until(at(10.0));
        script_outcome(&sim).unwrap_or_else(|e| panic!("{name}: {e}"));
        let seen = entries(&log);
        assert_eq!(seen.len(), 1, "{name}");
        assert_eq!(seen[0].1, sa(host_src), "{name}: source on the host");
        assert_eq!(seen[0].2, sa(service), "{name}: host destination");
        let flow = sim.engine().udp().flows().next().expect("flow");
        assert_eq!(
            (flow.guest, flow.guest_peer, flow.host_peer),
            (sa(guest), sa(dst), sa(service)),
            "{name}"
        );
        assert_eq!(sim.engine().counters().total_drops(), 0, "{name}");
    }
}

/// `udp_timeout` / `udp_timeout_bidir` are what the engine uses: 5 s and
/// 12 s here, on virtual time, for an inbound flow (a forwarded port) that
/// stays one-way and an outbound one that becomes bidirectional.
#[test]
fn udp_timeouts_follow_the_configuration() {
    let mut config = Config::example();
    config.udp_timeout = Duration::from_secs(5);
    config.udp_timeout_bidir = Duration::from_secs(12);
    let mut host = host(11);
    let (echo, _) = Recorder::boxed(true);
    host.remote_udp_serve(sa("203.0.113.7:7"), echo).unwrap();
    let script = "\
flow 192.0.2.15:7002 > 203.0.113.9:6000
* < udp \"inbound one way\"
flow 192.0.2.15:40000 > 203.0.113.7:7
+0 > udp \"out\"
* < udp \"out\"
";
    let mut sim = script_sim(config, host, script, 11);
    sim.engine_mut()
        .udp_listen(sa("0.0.0.0:8055"), 7002)
        .unwrap();
    let peer = sim
        .host_mut()
        .remote_udp_bind(sa("203.0.113.9:6000"))
        .unwrap();
    sim.host_mut()
        .remote_udp_send(peer, b"inbound one way", sa("198.51.100.1:8055"))
        .unwrap();
    // The peer's datagram reaches the host at 10 ms; the echo is back at
    // about 30 ms.
    advance(&mut sim, at(1.0));
    script_outcome(&sim).unwrap();
    assert_eq!(sim.engine().udp().flow_count(), 2);
    let before = open_host_sockets(sim.host());
    advance(&mut sim, at(4.9));
    assert_eq!(sim.engine().udp().flow_count(), 2);
    advance(&mut sim, at(5.1));
    let flows: Vec<_> = sim.engine().udp().flows().collect();
    assert_eq!(flows.len(), 1, "inbound one-way flow gone at 5.01 s");
    assert!(!flows[0].inbound && flows[0].bidirectional);
    // The forwarded port's socket is not the flow's: it stays open.
    assert_eq!(open_host_sockets(sim.host()), before);
    advance(&mut sim, at(11.9));
    assert_eq!(sim.engine().udp().flow_count(), 1);
    advance(&mut sim, at(12.1));
    assert_eq!(sim.engine().udp().flow_count(), 0);
    assert_eq!(open_host_sockets(sim.host()), before - 1);
    let c = sim.engine().counters();
    assert_eq!((c.flows_opened, c.flows_closed), (2, 2));
}

/// Two datagrams of different sizes sent back to back to a closed port
/// draw two ICMP errors; each must quote its own datagram (RFC 792: the
/// invoking datagram's header, whose length fields say which one it was).
///
/// Engine bug: `udp.rs` rebuilds the quote from the flow's *last* datagram
/// (`Flow::last_udp_len`), so both errors quote the 20-byte one (IP total
/// length 48, UDP length 28): the first error is wrong. `IcmpErrorReport`
/// carries no length of the offending datagram (the kernel's
/// `MSG_ERRQUEUE` read returns its payload, so the real backend could
/// supply it).
#[test]
fn udp_port_unreachable_quotes_each_offending_datagram() {
    let guest = sa("192.0.2.15:41010");
    let dst = sa("203.0.113.7:4444");
    let script = format!(
        "0 > hex {}\n+0 > hex {}\n* < hex {}\n* < hex {}\n",
        hex(&guest_udp_frame(guest, dst, b"a")),
        hex(&guest_udp_frame(guest, dst, b"bbbbbbbbbbbbbbbbbbbb")),
        hex(&port_unreachable_frame(guest, dst, 1)),
        hex(&port_unreachable_frame(guest, dst, 20)),
    );
    let mut sim = script_sim(Config::example(), host(12), &script, 12);
    sim.run_until(at(10.0));
    script_outcome(&sim).unwrap();
    assert_eq!(sim.engine().counters().icmp_errors_to_guest, 2);
}
