//! Shared harness for the TCP tests: an `Engine<RealHost>` whose host side
//! is the real kernel (loopback peers only), a clock that is real time plus
//! a skew the test can add (to fire long timers without waiting), and two
//! guests: smoltcp (an independent TCP/IP stack) over in-memory frame
//! queues, and a scripted guest that builds exact segments.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use passt_engine::runtime::RealHost;
use passt_engine::wire::{self, IpRepr, Ipv4Repr, Ipv6Repr, L3, L4, TcpFlags, TcpOptions, TcpRepr};
use passt_engine::{Config, Engine, Instant, MacAddr, Readiness, Token};

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};

pub const GUEST_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
pub const GUEST_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 15);
pub const GW_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const GW_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
pub const GUEST_V6_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x15);
pub const GUEST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x15);

pub fn ipv6_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// Deterministic bytes for integrity checks.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// IPv4 TCP sockets whose remote port is `port` and that are still
/// attached to a descriptor (`/proc/net/tcp` inode != 0; orphaned and
/// TIME_WAIT sockets have none).
pub fn attached_sockets_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let rem_port = f
                .get(2)
                .and_then(|r| r.split(':').nth(1))
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            rem_port == Some(port) && f.get(9).is_some_and(|i| *i != "0")
        })
        .count()
}

/// The engine, its real host, and the clock.
pub struct Net {
    pub engine: Engine<RealHost>,
    events: Vec<(Token, Readiness)>,
    start: std::time::Instant,
    pub skew: Duration,
}

impl Net {
    pub fn new(config: Config) -> Net {
        let host = RealHost::new().expect("RealHost");
        Net {
            engine: Engine::new(config, host, 42).expect("engine"),
            events: Vec::with_capacity(1024),
            start: std::time::Instant::now(),
            skew: Duration::from_secs(1000),
        }
    }

    pub fn now(&self) -> Instant {
        Instant::from_nanos((self.start.elapsed() + self.skew).as_nanos() as u64)
    }

    /// Waits up to `max_wait` for host readiness, dispatches it, and runs
    /// due timers.
    pub fn service_host(&mut self, max_wait: Duration) {
        let now = self.now();
        let wait = match self.engine.poll_timeout() {
            Some(t) if t <= now => Duration::ZERO,
            Some(t) => (t - now).min(max_wait),
            None => max_wait,
        };
        self.events.clear();
        let _ = self.engine.host_mut().wait(Some(wait), &mut self.events);
        let now = self.now();
        for i in 0..self.events.len() {
            let (t, r) = self.events[i];
            self.engine.handle_host_event(now, t, r);
        }
        self.run_timers();
    }

    pub fn run_timers(&mut self) {
        let now = self.now();
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
    }

    /// Moves the engine's frames for the guest into `out`.
    pub fn take_tx(&mut self, out: &mut VecDeque<Vec<u8>>) {
        let q = self.engine.tx_queue();
        for f in q.iter() {
            out.push_back(f.to_vec());
        }
        let n = q.len();
        q.consume(n);
    }
}

// ---------------------------------------------------------------------------
// smoltcp guest
// ---------------------------------------------------------------------------

/// A smoltcp device over two frame queues.
pub struct QueueDevice {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: VecDeque<Vec<u8>>,
    pub mtu: usize,
}

pub struct RxTok(Vec<u8>);
pub struct TxTok<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for RxTok {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = RxTok;
    type TxToken<'a> = TxTok<'a>;

    fn receive(
        &mut self,
        _t: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let f = self.rx.pop_front()?;
        Some((RxTok(f), TxTok(&mut self.tx)))
    }

    fn transmit(&mut self, _t: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(TxTok(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = self.mtu;
        c
    }
}

fn smol_now(t: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros((t.as_nanos() / 1000) as i64)
}

/// smoltcp as the guest: one interface with the example addresses.
pub struct SmolGuest {
    pub iface: Interface,
    pub dev: QueueDevice,
    pub sockets: SocketSet<'static>,
}

impl SmolGuest {
    /// `mtu` is the IP MTU (the engine's `Config::mtu`).
    pub fn new(now: Instant, mtu: u16) -> SmolGuest {
        let mut dev = QueueDevice {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            mtu: usize::from(mtu) + 14,
        };
        let mut cfg = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(GUEST_MAC.0)));
        cfg.random_seed = 7;
        let mut iface = Interface::new(cfg, &mut dev, smol_now(now));
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(GUEST_V4.into(), 24)).unwrap();
            a.push(IpCidr::new(GUEST_V6_LL.into(), 64)).unwrap();
        });
        iface.routes_mut().add_default_ipv4_route(GW_V4).unwrap();
        iface.routes_mut().add_default_ipv6_route(GW_V6).unwrap();
        SmolGuest {
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
        }
    }

    pub fn tcp_socket(&mut self, rx: usize, tx: usize) -> SocketHandle {
        let s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; rx]),
            tcp::SocketBuffer::new(vec![0; tx]),
        );
        self.sockets.add(s)
    }

    pub fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    pub fn connect(&mut self, h: SocketHandle, remote: SocketAddr, local_port: u16) {
        let cx = self.iface.context();
        self.sockets
            .get_mut::<tcp::Socket>(h)
            .connect(cx, remote, local_port)
            .expect("connect");
    }
}

/// One round: guest poll, guest frames into the engine, host readiness
/// and timers, engine frames to the guest.
pub fn step(net: &mut Net, g: &mut SmolGuest) {
    let now = net.now();
    g.iface.poll(smol_now(now), &mut g.dev, &mut g.sockets);
    let now = net.now();
    while let Some(f) = g.dev.tx.pop_front() {
        net.engine.handle_frame(now, &f);
    }
    net.take_tx(&mut g.dev.rx);
    let wait = if g.dev.rx.is_empty() {
        let d = g
            .iface
            .poll_delay(smol_now(net.now()), &g.sockets)
            .map_or(Duration::from_millis(2), |d| {
                Duration::from_micros(d.total_micros())
            });
        d.min(Duration::from_millis(2))
    } else {
        Duration::ZERO
    };
    net.service_host(wait);
    net.take_tx(&mut g.dev.rx);
}

/// Steps until `done` returns true; panics after `limit`.
pub fn run_until(
    net: &mut Net,
    g: &mut SmolGuest,
    limit: Duration,
    mut done: impl FnMut(&mut Net, &mut SmolGuest) -> bool,
) {
    let start = std::time::Instant::now();
    loop {
        step(net, g);
        if done(net, g) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?}; counters {:?}",
            net.engine.counters()
        );
    }
}

// ---------------------------------------------------------------------------
// Scripted guest
// ---------------------------------------------------------------------------

/// A segment the engine sent to the guest, decoded.
#[derive(Clone, Debug)]
pub struct Seg {
    pub dst_mac: MacAddr,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub tcp: TcpRepr,
    pub payload: Vec<u8>,
}

impl Seg {
    pub fn has(&self, f: TcpFlags) -> bool {
        self.tcp.flags.contains(f)
    }
}

/// Decodes the TCP segments among `frames` (others are skipped).
pub fn decode(frames: &VecDeque<Vec<u8>>) -> Vec<Seg> {
    let mut out = Vec::new();
    for f in frames {
        let Ok(p) = wire::parse_frame(f) else {
            panic!("engine sent an unparsable frame");
        };
        let (src, dst, l4) = match p.l3 {
            L3::Ipv4 { ip, l4 } => (IpAddr::V4(ip.src_addr), IpAddr::V4(ip.dst_addr), l4),
            L3::Ipv6 { ip, l4 } => (IpAddr::V6(ip.src_addr), IpAddr::V6(ip.dst_addr), l4),
            L3::Arp(_) => continue,
        };
        if let L4::Tcp { tcp, payload } = l4 {
            out.push(Seg {
                dst_mac: p.eth.dst,
                src: SocketAddr::new(src, tcp.src_port),
                dst: SocketAddr::new(dst, tcp.dst_port),
                tcp,
                payload: payload.to_vec(),
            });
        }
    }
    out
}

/// Builds a guest frame carrying one TCP segment from `src` to `dst`.
#[allow(clippy::too_many_arguments)]
pub fn guest_frame(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    window: u16,
    options: TcpOptions,
    payload: &[u8],
) -> Vec<u8> {
    let ip = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => IpRepr::V4(Ipv4Repr {
            src_addr: s,
            dst_addr: d,
            protocol: wire::protocol::TCP,
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
            next_header: wire::protocol::TCP,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            ext_headers_len: 0,
            payload_len: 0,
        }),
        _ => panic!("mixed families"),
    };
    let tcp = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        seq,
        ack,
        flags,
        window,
        urgent: 0,
        options,
    };
    let mut buf = vec![0u8; 14 + 40 + 60 + payload.len()];
    let n = wire::build_tcp(
        &mut buf,
        GUEST_MAC,
        MacAddr::PASST_DEFAULT,
        ip,
        &tcp,
        payload,
    )
    .expect("build");
    buf.truncate(n);
    buf
}

/// A scripted guest endpoint: sends exact segments, collects what the
/// engine sends back.
pub struct Script {
    pub net: Net,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub frames: VecDeque<Vec<u8>>,
    /// Virtual time for the engine: scripted tests do not follow the real
    /// clock unless they pump the host.
    pub now: Instant,
}

impl Script {
    pub fn new(config: Config, local: SocketAddr, remote: SocketAddr) -> Script {
        Script {
            net: Net::new(config),
            local,
            remote,
            frames: VecDeque::new(),
            now: Instant::from_secs(1),
        }
    }

    pub fn send(&mut self, seq: u32, ack: u32, flags: TcpFlags, window: u16, payload: &[u8]) {
        self.send_opts(seq, ack, flags, window, TcpOptions::default(), payload);
    }

    pub fn send_opts(
        &mut self,
        seq: u32,
        ack: u32,
        flags: TcpFlags,
        window: u16,
        options: TcpOptions,
        payload: &[u8],
    ) {
        let f = guest_frame(
            self.local,
            self.remote,
            seq,
            ack,
            flags,
            window,
            options,
            payload,
        );
        self.net.engine.handle_frame(self.now, &f);
        self.net.take_tx(&mut self.frames);
    }

    /// Dispatches host readiness (waiting up to `wait`) at the script's
    /// virtual time; returns the segments the engine sent meanwhile.
    pub fn pump(&mut self, wait: Duration) -> Vec<Seg> {
        let mut events = Vec::with_capacity(64);
        let _ = self.net.engine.host_mut().wait(Some(wait), &mut events);
        for (t, r) in events {
            self.net.engine.handle_host_event(self.now, t, r);
        }
        self.net.take_tx(&mut self.frames);
        self.take()
    }

    /// Pumps until at least one segment arrives or `limit` passes.
    pub fn pump_until_seg(&mut self, limit: Duration) -> Vec<Seg> {
        let start = std::time::Instant::now();
        let mut got = Vec::new();
        while got.is_empty() && start.elapsed() < limit {
            got = self.pump(Duration::from_millis(10));
        }
        got
    }

    /// Advances virtual time and runs due timers.
    pub fn advance(&mut self, d: Duration) -> Vec<Seg> {
        self.now += d;
        if self
            .net
            .engine
            .poll_timeout()
            .is_some_and(|t| t <= self.now)
        {
            self.net.engine.handle_timeout(self.now);
        }
        self.net.take_tx(&mut self.frames);
        self.take()
    }

    /// The segments received so far, removed.
    pub fn take(&mut self) -> Vec<Seg> {
        let s = decode(&self.frames);
        self.frames.clear();
        s
    }
}

/// A one-line, port- and ISN-free description of a segment for snapshots:
/// sequence numbers relative to `our_isn` / `guest_isn`.
pub fn describe(s: &Seg, our_isn: u32, guest_isn: u32) -> String {
    let t = &s.tcp;
    let mut d = format!(
        "{:?} seq={} ack={} len={}",
        t.flags,
        t.seq.wrapping_sub(our_isn),
        if t.flags.contains(TcpFlags::ACK) {
            t.ack.wrapping_sub(guest_isn) as i64
        } else {
            -1
        },
        s.payload.len()
    );
    if let Some(m) = t.options.mss {
        d += &format!(" mss={m}");
    }
    if let Some(w) = t.options.window_scale {
        d += &format!(" ws={w}");
    }
    if t.options.sack_permitted {
        d += " sackok";
    }
    if t.options.timestamps.is_some() {
        d += " ts";
    }
    d
}
