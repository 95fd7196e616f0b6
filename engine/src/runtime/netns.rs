//! Network namespaces other than the process's own: a handle, and running
//! work inside one.
//!
//! A socket or a tap belongs to the network namespace of the thread that
//! created it, and keeps working there whoever uses it afterwards
//! (network_namespaces(7)). `setns(2)` with `CLONE_NEWNET` moves only the
//! calling thread. So [`NetNs::run_in`] runs a closure on a short-lived
//! thread that joins the namespace first: the process's main thread never
//! leaves its own namespace, which matters for rootless pasta, whose main
//! thread could not come back to the initial namespace (no
//! `CAP_SYS_ADMIN` there).
//!
//! This module owns namespace handles; it never creates namespaces (that
//! is pasta's start-up) and never configures interfaces.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// An open network namespace: a descriptor of `/proc/PID/ns/net`,
/// `/run/netns/NAME` or any bind mount of one.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
    path: PathBuf,
}

impl NetNs {
    /// Opens the namespace at `path`.
    pub fn open(path: &Path) -> io::Result<NetNs> {
        let file = File::open(path)?;
        Ok(NetNs {
            fd: file.into(),
            path: path.to_path_buf(),
        })
    }

    /// The network namespace of process `pid`.
    pub fn of_pid(pid: u32) -> io::Result<NetNs> {
        NetNs::open(&PathBuf::from(format!("/proc/{pid}/ns/net")))
    }

    /// The calling thread's own network namespace.
    pub fn current() -> io::Result<NetNs> {
        NetNs::open(Path::new("/proc/thread-self/ns/net"))
    }

    /// Another handle on the same namespace (a duplicated descriptor).
    pub fn try_clone(&self) -> io::Result<NetNs> {
        Ok(NetNs {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// Whether `other` is the same namespace (same `nsfs` inode).
    pub fn same_as(&self, other: &NetNs) -> io::Result<bool> {
        Ok(ns_id(self.fd.as_fd())? == ns_id(other.fd.as_fd())?)
    }

    /// The path it was opened from (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a new thread that has joined this namespace, and
    /// returns its result. Fails (without running `f`) when the namespace
    /// cannot be joined: `EPERM` without `CAP_SYS_ADMIN` over the user
    /// namespace that owns it.
    pub fn run_in<R: Send>(&self, f: impl FnOnce() -> R + Send) -> io::Result<R> {
        let fd = self.fd.as_raw_fd();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    // SAFETY: plain syscall on a descriptor `self` holds
                    // open for the scope's lifetime.
                    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(f())
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
        })
    }
}

/// A `socket(2)` request: domain, type (with its flags), protocol.
type SocketRequest = (libc::c_int, libc::c_int, libc::c_int);

/// A thread that joined a network namespace once, at start-up, and stays
/// there making sockets on request: the sandboxed pasta's way to get
/// sockets in its target namespace at run time (see the module docs and
/// `docs/decisions.md`). The thread never ends: once this is dropped it
/// waits for good (a thread ending under pasta's filter would make calls
/// its list leaves out, and the process exits soon after anyway).
#[derive(Debug)]
pub struct SocketMaker {
    requests: SyncSender<SocketRequest>,
    replies: Receiver<io::Result<OwnedFd>>,
}

impl SocketMaker {
    /// Starts the thread: it joins `ns`, then runs `after_join` (pasta
    /// drops the thread's capabilities there), and only then takes
    /// requests. Fails if either step fails; the thread has ended then.
    pub fn spawn(
        ns: &NetNs,
        after_join: impl FnOnce() -> io::Result<()> + Send + 'static,
    ) -> io::Result<SocketMaker> {
        let fd = ns.fd.try_clone()?;
        let (requests, req_rx) = sync_channel::<SocketRequest>(0);
        let (rep_tx, replies) = sync_channel::<io::Result<OwnedFd>>(1);
        let (ready_tx, ready_rx) = sync_channel::<io::Result<()>>(1);
        std::thread::Builder::new().spawn(move || {
            // SAFETY: plain syscall on a descriptor this thread owns.
            let joined = if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
                after_join()
            } else {
                Err(io::Error::last_os_error())
            };
            drop(fd);
            let ok = joined.is_ok();
            if ready_tx.send(joined).is_err() || !ok {
                return;
            }
            // A sandboxed pasta allows this thread no way out (see above).
            let park = || loop {
                std::thread::park();
            };
            while let Ok((domain, ty, proto)) = req_rx.recv() {
                // SAFETY: plain syscall; the result is checked.
                let fd = unsafe { libc::socket(domain, ty, proto) };
                let reply = if fd < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    // SAFETY: a fresh descriptor owned by no one else.
                    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
                };
                if rep_tx.send(reply).is_err() {
                    park();
                }
            }
            park();
        })?;
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("namespace thread ended"))??;
        Ok(SocketMaker { requests, replies })
    }

    /// `socket(domain, ty, proto)` in the namespace.
    pub fn socket(
        &self,
        domain: libc::c_int,
        ty: libc::c_int,
        proto: libc::c_int,
    ) -> io::Result<OwnedFd> {
        self.requests
            .send((domain, ty, proto))
            .map_err(|_| io::Error::other("namespace thread ended"))?;
        self.replies
            .recv()
            .map_err(|_| io::Error::other("namespace thread ended"))?
    }
}

/// The identity of the namespace behind `fd`: device and inode of its
/// `nsfs` file (namespaces(7), "/proc/PID/ns").
pub fn ns_id(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    // SAFETY: `stat` is plain data filled by fstat on a live descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.st_dev, st.st_ino))
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_in_the_current_namespace_returns_the_closures_value() {
        let ns = NetNs::current().expect("own namespace");
        assert_eq!(ns.run_in(|| 41 + 1).expect("joined"), 42);
    }

    #[test]
    fn a_clone_is_the_same_namespace_and_the_initial_one_differs_from_a_new_one() {
        let ns = NetNs::current().expect("own namespace");
        let copy = ns.try_clone().expect("dup");
        assert!(ns.same_as(&copy).unwrap());
        assert_eq!(copy.path(), ns.path());
    }

    #[test]
    fn the_socket_maker_makes_sockets_in_its_namespace_and_reports_errors() {
        let ns = NetNs::current().expect("own namespace");
        let maker = SocketMaker::spawn(&ns, || Ok(())).expect("thread");
        let fd = maker
            .socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
            .expect("socket");
        assert!(fd.as_raw_fd() > 2);
        let bad = maker
            .socket(-1, libc::SOCK_DGRAM, 0)
            .expect_err("bad domain");
        assert_eq!(bad.raw_os_error(), Some(libc::EAFNOSUPPORT));
    }

    #[test]
    fn a_failing_after_join_step_stops_the_socket_maker() {
        let ns = NetNs::current().expect("own namespace");
        let err = SocketMaker::spawn(&ns, || Err(io::Error::other("no"))).expect_err("refused");
        assert_eq!(err.to_string(), "no");
    }

    #[test]
    fn opening_a_missing_namespace_is_an_error() {
        assert!(NetNs::open(Path::new("/run/netns/does-not-exist-passt-test")).is_err());
    }
}
