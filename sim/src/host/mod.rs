//! `SimHost`: a deterministic model of the Linux socket layer, implementing
//! [`passt_engine::HostIo`], with a simulated internet behind it.
//!
//! # What this module owns
//!
//! - The socket model: TCP (nonblocking connect, listen/accept with a
//!   backlog, bounded send and receive buffers, peek at an offset, discard,
//!   half-close, close-with-unread-data = RST, abort, `tcp_info`, splice),
//!   UDP (bind with ephemeral ports, connect, batches, ICMP errors through an
//!   error queue) and ping sockets, each as the Linux kernel behaves (see the
//!   [`HostIo`](passt_engine::HostIo) docs and the `passt-conformance`
//!   crate, whose scenarios run against the kernel and, through
//!   [`SimWorld`], against this model).
//! - The simulated internet: remote endpoints identified by [`SocketAddr`],
//!   each remote IP with a [`RemoteHostConfig`] (latency, bandwidth, MSS,
//!   buffer sizes, reachability, whether it answers ping). A TCP connection
//!   is two endpoints joined by two byte pipes; every segment, ACK, window
//!   update, RST, SYN, datagram and ICMP error is an event in a
//!   [`Scheduler`] on virtual time.
//! - Remote programs: test-driven remote sockets (`remote_*` methods),
//!   built-in services ([`services::RemoteService`]: echo, sink, source,
//!   HTTP-ish, scripted peers) and datagram services ([`dns`] responder).
//! - A simulated epoll: [`SimHost::take_events`] reports level-triggered
//!   readiness of every registered host socket, in [`SockId`] order.
//! - Host-side faults ([`HostFaults`]): refused connections, reset after N
//!   bytes, EAGAIN storms, short reads and writes.
//! - Two network namespaces: the host's, and pasta's target
//!   ([`passt_engine::Netns::Guest`]), which has its own loopback and no
//!   other route. Every binding and lookup is per namespace; remote
//!   programs are made in one with the `remote_*_in` methods.
//!
//! # Driving it
//!
//! The host keeps its own clock: every `HostIo` call happens at
//! [`SimHost::now`]. A simulation loop, at each step of virtual time `now`:
//!
//! ```text
//! host.advance(now)                  // deliver internal events due by `now`
//! host.take_events(&mut events)      // level-triggered readiness
//! engine.handle_host_event(now, ..)  // for each (token, readiness)
//! next = min(engine.poll_timeout(), host.poll_timeout(), other sources)
//! ```
//!
//! # What it must never do
//!
//! Read the wall clock, draw randomness outside its [`SimRng`], or iterate
//! an unordered collection: the same seed and the same calls give the same
//! run, bit for bit.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use passt_engine::host_io::{Family, IcmpErrorReport, Interest, Netns, Readiness, SockId, Token};
use passt_engine::{HostError, Instant};

use crate::fault::HostFaults;
use crate::link::LinkConfig;
use crate::sched::{Scheduler, StableEncode, TraceHash};
use crate::seed::SimRng;

pub mod dns;
mod hostio;
mod remote;
pub mod services;
mod tcp;
mod udp;
mod world;

pub use remote::{AppConn, AppStatus, DatagramApp, RemoteSock, RemoteTcpState, StreamApp};
pub use services::{
    PeerScript, PeerScriptReport, PeerScriptStatus, PeerStep, RemoteService, ServiceOptions,
    SinkStats,
};
pub use world::SimWorld;

/// Whether a remote IP can be reached, and how it fails if not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Reach {
    /// Packets arrive. A SYN to a port nobody listens on draws a RST, a
    /// datagram to a closed port an ICMP port unreachable.
    #[default]
    Reachable,
    /// A router answers with ICMP host unreachable: connects fail with
    /// `EHOSTUNREACH` after a round trip, datagrams queue that error.
    HostUnreachable,
    /// No route at all: connects and sends fail at once with `ENETUNREACH`.
    NoRoute,
    /// Packets vanish: connects time out after the SYN retries
    /// (`ETIMEDOUT`), datagrams get no answer.
    Blackhole,
}

/// A remote host (or the loopback path) as the simulated internet sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteHostConfig {
    /// Latency and bandwidth of each direction of the path (every
    /// connection gets its own pipes with these parameters).
    pub link: LinkConfig,
    /// TCP MSS on the path.
    pub mss: u32,
    /// Receive buffer of that host's TCP sockets: what it advertises as its
    /// window. A remote that reads slowly fills it, then our send buffer.
    pub recv_buf: usize,
    /// Send buffer of that host's TCP sockets.
    pub send_buf: usize,
    /// Reachability.
    pub reach: Reach,
    /// Whether it answers ICMP echo requests.
    pub answers_ping: bool,
}

impl RemoteHostConfig {
    /// The loopback path: 20 µs each way, unlimited bandwidth, the MSS of a
    /// 65536-byte MTU.
    pub fn loopback() -> Self {
        RemoteHostConfig {
            link: LinkConfig {
                bandwidth_bps: None,
                latency: Duration::from_micros(20),
            },
            mss: 65483,
            recv_buf: 256 * 1024,
            send_buf: 256 * 1024,
            reach: Reach::Reachable,
            answers_ping: true,
        }
    }

    /// A typical internet host: 10 ms each way, 100 Mbit/s, MSS 1460.
    pub fn internet() -> Self {
        RemoteHostConfig {
            link: LinkConfig::new(100_000_000, Duration::from_millis(10)),
            mss: 1460,
            recv_buf: 256 * 1024,
            send_buf: 256 * 1024,
            reach: Reach::Reachable,
            answers_ping: true,
        }
    }
}

/// Parameters of the simulated host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimHostConfig {
    /// The host's own IPv4 address (source of connections to non-loopback
    /// destinations). `None`: no IPv4 connectivity beyond loopback.
    pub host_v4: Option<Ipv4Addr>,
    /// The host's own IPv6 address.
    pub host_v6: Option<Ipv6Addr>,
    /// `SO_SNDBUF` of host TCP sockets.
    pub send_buf: usize,
    /// `SO_RCVBUF` of host TCP sockets (the window we advertise).
    pub recv_buf: usize,
    /// Receive buffer of UDP and ping sockets, in payload bytes.
    pub udp_recv_buf: usize,
    /// The loopback path (127.0.0.0/8, ::1, and the host's own addresses).
    pub loopback: RemoteHostConfig,
    /// Remote IPs without an entry of their own.
    pub default_remote: RemoteHostConfig,
    /// SYN retransmissions before `ETIMEDOUT` (`net.ipv4.tcp_syn_retries`).
    pub syn_retries: u32,
    /// Initial SYN retransmission timeout (doubled after each retry).
    pub syn_rto: Duration,
    /// How long an orphaned (closed) connection waits for the peer's FIN
    /// before resetting (`tcp_fin_timeout`).
    pub fin_timeout: Duration,
    /// Whether ping sockets are allowed (`net.ipv4.ping_group_range`).
    pub ping_allowed: bool,
    /// Lowest port an unprivileged process may bind
    /// (`net.ipv4.ip_unprivileged_port_start`); 0 allows all.
    pub unprivileged_port_start: u16,
    /// Most host sockets open at once (beyond: `NoResources`, as `EMFILE`).
    pub max_sockets: usize,
}

impl Default for SimHostConfig {
    fn default() -> Self {
        SimHostConfig {
            host_v4: Some(Ipv4Addr::new(198, 51, 100, 1)),
            host_v6: Some(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1)),
            send_buf: 256 * 1024,
            recv_buf: 256 * 1024,
            udp_recv_buf: 212_992,
            loopback: RemoteHostConfig::loopback(),
            default_remote: RemoteHostConfig::internet(),
            syn_retries: 6,
            syn_rto: Duration::from_secs(1),
            fin_timeout: Duration::from_secs(60),
            ping_allowed: true,
            unprivileged_port_start: 0,
            max_sockets: 65_536,
        }
    }
}

/// What the model did, for tests and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimHostStats {
    /// Internal events processed.
    pub events: u64,
    /// TCP data segments delivered.
    pub segments: u64,
    /// RSTs sent (by either side).
    pub rsts: u64,
    /// Datagrams dropped (full receive buffer, connected socket mismatch
    /// that drew no ICMP, unreachable).
    pub udp_dropped: u64,
    /// ICMP errors generated.
    pub icmp_errors: u64,
    /// Spurious `WouldBlock`s injected.
    pub eagain_injected: u64,
    /// Calls cut short by the short-I/O fault.
    pub short_io_injected: u64,
    /// Connections refused by the fault.
    pub refused_injected: u64,
    /// Connections reset by the reset-after-N-bytes fault.
    pub resets_injected: u64,
}

/// A snapshot of one host TCP socket (a connection the engine holds
/// through `HostIo`), for tests that bound the model's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostTcpSocket {
    /// The engine's handle.
    pub sock: SockId,
    /// Local address.
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
    /// Established (possibly half-closed); false while connecting and
    /// after a reset.
    pub established: bool,
    /// Bytes written but not yet acknowledged by the peer (`SIOCOUTQ`).
    pub send_queued: usize,
    /// `SO_SNDBUF`.
    pub send_buf: usize,
    /// Bytes received and not yet consumed (`SIOCINQ`).
    pub recv_queued: usize,
    /// `SO_RCVBUF`.
    pub recv_buf: usize,
    /// Every data byte the socket ever received from its peer.
    pub bytes_received: u64,
    /// Every data byte the peer acknowledged.
    pub bytes_acked: u64,
}

/// The internal id of an endpoint: never reused, so stale events find
/// nothing instead of a stranger.
pub(crate) type EpId = u64;

/// Which program owns an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// A host socket, used through `HostIo`.
    Host,
    /// A remote (or loopback peer) socket, used by tests and services.
    Remote,
}

/// Binding table namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Proto {
    Tcp,
    Udp,
    Ping,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TcpState {
    /// Our SYN is out.
    SynSent,
    /// A passive child whose handshake is not complete.
    SynRcvd,
    /// Data may flow (the half-closed states are flags on top).
    Established,
    /// Reset, refused, timed out, or disconnected: `TCP_CLOSE`.
    Dead,
}

/// Per-direction path parameters of one connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Path {
    pub link: LinkConfig,
    pub mss: u32,
}

#[derive(Debug)]
pub(crate) struct Stream {
    pub state: TcpState,
    pub remote: SocketAddr,
    pub peer: Option<EpId>,
    /// The listener a passive child belongs to until accepted.
    pub listener: Option<EpId>,
    pub path: Path,
    /// When our transmitter is free again (serialization, FIFO).
    pub busy_until: Instant,
    // --- send side ---
    /// Unacknowledged bytes, sent or not (`SIOCOUTQ`).
    pub sndq: VecDeque<u8>,
    pub sndbuf: usize,
    /// Data bytes acknowledged by the peer.
    pub snd_una: u64,
    /// Data bytes sent.
    pub snd_nxt: u64,
    /// Peer's advertised window, relative to `snd_una`.
    pub snd_wnd: u32,
    pub wr_shut: bool,
    pub fin_sent: bool,
    pub fin_acked: bool,
    // --- receive side ---
    pub rcvq: VecDeque<u8>,
    pub rcvbuf: usize,
    /// Data bytes received.
    pub rcv_nxt: u64,
    /// The peer's FIN arrived (`SOCK_DONE`).
    pub rcv_fin: bool,
    /// `SHUT_RD`.
    pub rd_shut: bool,
    /// Right edge of the window we last advertised.
    pub adv_edge: u64,
    // --- misc ---
    /// `SO_ERROR`.
    pub so_error: Option<HostError>,
    /// Closed by its program; lingers to deliver data and FIN.
    pub orphan: bool,
    pub syn_sent_at: Instant,
    pub srtt_us: u32,
    pub rtt_probe: Option<(u64, Instant)>,
    pub nodelay: bool,
    /// Bytes counted for the reset-after fault (host side only).
    pub fault_bytes: u64,
}

#[derive(Debug)]
pub(crate) struct Listener {
    pub backlog: u32,
    /// Established children waiting for `accept`.
    pub accept_q: VecDeque<EpId>,
    /// Children still in the handshake.
    pub syn_q: BTreeSet<EpId>,
}

#[derive(Debug)]
pub(crate) struct Dgram {
    pub connected: Option<SocketAddr>,
    pub rxq: VecDeque<(SocketAddr, Vec<u8>)>,
    pub rx_bytes: usize,
    pub rcvbuf: usize,
    pub errq: VecDeque<IcmpErrorReport>,
    pub so_error: Option<HostError>,
}

#[derive(Debug)]
pub(crate) struct Ping {
    pub family: Family,
    pub id: u16,
    pub rxq: VecDeque<(IpAddr, Vec<u8>)>,
    pub rx_bytes: usize,
    pub rcvbuf: usize,
    pub errq: VecDeque<IcmpErrorReport>,
    pub so_error: Option<HostError>,
}

#[derive(Debug)]
pub(crate) enum EpKind {
    Listener(Listener),
    Stream(Box<Stream>),
    Udp(Dgram),
    Ping(Ping),
}

#[derive(Debug)]
pub(crate) struct Endpoint {
    pub side: Side,
    /// The network namespace it lives in: the host's, or pasta's target
    /// namespace, which has only its own loopback.
    pub ns: Netns,
    pub local: SocketAddr,
    /// A program (host `SockId`, test handle, app, or the listener queue)
    /// still refers to it.
    pub handle_open: bool,
    pub kind: EpKind,
}

/// Engine-side registration of a host socket.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HostSock {
    pub ep: EpId,
    pub token: Option<Token>,
    pub interest: Interest,
}

/// Internal events on virtual time.
#[derive(Debug)]
pub(crate) enum Ev {
    /// A SYN arrives at `to`.
    Syn { from: EpId, to: SocketAddr },
    /// The client's SYN retransmission timer.
    SynRetry { ep: EpId, attempt: u32 },
    /// SYN-ACK arrives at the client.
    SynAck { to: EpId, from: EpId, wnd: u32 },
    /// The final ACK of the handshake arrives at the passive child.
    HandshakeAck { to: EpId, wnd: u32 },
    /// A data segment (and/or FIN) arrives.
    Data {
        to: EpId,
        from: EpId,
        data: Vec<u8>,
        fin: bool,
    },
    /// An ACK / window update arrives.
    Ack {
        to: EpId,
        ack: u64,
        wnd: u32,
        fin: bool,
    },
    /// A RST arrives.
    Rst { to: EpId },
    /// An ICMP error answers a SYN.
    ConnectFail { to: EpId, error: HostError },
    /// An orphan's FIN-WAIT-2 timer.
    OrphanTimeout { ep: EpId },
    /// A datagram arrives at `to` in namespace `ns`.
    Datagram {
        ns: Netns,
        to: SocketAddr,
        from: SocketAddr,
        from_ep: Option<EpId>,
        payload: Vec<u8>,
    },
    /// An ICMP error arrives at a UDP or ping socket.
    Icmp { to: EpId, report: IcmpErrorReport },
    /// An echo reply arrives at a ping socket.
    PingReply {
        to: EpId,
        from: IpAddr,
        msg: Vec<u8>,
    },
    /// An app's timer.
    Wake { ep: EpId },
}

impl StableEncode for Ev {
    fn encode_stable(&self, out: &mut Vec<u8>) {
        fn addr(out: &mut Vec<u8>, a: &SocketAddr) {
            match a.ip() {
                IpAddr::V4(v) => out.extend_from_slice(&v.octets()),
                IpAddr::V6(v) => out.extend_from_slice(&v.octets()),
            }
            out.extend_from_slice(&a.port().to_le_bytes());
        }
        match self {
            Ev::Syn { from, to } => {
                out.push(1);
                from.encode_stable(out);
                addr(out, to);
            }
            Ev::SynRetry { ep, attempt } => {
                out.push(2);
                ep.encode_stable(out);
                attempt.encode_stable(out);
            }
            Ev::SynAck { to, from, wnd } => {
                out.push(3);
                to.encode_stable(out);
                from.encode_stable(out);
                wnd.encode_stable(out);
            }
            Ev::HandshakeAck { to, wnd } => {
                out.push(4);
                to.encode_stable(out);
                wnd.encode_stable(out);
            }
            Ev::Data {
                to,
                from,
                data,
                fin,
            } => {
                out.push(5);
                to.encode_stable(out);
                from.encode_stable(out);
                data.encode_stable(out);
                out.push(*fin as u8);
            }
            Ev::Ack { to, ack, wnd, fin } => {
                out.push(6);
                to.encode_stable(out);
                ack.encode_stable(out);
                wnd.encode_stable(out);
                out.push(*fin as u8);
            }
            Ev::Rst { to } => {
                out.push(7);
                to.encode_stable(out);
            }
            Ev::ConnectFail { to, error } => {
                out.push(8);
                to.encode_stable(out);
                out.extend_from_slice(format!("{error:?}").as_bytes());
            }
            Ev::OrphanTimeout { ep } => {
                out.push(9);
                ep.encode_stable(out);
            }
            Ev::Datagram {
                ns,
                to,
                from,
                from_ep,
                payload,
            } => {
                out.push(10);
                addr(out, to);
                addr(out, from);
                from_ep.unwrap_or(u64::MAX).encode_stable(out);
                payload.encode_stable(out);
                // The host's namespace adds nothing: traces of runs
                // without the guest namespace hash as they always did.
                if *ns == Netns::Guest {
                    out.push(1);
                }
            }
            Ev::Icmp { to, report } => {
                out.push(11);
                to.encode_stable(out);
                out.push(report.icmp_type);
                out.push(report.icmp_code);
                addr(out, &report.dst);
            }
            Ev::PingReply { to, from, msg } => {
                out.push(12);
                to.encode_stable(out);
                addr(out, &SocketAddr::new(*from, 0));
                msg.encode_stable(out);
            }
            Ev::Wake { ep } => {
                out.push(13);
                ep.encode_stable(out);
            }
        }
    }
}

/// The simulated host. See the [module docs](self).
pub struct SimHost {
    pub(crate) cfg: SimHostConfig,
    pub(crate) sched: Scheduler<Ev>,
    pub(crate) eps: BTreeMap<EpId, Endpoint>,
    pub(crate) next_ep: EpId,
    pub(crate) socks: Vec<Option<HostSock>>,
    pub(crate) open_socks: usize,
    pub(crate) binds: BTreeMap<(Netns, Proto, IpAddr, u16), EpId>,
    pub(crate) remote_hosts: BTreeMap<IpAddr, RemoteHostConfig>,
    pub(crate) rng: SimRng,
    pub(crate) fault_rng: SimRng,
    pub(crate) faults: HostFaults,
    pub(crate) apps: BTreeMap<EpId, Box<dyn StreamApp>>,
    pub(crate) services: BTreeMap<EpId, RemoteService>,
    pub(crate) dgram_apps: BTreeMap<SocketAddr, Box<dyn DatagramApp>>,
    pub(crate) dirty: BTreeSet<EpId>,
    /// When the datagram wire from one IP to another is free again.
    pub(crate) wire_busy: BTreeMap<(IpAddr, IpAddr), Instant>,
    pub(crate) trace: TraceHash,
    pub(crate) stats: SimHostStats,
}

impl std::fmt::Debug for SimHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHost")
            .field("now", &self.now())
            .field("endpoints", &self.eps.len())
            .field("pending_events", &self.sched.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// Largest UDP payload over IPv4 / IPv6.
pub(crate) const UDP_MAX_V4: usize = 65_507;
pub(crate) const UDP_MAX_V6: usize = 65_527;
/// Datagrams per batch call (as `RealHost`'s `UDP_BATCH`).
pub(crate) const UDP_BATCH: usize = 64;
/// Ephemeral port range (`net.ipv4.ip_local_port_range`).
const EPHEMERAL: (u16, u16) = (32768, 60999);
/// Error queue bound per socket.
pub(crate) const ERRQ_MAX: usize = 64;

impl SimHost {
    /// A host with `config`, drawing all its randomness from `rng` (pass a
    /// named child of the run's master generator, e.g.
    /// `master.child("host")`).
    pub fn new(config: SimHostConfig, rng: SimRng) -> SimHost {
        SimHost {
            cfg: config,
            sched: Scheduler::new(),
            eps: BTreeMap::new(),
            next_ep: 1,
            socks: Vec::new(),
            open_socks: 0,
            binds: BTreeMap::new(),
            remote_hosts: BTreeMap::new(),
            fault_rng: rng.child("faults"),
            rng: rng.child("ports"),
            faults: HostFaults::none(),
            apps: BTreeMap::new(),
            services: BTreeMap::new(),
            dgram_apps: BTreeMap::new(),
            dirty: BTreeSet::new(),
            wire_busy: BTreeMap::new(),
            trace: TraceHash::new(),
            stats: SimHostStats::default(),
        }
    }

    /// A default host whose generator is `SimRng::from_seed(seed).child("host")`.
    pub fn with_seed(seed: u64) -> SimHost {
        SimHost::new(
            SimHostConfig::default(),
            SimRng::from_seed(seed).child("host"),
        )
    }

    /// The configuration.
    pub fn config(&self) -> &SimHostConfig {
        &self.cfg
    }

    /// Describes a remote host (replacing an earlier description).
    pub fn set_remote_host(&mut self, ip: IpAddr, config: RemoteHostConfig) {
        self.remote_hosts.insert(ip, config);
    }

    /// Installs host-side faults (they apply to `HostIo` calls from now on).
    pub fn set_faults(&mut self, faults: HostFaults) {
        self.faults = faults;
    }

    /// Counters.
    pub fn stats(&self) -> SimHostStats {
        self.stats
    }

    /// Hash of every internal event processed so far (time and content).
    pub fn trace_hash(&self) -> &TraceHash {
        &self.trace
    }

    /// Every TCP stream socket the engine holds open, in [`SockId`] order.
    pub fn host_tcp_sockets(&self) -> Vec<HostTcpSocket> {
        let mut out = Vec::new();
        for (i, slot) in self.socks.iter().enumerate() {
            let Some(hs) = slot else { continue };
            let Some(e) = self.eps.get(&hs.ep) else {
                continue;
            };
            let EpKind::Stream(s) = &e.kind else { continue };
            out.push(HostTcpSocket {
                sock: SockId(i as u32),
                local: e.local,
                remote: s.remote,
                established: s.state == TcpState::Established,
                send_queued: s.sndq.len(),
                send_buf: s.sndbuf,
                recv_queued: s.rcvq.len(),
                recv_buf: s.rcvbuf,
                bytes_received: s.rcv_nxt,
                bytes_acked: s.snd_una,
            });
        }
        out
    }

    /// Host sockets (any kind) the engine holds open: what `ls
    /// /proc/self/fd` would count.
    pub fn open_host_sockets(&self) -> usize {
        self.open_socks
    }

    /// TCP connections still alive in the model, on either side (host
    /// sockets, orphans finishing their close, remote peers), listeners
    /// excluded.
    pub fn live_tcp_connections(&self) -> usize {
        self.eps
            .values()
            .filter(|e| matches!(&e.kind, EpKind::Stream(s) if s.state != TcpState::Dead))
            .count()
    }

    /// How many internal events were ever scheduled before `now` (and
    /// clamped): always 0 unless the model has a bug.
    pub fn scheduled_in_past(&self) -> u64 {
        self.sched.clamped()
    }

    // ----- driving -----

    /// Current virtual time of the host: every `HostIo` call happens now.
    pub fn now(&self) -> Instant {
        self.sched.now()
    }

    /// When the next internal event is due (`None`: nothing pending). A
    /// driver merges this with the engine's `poll_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sched.peek_time()
    }

    /// Processes every internal event due at or before `now` (segments
    /// arriving, ACKs freeing send buffer, connects completing, remote
    /// services running), then sets the clock to `now`. Times before
    /// [`SimHost::now`] are ignored (time never goes back).
    pub fn advance(&mut self, now: Instant) {
        self.run_apps();
        while let Some((at, ev)) = self.sched.pop_due(now) {
            self.trace.record_event(at, &ev);
            self.stats.events += 1;
            self.dispatch(ev);
            self.run_apps();
        }
        // Nothing is pending before `now` any more.
        let _ = self.sched.advance_to(now);
    }

    /// Processes the next pending event only (jumping the clock to it).
    /// Returns its time, `None` if nothing is pending.
    pub fn step(&mut self) -> Option<Instant> {
        let at = self.sched.peek_time()?;
        self.advance(at);
        Some(at)
    }

    /// The simulated `epoll_wait`: appends `(token, readiness)` for every
    /// registered host socket whose state matches its interest (errors and
    /// hang-ups always), in [`SockId`] order. Level-triggered: a condition
    /// is reported on every call while it holds. Returns how many were
    /// appended.
    pub fn take_events(&mut self, out: &mut Vec<(Token, Readiness)>) -> usize {
        let mut n = 0;
        for slot in self.socks.iter().flatten() {
            let Some(token) = slot.token else { continue };
            let Some(full) = self.readiness(slot.ep) else {
                continue;
            };
            let i = slot.interest;
            let r = Readiness {
                readable: full.readable && i.readable,
                writable: full.writable && i.writable,
                read_closed: full.read_closed && i.readable,
                hangup: full.hangup,
                error: full.error,
            };
            if r.readable || r.writable || r.read_closed || r.hangup || r.error {
                out.push((token, r));
                n += 1;
            }
        }
        n
    }

    /// Whether [`SimHost::take_events`] would report anything now: a
    /// driver must not wait for the next internal event while this holds
    /// (`epoll_wait` returns at once on level-triggered readiness).
    pub fn has_ready_events(&self) -> bool {
        self.socks.iter().flatten().any(|slot| {
            slot.token.is_some()
                && self.readiness(slot.ep).is_some_and(|full| {
                    let i = slot.interest;
                    (full.readable || full.read_closed) && i.readable
                        || full.writable && i.writable
                        || full.hangup
                        || full.error
                })
        })
    }

    /// The full readiness of a host socket regardless of interest (what
    /// `poll` with every bit would say). `None` for an unknown id.
    pub fn readiness_of(&self, sock: SockId) -> Option<Readiness> {
        let ep = self.sock(sock).ok()?.ep;
        self.readiness(ep)
    }

    pub(crate) fn readiness(&self, ep: EpId) -> Option<Readiness> {
        let e = self.eps.get(&ep)?;
        Some(match &e.kind {
            EpKind::Listener(l) => Readiness {
                readable: !l.accept_q.is_empty(),
                ..Readiness::default()
            },
            EpKind::Stream(s) => {
                // tcp_poll(): see net/ipv4/tcp.c.
                let dead = s.state == TcpState::Dead;
                let connecting = matches!(s.state, TcpState::SynSent | TcpState::SynRcvd);
                let rcv_shut = s.rd_shut || s.rcv_fin || dead;
                let snd_shut = s.wr_shut || dead;
                let free = s.sndbuf.saturating_sub(s.sndq.len());
                // __sk_stream_is_writeable: free space at least half of
                // what is queued.
                let space = free > 0 && free >= s.sndq.len() / 2;
                Readiness {
                    readable: (!connecting && !s.rcvq.is_empty()) || rcv_shut,
                    writable: !connecting && (snd_shut || space),
                    read_closed: rcv_shut,
                    hangup: rcv_shut && snd_shut,
                    error: s.so_error.is_some(),
                }
            }
            EpKind::Udp(u) => Readiness {
                readable: !u.rxq.is_empty(),
                writable: true,
                read_closed: false,
                hangup: false,
                error: u.so_error.is_some() || !u.errq.is_empty(),
            },
            EpKind::Ping(p) => Readiness {
                readable: !p.rxq.is_empty(),
                writable: true,
                read_closed: false,
                hangup: false,
                error: p.so_error.is_some() || !p.errq.is_empty(),
            },
        })
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Syn { from, to } => self.on_syn(from, to),
            Ev::SynRetry { ep, attempt } => self.on_syn_retry(ep, attempt),
            Ev::SynAck { to, from, wnd } => self.on_synack(to, from, wnd),
            Ev::HandshakeAck { to, wnd } => self.on_handshake_ack(to, wnd),
            Ev::Data {
                to,
                from,
                data,
                fin,
            } => self.on_data(to, from, data, fin),
            Ev::Ack { to, ack, wnd, fin } => self.on_ack(to, ack, wnd, fin),
            Ev::Rst { to } => self.on_rst(to),
            Ev::ConnectFail { to, error } => self.on_connect_fail(to, error),
            Ev::OrphanTimeout { ep } => self.on_orphan_timeout(ep),
            Ev::Datagram {
                ns,
                to,
                from,
                from_ep,
                payload,
            } => self.on_datagram(ns, to, from, from_ep, payload),
            Ev::Icmp { to, report } => self.on_icmp(to, report),
            Ev::PingReply { to, from, msg } => self.on_ping_reply(to, from, msg),
            Ev::Wake { ep } => {
                self.dirty.insert(ep);
            }
        }
    }

    // ----- endpoints and host sockets -----

    pub(crate) fn alloc_ep(&mut self, ep: Endpoint) -> EpId {
        let id = self.next_ep;
        self.next_ep += 1;
        self.eps.insert(id, ep);
        id
    }

    /// Removes an endpoint and everything keyed by it.
    pub(crate) fn destroy(&mut self, ep: EpId) {
        if self.eps.remove(&ep).is_none() {
            return;
        }
        self.binds.retain(|_, v| *v != ep);
        self.apps.remove(&ep);
        self.services.remove(&ep);
        self.dirty.remove(&ep);
    }

    pub(crate) fn stream(&self, ep: EpId) -> Option<&Stream> {
        match self.eps.get(&ep).map(|e| &e.kind) {
            Some(EpKind::Stream(s)) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn stream_mut(&mut self, ep: EpId) -> Option<&mut Stream> {
        match self.eps.get_mut(&ep).map(|e| &mut e.kind) {
            Some(EpKind::Stream(s)) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn sock(&self, sock: SockId) -> Result<&HostSock, HostError> {
        self.socks
            .get(sock.0 as usize)
            .and_then(Option::as_ref)
            .ok_or(HostError::BadSocket)
    }

    /// Gives a host endpoint the lowest free `SockId` (as the kernel hands
    /// out the lowest free descriptor).
    pub(crate) fn attach_sock(&mut self, ep: EpId) -> SockId {
        let hs = HostSock {
            ep,
            token: None,
            interest: Interest::NONE,
        };
        self.open_socks += 1;
        if let Some(i) = self.socks.iter().position(Option::is_none) {
            self.socks[i] = Some(hs);
            SockId(i as u32)
        } else {
            self.socks.push(Some(hs));
            SockId((self.socks.len() - 1) as u32)
        }
    }

    pub(crate) fn detach_sock(&mut self, sock: SockId) -> Option<EpId> {
        let slot = self.socks.get_mut(sock.0 as usize)?;
        let hs = slot.take()?;
        self.open_socks -= 1;
        Some(hs.ep)
    }

    pub(crate) fn check_fd_limit(&self) -> Result<(), HostError> {
        if self.open_socks >= self.cfg.max_sockets {
            Err(HostError::NoResources)
        } else {
            Ok(())
        }
    }

    // ----- addresses, routes, ports -----

    /// Whether `ip` belongs to the host (loopback or its own addresses).
    pub(crate) fn is_local_ip(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v) => v.is_loopback() || Some(v) == self.cfg.host_v4,
            IpAddr::V6(v) => v.is_loopback() || Some(v) == self.cfg.host_v6,
        }
    }

    /// The profile of a remote IP.
    pub(crate) fn profile(&self, ip: IpAddr) -> &RemoteHostConfig {
        if self.is_local_ip(ip) {
            &self.cfg.loopback
        } else {
            self.remote_hosts
                .get(&ip)
                .unwrap_or(&self.cfg.default_remote)
        }
    }

    /// Path parameters between two IPs: loopback if both are the host's,
    /// else the remote one's profile.
    pub(crate) fn path_between(&self, a: IpAddr, b: IpAddr) -> Path {
        let p = if !self.is_local_ip(b) {
            self.profile(b)
        } else if !self.is_local_ip(a) {
            self.profile(a)
        } else {
            &self.cfg.loopback
        };
        Path {
            link: p.link,
            mss: p.mss.max(1),
        }
    }

    /// The source IP the host uses toward `dst`.
    pub(crate) fn source_ip_for(&self, dst: IpAddr) -> Result<IpAddr, HostError> {
        match dst {
            IpAddr::V4(v) if v.is_loopback() => Ok(dst),
            IpAddr::V6(v) if v.is_loopback() => Ok(dst),
            IpAddr::V4(v) if v.is_unspecified() => Ok(Ipv4Addr::LOCALHOST.into()),
            IpAddr::V6(v) if v.is_unspecified() => Ok(Ipv6Addr::LOCALHOST.into()),
            _ if self.is_local_ip(dst) => Ok(dst),
            IpAddr::V4(_) => self
                .cfg
                .host_v4
                .map(IpAddr::V4)
                .ok_or(HostError::NetworkUnreachable),
            IpAddr::V6(_) => self
                .cfg
                .host_v6
                .map(IpAddr::V6)
                .ok_or(HostError::NetworkUnreachable),
        }
    }

    /// The namespace of an endpoint (the host's for one that is gone).
    pub(crate) fn ns_of(&self, ep: EpId) -> Netns {
        self.eps.get(&ep).map_or(Netns::Host, |e| e.ns)
    }

    /// Whether `ip` is local in `ns`: the guest namespace has its loopback
    /// only.
    pub(crate) fn is_local_in(&self, ns: Netns, ip: IpAddr) -> bool {
        match ns {
            Netns::Host => self.is_local_ip(ip),
            Netns::Guest => ip.is_loopback(),
        }
    }

    /// Whether a host socket in `ns` may bind `ip`.
    pub(crate) fn can_bind_in(&self, ns: Netns, ip: IpAddr) -> bool {
        ip.is_unspecified() || self.is_local_in(ns, ip)
    }

    /// [`SimHost::source_ip_for`] in `ns`: the guest namespace reaches its
    /// loopback and nothing else (the tap is the engine's, not a route of
    /// the model).
    pub(crate) fn source_ip_in(&self, ns: Netns, dst: IpAddr) -> Result<IpAddr, HostError> {
        match ns {
            Netns::Host => self.source_ip_for(dst),
            Netns::Guest => match dst {
                IpAddr::V4(v) if v.is_unspecified() => Ok(Ipv4Addr::LOCALHOST.into()),
                IpAddr::V6(v) if v.is_unspecified() => Ok(Ipv6Addr::LOCALHOST.into()),
                _ if dst.is_loopback() => Ok(dst),
                _ => Err(HostError::NetworkUnreachable),
            },
        }
    }

    fn same_family(a: IpAddr, b: IpAddr) -> bool {
        a.is_ipv4() == b.is_ipv4()
    }

    /// Whether binding `(ip, port)` in `proto` collides with a binding.
    pub(crate) fn bind_conflict(&self, ns: Netns, proto: Proto, ip: IpAddr, port: u16) -> bool {
        self.binds.keys().any(|&(n, p, bip, bport)| {
            n == ns
                && p == proto
                && bport == port
                && Self::same_family(bip, ip)
                && (bip == ip || bip.is_unspecified() || ip.is_unspecified())
        })
    }

    /// A free port for `(proto, ip)` from the ephemeral range, chosen at a
    /// random starting point as the kernel does.
    pub(crate) fn ephemeral_port(&mut self, ns: Netns, proto: Proto, ip: IpAddr) -> Option<u16> {
        let span = u64::from(EPHEMERAL.1 - EPHEMERAL.0) + 1;
        let start = self.rng.below(span);
        (0..span)
            .map(|i| EPHEMERAL.0 + ((start + i) % span) as u16)
            .find(|&p| !self.bind_conflict(ns, proto, ip, p))
    }

    /// Binds `(ip, port)` (port 0: ephemeral) for `ep`'s future id; returns
    /// the port. Does not insert.
    pub(crate) fn choose_port(
        &mut self,
        ns: Netns,
        proto: Proto,
        ip: IpAddr,
        port: u16,
        exhausted: HostError,
    ) -> Result<u16, HostError> {
        if port == 0 {
            self.ephemeral_port(ns, proto, ip).ok_or(exhausted)
        } else if self.bind_conflict(ns, proto, ip, port) {
            Err(HostError::AddrInUse)
        } else {
            Ok(port)
        }
    }

    /// Finds the endpoint bound to receive at `dst` in `proto`: exact, or
    /// a wildcard binding if `dst` is one of the host's addresses.
    pub(crate) fn lookup(&self, ns: Netns, proto: Proto, dst: SocketAddr) -> Option<EpId> {
        if let Some(&ep) = self.binds.get(&(ns, proto, dst.ip(), dst.port())) {
            return Some(ep);
        }
        if self.is_local_in(ns, dst.ip()) {
            let any = unspecified(Family::of(&dst.ip()));
            return self.binds.get(&(ns, proto, any, dst.port())).copied();
        }
        None
    }

    /// An unused port at `ip` (nothing bound in `proto`): a closed port.
    pub fn unused_port(&mut self, udp: bool, ip: IpAddr) -> u16 {
        let proto = if udp { Proto::Udp } else { Proto::Tcp };
        self.ephemeral_port(Netns::Host, proto, ip).unwrap_or(9)
    }

    // ----- faults -----

    /// One EAGAIN-storm draw (only when a storm is configured).
    pub(crate) fn eagain_fault(&mut self) -> bool {
        if self.faults.eagain.probability <= 0.0 {
            return false;
        }
        let hit = self.faults.eagain(&mut self.fault_rng);
        if hit {
            self.stats.eagain_injected += 1;
        }
        hit
    }
}

/// The unspecified address of a family.
pub(crate) fn unspecified(f: Family) -> IpAddr {
    match f {
        Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// One-way delay of `len` bytes over `link` leaving at `depart`.
pub(crate) fn arrival(link: &LinkConfig, depart: Instant, len: usize) -> Instant {
    depart + link.serialization_delay(len) + link.latency
}
