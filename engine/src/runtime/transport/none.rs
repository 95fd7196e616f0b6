//! No guest at all: pasta's `--splice-only`, where the namespace is served
//! only through sockets spliced on its loopback and no tap exists.
//!
//! [`NoGuest`] registers no descriptor and never has a connected guest, so
//! the loop discards whatever the engine queues for a guest (counted in
//! `LoopStats::frames_discarded`) and only host readiness, timers and
//! signals drive it. It never opens a descriptor.

use std::os::fd::BorrowedFd;
use std::path::Path;

use super::{Clients, GuestRx, GuestTransport, GuestTx};
use crate::host_io::HostError;
use crate::runtime::host::RealHost;

/// The transport of a process that serves no guest. See the module docs.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoGuest;

impl GuestTransport for NoGuest {
    fn register(&mut self, _: &mut RealHost) -> Result<(), HostError> {
        Ok(())
    }

    fn on_listener_ready(&mut self, _: &mut RealHost) -> Result<bool, HostError> {
        Ok(false)
    }

    fn guest_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn halves(&mut self) -> Option<(&mut dyn GuestRx, &mut dyn GuestTx)> {
        None
    }

    fn disconnect(&mut self, _: &mut RealHost) {}

    /// Nothing ever connects, and nothing ends the wait either: the loop
    /// runs until a signal or the exit watch.
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
