//! TCP header and options (RFC 9293 §3.1; options from RFC 9293 §3.2,
//! RFC 7323 window scale and timestamps, RFC 2018 SACK).
//!
//! Owns the header, its options and the checksum with its pseudo-header.
//! Options are parsed into fixed fields (up to four SACK blocks in an
//! array): parsing and emitting never allocate. Unknown options are skipped
//! by their length; impossible lengths are [`WireError::Malformed`]. It
//! never judges sequence numbers or state: that is the TCP module's job.

use super::WireError;
use super::checksum::PseudoHeader;
use super::ipv4::protocol;
use core::fmt;

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// Most bytes of options a header can carry (data offset 15).
pub const MAX_OPTIONS_LEN: usize = 40;
/// Most SACK blocks kept (four fit in the option space, RFC 2018 §3).
pub const MAX_SACK_BLOCKS: usize = 4;

/// Option kinds (IANA "TCP Option Kind Numbers").
pub mod option_kind {
    /// End of option list.
    pub const EOL: u8 = 0;
    /// No operation.
    pub const NOP: u8 = 1;
    /// Maximum segment size (RFC 9293 §3.2).
    pub const MSS: u8 = 2;
    /// Window scale (RFC 7323 §2).
    pub const WINDOW_SCALE: u8 = 3;
    /// SACK permitted (RFC 2018 §2).
    pub const SACK_PERMITTED: u8 = 4;
    /// SACK (RFC 2018 §3).
    pub const SACK: u8 = 5;
    /// Timestamps (RFC 7323 §3).
    pub const TIMESTAMPS: u8 = 8;
}

/// The TCP control bits (RFC 9293 §3.1; ECE and CWR from RFC 3168).
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// Acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// Urgent pointer is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN echo.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(0x80);
    /// No flag.
    pub const NONE: TcpFlags = TcpFlags(0);

    /// Every flag of `other` is set in `self`.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// `self` with the flags of `other` added.
    pub const fn with(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | other.0)
    }
    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(TcpFlags, &str); 8] = [
            (TcpFlags::FIN, "FIN"),
            (TcpFlags::SYN, "SYN"),
            (TcpFlags::RST, "RST"),
            (TcpFlags::PSH, "PSH"),
            (TcpFlags::ACK, "ACK"),
            (TcpFlags::URG, "URG"),
            (TcpFlags::ECE, "ECE"),
            (TcpFlags::CWR, "CWR"),
        ];
        let mut first = true;
        for (flag, name) in NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// A SACK block: `[left, right)` in sequence space (RFC 2018 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SackBlock {
    /// First sequence number of the block.
    pub left: u32,
    /// Sequence number just past the block.
    pub right: u32,
}

/// The options of a segment, as fixed fields. Equality ignores SACK
/// blocks past `sack_count`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpOptions {
    /// Maximum segment size.
    pub mss: Option<u16>,
    /// Window scale shift count, as sent (receivers clamp to 14, RFC 7323
    /// §2.3).
    pub window_scale: Option<u8>,
    /// SACK permitted.
    pub sack_permitted: bool,
    /// Timestamps: (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
    /// SACK blocks; the first `sack_count` are meaningful.
    pub sack_blocks: [SackBlock; MAX_SACK_BLOCKS],
    /// Number of SACK blocks present (0..=4).
    pub sack_count: u8,
}

impl PartialEq for TcpOptions {
    fn eq(&self, other: &Self) -> bool {
        self.mss == other.mss
            && self.window_scale == other.window_scale
            && self.sack_permitted == other.sack_permitted
            && self.timestamps == other.timestamps
            && self.sack() == other.sack()
    }
}
impl Eq for TcpOptions {}

impl TcpOptions {
    /// The meaningful SACK blocks.
    pub fn sack(&self) -> &[SackBlock] {
        &self.sack_blocks[..usize::from(self.sack_count.min(MAX_SACK_BLOCKS as u8))]
    }

    /// Parses the option area (RFC 9293 §3.2: kinds 0 and 1 are single
    /// bytes, every other option is kind, length, data).
    pub fn parse(mut area: &[u8]) -> Result<TcpOptions, WireError> {
        let mut o = TcpOptions::default();
        while let Some((&kind, rest)) = area.split_first() {
            match kind {
                option_kind::EOL => break,
                option_kind::NOP => {
                    area = rest;
                    continue;
                }
                _ => {}
            }
            let len = usize::from(*rest.first().ok_or(WireError::Malformed)?);
            if len < 2 || len > area.len() {
                return Err(WireError::Malformed);
            }
            let data = &area[2..len];
            match kind {
                option_kind::MSS => {
                    let [a, b] = data else {
                        return Err(WireError::Malformed);
                    };
                    o.mss = Some(u16::from_be_bytes([*a, *b]));
                }
                option_kind::WINDOW_SCALE => {
                    let [s] = data else {
                        return Err(WireError::Malformed);
                    };
                    o.window_scale = Some(*s);
                }
                option_kind::SACK_PERMITTED => {
                    if !data.is_empty() {
                        return Err(WireError::Malformed);
                    }
                    o.sack_permitted = true;
                }
                option_kind::TIMESTAMPS => {
                    if data.len() != 8 {
                        return Err(WireError::Malformed);
                    }
                    o.timestamps = Some((be32(&data[0..4]), be32(&data[4..8])));
                }
                option_kind::SACK => {
                    let n = data.len() / 8;
                    if data.len() % 8 != 0 || n == 0 || n > MAX_SACK_BLOCKS {
                        return Err(WireError::Malformed);
                    }
                    for (i, block) in data.chunks_exact(8).enumerate() {
                        o.sack_blocks[i] = SackBlock {
                            left: be32(&block[0..4]),
                            right: be32(&block[4..8]),
                        };
                    }
                    o.sack_count = n as u8;
                }
                _ => {} // Unknown: skipped by its length.
            }
            area = &area[len..];
        }
        Ok(o)
    }

    /// Bytes [`TcpOptions::emit`] writes, a multiple of 4.
    pub fn emitted_len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        // SACK-permitted and timestamps share one 12-byte block when both
        // are present (the common SYN layout), otherwise each is padded
        // with NOPs to a word.
        match (self.sack_permitted, self.timestamps.is_some()) {
            (true, true) => n += 12,
            (true, false) => n += 4,
            (false, true) => n += 12,
            (false, false) => {}
        }
        if self.window_scale.is_some() {
            n += 4;
        }
        if !self.sack().is_empty() {
            n += 4 + 8 * self.sack().len();
        }
        n
    }

    /// Writes the options into `buf` (exactly [`TcpOptions::emitted_len`]
    /// bytes), NOP-padded to 4-byte words.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let len = self.emitted_len();
        if len > MAX_OPTIONS_LEN {
            return Err(WireError::Malformed);
        }
        let b = buf.get_mut(..len).ok_or(WireError::Truncated)?;
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            b[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        if let Some(mss) = self.mss {
            let m = mss.to_be_bytes();
            put(&[option_kind::MSS, 4, m[0], m[1]]);
        }
        match (self.sack_permitted, self.timestamps) {
            (true, Some(_)) => put(&[option_kind::SACK_PERMITTED, 2]),
            (true, None) => put(&[
                option_kind::NOP,
                option_kind::NOP,
                option_kind::SACK_PERMITTED,
                2,
            ]),
            (false, Some(_)) => put(&[option_kind::NOP, option_kind::NOP]),
            (false, None) => {}
        }
        if let Some((val, ecr)) = self.timestamps {
            put(&[option_kind::TIMESTAMPS, 10]);
            put(&val.to_be_bytes());
            put(&ecr.to_be_bytes());
        }
        if let Some(ws) = self.window_scale {
            put(&[option_kind::NOP, option_kind::WINDOW_SCALE, 3, ws]);
        }
        let sack = self.sack();
        if !sack.is_empty() {
            put(&[
                option_kind::NOP,
                option_kind::NOP,
                option_kind::SACK,
                (2 + 8 * sack.len()) as u8,
            ]);
            for block in sack {
                put(&block.left.to_be_bytes());
                put(&block.right.to_be_bytes());
            }
        }
        Ok(())
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A view of a TCP segment.
#[derive(Debug, Clone, Copy)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` (the whole IP payload), checking the data offset.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let p = TcpPacket { buffer };
        let hl = p.header_len();
        if hl < MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if hl > p.buffer.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(p)
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    fn u16_at(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.b()[at], self.b()[at + 1]])
    }
    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.u16_at(0)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.u16_at(2)
    }
    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        be32(&self.b()[4..8])
    }
    /// Acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        be32(&self.b()[8..12])
    }
    /// Header length in bytes (data offset * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[12] >> 4) * 4
    }
    /// Control bits.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.b()[13])
    }
    /// Window.
    pub fn window(&self) -> u16 {
        self.u16_at(14)
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        self.u16_at(16)
    }
    /// Urgent pointer.
    pub fn urgent(&self) -> u16 {
        self.u16_at(18)
    }
    /// The option area.
    pub fn options(&self) -> &[u8] {
        &self.b()[MIN_HEADER_LEN..self.header_len()]
    }
    /// The data after the header.
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..]
    }
    /// Whether the checksum verifies under `pseudo`.
    pub fn verify_checksum(&self, pseudo: &PseudoHeader) -> bool {
        let mut sum = pseudo.sum(protocol::TCP, self.b().len());
        sum.add_bytes(self.b()).finish() == 0
    }
}

/// The fields of a TCP header (the payload is kept apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful with ACK).
    pub ack: u32,
    /// Control bits.
    pub flags: TcpFlags,
    /// Window (unscaled, as on the wire).
    pub window: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// Options.
    pub options: TcpOptions,
}

impl TcpRepr {
    /// Verifies the checksum under `pseudo` and parses the options.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &TcpPacket<T>,
        pseudo: &PseudoHeader,
    ) -> Result<Self, WireError> {
        if !packet.verify_checksum(pseudo) {
            return Err(WireError::BadChecksum);
        }
        Ok(TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq: packet.seq_number(),
            ack: packet.ack_number(),
            flags: packet.flags(),
            window: packet.window(),
            urgent: packet.urgent(),
            options: TcpOptions::parse(packet.options())?,
        })
    }

    /// Header length with the options [`TcpRepr::emit`] writes.
    pub fn header_len(&self) -> usize {
        MIN_HEADER_LEN + self.options.emitted_len()
    }

    /// Writes the header into `segment`, whose bytes after
    /// [`TcpRepr::header_len`] are the payload, already in place, and
    /// computes the checksum over the whole segment.
    pub fn emit(&self, segment: &mut [u8], pseudo: &PseudoHeader) -> Result<(), WireError> {
        let hl = self.header_len();
        if hl > MIN_HEADER_LEN + MAX_OPTIONS_LEN {
            return Err(WireError::Malformed);
        }
        if segment.len() < hl {
            return Err(WireError::Truncated);
        }
        segment[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        segment[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        segment[4..8].copy_from_slice(&self.seq.to_be_bytes());
        segment[8..12].copy_from_slice(&self.ack.to_be_bytes());
        segment[12] = ((hl / 4) as u8) << 4;
        segment[13] = self.flags.0;
        segment[14..16].copy_from_slice(&self.window.to_be_bytes());
        segment[16..18].copy_from_slice(&[0, 0]);
        segment[18..20].copy_from_slice(&self.urgent.to_be_bytes());
        self.options.emit(&mut segment[MIN_HEADER_LEN..hl])?;
        let mut sum = pseudo.sum(protocol::TCP, segment.len());
        let c = sum.add_bytes(segment).finish();
        segment[16..18].copy_from_slice(&c.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn pseudo() -> PseudoHeader {
        PseudoHeader::V4 {
            src: Ipv4Addr::new(192, 0, 2, 15),
            dst: Ipv4Addr::new(198, 51, 100, 1),
        }
    }

    #[test]
    fn syn_options_linux_layout() {
        // A Linux SYN's options: MSS 1460, SACK-perm, TS, NOP, WS 7.
        let area = [
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        let o = TcpOptions::parse(&area).unwrap();
        assert_eq!(o.mss, Some(1460));
        assert!(o.sack_permitted);
        assert_eq!(o.timestamps, Some((1, 0)));
        assert_eq!(o.window_scale, Some(7));
        assert_eq!(o.emitted_len(), 20);
        let mut out = [0u8; 20];
        o.emit(&mut out).unwrap();
        assert_eq!(TcpOptions::parse(&out).unwrap(), o);
    }

    #[test]
    fn option_errors_and_unknowns() {
        // Unknown kind 30 with length 4 is skipped; EOL stops parsing.
        let o = TcpOptions::parse(&[30, 4, 9, 9, 2, 4, 1, 0, 0, 77]).unwrap();
        assert_eq!(o.mss, Some(256));
        // Length 1, 0, beyond the area, wrong fixed lengths.
        for bad in [
            &[30u8, 1][..],
            &[30, 0],
            &[30, 5, 0, 0],
            &[2, 3, 0],
            &[3, 4, 0, 0],
            &[4, 3, 0],
            &[8, 8, 0, 0, 0, 0, 0, 0],
            &[5, 2],
            &[5, 9, 0, 0, 0, 0, 0, 0, 0],
            &[2],
        ] {
            assert_eq!(TcpOptions::parse(bad), Err(WireError::Malformed), "{bad:?}");
        }
        let mut sack = vec![5u8, 34];
        sack.extend((0..32).map(|i| i as u8));
        let o = TcpOptions::parse(&sack).unwrap();
        assert_eq!(o.sack().len(), 4);
        assert_eq!(
            o.sack()[0],
            SackBlock {
                left: 0x00010203,
                right: 0x04050607
            }
        );
    }

    #[test]
    fn segment_round_trip() {
        let mut r = TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq: 0xdeadbeef,
            ack: 7,
            flags: TcpFlags::ACK | TcpFlags::PSH,
            window: 512,
            urgent: 0,
            options: TcpOptions::default(),
        };
        r.options.timestamps = Some((5, 6));
        r.options.sack_blocks[0] = SackBlock { left: 1, right: 2 };
        r.options.sack_count = 1;
        let hl = r.header_len();
        assert_eq!(hl, 20 + 12 + 12);
        let mut seg = vec![0u8; hl + 3];
        seg[hl..].copy_from_slice(b"abc");
        r.emit(&mut seg, &pseudo()).unwrap();
        let p = TcpPacket::new_checked(&seg[..]).unwrap();
        assert_eq!(TcpRepr::parse(&p, &pseudo()).unwrap(), r);
        assert_eq!(p.payload(), b"abc");
        seg[hl] ^= 0x20;
        let p = TcpPacket::new_checked(&seg[..]).unwrap();
        assert_eq!(TcpRepr::parse(&p, &pseudo()), Err(WireError::BadChecksum));
        assert_eq!(format!("{:?}", r.flags), "PSH|ACK");
    }

    #[test]
    fn header_length_checks() {
        let mut seg = [0u8; 24];
        seg[12] = 4 << 4;
        assert_eq!(
            TcpPacket::new_checked(&seg[..]).err(),
            Some(WireError::Malformed)
        );
        seg[12] = 6 << 4;
        assert!(TcpPacket::new_checked(&seg[..]).is_ok());
        seg[12] = 7 << 4;
        assert_eq!(
            TcpPacket::new_checked(&seg[..]).err(),
            Some(WireError::Truncated)
        );
        // Too many options to emit.
        let mut r = TcpRepr::default();
        r.options.mss = Some(1);
        r.options.window_scale = Some(1);
        r.options.timestamps = Some((1, 1));
        r.options.sack_count = 3;
        assert_eq!(
            r.emit(&mut [0u8; 100], &pseudo()),
            Err(WireError::Malformed)
        );
    }
}
