//! pasta's namespaces: the ones it creates around a command, or joins (a
//! process's, a bind-mounted network namespace), the user namespace pasta
//! itself enters to be let in, and the watch that ends the loop when the
//! target goes away.
//!
//! How pasta gets into a namespace it does not own (user_namespaces(7),
//! setns(2)): entering a network namespace takes `CAP_SYS_ADMIN` both in
//! the caller's own user namespace and in the one that owns the target.
//! Root has it everywhere; an ordinary user has it only inside a user
//! namespace it created (or entered). So, when pasta lacks
//! `CAP_SYS_ADMIN`, the whole process first joins the target's user
//! namespace (which needs a single-threaded process: this happens before
//! any thread exists), and then [`NetNs::run_in`] threads enter the network
//! namespace to open the tap and the namespace-side sockets. The main
//! thread never leaves the host's network namespace: host sockets are
//! opened there.
//!
//! Running a command ([`PastaTarget::Spawn`]): a child process unshares new
//! user, network, UTS and IPC namespaces and waits; pasta writes its
//! uid/gid maps (own uid and gid to 0, as `unshare -r` does; root keeps the
//! identity map), opens the tap, configures the namespace, and only then
//! lets the child `exec` the command, so the command finds its network
//! ready. Its exit ends pasta, with its status (128 + signal number when a
//! signal killed it, as shells report it).
//!
//! It also decides what `--config-net` sets ([`config_net_plan`]); the
//! netlink exchange itself is [`super::netlink`]'s.
//!
//! This module owns those processes and namespace handles; it never
//! configures an interface itself (the tap is [`super::transport::tap`]'s,
//! addresses, routes and links [`super::netlink`]'s).

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use std::net::IpAddr;

use super::event_loop::ExitWatch;
use super::logging::log_debug;
use super::netlink::{Address, Family, NsNetConfig, Route};
use super::netns::{NetNs, ns_id};
use crate::cli::{Options, PastaOptions, PastaTarget};
use crate::config::Config;

/// `CAP_SYS_ADMIN`'s bit in the capability sets (capabilities(7)).
const CAP_SYS_ADMIN: u32 = 21;

/// The namespace pasta serves, and what came with it.
#[derive(Debug)]
pub struct Namespace {
    netns: NetNs,
    command: Option<Command>,
    watch: Option<TargetWatch>,
    label: String,
}

impl Namespace {
    /// The network namespace.
    pub fn netns(&self) -> &NetNs {
        &self.netns
    }

    /// What to name the namespace in messages (`/run/netns/NAME`, a PID).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The command pasta runs in the namespace, if it started one.
    pub fn command_mut(&mut self) -> Option<&mut Command> {
        self.command.as_mut()
    }

    /// The watch that ends the loop when the target goes away (taken once).
    /// A command's exit always ends pasta; `--no-netns-quit` keeps pasta
    /// running when a joined target goes.
    pub fn take_watch(&mut self, no_netns_quit: bool) -> Option<TargetWatch> {
        if no_netns_quit && self.command.is_none() {
            return None;
        }
        self.watch.take()
    }
}

/// Creates or joins the namespace `p` asks for (see the module docs).
/// Errors are upstream's messages.
pub fn set_up(p: &PastaOptions) -> Result<Namespace, String> {
    let ns = match &p.target {
        PastaTarget::Spawn(argv) => {
            let command = Command::spawn(argv)?;
            let pid = command.pid;
            let watch = TargetWatch::process(pid)
                .map_err(|e| format!("Couldn't watch the command (pid {pid}): {e}"))?;
            if !has_cap_sys_admin() {
                join_userns(&PathBuf::from(format!("/proc/{pid}/ns/user")))?;
            }
            let netns = NetNs::of_pid(pid as u32)
                .map_err(|e| format!("Couldn't open network namespace /proc/{pid}/ns/net: {e}"))?;
            Namespace {
                netns,
                command: Some(command),
                watch: Some(watch),
                label: format!("of PID {pid}"),
            }
        }
        PastaTarget::Pid(pid) => {
            // The pidfd first: from now on the PID cannot be reused under us.
            let watch =
                TargetWatch::process(*pid as i32).map_err(|e| format!("Invalid PID {pid}: {e}"))?;
            let netns_path = PathBuf::from(format!("/proc/{pid}/ns/net"));
            // Opened before joining a user namespace, while /proc is ours.
            let netns = NetNs::open(&netns_path).map_err(|e| {
                format!(
                    "Couldn't open network namespace {}: {e}",
                    netns_path.display()
                )
            })?;
            if let Some(userns) = &p.userns {
                join_userns(userns)?;
            } else if !p.netns_only && !has_cap_sys_admin() {
                join_userns(&PathBuf::from(format!("/proc/{pid}/ns/user")))?;
            }
            Namespace {
                netns,
                command: None,
                watch: Some(watch),
                label: format!("of PID {pid}"),
            }
        }
        PastaTarget::Netns(path) => {
            let netns = NetNs::open(path)
                .map_err(|e| format!("Couldn't open network namespace {}: {e}", path.display()))?;
            if let Some(userns) = &p.userns {
                join_userns(userns)?;
            }
            let watch = match TargetWatch::path(path) {
                Ok(w) => Some(w),
                Err(e) => {
                    super::logging::log(
                        super::logging::Level::Warn,
                        format_args!("inotify_add_watch(): won't quit once netns is gone ({e})"),
                    );
                    None
                }
            };
            Namespace {
                netns,
                command: None,
                watch,
                label: path.display().to_string(),
            }
        }
    };
    // Enter it once now, for a clear message if pasta may not.
    ns.netns
        .run_in(|| ())
        .map_err(|e| format!("Couldn't switch to pasta namespaces: {e}"))?;
    Ok(ns)
}

/// What `--config-net` sets on the tap `ifname` (pasta(1)): the MTU
/// (65520 unless `-m`; `-m 0` leaves the kernel's), `--ns-mac-addr`, the
/// transmit queue length, and per address family the engine serves:
/// - addresses: the guest's address of `config`; unless `-a` or
///   `--no-copy-addrs`, every other usable address of the host's template
///   interface (`host_addrs`) as well, so there is no NAT;
/// - routes: unless `-g` or `--no-copy-routes`, the template interface's
///   routes (`host_routes`, those the kernel makes for an address left
///   out: it makes them again), with a default route through the gateway
///   if they hold none; otherwise just that default route.
pub fn config_net_plan(
    ifname: &str,
    opts: &Options,
    config: &Config,
    host_addrs: &[Address],
    host_routes: &[Route],
) -> NsNetConfig {
    let p = opts.pasta.as_ref();
    let copy_addrs = p.is_none_or(|p| p.copy_addrs);
    let copy_routes = p.is_none_or(|p| p.copy_routes);
    let mut cfg = NsNetConfig::new(ifname);
    cfg.mac = p.and_then(|p| p.ns_mac);
    cfg.mtu = match opts.mtu {
        Some(0) => None,
        _ => Some(u32::from(config.mtu)),
    };
    let families = [
        config.ipv4.as_ref().map(|v| {
            (
                Family::V4,
                IpAddr::V4(v.addr),
                v.prefix_len,
                IpAddr::V4(v.gateway),
                opts.address.v4.is_some(),
                opts.gateway.v4.is_some(),
            )
        }),
        config.ipv6.as_ref().map(|v| {
            (
                Family::V6,
                IpAddr::V6(v.addr),
                v.prefix_len,
                IpAddr::V6(v.gateway),
                opts.address.v6.is_some(),
                opts.gateway.v6.is_some(),
            )
        }),
    ];
    for (family, addr, prefix_len, gateway, addr_given, gw_given) in families.into_iter().flatten()
    {
        cfg.addrs.push((addr, prefix_len));
        if copy_addrs && !addr_given {
            for a in host_addrs {
                if Family::of(a.addr) == family && a.copyable() && a.addr != addr {
                    cfg.addrs.push((a.addr, a.prefix_len));
                }
            }
        }
        let copied: Vec<Route> = if copy_routes && !gw_given {
            host_routes
                .iter()
                .filter(|r| r.family() == family && !r.kernel)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        if !copied.iter().any(Route::is_default) {
            cfg.routes.push(Route::default_via(gateway));
        }
        cfg.routes.extend(copied);
    }
    cfg
}

/// Whether this process has `CAP_SYS_ADMIN` in its own user namespace
/// (the `CapEff` line of `/proc/self/status`, proc(5)).
fn has_cap_sys_admin() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// Joins the user namespace at `path` (the whole process: it must still be
/// single-threaded). Nothing to do when it is the current one.
fn join_userns(path: &Path) -> Result<(), String> {
    let target = File::open(path)
        .map_err(|e| format!("Couldn't open user namespace {}: {e}", path.display()))?;
    let own = File::open("/proc/self/ns/user")
        .map_err(|e| format!("Couldn't open user namespace /proc/self/ns/user: {e}"))?;
    if ns_id(target.as_fd()).ok() == ns_id(own.as_fd()).ok() {
        return Ok(());
    }
    // SAFETY: plain syscall on a descriptor we hold.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWUSER) } != 0 {
        let e = io::Error::last_os_error();
        return Err(format!(
            "Couldn't enter user namespace {}: {e}",
            path.display()
        ));
    }
    log_debug!("joined user namespace {}", path.display());
    Ok(())
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors, owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn cstring(s: &OsStr) -> Result<CString, String> {
    CString::new(s.as_bytes()).map_err(|_| format!("Invalid argument: {}", s.to_string_lossy()))
}

/// The user's shell: `$SHELL`, else the password database's, else
/// `/bin/sh`.
fn user_shell() -> OsString {
    if let Some(s) = std::env::var_os("SHELL").filter(|s| !s.is_empty()) {
        return s;
    }
    // SAFETY: getpwuid returns a static entry or null; copied out at once,
    // while the process has one thread.
    let pw = unsafe { libc::getpwuid(libc::getuid()) };
    // SAFETY: a non-null entry with a NUL-terminated shell, or null.
    if !pw.is_null() && unsafe { !(*pw).pw_shell.is_null() } {
        // SAFETY: as above.
        let shell = unsafe { std::ffi::CStr::from_ptr((*pw).pw_shell) };
        if !shell.is_empty() {
            return OsStr::from_bytes(shell.to_bytes()).to_os_string();
        }
    }
    OsString::from("/bin/sh")
}

/// The command pasta runs in the namespaces it created: a child process
/// that waits for [`Command::release`] before `exec`.
#[derive(Debug)]
pub struct Command {
    pid: i32,
    /// Writing a byte lets the child `exec`; closing it unwritten makes it
    /// exit.
    go: Option<OwnedFd>,
    /// The status once reaped.
    status: Option<u8>,
}

impl Command {
    /// Forks a child that unshares new user, network, UTS and IPC
    /// namespaces, then writes its uid/gid maps. `argv` empty: the user's
    /// shell as a login shell (`argv[0]` starting with `-`).
    fn spawn(argv: &[OsString]) -> Result<Command, String> {
        let (prog, args) = if argv.is_empty() {
            let shell = user_shell();
            let mut login = OsString::from("-");
            login.push(&shell);
            (cstring(&shell)?, vec![cstring(&login)?])
        } else {
            let args = argv
                .iter()
                .map(|a| cstring(a))
                .collect::<Result<Vec<_>, _>>()?;
            (args[0].clone(), args)
        };
        let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        arg_ptrs.push(std::ptr::null());
        let (ready_r, ready_w) = pipe().map_err(|e| format!("Failed to create a pipe: {e}"))?;
        let (go_r, go_w) = pipe().map_err(|e| format!("Failed to create a pipe: {e}"))?;
        // SAFETY: fork while single-threaded (pasta has started no thread
        // yet); the child only runs `child_main`, which never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("Failed to fork: {}", io::Error::last_os_error()));
        }
        if pid == 0 {
            child_main(
                ready_w.as_raw_fd(),
                go_r.as_raw_fd(),
                go_w.as_raw_fd(),
                &prog,
                &arg_ptrs,
            );
        }
        drop(ready_w);
        drop(go_r);
        let mut command = Command {
            pid,
            go: Some(go_w),
            status: None,
        };
        let mut err = [0u8; 4];
        let got = read_full(ready_r.as_fd(), &mut err);
        let errno = i32::from_ne_bytes(err);
        if got != 4 || errno != 0 {
            command.abandon();
            let why = if got == 4 {
                io::Error::from_raw_os_error(errno).to_string()
            } else {
                "the child exited".to_string()
            };
            return Err(format!("Couldn't create user namespace: {why}"));
        }
        if let Err(e) = write_id_maps(pid) {
            command.abandon();
            return Err(format!("Couldn't configure user mappings: {e}"));
        }
        log_debug!("command started in new namespaces, pid {pid}");
        Ok(command)
    }

    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Lets the child `exec` the command: the namespace is ready.
    pub fn release(&mut self) -> io::Result<()> {
        if let Some(go) = self.go.take() {
            let b = [1u8];
            // SAFETY: writes one byte from a live buffer.
            if unsafe { libc::write(go.as_raw_fd(), b.as_ptr() as *const libc::c_void, 1) } != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Sends `signal` to the command.
    pub fn signal(&self, signal: i32) {
        if self.status.is_none() {
            // SAFETY: plain syscall on our own unreaped child.
            unsafe { libc::kill(self.pid, signal) };
        }
    }

    /// Waits for the command to end and returns its status as a shell
    /// reports it: the exit code, or 128 + the signal that killed it.
    pub fn wait(&mut self) -> io::Result<u8> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child; `status` is writable.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status) as u8
        } else if libc::WIFSIGNALED(status) {
            (128 + libc::WTERMSIG(status)) as u8
        } else {
            1
        };
        self.status = Some(code);
        Ok(code)
    }

    /// Lets an unreleased child go (closing its pipe makes it exit) and
    /// reaps it.
    fn abandon(&mut self) {
        self.go = None;
        self.signal(libc::SIGKILL);
        let _ = self.wait();
    }
}

impl Drop for Command {
    /// A child never released is reaped, not left to run.
    fn drop(&mut self) {
        if self.go.is_some() {
            self.abandon();
        }
    }
}

/// Reads until `buf` is full or end of file; returns the bytes read.
fn read_full(fd: BorrowedFd<'_>, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reads into the unfilled part of a live buffer.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf[got..].as_mut_ptr() as *mut libc::c_void,
                buf.len() - got,
            )
        };
        if n > 0 {
            got += n as usize;
        } else if n == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    got
}

/// Writes the child's uid and gid maps (user_namespaces(7)): an ordinary
/// user maps its own uid and gid to 0 (after denying `setgroups`, which an
/// unprivileged gid map requires); root maps every id to itself.
fn write_id_maps(pid: i32) -> io::Result<()> {
    // SAFETY: these calls cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let dir = PathBuf::from(format!("/proc/{pid}"));
    if uid == 0 {
        std::fs::write(dir.join("uid_map"), "0 0 4294967295\n")?;
        std::fs::write(dir.join("gid_map"), "0 0 4294967295\n")?;
    } else {
        std::fs::write(dir.join("setgroups"), "deny\n")?;
        std::fs::write(dir.join("uid_map"), format!("0 {uid} 1\n"))?;
        std::fs::write(dir.join("gid_map"), format!("0 {gid} 1\n"))?;
    }
    Ok(())
}

/// The child after `fork`: unshares the namespaces, reports the outcome
/// (an errno, 0 for success) on `ready`, waits for a byte on `go`, restores
/// the signal state pasta changed (blocked stop signals, ignored SIGPIPE),
/// and executes the command. Only plain system calls: no allocation, no
/// locks.
fn child_main(
    ready: RawFd,
    go: RawFd,
    go_parent: RawFd,
    prog: &CString,
    argv: &[*const libc::c_char],
) -> ! {
    // SAFETY: raw system calls on descriptors this process inherited, and
    // pointers to NUL-terminated strings the parent built before forking.
    unsafe {
        // Our copy of the writing end would hide the parent's death.
        libc::close(go_parent);
        let flags =
            libc::CLONE_NEWUSER | libc::CLONE_NEWNET | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
        let err: i32 = if libc::unshare(flags) == 0 {
            0
        } else {
            *libc::__errno_location()
        };
        let bytes = err.to_ne_bytes();
        libc::write(ready, bytes.as_ptr() as *const libc::c_void, 4);
        libc::close(ready);
        if err != 0 {
            libc::_exit(1);
        }
        let mut b = [0u8; 1];
        loop {
            let n = libc::read(go, b.as_mut_ptr() as *mut libc::c_void, 1);
            if n == 1 {
                break;
            }
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            // pasta gave up (or died) before the namespace was ready.
            libc::_exit(1);
        }
        libc::close(go);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::execvp(prog.as_ptr(), argv.as_ptr());
        let e = *libc::__errno_location();
        let msg: &[u8] = if e == libc::ENOENT {
            b"pasta: command not found\n"
        } else {
            b"pasta: cannot execute the command\n"
        };
        libc::write(2, msg.as_ptr() as *const libc::c_void, msg.len());
        // As shells do: 127 not found, 126 found but not executable.
        libc::_exit(if e == libc::ENOENT { 127 } else { 126 })
    }
}

/// What tells the loop that the target namespace is gone.
#[derive(Debug)]
pub enum TargetWatch {
    /// A pidfd (pidfd_open(2)): readable once the process has exited.
    Process {
        /// The descriptor.
        pidfd: OwnedFd,
    },
    /// inotify(7) on the directory of a bind-mounted namespace: gone when
    /// its entry is deleted or moved away (`ip netns delete`).
    Path {
        /// The inotify descriptor.
        inotify: OwnedFd,
        /// The namespace file's name in the watched directory.
        name: OsString,
    },
}

impl TargetWatch {
    /// A watch on process `pid`.
    pub fn process(pid: i32) -> io::Result<TargetWatch> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TargetWatch::Process {
            // SAFETY: a fresh descriptor (pidfds are close-on-exec).
            pidfd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
        })
    }

    /// A watch on the namespace file at `path`.
    pub fn path(path: &Path) -> io::Result<TargetWatch> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?
            .to_os_string();
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor.
        let inotify = unsafe { OwnedFd::from_raw_fd(fd) };
        let cdir = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mask =
            libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF;
        // SAFETY: a NUL-terminated path and our descriptor.
        if unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), cdir.as_ptr(), mask) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TargetWatch::Path { inotify, name })
    }
}

/// Whether the inotify events in `buf` say that entry `name` (or the
/// directory itself) went away. Events are `struct inotify_event` headers
/// (16 bytes) each followed by `len` bytes of NUL-padded name.
fn events_remove(buf: &[u8], name: &[u8]) -> bool {
    const HEADER: usize = 16;
    let mut at = 0;
    while at + HEADER <= buf.len() {
        let word = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let mask = word(at + 4);
        let len = word(at + 12) as usize;
        let end = (at + HEADER).saturating_add(len).min(buf.len());
        let raw = &buf[at + HEADER..end];
        let ev_name = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
        if mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF | libc::IN_IGNORED) != 0 {
            return true;
        }
        if mask & (libc::IN_DELETE | libc::IN_MOVED_FROM) != 0 && ev_name == name {
            return true;
        }
        at = end;
    }
    false
}

impl ExitWatch for TargetWatch {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            TargetWatch::Process { pidfd } => pidfd.as_fd(),
            TargetWatch::Path { inotify, .. } => inotify.as_fd(),
        }
    }

    fn target_gone(&mut self) -> bool {
        match self {
            TargetWatch::Process { .. } => true,
            TargetWatch::Path { inotify, name } => {
                // Aligned for the kernel's `struct inotify_event`.
                let mut buf = [0u32; 1024];
                let mut gone = false;
                loop {
                    // SAFETY: reads into a live buffer of the given size.
                    let n = unsafe {
                        libc::read(
                            inotify.as_raw_fd(),
                            buf.as_mut_ptr() as *mut libc::c_void,
                            std::mem::size_of_val(&buf),
                        )
                    };
                    if n <= 0 {
                        break;
                    }
                    // SAFETY: the first `n` bytes were written by read().
                    let bytes = unsafe {
                        std::slice::from_raw_parts(buf.as_ptr() as *const u8, n as usize)
                    };
                    gone |= events_remove(bytes, name.as_bytes());
                }
                gone
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostnet::{HostIpv4, HostIpv6, HostNetwork};
    use crate::runtime::netlink::Scope;
    use std::net::Ipv4Addr;

    fn event(mask: u32, name: &[u8]) -> Vec<u8> {
        let len = name.len().div_ceil(16) * 16;
        let mut v = Vec::new();
        v.extend_from_slice(&1i32.to_ne_bytes());
        v.extend_from_slice(&mask.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&(len as u32).to_ne_bytes());
        let mut n = name.to_vec();
        n.resize(len, 0);
        v.extend_from_slice(&n);
        v
    }

    #[test]
    fn only_the_removal_of_our_entry_or_the_directory_means_gone() {
        let mut buf = event(libc::IN_DELETE, b"other");
        assert!(!events_remove(&buf, b"ns1"));
        buf.extend(event(libc::IN_DELETE, b"ns1"));
        assert!(events_remove(&buf, b"ns1"));
        assert!(events_remove(&event(libc::IN_MOVED_FROM, b"ns1"), b"ns1"));
        assert!(events_remove(&event(libc::IN_DELETE_SELF, b""), b"ns1"));
        assert!(!events_remove(&event(libc::IN_DELETE, b"ns10"), b"ns1"));
    }

    #[test]
    fn truncated_events_are_read_safely() {
        let buf = event(libc::IN_DELETE, b"ns1");
        for cut in 0..buf.len() {
            let _ = events_remove(&buf[..cut], b"ns1");
        }
        let mut lying = event(libc::IN_DELETE, b"x");
        lying[12..16].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(!events_remove(&lying, b"ns1"));
    }

    #[test]
    fn a_path_watch_sees_its_file_deleted_and_ignores_others() {
        let dir = std::env::temp_dir().join(format!("pasta-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("ns");
        let other = dir.join("other");
        std::fs::write(&target, b"").unwrap();
        std::fs::write(&other, b"").unwrap();
        let mut w = TargetWatch::path(&target).unwrap();
        std::fs::remove_file(&other).unwrap();
        assert!(!w.target_gone());
        std::fs::remove_file(&target).unwrap();
        assert!(w.target_gone());
        std::fs::remove_dir(&dir).unwrap();
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
                addr: "2001:db8::2".parse().unwrap(),
                prefix_len: 64,
                gateway: Some("fe80::1".parse().unwrap()),
            }),
            ..HostNetwork::default()
        }
    }

    fn address(a: &str, prefix_len: u8) -> Address {
        Address {
            addr: a.parse().unwrap(),
            prefix_len,
            scope: Scope::Universe,
            tentative: false,
            dad_failed: false,
            deprecated: false,
            permanent: true,
        }
    }

    fn plan(args: &[&str]) -> NsNetConfig {
        let opts = crate::cli::parse_args_in(
            std::iter::once("pasta").chain(args.iter().copied()),
            crate::fwd::SpecContext::new(crate::fwd::Program::Pasta),
        )
        .unwrap();
        let config = crate::cli::build_config(&opts, &host()).unwrap();
        let addrs = vec![
            address("192.0.2.2", 24),
            address("198.51.100.7", 28),
            address("2001:db8::2", 64),
            Address {
                tentative: true,
                ..address("2001:db8::99", 64)
            },
            address("fe80::5", 64),
        ];
        let mut prefix = Route::device("192.0.2.0".parse().unwrap(), 24);
        prefix.kernel = true;
        let routes = vec![
            Route::default_via("192.0.2.1".parse().unwrap()),
            prefix,
            Route {
                gateway: Some("192.0.2.254".parse().unwrap()),
                ..Route::device("203.0.113.0".parse().unwrap(), 24)
            },
            Route::default_via("fe80::1".parse().unwrap()),
        ];
        config_net_plan("eth0", &opts, &config, &addrs, &routes)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn config_net_copies_the_hosts_usable_addresses_and_routes() {
        let p = plan(&["--config-net"]);
        assert_eq!(p.ifname, "eth0");
        assert_eq!(p.mtu, Some(65520));
        assert_eq!(p.mac, None);
        assert_eq!(
            p.addrs,
            vec![
                (ip("192.0.2.2"), 24),
                (ip("198.51.100.7"), 28),
                (ip("2001:db8::2"), 64),
            ],
            "tentative and link-local addresses are not copied"
        );
        let shown: Vec<String> = p.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            shown,
            [
                "default via 192.0.2.1",
                "203.0.113.0/24 via 192.0.2.254",
                "default via fe80::1"
            ],
            "the kernel's prefix route is left to the kernel"
        );
    }

    #[test]
    fn config_net_without_copies_sets_one_address_and_a_default_route() {
        let p = plan(&["--config-net", "--no-copy-addrs", "--no-copy-routes"]);
        assert_eq!(
            p.addrs,
            vec![(ip("192.0.2.2"), 24), (ip("2001:db8::2"), 64)]
        );
        let shown: Vec<String> = p.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(shown, ["default via 192.0.2.1", "default via fe80::1"]);
    }

    #[test]
    fn config_net_follows_the_given_address_gateway_mtu_and_mac() {
        let p = plan(&[
            "-4",
            "-a",
            "10.9.8.7",
            "-n",
            "16",
            "-g",
            "10.9.0.1",
            "-m",
            "1500",
            "--ns-mac-addr",
            "02:00:00:00:00:05",
        ]);
        assert_eq!(p.addrs, vec![(ip("10.9.8.7"), 16)], "-a: only that address");
        let shown: Vec<String> = p.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(shown, ["default via 10.9.0.1"], "-g: only that gateway");
        assert_eq!(p.mtu, Some(1500));
        assert_eq!(p.mac, Some("02:00:00:00:00:05".parse().unwrap()));
        assert_eq!(plan(&["-m", "0"]).mtu, None, "-m 0 leaves the kernel's MTU");
    }

    #[test]
    fn the_cap_sys_admin_probe_matches_the_effective_user() {
        // Root in the initial namespace has it; anyone else here does not.
        // SAFETY: cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            assert!(has_cap_sys_admin());
        }
    }
}
