//! The built-in ARP responder (RFC 826): answers the guest's requests for
//! every IPv4 address but its own with our MAC.
//!
//! In the passt model everything that is not the guest is "us": the
//! gateway, the DNS server, any host on the guest's subnet and beyond. So a
//! request for any address other than the guest's own gets a reply. This
//! module owns that decision and the reply's fields; it is a pure function
//! of the configuration and the request, with no state, no time and no
//! I/O. It never answers:
//! - replies and anything but requests;
//! - ARP probes (sender address 0.0.0.0, RFC 5227 §2.1.1): a probe is the
//!   guest checking that an address it wants to use is free. The address it
//!   probes for is normally its own, and answering would make it give the
//!   address up; for any other address the guest asking is already
//!   misconfigured and a reply would only make it pick another address, so
//!   probes are never answered;
//! - announcements / gratuitous ARP (sender address == target address,
//!   RFC 5227 §2.3);
//! - requests for the guest's own address (`config.ipv4.addr`);
//! - anything when IPv4 is not configured.
//!
//! The dispatcher checks the Ethernet destination (broadcast or our MAC)
//! before calling in.

use crate::MacAddr;
use crate::config::Config;
use crate::counters::DropReason;
use crate::wire::{self, ArpOperation, ArpRepr, WireError};
use std::net::Ipv4Addr;

/// An ARP reply to send to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpReply {
    /// Ethernet source (our MAC).
    pub eth_src: MacAddr,
    /// Ethernet destination (the requester).
    pub eth_dst: MacAddr,
    /// The ARP packet.
    pub arp: ArpRepr,
}

impl ArpReply {
    /// Length of the frame [`ArpReply::build`] writes (42 bytes).
    pub const FRAME_LEN: usize = wire::ARP_FRAME_LEN;

    /// Writes the reply frame into `buf`; returns its length.
    pub fn build(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        wire::build_arp(buf, self.eth_src, self.eth_dst, &self.arp)
    }
}

/// What to do with an ARP packet from the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOutcome {
    /// Send this reply.
    Reply(ArpReply),
    /// Send nothing; count the drop under this reason.
    Ignore(DropReason),
}

/// Decides the answer to an ARP packet from the guest.
pub fn respond(config: &Config, request: &ArpRepr) -> ArpOutcome {
    let Some(v4) = &config.ipv4 else {
        return ArpOutcome::Ignore(DropReason::ServiceDisabled);
    };
    if request.operation != ArpOperation::Request
        || request.sender_ip == Ipv4Addr::UNSPECIFIED
        || request.sender_ip == request.target_ip
        || request.target_ip == v4.addr
    {
        return ArpOutcome::Ignore(DropReason::ArpIgnored);
    }
    // RFC 826 "Packet Reception": swap sender and target, fill in the
    // hardware address asked for, opcode reply.
    ArpOutcome::Reply(ArpReply {
        eth_src: config.our_mac,
        eth_dst: request.sender_hw,
        arp: ArpRepr {
            operation: ArpOperation::Reply,
            sender_hw: config.our_mac,
            sender_ip: request.target_ip,
            target_hw: request.sender_hw,
            target_ip: request.sender_ip,
        },
    })
}

/// [`respond`] and, if there is a reply, [`ArpReply::build`]: returns the
/// frame length, or 0 when nothing is to be sent (the shape
/// [`crate::txq::TxQueue::push_with`] expects).
pub fn build_reply(config: &Config, request: &ArpRepr, buf: &mut [u8]) -> usize {
    match respond(config, request) {
        ArpOutcome::Reply(r) => r.build(buf).unwrap_or(0),
        ArpOutcome::Ignore(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{L3, parse_frame};

    const GUEST_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);

    fn request(sender_ip: [u8; 4], target_ip: [u8; 4]) -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            sender_hw: GUEST_MAC,
            sender_ip: Ipv4Addr::from(sender_ip),
            target_hw: MacAddr::ZERO,
            target_ip: Ipv4Addr::from(target_ip),
        }
    }

    #[test]
    fn answers_gateway_and_everything_else() {
        let c = Config::example();
        for target in [
            [192, 0, 2, 1],
            [192, 0, 2, 53],
            [192, 0, 2, 200],
            [8, 8, 8, 8],
        ] {
            let ArpOutcome::Reply(r) = respond(&c, &request([192, 0, 2, 15], target)) else {
                panic!("no reply for {target:?}")
            };
            assert_eq!(r.eth_dst, GUEST_MAC);
            assert_eq!(r.eth_src, c.our_mac);
            assert_eq!(r.arp.operation, ArpOperation::Reply);
            assert_eq!(r.arp.sender_hw, c.our_mac);
            assert_eq!(r.arp.sender_ip, Ipv4Addr::from(target));
            assert_eq!(r.arp.target_hw, GUEST_MAC);
            assert_eq!(r.arp.target_ip, Ipv4Addr::new(192, 0, 2, 15));
        }
    }

    #[test]
    fn ignores_what_it_must() {
        let c = Config::example();
        let ignored = |r: &ArpRepr| respond(&c, r) == ArpOutcome::Ignore(DropReason::ArpIgnored);
        // Request for the guest's own address.
        assert!(ignored(&request([192, 0, 2, 99], [192, 0, 2, 15])));
        // DAD probe for the guest's address, and for another one.
        assert!(ignored(&request([0, 0, 0, 0], [192, 0, 2, 15])));
        assert!(ignored(&request([0, 0, 0, 0], [192, 0, 2, 1])));
        // Gratuitous ARP / announcement.
        assert!(ignored(&request([192, 0, 2, 15], [192, 0, 2, 15])));
        assert!(ignored(&request([192, 0, 2, 1], [192, 0, 2, 1])));
        // Replies.
        let mut reply = request([192, 0, 2, 15], [192, 0, 2, 1]);
        reply.operation = ArpOperation::Reply;
        assert!(ignored(&reply));
        // No IPv4 at all.
        let mut c6 = Config::example();
        c6.ipv4 = None;
        assert_eq!(
            respond(&c6, &request([192, 0, 2, 15], [192, 0, 2, 1])),
            ArpOutcome::Ignore(DropReason::ServiceDisabled)
        );
        let mut buf = [0u8; 64];
        assert_eq!(
            build_reply(&c, &request([0, 0, 0, 0], [192, 0, 2, 15]), &mut buf),
            0
        );
    }

    /// Request built by etherparse, reply decoded by etherparse.
    #[test]
    fn snapshot_gateway_reply() {
        let arp = etherparse::ArpPacket::new(
            etherparse::ArpHardwareId::ETHERNET,
            etherparse::EtherType::IPV4,
            etherparse::ArpOperation::REQUEST,
            &GUEST_MAC.0,
            &[192, 0, 2, 15],
            &[0; 6],
            &[192, 0, 2, 1],
        )
        .unwrap();
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ethernet2(GUEST_MAC.0, [0xff; 6])
            .arp(arp)
            .write(&mut frame)
            .unwrap();
        let parsed = parse_frame(&frame).unwrap();
        let L3::Arp(req) = parsed.l3 else {
            panic!("not ARP")
        };
        let mut out = [0u8; 64];
        let n = build_reply(&Config::example(), &req, &mut out);
        assert_eq!(n, ArpReply::FRAME_LEN);
        insta::assert_snapshot!(decode_with_etherparse(&out[..n]));
    }

    fn decode_with_etherparse(frame: &[u8]) -> String {
        let p = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link else {
            panic!()
        };
        let Some(etherparse::NetSlice::Arp(arp)) = p.net else {
            panic!()
        };
        let a = arp.to_packet().try_eth_ipv4().unwrap();
        format!(
            "eth.dst = {}\neth.src = {}\neth.type = {:?}\narp.op = {:?}\narp.sender = {} {}\narp.target = {} {}\nlen = {}\n",
            MacAddr(eth.destination()),
            MacAddr(eth.source()),
            eth.ether_type(),
            a.operation,
            MacAddr(a.sender_mac),
            a.sender_ipv4_addr(),
            MacAddr(a.target_mac),
            Ipv4Addr::from(a.target_ipv4),
            frame.len(),
        )
    }
}
