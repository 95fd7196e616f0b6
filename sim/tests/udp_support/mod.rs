//! Shared pieces of the simulated UDP and ICMP tests: building a
//! [`Simulation`] around a scripted or smoltcp guest, moving virtual time
//! on after the guest is done, remote programs that record what reached
//! them, and independent builders of the exact frames the engine must send
//! (written here from RFC 768 / 791 / 792 / 8200 / 4443, not with the
//! engine's own builders, so the comparison means something).

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use passt_engine::host_io::{HostIo, SockId};
use passt_engine::{Config, Instant, MacAddr};
use passt_sim::guest::{Script, ScriptGuest, SimGuest};
use passt_sim::host::{DatagramApp, SimHost, SimHostConfig};
use passt_sim::link::Link;
use passt_sim::seed::SimRng;
use passt_sim::simulation::{Simulation, StopReason};

/// The engine's MAC in `Config::example()`.
pub const ENGINE_MAC: [u8; 6] = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55];
/// The scripted guest's default MAC.
pub const GUEST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x15];
/// The guest's addresses in `Config::example()`.
pub const GUEST4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 15);
/// IPv4 gateway (mapped to the host's 127.0.0.1).
pub const GW4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The guest's global IPv6 address.
pub const GUEST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x15);
/// IPv6 gateway (mapped to the host's ::1).
pub const GW6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// The simulated host's own IPv4 address (`SimHostConfig::default()`).
pub const HOST4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The simulated host's own IPv6 address.
pub const HOST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);

/// A socket address from text (tests only).
pub fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address literal")
}

/// A simulated host whose generator derives from `seed` as scenarios do.
pub fn host(seed: u64) -> SimHost {
    SimHost::new(
        SimHostConfig::default(),
        SimRng::from_seed(seed).child("host"),
    )
}

/// A simulation with a scripted guest running `script` over ideal links.
pub fn script_sim(config: Config, host: SimHost, script: &str, seed: u64) -> Simulation {
    let script = Script::parse(script).unwrap_or_else(|e| panic!("{e}\n{script}"));
    let guest = ScriptGuest::new(script, config.our_mac, Instant::ZERO);
    Simulation::new(
        config,
        host,
        SimRng::from_seed(seed).child("engine").next_u64(),
        SimGuest::Script(Box::new(guest)),
        Link::ideal("guest->engine"),
        Link::ideal("engine->guest"),
    )
    .expect("engine configuration")
}

/// The scripted guest's outcome, with its transcript on failure.
pub fn script_outcome(sim: &Simulation) -> Result<(), String> {
    let g = sim.guest().as_script().ok_or("not a scripted guest")?;
    g.outcome()
        .map_err(|m| format!("{m}\ntranscript:\n{}", g.transcript().join("\n")))
}

/// Moves the whole system to `end`, running every event on the way, even
/// once the guest has finished (which [`Simulation::run_until`] does not).
pub fn advance(sim: &mut Simulation, end: Instant) -> StopReason {
    loop {
        match sim.next_deadline() {
            Some(t) if t <= end => {
                if !sim.step_at(t) {
                    return StopReason::Stalled;
                }
            }
            _ => {
                if !sim.step_at(end) {
                    return StopReason::Stalled;
                }
                return StopReason::TimeUp;
            }
        }
    }
}

/// Seconds as an [`Instant`] (millisecond precision is enough here).
pub fn at(secs: f64) -> Instant {
    Instant::from_nanos((secs * 1e9).round() as u64)
}

/// Host sockets open right now (the simulated descriptors in use).
pub fn open_host_sockets(host: &SimHost) -> usize {
    (0..4096u32)
        .filter(|i| host.local_addr(SockId(*i)).is_ok())
        .count()
}

/// What a [`Recorder`] saw: `(time, from, to, payload)` per datagram.
pub type Log = Arc<Mutex<Vec<(Instant, SocketAddr, SocketAddr, Vec<u8>)>>>;

/// A remote datagram program that records every datagram and, if `echo`,
/// sends it back.
pub struct Recorder {
    log: Log,
    echo: bool,
}

impl Recorder {
    /// A recorder (and echo if `echo`) and the log it writes.
    pub fn boxed(echo: bool) -> (Box<dyn DatagramApp>, Log) {
        let log = Log::default();
        (
            Box::new(Recorder {
                log: log.clone(),
                echo,
            }),
            log,
        )
    }
}

impl DatagramApp for Recorder {
    fn on_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: SocketAddr,
        payload: &[u8],
        replies: &mut Vec<Vec<u8>>,
    ) {
        if let Ok(mut l) = self.log.lock() {
            l.push((now, from, to, payload.to_vec()));
        }
        if self.echo {
            replies.push(payload.to_vec());
        }
    }
}

/// The entries of a log, copied out.
pub fn entries(log: &Log) -> Vec<(Instant, SocketAddr, SocketAddr, Vec<u8>)> {
    log.lock().map(|l| l.clone()).unwrap_or_default()
}

/// `bytes` as a script string literal (`"\xNN..."`).
pub fn script_bytes(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for b in bytes {
        s.push_str(&format!("\\x{b:02x}"));
    }
    s.push('"');
    s
}

/// `bytes` as hex digits for a script `hex` line.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ----- independent frame builders (RFC 791, 768, 792, 8200, 4443) -----

/// RFC 1071 one's-complement sum, folded and complemented.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [b] = chunks.remainder() {
            sum += u32::from(*b) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(14);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// An IPv4 header (RFC 791): no options, ident 0, DF, TTL 64.
pub fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload_len: usize) -> Vec<u8> {
    let total = (20 + payload_len) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let ck = checksum(&[&h]);
    h[10..12].copy_from_slice(&ck.to_be_bytes());
    h
}

/// An IPv6 header (RFC 8200): traffic class and flow label 0, hop limit 64.
pub fn ipv6_header(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload_len: usize) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload_len as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h
}

fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => panic!("mixed families"),
    }
    p
}

/// The 8-byte UDP header (RFC 768) with its checksum (`checked`) or zero.
pub fn udp_header(src: SocketAddr, dst: SocketAddr, payload: &[u8], checked: bool) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = Vec::with_capacity(8);
    u.extend_from_slice(&src.port().to_be_bytes());
    u.extend_from_slice(&dst.port().to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    if checked {
        let mut ck = checksum(&[&pseudo(src.ip(), dst.ip(), 17, len), &u, payload]);
        if ck == 0 {
            ck = 0xffff;
        }
        u[6..8].copy_from_slice(&ck.to_be_bytes());
    }
    u
}

/// A whole UDP frame from the guest's MAC to the engine's.
pub fn guest_udp_frame(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let udp = udp_header(src, dst, payload, true);
    let (mut f, ip) = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (
            ethernet(ENGINE_MAC, GUEST_MAC, 0x0800),
            ipv4_header(s, d, 17, 8 + payload.len()),
        ),
        (IpAddr::V6(s), IpAddr::V6(d)) => (
            ethernet(ENGINE_MAC, GUEST_MAC, 0x86dd),
            ipv6_header(s, d, 17, 8 + payload.len()),
        ),
        _ => panic!("mixed families"),
    };
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f.extend_from_slice(payload);
    f
}

/// The ICMP port unreachable the engine must send to the guest for a
/// datagram `guest -> dst` of `payload_len` bytes: RFC 792 type 3 code 3
/// (IPv4) or RFC 4443 §3.1 type 1 code 4 (IPv6), from `dst`'s address to
/// the guest, quoting the guest's IP header and UDP header (addresses,
/// ports and lengths as sent; the engine does not keep the payload, so the
/// quoted UDP checksum is zero and nothing past the UDP header is quoted).
pub fn port_unreachable_frame(guest: SocketAddr, dst: SocketAddr, payload_len: usize) -> Vec<u8> {
    let fake_payload = vec![0u8; payload_len];
    let quoted_udp = udp_header(guest, dst, &fake_payload, false);
    match (guest.ip(), dst.ip()) {
        (IpAddr::V4(g), IpAddr::V4(d)) => {
            let mut quote = ipv4_header(g, d, 17, 8 + payload_len);
            quote.extend_from_slice(&quoted_udp);
            let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
            icmp.extend_from_slice(&quote);
            let ck = checksum(&[&icmp]);
            icmp[2..4].copy_from_slice(&ck.to_be_bytes());
            let mut f = ethernet(GUEST_MAC, ENGINE_MAC, 0x0800);
            f.extend_from_slice(&ipv4_header(d, g, 1, icmp.len()));
            f.extend_from_slice(&icmp);
            f
        }
        (IpAddr::V6(g), IpAddr::V6(d)) => {
            let mut quote = ipv6_header(g, d, 17, 8 + payload_len);
            quote.extend_from_slice(&quoted_udp);
            let mut icmp = vec![1, 4, 0, 0, 0, 0, 0, 0];
            icmp.extend_from_slice(&quote);
            let ck = checksum(&[&pseudo(IpAddr::V6(d), IpAddr::V6(g), 58, icmp.len()), &icmp]);
            icmp[2..4].copy_from_slice(&ck.to_be_bytes());
            let mut f = ethernet(GUEST_MAC, ENGINE_MAC, 0x86dd);
            f.extend_from_slice(&ipv6_header(d, g, 58, icmp.len()));
            f.extend_from_slice(&icmp);
            f
        }
        _ => panic!("mixed families"),
    }
}

/// The engine's MAC as a [`MacAddr`].
pub fn engine_mac() -> MacAddr {
    MacAddr(ENGINE_MAC)
}
