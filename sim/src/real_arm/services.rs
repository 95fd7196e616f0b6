//! Real remote services for the real arm: threads serving on the host's
//! loopback, standing in for the simulated internet's services.
//!
//! # What this module owns
//!
//! [`RealServices`]: one listener thread per TCP service (`tcp-echo`,
//! `tcp-sink`, `tcp-source`) and one thread per `udp-echo`, each bound to
//! `127.0.0.1` on an ephemeral port, with a thread per accepted
//! connection. They behave as the simulated services of `crate::host` do:
//! the echo reads only what it can send back and closes (FIN) after the
//! peer's FIN once everything is echoed; the sink counts and closes at
//! EOF; the source writes its pattern bytes, then closes. The
//! reset-after-N-bytes host fault is reproduced here: once N bytes have
//! crossed a connection (both directions), the service closes it with
//! unread data in its receive queue, which Linux answers with a RST
//! (RFC 2525 §2.17, "Failure to RST on close with data pending").
//!
//! Every thread polls a shared stop flag at least every
//! [`POLL`]; [`RealServices::stop`] (and `Drop`) sets it and joins them.
//!
//! # What it must never do
//!
//! Bind or connect anything but loopback addresses, block without a
//! timeout, or outlive the run.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::host::services::pattern_byte;

/// Longest a service thread blocks before looking at the stop flag.
pub const POLL: Duration = Duration::from_millis(10);

/// Longest a resetting service waits for unread data to appear.
const RESET_WAIT: Duration = Duration::from_secs(2);

/// What a TCP service does with each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpService {
    /// Sends back everything it reads; closes after the peer's FIN.
    Echo,
    /// Reads and counts; closes at EOF. `rate`: bytes per second.
    Sink {
        /// Read rate limit, bytes per second.
        rate: Option<u64>,
    },
    /// Writes `bytes` pattern bytes, then closes.
    Source {
        /// Bytes to write.
        bytes: u64,
    },
}

/// Counters the service threads update.
#[derive(Debug, Default)]
pub struct ServiceStats {
    /// Datagrams the UDP echoes answered.
    pub udp_echoed: AtomicU64,
    /// Bytes the sinks read.
    pub sink_bytes: AtomicU64,
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections closed with a RST by the reset-after fault.
    pub resets: AtomicU64,
    /// Reset-after faults that could not produce a RST (no unread data
    /// arrived: the connection was closed with a FIN instead).
    pub resets_failed: AtomicU64,
}

/// The running services (see the [module docs](self)).
#[derive(Debug)]
pub struct RealServices {
    stop: Arc<AtomicBool>,
    stats: Arc<ServiceStats>,
    threads: Vec<JoinHandle<()>>,
    reset_after: Option<u64>,
}

impl RealServices {
    /// No services yet; TCP connections are reset after `reset_after`
    /// bytes if set.
    pub fn new(reset_after: Option<u64>) -> Self {
        RealServices {
            stop: Arc::new(AtomicBool::new(false)),
            stats: Arc::new(ServiceStats::default()),
            threads: Vec::new(),
            reset_after,
        }
    }

    /// The counters.
    pub fn stats(&self) -> &ServiceStats {
        &self.stats
    }

    /// Starts a TCP service on `127.0.0.1:0`; returns where it listens.
    pub fn start_tcp(&mut self, service: TcpService) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let at = listener.local_addr()?;
        let stop = self.stop.clone();
        let stats = self.stats.clone();
        let reset_after = self.reset_after;
        self.threads.push(std::thread::spawn(move || {
            accept_loop(listener, service, reset_after, &stop, &stats);
        }));
        Ok(at)
    }

    /// Starts a UDP echo on `127.0.0.1:0`; returns where it listens.
    pub fn start_udp_echo(&mut self) -> std::io::Result<SocketAddr> {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        sock.set_read_timeout(Some(POLL))?;
        let at = sock.local_addr()?;
        let stop = self.stop.clone();
        let stats = self.stats.clone();
        self.threads.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        if sock.send_to(&buf[..n], from).is_ok() {
                            stats.udp_echoed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) if is_timeout(&e) => {}
                    Err(_) => {}
                }
            }
        }));
        Ok(at)
    }

    /// Stops every thread and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for RealServices {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP port on 127.0.0.1 with nothing listening (bound once, then
/// released): connections to it are refused by the kernel.
pub fn closed_tcp_port() -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    l.local_addr()
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn accept_loop(
    listener: TcpListener,
    service: TcpService,
    reset_after: Option<u64>,
    stop: &Arc<AtomicBool>,
    stats: &Arc<ServiceStats>,
) {
    let mut conns = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, _)) => {
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                let stop = stop.clone();
                let stats = stats.clone();
                conns.push(std::thread::spawn(move || {
                    let _ = serve(s, service, reset_after, &stop, &stats);
                }));
            }
            Err(e) if is_timeout(&e) => std::thread::sleep(Duration::from_millis(1)),
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

/// One connection: bytes that crossed it, and the reset fault.
struct Conn<'a> {
    s: TcpStream,
    crossed: u64,
    reset_after: Option<u64>,
    stop: &'a AtomicBool,
    stats: &'a ServiceStats,
}

enum Io {
    Done(usize),
    Again,
    Gone,
}

impl Conn<'_> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn reset_due(&self) -> bool {
        self.reset_after.is_some_and(|n| self.crossed >= n)
    }

    fn read(&mut self, buf: &mut [u8]) -> Io {
        match self.s.read(buf) {
            Ok(n) => {
                self.crossed += n as u64;
                Io::Done(n)
            }
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => Io::Again,
            Err(_) => Io::Gone,
        }
    }

    fn write(&mut self, buf: &[u8]) -> Io {
        match self.s.write(buf) {
            Ok(n) => {
                self.crossed += n as u64;
                Io::Done(n)
            }
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => Io::Again,
            Err(_) => Io::Gone,
        }
    }

    /// Closes with unread data pending, so that the kernel sends a RST
    /// (RFC 2525 §2.17). Waits for data to be there first.
    fn reset(self) {
        let mut probe = [0u8; 1];
        let waited = std::time::Instant::now();
        loop {
            match self.s.peek(&mut probe) {
                Ok(n) if n > 0 => {
                    self.stats.resets.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(_) => break,
                Err(e) if is_timeout(&e) => {}
                Err(_) => break,
            }
            if self.stopped() || waited.elapsed() > RESET_WAIT {
                break;
            }
        }
        self.stats.resets_failed.fetch_add(1, Ordering::Relaxed);
    }
}

fn serve(
    s: TcpStream,
    service: TcpService,
    reset_after: Option<u64>,
    stop: &AtomicBool,
    stats: &ServiceStats,
) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(POLL))?;
    s.set_write_timeout(Some(POLL))?;
    let mut c = Conn {
        s,
        crossed: 0,
        reset_after,
        stop,
        stats,
    };
    let mut buf = vec![0u8; 64 * 1024];
    match service {
        TcpService::Echo => {
            let mut pending: Vec<u8> = Vec::new();
            let mut eof = false;
            loop {
                if c.stopped() {
                    return Ok(());
                }
                if c.reset_due() {
                    c.reset();
                    return Ok(());
                }
                if !pending.is_empty() {
                    match c.write(&pending) {
                        Io::Done(n) => {
                            pending.drain(..n);
                        }
                        Io::Again => {}
                        Io::Gone => return Ok(()),
                    }
                    continue;
                }
                if eof {
                    let _ = c.s.shutdown(Shutdown::Write);
                    return Ok(());
                }
                match c.read(&mut buf) {
                    Io::Done(0) => eof = true,
                    Io::Done(n) => pending.extend_from_slice(&buf[..n]),
                    Io::Again => {}
                    Io::Gone => return Ok(()),
                }
            }
        }
        TcpService::Sink { rate } => {
            let started = std::time::Instant::now();
            let mut read = 0u64;
            loop {
                if c.stopped() {
                    return Ok(());
                }
                if c.reset_due() {
                    c.reset();
                    return Ok(());
                }
                let want = match rate {
                    None => buf.len(),
                    Some(r) => {
                        let allowed =
                            (u128::from(r) * started.elapsed().as_nanos() / 1_000_000_000) as u64;
                        let budget = allowed.saturating_sub(read).min(buf.len() as u64);
                        if budget == 0 {
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                        budget as usize
                    }
                };
                match c.read(&mut buf[..want]) {
                    Io::Done(0) => return Ok(()),
                    Io::Done(n) => {
                        read += n as u64;
                        stats.sink_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Io::Again => {}
                    Io::Gone => return Ok(()),
                }
            }
        }
        TcpService::Source { bytes } => {
            let mut sent = 0u64;
            while sent < bytes {
                if c.stopped() {
                    return Ok(());
                }
                if c.reset_due() {
                    c.reset();
                    return Ok(());
                }
                let n = ((bytes - sent) as usize).min(buf.len());
                for (k, b) in buf[..n].iter_mut().enumerate() {
                    *b = pattern_byte(sent + k as u64);
                }
                match c.write(&buf[..n]) {
                    Io::Done(m) => sent += m as u64,
                    Io::Again => {}
                    Io::Gone => return Ok(()),
                }
            }
            let _ = c.s.shutdown(Shutdown::Write);
            // Let the peer read the FIN before the descriptor goes: wait
            // (bounded) for its own close.
            let waited = std::time::Instant::now();
            while !c.stopped() && waited.elapsed() < Duration::from_secs(5) {
                match c.read(&mut buf) {
                    Io::Done(0) | Io::Gone => break,
                    Io::Done(_) | Io::Again => {}
                }
            }
            Ok(())
        }
    }
}
