//! Capture of guest-facing frames to a file (`--pcap FILE`): the
//! workspace's one pcap writer ([`crate::pcap::PcapWriter`], microsecond
//! timestamps) over a buffered file, stamped with the wall clock.
//!
//! This is the backend: the engine never sees the wall clock. Writes are
//! buffered; [`PcapWriter::flush`] (also run on drop) pushes them to the
//! file. This module never interprets frames.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::pcap::TsResolution;
pub use crate::pcap::{LINKTYPE_ETHERNET, PCAP_MAGIC_MICROS, SNAPLEN};

/// A pcap file being written.
#[derive(Debug)]
pub struct PcapWriter {
    inner: crate::pcap::PcapWriter<BufWriter<File>>,
}

impl PcapWriter {
    /// Creates (truncating) `path` and writes the global header.
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = File::create(path)?;
        let out = BufWriter::with_capacity(256 * 1024, file);
        let inner = crate::pcap::PcapWriter::new(out, TsResolution::Micros)?;
        Ok(PcapWriter { inner })
    }

    /// Records `frame` now (wall clock).
    pub fn record(&mut self, frame: &[u8]) -> io::Result<()> {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        self.inner.record_at(since_epoch, frame)
    }

    /// Frames recorded so far.
    pub fn frames(&self) -> u64 {
        self.inner.frames()
    }

    /// Pushes buffered records to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Drop for PcapWriter {
    fn drop(&mut self) {
        let _ = self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_capture_reads_back_with_wall_clock_stamps() {
        let dir = std::env::temp_dir().join(format!("passt-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("capture.pcap");
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let mut w = PcapWriter::create(&path).unwrap();
        w.record(&[7; 60]).unwrap();
        w.record(&[8; 70]).unwrap();
        assert_eq!(w.frames(), 2);
        drop(w);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let mut r = pcap_file::pcap::PcapReader::new(&bytes[..]).unwrap();
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(p.data.len(), 60);
        assert!(p.timestamp.as_secs() + 1 >= before.as_secs(), "wall clock");
        assert_eq!(r.next_packet().unwrap().unwrap().data.len(), 70);
        assert!(r.next_packet().is_none());
    }
}
