//! The smoltcp guest: an independent TCP/IP stack on the guest side of the
//! engine, configured by DHCP through it, running workloads.
//!
//! # What this module owns
//!
//! A smoltcp [`Interface`] over an in-memory Ethernet device (frames in from
//! the simulation, frames out to it), a DHCPv4 client socket, and the
//! [`Workload`]s: ping, UDP echo client, TCP echo / send / receive
//! clients, and a TCP server ([`Workload::TcpServe`]: echo, sink or source
//! for connections the engine opens toward the guest from a forwarded
//! port). Each workload keeps a [`WorkloadReport`] (packets and bytes each
//! way, duplicates, corrupt payloads, round-trip times, the error that
//! stopped it).
//!
//! smoltcp's clock is the simulation's virtual time
//! (`Instant::from_micros(now_ns / 1000)`), and its randomness (TCP initial
//! sequence numbers, DHCP transaction ids, ephemeral ports) comes from the
//! `random_seed` the simulation derives from the master seed.
//!
//! # What it must never do
//!
//! Read the wall clock, or iterate an unordered collection.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use passt_engine::{Instant, MacAddr};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{dhcpv4, icmp, tcp, udp};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Cidr};

use crate::host::services::{fill_pattern, pattern_byte, pattern_mismatches};

/// Converts virtual time to smoltcp's clock (microseconds).
pub fn to_smol(now: Instant) -> SmolInstant {
    SmolInstant::from_micros((now.as_nanos() / 1000) as i64)
}

/// Converts smoltcp's clock back to virtual time.
pub fn from_smol(t: SmolInstant) -> Instant {
    Instant::from_nanos(
        u64::try_from(t.total_micros())
            .unwrap_or(0)
            .saturating_mul(1000),
    )
}

/// One thing the guest does once its address is configured.
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    /// ICMP echo requests, one every `interval`.
    Ping {
        /// Destination; `None`: the gateway learnt by DHCP.
        dst: Option<Ipv4Addr>,
        /// Requests to send.
        count: u32,
        /// Time between requests.
        interval: Duration,
        /// Bytes of data after the ICMP header.
        size: usize,
    },
    /// UDP datagrams to an echo service, each checked when it comes back.
    UdpEcho {
        /// The echo service.
        dst: SocketAddrV4,
        /// Datagrams to send.
        count: u32,
        /// Time between datagrams.
        interval: Duration,
        /// Payload bytes (at least 4: a sequence number leads).
        size: usize,
    },
    /// A TCP connection to an echo service: `bytes` of pattern out, the
    /// same bytes expected back, then close.
    TcpEcho {
        /// The echo service.
        dst: SocketAddrV4,
        /// Bytes to send.
        bytes: u64,
    },
    /// A TCP connection to a sink: `bytes` of pattern out, then close.
    TcpSend {
        /// The sink.
        dst: SocketAddrV4,
        /// Bytes to send.
        bytes: u64,
    },
    /// A TCP connection to a source: read pattern bytes until the peer
    /// closes; exactly `bytes` are expected.
    TcpRecv {
        /// The source.
        dst: SocketAddrV4,
        /// Bytes expected.
        bytes: u64,
    },
    /// Half-close (RFC 9293 §3.6): `bytes` of pattern to an echo service,
    /// then our FIN at once; the whole echo must still arrive after it,
    /// followed by the peer's FIN.
    TcpHalfClose {
        /// The echo service.
        dst: SocketAddrV4,
        /// Bytes to send (and to get back after our FIN).
        bytes: u64,
    },
    /// A TCP server: listens on `port` and serves `connections`
    /// connections (inbound: the engine opens them toward the guest for
    /// connections accepted on a forwarded host port), then finishes.
    /// Every connection is served as `mode` says; incoming bytes are
    /// checked against the pattern.
    TcpServe {
        /// The guest port listened on.
        port: u16,
        /// What each connection gets.
        mode: ServeMode,
        /// Connections to serve (at most [`MAX_SERVE_CONNECTIONS`]); this
        /// many listening sockets are opened at once, so they may arrive
        /// concurrently.
        connections: u32,
    },
}

/// Most connections one [`Workload::TcpServe`] accepts.
pub const MAX_SERVE_CONNECTIONS: u32 = 256;

/// How a [`Workload::TcpServe`] serves each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServeMode {
    /// Sends back everything it reads; closes after the peer's FIN once
    /// all of it is echoed.
    Echo {
        /// Bytes each connection must carry, if checked.
        expect: Option<u64>,
    },
    /// Reads and discards; closes after the peer's FIN.
    Sink {
        /// Bytes each connection must carry, if checked.
        expect: Option<u64>,
    },
    /// Sends `bytes` pattern bytes, then closes (discarding anything the
    /// peer sends).
    Source {
        /// Bytes to send per connection.
        bytes: u64,
    },
}

impl ServeMode {
    fn name(self) -> &'static str {
        match self {
            ServeMode::Echo { .. } => "echo",
            ServeMode::Sink { .. } => "sink",
            ServeMode::Source { .. } => "source",
        }
    }
}

impl Workload {
    /// A short description for reports.
    pub fn describe(&self) -> String {
        match self {
            Workload::Ping { dst, count, .. } => match dst {
                Some(d) => format!("ping {d} x{count}"),
                None => format!("ping gateway x{count}"),
            },
            Workload::UdpEcho { dst, count, .. } => format!("udp-echo {dst} x{count}"),
            Workload::TcpEcho { dst, bytes } => format!("tcp-echo {dst} {bytes} B"),
            Workload::TcpSend { dst, bytes } => format!("tcp-send {dst} {bytes} B"),
            Workload::TcpRecv { dst, bytes } => format!("tcp-recv {dst} {bytes} B"),
            Workload::TcpHalfClose { dst, bytes } => format!("tcp-half-close {dst} {bytes} B"),
            Workload::TcpServe {
                port,
                mode,
                connections,
            } => {
                let bytes = match mode {
                    ServeMode::Source { bytes } => format!(" {bytes} B"),
                    ServeMode::Echo { expect: Some(b) } | ServeMode::Sink { expect: Some(b) } => {
                        format!(" {b} B")
                    }
                    _ => String::new(),
                };
                format!("tcp-serve :{port} {}{bytes} x{connections}", mode.name())
            }
        }
    }

    fn is_tcp(&self) -> bool {
        matches!(
            self,
            Workload::TcpEcho { .. }
                | Workload::TcpSend { .. }
                | Workload::TcpRecv { .. }
                | Workload::TcpHalfClose { .. }
        )
    }
}

/// A workload and when it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadSpec {
    /// What to do.
    pub workload: Workload,
    /// Delay after the guest is configured.
    pub start: Duration,
    /// The workload fails if it has not finished this long after it
    /// started.
    pub timeout: Duration,
    /// Ping and UDP echo: how long to wait for replies after the last
    /// request before finishing.
    pub linger: Duration,
    /// TCP client workloads: buffers and application behaviour.
    pub tcp: TcpClientOptions,
}

impl WorkloadSpec {
    /// `workload` starting at once, 60 s timeout, 2 s linger, default TCP
    /// options.
    pub fn new(workload: Workload) -> Self {
        WorkloadSpec {
            workload,
            start: Duration::ZERO,
            timeout: Duration::from_secs(60),
            linger: Duration::from_secs(2),
            tcp: TcpClientOptions::default(),
        }
    }
}

/// How a TCP client workload (tcp-echo, tcp-send, tcp-recv,
/// tcp-half-close) treats its socket, beyond what it sends and expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpClientOptions {
    /// smoltcp receive and send buffer, bytes each (the receive buffer is
    /// the window the guest advertises).
    pub buffer: usize,
    /// Stop reading once this many bytes were received ...
    pub pause_after: Option<u64>,
    /// ... for this long (the application stalls; smoltcp's receive
    /// buffer fills and its window closes), then read on.
    pub pause: Duration,
    /// Abort the connection (RST, RFC 9293 §3.10.5: ABORT) once this many
    /// bytes were handed to the socket; the workload then ends without
    /// error (the abort is what it was asked to do).
    pub abort_after: Option<u64>,
}

impl Default for TcpClientOptions {
    fn default() -> Self {
        TcpClientOptions {
            buffer: TCP_BUFFER,
            pause_after: None,
            pause: Duration::ZERO,
            abort_after: None,
        }
    }
}

/// What a workload did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadReport {
    /// [`Workload::describe`].
    pub name: String,
    /// When it started.
    pub started: Option<Instant>,
    /// When it finished (successfully or not).
    pub finished: Option<Instant>,
    /// Requests / datagrams sent (ping, UDP).
    pub sent: u64,
    /// Distinct replies received (ping, UDP).
    pub received: u64,
    /// Replies received more than once.
    pub duplicates: u64,
    /// Replies or stream bytes whose content was wrong.
    pub corrupt: u64,
    /// Payload bytes sent.
    pub bytes_sent: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
    /// Smallest round-trip time seen.
    pub rtt_min: Option<Duration>,
    /// Largest round-trip time seen.
    pub rtt_max: Option<Duration>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// TCP connections completed (tcp-serve: served and closed).
    pub connections: u64,
    /// TCP clients with `pause_after`: when the application stopped
    /// reading.
    pub paused_at: Option<Instant>,
    /// ... and when it read again.
    pub resumed_at: Option<Instant>,
    /// TCP clients with `abort_after`: when the connection was aborted.
    pub aborted_at: Option<Instant>,
}

impl WorkloadReport {
    /// Finished without error.
    pub fn succeeded(&self) -> bool {
        self.finished.is_some() && self.error.is_none()
    }

    fn rtt(&mut self, d: Duration) {
        self.rtt_min = Some(self.rtt_min.map_or(d, |m| m.min(d)));
        self.rtt_max = Some(self.rtt_max.map_or(d, |m| m.max(d)));
    }
}

/// Parameters of a [`SmolGuest`].
#[derive(Clone, Debug, PartialEq)]
pub struct SmolGuestConfig {
    /// The guest's MAC.
    pub mac: MacAddr,
    /// IP MTU of the guest's interface.
    pub mtu: usize,
    /// Configure by DHCP (otherwise `static_v4` is used at once).
    pub dhcp: bool,
    /// Static address, prefix length and gateway when `dhcp` is off.
    pub static_v4: Option<(Ipv4Addr, u8, Ipv4Addr)>,
    /// smoltcp's random seed (derive it from the master seed).
    pub random_seed: u64,
    /// What to do once configured.
    pub workloads: Vec<WorkloadSpec>,
}

impl SmolGuestConfig {
    /// DHCP, MTU 1500, the demo's MAC, no workloads.
    pub fn new(random_seed: u64) -> Self {
        SmolGuestConfig {
            mac: crate::demo::GUEST_MAC,
            mtu: 1500,
            dhcp: true,
            static_v4: None,
            random_seed,
            workloads: Vec::new(),
        }
    }
}

/// The in-memory Ethernet device between smoltcp and the simulation.
/// (Shared with the replay's model guest, `crate::replay::model`.)
#[derive(Debug)]
pub(crate) struct SimDevice {
    pub(crate) rx: VecDeque<Vec<u8>>,
    pub(crate) tx: Vec<Vec<u8>>,
    pub(crate) mtu: usize,
}

pub(crate) struct SimRxToken(Vec<u8>);
pub(crate) struct SimTxToken<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for SimRxToken {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

impl phy::TxToken for SimTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for SimDevice {
    type RxToken<'a> = SimRxToken;
    type TxToken<'a> = SimTxToken<'a>;

    fn receive(&mut self, _timestamp: SmolInstant) -> Option<(SimRxToken, SimTxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((SimRxToken(frame), SimTxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _timestamp: SmolInstant) -> Option<SimTxToken<'_>> {
        Some(SimTxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        // For Ethernet, smoltcp counts the 14-byte header in the MTU.
        caps.max_transmission_unit = self.mtu + 14;
        caps
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Running,
    Done,
}

#[derive(Debug)]
struct WorkloadState {
    spec: WorkloadSpec,
    index: usize,
    phase: Phase,
    report: WorkloadReport,
    handle: Option<SocketHandle>,
    start_at: Option<Instant>,
    next_send: Option<Instant>,
    last_send: Option<Instant>,
    outstanding: BTreeMap<u32, Instant>,
    answered: BTreeSet<u32>,
    closing: bool,
    /// The TCP connection reached a synchronized state (RFC 9293 §3.3.2):
    /// a later close without our FIN is a reset, before it a refusal.
    established: bool,
    /// tcp-serve: one entry per listening socket / connection.
    serve: Vec<ServeConn>,
}

/// One connection of a [`Workload::TcpServe`] (a listening socket until a
/// SYN arrives).
#[derive(Debug)]
struct ServeConn {
    handle: SocketHandle,
    /// Reached a synchronized state (RFC 9293 §3.3.2).
    established: bool,
    /// We called `close` (our FIN is queued).
    closing: bool,
    /// Finished (both FINs exchanged).
    done: bool,
    received: u64,
    sent: u64,
}

/// Most bytes handed to a TCP socket per call.
const TCP_CHUNK: usize = 16 * 1024;
/// smoltcp TCP socket buffers.
const TCP_BUFFER: usize = 64 * 1024;

/// The smoltcp guest (see the [module docs](self)).
pub struct SmolGuest {
    config: SmolGuestConfig,
    iface: Interface,
    sockets: SocketSet<'static>,
    device: SimDevice,
    dhcp: Option<SocketHandle>,
    address: Option<Ipv4Cidr>,
    router: Option<Ipv4Addr>,
    dns: Vec<Ipv4Addr>,
    configured_at: Option<Instant>,
    dhcp_events: u64,
    workloads: Vec<WorkloadState>,
    wake: Option<Instant>,
    now: Instant,
}

impl std::fmt::Debug for SmolGuest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmolGuest")
            .field("address", &self.address)
            .field("router", &self.router)
            .field("workloads", &self.workloads.len())
            .finish_non_exhaustive()
    }
}

impl SmolGuest {
    /// A guest at virtual time `now` (nothing is sent before the first
    /// [`SmolGuest::poll`]).
    pub fn new(config: SmolGuestConfig, now: Instant) -> Self {
        let mut device = SimDevice {
            rx: VecDeque::new(),
            tx: Vec::new(),
            mtu: config.mtu,
        };
        let mut iface_cfg = IfaceConfig::new(EthernetAddress(config.mac.0).into());
        iface_cfg.random_seed = config.random_seed;
        let iface = Interface::new(iface_cfg, &mut device, to_smol(now));
        let mut sockets = SocketSet::new(Vec::new());
        let dhcp = config.dhcp.then(|| sockets.add(dhcpv4::Socket::new()));
        let workloads = config
            .workloads
            .iter()
            .enumerate()
            .map(|(index, spec)| WorkloadState {
                report: WorkloadReport {
                    name: spec.workload.describe(),
                    ..WorkloadReport::default()
                },
                spec: spec.clone(),
                index,
                phase: Phase::Waiting,
                handle: None,
                start_at: None,
                next_send: None,
                last_send: None,
                outstanding: BTreeMap::new(),
                answered: BTreeSet::new(),
                closing: false,
                established: false,
                serve: Vec::new(),
            })
            .collect();
        let mut guest = SmolGuest {
            config,
            iface,
            sockets,
            device,
            dhcp,
            address: None,
            router: None,
            dns: Vec::new(),
            configured_at: None,
            dhcp_events: 0,
            workloads,
            wake: Some(now),
            now,
        };
        if !guest.config.dhcp {
            if let Some((addr, prefix, gw)) = guest.config.static_v4 {
                guest.configure(now, Ipv4Cidr::new(addr, prefix), Some(gw), Vec::new());
            }
        }
        guest
    }

    /// The address obtained (by DHCP or statically).
    pub fn address(&self) -> Option<Ipv4Cidr> {
        self.address
    }

    /// The default gateway.
    pub fn router(&self) -> Option<Ipv4Addr> {
        self.router
    }

    /// DNS servers announced by DHCP.
    pub fn dns_servers(&self) -> &[Ipv4Addr] {
        &self.dns
    }

    /// When the address was configured.
    pub fn configured_at(&self) -> Option<Instant> {
        self.configured_at
    }

    /// DHCP configuration events seen (configured or deconfigured).
    pub fn dhcp_events(&self) -> u64 {
        self.dhcp_events
    }

    /// The workloads' reports, in configuration order.
    pub fn reports(&self) -> Vec<WorkloadReport> {
        self.workloads.iter().map(|w| w.report.clone()).collect()
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

    /// All workloads done (and the address configured, if any workload
    /// exists; a guest without workloads is done once configured).
    pub fn finished(&self) -> bool {
        self.configured_at.is_some() && self.workloads.iter().all(|w| w.phase == Phase::Done)
    }

    /// Runs the stack and the workloads at `now`.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        self.now = now;
        let t = to_smol(now);
        self.iface.poll(t, &mut self.device, &mut self.sockets);
        self.poll_dhcp(now);
        let mut wake: Option<Instant> = None;
        if self.configured_at.is_some() {
            for i in 0..self.workloads.len() {
                let w = self.step_workload(i, now);
                wake = earliest(wake, w);
            }
        }
        // Send what the workloads queued.
        self.iface.poll(t, &mut self.device, &mut self.sockets);
        out.append(&mut self.device.tx);
        let stack = self.iface.poll_at(t, &self.sockets).map(from_smol);
        wake = earliest(wake, stack);
        // smoltcp's clock has microsecond resolution: a deadline that is
        // already due is retried one microsecond later, never in a loop.
        self.wake = wake.map(|w| {
            if w <= now {
                now + Duration::from_micros(1)
            } else {
                w
            }
        });
    }

    fn poll_dhcp(&mut self, now: Instant) {
        let Some(h) = self.dhcp else { return };
        let event = match self.sockets.get_mut::<dhcpv4::Socket>(h).poll() {
            None => None,
            Some(dhcpv4::Event::Configured(c)) => Some(Some((
                c.address,
                c.router,
                c.dns_servers.iter().copied().collect::<Vec<_>>(),
            ))),
            Some(dhcpv4::Event::Deconfigured) => Some(None),
        };
        match event {
            None => {}
            Some(Some((addr, router, dns))) => {
                self.dhcp_events += 1;
                self.configure(now, addr, router, dns);
            }
            Some(None) => {
                self.dhcp_events += 1;
                self.address = None;
                self.iface.update_ip_addrs(|a| a.clear());
                self.iface.routes_mut().remove_default_ipv4_route();
            }
        }
    }

    fn configure(
        &mut self,
        now: Instant,
        addr: Ipv4Cidr,
        router: Option<Ipv4Addr>,
        dns: Vec<Ipv4Addr>,
    ) {
        self.iface.update_ip_addrs(|a| {
            a.clear();
            let _ = a.push(IpCidr::Ipv4(addr));
        });
        match router {
            Some(r) => {
                let _ = self.iface.routes_mut().add_default_ipv4_route(r);
            }
            None => {
                self.iface.routes_mut().remove_default_ipv4_route();
            }
        }
        self.address = Some(addr);
        self.router = router;
        self.dns = dns;
        if self.configured_at.is_none() {
            self.configured_at = Some(now);
        }
    }

    /// Advances workload `i`; returns when it next wants to run.
    fn step_workload(&mut self, i: usize, now: Instant) -> Option<Instant> {
        let configured = self.configured_at?;
        let router = self.router;
        let w = &mut self.workloads[i];
        match w.phase {
            Phase::Done => return None,
            Phase::Waiting => {
                let start = *w.start_at.get_or_insert(configured + w.spec.start);
                if now < start {
                    return Some(start);
                }
                w.phase = Phase::Running;
                w.report.started = Some(now);
                w.next_send = Some(now);
                if let Workload::TcpServe {
                    port, connections, ..
                } = w.spec.workload
                {
                    if let Err(e) = open_listeners(&mut self.sockets, w, port, connections) {
                        fail(w, now, e);
                        return None;
                    }
                    return earliest(Some(now), Some(now + w.spec.timeout));
                }
                let handle = match open_socket(&mut self.iface, &mut self.sockets, w, router) {
                    Ok(h) => h,
                    Err(e) => {
                        fail(w, now, e);
                        return None;
                    }
                };
                w.handle = Some(handle);
            }
            Phase::Running => {}
        }
        let deadline = w.report.started.unwrap_or(now) + w.spec.timeout;
        let wake = match w.spec.workload.clone() {
            Workload::Ping {
                dst,
                count,
                interval,
                size,
            } => {
                let dst = dst.or(router);
                step_ping(&mut self.sockets, w, now, dst, count, interval, size)
            }
            Workload::UdpEcho {
                dst,
                count,
                interval,
                size,
            } => step_udp(&mut self.sockets, w, now, dst, count, interval, size),
            Workload::TcpEcho { bytes, .. }
            | Workload::TcpSend { bytes, .. }
            | Workload::TcpRecv { bytes, .. }
            | Workload::TcpHalfClose { bytes, .. } => step_tcp(&mut self.sockets, w, now, bytes),
            Workload::TcpServe {
                mode, connections, ..
            } => step_serve(&mut self.sockets, w, now, mode, connections),
        };
        if w.phase != Phase::Done && now >= deadline {
            let msg = format!(
                "timed out after {:?}: sent {} ({} B), received {} ({} B)",
                w.spec.timeout,
                w.report.sent,
                w.report.bytes_sent,
                w.report.received,
                w.report.bytes_received
            );
            let state = w.handle.and_then(|h| {
                w.spec
                    .workload
                    .is_tcp()
                    .then(|| self.sockets.get_mut::<tcp::Socket>(h).state())
            });
            let msg = match state {
                Some(s) => format!("{msg}, TCP state {s}"),
                None => msg,
            };
            let msg = if w.serve.is_empty() {
                msg
            } else {
                let states: Vec<String> = w
                    .serve
                    .iter()
                    .filter(|c| !c.done)
                    .map(|c| {
                        self.sockets
                            .get::<tcp::Socket>(c.handle)
                            .state()
                            .to_string()
                    })
                    .collect();
                format!(
                    "timed out after {:?}: {} connections served, {} B received, {} B sent; open sockets: {}",
                    w.spec.timeout,
                    w.report.connections,
                    w.report.bytes_received,
                    w.report.bytes_sent,
                    states.join(", ")
                )
            };
            fail(w, now, msg);
        }
        if w.phase == Phase::Done {
            // tcp-serve: listeners nobody connected to stop listening (so a
            // late SYN draws a RST); connections finish their close.
            for c in &w.serve {
                let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
                if s.state() == tcp::State::Listen {
                    s.abort();
                }
            }
            if let Some(h) = w.handle.take() {
                if w.spec.workload.is_tcp() {
                    // Leave the connection to finish its close in the
                    // background; only datagram sockets are removed.
                    w.handle = Some(h);
                } else {
                    self.sockets.remove(h);
                }
            }
            return None;
        }
        earliest(wake, Some(deadline))
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    passt_engine::time::earliest(a, b)
}

fn fail(w: &mut WorkloadState, now: Instant, msg: String) {
    if w.report.error.is_none() {
        w.report.error = Some(msg);
    }
    w.report.finished = Some(now);
    w.phase = Phase::Done;
}

fn finish(w: &mut WorkloadState, now: Instant) {
    w.report.finished = Some(now);
    w.phase = Phase::Done;
}

fn ip_endpoint(a: SocketAddrV4) -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(*a.ip()), a.port())
}

fn open_socket(
    iface: &mut Interface,
    sockets: &mut SocketSet<'static>,
    w: &WorkloadState,
    router: Option<Ipv4Addr>,
) -> Result<SocketHandle, String> {
    let index = w.index as u16;
    match &w.spec.workload {
        Workload::Ping { dst, .. } => {
            if dst.or(router).is_none() {
                return Err("ping: no destination and no gateway".into());
            }
            let mut s = icmp::Socket::new(
                icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 64], vec![0; 65536]),
                icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 64], vec![0; 65536]),
            );
            s.bind(icmp::Endpoint::Ident(0x5100 + index))
                .map_err(|e| format!("ping: bind: {e}"))?;
            Ok(sockets.add(s))
        }
        Workload::UdpEcho { size, .. } => {
            if *size < 4 {
                return Err("udp-echo: size must be at least 4".into());
            }
            let mut s = udp::Socket::new(
                udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 256], vec![0; 256 * 1024]),
                udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 256], vec![0; 256 * 1024]),
            );
            s.bind(41000 + index)
                .map_err(|e| format!("udp-echo: bind: {e}"))?;
            Ok(sockets.add(s))
        }
        Workload::TcpServe { .. } => Err("tcp-serve opens listeners, not one socket".into()),
        Workload::TcpEcho { dst, .. }
        | Workload::TcpSend { dst, .. }
        | Workload::TcpRecv { dst, .. }
        | Workload::TcpHalfClose { dst, .. } => {
            let size = w.spec.tcp.buffer.max(1);
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; size]),
                tcp::SocketBuffer::new(vec![0; size]),
            );
            s.connect(iface.context(), ip_endpoint(*dst), 40000 + index)
                .map_err(|e| format!("tcp connect: {e}"))?;
            Ok(sockets.add(s))
        }
    }
}

/// RFC 1071 Internet checksum.
fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn echo_data(seq: u32, size: usize) -> impl Iterator<Item = u8> {
    (0..size as u64).map(move |i| pattern_byte(i + u64::from(seq)))
}

fn step_ping(
    sockets: &mut SocketSet<'static>,
    w: &mut WorkloadState,
    now: Instant,
    dst: Option<Ipv4Addr>,
    count: u32,
    interval: Duration,
    size: usize,
) -> Option<Instant> {
    let h = w.handle?;
    let ident = 0x5100 + w.index as u16;
    let s = sockets.get_mut::<icmp::Socket>(h);
    // Replies (RFC 792: type 0, identifier and sequence echoed, data
    // returned unchanged).
    while let Ok((msg, _from)) = s.recv() {
        if msg.len() < 8 || msg[0] != 0 || u16::from_be_bytes([msg[4], msg[5]]) != ident {
            continue;
        }
        let seq = u32::from(u16::from_be_bytes([msg[6], msg[7]]));
        if !w.answered.insert(seq) {
            w.report.duplicates += 1;
            continue;
        }
        w.report.received += 1;
        w.report.bytes_received += (msg.len() - 8) as u64;
        if !msg[8..].iter().copied().eq(echo_data(seq, size)) {
            w.report.corrupt += 1;
        }
        if let Some(sent) = w.outstanding.remove(&seq) {
            w.report.rtt(now.saturating_duration_since(sent));
        }
    }
    let Some(dst) = dst else {
        fail(w, now, "ping: no destination".into());
        return None;
    };
    while w.report.sent < u64::from(count) && w.next_send.is_some_and(|t| t <= now) {
        let seq = w.report.sent as u32;
        let mut msg = vec![8u8, 0, 0, 0];
        msg.extend_from_slice(&ident.to_be_bytes());
        msg.extend_from_slice(&(seq as u16).to_be_bytes());
        msg.extend(echo_data(seq, size));
        let ck = inet_checksum(&msg);
        msg[2..4].copy_from_slice(&ck.to_be_bytes());
        if s.send_slice(&msg, IpAddress::Ipv4(dst)).is_err() {
            break;
        }
        w.report.sent += 1;
        w.report.bytes_sent += size as u64;
        w.outstanding.insert(seq, now);
        w.last_send = Some(now);
        w.next_send = Some(now + interval);
    }
    datagram_wake(w, now, count)
}

fn datagram_wake(w: &mut WorkloadState, now: Instant, count: u32) -> Option<Instant> {
    if w.report.sent >= u64::from(count) {
        let all_back = w.report.received >= u64::from(count);
        let linger_end = w.last_send.unwrap_or(now) + w.spec.linger;
        if all_back || now >= linger_end {
            finish(w, now);
            return None;
        }
        return Some(linger_end);
    }
    w.next_send
}

fn step_udp(
    sockets: &mut SocketSet<'static>,
    w: &mut WorkloadState,
    now: Instant,
    dst: SocketAddrV4,
    count: u32,
    interval: Duration,
    size: usize,
) -> Option<Instant> {
    let h = w.handle?;
    let s = sockets.get_mut::<udp::Socket>(h);
    let mut buf = vec![0u8; 65536];
    while let Ok((n, meta)) = s.recv_slice(&mut buf) {
        if meta.endpoint != ip_endpoint(dst) || n < 4 {
            w.report.corrupt += 1;
            continue;
        }
        let seq = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if !w.answered.insert(seq) {
            w.report.duplicates += 1;
            continue;
        }
        w.report.received += 1;
        w.report.bytes_received += n as u64;
        if n != size || !buf[4..n].iter().copied().eq(echo_data(seq, size - 4)) {
            w.report.corrupt += 1;
        }
        if let Some(sent) = w.outstanding.remove(&seq) {
            w.report.rtt(now.saturating_duration_since(sent));
        }
    }
    while w.report.sent < u64::from(count) && w.next_send.is_some_and(|t| t <= now) {
        let seq = w.report.sent as u32;
        let mut msg = seq.to_be_bytes().to_vec();
        msg.extend(echo_data(seq, size - 4));
        if s.send_slice(&msg, ip_endpoint(dst)).is_err() {
            break;
        }
        w.report.sent += 1;
        w.report.bytes_sent += size as u64;
        w.outstanding.insert(seq, now);
        w.last_send = Some(now);
        w.next_send = Some(now + interval);
    }
    datagram_wake(w, now, count)
}

fn step_tcp(
    sockets: &mut SocketSet<'static>,
    w: &mut WorkloadState,
    now: Instant,
    bytes: u64,
) -> Option<Instant> {
    let h = w.handle?;
    let s = sockets.get_mut::<tcp::Socket>(h);
    let sends = !matches!(w.spec.workload, Workload::TcpRecv { .. });
    let receives = !matches!(w.spec.workload, Workload::TcpSend { .. });
    let opts = w.spec.tcp;
    // Out: pattern bytes, as much as the socket takes (up to the abort
    // point, if any), written in place into its send buffer (no copy,
    // nothing generated that does not fit).
    let send_limit = opts.abort_after.map_or(bytes, |a| a.min(bytes));
    while sends && w.report.bytes_sent < send_limit && s.can_send() {
        let off = w.report.bytes_sent;
        let want = (send_limit - off).min(TCP_CHUNK as u64) as usize;
        let sent = s.send(|free| {
            let n = free.len().min(want);
            fill_pattern(&mut free[..n], off);
            (n, n)
        });
        match sent {
            Ok(0) | Err(_) => break,
            Ok(k) => w.report.bytes_sent += k as u64,
        }
    }
    if let Some(limit) = opts.abort_after {
        if w.report.bytes_sent >= limit.min(bytes) && s.is_open() {
            // RFC 9293 §3.10.5: ABORT sends a RST and forgets the
            // connection; smoltcp does exactly that.
            s.abort();
            w.report.aborted_at = Some(now);
            finish(w, now);
            return None;
        }
    }
    // The application's read stall (`pause_after` / `pause`).
    let mut read_cap = u64::MAX;
    if let Some(after) = opts.pause_after {
        match (w.report.paused_at, w.report.resumed_at) {
            (None, _) if w.report.bytes_received >= after => {
                w.report.paused_at = Some(now);
                read_cap = 0;
            }
            (None, _) => read_cap = after - w.report.bytes_received,
            (Some(p), None) if now < p + opts.pause => read_cap = 0,
            (Some(_), None) => w.report.resumed_at = Some(now),
            _ => {}
        }
    }
    // In: checked against the pattern in place in the receive buffer.
    while read_cap > 0 && s.can_recv() {
        let off = w.report.bytes_received;
        let cap = usize::try_from(read_cap).unwrap_or(usize::MAX);
        let got = s.recv(|data| {
            let n = data.len().min(cap);
            (n, (n, pattern_mismatches(&data[..n], off)))
        });
        match got {
            Ok((0, _)) | Err(_) => break,
            Ok((n, bad)) => {
                w.report.corrupt += bad as u64;
                w.report.bytes_received += n as u64;
                read_cap -= n as u64;
            }
        }
    }
    if let (Some(after), None) = (opts.pause_after, w.report.paused_at) {
        if w.report.bytes_received >= after {
            w.report.paused_at = Some(now);
        }
    }
    let state = s.state();
    if !matches!(
        state,
        tcp::State::Closed | tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived
    ) {
        w.established = true;
    }
    let half_close = matches!(w.spec.workload, Workload::TcpHalfClose { .. });
    // Half-close: the FIN follows the last queued byte, acknowledged or not.
    let sent_all = !sends || (w.report.bytes_sent >= bytes && (half_close || s.send_queue() == 0));
    let got_all = match w.spec.workload {
        Workload::TcpEcho { .. } => w.report.bytes_received >= bytes,
        Workload::TcpRecv { .. } => !s.may_recv() && state != tcp::State::SynSent,
        _ => true,
    };
    // A connection that went from synchronized to CLOSED without our
    // close was reset (after the peer's FIN it waits in CLOSE-WAIT): that
    // is a failure below, never a finished stream.
    let reset = state == tcp::State::Closed;
    if !w.closing && sent_all && got_all && state != tcp::State::SynSent && !reset {
        s.close();
        w.closing = true;
    }
    if w.closing {
        let closed_enough = if half_close {
            // Both FINs exchanged (or the connection gone): the echo that
            // followed our FIN is complete.
            matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait)
        } else {
            matches!(
                s.state(),
                tcp::State::Closed | tcp::State::TimeWait | tcp::State::FinWait2
            )
        };
        if closed_enough {
            if receives && w.report.bytes_received != bytes {
                let msg = format!(
                    "received {} bytes, expected {bytes}",
                    w.report.bytes_received
                );
                fail(w, now, msg);
            } else if w.report.corrupt > 0 {
                let msg = format!("{} corrupt bytes", w.report.corrupt);
                fail(w, now, msg);
            } else {
                finish(w, now);
            }
            return None;
        }
    } else if state == tcp::State::Closed && w.report.started.is_some_and(|t| now > t) {
        let how = if w.established {
            "connection reset"
        } else {
            "connection refused (closed before it was established)"
        };
        let msg = format!(
            "{how} after {} B sent, {} B received",
            w.report.bytes_sent, w.report.bytes_received
        );
        fail(w, now, msg);
        return None;
    }
    // A read stall ends on its own clock.
    if let (Some(p), None) = (w.report.paused_at, w.report.resumed_at) {
        return Some(p + opts.pause);
    }
    // The stack's own poll_at covers retransmissions; come back soon for
    // buffer space and data.
    None
}

/// Opens `connections` sockets listening on `port` (RFC 9293 §3.10.1:
/// a passive OPEN). smoltcp hands each SYN to the first socket still in
/// LISTEN, so several connections may be set up at once.
fn open_listeners(
    sockets: &mut SocketSet<'static>,
    w: &mut WorkloadState,
    port: u16,
    connections: u32,
) -> Result<(), String> {
    if connections == 0 || connections > MAX_SERVE_CONNECTIONS {
        return Err(format!(
            "tcp-serve: connections must be 1..={MAX_SERVE_CONNECTIONS}, not {connections}"
        ));
    }
    for _ in 0..connections {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
            tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
        );
        s.listen(port)
            .map_err(|e| format!("tcp-serve: listen on {port}: {e}"))?;
        w.serve.push(ServeConn {
            handle: sockets.add(s),
            established: false,
            closing: false,
            done: false,
            received: 0,
            sent: 0,
        });
    }
    Ok(())
}

/// Serves every connection of a [`Workload::TcpServe`]; finishes once
/// `connections` of them are closed both ways, fails at the first reset
/// or at a wrong byte count.
fn step_serve(
    sockets: &mut SocketSet<'static>,
    w: &mut WorkloadState,
    now: Instant,
    mode: ServeMode,
    connections: u32,
) -> Option<Instant> {
    let mut buf = vec![0u8; TCP_CHUNK];
    let mut error: Option<String> = None;
    for c in w.serve.iter_mut().filter(|c| !c.done) {
        let s = sockets.get_mut::<tcp::Socket>(c.handle);
        // In: checked against the pattern; echoed no faster than the send
        // buffer takes it, so back-pressure reaches the peer through our
        // window.
        loop {
            let room = match mode {
                ServeMode::Echo { .. } => (s.send_capacity() - s.send_queue()).min(TCP_CHUNK),
                _ => TCP_CHUNK,
            };
            if room == 0 || !s.can_recv() {
                break;
            }
            let n = match s.recv_slice(&mut buf[..room]) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            w.report.corrupt += pattern_mismatches(&buf[..n], c.received) as u64;
            c.received += n as u64;
            w.report.bytes_received += n as u64;
            if matches!(mode, ServeMode::Echo { .. }) {
                // Fits: `room` is the free send space.
                let k = s.send_slice(&buf[..n]).unwrap_or(0);
                c.sent += k as u64;
                w.report.bytes_sent += k as u64;
                if k < n {
                    error.get_or_insert_with(|| "tcp-serve: echo lost bytes".into());
                }
            }
        }
        // Out (source): pattern bytes, as much as the socket takes.
        if let ServeMode::Source { bytes } = mode {
            while c.sent < bytes && s.can_send() {
                let want = (bytes - c.sent).min(TCP_CHUNK as u64) as usize;
                let off = c.sent;
                let sent = s.send(|free| {
                    let n = free.len().min(want);
                    fill_pattern(&mut free[..n], off);
                    (n, n)
                });
                match sent {
                    Ok(0) | Err(_) => break,
                    Ok(k) => {
                        c.sent += k as u64;
                        w.report.bytes_sent += k as u64;
                    }
                }
            }
        }
        let state = s.state();
        if !matches!(
            state,
            tcp::State::Closed | tcp::State::Listen | tcp::State::SynReceived
        ) {
            c.established = true;
        }
        if !c.established {
            // Still listening (a RST in SYN-RECEIVED returns the socket to
            // LISTEN, RFC 9293 §3.10.7.3).
            continue;
        }
        // Our FIN: after the peer's FIN (echo, sink: RFC 9293 §3.6, the
        // peer may half-close and still read) or after the last byte
        // (source).
        let ready_to_close = match mode {
            ServeMode::Echo { .. } | ServeMode::Sink { .. } => !s.may_recv(),
            ServeMode::Source { bytes } => c.sent >= bytes,
        };
        if !c.closing && ready_to_close && state != tcp::State::Closed {
            s.close();
            c.closing = true;
        }
        let state = s.state();
        if c.closing && matches!(state, tcp::State::Closed | tcp::State::TimeWait) {
            c.done = true;
            w.report.connections += 1;
            let expect = match mode {
                ServeMode::Echo { expect } | ServeMode::Sink { expect } => expect,
                ServeMode::Source { .. } => None,
            };
            if let Some(want) = expect {
                if c.received != want {
                    error.get_or_insert_with(|| {
                        format!(
                            "tcp-serve: a connection carried {} B, expected {want}",
                            c.received
                        )
                    });
                }
            }
        } else if !c.closing && state == tcp::State::Closed {
            c.done = true;
            error.get_or_insert_with(|| {
                format!(
                    "connection reset after {} B received, {} B sent",
                    c.received, c.sent
                )
            });
        }
    }
    if let Some(e) = error {
        fail(w, now, e);
        return None;
    }
    if w.report.connections >= u64::from(connections) {
        if w.report.corrupt > 0 {
            let msg = format!("{} corrupt bytes", w.report.corrupt);
            fail(w, now, msg);
        } else {
            finish(w, now);
        }
        return None;
    }
    // The stack's own poll_at covers retransmissions; frames wake us.
    None
}
