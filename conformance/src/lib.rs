//! Conformance scenarios for [`HostIo`]: what the kernel really does, written
//! down as replayable sequences of calls and expected results.
//!
//! Each scenario is generic over a [`World`]: a `HostIo` plus "the rest of
//! the network" (the peer side of every host socket) plus a way to let time
//! pass. The real world (`tests/real_kernel.rs` of this crate) runs them
//! against the Linux kernel over loopback; the simulator implements
//! [`World`] over its socket model (`passt_sim::SimWorld`) and runs the very
//! same functions, so its model is only trusted where both arms agree.
//!
//! A scenario returns `Err(Failure)` instead of panicking, so a simulator
//! can report which step diverged together with its seed. Scenarios only
//! use loopback addresses ([`World::loopback`]), bound every wait, and
//! release everything they open.
//!
//! Where the kernel leaves a choice (a loopback connect may complete at
//! once or be in progress; a FIN right after a full peek buffer may be
//! reported on that peek or the next one), the scenario accepts both and
//! says so.
//!
//! # What this crate owns and must never do
//!
//! It owns the [`World`] contract and the scenarios, and nothing else: it
//! is test support, kept out of the engine library (which ships no test
//! scenarios) and out of the simulator (which only implements [`World`]).
//! The scenarios must never touch the kernel, the clock or randomness
//! themselves: every socket, wait and sleep goes through the [`World`], so
//! the same code runs deterministically in the simulator.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use passt_engine::host_io::{
    ConnectProgress, Family, HostError, HostIo, Interest, Readiness, Shutdown, SockId, UdpRecv,
    UdpSend,
};

/// A handle on a peer-side socket, as numbered by the [`World`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct PeerSock(pub u32);

/// A scenario step that did not go as the kernel semantics say.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Failure {
    /// Scenario name.
    pub scenario: &'static str,
    /// What was expected and what happened.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.scenario, self.message)
    }
}

impl std::error::Error for Failure {}

/// Outcome of a scenario.
pub type Outcome = Result<(), Failure>;

/// A host under test and the network around it.
///
/// Peer operations stand for an ordinary blocking program on the far side
/// (a server, a client): they wait, within a bound, for what they need.
pub trait World {
    /// The implementation under test.
    type Host: HostIo;

    /// The host under test.
    fn host(&mut self) -> &mut Self::Host;

    /// The loopback address of `family` (`127.0.0.1`, `::1`).
    fn loopback(&self, family: Family) -> IpAddr {
        match family {
            Family::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Family::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        }
    }

    /// Registers `interest` for `sock` and lets time pass (at most `limit`)
    /// until it reports readiness matching it (or an error/hang-up). `None`
    /// if nothing came.
    fn wait_ready(
        &mut self,
        sock: SockId,
        interest: Interest,
        limit: Duration,
    ) -> Option<Readiness>;

    /// Lets in-flight packets arrive (e.g. an ACK, a RST, an ICMP error).
    fn settle(&mut self);

    /// Lets loopback segments just written arrive, without a full
    /// [`World::settle`] (used inside loops).
    fn settle_briefly(&mut self) {
        self.settle();
    }

    /// A TCP listener on loopback, and its address.
    fn peer_tcp_listen(&mut self, family: Family) -> (PeerSock, SocketAddr);
    /// Accepts one connection on a peer listener.
    fn peer_tcp_accept(&mut self, listener: PeerSock) -> Result<PeerSock, HostError>;
    /// Connects to `addr` (blocking, bounded).
    fn peer_tcp_connect(&mut self, addr: SocketAddr) -> Result<PeerSock, HostError>;
    /// Writes all of `data`.
    fn peer_tcp_write(&mut self, conn: PeerSock, data: &[u8]) -> Result<(), HostError>;
    /// Reads what is there (waiting, bounded, for at least one byte).
    /// `Ok(0)` at end of stream, `WouldBlock` if nothing came in time.
    fn peer_tcp_read(&mut self, conn: PeerSock, buf: &mut [u8]) -> Result<usize, HostError>;
    /// `shutdown(SHUT_WR)`: sends the peer's FIN.
    fn peer_tcp_shutdown_write(&mut self, conn: PeerSock);
    /// Aborts the connection: the peer sends a RST (`SO_LINGER {1, 0}` +
    /// `close`). The handle is released.
    fn peer_tcp_abort(&mut self, conn: PeerSock);
    /// Closes a peer socket (any kind).
    fn peer_close(&mut self, sock: PeerSock);
    /// A loopback TCP address where nothing listens (connects get a RST).
    fn closed_tcp_port(&mut self, family: Family) -> SocketAddr;
    /// A loopback UDP address where nothing is bound.
    fn closed_udp_port(&mut self, family: Family) -> SocketAddr;
    /// A UDP socket on loopback, and its address.
    fn peer_udp_bind(&mut self, family: Family) -> (PeerSock, SocketAddr);
    /// Sends one datagram.
    fn peer_udp_send(&mut self, sock: PeerSock, data: &[u8], dst: SocketAddr);
    /// Receives one datagram (bounded wait).
    fn peer_udp_recv(
        &mut self,
        sock: PeerSock,
        buf: &mut [u8],
    ) -> Result<(usize, SocketAddr), HostError>;
}

/// How long a scenario waits for any one thing.
pub const WAIT: Duration = Duration::from_secs(3);

/// Every scenario, by name, for runners that want to iterate.
pub type Scenario<W> = fn(&mut W, Family) -> Outcome;

/// All scenarios, in a stable order.
pub fn all<W: World>() -> Vec<(&'static str, Scenario<W>)> {
    vec![
        ("connect_then_writable", connect_then_writable::<W>),
        ("connect_refused", connect_refused::<W>),
        ("listen_accept", listen_accept::<W>),
        ("listen_addr_in_use", listen_addr_in_use::<W>),
        ("partial_writes", partial_writes::<W>),
        ("peek_offset_discard", peek_offset_discard::<W>),
        ("fin_after_data", fin_after_data::<W>),
        (
            "close_with_unread_data_resets",
            close_with_unread_data_resets::<W>,
        ),
        ("abort_resets", abort_resets::<W>),
        ("shutdown_write", shutdown_write::<W>),
        ("peer_reset_is_reported", peer_reset_is_reported::<W>),
        ("tcp_info_counts", tcp_info_counts::<W>),
        ("splice_moves_bytes", splice_moves_bytes::<W>),
        (
            "splice_into_full_destination",
            splice_into_full_destination::<W>,
        ),
        ("udp_batches", udp_batches::<W>),
        ("udp_port_unreachable", udp_port_unreachable::<W>),
    ]
}

/// The byte at position `i` of a test stream: period 251, so an off-by-N
/// anywhere (N < 251) shows.
pub fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

fn pattern_vec(start: usize, len: usize) -> Vec<u8> {
    (start..start + len).map(pattern).collect()
}

macro_rules! check {
    ($name:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(Failure { scenario: $name, message: format!($($fmt)+) });
        }
    };
}

fn fail<T>(scenario: &'static str, message: String) -> Result<T, Failure> {
    Err(Failure { scenario, message })
}

/// Host connects to a peer listener; returns (host socket, peer connection).
pub fn connected_pair<W: World>(
    w: &mut W,
    family: Family,
    name: &'static str,
) -> Result<(SockId, PeerSock, PeerSock), Failure> {
    let (listener, addr) = w.peer_tcp_listen(family);
    let (sock, progress) = match w.host().tcp_connect(None, addr) {
        Ok(v) => v,
        Err(e) => return fail(name, format!("tcp_connect({addr}) failed: {e:?}")),
    };
    if progress == ConnectProgress::InProgress {
        let r = w.wait_ready(sock, Interest::WRITE, WAIT);
        check!(
            name,
            r.is_some_and(|r| r.writable),
            "connect never became writable: {r:?}"
        );
    }
    check!(
        name,
        w.host().take_error(sock).is_ok(),
        "take_error after connect not Ok"
    );
    let conn = match w.peer_tcp_accept(listener) {
        Ok(c) => c,
        Err(e) => return fail(name, format!("peer accept failed: {e:?}")),
    };
    check!(
        name,
        w.host().tcp_set_nodelay(sock, true).is_ok(),
        "tcp_set_nodelay failed"
    );
    Ok((sock, conn, listener))
}

/// Nonblocking connect to a listener: `InProgress` (or `Connected`), then
/// writable, then `take_error` is `Ok`; the local address is on loopback.
pub fn connect_then_writable<W: World>(w: &mut W, family: Family) -> Outcome {
    const N: &str = "connect_then_writable";
    let (sock, conn, listener) = connected_pair(w, family, N)?;
    let local = w.host().local_addr(sock);
    check!(
        N,
        local.is_ok_and(|a| a.ip() == w.loopback(family) && a.port() != 0),
        "local_addr {local:?}"
    );
    w.host().close(sock);
    w.peer_close(conn);
    w.peer_close(listener);
    Ok(())
}

/// Connect to a port nobody listens on: `ConnectionRefused`, either at once
/// or through `take_error` after the socket reports readiness.
pub fn connect_refused<W: World>(w: &mut W, family: Family) -> Outcome {
    const N: &str = "connect_refused";
    let addr = w.closed_tcp_port(family);
    match w.host().tcp_connect(None, addr) {
        Err(HostError::ConnectionRefused) => Ok(()),
        Err(e) => fail(N, format!("tcp_connect: {e:?}")),
        Ok((sock, progress)) => {
            check!(
                N,
                progress == ConnectProgress::InProgress,
                "connected to a closed port"
            );
            let r = w.wait_ready(sock, Interest::WRITE, WAIT);
            check!(
                N,
                r.is_some_and(|r| r.error || r.writable),
                "no readiness: {r:?}"
            );
            let e = w.host().take_error(sock);
            check!(
                N,
                e == Err(HostError::ConnectionRefused),
                "take_error: {e:?}"
            );
            let again = w.host().take_error(sock);
            check!(N, again.is_ok(), "error not cleared: {again:?}");
            w.host().close(sock);
            Ok(())
        }
    }
}

/// Host listens, the peer connects: readable listener, one accept with the
/// listener's local address, then `WouldBlock`; data flows host -> peer.
pub fn listen_accept<W: World>(w: &mut W, family: Family) -> Outcome {
    const N: &str = "listen_accept";
    let lo = SocketAddr::new(w.loopback(family), 0);
    let listener = match w.host().tcp_listen(lo, 16) {
        Ok(l) => l,
        Err(e) => return fail(N, format!("tcp_listen: {e:?}")),
    };
    let Ok(laddr) = w.host().local_addr(listener) else {
        return fail(N, "listener local_addr".into());
    };
    check!(N, laddr.port() != 0, "listener has no port");
    let conn = match w.peer_tcp_connect(laddr) {
        Ok(c) => c,
        Err(e) => return fail(N, format!("peer connect: {e:?}")),
    };
    let r = w.wait_ready(listener, Interest::READ, WAIT);
    check!(
        N,
        r.is_some_and(|r| r.readable),
        "listener not readable: {r:?}"
    );
    let (sock, peer, local) = match w.host().tcp_accept(listener) {
        Ok(v) => v,
        Err(e) => return fail(N, format!("tcp_accept: {e:?}")),
    };
    check!(
        N,
        local == laddr,
        "accepted on {local}, listening on {laddr}"
    );
    check!(N, peer.ip() == w.loopback(family), "peer {peer}");
    let again = w.host().tcp_accept(listener);
    check!(
        N,
        again == Err(HostError::WouldBlock),
        "second accept: {again:?}"
    );
    let sent = w.host().tcp_send(sock, b"hello");
    check!(N, sent == Ok(5), "send: {sent:?}");
    let mut buf = [0u8; 16];
    let got = w.peer_tcp_read(conn, &mut buf);
    check!(
        N,
        got == Ok(5) && &buf[..5] == b"hello",
        "peer read {got:?}"
    );
    w.host().close(sock);
    w.host().close(listener);
    w.peer_close(conn);
    Ok(())
}

/// A second listener on the same address: `AddrInUse`.
pub fn listen_addr_in_use<W: World>(w: &mut W, family: Family) -> Outcome {
    const N: &str = "listen_addr_in_use";
    let lo = SocketAddr::new(w.loopback(family), 0);
    let Ok(l1) = w.host().tcp_listen(lo, 4) else {
        return fail(N, "first listen".into());
    };
    let Ok(addr) = w.host().local_addr(l1) else {
        return fail(N, "local_addr".into());
    };
    let second = w.host().tcp_listen(addr, 4);
    check!(
        N,
        second == Err(HostError::AddrInUse),
        "second listen: {second:?}"
    );
    w.host().close(l1);
    Ok(())
}

/// The peer does not read: sends are cut short, then `WouldBlock`; every
/// byte the host accepted reaches the peer, in order, and nothing more.
pub fn partial_writes<W: World>(w: &mut W, family: Family) -> Outcome {
    const N: &str = "partial_writes";
    let (sock, conn, listener) = connected_pair(w, family, N)?;
    // Larger than the largest send buffer the kernel allows by default
    // (tcp_wmem max 4 MiB): a single send cannot take it all.
    const CHUNK: usize = 8 << 20;
    let chunk = pattern_vec(0, CHUNK + 251);
    let mut total = 0usize;
    let mut short = false;
    let mut would_block = false;
    for _ in 0..64 {
        let off = total % 251;
        match w.host().tcp_send(sock, &chunk[off..off + CHUNK]) {
            Ok(n) => {
                check!(N, n > 0 && n <= CHUNK, "send returned {n}");
                short |= n < CHUNK;
                total += n;
            }
            Err(HostError::WouldBlock) => {
                would_block = true;
                break;
            }
            Err(e) => return fail(N, format!("send: {e:?}")),
        }
    }
    check!(N, short, "no send was partial");
    check!(N, would_block, "send never returned WouldBlock");
    // Drain on the peer side and compare.
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0usize;
    while got < total {
        match w.peer_tcp_read(conn, &mut buf) {
            Ok(0) => return fail(N, format!("EOF after {got} of {total}")),
            Ok(n) => {
                for (k, b) in buf[..n].iter().enumerate() {
                    if *b != pattern(got + k) {
                        return fail(N, format!("byte {} differs", got + k));
                    }
                }
                got += n;
            }
            Err(e) => return fail(N, format!("peer read after {got}/{total}: {e:?}")),
        }
    }
    w.host().close(sock);
    w.peer_close(conn);
    w.peer_close(listener);
    Ok(())
}

/// Peeking at offsets copies without consuming; discarding consumes from
/// the head and moves later offsets; past the data is `WouldBlock`.
pub fn peek_offset_discard<W: World>(w: &mut W, family: Family) -> Outcome {
    const N: &str = "peek_offset_discard";
    let (sock, conn, listener) = connected_pair(w, family, N)?;
    const LEN: usize = 3000;
    if let Err(e) = w.peer_tcp_write(conn, &pattern_vec(0, LEN)) {
        return fail(N, format!("peer write: {e:?}"));
    }
    let r = w.wait_ready(sock, Interest::READ, WAIT);
    check!(N, r.is_some_and(|r| r.readable), "not readable: {r:?}");
    w.settle();
    let mut buf = [0u8; 64];
    let host = w.host();
    let p = host.tcp_peek(sock, 0, &mut buf[..10]);
    check!(N, p.is_ok_and(|p| p.len == 10 && !p.fin), "peek(0): {p:?}");
    check!(N, buf[..10] == pattern_vec(0, 10)[..], "peek(0) bytes");
    let p = host.tcp_peek(sock, 1000, &mut buf[..20]);
    check!(N, p.is_ok_and(|p| p.len == 20), "peek(1000): {p:?}");
    check!(
        N,
        buf[..20] == pattern_vec(1000, 20)[..],
        "peek(1000) bytes"
    );
    // Backwards again: nothing was consumed.
    let p = host.tcp_peek(sock, 5, &mut buf[..10]);
    check!(N, p.is_ok_and(|p| p.len == 10), "peek(5): {p:?}");
    check!(N, buf[..10] == pattern_vec(5, 10)[..], "peek(5) bytes");
    // Reaching the end: a short peek, no FIN.
    let p = host.tcp_peek(sock, LEN - 8, &mut buf);
    check!(
        N,
        p.is_ok_and(|p| p.len == 8 && !p.fin),
        "peek(end-8): {p:?}"
    );
    check!(
        N,
        buf[..8] == pattern_vec(LEN - 8, 8)[..],
        "peek(end-8) bytes"
    );
    let p = host.tcp_peek(sock, LEN, &mut buf);
    check!(N, p == Err(HostError::WouldBlock), "peek past data: {p:?}");
    let info = host.tcp_info(sock);
    check!(
        N,
        info.is_ok_and(|i| i.recv_queued as usize == LEN),
        "recv_queued {info:?}"
    );
    // Consume 4 bytes: offsets now count from byte 4 of the stream.
    let d = host.tcp_discard(sock, 4);
    check!(N, d == Ok(4), "discard(4): {d:?}");
    let p = host.tcp_peek(sock, 0, &mut buf[..6]);
    check!(N, p.is_ok_and(|p| p.len == 6), "peek after discard: {p:?}");
    check!(
        N,
        buf[..6] == pattern_vec(4, 6)[..],
        "peek after discard bytes"
    );
    let p = host.tcp_peek(sock, 996, &mut buf[..4]);
    check!(N, p.is_ok_and(|p| p.len == 4), "peek(996): {p:?}");
    check!(
        N,
        buf[..4] == pattern_vec(1000, 4)[..],
        "peek(996) bytes after discard"
    );
    // The usual rhythm: peek a segment, the guest ACKs part of it, continue
    // from where the peek stopped (offsets shift by what was consumed).
    let p = host.tcp_peek(sock, 0, &mut buf[..50]);
    check!(N, p.is_ok_and(|p| p.len == 50), "peek(0, 50): {p:?}");
    let d = host.tcp_discard(sock, 30);
    check!(N, d == Ok(30), "discard(30): {d:?}");
    let p = host.tcp_peek(sock, 50, &mut buf[..10]);
    check!(N, p.is_ok_and(|p| p.len == 10), "peek(50): {p:?}");
    check!(
        N,
        buf[..10] == pattern_vec(84, 10)[..],
        "peek(50) after discard(30) bytes"
    );
    let p = host.tcp_peek(sock, 30, &mut buf[..10]);
    check!(N, p.is_ok_and(|p| p.len == 10), "peek(30): {p:?}");
    check!(N, buf[..10] == pattern_vec(64, 10)[..], "peek(30) bytes");
    // Discard more than queued: takes what is there.
    let d = host.tcp_discard(sock, LEN);
    check!(N, d == Ok(LEN - 34), "discard(all): {d:?}");
    let d = host.tcp_discard(sock, 10);
    check!(N, d == Ok(0), "discard(empty): {d:?}");
    let p = host.tcp_peek(sock, 0, &mut buf);
    check!(N, p == Err(HostError::WouldBlock), "peek empty: {p:?}");
    w.host().close(sock);
    w.peer_close(conn);
    w.peer_close(listener);
    Ok(())
}

/// Data then the peer's FIN: `fin` is only reported once the peek reaches
/// the end of the data; then `(0, fin)` at and past the end, until the data
/// is consumed, and after.
pub fn fin_after_data<W: World>(w: &mut W, family: Family) -> Outcome {
    const N: &str = "fin_after_data";
    let (sock, conn, listener) = connected_pair(w, family, N)?;
    if let Err(e) = w.peer_tcp_write(conn, &pattern_vec(0, 100)) {
        return fail(N, format!("peer write: {e:?}"));
    }
    let r = w.wait_ready(sock, Interest::READ, WAIT);
    check!(N, r.is_some_and(|r| r.readable), "not readable: {r:?}");
    w.settle();
    let mut buf = [0u8; 200];
    let p = w.host().tcp_peek(sock, 0, &mut buf);
    check!(
        N,
        p.is_ok_and(|p| p.len == 100 && !p.fin),
        "before FIN: {p:?}"
    );
    w.peer_tcp_shutdown_write(conn);
    w.settle();
    let r = w.wait_ready(sock, Interest::READ, WAIT);
    check!(
        N,
        r.is_some_and(|r| r.readable && r.read_closed),
        "after FIN: {r:?}"
    );
    let host = w.host();
    let p = host.tcp_peek(sock, 0, &mut buf);
    check!(
        N,
        p.is_ok_and(|p| p.len == 100 && p.fin),
        "short peek to the end: {p:?}"
    );
    check!(N, buf[..100] == pattern_vec(0, 100)[..], "bytes");
    // A peek that exactly fills the buffer may report the FIN late.
    let p = host.tcp_peek(sock, 60, &mut buf[..40]);
    check!(N, p.is_ok_and(|p| p.len == 40), "exact peek: {p:?}");
    let p = host.tcp_peek(sock, 100, &mut buf);
    check!(
        N,
        p.is_ok_and(|p| p.len == 0 && p.fin),
        "peek at end: {p:?}"
    );
    let p = host.tcp_peek(sock, 30, &mut buf[..10]);
    check!(
        N,
        p.is_ok_and(|p| p.len == 10 && !p.fin),
        "peek mid-stream: {p:?}"
    );
    let d = host.tcp_discard(sock, 100);
    check!(N, d == Ok(100), "discard: {d:?}");
    let p = host.tcp_peek(sock, 0, &mut buf);
    check!(
        N,
        p.is_ok_and(|p| p.len == 0 && p.fin),
        "peek after consuming: {p:?}"
    );
    // Our direction still works (half-close).
    let s = host.tcp_send(sock, b"bye");
    check!(N, s == Ok(3), "send after peer FIN: {s:?}");
    let mut small = [0u8; 8];
    let got = w.peer_tcp_read(conn, &mut small);
    check!(N, got == Ok(3), "peer read: {got:?}");
    w.host().close(sock);
    let got = w.peer_tcp_read(conn, &mut small);
    check!(N, got == Ok(0), "peer sees EOF: {got:?}");
    w.peer_close(conn);
    w.peer_close(listener);
    Ok(())
}

/// Closing with unread data sends a RST (RFC 2525 §2.17): the peer's read
/// fails with `ConnectionReset`.
pub fn close_with_unread_data_resets<W: World>(w: &mut W, family: Family) -> Outcome {
    const N: &str = "close_with_unread_data_resets";
    let (sock, conn, listener) = connected_pair(w, family, N)?;
    if let Err(e) = w.peer_tcp_write(conn, b"unread") {
        return fail(N, format!("peer write: {e:?}"));
    }
    let r = w.wait_ready(sock, Interest::READ, WAIT);
    check!(N, r.is_some_and(|r| r.readable), "not readable: {r:?}");
    w.host().close(sock);
    w.settle();
    let mut buf = [0u8; 8];
    let got = w.peer_tcp_read(conn, &mut buf);
    check!(
        N,
        got == Err(HostError::ConnectionReset),
        "peer read: {got:?}"
    );
    w.peer_close(conn);
    w.peer_close(listener);
    Ok(())
}

/// `tcp_abort` resets even with nothing unread.
pub fn abort_resets<W: World>(w: &mut W, family: Family) -> Outcome {
    const N: &str = "abort_resets";
    let (sock, conn, listener) = connected_pair(w, family, N)?;
    w.host().tcp_abort(sock);
    w.settle();
    let mut buf = [0u8; 8];
    let got = w.peer_tcp_read(conn, &mut buf);
    check!(
        N,
        got == Err(HostError::ConnectionReset),
        "peer read: {got:?}"
    );
    w.peer_close(conn);
    w.peer_close(listener);
    Ok(())
}

/// `shutdown(Write)`: the peer reads the data then EOF; our later sends are
/// `BrokenPipe`; the peer can still send to us.
pub fn shutdown_write<W: World>(w: &mut W, family: Family) -> Outcome {
    const N: &str = "shutdown_write";
    let (sock, conn, listener) = connected_pair(w, family, N)?;
    let s = w.host().tcp_send(sock, b"last");
    check!(N, s == Ok(4), "send: {s:?}");
    let sh = w.host().tcp_shutdown(sock, Shutdown::Write);
    check!(N, sh.is_ok(), "shutdown: {sh:?}");
    let s = w.host().tcp_send(sock, b"more");
    check!(
        N,
        s == Err(HostError::BrokenPipe),
        "send after shutdown: {s:?}"
    );
    let mut buf = [0u8; 8];
    let got = w.peer_tcp_read(conn, &mut buf);
    check!(
        N,
        got == Ok(4) && &buf[..4] == b"last",
        "peer read: {got:?}"
    );
    let got = w.peer_tcp_read(conn, &mut buf);
    check!(N, got == Ok(0), "peer EOF: {got:?}");
    if let Err(e) = w.peer_tcp_write(conn, b"back") {
        return fail(N, format!("peer write after our FIN: {e:?}"));
    }
    let r = w.wait_ready(sock, Interest::READ, WAIT);
    check!(N, r.is_some_and(|r| r.readable), "not readable: {r:?}");
    let p = w.host().tcp_peek(sock, 0, &mut buf);
    check!(N, p.is_ok_and(|p| p.len == 4), "peek: {p:?}");
    w.host().close(sock);
    w.peer_close(conn);
    w.peer_close(listener);
    Ok(())
}

/// The peer resets: the socket reports an error or hang-up, the next
/// operation fails with `ConnectionReset` (consuming the error), later
/// sends with `BrokenPipe`.
pub fn peer_reset_is_reported<W: World>(w: &mut W, family: Family) -> Outcome {
    const N: &str = "peer_reset_is_reported";
    let (sock, conn, listener) = connected_pair(w, family, N)?;
    w.peer_tcp_abort(conn);
    w.settle();
    let r = w.wait_ready(sock, Interest::READ, WAIT);
    check!(
        N,
        r.is_some_and(|r| r.error || r.hangup),
        "no error readiness: {r:?}"
    );
    let mut buf = [0u8; 8];
    let p = w.host().tcp_peek(sock, 0, &mut buf);
    check!(N, p == Err(HostError::ConnectionReset), "peek: {p:?}");
    let s = w.host().tcp_send(sock, b"x");
    check!(
        N,
        s == Err(HostError::BrokenPipe),
        "send after reset: {s:?}"
    );
    let e = w.host().take_error(sock);
    check!(N, e.is_ok(), "error not consumed: {e:?}");
    w.host().close(sock);
    w.peer_close(listener);
    Ok(())
}

/// `tcp_info`: MSS known, bytes acked and received counted, queues sized.
pub fn tcp_info_counts<W: World>(w: &mut W, family: Family) -> Outcome {
    const N: &str = "tcp_info_counts";
    let (sock, conn, listener) = connected_pair(w, family, N)?;
    let Ok(before) = w.host().tcp_info(sock) else {
        return fail(N, "tcp_info".into());
    };
    check!(N, before.snd_mss > 0, "snd_mss {}", before.snd_mss);
    check!(N, before.send_buf > 0, "send_buf {}", before.send_buf);
    check!(N, before.snd_wnd > 0, "snd_wnd {}", before.snd_wnd);
    check!(
        N,
        before.send_queued == 0 && before.recv_queued == 0,
        "{before:?}"
    );
    const LEN: usize = 5000;
    let data = pattern_vec(0, LEN);
    let s = w.host().tcp_send(sock, &data);
    check!(N, s == Ok(LEN), "send: {s:?}");
    let mut buf = vec![0u8; LEN];
    let mut got = 0;
    while got < LEN {
        match w.peer_tcp_read(conn, &mut buf[got..]) {
            Ok(n) if n > 0 => got += n,
            other => return fail(N, format!("peer read: {other:?}")),
        }
    }
    w.settle();
    let Ok(after) = w.host().tcp_info(sock) else {
        return fail(N, "tcp_info".into());
    };
    check!(
        N,
        after.bytes_acked >= before.bytes_acked + LEN as u64,
        "bytes_acked {} -> {}",
        before.bytes_acked,
        after.bytes_acked
    );
    check!(
        N,
        after.send_queued == 0,
        "send_queued {}",
        after.send_queued
    );
    if let Err(e) = w.peer_tcp_write(conn, &data[..777]) {
        return fail(N, format!("peer write: {e:?}"));
    }
    let r = w.wait_ready(sock, Interest::READ, WAIT);
    check!(N, r.is_some_and(|r| r.readable), "not readable: {r:?}");
    w.settle();
    let Ok(rx) = w.host().tcp_info(sock) else {
        return fail(N, "tcp_info".into());
    };
    check!(N, rx.recv_queued == 777, "recv_queued {}", rx.recv_queued);
    check!(
        N,
        rx.bytes_received >= before.bytes_received + 777,
        "bytes_received {} -> {}",
        before.bytes_received,
        rx.bytes_received
    );
    check!(N, rx.send_space() > 0, "send_space {rx:?}");
    w.host().close(sock);
    w.peer_close(conn);
    w.peer_close(listener);
    Ok(())
}

/// Splicing between two connections moves bytes exactly, in order, and
/// reports the source's end of stream once everything was moved.
pub fn splice_moves_bytes<W: World>(w: &mut W, family: Family) -> Outcome {
    const N: &str = "splice_moves_bytes";
    let (src, src_peer, l1) = connected_pair(w, family, N)?;
    let (dst, dst_peer, l2) = connected_pair(w, family, N)?;
    const LEN: usize = 300_000;
    let mut moved = 0usize;
    let mut written = 0usize;
    let mut received = 0usize;
    let mut eof = false;
    let mut buf = vec![0u8; 1 << 16];
    for _ in 0..10_000 {
        if written < LEN {
            let n = (LEN - written).min(50_000);
            if let Err(e) = w.peer_tcp_write(src_peer, &pattern_vec(written, n)) {
                return fail(N, format!("peer write: {e:?}"));
            }
            written += n;
            if written == LEN {
                w.peer_tcp_shutdown_write(src_peer);
            }
        }
        match w.host().tcp_splice(src, dst, 1 << 20) {
            Ok(s) => {
                moved += s.moved;
                eof |= s.src_eof;
            }
            Err(HostError::WouldBlock) => {
                let _ = w.wait_ready(src, Interest::READ, Duration::from_millis(50));
            }
            Err(e) => return fail(N, format!("splice: {e:?}")),
        }
        // Drain the destination's peer so the destination never stays full.
        while received < moved {
            match w.peer_tcp_read(dst_peer, &mut buf) {
                Ok(0) => return fail(N, "destination EOF".into()),
                Ok(n) => {
                    for (k, b) in buf[..n].iter().enumerate() {
                        if *b != pattern(received + k) {
                            return fail(N, format!("byte {} differs", received + k));
                        }
                    }
                    received += n;
                }
                Err(e) => return fail(N, format!("destination read: {e:?}")),
            }
        }
        if eof {
            break;
        }
    }
    check!(N, moved == LEN, "moved {moved} of {LEN}");
    check!(N, received == LEN, "received {received} of {LEN}");
    check!(N, eof, "no src_eof");
    for s in [src, dst] {
        w.host().close(s);
    }
    for p in [src_peer, dst_peer, l1, l2] {
        w.peer_close(p);
    }
    Ok(())
}

/// Splicing into a destination whose peer does not read: splicing stops
/// and says the destination is full (`sink_full`) with bytes still unmoved; once the peer drains, every byte
/// arrives exactly once and in order (nothing read from the source is lost
/// on the way).
pub fn splice_into_full_destination<W: World>(w: &mut W, family: Family) -> Outcome {
    const N: &str = "splice_into_full_destination";
    let (src, src_peer, l1) = connected_pair(w, family, N)?;
    let (dst, dst_peer, l2) = connected_pair(w, family, N)?;
    const CHUNK: usize = 64 * 1024;
    const LIMIT: usize = 32 << 20;
    let mut written = 0usize;
    let mut moved = 0usize;
    let mut full = false;
    // Phase 1: feed the source, splice, never read the destination.
    while written < LIMIT && !full {
        if let Err(e) = w.peer_tcp_write(src_peer, &pattern_vec(written, CHUNK)) {
            return fail(N, format!("peer write at {written}: {e:?}"));
        }
        written += CHUNK;
        w.settle_briefly();
        for _ in 0..1000 {
            match w.host().tcp_splice(src, dst, usize::MAX) {
                Ok(s) => {
                    moved += s.moved;
                    if s.sink_full {
                        full = true;
                        break;
                    }
                }
                Err(HostError::WouldBlock) => break,
                Err(e) => return fail(N, format!("splice: {e:?}")),
            }
        }
    }
    check!(N, full, "destination never reported full ({written} bytes)");
    check!(N, moved < written, "full, yet moved {moved} of {written}");
    w.peer_tcp_shutdown_write(src_peer);
    // Phase 2: drain the destination, keep splicing, check every byte.
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0usize;
    let mut eof = false;
    for _ in 0..100_000 {
        if received == written && eof {
            break;
        }
        match w.host().tcp_splice(src, dst, usize::MAX) {
            Ok(s) => {
                moved += s.moved;
                eof |= s.src_eof;
            }
            Err(HostError::WouldBlock) => {}
            Err(e) => return fail(N, format!("splice: {e:?}")),
        }
        if received < moved {
            match w.peer_tcp_read(dst_peer, &mut buf) {
                Ok(0) => return fail(N, "destination EOF".into()),
                Ok(n) => {
                    for (k, b) in buf[..n].iter().enumerate() {
                        if *b != pattern(received + k) {
                            return fail(N, format!("byte {} differs", received + k));
                        }
                    }
                    received += n;
                }
                Err(e) => return fail(N, format!("destination read: {e:?}")),
            }
        }
    }
    check!(N, moved == written, "moved {moved} of {written}");
    check!(N, received == written, "received {received} of {written}");
    check!(N, eof, "no src_eof");
    for s in [src, dst] {
        w.host().close(s);
    }
    for p in [src_peer, dst_peer, l1, l2] {
        w.peer_close(p);
    }
    Ok(())
}

/// Batches of datagrams both ways, with sources, truncation and `WouldBlock`
/// on an empty queue.
pub fn udp_batches<W: World>(w: &mut W, family: Family) -> Outcome {
    const N: &str = "udp_batches";
    let lo = SocketAddr::new(w.loopback(family), 0);
    let sock = match w.host().udp_bind(lo) {
        Ok(s) => s,
        Err(e) => return fail(N, format!("udp_bind: {e:?}")),
    };
    let Ok(haddr) = w.host().local_addr(sock) else {
        return fail(N, "local_addr".into());
    };
    let (peer, paddr) = w.peer_udp_bind(family);
    let msgs = [
        UdpSend {
            dst: Some(paddr),
            payload: b"one",
        },
        UdpSend {
            dst: Some(paddr),
            payload: b"two!",
        },
        UdpSend {
            dst: Some(paddr),
            payload: &[7u8; 1200],
        },
    ];
    let sent = w.host().udp_send_batch(sock, &msgs);
    check!(N, sent == Ok(3), "send_batch: {sent:?}");
    let mut buf = [0u8; 2048];
    for m in &msgs {
        let got = w.peer_udp_recv(peer, &mut buf);
        check!(
            N,
            got.is_ok_and(|(n, src)| src == haddr && buf[..n] == *m.payload),
            "peer got {got:?}"
        );
    }
    let mut empty_slot = [0u8; 16];
    let mut slots = [UdpRecv::new(&mut empty_slot)];
    let r = w.host().udp_recv_batch(sock, &mut slots);
    check!(N, r == Err(HostError::WouldBlock), "recv on empty: {r:?}");
    w.peer_udp_send(peer, b"alpha", haddr);
    w.peer_udp_send(peer, b"beta", haddr);
    w.peer_udp_send(peer, &[9u8; 100], haddr);
    let r = w.wait_ready(sock, Interest::READ, WAIT);
    check!(N, r.is_some_and(|r| r.readable), "not readable: {r:?}");
    w.settle();
    let (mut b0, mut b1, mut b2, mut b3) = ([0u8; 64], [0u8; 64], [0u8; 10], [0u8; 64]);
    let mut slots = [
        UdpRecv::new(&mut b0),
        UdpRecv::new(&mut b1),
        UdpRecv::new(&mut b2),
        UdpRecv::new(&mut b3),
    ];
    let got = w.host().udp_recv_batch(sock, &mut slots);
    check!(N, got == Ok(3), "recv_batch: {got:?}");
    check!(
        N,
        slots[0].len == 5 && &slots[0].buf[..5] == b"alpha" && !slots[0].truncated,
        "slot 0 {:?}",
        slots[0]
    );
    check!(
        N,
        slots[1].len == 4 && &slots[1].buf[..4] == b"beta",
        "slot 1"
    );
    check!(
        N,
        slots[2].len == 10 && slots[2].truncated,
        "slot 2 {:?}",
        slots[2]
    );
    check!(
        N,
        slots[..3].iter().all(|s| s.src == Some(paddr)),
        "sources"
    );
    w.host().close(sock);
    w.peer_close(peer);
    Ok(())
}

/// A datagram to a closed port draws ICMP port unreachable (RFC 792 type 3
/// code 3, RFC 4443 type 1 code 4): the socket reports an error, a receive
/// returns `ConnectionRefused`, and the error queue holds the details.
pub fn udp_port_unreachable<W: World>(w: &mut W, family: Family) -> Outcome {
    const N: &str = "udp_port_unreachable";
    let lo = SocketAddr::new(w.loopback(family), 0);
    let sock = match w.host().udp_bind(lo) {
        Ok(s) => s,
        Err(e) => return fail(N, format!("udp_bind: {e:?}")),
    };
    let closed = w.closed_udp_port(family);
    let sent = w.host().udp_send_batch(
        sock,
        &[UdpSend {
            dst: Some(closed),
            payload: b"anyone?",
        }],
    );
    check!(N, sent == Ok(1), "send: {sent:?}");
    let r = w.wait_ready(sock, Interest::READ, WAIT);
    check!(N, r.is_some_and(|r| r.error), "no error readiness: {r:?}");
    let mut b = [0u8; 32];
    let mut slots = [UdpRecv::new(&mut b)];
    let got = w.host().udp_recv_batch(sock, &mut slots);
    check!(N, got == Err(HostError::ConnectionRefused), "recv: {got:?}");
    let report = w.host().udp_recv_error(sock);
    let (ty, code) = match family {
        Family::V4 => (3, 3),
        Family::V6 => (1, 4),
    };
    match report {
        Ok(Some(rep)) => {
            check!(N, rep.icmp_type == ty && rep.icmp_code == code, "{rep:?}");
            check!(N, rep.dst == closed, "dst {} vs {closed}", rep.dst);
            check!(N, rep.error == HostError::ConnectionRefused, "{rep:?}");
            check!(N, rep.origin == Some(w.loopback(family)), "origin {rep:?}");
            // The kernel hands back the quoted payload: all 7 bytes here.
            check!(N, rep.payload_len == Some(7), "payload_len {rep:?}");
        }
        other => return fail(N, format!("udp_recv_error: {other:?}")),
    }
    let again = w.host().udp_recv_error(sock);
    check!(N, again == Ok(None), "queue not drained: {again:?}");
    w.host().close(sock);
    Ok(())
}

/// An echo request to loopback over a ping socket comes back as an echo
/// reply carrying the socket's identifier. Returns `Ok(false)` (skipped)
/// when the host refuses ping sockets with `PermissionDenied`.
pub fn ping_echo<W: World>(w: &mut W, family: Family, id: u16) -> Result<bool, Failure> {
    const N: &str = "ping_echo";
    let sock = match w.host().ping_open(family, id) {
        Ok(s) => s,
        Err(HostError::PermissionDenied) => return Ok(false),
        Err(e) => return fail(N, format!("ping_open: {e:?}")),
    };
    let Ok(local) = w.host().local_addr(sock) else {
        return fail(N, "local_addr".into());
    };
    let bound_id = local.port();
    check!(N, bound_id == id, "bound id {bound_id}, asked {id}");
    let (req, rep) = match family {
        Family::V4 => (8u8, 0u8),
        Family::V6 => (128u8, 129u8),
    };
    // type, code, checksum (kernel fills), id (kernel rewrites), seq, data.
    let msg = [req, 0, 0, 0, 0x12, 0x34, 0x00, 0x07, b'p', b'i', b'n', b'g'];
    let dst = w.loopback(family);
    let s = w.host().ping_send(sock, dst, &msg);
    check!(N, s.is_ok(), "ping_send: {s:?}");
    let r = w.wait_ready(sock, Interest::READ, WAIT);
    check!(N, r.is_some_and(|r| r.readable), "no reply: {r:?}");
    let mut buf = [0u8; 64];
    match w.host().ping_recv(sock, &mut buf) {
        Ok((n, src)) => {
            check!(N, n == msg.len(), "reply length {n}");
            check!(N, src == dst, "reply from {src}");
            check!(N, buf[0] == rep && buf[1] == 0, "type/code {:?}", &buf[..2]);
            let rid = u16::from_be_bytes([buf[4], buf[5]]);
            check!(N, rid == bound_id, "reply id {rid} vs {bound_id}");
            check!(N, buf[6..8] == msg[6..8], "sequence");
            check!(N, buf[8..n] == msg[8..], "payload");
        }
        Err(e) => return fail(N, format!("ping_recv: {e:?}")),
    }
    let again = w.host().ping_recv(sock, &mut buf);
    check!(
        N,
        again == Err(HostError::WouldBlock),
        "second recv: {again:?}"
    );
    w.host().close(sock);
    Ok(true)
}
