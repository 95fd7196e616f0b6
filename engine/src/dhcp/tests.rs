//! DHCPv4 server tests: requests are built and replies decoded with
//! `dhcproto`, an implementation independent of the server's request reader.

use super::*;
use core::time::Duration;
use dhcproto::v4::{Flags, Message, MessageType};
use dhcproto::{Decodable, Decoder};
use std::fmt::Write as _;

const CLIENT: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x15]);
const XID: u32 = 0x1234_5678;

fn config() -> Config {
    Config::example()
}

fn guest_ip() -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 15)
}

fn gateway() -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 1)
}

/// A request as a Linux client would build it.
fn request(kind: MessageType) -> Message {
    let mut m = Message::new_with_id(
        XID,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &CLIENT.0,
    );
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m.opts_mut()
        .insert(DhcpOption::ClientIdentifier(vec![1, 2, 0, 0, 0, 0, 0x15]));
    m.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::DomainName,
        OptionCode::DomainSearch,
        OptionCode::InterfaceMtu,
        OptionCode::ClasslessStaticRoute,
    ]));
    m
}

fn bytes(m: &Message) -> Vec<u8> {
    m.to_vec().expect("test request encodes")
}

fn run(config: &Config, req: &[u8]) -> DhcpOutcome {
    let mut out = [0u8; 1500];
    handle(config, CLIENT, req, &mut out)
}

/// Runs the server and decodes its reply with dhcproto.
fn reply(config: &Config, req: &[u8]) -> (DhcpReply, Message, Vec<u8>) {
    let mut out = [0u8; 1500];
    match handle(config, CLIENT, req, &mut out) {
        DhcpOutcome::Reply(r) => {
            let payload = out[..r.len].to_vec();
            let msg = Message::decode(&mut Decoder::new(&payload)).expect("reply decodes");
            (r, msg, payload)
        }
        DhcpOutcome::Ignored(why) => panic!("expected a reply, got {why:?}"),
    }
}

fn ignored(config: &Config, req: &[u8]) -> DhcpIgnoreReason {
    match run(config, req) {
        DhcpOutcome::Ignored(why) => why,
        DhcpOutcome::Reply(r) => panic!("expected no reply, got {r:?}"),
    }
}

/// A readable dump of a reply, for snapshots.
pub(crate) fn describe(reply: &DhcpReply, payload: &[u8]) -> String {
    let msg = Message::decode(&mut Decoder::new(payload)).expect("reply decodes");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:?}, {} bytes, from {} to {} at {}",
        reply.kind, reply.len, reply.src_ip, reply.dst_ip, reply.dst_mac
    );
    let _ = writeln!(
        s,
        "op={:?} htype={:?} hlen={} hops={} xid={:#010x} secs={} broadcast={}",
        msg.opcode(),
        msg.htype(),
        msg.hlen(),
        msg.hops(),
        msg.xid(),
        msg.secs(),
        msg.flags().broadcast()
    );
    let _ = writeln!(
        s,
        "ciaddr={} yiaddr={} siaddr={} giaddr={} chaddr={}",
        msg.ciaddr(),
        msg.yiaddr(),
        msg.siaddr(),
        msg.giaddr(),
        MacAddr(msg.chaddr().try_into().expect("6-byte chaddr"))
    );
    let _ = writeln!(s, "sname={:?} file={:?}", msg.sname(), msg.fname());
    for (code, option) in msg.opts().iter() {
        let _ = writeln!(s, "  {:3} {:?}", u8::from(*code), option);
    }
    s
}

/// The value of the first `code` option in an encoded reply.
fn raw_option(payload: &[u8], code: u8) -> Option<&[u8]> {
    let mut at = 240;
    while at < payload.len() {
        match payload[at] {
            0 => at += 1,
            255 => return None,
            c => {
                let len = usize::from(payload[at + 1]);
                if c == code {
                    return Some(&payload[at + 2..at + 2 + len]);
                }
                at += 2 + len;
            }
        }
    }
    None
}

fn lease(msg: &Message) -> Option<u32> {
    match msg.opts().get(OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(t)) => Some(*t),
        _ => None,
    }
}

fn assert_common_config(msg: &Message) {
    assert_eq!(
        msg.opts().get(OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(
        msg.opts().get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![gateway()]))
    );
    assert_eq!(
        msg.opts().get(OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
            192, 0, 2, 53
        )]))
    );
    assert_eq!(
        msg.opts().get(OptionCode::InterfaceMtu),
        Some(&DhcpOption::InterfaceMtu(65520))
    );
    assert_eq!(
        msg.opts().get(OptionCode::DomainName),
        Some(&DhcpOption::DomainName("example.test".into()))
    );
    match msg.opts().get(OptionCode::DomainSearch) {
        Some(DhcpOption::DomainSearch(names)) => {
            let names: Vec<String> = names.iter().map(|n| n.to_ascii()).collect();
            assert_eq!(names, ["example.test."]);
        }
        other => panic!("domain search: {other:?}"),
    }
    assert_eq!(
        msg.opts().get(OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(vec![1, 2, 0, 0, 0, 0, 0x15]))
    );
    assert_eq!(
        msg.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(gateway()))
    );
}

#[test]
fn discover_gets_offer() {
    let (r, msg, payload) = reply(&config(), &bytes(&request(MessageType::Discover)));
    assert_eq!(r.kind, DhcpReplyKind::Offer);
    assert_eq!(r.len, payload.len());
    assert!(r.len >= MIN_MESSAGE_LEN, "padded to 300 bytes");
    assert_eq!(r.dst_ip, Ipv4Addr::BROADCAST);
    assert_eq!(r.dst_mac, MacAddr::BROADCAST);
    assert_eq!(r.src_ip, gateway());
    assert_eq!(msg.opcode(), v4::Opcode::BootReply);
    assert_eq!(msg.htype(), v4::HType::Eth);
    assert_eq!(msg.hlen(), 6);
    assert_eq!(msg.xid(), XID);
    assert_eq!(msg.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(msg.yiaddr(), guest_ip());
    assert_eq!(msg.siaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(msg.giaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(msg.chaddr(), &CLIENT.0);
    assert_eq!(msg.opts().msg_type(), Some(MessageType::Offer));
    assert_common_config(&msg);
    assert_eq!(lease(&msg), Some(3600));
    assert_eq!(
        msg.opts().get(OptionCode::Renewal),
        Some(&DhcpOption::Renewal(1800))
    );
    assert_eq!(
        msg.opts().get(OptionCode::Rebinding),
        Some(&DhcpOption::Rebinding(3150))
    );
    // Gateway on the subnet: no classless routes; no hostname/FQDN set.
    for absent in [
        OptionCode::ClasslessStaticRoute,
        OptionCode::Hostname,
        OptionCode::ClientFQDN,
        OptionCode::Message,
    ] {
        assert!(!msg.opts().contains(absent), "{absent:?} present");
    }
    insta::assert_snapshot!("offer", describe(&r, &payload));
}

#[test]
fn request_selecting_gets_ack() {
    let mut m = request(MessageType::Request);
    m.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(guest_ip()));
    m.opts_mut().insert(DhcpOption::ServerIdentifier(gateway()));
    let (r, msg, payload) = reply(&config(), &bytes(&m));
    assert_eq!(r.kind, DhcpReplyKind::Ack);
    assert_eq!(
        (r.dst_ip, r.dst_mac),
        (Ipv4Addr::BROADCAST, MacAddr::BROADCAST)
    );
    assert_eq!(msg.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(msg.yiaddr(), guest_ip());
    assert_eq!(msg.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(lease(&msg), Some(3600));
    assert_common_config(&msg);
    insta::assert_snapshot!("ack_selecting", describe(&r, &payload));
}

#[test]
fn request_init_reboot() {
    let mut m = request(MessageType::Request);
    m.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(guest_ip()));
    let (r, msg, _) = reply(&config(), &bytes(&m));
    assert_eq!(r.kind, DhcpReplyKind::Ack);
    assert_eq!(msg.yiaddr(), guest_ip());

    // Rebooting with an address from another network: NAK, broadcast.
    m.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 7)));
    let (r, msg, payload) = reply(&config(), &bytes(&m));
    assert_eq!(r.kind, DhcpReplyKind::Nak);
    assert_eq!(
        (r.dst_ip, r.dst_mac),
        (Ipv4Addr::BROADCAST, MacAddr::BROADCAST)
    );
    assert_eq!(msg.opts().msg_type(), Some(MessageType::Nak));
    assert_eq!(msg.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(msg.ciaddr(), Ipv4Addr::UNSPECIFIED);
    // RFC 2131 table 3: only 53, 54, 56 and the echoed 61.
    let codes: Vec<u8> = msg.opts().iter().map(|(c, _)| u8::from(*c)).collect();
    assert_eq!(codes, [53, 54, 56, 61]);
    insta::assert_snapshot!("nak", describe(&r, &payload));
}

#[test]
fn request_renewing_is_unicast() {
    let mut m = request(MessageType::Request);
    m.set_ciaddr(guest_ip());
    let (r, msg, payload) = reply(&config(), &bytes(&m));
    assert_eq!(r.kind, DhcpReplyKind::Ack);
    assert_eq!((r.dst_ip, r.dst_mac), (guest_ip(), CLIENT));
    assert_eq!(msg.ciaddr(), guest_ip());
    assert_eq!(msg.yiaddr(), guest_ip());
    assert_eq!(lease(&msg), Some(3600));
    insta::assert_snapshot!("ack_renewing", describe(&r, &payload));

    // Even with the broadcast flag, ciaddr wins (RFC 2131 §4.1 order), and
    // the flag is echoed.
    m.set_flags(Flags::default().set_broadcast());
    let (r, msg, _) = reply(&config(), &bytes(&m));
    assert_eq!((r.dst_ip, r.dst_mac), (guest_ip(), CLIENT));
    assert!(msg.flags().broadcast());
}

#[test]
fn request_renewing_wrong_address_naks() {
    let mut m = request(MessageType::Request);
    m.set_ciaddr(Ipv4Addr::new(192, 0, 2, 99));
    let (r, _, _) = reply(&config(), &bytes(&m));
    assert_eq!(r.kind, DhcpReplyKind::Nak);
    assert_eq!(r.dst_ip, Ipv4Addr::BROADCAST, "NAKs are always broadcast");
}

#[test]
fn request_for_other_server_is_ignored() {
    let mut m = request(MessageType::Request);
    m.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(guest_ip()));
    m.opts_mut()
        .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 0, 2, 2)));
    assert_eq!(
        ignored(&config(), &bytes(&m)),
        DhcpIgnoreReason::OtherServer(Ipv4Addr::new(192, 0, 2, 2))
    );
}

#[test]
fn request_without_address_is_ignored() {
    let m = request(MessageType::Request);
    assert_eq!(
        ignored(&config(), &bytes(&m)),
        DhcpIgnoreReason::NoRequestedAddress
    );
}

#[test]
fn inform_gets_ack_without_lease() {
    let mut m = request(MessageType::Inform);
    m.set_ciaddr(guest_ip());
    let (r, msg, payload) = reply(&config(), &bytes(&m));
    assert_eq!(r.kind, DhcpReplyKind::InformAck);
    assert_eq!((r.dst_ip, r.dst_mac), (guest_ip(), CLIENT));
    assert_eq!(msg.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(msg.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(msg.ciaddr(), guest_ip());
    for absent in [
        OptionCode::AddressLeaseTime,
        OptionCode::Renewal,
        OptionCode::Rebinding,
    ] {
        assert!(!msg.opts().contains(absent), "{absent:?} in INFORM ACK");
    }
    assert_common_config(&msg);
    insta::assert_snapshot!("inform_ack", describe(&r, &payload));
}

#[test]
fn release_and_decline_get_no_reply() {
    let mut m = request(MessageType::Release);
    m.set_ciaddr(guest_ip());
    assert_eq!(ignored(&config(), &bytes(&m)), DhcpIgnoreReason::Release);
    let mut m = request(MessageType::Decline);
    m.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(guest_ip()));
    assert_eq!(ignored(&config(), &bytes(&m)), DhcpIgnoreReason::Decline);
}

#[test]
fn server_messages_are_ignored() {
    for (t, n) in [
        (MessageType::Offer, 2),
        (MessageType::Ack, 5),
        (MessageType::Nak, 6),
        (MessageType::LeaseQuery, 10),
    ] {
        assert_eq!(
            ignored(&config(), &bytes(&request(t))),
            DhcpIgnoreReason::UnexpectedMessageType(n)
        );
    }
}

#[test]
fn bootp_gets_bootreply() {
    // RFC 951 request: 300 bytes, magic cookie, no option 53.
    let mut req = vec![0u8; 300];
    req[0] = 1;
    req[1] = 1;
    req[2] = 6;
    req[4..8].copy_from_slice(&XID.to_be_bytes());
    req[28..34].copy_from_slice(&CLIENT.0);
    req[236..240].copy_from_slice(&MAGIC_COOKIE);
    req[240] = 255;
    let (r, msg, payload) = reply(&config(), &req);
    assert_eq!(r.kind, DhcpReplyKind::BootReply);
    assert_eq!(r.len, 300, "stays within the BOOTP 300-byte message");
    assert_eq!(msg.yiaddr(), guest_ip());
    assert_eq!(msg.opts().msg_type(), None);
    for absent in [
        OptionCode::ServerIdentifier,
        OptionCode::AddressLeaseTime,
        OptionCode::DomainSearch,
    ] {
        assert!(!msg.opts().contains(absent), "{absent:?} in BOOTREPLY");
    }
    assert_eq!(
        msg.opts().get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![gateway()]))
    );
    insta::assert_snapshot!("bootreply", describe(&r, &payload));

    // Without the magic cookie (free-form vendor area) the reply still
    // carries RFC 1497 options.
    req[236..240].fill(0);
    let (r, msg, _) = reply(&config(), &req);
    assert_eq!(r.kind, DhcpReplyKind::BootReply);
    assert!(msg.opts().contains(OptionCode::SubnetMask));
}

#[test]
fn rejects_foreign_frames() {
    let good = bytes(&request(MessageType::Discover));

    let mut m = request(MessageType::Discover);
    m.set_opcode(v4::Opcode::BootReply);
    assert_eq!(
        ignored(&config(), &bytes(&m)),
        DhcpIgnoreReason::NotBootRequest(2)
    );

    let mut b = good.clone();
    b[1] = 6; // IEEE 802
    assert_eq!(
        ignored(&config(), &b),
        DhcpIgnoreReason::NotEthernet { htype: 6, hlen: 6 }
    );

    let mut out = [0u8; 1500];
    let other = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
    assert_eq!(
        handle(&config(), other, &good, &mut out),
        DhcpOutcome::Ignored(DhcpIgnoreReason::ChaddrMismatch {
            chaddr: CLIENT,
            frame_source: other
        })
    );

    let mut m = request(MessageType::Discover);
    m.set_giaddr(Ipv4Addr::new(192, 0, 2, 200));
    assert_eq!(
        ignored(&config(), &bytes(&m)),
        DhcpIgnoreReason::Relayed(Ipv4Addr::new(192, 0, 2, 200))
    );
}

#[test]
fn disabled_service() {
    let req = bytes(&request(MessageType::Discover));
    let mut c = config();
    c.services.dhcp = false;
    let why = ignored(&c, &req);
    assert_eq!(why, DhcpIgnoreReason::Disabled);
    assert_eq!(why.drop_reason(), DropReason::ServiceDisabled);
    let mut c = config();
    c.ipv4 = None;
    assert_eq!(ignored(&c, &req), DhcpIgnoreReason::Disabled);
    assert_eq!(
        DhcpIgnoreReason::Release.drop_reason(),
        DropReason::DhcpIgnored
    );
}

#[test]
fn malformed_requests() {
    let good = bytes(&request(MessageType::Discover));
    assert_eq!(
        ignored(&config(), &good[..100]),
        DhcpIgnoreReason::Malformed(DhcpParseError::Truncated(100))
    );
    // Option 53 with length 2.
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[53, 2, 1, 1, 255]);
    assert_eq!(
        ignored(&config(), &b),
        DhcpIgnoreReason::Malformed(DhcpParseError::BadOptionLength { code: 53, len: 2 })
    );
    // An option running past the end of the message.
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[53, 1, 1, 61, 40, 1, 2]);
    assert_eq!(
        ignored(&config(), &b),
        DhcpIgnoreReason::Malformed(DhcpParseError::OptionOverrun { code: 61 })
    );
    // A length byte missing at the very end.
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[53, 1, 1, 12]);
    assert_eq!(
        ignored(&config(), &b),
        DhcpIgnoreReason::Malformed(DhcpParseError::OptionOverrun { code: 12 })
    );
    // Options that make dhcproto's decoder assert (80 with a length, 94
    // short) are simply skipped by our reader.
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[80, 1, 0, 94, 1, 0, 53, 1, 1, 255]);
    let (r, _, _) = reply(&config(), &b);
    assert_eq!(r.kind, DhcpReplyKind::Offer);
}

#[test]
fn option_overload_is_followed() {
    // Message type in the `file` field, announced by option 52 = 1.
    let mut b = bytes(&request(MessageType::Discover))[..240].to_vec();
    b.extend_from_slice(&[52, 1, 1, 255]);
    b[108..111].copy_from_slice(&[53, 1, 3]);
    b[111] = 50;
    b[112] = 4;
    b[113..117].copy_from_slice(&guest_ip().octets());
    b[117] = 255;
    let (r, _, _) = reply(&config(), &b);
    assert_eq!(r.kind, DhcpReplyKind::Ack);
}

#[test]
fn off_subnet_gateway_gets_classless_routes() {
    let mut c = config();
    c.ipv4.as_mut().expect("v4").gateway = Ipv4Addr::new(198, 51, 100, 1);
    let (r, msg, payload) = reply(&c, &bytes(&request(MessageType::Discover)));
    assert_eq!(r.src_ip, Ipv4Addr::new(198, 51, 100, 1));
    match msg.opts().get(OptionCode::ClasslessStaticRoute) {
        Some(DhcpOption::ClasslessStaticRoute(routes)) => {
            let routes: Vec<(Ipv4Addr, u8, Ipv4Addr)> = routes
                .iter()
                .map(|(net, via)| (net.addr(), net.prefix_len(), *via))
                .collect();
            assert_eq!(
                routes,
                [
                    (Ipv4Addr::new(198, 51, 100, 1), 32, Ipv4Addr::UNSPECIFIED),
                    (Ipv4Addr::UNSPECIFIED, 0, Ipv4Addr::new(198, 51, 100, 1)),
                ]
            );
        }
        other => panic!("option 121: {other:?}"),
    }
    // Option 3 is still there for clients without RFC 3442 support.
    assert_eq!(
        msg.opts().get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![Ipv4Addr::new(198, 51, 100, 1)]))
    );
    // RFC 3442 encoding: 32 c6 33 64 01 00 00 00 00, then 0 c6 33 64 01.
    assert_eq!(
        raw_option(&payload, 121),
        Some(&[32, 198, 51, 100, 1, 0, 0, 0, 0, 0, 198, 51, 100, 1][..])
    );
    insta::assert_snapshot!("offer_off_subnet", describe(&r, &payload));
}

#[test]
fn hostname_and_fqdn() {
    let mut c = config();
    c.hostname = Some("guest".into());
    c.fqdn = Some("guest.example.test".into());
    let (r, msg, payload) = reply(&c, &bytes(&request(MessageType::Discover)));
    assert_eq!(
        msg.opts().get(OptionCode::Hostname),
        Some(&DhcpOption::Hostname("guest".into()))
    );
    match msg.opts().get(OptionCode::ClientFQDN) {
        Some(DhcpOption::ClientFQDN(f)) => {
            assert!(f.flags().n() && f.flags().e() && !f.flags().s() && !f.flags().o());
            assert_eq!((f.r1(), f.r2()), (255, 255));
            assert_eq!(f.domain().to_ascii(), "guest.example.test.");
        }
        other => panic!("option 81: {other:?}"),
    }
    insta::assert_snapshot!("offer_hostname_fqdn", describe(&r, &payload));

    // A client using the deprecated ASCII encoding (E=0) gets ASCII back.
    let mut m = request(MessageType::Discover);
    let name = Name::from_ascii("guest").expect("name");
    m.opts_mut()
        .insert(DhcpOption::ClientFQDN(v4::fqdn::ClientFQDN::new(
            v4::fqdn::FqdnFlags::new(0x01),
            name,
        )));
    let mut out = [0u8; 1500];
    let DhcpOutcome::Reply(r) = handle(&c, CLIENT, &bytes(&m), &mut out) else {
        panic!("no reply")
    };
    let fqdn = raw_option(&out[..r.len], 81).expect("option 81 present");
    assert_eq!(fqdn[0], 0x08, "flags: N only, E clear");
    assert_eq!(&fqdn[1..3], [255, 255]);
    assert_eq!(&fqdn[3..], b"guest.example.test.");
}

#[test]
fn lease_times() {
    let mut c = config();
    c.dhcp_lease_time = Duration::from_secs(u64::from(u32::MAX) + 10);
    let (_, msg, _) = reply(&c, &bytes(&request(MessageType::Discover)));
    assert_eq!(lease(&msg), Some(INFINITE_LEASE));
    assert!(!msg.opts().contains(OptionCode::Renewal));
    assert!(!msg.opts().contains(OptionCode::Rebinding));

    c.dhcp_lease_time = Duration::from_secs(86400);
    let (_, msg, _) = reply(&c, &bytes(&request(MessageType::Discover)));
    assert_eq!(lease(&msg), Some(86400));
    assert_eq!(
        msg.opts().get(OptionCode::Renewal),
        Some(&DhcpOption::Renewal(43200))
    );
    assert_eq!(
        msg.opts().get(OptionCode::Rebinding),
        Some(&DhcpOption::Rebinding(75600))
    );
}

#[test]
fn no_dns_no_search() {
    let mut c = config();
    c.ipv4.as_mut().expect("v4").dns.clear();
    c.dns_search.clear();
    let (_, msg, _) = reply(&c, &bytes(&request(MessageType::Discover)));
    for absent in [
        OptionCode::DomainNameServer,
        OptionCode::DomainName,
        OptionCode::DomainSearch,
    ] {
        assert!(!msg.opts().contains(absent), "{absent:?} present");
    }
}

fn big_config() -> Config {
    let mut c = config();
    c.ipv4.as_mut().expect("v4").dns = (1..=40).map(|i| Ipv4Addr::new(192, 0, 2, i)).collect();
    c.dns_search = (0..8)
        .map(|i| format!("domain{i}.some-rather-long-label.example.test"))
        .collect();
    c.hostname = Some("h".repeat(60));
    c
}

#[test]
fn reply_respects_default_size_limit() {
    let c = big_config();
    let (r, msg, _) = reply(&c, &bytes(&request(MessageType::Discover)));
    assert!(
        r.len <= MIN_CLIENT_DATAGRAM - IPV4_UDP_OVERHEAD,
        "{}",
        r.len
    );
    // Search list dropped first; essentials kept.
    assert!(!msg.opts().contains(OptionCode::DomainSearch));
    for kept in [
        OptionCode::MessageType,
        OptionCode::ServerIdentifier,
        OptionCode::AddressLeaseTime,
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::ClientIdentifier,
    ] {
        assert!(msg.opts().contains(kept), "{kept:?} dropped");
    }
    assert_eq!(msg.yiaddr(), guest_ip());
}

#[test]
fn reply_grows_with_max_message_size() {
    let c = big_config();
    let mut m = request(MessageType::Discover);
    m.opts_mut().insert(DhcpOption::MaxMessageSize(1500));
    let (r, msg, _) = reply(&c, &bytes(&m));
    assert!(r.len > 548 && r.len <= 1500 - 28, "{}", r.len);
    assert!(msg.opts().contains(OptionCode::DomainSearch));
    match msg.opts().get(OptionCode::DomainNameServer) {
        Some(DhcpOption::DomainNameServer(list)) => assert_eq!(list.len(), 40),
        other => panic!("dns: {other:?}"),
    }

    // A smaller MTU caps it again; a bogus small option 57 counts as 576.
    let mut small = big_config();
    small.mtu = 576;
    let (r, _, _) = reply(&small, &bytes(&m));
    assert!(r.len <= 548);
    m.opts_mut().insert(DhcpOption::MaxMessageSize(100));
    let (r, _, _) = reply(&c, &bytes(&m));
    assert!(r.len <= 548 && r.len >= 300);
}

#[test]
fn small_output_buffer() {
    let req = bytes(&request(MessageType::Discover));
    let mut out = [0u8; 200];
    assert_eq!(
        handle(&config(), CLIENT, &req, &mut out),
        DhcpOutcome::Ignored(DhcpIgnoreReason::ReplyTooLarge { limit: 200 })
    );
    // 280 bytes: fits without padding to 300.
    let mut out = [0u8; 280];
    let mut c = config();
    c.dns_search.clear();
    match handle(&c, CLIENT, &req, &mut out) {
        DhcpOutcome::Reply(r) => assert!(r.len <= 280),
        other => panic!("{other:?}"),
    }
}

#[test]
fn broadcast_flag_is_echoed() {
    let mut m = request(MessageType::Discover);
    m.set_flags(Flags::default().set_broadcast());
    let (r, msg, _) = reply(&config(), &bytes(&m));
    assert!(msg.flags().broadcast());
    assert_eq!(r.dst_ip, Ipv4Addr::BROADCAST);
    let (_, msg, _) = reply(&config(), &bytes(&request(MessageType::Discover)));
    assert!(!msg.flags().broadcast());
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn check_reply(config: &Config, req: &[u8]) {
        let mut out = [0u8; 1500];
        if let DhcpOutcome::Reply(r) = handle(config, CLIENT, req, &mut out) {
            // The documented bound: min(buffer, max(MTU, 576) - 28, the
            // client's maximum message size).
            let link = usize::from(config.mtu).max(576) - 28;
            assert!(r.len <= out.len().min(link));
            let msg = Message::decode(&mut Decoder::new(&out[..r.len]));
            let msg = msg.expect("every reply decodes");
            assert_eq!(msg.opcode(), v4::Opcode::BootReply);
            assert_eq!(msg.chaddr(), &CLIENT.0);
        }
    }

    fn seeds() -> Vec<Vec<u8>> {
        let mut renew = request(MessageType::Request);
        renew.set_ciaddr(guest_ip());
        let mut select = request(MessageType::Request);
        select
            .opts_mut()
            .insert(DhcpOption::RequestedIpAddress(guest_ip()));
        select
            .opts_mut()
            .insert(DhcpOption::ServerIdentifier(gateway()));
        vec![
            bytes(&request(MessageType::Discover)),
            bytes(&select),
            bytes(&renew),
            bytes(&request(MessageType::Inform)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..700)) {
            check_reply(&config(), &data);
            check_reply(&big_config(), &data);
        }

        #[test]
        fn arbitrary_options_never_panic(
            seed in 0usize..4,
            options in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            // A valid header with the client's MAC followed by garbage options:
            // exercises the option reader rather than the header checks.
            let mut req = seeds()[seed][..240].to_vec();
            req.extend_from_slice(&options);
            check_reply(&config(), &req);
        }

        #[test]
        fn mutated_requests_never_panic(
            seed in 0usize..4,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut req = seeds()[seed].clone();
            for (at, byte) in flips {
                let at = at % req.len();
                req[at] = byte;
            }
            check_reply(&config(), &req);
            let cut = cut % (req.len() + 1);
            check_reply(&config(), &req[..cut]);
        }
    }
}
