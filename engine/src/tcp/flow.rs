//! One TCP flow: the guest-side connection the engine terminates and the
//! host socket that mirrors it, with no data buffer of our own.
//!
//! Sequence spaces, from the engine's point of view:
//! - toward the guest ("send"): `snd_una..snd_nxt` are bytes sent to the
//!   guest and not yet acknowledged; they are still in the host socket's
//!   receive queue, at peek offsets `0..snd_nxt - snd_una`. A guest ACK
//!   discards them from the socket; a retransmission rewinds `snd_nxt`.
//! - from the guest ("receive"): `rcv_nxt` is the next byte we expect; we
//!   only advance it by what the host socket's `send` took.
//!
//! This module owns the per-flow state machine (RFC 9293 §3.10 adapted to a
//! splice between two connections) and never touches the flow table or the
//! timer index: it returns a `Verdict` and its next deadline, and
//! [`super::Tcp`] does the bookkeeping.

use core::time::Duration;
use std::net::SocketAddr;

use super::rtt::{MAX_RTO, RttEstimator};
use super::seq;
use crate::ctx::{self, Ctx, ip_to_guest};
use crate::host_io::{
    ConnectProgress, HostError, HostIo, Interest, Readiness, Shutdown, SockId, Token,
};
use crate::time::Instant;
use crate::wire::{self, TcpFlags, TcpOptions, TcpRepr};

/// Window scale we offer the guest (RFC 7323 §2): 2^7 lets us advertise
/// up to 8 MiB, above Linux's default `tcp_wmem` maximum of 4 MiB.
pub(crate) const OUR_WINDOW_SCALE: u8 = 7;
/// Largest shift RFC 7323 §2.3 allows.
const MAX_WINDOW_SCALE: u8 = 14;
/// MSS assumed when the guest sends none (RFC 9293 §3.7.1, RFC 8200 §5).
const DEFAULT_MSS_V4: u16 = 536;
const DEFAULT_MSS_V6: u16 = 1220;
/// How long a host connect may take before the guest gets a RST.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// SYN (inbound) / SYN-ACK (outbound) retransmissions before giving up.
pub(crate) const HANDSHAKE_RETRIES: u8 = 5;
/// Data retransmissions (RTO expiries in a row) before resetting the flow.
pub(crate) const MAX_RETRIES: u8 = 10;
/// Silence from the guest after which we probe it (RFC 9293 §3.8.4:
/// keep-alives are optional; we use them to notice a vanished guest).
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Interval between unanswered keep-alive probes.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// Unanswered probes after which the flow is reset both ways.
pub(crate) const KEEPALIVE_PROBES: u8 = 4;
/// No data or FIN in either direction for this long: reset both ways (as
/// upstream passt does after two hours).
pub(crate) const INACTIVITY_TIMEOUT: Duration = Duration::from_secs(7200);
/// Duplicate ACKs that trigger a fast retransmit (RFC 5681 §3.2).
const DUP_ACK_THRESHOLD: u8 = 3;
/// Shortest and longest first wait before [`Flow::recovery_nudge`] asks
/// again for data we dropped beyond a hole (twice the smoothed RTT when
/// there is one, else [`NUDGE_DEFAULT`], within these bounds).
const NUDGE_MIN: Duration = Duration::from_millis(5);
const NUDGE_MAX: Duration = Duration::from_millis(200);
const NUDGE_DEFAULT: Duration = Duration::from_millis(20);
/// How long a partial ACK waits for the guest's retransmission before the
/// guest is taken for one that needs duplicate ACKs (at least this, or
/// twice the smoothed RTT).
const PARTIAL_ACK_PROBE: Duration = Duration::from_millis(20);
/// Partial ACKs a guest must answer in a row to count as NewReno.
const PARTIAL_ACK_ANSWERS: u8 = 3;
/// The wait between nudges doubles up to this, then stays: nudges go on as
/// long as the hole is open (a vanished guest is caught by keep-alives).
const NUDGE_CEILING: Duration = Duration::from_secs(4);
/// The host socket reported room while the window we can offer is still
/// below [`Flow::window_view`]'s floor (a stale report, or buffer
/// accounting the estimate does not see): look again after this long
/// instead of listening for writability, which would be reported again at
/// once. Far below a guest's persist timer (200 ms and backing off).
pub(crate) const WINDOW_RECHECK: Duration = Duration::from_millis(10);
/// What the kernel charges against `SO_SNDBUF` beyond the payload queued
/// (socket buffer headers, `truesize`), as a fraction of that payload in
/// 1/256ths, until a refusal teaches a flow better: 1/16, above what
/// Linux charges on loopback (docs/performance.md).
const SEND_OVERHEAD_Q8: u32 = 16;
/// Upper bound of a learned overhead: 4 times the payload.
const MAX_SEND_OVERHEAD_Q8: u32 = 1024;

/// The guest-side identity of a flow: the guest's address and port, and the
/// peer's as the guest sees it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub(crate) struct FlowKey {
    pub(crate) guest: SocketAddr,
    pub(crate) peer: SocketAddr,
}

/// Where the handshake stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum State {
    /// Outbound: the guest's SYN arrived, the host connect is in progress.
    Connecting,
    /// Outbound: host connected, SYN-ACK sent to the guest.
    SynAckSent,
    /// Inbound: host connection accepted, SYN sent to the guest.
    SynSent,
    /// Both handshakes done; half-closes are tracked by flags.
    Established,
}

/// What the table must do with the flow after an event.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Verdict {
    /// Keep it.
    Keep,
    /// Done: close the host socket gracefully and free the entry.
    Close,
    /// Done: abort the host socket (RST to the host peer) and free.
    Abort,
}

/// How a guest resends what we dropped beyond a hole, learnt per flow.
///
/// A NewReno sender (RFC 6582; Linux and most stacks without SACK) resends
/// the next missing segment as soon as a partial ACK arrives; duplicate
/// ACKs on top only hurt it: in recovery it counts them as segments that
/// left the network and sends new data, which lands beyond the hole and is
/// dropped again. A plain RFC 5681 sender (smoltcp) ignores partial ACKs
/// and needs three duplicates for each segment. The first partial ACK of a
/// flow goes out alone and tells them apart.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum GuestRecovery {
    /// No partial ACK answered or timed out yet.
    Unknown,
    /// Resends on partial ACKs: no duplicate bursts; a nudge only when a
    /// hole stays open for [`NUDGE_CEILING`].
    ActsOnPartialAck,
    /// Needs duplicate ACKs: bursts after each partial ACK, and nudges.
    /// Final once learnt.
    NeedsDupAcks,
}

/// What a flow knows and plans about the data we dropped beyond a hole
/// (we keep no out-of-order data) until the guest has sent it again: the
/// loss-recovery heuristic for guests without SACK (see [`GuestRecovery`]
/// and [`Flow::recovery_nudge`]).
#[derive(Debug)]
struct LossRecovery {
    /// End of the highest guest segment dropped for arriving beyond a hole
    /// (we keep no out-of-order data): until `rcv_nxt` passes it, the guest
    /// has sent data we threw away and must send again.
    dropped_beyond: Option<u32>,
    /// While `dropped_beyond` is pending: when to nudge the guest again
    /// ([`Flow::recovery_nudge`]), and how many nudges went unanswered.
    nudge_at: Option<Instant>,
    nudges: u8,
    /// How the guest recovers from what we drop beyond a hole, learnt
    /// from the first partial ACK (see [`GuestRecovery`]).
    guest_recovery: GuestRecovery,
    /// A partial ACK went out without duplicates to tell how the guest
    /// recovers: the hole's new left edge, until the guest answers or the
    /// nudge timer says it will not.
    probing_partial_ack: Option<u32>,
    /// Partial ACKs answered in a row while [`GuestRecovery::Unknown`].
    partial_ack_answers: u8,
    /// A guest taken for NewReno was nudged: the hole's left edge and when.
    /// If the nudge brings the missing segment at once, the guest needed
    /// it: it is not NewReno after all.
    nudged_newreno: Option<(u32, Instant)>,
    /// Lowest start of a segment dropped beyond the current hole: a
    /// segment in `dropped_from..dropped_beyond` covers bytes we saw
    /// before, a retransmission rather than a late original (reordering),
    /// so only such a segment counts as an answer to a partial ACK.
    dropped_from: Option<u32>,
}

impl Default for LossRecovery {
    fn default() -> Self {
        LossRecovery {
            dropped_beyond: None,
            nudge_at: None,
            nudges: 0,
            guest_recovery: GuestRecovery::Unknown,
            probing_partial_ack: None,
            partial_ack_answers: 0,
            nudged_newreno: None,
            dropped_from: None,
        }
    }
}

/// One flow. See the module docs.
#[derive(Debug)]
pub(crate) struct Flow {
    pub(crate) key: FlowKey,
    pub(crate) sock: SockId,
    pub(crate) token: Token,
    pub(crate) state: State,
    /// Interest registered with the host (`None`: never registered).
    interest: Option<Interest>,
    // ----- toward the guest -----
    isn: u32,
    snd_una: u32,
    snd_nxt: u32,
    /// Highest sequence number sent so far (a rewind lowers `snd_nxt`, not
    /// this): ACKs up to here are acceptable.
    snd_max: u32,
    /// The guest's window in bytes (already scaled).
    snd_wnd: u32,
    /// Shift applied to the guest's window field (0 if not negotiated).
    snd_wscale: u8,
    /// Payload bytes per segment toward the guest.
    mss: u32,
    dup_acks: u8,
    /// Sequence number of our FIN, once sent.
    fin_seq: Option<u32>,
    /// Where the host peer's data ends (its FIN), in our sequence space,
    /// once a peek reported it: our FIN goes right there.
    host_end: Option<u32>,
    /// Readable interest is off because the next peek would find nothing new
    /// while data is in flight: the next guest ACK turns it back on.
    read_parked: bool,
    /// The host socket reported `EPOLLHUP` (both directions closed): the
    /// kernel will report it on every wait from now on.
    host_hup: bool,
    // ----- from the guest -----
    guest_isn: u32,
    rcv_nxt: u32,
    /// Shift we apply to our window field (0 if not negotiated).
    rcv_wscale: u8,
    /// Window (bytes) in our last segment.
    adv_wnd: u32,
    /// Right edge of that window (`rcv_nxt + adv_wnd` when it was sent):
    /// held still while the socket's room wobbles by less than a segment
    /// (see [`Flow::offered_window`]).
    adv_edge: u32,
    /// The MSS we announced: the largest segment the guest sends us.
    rcv_mss: u32,
    /// Largest payload the guest sent so far (its segment size in
    /// practice), for the silly-window step of [`Flow::offered_window`].
    rcv_seg_max: u32,
    /// Kernel overhead per byte queued in the host socket's send buffer,
    /// in 1/256ths (see [`SEND_OVERHEAD_Q8`]); only grows, on refusals.
    send_overhead_q8: u32,
    /// The guest's FIN was received in order; the host socket is shut down
    /// for writing.
    guest_fin: bool,
    /// The host socket took less than the guest sent: once it has room, a
    /// window update plus duplicate ACKs make the guest retransmit.
    refused: bool,
    /// Loss recovery beyond holes (see [`LossRecovery`]).
    rec: LossRecovery,
    /// Waiting for room in the host socket's send buffer: the window last
    /// offered is below the floor of [`Flow::window_view`] (zero included),
    /// or the socket refused data. Writability then brings a window update:
    /// the guest must never be left to find out by its own persist timer.
    want_writable: bool,
    /// The socket reported room but the window is still below the floor:
    /// when to look again (see [`WINDOW_RECHECK`]).
    wnd_check_at: Option<Instant>,
    // ----- timers -----
    rtt: RttEstimator,
    /// Segment being timed (Karn's algorithm): its end sequence and send time.
    rtt_probe: Option<(u32, Instant)>,
    /// Handshake retransmission, connect timeout, RTO or persist timer.
    rto_at: Option<Instant>,
    retries: u8,
    /// Zero-window probing is on (the RTO timer is the persist timer).
    persist: bool,
    last_guest_rx: Instant,
    last_activity: Instant,
    keepalives_sent: u8,
    /// When the timer index holds an entry for this flow, its instant.
    pub(crate) scheduled: Option<Instant>,
}

/// Headers-only frame length for a segment with `opts_len` option bytes.
fn frame_len(key: &FlowKey, opts_len: usize, payload: usize) -> usize {
    let l3 = match key.guest {
        SocketAddr::V4(_) => wire::IPV4_HEADERS_LEN,
        SocketAddr::V6(_) => wire::IPV6_HEADERS_LEN,
    };
    l3 + wire::tcp::MIN_HEADER_LEN + opts_len + payload
}

/// Largest payload a frame to the guest can carry for this flow under the
/// configured MTU (no TCP options on data segments).
fn mtu_payload(key: &FlowKey, mtu: u16) -> u32 {
    let ip = match key.guest {
        SocketAddr::V4(_) => 20,
        SocketAddr::V6(_) => 40,
    };
    u32::from(mtu).saturating_sub(ip + wire::tcp::MIN_HEADER_LEN as u32)
}

/// The MSS we announce: what fits in our MTU (RFC 9293 §3.7.1), within
/// the 16-bit option.
fn our_mss(key: &FlowKey, mtu: u16) -> u16 {
    mtu_payload(key, mtu).min(u32::from(u16::MAX)) as u16
}

/// Sends one segment without payload to the guest. Returns whether it was
/// queued.
pub(crate) fn emit_control<H: HostIo>(cx: &mut Ctx<'_, H>, key: &FlowKey, repr: &TcpRepr) -> bool {
    let Some(ip) = ip_to_guest(key.peer.ip(), key.guest.ip(), wire::protocol::TCP) else {
        return false;
    };
    let len = frame_len(key, repr.options.emitted_len(), 0);
    let our_mac = cx.config.our_mac;
    let dst_mac = cx.guest.dst_mac();
    cx.emit(len, |buf| {
        wire::build_tcp_with(buf, our_mac, dst_mac, ip, repr, 0, |_| 0).unwrap_or(0)
    })
}

/// A RST (with ACK) to the guest for `key`.
pub(crate) fn emit_rst<H: HostIo>(cx: &mut Ctx<'_, H>, key: &FlowKey, seq: u32, ack: Option<u32>) {
    let repr = TcpRepr {
        src_port: key.peer.port(),
        dst_port: key.guest.port(),
        seq,
        ack: ack.unwrap_or(0),
        flags: if ack.is_some() {
            TcpFlags::RST | TcpFlags::ACK
        } else {
            TcpFlags::RST
        },
        window: 0,
        urgent: 0,
        options: TcpOptions::default(),
    };
    if emit_control(cx, key, &repr) {
        cx.counters.tcp_rst_to_guest += 1;
    }
}

/// Negotiated options of a SYN: the segment size we may send and the
/// guest's window shift (if it offered scaling).
fn syn_options(key: &FlowKey, mtu: u16, opts: &TcpOptions) -> (u32, Option<u8>) {
    let default = match key.guest {
        SocketAddr::V4(_) => DEFAULT_MSS_V4,
        SocketAddr::V6(_) => DEFAULT_MSS_V6,
    };
    let mss = u32::from(opts.mss.unwrap_or(default).max(64)).min(mtu_payload(key, mtu));
    (mss, opts.window_scale.map(|s| s.min(MAX_WINDOW_SCALE)))
}

impl Flow {
    fn blank(key: FlowKey, sock: SockId, token: Token, state: State, now: Instant) -> Flow {
        Flow {
            key,
            sock,
            token,
            state,
            interest: None,
            isn: 0,
            snd_una: 0,
            snd_nxt: 0,
            snd_max: 0,
            snd_wnd: 0,
            snd_wscale: 0,
            mss: u32::from(DEFAULT_MSS_V4),
            dup_acks: 0,
            fin_seq: None,
            host_end: None,
            read_parked: false,
            host_hup: false,
            guest_isn: 0,
            rcv_nxt: 0,
            rcv_wscale: 0,
            adv_wnd: 0,
            adv_edge: 0,
            rcv_seg_max: u32::from(DEFAULT_MSS_V4),
            rcv_mss: u32::from(DEFAULT_MSS_V4),
            send_overhead_q8: SEND_OVERHEAD_Q8,
            guest_fin: false,
            refused: false,
            rec: LossRecovery::default(),
            want_writable: false,
            wnd_check_at: None,
            rtt: RttEstimator::default(),
            rtt_probe: None,
            rto_at: None,
            retries: 0,
            persist: false,
            last_guest_rx: now,
            last_activity: now,
            keepalives_sent: 0,
            scheduled: None,
        }
    }

    /// A flow for a guest SYN whose host connect was started (`progress`
    /// says whether it already completed).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn outbound<H: HostIo>(
        cx: &mut Ctx<'_, H>,
        now: Instant,
        key: FlowKey,
        sock: SockId,
        token: Token,
        isn: u32,
        syn: &TcpRepr,
        progress: ConnectProgress,
    ) -> (Flow, Verdict) {
        let mut f = Flow::blank(key, sock, token, State::Connecting, now);
        f.isn = isn;
        f.snd_una = isn;
        f.snd_nxt = isn;
        f.snd_max = isn;
        f.guest_isn = syn.seq;
        f.rcv_nxt = syn.seq.wrapping_add(1);
        let (mss, ws) = syn_options(&key, cx.config.mtu, &syn.options);
        f.mss = mss;
        if let Some(ws) = ws {
            // RFC 7323 §1.3: scaling is on only if both SYNs carry the option.
            f.snd_wscale = ws;
            f.rcv_wscale = OUR_WINDOW_SCALE;
        }
        f.snd_wnd = u32::from(syn.window);
        f.rcv_mss = u32::from(our_mss(&key, cx.config.mtu));
        let _ = cx.host.tcp_set_nodelay(sock, true);
        let verdict = match progress {
            ConnectProgress::Connected => f.connected(cx, now),
            ConnectProgress::InProgress => {
                f.rto_at = Some(now + CONNECT_TIMEOUT);
                Verdict::Keep
            }
        };
        f.sync_interest(cx.host);
        (f, verdict)
    }

    /// A flow for a connection accepted on a forwarded port: sends the SYN
    /// to the guest.
    pub(crate) fn inbound<H: HostIo>(
        cx: &mut Ctx<'_, H>,
        now: Instant,
        key: FlowKey,
        sock: SockId,
        token: Token,
        isn: u32,
    ) -> Flow {
        let mut f = Flow::blank(key, sock, token, State::SynSent, now);
        f.isn = isn;
        f.snd_una = isn;
        f.snd_nxt = isn.wrapping_add(1);
        f.snd_max = f.snd_nxt;
        f.mss = mtu_payload(&key, cx.config.mtu);
        f.rcv_mss = u32::from(our_mss(&key, cx.config.mtu));
        let _ = cx.host.tcp_set_nodelay(sock, true);
        f.send_syn(cx, false);
        f.rto_at = Some(now + f.rtt.rto());
        f.sync_interest(cx.host);
        f
    }

    /// The earliest instant at which [`Flow::on_timer`] has work to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let mut d = [self.rto_at, self.wnd_check_at, self.rec.nudge_at]
            .into_iter()
            .flatten()
            .min();
        if self.state == State::Established {
            let ka = self.last_guest_rx
                + KEEPALIVE_IDLE
                + KEEPALIVE_INTERVAL * u32::from(self.keepalives_sent);
            d = Some(d.map_or(ka, |d| d.min(ka)));
        }
        let idle = self.last_activity + INACTIVITY_TIMEOUT;
        Some(d.map_or(idle, |d| d.min(idle)))
    }

    // ------------------------------------------------------------------
    // Segments to the guest
    // ------------------------------------------------------------------

    fn base_repr(&self, seq: u32, flags: TcpFlags) -> TcpRepr {
        TcpRepr {
            src_port: self.key.peer.port(),
            dst_port: self.key.guest.port(),
            seq,
            ack: self.rcv_nxt,
            flags,
            window: 0,
            urgent: 0,
            options: TcpOptions::default(),
        }
    }

    /// The window we can offer, and its floor: the smallest window that
    /// lets the guest go on by itself.
    ///
    /// The window is what the host socket's send buffer can take now,
    /// rounded down to our scale (never more than the socket can take,
    /// RFC 7323 §2.3 rounding). The kernel limits the buffer by its own
    /// accounting (`sk_wmem_queued`: payload plus per-buffer overhead),
    /// while `SIOCOUTQ` counts payload only; near a full buffer the
    /// overhead of megabytes queued exceeds the free space itself, so it is
    /// charged explicitly (learned from refusals, [`Flow::learn_overhead`])
    /// before taking three quarters of what is left. Offering more than
    /// the socket takes is costly: what the guest sends past a refusal is
    /// dropped (we keep no buffer) and recovered by its retransmissions.
    ///
    /// Below the floor, the guest may well send nothing: a sender avoiding
    /// silly windows (RFC 9293 §3.8.6.2.1; Linux waits for room for a whole
    /// segment) waits for its persist timer, whose interval doubles with
    /// every probe answered with a small window (RFC 9293 §3.8.6.1), so a
    /// guest left to itself stalls for seconds. Whenever the window offered
    /// is below the floor, the flow therefore watches the socket for room
    /// and tells the guest (receiver-side SWS rule, RFC 9293 §3.8.6.2.2:
    /// the update is sent once a full segment fits). The floor is one
    /// segment of ours, capped at a fifth of the buffer: a socket reported
    /// writable has at least a third of its buffer free (Linux:
    /// `sk_stream_min_wspace`), so with the default overhead charge its
    /// window then reaches the floor (a larger learned charge, or a stale
    /// report, falls back on [`WINDOW_RECHECK`]).
    fn window_view<H: HostIo>(&self, host: &mut H) -> (u32, u32) {
        let info = host.tcp_info(self.sock).unwrap_or_default();
        let queued = u64::from(info.send_queued);
        let charged = queued + queued * u64::from(self.send_overhead_q8) / 256;
        let free = u64::from(info.send_buf).saturating_sub(charged);
        // Three quarters: a margin for what the estimate misses.
        let space = u32::try_from(free / 4 * 3).unwrap_or(u32::MAX);
        let max = 0xffff_u32 << self.rcv_wscale;
        let round = |x: u32| (x.min(max) >> self.rcv_wscale) << self.rcv_wscale;
        let floor = round(self.rcv_mss.min(info.send_buf / 5)).max(1);
        (round(space), floor)
    }

    /// The socket refused data: by the kernel's accounting its buffer is
    /// full, so what it charges beyond the payload queued is at least
    /// `SO_SNDBUF - SIOCOUTQ`. Raise the overhead estimate to that (plus an
    /// eighth) when enough is queued to tell.
    fn learn_overhead<H: HostIo>(&mut self, host: &mut H) {
        let Ok(info) = host.tcp_info(self.sock) else {
            return;
        };
        let (queued, buf) = (u64::from(info.send_queued), u64::from(info.send_buf));
        if queued == 0 || queued < buf / 4 {
            return;
        }
        let seen = buf.saturating_sub(queued) * 256 / queued;
        let q8 = (seen + seen / 8 + 1).min(u64::from(MAX_SEND_OVERHEAD_Q8)) as u32;
        self.send_overhead_q8 = self.send_overhead_q8.max(q8);
    }

    /// The window to put in our next segment, and the floor of
    /// [`Flow::window_view`].
    ///
    /// Receiver-side silly window avoidance (RFC 9293 §3.8.6.2.2, RFC 1122
    /// §4.2.3.3): the right edge we offered moves on only when the socket's
    /// room has grown by a full segment; and it stays put when the room
    /// shrank by less than a segment, which the quarter kept in reserve by
    /// [`Flow::window_view`] covers. Both matter beyond saving segments:
    /// a sender counts an ACK as a duplicate only when it carries the same
    /// window as the one before (RFC 5681 §2, "duplicate acknowledgment"
    /// (e); Linux and smoltcp check it too). A window that followed the
    /// socket's free space byte for byte would differ from ACK to ACK as
    /// the host peer reads, and the guest would never count three
    /// duplicates: each segment we drop beyond a hole would cost it a
    /// retransmission timeout instead of a fast retransmit. Small windows
    /// (under four segments: backpressure, zero windows) are exact.
    fn offered_window<H: HostIo>(&self, host: &mut H) -> (u32, u32) {
        let (fresh, floor) = self.window_view(host);
        let held = if seq::gt(self.adv_edge, self.rcv_nxt) {
            let h = self.adv_edge.wrapping_sub(self.rcv_nxt);
            (h >> self.rcv_wscale) << self.rcv_wscale
        } else {
            0
        };
        // A segment as the guest sends them (its own MTU may be far below
        // the MSS we announced), never more than the floor.
        let step = self.rcv_seg_max.clamp(1, floor);
        let steady = fresh >= step.saturating_mul(4)
            && held >= step.saturating_mul(3)
            && fresh.abs_diff(held) < step;
        (if steady { held } else { fresh }, floor)
    }

    /// Fills in window and records it.
    fn stamp_window<H: HostIo>(&mut self, host: &mut H, repr: &mut TcpRepr) {
        let (w, floor) = self.offered_window(host);
        self.adv_wnd = w;
        self.adv_edge = self.rcv_nxt.wrapping_add(w);
        repr.window = (w >> self.rcv_wscale) as u16;
        if w < floor && self.wnd_check_at.is_none() {
            // The guest must stop, or may: tell it when room frees up.
            self.want_writable = true;
        }
    }

    /// An ACK with the current window (also our duplicate ACK).
    fn send_ack<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>) {
        let mut r = self.base_repr(self.snd_nxt, TcpFlags::ACK);
        self.stamp_window(cx.host, &mut r);
        emit_control(cx, &self.key, &r);
    }

    fn send_syn<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, with_ack: bool) {
        let flags = if with_ack {
            TcpFlags::SYN | TcpFlags::ACK
        } else {
            TcpFlags::SYN
        };
        let mut r = self.base_repr(self.isn, flags);
        if !with_ack {
            r.ack = 0;
        }
        r.options.mss = Some(our_mss(&self.key, cx.config.mtu));
        // RFC 7323 §1.3: in a SYN-ACK only if the SYN carried it.
        if !with_ack || self.rcv_wscale != 0 {
            r.options.window_scale = Some(OUR_WINDOW_SCALE);
        }
        // RFC 7323 §2.2: the window of a SYN is never scaled.
        let w = if with_ack {
            cx.host
                .tcp_info(self.sock)
                .map_or(0, |i| i.send_space() / 4 * 3)
        } else {
            0xffff
        };
        r.window = w.min(0xffff) as u16;
        self.adv_wnd = u32::from(r.window);
        self.adv_edge = self.rcv_nxt.wrapping_add(self.adv_wnd);
        emit_control(cx, &self.key, &r);
    }

    fn send_fin<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>) -> bool {
        let mut r = self.base_repr(self.snd_nxt, TcpFlags::FIN | TcpFlags::ACK);
        self.stamp_window(cx.host, &mut r);
        emit_control(cx, &self.key, &r)
    }

    /// RST to the guest with our current sequence numbers.
    fn send_rst<H: HostIo>(&self, cx: &mut Ctx<'_, H>) {
        let ack = match self.state {
            State::SynSent => None,
            _ => Some(self.rcv_nxt),
        };
        emit_rst(cx, &self.key, self.snd_max, ack);
    }

    /// Resets both sides: RST to the guest, abort of the host socket.
    fn reset_both<H: HostIo>(&self, cx: &mut Ctx<'_, H>) -> Verdict {
        self.send_rst(cx);
        Verdict::Abort
    }

    // ------------------------------------------------------------------
    // Interest
    // ------------------------------------------------------------------

    fn desired_interest(&self) -> Interest {
        match self.state {
            State::Connecting => Interest::WRITE,
            State::SynAckSent | State::SynSent => Interest::NONE,
            State::Established => {
                let window_open = seq::lt(self.snd_nxt, self.snd_una.wrapping_add(self.snd_wnd));
                // A zero window with nothing in flight: listen for data
                // once, to start the persist timer (then it drives us).
                let arm_persist = self.snd_wnd == 0
                    && self.snd_nxt == self.snd_una
                    && !self.persist
                    && self.rto_at.is_none();
                Interest {
                    readable: self.fin_seq.is_none()
                        && self.host_end.is_none()
                        && !self.read_parked
                        && (window_open || arm_persist),
                    writable: self.want_writable && !self.guest_fin,
                }
            }
        }
    }

    /// Registers the interest the current state needs, if it changed.
    ///
    /// Once the host socket has hung up and nothing more is wanted from it,
    /// it is deregistered instead: epoll reports `EPOLLHUP` whatever the
    /// interest, and the flow would spin on it while it waits for the
    /// guest's last ACK (guest segments and timers drive it from there).
    pub(crate) fn sync_interest<H: HostIo>(&mut self, host: &mut H) {
        let want = self.desired_interest();
        if self.interest == Some(want) {
            return;
        }
        let done = if want == Interest::NONE && self.host_hup {
            host.deregister(self.sock).is_ok()
        } else {
            host.set_interest(self.sock, self.token, want).is_ok()
        };
        if done {
            self.interest = Some(want);
        }
    }

    // ------------------------------------------------------------------
    // Handshakes
    // ------------------------------------------------------------------

    /// Outbound: the host connect completed; SYN-ACK to the guest.
    fn connected<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, now: Instant) -> Verdict {
        self.state = State::SynAckSent;
        self.snd_nxt = self.isn.wrapping_add(1);
        self.snd_max = self.snd_nxt;
        self.send_syn(cx, true);
        self.retries = 0;
        self.rtt_probe = Some((self.snd_nxt, now));
        self.rto_at = Some(now + self.rtt.rto());
        Verdict::Keep
    }

    fn establish(&mut self, now: Instant) {
        self.state = State::Established;
        self.snd_una = self.isn.wrapping_add(1);
        self.rto_at = None;
        self.retries = 0;
        self.last_activity = now;
        if let Some((end, sent)) = self.rtt_probe.take() {
            if self.snd_una == end {
                self.rtt.sample(now - sent);
            }
        }
    }

    // ------------------------------------------------------------------
    // Guest segments
    // ------------------------------------------------------------------

    /// A segment from the guest for this flow.
    pub(crate) fn on_segment<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        tcp: &TcpRepr,
        payload: &[u8],
    ) -> Verdict {
        self.last_guest_rx = now;
        self.keepalives_sent = 0;
        let v = match self.state {
            State::Connecting => self.segment_connecting(tcp),
            State::SynAckSent => self.segment_syn_ack_sent(cx, now, tcp, payload),
            State::SynSent => self.segment_syn_sent(cx, now, tcp),
            State::Established => self.segment_established(cx, now, tcp, payload),
        };
        if v == Verdict::Keep {
            self.sync_interest(cx.host);
        }
        v
    }

    fn segment_connecting(&mut self, tcp: &TcpRepr) -> Verdict {
        // SYN retransmissions are absorbed: the SYN-ACK goes once the host
        // connect succeeds. A RST from the guest gives up the connect.
        if tcp.flags.contains(TcpFlags::RST) {
            return Verdict::Abort;
        }
        Verdict::Keep
    }

    fn segment_syn_ack_sent<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        tcp: &TcpRepr,
        payload: &[u8],
    ) -> Verdict {
        let f = tcp.flags;
        if f.contains(TcpFlags::RST) {
            // RFC 9293 §3.10.7.4 (SYN-RECEIVED): an in-window RST closes.
            return if tcp.seq == self.rcv_nxt {
                Verdict::Abort
            } else {
                Verdict::Keep
            };
        }
        if f.contains(TcpFlags::SYN) {
            if tcp.seq == self.guest_isn {
                // Our SYN-ACK was lost: send it again.
                self.send_syn(cx, true);
            }
            return Verdict::Keep;
        }
        if !f.contains(TcpFlags::ACK) {
            return Verdict::Keep;
        }
        if tcp.ack != self.isn.wrapping_add(1) {
            // RFC 9293 §3.10.7.4: unacceptable ACK in SYN-RECEIVED -> RST.
            emit_rst(cx, &self.key, tcp.ack, None);
            return Verdict::Keep;
        }
        self.establish(now);
        self.segment_established(cx, now, tcp, payload)
    }

    fn segment_syn_sent<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        tcp: &TcpRepr,
    ) -> Verdict {
        let f = tcp.flags;
        let ack_ok = f.contains(TcpFlags::ACK) && tcp.ack == self.isn.wrapping_add(1);
        if f.contains(TcpFlags::RST) {
            // RFC 9293 §3.10.7.3: a RST is acceptable if it acks our SYN.
            // The guest refused: the host peer gets a RST too.
            return if ack_ok {
                Verdict::Abort
            } else {
                Verdict::Keep
            };
        }
        if f.contains(TcpFlags::ACK) && !ack_ok {
            emit_rst(cx, &self.key, tcp.ack, None);
            return Verdict::Keep;
        }
        if !(f.contains(TcpFlags::SYN) && ack_ok) {
            return Verdict::Keep;
        }
        self.guest_isn = tcp.seq;
        self.rcv_nxt = tcp.seq.wrapping_add(1);
        let (mss, ws) = syn_options(&self.key, cx.config.mtu, &tcp.options);
        self.mss = mss;
        if let Some(ws) = ws {
            self.snd_wscale = ws;
            self.rcv_wscale = OUR_WINDOW_SCALE;
        }
        // RFC 7323 §2.2: the SYN-ACK's window is not scaled.
        self.snd_wnd = u32::from(tcp.window);
        self.rtt_probe = None; // the SYN may have been retransmitted
        self.establish(now);
        // Acknowledge at once: a host peer that waits for the guest to
        // speak first must not wait for a data segment of ours.
        self.send_ack(cx);
        self.push_data(cx, now)
    }

    fn segment_established<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        tcp: &TcpRepr,
        payload: &[u8],
    ) -> Verdict {
        let f = tcp.flags;
        if f.contains(TcpFlags::RST) {
            // RFC 5961 §3.2: exact match resets, in-window gets a challenge
            // ACK, anything else is dropped.
            let wnd = self.adv_wnd.max(1);
            if tcp.seq == self.rcv_nxt {
                return Verdict::Abort;
            }
            if seq::gt(tcp.seq, self.rcv_nxt) && seq::lt(tcp.seq, self.rcv_nxt.wrapping_add(wnd)) {
                self.send_ack(cx);
            }
            return Verdict::Keep;
        }
        if f.contains(TcpFlags::SYN) {
            // RFC 5961 §4: challenge ACK, whatever the sequence number.
            self.send_ack(cx);
            return Verdict::Keep;
        }
        if !f.contains(TcpFlags::ACK) {
            return Verdict::Keep;
        }
        if let Some(v) = self.process_ack(cx, now, tcp, payload) {
            return v;
        }
        if !payload.is_empty() || f.contains(TcpFlags::FIN) {
            if let Some(v) = self.process_data(cx, now, tcp, payload) {
                return v;
            }
        }
        if let Some(v) = self.check_closed() {
            return v;
        }
        self.push_data(cx, now)
    }

    /// ACK processing (RFC 9293 §3.10.7.4, fifth check). Returns a verdict
    /// when the flow ends here.
    fn process_ack<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        tcp: &TcpRepr,
        payload: &[u8],
    ) -> Option<Verdict> {
        let ack = tcp.ack;
        if seq::gt(ack, self.snd_max) {
            // Acks something we never sent: answer with an ACK, drop.
            self.send_ack(cx);
            return Some(Verdict::Keep);
        }
        let new_wnd = u32::from(tcp.window) << self.snd_wscale;
        let window_changed = new_wnd != self.snd_wnd;
        if seq::lt(ack, self.snd_una) {
            // Old duplicate: ignore its ACK (and its window, RFC 9293
            // SND.WL2 rule).
            return None;
        }
        self.snd_wnd = new_wnd;
        if ack != self.snd_una {
            let mut acked = ack.wrapping_sub(self.snd_una);
            if let Some(fin) = self.fin_seq {
                if seq::gt(ack, fin) {
                    acked -= 1; // the FIN occupies a sequence number, not a byte
                }
            }
            if acked > 0 {
                match cx.host.tcp_discard(self.sock, acked as usize) {
                    Ok(_) => {}
                    Err(HostError::WouldBlock) => {}
                    Err(_) => return Some(self.reset_both(cx)),
                }
                self.last_activity = now;
            }
            self.snd_una = ack;
            if seq::lt(self.snd_nxt, ack) {
                self.snd_nxt = ack;
            }
            self.dup_acks = 0;
            self.retries = 0;
            self.read_parked = false;
            self.rtt.clear_backoff();
            if let Some((end, sent)) = self.rtt_probe {
                if seq::ge(ack, end) {
                    self.rtt.sample(now - sent);
                    self.rtt_probe = None;
                }
            }
            // RFC 6298 §5.2/§5.3: stop the timer when all is acked,
            // restart it otherwise.
            self.persist = false;
            self.rto_at = if self.snd_una == self.snd_max {
                None
            } else {
                Some(now + self.rtt.rto())
            };
        } else if self.snd_una != self.snd_max
            && payload.is_empty()
            && !tcp.flags.contains(TcpFlags::FIN)
            && !window_changed
            && !self.persist
        {
            // RFC 5681 §2 duplicate ACK.
            self.dup_acks = self.dup_acks.saturating_add(1);
            if self.dup_acks == DUP_ACK_THRESHOLD {
                cx.counters.tcp_fast_retransmits += 1;
                self.rewind();
            }
        } else if self.persist && new_wnd > 0 {
            // The window opened after probing: whatever probe byte is
            // outstanding goes again with the rest.
            self.persist = false;
            self.retries = 0;
            self.rewind();
            self.rto_at = None;
        }
        if self.persist {
            // Any answer to a probe shows the guest is alive (RFC 9293
            // §3.8.6.1: keep probing as long as it answers).
            self.retries = 0;
        }
        None
    }

    /// Go-back-N from the oldest unacknowledged byte: the data is still in
    /// the host socket, at peek offset 0.
    fn rewind(&mut self) {
        self.snd_nxt = self.snd_una;
        if let Some(fin) = self.fin_seq {
            if seq::ge(fin, self.snd_una) {
                self.fin_seq = None;
            }
        }
        self.rtt_probe = None; // Karn: never time a retransmission
        self.read_parked = false;
    }

    /// Nothing we dropped is missing any more (or it no longer matters):
    /// forget the hole and its timers. What was learnt about the guest
    /// stays.
    fn hole_closed(&mut self) {
        self.rec.dropped_beyond = None;
        self.rec.dropped_from = None;
        self.rec.nudge_at = None;
        self.rec.probing_partial_ack = None;
        self.rec.nudged_newreno = None;
    }

    /// Wait before the first nudge of a hole: a NewReno guest is left to
    /// its own recovery unless the hole stays open for [`NUDGE_CEILING`]
    /// (it may have lost its timer, as smoltcp can).
    fn first_nudge_wait(&self) -> Duration {
        match self.rec.guest_recovery {
            GuestRecovery::ActsOnPartialAck => NUDGE_CEILING,
            _ => self.nudge_wait(),
        }
    }

    /// First wait before nudging a guest that has not resent what we
    /// dropped beyond a hole.
    fn nudge_wait(&self) -> Duration {
        self.rtt
            .srtt()
            .map_or(NUDGE_DEFAULT, |s| (s * 2).clamp(NUDGE_MIN, NUDGE_MAX))
    }

    /// Recovery help for guests without SACK, when the ACKs after a hole
    /// did not make the guest resend (a lost duplicate ACK, a lost
    /// retransmission, or our own data segments in between: some stacks,
    /// smoltcp among them, restart their duplicate count on any segment
    /// that carries data).
    ///
    /// A sender counts three duplicates only after an ACK that differs
    /// (RFC 5681 §2: same ACK number *and* same window), and it does not
    /// count again after a fast retransmit until something changes.
    /// So the nudge is five identical ACKs whose window differs from the
    /// last we sent by one unit of our scale, alternating up and down
    /// around the offered window: the first is a window update that resets
    /// the guest's count, the next three are duplicates of it, and the
    /// fifth is a spare against the loss of one. Identical copies arrive in
    /// any order with the same effect. Growing the right
    /// edge by one unit stays within the reserve [`Flow::window_view`]
    /// keeps; shrinking it back only takes back that unit.
    ///
    /// Senders already in recovery (NewReno, RFC 6582) ignore the burst
    /// apart from counting it. The nudges never stop while the hole is
    /// open, backing off to one every [`NUDGE_CEILING`]: a guest can lose
    /// its own retransmission timer (docs/decisions.md, "A guest that lost
    /// its retransmission timer"), and then only a new duplicate-ACK count
    /// (which our keep-alives, all alike, never restart) wakes it.
    fn recovery_nudge<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, now: Instant) {
        self.rec.nudge_at = None;
        let pending = self
            .rec
            .dropped_beyond
            .is_some_and(|d| seq::lt(self.rcv_nxt, d));
        if !pending || self.state != State::Established || self.guest_fin {
            self.hole_closed();
            return;
        }
        if self.rec.probing_partial_ack.take() == Some(self.rcv_nxt) {
            // The partial ACK alone did not bring the next segment.
            self.rec.guest_recovery = GuestRecovery::NeedsDupAcks;
        }
        // Around what the guest knows: while a hole is open nothing is
        // written to the socket, so its room has only grown since.
        let base = self.adv_wnd;
        let unit = 1u32 << self.rcv_wscale;
        let max = 0xffff_u32 << self.rcv_wscale;
        if base < 2 * unit {
            // A zero (or tiny) window: the guest may not send; the window
            // update when room frees up does the asking.
            return;
        }
        let w = if self.rec.nudges % 2 == 1 || base + unit > max {
            base - unit
        } else {
            base + unit
        };
        let mut r = self.base_repr(self.snd_nxt, TcpFlags::ACK);
        r.window = (w >> self.rcv_wscale) as u16;
        self.adv_wnd = w;
        self.adv_edge = self.rcv_nxt.wrapping_add(w);
        for _ in 0..=DUP_ACK_THRESHOLD + 1 {
            emit_control(cx, &self.key, &r);
        }
        cx.counters.tcp_recovery_nudges += 1;
        if self.rec.guest_recovery == GuestRecovery::ActsOnPartialAck {
            self.rec.nudged_newreno = Some((self.rcv_nxt, now));
        }
        self.rec.nudges = self.rec.nudges.saturating_add(1);
        let wait = match self.rec.guest_recovery {
            GuestRecovery::ActsOnPartialAck => NUDGE_CEILING,
            _ => self.nudge_wait() * (1u32 << self.rec.nudges.min(16)),
        };
        self.rec.nudge_at = Some(now + wait.min(NUDGE_CEILING));
    }

    /// Data and FIN from the guest (RFC 9293 §3.10.7.4, seventh and eighth
    /// checks), passed to the host socket.
    fn process_data<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        tcp: &TcpRepr,
        payload: &[u8],
    ) -> Option<Verdict> {
        let fin = tcp.flags.contains(TcpFlags::FIN);
        if self.guest_fin {
            // Everything up to the FIN was taken: a retransmission. Re-ACK.
            self.send_ack(cx);
            return None;
        }
        let seg_end = tcp.seq.wrapping_add(payload.len() as u32);
        self.rcv_seg_max = self.rcv_seg_max.max(payload.len() as u32);
        if seq::gt(tcp.seq, self.rcv_nxt) {
            // A hole before this segment (lost, or refused by the socket):
            // duplicate ACK so the guest retransmits from rcv_nxt.
            if self.rec.dropped_beyond.is_none_or(|d| seq::gt(seg_end, d)) {
                self.rec.dropped_beyond = Some(seg_end);
            }
            if !payload.is_empty() && self.rec.dropped_from.is_none_or(|f| seq::lt(tcp.seq, f)) {
                self.rec.dropped_from = Some(tcp.seq);
            }
            if self.rec.nudge_at.is_none() {
                self.rec.nudges = 0;
                self.rec.nudge_at = Some(now + self.first_nudge_wait());
            }
            self.send_ack(cx);
            return None;
        }
        if let Some((left, at)) = self.rec.nudged_newreno {
            if tcp.seq == left && !payload.is_empty() {
                self.rec.nudged_newreno = None;
                if now.saturating_duration_since(at) <= self.nudge_wait().max(PARTIAL_ACK_PROBE) {
                    // Answered the nudge, not a partial ACK: it needs
                    // duplicate ACKs (a misreading from reordering or
                    // chance answers early on).
                    self.rec.guest_recovery = GuestRecovery::NeedsDupAcks;
                }
            }
        }
        if self.rec.probing_partial_ack == Some(tcp.seq)
            && !payload.is_empty()
            && self.rec.dropped_from.is_some_and(|f| !seq::lt(tcp.seq, f))
        {
            // The guest resent the next missing segment on the partial
            // ACK alone.
            self.rec.probing_partial_ack = None;
            self.rec.partial_ack_answers = self.rec.partial_ack_answers.saturating_add(1);
            if self.rec.partial_ack_answers >= PARTIAL_ACK_ANSWERS {
                self.rec.guest_recovery = GuestRecovery::ActsOnPartialAck;
            }
        }
        let skip = self.rcv_nxt.wrapping_sub(tcp.seq) as usize;
        if skip > payload.len() {
            // Entirely old.
            self.send_ack(cx);
            return None;
        }
        let data = &payload[skip..];
        let mut all_taken = true;
        if !data.is_empty() {
            match cx.host.tcp_send(self.sock, data) {
                Ok(n) => {
                    self.rcv_nxt = self.rcv_nxt.wrapping_add(n as u32);
                    if n < data.len() {
                        all_taken = false;
                    }
                    if n > 0 {
                        self.last_activity = now;
                    }
                }
                Err(HostError::WouldBlock) => all_taken = false,
                Err(_) => return Some(self.reset_both(cx)),
            }
            if !all_taken {
                cx.counters.tcp_partial_writes += 1;
                self.refused = true;
                self.want_writable = true;
                self.learn_overhead(cx.host);
            }
        }
        if fin && all_taken && self.rcv_nxt == seg_end {
            // RFC 9293 §3.10.7.4 eighth check: the FIN takes a sequence
            // number; the host peer gets ours once queued data is sent.
            self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
            self.guest_fin = true;
            self.want_writable = false;
            self.wnd_check_at = None;
            self.last_activity = now;
            if let Err(e) = cx.host.tcp_shutdown(self.sock, Shutdown::Write) {
                if e != HostError::NotConnected {
                    return Some(self.reset_both(cx));
                }
            }
        }
        self.send_ack(cx);
        // Recovery help for guests without SACK: the hole is filled, but
        // what the guest sent after it was dropped. A cumulative ACK alone
        // is a "partial ACK" that only NewReno senders act on; others (and
        // any sender once its retransmission timer backs off) would wait a
        // full, growing timeout per dropped segment. Three duplicates of
        // this ACK make any RFC 5681 sender fast-retransmit the next
        // missing segment now (§3.2); a fourth is a spare against the loss
        // of one (docs/performance.md has what it saves).
        // Only for guests that need it (see [`GuestRecovery`]).
        match self.rec.dropped_beyond {
            Some(d) if seq::lt(self.rcv_nxt, d) && all_taken && !data.is_empty() => {
                match self.rec.guest_recovery {
                    GuestRecovery::NeedsDupAcks => {
                        for _ in 0..=DUP_ACK_THRESHOLD {
                            self.send_ack(cx);
                        }
                        cx.counters.tcp_recovery_dup_acks += 1;
                        self.rec.nudges = 0;
                        self.rec.nudge_at = Some(now + self.nudge_wait());
                    }
                    GuestRecovery::Unknown => {
                        self.rec.probing_partial_ack = Some(self.rcv_nxt);
                        self.rec.nudges = 0;
                        self.rec.nudge_at = Some(now + self.nudge_wait().max(PARTIAL_ACK_PROBE));
                    }
                    GuestRecovery::ActsOnPartialAck => {
                        self.rec.nudges = 0;
                        self.rec.nudge_at = Some(now + self.first_nudge_wait());
                    }
                }
            }
            Some(d) if !seq::lt(self.rcv_nxt, d) => self.hole_closed(),
            _ => {}
        }
        None
    }

    /// Both FINs exchanged and ours acknowledged: done, without TIME_WAIT
    /// (the host kernel keeps its own).
    fn check_closed(&self) -> Option<Verdict> {
        let fin_acked = self.fin_seq.is_some_and(|fin| seq::gt(self.snd_una, fin));
        (self.guest_fin && fin_acked).then_some(Verdict::Close)
    }

    // ------------------------------------------------------------------
    // Host -> guest data
    // ------------------------------------------------------------------

    /// Sends what the guest's window allows from the host socket, then our
    /// FIN if the host peer closed and everything before it went out.
    fn push_data<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, now: Instant) -> Verdict {
        if self.state != State::Established || self.fin_seq.is_some() {
            return Verdict::Keep;
        }
        let Some(ip) = ip_to_guest(self.key.peer.ip(), self.key.guest.ip(), wire::protocol::TCP)
        else {
            return Verdict::Keep;
        };
        let our_mac = cx.config.our_mac;
        let dst_mac = cx.guest.dst_mac();
        // Bounded: each round sends a segment or returns.
        for _ in 0..4096 {
            if self.host_end == Some(self.snd_nxt) {
                // Everything before the host's FIN went out: ours follows
                // (a FIN needs no window space to be sent).
                if self.send_fin(cx) {
                    self.fin_seq = Some(self.snd_nxt);
                    self.snd_nxt = self.snd_nxt.wrapping_add(1);
                    if seq::gt(self.snd_nxt, self.snd_max) {
                        self.snd_max = self.snd_nxt;
                    }
                    self.last_activity = now;
                    if self.rto_at.is_none() || self.persist {
                        self.persist = false;
                        self.rto_at = Some(now + self.rtt.rto());
                    }
                }
                return Verdict::Keep;
            }
            let wnd_end = self.snd_una.wrapping_add(self.snd_wnd);
            let mut avail = seq::dist(self.snd_nxt, wnd_end);
            if let Some(end) = self.host_end {
                avail = avail.min(seq::dist(self.snd_nxt, end));
            }
            let offset = self.snd_nxt.wrapping_sub(self.snd_una) as usize;
            if avail == 0 {
                if self.snd_wnd == 0
                    && self.snd_nxt == self.snd_una
                    && self.rto_at.is_none()
                    && matches!(
                        cx.host.tcp_peek(self.sock, offset, &mut [0u8; 1]),
                        Ok(pk) if pk.len > 0
                    )
                {
                    // RFC 9293 §3.8.6.1: data waits behind a zero window:
                    // start probing it.
                    self.persist = true;
                    self.rto_at = Some(now + self.rtt.rto());
                }
                return Verdict::Keep;
            }
            let want = avail.min(self.mss) as usize;
            let max_len = frame_len(&self.key, 0, want);
            if cx.txq.room_for(max_len) == 0 {
                // Transmit queue full (backpressure): the data waits in the
                // socket, unpeeked, and the socket stays readable, so we
                // come back once the driver drained the queue. Checked
                // before the window is stamped: no segment, no window the
                // guest never saw.
                return Verdict::Keep;
            }
            let mut repr = self.base_repr(self.snd_nxt, TcpFlags::ACK | TcpFlags::PSH);
            self.stamp_window(cx.host, &mut repr);
            let sock = self.sock;
            let host = &mut *cx.host;
            let mut peeked = Err(HostError::WouldBlock);
            // Room was checked above, so this cannot meet a full queue.
            ctx::emit_into(cx.txq, cx.counters, max_len, |buf| {
                let r = wire::build_tcp_with(buf, our_mac, dst_mac, ip, &repr, want, |p| {
                    peeked = host.tcp_peek(sock, offset, p);
                    peeked.map_or(0, |pk| pk.len)
                });
                match (&peeked, r) {
                    (Ok(pk), Ok(len)) if pk.len > 0 => len,
                    _ => 0,
                }
            });
            let pk = match peeked {
                Ok(pk) => pk,
                Err(HostError::WouldBlock) => {
                    if self.snd_nxt != self.snd_una {
                        // Nothing new: wait for the guest's ACK instead of
                        // spinning on a queue that stays readable.
                        self.read_parked = true;
                    }
                    return Verdict::Keep;
                }
                Err(_) => return self.reset_both(cx),
            };
            let len = pk.len as u32;
            if len > 0 {
                cx.counters.tcp_data_segments_out += 1;
                self.snd_nxt = self.snd_nxt.wrapping_add(len);
                if seq::gt(self.snd_nxt, self.snd_max) {
                    self.snd_max = self.snd_nxt;
                    if self.rtt_probe.is_none() {
                        self.rtt_probe = Some((self.snd_nxt, now));
                    }
                }
                self.last_activity = now;
                if self.rto_at.is_none() || self.persist {
                    self.persist = false;
                    self.rto_at = Some(now + self.rtt.rto());
                }
            }
            if pk.fin {
                // The peer's FIN follows these bytes.
                self.host_end = Some(self.snd_nxt);
                continue;
            }
            if (len as usize) < want {
                // Short read: the queue is drained for now.
                if self.snd_nxt != self.snd_una {
                    self.read_parked = true;
                }
                return Verdict::Keep;
            }
        }
        Verdict::Keep
    }

    /// Zero-window probe (RFC 9293 §3.8.6.1): a pure ACK one below the
    /// oldest unacknowledged byte. That sequence number is always outside
    /// the guest's window, so the guest answers with an ACK carrying its
    /// current window, and nothing is consumed: `snd_nxt` does not move
    /// (why not the RFC's other form, one byte of new data: see
    /// docs/decisions.md, "Zero-window probes carry no data").
    fn send_window_probe<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>) {
        let mut r = self.base_repr(self.snd_una.wrapping_sub(1), TcpFlags::ACK);
        self.stamp_window(cx.host, &mut r);
        emit_control(cx, &self.key, &r);
        cx.counters.tcp_window_probes += 1;
    }

    // ------------------------------------------------------------------
    // Host events
    // ------------------------------------------------------------------

    /// Readiness on the host socket.
    pub(crate) fn on_host_event<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        r: Readiness,
    ) -> Verdict {
        let v = self.host_event(cx, now, r);
        if v == Verdict::Keep {
            self.sync_interest(cx.host);
        }
        v
    }

    fn host_event<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        now: Instant,
        r: Readiness,
    ) -> Verdict {
        match self.state {
            State::Connecting => {
                if !(r.writable || r.error || r.hangup) {
                    return Verdict::Keep;
                }
                match cx.host.take_error(self.sock) {
                    Ok(()) if !(r.hangup || r.error) => self.connected(cx, now),
                    _ => {
                        // Refused or unreachable: RST+ACK, ack = ISN + 1
                        // (RFC 9293 §3.10.7.1 answer to a SYN).
                        emit_rst(cx, &self.key, 0, Some(self.rcv_nxt));
                        Verdict::Close
                    }
                }
            }
            State::SynAckSent | State::SynSent => {
                if r.error || r.hangup {
                    // The host peer went away before the guest finished.
                    let _ = cx.host.take_error(self.sock);
                    if self.state == State::SynAckSent {
                        return self.reset_both(cx);
                    }
                    return Verdict::Abort;
                }
                Verdict::Keep
            }
            State::Established => {
                if r.hangup && !self.host_hup {
                    self.host_hup = true;
                    // Force the next sync to reconsider (deregister).
                    self.interest = None;
                }
                if r.error {
                    if let Err(_e) = cx.host.take_error(self.sock) {
                        // Host socket error mid-stream: RST to the guest.
                        return self.reset_both(cx);
                    }
                }
                if r.writable && self.want_writable {
                    self.want_writable = false;
                    self.window_update(cx, now, false);
                }
                if r.readable || r.read_closed || r.hangup {
                    self.read_parked = false;
                    let v = self.push_data(cx, now);
                    if v != Verdict::Keep {
                        return v;
                    }
                }
                self.check_closed().unwrap_or(Verdict::Keep)
            }
        }
    }

    /// Room appeared in the host socket (`via_timer`: or may have, see
    /// [`WINDOW_RECHECK`]): tell the guest once the window reached the
    /// floor (or opened from zero), and if it had sent bytes the socket
    /// refused, make it retransmit them with duplicate ACKs (RFC 5681 §3.2
    /// fast retransmit on the guest's side).
    ///
    /// Never gives up while the window stays below the floor: a report of
    /// room that turns out stale (handled after the guest filled the socket
    /// again) or a buffer accounted differently from our estimate moves the
    /// watch to the recheck timer, which listens for writability again.
    fn window_update<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, now: Instant, via_timer: bool) {
        self.wnd_check_at = None;
        if self.guest_fin {
            self.want_writable = false;
            return;
        }
        let before = self.adv_wnd;
        let (w, floor) = self.offered_window(cx.host);
        let opened = w > before && (w >= floor || before == 0);
        if opened || (self.refused && w > 0) {
            let mut r = self.base_repr(self.snd_nxt, TcpFlags::ACK);
            self.stamp_window(cx.host, &mut r);
            emit_control(cx, &self.key, &r);
            if self.refused && self.adv_wnd > 0 {
                self.refused = false;
                for _ in 0..DUP_ACK_THRESHOLD {
                    emit_control(cx, &self.key, &r);
                }
            }
        }
        // What the guest now knows is `adv_wnd`.
        if self.adv_wnd < floor || self.refused {
            if via_timer {
                // Listen again: the next report of room comes when the
                // socket drains (or at once, and we are back here).
                self.want_writable = true;
            } else {
                self.want_writable = false;
                self.wnd_check_at = Some(now + WINDOW_RECHECK);
            }
        } else {
            self.want_writable = false;
        }
    }

    // ------------------------------------------------------------------
    // Timers
    // ------------------------------------------------------------------

    /// Runs this flow's due timers.
    pub(crate) fn on_timer<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, now: Instant) -> Verdict {
        let v = self.timers(cx, now);
        if v == Verdict::Keep {
            self.sync_interest(cx.host);
        }
        v
    }

    fn timers<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, now: Instant) -> Verdict {
        if now >= self.last_activity + INACTIVITY_TIMEOUT {
            return match self.state {
                State::Connecting => {
                    emit_rst(cx, &self.key, 0, Some(self.rcv_nxt));
                    Verdict::Abort
                }
                _ => self.reset_both(cx),
            };
        }
        if self.rec.nudge_at.is_some_and(|t| now >= t) {
            self.recovery_nudge(cx, now);
        }
        if self.wnd_check_at.is_some_and(|t| now >= t) {
            self.wnd_check_at = None;
            if self.state == State::Established {
                self.window_update(cx, now, true);
            }
        }
        if self.rto_at.is_some_and(|t| now >= t) {
            self.rto_at = None;
            match self.state {
                State::Connecting => {
                    // Connect timeout: the guest gets a RST for its SYN.
                    emit_rst(cx, &self.key, 0, Some(self.rcv_nxt));
                    return Verdict::Abort;
                }
                State::SynAckSent | State::SynSent => {
                    if self.retries >= HANDSHAKE_RETRIES {
                        if self.state == State::SynAckSent {
                            return self.reset_both(cx);
                        }
                        return Verdict::Abort;
                    }
                    self.retries += 1;
                    self.rtt.back_off();
                    self.rtt_probe = None;
                    let with_ack = self.state == State::SynAckSent;
                    self.send_syn(cx, with_ack);
                    self.rto_at = Some(now + self.rtt.rto());
                }
                State::Established => {
                    if self.persist {
                        // Persist timer: probe, back off, never give up
                        // while the guest answers (retries reset on ACKs).
                        if self.retries >= MAX_RETRIES {
                            return self.reset_both(cx);
                        }
                        self.retries += 1;
                        self.rewind();
                        self.send_window_probe(cx);
                        self.rtt.back_off();
                        self.rto_at = Some(now + self.rtt.rto());
                    } else if self.snd_una != self.snd_max {
                        // RFC 6298 §5.4-5.6: retransmit from snd_una, back
                        // off, restart the timer.
                        if self.retries >= MAX_RETRIES {
                            return self.reset_both(cx);
                        }
                        self.retries += 1;
                        cx.counters.tcp_rto_expiries += 1;
                        self.rewind();
                        self.rtt.back_off();
                        self.rto_at = Some(now + self.rtt.rto().min(MAX_RTO));
                        self.dup_acks = 0;
                        let v = self.push_data(cx, now);
                        if v != Verdict::Keep {
                            return v;
                        }
                    }
                }
            }
        }
        if self.state == State::Established {
            let due = self.last_guest_rx
                + KEEPALIVE_IDLE
                + KEEPALIVE_INTERVAL * u32::from(self.keepalives_sent);
            if now >= due {
                if self.keepalives_sent >= KEEPALIVE_PROBES {
                    // The guest is gone.
                    return self.reset_both(cx);
                }
                // RFC 9293 §3.8.4: a segment with SEG.SEQ = SND.NXT - 1
                // elicits an ACK.
                let mut r = self.base_repr(self.snd_una.wrapping_sub(1), TcpFlags::ACK);
                self.stamp_window(cx.host, &mut r);
                emit_control(cx, &self.key, &r);
                self.keepalives_sent += 1;
                cx.counters.tcp_keepalives += 1;
            }
        }
        Verdict::Keep
    }
}
