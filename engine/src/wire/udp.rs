//! UDP (RFC 768; over IPv6, RFC 8200 §8.1).
//!
//! Owns the 8-byte header, the length field and the checksum with its
//! pseudo-header. Over IPv4 a zero checksum means "none" and is accepted;
//! over IPv6 a zero checksum is invalid (RFC 8200 §8.1) and refused. It
//! never looks at the payload.

use super::WireError;
use super::checksum::PseudoHeader;
use super::ipv4::protocol;

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram.
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` (the IP payload), checking the length field: at least
    /// 8 and at most the buffer. A length shorter than the buffer trims the
    /// datagram to it.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = usize::from(u16::from_be_bytes([b[4], b[5]]));
        if len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if len > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(UdpPacket { buffer })
    }
    fn u16_at(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }
    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.u16_at(0)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.u16_at(2)
    }
    /// Length field (header plus payload).
    pub fn len(&self) -> u16 {
        self.u16_at(4)
    }
    /// Never true for a checked packet (length is at least 8).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        self.u16_at(6)
    }
    /// The payload, `len - 8` bytes.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }
    /// Whether the checksum verifies under `pseudo` (zero accepted over
    /// IPv4 only).
    pub fn verify_checksum(&self, pseudo: &PseudoHeader) -> bool {
        let c = self.checksum();
        if c == 0 {
            return !pseudo.is_ipv6();
        }
        let datagram = &self.buffer.as_ref()[..usize::from(self.len())];
        let mut sum = pseudo.sum(protocol::UDP, datagram.len());
        sum.add_bytes(datagram).finish() == 0
    }
}

/// The fields of a UDP header (the payload is kept apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Verifies the checksum under `pseudo`.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &UdpPacket<T>,
        pseudo: &PseudoHeader,
    ) -> Result<Self, WireError> {
        if !packet.verify_checksum(pseudo) {
            return Err(WireError::BadChecksum);
        }
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
        })
    }

    /// Header length (8).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into `datagram`, whose bytes after the first 8 are
    /// the payload, already in place; sets the length to `datagram.len()`
    /// and computes the checksum (a computed 0 is sent as 0xffff, RFC 768).
    pub fn emit(&self, datagram: &mut [u8], pseudo: &PseudoHeader) -> Result<(), WireError> {
        if datagram.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = u16::try_from(datagram.len()).map_err(|_| WireError::Malformed)?;
        datagram[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        datagram[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        datagram[4..6].copy_from_slice(&len.to_be_bytes());
        datagram[6..8].copy_from_slice(&[0, 0]);
        let mut sum = pseudo.sum(protocol::UDP, datagram.len());
        let c = match sum.add_bytes(datagram).finish() {
            0 => 0xffff,
            c => c,
        };
        datagram[6..8].copy_from_slice(&c.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4() -> PseudoHeader {
        PseudoHeader::V4 {
            src: Ipv4Addr::new(192, 0, 2, 15),
            dst: Ipv4Addr::new(192, 0, 2, 53),
        }
    }
    fn v6() -> PseudoHeader {
        PseudoHeader::V6 {
            src: Ipv6Addr::LOCALHOST,
            dst: "2001:db8::1".parse().unwrap(),
        }
    }

    #[test]
    fn round_trip_and_zero_checksum() {
        let r = UdpRepr {
            src_port: 5353,
            dst_port: 53,
        };
        let mut d = *b"\0\0\0\0\0\0\0\0hello";
        r.emit(&mut d, &v4()).unwrap();
        let p = UdpPacket::new_checked(&d[..]).unwrap();
        assert_eq!(UdpRepr::parse(&p, &v4()).unwrap(), r);
        assert_eq!(p.payload(), b"hello");
        assert_eq!(UdpRepr::parse(&p, &v6()), Err(WireError::BadChecksum));
        // Zero checksum: fine over IPv4, refused over IPv6.
        d[6] = 0;
        d[7] = 0;
        let p = UdpPacket::new_checked(&d[..]).unwrap();
        assert!(UdpRepr::parse(&p, &v4()).is_ok());
        assert_eq!(UdpRepr::parse(&p, &v6()), Err(WireError::BadChecksum));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Choose payload so that the sum is 0xffff: the checksum field would
        // be 0 and must go out as 0xffff.
        let r = UdpRepr {
            src_port: 0,
            dst_port: 0,
        };
        let pseudo = PseudoHeader::V4 {
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
        };
        // pseudo: 0x0011 + len 10; header: len 10; payload word w.
        // 0x11 + 10 + 10 + w = 0xffff -> w = 0xffff - 0x25.
        let w: u16 = 0xffff - 0x25;
        let mut d = [0u8; 10];
        d[8..10].copy_from_slice(&w.to_be_bytes());
        r.emit(&mut d, &pseudo).unwrap();
        assert_eq!(&d[6..8], &[0xff, 0xff]);
        let p = UdpPacket::new_checked(&d[..]).unwrap();
        assert!(UdpRepr::parse(&p, &pseudo).is_ok());
    }

    #[test]
    fn length_checks() {
        let mut d = [0u8; 12];
        d[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            UdpPacket::new_checked(&d[..]).err(),
            Some(WireError::Malformed)
        );
        d[4..6].copy_from_slice(&13u16.to_be_bytes());
        assert_eq!(
            UdpPacket::new_checked(&d[..]).err(),
            Some(WireError::Truncated)
        );
        d[4..6].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(UdpPacket::new_checked(&d[..]).unwrap().payload().len(), 2);
    }
}
