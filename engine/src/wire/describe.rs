//! One-line, tcpdump-like descriptions of parsed frames, for logs, the
//! simulator's decoded conversations and snapshot tests.
//!
//! `Display` writes straight into the formatter: describing a frame does
//! not allocate (beyond what the caller's formatter does). Diagnostic
//! only: nothing in the data path depends on this text.

use core::fmt;

use super::icmpv6::{NdpOption, NdpRepr};
use super::{ArpOperation, Frame, Icmpv4Repr, Icmpv6Repr, L3, L4, TcpFlags};

impl fmt::Display for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} > {} ", self.eth.src, self.eth.dst)?;
        match &self.l3 {
            L3::Arp(a) => match a.operation {
                ArpOperation::Request => {
                    write!(f, "ARP who-has {} tell {}", a.target_ip, a.sender_ip)
                }
                ArpOperation::Reply => {
                    write!(f, "ARP reply {} is-at {}", a.sender_ip, a.sender_hw)
                }
            },
            L3::Ipv4 { ip, l4 } => {
                write!(
                    f,
                    "IPv4 {} > {} ttl {} ",
                    ip.src_addr, ip.dst_addr, ip.hop_limit
                )?;
                describe_l4(f, l4)
            }
            L3::Ipv6 { ip, l4 } => {
                write!(
                    f,
                    "IPv6 {} > {} hlim {} ",
                    ip.src_addr, ip.dst_addr, ip.hop_limit
                )?;
                describe_l4(f, l4)
            }
        }
    }
}

fn describe_l4(f: &mut fmt::Formatter<'_>, l4: &L4<'_>) -> fmt::Result {
    match l4 {
        L4::Tcp { tcp, payload } => {
            write!(
                f,
                "TCP {} > {} [{}] seq {} ack {} win {}",
                tcp.src_port,
                tcp.dst_port,
                flags(tcp.flags),
                tcp.seq,
                tcp.ack,
                tcp.window
            )?;
            if let Some(mss) = tcp.options.mss {
                write!(f, " mss {mss}")?;
            }
            if let Some(ws) = tcp.options.window_scale {
                write!(f, " wscale {ws}")?;
            }
            write!(f, " len {}", payload.len())
        }
        L4::Udp { udp, payload } => {
            write!(
                f,
                "UDP {} > {} len {}",
                udp.src_port,
                udp.dst_port,
                payload.len()
            )
        }
        L4::Icmpv4(icmp) => match icmp {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => write!(
                f,
                "ICMP echo request id {ident} seq {seq_no} len {}",
                data.len()
            ),
            Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => write!(
                f,
                "ICMP echo reply id {ident} seq {seq_no} len {}",
                data.len()
            ),
            Icmpv4Repr::DstUnreachable { code, .. } => write!(f, "ICMP unreachable code {code}"),
            Icmpv4Repr::TimeExceeded { code, .. } => {
                write!(f, "ICMP time exceeded code {code}")
            }
            Icmpv4Repr::Other { msg_type, code, .. } => {
                write!(f, "ICMP type {msg_type} code {code}")
            }
        },
        L4::Icmpv6(icmp) => match icmp {
            Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => write!(
                f,
                "ICMPv6 echo request id {ident} seq {seq_no} len {}",
                data.len()
            ),
            Icmpv6Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => write!(
                f,
                "ICMPv6 echo reply id {ident} seq {seq_no} len {}",
                data.len()
            ),
            Icmpv6Repr::DstUnreachable { code, .. } => {
                write!(f, "ICMPv6 unreachable code {code}")
            }
            Icmpv6Repr::PacketTooBig { mtu, .. } => write!(f, "ICMPv6 packet too big mtu {mtu}"),
            Icmpv6Repr::TimeExceeded { code, .. } => {
                write!(f, "ICMPv6 time exceeded code {code}")
            }
            Icmpv6Repr::Ndp(ndp) => describe_ndp(f, ndp),
            Icmpv6Repr::Other { msg_type, code, .. } => {
                write!(f, "ICMPv6 type {msg_type} code {code}")
            }
        },
        L4::Other { protocol, payload } => {
            write!(f, "protocol {protocol} len {}", payload.len())
        }
    }
}

fn describe_ndp(f: &mut fmt::Formatter<'_>, ndp: &NdpRepr<'_>) -> fmt::Result {
    match ndp {
        NdpRepr::RouterSolicit { .. } => write!(f, "NDP router solicitation")?,
        NdpRepr::RouterAdvert {
            cur_hop_limit,
            managed,
            other_config,
            router_lifetime,
            ..
        } => write!(
            f,
            "NDP router advertisement hlim {cur_hop_limit} M {} O {} lifetime {router_lifetime}s",
            u8::from(*managed),
            u8::from(*other_config)
        )?,
        NdpRepr::NeighborSolicit { target, .. } => {
            write!(f, "NDP neighbor solicitation who-has {target}")?
        }
        NdpRepr::NeighborAdvert {
            router,
            solicited,
            override_,
            target,
            ..
        } => write!(
            f,
            "NDP neighbor advertisement {target} R {} S {} O {}",
            u8::from(*router),
            u8::from(*solicited),
            u8::from(*override_)
        )?,
        NdpRepr::Redirect { target, .. } => write!(f, "NDP redirect to {target}")?,
    }
    for opt in ndp.options().iter() {
        match opt {
            NdpOption::SourceLinkAddr(m) => write!(f, ", src-lladdr {m}")?,
            NdpOption::TargetLinkAddr(m) => write!(f, ", tgt-lladdr {m}")?,
            NdpOption::PrefixInfo(p) => write!(
                f,
                ", prefix {}/{} L {} A {} valid {}s pref {}s",
                p.prefix,
                p.prefix_len,
                u8::from(p.on_link),
                u8::from(p.autonomous),
                p.valid_lifetime,
                p.preferred_lifetime
            )?,
            NdpOption::Mtu(m) => write!(f, ", mtu {m}")?,
            NdpOption::Rdnss { lifetime, servers } => {
                write!(f, ", rdnss")?;
                for s in servers.iter() {
                    write!(f, " {s}")?;
                }
                write!(f, " ({lifetime}s)")?;
            }
            NdpOption::Dnssl { lifetime, domains } => {
                write!(f, ", dnssl")?;
                for d in domains.names() {
                    write!(f, " {d}")?;
                }
                write!(f, " ({lifetime}s)")?;
            }
            NdpOption::Unknown { kind, data } => write!(f, ", opt {kind} len {}", data.len())?,
        }
    }
    Ok(())
}

/// The flags as tcpdump prints them: `S`, `S.`, `F.`, `R.`, `P.`, `.`.
struct Flags(TcpFlags);

fn flags(f: TcpFlags) -> Flags {
    Flags(f)
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fl = self.0;
        for (flag, c) in [
            (TcpFlags::SYN, 'S'),
            (TcpFlags::FIN, 'F'),
            (TcpFlags::RST, 'R'),
            (TcpFlags::PSH, 'P'),
            (TcpFlags::URG, 'U'),
            (TcpFlags::ECE, 'E'),
            (TcpFlags::CWR, 'W'),
        ] {
            if fl.contains(flag) {
                write!(f, "{c}")?;
            }
        }
        if fl.contains(TcpFlags::ACK) {
            write!(f, ".")?;
        }
        Ok(())
    }
}
