//! A minimal DNS codec (RFC 1035 §4.1) and a responder for the simulated
//! internet: A and AAAA records from a table.
//!
//! Input is untrusted: every length is checked, names are bounded (63-byte
//! labels, 255-byte names, RFC 1035 §2.3.4), compression pointers are
//! followed a bounded number of times and only backwards (RFC 1035
//! §4.1.4), and malformed messages are errors, never panics.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use passt_engine::Instant;

use super::remote::DatagramApp;

/// Record type A (RFC 1035 §3.2.2).
pub const TYPE_A: u16 = 1;
/// Record type AAAA (RFC 3596 §2.1).
pub const TYPE_AAAA: u16 = 28;
/// Class IN.
pub const CLASS_IN: u16 = 1;
/// RCODE: no error.
pub const RCODE_NOERROR: u8 = 0;
/// RCODE: format error.
pub const RCODE_FORMERR: u8 = 1;
/// RCODE: name does not exist.
pub const RCODE_NXDOMAIN: u8 = 3;
/// RCODE: not implemented.
pub const RCODE_NOTIMP: u8 = 4;

const HEADER_LEN: usize = 12;
const MAX_NAME: usize = 255;
const MAX_LABEL: usize = 63;
const MAX_POINTERS: usize = 16;

/// Why a DNS message could not be parsed or built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The message ends early.
    #[error("message truncated")]
    Truncated,
    /// A label longer than 63 bytes, a name longer than 255, or a
    /// character outside printable ASCII.
    #[error("bad name")]
    BadName,
    /// A compression pointer loop or forward pointer.
    #[error("bad compression pointer")]
    BadPointer,
    /// Not exactly one question.
    #[error("expected one question, got {0}")]
    QuestionCount(u16),
    /// A query where a response was expected, or the reverse.
    #[error("wrong QR bit")]
    WrongDirection,
}

/// The question of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// Lower-case name without the trailing dot.
    pub name: String,
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
}

/// A parsed query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// Transaction id.
    pub id: u16,
    /// OPCODE.
    pub opcode: u8,
    /// Recursion desired.
    pub rd: bool,
    /// The single question.
    pub question: Question,
}

/// A parsed response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Transaction id.
    pub id: u16,
    /// RCODE.
    pub rcode: u8,
    /// The question echoed back (`None` if the response carries none).
    pub question: Option<Question>,
    /// A and AAAA answers with their TTLs (other types skipped).
    pub answers: Vec<(IpAddr, u32)>,
}

fn u16_at(msg: &[u8], at: usize) -> Result<u16, DnsError> {
    msg.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(DnsError::Truncated)
}

fn u32_at(msg: &[u8], at: usize) -> Result<u32, DnsError> {
    msg.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(DnsError::Truncated)
}

/// Reads a (possibly compressed) name at `at`; returns it and the offset
/// just past it in the original position.
fn read_name(msg: &[u8], mut at: usize) -> Result<(String, usize), DnsError> {
    let mut name = String::new();
    let mut end = None;
    let mut jumps = 0;
    let mut wire_len = 1;
    loop {
        let len = *msg.get(at).ok_or(DnsError::Truncated)? as usize;
        match len & 0xc0 {
            0x00 => {}
            0xc0 => {
                let b = *msg.get(at + 1).ok_or(DnsError::Truncated)? as usize;
                let target = ((len & 0x3f) << 8) | b;
                jumps += 1;
                if jumps > MAX_POINTERS || target >= at {
                    return Err(DnsError::BadPointer);
                }
                end.get_or_insert(at + 2);
                at = target;
                continue;
            }
            _ => return Err(DnsError::BadName),
        }
        if len == 0 {
            return Ok((name, end.unwrap_or(at + 1)));
        }
        if len > MAX_LABEL {
            return Err(DnsError::BadName);
        }
        wire_len += len + 1;
        if wire_len > MAX_NAME {
            return Err(DnsError::BadName);
        }
        let label = msg.get(at + 1..at + 1 + len).ok_or(DnsError::Truncated)?;
        if !name.is_empty() {
            name.push('.');
        }
        for &c in label {
            if !c.is_ascii_graphic() || c == b'.' {
                return Err(DnsError::BadName);
            }
            name.push(c.to_ascii_lowercase() as char);
        }
        at += 1 + len;
    }
}

fn write_name(out: &mut Vec<u8>, name: &str) -> Result<(), DnsError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut wire_len = 1;
    if !name.is_empty() {
        for label in name.split('.') {
            let l = label.len();
            if l == 0 || l > MAX_LABEL || !label.bytes().all(|c| c.is_ascii_graphic()) {
                return Err(DnsError::BadName);
            }
            wire_len += l + 1;
            if wire_len > MAX_NAME {
                return Err(DnsError::BadName);
            }
            out.push(l as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    Ok(())
}

fn read_question(msg: &[u8], at: usize) -> Result<(Question, usize), DnsError> {
    let (name, at) = read_name(msg, at)?;
    let qtype = u16_at(msg, at)?;
    let qclass = u16_at(msg, at + 2)?;
    Ok((
        Question {
            name,
            qtype,
            qclass,
        },
        at + 4,
    ))
}

/// Builds a recursive query for `name` of `qtype`.
pub fn build_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, DnsError> {
    let mut out = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&[0; 6]);
    write_name(&mut out, name)?;
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(out)
}

/// Parses a query with exactly one question.
pub fn parse_query(msg: &[u8]) -> Result<Query, DnsError> {
    let id = u16_at(msg, 0)?;
    let flags = u16_at(msg, 2)?;
    if flags & 0x8000 != 0 {
        return Err(DnsError::WrongDirection);
    }
    let qd = u16_at(msg, 4)?;
    if qd != 1 {
        return Err(DnsError::QuestionCount(qd));
    }
    let (question, _) = read_question(msg, HEADER_LEN)?;
    Ok(Query {
        id,
        opcode: ((flags >> 11) & 0xf) as u8,
        rd: flags & 0x0100 != 0,
        question,
    })
}

/// Builds a response: header (QR, AA, RA, RD as asked, `rcode`), the
/// question if given, and one answer per address of the question's type.
pub fn build_response(
    id: u16,
    rd: bool,
    rcode: u8,
    question: Option<&Question>,
    answers: &[IpAddr],
    ttl: u32,
) -> Result<Vec<u8>, DnsError> {
    let mut out = Vec::with_capacity(64);
    let flags: u16 = 0x8000 | 0x0400 | 0x0080 | (u16::from(rd) << 8) | u16::from(rcode & 0xf);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&u16::from(question.is_some()).to_be_bytes());
    let an = if question.is_some() { answers.len() } else { 0 };
    out.extend_from_slice(&(an as u16).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    if let Some(q) = question {
        write_name(&mut out, &q.name)?;
        out.extend_from_slice(&q.qtype.to_be_bytes());
        out.extend_from_slice(&q.qclass.to_be_bytes());
        for a in answers {
            out.extend_from_slice(&0xc00cu16.to_be_bytes()); // name: the question's
            let (ty, rdata): (u16, Vec<u8>) = match a {
                IpAddr::V4(v) => (TYPE_A, v.octets().to_vec()),
                IpAddr::V6(v) => (TYPE_AAAA, v.octets().to_vec()),
            };
            out.extend_from_slice(&ty.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            out.extend_from_slice(&rdata);
        }
    }
    Ok(out)
}

/// Parses a response, collecting A/AAAA answers.
pub fn parse_response(msg: &[u8]) -> Result<Response, DnsError> {
    let id = u16_at(msg, 0)?;
    let flags = u16_at(msg, 2)?;
    if flags & 0x8000 == 0 {
        return Err(DnsError::WrongDirection);
    }
    let qd = u16_at(msg, 4)?;
    let an = u16_at(msg, 6)?;
    if qd > 1 {
        return Err(DnsError::QuestionCount(qd));
    }
    let mut at = HEADER_LEN;
    let question = if qd == 1 {
        let (q, next) = read_question(msg, at)?;
        at = next;
        Some(q)
    } else {
        None
    };
    let mut answers = Vec::new();
    for _ in 0..an {
        let (_, next) = read_name(msg, at)?;
        let ty = u16_at(msg, next)?;
        let class = u16_at(msg, next + 2)?;
        let ttl = u32_at(msg, next + 4)?;
        let rdlen = u16_at(msg, next + 8)? as usize;
        let rdata = msg
            .get(next + 10..next + 10 + rdlen)
            .ok_or(DnsError::Truncated)?;
        if class == CLASS_IN {
            if ty == TYPE_A && rdlen == 4 {
                let o: [u8; 4] = [rdata[0], rdata[1], rdata[2], rdata[3]];
                answers.push((IpAddr::V4(Ipv4Addr::from(o)), ttl));
            } else if ty == TYPE_AAAA && rdlen == 16 {
                let mut o = [0u8; 16];
                o.copy_from_slice(rdata);
                answers.push((IpAddr::V6(Ipv6Addr::from(o)), ttl));
            }
        }
        at = next + 10 + rdlen;
    }
    Ok(Response {
        id,
        rcode: (flags & 0xf) as u8,
        question,
        answers,
    })
}

/// Answers A/AAAA queries from a table; unknown names get NXDOMAIN,
/// malformed queries FORMERR (when the header is readable) or silence.
#[derive(Clone, Debug, Default)]
pub struct DnsResponder {
    table: BTreeMap<String, Vec<IpAddr>>,
    ttl: u32,
    queries: u64,
}

impl DnsResponder {
    /// An empty table; answers carry a TTL of 300 s.
    pub fn new() -> Self {
        DnsResponder {
            table: BTreeMap::new(),
            ttl: 300,
            queries: 0,
        }
    }

    /// Adds an address for `name` (case-insensitive, trailing dot optional).
    pub fn with(mut self, name: &str, addr: IpAddr) -> Self {
        self.insert(name, addr);
        self
    }

    /// Adds an address for `name`.
    pub fn insert(&mut self, name: &str, addr: IpAddr) {
        let key = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        self.table.entry(key).or_default().push(addr);
    }

    /// The response to one query message (`None`: stay silent).
    pub fn answer(&mut self, msg: &[u8]) -> Option<Vec<u8>> {
        self.queries += 1;
        let q = match parse_query(msg) {
            Ok(q) => q,
            Err(DnsError::WrongDirection) => return None,
            Err(_) => {
                // Header readable: FORMERR without a question (RFC 1035 §4.1.1).
                let id = u16_at(msg, 0).ok()?;
                let rd = u16_at(msg, 2).ok()? & 0x0100 != 0;
                return build_response(id, rd, RCODE_FORMERR, None, &[], 0).ok();
            }
        };
        if q.opcode != 0 {
            return build_response(q.id, q.rd, RCODE_NOTIMP, Some(&q.question), &[], 0).ok();
        }
        let Some(addrs) = self.table.get(&q.question.name) else {
            return build_response(q.id, q.rd, RCODE_NXDOMAIN, Some(&q.question), &[], 0).ok();
        };
        let matching: Vec<IpAddr> = if q.question.qclass != CLASS_IN {
            Vec::new()
        } else {
            addrs
                .iter()
                .copied()
                .filter(|a| match q.question.qtype {
                    TYPE_A => a.is_ipv4(),
                    TYPE_AAAA => a.is_ipv6(),
                    _ => false,
                })
                .collect()
        };
        build_response(
            q.id,
            q.rd,
            RCODE_NOERROR,
            Some(&q.question),
            &matching,
            self.ttl,
        )
        .ok()
    }
}

impl DatagramApp for DnsResponder {
    fn on_datagram(
        &mut self,
        _now: Instant,
        _from: SocketAddr,
        _to: SocketAddr,
        payload: &[u8],
        replies: &mut Vec<Vec<u8>>,
    ) {
        if let Some(r) = self.answer(payload) {
            replies.push(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trip() {
        let q = build_query(0x1234, "Example.COM.", TYPE_A).unwrap();
        let p = parse_query(&q).unwrap();
        assert_eq!(p.id, 0x1234);
        assert!(p.rd);
        assert_eq!(p.question.name, "example.com");
        assert_eq!(p.question.qtype, TYPE_A);
    }

    #[test]
    fn responder_answers_and_nxdomain() {
        let mut r = DnsResponder::new()
            .with("a.test", "192.0.2.7".parse().unwrap())
            .with("a.test", "2001:db8::7".parse().unwrap());
        let resp = r
            .answer(&build_query(7, "a.test", TYPE_AAAA).unwrap())
            .unwrap();
        let p = parse_response(&resp).unwrap();
        assert_eq!(p.id, 7);
        assert_eq!(p.rcode, RCODE_NOERROR);
        assert_eq!(p.answers, vec![("2001:db8::7".parse().unwrap(), 300)]);
        let resp = r
            .answer(&build_query(8, "b.test", TYPE_A).unwrap())
            .unwrap();
        let p = parse_response(&resp).unwrap();
        assert_eq!(p.rcode, RCODE_NXDOMAIN);
        assert!(p.answers.is_empty());
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let mut r = DnsResponder::new();
        // Every prefix of a valid query, and a pointer loop.
        let q = build_query(9, "x.y", TYPE_A).unwrap();
        for n in 0..q.len() {
            let _ = parse_query(&q[..n]);
            let _ = parse_response(&q[..n]);
            let _ = r.answer(&q[..n]);
        }
        let mut looped = q[..HEADER_LEN].to_vec();
        looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_query(&looped), Err(DnsError::BadPointer));
        // FORMERR carries the id.
        let resp = r.answer(&looped).unwrap();
        let p = parse_response(&resp).unwrap();
        assert_eq!((p.id, p.rcode), (9, RCODE_FORMERR));
        // Too-long label.
        assert_eq!(
            build_query(1, &"a".repeat(64), TYPE_A),
            Err(DnsError::BadName)
        );
    }
}
