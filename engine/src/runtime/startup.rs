//! The one start-up path of the binaries, from parsed options to a running
//! loop, as a sequence of named steps ([`run`]):
//!
//! 1. inherited descriptors closed, logging ([`start_logging`]), the pid
//!    file opened, and the user to run as (`--runas`, or for passt nobody
//!    when started as root);
//! 2. the host probe and the engine configuration ([`probe_host`]);
//!    pasta then creates or joins its namespaces ([`pasta::set_up`]);
//! 3. the engine and its listeners: forwarded ports are bound before the
//!    guest socket is announced, so a port that cannot be bound stops the
//!    start ([`bind_listeners`]); then the control socket for `pesto`
//!    (`-c`, [`open_control`]) and pasta's `auto` scan, which must exist
//!    before isolation;
//! 4. the guest transport: QEMU's socket ([`open_guest_transport`]) or,
//!    for pasta, the tap in the namespace ([`open_tap`]); the capture and
//!    the system logger's socket for a daemon;
//! 5. isolation: namespaces, an empty root, capabilities dropped
//!    ([`isolation::isolate_prefork`]), once every descriptor is open;
//! 6. the process: daemon and pid file ([`detach`]);
//! 7. pasta's namespace thread and its last capabilities dropped, the
//!    seccomp filter ([`isolation::isolate_postfork`]); pasta lets its
//!    command start; then the loop, until a signal, the guest leaving, or
//!    (pasta) the target namespace going away; pasta then exits with its
//!    command's status.
//!
//! Steps 1, 5 and 7 are the sandbox ([`super::isolation`]); `--no-sandbox`
//! skips 5 and 7, for debugging only.
//!
//! passt and pasta share it; what differs between them (the namespace and
//! the transport: QEMU's socket or a tap in a namespace) is one step each
//! (chosen by [`Options::pasta`]). This module owns the
//! order and the messages (worded as upstream's, which wrappers parse); the
//! work of each step lives in the module it names.

use std::process::ExitCode;

use super::autoscan::AutoScan;
use super::clock;
use super::control::ControlServer;
use super::event_loop::EventLoop;
use super::event_loop::ExitReason;
use super::forward::ForwardTable;
use super::host::RealHost;
use super::host_probe;
use super::isolation::{self, Mode, UserSwitch};
use super::live::LiveForwarding;
use super::logging::{self, Level, Sink};
use super::netlink;
use super::netns::NetNs;
use super::pasta;
use super::pcap::PcapWriter;
use super::process::{self, PidFile};
use super::transport::{GuestTransport, NoGuest, StreamTransport, Tap, TapTransport};
use crate::cli::{self, Options, Verbosity};
use crate::config::Config;
use crate::engine::Engine;
use crate::fwd::{PortRange, Program, SpecContext};
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

/// The program `argv[0]` names, as upstream decides it: a name starting
/// with `pasta` (`pasta`, `pasta.avx2`, a `pasta -> passt` symlink) is
/// pasta, one starting with `passt` is passt; `None` for anything else.
pub fn program_of(argv0: &std::ffi::OsStr) -> Option<Program> {
    let name = std::path::Path::new(argv0).file_name()?.as_encoded_bytes();
    if name.starts_with(b"pasta") {
        Some(Program::Pasta)
    } else if name.starts_with(b"passt") {
        Some(Program::Passt)
    } else {
        None
    }
}

/// The whole of both binaries' `main`: block the stop signals, choose the
/// program by `argv[0]` ([`program_of`], else `default`), parse the command
/// line, and [`run`].
pub fn main_for(default: Program) -> ExitCode {
    // Before anything else (and before any fork): a SIGTERM that arrives
    // before the loop reads its signalfd must wait for it, not kill us
    // with the socket and pid files left behind.
    if let Err(e) = process::block_stop_signals() {
        eprintln!("Failed to block signals: {e}");
        return ExitCode::from(1);
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let program = args.first().and_then(|a| program_of(a)).unwrap_or(default);
    let cx = SpecContext {
        program,
        ephemeral: ephemeral_range(),
    };
    match cli::parse_args_in(args, cx) {
        Ok(opts) => run(opts, cx),
        Err(
            e @ (cli::CliError::Help(_)
            | cli::CliError::Version(_)
            | cli::CliError::Capabilities(_)),
        ) => {
            print!("{e}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Runs passt or pasta with parsed options: every step of the module
/// docs, in order. Returns the process's exit status.
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
        Ok(code) => ExitCode::from(code),
        Err(StartError(msg)) => {
            logging::log(Level::Error, format_args!("{msg}"));
            ExitCode::from(1)
        }
    }
}

fn run_steps(opts: &Options, cx: SpecContext) -> Result<u8, StartError> {
    let self_test = isolation::SelfTest::from_env();
    // Before the user changes: the file may be the starter's (QEMU's).
    let pid_file = match &opts.pid_file {
        Some(path) => Some(
            PidFile::create(path)
                .map_err(|e| format!("Failed to open PID file {}: {e}", path.display()))?,
        ),
        None => None,
    };
    // pasta keeps its user unless --runas (isolation::switch_user). The
    // new user gets the pid file, to remove it at exit (without CAP_CHOWN,
    // an unprivileged --runas, it stays ours).
    let hand_over = |uid, gid| {
        if let Some(f) = &pid_file {
            let _ = f.hand_over(uid, gid);
        }
    };
    match isolation::switch_user(opts.runas.as_ref(), opts.pasta.is_none(), hand_over) {
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
    let (config, host) = probe_host(opts)?;
    match &opts.pasta {
        None => {
            let (engine, table) = bind_listeners(config, opts, cx, None)?;
            let live = open_control(opts, LiveForwarding::new(table))?;
            let transport = open_guest_transport(opts)?;
            serve(engine, transport, opts, live, None, self_test, pid_file)
        }
        Some(p) => {
            let ns = pasta::set_up(p)?;
            let guest_netns = ns
                .netns()
                .try_clone()
                .map_err(|e| format!("Couldn't open network namespace: {e}"))?;
            let (engine, table) = bind_listeners(config, opts, cx, Some(guest_netns))?;
            let mut live = LiveForwarding::new(table);
            if !live.table().auto_chans().is_empty() {
                let scan = AutoScan::open(Some(ns.netns()))
                    .map_err(|e| format!("Couldn't open the socket tables for 'auto': {e}"))?;
                live = live.with_auto_scan(scan);
            }
            let live = open_control(opts, live)?;
            if p.splice_only {
                netlink::link_up(ns.netns(), "lo")
                    .map_err(|e| format!("Couldn't bring up loopback in the namespace: {e}"))?;
                return serve(engine, NoGuest, opts, live, Some(ns), self_test, pid_file);
            }
            let transport = open_tap(opts, &ns, &host, engine.config())?;
            serve(engine, transport, opts, live, Some(ns), self_test, pid_file)
        }
    }
}

/// Steps 4 to 7 over the transport opened: the loop with its live
/// forwarding, capture and (pasta) exit watch, isolation, detach, pasta's
/// command let go, the loop run. Returns the exit status: 0, or pasta's
/// command's.
fn serve<T: GuestTransport>(
    engine: Engine<RealHost>,
    transport: T,
    opts: &Options,
    live: LiveForwarding,
    mut ns: Option<pasta::Namespace>,
    self_test: Option<isolation::SelfTest>,
    pid_file: Option<PidFile>,
) -> Result<u8, StartError> {
    let mut event_loop = EventLoop::new(engine, transport)
        .map_err(|e| format!("Failed to start the event loop: {e}"))?;
    event_loop
        .set_live(live)
        .map_err(|e| format!("Failed to start the event loop: {e}"))?;
    event_loop.set_one_off(opts.one_off);
    if let Some(ns) = &mut ns {
        let no_quit = opts.pasta.as_ref().is_some_and(|p| p.no_netns_quit);
        if let Some(watch) = ns.take_watch(no_quit) {
            event_loop
                .set_exit_watch(Box::new(watch))
                .map_err(|e| format!("Failed to watch the namespace: {e}"))?;
        }
    }
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
    let null = if opts.foreground {
        None
    } else {
        Some(process::open_dev_null().map_err(|e| format!("Failed to open /dev/null: {e}"))?)
    };
    // Without -l a daemon logs to the system logger (as upstream): its
    // socket is connected now, while /dev/log can still be reached.
    let syslog = match (&null, &opts.log_file) {
        (Some(_), None) => logging::syslog_sink().ok(),
        _ => None,
    };
    // Isolation: every descriptor is open (the control socket of -c
    // included), nothing has been forked yet.
    let mode = match &mut ns {
        None => Mode::Passt,
        Some(n) => Mode::Pasta {
            command: n.command_mut().map(|c| c.pid()),
        },
    };
    if !opts.no_sandbox {
        let done = isolation::isolate_prefork(mode, opts.foreground)?;
        logging::log(
            Level::Debug,
            format_args!(
                "Sandbox: empty root, capabilities dropped (own user namespace: {}, \
                 own PID namespace: {})",
                done.user_namespace, done.pid_namespace
            ),
        );
    }
    let pid_file = detach(opts, pid_file, null, syslog)?;
    // After the fork: a signalfd registered in epoll by the parent would
    // never wake the child's epoll.
    event_loop
        .catch_signals()
        .map_err(|e| format!("Failed to set up signal handling: {e}"))?;
    if ns.is_some() {
        // After the fork, which no thread survives: from here on one
        // thread kept in the namespace makes its sockets (a spliced
        // connection does not pay for a thread, and the filter allows
        // neither clone nor setns).
        keep_namespace_thread(event_loop.engine_mut().host_mut(), !opts.no_sandbox)?;
    }
    if !opts.no_sandbox {
        isolation::isolate_postfork(mode)?;
    }
    if let Some(t) = self_test {
        t.run();
    }
    let label = ns.as_ref().map(|n| n.label().to_string());
    let mut command = ns.as_mut().and_then(|n| n.command_mut());
    if let Some(c) = command.as_deref_mut() {
        c.release()
            .map_err(|e| format!("Failed to start the command: {e}"))?;
    }
    let result = loop {
        match (event_loop.run(), command.as_deref()) {
            // The terminal sends SIGINT to the command as well: pasta
            // serves until the command exits.
            (Ok(ExitReason::Signal(libc::SIGINT)), Some(_)) => {}
            (Ok(ExitReason::Signal(sig)), Some(c)) => {
                logging::log(
                    Level::Debug,
                    format_args!("signal {sig}: passed on to the command"),
                );
                c.signal(sig);
            }
            (other, _) => break other,
        }
    };
    event_loop.shutdown();
    if let Some(p) = pid_file {
        let _ = p.remove();
    }
    let reason = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some(c) = command.as_deref() {
                c.signal(libc::SIGTERM);
            }
            return Err(format!("Event loop failed: {e}").into());
        }
    };
    logging::log(Level::Debug, format_args!("exiting: {reason:?}"));
    match command {
        Some(c) => {
            if reason != ExitReason::TargetGone {
                c.signal(libc::SIGTERM);
            }
            c.wait()
                .map_err(|e| StartError(format!("Failed to wait for the command: {e}")))
        }
        None => {
            if reason == ExitReason::TargetGone
                && let Some(label) = label
            {
                logging::log(
                    Level::Info,
                    format_args!("Namespace {label} is gone, exiting"),
                );
            }
            Ok(0)
        }
    }
}

/// pasta's end of stage 3 (after the fork, before the filter): the thread
/// that stays in the namespace to make its sockets, which then drops its
/// capabilities, and then the main thread's last capabilities.
/// Without the sandbox (`--no-sandbox`) the thread is kept all the same,
/// and no capability is dropped.
fn keep_namespace_thread(host: &mut RealHost, sandbox: bool) -> Result<(), StartError> {
    if !sandbox {
        return host
            .keep_guest_thread(|| Ok(()))
            .map_err(|e| format!("Couldn't start the namespace thread: {e:?}").into());
    }
    host.keep_guest_thread(isolation::drop_thread_capabilities)
        .map_err(|e| format!("Couldn't start the namespace thread: {e:?}"))?;
    isolation::drop_thread_capabilities().map_err(|e| format!("Can't drop capabilities: {e}"))?;
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
pub fn probe_host(opts: &Options) -> Result<(Config, HostNetwork), StartError> {
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
    Ok((config, host))
}

/// Step 3: the engine over a [`RealHost`], with the forwarded ports bound,
/// and the live table that bound them (kept by the loop for `auto` and the
/// control socket). `guest_netns` is pasta's namespace, where the host
/// makes [`crate::host_io::Netns::Guest`] sockets (`-T`/`-U` listeners,
/// the splice).
pub fn bind_listeners(
    config: Config,
    opts: &Options,
    cx: SpecContext,
    guest_netns: Option<NetNs>,
) -> Result<(Engine<RealHost>, ForwardTable), StartError> {
    let mut host_io = RealHost::new().map_err(|e| format!("Failed to set up epoll: {e}"))?;
    host_io.set_freebind(opts.freebind);
    if let Some(ns) = guest_netns {
        host_io.set_guest_netns(ns);
    }
    let mut engine = Engine::new(config, host_io, clock::random_seed())
        .map_err(|e| format!("Invalid configuration: {e}"))?;
    if let Err(e) = process::raise_nofile_limit() {
        logging::log(
            Level::Debug,
            format_args!("Can't raise the open files limit: {e}"),
        );
    }
    let mut table = ForwardTable::for_engine(&engine, cx);
    let mut rules = table.rules_from_options(&opts.forwarding, &opts.tcp_ports, &opts.udp_ports);
    if let Some(p) = &opts.pasta {
        table.namespace_rules(
            &mut rules,
            &p.forwarding_ns,
            &p.tcp_ns_ports,
            &p.udp_ns_ports,
        );
    }
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

/// Step 4 (pasta): the tap in the namespace (none with `--splice-only`:
/// [`NoGuest`], and only `lo` brought up), named `-I` or after the
/// host's template interface; `lo` brought up; with `--config-net`, the
/// tap configured as [`pasta::config_net_plan`] says (the host's template
/// interface read over netlink for the addresses and routes to copy).
pub fn open_tap(
    opts: &Options,
    ns: &pasta::Namespace,
    host: &HostNetwork,
    config: &Config,
) -> Result<TapTransport, StartError> {
    let p = opts
        .pasta
        .as_ref()
        .ok_or_else(|| StartError("not pasta".into()))?;
    let name = p
        .ns_ifname
        .clone()
        .or_else(|| host.ipv4.as_ref().map(|v| v.ifname.clone()))
        .or_else(|| host.ipv6.as_ref().map(|v| v.ifname.clone()))
        .unwrap_or_default();
    let tap = Tap::open_in(ns.netns(), &name)
        .map_err(|e| format!("Failed to open tun socket in namespace: {e}"))?;
    logging::log(
        Level::Info,
        format_args!("Namespace interface: {}", tap.name()),
    );
    if p.config_net {
        let (addrs, routes) = template_config(host);
        let plan = pasta::config_net_plan(tap.name(), opts, config, &addrs, &routes);
        netlink::configure(ns.netns(), &plan)
            .map_err(|e| format!("Couldn't configure the namespace interface: {e}"))?;
    } else {
        netlink::link_up(ns.netns(), "lo")
            .map_err(|e| format!("Couldn't bring up loopback in the namespace: {e}"))?;
    }
    Ok(TapTransport::new(tap))
}

/// The addresses and routes of the host's template interfaces (IPv4's and
/// IPv6's), read over netlink in the host's namespace; what cannot be read
/// is left out with a warning (the namespace then gets only the guest's
/// address and a default route).
fn template_config(host: &HostNetwork) -> (Vec<netlink::Address>, Vec<netlink::Route>) {
    let mut addrs = Vec::new();
    let mut routes = Vec::new();
    let templates = [
        host.ipv4
            .as_ref()
            .map(|v| (v.ifname.as_str(), netlink::Family::V4)),
        host.ipv6
            .as_ref()
            .map(|v| (v.ifname.as_str(), netlink::Family::V6)),
    ];
    for (ifname, family) in templates.into_iter().flatten() {
        match netlink::addresses(ifname) {
            Ok(a) => addrs.extend(
                a.into_iter()
                    .filter(|a| netlink::Family::of(a.addr) == family),
            ),
            Err(e) => logging::log(
                Level::Warn,
                format_args!("Couldn't read the addresses of {ifname}: {e}"),
            ),
        }
        match netlink::routes(ifname, Some(family)) {
            Ok(r) => routes.extend(r),
            Err(e) => logging::log(
                Level::Warn,
                format_args!("Couldn't read the routes of {ifname}: {e}"),
            ),
        }
    }
    (addrs, routes)
}

/// Step 6: goes to the background unless `-f` (the parent writes the
/// daemon's pid to the pid file and exits at once; `null` is `/dev/null`
/// for the daemon's standard streams, `syslog` the system logger's socket,
/// connected before isolation, for a daemon without `-l`), or writes our
/// own pid in the foreground. Returns the pid file for the process that
/// stays.
pub fn detach(
    opts: &Options,
    pid_file: Option<PidFile>,
    null: Option<std::os::fd::OwnedFd>,
    syslog: Option<Sink>,
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
            // filesystem may be gone), else the system logger.
            logging::stderr_closed(syslog.unwrap_or(Sink::Discard));
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
