//! The properties of the engine's fuzz targets, one function per target,
//! each taking the raw input and panicking on a violation. The cargo-fuzz
//! targets (`fuzz/fuzz_targets/*.rs`, which include this file by path)
//! and the proptest versions in CI (`engine/tests/fuzz_props.rs`) call the
//! same functions, and every crash a fuzzer finds is kept under
//! `engine/tests/fuzz_regressions/TARGET/` and replayed through them.
//!
//! Must never: depend on anything but the engine's public API and
//! `dhcproto` (the fuzz crate builds it too), or loop unbounded.
#![allow(dead_code)]

use std::io::IoSlice;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dhcproto::Decodable;
use passt_engine::cli::{build_config, parse_args};
use passt_engine::dhcp::{self, DhcpOutcome, DhcpRequest};
use passt_engine::dhcpv6::{self, Dhcpv6Outcome, Dhcpv6Request};
use passt_engine::fwd::{ForwardSpecBuilder, Program, SpecContext};
use passt_engine::host_io::NoHost;
use passt_engine::hostnet::{HostIpv4, HostIpv6, HostNetwork, IfAddr};
use passt_engine::runtime::transport::framing::{MAX_FRAME, MIN_FRAME, MIN_PADDED, PREFIX_LEN};
use passt_engine::runtime::{FrameReader, FrameWriter, FramingError};
use passt_engine::wire::parse_frame;
use passt_engine::{Config, Engine, HostError, MacAddr};

/// A target's property: panics on a violation.
pub type Check = fn(&[u8]);

/// The targets, by the names of their fuzz binaries and regression folders.
pub const TARGETS: &[(&str, Check)] = &[
    ("wire", wire),
    ("framing", framing),
    ("dhcp", dhcp),
    ("dhcpv6", dhcpv6),
    ("fwd_spec", fwd_spec),
    ("cli_args", cli_args),
];

/// The wire parser: what it accepts also formats as a log line.
pub fn wire(data: &[u8]) {
    if let Ok(frame) = parse_frame(data) {
        let _ = frame.to_string();
    }
}

/// Whole-stream QEMU framing: the frames, then the error if a bad prefix
/// follows them (what a reader given everything at once must return).
pub fn reference_frames(stream: &[u8]) -> (Vec<&[u8]>, Option<FramingError>) {
    let mut out = Vec::new();
    let mut rest = stream;
    while rest.len() >= PREFIX_LEN {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if !(MIN_FRAME as u32..=MAX_FRAME as u32).contains(&len) {
            return (out, Some(FramingError::BadLength(len)));
        }
        let total = PREFIX_LEN + len as usize;
        if rest.len() < total {
            break;
        }
        out.push(&rest[PREFIX_LEN..total]);
        rest = &rest[total..];
    }
    (out, None)
}

/// The QEMU stream framer. Input: two bytes choosing chunk sizes, then a
/// byte stream. Reader: the stream fed in those chunks to a `FrameReader`
/// with the smallest buffer gives exactly the frames and the error of
/// [`reference_frames`]. Writer: those frames through a `FrameWriter`
/// whose socket takes a few bytes per call decode back to the same
/// frames, zero-padded to the Ethernet minimum.
pub fn framing(data: &[u8]) {
    let [a, b, stream @ ..] = data else { return };
    let chunk = |i: usize| 1 + (usize::from(*a) * 257 + usize::from(*b) * (i + 1)) % 9000;
    let (want, want_err) = reference_frames(stream);

    let mut reader = FrameReader::with_capacity(0);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut got_err = None;
    let mut at = 0;
    let mut i = 0;
    'feed: while at < stream.len() {
        let n = reader.feed(&stream[at..(at + chunk(i)).min(stream.len())]);
        at += n;
        i += 1;
        loop {
            match reader.next_frame() {
                Ok(Some(f)) => got.push(f.to_vec()),
                Ok(None) => break,
                Err(e) => {
                    got_err = Some(e);
                    break 'feed;
                }
            }
        }
        assert!(n > 0, "a reader with no complete frame took nothing");
    }
    assert_eq!(got.len(), want.len(), "frame count");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.as_slice(), *w);
    }
    assert_eq!(got_err, want_err);

    let step = 1 + usize::from(*a) % 700;
    let mut writer = FrameWriter::new();
    let mut wire = Vec::new();
    let mut next = 0;
    // Bounded: every call writes at least one byte.
    let budget = 2 + (stream.len() + want.len() * (PREFIX_LEN + MIN_PADDED)) / step;
    for _ in 0..budget {
        if next == want.len() && !writer.has_pending() {
            break;
        }
        let taken = writer
            .write_frames(want[next..].iter().copied(), |iovs: &[IoSlice<'_>]| {
                let mut left = step;
                for iov in iovs {
                    let n = iov.len().min(left);
                    wire.extend_from_slice(&iov[..n]);
                    left -= n;
                    if left == 0 {
                        break;
                    }
                }
                Ok::<usize, HostError>(step - left)
            })
            .expect("the test socket never fails");
        next += taken;
    }
    assert!(
        next == want.len() && !writer.has_pending(),
        "writer stalled"
    );
    let (back, err) = reference_frames(&wire);
    assert_eq!(err, None);
    assert_eq!(back.len(), want.len());
    for (b, w) in back.iter().zip(&want) {
        assert_eq!(&b[..w.len()], *w);
        assert_eq!(b.len(), w.len().max(MIN_PADDED));
        assert!(b[w.len()..].iter().all(|&x| x == 0), "padding is zeros");
    }
}

/// The client MAC the DHCP targets answer.
pub const CLIENT: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x15]);

/// The DHCP request reader and server: any UDP payload to port 67; every
/// reply decodes with `dhcproto`, is a BOOTREPLY to the client's MAC and
/// stays within the documented size bound.
pub fn dhcp(data: &[u8]) {
    let _ = DhcpRequest::parse(data).map(|r| r.broadcast_flag());
    let mut out = [0u8; 1500];
    let config = Config::example();
    if let DhcpOutcome::Reply(r) = dhcp::handle(&config, CLIENT, data, &mut out) {
        // The documented bound: the link (MTU, at least 576, less 28 for
        // IPv4 and UDP), the client's maximum message size, the buffer.
        let link = usize::from(config.mtu).max(576) - 28;
        assert!(r.len <= out.len().min(link), "reply of {} bytes", r.len);
        let msg = dhcproto::v4::Message::from_bytes(&out[..r.len]).expect("our reply decodes");
        assert_eq!(msg.opcode(), dhcproto::v4::Opcode::BootReply);
        assert_eq!(msg.chaddr(), &CLIENT.0);
    }
}

/// The DHCPv6 request reader, its option iterators and the server: every
/// reply decodes with `dhcproto`, is an ADVERTISE or REPLY with the
/// request's transaction id and our server id.
pub fn dhcpv6(data: &[u8]) {
    if let Ok(req) = Dhcpv6Request::parse(data) {
        let _ = req.options().count();
        let _ = (req.client_id(), req.server_id(), req.rapid_commit());
        let _ = req.ia_nas().count();
        let _ = req.ia_ta_ids().count() + req.ia_pd_ids().count();
        let _ = req.all_ia_addresses().count();
    }
    let ip: Ipv6Addr = "fe80::15".parse().expect("literal");
    let mut out = [0u8; 1500];
    let config = Config::example();
    if let Dhcpv6Outcome::Reply(r) = dhcpv6::handle(&config, CLIENT, ip, data, &mut out) {
        // The documented bound (dhcpv6 module docs): the link (MTU, at
        // least 1280, less 48 for IPv6 and UDP) and the buffer. The
        // example's MTU is 65520, so a full 1500-byte buffer may be used
        // (a fuzzer's finding: this check first said 1500 - 48).
        let link = usize::from(config.mtu).max(1280) - 48;
        assert!(r.len <= out.len().min(link), "reply of {} bytes", r.len);
        let msg = dhcproto::v6::Message::from_bytes(&out[..r.len]).expect("our reply decodes");
        assert!(matches!(
            msg.msg_type(),
            dhcproto::v6::MessageType::Advertise | dhcproto::v6::MessageType::Reply
        ));
        assert_eq!(msg.xid(), [data[1], data[2], data[3]]);
        assert!(msg.opts().get(dhcproto::v6::OptionCode::ServerId).is_some());
    }
}

/// The port-forwarding specification parser: the input's lines are
/// repeated options, for passt and for pasta. Any string gets rules or an
/// error; accepted rules have `first <= last`, map as many guest ports as
/// host ports, and never overlap for the same address and interface.
pub fn fwd_spec(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for program in [Program::Passt, Program::Pasta] {
        let cx = SpecContext::new(program);
        let mut builder = ForwardSpecBuilder::new(cx);
        for line in text.split('\n') {
            let _ = passt_engine::fwd::parse(line, &cx);
            let _ = builder.add(line);
        }
        let spec = builder.finish();
        for (i, rule) in spec.rules.iter().enumerate() {
            assert!(rule.host.first <= rule.host.last, "{rule:?}");
            let guest = rule.guest();
            assert_eq!(
                u32::from(guest.last) - u32::from(guest.first),
                u32::from(rule.host.last) - u32::from(rule.host.first),
                "{rule:?}"
            );
            for other in &spec.rules[i + 1..] {
                if other.addr == rule.addr && other.ifname == rule.ifname {
                    assert_eq!(rule.host.first_common(&other.host), None, "{spec:?}");
                }
            }
        }
    }
}

/// A fixed host network for [`cli_args`].
pub fn host_network() -> HostNetwork {
    HostNetwork {
        ipv4: Some(HostIpv4 {
            ifname: "eth0".into(),
            addr: Ipv4Addr::new(192, 0, 2, 2),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
        }),
        ipv6: Some(HostIpv6 {
            ifname: "eth0".into(),
            addr: "2001:db8::2".parse().expect("literal"),
            prefix_len: 64,
            gateway: Some("fe80::1".parse().expect("literal")),
        }),
        addrs: vec![IfAddr {
            ifname: "eth0".into(),
            addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
            prefix_len: 24,
        }],
        mtu: Some(1500),
        mac: None,
        dns: vec!["192.0.2.53".parse().expect("literal")],
        search: vec!["example.test".into()],
    }
}

/// The command line: the input split at NUL bytes is `argv[1..]`.
/// Options or an error; accepted options through `build_config` against
/// [`host_network`]; an accepted configuration through `Engine::new`.
pub fn cli_args(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let args = std::iter::once("passt").chain(text.split('\0'));
    let Ok(opts) = parse_args(args) else { return };
    let Ok(config) = build_config(&opts, &host_network()) else {
        return;
    };
    let _ = Engine::new(config, NoHost, 1);
}
