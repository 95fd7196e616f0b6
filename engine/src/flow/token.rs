//! The one token encoding: how the engine names what a readiness event is
//! about when it registers a host socket ([`crate::HostIo::set_interest`]).
//!
//! Layout of a [`Token`]'s 64 bits:
//!
//! | bits | meaning |
//! |---|---|
//! | 63..56 | kind: which module owns it (the constants below) |
//! | 55..32 | flow entries: the slot's generation (24 bits) |
//! | 31..0 | flow entries: the slot; listeners: the listener's index |
//!
//! The kind byte `0xff` belongs to the drivers (their own descriptors:
//! guest transport, signals); the engine never makes such a token and
//! ignores events that carry one.

use crate::host_io::Token;

/// TCP connection flows.
pub const TCP_FLOW: u8 = 0x01;
/// TCP listening sockets (forwarded ports).
pub const TCP_LISTENER: u8 = 0x02;
/// UDP flows.
pub const UDP_FLOW: u8 = 0x03;
/// UDP sockets bound on forwarded ports.
pub const UDP_LISTENER: u8 = 0x04;
/// ICMP echo (ping socket) flows.
pub const ICMP_FLOW: u8 = 0x05;
/// Spliced TCP flows (pasta's loopback fast path): the socket that was
/// accepted (side 0).
pub const TCP_SPLICE: u8 = 0x06;
/// Spliced TCP flows: the socket that was connected (side 1). Its token is
/// side 0's with this kind byte ([`with_kind`]).
pub const TCP_SPLICE_PEER: u8 = 0x07;
/// Spliced UDP flows: the socket relaying toward the other namespace.
pub const UDP_SPLICE: u8 = 0x08;

/// Generation bits a flow token carries.
pub const GENERATION_MASK: u32 = 0x00ff_ffff;

/// A token in namespace `kind` with module-specific `index` (56 bits;
/// higher bits are cut).
pub const fn make(kind: u8, index: u64) -> Token {
    Token(((kind as u64) << 56) | (index & ((1 << 56) - 1)))
}

/// The namespace of a token.
pub const fn kind(t: Token) -> u8 {
    (t.0 >> 56) as u8
}

/// The module-specific part of a token.
pub const fn index(t: Token) -> u64 {
    t.0 & ((1 << 56) - 1)
}

/// The token of flow entry `slot` at `generation` (cut to
/// [`GENERATION_MASK`]) in namespace `kind`.
pub const fn flow(kind: u8, slot: u32, generation: u32) -> Token {
    make(
        kind,
        ((generation & GENERATION_MASK) as u64) << 32 | slot as u64,
    )
}

/// The same flow entry under another kind: how a flow with two sockets
/// (a spliced TCP flow) tells which of them an event is about while both
/// name one entry.
pub const fn with_kind(t: Token, kind: u8) -> Token {
    make(kind, index(t))
}

/// Whether handling an event with this token may write frames for the
/// guest. Spliced flows never do (they move bytes between two host
/// sockets), so a driver delivers their events even while the transmit
/// queue is full: a slow guest does not hold back the loopback path.
pub const fn needs_guest_room(t: Token) -> bool {
    !matches!(kind(t), TCP_SPLICE | TCP_SPLICE_PEER | UDP_SPLICE)
}

/// The `(slot, generation)` a flow token carries.
pub const fn flow_parts(t: Token) -> (u32, u32) {
    let i = index(t);
    ((i & 0xffff_ffff) as u32, (i >> 32) as u32 & GENERATION_MASK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_token_gives_back_its_kind_slot_and_generation() {
        let t = flow(UDP_FLOW, 0x1234_5678, 0x00ab_cdef);
        assert_eq!(kind(t), UDP_FLOW);
        assert_eq!(flow_parts(t), (0x1234_5678, 0x00ab_cdef));
    }

    #[test]
    fn the_same_entry_under_another_kind_keeps_its_slot_and_generation() {
        let t = flow(TCP_SPLICE, 42, 7);
        let peer = with_kind(t, TCP_SPLICE_PEER);
        assert_eq!(kind(peer), TCP_SPLICE_PEER);
        assert_eq!(flow_parts(peer), (42, 7));
        assert_eq!(with_kind(peer, TCP_SPLICE), t);
    }

    #[test]
    fn generations_wrap_within_the_token_bits() {
        let t = flow(TCP_FLOW, 7, GENERATION_MASK + 2);
        assert_eq!(flow_parts(t), (7, 1));
        assert_eq!(kind(t), TCP_FLOW);
    }
}
