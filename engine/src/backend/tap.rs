//! Tap devices: the guest side of pasta (and of passt in tap mode).
//!
//! A [`Tap`] is `/dev/net/tun` attached to a named interface with
//! `TUNSETIFF(IFF_TAP | IFF_NO_PI)` (Documentation/networking/tuntap.rst):
//! each `read` returns exactly one Ethernet frame and each `write` sends
//! exactly one, with no packet-information header. The descriptor is
//! nonblocking; register it with [`super::RealHost::add_fd`].
//!
//! A tap lives in the network namespace of whoever opened it, so
//! [`Tap::open_in_netns`] opens it from a short-lived thread that joins the
//! target namespace first (`setns(CLONE_NEWNET)` only affects that thread;
//! the descriptor keeps working after it exits).
//!
//! This module never parses frames.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::sys::{cvt, cvt_size, map_errno};
use crate::host_io::HostError;

/// An open tap interface.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
}

impl Tap {
    /// Attaches to (creating if needed) the tap interface `name` in the
    /// caller's network namespace; an empty name lets the kernel choose
    /// (`tap%d`). Needs `CAP_NET_ADMIN` for a new interface.
    pub fn open(name: &str) -> Result<Tap, HostError> {
        if name.len() >= libc::IFNAMSIZ || name.as_bytes().contains(&0) {
            return Err(HostError::Other(libc::EINVAL));
        }
        let path = c"/dev/net/tun";
        // SAFETY: `path` is NUL-terminated; the result is checked.
        let fd = cvt(unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: fresh descriptor owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ifreq is plain old data; zero is valid.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`.
        cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, &mut ifr) })?;
        // The kernel writes back the name it used.
        let actual: Vec<u8> = ifr
            .ifr_name
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        Ok(Tap {
            fd,
            name: String::from_utf8_lossy(&actual).into_owned(),
        })
    }

    /// Like [`Tap::open`], inside the network namespace `netns` (a path
    /// such as `/run/netns/NAME` or `/proc/PID/ns/net`).
    pub fn open_in_netns(netns: &Path, name: &str) -> Result<Tap, HostError> {
        let ns = File::open(netns)
            .map_err(|e| e.raw_os_error().map_or(HostError::Other(0), map_errno))?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: plain syscall on a descriptor we hold open.
                    cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })?;
                    Tap::open(name)
                })
                .join()
                .unwrap_or(Err(HostError::Other(libc::EIO)))
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame into `buf` (a frame longer than `buf` is cut).
    /// `WouldBlock` when none is waiting.
    pub fn read_frame(&self, buf: &mut [u8]) -> Result<usize, HostError> {
        // SAFETY: `buf` is writable for its length.
        cvt_size(unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        })
    }

    /// Writes one frame. `WouldBlock` when the device queue is full.
    pub fn write_frame(&self, frame: &[u8]) -> Result<(), HostError> {
        // SAFETY: `frame` is readable for its length.
        let n = cvt_size(unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
            )
        })?;
        if n == frame.len() {
            Ok(())
        } else {
            // A tap write is all or nothing; anything else is unexpected.
            Err(HostError::Other(libc::EIO))
        }
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}
