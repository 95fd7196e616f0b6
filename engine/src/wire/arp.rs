//! ARP for Ethernet and IPv4 only (RFC 826).
//!
//! Owns the 28-byte ARP packet. It never accepts another hardware or
//! protocol type: those are [`WireError::Unsupported`], and impossible
//! address lengths for the types given are [`WireError::Malformed`].

use super::{WireError, read_ipv4, read_mac};
use crate::addr::MacAddr;
use std::net::Ipv4Addr;

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
/// Hardware type Ethernet (RFC 826, IANA ARP parameters).
pub const HTYPE_ETHERNET: u16 = 1;
/// Protocol type IPv4.
pub const PTYPE_IPV4: u16 = 0x0800;

/// ARP opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOperation {
    /// 1: who has `target_ip`?
    Request,
    /// 2: `sender_ip` is at `sender_hw`.
    Reply,
}

impl ArpOperation {
    /// The wire value.
    pub const fn code(self) -> u16 {
        match self {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
        }
    }
}

/// A view of an ARP packet.
#[derive(Debug, Clone, Copy)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer`, checking it holds 28 bytes (trailing Ethernet padding
    /// is allowed and ignored).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        Ok(ArpPacket { buffer })
    }

    fn u16_at(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    /// Hardware type.
    pub fn htype(&self) -> u16 {
        self.u16_at(0)
    }
    /// Protocol type.
    pub fn ptype(&self) -> u16 {
        self.u16_at(2)
    }
    /// Hardware address length.
    pub fn hlen(&self) -> u8 {
        self.buffer.as_ref()[4]
    }
    /// Protocol address length.
    pub fn plen(&self) -> u8 {
        self.buffer.as_ref()[5]
    }
    /// Opcode.
    pub fn opcode(&self) -> u16 {
        self.u16_at(6)
    }
    /// Sender hardware address.
    pub fn sender_hw(&self) -> MacAddr {
        read_mac(&self.buffer.as_ref()[8..14])
    }
    /// Sender protocol address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        read_ipv4(&self.buffer.as_ref()[14..18])
    }
    /// Target hardware address.
    pub fn target_hw(&self) -> MacAddr {
        read_mac(&self.buffer.as_ref()[18..24])
    }
    /// Target protocol address.
    pub fn target_ip(&self) -> Ipv4Addr {
        read_ipv4(&self.buffer.as_ref()[24..28])
    }
}

/// An Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    /// Request or reply.
    pub operation: ArpOperation,
    /// Sender hardware address.
    pub sender_hw: MacAddr,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address (ignored in requests).
    pub target_hw: MacAddr,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Validates types, lengths and opcode.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<Self, WireError> {
        if packet.htype() != HTYPE_ETHERNET || packet.ptype() != PTYPE_IPV4 {
            return Err(WireError::Unsupported);
        }
        if packet.hlen() != 6 || packet.plen() != 4 {
            return Err(WireError::Malformed);
        }
        let operation = match packet.opcode() {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            _ => return Err(WireError::Unsupported),
        };
        Ok(ArpRepr {
            operation,
            sender_hw: packet.sender_hw(),
            sender_ip: packet.sender_ip(),
            target_hw: packet.target_hw(),
            target_ip: packet.target_ip(),
        })
    }

    /// Bytes [`ArpRepr::emit`] writes (28).
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet into the first 28 bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let b = buf.get_mut(..PACKET_LEN).ok_or(WireError::Truncated)?;
        b[0..2].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        b[2..4].copy_from_slice(&PTYPE_IPV4.to_be_bytes());
        b[4] = 6;
        b[5] = 4;
        b[6..8].copy_from_slice(&self.operation.code().to_be_bytes());
        b[8..14].copy_from_slice(&self.sender_hw.0);
        b[14..18].copy_from_slice(&self.sender_ip.octets());
        b[18..24].copy_from_slice(&self.target_hw.0);
        b[24..28].copy_from_slice(&self.target_ip.octets());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: [u8; 28] = [
        0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 192, 0, 2, 15, 0, 0, 0, 0, 0, 0, 192, 0, 2, 1,
    ];

    #[test]
    fn parse_request() {
        let r = ArpRepr::parse(&ArpPacket::new_checked(&REQUEST[..]).unwrap()).unwrap();
        assert_eq!(r.operation, ArpOperation::Request);
        assert_eq!(r.sender_hw, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(r.sender_ip, Ipv4Addr::new(192, 0, 2, 15));
        assert_eq!(r.target_hw, MacAddr::ZERO);
        assert_eq!(r.target_ip, Ipv4Addr::new(192, 0, 2, 1));
        let mut out = [0u8; 28];
        r.emit(&mut out).unwrap();
        assert_eq!(out, REQUEST);
    }

    #[test]
    fn rejects_other_types() {
        let mut b = REQUEST;
        b[1] = 6; // IEEE 802
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_checked(&b[..]).unwrap()),
            Err(WireError::Unsupported)
        );
        let mut b = REQUEST;
        b[4] = 8;
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_checked(&b[..]).unwrap()),
            Err(WireError::Malformed)
        );
        let mut b = REQUEST;
        b[7] = 3; // RARP request
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_checked(&b[..]).unwrap()),
            Err(WireError::Unsupported)
        );
        assert_eq!(
            ArpPacket::new_checked(&REQUEST[..27]).err(),
            Some(WireError::Truncated)
        );
    }
}
