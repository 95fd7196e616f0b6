//! The single-threaded event loop that drives an [`Engine<RealHost>`] over
//! any [`GuestTransport`] (QEMU's stream socket, a tap device, ...).
//!
//! It owns the transport, the capture file and the loop's own wake-ups
//! (signals, a stop handle), and feeds the engine in the order of the
//! driver contract ([`crate::driver`]): the guest frames of one wake-up,
//! a flush, the host readiness reports, due timers, and a drain of the
//! transmit queue to the guest. It never looks inside a frame and never
//! asks which transport it has.
//!
//! # Backpressure
//!
//! When the guest does not take frames as fast as the engine makes them,
//! the loop stops reading the guest (its frames wait in the transport's
//! buffer, then in the kernel) and stops handing host readiness to the
//! engine (the data waits in the host sockets), and waits only for the
//! guest to become writable, a signal or the stop handle, and the engine's
//! next deadline. Nothing is dropped.
//!
//! # Reserved tokens
//!
//! The loop shares the [`RealHost`] epoll set with the engine's sockets. Its
//! own descriptors use the tokens from [`RESERVED_TOKENS_START`] up to
//! `u64::MAX` ([`TOKEN_SIGNAL`], [`TOKEN_STOP`], [`TOKEN_EXIT_WATCH`], [`TOKEN_LISTENER`],
//! [`TOKEN_GUEST`]); the engine must never register a socket with a token in
//! that range, and readiness for those tokens is never passed to it.
//!
//! Frames the engine queues while no guest is connected are discarded
//! (counted in [`LoopStats::frames_discarded`]).

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::clock;
use super::host::RealHost;
use super::logging::{log_info, log_trace, log_warn};
use super::pcap::PcapWriter;
use super::process::SignalFd;
use super::transport::{Fill, GuestTransport, GuestTx};
pub use super::transport::{TOKEN_GUEST, TOKEN_LISTENER};
use crate::driver::{Admit, Driver, DriverStats, FrameSink};
use crate::engine::Engine;
use crate::host_io::{HostError, Interest, Readiness, Token};
use crate::time::Instant;
use crate::txq::TxQueue;

/// The signal descriptor (SIGTERM, SIGINT, SIGHUP).
pub const TOKEN_SIGNAL: Token = Token(u64::MAX);
/// The [`StopHandle`]'s eventfd.
pub const TOKEN_STOP: Token = Token(u64::MAX - 1);
/// The [`ExitWatch`]'s descriptor (pasta: the target namespace's lifetime).
pub const TOKEN_EXIT_WATCH: Token = Token(u64::MAX - 8);
/// Lowest token reserved for the loop; the engine uses tokens below it.
pub const RESERVED_TOKENS_START: u64 = u64::MAX - 15;

/// Why the loop stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// SIGTERM, SIGINT or SIGHUP (the signal number).
    Signal(i32),
    /// [`StopHandle::stop`] was called.
    Stopped,
    /// The guest left (or was reset) and no other may come (one-off mode,
    /// or a pre-connected socket).
    GuestGone,
    /// [`EventLoop::run_for`]'s time ran out.
    TimeLimit,
    /// The [`ExitWatch`] saw its target go (pasta: the command or process
    /// exited, or the network namespace was deleted).
    TargetGone,
}

/// A descriptor whose readiness may end the loop: what pasta watches to
/// leave when its namespace goes away (a pidfd, an inotify descriptor).
pub trait ExitWatch: std::fmt::Debug {
    /// The descriptor to poll for reading.
    fn fd(&self) -> std::os::fd::BorrowedFd<'_>;
    /// Called when [`ExitWatch::fd`] is readable: whether the target is
    /// gone (the loop then returns [`ExitReason::TargetGone`]).
    fn target_gone(&mut self) -> bool;
}

/// Failures that stop the loop.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// A system call on a loop descriptor failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The epoll set failed.
    #[error("epoll: {0}")]
    Host(#[from] HostError),
}

/// Stops a running loop from another thread (an `eventfd`).
#[derive(Clone, Debug)]
pub struct StopHandle {
    fd: Arc<OwnedFd>,
}

impl StopHandle {
    /// Asks the loop to return [`ExitReason::Stopped`] at its next wake-up
    /// (immediately if it is waiting).
    pub fn stop(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            )
        };
    }
}

/// Counts of guest-side events, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// QEMU clients served.
    pub clients_accepted: u64,
    /// QEMU clients refused because one was already connected.
    pub clients_refused: u64,
    /// Connections reset for a bad length prefix.
    pub framing_resets: u64,
    /// Frames read from the guest.
    pub frames_from_guest: u64,
    /// Frames written to the guest.
    pub frames_to_guest: u64,
    /// Frames discarded because no guest was connected.
    pub frames_discarded: u64,
}

/// The drain target: the connected guest's sending half (`None` while no
/// guest is connected: frames are discarded), with the capture.
struct GuestSink<'a> {
    tx: Option<&'a mut dyn GuestTx>,
    pcap: &'a mut Option<PcapWriter>,
    stats: &'a mut LoopStats,
}

impl GuestSink<'_> {
    fn record(&mut self, frame: &[u8]) {
        if let Some(p) = self.pcap
            && let Err(e) = p.record(frame)
        {
            log_warn!("pcap write failed, capture stopped: {e}");
            *self.pcap = None;
        }
    }
}

impl FrameSink for GuestSink<'_> {
    /// Why the guest is gone.
    type Error = String;

    fn accept(&mut self, _: Instant, frames: &TxQueue) -> Result<usize, String> {
        let Some(tx) = self.tx.as_deref_mut() else {
            self.stats.frames_discarded += frames.len() as u64;
            return Ok(frames.len());
        };
        let n = tx.send(frames)?;
        if self.pcap.is_some() {
            for f in frames.iter().take(n) {
                self.record(f);
            }
        }
        self.stats.frames_to_guest += n as u64;
        Ok(n)
    }
}

/// The event loop. See the module docs.
pub struct EventLoop<T: GuestTransport> {
    engine: Engine<RealHost>,
    transport: T,
    driver: Driver,
    pcap: Option<PcapWriter>,
    signals: Option<SignalFd>,
    stop: Arc<OwnedFd>,
    guest_wants_write: bool,
    events: Vec<(Token, Readiness)>,
    stats: LoopStats,
    ping_warned: bool,
    exit_watch: Option<Box<dyn ExitWatch + Send>>,
}

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; result checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl<T: GuestTransport> EventLoop<T> {
    /// A loop driving `engine` over `transport`. Registers the transport's
    /// descriptors and the stop eventfd in the engine's epoll set.
    pub fn new(mut engine: Engine<RealHost>, mut transport: T) -> Result<Self, LoopError> {
        let stop = eventfd()?;
        engine
            .host_mut()
            .add_fd(stop.as_fd(), TOKEN_STOP, Interest::READ)?;
        transport.register(engine.host_mut())?;
        let driver = Driver::for_config(engine.config());
        Ok(EventLoop {
            engine,
            transport,
            driver,
            pcap: None,
            signals: None,
            stop: Arc::new(stop),
            guest_wants_write: false,
            events: Vec::with_capacity(256),
            stats: LoopStats::default(),
            ping_warned: false,
            exit_watch: None,
        })
    }

    /// Records every guest-facing frame, both directions, to `pcap`.
    pub fn set_pcap(&mut self, pcap: PcapWriter) {
        self.pcap = Some(pcap);
    }

    /// One-off mode (`-1`): return [`ExitReason::GuestGone`] when the QEMU
    /// client leaves instead of waiting for the next one.
    pub fn set_one_off(&mut self, one_off: bool) {
        self.transport.set_one_off(one_off);
    }

    /// Makes SIGTERM, SIGINT and SIGHUP stop the loop
    /// ([`ExitReason::Signal`]). They are blocked in the calling thread (and
    /// threads it creates later) and read from a signalfd; call this from the
    /// main thread of a single-threaded program, and after any `fork`: a
    /// signalfd polled through epoll only reports signals of the process
    /// that registered it.
    pub fn catch_signals(&mut self) -> Result<(), LoopError> {
        let sfd = SignalFd::new()?;
        self.engine
            .host_mut()
            .add_fd(sfd.fd(), TOKEN_SIGNAL, Interest::READ)?;
        self.signals = Some(sfd);
        Ok(())
    }

    /// Ends the loop with [`ExitReason::TargetGone`] when `watch` says so.
    pub fn set_exit_watch(&mut self, watch: Box<dyn ExitWatch + Send>) -> Result<(), LoopError> {
        self.engine
            .host_mut()
            .add_fd(watch.fd(), TOKEN_EXIT_WATCH, Interest::READ)?;
        self.exit_watch = Some(watch);
        Ok(())
    }

    /// A handle that stops the loop from any thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            fd: Arc::clone(&self.stop),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine<RealHost> {
        &self.engine
    }

    /// The engine, mutably.
    pub fn engine_mut(&mut self) -> &mut Engine<RealHost> {
        &mut self.engine
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Guest-side counts.
    pub fn stats(&self) -> LoopStats {
        let clients = self.transport.clients();
        LoopStats {
            clients_accepted: clients.accepted,
            clients_refused: clients.refused,
            ..self.stats
        }
    }

    /// What the driver did (frames and readiness reports held back by
    /// backpressure, drains).
    pub fn driver_stats(&self) -> DriverStats {
        self.driver.stats()
    }

    /// Whether a guest is connected now.
    pub fn guest_connected(&self) -> bool {
        self.transport.guest_fd().is_some()
    }

    /// The listening socket's path, if any.
    pub fn socket_path(&self) -> Option<&Path> {
        self.transport.socket_path()
    }

    /// Runs until a signal, the stop handle, or (one-off) the guest leaving.
    pub fn run(&mut self) -> Result<ExitReason, LoopError> {
        loop {
            if let Some(reason) = self.iterate(None)? {
                return Ok(reason);
            }
        }
    }

    /// Like [`EventLoop::run`], but returns [`ExitReason::TimeLimit`] after
    /// `limit` at the latest.
    pub fn run_for(&mut self, limit: Duration) -> Result<ExitReason, LoopError> {
        let end = clock::now().saturating_add(limit);
        loop {
            let now = clock::now();
            if now >= end {
                return Ok(ExitReason::TimeLimit);
            }
            if let Some(reason) = self.iterate(Some(end.saturating_duration_since(now)))? {
                return Ok(reason);
            }
        }
    }

    /// One round: guest frames left in the transport's buffer, due timers
    /// and a drain; a wait of at most `max_wait` (`None`: until something
    /// happens; only for the guest to become writable while backpressured;
    /// none while buffered frames can be taken); then the guest's frames,
    /// a flush, the host's readiness, due timers and a drain.
    pub fn iterate(&mut self, max_wait: Option<Duration>) -> Result<Option<ExitReason>, LoopError> {
        let now = clock::now();
        // Frames left in the transport's buffer while the queue was full
        // (before the drain, so that what they queue is sent or asks for
        // writability).
        if let Some(reason) = self.take_guest_frames(now, false)? {
            return Ok(Some(reason));
        }
        if let Some(reason) = self.finish_round(now)? {
            return Ok(Some(reason));
        }
        let timer_wait =
            Driver::next_deadline(&self.engine).map(|t| t.saturating_duration_since(now));
        let mut wait = match (timer_wait, max_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.guest_input_waiting() {
            // Buffered frames no descriptor will report: take them next round.
            wait = Some(Duration::ZERO);
        }
        if self.driver.backpressured()
            && let Some(guest) = self.transport.guest_fd()
        {
            // Only the guest draining (or a stop) can make progress: wait
            // for that, then collect whatever else is ready without waiting.
            let stop = self.stop.as_fd();
            match &self.signals {
                Some(s) => super::sys::wait_writable(guest, &[stop, s.fd()], wait)?,
                None => super::sys::wait_writable(guest, &[stop], wait)?,
            }
            wait = Some(Duration::ZERO);
        }
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        let waited = self.engine.host_mut().wait(wait, &mut events);
        if let Err(e) = waited {
            self.events = events;
            return Err(e.into());
        }
        let result = self.dispatch(&events);
        self.events = events;
        let exit = result?;
        self.warn_once();
        if exit.is_some() {
            return Ok(exit);
        }
        self.finish_round(clock::now())
    }

    /// The events of one wait, in the driver contract's order: the loop's
    /// own and the guest's first, then a flush, then the host's.
    fn dispatch(&mut self, events: &[(Token, Readiness)]) -> Result<Option<ExitReason>, LoopError> {
        let now = clock::now();
        let mut exit = None;
        for &(token, readiness) in events {
            let reason = match token {
                TOKEN_SIGNAL => self
                    .signals
                    .as_ref()
                    .and_then(SignalFd::read)
                    .map(ExitReason::Signal),
                TOKEN_STOP => {
                    let mut buf = [0u8; 8];
                    // SAFETY: reads 8 bytes into a live buffer.
                    unsafe {
                        libc::read(
                            self.stop.as_raw_fd(),
                            buf.as_mut_ptr() as *mut libc::c_void,
                            8,
                        )
                    };
                    Some(ExitReason::Stopped)
                }
                TOKEN_EXIT_WATCH => self
                    .exit_watch
                    .as_mut()
                    .is_some_and(|w| w.target_gone())
                    .then_some(ExitReason::TargetGone),
                TOKEN_LISTENER => {
                    if self.transport.on_listener_ready(self.engine.host_mut())? {
                        // Frames queued for no one are not the new guest's.
                        let q = self.engine.tx_queue();
                        self.stats.frames_discarded += q.len() as u64;
                        q.clear();
                        self.guest_wants_write = false;
                    }
                    None
                }
                TOKEN_GUEST => {
                    let r = readiness;
                    if r.readable || r.hangup || r.error || r.read_closed {
                        self.take_guest_frames(now, true)?
                    } else {
                        None
                    }
                }
                _ => None,
            };
            if exit.is_none() {
                exit = reason;
            }
        }
        // Guest frames read above may have queued host sends (UDP
        // datagrams, one sendmmsg per socket): they leave now, batched.
        let sent = {
            let (engine, driver, mut sink) = self.parts();
            driver.flush(engine, &mut sink, now)
        };
        if let Err(why) = sent {
            exit = exit.or(self.drop_guest(&why));
        }
        for &(token, readiness) in events {
            if token.0 >= RESERVED_TOKENS_START {
                continue;
            }
            let delivered = {
                let (engine, driver, mut sink) = self.parts();
                driver.host_event(engine, &mut sink, now, token, readiness)
            };
            if let Err(why) = delivered {
                exit = exit.or(self.drop_guest(&why));
            }
        }
        Ok(exit)
    }

    /// Whether the transport holds a complete guest frame that the queue
    /// has room for now.
    fn guest_input_waiting(&mut self) -> bool {
        if !self.driver.has_room(&mut self.engine) {
            return false;
        }
        self.transport
            .halves()
            .is_some_and(|(rx, _)| rx.peek_frame().is_ok_and(|f| f.is_some()))
    }

    /// The engine, the driver and a sink to the guest, borrowed together.
    fn parts(&mut self) -> (&mut Engine<RealHost>, &mut Driver, GuestSink<'_>) {
        let tx = self.transport.halves().map(|(_, tx)| tx);
        (
            &mut self.engine,
            &mut self.driver,
            GuestSink {
                tx,
                pcap: &mut self.pcap,
                stats: &mut self.stats,
            },
        )
    }

    /// Due timers and a drain to the guest; then asks for writability
    /// while something is left.
    fn finish_round(&mut self, now: Instant) -> Result<Option<ExitReason>, LoopError> {
        let finished = {
            let (engine, driver, mut sink) = self.parts();
            driver.finish(engine, &mut sink, now)
        };
        if let Err(why) = finished {
            return Ok(self.drop_guest(&why));
        }
        let pending = self
            .transport
            .halves()
            .is_some_and(|(_, tx)| tx.has_pending());
        let want_write = !self.engine.tx_queue().is_empty() || pending;
        if want_write != self.guest_wants_write
            && let Some(fd) = self.transport.guest_fd()
        {
            let interest = if want_write {
                Interest::BOTH
            } else {
                Interest::READ
            };
            self.engine
                .host_mut()
                .modify_fd(fd, TOKEN_GUEST, interest)?;
            self.guest_wants_write = want_write;
        }
        Ok(None)
    }

    /// Hands the guest's buffered frames to the engine and, if `read`,
    /// reads more, until the guest has nothing left, the reads of one
    /// wake-up are used up, or the queue is full. Returns an exit reason if
    /// the guest left and no other may come.
    fn take_guest_frames(
        &mut self,
        now: Instant,
        read: bool,
    ) -> Result<Option<ExitReason>, LoopError> {
        let EventLoop {
            engine,
            transport,
            driver,
            pcap,
            stats,
            ..
        } = self;
        let Some((rx, tx)) = transport.halves() else {
            return Ok(None);
        };
        let mut sink = GuestSink {
            tx: Some(tx),
            pcap,
            stats,
        };
        let reads = if read { rx.reads_per_wakeup() } else { 0 };
        let mut gone = None;
        'reads: for pass in 0..=reads {
            // Every buffered frame first (bounded by the buffer's size).
            loop {
                let frame = match rx.peek_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(why) => {
                        log_warn!("{why} from the guest: resetting the connection");
                        sink.stats.framing_resets += 1;
                        gone = Some(why);
                        break 'reads;
                    }
                };
                match driver.guest_frame(engine, &mut sink, now, frame) {
                    Ok(Admit::Taken) => {
                        log_trace!("guest frame, {} bytes", frame.len());
                        sink.stats.frames_from_guest += 1;
                        sink.record(frame);
                        rx.pop_frame();
                    }
                    // Backpressure: the frame waits in the buffer.
                    Ok(Admit::Full) => break 'reads,
                    Err(why) => {
                        gone = Some(why);
                        break 'reads;
                    }
                }
            }
            if pass == reads {
                break;
            }
            match rx.fill() {
                Fill::Read => {}
                Fill::Empty => break,
                Fill::Closed(why) => {
                    gone = Some(why);
                    break;
                }
            }
        }
        Ok(gone.and_then(|why| self.drop_guest(&why)))
    }

    /// Closes the guest connection and forgets what was queued for it.
    /// Returns the exit reason if no other guest may come.
    fn drop_guest(&mut self, why: &str) -> Option<ExitReason> {
        self.transport.disconnect(self.engine.host_mut());
        self.engine.tx_queue().clear();
        self.guest_wants_write = false;
        log_info!("guest connection closed: {why}");
        if self.transport.awaits_next_guest() {
            None
        } else {
            Some(ExitReason::GuestGone)
        }
    }

    /// One-time warnings about conditions the engine counts.
    fn warn_once(&mut self) {
        if !self.ping_warned && self.engine.counters().ping_not_permitted > 0 {
            self.ping_warned = true;
            log_warn!("{}", crate::icmp::PING_NOT_PERMITTED_WARNING);
        }
    }

    /// Whether the ping-sockets warning has been logged.
    pub fn ping_warning_logged(&self) -> bool {
        self.ping_warned
    }

    /// Flushes the capture, closes the listener and removes its socket
    /// file. Dropping the loop does the same (the pcap writer flushes and the
    /// socket file is removed on drop).
    pub fn shutdown(&mut self) {
        if let Some(p) = &mut self.pcap
            && let Err(e) = p.flush()
        {
            log_warn!("pcap flush failed: {e}");
        }
        self.transport.shut_down(self.engine.host_mut());
    }

    /// Shuts down and hands back the engine (for tests to inspect it).
    pub fn into_engine(mut self) -> Engine<RealHost> {
        self.shutdown();
        self.engine
    }
}

impl<T: GuestTransport> std::fmt::Debug for EventLoop<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("transport", &self.transport)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
