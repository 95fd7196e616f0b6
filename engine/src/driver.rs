//! The driver contract: the one order in which every driver feeds an
//! [`Engine`] and empties its transmit queue, with backpressure instead of
//! drops.
//!
//! Every driver (the real event loop, the simulator, the simulator's real
//! arm, the demo) runs rounds of the same steps through a [`Driver`]:
//!
//! 1. guest frames in, one at a time ([`Driver::guest_frame`]);
//! 2. [`Driver::flush`]: host sends those frames queued leave, batched;
//! 3. host readiness ([`Driver::host_event`]);
//! 4. due timers ([`Driver::timers`]);
//! 5. [`Driver::drain`]: the transmit queue goes to a [`FrameSink`].
//!
//! [`Driver::finish`] is steps 4 and 5; a driver with nothing of its own to
//! do between them calls it to end each round.
//!
//! # Backpressure
//!
//! The [`TxQueue`] is bounded. Before a guest frame or a host readiness
//! report is handed to the engine, the driver makes sure the queue has room
//! for one more frame of the largest size, draining it into the sink when it
//! has not. If the sink cannot take enough (a guest not reading its socket):
//! - the guest frame is refused ([`Admit::Full`]): the caller keeps it and
//!   stops reading guest frames until [`Driver::has_room`] says so again;
//! - the readiness report is not delivered. Readiness is level-triggered
//!   (epoll, and the simulator's model of it), so the report comes back
//!   at the next wait and nothing is lost: host data stays in the kernel.
//!
//! A host readiness report can make the engine queue a burst (one UDP
//! socket's reads: up to [`HOST_READ_BURST`] datagrams), so a report is
//! delivered only while that many frames fit (or the whole queue, if it is
//! smaller). Work beyond that (a TCP flow sending a window's worth) is
//! bounded by the engine itself, which asks the queue for room before
//! reading from a socket ([`TxQueue::room_for`]).
//! While [`Driver::backpressured`] holds, a driver should wait for the sink
//! to accept more (the guest transport becoming writable) rather than for
//! input it would not take.
//!
//! Timers and flushes run even without room: they must not be postponed
//! (a deadline in the past would make a driver spin), and what they queue
//! beyond the bound is counted as a drop by the engine.
//!
//! This module is sans-IO like the engine: it never reads a clock and
//! never makes a system call; `now` is handed in, and frames leave only
//! through the [`FrameSink`] the caller provides.

use crate::config::Config;
use crate::engine::Engine;
use crate::host_io::{HostIo, Readiness, Token};
use crate::time::Instant;
use crate::txq::TxQueue;

/// The most frames one host readiness report makes the engine queue in one
/// go: a UDP socket is read in 4 batches of [`crate::udp::RX_BATCH`]
/// datagrams per report, a frame each. Readiness is held back until this
/// many frames fit, so such a burst is never cut short by a full queue.
pub const HOST_READ_BURST: usize = 4 * crate::udp::RX_BATCH;

/// Where drained frames go: a guest transport (QEMU stream socket, tap),
/// or the simulator's link.
pub trait FrameSink {
    /// A failure that ends the sink (the guest went away).
    type Error;

    /// Takes frames from the front of `frames`, in order, and returns how
    /// many it took. Taking fewer than offered (none included) means "no
    /// room now": the rest stay queued and are offered again later. A
    /// frame counted as taken must be delivered whole or not at all.
    fn accept(&mut self, now: Instant, frames: &TxQueue) -> Result<usize, Self::Error>;
}

/// Whether [`Driver::guest_frame`] handed the frame to the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// The engine took it.
    Taken,
    /// The queue is full and the sink cannot take more: keep the frame,
    /// offer it again once [`Driver::has_room`] holds.
    Full,
}

/// What the driver did, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Guest frames handed to the engine.
    pub guest_frames: u64,
    /// Guest frames refused because the queue had no room.
    pub guest_frames_refused: u64,
    /// Host readiness reports handed to the engine.
    pub host_events: u64,
    /// Host readiness reports held back because the queue had no room.
    pub host_events_held: u64,
    /// Timer runs.
    pub timer_runs: u64,
    /// Frames the sink took.
    pub frames_drained: u64,
    /// Drains that left frames in the queue (the sink was full).
    pub sink_stalls: u64,
}

/// Runs the driver contract for one engine. See the module docs.
#[derive(Clone, Debug)]
pub struct Driver {
    /// Bytes the queue must have free to take another input: the largest
    /// frame the engine builds.
    frame_room: usize,
    /// Frames that must fit before a host readiness report is delivered.
    host_burst: usize,
    /// The last drain left the queue without room.
    backpressured: bool,
    stats: DriverStats,
}

impl Driver {
    /// A driver for an engine whose largest frame is `max_frame_len` bytes
    /// and whose host readiness reports queue at most `host_burst` frames
    /// each.
    pub fn new(max_frame_len: usize, host_burst: usize) -> Self {
        Driver {
            frame_room: max_frame_len,
            host_burst: host_burst.max(1),
            backpressured: false,
            stats: DriverStats::default(),
        }
    }

    /// A driver for an engine running `config`: its largest frame is the
    /// MTU plus the Ethernet header; a host readiness report queues at most
    /// [`HOST_READ_BURST`] frames.
    pub fn for_config(config: &Config) -> Self {
        Self::new(
            usize::from(config.mtu) + crate::wire::ethernet::HEADER_LEN,
            HOST_READ_BURST,
        )
    }

    /// What the driver did so far.
    pub fn stats(&self) -> DriverStats {
        self.stats
    }

    /// Whether the last drain left the queue without room for a host
    /// readiness report's burst: wait for the sink, not for input.
    pub fn backpressured(&self) -> bool {
        self.backpressured
    }

    /// Whether the engine's queue has room for one more guest frame now.
    pub fn has_room<H: HostIo>(&self, engine: &mut Engine<H>) -> bool {
        self.fits(engine.tx_queue(), 1)
    }

    /// Whether `frames` more frames (capped at the queue's capacity, so an
    /// empty queue always has room) of the largest size fit in `queue`.
    fn fits(&self, queue: &TxQueue, frames: usize) -> bool {
        let capacity = queue.len() + queue.free_frames();
        queue.room_for(self.frame_room) > 0 && queue.free_frames() >= frames.min(capacity)
    }

    /// Makes room for one more guest frame, draining into `sink` if
    /// needed. Returns whether there is room.
    pub fn make_room<H: HostIo, S: FrameSink>(
        &mut self,
        engine: &mut Engine<H>,
        sink: &mut S,
        now: Instant,
    ) -> Result<bool, S::Error> {
        self.make_room_for(engine, sink, now, 1)
    }

    /// Makes room for `frames` frames, draining into `sink` if needed.
    fn make_room_for<H: HostIo, S: FrameSink>(
        &mut self,
        engine: &mut Engine<H>,
        sink: &mut S,
        now: Instant,
        frames: usize,
    ) -> Result<bool, S::Error> {
        if self.fits(engine.tx_queue(), frames) {
            return Ok(true);
        }
        self.drain(engine, sink, now)?;
        Ok(self.fits(engine.tx_queue(), frames))
    }

    /// Step 1: one guest frame, if the queue has room for what it may
    /// cause (draining first if needed).
    pub fn guest_frame<H: HostIo, S: FrameSink>(
        &mut self,
        engine: &mut Engine<H>,
        sink: &mut S,
        now: Instant,
        frame: &[u8],
    ) -> Result<Admit, S::Error> {
        if !self.make_room(engine, sink, now)? {
            self.stats.guest_frames_refused += 1;
            return Ok(Admit::Full);
        }
        self.stats.guest_frames += 1;
        engine.handle_frame(now, frame);
        Ok(Admit::Taken)
    }

    /// Step 2: after a batch of guest frames, the host sends they queued
    /// leave (see [`Engine::flush`]). Runs with or without room.
    pub fn flush<H: HostIo, S: FrameSink>(
        &mut self,
        engine: &mut Engine<H>,
        sink: &mut S,
        now: Instant,
    ) -> Result<(), S::Error> {
        self.make_room(engine, sink, now)?;
        engine.flush(now);
        Ok(())
    }

    /// Step 3: one host readiness report, delivered only if the queue has
    /// room for a read burst (draining first if needed), unless its token
    /// never writes to the guest (spliced flows,
    /// [`crate::flow::token::needs_guest_room`]). Returns whether it was
    /// delivered; a report held back comes again at the next wait.
    pub fn host_event<H: HostIo, S: FrameSink>(
        &mut self,
        engine: &mut Engine<H>,
        sink: &mut S,
        now: Instant,
        token: Token,
        readiness: Readiness,
    ) -> Result<bool, S::Error> {
        if crate::flow::token::needs_guest_room(token)
            && !self.make_room_for(engine, sink, now, self.host_burst)?
        {
            self.stats.host_events_held += 1;
            return Ok(false);
        }
        self.stats.host_events += 1;
        engine.handle_host_event(now, token, readiness);
        Ok(true)
    }

    /// Step 4: the engine's timers, if one is due at `now`. Returns whether
    /// they ran.
    pub fn timers<H: HostIo, S: FrameSink>(
        &mut self,
        engine: &mut Engine<H>,
        sink: &mut S,
        now: Instant,
    ) -> Result<bool, S::Error> {
        if engine.poll_timeout().is_none_or(|t| t > now) {
            return Ok(false);
        }
        self.make_room(engine, sink, now)?;
        self.stats.timer_runs += 1;
        engine.handle_timeout(now);
        Ok(true)
    }

    /// Step 5: offers the queue to `sink` until it is empty or the sink
    /// takes no more. Returns how many frames the sink took.
    pub fn drain<H: HostIo, S: FrameSink>(
        &mut self,
        engine: &mut Engine<H>,
        sink: &mut S,
        now: Instant,
    ) -> Result<usize, S::Error> {
        let queue = engine.tx_queue();
        let mut total = 0;
        // Bounded: every pass but the last takes at least one frame.
        for _ in 0..=queue.len() {
            if queue.is_empty() {
                break;
            }
            let taken = sink.accept(now, queue)?.min(queue.len());
            queue.consume(taken);
            total += taken;
            if taken == 0 {
                break;
            }
        }
        self.stats.frames_drained += total as u64;
        if !queue.is_empty() {
            self.stats.sink_stalls += 1;
        }
        // Held back as long as a host readiness report would be: a driver
        // that went on waiting for host input then would spin on reports it
        // does not deliver.
        self.backpressured = !self.fits(queue, self.host_burst);
        Ok(total)
    }

    /// Steps 4 and 5: due timers, then a drain. Ends a round.
    pub fn finish<H: HostIo, S: FrameSink>(
        &mut self,
        engine: &mut Engine<H>,
        sink: &mut S,
        now: Instant,
    ) -> Result<(), S::Error> {
        self.timers(engine, sink, now)?;
        self.drain(engine, sink, now)?;
        Ok(())
    }

    /// When the driver must run the next round at the latest: the engine's
    /// next deadline.
    pub fn next_deadline<H: HostIo>(engine: &Engine<H>) -> Option<Instant> {
        engine.poll_timeout()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::Ipv4Addr;

    use super::*;
    use crate::host_io::NoHost;
    use crate::wire::{self, ArpOperation, ArpRepr};
    use crate::{Config, MacAddr};

    const GUEST_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);

    /// A sink that takes at most `budget` frames, then none until refilled;
    /// it records what it took.
    #[derive(Default)]
    struct FakeSink {
        budget: usize,
        taken: Vec<Vec<u8>>,
        calls: usize,
    }

    impl FrameSink for FakeSink {
        type Error = Infallible;
        fn accept(&mut self, _: Instant, frames: &TxQueue) -> Result<usize, Infallible> {
            self.calls += 1;
            let n = frames.len().min(self.budget);
            self.taken.extend(frames.iter().take(n).map(<[u8]>::to_vec));
            self.budget -= n;
            Ok(n)
        }
    }

    /// A sink that takes one frame per call (a socket with room for one).
    struct OneAtATime(Vec<Vec<u8>>);

    impl FrameSink for OneAtATime {
        type Error = Infallible;
        fn accept(&mut self, _: Instant, frames: &TxQueue) -> Result<usize, Infallible> {
            self.0.extend(frames.iter().take(1).map(<[u8]>::to_vec));
            Ok(frames.len().min(1))
        }
    }

    /// A sink whose guest has gone.
    struct Gone;

    impl FrameSink for Gone {
        type Error = &'static str;
        fn accept(&mut self, _: Instant, _: &TxQueue) -> Result<usize, &'static str> {
            Err("gone")
        }
    }

    fn engine(queue_frames: usize) -> Engine<NoHost> {
        let mut c = Config::example();
        c.tx_queue_frames = queue_frames;
        Engine::new(c, NoHost, 1).unwrap()
    }

    /// A who-has for the gateway from `sender` (each distinct, so replies
    /// can be told apart).
    fn arp_request(sender: u8) -> Vec<u8> {
        let mut buf = vec![0; 64];
        let n = wire::build_arp(
            &mut buf,
            GUEST_MAC,
            MacAddr::BROADCAST,
            &ArpRepr {
                operation: ArpOperation::Request,
                sender_hw: GUEST_MAC,
                sender_ip: Ipv4Addr::new(192, 0, 2, sender),
                target_hw: MacAddr([0; 6]),
                target_ip: Ipv4Addr::new(192, 0, 2, 1),
            },
        )
        .unwrap();
        buf.truncate(n);
        buf
    }

    /// The address each ARP reply was sent to, in order (other frames,
    /// such as the router advertisement the guest's first frame triggers,
    /// are skipped).
    fn reply_targets(frames: &[Vec<u8>]) -> Vec<u8> {
        frames
            .iter()
            .filter(|f| f[12..14] == [0x08, 0x06])
            .map(|f| {
                let arp = wire::arp::ArpPacket::new_checked(&f[14..]).unwrap();
                assert_eq!(arp.opcode(), ArpOperation::Reply.code());
                arp.target_ip().octets()[3]
            })
            .collect()
    }

    #[test]
    fn a_round_hands_every_queued_frame_to_the_sink_in_order() {
        let mut e = engine(256);
        let mut d = Driver::for_config(e.config());
        let mut sink = FakeSink {
            budget: usize::MAX,
            ..FakeSink::default()
        };
        let now = Instant::from_millis(1);
        for i in 2..12 {
            let admit = d.guest_frame(&mut e, &mut sink, now, &arp_request(i));
            assert_eq!(admit, Ok(Admit::Taken));
        }
        d.flush(&mut e, &mut sink, now).unwrap();
        d.finish(&mut e, &mut sink, now).unwrap();
        assert_eq!(reply_targets(&sink.taken), (2..12).collect::<Vec<_>>());
        assert!(e.tx_queue().is_empty());
        assert!(!d.backpressured());
        // Ten replies and the router advertisement the first frame made due.
        assert_eq!(d.stats().frames_drained, 11);
        // Batched: nothing was drained before the round ended.
        assert_eq!(sink.calls, 1);
    }

    #[test]
    fn a_full_queue_refuses_guest_frames_until_the_sink_takes_more() {
        let mut e = engine(4);
        let mut d = Driver::for_config(e.config());
        let mut sink = FakeSink::default();
        let now = Instant::from_millis(1);
        let requests: Vec<Vec<u8>> = (2..32).map(arp_request).collect();
        let mut next = 0;
        // Bounded: each pass either takes a frame or refills the sink.
        for _ in 0..requests.len() * 3 {
            if next == requests.len() {
                break;
            }
            match d
                .guest_frame(&mut e, &mut sink, now, &requests[next])
                .unwrap()
            {
                Admit::Taken => next += 1,
                Admit::Full => {
                    assert!(d.backpressured());
                    assert!(!d.has_room(&mut e));
                    assert_eq!(e.tx_queue().len(), 4);
                    sink.budget += 3;
                }
            }
        }
        assert_eq!(next, requests.len());
        sink.budget = usize::MAX;
        d.finish(&mut e, &mut sink, now).unwrap();
        assert_eq!(reply_targets(&sink.taken), (2..32).collect::<Vec<_>>());
        assert_eq!(e.counters().total_drops(), 0);
        assert!(d.stats().guest_frames_refused > 0);
        assert_eq!(d.stats().guest_frames, 30);
    }

    #[test]
    fn host_readiness_is_held_back_until_a_read_burst_fits() {
        let mut e = engine(HOST_READ_BURST + 8);
        let mut d = Driver::for_config(e.config());
        let mut sink = FakeSink::default();
        let now = Instant::from_millis(1);
        // The first frame also makes a router advertisement due; run it so
        // the queue holds exactly the replies.
        for i in 2..11 {
            d.guest_frame(&mut e, &mut sink, now, &arp_request(i))
                .unwrap();
        }
        d.timers(&mut e, &mut sink, now).unwrap();
        assert_eq!(e.tx_queue().free_frames(), HOST_READ_BURST - 2);
        let r = Readiness {
            readable: true,
            ..Readiness::default()
        };
        let token = crate::engine::token::make(crate::engine::token::UDP_FLOW, 7);
        assert_eq!(d.host_event(&mut e, &mut sink, now, token, r), Ok(false));
        assert_eq!(d.stats().host_events_held, 1);
        // Guest frames still fit one at a time.
        assert!(d.has_room(&mut e));
        sink.budget = 2;
        assert_eq!(d.host_event(&mut e, &mut sink, now, token, r), Ok(true));
        assert_eq!(d.stats().host_events, 1);
    }

    #[test]
    fn a_spliced_flows_readiness_is_delivered_even_without_room() {
        let mut e = engine(HOST_READ_BURST + 8);
        let mut d = Driver::for_config(e.config());
        let mut sink = FakeSink::default();
        let now = Instant::from_millis(1);
        for i in 2..11 {
            d.guest_frame(&mut e, &mut sink, now, &arp_request(i))
                .unwrap();
        }
        d.timers(&mut e, &mut sink, now).unwrap();
        assert!(e.tx_queue().free_frames() < HOST_READ_BURST);
        let r = Readiness {
            readable: true,
            ..Readiness::default()
        };
        use crate::engine::token;
        for kind in [token::TCP_SPLICE, token::TCP_SPLICE_PEER, token::UDP_SPLICE] {
            let t = token::flow(kind, 3, 1);
            assert_eq!(d.host_event(&mut e, &mut sink, now, t, r), Ok(true));
        }
        assert_eq!(d.stats().host_events_held, 0);
        assert!(sink.taken.is_empty(), "nothing was drained for them");
    }

    #[test]
    fn a_queue_smaller_than_a_read_burst_takes_host_readiness_once_empty() {
        let mut e = engine(2);
        let mut d = Driver::for_config(e.config());
        let mut sink = FakeSink::default();
        let now = Instant::from_millis(1);
        d.guest_frame(&mut e, &mut sink, now, &arp_request(2))
            .unwrap();
        let r = Readiness {
            readable: true,
            ..Readiness::default()
        };
        let token = crate::engine::token::make(crate::engine::token::UDP_FLOW, 7);
        assert_eq!(d.host_event(&mut e, &mut sink, now, token, r), Ok(false));
        sink.budget = 1;
        assert_eq!(d.host_event(&mut e, &mut sink, now, token, r), Ok(true));
    }

    #[test]
    fn a_sink_taking_fewer_frames_than_offered_gets_the_rest_in_order() {
        let mut e = engine(256);
        let mut d = Driver::for_config(e.config());
        let now = Instant::from_millis(1);
        let mut sink = OneAtATime(Vec::new());
        for i in 2..7 {
            d.guest_frame(&mut e, &mut sink, now, &arp_request(i))
                .unwrap();
        }
        assert_eq!(d.drain(&mut e, &mut sink, now), Ok(5));
        assert_eq!(reply_targets(&sink.0), vec![2, 3, 4, 5, 6]);
    }

    #[test]
    fn a_sink_failure_reaches_the_caller_and_keeps_the_frames() {
        let mut e = engine(256);
        let mut d = Driver::for_config(e.config());
        let now = Instant::from_millis(1);
        d.guest_frame(&mut e, &mut Gone, now, &arp_request(2))
            .unwrap();
        assert_eq!(d.drain(&mut e, &mut Gone, now), Err("gone"));
        assert_eq!(e.tx_queue().len(), 1);
    }

    #[test]
    fn timers_run_when_due_even_without_room_and_what_overflows_is_counted() {
        let mut e = engine(1);
        let mut d = Driver::for_config(e.config());
        let mut sink = FakeSink::default();
        let now = Instant::from_millis(1);
        // The guest's first frame makes the first router advertisement due
        // at once (RFC 4861 §6.2.4); its ARP reply fills the queue.
        d.guest_frame(&mut e, &mut sink, now, &arp_request(2))
            .unwrap();
        assert!(!d.has_room(&mut e));
        assert_eq!(Driver::next_deadline(&e), Some(now));
        assert_eq!(d.timers(&mut e, &mut sink, Instant::ZERO), Ok(false));
        assert_eq!(d.timers(&mut e, &mut sink, now), Ok(true));
        assert_eq!(d.stats().timer_runs, 1);
        assert_eq!(e.counters().drops(crate::DropReason::TxQueueFull), 1);
    }
}
