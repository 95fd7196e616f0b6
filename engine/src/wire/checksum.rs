//! The Internet checksum (RFC 1071) and the pseudo-header sums that TCP, UDP
//! and ICMPv6 fold into theirs (RFC 768, RFC 793 §3.1, RFC 8200 §8.1).
//!
//! This module owns only arithmetic over bytes: it never looks at what the
//! bytes mean, and it never allocates.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A running one's-complement sum (RFC 1071 §1).
///
/// Bytes may be added in pieces of any length: an odd-length piece leaves a
/// pending high byte that the next piece completes, so the result is the same
/// as summing the concatenation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checksum {
    /// Unfolded sum of big-endian words. A u64 cannot overflow for any
    /// input shorter than 2^34 bytes.
    sum: u64,
    /// The last piece ended in the middle of a 16-bit word.
    odd: bool,
}

impl Checksum {
    /// An empty sum.
    pub const fn new() -> Self {
        Checksum { sum: 0, odd: false }
    }

    /// Adds `data` as a sequence of big-endian 16-bit words (RFC 1071 §4.1);
    /// a trailing odd byte is the high half of a word padded with zero.
    pub fn add_bytes(&mut self, data: &[u8]) -> &mut Self {
        let mut data = data;
        if self.odd {
            if let Some((&low, rest)) = data.split_first() {
                self.sum += u64::from(low);
                self.odd = false;
                data = rest;
            }
        }
        // Summing 32-bit big-endian words gives the same folded result as
        // summing 16-bit ones (2^16 = 1 modulo 0xffff, RFC 1071 §2 (C)),
        // with half the additions.
        let mut quads = data.chunks_exact(4);
        for q in &mut quads {
            self.sum += u64::from(u32::from_be_bytes([q[0], q[1], q[2], q[3]]));
        }
        let mut words = quads.remainder().chunks_exact(2);
        for w in &mut words {
            self.sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            self.sum += u64::from(*last) << 8;
            self.odd = true;
        }
        self
    }

    /// Adds one 16-bit word (must be called on a word boundary, which is
    /// where every pseudo-header field sits).
    pub fn add_u16(&mut self, value: u16) -> &mut Self {
        self.add_bytes(&value.to_be_bytes())
    }

    /// Adds a 32-bit value as two words.
    pub fn add_u32(&mut self, value: u32) -> &mut Self {
        self.add_bytes(&value.to_be_bytes())
    }

    /// The sum folded to 16 bits with end-around carry (RFC 1071 §4.1),
    /// not complemented.
    pub fn fold(&self) -> u16 {
        let mut s = self.sum;
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    /// The checksum to write into a header: the complement of the folded sum
    /// (computed with the checksum field zeroed). When verifying a header
    /// summed with its checksum field in place, a valid one gives 0.
    pub fn finish(&self) -> u16 {
        !self.fold()
    }
}

/// The checksum of `data` alone (e.g. the IPv4 header, ICMPv4).
pub fn checksum(data: &[u8]) -> u16 {
    Checksum::new().add_bytes(data).finish()
}

/// The addresses an upper-layer checksum covers through its pseudo-header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PseudoHeader {
    /// IPv4 source and destination (RFC 768, RFC 793 §3.1).
    V4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
    },
    /// IPv6 source and destination (RFC 8200 §8.1). The destination is the
    /// final one (after any routing header).
    V6 {
        /// Source address.
        src: Ipv6Addr,
        /// Destination address.
        dst: Ipv6Addr,
    },
}

impl PseudoHeader {
    /// The pseudo-header sum for an upper-layer packet of `upper_len` bytes
    /// carrying `protocol`.
    pub fn sum(&self, protocol: u8, upper_len: usize) -> Checksum {
        match *self {
            PseudoHeader::V4 { src, dst } => ipv4_pseudo_header(src, dst, protocol, upper_len),
            PseudoHeader::V6 { src, dst } => ipv6_pseudo_header(src, dst, protocol, upper_len),
        }
    }

    /// Whether this is the IPv6 pseudo-header.
    pub fn is_ipv6(&self) -> bool {
        matches!(self, PseudoHeader::V6 { .. })
    }
}

/// IPv4 pseudo-header: source, destination, zero, protocol, length
/// (RFC 768; RFC 793 §3.1). The length is the 16-bit upper-layer length;
/// callers never pass more than the IPv4 total length allows.
pub fn ipv4_pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: usize) -> Checksum {
    let mut c = Checksum::new();
    c.add_bytes(&src.octets())
        .add_bytes(&dst.octets())
        .add_u16(u16::from(protocol))
        .add_u16(len as u16);
    c
}

/// IPv6 pseudo-header: source, destination, 32-bit upper-layer length,
/// three zero bytes and the next header (RFC 8200 §8.1).
pub fn ipv6_pseudo_header(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: usize) -> Checksum {
    let mut c = Checksum::new();
    c.add_bytes(&src.octets())
        .add_bytes(&dst.octets())
        .add_u32(len as u32)
        .add_u32(u32::from(next_header));
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 numerical example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(Checksum::new().add_bytes(&data).fold(), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn known_ipv4_header() {
        // A classic example header with checksum 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10] = 0xb8;
        h[11] = 0x61;
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn odd_lengths() {
        assert_eq!(checksum(&[0x12]), !0x1200);
        assert_eq!(checksum(&[]), 0xffff);
    }

    proptest! {
        #[test]
        fn split_anywhere_same_sum(data in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..200, cut2 in 0usize..200) {
            let a = cut.min(data.len());
            let b = cut2.min(data.len()).max(a);
            let whole = Checksum::new().add_bytes(&data).fold();
            let mut parts = Checksum::new();
            parts.add_bytes(&data[..a]).add_bytes(&data[a..b]).add_bytes(&data[b..]);
            prop_assert_eq!(whole, parts.fold());
        }

        #[test]
        fn matches_plain_16_bit_sum(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut reference: u64 = 0;
            for w in data.chunks(2) {
                let hi = u64::from(w[0]) << 8;
                reference += hi + w.get(1).map_or(0, |&b| u64::from(b));
            }
            while reference > 0xffff {
                reference = (reference & 0xffff) + (reference >> 16);
            }
            prop_assert_eq!(Checksum::new().add_bytes(&data).fold(), reference as u16);
        }
    }
}
