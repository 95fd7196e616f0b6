//! A bounds-checked, zero-copy reader for DHCPv6 client messages
//! (RFC 8415 §8 message format, §21 options).
//!
//! [`Dhcpv6Request::parse`] checks every option length once, including the
//! options nested in IA_NA, IA_TA and IA_PD, so the accessors afterwards
//! cannot fail and never allocate.
//!
//! Why not `dhcproto`'s decoder: in dhcproto 0.15 the Status Code, Vendor
//! Class and Vendor-specific Information decoders compute `len - 2` /
//! `len - 4` unchecked, which panics (overflow) in debug builds on a short
//! option from a hostile guest. Replies are still encoded with dhcproto.

use std::net::Ipv6Addr;

/// DHCPv6 option codes the server reads or writes (RFC 8415 §21, RFC 3646,
/// RFC 4704).
pub mod code {
    /// Client Identifier (RFC 8415 §21.2).
    pub const CLIENT_ID: u16 = 1;
    /// Server Identifier (§21.3).
    pub const SERVER_ID: u16 = 2;
    /// Identity Association for Non-temporary Addresses (§21.4).
    pub const IA_NA: u16 = 3;
    /// Identity Association for Temporary Addresses (§21.5).
    pub const IA_TA: u16 = 4;
    /// IA Address (§21.6).
    pub const IA_ADDR: u16 = 5;
    /// Option Request (§21.7).
    pub const ORO: u16 = 6;
    /// Preference (§21.8).
    pub const PREFERENCE: u16 = 7;
    /// Status Code (§21.13).
    pub const STATUS_CODE: u16 = 13;
    /// Rapid Commit (§21.14).
    pub const RAPID_COMMIT: u16 = 14;
    /// DNS Recursive Name Server (RFC 3646 §3).
    pub const DNS_SERVERS: u16 = 23;
    /// Domain Search List (RFC 3646 §4).
    pub const DOMAIN_LIST: u16 = 24;
    /// Identity Association for Prefix Delegation (§21.21).
    pub const IA_PD: u16 = 25;
    /// Client FQDN (RFC 4704 §4).
    pub const CLIENT_FQDN: u16 = 39;
}

/// Fixed part of IA_NA and IA_PD: IAID, T1, T2 (§21.4, §21.21).
const IA_NA_FIXED: usize = 12;
/// Fixed part of IA_TA: IAID (§21.5).
const IA_TA_FIXED: usize = 4;
/// Fixed part of IA Address: address, preferred and valid lifetimes (§21.6).
const IA_ADDR_FIXED: usize = 24;

/// Why a client message could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Dhcpv6ParseError {
    /// Shorter than the 4-byte message header.
    #[error("message of {0} bytes is shorter than the 4-byte DHCPv6 header")]
    Truncated(usize),
    /// An option header or body runs past the end of its container.
    #[error("option {code} runs past the end of its container")]
    OptionOverrun {
        /// The option code (0 when even the code is cut off).
        code: u16,
    },
    /// An option is shorter than its fixed part.
    #[error("option {code} has invalid length {len}")]
    BadOptionLength {
        /// The option code.
        code: u16,
        /// Its length field.
        len: u16,
    },
}

/// Iterator over the (code, value) pairs of an options area that
/// [`Dhcpv6Request::parse`] checked.
#[derive(Clone, Debug)]
pub struct Options<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Options<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (code, value, rest) = split_option(self.rest).ok()??;
        self.rest = rest;
        Some((code, value))
    }
}

/// Splits the first option off `area`: `Ok(None)` at the end.
#[allow(clippy::type_complexity)]
fn split_option(area: &[u8]) -> Result<Option<(u16, &[u8], &[u8])>, Dhcpv6ParseError> {
    if area.is_empty() {
        return Ok(None);
    }
    let (Some(code), Some(len)) = (area.get(0..2), area.get(2..4)) else {
        let code = area
            .get(0..2)
            .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
        return Err(Dhcpv6ParseError::OptionOverrun { code });
    };
    let code = u16::from_be_bytes([code[0], code[1]]);
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let value = area
        .get(4..4 + len)
        .ok_or(Dhcpv6ParseError::OptionOverrun { code })?;
    Ok(Some((code, value, &area[4 + len..])))
}

/// Checks every option of `area` and of the IAs nested in it.
fn validate(area: &[u8], depth: u8) -> Result<(), Dhcpv6ParseError> {
    let mut rest = area;
    while let Some((code, value, next)) = split_option(rest)? {
        let bad = || Dhcpv6ParseError::BadOptionLength {
            code,
            len: value.len() as u16,
        };
        let nested = match code {
            code::IA_NA | code::IA_PD => Some(value.get(IA_NA_FIXED..).ok_or_else(bad)?),
            code::IA_TA => Some(value.get(IA_TA_FIXED..).ok_or_else(bad)?),
            code::IA_ADDR => Some(value.get(IA_ADDR_FIXED..).ok_or_else(bad)?),
            _ => None,
        };
        // IA options nest IA Address options, which nest Status Codes:
        // two levels are all RFC 8415 defines; deeper ones are not read.
        if let Some(inner) = nested.filter(|_| depth < 2) {
            validate(inner, depth + 1)?;
        }
        rest = next;
    }
    Ok(())
}

/// One IA_NA from the client (RFC 8415 §21.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IaNa<'a> {
    /// The client's identifier for this IA, echoed in the reply.
    pub iaid: u32,
    /// T1 the client suggests.
    pub t1: u32,
    /// T2 the client suggests.
    pub t2: u32,
    options: &'a [u8],
}

impl<'a> IaNa<'a> {
    /// Addresses in the IA's IA Address options.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv6Addr> + 'a {
        ia_addresses(self.options)
    }
}

fn ia_addresses(options: &[u8]) -> impl Iterator<Item = Ipv6Addr> + '_ {
    Options { rest: options }
        .filter(|(code, _)| *code == code::IA_ADDR)
        .filter_map(|(_, value)| {
            let octets: [u8; 16] = value.get(..16)?.try_into().ok()?;
            Some(Ipv6Addr::from(octets))
        })
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A client message whose options were all checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dhcpv6Request<'a> {
    /// `msg-type` (RFC 8415 §7.3).
    pub msg_type: u8,
    /// `transaction-id`, echoed in the reply.
    pub xid: [u8; 3],
    options: &'a [u8],
}

impl<'a> Dhcpv6Request<'a> {
    /// Reads a message, the UDP payload of a datagram to port 547.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Dhcpv6ParseError> {
        let [msg_type, x0, x1, x2, ..] = *bytes else {
            return Err(Dhcpv6ParseError::Truncated(bytes.len()));
        };
        let options = &bytes[4..];
        validate(options, 0)?;
        Ok(Dhcpv6Request {
            msg_type,
            xid: [x0, x1, x2],
            options,
        })
    }

    /// Every top-level option, in message order.
    pub fn options(&self) -> Options<'a> {
        Options { rest: self.options }
    }

    /// Value of the first top-level option `code`.
    pub fn option(&self, code: u16) -> Option<&'a [u8]> {
        self.options().find(|(c, _)| *c == code).map(|(_, v)| v)
    }

    /// The client's DUID (Client Identifier option).
    pub fn client_id(&self) -> Option<&'a [u8]> {
        self.option(code::CLIENT_ID)
    }

    /// The server DUID the client addresses (Server Identifier option).
    pub fn server_id(&self) -> Option<&'a [u8]> {
        self.option(code::SERVER_ID)
    }

    /// Whether the client asked for the two-message exchange (§18.2.1).
    pub fn rapid_commit(&self) -> bool {
        self.option(code::RAPID_COMMIT).is_some()
    }

    /// The IA_NA options, in message order.
    pub fn ia_nas(&self) -> impl Iterator<Item = IaNa<'a>> + 'a {
        self.options()
            .filter(|(code, _)| *code == code::IA_NA)
            .map(|(_, v)| IaNa {
                iaid: be_u32(&v[0..4]),
                t1: be_u32(&v[4..8]),
                t2: be_u32(&v[8..12]),
                options: &v[IA_NA_FIXED..],
            })
    }

    /// IAIDs of the IA_TA options.
    pub fn ia_ta_ids(&self) -> impl Iterator<Item = u32> + 'a {
        self.ia_ids(code::IA_TA)
    }

    /// IAIDs of the IA_PD options.
    pub fn ia_pd_ids(&self) -> impl Iterator<Item = u32> + 'a {
        self.ia_ids(code::IA_PD)
    }

    fn ia_ids(&self, wanted: u16) -> impl Iterator<Item = u32> + 'a {
        self.options()
            .filter(move |(code, _)| *code == wanted)
            .map(|(_, v)| be_u32(&v[0..4]))
    }

    /// Every address in the client's IA_NA and IA_TA options (what a
    /// Confirm asks about, §18.3.3).
    pub fn all_ia_addresses(&self) -> impl Iterator<Item = Ipv6Addr> + 'a {
        self.options()
            .filter_map(|(code, v)| match code {
                code::IA_NA => Some(&v[IA_NA_FIXED..]),
                code::IA_TA => Some(&v[IA_TA_FIXED..]),
                _ => None,
            })
            .flat_map(ia_addresses)
    }
}
