//! The engine's built-in services, end to end through `Engine::handle_frame`:
//! whole frames captured from real clients (busybox udhcpc, ISC dhclient,
//! the Linux kernel's DAD and router solicitation; see
//! `corpus/clients/README.md`) go in, and the frames the engine queues for
//! the guest come out. Every reply is re-parsed with etherparse (an
//! independent parser: checksums and lengths must be valid), checked field
//! by field, and the decoded conversation is recorded as an insta snapshot.

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use passt_engine::host_io::NoHost;
use passt_engine::wire::parse_frame;
use passt_engine::{Config, DropReason, Engine, Instant, MacAddr};
use pcap_file::pcap::PcapReader;
use std::fmt::Write as _;
use std::fs::File;
use std::path::PathBuf;

fn corpus_frames(name: &str) -> Vec<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus/clients")
        .join(name);
    let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = PcapReader::new(file).expect("pcap header");
    let mut out = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let mut frame = packet.expect("pcap record").data.into_owned();
        complete_offloaded_checksum(&mut frame);
        // The udhcpc session was captured against busybox udhcpd at
        // 02:00:00:00:00:01; unicast frames to it are meant for us.
        if frame[0..6] == [0x02, 0, 0, 0, 0, 0x01] {
            frame[0..6].copy_from_slice(&MacAddr::PASST_DEFAULT.0);
        }
        out.push(frame);
    }
    out
}

/// The captures were taken on veth links, where the kernel hands frames of
/// its own UDP sockets (udhcpc's unicast renewal and release) to the
/// capture with checksum offload pending: the UDP checksum field holds only
/// the pseudo-header sum. A guest behind virtio-net without offload, or a
/// tap without vnet headers, sends complete checksums; this fills them in
/// as the NIC would have. Frames with valid checksums are left untouched.
fn complete_offloaded_checksum(frame: &mut [u8]) {
    let Ok(sliced) = SlicedPacket::from_ethernet(frame) else {
        return;
    };
    let (Some(net), Some(TransportSlice::Udp(udp))) = (&sliced.net, &sliced.transport) else {
        return;
    };
    let udp = udp.clone();
    let want = match net {
        NetSlice::Ipv4(ip) => udp
            .to_header()
            .calc_checksum_ipv4(&ip.header().to_header(), udp.payload()),
        NetSlice::Ipv6(ip) => udp
            .to_header()
            .calc_checksum_ipv6(&ip.header().to_header(), udp.payload()),
        _ => return,
    }
    .expect("checksum computable");
    if udp.checksum() == want || (udp.checksum() == 0 && matches!(net, NetSlice::Ipv4(_))) {
        return;
    }
    let udp_offset = udp.slice().as_ptr() as usize - frame.as_ptr() as usize;
    drop(sliced);
    frame[udp_offset + 6..udp_offset + 8].copy_from_slice(&want.to_be_bytes());
}

/// Feeds `frames` whose source MAC is `client` into a fresh engine, one
/// every 100 ms of engine time, and returns the decoded conversation plus
/// the engine (for counters).
fn converse(frames: &[Vec<u8>], client: MacAddr) -> (String, Engine<NoHost>) {
    let mut engine = Engine::new(Config::example(), NoHost, 1).expect("valid config");
    let mut log = String::new();
    let mut now = Instant::from_secs(1);
    for frame in frames.iter().filter(|f| f[6..12] == client.0) {
        let parsed = parse_frame(frame).expect("captured frame parses");
        writeln!(log, "> {parsed}").unwrap();
        engine.handle_frame(now, frame);
        let out: Vec<Vec<u8>> = engine.tx_queue().iter().map(<[u8]>::to_vec).collect();
        engine.tx_queue().clear();
        for reply in &out {
            check_independently(reply, client);
            let parsed = parse_frame(reply).expect("our frame parses with our parser");
            writeln!(log, "< {parsed}").unwrap();
        }
        now += std::time::Duration::from_millis(100);
    }
    (log, engine)
}

/// Re-parses a reply with etherparse: valid lengths, valid checksums, our
/// MAC as source, the client (or a multicast group) as destination.
fn check_independently(frame: &[u8], client: MacAddr) {
    let sliced = SlicedPacket::from_ethernet(frame).expect("etherparse accepts our frame");
    assert_eq!(
        &frame[6..12],
        &MacAddr::PASST_DEFAULT.0,
        "source MAC is ours"
    );
    let dst = MacAddr(frame[0..6].try_into().unwrap());
    assert!(dst == client || dst.is_multicast(), "destination {dst}");
    match (&sliced.net, &sliced.transport) {
        (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(udp))) => {
            let hdr = ip.header().to_header();
            assert_eq!(hdr.header_checksum, hdr.calc_header_checksum());
            let want = udp
                .to_header()
                .calc_checksum_ipv4(&hdr, udp.payload())
                .unwrap();
            assert_eq!(udp.checksum(), want, "UDP checksum");
        }
        (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Udp(udp))) => {
            let want = udp
                .to_header()
                .calc_checksum_ipv6(&ip.header().to_header(), udp.payload())
                .unwrap();
            assert_eq!(udp.checksum(), want, "UDP checksum");
        }
        (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(icmp))) => {
            let want = icmp
                .header()
                .icmp_type
                .calc_checksum(
                    ip.header().source(),
                    ip.header().destination(),
                    icmp.payload(),
                )
                .unwrap();
            assert_eq!(icmp.checksum(), want, "ICMPv6 checksum");
            assert_eq!(ip.header().hop_limit(), 255, "NDP hop limit");
        }
        (Some(NetSlice::Arp(_)), None) => {}
        other => panic!("unexpected reply shape {other:?}"),
    }
}

#[test]
fn udhcpc_session_gets_offer_ack_and_renewal() {
    let client = MacAddr([0x02, 0, 0, 0, 0, 0x15]);
    let (log, engine) = converse(&corpus_frames("udhcpc-session.pcap"), client);
    let c = engine.counters();
    // DISCOVER x2 -> OFFER x2, REQUEST -> ACK, renewing REQUEST -> ACK,
    // RELEASE -> nothing.
    assert_eq!(c.dhcp_replies, 4, "{log}");
    assert_eq!(c.drops(DropReason::DhcpIgnored), 1, "the RELEASE: {log}");
    assert_eq!(engine.guest_mac(), Some(client));
    insta::assert_snapshot!(log);
}

#[test]
fn dhclient_discover_and_dhcpv6() {
    let client = MacAddr([0x02, 0, 0, 0, 0, 0x15]);
    let mut frames = corpus_frames("dhclient-discover.pcap");
    frames.extend(corpus_frames("dhclient6-solicit.pcap"));
    frames.extend(corpus_frames("dhclient6-information-request.pcap"));
    let (log, engine) = converse(&frames, client);
    let c = engine.counters();
    assert!(c.dhcp_replies >= 1, "{log}");
    assert!(c.dhcpv6_replies >= 2, "{log}");
    assert_eq!(c.total_drops(), 0, "{log}");
    insta::assert_snapshot!(log);
}

#[test]
fn linux_dad_is_left_alone_and_router_solicitation_answered() {
    let client = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
    let (log, engine) = converse(&corpus_frames("linux-dad-rs.pcap"), client);
    let c = engine.counters();
    // The DAD probe for the guest's own link-local address must get no
    // answer, or the kernel would mark its address duplicate.
    assert_eq!(c.ndp_neighbor_adverts, 0, "{log}");
    assert_eq!(c.drops(DropReason::NdpIgnored), 1, "{log}");
    // Each RS gets an RA (the first frame also started the periodic ones,
    // which are timer-driven and not sent from handle_frame).
    assert_eq!(c.ndp_router_adverts, 2, "{log}");
    assert!(log.contains("prefix 2001:db8::/64 L 1 A 1"), "{log}");
    assert!(log.contains("mtu 65520"), "{log}");
    insta::assert_snapshot!(log);
}

#[test]
fn periodic_router_advertisements_follow_poll_timeout() {
    let client = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
    let frames = corpus_frames("linux-dad-rs.pcap");
    let mut engine = Engine::new(Config::example(), NoHost, 1).unwrap();
    assert_eq!(
        engine.poll_timeout(),
        None,
        "nothing before the guest shows up"
    );
    let t0 = Instant::from_secs(5);
    engine.handle_frame(t0, &frames[0]);
    let first = engine
        .poll_timeout()
        .expect("RA timer armed by the first frame");
    assert!(first >= t0);
    let mut sent = 0;
    let mut now = first;
    for _ in 0..5 {
        engine.handle_timeout(now);
        sent += engine.tx_queue().len();
        for f in engine.tx_queue().iter() {
            check_independently(f, client);
            let text = parse_frame(f).unwrap().to_string();
            assert!(text.contains("> 33:33:00:00:00:01 IPv6"), "{text}");
            assert!(text.contains("router advertisement"), "{text}");
        }
        engine.tx_queue().clear();
        let next = engine.poll_timeout().expect("periodic");
        assert!(next > now, "timer moves forward");
        now = next;
    }
    assert_eq!(sent, 5);
    assert_eq!(engine.counters().ndp_router_adverts, 5);
}

#[test]
fn arp_for_everything_but_the_guest() {
    let client = MacAddr([0x02, 0, 0, 0, 0, 0x15]);
    let mut engine = Engine::new(Config::example(), NoHost, 1).unwrap();
    let arp = |target: [u8; 4]| {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&client.0);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&client.0);
        f.extend_from_slice(&[192, 0, 2, 15]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target);
        f
    };
    let mut log = String::new();
    for target in [[192, 0, 2, 1], [198, 51, 100, 7], [192, 0, 2, 15]] {
        let req = arp(target);
        writeln!(log, "> {}", parse_frame(&req).unwrap()).unwrap();
        engine.handle_frame(Instant::from_secs(1), &req);
        for f in engine.tx_queue().iter() {
            check_independently(f, client);
            writeln!(log, "< {}", parse_frame(f).unwrap()).unwrap();
        }
        engine.tx_queue().clear();
    }
    assert_eq!(engine.counters().arp_replies, 2, "{log}");
    assert_eq!(engine.counters().drops(DropReason::ArpIgnored), 1, "{log}");
    insta::assert_snapshot!(log);
}

#[test]
fn garbage_is_counted_not_fatal() {
    let mut engine = Engine::new(Config::example(), NoHost, 1).unwrap();
    let now = Instant::from_secs(1);
    engine.handle_frame(now, &[]);
    engine.handle_frame(now, &[0u8; 13]);
    let mut vlan = vec![0xff; 6];
    vlan.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x81, 0x00, 0, 1, 0x08, 0x00]);
    engine.handle_frame(now, &vlan);
    let c = engine.counters();
    assert_eq!(c.frames_in, 3);
    assert_eq!(c.total_drops(), 3);
    assert_eq!(c.drops(DropReason::Truncated), 2);
    assert_eq!(c.drops(DropReason::UnknownEtherType), 1);
    assert!(engine.tx_queue().is_empty());
}
