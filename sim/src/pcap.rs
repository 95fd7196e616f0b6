//! Reading capture files, classic pcap (both byte orders, microsecond and
//! nanosecond timestamps) and pcapng (sections of either byte order,
//! interface descriptions with their timestamp resolution, enhanced,
//! simple and obsolete packet blocks), with the `pcap-file` crate's
//! slice parsers; and, for the simulator's own captures, the workspace's
//! one writer ([`passt_engine::pcap::PcapWriter`], re-exported here).
//!
//! # What this module owns
//!
//! Turning the bytes of a capture into [`Record`]s with nanosecond
//! timestamps and link types, and every reading failure into a
//! [`PcapError`] that names the byte offset.
//!
//! # What it must never do
//!
//! Panic or allocate by a length read from the file: captures are
//! untrusted input. Reading stops at the first error; records read before
//! it are kept by the caller. It never interprets the frames.

use std::borrow::Cow;

use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgParser};

pub use passt_engine::pcap::{LINKTYPE_ETHERNET, PcapWriter, TsResolution};

/// Why a capture could not be read (further).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcapError {
    /// Not a pcap or pcapng file.
    #[error("not a pcap or pcapng file (magic {0:#010x})")]
    BadMagic(u32),
    /// The file ends inside a header or record.
    #[error("truncated at byte {offset}")]
    Truncated {
        /// Where the incomplete structure starts.
        offset: usize,
    },
    /// A header or block is malformed.
    #[error("malformed at byte {offset}: {what}")]
    Malformed {
        /// Where the structure starts.
        offset: usize,
        /// What is wrong, as the parser says it.
        what: String,
    },
    /// A packet names an interface that was never described.
    #[error("packet at byte {offset} refers to unknown interface {interface}")]
    UnknownInterface {
        /// Where the block starts.
        offset: usize,
        /// The interface id.
        interface: u32,
    },
}

impl PcapError {
    fn from_parser(offset: usize, e: pcap_file::PcapError) -> PcapError {
        match e {
            pcap_file::PcapError::IncompleteBuffer => PcapError::Truncated { offset },
            pcap_file::PcapError::InvalidInterfaceId(interface) => {
                PcapError::UnknownInterface { offset, interface }
            }
            other => PcapError::Malformed {
                offset,
                what: other.to_string(),
            },
        }
    }
}

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Timestamp in nanoseconds since the Unix epoch (as recorded).
    pub ts_nanos: u64,
    /// Link type of the interface it was captured on.
    pub linktype: u32,
    /// Captured bytes (possibly shorter than on the wire).
    pub data: &'a [u8],
    /// Length on the wire.
    pub orig_len: u32,
}

/// A capture file in memory, read record by record.
pub struct Capture<'a> {
    bytes: &'a [u8],
    rest: &'a [u8],
    kind: Kind,
    failed: bool,
}

impl std::fmt::Debug for Capture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("offset", &self.offset())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

enum Kind {
    Pcap(PcapParser),
    PcapNg(Box<PcapNgParser>),
}

/// Block type of a pcapng section header (a palindrome: the same in
/// either byte order).
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;

/// A slice of the input, or an error if the parser copied it (the slice
/// parsers never do).
fn borrowed<'a>(data: Cow<'a, [u8]>, offset: usize) -> Result<&'a [u8], PcapError> {
    match data {
        Cow::Borrowed(d) => Ok(d),
        Cow::Owned(_) => Err(PcapError::Malformed {
            offset,
            what: "packet data copied by the parser".into(),
        }),
    }
}

impl<'a> Capture<'a> {
    /// Recognises the format from the file header.
    pub fn new(bytes: &'a [u8]) -> Result<Self, PcapError> {
        let Some(magic) = bytes.get(..4) else {
            return Err(PcapError::Truncated { offset: 0 });
        };
        let magic = u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]);
        let (kind, rest) = match magic {
            0xa1b2_c3d4 | 0xa1b2_3c4d | 0xd4c3_b2a1 | 0x4d3c_b2a1 => {
                let (rest, p) = PcapParser::new(bytes).map_err(|e| PcapError::from_parser(0, e))?;
                (Kind::Pcap(p), rest)
            }
            PCAPNG_SHB => {
                let (rest, p) =
                    PcapNgParser::new(bytes).map_err(|e| PcapError::from_parser(0, e))?;
                (Kind::PcapNg(Box::new(p)), rest)
            }
            other => return Err(PcapError::BadMagic(other)),
        };
        Ok(Capture {
            bytes,
            rest,
            kind,
            failed: false,
        })
    }

    /// Link type of a classic pcap file (`None` for pcapng, where each
    /// interface has its own).
    pub fn pcap_linktype(&self) -> Option<u32> {
        match &self.kind {
            Kind::Pcap(p) => Some(linktype_of(p.header().datalink)),
            Kind::PcapNg(_) => None,
        }
    }

    fn offset(&self) -> usize {
        self.bytes.len() - self.rest.len()
    }

    /// The next record, `None` at the clean end of the file.
    pub fn next_record(&mut self) -> Option<Result<Record<'a>, PcapError>> {
        if self.failed {
            return None;
        }
        let r = match self.kind {
            Kind::Pcap(_) => self.next_pcap(),
            Kind::PcapNg(_) => self.next_pcapng(),
        };
        if matches!(r, Some(Err(_))) {
            self.failed = true;
        }
        r
    }

    fn next_pcap(&mut self) -> Option<Result<Record<'a>, PcapError>> {
        let Kind::Pcap(p) = &self.kind else {
            return None;
        };
        if self.rest.is_empty() {
            return None;
        }
        let offset = self.offset();
        let header = p.header();
        // The raw record: lengths beyond the snap length still read (some
        // writers get the header wrong); only what is there is used.
        let (rest, raw) = match p.next_raw_packet(self.rest) {
            Ok(x) => x,
            Err(e) => return Some(Err(PcapError::from_parser(offset, e))),
        };
        self.rest = rest;
        let frac = u64::from(raw.ts_frac);
        let frac_nanos = match header.ts_resolution {
            pcap_file::TsResolution::MicroSecond => frac.saturating_mul(1000),
            pcap_file::TsResolution::NanoSecond => frac,
        };
        let ts_nanos = u64::from(raw.ts_sec)
            .saturating_mul(1_000_000_000)
            .saturating_add(frac_nanos);
        let orig_len = raw.orig_len;
        Some(borrowed(raw.data, offset).map(|data| Record {
            ts_nanos,
            linktype: linktype_of(header.datalink),
            data,
            orig_len,
        }))
    }

    fn next_pcapng(&mut self) -> Option<Result<Record<'a>, PcapError>> {
        loop {
            let Kind::PcapNg(p) = &mut self.kind else {
                return None;
            };
            if self.rest.is_empty() {
                return None;
            }
            let offset = self.bytes.len() - self.rest.len();
            let (rest, block) = match p.next_block(self.rest) {
                Ok(x) => x,
                Err(e) => return Some(Err(PcapError::from_parser(offset, e))),
            };
            self.rest = rest;
            let (interface, ticks, data, orig_len) = match block {
                Block::EnhancedPacket(b) => (
                    b.interface_id,
                    Some(b.timestamp.as_nanos() as u64),
                    b.data,
                    b.original_len,
                ),
                Block::Packet(b) => (
                    u32::from(b.interface_id),
                    Some(b.timestamp),
                    b.data,
                    b.original_len,
                ),
                Block::SimplePacket(b) => (0, None, b.data, b.original_len),
                _ => continue, // headers, statistics, name resolution, custom...
            };
            let Some(idb) = p.interfaces().get(interface as usize) else {
                return Some(Err(PcapError::UnknownInterface { offset, interface }));
            };
            let linktype = u32::from(idb.linktype);
            let ts_nanos = ticks.map_or(0, |t| {
                let (units, offset_secs) = interface_clock(&idb.options);
                let ns = if units == 0 {
                    0
                } else {
                    (u128::from(t) * 1_000_000_000 / u128::from(units)) as u64
                };
                ns.saturating_add(offset_secs.saturating_mul(1_000_000_000))
            });
            return Some(borrowed(data, offset).map(|data| Record {
                ts_nanos,
                linktype,
                data,
                orig_len,
            }));
        }
    }
}

/// The link type proper: the low 28 bits of a pcap header's field (the
/// upper bits say whether frames carry an FCS, pcap-savefile(5)).
fn linktype_of(d: pcap_file::DataLink) -> u32 {
    u32::from(d) & 0x0fff_ffff
}

/// Timestamp units per second (`if_tsresol`, default microseconds) and
/// offset in seconds (`if_tsoffset`) of an interface (pcapng §4.2).
fn interface_clock(options: &[InterfaceDescriptionOption<'_>]) -> (u64, u64) {
    let mut units = 1_000_000;
    let mut offset = 0;
    for o in options {
        match o {
            InterfaceDescriptionOption::IfTsResol(v) => {
                let exp = u32::from(v & 0x7f);
                let base: u64 = if v & 0x80 == 0 { 10 } else { 2 };
                units = base.checked_pow(exp).unwrap_or(0);
            }
            InterfaceDescriptionOption::IfTsOffset(s) => offset = *s,
            _ => {}
        }
    }
    (units, offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
    const PCAPNG_IDB: u32 = 1;
    const PCAPNG_EPB: u32 = 6;
    const PCAPNG_BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

    fn sample() -> Vec<u8> {
        let mut w = PcapWriter::new(Vec::new(), TsResolution::Nanos).unwrap();
        w.record_at(Duration::from_nanos(1_500_000_000), &[1, 2, 3])
            .unwrap();
        w.record_at(Duration::from_nanos(2_000_000_001), &[4; 70])
            .unwrap();
        w.into_inner().unwrap()
    }

    #[test]
    fn pcap_round_trip() {
        let bytes = sample();
        let mut c = Capture::new(&bytes).unwrap();
        let r = c.next_record().unwrap().unwrap();
        assert_eq!(
            (r.ts_nanos, r.data, r.linktype),
            (1_500_000_000, &[1u8, 2, 3][..], 1)
        );
        let r = c.next_record().unwrap().unwrap();
        assert_eq!(
            (r.ts_nanos, r.data.len(), r.orig_len),
            (2_000_000_001, 70, 70)
        );
        assert!(c.next_record().is_none());
    }

    #[test]
    fn truncated_pcap_is_an_error_after_good_records() {
        let bytes = sample();
        let cut = &bytes[..bytes.len() - 5];
        let mut c = Capture::new(cut).unwrap();
        assert!(c.next_record().unwrap().is_ok());
        assert_eq!(
            c.next_record().unwrap(),
            Err(PcapError::Truncated { offset: 43 })
        );
        assert!(c.next_record().is_none(), "stops after an error");
        assert!(matches!(
            Capture::new(&bytes[..10]),
            Err(PcapError::Truncated { .. })
        ));
        assert!(matches!(
            Capture::new(b"GIF89a.."),
            Err(PcapError::BadMagic(_))
        ));
    }

    fn pcapng_sample(big: bool) -> Vec<u8> {
        let w32 = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let w16 = |v: u16| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut f = Vec::new();
        // SHB (block type is a palindrome)
        f.extend_from_slice(&PCAPNG_SHB.to_le_bytes());
        f.extend_from_slice(&w32(28));
        f.extend_from_slice(&w32(PCAPNG_BYTE_ORDER_MAGIC));
        f.extend_from_slice(&w16(1));
        f.extend_from_slice(&w16(0));
        f.extend_from_slice(&[0xff; 8]);
        f.extend_from_slice(&w32(28));
        // IDB with if_tsresol = 9 (ns)
        f.extend_from_slice(&w32(PCAPNG_IDB));
        f.extend_from_slice(&w32(32));
        f.extend_from_slice(&w16(1));
        f.extend_from_slice(&w16(0));
        f.extend_from_slice(&w32(65535));
        f.extend_from_slice(&w16(9));
        f.extend_from_slice(&w16(1));
        f.extend_from_slice(&[9, 0, 0, 0]);
        f.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
        f.extend_from_slice(&w32(32));
        // EPB with 5 bytes of data
        f.extend_from_slice(&w32(PCAPNG_EPB));
        f.extend_from_slice(&w32(40));
        f.extend_from_slice(&w32(0));
        f.extend_from_slice(&w32(0));
        f.extend_from_slice(&w32(1_000));
        f.extend_from_slice(&w32(5));
        f.extend_from_slice(&w32(60));
        f.extend_from_slice(&[9, 8, 7, 6, 5, 0, 0, 0]);
        f.extend_from_slice(&w32(40));
        f
    }

    #[test]
    fn pcapng_both_byte_orders() {
        for big in [false, true] {
            let bytes = pcapng_sample(big);
            let mut c = Capture::new(&bytes).unwrap();
            let r = c.next_record().unwrap().unwrap();
            assert_eq!(r.data, &[9, 8, 7, 6, 5]);
            assert_eq!(r.ts_nanos, 1_000);
            assert_eq!(r.orig_len, 60);
            assert!(c.next_record().is_none());
        }
    }

    #[test]
    fn pcapng_packet_before_interface_is_an_error() {
        let mut bytes = pcapng_sample(false);
        bytes.drain(28..60); // remove the IDB
        let mut c = Capture::new(&bytes).unwrap();
        assert!(matches!(
            c.next_record(),
            Some(Err(PcapError::UnknownInterface { interface: 0, .. }))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_and_mutated_captures_never_panic(
            junk in proptest::collection::vec(any::<u8>(), 0..200),
            flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..8),
            cut in 0usize..200,
        ) {
            for base in [sample(), pcapng_sample(false), pcapng_sample(true), junk.clone()] {
                let mut b = base.clone();
                for (i, v) in &flips {
                    if let Some(x) = b.get_mut(*i) { *x ^= *v; }
                }
                b.truncate(cut.max(1).min(b.len()));
                if let Ok(mut c) = Capture::new(&b) {
                    let mut n = 0;
                    while let Some(r) = c.next_record() {
                        n += 1;
                        if r.is_err() || n > 1000 { break; }
                    }
                }
            }
        }
    }
}
