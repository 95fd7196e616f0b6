//! pasta's loopback fast path for UDP: datagrams between the host's
//! loopback and the guest namespace's loopback, relayed socket to socket
//! in batches ([`HostIo::udp_recv_batch`] / [`HostIo::udp_send_batch`],
//! `recvmmsg`/`sendmmsg`) without crossing the guest transport.
//!
//! A spliced flow is `(forwarded-port socket, peer)`: the first datagram
//! from a loopback peer on a `-u` port (or from anyone on a `-U` port in
//! the namespace) opens a socket in the other namespace, bound to the
//! loopback (on the peer's own port where that is free, ephemeral
//! otherwise) and connected to the loopback at the target port. Datagrams
//! from the peer leave through it; what comes back on it is sent to the
//! peer from the forwarded-port socket. Flows expire after
//! [`crate::Config::udp_timeout`] idle, or
//! [`crate::Config::udp_timeout_bidir`] once both directions carried
//! traffic, as the engine's other UDP flows do.
//!
//! Flows live in a [`FlowTable`] of kind [`token::UDP_SPLICE`] under the
//! engine's one [`crate::flow::FlowLimit`]. Datagrams a socket does not
//! take (`EAGAIN`, errors) are dropped and counted: UDP may lose them, and
//! nothing is held here. This module never reads the payloads and never
//! names a syscall.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::counters::DropReason;
use crate::ctx::Ctx;
use crate::flow::{FlowTable, token};
use crate::host_io::{HostError, HostIo, Interest, Place, SockId, Token, UdpRecv, UdpSend};
use crate::time::Instant;

/// Datagrams per send batch (one receive batch at most).
const BATCH: usize = super::RX_BATCH;
/// Receive batches relayed per readiness event.
const BATCHES_PER_EVENT: usize = 4;
/// Queued ICMP errors discarded per event (a spliced peer sees no ICMP: the
/// relay socket's error queue is only drained so it does not spin).
const ERRORS_PER_EVENT: usize = 16;

/// One spliced UDP flow.
#[derive(Debug, Clone, Copy)]
struct SpliceFlow {
    /// The forwarded-port socket and its index.
    listener: u32,
    listener_sock: SockId,
    /// The peer that wrote to the forwarded port.
    peer: SocketAddr,
    /// The relay socket in the other namespace.
    sock: SockId,
    last_active: Instant,
    /// Peer -> target carried a datagram.
    forward: bool,
    /// Target -> peer carried a datagram.
    back: bool,
}

/// The spliced UDP flows.
#[derive(Debug)]
pub struct UdpSplices {
    flows: FlowTable<SpliceFlow>,
    by_peer: BTreeMap<(u32, SocketAddr), u32>,
    /// Lower bound of the earliest expiry.
    next_deadline: Option<Instant>,
}

/// A snapshot of one spliced UDP flow, for tests and diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpSpliceInfo {
    /// The peer on the forwarded port's side.
    pub peer: SocketAddr,
    /// Both directions carried traffic.
    pub bidirectional: bool,
}

/// The loopback address of `ip`'s family.
fn loopback_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

impl Default for UdpSplices {
    fn default() -> Self {
        Self::new()
    }
}

impl UdpSplices {
    /// No flows.
    pub fn new() -> Self {
        UdpSplices {
            flows: FlowTable::new(token::UDP_SPLICE),
            by_peer: BTreeMap::new(),
            next_deadline: None,
        }
    }

    /// Live spliced flows.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// No live spliced flow.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Live flows in slot order.
    pub fn iter(&self) -> impl Iterator<Item = UdpSpliceInfo> + '_ {
        self.flows.iter().map(|(_, f)| UdpSpliceInfo {
            peer: f.peer,
            bidirectional: f.forward && f.back,
        })
    }

    /// Relays datagrams `slots` (received on forwarded-port socket
    /// `listener_sock`, index `listener`) to the loopback at `target_port`
    /// in namespace `place`, one send batch per run of datagrams of the
    /// same flow.
    #[allow(clippy::too_many_arguments)]
    pub fn relay_from_listener<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        listener: u32,
        listener_sock: SockId,
        place: Place,
        target_port: u16,
        slots: &[UdpRecv<'_>],
    ) {
        let mut i = 0;
        while i < slots.len() {
            let Some(peer) = slots[i].src else {
                i += 1;
                continue;
            };
            // The run of datagrams from the same peer.
            let mut end = i + 1;
            while end < slots.len() && slots[end].src == Some(peer) {
                end += 1;
            }
            let run = &slots[i..end];
            i = end;
            let slot = match self.by_peer.get(&(listener, peer)) {
                Some(&s) => s,
                None => match self.open(cx, now, listener, listener_sock, peer, place, target_port)
                {
                    Ok(s) => s,
                    Err(reason) => {
                        for _ in run {
                            cx.counters.drop(reason);
                        }
                        continue;
                    }
                },
            };
            let Some(flow) = self.flows.get_mut(slot) else {
                continue;
            };
            flow.last_active = now;
            flow.forward = true;
            let sock = flow.sock;
            let mut msgs: [UdpSend<'_>; BATCH] = [UdpSend {
                dst: None,
                payload: &[],
            }; BATCH];
            let mut n = 0;
            for d in run {
                if d.truncated {
                    cx.counters.drop(DropReason::TooBig);
                    continue;
                }
                msgs[n] = UdpSend {
                    dst: None,
                    payload: &d.buf[..d.len],
                };
                n += 1;
            }
            send_all(cx, sock, &msgs[..n]);
        }
    }

    /// Opens the flow of `peer` on forwarded port `listener`.
    #[allow(clippy::too_many_arguments)]
    fn open<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        listener: u32,
        listener_sock: SockId,
        peer: SocketAddr,
        place: Place,
        target_port: u16,
    ) -> Result<u32, DropReason> {
        let vacant = self
            .flows
            .vacant(cx.flows)
            .map_err(|_| DropReason::FlowTableFull)?;
        let lo = loopback_like(peer.ip());
        // The peer's own port where it is free there, as the target then
        // sees the same source port; ephemeral otherwise.
        let sock = match cx.host.udp_bind_at(place, SocketAddr::new(lo, peer.port())) {
            Ok(s) => Ok(s),
            Err(_) => cx.host.udp_bind_at(place, SocketAddr::new(lo, 0)),
        };
        let sock = match sock {
            Ok(s) => s,
            Err(_) => {
                self.flows.give_back(vacant, cx.flows);
                return Err(DropReason::HostSocketError);
            }
        };
        let tok = vacant.token();
        let ready = cx
            .host
            .udp_connect(sock, SocketAddr::new(lo, target_port))
            .and_then(|()| cx.host.set_interest(sock, tok, Interest::READ));
        if ready.is_err() {
            cx.host.close(sock);
            self.flows.give_back(vacant, cx.flows);
            return Err(DropReason::HostSocketError);
        }
        let slot = vacant.slot();
        self.flows.fill(
            vacant,
            SpliceFlow {
                listener,
                listener_sock,
                peer,
                sock,
                last_active: now,
                forward: false,
                back: false,
            },
            cx.counters,
        );
        self.by_peer.insert((listener, peer), slot);
        let deadline = now + cx.config.udp_timeout;
        self.next_deadline = Some(self.next_deadline.map_or(deadline, |d| d.min(deadline)));
        Ok(slot)
    }

    /// Readiness on a relay socket: what the target sent goes back to the
    /// peer through the forwarded-port socket. `rx` is the receive arena
    /// (`RX_SLOT`-byte slots).
    pub fn on_host_event<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        tok: Token,
        error: bool,
        rx: &mut [u8],
        rx_slot: usize,
    ) {
        let Some(slot) = self.flows.lookup(tok) else {
            return;
        };
        let Some(flow) = self.flows.get(slot).copied() else {
            return;
        };
        if error {
            for _ in 0..ERRORS_PER_EVENT {
                match cx.host.udp_recv_error(flow.sock) {
                    Ok(Some(_)) => cx.counters.drop(DropReason::HostSocketError),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        for _ in 0..BATCHES_PER_EVENT {
            let mut chunks = rx.chunks_mut(rx_slot);
            let mut slots: [UdpRecv<'_>; BATCH] =
                std::array::from_fn(|_| UdpRecv::new(chunks.next().unwrap_or_default()));
            let got = match cx.host.udp_recv_batch(flow.sock, &mut slots) {
                Ok(n) => n,
                Err(HostError::WouldBlock) => break,
                Err(_) => {
                    // An ICMP error consumed by the read (the target's port
                    // is closed): its report waits in the error queue.
                    let _ = cx.host.udp_recv_error(flow.sock);
                    cx.counters.drop(DropReason::HostSocketError);
                    continue;
                }
            };
            let mut msgs: [UdpSend<'_>; BATCH] = [UdpSend {
                dst: None,
                payload: &[],
            }; BATCH];
            let mut n = 0;
            for d in &slots[..got.min(BATCH)] {
                if d.truncated {
                    cx.counters.drop(DropReason::TooBig);
                    continue;
                }
                msgs[n] = UdpSend {
                    dst: Some(flow.peer),
                    payload: &d.buf[..d.len],
                };
                n += 1;
            }
            send_all(cx, flow.listener_sock, &msgs[..n]);
            if let Some(f) = self.flows.get_mut(slot) {
                f.last_active = now;
                f.back = true;
            }
            if got < BATCH {
                break;
            }
        }
    }

    fn remove<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, slot: u32) {
        if let Some(f) = self.flows.remove(slot, cx.flows, cx.counters) {
            self.by_peer.remove(&(f.listener, f.peer));
            cx.host.close(f.sock);
        }
    }

    /// Whether a flow uses the socket of forwarded port `listener`.
    pub fn uses_listener(&self, listener: u32) -> bool {
        self.by_peer.keys().any(|(l, _)| *l == listener)
    }

    /// Next expiry, if any flow lives.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_deadline
    }

    /// Closes flows idle past their timeout.
    pub fn handle_timeout<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, now: Instant) {
        match self.next_deadline {
            Some(d) if d <= now => {}
            _ => return,
        }
        let (oneway, bidir) = (cx.config.udp_timeout, cx.config.udp_timeout_bidir);
        let mut next: Option<Instant> = None;
        for i in 0..self.flows.slot_count() {
            let Some(f) = self.flows.get(i) else {
                continue;
            };
            let timeout = if f.forward && f.back { bidir } else { oneway };
            let deadline = f.last_active + timeout;
            if deadline <= now {
                self.remove(cx, i);
            } else {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
        }
        self.next_deadline = next;
    }
}

/// Sends `msgs` on `sock` in as few batches as the socket takes; what it
/// does not take is dropped and counted (UDP may lose datagrams).
fn send_all<H: HostIo>(cx: &mut Ctx<'_, H>, sock: SockId, msgs: &[UdpSend<'_>]) {
    let mut sent = 0;
    while sent < msgs.len() {
        match cx.host.udp_send_batch(sock, &msgs[sent..]) {
            Ok(0) | Err(HostError::WouldBlock) => break,
            Ok(n) => {
                cx.counters.udp_splice_datagrams += n as u64;
                sent += n;
            }
            Err(_) => {
                // This datagram failed; the rest may still go.
                cx.counters.drop(DropReason::HostSocketError);
                sent += 1;
            }
        }
    }
    for _ in sent..msgs.len() {
        cx.counters.drop(DropReason::HostSocketError);
    }
}
