//! Guest transports: where the guest's Ethernet frames come from and go to.
//!
//! The event loop drives any [`GuestTransport`] the same way and never asks
//! which one it has:
//! - [`stream`]: QEMU's `-netdev stream` socket (a listening UNIX socket,
//!   one client at a time, or a pre-connected descriptor with `-F`), with
//!   the length-prefix codec in [`framing`];
//! - [`tap`]: a tap device (pasta, and the tap harness);
//! - [`none`]: no guest at all (pasta's `--splice-only`).
//!
//! vhost-user and pasta's own tap set-up are further implementations of the
//! same trait. A transport owns its descriptors, its connection state and
//! its framing; it never looks inside a frame and never calls the engine.

pub mod framing;
pub mod none;
pub mod stream;
pub mod tap;

use std::fmt;
use std::os::fd::BorrowedFd;
use std::path::Path;

use super::host::RealHost;
use crate::host_io::{HostError, Token};
use crate::txq::TxQueue;

pub use none::NoGuest;
pub use stream::StreamTransport;
pub use tap::{Tap, TapTransport};

/// The transport's listening descriptor (QEMU's UNIX socket), if it has one.
pub const TOKEN_LISTENER: Token = Token(u64::MAX - 2);
/// The connected guest: the accepted or pre-connected QEMU socket, or the
/// tap device.
pub const TOKEN_GUEST: Token = Token(u64::MAX - 3);

/// What one read from the guest gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fill {
    /// Bytes or a frame arrived: look for frames, then read again.
    Read,
    /// Nothing was waiting.
    Empty,
    /// The guest is gone (closed, or a read error): the reason, for the log.
    Closed(String),
}

/// The receiving half of a connected guest.
pub trait GuestRx {
    /// One nonblocking read from the guest into the transport's buffer.
    /// Called only once every buffered frame was taken.
    fn fill(&mut self) -> Fill;

    /// The next complete frame received, left in place until
    /// [`GuestRx::pop_frame`] (so a frame the engine cannot take yet waits
    /// here). `Err` with a reason when the stream is corrupt and the
    /// connection must be reset; the caller logs it. No side effects: it
    /// may be called again before the frame is taken.
    fn peek_frame(&mut self) -> Result<Option<&[u8]>, String>;

    /// Drops the frame [`GuestRx::peek_frame`] returned.
    fn pop_frame(&mut self);

    /// Reads per readiness report before other work gets a turn (readiness
    /// is level-triggered, so what is left is reported again).
    fn reads_per_wakeup(&self) -> usize;
}

/// The sending half of a connected guest.
pub trait GuestTx {
    /// Writes frames from the front of `frames`, in order, and returns how
    /// many it took (see [`crate::driver::FrameSink::accept`]): fewer when
    /// the guest's buffer is full. `Err` with a reason when the guest is
    /// gone.
    fn send(&mut self, frames: &TxQueue) -> Result<usize, String>;

    /// Part of a frame is still waiting to be written (a stream socket took
    /// only some of its bytes).
    fn has_pending(&self) -> bool;
}

/// Guests connected and refused, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clients {
    /// Guests served (connections accepted, or the pre-connected one).
    pub accepted: u64,
    /// Connections refused because a guest was already connected.
    pub refused: u64,
}

/// A guest-facing frame transport. See the module docs.
pub trait GuestTransport: fmt::Debug {
    /// Adds the transport's descriptors to `host`'s epoll set, with
    /// [`TOKEN_LISTENER`] and [`TOKEN_GUEST`].
    fn register(&mut self, host: &mut RealHost) -> Result<(), HostError>;

    /// Readiness on [`TOKEN_LISTENER`]: accepts waiting guests. Returns
    /// whether a new guest is now connected (the loop then forgets frames
    /// queued for the previous one).
    fn on_listener_ready(&mut self, host: &mut RealHost) -> Result<bool, HostError>;

    /// The connected guest's descriptor (for the loop's write interest and
    /// its waits), `None` while no guest is connected.
    fn guest_fd(&self) -> Option<BorrowedFd<'_>>;

    /// Both halves of the connected guest, `None` while none is.
    fn halves(&mut self) -> Option<(&mut dyn GuestRx, &mut dyn GuestTx)>;

    /// Closes the connection to the guest (deregistering it from `host`).
    fn disconnect(&mut self, host: &mut RealHost);

    /// Whether, after a disconnection, another guest may come.
    fn awaits_next_guest(&self) -> bool;

    /// One-off mode (`-1`): no next guest after this one.
    fn set_one_off(&mut self, one_off: bool);

    /// Guests served and refused so far.
    fn clients(&self) -> Clients;

    /// The listening socket's path, if any.
    fn socket_path(&self) -> Option<&Path>;

    /// Closes the listener and removes its socket file, if any.
    fn shut_down(&mut self, host: &mut RealHost);
}

impl<T: GuestTransport + ?Sized> GuestTransport for Box<T> {
    fn register(&mut self, host: &mut RealHost) -> Result<(), HostError> {
        (**self).register(host)
    }
    fn on_listener_ready(&mut self, host: &mut RealHost) -> Result<bool, HostError> {
        (**self).on_listener_ready(host)
    }
    fn guest_fd(&self) -> Option<BorrowedFd<'_>> {
        (**self).guest_fd()
    }
    fn halves(&mut self) -> Option<(&mut dyn GuestRx, &mut dyn GuestTx)> {
        (**self).halves()
    }
    fn disconnect(&mut self, host: &mut RealHost) {
        (**self).disconnect(host)
    }
    fn awaits_next_guest(&self) -> bool {
        (**self).awaits_next_guest()
    }
    fn set_one_off(&mut self, one_off: bool) {
        (**self).set_one_off(one_off)
    }
    fn clients(&self) -> Clients {
        (**self).clients()
    }
    fn socket_path(&self) -> Option<&Path> {
        (**self).socket_path()
    }
    fn shut_down(&mut self, host: &mut RealHost) {
        (**self).shut_down(host)
    }
}
