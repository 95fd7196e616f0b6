//! Thin, checked wrappers over the raw libc calls the backend shares:
//! errno mapping, socket address conversion, integer socket options.
//!
//! Every `unsafe` block here has its safety argument beside it; callers get
//! safe functions over `RawFd`s they own.

use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use crate::host_io::HostError;

/// `SO_PEEK_OFF` (asm-generic/socket.h); not exported by every libc build.
pub(crate) const SO_PEEK_OFF: libc::c_int = 42;
/// `SIOCINQ` (= `FIONREAD`): bytes in the receive queue.
pub(crate) const SIOCINQ: libc::c_ulong = 0x541B;
/// `SIOCOUTQ` (= `TIOCOUTQ`): bytes in the send queue, not yet acknowledged.
pub(crate) const SIOCOUTQ: libc::c_ulong = 0x5411;

/// The calling thread's errno.
pub(crate) fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Maps an errno to the engine's error type. Exhaustive over the variants of
/// [`HostError`]; anything unnamed is kept as `Other(errno)`.
pub fn map_errno(e: i32) -> HostError {
    match e {
        libc::EAGAIN => HostError::WouldBlock, // == EWOULDBLOCK on Linux
        libc::EINPROGRESS => HostError::InProgress,
        libc::ECONNREFUSED => HostError::ConnectionRefused,
        libc::ECONNRESET => HostError::ConnectionReset,
        libc::ETIMEDOUT => HostError::TimedOut,
        libc::EHOSTUNREACH | libc::EHOSTDOWN => HostError::HostUnreachable,
        libc::ENETUNREACH | libc::ENETDOWN => HostError::NetworkUnreachable,
        libc::EADDRINUSE => HostError::AddrInUse,
        libc::EADDRNOTAVAIL => HostError::AddrNotAvailable,
        libc::EACCES | libc::EPERM => HostError::PermissionDenied,
        libc::ENOTCONN => HostError::NotConnected,
        libc::EPIPE => HostError::BrokenPipe,
        libc::EMSGSIZE => HostError::MessageTooLong,
        libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT => HostError::Unsupported,
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => HostError::NoResources,
        libc::EBADF => HostError::BadSocket,
        other => HostError::Other(other),
    }
}

/// The last errno, mapped.
pub(crate) fn last_error() -> HostError {
    map_errno(errno())
}

/// `-1` -> the mapped errno, anything else -> the value.
pub(crate) fn cvt(ret: libc::c_int) -> Result<libc::c_int, HostError> {
    if ret == -1 {
        Err(last_error())
    } else {
        Ok(ret)
    }
}

/// `ssize_t` variant of [`cvt`].
pub(crate) fn cvt_size(ret: libc::ssize_t) -> Result<usize, HostError> {
    if ret < 0 {
        Err(last_error())
    } else {
        Ok(ret as usize)
    }
}

/// A `sockaddr_storage` holding `addr`, and its meaningful length.
pub(crate) fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned
            // for sockaddr_in (that is its purpose).
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Reads a socket address the kernel wrote; `None` for other families or a
/// too-short length.
pub(crate) fn from_sockaddr(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    from_sockaddr_ptr(storage as *const _ as *const u8, len as usize)
}

/// Like [`from_sockaddr`], over raw bytes that may be unaligned (a control
/// message payload). `ptr` must be valid for `len` bytes.
pub(crate) fn from_sockaddr_ptr(ptr: *const u8, len: usize) -> Option<SocketAddr> {
    if len < size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: the caller guarantees `len` readable bytes; we read at most the
    // size we checked `len` against, unaligned.
    let family = unsafe { std::ptr::read_unaligned(ptr as *const libc::sa_family_t) };
    match family as i32 {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: length checked above.
            let sin = unsafe { std::ptr::read_unaligned(ptr as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: length checked above.
            let sin6 = unsafe { std::ptr::read_unaligned(ptr as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The unspecified address of `ip`'s family with port `port`.
pub(crate) fn unspecified(v6: bool, port: u16) -> SocketAddr {
    if v6 {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)
    } else {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
    }
}

/// `setsockopt` with an `int` value.
pub(crate) fn set_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> Result<(), HostError> {
    // SAFETY: we pass a pointer to a live c_int and its exact size.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// `getsockopt` with an `int` value.
pub(crate) fn get_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> Result<libc::c_int, HostError> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: pointer and length describe `value`, which outlives the call.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            &mut value as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(value)
}

/// An `ioctl` that writes one `int` (`SIOCINQ`, `SIOCOUTQ`).
pub(crate) fn ioctl_int(fd: RawFd, request: libc::c_ulong) -> Result<libc::c_int, HostError> {
    let mut value: libc::c_int = 0;
    // SAFETY: both requests write exactly one int through the pointer.
    cvt(unsafe { libc::ioctl(fd, request as _, &mut value as *mut libc::c_int) })?;
    Ok(value)
}

/// `getsockname`.
pub(crate) fn local_addr(fd: RawFd) -> Result<SocketAddr, HostError> {
    // SAFETY: zeroed sockaddr_storage is valid; the kernel writes at most
    // `len` bytes into it.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    cvt(unsafe { libc::getsockname(fd, &mut storage as *mut _ as *mut libc::sockaddr, &mut len) })?;
    from_sockaddr(&storage, len).ok_or(HostError::Unsupported)
}

/// `sendmsg(MSG_NOSIGNAL | MSG_DONTWAIT)` of a vector.
pub(crate) fn send_vectored(
    fd: BorrowedFd<'_>,
    iov: &[std::io::IoSlice<'_>],
) -> Result<usize, HostError> {
    // SAFETY: zeroed msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is ABI-compatible with `struct iovec` on Unix.
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: `msg` points to `iov`, live for the call; the kernel only reads.
    let n = unsafe {
        libc::sendmsg(
            fd.as_raw_fd(),
            &msg,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(map_errno(errno()));
    }
    Ok(n as usize)
}

/// Waits until `fd` is writable or one of `wake` is readable, at most
/// `timeout` (`None`: no limit). Interrupted waits return early; the caller
/// loops.
pub(crate) fn wait_writable(
    fd: BorrowedFd<'_>,
    wake: &[BorrowedFd<'_>],
    timeout: Option<std::time::Duration>,
) -> Result<(), HostError> {
    let mut fds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 4];
    fds[0] = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let mut n = 1;
    for w in wake.iter().take(fds.len() - 1) {
        fds[n] = libc::pollfd {
            fd: w.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        n += 1;
    }
    let ms = timeout.map_or(-1, |d| {
        // Round up: a wait shorter than a millisecond must not become 0.
        i32::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX)
    });
    // SAFETY: `fds[..n]` is a valid, writable array of pollfd.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), n as libc::nfds_t, ms) };
    if r < 0 && errno() != libc::EINTR {
        return Err(map_errno(errno()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        for a in [
            "127.0.0.1:80".parse::<SocketAddr>().unwrap(),
            "[::1]:65535".parse().unwrap(),
            "[fe80::1%3]:7".parse().unwrap(),
        ] {
            let (s, l) = to_sockaddr(&a);
            assert_eq!(from_sockaddr(&s, l), Some(a));
        }
        let (s, _) = to_sockaddr(&"1.2.3.4:5".parse().unwrap());
        assert_eq!(from_sockaddr(&s, 3), None);
    }

    #[test]
    fn errno_mapping() {
        assert_eq!(map_errno(libc::EWOULDBLOCK), HostError::WouldBlock);
        assert_eq!(map_errno(libc::EPERM), HostError::PermissionDenied);
        assert_eq!(map_errno(libc::ENFILE), HostError::NoResources);
        assert_eq!(map_errno(libc::EINVAL), HostError::Other(libc::EINVAL));
    }
}
