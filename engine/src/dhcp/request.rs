//! A bounds-checked, zero-copy reader for the BOOTP/DHCPv4 messages a client
//! sends (RFC 2131 §2 fixed fields, RFC 2132 options).
//!
//! It extracts only what the server needs: the fixed header fields and the
//! handful of options that steer the reply (53, 50, 54, 57, 61, 81, 52).
//! Every length is checked before it is used; a message that lies about an
//! option length is a [`DhcpParseError`], never a panic and never an
//! out-of-bounds read.
//!
//! Why not `dhcproto`'s decoder: in dhcproto 0.15 some option decoders
//! `debug_assert!` on lengths or subtract from them unchecked (e.g. option 80
//! Rapid Commit with a non-zero length, option 94, option 151), which panics
//! in debug builds on a hostile guest's input. Replies are still encoded with
//! dhcproto (see the parent module).

use std::net::Ipv4Addr;

/// Length of the fixed BOOTP header, up to and excluding the options field
/// (RFC 2131 §2, figure 1).
pub const HEADER_LEN: usize = 236;

/// The DHCP magic cookie that starts the options field (RFC 2131 §3,
/// RFC 2132 §2).
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// Offset of the first option, right after the magic cookie.
pub const OPTIONS_OFFSET: usize = HEADER_LEN + MAGIC_COOKIE.len();

/// Offset and length of the `sname` field (64 bytes).
const SNAME: core::ops::Range<usize> = 44..108;
/// Offset and length of the `file` field (128 bytes).
const FILE: core::ops::Range<usize> = 108..236;

/// Option codes the reader looks at (RFC 2132).
pub(crate) mod code {
    pub const PAD: u8 = 0;
    pub const REQUESTED_IP: u8 = 50;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const CLIENT_ID: u8 = 61;
    pub const CLIENT_FQDN: u8 = 81;
    pub const END: u8 = 255;
}

/// Why a client message could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DhcpParseError {
    /// Shorter than the fixed BOOTP header.
    #[error("message of {0} bytes is shorter than the 236-byte BOOTP header")]
    Truncated(usize),
    /// An option's length runs past the end of the field holding it.
    #[error("option {code} runs past the end of the options field")]
    OptionOverrun {
        /// The option code.
        code: u8,
    },
    /// An option the server relies on has an impossible length.
    #[error("option {code} has invalid length {len}")]
    BadOptionLength {
        /// The option code.
        code: u8,
        /// Its length byte.
        len: u8,
    },
}

/// What the server needs from one client message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DhcpRequest<'a> {
    /// `op`: 1 = BOOTREQUEST.
    pub op: u8,
    /// `htype`: 1 = Ethernet.
    pub htype: u8,
    /// `hlen`: 6 for Ethernet.
    pub hlen: u8,
    /// Transaction id, echoed in the reply.
    pub xid: u32,
    /// `flags` (bit 15 is the broadcast flag).
    pub flags: u16,
    /// Client's current address (renewing, rebinding, INFORM).
    pub ciaddr: Ipv4Addr,
    /// Relay agent address.
    pub giaddr: Ipv4Addr,
    /// Client hardware address field, all 16 bytes.
    pub chaddr: [u8; 16],
    /// Whether the options field starts with the magic cookie. A message
    /// without it is plain BOOTP (RFC 951) and carries no DHCP options.
    pub has_magic_cookie: bool,
    /// Option 53.
    pub message_type: Option<u8>,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 57, as sent (not clamped).
    pub max_message_size: Option<u16>,
    /// Option 61, first occurrence.
    pub client_id: Option<&'a [u8]>,
    /// Flags byte of option 81, when present and at least 3 bytes long.
    pub fqdn_flags: Option<u8>,
}

/// Broadcast bit of the `flags` field (RFC 2131 §2, figure 2).
pub const FLAG_BROADCAST: u16 = 0x8000;

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn ipv4_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::from(be_u32(b, at))
}

/// Calls `visit(code, value)` for every option in `area`, stopping at the
/// End option or the end of the area (RFC 2132 §2: Pad and End have no
/// length byte).
fn walk_options<'a>(
    area: &'a [u8],
    mut visit: impl FnMut(u8, &'a [u8]) -> Result<(), DhcpParseError>,
) -> Result<(), DhcpParseError> {
    let mut at = 0;
    while let Some(&option) = area.get(at) {
        match option {
            code::PAD => at += 1,
            code::END => break,
            _ => {
                let len = *area
                    .get(at + 1)
                    .ok_or(DhcpParseError::OptionOverrun { code: option })?;
                let start = at + 2;
                let end = start + usize::from(len);
                let value = area
                    .get(start..end)
                    .ok_or(DhcpParseError::OptionOverrun { code: option })?;
                visit(option, value)?;
                at = end;
            }
        }
    }
    Ok(())
}

impl<'a> DhcpRequest<'a> {
    /// Reads a message, the UDP payload of a datagram to port 67.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DhcpParseError> {
        if bytes.len() < HEADER_LEN {
            return Err(DhcpParseError::Truncated(bytes.len()));
        }
        let mut chaddr = [0; 16];
        chaddr.copy_from_slice(&bytes[28..44]);
        let mut request = DhcpRequest {
            op: bytes[0],
            htype: bytes[1],
            hlen: bytes[2],
            xid: be_u32(bytes, 4),
            flags: u16::from_be_bytes([bytes[10], bytes[11]]),
            ciaddr: ipv4_at(bytes, 12),
            giaddr: ipv4_at(bytes, 24),
            chaddr,
            has_magic_cookie: bytes.get(HEADER_LEN..OPTIONS_OFFSET) == Some(&MAGIC_COOKIE[..]),
            message_type: None,
            requested_ip: None,
            server_id: None,
            max_message_size: None,
            client_id: None,
            fqdn_flags: None,
        };
        if !request.has_magic_cookie {
            return Ok(request);
        }

        let overload = core::cell::Cell::new(0u8);
        let mut visit = |option: u8, value: &'a [u8]| -> Result<(), DhcpParseError> {
            let bad_len = || DhcpParseError::BadOptionLength {
                code: option,
                len: value.len() as u8,
            };
            // First occurrence wins: a repeated option is either a
            // concatenated long option (RFC 3396), which none of these
            // fixed-size ones may be, or a client bug.
            match option {
                code::MESSAGE_TYPE if request.message_type.is_none() => {
                    let [t] = value else { return Err(bad_len()) };
                    request.message_type = Some(*t);
                }
                code::REQUESTED_IP if request.requested_ip.is_none() => {
                    let [a, b, c, d] = value else {
                        return Err(bad_len());
                    };
                    request.requested_ip = Some(Ipv4Addr::new(*a, *b, *c, *d));
                }
                code::SERVER_ID if request.server_id.is_none() => {
                    let [a, b, c, d] = value else {
                        return Err(bad_len());
                    };
                    request.server_id = Some(Ipv4Addr::new(*a, *b, *c, *d));
                }
                code::MAX_MESSAGE_SIZE if request.max_message_size.is_none() => {
                    // A wrong length here only loses a hint: ignore it.
                    if let [hi, lo] = value {
                        request.max_message_size = Some(u16::from_be_bytes([*hi, *lo]));
                    }
                }
                // RFC 2132 §9.14: at least 2 bytes (type + identifier).
                code::CLIENT_ID if request.client_id.is_none() && value.len() >= 2 => {
                    request.client_id = Some(value);
                }
                // RFC 4702 §2: flags, RCODE1, RCODE2, then the name.
                code::CLIENT_FQDN if request.fqdn_flags.is_none() && value.len() >= 3 => {
                    request.fqdn_flags = Some(value[0]);
                }
                code::OVERLOAD => {
                    if let [o] = value {
                        overload.set(*o);
                    }
                }
                _ => {}
            }
            Ok(())
        };
        walk_options(&bytes[OPTIONS_OFFSET..], &mut visit)?;
        // RFC 2131 §4.1: with option 52, options continue in `file` (1),
        // `sname` (2) or both (3); `file` is read first.
        if overload.get() & 1 != 0 {
            walk_options(&bytes[FILE], &mut visit)?;
        }
        if overload.get() & 2 != 0 {
            walk_options(&bytes[SNAME], &mut visit)?;
        }
        Ok(request)
    }

    /// The broadcast flag (RFC 2131 §2).
    pub fn broadcast_flag(&self) -> bool {
        self.flags & FLAG_BROADCAST != 0
    }
}
