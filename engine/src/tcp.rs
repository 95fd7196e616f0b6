//! TCP translation (placeholder: the module lands with the TCP issue).
//!
//! Until then every guest segment is dropped and counted as
//! [`DropReason::NotImplemented`].

use std::net::IpAddr;

use crate::config::Config;
use crate::counters::DropReason;
use crate::engine::Ctx;
use crate::host_io::{HostIo, Readiness, Token};
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::TcpRepr;

/// TCP flows between the guest and host sockets.
#[derive(Debug)]
pub struct Tcp {
    _rng: Rng,
}

impl Tcp {
    /// Sized from the configuration (flow table capacity).
    pub fn new(_config: &Config, rng: Rng) -> Self {
        Tcp { _rng: rng }
    }

    /// A segment from the guest.
    pub fn on_segment<H: HostIo>(
        &mut self,
        _cx: &mut Ctx<'_, H>,
        _now: Instant,
        _src: IpAddr,
        _dst: IpAddr,
        _tcp: &TcpRepr,
        _payload: &[u8],
    ) -> Result<(), DropReason> {
        Err(DropReason::NotImplemented)
    }

    /// Readiness on one of this module's sockets.
    pub fn on_host_event<H: HostIo>(
        &mut self,
        _cx: &mut Ctx<'_, H>,
        _now: Instant,
        _token: Token,
        _readiness: Readiness,
    ) {
    }

    /// Next timer deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Runs due timers.
    pub fn handle_timeout<H: HostIo>(&mut self, _cx: &mut Ctx<'_, H>, _now: Instant) {}
}
