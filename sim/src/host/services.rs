//! Built-in remote services: echo, sink, source, an HTTP-ish server, and
//! scripted peers (a list of steps; pcap replay builds on these).
//!
//! Each runs as a [`StreamApp`] per connection. They are written as
//! nonblocking programs: read what is there, write what fits, and wait to
//! be polled again. Observations (byte counts, script outcome) go to shared
//! handles ([`SinkStats`], [`PeerScriptReport`]) the test keeps.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use passt_engine::HostError;

use super::remote::{AppConn, AppStatus, RemoteTcpState, StreamApp};

/// The byte at position `i` of generated streams: byte `i % 8` of a
/// 64-bit mix (SplitMix64's finaliser) of `i / 8`. Not periodic, so a
/// stream shifted by any distance (a lost, repeated or misplaced range of
/// bytes) never lines up with itself again: a short pattern (say period
/// 251) would miss a shift by a multiple of its period.
#[inline]
pub fn pattern_byte(i: u64) -> u8 {
    (pattern_word(i / 8) >> ((i % 8) * 8)) as u8
}

/// Bytes `8w .. 8w + 8` of the stream, little-endian: SplitMix64's
/// finaliser of `w`.
#[inline]
fn pattern_word(w: u64) -> u64 {
    let mut z = w.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buf` with the stream bytes at positions `offset..`, i.e.
/// `buf[k] = pattern_byte(offset + k)`, a word at a time (bulk scenarios
/// generate gigabytes of it).
pub fn fill_pattern(buf: &mut [u8], offset: u64) {
    let head = (offset.wrapping_neg() % 8) as usize;
    let head = head.min(buf.len());
    let (first, rest) = buf.split_at_mut(head);
    for (k, b) in first.iter_mut().enumerate() {
        *b = pattern_byte(offset + k as u64);
    }
    let base = offset + head as u64;
    let whole = rest.len() / 8 * 8;
    let mut words = rest.chunks_exact_mut(8);
    for (k, w) in (&mut words).enumerate() {
        w.copy_from_slice(&pattern_word(base / 8 + k as u64).to_le_bytes());
    }
    let tail = words.into_remainder();
    let tail_at = base + whole as u64;
    for (k, b) in tail.iter_mut().enumerate() {
        *b = pattern_byte(tail_at + k as u64);
    }
}

/// How many bytes of `buf` differ from the stream bytes at positions
/// `offset..` (`pattern_byte(offset + k)`); compares a word at a time.
pub fn pattern_mismatches(buf: &[u8], offset: u64) -> usize {
    let head = ((offset.wrapping_neg() % 8) as usize).min(buf.len());
    let (first, rest) = buf.split_at(head);
    let mut bad = first
        .iter()
        .enumerate()
        .filter(|(k, b)| **b != pattern_byte(offset + *k as u64))
        .count();
    let base = offset + head as u64;
    let words = rest.chunks_exact(8);
    let tail = words.remainder();
    for (k, w) in words.enumerate() {
        let want = pattern_word(base / 8 + k as u64).to_le_bytes();
        if w != want {
            bad += w.iter().zip(want).filter(|(a, b)| **a != *b).count();
        }
    }
    let tail_at = base + (rest.len() - tail.len()) as u64;
    bad += tail
        .iter()
        .enumerate()
        .filter(|(k, b)| **b != pattern_byte(tail_at + *k as u64))
        .count();
    bad
}

/// Counters a [`RemoteService::Sink`] updates.
#[derive(Clone, Debug, Default)]
pub struct SinkStats {
    bytes: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    eofs: Arc<AtomicU64>,
    resets: Arc<AtomicU64>,
    corrupt: Arc<AtomicU64>,
}

impl SinkStats {
    /// Fresh counters.
    pub fn new() -> Self {
        Self::default()
    }
    /// Bytes received over all connections.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// Connections accepted.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
    /// Connections that ended with the peer's FIN.
    pub fn eofs(&self) -> u64 {
        self.eofs.load(Ordering::Relaxed)
    }
    /// Connections whose read failed (reset by the peer).
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }
    /// Bytes that differed from [`pattern_byte`] at their stream offset
    /// (meaningful when the sender sends the pattern, as the guest's
    /// workloads do).
    pub fn corrupt(&self) -> u64 {
        self.corrupt.load(Ordering::Relaxed)
    }
}

/// Changes to how a [`RemoteService`] treats its connections
/// ([`RemoteService::WithOptions`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceOptions {
    /// Send our FIN as soon as the connection is accepted (a half-close,
    /// RFC 9293 §3.6), then run the service (which must not write: a
    /// sink).
    pub fin_first: bool,
    /// Abort with a RST (`SO_LINGER {1, 0}` + `close`) once the service
    /// has read plus written this many bytes (checked after every poll of
    /// the service, so it may overshoot by one read or write).
    pub abort_after: Option<u64>,
}

/// A service run on every connection accepted at a remote listener.
#[derive(Clone)]
pub enum RemoteService {
    /// Sends back everything it reads; closes after the peer's FIN.
    Echo,
    /// Reads and discards, counting; optionally at most `rate` bytes per
    /// second (a slow reader, whose window fills the sender's buffer).
    Sink {
        /// Counters.
        stats: SinkStats,
        /// Read rate limit in bytes per second (`None`: as fast as data
        /// comes).
        rate: Option<u64>,
    },
    /// Sends `bytes` bytes of [`pattern_byte`] then closes.
    Source {
        /// Bytes to send.
        bytes: u64,
    },
    /// Reads a request up to `\r\n\r\n`, answers `200 OK` with a body of
    /// `body_len` pattern bytes, closes.
    Http {
        /// Body size.
        body_len: usize,
    },
    /// Runs a script on every connection.
    Scripted(PeerScript),
    /// A service with changed manners (see [`ServiceOptions`]).
    WithOptions(Box<RemoteService>, ServiceOptions),
    /// Any other program.
    Custom(Arc<dyn Fn(SocketAddr, SocketAddr) -> Box<dyn StreamApp> + Send + Sync>),
}

impl std::fmt::Debug for RemoteService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteService::Echo => write!(f, "Echo"),
            RemoteService::Sink { rate, .. } => write!(f, "Sink {{ rate: {rate:?} }}"),
            RemoteService::Source { bytes } => write!(f, "Source {{ bytes: {bytes} }}"),
            RemoteService::Http { body_len } => write!(f, "Http {{ body_len: {body_len} }}"),
            RemoteService::Scripted(s) => write!(f, "Scripted({} steps)", s.steps.len()),
            RemoteService::WithOptions(inner, o) => write!(f, "{inner:?} with {o:?}"),
            RemoteService::Custom(_) => write!(f, "Custom"),
        }
    }
}

impl RemoteService {
    /// A fresh instance for one connection from `peer` accepted at `local`.
    pub fn spawn(&self, peer: SocketAddr, local: SocketAddr) -> Box<dyn StreamApp> {
        match self {
            RemoteService::Echo => Box::new(Echo::default()),
            RemoteService::Sink { stats, rate } => {
                stats.connections.fetch_add(1, Ordering::Relaxed);
                Box::new(Sink {
                    stats: stats.clone(),
                    rate: *rate,
                    budget: 0,
                    credit: 0,
                    last: None,
                    offset: 0,
                    wake_at: None,
                    buf: Vec::new(),
                })
            }
            RemoteService::Source { bytes } => Box::new(Source {
                total: *bytes,
                sent: 0,
                buf: Vec::new(),
            }),
            RemoteService::Http { body_len } => Box::new(Http {
                body_len: *body_len,
                request: Vec::new(),
                response: None,
                sent: 0,
            }),
            RemoteService::Scripted(s) => s.clone().into_app(),
            RemoteService::WithOptions(inner, options) => Box::new(WithOptions {
                inner: inner.spawn(peer, local),
                options: *options,
                fin_sent: false,
            }),
            RemoteService::Custom(f) => f(peer, local),
        }
    }
}

struct WithOptions {
    inner: Box<dyn StreamApp>,
    options: ServiceOptions,
    fin_sent: bool,
}

impl WithOptions {
    fn over_limit(&self, c: &AppConn<'_>) -> bool {
        self.options
            .abort_after
            .is_some_and(|n| c.bytes_read() + c.bytes_written() >= n)
    }
}

impl StreamApp for WithOptions {
    fn poll(&mut self, c: &mut AppConn<'_>) -> AppStatus {
        if self.options.fin_first && !self.fin_sent && c.state() == RemoteTcpState::Connected {
            self.fin_sent = true;
            let _ = c.shutdown_write();
        }
        if self.over_limit(c) {
            c.reset();
            return AppStatus::Done;
        }
        let status = self.inner.poll(c);
        if status == AppStatus::Continue && self.over_limit(c) {
            c.reset();
            return AppStatus::Done;
        }
        status
    }
}

const CHUNK: usize = 64 * 1024;

#[derive(Default)]
struct Echo {
    pending: Vec<u8>,
    eof: bool,
    /// Read buffer, reused across polls (a poll runs after every segment).
    buf: Vec<u8>,
}

impl StreamApp for Echo {
    fn poll(&mut self, c: &mut AppConn<'_>) -> AppStatus {
        let mut buf = core::mem::take(&mut self.buf);
        buf.resize(CHUNK, 0);
        let status = self.poll_with(c, &mut buf);
        self.buf = buf;
        status
    }
}

impl Echo {
    fn poll_with(&mut self, c: &mut AppConn<'_>, buf: &mut [u8]) -> AppStatus {
        for _ in 0..1024 {
            if !self.pending.is_empty() {
                match c.write(&self.pending) {
                    Ok(n) => {
                        self.pending.drain(..n);
                    }
                    Err(HostError::WouldBlock) => return AppStatus::Continue,
                    Err(_) => {
                        c.close();
                        return AppStatus::Done;
                    }
                }
                if !self.pending.is_empty() {
                    return AppStatus::Continue;
                }
            }
            if self.eof {
                c.close();
                return AppStatus::Done;
            }
            // Read no more than we can send: back-pressure reaches the
            // sender through our window.
            let room = c.send_space().min(CHUNK);
            if room == 0 {
                return AppStatus::Continue;
            }
            match c.read(&mut buf[..room]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(HostError::WouldBlock) => return AppStatus::Continue,
                Err(_) => {
                    c.close();
                    return AppStatus::Done;
                }
            }
        }
        AppStatus::Continue
    }
}

struct Sink {
    stats: SinkStats,
    rate: Option<u64>,
    budget: u64,
    credit: u128,
    last: Option<passt_engine::Instant>,
    /// Stream offset of the next byte read.
    offset: u64,
    /// A wake-up already scheduled (events cannot be cancelled: one
    /// more per poll would pile up, one per segment received).
    wake_at: Option<passt_engine::Instant>,
    /// Read buffer, reused across polls (a poll runs after every segment).
    buf: Vec<u8>,
}

/// How often a rate-limited sink wakes up.
const SINK_TICK: Duration = Duration::from_millis(10);

impl StreamApp for Sink {
    fn poll(&mut self, c: &mut AppConn<'_>) -> AppStatus {
        let mut buf = core::mem::take(&mut self.buf);
        buf.resize(CHUNK, 0);
        let status = self.poll_with(c, &mut buf);
        self.buf = buf;
        status
    }
}

impl Sink {
    fn poll_with(&mut self, c: &mut AppConn<'_>, buf: &mut [u8]) -> AppStatus {
        if let Some(rate) = self.rate {
            // Credit rate × elapsed, keeping the sub-byte remainder so
            // frequent polls do not starve a slow reader.
            let now = c.now();
            let elapsed = now - self.last.unwrap_or(now);
            self.last = Some(now);
            self.credit += u128::from(rate) * elapsed.as_nanos();
            let whole = self.credit / 1_000_000_000;
            self.credit %= 1_000_000_000;
            self.budget = self
                .budget
                .saturating_add(u64::try_from(whole).unwrap_or(u64::MAX));
        }
        loop {
            let want = match self.rate {
                Some(_) => (self.budget.min(CHUNK as u64)) as usize,
                None => CHUNK,
            };
            if want == 0 {
                let now = c.now();
                let pending = self.wake_at.is_some_and(|t| t > now);
                if !pending
                    && (c.available() > 0 || !matches!(c.state(), RemoteTcpState::Closed(_)))
                {
                    self.wake_at = Some(now + SINK_TICK);
                    c.wake_after(SINK_TICK);
                }
                return AppStatus::Continue;
            }
            match c.read(&mut buf[..want]) {
                Ok(0) => {
                    self.stats.eofs.fetch_add(1, Ordering::Relaxed);
                    c.close();
                    return AppStatus::Done;
                }
                Ok(n) => {
                    self.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    let bad = pattern_mismatches(&buf[..n], self.offset);
                    self.stats.corrupt.fetch_add(bad as u64, Ordering::Relaxed);
                    self.offset += n as u64;
                    if self.rate.is_some() {
                        self.budget -= n as u64;
                    }
                }
                Err(HostError::WouldBlock) => return AppStatus::Continue,
                Err(_) => {
                    self.stats.resets.fetch_add(1, Ordering::Relaxed);
                    c.close();
                    return AppStatus::Done;
                }
            }
        }
    }
}

struct Source {
    total: u64,
    sent: u64,
    /// Reused across polls (a poll runs after every ACK).
    buf: Vec<u8>,
}

impl StreamApp for Source {
    fn poll(&mut self, c: &mut AppConn<'_>) -> AppStatus {
        if matches!(c.state(), RemoteTcpState::Closed(_)) {
            c.close();
            return AppStatus::Done;
        }
        let buf = &mut self.buf;
        buf.resize(CHUNK, 0);
        while self.sent < self.total {
            // Generate only what the send buffer takes: the app runs after
            // every ACK, which typically frees one segment's worth. At
            // least one byte, so a full buffer or a dead socket answers
            // exactly as a larger write would.
            let n = ((self.total - self.sent) as usize)
                .min(CHUNK)
                .min(c.send_space().max(1));
            fill_pattern(&mut buf[..n], self.sent);
            match c.write(&buf[..n]) {
                Ok(m) => self.sent += m as u64,
                Err(HostError::WouldBlock) => return AppStatus::Continue,
                Err(_) => {
                    c.close();
                    return AppStatus::Done;
                }
            }
        }
        // Discard whatever the peer sends, so closing is not a RST.
        let mut sink = [0u8; 4096];
        while let Ok(n) = c.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
        c.close();
        AppStatus::Done
    }
}

/// Largest request head the HTTP service accepts.
const HTTP_MAX_REQUEST: usize = 16 * 1024;

struct Http {
    body_len: usize,
    request: Vec<u8>,
    response: Option<Vec<u8>>,
    sent: usize,
}

impl StreamApp for Http {
    fn poll(&mut self, c: &mut AppConn<'_>) -> AppStatus {
        let mut buf = [0u8; 4096];
        while self.response.is_none() {
            match c.read(&mut buf) {
                Ok(0) => {
                    c.close();
                    return AppStatus::Done;
                }
                Ok(n) => {
                    self.request.extend_from_slice(&buf[..n]);
                    if self.request.windows(4).any(|w| w == b"\r\n\r\n") {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            self.body_len
                        )
                        .into_bytes();
                        r.extend((0..self.body_len as u64).map(pattern_byte));
                        self.response = Some(r);
                    } else if self.request.len() > HTTP_MAX_REQUEST {
                        c.reset();
                        return AppStatus::Done;
                    }
                }
                Err(HostError::WouldBlock) => return AppStatus::Continue,
                Err(_) => {
                    c.close();
                    return AppStatus::Done;
                }
            }
        }
        let Some(resp) = &self.response else {
            return AppStatus::Continue;
        };
        while self.sent < resp.len() {
            match c.write(&resp[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(HostError::WouldBlock) => return AppStatus::Continue,
                Err(_) => {
                    c.close();
                    return AppStatus::Done;
                }
            }
        }
        // Drain anything after the request head so the close is graceful.
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        c.close();
        AppStatus::Done
    }
}

/// One step of a scripted peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerStep {
    /// Writes these bytes (waiting for send space as needed).
    Send(Vec<u8>),
    /// Reads exactly these bytes; anything else fails the script.
    Expect(Vec<u8>),
    /// Reads until end of stream; data before it fails the script.
    ExpectEof,
    /// Waits, doing nothing (virtual time).
    Wait(Duration),
    /// Waits until this virtual time (pacing a replayed conversation by
    /// its recorded times).
    Until(passt_engine::Instant),
    /// Sends our FIN.
    ShutdownWrite,
    /// Closes (gracefully, or RST if unread data remains) and ends.
    Close,
    /// Aborts with a RST and ends.
    Reset,
}

/// Where a script stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerScriptStatus {
    /// Not started (no connection yet).
    Pending,
    /// Running at this step.
    Running(usize),
    /// Every step done.
    Passed,
    /// Stopped at `step` for `reason`.
    Failed {
        /// Index of the failing step.
        step: usize,
        /// What went wrong.
        reason: String,
    },
}

#[derive(Debug)]
struct PeerScriptLog {
    status: PeerScriptStatus,
    received: Vec<u8>,
    runs: u32,
}

/// The outcome of a script's runs, shared with the test.
#[derive(Clone, Debug)]
pub struct PeerScriptReport(Arc<Mutex<PeerScriptLog>>);

impl PeerScriptReport {
    fn with<R>(&self, f: impl FnOnce(&mut PeerScriptLog) -> R) -> R {
        match self.0.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
    /// Status of the latest run.
    pub fn status(&self) -> PeerScriptStatus {
        self.with(|l| l.status.clone())
    }
    /// Every byte the script read (all runs).
    pub fn received(&self) -> Vec<u8> {
        self.with(|l| l.received.clone())
    }
    /// How many connections ran the script.
    pub fn runs(&self) -> u32 {
        self.with(|l| l.runs)
    }
}

/// A scripted peer: steps run in order on one connection.
#[derive(Clone, Debug)]
pub struct PeerScript {
    steps: Vec<PeerStep>,
    /// How long an `Expect`/`ExpectEof` may wait.
    expect_timeout: Duration,
    /// Whether every poll first reads whatever arrived (see
    /// [`PeerScript::draining`]).
    drain: bool,
    report: PeerScriptReport,
}

impl PeerScript {
    /// A script of `steps`; expectations time out after 10 s virtual.
    pub fn new(steps: Vec<PeerStep>) -> Self {
        PeerScript {
            steps,
            expect_timeout: Duration::from_secs(10),
            drain: false,
            report: PeerScriptReport(Arc::new(Mutex::new(PeerScriptLog {
                status: PeerScriptStatus::Pending,
                received: Vec::new(),
                runs: 0,
            }))),
        }
    }

    /// Changes the expectation timeout.
    pub fn with_expect_timeout(mut self, d: Duration) -> Self {
        self.expect_timeout = d;
        self
    }

    /// A peer that reads (and records) whatever arrives at every step, as
    /// an application reading all the time would; `ExpectEof` then waits
    /// for the end of stream without judging the data. Scripts with
    /// `Expect` steps must not drain.
    pub fn draining(mut self) -> Self {
        self.drain = true;
        self
    }

    /// The shared report.
    pub fn report(&self) -> PeerScriptReport {
        self.report.clone()
    }

    /// The program running this script on one connection.
    pub fn into_app(self) -> Box<dyn StreamApp> {
        self.report.with(|l| {
            l.runs += 1;
            l.status = PeerScriptStatus::Pending;
        });
        Box::new(PeerScriptApp {
            script: self,
            step: 0,
            progress: 0,
            got: Vec::new(),
            deadline: None,
            eof: false,
        })
    }
}

struct PeerScriptApp {
    script: PeerScript,
    step: usize,
    /// Bytes of the current Send written / Expect matched.
    progress: usize,
    got: Vec<u8>,
    deadline: Option<passt_engine::Instant>,
    /// Draining saw the end of stream.
    eof: bool,
}

impl PeerScriptApp {
    /// Reads everything there (draining scripts).
    fn drain(&mut self, c: &mut AppConn<'_>, buf: &mut [u8]) {
        while !self.eof {
            match c.read(buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self
                    .script
                    .report
                    .with(|l| l.received.extend_from_slice(&buf[..n])),
                Err(_) => break,
            }
        }
    }

    fn fail(&mut self, c: &mut AppConn<'_>, reason: String) -> AppStatus {
        let step = self.step;
        self.script
            .report
            .with(|l| l.status = PeerScriptStatus::Failed { step, reason });
        c.reset();
        AppStatus::Done
    }

    fn next(&mut self) {
        self.step += 1;
        self.progress = 0;
        self.got.clear();
        self.deadline = None;
        let step = self.step;
        self.script
            .report
            .with(|l| l.status = PeerScriptStatus::Running(step));
    }

    fn arm(&mut self, c: &mut AppConn<'_>, d: Duration) {
        if self.deadline.is_none() {
            let at = c.now() + d;
            self.deadline = Some(at);
            c.wake_at(at);
        }
    }

    fn timed_out(&self, c: &AppConn<'_>) -> bool {
        self.deadline.is_some_and(|d| c.now() >= d)
    }
}

impl StreamApp for PeerScriptApp {
    fn poll(&mut self, c: &mut AppConn<'_>) -> AppStatus {
        match c.state() {
            RemoteTcpState::Connecting => return AppStatus::Continue,
            RemoteTcpState::Closed(e) if self.step == 0 && self.progress == 0 => {
                let reason = format!("connection failed: {e:?}");
                return self.fail(c, reason);
            }
            _ => {}
        }
        if self.step == 0 && self.progress == 0 {
            self.script
                .report
                .with(|l| l.status = PeerScriptStatus::Running(0));
        }
        let mut buf = [0u8; 4096];
        for _ in 0..100_000 {
            if self.script.drain {
                self.drain(c, &mut buf);
            }
            let Some(step) = self.script.steps.get(self.step).cloned() else {
                self.script
                    .report
                    .with(|l| l.status = PeerScriptStatus::Passed);
                c.close();
                return AppStatus::Done;
            };
            match step {
                PeerStep::Send(data) => {
                    while self.progress < data.len() {
                        match c.write(&data[self.progress..]) {
                            Ok(n) => self.progress += n,
                            Err(HostError::WouldBlock) => return AppStatus::Continue,
                            Err(e) => return self.fail(c, format!("send: {e:?}")),
                        }
                    }
                    self.next();
                }
                PeerStep::Expect(want) => {
                    self.arm(c, self.script.expect_timeout);
                    while self.got.len() < want.len() {
                        let room = (want.len() - self.got.len()).min(buf.len());
                        match c.read(&mut buf[..room]) {
                            Ok(0) => {
                                let reason = format!("EOF after {} bytes", self.got.len());
                                return self.fail(c, reason);
                            }
                            Ok(n) => {
                                self.got.extend_from_slice(&buf[..n]);
                                self.script
                                    .report
                                    .with(|l| l.received.extend_from_slice(&buf[..n]));
                            }
                            Err(HostError::WouldBlock) => {
                                if self.timed_out(c) {
                                    return self.fail(c, "expect timed out".into());
                                }
                                return AppStatus::Continue;
                            }
                            Err(e) => return self.fail(c, format!("read: {e:?}")),
                        }
                    }
                    if self.got != want {
                        return self.fail(c, "unexpected bytes".into());
                    }
                    self.next();
                }
                PeerStep::ExpectEof if self.script.drain => {
                    self.arm(c, self.script.expect_timeout);
                    if self.eof {
                        self.next();
                    } else if self.timed_out(c) {
                        return self.fail(c, "EOF timed out".into());
                    } else {
                        return AppStatus::Continue;
                    }
                }
                PeerStep::ExpectEof => {
                    self.arm(c, self.script.expect_timeout);
                    match c.read(&mut buf) {
                        Ok(0) => self.next(),
                        Ok(n) => return self.fail(c, format!("{n} bytes instead of EOF")),
                        Err(HostError::WouldBlock) => {
                            if self.timed_out(c) {
                                return self.fail(c, "EOF timed out".into());
                            }
                            return AppStatus::Continue;
                        }
                        Err(e) => return self.fail(c, format!("read: {e:?}")),
                    }
                }
                PeerStep::Wait(d) => {
                    if self.deadline.is_none() {
                        self.arm(c, d);
                        return AppStatus::Continue;
                    }
                    if !self.timed_out(c) {
                        return AppStatus::Continue;
                    }
                    self.next();
                }
                PeerStep::Until(at) => {
                    if c.now() < at {
                        if self.deadline.is_none() {
                            self.deadline = Some(at);
                            c.wake_at(at);
                        }
                        return AppStatus::Continue;
                    }
                    self.next();
                }
                PeerStep::ShutdownWrite => {
                    if let Err(e) = c.shutdown_write() {
                        return self.fail(c, format!("shutdown: {e:?}"));
                    }
                    self.next();
                }
                PeerStep::Close => {
                    self.next();
                    self.script
                        .report
                        .with(|l| l.status = PeerScriptStatus::Passed);
                    c.close();
                    return AppStatus::Done;
                }
                PeerStep::Reset => {
                    self.next();
                    self.script
                        .report
                        .with(|l| l.status = PeerScriptStatus::Passed);
                    c.reset();
                    return AppStatus::Done;
                }
            }
        }
        AppStatus::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_pattern_matches_pattern_byte_at_any_offset() {
        for offset in [0u64, 1, 7, 8, 9, 250, 251, 252, 1000, 1 << 40] {
            for len in [0usize, 1, 7, 8, 9, 250, 251, 252, 1500, 70_000] {
                let mut buf = vec![0xAAu8; len];
                fill_pattern(&mut buf, offset);
                let want: Vec<u8> = (0..len as u64).map(|k| pattern_byte(offset + k)).collect();
                assert_eq!(buf, want, "offset {offset} len {len}");
                assert_eq!(pattern_mismatches(&buf, offset), 0);
            }
        }
    }

    #[test]
    fn pattern_mismatches_counts_each_wrong_byte() {
        let mut buf = vec![0u8; 1000];
        fill_pattern(&mut buf, 77);
        buf[0] ^= 1;
        buf[300] ^= 0xff;
        buf[999] = buf[999].wrapping_add(1);
        assert_eq!(pattern_mismatches(&buf, 77), 3);
        // The right bytes at the wrong offset mostly differ.
        assert!(pattern_mismatches(&buf, 78) > 900);
    }

    #[test]
    fn no_shift_of_the_stream_lines_up_with_itself() {
        let mut buf = vec![0u8; 4096];
        fill_pattern(&mut buf, 1 << 20);
        for shift in [1u64, 8, 251, 502, 1460, 4096, 65_536, 1 << 20] {
            let bad = pattern_mismatches(&buf, (1 << 20) + shift);
            assert!(bad > 4000, "shift {shift}: only {bad} of 4096 bytes differ");
        }
    }
}
