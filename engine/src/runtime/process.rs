//! Process chores of the binaries: going to the background, the pid file,
//! files removed at exit, dropping privileges (`--runas`), and the signals
//! that stop the loop.
//!
//! It owns these syscalls (fork, setsid, setuid/setgid, sigprocmask,
//! signalfd, unlinkat) and nothing about networking. Everything here that
//! runs after isolation ([`super::isolation`]) works on descriptors opened
//! before it: the filesystem is gone by then.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
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

/// `/dev/null`, opened for [`daemonize`] before isolation hides it.
pub fn open_dev_null() -> io::Result<OwnedFd> {
    Ok(File::options()
        .read(true)
        .write(true)
        .open("/dev/null")?
        .into())
}

/// Goes to the background: `fork(2)`, then in the child `setsid(2)` and
/// standard input, output and error to `null` (`/dev/null`, see
/// [`open_dev_null`]). Call it while the process has one thread.
pub fn daemonize(null: OwnedFd) -> io::Result<Forked> {
    // SAFETY: fork in a single-threaded process; both sides continue normally.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid > 0 {
        return Ok(Forked::Parent(pid));
    }
    // SAFETY: plain syscalls on our own process and descriptors.
    unsafe {
        libc::setsid();
        let null = null.as_raw_fd();
        libc::dup2(null, 0);
        libc::dup2(null, 1);
        libc::dup2(null, 2);
    }
    // Closes `null` unless it was 0, 1 or 2 (then dup2 kept it in place).
    if null.as_raw_fd() <= 2 {
        std::mem::forget(null);
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

/// A file to remove when the process ends, kept as its directory (an
/// `O_PATH` descriptor) and its name so that removal still works after
/// isolation took the filesystem away: `unlinkat(2)` on the descriptor is
/// the one filesystem call the seccomp filter allows. The process must be
/// allowed to write in that directory as the user it runs as.
#[derive(Debug)]
pub struct FileInDir {
    dir: OwnedFd,
    name: CString,
}

impl FileInDir {
    /// Opens the directory holding `path` (which need not exist yet).
    pub fn new(path: &Path) -> io::Result<FileInDir> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.as_os_str(),
            _ => OsStr::new("."),
        };
        let cpath = CString::new(parent.as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let name = CString::new(name.as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a NUL-terminated path; the result is checked.
        let fd = cvt(unsafe {
            libc::open(
                cpath.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        Ok(FileInDir {
            // SAFETY: fresh descriptor, owned by no one else.
            dir: unsafe { OwnedFd::from_raw_fd(fd) },
            name,
        })
    }

    /// Removes the file (`unlinkat(2)` in the kept directory).
    pub fn remove(&self) -> io::Result<()> {
        // SAFETY: our directory descriptor and a NUL-terminated name.
        cvt(unsafe { libc::unlinkat(self.dir.as_raw_fd(), self.name.as_ptr(), 0) })?;
        Ok(())
    }
}

/// The pid file (`-P`): created before isolation, written once the pid to
/// record is known (after going to the background), removed at exit.
#[derive(Debug)]
pub struct PidFile {
    file: File,
    entry: FileInDir,
}

impl PidFile {
    /// Creates (or truncates) the file at `path`. It is opened before the
    /// user changes, so that a file the starter made for us (QEMU's
    /// temporary one) can be written whoever we become.
    pub fn create(path: &Path) -> io::Result<PidFile> {
        let entry = FileInDir::new(path)?;
        let file = File::create(path)?;
        Ok(PidFile { file, entry })
    }

    /// Gives the file to the user we are about to become, who can then
    /// remove it at exit (in a sticky directory such as `/tmp` only the
    /// owner may). QEMU's own file included: it is ours to remove, as it
    /// was before the user changed at start.
    pub fn hand_over(&self, uid: libc::uid_t, gid: libc::gid_t) -> io::Result<()> {
        std::os::unix::fs::fchown(&self.file, Some(uid), Some(gid))
    }

    /// Writes `pid` and a newline.
    pub fn write(&mut self, pid: i32) -> io::Result<()> {
        self.file.write_all(format!("{pid}\n").as_bytes())
    }

    /// Removes the file.
    pub fn remove(self) -> io::Result<()> {
        self.entry.remove()
    }
}

/// Ends the process now with `code`, without running destructors or atexit
/// handlers (`_exit(2)`): for the parent after [`daemonize`].
pub fn exit_immediately(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// This process's id.
pub fn pid() -> i32 {
    std::process::id() as i32
}

/// The UID and primary GID of `user` (a login name or a number).
pub fn lookup_user(user: &str) -> io::Result<(libc::uid_t, libc::gid_t)> {
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

/// The GID of `group` (a group name or a number).
pub fn lookup_group(group: &str) -> io::Result<libc::gid_t> {
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

/// The UID and GID that `runas` names.
pub fn resolve_runas(runas: &RunAs) -> io::Result<(libc::uid_t, libc::gid_t)> {
    let (uid, user_gid) = lookup_user(&runas.user)?;
    let gid = match &runas.group {
        Some(g) => lookup_group(g)?,
        None => user_gid,
    };
    Ok((uid, gid))
}

/// Switches to `uid` and `gid`: supplementary groups cleared, then
/// `setgid`, then `setuid`. Needs privileges unless the target is the
/// current user (then nothing changes).
pub fn set_user(uid: libc::uid_t, gid: libc::gid_t) -> io::Result<()> {
    // SAFETY: plain syscalls.
    unsafe {
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
