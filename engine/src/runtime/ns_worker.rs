//! A thread that lives in another network namespace and makes sockets
//! there on request: how [`super::RealHost`] makes pasta's `Netns::Guest`
//! sockets without spawning a thread per socket.
//!
//! A socket belongs to the namespace of the thread that created it
//! (network_namespaces(7)), so a socket in the target namespace must be
//! made by a thread that joined it. [`super::NetNs::run_in`] starts a
//! thread for each call, which costs more than the connect it serves; this
//! worker joins once and then answers one request at a time over a pair of
//! channels (the requests are serialised by `RealHost`'s `&mut self`).
//! It only calls `socket(2)`: every other operation on the socket works
//! from any thread.
//!
//! A thread does not survive `fork(2)`: the child has only the thread
//! that forked. So the owner stops the worker before going to the
//! background and starts a new one after (see
//! [`super::RealHost::stop_guest_worker`]); a worker found in a process
//! other than the one that started it answers every request with an error
//! instead of waiting forever for a thread that is not there.
//!
//! It never changes the namespace of any other thread, and it ends when
//! its owner drops it.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use super::netns::NetNs;
use super::sys::{cvt, map_errno};
use crate::host_io::HostError;

/// `socket(2)` arguments.
type Request = (libc::c_int, libc::c_int, libc::c_int);

/// The worker: requests go in, sockets (or the error) come back.
#[derive(Debug)]
pub struct NsWorker {
    requests: Option<Sender<Request>>,
    replies: Receiver<Result<OwnedFd, HostError>>,
    thread: Option<JoinHandle<()>>,
    /// The process that started the thread (`getpid(2)`): in a forked
    /// child the thread does not exist.
    pid: u32,
}

impl NsWorker {
    /// Starts a thread that joins `ns`. Fails with the error of `setns(2)`
    /// (`EPERM` without `CAP_SYS_ADMIN` over the namespace's owner).
    pub fn start(ns: &NetNs) -> Result<NsWorker, HostError> {
        let (req_tx, req_rx) = channel::<Request>();
        let (rep_tx, rep_rx) = channel::<Result<OwnedFd, HostError>>();
        // The thread gets its own descriptor of the namespace, so it
        // depends on nothing the caller holds.
        let fd = ns
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| e.raw_os_error().map_or(HostError::NoResources, map_errno))?;
        let (ready_tx, ready_rx) = channel::<Result<(), HostError>>();
        let thread = std::thread::Builder::new()
            .name("passt-netns".into())
            .spawn(move || {
                // SAFETY: plain syscall on a descriptor this thread owns.
                let joined = cvt(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) });
                drop(fd);
                let ok = joined.is_ok();
                if ready_tx.send(joined.map(|_| ())).is_err() || !ok {
                    return;
                }
                while let Ok((af, ty, proto)) = req_rx.recv() {
                    // SAFETY: plain syscall; the result is checked.
                    let r = cvt(unsafe { libc::socket(af, ty | libc::SOCK_CLOEXEC, proto) })
                        // SAFETY: a fresh descriptor, owned by no one else.
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
                    if rep_tx.send(r).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| e.raw_os_error().map_or(HostError::NoResources, map_errno))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(NsWorker {
                requests: Some(req_tx),
                replies: rep_rx,
                thread: Some(thread),
                pid: std::process::id(),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(HostError::Other(0))
            }
        }
    }

    /// `socket(af, ty | SOCK_CLOEXEC, proto)` in the worker's namespace.
    pub fn socket(
        &self,
        af: libc::c_int,
        ty: libc::c_int,
        proto: libc::c_int,
    ) -> Result<OwnedFd, HostError> {
        if !self.alive_here() {
            return Err(HostError::Other(0));
        }
        let tx = self.requests.as_ref().ok_or(HostError::Other(0))?;
        tx.send((af, ty, proto)).map_err(|_| HostError::Other(0))?;
        self.replies.recv().map_err(|_| HostError::Other(0))?
    }

    /// Whether the thread exists in this process (it does not in a child
    /// forked after it started).
    pub fn alive_here(&self) -> bool {
        self.pid == std::process::id()
    }
}

impl Drop for NsWorker {
    fn drop(&mut self) {
        if !self.alive_here() {
            // A forked child's copy: there is no thread to join, and the
            // channels' state may be mid-operation; leave both alone.
            std::mem::forget(self.thread.take());
            std::mem::forget(self.requests.take());
            return;
        }
        // Closing the request channel ends the thread's loop.
        drop(self.requests.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_in_its_own_namespace_makes_sockets() {
        let w = NsWorker::start(&NetNs::current().expect("own namespace")).expect("joined");
        assert!(w.alive_here());
        let fd = w
            .socket(libc::AF_INET, libc::SOCK_STREAM, 0)
            .expect("socket");
        assert!(fd.as_raw_fd() >= 0);
    }

    #[test]
    fn a_forked_child_gets_an_error_from_the_parents_worker_instead_of_waiting() {
        let w = NsWorker::start(&NetNs::current().expect("own namespace")).expect("joined");
        // SAFETY: the child only compares its pid, takes the error path
        // (no channel, lock or allocation touched) and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let refused = w.socket(libc::AF_INET, libc::SOCK_STREAM, 0).is_err();
            let code = if !w.alive_here() && refused { 0 } else { 1 };
            drop(w);
            // SAFETY: ends the child without running the parent's handlers.
            unsafe { libc::_exit(code) };
        }
        // A child that waits for the parent's thread never ends: give it
        // five seconds, then kill it and fail.
        let mut status = 0;
        let mut done = false;
        for _ in 0..500 {
            // SAFETY: polls our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            assert!(r >= 0, "waitpid");
            if r == pid {
                done = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if !done {
            // SAFETY: our own child, then reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
        }
        assert!(done, "the forked child hung on the parent's worker");
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert!(w.socket(libc::AF_INET, libc::SOCK_DGRAM, 0).is_ok());
    }
}
