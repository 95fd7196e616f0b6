//! Host-side peers for guest checks, listening on 127.0.0.1 inside the run's private
//! network namespace (the guest reaches them through passt's gateway mapping).
//!
//! Owns: a bounded TCP echo server and a one-shot HTTP server, each on its own thread
//! with a hard deadline. Must never: listen on anything but loopback, or run past
//! its deadline.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// What the echo server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoStats {
    /// Bytes received (and echoed).
    pub bytes: usize,
    /// FNV-1a 64 of the received bytes.
    pub fnv64: u64,
    /// The peer address as the host saw it (passt's socket).
    pub peer: SocketAddr,
}

/// When the echo server closes its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoClose {
    /// As soon as `expected` bytes were echoed (may cross the client's own FIN).
    AfterExpectedBytes,
    /// Only after the client half-closed (read returned 0), i.e. a classic echo
    /// server; more than `expected` bytes is then an error.
    AfterPeerEof,
}

/// Accepts one connection, echoes what it reads, then closes per [`EchoClose`].
pub struct TcpEchoServer {
    /// The loopback port.
    pub port: u16,
    handle: JoinHandle<Result<EchoStats>>,
}

impl TcpEchoServer {
    /// Binds 127.0.0.1:0 and serves one client until `expected` bytes were echoed,
    /// the client closed, or `deadline` passed.
    pub fn start(expected: usize, deadline: Duration) -> Result<Self> {
        Self::start_with(expected, EchoClose::AfterExpectedBytes, deadline)
    }

    /// As [`TcpEchoServer::start`], choosing when to close.
    pub fn start_with(expected: usize, close: EchoClose, deadline: Duration) -> Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let until = Instant::now() + deadline;
        let handle = std::thread::spawn(move || -> Result<EchoStats> {
            let (mut stream, peer) = accept_until(&listener, until)?;
            let mut hash = 0xcbf2_9ce4_8422_2325u64;
            let mut bytes = 0usize;
            let mut buf = [0u8; 16384];
            loop {
                if close == EchoClose::AfterExpectedBytes && bytes >= expected {
                    break;
                }
                set_remaining_timeout(&stream, until)?;
                let want = match close {
                    EchoClose::AfterExpectedBytes => buf.len().min(expected - bytes),
                    EchoClose::AfterPeerEof => buf.len(),
                };
                let n = match stream.read(&mut buf[..want]) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).context("echo read"),
                };
                for &b in &buf[..n] {
                    hash ^= u64::from(b);
                    hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
                }
                stream.write_all(&buf[..n]).context("echo write")?;
                bytes += n;
                if bytes > expected {
                    bail!("client sent more than the expected {expected} bytes");
                }
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
            Ok(EchoStats {
                bytes,
                fnv64: hash,
                peer,
            })
        });
        Ok(Self { port, handle })
    }

    /// Waits for the server thread.
    pub fn join(self) -> Result<EchoStats> {
        self.handle
            .join()
            .map_err(|_| anyhow!("echo server thread panicked"))?
    }
}

/// Serves one HTTP/1.0 response with `body` to the first client, then stops.
pub struct HttpOnceServer {
    /// The loopback port.
    pub port: u16,
    handle: JoinHandle<Result<String>>,
}

impl HttpOnceServer {
    /// Binds 127.0.0.1:0; the thread returns the request head it received.
    pub fn start(body: Vec<u8>, deadline: Duration) -> Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let until = Instant::now() + deadline;
        let handle = std::thread::spawn(move || -> Result<String> {
            let (mut stream, _) = accept_until(&listener, until)?;
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
                set_remaining_timeout(&stream, until)?;
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).context("http read"),
                }
            }
            let response = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(response.as_bytes())?;
            stream.write_all(&body)?;
            let _ = stream.shutdown(std::net::Shutdown::Write);
            Ok(String::from_utf8_lossy(&head).into_owned())
        });
        Ok(Self { port, handle })
    }

    /// Waits for the server thread; returns the request head.
    pub fn join(self) -> Result<String> {
        self.handle
            .join()
            .map_err(|_| anyhow!("http server thread panicked"))?
    }
}

fn accept_until(listener: &TcpListener, until: Instant) -> Result<(TcpStream, SocketAddr)> {
    listener.set_nonblocking(true)?;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                stream.set_nonblocking(false)?;
                return Ok((stream, peer));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if Instant::now() >= until {
                    bail!("no connection before the deadline");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e).context("accept"),
        }
    }
}

fn set_remaining_timeout(stream: &TcpStream, until: Instant) -> Result<()> {
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        bail!("deadline passed");
    }
    stream.set_read_timeout(Some(left))?;
    stream.set_write_timeout(Some(left))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_server_echoes_and_hashes() {
        let server = TcpEchoServer::start(5, Duration::from_secs(5)).expect("start");
        let mut c = TcpStream::connect((Ipv4Addr::LOCALHOST, server.port)).expect("connect");
        c.write_all(b"hello").expect("write");
        let mut back = Vec::new();
        c.read_to_end(&mut back).expect("read");
        assert_eq!(back, b"hello");
        let stats = server.join().expect("join");
        assert_eq!(stats.bytes, 5);
        assert_eq!(stats.fnv64, 0xa430_d846_80aa_bd0b);
    }

    #[test]
    fn echo_server_gives_up_at_deadline() {
        let server = TcpEchoServer::start(5, Duration::from_millis(100)).expect("start");
        assert!(server.join().is_err());
    }
}
