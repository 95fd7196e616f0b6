//! Port-forwarding specifications: the `-t`/`-u` (and pasta's `-T`/`-U`)
//! grammar of upstream passt/pasta, as documented in passt(1).
//!
//! ```text
//! spec   = "none" | "all" | "auto"                 (auto: pasta only)
//!        | [addr ["%" ifname] "/"] item ("," item)*
//! item   = range [":" range]                        (host ports : guest ports)
//!        | "~" range                                (excluded host ports)
//! range  = port ["-" port]                          (1 <= port <= 65535)
//! ```
//!
//! Semantics (passt(1) and observed behaviour of upstream's binary):
//! - `none` forwards nothing; `all` forwards every non-ephemeral port
//!   (outside `net.ipv4.ip_local_port_range`); `auto` (pasta) follows the
//!   ports bound in the namespace.
//! - A target range must have as many ports as the host range.
//! - Excluded ranges are cut out of the ranges of the same option; an
//!   option made only of exclusions forwards every non-ephemeral port but
//!   those.
//! - The address (and interface) prefix is given once, before the first
//!   item, and applies to every item of the option.
//! - Options accumulate (`-t 22 -t 80`); a port may not be forwarded twice
//!   for the same bind address, and `none`/`all`/`auto` cannot be mixed with
//!   anything else.
//! - UDP forwards follow the TCP ones when no `-u` is given, without port
//!   translation ([`udp_from_tcp`]). Defaults: passt `none`, pasta `auto`.
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
    /// `1.2.3.4/all`.
    #[error("'{0}' cannot follow an address")]
    KeywordWithAddress(&'static str),
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
    #[error("Specific ports cannot be specified together with all/none/auto")]
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

/// Linux `dev_valid_name`: 1 to IFNAMSIZ-1 bytes, not `.`/`..`, no `/`,
/// `:` or whitespace.
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
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
            ForwardMode::All => Ok(ForwardSpec {
                mode,
                rules: non_ephemeral(cx.ephemeral)
                    .into_iter()
                    .map(|host| ForwardRule {
                        addr: None,
                        ifname: None,
                        host,
                        guest_first: host.first,
                    })
                    .collect(),
            }),
            _ => Ok(ForwardSpec {
                mode,
                rules: Vec::new(),
            }),
        };
    }

    // Address prefix: before the first '/', which must precede every item.
    let (prefix, list) = match spec.split_once('/') {
        Some((p, l)) => (Some(p), l),
        None => (None, spec),
    };
    let (addr, ifname) = match prefix {
        None => (None, None),
        Some(p) => {
            if p.contains(',') {
                return Err(invalid(SpecError::AddressNotFirst));
            }
            if list.contains('/') {
                return Err(invalid(SpecError::ExtraSlash));
            }
            let (a, ifname) = match p.split_once('%') {
                Some((a, i)) => (a, Some(i)),
                None => (p, None),
            };
            if a.is_empty() {
                let at = if ifname.is_some() { '%' } else { '/' };
                return Err(invalid(SpecError::MissingAddress(at)));
            }
            let addr: IpAddr = a
                .parse()
                .map_err(|_| invalid(SpecError::BadAddress(a.to_string())))?;
            let ifname = match ifname {
                None => None,
                Some("") => return Err(invalid(SpecError::EmptyInterface)),
                Some(i) if !valid_ifname(i) => {
                    return Err(invalid(SpecError::BadInterface(i.to_string())));
                }
                Some(i) => Some(i.to_string()),
            };
            if let Some((kw, _)) = keyword(list) {
                return Err(invalid(SpecError::KeywordWithAddress(kw)));
            }
            if list.is_empty() {
                return Err(invalid(SpecError::MissingPort(spec.to_string())));
            }
            (Some(addr), ifname)
        }
    };

    let mut forwards: Vec<ForwardRule> = Vec::new();
    let mut excluded: Vec<PortRange> = Vec::new();
    for item in list.split(',') {
        if item.is_empty() {
            return Err(invalid(SpecError::EmptyItem));
        }
        if let Some((kw, _)) = keyword(item) {
            return Err(invalid(SpecError::KeywordInList(kw)));
        }
        if item.contains('/') {
            return Err(invalid(SpecError::AddressNotFirst));
        }
        if let Some(ex) = item.strip_prefix('~') {
            if ex.contains(':') {
                return Err(invalid(SpecError::ExcludedWithTarget(item.to_string())));
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
        let host = parse_range(h, item).map_err(invalid)?;
        let guest_first = match g {
            None => host.first,
            Some(g) => {
                let guest = parse_range(g, item).map_err(invalid)?;
                if guest.len() != host.len() {
                    return Err(invalid(SpecError::TargetLengthMismatch { host, guest }));
                }
                guest.first
            }
        };
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
        });
    }
    if forwards.is_empty() {
        // Only exclusions: everything non-ephemeral but those.
        forwards = non_ephemeral(cx.ephemeral)
            .into_iter()
            .map(|host| ForwardRule {
                addr,
                ifname: ifname.clone(),
                host,
                guest_first: host.first,
            })
            .collect();
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

    /// Adds one option's argument.
    pub fn add(&mut self, spec: &str) -> Result<(), FwdError> {
        let parsed = parse(spec, &self.cx)?;
        let Some(current) = &mut self.spec else {
            self.spec = Some(parsed);
            return Ok(());
        };
        match (current.mode, parsed.mode) {
            (_, ForwardMode::None) => Err(FwdError::ModeConflict("none")),
            (_, ForwardMode::All) => Err(FwdError::ModeConflict("all")),
            (_, ForwardMode::Auto) => Err(FwdError::ModeConflict("auto")),
            (ForwardMode::None | ForwardMode::All | ForwardMode::Auto, ForwardMode::Ports) => {
                Err(FwdError::PortsAfterMode)
            }
            (ForwardMode::Ports, ForwardMode::Ports) => {
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
