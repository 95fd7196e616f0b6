//! Zero heap allocations per segment in steady state: a counting global
//! allocator counts every allocation made inside engine entry points
//! (`handle_frame`, `handle_host_event`, `handle_timeout`, `poll_timeout`,
//! and `RealHost::wait`) on the test thread, while megabytes flow both
//! ways through a TCP flow after a warm-up. smoltcp (the guest), the peer
//! thread and the harness allocate freely: they are not counted.
#![cfg(target_os = "linux")]

mod tcp_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use passt_engine::{Config, Readiness, Token};
use smoltcp::socket::tcp::State;
use tcp_common::*;

struct Counting;

/// `TCP_ALLOC_TRACE=1` prints a backtrace for each counted allocation.
static TRACE: AtomicBool = AtomicBool::new(false);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Per thread, so that tests running in parallel do not mix counts.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

fn note() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        if TRACE.load(Ordering::Relaxed) {
            COUNTING.with(|c| c.set(false));
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
            COUNTING.with(|c| c.set(true));
        }
    }
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<R>(f: impl FnOnce() -> R) -> R {
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    r
}

fn smol_now(t: passt_engine::Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros((t.as_nanos() / 1000) as i64)
}

/// `tcp_common::step` with the engine calls counted.
fn counted_step(
    net: &mut Net,
    g: &mut SmolGuest,
    events: &mut Vec<(Token, Readiness)>,
    frames: &mut Vec<Vec<u8>>,
) {
    let now = net.now();
    g.iface.poll(smol_now(now), &mut g.dev, &mut g.sockets);
    frames.clear();
    frames.extend(g.dev.tx.drain(..));
    let now = net.now();
    counted(|| {
        for f in frames.iter() {
            net.engine.handle_frame(now, f);
        }
    });
    net.take_tx(&mut g.dev.rx);
    let wait = if g.dev.rx.is_empty() {
        Duration::from_millis(1)
    } else {
        Duration::ZERO
    };
    events.clear();
    let now = net.now();
    counted(|| {
        let wait = match net.engine.poll_timeout() {
            Some(t) if t <= now => Duration::ZERO,
            Some(t) => (t - now).min(wait),
            None => wait,
        };
        let _ = net.engine.host_mut().wait(Some(wait), events);
        for &(t, r) in events.iter() {
            net.engine.handle_host_event(now, t, r);
        }
        if net.engine.poll_timeout().is_some_and(|t| t <= now) {
            net.engine.handle_timeout(now);
        }
    });
    net.take_tx(&mut g.dev.rx);
}

#[test]
fn steady_state_transfer_allocates_nothing() {
    transfer(65520);
}

#[test]
fn steady_state_transfer_allocates_nothing_mtu1500() {
    transfer(1500);
}

fn transfer(mtu: u16) {
    let trace = std::env::var_os("TCP_ALLOC_TRACE").is_some();
    const WARMUP: usize = 4 << 20;
    const MEASURED: usize = 24 << 20;
    let total = WARMUP + MEASURED;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let echo = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut n_total = 0;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).unwrap();
            n_total += n;
        }
        s.shutdown(Shutdown::Write).unwrap();
        n_total
    });
    let mut cfg = Config::example();
    cfg.mtu = mtu;
    let mut net = Net::new(cfg);
    let mut g = SmolGuest::new(net.now(), mtu);
    let h = g.tcp_socket(1 << 20, 1 << 20);
    g.connect(h, SocketAddr::new(IpAddr::V4(GW_V4), port), 40100);
    let data = pattern(total, 11);
    let mut sent = 0;
    let mut received = 0usize;
    let mut mismatch = false;
    let mut events = Vec::with_capacity(1024);
    let mut frames = Vec::with_capacity(1024);
    let mut measured_from = None;
    let mut buf = vec![0u8; 65536];
    let start = std::time::Instant::now();
    loop {
        counted_step(&mut net, &mut g, &mut events, &mut frames);
        let s = g.tcp(h);
        if s.can_send() && sent < total {
            sent += s.send_slice(&data[sent..]).unwrap();
            if sent == total {
                s.close();
            }
        }
        while s.can_recv() {
            let n = s.recv_slice(&mut buf).unwrap();
            mismatch |= buf[..n] != data[received..received + n];
            received += n;
        }
        if measured_from.is_none() && received >= WARMUP {
            measured_from = Some((allocs(), received));
            TRACE.store(trace, Ordering::Relaxed);
        }
        if !s.may_recv() && sent == total {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "stalled at {received}"
        );
        if s.state() == State::Closed {
            panic!("connection closed early at {received}");
        }
    }
    assert_eq!(echo.join().unwrap(), total);
    assert!(!mismatch, "echoed bytes differ");
    assert_eq!(received, total);
    let (allocs_before, at) = measured_from.unwrap();
    let allocs = allocs() - allocs_before;
    let frames_out = net.engine.counters().frames_out;
    eprintln!(
        "{} bytes each way after warm-up: {allocs} allocations in engine calls \
         ({frames_out} frames to the guest in total)",
        total - at
    );
    assert_eq!(allocs, 0, "the engine allocated in steady state");
}
