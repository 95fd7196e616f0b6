//! Host-side batching of guest UDP datagrams, against the real kernel
//! (loopback of a private network namespace when the test runs as root).
//!
//! A `HostIo` wrapper around `RealHost` records every `udp_send_batch`
//! call: datagrams the guest sends in one batch of frames leave in one
//! call per socket (per `SEND_CHUNK`), only on `Engine::flush` (or a timer
//! run), and arrive in the order the guest sent them.

mod udp_support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use passt_engine::host_io::{
    ConnectProgress, Family, HostError, HostIo, IcmpErrorReport, Interest, Peeked, Place, Shutdown,
    SockId, Spliced, TcpInfo, Token, UdpRecv, UdpSend,
};
use passt_engine::runtime::host::RealHost;
use passt_engine::udp::{SEND_CHUNK, TX_BATCH};
use passt_engine::wire::{self, UdpRepr};
use passt_engine::{Config, Engine, Instant};
use udp_support::*;

/// `RealHost`, with a log of `udp_send_batch` calls: (socket, datagrams
/// offered, datagrams sent).
struct Counting {
    inner: RealHost,
    sends: Vec<(SockId, usize, usize)>,
}

impl HostIo for Counting {
    fn set_interest(&mut self, s: SockId, t: Token, i: Interest) -> Result<(), HostError> {
        self.inner.set_interest(s, t, i)
    }
    fn deregister(&mut self, s: SockId) -> Result<(), HostError> {
        self.inner.deregister(s)
    }
    fn close(&mut self, s: SockId) {
        self.inner.close(s)
    }
    fn take_error(&mut self, s: SockId) -> Result<(), HostError> {
        self.inner.take_error(s)
    }
    fn local_addr(&self, s: SockId) -> Result<SocketAddr, HostError> {
        self.inner.local_addr(s)
    }
    fn tcp_connect_at(
        &mut self,
        p: Place,
        l: Option<SocketAddr>,
        r: SocketAddr,
    ) -> Result<(SockId, ConnectProgress), HostError> {
        self.inner.tcp_connect_at(p, l, r)
    }
    fn tcp_listen_at(&mut self, p: Place, a: SocketAddr, b: u32) -> Result<SockId, HostError> {
        self.inner.tcp_listen_at(p, a, b)
    }
    fn tcp_accept(&mut self, l: SockId) -> Result<(SockId, SocketAddr, SocketAddr), HostError> {
        self.inner.tcp_accept(l)
    }
    fn tcp_send(&mut self, s: SockId, d: &[u8]) -> Result<usize, HostError> {
        self.inner.tcp_send(s, d)
    }
    fn tcp_peek(&mut self, s: SockId, o: usize, b: &mut [u8]) -> Result<Peeked, HostError> {
        self.inner.tcp_peek(s, o, b)
    }
    fn tcp_discard(&mut self, s: SockId, l: usize) -> Result<usize, HostError> {
        self.inner.tcp_discard(s, l)
    }
    fn tcp_shutdown(&mut self, s: SockId, h: Shutdown) -> Result<(), HostError> {
        self.inner.tcp_shutdown(s, h)
    }
    fn tcp_abort(&mut self, s: SockId) {
        self.inner.tcp_abort(s)
    }
    fn tcp_info(&mut self, s: SockId) -> Result<TcpInfo, HostError> {
        self.inner.tcp_info(s)
    }
    fn tcp_set_nodelay(&mut self, s: SockId, on: bool) -> Result<(), HostError> {
        self.inner.tcp_set_nodelay(s, on)
    }
    fn tcp_splice(&mut self, f: SockId, t: SockId, m: usize) -> Result<Spliced, HostError> {
        self.inner.tcp_splice(f, t, m)
    }
    fn udp_bind_at(&mut self, p: Place, l: SocketAddr) -> Result<SockId, HostError> {
        self.inner.udp_bind_at(p, l)
    }
    fn udp_connect(&mut self, s: SockId, r: SocketAddr) -> Result<(), HostError> {
        self.inner.udp_connect(s, r)
    }
    fn udp_send_batch(&mut self, s: SockId, m: &[UdpSend<'_>]) -> Result<usize, HostError> {
        let r = self.inner.udp_send_batch(s, m);
        self.sends.push((s, m.len(), *r.as_ref().unwrap_or(&0)));
        r
    }
    fn udp_recv_batch(&mut self, s: SockId, sl: &mut [UdpRecv<'_>]) -> Result<usize, HostError> {
        self.inner.udp_recv_batch(s, sl)
    }
    fn udp_recv_error(&mut self, s: SockId) -> Result<Option<IcmpErrorReport>, HostError> {
        self.inner.udp_recv_error(s)
    }
    fn ping_open(&mut self, f: Family, id: u16) -> Result<SockId, HostError> {
        self.inner.ping_open(f, id)
    }
    fn ping_send(&mut self, s: SockId, d: IpAddr, m: &[u8]) -> Result<(), HostError> {
        self.inner.ping_send(s, d, m)
    }
    fn ping_recv(&mut self, s: SockId, b: &mut [u8]) -> Result<(usize, IpAddr), HostError> {
        self.inner.ping_recv(s, b)
    }
}

fn engine() -> Engine<Counting> {
    let mut config = Config::example();
    config.guest_mac = Some(GUEST_MAC);
    config.services.ra = false;
    let host = Counting {
        inner: RealHost::new().expect("RealHost"),
        sends: Vec::new(),
    };
    Engine::new(config, host, 7).expect("engine")
}

fn frame(e: &Engine<Counting>, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let ip = ip_repr(src.ip(), dst.ip());
    let mut buf = vec![0u8; ip.headers_len() + 8 + payload.len()];
    let n = wire::build_udp(
        &mut buf,
        GUEST_MAC,
        e.config().our_mac,
        ip,
        &UdpRepr {
            src_port: src.port(),
            dst_port: dst.port(),
        },
        payload,
    )
    .expect("build");
    buf.truncate(n);
    buf
}

/// A loopback peer with room for a few hundred small datagrams.
fn peer() -> UdpSocket {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("peer bind");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let size: libc::c_int = 4 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt on our own socket with a live c_int.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &size as *const libc::c_int as *const libc::c_void,
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            break;
        }
    }
    s
}

/// Reads `n` datagrams: (source port, sequence number in the payload).
fn receive(p: &UdpSocket, n: usize) -> Vec<(u16, u32)> {
    let mut buf = [0u8; 64];
    (0..n)
        .map(|i| {
            let (len, from) = p
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("datagram {i} of {n}: {e}"));
            assert_eq!(len, 4);
            (
                from.port(),
                u32::from_be_bytes(buf[..4].try_into().unwrap()),
            )
        })
        .collect()
}

/// Sequence numbers received from `port`, in arrival order.
fn from_port(got: &[(u16, u32)], port: u16) -> Vec<u32> {
    got.iter().filter(|g| g.0 == port).map(|g| g.1).collect()
}

#[test]
fn udp_guest_batch_leaves_in_one_send_per_flow_in_order() {
    enter_private_netns();
    let mut e = engine();
    let p = peer();
    let dst = SocketAddr::new(IpAddr::V4(GW4), p.local_addr().unwrap().port());
    let (ga, gb) = (closed_port(IpAddr::V4(Ipv4Addr::LOCALHOST)), 45002);
    let guest_a = SocketAddr::new(IpAddr::V4(GUEST4), ga);
    let guest_b = SocketAddr::new(IpAddr::V4(GUEST4), gb);
    let now = Instant::from_secs(1);
    // One batch of guest frames: 40 datagrams on flow A, 10 on flow B,
    // interleaved.
    const N_A: u32 = 40;
    const N_B: u32 = 10;
    let (mut a, mut b) = (0u32, 0u32);
    while a < N_A || b < N_B {
        if a < N_A {
            let f = frame(&e, guest_a, dst, &a.to_be_bytes());
            e.handle_frame(now, &f);
            a += 1;
        }
        if a % 4 == 0 && b < N_B {
            let f = frame(&e, guest_b, dst, &(1000 + b).to_be_bytes());
            e.handle_frame(now, &f);
            b += 1;
        }
    }
    // Nothing sent yet; the engine says it wants to run now.
    assert!(e.host().sends.is_empty(), "{:?}", e.host().sends);
    assert_eq!(e.udp().pending_datagrams(), (N_A + N_B) as usize);
    assert_eq!(e.counters().udp_to_host, 0);
    assert!(e.poll_timeout().is_some_and(|t| t <= now));
    assert_eq!(e.udp().flow_count(), 2);

    e.flush(now);
    let sends = e.host().sends.clone();
    assert_eq!(sends.len(), 2, "one udp_send_batch per flow: {sends:?}");
    let mut sizes: Vec<usize> = sends.iter().map(|s| s.1).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [N_B as usize, N_A as usize]);
    assert!(sends.iter().all(|s| s.1 == s.2), "all taken: {sends:?}");
    assert_eq!(e.counters().udp_to_host, u64::from(N_A + N_B));
    assert_eq!(e.counters().total_drops(), 0);
    assert_eq!(e.udp().pending_datagrams(), 0);
    assert_ne!(e.poll_timeout(), Some(now), "only the idle expiry is left");

    let got = receive(&p, (N_A + N_B) as usize);
    assert_eq!(from_port(&got, ga), (0..N_A).collect::<Vec<_>>());
    let b_port = got
        .iter()
        .find(|g| g.1 >= 1000)
        .map(|g| g.0)
        .expect("flow B arrived");
    assert_eq!(
        from_port(&got, b_port),
        (1000..1000 + N_B).collect::<Vec<_>>()
    );
    // A flush with nothing queued calls nothing.
    e.flush(now);
    assert_eq!(e.host().sends.len(), 2);
}

#[test]
fn udp_batches_are_cut_at_send_chunk_and_arena_size_without_reordering() {
    enter_private_netns();
    let mut e = engine();
    let p = peer();
    let dst = SocketAddr::new(IpAddr::V4(GW4), p.local_addr().unwrap().port());
    let now = Instant::from_secs(1);
    // More than the arena holds, two flows interleaved: the arena flushes
    // itself when full, then the rest goes on flush.
    let total = TX_BATCH + 22;
    let ports = [45101u16, 45102];
    for i in 0..total as u32 {
        let g = SocketAddr::new(IpAddr::V4(GUEST4), ports[i as usize % 2]);
        let f = frame(&e, g, dst, &i.to_be_bytes());
        e.handle_frame(now, &f);
    }
    // The arena filled once: its 128 datagrams left, 64 per flow (one
    // call each, SEND_CHUNK = 64).
    assert_eq!(e.udp().pending_datagrams(), total - TX_BATCH);
    let first: Vec<usize> = e.host().sends.iter().map(|s| s.1).collect();
    assert_eq!(first, [TX_BATCH / 2, TX_BATCH / 2], "{first:?}");
    const { assert!(TX_BATCH / 2 <= SEND_CHUNK) };
    e.flush(now);
    let all: Vec<usize> = e.host().sends.iter().map(|s| s.1).collect();
    assert_eq!(all, [64, 64, 11, 11]);
    assert_eq!(e.counters().udp_to_host, total as u64);

    let got = receive(&p, total);
    let mut by_port: Vec<u16> = got.iter().map(|g| g.0).collect();
    by_port.sort_unstable();
    by_port.dedup();
    assert_eq!(by_port.len(), 2);
    for port in by_port {
        let seqs = from_port(&got, port);
        assert_eq!(seqs.len(), total / 2);
        assert!(
            seqs.windows(2).all(|w| w[0] + 2 == w[1]),
            "in order: {seqs:?}"
        );
    }

    // One flow beyond SEND_CHUNK in one batch: 64 + the rest.
    let g = SocketAddr::new(IpAddr::V4(GUEST4), 45103);
    for i in 0..100u32 {
        let f = frame(&e, g, dst, &i.to_be_bytes());
        e.handle_frame(now, &f);
    }
    let before = e.host().sends.len();
    e.flush(now);
    let chunked: Vec<usize> = e.host().sends[before..].iter().map(|s| s.1).collect();
    assert_eq!(chunked, [SEND_CHUNK, 100 - SEND_CHUNK]);
    let got = receive(&p, 100);
    assert_eq!(
        got.iter().map(|g| g.1).collect::<Vec<_>>(),
        (0..100).collect::<Vec<_>>()
    );
}

#[test]
fn udp_queued_datagrams_leave_on_a_timer_run_when_nobody_flushes() {
    // A driver that only follows poll_timeout (no flush call) still sends.
    enter_private_netns();
    let mut e = engine();
    let p = peer();
    let dst = SocketAddr::new(IpAddr::V4(GW4), p.local_addr().unwrap().port());
    let g = SocketAddr::new(IpAddr::V4(GUEST4), 45201);
    let t = Instant::from_secs(5);
    for i in 0..3u32 {
        let f = frame(&e, g, dst, &i.to_be_bytes());
        e.handle_frame(t, &f);
    }
    let due = e.poll_timeout().expect("a deadline");
    assert_eq!(due, t, "due at the first datagram's arrival");
    e.handle_timeout(t + Duration::from_millis(1));
    assert_eq!(e.host().sends.len(), 1);
    assert_eq!(e.host().sends[0].1, 3);
    assert_eq!(
        receive(&p, 3).iter().map(|g| g.1).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(e.poll_timeout().is_some_and(|d| d > t));
}
