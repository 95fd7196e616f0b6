//! The bounded, preallocated transmit queue toward the guest.
//!
//! Frames for the guest are built in place, directly into one contiguous byte
//! arena, and described by `(offset, len)` entries. The backend drains the
//! queue in batches (the real backend turns a batch into one `writev`/
//! `sendmsg` with a length prefix per frame). Both the arena and the entry
//! list are allocated once, at construction: pushing never allocates.
//!
//! When the queue is full a push fails with [`TxQueueFull`]; the caller counts
//! the drop. A full queue means the guest is not draining fast enough, and
//! TCP/UDP above recover from a lost frame like from any other loss.

/// The queue had no room for the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("transmit queue full")]
pub struct TxQueueFull;

/// A bounded queue of frames for the guest.
#[derive(Debug)]
pub struct TxQueue {
    arena: Vec<u8>,
    used: usize,
    frames: Vec<(u32, u32)>,
    max_frames: usize,
}

impl TxQueue {
    /// A queue holding at most `max_frames` frames and `max_bytes` bytes.
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
        TxQueue {
            arena: vec![0; max_bytes],
            used: 0,
            frames: Vec::with_capacity(max_frames),
            max_frames,
        }
    }

    /// Builds one frame in place. `build` gets a zeroed-or-stale buffer of
    /// `max_len` bytes and returns how many it used (0 means "no frame after
    /// all": nothing is queued). Fails without calling `build` when the
    /// queue cannot take a frame of `max_len` bytes.
    pub fn push_with<F>(&mut self, max_len: usize, build: F) -> Result<usize, TxQueueFull>
    where
        F: FnOnce(&mut [u8]) -> usize,
    {
        if self.frames.len() >= self.max_frames || self.arena.len() - self.used < max_len {
            return Err(TxQueueFull);
        }
        let start = self.used;
        let len = build(&mut self.arena[start..start + max_len]).min(max_len);
        if len > 0 {
            self.frames.push((start as u32, len as u32));
            self.used += len;
        }
        Ok(len)
    }

    /// Copies a complete frame into the queue.
    pub fn push(&mut self, frame: &[u8]) -> Result<(), TxQueueFull> {
        self.push_with(frame.len(), |buf| {
            buf.copy_from_slice(frame);
            frame.len()
        })
        .map(|_| ())
    }

    /// Number of frames waiting.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// No frames waiting.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes free in the arena.
    pub fn free_bytes(&self) -> usize {
        self.arena.len() - self.used
    }

    /// Frames that can still be queued (whatever their size).
    pub fn free_frames(&self) -> usize {
        self.max_frames - self.frames.len()
    }

    /// How many more frames of up to `max_len` bytes certainly fit.
    pub fn room_for(&self, max_len: usize) -> usize {
        self.free_frames()
            .min(self.free_bytes().checked_div(max_len).unwrap_or(usize::MAX))
    }

    /// The `i`-th waiting frame.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.frames
            .get(i)
            .map(|&(off, len)| &self.arena[off as usize..off as usize + len as usize])
    }

    /// Iterates over the waiting frames in order, without removing them.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.frames
            .iter()
            .map(|&(off, len)| &self.arena[off as usize..off as usize + len as usize])
    }

    /// Removes the first `n` frames (those the backend managed to write).
    /// Cheap when `n` is the whole queue, which is the common case.
    pub fn consume(&mut self, n: usize) {
        if n >= self.frames.len() {
            self.clear();
            return;
        }
        self.frames.drain(..n);
        // Keep the arena compact: move the remaining frames to the front.
        let first = self.frames[0].0 as usize;
        self.arena.copy_within(first..self.used, 0);
        self.used -= first;
        for f in self.frames.iter_mut() {
            f.0 -= first as u32;
        }
    }

    /// Removes every waiting frame.
    pub fn clear(&mut self) {
        self.frames.clear();
        self.used = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_iterate_consume() {
        let mut q = TxQueue::new(3, 100);
        q.push(b"one").unwrap();
        q.push(b"two!").unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(
            q.iter().collect::<Vec<_>>(),
            vec![&b"one"[..], &b"two!"[..]]
        );
        q.consume(1);
        assert_eq!(q.get(0), Some(&b"two!"[..]));
        assert_eq!(q.free_bytes(), 96);
        q.consume(5);
        assert!(q.is_empty());
        assert_eq!(q.free_bytes(), 100);
    }

    #[test]
    fn bounded_by_frames_and_bytes() {
        let mut q = TxQueue::new(2, 10);
        assert_eq!(q.push(&[0; 11]), Err(TxQueueFull));
        q.push(&[1; 4]).unwrap();
        q.push(&[2; 4]).unwrap();
        assert_eq!(q.push(&[3; 1]), Err(TxQueueFull));
        q.clear();
        q.push(&[4; 8]).unwrap();
        assert_eq!(q.push(&[5; 3]), Err(TxQueueFull));
    }

    #[test]
    fn room_counts_the_frames_that_certainly_fit() {
        let mut q = TxQueue::new(3, 100);
        assert_eq!(q.room_for(30), 3, "bounded by frames");
        assert_eq!(q.room_for(40), 2, "bounded by bytes");
        q.push(&[0; 50]).unwrap();
        assert_eq!(q.free_frames(), 2);
        assert_eq!(q.room_for(40), 1);
        assert_eq!(q.room_for(51), 0);
        q.push(&[0; 1]).unwrap();
        q.push(&[0; 1]).unwrap();
        assert_eq!(q.room_for(1), 0, "no frame left");
        q.consume(1);
        assert_eq!(q.room_for(40), 1);
    }

    #[test]
    fn build_in_place_may_use_less() {
        let mut q = TxQueue::new(4, 64);
        let n = q
            .push_with(64, |b| {
                b[..3].copy_from_slice(b"abc");
                3
            })
            .unwrap();
        assert_eq!(n, 3);
        assert_eq!(q.push_with(10, |_| 0).unwrap(), 0);
        assert_eq!(q.len(), 1);
        assert_eq!(q.free_bytes(), 61);
    }
}
