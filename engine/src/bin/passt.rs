//! `passt`: the QEMU-facing binary, command-line compatible with upstream
//! passt (see `docs/cli.md`).
//!
//! A thin main: parse the command line, detect the host network, build the
//! engine configuration, bind the UNIX socket, print the QEMU command line,
//! go to the background unless `-f`, and run the event loop until a signal
//! (or, with `-1`/`-F`, until the guest leaves). All the work lives in
//! `passt_engine::{cli, backend}`.

use std::process::ExitCode;

use passt_engine::Engine;
use passt_engine::backend::event_loop::logging::{self, Level, Sink};
use passt_engine::backend::event_loop::{EventLoop, Transport, forward, process};
use passt_engine::backend::pcap::PcapWriter;
use passt_engine::backend::{RealHost, clock, hostcfg};
use passt_engine::cli::{self, CliError, Options, Verbosity};
use passt_engine::config::Config;
use passt_engine::fwd::{PortRange, Program, SpecContext};

fn level_of(v: Verbosity) -> Level {
    match v {
        Verbosity::Quiet => Level::Warn,
        Verbosity::Info => Level::Info,
        Verbosity::Debug => Level::Debug,
        Verbosity::Trace => Level::Trace,
    }
}

/// Prints the start-up summary as upstream does (to the log, level info).
fn banner(config: &Config, host: &hostcfg::HostNetwork) -> Vec<String> {
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
            passt_engine::addr::ipv4_mask(v4.prefix_len)
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

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    logging::log(Level::Error, format_args!("{msg}"));
    ExitCode::from(1)
}

/// The host's ephemeral port range (`net.ipv4.ip_local_port_range`, which
/// also governs IPv6), or the kernel's default when it cannot be read.
fn ephemeral_range() -> PortRange {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>());
            match (it.next(), it.next()) {
                (Some(Ok(a)), Some(Ok(b))) if a <= b && a > 0 => Some(PortRange::new(a, b)),
                _ => None,
            }
        })
        .unwrap_or(passt_engine::fwd::DEFAULT_EPHEMERAL)
}

fn main() -> ExitCode {
    // Before anything else (and before the fork): a SIGTERM that arrives
    // before the loop reads its signalfd must wait for it, not kill us
    // with the socket and pid files left behind.
    if let Err(e) = process::block_stop_signals() {
        eprintln!("Failed to block signals: {e}");
        return ExitCode::from(1);
    }
    let cx = SpecContext {
        program: Program::Passt,
        ephemeral: ephemeral_range(),
    };
    let opts = match cli::parse_args_in(std::env::args_os(), cx) {
        Ok(o) => o,
        Err(e @ (CliError::Help(_) | CliError::Version(_))) => {
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    run(opts, cx)
}

fn run(opts: Options, cx: SpecContext) -> ExitCode {
    let level = level_of(opts.verbosity);
    let sink = match &opts.log_file {
        Some(path) => match logging::file_sink(path, opts.log_size) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("Couldn't open log file {}: {e}", path.display());
                return ExitCode::from(1);
            }
        },
        None => Sink::Stderr,
    };
    logging::init(level, sink);

    if let Some(runas) = &opts.runas
        && let Err(e) = process::drop_privileges(runas)
    {
        return fail(format_args!("Can't change to user {}: {e}", runas.user));
    }

    let host = match hostcfg::detect(
        opts.interface.as_deref(),
        opts.outbound_if4.as_deref(),
        opts.outbound_if6.as_deref(),
    ) {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    let config = match cli::build_config(&opts, &host) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if host.ipv4.is_none() && config.ipv4.is_some() && opts.address.v4.is_none() {
        logging::log(
            Level::Warn,
            format_args!("No IPv4 default route on the host: using link-local addresses"),
        );
    }
    for line in banner(&config, &host) {
        logging::log(Level::Info, format_args!("{line}"));
    }

    // Forwarded ports first, as upstream: a port that cannot be bound
    // stops the start before the socket is announced.
    let host_io = match RealHost::new() {
        Ok(h) => h,
        Err(e) => return fail(format_args!("Failed to set up epoll: {e}")),
    };
    let mut engine = match Engine::new(config, host_io, clock::random_seed()) {
        Ok(e) => e,
        Err(e) => return fail(format_args!("Invalid configuration: {e}")),
    };
    if let Err(e) = process::raise_nofile_limit() {
        logging::log(
            Level::Debug,
            format_args!("Can't raise the open files limit: {e}"),
        );
    }
    match forward::bind_forwards(
        &mut engine,
        &opts.forwarding,
        &opts.tcp_ports,
        &opts.udp_ports,
        cx,
    ) {
        Ok(report) => {
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
        }
        Err(e) => return fail(e),
    }
    let transport = match (opts.fd, &opts.socket) {
        (Some(fd), _) => {
            Transport::qemu_from_raw_fd(fd).map_err(|e| format!("Invalid --fd {fd}: {e}"))
        }
        (None, Some(path)) => Transport::qemu_listen(path)
            .map_err(|e| format!("Failed to bind UNIX domain socket {}: {e}", path.display())),
        (None, None) => Transport::qemu_listen_probe()
            .map_err(|e| format!("Failed to bind any UNIX domain socket in /tmp: {e}")),
    };
    let transport = match transport {
        Ok(t) => t,
        Err(e) => return fail(e),
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

    let mut event_loop = match EventLoop::new(engine, transport) {
        Ok(l) => l,
        Err(e) => return fail(format_args!("Failed to start the event loop: {e}")),
    };
    event_loop.set_one_off(opts.one_off);
    if let Some(path) = &opts.pcap {
        match PcapWriter::create(path) {
            Ok(w) => {
                logging::log(
                    Level::Info,
                    format_args!("Saving packet capture to {}", path.display()),
                );
                event_loop.set_pcap(w);
            }
            Err(e) => {
                return fail(format_args!(
                    "Failed to open pcap file {}: {e}",
                    path.display()
                ));
            }
        }
    }

    let pid = if opts.foreground {
        process::pid()
    } else {
        match process::daemonize() {
            Ok(process::Forked::Parent(child)) => {
                if let Some(path) = &opts.pid_file
                    && let Err(e) = process::write_pid_file(path, child)
                {
                    eprintln!("Failed to write PID file {}: {e}", path.display());
                }
                // The child owns the socket, the capture and the pid file.
                process::exit_immediately(0);
            }
            Ok(process::Forked::Child) => {
                // Standard error is /dev/null now: keep only a log file.
                let sink = match &opts.log_file {
                    Some(path) => logging::file_sink(path, opts.log_size).unwrap_or(Sink::Discard),
                    None => Sink::Discard,
                };
                logging::init(level, sink);
                process::pid()
            }
            Err(e) => return fail(format_args!("Failed to fork: {e}")),
        }
    };
    if opts.foreground
        && let Some(path) = &opts.pid_file
        && let Err(e) = process::write_pid_file(path, pid)
    {
        return fail(format_args!(
            "Failed to write PID file {}: {e}",
            path.display()
        ));
    }

    // After the fork: a signalfd registered in epoll by the parent would
    // never wake the child's epoll.
    if let Err(e) = event_loop.catch_signals() {
        return fail(format_args!("Failed to set up signal handling: {e}"));
    }
    let result = event_loop.run();
    event_loop.shutdown();
    if let Some(path) = &opts.pid_file {
        let _ = std::fs::remove_file(path);
    }
    match result {
        Ok(reason) => {
            logging::log(Level::Debug, format_args!("exiting: {reason:?}"));
            ExitCode::SUCCESS
        }
        Err(e) => fail(format_args!("Event loop failed: {e}")),
    }
}
