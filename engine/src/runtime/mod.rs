//! The real Linux runtime: everything the engine needs from the kernel, and
//! the process around it.
//!
//! This module owns every syscall of the crate, and is the only place in
//! `engine/src` allowed to name `libc`, epoll, the system clock or OS
//! randomness:
//! - [`host`]: [`RealHost`], the [`crate::HostIo`] implementation over
//!   nonblocking sockets and one epoll instance;
//! - [`transport`]: the guest side behind one trait, [`GuestTransport`]:
//!   QEMU's stream socket and the tap device;
//! - [`event_loop`]: the single-threaded loop driving an engine over any
//!   transport, in the order of [`crate::driver`];
//! - [`startup`]: the one start-up path of the binaries (options, host
//!   probe, listeners, loop);
//! - [`netns`]: handles on other network namespaces, and work run inside
//!   them;
//! - [`pasta`]: the namespaces pasta creates or joins, the command it runs,
//!   and the watch on the target's lifetime;
//! - [`host_probe`]: reading the host's addresses, routes and resolvers;
//! - [`forward`]: the live table of forwarded ports (`-t`/`-u`/`-T`/`-U`),
//!   [`autoscan`] (pasta's `auto`), [`control`] (the `-c` socket for
//!   `pesto`) and [`live`], which holds them for the loop;
//! - [`isolation`]: the sandbox (namespaces, capabilities, seccomp);
//! - [`process`]: daemon, pid file, signals, privileges, limits;
//! - [`logging`]: the binaries' logger;
//! - [`clock`]: monotonic time as [`crate::Instant`] and a random seed;
//! - [`pcap`]: capture of guest-facing frames to a pcap file.
//!
//! The scenarios that pin down the kernel semantics `RealHost` relies on
//! live in the `passt-conformance` test-support crate, not here.
//!
//! It must never hold protocol logic: it moves bytes and reports readiness.
//! Nothing outside `runtime` (and the binaries) may import it.

pub mod autoscan;
pub mod clock;
pub mod control;
pub mod event_loop;
pub mod forward;
pub mod host;
pub mod host_probe;
pub mod isolation;
pub mod live;
pub mod logging;
pub mod netlink;
pub mod netns;
pub mod pasta;
pub mod pcap;
pub mod process;
pub mod startup;
pub(crate) mod sys;
pub mod transport;

pub use event_loop::{EventLoop, ExitReason, LoopError, LoopStats, StopHandle};
pub use host::{PeekMode, RealHost};
pub use netns::NetNs;
pub use sys::map_errno;
pub use transport::framing::{FrameReader, FrameWriter, FramingError};
pub use transport::{GuestTransport, StreamTransport, Tap, TapTransport};
