//! [`RealHost`]: the [`HostIo`] contract kept by the Linux kernel.
//!
//! Every socket is created nonblocking and close-on-exec; a [`SockId`] is the
//! file descriptor number. One epoll instance collects readiness
//! ([`RealHost::wait`]); [`HostIo::set_interest`] is `epoll_ctl` ADD/MOD with
//! the engine's [`Token`] stored in the event's data word. Descriptors that
//! are not engine sockets (the tap device, the QEMU socket, a signal fd) can
//! join the same epoll set with [`RealHost::add_fd`].
//!
//! This module owns the translation of each trait method to syscalls and the
//! little state the kernel does not keep for us (the tracked `SO_PEEK_OFF`,
//! splice pipes). It never interprets the bytes it moves.

use std::mem::{size_of, zeroed};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::logging::{self, Level};
use super::netns::{NetNs, SocketMaker};
use super::sys::{self, cvt, cvt_size, from_sockaddr, map_errno, to_sockaddr};
use crate::host_io::{
    ConnectProgress, Family, HostError, HostIo, IcmpErrorReport, Interest, Netns, Peeked, Place,
    Readiness, Shutdown, SockId, Spliced, TcpInfo, Token, UdpRecv, UdpSend,
};

/// Datagrams per `sendmmsg`/`recvmmsg` call; larger batches are cut (the
/// count returned says how far the call got).
pub const UDP_BATCH: usize = 64;

/// Events collected per `epoll_wait`.
const EPOLL_EVENTS: usize = 256;

/// Offsets into `struct tcp_info` (linux/tcp.h; stable ABI, fields are only
/// ever appended). A shorter `optlen` from an older kernel leaves the fields
/// past it at zero.
mod tcpi {
    pub const SND_MSS: usize = 16;
    pub const RTT: usize = 68;
    pub const BYTES_ACKED: usize = 120;
    pub const BYTES_RECEIVED: usize = 128;
    /// Since Linux 5.4.
    pub const SND_WND: usize = 228;
    /// Size of the struct up to and including `tcpi_snd_wnd`.
    pub const LEN: usize = 232;
}

/// How [`HostIo::tcp_peek`] reaches data at an offset.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PeekMode {
    /// `SO_PEEK_OFF` on TCP sockets (Linux >= 6.9): the kernel starts the
    /// peek at the offset. The value the kernel holds is tracked per socket
    /// so that `setsockopt` is only called when the offset jumps.
    PeekOffset,
    /// Peek `offset + len` bytes from the head into a scratch buffer and copy
    /// the tail (older kernels).
    CopyFromHead,
}

/// What kind of socket a descriptor is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    TcpStream,
    TcpListener,
    Udp,
    Ping,
}

/// A pipe carrying bytes from one socket to another for `tcp_splice`. Bytes
/// read from the source but not yet written to the destination stay here
/// (`pending`) and go first on the next call.
#[derive(Debug)]
struct SplicePipe {
    read: OwnedFd,
    write: OwnedFd,
    to: SockId,
    pending: usize,
    capacity: usize,
}

/// Empty splice pipes kept for reuse when their source socket closes, so
/// that a new spliced connection costs no `pipe2` (connection rate); more
/// than this are closed.
const PIPE_POOL_MAX: usize = 64;

/// Size asked for each splice pipe (`F_SETPIPE_SZ`): fewer, larger
/// `splice` calls per byte than the default 64 KiB. When the kernel
/// refuses (`pipe-max-size`, `pipe-user-pages-soft`), the pipe keeps the
/// size it has.
const PIPE_SIZE: libc::c_int = 1 << 20;

#[derive(Debug)]
struct SockState {
    fd: OwnedFd,
    kind: Kind,
    /// Registered in the epoll set (so the next `set_interest` is a MOD).
    registered: bool,
    /// The kernel's `SO_PEEK_OFF` as we last left it (`None`: unknown or
    /// disabled, the next peek sets it).
    peek_off: Option<usize>,
    /// Splice pipe when this socket is a splice source.
    splice: Option<SplicePipe>,
}

/// The real Linux implementation of [`HostIo`]. See the module docs.
#[derive(Debug)]
pub struct RealHost {
    epoll: OwnedFd,
    socks: Vec<Option<SockState>>,
    events: Vec<libc::epoll_event>,
    peek_mode: PeekMode,
    /// Fallback peek buffer (only in [`PeekMode::CopyFromHead`]); grows to
    /// the largest `offset + len` asked, then stays.
    scratch: Vec<u8>,
    /// The namespace of [`Netns::Guest`] sockets (pasta), once set.
    guest_netns: Option<NetNs>,
    /// The thread kept in that namespace once the process is sandboxed
    /// ([`RealHost::keep_guest_thread`]).
    guest_thread: Option<SocketMaker>,
    /// `--freebind` (see [`RealHost::set_freebind`]).
    freebind: bool,
    /// Empty splice pipes for reuse (at most [`PIPE_POOL_MAX`]).
    pipe_pool: Vec<SplicePipe>,
}

impl RealHost {
    /// A host with its epoll instance, using `SO_PEEK_OFF` if this kernel
    /// supports it on TCP sockets.
    pub fn new() -> Result<RealHost, HostError> {
        let mode = if Self::kernel_supports_tcp_peek_off() {
            PeekMode::PeekOffset
        } else {
            PeekMode::CopyFromHead
        };
        Self::with_peek_mode(mode)
    }

    /// A host with an explicit peek strategy (tests use this to exercise the
    /// fallback on kernels that have `SO_PEEK_OFF`).
    pub fn with_peek_mode(peek_mode: PeekMode) -> Result<RealHost, HostError> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(RealHost {
            // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            socks: Vec::new(),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EPOLL_EVENTS],
            peek_mode,
            scratch: Vec::new(),
            guest_netns: None,
            guest_thread: None,
            freebind: false,
            pipe_pool: Vec::new(),
        })
    }

    /// `--freebind`: sockets of forwarded ports (listening TCP, bound UDP)
    /// may be bound to addresses not (yet) configured on the host
    /// (`IP_FREEBIND`, `IPV6_FREEBIND`, ip(7) and ipv6(7)).
    pub fn set_freebind(&mut self, on: bool) {
        self.freebind = on;
    }

    /// Sets the namespace that [`Netns::Guest`] sockets are made in
    /// (pasta's target namespace). Until it is set, such sockets fail with
    /// [`HostError::Unsupported`].
    pub fn set_guest_netns(&mut self, ns: NetNs) {
        self.guest_thread = None;
        self.guest_netns = Some(ns);
    }

    /// From now on, [`Netns::Guest`] sockets are made by one thread kept in
    /// the guest's namespace ([`SocketMaker`]) instead of a new thread
    /// each: pasta calls this before its seccomp filter, which allows
    /// neither `clone` nor `setns`. `after_join` runs on that thread once
    /// it is in the namespace (pasta drops the thread's capabilities).
    /// Fails with [`HostError::Unsupported`] without a guest namespace.
    pub fn keep_guest_thread(
        &mut self,
        after_join: impl FnOnce() -> std::io::Result<()> + Send + 'static,
    ) -> Result<(), HostError> {
        let ns = self.guest_netns.as_ref().ok_or(HostError::Unsupported)?;
        let maker = SocketMaker::spawn(ns, after_join)
            .map_err(|e| e.raw_os_error().map_or(HostError::Other(0), map_errno))?;
        self.guest_thread = Some(maker);
        Ok(())
    }

    /// A new nonblocking socket at `place`: made inside the guest's
    /// namespace for [`Netns::Guest`] (by the kept thread, or else on a new
    /// thread: [`NetNs::run_in`]), then
    /// bound to the device, if any (`SO_BINDTODEVICE` looks the name up in
    /// the socket's own namespace; `ENODEV` when it is not there).
    fn socket_at(
        &self,
        place: Place,
        af: libc::c_int,
        ty: libc::c_int,
        proto: libc::c_int,
    ) -> Result<OwnedFd, HostError> {
        let fd = match place.netns {
            Netns::Host => new_socket(af, ty, proto)?,
            Netns::Guest => self.guest_socket(af, ty, proto).inspect_err(|e| {
                logging::log(
                    Level::Debug,
                    format_args!("Couldn't make a socket in the namespace: {e}"),
                )
            })?,
        };
        if let Some(dev) = place.device {
            let name = dev.as_str().as_bytes();
            // SAFETY: `name` is readable for its length; the kernel copies it.
            cvt(unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_BINDTODEVICE,
                    name.as_ptr() as *const libc::c_void,
                    name.len() as libc::socklen_t,
                )
            })?;
        }
        Ok(fd)
    }

    /// A new nonblocking socket in the guest's namespace: from the kept
    /// thread, else from a thread started for it.
    fn guest_socket(
        &self,
        af: libc::c_int,
        ty: libc::c_int,
        proto: libc::c_int,
    ) -> Result<OwnedFd, HostError> {
        let io_err = |e: std::io::Error| e.raw_os_error().map_or(HostError::Other(0), map_errno);
        match &self.guest_thread {
            Some(maker) => maker
                .socket(af, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, proto)
                .map_err(io_err),
            None => {
                let ns = self.guest_netns.as_ref().ok_or(HostError::Unsupported)?;
                ns.run_in(|| new_socket(af, ty, proto)).map_err(io_err)?
            }
        }
    }

    /// Sets `IP_FREEBIND`/`IPV6_FREEBIND` on `fd` before it is bound to
    /// `addr`, when `--freebind` asked for it.
    fn apply_freebind(&self, fd: RawFd, addr: &SocketAddr) -> Result<(), HostError> {
        if !self.freebind {
            return Ok(());
        }
        if addr.is_ipv6() {
            sys::set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_FREEBIND, 1)
        } else {
            sys::set_int(fd, libc::IPPROTO_IP, libc::IP_FREEBIND, 1)
        }
    }

    /// Whether `setsockopt(SO_PEEK_OFF)` is accepted on a TCP socket here.
    pub fn kernel_supports_tcp_peek_off() -> bool {
        let Ok(fd) = new_socket(libc::AF_INET, libc::SOCK_STREAM, 0) else {
            return false;
        };
        sys::set_int(fd.as_raw_fd(), libc::SOL_SOCKET, sys::SO_PEEK_OFF, 0).is_ok()
    }

    /// The peek strategy in use.
    pub fn peek_mode(&self) -> PeekMode {
        self.peek_mode
    }

    /// The epoll descriptor, to nest this host in another event loop.
    pub fn epoll_fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.epoll.as_fd()
    }

    /// The raw descriptor behind a socket (for diagnostics and tests).
    pub fn raw_fd(&self, sock: SockId) -> Result<RawFd, HostError> {
        Ok(self.state(sock)?.fd.as_raw_fd())
    }

    /// Waits up to `timeout` (`None`: forever; rounded up to milliseconds)
    /// for readiness and appends `(token, readiness)` pairs to `out`.
    /// Returns how many were appended; an interrupted wait returns 0.
    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
        out: &mut Vec<(Token, Readiness)>,
    ) -> Result<usize, HostError> {
        let timeout_ms: libc::c_int = match timeout {
            None => -1,
            Some(d) => {
                let ms = d.as_nanos().div_ceil(1_000_000);
                ms.min(libc::c_int::MAX as u128) as libc::c_int
            }
        };
        // SAFETY: `events` is a live buffer of `len` epoll_event entries.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = sys::errno();
            return if e == libc::EINTR {
                Ok(0)
            } else {
                Err(map_errno(e))
            };
        }
        let n = n as usize;
        for ev in &self.events[..n] {
            out.push((Token(ev.u64), readiness_of(ev.events)));
        }
        Ok(n)
    }

    /// Adds a descriptor the engine does not own (tap, QEMU socket, ...) to
    /// the epoll set. The caller keeps it open until [`RealHost::remove_fd`].
    pub fn add_fd(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
    ) -> Result<(), HostError> {
        self.epoll_ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), token, interest)
    }

    /// Changes the interest of a descriptor added with [`RealHost::add_fd`].
    pub fn modify_fd(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
    ) -> Result<(), HostError> {
        self.epoll_ctl(libc::EPOLL_CTL_MOD, fd.as_raw_fd(), token, interest)
    }

    /// Removes a descriptor added with [`RealHost::add_fd`].
    pub fn remove_fd(&mut self, fd: BorrowedFd<'_>) -> Result<(), HostError> {
        // SAFETY: the event pointer may be null for EPOLL_CTL_DEL (Linux >= 2.6.9).
        cvt(unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd.as_raw_fd(),
                std::ptr::null_mut(),
            )
        })
        .map(|_| ())
    }

    fn epoll_ctl(
        &mut self,
        op: libc::c_int,
        fd: RawFd,
        token: Token,
        interest: Interest,
    ) -> Result<(), HostError> {
        let mut ev = libc::epoll_event {
            events: epoll_events_of(interest),
            u64: token.0,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) }).map(|_| ())
    }

    fn insert(&mut self, fd: OwnedFd, kind: Kind) -> SockId {
        let raw = fd.as_raw_fd() as usize;
        if self.socks.len() <= raw {
            self.socks.resize_with(raw + 1, || None);
        }
        self.socks[raw] = Some(SockState {
            fd,
            kind,
            registered: false,
            peek_off: None,
            splice: None,
        });
        SockId(raw as u32)
    }

    fn state(&self, sock: SockId) -> Result<&SockState, HostError> {
        self.socks
            .get(sock.0 as usize)
            .and_then(Option::as_ref)
            .ok_or(HostError::BadSocket)
    }

    fn state_mut(&mut self, sock: SockId) -> Result<&mut SockState, HostError> {
        self.socks
            .get_mut(sock.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(HostError::BadSocket)
    }

    fn fd_of(&self, sock: SockId, kinds: &[Kind]) -> Result<RawFd, HostError> {
        let st = self.state(sock)?;
        if kinds.contains(&st.kind) {
            Ok(st.fd.as_raw_fd())
        } else {
            Err(HostError::BadSocket)
        }
    }

    /// Takes a socket's state out of the table; its splice pipe, if empty,
    /// goes back to the pool.
    fn remove(&mut self, sock: SockId) -> Option<SockState> {
        let mut st = self.socks.get_mut(sock.0 as usize).and_then(Option::take)?;
        if let Some(pipe) = st.splice.take()
            && pipe.pending == 0
            && self.pipe_pool.len() < PIPE_POOL_MAX
        {
            self.pipe_pool.push(pipe);
        }
        Some(st)
    }

    /// `tcp_peek` with `SO_PEEK_OFF`.
    fn peek_with_offset(
        &mut self,
        sock: SockId,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<Peeked, HostError> {
        let st = self.state_mut(sock)?;
        if st.kind != Kind::TcpStream {
            return Err(HostError::BadSocket);
        }
        let fd = st.fd.as_raw_fd();
        if st.peek_off != Some(offset) {
            let off = libc::c_int::try_from(offset).map_err(|_| HostError::Other(libc::EINVAL))?;
            sys::set_int(fd, libc::SOL_SOCKET, sys::SO_PEEK_OFF, off)?;
            st.peek_off = Some(offset);
        }
        let n = recv(fd, buf, libc::MSG_PEEK)?;
        // The kernel moved its peek offset past what it copied.
        st.peek_off = Some(offset + n);
        if n == 0 {
            // Nothing at or past `offset` and the kernel says end of stream.
            return Ok(Peeked { len: 0, fin: true });
        }
        if n == buf.len() {
            // More may follow; a FIN right here is reported by the next peek.
            return Ok(Peeked { len: n, fin: false });
        }
        // Short peek: the queue ends here. Is it the end of the stream? A
        // 1-byte peek at the new offset returns 0 only after the peer's FIN;
        // if data raced in meanwhile it returns it, and we say "no FIN".
        let mut probe = [0u8; 1];
        let fin = match recv(fd, &mut probe, libc::MSG_PEEK) {
            Ok(0) => true,
            Ok(m) => {
                st.peek_off = Some(offset + n + m);
                false
            }
            Err(_) => false,
        };
        Ok(Peeked { len: n, fin })
    }

    /// `tcp_peek` without `SO_PEEK_OFF`: peek from the head and copy the tail.
    fn peek_from_head(
        &mut self,
        sock: SockId,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<Peeked, HostError> {
        let fd = self.fd_of(sock, &[Kind::TcpStream])?;
        let want = offset.saturating_add(buf.len());
        if self.scratch.len() < want {
            self.scratch.resize(want, 0);
        }
        let got = recv(fd, &mut self.scratch[..want], libc::MSG_PEEK)?;
        if got == 0 {
            return Ok(Peeked { len: 0, fin: true });
        }
        let len = got.saturating_sub(offset);
        buf[..len].copy_from_slice(&self.scratch[offset..offset + len]);
        if got == want {
            return Ok(Peeked { len, fin: false });
        }
        // Short peek. The FIN is in once the state says the peer closed;
        // from then on no data can arrive, so SIOCINQ (which does not count
        // the FIN) is final: it must equal what we saw.
        let fin = peer_fin_received(fd)? && sys::ioctl_int(fd, sys::SIOCINQ)? as usize == got;
        if len == 0 && !fin {
            return Err(HostError::WouldBlock);
        }
        Ok(Peeked { len, fin })
    }

    /// Writes pending pipe bytes of `from`'s splice pipe to `to`.
    fn flush_splice_pipe(pipe: &mut SplicePipe, to_fd: RawFd) -> Result<usize, HostError> {
        let mut moved = 0;
        while pipe.pending > 0 {
            match splice(pipe.read.as_raw_fd(), to_fd, pipe.pending) {
                Ok(0) => break,
                Ok(m) => {
                    pipe.pending -= m;
                    moved += m;
                }
                Err(HostError::WouldBlock) => break,
                Err(e) if moved == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(moved)
    }
}

impl HostIo for RealHost {
    fn set_interest(
        &mut self,
        sock: SockId,
        token: Token,
        interest: Interest,
    ) -> Result<(), HostError> {
        let st = self.state(sock)?;
        let op = if st.registered {
            libc::EPOLL_CTL_MOD
        } else {
            libc::EPOLL_CTL_ADD
        };
        let fd = st.fd.as_raw_fd();
        self.epoll_ctl(op, fd, token, interest)?;
        self.state_mut(sock)?.registered = true;
        Ok(())
    }

    fn deregister(&mut self, sock: SockId) -> Result<(), HostError> {
        let st = self.state(sock)?;
        if !st.registered {
            return Ok(());
        }
        let fd = st.fd.as_raw_fd();
        // DEL ignores the event (old kernels want it non-null).
        self.epoll_ctl(libc::EPOLL_CTL_DEL, fd, Token(0), Interest::NONE)?;
        self.state_mut(sock)?.registered = false;
        Ok(())
    }

    fn close(&mut self, sock: SockId) {
        // Dropping the OwnedFd closes it, which also removes it from the
        // epoll set (we never duplicate descriptors). Unread data makes the
        // kernel send a RST (RFC 2525 §2.17), as the contract asks.
        drop(self.remove(sock));
    }

    fn take_error(&mut self, sock: SockId) -> Result<(), HostError> {
        let fd = self.state(sock)?.fd.as_raw_fd();
        match sys::get_int(fd, libc::SOL_SOCKET, libc::SO_ERROR)? {
            0 => Ok(()),
            e => Err(map_errno(e)),
        }
    }

    fn local_addr(&self, sock: SockId) -> Result<SocketAddr, HostError> {
        sys::local_addr(self.state(sock)?.fd.as_raw_fd())
    }

    fn tcp_connect_at(
        &mut self,
        place: Place,
        local: Option<SocketAddr>,
        remote: SocketAddr,
    ) -> Result<(SockId, ConnectProgress), HostError> {
        let fd = self.socket_at(place, family_of(&remote), libc::SOCK_STREAM, 0)?;
        if let Some(local) = local {
            bind(fd.as_raw_fd(), &local)?;
        }
        let (sa, len) = to_sockaddr(&remote);
        // SAFETY: `sa` is a valid sockaddr of `len` bytes.
        let r = unsafe { libc::connect(fd.as_raw_fd(), &sa as *const _ as *const _, len) };
        let progress = if r == 0 {
            ConnectProgress::Connected
        } else {
            match sys::last_error() {
                HostError::InProgress => ConnectProgress::InProgress,
                e => return Err(e),
            }
        };
        Ok((self.insert(fd, Kind::TcpStream), progress))
    }

    fn tcp_listen_at(
        &mut self,
        place: Place,
        addr: SocketAddr,
        backlog: u32,
    ) -> Result<SockId, HostError> {
        let fd = self.socket_at(place, family_of(&addr), libc::SOCK_STREAM, 0)?;
        let raw = fd.as_raw_fd();
        sys::set_int(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        if addr.is_ipv6() {
            sys::set_int(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
        }
        self.apply_freebind(raw, &addr)?;
        bind(raw, &addr)?;
        let backlog = backlog.min(libc::c_int::MAX as u32) as libc::c_int;
        // SAFETY: plain syscall on a descriptor we own.
        cvt(unsafe { libc::listen(raw, backlog) })?;
        Ok(self.insert(fd, Kind::TcpListener))
    }

    fn tcp_accept(
        &mut self,
        listener: SockId,
    ) -> Result<(SockId, SocketAddr, SocketAddr), HostError> {
        let lfd = self.fd_of(listener, &[Kind::TcpListener])?;
        // SAFETY: zeroed storage is valid; the kernel writes at most `len` bytes.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let fd = cvt(unsafe {
            libc::accept4(
                lfd,
                &mut storage as *mut _ as *mut libc::sockaddr,
                &mut len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        })?;
        // SAFETY: `fd` is a fresh descriptor from accept4, owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let peer = from_sockaddr(&storage, len).ok_or(HostError::Unsupported)?;
        let local = sys::local_addr(fd.as_raw_fd())?;
        Ok((self.insert(fd, Kind::TcpStream), peer, local))
    }

    fn tcp_send(&mut self, sock: SockId, data: &[u8]) -> Result<usize, HostError> {
        let fd = self.fd_of(sock, &[Kind::TcpStream])?;
        if data.is_empty() {
            return Ok(0);
        }
        // SAFETY: `data` is valid for reads of its length.
        cvt_size(unsafe {
            libc::send(
                fd,
                data.as_ptr() as *const libc::c_void,
                data.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        })
    }

    fn tcp_peek(
        &mut self,
        sock: SockId,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<Peeked, HostError> {
        if buf.is_empty() {
            // Nothing to copy; say nothing about the FIN either.
            self.fd_of(sock, &[Kind::TcpStream])?;
            return Ok(Peeked { len: 0, fin: false });
        }
        match self.peek_mode {
            PeekMode::PeekOffset => self.peek_with_offset(sock, offset, buf),
            PeekMode::CopyFromHead => self.peek_from_head(sock, offset, buf),
        }
    }

    fn tcp_discard(&mut self, sock: SockId, len: usize) -> Result<usize, HostError> {
        let st = self.state_mut(sock)?;
        if st.kind != Kind::TcpStream {
            return Err(HostError::BadSocket);
        }
        if len == 0 {
            return Ok(0);
        }
        // On TCP, MSG_TRUNC discards the bytes without copying them (tcp(7)),
        // so a null buffer is fine.
        // SAFETY: with MSG_TRUNC on a stream socket the kernel never writes
        // through the (null) buffer pointer.
        let r = unsafe {
            libc::recv(
                st.fd.as_raw_fd(),
                std::ptr::null_mut(),
                len,
                libc::MSG_TRUNC | libc::MSG_DONTWAIT,
            )
        };
        let n = match cvt_size(r) {
            Ok(n) => n,
            Err(HostError::WouldBlock) => 0,
            Err(e) => return Err(e),
        };
        // The kernel moves SO_PEEK_OFF back by what was consumed (not below 0).
        if let Some(off) = st.peek_off.as_mut() {
            *off = off.saturating_sub(n);
        }
        Ok(n)
    }

    fn tcp_shutdown(&mut self, sock: SockId, how: Shutdown) -> Result<(), HostError> {
        let fd = self.fd_of(sock, &[Kind::TcpStream])?;
        let how = match how {
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Both => libc::SHUT_RDWR,
        };
        // SAFETY: plain syscall on a descriptor we own.
        cvt(unsafe { libc::shutdown(fd, how) }).map(|_| ())
    }

    fn tcp_abort(&mut self, sock: SockId) {
        if let Some(st) = self.remove(sock) {
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: pointer and size describe `linger`. Failure only means
            // a graceful close instead of a RST; nothing else to do about it.
            unsafe {
                libc::setsockopt(
                    st.fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    &linger as *const libc::linger as *const libc::c_void,
                    size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            drop(st);
        }
    }

    fn tcp_info(&mut self, sock: SockId) -> Result<TcpInfo, HostError> {
        let fd = self.fd_of(sock, &[Kind::TcpStream])?;
        let mut raw = [0u8; tcpi::LEN];
        let mut len = raw.len() as libc::socklen_t;
        // SAFETY: `raw` is writable for `len` bytes; the kernel writes at
        // most that and reports how much in `len`.
        cvt(unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                raw.as_mut_ptr() as *mut libc::c_void,
                &mut len,
            )
        })?;
        let got = (len as usize).min(raw.len());
        let u32_at = |off: usize| -> u32 {
            raw.get(off..off + 4)
                .filter(|_| off + 4 <= got)
                .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        let u64_at = |off: usize| -> u64 {
            raw.get(off..off + 8)
                .filter(|_| off + 8 <= got)
                .map_or(0, |b| {
                    u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                })
        };
        Ok(TcpInfo {
            bytes_acked: u64_at(tcpi::BYTES_ACKED),
            bytes_received: u64_at(tcpi::BYTES_RECEIVED),
            snd_wnd: u32_at(tcpi::SND_WND),
            rtt_us: u32_at(tcpi::RTT),
            snd_mss: u32_at(tcpi::SND_MSS),
            send_queued: sys::ioctl_int(fd, sys::SIOCOUTQ)?.max(0) as u32,
            send_buf: sys::get_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF)?.max(0) as u32,
            recv_queued: sys::ioctl_int(fd, sys::SIOCINQ)?.max(0) as u32,
        })
    }

    fn tcp_set_nodelay(&mut self, sock: SockId, on: bool) -> Result<(), HostError> {
        let fd = self.fd_of(sock, &[Kind::TcpStream])?;
        sys::set_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, on as libc::c_int)
    }

    fn tcp_splice(&mut self, from: SockId, to: SockId, max: usize) -> Result<Spliced, HostError> {
        let to_fd = self.fd_of(to, &[Kind::TcpStream])?;
        let from_fd = self.fd_of(from, &[Kind::TcpStream])?;
        if from == to {
            return Err(HostError::BadSocket);
        }
        if self.state(from)?.splice.is_none() {
            let pipe = match self.pipe_pool.pop() {
                Some(p) => p,
                None => new_splice_pipe(to)?,
            };
            self.state_mut(from)?.splice = Some(pipe);
        }
        let st = self.state_mut(from)?;
        let Some(pipe) = st.splice.as_mut() else {
            return Err(HostError::BadSocket);
        };
        if pipe.to != to {
            if pipe.pending > 0 {
                // Bytes of `from` are waiting for their original destination.
                return Err(HostError::BadSocket);
            }
            pipe.to = to;
        }
        // 1. What an earlier call left in the pipe goes first.
        let mut moved = Self::flush_splice_pipe(pipe, to_fd)?;
        let mut src_eof = false;
        let mut sink_full = pipe.pending > 0;
        // 2. Then source -> pipe -> destination, while both sides cooperate.
        while !sink_full && moved < max {
            let chunk = (max - moved).min(pipe.capacity);
            match splice(from_fd, pipe.write.as_raw_fd(), chunk) {
                Ok(0) => {
                    src_eof = true;
                    break;
                }
                Ok(n) => pipe.pending = n,
                Err(HostError::WouldBlock) => break,
                Err(e) if moved == 0 => return Err(e),
                Err(_) => break,
            }
            moved += Self::flush_splice_pipe(pipe, to_fd)?;
            sink_full = pipe.pending > 0;
        }
        if moved == 0 && !src_eof && !sink_full {
            return Err(HostError::WouldBlock);
        }
        Ok(Spliced {
            moved,
            src_eof,
            sink_full,
        })
    }

    fn udp_bind_at(&mut self, place: Place, local: SocketAddr) -> Result<SockId, HostError> {
        let fd = self.socket_at(place, family_of(&local), libc::SOCK_DGRAM, 0)?;
        let raw = fd.as_raw_fd();
        if local.is_ipv6() {
            sys::set_int(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
            sys::set_int(raw, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)?;
        } else {
            sys::set_int(raw, libc::IPPROTO_IP, libc::IP_RECVERR, 1)?;
        }
        self.apply_freebind(raw, &local)?;
        bind(raw, &local)?;
        Ok(self.insert(fd, Kind::Udp))
    }

    fn udp_connect(&mut self, sock: SockId, remote: SocketAddr) -> Result<(), HostError> {
        let fd = self.fd_of(sock, &[Kind::Udp])?;
        let (sa, len) = to_sockaddr(&remote);
        // SAFETY: `sa` is a valid sockaddr of `len` bytes.
        cvt(unsafe { libc::connect(fd, &sa as *const _ as *const _, len) }).map(|_| ())
    }

    fn udp_send_batch(&mut self, sock: SockId, msgs: &[UdpSend<'_>]) -> Result<usize, HostError> {
        let fd = self.fd_of(sock, &[Kind::Udp])?;
        let n = msgs.len().min(UDP_BATCH);
        if n == 0 {
            return Ok(0);
        }
        // Stack arrays: no heap allocation per call.
        // SAFETY: these C structs are plain old data; zero is valid for all.
        let mut names: [libc::sockaddr_storage; UDP_BATCH] = unsafe { zeroed() };
        let mut iovs: [libc::iovec; UDP_BATCH] = unsafe { zeroed() };
        let mut hdrs: [libc::mmsghdr; UDP_BATCH] = unsafe { zeroed() };
        for (i, m) in msgs[..n].iter().enumerate() {
            iovs[i] = libc::iovec {
                iov_base: m.payload.as_ptr() as *mut libc::c_void,
                iov_len: m.payload.len(),
            };
            let h = &mut hdrs[i].msg_hdr;
            if let Some(dst) = m.dst {
                let (sa, len) = to_sockaddr(&dst);
                names[i] = sa;
                h.msg_name = &mut names[i] as *mut _ as *mut libc::c_void;
                h.msg_namelen = len;
            }
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: every header points into `names`/`iovs`, which outlive the
        // call; the kernel only reads the payloads.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        cvt(r).map(|r| r as usize)
    }

    fn udp_recv_batch(
        &mut self,
        sock: SockId,
        slots: &mut [UdpRecv<'_>],
    ) -> Result<usize, HostError> {
        let fd = self.fd_of(sock, &[Kind::Udp])?;
        let n = slots.len().min(UDP_BATCH);
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: plain old data, zero is valid.
        let mut names: [libc::sockaddr_storage; UDP_BATCH] = unsafe { zeroed() };
        let mut iovs: [libc::iovec; UDP_BATCH] = unsafe { zeroed() };
        let mut hdrs: [libc::mmsghdr; UDP_BATCH] = unsafe { zeroed() };
        for (i, slot) in slots[..n].iter_mut().enumerate() {
            iovs[i] = libc::iovec {
                iov_base: slot.buf.as_mut_ptr() as *mut libc::c_void,
                iov_len: slot.buf.len(),
            };
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = &mut names[i] as *mut _ as *mut libc::c_void;
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: headers point to live, writable buffers of the stated
        // sizes (the slots' buffers and `names`), valid for the call.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let got = cvt(r)? as usize;
        for i in 0..got {
            let h = &hdrs[i];
            let slot = &mut slots[i];
            slot.len = (h.msg_len as usize).min(slot.buf.len());
            slot.truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            slot.src = from_sockaddr(&names[i], h.msg_hdr.msg_namelen);
        }
        Ok(got)
    }

    fn udp_recv_error(&mut self, sock: SockId) -> Result<Option<IcmpErrorReport>, HostError> {
        let fd = self.fd_of(sock, &[Kind::Udp, Kind::Ping])?;
        // Local (non-ICMP) errors are skipped; bound the loop anyway.
        for _ in 0..64 {
            match recv_icmp_error(fd)? {
                ErrQueue::Empty => return Ok(None),
                ErrQueue::Icmp(report) => return Ok(Some(report)),
                ErrQueue::NotIcmp => continue,
            }
        }
        Ok(None)
    }

    fn ping_open(&mut self, family: Family, id: u16) -> Result<SockId, HostError> {
        self.ping_open_at(Place::HOST, family, id, None)
    }

    fn ping_open_at(
        &mut self,
        place: Place,
        family: Family,
        id: u16,
        local: Option<IpAddr>,
    ) -> Result<SockId, HostError> {
        let (af, proto, v6) = match family {
            Family::V4 => (libc::AF_INET, libc::IPPROTO_ICMP, false),
            Family::V6 => (libc::AF_INET6, libc::IPPROTO_ICMPV6, true),
        };
        let fd = self.socket_at(place, af, libc::SOCK_DGRAM, proto)?;
        let at = |port: u16| match local {
            Some(a) if a.is_ipv6() == v6 => SocketAddr::new(a, port),
            _ => sys::unspecified(v6, port),
        };
        // The bound "port" of a ping socket is its echo identifier. If another
        // socket holds `id`, let the kernel pick one: `local_addr` tells which.
        match bind(fd.as_raw_fd(), &at(id)) {
            Ok(()) => {}
            Err(HostError::AddrInUse) => bind(fd.as_raw_fd(), &at(0))?,
            Err(e) => return Err(e),
        }
        Ok(self.insert(fd, Kind::Ping))
    }

    fn ping_send(&mut self, sock: SockId, dst: IpAddr, message: &[u8]) -> Result<(), HostError> {
        let fd = self.fd_of(sock, &[Kind::Ping])?;
        let (sa, len) = to_sockaddr(&SocketAddr::new(dst, 0));
        // SAFETY: `message` is readable for its length, `sa` valid for `len`.
        cvt_size(unsafe {
            libc::sendto(
                fd,
                message.as_ptr() as *const libc::c_void,
                message.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                &sa as *const _ as *const libc::sockaddr,
                len,
            )
        })
        .map(|_| ())
    }

    fn ping_recv(&mut self, sock: SockId, buf: &mut [u8]) -> Result<(usize, IpAddr), HostError> {
        let fd = self.fd_of(sock, &[Kind::Ping])?;
        // SAFETY: zeroed storage is valid; buffers are writable for their sizes.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let n = cvt_size(unsafe {
            libc::recvfrom(
                fd,
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                libc::MSG_DONTWAIT,
                &mut storage as *mut _ as *mut libc::sockaddr,
                &mut len,
            )
        })?;
        let src = from_sockaddr(&storage, len).ok_or(HostError::Unsupported)?;
        Ok((n.min(buf.len()), src.ip()))
    }
}

// ----- helpers -----

fn family_of(addr: &SocketAddr) -> libc::c_int {
    if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

/// A nonblocking, close-on-exec socket.
fn new_socket(af: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> Result<OwnedFd, HostError> {
    // SAFETY: plain syscall; the result is checked.
    let fd =
        cvt(unsafe { libc::socket(af, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, proto) })?;
    // SAFETY: fresh descriptor owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bind(fd: RawFd, addr: &SocketAddr) -> Result<(), HostError> {
    let (sa, len) = to_sockaddr(addr);
    // SAFETY: `sa` is a valid sockaddr of `len` bytes.
    cvt(unsafe { libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len) }).map(|_| ())
}

/// `recv(MSG_DONTWAIT | extra)` into `buf`.
fn recv(fd: RawFd, buf: &mut [u8], extra: libc::c_int) -> Result<usize, HostError> {
    // SAFETY: `buf` is writable for its length.
    cvt_size(unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            libc::MSG_DONTWAIT | extra,
        )
    })
}

/// `splice(2)` between two descriptors, nonblocking.
fn splice(from: RawFd, to: RawFd, len: usize) -> Result<usize, HostError> {
    // SAFETY: null offsets are required for sockets and pipes.
    cvt_size(unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    })
}

fn new_splice_pipe(to: SockId) -> Result<SplicePipe, HostError> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    // SAFETY: both descriptors are fresh and owned by no one else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: F_SETPIPE_SZ takes an int; failure leaves the size as it was.
    unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
    // SAFETY: F_GETPIPE_SZ takes no argument and returns the capacity.
    let capacity = cvt(unsafe { libc::fcntl(read.as_raw_fd(), libc::F_GETPIPE_SZ) })
        .map_or(65536, |c| c as usize);
    Ok(SplicePipe {
        read,
        write,
        to,
        pending: 0,
        capacity,
    })
}

/// Whether the peer's FIN was processed (the TCP state is one a FIN leads
/// to: CLOSE_WAIT, LAST_ACK, CLOSING, TIME_WAIT, or CLOSE).
fn peer_fin_received(fd: RawFd) -> Result<bool, HostError> {
    let mut raw = [0u8; 8];
    let mut len = raw.len() as libc::socklen_t;
    // SAFETY: `raw` is writable for `len` bytes.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            raw.as_mut_ptr() as *mut libc::c_void,
            &mut len,
        )
    })?;
    // include/net/tcp_states.h
    const TIME_WAIT: u8 = 6;
    const CLOSE: u8 = 7;
    const CLOSE_WAIT: u8 = 8;
    const LAST_ACK: u8 = 9;
    const CLOSING: u8 = 11;
    Ok(len >= 1 && matches!(raw[0], TIME_WAIT | CLOSE | CLOSE_WAIT | LAST_ACK | CLOSING))
}

fn epoll_events_of(interest: Interest) -> u32 {
    let mut ev = 0u32;
    if interest.readable {
        ev |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
    }
    if interest.writable {
        ev |= libc::EPOLLOUT as u32;
    }
    ev
}

/// Translates epoll event bits to [`Readiness`].
pub fn readiness_of(events: u32) -> Readiness {
    let has = |bit: libc::c_int| events & bit as u32 != 0;
    Readiness {
        readable: has(libc::EPOLLIN),
        writable: has(libc::EPOLLOUT),
        read_closed: has(libc::EPOLLRDHUP),
        hangup: has(libc::EPOLLHUP),
        error: has(libc::EPOLLERR),
    }
}

enum ErrQueue {
    Empty,
    NotIcmp,
    Icmp(IcmpErrorReport),
}

/// Reads one entry of the socket's error queue (`recvmsg(MSG_ERRQUEUE)`) and
/// parses its `sock_extended_err` (linux/errqueue.h; ip(7) `IP_RECVERR`).
fn recv_icmp_error(fd: RawFd) -> Result<ErrQueue, HostError> {
    // SAFETY: all plain old data; zero is valid.
    let mut name: libc::sockaddr_storage = unsafe { zeroed() };
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 64];
    // The quoted payload comes back as the message body: at most what an
    // ICMP error can carry (576 bytes for IPv4, 1280 for IPv6, minus
    // headers), so 2 KiB always holds it and its length is exact.
    let mut payload = [0u8; 2048];
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = &mut name as *mut _ as *mut libc::c_void;
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = size_of::<[u64; 64]>() as _;
    // SAFETY: every pointer in `msg` refers to a live local buffer of the
    // advertised size.
    let r = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    let returned = match cvt_size(r) {
        Ok(n) => n,
        Err(HostError::WouldBlock) => return Ok(ErrQueue::Empty),
        Err(e) => return Err(e),
    };
    let dst = from_sockaddr(&name, msg.msg_namelen);
    // SAFETY: the CMSG_* helpers walk the control buffer the kernel filled,
    // staying within msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: non-null cmsg pointers from CMSG_FIRSTHDR/NXTHDR are in bounds.
        let (level, ty, clen) =
            unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len) };
        let is_recverr = (level == libc::SOL_IP && ty == libc::IP_RECVERR)
            || (level == libc::SOL_IPV6 && ty == libc::IPV6_RECVERR);
        // SAFETY: CMSG_LEN(0) is a pure computation.
        let header = unsafe { libc::CMSG_LEN(0) } as usize;
        // cmsg_len is size_t on glibc but u32 on musl.
        #[allow(clippy::unnecessary_cast)]
        let data_len = (clen as usize).saturating_sub(header);
        if is_recverr && data_len >= size_of::<libc::sock_extended_err>() {
            // SAFETY: CMSG_DATA points at `data_len` readable bytes; we read
            // the struct unaligned and the offender address right after it.
            let data = unsafe { libc::CMSG_DATA(cmsg) } as *const u8;
            let ee = unsafe { std::ptr::read_unaligned(data as *const libc::sock_extended_err) };
            if ee.ee_origin != libc::SO_EE_ORIGIN_ICMP && ee.ee_origin != libc::SO_EE_ORIGIN_ICMP6 {
                return Ok(ErrQueue::NotIcmp);
            }
            let off_len = data_len - size_of::<libc::sock_extended_err>();
            let origin = sys::from_sockaddr_ptr(
                // SAFETY: still within the `data_len` bytes of the payload.
                unsafe { data.add(size_of::<libc::sock_extended_err>()) },
                off_len,
            )
            .map(|a| a.ip());
            let Some(dst) = dst else {
                return Ok(ErrQueue::NotIcmp);
            };
            return Ok(ErrQueue::Icmp(IcmpErrorReport {
                origin,
                dst,
                icmp_type: ee.ee_type,
                icmp_code: ee.ee_code,
                info: ee.ee_info,
                error: map_errno(ee.ee_errno as i32),
                payload_len: Some(returned),
            }));
        }
        // SAFETY: walks to the next header within the buffer, or null.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok(ErrQueue::NotIcmp)
}
