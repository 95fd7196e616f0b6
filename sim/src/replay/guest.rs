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
//! - Acknowledging by stream position: the guest acknowledges what it has
//!   received, as a real one does (RFC 9293 §3.10.7.4). A recorded pure ACK
//!   for bytes the replayed engine has not delivered yet goes at its time
//!   with the acknowledgment cut to the bytes delivered in order (its SACK
//!   blocks blanked); the rest is owed, and acknowledged by a pure ACK as
//!   soon as the engine delivers it. A cut pure ACK that would repeat the
//!   previous one (same number, same window) is left out rather than sent
//!   as a duplicate ACK (RFC 5681 §2), which would look like loss.
//! - Holding: a segment with data, SYN, FIN or RST acknowledging bytes
//!   not delivered yet, and any segment before the replayed engine has
//!   answered the connection, waits in virtual time (the guest may have
//!   sent it in answer to those bytes); past the hold bound it is sent as
//!   recorded and a divergence is noted.
//!
//! # What it must never do
//!
//! Invent frames other than those owed ACKs; change anything in a
//! recorded frame but the numbers above; read the wall clock.

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
    /// The next byte expected in order (sequence space of the replayed
    /// engine): everything before it was delivered to the guest.
    high: Option<u32>,
}

/// What the guest last sent on a connection, and what it still owes.
#[derive(Clone, Copy, Debug)]
struct Acked {
    /// Acknowledgment number of the last segment sent (replayed space).
    ack: u32,
    /// Its window field.
    window: u16,
    /// The guest's next sequence number (after that segment).
    next_seq: u32,
    /// MACs of the last segment, for an owed ACK.
    macs: (passt_engine::MacAddr, passt_engine::MacAddr),
    /// The highest acknowledgment the trace's guest had sent (replayed
    /// space); more than `ack` while the engine is behind.
    owed: u32,
    /// The guest reset the connection: it acknowledges nothing more.
    reset: bool,
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
    acked: BTreeMap<Conn, Acked>,
    /// Owed ACKs ready to go, with the time they became due.
    owed_out: Vec<(Instant, Vec<u8>)>,
    sent: u64,
    cut: u64,
    skipped: u64,
    generated: u64,
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
            acked: BTreeMap::new(),
            owed_out: Vec::new(),
            sent: 0,
            cut: 0,
            skipped: 0,
            generated: 0,
        }
    }

    /// Recorded segments whose acknowledgment was cut to the bytes
    /// delivered, recorded pure ACKs left out as repeats, and owed ACKs
    /// sent.
    pub fn ack_counts(&self) -> (u64, u64, u64) {
        (self.cut, self.skipped, self.generated)
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
    pub fn on_frame(&mut self, now: Instant, frame: &[u8]) {
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
        let conn = (dst, src);
        let s = self.replay.entry(conn).or_default();
        if flags.contains(TcpFlags::SYN) {
            s.isn = Some(seq);
        }
        let end = seq.wrapping_add(seq_len(flags, payload.len()));
        // In order only: a segment past a gap is not delivered yet (the
        // engine sends it again).
        match s.high {
            Some(h) if (end.wrapping_sub(h) as i32) <= 0 || (seq.wrapping_sub(h) as i32) > 0 => {}
            _ => s.high = Some(end),
        }
        let delivered = s.high;
        if let (Some(a), Some(high)) = (self.acked.get_mut(&conn), delivered) {
            let to = if (a.owed.wrapping_sub(high) as i32) < 0 {
                a.owed
            } else {
                high
            };
            if !a.reset && (to.wrapping_sub(a.ack) as i32) > 0 {
                a.ack = to;
                let frame = owed_ack(conn, a);
                self.generated += 1;
                self.owed_out.push((now, frame));
            }
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
            .chain(self.owed_out.iter().map(|(t, _)| *t))
            .min()
    }

    /// Whether every frame was sent.
    pub fn finished(&self) -> bool {
        self.pending.is_empty() && self.owed_out.is_empty()
    }

    /// Sends the owed ACKs, then every frame due at `now` whose flow is not
    /// held.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        out.extend(self.owed_out.drain(..).map(|(_, f)| f));
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
                Step::Send(frame) => {
                    self.pending.remove(i);
                    self.sent += 1;
                    out.push(frame);
                }
                Step::Skip => {
                    self.pending.remove(i);
                    self.skipped += 1;
                }
                Step::Hold => {
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

    /// What to do with pending entry `i`.
    fn rewrite(&mut self, i: usize, now: Instant) -> Step {
        let held_since = self.pending[i].held_since;
        let at = self.pending[i].at;
        let orig = self.pending[i].frame.clone();
        let mut frame = orig.clone();
        let Some(d) = decode(&orig) else {
            return Step::Send(frame);
        };
        match d.kind {
            Kind::Tcp {
                src,
                dst,
                seq,
                ack,
                flags,
                payload,
                l4_at,
                l4_len,
                ..
            } => {
                let conn = (src, dst);
                let window = rd16(&frame, l4_at + 14).unwrap_or(0);
                let mut acked_to = None;
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
                    // A pure ACK, once the engine has answered, goes cut to
                    // what the guest has; a segment with data, FIN or RST
                    // waits for the bytes it acknowledges (the guest's
                    // application may have sent it in answer to them).
                    let pure = payload.is_empty()
                        && !flags.contains(TcpFlags::SYN)
                        && !flags.contains(TcpFlags::FIN)
                        && !flags.contains(TcpFlags::RST);
                    if !ready
                        && pure
                        && !self.gave_up.contains(&conn)
                        && let (Some(risn), Some(high)) = (seen.isn, seen.high)
                    {
                        let target = rel.wrapping_add(risn);
                        let prev = self.acked.get(&conn).copied();
                        if let Some(a) = self.acked.get_mut(&conn)
                            && (target.wrapping_sub(a.owed) as i32) > 0
                        {
                            a.owed = target;
                        }
                        if prev.is_some_and(|a| a.ack == high && a.window == window) {
                            return Step::Skip;
                        }
                        translate_acks(&mut frame, l4_at, tisn, risn);
                        wr32(&mut frame, l4_at + 8, high);
                        blank_sack(&mut frame, l4_at);
                        fix_checksum(&mut frame, l4_at, l4_len, protocol::TCP, 16, src, dst);
                        self.cut += 1;
                        self.note_sent(conn, &d, seq, flags, payload.len(), high, window, target);
                        return Step::Send(frame);
                    }
                    let timed_out = held_since.is_some_and(|h| now >= h + self.hold)
                        || self.gave_up.contains(&conn);
                    if !ready && !timed_out {
                        return Step::Hold;
                    }
                    if !ready && self.gave_up.insert(conn) {
                        let ahead = match (seen.isn, seen.high) {
                            (Some(risn), Some(high)) => rel.wrapping_sub(high.wrapping_sub(risn)),
                            _ => rel,
                        };
                        self.held.push(Held {
                            key: (Proto::Tcp, src, dst),
                            at,
                            ahead,
                        });
                    }
                    if let Some(risn) = seen.isn {
                        translate_acks(&mut frame, l4_at, tisn, risn);
                        acked_to = Some(rel.wrapping_add(risn));
                    }
                }
                fix_checksum(&mut frame, l4_at, l4_len, protocol::TCP, 16, src, dst);
                if let Some(a) = acked_to {
                    self.note_sent(conn, &d, seq, flags, payload.len(), a, window, a);
                } else if flags.contains(TcpFlags::RST)
                    && let Some(a) = self.acked.get_mut(&conn)
                {
                    a.reset = true;
                }
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
        Step::Send(frame)
    }

    /// Remembers what the guest sent on `conn` (acknowledging `ack`, the
    /// trace's guest having acknowledged `recorded`), for owed ACKs.
    #[allow(clippy::too_many_arguments)]
    fn note_sent(
        &mut self,
        conn: Conn,
        d: &super::decode::Decoded<'_>,
        seq: u32,
        flags: TcpFlags,
        len: usize,
        ack: u32,
        window: u16,
        recorded: u32,
    ) {
        let next_seq = seq.wrapping_add(seq_len(flags, len));
        let a = self.acked.entry(conn).or_insert(Acked {
            ack,
            window,
            next_seq,
            macs: (d.src_mac, d.dst_mac),
            owed: recorded,
            reset: false,
        });
        a.ack = ack;
        a.window = window;
        a.next_seq = next_seq;
        a.macs = (d.src_mac, d.dst_mac);
        if (recorded.wrapping_sub(a.owed) as i32) > 0 {
            a.owed = recorded;
        }
        a.reset |= flags.contains(TcpFlags::RST);
    }
}

/// What happens to a due guest frame.
enum Step {
    /// It goes (rewritten).
    Send(Vec<u8>),
    /// A cut pure ACK that would only repeat the last one: left out.
    Skip,
    /// It waits for the engine.
    Hold,
}

/// A pure ACK from the guest on `conn` for `a.ack`, with the guest's next
/// sequence number and last window (RFC 9293 §3.10.7.4: the receiver
/// acknowledges what it has received in order).
fn owed_ack(conn: Conn, a: &Acked) -> Vec<u8> {
    use passt_engine::wire::{self, IpRepr, Ipv4Repr, Ipv6Repr, TcpRepr};
    let (src, dst) = conn;
    let ip = match (src.ip(), dst.ip()) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            IpRepr::V4(Ipv4Repr::new(s, d, protocol::TCP, 64))
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            IpRepr::V6(Ipv6Repr::new(s, d, protocol::TCP, 64))
        }
        _ => return Vec::new(),
    };
    let tcp = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        seq: a.next_seq,
        ack: a.ack,
        flags: TcpFlags::ACK,
        window: a.window,
        ..TcpRepr::default()
    };
    let mut buf = vec![0; 128];
    match wire::build_tcp(&mut buf, a.macs.0, a.macs.1, ip, &tcp, &[]) {
        Ok(n) => {
            buf.truncate(n);
            buf
        }
        Err(_) => Vec::new(),
    }
}

fn rd16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Overwrites the SACK options (RFC 2018 §3, kind 5) of the TCP header at
/// `l4` with no-operations: once the acknowledgment is cut, the recorded
/// blocks may name bytes the replayed engine has not sent.
fn blank_sack(frame: &mut [u8], l4: usize) {
    for_each_sack(frame, l4, |option| option.fill(1));
}

/// Calls `f` with each SACK option (kind 5, RFC 2018 §3) of the TCP header
/// at `l4`, whole (kind and length bytes included), walking the options
/// as RFC 9293 §3.2 lays them out and stopping at anything malformed.
fn for_each_sack(frame: &mut [u8], l4: usize, mut f: impl FnMut(&mut [u8])) {
    let Some(&off) = frame.get(l4 + 12) else {
        return;
    };
    let end = (l4 + usize::from(off >> 4) * 4).min(frame.len());
    let mut at = l4 + 20;
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
                    f(&mut frame[at..at + len]);
                }
                at += len;
            }
        }
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
    for_each_sack(frame, l4, |option| {
        let mut e = 2;
        while e + 4 <= option.len() {
            if let Some(v) = rd32(option, e) {
                wr32(option, e, shift(v));
            }
            e += 4;
        }
    });
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
        segment_with(ack, sack, b"data")
    }

    fn segment_with(ack: u32, sack: Option<SackBlock>, data: &[u8]) -> Vec<u8> {
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
            data,
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

    fn guest(conn: Conn, seen: Option<Seen>, data: &[u8]) -> RecordedGuest {
        RecordedGuest {
            pending: vec![Pending {
                at: Instant::from_millis(10),
                frame: segment_with(1_101, None, data),
                conn: Some(conn),
                held_since: None,
            }],
            trace_isn: [(conn, 1_000)].into_iter().collect(),
            replay: seen.map(|s| (conn, s)).into_iter().collect(),
            hold: Duration::from_millis(5),
            held: Vec::new(),
            gave_up: BTreeSet::new(),
            acked: BTreeMap::new(),
            owed_out: Vec::new(),
            sent: 0,
            cut: 0,
            skipped: 0,
            generated: 0,
        }
    }

    /// A segment from the engine (203.0.113.7:80 -> the guest).
    fn engine_segment(seq: u32, len: usize) -> Vec<u8> {
        let ip = IpRepr::V4(Ipv4Repr::new(
            "203.0.113.7".parse().unwrap(),
            "192.0.2.15".parse().unwrap(),
            wire::protocol::TCP,
            64,
        ));
        let tcp = TcpRepr {
            src_port: 80,
            dst_port: 40000,
            seq,
            ack: 81,
            flags: TcpFlags::ACK,
            window: 100,
            ..TcpRepr::default()
        };
        let mut buf = vec![0; 200 + len];
        let n = wire::build_tcp(
            &mut buf,
            MacAddr::PASST_DEFAULT,
            MacAddr([2, 0, 0, 0, 0, 0x15]),
            ip,
            &tcp,
            &vec![7; len],
        )
        .unwrap();
        buf.truncate(n);
        buf
    }

    fn ack_of(frame: &[u8]) -> (u32, u32, usize) {
        let Some(Kind::Tcp {
            seq, ack, payload, ..
        }) = decode(frame).map(|d| d.kind)
        else {
            panic!("not TCP");
        };
        assert!(wire::parse_frame(frame).is_ok(), "valid checksums");
        (seq, ack, payload.len())
    }

    #[test]
    fn an_ack_beyond_the_delivered_bytes_goes_cut_and_the_rest_is_acknowledged_on_delivery() {
        let conn: Conn = (
            "192.0.2.15:40000".parse().unwrap(),
            "203.0.113.7:80".parse().unwrap(),
        );
        // The replayed engine has sent its SYN-ACK and 50 bytes; the
        // recorded segment acknowledges 100.
        let mut g = guest(
            conn,
            Some(Seen {
                isn: Some(9_000),
                high: Some(9_051),
            }),
            b"",
        );
        let mut out = Vec::new();
        g.poll(Instant::from_millis(10), &mut out);
        assert_eq!(out.len(), 1, "not held: it goes at its time");
        assert_eq!(
            ack_of(&out[0]),
            (77, 9_051, 0),
            "cut to the bytes delivered"
        );
        assert_eq!(g.poll_at(), None);
        // A segment past a gap is not delivered: nothing more to acknowledge.
        g.on_frame(Instant::from_millis(11), &engine_segment(9_061, 40));
        assert_eq!(g.poll_at(), None);
        // The missing 10 bytes arrive: acknowledged at once.
        g.on_frame(Instant::from_millis(12), &engine_segment(9_051, 10));
        assert_eq!(g.poll_at(), Some(Instant::from_millis(12)));
        out.clear();
        g.poll(Instant::from_millis(12), &mut out);
        assert_eq!(ack_of(&out[0]), (77, 9_061, 0), "a pure ACK");
        // 50 more (the engine sends again what followed the gap, and past
        // it): the guest owes up to 100 only, the recorded ACK.
        g.on_frame(Instant::from_millis(13), &engine_segment(9_061, 50));
        out.clear();
        g.poll(Instant::from_millis(13), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(ack_of(&out[0]), (77, 9_101, 0));
        g.on_frame(Instant::from_millis(14), &engine_segment(9_111, 10));
        assert_eq!(g.poll_at(), None, "nothing owed past the recorded ACK");
        assert!(g.held().is_empty());
        assert_eq!(g.ack_counts(), (1, 0, 2));
    }

    #[test]
    fn a_segment_waits_for_the_engines_syn_then_goes_at_the_bound_with_a_divergence() {
        let conn: Conn = (
            "192.0.2.15:40000".parse().unwrap(),
            "203.0.113.7:80".parse().unwrap(),
        );
        let mut g = guest(conn, None, b"data");
        let mut out = Vec::new();
        g.poll(Instant::from_millis(10), &mut out);
        assert!(out.is_empty(), "held: the engine has not answered");
        assert_eq!(g.poll_at(), Some(Instant::from_millis(15)));
        g.poll(Instant::from_millis(15), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(g.held().len(), 1);
        assert_eq!(g.held()[0].ahead, 101);
        // Data acknowledging undelivered bytes waits too, engine answered.
        let mut g3 = guest(
            conn,
            Some(Seen {
                isn: Some(9_000),
                high: Some(9_051),
            }),
            b"data",
        );
        out.clear();
        g3.poll(Instant::from_millis(10), &mut out);
        assert!(out.is_empty(), "data waits for the bytes it answers");
        // Once the engine answers, a held segment goes as soon as it can.
        let mut g2 = guest(conn, None, b"data");
        g2.poll(Instant::from_millis(10), &mut out);
        g2.replay.insert(
            conn,
            Seen {
                isn: Some(9_000),
                high: Some(9_101),
            },
        );
        out.clear();
        g2.poll(Instant::from_millis(11), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(ack_of(&out[0]).1, 9_101);
        assert!(g2.held().is_empty());
    }
}
