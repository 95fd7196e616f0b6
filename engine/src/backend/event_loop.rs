//! The single-threaded event loop that drives an [`Engine<RealHost>`] with a
//! guest-facing frame transport: a QEMU stream socket (listening, or a
//! pre-connected descriptor) or a tap device.
//!
//! It owns the guest side's descriptors, the framing state, the capture file
//! and the loop's own wake-ups (signals, a stop handle); it hands every frame
//! to [`Engine::handle_frame`], every other readiness to
//! [`Engine::handle_host_event`], calls [`Engine::flush`] after each round
//! of events (so the frames of one wake-up are sent to the host in
//! batches), calls [`Engine::handle_timeout`] when [`Engine::poll_timeout`]
//! says so, and drains [`Engine::tx_queue`] to the guest. It never looks
//! inside a frame.
//!
//! # Reserved tokens
//!
//! The loop shares the [`RealHost`] epoll set with the engine's sockets. Its
//! own descriptors use the tokens from [`RESERVED_TOKENS_START`] up to
//! `u64::MAX` ([`TOKEN_SIGNAL`], [`TOKEN_STOP`], [`TOKEN_LISTENER`],
//! [`TOKEN_GUEST`]); the engine must never register a socket with a token in
//! that range, and readiness for those tokens is never passed to it.
//!
//! # QEMU socket behaviour (as upstream passt)
//!
//! One client at a time: while one is connected, further connections are
//! accepted and closed at once (logged). A bad length prefix resets the
//! connection (logged) and the next client is served. When the client leaves
//! the loop waits for the next one, or returns [`ExitReason::GuestGone`] in
//! one-off mode (`-1`, implied by `-F`). Frames the engine queues while no
//! guest is connected are discarded.

pub mod forward;
pub mod logging;
pub mod process;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use self::logging::{log_debug, log_info, log_trace, log_warn};
use self::process::SignalFd;
use super::clock;
use super::host::RealHost;
use super::pcap::PcapWriter;
use super::qemu::{FrameReader, FrameWriter, FramingError, WRITE_BATCH};
use super::tap::Tap;
use crate::engine::Engine;
use crate::host_io::{HostError, Interest, Readiness, Token};

/// The signal descriptor (SIGTERM, SIGINT, SIGHUP).
pub const TOKEN_SIGNAL: Token = Token(u64::MAX);
/// The [`StopHandle`]'s eventfd.
pub const TOKEN_STOP: Token = Token(u64::MAX - 1);
/// The listening UNIX socket.
pub const TOKEN_LISTENER: Token = Token(u64::MAX - 2);
/// The guest connection: the accepted or pre-connected QEMU socket, or the
/// tap device.
pub const TOKEN_GUEST: Token = Token(u64::MAX - 3);
/// Lowest token reserved for the loop; the engine uses tokens below it.
pub const RESERVED_TOKENS_START: u64 = u64::MAX - 15;

/// Reads from the guest per readiness report before other work gets a turn
/// (readiness is level-triggered, so what is left is reported again).
const READS_PER_WAKEUP: usize = 16;
/// Tap frames read per readiness report.
const TAP_FRAMES_PER_WAKEUP: usize = 64;
/// Connections accepted per listener readiness report.
const ACCEPTS_PER_WAKEUP: usize = 16;
/// Largest tap frame read (a 65535-byte frame, and room to notice more).
const TAP_BUF: usize = 65536 + 4;
/// Sockets probed by [`Transport::qemu_listen_probe`]: `/tmp/passt_1.socket`
/// to `/tmp/passt_64.socket`, as upstream.
pub const PROBE_SOCKETS: u32 = 64;

/// Why the loop stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// SIGTERM, SIGINT or SIGHUP (the signal number).
    Signal(i32),
    /// [`StopHandle::stop`] was called.
    Stopped,
    /// The guest left (or was reset) in one-off mode.
    GuestGone,
    /// [`EventLoop::run_for`]'s time ran out.
    TimeLimit,
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

/// Where guest frames come from and go to.
#[derive(Debug)]
pub enum Transport {
    /// A listening UNIX socket for QEMU's `-netdev stream` (4-byte length
    /// prefix per frame). The socket file is removed when the loop ends.
    QemuListener {
        /// The listening socket (nonblocking).
        listener: UnixListener,
        /// Its path.
        path: PathBuf,
    },
    /// An already connected stream socket (`-F`): one guest, then exit.
    QemuStream(UnixStream),
    /// A tap device: one frame per read and per write.
    Tap(Tap),
}

impl Transport {
    /// Listens on `path`. An existing file there that nobody accepts on (a
    /// stale socket left by a crash) is replaced; a live listener is
    /// `AddrInUse`.
    pub fn qemu_listen(path: &Path) -> io::Result<Transport> {
        let listener = match UnixListener::bind(path) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                if UnixStream::connect(path).is_ok() {
                    return Err(e);
                }
                let meta = std::fs::symlink_metadata(path)?;
                use std::os::unix::fs::FileTypeExt;
                if !meta.file_type().is_socket() {
                    return Err(e);
                }
                std::fs::remove_file(path)?;
                UnixListener::bind(path)?
            }
            Err(e) => return Err(e),
        };
        listener.set_nonblocking(true)?;
        Ok(Transport::QemuListener {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Listens on the first free `/tmp/passt_N.socket`, N = 1 to 64.
    pub fn qemu_listen_probe() -> io::Result<Transport> {
        Self::qemu_listen_probe_in(Path::new("/tmp"), "passt")
    }

    /// Like [`Transport::qemu_listen_probe`] in another directory and with
    /// another name stem (`DIR/STEM_N.socket`).
    pub fn qemu_listen_probe_in(dir: &Path, stem: &str) -> io::Result<Transport> {
        let mut last = io::Error::from(io::ErrorKind::AddrInUse);
        for n in 1..=PROBE_SOCKETS {
            match Self::qemu_listen(&dir.join(format!("{stem}_{n}.socket"))) {
                Ok(t) => return Ok(t),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// A pre-connected stream socket.
    pub fn qemu_connected(stream: UnixStream) -> io::Result<Transport> {
        stream.set_nonblocking(true)?;
        Ok(Transport::QemuStream(stream))
    }

    /// Takes ownership of an inherited descriptor (`-F FD`), which must be a
    /// connected stream socket.
    pub fn qemu_from_raw_fd(fd: i32) -> io::Result<Transport> {
        // SAFETY: fstat on any integer is harmless; it tells whether it is open.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is writable.
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("descriptor {fd} is not a socket"),
            ));
        }
        // SAFETY: the caller hands us the descriptor; nothing else owns it.
        let stream = unsafe { UnixStream::from_raw_fd(fd) };
        Self::qemu_connected(stream)
    }

    /// The listening socket's path, if any.
    pub fn socket_path(&self) -> Option<&Path> {
        match self {
            Transport::QemuListener { path, .. } => Some(path),
            _ => None,
        }
    }
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

/// The listening socket's file, removed when dropped.
#[derive(Debug)]
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The guest side while connected.
#[derive(Debug)]
enum Guest {
    None,
    Qemu(UnixStream),
    Tap(Tap),
}

/// The event loop. See the module docs.
pub struct EventLoop {
    engine: Engine<RealHost>,
    listener: Option<(UnixListener, SocketFile)>,
    guest: Guest,
    reader: FrameReader,
    writer: FrameWriter,
    tap_buf: Box<[u8]>,
    pcap: Option<PcapWriter>,
    one_off: bool,
    signals: Option<SignalFd>,
    stop: Arc<OwnedFd>,
    guest_wants_write: bool,
    events: Vec<(Token, Readiness)>,
    stats: LoopStats,
    ping_warned: bool,
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

/// `sendmsg(MSG_NOSIGNAL | MSG_DONTWAIT)` of a vector.
fn send_vectored(fd: BorrowedFd<'_>, iov: &[io::IoSlice<'_>]) -> Result<usize, HostError> {
    // SAFETY: zeroed msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is ABI-compatible with `struct iovec` on Unix.
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: `msg` points to `iov`, live for the call; the kernel only reads.
    let n = unsafe {
        libc::sendmsg(
            fd.as_raw_fd(),
            &msg,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        return Err(super::sys::map_errno(e));
    }
    Ok(n as usize)
}

impl EventLoop {
    /// A loop driving `engine` over `transport`. Registers the transport's
    /// descriptors and the stop eventfd in the engine's epoll set.
    pub fn new(mut engine: Engine<RealHost>, transport: Transport) -> Result<Self, LoopError> {
        let stop = eventfd()?;
        engine
            .host_mut()
            .add_fd(stop.as_fd(), TOKEN_STOP, Interest::READ)?;
        let mut one_off = false;
        let (listener, guest) = match transport {
            Transport::QemuListener { listener, path } => {
                engine
                    .host_mut()
                    .add_fd(listener.as_fd(), TOKEN_LISTENER, Interest::READ)?;
                (Some((listener, SocketFile(path))), Guest::None)
            }
            Transport::QemuStream(s) => {
                one_off = true;
                engine
                    .host_mut()
                    .add_fd(s.as_fd(), TOKEN_GUEST, Interest::READ)?;
                (None, Guest::Qemu(s))
            }
            Transport::Tap(t) => {
                engine
                    .host_mut()
                    .add_fd(t.as_fd(), TOKEN_GUEST, Interest::READ)?;
                (None, Guest::Tap(t))
            }
        };
        let mut stats = LoopStats::default();
        if matches!(guest, Guest::Qemu(_)) {
            stats.clients_accepted = 1;
        }
        Ok(EventLoop {
            engine,
            listener,
            guest,
            reader: FrameReader::new(),
            writer: FrameWriter::new(),
            tap_buf: vec![0; TAP_BUF].into_boxed_slice(),
            pcap: None,
            one_off,
            signals: None,
            stop: Arc::new(stop),
            guest_wants_write: false,
            events: Vec::with_capacity(256),
            stats,
            ping_warned: false,
        })
    }

    /// Records every guest-facing frame, both directions, to `pcap`.
    pub fn set_pcap(&mut self, pcap: PcapWriter) {
        self.pcap = Some(pcap);
    }

    /// One-off mode (`-1`): return [`ExitReason::GuestGone`] when the QEMU
    /// client leaves instead of waiting for the next one.
    pub fn set_one_off(&mut self, one_off: bool) {
        self.one_off = one_off || matches!(self.guest, Guest::Qemu(_)) && self.listener.is_none();
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

    /// Guest-side counts.
    pub fn stats(&self) -> LoopStats {
        self.stats
    }

    /// Whether a guest is connected now.
    pub fn guest_connected(&self) -> bool {
        !matches!(self.guest, Guest::None)
    }

    /// The listening socket's path, if any.
    pub fn socket_path(&self) -> Option<&Path> {
        self.listener.as_ref().map(|(_, p)| p.0.as_path())
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

    /// One round: due timers, a wait of at most `max_wait` (`None`: until
    /// something happens), the events, and a flush to the guest.
    pub fn iterate(&mut self, max_wait: Option<Duration>) -> Result<Option<ExitReason>, LoopError> {
        let now = clock::now();
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        if let Some(reason) = self.flush_guest()? {
            return Ok(Some(reason));
        }
        let timer_wait = self
            .engine
            .poll_timeout()
            .map(|t| t.saturating_duration_since(now));
        let wait = match (timer_wait, max_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        let waited = self.engine.host_mut().wait(wait, &mut events);
        let mut exit = None;
        if let Err(e) = waited {
            self.events = events;
            return Err(e.into());
        }
        let now = clock::now();
        for &(token, readiness) in &events {
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
                TOKEN_LISTENER => {
                    self.accept_clients()?;
                    None
                }
                TOKEN_GUEST => self.guest_event(now, readiness)?,
                Token(t) if t >= RESERVED_TOKENS_START => None,
                t => {
                    self.engine.handle_host_event(now, t, readiness);
                    None
                }
            };
            if exit.is_none() {
                exit = reason;
            }
        }
        self.events = events;
        // Guest frames read above may have queued host sends (UDP
        // datagrams, one sendmmsg per socket): send them before waiting.
        self.engine.flush(now);
        self.warn_once();
        if exit.is_some() {
            return Ok(exit);
        }
        self.flush_guest()
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

    fn accept_clients(&mut self) -> Result<(), LoopError> {
        let Some((listener, _)) = &self.listener else {
            return Ok(());
        };
        for _ in 0..ACCEPTS_PER_WAKEUP {
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log_warn!("accept on the UNIX socket failed: {e}");
                    break;
                }
            };
            if !matches!(self.guest, Guest::None) {
                self.stats.clients_refused += 1;
                log_warn!(
                    "another client connected to the UNIX socket: refused (one guest at a time)"
                );
                drop(stream);
                continue;
            }
            stream.set_nonblocking(true)?;
            self.engine
                .host_mut()
                .add_fd(stream.as_fd(), TOKEN_GUEST, Interest::READ)?;
            self.reader.reset();
            self.writer.reset();
            self.engine.tx_queue().clear();
            self.guest_wants_write = false;
            self.guest = Guest::Qemu(stream);
            self.stats.clients_accepted += 1;
            log_info!("accepted connection from guest");
        }
        Ok(())
    }

    /// Closes the QEMU connection. Returns the exit reason in one-off mode.
    fn drop_guest(&mut self, why: &str) -> Option<ExitReason> {
        if let Guest::Qemu(s) = &self.guest {
            let _ = self.engine.host_mut().remove_fd(s.as_fd());
        }
        self.guest = Guest::None;
        self.reader.reset();
        self.writer.reset();
        self.engine.tx_queue().clear();
        self.guest_wants_write = false;
        log_info!("guest connection closed: {why}");
        if self.one_off || self.listener.is_none() {
            Some(ExitReason::GuestGone)
        } else {
            None
        }
    }

    fn guest_event(
        &mut self,
        now: crate::time::Instant,
        r: Readiness,
    ) -> Result<Option<ExitReason>, LoopError> {
        match &self.guest {
            Guest::None => Ok(None),
            Guest::Qemu(_) => {
                if r.readable || r.hangup || r.error || r.read_closed {
                    if let Some(reason) = self.read_qemu(now) {
                        return Ok(Some(reason));
                    }
                    if matches!(self.guest, Guest::None) {
                        return Ok(None);
                    }
                }
                if r.writable {
                    return self.flush_guest();
                }
                Ok(None)
            }
            Guest::Tap(_) => {
                if r.readable {
                    self.read_tap(now);
                }
                if r.writable {
                    return self.flush_guest();
                }
                Ok(None)
            }
        }
    }

    /// Reads and dispatches QEMU frames. Returns an exit reason if the guest
    /// left in one-off mode.
    fn read_qemu(&mut self, now: crate::time::Instant) -> Option<ExitReason> {
        for _ in 0..READS_PER_WAKEUP {
            let Guest::Qemu(stream) = &self.guest else {
                return None;
            };
            match self.reader.recv_from(stream.as_fd()) {
                Ok(0) => return self.drop_guest("closed by the guest"),
                Ok(_) => {}
                Err(HostError::WouldBlock) => return None,
                Err(e) => return self.drop_guest(&format!("read error: {e}")),
            }
            loop {
                match self.reader.next_frame() {
                    Ok(Some(frame)) => {
                        self.stats.frames_from_guest += 1;
                        log_trace!("guest frame, {} bytes", frame.len());
                        if let Some(p) = &mut self.pcap
                            && let Err(e) = p.record(frame)
                        {
                            log_warn!("pcap write failed, capture stopped: {e}");
                            self.pcap = None;
                        }
                        self.engine.handle_frame(now, frame);
                    }
                    Ok(None) => break,
                    Err(FramingError::BadLength(n)) => {
                        self.stats.framing_resets += 1;
                        log_warn!("bad frame length {n} from the guest: resetting the connection");
                        return self.drop_guest("bad frame length");
                    }
                }
            }
        }
        None
    }

    fn read_tap(&mut self, now: crate::time::Instant) {
        for _ in 0..TAP_FRAMES_PER_WAKEUP {
            let Guest::Tap(tap) = &self.guest else { return };
            match tap.read_frame(&mut self.tap_buf) {
                Ok(n) if (14..=65535).contains(&n) => {
                    let frame = &self.tap_buf[..n];
                    self.stats.frames_from_guest += 1;
                    log_trace!("tap frame, {n} bytes");
                    if let Some(p) = &mut self.pcap
                        && let Err(e) = p.record(frame)
                    {
                        log_warn!("pcap write failed, capture stopped: {e}");
                        self.pcap = None;
                    }
                    self.engine.handle_frame(now, frame);
                }
                Ok(n) => log_debug!("tap: ignored a {n}-byte read"),
                Err(HostError::WouldBlock) => return,
                Err(e) => {
                    log_warn!("tap read failed: {e}");
                    return;
                }
            }
        }
    }

    /// Writes what the engine queued for the guest, and asks for
    /// writability while something is left.
    fn flush_guest(&mut self) -> Result<Option<ExitReason>, LoopError> {
        let mut gone = None;
        match &self.guest {
            Guest::None => {
                let q = self.engine.tx_queue();
                self.stats.frames_discarded += q.len() as u64;
                q.clear();
                return Ok(None);
            }
            Guest::Qemu(stream) => {
                let fd = stream.as_fd();
                let queue = self.engine.tx_queue();
                // Bounded by the queue length: every round consumes a batch or stops.
                for _ in 0..queue.len() / WRITE_BATCH + 2 {
                    if queue.is_empty() && !self.writer.has_pending() {
                        break;
                    }
                    let offered = queue.len().min(WRITE_BATCH);
                    match self
                        .writer
                        .write_frames(queue.iter(), |iov| send_vectored(fd, iov))
                    {
                        Ok(n) => {
                            if let Some(p) = &mut self.pcap {
                                for f in queue.iter().take(n) {
                                    if p.record(f).is_err() {
                                        break;
                                    }
                                }
                            }
                            queue.consume(n);
                            self.stats.frames_to_guest += n as u64;
                            if self.writer.has_pending() || n < offered {
                                break;
                            }
                        }
                        Err(HostError::WouldBlock) => break,
                        Err(e) => {
                            gone = Some(format!("write error: {e}"));
                            break;
                        }
                    }
                }
            }
            Guest::Tap(tap) => {
                let queue = self.engine.tx_queue();
                let mut written = 0;
                for f in queue.iter() {
                    match tap.write_frame(f) {
                        Ok(()) => {
                            if let Some(p) = &mut self.pcap {
                                let _ = p.record(f);
                            }
                            written += 1;
                        }
                        Err(HostError::WouldBlock) => break,
                        Err(e) => {
                            // Drop the frame rather than retry it forever.
                            log_debug!("tap write failed: {e}");
                            written += 1;
                        }
                    }
                }
                queue.consume(written);
                self.stats.frames_to_guest += written as u64;
            }
        }
        if let Some(why) = gone {
            return Ok(self.drop_guest(&why));
        }
        let want_write = !self.engine.tx_queue().is_empty() || self.writer.has_pending();
        if want_write != self.guest_wants_write {
            let interest = if want_write {
                Interest::BOTH
            } else {
                Interest::READ
            };
            let fd = match &self.guest {
                Guest::Qemu(s) => s.as_raw_fd(),
                Guest::Tap(t) => t.as_raw_fd(),
                Guest::None => return Ok(None),
            };
            // SAFETY: `fd` belongs to `self.guest`, alive for this call.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            self.engine
                .host_mut()
                .modify_fd(fd, TOKEN_GUEST, interest)?;
            self.guest_wants_write = want_write;
        }
        Ok(None)
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
        if let Some((listener, file)) = self.listener.take() {
            let _ = self.engine.host_mut().remove_fd(listener.as_fd());
            drop(listener);
            drop(file);
        }
    }

    /// Shuts down and hands back the engine (for tests to inspect it).
    pub fn into_engine(mut self) -> Engine<RealHost> {
        self.shutdown();
        self.engine
    }
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("listener", &self.socket_path())
            .field("guest", &self.guest)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
