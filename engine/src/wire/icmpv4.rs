//! ICMP for IPv4 (RFC 792).
//!
//! Owns the 8-byte ICMP header and its checksum. Echo request and reply are
//! decoded into identifier, sequence number and data; destination
//! unreachable and time exceeded keep their code, the 32-bit rest of the
//! header (next-hop MTU for code 4, RFC 1191) and the invoking packet as
//! data; every other type is carried as [`Icmpv4Repr::Other`]. It never
//! interprets the invoking packet.

use super::WireError;
use super::checksum::checksum;

/// Length of the ICMP header.
pub const HEADER_LEN: usize = 8;

/// ICMPv4 message types (RFC 792).
pub mod msg_type {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DST_UNREACHABLE: u8 = 3;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
}

/// A view of an ICMPv4 message.
#[derive(Debug, Clone, Copy)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps `buffer` (the whole IPv4 payload), checking it holds a header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Icmpv4Packet { buffer })
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// Type.
    pub fn msg_type(&self) -> u8 {
        self.b()[0]
    }
    /// Code.
    pub fn code(&self) -> u8 {
        self.b()[1]
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.b()[2], self.b()[3]])
    }
    /// Bytes 4..8 as one value.
    pub fn rest_of_header(&self) -> u32 {
        let b = self.b();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]])
    }
    /// Echo identifier (bytes 4..6).
    pub fn echo_ident(&self) -> u16 {
        u16::from_be_bytes([self.b()[4], self.b()[5]])
    }
    /// Echo sequence number (bytes 6..8).
    pub fn echo_seq_no(&self) -> u16 {
        u16::from_be_bytes([self.b()[6], self.b()[7]])
    }
    /// Everything after the 8-byte header.
    pub fn data(&self) -> &[u8] {
        &self.b()[HEADER_LEN..]
    }
    /// The checksum covers the whole message (RFC 792).
    pub fn verify_checksum(&self) -> bool {
        checksum(self.b()) == 0
    }
}

/// An ICMPv4 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Repr<'a> {
    /// Type 8 code 0.
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data echoed back.
        data: &'a [u8],
    },
    /// Type 0 code 0.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echoed data.
        data: &'a [u8],
    },
    /// Type 3.
    DstUnreachable {
        /// Code (e.g. 3 port unreachable, 4 fragmentation needed).
        code: u8,
        /// Rest of header (next-hop MTU in the low 16 bits for code 4).
        rest: u32,
        /// The invoking packet (IP header and at least 8 bytes).
        data: &'a [u8],
    },
    /// Type 11.
    TimeExceeded {
        /// Code (0 TTL exceeded in transit).
        code: u8,
        /// Rest of header (unused, zero).
        rest: u32,
        /// The invoking packet.
        data: &'a [u8],
    },
    /// Any other type, or echo with a non-zero code.
    Other {
        /// Type.
        msg_type: u8,
        /// Code.
        code: u8,
        /// Rest of header.
        rest: u32,
        /// Data.
        data: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Verifies the checksum and decodes the message.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Icmpv4Packet<&'a T>) -> Result<Self, WireError> {
        if !packet.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        let data = &packet.buffer.as_ref()[HEADER_LEN..];
        let (ty, code, rest) = (packet.msg_type(), packet.code(), packet.rest_of_header());
        Ok(match (ty, code) {
            (msg_type::ECHO_REQUEST, 0) => Icmpv4Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            },
            (msg_type::ECHO_REPLY, 0) => Icmpv4Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            },
            (msg_type::DST_UNREACHABLE, code) => Icmpv4Repr::DstUnreachable { code, rest, data },
            (msg_type::TIME_EXCEEDED, code) => Icmpv4Repr::TimeExceeded { code, rest, data },
            (msg_type, code) => Icmpv4Repr::Other {
                msg_type,
                code,
                rest,
                data,
            },
        })
    }

    /// (type, code, rest of header, data).
    fn fields(&self) -> (u8, u8, u32, &'a [u8]) {
        match *self {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => (
                msg_type::ECHO_REQUEST,
                0,
                (u32::from(ident) << 16) | u32::from(seq_no),
                data,
            ),
            Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => (
                msg_type::ECHO_REPLY,
                0,
                (u32::from(ident) << 16) | u32::from(seq_no),
                data,
            ),
            Icmpv4Repr::DstUnreachable { code, rest, data } => {
                (msg_type::DST_UNREACHABLE, code, rest, data)
            }
            Icmpv4Repr::TimeExceeded { code, rest, data } => {
                (msg_type::TIME_EXCEEDED, code, rest, data)
            }
            Icmpv4Repr::Other {
                msg_type,
                code,
                rest,
                data,
            } => (msg_type, code, rest, data),
        }
    }

    /// Header plus data.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.fields().3.len()
    }

    /// Writes the message and its checksum into the first
    /// [`Icmpv4Repr::buffer_len`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let (ty, code, rest, data) = self.fields();
        let b = buf
            .get_mut(..HEADER_LEN + data.len())
            .ok_or(WireError::Truncated)?;
        b[0] = ty;
        b[1] = code;
        b[2..4].copy_from_slice(&[0, 0]);
        b[4..8].copy_from_slice(&rest.to_be_bytes());
        b[8..].copy_from_slice(data);
        let c = checksum(b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_vector() {
        // Type 8, id 0x0001, seq 0x0002, data "ab": checksum by hand:
        // 0800 + 0001 + 0002 + 6162 = 0x6965 -> !0x6965 = 0x969a.
        let bytes = [8u8, 0, 0x96, 0x9a, 0, 1, 0, 2, b'a', b'b'];
        let p = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        let r = Icmpv4Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Icmpv4Repr::EchoRequest {
                ident: 1,
                seq_no: 2,
                data: b"ab"
            }
        );
        let mut out = [0u8; 10];
        r.emit(&mut out).unwrap();
        assert_eq!(out, bytes);
        let mut bad = bytes;
        bad[9] ^= 1;
        let p = Icmpv4Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p), Err(WireError::BadChecksum));
    }

    #[test]
    fn errors_and_others() {
        let inv = [0x45u8; 28];
        for r in [
            Icmpv4Repr::DstUnreachable {
                code: 4,
                rest: 1400,
                data: &inv,
            },
            Icmpv4Repr::TimeExceeded {
                code: 0,
                rest: 0,
                data: &inv,
            },
            Icmpv4Repr::Other {
                msg_type: 13,
                code: 0,
                rest: 7,
                data: &[],
            },
            Icmpv4Repr::Other {
                msg_type: 8,
                code: 1,
                rest: 7,
                data: &[],
            },
        ] {
            let mut buf = [0u8; 64];
            r.emit(&mut buf).unwrap();
            let n = r.buffer_len();
            let p = Icmpv4Packet::new_checked(&buf[..n]).unwrap();
            assert_eq!(Icmpv4Repr::parse(&p).unwrap(), r);
        }
        assert_eq!(
            Icmpv4Packet::new_checked(&[0u8; 7][..]).err(),
            Some(WireError::Truncated)
        );
    }
}
