//! Port-forwarding specifications: the `-t`/`-u` (and pasta's `-T`/`-U`)
//! grammar of upstream passt/pasta, as documented in passt(1).
//!
//! ```text
//! spec   = "none" | "auto"                                   (auto: pasta only)
//!        | [host "/"] ("all" [":" taddr] | item ("," item)*)
//! host   = addr ["%" ifname] | "*" ["%" ifname] | "%" ifname
//! item   = range [":" target]                  (host ports : where they go)
//!        | "~" range                           (excluded host ports)
//! target = range | taddr | taddr "/" range     (guest ports, guest address)
//! taddr  = addr | "[" ipv6 "]"
//! range  = port ["-" port]                     (1 <= port <= 65535)
//! ```
//!
//! Semantics (passt(1) and observed behaviour of upstream's binary):
//! - `none` forwards nothing; `all` forwards every non-ephemeral port
//!   (outside `net.ipv4.ip_local_port_range`); `auto` (pasta) follows the
//!   ports bound in the namespace.
//! - A target range must have as many ports as the host range; a target
//!   address (`22:192.0.2.5`, `5000:192.0.2.5/6000`, `all:ADDR`) is the
//!   guest address forwarded connections are opened to, instead of the
//!   guest's assigned address.
//! - Excluded ranges are cut out of the ranges of the same option; an
//!   option made only of exclusions forwards every non-ephemeral port but
//!   those.
//! - The host prefix is given once, before the first item, and applies to
//!   every item of the option: an address (`ADDR/`), `*` (every address,
//!   the same as no prefix), an interface the sockets are bound to
//!   (`%IF/`, `ADDR%IF/`, `SO_BINDTODEVICE`).
//! - Options accumulate (`-t 22 -t 80`); a port may not be forwarded twice
//!   for the same bind address and interface; `none` adds nothing (so
//!   `-t none -t 22` is `-t 22`), `all` and `auto` cannot be mixed with port
//!   lists.
//! - A target IPv6 address followed by `/PORTS` is written in brackets when
//!   the text before the `/` would otherwise read as a host address
//!   (`5000:[2001:db8::5]/6000`).
//!
//! Every malformed specification gets its own error, whose message starts
//! like upstream's ("Invalid port specifier SPEC", "Overlapping port
//! specifier SPEC") and then says precisely what is wrong. Deliberate
//! deviations from upstream, which accepts these through `strtoul`: port 0,
//! signs, whitespace, and an empty interface name are rejected.
//!
//! This module is pure parsing: it never binds a socket.

use core::fmt;
use std::net::IpAddr;

/// Which program's rules apply (`auto` is pasta's only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// passt: default `none`, no `auto`.
    Passt,
    /// pasta: default `auto`.
    Pasta,
}

/// An inclusive range of ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive, `>= first`).
    pub last: u16,
}

impl PortRange {
    /// `first..=last`.
    pub const fn new(first: u16, last: u16) -> Self {
        PortRange { first, last }
    }

    /// One port.
    pub const fn single(port: u16) -> Self {
        PortRange {
            first: port,
            last: port,
        }
    }

    /// Number of ports.
    pub const fn len(&self) -> u32 {
        self.last as u32 - self.first as u32 + 1
    }

    /// Never true (a range holds at least one port).
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Whether `port` is in the range.
    pub const fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }

    /// The first port common to both ranges, if any.
    pub fn first_common(&self, other: &PortRange) -> Option<u16> {
        let lo = self.first.max(other.first);
        (lo <= self.last.min(other.last)).then_some(lo)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// The kernel's default ephemeral range (`net.ipv4.ip_local_port_range`).
pub const DEFAULT_EPHEMERAL: PortRange = PortRange::new(32768, 60999);

/// One forwarded range: host ports `host` (on `addr`/`ifname` if given) go
/// to guest ports starting at `guest_first`, in order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ForwardRule {
    /// Host address to bind (`None`: every address).
    pub addr: Option<IpAddr>,
    /// Host interface to bind to (`SO_BINDTODEVICE`).
    pub ifname: Option<String>,
    /// Host ports.
    pub host: PortRange,
    /// Guest port for `host.first`; the others follow in order.
    pub guest_first: u16,
    /// Guest address connections are opened to (`None`: the guest's own
    /// address, as the guest uses it).
    pub target: Option<IpAddr>,
}

impl ForwardRule {
    /// The guest ports.
    pub fn guest(&self) -> PortRange {
        PortRange::new(
            self.guest_first,
            self.guest_first + (self.host.last - self.host.first),
        )
    }

    /// The guest port for host port `port`, if the rule covers it.
    pub fn guest_port(&self, port: u16) -> Option<u16> {
        self.host
            .contains(port)
            .then(|| self.guest_first + (port - self.host.first))
    }
}

/// What kind of forwarding a specification asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardMode {
    /// `none`.
    None,
    /// `auto` (pasta): follow the ports bound on the other side.
    Auto,
    /// `all`: every non-ephemeral port; bind failures are tolerated.
    All,
    /// An explicit list (possibly only exclusions).
    Ports,
}

/// A parsed forwarding configuration for one protocol and direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardSpec {
    /// The mode.
    pub mode: ForwardMode,
    /// The resolved rules, sorted by host port (empty for `none`/`auto`).
    pub rules: Vec<ForwardRule>,
}

impl ForwardSpec {
    /// Forward nothing.
    pub fn none() -> Self {
        ForwardSpec {
            mode: ForwardMode::None,
            rules: Vec::new(),
        }
    }

    /// The guest port host port `port` is forwarded to, if any (first
    /// matching rule, whatever its bind address).
    pub fn guest_port(&self, port: u16) -> Option<u16> {
        self.rules.iter().find_map(|r| r.guest_port(port))
    }
}

/// Parsing context: the program and the host's ephemeral port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecContext {
    /// passt or pasta.
    pub program: Program,
    /// Ports `all` and exclusion-only specifications leave out.
    pub ephemeral: PortRange,
}

impl SpecContext {
    /// `program` with the kernel's default ephemeral range.
    pub const fn new(program: Program) -> Self {
        SpecContext {
            program,
            ephemeral: DEFAULT_EPHEMERAL,
        }
    }
}

/// What exactly is wrong with a specification.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Nothing given.
    #[error("the specification is empty")]
    Empty,
    /// `22,,25`, `22,`.
    #[error("empty item in the comma-separated list")]
    EmptyItem,
    /// `22-`, `-22`, `22:`, `:22`, `1.2.3.4/`.
    #[error("missing port number in '{0}'")]
    MissingPort(String),
    /// `abc`, `22a`, `+22`, `0x16`.
    #[error("'{0}' is not a port number")]
    NotANumber(String),
    /// `0`.
    #[error("port 0 cannot be forwarded")]
    PortZero,
    /// `65536`.
    #[error("port {0} is out of range (1 to 65535)")]
    PortOutOfRange(String),
    /// `80-22`.
    #[error("range {first}-{last} is reversed: the first port is greater than the last")]
    ReversedRange {
        /// First port given.
        first: u16,
        /// Last port given.
        last: u16,
    },
    /// `22-80:32-40`.
    #[error(
        "target range {guest} has {} port(s) but host range {host} has {}",
        guest.len(),
        host.len()
    )]
    TargetLengthMismatch {
        /// Host range.
        host: PortRange,
        /// Target range.
        guest: PortRange,
    },
    /// `~22:23`.
    #[error("excluded range '{0}' cannot have a target port")]
    ExcludedWithTarget(String),
    /// `/22`, `%eth0/22`.
    #[error("missing address before '{0}'")]
    MissingAddress(char),
    /// `1.2.3.999/22`, `[::1]/22`.
    #[error("'{0}' is not an IPv4 or IPv6 address")]
    BadAddress(String),
    /// `1.2.3.4%/22`.
    #[error("empty interface name after '%'")]
    EmptyInterface,
    /// An interface name the kernel would refuse.
    #[error("'{0}' is not a valid interface name (1 to 15 characters, no '/', ':' or whitespace)")]
    BadInterface(String),
    /// `22,1.2.3.4/25`.
    #[error("an address can only be given once, before the first port")]
    AddressNotFirst,
    /// `1.2.3.4/22/23`.
    #[error("more than one '/' in the specification")]
    ExtraSlash,
    /// `none,22`, `all,22`.
    #[error("'{0}' cannot be combined with other items")]
    KeywordInList(&'static str),
    /// `1.2.3.4/none`.
    #[error("'{0}' cannot follow an address")]
    KeywordWithAddress(&'static str),
    /// `22:[1.2.3.4]`, `22:[::1` .
    #[error("'{0}' is not a bracketed IPv6 address")]
    BadBrackets(String),
    /// `::1/22:192.0.2.5`: a connection to an IPv6 host address cannot be
    /// opened to an IPv4 guest address.
    #[error("host address {host} and target address {target} are of different families")]
    FamilyMismatch {
        /// Host (bind) address.
        host: IpAddr,
        /// Target (guest) address.
        target: IpAddr,
    },
}

/// `host` and `target` must be of one family when both are given.
fn same_family(host: Option<IpAddr>, target: Option<IpAddr>) -> Result<(), SpecError> {
    match (host, target) {
        (Some(h), Some(t)) if h.is_ipv4() != t.is_ipv4() => {
            Err(SpecError::FamilyMismatch { host: h, target: t })
        }
        _ => Ok(()),
    }
}

/// A specification the parser refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FwdError {
    /// Malformed.
    #[error("Invalid port specifier {spec}: {reason}")]
    Invalid {
        /// The option's argument.
        spec: String,
        /// What is wrong.
        reason: SpecError,
    },
    /// A host port forwarded twice (within an option, or across options
    /// for the same bind address).
    #[error("Overlapping port specifier {spec}: port {port} is forwarded more than once")]
    Overlapping {
        /// The option's argument.
        spec: String,
        /// The first port given twice.
        port: u16,
    },
    /// Two exclusions cover the same port.
    #[error("Overlapping port specifier {spec}: port {port} is excluded more than once")]
    OverlappingExclusion {
        /// The option's argument.
        spec: String,
        /// The first port excluded twice.
        port: u16,
    },
    /// `auto` given to passt.
    #[error("'auto' port forwarding is only allowed for pasta")]
    AutoOnlyForPasta,
    /// Ports after `none`/`all`/`auto` in an earlier option.
    #[error("Specific ports cannot be specified together with all/auto")]
    PortsAfterMode,
    /// `none`/`all`/`auto` after an earlier option.
    #[error("Port forwarding mode '{0}' conflicts with previous mode")]
    ModeConflict(&'static str),
}

fn keyword(s: &str) -> Option<(&'static str, ForwardMode)> {
    match s {
        "none" => Some(("none", ForwardMode::None)),
        "all" => Some(("all", ForwardMode::All)),
        "auto" => Some(("auto", ForwardMode::Auto)),
        _ => None,
    }
}

fn parse_port(s: &str, whole: &str) -> Result<u16, SpecError> {
    if s.is_empty() {
        return Err(SpecError::MissingPort(whole.to_string()));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SpecError::NotANumber(s.to_string()));
    }
    let digits = s.trim_start_matches('0');
    if digits.len() > 5 {
        return Err(SpecError::PortOutOfRange(s.to_string()));
    }
    let v: u32 = if digits.is_empty() {
        0
    } else {
        digits
            .parse()
            .map_err(|_| SpecError::NotANumber(s.to_string()))?
    };
    match v {
        0 => Err(SpecError::PortZero),
        1..=65535 => Ok(v as u16),
        _ => Err(SpecError::PortOutOfRange(s.to_string())),
    }
}

/// A range `s` within list item `item` (named in errors).
fn parse_range(s: &str, item: &str) -> Result<PortRange, SpecError> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let first = parse_port(a, item)?;
    let last = match b {
        Some(b) => parse_port(b, item)?,
        None => first,
    };
    if first > last {
        return Err(SpecError::ReversedRange { first, last });
    }
    Ok(PortRange::new(first, last))
}

/// Host ranges outside the ephemeral range: what `all` forwards.
fn non_ephemeral(ephemeral: PortRange) -> Vec<PortRange> {
    let mut v = Vec::new();
    if ephemeral.first > 1 {
        v.push(PortRange::new(1, ephemeral.first - 1));
    }
    if ephemeral.last < u16::MAX {
        v.push(PortRange::new(ephemeral.last + 1, u16::MAX));
    }
    v
}

/// `rule` minus the host ports in `cut` (guest ports follow their host
/// ports).
pub fn subtract(rule: &ForwardRule, cut: PortRange, out: &mut Vec<ForwardRule>) {
    let h = rule.host;
    if cut.first_common(&h).is_none() {
        out.push(rule.clone());
        return;
    }
    if h.first < cut.first {
        out.push(ForwardRule {
            host: PortRange::new(h.first, cut.first - 1),
            ..rule.clone()
        });
    }
    if cut.last < h.last {
        out.push(ForwardRule {
            host: PortRange::new(cut.last + 1, h.last),
            guest_first: rule.guest_first + (cut.last + 1 - h.first),
            ..rule.clone()
        });
    }
}

/// The host prefix of a specification: bind address and interface.
type HostPrefix = (Option<IpAddr>, Option<String>);

/// Parses the text before the first `/` as a host prefix (`ADDR`,
/// `ADDR%IF`, `*`, `*%IF`, `%IF`).
fn parse_host_prefix(p: &str) -> Result<HostPrefix, SpecError> {
    if p.contains(',') {
        return Err(SpecError::AddressNotFirst);
    }
    let (a, ifname) = match p.split_once('%') {
        Some((a, i)) => (a, Some(i)),
        None => (p, None),
    };
    let ifname = match ifname {
        None => None,
        Some("") => return Err(SpecError::EmptyInterface),
        Some(i) if !crate::host_io::IfName::valid(i) => {
            return Err(SpecError::BadInterface(i.to_string()));
        }
        Some(i) => Some(i.to_string()),
    };
    let addr = match a {
        // `%IF/...` and `*/...`: every address (on that interface).
        "" if ifname.is_some() => None,
        "" => return Err(SpecError::MissingAddress('/')),
        "*" => None,
        a => Some(
            a.parse::<IpAddr>()
                .map_err(|_| SpecError::BadAddress(a.to_string()))?,
        ),
    };
    Ok((addr, ifname))
}

/// Whether `p` (the text before the first `/`) reads as an item with a
/// target (`5000:192.0.2.5/6000`) rather than as a host prefix: it has a
/// `:` after a port number or range, and is not itself an address.
fn is_item_with_target(p: &str) -> bool {
    let Some((head, _)) = p.split_once(':') else {
        return false;
    };
    !head.is_empty()
        && head.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        && p.split_once('%')
            .map_or(p, |(a, _)| a)
            .parse::<IpAddr>()
            .is_err()
}

/// A target address: `ADDR` or `[IPV6]`.
fn parse_target_addr(s: &str) -> Result<IpAddr, SpecError> {
    if let Some(inner) = s.strip_prefix('[') {
        return match inner
            .strip_suffix(']')
            .map(str::parse::<std::net::Ipv6Addr>)
        {
            Some(Ok(a)) => Ok(IpAddr::V6(a)),
            _ => Err(SpecError::BadBrackets(s.to_string())),
        };
    }
    s.parse::<IpAddr>()
        .map_err(|_| SpecError::BadAddress(s.to_string()))
}

/// Whether `s` is made of port characters only (a range, not an address).
fn looks_like_range(s: &str) -> bool {
    !s.contains('.') && !s.contains(':') && !s.starts_with('[')
}

/// The part after `:` in an item: guest ports and/or guest address.
fn parse_target(t: &str, host: PortRange, item: &str) -> Result<(u16, Option<IpAddr>), SpecError> {
    let (addr, range) = match t.split_once('/') {
        Some((a, r)) => (Some(parse_target_addr(a)?), Some(r)),
        None if looks_like_range(t) => (None, Some(t)),
        None => (Some(parse_target_addr(t)?), None),
    };
    let guest_first = match range {
        None => host.first,
        Some(r) => {
            let guest = parse_range(r, item)?;
            if guest.len() != host.len() {
                return Err(SpecError::TargetLengthMismatch { host, guest });
            }
            guest.first
        }
    };
    Ok((guest_first, addr))
}

/// Parses one option's argument.
pub fn parse(spec: &str, cx: &SpecContext) -> Result<ForwardSpec, FwdError> {
    let invalid = |reason| FwdError::Invalid {
        spec: spec.to_string(),
        reason,
    };
    if spec.is_empty() {
        return Err(invalid(SpecError::Empty));
    }
    if let Some((_, mode)) = keyword(spec) {
        return match mode {
            ForwardMode::Auto if cx.program == Program::Passt => Err(FwdError::AutoOnlyForPasta),
            ForwardMode::All => Ok(all_spec(cx, (None, None), None)),
            _ => Ok(ForwardSpec {
                mode,
                rules: Vec::new(),
            }),
        };
    }

    // Host prefix: before the first '/', which must precede every item
    // (unless that '/' belongs to an item's target address).
    let (prefix, list) = match spec.split_once('/') {
        Some((p, l)) if !is_item_with_target(p) => (Some(p), l),
        _ => (None, spec),
    };
    let (addr, ifname) = match prefix {
        None => (None, None),
        Some(p) => {
            let (addr, ifname) = parse_host_prefix(p).map_err(|e| match e {
                SpecError::MissingAddress(_) if p.contains('%') => {
                    invalid(SpecError::MissingAddress('%'))
                }
                e => invalid(e),
            })?;
            if list.is_empty() {
                return Err(invalid(SpecError::MissingPort(spec.to_string())));
            }
            (addr, ifname)
        }
    };

    // `ADDR/all`, `all:TARGET`, `ADDR/all:TARGET`.
    let (head, tail) = match list.split_once(':') {
        Some((h, t)) => (h, Some(t)),
        None => (list, None),
    };
    match keyword(head) {
        Some(("all", _)) => {
            let target = match tail {
                None => None,
                Some(t) => Some(parse_target_addr(t).map_err(invalid)?),
            };
            same_family(addr, target).map_err(invalid)?;
            return Ok(all_spec(cx, (addr, ifname), target));
        }
        Some((kw, _)) if prefix.is_some() && tail.is_none() => {
            return Err(invalid(SpecError::KeywordWithAddress(kw)));
        }
        _ => {}
    }

    let mut forwards: Vec<ForwardRule> = Vec::new();
    let mut excluded: Vec<PortRange> = Vec::new();
    for item in list.split(',') {
        if item.is_empty() {
            return Err(invalid(SpecError::EmptyItem));
        }
        if let Some((kw, _)) = keyword(item) {
            return Err(invalid(SpecError::KeywordInList(kw)));
        }
        if let Some(ex) = item.strip_prefix('~') {
            if ex.contains(':') {
                return Err(invalid(SpecError::ExcludedWithTarget(item.to_string())));
            }
            if ex.contains('/') {
                let e = if prefix.is_some() {
                    SpecError::ExtraSlash
                } else {
                    SpecError::AddressNotFirst
                };
                return Err(invalid(e));
            }
            let r = parse_range(ex, item).map_err(invalid)?;
            if let Some(port) = excluded.iter().find_map(|e| e.first_common(&r)) {
                return Err(FwdError::OverlappingExclusion {
                    spec: spec.to_string(),
                    port,
                });
            }
            excluded.push(r);
            continue;
        }
        let (h, g) = match item.split_once(':') {
            Some((h, g)) => (h, Some(g)),
            None => (item, None),
        };
        if h.contains('/') {
            let e = if prefix.is_some() {
                SpecError::ExtraSlash
            } else {
                SpecError::AddressNotFirst
            };
            return Err(invalid(e));
        }
        let host = parse_range(h, item).map_err(invalid)?;
        let (guest_first, target) = match g {
            None => (host.first, None),
            Some(g) => parse_target(g, host, item).map_err(invalid)?,
        };
        same_family(addr, target).map_err(invalid)?;
        if let Some(port) = forwards.iter().find_map(|f| f.host.first_common(&host)) {
            return Err(FwdError::Overlapping {
                spec: spec.to_string(),
                port,
            });
        }
        forwards.push(ForwardRule {
            addr,
            ifname: ifname.clone(),
            host,
            guest_first,
            target,
        });
    }
    if forwards.is_empty() {
        // Only exclusions: everything non-ephemeral but those.
        forwards = all_spec(cx, (addr, ifname), None).rules;
    }
    for cut in &excluded {
        let mut next = Vec::with_capacity(forwards.len() + 1);
        for r in &forwards {
            subtract(r, *cut, &mut next);
        }
        forwards = next;
    }
    forwards.sort();
    Ok(ForwardSpec {
        mode: ForwardMode::Ports,
        rules: forwards,
    })
}

/// `all`: every non-ephemeral port, on the host prefix given, to `target`.
fn all_spec(cx: &SpecContext, (addr, ifname): HostPrefix, target: Option<IpAddr>) -> ForwardSpec {
    ForwardSpec {
        mode: ForwardMode::All,
        rules: non_ephemeral(cx.ephemeral)
            .into_iter()
            .map(|host| ForwardRule {
                addr,
                ifname: ifname.clone(),
                host,
                guest_first: host.first,
                target,
            })
            .collect(),
    }
}

/// Accumulates repeated options (`-t 22 -t 80`) into one [`ForwardSpec`].
#[derive(Clone, Debug)]
pub struct ForwardSpecBuilder {
    cx: SpecContext,
    spec: Option<ForwardSpec>,
}

impl ForwardSpecBuilder {
    /// Nothing given yet.
    pub fn new(cx: SpecContext) -> Self {
        ForwardSpecBuilder { cx, spec: None }
    }

    /// Adds one option's argument. `none` adds nothing (`-t none -t 22` is
    /// `-t 22`); `all` on different host prefixes accumulate; `all` or
    /// `auto` and port lists do not mix.
    pub fn add(&mut self, spec: &str) -> Result<(), FwdError> {
        let parsed = parse(spec, &self.cx)?;
        let Some(current) = &mut self.spec else {
            self.spec = Some(parsed);
            return Ok(());
        };
        match (current.mode, parsed.mode) {
            (_, ForwardMode::None) => Ok(()),
            (ForwardMode::None, _) => {
                *current = parsed;
                Ok(())
            }
            (ForwardMode::Auto, _) | (_, ForwardMode::Auto) => Err(FwdError::ModeConflict("auto")),
            (ForwardMode::Ports, ForwardMode::All) => Err(FwdError::ModeConflict("all")),
            (ForwardMode::All, ForwardMode::Ports) => Err(FwdError::PortsAfterMode),
            (ForwardMode::Ports, ForwardMode::Ports) | (ForwardMode::All, ForwardMode::All) => {
                for new in &parsed.rules {
                    let clash = current
                        .rules
                        .iter()
                        .filter(|old| old.addr == new.addr && old.ifname == new.ifname)
                        .find_map(|old| old.host.first_common(&new.host));
                    if let Some(port) = clash {
                        return Err(FwdError::Overlapping {
                            spec: spec.to_string(),
                            port,
                        });
                    }
                }
                current.rules.extend(parsed.rules);
                current.rules.sort();
                Ok(())
            }
        }
    }

    /// Whether any option was given.
    pub fn is_given(&self) -> bool {
        self.spec.is_some()
    }

    /// The result: what was given, or the program's default.
    pub fn finish(self) -> ForwardSpec {
        self.spec.unwrap_or_else(|| default_spec(self.cx.program))
    }
}

/// The default when no option is given: passt `none`, pasta `auto`.
pub fn default_spec(program: Program) -> ForwardSpec {
    ForwardSpec {
        mode: match program {
            Program::Passt => ForwardMode::None,
            Program::Pasta => ForwardMode::Auto,
        },
        rules: Vec::new(),
    }
}

/// The UDP forwards implied by the TCP ones when no `-u` is given: the same
/// host ports, without port translation (passt(1), `-u`).
pub fn udp_from_tcp(tcp: &ForwardSpec) -> ForwardSpec {
    ForwardSpec {
        mode: tcp.mode,
        rules: tcp
            .rules
            .iter()
            .map(|r| ForwardRule {
                guest_first: r.host.first,
                ..r.clone()
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtract_keeps_guest_offsets() {
        let r = ForwardRule {
            addr: None,
            ifname: None,
            host: PortRange::new(22, 80),
            guest_first: 32,
            target: None,
        };
        let mut out = Vec::new();
        subtract(&r, PortRange::new(30, 40), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].guest(), PortRange::new(32, 39));
        assert_eq!(out[1].host, PortRange::new(41, 80));
        assert_eq!(out[1].guest_port(41), Some(51));
        assert_eq!(out[1].guest(), PortRange::new(51, 90));
    }

    #[test]
    fn port_numbers() {
        assert_eq!(parse_port("022", "022"), Ok(22));
        assert_eq!(parse_port("65535", "x"), Ok(65535));
        assert_eq!(parse_port("000000065535", "x"), Ok(65535));
        assert!(matches!(
            parse_port("65536", "x"),
            Err(SpecError::PortOutOfRange(_))
        ));
        assert!(matches!(
            parse_port("99999999999999999999", "x"),
            Err(SpecError::PortOutOfRange(_))
        ));
        assert_eq!(parse_port("00", "x"), Err(SpecError::PortZero));
    }
}
