//! UDP translation (placeholder: the module lands with the UDP issue).
//!
//! Until then every guest datagram (other than DHCP, which the engine
//! answers itself) is dropped and counted as [`DropReason::NotImplemented`].

use std::net::IpAddr;

use crate::config::Config;
use crate::counters::DropReason;
use crate::engine::Ctx;
use crate::host_io::{HostIo, Readiness, Token};
use crate::time::Instant;
use crate::wire::UdpRepr;

/// UDP flows between the guest and host sockets.
#[derive(Debug, Default)]
pub struct Udp {}

impl Udp {
    /// Sized from the configuration.
    pub fn new(_config: &Config) -> Self {
        Udp {}
    }

    /// A datagram from the guest.
    pub fn on_datagram<H: HostIo>(
        &mut self,
        _cx: &mut Ctx<'_, H>,
        _now: Instant,
        _src: IpAddr,
        _dst: IpAddr,
        _udp: &UdpRepr,
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
