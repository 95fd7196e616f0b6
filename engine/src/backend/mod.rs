//! The real Linux backend: everything the engine needs from the kernel.
//!
//! This module owns every syscall of the crate, and is the only place in
//! `engine/src` allowed to name `libc`, epoll, the system clock or OS
//! randomness:
//! - [`host`]: [`RealHost`], the [`crate::HostIo`] implementation over
//!   nonblocking sockets and one epoll instance;
//! - [`qemu`]: QEMU's stream-socket framing (4-byte big-endian length, then
//!   the Ethernet frame) as a pure codec plus its socket glue;
//! - [`tap`]: tap devices (`/dev/net/tun`, `IFF_TAP | IFF_NO_PI`);
//! - [`clock`]: monotonic time as [`crate::Instant`] and a random seed;
//! - [`event_loop`]: the single-threaded loop driving an engine over a QEMU
//!   socket or a tap device (plus the binaries' logger and process chores);
//! - [`hostcfg`]: detection of the host's addresses, routes and resolvers;
//! - [`pcap`]: capture of guest-facing frames to a pcap file.
//!
//! The scenarios that pin down the kernel semantics `RealHost` relies on
//! live in the `passt-conformance` test-support crate, not here.
//!
//! It must never hold protocol logic: it moves bytes and reports readiness.

pub mod clock;
pub mod event_loop;
pub mod host;
pub mod hostcfg;
pub mod pcap;
pub mod qemu;
pub(crate) mod sys;
pub mod tap;

pub use host::{PeekMode, RealHost};
pub use qemu::{FrameReader, FrameWriter, FramingError};
pub use sys::map_errno;
pub use tap::Tap;
