//! UDP translation: guest datagrams onto host UDP sockets and back.
//!
//! What this module owns:
//! - its flows: a [`FlowTable`] under the engine's one
//!   [`crate::flow::FlowLimit`], each flow identified on the guest side by
//!   `(guest endpoint, endpoint the guest talks to)` (an ordered
//!   `BTreeMap`, never iterated in hash order);
//! - **outbound flows**: the first datagram from a guest endpoint to a new
//!   destination opens a host socket bound to the guest's source port where
//!   the host allows it (ephemeral otherwise) and connected to the mapped
//!   destination ([`crate::mapping::host_destination_port`]); replies come
//!   back to the guest from exactly the address and port it wrote to;
//! - **inbound flows**: sockets bound on forwarded host ports
//!   ([`Udp::listen`]); a datagram from a new host peer opens a flow toward
//!   the guest (source mapped by [`crate::mapping::guest_source_port`],
//!   destination the address the guest uses), and the guest's replies leave
//!   through the same forwarded socket toward that peer;
//! - idle expiry: [`crate::Config::udp_timeout`] for flows that only
//!   carried traffic one way, [`crate::Config::udp_timeout_bidir`] once both
//!   sides spoke;
//! - ICMP errors the kernel queues on our sockets (`IP_RECVERR`), relayed to
//!   the guest as ICMP/ICMPv6 errors quoting a reconstruction of the guest's
//!   own datagram header (RFC 792 "Destination Unreachable"; RFC 4443 §3);
//! - preallocated receive buffers: host datagrams are read in batches
//!   ([`HostIo::udp_recv_batch`]) into one arena allocated at start, and
//!   copied once into the transmit queue; nothing is allocated per datagram;
//! - **batched sends**: a guest datagram is not sent from
//!   [`Udp::on_datagram`]; its payload is copied into a transmit arena
//!   allocated at start (at most [`TX_BATCH`] datagrams and
//!   [`TX_ARENA_BYTES`] bytes) and [`Udp::flush`] (called by
//!   `Engine::flush` after a batch of guest frames, and by
//!   [`Udp::handle_timeout`]) sends everything queued for one host socket
//!   with one [`HostIo::udp_send_batch`] (`sendmmsg`) per
//!   [`SEND_CHUNK`] datagrams, in the order the guest sent them. While
//!   datagrams wait, [`Udp::poll_timeout`] reports the instant the oldest
//!   was queued, so a driver that only follows timers flushes them at once.
//!   When the arena cannot take one more datagram, everything queued is
//!   flushed first (all sockets, in order), then the new one is queued: a
//!   flow's datagrams never overtake each other;
//! - pasta's loopback fast path ([`splice`]): datagrams from a loopback
//!   peer on a forwarded port, and everything on a `-U` port in the
//!   namespace ([`Udp::listen_outbound`]), are relayed socket to socket to
//!   the other side's loopback when [`crate::Config::splice`] is on;
//! - refusing flows it cannot open: a full table, or a host socket that
//!   cannot reach the destination (`ENETUNREACH`, `EHOSTUNREACH`, `EACCES`),
//!   answers the guest with a destination unreachable quoting its datagram
//!   (`refusal::refuse`, rate-limited), besides the counted drop.
//!
//! What it must never do: name a syscall (everything goes through
//! [`HostIo`]), read a clock (time is `now`), or send a datagram to an
//! address the mapping did not produce.

pub mod splice;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::addr::guest_may_not_address;
use crate::config::Splice;
use crate::counters::DropReason;
use crate::ctx::{Ctx, ip_to_guest};
use crate::flow::{FlowTable, Vacant, token};
use crate::host_io::{
    HostError, HostIo, IcmpErrorReport, Interest, Place, Readiness, SockId, Token, UdpRecv, UdpSend,
};
use crate::mapping::{self, ListenTarget};
use crate::refusal::{Refusal, RefusalLimiter, refuse};
use crate::time::Instant;
use crate::wire::{
    self, Icmpv4Repr, Icmpv6Repr, IpRepr, Ipv4Repr, Ipv6Repr, UdpRepr, ipv4, ipv6, protocol,
};

/// Datagrams read from a host socket per `recvmmsg`.
pub const RX_BATCH: usize = 16;
/// Bytes per receive slot: the largest UDP payload plus one, so that an
/// oversized datagram shows up as truncated instead of silently cut.
const RX_SLOT: usize = 65536;
/// Receive batches handled per readiness event (the rest waits for the next
/// level-triggered report, so one busy socket cannot starve the others).
const BATCHES_PER_EVENT: usize = 4;
/// ICMP errors taken from one socket's error queue per event.
const ERRORS_PER_EVENT: usize = 16;
/// Guest datagrams queued toward host sockets between flushes.
pub const TX_BATCH: usize = 128;
/// Payload bytes queued toward host sockets between flushes (room for
/// several datagrams of the largest size a 65520-byte MTU allows).
pub const TX_ARENA_BYTES: usize = 512 * 1024;
/// Datagrams per [`HostIo::udp_send_batch`] call (the real backend's
/// `sendmmsg` takes up to 64 per call).
pub const SEND_CHUNK: usize = 64;

/// One UDP flow.
#[derive(Debug, Clone, Copy)]
struct Flow {
    /// The guest's own endpoint.
    guest: SocketAddr,
    /// The endpoint the guest talks to, as the guest sees it.
    guest_peer: SocketAddr,
    /// The peer on the host side.
    host_peer: SocketAddr,
    /// The host socket: owned by the flow (outbound), or the forwarded
    /// port's socket (inbound, `listener` is set).
    sock: SockId,
    /// Index of the forwarded-port socket for inbound flows.
    listener: Option<u32>,
    /// Last datagram either way.
    last_active: Instant,
    /// A datagram went guest -> host.
    to_host: bool,
    /// A datagram went host -> guest.
    to_guest: bool,
    /// UDP length (header included) of the guest's last datagram, to quote
    /// it in ICMP errors.
    last_udp_len: u16,
}

/// A socket bound on a forwarded port.
#[derive(Debug, Clone, Copy)]
struct Listener {
    sock: SockId,
    target: ListenTarget,
    /// Where it was bound, as asked (a closed listener is revived by a
    /// new one for the same place and address).
    place: Place,
    addr: SocketAddr,
    /// Inbound flows using this socket.
    flows: u32,
    /// `false` once [`Udp::close_listener`] was called: the socket stays
    /// only for the flows it still serves, and takes no new peer.
    open: bool,
    /// `-U`: the socket is in the guest namespace and everything it
    /// receives is spliced to the host's loopback (`target.port`).
    outbound: bool,
}

/// The flow table (kept apart from the receive arena so both can be
/// borrowed at once).
#[derive(Debug)]
struct Table {
    flows: FlowTable<Flow>,
    by_guest: BTreeMap<(SocketAddr, SocketAddr), u32>,
    by_listener_peer: BTreeMap<(u32, SocketAddr), u32>,
    /// By index; `None` for a freed index (reused by the next listener).
    listeners: Vec<Option<Listener>>,
    /// Lower bound of the earliest expiry (activity only pushes expiries
    /// later, so waking at this instant is never late).
    next_deadline: Option<Instant>,
}

/// One guest datagram waiting in the transmit arena.
#[derive(Debug, Clone, Copy)]
struct Queued {
    /// The socket it leaves through.
    sock: SockId,
    /// Arrival order (unique between flushes).
    seq: u32,
    /// Its flow, and the slot generation when it was queued.
    flow: u32,
    generation: u32,
    /// Destination for forwarded-port sockets; `None` when connected.
    dst: Option<SocketAddr>,
    /// Payload location in the arena.
    start: usize,
    len: usize,
}

/// The transmit arena: guest datagrams waiting for [`Udp::flush`].
#[derive(Debug)]
struct TxBatch {
    arena: Box<[u8]>,
    used: usize,
    queued: Vec<Queued>,
    /// When the oldest queued datagram arrived.
    since: Option<Instant>,
}

impl TxBatch {
    fn fits(&self, len: usize) -> bool {
        self.queued.len() < TX_BATCH && self.used + len <= self.arena.len()
    }
}

/// UDP flows between the guest and host sockets.
#[derive(Debug)]
pub struct Udp {
    table: Table,
    rx: Box<[u8]>,
    tx: TxBatch,
    limiter: RefusalLimiter,
    splice: splice::UdpSplices,
}

/// Identifies a socket bound on a forwarded port ([`Udp::listen`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UdpListenerId(pub u32);

/// A snapshot of one flow, for tests and diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpFlowInfo {
    /// The guest's endpoint.
    pub guest: SocketAddr,
    /// The endpoint the guest talks to, as it sees it.
    pub guest_peer: SocketAddr,
    /// The host-side peer.
    pub host_peer: SocketAddr,
    /// Inbound (through a forwarded port) rather than outbound.
    pub inbound: bool,
    /// Both directions carried traffic.
    pub bidirectional: bool,
}

fn unspecified_like(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// A host destination no flow may be opened toward.
fn is_unroutable(dst: IpAddr) -> bool {
    match dst {
        IpAddr::V4(a) => a.is_unspecified() || a.is_broadcast() || a.is_multicast(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
    }
}

impl Table {
    fn flow(&self, index: u32) -> Option<&Flow> {
        self.flows.get(index)
    }

    fn flow_mut(&mut self, index: u32) -> Option<&mut Flow> {
        self.flows.get_mut(index)
    }

    /// Enters `flow` in the entry reserved for it.
    fn insert(
        &mut self,
        counters: &mut crate::Counters,
        v: Vacant,
        flow: Flow,
        timeout: core::time::Duration,
    ) -> u32 {
        self.by_guest
            .insert((flow.guest, flow.guest_peer), v.slot());
        if let Some(l) = flow.listener {
            self.by_listener_peer.insert((l, flow.host_peer), v.slot());
            if let Some(Some(listener)) = self.listeners.get_mut(l as usize) {
                listener.flows += 1;
            }
        }
        let deadline = flow.last_active + timeout;
        self.next_deadline = Some(self.next_deadline.map_or(deadline, |d| d.min(deadline)));
        self.flows.fill(v, flow, counters)
    }

    /// Removes flow `index` and closes its socket (a forwarded port's
    /// socket stays, unless its listener was closed and this was its last
    /// flow). Returns whether there was such a flow.
    fn remove<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, index: u32) -> bool {
        let Some(flow) = self.flows.remove(index, cx.flows, cx.counters) else {
            return false;
        };
        self.by_guest.remove(&(flow.guest, flow.guest_peer));
        match flow.listener {
            Some(l) => {
                self.by_listener_peer.remove(&(l, flow.host_peer));
                // A closed listener's socket goes once its last flow
                // has ([`Udp::handle_timeout`] closes it).
                if let Some(Some(listener)) = self.listeners.get_mut(l as usize) {
                    listener.flows = listener.flows.saturating_sub(1);
                }
            }
            None => cx.host.close(flow.sock),
        }
        true
    }
}

impl Default for Udp {
    fn default() -> Self {
        Self::new()
    }
}

impl Udp {
    /// An empty module with its receive and transmit arenas allocated
    /// (its flows count against [`crate::Config::flow_capacity`]; the slab
    /// grows to its high-water mark, then stays).
    pub fn new() -> Self {
        Udp {
            table: Table {
                flows: FlowTable::new(token::UDP_FLOW),
                by_guest: BTreeMap::new(),
                by_listener_peer: BTreeMap::new(),
                listeners: Vec::new(),
                next_deadline: None,
            },
            rx: vec![0u8; RX_BATCH * RX_SLOT].into_boxed_slice(),
            tx: TxBatch {
                arena: vec![0u8; TX_ARENA_BYTES].into_boxed_slice(),
                used: 0,
                queued: Vec::with_capacity(TX_BATCH),
                since: None,
            },
            limiter: RefusalLimiter::default(),
            splice: splice::UdpSplices::new(),
        }
    }

    /// The spliced flows (pasta's loopback fast path).
    pub fn splices(&self) -> &splice::UdpSplices {
        &self.splice
    }

    /// Guest datagrams waiting for [`Udp::flush`].
    pub fn pending_datagrams(&self) -> usize {
        self.tx.queued.len()
    }

    /// Binds a host UDP socket on `addr` at `place` (a forwarded port)
    /// whose datagrams go to the guest at `target`. Errors are the
    /// bind's (`AddrInUse`, `PermissionDenied`, ...), for the caller to
    /// report as upstream does ("Failed to bind port"). A listener closed
    /// for the same place and address whose socket still serves flows is
    /// taken back instead (a second bind would fail with `AddrInUse`).
    pub fn listen<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        place: Place,
        addr: SocketAddr,
        target: ListenTarget,
    ) -> Result<UdpListenerId, HostError> {
        self.add_listener(cx, place, addr, target, false)
    }

    /// `-U`: binds `addr` in the guest namespace; datagrams it receives are
    /// spliced to the host's loopback (same family) on `host_port`.
    /// `Unsupported` when splicing is off.
    pub fn listen_outbound<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        addr: SocketAddr,
        host_port: u16,
    ) -> Result<UdpListenerId, HostError> {
        if !cx.config.splice.enabled() {
            return Err(HostError::Unsupported);
        }
        self.add_listener(cx, Place::GUEST, addr, ListenTarget::port(host_port), true)
    }

    fn add_listener<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        place: Place,
        addr: SocketAddr,
        target: ListenTarget,
        outbound: bool,
    ) -> Result<UdpListenerId, HostError> {
        let listeners = &mut self.table.listeners;
        if let Some(i) = listeners.iter().position(|l| {
            l.is_some_and(|l| {
                !l.open && l.place == place && l.addr == addr && l.outbound == outbound
            })
        }) && let Some(Some(l)) = listeners.get_mut(i)
        {
            l.open = true;
            l.target = target;
            return u32::try_from(i)
                .map(UdpListenerId)
                .map_err(|_| HostError::NoResources);
        }
        let index = listeners
            .iter()
            .position(Option::is_none)
            .unwrap_or(listeners.len());
        let index = u32::try_from(index).map_err(|_| HostError::NoResources)?;
        let sock = cx.host.udp_bind_at(place, addr)?;
        if let Err(e) = cx.host.set_interest(
            sock,
            token::make(token::UDP_LISTENER, u64::from(index)),
            Interest::READ,
        ) {
            cx.host.close(sock);
            return Err(e);
        }
        let listener = Some(Listener {
            sock,
            target,
            place,
            addr,
            flows: 0,
            open: true,
            outbound,
        });
        match listeners.get_mut(index as usize) {
            Some(slot) => *slot = listener,
            None => listeners.push(listener),
        }
        Ok(UdpListenerId(index))
    }

    /// Closes listener `id` (a forwarding rule went away) without
    /// disturbing its flows: the socket is closed at once when no flow
    /// uses it, otherwise when the last one expires; meanwhile datagrams
    /// from new peers are dropped ([`DropReason::ForwardClosed`]). Returns
    /// whether there was such an open listener.
    pub fn close_listener<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, id: UdpListenerId) -> bool {
        let Some(slot) = self.table.listeners.get_mut(id.0 as usize) else {
            return false;
        };
        match slot {
            Some(l) if l.open => l.open = false,
            _ => return false,
        }
        self.close_drained(cx, id.0);
        true
    }

    /// Closes listener `l` if it was closed and no flow (translated or
    /// spliced) uses its socket any more.
    fn close_drained<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, l: u32) {
        let Some(slot) = self.table.listeners.get_mut(l as usize) else {
            return;
        };
        if let Some(x) = slot
            && !x.open
            && x.flows == 0
            && !self.splice.uses_listener(l)
        {
            cx.host.close(x.sock);
            *slot = None;
        }
    }

    /// Sends datagrams of new peers on listener `id` to guest port
    /// `target` from now on (existing flows keep theirs). Returns
    /// whether there was such an open listener.
    pub fn retarget_listener(&mut self, id: UdpListenerId, target: ListenTarget) -> bool {
        match self.table.listeners.get_mut(id.0 as usize) {
            Some(Some(l)) if l.open => {
                l.target = target;
                true
            }
            _ => false,
        }
    }

    /// Sockets bound on forwarded ports: `(open, closed but still
    /// serving flows)`.
    pub fn listener_count(&self) -> (usize, usize) {
        let live = self.table.listeners.iter().flatten();
        let open = live.clone().filter(|l| l.open).count();
        (open, live.count() - open)
    }

    /// Number of live flows.
    pub fn flow_count(&self) -> usize {
        self.table.flows.len()
    }

    /// Live flows in slot order.
    pub fn flows(&self) -> impl Iterator<Item = UdpFlowInfo> + '_ {
        self.table.flows.iter().map(|(_, f)| UdpFlowInfo {
            guest: f.guest,
            guest_peer: f.guest_peer,
            host_peer: f.host_peer,
            inbound: f.listener.is_some(),
            bidirectional: f.to_guest && f.to_host,
        })
    }

    /// The host-side local address of the socket serving the flow of
    /// `(guest, guest_peer)`, if any (tests check source-port
    /// preservation with it).
    pub fn host_local_addr<H: HostIo>(
        &self,
        host: &H,
        guest: SocketAddr,
        guest_peer: SocketAddr,
    ) -> Option<SocketAddr> {
        let i = *self.table.by_guest.get(&(guest, guest_peer))?;
        host.local_addr(self.table.flow(i)?.sock).ok()
    }

    /// A datagram from the guest (its checksum already verified by
    /// [`wire::parse_frame`]). It is queued, not sent: [`Udp::flush`]
    /// sends it. A flow that cannot be opened is refused (see the module
    /// docs) and the reason returned for the caller to count.
    pub fn on_datagram<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        udp: &UdpRepr,
        payload: &[u8],
    ) -> Result<(), DropReason> {
        if !cx.config.services.udp {
            return Err(DropReason::ServiceDisabled);
        }
        if udp.dst_port == 0 {
            return Err(DropReason::Malformed);
        }
        if guest_may_not_address(dst) {
            return Err(DropReason::NotForUs);
        }
        let guest = SocketAddr::new(src, udp.src_port);
        let guest_peer = SocketAddr::new(dst, udp.dst_port);
        let udp_len = u16::try_from(payload.len() + wire::udp::HEADER_LEN).unwrap_or(0);
        let index = match self.table.by_guest.get(&(guest, guest_peer)) {
            Some(&i) => i,
            None => match self.open_outbound(cx, now, guest, guest_peer) {
                Ok(i) => i,
                Err((reason, refusal)) => {
                    if let Some(r) = refusal {
                        self.refuse_datagram(cx, now, r, guest, guest_peer, udp_len);
                    }
                    return Err(reason);
                }
            },
        };
        if !self.tx.fits(payload.len()) {
            // Full arena: everything queued leaves first, so no datagram
            // of any flow overtakes an earlier one.
            self.flush(cx, now);
        }
        if !self.tx.fits(payload.len()) {
            return Err(DropReason::TooBig);
        }
        let generation = self.table.flows.generation(index);
        let flow = self.table.flow_mut(index).ok_or(DropReason::Malformed)?;
        flow.last_active = now;
        flow.to_host = true;
        flow.last_udp_len = udp_len;
        let (sock, dst) = (flow.sock, flow.listener.map(|_| flow.host_peer));
        let tx = &mut self.tx;
        let start = tx.used;
        tx.arena[start..start + payload.len()].copy_from_slice(payload);
        tx.used += payload.len();
        let seq = u32::try_from(tx.queued.len()).unwrap_or(u32::MAX);
        tx.queued.push(Queued {
            sock,
            seq,
            flow: index,
            generation,
            dst,
            start,
            len: payload.len(),
        });
        tx.since.get_or_insert(now);
        Ok(())
    }

    /// Sends every queued guest datagram: one [`HostIo::udp_send_batch`]
    /// per socket (per [`SEND_CHUNK`] datagrams), in arrival order within
    /// each socket. Datagrams the host does not take are dropped and
    /// counted (UDP may lose datagrams; the arena never waits for room in a
    /// socket buffer): the rest of a socket's batch on `EAGAIN`, the one
    /// datagram that failed otherwise. A send refused by local policy
    /// (`EACCES`/`EPERM`) or for want of a route (`ENETUNREACH`) is refused
    /// toward the guest too; other errors of a connected socket come from
    /// ICMP errors that the error queue relays already. The arena is empty
    /// afterwards.
    pub fn flush<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, now: Instant) {
        if self.tx.queued.is_empty() {
            return;
        }
        // A flow closed while its datagrams waited (flows only close in
        // `handle_timeout`, which flushes first, so this is defensive).
        let flows = &self.table.flows;
        let before = self.tx.queued.len();
        self.tx
            .queued
            .retain(|q| flows.generation(q.flow) == q.generation && flows.get(q.flow).is_some());
        for _ in self.tx.queued.len()..before {
            cx.counters.drop(DropReason::HostSocketError);
        }
        // Arrival numbers are unique, so the unstable (allocation-free)
        // sort is deterministic and keeps each socket's order.
        self.tx.queued.sort_unstable_by_key(|q| (q.sock, q.seq));
        let total = self.tx.queued.len();
        let mut i = 0;
        while i < total {
            let sock = self.tx.queued[i].sock;
            let end = i + self.tx.queued[i..]
                .iter()
                .take_while(|q| q.sock == sock)
                .count();
            self.send_socket_batch(cx, now, sock, i, end);
            i = end;
        }
        self.tx.queued.clear();
        self.tx.used = 0;
        self.tx.since = None;
    }

    /// Sends queued datagrams `start..end`, which all leave through `sock`.
    fn send_socket_batch<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        sock: SockId,
        start: usize,
        end: usize,
    ) {
        let mut k = start;
        // Every round consumes at least one datagram.
        while k < end {
            let n = (end - k).min(SEND_CHUNK);
            let mut msgs = [UdpSend {
                dst: None,
                payload: &[],
            }; SEND_CHUNK];
            for (m, q) in msgs.iter_mut().zip(&self.tx.queued[k..k + n]) {
                *m = UdpSend {
                    dst: q.dst,
                    payload: &self.tx.arena[q.start..q.start + q.len],
                };
            }
            match cx.host.udp_send_batch(sock, &msgs[..n]) {
                Ok(sent) if sent > 0 => {
                    let sent = sent.min(n);
                    cx.counters.udp_to_host += sent as u64;
                    k += sent;
                }
                Ok(_) | Err(HostError::WouldBlock) => {
                    for _ in k..end {
                        cx.counters.drop(DropReason::HostSocketError);
                    }
                    k = end;
                }
                Err(e) => {
                    cx.counters.drop(DropReason::HostSocketError);
                    let q = self.tx.queued[k];
                    let refusal = match e {
                        HostError::PermissionDenied | HostError::NetworkUnreachable => {
                            Refusal::from_host_error(e)
                        }
                        _ => None,
                    };
                    if let (Some(r), Some(flow)) = (refusal, self.table.flow(q.flow).copied()) {
                        let udp_len = u16::try_from(q.len + wire::udp::HEADER_LEN).unwrap_or(0);
                        self.refuse_datagram(cx, now, r, flow.guest, flow.guest_peer, udp_len);
                    }
                    k += 1;
                }
            }
        }
    }

    /// Answers the guest's datagram `guest -> guest_peer` (UDP length
    /// `udp_len`) with a rate-limited destination unreachable.
    fn refuse_datagram<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        refusal: Refusal,
        guest: SocketAddr,
        guest_peer: SocketAddr,
        udp_len: u16,
    ) {
        let mut quoted = [0u8; 48];
        if let Some(n) = quote_udp_header(guest, guest_peer, udp_len, &mut quoted) {
            refuse(
                cx,
                &mut self.limiter,
                now,
                refusal,
                guest.ip(),
                guest_peer.ip(),
                &quoted[..n],
            );
        }
    }

    /// Opens the host socket of a new outbound flow and enters it. On
    /// failure: the drop reason, and the refusal the guest should get.
    fn open_outbound<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        guest: SocketAddr,
        guest_peer: SocketAddr,
    ) -> Result<u32, (DropReason, Option<Refusal>)> {
        let host_peer = mapping::host_destination_port(cx.config, guest_peer);
        if is_unroutable(host_peer.ip()) {
            return Err((DropReason::Unmappable, None));
        }
        // docs/architecture.md, the flow table: a full table refuses the new flow
        // cleanly, and says so.
        let vacant = self
            .table
            .flows
            .vacant(cx.flows)
            .map_err(|_| (DropReason::FlowTableFull, Some(Refusal::AdminProhibited)))?;
        // Keep the guest's source port where the host lets us bind it: peers
        // that answer to a fixed port (or log it) then see the same one.
        // -o / --outbound-if4/6 (docs/cli.md) choose the source address and
        // interface; otherwise routing does.
        let (place, local) = cx.config.outbound.bind_for(host_peer.ip(), 0);
        let src = local.map_or_else(|| unspecified_like(host_peer.ip()), |l| l.ip());
        let sock = match cx
            .host
            .udp_bind_at(place, SocketAddr::new(src, guest.port()))
        {
            Ok(s) => s,
            Err(_) => match cx.host.udp_bind_at(place, SocketAddr::new(src, 0)) {
                Ok(s) => s,
                Err(e) => {
                    self.table.flows.give_back(vacant, cx.flows);
                    return Err((DropReason::HostSocketError, Refusal::from_host_error(e)));
                }
            },
        };
        let setup = cx
            .host
            .udp_connect(sock, host_peer)
            .and_then(|()| cx.host.set_interest(sock, vacant.token(), Interest::READ));
        if let Err(e) = setup {
            cx.host.close(sock);
            self.table.flows.give_back(vacant, cx.flows);
            return Err((DropReason::HostSocketError, Refusal::from_host_error(e)));
        }
        let index = self.table.insert(
            cx.counters,
            vacant,
            Flow {
                guest,
                guest_peer,
                host_peer,
                sock,
                listener: None,
                last_active: now,
                to_host: false,
                to_guest: false,
                last_udp_len: 0,
            },
            cx.config.udp_timeout,
        );
        Ok(index)
    }

    /// Readiness on one of this module's sockets.
    pub fn on_host_event<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        token: Token,
        readiness: Readiness,
    ) {
        let idx = token::index(token);
        match token::kind(token) {
            token::UDP_FLOW => {
                // `None`: a late event for a freed flow.
                let Some(index) = self.table.flows.lookup(token) else {
                    return;
                };
                let Some(sock) = self.table.flow(index).map(|f| f.sock) else {
                    return;
                };
                self.drain(cx, now, sock, Source::Flow(index), readiness);
            }
            token::UDP_LISTENER => {
                let Ok(l) = u32::try_from(idx) else { return };
                let Some(Some(listener)) = self.table.listeners.get(l as usize) else {
                    return;
                };
                let sock = listener.sock;
                self.drain(cx, now, sock, Source::Listener(l), readiness);
            }
            token::UDP_SPLICE => {
                self.splice
                    .on_host_event(cx, now, token, readiness.error, &mut self.rx, RX_SLOT);
            }
            _ => {}
        }
    }

    /// Reads what `sock` has (errors first, then datagrams in batches).
    fn drain<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        sock: SockId,
        source: Source,
        readiness: Readiness,
    ) {
        if readiness.error {
            self.table.relay_errors(cx, sock, source);
        }
        let listener = match source {
            Source::Listener(l) => self
                .table
                .listeners
                .get(l as usize)
                .copied()
                .flatten()
                .map(|x| (l, x)),
            Source::Flow(_) => None,
        };
        for _ in 0..BATCHES_PER_EVENT {
            // Backpressure: read no more datagrams than the transmit queue
            // can take; the rest stays in the socket and is reported again.
            // A `-U` socket never writes to the guest.
            let room = match listener {
                Some((_, l)) if l.outbound => RX_BATCH,
                _ => cx.tx_room().min(RX_BATCH),
            };
            if room == 0 {
                break;
            }
            let mut chunks = self.rx.chunks_mut(RX_SLOT);
            let mut slots: [UdpRecv<'_>; RX_BATCH] =
                std::array::from_fn(|_| UdpRecv::new(chunks.next().unwrap_or_default()));
            let got = match cx.host.udp_recv_batch(sock, &mut slots[..room]) {
                Ok(n) => n,
                Err(HostError::WouldBlock) => break,
                Err(
                    HostError::ConnectionRefused
                    | HostError::HostUnreachable
                    | HostError::NetworkUnreachable
                    | HostError::MessageTooLong
                    | HostError::TimedOut
                    | HostError::Other(_),
                ) => {
                    // The pending error was consumed by the read; the
                    // details sit in the error queue.
                    self.table.relay_errors(cx, sock, source);
                    continue;
                }
                Err(_) => break,
            };
            let got_slots = &slots[..got.min(room)];
            match listener {
                Some((l, x)) if x.outbound => self.splice.relay_from_listener(
                    cx,
                    now,
                    l,
                    x.sock,
                    Place::HOST,
                    x.target.port,
                    got_slots,
                ),
                Some((l, x)) if cx.config.splice.enabled() => {
                    // Loopback peers are spliced to the namespace's
                    // loopback; the others go to the guest (or nowhere
                    // with `--splice-only`), in arrival order per run.
                    let mut i = 0;
                    while i < got_slots.len() {
                        let lo = is_loopback_src(&got_slots[i]);
                        let mut end = i + 1;
                        while end < got_slots.len() && is_loopback_src(&got_slots[end]) == lo {
                            end += 1;
                        }
                        let run = &got_slots[i..end];
                        i = end;
                        if lo {
                            self.splice.relay_from_listener(
                                cx,
                                now,
                                l,
                                x.sock,
                                Place::GUEST,
                                x.target.port,
                                run,
                            );
                        } else if cx.config.splice == Splice::Only {
                            for _ in run {
                                cx.counters.drop(DropReason::Unmappable);
                            }
                        } else {
                            for slot in run {
                                if let Err(reason) = self.table.deliver(cx, now, source, slot) {
                                    cx.counters.drop(reason);
                                }
                            }
                        }
                    }
                }
                _ => {
                    for slot in got_slots {
                        let r = self.table.deliver(cx, now, source, slot);
                        if let Err(reason) = r {
                            cx.counters.drop(reason);
                        }
                    }
                }
            }
            if got < room {
                break;
            }
        }
    }

    /// Next timer deadline: the arrival of the oldest datagram waiting
    /// for [`Udp::flush`] (already due), else the earliest flow expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = match (self.tx.since, self.table.next_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        crate::time::earliest(t, self.splice.poll_timeout())
    }

    /// Flushes queued datagrams (see [`Udp::flush`]), then expires idle
    /// flows.
    pub fn handle_timeout<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, now: Instant) {
        self.flush(cx, now);
        self.splice.handle_timeout(cx, now);
        self.expire(cx, now);
        for l in 0..self.table.listeners.len() {
            if self.table.listeners[l].is_some_and(|x| !x.open) {
                self.close_drained(cx, l as u32);
            }
        }
    }

    /// Closes the flows idle past their timeout.
    fn expire<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, now: Instant) {
        match self.table.next_deadline {
            Some(d) if d <= now => {}
            _ => return,
        }
        let (oneway, bidir) = (cx.config.udp_timeout, cx.config.udp_timeout_bidir);
        let mut next: Option<Instant> = None;
        for i in 0..self.table.flows.slot_count() {
            let Some(f) = self.table.flows.get(i) else {
                continue;
            };
            let timeout = if f.to_guest && f.to_host {
                bidir
            } else {
                oneway
            };
            let deadline = f.last_active + timeout;
            if deadline <= now {
                self.table.remove(cx, i);
            } else {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
        }
        self.table.next_deadline = next;
    }
}

/// Which socket a batch came from.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// An outbound flow's own connected socket.
    Flow(u32),
    /// A forwarded-port socket.
    Listener(u32),
}

impl Table {
    /// Finds (or, for a forwarded port, creates) the flow a host datagram
    /// belongs to and writes it to the guest.
    fn deliver<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        source: Source,
        slot: &UdpRecv<'_>,
    ) -> Result<(), DropReason> {
        let index = match source {
            Source::Flow(i) => i,
            Source::Listener(l) => {
                let peer = slot.src.ok_or(DropReason::Unmappable)?;
                let peer = canonical(peer);
                match self.by_listener_peer.get(&(l, peer)) {
                    Some(&i) => i,
                    None => self.open_inbound(cx, now, l, peer)?,
                }
            }
        };
        if slot.truncated {
            return Err(DropReason::TooBig);
        }
        let payload = slot.buf.get(..slot.len).ok_or(DropReason::TooBig)?;
        let flow = self.flow_mut(index).ok_or(DropReason::Malformed)?;
        let ip = ip_to_guest(flow.guest_peer.ip(), flow.guest.ip(), protocol::UDP)
            .ok_or(DropReason::Unmappable)?;
        let ip_len = ip.headers_len() - wire::ethernet::HEADER_LEN;
        if ip_len + wire::udp::HEADER_LEN + payload.len() > usize::from(cx.config.mtu) {
            return Err(DropReason::TooBig);
        }
        let repr = UdpRepr {
            src_port: flow.guest_peer.port(),
            dst_port: flow.guest.port(),
        };
        let max = ip.headers_len() + wire::udp::HEADER_LEN + payload.len();
        let (our_mac, guest_mac) = (cx.config.our_mac, cx.guest.dst_mac());
        flow.last_active = now;
        flow.to_guest = true;
        if cx.emit(max, |buf| {
            wire::build_udp(buf, our_mac, guest_mac, ip, &repr, payload).unwrap_or(0)
        }) {
            cx.counters.udp_to_guest += 1;
        }
        Ok(())
    }

    /// A new flow for a datagram from `peer` on forwarded port `l`.
    fn open_inbound<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        l: u32,
        peer: SocketAddr,
    ) -> Result<u32, DropReason> {
        let listener = self
            .listeners
            .get(l as usize)
            .copied()
            .flatten()
            .ok_or(DropReason::Malformed)?;
        if !listener.open {
            return Err(DropReason::ForwardClosed);
        }
        let (seen, guest) = mapping::translate(
            cx.config,
            cx.guest,
            mapping::Direction::Inbound,
            peer,
            SocketAddr::new(peer.ip(), listener.target.port),
        )
        .ok_or(DropReason::Unmappable)?;
        // A rule with a guest address (`-u 53:192.0.2.5`) delivers there.
        let guest = SocketAddr::new(
            listener
                .target
                .guest_addr(seen.ip(), guest.ip())
                .ok_or(DropReason::Unmappable)?,
            guest.port(),
        );
        // The guest may already talk to this very endpoint (an outbound
        // flow): datagrams then join that flow, as the guest sees one tuple.
        if let Some(&i) = self.by_guest.get(&(guest, seen)) {
            return Ok(i);
        }
        let vacant = self
            .flows
            .vacant(cx.flows)
            .map_err(|_| DropReason::FlowTableFull)?;
        let index = self.insert(
            cx.counters,
            vacant,
            Flow {
                guest,
                guest_peer: seen,
                host_peer: peer,
                sock: listener.sock,
                listener: Some(l),
                last_active: now,
                to_host: false,
                to_guest: false,
                last_udp_len: 0,
            },
            cx.config.udp_timeout,
        );
        Ok(index)
    }

    /// Takes queued ICMP errors off `sock` and relays each to the guest.
    fn relay_errors<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, sock: SockId, source: Source) {
        for _ in 0..ERRORS_PER_EVENT {
            if cx.tx_room() == 0 {
                // The error waits in the socket's queue for room.
                break;
            }
            let report = match cx.host.udp_recv_error(sock) {
                Ok(Some(r)) => r,
                Ok(None) | Err(_) => break,
            };
            let index = match source {
                Source::Flow(i) => Some(i),
                Source::Listener(l) => self
                    .by_listener_peer
                    .get(&(l, canonical(report.dst)))
                    .copied(),
            };
            let Some(flow) = index.and_then(|i| self.flow(i)).copied() else {
                continue;
            };
            if !relay_icmp_error(cx, &flow, &report) {
                cx.counters.drop(DropReason::Unmappable);
            }
        }
    }
}

/// Whether a received datagram came from a loopback address (an
/// IPv4-mapped one included).
fn is_loopback_src(slot: &UdpRecv<'_>) -> bool {
    slot.src.is_some_and(|a| canonical(a).ip().is_loopback())
}

/// An IPv4-mapped IPv6 peer as the IPv4 address it is.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// Writes the guest's datagram header as the guest sent it (IP header plus
/// the 8-byte UDP header; RFC 792 asks for the header and 64 bits of data)
/// into `out`; returns its length. The UDP checksum is left zero: the
/// payload is not kept, and receivers match errors on addresses and ports.
///
/// The UDP length is the offending datagram's own when the host reported
/// how much payload came back with the error (exact for any datagram the
/// ICMP message quoted whole), else that of the flow's latest datagram.
fn quote_guest_datagram(
    flow: &Flow,
    payload_len: Option<usize>,
    out: &mut [u8; 48],
) -> Option<usize> {
    let udp_len = payload_len
        .and_then(|n| u16::try_from(n + wire::udp::HEADER_LEN).ok())
        .unwrap_or(flow.last_udp_len);
    quote_udp_header(flow.guest, flow.guest_peer, udp_len, out)
}

/// Writes the IP and UDP headers of a guest datagram `guest -> guest_peer`
/// of UDP length `udp_len` into `out` (checksum zero; see
/// [`quote_guest_datagram`]); returns the length written.
fn quote_udp_header(
    guest: SocketAddr,
    guest_peer: SocketAddr,
    udp_len: u16,
    out: &mut [u8; 48],
) -> Option<usize> {
    let udp_len = udp_len.max(wire::udp::HEADER_LEN as u16);
    // The guest's own header, as it would have built it.
    let ip_len = match ip_to_guest(guest.ip(), guest_peer.ip(), protocol::UDP)? {
        IpRepr::V4(ip) => {
            Ipv4Repr {
                payload_len: usize::from(udp_len),
                ..ip
            }
            .emit(&mut out[..])
            .ok()?;
            ipv4::MIN_HEADER_LEN
        }
        IpRepr::V6(ip) => {
            Ipv6Repr {
                payload_len: usize::from(udp_len),
                ..ip
            }
            .emit(&mut out[..])
            .ok()?;
            ipv6::HEADER_LEN
        }
    };
    let u = out.get_mut(ip_len..ip_len + wire::udp::HEADER_LEN)?;
    u[0..2].copy_from_slice(&guest.port().to_be_bytes());
    u[2..4].copy_from_slice(&guest_peer.port().to_be_bytes());
    u[4..6].copy_from_slice(&udp_len.to_be_bytes());
    u[6..8].copy_from_slice(&[0, 0]);
    Some(ip_len + wire::udp::HEADER_LEN)
}

/// ICMP types relayed for UDP (RFC 792 / RFC 4443 §3).
mod icmp_types {
    pub const V4_DST_UNREACHABLE: u8 = 3;
    pub const V4_TIME_EXCEEDED: u8 = 11;
    pub const V6_DST_UNREACHABLE: u8 = 1;
    pub const V6_PACKET_TOO_BIG: u8 = 2;
    pub const V6_TIME_EXCEEDED: u8 = 3;
    /// ICMPv4 "fragmentation needed and DF set" (RFC 1191 §4).
    pub const V4_FRAG_NEEDED: u8 = 4;
}

/// Builds the guest-side ICMP error for `report` on `flow`. Returns whether
/// a message was produced (false: a type we do not relay, or a family
/// mismatch).
fn relay_icmp_error<H: HostIo>(cx: &mut Ctx<'_, H>, flow: &Flow, report: &IcmpErrorReport) -> bool {
    let mut quoted = [0u8; 48];
    let Some(qlen) = quote_guest_datagram(flow, report.payload_len, &mut quoted) else {
        return false;
    };
    let data = &quoted[..qlen];
    // The error appears to come from the address the guest wrote to when
    // the destination itself answered (port unreachable); from the mapped
    // router address otherwise, falling back to the same.
    let origin = match report.origin {
        Some(o) if o != flow.host_peer.ip() => mapping::guest_source(cx.config, o)
            .filter(|g| g.is_ipv4() == flow.guest.is_ipv4())
            .unwrap_or(flow.guest_peer.ip()),
        _ => flow.guest_peer.ip(),
    };
    let (our_mac, guest_mac) = (cx.config.our_mac, cx.guest.dst_mac());
    let sent = match (origin, flow.guest.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let icmp = match report.icmp_type {
                icmp_types::V4_DST_UNREACHABLE => Icmpv4Repr::DstUnreachable {
                    code: report.icmp_code,
                    rest: if report.icmp_code == icmp_types::V4_FRAG_NEEDED {
                        report.info & 0xffff
                    } else {
                        0
                    },
                    data,
                },
                icmp_types::V4_TIME_EXCEEDED => Icmpv4Repr::TimeExceeded {
                    code: report.icmp_code,
                    rest: 0,
                    data,
                },
                _ => return false,
            };
            let Some(IpRepr::V4(ip)) = ip_to_guest(IpAddr::V4(src), IpAddr::V4(dst), 0) else {
                return false;
            };
            let len = wire::IPV4_HEADERS_LEN + icmp.buffer_len();
            cx.emit(len, |buf| {
                wire::build_icmpv4(buf, our_mac, guest_mac, &ip, &icmp).unwrap_or(0)
            })
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let icmp = match report.icmp_type {
                icmp_types::V6_DST_UNREACHABLE => Icmpv6Repr::DstUnreachable {
                    code: report.icmp_code,
                    data,
                },
                icmp_types::V6_PACKET_TOO_BIG => Icmpv6Repr::PacketTooBig {
                    mtu: report.info,
                    data,
                },
                icmp_types::V6_TIME_EXCEEDED => Icmpv6Repr::TimeExceeded {
                    code: report.icmp_code,
                    data,
                },
                _ => return false,
            };
            let Some(IpRepr::V6(ip)) = ip_to_guest(IpAddr::V6(src), IpAddr::V6(dst), 0) else {
                return false;
            };
            let len = wire::IPV6_HEADERS_LEN + icmp.buffer_len();
            cx.emit(len, |buf| {
                wire::build_icmpv6(buf, our_mac, guest_mac, &ip, &icmp).unwrap_or(0)
            })
        }
        _ => return false,
    };
    if sent {
        cx.counters.icmp_errors_to_guest += 1;
    }
    true
}
