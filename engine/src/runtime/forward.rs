//! Binding the forwarded ports (`-t`/`-u`) at start-up, with upstream's
//! policy and messages.
//!
//! It owns the walk over [`Forwarding`]'s rules, the choice of host
//! addresses per rule, the error policy and the summary of what was bound.
//! The sockets themselves are the engine's ([`Engine::tcp_listen`],
//! [`Engine::udp_listen`]); this module never creates one directly, and it is
//! generic over [`HostIo`] so the policy can be exercised without a kernel.
//!
//! Policy (passt(1), `-t`/`-u`, and observed behaviour of upstream's
//! binaries):
//! - A rule without an address is bound on `0.0.0.0` when IPv4 is enabled
//!   and on `::` (IPv6 only) when IPv6 is enabled; a rule with an address is
//!   bound on that address only.
//! - An explicit list (mode `Ports`): any bind failure stops the start with
//!   `Failed to bind port N (REASON) for option '-t SPEC'` (newer upstream's
//!   wording; exit status 1). The one tolerated failure is `::` when the
//!   host has no IPv6 at all.
//! - `all` (and nothing else): failures are skipped (ports in use, low ports
//!   without the privilege), counted in the report.
//! - Out of descriptors, in any mode: `Can't open enough sockets for port
//!   specifier: SPEC` (upstream's wording), exit status 1.
//! - Interface-bound rules (`ADDR%IF/PORT`, `%IF/PORT`) bind their sockets
//!   to the interface (`SO_BINDTODEVICE`, through [`Place::device`]).
//! - A rule with a guest address (`22:192.0.2.5`) and no host address binds
//!   only the wildcard of that address's family.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::cli::{Forwarding, forward_origin};
use crate::engine::Engine;
use crate::engine::ListenTarget;
use crate::fwd::{ForwardMode, ForwardRule, ForwardSpec, PortRange, SpecContext};
use crate::host_io::{HostError, HostIo, IfName, Place};

/// Transport protocol of a forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    /// `-t`.
    Tcp,
    /// `-u`.
    Udp,
}

impl Proto {
    /// "TCP" / "UDP".
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }
}

/// Why the forwarded ports could not be set up (the binary prints the
/// message and exits with status 1).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// A port of an explicit list could not be bound.
    #[error("Failed to bind port {port} ({reason}) for option '-{option} {spec}'")]
    Bind {
        /// Host port.
        port: u16,
        /// The system's wording of the error (`strerror`).
        reason: String,
        /// `t` or `u`.
        option: char,
        /// The option's argument.
        spec: String,
    },
    /// Out of descriptors (or memory).
    #[error("Can't open enough sockets for port specifier: {spec}")]
    NoResources {
        /// The option's argument.
        spec: String,
    },
    /// `ADDR%IFNAME/PORT`: the interface name cannot be used.
    #[error("Invalid interface name {ifname} for option '-{option} {spec}'")]
    Interface {
        /// The interface asked for.
        ifname: String,
        /// `t` or `u`.
        option: char,
        /// The option's argument.
        spec: String,
    },
}

/// Consecutive host ports bound on one address, mapped to consecutive guest
/// ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundRun {
    /// Protocol.
    pub proto: Proto,
    /// Host address bound.
    pub addr: IpAddr,
    /// Host ports.
    pub host: PortRange,
    /// Guest port of `host.first`.
    pub guest_first: u16,
}

impl std::fmt::Display for BoundRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let guest = PortRange::new(
            self.guest_first,
            self.guest_first + (self.host.last - self.host.first),
        );
        let addr = match self.addr {
            IpAddr::V6(a) => format!("[{a}]"),
            IpAddr::V4(a) => a.to_string(),
        };
        write!(
            f,
            "{} {addr}:{} -> guest port {guest}",
            self.proto.name(),
            self.host
        )
    }
}

/// What [`bind_forwards`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardReport {
    /// Bound sockets, as runs of ports, in binding order.
    pub bound: Vec<BoundRun>,
    /// Sockets bound in total.
    pub sockets: usize,
    /// Ports skipped with `all` (in use, or not permitted), per protocol:
    /// `(tcp, udp)`.
    pub skipped: (usize, usize),
}

impl ForwardReport {
    fn push(&mut self, proto: Proto, addr: IpAddr, port: u16, guest: u16) {
        self.sockets += 1;
        if let Some(last) = self.bound.last_mut()
            && last.proto == proto
            && last.addr == addr
            && last.host.last.checked_add(1) == Some(port)
            && u32::from(last.guest_first) + u32::from(port - last.host.first) == u32::from(guest)
        {
            last.host.last = port;
            return;
        }
        self.bound.push(BoundRun {
            proto,
            addr,
            host: PortRange::single(port),
            guest_first: guest,
        });
    }

    /// Whether host port `port` is bound for `proto` on `addr`.
    pub fn is_bound(&self, proto: Proto, addr: IpAddr, port: u16) -> bool {
        self.bound
            .iter()
            .any(|r| r.proto == proto && r.addr == addr && r.host.contains(port))
    }
}

/// The host addresses a rule binds, given the enabled families.
pub fn rule_addrs(rule: &ForwardRule, ipv4: bool, ipv6: bool) -> Vec<IpAddr> {
    match rule.addr {
        Some(a) => vec![a],
        None => {
            let (ipv4, ipv6) = match rule.target {
                Some(t) => (ipv4 && t.is_ipv4(), ipv6 && t.is_ipv6()),
                None => (ipv4, ipv6),
            };
            let mut v = Vec::with_capacity(2);
            if ipv4 {
                v.push(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            }
            if ipv6 {
                v.push(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
            }
            v
        }
    }
}

/// The system's wording of a bind error, as `strerror(3)` puts it (what
/// upstream prints in its messages).
pub fn strerror(e: &HostError) -> String {
    let errno = match e {
        HostError::AddrInUse => libc::EADDRINUSE,
        HostError::AddrNotAvailable => libc::EADDRNOTAVAIL,
        HostError::PermissionDenied => libc::EACCES,
        HostError::Unsupported => libc::EAFNOSUPPORT,
        HostError::NoResources => libc::EMFILE,
        HostError::Other(n) => *n,
        other => return other.to_string(),
    };
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    // "Address already in use (os error 98)" -> "Address already in use"
    match text.rfind(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Binds every forwarded port of `forwarding` (TCP, then UDP) through
/// `engine`. `tcp_specs`/`udp_specs` are the raw `-t`/`-u` arguments and
/// `cx` the context they were parsed in (both only name the option in
/// errors). See the module documentation for the policy.
pub fn bind_forwards<H: HostIo>(
    engine: &mut Engine<H>,
    forwarding: &Forwarding,
    tcp_specs: &[String],
    udp_specs: &[String],
    cx: SpecContext,
) -> Result<ForwardReport, ForwardError> {
    let mut report = ForwardReport::default();
    let services = engine.config().services;
    if services.tcp {
        bind_spec(
            engine,
            Proto::Tcp,
            &forwarding.tcp,
            ('t', tcp_specs),
            cx,
            &mut report,
        )?;
    }
    if services.udp {
        bind_spec(
            engine,
            Proto::Udp,
            &forwarding.udp,
            ('u', udp_specs),
            cx,
            &mut report,
        )?;
    }
    Ok(report)
}

fn bind_spec<H: HostIo>(
    engine: &mut Engine<H>,
    proto: Proto,
    spec: &ForwardSpec,
    (option, specs): (char, &[String]),
    cx: SpecContext,
    report: &mut ForwardReport,
) -> Result<(), ForwardError> {
    let tolerant = spec.mode == ForwardMode::All;
    let ipv4 = engine.config().ipv4.is_some();
    let ipv6 = engine.config().ipv6.is_some();
    let origin = |addr: Option<IpAddr>, port: u16| -> String {
        forward_origin(specs, addr, port, cx)
            .or(specs.first().map(String::as_str))
            .unwrap_or("")
            .to_string()
    };
    for rule in &spec.rules {
        let device = match &rule.ifname {
            None => None,
            Some(name) => Some(IfName::new(name).ok_or_else(|| ForwardError::Interface {
                ifname: name.clone(),
                option,
                spec: origin(rule.addr, rule.host.first),
            })?),
        };
        let place = Place {
            device,
            ..Place::HOST
        };
        for addr in rule_addrs(rule, ipv4, ipv6) {
            let family_enabled = match addr {
                IpAddr::V4(_) => ipv4,
                IpAddr::V6(_) => ipv6,
            };
            for port in rule.host.first..=rule.host.last {
                let Some(guest) = rule.guest_port(port) else {
                    continue;
                };
                let sa = SocketAddr::new(addr, port);
                let target = ListenTarget {
                    port: guest,
                    addr: rule.target,
                };
                let result = if !family_enabled {
                    Err(HostError::Unsupported)
                } else {
                    match proto {
                        Proto::Tcp => engine.tcp_listen_at(place, sa, target),
                        Proto::Udp => engine.udp_listen_at(place, sa, target).map(|_| ()),
                    }
                };
                match result {
                    Ok(()) => report.push(proto, addr, port, guest),
                    Err(HostError::NoResources) => {
                        return Err(ForwardError::NoResources {
                            spec: origin(rule.addr, port),
                        });
                    }
                    Err(_) if tolerant => match proto {
                        Proto::Tcp => report.skipped.0 += 1,
                        Proto::Udp => report.skipped.1 += 1,
                    },
                    // A host without IPv6 sockets at all: the wildcard's
                    // IPv6 half is left out, as upstream does.
                    Err(HostError::Unsupported) if rule.addr.is_none() && addr.is_ipv6() => {}
                    Err(e) => {
                        return Err(ForwardError::Bind {
                            port,
                            reason: strerror(&e),
                            option,
                            spec: origin(rule.addr, port),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strerror_matches_the_c_library() {
        assert_eq!(strerror(&HostError::AddrInUse), "Address already in use");
        assert_eq!(strerror(&HostError::PermissionDenied), "Permission denied");
        assert_eq!(
            strerror(&HostError::AddrNotAvailable),
            "Cannot assign requested address"
        );
    }

    #[test]
    fn runs_are_merged() {
        let mut r = ForwardReport::default();
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        r.push(Proto::Tcp, any, 10, 20);
        r.push(Proto::Tcp, any, 11, 21);
        r.push(Proto::Tcp, any, 13, 23);
        r.push(Proto::Udp, any, 14, 14);
        assert_eq!(r.sockets, 4);
        assert_eq!(r.bound.len(), 3);
        assert_eq!(r.bound[0].host, PortRange::new(10, 11));
        assert_eq!(
            r.bound[0].to_string(),
            "TCP 0.0.0.0:10-11 -> guest port 20-21"
        );
        assert!(r.is_bound(Proto::Tcp, any, 13));
        assert!(!r.is_bound(Proto::Tcp, any, 12));
        assert!(!r.is_bound(Proto::Tcp, any, 14));
    }

    #[test]
    fn wildcard_rules_bind_each_enabled_family() {
        let rule = ForwardRule {
            addr: None,
            ifname: None,
            host: PortRange::single(22),
            guest_first: 22,
            target: None,
        };
        assert_eq!(rule_addrs(&rule, true, true).len(), 2);
        assert_eq!(
            rule_addrs(&rule, true, false),
            vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]
        );
        assert_eq!(
            rule_addrs(&rule, false, true),
            vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED)]
        );
        let lo = ForwardRule {
            addr: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ..rule
        };
        assert_eq!(rule_addrs(&lo, false, true), vec![lo.addr.unwrap()]);
    }
}
