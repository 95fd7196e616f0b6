//! The one pcap writer of the workspace: classic libpcap files
//! (pcap-savefile(5), draft-ietf-opsawg-pcap) written to any
//! [`io::Write`].
//!
//! # What this module owns
//!
//! The file layout: a 24-byte global header (magic for microsecond or
//! nanosecond timestamps, version 2.4, snaplen 65535, link type 1
//! `LINKTYPE_ETHERNET`), then per frame a 16-byte record header (seconds,
//! fraction, captured length, original length) and the frame bytes. Every
//! field is little-endian whatever the machine, so the same frames and
//! timestamps give the same bytes everywhere (the simulator compares
//! captures byte for byte).
//!
//! # What it must never do
//!
//! Read a clock, open files, or make any other syscall: the caller hands in
//! the timestamp and the sink (the backend's `--pcap` file stamps wall-clock
//! time, the simulator virtual time). It never interprets frames.

use std::io::{self, Write};
use std::time::Duration;

/// Magic number for microsecond timestamps.
pub const PCAP_MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// Magic number for nanosecond timestamps.
pub const PCAP_MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// `LINKTYPE_ETHERNET`.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Largest frame length recorded whole.
pub const SNAPLEN: u32 = 65535;

/// Resolution of the record timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsResolution {
    /// Microseconds (what libpcap writes by default; passt's `--pcap`).
    Micros,
    /// Nanoseconds (the simulator's virtual clock).
    Nanos,
}

/// A pcap writer over any byte sink.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    resolution: TsResolution,
    frames: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header to `out`.
    pub fn new(mut out: W, resolution: TsResolution) -> io::Result<Self> {
        let magic = match resolution {
            TsResolution::Micros => PCAP_MAGIC_MICROS,
            TsResolution::Nanos => PCAP_MAGIC_NANOS,
        };
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&magic.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone (8..12) and sigfigs (12..16) stay zero.
        h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter {
            out,
            resolution,
            frames: 0,
        })
    }

    /// Records `frame` with its timestamp given as time since the Unix
    /// epoch (or since the start of a virtual run). Frames longer than
    /// [`SNAPLEN`] are cut, keeping their original length in the record
    /// header.
    pub fn record_at(&mut self, since_epoch: Duration, frame: &[u8]) -> io::Result<()> {
        let caplen = frame.len().min(SNAPLEN as usize);
        let frac = match self.resolution {
            TsResolution::Micros => since_epoch.subsec_micros(),
            TsResolution::Nanos => since_epoch.subsec_nanos(),
        };
        let mut h = [0u8; 16];
        // The format's seconds field is 32 bits (wraps in 2106).
        h[0..4].copy_from_slice(&(since_epoch.as_secs() as u32).to_le_bytes());
        h[4..8].copy_from_slice(&frac.to_le_bytes());
        h[8..12].copy_from_slice(&(caplen as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
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
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(out: &[u8], i: usize) -> u32 {
        u32::from_le_bytes(out[i..i + 4].try_into().unwrap())
    }

    #[test]
    fn header_and_records_layout() {
        let mut w = PcapWriter::new(Vec::new(), TsResolution::Micros).unwrap();
        w.record_at(Duration::new(1_700_000_000, 123_456_789), &[0xaa; 60])
            .unwrap();
        let big = vec![0x55; 70_000];
        w.record_at(Duration::from_secs(5), &big).unwrap();
        assert_eq!(w.frames(), 2);
        let out = w.into_inner().unwrap();
        assert_eq!(u32_at(&out, 0), PCAP_MAGIC_MICROS);
        assert_eq!(u32_at(&out, 16), 65535);
        assert_eq!(u32_at(&out, 20), 1);
        assert_eq!(u32_at(&out, 24), 1_700_000_000);
        assert_eq!(u32_at(&out, 28), 123_456);
        assert_eq!(u32_at(&out, 32), 60);
        assert_eq!(u32_at(&out, 36), 60);
        let second = 24 + 16 + 60;
        assert_eq!(u32_at(&out, second + 8), 65535, "cut to snaplen");
        assert_eq!(u32_at(&out, second + 12), 70_000, "original length kept");
        assert_eq!(out.len(), second + 16 + 65535);
    }

    #[test]
    fn nanosecond_captures_keep_the_nanoseconds() {
        let mut w = PcapWriter::new(Vec::new(), TsResolution::Nanos).unwrap();
        w.record_at(Duration::new(2, 1), &[1, 2, 3]).unwrap();
        let out = w.into_inner().unwrap();
        assert_eq!(u32_at(&out, 0), PCAP_MAGIC_NANOS);
        assert_eq!((u32_at(&out, 24), u32_at(&out, 28)), (2, 1));
    }

    #[test]
    fn pcap_file_crate_reads_it_back() {
        for res in [TsResolution::Micros, TsResolution::Nanos] {
            let mut w = PcapWriter::new(Vec::new(), res).unwrap();
            let frames: Vec<Vec<u8>> = (0..5u8)
                .map(|i| vec![i; 14 + usize::from(i) * 100])
                .collect();
            for (i, f) in frames.iter().enumerate() {
                w.record_at(Duration::new(i as u64, 5_000), f).unwrap();
            }
            let bytes = w.into_inner().unwrap();
            let mut r = pcap_file::pcap::PcapReader::new(&bytes[..]).unwrap();
            assert_eq!(r.header().datalink, pcap_file::DataLink::ETHERNET);
            let mut got = Vec::new();
            while let Some(p) = r.next_packet() {
                let p = p.unwrap();
                assert_eq!(p.timestamp.subsec_nanos(), 5_000);
                got.push(p.data.into_owned());
            }
            assert_eq!(got, frames);
        }
    }
}
