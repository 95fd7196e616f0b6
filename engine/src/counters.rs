//! Counters the caller can read: frames in and out, and every drop by reason.
//!
//! Every frame the engine does not act on is counted here under exactly one
//! [`DropReason`], so "sent = delivered + counted drops" can be checked by
//! tests and by users (`passt-sim` prints them; the binaries log them on
//! exit).

use core::fmt;

/// Why a frame from the guest (or one for it) was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than the headers it claims to carry.
    Truncated,
    /// A header field is impossible (bad version, header length, total length).
    Malformed,
    /// IPv4 header, ICMP, UDP or TCP checksum did not verify.
    BadChecksum,
    /// IPv4 fragment (the engine does not reassemble).
    Ipv4Fragment,
    /// IPv6 fragment header in the chain.
    Ipv6Fragment,
    /// EtherType the engine does not speak (not IPv4, IPv6 or ARP).
    UnknownEtherType,
    /// An IP protocol / next header the engine does not translate.
    UnsupportedProtocol,
    /// Addressed to a MAC that is neither ours, broadcast nor a multicast
    /// group we answer.
    NotForUs,
    /// ARP announcement or reply, or a request for the guest's own address:
    /// nothing to answer.
    ArpIgnored,
    /// NDP message we do not answer (e.g. NS for the guest's own address
    /// during DAD, redirects, unsolicited NAs).
    NdpIgnored,
    /// A DHCP/DHCPv6 message that gets no reply (wrong server id, unknown
    /// type, undecodable).
    DhcpIgnored,
    /// The service that would handle it is switched off in the configuration.
    ServiceDisabled,
    /// Source address is not one the guest may use (spoofed, martian).
    BadSource,
    /// The frame exceeds the configured MTU.
    TooBig,
    /// The flow table is full: the new flow was refused.
    FlowTableFull,
    /// The transmit queue toward the guest was full.
    TxQueueFull,
    /// Handled by a module that has not landed yet (kept separate so it is
    /// visible, never silently merged into another reason).
    NotImplemented,
    /// A host socket refused or failed the operation (send buffer full,
    /// message too long, unreachable, ping sockets not permitted, ...).
    HostSocketError,
    /// A host-side peer or address with no representation on the guest
    /// side (a loopback peer with the loopback mapping switched off, no
    /// guest address known yet for that family).
    Unmappable,
    /// A datagram from a new peer on a forwarded port whose rule was
    /// removed (the socket stays open only for the flows it still serves).
    ForwardClosed,
}

impl DropReason {
    /// Every reason, in a fixed order (the order counters are printed in).
    pub const ALL: [DropReason; 20] = [
        DropReason::Truncated,
        DropReason::Malformed,
        DropReason::BadChecksum,
        DropReason::Ipv4Fragment,
        DropReason::Ipv6Fragment,
        DropReason::UnknownEtherType,
        DropReason::UnsupportedProtocol,
        DropReason::NotForUs,
        DropReason::ArpIgnored,
        DropReason::NdpIgnored,
        DropReason::DhcpIgnored,
        DropReason::ServiceDisabled,
        DropReason::BadSource,
        DropReason::TooBig,
        DropReason::FlowTableFull,
        DropReason::TxQueueFull,
        DropReason::NotImplemented,
        DropReason::HostSocketError,
        DropReason::Unmappable,
        DropReason::ForwardClosed,
    ];

    /// A stable snake_case name for reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Malformed => "malformed",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::Ipv4Fragment => "ipv4_fragment",
            DropReason::Ipv6Fragment => "ipv6_fragment",
            DropReason::UnknownEtherType => "unknown_ethertype",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::NotForUs => "not_for_us",
            DropReason::ArpIgnored => "arp_ignored",
            DropReason::NdpIgnored => "ndp_ignored",
            DropReason::DhcpIgnored => "dhcp_ignored",
            DropReason::ServiceDisabled => "service_disabled",
            DropReason::BadSource => "bad_source",
            DropReason::TooBig => "too_big",
            DropReason::FlowTableFull => "flow_table_full",
            DropReason::TxQueueFull => "tx_queue_full",
            DropReason::NotImplemented => "not_implemented",
            DropReason::HostSocketError => "host_socket_error",
            DropReason::Unmappable => "unmappable",
            DropReason::ForwardClosed => "forward_closed",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Frame and drop counters. Plain integers: reading them costs nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames received from the guest.
    pub frames_in: u64,
    /// Bytes received from the guest (Ethernet frames, no length prefix).
    pub bytes_in: u64,
    /// Frames queued for the guest.
    pub frames_out: u64,
    /// Bytes queued for the guest.
    pub bytes_out: u64,
    /// ARP replies sent.
    pub arp_replies: u64,
    /// Neighbour advertisements sent.
    pub ndp_neighbor_adverts: u64,
    /// Router advertisements sent (solicited and unsolicited).
    pub ndp_router_adverts: u64,
    /// DHCPv4 replies sent (OFFER, ACK, NAK).
    pub dhcp_replies: u64,
    /// DHCPv6 replies sent (ADVERTISE, REPLY).
    pub dhcpv6_replies: u64,
    /// UDP datagrams from the guest sent on host sockets.
    pub udp_to_host: u64,
    /// UDP datagrams from host sockets delivered to the guest.
    pub udp_to_guest: u64,
    /// Flows opened, every protocol together (TCP both directions, UDP
    /// both directions, ICMP echo); counted by [`crate::flow::FlowTable`].
    /// Flows refused because the table was full are counted under
    /// [`DropReason::FlowTableFull`].
    pub flows_opened: u64,
    /// Flows closed, expired or aborted, every protocol together.
    pub flows_closed: u64,
    /// ICMP/ICMPv6 errors for UDP flows relayed to the guest.
    pub icmp_errors_to_guest: u64,
    /// Destination unreachable messages the engine generated itself to
    /// refuse a guest packet it could not forward (flow table full, no
    /// route, host refused the socket); see `refusal::Refusal`.
    pub icmp_refusals_to_guest: u64,
    /// Refusals not sent because the token bucket was empty
    /// (`refusal::RefusalLimiter`); the packets are still counted as drops.
    pub icmp_refusals_rate_limited: u64,
    /// Echo requests sent through ping sockets.
    pub echo_requests_sent: u64,
    /// Echo replies delivered to the guest.
    pub echo_replies_to_guest: u64,
    /// Echo requests refused because the host forbids ping sockets
    /// (`net.ipv4.ping_group_range` excludes us). The binary should warn
    /// once when this becomes non-zero (see [`Counters::ping_not_permitted`]
    /// and `Icmp::take_warning`).
    pub ping_not_permitted: u64,
    /// TCP: RSTs sent to the guest.
    pub tcp_rst_to_guest: u64,
    /// TCP: host sockets aborted (RST to the host peer).
    pub tcp_rst_to_host: u64,
    /// TCP: data segments sent to the guest (first transmissions and
    /// retransmissions).
    pub tcp_data_segments_out: u64,
    /// TCP: retransmission timeouts that rewound the send sequence.
    pub tcp_rto_expiries: u64,
    /// TCP: fast retransmits after duplicate ACKs.
    pub tcp_fast_retransmits: u64,
    /// TCP: host `send` calls that took less than offered (or nothing).
    pub tcp_partial_writes: u64,
    /// TCP: triple duplicate ACKs sent to restart a guest's recovery after
    /// we dropped data that followed a hole.
    pub tcp_recovery_dup_acks: u64,
    /// TCP: timed recovery nudges (bursts of five ACKs sent because the
    /// guest had not resent dropped data in time).
    pub tcp_recovery_nudges: u64,
    /// TCP: zero-window probes sent.
    pub tcp_window_probes: u64,
    /// TCP: keep-alive probes sent.
    pub tcp_keepalives: u64,
    /// Spliced TCP flows (loopback fast path) opened: connections accepted
    /// whose other side was connected.
    pub tcp_splice_opened: u64,
    /// Spliced TCP connections refused: the other side could not be
    /// connected (the accepted socket was reset), or `--splice-only` had no
    /// splice for a peer off loopback.
    pub tcp_splice_refused: u64,
    /// Spliced TCP flows ended by a reset or an error (both sockets were
    /// reset).
    pub tcp_splice_resets: u64,
    /// Bytes moved by spliced TCP flows, both directions.
    pub tcp_splice_bytes: u64,
    /// Spliced UDP datagrams relayed, both directions.
    pub udp_splice_datagrams: u64,
    drops: [u64; DropReason::ALL.len()],
}

impl Counters {
    /// Counts one drop.
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    /// Drops counted for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// Sum of all drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Non-zero drop counters in the fixed order of [`DropReason::ALL`].
    pub fn nonzero_drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.drops(*r)))
            .filter(|(_, n)| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_indexed_in_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r}");
        }
    }

    #[test]
    fn counts_by_reason() {
        let mut c = Counters::default();
        c.drop(DropReason::BadChecksum);
        c.drop(DropReason::BadChecksum);
        c.drop(DropReason::Truncated);
        assert_eq!(c.drops(DropReason::BadChecksum), 2);
        assert_eq!(c.total_drops(), 3);
        let v: Vec<_> = c.nonzero_drops().collect();
        assert_eq!(
            v,
            vec![(DropReason::Truncated, 1), (DropReason::BadChecksum, 2)]
        );
    }
}
