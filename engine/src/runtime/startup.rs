//! The one start-up path of the binaries, from parsed options to a running
//! loop, as a sequence of named steps ([`run`]):
//!
//! 1. logging ([`start_logging`]) and the user to run as;
//! 2. the host probe and the engine configuration ([`probe_host`]);
//! 3. the engine and its listeners: forwarded ports are bound before the
//!    guest socket is announced, so a port that cannot be bound stops the
//!    start ([`bind_listeners`]); then the control socket for `pesto`
//!    (`-c`, [`open_control`]), which must exist before isolation;
//! 4. the guest transport ([`open_guest_transport`]);
//! 5. isolation (issue #15) belongs here, once every descriptor is open
//!    and before the process detaches (marked in [`run`]'s body);
//! 6. the process: daemon and pid file ([`detach`]);
//! 7. the loop, until a signal or the guest leaving.
//!
//! passt and pasta share it; what differs between them (the transport:
//! QEMU's socket or a tap in a namespace) is one step. This module owns the
//! order and the messages (worded as upstream's, which wrappers parse); the
//! work of each step lives in the module it names.

use std::process::ExitCode;

use super::clock;
use super::control::ControlServer;
use super::event_loop::EventLoop;
use super::forward::ForwardTable;
use super::host::RealHost;
use super::host_probe;
use super::live::LiveForwarding;
use super::logging::{self, Level, Sink};
use super::pcap::PcapWriter;
use super::process;
use super::transport::{GuestTransport, StreamTransport};
use crate::cli::{self, Options, Verbosity};
use crate::config::Config;
use crate::engine::Engine;
use crate::fwd::{PortRange, SpecContext};
use crate::hostnet::HostNetwork;

/// A start-up failure: the message to log (as upstream words it); the
/// process exits with status 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError(pub String);

impl<T: std::fmt::Display> From<T> for StartError {
    fn from(msg: T) -> Self {
        StartError(msg.to_string())
    }
}

/// The log level for a `--quiet`/`--debug`/`--trace` choice.
pub fn level_of(v: Verbosity) -> Level {
    match v {
        Verbosity::Quiet => Level::Warn,
        Verbosity::Info => Level::Info,
        Verbosity::Debug => Level::Debug,
        Verbosity::Trace => Level::Trace,
    }
}

/// The host's ephemeral port range (`net.ipv4.ip_local_port_range`, which
/// also governs IPv6), or the kernel's default when it cannot be read.
pub fn ephemeral_range() -> PortRange {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>());
            match (it.next(), it.next()) {
                (Some(Ok(a)), Some(Ok(b))) if a <= b && a > 0 => Some(PortRange::new(a, b)),
                _ => None,
            }
        })
        .unwrap_or(crate::fwd::DEFAULT_EPHEMERAL)
}

/// Runs passt with parsed options: every step of the module docs, in
/// order. Returns the process's exit status.
pub fn run(opts: Options, cx: SpecContext) -> ExitCode {
    if let Err(code) = start_logging(&opts) {
        return code;
    }
    match run_steps(&opts, cx) {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartError(msg)) => {
            logging::log(Level::Error, format_args!("{msg}"));
            ExitCode::from(1)
        }
    }
}

fn run_steps(opts: &Options, cx: SpecContext) -> Result<(), StartError> {
    if let Some(runas) = &opts.runas {
        process::drop_privileges(runas)
            .map_err(|e| format!("Can't change to user {}: {e}", runas.user))?;
    }
    let config = probe_host(opts)?;
    let (engine, table) = bind_listeners(config, opts, cx)?;
    let live = open_control(opts, LiveForwarding::new(table))?;
    let transport = open_guest_transport(opts)?;
    let mut event_loop = EventLoop::new(engine, transport)
        .map_err(|e| format!("Failed to start the event loop: {e}"))?;
    event_loop
        .set_live(live)
        .map_err(|e| format!("Failed to start the event loop: {e}"))?;
    event_loop.set_one_off(opts.one_off);
    event_loop.set_stats(
        opts.stats
            .map(|s| std::time::Duration::from_secs(u64::from(s))),
    );
    if let Some(path) = &opts.pcap {
        let w = PcapWriter::create(path)
            .map_err(|e| format!("Failed to open pcap file {}: {e}", path.display()))?;
        logging::log(
            Level::Info,
            format_args!("Saving packet capture to {}", path.display()),
        );
        event_loop.set_pcap(w);
    }
    // Isolation (issue #15) goes here: every descriptor is open (the
    // control socket of -c included), nothing has been forked yet.
    detach(opts)?;
    // After the fork: a signalfd registered in epoll by the parent would
    // never wake the child's epoll.
    event_loop
        .catch_signals()
        .map_err(|e| format!("Failed to set up signal handling: {e}"))?;
    let result = event_loop.run();
    event_loop.shutdown();
    if let Some(path) = &opts.pid_file {
        let _ = std::fs::remove_file(path);
    }
    let reason = result.map_err(|e| format!("Event loop failed: {e}"))?;
    logging::log(Level::Debug, format_args!("exiting: {reason:?}"));
    Ok(())
}

/// Step 1: the logger, to standard error or `--log-file`. A log file that
/// cannot be opened is reported on standard error.
pub fn start_logging(opts: &Options) -> Result<(), ExitCode> {
    let sink = match &opts.log_file {
        Some(path) => match logging::file_sink(path, opts.log_size) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("Couldn't open log file {}: {e}", path.display());
                return Err(ExitCode::from(1));
            }
        },
        None => Sink::Stderr,
    };
    logging::init(level_of(opts.verbosity), sink);
    for w in &opts.warnings {
        logging::log(Level::Warn, format_args!("{w}"));
    }
    Ok(())
}

/// Step 2: reads the host's network and builds the engine configuration
/// from it and the options; logs the summary upstream prints.
pub fn probe_host(opts: &Options) -> Result<Config, StartError> {
    let host = host_probe::detect(
        opts.interface.as_deref(),
        opts.outbound_if4.as_deref(),
        opts.outbound_if6.as_deref(),
    )?;
    let config = cli::build_config(opts, &host)?;
    if host.ipv4.is_none() && config.ipv4.is_some() && opts.address.v4.is_none() {
        logging::log(
            Level::Warn,
            format_args!("No IPv4 default route on the host: using link-local addresses"),
        );
    }
    for line in banner(&config, &host) {
        logging::log(Level::Info, format_args!("{line}"));
    }
    Ok(config)
}

/// Step 3: the engine over a [`RealHost`], with the forwarded ports bound,
/// and the live table that bound them (kept by the loop for `auto` and the
/// control socket).
pub fn bind_listeners(
    config: Config,
    opts: &Options,
    cx: SpecContext,
) -> Result<(Engine<RealHost>, ForwardTable), StartError> {
    let mut host_io = RealHost::new().map_err(|e| format!("Failed to set up epoll: {e}"))?;
    host_io.set_freebind(opts.freebind);
    let mut engine = Engine::new(config, host_io, clock::random_seed())
        .map_err(|e| format!("Invalid configuration: {e}"))?;
    if let Err(e) = process::raise_nofile_limit() {
        logging::log(
            Level::Debug,
            format_args!("Can't raise the open files limit: {e}"),
        );
    }
    let mut table = ForwardTable::for_engine(&engine, cx);
    let rules = table.rules_from_options(&opts.forwarding, &opts.tcp_ports, &opts.udp_ports);
    let report = table.apply(&mut engine, rules)?;
    for run in &report.bound {
        logging::log(Level::Debug, format_args!("Forwarding {run}"));
    }
    logging::log(
        Level::Debug,
        format_args!(
            "Forwarded ports: {} socket(s) bound; skipped with 'all': {} TCP, {} UDP",
            report.sockets, report.skipped.0, report.skipped.1
        ),
    );
    Ok((engine, table))
}

/// Step 3b: the control socket for `pesto` (`-c PATH`), if asked. It is
/// opened here, before isolation: once the filesystem is out of sight no
/// new socket file can be made.
pub fn open_control(opts: &Options, live: LiveForwarding) -> Result<LiveForwarding, StartError> {
    let Some(path) = &opts.conf_path else {
        return Ok(live);
    };
    let server = ControlServer::bind(path)
        .map_err(|e| format!("Failed to bind control socket {}: {e}", path.display()))?;
    logging::log(
        Level::Info,
        format_args!("Configuration socket bound at {}", path.display()),
    );
    Ok(live.with_control(server))
}

/// Step 4 (passt): QEMU's socket: `-F` a pre-connected descriptor, `-s` a
/// path, or the first free `/tmp/passt_N.socket`; announces the QEMU
/// command line for a listening socket.
pub fn open_guest_transport(opts: &Options) -> Result<StreamTransport, StartError> {
    let transport = match (opts.fd, &opts.socket) {
        (Some(fd), _) => {
            let moved =
                process::move_above_stdio(fd).map_err(|e| format!("Invalid --fd {fd}: {e}"))?;
            StreamTransport::from_raw_fd(moved).map_err(|e| format!("Invalid --fd {fd}: {e}"))?
        }
        (None, Some(path)) => StreamTransport::listen(path)
            .map_err(|e| format!("Failed to bind UNIX domain socket {}: {e}", path.display()))?,
        (None, None) => StreamTransport::listen_probe()
            .map_err(|e| format!("Failed to bind any UNIX domain socket in /tmp: {e}"))?,
    };
    if let Some(path) = transport.socket_path() {
        let path = path.display();
        for line in [
            format!("UNIX domain socket bound at {path}"),
            String::new(),
            "You can now start qemu (>= 7.2, with commit 13c6be96618c):".to_string(),
            format!(
                "    qemu-system-{} ... -device virtio-net-pci,netdev=s -netdev stream,id=s,server=off,addr.type=unix,addr.path={path}",
                std::env::consts::ARCH
            ),
        ] {
            logging::log(Level::Info, format_args!("{line}"));
        }
    }
    Ok(transport)
}

/// Step 6: goes to the background unless `-f` (the parent writes the pid
/// file and exits at once), and writes the pid file in the foreground.
pub fn detach(opts: &Options) -> Result<(), StartError> {
    if opts.foreground {
        if let Some(path) = &opts.pid_file {
            process::write_pid_file(path, process::pid())
                .map_err(|e| format!("Failed to write PID file {}: {e}", path.display()))?;
        }
        return Ok(());
    }
    // Without -l a daemon logs to the system logger (as upstream); the
    // socket is connected before the fork and before any isolation.
    let syslog = match &opts.log_file {
        None => logging::syslog_sink().ok(),
        Some(_) => None,
    };
    match process::daemonize().map_err(|e| format!("Failed to fork: {e}"))? {
        process::Forked::Parent(child) => {
            if let Some(path) = &opts.pid_file
                && let Err(e) = process::write_pid_file(path, child)
            {
                eprintln!("Failed to write PID file {}: {e}", path.display());
            }
            // The child owns the socket, the capture and the pid file.
            process::exit_immediately(0);
        }
        process::Forked::Child => {
            // Standard error is /dev/null now: a log file, else syslog.
            let sink = match &opts.log_file {
                Some(path) => logging::file_sink(path, opts.log_size).unwrap_or(Sink::Discard),
                None => syslog.unwrap_or(Sink::Discard),
            };
            logging::init(level_of(opts.verbosity), sink);
            Ok(())
        }
    }
}

/// The start-up summary as upstream prints it (to the log, level info).
fn banner(config: &Config, host: &HostNetwork) -> Vec<String> {
    let mut out = vec![format!(
        "Template interface: {}",
        host.describe_interfaces()
    )];
    out.push("MAC:".into());
    out.push(format!("    host: {}", config.our_mac));
    if let Some(v4) = &config.ipv4 {
        out.push("DHCP:".into());
        out.push(format!("    assign: {}", v4.addr));
        out.push(format!(
            "    mask: {}",
            crate::addr::ipv4_mask(v4.prefix_len)
        ));
        out.push(format!("    router: {}", v4.gateway));
    }
    let dns: Vec<String> = config
        .ipv4
        .iter()
        .flat_map(|v| v.dns.iter().map(|a| a.to_string()))
        .chain(
            config
                .ipv6
                .iter()
                .flat_map(|v| v.dns.iter().map(|a| a.to_string())),
        )
        .collect();
    if !dns.is_empty() {
        out.push("DNS:".into());
        out.extend(dns.into_iter().map(|d| format!("    {d}")));
    }
    if !config.dns_search.is_empty() {
        out.push("DNS search list:".into());
        out.push(format!("    {}", config.dns_search.join(" ")));
    }
    if let Some(v6) = &config.ipv6 {
        out.push("NDP/DHCPv6:".into());
        out.push(format!("    assign: {}", v6.addr));
        out.push(format!("    router: {}", v6.gateway));
        out.push(format!("    our link-local: {}", v6.our_link_local));
    }
    out
}
