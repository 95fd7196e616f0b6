//! Reading and writing capture files: classic pcap (both byte orders,
//! microsecond and nanosecond timestamps) and pcapng (section headers of
//! either byte order, interface descriptions, enhanced/simple/obsolete
//! packet blocks).
//!
//! Captures are untrusted input: every length is checked against what is
//! left, and a malformed or truncated file yields a [`PcapError`] naming
//! the byte offset, never a panic. Reading stops at the first error;
//! records read before it are kept by the caller.
//!
//! The format descriptions followed are the libpcap file format
//! (pcap-savefile(5)) and draft-ietf-opsawg-pcapng.

use std::io::Write;

/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// Why a capture could not be read (further).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcapError {
    /// Not a pcap or pcapng file.
    #[error("not a pcap or pcapng file (magic {0:#010x})")]
    BadMagic(u32),
    /// The file ends inside a header or record.
    #[error("truncated at byte {offset}: need {need} more bytes")]
    Truncated {
        /// Where the incomplete structure starts.
        offset: usize,
        /// How many bytes it needs beyond the end.
        need: usize,
    },
    /// A length field is impossible.
    #[error("bad length {len} at byte {offset}")]
    BadLength {
        /// Where the structure starts.
        offset: usize,
        /// The length it claims.
        len: u64,
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
#[derive(Debug)]
pub struct Capture<'a> {
    bytes: &'a [u8],
    pos: usize,
    kind: Kind,
    failed: bool,
}

#[derive(Debug)]
enum Kind {
    Pcap {
        big_endian: bool,
        nanos: bool,
        linktype: u32,
    },
    PcapNg {
        big_endian: bool,
        /// (linktype, timestamp units per second) per interface id.
        interfaces: Vec<(u32, u64)>,
    },
}

fn rd_u32(b: &[u8], at: usize, big: bool) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if big {
        u32::from_be_bytes(s)
    } else {
        u32::from_le_bytes(s)
    })
}

fn rd_u16(b: &[u8], at: usize, big: bool) -> Option<u16> {
    let s: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(if big {
        u16::from_be_bytes(s)
    } else {
        u16::from_le_bytes(s)
    })
}

const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_OPB: u32 = 2;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_EPB: u32 = 6;
const PCAPNG_BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

impl<'a> Capture<'a> {
    /// Recognises the format from the file header.
    pub fn new(bytes: &'a [u8]) -> Result<Self, PcapError> {
        let magic = rd_u32(bytes, 0, false).ok_or(PcapError::Truncated {
            offset: 0,
            need: 4usize.saturating_sub(bytes.len()),
        })?;
        let (kind, pos) = match magic {
            0xa1b2_c3d4 | 0xa1b2_3c4d | 0xd4c3_b2a1 | 0x4d3c_b2a1 => {
                if bytes.len() < 24 {
                    return Err(PcapError::Truncated {
                        offset: 0,
                        need: 24 - bytes.len(),
                    });
                }
                let big_endian = matches!(magic, 0xd4c3_b2a1 | 0x4d3c_b2a1);
                let nanos = matches!(magic, 0xa1b2_3c4d | 0x4d3c_b2a1);
                let linktype = rd_u32(bytes, 20, big_endian).unwrap_or(0) & 0x0fff_ffff;
                (
                    Kind::Pcap {
                        big_endian,
                        nanos,
                        linktype,
                    },
                    24,
                )
            }
            PCAPNG_SHB => (
                Kind::PcapNg {
                    big_endian: false,
                    interfaces: Vec::new(),
                },
                0,
            ),
            other => return Err(PcapError::BadMagic(other)),
        };
        Ok(Capture {
            bytes,
            pos,
            kind,
            failed: false,
        })
    }

    /// The next record, `None` at the clean end of the file.
    pub fn next_record(&mut self) -> Option<Result<Record<'a>, PcapError>> {
        if self.failed {
            return None;
        }
        let r = match self.kind {
            Kind::Pcap { .. } => self.next_pcap(),
            Kind::PcapNg { .. } => self.next_pcapng(),
        };
        if matches!(r, Some(Err(_))) {
            self.failed = true;
        }
        r
    }

    fn next_pcap(&mut self) -> Option<Result<Record<'a>, PcapError>> {
        let Kind::Pcap {
            big_endian,
            nanos,
            linktype,
        } = self.kind
        else {
            return None;
        };
        let b = self.bytes;
        let at = self.pos;
        if at == b.len() {
            return None;
        }
        if b.len() - at < 16 {
            return Some(Err(PcapError::Truncated {
                offset: at,
                need: 16 - (b.len() - at),
            }));
        }
        let secs = u64::from(rd_u32(b, at, big_endian)?);
        let frac = u64::from(rd_u32(b, at + 4, big_endian)?);
        let incl = rd_u32(b, at + 8, big_endian)?;
        let orig_len = rd_u32(b, at + 12, big_endian)?;
        if incl > 0x0400_0000 {
            return Some(Err(PcapError::BadLength {
                offset: at,
                len: u64::from(incl),
            }));
        }
        let start = at + 16;
        let end = start + incl as usize;
        if end > b.len() {
            return Some(Err(PcapError::Truncated {
                offset: at,
                need: end - b.len(),
            }));
        }
        self.pos = end;
        let ts_nanos = secs.saturating_mul(1_000_000_000).saturating_add(if nanos {
            frac
        } else {
            frac.saturating_mul(1000)
        });
        Some(Ok(Record {
            ts_nanos,
            linktype,
            data: &b[start..end],
            orig_len,
        }))
    }

    fn next_pcapng(&mut self) -> Option<Result<Record<'a>, PcapError>> {
        loop {
            let b = self.bytes;
            let at = self.pos;
            if at == b.len() {
                return None;
            }
            if b.len() - at < 12 {
                return Some(Err(PcapError::Truncated {
                    offset: at,
                    need: 12 - (b.len() - at),
                }));
            }
            let block_type_le = rd_u32(b, at, false)?;
            if block_type_le == PCAPNG_SHB {
                // A new section: its byte-order magic sets the endianness.
                let magic = rd_u32(b, at + 8, false)?;
                let big = match magic {
                    PCAPNG_BYTE_ORDER_MAGIC => false,
                    0x4d3c_2b1a => true,
                    _ => {
                        return Some(Err(PcapError::BadMagic(magic)));
                    }
                };
                if let Kind::PcapNg {
                    big_endian,
                    interfaces,
                } = &mut self.kind
                {
                    *big_endian = big;
                    interfaces.clear();
                }
            }
            let Kind::PcapNg { big_endian, .. } = self.kind else {
                return None;
            };
            let block_type = rd_u32(b, at, big_endian)?;
            let total = rd_u32(b, at + 4, big_endian)? as usize;
            if total < 12 || total % 4 != 0 {
                return Some(Err(PcapError::BadLength {
                    offset: at,
                    len: total as u64,
                }));
            }
            if total > b.len() - at {
                return Some(Err(PcapError::Truncated {
                    offset: at,
                    need: total - (b.len() - at),
                }));
            }
            let body = &b[at + 8..at + total - 4];
            self.pos = at + total;
            match block_type {
                PCAPNG_IDB => {
                    let Some(linktype) = rd_u16(body, 0, big_endian) else {
                        return Some(Err(PcapError::Truncated {
                            offset: at,
                            need: 2,
                        }));
                    };
                    let units = if_tsresol(body, big_endian);
                    if let Kind::PcapNg { interfaces, .. } = &mut self.kind {
                        interfaces.push((u32::from(linktype), units));
                    }
                }
                PCAPNG_EPB | PCAPNG_OPB => {
                    if body.len() < 20 {
                        return Some(Err(PcapError::Truncated {
                            offset: at,
                            need: 20 - body.len(),
                        }));
                    }
                    let interface = if block_type == PCAPNG_EPB {
                        rd_u32(body, 0, big_endian)?
                    } else {
                        u32::from(rd_u16(body, 0, big_endian)?)
                    };
                    let ts_hi = u64::from(rd_u32(body, 4, big_endian)?);
                    let ts_lo = u64::from(rd_u32(body, 8, big_endian)?);
                    let captured = rd_u32(body, 12, big_endian)? as usize;
                    let orig_len = rd_u32(body, 16, big_endian)?;
                    if captured > body.len() - 20 {
                        return Some(Err(PcapError::BadLength {
                            offset: at,
                            len: captured as u64,
                        }));
                    }
                    let Some(&(linktype, units)) = self.interface(interface) else {
                        return Some(Err(PcapError::UnknownInterface {
                            offset: at,
                            interface,
                        }));
                    };
                    let ticks = (ts_hi << 32) | ts_lo;
                    let ts_nanos = if units == 0 {
                        0
                    } else {
                        ((u128::from(ticks) * 1_000_000_000) / u128::from(units)) as u64
                    };
                    return Some(Ok(Record {
                        ts_nanos,
                        linktype,
                        data: &body[20..20 + captured],
                        orig_len,
                    }));
                }
                PCAPNG_SPB => {
                    let Some(orig_len) = rd_u32(body, 0, big_endian) else {
                        return Some(Err(PcapError::Truncated {
                            offset: at,
                            need: 4,
                        }));
                    };
                    let Some(&(linktype, _)) = self.interface(0) else {
                        return Some(Err(PcapError::UnknownInterface {
                            offset: at,
                            interface: 0,
                        }));
                    };
                    let captured = (orig_len as usize).min(body.len() - 4);
                    return Some(Ok(Record {
                        ts_nanos: 0,
                        linktype,
                        data: &body[4..4 + captured],
                        orig_len,
                    }));
                }
                _ => {} // section header, statistics, name resolution, custom...
            }
        }
    }

    fn interface(&self, id: u32) -> Option<&(u32, u64)> {
        match &self.kind {
            Kind::PcapNg { interfaces, .. } => interfaces.get(id as usize),
            Kind::Pcap { .. } => None,
        }
    }
}

/// Timestamp units per second of an interface description block's
/// `if_tsresol` option (code 9), default microseconds.
fn if_tsresol(body: &[u8], big: bool) -> u64 {
    let mut at = 8; // linktype, reserved, snaplen
    while let (Some(code), Some(len)) = (rd_u16(body, at, big), rd_u16(body, at + 2, big)) {
        let len = usize::from(len);
        if code == 0 {
            break;
        }
        if code == 9 && len >= 1 {
            if let Some(&v) = body.get(at + 4) {
                let exp = u32::from(v & 0x7f);
                let base: u64 = if v & 0x80 == 0 { 10 } else { 2 };
                return base.checked_pow(exp).unwrap_or(0);
            }
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    1_000_000
}

/// Writes a classic pcap file (nanosecond timestamps, Ethernet link type).
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header.
    pub fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(&0xa1b2_3c4du32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        out.write_all(&65535u32.to_le_bytes())?;
        out.write_all(&LINKTYPE_ETHERNET.to_le_bytes())?;
        Ok(PcapWriter { out })
    }

    /// Appends one frame captured at `ts_nanos`.
    pub fn write(&mut self, ts_nanos: u64, frame: &[u8]) -> std::io::Result<()> {
        let secs = (ts_nanos / 1_000_000_000) as u32;
        let nanos = (ts_nanos % 1_000_000_000) as u32;
        let len = frame.len().min(65535) as u32;
        self.out.write_all(&secs.to_le_bytes())?;
        self.out.write_all(&nanos.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&(frame.len() as u32).to_le_bytes())?;
        self.out.write_all(&frame[..len as usize])
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(1_500_000_000, &[1, 2, 3]).unwrap();
        w.write(2_000_000_001, &[4; 70]).unwrap();
        w.finish().unwrap()
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
            Err(PcapError::Truncated {
                offset: 43,
                need: 5
            })
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
