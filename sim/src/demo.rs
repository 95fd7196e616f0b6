//! The bring-up demo: a scripted guest configures itself through the
//! engine in virtual time, and the whole conversation is printed decoded.
//!
//! This is what `passt-sim demo` runs (and the first command of the
//! README). The guest is a small scripted client, not a full stack: it
//! sends a DHCPv4 DISCOVER, answers the OFFER with a REQUEST, resolves the
//! gateway by ARP, solicits a router advertisement, resolves the IPv6
//! gateway by NDP, and asks DHCPv6 for an address with Rapid Commit. Every
//! frame crosses a simulated link (1 ms each way) driven by the
//! discrete-event [`Scheduler`]; the engine's own timers (periodic router
//! advertisements) fire in the same virtual time. The engine is fed
//! through the driver contract ([`Driver`]), the engine→guest link being
//! its frame sink. The run is deterministic: the same seed gives the same
//! transcript and the same trace hash.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use dhcproto::{Decodable, Decoder, Encodable, v4, v6};
use passt_engine::driver::{Admit, Driver, FrameSink};
use passt_engine::host_io::NoHost;
use passt_engine::wire::icmpv6::{NdpOption, NdpOptions, NdpRepr};
use passt_engine::wire::{
    self, ArpOperation, ArpRepr, Icmpv6Repr, IpRepr, Ipv4Repr, Ipv6Repr, L3, L4, UdpRepr,
};
use passt_engine::{Config, Engine, Instant, MacAddr, TxQueue};

use crate::fault::FaultChain;
use crate::link::{Link, LinkConfig};
use crate::sched::{Scheduler, StableEncode, TraceHash};
use crate::seed::SimRng;
use crate::simulation::drained;

/// The guest's MAC in the demo.
pub const GUEST_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x15]);

/// What the demo produced.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// One line per frame, with its virtual time and direction.
    pub transcript: String,
    /// Address the guest obtained by DHCPv4.
    pub dhcp_address: Option<Ipv4Addr>,
    /// Address the guest obtained by DHCPv6.
    pub dhcpv6_address: Option<Ipv6Addr>,
    /// Prefix announced by the router advertisement.
    pub ra_prefix: Option<(Ipv6Addr, u8)>,
    /// MAC the gateway resolved to, by ARP.
    pub gateway_mac_v4: Option<MacAddr>,
    /// MAC the IPv6 gateway resolved to, by NDP.
    pub gateway_mac_v6: Option<MacAddr>,
    /// Hash of every processed event (time and bytes).
    pub trace_hash: u64,
    /// Frames into and out of the engine, and its drops.
    pub counters: passt_engine::Counters,
}

#[derive(Debug)]
enum Event {
    ToEngine(Vec<u8>),
    ToGuest(Vec<u8>),
}

/// Runs the demo for `duration` of virtual time.
pub fn run(seed: u64, duration: Duration) -> anyhow::Result<DemoReport> {
    let config = Config::example();
    let mut engine = Engine::new(config.clone(), NoHost, seed)?;
    let mut driver = Driver::for_config(&config);
    let rng = SimRng::from_seed(seed);
    let link_cfg = LinkConfig::new(1_000_000_000, Duration::from_millis(1));
    let mut to_engine = Link::new("guest->engine", link_cfg, FaultChain::new(rng.child("up")));
    let mut to_guest = Link::new(
        "engine->guest",
        link_cfg,
        FaultChain::new(rng.child("down")),
    );
    let mut sched: Scheduler<Event> = Scheduler::new();
    let mut trace = TraceHash::new();
    let mut guest = DemoGuest::new(&config, rng.child("guest").next_u64() as u32);
    let end = Instant::ZERO + duration;
    let mut report = DemoReport {
        transcript: String::new(),
        dhcp_address: None,
        dhcpv6_address: None,
        ra_prefix: None,
        gateway_mac_v4: None,
        gateway_mac_v6: None,
        trace_hash: 0,
        counters: Default::default(),
    };

    for frame in guest.start() {
        log(&mut report.transcript, Instant::ZERO, "guest  >", &frame);
        to_engine.send(&mut sched, frame, Event::ToEngine);
    }

    loop {
        let next_event = sched.peek_time();
        let next_timer = engine.poll_timeout();
        let (at, is_timer) = match (next_event, next_timer) {
            (Some(e), Some(t)) if t < e => (t, true),
            (Some(e), _) => (e, false),
            (None, Some(t)) => (t, true),
            (None, None) => break,
        };
        if at > end {
            break;
        }
        let now = if is_timer {
            sched.advance_to(at).ok();
            trace.record(at, b"engine-timer");
            let mut sink = LinkSink(&mut to_guest, &mut sched);
            drained(driver.timers(&mut engine, &mut sink, at));
            at
        } else {
            let Some((now, event)) = sched.pop_next_traced(&mut trace) else {
                break;
            };
            match event {
                Event::ToEngine(frame) => {
                    let mut sink = LinkSink(&mut to_guest, &mut sched);
                    let admit = drained(driver.guest_frame(&mut engine, &mut sink, now, &frame));
                    drained(driver.flush(&mut engine, &mut sink, now));
                    if admit == Admit::Full {
                        // Offered again once the queue has drained (the
                        // link takes every frame, so at the latest then).
                        sched.schedule(now, Event::ToEngine(frame));
                    }
                }
                Event::ToGuest(frame) => {
                    log(&mut report.transcript, now, "guest  <", &frame);
                    for reply in guest.on_frame(&frame, &mut report) {
                        log(&mut report.transcript, now, "guest  >", &reply);
                        to_engine.send(&mut sched, reply, Event::ToEngine);
                    }
                }
            }
            now
        };
        drained(driver.drain(&mut engine, &mut LinkSink(&mut to_guest, &mut sched), now));
    }
    report.trace_hash = trace.value();
    report.counters = engine.counters().clone();
    Ok(report)
}

/// The driver's frame sink: the engine→guest link, which takes every
/// frame.
struct LinkSink<'a>(&'a mut Link, &'a mut Scheduler<Event>);

impl FrameSink for LinkSink<'_> {
    type Error = Infallible;

    fn accept(&mut self, _now: Instant, frames: &TxQueue) -> Result<usize, Infallible> {
        for frame in frames.iter() {
            self.0.send(self.1, frame.to_vec(), Event::ToGuest);
        }
        Ok(frames.len())
    }
}

fn log(out: &mut String, at: Instant, dir: &str, frame: &[u8]) {
    let _ = write!(out, "{:>14} {dir} ", at.to_string());
    match wire::parse_frame(frame) {
        Ok(parsed) => {
            let _ = write!(out, "{parsed}");
            if let L3::Ipv4 {
                l4: L4::Udp { payload, .. },
                ..
            } = parsed.l3
            {
                describe_dhcp(out, payload);
            }
            if let L3::Ipv6 {
                l4: L4::Udp { udp, payload },
                ..
            } = parsed.l3
            {
                if udp.src_port == 547 || udp.dst_port == 547 {
                    describe_dhcpv6(out, payload);
                }
            }
        }
        Err(e) => {
            let _ = write!(out, "unparsable frame ({e}), {} bytes", frame.len());
        }
    }
    out.push('\n');
}

fn describe_dhcp(out: &mut String, payload: &[u8]) {
    let Ok(msg) = v4::Message::decode(&mut Decoder::new(payload)) else {
        return;
    };
    let kind = match msg.opts().get(v4::OptionCode::MessageType) {
        Some(v4::DhcpOption::MessageType(t)) => format!("{t:?}"),
        _ => "BOOTP".to_string(),
    };
    let _ = write!(
        out,
        "\n{:>14}            DHCP {kind} xid {:#010x}",
        "",
        msg.xid()
    );
    if !msg.yiaddr().is_unspecified() {
        let _ = write!(out, " yiaddr {}", msg.yiaddr());
    }
    for (code, label) in [
        (v4::OptionCode::SubnetMask, "mask"),
        (v4::OptionCode::Router, "router"),
        (v4::OptionCode::DomainNameServer, "dns"),
        (v4::OptionCode::InterfaceMtu, "mtu"),
        (v4::OptionCode::AddressLeaseTime, "lease"),
        (v4::OptionCode::DomainSearch, "search"),
    ] {
        if let Some(opt) = msg.opts().get(code) {
            let v = match opt {
                v4::DhcpOption::SubnetMask(m) => m.to_string(),
                v4::DhcpOption::Router(r) | v4::DhcpOption::DomainNameServer(r) => r
                    .iter()
                    .map(Ipv4Addr::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                v4::DhcpOption::InterfaceMtu(m) => m.to_string(),
                v4::DhcpOption::AddressLeaseTime(t) => format!("{t}s"),
                v4::DhcpOption::DomainSearch(d) => d
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                _ => continue,
            };
            let _ = write!(out, " {label} {v}");
        }
    }
}

fn describe_dhcpv6(out: &mut String, payload: &[u8]) {
    let Ok(msg) = v6::Message::decode(&mut Decoder::new(payload)) else {
        return;
    };
    let _ = write!(out, "\n{:>14}            DHCPv6 {:?}", "", msg.msg_type());
    for opt in msg.opts().iter() {
        match opt {
            v6::DhcpOption::IANA(ia) => {
                for inner in ia.opts.iter() {
                    if let v6::DhcpOption::IAAddr(a) = inner {
                        let _ = write!(out, " ia_na {}", a.addr);
                    }
                }
            }
            v6::DhcpOption::DomainNameServers(s) => {
                for a in s {
                    let _ = write!(out, " dns {a}");
                }
            }
            v6::DhcpOption::RapidCommit => out.push_str(" rapid-commit"),
            _ => {}
        }
    }
}

/// The demo's guest: a tiny state machine over the replies it expects (a
/// fixed client, not the script dialect's `ScriptGuest`).
struct DemoGuest {
    gw4: Ipv4Addr,
    gw6: Ipv6Addr,
    link_local: Ipv6Addr,
    xid: u32,
    xid6: [u8; 3],
    requested: bool,
    arp_sent: bool,
    ndp_sent: bool,
    solicit_sent: bool,
}

impl DemoGuest {
    fn new(config: &Config, xid: u32) -> Self {
        DemoGuest {
            gw4: config
                .ipv4
                .as_ref()
                .map(|v| v.gateway)
                .unwrap_or(Ipv4Addr::UNSPECIFIED),
            gw6: config
                .ipv6
                .as_ref()
                .map(|v| v.gateway)
                .unwrap_or(Ipv6Addr::UNSPECIFIED),
            link_local: GUEST_MAC.ipv6_link_local(),
            xid,
            xid6: [(xid >> 16) as u8 ^ 0x5a, (xid >> 8) as u8, xid as u8 ^ 0xa5],
            requested: false,
            arp_sent: false,
            ndp_sent: false,
            solicit_sent: false,
        }
    }

    fn start(&mut self) -> Vec<Vec<u8>> {
        vec![
            self.dhcp(v4::MessageType::Discover, None),
            self.router_solicit(),
        ]
    }

    fn on_frame(&mut self, frame: &[u8], report: &mut DemoReport) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let Ok(parsed) = wire::parse_frame(frame) else {
            return out;
        };
        match parsed.l3 {
            L3::Ipv4 {
                l4: L4::Udp { udp, payload },
                ..
            } if udp.dst_port == 68 => {
                let Ok(msg) = v4::Message::decode(&mut Decoder::new(payload)) else {
                    return out;
                };
                match msg.opts().get(v4::OptionCode::MessageType) {
                    Some(v4::DhcpOption::MessageType(v4::MessageType::Offer))
                        if !self.requested =>
                    {
                        self.requested = true;
                        out.push(self.dhcp(v4::MessageType::Request, Some(msg.yiaddr())));
                    }
                    Some(v4::DhcpOption::MessageType(v4::MessageType::Ack)) => {
                        report.dhcp_address = Some(msg.yiaddr());
                        if !self.arp_sent {
                            self.arp_sent = true;
                            out.push(self.arp_request(msg.yiaddr()));
                        }
                    }
                    _ => {}
                }
            }
            L3::Arp(a) if a.operation == ArpOperation::Reply && a.sender_ip == self.gw4 => {
                report.gateway_mac_v4 = Some(a.sender_hw);
            }
            L3::Ipv6 {
                l4: L4::Icmpv6(Icmpv6Repr::Ndp(ndp)),
                ..
            } => match ndp {
                NdpRepr::RouterAdvert { options, .. } => {
                    for opt in options.iter() {
                        if let NdpOption::PrefixInfo(p) = opt {
                            report.ra_prefix = Some((p.prefix, p.prefix_len));
                        }
                    }
                    if !self.ndp_sent {
                        self.ndp_sent = true;
                        out.push(self.neighbor_solicit());
                    }
                }
                NdpRepr::NeighborAdvert {
                    target, options, ..
                } if target == self.gw6 => {
                    report.gateway_mac_v6 = options.iter().find_map(|o| match o {
                        NdpOption::TargetLinkAddr(m) => Some(m),
                        _ => None,
                    });
                    if !self.solicit_sent {
                        self.solicit_sent = true;
                        out.push(self.dhcpv6_solicit());
                    }
                }
                _ => {}
            },
            L3::Ipv6 {
                l4: L4::Udp { udp, payload },
                ..
            } if udp.dst_port == 546 => {
                if let Ok(msg) = v6::Message::decode(&mut Decoder::new(payload)) {
                    for opt in msg.opts().iter() {
                        if let v6::DhcpOption::IANA(ia) = opt {
                            for inner in ia.opts.iter() {
                                if let v6::DhcpOption::IAAddr(a) = inner {
                                    report.dhcpv6_address = Some(a.addr);
                                }
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        out
    }

    fn dhcp(&self, kind: v4::MessageType, requested: Option<Ipv4Addr>) -> Vec<u8> {
        let mut msg = v4::Message::new(
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &GUEST_MAC.0,
        );
        msg.set_xid(self.xid);
        msg.opts_mut().insert(v4::DhcpOption::MessageType(kind));
        if let Some(addr) = requested {
            msg.opts_mut()
                .insert(v4::DhcpOption::RequestedIpAddress(addr));
            msg.opts_mut()
                .insert(v4::DhcpOption::ServerIdentifier(self.gw4));
        }
        msg.opts_mut()
            .insert(v4::DhcpOption::ParameterRequestList(vec![
                v4::OptionCode::SubnetMask,
                v4::OptionCode::Router,
                v4::OptionCode::DomainNameServer,
                v4::OptionCode::InterfaceMtu,
                v4::OptionCode::DomainSearch,
            ]));
        let payload = msg.to_vec().expect("encodable");
        udp_frame(
            IpRepr::V4(ipv4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST)),
            MacAddr::BROADCAST,
            68,
            67,
            &payload,
        )
    }

    fn dhcpv6_solicit(&self) -> Vec<u8> {
        // dhcproto draws a random transaction id; ours derives from the seed.
        let mut msg = v6::Message::new_with_id(v6::MessageType::Solicit, self.xid6);
        let mut duid = vec![0, 3, 0, 1];
        duid.extend_from_slice(&GUEST_MAC.0);
        msg.opts_mut().insert(v6::DhcpOption::ClientId(duid));
        msg.opts_mut().insert(v6::DhcpOption::RapidCommit);
        msg.opts_mut().insert(v6::DhcpOption::IANA(v6::IANA {
            id: 1,
            t1: 0,
            t2: 0,
            opts: v6::DhcpOptions::new(),
        }));
        let payload = msg.to_vec().expect("encodable");
        let group: Ipv6Addr = "ff02::1:2".parse().expect("literal");
        udp_frame(
            IpRepr::V6(ipv6(self.link_local, group, 1)),
            MacAddr::for_ipv6_multicast(group),
            546,
            547,
            &payload,
        )
    }

    fn arp_request(&self, our_ip: Ipv4Addr) -> Vec<u8> {
        let arp = ArpRepr {
            operation: ArpOperation::Request,
            sender_hw: GUEST_MAC,
            sender_ip: our_ip,
            target_hw: MacAddr::ZERO,
            target_ip: self.gw4,
        };
        let mut buf = vec![0; wire::ARP_FRAME_LEN];
        let n = wire::build_arp(&mut buf, GUEST_MAC, MacAddr::BROADCAST, &arp).expect("fits");
        buf.truncate(n);
        buf
    }

    fn router_solicit(&self) -> Vec<u8> {
        let all_routers: Ipv6Addr = "ff02::2".parse().expect("literal");
        let opts = [NdpOption::SourceLinkAddr(GUEST_MAC)];
        self.icmpv6(
            all_routers,
            &Icmpv6Repr::Ndp(NdpRepr::RouterSolicit {
                options: NdpOptions::List(&opts),
            }),
        )
    }

    fn neighbor_solicit(&self) -> Vec<u8> {
        let opts = [NdpOption::SourceLinkAddr(GUEST_MAC)];
        let group = passt_engine::addr::ipv6_solicited_node(self.gw6);
        self.icmpv6(
            group,
            &Icmpv6Repr::Ndp(NdpRepr::NeighborSolicit {
                target: self.gw6,
                options: NdpOptions::List(&opts),
            }),
        )
    }

    fn icmpv6(&self, dst: Ipv6Addr, msg: &Icmpv6Repr<'_>) -> Vec<u8> {
        let mut buf = vec![0; 256];
        let ip = ipv6(self.link_local, dst, 255);
        let n = wire::build_icmpv6(
            &mut buf,
            GUEST_MAC,
            MacAddr::for_ipv6_multicast(dst),
            &ip,
            msg,
        )
        .expect("fits");
        buf.truncate(n);
        buf
    }
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr) -> Ipv4Repr {
    Ipv4Repr::new(src, dst, wire::protocol::UDP, 64)
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8) -> Ipv6Repr {
    Ipv6Repr::new(src, dst, wire::protocol::UDP, hop_limit)
}

fn udp_frame(
    ip: IpRepr,
    dst_mac: MacAddr,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut buf = vec![0; ip.headers_len() + 8 + payload.len()];
    let n = wire::build_udp(
        &mut buf,
        GUEST_MAC,
        dst_mac,
        ip,
        &UdpRepr { src_port, dst_port },
        payload,
    )
    .expect("fits");
    buf.truncate(n);
    buf
}

impl StableEncode for Event {
    fn encode_stable(&self, out: &mut Vec<u8>) {
        let (tag, frame) = match self {
            Event::ToEngine(f) => (0u8, f),
            Event::ToGuest(f) => (1u8, f),
        };
        out.push(tag);
        frame.encode_stable(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_is_fully_configured() {
        let r = run(1, Duration::from_secs(30)).unwrap();
        assert_eq!(
            r.dhcp_address,
            Some(Ipv4Addr::new(192, 0, 2, 15)),
            "{}",
            r.transcript
        );
        assert_eq!(
            r.dhcpv6_address,
            Some("2001:db8::15".parse().unwrap()),
            "{}",
            r.transcript
        );
        assert_eq!(r.ra_prefix, Some(("2001:db8::".parse().unwrap(), 64)));
        assert_eq!(r.gateway_mac_v4, Some(MacAddr::PASST_DEFAULT));
        assert_eq!(r.gateway_mac_v6, Some(MacAddr::PASST_DEFAULT));
        assert_eq!(r.counters.total_drops(), 0, "{}", r.transcript);
        // Periodic RAs keep coming in virtual time.
        assert!(r.counters.ndp_router_adverts >= 3, "{}", r.transcript);
    }

    #[test]
    fn same_seed_same_run() {
        let a = run(7, Duration::from_secs(60)).unwrap();
        let b = run(7, Duration::from_secs(60)).unwrap();
        assert_eq!(a.transcript, b.transcript);
        assert_eq!(a.trace_hash, b.trace_hash);
        let c = run(8, Duration::from_secs(60)).unwrap();
        assert_ne!(
            a.trace_hash, c.trace_hash,
            "the DHCP xid derives from the seed"
        );
    }
}
