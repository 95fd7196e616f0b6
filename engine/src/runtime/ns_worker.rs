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
        let tx = self.requests.as_ref().ok_or(HostError::Other(0))?;
        tx.send((af, ty, proto)).map_err(|_| HostError::Other(0))?;
        self.replies.recv().map_err(|_| HostError::Other(0))?
    }
}

impl Drop for NsWorker {
    fn drop(&mut self) {
        // Closing the request channel ends the thread's loop.
        drop(self.requests.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
