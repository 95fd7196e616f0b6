//! # The command lines pasta's clients build
//!
//! pasta must be a drop-in replacement: the programs that start it build
//! its arguments themselves and do not change for us. This module builds
//! them exactly as those clients do (same options, same order), from their
//! observable behaviour:
//! - Podman 4.4 (`--network pasta`): `--config-net`, one `-t`/`-u
//!   [IP/]H1-H2:C1-C2` per published port and protocol, the user's
//!   `pasta:` options, `-t none -u none -T none -U none` for each kind
//!   nobody asked for, `--no-map-gw` unless the user gave `--map-gw` (not a
//!   pasta option: Podman removes it), `--netns PATH`;
//! - Podman 5 (containers-common's `libnetwork/pasta`): `--config-net`,
//!   the user's options (`--map-gw` removed the same way), the published
//!   ports, `--dns-forward 169.254.1.1` and `--map-guest-addr 169.254.1.2`
//!   unless the user gave their own, the `none`s, `--no-map-gw`, `--quiet`
//!   unless the user asked for `-d`/`--debug`/`--trace`, `--pid FILE`,
//!   `--netns PATH`;
//! - rootlesskit `--net=pasta`: `--stderr`, the interface name, MTU,
//!   `--config-net`, address, netmask, gateway and DNS address from its
//!   CIDR (`.100`, `.2`, `.3`), `--no-map-gw` with
//!   `--disable-host-loopback`, `--ipv4-only` without IPv6, `auto` or
//!   `none` port forwarding, then `--userns=/proc/CHILD/ns/user
//!   --netns=PATH` (detached network namespace).
//!
//! It only builds argument lists; it never runs anything.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// A transport protocol of a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// `-t`.
    Tcp,
    /// `-u`.
    Udp,
}

/// A published port range (`podman run -p [IP:]H:C[/proto]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMapping {
    /// The host address it is bound to, if any.
    pub host_ip: Option<IpAddr>,
    /// First host port.
    pub host_port: u16,
    /// First container port.
    pub container_port: u16,
    /// How many ports (1 for a single port).
    pub range: u16,
    /// The protocols, in the order given.
    pub protocols: Vec<Proto>,
}

impl PortMapping {
    /// One TCP port, optionally bound to `host_ip`.
    pub fn tcp(host_ip: Option<IpAddr>, host_port: u16, container_port: u16) -> PortMapping {
        PortMapping {
            host_ip,
            host_port,
            container_port,
            range: 1,
            protocols: vec![Proto::Tcp],
        }
    }

    /// One UDP port, optionally bound to `host_ip`.
    pub fn udp(host_ip: Option<IpAddr>, host_port: u16, container_port: u16) -> PortMapping {
        PortMapping {
            protocols: vec![Proto::Udp],
            ..PortMapping::tcp(host_ip, host_port, container_port)
        }
    }

    /// `-t`/`-u` and `[IP/]H1-H2:C1-C2`, once per protocol.
    fn args(&self) -> Vec<String> {
        let addr = self.host_ip.map(|ip| format!("{ip}/")).unwrap_or_default();
        let last = self.range.saturating_sub(1);
        let spec = format!(
            "{addr}{}-{}:{}-{}",
            self.host_port,
            self.host_port.saturating_add(last),
            self.container_port,
            self.container_port.saturating_add(last)
        );
        let mut out = Vec::new();
        for p in &self.protocols {
            out.push(match p {
                Proto::Tcp => "-t".to_string(),
                Proto::Udp => "-u".to_string(),
            });
            out.push(spec.clone());
        }
        out
    }
}

/// Which forwarding kinds an argument list already sets.
#[derive(Default)]
struct Seen {
    tcp: bool,
    udp: bool,
    tcp_ns: bool,
    udp_ns: bool,
}

impl Seen {
    fn scan(args: &[String]) -> Seen {
        let mut s = Seen::default();
        for a in args {
            match a.as_str() {
                "-t" | "--tcp-ports" => s.tcp = true,
                "-u" | "--udp-ports" => s.udp = true,
                "-T" | "--tcp-ns" => s.tcp_ns = true,
                "-U" | "--udp-ns" => s.udp_ns = true,
                _ => {}
            }
        }
        s
    }

    fn nones(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (set, opt) in [
            (self.tcp, "-t"),
            (self.udp, "-u"),
            (self.tcp_ns, "-T"),
            (self.udp_ns, "-U"),
        ] {
            if !set {
                out.push(opt.to_string());
                out.push("none".to_string());
            }
        }
        out
    }
}

/// Removes Podman's own `--map-gw` from `args`; true if it was there.
fn take_map_gw(args: &mut Vec<String>) -> bool {
    let before = args.len();
    args.retain(|a| a != "--map-gw");
    args.len() != before
}

/// Whether `opt` appears anywhere in `args`.
fn has_option(args: &[String], opt: &str) -> bool {
    args.iter().any(|a| a == opt)
}

/// Podman 4.4's arguments for `podman run --network pasta[:OPTIONS] -p ...`.
pub fn podman_4_4(ports: &[PortMapping], user_options: &[String], netns: &Path) -> Vec<String> {
    let mut args = vec!["--config-net".to_string()];
    for p in ports {
        args.extend(p.args());
    }
    args.extend(user_options.iter().cloned());
    let map_gw = take_map_gw(&mut args);
    let nones = Seen::scan(&args).nones();
    args.extend(nones);
    if !map_gw {
        args.push("--no-map-gw".into());
    }
    args.push("--netns".into());
    args.push(netns.display().to_string());
    args
}

/// Podman 5's DNS forwarding address inside the namespace.
pub const PODMAN5_DNS_FORWARD: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// Podman 5's address for the host inside the namespace
/// (`host.containers.internal`).
pub const PODMAN5_HOST_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 2);

/// Podman 5's (containers-common) arguments, with the pid file it reads
/// pasta's PID from.
pub fn podman_5(
    ports: &[PortMapping],
    user_options: &[String],
    netns: &Path,
    pid_file: &Path,
) -> Vec<String> {
    let mut args = vec!["--config-net".to_string()];
    args.extend(user_options.iter().cloned());
    let map_gw = take_map_gw(&mut args);
    let quiet = !args
        .iter()
        .any(|a| matches!(a.as_str(), "-d" | "--debug" | "--trace"));
    let own_dns = has_option(&args, "--dns-forward");
    let own_guest_addr = has_option(&args, "--map-guest-addr");
    for p in ports {
        args.extend(p.args());
    }
    if !own_dns {
        args.push("--dns-forward".into());
        args.push(PODMAN5_DNS_FORWARD.to_string());
    }
    let nones = Seen::scan(&args).nones();
    args.extend(nones);
    if !map_gw {
        args.push("--no-map-gw".into());
    }
    if quiet {
        args.push("--quiet".into());
    }
    if !own_guest_addr {
        args.push("--map-guest-addr".into());
        args.push(PODMAN5_HOST_ADDR.to_string());
    }
    args.push("--pid".into());
    args.push(pid_file.display().to_string());
    args.push("--netns".into());
    args.push(netns.display().to_string());
    args
}

/// rootlesskit's `--net=pasta` settings.
#[derive(Clone, Debug)]
pub struct Rootlesskit {
    /// `--mtu` (rootlesskit's default: 65520).
    pub mtu: u16,
    /// `--cidr`'s network address (default 10.0.2.0).
    pub network: Ipv4Addr,
    /// `--cidr`'s prefix length (default 24).
    pub prefix_len: u8,
    /// `--ifname` (default `tap0`).
    pub ifname: String,
    /// `--disable-host-loopback`.
    pub disable_host_loopback: bool,
    /// `--ipv6`.
    pub enable_ipv6: bool,
    /// Implicit port forwarding (`--port-driver=implicit`).
    pub implicit_port_forwarding: bool,
}

impl Default for Rootlesskit {
    fn default() -> Self {
        Rootlesskit {
            mtu: 65520,
            network: Ipv4Addr::new(10, 0, 2, 0),
            prefix_len: 24,
            ifname: "tap0".into(),
            disable_host_loopback: false,
            enable_ipv6: false,
            implicit_port_forwarding: false,
        }
    }
}

impl Rootlesskit {
    fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network).wrapping_add(n))
    }

    /// The namespace's address (`.100` of the CIDR).
    pub fn address(&self) -> Ipv4Addr {
        self.nth(100)
    }

    /// The gateway (`.2`).
    pub fn gateway(&self) -> Ipv4Addr {
        self.nth(2)
    }

    /// The DNS address (`.3`).
    pub fn dns(&self) -> Ipv4Addr {
        self.nth(3)
    }

    /// The arguments for a detached network namespace at `netns`, owned
    /// by the user namespace at `userns`.
    pub fn args(&self, userns: &Path, netns: &Path) -> Vec<String> {
        let mut args = vec![
            "--stderr".to_string(),
            format!("--ns-ifname={}", self.ifname),
            format!("--mtu={}", self.mtu),
            "--config-net".into(),
            format!("--address={}", self.address()),
            format!("--netmask={}", self.prefix_len),
            format!("--gateway={}", self.gateway()),
            format!("--dns-forward={}", self.dns()),
        ];
        if self.disable_host_loopback {
            args.push("--no-map-gw".into());
        }
        if !self.enable_ipv6 {
            args.push("--ipv4-only".into());
        }
        if self.implicit_port_forwarding {
            args.push("--tcp-ports=auto".into());
            args.push("--udp-ports=auto".into());
        } else {
            args.push("--tcp-ports=none".into());
            args.push("--udp-ports=none".into());
        }
        args.push(format!("--userns={}", userns.display()));
        args.push(format!("--netns={}", netns.display()));
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn podman_4_4_with_nothing_published_closes_every_kind_and_unmaps_the_gateway() {
        let a = podman_4_4(&[], &[], Path::new("/run/user/1000/netns/netns-1"));
        assert_eq!(
            a,
            v(
                "--config-net -t none -u none -T none -U none --no-map-gw --netns /run/user/1000/netns/netns-1"
            )
        );
    }

    #[test]
    fn podman_4_4_publishes_ports_with_their_address_and_keeps_map_gw_out_of_the_argv() {
        let ports = [
            PortMapping::tcp(Some(Ipv4Addr::LOCALHOST.into()), 8080, 80),
            PortMapping::udp(None, 5353, 53),
        ];
        let a = podman_4_4(&ports, &v("--map-gw"), Path::new("/ns"));
        assert_eq!(
            a,
            v(
                "--config-net -t 127.0.0.1/8080-8080:80-80 -u 5353-5353:53-53 -T none -U none --netns /ns"
            )
        );
    }

    #[test]
    fn podman_5_adds_dns_forward_guest_address_quiet_and_pid_file() {
        let ports = [PortMapping::tcp(None, 8080, 80)];
        let a = podman_5(
            &ports,
            &v("-T 6000"),
            Path::new("/ns"),
            Path::new("/tmp/p.pid"),
        );
        assert_eq!(
            a,
            v(
                "--config-net -T 6000 -t 8080-8080:80-80 --dns-forward 169.254.1.1 -u none -U none \
               --no-map-gw --quiet --map-guest-addr 169.254.1.2 --pid /tmp/p.pid --netns /ns"
            )
        );
    }

    #[test]
    fn podman_5_leaves_out_quiet_when_debugging_and_keeps_the_users_dns_forward() {
        let a = podman_5(
            &[],
            &v("--debug --dns-forward 10.0.0.53"),
            Path::new("/ns"),
            Path::new("/p"),
        );
        assert_eq!(
            a,
            v(
                "--config-net --debug --dns-forward 10.0.0.53 -t none -u none -T none -U none \
               --no-map-gw --map-guest-addr 169.254.1.2 --pid /p --netns /ns"
            )
        );
    }

    #[test]
    fn rootlesskit_gives_mtu_addresses_and_the_detached_namespace() {
        let r = Rootlesskit {
            mtu: 1500,
            ..Rootlesskit::default()
        };
        assert_eq!(
            r.args(Path::new("/proc/42/ns/user"), Path::new("/run/rk/netns")),
            v(
                "--stderr --ns-ifname=tap0 --mtu=1500 --config-net --address=10.0.2.100 \
               --netmask=24 --gateway=10.0.2.2 --dns-forward=10.0.2.3 --ipv4-only \
               --tcp-ports=none --udp-ports=none --userns=/proc/42/ns/user --netns=/run/rk/netns"
            )
        );
    }
}
