//! Remote peers scripted per flow from the trace, on the simulator's own
//! remote services ([`crate::host::PeerScript`], [`DatagramApp`], remote host
//! profiles).
//!
//! # What this module owns
//!
//! - TCP opened by the guest: where the trace shows the engine's SYN-ACK,
//!   a listener at the engine's host-side destination accepts, then sends
//!   the bytes the engine delivered to the guest, in order, at their
//!   recorded times (relative to the SYN-ACK), and shuts down or resets
//!   where the engine did. A RST instead: no listener (a refusal). Neither:
//!   the remote IP drops everything, if no other flow to it was answered.
//! - TCP opened by the engine (port forwarding): a forwarded port, and a
//!   remote client connecting to it at the time of the engine's SYN,
//!   scripted the same way.
//! - UDP: each datagram reaching a scripted address is answered with the
//!   datagrams the engine delivered after the matching guest datagram.
//! - ICMP echo: a remote IP whose echo requests went unanswered in the
//!   trace does not answer.
//!
//! # What it must never do
//!
//! Judge the replay (the report does), or reach into the host model past
//! its public remote API.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use passt_engine::{Config, Instant, mapping};

use super::flows::{ENGINE, Flow, GUEST, Proto, Stamp};
use crate::host::{DatagramApp, PeerScript, PeerStep, RemoteHostConfig, RemoteService, SimHost};

/// A remote client to start at a given time (port forwarding).
#[derive(Clone, Debug)]
pub struct InboundConnect {
    /// Virtual time of the engine's SYN in the trace.
    pub at: Instant,
    /// The remote end.
    pub from: SocketAddr,
    /// The forwarded host port.
    pub to: SocketAddr,
    /// Host address listened on, and the guest port.
    pub listen: (SocketAddr, u16),
    /// What the client does.
    pub script: PeerScript,
}

/// What [`script_peers`] could not script, in words (for the report).
pub type Unscripted = Vec<String>;

/// How long past the run a peer that never closed in the trace waits
/// (it must not close inside the replay).
const FOREVER: Duration = Duration::from_secs(1 << 30);

/// The steps of the engine's side of `flow` (what the remote did, as the
/// engine relayed it), at the trace's times: the guest's recorded frames
/// are fed at those times too, so both ends keep the trace's pace however
/// long the replayed connection took to open.
fn steps(flow: &Flow) -> Vec<PeerStep> {
    enum A<'a> {
        Send(&'a [u8]),
        Fin,
        Rst,
        Eof,
    }
    let e = &flow.dirs[ENGINE];
    let mut ev: Vec<(Stamp, A<'_>)> = e.chunks.iter().map(|(t, c)| (*t, A::Send(c))).collect();
    if let Some(t) = flow.dirs[GUEST].fin_at {
        ev.push((t, A::Eof));
    }
    if let Some(t) = e.fin_at {
        ev.push((t, A::Fin));
    }
    if let Some(t) = e.rst_at {
        ev.push((t, A::Rst));
    }
    // Capture order: frames stamped alike stay in the order recorded.
    ev.sort_by_key(|(t, _)| *t);
    let mut out = Vec::new();
    let mut closed = false;
    for ((rel, _), a) in ev {
        match a {
            A::Send(c) => {
                out.push(PeerStep::Until(rel));
                out.push(PeerStep::Send(c.to_vec()));
            }
            // The guest's FIN reached the remote as an end of stream.
            A::Eof => out.push(PeerStep::ExpectEof),
            A::Fin => {
                out.push(PeerStep::Until(rel));
                out.push(PeerStep::ShutdownWrite);
            }
            A::Rst => {
                out.push(PeerStep::Until(rel));
                out.push(PeerStep::Reset);
                closed = true;
                break;
            }
        }
    }
    if !closed && (e.fin_at.is_none() || flow.dirs[GUEST].fin_at.is_none()) {
        // The remote did not close in the trace: it must not close now.
        out.push(PeerStep::Until(Instant::ZERO + FOREVER));
    }
    out
}

fn script_for(flow: &Flow) -> PeerScript {
    PeerScript::new(steps(flow))
        .draining()
        .with_expect_timeout(FOREVER)
}

/// Answers datagrams with the recorded replies, batch after batch.
struct RecordedReplies {
    batches: Arc<Mutex<VecDeque<Vec<Vec<u8>>>>>,
}

impl DatagramApp for RecordedReplies {
    fn on_datagram(
        &mut self,
        _now: Instant,
        _from: SocketAddr,
        _to: SocketAddr,
        _payload: &[u8],
        replies: &mut Vec<Vec<u8>>,
    ) {
        let next = match self.batches.lock() {
            Ok(mut q) => q.pop_front(),
            Err(p) => p.into_inner().pop_front(),
        };
        replies.extend(next.unwrap_or_default());
    }
}

/// The replies the engine delivered after each guest datagram of `flow`.
fn reply_batches(flow: &Flow) -> Vec<Vec<Vec<u8>>> {
    let g = &flow.dirs[GUEST].chunks;
    let e = &flow.dirs[ENGINE].chunks;
    let mut out: Vec<Vec<Vec<u8>>> = vec![Vec::new(); g.len()];
    for (t, d) in e {
        // The last guest datagram sent at or before this reply.
        if let Some(k) = g.iter().rposition(|(tg, _)| tg <= t) {
            out[k].push(d.clone());
        }
    }
    out
}

/// The remote path profile replay uses for every remote IP: the trace's
/// timing is in the scripts, so the path adds next to nothing.
pub fn replay_path() -> RemoteHostConfig {
    RemoteHostConfig::loopback()
}

/// Sets up the remote side of every flow of the trace on `host`; returns
/// the port-forwarding clients to start later, and what was left out.
pub fn script_peers(
    host: &mut SimHost,
    flows: &[Flow],
    config: &Config,
) -> (Vec<InboundConnect>, Unscripted) {
    let mut unscripted = Vec::new();
    let mut inbound = Vec::new();
    // TCP opened by the guest: one queue of scripts per host destination,
    // taken in accept order.
    let mut tcp: BTreeMap<SocketAddr, VecDeque<PeerScript>> = BTreeMap::new();
    let mut answered_ips: BTreeSet<IpAddr> = BTreeSet::new();
    let mut silent_ips: BTreeSet<IpAddr> = BTreeSet::new();
    let mut udp: BTreeMap<SocketAddr, Vec<Vec<Vec<u8>>>> = BTreeMap::new();
    let mut ping_answered: BTreeSet<IpAddr> = BTreeSet::new();
    let mut ping_unanswered: BTreeSet<IpAddr> = BTreeSet::new();
    for f in flows {
        let (guest, remote) = (f.key.1, f.key.2);
        let host_dst = mapping::host_destination_port(config, remote);
        match f.proto() {
            Proto::Tcp if f.guest_is_client => match f.handshake() {
                "established" => {
                    tcp.entry(host_dst).or_default().push_back(script_for(f));
                    answered_ips.insert(host_dst.ip());
                }
                "refused" => {
                    answered_ips.insert(host_dst.ip());
                }
                "no answer" => {
                    silent_ips.insert(host_dst.ip());
                }
                _ => unscripted.push(format!(
                    "tcp {guest} -> {remote}: no SYN in the trace (capture started mid-connection)"
                )),
            },
            Proto::Tcp => {
                let Some(at) = f.dirs[ENGINE].syn_at else {
                    unscripted.push(format!("tcp {remote} -> {guest}: no SYN in the trace"));
                    continue;
                };
                let Some((from, to)) = inbound_ends(config, host, remote, guest.port()) else {
                    unscripted.push(format!(
                        "tcp {remote} -> {guest}: the simulated host has no address of that family"
                    ));
                    continue;
                };
                let any = match guest {
                    SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                };
                inbound.push(InboundConnect {
                    at,
                    from,
                    to,
                    listen: (SocketAddr::new(any, guest.port()), guest.port()),
                    script: script_for(f),
                });
            }
            Proto::Udp if f.guest_is_client => {
                udp.entry(host_dst).or_default().extend(reply_batches(f));
            }
            Proto::Udp => unscripted.push(format!(
                "udp {remote} -> {guest}: datagrams opened by the engine (forwarded UDP) are not replayed yet"
            )),
            Proto::Icmp => {
                let ip = mapping::host_destination(config, remote.ip());
                if f.handshake() == "answered" {
                    ping_answered.insert(ip);
                } else {
                    ping_unanswered.insert(ip);
                }
            }
        }
    }
    for (addr, scripts) in tcp {
        let queue = Arc::new(Mutex::new(scripts));
        let service = RemoteService::Custom(Arc::new(move |_peer, _local| {
            let next = match queue.lock() {
                Ok(mut q) => q.pop_front(),
                Err(p) => p.into_inner().pop_front(),
            };
            // More connections than the trace had: they are reset.
            next.unwrap_or_else(|| PeerScript::new(vec![PeerStep::Reset]))
                .into_app()
        }));
        if let Err(e) = host.remote_tcp_serve(addr, 1024, service) {
            unscripted.push(format!("tcp server {addr}: cannot listen: {e:?}"));
        }
    }
    for ip in silent_ips.difference(&answered_ips) {
        host.set_reach(*ip, crate::host::Reach::Blackhole);
    }
    for (addr, batches) in udp {
        let app = RecordedReplies {
            batches: Arc::new(Mutex::new(batches.into_iter().collect())),
        };
        if let Err(e) = host.remote_udp_serve(addr, Box::new(app)) {
            unscripted.push(format!("udp server {addr}: cannot serve: {e:?}"));
        }
    }
    for ip in ping_unanswered.difference(&ping_answered) {
        let mut p = replay_path();
        p.answers_ping = false;
        host.set_remote_host(*ip, p);
    }
    (inbound, unscripted)
}

/// The remote client's address and the forwarded host address it
/// connects to, for a connection the guest saw from `remote`: a peer
/// shown as the mapped gateway was on the host's loopback; any other
/// connects to the host's own address.
fn inbound_ends(
    config: &Config,
    host: &SimHost,
    remote: SocketAddr,
    port: u16,
) -> Option<(SocketAddr, SocketAddr)> {
    let host_ip = mapping::host_destination(config, remote.ip());
    let from = SocketAddr::new(host_ip, remote.port());
    if host_ip.is_loopback() {
        return Some((from, SocketAddr::new(host_ip, port)));
    }
    let to = match host_ip {
        IpAddr::V4(_) => IpAddr::V4(host.config().host_v4?),
        IpAddr::V6(_) => IpAddr::V6(host.config().host_v6?),
    };
    Some((from, SocketAddr::new(to, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_follow_the_guest_datagram_they_answer() {
        let mut f = Flow {
            key: (
                Proto::Udp,
                "192.0.2.15:5000".parse().unwrap(),
                "203.0.113.7:53".parse().unwrap(),
            ),
            guest_is_client: true,
            first_at: Instant::ZERO,
            dirs: Default::default(),
            closes: Vec::new(),
        };
        f.dirs[GUEST].chunks = vec![
            ((Instant::from_millis(1), 0), b"q1".to_vec()),
            ((Instant::from_millis(5), 3), b"q2".to_vec()),
        ];
        f.dirs[ENGINE].chunks = vec![
            ((Instant::from_millis(2), 1), b"a1".to_vec()),
            ((Instant::from_millis(2), 2), b"a1bis".to_vec()),
        ];
        let b = reply_batches(&f);
        assert_eq!(b, vec![vec![b"a1".to_vec(), b"a1bis".to_vec()], vec![]]);
    }
}
