//! # The `pasta` binary under test, and the host it runs on
//!
//! The pasta suite (`tests/pasta.rs`) runs a real `pasta` process and the
//! real Linux stack in the namespace it serves. This module owns what those
//! tests share:
//! - [`PastaBinary`]: which binary is under test: this workspace's `pasta`
//!   by default (next to the test executable, built once if missing), or
//!   Debian's with `PASTA_UNDER_TEST=debian` (any other value is a path);
//! - [`PastaHost`]: a private namespace shaped like a host, where pasta
//!   runs: an outbound interface `ext0` (a veth, so it has a carrier) with
//!   TEST-NET addresses and default routes pasta copies, a "remote" address
//!   on its loopback, its own `resolv.conf` (iproute2's `/etc/netns/NAME/`)
//!   naming a resolver on its loopback, and ping sockets allowed;
//! - starting pasta there as root, as `nobody`, or as root of a user
//!   namespace ([`Launch`]); following a pasta that went to the background
//!   ([`PastaDaemon`]);
//! - [`UserNs`]: a user namespace owned by `nobody` with a network namespace
//!   inside, bound to a file, as rootless Podman and rootlesskit prepare one;
//! - [`clients`]: the command lines Podman and rootlesskit build;
//! - [`traffic`]: the servers and clients the tests exchange data with
//!   (bulk TCP with a checked pattern, echo, a tiny DNS responder).
//!
//! What it must never do: let pasta see the machine's own network (pasta
//! always runs inside a [`PastaHost`]), signal a process it did not start
//! (a daemon is killed only while its command line is still the one we
//! gave it), or leave a namespace, bind mount, `/etc/netns` entry or
//! process behind.

pub mod clients;
pub mod traffic;

use std::io::{self, Read};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use passt_engine::runtime::NetNs;

use crate::{Background, HarnessError, NETNS_PREFIX, Netns, TempDir, run_with_timeout};

/// Chooses the binary under test: unset, empty or `ours` for this
/// workspace's `pasta`, `debian` for [`DEBIAN_PASTA`], anything else is a
/// path to a pasta binary.
pub const PASTA_UNDER_TEST_ENV: &str = "PASTA_UNDER_TEST";

/// Debian's pasta, the reference implementation.
pub const DEBIAN_PASTA: &str = "/usr/bin/pasta";

/// The host's outbound interface in a [`PastaHost`], the template pasta
/// copies (and names its tap after, without `-I`).
pub const HOST_IF: &str = "ext0";
/// The host's IPv4 address on [`HOST_IF`] (TEST-NET-2, RFC 5737).
pub const HOST_ADDR4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// Its prefix length.
pub const HOST_PREFIX4: u8 = 24;
/// The host's IPv4 default gateway (nobody answers there: pasta maps it to
/// the host's loopback unless `--no-map-gw`).
pub const HOST_GW4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The host's IPv6 address on [`HOST_IF`] (documentation prefix, RFC 3849).
pub const HOST_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// Its prefix length.
pub const HOST_PREFIX6: u8 = 64;
/// The host's IPv6 default gateway.
pub const HOST_GW6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// An address on the host's loopback interface that is not a loopback
/// address (TEST-NET-3): a server there stands for a remote one, reached
/// from the namespace through the tap and pasta's ordinary sockets.
pub const REMOTE_ADDR4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The resolver named in the host's `resolv.conf`: a test's DNS
/// responder listens there, on port 53.
pub const HOST_RESOLVER: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Where iproute2 looks for per-namespace configuration files that
/// `ip netns exec` bind-mounts over `/etc`.
const ETC_NETNS: &str = "/etc/netns";

/// Which implementation a [`PastaBinary`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// This workspace's `pasta`.
    Ours,
    /// Debian's `/usr/bin/pasta`.
    Debian,
    /// A binary given by path in [`PASTA_UNDER_TEST_ENV`].
    Other,
}

/// The pasta binary a run uses.
#[derive(Clone, Debug)]
pub struct PastaBinary {
    /// Path to the executable.
    pub path: PathBuf,
    /// Which one it is.
    pub flavour: Flavour,
}

/// This workspace's `pasta`: cargo puts binaries in the profile directory
/// (`target/<profile>/pasta`), one level above the test executables in
/// `target/<profile>/deps/`.
pub fn workspace_pasta_bin() -> PathBuf {
    profile_dir().join("pasta")
}

fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

impl PastaBinary {
    /// The binary chosen by [`PASTA_UNDER_TEST_ENV`], resolved once per
    /// test process. Ours is brought up to date first (`cargo build -p
    /// passt-engine --bin pasta`, same profile and target directory): a
    /// no-op after `cargo test --workspace`, and what keeps `cargo test -p
    /// tap-harness` from testing a stale or missing binary. Without cargo
    /// (the test executable run by hand) an existing binary is used as it
    /// is. A missing binary is an error, never a skip.
    pub fn under_test() -> Result<&'static PastaBinary, HarnessError> {
        static CHOSEN: OnceLock<Result<PastaBinary, String>> = OnceLock::new();
        CHOSEN
            .get_or_init(|| {
                let chosen = Self::from_env();
                if chosen.flavour == Flavour::Ours {
                    match build_workspace_pasta() {
                        Ok(()) => {}
                        Err(BuildError::NoCargo(e)) if chosen.path.exists() => eprintln!(
                            "cannot run cargo ({e}): testing {} as it is",
                            chosen.path.display()
                        ),
                        Err(BuildError::NoCargo(e) | BuildError::Failed(e)) => return Err(e),
                    }
                }
                if !chosen.path.exists() {
                    return Err(format!(
                        "pasta binary {} does not exist",
                        chosen.path.display()
                    ));
                }
                Ok(chosen)
            })
            .as_ref()
            .map_err(|e| HarnessError::Engine(e.clone()))
    }

    fn from_env() -> PastaBinary {
        match std::env::var(PASTA_UNDER_TEST_ENV)
            .unwrap_or_default()
            .as_str()
        {
            "" | "ours" => PastaBinary {
                path: workspace_pasta_bin(),
                flavour: Flavour::Ours,
            },
            "debian" => PastaBinary {
                path: PathBuf::from(DEBIAN_PASTA),
                flavour: Flavour::Debian,
            },
            other => PastaBinary {
                path: PathBuf::from(other),
                flavour: Flavour::Other,
            },
        }
    }

    /// A line for the test output saying which binary is under test.
    pub fn describe(&self) -> String {
        match self.flavour {
            Flavour::Ours => format!(
                "pasta under test: {} (this workspace's; {PASTA_UNDER_TEST_ENV}=debian tests Debian's)",
                self.path.display()
            ),
            Flavour::Debian | Flavour::Other => format!(
                "pasta under test: {} (from {PASTA_UNDER_TEST_ENV})",
                self.path.display()
            ),
        }
    }
}

/// Why [`build_workspace_pasta`] did not build.
enum BuildError {
    /// cargo could not be started.
    NoCargo(String),
    /// cargo ran and failed (or took too long).
    Failed(String),
}

/// Builds this workspace's `pasta` into the profile directory the tests
/// run from (at most 15 minutes: the machine may be busy).
fn build_workspace_pasta() -> Result<(), BuildError> {
    let profile = profile_dir();
    let profile_name = profile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["-p", "passt-engine", "--bin", "pasta"]);
    match profile_name.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    if let Some(target) = profile.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    let t = Instant::now();
    let out = match run_with_timeout(cmd, Duration::from_secs(900)) {
        Ok(out) => out,
        Err(e @ HarnessError::Io { .. }) => return Err(BuildError::NoCargo(e.to_string())),
        Err(e) => return Err(BuildError::Failed(e.to_string())),
    };
    if !out.status.success() {
        return Err(BuildError::Failed(format!(
            "`cargo build -p passt-engine --bin pasta` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    eprintln!("pasta brought up to date in {:?}", t.elapsed());
    Ok(())
}

/// Whether the test process is root (pasta is then run with `--runas 0`,
/// see [`PastaHost::root_args`]).
pub fn running_as_root() -> bool {
    // SAFETY: plain syscall without arguments.
    unsafe { libc::geteuid() == 0 }
}

/// How a pasta process is started inside a [`PastaHost`].
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// As the unprivileged user `nobody` (`setpriv --reuid 65534 --regid
    /// 65534 --clear-groups`), not root.
    pub as_nobody: bool,
    /// Inside this user namespace (`nsenter --preserve-credentials
    /// --user=PATH`: as its root),
    /// as rootless Podman runs pasta from within its own.
    pub in_userns: Option<PathBuf>,
}

impl Launch {
    /// As root of the initial user namespace (the default).
    pub fn root() -> Launch {
        Launch::default()
    }

    /// As `nobody`.
    pub fn nobody() -> Launch {
        Launch {
            as_nobody: true,
            in_userns: None,
        }
    }

    /// As `nobody`, entering `userns` (which `nobody` owns) first.
    pub fn nobody_in(userns: PathBuf) -> Launch {
        Launch {
            as_nobody: true,
            in_userns: Some(userns),
        }
    }
}

/// The user `nobody`, for `setpriv`.
const NOBODY: &str = "65534";

/// A namespace shaped like a host, where pasta runs (see the module docs).
/// Deleted, with its `/etc/netns` entry, when dropped.
#[derive(Debug)]
pub struct PastaHost {
    etc_dir: PathBuf,
    ns: Netns,
}

impl PastaHost {
    /// Creates the namespace and its interfaces, routes, `resolv.conf`.
    pub fn create() -> Result<PastaHost, HarnessError> {
        remove_stale_etc_netns();
        let ns = Netns::create("pastahost")?;
        let etc_dir = Path::new(ETC_NETNS).join(ns.name());
        let host = PastaHost { etc_dir, ns };
        let ns = &host.ns;
        ns.ip(&[
            "link", "add", HOST_IF, "type", "veth", "peer", "name", "ext0peer",
        ])?;
        ns.ip(&["link", "set", HOST_IF, "up"])?;
        ns.ip(&["link", "set", "ext0peer", "up"])?;
        let a4 = format!("{HOST_ADDR4}/{HOST_PREFIX4}");
        let a6 = format!("{HOST_ADDR6}/{HOST_PREFIX6}");
        ns.ip(&["addr", "add", &a4, "dev", HOST_IF])?;
        ns.ip(&["-6", "addr", "add", &a6, "dev", HOST_IF, "nodad"])?;
        ns.ip(&[
            "route",
            "add",
            "default",
            "via",
            &HOST_GW4.to_string(),
            "dev",
            HOST_IF,
        ])?;
        ns.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &HOST_GW6.to_string(),
            "dev",
            HOST_IF,
        ])?;
        ns.ip(&["addr", "add", &format!("{REMOTE_ADDR4}/32"), "dev", "lo"])?;
        ns.sysctl("net.ipv4.ping_group_range", "0 2147483647")?;
        std::fs::create_dir_all(&host.etc_dir)
            .map_err(|e| io_error(format!("mkdir {:?}", host.etc_dir), e))?;
        std::fs::write(
            host.etc_dir.join("resolv.conf"),
            format!("nameserver {HOST_RESOLVER}\n"),
        )
        .map_err(|e| io_error("write resolv.conf", e))?;
        Ok(host)
    }

    /// The namespace (its loopback is "the host's loopback").
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// A handle to the namespace, for [`NetNs::run_in`].
    pub fn net(&self) -> Result<NetNs, HarnessError> {
        NetNs::open(&self.ns.path()).map_err(|e| io_error("open the host namespace", e))
    }

    /// The options a root run of pasta needs besides the test's own: as
    /// root of the initial user namespace, pasta (upstream's and Debian's)
    /// changes to `nobody` unless `--runas` says otherwise, and `nobody`
    /// could then not join a namespace root created. An administrator
    /// running pasta as root passes `--runas 0`; so does the harness.
    pub fn root_args(launch: &Launch) -> Vec<String> {
        if !launch.as_nobody && launch.in_userns.is_none() && running_as_root() {
            vec!["--runas".into(), "0".into()]
        } else {
            Vec::new()
        }
    }

    /// `ip netns exec HOST [setpriv ...] [nsenter ... --user=...] BIN ARGS`.
    pub fn pasta_command(&self, bin: &PastaBinary, launch: &Launch, args: &[String]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.ns.name()]);
        if launch.as_nobody {
            cmd.args([
                "setpriv",
                "--reuid",
                NOBODY,
                "--regid",
                NOBODY,
                "--clear-groups",
            ]);
        }
        if let Some(userns) = &launch.in_userns {
            // Credentials kept: `nobody` outside is root inside, and the
            // namespace denies setgroups(2) (unshare --map-root-user).
            cmd.arg("nsenter")
                .arg("--preserve-credentials")
                .arg(format!("--user={}", userns.display()));
        }
        cmd.arg(&bin.path).args(args);
        cmd
    }

    /// Starts pasta in the background of the test (the test's args should
    /// include `-f`), killed with its process group when the returned
    /// handle drops.
    pub fn spawn_pasta(
        &self,
        bin: &PastaBinary,
        launch: &Launch,
        args: &[String],
    ) -> Result<Background, HarnessError> {
        Background::spawn(self.pasta_command(bin, launch, args))
    }

    /// Runs pasta to its exit (a command around which it ran, or its
    /// parent going to the background), bounded by `limit`.
    pub fn run_pasta(
        &self,
        bin: &PastaBinary,
        launch: &Launch,
        args: &[String],
        limit: Duration,
    ) -> Result<Output, HarnessError> {
        run_with_timeout(self.pasta_command(bin, launch, args), limit)
    }

    /// Starts pasta as a client does when it expects it to go to the
    /// background once the namespace is ready (Podman's and rootlesskit's
    /// `exec.Command(...).CombinedOutput()`): waits up to `limit` for the
    /// started process to exit, then for its output pipes to close (a
    /// daemon holding them open would hang those clients), then finds the
    /// daemon by its command line.
    pub fn start_daemon(
        &self,
        bin: &PastaBinary,
        launch: &Launch,
        args: &[String],
        limit: Duration,
    ) -> Result<DaemonStart, HarnessError> {
        let mut cmd = self.pasta_command(bin, launch, args);
        let line = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| io_error(format!("spawn {line}"), e))?;
        let out = read_to_eof(child.stdout.take());
        let err = read_to_eof(child.stderr.take());
        let deadline = Instant::now() + limit;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    if let Ok(pid) = i32::try_from(child.id()) {
                        // SAFETY: plain syscall; the group is our own child's.
                        unsafe { libc::kill(-pid, libc::SIGKILL) };
                    }
                    let _ = child.wait();
                    // A daemon may have been forked before the timeout.
                    drop(PastaDaemon::find(args));
                    return Err(HarnessError::Timeout {
                        command: line,
                        limit,
                    });
                }
            }
        };
        let pipe_wait = Duration::from_secs(2);
        let stdout = out.recv_timeout(pipe_wait).ok();
        let stderr = err.recv_timeout(pipe_wait).ok();
        let output_closed = stdout.is_some() && stderr.is_some();
        Ok(DaemonStart {
            status,
            stdout: stdout.unwrap_or_default(),
            stderr: stderr.unwrap_or_default(),
            output_closed,
            daemon: if status.success() {
                PastaDaemon::find(args)
            } else {
                None
            },
        })
    }
}

impl Drop for PastaHost {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.etc_dir);
        // `ns` drops next: the namespace is deleted.
    }
}

/// Removes `/etc/netns/tapharness-<pid>-...` entries of harness processes
/// that no longer exist.
fn remove_stale_etc_netns() {
    let Ok(dir) = std::fs::read_dir(ETC_NETNS) else {
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
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn io_error(what: impl Into<String>, source: io::Error) -> HarnessError {
    HarnessError::Io {
        what: what.into(),
        source,
    }
}

/// Reads a pipe to its end on a thread; the receiver gets the bytes once
/// the pipe is closed by every writer.
fn read_to_eof<R: Read + Send + 'static>(r: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

/// What [`PastaHost::start_daemon`] saw.
#[derive(Debug)]
pub struct DaemonStart {
    /// Exit status of the process that was started.
    pub status: std::process::ExitStatus,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
    /// Whether both pipes reached their end within 2 s of its exit.
    pub output_closed: bool,
    /// The process left running in the background, if any.
    pub daemon: Option<PastaDaemon>,
}

/// A pasta process that went to the background, found by its exact
/// arguments (which always name a path unique to the test). Killed by PID
/// when dropped if it still runs with those arguments.
#[derive(Debug)]
pub struct PastaDaemon {
    pid: i32,
    args: Vec<String>,
}

impl PastaDaemon {
    /// The running process whose arguments after `argv[0]` are exactly
    /// `args`, if there is one (the first one found otherwise: there is
    /// none when the arguments are unique).
    pub fn find(args: &[String]) -> Option<PastaDaemon> {
        let dir = std::fs::read_dir("/proc").ok()?;
        let mut pids: Vec<i32> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .collect();
        pids.sort_unstable();
        pids.into_iter()
            .find(|&pid| alive(pid) && args_of(pid).is_some_and(|a| a == args))
            .map(|pid| PastaDaemon {
                pid,
                args: args.to_vec(),
            })
    }

    /// Its process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether it still runs (gone or a zombie means it exited).
    pub fn is_running(&self) -> bool {
        alive(self.pid) && args_of(self.pid).is_some_and(|a| a == self.args)
    }

    /// Waits up to `limit` for it to exit; true if it did.
    pub fn wait_exit(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.is_running() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

impl Drop for PastaDaemon {
    fn drop(&mut self) {
        if self.is_running() {
            // SAFETY: plain syscall; the process still runs with the
            // arguments we started it with.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

/// Whether `pid` exists and is not a zombie (a daemon re-parented to an
/// init that does not reap stays a zombie after it exits).
pub fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may
    // itself contain spaces or parentheses.
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .is_some_and(|state| state != "Z" && state != "X")
}

/// The arguments of `pid` after `argv[0]`.
fn args_of(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut parts: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    if parts.last().is_some_and(String::is_empty) {
        parts.pop();
    }
    if parts.is_empty() {
        return None;
    }
    parts.remove(0);
    Some(parts)
}

/// A user namespace owned by `nobody` with a network namespace inside
/// (`setpriv ... unshare --user --map-root-user --net sleep`), that
/// network namespace bound to a file in a directory of its own: what
/// rootless Podman (`$XDG_RUNTIME_DIR/netns/netns-...`) and rootlesskit
/// (`--detach-netns`) hand to pasta. The holder process is killed and the
/// file unmounted and removed when dropped.
#[derive(Debug)]
pub struct UserNs {
    // Only held: killed with its process group when dropped.
    _holder: Background,
    pid: u32,
    netns_file: PathBuf,
    mounted: bool,
    tmp: TempDir,
}

impl UserNs {
    /// Creates it (needs root for the bind mount, and `nobody` allowed to
    /// create user namespaces).
    pub fn create() -> Result<UserNs, HarnessError> {
        let tmp = TempDir::new()?;
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
            .args([
                "unshare",
                "--user",
                "--map-root-user",
                "--net",
                "sleep",
                "600",
            ]);
        let mut holder = Background::spawn(cmd)?;
        let pid = holder
            .id()
            .ok_or_else(|| HarnessError::Engine("the holder has no pid".into()))?;
        // Ready once the holder runs `sleep` (unshare execs it after writing
        // the maps) in a user namespace other than ours.
        let ours = std::fs::read_link("/proc/self/ns/user").ok();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let userns = std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
            if comm.trim() == "sleep" && userns.is_some() && userns != ours {
                break;
            }
            if let Some(st) = holder.try_wait() {
                return Err(HarnessError::Engine(format!(
                    "unshare --user --net as nobody exited: {st}"
                )));
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Engine(
                    "the user namespace holder did not start".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let netns_file = tmp.path().join("netns");
        std::fs::write(&netns_file, b"").map_err(|e| io_error("create the netns file", e))?;
        bind_mount(Path::new(&format!("/proc/{pid}/ns/net")), &netns_file)?;
        Ok(UserNs {
            _holder: holder,
            pid,
            netns_file,
            mounted: true,
            tmp,
        })
    }

    /// `/proc/PID/ns/user` of the holder.
    pub fn user_ns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/user", self.pid))
    }

    /// The file the network namespace is bound to.
    pub fn netns_file(&self) -> &Path {
        &self.netns_file
    }

    /// A directory next to it that `nobody` may write to (for pid files).
    pub fn writable_dir(&self) -> Result<PathBuf, HarnessError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.tmp.path().join("run");
        std::fs::create_dir_all(&dir).map_err(|e| io_error("mkdir run", e))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| io_error("chmod run", e))?;
        Ok(dir)
    }

    /// A handle to the network namespace (through the holder process, so
    /// it stays valid after [`UserNs::remove_netns_file`]).
    pub fn net(&self) -> Result<NetNs, HarnessError> {
        NetNs::of_pid(self.pid).map_err(|e| io_error("open the holder's namespace", e))
    }

    /// The path of the network namespace through the holder process.
    pub fn net_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid))
    }

    /// Unmounts and deletes the namespace file, as Podman does when the
    /// container goes away (pasta is expected to exit then).
    pub fn remove_netns_file(&mut self) -> Result<(), HarnessError> {
        if self.mounted {
            unmount(&self.netns_file)?;
            self.mounted = false;
        }
        std::fs::remove_file(&self.netns_file).map_err(|e| io_error("remove the netns file", e))
    }
}

impl Drop for UserNs {
    fn drop(&mut self) {
        if self.mounted {
            let _ = unmount(&self.netns_file);
        }
        // `_holder` drops next (killed by its process group), then `tmp`.
    }
}

fn bind_mount(source: &Path, target: &Path) -> Result<(), HarnessError> {
    let src = c_path(source)?;
    let dst = c_path(target)?;
    // SAFETY: both are valid NUL-terminated paths; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io_error(
            format!("bind mount {source:?} on {target:?}"),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn unmount(target: &Path) -> Result<(), HarnessError> {
    let dst = c_path(target)?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::umount2(dst.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io_error(
            format!("unmount {target:?}"),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn c_path(p: &Path) -> Result<std::ffi::CString, HarnessError> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| HarnessError::Engine(format!("path with a NUL byte: {p:?}")))
}

/// Runs `program args` in the network namespace at `netns` (`nsenter
/// --net=PATH`), bounded by `limit`.
pub fn run_in_netns(
    netns: &Path,
    program: &str,
    args: &[&str],
    limit: Duration,
) -> Result<Output, HarnessError> {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", netns.display()))
        .arg(program)
        .args(args);
    run_with_timeout(cmd, limit)
}

/// `/dev/net/tun` as distributions ship it for rootless containers: a udev
/// rule makes it `0666` (the tap is created inside the caller's own
/// namespaces, which is what the kernel checks). This machine leaves it
/// `0600`, so the unprivileged runs set it first. Returns the mode found.
pub fn make_tun_world_accessible() -> Result<u32, HarnessError> {
    use std::os::unix::fs::PermissionsExt;
    let path = Path::new("/dev/net/tun");
    let mode = std::fs::metadata(path)
        .map_err(|e| io_error("stat /dev/net/tun", e))?
        .permissions()
        .mode();
    if mode & 0o666 != 0o666 {
        std::fs::set_permissions(
            path,
            std::fs::Permissions::from_mode((mode & !0o777) | 0o666),
        )
        .map_err(|e| io_error("chmod 0666 /dev/net/tun", e))?;
    }
    Ok(mode & 0o777)
}

/// `args` as owned strings (for building pasta command lines).
pub fn strings<S: AsRef<str>>(args: &[S]) -> Vec<String> {
    args.iter().map(|s| s.as_ref().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_is_found_by_its_exact_arguments_and_killed_by_pid_on_drop() {
        let token = format!("pasta-daemon-test-{}", std::process::id());
        // `; :` keeps the shell from replacing itself with `sleep`.
        let args = strings(&["-c", "sleep 30; :", token.as_str()]);
        let mut child = Command::new("sh")
            .args(&args)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sh");
        let pid = i32::try_from(child.id()).expect("pid");
        let deadline = Instant::now() + Duration::from_secs(5);
        let daemon = loop {
            if let Some(d) = PastaDaemon::find(&args) {
                break d;
            }
            assert!(Instant::now() < deadline, "not found");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(daemon.pid(), pid);
        assert!(daemon.is_running());
        assert!(PastaDaemon::find(&strings(&["-c", "sleep 30; :"])).is_none());
        drop(daemon);
        let status = child.wait().expect("wait");
        assert!(!status.success(), "killed, not exited: {status}");
        assert!(!alive(pid));
    }

    #[test]
    fn a_zombie_counts_as_exited() {
        let mut child = Command::new("true").spawn().expect("spawn true");
        let pid = i32::try_from(child.id()).expect("pid");
        let deadline = Instant::now() + Duration::from_secs(5);
        // Not reaped yet: a zombie once it has exited.
        while alive(pid) {
            assert!(Instant::now() < deadline, "`true` still running");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        child.wait().expect("reap");
        assert!(alive(std::process::id() as i32));
    }
}
