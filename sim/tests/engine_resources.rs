//! Bounded resources of the engine (issue #15), on the simulated host with
//! the engine's own heap measured (`metered`: a counting allocator that
//! charges the engine, never the host model).
//!
//! Soak: 100,000 TCP connections opened and closed through the
//! engine on the simulated host, 10,000 at once, under host faults
//! (refusals, EAGAIN storms, one-byte reads and writes, resets) and guest
//! misbehaviour (abandoned handshakes, RST instead of FIN, RST right
//! after the SYN). Afterwards no flow, no engine timer, no host socket and
//! no connection in the host model is left, and the engine's own heap
//! (its tables; `metered`) is reported, and must not have grown after the
//! first round set its high-water mark.
//!
//! The guest is a small TCP client written here, frame by frame: SYN,
//! four bytes, their echo, FIN (or its misbehaviour). The link between it
//! and the engine is perfect; the faults are the host's.
//!
//! No allocation after start-up: a mixed workload (TCP connections opened,
//! echoed both ways and closed; UDP and ICMP echo flows opened and
//! expiring; DHCP, DHCPv6, ARP and NDP requests from real clients'
//! captures) repeated after a warm-up makes zero heap allocations in the
//! engine, or each one left is listed here with its reason.

mod guest_frames;
mod metered;
metered::install!();

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use guest_frames::tcp;
use metered::{Metered, engine_call};
use passt_engine::wire::{self, L3, L4, TcpFlags};
use passt_engine::{Config, Engine, Instant, Readiness, Token};
use passt_sim::fault::{EagainStorm, RefuseConnections, ResetAfter, ShortIo};
use passt_sim::host::services::RemoteService;
use passt_sim::{HostFaults, SimHost};

const ROUNDS: usize = 10;
const AT_ONCE: usize = 10_000;
const FIRST_PORT: u16 = 20_000;
const PAYLOAD: &[u8] = b"ping";

type E = Engine<Metered<SimHost>>;

fn remote(round: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10 + round as u8)), 7)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    Normal,
    /// Never answers the SYN-ACK.
    Abandon,
    /// Resets instead of closing, after the echo.
    ResetInsteadOfFin,
    /// Resets right after its SYN.
    ResetAfterSyn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    SynSent,
    Established,
    /// Our FIN sent, waiting for the engine's.
    FinSent,
    /// The engine's FIN came first; ours sent, waiting for its ACK.
    LastAck,
    Done,
}

#[derive(Clone, Copy, Debug)]
struct Conn {
    port: u16,
    isn: u32,
    /// The engine's next sequence number (after its SYN).
    rcv_nxt: u32,
    got: usize,
    st: St,
    behaviour: Behaviour,
    /// When the guest last sent on it, and how often it resent.
    last: Instant,
    tries: u32,
}

impl Conn {
    fn snd_nxt(&self) -> u32 {
        let fin = u32::from(matches!(self.st, St::FinSent | St::LastAck | St::Done));
        self.isn
            .wrapping_add(1 + PAYLOAD.len() as u32)
            .wrapping_add(fin)
    }
}

struct Round<'a> {
    config: &'a Config,
    remote: SocketAddr,
    /// `conns[i]` uses guest port `first_port + i`.
    first_port: u16,
    conns: Vec<Conn>,
    out: VecDeque<Vec<u8>>,
    now: Instant,
    /// Guest retransmissions (its frames are never lost, but the engine's
    /// may be: a timer burst larger than the transmit queue drops the
    /// excess, counted, as a real link would).
    resent: u64,
    /// No retransmission is due before this (a lower bound).
    next_due: Instant,
}

/// The guest's retransmission timeout, and how many times it resends
/// before giving up with an RST.
const GUEST_RTO: Duration = Duration::from_secs(1);
const GUEST_TRIES: u32 = 8;

impl Round<'_> {
    fn seg(&self, c: &Conn, seq: u32, flags: TcpFlags, payload: &[u8]) -> Vec<u8> {
        tcp(
            self.config,
            c.port,
            self.remote,
            seq,
            c.rcv_nxt,
            flags,
            65535,
            payload,
        )
    }

    /// Resends what each connection waits an answer for, once its timer
    /// ran out; gives up with an RST after [`GUEST_TRIES`].
    fn retransmit(&mut self) {
        if self.now < self.next_due {
            return;
        }
        for i in 0..self.conns.len() {
            let mut c = self.conns[i];
            if c.st == St::Done || self.now < c.last + GUEST_RTO * (1 << c.tries.min(4)) {
                continue;
            }
            c.tries += 1;
            c.last = self.now;
            self.resent += 1;
            let ack = TcpFlags::ACK;
            let f = if c.tries > GUEST_TRIES {
                c.st = St::Done;
                self.seg(&c, c.snd_nxt(), TcpFlags::RST, &[])
            } else {
                match c.st {
                    St::SynSent => tcp(
                        self.config,
                        c.port,
                        self.remote,
                        c.isn,
                        0,
                        TcpFlags::SYN,
                        65535,
                        &[],
                    ),
                    St::Established => {
                        self.seg(&c, c.isn.wrapping_add(1), ack | TcpFlags::PSH, PAYLOAD)
                    }
                    _ => self.seg(&c, c.snd_nxt().wrapping_sub(1), ack | TcpFlags::FIN, &[]),
                }
            };
            self.out.push_back(f);
            self.conns[i] = c;
        }
        self.next_due = self.scan_timers().unwrap_or(Instant::from_nanos(u64::MAX));
    }

    /// When the next retransmission may be due.
    fn next_timer(&self) -> Option<Instant> {
        (self.next_due.as_nanos() < u64::MAX).then_some(self.next_due)
    }

    fn scan_timers(&self) -> Option<Instant> {
        self.conns
            .iter()
            .filter(|c| c.st != St::Done)
            .map(|c| c.last + GUEST_RTO * (1 << c.tries.min(4)))
            .min()
    }

    /// The guest's answer to one frame from the engine.
    fn on_frame(&mut self, frame: &[u8]) {
        let Ok(f) = wire::parse_frame(frame) else {
            panic!("the engine sent a frame that does not parse");
        };
        let L3::Ipv4 {
            ip,
            l4: L4::Tcp { tcp: t, payload },
        } = f.l3
        else {
            return;
        };
        if SocketAddr::new(IpAddr::V4(ip.src_addr), t.src_port) != self.remote {
            return;
        }
        let Some(i) = t
            .dst_port
            .checked_sub(self.first_port)
            .map(usize::from)
            .filter(|&i| i < self.conns.len())
        else {
            return;
        };
        let mut c = self.conns[i];
        let ack = TcpFlags::ACK;
        let before = c.st;
        if t.flags.contains(TcpFlags::RST) {
            c.st = St::Done;
        } else {
            match c.st {
                St::SynSent if t.flags.contains(TcpFlags::SYN | TcpFlags::ACK) => {
                    c.rcv_nxt = t.seq.wrapping_add(1);
                    if c.behaviour == Behaviour::Abandon {
                        c.st = St::Done;
                    } else {
                        c.st = St::Established;
                        let seq = c.isn.wrapping_add(1);
                        self.out
                            .push_back(self.seg(&c, seq, ack | TcpFlags::PSH, PAYLOAD));
                    }
                }
                St::Established | St::FinSent | St::LastAck => {
                    if t.seq == c.rcv_nxt && !payload.is_empty() {
                        c.rcv_nxt = c.rcv_nxt.wrapping_add(payload.len() as u32);
                        c.got += payload.len();
                    }
                    let fin = t.flags.contains(TcpFlags::FIN)
                        && t.seq.wrapping_add(payload.len() as u32) == c.rcv_nxt;
                    if fin {
                        c.rcv_nxt = c.rcv_nxt.wrapping_add(1);
                    }
                    match c.st {
                        St::Established if c.got >= PAYLOAD.len() || fin => {
                            if c.behaviour == Behaviour::ResetInsteadOfFin {
                                let seq = c.snd_nxt();
                                self.out.push_back(self.seg(&c, seq, TcpFlags::RST, &[]));
                                c.st = St::Done;
                            } else {
                                let seq = c.snd_nxt();
                                c.st = if fin { St::LastAck } else { St::FinSent };
                                self.out
                                    .push_back(self.seg(&c, seq, ack | TcpFlags::FIN, &[]));
                            }
                        }
                        St::FinSent if fin => {
                            self.out.push_back(self.seg(&c, c.snd_nxt(), ack, &[]));
                            c.st = St::Done;
                        }
                        St::LastAck if t.ack == c.snd_nxt() => c.st = St::Done,
                        _ => self.out.push_back(self.seg(&c, c.snd_nxt(), ack, &[])),
                    }
                }
                // A retransmitted SYN-ACK after the handshake: ACK again.
                _ => {}
            }
        }
        if c.st != before {
            c.last = self.now;
            c.tries = 0;
        }
        self.conns[i] = c;
    }

    fn done(&self) -> bool {
        self.conns.iter().all(|c| c.st == St::Done)
    }
}

/// Hands the engine's queue to the guest.
fn drain(e: &mut E, r: &mut Round<'_>) {
    let q = e.tx_queue();
    for f in q.iter() {
        r.on_frame(f);
    }
    q.clear();
}

struct World {
    e: E,
    now: Instant,
    events: Vec<(Token, Readiness)>,
    max_flows: usize,
}

impl World {
    /// Runs until the guest's frames are all handled and either the
    /// round is done (unless `settle`) or nothing is pending before
    /// `deadline`.
    fn run(&mut self, r: &mut Round<'_>, deadline: Instant, settle: bool) {
        let mut same_instant = 0;
        loop {
            r.now = self.now;
            r.retransmit();
            while let Some(f) = r.out.pop_front() {
                let now = self.now;
                engine_call(|| self.e.handle_frame(now, &f));
                drain(&mut self.e, r);
            }
            let now = self.now;
            self.e.host_mut().0.advance(now);
            self.events.clear();
            self.e.host_mut().0.take_events(&mut self.events);
            for &(t, rd) in &self.events {
                engine_call(|| self.e.handle_host_event(now, t, rd));
                drain(&mut self.e, r);
            }
            if self.e.poll_timeout().is_some_and(|t| t <= now) {
                engine_call(|| self.e.handle_timeout(now));
                drain(&mut self.e, r);
            }
            self.max_flows = self.max_flows.max(self.e.tcp().flow_count());
            if !r.out.is_empty() {
                continue;
            }
            if !self.events.is_empty() && same_instant < 64 {
                same_instant += 1;
                continue;
            }
            same_instant = 0;
            if !settle && r.done() && self.e.tcp().flow_count() == 0 {
                break;
            }
            let next = [
                self.e.poll_timeout(),
                self.e.host().0.poll_timeout(),
                r.next_timer(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= deadline => self.now = t.max(self.now),
                _ => break,
            }
        }
    }
}

fn faults(round: usize) -> HostFaults {
    let mut f = HostFaults::none();
    match round % 4 {
        0 => {}
        1 => {
            f.refuse = RefuseConnections {
                probability: 0.03,
                ports: Default::default(),
            };
            f.eagain = EagainStorm { probability: 0.1 };
        }
        2 => {
            f.short_io = ShortIo {
                max_read: std::num::NonZeroUsize::new(1),
                max_write: std::num::NonZeroUsize::new(1),
            };
            f.eagain = EagainStorm { probability: 0.05 };
        }
        _ => f.reset_after = Some(ResetAfter { bytes: 6 }),
    }
    f
}

#[test]
fn hundred_thousand_connections_ten_thousand_at_once_leave_nothing_behind() {
    let config = Config::example();
    let mut host = SimHost::with_seed(15);
    for r in 0..ROUNDS {
        host.remote_tcp_serve(remote(r), 4096, RemoteService::Echo)
            .expect("echo service");
    }
    let mut w = World {
        e: Engine::new(config.clone(), Metered(host), 15).expect("engine"),
        now: Instant::ZERO,
        events: Vec::with_capacity(4096),
        max_flows: 0,
    };
    let start_live = metered::live_bytes();
    let mut peaks = Vec::new();
    let mut reset_by_engine = 0;
    for round in 0..ROUNDS {
        w.e.host_mut().0.set_faults(faults(round));
        let mut r = Round {
            config: &config,
            remote: remote(round),
            first_port: FIRST_PORT,
            conns: Vec::with_capacity(AT_ONCE),
            out: VecDeque::new(),
            now: w.now,
            resent: 0,
            next_due: w.now + GUEST_RTO,
        };
        for i in 0..AT_ONCE {
            let behaviour = match i % 100 {
                0 => Behaviour::Abandon,
                1 | 51 => Behaviour::ResetInsteadOfFin,
                // Not in the first round, which holds 10,000 at once.
                2 if round > 0 => Behaviour::ResetAfterSyn,
                _ => Behaviour::Normal,
            };
            let c = Conn {
                port: FIRST_PORT + i as u16,
                isn: (i as u32).wrapping_mul(2_654_435_761),
                rcv_nxt: 0,
                got: 0,
                // A guest that resets right after its SYN expects nothing.
                st: if behaviour == Behaviour::ResetAfterSyn {
                    St::Done
                } else {
                    St::SynSent
                },
                behaviour,
                last: w.now,
                tries: 0,
            };
            r.out.push_back(tcp(
                &config,
                c.port,
                r.remote,
                c.isn,
                0,
                TcpFlags::SYN,
                65535,
                &[],
            ));
            if behaviour == Behaviour::ResetAfterSyn {
                let seq = c.isn.wrapping_add(1);
                r.out.push_back(tcp(
                    &config,
                    c.port,
                    r.remote,
                    seq,
                    0,
                    TcpFlags::RST,
                    0,
                    &[],
                ));
            }
            r.conns.push(c);
        }
        let deadline = w.now + Duration::from_secs(600);
        w.run(&mut r, deadline, false);
        let stuck: Vec<_> = r.conns.iter().filter(|c| c.st != St::Done).collect();
        assert!(
            stuck.is_empty(),
            "round {round}: {} connections stuck, e.g. {:?}\n{:?}",
            stuck.len(),
            &stuck[..stuck.len().min(3)],
            w.e.counters()
        );
        reset_by_engine = w.e.counters().tcp_rst_to_guest;
        peaks.push(metered::peak_bytes() - start_live);
        eprintln!(
            "round {round}: t = {}, {} guest retransmissions, engine heap {} B live, {} B peak, {} flows at most",
            w.now,
            r.resent,
            metered::live_bytes() - start_live,
            metered::peak_bytes() - start_live,
            w.max_flows
        );
    }
    // Everything goes: the remaining timers run out.
    w.e.host_mut().0.set_faults(HostFaults::none());
    let mut idle = Round {
        config: &config,
        remote: remote(0),
        first_port: FIRST_PORT,
        conns: Vec::new(),
        out: VecDeque::new(),
        now: w.now,
        resent: 0,
        next_due: Instant::from_nanos(u64::MAX),
    };
    let end = w.now + Duration::from_secs(3600);
    w.run(&mut idle, end, true);

    let c = w.e.counters();
    let total = (ROUNDS * AT_ONCE) as u64;
    assert_eq!(c.flows_opened, total, "{c:?}");
    assert_eq!(c.flows_closed, total, "{c:?}");
    assert_eq!(w.e.tcp().flow_count(), 0);
    // No flow timer (the engine's periodic router advertisements stay).
    assert_eq!(w.e.tcp().poll_timeout(), None, "a TCP timer is left");
    assert_eq!(w.e.udp().poll_timeout(), None, "a UDP timer is left");
    assert_eq!(w.e.icmp().poll_timeout(), None, "an echo timer is left");
    assert_eq!(w.e.host().0.open_host_sockets(), 0, "a host socket is left");
    assert_eq!(w.e.host().0.live_tcp_connections(), 0);
    assert!(w.max_flows >= AT_ONCE, "{} flows at once", w.max_flows);
    assert!(reset_by_engine > 0, "the faults did something");
    // The tables reached their high-water mark in the first round; later
    // rounds of the same size reuse it.
    let first = peaks[0];
    let last = *peaks.last().expect("rounds");
    eprintln!(
        "engine heap: peak {last} B ({} B per concurrent flow), {} B left at the end",
        last / AT_ONCE as i64,
        metered::live_bytes() - start_live
    );
    assert!(
        last <= first + first / 10,
        "the engine's heap grew after the first round: {peaks:?}"
    );
}

// ---------------------------------------------------------------------
// No allocation after start-up
// ---------------------------------------------------------------------

/// What a request frame from the captures is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Arp,
    RouterSolicitation,
    NeighborSolicitation,
    Dhcp,
    Dhcpv6,
}

/// The first valid frame of each kind in the repository's captures.
fn service_requests() -> Vec<(Kind, Vec<u8>)> {
    let here = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut names = Vec::new();
    for d in ["../corpus/replay", "../corpus/clients"] {
        let rd = std::fs::read_dir(here.join(d)).expect("corpus folder");
        names.extend(
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "pcap")),
        );
    }
    names.sort();
    let mut found = std::collections::BTreeMap::new();
    for n in names {
        let bytes = std::fs::read(&n).expect("capture");
        let mut cap = passt_sim::pcap::Capture::new(&bytes).expect("capture");
        while let Some(Ok(rec)) = cap.next_record() {
            let f = rec.data;
            let Ok(p) = wire::parse_frame(f) else {
                continue;
            };
            if p.eth.src == passt_engine::MacAddr::PASST_DEFAULT {
                continue;
            }
            // Requests the engine answers: ARP for the gateway.
            let kind = match &p.l3 {
                L3::Arp(_) if f.get(38..42) == Some(&[192, 0, 2, 1][..]) => Kind::Arp,
                L3::Ipv6 {
                    l4: L4::Icmpv6(_), ..
                } if f.get(54) == Some(&133) => Kind::RouterSolicitation,
                L3::Ipv4 {
                    l4: L4::Udp { udp, .. },
                    ..
                } if udp.dst_port == 67 => Kind::Dhcp,
                L3::Ipv6 {
                    l4: L4::Udp { udp, .. },
                    ..
                } if udp.dst_port == 547 => Kind::Dhcpv6,
                _ => continue,
            };
            found.entry(kind).or_insert_with(|| f.to_vec());
        }
    }
    // No capture holds a neighbour solicitation for the gateway with valid
    // checksums (only DAD probes): built here, as a Linux guest sends it.
    found.insert(Kind::NeighborSolicitation, neighbor_solicitation());
    found.into_iter().collect()
}

/// A neighbour solicitation for the gateway fe80::1 (RFC 4861 §4.3).
fn neighbor_solicitation() -> Vec<u8> {
    use passt_engine::wire::icmpv6::{NdpOption, NdpOptions, NdpRepr};
    use passt_engine::wire::{Icmpv6Repr, Ipv6Repr};
    let gw: std::net::Ipv6Addr = "fe80::1".parse().expect("literal");
    let me: std::net::Ipv6Addr = "fe80::5054:ff:fe12:3456".parse().expect("literal");
    let group = passt_engine::addr::ipv6_solicited_node(gw);
    let opts = [NdpOption::SourceLinkAddr(guest_frames::GUEST_MAC)];
    let msg = Icmpv6Repr::Ndp(NdpRepr::NeighborSolicit {
        target: gw,
        options: NdpOptions::List(&opts),
    });
    let ip = Ipv6Repr::new(me, group, wire::protocol::ICMPV6, 255);
    let mut buf = vec![0; 256];
    let n = wire::build_icmpv6(
        &mut buf,
        guest_frames::GUEST_MAC,
        passt_engine::MacAddr::for_ipv6_multicast(group),
        &ip,
        &msg,
    )
    .expect("fits");
    buf.truncate(n);
    buf
}

/// Allocations the engine makes after start-up, by step of the workload.
#[derive(Debug, Default)]
struct Allocs(std::collections::BTreeMap<&'static str, u64>);

impl Allocs {
    fn charge<R>(&mut self, step: &'static str, f: impl FnOnce() -> R) -> R {
        let before = metered::allocations();
        let r = f();
        *self.0.entry(step).or_default() += metered::allocations() - before;
        r
    }
}

#[test]
fn a_mixed_workload_allocates_nothing_after_start_up() {
    let config = Config::example();
    let echo = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), 7);
    let mut host = SimHost::with_seed(21);
    host.remote_tcp_serve(echo, 64, RemoteService::Echo)
        .expect("tcp echo");
    host.remote_udp_serve(
        echo,
        Box::new(passt_sim::scenario::UdpEcho::new(Default::default())),
    )
    .expect("udp echo");
    let requests = service_requests();
    // DHCPv6 only if a capture holds one with valid checksums (the
    // dhclient6 captures carry offloaded ones, which the engine drops).
    let kinds: Vec<Kind> = requests.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds[..4],
        [
            Kind::Arp,
            Kind::RouterSolicitation,
            Kind::NeighborSolicitation,
            Kind::Dhcp,
        ],
        "a request of every kind in the captures"
    );
    let mut w = World {
        e: Engine::new(config.clone(), Metered(host), 21).expect("engine"),
        now: Instant::ZERO,
        events: Vec::with_capacity(4096),
        max_flows: 0,
    };
    const WARM_UP: u32 = 120;
    const MEASURED: u32 = 240;
    const TCP_PER_CYCLE: usize = 4;
    let mut allocs = Allocs::default();
    let mut answered = 0u64;
    let mut tcp_done = 0usize;
    for cycle in 0..WARM_UP + MEASURED {
        if cycle == WARM_UP {
            metered::reset_allocations();
            allocs = Allocs::default();
            answered = 0;
        }
        let now = w.now;
        // Built-in services: each request answered (frames counted).
        for (kind, f) in &requests {
            let step = match kind {
                Kind::Arp => "arp",
                Kind::RouterSolicitation | Kind::NeighborSolicitation => "ndp",
                Kind::Dhcp => "dhcp",
                Kind::Dhcpv6 => "dhcpv6",
            };
            let before = w.e.tx_queue().len();
            allocs.charge(step, || engine_call(|| w.e.handle_frame(now, f)));
            answered += (w.e.tx_queue().len() - before) as u64;
            w.e.tx_queue().clear();
        }
        // A new UDP flow and a new echo flow each cycle; each expires
        // after its idle timeout, so flows open and close all along.
        let port = 30_000 + (cycle % 50) as u16;
        let dgram = guest_frames::udp(&config, port, echo, &cycle.to_be_bytes());
        allocs.charge("udp", || engine_call(|| w.e.handle_frame(now, &dgram)));
        allocs.charge("udp", || engine_call(|| w.e.flush(now)));
        let ping = guest_frames::echo(
            &config,
            Ipv4Addr::new(203, 0, 113, 7),
            (cycle % 70) as u16,
            1,
        );
        let trace = cycle >= WARM_UP && std::env::var_os("ALLOC_TRACE").is_some();
        metered::trace(trace);
        allocs.charge("icmp", || engine_call(|| w.e.handle_frame(now, &ping)));
        metered::trace(false);
        // TCP: connections opened, echoed and closed (their frames, the
        // host's readiness and the timers all run inside `World::run`).
        let first_port = FIRST_PORT + ((cycle as usize * TCP_PER_CYCLE) % 400) as u16;
        let mut r = Round {
            config: &config,
            remote: echo,
            first_port,
            conns: Vec::new(),
            out: VecDeque::new(),
            now,
            resent: 0,
            next_due: now + GUEST_RTO,
        };
        for k in 0..TCP_PER_CYCLE {
            let c = Conn {
                port: first_port + k as u16,
                isn: cycle.wrapping_mul(7919).wrapping_add(k as u32),
                rcv_nxt: 0,
                got: 0,
                st: St::SynSent,
                behaviour: Behaviour::Normal,
                last: now,
                tries: 0,
            };
            r.out.push_back(tcp(
                &config,
                c.port,
                echo,
                c.isn,
                0,
                TcpFlags::SYN,
                65535,
                &[],
            ));
            r.conns.push(c);
        }
        let deadline = now + Duration::from_millis(900);
        allocs.charge("tcp, host readiness, timers", || {
            w.run(&mut r, deadline, false)
        });
        tcp_done += r
            .conns
            .iter()
            .filter(|c| c.st == St::Done && c.got == PAYLOAD.len())
            .count();
        // One second per cycle: UDP (30 s) and echo (60 s) flows expire
        // while new ones open.
        w.now = now + Duration::from_secs(1);
    }
    let c = w.e.counters();
    assert!(
        answered >= u64::from(MEASURED) * 4,
        "services answered: {answered}"
    );
    assert!(
        tcp_done >= (MEASURED as usize) * TCP_PER_CYCLE,
        "{tcp_done} echoes done"
    );
    assert!(c.udp_to_guest >= u64::from(MEASURED), "{c:?}");
    assert!(c.echo_replies_to_guest >= u64::from(MEASURED), "{c:?}");
    assert!(
        c.flows_closed > u64::from(MEASURED) * 4,
        "flows close all along: {c:?}"
    );
    eprintln!("allocations after start-up, by step: {:?}", allocs.0);
    // Each allocation left, with its reason and a bound (per measured
    // cycle); nothing else may allocate. `ALLOC_TRACE=1` prints a
    // backtrace for each echo-flow allocation.
    let allowed: &[(&str, u64, &str)] = &[
        (
            "dhcp",
            12,
            "each reply is built as a dhcproto Message and encoded: its \
             options live in a BTreeMap, its encoder writes to a Vec (12 \
             per reply)",
        ),
        (
            "icmp",
            1,
            "the echo flows' index is a BTreeMap: opening a flow allocates \
             a node when a leaf splits (freed when leaves merge); the TCP \
             and UDP indexes are BTreeMaps too and do the same under other \
             patterns of flows opening and closing",
        ),
    ];
    for (step, n) in &allocs.0 {
        if *n == 0 {
            continue;
        }
        match allowed.iter().find(|(s, ..)| s == step) {
            Some((_, per_cycle, reason)) => {
                eprintln!("{step}: {n} allocations in {MEASURED} cycles: {reason}");
                assert!(
                    *n <= per_cycle * u64::from(MEASURED),
                    "{step}: {n} allocations in {MEASURED} cycles, more than {per_cycle} a cycle"
                );
            }
            None => panic!("{step}: {n} allocations in {MEASURED} cycles"),
        }
    }
}

// ---------------------------------------------------------------------
// Full tables and descriptor exhaustion
// ---------------------------------------------------------------------

/// What the engine answered a refused new flow with.
fn answers(e: &mut E) -> Vec<guest_frames::Seen> {
    let q = e.tx_queue();
    let out = q.iter().map(guest_frames::seen).collect();
    q.clear();
    out
}

/// An engine whose flows are limited by `capacity` (flow table) and
/// `sockets` (host descriptors), with a UDP and a TCP echo at [`echo`].
fn limited(capacity: usize, sockets: usize) -> (World, Config) {
    let mut config = Config::example();
    config.flow_capacity = capacity;
    let hc = passt_sim::SimHostConfig {
        max_sockets: sockets,
        ..Default::default()
    };
    let mut host = SimHost::new(hc, passt_sim::SimRng::from_seed(5).child("host"));
    host.remote_tcp_serve(echo(), 64, RemoteService::Echo)
        .expect("tcp echo");
    host.remote_udp_serve(
        echo(),
        Box::new(passt_sim::scenario::UdpEcho::new(Default::default())),
    )
    .expect("udp echo");
    let w = World {
        e: Engine::new(config.clone(), Metered(host), 5).expect("engine"),
        now: Instant::ZERO,
        events: Vec::with_capacity(256),
        max_flows: 0,
    };
    (w, config)
}

fn echo() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), 7)
}

/// What limits new flows in [`refusal_leaves_existing_flows_alone`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Limit {
    /// A flow table of three places.
    Table,
    /// Three host descriptors (`EMFILE` beyond).
    Descriptors,
}

const FLOOD: u16 = 2000;

/// Three flows (TCP mid-connection, UDP, echo) take every place; then
/// [`FLOOD`] new flows of each protocol are refused. Returns the engine
/// for the caller's checks of how they were refused.
fn refusal_leaves_existing_flows_alone(limit: Limit) -> World {
    let (mut w, config) = match limit {
        Limit::Table => limited(3, 65_536),
        Limit::Descriptors => limited(1 << 17, 3),
    };
    let remote = echo();
    let gw_echo = Ipv4Addr::new(203, 0, 113, 7);
    // The existing flows: UDP and echo answered, TCP established.
    let now = w.now;
    let dgram = guest_frames::udp(&config, 30_000, remote, b"before");
    engine_call(|| w.e.handle_frame(now, &dgram));
    engine_call(|| w.e.flush(now));
    let ping = guest_frames::echo(&config, gw_echo, 1, 1);
    engine_call(|| w.e.handle_frame(now, &ping));
    let mut r = Round {
        config: &config,
        remote,
        first_port: FIRST_PORT,
        conns: vec![Conn {
            port: FIRST_PORT,
            isn: 77,
            rcv_nxt: 0,
            got: 0,
            st: St::SynSent,
            behaviour: Behaviour::Normal,
            last: now,
            tries: 0,
        }],
        out: VecDeque::from([tcp(
            &config,
            FIRST_PORT,
            remote,
            77,
            0,
            TcpFlags::SYN,
            65535,
            &[],
        )]),
        now,
        resent: 0,
        next_due: now + GUEST_RTO,
    };
    for _ in 0..1000 {
        if r.conns[0].st != St::SynSent {
            break;
        }
        let d = w.now + Duration::from_millis(1);
        w.run(&mut r, d, false);
        w.now = w.now.max(d);
    }
    assert_eq!(r.conns[0].st, St::Established, "TCP up before the flood");
    assert_eq!(r.conns[0].got, 0, "and not yet echoed");
    let c = w.e.counters().clone();
    assert_eq!((c.udp_to_guest, c.echo_replies_to_guest), (1, 1), "{c:?}");
    assert_eq!(
        w.e.tcp().flow_count() + w.e.udp().flow_count() + w.e.icmp().flow_count(),
        3
    );
    answers(&mut w.e);

    // The flood: every new flow refused, without the engine allocating.
    let (allocs, live) = (metered::allocations(), metered::live_bytes());
    let now = w.now;
    let mut replies = Vec::new();
    for k in 0..FLOOD {
        let syn = tcp(
            &config,
            40_000 + k,
            remote,
            u32::from(k),
            0,
            TcpFlags::SYN,
            65535,
            &[],
        );
        let d = guest_frames::udp(&config, 40_000 + k, remote, b"flood");
        let p = guest_frames::echo(&config, gw_echo, 1000 + k, 1);
        for f in [syn, d, p] {
            engine_call(|| w.e.handle_frame(now, &f));
            engine_call(|| w.e.flush(now));
            replies.extend(answers(&mut w.e));
        }
    }
    assert_eq!(
        metered::allocations(),
        allocs,
        "{limit:?}: the engine allocated while refusing"
    );
    assert_eq!(
        metered::live_bytes(),
        live,
        "{limit:?}: the engine's memory grew"
    );
    assert_eq!(
        w.e.tcp().flow_count() + w.e.udp().flow_count() + w.e.icmp().flow_count(),
        3,
        "{limit:?}: nothing opened"
    );
    let rsts = replies
        .iter()
        .filter(|s| matches!(s, guest_frames::Seen::Tcp(f, ..) if f.contains(TcpFlags::RST)))
        .count();
    assert_eq!(rsts, usize::from(FLOOD), "{limit:?}: every SYN reset");
    let unreachable = replies
        .iter()
        .filter(|s| **s == guest_frames::Seen::Unreachable(13))
        .count();
    assert!(
        unreachable > 0,
        "{limit:?}: UDP and echo refused with unreachables"
    );

    // The existing flows carry on.
    let now = w.now;
    let dgram = guest_frames::udp(&config, 30_000, remote, b"after");
    engine_call(|| w.e.handle_frame(now, &dgram));
    engine_call(|| w.e.flush(now));
    let ping = guest_frames::echo(&config, gw_echo, 1, 2);
    engine_call(|| w.e.handle_frame(now, &ping));
    let deadline = w.now + Duration::from_secs(5);
    w.run(&mut r, deadline, false);
    assert_eq!(r.conns[0].st, St::Done, "{limit:?}: TCP finished");
    assert_eq!(r.conns[0].got, PAYLOAD.len(), "{limit:?}: TCP echoed");
    let c = w.e.counters();
    assert_eq!(
        (c.udp_to_guest, c.echo_replies_to_guest),
        (2, 2),
        "{limit:?}: {c:?}"
    );
    w
}

#[test]
fn a_full_flow_table_refuses_floods_and_leaves_existing_flows_alone() {
    let w = refusal_leaves_existing_flows_alone(Limit::Table);
    let c = w.e.counters();
    assert_eq!(
        c.drops(passt_engine::DropReason::FlowTableFull),
        3 * u64::from(FLOOD)
    );
}

#[test]
fn running_out_of_descriptors_is_refused_like_a_full_table() {
    let w = refusal_leaves_existing_flows_alone(Limit::Descriptors);
    let c = w.e.counters();
    assert_eq!(c.drops(passt_engine::DropReason::FlowTableFull), 0);
    assert_eq!(
        c.drops(passt_engine::DropReason::HostSocketError),
        3 * u64::from(FLOOD),
        "every refusal counted: {c:?}"
    );
}
