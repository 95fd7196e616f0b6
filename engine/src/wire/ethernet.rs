//! Ethernet II framing (IEEE 802.3 clause 3 with the EtherType
//! interpretation of the length/type field, RFC 894).
//!
//! Owns the 14-byte header only. It never strips or interprets VLAN tags:
//! an 802.1Q frame is reported with EtherType 0x8100 and the engine drops it
//! as unknown. It never pads frames to the 60-byte minimum: the guest side
//! (QEMU, tap) does not need it.

use super::{WireError, read_mac};
use crate::addr::MacAddr;

/// EtherType values the engine speaks.
pub mod ethertype {
    /// IPv4 (RFC 894).
    pub const IPV4: u16 = 0x0800;
    /// ARP (RFC 826).
    pub const ARP: u16 = 0x0806;
    /// IPv6 (RFC 2464).
    pub const IPV6: u16 = 0x86dd;
    /// 802.1Q VLAN tag (never parsed here).
    pub const VLAN: u16 = 0x8100;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = 14;

/// A read-only or writable view of an Ethernet II frame.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer`, checking it holds at least a header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(EthernetFrame { buffer })
    }

    /// Destination MAC.
    pub fn dst(&self) -> MacAddr {
        read_mac(&self.buffer.as_ref()[0..6])
    }

    /// Source MAC.
    pub fn src(&self) -> MacAddr {
        read_mac(&self.buffer.as_ref()[6..12])
    }

    /// EtherType field.
    pub fn ethertype(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[12], b[13]])
    }

    /// Everything after the header (including any trailing padding).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// The fields of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Source MAC.
    pub src: MacAddr,
    /// Destination MAC.
    pub dst: MacAddr,
    /// EtherType (any value: the caller decides what it understands).
    pub ethertype: u16,
}

impl EthernetRepr {
    /// Reads the header fields.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self, WireError> {
        Ok(EthernetRepr {
            src: frame.src(),
            dst: frame.dst(),
            ethertype: frame.ethertype(),
        })
    }

    /// Header length (always 14).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first 14 bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let h = buf.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
        h[0..6].copy_from_slice(&self.dst.0);
        h[6..12].copy_from_slice(&self.src.0);
        h[12..14].copy_from_slice(&self.ethertype.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_emit() {
        let bytes = [
            1, 2, 3, 4, 5, 6, 0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55, 0x08, 0x06, 0xaa,
        ];
        let f = EthernetFrame::new_checked(&bytes[..]).unwrap();
        let r = EthernetRepr::parse(&f).unwrap();
        assert_eq!(r.dst, MacAddr([1, 2, 3, 4, 5, 6]));
        assert_eq!(r.src, MacAddr::PASST_DEFAULT);
        assert_eq!(r.ethertype, ethertype::ARP);
        assert_eq!(f.payload(), &[0xaa]);
        let mut out = [0u8; 14];
        r.emit(&mut out).unwrap();
        assert_eq!(out, bytes[..14]);
        assert_eq!(r.emit(&mut [0u8; 13]), Err(WireError::Truncated));
    }

    #[test]
    fn short_is_truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&[0u8; 13][..]).err(),
            Some(WireError::Truncated)
        );
    }
}
