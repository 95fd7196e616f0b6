//! pasta's own command line (pasta(1)): the options only pasta takes, the
//! target (a command to run, a PID, or `--netns`), pasta's defaults, and
//! the errors for options given to the wrong program.
//!
//! The options both programs share are [`super`]'s; this module adds the
//! pasta block ([`RawPasta`], flattened at the end of the raw arguments,
//! hidden from passt's help) and turns it into [`PastaOptions`]. Messages
//! are worded as upstream's ("--netns is for pasta mode only", "Both
//! --netns and PID or command given", ...).
//!
//! Pure parsing, like the rest of `cli`: it never opens a namespace.

use std::ffi::OsString;
use std::path::PathBuf;
use std::str::FromStr;

use clap::CommandFactory;

use super::{CliError, Forwarding, Options, RawArgs, parse_forwarding};
use crate::addr::MacAddr;
use crate::fwd::{Program, SpecContext};

/// Where `ip netns` keeps named network namespaces (ip-netns(8)).
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Longest `--netns` path (`PATH_MAX` less the terminating NUL).
const MAX_NETNS_PATH: usize = 4095;

/// The namespace pasta serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PastaTarget {
    /// No PID and no `--netns`: create new user, network, UTS and IPC
    /// namespaces and run this command in them (empty: the user's shell,
    /// as a login shell).
    Spawn(Vec<OsString>),
    /// `pasta PID`: the namespaces of this process.
    Pid(u32),
    /// `--netns PATH|NAME`: this network namespace (a NAME is
    /// `/run/netns/NAME`).
    Netns(PathBuf),
}

/// Everything only pasta takes, parsed and checked. Options it shares with
/// passt stay in [`Options`] (where pasta's defaults are applied:
/// `--dhcp-dns`/`--dhcp-search` off, foreground when running a command).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PastaOptions {
    /// The namespace to serve.
    pub target: PastaTarget,
    /// `--userns PATH`: the user namespace to join.
    pub userns: Option<PathBuf>,
    /// `--netns-only` (implied by `--netns` without `--userns`): join no
    /// user namespace.
    pub netns_only: bool,
    /// `--no-netns-quit`: keep running when the target goes away.
    pub no_netns_quit: bool,
    /// `-I`: the tap's name in the namespace (default: the host's template
    /// interface's).
    pub ns_ifname: Option<String>,
    /// `-T` specs, raw, in order.
    pub tcp_ns_ports: Vec<String>,
    /// `-U` specs, raw, in order.
    pub udp_ns_ports: Vec<String>,
    /// `-T`/`-U` resolved: namespace to host (default `auto`).
    pub forwarding_ns: Forwarding,
    /// `--config-net`: configure the tap (addresses, routes, MTU, up).
    pub config_net: bool,
    /// Not `--no-copy-routes`: copy the host's routes to the tap.
    pub copy_routes: bool,
    /// Not `--no-copy-addrs`: copy all the template interface's addresses.
    pub copy_addrs: bool,
    /// `--ns-mac-addr`: the tap's MAC address.
    pub ns_mac: Option<MacAddr>,
    /// `--no-splice`: loopback traffic goes through the tap too.
    pub no_splice: bool,
    /// `--splice-only`: no tap, only the loopback splice.
    pub splice_only: bool,
    /// `--host-lo-to-ns-lo`: connections forwarded from the host's loopback
    /// arrive on the namespace's loopback.
    pub host_lo_to_ns_lo: bool,
}

/// The raw pasta-only arguments, flattened at the end of [`RawArgs`];
/// hidden from passt's help ([`pasta_help_text`] shows them).
#[derive(clap::Args, Debug, Default)]
pub(super) struct RawPasta {
    /// Namespace interface name (default: same interface name as the host's template)
    #[arg(short = 'I', long = "ns-ifname", value_name = "NAME", hide = true)]
    ns_ifname: Option<String>,
    /// TCP port forwarding to init namespace: none, auto, or as -t (default: auto)
    #[arg(short = 'T', long = "tcp-ns", value_name = "SPEC", hide = true)]
    tcp_ns: Vec<String>,
    /// UDP port forwarding to init namespace, as -T (default: auto)
    #[arg(short = 'U', long = "udp-ns", value_name = "SPEC", hide = true)]
    udp_ns: Vec<String>,
    /// Target user namespace to join
    #[arg(long = "userns", value_name = "NSPATH", hide = true)]
    userns: Option<PathBuf>,
    /// Target network namespace to join (a NAME is /run/netns/NAME)
    #[arg(long = "netns", value_name = "PATH|NAME", hide = true)]
    netns: Option<PathBuf>,
    /// Don't join existing user namespace (implied if PATH or NAME are given without --userns)
    #[arg(long = "netns-only", hide = true)]
    netns_only: bool,
    /// Don't quit if the target namespace goes away
    #[arg(long = "no-netns-quit", hide = true)]
    no_netns_quit: bool,
    /// Configure tap interface in namespace
    #[arg(long = "config-net", hide = true)]
    config_net: bool,
    /// With --config-net, don't copy the host's routes (only a default route)
    #[arg(long = "no-copy-routes", hide = true)]
    no_copy_routes: bool,
    /// With --config-net, don't copy all the host's addresses (only one)
    #[arg(long = "no-copy-addrs", hide = true)]
    no_copy_addrs: bool,
    /// Set MAC address on tap interface
    #[arg(long = "ns-mac-addr", value_name = "ADDR", hide = true)]
    ns_mac_addr: Option<String>,
    /// Disable inbound socket splicing
    #[arg(long = "no-splice", hide = true)]
    no_splice: bool,
    /// Only enable loopback socket splicing (no tap)
    #[arg(long = "splice-only", hide = true)]
    splice_only: bool,
    /// Connections from the host's loopback appear on the namespace's loopback
    #[arg(long = "host-lo-to-ns-lo", hide = true)]
    host_lo_to_ns_lo: bool,
    /// Pass DNS list via DHCP/DHCPv6/NDP
    #[arg(long = "dhcp-dns", hide = true)]
    dhcp_dns: bool,
    /// Pass search list via DHCP/DHCPv6/NDP
    #[arg(long = "dhcp-search", hide = true)]
    dhcp_search: bool,
    /// PID of the process whose namespaces to join, or the command to run
    #[arg(
        value_name = "PID | COMMAND [ARGS]",
        trailing_var_arg = true,
        num_args = 0..,
        hide = true
    )]
    target: Vec<OsString>,
}

impl RawPasta {
    /// The pasta-only options given, as upstream names them in errors
    /// (`--NAME is for pasta mode only`), in the order of pasta(1).
    fn given(&self) -> Vec<&'static str> {
        [
            (self.ns_ifname.is_some(), "ns-ifname"),
            (!self.tcp_ns.is_empty(), "tcp-ns"),
            (!self.udp_ns.is_empty(), "udp-ns"),
            (self.userns.is_some(), "userns"),
            (self.netns.is_some(), "netns"),
            (self.netns_only, "netns-only"),
            (self.no_netns_quit, "no-netns-quit"),
            (self.config_net, "config-net"),
            (self.no_copy_routes, "no-copy-routes"),
            (self.no_copy_addrs, "no-copy-addrs"),
            (self.ns_mac_addr.is_some(), "ns-mac-addr"),
            (self.no_splice, "no-splice"),
            (self.splice_only, "splice-only"),
            (self.host_lo_to_ns_lo, "host-lo-to-ns-lo"),
            (self.dhcp_dns, "dhcp-dns"),
            (self.dhcp_search, "dhcp-search"),
        ]
        .into_iter()
        .filter_map(|(given, name)| given.then_some(name))
        .collect()
    }
}

/// Takes the pasta block out of `raw` and refuses the options `program`
/// does not take, with upstream's wording: pasta-only options (and any
/// non-option argument) given to passt, passt-only ones given to pasta.
pub(super) fn take_pasta_block(raw: &mut RawArgs, program: Program) -> Result<RawPasta, CliError> {
    let block = std::mem::take(&mut raw.pasta);
    match program {
        Program::Passt => {
            if let Some(name) = block.given().first() {
                return Err(CliError::invalid(format!(
                    "--{name} is for pasta mode only"
                )));
            }
            if let Some(arg) = block.target.first() {
                return Err(CliError::invalid(format!(
                    "Extra non-option argument: {}",
                    arg.to_string_lossy()
                )));
            }
        }
        Program::Pasta => {
            let passt_only = [
                (raw.socket.is_some(), "socket"),
                (raw.fd.is_some(), "fd"),
                (raw.one_off, "one-off"),
                (raw.no_dhcp_dns, "no-dhcp-dns"),
                (raw.no_dhcp_search, "no-dhcp-search"),
                (raw.vhost_user, "vhost-user"),
            ];
            if let Some((_, name)) = passt_only.iter().find(|(given, _)| *given) {
                return Err(CliError::invalid(format!(
                    "--{name} is for passt mode only"
                )));
            }
        }
    }
    Ok(block)
}

/// The target from `--netns` and the non-option arguments.
fn target_of(block: &mut RawPasta) -> Result<PastaTarget, CliError> {
    let args = std::mem::take(&mut block.target);
    if let Some(netns) = block.netns.take() {
        if !args.is_empty() {
            return Err(CliError::invalid("Both --netns and PID or command given"));
        }
        let path = if netns.as_os_str().as_encoded_bytes().contains(&b'/') {
            netns
        } else {
            PathBuf::from(NETNS_RUN_DIR).join(netns)
        };
        if path.as_os_str().len() > MAX_NETNS_PATH {
            return Err(CliError::invalid(format!(
                "Network namespace name/path {} too long",
                path.display()
            )));
        }
        return Ok(PastaTarget::Netns(path));
    }
    // One all-digit argument is a PID; anything else is a command.
    if let [only] = args.as_slice()
        && let Some(s) = only.to_str()
        && !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit())
    {
        return match s.parse::<u32>() {
            Ok(pid) if pid > 0 && pid <= i32::MAX as u32 => Ok(PastaTarget::Pid(pid)),
            _ => Err(CliError::invalid(format!("Invalid PID {s}"))),
        };
    }
    Ok(PastaTarget::Spawn(args))
}

/// Applies the pasta block to `opts` (parsed from the shared options):
/// checks it, resolves the target and `-T`/`-U`, and sets pasta's defaults
/// on the shared options. For passt (`block` is then empty) it does
/// nothing.
pub(super) fn apply_pasta_block(
    opts: &mut Options,
    mut block: RawPasta,
    cx: SpecContext,
) -> Result<(), CliError> {
    if cx.program != Program::Pasta {
        return Ok(());
    }
    if block.userns.is_some() && block.netns_only {
        return Err(CliError::invalid("Both --userns and --netns-only given"));
    }
    if block.no_splice && block.splice_only {
        return Err(CliError::invalid(
            "Options --no-splice and --splice-only are mutually exclusive",
        ));
    }
    if let Some(name) = &block.ns_ifname
        && !crate::host_io::IfName::valid(name)
    {
        return Err(CliError::invalid(format!("Invalid interface name: {name}")));
    }
    let ns_mac = match &block.ns_mac_addr {
        None => None,
        Some(s) => match MacAddr::from_str(s) {
            Ok(m) if m.is_unicast() => Some(m),
            _ => return Err(CliError::invalid(format!("Invalid MAC address: {s}"))),
        },
    };
    let target = target_of(&mut block)?;
    if block.userns.is_some() && matches!(target, PastaTarget::Spawn(_)) {
        return Err(CliError::invalid("--userns requires --netns or a PID"));
    }
    // --netns without --userns joins no user namespace (pasta(1)).
    let netns_only =
        block.netns_only || (matches!(target, PastaTarget::Netns(_)) && block.userns.is_none());
    let forwarding_ns = parse_forwarding(&block.tcp_ns, &block.udp_ns, cx)?;

    // pasta's defaults for shared options: no resolvers or search list in
    // DHCP/NDP unless asked; a command runs in the foreground (its exit
    // status is pasta's).
    opts.no_dhcp_dns = !block.dhcp_dns;
    opts.no_dhcp_search = !block.dhcp_search;
    if matches!(target, PastaTarget::Spawn(_)) {
        opts.foreground = true;
    }
    opts.pasta = Some(PastaOptions {
        target,
        userns: block.userns,
        netns_only,
        no_netns_quit: block.no_netns_quit,
        ns_ifname: block.ns_ifname,
        tcp_ns_ports: block.tcp_ns,
        udp_ns_ports: block.udp_ns,
        forwarding_ns,
        config_net: block.config_net,
        copy_routes: !block.no_copy_routes,
        copy_addrs: !block.no_copy_addrs,
        ns_mac,
        no_splice: block.no_splice,
        splice_only: block.splice_only,
        host_lo_to_ns_lo: block.host_lo_to_ns_lo,
    });
    Ok(())
}

/// Rewrites a message that names the program (`passt: unrecognized option
/// ...`) for `program`.
pub(super) fn for_program(e: CliError, program: Program) -> CliError {
    match (e, program) {
        (CliError::Invalid(m), Program::Pasta) if m.starts_with("passt: ") => {
            CliError::Invalid(format!("pasta: {}", &m["passt: ".len()..]))
        }
        (e, _) => e,
    }
}

/// pasta's help text (`pasta -h`): pasta's usage, its own options shown,
/// passt-only ones hidden.
pub fn pasta_help_text() -> String {
    let passt_only = ["socket", "fd", "one_off", "no_dhcp_dns", "no_dhcp_search"];
    let pasta_only = [
        "ns_ifname",
        "tcp_ns",
        "udp_ns",
        "userns",
        "netns",
        "netns_only",
        "no_netns_quit",
        "config_net",
        "no_copy_routes",
        "no_copy_addrs",
        "ns_mac_addr",
        "no_splice",
        "splice_only",
        "host_lo_to_ns_lo",
        "dhcp_dns",
        "dhcp_search",
        "target",
    ];
    let mut cmd = RawArgs::command()
        .name("pasta")
        .about(
            "Pack A Subtle Tap Abstraction: user-mode networking for network namespaces.\n\
             Without PID or --netns, run the given command or a default shell in a new\n\
             network and user namespace, and connect it via pasta.",
        )
        .override_usage(
            "pasta [OPTION]... [COMMAND] [ARGS]...\n       \
             pasta [OPTION]... PID\n       \
             pasta [OPTION]... --netns [PATH|NAME]",
        );
    for id in passt_only {
        cmd = cmd.mut_arg(id, |a| a.hide(true));
    }
    for id in pasta_only {
        cmd = cmd.mut_arg(id, |a| a.hide(false));
    }
    cmd = cmd
        .mut_arg("tcp_ports", |a| {
            a.help(
                "TCP port forwarding to namespace: none, auto, or as in passt(1) (default: auto)",
            )
        })
        .mut_arg("udp_ports", |a| {
            a.help("UDP port forwarding to namespace, as -t (default: auto)")
        });
    cmd.render_help().to_string()
}

/// pasta's version text (`pasta --version`).
pub fn pasta_version_text() -> String {
    super::version_text().replacen("passt ", "pasta ", 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{CliError, Options, parse_args_in};
    use crate::fwd::ForwardMode;

    fn pasta(args: &[&str]) -> Result<Options, CliError> {
        parse_args_in(
            std::iter::once("pasta").chain(args.iter().copied()),
            SpecContext::new(Program::Pasta),
        )
    }

    fn passt(args: &[&str]) -> Result<Options, CliError> {
        parse_args_in(
            std::iter::once("passt").chain(args.iter().copied()),
            SpecContext::new(Program::Passt),
        )
    }

    fn error(r: Result<Options, CliError>) -> String {
        match r {
            Err(CliError::Invalid(m)) => m,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn target(args: &[&str]) -> PastaTarget {
        pasta(args).unwrap().pasta.unwrap().target
    }

    #[test]
    fn pasta_defaults_are_auto_forwarding_a_shell_and_no_dhcp_dns() {
        let o = pasta(&[]).unwrap();
        let p = o.pasta.as_ref().unwrap();
        assert_eq!(p.target, PastaTarget::Spawn(vec![]));
        assert_eq!(o.forwarding.tcp.mode, ForwardMode::Auto);
        assert_eq!(o.forwarding.udp.mode, ForwardMode::Auto);
        assert_eq!(p.forwarding_ns.tcp.mode, ForwardMode::Auto);
        assert_eq!(p.forwarding_ns.udp.mode, ForwardMode::Auto);
        assert!(o.no_dhcp_dns && o.no_dhcp_search);
        assert!(o.foreground, "a command runs in the foreground");
        assert!(!p.config_net && p.copy_routes && p.copy_addrs && !p.netns_only);
        assert_eq!(o.mtu, None, "the engine's default MTU, 65520");
        assert!(passt(&[]).unwrap().pasta.is_none());
    }

    #[test]
    fn the_command_keeps_its_own_options() {
        assert_eq!(
            target(&["-q", "--", "sh", "-c", "exit 7"]),
            PastaTarget::Spawn(vec!["sh".into(), "-c".into(), "exit 7".into()])
        );
        // Without "--", the first non-option ends pasta's options.
        let o = pasta(&["--config-net", "ls", "-l", "/", "--netns", "x"]).unwrap();
        assert_eq!(o.log_file, None);
        let p = o.pasta.unwrap();
        assert!(p.config_net);
        assert_eq!(
            p.target,
            PastaTarget::Spawn(
                ["ls", "-l", "/", "--netns", "x"]
                    .map(OsString::from)
                    .to_vec()
            )
        );
    }

    #[test]
    fn a_lone_number_is_a_pid_and_a_name_is_under_run_netns() {
        assert_eq!(target(&["1234"]), PastaTarget::Pid(1234));
        assert_eq!(
            target(&["--netns", "ctr1"]),
            PastaTarget::Netns(PathBuf::from("/run/netns/ctr1"))
        );
        assert_eq!(
            target(&["--netns=/proc/5/ns/net"]),
            PastaTarget::Netns(PathBuf::from("/proc/5/ns/net"))
        );
        let p = pasta(&["--netns", "ctr1"]).unwrap().pasta.unwrap();
        assert!(p.netns_only, "implied without --userns");
        let p = pasta(&["--netns", "a", "--userns", "/proc/5/ns/user"])
            .unwrap()
            .pasta
            .unwrap();
        assert!(!p.netns_only);
        assert_eq!(p.userns, Some(PathBuf::from("/proc/5/ns/user")));
        let p = pasta(&["--netns-only", "77"]).unwrap().pasta.unwrap();
        assert!(p.netns_only);
        assert_eq!(p.target, PastaTarget::Pid(77));
    }

    #[test]
    fn every_pasta_option_is_accepted() {
        let o = pasta(&[
            "-I",
            "tap9",
            "-T",
            "5000",
            "-U",
            "none",
            "--userns",
            "/proc/1/ns/user",
            "--no-netns-quit",
            "--config-net",
            "--no-copy-routes",
            "--no-copy-addrs",
            "--ns-mac-addr",
            "02:00:00:00:00:09",
            "--no-splice",
            "--host-lo-to-ns-lo",
            "--dhcp-dns",
            "--dhcp-search",
            "-t",
            "22",
            "-u",
            "53",
            "-q",
            "-m",
            "1500",
            "42",
        ])
        .unwrap();
        assert!(!o.no_dhcp_dns && !o.no_dhcp_search);
        assert_eq!(o.mtu, Some(1500));
        assert!(
            !o.foreground,
            "a PID target goes to the background like passt"
        );
        let p = o.pasta.unwrap();
        assert_eq!(p.ns_ifname.as_deref(), Some("tap9"));
        assert_eq!(p.forwarding_ns.tcp.guest_port(5000), Some(5000));
        assert_eq!(p.forwarding_ns.udp.mode, ForwardMode::None);
        assert!(p.no_netns_quit && p.config_net && !p.copy_routes && !p.copy_addrs);
        assert!(p.no_splice && !p.splice_only && p.host_lo_to_ns_lo);
        assert_eq!(p.ns_mac, Some("02:00:00:00:00:09".parse().unwrap()));
        assert_eq!(p.target, PastaTarget::Pid(42));
        assert!(
            pasta(&["--splice-only"])
                .unwrap()
                .pasta
                .unwrap()
                .splice_only
        );
    }

    #[test]
    fn options_for_the_other_program_are_refused_as_upstream_words_it() {
        for (args, want) in [
            (&["--netns", "x"][..], "--netns is for pasta mode only"),
            (&["--config-net"], "--config-net is for pasta mode only"),
            (&["-I", "eth0"], "--ns-ifname is for pasta mode only"),
            (&["-T", "22"], "--tcp-ns is for pasta mode only"),
            (&["--dhcp-dns"], "--dhcp-dns is for pasta mode only"),
            (
                &["--no-netns-quit"],
                "--no-netns-quit is for pasta mode only",
            ),
            (&["--userns", "/x"], "--userns is for pasta mode only"),
            (
                &["--ns-mac-addr", "02:00:00:00:00:01"],
                "--ns-mac-addr is for pasta mode only",
            ),
            (&["sh"], "Extra non-option argument: sh"),
        ] {
            assert_eq!(error(passt(args)), want, "{args:?}");
        }
        for (args, want) in [
            (&["-1"][..], "--one-off is for passt mode only"),
            (&["-s", "/tmp/x"], "--socket is for passt mode only"),
            (&["--no-dhcp-dns"], "--no-dhcp-dns is for passt mode only"),
            (
                &["--no-dhcp-search"],
                "--no-dhcp-search is for passt mode only",
            ),
            (&["-F", "5"], "--fd is for passt mode only"),
        ] {
            assert_eq!(error(pasta(args)), want, "{args:?}");
        }
    }

    #[test]
    fn pasta_errors_are_upstream_worded_one_liners() {
        for (args, want) in [
            (
                &["--netns", "x", "sh"][..],
                "Both --netns and PID or command given",
            ),
            (
                &["--netns", "x", "12"],
                "Both --netns and PID or command given",
            ),
            (
                &["--userns", "/u", "--netns-only", "5"],
                "Both --userns and --netns-only given",
            ),
            (&["--userns", "/u"], "--userns requires --netns or a PID"),
            (&["0"], "Invalid PID 0"),
            (&["99999999999"], "Invalid PID 99999999999"),
            (&["-I", "a/b"], "Invalid interface name: a/b"),
            (
                &["-I", "abcdefghijklmnop"],
                "Invalid interface name: abcdefghijklmnop",
            ),
            (&["--ns-mac-addr", "zz"], "Invalid MAC address: zz"),
            (
                &["--netns", ""],
                "pasta: option '--netns' requires an argument",
            ),
            (
                &["--no-splice", "--splice-only"],
                "Options --no-splice and --splice-only are mutually exclusive",
            ),
            (&["--bogus"], "pasta: unrecognized option '--bogus'"),
            (&["-T", "22a"], "Invalid port specifier 22a"),
        ] {
            let m = error(pasta(args));
            assert!(m.starts_with(want), "{args:?}: {m}");
            assert!(!m.contains('\n'));
        }
        let long = format!("/{}", "a".repeat(5000));
        assert!(error(pasta(&["--netns", &long])).ends_with("too long"));
    }

    #[test]
    fn help_shows_each_programs_own_options() {
        let help = pasta_help_text();
        for opt in [
            "--netns",
            "--config-net",
            "--tcp-ns",
            "--ns-ifname",
            "--dhcp-dns",
            "pasta [OPTION]... PID",
        ] {
            assert!(help.contains(opt), "{opt} missing from pasta's help");
        }
        for opt in ["--socket", "--one-off", "--no-dhcp-dns"] {
            assert!(!help.contains(opt), "{opt} in pasta's help");
        }
        let passt_help = crate::cli::help_text();
        for opt in ["--netns", "--config-net", "--tcp-ns"] {
            assert!(!passt_help.contains(opt), "{opt} in passt's help");
        }
        match pasta(&["--help"]) {
            Err(CliError::Help(t)) => assert!(t.contains("--netns")),
            other => panic!("{other:?}"),
        }
        match pasta(&["--version"]) {
            Err(CliError::Version(t)) => assert!(t.starts_with("pasta "), "{t}"),
            other => panic!("{other:?}"),
        }
    }
}
