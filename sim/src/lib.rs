//! # passt-sim
//!
//! The deterministic simulator: it runs the unchanged production engine
//! ([`passt_engine::Engine`]) on virtual time, between a simulated guest and
//! simulated host sockets, over links that inject faults.
//!
//! This crate's core, independent of the engine's protocol modules:
//!
//! - [`seed`]: one master `u64` seed per run ([`parse_seed`]: decimal, `0x`
//!   hex, or a 40-hex commit hash), the `PASST_SIM_SEED` / `PASST_SIM_SEEDS`
//!   environment plan ([`Seeds`]), the per-test loop [`for_each_seed`] that
//!   prints `reproduce: PASST_SIM_SEED=… cargo test -p passt-sim -- <test>`
//!   on failure, and named child generators ([`SimRng::child`]).
//! - [`sched`]: the discrete-event [`Scheduler`] ordered by
//!   `(Instant, sequence)`, jumping from event to event, and the
//!   [`TraceHash`] (a fully specified 64-bit hash) two runs are compared by.
//! - [`fault`]: fault rules and the ordered [`FaultChain`] a link runs every
//!   frame through (loss, burst loss, latency/jitter, duplication,
//!   corruption, rate limit, MTU clamp, partitions, hold gates), the
//!   host-side fault descriptors ([`HostFaults`]), and swarm mode
//!   ([`FaultChain::swarm`]).
//! - [`link`]: a one-directional [`Link`]: serialization at a bandwidth,
//!   the fault chain, propagation latency, delivery events into the
//!   scheduler, and counters.
//! - [`host`]: [`SimHost`], the simulated kernel socket layer implementing
//!   `HostIo`, with a simulated internet (remote hosts, services, DNS) and
//!   host-side faults; [`SimWorld`] implements the `passt-conformance`
//!   world over it, so the kernel-semantics scenarios run on the model.
//! - [`guest`]: simulated guests: a smoltcp stack configured by DHCP
//!   through the engine and running workloads, and scripted guests in a
//!   packetdrill-like dialect.
//! - [`inbound`]: remote clients that connect to forwarded host ports (and
//!   through the engine to a server workload in the guest), check what
//!   comes back and report like the guest's workloads.
//! - [`frame_seq`]: arbitrary bytes as a sequence of guest frames and
//!   time steps against the engine on [`SimHost`], with the invariants
//!   checked after each step (the stateful fuzz target and its proptest).
//! - [`simulation`]: [`Simulation`], the whole-system driver (guest, links,
//!   engine, host on one virtual clock; trace hash; pcap capture).
//! - [`scenario`]: TOML scenario files, built into a [`Simulation`] from one
//!   master seed, run and judged (what `passt-sim run` and `sweep` use).
//! - [`replay`]: `passt-sim replay`: a capture's guest frames fed to the
//!   engine at their recorded times, remote peers scripted from it, and
//!   the trace and the replay compared flow by flow.
//! - [`shard`]: seed ranges split across machines (`--shard K/N`,
//!   `auto/N` from Kubernetes or Slurm), the JSON-lines results each shard
//!   writes, and `passt-sim merge`.
//! - `real_arm` (only with the `real-arm` cargo feature): the same
//!   scenarios against the real kernel (`Engine<RealHost>`, real services
//!   on loopback, wall-clock time), and the comparison of both arms'
//!   outcomes (`passt-sim run --arm real`).
//!
//! Rules for the whole crate: virtual time only (never the wall clock,
//! never sleep), randomness only from the master seed, ordered collections
//! only, so the same seed yields the same run bit for bit. The one
//! exception is `real_arm`, which exists to run on the wall clock: it is
//! compiled only with the `real-arm` feature (off by default; the
//! `passt-sim` binary and this crate's tests turn it on), so the default
//! library holds no `RealHost` and nothing that reads the wall clock.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod demo;
pub mod fault;
pub mod frame_seq;
pub mod guest;
pub mod host;
pub mod inbound;
pub mod link;
pub mod pcap;
pub mod progress;
#[cfg(feature = "real-arm")]
pub mod real_arm;
pub mod replay;
pub mod scenario;
pub mod sched;
pub mod seed;
pub mod shard;
pub mod simulation;

pub use fault::{Decision, DropCause, FaultChain, FaultRule, HoldHandle, HostFaults, SwarmParams};
pub use guest::SimGuest;
pub use host::{RemoteHostConfig, SimHost, SimHostConfig, SimWorld};
pub use link::{Delivery, Link, LinkConfig, LinkCounters};
pub use sched::{EventId, Scheduler, StableEncode, TraceHash};
pub use seed::{SeedError, Seeds, SimRng, for_each_seed, for_each_seeds, parse_seed};
pub use simulation::{Simulation, StopReason};
