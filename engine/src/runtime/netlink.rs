//! Interface configuration over rtnetlink (rtnetlink(7)): what pasta's
//! `--config-net` does to the tap inside the namespace, and the readers
//! that fetch the host's addresses and routes so that they can be copied.
//!
//! Messages are built and parsed by `netlink-packet-route` and sent on a
//! plain synchronous `netlink-sys` socket (docs/decisions.md says why).
//! Every request asks for an acknowledgement, and a kernel refusal becomes
//! a [`NetlinkError::Kernel`] worded as `ip` words it ("RTNETLINK answers:
//! File exists"). Waits are bounded by a receive timeout.
//!
//! [`configure`] and [`link_up`] run inside a namespace through
//! [`NetNs::run_in`]; the readers ([`link`], [`addresses`], [`routes`])
//! work in the caller's own namespace (call them through `run_in` to read
//! another one).
//!
//! This module never creates namespaces or interfaces, never decides
//! which addresses a namespace should have (pasta's start-up does, from
//! the options), and never touches an interface it was not named.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL,
    NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlaBuffer,
    NlasIterator,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric, RouteNextHop,
    RouteNextHopFlags, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::addr::MacAddr;
use crate::runtime::logging::{log_debug, log_warn};
use crate::runtime::netns::NetNs;

/// The namespace interface's MTU unless told otherwise: the largest
/// Ethernet payload that still fits a 64 KiB frame with room for the
/// headers, as upstream's default.
pub const DEFAULT_MTU: u32 = 65520;

/// The tap's transmit queue length (frames) set by [`NsNetConfig::new`].
///
/// The tap driver drops a frame, rather than pushing back, when this
/// queue is full; at MTU 1500 a single bulk TCP sender in the namespace
/// can have several hundred frames in flight between two wake-ups of the
/// reader, more than the kernel's default of 1000 at times. The figure
/// and its measurement are in docs/decisions.md.
pub const TX_QUEUE_LEN: u32 = 5000;

/// How long one request may wait for the kernel's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole exchange (a dump) may take.
const EXCHANGE_DEADLINE: Duration = Duration::from_secs(30);
/// Receive buffer: the kernel fills dump datagrams up to 32 KiB.
const RECV_BUF: usize = 64 * 1024;
/// Dumps that the kernel reports as interrupted (`NLM_F_DUMP_INTR`, the
/// table changed meanwhile) are restarted at most this many times.
const DUMP_RETRIES: usize = 5;
/// `NLMSGERR_ATTR_MSG` (linux/netlink.h): the extended ACK's text.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Length of a `struct nlmsghdr`, echoed in an error with `NETLINK_CAP_ACK`.
const NLMSGHDR_LEN: usize = 16;
/// The main routing table (`RT_TABLE_MAIN`), the only one read or written.
const MAIN_TABLE: u8 = RouteHeader::RT_TABLE_MAIN;
/// Largest interface name, without its NUL (`IFNAMSIZ - 1`).
const IFNAME_MAX: usize = 15;

/// A failure to read or configure interfaces.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The netlink socket could not be opened or used.
    #[error("Cannot talk to the kernel over netlink: {0}")]
    Socket(io::Error),
    /// The namespace could not be joined.
    #[error("Cannot enter network namespace {}: {source}", path.display())]
    Namespace {
        /// The namespace's path.
        path: PathBuf,
        /// Why `setns(2)` failed.
        source: io::Error,
    },
    /// No interface of that name or index.
    #[error("Cannot find device \"{0}\"")]
    NoSuchDevice(String),
    /// The kernel refused a request.
    #[error("{action}: RTNETLINK answers: {}{}", strerror(*errno), ext_ack_suffix(ext_ack))]
    Kernel {
        /// What was being done, as an `ip` command would say it.
        action: String,
        /// The errno the kernel answered.
        errno: i32,
        /// The kernel's extended acknowledgement text, when it gave one.
        ext_ack: Option<String>,
    },
    /// The kernel's answer was malformed, truncated or missing.
    #[error("{action}: bad netlink answer: {reason}")]
    Protocol {
        /// What was being done.
        action: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// A request that cannot be expressed (checked before sending).
    #[error("Invalid {what}: {reason}")]
    Invalid {
        /// The offending value.
        what: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A per-interface setting under `/proc/sys` could not be written.
    #[error("Cannot write {}: {source}", path.display())]
    Sysctl {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl NetlinkError {
    /// The errno of a kernel refusal, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            NetlinkError::NoSuchDevice(_) => Some(libc::ENODEV),
            _ => None,
        }
    }
}

/// `strerror(3)`'s text for `errno`, without Rust's "(os error N)".
fn strerror(errno: i32) -> String {
    let mut buf = [0 as libc::c_char; 128];
    // SAFETY: `buf` is writable for its length; the XSI `strerror_r` the
    // libc crate binds NUL-terminates on success.
    let rc = unsafe { libc::strerror_r(errno, buf.as_mut_ptr(), buf.len()) };
    if rc != 0 {
        return format!("error {errno}");
    }
    // SAFETY: NUL-terminated by strerror_r within `buf`.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn ext_ack_suffix(ext_ack: &Option<String>) -> String {
    ext_ack
        .as_deref()
        .map(|m| format!(" ({})", m.trim_end_matches('.')))
        .unwrap_or_default()
}

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Address length in bits: the largest prefix length.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// The unspecified address (the destination of a default route).
    pub fn unspecified(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }

    fn af(self) -> AddressFamily {
        match self {
            Family::V4 => AddressFamily::Inet,
            Family::V6 => AddressFamily::Inet6,
        }
    }

    fn from_af(af: AddressFamily) -> Option<Family> {
        match af {
            AddressFamily::Inet => Some(Family::V4),
            AddressFamily::Inet6 => Some(Family::V6),
            _ => None,
        }
    }
}

/// Names an interface: by index or by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Iface<'a> {
    /// The interface index (`if_nametoindex(3)`).
    Index(u32),
    /// The interface name.
    Name(&'a str),
}

impl From<u32> for Iface<'_> {
    fn from(i: u32) -> Self {
        Iface::Index(i)
    }
}

impl<'a> From<&'a str> for Iface<'a> {
    fn from(n: &'a str) -> Self {
        Iface::Name(n)
    }
}

impl<'a> From<&'a String> for Iface<'a> {
    fn from(n: &'a String) -> Self {
        Iface::Name(n)
    }
}

impl fmt::Display for Iface<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Iface::Index(i) => write!(f, "index {i}"),
            Iface::Name(n) => f.write_str(n),
        }
    }
}

/// A scope (rtnetlink's `RT_SCOPE_*`, shared by addresses and routes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Anywhere (`global`).
    Universe,
    /// Site-local.
    Site,
    /// This link only.
    Link,
    /// This host only.
    Host,
    /// Any other value.
    Other(u8),
}

impl From<RouteScope> for Scope {
    fn from(s: RouteScope) -> Scope {
        match s {
            RouteScope::Universe => Scope::Universe,
            RouteScope::Site => Scope::Site,
            RouteScope::Link => Scope::Link,
            RouteScope::Host => Scope::Host,
            other => Scope::Other(u8::from(other)),
        }
    }
}

impl From<Scope> for RouteScope {
    fn from(s: Scope) -> RouteScope {
        match s {
            Scope::Universe => RouteScope::Universe,
            Scope::Site => RouteScope::Site,
            Scope::Link => RouteScope::Link,
            Scope::Host => RouteScope::Host,
            Scope::Other(v) => RouteScope::from(v),
        }
    }
}

impl From<AddressScope> for Scope {
    fn from(s: AddressScope) -> Scope {
        match s {
            AddressScope::Universe => Scope::Universe,
            AddressScope::Site => Scope::Site,
            AddressScope::Link => Scope::Link,
            AddressScope::Host => Scope::Host,
            other => Scope::Other(u8::from(other)),
        }
    }
}

/// What [`link`] reports about an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// MTU.
    pub mtu: Option<u32>,
    /// Hardware address, for an Ethernet-like interface.
    pub mac: Option<MacAddr>,
    /// Transmit queue length (frames).
    pub txqueuelen: Option<u32>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Carrier present (`IFF_LOWER_UP`).
    pub lower_up: bool,
    /// Frames dropped on transmit since the interface was made.
    pub tx_dropped: Option<u64>,
}

/// One address of an interface, as [`addresses`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The local address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Its scope.
    pub scope: Scope,
    /// Still undergoing duplicate address detection (IPv6).
    pub tentative: bool,
    /// Duplicate address detection failed (IPv6).
    pub dad_failed: bool,
    /// Preferred lifetime over (IPv6).
    pub deprecated: bool,
    /// Configured without a lifetime (not from autoconfiguration).
    pub permanent: bool,
}

impl Address {
    /// Whether pasta copies it into the namespace: usable (not tentative,
    /// failed or deprecated), not link-local (the namespace makes its own
    /// from its MAC address) and not host-scoped.
    pub fn copyable(&self) -> bool {
        let link_local = match self.addr {
            IpAddr::V4(a) => a.is_link_local(),
            IpAddr::V6(a) => crate::addr::ipv6_is_link_local(a),
        };
        !self.tentative
            && !self.dad_failed
            && !self.deprecated
            && !link_local
            && !self.addr.is_loopback()
            && self.scope != Scope::Host
    }
}

/// One next hop of a multipath route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    /// The gateway, if any (a device-only hop otherwise).
    pub gateway: Option<IpAddr>,
    /// Relative weight, 1 to 256 (`ip route ... weight`).
    pub weight: u16,
    /// The gateway is taken as on-link whatever the prefixes (`onlink`).
    pub onlink: bool,
}

/// A unicast route of the main table, without its interface: [`routes`]
/// reads those of one interface, and [`configure`] adds them to the
/// namespace's interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination network; the unspecified address with `prefix_len` 0
    /// for a default route. Its family is the route's family.
    pub dst: IpAddr,
    /// Destination prefix length.
    pub prefix_len: u8,
    /// The gateway (`via`); `None` for a device route, or when
    /// `nexthops` holds the gateways.
    pub gateway: Option<IpAddr>,
    /// The hops of a multipath route (empty otherwise); [`routes`] keeps
    /// only those through the interface read.
    pub nexthops: Vec<NextHop>,
    /// The route's priority (`metric`); lower wins.
    pub metric: Option<u32>,
    /// Scope: [`Scope::Link`] for a device route, [`Scope::Universe`]
    /// for one through a gateway.
    pub scope: Scope,
    /// The gateway is taken as on-link whatever the prefixes (`onlink`).
    pub onlink: bool,
    /// Preferred source address (`src`). [`configure`] drops it unless it
    /// is one of the addresses it adds, as the kernel would refuse it.
    pub pref_src: Option<IpAddr>,
    /// Path MTU for this destination (`mtu`).
    pub mtu: Option<u32>,
    /// Made by the kernel for an address's prefix (`proto kernel`); the
    /// kernel makes it again when the address is added.
    pub kernel: bool,
}

impl Route {
    /// A default route through `gateway`.
    pub fn default_via(gateway: IpAddr) -> Route {
        Route {
            dst: Family::of(gateway).unspecified(),
            prefix_len: 0,
            gateway: Some(gateway),
            nexthops: Vec::new(),
            metric: None,
            scope: Scope::Universe,
            onlink: false,
            pref_src: None,
            mtu: None,
            kernel: false,
        }
    }

    /// A route to `dst/prefix_len` straight on the link (no gateway).
    pub fn device(dst: IpAddr, prefix_len: u8) -> Route {
        Route {
            dst,
            prefix_len,
            gateway: None,
            scope: Scope::Link,
            ..Route::default_via(dst)
        }
    }

    /// The route's family (its destination's).
    pub fn family(&self) -> Family {
        Family::of(self.dst)
    }

    /// A default route.
    pub fn is_default(&self) -> bool {
        self.prefix_len == 0
    }

    /// Every gateway it names.
    fn gateways(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.gateway
            .into_iter()
            .chain(self.nexthops.iter().filter_map(|h| h.gateway))
    }
}

impl fmt::Display for Route {
    /// As `ip route` prints it: `default via 192.0.2.1 metric 100`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_default() {
            f.write_str("default")?;
        } else {
            write!(f, "{}/{}", self.dst, self.prefix_len)?;
        }
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        for hop in &self.nexthops {
            match hop.gateway {
                Some(gw) => write!(f, " nexthop via {gw} weight {}", hop.weight)?,
                None => write!(f, " nexthop weight {}", hop.weight)?,
            }
        }
        if let Some(m) = self.metric {
            write!(f, " metric {m}")?;
        }
        if self.onlink {
            f.write_str(" onlink")?;
        }
        Ok(())
    }
}

/// What [`configure`] sets on the namespace's interface. Fields that are
/// `None` (or empty) are left as the kernel has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsNetConfig {
    /// The interface (the tap), which must exist in the namespace.
    pub ifname: String,
    /// MTU.
    pub mtu: Option<u32>,
    /// Hardware address (`--ns-mac-addr`).
    pub mac: Option<MacAddr>,
    /// Addresses and prefix lengths, added with duplicate address
    /// detection off.
    pub addrs: Vec<(IpAddr, u8)>,
    /// Routes through the interface, added once it is up. Routes the
    /// kernel already has (such as an address's prefix route) are not
    /// errors.
    pub routes: Vec<Route>,
    /// Transmit queue length (frames).
    pub txqueuelen: Option<u32>,
}

impl NsNetConfig {
    /// A configuration of `ifname` with the defaults: MTU
    /// [`DEFAULT_MTU`], queue length [`TX_QUEUE_LEN`], no address, no
    /// route, the kernel's MAC address.
    pub fn new(ifname: impl Into<String>) -> NsNetConfig {
        NsNetConfig {
            ifname: ifname.into(),
            mtu: Some(DEFAULT_MTU),
            mac: None,
            addrs: Vec::new(),
            routes: Vec::new(),
            txqueuelen: Some(TX_QUEUE_LEN),
        }
    }
}

/// Configures `cfg.ifname` inside `ns`, in this order: MAC address, MTU,
/// transmit queue length, IPv6 duplicate address detection off
/// (`accept_dad`), the addresses (`IFA_F_NODAD`), link up, the routes,
/// and `lo` up.
///
/// Routes are added in passes: device routes first, then those through
/// gateways; a route whose gateway is not reachable yet waits for the
/// next pass, and when a pass adds nothing, a device route to each such
/// gateway is added first (a gateway outside every prefix, as with a
/// /32 address) and the routes are tried once more.
pub fn configure(ns: &NetNs, cfg: &NsNetConfig) -> Result<(), NetlinkError> {
    check_ifname(&cfg.ifname)?;
    validate(cfg)?;
    in_ns(ns, || {
        let mut nl = Rtnl::open()?;
        let link = nl.link(Iface::Name(&cfg.ifname))?;
        let index = link.index;
        let name = cfg.ifname.as_str();
        if let Some(mac) = cfg.mac {
            nl.set_link(
                index,
                vec![LinkAttribute::Address(mac.octets().to_vec())],
                LinkFlags::empty(),
                || format!("ip link set dev {name} address {mac}"),
            )?;
        }
        if let Some(mtu) = cfg.mtu {
            nl.set_link(
                index,
                vec![LinkAttribute::Mtu(mtu)],
                LinkFlags::empty(),
                || format!("ip link set dev {name} mtu {mtu}"),
            )?;
        }
        if let Some(q) = cfg.txqueuelen {
            nl.set_link(
                index,
                vec![LinkAttribute::TxQueueLen(q)],
                LinkFlags::empty(),
                || format!("ip link set dev {name} txqueuelen {q}"),
            )?;
        }
        disable_dad(name);
        for &(addr, prefix_len) in &cfg.addrs {
            nl.add_address(index, addr, prefix_len, name)?;
        }
        nl.set_link(index, Vec::new(), LinkFlags::Up, || {
            format!("ip link set dev {name} up")
        })?;
        add_routes(&mut nl, index, name, cfg)?;
        let lo = nl.link(Iface::Name("lo"))?;
        nl.set_link(lo.index, Vec::new(), LinkFlags::Up, || {
            "ip link set dev lo up".to_string()
        })
    })
}

/// Brings `ifname` up inside `ns` (pasta uses it for `lo`).
pub fn link_up(ns: &NetNs, ifname: &str) -> Result<(), NetlinkError> {
    check_ifname(ifname)?;
    in_ns(ns, || {
        let mut nl = Rtnl::open()?;
        let link = nl.link(Iface::Name(ifname))?;
        nl.set_link(link.index, Vec::new(), LinkFlags::Up, || {
            format!("ip link set dev {ifname} up")
        })
    })
}

/// The interface `iface` of the caller's namespace.
pub fn link<'a>(iface: impl Into<Iface<'a>>) -> Result<Link, NetlinkError> {
    let iface = iface.into();
    if let Iface::Name(n) = iface {
        check_ifname(n)?;
    }
    Rtnl::open()?.link(iface)
}

/// The addresses of `iface` in the caller's namespace, both families, in
/// the kernel's order.
pub fn addresses<'a>(iface: impl Into<Iface<'a>>) -> Result<Vec<Address>, NetlinkError> {
    let iface = iface.into();
    if let Iface::Name(n) = iface {
        check_ifname(n)?;
    }
    let mut nl = Rtnl::open()?;
    let index = nl.link(iface)?.index;
    let msgs = nl.dump(
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        || format!("ip address show dev {iface}"),
    )?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) if a.header.index == index => parse_address(&a),
            _ => None,
        })
        .collect())
}

/// The unicast routes of the main table that go out through `iface` in
/// the caller's namespace, of `family` (both when `None`), in the
/// kernel's order. Default routes are included; a multipath route keeps
/// the hops through `iface` only. Routes through a gateway of the other
/// family (`via inet6`) are left out: [`Route`] cannot hold them.
pub fn routes<'a>(
    iface: impl Into<Iface<'a>>,
    family: Option<Family>,
) -> Result<Vec<Route>, NetlinkError> {
    let iface = iface.into();
    if let Iface::Name(n) = iface {
        check_ifname(n)?;
    }
    let mut nl = Rtnl::open()?;
    let index = nl.link(iface)?.index;
    let mut msg = RouteMessage::default();
    msg.header.address_family = family.map_or(AddressFamily::Unspec, Family::af);
    let msgs = nl.dump(RouteNetlinkMessage::GetRoute(msg), || {
        format!("ip route show dev {iface}")
    })?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r) => parse_route(&r, index),
            _ => None,
        })
        .filter(|r| family.is_none_or(|f| r.family() == f))
        .collect())
}

/// Runs `f` in `ns`, mapping a failure to join it.
fn in_ns<R: Send>(
    ns: &NetNs,
    f: impl FnOnce() -> Result<R, NetlinkError> + Send,
) -> Result<R, NetlinkError> {
    ns.run_in(f).map_err(|source| NetlinkError::Namespace {
        path: ns.path().to_path_buf(),
        source,
    })?
}

fn check_ifname(name: &str) -> Result<(), NetlinkError> {
    let bad = |reason| NetlinkError::Invalid {
        what: format!("interface name \"{name}\""),
        reason,
    };
    if name.is_empty() || name.len() > IFNAME_MAX {
        return Err(bad("must be 1 to 15 bytes long"));
    }
    if name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace())
    {
        return Err(bad("contains a character interface names cannot have"));
    }
    Ok(())
}

/// Refuses what the kernel could only refuse less clearly, or what
/// `Route` cannot mean.
fn validate(cfg: &NsNetConfig) -> Result<(), NetlinkError> {
    let invalid = |what: String, reason| Err(NetlinkError::Invalid { what, reason });
    for &(addr, len) in &cfg.addrs {
        if len > Family::of(addr).bits() {
            return invalid(format!("address {addr}/{len}"), "prefix length too long");
        }
        if addr.is_unspecified() || addr.is_multicast() {
            return invalid(format!("address {addr}/{len}"), "not a unicast address");
        }
    }
    for r in &cfg.routes {
        let fam = r.family();
        if r.prefix_len > fam.bits() {
            return invalid(format!("route {r}"), "prefix length too long");
        }
        if r.gateway.is_some() && !r.nexthops.is_empty() {
            return invalid(format!("route {r}"), "both a gateway and next hops");
        }
        for gw in r.gateways() {
            if Family::of(gw) != fam {
                return invalid(
                    format!("route {r}"),
                    "the gateway's family differs from the destination's",
                );
            }
            if gw.is_unspecified() || gw.is_multicast() || gw.is_loopback() {
                return invalid(
                    format!("route {r}"),
                    "the gateway is not a unicast address on a link",
                );
            }
        }
        if r.nexthops.iter().any(|h| !(1..=256).contains(&h.weight)) {
            return invalid(format!("route {r}"), "next-hop weight out of 1-256");
        }
    }
    Ok(())
}

/// Turns IPv6 duplicate address detection off on `ifname` (and so on the
/// link-local address the kernel makes when the link comes up): the tap's
/// only neighbour is pasta, which never claims the namespace's addresses.
/// The added addresses carry `IFA_F_NODAD` anyway, so a failure here (no
/// IPv6, a read-only `/proc/sys`) only delays the link-local address and
/// is logged, not fatal.
fn disable_dad(ifname: &str) {
    // /proc/sys/net follows the network namespace of the thread that
    // opens it, and this runs on the thread that joined the namespace.
    let path = PathBuf::from(format!("/proc/sys/net/ipv6/conf/{ifname}/accept_dad"));
    match std::fs::write(&path, b"0\n") {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            log_debug!("{}: no IPv6 on {ifname}", path.display());
        }
        Err(source) => log_warn!("{}", NetlinkError::Sysctl { path, source }),
    }
}

fn add_routes(
    nl: &mut Rtnl,
    index: u32,
    name: &str,
    cfg: &NsNetConfig,
) -> Result<(), NetlinkError> {
    // Device routes first: gateways of later routes may sit in them.
    let mut pending: Vec<&Route> = cfg
        .routes
        .iter()
        .filter(|r| r.gateways().next().is_none())
        .collect();
    pending.extend(cfg.routes.iter().filter(|r| r.gateways().next().is_some()));
    let own: Vec<IpAddr> = cfg.addrs.iter().map(|&(a, _)| a).collect();
    let mut gateway_routes_added = false;
    // Each pass adds at least one route or ends the loop: bounded by the
    // number of routes, plus the one pass after the gateway routes.
    for _ in 0..=cfg.routes.len() + 1 {
        let mut waiting = Vec::new();
        let mut last_err = None;
        let before = pending.len();
        for r in pending {
            match nl.add_route(index, r, &own, name) {
                Ok(()) => {}
                Err(e) if gateway_unreachable(&e) => {
                    waiting.push(r);
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        let Some(err) = last_err else { return Ok(()) };
        if waiting.len() == before {
            if gateway_routes_added {
                return Err(err);
            }
            // No progress: reach each gateway through the device.
            gateway_routes_added = true;
            for gw in waiting.iter().flat_map(|r| r.gateways()) {
                let host = Route::device(gw, Family::of(gw).bits());
                nl.add_route(index, &host, &own, name)?;
            }
        }
        pending = waiting;
    }
    Ok(())
}

/// The kernel's answers for a gateway that no route reaches yet.
fn gateway_unreachable(e: &NetlinkError) -> bool {
    matches!(
        e.errno(),
        Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH)
    )
}

fn parse_link(m: &LinkMessage) -> Link {
    let mut link = Link {
        index: m.header.index,
        name: String::new(),
        mtu: None,
        mac: None,
        txqueuelen: None,
        up: m.header.flags.contains(LinkFlags::Up),
        lower_up: m.header.flags.contains(LinkFlags::LowerUp),
        tx_dropped: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Mtu(v) => link.mtu = Some(*v),
            LinkAttribute::TxQueueLen(v) => link.txqueuelen = Some(*v),
            LinkAttribute::Address(b) => {
                link.mac = <[u8; 6]>::try_from(b.as_slice()).ok().map(MacAddr)
            }
            LinkAttribute::Stats64(s) => link.tx_dropped = Some(s.tx_dropped),
            _ => {}
        }
    }
    link
}

fn parse_address(m: &AddressMessage) -> Option<Address> {
    let mut local = None;
    let mut address = None;
    let mut flags = AddressFlags::from_bits_retain(u32::from(m.header.flags.bits()));
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Flags(f) => flags = *f,
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's
    // on a point-to-point link, and the only one IPv6 sends.
    let addr = local.or(address)?;
    Some(Address {
        addr,
        prefix_len: m.header.prefix_len,
        scope: m.header.scope.into(),
        tentative: flags.contains(AddressFlags::Tentative),
        dad_failed: flags.contains(AddressFlags::Dadfailed),
        deprecated: flags.contains(AddressFlags::Deprecated),
        permanent: flags.contains(AddressFlags::Permanent),
    })
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// A route of the main table through interface `index`, or `None`.
fn parse_route(m: &RouteMessage, index: u32) -> Option<Route> {
    let family = Family::from_af(m.header.address_family)?;
    if m.header.kind != RouteType::Unicast || m.header.flags.contains(RouteFlags::Cloned) {
        return None;
    }
    let mut table = u32::from(m.header.table);
    let mut route = Route {
        dst: family.unspecified(),
        prefix_len: m.header.destination_prefix_length,
        gateway: None,
        nexthops: Vec::new(),
        metric: None,
        scope: m.header.scope.into(),
        onlink: m.header.flags.contains(RouteFlags::Onlink),
        pref_src: None,
        mtu: None,
        kernel: m.header.protocol == RouteProtocol::Kernel,
    };
    let mut oif = None;
    let mut multipath = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => route.dst = route_ip(d)?,
            RouteAttribute::Gateway(g) => route.gateway = Some(route_ip(g)?),
            RouteAttribute::Via(_) => return None,
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => route.metric = Some(*p),
            RouteAttribute::PrefSource(s) => route.pref_src = route_ip(s),
            RouteAttribute::Metrics(ms) => {
                for metric in ms {
                    if let RouteMetric::Mtu(v) = metric {
                        route.mtu = Some(*v);
                    }
                }
            }
            RouteAttribute::MultiPath(hops) => multipath = Some(hops),
            _ => {}
        }
    }
    if table != u32::from(MAIN_TABLE) {
        return None;
    }
    match multipath {
        Some(hops) => {
            for hop in hops.iter().filter(|h| h.interface_index == index) {
                let mut gateway = None;
                for a in &hop.attributes {
                    match a {
                        RouteAttribute::Gateway(g) => gateway = Some(route_ip(g)?),
                        RouteAttribute::Via(_) => return None,
                        _ => {}
                    }
                }
                route.nexthops.push(NextHop {
                    gateway,
                    weight: u16::from(hop.hops) + 1,
                    onlink: hop.flags.contains(RouteNextHopFlags::Onlink),
                });
            }
            match route.nexthops.len() {
                0 => return None,
                // One hop through this interface: a plain route.
                1 => {
                    let hop = route.nexthops.remove(0);
                    route.gateway = hop.gateway;
                    route.onlink |= hop.onlink;
                }
                _ => {}
            }
        }
        None if oif != Some(index) => return None,
        None => {}
    }
    Some(route)
}

/// A synchronous rtnetlink socket with its sequence numbers.
struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    fn open() -> Result<Rtnl, NetlinkError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        sock.bind_auto().map_err(NetlinkError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        // Extended ACKs carry the kernel's reason text; with CAP_ACK the
        // error echoes only the request's header. Both are optional
        // (older kernels), so failures are ignored.
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        let tv = libc::timeval {
            tv_sec: REPLY_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: plain setsockopt on a descriptor `sock` owns, with a
        // `timeval` that lives across the call.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(NetlinkError::Socket(io::Error::last_os_error()));
        }
        Ok(Rtnl {
            sock,
            seq: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Sends `msg` and hands every reply of the exchange to `each`, until
    /// the kernel's acknowledgement (or error) or the end of a dump.
    /// Returns whether a dump was interrupted.
    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        action: &dyn Fn() -> String,
        each: &mut dyn FnMut(RouteNetlinkMessage),
    ) -> Result<bool, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        req.finalize();
        let mut out = vec![0; req.buffer_len()];
        req.serialize(&mut out);
        let protocol = |reason: String| NetlinkError::Protocol {
            action: action(),
            reason,
        };
        match self.sock.send(&out, 0) {
            Ok(n) if n == out.len() => {}
            Ok(n) => return Err(protocol(format!("sent {n} of {} bytes", out.len()))),
            Err(e) => return Err(NetlinkError::Socket(e)),
        }
        let deadline = Instant::now() + EXCHANGE_DEADLINE;
        let mut interrupted = false;
        loop {
            if Instant::now() > deadline {
                return Err(protocol("no end of the answer in time".into()));
            }
            let n = match self.sock.recv(&mut &mut self.buf[..], libc::MSG_TRUNC) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(protocol(format!("no answer within {REPLY_TIMEOUT:?}")));
                }
                Err(e) => return Err(NetlinkError::Socket(e)),
            };
            if n > self.buf.len() {
                return Err(protocol(format!("a {n}-byte datagram did not fit")));
            }
            let mut off = 0;
            while off < n {
                let len = match NetlinkBuffer::new_checked(&self.buf[off..n]) {
                    Ok(b) => b.length() as usize,
                    Err(e) => return Err(protocol(e.to_string())),
                };
                let bytes = &self.buf[off..off + len];
                // Messages are 4-byte aligned within a datagram.
                off += len.div_ceil(4) * 4;
                let msg = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) {
                    Ok(m) => m,
                    Err(e) => {
                        log_warn!("{}: skipped an unreadable netlink message: {e}", action());
                        continue;
                    }
                };
                if msg.header.sequence_number != seq {
                    continue; // a late answer to an earlier, failed request
                }
                if msg.header.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(interrupted),
                            Some(code) => {
                                let ext_ack = if msg.header.flags & NLM_F_ACK_TLVS != 0 {
                                    ext_ack_text(&e.header)
                                } else {
                                    None
                                };
                                Err(NetlinkError::Kernel {
                                    action: action(),
                                    errno: -code.get(),
                                    ext_ack,
                                })
                            }
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(interrupted),
                    NetlinkPayload::InnerMessage(m) => each(m),
                    NetlinkPayload::Noop => {}
                    NetlinkPayload::Overrun(_) => {
                        return Err(protocol("the kernel overran the buffer".into()));
                    }
                    _ => {}
                }
            }
        }
    }

    /// A request the kernel acknowledges.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        action: &dyn Fn() -> String,
    ) -> Result<(), NetlinkError> {
        self.exchange(msg, NLM_F_ACK | flags, action, &mut |_| {})
            .map(|_| ())
    }

    /// Every message of a dump, restarted when the kernel reports it
    /// interrupted.
    fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        action: impl Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        for _ in 0..DUMP_RETRIES {
            let mut out = Vec::new();
            if !self.exchange(msg.clone(), NLM_F_DUMP, &action, &mut |m| out.push(m))? {
                return Ok(out);
            }
        }
        Err(NetlinkError::Protocol {
            action: action(),
            reason: format!("dump interrupted {DUMP_RETRIES} times in a row"),
        })
    }

    fn link(&mut self, iface: Iface<'_>) -> Result<Link, NetlinkError> {
        let mut msg = LinkMessage::default();
        match iface {
            Iface::Index(i) => msg.header.index = i,
            Iface::Name(n) => msg.attributes.push(LinkAttribute::IfName(n.to_string())),
        }
        let mut found = None;
        let res = self.exchange(
            RouteNetlinkMessage::GetLink(msg),
            NLM_F_ACK,
            &|| format!("ip link show dev {iface}"),
            &mut |m| {
                if let RouteNetlinkMessage::NewLink(l) = m {
                    found = Some(parse_link(&l));
                }
            },
        );
        match res {
            Err(e) if e.errno() == Some(libc::ENODEV) => {
                Err(NetlinkError::NoSuchDevice(iface.to_string()))
            }
            Err(e) => Err(e),
            Ok(_) => found.ok_or_else(|| NetlinkError::Protocol {
                action: format!("ip link show dev {iface}"),
                reason: "no link in the answer".into(),
            }),
        }
    }

    fn set_link(
        &mut self,
        index: u32,
        attributes: Vec<LinkAttribute>,
        up: LinkFlags,
        action: impl Fn() -> String,
    ) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = up;
        msg.header.change_mask = up;
        msg.attributes = attributes;
        self.request(RouteNetlinkMessage::SetLink(msg), 0, &action)
    }

    fn add_address(
        &mut self,
        index: u32,
        addr: IpAddr,
        prefix_len: u8,
        ifname: &str,
    ) -> Result<(), NetlinkError> {
        let mut msg = AddressMessage::default();
        msg.header.family = Family::of(addr).af();
        msg.header.prefix_len = prefix_len;
        msg.header.index = index;
        msg.header.scope = AddressScope::Universe;
        match addr {
            IpAddr::V4(v4) => {
                msg.attributes.push(AddressAttribute::Local(addr));
                msg.attributes.push(AddressAttribute::Address(addr));
                // The directed broadcast, as `ip address add ... brd +`.
                if prefix_len <= 30 {
                    let host_bits = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
                    let brd = Ipv4Addr::from(u32::from(v4) | host_bits);
                    msg.attributes.push(AddressAttribute::Broadcast(brd));
                }
            }
            IpAddr::V6(_) => {
                // RFC 4862 5.4: no duplicate address detection; the
                // tap's only neighbour is pasta.
                msg.header.flags = AddressHeaderFlags::Nodad;
                msg.attributes.push(AddressAttribute::Address(addr));
                msg.attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
        }
        let res = self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| format!("ip address add {addr}/{prefix_len} dev {ifname}"),
        );
        match res {
            // Already there (a namespace configured before): the outcome
            // asked for.
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    fn add_route(
        &mut self,
        index: u32,
        r: &Route,
        own: &[IpAddr],
        ifname: &str,
    ) -> Result<(), NetlinkError> {
        let family = r.family();
        let mut msg = RouteMessage::default();
        msg.header.address_family = family.af();
        msg.header.destination_prefix_length = r.prefix_len;
        msg.header.table = MAIN_TABLE;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.scope = r.scope.into();
        msg.header.kind = RouteType::Unicast;
        if r.onlink {
            msg.header.flags = RouteFlags::Onlink;
        }
        if r.prefix_len > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(r.dst.into()));
        }
        if r.nexthops.is_empty() {
            msg.attributes.push(RouteAttribute::Oif(index));
            if let Some(gw) = r.gateway {
                msg.attributes.push(RouteAttribute::Gateway(gw.into()));
            }
        } else {
            let hops = r
                .nexthops
                .iter()
                .map(|h| {
                    let mut hop = RouteNextHop::default();
                    hop.interface_index = index;
                    hop.hops = (h.weight.clamp(1, 256) - 1) as u8;
                    if h.onlink {
                        hop.flags = RouteNextHopFlags::Onlink;
                    }
                    if let Some(gw) = h.gateway {
                        hop.attributes.push(RouteAttribute::Gateway(gw.into()));
                    }
                    hop
                })
                .collect();
            msg.attributes.push(RouteAttribute::MultiPath(hops));
        }
        if let Some(m) = r.metric {
            msg.attributes.push(RouteAttribute::Priority(m));
        }
        if let Some(src) = r.pref_src.filter(|s| own.contains(s)) {
            msg.attributes.push(RouteAttribute::PrefSource(src.into()));
        }
        if let Some(mtu) = r.mtu {
            msg.attributes
                .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
        }
        let fam = if family == Family::V6 { "-6 " } else { "" };
        let res = self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| format!("ip {fam}route add {r} dev {ifname}"),
        );
        match res {
            // Already there: the kernel's own prefix route for an added
            // address, or a namespace configured before.
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }
}

/// The text of an extended ACK (`NLMSGERR_ATTR_MSG`) following the
/// echoed request header in an error's payload.
fn ext_ack_text(payload: &[u8]) -> Option<String> {
    let tlvs = payload.get(NLMSGHDR_LEN..)?;
    for nla in NlasIterator::new(tlvs) {
        let nla: NlaBuffer<&[u8]> = nla.ok()?;
        if nla.kind() == NLMSGERR_ATTR_MSG {
            let text = nla.value();
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_errors_read_like_ip() {
        let e = NetlinkError::Kernel {
            action: "ip address add 192.0.2.1/24 dev tap0".into(),
            errno: libc::EEXIST,
            ext_ack: None,
        };
        assert_eq!(
            e.to_string(),
            "ip address add 192.0.2.1/24 dev tap0: RTNETLINK answers: File exists"
        );
        let e = NetlinkError::Kernel {
            action: "ip route add default via 192.0.2.1 dev tap0".into(),
            errno: libc::ENETUNREACH,
            ext_ack: Some("Nexthop has invalid gateway.".into()),
        };
        assert_eq!(
            e.to_string(),
            "ip route add default via 192.0.2.1 dev tap0: RTNETLINK answers: \
             Network is unreachable (Nexthop has invalid gateway)"
        );
    }

    #[test]
    fn routes_print_as_ip_route_does() {
        let mut r = Route::default_via("192.0.2.1".parse().unwrap());
        r.metric = Some(100);
        assert_eq!(r.to_string(), "default via 192.0.2.1 metric 100");
        let d = Route::device("2001:db8::".parse().unwrap(), 64);
        assert_eq!(d.to_string(), "2001:db8::/64");
        assert_eq!(d.family(), Family::V6);
        assert_eq!(d.scope, Scope::Link);
    }

    #[test]
    fn bad_interface_names_are_refused_before_asking_the_kernel() {
        for name in ["", "a-name-far-too-long", "a/b", "..", "a b"] {
            assert!(
                matches!(check_ifname(name), Err(NetlinkError::Invalid { .. })),
                "{name:?}"
            );
        }
        assert!(check_ifname("tap0").is_ok());
    }

    #[test]
    fn routes_that_cannot_be_expressed_are_refused() {
        let mut cfg = NsNetConfig::new("tap0");
        cfg.routes = vec![Route::default_via("2001:db8::1".parse().unwrap())];
        cfg.routes[0].dst = "0.0.0.0".parse().unwrap();
        assert!(validate(&cfg).is_err(), "mixed families");
        cfg.routes = vec![Route::default_via("224.0.0.1".parse().unwrap())];
        assert!(validate(&cfg).is_err(), "multicast gateway");
        cfg.routes = vec![Route::default_via("::1".parse().unwrap())];
        assert!(validate(&cfg).is_err(), "loopback gateway");
        cfg.routes = vec![Route::device("192.0.2.0".parse().unwrap(), 33)];
        assert!(validate(&cfg).is_err(), "prefix too long");
        cfg.routes = vec![Route::default_via("192.0.2.1".parse().unwrap())];
        cfg.addrs = vec![("192.0.2.2".parse().unwrap(), 24)];
        assert!(validate(&cfg).is_ok());
        cfg.addrs = vec![("192.0.2.2".parse().unwrap(), 40)];
        assert!(validate(&cfg).is_err(), "address prefix too long");
    }

    #[test]
    fn copyable_addresses_leave_out_link_local_and_unusable_ones() {
        let a = |s: &str, scope| Address {
            addr: s.parse().unwrap(),
            prefix_len: 64,
            scope,
            tentative: false,
            dad_failed: false,
            deprecated: false,
            permanent: true,
        };
        assert!(a("2001:db8::2", Scope::Universe).copyable());
        assert!(a("192.0.2.2", Scope::Universe).copyable());
        assert!(!a("fe80::1", Scope::Link).copyable());
        assert!(!a("169.254.1.1", Scope::Link).copyable());
        assert!(!a("127.0.0.1", Scope::Host).copyable());
        let mut t = a("2001:db8::3", Scope::Universe);
        t.tentative = true;
        assert!(!t.copyable());
    }

    #[test]
    fn an_ext_ack_is_read_after_the_echoed_header() {
        // An echoed nlmsghdr, then NLMSGERR_ATTR_MSG "bad gw\0" padded.
        let mut payload = vec![0u8; NLMSGHDR_LEN];
        payload.extend_from_slice(&11u16.to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(b"bad gw\0\0");
        assert_eq!(ext_ack_text(&payload).as_deref(), Some("bad gw"));
        assert_eq!(ext_ack_text(&payload[..4]), None);
    }
}
