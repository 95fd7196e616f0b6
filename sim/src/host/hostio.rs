//! `impl HostIo for SimHost`: the engine-facing calls, each mapped onto the
//! socket model, with the host-side faults applied where the kernel could
//! legitimately behave that way (`EAGAIN` on calls that may block, short
//! reads and writes).

use std::net::{IpAddr, SocketAddr};

use passt_engine::host_io::{
    ConnectProgress, Family, IcmpErrorReport, Interest, Peeked, Place, Shutdown, SockId, Spliced,
    TcpInfo, Token, UdpRecv, UdpSend,
};

/// `ENODEV` (Linux's value; the simulator does not link libc).
const ENODEV: i32 = 19;
use passt_engine::{HostError, HostIo};

use super::{EpId, EpKind, Side, SimHost, TcpState};

impl SimHost {
    /// The simulated host has two namespaces, its own and pasta's target
    /// (which has only its loopback), and no named interfaces: a socket
    /// bound to a device is refused as a host without that device would
    /// refuse it.
    fn check_place(place: Place) -> Result<(), HostError> {
        match place.device {
            None => Ok(()),
            Some(_) => Err(HostError::Other(ENODEV)),
        }
    }

    /// The endpoint behind a host socket, if it has the wanted kind.
    fn ep_of(&self, sock: SockId, want: fn(&EpKind) -> bool) -> Result<EpId, HostError> {
        let ep = self.sock(sock)?.ep;
        match self.eps.get(&ep) {
            Some(e) if want(&e.kind) => Ok(ep),
            _ => Err(HostError::BadSocket),
        }
    }

    fn stream_of(&self, sock: SockId) -> Result<EpId, HostError> {
        self.ep_of(sock, |k| matches!(k, EpKind::Stream(_)))
    }

    fn short_read(&mut self, len: usize) -> usize {
        let n = self.faults.clamp_read(len);
        if n < len {
            self.stats.short_io_injected += 1;
        }
        n
    }

    fn short_write(&mut self, len: usize) -> usize {
        let n = self.faults.clamp_write(len);
        if n < len {
            self.stats.short_io_injected += 1;
        }
        n
    }
}

impl HostIo for SimHost {
    fn set_interest(
        &mut self,
        sock: SockId,
        token: Token,
        interest: Interest,
    ) -> Result<(), HostError> {
        let slot = self
            .socks
            .get_mut(sock.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(HostError::BadSocket)?;
        slot.token = Some(token);
        slot.interest = interest;
        Ok(())
    }

    fn deregister(&mut self, sock: SockId) -> Result<(), HostError> {
        let slot = self
            .socks
            .get_mut(sock.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(HostError::BadSocket)?;
        slot.token = None;
        Ok(())
    }

    fn close(&mut self, sock: SockId) {
        if let Some(ep) = self.detach_sock(sock) {
            self.close_ep(ep);
        }
    }

    fn take_error(&mut self, sock: SockId) -> Result<(), HostError> {
        let ep = self.sock(sock)?.ep;
        let err = match self.eps.get_mut(&ep).map(|e| &mut e.kind) {
            Some(EpKind::Stream(s)) => s.so_error.take(),
            Some(EpKind::Udp(u)) => u.so_error.take(),
            Some(EpKind::Ping(p)) => p.so_error.take(),
            Some(EpKind::Listener(_)) => None,
            None => return Err(HostError::BadSocket),
        };
        err.map_or(Ok(()), Err)
    }

    fn local_addr(&self, sock: SockId) -> Result<SocketAddr, HostError> {
        let ep = self.sock(sock)?.ep;
        self.eps
            .get(&ep)
            .map(|e| e.local)
            .ok_or(HostError::BadSocket)
    }

    fn tcp_connect_at(
        &mut self,
        place: Place,
        local: Option<SocketAddr>,
        remote: SocketAddr,
    ) -> Result<(SockId, ConnectProgress), HostError> {
        Self::check_place(place)?;
        self.check_fd_limit()?;
        let ep = self.tcp_connect_ep(place.netns, Side::Host, local, remote)?;
        Ok((self.attach_sock(ep), ConnectProgress::InProgress))
    }

    fn tcp_listen_at(
        &mut self,
        place: Place,
        addr: SocketAddr,
        backlog: u32,
    ) -> Result<SockId, HostError> {
        Self::check_place(place)?;
        self.check_fd_limit()?;
        let ep = self.tcp_listen_ep(place.netns, Side::Host, addr, backlog)?;
        Ok(self.attach_sock(ep))
    }

    fn tcp_accept(
        &mut self,
        listener: SockId,
    ) -> Result<(SockId, SocketAddr, SocketAddr), HostError> {
        let l = self.ep_of(listener, |k| matches!(k, EpKind::Listener(_)))?;
        if self.eagain_fault() {
            return Err(HostError::WouldBlock);
        }
        self.check_fd_limit()?;
        let child = self.accept_ep(l)?;
        let (local, remote) = match self.eps.get(&child) {
            Some(e) => match &e.kind {
                EpKind::Stream(s) => (e.local, s.remote),
                _ => return Err(HostError::BadSocket),
            },
            None => return Err(HostError::BadSocket),
        };
        Ok((self.attach_sock(child), remote, local))
    }

    fn tcp_send(&mut self, sock: SockId, data: &[u8]) -> Result<usize, HostError> {
        let ep = self.stream_of(sock)?;
        if data.is_empty() {
            return Ok(0);
        }
        if self.eagain_fault() {
            return Err(HostError::WouldBlock);
        }
        let n = self.short_write(data.len());
        self.stream_write(ep, &data[..n])
    }

    fn tcp_peek(
        &mut self,
        sock: SockId,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<Peeked, HostError> {
        let ep = self.stream_of(sock)?;
        if buf.is_empty() {
            return Ok(Peeked { len: 0, fin: false });
        }
        if self.eagain_fault() {
            return Err(HostError::WouldBlock);
        }
        let n = self.short_read(buf.len());
        self.stream_peek(ep, offset, &mut buf[..n])
    }

    fn tcp_discard(&mut self, sock: SockId, len: usize) -> Result<usize, HostError> {
        let ep = self.stream_of(sock)?;
        self.stream_consume(ep, len)
    }

    fn tcp_shutdown(&mut self, sock: SockId, how: Shutdown) -> Result<(), HostError> {
        let ep = self.stream_of(sock)?;
        self.stream_shutdown(ep, how)
    }

    fn tcp_abort(&mut self, sock: SockId) {
        let Ok(ep) = self.sock(sock).map(|s| s.ep) else {
            return;
        };
        self.detach_sock(sock);
        match self.eps.get(&ep).map(|e| &e.kind) {
            Some(EpKind::Stream(_)) => self.stream_abort(ep),
            Some(_) => self.close_ep(ep),
            None => {}
        }
    }

    fn tcp_info(&mut self, sock: SockId) -> Result<TcpInfo, HostError> {
        let ep = self.stream_of(sock)?;
        let s = self.stream(ep).ok_or(HostError::BadSocket)?;
        // tcpi_bytes_acked counts the SYN (and FIN) as the kernel's
        // sequence space does; tcpi_bytes_received counts the peer's FIN.
        let syn = u64::from(s.state == TcpState::Established || s.snd_una > 0);
        Ok(TcpInfo {
            bytes_acked: s.snd_una + syn + u64::from(s.fin_acked),
            bytes_received: s.rcv_nxt + u64::from(s.rcv_fin),
            snd_wnd: s.snd_wnd,
            rtt_us: s.srtt_us,
            snd_mss: s.path.mss,
            send_queued: u32::try_from(s.sndq.len()).unwrap_or(u32::MAX),
            send_buf: u32::try_from(s.sndbuf).unwrap_or(u32::MAX),
            recv_queued: u32::try_from(s.rcvq.len()).unwrap_or(u32::MAX),
        })
    }

    fn tcp_set_nodelay(&mut self, sock: SockId, on: bool) -> Result<(), HostError> {
        let ep = self.stream_of(sock)?;
        if let Some(s) = self.stream_mut(ep) {
            s.nodelay = on;
        }
        Ok(())
    }

    fn tcp_splice(&mut self, from: SockId, to: SockId, max: usize) -> Result<Spliced, HostError> {
        let dst = self.stream_of(to)?;
        let src = self.stream_of(from)?;
        if src == dst {
            return Err(HostError::BadSocket);
        }
        if self.eagain_fault() {
            return Err(HostError::WouldBlock);
        }
        let max = self.short_write(max);
        let avail = self.stream(src).map_or(0, |s| {
            if matches!(s.state, TcpState::SynSent | TcpState::SynRcvd) {
                0
            } else {
                s.rcvq.len()
            }
        });
        // The destination side: errors and shutdown matter once there is
        // something to move.
        if avail > 0 && max > 0 {
            let d = self.stream_mut(dst).ok_or(HostError::BadSocket)?;
            if let Some(e) = d.so_error.take() {
                return Err(e);
            }
            if d.state == TcpState::Dead || d.wr_shut {
                return Err(HostError::BrokenPipe);
            }
        }
        let space = self.stream_send_space(dst);
        let n = avail.min(space).min(max);
        if n > 0 {
            let bytes: Vec<u8> = match self.stream_mut(src) {
                Some(s) => s.rcvq.drain(..n).collect(),
                None => return Err(HostError::BadSocket),
            };
            if let Some(d) = self.stream_mut(dst) {
                d.sndq.extend(bytes);
            }
            self.transmit(dst);
            // Reopen the source's window as a read would.
            self.window_update(src);
        }
        let s = self.stream_mut(src).ok_or(HostError::BadSocket)?;
        let mut src_eof = false;
        if s.rcvq.is_empty() && n < max {
            // What the next splice from the source would say.
            match Self::stream_empty_result(s) {
                Ok(()) => src_eof = true,
                Err(HostError::WouldBlock) => {}
                Err(e) if n == 0 => return Err(e),
                Err(_) => {}
            }
        }
        // Stopped by the destination's send buffer, with bytes left behind.
        let sink_full = avail > n && n == space;
        if n == 0 && !src_eof && !sink_full {
            return Err(HostError::WouldBlock);
        }
        Ok(Spliced {
            moved: n,
            src_eof,
            sink_full,
        })
    }

    fn udp_bind_at(&mut self, place: Place, local: SocketAddr) -> Result<SockId, HostError> {
        Self::check_place(place)?;
        self.check_fd_limit()?;
        let ep = self.udp_bind_ep(place.netns, Side::Host, local)?;
        Ok(self.attach_sock(ep))
    }

    fn udp_connect(&mut self, sock: SockId, remote: SocketAddr) -> Result<(), HostError> {
        let ep = self.ep_of(sock, |k| matches!(k, EpKind::Udp(_)))?;
        self.udp_connect_ep(ep, remote)
    }

    fn udp_send_batch(&mut self, sock: SockId, msgs: &[UdpSend<'_>]) -> Result<usize, HostError> {
        let ep = self.ep_of(sock, |k| matches!(k, EpKind::Udp(_)))?;
        if msgs.is_empty() {
            return Ok(0);
        }
        if self.eagain_fault() {
            return Err(HostError::WouldBlock);
        }
        self.udp_send_ep(ep, msgs)
    }

    fn udp_recv_batch(
        &mut self,
        sock: SockId,
        slots: &mut [UdpRecv<'_>],
    ) -> Result<usize, HostError> {
        let ep = self.ep_of(sock, |k| matches!(k, EpKind::Udp(_)))?;
        if slots.is_empty() {
            return Ok(0);
        }
        if self.eagain_fault() {
            return Err(HostError::WouldBlock);
        }
        self.udp_recv_ep(ep, slots)
    }

    fn udp_recv_error(&mut self, sock: SockId) -> Result<Option<IcmpErrorReport>, HostError> {
        let ep = self.ep_of(sock, |k| matches!(k, EpKind::Udp(_) | EpKind::Ping(_)))?;
        self.recv_error_ep(ep)
    }

    fn ping_open(&mut self, family: Family, id: u16) -> Result<SockId, HostError> {
        self.check_fd_limit()?;
        let ep = self.ping_open_ep(family, id)?;
        Ok(self.attach_sock(ep))
    }

    fn ping_send(&mut self, sock: SockId, dst: IpAddr, message: &[u8]) -> Result<(), HostError> {
        let ep = self.ep_of(sock, |k| matches!(k, EpKind::Ping(_)))?;
        self.ping_send_ep(ep, dst, message)
    }

    fn ping_recv(&mut self, sock: SockId, buf: &mut [u8]) -> Result<(usize, IpAddr), HostError> {
        let ep = self.ep_of(sock, |k| matches!(k, EpKind::Ping(_)))?;
        if self.eagain_fault() {
            return Err(HostError::WouldBlock);
        }
        self.ping_recv_ep(ep, buf)
    }
}
