//! The recorded guest (`--guest recorded`): the trace's guest frames fed to
//! the engine at their recorded times.
//!
//! # What this module owns
//!
//! - Feeding: each guest frame of the trace leaves at its recorded time,
//!   in order within its flow.
//! - TCP numbering: the acknowledgment number (and SACK edges, RFC 2018)
//!   of a guest segment refer to the engine's sequence space; they are
//!   moved from the trace's engine ISN to the replayed engine's, and the
//!   TCP checksum recomputed (RFC 9293 §3.1). UDP checksums are
//!   recomputed too (captures on a tap hold offloaded, unfinished ones).
//! - Holding: a segment acknowledging data the replayed engine has not
//!   sent yet waits in virtual time until it has; past the hold bound it
//!   is sent as recorded and a divergence is noted.
//!
//! # What it must never do
//!
//! Invent frames or change anything but the numbers above; read the wall
//! clock.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use passt_engine::Instant;
use passt_engine::wire::{PseudoHeader, TcpFlags, checksum::Checksum, protocol};

use super::decode::{Kind, decode, seq_len};
use super::flows::{ENGINE, Flow, FlowKey, Proto};
use super::input::TraceFrame;

/// (guest end, remote end) of a TCP connection.
type Conn = (SocketAddr, SocketAddr);

#[derive(Debug)]
struct Pending {
    at: Instant,
    frame: Vec<u8>,
    conn: Option<Conn>,
    held_since: Option<Instant>,
}

/// The replayed engine's side of a connection, as the guest received it.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    isn: Option<u32>,
    high: Option<u32>,
}

/// A guest frame held past the bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// The flow.
    pub key: FlowKey,
    /// Recorded time of the frame.
    pub at: Instant,
    /// Bytes past what the replayed engine had sent.
    pub ahead: u32,
}

/// The recorded guest (see the [module docs](self)).
#[derive(Debug)]
pub struct RecordedGuest {
    pending: Vec<Pending>,
    /// The trace's engine ISN per connection.
    trace_isn: BTreeMap<Conn, u32>,
    replay: BTreeMap<Conn, Seen>,
    hold: Duration,
    held: Vec<Held>,
    /// Connections that already waited past the bound once: their later
    /// frames are no longer held (one divergence is reported, and the rest
    /// of the conversation still goes through at its recorded times).
    gave_up: BTreeSet<Conn>,
    sent: u64,
}

impl RecordedGuest {
    /// The guest frames of `frames` (those from `guest_mac`), with the
    /// engine ISNs of the trace's `flows`.
    pub fn new(
        frames: &[TraceFrame],
        guest_mac: passt_engine::MacAddr,
        flows: &[Flow],
        hold: Duration,
    ) -> Self {
        let trace_isn = flows
            .iter()
            .filter(|f| f.proto() == Proto::Tcp)
            .filter_map(|f| Some(((f.key.1, f.key.2), f.dirs[ENGINE].isn?)))
            .collect();
        let pending = frames
            .iter()
            .filter_map(|f| {
                let d = decode(&f.data)?;
                if d.src_mac != guest_mac {
                    return None;
                }
                let conn = match d.kind {
                    Kind::Tcp { src, dst, .. } => Some((src, dst)),
                    _ => None,
                };
                Some(Pending {
                    at: f.at,
                    frame: f.data.clone(),
                    conn,
                    held_since: None,
                })
            })
            .collect();
        RecordedGuest {
            pending,
            trace_isn,
            replay: BTreeMap::new(),
            hold,
            held: Vec::new(),
            gave_up: BTreeSet::new(),
            sent: 0,
        }
    }

    /// Guest frames in the trace still to send.
    pub fn remaining(&self) -> usize {
        self.pending.len()
    }

    /// Frames sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Frames that waited past the hold bound.
    pub fn held(&self) -> &[Held] {
        &self.held
    }

    /// A frame from the engine reached the guest: note how far the engine
    /// has sent on each connection.
    pub fn on_frame(&mut self, _now: Instant, frame: &[u8]) {
        let Some(d) = decode(frame) else { return };
        let Kind::Tcp {
            src,
            dst,
            seq,
            flags,
            payload,
            ..
        } = d.kind
        else {
            return;
        };
        let s = self.replay.entry((dst, src)).or_default();
        if flags.contains(TcpFlags::SYN) {
            s.isn = Some(seq);
        }
        let end = seq.wrapping_add(seq_len(flags, payload.len()));
        match s.high {
            Some(h) if (end.wrapping_sub(h) as i32) <= 0 => {}
            _ => s.high = Some(end),
        }
    }

    /// When a frame is next due (or a held one reaches its bound).
    /// Only the first pending frame of each connection counts: the ones
    /// behind it wait for it, whatever their time.
    pub fn poll_at(&self) -> Option<Instant> {
        let mut first: BTreeSet<Conn> = BTreeSet::new();
        self.pending
            .iter()
            .filter(|p| p.conn.is_none_or(|c| first.insert(c)))
            .map(|p| match p.held_since {
                Some(h) => h + self.hold,
                None => p.at,
            })
            .min()
    }

    /// Whether every frame was sent.
    pub fn finished(&self) -> bool {
        self.pending.is_empty()
    }

    /// Sends every frame due at `now` whose flow is not held.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        let mut blocked: BTreeSet<Conn> = BTreeSet::new();
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].at > now {
                break;
            }
            let conn = self.pending[i].conn;
            if conn.is_some_and(|c| blocked.contains(&c)) {
                i += 1;
                continue;
            }
            match self.rewrite(i, now) {
                Some(frame) => {
                    self.pending.remove(i);
                    self.sent += 1;
                    out.push(frame);
                }
                None => {
                    let p = &mut self.pending[i];
                    p.held_since.get_or_insert(now);
                    if let Some(c) = conn {
                        blocked.insert(c);
                    }
                    i += 1;
                }
            }
        }
    }

    /// The frame to send for pending entry `i`, or `None` to hold it.
    fn rewrite(&mut self, i: usize, now: Instant) -> Option<Vec<u8>> {
        let p = &self.pending[i];
        let mut frame = p.frame.clone();
        let Some(d) = decode(&p.frame) else {
            return Some(frame);
        };
        match d.kind {
            Kind::Tcp {
                src,
                dst,
                ack,
                flags,
                l4_at,
                l4_len,
                ..
            } => {
                let conn = (src, dst);
                if flags.contains(TcpFlags::ACK)
                    && let Some(&tisn) = self.trace_isn.get(&conn)
                {
                    let seen = self.replay.get(&conn).copied().unwrap_or_default();
                    let rel = ack.wrapping_sub(tisn);
                    let ready = match (seen.isn, seen.high) {
                        (Some(risn), Some(high)) => {
                            let sent = high.wrapping_sub(risn);
                            (sent.wrapping_sub(rel) as i32) >= 0
                        }
                        _ => false,
                    };
                    let timed_out = p.held_since.is_some_and(|h| now >= h + self.hold)
                        || self.gave_up.contains(&conn);
                    if !ready && !timed_out {
                        return None;
                    }
                    if !ready && self.gave_up.insert(conn) {
                        let ahead = match (seen.isn, seen.high) {
                            (Some(risn), Some(high)) => rel.wrapping_sub(high.wrapping_sub(risn)),
                            _ => rel,
                        };
                        self.held.push(Held {
                            key: (Proto::Tcp, src, dst),
                            at: p.at,
                            ahead,
                        });
                    }
                    if let Some(risn) = seen.isn {
                        translate_acks(&mut frame, l4_at, tisn, risn);
                    }
                }
                fix_checksum(&mut frame, l4_at, l4_len, protocol::TCP, 16, src, dst);
            }
            Kind::Udp {
                src,
                dst,
                l4_at,
                l4_len,
                ..
            } => {
                let zero = frame.get(l4_at + 6..l4_at + 8) == Some(&[0, 0]);
                if !(zero && src.is_ipv4()) {
                    fix_checksum(&mut frame, l4_at, l4_len, protocol::UDP, 6, src, dst);
                }
            }
            _ => {}
        }
        Some(frame)
    }
}

fn rd32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn wr32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

/// Moves the acknowledgment number and SACK edges of the TCP header at
/// `l4` from the trace's engine ISN to the replay's.
fn translate_acks(frame: &mut [u8], l4: usize, trace_isn: u32, replay_isn: u32) {
    let shift = |v: u32| v.wrapping_sub(trace_isn).wrapping_add(replay_isn);
    if let Some(a) = rd32(frame, l4 + 8) {
        wr32(frame, l4 + 8, shift(a));
    }
    let Some(&off) = frame.get(l4 + 12) else {
        return;
    };
    let hl = usize::from(off >> 4) * 4;
    let mut at = l4 + 20;
    let end = (l4 + hl).min(frame.len());
    // RFC 9293 §3.2 option layout; RFC 2018 §3 SACK (kind 5).
    while at < end {
        match frame[at] {
            0 => break,
            1 => at += 1,
            kind => {
                let Some(&len) = frame.get(at + 1) else { break };
                let len = usize::from(len);
                if len < 2 || at + len > end {
                    break;
                }
                if kind == 5 {
                    let mut e = at + 2;
                    while e + 4 <= at + len {
                        if let Some(v) = rd32(frame, e) {
                            wr32(frame, e, shift(v));
                        }
                        e += 4;
                    }
                }
                at += len;
            }
        }
    }
}

/// Recomputes the transport checksum (at `ck` within the header) of the
/// segment or datagram at `l4..l4 + len` (RFC 9293 §3.1, RFC 768).
fn fix_checksum(
    frame: &mut [u8],
    l4: usize,
    len: usize,
    proto: u8,
    ck: usize,
    src: SocketAddr,
    dst: SocketAddr,
) {
    let pseudo = match (src.ip(), dst.ip()) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => PseudoHeader::V4 { src: s, dst: d },
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => PseudoHeader::V6 { src: s, dst: d },
        _ => return,
    };
    let Some(seg) = frame.get_mut(l4..l4 + len) else {
        return;
    };
    if seg.len() < ck + 2 {
        return;
    }
    seg[ck] = 0;
    seg[ck + 1] = 0;
    let mut c: Checksum = pseudo.sum(proto, len);
    c.add_bytes(seg);
    let mut v = c.finish();
    if proto == protocol::UDP && v == 0 {
        v = 0xffff; // RFC 768: zero means "no checksum".
    }
    seg[ck..ck + 2].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use passt_engine::MacAddr;
    use passt_engine::wire::{self, IpRepr, Ipv4Repr, L3, L4, SackBlock, TcpOptions, TcpRepr};

    fn segment(ack: u32, sack: Option<SackBlock>) -> Vec<u8> {
        let ip = IpRepr::V4(Ipv4Repr::new(
            "192.0.2.15".parse().unwrap(),
            "203.0.113.7".parse().unwrap(),
            wire::protocol::TCP,
            64,
        ));
        let mut options = TcpOptions::default();
        if let Some(b) = sack {
            options.sack_blocks[0] = b;
            options.sack_count = 1;
        }
        let tcp = TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq: 77,
            ack,
            flags: TcpFlags::ACK,
            window: 100,
            options,
            ..TcpRepr::default()
        };
        let mut buf = vec![0; 200];
        let n = wire::build_tcp(
            &mut buf,
            MacAddr([2, 0, 0, 0, 0, 0x15]),
            MacAddr::PASST_DEFAULT,
            ip,
            &tcp,
            b"data",
        )
        .unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn acks_and_sack_edges_move_to_the_replayed_isn_with_a_valid_checksum() {
        let sack = SackBlock {
            left: 1_500,
            right: 2_000,
        };
        let mut f = segment(1_100, Some(sack));
        let Some(Kind::Tcp {
            src,
            dst,
            l4_at,
            l4_len,
            ..
        }) = decode(&f).map(|d| d.kind)
        else {
            panic!("not TCP");
        };
        translate_acks(&mut f, l4_at, 1_000, u32::MAX - 50);
        fix_checksum(&mut f, l4_at, l4_len, protocol::TCP, 16, src, dst);
        // parse_frame verifies every checksum.
        let parsed = wire::parse_frame(&f).expect("valid frame");
        let L3::Ipv4 {
            l4: L4::Tcp { tcp, payload },
            ..
        } = parsed.l3
        else {
            panic!("not TCP");
        };
        assert_eq!(tcp.ack, (u32::MAX - 50).wrapping_add(100));
        assert_eq!(tcp.seq, 77, "the guest's own numbers stay");
        let b = tcp.options.sack_blocks[0];
        assert_eq!(
            (b.left, b.right),
            (449, 949),
            "SACK edges wrap the same way"
        );
        assert_eq!(payload, b"data");
    }

    #[test]
    fn a_segment_acknowledging_unsent_data_waits_then_goes_with_a_divergence() {
        let conn: Conn = (
            "192.0.2.15:40000".parse().unwrap(),
            "203.0.113.7:80".parse().unwrap(),
        );
        let mut g = RecordedGuest {
            pending: vec![Pending {
                at: Instant::from_millis(10),
                frame: segment(1_101, None),
                conn: Some(conn),
                held_since: None,
            }],
            trace_isn: [(conn, 1_000)].into_iter().collect(),
            replay: BTreeMap::new(),
            hold: Duration::from_millis(5),
            held: Vec::new(),
            gave_up: BTreeSet::new(),
            sent: 0,
        };
        let mut out = Vec::new();
        // The replayed engine has sent its SYN-ACK and 50 bytes only.
        g.replay.insert(
            conn,
            Seen {
                isn: Some(9_000),
                high: Some(9_051),
            },
        );
        g.poll(Instant::from_millis(10), &mut out);
        assert!(out.is_empty(), "held: 100 bytes acknowledged, 50 sent");
        assert_eq!(g.poll_at(), Some(Instant::from_millis(15)));
        // The engine sends the rest: the segment goes, translated.
        g.replay.insert(
            conn,
            Seen {
                isn: Some(9_000),
                high: Some(9_101),
            },
        );
        g.poll(Instant::from_millis(11), &mut out);
        assert_eq!(out.len(), 1);
        assert!(g.held().is_empty());
        let Some(Kind::Tcp { ack, .. }) = decode(&out[0]).map(|d| d.kind) else {
            panic!("not TCP");
        };
        assert_eq!(ack, 9_101);
        // The same segment with the engine stuck: sent at the bound, noted.
        let mut g2 = RecordedGuest {
            pending: vec![Pending {
                at: Instant::from_millis(10),
                frame: segment(1_101, None),
                conn: Some(conn),
                held_since: None,
            }],
            replay: [(
                conn,
                Seen {
                    isn: Some(9_000),
                    high: Some(9_051),
                },
            )]
            .into_iter()
            .collect(),
            ..g
        };
        out.clear();
        g2.poll(Instant::from_millis(10), &mut out);
        g2.poll(Instant::from_millis(15), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(g2.held().len(), 1);
        assert_eq!(g2.held()[0].ahead, 50);
    }
}
