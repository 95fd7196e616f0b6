//! [`RealWorld`]: the conformance [`World`] over the Linux kernel on
//! loopback: `RealHost` under test, ordinary blocking sockets of the
//! standard library as peers, wall-clock waits.

use std::io::{ErrorKind, Read, Write};
use std::mem::size_of;
use std::net::{
    Ipv4Addr, Ipv6Addr, Shutdown as StdShutdown, SocketAddr, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use passt_conformance::{PeerSock, WAIT, World};
use passt_engine::host_io::{Family, HostError, HostIo, Interest, Readiness, SockId, Token};
use passt_engine::runtime::{RealHost, map_errno};

enum PeerObj {
    Listener(TcpListener),
    Stream(TcpStream),
    Udp(UdpSocket),
    /// A bound, not listening TCP socket: reserves a port that answers
    /// SYNs with RSTs.
    Reserved(#[allow(dead_code)] std::os::fd::OwnedFd),
}

/// [`World`] over the Linux kernel on loopback.
pub struct RealWorld {
    host: RealHost,
    peers: Vec<Option<PeerObj>>,
    events: Vec<(Token, Readiness)>,
}

impl RealWorld {
    /// A world around `host`.
    pub fn new(host: RealHost) -> RealWorld {
        RealWorld {
            host,
            peers: Vec::new(),
            events: Vec::with_capacity(256),
        }
    }

    fn add(&mut self, p: PeerObj) -> PeerSock {
        self.peers.push(Some(p));
        PeerSock((self.peers.len() - 1) as u32)
    }

    fn stream(&mut self, s: PeerSock) -> Result<&mut TcpStream, HostError> {
        match self.peers.get_mut(s.0 as usize) {
            Some(Some(PeerObj::Stream(t))) => Ok(t),
            _ => Err(HostError::BadSocket),
        }
    }

    fn udp(&mut self, s: PeerSock) -> Result<&mut UdpSocket, HostError> {
        match self.peers.get_mut(s.0 as usize) {
            Some(Some(PeerObj::Udp(u))) => Ok(u),
            _ => Err(HostError::BadSocket),
        }
    }
}

fn io_err(e: std::io::Error) -> HostError {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => HostError::WouldBlock,
        _ => e.raw_os_error().map_or(HostError::Other(0), map_errno),
    }
}

fn lo(family: Family) -> SocketAddr {
    match family {
        Family::V4 => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
        Family::V6 => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 0),
    }
}

const TOKEN_BASE: u64 = 1 << 40;

impl World for RealWorld {
    type Host = RealHost;

    fn host(&mut self) -> &mut RealHost {
        &mut self.host
    }

    fn wait_ready(
        &mut self,
        sock: SockId,
        interest: Interest,
        limit: Duration,
    ) -> Option<Readiness> {
        let token = Token(TOKEN_BASE + sock.0 as u64);
        self.host.set_interest(sock, token, interest).ok()?;
        let deadline = Instant::now() + limit;
        let mut found = None;
        while found.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.events.clear();
            self.host.wait(Some(left), &mut self.events).ok()?;
            found = self.events.iter().find_map(|&(t, r)| {
                let wanted = (interest.readable && r.readable)
                    || (interest.writable && r.writable)
                    || r.error
                    || r.hangup;
                (t == token && wanted).then_some(r)
            });
        }
        // Quiet the socket again so later waits are not flooded.
        let _ = self.host.set_interest(sock, token, Interest::NONE);
        found
    }

    fn settle(&mut self) {
        std::thread::sleep(Duration::from_millis(30));
    }

    fn settle_briefly(&mut self) {
        std::thread::sleep(Duration::from_millis(1));
    }

    fn peer_tcp_listen(&mut self, family: Family) -> (PeerSock, SocketAddr) {
        let l = TcpListener::bind(lo(family)).expect("loopback listener");
        let a = l.local_addr().expect("listener address");
        l.set_nonblocking(true).expect("nonblocking listener");
        (self.add(PeerObj::Listener(l)), a)
    }

    fn peer_tcp_accept(&mut self, listener: PeerSock) -> Result<PeerSock, HostError> {
        let deadline = Instant::now() + WAIT;
        loop {
            let Some(Some(PeerObj::Listener(l))) = self.peers.get(listener.0 as usize) else {
                return Err(HostError::BadSocket);
            };
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).map_err(io_err)?;
                    s.set_read_timeout(Some(WAIT)).map_err(io_err)?;
                    return Ok(self.add(PeerObj::Stream(s)));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(io_err(e)),
            }
        }
    }

    fn peer_tcp_connect(&mut self, addr: SocketAddr) -> Result<PeerSock, HostError> {
        let s = TcpStream::connect_timeout(&addr, WAIT).map_err(io_err)?;
        s.set_read_timeout(Some(WAIT)).map_err(io_err)?;
        Ok(self.add(PeerObj::Stream(s)))
    }

    fn peer_tcp_write(&mut self, conn: PeerSock, data: &[u8]) -> Result<(), HostError> {
        let s = self.stream(conn)?;
        s.set_write_timeout(Some(WAIT)).map_err(io_err)?;
        s.write_all(data).map_err(io_err)
    }

    fn peer_tcp_read(&mut self, conn: PeerSock, buf: &mut [u8]) -> Result<usize, HostError> {
        self.stream(conn)?.read(buf).map_err(io_err)
    }

    fn peer_tcp_shutdown_write(&mut self, conn: PeerSock) {
        if let Ok(s) = self.stream(conn) {
            let _ = s.shutdown(StdShutdown::Write);
        }
    }

    fn peer_tcp_abort(&mut self, conn: PeerSock) {
        if let Ok(s) = self.stream(conn) {
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: pointer and size describe `linger`.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    &linger as *const libc::linger as *const libc::c_void,
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
        }
        self.peer_close(conn);
    }

    fn peer_close(&mut self, sock: PeerSock) {
        if let Some(slot) = self.peers.get_mut(sock.0 as usize) {
            *slot = None;
        }
    }

    fn closed_tcp_port(&mut self, family: Family) -> SocketAddr {
        // A bound socket that never listens holds the port: SYNs to it
        // are answered with RSTs and no one else can take it meanwhile.
        let fd = bound_tcp_socket(family);
        let port = local_port(&fd, family);
        self.add(PeerObj::Reserved(fd));
        SocketAddr::new(lo(family).ip(), port)
    }

    fn closed_udp_port(&mut self, family: Family) -> SocketAddr {
        // Bind, note the port, close: nothing else on this machine's
        // loopback picks ephemeral ports fast enough to matter here.
        let u = UdpSocket::bind(lo(family)).expect("udp bind");
        u.local_addr().expect("udp address")
    }

    fn peer_udp_bind(&mut self, family: Family) -> (PeerSock, SocketAddr) {
        let u = UdpSocket::bind(lo(family)).expect("udp bind");
        u.set_read_timeout(Some(WAIT)).expect("udp timeout");
        let a = u.local_addr().expect("udp address");
        (self.add(PeerObj::Udp(u)), a)
    }

    fn peer_udp_send(&mut self, sock: PeerSock, data: &[u8], dst: SocketAddr) {
        if let Ok(u) = self.udp(sock) {
            let _ = u.send_to(data, dst);
        }
    }

    fn peer_udp_recv(
        &mut self,
        sock: PeerSock,
        buf: &mut [u8],
    ) -> Result<(usize, SocketAddr), HostError> {
        self.udp(sock)?.recv_from(buf).map_err(io_err)
    }
}

/// A TCP socket bound to an ephemeral port on `family`'s loopback, not
/// listening.
fn bound_tcp_socket(family: Family) -> OwnedFd {
    let af = match family {
        Family::V4 => libc::AF_INET,
        Family::V6 => libc::AF_INET6,
    };
    // SAFETY: plain syscall; checked below.
    let raw = unsafe { libc::socket(af, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(raw >= 0, "socket for a reserved port");
    // SAFETY: fresh descriptor owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let r = match family {
        Family::V4 => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(Ipv4Addr::LOCALHOST.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sin` is a valid sockaddr_in of the given size.
            unsafe {
                libc::bind(
                    raw,
                    &sin as *const libc::sockaddr_in as *const libc::sockaddr,
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        Family::V6 => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: Ipv6Addr::LOCALHOST.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: `sin6` is a valid sockaddr_in6 of the given size.
            unsafe {
                libc::bind(
                    raw,
                    &sin6 as *const libc::sockaddr_in6 as *const libc::sockaddr,
                    size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    assert_eq!(r, 0, "bind reserved port");
    fd
}

/// The port `fd` is bound to.
fn local_port(fd: &OwnedFd, family: Family) -> u16 {
    // SAFETY: all-zero is a valid sockaddr_storage; the kernel writes at
    // most `len` bytes into it.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: valid descriptor, buffer and length.
    let r = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            &mut storage as *mut libc::sockaddr_storage as *mut libc::sockaddr,
            &mut len,
        )
    };
    assert_eq!(r, 0, "getsockname of a reserved port");
    let ptr = &storage as *const libc::sockaddr_storage;
    match family {
        // SAFETY: the kernel filled in a sockaddr_in for an AF_INET socket;
        // sockaddr_storage is large and aligned enough for it.
        Family::V4 => u16::from_be(unsafe { (*(ptr as *const libc::sockaddr_in)).sin_port }),
        // SAFETY: as above, a sockaddr_in6 for an AF_INET6 socket.
        Family::V6 => u16::from_be(unsafe { (*(ptr as *const libc::sockaddr_in6)).sin6_port }),
    }
}
