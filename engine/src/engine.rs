//! The [`Engine`]: entry points of the sans-IO core.
//!
//! It owns the configuration, the seeded generator, the transmit queue, the
//! counters and the `HostIo` implementation, and routes each guest frame to
//! the module that owns its protocol. It never reads a clock: every entry
//! point takes `now`.

use crate::MacAddr;
use crate::config::{Config, ConfigError};
use crate::counters::{Counters, DropReason};
use crate::host_io::{HostIo, Readiness, Token};
use crate::rng::Rng;
use crate::time::Instant;
use crate::txq::TxQueue;

/// The network engine, generic over its host side.
pub struct Engine<H: HostIo> {
    config: Config,
    host: H,
    rng: Rng,
    txq: TxQueue,
    counters: Counters,
    guest_mac: Option<MacAddr>,
}

impl<H: HostIo> Engine<H> {
    /// Builds an engine. `seed` determines every random choice it makes.
    pub fn new(config: Config, host: H, seed: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        let txq = TxQueue::new(config.tx_queue_frames, config.tx_queue_bytes);
        Ok(Engine {
            guest_mac: config.guest_mac,
            config,
            host,
            rng: Rng::from_seed(seed),
            txq,
            counters: Counters::default(),
        })
    }

    /// One Ethernet frame from the guest (without any length prefix).
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) {
        let _ = now;
        self.counters.frames_in += 1;
        self.counters.bytes_in += frame.len() as u64;
        self.counters.drop(DropReason::NotImplemented);
    }

    /// Readiness on a host socket registered with `token`.
    pub fn handle_host_event(&mut self, now: Instant, token: Token, readiness: Readiness) {
        let _ = (now, token, readiness);
    }

    /// The next instant at which [`Engine::handle_timeout`] must be called,
    /// if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Runs every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
    }

    /// Frames waiting for the guest. The caller writes them out and calls
    /// [`TxQueue::consume`] with the number written.
    pub fn tx_queue(&mut self) -> &mut TxQueue {
        &mut self.txq
    }

    /// Counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The guest's MAC, once known.
    pub fn guest_mac(&self) -> Option<MacAddr> {
        self.guest_mac
    }

    /// The host side.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// The host side, mutably (the simulator drives its model through this).
    pub fn host_mut(&mut self) -> &mut H {
        &mut self.host
    }

    /// The engine's generator (for modules; exposed for tests).
    pub fn rng_mut(&mut self) -> &mut Rng {
        &mut self.rng
    }
}
