//! The [`Engine`]: entry points of the sans-IO core and the frame dispatcher.
//!
//! It owns the configuration, the seeded generator, the transmit queue, the
//! counters, the protocol modules and the `HostIo` implementation, and routes
//! each guest frame to the module that owns its protocol:
//!
//! | frame | module |
//! |---|---|
//! | ARP | [`crate::arp`] |
//! | ICMPv6 NS / RS | [`crate::ndp`] |
//! | UDP to port 67 | [`crate::dhcp`] |
//! | UDP to port 547 (ff02::1:2 or us) | [`crate::dhcpv6`] |
//! | ICMP / ICMPv6 echo | [`crate::icmp`] |
//! | TCP | [`crate::tcp`] |
//! | other UDP | [`crate::udp`] |
//!
//! Everything else is dropped and counted under a [`DropReason`]. The
//! engine never reads a clock: every entry point takes `now`. It never
//! panics on guest input: every frame is untrusted.
//!
//! # Batching guest frames
//!
//! Call [`Engine::flush`] after a batch of [`Engine::handle_frame`] calls
//! (everything one read from the guest transport produced) and before
//! waiting. `handle_frame` never waits for it to send: work it queues for
//! the host (today: UDP datagrams, sent with one `sendmmsg` per socket) is
//! done at the latest on `flush`. A driver that forgets still loses
//! nothing: while work is queued, [`Engine::poll_timeout`] returns an
//! instant already past, and [`Engine::handle_timeout`] flushes too.

use std::net::{IpAddr, Ipv6Addr};

use crate::MacAddr;
use crate::arp::{self, ArpOutcome};
use crate::config::{Config, ConfigError};
use crate::counters::{Counters, DropReason};
use crate::ctx;
use crate::dhcp::{self, DhcpOutcome};
use crate::dhcpv6::{self, Dhcpv6Outcome};
use crate::flow::FlowLimit;
use crate::host_io::{HostIo, Readiness, Token};
use crate::icmp::Icmp;
use crate::ndp::{NdpOutcome, NdpReply, NdpResponder};
use crate::rng::Rng;
use crate::tcp::Tcp;
use crate::time::{Instant, earliest};
use crate::txq::TxQueue;
use crate::udp::Udp;
use crate::wire::{self, Icmpv4Repr, Icmpv6Repr, IpRepr, L3, L4, UdpRepr};

/// UDP port of DHCPv4 servers (RFC 2131 §4.1).
const DHCP_SERVER_PORT: u16 = 67;
/// UDP port of DHCPv4 clients.
const DHCP_CLIENT_PORT: u16 = 68;
/// UDP port of DHCPv6 servers (RFC 8415 §7.2).
const DHCPV6_SERVER_PORT: u16 = 547;
/// UDP port of DHCPv6 clients.
const DHCPV6_CLIENT_PORT: u16 = 546;
/// All_DHCP_Relay_Agents_and_Servers, ff02::1:2 (RFC 8415 §7.1).
const ALL_DHCP_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
/// Room for any DHCP/DHCPv6 reply we build (their own size limits are
/// smaller).
const SERVICE_SCRATCH_LEN: usize = 1500;

pub use crate::ctx::{Ctx, GuestState};

/// A forwarded port's socket, of either protocol (what the forwarding
/// table keeps per bound port to close or retarget it later).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ListenerId {
    /// [`Engine::tcp_listen_at`].
    Tcp(crate::tcp::TcpListenerId),
    /// [`Engine::udp_listen_at`].
    Udp(crate::udp::UdpListenerId),
}

pub use crate::flow::token;
pub use crate::mapping::ListenTarget;

/// The translation modules, kept together so that one of them can be
/// borrowed beside the shared [`Ctx`].
struct Transport {
    tcp: Tcp,
    udp: Udp,
    icmp: Icmp,
}

/// The network engine, generic over its host side.
pub struct Engine<H: HostIo> {
    config: Config,
    host: H,
    rng: Rng,
    txq: TxQueue,
    counters: Counters,
    flows: FlowLimit,
    guest: GuestState,
    ndp: NdpResponder,
    l4: Transport,
    scratch: Box<[u8; SERVICE_SCRATCH_LEN]>,
}

impl<H: HostIo> Engine<H> {
    /// Builds an engine. `seed` determines every random choice it makes.
    pub fn new(config: Config, host: H, seed: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        let txq = TxQueue::new(config.tx_queue_frames, config.tx_queue_bytes);
        let rng = Rng::from_seed(seed);
        let tcp = Tcp::new(rng.child("tcp"));
        let udp = Udp::new();
        let icmp = Icmp::new();
        let flows = FlowLimit::new(config.flow_capacity);
        Ok(Engine {
            guest: GuestState {
                mac: config.guest_mac,
                ..GuestState::default()
            },
            config,
            host,
            rng,
            txq,
            counters: Counters::default(),
            flows,
            ndp: NdpResponder::new(),
            l4: Transport { tcp, udp, icmp },
            scratch: Box::new([0; SERVICE_SCRATCH_LEN]),
        })
    }

    /// One Ethernet frame from the guest (without any length prefix).
    /// Host-side sends it causes may be queued until [`Engine::flush`]
    /// (see [Batching guest frames](self#batching-guest-frames)).
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) {
        self.counters.frames_in += 1;
        self.counters.bytes_in += frame.len() as u64;
        if let Err(reason) = self.dispatch(now, frame) {
            self.counters.drop(reason);
        }
    }

    fn dispatch(&mut self, now: Instant, frame: &[u8]) -> Result<(), DropReason> {
        let parsed = wire::parse_frame(frame)?;
        let eth = parsed.eth;
        if eth.dst != self.config.our_mac && !eth.dst.is_multicast() {
            return Err(DropReason::NotForUs);
        }
        // A guest using our own MAC is served: libvirt 9.0 passes the
        // guest's MAC as `--mac-addr` (docs/decisions.md).
        if !eth.src.is_unicast() {
            return Err(DropReason::BadSource);
        }
        // Learn (and follow changes of) the guest's MAC: a rebooted VM or a
        // re-created tap may come back with another one.
        self.guest.mac = Some(eth.src);
        self.ndp.guest_seen(&self.config, now);

        match parsed.l3 {
            L3::Arp(req) => match arp::respond(&self.config, &req) {
                ArpOutcome::Reply(reply) => {
                    if ctx::emit_into(
                        &mut self.txq,
                        &mut self.counters,
                        arp::ArpReply::FRAME_LEN,
                        |buf| reply.build(buf).unwrap_or(0),
                    ) {
                        self.counters.arp_replies += 1;
                    }
                    Ok(())
                }
                ArpOutcome::Ignore(reason) => Err(reason),
            },
            L3::Ipv4 { ip, l4 } => {
                if self.config.ipv4.is_none() {
                    return Err(DropReason::ServiceDisabled);
                }
                if !ip.src_addr.is_unspecified() {
                    if ip.src_addr.is_multicast()
                        || ip.src_addr.is_broadcast()
                        || ip.src_addr.is_loopback()
                    {
                        return Err(DropReason::BadSource);
                    }
                    self.guest.ipv4 = Some(ip.src_addr);
                }
                match l4 {
                    L4::Udp { udp, payload } if udp.dst_port == DHCP_SERVER_PORT => {
                        self.dhcpv4(eth.src, udp, payload)
                    }
                    l4 => self.transport(now, ip.src_addr.into(), ip.dst_addr.into(), l4),
                }
            }
            L3::Ipv6 { ip, l4 } => {
                if self.config.ipv6.is_none() {
                    return Err(DropReason::ServiceDisabled);
                }
                if ip.src_addr.is_multicast() || ip.src_addr.is_loopback() {
                    return Err(DropReason::BadSource);
                }
                if crate::addr::ipv6_is_link_local(ip.src_addr) {
                    self.guest.ipv6_link_local = Some(ip.src_addr);
                } else if !ip.src_addr.is_unspecified() {
                    self.guest.ipv6 = Some(ip.src_addr);
                }
                match l4 {
                    L4::Icmpv6(Icmpv6Repr::Ndp(ndp)) => {
                        match self.ndp.handle(&self.config, now, eth.src, &ip, &ndp) {
                            NdpOutcome::Reply(reply) => {
                                self.emit_ndp(reply);
                                Ok(())
                            }
                            NdpOutcome::Ignore(reason) => Err(reason),
                        }
                    }
                    L4::Udp { udp, payload }
                        if udp.dst_port == DHCPV6_SERVER_PORT
                            && (ip.dst_addr == ALL_DHCP_SERVERS
                                || Some(ip.dst_addr)
                                    == self.config.ipv6.as_ref().map(|v6| v6.our_link_local)) =>
                    {
                        self.dhcpv6(eth.src, ip.src_addr, udp, payload)
                    }
                    l4 => self.transport(now, ip.src_addr.into(), ip.dst_addr.into(), l4),
                }
            }
        }
    }

    /// The translation modules' share of the dispatch, the same for both
    /// families once the built-in services took theirs: echo requests of
    /// the packet's own family, TCP and UDP.
    fn transport(
        &mut self,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        l4: L4<'_>,
    ) -> Result<(), DropReason> {
        let (mut cx, m) = self.parts();
        match l4 {
            L4::Icmpv4(Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }) if src.is_ipv4() => m
                .icmp
                .on_echo_request(&mut cx, now, src, dst, ident, seq_no, data),
            L4::Icmpv6(Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }) if src.is_ipv6() => m
                .icmp
                .on_echo_request(&mut cx, now, src, dst, ident, seq_no, data),
            L4::Tcp { tcp, payload } => m.tcp.on_segment(&mut cx, now, src, dst, &tcp, payload),
            L4::Udp { udp, payload } => m.udp.on_datagram(&mut cx, now, src, dst, &udp, payload),
            L4::Icmpv4(_) | L4::Icmpv6(_) | L4::Other { .. } => {
                Err(DropReason::UnsupportedProtocol)
            }
        }
    }

    fn dhcpv4(
        &mut self,
        client_mac: MacAddr,
        udp: UdpRepr,
        payload: &[u8],
    ) -> Result<(), DropReason> {
        if udp.src_port != DHCP_CLIENT_PORT {
            return Err(DropReason::DhcpIgnored);
        }
        let reply = match dhcp::handle(&self.config, client_mac, payload, &mut self.scratch[..]) {
            DhcpOutcome::Reply(r) => r,
            DhcpOutcome::Ignored(why) => return Err(why.drop_reason()),
        };
        let ip = IpRepr::V4(wire::Ipv4Repr::new(
            reply.src_ip,
            reply.dst_ip,
            wire::protocol::UDP,
            64,
        ));
        let sent = self.emit_service_reply(
            ip,
            (DHCP_SERVER_PORT, DHCP_CLIENT_PORT),
            reply.dst_mac,
            reply.len,
        );
        self.counters.dhcp_replies += u64::from(sent);
        Ok(())
    }

    fn dhcpv6(
        &mut self,
        client_mac: MacAddr,
        client_ip: Ipv6Addr,
        udp: UdpRepr,
        payload: &[u8],
    ) -> Result<(), DropReason> {
        if udp.src_port != DHCPV6_CLIENT_PORT {
            return Err(DropReason::DhcpIgnored);
        }
        let reply = match dhcpv6::handle(
            &self.config,
            client_mac,
            client_ip,
            payload,
            &mut self.scratch[..],
        ) {
            Dhcpv6Outcome::Reply(r) => r,
            Dhcpv6Outcome::Ignored(why) => return Err(why.drop_reason()),
        };
        let ip = IpRepr::V6(wire::Ipv6Repr::new(
            reply.src_ip,
            reply.dst_ip,
            wire::protocol::UDP,
            255,
        ));
        let sent = self.emit_service_reply(
            ip,
            (DHCPV6_SERVER_PORT, DHCPV6_CLIENT_PORT),
            reply.dst_mac,
            reply.len,
        );
        self.counters.dhcpv6_replies += u64::from(sent);
        Ok(())
    }

    /// Wraps the first `len` bytes of the service scratch buffer (a DHCP or
    /// DHCPv6 reply) in UDP/IP/Ethernet and queues it for the guest.
    fn emit_service_reply(
        &mut self,
        ip: IpRepr,
        (src_port, dst_port): (u16, u16),
        dst_mac: MacAddr,
        len: usize,
    ) -> bool {
        let repr = UdpRepr { src_port, dst_port };
        let body = &self.scratch[..len];
        let max = ip.headers_len() + wire::udp::HEADER_LEN + body.len();
        let our_mac = self.config.our_mac;
        ctx::emit_into(&mut self.txq, &mut self.counters, max, |buf| {
            wire::build_udp(buf, our_mac, dst_mac, ip, &repr, body).unwrap_or(0)
        })
    }

    fn emit_ndp(&mut self, reply: NdpReply) {
        let config = &self.config;
        let len = reply.frame_len(config);
        if ctx::emit_into(&mut self.txq, &mut self.counters, len, |buf| {
            reply.build(config, buf).unwrap_or(0)
        }) {
            match reply {
                NdpReply::NeighborAdvert { .. } => self.counters.ndp_neighbor_adverts += 1,
                NdpReply::RouterAdvert { .. } => self.counters.ndp_router_adverts += 1,
            }
        }
    }

    /// Readiness on a host socket registered with `token`.
    pub fn handle_host_event(&mut self, now: Instant, token: Token, readiness: Readiness) {
        match token::kind(token) {
            token::TCP_FLOW | token::TCP_LISTENER | token::TCP_SPLICE | token::TCP_SPLICE_PEER => {
                let (mut cx, l4) = self.parts();
                l4.tcp.on_host_event(&mut cx, now, token, readiness);
            }
            token::UDP_FLOW | token::UDP_LISTENER | token::UDP_SPLICE => {
                let (mut cx, l4) = self.parts();
                l4.udp.on_host_event(&mut cx, now, token, readiness);
            }
            token::ICMP_FLOW => {
                let (mut cx, l4) = self.parts();
                l4.icmp.on_host_event(&mut cx, now, token, readiness);
            }
            _ => {}
        }
    }

    /// Sends what guest frames queued for the host since the last flush
    /// (UDP datagrams, batched per socket). Call it after each batch of
    /// [`Engine::handle_frame`] calls and before waiting; it may queue
    /// frames for the guest (ICMP refusals), so drain the transmit queue
    /// after it.
    pub fn flush(&mut self, now: Instant) {
        let (mut cx, l4) = self.parts();
        l4.udp.flush(&mut cx, now);
    }

    /// The next instant at which [`Engine::handle_timeout`] must be called,
    /// if any. While guest datagrams wait for [`Engine::flush`] it is an
    /// instant already reached (the oldest one's arrival).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = earliest(self.ndp.poll_timeout(), self.l4.tcp.poll_timeout());
        let t = earliest(t, self.l4.udp.poll_timeout());
        earliest(t, self.l4.icmp.poll_timeout())
    }

    /// Runs every timer due at or before `now`, after flushing what
    /// [`Engine::flush`] would.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(ra) = self.ndp.handle_timeout(&self.config, now) {
            self.emit_ndp(ra);
        }
        let (mut cx, l4) = self.parts();
        l4.tcp.handle_timeout(&mut cx, now);
        l4.udp.handle_timeout(&mut cx, now);
        l4.icmp.handle_timeout(&mut cx, now);
    }

    /// The shared state as a [`Ctx`] and, borrowed beside it, the
    /// translation modules.
    fn parts(&mut self) -> (Ctx<'_, H>, &mut Transport) {
        (
            Ctx {
                config: &self.config,
                host: &mut self.host,
                txq: &mut self.txq,
                counters: &mut self.counters,
                flows: &mut self.flows,
                rng: &mut self.rng,
                guest: &self.guest,
            },
            &mut self.l4,
        )
    }

    /// Binds a host UDP socket on `addr` (a forwarded port) whose datagrams
    /// go to the guest's `guest_port` (see [`Udp::listen`]).
    pub fn udp_listen(
        &mut self,
        addr: std::net::SocketAddr,
        guest_port: u16,
    ) -> Result<crate::udp::UdpListenerId, crate::host_io::HostError> {
        self.udp_listen_at(
            crate::host_io::Place::HOST,
            addr,
            ListenTarget::port(guest_port),
        )
    }

    /// [`Engine::udp_listen`] with the socket made at `place` (an interface
    /// with `SO_BINDTODEVICE`) and datagrams sent to `target` (a guest
    /// address other than the guest's own, if given).
    pub fn udp_listen_at(
        &mut self,
        place: crate::host_io::Place,
        addr: std::net::SocketAddr,
        target: ListenTarget,
    ) -> Result<crate::udp::UdpListenerId, crate::host_io::HostError> {
        let (mut cx, l4) = self.parts();
        l4.udp.listen(&mut cx, place, addr, target)
    }

    /// Closes a forwarded port's UDP socket without disturbing its flows
    /// (see [`Udp::close_listener`]).
    pub fn udp_unlisten(&mut self, id: crate::udp::UdpListenerId) -> bool {
        let (mut cx, l4) = self.parts();
        l4.udp.close_listener(&mut cx, id)
    }

    /// `-U` (pasta): binds `addr` in the guest namespace; its datagrams are
    /// spliced to the host's loopback on `host_port`. `Unsupported` unless
    /// [`Config::splice`] is on.
    pub fn udp_listen_outbound(
        &mut self,
        addr: std::net::SocketAddr,
        host_port: u16,
    ) -> Result<crate::udp::UdpListenerId, crate::host_io::HostError> {
        let (mut cx, l4) = self.parts();
        l4.udp.listen_outbound(&mut cx, addr, host_port)
    }

    /// The UDP module (flow inspection for tests and diagnostics).
    pub fn udp(&self) -> &Udp {
        &self.l4.udp
    }

    /// The ICMP echo module (flow inspection for tests and diagnostics).
    pub fn icmp(&self) -> &Icmp {
        &self.l4.icmp
    }

    /// The TCP module (flow count, timers and counters, for tests and
    /// diagnostics).
    pub fn tcp(&self) -> &Tcp {
        &self.l4.tcp
    }

    /// Listens for TCP connections on host address `addr` (a forwarded
    /// port); each accepted connection is opened toward the guest on
    /// `guest_port`.
    pub fn tcp_listen(
        &mut self,
        addr: std::net::SocketAddr,
        guest_port: u16,
    ) -> Result<crate::tcp::TcpListenerId, crate::host_io::HostError> {
        self.tcp_listen_at(
            crate::host_io::Place::HOST,
            addr,
            ListenTarget::port(guest_port),
        )
    }

    /// [`Engine::tcp_listen`] with the socket made at `place` (an interface
    /// with `SO_BINDTODEVICE`) and connections opened to `target` (a guest
    /// address other than the guest's own, if given).
    pub fn tcp_listen_at(
        &mut self,
        place: crate::host_io::Place,
        addr: std::net::SocketAddr,
        target: ListenTarget,
    ) -> Result<crate::tcp::TcpListenerId, crate::host_io::HostError> {
        let (mut cx, l4) = self.parts();
        l4.tcp.listen(&mut cx, place, addr, target)
    }

    /// Closes a forwarded port's listening socket; the connections it
    /// accepted go on (see [`Tcp::close_listener`]).
    pub fn tcp_unlisten(&mut self, id: crate::tcp::TcpListenerId) -> bool {
        let (mut cx, l4) = self.parts();
        l4.tcp.close_listener(&mut cx, id)
    }

    /// Closes a forwarded port's socket of either protocol
    /// ([`Engine::tcp_unlisten`], [`Engine::udp_unlisten`]).
    pub fn unlisten(&mut self, id: ListenerId) -> bool {
        match id {
            ListenerId::Tcp(id) => self.tcp_unlisten(id),
            ListenerId::Udp(id) => self.udp_unlisten(id),
        }
    }

    /// Points a forwarded port at another guest port (and address), for
    /// connections and peers still to come.
    pub fn retarget_listener(&mut self, id: ListenerId, target: ListenTarget) -> bool {
        match id {
            ListenerId::Tcp(id) => self.l4.tcp.retarget_listener(id, target),
            ListenerId::Udp(id) => self.l4.udp.retarget_listener(id, target),
        }
    }

    /// `-T` (pasta): listens for TCP connections on `addr` in the guest
    /// namespace; each is spliced to the host's loopback on `host_port`.
    /// `Unsupported` unless [`Config::splice`] is on.
    pub fn tcp_listen_outbound(
        &mut self,
        addr: std::net::SocketAddr,
        host_port: u16,
    ) -> Result<crate::tcp::TcpListenerId, crate::host_io::HostError> {
        let (mut cx, l4) = self.parts();
        l4.tcp.listen_outbound(&mut cx, addr, host_port)
    }

    /// How many more frames of the largest size (MTU plus Ethernet header)
    /// the transmit queue can take. The engine never reads a host socket
    /// beyond it (data stays in the kernel and readiness, level-triggered,
    /// reports it again), so a driver that finds it at zero should drain
    /// the queue to the guest before it handles host events, instead of
    /// handling events that can make no progress.
    pub fn tx_room(&self) -> usize {
        self.txq.room_for(ctx::max_frame_len(&self.config))
    }

    /// Frames waiting for the guest. The caller writes them out and calls
    /// [`TxQueue::consume`] with the number written.
    pub fn tx_queue(&mut self) -> &mut TxQueue {
        &mut self.txq
    }

    /// Counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The guest's MAC, once known.
    pub fn guest_mac(&self) -> Option<MacAddr> {
        self.guest.mac
    }

    /// What the engine has learnt about the guest.
    pub fn guest(&self) -> &GuestState {
        &self.guest
    }

    /// The host side.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// The host side, mutably (the simulator drives its model through this).
    pub fn host_mut(&mut self) -> &mut H {
        &mut self.host
    }

    /// The engine's generator (for modules; exposed for tests).
    pub fn rng_mut(&mut self) -> &mut Rng {
        &mut self.rng
    }
}
