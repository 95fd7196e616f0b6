//! The far side: remote sockets driven by tests (`remote_*` methods, all
//! nonblocking, on the same socket model as host sockets), and remote
//! programs ([`StreamApp`], [`DatagramApp`]) the host runs after every
//! event that concerns them.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use passt_engine::host_io::Shutdown;
use passt_engine::{HostError, Instant, Netns};

use super::services::RemoteService;
use super::{EpId, EpKind, Ev, Side, SimHost, TcpState};

/// A remote socket handle (a test's view of a peer-side socket).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct RemoteSock(pub u64);

/// Connection state of a remote TCP socket.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RemoteTcpState {
    /// Handshake in progress.
    Connecting,
    /// Established (possibly half-closed).
    Connected,
    /// Reset, refused, timed out; the error if not yet taken.
    Closed(Option<HostError>),
    /// A listener.
    Listening,
}

/// What a [`StreamApp`] wants after a poll.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AppStatus {
    /// Keep polling me when something happens.
    Continue,
    /// Finished: the connection is closed (gracefully) if still open.
    Done,
}

/// A remote program on one TCP connection. `poll` runs whenever the
/// connection changed (data or FIN arrived, send space freed, connected,
/// reset) or a timer asked for it ([`AppConn::wake_at`]).
pub trait StreamApp: Send {
    /// Reacts to the connection's current state.
    fn poll(&mut self, conn: &mut AppConn<'_>) -> AppStatus;
}

/// A remote program answering datagrams at one address.
pub trait DatagramApp: Send {
    /// A datagram from `from` arrived at `to`; push replies (sent from
    /// `to` back to `from`) into `replies`.
    fn on_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: SocketAddr,
        payload: &[u8],
        replies: &mut Vec<Vec<u8>>,
    );
}

/// A [`StreamApp`]'s view of its connection.
pub struct AppConn<'a> {
    host: &'a mut SimHost,
    ep: EpId,
}

impl AppConn<'_> {
    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.host.now()
    }

    /// Our address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.host.eps.get(&self.ep).map(|e| e.local)
    }

    /// The other end's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.host.stream(self.ep).map(|s| s.remote)
    }

    /// Connection state.
    pub fn state(&self) -> RemoteTcpState {
        self.host.remote_state_ep(self.ep)
    }

    /// Reads what is there: `Ok(0)` at end of stream, `WouldBlock` if
    /// nothing yet, the error after a reset.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, HostError> {
        self.host.stream_read(self.ep, buf)
    }

    /// Bytes waiting to be read.
    pub fn available(&self) -> usize {
        self.host.stream(self.ep).map_or(0, |s| s.rcvq.len())
    }

    /// Writes what fits in the send buffer.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, HostError> {
        self.host.stream_write(self.ep, data)
    }

    /// Every byte this program has read from the connection so far.
    pub fn bytes_read(&self) -> u64 {
        self.host
            .stream(self.ep)
            .map_or(0, |s| s.rcv_nxt - s.rcvq.len() as u64)
    }

    /// Every byte this program has written to the connection so far.
    pub fn bytes_written(&self) -> u64 {
        self.host
            .stream(self.ep)
            .map_or(0, |s| s.snd_una + s.sndq.len() as u64)
    }

    /// Free send-buffer space.
    pub fn send_space(&self) -> usize {
        self.host.stream_send_space(self.ep)
    }

    /// Bytes written but not yet acknowledged.
    pub fn send_queued(&self) -> usize {
        self.host.stream(self.ep).map_or(0, |s| s.sndq.len())
    }

    /// Sends our FIN after the queued data.
    pub fn shutdown_write(&mut self) -> Result<(), HostError> {
        self.host.stream_shutdown(self.ep, Shutdown::Write)
    }

    /// Graceful close (a RST if unread data remains). Return
    /// [`AppStatus::Done`] afterwards.
    pub fn close(&mut self) {
        self.host.close_ep(self.ep);
    }

    /// Aborts with a RST. Return [`AppStatus::Done`] afterwards.
    pub fn reset(&mut self) {
        self.host.stream_abort(self.ep);
    }

    /// Polls again at `at` even if nothing happens.
    pub fn wake_at(&mut self, at: Instant) {
        self.host.sched.schedule(at, Ev::Wake { ep: self.ep });
    }

    /// Polls again after `d`.
    pub fn wake_after(&mut self, d: Duration) {
        let at = self.now() + d;
        self.wake_at(at);
    }
}

impl SimHost {
    /// Runs every app whose connection changed, until none is left
    /// (bounded, so a misbehaving app cannot hang the simulation).
    pub(crate) fn run_apps(&mut self) {
        for _ in 0..100_000 {
            let Some(ep) = self.dirty.pop_first() else {
                return;
            };
            let Some(mut app) = self.apps.remove(&ep) else {
                continue;
            };
            let status = app.poll(&mut AppConn { host: self, ep });
            let alive = self.eps.get(&ep).is_some_and(|e| e.handle_open);
            match status {
                AppStatus::Continue if alive => {
                    self.apps.insert(ep, app);
                }
                _ => {
                    if alive {
                        self.close_ep(ep);
                    }
                }
            }
        }
    }

    fn remote_ep(&self, sock: RemoteSock) -> Result<EpId, HostError> {
        match self.eps.get(&sock.0) {
            Some(e) if e.side == Side::Remote && e.handle_open => Ok(sock.0),
            _ => Err(HostError::BadSocket),
        }
    }

    fn remote_stream(&self, sock: RemoteSock) -> Result<EpId, HostError> {
        let ep = self.remote_ep(sock)?;
        match self.eps.get(&ep).map(|e| &e.kind) {
            Some(EpKind::Stream(_)) => Ok(ep),
            _ => Err(HostError::BadSocket),
        }
    }

    pub(crate) fn remote_state_ep(&self, ep: EpId) -> RemoteTcpState {
        match self.eps.get(&ep).map(|e| &e.kind) {
            Some(EpKind::Listener(_)) => RemoteTcpState::Listening,
            Some(EpKind::Stream(s)) => match s.state {
                TcpState::SynSent | TcpState::SynRcvd => RemoteTcpState::Connecting,
                TcpState::Established => RemoteTcpState::Connected,
                TcpState::Dead => RemoteTcpState::Closed(s.so_error),
            },
            _ => RemoteTcpState::Closed(None),
        }
    }

    // ----- remote TCP -----

    /// A remote TCP listener at `addr` (port 0: ephemeral) driven by the
    /// test through [`SimHost::remote_tcp_accept`].
    pub fn remote_tcp_listen(
        &mut self,
        addr: SocketAddr,
        backlog: u32,
    ) -> Result<RemoteSock, HostError> {
        self.remote_tcp_listen_in(Netns::Host, addr, backlog)
    }

    /// [`SimHost::remote_tcp_listen`] in namespace `ns`: in
    /// [`Netns::Guest`], a program on pasta's target namespace's loopback.
    pub fn remote_tcp_listen_in(
        &mut self,
        ns: Netns,
        addr: SocketAddr,
        backlog: u32,
    ) -> Result<RemoteSock, HostError> {
        self.tcp_listen_ep(ns, Side::Remote, addr, backlog)
            .map(RemoteSock)
    }

    /// A remote service listening at `addr`: every accepted connection
    /// runs its own instance of `service`.
    pub fn remote_tcp_serve(
        &mut self,
        addr: SocketAddr,
        backlog: u32,
        service: RemoteService,
    ) -> Result<RemoteSock, HostError> {
        self.remote_tcp_serve_in(Netns::Host, addr, backlog, service)
    }

    /// [`SimHost::remote_tcp_serve`] in namespace `ns`.
    pub fn remote_tcp_serve_in(
        &mut self,
        ns: Netns,
        addr: SocketAddr,
        backlog: u32,
        service: RemoteService,
    ) -> Result<RemoteSock, HostError> {
        let ep = self.tcp_listen_ep(ns, Side::Remote, addr, backlog)?;
        self.services.insert(ep, service);
        Ok(RemoteSock(ep))
    }

    /// Accepts one established connection: its handle and peer address.
    pub fn remote_tcp_accept(
        &mut self,
        listener: RemoteSock,
    ) -> Result<(RemoteSock, SocketAddr), HostError> {
        let l = self.remote_ep(listener)?;
        let child = self.accept_ep(l)?;
        let peer = self
            .stream(child)
            .map(|s| s.remote)
            .ok_or(HostError::BadSocket)?;
        Ok((RemoteSock(child), peer))
    }

    /// Starts a connection from a remote address (`from`, port 0 for an
    /// ephemeral one) to `to`, typically a host listener behind a
    /// forwarded port. Completes in virtual time: see
    /// [`SimHost::remote_tcp_state`].
    pub fn remote_tcp_connect(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
    ) -> Result<RemoteSock, HostError> {
        self.remote_tcp_connect_in(Netns::Host, from, to)
    }

    /// [`SimHost::remote_tcp_connect`] from namespace `ns`.
    pub fn remote_tcp_connect_in(
        &mut self,
        ns: Netns,
        from: SocketAddr,
        to: SocketAddr,
    ) -> Result<RemoteSock, HostError> {
        self.tcp_connect_ep(ns, Side::Remote, Some(from), to)
            .map(RemoteSock)
    }

    /// Like [`SimHost::remote_tcp_connect`], with `app` driving the
    /// connection (polled once connected, or once the connect failed).
    pub fn remote_tcp_connect_app(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        app: Box<dyn StreamApp>,
    ) -> Result<(), HostError> {
        let ep = self.tcp_connect_ep(Netns::Host, Side::Remote, Some(from), to)?;
        self.apps.insert(ep, app);
        Ok(())
    }

    /// State of a remote TCP socket.
    pub fn remote_tcp_state(&self, sock: RemoteSock) -> Result<RemoteTcpState, HostError> {
        Ok(self.remote_state_ep(self.remote_ep(sock)?))
    }

    /// Nonblocking write: bytes taken, `WouldBlock` when the send buffer
    /// is full.
    pub fn remote_tcp_write(&mut self, sock: RemoteSock, data: &[u8]) -> Result<usize, HostError> {
        let ep = self.remote_stream(sock)?;
        self.stream_write(ep, data)
    }

    /// Nonblocking read: `Ok(0)` at end of stream, `WouldBlock` if nothing
    /// is there, the error after a reset.
    pub fn remote_tcp_read(
        &mut self,
        sock: RemoteSock,
        buf: &mut [u8],
    ) -> Result<usize, HostError> {
        let ep = self.remote_stream(sock)?;
        self.stream_read(ep, buf)
    }

    /// Bytes waiting in a remote socket's receive queue.
    pub fn remote_tcp_available(&self, sock: RemoteSock) -> Result<usize, HostError> {
        let ep = self.remote_stream(sock)?;
        Ok(self.stream(ep).map_or(0, |s| s.rcvq.len()))
    }

    /// `shutdown` on a remote socket.
    pub fn remote_tcp_shutdown(
        &mut self,
        sock: RemoteSock,
        how: Shutdown,
    ) -> Result<(), HostError> {
        let ep = self.remote_stream(sock)?;
        self.stream_shutdown(ep, how)
    }

    /// Aborts a remote connection with a RST; the handle is released.
    pub fn remote_tcp_abort(&mut self, sock: RemoteSock) {
        if let Ok(ep) = self.remote_stream(sock) {
            self.stream_abort(ep);
        }
    }

    /// Fetches and clears a remote socket's pending error.
    pub fn remote_take_error(&mut self, sock: RemoteSock) -> Result<(), HostError> {
        let ep = self.remote_ep(sock)?;
        let err = match self.eps.get_mut(&ep).map(|e| &mut e.kind) {
            Some(EpKind::Stream(s)) => s.so_error.take(),
            Some(EpKind::Udp(u)) => u.so_error.take(),
            _ => None,
        };
        err.map_or(Ok(()), Err)
    }

    /// Closes any remote socket as `close` would.
    pub fn remote_close(&mut self, sock: RemoteSock) {
        if let Ok(ep) = self.remote_ep(sock) {
            self.close_ep(ep);
        }
    }

    // ----- remote UDP -----

    /// A remote UDP socket at `addr` (port 0: ephemeral).
    pub fn remote_udp_bind(&mut self, addr: SocketAddr) -> Result<RemoteSock, HostError> {
        self.remote_udp_bind_in(Netns::Host, addr)
    }

    /// [`SimHost::remote_udp_bind`] in namespace `ns`.
    pub fn remote_udp_bind_in(
        &mut self,
        ns: Netns,
        addr: SocketAddr,
    ) -> Result<RemoteSock, HostError> {
        self.udp_bind_ep(ns, Side::Remote, addr).map(RemoteSock)
    }

    /// Sends one datagram from a remote UDP socket.
    pub fn remote_udp_send(
        &mut self,
        sock: RemoteSock,
        data: &[u8],
        dst: SocketAddr,
    ) -> Result<(), HostError> {
        let ep = self.remote_ep(sock)?;
        let msg = [passt_engine::host_io::UdpSend {
            dst: Some(dst),
            payload: data,
        }];
        self.udp_send_ep(ep, &msg).map(|_| ())
    }

    /// Receives one datagram on a remote UDP socket (nonblocking).
    pub fn remote_udp_recv(
        &mut self,
        sock: RemoteSock,
        buf: &mut [u8],
    ) -> Result<(usize, SocketAddr), HostError> {
        let ep = self.remote_ep(sock)?;
        let mut slots = [passt_engine::host_io::UdpRecv::new(buf)];
        self.udp_recv_ep(ep, &mut slots)?;
        let src = slots[0].src.ok_or(HostError::WouldBlock)?;
        Ok((slots[0].len, src))
    }

    /// A datagram service at `addr` (e.g. [`super::dns::DnsResponder`]).
    /// It answers from `addr`; nothing else may be bound there.
    pub fn remote_udp_serve(
        &mut self,
        addr: SocketAddr,
        app: Box<dyn DatagramApp>,
    ) -> Result<(), HostError> {
        if self.dgram_apps.contains_key(&addr)
            || self.lookup(Netns::Host, super::Proto::Udp, addr).is_some()
        {
            return Err(HostError::AddrInUse);
        }
        self.dgram_apps.insert(addr, app);
        Ok(())
    }

    /// Marks a remote IP as unreachable in the given way, keeping the rest
    /// of its profile.
    pub fn set_reach(&mut self, ip: IpAddr, reach: super::Reach) {
        let mut p = self.profile(ip).clone();
        p.reach = reach;
        self.remote_hosts.insert(ip, p);
    }
}
