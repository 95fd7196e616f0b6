//! # passt-engine
//!
//! The engine of a userspace network stack in the manner of passt and pasta:
//! it takes Layer-2 frames from a guest (a VM over QEMU's stream socket, or a
//! tap device in a network namespace) and translates them to ordinary Layer-4
//! host sockets, without NAT and without privileges.
//!
//! The engine is sans-IO (see `docs/architecture.md`):
//! - time is passed in ([`Instant`]) and the engine reports its next deadline
//!   ([`Engine::poll_timeout`]);
//! - randomness comes from a seed given at construction ([`Rng`]);
//! - frames for the guest go into a bounded, preallocated [`TxQueue`] that the
//!   caller drains in batches;
//! - every host socket operation goes through the [`HostIo`] trait, which the
//!   real runtime ([`runtime`], Linux only) and the simulator implement;
//! - every driver feeds the engine in the one order [`driver`] defines.
//!
//! Only the `runtime` module may name `libc`, `nix`, epoll, the system clock
//! or OS randomness.

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod addr;
#[cfg(target_os = "linux")]
pub mod cli;
pub mod config;
pub mod control;
pub mod counters;
pub mod ctx;
pub mod driver;
pub mod engine;
pub mod flow;
pub mod host_io;
pub mod hostnet;
pub mod rng;
#[cfg(target_os = "linux")]
pub mod runtime;
pub mod time;
pub mod txq;
pub mod wire;

pub mod arp;
pub mod dhcp;
pub mod dhcpv6;
pub mod fwd;
pub mod icmp;
pub mod mapping;
pub mod ndp;
pub mod pcap;
pub mod refusal;
pub mod sockscan;
pub mod tcp;
pub mod udp;

pub use addr::MacAddr;
pub use config::{Config, ConfigError, Ipv4Config, Ipv6Config, Mapping, Services, Splice};
pub use counters::{Counters, DropReason};
pub use driver::{Admit, Driver, FrameSink};
pub use engine::{Engine, ListenerId};
pub use host_io::{HostError, HostIo, IfName, Interest, Netns, Place, Readiness, SockId, Token};
pub use rng::Rng;
pub use time::Instant;
pub use txq::{TxQueue, TxQueueFull};
