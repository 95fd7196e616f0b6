//! pasta's loopback fast path for TCP: a connection between the host's
//! loopback and the guest namespace's loopback, spliced socket to socket
//! ([`HostIo::tcp_splice`]) without ever crossing the guest transport.
//!
//! A spliced flow holds two connected sockets: side 0, the one accepted on
//! a listener, and side 1, the one this module connected in the other
//! namespace. Direction `d` carries the bytes read from side `d` to side
//! `1 - d`. Per direction:
//! - **data**: moved by `tcp_splice`, at most [`SPLICE_BUDGET`] bytes per
//!   readiness event (level-triggered readiness brings the rest back, so
//!   one busy flow cannot starve the others);
//! - **backpressure by interest**: when the sink's send buffer is full,
//!   the source is no longer read (its readable interest is dropped) and
//!   the sink's writability is awaited instead; nothing is buffered here;
//! - **half-close**: the source's FIN (end of stream, every byte moved)
//!   becomes `shutdown(SHUT_WR)` on the sink (RFC 9293 §3.6: a FIN closes
//!   one direction only; the other keeps flowing);
//! - **reset**: an error on either socket (a peer's RST, a failed write)
//!   aborts both, so each peer sees a RST (RFC 9293 §3.10.7.4).
//!
//! The flow ends cleanly (both sockets closed, queued data still
//! delivered by the kernel) once both directions reached end of stream.
//! Flows live in a [`FlowTable`] of kind [`token::TCP_SPLICE`] under the
//! engine's one [`crate::flow::FlowLimit`]; side 1 registers the same
//! entry's token under kind [`token::TCP_SPLICE_PEER`].
//!
//! This module never reads the bytes it moves, never names a syscall and
//! has no timers (the kernel keeps both connections' own).

use std::net::SocketAddr;

use crate::counters::DropReason;
use crate::ctx::Ctx;
use crate::flow::{FlowTable, token};
use crate::host_io::{
    ConnectProgress, HostError, HostIo, Interest, Place, Readiness, Shutdown, SockId, Token,
};

/// Bytes one direction may move per readiness event.
pub const SPLICE_BUDGET: usize = 1 << 20;

/// One spliced connection.
#[derive(Debug)]
pub struct SpliceFlow {
    /// Side 0 (accepted) and side 1 (connected).
    socks: [SockId; 2],
    /// Side 1's connect has not completed yet.
    connecting: bool,
    /// Direction `d` reached end of stream and its FIN was passed on.
    eof: [bool; 2],
    /// Direction `d` waits for room at its sink (side `1 - d`).
    sink_full: [bool; 2],
    /// What each side is registered for (`None`: not registered).
    registered: [Option<Interest>; 2],
    /// Side `s` reported a hang-up (both of its directions are shut).
    hup: [bool; 2],
    /// Bytes moved per direction.
    moved: [u64; 2],
}

impl SpliceFlow {
    /// What side `s` must be registered for now; `None`: deregistered (a
    /// hung-up socket reports `EPOLLHUP` whatever the interest, and while
    /// its data waits for a full sink that report would only spin).
    fn wanted(&self, s: usize) -> Option<Interest> {
        if self.connecting {
            // Side 0 waits (errors and hang-ups still come); side 1 waits
            // for its connect to finish.
            return Some(if s == 0 {
                Interest::NONE
            } else {
                Interest::WRITE
            });
        }
        let want = Interest {
            readable: !self.eof[s] && !self.sink_full[s],
            writable: self.sink_full[1 - s],
        };
        if self.hup[s] && want == Interest::NONE {
            None
        } else {
            Some(want)
        }
    }
}

/// A snapshot of one spliced flow, for tests and diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpliceInfo {
    /// Bytes moved from the accepted side to the connected side.
    pub accepted_to_connected: u64,
    /// Bytes moved the other way.
    pub connected_to_accepted: u64,
    /// The connected side is still connecting.
    pub connecting: bool,
}

/// How a flow's event ended.
enum End {
    /// Still live.
    Keep,
    /// Both directions ended: close both sockets gracefully.
    Close,
    /// An error: reset both.
    Abort,
    /// The connect of side 1 failed: reset side 0.
    Refused,
}

/// The spliced TCP flows.
#[derive(Debug)]
pub struct Splices {
    flows: FlowTable<SpliceFlow>,
}

impl Default for Splices {
    fn default() -> Self {
        Self::new()
    }
}

impl Splices {
    /// No flows.
    pub fn new() -> Self {
        Splices {
            flows: FlowTable::new(token::TCP_SPLICE),
        }
    }

    /// Live spliced flows.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// No live spliced flow.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Live flows in slot order.
    pub fn iter(&self) -> impl Iterator<Item = SpliceInfo> + '_ {
        self.flows.iter().map(|(_, f)| SpliceInfo {
            accepted_to_connected: f.moved[0],
            connected_to_accepted: f.moved[1],
            connecting: f.connecting,
        })
    }

    /// Splices the connection `accepted` (just accepted on a listener) to
    /// a new connection to `target` made at `place`. When no flow can be
    /// opened (full table, connect refused at once) `accepted` is reset.
    pub fn open<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        accepted: SockId,
        place: Place,
        target: SocketAddr,
    ) {
        let Ok(vacant) = self.flows.vacant(cx.flows) else {
            cx.host.tcp_abort(accepted);
            cx.counters.drop(DropReason::FlowTableFull);
            return;
        };
        let (sock, progress) = match cx.host.tcp_connect_at(place, None, target) {
            Ok(x) => x,
            Err(_) => {
                self.flows.give_back(vacant, cx.flows);
                cx.host.tcp_abort(accepted);
                cx.counters.tcp_splice_refused += 1;
                return;
            }
        };
        let connecting = progress == ConnectProgress::InProgress;
        let flow = SpliceFlow {
            socks: [accepted, sock],
            connecting,
            eof: [false; 2],
            sink_full: [false; 2],
            registered: [None; 2],
            hup: [false; 2],
            moved: [0; 2],
        };
        let slot = self.flows.fill(vacant, flow, cx.counters);
        let end = if connecting {
            End::Keep
        } else {
            self.established(cx, slot)
        };
        self.finish(cx, slot, end);
    }

    /// Readiness on either side of a spliced flow.
    pub fn on_host_event<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, tok: Token, r: Readiness) {
        let side = usize::from(token::kind(tok) == token::TCP_SPLICE_PEER);
        let Some(slot) = self.flows.lookup(token::with_kind(tok, token::TCP_SPLICE)) else {
            return;
        };
        let end = self.event(cx, slot, side, r);
        self.finish(cx, slot, end);
    }

    fn event<H: HostIo>(
        &mut self,
        cx: &mut Ctx<'_, H>,
        slot: u32,
        side: usize,
        r: Readiness,
    ) -> End {
        let Some(flow) = self.flows.get_mut(slot) else {
            return End::Keep;
        };
        if flow.connecting {
            if side == 0 {
                // The client went away before we could connect.
                return if r.error || r.hangup {
                    End::Abort
                } else {
                    End::Keep
                };
            }
            if !(r.writable || r.error || r.hangup) {
                return End::Keep;
            }
            return match cx.host.take_error(flow.socks[1]) {
                Ok(()) => self.established(cx, slot),
                Err(_) => End::Refused,
            };
        }
        if r.error {
            return End::Abort;
        }
        flow.hup[side] |= r.hangup;
        if (r.readable || r.read_closed || r.hangup)
            && !flow.sink_full[side]
            && let Err(()) = pump(cx, flow, side)
        {
            return End::Abort;
        }
        if r.writable
            && let Err(()) = pump(cx, flow, 1 - side)
        {
            return End::Abort;
        }
        if flow.eof == [true, true] {
            End::Close
        } else {
            End::Keep
        }
    }

    /// Side 1 is connected: counts the flow and moves what already waits.
    fn established<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, slot: u32) -> End {
        let Some(flow) = self.flows.get_mut(slot) else {
            return End::Keep;
        };
        flow.connecting = false;
        cx.counters.tcp_splice_opened += 1;
        for s in flow.socks {
            // Segment boundaries are the peers' own: no Nagle delay on top.
            let _ = cx.host.tcp_set_nodelay(s, true);
        }
        for d in 0..2 {
            if pump(cx, flow, d).is_err() {
                return End::Abort;
            }
        }
        if flow.eof == [true, true] {
            End::Close
        } else {
            End::Keep
        }
    }

    /// Applies the outcome of an event: registrations brought up to date,
    /// or the flow released.
    fn finish<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, slot: u32, end: End) {
        let end = match end {
            End::Keep => match self.register(cx, slot) {
                Ok(()) => return,
                Err(_) => End::Abort,
            },
            e => e,
        };
        let Some(flow) = self.flows.remove(slot, cx.flows, cx.counters) else {
            return;
        };
        match end {
            End::Close => {
                for s in flow.socks {
                    cx.host.close(s);
                }
            }
            End::Refused => {
                cx.counters.tcp_splice_refused += 1;
                cx.host.tcp_abort(flow.socks[0]);
                cx.host.close(flow.socks[1]);
            }
            End::Abort | End::Keep => {
                cx.counters.tcp_splice_resets += 1;
                for s in flow.socks {
                    cx.host.tcp_abort(s);
                }
            }
        }
    }

    /// Registers each side for what it needs, where that changed.
    fn register<H: HostIo>(&mut self, cx: &mut Ctx<'_, H>, slot: u32) -> Result<(), HostError> {
        let Some(tok) = self.flows.token(slot) else {
            return Ok(());
        };
        let Some(flow) = self.flows.get_mut(slot) else {
            return Ok(());
        };
        for s in 0..2 {
            let want = flow.wanted(s);
            if flow.registered[s] == want {
                continue;
            }
            let t = if s == 0 {
                tok
            } else {
                token::with_kind(tok, token::TCP_SPLICE_PEER)
            };
            match want {
                Some(i) => cx.host.set_interest(flow.socks[s], t, i)?,
                None => cx.host.deregister(flow.socks[s])?,
            }
            flow.registered[s] = want;
        }
        Ok(())
    }
}

/// Moves what direction `d` has (one budget's worth at most). `Err` when
/// either socket failed: the flow must be reset.
fn pump<H: HostIo>(cx: &mut Ctx<'_, H>, flow: &mut SpliceFlow, d: usize) -> Result<(), ()> {
    if flow.eof[d] {
        return Ok(());
    }
    let (src, dst) = (flow.socks[d], flow.socks[1 - d]);
    match cx.host.tcp_splice(src, dst, SPLICE_BUDGET) {
        Ok(s) => {
            flow.moved[d] += s.moved as u64;
            cx.counters.tcp_splice_bytes += s.moved as u64;
            flow.sink_full[d] = s.sink_full && !s.src_eof;
            if s.src_eof {
                // RFC 9293 §3.6: the FIN closes this direction only.
                cx.host.tcp_shutdown(dst, Shutdown::Write).map_err(|_| ())?;
                flow.eof[d] = true;
            }
            Ok(())
        }
        Err(HostError::WouldBlock) => {
            flow.sink_full[d] = false;
            Ok(())
        }
        Err(_) => Err(()),
    }
}
