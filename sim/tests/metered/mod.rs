//! The engine's own heap, measured: a counting global allocator (the
//! mechanism of `engine/tests/tcp_alloc.rs`, per thread) that counts only
//! while the test thread is inside an engine entry point, and [`Metered`],
//! a `HostIo` wrapper that stops counting for the duration of every host
//! call, so the simulated host's own bookkeeping (its socket model
//! allocates freely) is never charged to the engine.
//!
//! A test binary that uses this module installs the allocator with
//! `metered::install!()`. Everything allocated and freed inside
//! [`engine_call`] but outside host calls is the engine's: the count of
//! allocations, and the live and peak bytes.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};

use passt_engine::host_io::{
    ConnectProgress, Family, IcmpErrorReport, Peeked, Shutdown, Spliced, TcpInfo, UdpRecv, UdpSend,
};
use passt_engine::{HostError, HostIo, Interest, Place, SockId, Token};

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
    static TRACE: Cell<bool> = const { Cell::new(false) };
}

/// The counting allocator (forwards to the system allocator).
pub struct Counting;

fn on() -> bool {
    ON.try_with(Cell::get).unwrap_or(false)
}

fn add(bytes: i64, new_block: bool) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + bytes;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
    if new_block {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        if TRACE.try_with(Cell::get).unwrap_or(false) {
            ON.with(|c| c.set(false));
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
            ON.with(|c| c.set(true));
        }
    }
}

// SAFETY: forwards every call to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if on() {
            add(layout.size() as i64, true);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if on() {
            add(layout.size() as i64, true);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if on() {
            add(new_size as i64 - layout.size() as i64, true);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if on() {
            add(-(layout.size() as i64), false);
        }
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Installs [`Counting`] as the test binary's global allocator.
#[macro_export]
macro_rules! install {
    () => {
        #[global_allocator]
        static GLOBAL: metered::Counting = metered::Counting;
    };
}
pub use install;

/// Runs `f` (a call into the engine) with its allocations counted.
pub fn engine_call<R>(f: impl FnOnce() -> R) -> R {
    let was = ON.with(|c| c.replace(true));
    let r = f();
    ON.with(|c| c.set(was));
    r
}

fn host_call<R>(f: impl FnOnce() -> R) -> R {
    let was = ON.with(|c| c.replace(false));
    let r = f();
    ON.with(|c| c.set(was));
    r
}

/// Allocations (new blocks and reallocations) counted so far.
pub fn allocations() -> u64 {
    ALLOCS.with(Cell::get)
}

/// Bytes the engine holds now (allocated minus freed in engine calls).
pub fn live_bytes() -> i64 {
    LIVE.with(Cell::get)
}

/// The most [`live_bytes`] ever held.
pub fn peak_bytes() -> i64 {
    PEAK.with(Cell::get)
}

/// Restarts the allocation count (live and peak bytes are kept).
pub fn reset_allocations() {
    ALLOCS.with(|a| a.set(0));
}

/// Prints a backtrace for every counted allocation from now on.
pub fn trace(on: bool) {
    TRACE.with(|t| t.set(on));
}

/// A `HostIo` whose calls are never charged to the engine.
#[derive(Debug)]
pub struct Metered<H>(pub H);

impl<H: HostIo> HostIo for Metered<H> {
    fn set_interest(
        &mut self,
        sock: SockId,
        token: Token,
        interest: Interest,
    ) -> Result<(), HostError> {
        host_call(|| self.0.set_interest(sock, token, interest))
    }
    fn deregister(&mut self, sock: SockId) -> Result<(), HostError> {
        host_call(|| self.0.deregister(sock))
    }
    fn close(&mut self, sock: SockId) {
        host_call(|| self.0.close(sock))
    }
    fn take_error(&mut self, sock: SockId) -> Result<(), HostError> {
        host_call(|| self.0.take_error(sock))
    }
    fn local_addr(&self, sock: SockId) -> Result<SocketAddr, HostError> {
        host_call(|| self.0.local_addr(sock))
    }
    fn tcp_connect_at(
        &mut self,
        place: Place,
        local: Option<SocketAddr>,
        remote: SocketAddr,
    ) -> Result<(SockId, ConnectProgress), HostError> {
        host_call(|| self.0.tcp_connect_at(place, local, remote))
    }
    fn tcp_listen_at(
        &mut self,
        place: Place,
        addr: SocketAddr,
        backlog: u32,
    ) -> Result<SockId, HostError> {
        host_call(|| self.0.tcp_listen_at(place, addr, backlog))
    }
    fn tcp_accept(
        &mut self,
        listener: SockId,
    ) -> Result<(SockId, SocketAddr, SocketAddr), HostError> {
        host_call(|| self.0.tcp_accept(listener))
    }
    fn tcp_send(&mut self, sock: SockId, data: &[u8]) -> Result<usize, HostError> {
        host_call(|| self.0.tcp_send(sock, data))
    }
    fn tcp_peek(
        &mut self,
        sock: SockId,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<Peeked, HostError> {
        host_call(|| self.0.tcp_peek(sock, offset, buf))
    }
    fn tcp_discard(&mut self, sock: SockId, len: usize) -> Result<usize, HostError> {
        host_call(|| self.0.tcp_discard(sock, len))
    }
    fn tcp_shutdown(&mut self, sock: SockId, how: Shutdown) -> Result<(), HostError> {
        host_call(|| self.0.tcp_shutdown(sock, how))
    }
    fn tcp_abort(&mut self, sock: SockId) {
        host_call(|| self.0.tcp_abort(sock))
    }
    fn tcp_info(&mut self, sock: SockId) -> Result<TcpInfo, HostError> {
        host_call(|| self.0.tcp_info(sock))
    }
    fn tcp_set_nodelay(&mut self, sock: SockId, on: bool) -> Result<(), HostError> {
        host_call(|| self.0.tcp_set_nodelay(sock, on))
    }
    fn tcp_splice(&mut self, from: SockId, to: SockId, max: usize) -> Result<Spliced, HostError> {
        host_call(|| self.0.tcp_splice(from, to, max))
    }
    fn udp_bind_at(&mut self, place: Place, local: SocketAddr) -> Result<SockId, HostError> {
        host_call(|| self.0.udp_bind_at(place, local))
    }
    fn udp_connect(&mut self, sock: SockId, remote: SocketAddr) -> Result<(), HostError> {
        host_call(|| self.0.udp_connect(sock, remote))
    }
    fn udp_send_batch(&mut self, sock: SockId, msgs: &[UdpSend<'_>]) -> Result<usize, HostError> {
        host_call(|| self.0.udp_send_batch(sock, msgs))
    }
    fn udp_recv_batch(
        &mut self,
        sock: SockId,
        slots: &mut [UdpRecv<'_>],
    ) -> Result<usize, HostError> {
        host_call(|| self.0.udp_recv_batch(sock, slots))
    }
    fn udp_recv_error(&mut self, sock: SockId) -> Result<Option<IcmpErrorReport>, HostError> {
        host_call(|| self.0.udp_recv_error(sock))
    }
    fn ping_open(&mut self, family: Family, id: u16) -> Result<SockId, HostError> {
        host_call(|| self.0.ping_open(family, id))
    }
    fn ping_send(&mut self, sock: SockId, dst: IpAddr, message: &[u8]) -> Result<(), HostError> {
        host_call(|| self.0.ping_send(sock, dst, message))
    }
    fn ping_recv(&mut self, sock: SockId, buf: &mut [u8]) -> Result<(usize, IpAddr), HostError> {
        host_call(|| self.0.ping_recv(sock, buf))
    }
}
