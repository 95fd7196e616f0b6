//! Host-side peers for guest checks, listening on loopback (127.0.0.1 or ::1) inside
//! the run's private network namespace (the guest reaches them through passt's
//! gateway mapping, or `--dns-forward`).
//!
//! Owns: bounded TCP servers (echo, one-shot HTTP, bulk send, bulk sink, boot
//! counter), an inbound-connection probe (waits for the guest's "ready" connection,
//! then connects to a port passt forwards with `-t`), a TFTP server (RFC 1350) and a
//! DNS responder (RFC 1035) on UDP, each on its own thread with a hard deadline.
//! Must never: listen on anything but loopback, or run past its deadline.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::digest::Sha256;

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
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), expected, close, deadline)
    }

    /// As [`TcpEchoServer::start_with`] on a chosen loopback address (`::1` for IPv6).
    pub fn start_on(
        loopback: IpAddr,
        expected: usize,
        close: EchoClose,
        deadline: Duration,
    ) -> Result<Self> {
        if !loopback.is_loopback() {
            bail!("{loopback} is not a loopback address");
        }
        let listener = TcpListener::bind((loopback, 0))?;
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

/// What a bulk server transferred.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkStats {
    /// Bytes sent (send server) or received (sink server).
    pub bytes: usize,
    /// SHA-256 of those bytes, lowercase hex.
    pub sha256: String,
    /// The peer address as the host saw it.
    pub peer: SocketAddr,
}

/// Sends a fixed payload to the first client, half-closes, and waits for the client's
/// close (a download from the guest's point of view).
pub struct TcpSendServer {
    /// The loopback port.
    pub port: u16,
    handle: JoinHandle<Result<BulkStats>>,
}

impl TcpSendServer {
    /// Binds 127.0.0.1:0 and serves `payload` once.
    pub fn start(payload: Vec<u8>, deadline: Duration) -> Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let until = Instant::now() + deadline;
        let handle = std::thread::spawn(move || -> Result<BulkStats> {
            let (mut stream, peer) = accept_until(&listener, until)?;
            set_remaining_timeout(&stream, until)?;
            stream.write_all(&payload).context("bulk write")?;
            stream.shutdown(std::net::Shutdown::Write)?;
            // Drain until the client closes, so its FIN is seen before we go away.
            let mut buf = [0u8; 4096];
            loop {
                set_remaining_timeout(&stream, until)?;
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).context("draining the client"),
                }
            }
            let mut hash = Sha256::new();
            hash.update(&payload);
            Ok(BulkStats {
                bytes: payload.len(),
                sha256: hash.finish_hex(),
                peer,
            })
        });
        Ok(Self { port, handle })
    }

    /// Waits for the server thread.
    pub fn join(self) -> Result<BulkStats> {
        self.handle
            .join()
            .map_err(|_| anyhow!("send server thread panicked"))?
    }
}

/// Reads everything the first client sends until it half-closes, hashing it, then
/// closes (an upload from the guest's point of view).
pub struct TcpSinkServer {
    /// The loopback port.
    pub port: u16,
    handle: JoinHandle<Result<BulkStats>>,
}

impl TcpSinkServer {
    /// Binds 127.0.0.1:0 and accepts one client.
    pub fn start(deadline: Duration) -> Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let until = Instant::now() + deadline;
        let handle = std::thread::spawn(move || -> Result<BulkStats> {
            let (mut stream, peer) = accept_until(&listener, until)?;
            let mut hash = Sha256::new();
            let mut bytes = 0usize;
            let mut buf = vec![0u8; 65536];
            loop {
                set_remaining_timeout(&stream, until)?;
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        hash.update(&buf[..n]);
                        bytes += n;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).context("sink read"),
                }
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
            Ok(BulkStats {
                bytes,
                sha256: hash.finish_hex(),
                peer,
            })
        });
        Ok(Self { port, handle })
    }

    /// Waits for the server thread.
    pub fn join(self) -> Result<BulkStats> {
        self.handle
            .join()
            .map_err(|_| anyhow!("sink server thread panicked"))?
    }
}

/// Tells each guest boot which boot it is: the n-th client (1-based) gets
/// `boot=n` and `echo=<its first line>`, then the server closes. A guest script
/// uses it to behave differently after a reboot, over the network under test.
pub struct BootCounterServer {
    /// The loopback port.
    pub port: u16,
    handle: JoinHandle<Result<Vec<String>>>,
}

impl BootCounterServer {
    /// Binds 127.0.0.1:0 and serves up to `clients` connections.
    pub fn start(clients: usize, deadline: Duration) -> Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let until = Instant::now() + deadline;
        let handle = std::thread::spawn(move || -> Result<Vec<String>> {
            let mut lines = Vec::new();
            for n in 1..=clients {
                let (mut stream, _) = match accept_until(&listener, until) {
                    Ok(s) => s,
                    // Fewer clients than allowed is for the test to judge.
                    Err(_) if !lines.is_empty() => break,
                    Err(e) => return Err(e),
                };
                let mut got = Vec::new();
                let mut buf = [0u8; 256];
                while !got.contains(&b'\n') && got.len() < 256 {
                    set_remaining_timeout(&stream, until)?;
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => got.extend_from_slice(&buf[..k]),
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e).context("boot counter read"),
                    }
                }
                let line = String::from_utf8_lossy(&got)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                stream.write_all(format!("boot={n}\necho={line}\n").as_bytes())?;
                let _ = stream.shutdown(std::net::Shutdown::Write);
                // Wait for the client's close so the exchange ends cleanly.
                loop {
                    set_remaining_timeout(&stream, until)?;
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e).context("boot counter drain"),
                    }
                }
                lines.push(line);
            }
            Ok(lines)
        });
        Ok(Self { port, handle })
    }

    /// Waits for the server thread; returns the first line of each client, in order.
    pub fn join(self) -> Result<Vec<String>> {
        self.handle
            .join()
            .map_err(|_| anyhow!("boot counter thread panicked"))?
    }
}

/// What the host side of an inbound (`-t`) connection saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundStats {
    /// What the guest's "ready" connection said.
    pub ready_line: String,
    /// Bytes received from the guest's server.
    pub bytes: usize,
    /// Their SHA-256, lowercase hex.
    pub sha256: String,
    /// Connection attempts to the forwarded port (refused ones included).
    pub attempts: u32,
}

/// The host end of an inbound connection test: waits until the guest connects to
/// `ready_port` (its server is listening by then), then connects to
/// `127.0.0.1:forwarded_port` (which passt forwards into the guest with `-t`),
/// writes `greeting`, reads until the guest half-closes, then closes.
pub struct InboundProbe {
    /// The loopback port the guest signals readiness on.
    pub ready_port: u16,
    handle: JoinHandle<Result<InboundStats>>,
}

impl InboundProbe {
    /// Binds the readiness listener on 127.0.0.1:0.
    pub fn start(forwarded_port: u16, greeting: Vec<u8>, deadline: Duration) -> Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let ready_port = listener.local_addr()?.port();
        let until = Instant::now() + deadline;
        let handle = std::thread::spawn(move || -> Result<InboundStats> {
            let (mut ready, _) = accept_until(&listener, until)?;
            let mut ready_line = Vec::new();
            set_remaining_timeout(&ready, until)?;
            let _ = ready.read_to_end(&mut ready_line);
            drop(ready);
            let mut attempts = 0u32;
            let mut stream = loop {
                attempts += 1;
                match TcpStream::connect((Ipv4Addr::LOCALHOST, forwarded_port)) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() + Duration::from_millis(200) < until => {
                        if attempts >= 10 {
                            return Err(e).context(format!(
                                "connecting to 127.0.0.1:{forwarded_port} ({attempts} attempts)"
                            ));
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Err(e) => return Err(e).context("connecting to the forwarded port"),
                }
            };
            set_remaining_timeout(&stream, until)?;
            stream.write_all(&greeting)?;
            // No half-close yet: busybox `nc` quits as soon as the network side
            // reaches EOF, even with stdin left to send. Close after its FIN.
            let mut hash = Sha256::new();
            let mut bytes = 0usize;
            let mut buf = vec![0u8; 65536];
            loop {
                set_remaining_timeout(&stream, until)?;
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        hash.update(&buf[..n]);
                        bytes += n;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).context("reading from the guest's server"),
                }
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
            Ok(InboundStats {
                ready_line: String::from_utf8_lossy(&ready_line).trim().to_string(),
                bytes,
                sha256: hash.finish_hex(),
                attempts,
            })
        });
        Ok(Self { ready_port, handle })
    }

    /// Waits for the probe thread.
    pub fn join(self) -> Result<InboundStats> {
        self.handle
            .join()
            .map_err(|_| anyhow!("inbound probe thread panicked"))?
    }
}

/// A UDP service thread that runs until stopped or its deadline.
pub struct UdpService<T> {
    /// The loopback port.
    pub port: u16,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<T>>,
}

impl<T> UdpService<T> {
    /// Stops the service and returns what it saw.
    pub fn finish(self) -> Result<T> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .map_err(|_| anyhow!("UDP service thread panicked"))?
    }
}

/// One TFTP transfer as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TftpTransfer {
    /// True for a write request (guest -> host), false for a read request.
    pub write: bool,
    /// The file name requested.
    pub name: String,
    /// Bytes transferred.
    pub bytes: usize,
    /// Their SHA-256, lowercase hex.
    pub sha256: String,
    /// The last block was acknowledged (read) or received (write).
    pub completed: bool,
    /// The client's address as the host saw it.
    pub peer: SocketAddr,
}

/// TFTP opcodes (RFC 1350 §5).
const TFTP_RRQ: u16 = 1;
const TFTP_WRQ: u16 = 2;
const TFTP_DATA: u16 = 3;
const TFTP_ACK: u16 = 4;
const TFTP_ERROR: u16 = 5;
/// RFC 1350 data block size (options such as RFC 2348 blksize are ignored, which
/// RFC 2347 §"Option Acknowledgment" allows: the client then falls back to 512).
const TFTP_BLOCK: usize = 512;
/// Retransmissions of one packet before a transfer is abandoned.
const TFTP_RETRIES: u32 = 8;

/// A TFTP server (RFC 1350, octet mode, 512-byte blocks) on 127.0.0.1 that keeps
/// written files in memory, so a guest can `put` a file and `get` it back: a UDP
/// echo in both directions with lock-step acknowledgements. Unlike RFC 1350's
/// choice of a fresh server port per transfer, it answers from its one port
/// (busybox's client accepts either).
pub fn start_tftp_server(deadline: Duration) -> Result<UdpService<Vec<TftpTransfer>>> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let port = socket.local_addr()?.port();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = Arc::clone(&stop);
    let until = Instant::now() + deadline;
    let handle = std::thread::spawn(move || -> Result<Vec<TftpTransfer>> {
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut transfers = Vec::new();
        let mut buf = [0u8; 2048];
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        while !stop_flag.load(Ordering::Relaxed) && Instant::now() < until {
            let (n, peer) = match socket.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue;
                }
                Err(e) => return Err(e).context("tftp recv"),
            };
            let Some((opcode, name)) = parse_tftp_request(&buf[..n]) else {
                continue;
            };
            match opcode {
                TFTP_WRQ => {
                    let (data, completed) = tftp_receive(&socket, peer, until)?;
                    let mut hash = Sha256::new();
                    hash.update(&data);
                    transfers.push(TftpTransfer {
                        write: true,
                        name: name.clone(),
                        bytes: data.len(),
                        sha256: hash.finish_hex(),
                        completed,
                        peer,
                    });
                    if completed {
                        files.insert(name, data);
                    }
                }
                TFTP_RRQ => match files.get(&name) {
                    Some(data) => {
                        let completed = tftp_send(&socket, peer, data, until)?;
                        let mut hash = Sha256::new();
                        hash.update(data);
                        transfers.push(TftpTransfer {
                            write: false,
                            name,
                            bytes: data.len(),
                            sha256: hash.finish_hex(),
                            completed,
                            peer,
                        });
                    }
                    None => {
                        // ERROR 1: file not found.
                        let mut pkt = vec![0, TFTP_ERROR as u8, 0, 1];
                        pkt.extend_from_slice(b"file not found\0");
                        socket.send_to(&pkt, peer)?;
                    }
                },
                _ => {}
            }
        }
        Ok(transfers)
    });
    Ok(UdpService { port, stop, handle })
}

/// `(opcode, filename)` of an RRQ/WRQ: opcode, filename NUL, mode NUL, options.
fn parse_tftp_request(pkt: &[u8]) -> Option<(u16, String)> {
    let opcode = u16::from_be_bytes([*pkt.first()?, *pkt.get(1)?]);
    if opcode != TFTP_RRQ && opcode != TFTP_WRQ {
        return None;
    }
    let rest = pkt.get(2..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some((opcode, String::from_utf8_lossy(&rest[..end]).into_owned()))
}

fn tftp_ack(block: u16) -> [u8; 4] {
    let b = block.to_be_bytes();
    [0, TFTP_ACK as u8, b[0], b[1]]
}

/// The write side of RFC 1350 §6: ACK 0, then ACK each DATA block in order; the
/// transfer ends with a block shorter than 512 bytes.
fn tftp_receive(socket: &UdpSocket, peer: SocketAddr, until: Instant) -> Result<(Vec<u8>, bool)> {
    let mut data = Vec::new();
    let mut last_ack = 0u16;
    socket.send_to(&tftp_ack(0), peer)?;
    let mut buf = [0u8; 2048];
    let mut retries = 0;
    while Instant::now() < until {
        socket.set_read_timeout(Some(Duration::from_millis(1000)))?;
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                retries += 1;
                if retries > TFTP_RETRIES {
                    break;
                }
                socket.send_to(&tftp_ack(last_ack), peer)?;
                continue;
            }
            Err(e) => return Err(e).context("tftp recv data"),
        };
        if from != peer || n < 4 || u16::from_be_bytes([buf[0], buf[1]]) != TFTP_DATA {
            continue;
        }
        let block = u16::from_be_bytes([buf[2], buf[3]]);
        if block == last_ack.wrapping_add(1) {
            retries = 0;
            data.extend_from_slice(&buf[4..n]);
            last_ack = block;
            socket.send_to(&tftp_ack(block), peer)?;
            if n - 4 < TFTP_BLOCK {
                socket.set_read_timeout(Some(Duration::from_millis(100)))?;
                return Ok((data, true));
            }
        } else if block == last_ack {
            // Our ACK was lost: acknowledge again.
            socket.send_to(&tftp_ack(block), peer)?;
        }
    }
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok((data, false))
}

/// The read side of RFC 1350 §6: DATA blocks 1.. in lock-step with the client's
/// ACKs, retransmitting on timeout; a final short (possibly empty) block ends it.
fn tftp_send(socket: &UdpSocket, peer: SocketAddr, data: &[u8], until: Instant) -> Result<bool> {
    let mut buf = [0u8; 2048];
    let mut block = 1u16;
    let mut offset = 0usize;
    socket.set_read_timeout(Some(Duration::from_millis(1000)))?;
    let result = loop {
        let end = (offset + TFTP_BLOCK).min(data.len());
        let mut pkt = Vec::with_capacity(4 + TFTP_BLOCK);
        pkt.extend_from_slice(&TFTP_DATA.to_be_bytes());
        pkt.extend_from_slice(&block.to_be_bytes());
        pkt.extend_from_slice(&data[offset..end]);
        let mut acked = false;
        for _ in 0..=TFTP_RETRIES {
            socket.send_to(&pkt, peer)?;
            let wait_until = Instant::now() + Duration::from_millis(1000);
            while Instant::now() < wait_until.min(until) {
                let (n, from) = match socket.recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        break;
                    }
                    Err(e) => return Err(e).context("tftp recv ack"),
                };
                if from == peer
                    && n >= 4
                    && u16::from_be_bytes([buf[0], buf[1]]) == TFTP_ACK
                    && u16::from_be_bytes([buf[2], buf[3]]) == block
                {
                    acked = true;
                    break;
                }
            }
            if acked || Instant::now() >= until {
                break;
            }
        }
        if !acked {
            break false;
        }
        if end - offset < TFTP_BLOCK {
            break true;
        }
        offset = end;
        block = block.wrapping_add(1);
    };
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(result)
}

/// One query the DNS responder answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsQuery {
    /// The queried name, dotted, lowercase, without the final dot.
    pub name: String,
    /// QTYPE (1 = A, 28 = AAAA).
    pub qtype: u16,
    /// Where it came from (passt's socket).
    pub peer: SocketAddr,
}

/// A minimal authoritative DNS responder (RFC 1035 §4.1) on `bind` (UDP): an A
/// record for each `(name, address)`; other types of those names get an empty
/// NOERROR answer, other names NXDOMAIN. Runs until stopped or its deadline.
pub fn start_dns_responder(
    bind: SocketAddr,
    records: Vec<(String, Ipv4Addr)>,
    deadline: Duration,
) -> Result<UdpService<Vec<DnsQuery>>> {
    if !bind.ip().is_loopback() {
        bail!("{bind} is not a loopback address");
    }
    let socket = UdpSocket::bind(bind).with_context(|| format!("binding {bind}"))?;
    let port = socket.local_addr()?.port();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = Arc::clone(&stop);
    let until = Instant::now() + deadline;
    let handle = std::thread::spawn(move || -> Result<Vec<DnsQuery>> {
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut seen = Vec::new();
        let mut buf = [0u8; 1500];
        while !stop_flag.load(Ordering::Relaxed) && Instant::now() < until {
            let (n, peer) = match socket.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue;
                }
                Err(e) => return Err(e).context("dns recv"),
            };
            let Some(query) = parse_dns_query(&buf[..n]) else {
                continue;
            };
            let address = records
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&query.name))
                .map(|(_, a)| *a);
            let reply = build_dns_reply(&buf[..n], &query, address);
            socket.send_to(&reply, peer)?;
            seen.push(DnsQuery {
                name: query.name,
                qtype: query.qtype,
                peer,
            });
        }
        Ok(seen)
    });
    Ok(UdpService { port, stop, handle })
}

/// The parts of a query the responder needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ParsedQuery {
    name: String,
    qtype: u16,
    /// Offset just past QTYPE/QCLASS of the first question.
    question_end: usize,
}

/// RFC 1035 §4.1.1-4.1.2: a standard query (QR=0, OPCODE=0) with at least one
/// question whose QNAME is uncompressed labels.
fn parse_dns_query(msg: &[u8]) -> Option<ParsedQuery> {
    if msg.len() < 12 || msg[2] & 0xf8 != 0 {
        return None;
    }
    if u16::from_be_bytes([msg[4], msg[5]]) == 0 {
        return None;
    }
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*msg.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        let label = msg.get(pos..pos + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]);
    let _qclass = u16::from_be_bytes([*msg.get(pos + 2)?, *msg.get(pos + 3)?]);
    Some(ParsedQuery {
        name: labels.join("."),
        qtype,
        question_end: pos + 4,
    })
}

/// Header (ID and RD copied; QR, AA, RA set), the first question, and an A record
/// pointing back at it (compression pointer to offset 12, RFC 1035 §4.1.4).
fn build_dns_reply(query: &[u8], parsed: &ParsedQuery, address: Option<Ipv4Addr>) -> Vec<u8> {
    let mut out = Vec::with_capacity(parsed.question_end + 16);
    out.extend_from_slice(&query[..2]);
    let rd = query[2] & 0x01;
    out.push(0x80 | 0x04 | rd); // QR, AA, RD
    let rcode = if address.is_some() { 0 } else { 3 }; // NXDOMAIN
    out.push(0x80 | rcode); // RA
    let answer = address.filter(|_| parsed.qtype == 1);
    out.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    out.extend_from_slice(&u16::from(answer.is_some()).to_be_bytes()); // ANCOUNT
    out.extend_from_slice(&[0, 0, 0, 0]); // NSCOUNT, ARCOUNT
    out.extend_from_slice(&query[12..parsed.question_end]);
    if let Some(a) = answer {
        out.extend_from_slice(&[0xc0, 12]); // NAME: pointer to the question
        out.extend_from_slice(&1u16.to_be_bytes()); // TYPE A
        out.extend_from_slice(&1u16.to_be_bytes()); // CLASS IN
        out.extend_from_slice(&60u32.to_be_bytes()); // TTL
        out.extend_from_slice(&4u16.to_be_bytes()); // RDLENGTH
        out.extend_from_slice(&a.octets());
    }
    out
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
    fn send_and_sink_servers_hash_what_they_move() {
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let send = TcpSendServer::start(payload.clone(), Duration::from_secs(5)).expect("send");
        let mut c = TcpStream::connect((Ipv4Addr::LOCALHOST, send.port)).expect("connect");
        let mut got = Vec::new();
        c.read_to_end(&mut got).expect("read");
        drop(c);
        assert_eq!(got, payload);
        let stats = send.join().expect("join");
        assert_eq!(stats.bytes, payload.len());
        assert_eq!(stats.sha256, crate::digest::sha256_hex(&payload));

        let sink = TcpSinkServer::start(Duration::from_secs(5)).expect("sink");
        let mut c = TcpStream::connect((Ipv4Addr::LOCALHOST, sink.port)).expect("connect");
        c.write_all(&payload[..777]).expect("write");
        c.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).expect("eof");
        let stats = sink.join().expect("join");
        assert_eq!(stats.bytes, 777);
        assert_eq!(stats.sha256, crate::digest::sha256_hex(&payload[..777]));
    }

    #[test]
    fn boot_counter_numbers_clients_and_echoes_their_line() {
        let server = BootCounterServer::start(2, Duration::from_secs(5)).expect("start");
        for n in 1..=2 {
            let mut c = TcpStream::connect((Ipv4Addr::LOCALHOST, server.port)).expect("connect");
            c.write_all(format!("token={n}x\n").as_bytes())
                .expect("write");
            c.shutdown(std::net::Shutdown::Write).expect("shutdown");
            let mut reply = String::new();
            c.read_to_string(&mut reply).expect("read");
            assert_eq!(reply, format!("boot={n}\necho=token={n}x\n"));
        }
        assert_eq!(server.join().expect("join"), vec!["token=1x", "token=2x"]);
    }

    /// A minimal RFC 1350 client: WRQ then RRQ of the same file.
    #[test]
    fn tftp_put_then_get_returns_the_same_bytes() {
        let server = start_tftp_server(Duration::from_secs(10)).expect("start");
        let to = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port));
        let c = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        c.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let data: Vec<u8> = (0..1536u32).map(|i| (i * 13) as u8).collect(); // 3 full blocks
        let mut buf = [0u8; 1024];
        c.send_to(b"\x00\x02echo\x00octet\x00", to).expect("wrq");
        let (n, _) = c.recv_from(&mut buf).expect("ack0");
        assert_eq!(&buf[..n], &[0, 4, 0, 0]);
        // 3 full blocks and the empty one that ends a multiple-of-512 file.
        for (i, chunk) in data.chunks(512).chain([&[][..]]).enumerate() {
            let block = (i + 1) as u16;
            let mut pkt = vec![0, 3];
            pkt.extend_from_slice(&block.to_be_bytes());
            pkt.extend_from_slice(chunk);
            c.send_to(&pkt, to).expect("data");
            let (n, _) = c.recv_from(&mut buf).expect("ack");
            assert_eq!(&buf[..n], &tftp_ack(block));
        }
        c.send_to(b"\x00\x01echo\x00octet\x00blksize\x001024\x00", to)
            .expect("rrq");
        let mut back = Vec::new();
        loop {
            let (n, _) = c.recv_from(&mut buf).expect("data");
            assert_eq!(&buf[..2], &[0, 3]);
            back.extend_from_slice(&buf[4..n]);
            c.send_to(&tftp_ack(u16::from_be_bytes([buf[2], buf[3]])), to)
                .expect("ack");
            if n - 4 < 512 {
                break;
            }
        }
        assert_eq!(back, data);
        c.send_to(b"\x00\x01nope\x00octet\x00", to).expect("rrq");
        let (n, _) = c.recv_from(&mut buf).expect("error");
        assert_eq!(&buf[..4], &[0, 5, 0, 1], "{:?}", &buf[..n]);
        let transfers = server.finish().expect("finish");
        assert_eq!(transfers.len(), 2);
        assert!(
            transfers
                .iter()
                .all(|t| t.completed && t.bytes == data.len())
        );
        assert!(transfers[0].write && !transfers[1].write);
    }

    fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn dns_responder_answers_a_and_refuses_unknown_names() {
        let answer = Ipv4Addr::new(198, 51, 100, 7);
        let server = start_dns_responder(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            vec![("probe.test".into(), answer)],
            Duration::from_secs(5),
        )
        .expect("start");
        let to = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port));
        let c = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        c.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut buf = [0u8; 512];
        let q = dns_query(0x1234, "Probe.Test", 1);
        c.send_to(&q, to).expect("send");
        let (n, _) = c.recv_from(&mut buf).expect("reply");
        let r = &buf[..n];
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[2] & 0x80, 0x80, "QR");
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(&r[6..8], &[0, 1], "one answer");
        assert_eq!(&r[12..q.len()], &q[12..], "question echoed");
        assert_eq!(&r[n - 4..], &answer.octets());
        c.send_to(&dns_query(7, "other.test", 1), to).expect("send");
        let (n, _) = c.recv_from(&mut buf).expect("reply");
        assert_eq!(buf[3] & 0x0f, 3, "NXDOMAIN");
        assert_eq!(&buf[6..8], &[0, 0]);
        assert!(n > 12);
        c.send_to(&dns_query(8, "probe.test", 28), to)
            .expect("send");
        let (_, _) = c.recv_from(&mut buf).expect("reply");
        assert_eq!((buf[3] & 0x0f, buf[7]), (0, 0), "AAAA: NOERROR, no answer");
        let seen = server.finish().expect("finish");
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].name, "probe.test");
        assert!(parse_dns_query(&[0u8; 11]).is_none());
        assert!(parse_dns_query(&dns_query(1, "a.b", 1)[..14]).is_none());
    }

    #[test]
    fn echo_server_gives_up_at_deadline() {
        let server = TcpEchoServer::start(5, Duration::from_millis(100)).expect("start");
        assert!(server.join().is_err());
    }
}
