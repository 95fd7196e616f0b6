//! The TCP model: handshake, byte pipes with windows and ACKs, FIN, RST,
//! and the socket calls shared by host sockets and remote programs.
//!
//! Segments never get lost or reordered (each direction of a connection is
//! FIFO: constant latency, serialization in send order), so there is no
//! retransmission except for SYNs (to model `ETIMEDOUT` and backlog
//! overflow). The receiver ACKs every segment, carrying its free buffer
//! space as the window (RFC 9293 §3.8.6); the sender never has more than
//! that window in flight, so a receive queue never overflows. A window
//! update is sent when the program consumes enough to open the window by
//! `min(MSS, rcvbuf / 2)` or empties the queue (receiver-side silly window
//! avoidance, RFC 9293 §3.8.6.2.2).

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use passt_engine::host_io::{Peeked, Shutdown};
use passt_engine::{HostError, Instant};

use passt_engine::Netns;

use super::{
    Endpoint, EpId, EpKind, Ev, Listener, Path, Proto, Reach, Side, SimHost, Stream, TcpState,
    arrival,
};

/// Header bytes counted when serializing a segment.
const HEADER: usize = 40;

fn new_stream(
    state: TcpState,
    remote: SocketAddr,
    path: Path,
    sndbuf: usize,
    rcvbuf: usize,
    now: Instant,
) -> Stream {
    Stream {
        state,
        remote,
        peer: None,
        listener: None,
        path,
        busy_until: now,
        sndq: VecDeque::new(),
        sndbuf: sndbuf.max(1),
        snd_una: 0,
        snd_nxt: 0,
        snd_wnd: 0,
        wr_shut: false,
        fin_sent: false,
        fin_acked: false,
        rcvq: VecDeque::new(),
        rcvbuf: rcvbuf.max(1),
        rcv_nxt: 0,
        rcv_fin: false,
        rd_shut: false,
        adv_edge: rcvbuf as u64,
        so_error: None,
        orphan: false,
        syn_sent_at: now,
        srtt_us: 0,
        rtt_probe: None,
        nodelay: false,
        fault_bytes: 0,
    }
}

/// Copies `q[start..start + out.len()]` into `out`, a contiguous piece at a
/// time (a byte-wise iterator over a `VecDeque` range does not vectorize).
/// The range must be inside `q`.
fn copy_out(q: &VecDeque<u8>, start: usize, out: &mut [u8]) {
    let (a, b) = q.as_slices();
    let end = start + out.len();
    if start < a.len() {
        let from_a = end.min(a.len()) - start;
        out[..from_a].copy_from_slice(&a[start..start + from_a]);
        out[from_a..].copy_from_slice(&b[..end - start - from_a]);
    } else {
        out.copy_from_slice(&b[start - a.len()..end - a.len()]);
    }
}

fn wnd32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn rtt_update(srtt_us: &mut u32, sample: Duration) {
    // RFC 6298 §2.2/2.3: SRTT = R first, then 7/8 SRTT + 1/8 R.
    let r = u32::try_from(sample.as_micros()).unwrap_or(u32::MAX).max(1);
    *srtt_us = if *srtt_us == 0 {
        r
    } else {
        ((u64::from(*srtt_us) * 7 + u64::from(r)) / 8) as u32
    };
}

impl SimHost {
    fn bufs_for(&self, side: Side, ip: std::net::IpAddr) -> (usize, usize) {
        match side {
            Side::Host => (self.cfg.send_buf, self.cfg.recv_buf),
            Side::Remote => {
                let p = self.profile(ip);
                (p.send_buf, p.recv_buf)
            }
        }
    }

    /// Reachability of `dst` from namespace `ns` (the guest namespace
    /// has no route beyond its loopback).
    fn reach_of(&self, ns: Netns, dst: std::net::IpAddr) -> Reach {
        if self.is_local_in(ns, dst) {
            Reach::Reachable
        } else if ns == Netns::Guest {
            Reach::NoRoute
        } else {
            self.profile(dst).reach
        }
    }

    /// `socket` + optional `bind` + nonblocking `connect`.
    pub(crate) fn tcp_connect_ep(
        &mut self,
        ns: Netns,
        side: Side,
        local: Option<SocketAddr>,
        remote: SocketAddr,
    ) -> Result<EpId, HostError> {
        if let Some(l) = local {
            if l.is_ipv4() != remote.is_ipv4() {
                return Err(HostError::AddrNotAvailable);
            }
        }
        let rip = remote.ip();
        let bad_dst = match rip {
            std::net::IpAddr::V4(v) => v.is_multicast() || v.is_broadcast(),
            std::net::IpAddr::V6(v) => v.is_multicast(),
        };
        if bad_dst {
            return Err(HostError::NetworkUnreachable);
        }
        // connect() to the unspecified address means loopback.
        let remote = if rip.is_unspecified() {
            SocketAddr::new(self.source_ip_in(ns, rip)?, remote.port())
        } else {
            remote
        };
        let reach = self.reach_of(ns, remote.ip());
        if reach == Reach::NoRoute {
            return Err(HostError::NetworkUnreachable);
        }
        let src_ip = match local {
            Some(l) if !l.ip().is_unspecified() => {
                if side == Side::Host && !self.can_bind_in(ns, l.ip()) {
                    return Err(HostError::AddrNotAvailable);
                }
                l.ip()
            }
            _ if side == Side::Host => self.source_ip_in(ns, remote.ip())?,
            _ => return Err(HostError::AddrNotAvailable),
        };
        let want_port = local.map_or(0, |l| l.port());
        if side == Side::Host && want_port != 0 && want_port < self.cfg.unprivileged_port_start {
            return Err(HostError::PermissionDenied);
        }
        let port = self.choose_port(
            ns,
            Proto::Tcp,
            src_ip,
            want_port,
            HostError::AddrNotAvailable,
        )?;
        let local = SocketAddr::new(src_ip, port);
        let path = self.path_between(src_ip, remote.ip());
        let (sndbuf, rcvbuf) = self.bufs_for(side, src_ip);
        let now = self.now();
        let s = new_stream(TcpState::SynSent, remote, path, sndbuf, rcvbuf, now);
        let ep = self.alloc_ep(Endpoint {
            side,
            ns,
            local,
            handle_open: true,
            kind: EpKind::Stream(Box::new(s)),
        });
        self.binds.insert((ns, Proto::Tcp, src_ip, port), ep);
        let lat = path.link.latency;
        if side == Side::Host {
            let refuse = &self.faults.refuse;
            if refuse.probability > 0.0 || !refuse.ports.is_empty() {
                let refused = self.faults.refuses(remote.port(), &mut self.fault_rng);
                if refused {
                    self.stats.refused_injected += 1;
                    self.stats.rsts += 1;
                    self.sched.schedule(now + lat + lat, Ev::Rst { to: ep });
                    return Ok(ep);
                }
            }
        }
        match reach {
            Reach::Reachable => {
                self.sched.schedule(
                    arrival(&path.link, now, HEADER + 20),
                    Ev::Syn {
                        from: ep,
                        to: remote,
                    },
                );
                self.sched
                    .schedule(now + self.cfg.syn_rto, Ev::SynRetry { ep, attempt: 0 });
            }
            Reach::HostUnreachable => {
                self.stats.icmp_errors += 1;
                self.sched.schedule(
                    now + lat + lat,
                    Ev::ConnectFail {
                        to: ep,
                        error: HostError::HostUnreachable,
                    },
                );
            }
            Reach::Blackhole | Reach::NoRoute => {
                self.sched
                    .schedule(now + self.cfg.syn_rto, Ev::SynRetry { ep, attempt: 0 });
            }
        }
        Ok(ep)
    }

    /// `socket` + `bind` + `listen`.
    pub(crate) fn tcp_listen_ep(
        &mut self,
        ns: Netns,
        side: Side,
        addr: SocketAddr,
        backlog: u32,
    ) -> Result<EpId, HostError> {
        if side == Side::Host || ns == Netns::Guest {
            if !self.can_bind_in(ns, addr.ip()) {
                return Err(HostError::AddrNotAvailable);
            }
            if addr.port() != 0 && addr.port() < self.cfg.unprivileged_port_start {
                return Err(HostError::PermissionDenied);
            }
        }
        let port =
            self.choose_port(ns, Proto::Tcp, addr.ip(), addr.port(), HostError::AddrInUse)?;
        let ep = self.alloc_ep(Endpoint {
            side,
            ns,
            local: SocketAddr::new(addr.ip(), port),
            handle_open: true,
            kind: EpKind::Listener(Listener {
                backlog,
                accept_q: VecDeque::new(),
                syn_q: BTreeSet::new(),
            }),
        });
        self.binds.insert((ns, Proto::Tcp, addr.ip(), port), ep);
        Ok(ep)
    }

    /// Takes the first established child off a listener's accept queue.
    pub(crate) fn accept_ep(&mut self, listener: EpId) -> Result<EpId, HostError> {
        let Some(Endpoint {
            kind: EpKind::Listener(l),
            ..
        }) = self.eps.get_mut(&listener)
        else {
            return Err(HostError::BadSocket);
        };
        let child = l.accept_q.pop_front().ok_or(HostError::WouldBlock)?;
        if let Some(s) = self.stream_mut(child) {
            s.listener = None;
        }
        Ok(child)
    }

    // ----- segments -----

    /// Schedules a RST to `target`, `latency` from now.
    fn rst_to(&mut self, target: EpId, latency: Duration) {
        self.stats.rsts += 1;
        let at = self.now() + latency;
        self.sched.schedule(at, Ev::Rst { to: target });
    }

    /// Sends a RST to `ep`'s peer, if it has one.
    pub(crate) fn send_rst(&mut self, ep: EpId) {
        if let Some(s) = self.stream(ep) {
            if let Some(peer) = s.peer {
                let lat = s.path.link.latency;
                self.rst_to(peer, lat);
            }
        }
    }

    /// Sends what the peer's window allows, then the FIN once everything
    /// queued is out.
    pub(crate) fn transmit(&mut self, ep: EpId) {
        let now = self.now();
        let Some(Endpoint {
            kind: EpKind::Stream(s),
            ..
        }) = self.eps.get_mut(&ep)
        else {
            return;
        };
        if s.state != TcpState::Established {
            return;
        }
        let Some(peer) = s.peer else { return };
        loop {
            let in_queue = (s.snd_nxt - s.snd_una) as usize;
            let unsent = s.sndq.len().saturating_sub(in_queue);
            let usable = (s.snd_una + u64::from(s.snd_wnd)).saturating_sub(s.snd_nxt) as usize;
            let n = unsent.min(usable).min(s.path.mss as usize);
            if n == 0 {
                break;
            }
            let mut data = vec![0u8; n];
            copy_out(&s.sndq, in_queue, &mut data);
            let depart = s.busy_until.max(now) + s.path.link.serialization_delay(n + HEADER);
            s.busy_until = depart;
            s.snd_nxt += n as u64;
            if s.rtt_probe.is_none() {
                s.rtt_probe = Some((s.snd_nxt, now));
            }
            self.sched.schedule(
                depart + s.path.link.latency,
                Ev::Data {
                    to: peer,
                    from: ep,
                    data,
                    fin: false,
                },
            );
        }
        let all_sent = s.snd_nxt - s.snd_una == s.sndq.len() as u64;
        if s.wr_shut && !s.fin_sent && all_sent {
            s.fin_sent = true;
            let depart = s.busy_until.max(now) + s.path.link.serialization_delay(HEADER);
            s.busy_until = depart;
            self.sched.schedule(
                depart + s.path.link.latency,
                Ev::Data {
                    to: peer,
                    from: ep,
                    data: Vec::new(),
                    fin: true,
                },
            );
        }
    }

    /// ACKs everything received, advertising the free receive space.
    pub(crate) fn send_ack(&mut self, ep: EpId) {
        let now = self.now();
        let Some(s) = self.stream_mut(ep) else { return };
        let Some(peer) = s.peer else { return };
        let free = s.rcvbuf.saturating_sub(s.rcvq.len());
        s.adv_edge = s.rcv_nxt + free as u64;
        let ev = Ev::Ack {
            to: peer,
            ack: s.rcv_nxt,
            wnd: wnd32(free),
            fin: s.rcv_fin,
        };
        let at = now + s.path.link.latency;
        self.sched.schedule(at, ev);
    }

    /// After the program consumed bytes: a window update if the window
    /// opened enough to matter.
    pub(crate) fn window_update(&mut self, ep: EpId) {
        let Some(s) = self.stream(ep) else { return };
        if s.state != TcpState::Established || s.peer.is_none() {
            return;
        }
        let free = s.rcvbuf.saturating_sub(s.rcvq.len());
        let edge = s.rcv_nxt + free as u64;
        if edge <= s.adv_edge {
            return;
        }
        let threshold = (s.path.mss as u64).min(s.rcvbuf as u64 / 2).max(1);
        if edge - s.adv_edge >= threshold || s.rcvq.is_empty() {
            self.send_ack(ep);
        }
    }

    pub(crate) fn on_syn(&mut self, from: EpId, to: SocketAddr) {
        let Some(client) = self.stream(from) else {
            return;
        };
        if client.state != TcpState::SynSent {
            return;
        }
        let path = client.path;
        let client_addr = match self.eps.get(&from) {
            Some(e) => e.local,
            None => return,
        };
        let ns = self.ns_of(from);
        let listener = self
            .lookup(ns, Proto::Tcp, to)
            .filter(|l| matches!(self.eps.get(l).map(|e| &e.kind), Some(EpKind::Listener(_))));
        let Some(l) = listener else {
            // RFC 9293 §3.10.7.1: a SYN to a closed port draws a RST.
            self.rst_to(from, path.link.latency);
            return;
        };
        let Some(lep) = self.eps.get(&l) else { return };
        let side = lep.side;
        let EpKind::Listener(lst) = &lep.kind else {
            return;
        };
        // Accept queue full: the SYN is dropped and the client retries.
        if lst.accept_q.len() + lst.syn_q.len() > lst.backlog as usize {
            return;
        }
        let (sndbuf, rcvbuf) = self.bufs_for(side, to.ip());
        let now = self.now();
        let mut s = new_stream(TcpState::SynRcvd, client_addr, path, sndbuf, rcvbuf, now);
        s.peer = Some(from);
        s.listener = Some(l);
        let child = self.alloc_ep(Endpoint {
            side,
            ns,
            local: to,
            handle_open: true,
            kind: EpKind::Stream(Box::new(s)),
        });
        if let Some(Endpoint {
            kind: EpKind::Listener(lst),
            ..
        }) = self.eps.get_mut(&l)
        {
            lst.syn_q.insert(child);
        }
        self.sched.schedule(
            arrival(&path.link, now, HEADER + 20),
            Ev::SynAck {
                to: from,
                from: child,
                wnd: wnd32(rcvbuf),
            },
        );
    }

    pub(crate) fn on_syn_retry(&mut self, ep: EpId, attempt: u32) {
        let retries = self.cfg.syn_retries;
        let rto = self.cfg.syn_rto;
        let now = self.now();
        let Some(s) = self.stream_mut(ep) else { return };
        if s.state != TcpState::SynSent {
            return;
        }
        if attempt >= retries {
            s.so_error = Some(HostError::TimedOut);
            s.state = TcpState::Dead;
            self.dirty.insert(ep);
            self.reap(ep);
            return;
        }
        let remote = s.remote;
        let link = s.path.link;
        if self.reach_of(self.ns_of(ep), remote.ip()) == Reach::Reachable {
            self.sched.schedule(
                arrival(&link, now, HEADER + 20),
                Ev::Syn {
                    from: ep,
                    to: remote,
                },
            );
        }
        let backoff = rto.saturating_mul(1u32 << (attempt + 1).min(20));
        self.sched.schedule(
            now + backoff,
            Ev::SynRetry {
                ep,
                attempt: attempt + 1,
            },
        );
    }

    pub(crate) fn on_synack(&mut self, to: EpId, from: EpId, wnd: u32) {
        let now = self.now();
        let child_lat = self.stream(from).map(|c| c.path.link.latency);
        let Some(c) = self.stream_mut(to) else {
            if let Some(lat) = child_lat {
                self.rst_to(from, lat);
            }
            return;
        };
        if c.state != TcpState::SynSent {
            if c.peer != Some(from) {
                if let Some(lat) = child_lat {
                    self.rst_to(from, lat);
                }
            }
            return;
        }
        c.state = TcpState::Established;
        c.peer = Some(from);
        c.snd_wnd = wnd;
        rtt_update(&mut c.srtt_us, now - c.syn_sent_at);
        let free = c.rcvbuf.saturating_sub(c.rcvq.len());
        c.adv_edge = free as u64;
        let at = arrival(&c.path.link, now, HEADER);
        self.sched.schedule(
            at,
            Ev::HandshakeAck {
                to: from,
                wnd: wnd32(free),
            },
        );
        self.dirty.insert(to);
        self.transmit(to);
    }

    pub(crate) fn on_handshake_ack(&mut self, child: EpId, wnd: u32) {
        let now = self.now();
        let Some(ch) = self.stream_mut(child) else {
            return;
        };
        if ch.state != TcpState::SynRcvd {
            return;
        }
        ch.state = TcpState::Established;
        ch.snd_wnd = wnd;
        rtt_update(&mut ch.srtt_us, now - ch.syn_sent_at);
        let listener = ch.listener;
        let mut queued = false;
        if let Some(l) = listener {
            if let Some(Endpoint {
                kind: EpKind::Listener(lst),
                ..
            }) = self.eps.get_mut(&l)
            {
                lst.syn_q.remove(&child);
                lst.accept_q.push_back(child);
                queued = true;
                self.dirty.insert(l);
            }
        }
        if !queued {
            // The listener went away meanwhile.
            self.send_rst(child);
            self.destroy(child);
            return;
        }
        let Some(l) = listener else { return };
        if let Some(service) = self.services.get(&l) {
            let (local, remote) = match self.eps.get(&child) {
                Some(e) => (
                    e.local,
                    match &e.kind {
                        EpKind::Stream(s) => s.remote,
                        _ => e.local,
                    },
                ),
                None => return,
            };
            let app = service.spawn(remote, local);
            let _ = self.accept_ep(l);
            self.apps.insert(child, app);
            self.dirty.insert(child);
        }
        self.transmit(child);
    }

    pub(crate) fn on_data(&mut self, to: EpId, from: EpId, data: Vec<u8>, fin: bool) {
        let from_lat = self.stream(from).map(|s| s.path.link.latency);
        let accept = self
            .stream(to)
            .is_some_and(|s| s.state == TcpState::Established && s.peer == Some(from));
        if !accept {
            // RFC 9293 §3.10.7.1/§3.5.2: a segment for no connection draws
            // a RST.
            let handshaking = self
                .stream(to)
                .is_some_and(|s| s.state == TcpState::SynRcvd && s.peer == Some(from));
            if !handshaking {
                if let Some(lat) = from_lat {
                    self.rst_to(from, lat);
                }
            }
            return;
        }
        let Some(s) = self.stream_mut(to) else { return };
        if s.orphan && s.rd_shut && !data.is_empty() {
            // Data for a closed socket: Linux resets (tcp_rcv_state_process).
            let lat = s.path.link.latency;
            self.rst_to(from, lat);
            self.destroy(to);
            return;
        }
        let len = data.len() as u64;
        s.rcvq.extend(data.iter());
        s.rcv_nxt += len;
        if fin {
            s.rcv_fin = true;
        }
        let reap_now = s.orphan && s.fin_acked && s.rcv_fin;
        self.stats.segments += 1;
        self.send_ack(to);
        self.dirty.insert(to);
        if reap_now {
            self.destroy(to);
            return;
        }
        self.count_fault_bytes(to, from, len);
    }

    /// The reset-after-N-bytes fault, on connections with a host socket.
    fn count_fault_bytes(&mut self, to: EpId, from: EpId, len: u64) {
        let Some(ra) = self.faults.reset_after else {
            return;
        };
        let side_of = |h: &SimHost, ep: EpId| h.eps.get(&ep).map(|e| e.side);
        let host_ep = if side_of(self, to) == Some(Side::Host) {
            to
        } else if side_of(self, from) == Some(Side::Host) {
            from
        } else {
            return;
        };
        let Some(s) = self.stream_mut(host_ep) else {
            return;
        };
        s.fault_bytes = s.fault_bytes.saturating_add(len);
        if s.fault_bytes < ra.bytes || s.state != TcpState::Established {
            return;
        }
        s.fault_bytes = u64::MAX;
        let peer = s.peer;
        self.stats.resets_injected += 1;
        self.stats.rsts += 1;
        self.on_rst(host_ep);
        if let Some(p) = peer {
            self.on_rst(p);
        }
    }

    pub(crate) fn on_ack(&mut self, to: EpId, ack: u64, wnd: u32, fin: bool) {
        let now = self.now();
        let fin_timeout = self.cfg.fin_timeout;
        let Some(s) = self.stream_mut(to) else { return };
        if s.state != TcpState::Established {
            return;
        }
        if ack > s.snd_una {
            let n = ((ack - s.snd_una) as usize).min(s.sndq.len());
            s.sndq.drain(..n);
            s.snd_una += n as u64;
            if let Some((end, t0)) = s.rtt_probe {
                if ack >= end {
                    rtt_update(&mut s.srtt_us, now - t0);
                    s.rtt_probe = None;
                }
            }
        }
        s.snd_wnd = wnd;
        let mut arm_orphan_timer = false;
        if fin && s.fin_sent && !s.fin_acked {
            s.fin_acked = true;
            arm_orphan_timer = s.orphan && !s.rcv_fin;
        }
        let reap_now = s.orphan && s.fin_acked && s.rcv_fin;
        if arm_orphan_timer {
            self.sched
                .schedule(now + fin_timeout, Ev::OrphanTimeout { ep: to });
        }
        if reap_now {
            self.destroy(to);
            return;
        }
        self.transmit(to);
        self.dirty.insert(to);
    }

    pub(crate) fn on_rst(&mut self, to: EpId) {
        let Some(s) = self.stream_mut(to) else { return };
        let prev = s.state;
        match prev {
            TcpState::Dead => return,
            // tcp_reset(): ECONNREFUSED in SYN-SENT, EPIPE in CLOSE-WAIT,
            // ECONNRESET otherwise.
            TcpState::SynSent => s.so_error = Some(HostError::ConnectionRefused),
            _ if s.rcv_fin => s.so_error = Some(HostError::BrokenPipe),
            _ => s.so_error = Some(HostError::ConnectionReset),
        }
        s.state = TcpState::Dead;
        s.sndq.clear();
        s.peer = None;
        let orphan = s.orphan;
        let listener = s.listener;
        if prev == TcpState::SynRcvd {
            if let Some(l) = listener {
                if let Some(Endpoint {
                    kind: EpKind::Listener(lst),
                    ..
                }) = self.eps.get_mut(&l)
                {
                    lst.syn_q.remove(&to);
                }
            }
            self.destroy(to);
            return;
        }
        self.dirty.insert(to);
        if orphan {
            self.destroy(to);
        } else {
            self.reap(to);
        }
    }

    pub(crate) fn on_connect_fail(&mut self, to: EpId, error: HostError) {
        let Some(s) = self.stream_mut(to) else { return };
        if s.state != TcpState::SynSent {
            return;
        }
        s.so_error = Some(error);
        s.state = TcpState::Dead;
        self.dirty.insert(to);
        self.reap(to);
    }

    pub(crate) fn on_orphan_timeout(&mut self, ep: EpId) {
        if self.stream(ep).is_some_and(|s| s.orphan) {
            // tcp_keepalive_timer(): an orphan in FIN-WAIT-2 past
            // tcp_fin_timeout is reset.
            self.send_rst(ep);
            self.destroy(ep);
        }
    }

    /// Destroys a dead endpoint nobody holds any more.
    fn reap(&mut self, ep: EpId) {
        if self.eps.get(&ep).is_some_and(|e| !e.handle_open) {
            self.destroy(ep);
        }
    }

    // ----- calls -----

    /// `send`: see `HostIo::tcp_send`.
    pub(crate) fn stream_write(&mut self, ep: EpId, data: &[u8]) -> Result<usize, HostError> {
        let s = self.stream_mut(ep).ok_or(HostError::BadSocket)?;
        if let Some(e) = s.so_error.take() {
            return Err(e);
        }
        match s.state {
            TcpState::SynSent | TcpState::SynRcvd => return Err(HostError::WouldBlock),
            TcpState::Dead => return Err(HostError::BrokenPipe),
            TcpState::Established => {}
        }
        if s.wr_shut {
            return Err(HostError::BrokenPipe);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let free = s.sndbuf.saturating_sub(s.sndq.len());
        if free == 0 {
            return Err(HostError::WouldBlock);
        }
        let n = data.len().min(free);
        s.sndq.extend(data[..n].iter());
        self.transmit(ep);
        Ok(n)
    }

    /// Free send-buffer space.
    pub(crate) fn stream_send_space(&self, ep: EpId) -> usize {
        self.stream(ep)
            .filter(|s| s.state == TcpState::Established && !s.wr_shut)
            .map_or(0, |s| s.sndbuf.saturating_sub(s.sndq.len()))
    }

    /// What `recv` says when nothing is at the read position (tcp_recvmsg:
    /// `SOCK_DONE`, then `sk_err`, then `RCV_SHUTDOWN`, else `EAGAIN`).
    /// `Ok(())` means end of stream.
    pub(crate) fn stream_empty_result(s: &mut Stream) -> Result<(), HostError> {
        if s.rcv_fin {
            return Ok(());
        }
        if let Some(e) = s.so_error.take() {
            return Err(e);
        }
        if s.rd_shut || s.state == TcpState::Dead {
            return Ok(());
        }
        Err(HostError::WouldBlock)
    }

    /// `recv(MSG_PEEK)` at an offset: see `HostIo::tcp_peek`.
    pub(crate) fn stream_peek(
        &mut self,
        ep: EpId,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<Peeked, HostError> {
        let s = self.stream_mut(ep).ok_or(HostError::BadSocket)?;
        if buf.is_empty() {
            return Ok(Peeked { len: 0, fin: false });
        }
        if matches!(s.state, TcpState::SynSent | TcpState::SynRcvd) {
            return Err(HostError::WouldBlock);
        }
        let queued = s.rcvq.len();
        if offset < queued {
            let n = (queued - offset).min(buf.len());
            copy_out(&s.rcvq, offset, &mut buf[..n]);
            // As the real backend: a peek that fills the buffer says
            // nothing about a FIN right behind it.
            let ends = offset + n == queued && n < buf.len();
            let fin = ends && (s.rcv_fin || s.rd_shut || s.state == TcpState::Dead);
            return Ok(Peeked { len: n, fin });
        }
        Self::stream_empty_result(s).map(|()| Peeked { len: 0, fin: true })
    }

    /// `recv(MSG_TRUNC)`: see `HostIo::tcp_discard`.
    pub(crate) fn stream_consume(&mut self, ep: EpId, len: usize) -> Result<usize, HostError> {
        let s = self.stream_mut(ep).ok_or(HostError::BadSocket)?;
        if len == 0 {
            return Ok(0);
        }
        let n = len.min(s.rcvq.len());
        if n == 0 {
            return match Self::stream_empty_result(s) {
                Ok(()) | Err(HostError::WouldBlock) => Ok(0),
                Err(e) => Err(e),
            };
        }
        s.rcvq.drain(..n);
        self.window_update(ep);
        Ok(n)
    }

    /// Plain `recv`: copies and consumes; `Ok(0)` at end of stream.
    pub(crate) fn stream_read(&mut self, ep: EpId, buf: &mut [u8]) -> Result<usize, HostError> {
        let s = self.stream_mut(ep).ok_or(HostError::BadSocket)?;
        if buf.is_empty() {
            return Ok(0);
        }
        if matches!(s.state, TcpState::SynSent | TcpState::SynRcvd) {
            return Err(HostError::WouldBlock);
        }
        let n = buf.len().min(s.rcvq.len());
        if n == 0 {
            return Self::stream_empty_result(s).map(|()| 0);
        }
        copy_out(&s.rcvq, 0, &mut buf[..n]);
        s.rcvq.drain(..n);
        self.window_update(ep);
        Ok(n)
    }

    /// `shutdown(how)`.
    pub(crate) fn stream_shutdown(&mut self, ep: EpId, how: Shutdown) -> Result<(), HostError> {
        let s = self.stream_mut(ep).ok_or(HostError::BadSocket)?;
        let (rd, wr) = match how {
            Shutdown::Read => (true, false),
            Shutdown::Write => (false, true),
            Shutdown::Both => (true, true),
        };
        match s.state {
            // inet_shutdown() on SYN-SENT disconnects.
            TcpState::SynSent => {
                s.state = TcpState::Dead;
                self.dirty.insert(ep);
                return Ok(());
            }
            TcpState::Dead | TcpState::SynRcvd => {
                s.rd_shut |= rd;
                s.wr_shut |= wr;
                return Err(HostError::NotConnected);
            }
            TcpState::Established => {}
        }
        s.rd_shut |= rd;
        s.wr_shut |= wr;
        self.transmit(ep);
        self.dirty.insert(ep);
        Ok(())
    }

    /// `close`: graceful, or a RST if unread data remains (RFC 2525 §2.17).
    pub(crate) fn stream_close(&mut self, ep: EpId) {
        let now = self.now();
        let fin_timeout = self.cfg.fin_timeout;
        if let Some(e) = self.eps.get_mut(&ep) {
            e.handle_open = false;
        }
        let Some(s) = self.stream_mut(ep) else { return };
        match s.state {
            TcpState::SynSent | TcpState::Dead => {
                self.destroy(ep);
                return;
            }
            TcpState::SynRcvd => {
                self.send_rst(ep);
                self.destroy(ep);
                return;
            }
            TcpState::Established => {}
        }
        if !s.rcvq.is_empty() {
            self.send_rst(ep);
            self.destroy(ep);
            return;
        }
        s.orphan = true;
        s.rd_shut = true;
        s.wr_shut = true;
        if s.fin_acked {
            if s.rcv_fin {
                self.destroy(ep);
                return;
            }
            self.sched
                .schedule(now + fin_timeout, Ev::OrphanTimeout { ep });
        }
        self.transmit(ep);
    }

    /// `SO_LINGER {1, 0}` + `close`: RST, everything discarded.
    pub(crate) fn stream_abort(&mut self, ep: EpId) {
        if self
            .stream(ep)
            .is_some_and(|s| matches!(s.state, TcpState::Established | TcpState::SynRcvd))
        {
            self.send_rst(ep);
        }
        self.destroy(ep);
    }

    /// Closes a listener: children not yet accepted are reset.
    pub(crate) fn listener_close(&mut self, ep: EpId) {
        let children: Vec<EpId> = match self.eps.get(&ep).map(|e| &e.kind) {
            Some(EpKind::Listener(l)) => l.accept_q.iter().chain(l.syn_q.iter()).copied().collect(),
            _ => return,
        };
        for c in children {
            self.send_rst(c);
            self.destroy(c);
        }
        self.destroy(ep);
    }

    /// Closes any endpoint the way `close` does for its kind.
    pub(crate) fn close_ep(&mut self, ep: EpId) {
        match self.eps.get(&ep).map(|e| &e.kind) {
            Some(EpKind::Stream(_)) => self.stream_close(ep),
            Some(EpKind::Listener(_)) => self.listener_close(ep),
            Some(_) => self.destroy(ep),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_out_handles_every_split_of_a_wrapped_deque() {
        // A deque whose storage wraps: its front is at the end of the
        // buffer, its back at the start.
        let mut q: VecDeque<u8> = VecDeque::with_capacity(16);
        q.extend(0..12u8);
        q.drain(..10);
        q.extend(12..24u8);
        let (a, b) = q.as_slices();
        assert!(
            !a.is_empty() && !b.is_empty(),
            "the test needs a wrapped deque"
        );
        let all: Vec<u8> = q.iter().copied().collect();
        for start in 0..all.len() {
            for len in 0..=all.len() - start {
                let mut out = vec![0xAA; len];
                copy_out(&q, start, &mut out);
                assert_eq!(out, all[start..start + len], "start {start} len {len}");
            }
        }
    }
}
