//! The one start-up path of the binaries, from parsed options to a running
//! loop, as a sequence of named steps ([`run`]):
//!
//! 1. inherited descriptors closed, logging ([`start_logging`]) and the
//!    user to run as (`--runas`, or nobody when started as root);
//! 2. the host probe and the engine configuration ([`probe_host`]);
//! 3. the engine and its listeners: forwarded ports are bound before the
//!    guest socket is announced, so a port that cannot be bound stops the
//!    start ([`bind_listeners`]);
//! 4. the guest transport ([`open_guest_transport`]), the capture and the
//!    pid file;
//! 5. isolation: namespaces, an empty root, capabilities dropped
//!    ([`isolation::isolate_prefork`]), once every descriptor is open;
//! 6. the process: daemon and pid file ([`detach`]);
//! 7. the seccomp filter ([`isolation::isolate_postfork`]), then the loop,
//!    until a signal or the guest leaving.
//!
//! Steps 1, 5 and 7 are the sandbox ([`super::isolation`]); `--no-sandbox`
//! skips 5 and 7, for debugging only.
//!
//! passt and pasta share it; what differs between them (the transport:
//! QEMU's socket or a tap in a namespace) is one step. This module owns the
//! order and the messages (worded as upstream's, which wrappers parse); the
//! work of each step lives in the module it names.

use std::process::ExitCode;

use super::clock;
use super::event_loop::EventLoop;
use super::forward;
use super::host::RealHost;
use super::host_probe;
use super::isolation::{self, Mode, UserSwitch};
use super::logging::{self, Level, Sink};
use super::pcap::PcapWriter;
use super::process::{self, PidFile};
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
    // Before anything of ours is open: every descriptor above 2 but
    // `--fd` is inherited.
    let keep: Vec<i32> = opts.fd.into_iter().collect();
    let closed = isolation::close_inherited(&keep);
    if let Err(code) = start_logging(&opts) {
        return code;
    }
    match closed {
        Ok(n) => logging::log(
            Level::Debug,
            format_args!("Closed {n} inherited file descriptor(s)"),
        ),
        Err(e) => logging::log(
            Level::Warn,
            format_args!("Can't close inherited file descriptors: {e}"),
        ),
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
    let self_test = isolation::SelfTest::from_env();
    match isolation::switch_user(opts.runas.as_ref()) {
        Ok(UserSwitch::Nobody(uid, gid)) => logging::log(
            Level::Debug,
            format_args!("Started as root, changed to user nobody ({uid}:{gid})"),
        ),
        Ok(_) => {}
        Err(e) => return Err(e.into()),
    }
    if opts.no_sandbox {
        logging::log(
            Level::Warn,
            format_args!(
                "--no-sandbox: no namespaces, no empty root, no seccomp filter. \
                 For debugging only: the guest is untrusted input"
            ),
        );
    }
    let config = probe_host(opts)?;
    let engine = bind_listeners(config, opts, cx)?;
    let transport = open_guest_transport(opts)?;
    let mut event_loop = EventLoop::new(engine, transport)
        .map_err(|e| format!("Failed to start the event loop: {e}"))?;
    event_loop.set_one_off(opts.one_off);
    if let Some(path) = &opts.pcap {
        let w = PcapWriter::create(path)
            .map_err(|e| format!("Failed to open pcap file {}: {e}", path.display()))?;
        logging::log(
            Level::Info,
            format_args!("Saving packet capture to {}", path.display()),
        );
        event_loop.set_pcap(w);
    }
    let pid_file = match &opts.pid_file {
        Some(path) => Some(
            PidFile::create(path)
                .map_err(|e| format!("Failed to open PID file {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let null = if opts.foreground {
        None
    } else {
        Some(process::open_dev_null().map_err(|e| format!("Failed to open /dev/null: {e}"))?)
    };
    // Isolation: every descriptor is open, nothing has been forked yet.
    if !opts.no_sandbox {
        let done = isolation::isolate_prefork(Mode::Passt, opts.foreground)?;
        logging::log(
            Level::Debug,
            format_args!(
                "Sandbox: empty root, capabilities dropped (own user namespace: {}, \
                 own PID namespace: {})",
                done.user_namespace, done.pid_namespace
            ),
        );
    }
    let pid_file = detach(opts, pid_file, null)?;
    // After the fork: a signalfd registered in epoll by the parent would
    // never wake the child's epoll.
    event_loop
        .catch_signals()
        .map_err(|e| format!("Failed to set up signal handling: {e}"))?;
    if !opts.no_sandbox {
        isolation::isolate_postfork(Mode::Passt)?;
    }
    if let Some(t) = self_test {
        t.run();
    }
    let result = event_loop.run();
    event_loop.shutdown();
    if let Some(p) = pid_file {
        let _ = p.remove();
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

/// Step 3: the engine over a [`RealHost`], with the forwarded ports bound.
pub fn bind_listeners(
    config: Config,
    opts: &Options,
    cx: SpecContext,
) -> Result<Engine<RealHost>, StartError> {
    let host_io = RealHost::new().map_err(|e| format!("Failed to set up epoll: {e}"))?;
    let mut engine = Engine::new(config, host_io, clock::random_seed())
        .map_err(|e| format!("Invalid configuration: {e}"))?;
    if let Err(e) = process::raise_nofile_limit() {
        logging::log(
            Level::Debug,
            format_args!("Can't raise the open files limit: {e}"),
        );
    }
    let report = forward::bind_forwards(
        &mut engine,
        &opts.forwarding,
        &opts.tcp_ports,
        &opts.udp_ports,
        cx,
    )?;
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
    Ok(engine)
}

/// Step 4 (passt): QEMU's socket: `-F` a pre-connected descriptor, `-s` a
/// path, or the first free `/tmp/passt_N.socket`; announces the QEMU
/// command line for a listening socket.
pub fn open_guest_transport(opts: &Options) -> Result<StreamTransport, StartError> {
    let transport = match (opts.fd, &opts.socket) {
        (Some(fd), _) => {
            StreamTransport::from_raw_fd(fd).map_err(|e| format!("Invalid --fd {fd}: {e}"))?
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

/// Step 6: goes to the background unless `-f` (the parent writes the
/// daemon's pid to the pid file and exits at once; `null` is `/dev/null`
/// for the daemon's standard streams), or writes our own pid in the
/// foreground. Returns the pid file for the process that stays.
pub fn detach(
    opts: &Options,
    pid_file: Option<PidFile>,
    null: Option<std::os::fd::OwnedFd>,
) -> Result<Option<PidFile>, StartError> {
    let Some(null) = null.filter(|_| !opts.foreground) else {
        let mut pid_file = pid_file;
        if let (Some(f), Some(path)) = (&mut pid_file, &opts.pid_file) {
            f.write(process::pid())
                .map_err(|e| format!("Failed to write PID file {}: {e}", path.display()))?;
        }
        return Ok(pid_file);
    };
    match process::daemonize(null).map_err(|e| format!("Failed to fork: {e}"))? {
        process::Forked::Parent(child) => {
            if let (Some(mut f), Some(path)) = (pid_file, &opts.pid_file)
                && let Err(e) = f.write(child)
            {
                eprintln!("Failed to write PID file {}: {e}", path.display());
            }
            // The child owns the socket, the capture and the pid file.
            process::exit_immediately(0);
        }
        process::Forked::Child => {
            // Standard error is /dev/null now: a log file stays open (the
            // filesystem may be gone), standard error is dropped.
            logging::stderr_closed();
            Ok(pid_file)
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
