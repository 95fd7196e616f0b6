//! `HostIo`: every operation the engine performs on host sockets.
//!
//! The engine never names a syscall. It asks a `HostIo` for sockets and
//! readiness; the real backend ([`crate::runtime`], Linux, epoll) and the
//! simulator's `SimHost` implement it. Each method documents the kernel
//! semantics it promises, and both implementations must keep those promises
//! exactly: that is what lets the simulator stand in for the kernel.
//!
//! Conventions shared by every method:
//! - Every socket is nonblocking. An operation that would block returns
//!   [`HostError::WouldBlock`] (the kernel's `EAGAIN`/`EWOULDBLOCK`) and the
//!   engine waits for readiness.
//! - Sockets are named by [`SockId`]s handed out by the implementation. A
//!   `SockId` is valid from the call that returned it until
//!   [`HostIo::close`] or [`HostIo::tcp_abort`]; the implementation may reuse
//!   it afterwards (as the kernel reuses file descriptors).
//! - Readiness is delivered to the engine as
//!   `Engine::handle_host_event(now, token, readiness)` with the [`Token`] the
//!   engine registered through [`HostIo::set_interest`]. Readiness is
//!   level-triggered: it is reported again while the condition holds and the
//!   interest is registered.
//! - No method allocates on the heap in steady state; buffers are the
//!   caller's.

use core::fmt;
use std::net::{IpAddr, SocketAddr};

/// A host socket, as named by the `HostIo` implementation (a file descriptor
/// in the real backend, an index in the simulator).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct SockId(pub u32);

/// The engine's name for the object a readiness event is about (a flow and
/// which of its sockets, a listener, ...). Opaque to `HostIo`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Token(pub u64);

/// What the engine wants to hear about for one socket.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Interest {
    /// Data to read, a connection to accept, or the peer's FIN (`EPOLLIN`).
    pub readable: bool,
    /// Room in the send buffer, or a nonblocking connect finished (`EPOLLOUT`).
    pub writable: bool,
}

impl Interest {
    /// Nothing: the socket stays registered but reports no readiness.
    pub const NONE: Interest = Interest {
        readable: false,
        writable: false,
    };
    /// Readable only.
    pub const READ: Interest = Interest {
        readable: true,
        writable: false,
    };
    /// Writable only.
    pub const WRITE: Interest = Interest {
        readable: false,
        writable: true,
    };
    /// Both.
    pub const BOTH: Interest = Interest {
        readable: true,
        writable: true,
    };
}

/// What happened on a socket. Errors and hang-ups are always reported, whatever
/// the interest (as `EPOLLERR`/`EPOLLHUP` are).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Readiness {
    /// Data (or a connection) can be read, or the peer closed (`EPOLLIN`).
    pub readable: bool,
    /// Send buffer space is available, or a connect completed (`EPOLLOUT`).
    pub writable: bool,
    /// The peer shut down its sending side (`EPOLLRDHUP`).
    pub read_closed: bool,
    /// Both directions are closed (`EPOLLHUP`).
    pub hangup: bool,
    /// A pending socket error ([`HostIo::take_error`] fetches it) (`EPOLLERR`).
    pub error: bool,
}

/// Socket-level errors, mapped from errno by the real backend and produced by
/// the simulator's socket model.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, thiserror::Error)]
pub enum HostError {
    /// `EAGAIN`/`EWOULDBLOCK`: try again when readiness says so.
    #[error("operation would block")]
    WouldBlock,
    /// `EINPROGRESS`: a nonblocking connect has started.
    #[error("connection in progress")]
    InProgress,
    /// `ECONNREFUSED`: the peer answered the SYN with a RST, or an ICMP port
    /// unreachable came back for a UDP socket.
    #[error("connection refused")]
    ConnectionRefused,
    /// `ECONNRESET`: the peer reset an established connection.
    #[error("connection reset by peer")]
    ConnectionReset,
    /// `ETIMEDOUT`: connect or retransmissions gave up.
    #[error("connection timed out")]
    TimedOut,
    /// `EHOSTUNREACH`.
    #[error("host unreachable")]
    HostUnreachable,
    /// `ENETUNREACH`.
    #[error("network unreachable")]
    NetworkUnreachable,
    /// `EADDRINUSE`.
    #[error("address already in use")]
    AddrInUse,
    /// `EADDRNOTAVAIL`.
    #[error("address not available")]
    AddrNotAvailable,
    /// `EACCES`/`EPERM` (e.g. ping sockets outside `ping_group_range`,
    /// binding a privileged port).
    #[error("permission denied")]
    PermissionDenied,
    /// `ENOTCONN`.
    #[error("socket not connected")]
    NotConnected,
    /// `EPIPE`: sending after our own shutdown or after the peer reset.
    #[error("broken pipe")]
    BrokenPipe,
    /// `EMSGSIZE`: datagram larger than the path allows.
    #[error("message too long")]
    MessageTooLong,
    /// `EAFNOSUPPORT`/`EPROTONOSUPPORT`: the host lacks this address family.
    #[error("address family not supported")]
    Unsupported,
    /// `EMFILE`/`ENFILE`/`ENOBUFS`/`ENOMEM`: out of descriptors or memory.
    #[error("out of resources")]
    NoResources,
    /// `EBADF` or an unknown [`SockId`]: a bug in the caller.
    #[error("bad socket handle")]
    BadSocket,
    /// Any other errno, kept for logging.
    #[error("OS error {0}")]
    Other(i32),
}

/// Which network namespace a new socket is made in. passt has only
/// [`Netns::Host`]; pasta also makes sockets in the namespace it serves
/// (the loopback fast path and `-T`/`-U` listeners).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub enum Netns {
    /// The namespace the process runs in.
    #[default]
    Host,
    /// The namespace behind the guest transport (pasta's target namespace).
    Guest,
}

/// A network interface name (`IFNAMSIZ` bytes at most, NUL excluded), kept
/// inline so that a [`Place`] stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IfName {
    len: u8,
    bytes: [u8; 15],
}

impl IfName {
    /// The name, or `None` when the kernel would refuse it (Linux's
    /// `dev_valid_name`): empty, longer than 15 bytes, `.` or `..`, or
    /// holding a NUL, `/`, `:` or whitespace.
    pub fn new(name: &str) -> Option<IfName> {
        let b = name.as_bytes();
        if b.is_empty()
            || b.len() > 15
            || name == "."
            || name == ".."
            || b.iter()
                .any(|c| matches!(c, 0 | b'/' | b':') || c.is_ascii_whitespace())
        {
            return None;
        }
        let mut bytes = [0u8; 15];
        bytes[..b.len()].copy_from_slice(b);
        Some(IfName {
            len: b.len() as u8,
            bytes,
        })
    }

    /// Whether the kernel would take `name` as an interface name.
    pub fn valid(name: &str) -> bool {
        IfName::new(name).is_some()
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Built from a `&str` in `new`, so always UTF-8.
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl fmt::Debug for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a new socket is made: its namespace, and the interface it is
/// bound to (`SO_BINDTODEVICE`), if any.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Place {
    /// The network namespace.
    pub netns: Netns,
    /// Bound to this interface: only its traffic is received, and sends
    /// leave through it.
    pub device: Option<IfName>,
}

impl Place {
    /// The host's namespace, no device: every socket of passt.
    pub const HOST: Place = Place {
        netns: Netns::Host,
        device: None,
    };
    /// The guest's namespace (pasta), no device.
    pub const GUEST: Place = Place {
        netns: Netns::Guest,
        device: None,
    };
}

/// Progress of a nonblocking connect.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConnectProgress {
    /// Connected already (possible on loopback).
    Connected,
    /// In progress: wait for writability, then call [`HostIo::take_error`].
    InProgress,
}

/// Which direction(s) to shut down.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Shutdown {
    /// `SHUT_RD`.
    Read,
    /// `SHUT_WR`: sends our FIN once queued data is sent.
    Write,
    /// `SHUT_RDWR`.
    Both,
}

/// Address family of a new socket.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Family {
    /// `AF_INET`
    V4,
    /// `AF_INET6`
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// A snapshot of a TCP socket's state, as `TCP_INFO` plus the queue ioctls
/// report it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct TcpInfo {
    /// Bytes of our sent data the peer has acknowledged (`tcpi_bytes_acked`).
    pub bytes_acked: u64,
    /// Bytes received from the peer in total (`tcpi_bytes_received`).
    pub bytes_received: u64,
    /// Peer's advertised receive window, in bytes (`tcpi_snd_wnd`).
    pub snd_wnd: u32,
    /// Smoothed RTT in microseconds (`tcpi_rtt`).
    pub rtt_us: u32,
    /// Send MSS (`tcpi_snd_mss`).
    pub snd_mss: u32,
    /// Bytes queued in the send buffer, sent or not, not yet acknowledged
    /// (`SIOCOUTQ`).
    pub send_queued: u32,
    /// Size of the send buffer (`SO_SNDBUF`): `send_buf - send_queued` is what
    /// a `send` can take now.
    pub send_buf: u32,
    /// Bytes waiting in the receive queue (`SIOCINQ`).
    pub recv_queued: u32,
}

impl TcpInfo {
    /// Bytes a `send` could take now.
    pub fn send_space(&self) -> u32 {
        self.send_buf.saturating_sub(self.send_queued)
    }
}

/// Result of a peek into a TCP receive queue.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Peeked {
    /// Bytes copied into the caller's buffer.
    pub len: usize,
    /// The peer has sent its FIN and `len` bytes reach the end of its data:
    /// nothing more will ever arrive past `offset + len`.
    pub fin: bool,
}

/// One datagram to send in a batch.
#[derive(Clone, Copy, Debug)]
pub struct UdpSend<'a> {
    /// Destination; `None` on a connected socket.
    pub dst: Option<SocketAddr>,
    /// Payload.
    pub payload: &'a [u8],
}

/// One slot of a receive batch: the caller provides `buf`, the implementation
/// fills in `len` and `src`.
#[derive(Debug)]
pub struct UdpRecv<'a> {
    /// Where the payload goes.
    pub buf: &'a mut [u8],
    /// Payload length (bytes beyond `buf.len()` are cut, as `MSG_TRUNC`
    /// would report; `truncated` says so).
    pub len: usize,
    /// Whether the datagram was larger than `buf`.
    pub truncated: bool,
    /// Sender.
    pub src: Option<SocketAddr>,
}

impl<'a> UdpRecv<'a> {
    /// An empty slot over `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        UdpRecv {
            buf,
            len: 0,
            truncated: false,
            src: None,
        }
    }
}

/// An ICMP error the kernel queued on a socket (`IP_RECVERR` /
/// `IPV6_RECVERR`): what the engine translates back to the guest.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IcmpErrorReport {
    /// Who sent the ICMP error (a router, or the destination itself).
    pub origin: Option<IpAddr>,
    /// Where the offending datagram was going.
    pub dst: SocketAddr,
    /// ICMP (v4) or ICMPv6 type.
    pub icmp_type: u8,
    /// ICMP code.
    pub icmp_code: u8,
    /// Extra info (the next-hop MTU for "fragmentation needed"/"packet too big").
    pub info: u32,
    /// Translated errno (e.g. `ConnectionRefused` for port unreachable).
    pub error: HostError,
    /// Bytes of the offending datagram's payload that came back with the
    /// error: the kernel returns the payload the ICMP message quoted (the
    /// whole payload for small datagrams; RFC 1812 §4.3.2.3 and RFC 4443
    /// §2.4(c) let routers cut it). `None` when unknown (ping sockets).
    pub payload_len: Option<usize>,
}

/// Result of a socket-to-socket splice.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Spliced {
    /// Bytes moved from the source to the destination.
    pub moved: usize,
    /// The source reached end of stream (peer FIN) and everything read was
    /// moved.
    pub src_eof: bool,
    /// The call stopped because the destination took no more: bytes are
    /// waiting for room in its send buffer (in the source, or read from it
    /// and held on the way). Wait for the destination to be writable, not
    /// for the source to be readable.
    pub sink_full: bool,
}

/// Every socket operation the engine performs. See the module docs for the
/// conventions; each method says which kernel call(s) it stands for.
pub trait HostIo {
    // ----- registration -----

    /// Registers or changes what readiness the engine wants for `sock`, and
    /// the token it wants it reported with (`epoll_ctl` ADD/MOD).
    /// `Interest::NONE` keeps errors and hang-ups only.
    fn set_interest(
        &mut self,
        sock: SockId,
        token: Token,
        interest: Interest,
    ) -> Result<(), HostError>;

    /// Stops all readiness reports for `sock`, errors and hang-ups included
    /// (`epoll_ctl` DEL), until the next [`HostIo::set_interest`]. For a
    /// socket whose peer has closed both directions the kernel reports
    /// `EPOLLHUP` on every wait whatever the interest; a module that has
    /// nothing left to do with the socket but wait for the guest
    /// deregisters it instead of spinning on that report.
    fn deregister(&mut self, sock: SockId) -> Result<(), HostError>;

    /// Closes `sock` (`close`). For TCP this is a graceful close: queued data
    /// is still sent and a FIN follows; but if unread data remains in the
    /// receive queue, the kernel sends a RST instead (RFC 2525 §2.17), and
    /// implementations must do the same. Deregisters interest. Never fails
    /// for a valid id.
    fn close(&mut self, sock: SockId);

    /// Fetches and clears the pending socket error (`getsockopt(SO_ERROR)`),
    /// e.g. the outcome of a nonblocking connect. `Ok(())` when none.
    fn take_error(&mut self, sock: SockId) -> Result<(), HostError>;

    /// The socket's local address (`getsockname`).
    fn local_addr(&self, sock: SockId) -> Result<SocketAddr, HostError>;

    // ----- TCP -----

    /// Starts a nonblocking connect to `remote` (`socket` + optional `bind`
    /// to `local` + `connect`). Returns the new socket with
    /// [`ConnectProgress::InProgress`] (wait for writable, then
    /// [`HostIo::take_error`]) or `Connected`. Immediate failures
    /// (`ENETUNREACH`, `EADDRNOTAVAIL`, `ECONNREFUSED` on some loopback paths)
    /// come back as errors and no socket is created.
    ///
    /// The socket is made at `place`: a namespace the implementation does
    /// not have, or a device that does not exist there, is an error
    /// (`ENODEV` for the device).
    fn tcp_connect_at(
        &mut self,
        place: Place,
        local: Option<SocketAddr>,
        remote: SocketAddr,
    ) -> Result<(SockId, ConnectProgress), HostError>;

    /// [`HostIo::tcp_connect_at`] in the host's namespace, on no device.
    fn tcp_connect(
        &mut self,
        local: Option<SocketAddr>,
        remote: SocketAddr,
    ) -> Result<(SockId, ConnectProgress), HostError> {
        self.tcp_connect_at(Place::HOST, local, remote)
    }

    /// Creates a listening socket bound to `addr` at `place` (as for
    /// [`HostIo::tcp_connect_at`]): `socket`, `SO_REUSEADDR`, `bind`,
    /// `listen(backlog)`. `EADDRINUSE` and `EACCES` are reported.
    fn tcp_listen_at(
        &mut self,
        place: Place,
        addr: SocketAddr,
        backlog: u32,
    ) -> Result<SockId, HostError>;

    /// [`HostIo::tcp_listen_at`] in the host's namespace, on no device.
    fn tcp_listen(&mut self, addr: SocketAddr, backlog: u32) -> Result<SockId, HostError> {
        self.tcp_listen_at(Place::HOST, addr, backlog)
    }

    /// Accepts one pending connection (`accept4(SOCK_NONBLOCK)`): the new
    /// socket, the peer's address and the local address it was accepted on.
    /// `WouldBlock` when the backlog is empty.
    fn tcp_accept(
        &mut self,
        listener: SockId,
    ) -> Result<(SockId, SocketAddr, SocketAddr), HostError>;

    /// Queues bytes for sending (`send(MSG_NOSIGNAL)`). May take fewer than
    /// offered (a partial write) when the send buffer fills; `WouldBlock`
    /// when it takes none. `BrokenPipe` after our write shutdown,
    /// `ConnectionReset` after the peer's RST.
    fn tcp_send(&mut self, sock: SockId, data: &[u8]) -> Result<usize, HostError>;

    /// Copies received bytes starting `offset` bytes into the receive queue,
    /// without consuming them (`recv(MSG_PEEK)` with `SO_PEEK_OFF`). Returns
    /// the count copied (at most `buf.len()`) and whether the peer's FIN
    /// follows them. `WouldBlock` when no byte at or past `offset` is queued
    /// and no FIN has arrived; `Ok(len 0, fin true)` at end of stream.
    /// `ConnectionReset` once the peer reset.
    fn tcp_peek(
        &mut self,
        sock: SockId,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<Peeked, HostError>;

    /// Consumes `len` bytes from the head of the receive queue without
    /// copying them (`recv(MSG_TRUNC)`), returning the count consumed (fewer
    /// if fewer are queued). Consuming is what opens the receive window
    /// toward the peer.
    fn tcp_discard(&mut self, sock: SockId, len: usize) -> Result<usize, HostError>;

    /// `shutdown(how)`. `Write` sends our FIN after the queued data.
    fn tcp_shutdown(&mut self, sock: SockId, how: Shutdown) -> Result<(), HostError>;

    /// Aborts the connection: the peer gets a RST, queued data is discarded
    /// (`SO_LINGER {on, 0}` + `close`). The id is released.
    fn tcp_abort(&mut self, sock: SockId);

    /// A snapshot of the connection's state (`getsockopt(TCP_INFO)`,
    /// `SIOCOUTQ`, `SIOCINQ`, `SO_SNDBUF`).
    fn tcp_info(&mut self, sock: SockId) -> Result<TcpInfo, HostError>;

    /// Sets `TCP_NODELAY` (the engine sets it on every connection: the guest
    /// already decided segment boundaries).
    fn tcp_set_nodelay(&mut self, sock: SockId, on: bool) -> Result<(), HostError>;

    /// Moves up to `max` bytes from the receive queue of `from` to the send
    /// queue of `to` without passing them through the engine (two `splice`
    /// calls through a pipe in the real backend). Used by pasta's loopback
    /// fast path. Outcomes:
    /// - `Ok` with `sink_full`: `to`'s send buffer filled (possibly with
    ///   nothing moved); bytes wait for it to become writable.
    /// - `Ok` with `src_eof`: the peer of `from` sent its FIN and every
    ///   byte before it was moved.
    /// - `Ok` with neither: `max` bytes were moved (or a short transfer the
    ///   caller may simply retry).
    /// - `WouldBlock`: nothing moved because `from` has nothing to read.
    /// - other errors: `from` was reset (`ConnectionReset`) or `to` cannot
    ///   take data (`BrokenPipe`, `ConnectionReset`); nothing is lost that
    ///   either peer still expects, the connection pair is dead.
    fn tcp_splice(&mut self, from: SockId, to: SockId, max: usize) -> Result<Spliced, HostError>;

    // ----- UDP -----

    /// Creates a UDP socket bound to `local` (`socket` + `bind`, port 0 for
    /// an ephemeral one) with ICMP error reporting on (`IP_RECVERR`/
    /// `IPV6_RECVERR`), made at `place` (as for [`HostIo::tcp_connect_at`]).
    fn udp_bind_at(&mut self, place: Place, local: SocketAddr) -> Result<SockId, HostError>;

    /// [`HostIo::udp_bind_at`] in the host's namespace, on no device.
    fn udp_bind(&mut self, local: SocketAddr) -> Result<SockId, HostError> {
        self.udp_bind_at(Place::HOST, local)
    }

    /// Connects a UDP socket to `remote` (`connect`): only its datagrams are
    /// received, and `UdpSend::dst` may be `None`.
    fn udp_connect(&mut self, sock: SockId, remote: SocketAddr) -> Result<(), HostError>;

    /// Sends a batch of datagrams (`sendmmsg`). Returns how many were sent
    /// (in order); `WouldBlock` if none. A datagram too large for the socket
    /// is `MessageTooLong`.
    fn udp_send_batch(&mut self, sock: SockId, msgs: &[UdpSend<'_>]) -> Result<usize, HostError>;

    /// Receives up to `slots.len()` datagrams (`recvmmsg`), filling each
    /// slot's `len`, `truncated` and `src`. Returns how many slots were
    /// filled; `WouldBlock` if none were waiting. A queued ICMP error is
    /// reported as the matching error (e.g. `ConnectionRefused`) and then
    /// [`HostIo::udp_recv_error`] gives the details.
    fn udp_recv_batch(
        &mut self,
        sock: SockId,
        slots: &mut [UdpRecv<'_>],
    ) -> Result<usize, HostError>;

    /// Takes one ICMP error from the socket's error queue
    /// (`recvmsg(MSG_ERRQUEUE)`), if any.
    fn udp_recv_error(&mut self, sock: SockId) -> Result<Option<IcmpErrorReport>, HostError>;

    // ----- ICMP echo -----

    /// Opens an unprivileged ping socket (`socket(AF_INET, SOCK_DGRAM,
    /// IPPROTO_ICMP)` or the ICMPv6 one) bound so that its echo identifier is
    /// `id` where the host allows it (the kernel uses the bound "port" as the
    /// identifier). `PermissionDenied` when `net.ipv4.ping_group_range`
    /// excludes us.
    fn ping_open(&mut self, family: Family, id: u16) -> Result<SockId, HostError>;

    /// [`HostIo::ping_open`] at `place` and bound to `local` (an address of
    /// `family`), for `-o`/`--outbound-if4/6`. Implementations with only
    /// the host's namespace and no devices refuse any other place or a
    /// local address ([`HostError::Unsupported`]).
    fn ping_open_at(
        &mut self,
        place: Place,
        family: Family,
        id: u16,
        local: Option<IpAddr>,
    ) -> Result<SockId, HostError> {
        if place != Place::HOST || local.is_some() {
            return Err(HostError::Unsupported);
        }
        self.ping_open(family, id)
    }

    /// Sends one ICMP/ICMPv6 echo request (type, code, checksum, id, sequence,
    /// data as on the wire; the kernel rewrites id and checksum) to `dst`.
    fn ping_send(&mut self, sock: SockId, dst: IpAddr, message: &[u8]) -> Result<(), HostError>;

    /// Receives one echo reply (the whole ICMP message) and its sender.
    /// `WouldBlock` when none is waiting.
    fn ping_recv(&mut self, sock: SockId, buf: &mut [u8]) -> Result<(usize, IpAddr), HostError>;
}

impl fmt::Display for SockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sock#{}", self.0)
    }
}

/// A `HostIo` with no host at all: opening a socket (`tcp_connect`,
/// `tcp_listen`, `udp_bind`, `ping_open`) fails with
/// [`HostError::Unsupported`], and every operation on a socket fails with
/// [`HostError::BadSocket`] (none can exist). For tests of the
/// guest-facing services and for tools that only need the engine's
/// built-in responders.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHost;

impl HostIo for NoHost {
    fn set_interest(&mut self, _: SockId, _: Token, _: Interest) -> Result<(), HostError> {
        Err(HostError::BadSocket)
    }
    fn deregister(&mut self, _: SockId) -> Result<(), HostError> {
        Err(HostError::BadSocket)
    }
    fn close(&mut self, _: SockId) {}
    fn take_error(&mut self, _: SockId) -> Result<(), HostError> {
        Err(HostError::BadSocket)
    }
    fn local_addr(&self, _: SockId) -> Result<SocketAddr, HostError> {
        Err(HostError::BadSocket)
    }
    fn tcp_connect_at(
        &mut self,
        _: Place,
        _: Option<SocketAddr>,
        _: SocketAddr,
    ) -> Result<(SockId, ConnectProgress), HostError> {
        Err(HostError::Unsupported)
    }
    fn tcp_listen_at(&mut self, _: Place, _: SocketAddr, _: u32) -> Result<SockId, HostError> {
        Err(HostError::Unsupported)
    }
    fn tcp_accept(&mut self, _: SockId) -> Result<(SockId, SocketAddr, SocketAddr), HostError> {
        Err(HostError::BadSocket)
    }
    fn tcp_send(&mut self, _: SockId, _: &[u8]) -> Result<usize, HostError> {
        Err(HostError::BadSocket)
    }
    fn tcp_peek(&mut self, _: SockId, _: usize, _: &mut [u8]) -> Result<Peeked, HostError> {
        Err(HostError::BadSocket)
    }
    fn tcp_discard(&mut self, _: SockId, _: usize) -> Result<usize, HostError> {
        Err(HostError::BadSocket)
    }
    fn tcp_shutdown(&mut self, _: SockId, _: Shutdown) -> Result<(), HostError> {
        Err(HostError::BadSocket)
    }
    fn tcp_abort(&mut self, _: SockId) {}
    fn tcp_info(&mut self, _: SockId) -> Result<TcpInfo, HostError> {
        Err(HostError::BadSocket)
    }
    fn tcp_set_nodelay(&mut self, _: SockId, _: bool) -> Result<(), HostError> {
        Err(HostError::BadSocket)
    }
    fn tcp_splice(&mut self, _: SockId, _: SockId, _: usize) -> Result<Spliced, HostError> {
        Err(HostError::BadSocket)
    }
    fn udp_bind_at(&mut self, _: Place, _: SocketAddr) -> Result<SockId, HostError> {
        Err(HostError::Unsupported)
    }
    fn udp_connect(&mut self, _: SockId, _: SocketAddr) -> Result<(), HostError> {
        Err(HostError::BadSocket)
    }
    fn udp_send_batch(&mut self, _: SockId, _: &[UdpSend<'_>]) -> Result<usize, HostError> {
        Err(HostError::BadSocket)
    }
    fn udp_recv_batch(&mut self, _: SockId, _: &mut [UdpRecv<'_>]) -> Result<usize, HostError> {
        Err(HostError::BadSocket)
    }
    fn udp_recv_error(&mut self, _: SockId) -> Result<Option<IcmpErrorReport>, HostError> {
        Err(HostError::BadSocket)
    }
    fn ping_open(&mut self, _: Family, _: u16) -> Result<SockId, HostError> {
        Err(HostError::Unsupported)
    }
    fn ping_send(&mut self, _: SockId, _: IpAddr, _: &[u8]) -> Result<(), HostError> {
        Err(HostError::BadSocket)
    }
    fn ping_recv(&mut self, _: SockId, _: &mut [u8]) -> Result<(usize, IpAddr), HostError> {
        Err(HostError::BadSocket)
    }
}
