//! QEMU's stream-socket framing (`-netdev stream`, and the older
//! `-netdev socket,connect=`): every Ethernet frame travels as a 4-byte
//! big-endian length followed by the frame itself.
//!
//! This module owns the codec and its socket glue:
//! - [`FrameReader`] reassembles frames from arbitrary chunks (a frame split
//!   across reads, many frames in one read) in one preallocated buffer, and
//!   rejects impossible lengths so the caller can reset the connection;
//! - [`FrameWriter`] writes many frames per `sendmsg` with their length
//!   prefixes, pads short frames to the Ethernet minimum, and never tears a
//!   frame: whatever a short write leaves of a frame is kept and goes first
//!   next time.
//!
//! It never looks inside a frame beyond its length.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::host_io::HostError;
use crate::runtime::sys::cvt_size;
use crate::txq::TxQueue;

/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 4;
/// Smallest acceptable frame: an Ethernet header (IEEE 802.3 §3.1.1).
pub const MIN_FRAME: usize = 14;
/// Largest frame the 16-bit-sized buffers on both sides accept.
pub const MAX_FRAME: usize = 65535;
/// Frames shorter than this (the 64-byte Ethernet minimum without the
/// 4-byte FCS) are zero-padded on output.
pub const MIN_PADDED: usize = 60;

/// A length prefix no frame can have: the stream is corrupt or not speaking
/// this protocol, and the connection must be reset.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum FramingError {
    /// The prefix announced `n` bytes, outside `MIN_FRAME..=MAX_FRAME`.
    #[error("bad frame length {0} in QEMU stream")]
    BadLength(u32),
}

/// Reassembles length-prefixed frames from a byte stream.
///
/// Use: read into [`FrameReader::spare`] and [`FrameReader::commit`] what
/// was read (or call [`FrameReader::recv_from`], or [`FrameReader::feed`]
/// bytes), then call [`FrameReader::next_frame`] until it returns
/// `Ok(None)`, before reading again.
#[derive(Debug)]
pub struct FrameReader {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    /// The smallest buffer that holds any one frame with its prefix.
    pub const MIN_CAPACITY: usize = PREFIX_LEN + MAX_FRAME;
    /// Default buffer size: room for several maximal frames per read.
    pub const DEFAULT_CAPACITY: usize = 4 * Self::MIN_CAPACITY;

    /// A reader with the default buffer.
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// A reader whose buffer holds `capacity` bytes (at least
    /// [`FrameReader::MIN_CAPACITY`]). The buffer is allocated here, once.
    pub fn with_capacity(capacity: usize) -> Self {
        FrameReader {
            buf: vec![0; capacity.max(Self::MIN_CAPACITY)].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Forgets everything buffered (after a reset of the connection).
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Free space to read into. Moves a leftover partial frame to the front
    /// first, so after all complete frames were taken the space is never
    /// empty.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes of [`FrameReader::spare`] as filled.
    pub fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Copies as much of `data` as fits; returns how much.
    pub fn feed(&mut self, data: &[u8]) -> usize {
        let spare = self.spare();
        let n = data.len().min(spare.len());
        spare[..n].copy_from_slice(&data[..n]);
        self.commit(n);
        n
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or the
    /// framing error (which repeats until [`FrameReader::reset`]).
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FramingError> {
        let Some((start, len)) = self.locate()? else {
            return Ok(None);
        };
        self.pop_frame();
        // `pop_frame` only moves the cursors (rewinding them once nothing
        // is left): the bytes stay where they were until the next read.
        Ok(Some(&self.buf[start..start + len]))
    }

    /// Like [`FrameReader::next_frame`], but leaves the frame buffered
    /// until [`FrameReader::pop_frame`] (a frame the receiver cannot take
    /// yet stays here).
    pub fn peek_frame(&self) -> Result<Option<&[u8]>, FramingError> {
        Ok(self
            .locate()?
            .map(|(start, len)| &self.buf[start..start + len]))
    }

    /// Drops the frame [`FrameReader::peek_frame`] returns; does nothing if
    /// no complete frame is buffered.
    pub fn pop_frame(&mut self) {
        if let Ok(Some((start, len))) = self.locate() {
            self.start = start + len;
            if self.start == self.end {
                // Everything consumed: start over at the front.
                self.start = 0;
                self.end = 0;
            }
        }
    }

    /// Where the next complete frame's bytes are: `(offset, len)`.
    fn locate(&self) -> Result<Option<(usize, usize)>, FramingError> {
        let avail = &self.buf[self.start..self.end];
        if avail.len() < PREFIX_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]);
        if !(MIN_FRAME as u32..=MAX_FRAME as u32).contains(&len) {
            return Err(FramingError::BadLength(len));
        }
        let total = PREFIX_LEN + len as usize;
        if avail.len() < total {
            return Ok(None);
        }
        Ok(Some((self.start + PREFIX_LEN, len as usize)))
    }

    /// One nonblocking `recv` from the socket into the buffer. `Ok(0)` means
    /// the peer closed the stream; `WouldBlock` that nothing was waiting;
    /// `NoResources` that the buffer is full of complete frames not yet
    /// taken with [`FrameReader::next_frame`] (a caller bug).
    pub fn recv_from(&mut self, fd: BorrowedFd<'_>) -> Result<usize, HostError> {
        let spare = self.spare();
        if spare.is_empty() {
            return Err(HostError::NoResources);
        }
        // SAFETY: `spare` is writable for its length.
        let n = cvt_size(unsafe {
            libc::recv(
                fd.as_raw_fd(),
                spare.as_mut_ptr() as *mut libc::c_void,
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        })?;
        self.commit(n);
        Ok(n)
    }
}

/// Frames per `sendmsg`.
pub const WRITE_BATCH: usize = 128;
/// Three iovecs per frame at most (prefix, frame, padding), plus the
/// leftover of a torn frame; below `UIO_MAXIOV` (1024).
const MAX_IOV: usize = 3 * WRITE_BATCH + 1;

static ZERO_PAD: [u8; MIN_PADDED] = [0; MIN_PADDED];

/// Writes frames with their length prefixes, many per call, never tearing
/// one. See the module docs.
#[derive(Debug)]
pub struct FrameWriter {
    /// The unwritten tail of a frame a short write cut, in wire format.
    pending: Box<[u8]>,
    pending_start: usize,
    pending_end: usize,
    oversized: u64,
}

impl Default for FrameWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameWriter {
    /// A writer (allocates its one leftover buffer here).
    pub fn new() -> Self {
        FrameWriter {
            pending: vec![0; PREFIX_LEN + MAX_FRAME].into_boxed_slice(),
            pending_start: 0,
            pending_end: 0,
            oversized: 0,
        }
    }

    /// Part of a frame is still waiting to be written: wait for the socket
    /// to be writable even if the queue is empty.
    pub fn has_pending(&self) -> bool {
        self.pending_start < self.pending_end
    }

    /// Frames longer than [`MAX_FRAME`] that were dropped (counted as
    /// consumed) because no prefix can describe them.
    pub fn oversized_dropped(&self) -> u64 {
        self.oversized
    }

    /// Drops any leftover (after a reset of the connection).
    pub fn reset(&mut self) {
        self.pending_start = 0;
        self.pending_end = 0;
    }

    /// Writes the leftover, then up to [`WRITE_BATCH`] of `frames`, through
    /// one call to `send` (a vectored write that may be short). Returns how
    /// many frames of `frames` were consumed: written whole, or started and
    /// their remainder kept for next time. `Ok(0)` can mean only the
    /// leftover progressed. `send`'s `WouldBlock` and other errors are
    /// returned as they are, with nothing consumed.
    pub fn write_frames<'a, I, S>(&mut self, frames: I, mut send: S) -> Result<usize, HostError>
    where
        I: IntoIterator<Item = &'a [u8]>,
        S: FnMut(&[IoSlice<'_>]) -> Result<usize, HostError>,
    {
        let mut batch: [&[u8]; WRITE_BATCH] = [&[]; WRITE_BATCH];
        let mut prefixes = [[0u8; PREFIX_LEN]; WRITE_BATCH];
        let mut count = 0;
        for f in frames.into_iter().take(WRITE_BATCH) {
            batch[count] = f;
            prefixes[count] = (f.len().max(MIN_PADDED) as u32).to_be_bytes();
            count += 1;
        }
        let batch = &batch[..count];
        let pending_len = self.pending_end - self.pending_start;

        let mut iovs = [IoSlice::new(&[]); MAX_IOV];
        let mut n_iov = 0;
        if pending_len > 0 {
            iovs[0] = IoSlice::new(&self.pending[self.pending_start..self.pending_end]);
            n_iov = 1;
        }
        for (f, prefix) in batch.iter().zip(prefixes.iter()) {
            if f.len() > MAX_FRAME {
                continue;
            }
            iovs[n_iov] = IoSlice::new(prefix);
            iovs[n_iov + 1] = IoSlice::new(f);
            n_iov += 2;
            if f.len() < MIN_PADDED {
                iovs[n_iov] = IoSlice::new(&ZERO_PAD[..MIN_PADDED - f.len()]);
                n_iov += 1;
            }
        }
        if n_iov == 0 {
            // Nothing to write but possibly oversized frames to drop.
            let dropped = batch.len();
            self.oversized += dropped as u64;
            return Ok(dropped);
        }
        let mut written = send(&iovs[..n_iov])?;

        // Account for the leftover first.
        if pending_len > 0 {
            if written < pending_len {
                self.pending_start += written;
                return Ok(0);
            }
            written -= pending_len;
            self.reset();
        }
        let mut consumed = 0;
        for f in batch {
            if f.len() > MAX_FRAME {
                self.oversized += 1;
                consumed += 1;
                continue;
            }
            let wire = PREFIX_LEN + f.len().max(MIN_PADDED);
            if written >= wire {
                written -= wire;
                consumed += 1;
            } else if written > 0 {
                self.keep_tail(f, written);
                consumed += 1;
                break;
            } else {
                break;
            }
        }
        Ok(consumed)
    }

    /// Stores the wire bytes of `frame` from `from` on (prefix, frame,
    /// padding) as the leftover.
    fn keep_tail(&mut self, frame: &[u8], from: usize) {
        let padded = frame.len().max(MIN_PADDED);
        let prefix = (padded as u32).to_be_bytes();
        let pad = &ZERO_PAD[..padded - frame.len()];
        let wire = prefix.iter().chain(frame).chain(pad).skip(from);
        let mut out = 0;
        for (slot, b) in self.pending.iter_mut().zip(wire) {
            *slot = *b;
            out += 1;
        }
        self.pending_start = 0;
        self.pending_end = out;
    }

    /// Drains `queue` into the socket (`sendmsg(MSG_NOSIGNAL)`, batches of
    /// [`WRITE_BATCH`] frames) until it is empty or the socket is full;
    /// removes the consumed frames from the queue and returns how many.
    /// `WouldBlock` when not a byte could be written.
    pub fn send_queue(
        &mut self,
        fd: BorrowedFd<'_>,
        queue: &mut TxQueue,
    ) -> Result<usize, HostError> {
        let mut total = 0;
        let mut progressed = false;
        // Each round consumes a batch or stops: bounded by the queue length.
        for _ in 0..queue.len() / WRITE_BATCH + 2 {
            if queue.is_empty() && !self.has_pending() {
                break;
            }
            let offered = queue.len().min(WRITE_BATCH);
            match self.write_frames(queue.iter(), |iov| sendmsg(fd, iov)) {
                Ok(n) => {
                    queue.consume(n);
                    total += n;
                    progressed = true;
                    // A short write (a leftover, or frames not taken): the
                    // socket is full, stop here.
                    if self.has_pending() || n < offered {
                        break;
                    }
                }
                Err(HostError::WouldBlock) if progressed => break,
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }
}

/// `sendmsg(MSG_NOSIGNAL | MSG_DONTWAIT)` of `iov`.
fn sendmsg(fd: BorrowedFd<'_>, iov: &[IoSlice<'_>]) -> Result<usize, HostError> {
    // SAFETY: zeroed msghdr is valid (no name, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with `struct iovec` on Unix.
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: `msg` points to `iov`, which outlives the call; the kernel
    // only reads the buffers.
    cvt_size(unsafe {
        libc::sendmsg(
            fd.as_raw_fd(),
            &msg,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn encode(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    fn drain(r: &mut FrameReader, out: &mut Vec<Vec<u8>>) {
        while let Some(f) = r.next_frame().expect("valid stream") {
            out.push(f.to_vec());
        }
    }

    #[test]
    fn a_peeked_frame_stays_until_popped() {
        let frames = vec![frame(60, 1), frame(100, 2)];
        let mut r = FrameReader::new();
        r.feed(&encode(&frames));
        assert_eq!(r.peek_frame().unwrap(), Some(&frames[0][..]));
        assert_eq!(r.peek_frame().unwrap(), Some(&frames[0][..]));
        r.pop_frame();
        assert_eq!(r.peek_frame().unwrap(), Some(&frames[1][..]));
        r.pop_frame();
        assert_eq!(r.peek_frame().unwrap(), None);
        assert_eq!(r.buffered(), 0);
        // Popping with nothing complete buffered does nothing.
        r.feed(&[0, 0]);
        r.pop_frame();
        assert_eq!(r.buffered(), 2);
    }

    #[test]
    fn reassembles_at_every_split_point() {
        let frames = vec![frame(14, 1), frame(60, 2), frame(100, 3), frame(15, 4)];
        let stream = encode(&frames);
        for split in 0..=stream.len() {
            let mut r = FrameReader::with_capacity(0);
            let mut got = Vec::new();
            assert_eq!(r.feed(&stream[..split]), split);
            drain(&mut r, &mut got);
            assert_eq!(r.feed(&stream[split..]), stream.len() - split);
            drain(&mut r, &mut got);
            assert_eq!(got, frames, "split at {split}");
            assert_eq!(r.buffered(), 0);
        }
    }

    #[test]
    fn reassembles_byte_by_byte_and_three_way_splits() {
        let frames = vec![frame(20, 9), frame(1500, 8), frame(14, 7)];
        let stream = encode(&frames);
        let mut r = FrameReader::new();
        let mut got = Vec::new();
        for b in &stream {
            assert_eq!(r.feed(std::slice::from_ref(b)), 1);
            drain(&mut r, &mut got);
        }
        assert_eq!(got, frames);
        for a in (0..stream.len()).step_by(7) {
            for b in (a..stream.len()).step_by(13) {
                let mut r = FrameReader::new();
                let mut got = Vec::new();
                for chunk in [&stream[..a], &stream[a..b], &stream[b..]] {
                    r.feed(chunk);
                    drain(&mut r, &mut got);
                }
                assert_eq!(got, frames, "splits {a} {b}");
            }
        }
    }

    #[test]
    fn largest_frame_fits_the_minimal_buffer_after_any_split() {
        let frames = vec![frame(100, 1), frame(MAX_FRAME, 2), frame(MAX_FRAME, 3)];
        let stream = encode(&frames);
        for split in [
            1, 3, 4, 5, 103, 104, 105, 108, 109, 60000, 65643, 65644, 65645,
        ] {
            let mut r = FrameReader::with_capacity(FrameReader::MIN_CAPACITY);
            let mut got = Vec::new();
            let mut rest = &stream[..];
            let mut first = Some(split);
            while !rest.is_empty() {
                let want = first.take().unwrap_or(rest.len());
                let n = r.feed(&rest[..want.min(rest.len())]);
                rest = &rest[n..];
                drain(&mut r, &mut got);
                assert!(n > 0 || !rest.is_empty());
            }
            assert_eq!(got, frames, "split at {split}");
        }
    }

    #[test]
    fn bad_lengths_are_errors_and_stick() {
        for (len, ok) in [
            (0u32, false),
            (13, false),
            (14, true),
            (65535, true),
            (65536, false),
            (u32::MAX, false),
        ] {
            let mut r = FrameReader::new();
            r.feed(&len.to_be_bytes());
            match r.next_frame() {
                Ok(None) => assert!(ok, "{len} accepted"),
                Err(FramingError::BadLength(n)) => {
                    assert!(!ok, "{len} rejected");
                    assert_eq!(n, len);
                    assert_eq!(r.next_frame(), Err(FramingError::BadLength(len)));
                    r.reset();
                    assert_eq!(r.next_frame(), Ok(None));
                }
                Ok(Some(_)) => panic!("frame from a bare prefix"),
            }
        }
        // A partial prefix is not judged yet.
        let mut r = FrameReader::new();
        r.feed(&[0, 0, 0]);
        assert_eq!(r.next_frame(), Ok(None));
    }

    /// A sink that takes at most `limits[i]` bytes on call `i` (cycling),
    /// recording the bytes.
    struct ShortSink {
        limits: Vec<usize>,
        call: usize,
        out: Vec<u8>,
        vectors: Vec<usize>,
    }

    impl ShortSink {
        fn send(&mut self, iov: &[IoSlice<'_>]) -> Result<usize, HostError> {
            let limit = self.limits[self.call % self.limits.len()];
            self.call += 1;
            self.vectors.push(iov.len());
            if limit == 0 {
                return Err(HostError::WouldBlock);
            }
            let mut taken = 0;
            for v in iov {
                let n = v.len().min(limit - taken);
                self.out.extend_from_slice(&v[..n]);
                taken += n;
                if taken == limit {
                    break;
                }
            }
            Ok(taken)
        }
    }

    fn padded(f: &[u8]) -> Vec<u8> {
        let mut v = f.to_vec();
        v.resize(f.len().max(MIN_PADDED), 0);
        v
    }

    #[test]
    fn pads_short_frames_and_prefixes_lengths() {
        let mut w = FrameWriter::new();
        let mut sink = ShortSink {
            limits: vec![usize::MAX],
            call: 0,
            out: Vec::new(),
            vectors: Vec::new(),
        };
        let frames = [frame(20, 1), frame(60, 2), frame(61, 3)];
        let n = w
            .write_frames(frames.iter().map(|f| &f[..]), |iov| sink.send(iov))
            .unwrap();
        assert_eq!(n, 3);
        assert_eq!(sink.call, 1, "one vectored write for the batch");
        assert_eq!(sink.vectors, vec![3 + 2 + 2]);
        let mut expect = Vec::new();
        for f in &frames {
            expect.extend_from_slice(&(f.len().max(60) as u32).to_be_bytes());
            expect.extend_from_slice(&padded(f));
        }
        assert_eq!(sink.out, expect);
        assert_eq!(&sink.out[..4], &[0, 0, 0, 60]);
        assert!(sink.out[4 + 20..4 + 60].iter().all(|b| *b == 0));
    }

    /// Drives a writer over a frame list against a sink with the given
    /// per-call limits, like an event loop would, and checks the byte stream.
    fn drive(frames: &[Vec<u8>], limits: Vec<usize>) {
        let mut w = FrameWriter::new();
        let mut sink = ShortSink {
            limits,
            call: 0,
            out: Vec::new(),
            vectors: Vec::new(),
        };
        let mut next = 0;
        let mut rounds = 0;
        while next < frames.len() || w.has_pending() {
            rounds += 1;
            assert!(rounds < 2_000_000, "no progress");
            match w.write_frames(frames[next..].iter().map(|f| &f[..]), |iov| sink.send(iov)) {
                Ok(n) => next += n,
                Err(HostError::WouldBlock) => {}
                Err(e) => panic!("{e:?}"),
            }
            assert!(next <= frames.len());
        }
        let mut r = FrameReader::new();
        let mut got = Vec::new();
        let mut rest = &sink.out[..];
        while !rest.is_empty() {
            let n = r.feed(rest);
            rest = &rest[n..];
            drain(&mut r, &mut got);
        }
        let expect: Vec<Vec<u8>> = frames.iter().map(|f| padded(f)).collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn short_writes_never_tear_frames() {
        let frames: Vec<Vec<u8>> = (0..300)
            .map(|i| frame([14, 59, 60, 61, 1514, 9000, 65535][i % 7], i as u8))
            .collect();
        drive(&frames[..6], vec![1]);
        for limits in [
            vec![3, 0, 5],
            vec![64, 0],
            vec![1000, 7, 0, 70000],
            vec![3, 0, 5, 600, 1, 2],
            vec![4, 4, 4, 0, 65539],
            vec![usize::MAX],
        ] {
            drive(&frames[..60], limits);
        }
        drive(&frames, vec![100_000, 0, 1, 250_000]);
    }

    #[test]
    fn would_block_consumes_nothing_and_oversized_frames_are_dropped() {
        let mut w = FrameWriter::new();
        let f = frame(100, 1);
        let r = w.write_frames([&f[..]], |_| Err(HostError::WouldBlock));
        assert_eq!(r, Err(HostError::WouldBlock));
        assert!(!w.has_pending());
        let big = vec![0u8; MAX_FRAME + 1];
        let mut out = Vec::new();
        let n = w
            .write_frames([&big[..], &f[..]], |iov| {
                let mut t = 0;
                for v in iov {
                    out.extend_from_slice(v);
                    t += v.len();
                }
                Ok(t)
            })
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(w.oversized_dropped(), 1);
        assert_eq!(out.len(), 4 + 100);
    }
}
