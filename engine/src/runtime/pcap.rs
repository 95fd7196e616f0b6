//! Capture of guest-facing frames to a classic libpcap file (`-p FILE`).
//!
//! Format (the de-facto libpcap file format, as documented in pcap-savefile(5)
//! and draft-ietf-opsawg-pcap): a 24-byte global header with the
//! microsecond-resolution magic `0xa1b2c3d4` written in host byte order,
//! version 2.4, snaplen 65535 and link type 1 (`LINKTYPE_ETHERNET`); then per
//! frame a 16-byte record header (seconds, microseconds, captured length,
//! original length) and the frame bytes.
//!
//! Timestamps are wall-clock time (this is the backend: the engine never sees
//! it). Writes are buffered; [`PcapWriter::flush`] (also run on drop) pushes
//! them to the file. This module never interprets frames.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Magic number for microsecond timestamps.
pub const PCAP_MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// `LINKTYPE_ETHERNET`.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Largest frame length recorded whole.
pub const SNAPLEN: u32 = 65535;

/// A pcap writer over any byte sink (a buffered file by default).
#[derive(Debug)]
pub struct PcapWriter<W: Write = BufWriter<File>> {
    out: W,
    frames: u64,
}

impl PcapWriter<BufWriter<File>> {
    /// Creates (truncating) `path` and writes the global header.
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = File::create(path)?;
        PcapWriter::new(BufWriter::with_capacity(256 * 1024, file))
    }
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header to `out`.
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&PCAP_MAGIC_MICROS.to_ne_bytes());
        h[4..6].copy_from_slice(&2u16.to_ne_bytes());
        h[6..8].copy_from_slice(&4u16.to_ne_bytes());
        // thiszone (8..12) and sigfigs (12..16) stay zero.
        h[16..20].copy_from_slice(&SNAPLEN.to_ne_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out, frames: 0 })
    }

    /// Records `frame` now (wall clock).
    pub fn record(&mut self, frame: &[u8]) -> io::Result<()> {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        self.record_at(since_epoch, frame)
    }

    /// Records `frame` with a timestamp given as time since the Unix epoch.
    /// Frames longer than [`SNAPLEN`] are cut, keeping their original length
    /// in the record header.
    pub fn record_at(&mut self, since_epoch: Duration, frame: &[u8]) -> io::Result<()> {
        let caplen = frame.len().min(SNAPLEN as usize);
        let mut h = [0u8; 16];
        // The format's seconds field is 32 bits (wraps in 2106).
        h[0..4].copy_from_slice(&(since_epoch.as_secs() as u32).to_ne_bytes());
        h[4..8].copy_from_slice(&since_epoch.subsec_micros().to_ne_bytes());
        h[8..12].copy_from_slice(&(caplen as u32).to_ne_bytes());
        h[12..16].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&frame[..caplen])?;
        self.frames += 1;
        Ok(())
    }

    /// Frames recorded so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Pushes buffered records to the sink.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The sink, flushed.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        // `Drop` would flush again; take the sink out by a swap-free route.
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: `me` is never used or dropped again after this read.
        Ok(unsafe { std::ptr::read(&me.out) })
    }
}

impl<W: Write> Drop for PcapWriter<W> {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_records_layout() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.record_at(Duration::new(1_700_000_000, 123_456_789), &[0xaa; 60])
            .unwrap();
        let big = vec![0x55; 70_000];
        w.record_at(Duration::from_secs(5), &big).unwrap();
        assert_eq!(w.frames(), 2);
        let out = w.into_inner().unwrap();
        let u32_at = |i: usize| u32::from_ne_bytes(out[i..i + 4].try_into().unwrap());
        assert_eq!(u32_at(0), PCAP_MAGIC_MICROS);
        assert_eq!(u32_at(16), 65535);
        assert_eq!(u32_at(20), 1);
        assert_eq!(u32_at(24), 1_700_000_000);
        assert_eq!(u32_at(28), 123_456);
        assert_eq!(u32_at(32), 60);
        assert_eq!(u32_at(36), 60);
        let second = 24 + 16 + 60;
        assert_eq!(u32_at(second + 8), 65535, "cut to snaplen");
        assert_eq!(u32_at(second + 12), 70_000, "original length kept");
        assert_eq!(out.len(), second + 16 + 65535);
    }

    #[test]
    fn pcap_file_crate_reads_it_back() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let frames: Vec<Vec<u8>> = (0..5u8)
            .map(|i| vec![i; 14 + usize::from(i) * 100])
            .collect();
        for f in &frames {
            w.record(f).unwrap();
        }
        let bytes = w.into_inner().unwrap();
        let mut r = pcap_file::pcap::PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(
            r.header().datalink,
            pcap_file::DataLink::ETHERNET,
            "link type"
        );
        let mut got = Vec::new();
        while let Some(p) = r.next_packet() {
            got.push(p.unwrap().data.into_owned());
        }
        assert_eq!(got, frames);
    }
}
