//! Inbound TCP clients: remote peers that connect to a forwarded host port
//! (and through the engine to a server in the guest), send a pattern,
//! read back what comes, check it, and close.
//!
//! # What this module owns
//!
//! [`InboundClientSpec`] (who connects where, when, bytes each way) and
//! [`InboundClient`], the [`StreamApp`] that runs one such connection on
//! the simulated host's remote side, reporting into a shared
//! [`InboundLog`] as a [`WorkloadReport`] (the same shape the guest's
//! workloads report in, so scenario reports and pass criteria treat both
//! alike).
//!
//! One connection: connect; write `send` bytes of
//! [`pattern_byte`](crate::host::services::pattern_byte); then our FIN (RFC 9293 §3.6 half-close: the server may
//! still answer); read until the server's FIN, checking every byte against
//! the pattern; the connection succeeded if exactly `expect` bytes came
//! back and none was wrong. A reset, a refused connect or a read error is
//! the connection's error.
//!
//! # What it must never do
//!
//! Read the wall clock or block: it runs inside the simulated host's event
//! loop, polled when its connection changes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use passt_engine::{HostError, Instant};

use crate::guest::WorkloadReport;
use crate::host::services::{fill_pattern, pattern_mismatches};
use crate::host::{AppConn, AppStatus, RemoteTcpState, StreamApp};

/// One inbound connection to open (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundClientSpec {
    /// The remote address connecting (port 0: ephemeral).
    pub from: SocketAddr,
    /// The host's forwarded address.
    pub to: SocketAddr,
    /// When to connect, after the guest is configured (scripted guests:
    /// after time zero).
    pub start: Duration,
    /// Bytes to send before our FIN.
    pub send: u64,
    /// Bytes expected back before the server's FIN.
    pub expect: u64,
    /// The connection fails if not finished this long after it started.
    pub timeout: Duration,
}

impl InboundClientSpec {
    /// A short description for reports.
    pub fn describe(&self) -> String {
        format!(
            "inbound {} -> {} send {} B expect {} B",
            self.from.ip(),
            self.to,
            self.send,
            self.expect
        )
    }
}

/// The shared report of one [`InboundClient`].
#[derive(Clone, Debug, Default)]
pub struct InboundLog(Arc<Mutex<WorkloadReport>>);

impl InboundLog {
    /// A log named `name`.
    pub fn new(name: String) -> Self {
        InboundLog(Arc::new(Mutex::new(WorkloadReport {
            name,
            ..WorkloadReport::default()
        })))
    }

    /// The report so far.
    pub fn report(&self) -> WorkloadReport {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut WorkloadReport) -> R) -> Option<R> {
        self.0.lock().ok().map(|mut r| f(&mut r))
    }

    /// Records the connect attempt at `now`.
    pub fn started(&self, now: Instant) {
        self.with(|r| r.started = Some(now));
    }

    /// Whether the connection finished (successfully or not).
    pub fn is_finished(&self) -> bool {
        self.with(|r| r.finished.is_some()).unwrap_or(true)
    }

    /// Ends the connection with `error` at `now` unless it already ended.
    pub fn fail(&self, now: Instant, error: String) {
        self.with(|r| {
            if r.finished.is_none() {
                r.finished = Some(now);
                r.error = Some(error);
            }
        });
    }
}

/// Most bytes written or read per call.
const CHUNK: usize = 16 * 1024;

/// The remote program of one inbound connection (see the
/// [module docs](self)).
pub struct InboundClient {
    spec: InboundClientSpec,
    log: InboundLog,
    sent: u64,
    received: u64,
    corrupt: u64,
    fin_sent: bool,
    connected: bool,
    deadline_set: bool,
}

impl InboundClient {
    /// A client for `spec` reporting into `log`.
    pub fn new(spec: InboundClientSpec, log: InboundLog) -> Self {
        InboundClient {
            spec,
            log,
            sent: 0,
            received: 0,
            corrupt: 0,
            fin_sent: false,
            connected: false,
            deadline_set: false,
        }
    }

    fn publish(&self) {
        let (sent, received, corrupt) = (self.sent, self.received, self.corrupt);
        self.log.with(|r| {
            r.bytes_sent = sent;
            r.bytes_received = received;
            r.corrupt = corrupt;
        });
    }

    fn end(&mut self, c: &mut AppConn<'_>, error: Option<String>) -> AppStatus {
        self.publish();
        let now = c.now();
        let done = self.received == self.spec.expect && self.corrupt == 0;
        self.log.with(|r| {
            if r.finished.is_none() {
                r.finished = Some(now);
                r.error = error.or_else(|| {
                    (!done).then(|| {
                        format!(
                            "received {} B, expected {}; {} corrupt",
                            r.bytes_received, self.spec.expect, r.corrupt
                        )
                    })
                });
                if r.error.is_none() {
                    r.connections = 1;
                }
            }
        });
        c.close();
        AppStatus::Done
    }

    fn broken(&self, how: &str, e: HostError) -> String {
        let kind = match e {
            HostError::ConnectionReset => "connection reset",
            HostError::ConnectionRefused => "connection refused",
            HostError::TimedOut => "connection timed out",
            _ => "connection error",
        };
        format!(
            "{kind} ({how}: {e:?}) after {} B sent, {} B received",
            self.sent, self.received
        )
    }
}

impl StreamApp for InboundClient {
    fn poll(&mut self, c: &mut AppConn<'_>) -> AppStatus {
        let now = c.now();
        if self.log.is_finished() {
            // The driver gave up on us (timeout).
            c.reset();
            return AppStatus::Done;
        }
        if !self.deadline_set {
            self.deadline_set = true;
            c.wake_at(now + self.spec.timeout);
        }
        match c.state() {
            RemoteTcpState::Connecting => return AppStatus::Continue,
            RemoteTcpState::Closed(Some(e)) if !self.connected => {
                let msg = self.broken("connect", e);
                return self.end(c, Some(msg));
            }
            _ => self.connected = true,
        }
        let started = self.log.report().started.unwrap_or(now);
        if now >= started + self.spec.timeout {
            let msg = format!(
                "timed out after {:?}: {} B sent, {} B received",
                self.spec.timeout, self.sent, self.received
            );
            return self.end(c, Some(msg));
        }
        let mut buf = vec![0u8; CHUNK];
        // Out: the pattern, as much as fits (generated only up to the free
        // send space; at least one byte, so a full buffer answers as a
        // larger write would).
        while self.sent < self.spec.send {
            let n = ((self.spec.send - self.sent).min(CHUNK as u64) as usize)
                .min(c.send_space().max(1));
            fill_pattern(&mut buf[..n], self.sent);
            match c.write(&buf[..n]) {
                Ok(0) | Err(HostError::WouldBlock) => break,
                Ok(k) => self.sent += k as u64,
                Err(e) => {
                    let msg = self.broken("write", e);
                    return self.end(c, Some(msg));
                }
            }
        }
        if self.sent >= self.spec.send && !self.fin_sent {
            match c.shutdown_write() {
                Ok(()) => self.fin_sent = true,
                Err(e) => {
                    let msg = self.broken("shutdown", e);
                    return self.end(c, Some(msg));
                }
            }
        }
        // In: checked against the pattern, until the server's FIN.
        loop {
            match c.read(&mut buf) {
                Ok(0) => return self.end(c, None),
                Ok(n) => {
                    self.corrupt += pattern_mismatches(&buf[..n], self.received) as u64;
                    self.received += n as u64;
                }
                Err(HostError::WouldBlock) => break,
                Err(e) => {
                    let msg = self.broken("read", e);
                    return self.end(c, Some(msg));
                }
            }
        }
        self.publish();
        AppStatus::Continue
    }
}
