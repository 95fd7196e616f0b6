//! The control socket (`-c PATH`): a UNIX stream socket in the event loop
//! on which `pesto` asks for forwarding changes ([`crate::control`] is the
//! protocol, `docs/pesto.md` its description).
//!
//! It owns the listening socket, the few client connections at a time and
//! their buffers and deadlines. A client is untrusted: its messages are
//! bounded ([`MAX_MESSAGE`]), every read and write is nonblocking, at most
//! [`MAX_CLIENTS`] are served at once (others are closed at once), and a
//! client that has not finished within [`CLIENT_TIMEOUT`] is dropped, so
//! no client can stall the loop or grow its memory. It never applies a
//! request itself: it hands requests to the caller, who replies.

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use super::host::RealHost;
use super::transport::stream::{SocketFile, bind_replacing_stale};
use crate::control::{self, Framing, HEADER_LEN, MAX_MESSAGE, RequestOp};
use crate::host_io::{HostError, Interest, Readiness, Token};
use crate::time::Instant;

/// The listening socket's token (in the loop's reserved range).
pub const TOKEN_CONTROL: Token = Token(u64::MAX - 9);
/// Clients served at once.
pub const MAX_CLIENTS: usize = 4;
/// Tokens of the client slots: `TOKEN_CLIENT_FIRST + slot`.
const TOKEN_CLIENT_FIRST: u64 = u64::MAX - 13;
/// How long a client may take from connecting to having read its reply.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reads per readiness report and client (each up to the room left).
const READS_PER_EVENT: usize = 4;

/// What a client's input amounts to so far.
enum Input {
    /// Nothing whole yet.
    Wait,
    /// Gone, or failed.
    Close,
    /// A well-formed request.
    Request(Vec<RequestOp>),
    /// A request refused (its reason).
    Malformed(String),
}

/// A request's fate, as the handler decides it: the lines of an `ok`
/// reply, or an error message.
pub type Outcome = Result<Vec<String>, String>;

#[derive(Debug)]
struct Client {
    stream: UnixStream,
    /// The request so far (at most the prefix and [`MAX_MESSAGE`]).
    input: Vec<u8>,
    /// The reply, once there is one, and how much of it is written.
    output: Option<(Vec<u8>, usize)>,
    deadline: Instant,
}

/// Every token of this server (listener and client slots), for checks
/// against the loop's other reserved tokens.
pub fn tokens() -> impl Iterator<Item = Token> {
    std::iter::once(TOKEN_CONTROL)
        .chain((0..MAX_CLIENTS as u64).map(|i| Token(TOKEN_CLIENT_FIRST + i)))
}

/// Counts, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ControlStats {
    /// Requests answered (either way).
    pub requests: u64,
    /// Requests refused as malformed or too long.
    pub malformed: u64,
    /// Clients closed at once because [`MAX_CLIENTS`] were connected.
    pub refused: u64,
    /// Clients dropped at their deadline.
    pub timed_out: u64,
}

/// The control socket and its clients.
#[derive(Debug)]
pub struct ControlServer {
    listener: UnixListener,
    _file: SocketFile,
    clients: [Option<Client>; MAX_CLIENTS],
    stats: ControlStats,
}

impl ControlServer {
    /// Listens on `path` (a stale socket file there is replaced).
    pub fn bind(path: &Path) -> io::Result<ControlServer> {
        let listener = bind_replacing_stale(path)?;
        Ok(ControlServer {
            listener,
            _file: SocketFile::new(path)?,
            clients: Default::default(),
            stats: ControlStats::default(),
        })
    }

    /// Registers the listening socket in the loop's epoll set.
    pub fn register(&self, host: &mut RealHost) -> Result<(), HostError> {
        host.add_fd(self.listener.as_fd(), TOKEN_CONTROL, Interest::READ)
    }

    /// Whether `token` is one of this server's.
    pub fn owns(token: Token) -> bool {
        token == TOKEN_CONTROL
            || (TOKEN_CLIENT_FIRST..TOKEN_CLIENT_FIRST + MAX_CLIENTS as u64).contains(&token.0)
    }

    /// Counts so far.
    pub fn stats(&self) -> ControlStats {
        self.stats
    }

    /// The earliest client deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.clients.iter().flatten().map(|c| c.deadline).min()
    }

    /// Drops the clients whose deadline passed.
    pub fn on_timer(&mut self, host: &mut RealHost, now: Instant) {
        for slot in 0..MAX_CLIENTS {
            if self.clients[slot]
                .as_ref()
                .is_some_and(|c| c.deadline <= now)
            {
                self.stats.timed_out += 1;
                self.close(host, slot);
            }
        }
    }

    /// Readiness on one of this server's tokens. Returns a client's
    /// complete, well-formed request, which the caller answers with
    /// [`ControlServer::reply`] (malformed ones are answered here).
    pub fn on_event(
        &mut self,
        host: &mut RealHost,
        now: Instant,
        token: Token,
        readiness: Readiness,
    ) -> Option<(usize, Vec<RequestOp>)> {
        if token == TOKEN_CONTROL {
            self.accept(host, now);
            return None;
        }
        let slot = token.0.checked_sub(TOKEN_CLIENT_FIRST)? as usize;
        let c = self.clients.get(slot)?.as_ref()?;
        if c.output.is_some() {
            if !self.write(slot) {
                self.close(host, slot);
            }
            return None;
        }
        if !(readiness.readable || readiness.hangup || readiness.error) {
            return None;
        }
        match self.read(slot) {
            Input::Wait => None,
            Input::Close => {
                self.close(host, slot);
                None
            }
            Input::Request(ops) => Some((slot, ops)),
            Input::Malformed(why) => {
                self.stats.malformed += 1;
                self.reply(host, slot, Err(why));
                None
            }
        }
    }

    /// Sends `outcome` to the client in `slot` (as returned by
    /// [`ControlServer::on_event`]) and closes it once written.
    pub fn reply(&mut self, host: &mut RealHost, slot: usize, outcome: Outcome) {
        let Some(c) = self.clients.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        self.stats.requests += 1;
        c.input = Vec::new();
        c.output = Some((control::encode(&control::format_reply(&outcome)), 0));
        // Anything more the client sends is ignored.
        let _ = c.stream.shutdown(std::net::Shutdown::Read);
        if !self.write(slot) {
            self.close(host, slot);
            return;
        }
        // Wait for room to write the rest.
        if let Some(c) = &self.clients[slot] {
            let tok = Token(TOKEN_CLIENT_FIRST + slot as u64);
            if host
                .modify_fd(c.stream.as_fd(), tok, Interest::WRITE)
                .is_err()
            {
                self.close(host, slot);
            }
        }
    }

    fn accept(&mut self, host: &mut RealHost, now: Instant) {
        for _ in 0..MAX_CLIENTS * 2 {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(_) => return,
            };
            let Some(slot) = self.clients.iter().position(Option::is_none) else {
                // Dropped: the client sees the connection closed.
                self.stats.refused += 1;
                continue;
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let tok = Token(TOKEN_CLIENT_FIRST + slot as u64);
            if host.add_fd(stream.as_fd(), tok, Interest::READ).is_err() {
                continue;
            }
            self.clients[slot] = Some(Client {
                stream,
                input: Vec::new(),
                output: None,
                deadline: now.saturating_add(CLIENT_TIMEOUT),
            });
        }
    }

    /// Reads what the client sent, up to one whole request.
    fn read(&mut self, slot: usize) -> Input {
        let Some(c) = self.clients[slot].as_mut() else {
            return Input::Close;
        };
        let mut buf = [0u8; 4096];
        for _ in 0..READS_PER_EVENT {
            let room = (HEADER_LEN + MAX_MESSAGE - c.input.len()).min(buf.len());
            if room == 0 {
                break;
            }
            match c.stream.read(&mut buf[..room]) {
                Ok(0) => return Input::Close,
                Ok(n) => c.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Input::Close,
            }
            match control::decode(&c.input) {
                Ok(Framing::Incomplete) => continue,
                Ok(Framing::Complete(len)) => {
                    return match control::parse_request(&c.input[HEADER_LEN..HEADER_LEN + len]) {
                        Ok(ops) => Input::Request(ops),
                        Err(e) => Input::Malformed(e.to_string()),
                    };
                }
                Err(e) => return Input::Malformed(e.to_string()),
            }
        }
        Input::Wait
    }

    /// Writes what is left of the reply. Returns whether to keep the
    /// client (`false` once the reply is out, or on an error).
    fn write(&mut self, slot: usize) -> bool {
        let Some(c) = self.clients[slot].as_mut() else {
            return false;
        };
        let Some((out, done)) = c.output.as_mut() else {
            return true;
        };
        while *done < out.len() {
            match c.stream.write(&out[*done..]) {
                Ok(0) => return false,
                Ok(n) => *done += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        false
    }

    fn close(&mut self, host: &mut RealHost, slot: usize) {
        if let Some(c) = self.clients[slot].take() {
            let _ = host.remove_fd(c.stream.as_fd());
        }
    }
}
