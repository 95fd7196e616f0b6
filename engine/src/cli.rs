//! The `passt` command line, compatible with upstream passt's options.
//!
//! This module owns the translation of argument strings into [`Options`]
//! ([`parse_args`]) and of options plus the detected host network into an
//! engine [`Config`] ([`build_config`]). Both are pure functions: they never
//! touch a socket, a file or the process (the binary and
//! [`crate::runtime`] does that), so they are tested on plain strings.
//!
//! Errors are one-line messages worded as upstream passt words them, and every
//! error exits with status 1 as upstream does ([`CliError::exit_code`]); clap's
//! own exit status (2) and multi-line messages are never shown.
//!
//! Port forwarding options (`-t`/`-u`) are parsed with [`crate::fwd`] into
//! [`Forwarding`] (malformed specifications are one-line errors like every
//! other option); binding the forwarded ports is the event loop's
//! ([`crate::runtime::forward`]). Address mappings, DNS forwarding and
//! outbound binding become the [`Config`]'s `mapping` and `outbound`.
//! Where upstream lets the last of two options win (`-q`/`-d`/`--trace`,
//! `-4`/`-6`), the order comes from clap's argument indices. docs/cli.md's
//! option table is the reference, and `engine/tests/cli_table.rs` runs it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use crate::addr::MacAddr;
use crate::config::{Config, DEFAULT_MTU, Ipv4Config, Ipv6Config, Outbound, Services};
use crate::fwd::{self, ForwardSpec, ForwardSpecBuilder, Program, SpecContext};
use crate::host_io::IfName;
use crate::hostnet::HostNetwork;

mod pasta;
pub use pasta::{NETNS_RUN_DIR, PastaOptions, PastaTarget, pasta_help_text, pasta_version_text};

/// Default `--log-size`, as upstream: 1 MiB.
pub const DEFAULT_LOG_SIZE: u64 = 1 << 20;
/// Smallest `--log-size` upstream accepts (observed: 40959 is refused).
pub const MIN_LOG_SIZE: u64 = 40960;
/// Largest `-m`: the largest IP packet (65535) less an Ethernet header.
pub const MAX_MTU: u16 = 65521;
/// Smallest MTU IPv4 can work with (RFC 791: 68 octets).
pub const MIN_MTU_V4: u16 = 68;
/// Smallest MTU IPv6 can work with (RFC 8200 §5: 1280 octets).
pub const MIN_MTU_V6: u16 = 1280;

/// What `--print-capabilities` prints: the vhost-user backend capabilities
/// (vhost-user specification, "Backend program conventions"): a network
/// device, no optional features. `--vhost-user` itself is refused as not
/// supported yet (docs/decisions.md).
pub const VHOST_USER_CAPABILITIES: &str = "{\n  \"type\": \"net\"\n}\n";

/// IPv4 guest address used when the host has no IPv4 default route (RFC 3927
/// link-local block; see `docs/cli.md`).
pub const LINK_LOCAL_GUEST_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 2, 1);
/// IPv4 gateway used together with [`LINK_LOCAL_GUEST_V4`].
pub const LINK_LOCAL_GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 2, 2);
/// Prefix length of the link-local fallback (169.254.0.0/16, RFC 3927 §2.1).
pub const LINK_LOCAL_PREFIX_V4: u8 = 16;

/// Why the command line was not turned into a running configuration. Every
/// variant but [`CliError::Help`] and [`CliError::Version`] is an error with
/// exit status 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// A bad or conflicting option, or a configuration that cannot work: the
    /// message is one line, printed to standard error.
    #[error("{0}")]
    Invalid(String),
    /// `-h`/`--help`: the help text, printed to standard output (status 0).
    #[error("{0}")]
    Help(String),
    /// `--version`: the version text, printed to standard output (status 0).
    #[error("{0}")]
    Version(String),
    /// `--print-capabilities`: the vhost-user backend capabilities (JSON),
    /// printed to standard output (status 0).
    #[error("{0}")]
    Capabilities(String),
}

impl CliError {
    /// The process exit status for this outcome: 0 for help and version, 1
    /// otherwise (upstream's status for every configuration error).
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Help(_) | CliError::Version(_) | CliError::Capabilities(_) => 0,
            CliError::Invalid(_) => 1,
        }
    }

    fn invalid(msg: impl Into<String>) -> CliError {
        CliError::Invalid(msg.into())
    }
}

/// What `--dns` says about DNS servers.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum DnsChoice {
    /// No `-D`: use the host's `/etc/resolv.conf`.
    #[default]
    FromHost,
    /// `-D none`: announce no DNS server.
    Disabled,
    /// `-D ADDR...`: these servers, in order.
    Servers(Vec<IpAddr>),
}

/// What `--search` says about the DNS search list.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum SearchChoice {
    /// No `-S`: use the host's `/etc/resolv.conf`.
    #[default]
    FromHost,
    /// `-S none`: announce no search list.
    Disabled,
    /// `-S "a b"...`: these domains, in order.
    Domains(Vec<String>),
}

/// An option that may be given once per address family (`-a`, `-g`, `-o`,
/// `--dns-forward`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PerFamily {
    /// The IPv4 value, if given.
    pub v4: Option<Ipv4Addr>,
    /// The IPv6 value, if given.
    pub v6: Option<Ipv6Addr>,
}

/// `--map-host-loopback` and `--map-guest-addr` accept `none` as well.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Mapping {
    /// The addresses given (at most one per family).
    pub addrs: PerFamily,
    /// `none` was given: disable this mapping.
    pub disabled: bool,
}

/// `--runas UID[:GID]` (numbers or names; resolved by the binary).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// User: a numeric UID or a login name.
    pub user: String,
    /// Group: a numeric GID or a group name.
    pub group: Option<String>,
}

/// Verbosity chosen by `-q`, `-d` and `--trace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Verbosity {
    /// `-q`: errors and warnings only.
    Quiet,
    /// Default: informational messages too.
    #[default]
    Info,
    /// `-d`.
    Debug,
    /// `--trace`: per-packet messages.
    Trace,
}

/// The port forwarding the command line asks for (`-t`, `-u`), resolved by
/// [`crate::fwd`]: ranges, exclusions, `all` expanded outside the ephemeral
/// range the parser was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forwarding {
    /// TCP: `-t`, or `none` (passt's default).
    pub tcp: ForwardSpec,
    /// UDP: `-u`, or the program's default (passt: `none`) when no `-u` is
    /// given. UDP does not follow `-t`: see docs/cli.md, "UDP and `-t`".
    pub udp: ForwardSpec,
}

impl Forwarding {
    /// Nothing forwarded (passt's default).
    pub fn none() -> Self {
        Forwarding {
            tcp: ForwardSpec::none(),
            udp: ForwardSpec::none(),
        }
    }
}

/// Parses the `-t` and `-u` arguments (each list in the order given).
pub fn parse_forwarding(
    tcp: &[String],
    udp: &[String],
    cx: SpecContext,
) -> Result<Forwarding, CliError> {
    let build = |specs: &[String]| -> Result<ForwardSpecBuilder, CliError> {
        let mut b = ForwardSpecBuilder::new(cx);
        for s in specs {
            b.add(s).map_err(|e| CliError::invalid(e.to_string()))?;
        }
        Ok(b)
    };
    Ok(Forwarding {
        tcp: build(tcp)?.finish(),
        udp: build(udp)?.finish(),
    })
}

/// The `-t`/`-u` argument (of `specs`, in order) that asks for host port
/// `port` on `addr`: what bind errors quote, as upstream does ("for option
/// '-t SPEC'"). Ports of `all` and exclusion-only arguments are attributed
/// like the parser resolves them with `cx`.
pub fn forward_origin(
    specs: &[String],
    addr: Option<IpAddr>,
    port: u16,
    cx: SpecContext,
) -> Option<&str> {
    specs
        .iter()
        .find(|s| {
            fwd::parse(s, &cx).is_ok_and(|spec| {
                spec.rules
                    .iter()
                    .any(|r| r.addr == addr && r.host.contains(port))
            })
        })
        .map(String::as_str)
}

/// Everything the command line says, parsed and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `-q`/`-d`/`--trace`.
    pub verbosity: Verbosity,
    /// `-f`: stay in the foreground.
    pub foreground: bool,
    /// `-e`: log to standard error too.
    pub stderr: bool,
    /// `-l PATH`.
    pub log_file: Option<PathBuf>,
    /// `--log-size BYTES` (default [`DEFAULT_LOG_SIZE`]).
    pub log_size: u64,
    /// `--runas`.
    pub runas: Option<RunAs>,
    /// `--no-sandbox`: debugging only (no namespaces, no seccomp filter);
    /// see `docs/security.md`.
    pub no_sandbox: bool,
    /// `-P PATH`.
    pub pid_file: Option<PathBuf>,
    /// `-p PATH`.
    pub pcap: Option<PathBuf>,
    /// `-c PATH`: the control socket for `pesto`.
    pub conf_path: Option<PathBuf>,
    /// `-a`: guest addresses.
    pub address: PerFamily,
    /// `-n`: IPv4 prefix length.
    pub prefix_len: Option<u8>,
    /// `-g`: gateways.
    pub gateway: PerFamily,
    /// `-M`: our MAC address.
    pub mac: Option<MacAddr>,
    /// `-i`: template interface for both families.
    pub interface: Option<String>,
    /// `--outbound-if4`.
    pub outbound_if4: Option<String>,
    /// `--outbound-if6`.
    pub outbound_if6: Option<String>,
    /// `-o`: outbound source addresses.
    pub outbound: PerFamily,
    /// `-m`: MTU (`Some(0)`: upstream's "do not assign", see `docs/cli.md`).
    pub mtu: Option<u16>,
    /// `-4`.
    pub ipv4_only: bool,
    /// `-6`.
    pub ipv6_only: bool,
    /// `-D`.
    pub dns: DnsChoice,
    /// `-S`.
    pub search: SearchChoice,
    /// `--no-dhcp-dns`.
    pub no_dhcp_dns: bool,
    /// `--no-dhcp-search`.
    pub no_dhcp_search: bool,
    /// `--dns-forward`.
    pub dns_forward: PerFamily,
    /// `--dns-host`.
    pub dns_host: PerFamily,
    /// `--map-host-loopback`.
    pub map_host_loopback: Mapping,
    /// `--map-guest-addr`.
    pub map_guest_addr: Mapping,
    /// `--no-map-gw`.
    pub no_map_gw: bool,
    /// Services left on by the `--no-*` switches.
    pub services: Services,
    /// `-t` specs, raw, in order.
    pub tcp_ports: Vec<String>,
    /// `-u` specs, raw, in order.
    pub udp_ports: Vec<String>,
    /// `-t`/`-u` resolved (see [`parse_forwarding`]).
    pub forwarding: Forwarding,
    /// `-H`.
    pub hostname: Option<String>,
    /// `--fqdn`.
    pub fqdn: Option<String>,
    /// `-a ADDR/PREFIX` for IPv6: the prefix length announced.
    pub prefix_len_v6: Option<u8>,
    /// Warnings about accepted values (`-m` below what a family needs), for
    /// the binary to log once logging is set up.
    pub warnings: Vec<String>,
    /// `--stats DELAY`: log event counters at most every DELAY seconds.
    pub stats: Option<u32>,
    /// `--freebind`: forwarded ports may be bound to non-local addresses
    /// (`IP_FREEBIND`/`IPV6_FREEBIND`).
    pub freebind: bool,
    /// `--chroot-fallback`: for the isolation step.
    pub chroot_fallback: bool,
    /// `-s PATH`.
    pub socket: Option<PathBuf>,
    /// `-F FD`.
    pub fd: Option<i32>,
    /// `-1` (also implied by `-F`).
    pub one_off: bool,
    /// pasta's own options (`None` for passt): [`PastaOptions`].
    pub pasta: Option<PastaOptions>,
}

/// The raw clap view: every value a string, checked by [`parse_args`] with
/// upstream's messages.
#[derive(Parser, Debug)]
#[command(
    name = "passt",
    about = "Plug A Simple Socket Transport: user-mode networking for virtual machines",
    disable_help_flag = true,
    disable_version_flag = true,
    infer_long_args = true,
    args_override_self = true,
    max_term_width = 100
)]
struct RawArgs {
    /// Be verbose
    #[arg(short = 'd', long = "debug")]
    debug: bool,
    /// Be extra verbose, implies --debug
    #[arg(long = "trace")]
    trace: bool,
    /// Don't print informational messages
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Don't run in background
    #[arg(short = 'f', long = "foreground")]
    foreground: bool,
    /// Log to standard error too
    #[arg(short = 'e', long = "stderr")]
    stderr: bool,
    /// Log (only) to the given file
    #[arg(short = 'l', long = "log-file", value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// Maximum size of the log file (default: 1 MiB)
    #[arg(long = "log-size", value_name = "BYTES")]
    log_size: Option<String>,
    /// Run as given UID[:GID] (numbers or names)
    #[arg(long = "runas", value_name = "UID[:GID]")]
    runas: Option<String>,
    /// Debugging only: run without the sandbox (namespaces, seccomp filter)
    #[arg(long = "no-sandbox")]
    no_sandbox: bool,
    /// Display this help message and exit
    #[arg(short = 'h', long = "help")]
    help: bool,
    /// Show version and exit
    #[arg(long = "version")]
    version: bool,
    /// UNIX domain socket path (default: first free /tmp/passt_N.socket, N = 1..64)
    #[arg(
        short = 's',
        long = "socket",
        visible_alias = "socket-path",
        value_name = "PATH"
    )]
    socket: Option<PathBuf>,
    /// Use FD as pre-opened connected socket (implies --one-off)
    #[arg(short = 'F', long = "fd", value_name = "FD")]
    fd: Option<String>,
    /// Quit after handling one single client
    #[arg(short = '1', long = "one-off")]
    one_off: bool,
    /// Log guest-facing traffic to a pcap file
    #[arg(short = 'p', long = "pcap", value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// Write own PID to the given file
    #[arg(short = 'P', long = "pid", value_name = "FILE")]
    pid: Option<PathBuf>,
    /// Control socket for run-time forwarding changes (pesto)
    #[arg(short = 'c', long = "conf-path", value_name = "PATH")]
    conf_path: Option<PathBuf>,
    /// Assign MTU via DHCP/NDP (default: 65520)
    #[arg(short = 'm', long = "mtu", value_name = "MTU")]
    mtu: Option<String>,
    /// Assign IPv4 or IPv6 address (once per family; default: from the host)
    #[arg(short = 'a', long = "address", value_name = "ADDR")]
    address: Vec<String>,
    /// Assign IPv4 netmask, dot-decimal or bits (default: from the host)
    #[arg(short = 'n', long = "netmask", value_name = "MASK")]
    netmask: Option<String>,
    /// Use source MAC address ADDR (default: 9a:55:9a:55:9a:55)
    #[arg(short = 'M', long = "mac-addr", value_name = "ADDR")]
    mac_addr: Option<String>,
    /// Pass IPv4 or IPv6 address as gateway (once per family; default: from the host)
    #[arg(short = 'g', long = "gateway", value_name = "ADDR")]
    gateway: Vec<String>,
    /// Interface for addresses and routes (default: the one with the default route)
    #[arg(short = 'i', long = "interface", value_name = "NAME")]
    interface: Option<String>,
    /// Bind to address as outbound source (once per family)
    #[arg(short = 'o', long = "outbound", value_name = "ADDR")]
    outbound: Vec<String>,
    /// Bind to outbound interface for IPv4
    #[arg(long = "outbound-if4", value_name = "NAME")]
    outbound_if4: Option<String>,
    /// Bind to outbound interface for IPv6
    #[arg(long = "outbound-if6", value_name = "NAME")]
    outbound_if6: Option<String>,
    /// Enable IPv4 operation only
    #[arg(short = '4', long = "ipv4-only")]
    ipv4_only: bool,
    /// Enable IPv6 operation only
    #[arg(short = '6', long = "ipv6-only")]
    ipv6_only: bool,
    /// Use IPv4 or IPv6 address as DNS (repeatable; 'none' disables; default: /etc/resolv.conf)
    #[arg(short = 'D', long = "dns", value_name = "ADDR")]
    dns: Vec<String>,
    /// Space-separated list of search domains (repeatable; 'none' disables)
    #[arg(short = 'S', long = "search", value_name = "LIST")]
    search: Vec<String>,
    /// No DNS list in DHCP/DHCPv6/NDP
    #[arg(long = "no-dhcp-dns")]
    no_dhcp_dns: bool,
    /// No search list in DHCP/DHCPv6/NDP
    #[arg(long = "no-dhcp-search")]
    no_dhcp_search: bool,
    /// Forward DNS queries sent to ADDR (once per family)
    #[arg(long = "dns-forward", value_name = "ADDR")]
    dns_forward: Vec<String>,
    /// Host nameserver to direct queries to (once per family)
    #[arg(long = "dns-host", value_name = "ADDR")]
    dns_host: Vec<String>,
    /// Translate ADDR to refer to the host's loopback ('none' disables)
    #[arg(long = "map-host-loopback", value_name = "ADDR")]
    map_host_loopback: Vec<String>,
    /// Translate ADDR to the guest's address on the host ('none' disables)
    #[arg(long = "map-guest-addr", value_name = "ADDR")]
    map_guest_addr: Vec<String>,
    /// Don't map gateway address to host
    #[arg(long = "no-map-gw")]
    no_map_gw: bool,
    /// Disable TCP protocol handler
    #[arg(long = "no-tcp")]
    no_tcp: bool,
    /// Disable UDP protocol handler
    #[arg(long = "no-udp")]
    no_udp: bool,
    /// Disable ICMP/ICMPv6 echo handler
    #[arg(long = "no-icmp")]
    no_icmp: bool,
    /// Disable DHCP server
    #[arg(long = "no-dhcp")]
    no_dhcp: bool,
    /// Disable DHCPv6 server
    #[arg(long = "no-dhcpv6")]
    no_dhcpv6: bool,
    /// Disable NDP responses (and router advertisements)
    #[arg(long = "no-ndp")]
    no_ndp: bool,
    /// Disable router advertisements
    #[arg(long = "no-ra")]
    no_ra: bool,
    /// TCP ports to forward to the guest: none, all, or [ADDR/]PORT[-LAST][:GUEST[-LAST]][,~EXCLUDED]... (repeatable; default: none)
    #[arg(short = 't', long = "tcp-ports", value_name = "SPEC")]
    tcp_ports: Vec<String>,
    /// UDP ports to forward to the guest, as -t (default: the -t ports, untranslated)
    #[arg(short = 'u', long = "udp-ports", value_name = "SPEC")]
    udp_ports: Vec<String>,
    /// Hostname to configure the guest with (DHCP option 12)
    #[arg(short = 'H', long = "hostname", value_name = "NAME")]
    hostname: Option<String>,
    /// FQDN to configure the guest with (DHCP option 81, DHCPv6 option 39)
    #[arg(long = "fqdn", value_name = "NAME")]
    fqdn: Option<String>,
    /// Log event statistics at most every DELAY seconds
    #[arg(long = "stats", value_name = "DELAY")]
    stats: Option<String>,
    /// Allow binding forwarded ports to non-local addresses
    #[arg(long = "freebind")]
    freebind: bool,
    /// Fall back to chroot if the mount namespace cannot be set up
    #[arg(long = "chroot-fallback")]
    chroot_fallback: bool,
    /// Print the vhost-user backend capabilities (JSON) and exit
    #[arg(long = "print-capabilities")]
    print_capabilities: bool,
    /// vhost-user mode (not supported yet)
    #[arg(long = "vhost-user")]
    vhost_user: bool,
    /// vhost-user: path of the TCP_REPAIR helper socket (not supported yet)
    #[arg(long = "repair-path", value_name = "PATH")]
    repair_path: Option<PathBuf>,
    /// vhost-user: exit after migration (not supported yet)
    #[arg(long = "migrate-exit")]
    migrate_exit: bool,
    /// vhost-user: close sockets on migration (not supported yet)
    #[arg(long = "migrate-no-linger")]
    migrate_no_linger: bool,
    /// pasta's own options (hidden from passt's help).
    #[command(flatten)]
    pasta: pasta::RawPasta,
}

/// The help text (`-h`).
pub fn help_text() -> String {
    let mut cmd = RawArgs::command();
    cmd.render_help().to_string()
}

/// Every long option `passt` accepts, aliases included, without the
/// leading `--` (what docs/cli.md's table must cover). pasta's own options
/// are hidden from passt and documented in docs/pasta.md.
pub fn long_options() -> Vec<String> {
    let cmd = RawArgs::command();
    let mut out: Vec<String> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .flat_map(|a| {
            a.get_long()
                .into_iter()
                .chain(a.get_all_aliases().unwrap_or_default())
                .map(str::to_string)
        })
        .collect();
    out.sort();
    out
}

/// The version text (`--version`).
pub fn version_text() -> String {
    format!(
        "passt (passt-rs) {}\nA Rust re-implementation of passt; license {}.\n",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_LICENSE")
    )
}

/// Parses a command line (`args[0]` is the program name), with the
/// kernel's default ephemeral port range for `-t all` and exclusion-only
/// specifications (see [`parse_args_in`]).
pub fn parse_args<I, T>(args: I) -> Result<Options, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    parse_args_in(args, SpecContext::new(Program::Passt))
}

/// Parses a command line; port forwarding specifications are resolved in
/// `cx` (the binary passes the host's `ip_local_port_range`).
pub fn parse_args_in<I, T>(args: I, cx: SpecContext) -> Result<Options, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = RawArgs::command()
        .try_get_matches_from(args)
        .map_err(|e| pasta::for_program(clap_error(e), cx.program))?;
    let mut raw = RawArgs::from_arg_matches(&matches)
        .map_err(|e| pasta::for_program(clap_error(e), cx.program))?;
    let is_pasta = cx.program == Program::Pasta;
    if raw.help {
        return Err(CliError::Help(if is_pasta {
            pasta_help_text()
        } else {
            help_text()
        }));
    }
    if raw.version {
        return Err(CliError::Version(if is_pasta {
            pasta_version_text()
        } else {
            version_text()
        }));
    }
    if raw.print_capabilities {
        return Err(CliError::Capabilities(VHOST_USER_CAPABILITIES.to_string()));
    }
    let block = pasta::take_pasta_block(&mut raw, cx.program)?;
    let order = Order(&matches);
    let mut opts = options_from_raw(raw, &order, cx)?;
    pasta::apply_pasta_block(&mut opts, block, cx)?;
    Ok(opts)
}

/// Where options appeared on the command line: for the pairs where the
/// last one given wins (`-q`/`-d`/`--trace`, `-4`/`-6`), as upstream.
struct Order<'a>(&'a ArgMatches);

impl Order<'_> {
    /// Position of the last occurrence of argument `id`, if given.
    fn last(&self, id: &str) -> Option<usize> {
        // Flags have a default value (false) with an index of its own.
        if self.0.value_source(id) != Some(clap::parser::ValueSource::CommandLine) {
            return None;
        }
        self.0.indices_of(id).and_then(|mut i| i.next_back())
    }
}

/// Turns clap's error into upstream's one-line wording.
fn clap_error(e: clap::Error) -> CliError {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    // "--mtu <MTU>" -> "--mtu"
    let name = arg.split_whitespace().next().unwrap_or("").to_string();
    let msg = match e.kind() {
        ErrorKind::UnknownArgument if name.starts_with("--") => {
            format!("passt: unrecognized option '{name}'")
        }
        ErrorKind::UnknownArgument if name.starts_with('-') && name.len() > 1 => {
            let c = name[1..].chars().next().unwrap_or('?');
            format!("passt: invalid option -- '{c}'")
        }
        ErrorKind::UnknownArgument => format!("Extra non-option argument: {name}"),
        ErrorKind::InvalidValue | ErrorKind::NoEquals => {
            format!("passt: option '{name}' requires an argument")
        }
        ErrorKind::ArgumentConflict => format!("passt: conflicting option '{name}'"),
        _ => {
            // Any other clap complaint: its first line, without "error: ".
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid command line");
            format!("passt: {}", first.trim_start_matches("error: "))
        }
    };
    CliError::Invalid(msg)
}

fn parse_per_family(values: &[String], what: &str) -> Result<PerFamily, CliError> {
    let mut out = PerFamily::default();
    for v in values {
        match IpAddr::from_str(v) {
            Ok(IpAddr::V4(a)) if out.v4.is_none() && !a.is_unspecified() => out.v4 = Some(a),
            Ok(IpAddr::V6(a)) if out.v6.is_none() && !a.is_unspecified() => out.v6 = Some(a),
            _ => return Err(CliError::invalid(format!("Invalid {what}: {v}"))),
        }
    }
    Ok(out)
}

/// `--map-host-loopback`/`--map-guest-addr`, in order: the last value of
/// a family wins, and `none` disables the mapping (for both families) until
/// an address is given again, as upstream.
fn parse_mapping(values: &[String], what: &str) -> Result<Mapping, CliError> {
    let mut m = Mapping::default();
    for v in values {
        if v == "none" {
            m = Mapping {
                addrs: PerFamily::default(),
                disabled: true,
            };
            continue;
        }
        match IpAddr::from_str(v) {
            Ok(IpAddr::V4(a)) if !a.is_unspecified() => m.addrs.v4 = Some(a),
            Ok(IpAddr::V6(a)) if !a.is_unspecified() => m.addrs.v6 = Some(a),
            _ => return Err(CliError::invalid(format!("Invalid {what}: {v}"))),
        }
        m.disabled = false;
    }
    Ok(m)
}

/// `-a`: once per family, each optionally with `/PREFIX` (as upstream).
/// Returns the addresses and the IPv4 and IPv6 prefix lengths given.
fn parse_addresses(values: &[String]) -> Result<(PerFamily, Option<u8>, Option<u8>), CliError> {
    let bad = |v: &str| CliError::invalid(format!("Invalid address: {v}"));
    let mut out = PerFamily::default();
    let (mut p4, mut p6) = (None, None);
    for v in values {
        let (a, prefix) = match v.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (v.as_str(), None),
        };
        let prefix = match prefix {
            None => None,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                Some(p.parse::<u8>().map_err(|_| bad(v))?)
            }
            Some(_) => return Err(bad(v)),
        };
        match IpAddr::from_str(a) {
            Ok(IpAddr::V4(a)) if out.v4.is_none() && !a.is_unspecified() => {
                if prefix.is_some_and(|p| p > 32) {
                    return Err(bad(v));
                }
                out.v4 = Some(a);
                p4 = prefix;
            }
            Ok(IpAddr::V6(a)) if out.v6.is_none() && !a.is_unspecified() => {
                if prefix.is_some_and(|p| p > 128) {
                    return Err(bad(v));
                }
                out.v6 = Some(a);
                p6 = prefix;
            }
            _ => return Err(bad(v)),
        }
    }
    Ok((out, p4, p6))
}

/// Parses `-n`: a prefix length (0..=32) or a contiguous dotted netmask.
pub fn parse_netmask(s: &str) -> Option<u8> {
    if let Ok(bits) = s.parse::<u8>() {
        return (bits <= 32).then_some(bits);
    }
    let mask = u32::from(Ipv4Addr::from_str(s).ok()?);
    let ones = mask.leading_ones();
    // Contiguous: all ones then all zeros.
    (mask.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

fn parse_runas(s: &str) -> Result<RunAs, CliError> {
    let (user, group) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    if user.is_empty() || group.is_some_and(str::is_empty) {
        return Err(CliError::invalid(format!("Invalid --runas: {s}")));
    }
    Ok(RunAs {
        user: user.to_string(),
        group: group.map(str::to_string),
    })
}

/// A DNS name for `-H`/`--fqdn`/`-S`: printable, no spaces, at most 253
/// bytes, labels of at most 63 (RFC 1035 §2.3.4).
fn valid_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.')
            .filter(|l| !l.is_empty())
            .all(|l| l.len() <= 63 && l.bytes().all(|b| b.is_ascii_graphic()))
}

fn options_from_raw(raw: RawArgs, order: &Order<'_>, cx: SpecContext) -> Result<Options, CliError> {
    // vhost-user and its companions: accepted, not supported yet.
    for (given, name) in [
        (raw.vhost_user, "--vhost-user"),
        (raw.repair_path.is_some(), "--repair-path"),
        (raw.migrate_exit, "--migrate-exit"),
        (raw.migrate_no_linger, "--migrate-no-linger"),
    ] {
        if given {
            return Err(CliError::invalid(format!(
                "{name}: vhost-user is not supported yet (use the UNIX domain socket, -s)"
            )));
        }
    }
    // -4/-6: the last one given wins, as upstream.
    let (ipv4_only, ipv6_only) = match (order.last("ipv4_only"), order.last("ipv6_only")) {
        (Some(a), Some(b)) => (a > b, b > a),
        (a, b) => (a.is_some(), b.is_some()),
    };
    if raw.socket.is_some() && raw.fd.is_some() {
        return Err(CliError::invalid(
            "Options --socket and --fd are mutually exclusive",
        ));
    }

    // -q, -d, --trace: the last one given wins, as upstream.
    let verbosity = [
        (order.last("quiet"), Verbosity::Quiet),
        (order.last("debug"), Verbosity::Debug),
        (order.last("trace"), Verbosity::Trace),
    ]
    .into_iter()
    .filter_map(|(at, v)| at.map(|at| (at, v)))
    .max_by_key(|(at, _)| *at)
    .map_or(Verbosity::Info, |(_, v)| v);

    let log_size = match &raw.log_size {
        None => DEFAULT_LOG_SIZE,
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n >= MIN_LOG_SIZE => n,
            _ => return Err(CliError::invalid(format!("Invalid --log-size: {s}"))),
        },
    };

    let mut warnings = Vec::new();
    let mtu = match &raw.mtu {
        None => None,
        Some(s) => match s.parse::<u16>() {
            Ok(0) => Some(0),
            Ok(n) if n <= MAX_MTU => {
                if n < MIN_MTU_V4 && !ipv6_only {
                    warnings.push(format!(
                        "MTU {n} is too small for IPv4 (minimum {MIN_MTU_V4})"
                    ));
                }
                if n < MIN_MTU_V6 && !ipv4_only {
                    warnings.push(format!(
                        "MTU {n} is too small for IPv6 (minimum {MIN_MTU_V6})"
                    ));
                }
                Some(n)
            }
            _ => return Err(CliError::invalid(format!("Invalid MTU: {s}"))),
        },
    };

    // Any descriptor: the binary moves 0-2 out of the way of standard I/O.
    let fd = match &raw.fd {
        None => None,
        Some(s) => match s.parse::<i32>() {
            Ok(n) if n >= 0 => Some(n),
            _ => return Err(CliError::invalid(format!("Invalid --fd: {s}"))),
        },
    };

    let stats = match &raw.stats {
        None => None,
        Some(s) => match s.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => return Err(CliError::invalid(format!("Invalid --stats: {s}"))),
        },
    };

    let prefix_len = match &raw.netmask {
        None => None,
        Some(s) => Some(
            parse_netmask(s).ok_or_else(|| CliError::invalid(format!("Invalid netmask: {s}")))?,
        ),
    };

    let mac = match &raw.mac_addr {
        None => None,
        Some(s) => match MacAddr::from_str(s) {
            Ok(m) if m.is_unicast() => Some(m),
            _ => return Err(CliError::invalid(format!("Invalid MAC address: {s}"))),
        },
    };

    let (address, prefix_v4, prefix_len_v6) = parse_addresses(&raw.address)?;
    let prefix_len = prefix_len.or(prefix_v4);
    let gateway = parse_per_family(&raw.gateway, "gateway address")?;
    let outbound = parse_per_family(&raw.outbound, "outbound address")?;
    let dns_forward = parse_per_family(&raw.dns_forward, "--dns-forward address")?;
    let dns_host = parse_per_family(&raw.dns_host, "--dns-host address")?;
    let map_host_loopback = parse_mapping(&raw.map_host_loopback, "--map-host-loopback")?;
    let map_guest_addr = parse_mapping(&raw.map_guest_addr, "--map-guest-addr")?;
    if address
        .v4
        .is_some_and(|a| a.is_loopback() || a.is_multicast() || a.is_broadcast())
        || address
            .v6
            .is_some_and(|a| a.is_loopback() || a.is_multicast())
    {
        let a = raw.address.first().cloned().unwrap_or_default();
        return Err(CliError::invalid(format!("Invalid address: {a}")));
    }

    let dns = if raw.dns.is_empty() {
        DnsChoice::FromHost
    } else if raw.dns.iter().any(|d| d == "none") {
        DnsChoice::Disabled
    } else {
        let mut servers = Vec::new();
        for d in &raw.dns {
            let a = IpAddr::from_str(d)
                .map_err(|_| CliError::invalid(format!("Invalid DNS address: {d}")))?;
            servers.push(a);
        }
        DnsChoice::Servers(servers)
    };

    let search = if raw.search.is_empty() {
        SearchChoice::FromHost
    } else if raw.search.len() == 1 && raw.search[0].trim() == "none" {
        SearchChoice::Disabled
    } else {
        let mut domains = Vec::new();
        for list in &raw.search {
            for d in list.split_whitespace() {
                if !valid_dns_name(d) {
                    return Err(CliError::invalid(format!("Invalid search domain: {d}")));
                }
                domains.push(d.to_string());
            }
        }
        SearchChoice::Domains(domains)
    };

    for (name, v) in [("hostname", &raw.hostname), ("FQDN", &raw.fqdn)] {
        if let Some(v) = v
            && !valid_dns_name(v)
        {
            return Err(CliError::invalid(format!("Invalid {name}: {v}")));
        }
    }

    let runas = raw.runas.as_deref().map(parse_runas).transpose()?;
    let forwarding = parse_forwarding(&raw.tcp_ports, &raw.udp_ports, cx)?;

    let services = Services {
        dhcp: !raw.no_dhcp,
        dhcpv6: !raw.no_dhcpv6,
        // --no-icmp covers ICMPv6 as a whole, NDP included (as upstream).
        ndp: !raw.no_ndp && !raw.no_icmp,
        ra: !raw.no_ra && !raw.no_ndp && !raw.no_icmp,
        icmp: !raw.no_icmp,
        tcp: !raw.no_tcp,
        udp: !raw.no_udp,
    };

    Ok(Options {
        verbosity,
        foreground: raw.foreground,
        stderr: raw.stderr,
        log_file: raw.log_file,
        log_size,
        runas,
        no_sandbox: raw.no_sandbox,
        pid_file: raw.pid,
        pcap: raw.pcap,
        conf_path: raw.conf_path,
        address,
        prefix_len,
        gateway,
        mac,
        interface: raw.interface,
        outbound_if4: raw.outbound_if4,
        outbound_if6: raw.outbound_if6,
        outbound,
        mtu,
        ipv4_only,
        ipv6_only,
        dns,
        search,
        no_dhcp_dns: raw.no_dhcp_dns,
        no_dhcp_search: raw.no_dhcp_search,
        dns_forward,
        dns_host,
        map_host_loopback,
        map_guest_addr,
        no_map_gw: raw.no_map_gw,
        services,
        tcp_ports: raw.tcp_ports,
        udp_ports: raw.udp_ports,
        forwarding,
        hostname: raw.hostname,
        fqdn: raw.fqdn,
        prefix_len_v6,
        warnings,
        stats,
        freebind: raw.freebind,
        chroot_fallback: raw.chroot_fallback,
        one_off: raw.one_off || fd.is_some(),
        socket: raw.socket,
        fd,
        pasta: None,
    })
}

/// The prefix of the classful network `addr` belongs to (RFC 4632 §3.1
/// recalls the class A/B/C split): what upstream assumes for `-a` without
/// `-n` when no host address shares the subnet.
fn classful_prefix(addr: Ipv4Addr) -> u8 {
    match addr.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        192..=223 => 24,
        _ => 32,
    }
}

fn build_ipv4(opts: &Options, host: &HostNetwork) -> Result<Option<Ipv4Config>, CliError> {
    if opts.ipv6_only {
        return Ok(None);
    }
    let host_v4 = host.ipv4.as_ref();
    let (addr, gateway, host_prefix) = match (opts.address.v4, host_v4) {
        (Some(a), _) => {
            // The host address sharing a subnet with the one given, if any,
            // lends its prefix.
            let matching = host.v4_prefix_for(a);
            let gw = opts
                .gateway
                .v4
                .or(host_v4.and_then(|h| h.gateway))
                .unwrap_or(LINK_LOCAL_GATEWAY_V4);
            (a, gw, matching.unwrap_or(classful_prefix(a)))
        }
        (None, Some(h)) => {
            let gw = opts
                .gateway
                .v4
                .or(h.gateway)
                .unwrap_or(LINK_LOCAL_GATEWAY_V4);
            (h.addr, gw, h.prefix_len)
        }
        (None, None) => {
            // No IPv4 default route on the host: link-local fallback.
            let gw = opts.gateway.v4.unwrap_or(LINK_LOCAL_GATEWAY_V4);
            (LINK_LOCAL_GUEST_V4, gw, LINK_LOCAL_PREFIX_V4)
        }
    };
    if gateway == addr {
        return Err(CliError::invalid(format!(
            "Gateway {gateway} is the guest's own address"
        )));
    }
    let dns = guest_dns(opts, host, opts.dns_forward.v4, gateway, |a| match a {
        IpAddr::V4(v) => Some(v),
        IpAddr::V6(_) => None,
    });
    Ok(Some(Ipv4Config {
        addr,
        prefix_len: opts.prefix_len.unwrap_or(host_prefix),
        gateway,
        dns,
    }))
}

/// The resolvers in use (`-D`, else the host's), of every family.
fn resolvers<'a>(opts: &'a Options, host: &'a HostNetwork) -> &'a [IpAddr] {
    match &opts.dns {
        DnsChoice::Disabled => &[],
        DnsChoice::Servers(s) => s,
        DnsChoice::FromHost => &host.dns,
    }
}

/// The first loopback resolver of `family` (such as systemd-resolved's
/// 127.0.0.53): the guest cannot reach it, so queries to the gateway are
/// forwarded to it ([`build_mapping`]), as upstream does.
fn loopback_resolver<A>(
    opts: &Options,
    host: &HostNetwork,
    family: impl Fn(IpAddr) -> Option<A>,
) -> Option<A> {
    resolvers(opts, host)
        .iter()
        .filter(|a| a.is_loopback())
        .find_map(|a| family(*a))
}

/// The resolvers DHCP/RA announce for one address family (`family` picks
/// it): none with `--no-dhcp-dns`, the `--dns-forward` address when given,
/// else `-D` or the host's resolvers, where a loopback resolver (unreachable
/// from the guest) is replaced by `gateway`, whose DNS traffic is forwarded
/// to it (as upstream).
fn guest_dns<A: PartialEq + Copy>(
    opts: &Options,
    host: &HostNetwork,
    forward: Option<A>,
    gateway: A,
    family: impl Fn(IpAddr) -> Option<A>,
) -> Vec<A> {
    if opts.no_dhcp_dns {
        return Vec::new();
    }
    if let Some(fwd) = forward {
        return vec![fwd];
    }
    let mut out: Vec<A> = Vec::new();
    for a in resolvers(opts, host) {
        if a.is_unspecified() {
            continue;
        }
        let Some(v) = family(*a) else { continue };
        let v = if a.is_loopback() { gateway } else { v };
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn build_ipv6(
    opts: &Options,
    host: &HostNetwork,
    our_mac: MacAddr,
) -> Result<Option<Ipv6Config>, CliError> {
    if opts.ipv4_only {
        return Ok(None);
    }
    let host_v6 = host.ipv6.as_ref();
    let our_link_local = our_mac.ipv6_link_local();
    let (addr, prefix_len, host_gw) = match (opts.address.v6, host_v6) {
        (Some(a), h) => (
            a,
            h.map(|h| h.prefix_len).unwrap_or(64),
            h.and_then(|h| h.gateway),
        ),
        (None, Some(h)) => (h.addr, h.prefix_len, h.gateway),
        // No IPv6 default route and no -a: IPv6 stays off (docs/cli.md).
        (None, None) => return Ok(None),
    };
    let gateway = opts.gateway.v6.or(host_gw).unwrap_or(our_link_local);
    if gateway == addr {
        return Err(CliError::invalid(format!(
            "Gateway {gateway} is the guest's own address"
        )));
    }
    let dns = guest_dns(opts, host, opts.dns_forward.v6, gateway, |a| match a {
        IpAddr::V6(v) => Some(v),
        IpAddr::V4(_) => None,
    });
    Ok(Some(Ipv6Config {
        addr,
        prefix_len: opts.prefix_len_v6.unwrap_or(prefix_len),
        gateway,
        our_link_local,
        dns,
    }))
}

/// The address-translation rules (`config::Mapping`) from the options:
/// the gateway stands for the host's loopback unless `--no-map-gw` or
/// `--map-host-loopback none`; `--map-host-loopback ADDR` picks another
/// address; `--map-guest-addr ADDR` stands for the host's own address;
/// `--dns-forward` / `--dns-host` (default: the host's first resolver of
/// that family, loopback ones such as 127.0.0.53 included).
fn build_mapping(
    opts: &Options,
    host: &HostNetwork,
    ipv4: Option<&Ipv4Config>,
    ipv6: Option<&Ipv6Config>,
) -> crate::config::Mapping {
    let loopback_off = opts.no_map_gw || opts.map_host_loopback.disabled;
    let guest_off = opts.map_guest_addr.disabled;
    let v4_of = |a: IpAddr| match a {
        IpAddr::V4(v) => Some(v),
        IpAddr::V6(_) => None,
    };
    let v6_of = |a: IpAddr| match a {
        IpAddr::V6(v) => Some(v),
        IpAddr::V4(_) => None,
    };
    let first_v4 = host.dns.iter().find_map(|a| v4_of(*a));
    let first_v6 = host.dns.iter().find_map(|a| v6_of(*a));
    // A loopback resolver: the gateway stands for it (DNS only), unless
    // --dns-forward names another address.
    let lo_v4 = loopback_resolver(opts, host, v4_of);
    let lo_v6 = loopback_resolver(opts, host, v6_of);
    let auto_v4 = lo_v4.and(ipv4.map(|v| v.gateway));
    let auto_v6 = lo_v6.and(ipv6.map(|v| v.gateway));
    crate::config::Mapping {
        host_loopback_v4: if loopback_off {
            None
        } else {
            opts.map_host_loopback.addrs.v4.or(ipv4.map(|v| v.gateway))
        },
        host_loopback_v6: if loopback_off {
            None
        } else {
            opts.map_host_loopback.addrs.v6.or(ipv6.map(|v| v.gateway))
        },
        guest_addr_v4: if guest_off {
            None
        } else {
            opts.map_guest_addr.addrs.v4
        },
        guest_addr_v6: if guest_off {
            None
        } else {
            opts.map_guest_addr.addrs.v6
        },
        host_addr_v4: host.ipv4.as_ref().map(|h| h.addr),
        host_addr_v6: host.ipv6.as_ref().map(|h| h.addr),
        dns_forward_v4: opts.dns_forward.v4.or(auto_v4),
        dns_forward_v6: opts.dns_forward.v6.or(auto_v6),
        dns_host_v4: opts.dns_host.v4.or(lo_v4).or(first_v4),
        dns_host_v6: opts.dns_host.v6.or(lo_v6).or(first_v6),
    }
}

/// Builds the engine configuration from the options and the host network,
/// as upstream does: the guest gets the host's address, prefix, gateway and
/// resolvers unless `-a`/`-n`/`-g`/`-D`/`-S` say otherwise. See
/// `docs/cli.md` for the defaults and the fallbacks.
pub fn build_config(opts: &Options, host: &HostNetwork) -> Result<Config, CliError> {
    let base = Config::example();
    let our_mac = opts.mac.unwrap_or(MacAddr::PASST_DEFAULT);
    let ipv4 = build_ipv4(opts, host)?;
    let ipv6 = build_ipv6(opts, host, our_mac)?;
    if ipv4.is_none() && ipv6.is_none() {
        return Err(CliError::invalid(
            "No IPv6 default route on the host and -6 given: no address family left (use -a)",
        ));
    }
    let dns_search = if opts.no_dhcp_search {
        Vec::new()
    } else {
        match &opts.search {
            SearchChoice::FromHost => host.search.clone(),
            SearchChoice::Disabled => Vec::new(),
            SearchChoice::Domains(d) => d.clone(),
        }
    };
    // -m 0: announce none (frames stay within the default). Below 68 the
    // engine cannot build IPv4 frames: it works with 68 (the warning was
    // given at parse time).
    let (mtu, announce_mtu) = match opts.mtu {
        None => (DEFAULT_MTU, true),
        Some(0) => (DEFAULT_MTU, false),
        Some(m) => (m.max(MIN_MTU_V4), true),
    };
    let ifname = |n: &Option<String>| -> Result<Option<IfName>, CliError> {
        n.as_deref()
            .map(|s| {
                IfName::new(s)
                    .ok_or_else(|| CliError::invalid(format!("Invalid interface name {s}")))
            })
            .transpose()
    };
    let outbound = Outbound {
        addr_v4: opts.outbound.v4,
        addr_v6: opts.outbound.v6,
        if_v4: ifname(&opts.outbound_if4)?,
        if_v6: ifname(&opts.outbound_if6)?,
    };
    let mapping = build_mapping(opts, host, ipv4.as_ref(), ipv6.as_ref());
    let config = Config {
        our_mac,
        guest_mac: None,
        mtu,
        announce_mtu,
        outbound,
        mapping,
        ipv4,
        ipv6,
        dns_search,
        hostname: opts.hostname.clone(),
        fqdn: opts.fqdn.clone(),
        services: opts.services,
        splice: splice_mode(opts),
        ..base
    };
    config
        .validate()
        .map_err(|e| CliError::invalid(format!("Invalid configuration: {e}")))?;
    Ok(config)
}

/// pasta's loopback fast path: on unless `--no-splice`, alone with
/// `--splice-only`; passt has no namespace to splice to.
fn splice_mode(opts: &Options) -> crate::config::Splice {
    use crate::config::Splice;
    match &opts.pasta {
        None => Splice::Off,
        Some(p) if p.splice_only => Splice::Only,
        Some(p) if p.no_splice => Splice::Off,
        Some(_) => Splice::On,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostnet::{HostIpv4, HostIpv6, IfAddr};

    fn parse(args: &str) -> Result<Options, CliError> {
        parse_args(std::iter::once("passt").chain(args.split_whitespace()))
    }

    fn invalid(args: &str) -> String {
        match parse(args) {
            Err(CliError::Invalid(m)) => m,
            other => panic!("{args}: expected an error, got {other:?}"),
        }
    }

    fn host() -> HostNetwork {
        HostNetwork {
            ipv4: Some(HostIpv4 {
                ifname: "eth0".into(),
                addr: Ipv4Addr::new(192, 0, 2, 2),
                prefix_len: 24,
                gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
            }),
            ipv6: Some(HostIpv6 {
                ifname: "eth0".into(),
                addr: "fd00::2".parse().unwrap(),
                prefix_len: 64,
                gateway: Some("fd00::1".parse().unwrap()),
            }),
            addrs: vec![
                IfAddr {
                    ifname: "eth0".into(),
                    addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
                    prefix_len: 24,
                },
                IfAddr {
                    ifname: "eth1".into(),
                    addr: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 9)),
                    prefix_len: 20,
                },
            ],
            mtu: Some(1400),
            mac: None,
            dns: vec![
                "127.0.0.53".parse().unwrap(),
                "10.255.255.53".parse().unwrap(),
                "2001:db8::53".parse().unwrap(),
            ],
            search: vec!["example.test".into()],
        }
    }

    #[test]
    fn defaults() {
        let o = parse("").unwrap();
        assert_eq!(o.verbosity, Verbosity::Info);
        assert!(!o.foreground && !o.one_off);
        assert_eq!(o.log_size, DEFAULT_LOG_SIZE);
        assert_eq!(o.dns, DnsChoice::FromHost);
        assert_eq!(o.search, SearchChoice::FromHost);
        assert_eq!(o.services, Services::default());
    }

    #[test]
    fn every_option_is_accepted() {
        let o = parse(
            "-d -f -e -l /tmp/log --log-size 65536 --runas 1000:100 -P /tmp/pid -p /tmp/x.pcap \
             -a 10.0.0.5 -a 2001:db8::5 -n 255.255.255.0 -g 10.0.0.1 -g fe80::1 \
             -M 02:00:00:00:00:01 -i eth0 -o 10.0.0.7 -o 2001:db8::7 --outbound-if4 eth1 \
             --outbound-if6 eth2 -m 1500 -D 1.1.1.1 -D 2001:db8::53 -S a.example -S b.example \
             --no-dhcp-dns --no-dhcp-search --dns-forward 10.0.0.53 --dns-host 1.0.0.1 \
             --map-host-loopback 10.0.0.2 --map-guest-addr 10.0.0.3 --no-map-gw --no-tcp \
             --no-udp --no-icmp --no-dhcp --no-dhcpv6 --no-ndp --no-ra -t 22 -t 80:8080 \
             -u 53 -H guest --fqdn guest.example -s /tmp/s.sock -1",
        )
        .unwrap();
        assert_eq!(o.verbosity, Verbosity::Debug);
        assert!(o.foreground && o.stderr && o.one_off && o.no_map_gw);
        assert_eq!(o.log_size, 65536);
        assert_eq!(
            o.runas,
            Some(RunAs {
                user: "1000".into(),
                group: Some("100".into())
            })
        );
        assert_eq!(o.address.v4, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(o.address.v6, Some("2001:db8::5".parse().unwrap()));
        assert_eq!(o.prefix_len, Some(24));
        assert_eq!(o.gateway.v6, Some("fe80::1".parse().unwrap()));
        assert_eq!(o.mac, Some("02:00:00:00:00:01".parse().unwrap()));
        assert_eq!(o.outbound.v4, Some(Ipv4Addr::new(10, 0, 0, 7)));
        assert_eq!(o.outbound_if6.as_deref(), Some("eth2"));
        assert_eq!(o.mtu, Some(1500));
        assert_eq!(
            o.dns,
            DnsChoice::Servers(vec![
                "1.1.1.1".parse().unwrap(),
                "2001:db8::53".parse().unwrap()
            ])
        );
        assert_eq!(
            o.search,
            SearchChoice::Domains(vec!["a.example".into(), "b.example".into()])
        );
        assert_eq!(o.dns_forward.v4, Some(Ipv4Addr::new(10, 0, 0, 53)));
        assert_eq!(o.dns_host.v4, Some(Ipv4Addr::new(1, 0, 0, 1)));
        assert_eq!(
            o.map_host_loopback.addrs.v4,
            Some(Ipv4Addr::new(10, 0, 0, 2))
        );
        assert_eq!(o.map_guest_addr.addrs.v4, Some(Ipv4Addr::new(10, 0, 0, 3)));
        assert_eq!(
            o.services,
            Services {
                dhcp: false,
                dhcpv6: false,
                ndp: false,
                ra: false,
                icmp: false,
                tcp: false,
                udp: false
            }
        );
        assert_eq!(o.tcp_ports, vec!["22", "80:8080"]);
        assert_eq!(o.udp_ports, vec!["53"]);
        assert_eq!(o.hostname.as_deref(), Some("guest"));
        assert_eq!(o.socket, Some(PathBuf::from("/tmp/s.sock")));
    }

    #[test]
    fn long_forms_with_equals_and_abbreviations() {
        let o = parse("--foreground --mtu=9000 --socket=/tmp/a --one-off --fore").unwrap();
        assert!(o.foreground && o.one_off);
        assert_eq!(o.mtu, Some(9000));
        assert_eq!(o.socket, Some(PathBuf::from("/tmp/a")));
        let o = parse("--trace -F 5").unwrap();
        assert_eq!(o.verbosity, Verbosity::Trace);
        assert_eq!(o.fd, Some(5));
        assert!(o.one_off, "-F implies --one-off");
    }

    #[test]
    fn errors_are_upstream_worded_one_liners() {
        for (args, want) in [
            ("--bogus", "passt: unrecognized option '--bogus'"),
            ("-z", "passt: invalid option -- 'z'"),
            ("extra", "Extra non-option argument: extra"),
            ("-m", "passt: option '--mtu' requires an argument"),
            (
                "-s /tmp/x -F 4",
                "Options --socket and --fd are mutually exclusive",
            ),
            ("-m 65522", "Invalid MTU: 65522"),
            ("-m abc", "Invalid MTU: abc"),
            ("-a 1.2.3", "Invalid address: 1.2.3"),
            ("-a 10.0.0.5 -a 10.0.0.6", "Invalid address: 10.0.0.6"),
            ("-n 33", "Invalid netmask: 33"),
            ("-n 255.0.255.0", "Invalid netmask: 255.0.255.0"),
            ("-g x", "Invalid gateway address: x"),
            ("--log-size 0", "Invalid --log-size: 0"),
            ("--log-size 40959", "Invalid --log-size: 40959"),
            ("-a 10.0.0.5/33", "Invalid address: 10.0.0.5/33"),
            ("-a 10.0.0.5/", "Invalid address: 10.0.0.5/"),
            ("--stats x", "Invalid --stats: x"),
            (
                "--vhost-user",
                "--vhost-user: vhost-user is not supported yet (use the UNIX domain socket, -s)",
            ),
            (
                "--migrate-exit",
                "--migrate-exit: vhost-user is not supported yet (use the UNIX domain socket, -s)",
            ),
            ("-M zz", "Invalid MAC address: zz"),
            (
                "-M ff:ff:ff:ff:ff:ff",
                "Invalid MAC address: ff:ff:ff:ff:ff:ff",
            ),
            ("-D nonsense", "Invalid DNS address: nonsense"),
            ("-F abc", "Invalid --fd: abc"),
            ("--runas :5", "Invalid --runas: :5"),
        ] {
            let m = invalid(args);
            assert_eq!(m, want, "{args}");
            assert!(!m.contains('\n'));
            assert_eq!(CliError::Invalid(m).exit_code(), 1);
        }
    }

    #[test]
    fn help_and_version() {
        match parse("--help") {
            Err(e @ CliError::Help(_)) => {
                assert_eq!(e.exit_code(), 0);
                let t = e.to_string();
                for opt in ["--socket", "--tcp-ports", "--no-dhcpv6", "--map-guest-addr"] {
                    assert!(t.contains(opt), "{opt} missing from help");
                }
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse("-h"), Err(CliError::Help(_))));
        match parse("--version") {
            Err(e @ CliError::Version(_)) => assert!(e.to_string().starts_with("passt ")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn port_forwarding_is_parsed() {
        use crate::fwd::{ForwardMode, PortRange};
        let o = parse("").unwrap();
        assert_eq!(o.forwarding, Forwarding::none());
        let o = parse("-t 22 -t 127.0.0.1/80-81:8080-8081").unwrap();
        let tcp = &o.forwarding.tcp;
        assert_eq!(tcp.mode, ForwardMode::Ports);
        assert_eq!(tcp.rules.len(), 2);
        assert_eq!(tcp.guest_port(81), Some(8081));
        assert_eq!(tcp.guest_port(22), Some(22));
        // UDP does not follow TCP (what upstream's binary does, docs/cli.md).
        assert_eq!(o.forwarding.udp, ForwardSpec::none());

        let o = parse("-t 22 -u 53:5353").unwrap();
        assert_eq!(o.forwarding.udp.guest_port(53), Some(5353));
        assert_eq!(o.forwarding.udp.guest_port(22), None);

        let o = parse("-t all").unwrap();
        assert_eq!(o.forwarding.tcp.mode, ForwardMode::All);
        assert_eq!(o.forwarding.tcp.guest_port(40000), None, "ephemeral");
        assert_eq!(o.forwarding.udp.mode, ForwardMode::None);

        // The ephemeral range comes from the caller.
        let cx = SpecContext {
            program: Program::Passt,
            ephemeral: PortRange::new(50000, 50010),
        };
        let o = parse_args_in(["passt", "-t", "all"], cx).unwrap();
        assert_eq!(o.forwarding.tcp.guest_port(40000), Some(40000));
        assert_eq!(o.forwarding.tcp.guest_port(50005), None);

        let o = parse("-u none").unwrap();
        assert_eq!(o.forwarding.udp.mode, ForwardMode::None);
    }

    #[test]
    fn port_forwarding_errors_are_one_liners() {
        for (args, start) in [
            ("-t 22a", "Invalid port specifier 22a"),
            ("-t 0", "Invalid port specifier 0"),
            ("-t 22,22", "Overlapping port specifier 22,22"),
            ("-t 22 -t 22", "Overlapping port specifier 22"),
            (
                "-t auto",
                "'auto' port forwarding is only allowed for pasta",
            ),
            ("-t all -t 22", "Specific ports cannot be specified"),
            ("-t 22 -t all", "Port forwarding mode 'all' conflicts"),
            (
                "-t ::1/22:10.0.0.1",
                "Invalid port specifier ::1/22:10.0.0.1",
            ),
            ("-u 80-22", "Invalid port specifier 80-22"),
            ("-t 22-23:30", "Invalid port specifier 22-23:30"),
        ] {
            let m = invalid(args);
            assert!(m.starts_with(start), "{args}: {m}");
            assert!(!m.contains('\n'));
        }
    }

    #[test]
    fn forward_origin_names_the_option() {
        let cx = SpecContext::new(Program::Passt);
        let specs: Vec<String> = vec!["22,25".into(), "127.0.0.1/80".into(), "~1-1000".into()];
        assert_eq!(forward_origin(&specs, None, 25, cx), Some("22,25"));
        let lo = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(forward_origin(&specs, lo, 80, cx), Some("127.0.0.1/80"));
        assert_eq!(forward_origin(&specs, None, 80, cx), None);
        assert_eq!(forward_origin(&specs, None, 2000, cx), Some("~1-1000"));
        let all = vec!["all".to_string()];
        assert_eq!(forward_origin(&all, None, 80, cx), Some("all"));
        assert_eq!(forward_origin(&all, None, 40000, cx), None);
    }

    #[test]
    fn the_last_of_quiet_debug_and_trace_wins() {
        for (args, want) in [
            ("-q -d", Verbosity::Debug),
            ("-d -q", Verbosity::Quiet),
            ("--quiet --trace", Verbosity::Trace),
            ("--trace -q", Verbosity::Quiet),
            ("-d", Verbosity::Debug),
            ("-q", Verbosity::Quiet),
        ] {
            assert_eq!(parse(args).unwrap().verbosity, want, "{args}");
        }
    }

    #[test]
    fn the_last_of_ipv4_only_and_ipv6_only_wins() {
        let o = parse("-4 -6").unwrap();
        assert!(o.ipv6_only && !o.ipv4_only);
        let o = parse("-6 -4").unwrap();
        assert!(o.ipv4_only && !o.ipv6_only);
        let o = parse("--ipv6-only -4 -6").unwrap();
        assert!(o.ipv6_only && !o.ipv4_only);
    }

    #[test]
    fn mtu_range_is_upstreams_and_zero_announces_nothing() {
        let o = parse("-m 0").unwrap();
        let c = build_config(&o, &host()).unwrap();
        assert!(!c.announce_mtu);
        assert_eq!(c.mtu, DEFAULT_MTU);
        let o = parse("-m 65521").unwrap();
        assert_eq!(build_config(&o, &host()).unwrap().mtu, 65521);
        // Below IPv6's minimum: a warning, not an error.
        let o = parse("-m 1000").unwrap();
        assert_eq!(
            o.warnings,
            vec!["MTU 1000 is too small for IPv6 (minimum 1280)"]
        );
        assert!(parse("-4 -m 1000").unwrap().warnings.is_empty());
        let o = parse("-m 50").unwrap();
        assert_eq!(o.warnings.len(), 2);
        let c = build_config(&o, &host()).unwrap();
        assert_eq!(c.mtu, MIN_MTU_V4, "frames never below 68");
        assert!(c.announce_mtu);
    }

    #[test]
    fn address_with_a_prefix_length() {
        let o = parse("-a 10.0.2.15/24 -a 2001:db8::15/56").unwrap();
        assert_eq!(o.address.v4, Some(Ipv4Addr::new(10, 0, 2, 15)));
        assert_eq!(o.prefix_len, Some(24));
        assert_eq!(o.prefix_len_v6, Some(56));
        let c = build_config(&o, &host()).unwrap();
        assert_eq!(c.ipv4.as_ref().unwrap().prefix_len, 24);
        assert_eq!(c.ipv6.as_ref().unwrap().prefix_len, 56);
        // -n wins over the prefix of -a.
        let o = parse("-a 10.0.2.15/24 -n 16").unwrap();
        assert_eq!(o.prefix_len, Some(16));
    }

    #[test]
    fn map_host_loopback_given_twice_keeps_the_last() {
        let o = parse("--map-host-loopback 10.0.0.1 --map-host-loopback 10.0.0.2").unwrap();
        assert_eq!(
            o.map_host_loopback.addrs.v4,
            Some(Ipv4Addr::new(10, 0, 0, 2))
        );
        let o = parse("--map-host-loopback none --map-host-loopback 10.0.0.2").unwrap();
        assert!(!o.map_host_loopback.disabled);
        let o = parse("--map-host-loopback 10.0.0.2 --map-host-loopback none").unwrap();
        assert!(o.map_host_loopback.disabled);
        assert_eq!(o.map_host_loopback.addrs, PerFamily::default());
    }

    #[test]
    fn no_icmp_also_turns_ndp_off() {
        let s = parse("--no-icmp").unwrap().services;
        assert!(!s.icmp && !s.ndp && !s.ra);
        assert!(s.dhcpv6, "DHCPv6 is UDP, not ICMPv6");
    }

    #[test]
    fn newer_options_are_accepted() {
        let o = parse("--stats 5 --freebind --chroot-fallback --socket-path /tmp/p.sock").unwrap();
        assert_eq!(o.stats, Some(5));
        assert!(o.freebind && o.chroot_fallback);
        assert_eq!(o.socket, Some(PathBuf::from("/tmp/p.sock")));
        // -F takes any descriptor (the binary moves 0-2 away).
        assert_eq!(parse("-F 0").unwrap().fd, Some(0));
        match parse("--print-capabilities") {
            Err(e @ CliError::Capabilities(_)) => {
                assert_eq!(e.exit_code(), 0);
                assert_eq!(e.to_string(), VHOST_USER_CAPABILITIES);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn outbound_options_reach_the_configuration() {
        let o =
            parse("-o 192.0.2.9 -o 2001:db8::9 --outbound-if4 eth1 --outbound-if6 eth2").unwrap();
        let c = build_config(&o, &host()).unwrap();
        assert_eq!(c.outbound.addr_v4, Some(Ipv4Addr::new(192, 0, 2, 9)));
        assert_eq!(c.outbound.addr_v6, Some("2001:db8::9".parse().unwrap()));
        assert_eq!(c.outbound.if_v4.unwrap().as_str(), "eth1");
        assert_eq!(c.outbound.if_v6.unwrap().as_str(), "eth2");
        let (place, local) = c
            .outbound
            .bind_for(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 0);
        assert_eq!(place.device.unwrap().as_str(), "eth1");
        assert_eq!(local, Some("192.0.2.9:0".parse().unwrap()));
        // Never for the host's loopback (the gateway mapping).
        let (place, local) = c.outbound.bind_for(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        assert_eq!((place, local), (crate::host_io::Place::HOST, None));
    }

    #[test]
    fn netmask_forms() {
        assert_eq!(parse_netmask("24"), Some(24));
        assert_eq!(parse_netmask("0"), Some(0));
        assert_eq!(parse_netmask("255.255.255.0"), Some(24));
        assert_eq!(parse_netmask("255.255.255.255"), Some(32));
        assert_eq!(parse_netmask("0.0.0.0"), Some(0));
        assert_eq!(parse_netmask("255.255.128.0"), Some(17));
        assert_eq!(parse_netmask("255.0.255.0"), None);
        assert_eq!(parse_netmask("33"), None);
    }

    #[test]
    fn dns_and_search_none() {
        let o = parse("-D none -S none").unwrap();
        assert_eq!(o.dns, DnsChoice::Disabled);
        assert_eq!(o.search, SearchChoice::Disabled);
        let c = build_config(&o, &host()).unwrap();
        assert!(c.ipv4.unwrap().dns.is_empty());
        assert!(c.ipv6.unwrap().dns.is_empty());
        assert!(c.dns_search.is_empty());
    }

    #[test]
    fn config_copies_the_host_by_default() {
        let c = build_config(&parse("").unwrap(), &host()).unwrap();
        let v4 = c.ipv4.as_ref().unwrap();
        assert_eq!(v4.addr, Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(v4.prefix_len, 24);
        assert_eq!(v4.gateway, Ipv4Addr::new(192, 0, 2, 1));
        // A loopback resolver (127.0.0.53) cannot be reached from the guest:
        // the gateway is announced in its place, and forwards to it.
        assert_eq!(
            v4.dns,
            vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(10, 255, 255, 53)]
        );
        let v6 = c.ipv6.as_ref().unwrap();
        assert_eq!(v6.addr, "fd00::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(v6.gateway, "fd00::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(v6.dns, vec!["2001:db8::53".parse::<Ipv6Addr>().unwrap()]);
        assert_eq!(v6.our_link_local, MacAddr::PASST_DEFAULT.ipv6_link_local());
        assert_eq!(c.dns_search, vec!["example.test".to_string()]);
        assert_eq!(c.mtu, DEFAULT_MTU);
        assert_eq!(c.our_mac, MacAddr::PASST_DEFAULT);
        c.validate().unwrap();
    }

    #[test]
    fn options_override_the_host() {
        let o = parse(
            "-a 10.1.2.3 -g 10.1.0.1 -a 2001:db8::9 -g fe80::1 -m 1500 -D 9.9.9.9 -S x.test \
             -M 02:00:00:00:00:07 -H vm --fqdn vm.x.test --no-dhcpv6",
        )
        .unwrap();
        let c = build_config(&o, &host()).unwrap();
        let v4 = c.ipv4.as_ref().unwrap();
        assert_eq!(v4.addr, Ipv4Addr::new(10, 1, 2, 3));
        // Prefix from the host address sharing its subnet (eth1, /20).
        assert_eq!(v4.prefix_len, 20);
        assert_eq!(v4.gateway, Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(v4.dns, vec![Ipv4Addr::new(9, 9, 9, 9)]);
        let v6 = c.ipv6.as_ref().unwrap();
        assert_eq!(v6.addr, "2001:db8::9".parse::<Ipv6Addr>().unwrap());
        assert_eq!(v6.gateway, "fe80::1".parse::<Ipv6Addr>().unwrap());
        assert!(v6.dns.is_empty(), "-D gave no IPv6 server");
        assert_eq!(c.mtu, 1500);
        assert_eq!(c.dns_search, vec!["x.test".to_string()]);
        assert_eq!(c.our_mac, "02:00:00:00:00:07".parse().unwrap());
        assert_eq!(c.hostname.as_deref(), Some("vm"));
        assert_eq!(c.fqdn.as_deref(), Some("vm.x.test"));
        assert!(!c.services.dhcpv6 && c.services.dhcp);

        // Classful prefix when no host address matches (RFC 4632).
        let c = build_config(&parse("-a 172.16.5.5").unwrap(), &host()).unwrap();
        assert_eq!(c.ipv4.unwrap().prefix_len, 16);
        let c = build_config(&parse("-a 172.16.5.5 -n 28").unwrap(), &host()).unwrap();
        assert_eq!(c.ipv4.unwrap().prefix_len, 28);
    }

    #[test]
    fn family_switches_and_dns_options() {
        let c = build_config(&parse("-4").unwrap(), &host()).unwrap();
        assert!(c.ipv4.is_some() && c.ipv6.is_none());
        let c = build_config(&parse("-6").unwrap(), &host()).unwrap();
        assert!(c.ipv4.is_none() && c.ipv6.is_some());
        let c = build_config(&parse("--no-dhcp-dns --no-dhcp-search").unwrap(), &host()).unwrap();
        assert!(c.ipv4.as_ref().unwrap().dns.is_empty());
        assert!(c.dns_search.is_empty());
        let c = build_config(&parse("--dns-forward 192.0.2.53").unwrap(), &host()).unwrap();
        assert_eq!(
            c.ipv4.unwrap().dns,
            vec![Ipv4Addr::new(192, 0, 2, 53)],
            "the guest is told the forwarding address"
        );
        let c = build_config(&parse("--no-ndp").unwrap(), &host()).unwrap();
        assert!(!c.services.ndp && !c.services.ra);
    }

    #[test]
    fn link_local_fallback_without_default_routes() {
        let bare = HostNetwork::default();
        let c = build_config(&parse("").unwrap(), &bare).unwrap();
        let v4 = c.ipv4.unwrap();
        assert_eq!(v4.addr, LINK_LOCAL_GUEST_V4);
        assert_eq!(v4.gateway, LINK_LOCAL_GATEWAY_V4);
        assert_eq!(v4.prefix_len, LINK_LOCAL_PREFIX_V4);
        assert!(c.ipv6.is_none());
        // -6 with no IPv6 anywhere: nothing left.
        assert!(matches!(
            build_config(&parse("-6").unwrap(), &bare),
            Err(CliError::Invalid(_))
        ));
        // ... unless an address is given; the gateway is then our link-local.
        let c = build_config(&parse("-6 -a 2001:db8::2").unwrap(), &bare).unwrap();
        let v6 = c.ipv6.unwrap();
        assert_eq!(v6.gateway, v6.our_link_local);
        assert_eq!(v6.prefix_len, 64);
    }

    #[test]
    fn gateway_equal_to_address_is_refused() {
        let e = build_config(&parse("-a 192.0.2.1").unwrap(), &host()).unwrap_err();
        assert!(e.to_string().contains("192.0.2.1"));
    }

    #[test]
    fn mapping_rules_follow_the_options() {
        let c = build_config(&parse("").unwrap(), &host()).unwrap();
        let m = &c.mapping;
        assert_eq!(
            m.host_loopback_v4,
            Some(Ipv4Addr::new(192, 0, 2, 1)),
            "gateway by default"
        );
        assert_eq!(m.host_loopback_v6, Some("fd00::1".parse().unwrap()));
        assert_eq!(m.host_addr_v4, Some(Ipv4Addr::new(192, 0, 2, 2)));
        assert_eq!(
            m.dns_host_v4,
            Some(Ipv4Addr::new(127, 0, 0, 53)),
            "the loopback resolver"
        );
        assert_eq!(m.guest_addr_v4, None);
        // The host resolver is on loopback: the gateway stands for it.
        assert_eq!(m.dns_forward_v4, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(m.dns_forward_v6, None, "no IPv6 loopback resolver");

        let c = build_config(&parse("--no-map-gw").unwrap(), &host()).unwrap();
        assert_eq!(c.mapping.host_loopback_v4, None);
        assert_eq!(c.mapping.host_loopback_v6, None);

        let o = parse("--map-host-loopback 192.0.2.77 --map-guest-addr 192.0.2.88 --dns-forward 192.0.2.99 --dns-host 127.0.0.1").unwrap();
        let c = build_config(&o, &host()).unwrap();
        assert_eq!(
            c.mapping.host_loopback_v4,
            Some(Ipv4Addr::new(192, 0, 2, 77))
        );
        assert_eq!(c.mapping.guest_addr_v4, Some(Ipv4Addr::new(192, 0, 2, 88)));
        assert_eq!(c.mapping.dns_forward_v4, Some(Ipv4Addr::new(192, 0, 2, 99)));
        assert_eq!(c.mapping.dns_host_v4, Some(Ipv4Addr::LOCALHOST));

        let c = build_config(&parse("--map-host-loopback none").unwrap(), &host()).unwrap();
        assert_eq!(c.mapping.host_loopback_v4, None);
    }
}
