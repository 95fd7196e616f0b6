//! IPv6 header and extension header chain (RFC 8200).
//!
//! Owns the fixed 40-byte header and the walk over the extension headers
//! that precede the upper-layer header: hop-by-hop options (0, only right
//! after the fixed header, §4.3), routing (43), destination options (60),
//! and no-next-header (59). A fragment header (44) ends the walk with
//! [`WireError::Ipv6Fragment`]: the engine does not reassemble. The walk is
//! bounded ([`MAX_EXTENSION_HEADERS`]). Routing headers are skipped, never
//! processed (segments left is not looked at): the engine is the final
//! destination of everything the guest sends it.
//! [`Ipv6Repr::emit`] writes the fixed header only.

use super::{WireError, read_ipv6};
use std::net::Ipv6Addr;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;
/// At most this many extension headers are walked; more is `Malformed`.
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// Next-header values of the extension headers the walk knows.
pub mod next_header {
    /// Hop-by-hop options (RFC 8200 §4.3).
    pub const HOP_BY_HOP: u8 = 0;
    /// Routing (§4.4).
    pub const ROUTING: u8 = 43;
    /// Fragment (§4.5).
    pub const FRAGMENT: u8 = 44;
    /// No next header (§4.7).
    pub const NO_NEXT_HEADER: u8 = 59;
    /// Destination options (§4.6).
    pub const DESTINATION_OPTIONS: u8 = 60;
}

/// A view of an IPv6 packet.
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buffer` after checking the version and that the payload
    /// length fits. Trailing bytes (Ethernet padding) are ignored.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let p = Ipv6Packet { buffer };
        if p.version() != 6 {
            return Err(WireError::Malformed);
        }
        if p.buffer.as_ref().len() < HEADER_LEN + usize::from(p.payload_len()) {
            return Err(WireError::Truncated);
        }
        Ok(p)
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Version (6).
    pub fn version(&self) -> u8 {
        self.b()[0] >> 4
    }
    /// Traffic class.
    pub fn traffic_class(&self) -> u8 {
        (self.b()[0] << 4) | (self.b()[1] >> 4)
    }
    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        let b = self.b();
        (u32::from(b[1] & 0x0f) << 16) | (u32::from(b[2]) << 8) | u32::from(b[3])
    }
    /// Payload length (everything after the fixed header).
    pub fn payload_len(&self) -> u16 {
        u16::from_be_bytes([self.b()[4], self.b()[5]])
    }
    /// Next header of the fixed header.
    pub fn next_header(&self) -> u8 {
        self.b()[6]
    }
    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.b()[7]
    }
    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        read_ipv6(&self.b()[8..24])
    }
    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        read_ipv6(&self.b()[24..40])
    }
    /// The payload: exactly `payload_len` bytes after the fixed header.
    pub fn payload(&self) -> &[u8] {
        &self.b()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Walks the extension headers: returns the upper-layer protocol and
    /// the offset of its header within [`Ipv6Packet::payload`].
    pub fn upper_layer(&self) -> Result<(u8, usize), WireError> {
        let payload = self.payload();
        let mut nh = self.next_header();
        let mut off = 0usize;
        for count in 0..=MAX_EXTENSION_HEADERS {
            match nh {
                next_header::FRAGMENT => return Err(WireError::Ipv6Fragment),
                next_header::HOP_BY_HOP
                | next_header::ROUTING
                | next_header::DESTINATION_OPTIONS => {
                    // RFC 8200 §4.3: hop-by-hop only immediately after the
                    // fixed header.
                    if nh == next_header::HOP_BY_HOP && count != 0 {
                        return Err(WireError::Malformed);
                    }
                    if count == MAX_EXTENSION_HEADERS {
                        return Err(WireError::Malformed);
                    }
                    // §4.3-4.6: next header, then length in 8-octet units
                    // not counting the first 8 octets.
                    let hdr = payload.get(off..off + 2).ok_or(WireError::Truncated)?;
                    let len = (usize::from(hdr[1]) + 1) * 8;
                    if payload.len() < off + len {
                        return Err(WireError::Truncated);
                    }
                    nh = hdr[0];
                    off += len;
                }
                upper => return Ok((upper, off)),
            }
        }
        Err(WireError::Malformed)
    }
}

/// The fields of an IPv6 packet the engine uses, with the extension chain
/// resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// The upper-layer protocol after every extension header (59 for "no
    /// next header").
    pub next_header: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (low 20 bits used).
    pub flow_label: u32,
    /// Bytes of extension headers between the fixed header and the
    /// upper-layer header (0 for what [`Ipv6Repr::emit`] writes).
    pub ext_headers_len: usize,
    /// Length of the upper-layer packet (header and data).
    pub payload_len: usize,
}

impl Ipv6Repr {
    /// The header every packet we build carries: traffic class and flow
    /// label 0, no extension headers, and the payload length left for the
    /// builders to fill in.
    pub const fn new(
        src_addr: Ipv6Addr,
        dst_addr: Ipv6Addr,
        next_header: u8,
        hop_limit: u8,
    ) -> Self {
        Ipv6Repr {
            src_addr,
            dst_addr,
            next_header,
            hop_limit,
            traffic_class: 0,
            flow_label: 0,
            ext_headers_len: 0,
            payload_len: 0,
        }
    }

    /// Reads the header and walks the extension chain.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Self, WireError> {
        let (next_header, ext_headers_len) = packet.upper_layer()?;
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header,
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
            ext_headers_len,
            payload_len: usize::from(packet.payload_len()) - ext_headers_len,
        })
    }

    /// Offset of the upper-layer header from the start of the IPv6 header.
    pub const fn upper_layer_offset(&self) -> usize {
        HEADER_LEN + self.ext_headers_len
    }

    /// Length of the header [`Ipv6Repr::emit`] writes (40).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Fixed header plus upper-layer payload.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the fixed header, with `next_header` as its next header and
    /// `payload_len` as its payload length. Extension headers are never
    /// written: a repr with `ext_headers_len != 0` is `Unsupported`; a
    /// payload over 65535 bytes (jumbogram) is `Malformed`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        if self.ext_headers_len != 0 {
            return Err(WireError::Unsupported);
        }
        let plen = u16::try_from(self.payload_len).map_err(|_| WireError::Malformed)?;
        let h = buf.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
        let fl = self.flow_label & 0x000f_ffff;
        h[0] = 0x60 | (self.traffic_class >> 4);
        h[1] = (self.traffic_class << 4) | (fl >> 16) as u8;
        h[2] = (fl >> 8) as u8;
        h[3] = fl as u8;
        h[4..6].copy_from_slice(&plen.to_be_bytes());
        h[6] = self.next_header;
        h[7] = self.hop_limit;
        h[8..24].copy_from_slice(&self.src_addr.octets());
        h[24..40].copy_from_slice(&self.dst_addr.octets());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(payload_len: usize) -> Ipv6Repr {
        Ipv6Repr {
            src_addr: "2001:db8::15".parse().unwrap(),
            dst_addr: "2001:db8:1::7".parse().unwrap(),
            next_header: 17,
            hop_limit: 64,
            traffic_class: 0xb8,
            flow_label: 0xabcde,
            ext_headers_len: 0,
            payload_len,
        }
    }

    #[test]
    fn emit_parse() {
        let r = sample(3);
        let mut buf = [0u8; 50];
        r.emit(&mut buf).unwrap();
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&p).unwrap(), r);
        assert_eq!(p.payload().len(), 3);
        assert_eq!(
            Ipv6Packet::new_checked(&buf[..42]).err(),
            Some(WireError::Truncated)
        );
    }

    /// Fixed header with `chain` extension headers, each 8 bytes long,
    /// then `upper` as the final protocol and 4 bytes of data.
    fn with_chain(chain: &[u8], upper: u8) -> Vec<u8> {
        let mut r = sample(chain.len() * 8 + 4);
        r.next_header = chain.first().copied().unwrap_or(upper);
        let mut v = vec![0u8; 40];
        r.emit(&mut v).unwrap();
        for (i, _) in chain.iter().enumerate() {
            let next = chain.get(i + 1).copied().unwrap_or(upper);
            v.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
        v.extend_from_slice(b"data");
        v
    }

    #[test]
    fn walks_extension_headers() {
        let v = with_chain(&[0, 43, 60], 6);
        let p = Ipv6Packet::new_checked(&v[..]).unwrap();
        let r = Ipv6Repr::parse(&p).unwrap();
        assert_eq!(r.next_header, 6);
        assert_eq!(r.ext_headers_len, 24);
        assert_eq!(r.payload_len, 4);
        assert_eq!(&v[r.upper_layer_offset()..], b"data");
    }

    #[test]
    fn chain_errors() {
        let v = with_chain(&[60, 44], 17);
        let p = Ipv6Packet::new_checked(&v[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&p), Err(WireError::Ipv6Fragment));
        // Hop-by-hop not first.
        let v = with_chain(&[60, 0], 17);
        let p = Ipv6Packet::new_checked(&v[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&p), Err(WireError::Malformed));
        // Too many headers.
        let v = with_chain(&[60; 9], 17);
        let p = Ipv6Packet::new_checked(&v[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&p), Err(WireError::Malformed));
        // Eight is fine.
        let v = with_chain(&[60; 8], 17);
        let p = Ipv6Packet::new_checked(&v[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&p).unwrap().ext_headers_len, 64);
        // An extension header longer than the payload.
        let mut v = with_chain(&[60], 17);
        v[41] = 3;
        let p = Ipv6Packet::new_checked(&v[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&p), Err(WireError::Truncated));
        // No next header: upper layer 59 with the rest as payload.
        let v = with_chain(&[60], 59);
        let p = Ipv6Packet::new_checked(&v[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&p).unwrap().next_header, 59);
    }
}
