//! ICMP/ICMPv6 echo translation through unprivileged ping sockets.
//!
//! What this module owns: echo flows, one per `(guest address, address
//! pinged, guest identifier)`. The first echo request of a flow opens a
//! ping socket ([`HostIo::ping_open`], `SOCK_DGRAM` + `IPPROTO_ICMP` /
//! `IPPROTO_ICMPV6`) asking for the guest's identifier as the socket's
//! "port"; the kernel writes the bound port into every request as the
//! identifier, so when it had to pick another one the replies carry that
//! one, and this module puts the guest's identifier back (RFC 792 echo: the
//! replier copies identifier and sequence; RFC 4443 §4.1-4.2). Sequence
//! numbers and data pass through untouched. The destination goes through
//! [`crate::mapping::host_destination`] (the gateway reaches the host's
//! loopback). Flows close after [`crate::Config::icmp_timeout`] without
//! requests.
//!
//! When the host forbids ping sockets (`net.ipv4.ping_group_range` does
//! not include our group) the request is dropped, counted under
//! [`DropReason::HostSocketError`] and in
//! [`crate::Counters::ping_not_permitted`]; the binary prints
//! [`PING_NOT_PERMITTED_WARNING`] once when that counter first becomes
//! non-zero (the engine has no logger).
//!
//! Echo requests it cannot forward (a full flow table, a host that cannot
//! reach the destination) are refused through [`crate::refusal`].
//!
//! What it must never do: open raw sockets, name a syscall, or read a clock.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::counters::DropReason;
use crate::ctx::{Ctx, HOP_LIMIT_TO_GUEST};
use crate::flow::{FlowTable, token};
use crate::host_io::{Family, HostError, HostIo, Interest, Readiness, SockId, Token};
use crate::mapping;
use crate::refusal::{Refusal, RefusalLimiter, refuse};
use crate::time::Instant;
use crate::wire::{self, Icmpv4Repr, Icmpv6Repr, Ipv4Repr, Ipv6Repr, icmpv4, icmpv6, protocol};

/// The warning the binary prints (once) when ping sockets are refused.
pub const PING_NOT_PERMITTED_WARNING: &str = "ICMP echo (ping) not available: the host does not allow ping sockets for our group (see sysctl net.ipv4.ping_group_range); echo requests from the guest are dropped";

/// Largest ICMP message we read from a ping socket.
const RX_LEN: usize = 65536;
/// Replies read per readiness event.
const REPLIES_PER_EVENT: usize = 64;

#[derive(Debug, Clone, Copy)]
struct EchoFlow {
    /// The guest's address.
    guest: IpAddr,
    /// The address the guest pinged.
    guest_peer: IpAddr,
    /// Where the requests go on the host.
    host_dst: IpAddr,
    /// The guest's identifier.
    ident: u16,
    sock: SockId,
    last_active: Instant,
}

/// Echo flows through host ping sockets.
#[derive(Debug)]
pub struct Icmp {
    flows: FlowTable<EchoFlow>,
    by_guest: BTreeMap<(IpAddr, IpAddr, u16), u32>,
    next_deadline: Option<Instant>,
    buf: Box<[u8]>,
    limiter: RefusalLimiter,
}

impl Default for Icmp {
    fn default() -> Self {
        Self::new()
    }
}

impl Icmp {
    /// An empty module with its receive buffer allocated (its flows count
    /// against [`crate::Config::flow_capacity`]).
    pub fn new() -> Self {
        Icmp {
            flows: FlowTable::new(token::ICMP_FLOW),
            by_guest: BTreeMap::new(),
            next_deadline: None,
            buf: vec![0u8; RX_LEN].into_boxed_slice(),
            limiter: RefusalLimiter::default(),
        }
    }

    /// Number of live echo flows.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// An echo request from the guest.
    #[allow(clippy::too_many_arguments)]
    pub fn on_echo_request<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        ident: u16,
        seq_no: u16,
        data: &[u8],
    ) -> Result<(), DropReason> {
        if !cx.config.services.icmp {
            return Err(DropReason::ServiceDisabled);
        }
        if crate::addr::guest_may_not_address(dst) {
            return Err(DropReason::NotForUs);
        }
        let index = match self.by_guest.get(&(src, dst, ident)) {
            Some(&i) => i,
            None => match self.open(cx, now, src, dst, ident) {
                Ok(i) => i,
                Err((reason, refusal)) => {
                    // A full table, or no descriptor left, refuses the new
                    // flow cleanly (docs/architecture.md, the flow table):
                    // the guest hears why.
                    if let Some(refusal) = refusal {
                        self.refuse_request(
                            cx,
                            now,
                            refusal,
                            (src, dst, ident, seq_no),
                            data.len(),
                        );
                    }
                    return Err(reason);
                }
            },
        };
        let flow = self.flows.get_mut(index).ok_or(DropReason::Malformed)?;
        // The message as on the wire; the kernel fills in identifier and
        // checksum (ping sockets, see icmp(7)).
        let msg_len = wire::icmpv4::HEADER_LEN + data.len();
        let msg = self.buf.get_mut(..msg_len).ok_or(DropReason::TooBig)?;
        let written = match dst {
            IpAddr::V4(_) => Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }
            .emit(msg),
            IpAddr::V6(_) => {
                msg[0] = icmpv6::msg_type::ECHO_REQUEST;
                msg[1] = 0;
                msg[2..4].copy_from_slice(&[0, 0]);
                msg[4..6].copy_from_slice(&ident.to_be_bytes());
                msg[6..8].copy_from_slice(&seq_no.to_be_bytes());
                msg[8..].copy_from_slice(data);
                Ok(())
            }
        };
        written.map_err(|_| DropReason::Malformed)?;
        if let Err(e) = cx.host.ping_send(flow.sock, flow.host_dst, msg) {
            if let Some(refusal) = Refusal::from_host_error(e) {
                self.refuse_request(cx, now, refusal, (src, dst, ident, seq_no), data.len());
            }
            return Err(DropReason::HostSocketError);
        }
        flow.last_active = now;
        cx.counters.echo_requests_sent += 1;
        Ok(())
    }

    /// Refuses the echo request `(src, dst, ident, seq_no)` carrying
    /// `data_len` bytes of data with a destination unreachable.
    fn refuse_request<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        refusal: Refusal,
        (src, dst, ident, seq_no): (IpAddr, IpAddr, u16, u16),
        data_len: usize,
    ) {
        let mut quoted = [0u8; 48];
        if let Some(n) = quote_echo_request(src, dst, ident, seq_no, data_len, &mut quoted) {
            refuse(cx, &mut self.limiter, now, refusal, src, dst, &quoted[..n]);
        }
    }

    fn open<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        guest: IpAddr,
        guest_peer: IpAddr,
        ident: u16,
    ) -> Result<u32, (DropReason, Option<Refusal>)> {
        let vacant = self
            .flows
            .vacant(cx.flows)
            .map_err(|_| (DropReason::FlowTableFull, Some(Refusal::AdminProhibited)))?;
        let host_dst = mapping::host_destination(cx.config, guest_peer);
        // -o / --outbound-if4/6 (docs/cli.md).
        let (place, local) = cx.config.outbound.bind_for(host_dst, 0);
        let family = Family::of(&host_dst);
        let sock = match cx
            .host
            .ping_open_at(place, family, ident, local.map(|l| l.ip()))
        {
            Ok(s) => s,
            Err(e) => {
                self.flows.give_back(vacant, cx.flows);
                if e == HostError::PermissionDenied {
                    cx.counters.ping_not_permitted += 1;
                }
                // Out of descriptors: refused like a full table.
                let refusal = (e == HostError::NoResources).then_some(Refusal::AdminProhibited);
                return Err((DropReason::HostSocketError, refusal));
            }
        };
        if cx
            .host
            .set_interest(sock, vacant.token(), Interest::READ)
            .is_err()
        {
            cx.host.close(sock);
            self.flows.give_back(vacant, cx.flows);
            return Err((DropReason::HostSocketError, None));
        }
        let flow = EchoFlow {
            guest,
            guest_peer,
            host_dst,
            ident,
            sock,
            last_active: now,
        };
        let index = self.flows.fill(vacant, flow, cx.counters);
        self.by_guest.insert((guest, guest_peer, ident), index);
        let deadline = now + cx.config.icmp_timeout;
        self.next_deadline = Some(self.next_deadline.map_or(deadline, |d| d.min(deadline)));
        Ok(index)
    }

    /// Readiness on one of this module's sockets: echo replies to relay.
    pub fn on_host_event<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        _now: Instant,
        token: Token,
        _readiness: Readiness,
    ) {
        // `None`: a late event for a freed flow.
        let Some(flow) = self.flows.lookup(token).and_then(|i| self.flows.get(i)) else {
            return;
        };
        let flow = *flow;
        for _ in 0..REPLIES_PER_EVENT {
            if cx.tx_room() == 0 {
                // Backpressure: the replies wait in the socket for room.
                break;
            }
            let (len, _from) = match cx.host.ping_recv(flow.sock, &mut self.buf) {
                Ok(r) => r,
                Err(HostError::WouldBlock) => break,
                Err(_) => {
                    // An error queued on the socket (e.g. an unreachable):
                    // take it off so readiness stops reporting it.
                    let _ = cx.host.udp_recv_error(flow.sock);
                    break;
                }
            };
            if let Err(reason) = relay_reply(cx, &flow, &self.buf[..len]) {
                cx.counters.drop(reason);
            }
        }
    }

    /// Next timer deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_deadline
    }

    /// Closes echo flows idle for [`crate::Config::icmp_timeout`].
    pub fn handle_timeout<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, now: Instant) {
        match self.next_deadline {
            Some(d) if d <= now => {}
            _ => return,
        }
        let timeout = cx.config.icmp_timeout;
        let mut next: Option<Instant> = None;
        for i in 0..self.flows.slot_count() {
            let Some(&f) = self.flows.get(i) else {
                continue;
            };
            let deadline = f.last_active + timeout;
            if deadline <= now {
                self.flows.remove(i, cx.flows, cx.counters);
                self.by_guest.remove(&(f.guest, f.guest_peer, f.ident));
                cx.host.close(f.sock);
            } else {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
        }
        self.next_deadline = next;
    }
}

/// Writes the echo reply in `msg` (as read from the ping socket) to the
/// guest with the guest's identifier.
fn relay_reply<H: HostIo>(
    cx: &mut Ctx<'_, H>,
    flow: &EchoFlow,
    msg: &[u8],
) -> Result<(), DropReason> {
    if msg.len() < icmpv4::HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let seq_no = u16::from_be_bytes([msg[6], msg[7]]);
    let data = &msg[icmpv4::HEADER_LEN..];
    let (our_mac, guest_mac) = (cx.config.our_mac, cx.guest.dst_mac());
    let mtu = usize::from(cx.config.mtu);
    let sent = match (flow.guest_peer, flow.guest) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            if msg[0] != icmpv4::msg_type::ECHO_REPLY {
                return Err(DropReason::UnsupportedProtocol);
            }
            let icmp = Icmpv4Repr::EchoReply {
                ident: flow.ident,
                seq_no,
                data,
            };
            if wire::ipv4::MIN_HEADER_LEN + icmp.buffer_len() > mtu {
                return Err(DropReason::TooBig);
            }
            let ip = Ipv4Repr::new(src, dst, protocol::ICMP, HOP_LIMIT_TO_GUEST);
            cx.emit(wire::IPV4_HEADERS_LEN + icmp.buffer_len(), |buf| {
                wire::build_icmpv4(buf, our_mac, guest_mac, &ip, &icmp).unwrap_or(0)
            })
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            if msg[0] != icmpv6::msg_type::ECHO_REPLY {
                return Err(DropReason::UnsupportedProtocol);
            }
            let icmp = Icmpv6Repr::EchoReply {
                ident: flow.ident,
                seq_no,
                data,
            };
            if wire::ipv6::HEADER_LEN + icmp.buffer_len() > mtu {
                return Err(DropReason::TooBig);
            }
            let ip = Ipv6Repr::new(src, dst, protocol::ICMPV6, HOP_LIMIT_TO_GUEST);
            cx.emit(wire::IPV6_HEADERS_LEN + icmp.buffer_len(), |buf| {
                wire::build_icmpv6(buf, our_mac, guest_mac, &ip, &icmp).unwrap_or(0)
            })
        }
        _ => return Err(DropReason::Unmappable),
    };
    if sent {
        cx.counters.echo_replies_to_guest += 1;
    }
    Ok(())
}

/// Writes the start of the guest's echo request (IP header, then the
/// 8-byte ICMP header with its checksum left zero) into `out`; returns
/// its length.
fn quote_echo_request(
    src: IpAddr,
    dst: IpAddr,
    ident: u16,
    seq_no: u16,
    data_len: usize,
    out: &mut [u8; 48],
) -> Option<usize> {
    let icmp_len = icmpv4::HEADER_LEN + data_len;
    let (ip_len, echo_type) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            Ipv4Repr {
                payload_len: icmp_len,
                ..Ipv4Repr::new(s, d, protocol::ICMP, HOP_LIMIT_TO_GUEST)
            }
            .emit(&mut out[..])
            .ok()?;
            (wire::ipv4::MIN_HEADER_LEN, icmpv4::msg_type::ECHO_REQUEST)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            Ipv6Repr {
                payload_len: icmp_len,
                ..Ipv6Repr::new(s, d, protocol::ICMPV6, HOP_LIMIT_TO_GUEST)
            }
            .emit(&mut out[..])
            .ok()?;
            (wire::ipv6::HEADER_LEN, icmpv6::msg_type::ECHO_REQUEST)
        }
        _ => return None,
    };
    let h = out.get_mut(ip_len..ip_len + icmpv4::HEADER_LEN)?;
    h[0] = echo_type;
    h[1] = 0;
    h[2..4].copy_from_slice(&[0, 0]);
    h[4..6].copy_from_slice(&ident.to_be_bytes());
    h[6..8].copy_from_slice(&seq_no.to_be_bytes());
    Some(ip_len + icmpv4::HEADER_LEN)
}
