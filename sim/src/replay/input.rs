//! The trace: every Ethernet frame of a capture file, with its time since
//! the first one.
//!
//! # What this module owns
//!
//! Reading the capture ([`crate::pcap::Capture`], pcap or pcapng) and the
//! input errors replay ends with: another link type, a truncated or
//! garbage file, an empty one. Each is one [`InputError`] whose text
//! names the problem; the caller adds the file name.
//!
//! # What it must never do
//!
//! Panic on any bytes, or keep going past a format error as if the file
//! were whole.

use passt_engine::Instant;

use crate::pcap::{Capture, LINKTYPE_ETHERNET, PcapError};

/// One frame of the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceFrame {
    /// Time since the trace's first frame (virtual time of the replay).
    pub at: Instant,
    /// The frame as captured.
    pub data: Vec<u8>,
}

/// Why a capture cannot be replayed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Zero bytes.
    #[error("empty file")]
    Empty,
    /// Not a capture file at all.
    #[error("not a pcap or pcapng capture ({0})")]
    Garbage(PcapError),
    /// Ends in the middle of a header or record.
    #[error("truncated capture: {0}")]
    Truncated(PcapError),
    /// A malformed block or record.
    #[error("malformed capture: {0}")]
    Malformed(PcapError),
    /// Not Ethernet.
    #[error("link type {0} is not Ethernet (1): replay needs the frames of a tap or passt --pcap")]
    LinkType(u32),
    /// A capture with no packet at all.
    #[error("the capture holds no packets")]
    NoPackets,
    /// Packets, but none from a guest.
    #[error("no guest frames: {0}")]
    NoGuestFrames(String),
}

fn classify(e: PcapError) -> InputError {
    match e {
        PcapError::BadMagic(_) => InputError::Garbage(e),
        PcapError::Truncated { .. } => InputError::Truncated(e),
        PcapError::Malformed { .. } | PcapError::UnknownInterface { .. } => {
            InputError::Malformed(e)
        }
    }
}

/// Reads every frame of `bytes`.
pub fn read_trace(bytes: &[u8]) -> Result<Vec<TraceFrame>, InputError> {
    if bytes.is_empty() {
        return Err(InputError::Empty);
    }
    let mut cap = Capture::new(bytes).map_err(classify)?;
    if let Some(lt) = cap.pcap_linktype().filter(|&l| l != LINKTYPE_ETHERNET) {
        return Err(InputError::LinkType(lt));
    }
    let mut frames = Vec::new();
    let mut first: Option<u64> = None;
    while let Some(rec) = cap.next_record() {
        let rec = rec.map_err(classify)?;
        if rec.linktype != LINKTYPE_ETHERNET {
            return Err(InputError::LinkType(rec.linktype));
        }
        let t0 = *first.get_or_insert(rec.ts_nanos);
        // Captures are not always in time order (several writers, clock
        // steps): a frame stamped before the first one is taken as at 0.
        frames.push(TraceFrame {
            at: Instant::from_nanos(rec.ts_nanos.saturating_sub(t0)),
            data: rec.data.to_vec(),
        });
    }
    if frames.is_empty() {
        return Err(InputError::NoPackets);
    }
    // Time order, stable for equal stamps (replay feeds frames in order).
    frames.sort_by_key(|f| f.at);
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::{PcapWriter, TsResolution};
    use std::time::Duration;

    fn capture(frames: &[(u64, &[u8])]) -> Vec<u8> {
        let mut w = PcapWriter::new(Vec::new(), TsResolution::Nanos).unwrap();
        for (t, f) in frames {
            w.record_at(Duration::from_nanos(*t), f).unwrap();
        }
        w.into_inner().unwrap()
    }

    #[test]
    fn times_are_relative_to_the_first_frame() {
        let bytes = capture(&[(5_000, &[1; 20]), (7_500, &[2; 20])]);
        let t = read_trace(&bytes).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].at, Instant::ZERO);
        assert_eq!(t[1].at, Instant::from_nanos(2_500));
    }

    #[test]
    fn each_bad_input_has_its_own_error() {
        assert_eq!(read_trace(&[]), Err(InputError::Empty));
        assert!(matches!(
            read_trace(b"hello, world, this is no capture"),
            Err(InputError::Garbage(_))
        ));
        let good = capture(&[(0, &[1; 40])]);
        assert!(matches!(
            read_trace(&good[..good.len() - 3]),
            Err(InputError::Truncated(_))
        ));
        assert_eq!(read_trace(&capture(&[])), Err(InputError::NoPackets));
        let mut other = good.clone();
        other[20] = 101; // LINKTYPE_RAW
        assert_eq!(read_trace(&other), Err(InputError::LinkType(101)));
    }
}
