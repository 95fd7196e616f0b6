//! Zero heap allocations per UDP datagram in steady state, both ways: a
//! counting global allocator counts allocations made on the test thread
//! inside engine entry points (`handle_frame`, `flush`,
//! `handle_host_event`, `poll_timeout`, `handle_timeout`) while batches of
//! guest datagrams go out through the transmit arena and their echoes come
//! back, after a warm-up that opened the flows.
#![cfg(target_os = "linux")]

mod udp_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use passt_engine::{Config, Readiness, Token};
use udp_support::*;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Per thread, so that tests running in parallel do not mix counts.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
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

/// Runs `f` with allocations counted.
fn counted<R>(f: impl FnOnce() -> R) -> R {
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    r
}

#[test]
fn udp_steady_state_allocates_nothing_per_datagram() {
    // The counter counts (so the zero below means something).
    counted(|| drop(std::hint::black_box(Box::new(7u64))));
    assert_eq!(ALLOCS.with(Cell::get), 1);
    enter_private_netns();
    let mut h = Harness::new(Config::example());
    let p = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("peer");
    p.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let dst = SocketAddr::new(IpAddr::V4(GW4), p.local_addr().unwrap().port());
    const FLOWS: u16 = 4;
    const BURST: u32 = 40;
    let frames: Vec<Vec<u8>> = (0..BURST)
        .map(|i| {
            let g = SocketAddr::new(IpAddr::V4(GUEST4), 46000 + (i as u16 % FLOWS));
            h.udp_frame(g, dst, &i.to_be_bytes())
        })
        .collect();
    let mut events: Vec<(Token, Readiness)> = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    let mut round = |h: &mut Harness, count: bool| {
        let now = h.now;
        let send = |h: &mut Harness| {
            for f in &frames {
                h.engine.handle_frame(now, f);
            }
            let _ = h.engine.poll_timeout();
            h.engine.flush(now);
        };
        if count {
            counted(|| send(h))
        } else {
            send(h)
        }
        for _ in 0..BURST {
            let (n, from) = p.recv_from(&mut buf).expect("datagram");
            p.send_to(&buf[..n], from).unwrap();
        }
        let mut got = 0;
        for _ in 0..100 {
            if got >= BURST as usize {
                break;
            }
            events.clear();
            h.engine
                .host_mut()
                .wait(Some(Duration::from_millis(50)), &mut events)
                .expect("wait");
            let deliver = |h: &mut Harness| {
                for (t, r) in &events {
                    h.engine.handle_host_event(now, *t, *r);
                }
                h.engine.handle_timeout(now);
            };
            if count {
                counted(|| deliver(h))
            } else {
                deliver(h)
            }
            let q = h.engine.tx_queue();
            got += q.len();
            q.clear();
        }
        assert_eq!(got, BURST as usize, "{:?}", h.engine.counters());
    };
    // Warm-up: flows opened, maps and buffers at their high-water mark.
    for _ in 0..3 {
        round(&mut h, false);
    }
    ALLOCS.with(|a| a.set(0));
    for _ in 0..20 {
        round(&mut h, true);
    }
    let c = h.engine.counters();
    assert_eq!(c.udp_to_host, 23 * u64::from(BURST));
    assert_eq!(c.udp_to_guest, 23 * u64::from(BURST));
    assert_eq!(c.flows_opened, u64::from(FLOWS));
    assert_eq!(ALLOCS.with(Cell::get), 0, "allocations in steady state");
}
