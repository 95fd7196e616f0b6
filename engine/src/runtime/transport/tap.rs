//! Tap devices: the guest side of pasta (and of passt in tap mode).
//!
//! A [`Tap`] is `/dev/net/tun` attached to a named interface with
//! `TUNSETIFF(IFF_TAP | IFF_NO_PI)` (Documentation/networking/tuntap.rst):
//! each `read` returns exactly one Ethernet frame and each `write` sends
//! exactly one, with no packet-information header. The descriptor is
//! nonblocking; register it with [`crate::runtime::RealHost::add_fd`].
//!
//! A tap lives in the network namespace of whoever opened it, so
//! [`Tap::open_in_netns`] opens it with [`NetNs::run_in`].
//!
//! [`TapTransport`] is the tap as a [`GuestTransport`]: always connected,
//! one frame per read and per write.
//!
//! This module never parses frames.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use super::{Clients, Fill, GuestRx, GuestTransport, GuestTx, TOKEN_GUEST};
use crate::host_io::{HostError, Interest};
use crate::runtime::host::RealHost;
use crate::runtime::logging::{log_debug, log_warn};
use crate::runtime::netns::NetNs;
use crate::runtime::sys::{cvt, cvt_size, map_errno};
use crate::txq::TxQueue;

/// Tap frames read per readiness report.
const FRAMES_PER_WAKEUP: usize = 64;
/// Largest tap frame read (a 65535-byte frame, and room to notice more).
const TAP_BUF: usize = 65536 + 4;
/// Smallest frame taken: an Ethernet header.
const MIN_FRAME: usize = 14;
/// Largest frame taken.
const MAX_FRAME: usize = 65535;

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
        Tap::open_in(&NetNs::open(netns).map_err(io_err)?, name)
    }

    /// Like [`Tap::open`], inside the network namespace `ns`.
    pub fn open_in(ns: &NetNs, name: &str) -> Result<Tap, HostError> {
        ns.run_in(|| Tap::open(name)).map_err(io_err)?
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

fn io_err(e: std::io::Error) -> HostError {
    e.raw_os_error().map_or(HostError::Other(0), map_errno)
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

/// Receiving half: the device and a one-frame buffer.
#[derive(Debug)]
struct TapRx {
    tap: Arc<Tap>,
    buf: Box<[u8]>,
    /// Length of the frame in `buf` not yet taken.
    held: Option<usize>,
}

/// Sending half.
#[derive(Debug)]
struct TapTx {
    tap: Arc<Tap>,
}

/// A tap device as the guest transport. See the module docs.
#[derive(Debug)]
pub struct TapTransport {
    rx: TapRx,
    tx: TapTx,
}

impl TapTransport {
    /// The transport over an open tap.
    pub fn new(tap: Tap) -> TapTransport {
        let tap = Arc::new(tap);
        TapTransport {
            rx: TapRx {
                tap: Arc::clone(&tap),
                buf: vec![0; TAP_BUF].into_boxed_slice(),
                held: None,
            },
            tx: TapTx { tap },
        }
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        self.tx.tap.name()
    }
}

impl From<Tap> for TapTransport {
    fn from(tap: Tap) -> Self {
        TapTransport::new(tap)
    }
}

impl GuestTransport for TapTransport {
    fn register(&mut self, host: &mut RealHost) -> Result<(), HostError> {
        host.add_fd(self.tx.tap.as_fd(), TOKEN_GUEST, Interest::READ)
    }

    fn on_listener_ready(&mut self, _: &mut RealHost) -> Result<bool, HostError> {
        Ok(false)
    }

    fn guest_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.tx.tap.as_fd())
    }

    fn halves(&mut self) -> Option<(&mut dyn GuestRx, &mut dyn GuestTx)> {
        Some((&mut self.rx, &mut self.tx))
    }

    /// A tap stays: there is nothing to disconnect.
    fn disconnect(&mut self, _: &mut RealHost) {}

    fn awaits_next_guest(&self) -> bool {
        true
    }

    fn set_one_off(&mut self, _: bool) {}

    fn clients(&self) -> Clients {
        Clients::default()
    }

    fn socket_path(&self) -> Option<&Path> {
        None
    }

    fn shut_down(&mut self, _: &mut RealHost) {}
}

impl GuestRx for TapRx {
    fn fill(&mut self) -> Fill {
        if self.held.is_some() {
            return Fill::Read;
        }
        match self.tap.read_frame(&mut self.buf) {
            Ok(n) if (MIN_FRAME..=MAX_FRAME).contains(&n) => {
                self.held = Some(n);
                Fill::Read
            }
            Ok(n) => {
                log_debug!("tap: ignored a {n}-byte read");
                Fill::Read
            }
            Err(HostError::WouldBlock) => Fill::Empty,
            Err(e) => {
                log_warn!("tap read failed: {e}");
                Fill::Empty
            }
        }
    }

    fn peek_frame(&mut self) -> Result<Option<&[u8]>, String> {
        Ok(self.held.map(|n| &self.buf[..n]))
    }

    fn pop_frame(&mut self) {
        self.held = None;
    }

    fn reads_per_wakeup(&self) -> usize {
        FRAMES_PER_WAKEUP
    }
}

impl GuestTx for TapTx {
    fn send(&mut self, frames: &TxQueue) -> Result<usize, String> {
        let mut written = 0;
        for f in frames.iter() {
            match self.tap.write_frame(f) {
                Ok(()) => written += 1,
                Err(HostError::WouldBlock) => break,
                Err(e) => {
                    // Drop the frame rather than retry it forever.
                    log_debug!("tap write failed: {e}");
                    written += 1;
                }
            }
        }
        Ok(written)
    }

    fn has_pending(&self) -> bool {
        false
    }
}
