//! The model guest (`--guest model`): each flow's application behaviour,
//! taken from the trace, driven again through a smoltcp stack.
//!
//! # What this module owns
//!
//! - The workload of every flow the guest took part in, from the trace:
//!   TCP opened by the guest (connect at the time of its SYN, from the
//!   same port), TCP opened by the engine (a listener on the guest's
//!   port, taken in SYN order), the bytes the guest sent, its FIN or RST,
//!   UDP datagrams and ICMP echo requests at their recorded times.
//! - Causality: a TCP action (bytes, FIN, RST) waits for its recorded
//!   time, and for everything the guest had received before it in the
//!   trace (bytes and the peer's FIN). Under faults the conversation keeps
//!   its order, whatever the delays.
//! - What the guest expects: the bytes the engine delivered in the trace.
//!   A TCP stream that differs from them is a note per flow
//!   ([`ModelGuest::notes`]), which the report lists as a divergence.
//!
//! TCP numbers, timing and retransmissions are smoltcp's own (RFC 9293),
//! so the report compares counts and events, not segments.
//!
//! # What it must never do
//!
//! Resend a recorded TCP segment (only application data is taken from the
//! trace), read the wall clock, or draw randomness but from its seed.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use passt_engine::{Config, Instant, MacAddr};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{icmp, tcp, udp};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint};

use super::decode::{Kind, decode};
use super::flows::{ENGINE, Flow, FlowKey, GUEST, Proto, Stamp};
use super::input::TraceFrame;
use crate::guest::smol::{SimDevice, from_smol, to_smol};

/// smoltcp TCP buffers, bytes each way (the receive buffer is the window
/// the model advertises).
const TCP_BUFFER: usize = 256 * 1024;
/// Datagram socket buffers.
const DGRAM_SLOTS: usize = 256;
const DGRAM_BYTES: usize = 256 * 1024;

/// What an action does.
#[derive(Clone, Debug)]
enum What {
    Send(Vec<u8>),
    Fin,
    Rst,
}

/// One step of a flow's application behaviour.
#[derive(Clone, Debug)]
struct Action {
    /// Not before this (the trace's time).
    at: Instant,
    /// TCP: not before this many bytes were received ...
    after_rx: u64,
    /// ... and the peer's FIN, if the trace showed it first.
    after_peer_fin: bool,
    what: What,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    TcpClient,
    TcpServer,
    Datagram,
}

#[derive(Debug)]
struct ModelFlow {
    key: FlowKey,
    role: Role,
    /// TCP client: connect time; others: irrelevant.
    start: Instant,
    handle: Option<SocketHandle>,
    actions: VecDeque<Action>,
    /// Bytes handed over by the application, not yet taken by the socket.
    out: Vec<u8>,
    out_at: usize,
    /// TCP: what the engine delivered in the trace.
    expect: Vec<u8>,
    received: u64,
    /// First offset where the stream differed from the trace.
    mismatch: Option<u64>,
    established: bool,
    /// The connection ended (closed or reset); nothing more to drive.
    over: bool,
}

/// The model guest (see the [module docs](self)).
pub struct ModelGuest {
    iface: Interface,
    sockets: SocketSet<'static>,
    device: SimDevice,
    flows: Vec<ModelFlow>,
    /// Datagram sockets by (protocol, local port or echo identifier).
    dgram: BTreeMap<(Proto, u16), SocketHandle>,
    unscripted: Vec<String>,
    wake: Option<Instant>,
    now: Instant,
}

impl std::fmt::Debug for ModelGuest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelGuest")
            .field("flows", &self.flows.len())
            .finish_non_exhaustive()
    }
}

/// Time and position of a trace event, for ordering.
fn before(a: Stamp, b: Stamp) -> bool {
    a < b
}

impl ModelGuest {
    /// The model of the trace's guest: `flows` of the trace, its `frames`
    /// (for ICMP echo requests), the engine `config` inferred from it, and
    /// smoltcp's `random_seed` (derive it from the master seed).
    pub fn new(
        frames: &[TraceFrame],
        guest_mac: MacAddr,
        flows: &[Flow],
        config: &Config,
        random_seed: u64,
    ) -> Self {
        let mut device = SimDevice {
            rx: VecDeque::new(),
            tx: Vec::new(),
            mtu: config.mtu as usize,
        };
        let mut iface_cfg = IfaceConfig::new(EthernetAddress(guest_mac.0).into());
        iface_cfg.random_seed = random_seed;
        let mut iface = Interface::new(iface_cfg, &mut device, to_smol(Instant::ZERO));
        let mut unscripted = Vec::new();
        // smoltcp's interface holds two addresses: the guest's addresses
        // the trace's flows used, first seen first, then the engine's
        // configured IPv4 and IPv6 addresses for the guest.
        let mut want: Vec<IpAddr> = Vec::new();
        let configured = config
            .ipv4
            .as_ref()
            .map(|c| IpAddr::V4(c.addr))
            .into_iter()
            .chain(config.ipv6.as_ref().map(|c| IpAddr::V6(c.addr)));
        for a in flows.iter().map(|f| f.key.1.ip()).chain(configured) {
            if want.len() < 2 && !want.contains(&a) {
                want.push(a);
            }
        }
        iface.update_ip_addrs(|addrs| {
            for a in &want {
                let prefix = match a {
                    IpAddr::V4(_) => config.ipv4.as_ref().map_or(24, |c| c.prefix_len),
                    IpAddr::V6(v) if v.is_unicast_link_local() => 64,
                    IpAddr::V6(_) => config.ipv6.as_ref().map_or(64, |c| c.prefix_len),
                };
                let _ = addrs.push(IpCidr::new(ip(*a), prefix));
            }
        });
        if let Some(v4) = &config.ipv4 {
            let _ = iface.routes_mut().add_default_ipv4_route(v4.gateway);
        }
        if let Some(v6) = &config.ipv6 {
            let _ = iface
                .routes_mut()
                .add_default_ipv6_route(v6.router_address());
        }
        let ours: Vec<IpAddr> = iface
            .ip_addrs()
            .iter()
            .map(|c| match c.address() {
                IpAddress::Ipv4(a) => IpAddr::V4(a),
                IpAddress::Ipv6(a) => IpAddr::V6(a),
            })
            .collect();

        let mut model = Vec::new();
        for f in flows {
            let (guest, remote) = (f.key.1, f.key.2);
            if !ours.contains(&guest.ip()) {
                unscripted.push(format!(
                    "{} {guest} -> {remote}: the model guest has no address {} (two at most)",
                    f.proto().name(),
                    guest.ip()
                ));
                continue;
            }
            let role = match f.proto() {
                Proto::Tcp if f.handshake() == "not seen" => {
                    unscripted.push(format!(
                        "tcp {guest} -> {remote}: no SYN in the trace (model)"
                    ));
                    continue;
                }
                Proto::Tcp if f.guest_is_client => Role::TcpClient,
                Proto::Tcp => Role::TcpServer,
                Proto::Udp if !f.guest_is_client => {
                    unscripted.push(format!(
                        "udp {remote} -> {guest}: opened by the engine (model)"
                    ));
                    continue;
                }
                Proto::Udp | Proto::Icmp => Role::Datagram,
            };
            let mut actions = Vec::new();
            match f.proto() {
                Proto::Tcp => tcp_actions(f, &mut actions),
                Proto::Udp => actions.extend(f.dirs[GUEST].chunks.iter().map(|(t, c)| Action {
                    at: t.0,
                    after_rx: 0,
                    after_peer_fin: false,
                    what: What::Send(c.clone()),
                })),
                Proto::Icmp => {}
            }
            let expect: Vec<u8> = if f.proto() == Proto::Tcp {
                f.dirs[ENGINE]
                    .chunks
                    .iter()
                    .flat_map(|(_, c)| c.iter().copied())
                    .collect()
            } else {
                Vec::new()
            };
            model.push(ModelFlow {
                key: f.key,
                role,
                start: f.dirs[GUEST].syn_at.unwrap_or(f.first_at),
                handle: None,
                actions: actions.into(),
                out: Vec::new(),
                out_at: 0,
                expect,
                received: 0,
                mismatch: None,
                established: false,
                over: false,
            });
        }
        // ICMP echo requests, as recorded (RFC 792, RFC 4443 §4.1).
        for fr in frames {
            let Some(d) = decode(&fr.data) else { continue };
            if d.src_mac != guest_mac {
                continue;
            }
            let Kind::Icmp {
                src,
                dst,
                icmp_type,
                ident,
                v6,
                message,
                ..
            } = d.kind
            else {
                continue;
            };
            if icmp_type != if v6 { 128 } else { 8 } {
                continue;
            }
            let key = (
                Proto::Icmp,
                SocketAddr::new(src, ident),
                SocketAddr::new(dst, ident),
            );
            if let Some(m) = model.iter_mut().find(|m| m.key == key) {
                m.actions.push_back(Action {
                    at: fr.at,
                    after_rx: 0,
                    after_peer_fin: false,
                    what: What::Send(message.to_vec()),
                });
            }
        }
        ModelGuest {
            iface,
            sockets: SocketSet::new(Vec::new()),
            device,
            flows: model,
            dgram: BTreeMap::new(),
            unscripted,
            wake: Some(Instant::ZERO),
            now: Instant::ZERO,
        }
    }

    /// Flows of the trace the model could not drive, in words.
    pub fn unscripted(&self) -> &[String] {
        &self.unscripted
    }

    /// Per flow, what the model guest found wrong with what it received.
    pub fn notes(&self) -> Vec<(FlowKey, String)> {
        let mut out = Vec::new();
        for f in &self.flows {
            if let Some(at) = f.mismatch {
                out.push((
                    f.key,
                    format!(
                        "the guest received bytes that differ from the trace's from offset {at}"
                    ),
                ));
            }
            if f.role != Role::Datagram && f.received > f.expect.len() as u64 {
                out.push((
                    f.key,
                    format!(
                        "the guest received {} bytes, the trace's engine delivered {}",
                        f.received,
                        f.expect.len()
                    ),
                ));
            }
        }
        out
    }

    /// A frame for the guest.
    pub fn on_frame(&mut self, _now: Instant, frame: &[u8]) {
        self.device.rx.push_back(frame.to_vec());
    }

    /// When the guest next wants to run.
    pub fn poll_at(&self) -> Option<Instant> {
        if !self.device.rx.is_empty() {
            return Some(self.now);
        }
        self.wake
    }

    /// Every flow's application behaviour was played.
    pub fn finished(&self) -> bool {
        self.flows
            .iter()
            .all(|f| f.actions.is_empty() && f.out_at >= f.out.len())
    }

    /// Runs the stack and the flows at `now`.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        self.now = now;
        let t = to_smol(now);
        self.iface.poll(t, &mut self.device, &mut self.sockets);
        let mut wake = None;
        for i in 0..self.flows.len() {
            let w = match self.flows[i].role {
                Role::TcpClient | Role::TcpServer => self.step_tcp(i, now),
                Role::Datagram => self.step_datagram(i, now),
            };
            wake = passt_engine::time::earliest(wake, w);
        }
        self.drain_datagrams();
        self.iface.poll(t, &mut self.device, &mut self.sockets);
        out.append(&mut self.device.tx);
        let stack = self.iface.poll_at(t, &self.sockets).map(from_smol);
        wake = passt_engine::time::earliest(wake, stack);
        // smoltcp's clock has microsecond resolution: a deadline already
        // due is retried one microsecond later, never in a loop.
        self.wake = wake.map(|w| {
            if w <= now {
                now + Duration::from_micros(1)
            } else {
                w
            }
        });
    }

    fn step_tcp(&mut self, i: usize, now: Instant) -> Option<Instant> {
        let f = &mut self.flows[i];
        if f.over {
            return None;
        }
        let h = match f.handle {
            Some(h) => h,
            None => {
                // Servers listen from the start; clients connect at the
                // time of their SYN.
                if f.role == Role::TcpClient && now < f.start {
                    return Some(f.start);
                }
                let mut s = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
                    tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
                );
                let (guest, remote) = (f.key.1, f.key.2);
                let r = match f.role {
                    Role::TcpClient => s
                        .connect(
                            self.iface.context(),
                            endpoint(remote),
                            IpListenEndpoint {
                                addr: Some(ip(guest.ip())),
                                port: guest.port(),
                            },
                        )
                        .map_err(|e| e.to_string()),
                    _ => s.listen(guest.port()).map_err(|e| e.to_string()),
                };
                if let Err(e) = r {
                    self.unscripted
                        .push(format!("tcp {guest} -> {remote}: model socket: {e}"));
                    f.over = true;
                    f.actions.clear();
                    return None;
                }
                let h = self.sockets.add(s);
                f.handle = Some(h);
                h
            }
        };
        let s = self.sockets.get_mut::<tcp::Socket>(h);
        // In: compared with what the trace's engine delivered.
        while s.can_recv() {
            let off = f.received;
            let expect = &f.expect;
            let got = s.recv(|data| {
                let start = usize::try_from(off).unwrap_or(usize::MAX);
                let bad = data
                    .iter()
                    .enumerate()
                    .position(|(k, b)| expect.get(start.saturating_add(k)) != Some(b));
                (data.len(), (data.len(), bad))
            });
            match got {
                Ok((0, _)) | Err(_) => break,
                Ok((n, bad)) => {
                    if let (Some(k), None) = (bad, f.mismatch) {
                        f.mismatch = Some(off + k as u64);
                    }
                    f.received += n as u64;
                }
            }
        }
        let state = s.state();
        if !matches!(
            state,
            tcp::State::Closed | tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived
        ) {
            f.established = true;
        }
        if state == tcp::State::Closed && (f.established || f.role == Role::TcpClient) {
            // Reset, refused, or closed for good: the application is done.
            f.over = true;
            f.actions.clear();
            return None;
        }
        if state == tcp::State::TimeWait {
            f.over = true;
            return None;
        }
        let peer_fin = f.established && !s.may_recv();
        let mut wake = None;
        loop {
            while f.out_at < f.out.len() && s.can_send() {
                match s.send_slice(&f.out[f.out_at..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => f.out_at += n,
                }
            }
            if f.out_at >= f.out.len() && !f.out.is_empty() {
                f.out.clear();
                f.out_at = 0;
            }
            let Some(a) = f.actions.front() else { break };
            if !f.established {
                break;
            }
            if now < a.at {
                wake = Some(a.at);
                break;
            }
            if f.received < a.after_rx || (a.after_peer_fin && !peer_fin) {
                break;
            }
            match &a.what {
                What::Send(b) => {
                    f.out.extend_from_slice(b);
                    f.actions.pop_front();
                }
                What::Fin => {
                    if !f.out.is_empty() {
                        break;
                    }
                    s.close();
                    f.actions.pop_front();
                }
                What::Rst => {
                    if !f.out.is_empty() || s.send_queue() > 0 {
                        break;
                    }
                    // RFC 9293 §3.10.5: ABORT sends a RST.
                    s.abort();
                    f.actions.pop_front();
                }
            }
        }
        wake
    }

    fn datagram_socket(&mut self, key: FlowKey) -> Result<SocketHandle, String> {
        let (proto, guest) = (key.0, key.1);
        if let Some(h) = self.dgram.get(&(proto, guest.port())) {
            return Ok(*h);
        }
        let h = match proto {
            Proto::Udp => {
                let mut s = udp::Socket::new(
                    udp::PacketBuffer::new(
                        vec![udp::PacketMetadata::EMPTY; DGRAM_SLOTS],
                        vec![0; DGRAM_BYTES],
                    ),
                    udp::PacketBuffer::new(
                        vec![udp::PacketMetadata::EMPTY; DGRAM_SLOTS],
                        vec![0; DGRAM_BYTES],
                    ),
                );
                s.bind(guest.port()).map_err(|e| e.to_string())?;
                self.sockets.add(s)
            }
            _ => {
                let mut s = icmp::Socket::new(
                    icmp::PacketBuffer::new(
                        vec![icmp::PacketMetadata::EMPTY; DGRAM_SLOTS],
                        vec![0; DGRAM_BYTES],
                    ),
                    icmp::PacketBuffer::new(
                        vec![icmp::PacketMetadata::EMPTY; DGRAM_SLOTS],
                        vec![0; DGRAM_BYTES],
                    ),
                );
                s.bind(icmp::Endpoint::Ident(guest.port()))
                    .map_err(|e| e.to_string())?;
                self.sockets.add(s)
            }
        };
        self.dgram.insert((proto, guest.port()), h);
        Ok(h)
    }

    fn step_datagram(&mut self, i: usize, now: Instant) -> Option<Instant> {
        let key = self.flows[i].key;
        loop {
            let f = &self.flows[i];
            let a = f.actions.front()?;
            if now < a.at {
                return Some(a.at);
            }
            let What::Send(payload) = a.what.clone() else {
                self.flows[i].actions.pop_front();
                continue;
            };
            let h = match self.datagram_socket(key) {
                Ok(h) => h,
                Err(e) => {
                    self.unscripted.push(format!(
                        "{} {} -> {}: model socket: {e}",
                        key.0.name(),
                        key.1,
                        key.2
                    ));
                    self.flows[i].actions.clear();
                    return None;
                }
            };
            let sent = match key.0 {
                Proto::Udp => self
                    .sockets
                    .get_mut::<udp::Socket>(h)
                    .send_slice(&payload, endpoint(key.2))
                    .is_ok(),
                _ => self
                    .sockets
                    .get_mut::<icmp::Socket>(h)
                    .send_slice(&payload, ip(key.2.ip()))
                    .is_ok(),
            };
            if !sent {
                // Buffer full: try again once smoltcp has sent some.
                return Some(now + Duration::from_millis(1));
            }
            self.flows[i].actions.pop_front();
        }
    }

    /// Reads (and counts) what reached the datagram sockets: the report
    /// judges datagrams from the capture, the model only keeps its
    /// buffers free.
    fn drain_datagrams(&mut self) {
        for ((proto, _), h) in &self.dgram {
            match proto {
                Proto::Udp => {
                    let s = self.sockets.get_mut::<udp::Socket>(*h);
                    while s.recv().is_ok() {}
                }
                _ => {
                    let s = self.sockets.get_mut::<icmp::Socket>(*h);
                    while s.recv().is_ok() {}
                }
            }
        }
    }
}

/// The TCP actions of the guest's side of `f`: its new bytes, FIN and
/// RST, in capture order, each waiting for what the guest had received
/// before it.
fn tcp_actions(f: &Flow, out: &mut Vec<Action>) {
    let g = &f.dirs[GUEST];
    let e = &f.dirs[ENGINE];
    let mut ev: Vec<(Stamp, What)> = g
        .chunks
        .iter()
        .map(|(t, c)| (*t, What::Send(c.clone())))
        .collect();
    if let Some(t) = g.fin_at {
        ev.push((t, What::Fin));
    }
    if let Some(t) = g.rst_at {
        ev.push((t, What::Rst));
    }
    ev.sort_by_key(|(t, _)| *t);
    for (t, what) in ev {
        let after_rx = e
            .chunks
            .iter()
            .filter(|(te, _)| before(*te, t))
            .map(|(_, c)| c.len() as u64)
            .sum();
        let after_peer_fin = e.fin_at.is_some_and(|tf| before(tf, t));
        out.push(Action {
            at: t.0,
            after_rx,
            after_peer_fin,
            what,
        });
    }
}

fn ip(a: IpAddr) -> IpAddress {
    match a {
        IpAddr::V4(a) => IpAddress::Ipv4(a),
        IpAddr::V6(a) => IpAddress::Ipv6(a),
    }
}

fn endpoint(a: SocketAddr) -> IpEndpoint {
    IpEndpoint::new(ip(a.ip()), a.port())
}
