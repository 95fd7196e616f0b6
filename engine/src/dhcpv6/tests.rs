//! DHCPv6 server tests: requests are built and replies decoded with
//! `dhcproto`, independently of the server's request reader.

use super::*;
use core::time::Duration;
use dhcproto::v6::{IAPrefix, Message, MessageType, ORO};
use dhcproto::{Decodable, Decoder};
use std::fmt::Write as _;

const CLIENT: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x15]);
const XID: [u8; 3] = [0xad, 0xbe, 0xa5];
const IAID: u32 = 21;

fn config() -> Config {
    Config::example()
}

fn client_ip() -> Ipv6Addr {
    "fe80::ff:fe00:15".parse().expect("literal")
}

fn guest_ip() -> Ipv6Addr {
    "2001:db8::15".parse().expect("literal")
}

fn client_duid() -> Vec<u8> {
    // DUID-LLT as dhclient sends it.
    vec![0, 1, 0, 1, 0x32, 0x9e, 0x2d, 0x31, 2, 0, 0, 0, 0, 0x15]
}

fn our_duid() -> Vec<u8> {
    server_duid(MacAddr::PASST_DEFAULT).to_vec()
}

fn ia_na(addresses: &[Ipv6Addr]) -> DhcpOption {
    let mut opts = DhcpOptions::new();
    for a in addresses {
        opts.insert(DhcpOption::IAAddr(IAAddr {
            addr: *a,
            preferred_life: 0,
            valid_life: 0,
            opts: DhcpOptions::new(),
        }));
    }
    DhcpOption::IANA(IANA {
        id: IAID,
        t1: 3600,
        t2: 5400,
        opts,
    })
}

/// A message as dhclient builds it: client id, ORO, elapsed time, IA_NA.
fn request(t: MessageType) -> Message {
    let mut m = Message::new_with_id(t, XID);
    let o = m.opts_mut();
    o.insert(DhcpOption::ClientId(client_duid()));
    o.insert(DhcpOption::ORO(ORO {
        opts: vec![
            OptionCode::DomainNameServers,
            OptionCode::DomainSearchList,
            OptionCode::ClientFqdn,
        ],
    }));
    o.insert(DhcpOption::ElapsedTime(0));
    if !matches!(t, MessageType::InformationRequest) {
        o.insert(ia_na(&[]));
    }
    if matches!(
        t,
        MessageType::Request | MessageType::Renew | MessageType::Release | MessageType::Decline
    ) {
        o.insert(DhcpOption::ServerId(our_duid()));
    }
    m
}

fn bytes(m: &Message) -> Vec<u8> {
    m.to_vec().expect("test request encodes")
}

fn run(config: &Config, req: &[u8]) -> Dhcpv6Outcome {
    let mut out = [0u8; 1500];
    handle(config, CLIENT, client_ip(), req, &mut out)
}

fn reply(config: &Config, req: &[u8]) -> (Dhcpv6Reply, Message, Vec<u8>) {
    let mut out = [0u8; 1500];
    match handle(config, CLIENT, client_ip(), req, &mut out) {
        Dhcpv6Outcome::Reply(r) => {
            let payload = out[..r.len].to_vec();
            let msg = Message::decode(&mut Decoder::new(&payload)).expect("reply decodes");
            (r, msg, payload)
        }
        Dhcpv6Outcome::Ignored(why) => panic!("expected a reply, got {why:?}"),
    }
}

fn ignored(config: &Config, req: &[u8]) -> Dhcpv6IgnoreReason {
    match run(config, req) {
        Dhcpv6Outcome::Ignored(why) => why,
        Dhcpv6Outcome::Reply(r) => panic!("expected no reply, got {r:?}"),
    }
}

fn describe_options(s: &mut String, opts: &DhcpOptions, indent: usize) {
    for o in opts.iter() {
        let pad = " ".repeat(indent);
        match o {
            DhcpOption::IANA(ia) => {
                let _ = writeln!(s, "{pad}IA_NA iaid={} t1={} t2={}", ia.id, ia.t1, ia.t2);
                describe_options(s, &ia.opts, indent + 2);
            }
            DhcpOption::IATA(ia) => {
                let _ = writeln!(s, "{pad}IA_TA iaid={}", ia.id);
                describe_options(s, &ia.opts, indent + 2);
            }
            DhcpOption::IAPD(ia) => {
                let _ = writeln!(s, "{pad}IA_PD iaid={} t1={} t2={}", ia.id, ia.t1, ia.t2);
                describe_options(s, &ia.opts, indent + 2);
            }
            DhcpOption::IAAddr(a) => {
                let _ = writeln!(
                    s,
                    "{pad}IAADDR {} preferred={} valid={}",
                    a.addr, a.preferred_life, a.valid_life
                );
                describe_options(s, &a.opts, indent + 2);
            }
            other => {
                let _ = writeln!(s, "{pad}{other:?}");
            }
        }
    }
}

/// A readable dump of a reply, for snapshots.
fn describe(reply: &Dhcpv6Reply, payload: &[u8]) -> String {
    let msg = Message::decode(&mut Decoder::new(payload)).expect("reply decodes");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:?} to type {}, {} bytes, from {} to {} at {}",
        reply.kind, reply.answers, reply.len, reply.src_ip, reply.dst_ip, reply.dst_mac
    );
    let _ = writeln!(s, "msg_type={:?} xid={:02x?}", msg.msg_type(), msg.xid());
    describe_options(&mut s, msg.opts(), 2);
    s
}

fn the_ia_na(msg: &Message) -> &IANA {
    match msg.opts().get(OptionCode::IANA) {
        Some(DhcpOption::IANA(ia)) => ia,
        other => panic!("IA_NA: {other:?}"),
    }
}

fn ia_addresses(ia: &IANA) -> Vec<(Ipv6Addr, u32, u32)> {
    ia.opts
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IAAddr(a) => Some((a.addr, a.preferred_life, a.valid_life)),
            _ => None,
        })
        .collect()
}

fn top_status(msg: &Message) -> Option<Status> {
    match msg.opts().get(OptionCode::StatusCode) {
        Some(DhcpOption::StatusCode(s)) => Some(s.status),
        _ => None,
    }
}

/// Value of the first `code` option, straight from the encoded reply.
fn raw_option(payload: &[u8], code: u16) -> Option<&[u8]> {
    let mut at = 4;
    while at + 4 <= payload.len() {
        let c = u16::from_be_bytes([payload[at], payload[at + 1]]);
        let len = usize::from(u16::from_be_bytes([payload[at + 2], payload[at + 3]]));
        if c == code {
            return Some(&payload[at + 4..at + 4 + len]);
        }
        at += 4 + len;
    }
    None
}

fn assert_identity_and_config(msg: &Message) {
    assert_eq!(msg.xid(), XID);
    assert_eq!(
        msg.opts().get(OptionCode::ServerId),
        Some(&DhcpOption::ServerId(vec![
            0, 3, 0, 1, 0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55
        ]))
    );
    assert_eq!(
        msg.opts().get(OptionCode::ClientId),
        Some(&DhcpOption::ClientId(client_duid()))
    );
    assert_eq!(
        msg.opts().get(OptionCode::DomainNameServers),
        Some(&DhcpOption::DomainNameServers(vec![
            "2001:db8::53".parse().expect("literal")
        ]))
    );
    match msg.opts().get(OptionCode::DomainSearchList) {
        Some(DhcpOption::DomainSearchList(names)) => {
            let names: Vec<String> = names.iter().map(|n| n.to_ascii()).collect();
            assert_eq!(names, ["example.test."]);
        }
        other => panic!("domain list: {other:?}"),
    }
}

#[test]
fn solicit_gets_advertise() {
    let (r, msg, payload) = reply(&config(), &bytes(&request(MessageType::Solicit)));
    assert_eq!(r.kind, Dhcpv6ReplyKind::Advertise);
    assert_eq!(r.answers, message_type::SOLICIT);
    assert_eq!(r.dst_ip, client_ip());
    assert_eq!(r.dst_mac, CLIENT);
    assert_eq!(r.src_ip, MacAddr::PASST_DEFAULT.ipv6_link_local());
    assert_eq!(msg.msg_type(), MessageType::Advertise);
    assert_identity_and_config(&msg);
    assert_eq!(
        msg.opts().get(OptionCode::Preference),
        Some(&DhcpOption::Preference(255))
    );
    assert!(msg.opts().get(OptionCode::RapidCommit).is_none());
    let ia = the_ia_na(&msg);
    assert_eq!((ia.id, ia.t1, ia.t2), (IAID, 1800, 2880));
    assert_eq!(ia_addresses(ia), [(guest_ip(), 3600, 3600)]);
    assert!(msg.opts().get(OptionCode::ClientFqdn).is_none());
    assert_eq!(top_status(&msg), None);
    insta::assert_snapshot!("advertise", describe(&r, &payload));
}

#[test]
fn solicit_with_rapid_commit_gets_reply() {
    let mut m = request(MessageType::Solicit);
    m.opts_mut().insert(DhcpOption::RapidCommit);
    let (r, msg, payload) = reply(&config(), &bytes(&m));
    assert_eq!(r.kind, Dhcpv6ReplyKind::Reply);
    assert_eq!(msg.msg_type(), MessageType::Reply);
    assert_eq!(
        msg.opts().get(OptionCode::RapidCommit),
        Some(&DhcpOption::RapidCommit)
    );
    assert!(msg.opts().get(OptionCode::Preference).is_none());
    assert_eq!(ia_addresses(the_ia_na(&msg)), [(guest_ip(), 3600, 3600)]);
    insta::assert_snapshot!("reply_rapid_commit", describe(&r, &payload));
}

#[test]
fn request_gets_reply() {
    let (r, msg, payload) = reply(&config(), &bytes(&request(MessageType::Request)));
    assert_eq!(r.kind, Dhcpv6ReplyKind::Reply);
    assert_eq!(r.answers, message_type::REQUEST);
    assert_eq!(msg.msg_type(), MessageType::Reply);
    assert_identity_and_config(&msg);
    assert_eq!(ia_addresses(the_ia_na(&msg)), [(guest_ip(), 3600, 3600)]);
    insta::assert_snapshot!("reply_request", describe(&r, &payload));
}

#[test]
fn renew_and_rebind_expire_stale_addresses() {
    let stale: Ipv6Addr = "2001:db8:1::99".parse().expect("literal");
    for t in [MessageType::Renew, MessageType::Rebind] {
        let mut m = request(t);
        m.opts_mut().remove(OptionCode::IANA);
        m.opts_mut().insert(ia_na(&[guest_ip(), stale]));
        if matches!(t, MessageType::Rebind) {
            m.opts_mut().remove(OptionCode::ServerId);
        }
        let (r, msg, payload) = reply(&config(), &bytes(&m));
        assert_eq!(r.kind, Dhcpv6ReplyKind::Reply);
        assert_identity_and_config(&msg);
        let mut addrs = ia_addresses(the_ia_na(&msg));
        addrs.sort();
        assert_eq!(addrs, [(guest_ip(), 3600, 3600), (stale, 0, 0)]);
        if matches!(t, MessageType::Renew) {
            insta::assert_snapshot!("reply_renew", describe(&r, &payload));
        }
    }
}

#[test]
fn information_request_gets_config_only() {
    let mut c = config();
    c.fqdn = Some("guest.example.test".into());
    let (r, msg, payload) = reply(&c, &bytes(&request(MessageType::InformationRequest)));
    assert_eq!(r.kind, Dhcpv6ReplyKind::Reply);
    assert_identity_and_config(&msg);
    assert!(msg.opts().get(OptionCode::IANA).is_none());
    // RFC 4704: flags N=1, then the name uncompressed.
    let fqdn = raw_option(&payload, code::CLIENT_FQDN).expect("option 39");
    assert_eq!(fqdn, b"\x04\x05guest\x07example\x04test\x00");
    insta::assert_snapshot!("reply_information_request", describe(&r, &payload));

    // Without a Client Identifier it is still answered (§16.12).
    let mut m = Message::new_with_id(MessageType::InformationRequest, XID);
    m.opts_mut().insert(DhcpOption::ElapsedTime(0));
    let (_, msg, _) = reply(&config(), &bytes(&m));
    assert!(msg.opts().get(OptionCode::ClientId).is_none());
    assert!(msg.opts().get(OptionCode::DomainNameServers).is_some());

    // Naming another server: discarded.
    m.opts_mut()
        .insert(DhcpOption::ServerId(vec![0, 3, 0, 1, 1, 2, 3, 4, 5, 6]));
    assert_eq!(
        ignored(&config(), &bytes(&m)),
        Dhcpv6IgnoreReason::OtherServer(message_type::INFORMATION_REQUEST)
    );
}

#[test]
fn confirm_checks_on_link() {
    let mut m = request(MessageType::Confirm);
    m.opts_mut().remove(OptionCode::IANA);
    m.opts_mut()
        .insert(ia_na(&["2001:db8::1234".parse().expect("literal")]));
    let (r, msg, payload) = reply(&config(), &bytes(&m));
    assert_eq!(r.kind, Dhcpv6ReplyKind::Reply);
    assert_eq!(top_status(&msg), Some(Status::Success));
    assert!(msg.opts().get(OptionCode::IANA).is_none());
    insta::assert_snapshot!("reply_confirm_success", describe(&r, &payload));

    m.opts_mut().remove(OptionCode::IANA);
    m.opts_mut().insert(ia_na(&[
        guest_ip(),
        "2001:db8:5::15".parse().expect("literal"),
    ]));
    let (_, msg, _) = reply(&config(), &bytes(&m));
    assert_eq!(top_status(&msg), Some(Status::NotOnLink));

    // No addresses at all: no reply (§18.3.3).
    assert_eq!(
        ignored(&config(), &bytes(&request(MessageType::Confirm))),
        Dhcpv6IgnoreReason::NothingToConfirm
    );
}

#[test]
fn release_and_decline_get_success() {
    for t in [MessageType::Release, MessageType::Decline] {
        let mut m = request(t);
        m.opts_mut().remove(OptionCode::IANA);
        m.opts_mut().insert(ia_na(&[guest_ip()]));
        let (r, msg, payload) = reply(&config(), &bytes(&m));
        assert_eq!(r.kind, Dhcpv6ReplyKind::Reply);
        assert_eq!(msg.msg_type(), MessageType::Reply);
        assert_eq!(top_status(&msg), Some(Status::Success));
        assert!(msg.opts().get(OptionCode::IANA).is_none());
        assert!(msg.opts().get(OptionCode::DomainNameServers).is_none());
        if matches!(t, MessageType::Release) {
            insta::assert_snapshot!("reply_release", describe(&r, &payload));
        }
    }
}

#[test]
fn server_identifier_rules() {
    // REQUEST/RENEW/RELEASE/DECLINE for another server: silence.
    for (t, n) in [
        (MessageType::Request, 3),
        (MessageType::Renew, 5),
        (MessageType::Release, 8),
        (MessageType::Decline, 9),
    ] {
        let mut m = request(t);
        m.opts_mut().remove(OptionCode::ServerId);
        m.opts_mut()
            .insert(DhcpOption::ServerId(vec![0, 3, 0, 1, 1, 2, 3, 4, 5, 6]));
        assert_eq!(
            ignored(&config(), &bytes(&m)),
            Dhcpv6IgnoreReason::OtherServer(n)
        );
        m.opts_mut().remove(OptionCode::ServerId);
        assert_eq!(
            ignored(&config(), &bytes(&m)),
            Dhcpv6IgnoreReason::MissingServerId(n)
        );
    }
    // SOLICIT/CONFIRM/REBIND must not carry one.
    for (t, n) in [
        (MessageType::Solicit, 1),
        (MessageType::Confirm, 4),
        (MessageType::Rebind, 6),
    ] {
        let mut m = request(t);
        m.opts_mut().insert(DhcpOption::ServerId(our_duid()));
        assert_eq!(
            ignored(&config(), &bytes(&m)),
            Dhcpv6IgnoreReason::UnexpectedServerId(n)
        );
    }
}

#[test]
fn client_identifier_required() {
    let mut m = request(MessageType::Solicit);
    m.opts_mut().remove(OptionCode::ClientId);
    assert_eq!(
        ignored(&config(), &bytes(&m)),
        Dhcpv6IgnoreReason::MissingClientId(1)
    );
}

#[test]
fn other_message_types_are_ignored() {
    for (t, n) in [
        (MessageType::Advertise, 2),
        (MessageType::Reply, 7),
        (MessageType::Reconfigure, 10),
        (MessageType::RelayForw, 12),
    ] {
        assert_eq!(
            ignored(&config(), &bytes(&request(t))),
            Dhcpv6IgnoreReason::UnexpectedMessageType(n)
        );
    }
}

#[test]
fn ia_ta_and_ia_pd_get_status_inside() {
    let mut m = request(MessageType::Solicit);
    m.opts_mut().insert(DhcpOption::IATA(IATA {
        id: 7,
        opts: DhcpOptions::new(),
    }));
    let mut pd_opts = DhcpOptions::new();
    pd_opts.insert(DhcpOption::IAPrefix(IAPrefix {
        preferred_lifetime: 0,
        valid_lifetime: 0,
        prefix_len: 56,
        prefix_ip: Ipv6Addr::UNSPECIFIED,
        opts: DhcpOptions::new(),
    }));
    m.opts_mut().insert(DhcpOption::IAPD(IAPD {
        id: 9,
        t1: 0,
        t2: 0,
        opts: pd_opts,
    }));
    let (r, msg, payload) = reply(&config(), &bytes(&m));
    assert_eq!(ia_addresses(the_ia_na(&msg)), [(guest_ip(), 3600, 3600)]);
    match msg.opts().get(OptionCode::IATA) {
        Some(DhcpOption::IATA(ia)) => {
            assert_eq!(ia.id, 7);
            assert!(matches!(
                ia.opts.get(OptionCode::StatusCode),
                Some(DhcpOption::StatusCode(s)) if s.status == Status::NoAddrsAvail
            ));
        }
        other => panic!("IA_TA: {other:?}"),
    }
    match msg.opts().get(OptionCode::IAPD) {
        Some(DhcpOption::IAPD(ia)) => {
            assert_eq!(ia.id, 9);
            assert!(matches!(
                ia.opts.get(OptionCode::StatusCode),
                Some(DhcpOption::StatusCode(s)) if s.status == Status::NoPrefixAvail
            ));
        }
        other => panic!("IA_PD: {other:?}"),
    }
    insta::assert_snapshot!("advertise_ia_ta_ia_pd", describe(&r, &payload));

    // In a RENEW: NoBinding.
    let mut m = request(MessageType::Renew);
    m.opts_mut().insert(DhcpOption::IAPD(IAPD {
        id: 9,
        t1: 0,
        t2: 0,
        opts: DhcpOptions::new(),
    }));
    let (_, msg, _) = reply(&config(), &bytes(&m));
    match msg.opts().get(OptionCode::IAPD) {
        Some(DhcpOption::IAPD(ia)) => assert!(matches!(
            ia.opts.get(OptionCode::StatusCode),
            Some(DhcpOption::StatusCode(s)) if s.status == Status::NoBinding
        )),
        other => panic!("IA_PD: {other:?}"),
    }
}

#[test]
fn several_ia_nas_each_get_the_address() {
    let mut m = request(MessageType::Request);
    m.opts_mut().insert(DhcpOption::IANA(IANA {
        id: 99,
        t1: 0,
        t2: 0,
        opts: DhcpOptions::new(),
    }));
    let (_, msg, _) = reply(&config(), &bytes(&m));
    let ids: Vec<u32> = msg
        .opts()
        .get_all(OptionCode::IANA)
        .expect("IA_NAs")
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IANA(ia) => Some(ia.id),
            _ => None,
        })
        .collect();
    let mut ids = ids;
    ids.sort();
    assert_eq!(ids, [IAID, 99]);
}

#[test]
fn infinite_lease() {
    let mut c = config();
    c.dhcp_lease_time = Duration::from_secs(u64::from(u32::MAX));
    let (_, msg, _) = reply(&c, &bytes(&request(MessageType::Request)));
    let ia = the_ia_na(&msg);
    assert_eq!((ia.t1, ia.t2), (INFINITY, INFINITY));
    assert_eq!(ia_addresses(ia), [(guest_ip(), INFINITY, INFINITY)]);
}

#[test]
fn disabled_service() {
    let req = bytes(&request(MessageType::Solicit));
    let mut c = config();
    c.services.dhcpv6 = false;
    let why = ignored(&c, &req);
    assert_eq!(why, Dhcpv6IgnoreReason::Disabled);
    assert_eq!(why.drop_reason(), DropReason::ServiceDisabled);
    let mut c = config();
    c.ipv6 = None;
    assert_eq!(ignored(&c, &req), Dhcpv6IgnoreReason::Disabled);
    assert_eq!(
        Dhcpv6IgnoreReason::NothingToConfirm.drop_reason(),
        DropReason::DhcpIgnored
    );
}

#[test]
fn no_dns_no_search() {
    let mut c = config();
    c.ipv6.as_mut().expect("v6").dns.clear();
    c.dns_search.clear();
    let (_, msg, _) = reply(&c, &bytes(&request(MessageType::Solicit)));
    assert!(msg.opts().get(OptionCode::DomainNameServers).is_none());
    assert!(msg.opts().get(OptionCode::DomainSearchList).is_none());
}

#[test]
fn domain_list_is_uncompressed() {
    let mut c = config();
    c.dns_search = vec!["a.example.test".into(), "example.test".into()];
    let (_, _, payload) = reply(&c, &bytes(&request(MessageType::Solicit)));
    assert_eq!(
        raw_option(&payload, code::DOMAIN_LIST),
        Some(&b"\x01a\x07example\x04test\x00\x07example\x04test\x00"[..])
    );
}

#[test]
fn malformed_requests() {
    assert_eq!(
        ignored(&config(), &[1, 2]),
        Dhcpv6IgnoreReason::Malformed(Dhcpv6ParseError::Truncated(2))
    );
    // Option length past the end.
    assert_eq!(
        ignored(&config(), &[1, 0, 0, 1, 0, 1, 0, 20, 1, 2]),
        Dhcpv6IgnoreReason::Malformed(Dhcpv6ParseError::OptionOverrun { code: 1 })
    );
    // Half an option header.
    assert_eq!(
        ignored(&config(), &[1, 0, 0, 1, 0, 1, 0]),
        Dhcpv6IgnoreReason::Malformed(Dhcpv6ParseError::OptionOverrun { code: 1 })
    );
    // IA_NA shorter than IAID+T1+T2.
    let mut b = bytes(&request(MessageType::Solicit))[..4].to_vec();
    b.extend_from_slice(&[0, 1, 0, 2, 0, 1, 0, 3, 0, 4, 0, 0, 0, 1]);
    assert_eq!(
        ignored(&config(), &b),
        Dhcpv6IgnoreReason::Malformed(Dhcpv6ParseError::BadOptionLength { code: 3, len: 4 })
    );
    // Status code and vendor options with impossible lengths (which make
    // dhcproto's decoder underflow) are only carried along.
    let mut b = bytes(&request(MessageType::Solicit));
    b.extend_from_slice(&[0, 13, 0, 0, 0, 16, 0, 1, 0, 0, 17, 0, 0]);
    let (r, _, _) = reply(&config(), &b);
    assert_eq!(r.kind, Dhcpv6ReplyKind::Advertise);
}

#[test]
fn reply_respects_size_limits() {
    let mut c = config();
    c.ipv6.as_mut().expect("v6").dns = (1..=60u16)
        .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i))
        .collect();
    c.dns_search = (0..10)
        .map(|i| format!("domain{i}.some-rather-long-label.example.test"))
        .collect();
    c.fqdn = Some("guest.example.test".into());
    c.mtu = 1280;
    let (r, msg, _) = reply(&c, &bytes(&request(MessageType::Solicit)));
    assert!(r.len <= 1280 - 48, "{}", r.len);
    // The domain list (24) went first; DNS servers and FQDN fit after that.
    assert!(msg.opts().get(OptionCode::DomainSearchList).is_none());
    assert!(msg.opts().get(OptionCode::DomainNameServers).is_some());
    assert_eq!(ia_addresses(the_ia_na(&msg)), [(guest_ip(), 3600, 3600)]);

    // A tiny output buffer: essentials do not fit, no partial reply.
    let mut out = [0u8; 40];
    assert_eq!(
        handle(
            &config(),
            CLIENT,
            client_ip(),
            &bytes(&request(MessageType::Solicit)),
            &mut out
        ),
        Dhcpv6Outcome::Ignored(Dhcpv6IgnoreReason::ReplyTooLarge { limit: 40 })
    );
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn check_reply(config: &Config, req: &[u8]) {
        let mut out = [0u8; 1500];
        if let Dhcpv6Outcome::Reply(r) = handle(config, CLIENT, client_ip(), req, &mut out) {
            // The documented bound: min(buffer, max(MTU, 1280) - 48).
            let link = usize::from(config.mtu).max(1280) - 48;
            assert!(r.len <= out.len().min(link));
            let msg = Message::decode(&mut Decoder::new(&out[..r.len]));
            let msg = msg.expect("every reply decodes");
            assert!(matches!(
                msg.msg_type(),
                MessageType::Advertise | MessageType::Reply
            ));
            assert_eq!(msg.xid(), [req[1], req[2], req[3]]);
            assert!(msg.opts().get(OptionCode::ServerId).is_some());
        }
    }

    fn seeds() -> Vec<Vec<u8>> {
        let mut confirm = request(MessageType::Confirm);
        confirm.opts_mut().remove(OptionCode::IANA);
        confirm.opts_mut().insert(ia_na(&[guest_ip()]));
        vec![
            bytes(&request(MessageType::Solicit)),
            bytes(&request(MessageType::Request)),
            bytes(&request(MessageType::Renew)),
            bytes(&confirm),
            bytes(&request(MessageType::InformationRequest)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            check_reply(&config(), &data);
        }

        #[test]
        fn arbitrary_options_never_panic(
            seed in 0usize..5,
            options in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut req = seeds()[seed].clone();
            req.extend_from_slice(&options);
            check_reply(&config(), &req);
        }

        #[test]
        fn mutated_requests_never_panic(
            seed in 0usize..5,
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
