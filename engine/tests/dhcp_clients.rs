//! The DHCPv4 and DHCPv6 servers against requests captured from real
//! clients (busybox udhcpc, ISC dhclient): see `corpus/clients/README.md`.
//!
//! The UDP payloads are taken out of the pcap files, handed to the servers as
//! the engine's dispatcher would, and the replies decoded with `dhcproto`.
//! The udhcpc session also holds busybox udhcpd's answers, configured like
//! `Config::example()`, which serve as a reference for ours.

use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::v6;
use dhcproto::{Decodable, Decoder};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use passt_engine::dhcp::{self, DhcpIgnoreReason, DhcpOutcome, DhcpReplyKind};
use passt_engine::dhcpv6::{self, Dhcpv6Outcome, Dhcpv6ReplyKind};
use passt_engine::{Config, MacAddr};
use pcap_file::pcap::PcapReader;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x15]);

/// One UDP datagram from a capture.
struct Datagram {
    src_mac: MacAddr,
    src_ip: IpAddr,
    dst_port: u16,
    payload: Vec<u8>,
}

fn corpus(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus/clients")
        .join(name)
}

fn datagrams(name: &str) -> Vec<Datagram> {
    let file = File::open(corpus(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut reader = PcapReader::new(file).expect("pcap header");
    let mut out = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.expect("pcap record");
        let data = &packet.data;
        let sliced = SlicedPacket::from_ethernet(data).expect("ethernet frame");
        let src_ip = match &sliced.net {
            Some(NetSlice::Ipv4(ip)) => IpAddr::V4(ip.header().source_addr()),
            Some(NetSlice::Ipv6(ip)) => IpAddr::V6(ip.header().source_addr()),
            _ => panic!("{name}: not IP"),
        };
        let Some(TransportSlice::Udp(udp)) = &sliced.transport else {
            panic!("{name}: not UDP")
        };
        out.push(Datagram {
            src_mac: MacAddr(data[6..12].try_into().expect("6 bytes")),
            src_ip,
            dst_port: udp.destination_port(),
            payload: udp.payload().to_vec(),
        });
    }
    assert!(!out.is_empty(), "{name} holds no frames");
    out
}

fn v4_message(payload: &[u8]) -> v4::Message {
    v4::Message::decode(&mut Decoder::new(payload)).expect("DHCPv4 message decodes")
}

fn server_v4(request: &Datagram) -> (DhcpOutcome, Vec<u8>) {
    assert_eq!(request.dst_port, dhcp::SERVER_PORT);
    let mut out = vec![0u8; 1500];
    let outcome = dhcp::handle(
        &Config::example(),
        request.src_mac,
        &request.payload,
        &mut out,
    );
    if let DhcpOutcome::Reply(r) = outcome {
        out.truncate(r.len);
    }
    (outcome, out)
}

fn expect_reply(outcome: DhcpOutcome) -> dhcp::DhcpReply {
    match outcome {
        DhcpOutcome::Reply(r) => r,
        DhcpOutcome::Ignored(why) => panic!("no reply: {why}"),
    }
}

fn client_id(msg: &v4::Message) -> Option<&DhcpOption> {
    msg.opts().get(OptionCode::ClientIdentifier)
}

#[test]
fn udhcpc_discover_gets_offer() {
    let frames = datagrams("udhcpc-discover.pcap");
    let request = &frames[0];
    assert_eq!(request.src_mac, CLIENT_MAC);
    let req = v4_message(&request.payload);
    assert_eq!(req.opts().msg_type(), Some(MessageType::Discover));

    let (outcome, payload) = server_v4(request);
    let reply = expect_reply(outcome);
    assert_eq!(reply.kind, DhcpReplyKind::Offer);
    assert_eq!(reply.dst_ip, Ipv4Addr::BROADCAST);
    assert_eq!(reply.dst_mac, MacAddr::BROADCAST);
    assert_eq!(reply.src_ip, Ipv4Addr::new(192, 0, 2, 1));
    // udhcpc announces a 576-byte maximum (option 57).
    assert!(payload.len() <= 576 - 28, "{}", payload.len());

    let offer = v4_message(&payload);
    assert_eq!(offer.xid(), req.xid());
    assert_eq!(offer.chaddr(), req.chaddr());
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(192, 0, 2, 15));
    assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(client_id(&offer), client_id(&req));
    // What udhcpc needs to configure the interface.
    for needed in [
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::ServerIdentifier,
        OptionCode::AddressLeaseTime,
    ] {
        assert!(offer.opts().contains(needed), "{needed:?} missing");
    }
}

#[test]
fn udhcpc_requests_get_acks() {
    let frames = datagrams("udhcpc-request.pcap");
    assert_eq!(frames.len(), 2);

    // SELECTING: broadcast, option 54 = 192.0.2.1, option 50 = 192.0.2.15.
    let selecting = v4_message(&frames[0].payload);
    assert_eq!(selecting.ciaddr(), Ipv4Addr::UNSPECIFIED);
    let (outcome, payload) = server_v4(&frames[0]);
    let reply = expect_reply(outcome);
    assert_eq!(reply.kind, DhcpReplyKind::Ack);
    assert_eq!(reply.dst_ip, Ipv4Addr::BROADCAST);
    let ack = v4_message(&payload);
    assert_eq!(ack.xid(), selecting.xid());
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), Ipv4Addr::new(192, 0, 2, 15));

    // RENEWING: unicast from 192.0.2.15, ciaddr set: unicast ACK back.
    let renewing = v4_message(&frames[1].payload);
    assert_eq!(renewing.ciaddr(), Ipv4Addr::new(192, 0, 2, 15));
    assert_eq!(frames[1].src_ip, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 15)));
    let (outcome, payload) = server_v4(&frames[1]);
    let reply = expect_reply(outcome);
    assert_eq!(reply.kind, DhcpReplyKind::Ack);
    assert_eq!(reply.dst_ip, Ipv4Addr::new(192, 0, 2, 15));
    assert_eq!(reply.dst_mac, CLIENT_MAC);
    let ack = v4_message(&payload);
    assert_eq!(ack.ciaddr(), Ipv4Addr::new(192, 0, 2, 15));
    assert_eq!(ack.yiaddr(), Ipv4Addr::new(192, 0, 2, 15));
}

#[test]
fn udhcpc_release_gets_no_reply() {
    let frames = datagrams("udhcpc-release.pcap");
    let (outcome, _) = server_v4(&frames[0]);
    assert_eq!(outcome, DhcpOutcome::Ignored(DhcpIgnoreReason::Release));
}

/// Our answers carry the same essentials as busybox udhcpd's, which was
/// configured with the addresses of `Config::example()`.
#[test]
fn udhcpc_session_matches_udhcpd() {
    let frames = datagrams("udhcpc-session.pcap");
    let mut compared = 0;
    for (i, frame) in frames.iter().enumerate() {
        if frame.dst_port != dhcp::SERVER_PORT {
            continue;
        }
        let request = v4_message(&frame.payload);
        let (outcome, ours) = server_v4(frame);
        let expected = match request.opts().msg_type() {
            Some(MessageType::Discover) => Some(MessageType::Offer),
            Some(MessageType::Request) => Some(MessageType::Ack),
            Some(MessageType::Release) => None,
            other => panic!("unexpected client message {other:?}"),
        };
        let Some(expected) = expected else {
            assert!(matches!(outcome, DhcpOutcome::Ignored(_)));
            continue;
        };
        expect_reply(outcome);
        let ours = v4_message(&ours);
        assert_eq!(ours.opts().msg_type(), Some(expected));

        // udhcpd's answer to this request, if it sent one.
        let theirs = frames[i + 1..]
            .iter()
            .filter(|f| f.dst_port == dhcp::CLIENT_PORT)
            .map(|f| v4_message(&f.payload))
            .find(|m| m.xid() == request.xid() && m.opts().msg_type() == Some(expected));
        let Some(theirs) = theirs else { continue };
        assert_eq!(ours.yiaddr(), theirs.yiaddr());
        for code in [
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainNameServer,
            OptionCode::ServerIdentifier,
            OptionCode::AddressLeaseTime,
        ] {
            assert_eq!(
                ours.opts().get(code),
                theirs.opts().get(code),
                "{code:?} differs from udhcpd's"
            );
        }
        compared += 1;
    }
    assert!(compared >= 3, "compared {compared} replies with udhcpd's");
}

#[test]
fn dhclient_discover_gets_offer() {
    let frames = datagrams("dhclient-discover.pcap");
    for frame in &frames {
        let req = v4_message(&frame.payload);
        let (outcome, payload) = server_v4(frame);
        let reply = expect_reply(outcome);
        assert_eq!(reply.kind, DhcpReplyKind::Offer);
        assert!(payload.len() <= 548);
        let offer = v4_message(&payload);
        assert_eq!(offer.xid(), req.xid());
        assert_eq!(offer.yiaddr(), Ipv4Addr::new(192, 0, 2, 15));
        // dhclient asks for 119 (search list), which we have.
        assert!(offer.opts().contains(OptionCode::DomainSearch));
    }
}

fn server_v6(request: &Datagram) -> (Dhcpv6Outcome, Vec<u8>) {
    assert_eq!(request.dst_port, dhcpv6::SERVER_PORT);
    let IpAddr::V6(src) = request.src_ip else {
        panic!("DHCPv6 over IPv4")
    };
    let mut out = vec![0u8; 1500];
    let outcome = dhcpv6::handle(
        &Config::example(),
        request.src_mac,
        src,
        &request.payload,
        &mut out,
    );
    if let Dhcpv6Outcome::Reply(r) = outcome {
        out.truncate(r.len);
    }
    (outcome, out)
}

fn v6_message(payload: &[u8]) -> v6::Message {
    v6::Message::decode(&mut Decoder::new(payload)).expect("DHCPv6 message decodes")
}

#[test]
fn dhclient6_solicit_gets_advertise() {
    let frames = datagrams("dhclient6-solicit.pcap");
    let client_ll: Ipv6Addr = "fe80::ff:fe00:15".parse().expect("literal");
    for frame in &frames {
        let req = v6_message(&frame.payload);
        let (outcome, payload) = server_v6(frame);
        let Dhcpv6Outcome::Reply(reply) = outcome else {
            panic!("no reply: {outcome:?}")
        };
        assert_eq!(reply.kind, Dhcpv6ReplyKind::Advertise);
        assert_eq!(reply.dst_ip, client_ll);
        assert_eq!(reply.dst_mac, CLIENT_MAC);
        let adv = v6_message(&payload);
        assert_eq!(adv.msg_type(), v6::MessageType::Advertise);
        assert_eq!(adv.xid(), req.xid());
        assert_eq!(
            adv.opts().get(v6::OptionCode::ClientId),
            req.opts().get(v6::OptionCode::ClientId)
        );
        let (Some(v6::DhcpOption::IANA(theirs)), Some(v6::DhcpOption::IANA(ours))) = (
            req.opts().get(v6::OptionCode::IANA),
            adv.opts().get(v6::OptionCode::IANA),
        ) else {
            panic!("IA_NA missing")
        };
        assert_eq!(ours.id, theirs.id);
        match ours.opts.get(v6::OptionCode::IAAddr) {
            Some(v6::DhcpOption::IAAddr(a)) => {
                assert_eq!(a.addr, "2001:db8::15".parse::<Ipv6Addr>().expect("literal"));
                assert!(a.valid_life >= a.preferred_life && a.preferred_life > 0);
            }
            other => panic!("IA Address: {other:?}"),
        }
        assert!(adv.opts().get(v6::OptionCode::DomainNameServers).is_some());
    }
}

#[test]
fn dhclient6_information_request_gets_reply() {
    let frames = datagrams("dhclient6-information-request.pcap");
    for frame in &frames {
        let req = v6_message(&frame.payload);
        assert_eq!(req.msg_type(), v6::MessageType::InformationRequest);
        let (outcome, payload) = server_v6(frame);
        let Dhcpv6Outcome::Reply(reply) = outcome else {
            panic!("no reply: {outcome:?}")
        };
        assert_eq!(reply.kind, Dhcpv6ReplyKind::Reply);
        let rep = v6_message(&payload);
        assert_eq!(rep.msg_type(), v6::MessageType::Reply);
        assert_eq!(rep.xid(), req.xid());
        assert!(rep.opts().get(v6::OptionCode::IANA).is_none());
        assert_eq!(
            rep.opts().get(v6::OptionCode::DomainNameServers),
            Some(&v6::DhcpOption::DomainNameServers(vec![
                "2001:db8::53".parse().expect("literal")
            ]))
        );
        assert!(rep.opts().get(v6::OptionCode::DomainSearchList).is_some());
    }
}
