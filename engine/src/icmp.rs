//! ICMP/ICMPv6 echo translation (placeholder: lands with the ICMP issue).
//!
//! Until then every echo request is dropped and counted as
//! [`DropReason::NotImplemented`].

use std::net::IpAddr;

use crate::config::Config;
use crate::counters::DropReason;
use crate::engine::Ctx;
use crate::host_io::{HostIo, Readiness, Token};
use crate::time::Instant;

/// Echo flows through host ping sockets.
#[derive(Debug, Default)]
pub struct Icmp {}

impl Icmp {
    /// Sized from the configuration.
    pub fn new(_config: &Config) -> Self {
        Icmp {}
    }

    /// An echo request from the guest.
    #[allow(clippy::too_many_arguments)]
    pub fn on_echo_request<H: HostIo>(
        &mut self,
        _cx: &mut Ctx<'_, H>,
        _now: Instant,
        _src: IpAddr,
        _dst: IpAddr,
        _ident: u16,
        _seq_no: u16,
        _data: &[u8],
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
