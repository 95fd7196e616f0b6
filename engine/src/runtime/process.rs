//! Process chores of the binaries: going to the background, the pid file,
//! dropping privileges (`--runas`), and the signals that stop the loop.
//!
//! It owns these syscalls (fork, setsid, setuid/setgid, sigprocmask,
//! signalfd) and nothing about networking.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::cli::RunAs;

/// Which side of [`daemonize`] we are on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forked {
    /// The original process; the child has this pid. It should leave with
    /// [`exit_immediately`] (running no destructors: they belong to the child).
    Parent(i32),
    /// The detached child: new session, standard streams on `/dev/null`.
    Child,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Goes to the background: `fork(2)`, then in the child `setsid(2)` and
/// standard input, output and error to `/dev/null`. Call it while the
/// process has one thread.
pub fn daemonize() -> io::Result<Forked> {
    // SAFETY: fork in a single-threaded process; both sides continue normally.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid > 0 {
        return Ok(Forked::Parent(pid));
    }
    // SAFETY: plain syscalls on our own process and descriptors.
    unsafe {
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
            if null > 2 {
                libc::close(null);
            }
        }
    }
    Ok(Forked::Child)
}

/// `-F 0..2`: moves an inherited descriptor out of the standard streams'
/// way (the daemon points them at `/dev/null`): duplicates it to the lowest
/// free number above 2 (close-on-exec), and points the old number at
/// `/dev/null`. Descriptors above 2 are returned as they are.
pub fn move_above_stdio(fd: i32) -> io::Result<i32> {
    if fd > 2 {
        return Ok(fd);
    }
    // SAFETY: plain syscall; the result is checked.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    // SAFETY: `dup2` onto `fd`, which we own now that `new` holds the socket.
    if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(new)
}

/// Ends the process now with `code`, without running destructors or atexit
/// handlers (`_exit(2)`): for the parent after [`daemonize`].
pub fn exit_immediately(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// Writes `pid` and a newline to `path` (created or truncated).
pub fn write_pid_file(path: &Path, pid: i32) -> io::Result<()> {
    std::fs::write(path, format!("{pid}\n"))
}

/// This process's id.
pub fn pid() -> i32 {
    std::process::id() as i32
}

fn lookup_user(user: &str) -> io::Result<(libc::uid_t, libc::gid_t)> {
    if let Ok(uid) = user.parse::<libc::uid_t>() {
        // A numeric UID keeps its passwd group if it has one.
        // SAFETY: getpwuid returns a static entry or null; we copy out at once.
        let pw = unsafe { libc::getpwuid(uid) };
        let gid = if pw.is_null() {
            uid
        } else {
            // SAFETY: non-null entry.
            unsafe { (*pw).pw_gid }
        };
        return Ok((uid, gid));
    }
    let name = CString::new(user).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: as above, single-threaded at start.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no such user: {user}"),
        ));
    }
    // SAFETY: non-null entry.
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn lookup_group(group: &str) -> io::Result<libc::gid_t> {
    if let Ok(gid) = group.parse::<libc::gid_t>() {
        return Ok(gid);
    }
    let name = CString::new(group).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: static entry or null, copied out at once.
    let gr = unsafe { libc::getgrnam(name.as_ptr()) };
    if gr.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no such group: {group}"),
        ));
    }
    // SAFETY: non-null entry.
    Ok(unsafe { (*gr).gr_gid })
}

/// Switches to the user (and group) of `--runas`: supplementary groups
/// cleared, then `setgid`, then `setuid`. Needs privileges unless the target
/// is the current user.
pub fn drop_privileges(runas: &RunAs) -> io::Result<()> {
    let (uid, user_gid) = lookup_user(&runas.user)?;
    let gid = match &runas.group {
        Some(g) => lookup_group(g)?,
        None => user_gid,
    };
    // SAFETY: plain syscalls.
    unsafe {
        // SAFETY: getuid cannot fail.
        if libc::getuid() == uid && libc::getgid() == gid {
            return Ok(());
        }
        cvt(libc::setgroups(0, std::ptr::null()))?;
        cvt(libc::setgid(gid))?;
        cvt(libc::setuid(uid))?;
    }
    Ok(())
}

/// The signals that stop the loop cleanly.
fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; the calls initialise it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread. Call it first
/// thing in `main`, before any `fork`: the mask is inherited, so a stop
/// signal sent to the daemon before its [`SignalFd`] exists stays pending
/// (and is then read from the descriptor) instead of killing the process
/// without cleaning up its socket and pid files.
pub fn block_stop_signals() -> io::Result<()> {
    let set = stop_signals();
    // SAFETY: `set` is initialised; the old mask is not wanted.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// A `signalfd(2)` for SIGTERM, SIGINT and SIGHUP, which are blocked in the
/// calling thread (and in threads it starts afterwards) so that they are only
/// read from the descriptor.
#[derive(Debug)]
pub struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    /// Blocks the stop signals and opens the descriptor (nonblocking).
    pub fn new() -> io::Result<SignalFd> {
        block_stop_signals()?;
        let set = stop_signals();
        // SAFETY: `set` is initialised; a new descriptor is requested.
        let fd = unsafe {
            cvt(libc::signalfd(
                -1,
                &set,
                libc::SFD_NONBLOCK | libc::SFD_CLOEXEC,
            ))?
        };
        // SAFETY: fresh descriptor, owned by no one else.
        Ok(SignalFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The descriptor, to register in epoll.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// The next pending signal number, if any.
    pub fn read(&self) -> Option<i32> {
        // SAFETY: signalfd_siginfo is plain data.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: `info` is writable for `size` bytes.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                &mut info as *mut _ as *mut libc::c_void,
                size,
            )
        };
        (n == size as isize).then_some(info.ssi_signo as i32)
    }
}

/// Raises the soft limit on open descriptors to the hard limit (forwarding
/// `-t all` takes one socket per port and family, as upstream does).
/// Returns the limit now in force.
pub fn raise_nofile_limit() -> io::Result<u64> {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        cvt(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim))?;
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            cvt(libc::setrlimit(libc::RLIMIT_NOFILE, &lim))?;
        }
        Ok(lim.rlim_cur as u64)
    }
}
