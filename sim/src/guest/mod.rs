//! Simulated guests: the far side of the engine's Ethernet interface.
//!
//! # What this module owns
//!
//! - [`smol`]: a real, independent TCP/IP stack (smoltcp) configured by
//!   DHCP through the engine and running workloads (ping, UDP echo, TCP
//!   echo / send / receive clients).
//! - [`script`]: scripted guests that inject exact frames and expect exact
//!   replies, written in a small packetdrill-like dialect
//!   (see `docs/simulation.md`).
//!
//! Both are driven the same way by [`crate::simulation::Simulation`]:
//! frames arrive with [`SimGuest::on_frame`], the guest runs at
//! [`SimGuest::poll`] (producing frames to send), and it says when it next
//! wants to run with [`SimGuest::poll_at`].
//!
//! # What it must never do
//!
//! Read the wall clock or draw randomness outside the seed it is given: a
//! guest is part of the deterministic run.

use passt_engine::Instant;

pub mod script;
pub mod smol;

pub use script::{Script, ScriptError, ScriptGuest, ScriptMismatch};
pub use smol::{
    SmolGuest, SmolGuestConfig, TcpClientOptions, Workload, WorkloadReport, WorkloadSpec,
};

/// The guest of a [`crate::simulation::Simulation`].
#[derive(Debug)]
pub enum SimGuest {
    /// A smoltcp stack running workloads.
    Smol(Box<SmolGuest>),
    /// A script of exact frames.
    Script(Box<ScriptGuest>),
    /// The guest frames of a capture, at their recorded times
    /// (`passt-sim replay`).
    Recorded(Box<crate::replay::RecordedGuest>),
    /// The trace's flows driven again through smoltcp
    /// (`passt-sim replay --guest model`).
    Model(Box<crate::replay::ModelGuest>),
}

impl SimGuest {
    /// A frame from the engine reached the guest at `now`.
    pub fn on_frame(&mut self, now: Instant, frame: &[u8]) {
        match self {
            SimGuest::Smol(g) => g.on_frame(now, frame),
            SimGuest::Script(g) => g.on_frame(now, frame),
            SimGuest::Recorded(g) => g.on_frame(now, frame),
            SimGuest::Model(g) => g.on_frame(now, frame),
        }
    }

    /// Runs the guest at `now`; frames it sends are appended to `out`.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        match self {
            SimGuest::Smol(g) => g.poll(now, out),
            SimGuest::Script(g) => g.poll(now, out),
            SimGuest::Recorded(g) => g.poll(now, out),
            SimGuest::Model(g) => g.poll(now, out),
        }
    }

    /// When the guest next wants [`SimGuest::poll`] called, frames aside.
    pub fn poll_at(&self) -> Option<Instant> {
        match self {
            SimGuest::Smol(g) => g.poll_at(),
            SimGuest::Script(g) => g.poll_at(),
            SimGuest::Recorded(g) => g.poll_at(),
            SimGuest::Model(g) => g.poll_at(),
        }
    }

    /// Whether the guest's work is over (the simulation may stop).
    pub fn finished(&self) -> bool {
        match self {
            SimGuest::Smol(g) => g.finished(),
            SimGuest::Script(g) => g.finished(),
            SimGuest::Recorded(g) => g.finished(),
            SimGuest::Model(g) => g.finished(),
        }
    }

    /// The smoltcp guest, if that is what this is.
    pub fn as_smol(&self) -> Option<&SmolGuest> {
        match self {
            SimGuest::Smol(g) => Some(g),
            SimGuest::Script(_) | SimGuest::Recorded(_) | SimGuest::Model(_) => None,
        }
    }

    /// The scripted guest, if that is what this is.
    pub fn as_script(&self) -> Option<&ScriptGuest> {
        match self {
            SimGuest::Script(g) => Some(g),
            SimGuest::Smol(_) | SimGuest::Recorded(_) | SimGuest::Model(_) => None,
        }
    }
}
