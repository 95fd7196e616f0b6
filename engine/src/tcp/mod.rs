//! TCP translation: guest TCP connections terminated by the engine and
//! mirrored onto host sockets, without a data buffer of our own.
//!
//! - guest SYN -> nonblocking host connect; SYN-ACK to the guest only once
//!   it succeeded; refusal -> RST+ACK.
//! - guest data -> `send` on the socket; ACK only what it took; the window
//!   offered follows the socket's free send space.
//! - socket data -> peek at the offset of what is in flight, straight into
//!   the frame for the guest; discard only what the guest acknowledges;
//!   retransmit by rewinding.
//! - accepted connections on forwarded ports ([`Tcp::listen`]) -> SYN to
//!   the guest; with pasta's loopback fast path ([`crate::Config::splice`])
//!   a peer on the host's loopback is spliced to the namespace's loopback
//!   instead, and `-T` listeners in the namespace
//!   ([`Tcp::listen_outbound`]) are spliced to the host's loopback
//!   ([`splice`]).
//!
//! This module owns its flows (a [`FlowTable`] under the engine's one
//! [`crate::flow::FlowLimit`], looked up through an ordered map on the
//! 4-tuple), the listeners and the timer index (an ordered set of
//! `(deadline, slot)`, updated lazily: a flow's entry only ever moves
//! earlier; a later deadline is noticed when the entry fires). It never
//! allocates per segment: the slab, free list and maps only grow when the
//! number of flows reaches a new high.
//!
//! Submodules: [`flow`] (the per-flow state machine), [`splice`] (the
//! loopback fast path), `isn` (RFC 6528), `rtt` (RFC 6298), `seq`
//! (sequence arithmetic).

pub mod flow;
mod isn;
mod rtt;
mod seq;
pub mod splice;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use crate::config::Splice;
use crate::counters::DropReason;
use crate::ctx::Ctx;
use crate::flow::{FlowTable, Vacant, token};
use crate::host_io::{HostError, HostIo, Interest, Place, Readiness, SockId, Token};
use crate::mapping::{self, ListenTarget};
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::{TcpFlags, TcpRepr};

use flow::{Flow, FlowKey, Verdict, emit_rst};
use isn::IsnGenerator;
use splice::Splices;

/// Backlog of listening sockets on forwarded ports.
const LISTEN_BACKLOG: u32 = 128;
/// Connections accepted per readiness event (the rest wait for the next).
const ACCEPTS_PER_EVENT: usize = 64;

/// Where a listener's connections go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `-t`: a host port, toward the guest (spliced to the namespace's
    /// loopback for loopback peers when splicing is on).
    ToGuest,
    /// `-T`: a port in the guest namespace, spliced to the host's loopback.
    ToHostLoopback,
}

/// A listening socket on a forwarded port.
#[derive(Debug)]
struct Listener {
    sock: SockId,
    /// Where connections go: the guest port and address, or for `-T` the
    /// host's loopback port (`target.port`).
    target: ListenTarget,
    route: Route,
}

/// Identifies a listening socket on a forwarded port ([`Tcp::listen`]),
/// until [`Tcp::close_listener`]; the index may be reused afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TcpListenerId(pub u32);

/// TCP flows between the guest and host sockets.
#[derive(Debug)]
pub struct Tcp {
    isn: IsnGenerator,
    flows: FlowTable<Flow>,
    index: BTreeMap<FlowKey, u32>,
    timers: BTreeSet<(Instant, u32)>,
    listeners: Vec<Option<Listener>>,
    splices: Splices,
}

impl Tcp {
    /// An empty module; its ISNs are keyed from `rng`.
    pub fn new(mut rng: Rng) -> Self {
        Tcp {
            isn: IsnGenerator::new(&mut rng),
            flows: FlowTable::new(token::TCP_FLOW),
            index: BTreeMap::new(),
            timers: BTreeSet::new(),
            listeners: Vec::new(),
            splices: Splices::new(),
        }
    }

    /// The spliced flows (pasta's loopback fast path).
    pub fn splices(&self) -> &Splices {
        &self.splices
    }

    /// Live flows.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Listens on `addr` at `place` (a forwarded port); accepted
    /// connections go to the guest at `target`.
    pub fn listen<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        place: Place,
        addr: SocketAddr,
        target: ListenTarget,
    ) -> Result<TcpListenerId, HostError> {
        self.add_listener(cx, place, addr, target, Route::ToGuest)
    }

    /// `-T`: listens on `addr` in the guest namespace; accepted connections
    /// are spliced to the host's loopback (same family) on `host_port`.
    /// `Unsupported` when splicing is off (there is no other way to serve
    /// them).
    pub fn listen_outbound<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        addr: SocketAddr,
        host_port: u16,
    ) -> Result<TcpListenerId, HostError> {
        if !cx.config.splice.enabled() {
            return Err(HostError::Unsupported);
        }
        self.add_listener(
            cx,
            Place::GUEST,
            addr,
            ListenTarget::port(host_port),
            Route::ToHostLoopback,
        )
    }

    fn add_listener<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        place: Place,
        addr: SocketAddr,
        target: ListenTarget,
        route: Route,
    ) -> Result<TcpListenerId, HostError> {
        let sock = cx.host.tcp_listen_at(place, addr, LISTEN_BACKLOG)?;
        let idx = match self.listeners.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.listeners.push(None);
                self.listeners.len() - 1
            }
        };
        let Ok(id) = u32::try_from(idx) else {
            cx.host.close(sock);
            return Err(HostError::NoResources);
        };
        if let Err(e) = cx.host.set_interest(
            sock,
            token::make(token::TCP_LISTENER, idx as u64),
            Interest::READ,
        ) {
            cx.host.close(sock);
            return Err(e);
        }
        self.listeners[idx] = Some(Listener {
            sock,
            target,
            route,
        });
        Ok(TcpListenerId(id))
    }

    /// Closes listener `id` (a forwarding rule went away). Connections it
    /// accepted already are flows with sockets of their own: they go on
    /// untouched. Connections still in the backlog are reset by the
    /// kernel, as for any listening socket closed. Returns whether there
    /// was such a listener.
    pub fn close_listener<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, id: TcpListenerId) -> bool {
        let Some(slot) = self.listeners.get_mut(id.0 as usize) else {
            return false;
        };
        let Some(l) = slot.take() else {
            return false;
        };
        cx.host.close(l.sock);
        true
    }

    /// Sends the connections listener `id` accepts from now on to guest
    /// `target`. Returns whether there was such a listener.
    pub fn retarget_listener(&mut self, id: TcpListenerId, target: ListenTarget) -> bool {
        match self.listeners.get_mut(id.0 as usize) {
            Some(Some(l)) => {
                l.target = target;
                true
            }
            _ => false,
        }
    }

    /// Listening sockets open.
    pub fn listener_count(&self) -> usize {
        self.listeners.iter().flatten().count()
    }

    fn install<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, v: Vacant, flow: Flow) -> u32 {
        self.index.insert(flow.key, v.slot());
        let slot = self.flows.fill(v, flow, cx.counters);
        self.reschedule(slot);
        slot
    }

    /// Frees a flow and its socket; every trace of it goes (timer entry,
    /// index entry, slot).
    fn release<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, slot: u32, verdict: Verdict) {
        let Some(flow) = self.flows.remove(slot, cx.flows, cx.counters) else {
            return;
        };
        match verdict {
            Verdict::Abort => {
                cx.host.tcp_abort(flow.sock);
                cx.counters.tcp_rst_to_host += 1;
            }
            _ => cx.host.close(flow.sock),
        }
        if let Some(t) = flow.scheduled {
            self.timers.remove(&(t, slot));
        }
        self.index.remove(&flow.key);
    }

    /// Keeps the timer index in step with the flow's next deadline: the
    /// entry moves only when the deadline got earlier (see module docs).
    fn reschedule(&mut self, slot: u32) {
        let Some(flow) = self.flows.get_mut(slot) else {
            return;
        };
        let Some(due) = flow.next_deadline() else {
            return;
        };
        match flow.scheduled {
            Some(t) if t <= due => {}
            Some(t) => {
                self.timers.remove(&(t, slot));
                self.timers.insert((due, slot));
                flow.scheduled = Some(due);
            }
            None => {
                self.timers.insert((due, slot));
                flow.scheduled = Some(due);
            }
        }
    }

    fn after<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, slot: u32, verdict: Verdict) {
        match verdict {
            Verdict::Keep => self.reschedule(slot),
            v => self.release(cx, slot, v),
        }
    }

    /// A segment from the guest.
    pub fn on_segment<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        tcp: &TcpRepr,
        payload: &[u8],
    ) -> Result<(), DropReason> {
        if !cx.config.services.tcp {
            return Err(DropReason::ServiceDisabled);
        }
        if tcp.src_port == 0 || tcp.dst_port == 0 {
            return Err(DropReason::Malformed);
        }
        let key = FlowKey {
            guest: SocketAddr::new(src, tcp.src_port),
            peer: SocketAddr::new(dst, tcp.dst_port),
        };
        if let Some(&slot) = self.index.get(&key) {
            let Some(flow) = self.flows.get_mut(slot) else {
                return Ok(());
            };
            let v = flow.on_segment(cx, now, tcp, payload);
            self.after(cx, slot, v);
            return Ok(());
        }
        let f = tcp.flags;
        if f.contains(TcpFlags::RST) {
            // RFC 9293 §3.10.7.1: a RST for no connection is dropped.
            return Ok(());
        }
        if !f.contains(TcpFlags::SYN) || f.contains(TcpFlags::ACK) {
            // RFC 9293 §3.10.7.1: anything else for no connection gets a RST.
            let seg_len = payload.len() as u32
                + u32::from(f.contains(TcpFlags::SYN))
                + u32::from(f.contains(TcpFlags::FIN));
            if f.contains(TcpFlags::ACK) {
                emit_rst(cx, &key, tcp.ack, None);
            } else {
                emit_rst(cx, &key, 0, Some(tcp.seq.wrapping_add(seg_len)));
            }
            return Ok(());
        }
        self.open_outbound(cx, now, key, tcp)
    }

    /// A guest SYN for a new flow.
    fn open_outbound<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        key: FlowKey,
        syn: &TcpRepr,
    ) -> Result<(), DropReason> {
        let dst = key.peer.ip();
        let unusable = match dst {
            IpAddr::V4(a) => a.is_multicast() || a.is_broadcast() || a.is_unspecified(),
            IpAddr::V6(a) => a.is_multicast() || a.is_unspecified(),
        };
        if unusable {
            return Err(DropReason::NotForUs);
        }
        let refuse = |cx: &mut Ctx<'_, H>| {
            // RST+ACK acknowledging the SYN (RFC 9293 §3.10.7.1).
            emit_rst(cx, &key, 0, Some(syn.seq.wrapping_add(1)));
        };
        let Ok(vacant) = self.flows.vacant(cx.flows) else {
            refuse(cx);
            return Err(DropReason::FlowTableFull);
        };
        // Port-aware: DNS to the --dns-forward address goes to the host
        // resolver over TCP as over UDP.
        let remote =
            mapping::host_destination_port(cx.config, SocketAddr::new(dst, key.peer.port()));
        // -o / --outbound-if4/6 (docs/cli.md).
        let (place, local) = cx.config.outbound.bind_for(remote.ip(), 0);
        let (sock, progress) = match cx.host.tcp_connect_at(place, local, remote) {
            Ok(x) => x,
            Err(_) => {
                // Refused like a full table (out of descriptors, no route):
                // RST to the guest, and counted.
                self.flows.give_back(vacant, cx.flows);
                refuse(cx);
                return Err(DropReason::HostSocketError);
            }
        };
        let token = vacant.token();
        let isn = self.isn.isn(key.peer, key.guest, now);
        let (flow, verdict) = Flow::outbound(cx, now, key, sock, token, isn, syn, progress);
        let slot = self.install(cx, vacant, flow);
        self.after(cx, slot, verdict);
        Ok(())
    }

    /// Readiness on one of this module's sockets.
    pub fn on_host_event<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        tok: Token,
        readiness: Readiness,
    ) {
        let idx = token::index(tok);
        match token::kind(tok) {
            token::TCP_LISTENER => self.accept(cx, now, idx as usize),
            token::TCP_SPLICE | token::TCP_SPLICE_PEER => {
                self.splices.on_host_event(cx, tok, readiness);
            }
            token::TCP_FLOW => {
                // `None`: a late event for a freed flow.
                let Some(slot) = self.flows.lookup(tok) else {
                    return;
                };
                let Some(flow) = self.flows.get_mut(slot) else {
                    return;
                };
                let v = flow.on_host_event(cx, now, readiness);
                self.after(cx, slot, v);
            }
            _ => {}
        }
    }

    /// Accepts pending connections on listener `idx` and opens a flow
    /// toward the guest for each.
    fn accept<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, now: Instant, idx: usize) {
        let Some(Some(listener)) = self.listeners.get(idx) else {
            return;
        };
        let (lsock, target, route) = (listener.sock, listener.target, listener.route);
        for _ in 0..ACCEPTS_PER_EVENT {
            let (sock, peer, _local) = match cx.host.tcp_accept(lsock) {
                Ok(x) => x,
                Err(_) => return,
            };
            let spliced_to = match route {
                Route::ToHostLoopback => Some(Place::HOST),
                Route::ToGuest if cx.config.splice.enabled() && peer.ip().is_loopback() => {
                    Some(Place::GUEST)
                }
                Route::ToGuest if cx.config.splice == Splice::Only => {
                    // No guest transport to carry it.
                    cx.host.tcp_abort(sock);
                    cx.counters.tcp_splice_refused += 1;
                    continue;
                }
                Route::ToGuest => None,
            };
            if let Some(place) = spliced_to {
                let target = SocketAddr::new(loopback_like(peer.ip()), target.port);
                self.splices.open(cx, sock, place, target);
                continue;
            }
            let Some(key) = inbound_key(cx, peer, target) else {
                cx.host.tcp_abort(sock);
                continue;
            };
            if self.index.contains_key(&key) {
                cx.host.tcp_abort(sock);
                continue;
            }
            let Ok(vacant) = self.flows.vacant(cx.flows) else {
                cx.host.tcp_abort(sock);
                cx.counters.drop(DropReason::FlowTableFull);
                continue;
            };
            let isn = self.isn.isn(key.peer, key.guest, now);
            let flow = Flow::inbound(cx, now, key, sock, vacant.token(), isn);
            self.install(cx, vacant, flow);
        }
    }

    /// Next timer deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(t, _)| t)
    }

    /// Runs due timers.
    pub fn handle_timeout<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, now: Instant) {
        // Bounded by the number of entries due now; each is removed first.
        while let Some(&(t, slot)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.remove(&(t, slot));
            let Some(flow) = self.flows.get_mut(slot) else {
                continue;
            };
            flow.scheduled = None;
            let due = flow.next_deadline();
            let v = if due.is_some_and(|d| d <= now) {
                flow.on_timer(cx, now)
            } else {
                Verdict::Keep
            };
            self.after(cx, slot, v);
        }
    }
}

/// The loopback address of `ip`'s family.
fn loopback_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    }
}

/// The guest-side key of a connection accepted from `peer`, or `None` when
/// the guest cannot be reached in that family or the peer has no address
/// the guest could see.
fn inbound_key<H: HostIo>(
    cx: &Ctx<'_, H>,
    peer: SocketAddr,
    target: ListenTarget,
) -> Option<FlowKey> {
    let src = mapping::guest_source(cx.config, peer.ip())?;
    let guest_ip = match src {
        IpAddr::V4(_) => {
            let v4 = cx.config.ipv4.as_ref()?;
            IpAddr::V4(cx.guest.ipv4.unwrap_or(v4.addr))
        }
        IpAddr::V6(s) => {
            let v6 = cx.config.ipv6.as_ref()?;
            let ll = crate::addr::ipv6_is_link_local(s);
            let a = if ll {
                cx.guest.ipv6_link_local.or(cx.guest.ipv6)
            } else {
                cx.guest.ipv6
            };
            IpAddr::V6(a.unwrap_or(v6.addr))
        }
    };
    let guest_ip = target.guest_addr(src, guest_ip)?;
    Some(FlowKey {
        guest: SocketAddr::new(guest_ip, target.port),
        peer: SocketAddr::new(src, peer.port()),
    })
}
