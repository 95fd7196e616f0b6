//! [`SimWorld`]: the conformance [`World`] over [`SimHost`]. Peer sockets
//! are remote sockets on the simulated loopback; every wait is a bounded
//! walk through virtual time (event to event), never a sleep.

use std::net::SocketAddr;
use std::time::Duration;

use passt_conformance::{PeerSock, WAIT, World};
use passt_engine::Instant;
use passt_engine::host_io::{
    Family, HostError, HostIo, Interest, Readiness, Shutdown, SockId, Token,
};

use super::SimHost;
use super::remote::{RemoteSock, RemoteTcpState};

/// How far [`World::settle`] moves virtual time (as the real arm sleeps).
const SETTLE: Duration = Duration::from_millis(30);
const SETTLE_BRIEFLY: Duration = Duration::from_millis(1);
/// Virtual time each [`World::host`] access takes.
pub const CALL_TIME: Duration = Duration::from_micros(1);
const TOKEN_BASE: u64 = 1 << 40;

/// The conformance world over a [`SimHost`].
#[derive(Debug)]
pub struct SimWorld {
    host: SimHost,
    peers: Vec<Option<RemoteSock>>,
    events: Vec<(Token, Readiness)>,
}

impl SimWorld {
    /// A world around `host`.
    pub fn new(host: SimHost) -> SimWorld {
        SimWorld {
            host,
            peers: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The host, by value.
    pub fn into_host(self) -> SimHost {
        self.host
    }

    /// Moves to the next event if it is due by `deadline`; otherwise moves
    /// to `deadline` and returns false.
    pub fn step_until(&mut self, deadline: Instant) -> bool {
        match self.host.poll_timeout() {
            Some(t) if t <= deadline => {
                self.host.advance(t);
                true
            }
            _ => {
                self.host.advance(deadline);
                false
            }
        }
    }

    fn add(&mut self, s: RemoteSock) -> PeerSock {
        self.peers.push(Some(s));
        PeerSock((self.peers.len() - 1) as u32)
    }

    fn peer(&self, p: PeerSock) -> Result<RemoteSock, HostError> {
        self.peers
            .get(p.0 as usize)
            .copied()
            .flatten()
            .ok_or(HostError::BadSocket)
    }

    fn release(&mut self, p: PeerSock) -> Option<RemoteSock> {
        self.peers.get_mut(p.0 as usize).and_then(Option::take)
    }

    /// Retries `op` through virtual time until it stops saying
    /// `WouldBlock` or `WAIT` has passed.
    fn blocking<T>(
        &mut self,
        mut op: impl FnMut(&mut SimHost) -> Result<T, HostError>,
    ) -> Result<T, HostError> {
        let deadline = self.host.now() + WAIT;
        loop {
            match op(&mut self.host) {
                Err(HostError::WouldBlock) => {
                    if !self.step_until(deadline) {
                        return op(&mut self.host);
                    }
                }
                other => return other,
            }
        }
    }
}

fn lo(w: &SimWorld, family: Family) -> SocketAddr {
    SocketAddr::new(w.loopback(family), 0)
}

impl World for SimWorld {
    type Host = SimHost;

    /// The host, one "system call" later: virtual time moves by
    /// [`CALL_TIME`] first, as real time passes between a real program's
    /// calls. Without it, a scenario that polls in a loop without ever
    /// waiting (e.g. splicing until the destination drains) would spin at
    /// one instant while the ACKs it waits for never arrive.
    fn host(&mut self) -> &mut SimHost {
        let t = self.host.now() + CALL_TIME;
        self.host.advance(t);
        &mut self.host
    }

    fn wait_ready(
        &mut self,
        sock: SockId,
        interest: Interest,
        limit: Duration,
    ) -> Option<Readiness> {
        let token = Token(TOKEN_BASE + u64::from(sock.0));
        self.host.set_interest(sock, token, interest).ok()?;
        let deadline = self.host.now() + limit;
        let mut found;
        loop {
            self.events.clear();
            self.host.take_events(&mut self.events);
            found = self.events.iter().find_map(|&(t, r)| {
                let wanted = (interest.readable && r.readable)
                    || (interest.writable && r.writable)
                    || r.error
                    || r.hangup;
                (t == token && wanted).then_some(r)
            });
            if found.is_some() || !self.step_until(deadline) {
                break;
            }
        }
        if found.is_none() {
            self.events.clear();
            self.host.take_events(&mut self.events);
            found = self
                .events
                .iter()
                .find(|&&(t, _)| t == token)
                .map(|&(_, r)| r);
        }
        let _ = self.host.set_interest(sock, token, Interest::NONE);
        found
    }

    fn settle(&mut self) {
        let t = self.host.now() + SETTLE;
        self.host.advance(t);
    }

    fn settle_briefly(&mut self) {
        let t = self.host.now() + SETTLE_BRIEFLY;
        self.host.advance(t);
    }

    fn peer_tcp_listen(&mut self, family: Family) -> (PeerSock, SocketAddr) {
        let addr = lo(self, family);
        let l = self
            .host
            .remote_tcp_listen(addr, 128)
            .expect("loopback peer listener");
        let a = self
            .host
            .eps
            .get(&l.0)
            .map(|e| e.local)
            .expect("listener address");
        (self.add(l), a)
    }

    fn peer_tcp_accept(&mut self, listener: PeerSock) -> Result<PeerSock, HostError> {
        let l = self.peer(listener)?;
        let (s, _) = self.blocking(|h| h.remote_tcp_accept(l))?;
        Ok(self.add(s))
    }

    fn peer_tcp_connect(&mut self, addr: SocketAddr) -> Result<PeerSock, HostError> {
        let from = lo(self, Family::of(&addr.ip()));
        let s = self.host.remote_tcp_connect(from, addr)?;
        let r = self.blocking(|h| match h.remote_tcp_state(s)? {
            RemoteTcpState::Connecting => Err(HostError::WouldBlock),
            RemoteTcpState::Connected => Ok(()),
            RemoteTcpState::Closed(_) | RemoteTcpState::Listening => Err(h
                .remote_take_error(s)
                .err()
                .unwrap_or(HostError::NotConnected)),
        });
        match r {
            Ok(()) => Ok(self.add(s)),
            Err(e) => {
                self.host.remote_close(s);
                Err(if e == HostError::WouldBlock {
                    HostError::TimedOut
                } else {
                    e
                })
            }
        }
    }

    fn peer_tcp_write(&mut self, conn: PeerSock, data: &[u8]) -> Result<(), HostError> {
        let s = self.peer(conn)?;
        let mut off = 0;
        while off < data.len() {
            off += self.blocking(|h| h.remote_tcp_write(s, &data[off..]))?;
        }
        Ok(())
    }

    fn peer_tcp_read(&mut self, conn: PeerSock, buf: &mut [u8]) -> Result<usize, HostError> {
        let s = self.peer(conn)?;
        self.blocking(|h| h.remote_tcp_read(s, buf))
    }

    fn peer_tcp_shutdown_write(&mut self, conn: PeerSock) {
        if let Ok(s) = self.peer(conn) {
            let _ = self.host.remote_tcp_shutdown(s, Shutdown::Write);
        }
    }

    fn peer_tcp_abort(&mut self, conn: PeerSock) {
        if let Some(s) = self.release(conn) {
            self.host.remote_tcp_abort(s);
        }
    }

    fn peer_close(&mut self, sock: PeerSock) {
        if let Some(s) = self.release(sock) {
            self.host.remote_close(s);
        }
    }

    fn closed_tcp_port(&mut self, family: Family) -> SocketAddr {
        let ip = self.loopback(family);
        SocketAddr::new(ip, self.host.unused_port(false, ip))
    }

    fn closed_udp_port(&mut self, family: Family) -> SocketAddr {
        let ip = self.loopback(family);
        SocketAddr::new(ip, self.host.unused_port(true, ip))
    }

    fn peer_udp_bind(&mut self, family: Family) -> (PeerSock, SocketAddr) {
        let addr = lo(self, family);
        let u = self.host.remote_udp_bind(addr).expect("udp bind");
        let a = self
            .host
            .eps
            .get(&u.0)
            .map(|e| e.local)
            .expect("udp address");
        (self.add(u), a)
    }

    fn peer_udp_send(&mut self, sock: PeerSock, data: &[u8], dst: SocketAddr) {
        if let Ok(s) = self.peer(sock) {
            let _ = self.host.remote_udp_send(s, data, dst);
        }
    }

    fn peer_udp_recv(
        &mut self,
        sock: PeerSock,
        buf: &mut [u8],
    ) -> Result<(usize, SocketAddr), HostError> {
        let s = self.peer(sock)?;
        self.blocking(|h| h.remote_udp_recv(s, buf))
    }
}
