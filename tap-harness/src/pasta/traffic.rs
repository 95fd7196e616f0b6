//! # Traffic for the pasta suite
//!
//! Both ends are ordinary kernel sockets: a socket belongs to the network
//! namespace of the thread that created it, whoever uses it afterwards, so
//! each socket is created inside its namespace ([`NetNs::run_in`]) and then
//! used from ordinary threads. What crosses pasta is the namespace
//! kernel's own TCP/UDP.
//!
//! Owns: bulk TCP in one direction with every byte checked against the
//! sender's [`PatternStream`] (length and content: the receiver regenerates
//! the sender's stream from the same seed, so any loss, duplication,
//! reordering or corruption shows as a first mismatching offset), echo
//! servers, and a tiny DNS responder and client (RFC 1035).
//!
//! Must never: wait without a deadline (every socket has timeouts, every
//! accept a deadline), or bind anything outside the namespace it was given.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use passt_engine::runtime::NetNs;

use crate::{PatternChecker, PatternStream};

/// Read and write timeout of every stream here.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

fn in_ns<T: Send>(ns: &NetNs, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    ns.run_in(f)?
}

/// A TCP listener bound to `addr` inside `ns` (nonblocking: see
/// [`accept_within`]).
pub fn listen_tcp(ns: &NetNs, addr: SocketAddr) -> io::Result<TcpListener> {
    let l = in_ns(ns, move || TcpListener::bind(addr))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// A UDP socket bound to `addr` inside `ns`, with a 5 s read timeout.
pub fn bind_udp(ns: &NetNs, addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = in_ns(ns, move || UdpSocket::bind(addr))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

/// A TCP connection to `addr` made from inside `ns` (connect timeout
/// `limit`), with [`IO_TIMEOUT`] on reads and writes.
pub fn connect_tcp(ns: &NetNs, addr: SocketAddr, limit: Duration) -> io::Result<TcpStream> {
    let s = in_ns(ns, move || TcpStream::connect_timeout(&addr, limit))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// [`connect_tcp`], retried every 100 ms while refused or reset, until
/// `limit` (for listeners that appear later, such as `auto` forwarding).
pub fn connect_tcp_until(ns: &NetNs, addr: SocketAddr, limit: Duration) -> io::Result<TcpStream> {
    let deadline = Instant::now() + limit;
    loop {
        match connect_tcp(ns, addr, Duration::from_secs(2)) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Accepts one connection on a nonblocking listener within `limit`; the
/// stream is blocking with [`IO_TIMEOUT`].
pub fn accept_within(listener: &TcpListener, limit: Duration) -> io::Result<TcpStream> {
    let deadline = Instant::now() + limit;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                return Ok(s);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no connection within {limit:?}"),
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes `len` bytes of the pattern stream of `seed`, then half-closes.
pub fn send_pattern(stream: &mut TcpStream, seed: u64, len: u64) -> io::Result<()> {
    let mut stream_gen = PatternStream::new(seed);
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let n = (buf.len() as u64).min(left) as usize;
        stream_gen.fill(&mut buf[..n]);
        stream.write_all(&buf[..n])?;
        left -= n as u64;
    }
    stream.shutdown(Shutdown::Write)
}

/// Reads to the end of the stream, checking every byte against the
/// pattern stream of `seed`.
pub fn receive_pattern(stream: &mut TcpStream, seed: u64) -> io::Result<PatternChecker> {
    let mut check = PatternChecker::new(seed);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(check);
        }
        check.feed(&buf[..n]);
    }
}

/// What one direction of a bulk transfer delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// Bytes received before the end of the stream.
    pub bytes: u64,
    /// Offset of the first byte that differed from what was sent.
    pub first_mismatch: Option<u64>,
}

impl From<&PatternChecker> for Delivered {
    fn from(c: &PatternChecker) -> Delivered {
        Delivered {
            bytes: c.checked,
            first_mismatch: c.first_mismatch,
        }
    }
}

/// Runs `f` on a thread and waits for its result at most `limit`.
pub fn with_deadline<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .map_err(|_| format!("did not finish within {limit:?}"))
}

/// Serves one connection on `listener`: answers each line with the same
/// line until the client closes, then closes.
pub fn spawn_tcp_echo_once(listener: TcpListener) -> JoinHandle<io::Result<u64>> {
    std::thread::spawn(move || {
        let mut s = accept_within(&listener, Duration::from_secs(30))?;
        let mut total = 0u64;
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n])?;
            total += n as u64;
        }
        s.shutdown(Shutdown::Write)?;
        Ok(total)
    })
}

/// Sends `payload` over `stream`, half-closes, and returns everything read
/// back until the peer closes.
pub fn echo_exchange(stream: &mut TcpStream, payload: &[u8]) -> io::Result<Vec<u8>> {
    stream.write_all(payload)?;
    stream.shutdown(Shutdown::Write)?;
    let mut back = Vec::new();
    stream.read_to_end(&mut back)?;
    Ok(back)
}

/// A UDP echo server: sends every datagram back to where it came from,
/// until stopped (checked every read timeout).
pub struct UdpEcho {
    stop: Arc<AtomicBool>,
    echoed: Arc<AtomicU32>,
    thread: Option<JoinHandle<()>>,
}

impl UdpEcho {
    /// Serves on `socket` (bound by the caller, in its namespace).
    pub fn spawn(socket: UdpSocket) -> io::Result<UdpEcho> {
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let echoed = Arc::new(AtomicU32::new(0));
        let (s, e) = (stop.clone(), echoed.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf)
                    && socket.send_to(&buf[..n], from).is_ok()
                {
                    e.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(UdpEcho {
            stop,
            echoed,
            thread: Some(thread),
        })
    }

    /// Datagrams echoed so far.
    pub fn echoed(&self) -> u32 {
        self.echoed.load(Ordering::Relaxed)
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ------------------------------------------------------------------ DNS

/// DNS type A (RFC 1035 §3.2.2).
const TYPE_A: u16 = 1;
/// Class IN (RFC 1035 §3.2.4).
const CLASS_IN: u16 = 1;

/// A DNS query for `name`, type A, class IN, recursion desired (RFC 1035
/// §4.1: header, one question).
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    m.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    m.extend_from_slice(&[0; 6]); // ANCOUNT, NSCOUNT, ARCOUNT
    for label in name.trim_end_matches('.').split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&TYPE_A.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    m
}

/// The question of a query: its name (lowercase, dotted) and the offset
/// just past the question section, or `None` if malformed (RFC 1035
/// §4.1.2; compression is not used in questions of single-question
/// queries, and is refused here).
fn parse_question(m: &[u8]) -> Option<(String, u16, usize)> {
    if m.len() < 12 || u16::from_be_bytes([m[4], m[5]]) != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *m.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(m.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*m.get(i)?, *m.get(i + 1)?]);
    Some((labels.join("."), qtype, i + 4))
}

/// A response to `query`: the question echoed, and one A record for
/// `addr` (TTL 60) if it asked for type A (RFC 1035 §4.1.1, §4.1.3).
fn dns_answer(query: &[u8], addr: Ipv4Addr) -> Option<Vec<u8>> {
    let (_, qtype, end) = parse_question(query)?;
    let mut r = query[..end].to_vec();
    let ancount: u16 = if qtype == TYPE_A { 1 } else { 0 };
    // QR, opcode 0, AA, RD copied, RA; RCODE 0.
    let rd = query[2] & 0x01;
    r[2] = 0x84 | rd;
    r[3] = 0x80;
    r[6..8].copy_from_slice(&ancount.to_be_bytes());
    r[8..12].copy_from_slice(&[0; 4]);
    if ancount == 1 {
        r.extend_from_slice(&[0xc0, 12]); // pointer to the question's name
        r.extend_from_slice(&TYPE_A.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&60u32.to_be_bytes());
        r.extend_from_slice(&4u16.to_be_bytes());
        r.extend_from_slice(&addr.octets());
    }
    Some(r)
}

/// What a DNS response said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsReply {
    /// Its ID.
    pub id: u16,
    /// The question's name.
    pub name: String,
    /// The addresses of its A records.
    pub addrs: Vec<Ipv4Addr>,
}

/// Parses a response to a single-question A query: the header must have
/// QR set and RCODE 0; answers must be type A with 4-byte data (their
/// names are compression pointers or labels, skipped).
pub fn parse_dns_reply(m: &[u8]) -> Option<DnsReply> {
    if m.len() < 12 || m[2] & 0x80 == 0 || m[3] & 0x0f != 0 {
        return None;
    }
    let id = u16::from_be_bytes([m[0], m[1]]);
    let (name, _, mut i) = parse_question(m)?;
    let ancount = u16::from_be_bytes([m[6], m[7]]);
    let mut addrs = Vec::new();
    for _ in 0..ancount {
        // Name: a pointer (2 bytes) or labels ending in 0.
        if *m.get(i)? & 0xc0 == 0xc0 {
            i += 2;
        } else {
            while *m.get(i)? != 0 {
                i += 1 + *m.get(i)? as usize;
            }
            i += 1;
        }
        let rtype = u16::from_be_bytes([*m.get(i)?, *m.get(i + 1)?]);
        let rdlen = u16::from_be_bytes([*m.get(i + 8)?, *m.get(i + 9)?]) as usize;
        let data = m.get(i + 10..i + 10 + rdlen)?;
        if rtype == TYPE_A && rdlen == 4 {
            addrs.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        i += 10 + rdlen;
    }
    Some(DnsReply { id, name, addrs })
}

/// A DNS responder answering every A query with one address, until
/// dropped; counts the queries it answered and the malformed ones.
pub struct DnsResponder {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU32>,
    malformed: Arc<AtomicU32>,
    thread: Option<JoinHandle<()>>,
}

impl DnsResponder {
    /// Serves on `socket` (bound by the caller, in its namespace).
    pub fn spawn(socket: UdpSocket, addr: Ipv4Addr) -> io::Result<DnsResponder> {
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU32::new(0));
        let malformed = Arc::new(AtomicU32::new(0));
        let (s, a, bad) = (stop.clone(), answered.clone(), malformed.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                match dns_answer(&buf[..n], addr) {
                    Some(r) => {
                        // Counted before sending: the client may read the
                        // answer before this thread runs again.
                        a.fetch_add(1, Ordering::Relaxed);
                        let _ = socket.send_to(&r, from);
                    }
                    None => {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Ok(DnsResponder {
            stop,
            answered,
            malformed,
            thread: Some(thread),
        })
    }

    /// Answers sent so far (counted as each is sent).
    pub fn answered(&self) -> u32 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Malformed datagrams received so far.
    pub fn malformed(&self) -> u32 {
        self.malformed.load(Ordering::Relaxed)
    }
}

impl Drop for DnsResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends an A query for `name` from `socket` to `server` and waits for
/// the response with the same ID, retrying every second up to `tries`
/// times (UDP: the first query may race a listener being set up).
pub fn resolve(
    socket: &UdpSocket,
    server: SocketAddr,
    name: &str,
    tries: u32,
) -> io::Result<DnsReply> {
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut buf = vec![0u8; 4096];
    for attempt in 0..tries.max(1) {
        let id = 0x5a00 | attempt as u16;
        socket.send_to(&dns_query(id, name), server)?;
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            match socket.recv_from(&mut buf) {
                Ok((n, _)) => {
                    if let Some(r) = parse_dns_reply(&buf[..n])
                        && r.id == id
                    {
                        return Ok(r);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no DNS answer from {server} after {tries} tries"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_responder_answers_its_own_query_format_with_one_a_record() {
        let q = dns_query(0x1234, "Host.Example.");
        let r = dns_answer(&q, Ipv4Addr::new(203, 0, 113, 7)).expect("answer");
        assert_eq!(
            parse_dns_reply(&r),
            Some(DnsReply {
                id: 0x1234,
                name: "host.example".into(),
                addrs: vec![Ipv4Addr::new(203, 0, 113, 7)],
            })
        );
    }

    #[test]
    fn a_query_is_not_mistaken_for_a_reply_and_garbage_is_refused() {
        assert_eq!(parse_dns_reply(&dns_query(1, "a.b")), None);
        assert_eq!(dns_answer(&[1, 2, 3], Ipv4Addr::LOCALHOST), None);
        let mut q = dns_query(1, "a.b");
        q.truncate(15);
        assert_eq!(dns_answer(&q, Ipv4Addr::LOCALHOST), None);
    }
}
