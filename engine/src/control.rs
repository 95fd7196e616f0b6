//! The control protocol between `pesto` and a running passt or pasta
//! (`-c PATH`): messages, their framing and their text, as documented in
//! `docs/pesto.md`.
//!
//! A message is a 4-byte big-endian length followed by that many bytes of
//! UTF-8 text, at most [`MAX_MESSAGE`]. The client sends one request and
//! reads one reply; then both close. A request's first line is
//! [`MAGIC`], then one operation per line (`add OPTION SPEC`,
//! `del OPTION SPEC`, `clear PIF`, `show`). A reply's first line is `ok`
//! or `error MESSAGE`; after `ok` come the rules in force, one specifier
//! per line.
//!
//! This module owns the encoding and the checks of the text; it never
//! touches a socket and never applies an operation (the runtime's
//! forwarding table does).

/// First line of every request: the protocol and its version.
pub const MAGIC: &str = "passt-control 1";
/// Largest message body, in bytes.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Most operations in one request.
pub const MAX_OPS: usize = 1024;
/// Length of the length prefix.
pub const HEADER_LEN: usize = 4;

/// One operation of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOp {
    /// Add the rules of `spec` to option `-OPTION`.
    Add {
        /// `t`, `u`, `T` or `U`.
        option: char,
        /// A specifier of the `-t` grammar.
        spec: String,
    },
    /// Remove the host ports of `spec` from option `-OPTION`.
    Delete {
        /// `t`, `u`, `T` or `U`.
        option: char,
        /// A specifier of the `-t` grammar.
        spec: String,
    },
    /// Remove every rule of a pif (`host`: `-t`/`-u`; `splice`:
    /// `-T`/`-U`).
    Clear {
        /// `host` or `splice`.
        pif: String,
    },
    /// Nothing: the reply lists the rules in any case.
    Show,
}

/// Why a message is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The length prefix is above [`MAX_MESSAGE`].
    #[error("message of {0} bytes is longer than the limit of {MAX_MESSAGE}")]
    TooLong(u32),
    /// Not UTF-8.
    #[error("message is not UTF-8 text")]
    NotText,
    /// The first line is not [`MAGIC`].
    #[error("not a '{MAGIC}' request")]
    BadMagic,
    /// More than [`MAX_OPS`] operations.
    #[error("more than {MAX_OPS} operations in one request")]
    TooManyOps,
    /// A line that is no operation.
    #[error("line {line}: {why}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// A reply that is neither `ok` nor `error ...`.
    #[error("malformed reply")]
    BadReply,
}

/// What a buffer holds so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// More bytes are needed.
    Incomplete,
    /// A whole message: its body is `buf[HEADER_LEN..HEADER_LEN + len]`.
    Complete(usize),
}

/// Looks for one whole message at the start of `buf`; refuses a length
/// above [`MAX_MESSAGE`] as soon as the prefix is in.
pub fn decode(buf: &[u8]) -> Result<Framing, ProtoError> {
    let Some(prefix) = buf.get(..HEADER_LEN) else {
        return Ok(Framing::Incomplete);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if len as usize > MAX_MESSAGE {
        return Err(ProtoError::TooLong(len));
    }
    if buf.len() < HEADER_LEN + len as usize {
        return Ok(Framing::Incomplete);
    }
    Ok(Framing::Complete(len as usize))
}

/// `body` with its length prefix (cut to [`MAX_MESSAGE`] bytes, at a
/// character boundary).
pub fn encode(body: &str) -> Vec<u8> {
    let mut end = body.len().min(MAX_MESSAGE);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    let body = &body.as_bytes()[..end];
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The text of a request.
pub fn format_request(ops: &[RequestOp]) -> String {
    let mut s = String::from(MAGIC);
    for op in ops {
        s.push('\n');
        match op {
            RequestOp::Add { option, spec } => s.push_str(&format!("add {option} {spec}")),
            RequestOp::Delete { option, spec } => s.push_str(&format!("del {option} {spec}")),
            RequestOp::Clear { pif } => s.push_str(&format!("clear {pif}")),
            RequestOp::Show => s.push_str("show"),
        }
    }
    s.push('\n');
    s
}

fn option_of(s: &str) -> Option<char> {
    match s {
        "t" | "u" | "T" | "U" => s.chars().next(),
        _ => None,
    }
}

/// Reads a request's body.
pub fn parse_request(body: &[u8]) -> Result<Vec<RequestOp>, ProtoError> {
    let text = std::str::from_utf8(body).map_err(|_| ProtoError::NotText)?;
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Err(ProtoError::BadMagic);
    }
    let mut ops = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        if ops.len() == MAX_OPS {
            return Err(ProtoError::TooManyOps);
        }
        let bad = |why: &str| ProtoError::BadLine {
            line: i + 2,
            why: why.to_string(),
        };
        let words: Vec<&str> = line.split(' ').collect();
        let op = match words.as_slice() {
            ["add" | "del", option, spec] => {
                let option = option_of(option).ok_or_else(|| bad("unknown option"))?;
                if spec.is_empty() {
                    return Err(bad("empty specifier"));
                }
                let spec = spec.to_string();
                if words[0] == "add" {
                    RequestOp::Add { option, spec }
                } else {
                    RequestOp::Delete { option, spec }
                }
            }
            ["clear", pif] if !pif.is_empty() => RequestOp::Clear {
                pif: pif.to_string(),
            },
            ["show"] => RequestOp::Show,
            _ => return Err(bad("not an operation")),
        };
        ops.push(op);
    }
    Ok(ops)
}

/// The reply to a request: `Ok(lines)` (the rules in force) or the
/// error's message.
pub fn format_reply(result: &Result<Vec<String>, String>) -> String {
    match result {
        Ok(lines) => {
            let mut s = String::from("ok\n");
            for l in lines {
                s.push_str(l);
                s.push('\n');
            }
            s
        }
        Err(msg) => format!("error {}\n", msg.replace('\n', " ")),
    }
}

/// Reads a reply's body (the client's side of [`format_reply`]).
pub fn parse_reply(body: &[u8]) -> Result<Result<Vec<String>, String>, ProtoError> {
    let text = std::str::from_utf8(body).map_err(|_| ProtoError::NotText)?;
    let mut lines = text.lines();
    match lines.next() {
        Some("ok") => Ok(Ok(lines.map(str::to_string).collect())),
        Some(l) if l.starts_with("error ") => Ok(Err(l["error ".len()..].to_string())),
        _ => Err(ProtoError::BadReply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_survives_encoding_and_parsing() {
        let ops = vec![
            RequestOp::Clear { pif: "host".into() },
            RequestOp::Add {
                option: 't',
                spec: "127.0.0.1/8080:80".into(),
            },
            RequestOp::Delete {
                option: 'U',
                spec: "53".into(),
            },
            RequestOp::Show,
        ];
        let wire = encode(&format_request(&ops));
        let Ok(Framing::Complete(len)) = decode(&wire) else {
            panic!("not complete");
        };
        assert_eq!(parse_request(&wire[HEADER_LEN..HEADER_LEN + len]), Ok(ops));
    }

    #[test]
    fn partial_messages_wait_and_huge_lengths_are_refused_at_once() {
        let wire = encode("passt-control 1\nshow\n");
        for cut in 0..wire.len() {
            assert_eq!(decode(&wire[..cut]), Ok(Framing::Incomplete));
        }
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff]),
            Err(ProtoError::TooLong(u32::MAX))
        );
        let at_limit = (MAX_MESSAGE as u32).to_be_bytes();
        assert_eq!(decode(&at_limit), Ok(Framing::Incomplete));
    }

    #[test]
    fn garbage_requests_are_errors() {
        assert_eq!(parse_request(b"\xff\xfe"), Err(ProtoError::NotText));
        assert_eq!(
            parse_request(b"GET / HTTP/1.0\n"),
            Err(ProtoError::BadMagic)
        );
        assert!(matches!(
            parse_request(b"passt-control 1\nadd x 22\n"),
            Err(ProtoError::BadLine { line: 2, .. })
        ));
        assert!(matches!(
            parse_request(b"passt-control 1\nadd t 22 33\n"),
            Err(ProtoError::BadLine { .. })
        ));
        assert!(matches!(
            parse_request(b"passt-control 1\nadd t \n"),
            Err(ProtoError::BadLine { .. })
        ));
        let many = format!("{MAGIC}\n{}", "show\n".repeat(MAX_OPS + 1));
        assert_eq!(parse_request(many.as_bytes()), Err(ProtoError::TooManyOps));
    }

    #[test]
    fn replies_carry_rules_or_one_error_line() {
        let ok = format_reply(&Ok(vec!["-t 22".into()]));
        assert_eq!(parse_reply(ok.as_bytes()), Ok(Ok(vec!["-t 22".into()])));
        let err = format_reply(&Err("Failed to bind port 22\n(x)".into()));
        assert_eq!(
            parse_reply(err.as_bytes()),
            Ok(Err("Failed to bind port 22 (x)".into()))
        );
        assert_eq!(parse_reply(b"maybe"), Err(ProtoError::BadReply));
    }

    #[test]
    fn encoding_cuts_overlong_bodies_at_a_character_boundary() {
        let body = "é".repeat(MAX_MESSAGE);
        let wire = encode(&body);
        let len = u32::from_be_bytes([wire[0], wire[1], wire[2], wire[3]]) as usize;
        assert!(len <= MAX_MESSAGE);
        assert!(std::str::from_utf8(&wire[HEADER_LEN..]).is_ok());
    }
}
