//! Shared harness for the UDP/ICMP real-kernel tests: a scripted guest
//! (frames built with the engine's wire builders), an `Engine<RealHost>`
//! driven by hand with explicit `now` values, and a private network
//! namespace per test thread so only its own loopback is ever used.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use passt_engine::runtime::host::RealHost;
use passt_engine::wire::{
    self, Icmpv4Repr, Icmpv6Repr, IpRepr, Ipv4Repr, Ipv6Repr, L3, L4, UdpRepr,
};
use passt_engine::{Config, Engine, Instant, MacAddr, Readiness, Token};

pub const GUEST_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x15]);
pub const GUEST4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 15);
pub const GW4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const GUEST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x15);
pub const GUEST6_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x15);
pub const GW6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

#[path = "../netns/mod.rs"]
mod netns;

/// Moves this test thread into a network namespace of its own with `lo`
/// up (root only). Returns false when that is not possible (then the
/// host's loopback is used, which is still loopback-only).
pub fn enter_private_netns() -> bool {
    netns::enter_private_netns().is_ok()
}

/// Whether ::1 works here.
pub fn ipv6_loopback() -> bool {
    std::net::UdpSocket::bind("[::1]:0").is_ok()
}

pub struct Harness {
    pub engine: Engine<RealHost>,
    pub now: Instant,
    events: Vec<(Token, Readiness)>,
}

impl Harness {
    pub fn new(config: Config) -> Harness {
        let mut config = config;
        config.guest_mac = Some(GUEST_MAC);
        // No unsolicited router advertisements among the frames we check.
        config.services.ra = false;
        let host = RealHost::new().expect("RealHost");
        Harness {
            engine: Engine::new(config, host, 7).expect("engine"),
            now: Instant::from_secs(1),
            events: Vec::new(),
        }
    }

    pub fn our_mac(&self) -> MacAddr {
        self.engine.config().our_mac
    }

    /// A guest UDP frame.
    pub fn udp_frame(&self, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let ip = ip_repr(src.ip(), dst.ip());
        let mut buf = vec![0u8; ip.headers_len() + 8 + payload.len()];
        let n = wire::build_udp(
            &mut buf,
            GUEST_MAC,
            self.our_mac(),
            ip,
            &UdpRepr {
                src_port: src.port(),
                dst_port: dst.port(),
            },
            payload,
        )
        .expect("build");
        buf.truncate(n);
        buf
    }

    /// One guest datagram as a batch of one: `handle_frame` then
    /// `flush`, as the event loop does after a read.
    pub fn send_udp(&mut self, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        self.queue_udp(src, dst, payload);
        self.engine.flush(self.now);
    }

    /// One guest datagram handed to the engine without flushing (a batch
    /// in progress).
    pub fn queue_udp(&mut self, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        let f = self.udp_frame(src, dst, payload);
        self.engine.handle_frame(self.now, &f);
    }

    /// Feeds host readiness for up to `wait`, until `done` says stop or
    /// `wait` passes. Bounded in time.
    pub fn pump_until(&mut self, wait: Duration, mut done: impl FnMut(&mut Self) -> bool) {
        let deadline = std::time::Instant::now() + wait;
        loop {
            if done(self) {
                return;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            self.events.clear();
            let mut evs = std::mem::take(&mut self.events);
            self.engine
                .host_mut()
                .wait(Some(left.min(Duration::from_millis(50))), &mut evs)
                .expect("wait");
            for (t, r) in &evs {
                self.engine.handle_host_event(self.now, *t, *r);
            }
            self.events = evs;
        }
    }

    /// One round of readiness (up to `wait`).
    pub fn pump(&mut self, wait: Duration) {
        let mut first = true;
        self.pump_until(wait, |_| !std::mem::replace(&mut first, false));
    }

    /// Drains the transmit queue.
    pub fn take_frames(&mut self) -> Vec<Vec<u8>> {
        let q = self.engine.tx_queue();
        let v: Vec<Vec<u8>> = q.iter().map(|f| f.to_vec()).collect();
        q.consume(v.len());
        v
    }

    /// Pumps until at least one frame is queued for the guest; returns
    /// them all.
    pub fn expect_frames(&mut self, wait: Duration) -> Vec<Vec<u8>> {
        self.pump_until(wait, |h| !h.engine.tx_queue().is_empty());
        self.take_frames()
    }
}

pub fn ip_repr(src: IpAddr, dst: IpAddr) -> IpRepr {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => IpRepr::V4(Ipv4Repr {
            src_addr: s,
            dst_addr: d,
            protocol: 17,
            hop_limit: 64,
            dscp: 0,
            ecn: 0,
            ident: 1,
            dont_frag: true,
            payload_len: 0,
        }),
        (IpAddr::V6(s), IpAddr::V6(d)) => IpRepr::V6(Ipv6Repr {
            src_addr: s,
            dst_addr: d,
            next_header: 17,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            ext_headers_len: 0,
            payload_len: 0,
        }),
        _ => panic!("mixed families"),
    }
}

/// A UDP datagram as the guest receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestUdp {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: Vec<u8>,
}

/// Decodes a frame for the guest as UDP (checksums verified by the
/// engine's own parser and cross-checked with etherparse).
pub fn as_udp(frame: &[u8]) -> Option<GuestUdp> {
    let f = wire::parse_frame(frame).ok()?;
    let (src, dst, udp, payload) = match f.l3 {
        L3::Ipv4 {
            ip,
            l4: L4::Udp { udp, payload },
        } => (
            IpAddr::V4(ip.src_addr),
            IpAddr::V4(ip.dst_addr),
            udp,
            payload,
        ),
        L3::Ipv6 {
            ip,
            l4: L4::Udp { udp, payload },
        } => (
            IpAddr::V6(ip.src_addr),
            IpAddr::V6(ip.dst_addr),
            udp,
            payload,
        ),
        _ => return None,
    };
    let ep = etherparse::SlicedPacket::from_ethernet(frame).expect("etherparse");
    match ep.transport {
        Some(etherparse::TransportSlice::Udp(u)) => {
            assert_eq!(u.source_port(), udp.src_port);
            assert_eq!(u.payload(), payload);
        }
        other => panic!("etherparse disagrees: {other:?}"),
    }
    Some(GuestUdp {
        src: SocketAddr::new(src, udp.src_port),
        dst: SocketAddr::new(dst, udp.dst_port),
        payload: payload.to_vec(),
    })
}

/// A port nothing listens on (bound then released).
pub fn closed_port(ip: IpAddr) -> u16 {
    let s = std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind");
    s.local_addr().expect("addr").port()
}

/// An ICMP/ICMPv6 echo request from the guest, built with the engine's
/// wire builders.
pub fn echo_frame(
    h: &Harness,
    src: IpAddr,
    dst: IpAddr,
    ident: u16,
    seq_no: u16,
    data: &[u8],
) -> Vec<u8> {
    let mut buf = vec![0u8; 14 + 40 + 8 + data.len()];
    let n = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => wire::build_icmpv4(
            &mut buf,
            GUEST_MAC,
            h.our_mac(),
            &Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                protocol: 1,
                hop_limit: 64,
                dscp: 0,
                ecn: 0,
                ident: 9,
                dont_frag: true,
                payload_len: 0,
            },
            &Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            },
        ),
        (IpAddr::V6(s), IpAddr::V6(d)) => wire::build_icmpv6(
            &mut buf,
            GUEST_MAC,
            h.our_mac(),
            &Ipv6Repr {
                src_addr: s,
                dst_addr: d,
                next_header: 58,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
                ext_headers_len: 0,
                payload_len: 0,
            },
            &Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            },
        ),
        _ => unreachable!(),
    }
    .expect("build");
    buf.truncate(n);
    buf
}
