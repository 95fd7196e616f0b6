//! The sandbox: what the process gives up before it reads the first guest
//! frame, in stages (the threat model and the lists are in
//! `docs/security.md`):
//!
//! 1. [`close_inherited`], first thing at start: descriptors inherited from
//!    whoever started us, except standard streams and `--fd`, are closed
//!    (at start, every descriptor above 2 is inherited; later, ours and
//!    theirs could no longer be told apart);
//! 2. [`switch_user`], before any file is created: `--runas`, or `nobody`
//!    when started as root in the initial user namespace;
//! 3. [`isolate_prefork`], once every descriptor is open and before going
//!    to the background: a user namespace if we lack `CAP_SYS_ADMIN` for
//!    the next step, new mount, IPC, UTS (and PID) namespaces, `pivot_root`
//!    into an empty read-only tmpfs, and every capability dropped (bounding
//!    set, ambient, effective, permitted, inheritable) but what the mode
//!    keeps;
//! 4. [`isolate_postfork`], after going to the background and right before
//!    the loop: `PR_SET_DUMPABLE 0`, `PR_SET_NO_NEW_PRIVS`, and a seccomp
//!    filter that allows the mode's syscalls ([`allowed_syscalls`]) and
//!    kills the process on any other.
//!
//! Each [`Mode`] has its allow-list and the capabilities its stage 3
//! keeps ([`Mode::kept_capabilities`]); the start-up path calls the same
//! four stages with its mode. pasta keeps `CAP_SYS_ADMIN` (and
//! `CAP_SETPCAP`) past stage 3 only until its namespace thread has joined
//! the target namespace; [`drop_thread_capabilities`] then drops them from
//! each of its two threads, before stage 4.
//!
//! This module owns those syscalls and the allow-lists (which live here,
//! beside the code they describe). It never opens a socket or a file the
//! loop uses: whatever the loop needs must be open before stage 3.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::RawFd;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::process;
use crate::cli::RunAs;

/// Which program is being isolated: the allow-list and the capabilities
/// kept depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// passt: QEMU's socket; everything is open before isolation.
    Passt,
    /// pasta: the tap in its namespace, the splice, sockets made in the
    /// namespace at run time by its namespace thread, and the command it
    /// runs (`command`: its PID, the only process it may signal).
    Pasta {
        /// The command's PID, when pasta started one.
        command: Option<i32>,
    },
}

impl Mode {
    /// Capabilities the mode keeps after [`isolate_prefork`] (numbers as
    /// in `capabilities(7)`). passt needs none: every listener is bound.
    /// pasta keeps `CAP_SYS_ADMIN`, which entering its target network
    /// namespace takes, and `CAP_SETPCAP` to drop both afterwards, until
    /// its namespace thread is in place ([`drop_thread_capabilities`]).
    pub fn kept_capabilities(self) -> &'static [u32] {
        match self {
            Mode::Passt => &[],
            Mode::Pasta { .. } => &[CAP_SETPCAP, CAP_SYS_ADMIN],
        }
    }

    /// Whether the mode detaches into a new PID namespace even in the
    /// foreground (`-f`). There it only applies to children, which passt
    /// never makes (the filter forbids it), but it costs nothing and is what
    /// upstream does; in the background the daemon becomes the new
    /// namespace's first process. Not pasta: after `unshare(CLONE_NEWPID)`
    /// the kernel refuses to create threads (clone(2), `EINVAL`) until the
    /// process forks, and pasta's namespace thread is made after that
    /// point; pasta in the background does get the namespace.
    fn pid_namespace_in_foreground(self) -> bool {
        match self {
            Mode::Passt => true,
            Mode::Pasta { .. } => false,
        }
    }

    /// Whether stage 3 may make a user namespace of its own when it lacks
    /// `CAP_SYS_ADMIN`. Not pasta: in a child user namespace it would lose
    /// its hold on the target network namespace (and it always has the
    /// capability: setting the namespace up needed it).
    fn may_create_user_namespace(self) -> bool {
        matches!(self, Mode::Passt)
    }
}

/// A sandbox step that failed: the message names the step, as upstream's
/// do ("Couldn't create user namespace: ...").
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct IsolationError {
    /// What was being done.
    pub step: &'static str,
    /// Why it failed.
    #[source]
    pub source: io::Error,
}

fn step(step: &'static str) -> impl FnOnce(io::Error) -> IsolationError {
    move |source| IsolationError { step, source }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_long(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Stage 1: closes every descriptor above 2 except `keep` (`--fd`).
/// Returns how many were closed.
pub fn close_inherited(keep: &[RawFd]) -> io::Result<usize> {
    let mut open = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        if let Some(fd) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        {
            open.push(fd);
        }
    }
    // The directory's own descriptor is in the list; it is closed by now,
    // and closing it again only fails with EBADF.
    let mut closed = 0;
    for fd in open {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: an inherited descriptor nothing in this process owns.
            if unsafe { libc::close(fd) } == 0 {
                closed += 1;
            }
        }
    }
    Ok(closed)
}

/// Whether this process is in the initial user namespace (its UID map is
/// the identity over the whole range).
fn in_initial_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| {
        let f: Vec<&str> = m.split_whitespace().collect();
        f == ["0", "0", "4294967295"]
    })
}

/// `nobody`'s UID and GID (65534 where the name is unknown).
fn nobody() -> (libc::uid_t, libc::gid_t) {
    process::lookup_user("nobody").unwrap_or((65534, 65534))
}

/// Who [`switch_user`] switched to, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserSwitch {
    /// No change: not root, or root inside a user namespace.
    Unchanged,
    /// `--runas`.
    RunAs(libc::uid_t, libc::gid_t),
    /// Started as root without `--runas`: `nobody`, as upstream.
    Nobody(libc::uid_t, libc::gid_t),
}

/// Stage 2: `--runas` if given; otherwise, started as root in the initial
/// user namespace, `nobody`. A privileged process that changes user keeps,
/// until [`isolate_prefork`], the capabilities it needs to finish the
/// start: `CAP_NET_BIND_SERVICE` (forwarded ports below 1024),
/// `CAP_SYS_ADMIN` and `CAP_SETPCAP` (namespaces and the empty root without
/// a user namespace, and the bounding set). The files it creates afterwards
/// (socket, pid file, capture) belong to the new user, who can remove them.
///
/// `nobody_when_root` is false for pasta: its namespace stage needs more
/// than these capabilities as root (`CAP_NET_ADMIN` for the tap and the
/// interface), the command it starts runs as root inside with the identity
/// map (docs/decisions.md), and pasta must be able to signal it. A root
/// pasta stays root with no capability at all after stage 3
/// (`docs/security.md`).
///
/// `before_change(uid, gid)` runs right before the change, while the
/// process still has all its privileges (the start-up path gives the pid
/// file, opened earlier, to the new user there).
pub fn switch_user(
    runas: Option<&RunAs>,
    nobody_when_root: bool,
    before_change: impl FnOnce(libc::uid_t, libc::gid_t),
) -> Result<UserSwitch, IsolationError> {
    let (uid, gid, switch) = match runas {
        Some(r) => {
            let (uid, gid) = process::resolve_runas(r).map_err(step("Can't resolve --runas"))?;
            (uid, gid, UserSwitch::RunAs(uid, gid))
        }
        // SAFETY: geteuid cannot fail.
        None if !nobody_when_root
            || unsafe { libc::geteuid() } != 0
            || !in_initial_user_namespace() =>
        {
            return Ok(UserSwitch::Unchanged);
        }
        None => {
            let (uid, gid) = nobody();
            (uid, gid, UserSwitch::Nobody(uid, gid))
        }
    };
    // SAFETY: geteuid and getegid cannot fail.
    if (uid, gid) == unsafe { (libc::geteuid(), libc::getegid()) } {
        // `--runas` naming who we are already (`--runas 0` as root): no
        // change, and no capability given up before the namespace stage
        // (pasta needs CAP_SETUID for a user namespace's full map).
        return Ok(UserSwitch::Unchanged);
    }
    before_change(uid, gid);
    let (_, permitted) = capabilities().map_err(step("Can't read capabilities"))?;
    let keep = permitted & START_CAPABILITIES;
    if keep != 0 {
        // SAFETY: plain prctl: permitted capabilities survive setuid.
        unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    }
    let changed = process::set_user(uid, gid).map_err(step("Can't change user"));
    if keep != 0 {
        // SAFETY: plain prctl.
        unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    }
    changed?;
    if keep != 0 {
        set_capabilities(keep).map_err(step("Can't keep capabilities for the start"))?;
    }
    Ok(switch)
}

/// `CAP_SETPCAP`: the bounding set.
const CAP_SETPCAP: u32 = 8;
/// `CAP_NET_BIND_SERVICE`: ports below 1024.
const CAP_NET_BIND_SERVICE: u32 = 10;
/// What [`switch_user`] keeps until [`isolate_prefork`], where it has them.
const START_CAPABILITIES: u64 =
    (1 << CAP_SETPCAP) | (1 << CAP_NET_BIND_SERVICE) | (1 << CAP_SYS_ADMIN);
/// `CAP_SYS_ADMIN`, which new mount namespaces and `pivot_root` need.
const CAP_SYS_ADMIN: u32 = 21;
/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets in two 32-bit halves.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// This thread's capability sets, as 64-bit (effective, permitted).
fn capabilities() -> io::Result<(u64, u64)> {
    let mut hdr = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two CapData for version 3.
    cvt_long(unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) })?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
    ))
}

/// Drops every capability but `keep`: from the bounding set (which needs
/// `CAP_SETPCAP`), the ambient set, and the effective, permitted and
/// inheritable sets.
fn drop_capabilities(keep: &[u32]) -> io::Result<()> {
    for cap in 0..64u32 {
        if keep.contains(&cap) {
            continue;
        }
        // SAFETY: plain prctl; EINVAL past the last capability the kernel knows.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r != 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINVAL) => break,
                _ => return Err(e),
            }
        }
    }
    // SAFETY: plain prctl.
    cvt(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    })?;
    let mask = keep.iter().fold(0u64, |m, &c| m | (1u64 << c));
    let (_, permitted) = capabilities()?;
    set_capabilities(mask & permitted)
}

/// pasta's last capability step: drops every capability of the calling
/// thread (bounding set included). Capabilities are per thread: pasta
/// calls it on its namespace thread once that joined the namespace, then
/// on the main thread, before [`isolate_postfork`].
pub fn drop_thread_capabilities() -> io::Result<()> {
    drop_capabilities(&[])
}

/// Sets the effective and permitted capabilities to `caps` (a subset of
/// the permitted ones) and clears the inheritable set.
fn set_capabilities(caps: u64) -> io::Result<()> {
    let lo = caps as u32;
    let hi = (caps >> 32) as u32;
    let hdr = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: lo,
            permitted: lo,
            inheritable: 0,
        },
        CapData {
            effective: hi,
            permitted: hi,
            inheritable: 0,
        },
    ];
    // SAFETY: capset reads two CapData for version 3.
    cvt_long(unsafe { libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) })?;
    Ok(())
}

fn write_proc(path: &str, text: &str) -> io::Result<()> {
    std::fs::write(path, text)
}

/// A user namespace where this process is root with every capability,
/// mapped to its current UID and GID outside (one ID each).
fn enter_own_user_namespace() -> io::Result<()> {
    // SAFETY: getters cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    // Changing user (stage 2) cleared the dumpable flag, which makes
    // /proc/self root's: the maps below could not be written.
    // SAFETY: plain prctl.
    cvt(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) })?;
    // SAFETY: plain syscall; fails if the process has several threads.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWUSER) })?;
    write_proc("/proc/self/uid_map", &format!("0 {uid} 1"))?;
    write_proc("/proc/self/setgroups", "deny")?;
    write_proc("/proc/self/gid_map", &format!("0 {gid} 1"))?;
    Ok(())
}

/// The directory the empty tmpfs is mounted on, in our own mount
/// namespace, before it becomes the root.
const EMPTY_ROOT: &std::ffi::CStr = c"/tmp";

/// New mount, IPC and UTS namespaces (and PID if `pid`), then an empty
/// read-only tmpfs as the root, the old root detached.
fn detach_filesystem(pid: bool) -> io::Result<bool> {
    let base = libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    // SAFETY: plain syscalls.
    let pid = if pid && unsafe { libc::unshare(base | libc::CLONE_NEWPID) } == 0 {
        true
    } else {
        // SAFETY: as above.
        cvt(unsafe { libc::unshare(base) })?;
        false
    };
    let (root, empty, tmpfs, dot) = (c"/", EMPTY_ROOT, c"tmpfs", c".");
    let opts = c"nr_inodes=2,mode=0555";
    // SAFETY: NUL-terminated strings that outlive the calls.
    unsafe {
        // Nothing we do to our mounts reaches the host's.
        cvt(libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        cvt(libc::mount(
            tmpfs.as_ptr(),
            empty.as_ptr(),
            tmpfs.as_ptr(),
            libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_NOSUID | libc::MS_RDONLY,
            opts.as_ptr() as *const libc::c_void,
        ))?;
        cvt(libc::chdir(empty.as_ptr()))?;
        // pivot_root(".", "."): the old root ends up stacked on the new one
        // and is detached at once (pivot_root(2), NOTES).
        cvt_long(libc::syscall(
            libc::SYS_pivot_root,
            dot.as_ptr(),
            dot.as_ptr(),
        ))?;
        cvt(libc::umount2(dot.as_ptr(), libc::MNT_DETACH))?;
        cvt(libc::chdir(root.as_ptr()))?;
    }
    Ok(pid)
}

/// What [`isolate_prefork`] did, for the log and the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Isolated {
    /// A user namespace of our own was created.
    pub user_namespace: bool,
    /// The PID namespace was detached too.
    pub pid_namespace: bool,
}

/// Stage 3: namespaces, the empty root, capabilities. Call it once every
/// descriptor the loop needs is open, with one thread, before
/// [`process::daemonize`]. `foreground` is `-f`.
pub fn isolate_prefork(mode: Mode, foreground: bool) -> Result<Isolated, IsolationError> {
    // Without CAP_SYS_ADMIN, a user namespace of our own: there we have it
    // (and every other capability, in that namespace only; what we held
    // where we started is out of reach from inside).
    let (effective, _) = capabilities().map_err(step("Can't read capabilities"))?;
    let user_namespace = effective & (1 << CAP_SYS_ADMIN) == 0 && mode.may_create_user_namespace();
    if user_namespace {
        enter_own_user_namespace().map_err(step("Couldn't create user namespace"))?;
    }
    let want_pid = !foreground || mode.pid_namespace_in_foreground();
    let pid_namespace =
        detach_filesystem(want_pid).map_err(step("Couldn't detach from the filesystem"))?;
    // In the user namespace we are in now: ours if we made one (its
    // capabilities are all we have), else the one we were started in.
    drop_capabilities(mode.kept_capabilities()).map_err(step("Can't drop capabilities"))?;
    Ok(Isolated {
        user_namespace,
        pid_namespace,
    })
}

/// A list of syscalls as (name, number) on this architecture.
macro_rules! syscalls {
    ($($n:ident),* $(,)?) => {
        &[$((stringify!($n), libc::$n as i64)),*]
    };
}

/// One syscall the filter allows: its `SYS_` name and number here.
pub type Syscall = (&'static str, i64);

/// The syscalls passt makes once [`isolate_postfork`] ran, as the loop,
/// the logger, the capture, the exit path and Rust's standard library make
/// them. How the list was found and how it is kept honest:
/// `docs/security.md`.
const PASST_SYSCALLS: &[Syscall] = syscalls![
    // The loop and its descriptors.
    SYS_epoll_ctl,
    SYS_read,
    SYS_write,
    SYS_close,
    // The guest's socket (QEMU) and the host's sockets.
    SYS_accept4,
    SYS_recvfrom,
    SYS_recvmsg,
    SYS_recvmmsg,
    SYS_sendto,
    SYS_sendmsg,
    SYS_sendmmsg,
    SYS_bind,
    // Listeners opened at run time (`pesto`'s changes, pasta's `auto`).
    SYS_listen,
    SYS_connect,
    SYS_shutdown,
    SYS_setsockopt,
    SYS_getsockopt,
    SYS_getsockname,
    // Time (the vDSO answers; this is its fallback).
    SYS_clock_gettime,
    // The log file's rotation.
    SYS_ftruncate,
    SYS_lseek,
    // The socket and pid files at exit.
    SYS_unlinkat,
    // Rust's standard library and the C library's allocator: locks,
    // memory, the main thread's signal stack at exit, the exit itself.
    SYS_futex,
    SYS_mmap,
    SYS_munmap,
    SYS_mremap,
    SYS_madvise,
    SYS_brk,
    SYS_sigaltstack,
    SYS_exit_group,
    // The panic message names the thread: its id.
    SYS_gettid,
];

/// Syscalls allowed with one argument fixed: (syscall, argument index,
/// value); several entries for one syscall allow any of their values.
/// - `socket`: IPv4 and IPv6 only (flows to new peers, ping sockets); no
///   netlink, UNIX or packet sockets;
/// - `ioctl`: the queue sizes of a socket (`SIOCINQ`, `SIOCOUTQ`), and
///   `FIONBIO`, with which the standard library makes an accepted guest
///   connection nonblocking;
/// - `fcntl(fd, F_GETFD)`: Rust's standard library checks, in debug
///   builds, that a descriptor it closes is open.
const PASST_WITH_ARGUMENT: &[(Syscall, u8, u64)] = &[
    (("SYS_socket", libc::SYS_socket), 0, libc::AF_INET as u64),
    (("SYS_socket", libc::SYS_socket), 0, libc::AF_INET6 as u64),
    (("SYS_ioctl", libc::SYS_ioctl), 1, super::sys::SIOCINQ),
    (("SYS_ioctl", libc::SYS_ioctl), 1, super::sys::SIOCOUTQ),
    (("SYS_ioctl", libc::SYS_ioctl), 1, libc::FIONBIO),
    (("SYS_fcntl", libc::SYS_fcntl), 1, libc::F_GETFD as u64),
];

/// Waiting: the loop's `epoll_wait` and the backpressure `poll`, by the
/// names this architecture's C library uses for them.
#[cfg(target_arch = "x86_64")]
const PASST_WAITS: &[Syscall] = syscalls![SYS_epoll_wait, SYS_poll];
#[cfg(not(target_arch = "x86_64"))]
const PASST_WAITS: &[Syscall] = syscalls![SYS_epoll_pwait, SYS_ppoll];

/// What pasta makes beyond passt's list, once [`isolate_postfork`] ran.
const PASTA_SYSCALLS: &[Syscall] = syscalls![
    // The splice: its pipes (taken from a pool, made when it is empty)
    // and the moves between sockets and pipes.
    SYS_pipe2,
    SYS_splice,
    // The command's end (`waitpid`).
    SYS_wait4,
    // The channel to the namespace thread backs off by yielding.
    SYS_sched_yield,
];

/// pasta's argument-restricted calls beyond passt's: the splice pipes'
/// size (`fcntl(F_SETPIPE_SZ)`, then `F_GETPIPE_SZ` for what was granted).
const PASTA_WITH_ARGUMENT: &[(Syscall, u8, u64)] = &[
    (("SYS_fcntl", libc::SYS_fcntl), 1, libc::F_SETPIPE_SZ as u64),
    (("SYS_fcntl", libc::SYS_fcntl), 1, libc::F_GETPIPE_SZ as u64),
];

/// The syscalls `mode` may make after [`isolate_postfork`], sorted by name
/// (`SYS_` names, as in `<sys/syscall.h>`), with any argument allowed.
pub fn allowed_syscalls(mode: Mode) -> Vec<Syscall> {
    let base = PASST_SYSCALLS.iter().chain(PASST_WAITS);
    let mut all: Vec<Syscall> = match mode {
        Mode::Passt => base.copied().collect(),
        Mode::Pasta { .. } => base.chain(PASTA_SYSCALLS).copied().collect(),
    };
    all.sort_unstable();
    all
}

/// The syscalls `mode` may make only with one argument fixed:
/// (syscall, argument index, value). pasta may `kill` its command, and
/// only it (argument 0 is its PID); without a command, `kill` is not
/// allowed at all.
pub fn allowed_with_argument(mode: Mode) -> Vec<(Syscall, u8, u64)> {
    let mut all = PASST_WITH_ARGUMENT.to_vec();
    if let Mode::Pasta { command } = mode {
        all.extend_from_slice(PASTA_WITH_ARGUMENT);
        if let Some(pid) = command {
            all.push((("SYS_kill", libc::SYS_kill), 0, pid as u32 as u64));
        }
    }
    all
}

/// Every syscall `mode`'s filter lets through in some form, by name,
/// sorted, each once.
pub fn allowed_names(mode: Mode) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = allowed_syscalls(mode)
        .iter()
        .map(|&(n, _)| n)
        .chain(allowed_with_argument(mode).iter().map(|&((n, _), ..)| n))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// How many syscalls `mode`'s filter lets through (in any form).
pub fn allowed_count(mode: Mode) -> usize {
    allowed_names(mode).len()
}

/// The filter for `mode`, compiled to BPF: its syscalls allowed, anything
/// else kills the process (`SECCOMP_RET_KILL_PROCESS`, seen as SIGSYS).
pub fn filter(mode: Mode) -> Result<BpfProgram, seccompiler::BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = allowed_syscalls(mode)
        .into_iter()
        .map(|(_, nr)| (nr, Vec::new()))
        .collect();
    for ((_, nr), arg, value) in allowed_with_argument(mode) {
        let cond = SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)?;
        rules
            .entry(nr)
            .or_default()
            .push(SeccompRule::new(vec![cond])?);
    }
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch,
    )?
    .try_into()
}

/// Stage 4: no core dumps and no ptrace by other users
/// (`PR_SET_DUMPABLE 0`), no new privileges, then the seccomp filter. Call
/// it right before the loop, after going to the background.
pub fn isolate_postfork(mode: Mode) -> Result<(), IsolationError> {
    let program = filter(mode).map_err(|e| IsolationError {
        step: "Can't build the seccomp filter",
        source: io::Error::other(e.to_string()),
    })?;
    // SAFETY: plain prctls.
    unsafe {
        cvt(libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0)).map_err(step("prctl"))?;
        cvt(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)).map_err(step("prctl"))?;
    }
    // Every thread (pasta's namespace thread too: `SECCOMP_FILTER_FLAG_TSYNC`,
    // which also gives them `NO_NEW_PRIVS`).
    seccompiler::apply_filter_all_threads(&program).map_err(|e| IsolationError {
        step: "Can't install the seccomp filter",
        source: io::Error::other(e.to_string()),
    })
}

/// The environment variable behind [`SelfTest`].
pub const SELF_TEST_ENV: &str = "PASST_SANDBOX_SELFTEST";

/// A test-only probe of the sandbox from inside, chosen by
/// `PASST_SANDBOX_SELFTEST` (read at start) and run right after
/// [`isolate_postfork`], before the first guest frame. Only whoever starts
/// the process sets its environment, so it gives a guest nothing; the
/// tests in `engine/tests/passt_bin_sandbox.rs` use it to see what the
/// filter does to a syscall outside the list and to a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfTest {
    /// `forbidden-syscall`: calls `uname(2)`, which no list allows: the
    /// process must die of SIGSYS.
    ForbiddenSyscall,
    /// `panic`: panics: the message must still reach standard error.
    Panic,
}

impl SelfTest {
    /// The probe the environment asks for, if any.
    pub fn from_env() -> Option<SelfTest> {
        match std::env::var(SELF_TEST_ENV).ok()?.as_str() {
            "forbidden-syscall" => Some(SelfTest::ForbiddenSyscall),
            "panic" => Some(SelfTest::Panic),
            _ => None,
        }
    }

    /// Runs the probe.
    pub fn run(self) {
        match self {
            SelfTest::ForbiddenSyscall => {
                // SAFETY: uname writes into a local struct.
                let mut u: libc::utsname = unsafe { std::mem::zeroed() };
                // SAFETY: as above.
                let r = unsafe { libc::uname(&mut u) };
                eprintln!("{SELF_TEST_ENV}: uname returned {r}: no filter?");
            }
            SelfTest::Panic => panic!("{SELF_TEST_ENV}: panic after isolation"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_passt_list_names_each_syscall_once() {
        let list = allowed_syscalls(Mode::Passt);
        let mut numbers: Vec<i64> = list.iter().map(|&(_, n)| n).collect();
        numbers.extend(
            allowed_with_argument(Mode::Passt)
                .iter()
                .map(|&((_, n), ..)| n),
        );
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), allowed_count(Mode::Passt), "{list:?}");
    }

    #[test]
    fn the_passt_filter_compiles_for_this_architecture() {
        let program = filter(Mode::Passt).expect("filter");
        // One comparison per syscall at least, plus the architecture check.
        assert!(program.len() > allowed_syscalls(Mode::Passt).len());
    }

    #[test]
    fn passt_keeps_no_capability() {
        assert!(Mode::Passt.kept_capabilities().is_empty());
    }

    /// docs/security.md lists passt's and pasta's syscalls (x86_64 names)
    /// and their counts: they must be the filters'.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_documented_lists_match_the_code() {
        let doc = include_str!("../../../docs/security.md");
        for (prefix, mode) in [
            ("passt (", Mode::Passt),
            ("pasta (", Mode::Pasta { command: Some(1) }),
        ] {
            let line = doc
                .lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("the {prefix}N): list in docs/security.md"));
            let (count, names) = line
                .strip_prefix(prefix)
                .and_then(|r| r.split_once("):"))
                .expect("NAME (N): names");
            let documented: Vec<&str> = names.split_whitespace().collect();
            let code: Vec<&str> = allowed_names(mode)
                .into_iter()
                .map(|n| n.trim_start_matches("SYS_"))
                .collect();
            assert_eq!(documented, code, "{prefix}");
            assert_eq!(count.parse::<usize>().unwrap(), allowed_count(mode));
        }
    }

    #[test]
    fn pasta_may_signal_its_command_only_and_ends_with_no_capability_kept_for_good() {
        let with = allowed_with_argument(Mode::Pasta { command: Some(42) });
        assert!(with.contains(&(("SYS_kill", libc::SYS_kill), 0, 42)));
        let without = allowed_with_argument(Mode::Pasta { command: None });
        assert!(without.iter().all(|((n, _), ..)| *n != "SYS_kill"));
        assert!(!allowed_names(Mode::Passt).contains(&"SYS_kill"));
        assert!(filter(Mode::Pasta { command: Some(42) }).is_ok());
        // Kept past stage 3 only to join the namespace and drop them.
        assert_eq!(
            Mode::Pasta { command: None }.kept_capabilities(),
            &[CAP_SETPCAP, CAP_SYS_ADMIN]
        );
    }
}
