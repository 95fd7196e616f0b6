//! IPv4 header (RFC 791).
//!
//! Owns the header: version, header length with options, total length,
//! fragment fields and the header checksum. Options are skipped (kept in the
//! header length) and never interpreted; fragments are refused with
//! [`WireError::Ipv4Fragment`] because the engine does not reassemble.
//! [`Ipv4Repr::emit`] always writes a 20-byte header without options.

use super::checksum::checksum;
use super::{WireError, read_ipv4};
use std::net::Ipv4Addr;

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = 20;

/// IP protocol numbers the engine knows (IANA "Assigned Internet Protocol
/// Numbers").
pub mod protocol {
    /// ICMP (RFC 792).
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6 (RFC 4443).
    pub const ICMPV6: u8 = 58;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` after checking version, header length and total
    /// length against it. Bytes past the total length (Ethernet padding)
    /// are allowed and ignored.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let p = Ipv4Packet { buffer };
        if p.version() != 4 {
            return Err(WireError::Malformed);
        }
        let hl = p.header_len();
        if hl < MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        let total = usize::from(p.total_len());
        if total < hl {
            return Err(WireError::Malformed);
        }
        if p.buffer.as_ref().len() < total {
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

    /// Version field (4).
    pub fn version(&self) -> u8 {
        self.b()[0] >> 4
    }
    /// Header length in bytes (IHL * 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[0] & 0x0f) * 4
    }
    /// DSCP (upper six bits of the former TOS byte, RFC 2474).
    pub fn dscp(&self) -> u8 {
        self.b()[1] >> 2
    }
    /// ECN (lower two bits, RFC 3168).
    pub fn ecn(&self) -> u8 {
        self.b()[1] & 0x03
    }
    /// Total length of header plus payload.
    pub fn total_len(&self) -> u16 {
        self.u16_at(2)
    }
    /// Identification.
    pub fn ident(&self) -> u16 {
        self.u16_at(4)
    }
    /// Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.u16_at(6) & FLAG_DF != 0
    }
    /// More Fragments flag.
    pub fn more_frags(&self) -> bool {
        self.u16_at(6) & FLAG_MF != 0
    }
    /// Fragment offset in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        self.u16_at(6) & OFFSET_MASK
    }
    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.b()[8]
    }
    /// Protocol of the payload.
    pub fn protocol(&self) -> u8 {
        self.b()[9]
    }
    /// Header checksum field.
    pub fn header_checksum(&self) -> u16 {
        self.u16_at(10)
    }
    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        read_ipv4(&self.b()[12..16])
    }
    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        read_ipv4(&self.b()[16..20])
    }
    /// Whether the header checksum verifies (RFC 791 §3.1).
    pub fn verify_checksum(&self) -> bool {
        checksum(&self.b()[..self.header_len()]) == 0
    }
    /// The payload: exactly `total_len - header_len` bytes.
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..usize::from(self.total_len())]
    }
}

/// The fields of an IPv4 header the engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol.
    pub protocol: u8,
    /// Time to live.
    pub hop_limit: u8,
    /// Differentiated services code point (0..=63).
    pub dscp: u8,
    /// ECN bits (0..=3).
    pub ecn: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
    /// Payload length (total length minus header length).
    pub payload_len: usize,
}

impl Ipv4Repr {
    /// The header every frame we build carries: no DSCP/ECN marks,
    /// identification 0 with Don't Fragment set (RFC 6864 §4.1 allows a
    /// zero ID on atomic datagrams), and the payload length left for the
    /// builders to fill in.
    pub const fn new(src_addr: Ipv4Addr, dst_addr: Ipv4Addr, protocol: u8, hop_limit: u8) -> Self {
        Ipv4Repr {
            src_addr,
            dst_addr,
            protocol,
            hop_limit,
            dscp: 0,
            ecn: 0,
            ident: 0,
            dont_frag: true,
            payload_len: 0,
        }
    }

    /// Verifies the header checksum and refuses fragments.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Self, WireError> {
        if !packet.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        if packet.more_frags() || packet.frag_offset() != 0 {
            return Err(WireError::Ipv4Fragment);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            hop_limit: packet.ttl(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
        })
    }

    /// Length of the header [`Ipv4Repr::emit`] writes (20).
    pub const fn header_len(&self) -> usize {
        MIN_HEADER_LEN
    }

    /// Header plus payload.
    pub const fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN + self.payload_len
    }

    /// Writes a 20-byte header (no options) with its checksum into `buf`.
    /// Fails with `Malformed` when the total length would exceed 65535.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let total = u16::try_from(self.buffer_len()).map_err(|_| WireError::Malformed)?;
        let h = buf.get_mut(..MIN_HEADER_LEN).ok_or(WireError::Truncated)?;
        h[0] = 0x45;
        h[1] = ((self.dscp & 0x3f) << 2) | (self.ecn & 0x03);
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[4..6].copy_from_slice(&self.ident.to_be_bytes());
        let flags: u16 = if self.dont_frag { FLAG_DF } else { 0 };
        h[6..8].copy_from_slice(&flags.to_be_bytes());
        h[8] = self.hop_limit;
        h[9] = self.protocol;
        h[10..12].copy_from_slice(&[0, 0]);
        h[12..16].copy_from_slice(&self.src_addr.octets());
        h[16..20].copy_from_slice(&self.dst_addr.octets());
        let c = checksum(h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(192, 0, 2, 15),
            dst_addr: Ipv4Addr::new(198, 51, 100, 7),
            protocol: protocol::UDP,
            hop_limit: 64,
            dscp: 10,
            ecn: 1,
            ident: 0x1234,
            dont_frag: true,
            payload_len: 4,
        }
    }

    #[test]
    fn emit_parse_with_padding() {
        let r = sample();
        let mut buf = [0xeeu8; 30]; // 24 used, 6 bytes of "Ethernet padding"
        r.emit(&mut buf).unwrap();
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p).unwrap(), r);
        assert_eq!(p.payload().len(), 4);
    }

    #[test]
    fn options_are_skipped() {
        // IHL 6: one word of options (NOP NOP NOP EOL).
        let mut h = [0u8; 28];
        h[0] = 0x46;
        h[2..4].copy_from_slice(&28u16.to_be_bytes());
        h[8] = 64;
        h[9] = 17;
        h[20..24].copy_from_slice(&[1, 1, 1, 0]);
        h[24..28].copy_from_slice(b"data");
        let c = checksum(&h[..24]);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let p = Ipv4Packet::new_checked(&h[..]).unwrap();
        let r = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(r.payload_len, 4);
        assert_eq!(p.payload(), b"data");
    }

    #[test]
    fn errors() {
        let mut buf = [0u8; 24];
        sample().emit(&mut buf).unwrap();
        // Truncated: total length larger than the buffer.
        assert_eq!(
            Ipv4Packet::new_checked(&buf[..23]).err(),
            Some(WireError::Truncated)
        );
        // Bad checksum.
        let mut b = buf;
        b[8] ^= 1;
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p), Err(WireError::BadChecksum));
        // Version 6 in an IPv4 frame.
        let mut b = buf;
        b[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(WireError::Malformed)
        );
        // IHL 4.
        let mut b = buf;
        b[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(WireError::Malformed)
        );
        // Total length below header length.
        let mut b = buf;
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(WireError::Malformed)
        );
    }

    #[test]
    fn fragments_refused() {
        for flags in [0x2000u16, 0x0001, 0x4000 | 0x00b9] {
            let mut b = [0u8; 24];
            sample().emit(&mut b).unwrap();
            b[6..8].copy_from_slice(&flags.to_be_bytes());
            b[10..12].copy_from_slice(&[0, 0]);
            let c = checksum(&b[..20]);
            b[10..12].copy_from_slice(&c.to_be_bytes());
            let p = Ipv4Packet::new_checked(&b[..]).unwrap();
            assert_eq!(
                Ipv4Repr::parse(&p),
                Err(WireError::Ipv4Fragment),
                "{flags:#x}"
            );
        }
    }
}
