//! Cross-module tests of the wire layer: builders against `parse_frame`
//! (property round trips), against `etherparse` in both directions, and
//! robustness of `parse_frame` on arbitrary and mutated input.

use super::icmpv6::{DomainList, PrefixInfo};
use super::*;
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const GUEST: MacAddr = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
const US: MacAddr = MacAddr::PASST_DEFAULT;

fn v4(src: Ipv4Addr, dst: Ipv4Addr) -> Ipv4Repr {
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: 0,
        hop_limit: 64,
        dscp: 0,
        ecn: 0,
        ident: 0,
        dont_frag: true,
        payload_len: 0,
    }
}

fn v6(src: Ipv6Addr, dst: Ipv6Addr) -> Ipv6Repr {
    Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: 0,
        hop_limit: 255,
        traffic_class: 0,
        flow_label: 0,
        ext_headers_len: 0,
        payload_len: 0,
    }
}

// --- strategies -------------------------------------------------------------

fn arb_mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}
fn arb_v4addr() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}
fn arb_v6addr() -> impl Strategy<Value = Ipv6Addr> {
    any::<[u8; 16]>().prop_map(Ipv6Addr::from)
}
fn arb_ipv4() -> impl Strategy<Value = Ipv4Repr> {
    (
        arb_v4addr(),
        arb_v4addr(),
        any::<u8>(),
        0u8..64,
        0u8..4,
        any::<u16>(),
        any::<bool>(),
    )
        .prop_map(|(s, d, ttl, dscp, ecn, ident, df)| Ipv4Repr {
            src_addr: s,
            dst_addr: d,
            protocol: 0,
            hop_limit: ttl,
            dscp,
            ecn,
            ident,
            dont_frag: df,
            payload_len: 0,
        })
}
fn arb_ipv6() -> impl Strategy<Value = Ipv6Repr> {
    (
        arb_v6addr(),
        arb_v6addr(),
        any::<u8>(),
        any::<u8>(),
        0u32..(1 << 20),
    )
        .prop_map(|(s, d, hl, tc, fl)| Ipv6Repr {
            src_addr: s,
            dst_addr: d,
            next_header: 0,
            hop_limit: hl,
            traffic_class: tc,
            flow_label: fl,
            ext_headers_len: 0,
            payload_len: 0,
        })
}
fn arb_ip() -> impl Strategy<Value = IpRepr> {
    prop_oneof![
        arb_ipv4().prop_map(IpRepr::V4),
        arb_ipv6().prop_map(IpRepr::V6)
    ]
}
fn arb_tcp() -> impl Strategy<Value = TcpRepr> {
    let opts = (
        proptest::option::of(any::<u16>()),
        proptest::option::of(0u8..15),
        any::<bool>(),
        proptest::option::of(any::<(u32, u32)>()),
        proptest::collection::vec(any::<(u32, u32)>(), 0..=4),
    )
        .prop_map(|(mss, ws, sp, ts, sack)| {
            let mut o = TcpOptions {
                mss,
                window_scale: ws,
                sack_permitted: sp,
                timestamps: ts,
                ..TcpOptions::default()
            };
            // Keep what fits in 40 bytes: drop SACK blocks until it does.
            let mut n = sack.len();
            loop {
                o.sack_count = n as u8;
                for (i, (l, r)) in sack.iter().take(n).enumerate() {
                    o.sack_blocks[i] = SackBlock {
                        left: *l,
                        right: *r,
                    };
                }
                if o.emitted_len() <= 40 {
                    break;
                }
                n -= 1;
            }
            o
        });
    (
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        opts,
    )
        .prop_map(
            |(sp, dp, seq, ack, flags, window, urgent, options)| TcpRepr {
                src_port: sp,
                dst_port: dp,
                seq,
                ack,
                flags: TcpFlags(flags),
                window,
                urgent,
                options,
            },
        )
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..300)
}

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9-]{1,20}"
}
fn domain() -> impl Strategy<Value = String> {
    proptest::collection::vec(label(), 1..4).prop_map(|l| l.join("."))
}

// --- round trips ------------------------------------------------------------

proptest! {
    #[test]
    fn udp_round_trip(src in arb_mac(), dst in arb_mac(), ip in arb_ip(), sp: u16, dp: u16, data in payload(), pad in 0usize..20) {
        let udp = UdpRepr { src_port: sp, dst_port: dp };
        let mut buf = vec![0u8; 400];
        let n = build_udp(&mut buf, src, dst, ip, &udp, &data).unwrap();
        // Trailing Ethernet padding never changes the result.
        let frame = &buf[..n + pad];
        let f = parse_frame(frame).unwrap();
        prop_assert_eq!(f.eth, EthernetRepr { src, dst, ethertype: match ip { IpRepr::V4(_) => ethertype::IPV4, IpRepr::V6(_) => ethertype::IPV6 } });
        match (f.l3, ip) {
            (L3::Ipv4 { ip: got, l4 }, IpRepr::V4(want)) => {
                prop_assert_eq!(got, Ipv4Repr { protocol: 17, payload_len: 8 + data.len(), ..want });
                prop_assert_eq!(l4, L4::Udp { udp, payload: &data[..] });
            }
            (L3::Ipv6 { ip: got, l4 }, IpRepr::V6(want)) => {
                prop_assert_eq!(got, Ipv6Repr { next_header: 17, payload_len: 8 + data.len(), ..want });
                prop_assert_eq!(l4, L4::Udp { udp, payload: &data[..] });
            }
            (l3, _) => prop_assert!(false, "wrong family {:?}", l3),
        }
    }

    #[test]
    fn tcp_round_trip(ip in arb_ip(), tcp in arb_tcp(), data in payload()) {
        let mut buf = vec![0u8; 500];
        let n = build_tcp(&mut buf, US, GUEST, ip, &tcp, &data).unwrap();
        let f = parse_frame(&buf[..n]).unwrap();
        let l4 = match f.l3 { L3::Ipv4 { l4, .. } | L3::Ipv6 { l4, .. } => l4, L3::Arp(_) => unreachable!() };
        prop_assert_eq!(l4, L4::Tcp { tcp, payload: &data[..] });
    }

    #[test]
    fn tcp_with_closure_writes_less(ip in arb_ip(), tcp in arb_tcp(), data in payload(), max in 0usize..300) {
        let mut buf = vec![0u8; 500];
        let n = build_tcp_with(&mut buf, US, GUEST, ip, &tcp, max, |b| {
            let k = data.len().min(b.len());
            b[..k].copy_from_slice(&data[..k]);
            k
        }).unwrap();
        let want = data.len().min(max);
        let f = parse_frame(&buf[..n]).unwrap();
        let l4 = match f.l3 { L3::Ipv4 { l4, .. } | L3::Ipv6 { l4, .. } => l4, L3::Arp(_) => unreachable!() };
        prop_assert_eq!(l4, L4::Tcp { tcp, payload: &data[..want] });
    }

    #[test]
    fn icmpv4_round_trip(ip in arb_ipv4(), kind in 0u8..5, code: u8, rest: u32, a: u16, b: u16, data in payload()) {
        let icmp = match kind {
            0 => Icmpv4Repr::EchoRequest { ident: a, seq_no: b, data: &data },
            1 => Icmpv4Repr::EchoReply { ident: a, seq_no: b, data: &data },
            2 => Icmpv4Repr::DstUnreachable { code, rest, data: &data },
            3 => Icmpv4Repr::TimeExceeded { code, rest, data: &data },
            _ => Icmpv4Repr::Other { msg_type: 13 + (code % 5), code, rest, data: &data },
        };
        let mut buf = vec![0u8; 400];
        let n = build_icmpv4(&mut buf, US, GUEST, &ip, &icmp).unwrap();
        let f = parse_frame(&buf[..n]).unwrap();
        let L3::Ipv4 { l4, .. } = f.l3 else { panic!() };
        prop_assert_eq!(l4, L4::Icmpv4(icmp));
    }

    #[test]
    fn icmpv6_round_trip(ip in arb_ipv6(), kind in 0u8..6, code: u8, rest: u32, a: u16, b: u16, data in payload()) {
        let icmp = match kind {
            0 => Icmpv6Repr::EchoRequest { ident: a, seq_no: b, data: &data },
            1 => Icmpv6Repr::EchoReply { ident: a, seq_no: b, data: &data },
            2 => Icmpv6Repr::DstUnreachable { code, data: &data },
            3 => Icmpv6Repr::PacketTooBig { mtu: rest, data: &data },
            4 => Icmpv6Repr::TimeExceeded { code, data: &data },
            _ => Icmpv6Repr::Other { msg_type: 140 + (code % 50), code, rest, data: &data },
        };
        let mut buf = vec![0u8; 400];
        let n = build_icmpv6(&mut buf, US, GUEST, &ip, &icmp).unwrap();
        let f = parse_frame(&buf[..n]).unwrap();
        let L3::Ipv6 { l4, .. } = f.l3 else { panic!() };
        prop_assert_eq!(l4, L4::Icmpv6(icmp));
    }

    #[test]
    fn ndp_round_trip(
        ip in arb_ipv6(), mac in arb_mac(), target in arb_v6addr(), dest in arb_v6addr(),
        flags in any::<[bool; 3]>(), hop: u8, life: u16, reach: u32, retrans: u32,
        mtu: u32, plen in 0u8..=128, lifetimes: (u32, u32),
        dns in proptest::collection::vec(arb_v6addr(), 0..4),
        search in proptest::collection::vec(domain(), 0..4),
        unknown in proptest::collection::vec(any::<u8>(), 0..3).prop_map(|v| vec![0xab; 6 + 8 * v.len()]),
        kind in 0u8..5,
    ) {
        let mut opts = vec![
            NdpOption::SourceLinkAddr(mac),
            NdpOption::Mtu(mtu),
            NdpOption::PrefixInfo(PrefixInfo {
                prefix_len: plen, on_link: flags[0], autonomous: flags[1],
                valid_lifetime: lifetimes.0, preferred_lifetime: lifetimes.1, prefix: target,
            }),
            NdpOption::TargetLinkAddr(mac),
            NdpOption::Unknown { kind: 200, data: &unknown },
        ];
        if !dns.is_empty() {
            opts.push(NdpOption::Rdnss { lifetime: reach, servers: AddrList::Slice(&dns) });
        }
        if !search.is_empty() {
            opts.push(NdpOption::Dnssl { lifetime: retrans, domains: DomainList::Names(&search) });
        }
        let options = NdpOptions::List(&opts);
        let ndp = match kind {
            0 => NdpRepr::RouterSolicit { options },
            1 => NdpRepr::RouterAdvert {
                cur_hop_limit: hop, managed: flags[0], other_config: flags[1],
                router_lifetime: life, reachable_time: reach, retrans_timer: retrans, options,
            },
            2 => NdpRepr::NeighborSolicit { target, options },
            3 => NdpRepr::NeighborAdvert { router: flags[0], solicited: flags[1], override_: flags[2], target, options },
            _ => NdpRepr::Redirect { target, destination: dest, options },
        };
        let icmp = Icmpv6Repr::Ndp(ndp);
        let mut buf = vec![0u8; 1500];
        let n = build_icmpv6(&mut buf, US, GUEST, &ip, &icmp).unwrap();
        let f = parse_frame(&buf[..n]).unwrap();
        let L3::Ipv6 { l4, .. } = f.l3 else { panic!() };
        prop_assert_eq!(l4, L4::Icmpv6(icmp));
        // And the domain names come back as the same text.
        if let L4::Icmpv6(Icmpv6Repr::Ndp(parsed)) = l4 {
            let names: Vec<String> = parsed.options().iter().filter_map(|o| match o {
                NdpOption::Dnssl { domains, .. } => Some(domains.names().map(|n| n.to_string()).collect::<Vec<_>>()),
                _ => None,
            }).flatten().collect();
            prop_assert_eq!(names, search);
        }
    }

    #[test]
    fn arp_round_trip(src in arb_mac(), dst in arb_mac(), op: bool, shw in arb_mac(), sip in arb_v4addr(), thw in arb_mac(), tip in arb_v4addr()) {
        let arp = ArpRepr {
            operation: if op { ArpOperation::Request } else { ArpOperation::Reply },
            sender_hw: shw, sender_ip: sip, target_hw: thw, target_ip: tip,
        };
        let mut buf = [0u8; 60];
        let n = build_arp(&mut buf, src, dst, &arp).unwrap();
        prop_assert_eq!(n, 42);
        // Padded to the Ethernet minimum, as on a real wire.
        let f = parse_frame(&buf).unwrap();
        prop_assert_eq!(f.l3, L3::Arp(arp));
        prop_assert_eq!(f.eth.src, src);
    }

    #[test]
    fn builders_refuse_small_buffers(ip in arb_ip(), tcp in arb_tcp(), data in payload(), cut in 0usize..100) {
        let mut big = vec![0u8; 600];
        let n = build_tcp(&mut big, US, GUEST, ip, &tcp, &data).unwrap();
        let short = n.saturating_sub(1 + cut);
        let mut small = vec![0u8; short];
        prop_assert_eq!(build_tcp(&mut small, US, GUEST, ip, &tcp, &data), Err(WireError::Truncated));
        let udp = UdpRepr { src_port: 1, dst_port: 2 };
        prop_assert_eq!(build_udp(&mut small[..short.min(20)], US, GUEST, ip, &udp, &data), Err(WireError::Truncated));
    }
}

// --- robustness ---------------------------------------------------------------

/// Walks everything a parsed frame exposes, so lazy iterators run too.
fn touch(f: &Frame<'_>) -> usize {
    let l4 = match f.l3 {
        L3::Arp(_) => return 0,
        L3::Ipv4 { l4, .. } | L3::Ipv6 { l4, .. } => l4,
    };
    match l4 {
        L4::Icmpv6(Icmpv6Repr::Ndp(ndp)) => ndp
            .options()
            .iter()
            .map(|o| match o {
                NdpOption::Dnssl { domains, .. } => {
                    domains.names().map(|n| n.to_string().len()).sum()
                }
                NdpOption::Rdnss { servers, .. } => servers.iter().count(),
                _ => 1,
            })
            .sum(),
        L4::Tcp { tcp, payload } => tcp.options.sack().len() + payload.len(),
        _ => 1,
    }
}

fn sample_frames() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1500];
    let ip4 = v4(Ipv4Addr::new(192, 0, 2, 15), Ipv4Addr::new(192, 0, 2, 1));
    let ip6 = v6("fe80::2".parse().unwrap(), "ff02::1".parse().unwrap());
    let mut tcp = TcpRepr {
        flags: TcpFlags::SYN,
        ..TcpRepr::default()
    };
    tcp.options.mss = Some(1460);
    tcp.options.sack_permitted = true;
    tcp.options.timestamps = Some((1, 2));
    tcp.options.window_scale = Some(7);
    for ip in [IpRepr::V4(ip4), IpRepr::V6(ip6)] {
        let n = build_tcp(&mut buf, US, GUEST, ip, &tcp, b"hello").unwrap();
        out.push(buf[..n].to_vec());
        let udp = UdpRepr {
            src_port: 68,
            dst_port: 67,
        };
        let n = build_udp(&mut buf, US, GUEST, ip, &udp, b"dhcp?").unwrap();
        out.push(buf[..n].to_vec());
    }
    let search = ["example.test".to_string()];
    let dns = ["2001:db8::53".parse().unwrap()];
    let opts = [
        NdpOption::SourceLinkAddr(US),
        NdpOption::Rdnss {
            lifetime: 1,
            servers: AddrList::Slice(&dns),
        },
        NdpOption::Dnssl {
            lifetime: 1,
            domains: DomainList::Names(&search),
        },
    ];
    let ra = Icmpv6Repr::Ndp(NdpRepr::RouterAdvert {
        cur_hop_limit: 64,
        managed: false,
        other_config: false,
        router_lifetime: 1800,
        reachable_time: 0,
        retrans_timer: 0,
        options: NdpOptions::List(&opts),
    });
    let n = build_icmpv6(&mut buf, US, GUEST, &ip6, &ra).unwrap();
    out.push(buf[..n].to_vec());
    let arp = ArpRepr {
        operation: ArpOperation::Request,
        sender_hw: GUEST,
        sender_ip: Ipv4Addr::new(192, 0, 2, 15),
        target_hw: MacAddr::ZERO,
        target_ip: Ipv4Addr::new(192, 0, 2, 1),
    };
    let n = build_arp(&mut buf, GUEST, MacAddr::BROADCAST, &arp).unwrap();
    out.push(buf[..n].to_vec());
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), et in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x0806), any::<u16>()]) {
        let mut frame = bytes.clone();
        if frame.len() >= 14 {
            frame[12..14].copy_from_slice(&et.to_be_bytes());
        }
        if let Ok(f) = parse_frame(&frame) {
            touch(&f);
        }
    }

    #[test]
    fn mutated_frames_never_panic(which in 0usize..6, edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        let frames = sample_frames();
        let mut f = frames[which % frames.len()].clone();
        for (at, v) in edits {
            let i = at % f.len();
            f[i] = v;
        }
        let keep = if cut % 3 == 0 { cut % (f.len() + 1) } else { f.len() };
        if let Ok(p) = parse_frame(&f[..keep]) {
            touch(&p);
        }
    }
}

#[test]
fn unknown_ethertypes_and_vlan() {
    let mut f = sample_frames().remove(0);
    f[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
    assert_eq!(parse_frame(&f), Err(WireError::UnknownEtherType(0x8100)));
    f[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    assert_eq!(parse_frame(&f), Err(WireError::UnknownEtherType(0x88cc)));
    assert_eq!(
        DropReason::from(WireError::UnknownEtherType(1)),
        DropReason::UnknownEtherType
    );
    assert_eq!(
        DropReason::from(WireError::Unsupported),
        DropReason::UnsupportedProtocol
    );
}

#[test]
fn every_sample_parses() {
    for f in sample_frames() {
        let p = parse_frame(&f).unwrap();
        assert!(touch(&p) > 0 || matches!(p.l3, L3::Arp(_)));
    }
}

// --- etherparse cross-checks --------------------------------------------------

#[test]
fn etherparse_udp_v4_parses_with_ours() {
    let b = PacketBuilder::ethernet2(GUEST.0, US.0)
        .ipv4([192, 0, 2, 15], [192, 0, 2, 53], 33)
        .udp(5353, 53);
    let mut v = Vec::new();
    b.write(&mut v, b"query").unwrap();
    let f = parse_frame(&v).unwrap();
    assert_eq!(f.eth.src, GUEST);
    assert_eq!(f.eth.dst, US);
    let L3::Ipv4 { ip, l4 } = f.l3 else { panic!() };
    assert_eq!(ip.src_addr, Ipv4Addr::new(192, 0, 2, 15));
    assert_eq!(ip.dst_addr, Ipv4Addr::new(192, 0, 2, 53));
    assert_eq!(ip.hop_limit, 33);
    assert_eq!(ip.protocol, 17);
    assert_eq!(
        l4,
        L4::Udp {
            udp: UdpRepr {
                src_port: 5353,
                dst_port: 53
            },
            payload: b"query"
        }
    );
}

#[test]
fn etherparse_tcp_v6_with_options_parses_with_ours() {
    use etherparse::TcpOptionElement::*;
    let b = PacketBuilder::ethernet2(GUEST.0, US.0)
        .ipv6(
            "2001:db8::15".parse::<Ipv6Addr>().unwrap().octets(),
            "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets(),
            64,
        )
        .tcp(40000, 443, 1000, 65535)
        .syn()
        .ack(77)
        .options(&[
            MaximumSegmentSize(1440),
            Noop,
            WindowScale(9),
            SelectiveAcknowledgementPermitted,
            Timestamp(11, 22),
            SelectiveAcknowledgement((5, 6), [Some((7, 8)), None, None]),
        ])
        .unwrap();
    let mut v = Vec::new();
    b.write(&mut v, b"xyz").unwrap();
    let f = parse_frame(&v).unwrap();
    let L3::Ipv6 { ip, l4 } = f.l3 else { panic!() };
    assert_eq!(ip.next_header, 6);
    let L4::Tcp { tcp, payload } = l4 else {
        panic!()
    };
    assert_eq!(payload, b"xyz");
    assert_eq!(
        (tcp.src_port, tcp.dst_port, tcp.seq, tcp.ack),
        (40000, 443, 1000, 77)
    );
    assert_eq!(tcp.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(tcp.window, 65535);
    assert_eq!(tcp.options.mss, Some(1440));
    assert_eq!(tcp.options.window_scale, Some(9));
    assert!(tcp.options.sack_permitted);
    assert_eq!(tcp.options.timestamps, Some((11, 22)));
    assert_eq!(
        tcp.options.sack(),
        &[
            SackBlock { left: 5, right: 6 },
            SackBlock { left: 7, right: 8 }
        ]
    );
}

#[test]
fn etherparse_icmp_echo_parses_with_ours() {
    let b = PacketBuilder::ethernet2(GUEST.0, US.0)
        .ipv4([192, 0, 2, 15], [198, 51, 100, 1], 64)
        .icmpv4_echo_request(0x42, 7);
    let mut v = Vec::new();
    b.write(&mut v, b"ping data").unwrap();
    let L3::Ipv4 { l4, .. } = parse_frame(&v).unwrap().l3 else {
        panic!()
    };
    assert_eq!(
        l4,
        L4::Icmpv4(Icmpv4Repr::EchoRequest {
            ident: 0x42,
            seq_no: 7,
            data: b"ping data"
        })
    );

    let src: Ipv6Addr = "2001:db8::15".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8:ffff::1".parse().unwrap();
    let b = PacketBuilder::ethernet2(GUEST.0, US.0)
        .ipv6(src.octets(), dst.octets(), 64)
        .icmpv6_echo_request(0x43, 8);
    let mut v = Vec::new();
    b.write(&mut v, b"ping6").unwrap();
    let L3::Ipv6 { l4, .. } = parse_frame(&v).unwrap().l3 else {
        panic!()
    };
    assert_eq!(
        l4,
        L4::Icmpv6(Icmpv6Repr::EchoRequest {
            ident: 0x43,
            seq_no: 8,
            data: b"ping6"
        })
    );
}

#[test]
fn etherparse_arp_parses_with_ours() {
    let arp = etherparse::ArpPacket::new(
        etherparse::ArpHardwareId::ETHERNET,
        etherparse::EtherType::IPV4,
        etherparse::ArpOperation::REQUEST,
        &GUEST.0,
        &[192, 0, 2, 15],
        &[0; 6],
        &[192, 0, 2, 1],
    )
    .unwrap();
    let b = PacketBuilder::ethernet2(GUEST.0, [0xff; 6]).arp(arp);
    let mut v = Vec::new();
    b.write(&mut v).unwrap();
    let L3::Arp(a) = parse_frame(&v).unwrap().l3 else {
        panic!()
    };
    assert_eq!(a.operation, ArpOperation::Request);
    assert_eq!(a.sender_hw, GUEST);
    assert_eq!(a.sender_ip, Ipv4Addr::new(192, 0, 2, 15));
    assert_eq!(a.target_ip, Ipv4Addr::new(192, 0, 2, 1));
}

proptest! {
    /// Frames we build are accepted by etherparse, with every checksum
    /// recomputed by etherparse equal to ours.
    #[test]
    fn ours_parse_with_etherparse(ip in arb_ip(), tcp in arb_tcp(), data in payload(), udp_or_tcp: bool) {
        let mut buf = vec![0u8; 600];
        let n = if udp_or_tcp {
            build_tcp(&mut buf, US, GUEST, ip, &tcp, &data).unwrap()
        } else {
            build_udp(&mut buf, US, GUEST, ip, &UdpRepr { src_port: tcp.src_port, dst_port: tcp.dst_port }, &data).unwrap()
        };
        let p = SlicedPacket::from_ethernet(&buf[..n]).unwrap();
        let (src4, dst4, src6, dst6) = match p.net.as_ref().unwrap() {
            etherparse::NetSlice::Ipv4(s) => {
                let h = s.header();
                prop_assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
                (Some(h.source()), Some(h.destination()), None, None)
            }
            etherparse::NetSlice::Ipv6(s) => {
                let h = s.header();
                (None, None, Some(h.source()), Some(h.destination()))
            }
            etherparse::NetSlice::Arp(_) => unreachable!(),
        };
        match p.transport.unwrap() {
            TransportSlice::Tcp(t) => {
                prop_assert!(udp_or_tcp);
                prop_assert_eq!(t.source_port(), tcp.src_port);
                prop_assert_eq!(t.sequence_number(), tcp.seq);
                prop_assert_eq!(t.payload(), &data[..]);
                let want = match (src4, src6) {
                    (Some(s), _) => t.calc_checksum_ipv4(s, dst4.unwrap()).unwrap(),
                    (_, Some(s)) => t.calc_checksum_ipv6(s, dst6.unwrap()).unwrap(),
                    _ => unreachable!(),
                };
                prop_assert_eq!(t.checksum(), want);
                // Options as etherparse reads them.
                for o in t.options_iterator() {
                    match o.unwrap() {
                        etherparse::TcpOptionElement::MaximumSegmentSize(m) => prop_assert_eq!(Some(m), tcp.options.mss),
                        etherparse::TcpOptionElement::WindowScale(w) => prop_assert_eq!(Some(w), tcp.options.window_scale),
                        etherparse::TcpOptionElement::Timestamp(a, b) => prop_assert_eq!(Some((a, b)), tcp.options.timestamps),
                        etherparse::TcpOptionElement::SelectiveAcknowledgementPermitted => prop_assert!(tcp.options.sack_permitted),
                        etherparse::TcpOptionElement::SelectiveAcknowledgement(first, _) => prop_assert_eq!(first, (tcp.options.sack()[0].left, tcp.options.sack()[0].right)),
                        etherparse::TcpOptionElement::Noop => {}
                    }
                }
            }
            TransportSlice::Udp(u) => {
                prop_assert!(!udp_or_tcp);
                prop_assert_eq!(u.payload(), &data[..]);
                let h = u.to_header();
                let want = match (src4, src6) {
                    (Some(s), _) => h.calc_checksum_ipv4_raw(s, dst4.unwrap(), &data).unwrap(),
                    (_, Some(s)) => h.calc_checksum_ipv6_raw(s, dst6.unwrap(), &data).unwrap(),
                    _ => unreachable!(),
                };
                prop_assert_eq!(u.checksum(), want);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn our_icmp_parses_with_etherparse(ip4 in arb_ipv4(), ip6 in arb_ipv6(), a: u16, b: u16, data in payload()) {
        let mut buf = vec![0u8; 600];
        let n = build_icmpv4(&mut buf, US, GUEST, &ip4, &Icmpv4Repr::EchoReply { ident: a, seq_no: b, data: &data }).unwrap();
        let p = SlicedPacket::from_ethernet(&buf[..n]).unwrap();
        let Some(TransportSlice::Icmpv4(s)) = p.transport else { panic!() };
        let hdr = etherparse::Icmpv4Header::with_checksum(s.icmp_type(), s.payload());
        prop_assert_eq!(hdr.checksum, s.checksum());
        prop_assert_eq!(s.icmp_type(), etherparse::Icmpv4Type::EchoReply(etherparse::IcmpEchoHeader { id: a, seq: b }));
        prop_assert_eq!(s.payload(), &data[..]);

        let mut buf = vec![0u8; 600];
        let n = build_icmpv6(&mut buf, US, GUEST, &ip6, &Icmpv6Repr::EchoReply { ident: a, seq_no: b, data: &data }).unwrap();
        let p = SlicedPacket::from_ethernet(&buf[..n]).unwrap();
        let Some(TransportSlice::Icmpv6(s)) = p.transport else { panic!() };
        prop_assert!(s.is_checksum_valid(ip6.src_addr.octets(), ip6.dst_addr.octets()));
        prop_assert_eq!(s.icmp_type(), etherparse::Icmpv6Type::EchoReply(etherparse::IcmpEchoHeader { id: a, seq: b }));
    }
}

#[test]
fn our_router_advert_parses_with_etherparse() {
    let frames = sample_frames();
    let ra = frames
        .iter()
        .find(|f| {
            matches!(
                parse_frame(f).map(|p| p.l3),
                Ok(L3::Ipv6 {
                    l4: L4::Icmpv6(Icmpv6Repr::Ndp(NdpRepr::RouterAdvert { .. })),
                    ..
                })
            )
        })
        .unwrap();
    let p = SlicedPacket::from_ethernet(ra).unwrap();
    let Some(TransportSlice::Icmpv6(s)) = p.transport else {
        panic!()
    };
    let src: Ipv6Addr = "fe80::2".parse().unwrap();
    let dst: Ipv6Addr = "ff02::1".parse().unwrap();
    assert!(s.is_checksum_valid(src.octets(), dst.octets()));
    let etherparse::Icmpv6Type::RouterAdvertisement(h) = s.icmp_type() else {
        panic!("{:?}", s.icmp_type())
    };
    assert_eq!(h.cur_hop_limit, 64);
    assert_eq!(h.router_lifetime, 1800);
    let Ok(etherparse::icmpv6::Icmpv6PayloadSlice::RouterAdvertisement(ra)) = s.payload_slice()
    else {
        panic!()
    };
    let kinds: Vec<u8> = ra
        .options_iterator()
        .map(|o| o.unwrap().option_type().0)
        .collect();
    assert_eq!(kinds, [1, 25, 31]);
}
