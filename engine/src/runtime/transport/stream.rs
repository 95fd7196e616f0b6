//! QEMU's stream socket as a [`GuestTransport`]: a listening UNIX socket
//! for `-netdev stream` (or `-netdev socket,connect=`), or a pre-connected
//! descriptor (`-F`).
//!
//! Behaviour, as upstream passt: one client at a time; while one is
//! connected further connections are accepted and closed at once (logged).
//! A bad length prefix resets the connection and the next client is
//! served. A pre-connected socket serves one guest, then the loop ends.
//!
//! This module owns the socket descriptors and the socket file; the
//! length-prefix codec is [`super::framing`].

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::framing::{FrameReader, FrameWriter, FramingError};
use super::{Clients, Fill, GuestRx, GuestTransport, GuestTx, TOKEN_GUEST, TOKEN_LISTENER};
use crate::host_io::{HostError, Interest};
use crate::runtime::host::RealHost;
use crate::runtime::logging::{log_info, log_warn};
use crate::runtime::process::FileInDir;
use crate::runtime::sys::send_vectored;
use crate::txq::TxQueue;

/// Sockets probed by [`StreamTransport::listen_probe`]: `/tmp/passt_1.socket`
/// to `/tmp/passt_64.socket`, as upstream.
pub const PROBE_SOCKETS: u32 = 64;
/// Reads from the guest per readiness report.
const READS_PER_WAKEUP: usize = 16;
/// Connections accepted per listener readiness report.
const ACCEPTS_PER_WAKEUP: usize = 16;

/// The listening socket's file, removed when dropped (through its
/// directory's descriptor: the path is gone once the process is isolated).
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    entry: FileInDir,
}

impl SocketFile {
    /// The file at `path`, to be removed on drop (its directory is opened
    /// now, while the filesystem is still there).
    pub(crate) fn new(path: &Path) -> io::Result<SocketFile> {
        Ok(SocketFile {
            path: path.to_path_buf(),
            entry: FileInDir::new(path)?,
        })
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = self.entry.remove();
    }
}

/// Receiving half: the socket and the reassembly buffer.
#[derive(Debug)]
struct StreamRx {
    stream: Arc<UnixStream>,
    reader: FrameReader,
}

/// Sending half: the socket and what is left of a torn frame.
#[derive(Debug)]
struct StreamTx {
    stream: Arc<UnixStream>,
    writer: FrameWriter,
}

/// One connected guest.
#[derive(Debug)]
struct Conn {
    rx: StreamRx,
    tx: StreamTx,
}

impl Conn {
    fn new(stream: UnixStream) -> Conn {
        let stream = Arc::new(stream);
        Conn {
            rx: StreamRx {
                stream: Arc::clone(&stream),
                reader: FrameReader::new(),
            },
            tx: StreamTx {
                stream,
                writer: FrameWriter::new(),
            },
        }
    }
}

/// QEMU's stream socket. See the module docs.
#[derive(Debug)]
pub struct StreamTransport {
    listener: Option<(UnixListener, SocketFile)>,
    conn: Option<Conn>,
    one_off: bool,
    clients: Clients,
}

/// A nonblocking listening UNIX socket at `path`. An existing file there
/// that nobody accepts on (a stale socket left by a crash) is replaced; a
/// live listener, or a file that is no socket, is `AddrInUse`.
pub(crate) fn bind_replacing_stale(path: &Path) -> io::Result<UnixListener> {
    let listener = match UnixListener::bind(path) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Err(e);
            }
            let meta = std::fs::symlink_metadata(path)?;
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(e);
            }
            std::fs::remove_file(path)?;
            UnixListener::bind(path)?
        }
        Err(e) => return Err(e),
    };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

impl StreamTransport {
    /// Listens on `path`. An existing file there that nobody accepts on (a
    /// stale socket left by a crash) is replaced; a live listener is
    /// `AddrInUse`.
    pub fn listen(path: &Path) -> io::Result<StreamTransport> {
        let listener = bind_replacing_stale(path)?;
        Ok(StreamTransport {
            listener: Some((listener, SocketFile::new(path)?)),
            conn: None,
            one_off: false,
            clients: Clients::default(),
        })
    }

    /// Listens on the first free `/tmp/passt_N.socket`, N = 1 to 64.
    pub fn listen_probe() -> io::Result<StreamTransport> {
        Self::listen_probe_in(Path::new("/tmp"), "passt")
    }

    /// Like [`StreamTransport::listen_probe`] in another directory and with
    /// another name stem (`DIR/STEM_N.socket`).
    pub fn listen_probe_in(dir: &Path, stem: &str) -> io::Result<StreamTransport> {
        let mut last = io::Error::from(io::ErrorKind::AddrInUse);
        for n in 1..=PROBE_SOCKETS {
            match Self::listen(&dir.join(format!("{stem}_{n}.socket"))) {
                Ok(t) => return Ok(t),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// A pre-connected stream socket: one guest, then the loop ends.
    pub fn connected(stream: UnixStream) -> io::Result<StreamTransport> {
        stream.set_nonblocking(true)?;
        Ok(StreamTransport {
            listener: None,
            conn: Some(Conn::new(stream)),
            one_off: true,
            clients: Clients {
                accepted: 1,
                refused: 0,
            },
        })
    }

    /// Takes ownership of an inherited descriptor (`-F FD`), which must be a
    /// connected stream socket.
    pub fn from_raw_fd(fd: i32) -> io::Result<StreamTransport> {
        // SAFETY: fstat on any integer is harmless; it tells whether it is open.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is writable.
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("descriptor {fd} is not a socket"),
            ));
        }
        // SAFETY: the caller hands us the descriptor; nothing else owns it.
        let stream = unsafe { UnixStream::from_raw_fd(fd) };
        Self::connected(stream)
    }
}

impl GuestTransport for StreamTransport {
    fn register(&mut self, host: &mut RealHost) -> Result<(), HostError> {
        if let Some((listener, _)) = &self.listener {
            host.add_fd(listener.as_fd(), TOKEN_LISTENER, Interest::READ)?;
        }
        if let Some(conn) = &self.conn {
            host.add_fd(conn.rx.stream.as_fd(), TOKEN_GUEST, Interest::READ)?;
        }
        Ok(())
    }

    fn on_listener_ready(&mut self, host: &mut RealHost) -> Result<bool, HostError> {
        let Some((listener, _)) = &self.listener else {
            return Ok(false);
        };
        let mut connected = false;
        for _ in 0..ACCEPTS_PER_WAKEUP {
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log_warn!("accept on the UNIX socket failed: {e}");
                    break;
                }
            };
            if self.conn.is_some() {
                self.clients.refused += 1;
                log_warn!(
                    "another client connected to the UNIX socket: refused (one guest at a time)"
                );
                drop(stream);
                continue;
            }
            if let Err(e) = stream.set_nonblocking(true) {
                log_warn!("guest connection unusable: {e}");
                continue;
            }
            host.add_fd(stream.as_fd(), TOKEN_GUEST, Interest::READ)?;
            self.conn = Some(Conn::new(stream));
            self.clients.accepted += 1;
            connected = true;
            log_info!("accepted connection from guest");
        }
        Ok(connected)
    }

    fn guest_fd(&self) -> Option<BorrowedFd<'_>> {
        self.conn.as_ref().map(|c| c.rx.stream.as_fd())
    }

    fn halves(&mut self) -> Option<(&mut dyn GuestRx, &mut dyn GuestTx)> {
        self.conn
            .as_mut()
            .map(|c| (&mut c.rx as &mut dyn GuestRx, &mut c.tx as &mut dyn GuestTx))
    }

    fn disconnect(&mut self, host: &mut RealHost) {
        if let Some(conn) = self.conn.take() {
            let _ = host.remove_fd(conn.rx.stream.as_fd());
        }
    }

    fn awaits_next_guest(&self) -> bool {
        self.listener.is_some() && !self.one_off
    }

    fn set_one_off(&mut self, one_off: bool) {
        self.one_off = one_off || self.listener.is_none();
    }

    fn clients(&self) -> Clients {
        self.clients
    }

    fn socket_path(&self) -> Option<&Path> {
        self.listener.as_ref().map(|(_, f)| f.path.as_path())
    }

    fn shut_down(&mut self, host: &mut RealHost) {
        if let Some((listener, file)) = self.listener.take() {
            let _ = host.remove_fd(listener.as_fd());
            drop(listener);
            drop(file);
        }
    }
}

impl GuestRx for StreamRx {
    fn fill(&mut self) -> Fill {
        match self.reader.recv_from(self.stream.as_fd()) {
            Ok(0) => Fill::Closed("closed by the guest".into()),
            Ok(_) => Fill::Read,
            Err(HostError::WouldBlock) => Fill::Empty,
            Err(e) => Fill::Closed(format!("read error: {e}")),
        }
    }

    fn peek_frame(&mut self) -> Result<Option<&[u8]>, String> {
        self.reader
            .peek_frame()
            .map_err(|FramingError::BadLength(n)| format!("bad frame length {n}"))
    }

    fn pop_frame(&mut self) {
        self.reader.pop_frame();
    }

    fn reads_per_wakeup(&self) -> usize {
        READS_PER_WAKEUP
    }
}

impl GuestTx for StreamTx {
    fn send(&mut self, frames: &TxQueue) -> Result<usize, String> {
        let fd = self.stream.as_fd();
        let mut taken = 0;
        // Bounded: every round writes a batch or stops.
        for _ in 0..frames.len() / super::framing::WRITE_BATCH + 2 {
            if taken == frames.len() && !self.writer.has_pending() {
                break;
            }
            let offered = (frames.len() - taken).min(super::framing::WRITE_BATCH);
            match self
                .writer
                .write_frames(frames.iter().skip(taken), |iov| send_vectored(fd, iov))
            {
                Ok(n) => {
                    taken += n;
                    if self.writer.has_pending() || n < offered {
                        break;
                    }
                }
                Err(HostError::WouldBlock) => break,
                Err(e) => return Err(format!("write error: {e}")),
            }
        }
        Ok(taken)
    }

    fn has_pending(&self) -> bool {
        self.writer.has_pending()
    }
}
