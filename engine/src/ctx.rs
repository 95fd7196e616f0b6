//! What a protocol module gets from the engine for one call: the shared
//! state ([`Ctx`]) and what the engine has learnt about the guest
//! ([`GuestState`]).
//!
//! It sits below the protocol modules and the [`crate::Engine`] that owns
//! them, so that both can name it without importing each other. It owns
//! the one way a frame for the guest is queued and counted
//! ([`Ctx::emit`]); it never decides what a frame says.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::MacAddr;
use crate::config::Config;
use crate::counters::{Counters, DropReason};
use crate::flow::FlowLimit;
use crate::host_io::HostIo;
use crate::rng::Rng;
use crate::txq::TxQueue;
use crate::wire::{IpRepr, Ipv4Repr, Ipv6Repr};

/// What the engine has learnt about the guest from its frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestState {
    /// The guest's MAC: configured, or learnt from its frames.
    pub mac: Option<MacAddr>,
    /// The IPv4 source address the guest last used (other than 0.0.0.0).
    pub ipv4: Option<Ipv4Addr>,
    /// The global IPv6 source address the guest last used.
    pub ipv6: Option<Ipv6Addr>,
    /// The link-local IPv6 source address the guest last used.
    pub ipv6_link_local: Option<Ipv6Addr>,
}

impl GuestState {
    /// Where frames for the guest go: its MAC, or broadcast until it is
    /// known.
    pub fn dst_mac(&self) -> MacAddr {
        self.mac.unwrap_or(MacAddr::BROADCAST)
    }
}

/// What a protocol module gets from the engine for one call: the shared
/// state, borrowed field by field so the module itself can be borrowed
/// mutably at the same time.
pub struct Ctx<'a, H: HostIo> {
    /// Configuration in force.
    pub config: &'a Config,
    /// The host side.
    pub host: &'a mut H,
    /// Frames for the guest.
    pub txq: &'a mut TxQueue,
    /// Counters.
    pub counters: &'a mut Counters,
    /// The flow limit every protocol's table shares.
    pub flows: &'a mut FlowLimit,
    /// The engine's generator.
    pub rng: &'a mut Rng,
    /// What is known about the guest.
    pub guest: &'a GuestState,
}

impl<H: HostIo> Ctx<'_, H> {
    /// How many frames of the largest size the engine builds (the MTU plus
    /// the Ethernet header) the transmit queue can still take. A module
    /// reads a host socket only for as many messages as this allows (see
    /// [`TxQueue::room_for`]); what it leaves stays in the kernel.
    pub fn tx_room(&self) -> usize {
        self.txq.room_for(max_frame_len(self.config))
    }

    /// Builds one frame for the guest in place (see [`TxQueue::push_with`])
    /// and counts it; a full queue is counted as a drop. Returns whether a
    /// frame was queued.
    pub fn emit(&mut self, max_len: usize, build: impl FnOnce(&mut [u8]) -> usize) -> bool {
        emit_into(self.txq, self.counters, max_len, build)
    }
}

pub(crate) fn emit_into(
    txq: &mut TxQueue,
    counters: &mut Counters,
    max_len: usize,
    build: impl FnOnce(&mut [u8]) -> usize,
) -> bool {
    match txq.push_with(max_len, build) {
        Ok(0) => false,
        Ok(len) => {
            counters.frames_out += 1;
            counters.bytes_out += len as u64;
            true
        }
        Err(_) => {
            counters.drop(DropReason::TxQueueFull);
            false
        }
    }
}

/// The largest frame the engine builds for the guest: the MTU plus the
/// Ethernet header.
pub fn max_frame_len(config: &Config) -> usize {
    usize::from(config.mtu) + crate::wire::ethernet::HEADER_LEN
}

/// Hop limit (IPv4 TTL) of every packet the engine builds toward the
/// guest: it is one hop from us.
pub const HOP_LIMIT_TO_GUEST: u8 = 64;

/// The IP header of a packet the engine builds toward the guest, from
/// `src` to `dst` carrying `protocol` (the one builder every module uses).
/// `None` when the two addresses are of different families.
pub fn ip_to_guest(src: IpAddr, dst: IpAddr, protocol: u8) -> Option<IpRepr> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some(IpRepr::V4(Ipv4Repr::new(
            s,
            d,
            protocol,
            HOP_LIMIT_TO_GUEST,
        ))),
        (IpAddr::V6(s), IpAddr::V6(d)) => Some(IpRepr::V6(Ipv6Repr::new(
            s,
            d,
            protocol,
            HOP_LIMIT_TO_GUEST,
        ))),
        _ => None,
    }
}
