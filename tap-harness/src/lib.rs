//! # tap-harness: the real Linux kernel as the guest
//!
//! This crate puts the engine's real backend in front of a real kernel: it
//! creates a network namespace with a tap device in it, hands the tap's
//! descriptor to [`EventLoop`] (the tap is just another frame transport), and
//! runs ordinary Linux programs inside the namespace (busybox `udhcpc` and
//! `ping`, `socat`, `ip`): the guest's DHCP client, neighbour discovery,
//! SLAAC, ICMP, UDP and TCP are the kernel's and busybox's own, not ours.
//!
//! What it owns:
//! - [`Netns`]: a named network namespace (`ip netns add`), deleted when
//!   dropped (also while unwinding from a failed assertion), plus helpers to
//!   run programs in it with a hard time limit and to run closures on a
//!   thread that joined it;
//! - [`TapGuest`]: the guest namespace with its tap, the engine thread
//!   driving it, and the "host" side the engine's sockets live in: by
//!   default a second private namespace of ours ([`HostSide::Private`]), so
//!   that the host's loopback (where the gateway address leads) holds only
//!   what the test put there and `ping_group_range` can be set without
//!   touching the machine's own.
//!
//! - [`pasta`]: the `pasta` binary under test (ours or Debian's), the
//!   host-shaped namespace it runs in, and the command lines of its
//!   clients, for the pasta suite (`tests/pasta.rs`).
//!
//! - [`lossy`]: an optional relay between the tap and the engine that drops
//!   frames with a given probability each way ([`GuestOptions::lossy`]),
//!   since the machine's kernel has no `netem`.
//!
//! What it must never do: use an address outside the namespaces it created
//! (and their loopback), touch the root namespace's settings, or leave a
//! namespace or a child process behind. Everything it starts is bounded in
//! time and killed by its own process-group id.

#![cfg(target_os = "linux")]
#![warn(missing_docs)]

pub mod lossy;
pub mod pasta;

pub use lossy::{LossyLink, Relay, RelayEnd, RelayStats};

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use passt_engine::runtime::RealHost;
use passt_engine::runtime::clock;
use passt_engine::runtime::event_loop::{EventLoop, ExitReason, LoopStats, StopHandle};
use passt_engine::runtime::transport::tap::Tap;
use passt_engine::runtime::transport::{GuestTransport, StreamTransport, TapTransport};
use passt_engine::{Config, Counters, DropReason, Engine};

/// Prefix of every namespace this crate creates: `tapharness-<pid>-<n>-<role>`.
pub const NETNS_PREFIX: &str = "tapharness-";

/// When set, every [`TapGuest`] without an explicit [`GuestOptions::pcap`]
/// records its guest-facing frames (both directions, as the engine sees
/// them) to `$TAPHARNESS_PCAP_DIR/<guest namespace>.pcap`.
pub const PCAP_DIR_ENV: &str = "TAPHARNESS_PCAP_DIR";

/// Where `ip netns` keeps its namespace handles.
const NETNS_DIR: &str = "/run/netns";

/// Failures of the harness itself (not of the engine under test).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A program could not be started or waited for.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A setup command ran but failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error.
        stderr: String,
    },
    /// A program did not finish in time and was killed.
    #[error("`{command}` did not finish within {limit:?} and was killed")]
    Timeout {
        /// The command line.
        command: String,
        /// The limit.
        limit: Duration,
    },
    /// The engine could not be built or its loop failed.
    #[error("engine: {0}")]
    Engine(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// Why the harness cannot run here (not root, no `/dev/net/tun`, no `ip`),
/// or `None` when it can. Tests print a visible SKIP line and return when
/// this is `Some`.
pub fn skip_reason() -> Option<String> {
    // SAFETY: plain syscall without arguments.
    if unsafe { libc::geteuid() } != 0 {
        return Some(
            "not root (creating namespaces and taps needs CAP_SYS_ADMIN/CAP_NET_ADMIN)".into(),
        );
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    if !tool_available("ip", &["-V"]) {
        return Some("`ip` (iproute2) is not installed".into());
    }
    None
}

/// Whether `program args` can be run at all (it may exit non-zero).
pub fn tool_available(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Whether busybox is installed and has the applet `applet`.
pub fn busybox_has(applet: &str) -> bool {
    Command::new("busybox")
        .arg("--list")
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == applet)
        })
}

/// Prints the standard SKIP line for `test`, straight to the standard
/// error handle: libtest captures `eprintln!` of passing tests, and a skip
/// must stay visible. One write, so parallel tests do not interleave.
pub fn print_skip(test: &str, reason: &str) {
    use std::io::Write as _;
    let line = format!("SKIP {test}: {reason}\n");
    let _ = io::stderr().write_all(line.as_bytes());
}

fn command_line(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion with a hard time limit: on timeout its whole
/// process group (it is made a group leader) is killed with SIGKILL and
/// [`HarnessError::Timeout`] returned. Stdin is empty; stdout and stderr are
/// collected.
pub fn run_with_timeout(mut cmd: Command, limit: Duration) -> Result<Output, HarnessError> {
    let line = command_line(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(io_err(format!("spawn `{line}`")))?;
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                kill_group(&mut child);
                return Err(HarnessError::Timeout {
                    command: line,
                    limit,
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                kill_group(&mut child);
                return Err(io_err(format!("wait for `{line}`"))(e));
            }
        }
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Reads a pipe to its end on a thread of its own.
struct Drain(mpsc::Receiver<Vec<u8>>);

impl Drain {
    /// What was read, waiting at most 2 s for the end of the pipe (a
    /// grandchild left running may hold it open: its output is then cut).
    fn join(self) -> Result<Vec<u8>, mpsc::RecvTimeoutError> {
        self.0.recv_timeout(Duration::from_secs(2))
    }
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> Drain {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    Drain(rx)
}

/// SIGKILLs the process group `child` leads (it was spawned with
/// `process_group(0)`), then reaps the child.
fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: plain syscall; the group id is our own child's pid.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `cmd`, returning an error unless it exits successfully.
fn run_ok(cmd: Command, limit: Duration) -> Result<Output, HarnessError> {
    let line = command_line(&cmd);
    let out = run_with_timeout(cmd, limit)?;
    if !out.status.success() {
        return Err(HarnessError::CommandFailed {
            command: line,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(out)
}

/// A child process started in the background, killed (with its process
/// group) when dropped or by [`Background::stop`].
#[derive(Debug)]
pub struct Background {
    child: Option<Child>,
    line: String,
}

impl Background {
    /// Starts `cmd` as the leader of a new process group, stdin empty,
    /// stdout and stderr piped (read them with [`Background::wait_timeout`]).
    pub fn spawn(mut cmd: Command) -> Result<Background, HarnessError> {
        let line = command_line(&cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let child = cmd.spawn().map_err(io_err(format!("spawn `{line}`")))?;
        Ok(Background {
            child: Some(child),
            line,
        })
    }

    /// The process id (also its process-group id).
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it has exited (reaping it if so).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `limit` for it to exit by itself; kills it otherwise.
    pub fn wait_timeout(mut self, limit: Duration) -> Result<Output, HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Err(HarnessError::Engine(
                "background child already taken".into(),
            ));
        };
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        let deadline = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    return Ok(Output {
                        status,
                        stdout: out.join().unwrap_or_default(),
                        stderr: err.join().unwrap_or_default(),
                    });
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    kill_group(&mut child);
                    return Err(HarnessError::Timeout {
                        command: self.line.clone(),
                        limit,
                    });
                }
            }
        }
    }

    /// Kills it now.
    pub fn stop(mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(&mut c);
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(&mut c);
        }
    }
}

static NETNS_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A named network namespace created by this harness (`ip netns add`),
/// deleted when dropped. Processes still running inside it are not killed
/// by the deletion: use [`Background`] (killed on drop) for those.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `tapharness-<pid>-<n>-<role>` and brings its loopback up.
    /// Namespaces left behind by earlier harness processes that no longer
    /// exist are removed first.
    pub fn create(role: &str) -> Result<Netns, HarnessError> {
        remove_stale_namespaces();
        let n = NETNS_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{NETNS_PREFIX}{}-{n}-{role}", std::process::id());
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "add", &name]);
        run_ok(cmd, Duration::from_secs(10))?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its handle, `/run/netns/NAME` (what `setns` and
    /// [`Tap::open_in_netns`] take).
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// `ip -n NAME args...`, which must succeed within 10 s.
    pub fn ip(&self, args: &[&str]) -> Result<Output, HarnessError> {
        let mut cmd = Command::new("ip");
        cmd.arg("-n").arg(&self.name).args(args);
        run_ok(cmd, Duration::from_secs(10))
    }

    /// A command running `program args` inside the namespace
    /// (`ip netns exec NAME program args...`).
    pub fn command<S: AsRef<OsStr>>(&self, program: &str, args: &[S]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]).args(args);
        cmd
    }

    /// Runs `program args` inside the namespace with a hard time limit
    /// (killed by process group on timeout). A non-zero exit is not an
    /// error here: the caller looks at [`Output::status`].
    pub fn run<S: AsRef<OsStr>>(
        &self,
        program: &str,
        args: &[S],
        limit: Duration,
    ) -> Result<Output, HarnessError> {
        run_with_timeout(self.command(program, args), limit)
    }

    /// Runs a `sh -c script` inside the namespace (see [`Netns::run`]).
    pub fn sh(&self, script: &str, limit: Duration) -> Result<Output, HarnessError> {
        self.run("sh", &["-c", script], limit)
    }

    /// Starts `program args` inside the namespace in the background, its
    /// stdout and stderr piped (read them with [`Background::wait_timeout`]).
    pub fn spawn<S: AsRef<OsStr>>(
        &self,
        program: &str,
        args: &[S],
    ) -> Result<Background, HarnessError> {
        Background::spawn(self.command(program, args))
    }

    /// Moves the calling thread into the namespace (`setns(CLONE_NEWNET)`
    /// affects only this thread). Use it on threads of your own.
    pub fn enter_current_thread(&self) -> Result<(), HarnessError> {
        enter_netns(&self.path())
    }

    /// Runs `f` on a new thread that joined the namespace, and returns its
    /// result (a panic in `f` is propagated).
    pub fn in_ns<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HarnessError> {
        let handle = self.spawn_thread(f)?;
        Ok(handle
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p)))
    }

    /// Starts `f` on a new thread that joined the namespace.
    pub fn spawn_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<JoinHandle<T>, HarnessError> {
        let file = File::open(self.path()).map_err(io_err(format!("open {:?}", self.path())))?;
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::spawn(move || {
            // SAFETY: plain syscall on a descriptor we hold open.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            let ok = if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            };
            drop(file);
            let failed = ok.is_err();
            let _ = tx.send(ok);
            if failed {
                // The closure must never run in the wrong namespace.
                std::process::abort();
            }
            f()
        });
        match rx.recv() {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(e)) => Err(io_err("setns")(e)),
            Err(_) => Err(HarnessError::Engine("namespace thread vanished".into())),
        }
    }

    /// Writes `value` to the sysctl at `/proc/sys/<key with dots as
    /// slashes>` as seen from inside the namespace (network sysctls are per
    /// namespace; this never touches another namespace's).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), HarnessError> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let value = value.to_string();
        let shown = path.clone();
        self.in_ns(move || std::fs::write(&path, value))?
            .map_err(io_err(format!("write {shown}")))
    }

    /// Reads a sysctl as seen from inside the namespace.
    pub fn read_sysctl(&self, key: &str) -> Result<String, HarnessError> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let shown = path.clone();
        self.in_ns(move || std::fs::read_to_string(&path))?
            .map(|s| s.trim().to_string())
            .map_err(io_err(format!("read {shown}")))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn enter_netns(path: &Path) -> Result<(), HarnessError> {
    let f = File::open(path).map_err(io_err(format!("open {path:?}")))?;
    // SAFETY: plain syscall on a descriptor we hold open.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io_err("setns")(io::Error::last_os_error()));
    }
    Ok(())
}

/// Deletes `tapharness-<pid>-...` namespaces whose process is gone (a test
/// binary killed before its guards ran).
fn remove_stale_namespaces() {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip")
                .args(["netns", "del", &name])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A directory under the system temp dir, removed with its contents when
/// dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `tapharness-<pid>-<n>` in the temp dir.
    pub fn new() -> Result<TempDir, HarnessError> {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "tapharness-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).map_err(io_err(format!("mkdir {p:?}")))?;
        Ok(TempDir(p))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where the engine's host sockets live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostSide {
    /// A second namespace created by the harness: its loopback stands for
    /// the host's, and `ping_group_range` is set there to the given range
    /// (`(1, 0)` forbids ping sockets, as many hosts do).
    Private {
        /// `net.ipv4.ping_group_range` inside the host namespace.
        ping_group_range: (u32, u32),
    },
    /// The namespace the test process runs in (the machine's own network:
    /// only its loopback is ever used by the tests).
    Current,
}

impl Default for HostSide {
    fn default() -> Self {
        HostSide::Private {
            ping_group_range: (0, 2_147_483_647),
        }
    }
}

/// How to set up a [`TapGuest`].
#[derive(Clone, Debug)]
pub struct GuestOptions {
    /// The engine's configuration (the network the guest is shown).
    pub config: Config,
    /// Where the engine's sockets live.
    pub host: HostSide,
    /// Name of the tap inside the guest namespace.
    pub tap_name: String,
    /// MTU set on the tap before it is brought up (`None`: the kernel's
    /// default, 1500, so that DHCP or RA has to set it).
    pub tap_mtu: Option<u16>,
    /// Accept router advertisements and autoconfigure (SLAAC) on the tap.
    pub accept_ra: bool,
    /// Duplicate address detection on the tap (`accept_dad`); off makes
    /// link-local and static addresses usable at once.
    pub dad: bool,
    /// Seed of the engine's generator.
    pub seed: u64,
    /// Record every guest-facing frame to this pcap file (with
    /// [`GuestOptions::lossy`], the frames the engine sees: after the
    /// relay's drops towards the engine, before its drops towards the
    /// guest).
    pub pcap: Option<PathBuf>,
    /// Loss on the guest link. `None` (the default): the engine owns the
    /// tap directly. `Some`: the engine talks QEMU stream framing over a
    /// socket pair to a [`Relay`] thread that owns the tap and drops frames
    /// each way with the given probabilities (see [`lossy`]); its counts
    /// are in [`TapGuest::relay_stats`] and [`EngineReport::relay`].
    pub lossy: Option<LossyLink>,
    /// What serves the guest: our engine (the default), or an external
    /// passt binary for comparison ([`Peer::Passt`]).
    pub peer: Peer,
}

/// What the guest's tap leads to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Peer {
    /// Our engine, on a thread of the test process.
    #[default]
    Engine,
    /// An external passt binary (e.g. Debian's `/usr/bin/passt`), for
    /// comparisons under the same conditions: started in the private host
    /// namespace (which it needs: [`HostSide::Private`]) as
    /// `passt -f -q -1 -4 -s SOCKET -a ADDR -n PREFIX -g GATEWAY -M MAC -m MTU -i ext0`,
    /// where `ext0` is a tap without a reader in that namespace, with an
    /// address and a default route, only there as the template interface
    /// passt insists on. The tap is always relayed (lossless when
    /// [`GuestOptions::lossy`] is `None`). IPv4 only; the
    /// [`EngineReport`] then has empty counters and loop statistics.
    Passt(PathBuf),
}

impl GuestOptions {
    /// Defaults around `config`: private host namespace, tap `tap0` with the
    /// configured MTU, RA accepted, DAD on, a random seed.
    pub fn new(config: Config) -> GuestOptions {
        GuestOptions {
            tap_mtu: Some(config.mtu),
            config,
            host: HostSide::default(),
            tap_name: "tap0".into(),
            accept_ra: true,
            dad: true,
            seed: clock::random_seed(),
            pcap: None,
            lossy: None,
            peer: Peer::Engine,
        }
    }
}

/// What the engine thread hands back when it stops.
#[derive(Clone, Debug)]
pub struct EngineReport {
    /// Why the loop returned.
    pub exit: ExitReason,
    /// The engine's counters at the end.
    pub counters: Counters,
    /// The loop's guest-side counts.
    pub stats: LoopStats,
    /// The lossy relay's final counts and why it ended, if there was one
    /// ([`GuestOptions::lossy`]).
    pub relay: Option<(RelayStats, RelayEnd)>,
}

impl EngineReport {
    /// The non-zero drop counters, as `Reason=count` pairs (for failure
    /// messages: "NotImplemented=7" says at once which module ate frames).
    pub fn drop_summary(&self) -> String {
        let parts: Vec<String> = DropReason::ALL
            .iter()
            .filter(|r| self.counters.drops(**r) > 0)
            .map(|r| format!("{r:?}={}", self.counters.drops(*r)))
            .collect();
        if parts.is_empty() {
            "no drops".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The engine configuration the harness starts from: documentation
/// addresses shaped like a host's (192.0.2.15/24 via 192.0.2.1,
/// 2001:db8::/64 via fe80::1), with the gateways standing for the host's
/// loopback (as upstream's default `--map-host-loopback`).
pub fn default_config() -> Config {
    Config::example()
}

/// A real kernel as the guest: a namespace with a tap whose other end is
/// the engine, running on its own thread. Dropping it stops the engine and
/// deletes the namespaces.
#[derive(Debug)]
pub struct TapGuest {
    config: Config,
    tap_name: String,
    stop: Option<StopHandle>,
    engine: Option<JoinHandle<Result<EngineReport, String>>>,
    // Peer::Passt: the passt process, killed before the relay stops, and
    // where its capture is written and where it is to be copied.
    passt: Option<Background>,
    passt_pcap: Option<(PathBuf, PathBuf)>,
    started: Instant,
    tmp: TempDir,
    // Stopped and joined after the engine thread, before the namespaces go
    // (see stop_engine and Drop).
    relay: Option<Relay>,
    // Dropped after the engine thread is joined (see Drop).
    guest_ns: Netns,
    host_ns: Option<Netns>,
}

impl TapGuest {
    /// [`TapGuest::start_with`] default options around `config`.
    pub fn start(config: Config) -> Result<TapGuest, HarnessError> {
        Self::start_with(GuestOptions::new(config))
    }

    /// Creates the namespaces, opens and configures the tap (MTU, RA and DAD
    /// settings; no address: DHCP, SLAAC or the test give it one), starts
    /// the engine loop on its thread, then brings the tap up (so the
    /// kernel's first router solicitation already finds the engine).
    pub fn start_with(opts: GuestOptions) -> Result<TapGuest, HarnessError> {
        let tmp = TempDir::new()?;
        let guest_ns = Netns::create("guest")?;
        let host_ns = match &opts.host {
            HostSide::Private { ping_group_range } => {
                let ns = Netns::create("host")?;
                ns.sysctl(
                    "net.ipv4.ping_group_range",
                    &format!("{} {}", ping_group_range.0, ping_group_range.1),
                )?;
                Some(ns)
            }
            HostSide::Current => None,
        };
        let tap = Tap::open_in_netns(&guest_ns.path(), &opts.tap_name)
            .map_err(|e| HarnessError::Engine(format!("open tap: {e:?}")))?;
        let tap_name = tap.name().to_string();
        let conf = |k: &str, v: &str| guest_ns.sysctl(&format!("net.ipv6.conf.{tap_name}.{k}"), v);
        conf("accept_ra", if opts.accept_ra { "1" } else { "0" })?;
        conf("autoconf", if opts.accept_ra { "1" } else { "0" })?;
        conf("accept_dad", if opts.dad { "1" } else { "0" })?;
        if let Some(mtu) = opts.tap_mtu {
            guest_ns.ip(&["link", "set", "dev", &tap_name, "mtu", &mtu.to_string()])?;
        }

        let (tx, rx) = mpsc::channel::<Result<StopHandle, String>>();
        let config = opts.config.clone();
        let seed = opts.seed;
        let pcap = opts.pcap.clone().or_else(|| {
            std::env::var_os(PCAP_DIR_ENV)
                .map(|d| PathBuf::from(d).join(format!("{}.pcap", guest_ns.name())))
        });
        if let Peer::Passt(bin) = &opts.peer {
            return Self::start_passt(opts.clone(), bin, tmp, guest_ns, host_ns, tap);
        }
        let host_path = host_ns.as_ref().map(Netns::path);
        let (transport, mut relay) = match opts.lossy {
            None => (
                Box::new(TapTransport::new(tap)) as Box<dyn GuestTransport + Send>,
                None,
            ),
            Some(link) => {
                let (engine_end, relay_end) = std::os::unix::net::UnixStream::pair()
                    .map_err(io_err("socketpair for the lossy relay"))?;
                let transport: Box<dyn GuestTransport + Send> = Box::new(
                    StreamTransport::connected(engine_end)
                        .map_err(io_err("engine end of the lossy relay"))?,
                );
                let relay =
                    Relay::spawn(tap, relay_end, link).map_err(io_err("start the lossy relay"))?;
                (transport, Some(relay))
            }
        };
        let engine = std::thread::Builder::new()
            .name("tap-harness-engine".into())
            .spawn(move || -> Result<EngineReport, String> {
                let setup = || -> Result<EventLoop<Box<dyn GuestTransport + Send>>, String> {
                    if let Some(p) = &host_path {
                        enter_netns(p).map_err(|e| e.to_string())?;
                    }
                    let host = RealHost::new().map_err(|e| format!("RealHost: {e:?}"))?;
                    let engine =
                        Engine::new(config, host, seed).map_err(|e| format!("config: {e}"))?;
                    let mut el = EventLoop::new(engine, transport)
                        .map_err(|e| format!("event loop: {e}"))?;
                    if let Some(p) = pcap {
                        let w = passt_engine::runtime::pcap::PcapWriter::create(&p)
                            .map_err(|e| format!("pcap {p:?}: {e}"))?;
                        el.set_pcap(w);
                    }
                    Ok(el)
                };
                let mut el = match setup() {
                    Ok(el) => el,
                    Err(e) => {
                        let _ = tx.send(Err(e.clone()));
                        return Err(e);
                    }
                };
                let _ = tx.send(Ok(el.stop_handle()));
                let exit = el.run().map_err(|e| format!("loop: {e}"))?;
                let stats = el.stats();
                let engine = el.into_engine();
                Ok(EngineReport {
                    exit,
                    counters: engine.counters().clone(),
                    stats,
                    relay: None,
                })
            })
            .map_err(io_err("spawn engine thread"))?;
        let stop = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(stop)) => stop,
            Ok(Err(e)) => {
                let _ = engine.join();
                if let Some(r) = relay.as_mut() {
                    r.stop();
                }
                return Err(HarnessError::Engine(e));
            }
            Err(_) => return Err(HarnessError::Engine("engine thread did not start".into())),
        };
        let guest = TapGuest {
            config: opts.config,
            tap_name,
            stop: Some(stop),
            engine: Some(engine),
            passt: None,
            passt_pcap: None,
            started: Instant::now(),
            tmp,
            relay,
            guest_ns,
            host_ns,
        };
        guest
            .guest_ns
            .ip(&["link", "set", "dev", &guest.tap_name, "up"])?;
        Ok(guest)
    }

    /// [`Peer::Passt`]: the host side runs `bin`, reached through the relay.
    fn start_passt(
        opts: GuestOptions,
        bin: &Path,
        tmp: TempDir,
        guest_ns: Netns,
        host_ns: Option<Netns>,
        tap: Tap,
    ) -> Result<TapGuest, HarnessError> {
        let host = host_ns
            .as_ref()
            .ok_or_else(|| HarnessError::Engine("Peer::Passt needs HostSide::Private".into()))?;
        let v4 = opts
            .config
            .ipv4
            .as_ref()
            .ok_or_else(|| HarnessError::Engine("Peer::Passt needs IPv4".into()))?;
        // The template interface passt wants: a tap nobody reads, with an
        // address and a default route (TEST-NET-2, inside this namespace).
        run_ok(
            host.command("ip", &["tuntap", "add", "dev", "ext0", "mode", "tap"]),
            Duration::from_secs(10),
        )?;
        host.ip(&["link", "set", "ext0", "up"])?;
        host.ip(&["addr", "add", "198.51.100.2/24", "dev", "ext0"])?;
        host.ip(&[
            "route",
            "add",
            "default",
            "via",
            "198.51.100.1",
            "dev",
            "ext0",
        ])?;
        // passt drops to `nobody`: its socket goes in a directory it may
        // write to.
        let sock_dir = tmp.path().join("passt");
        std::fs::create_dir_all(&sock_dir).map_err(io_err("mkdir passt dir"))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sock_dir, std::fs::Permissions::from_mode(0o777))
            .map_err(io_err("chmod passt dir"))?;
        let sock = sock_dir.join("passt.sock");
        let mut args: Vec<String> = [
            "-f",
            "-q",
            "-1",
            "-s",
            &sock.to_string_lossy(),
            "-a",
            &v4.addr.to_string(),
            "-n",
            &v4.prefix_len.to_string(),
            "-g",
            &v4.gateway.to_string(),
            "-M",
            &opts.config.our_mac.to_string(),
            "-i",
            "ext0",
            "-m",
            &opts.config.mtu.to_string(),
            "-4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let pcap = opts.pcap.clone().or_else(|| {
            std::env::var_os(PCAP_DIR_ENV)
                .map(|d| PathBuf::from(d).join(format!("{}-passt.pcap", guest_ns.name())))
        });
        // As `nobody`, passt writes its capture in its own directory; it is
        // copied where it was asked for when the guest finishes.
        let passt_pcap = pcap.map(|want| (sock_dir.join("capture.pcap"), want));
        if let Some((tmp_pcap, _)) = &passt_pcap {
            args.push("-p".into());
            args.push(tmp_pcap.to_string_lossy().into_owned());
        }
        let mut passt = host.spawn(&bin.to_string_lossy(), &args)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            if let Ok(s) = std::os::unix::net::UnixStream::connect(&sock) {
                break s;
            }
            if let Some(st) = passt.try_wait() {
                return Err(HarnessError::Engine(format!("passt exited early: {st}")));
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Engine("passt socket did not appear".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let link = opts.lossy.unwrap_or(LossyLink::symmetric(0, 0.0));
        let tap_name = tap.name().to_string();
        let relay = Relay::spawn(tap, stream, link).map_err(io_err("start the relay"))?;
        let guest = TapGuest {
            config: opts.config,
            tap_name,
            stop: None,
            engine: None,
            passt: Some(passt),
            passt_pcap,
            started: Instant::now(),
            tmp,
            relay: Some(relay),
            guest_ns,
            host_ns,
        };
        guest
            .guest_ns
            .ip(&["link", "set", "dev", &guest.tap_name, "up"])?;
        Ok(guest)
    }

    /// The engine's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The guest namespace (where the tap and the tools live).
    pub fn guest_ns(&self) -> &Netns {
        &self.guest_ns
    }

    /// The private host namespace, if [`HostSide::Private`].
    pub fn host_ns(&self) -> Option<&Netns> {
        self.host_ns.as_ref()
    }

    /// The tap's name inside the guest namespace.
    pub fn tap_name(&self) -> &str {
        &self.tap_name
    }

    /// A scratch directory for this guest, removed on drop (visible from
    /// both namespaces: they share the file system).
    pub fn tmp_dir(&self) -> &Path {
        self.tmp.path()
    }

    /// The lossy relay's counts so far (`None` without
    /// [`GuestOptions::lossy`]).
    pub fn relay_stats(&self) -> Option<RelayStats> {
        self.relay.as_ref().map(Relay::stats)
    }

    /// Time since the tap was brought up.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Runs `program args` in the guest namespace with a hard time limit.
    pub fn run_in_ns<S: AsRef<OsStr>>(
        &self,
        program: &str,
        args: &[S],
        limit: Duration,
    ) -> Result<Output, HarnessError> {
        self.guest_ns.run(program, args, limit)
    }

    /// Starts `program args` in the guest namespace in the background.
    pub fn spawn_in_ns<S: AsRef<OsStr>>(
        &self,
        program: &str,
        args: &[S],
    ) -> Result<Background, HarnessError> {
        self.guest_ns.spawn(program, args)
    }

    /// Runs `f` on a thread in the namespace where the engine's sockets
    /// live (where "host loopback" is).
    pub fn in_host<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HarnessError> {
        match &self.host_ns {
            Some(ns) => ns.in_ns(f),
            None => Ok(f()),
        }
    }

    /// Starts `f` on a thread in the engine's host namespace.
    pub fn spawn_in_host<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<JoinHandle<T>, HarnessError> {
        match &self.host_ns {
            Some(ns) => ns.spawn_thread(f),
            None => Ok(std::thread::spawn(f)),
        }
    }

    /// Gives the guest its configured IPv4 address and default route
    /// statically (`ip addr add`, `ip route add default`), for tests that
    /// are not about DHCP.
    pub fn configure_ipv4_static(&self) -> Result<(), HarnessError> {
        let v4 = self
            .config
            .ipv4
            .as_ref()
            .ok_or_else(|| HarnessError::Engine("no IPv4 in the configuration".into()))?;
        let cidr = format!("{}/{}", v4.addr, v4.prefix_len);
        self.guest_ns
            .ip(&["addr", "add", &cidr, "dev", &self.tap_name])?;
        self.guest_ns.ip(&[
            "route",
            "add",
            "default",
            "via",
            &v4.gateway.to_string(),
            "dev",
            &self.tap_name,
        ])?;
        Ok(())
    }

    /// Polls `probe` (a command in the guest namespace) every 100 ms until
    /// `accept` says yes about its stdout or `limit` passes. Returns the
    /// accepted stdout and the time it took, or the last stdout seen.
    pub fn wait_for_output(
        &self,
        program: &str,
        args: &[&str],
        limit: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> Result<(String, Duration), String> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < limit {
            match self.run_in_ns(program, args, Duration::from_secs(5)) {
                Ok(out) => {
                    last = String::from_utf8_lossy(&out.stdout).into_owned();
                    if accept(&last) {
                        return Ok((last, start.elapsed()));
                    }
                }
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last)
    }

    /// Starts `tcpdump -i TAP -U -w path` inside the guest namespace (the
    /// kernel's view of the tap); it stops when the returned guard drops.
    /// Needs tcpdump.
    pub fn capture_in_guest(&self, path: &Path) -> Result<Background, HarnessError> {
        let path = path.to_string_lossy().into_owned();
        let bg = self.guest_ns.spawn(
            "tcpdump",
            &[
                "-i",
                self.tap_name.as_str(),
                "-U",
                "-n",
                "-w",
                path.as_str(),
            ],
        )?;
        // tcpdump needs a moment before it captures anything.
        std::thread::sleep(Duration::from_millis(300));
        Ok(bg)
    }

    /// Stops the engine and returns its final report.
    pub fn finish(mut self) -> Result<EngineReport, HarnessError> {
        self.stop_engine()
    }

    fn stop_engine(&mut self) -> Result<EngineReport, HarnessError> {
        if let Some(passt) = self.passt.take() {
            passt.stop();
            if let Some((written, want)) = self.passt_pcap.take() {
                std::fs::copy(&written, &want)
                    .map_err(io_err(format!("copy passt's capture to {want:?}")))?;
            }
            return Ok(EngineReport {
                exit: ExitReason::Stopped,
                counters: Counters::default(),
                stats: LoopStats::default(),
                relay: self.relay.as_mut().map(Relay::stop),
            });
        }
        let Some(handle) = self.engine.take() else {
            return Err(HarnessError::Engine("engine already stopped".into()));
        };
        if let Some(stop) = &self.stop {
            stop.stop();
        }
        let report = match handle.join() {
            Ok(r) => r.map_err(HarnessError::Engine),
            Err(_) => Err(HarnessError::Engine("engine thread panicked".into())),
        };
        // The engine's end of the socket pair is closed now; the relay ends
        // (and closes the tap) before the namespaces are deleted.
        let relay = self.relay.as_mut().map(Relay::stop);
        report.map(|mut r| {
            r.relay = relay;
            r
        })
    }
}

impl Drop for TapGuest {
    fn drop(&mut self) {
        if self.engine.is_some() || self.passt.is_some() {
            let _ = self.stop_engine();
        }
        // Fields drop next: the namespaces go after the engine has stopped.
    }
}

/// A deterministic byte stream (xorshift64*), for byte-exact transfer
/// checks without storing the expected data.
#[derive(Clone, Debug)]
pub struct PatternStream {
    state: u64,
}

impl PatternStream {
    /// The stream for `seed` (any value; zero is remapped).
    pub fn new(seed: u64) -> PatternStream {
        PatternStream {
            state: seed ^ 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// Fills `buf` with the next bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.state;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.state = x;
            let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Checks a byte stream against a [`PatternStream`] as it arrives.
#[derive(Debug)]
pub struct PatternChecker {
    stream: PatternStream,
    pending: Vec<u8>,
    pending_at: usize,
    /// Bytes checked so far.
    pub checked: u64,
    /// Offset of the first byte that differed, if any.
    pub first_mismatch: Option<u64>,
}

impl PatternChecker {
    /// A checker for the stream of `seed`.
    pub fn new(seed: u64) -> PatternChecker {
        PatternChecker {
            stream: PatternStream::new(seed),
            pending: Vec::new(),
            pending_at: 0,
            checked: 0,
            first_mismatch: None,
        }
    }

    /// Feeds received bytes.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.pending_at == self.pending.len() {
                self.pending.resize(64 * 1024, 0);
                self.stream.fill(&mut self.pending);
                self.pending_at = 0;
            }
            let n = data.len().min(self.pending.len() - self.pending_at);
            let want = &self.pending[self.pending_at..self.pending_at + n];
            if self.first_mismatch.is_none()
                && let Some(i) = want.iter().zip(&data[..n]).position(|(a, b)| a != b)
            {
                self.first_mismatch = Some(self.checked + i as u64);
            }
            self.pending_at += n;
            self.checked += n as u64;
            data = &data[n..];
        }
    }
}

/// Writes `len` bytes of the pattern stream of `seed` to `path`.
pub fn write_pattern_file(path: &Path, seed: u64, len: u64) -> io::Result<()> {
    use std::io::Write;
    let mut f = io::BufWriter::new(File::create(path)?);
    let mut s = PatternStream::new(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = (buf.len() as u64).min(left) as usize;
        s.fill(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()
}

/// Checks the file at `path` against the pattern stream of `seed`:
/// returns (length, first mismatching offset).
pub fn check_pattern_file(path: &Path, seed: u64) -> io::Result<(u64, Option<u64>)> {
    let mut f = File::open(path)?;
    let mut c = PatternChecker::new(seed);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        c.feed(&buf[..n]);
    }
    Ok((c.checked, c.first_mismatch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_checker_accepts_its_stream_in_any_chunking() {
        let mut s = PatternStream::new(7);
        let mut data = vec![0u8; 200_003];
        s.fill(&mut data[..100_000]);
        s.fill(&mut data[100_000..]);
        let mut c = PatternChecker::new(7);
        for chunk in data.chunks(997) {
            c.feed(chunk);
        }
        assert_eq!((c.checked, c.first_mismatch), (200_003, None));
    }

    #[test]
    fn pattern_checker_finds_the_first_difference() {
        let mut data = vec![0u8; 10_000];
        PatternStream::new(1).fill(&mut data);
        data[4321] ^= 1;
        data[9000] ^= 1;
        let mut c = PatternChecker::new(1);
        c.feed(&data);
        assert_eq!(c.first_mismatch, Some(4321));
        let mut other = PatternChecker::new(2);
        other.feed(&data);
        assert_eq!(other.first_mismatch, Some(0));
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & sleep 30"]);
        let t = Instant::now();
        let r = run_with_timeout(cmd, Duration::from_millis(300));
        assert!(matches!(r, Err(HarnessError::Timeout { .. })), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
