//! The engine's configuration: a fully resolved description of the guest-side
//! network that the engine impersonates.
//!
//! The binaries build it from the command line and the host's own network
//! configuration (addresses, routes, resolv.conf), exactly as upstream passt
//! copies the host's setup into the guest. The simulator builds it from a
//! scenario. The engine itself never looks anything up: what is here is what
//! it uses.
//!
//! Command-line switches map onto it as follows: `-4` clears [`Config::ipv6`],
//! `-6` clears [`Config::ipv4`], `--no-dhcp`, `--no-dhcpv6`, `--no-ndp`,
//! `--no-ra`, `--no-icmp`, `--no-tcp` and `--no-udp` clear the matching flag
//! in [`Services`].

use crate::addr::{MacAddr, ipv4_same_subnet, ipv6_is_link_local};
use core::time::Duration;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Default MTU offered to the guest, as upstream passt (65520: the largest
/// multiple of 8 below 64 KiB minus the Ethernet header).
pub const DEFAULT_MTU: u16 = 65520;

/// Largest MTU the engine takes: the largest frame (65535 bytes) less the
/// Ethernet header, as upstream's `-m` allows.
pub const MAX_MTU: u16 = 65521;

/// Default flow-table capacity, as upstream (2^17 - 1).
pub const DEFAULT_FLOW_CAPACITY: usize = (1 << 17) - 1;

/// IPv4 side of the guest network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv4Config {
    /// The address given to the guest (by DHCP, or configured by pasta).
    pub addr: Ipv4Addr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// The default gateway the guest is told about; the engine answers ARP
    /// for it (and for every other address but the guest's own).
    pub gateway: Ipv4Addr,
    /// DNS servers announced by DHCP (option 6).
    pub dns: Vec<Ipv4Addr>,
}

/// IPv6 side of the guest network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv6Config {
    /// The global address for the guest (SLAAC prefix source, DHCPv6 IA_NA).
    pub addr: Ipv6Addr,
    /// Prefix length of `addr`; RAs always announce the /64 containing it.
    pub prefix_len: u8,
    /// The default router the guest sees. Router advertisements come from
    /// this address when it is link-local, from [`Ipv6Config::our_link_local`]
    /// otherwise.
    pub gateway: Ipv6Addr,
    /// The engine's own link-local address (default: EUI-64 from our MAC).
    pub our_link_local: Ipv6Addr,
    /// DNS servers announced by RA (RDNSS) and DHCPv6 (option 23).
    pub dns: Vec<Ipv6Addr>,
}

impl Ipv6Config {
    /// The source address for router advertisements and other router-sent
    /// NDP messages, which must be link-local (RFC 4861 §4.2).
    pub fn router_address(&self) -> Ipv6Addr {
        if ipv6_is_link_local(self.gateway) {
            self.gateway
        } else {
            self.our_link_local
        }
    }
}

/// Which guest-facing services the engine provides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Services {
    /// DHCPv4 server (`--no-dhcp` clears it).
    pub dhcp: bool,
    /// DHCPv6 server (`--no-dhcpv6`).
    pub dhcpv6: bool,
    /// Neighbour discovery: NS/NA (`--no-ndp` clears this and RAs).
    pub ndp: bool,
    /// Router advertisements (`--no-ra`).
    pub ra: bool,
    /// ICMP/ICMPv6 echo translation (`--no-icmp`).
    pub icmp: bool,
    /// TCP translation (`--no-tcp`).
    pub tcp: bool,
    /// UDP translation (`--no-udp`).
    pub udp: bool,
}

impl Default for Services {
    fn default() -> Self {
        Services {
            dhcp: true,
            dhcpv6: true,
            ndp: true,
            ra: true,
            icmp: true,
            tcp: true,
            udp: true,
        }
    }
}

/// The address translation rules of upstream passt (`--map-host-loopback`,
/// `--map-guest-addr`, `--dns-forward`, `--dns-host`, `--no-map-gw`).
/// [`crate::mapping`] applies them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Mapping {
    /// Guest traffic to this IPv4 address reaches the host's loopback
    /// (127.0.0.1), and host loopback peers appear to the guest from it.
    /// Default: the IPv4 gateway; `None` with `--no-map-gw`.
    pub host_loopback_v4: Option<Ipv4Addr>,
    /// Same for IPv6 (::1). Default: the IPv6 gateway.
    pub host_loopback_v6: Option<Ipv6Addr>,
    /// Guest traffic to this IPv4 address reaches the host's own address
    /// (`--map-guest-addr`).
    pub guest_addr_v4: Option<Ipv4Addr>,
    /// Same for IPv6.
    pub guest_addr_v6: Option<Ipv6Addr>,
    /// The host's own IPv4 address (target of `--map-guest-addr`).
    pub host_addr_v4: Option<Ipv4Addr>,
    /// The host's own IPv6 address.
    pub host_addr_v6: Option<Ipv6Addr>,
    /// Guest DNS queries to this IPv4 address go to the host's resolver
    /// (`--dns-forward`).
    pub dns_forward_v4: Option<Ipv4Addr>,
    /// Same for IPv6.
    pub dns_forward_v6: Option<Ipv6Addr>,
    /// Where forwarded DNS queries go (`--dns-host`; default: the first
    /// resolver of the host, possibly a loopback one like 127.0.0.53).
    pub dns_host_v4: Option<Ipv4Addr>,
    /// Same for IPv6.
    pub dns_host_v6: Option<Ipv6Addr>,
}

/// Everything the engine needs to know about the network it presents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Our own MAC: the source of every frame we send to the guest.
    pub our_mac: MacAddr,
    /// The guest's MAC if known in advance; otherwise learnt from its first
    /// frame (until then frames go to broadcast).
    pub guest_mac: Option<MacAddr>,
    /// MTU announced to the guest (DHCP option 26, RA MTU option) and the
    /// ceiling for frames we build (plus the 14-byte Ethernet header).
    pub mtu: u16,
    /// Whether DHCP and router advertisements carry the MTU (`-m 0`: no).
    pub announce_mtu: bool,
    /// Where outbound sockets are bound (`-o`, `--outbound-if4/6`).
    pub outbound: Outbound,
    /// IPv4 guest network, `None` with `-6`.
    pub ipv4: Option<Ipv4Config>,
    /// IPv6 guest network, `None` with `-4`.
    pub ipv6: Option<Ipv6Config>,
    /// DNS search domains (DHCP option 119, RA DNSSL, DHCPv6 option 24).
    pub dns_search: Vec<String>,
    /// Hostname for DHCP option 12 (`-H`).
    pub hostname: Option<String>,
    /// Fully qualified name for DHCP option 81 / DHCPv6 option 39 (`--fqdn`).
    pub fqdn: Option<String>,
    /// Services switched on.
    pub services: Services,
    /// DHCPv4 lease time announced (upstream: effectively infinite; we use
    /// one hour and renew happily).
    pub dhcp_lease_time: Duration,
    /// Interval between unsolicited router advertisements.
    pub ra_interval: Duration,
    /// Router lifetime announced in RAs.
    pub ra_router_lifetime: Duration,
    /// Address translation rules (the only NAT there is).
    pub mapping: Mapping,
    /// Fixed capacity of the flow table, chosen at start.
    pub flow_capacity: usize,
    /// Idle time after which a UDP flow that only ever carried datagrams
    /// one way is closed (upstream: 30 s).
    pub udp_timeout: Duration,
    /// Idle time after which a UDP flow that saw datagrams both ways is
    /// closed (upstream: 120 s, like conntrack's "assured" UDP).
    pub udp_timeout_bidir: Duration,
    /// Idle time after which an ICMP echo flow (ping socket) is closed
    /// (upstream: 60 s).
    pub icmp_timeout: Duration,
    /// Capacity of the transmit queue, in frames.
    pub tx_queue_frames: usize,
    /// Capacity of the transmit queue, in bytes.
    pub tx_queue_bytes: usize,
    /// pasta's loopback fast path (see [`Splice`]).
    pub splice: Splice,
}

/// Whether traffic between the host's loopback and the guest namespace's
/// loopback is spliced socket to socket (pasta) instead of crossing the
/// guest transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Splice {
    /// Never (passt, which has no namespace; pasta's `--no-splice`):
    /// connections from the host's loopback to forwarded ports go to the
    /// guest like any other, and `-T`/`-U` have nothing to serve them.
    #[default]
    Off,
    /// pasta's default: loopback peers of `-t`/`-u` ports are spliced to
    /// the namespace's loopback, `-T`/`-U` ports to the host's; everything
    /// else crosses the tap.
    On,
    /// `--splice-only`: there is no guest transport; connections and
    /// datagrams that cannot be spliced (peers off loopback) are refused
    /// (RST) or dropped, and counted.
    Only,
}

impl Splice {
    /// Loopback traffic is spliced.
    pub fn enabled(self) -> bool {
        self != Splice::Off
    }
}

/// Where the sockets of guest-initiated traffic are bound on the host:
/// upstream's `-o/--outbound` (a source address per family) and
/// `--outbound-if4/6` (`SO_BINDTODEVICE`). Empty: routing decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outbound {
    /// Source address of IPv4 outbound sockets.
    pub addr_v4: Option<Ipv4Addr>,
    /// Source address of IPv6 outbound sockets.
    pub addr_v6: Option<Ipv6Addr>,
    /// Interface IPv4 outbound sockets are bound to.
    pub if_v4: Option<crate::host_io::IfName>,
    /// Interface IPv6 outbound sockets are bound to.
    pub if_v6: Option<crate::host_io::IfName>,
}

impl Outbound {
    /// The place (interface) and local address for an outbound socket
    /// toward `remote`; `port` is the local port asked for. Traffic to the
    /// host's loopback (the gateway mapping) is never bound: it cannot
    /// leave through another interface or from another address.
    pub fn bind_for(
        &self,
        remote: std::net::IpAddr,
        port: u16,
    ) -> (crate::host_io::Place, Option<std::net::SocketAddr>) {
        use std::net::{IpAddr, SocketAddr};
        let remote = match remote {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(remote, IpAddr::V4),
            v4 => v4,
        };
        if remote.is_loopback() {
            return (crate::host_io::Place::HOST, None);
        }
        let (device, local) = match remote {
            IpAddr::V4(_) => (self.if_v4, self.addr_v4.map(IpAddr::V4)),
            IpAddr::V6(_) => (self.if_v6, self.addr_v6.map(IpAddr::V6)),
        };
        let place = crate::host_io::Place {
            device,
            ..crate::host_io::Place::HOST
        };
        (place, local.map(|a| SocketAddr::new(a, port)))
    }
}

/// A configuration the engine refuses to run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Neither IPv4 nor IPv6 is configured.
    #[error("no IPv4 or IPv6 configuration: at least one address family is needed")]
    NoAddressFamily,
    /// The MTU is outside what the engine can carry.
    #[error("MTU {0} is out of range (68 to 65521 bytes)")]
    MtuOutOfRange(u16),
    /// An IPv4 prefix longer than 32 bits.
    #[error("IPv4 prefix length {0} is out of range (0 to 32)")]
    Ipv4PrefixOutOfRange(u8),
    /// An IPv6 prefix longer than 128 bits.
    #[error("IPv6 prefix length {0} is out of range (0 to 128)")]
    Ipv6PrefixOutOfRange(u8),
    /// Our MAC is multicast or zero.
    #[error("our MAC address {0} is not a unicast address")]
    BadOurMac(MacAddr),
    /// The gateway is the guest's own address.
    #[error("gateway {0} is the guest's own address")]
    GatewayIsGuest(String),
    /// A zero-sized table or queue.
    #[error("{0} must be greater than zero")]
    ZeroCapacity(&'static str),
    /// The transmit queue cannot hold one frame of MTU size.
    #[error("transmit queue of {bytes} bytes cannot hold one {mtu}-byte frame")]
    TxQueueTooSmall {
        /// Queue size.
        bytes: usize,
        /// MTU that does not fit.
        mtu: u16,
    },
}

impl Config {
    /// A configuration with both address families in documentation ranges
    /// (192.0.2.0/24, 2001:db8::/64): what the simulator and tests start from.
    pub fn example() -> Self {
        let our_mac = MacAddr::PASST_DEFAULT;
        Config {
            our_mac,
            guest_mac: None,
            mtu: DEFAULT_MTU,
            announce_mtu: true,
            outbound: Outbound::default(),
            ipv4: Some(Ipv4Config {
                addr: Ipv4Addr::new(192, 0, 2, 15),
                prefix_len: 24,
                gateway: Ipv4Addr::new(192, 0, 2, 1),
                dns: vec![Ipv4Addr::new(192, 0, 2, 53)],
            }),
            ipv6: Some(Ipv6Config {
                addr: "2001:db8::15".parse().expect("literal"),
                prefix_len: 64,
                gateway: "fe80::1".parse().expect("literal"),
                our_link_local: our_mac.ipv6_link_local(),
                dns: vec!["2001:db8::53".parse().expect("literal")],
            }),
            dns_search: vec!["example.test".to_string()],
            hostname: None,
            fqdn: None,
            services: Services::default(),
            dhcp_lease_time: Duration::from_secs(3600),
            ra_interval: Duration::from_secs(60),
            ra_router_lifetime: Duration::from_secs(65535),
            mapping: Mapping {
                host_loopback_v4: Some(Ipv4Addr::new(192, 0, 2, 1)),
                host_loopback_v6: Some("fe80::1".parse().expect("literal")),
                ..Mapping::default()
            },
            flow_capacity: DEFAULT_FLOW_CAPACITY,
            udp_timeout: Duration::from_secs(30),
            udp_timeout_bidir: Duration::from_secs(120),
            icmp_timeout: Duration::from_secs(60),
            tx_queue_frames: 256,
            tx_queue_bytes: 4 << 20,
            splice: Splice::Off,
        }
    }

    /// Checks internal consistency; [`crate::Engine::new`] calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ipv4.is_none() && self.ipv6.is_none() {
            return Err(ConfigError::NoAddressFamily);
        }
        if !(68..=MAX_MTU).contains(&self.mtu) {
            return Err(ConfigError::MtuOutOfRange(self.mtu));
        }
        if !self.our_mac.is_unicast() {
            return Err(ConfigError::BadOurMac(self.our_mac));
        }
        if let Some(v4) = &self.ipv4 {
            if v4.prefix_len > 32 {
                return Err(ConfigError::Ipv4PrefixOutOfRange(v4.prefix_len));
            }
            if v4.gateway == v4.addr {
                return Err(ConfigError::GatewayIsGuest(v4.addr.to_string()));
            }
        }
        if let Some(v6) = &self.ipv6 {
            if v6.prefix_len > 128 {
                return Err(ConfigError::Ipv6PrefixOutOfRange(v6.prefix_len));
            }
            if v6.gateway == v6.addr {
                return Err(ConfigError::GatewayIsGuest(v6.addr.to_string()));
            }
        }
        if self.flow_capacity == 0 {
            return Err(ConfigError::ZeroCapacity("flow table capacity"));
        }
        if self.tx_queue_frames == 0 {
            return Err(ConfigError::ZeroCapacity("transmit queue frames"));
        }
        if self.tx_queue_bytes < usize::from(self.mtu) + 14 {
            return Err(ConfigError::TxQueueTooSmall {
                bytes: self.tx_queue_bytes,
                mtu: self.mtu,
            });
        }
        Ok(())
    }

    /// Whether the IPv4 gateway lies outside the guest's subnet, in which case
    /// DHCP also announces a classless static route to it (RFC 3442).
    pub fn ipv4_gateway_off_subnet(&self) -> bool {
        self.ipv4
            .as_ref()
            .is_some_and(|v4| !ipv4_same_subnet(v4.addr, v4.gateway, v4.prefix_len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_is_valid() {
        Config::example().validate().unwrap();
        assert!(!Config::example().ipv4_gateway_off_subnet());
    }

    #[test]
    fn rejects_inconsistent() {
        let mut c = Config::example();
        c.ipv4 = None;
        c.ipv6 = None;
        assert_eq!(c.validate(), Err(ConfigError::NoAddressFamily));

        let mut c = Config::example();
        c.mtu = 10;
        assert_eq!(c.validate(), Err(ConfigError::MtuOutOfRange(10)));

        let mut c = Config::example();
        c.our_mac = MacAddr::BROADCAST;
        assert!(matches!(c.validate(), Err(ConfigError::BadOurMac(_))));

        let mut c = Config::example();
        c.ipv4.as_mut().unwrap().gateway = c.ipv4.as_ref().unwrap().addr;
        assert!(matches!(c.validate(), Err(ConfigError::GatewayIsGuest(_))));

        let mut c = Config::example();
        c.tx_queue_bytes = 100;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TxQueueTooSmall { .. })
        ));
    }

    #[test]
    fn off_subnet_gateway_detected() {
        let mut c = Config::example();
        c.ipv4.as_mut().unwrap().gateway = Ipv4Addr::new(198, 51, 100, 1);
        assert!(c.ipv4_gateway_off_subnet());
    }

    #[test]
    fn router_address_is_link_local() {
        let mut c = Config::example();
        let v6 = c.ipv6.as_mut().unwrap();
        assert_eq!(v6.router_address(), "fe80::1".parse::<Ipv6Addr>().unwrap());
        v6.gateway = "2001:db8::1".parse().unwrap();
        assert_eq!(v6.router_address(), v6.our_link_local);
    }
}
