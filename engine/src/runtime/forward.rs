//! The forwarded ports (`-t`/`-u`, pasta's `-T`/`-U`): a live table of
//! rules whose listeners are opened and closed while the engine runs, with
//! upstream's policy and messages.
//!
//! It owns the configured rules per option ([`ForwardTable`]), the ports
//! `auto` found on the other side, and the listeners bound for them. Every
//! change (start-up, a `pesto` request, an `auto` rescan) goes through one
//! diff ([`ForwardTable::apply`]): the sockets wanted are computed from the
//! rules, the missing ones opened, the unwanted ones closed. The sockets
//! themselves are the engine's ([`Listeners`], implemented by [`Engine`]);
//! this module never creates one directly and never reads a file.
//!
//! Policy (passt(1), `-t`/`-u`, and observed behaviour of upstream's
//! binaries):
//! - A rule without an address is bound on `0.0.0.0` when IPv4 is enabled
//!   and on `::` (IPv6 only) when IPv6 is enabled; a rule with an address is
//!   bound on that address only; `ADDR%IF` also binds to the interface
//!   (`SO_BINDTODEVICE`).
//! - An explicit list (mode `Ports`): any bind failure stops the change
//!   with `Failed to bind port N (REASON) for option '-t SPEC'` (newer
//!   upstream's wording); at start-up that is exit status 1, for a `pesto`
//!   request the table is left as it was. The one tolerated failure is
//!   `::` when the host has no IPv6 at all.
//! - `all` and `auto`: failures are skipped (ports in use, low ports
//!   without the privilege), counted in the report.
//! - Out of descriptors, in any mode: `Can't open enough sockets for port
//!   specifier: SPEC` (upstream's wording).
//! - A removed rule closes its listening sockets only: connections and
//!   flows it accepted go on until they end (see `docs/decisions.md`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use std::collections::{BTreeMap, BTreeSet};

use crate::cli::{Forwarding, forward_origin};
use crate::engine::{Engine, ListenTarget, ListenerId};
use crate::fwd::{self, ForwardMode, ForwardRule, ForwardSpec, FwdError, PortRange, SpecContext};
use crate::host_io::{HostError, HostIo, IfName, Netns, Place};

/// Transport protocol of a forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
        /// `t`, `u`, `T` or `U`.
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
    /// `ADDR%IFNAME/PORT` with a name no interface can have.
    #[error("Invalid interface name {ifname}, for option '-{option} {spec}'")]
    Interface {
        /// The interface asked for.
        ifname: String,
        /// `t`, `u`, `T` or `U`.
        option: char,
        /// The option's argument.
        spec: String,
    },
    /// `-T`/`-U` with explicit ports where the engine cannot carry
    /// connections from the namespace to the host (splicing off: passt, or
    /// pasta's `--no-splice`).
    #[error(
        "Forwarding from the namespace needs pasta's loopback splicing, for option '-{option} {spec}'"
    )]
    Outbound {
        /// `T` or `U`.
        option: char,
        /// The option's argument.
        spec: String,
    },
    /// A specifier the grammar refuses (from `pesto`).
    #[error("{0}")]
    Spec(#[from] FwdError),
    /// `pesto -D` of a rule that is not in the table.
    #[error("No forwarding rule matches '-{option} {spec}'")]
    NoSuchRule {
        /// `t`, `u`, `T` or `U`.
        option: char,
        /// The specifier.
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

/// What [`ForwardTable::apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardReport {
    /// Bound sockets, as runs of ports, in binding order.
    pub bound: Vec<BoundRun>,
    /// Sockets bound in total.
    pub sockets: usize,
    /// Ports skipped with `all` or `auto` (in use, or not permitted), per
    /// protocol: `(tcp, udp)`.
    pub skipped: (usize, usize),
    /// Listeners closed (rules removed).
    pub closed: usize,
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

/// Which way a forward goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// `-t`/`-u`: listen on the host, deliver to the guest.
    Inbound,
    /// `-T`/`-U` (pasta): listen in the namespace, deliver to the host.
    Outbound,
}

/// One forwarding option: a protocol and a direction (`-t`, `-u`, `-T`,
/// `-U`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Chan {
    /// TCP or UDP.
    pub proto: Proto,
    /// Host to guest, or namespace to host.
    pub dir: Direction,
}

impl Chan {
    /// `-t`.
    pub const TCP_IN: Chan = Chan {
        proto: Proto::Tcp,
        dir: Direction::Inbound,
    };
    /// `-u`.
    pub const UDP_IN: Chan = Chan {
        proto: Proto::Udp,
        dir: Direction::Inbound,
    };
    /// `-T`.
    pub const TCP_OUT: Chan = Chan {
        proto: Proto::Tcp,
        dir: Direction::Outbound,
    };
    /// `-U`.
    pub const UDP_OUT: Chan = Chan {
        proto: Proto::Udp,
        dir: Direction::Outbound,
    };

    /// The option letter.
    pub fn option(self) -> char {
        match (self.proto, self.dir) {
            (Proto::Tcp, Direction::Inbound) => 't',
            (Proto::Udp, Direction::Inbound) => 'u',
            (Proto::Tcp, Direction::Outbound) => 'T',
            (Proto::Udp, Direction::Outbound) => 'U',
        }
    }

    /// The option of letter `c`.
    pub fn from_option(c: char) -> Option<Chan> {
        match c {
            't' => Some(Chan::TCP_IN),
            'u' => Some(Chan::UDP_IN),
            'T' => Some(Chan::TCP_OUT),
            'U' => Some(Chan::UDP_OUT),
            _ => None,
        }
    }

    /// Where its listeners are made: the host for `-t`/`-u`, the
    /// namespace for `-T`/`-U`.
    pub fn netns(self) -> Netns {
        match self.dir {
            Direction::Inbound => Netns::Host,
            Direction::Outbound => Netns::Guest,
        }
    }
}

/// The side a table of rules belongs to, by where its traffic comes from
/// (upstream's "pif" names, as `pesto -C` takes them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pif {
    /// `-t`/`-u`: connections arriving on the host.
    Host,
    /// `-T`/`-U`: connections arriving in pasta's namespace.
    Splice,
}

impl Pif {
    /// The options whose rules it holds.
    pub fn chans(self) -> [Chan; 2] {
        match self {
            Pif::Host => [Chan::TCP_IN, Chan::UDP_IN],
            Pif::Splice => [Chan::TCP_OUT, Chan::UDP_OUT],
        }
    }

    /// `host` or `splice` (case-insensitive).
    pub fn parse(s: &str) -> Option<Pif> {
        match s.to_ascii_lowercase().as_str() {
            "host" => Some(Pif::Host),
            "splice" => Some(Pif::Splice),
            _ => None,
        }
    }

    /// The pif of an option.
    pub fn of(chan: Chan) -> Pif {
        match chan.dir {
            Direction::Inbound => Pif::Host,
            Direction::Outbound => Pif::Splice,
        }
    }
}

/// Rules given together: the arguments of one option on the command line,
/// or one specifier of a `pesto` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The option errors name.
    pub option: char,
    /// The arguments, as given (quoted in errors).
    pub specs: Vec<String>,
    /// What they resolve to; deletions cut rules out of it.
    pub spec: ForwardSpec,
}

impl Entry {
    /// The argument that asked for `port` on `addr`, as errors quote it.
    fn origin(&self, addr: Option<IpAddr>, port: u16, cx: SpecContext) -> String {
        forward_origin(&self.specs, addr, port, cx)
            .or(self.specs.first().map(String::as_str))
            .unwrap_or("")
            .to_string()
    }
}

/// A change to the rules (a `pesto` request is a list of them, applied
/// together or not at all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Add the rules of a specifier to an option.
    Add(Chan, String),
    /// Remove the host ports of a specifier (on its address) from an
    /// option; `auto` switches the scan off.
    Delete(Chan, String),
    /// Remove every rule of a pif's options.
    Clear(Pif),
}

/// What opens and closes listening sockets for the table: the engine, or a
/// test double.
pub trait Listeners {
    /// Opens a listener of `proto` on `addr` at `place` whose traffic goes
    /// to `target` on the other side.
    fn open_listener(
        &mut self,
        proto: Proto,
        place: Place,
        addr: SocketAddr,
        target: ListenTarget,
    ) -> Result<ListenerId, HostError>;
    /// Closes a listener; what it accepted already goes on.
    fn close_listener(&mut self, id: ListenerId);
    /// Sends what a listener takes from now on to `target`.
    fn retarget(&mut self, id: ListenerId, target: ListenTarget);
}

impl<H: HostIo> Listeners for Engine<H> {
    /// Listeners in the namespace (`-T`/`-U`) carry traffic to the host's
    /// loopback, spliced ([`Engine::tcp_listen_outbound`]): refused with
    /// [`HostError::Unsupported`] when splicing is off (passt,
    /// `--no-splice`), or when they name a device or a target address.
    fn open_listener(
        &mut self,
        proto: Proto,
        place: Place,
        addr: SocketAddr,
        target: ListenTarget,
    ) -> Result<ListenerId, HostError> {
        if place.netns == Netns::Guest {
            if place.device.is_some() || target.addr.is_some() {
                return Err(HostError::Unsupported);
            }
            return match proto {
                Proto::Tcp => self
                    .tcp_listen_outbound(addr, target.port)
                    .map(ListenerId::Tcp),
                Proto::Udp => self
                    .udp_listen_outbound(addr, target.port)
                    .map(ListenerId::Udp),
            };
        }
        match proto {
            Proto::Tcp => self.tcp_listen_at(place, addr, target).map(ListenerId::Tcp),
            Proto::Udp => self.udp_listen_at(place, addr, target).map(ListenerId::Udp),
        }
    }

    fn close_listener(&mut self, id: ListenerId) {
        self.unlisten(id);
    }

    fn retarget(&mut self, id: ListenerId, target: ListenTarget) {
        self.retarget_listener(id, target);
    }
}

/// One socket of the table: an option, an address (and device), a port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct SockKey {
    chan: Chan,
    addr: IpAddr,
    ifname: Option<String>,
    port: u16,
}

/// Why a socket is wanted.
#[derive(Clone, Copy, Debug)]
enum Why {
    /// Rule of entry `entry` (its address as given: `None` for every
    /// address).
    Rule { entry: usize, addr: Option<IpAddr> },
    /// A port `auto` found on the other side.
    Auto,
}

#[derive(Clone, Copy, Debug)]
struct Want {
    target: ListenTarget,
    /// `all` and `auto`: a failure is skipped.
    tolerant: bool,
    why: Why,
}

#[derive(Clone, Copy, Debug)]
struct Bound {
    id: ListenerId,
    target: ListenTarget,
}

/// The live forwarding table: the rules per option, the ports `auto`
/// found, and the listeners bound for them.
#[derive(Clone, Debug)]
pub struct ForwardTable {
    cx: SpecContext,
    /// IPv4 and IPv6 enabled.
    families: (bool, bool),
    /// TCP and UDP enabled.
    services: (bool, bool),
    channels: BTreeMap<Chan, Vec<Entry>>,
    auto_ports: BTreeMap<Chan, BTreeSet<u16>>,
    bound: BTreeMap<SockKey, Bound>,
}

impl ForwardTable {
    /// An empty table; `families` are the enabled IP versions (IPv4,
    /// IPv6), `services` the enabled protocols (TCP, UDP); `cx` parses the
    /// specifiers of later requests.
    pub fn new(cx: SpecContext, families: (bool, bool), services: (bool, bool)) -> Self {
        ForwardTable {
            cx,
            families,
            services,
            channels: BTreeMap::new(),
            auto_ports: BTreeMap::new(),
            bound: BTreeMap::new(),
        }
    }

    /// A table for an engine's configuration.
    pub fn for_engine<H: HostIo>(engine: &Engine<H>, cx: SpecContext) -> Self {
        let c = engine.config();
        ForwardTable::new(
            cx,
            (c.ipv4.is_some(), c.ipv6.is_some()),
            (c.services.tcp, c.services.udp),
        )
    }

    /// The rules of the command line's `-t`/`-u` (`tcp_specs`/`udp_specs`
    /// are the raw arguments, quoted in errors), to be bound by
    /// [`ForwardTable::apply`].
    pub fn rules_from_options(
        &self,
        forwarding: &Forwarding,
        tcp_specs: &[String],
        udp_specs: &[String],
    ) -> BTreeMap<Chan, Vec<Entry>> {
        let mut channels = self.channels.clone();
        if self.services.0 {
            channels.insert(
                Chan::TCP_IN,
                vec![Entry {
                    option: 't',
                    specs: tcp_specs.to_vec(),
                    spec: forwarding.tcp.clone(),
                }],
            );
        }
        if self.services.1 {
            channels.insert(
                Chan::UDP_IN,
                vec![Entry {
                    option: 'u',
                    specs: udp_specs.to_vec(),
                    spec: forwarding.udp.clone(),
                }],
            );
        }
        channels
    }

    /// pasta's `-T`/`-U` (`forwarding` as parsed from them, the raw
    /// arguments quoted in errors), added to `channels`.
    pub fn namespace_rules(
        &self,
        channels: &mut BTreeMap<Chan, Vec<Entry>>,
        forwarding: &Forwarding,
        tcp_specs: &[String],
        udp_specs: &[String],
    ) {
        if self.services.0 {
            ForwardTable::set_option(channels, Chan::TCP_OUT, tcp_specs, forwarding.tcp.clone());
        }
        if self.services.1 {
            ForwardTable::set_option(channels, Chan::UDP_OUT, udp_specs, forwarding.udp.clone());
        }
    }

    /// The rules of one option given on the command line (pasta's
    /// `-T`/`-U`), replacing that option's rules in `channels`.
    pub fn set_option(
        channels: &mut BTreeMap<Chan, Vec<Entry>>,
        chan: Chan,
        specs: &[String],
        spec: ForwardSpec,
    ) {
        channels.insert(
            chan,
            vec![Entry {
                option: chan.option(),
                specs: specs.to_vec(),
                spec,
            }],
        );
    }

    /// The rules in force.
    pub fn rules(&self) -> &BTreeMap<Chan, Vec<Entry>> {
        &self.channels
    }

    /// The rules `ops` would leave, or why they are refused (nothing is
    /// bound or closed here: [`ForwardTable::apply`] does that).
    pub fn edit(&self, ops: &[Op]) -> Result<BTreeMap<Chan, Vec<Entry>>, ForwardError> {
        let mut channels = self.channels.clone();
        for op in ops {
            match op {
                Op::Clear(pif) => {
                    for chan in pif.chans() {
                        channels.remove(&chan);
                    }
                }
                Op::Add(chan, spec) => self.add(&mut channels, *chan, spec)?,
                Op::Delete(chan, spec) => self.delete(&mut channels, *chan, spec)?,
            }
        }
        Ok(channels)
    }

    fn add(
        &self,
        channels: &mut BTreeMap<Chan, Vec<Entry>>,
        chan: Chan,
        spec: &str,
    ) -> Result<(), ForwardError> {
        let parsed = fwd::parse(spec, &self.cx)?;
        let entries = channels.entry(chan).or_default();
        match parsed.mode {
            ForwardMode::None => return Ok(()),
            ForwardMode::Auto if entries.iter().any(|e| e.spec.mode == ForwardMode::Auto) => {
                return Ok(());
            }
            _ => {}
        }
        for new in &parsed.rules {
            let clash = entries
                .iter()
                .flat_map(|e| e.spec.rules.iter())
                .filter(|old| old.addr == new.addr && old.ifname == new.ifname)
                .find_map(|old| old.host.first_common(&new.host));
            if let Some(port) = clash {
                return Err(FwdError::Overlapping {
                    spec: spec.to_string(),
                    port,
                }
                .into());
            }
        }
        entries.push(Entry {
            option: chan.option(),
            specs: vec![spec.to_string()],
            spec: parsed,
        });
        Ok(())
    }

    fn delete(
        &self,
        channels: &mut BTreeMap<Chan, Vec<Entry>>,
        chan: Chan,
        spec: &str,
    ) -> Result<(), ForwardError> {
        let parsed = fwd::parse(spec, &self.cx)?;
        let no_such = || ForwardError::NoSuchRule {
            option: chan.option(),
            spec: spec.to_string(),
        };
        let entries = channels.get_mut(&chan).ok_or_else(no_such)?;
        let mut removed = false;
        if parsed.mode == ForwardMode::Auto {
            let before = entries.len();
            entries.retain(|e| e.spec.mode != ForwardMode::Auto);
            removed = entries.len() != before;
        }
        for cut in &parsed.rules {
            for entry in entries.iter_mut() {
                let mut kept = Vec::with_capacity(entry.spec.rules.len());
                for rule in &entry.spec.rules {
                    if rule.addr == cut.addr
                        && rule.ifname == cut.ifname
                        && rule.host.first_common(&cut.host).is_some()
                    {
                        removed = true;
                        fwd::subtract(rule, cut.host, &mut kept);
                    } else {
                        kept.push(rule.clone());
                    }
                }
                entry.spec.rules = kept;
            }
        }
        if !removed {
            return Err(no_such());
        }
        entries.retain(|e| e.spec.mode == ForwardMode::Auto || !e.spec.rules.is_empty());
        Ok(())
    }

    /// The options whose rules include `auto`.
    pub fn auto_chans(&self) -> Vec<Chan> {
        self.channels
            .iter()
            .filter(|(_, es)| es.iter().any(|e| e.spec.mode == ForwardMode::Auto))
            .map(|(c, _)| *c)
            .collect()
    }

    /// Ports of `proto` this table has bound in namespace `netns`: an
    /// `auto` scan of that side leaves them out (our own listeners would
    /// otherwise be forwarded back, in a loop).
    pub fn own_ports(&self, proto: Proto, netns: Netns) -> BTreeSet<u16> {
        self.bound
            .keys()
            .filter(|k| k.chan.proto == proto && k.chan.netns() == netns)
            .map(|k| k.port)
            .collect()
    }

    /// Records the ports an `auto` scan found for `chan`; returns whether
    /// they changed (the caller then calls [`ForwardTable::resync`]).
    pub fn set_auto_ports(&mut self, chan: Chan, ports: BTreeSet<u16>) -> bool {
        let old = self.auto_ports.insert(chan, ports.clone());
        old.as_ref() != Some(&ports)
    }

    /// Whether a listener is bound for `chan` on `addr`, port `port`.
    pub fn is_bound(&self, chan: Chan, addr: IpAddr, port: u16) -> bool {
        self.bound
            .range(
                SockKey {
                    chan,
                    addr,
                    ifname: None,
                    port,
                }..,
            )
            .take_while(|(k, _)| k.chan == chan && k.addr == addr)
            .any(|(k, _)| k.port == port)
    }

    /// Listening sockets bound.
    pub fn bound_count(&self) -> usize {
        self.bound.len()
    }

    /// The rules as `pesto` shows them: one specifier per line, each
    /// usable with `pesto -D`.
    pub fn show(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (chan, entries) in &self.channels {
            let o = chan.option();
            for e in entries {
                match e.spec.mode {
                    ForwardMode::Auto => out.push(format!("-{o} auto")),
                    ForwardMode::None => {}
                    _ => out.extend(e.spec.rules.iter().map(|r| format!("-{o} {}", render(r)))),
                }
            }
        }
        out.push(format!("# {} listening socket(s)", self.bound.len()));
        out
    }

    /// Binds and closes listeners so that exactly the sockets `channels`
    /// (and the `auto` ports found) ask for are open, then makes
    /// `channels` the rules in force. On a failure the policy of the
    /// module docs does not skip, the sockets this call opened are closed
    /// again and the table stays as it was.
    pub fn apply<L: Listeners>(
        &mut self,
        l: &mut L,
        channels: BTreeMap<Chan, Vec<Entry>>,
    ) -> Result<ForwardReport, ForwardError> {
        let wanted = self.wanted(&channels);
        let mut report = ForwardReport::default();
        let mut opened: Vec<SockKey> = Vec::new();
        let mut failure = None;
        for (key, want) in &wanted {
            if self.bound.contains_key(key) {
                continue;
            }
            let origin = || match want.why {
                Why::Rule { entry, addr } => {
                    let e = &channels[&key.chan][entry];
                    (e.option, e.origin(addr, key.port, self.cx))
                }
                Why::Auto => (key.chan.option(), "auto".to_string()),
            };
            let device = match &key.ifname {
                None => None,
                Some(name) => match IfName::new(name) {
                    Some(d) => Some(d),
                    None => {
                        let (option, spec) = origin();
                        failure = Some(ForwardError::Interface {
                            ifname: name.clone(),
                            option,
                            spec,
                        });
                        break;
                    }
                },
            };
            let enabled = match key.addr {
                IpAddr::V4(_) => self.families.0,
                IpAddr::V6(_) => self.families.1,
            };
            let result = if enabled {
                let place = Place {
                    netns: key.chan.netns(),
                    device,
                };
                let sa = SocketAddr::new(key.addr, key.port);
                l.open_listener(key.chan.proto, place, sa, want.target)
            } else {
                Err(HostError::Unsupported)
            };
            let wildcard = matches!(want.why, Why::Rule { addr: None, .. } | Why::Auto);
            match result {
                Ok(id) => {
                    self.bound.insert(
                        key.clone(),
                        Bound {
                            id,
                            target: want.target,
                        },
                    );
                    opened.push(key.clone());
                    report.push(key.chan.proto, key.addr, key.port, want.target.port);
                }
                Err(HostError::NoResources) => {
                    failure = Some(ForwardError::NoResources { spec: origin().1 });
                    break;
                }
                Err(_) if want.tolerant => match key.chan.proto {
                    Proto::Tcp => report.skipped.0 += 1,
                    Proto::Udp => report.skipped.1 += 1,
                },
                // A host without IPv6 sockets at all: the wildcard's
                // IPv6 half is left out, as upstream does.
                Err(HostError::Unsupported) if wildcard && key.addr.is_ipv6() => {}
                Err(HostError::Unsupported) if key.chan.dir == Direction::Outbound => {
                    let (option, spec) = origin();
                    failure = Some(ForwardError::Outbound { option, spec });
                    break;
                }
                Err(e) => {
                    let (option, spec) = origin();
                    failure = Some(ForwardError::Bind {
                        port: key.port,
                        reason: strerror(&e),
                        option,
                        spec,
                    });
                    break;
                }
            }
        }
        if let Some(f) = failure {
            for key in opened {
                if let Some(b) = self.bound.remove(&key) {
                    l.close_listener(b.id);
                }
            }
            return Err(f);
        }
        for (key, want) in &wanted {
            if let Some(b) = self.bound.get_mut(key)
                && b.target != want.target
            {
                l.retarget(b.id, want.target);
                b.target = want.target;
            }
        }
        let gone: Vec<SockKey> = self
            .bound
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(b) = self.bound.remove(&key) {
                l.close_listener(b.id);
                report.closed += 1;
            }
        }
        self.channels = channels;
        Ok(report)
    }

    /// [`ForwardTable::apply`] with the rules in force (after the `auto`
    /// ports changed).
    pub fn resync<L: Listeners>(&mut self, l: &mut L) -> Result<ForwardReport, ForwardError> {
        let channels = self.channels.clone();
        self.apply(l, channels)
    }

    /// Closes every listener (the table keeps its rules).
    pub fn close_all<L: Listeners>(&mut self, l: &mut L) {
        for (_, b) in std::mem::take(&mut self.bound) {
            l.close_listener(b.id);
        }
    }

    /// The sockets `channels` and the `auto` ports ask for.
    fn wanted(&self, channels: &BTreeMap<Chan, Vec<Entry>>) -> BTreeMap<SockKey, Want> {
        let (ipv4, ipv6) = self.families;
        let mut w = BTreeMap::new();
        for (&chan, entries) in channels {
            let enabled = match chan.proto {
                Proto::Tcp => self.services.0,
                Proto::Udp => self.services.1,
            };
            if !enabled {
                continue;
            }
            if entries.iter().any(|e| e.spec.mode == ForwardMode::Auto) {
                let wild = ForwardRule {
                    addr: None,
                    ifname: None,
                    host: PortRange::single(1),
                    guest_first: 1,
                    target: None,
                };
                for &port in self.auto_ports.get(&chan).into_iter().flatten() {
                    for addr in rule_addrs(&wild, ipv4, ipv6) {
                        let key = SockKey {
                            chan,
                            addr,
                            ifname: None,
                            port,
                        };
                        let want = Want {
                            target: ListenTarget::port(port),
                            tolerant: true,
                            why: Why::Auto,
                        };
                        w.insert(key, want);
                    }
                }
            }
            for (entry, e) in entries.iter().enumerate() {
                let tolerant = e.spec.mode == ForwardMode::All;
                for rule in &e.spec.rules {
                    for addr in rule_addrs(rule, ipv4, ipv6) {
                        for port in rule.host.first..=rule.host.last {
                            let Some(guest) = rule.guest_port(port) else {
                                continue;
                            };
                            let target = ListenTarget {
                                port: guest,
                                addr: rule.target,
                            };
                            let key = SockKey {
                                chan,
                                addr,
                                ifname: rule.ifname.clone(),
                                port,
                            };
                            let why = Why::Rule {
                                entry,
                                addr: rule.addr,
                            };
                            w.insert(
                                key,
                                Want {
                                    target,
                                    tolerant,
                                    why,
                                },
                            );
                        }
                    }
                }
            }
        }
        w
    }
}

/// A rule as a specifier: `[ADDR[%IF]/]HOST[:[TADDR/]GUEST]` (an IPv6
/// target address in brackets).
pub fn render(r: &ForwardRule) -> String {
    let mut s = String::new();
    if let Some(a) = r.addr {
        s.push_str(&a.to_string());
    }
    if let Some(i) = &r.ifname {
        s.push('%');
        s.push_str(i);
    }
    if r.addr.is_some() || r.ifname.is_some() {
        s.push('/');
    }
    s.push_str(&r.host.to_string());
    match r.target {
        Some(IpAddr::V4(a)) => s.push_str(&format!(":{a}/{}", r.guest())),
        Some(IpAddr::V6(a)) => s.push_str(&format!(":[{a}]/{}", r.guest())),
        None if r.guest_first != r.host.first => {
            s.push(':');
            s.push_str(&r.guest().to_string());
        }
        None => {}
    }
    s
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

    use crate::fwd::Program;
    use crate::tcp::TcpListenerId;
    use crate::udp::UdpListenerId;

    /// Listeners that exist only as entries, with ports that refuse.
    #[derive(Default)]
    struct Fake {
        next: u32,
        open: BTreeMap<ListenerId, (Place, SocketAddr, u16)>,
        in_use: BTreeSet<u16>,
        no_guest_side: bool,
    }

    impl Listeners for Fake {
        fn open_listener(
            &mut self,
            proto: Proto,
            place: Place,
            addr: SocketAddr,
            target: ListenTarget,
        ) -> Result<ListenerId, HostError> {
            if self.no_guest_side && place.netns == Netns::Guest {
                return Err(HostError::Unsupported);
            }
            if self.in_use.contains(&addr.port())
                || self
                    .open
                    .values()
                    .any(|(p, a, _)| *p == place && *a == addr)
                    && proto == Proto::Tcp
            {
                return Err(HostError::AddrInUse);
            }
            self.next += 1;
            let id = match proto {
                Proto::Tcp => ListenerId::Tcp(TcpListenerId(self.next)),
                Proto::Udp => ListenerId::Udp(UdpListenerId(self.next)),
            };
            self.open.insert(id, (place, addr, target.port));
            Ok(id)
        }
        fn close_listener(&mut self, id: ListenerId) {
            assert!(self.open.remove(&id).is_some(), "closed twice: {id:?}");
        }
        fn retarget(&mut self, id: ListenerId, target: ListenTarget) {
            self.open.get_mut(&id).expect("retarget a live listener").2 = target.port;
        }
    }

    impl Fake {
        fn tcp_ports(&self) -> Vec<(SocketAddr, u16)> {
            self.open
                .iter()
                .filter(|(id, _)| matches!(id, ListenerId::Tcp(_)))
                .map(|(_, (_, a, t))| (*a, *t))
                .collect()
        }
    }

    fn pasta_table() -> ForwardTable {
        ForwardTable::new(
            SpecContext::new(Program::Pasta),
            (true, false),
            (true, true),
        )
    }

    fn run(t: &mut ForwardTable, l: &mut Fake, ops: &[Op]) -> Result<ForwardReport, ForwardError> {
        let rules = t.edit(ops)?;
        t.apply(l, rules)
    }

    fn add(c: Chan, s: &str) -> Op {
        Op::Add(c, s.to_string())
    }

    fn del(c: Chan, s: &str) -> Op {
        Op::Delete(c, s.to_string())
    }

    fn v4(port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
    }

    #[test]
    fn added_rules_open_listeners_and_deleted_ones_close_them() {
        let mut t = pasta_table();
        let mut l = Fake::default();
        let r = run(&mut t, &mut l, &[add(Chan::TCP_IN, "8080-8081:80-81")]).unwrap();
        assert_eq!(r.sockets, 2);
        assert_eq!(l.tcp_ports(), vec![(v4(8080), 80), (v4(8081), 81)]);
        assert_eq!(t.show()[0], "-t 8080-8081:80-81");
        let r = run(&mut t, &mut l, &[del(Chan::TCP_IN, "8080")]).unwrap();
        assert_eq!(r.closed, 1);
        assert_eq!(l.tcp_ports(), vec![(v4(8081), 81)]);
        assert_eq!(
            t.show()[0],
            "-t 8081:81",
            "the guest port follows its host port"
        );
        run(&mut t, &mut l, &[del(Chan::TCP_IN, "8081")]).unwrap();
        assert!(l.open.is_empty());
        assert!(t.rules()[&Chan::TCP_IN].is_empty());
    }

    #[test]
    fn a_failed_change_leaves_the_table_and_its_listeners_as_they_were() {
        let mut t = pasta_table();
        let mut l = Fake::default();
        run(&mut t, &mut l, &[add(Chan::TCP_IN, "22")]).unwrap();
        let before = (t.show(), l.open.clone());
        l.in_use.insert(8081);
        let e = run(
            &mut t,
            &mut l,
            &[del(Chan::TCP_IN, "22"), add(Chan::TCP_IN, "8080-8082")],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Failed to bind port 8081 (Address already in use) for option '-t 8080-8082'"
        );
        assert_eq!((t.show(), l.open.clone()), before);
    }

    #[test]
    fn bad_or_overlapping_specifiers_and_missing_rules_are_refused() {
        let mut t = pasta_table();
        let mut l = Fake::default();
        run(&mut t, &mut l, &[add(Chan::TCP_IN, "22")]).unwrap();
        let e = run(&mut t, &mut l, &[add(Chan::TCP_IN, "20-25")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Overlapping port specifier 20-25"),
            "{e}"
        );
        let e = run(&mut t, &mut l, &[add(Chan::TCP_IN, "0")]).unwrap_err();
        assert!(e.to_string().starts_with("Invalid port specifier 0"), "{e}");
        let e = run(&mut t, &mut l, &[del(Chan::UDP_IN, "22")]).unwrap_err();
        assert_eq!(e.to_string(), "No forwarding rule matches '-u 22'");
        let e = run(&mut t, &mut l, &[del(Chan::TCP_IN, "127.0.0.1/22")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "No forwarding rule matches '-t 127.0.0.1/22'"
        );
        assert_eq!(l.open.len(), 1);
    }

    #[test]
    fn replacing_a_pif_retargets_a_port_kept_without_rebinding_it() {
        let mut t = pasta_table();
        let mut l = Fake::default();
        run(
            &mut t,
            &mut l,
            &[add(Chan::TCP_IN, "80"), add(Chan::UDP_IN, "53")],
        )
        .unwrap();
        let id = *l.open.keys().next().unwrap();
        let r = run(
            &mut t,
            &mut l,
            &[Op::Clear(Pif::Host), add(Chan::TCP_IN, "80:8080")],
        )
        .unwrap();
        assert_eq!(r.closed, 1, "the UDP rule went");
        assert_eq!(r.sockets, 0, "port 80 was kept, not bound again");
        assert_eq!(l.open[&id].2, 8080);
    }

    #[test]
    fn auto_follows_the_ports_found_and_skips_the_ones_it_cannot_bind() {
        let mut t = pasta_table();
        let mut l = Fake::default();
        run(&mut t, &mut l, &[add(Chan::TCP_IN, "auto")]).unwrap();
        assert_eq!(t.auto_chans(), vec![Chan::TCP_IN]);
        l.in_use.insert(5000);
        assert!(t.set_auto_ports(Chan::TCP_IN, BTreeSet::from([5000, 8080])));
        let r = t.resync(&mut l).unwrap();
        assert_eq!((r.sockets, r.skipped), (1, (1, 0)));
        assert!(t.is_bound(Chan::TCP_IN, IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080));
        assert_eq!(t.own_ports(Proto::Tcp, Netns::Host), BTreeSet::from([8080]));
        assert!(t.own_ports(Proto::Tcp, Netns::Guest).is_empty());
        assert!(!t.set_auto_ports(Chan::TCP_IN, BTreeSet::from([5000, 8080])));
        assert!(t.set_auto_ports(Chan::TCP_IN, BTreeSet::new()));
        let r = t.resync(&mut l).unwrap();
        assert_eq!(r.closed, 1);
        assert!(l.open.is_empty());
        assert_eq!(t.show()[0], "-t auto");
        run(&mut t, &mut l, &[del(Chan::TCP_IN, "auto")]).unwrap();
        assert!(t.auto_chans().is_empty());
    }

    #[test]
    fn namespace_side_rules_need_a_way_to_the_host() {
        let mut t = pasta_table();
        let mut l = Fake {
            no_guest_side: true,
            ..Fake::default()
        };
        let e = run(&mut t, &mut l, &[add(Chan::TCP_OUT, "8080")]).unwrap_err();
        assert!(
            matches!(e, ForwardError::Outbound { option: 'T', .. }),
            "{e}"
        );
        run(&mut t, &mut l, &[add(Chan::TCP_OUT, "auto")]).unwrap();
        t.set_auto_ports(Chan::TCP_OUT, BTreeSet::from([631]));
        let r = t.resync(&mut l).unwrap();
        assert_eq!(r.skipped, (1, 0), "auto skips what it cannot bind");
        let mut ok = Fake::default();
        let mut t = pasta_table();
        run(&mut t, &mut ok, &[add(Chan::TCP_OUT, "8080")]).unwrap();
        let (place, _, _) = ok.open.values().next().unwrap();
        assert_eq!(place.netns, Netns::Guest);
    }

    #[test]
    fn passt_refuses_auto_and_an_interface_binds_to_its_device() {
        let mut t = ForwardTable::new(SpecContext::new(Program::Passt), (true, true), (true, true));
        let mut l = Fake::default();
        let e = run(&mut t, &mut l, &[add(Chan::TCP_IN, "auto")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "'auto' port forwarding is only allowed for pasta"
        );
        run(&mut t, &mut l, &[add(Chan::TCP_IN, "127.0.0.1%lo/2222:22")]).unwrap();
        let (place, addr, target) = l.open.values().next().unwrap();
        assert_eq!(place.device.map(|d| d.to_string()), Some("lo".into()));
        assert_eq!((addr.to_string(), *target), ("127.0.0.1:2222".into(), 22));
        assert_eq!(t.show()[0], "-t 127.0.0.1%lo/2222:22");
        run(&mut t, &mut l, &[add(Chan::UDP_IN, "53")]).unwrap();
        assert_eq!(t.bound_count(), 3, "a wildcard binds 0.0.0.0 and ::");
    }

    #[test]
    fn shown_rules_read_back_as_the_same_rules() {
        let cx = SpecContext::new(Program::Pasta);
        for spec in [
            "22",
            "8080:80",
            "127.0.0.1/2222:22",
            "::1%lo/53",
            "22:192.0.2.5",
            "5000-5001:[2001:db8::5]/6000-6001",
        ] {
            let parsed = fwd::parse(spec, &cx).unwrap();
            for r in &parsed.rules {
                let again = fwd::parse(&render(r), &cx).unwrap();
                assert_eq!(again.rules, vec![r.clone()], "{spec} -> {}", render(r));
            }
        }
    }
}
