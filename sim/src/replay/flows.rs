//! Flows of a guest-side capture: TCP connections, UDP exchanges and ICMP
//! echo sessions, each with what crossed the wire in each direction.
//!
//! # What this module owns
//!
//! One analysis, run on the trace and on the replay's own capture alike,
//! so both columns of the report are counted the same way:
//! unique payload bytes each way (a retransmission counts once), the
//! handshake outcome, close events in order (`c:fin`, `s:rst`, ...),
//! retransmissions, and the engine's side of the conversation (the bytes
//! it delivered, when, and how it closed) for scripting the remote peers.
//! For TCP it also keeps every segment's numbers ([`Seg`]: time, sequence,
//! length, acknowledgment, window, whether it resent old sequence space)
//! for the time–sequence graphs of `--html`; the reports do not read them.
//!
//! # What it must never do
//!
//! Panic on any frame, or look at frames between other MACs than the two
//! roles. Engine-local protocols (ARP, DHCP, DHCPv6, NDP) are not flows.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use passt_engine::Instant;
use passt_engine::wire::TcpFlags;

use super::decode::{Kind, decode, seq_len};
use super::roles::Roles;

/// Transport protocol of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP or ICMPv6 echo (the port is the echo identifier).
    Icmp,
}

impl Proto {
    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }
}

/// When something was sent: the time, then the frame's position in the
/// capture (frames stamped alike keep their captured order).
pub type Stamp = (Instant, u64);

/// A flow's identity: protocol, the guest's end, the remote end (as the
/// guest sees it).
pub type FlowKey = (Proto, SocketAddr, SocketAddr);

/// One TCP segment as seen on the wire (for the `--html` graphs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seg {
    /// When it was captured.
    pub at: Instant,
    /// Sequence number.
    pub seq: u32,
    /// Sequence space it occupies (data, SYN and FIN; RFC 9293 §3.4).
    pub len: u32,
    /// Acknowledgment number, when the ACK bit is set.
    pub ack: Option<u32>,
    /// Advertised window as in the header (unscaled).
    pub window: u16,
    /// Control bits.
    pub flags: TcpFlags,
    /// It resent sequence space already sent (a retransmission).
    pub retransmit: bool,
}

/// One direction of a flow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dir {
    /// Initial sequence number (from the SYN), TCP only.
    pub isn: Option<u32>,
    /// Highest sequence number sent so far (end of the last new byte).
    pub high: Option<u32>,
    /// Unique payload bytes (TCP) or payload bytes (UDP, ICMP).
    pub bytes: u64,
    /// TCP segments that resent sequence space already sent.
    pub retransmits: u64,
    /// Segments, datagrams or messages.
    pub packets: u64,
    /// New data in order, with the time it was first sent.
    pub chunks: Vec<(Stamp, Vec<u8>)>,
    /// When this side first sent a FIN.
    pub fin_at: Option<Stamp>,
    /// When this side first sent a RST.
    pub rst_at: Option<Stamp>,
    /// When this side sent its SYN (or SYN-ACK).
    pub syn_at: Option<Instant>,
    /// Window scale shift this side offered in its SYN (RFC 7323 §2.2).
    pub wscale: Option<u8>,
    /// Every TCP segment this side sent, in captured order.
    pub segs: Vec<Seg>,
}

/// Everything seen of one flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Identity.
    pub key: FlowKey,
    /// Whether the guest opened it (sent the SYN or the first datagram).
    pub guest_is_client: bool,
    /// First frame of the flow.
    pub first_at: Instant,
    /// From the guest (0) and from the engine (1).
    pub dirs: [Dir; 2],
    /// Close events in order: `c:fin`, `s:rst`, ...
    pub closes: Vec<String>,
}

/// Index of the guest's direction in [`Flow::dirs`].
pub const GUEST: usize = 0;
/// Index of the engine's direction.
pub const ENGINE: usize = 1;

impl Flow {
    fn new(key: FlowKey, guest_is_client: bool, at: Instant) -> Flow {
        Flow {
            key,
            guest_is_client,
            first_at: at,
            dirs: [Dir::default(), Dir::default()],
            closes: Vec::new(),
        }
    }

    /// Protocol.
    pub fn proto(&self) -> Proto {
        self.key.0
    }

    /// The client's address.
    pub fn client(&self) -> SocketAddr {
        if self.guest_is_client {
            self.key.1
        } else {
            self.key.2
        }
    }

    /// The server's address.
    pub fn server(&self) -> SocketAddr {
        if self.guest_is_client {
            self.key.2
        } else {
            self.key.1
        }
    }

    /// The client's direction.
    pub fn c2s(&self) -> &Dir {
        &self.dirs[if self.guest_is_client { GUEST } else { ENGINE }]
    }

    /// The server's direction.
    pub fn s2c(&self) -> &Dir {
        &self.dirs[if self.guest_is_client { ENGINE } else { GUEST }]
    }

    /// The handshake outcome in words.
    pub fn handshake(&self) -> &'static str {
        match self.proto() {
            Proto::Udp => "-",
            Proto::Icmp => {
                if self.dirs[ENGINE].packets > 0 {
                    "answered"
                } else {
                    "unanswered"
                }
            }
            Proto::Tcp => {
                let (c, s) = (self.c2s(), self.s2c());
                match (c.syn_at, s.syn_at, s.rst_at) {
                    (None, _, _) => "not seen",
                    (Some(_), Some(_), _) => "established",
                    (Some(_), None, Some(_)) => "refused",
                    (Some(_), None, None) => "no answer",
                }
            }
        }
    }

    fn side(&self, dir: usize) -> char {
        if (dir == GUEST) == self.guest_is_client {
            'c'
        } else {
            's'
        }
    }
}

fn is_local_service(src: SocketAddr, dst: SocketAddr) -> bool {
    let dhcp = [67, 68, 546, 547];
    dhcp.contains(&src.port()) && dhcp.contains(&dst.port())
}

/// Analyses frames (time, bytes) between the two roles into flows, in
/// order of first appearance.
pub fn analyse<'a>(
    frames: impl IntoIterator<Item = (Instant, &'a [u8])>,
    roles: Roles,
) -> Vec<Flow> {
    let mut flows: Vec<Flow> = Vec::new();
    let mut index: BTreeMap<FlowKey, usize> = BTreeMap::new();
    for (idx, (at, frame)) in frames.into_iter().enumerate() {
        let stamp = (at, idx as u64);
        let Some(d) = decode(frame) else { continue };
        let dir = if d.src_mac == roles.guest {
            GUEST
        } else if d.src_mac == roles.engine {
            ENGINE
        } else {
            continue;
        };
        let (key, opens) = match &d.kind {
            Kind::Tcp {
                src, dst, flags, ..
            } => {
                let syn = flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK);
                (flow_key(Proto::Tcp, dir, *src, *dst), syn)
            }
            Kind::Udp { src, dst, .. } if !is_local_service(*src, *dst) => {
                (flow_key(Proto::Udp, dir, *src, *dst), true)
            }
            Kind::Icmp {
                src,
                dst,
                icmp_type,
                ident,
                v6,
                ..
            } => {
                let (req, rep) = if *v6 { (128, 129) } else { (8, 0) };
                if *icmp_type != req && *icmp_type != rep {
                    continue;
                }
                let s = SocketAddr::new(*src, *ident);
                let t = SocketAddr::new(*dst, *ident);
                (flow_key(Proto::Icmp, dir, s, t), *icmp_type == req)
            }
            _ => continue,
        };
        let i = *index.entry(key).or_insert_with(|| {
            // Without a SYN (a capture started mid-connection) the guest is
            // taken as the client.
            let guest_is_client = !(opens && dir == ENGINE);
            flows.push(Flow::new(key, guest_is_client, at));
            flows.len() - 1
        });
        let f = &mut flows[i];
        match d.kind {
            Kind::Tcp {
                seq,
                ack,
                flags,
                window,
                wscale,
                payload,
                ..
            } => {
                let retransmit = tcp_segment(f, dir, stamp, seq, flags, payload);
                let d = &mut f.dirs[dir];
                if flags.contains(TcpFlags::SYN) && d.wscale.is_none() {
                    d.wscale = wscale;
                }
                d.segs.push(Seg {
                    at,
                    seq,
                    len: seq_len(flags, payload.len()),
                    ack: flags.contains(TcpFlags::ACK).then_some(ack),
                    window,
                    flags,
                    retransmit,
                });
            }
            Kind::Udp { payload, .. } => {
                let dd = &mut f.dirs[dir];
                dd.packets += 1;
                dd.bytes += payload.len() as u64;
                dd.chunks.push((stamp, payload.to_vec()));
            }
            Kind::Icmp { len, .. } => {
                let dd = &mut f.dirs[dir];
                dd.packets += 1;
                dd.bytes += len as u64;
            }
            _ => {}
        }
    }
    flows
}

fn flow_key(proto: Proto, dir: usize, src: SocketAddr, dst: SocketAddr) -> FlowKey {
    if dir == GUEST {
        (proto, src, dst)
    } else {
        (proto, dst, src)
    }
}

/// Counts one TCP segment; true if it was a retransmission.
fn tcp_segment(
    f: &mut Flow,
    dir: usize,
    at: Stamp,
    seq: u32,
    flags: TcpFlags,
    payload: &[u8],
) -> bool {
    let side = f.side(dir);
    let d = &mut f.dirs[dir];
    d.packets += 1;
    if flags.contains(TcpFlags::RST) {
        if d.rst_at.is_none() {
            d.rst_at = Some(at);
            f.closes.push(format!("{side}:rst"));
        }
        return false;
    }
    if flags.contains(TcpFlags::SYN) && d.syn_at.is_none() {
        d.syn_at = Some(at.0);
        d.isn = Some(seq);
    }
    let len = seq_len(flags, payload.len());
    if len == 0 {
        return false;
    }
    let end = seq.wrapping_add(len);
    let high = *d.high.get_or_insert(seq);
    if (end.wrapping_sub(high) as i32) <= 0 {
        d.retransmits += 1;
        return true;
    }
    // New sequence space: the part of the payload past `high` (a gap the
    // capture missed counts as zero bytes, in place, also before a bare
    // FIN: a capture after a lossy link shows the FIN, then the lost data
    // only as a retransmission).
    let syn = flags.contains(TcpFlags::SYN);
    let data_start = seq.wrapping_add(u32::from(syn));
    let data_end = data_start.wrapping_add(payload.len() as u32);
    let gap = !syn && (data_start.wrapping_sub(high) as i32) > 0;
    if (data_end.wrapping_sub(high) as i32) > 0 && (!payload.is_empty() || gap) {
        let from = high.wrapping_sub(data_start) as i32;
        let mut chunk = Vec::new();
        let skip = if from > 0 {
            from as usize
        } else {
            chunk.resize((-from) as usize, 0);
            0
        };
        chunk.extend_from_slice(&payload[skip.min(payload.len())..]);
        d.bytes += chunk.len() as u64;
        d.chunks.push((at, chunk));
    }
    d.high = Some(end);
    if flags.contains(TcpFlags::FIN) && d.fin_at.is_none() {
        d.fin_at = Some(at);
        f.closes.push(format!("{side}:fin"));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_lost_before_a_fin_counts_once_when_it_is_retransmitted() {
        let key = (
            Proto::Tcp,
            "192.0.2.15:40000".parse().unwrap(),
            "203.0.113.7:7".parse().unwrap(),
        );
        let mut f = Flow::new(key, true, Instant::ZERO);
        let t = |i: u64| (Instant::from_millis(i), i);
        let (ack, fin) = (TcpFlags::ACK, TcpFlags::ACK | TcpFlags::FIN);
        tcp_segment(&mut f, ENGINE, t(1), 1000, TcpFlags::SYN | ack, &[]);
        tcp_segment(&mut f, ENGINE, t(2), 1001, ack, &[7; 100]);
        // 1101..1201 lost before the capture point; the FIN arrives.
        tcp_segment(&mut f, ENGINE, t(3), 1201, fin, &[]);
        // The lost data, retransmitted: already counted (as a gap).
        tcp_segment(&mut f, ENGINE, t(4), 1101, ack, &[8; 100]);
        let d = &f.dirs[ENGINE];
        assert_eq!(d.bytes, 200, "each byte once");
        assert_eq!(d.retransmits, 1);
        assert_eq!(f.closes, ["s:fin"]);
        // A SYN alone is no data.
        let mut g = Flow::new(key, true, Instant::ZERO);
        tcp_segment(&mut g, GUEST, t(1), 5, TcpFlags::SYN, &[]);
        assert_eq!(g.dirs[GUEST].bytes, 0);
    }
}
