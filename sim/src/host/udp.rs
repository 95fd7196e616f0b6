//! UDP and ping sockets: datagrams over the simulated internet, ICMP
//! errors into per-socket error queues, echo replies from remote hosts.
//!
//! A datagram to an address where nothing is bound draws ICMP port
//! unreachable (RFC 792 type 3 code 3; RFC 4443 type 1 code 4) from the
//! destination; with `IP_RECVERR` on (as `HostIo::udp_bind` promises), the
//! kernel both sets `SO_ERROR` (the next receive fails with
//! `ECONNREFUSED`) and queues the details on the error queue.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use passt_engine::HostError;
use passt_engine::host_io::{Family, IcmpErrorReport, UdpRecv};

use passt_engine::Netns;

use super::{
    Dgram, ERRQ_MAX, Endpoint, EpId, EpKind, Ev, Ping, Proto, Reach, Side, SimHost, UDP_BATCH,
    UDP_MAX_V4, UDP_MAX_V6, arrival, unspecified,
};

/// `EDESTADDRREQ`: send on an unconnected socket without a destination.
const EDESTADDRREQ: i32 = 89;
/// `EINVAL`.
const EINVAL: i32 = 22;
/// IP + UDP headers counted when serializing.
const UDP_HEADER: usize = 28;

fn max_payload(ip: IpAddr) -> usize {
    if ip.is_ipv4() { UDP_MAX_V4 } else { UDP_MAX_V6 }
}

/// RFC 1071 Internet checksum of `data` (folded, complemented), with an
/// optional starting sum (pseudo-header).
pub(crate) fn inet_checksum(data: &[u8], start: u32) -> u16 {
    let mut sum = start;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [b] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*b) << 8);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The ICMPv6 pseudo-header sum (RFC 8200 §8.1).
fn v6_pseudo_sum(src: IpAddr, dst: IpAddr, len: usize) -> u32 {
    let mut sum = 0u32;
    for ip in [src, dst] {
        if let IpAddr::V6(v) = ip {
            for w in v.segments() {
                sum = sum.wrapping_add(u32::from(w));
            }
        }
    }
    sum = sum.wrapping_add(len as u32);
    sum.wrapping_add(58)
}

impl SimHost {
    /// `socket(SOCK_DGRAM)` + `bind`.
    pub(crate) fn udp_bind_ep(
        &mut self,
        ns: Netns,
        side: Side,
        local: SocketAddr,
    ) -> Result<EpId, HostError> {
        if side == Side::Host || ns == Netns::Guest {
            if !self.can_bind_in(ns, local.ip()) {
                return Err(HostError::AddrNotAvailable);
            }
            if local.port() != 0 && local.port() < self.cfg.unprivileged_port_start {
                return Err(HostError::PermissionDenied);
            }
        }
        let port = self.choose_port(
            ns,
            Proto::Udp,
            local.ip(),
            local.port(),
            HostError::AddrInUse,
        )?;
        let rcvbuf = self.cfg.udp_recv_buf;
        let ep = self.alloc_ep(Endpoint {
            side,
            ns,
            local: SocketAddr::new(local.ip(), port),
            handle_open: true,
            kind: EpKind::Udp(Dgram {
                connected: None,
                rxq: VecDeque::new(),
                rx_bytes: 0,
                rcvbuf,
                errq: VecDeque::new(),
                so_error: None,
            }),
        });
        self.binds.insert((ns, Proto::Udp, local.ip(), port), ep);
        Ok(ep)
    }

    fn dgram_mut(&mut self, ep: EpId) -> Result<&mut Dgram, HostError> {
        match self.eps.get_mut(&ep).map(|e| &mut e.kind) {
            Some(EpKind::Udp(u)) => Ok(u),
            _ => Err(HostError::BadSocket),
        }
    }

    /// `connect` on a UDP socket: filters senders, fixes the source IP.
    pub(crate) fn udp_connect_ep(&mut self, ep: EpId, remote: SocketAddr) -> Result<(), HostError> {
        let local = self.eps.get(&ep).ok_or(HostError::BadSocket)?.local;
        let ns = self.ns_of(ep);
        if local.is_ipv4() != remote.is_ipv4() {
            return Err(HostError::Unsupported);
        }
        if self.reach_of_dgram(ns, remote.ip()) == Reach::NoRoute {
            return Err(HostError::NetworkUnreachable);
        }
        let src = if local.ip().is_unspecified() {
            Some(self.source_ip_in(ns, remote.ip())?)
        } else {
            None
        };
        self.dgram_mut(ep)?.connected = Some(remote);
        if let (Some(ip), Some(e)) = (src, self.eps.get_mut(&ep)) {
            // inet_datagram_connect(): the socket takes the route's source.
            e.local = SocketAddr::new(ip, e.local.port());
        }
        Ok(())
    }

    fn reach_of_dgram(&self, ns: Netns, ip: IpAddr) -> Reach {
        if self.is_local_in(ns, ip) || ip.is_unspecified() {
            Reach::Reachable
        } else if ns == Netns::Guest {
            Reach::NoRoute
        } else {
            self.profile(ip).reach
        }
    }

    /// Sends one datagram from `ep` (source `from`) to `dst`.
    fn emit_datagram(
        &mut self,
        from_ep: Option<EpId>,
        from: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) {
        let now = self.now();
        let ns = from_ep.map_or(Netns::Host, |e| self.ns_of(e));
        let path = self.path_between(from.ip(), dst.ip());
        match self.reach_of_dgram(ns, dst.ip()) {
            Reach::Reachable => {
                // Datagrams between two hosts share one FIFO wire.
                let busy = self.wire_busy.entry((from.ip(), dst.ip())).or_insert(now);
                let depart =
                    (*busy).max(now) + path.link.serialization_delay(payload.len() + UDP_HEADER);
                *busy = depart;
                self.sched.schedule(
                    depart + path.link.latency,
                    Ev::Datagram {
                        ns,
                        to: dst,
                        from,
                        from_ep,
                        payload: payload.to_vec(),
                    },
                );
            }
            Reach::HostUnreachable => {
                if let Some(ep) = from_ep {
                    let (icmp_type, icmp_code) = if dst.is_ipv4() { (3, 1) } else { (1, 3) };
                    self.stats.icmp_errors += 1;
                    self.sched.schedule(
                        now + path.link.latency + path.link.latency,
                        Ev::Icmp {
                            to: ep,
                            report: IcmpErrorReport {
                                origin: Some(dst.ip()),
                                dst,
                                icmp_type,
                                icmp_code,
                                info: 0,
                                error: HostError::HostUnreachable,
                                payload_len: Some(payload.len()),
                            },
                        },
                    );
                }
            }
            Reach::Blackhole | Reach::NoRoute => self.stats.udp_dropped += 1,
        }
    }

    /// `sendmmsg`: see `HostIo::udp_send_batch`.
    pub(crate) fn udp_send_ep(
        &mut self,
        ep: EpId,
        msgs: &[passt_engine::host_io::UdpSend<'_>],
    ) -> Result<usize, HostError> {
        let e = self.eps.get(&ep).ok_or(HostError::BadSocket)?;
        let local = e.local;
        let side = e.side;
        let ns = e.ns;
        let EpKind::Udp(u) = &e.kind else {
            return Err(HostError::BadSocket);
        };
        let connected = u.connected;
        let mut sent = 0;
        for m in msgs.iter().take(UDP_BATCH) {
            let step = (|| {
                let dst = m.dst.or(connected).ok_or(HostError::Other(EDESTADDRREQ))?;
                if dst.is_ipv4() != local.is_ipv4() {
                    return Err(HostError::Unsupported);
                }
                if m.payload.len() > max_payload(dst.ip()) {
                    return Err(HostError::MessageTooLong);
                }
                if self.reach_of_dgram(ns, dst.ip()) == Reach::NoRoute {
                    return Err(HostError::NetworkUnreachable);
                }
                let src_ip = if local.ip().is_unspecified() {
                    match side {
                        Side::Host => self.source_ip_in(ns, dst.ip())?,
                        Side::Remote => local.ip(),
                    }
                } else {
                    local.ip()
                };
                Ok((dst, SocketAddr::new(src_ip, local.port())))
            })();
            match step {
                Ok((dst, src)) => {
                    self.emit_datagram(Some(ep), src, dst, m.payload);
                    sent += 1;
                }
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(sent)
    }

    /// `recvmmsg`: see `HostIo::udp_recv_batch`.
    pub(crate) fn udp_recv_ep(
        &mut self,
        ep: EpId,
        slots: &mut [UdpRecv<'_>],
    ) -> Result<usize, HostError> {
        let u = self.dgram_mut(ep)?;
        if slots.is_empty() {
            return Ok(0);
        }
        // __skb_recv_udp(): a pending error comes first.
        if let Some(e) = u.so_error.take() {
            return Err(e);
        }
        if u.rxq.is_empty() {
            return Err(HostError::WouldBlock);
        }
        let mut n = 0;
        for slot in slots.iter_mut().take(UDP_BATCH) {
            let Some((src, payload)) = u.rxq.pop_front() else {
                break;
            };
            u.rx_bytes -= payload.len();
            let len = payload.len().min(slot.buf.len());
            slot.buf[..len].copy_from_slice(&payload[..len]);
            slot.len = len;
            slot.truncated = payload.len() > slot.buf.len();
            slot.src = Some(src);
            n += 1;
        }
        Ok(n)
    }

    /// `recvmsg(MSG_ERRQUEUE)` on a UDP or ping socket.
    pub(crate) fn recv_error_ep(&mut self, ep: EpId) -> Result<Option<IcmpErrorReport>, HostError> {
        match self.eps.get_mut(&ep).map(|e| &mut e.kind) {
            Some(EpKind::Udp(u)) => Ok(u.errq.pop_front()),
            Some(EpKind::Ping(p)) => Ok(p.errq.pop_front()),
            _ => Err(HostError::BadSocket),
        }
    }

    pub(crate) fn on_datagram(
        &mut self,
        ns: Netns,
        to: SocketAddr,
        from: SocketAddr,
        from_ep: Option<EpId>,
        payload: Vec<u8>,
    ) {
        // Datagram services live in the host's namespace.
        if let Some(mut app) = self.dgram_apps.remove(&to).filter(|_| ns == Netns::Host) {
            let mut replies = Vec::new();
            app.on_datagram(self.now(), from, to, &payload, &mut replies);
            self.dgram_apps.insert(to, app);
            for r in replies {
                self.emit_datagram(None, to, from, &r);
            }
            return;
        }
        // A connected socket only matches its peer (the lookup scores it
        // out otherwise), which makes the port look closed.
        let target = self.lookup(ns, Proto::Udp, to).filter(|ep| {
            matches!(self.eps.get(ep).map(|e| &e.kind),
                Some(EpKind::Udp(u)) if u.connected.is_none_or(|c| c == from))
        });
        match target {
            Some(ep) => {
                let Ok(u) = self.dgram_mut(ep) else { return };
                if u.rx_bytes + payload.len() > u.rcvbuf {
                    self.stats.udp_dropped += 1;
                    return;
                }
                u.rx_bytes += payload.len();
                u.rxq.push_back((from, payload));
                self.dirty.insert(ep);
            }
            None => {
                let Some(ep) = from_ep else {
                    self.stats.udp_dropped += 1;
                    return;
                };
                let (icmp_type, icmp_code) = if to.is_ipv4() { (3, 3) } else { (1, 4) };
                self.stats.icmp_errors += 1;
                let lat = self.path_between(from.ip(), to.ip()).link.latency;
                let at = self.now() + lat;
                self.sched.schedule(
                    at,
                    Ev::Icmp {
                        to: ep,
                        report: IcmpErrorReport {
                            origin: Some(to.ip()),
                            dst: to,
                            icmp_type,
                            icmp_code,
                            info: 0,
                            error: HostError::ConnectionRefused,
                            payload_len: Some(payload.len()),
                        },
                    },
                );
            }
        }
    }

    pub(crate) fn on_icmp(&mut self, to: EpId, report: IcmpErrorReport) {
        let (errq, so_error) = match self.eps.get_mut(&to).map(|e| &mut e.kind) {
            Some(EpKind::Udp(u)) => (&mut u.errq, &mut u.so_error),
            Some(EpKind::Ping(p)) => (&mut p.errq, &mut p.so_error),
            _ => return,
        };
        if errq.len() < ERRQ_MAX {
            errq.push_back(report);
        }
        *so_error = Some(report.error);
        self.dirty.insert(to);
    }

    // ----- ping -----

    /// `socket(IPPROTO_ICMP)` + `bind` to the echo id.
    pub(crate) fn ping_open_ep(&mut self, family: Family, id: u16) -> Result<EpId, HostError> {
        if !self.cfg.ping_allowed {
            return Err(HostError::PermissionDenied);
        }
        let any = unspecified(family);
        let id = if id != 0 && !self.bind_conflict(Netns::Host, Proto::Ping, any, id) {
            id
        } else {
            self.ephemeral_port(Netns::Host, Proto::Ping, any)
                .ok_or(HostError::AddrInUse)?
        };
        let rcvbuf = self.cfg.udp_recv_buf;
        let ep = self.alloc_ep(Endpoint {
            side: Side::Host,
            ns: Netns::Host,
            local: SocketAddr::new(any, id),
            handle_open: true,
            kind: EpKind::Ping(Ping {
                family,
                id,
                rxq: VecDeque::new(),
                rx_bytes: 0,
                rcvbuf,
                errq: VecDeque::new(),
                so_error: None,
            }),
        });
        self.binds.insert((Netns::Host, Proto::Ping, any, id), ep);
        Ok(ep)
    }

    /// Sends an echo request; the reply (if the destination answers) comes
    /// back after a round trip.
    pub(crate) fn ping_send_ep(
        &mut self,
        ep: EpId,
        dst: IpAddr,
        msg: &[u8],
    ) -> Result<(), HostError> {
        let (family, id) = match self.eps.get(&ep).map(|e| &e.kind) {
            Some(EpKind::Ping(p)) => (p.family, p.id),
            _ => return Err(HostError::BadSocket),
        };
        if Family::of(&dst) != family {
            return Err(HostError::Unsupported);
        }
        // ping_v4_sendmsg()/ping_v6_sendmsg(): an echo request with code 0.
        let request = if family == Family::V4 { 8 } else { 128 };
        if msg.len() < 8 || msg[0] != request || msg[1] != 0 {
            return Err(HostError::Other(EINVAL));
        }
        if msg.len() > max_payload(dst) {
            return Err(HostError::MessageTooLong);
        }
        let reach = self.reach_of_dgram(Netns::Host, dst);
        if reach == Reach::NoRoute {
            return Err(HostError::NetworkUnreachable);
        }
        let src = self.source_ip_for(dst)?;
        let path = self.path_between(src, dst);
        let now = self.now();
        match reach {
            Reach::Reachable if self.profile(dst).answers_ping || self.is_local_ip(dst) => {
                // RFC 792 / RFC 4443 §4.2: the reply echoes id, sequence
                // and data.
                let mut reply = msg.to_vec();
                reply[0] = if family == Family::V4 { 0 } else { 129 };
                reply[4..6].copy_from_slice(&id.to_be_bytes());
                reply[2] = 0;
                reply[3] = 0;
                let start = if family == Family::V4 {
                    0
                } else {
                    v6_pseudo_sum(dst, src, reply.len())
                };
                let ck = inet_checksum(&reply, start);
                reply[2..4].copy_from_slice(&ck.to_be_bytes());
                let there = arrival(&path.link, now, msg.len() + UDP_HEADER);
                let back = arrival(&path.link, there, msg.len() + UDP_HEADER);
                self.sched.schedule(
                    back,
                    Ev::PingReply {
                        to: ep,
                        from: dst,
                        msg: reply,
                    },
                );
            }
            Reach::HostUnreachable => {
                let (icmp_type, icmp_code) = if family == Family::V4 { (3, 1) } else { (1, 3) };
                self.stats.icmp_errors += 1;
                self.sched.schedule(
                    now + path.link.latency + path.link.latency,
                    Ev::Icmp {
                        to: ep,
                        report: IcmpErrorReport {
                            origin: Some(dst),
                            dst: SocketAddr::new(dst, 0),
                            icmp_type,
                            icmp_code,
                            info: 0,
                            error: HostError::HostUnreachable,
                            payload_len: None,
                        },
                    },
                );
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn on_ping_reply(&mut self, to: EpId, from: IpAddr, msg: Vec<u8>) {
        if let Some(EpKind::Ping(p)) = self.eps.get_mut(&to).map(|e| &mut e.kind) {
            if p.rx_bytes + msg.len() <= p.rcvbuf {
                p.rx_bytes += msg.len();
                p.rxq.push_back((from, msg));
                self.dirty.insert(to);
            } else {
                self.stats.udp_dropped += 1;
            }
        }
    }

    /// Receives one echo reply.
    pub(crate) fn ping_recv_ep(
        &mut self,
        ep: EpId,
        buf: &mut [u8],
    ) -> Result<(usize, IpAddr), HostError> {
        let Some(EpKind::Ping(p)) = self.eps.get_mut(&ep).map(|e| &mut e.kind) else {
            return Err(HostError::BadSocket);
        };
        if let Some(e) = p.so_error.take() {
            return Err(e);
        }
        let (src, msg) = p.rxq.pop_front().ok_or(HostError::WouldBlock)?;
        p.rx_bytes -= msg.len();
        let n = msg.len().min(buf.len());
        buf[..n].copy_from_slice(&msg[..n]);
        Ok((n, src))
    }
}
