//! # A lossy link between the guest's tap and the engine
//!
//! The machine's kernel has no `netem` (and no modules to load it), so loss
//! on the guest link is made here: instead of handing the tap to the engine,
//! [`crate::TapGuest`] gives the engine one end of a `UnixStream::pair()`
//! speaking QEMU's stream framing (every frame prefixed by its length, 4
//! bytes big-endian), and a relay thread of this module owns the tap and the
//! other end. The relay drops each frame with a fixed probability per
//! direction, drawn from a seeded generator, and forwards the rest
//! unchanged.
//!
//! What it owns: the relay thread, its tap and socket end (both closed when
//! it ends), and its frame counts ([`RelayStats`]).
//!
//! What it must never do: change, reorder or duplicate a frame it forwards,
//! block on either descriptor (both are nonblocking and polled), or grow its
//! buffers without bound: when the engine does not read, the relay stops
//! reading the tap (the guest kernel's own queue then fills and drops, as a
//! real link would), and it reads the engine's stream only while it can
//! hold the bytes.
//!
//! The relay ends when the engine's end closes (EOF or hangup on its
//! socket), when the stream is corrupt (a length outside
//! `MIN_FRAME..=MAX_FRAME`), or when its [`Relay::stop`] is called.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use passt_engine::HostError;
use passt_engine::runtime::transport::tap::Tap;

/// Loss to inject on the guest link (see the module docs). With
/// [`crate::GuestOptions::lossy`] set, the engine talks QEMU stream framing
/// to a relay instead of owning the tap.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossyLink {
    /// Seed of the drop decisions: the n-th frame in each direction is
    /// dropped or not as a function of the seed alone (which frame is n-th
    /// still depends on timing).
    pub seed: u64,
    /// Probability (0.0 to 1.0) that a frame the guest kernel sends is
    /// dropped before the engine sees it.
    pub loss_to_engine: f64,
    /// Probability (0.0 to 1.0) that a frame the engine sends is dropped
    /// before the guest kernel sees it. A frame the tap refuses
    /// (`WouldBlock`) is dropped too, and counted in
    /// [`RelayStats::to_guest_blocked`] as well.
    pub loss_to_guest: f64,
}

impl LossyLink {
    /// The same loss probability both ways.
    pub fn symmetric(seed: u64, loss: f64) -> LossyLink {
        LossyLink {
            seed,
            loss_to_engine: loss,
            loss_to_guest: loss,
        }
    }
}

/// Frame counts of a relay, per direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Frames from the tap forwarded to the engine.
    pub to_engine_relayed: u64,
    /// Frames from the tap dropped on purpose.
    pub to_engine_dropped: u64,
    /// Frames from the engine written to the tap.
    pub to_guest_relayed: u64,
    /// Frames from the engine dropped (on purpose, or refused by the tap).
    pub to_guest_dropped: u64,
    /// Of `to_guest_dropped`, those the tap refused with `WouldBlock`.
    pub to_guest_blocked: u64,
}

/// Why the relay thread ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayEnd {
    /// The engine's end of the stream closed.
    EngineClosed,
    /// [`Relay::stop`] was called.
    Stopped,
    /// The engine's stream carried an impossible frame length.
    BadLength(u32),
    /// A system call failed.
    Io(String),
}

#[derive(Debug, Default)]
struct SharedStats {
    to_engine_relayed: AtomicU64,
    to_engine_dropped: AtomicU64,
    to_guest_relayed: AtomicU64,
    to_guest_dropped: AtomicU64,
    to_guest_blocked: AtomicU64,
}

impl SharedStats {
    fn snapshot(&self) -> RelayStats {
        RelayStats {
            to_engine_relayed: self.to_engine_relayed.load(Ordering::Relaxed),
            to_engine_dropped: self.to_engine_dropped.load(Ordering::Relaxed),
            to_guest_relayed: self.to_guest_relayed.load(Ordering::Relaxed),
            to_guest_dropped: self.to_guest_dropped.load(Ordering::Relaxed),
            to_guest_blocked: self.to_guest_blocked.load(Ordering::Relaxed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Bytes of the length prefix.
const PREFIX_LEN: usize = 4;
/// Smallest frame either side accepts (an Ethernet header).
const MIN_FRAME: usize = 14;
/// Largest frame the 16-bit lengths of both sides allow.
const MAX_FRAME: usize = 65535;
/// Bytes the relay holds for the engine before it stops reading the tap.
const TO_ENGINE_LIMIT: usize = 1 << 20;
/// Size of the buffer reassembling the engine's stream (room for several
/// largest frames).
const FROM_ENGINE_BUF: usize = 8 * (PREFIX_LEN + MAX_FRAME);
/// Tap frames read per wakeup, so the other direction is not starved.
const TAP_READS_PER_WAKEUP: usize = 64;
/// Stream reads per wakeup.
const STREAM_READS_PER_WAKEUP: usize = 8;
/// Longest sleep in `poll`, so a stop request is seen soon.
const POLL_MS: i32 = 20;

/// splitmix64 (Steele, Lea, Flood 2014): a tiny seeded generator, one per
/// direction.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1): the top 53 bits as a fraction.
    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether the next frame is dropped with probability `p`.
    fn drop_next(&mut self, p: f64) -> bool {
        self.next_unit() < p
    }
}

/// A running relay thread (see the module docs).
#[derive(Debug)]
pub struct Relay {
    stop: Arc<AtomicBool>,
    stats: Arc<SharedStats>,
    thread: Option<JoinHandle<RelayEnd>>,
}

impl Relay {
    /// Starts relaying between `tap` and `stream` (the engine, or anything
    /// else speaking QEMU stream framing), losing frames as `link` says.
    /// Both descriptors are owned by the relay thread from now on.
    pub fn spawn(tap: Tap, stream: UnixStream, link: LossyLink) -> io::Result<Relay> {
        stream.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(SharedStats::default());
        let worker = Worker {
            tap,
            stream,
            link,
            to_engine_rng: SplitMix64(link.seed),
            to_guest_rng: SplitMix64(link.seed ^ 0x5DEE_CE66_D1CE_4E5B),
            to_engine: Vec::with_capacity(TO_ENGINE_LIMIT + PREFIX_LEN + MAX_FRAME),
            to_engine_sent: 0,
            from_engine: vec![0; FROM_ENGINE_BUF].into_boxed_slice(),
            from_engine_len: 0,
            frame: vec![0; MAX_FRAME + 1].into_boxed_slice(),
            stop: stop.clone(),
            stats: stats.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("tap-harness-relay".into())
            .spawn(move || worker.run())?;
        Ok(Relay {
            stop,
            stats,
            thread: Some(thread),
        })
    }

    /// The counts so far.
    pub fn stats(&self) -> RelayStats {
        self.stats.snapshot()
    }

    /// Asks the thread to end, waits for it, and returns its final counts
    /// and why it ended. Its tap and socket are closed when this returns.
    pub fn stop(&mut self) -> (RelayStats, RelayEnd) {
        self.stop.store(true, Ordering::Relaxed);
        let end = match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| RelayEnd::Io("relay thread panicked".into())),
            None => RelayEnd::Stopped,
        };
        (self.stats(), end)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop();
        }
    }
}

struct Worker {
    tap: Tap,
    stream: UnixStream,
    link: LossyLink,
    to_engine_rng: SplitMix64,
    to_guest_rng: SplitMix64,
    /// Length-prefixed frames waiting to be written to the stream.
    to_engine: Vec<u8>,
    /// How much of `to_engine` is already written.
    to_engine_sent: usize,
    /// Bytes read from the stream, not yet a whole frame.
    from_engine: Box<[u8]>,
    from_engine_len: usize,
    /// One tap read (one byte more than the largest frame, to see a cut).
    frame: Box<[u8]>,
    stop: Arc<AtomicBool>,
    stats: Arc<SharedStats>,
}

impl Worker {
    fn run(mut self) -> RelayEnd {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return self.drain_stream();
            }
            let pending = self.to_engine.len() - self.to_engine_sent;
            let mut fds = [
                libc::pollfd {
                    fd: self.tap.as_raw_fd(),
                    events: if pending < TO_ENGINE_LIMIT {
                        libc::POLLIN
                    } else {
                        0
                    },
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.stream.as_raw_fd(),
                    events: libc::POLLIN | if pending > 0 { libc::POLLOUT } else { 0 },
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a valid array of two pollfd for the call.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, POLL_MS) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return RelayEnd::Io(format!("poll: {e}"));
            }
            if fds[0].revents & libc::POLLIN != 0 {
                self.read_tap();
            }
            let stream_ev = fds[1].revents;
            if stream_ev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
                && let Some(end) = self.read_stream()
            {
                return end;
            }
            if self.to_engine.len() > self.to_engine_sent
                && let Some(end) = self.write_stream()
            {
                return end;
            }
        }
    }

    /// On a stop request: passes on what the engine already wrote (it has
    /// usually stopped by then, so its last frames are not lost to a race),
    /// reading until the stream is empty or closed, a bounded number of
    /// times.
    fn drain_stream(&mut self) -> RelayEnd {
        for _ in 0..1024 {
            match self.read_stream() {
                Some(end) => return end,
                None => {
                    // read_stream returns None on WouldBlock or after its
                    // per-wakeup quota; only the former means empty.
                    let mut probe = [0u8; 1];
                    // SAFETY: `probe` is writable for one byte.
                    let n = unsafe {
                        libc::recv(
                            self.stream.as_raw_fd(),
                            probe.as_mut_ptr().cast(),
                            1,
                            libc::MSG_PEEK | libc::MSG_DONTWAIT,
                        )
                    };
                    if n == 0 {
                        return RelayEnd::EngineClosed;
                    }
                    if n < 0 {
                        return RelayEnd::Stopped;
                    }
                }
            }
        }
        RelayEnd::Stopped
    }

    /// Reads frames from the tap, queueing the survivors for the engine.
    fn read_tap(&mut self) {
        for _ in 0..TAP_READS_PER_WAKEUP {
            if self.to_engine.len() - self.to_engine_sent >= TO_ENGINE_LIMIT {
                return;
            }
            let n = match self.tap.read_frame(&mut self.frame) {
                Ok(n) => n,
                Err(_) => return, // WouldBlock, or nothing sensible to do
            };
            if !(MIN_FRAME..=MAX_FRAME).contains(&n) {
                continue; // the engine would reject it anyway
            }
            if self.to_engine_rng.drop_next(self.link.loss_to_engine) {
                bump(&self.stats.to_engine_dropped);
                continue;
            }
            bump(&self.stats.to_engine_relayed);
            let len = u32::try_from(n).unwrap_or(0).to_be_bytes();
            self.to_engine.extend_from_slice(&len);
            self.to_engine.extend_from_slice(&self.frame[..n]);
        }
    }

    /// Writes what it can of the queued frames to the stream.
    fn write_stream(&mut self) -> Option<RelayEnd> {
        while self.to_engine_sent < self.to_engine.len() {
            match self.stream.write(&self.to_engine[self.to_engine_sent..]) {
                Ok(0) => return Some(RelayEnd::EngineClosed),
                Ok(n) => self.to_engine_sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    return Some(RelayEnd::EngineClosed);
                }
                Err(e) => return Some(RelayEnd::Io(format!("stream write: {e}"))),
            }
        }
        if self.to_engine_sent == self.to_engine.len() {
            self.to_engine.clear();
            self.to_engine_sent = 0;
        } else if self.to_engine_sent >= TO_ENGINE_LIMIT / 2 {
            self.to_engine.drain(..self.to_engine_sent);
            self.to_engine_sent = 0;
        }
        None
    }

    /// Reads the engine's stream and passes on (or drops) each whole frame.
    fn read_stream(&mut self) -> Option<RelayEnd> {
        for _ in 0..STREAM_READS_PER_WAKEUP {
            let spare = &mut self.from_engine[self.from_engine_len..];
            if spare.is_empty() {
                // Cannot happen: forward_frames leaves less than one frame.
                return Some(RelayEnd::Io("reassembly buffer full".into()));
            }
            match self.stream.read(spare) {
                Ok(0) => return Some(RelayEnd::EngineClosed),
                Ok(n) => self.from_engine_len += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Some(RelayEnd::EngineClosed);
                }
                Err(e) => return Some(RelayEnd::Io(format!("stream read: {e}"))),
            }
            if let Some(end) = self.forward_frames() {
                return Some(end);
            }
        }
        None
    }

    /// Takes every whole frame off the front of `from_engine`.
    fn forward_frames(&mut self) -> Option<RelayEnd> {
        let mut at = 0;
        loop {
            let rest = &self.from_engine[at..self.from_engine_len];
            let Some(prefix) = rest.first_chunk::<PREFIX_LEN>() else {
                break;
            };
            let len = u32::from_be_bytes(*prefix);
            let n = len as usize;
            if !(MIN_FRAME..=MAX_FRAME).contains(&n) {
                return Some(RelayEnd::BadLength(len));
            }
            if rest.len() < PREFIX_LEN + n {
                break;
            }
            let frame = &rest[PREFIX_LEN..PREFIX_LEN + n];
            if self.to_guest_rng.drop_next(self.link.loss_to_guest) {
                bump(&self.stats.to_guest_dropped);
            } else {
                match self.tap.write_frame(frame) {
                    Ok(()) => bump(&self.stats.to_guest_relayed),
                    Err(HostError::WouldBlock) => {
                        bump(&self.stats.to_guest_dropped);
                        bump(&self.stats.to_guest_blocked);
                    }
                    Err(e) => return Some(RelayEnd::Io(format!("tap write: {e}"))),
                }
            }
            at += PREFIX_LEN + n;
        }
        // Keep the partial frame at the front; the buffer holds at least
        // one whole largest frame, so there is always room to finish it.
        self.from_engine.copy_within(at..self.from_engine_len, 0);
        self.from_engine_len -= at;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_drop_rate_is_close_to_the_probability() {
        let mut r = SplitMix64(42);
        let n = 100_000;
        let dropped = (0..n).filter(|_| r.drop_next(0.02)).count();
        // 2000 expected; a binomial sd is ~44, so 5 sd either side.
        assert!((1780..=2220).contains(&dropped), "{dropped}");
        let mut never = SplitMix64(42);
        assert!(!(0..10_000).any(|_| never.drop_next(0.0)));
        let mut always = SplitMix64(42);
        assert!((0..10_000).all(|_| always.drop_next(1.0)));
    }

    #[test]
    fn same_seed_same_decisions() {
        let mut a = SplitMix64(7);
        let mut b = SplitMix64(7);
        let da: Vec<bool> = (0..1000).map(|_| a.drop_next(0.3)).collect();
        let db: Vec<bool> = (0..1000).map(|_| b.drop_next(0.3)).collect();
        assert_eq!(da, db);
        let mut c = SplitMix64(8);
        let dc: Vec<bool> = (0..1000).map(|_| c.drop_next(0.3)).collect();
        assert_ne!(da, dc);
    }
}
