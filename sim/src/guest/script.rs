//! Scripted guests: exact frames in, exact frames expected back, in a small
//! dialect in the spirit of packetdrill.
//!
//! # What this module owns
//!
//! The parser ([`Script::parse`], errors with line numbers as
//! [`ScriptError`]) and the runner ([`ScriptGuest`]), which injects the
//! script's `>` frames at their times and checks every frame the engine
//! sends against the script's `<` lines, stopping at the first mismatch
//! ([`ScriptMismatch`]: line, time, what was expected, what came).
//!
//! ```text
//! # comments run to the end of the line
//! option tolerance 0.01            # ± seconds for `<` line times
//! flow 192.0.2.15:40000 > 203.0.113.7:7
//! 0     > S 0:0(0) win 65535 <mss 1460,wscale 7>
//! +0.02 < S. 0:0(0) ack 1 <mss 1460,wscale 7>
//! +0    > . 1:1(0) ack 1 win 512
//! +0    > P. 1:6(5) ack 1 "hello"
//! *     < . 1:1(0) ack 6
//! +0.1  > udp (32)
//! +1    < nothing
//! ```
//!
//! The full grammar and semantics are in `docs/simulation.md`.
//!
//! # What it must never do
//!
//! Panic on a bad script or on any frame the engine sends: both are
//! reported as values.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use passt_engine::wire::{
    self, ArpOperation, ArpRepr, Icmpv4Repr, Icmpv6Repr, IpRepr, Ipv4Repr, Ipv6Repr, L3, L4,
    TcpFlags, TcpOptions, TcpRepr, UdpRepr,
};
use passt_engine::{Instant, MacAddr};

use crate::host::services::pattern_byte;

/// A script that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("script line {line}: {message}")]
pub struct ScriptError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// When a line happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSpec {
    /// `+S`: seconds after the previous line's event.
    Relative(Duration),
    /// `S`: seconds after the script started.
    Absolute(Duration),
    /// `*`: any time (only for `<` lines), up to the script's timeout.
    Any,
}

/// The two ends of a TCP/UDP/ICMP conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Flow {
    /// The guest's address and port.
    pub guest: SocketAddr,
    /// The remote address and port, as the guest sees it.
    pub remote: SocketAddr,
}

/// A payload: a length (filled with the pattern when sent, only the length
/// checked when expected) or exact bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// `(N)`.
    Len(usize),
    /// `"..."` or `hex ...`.
    Bytes(Vec<u8>),
}

impl Payload {
    fn len(&self) -> usize {
        match self {
            Payload::Len(n) => *n,
            Payload::Bytes(b) => b.len(),
        }
    }

    fn bytes(&self, offset: u64) -> Vec<u8> {
        match self {
            Payload::Len(n) => (0..*n as u64).map(|i| pattern_byte(offset + i)).collect(),
            Payload::Bytes(b) => b.clone(),
        }
    }

    fn check(&self, got: &[u8]) -> Result<(), String> {
        if got.len() != self.len() {
            return Err(format!(
                "payload length: expected {}, got {}",
                self.len(),
                got.len()
            ));
        }
        if let Payload::Bytes(b) = self {
            if let Some(i) = b.iter().zip(got).position(|(a, b)| a != b) {
                return Err(format!(
                    "payload byte {i}: expected {:#04x}, got {:#04x}",
                    b[i], got[i]
                ));
            }
        }
        Ok(())
    }
}

/// TCP options as written in `<...>`; absent fields must be absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptionSpec {
    /// `mss N`.
    pub mss: Option<u16>,
    /// `wscale N`.
    pub wscale: Option<u8>,
    /// `sackOK`.
    pub sack_ok: bool,
    /// `TS val V ecr E` (`*` for either: not checked).
    pub ts: Option<(Option<u32>, Option<u32>)>,
}

/// One packet of a `>` or `<` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PacketSpec {
    /// A TCP segment; sequence numbers relative to the sender's ISN,
    /// acknowledgments to the receiver's.
    Tcp {
        /// Conversation.
        flow: Flow,
        /// Control bits.
        flags: TcpFlags,
        /// Relative sequence number of the first byte.
        seq: u32,
        /// Payload.
        payload: Payload,
        /// Relative acknowledgment number (`None`: not checked / zero).
        ack: Option<u32>,
        /// Window as on the wire (`None`: not checked / 65535).
        win: Option<u16>,
        /// Options (`None`: not checked / none).
        options: Option<OptionSpec>,
    },
    /// A UDP datagram.
    Udp {
        /// Conversation.
        flow: Flow,
        /// Payload.
        payload: Payload,
    },
    /// An ICMP / ICMPv6 echo request or reply.
    Icmp {
        /// Conversation (ports unused).
        flow: Flow,
        /// Reply (true) or request.
        reply: bool,
        /// Identifier.
        id: u16,
        /// Sequence number.
        seq: u16,
        /// Data.
        payload: Payload,
    },
    /// `arp who-has TARGET tell SENDER`.
    ArpRequest {
        /// Address asked for.
        target: Ipv4Addr,
        /// Address of the asker.
        sender: Ipv4Addr,
    },
    /// `arp reply SENDER is-at MAC`.
    ArpReply {
        /// Address answered for.
        sender: Ipv4Addr,
        /// Its MAC.
        mac: MacAddr,
    },
    /// `hex ...`: a whole Ethernet frame.
    Raw(Vec<u8>),
}

/// What a line does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `>`: the guest sends.
    Send(PacketSpec),
    /// `<`: the engine must send this next.
    Expect(PacketSpec),
    /// `< nothing`: the engine sends nothing until the line's time.
    Nothing,
}

/// One timed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number in the source.
    pub number: usize,
    /// The source text (comments stripped).
    pub text: String,
    /// When.
    pub time: TimeSpec,
    /// What.
    pub action: Action,
}

/// Script-wide settings (`option` lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptOptions {
    /// `option guest_mac`: source MAC of the guest's frames.
    pub guest_mac: MacAddr,
    /// `option tolerance`: how far a `<` frame may be from its line's time.
    pub tolerance: Duration,
    /// `option timeout`: how long a `*` line waits.
    pub timeout: Duration,
    /// `option isn`: the guest's initial sequence number.
    pub guest_isn: u32,
    /// `option ignore ra|none`: skip router advertisements (default) or
    /// check every frame.
    pub ignore_ra: bool,
}

impl Default for ScriptOptions {
    fn default() -> Self {
        ScriptOptions {
            guest_mac: crate::demo::GUEST_MAC,
            tolerance: Duration::from_millis(50),
            timeout: Duration::from_secs(10),
            guest_isn: 1_000_000,
            ignore_ra: true,
        }
    }
}

/// A parsed script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// Settings.
    pub options: ScriptOptions,
    /// Timed lines in order.
    pub lines: Vec<Line>,
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(Vec<u8>),
    Opts(String),
}

fn tokenize(line: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            break;
        } else if c == '"' {
            i += 1;
            let mut bytes = Vec::new();
            loop {
                let Some(&c) = chars.get(i) else {
                    return Err("unterminated string".into());
                };
                i += 1;
                match c {
                    '"' => break,
                    '\\' => {
                        let Some(&e) = chars.get(i) else {
                            return Err("unterminated escape".into());
                        };
                        i += 1;
                        match e {
                            'n' => bytes.push(b'\n'),
                            'r' => bytes.push(b'\r'),
                            't' => bytes.push(b'\t'),
                            '0' => bytes.push(0),
                            '\\' => bytes.push(b'\\'),
                            '"' => bytes.push(b'"'),
                            'x' => {
                                let hex: String =
                                    chars.get(i..i + 2).unwrap_or(&[]).iter().collect();
                                let v = u8::from_str_radix(&hex, 16)
                                    .map_err(|_| format!("bad escape \\x{hex}"))?;
                                bytes.push(v);
                                i += 2;
                            }
                            other => return Err(format!("unknown escape \\{other}")),
                        }
                    }
                    c => {
                        let mut b = [0u8; 4];
                        bytes.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                    }
                }
            }
            out.push(Tok::Str(bytes));
        } else if c == '<' && chars.get(i + 1).is_some_and(|n| !n.is_whitespace()) {
            let start = i + 1;
            let Some(len) = chars[start..].iter().position(|&c| c == '>') else {
                return Err("unterminated option list (missing '>')".into());
            };
            out.push(Tok::Opts(chars[start..start + len].iter().collect()));
            i = start + len + 1;
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '"' {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        }
    }
    Ok(out)
}

fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|_| format!("bad time `{s}`"))?;
    if !v.is_finite() || !(0.0..=1e9).contains(&v) {
        return Err(format!("bad time `{s}`"));
    }
    Ok(Duration::from_nanos((v * 1e9).round() as u64))
}

fn num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("bad {what} `{s}`"))
}

struct Cursor {
    toks: Vec<Tok>,
    pos: usize,
}

impl Cursor {
    fn word(&mut self, what: &str) -> Result<String, String> {
        match self.toks.get(self.pos) {
            Some(Tok::Word(w)) => {
                self.pos += 1;
                Ok(w.clone())
            }
            Some(_) => Err(format!("expected {what}")),
            None => Err(format!("missing {what}")),
        }
    }

    fn peek_word(&self) -> Option<&str> {
        match self.toks.get(self.pos) {
            Some(Tok::Word(w)) => Some(w),
            _ => None,
        }
    }

    fn keyword(&mut self, kw: &str) -> Result<(), String> {
        let w = self.word(&format!("`{kw}`"))?;
        if w == kw {
            Ok(())
        } else {
            Err(format!("expected `{kw}`, found `{w}`"))
        }
    }

    fn done(&self) -> Result<(), String> {
        match self.toks.get(self.pos) {
            None => Ok(()),
            Some(Tok::Word(w)) => Err(format!("unexpected `{w}`")),
            Some(Tok::Str(_)) => Err("unexpected string".into()),
            Some(Tok::Opts(o)) => Err(format!("unexpected option list <{o}>")),
        }
    }

    /// `(N)` or `"..."`, optional when `default` is given.
    fn payload(&mut self, default: Option<Payload>) -> Result<Payload, String> {
        match self.toks.get(self.pos).cloned() {
            Some(Tok::Str(b)) => {
                self.pos += 1;
                Ok(Payload::Bytes(b))
            }
            Some(Tok::Word(w)) if w.starts_with('(') && w.ends_with(')') => {
                self.pos += 1;
                Ok(Payload::Len(num(&w[1..w.len() - 1], "length")?))
            }
            _ => default.ok_or_else(|| "missing payload: `(LEN)` or \"bytes\"".to_string()),
        }
    }
}

fn parse_flags(w: &str) -> Result<TcpFlags, String> {
    let mut f = TcpFlags::NONE;
    for c in w.chars() {
        f = f.with(match c {
            'S' => TcpFlags::SYN,
            'F' => TcpFlags::FIN,
            'R' => TcpFlags::RST,
            'P' => TcpFlags::PSH,
            '.' => TcpFlags::ACK,
            'U' => TcpFlags::URG,
            'E' => TcpFlags::ECE,
            'W' => TcpFlags::CWR,
            _ => return Err(format!("bad TCP flags `{w}` (use S F R P . U E W)")),
        });
    }
    Ok(f)
}

/// `start:end(len)`.
fn parse_seq(w: &str) -> Result<(u32, usize), String> {
    let bad = || format!("bad sequence `{w}` (expected START:END(LEN))");
    let (start, rest) = w.split_once(':').ok_or_else(bad)?;
    let (end, rest) = rest.split_once('(').ok_or_else(bad)?;
    let len = rest.strip_suffix(')').ok_or_else(bad)?;
    let start: u32 = start.parse().map_err(|_| bad())?;
    let end: u32 = end.parse().map_err(|_| bad())?;
    let len: usize = len.parse().map_err(|_| bad())?;
    if end.wrapping_sub(start) as usize != len {
        return Err(format!("sequence `{w}`: END - START must equal LEN"));
    }
    Ok((start, len))
}

fn parse_options(s: &str) -> Result<OptionSpec, String> {
    let mut o = OptionSpec::default();
    for item in s.split(',') {
        let parts: Vec<&str> = item.split_whitespace().collect();
        match parts.as_slice() {
            [] | ["nop"] | ["eol"] => {}
            ["mss", v] => o.mss = Some(num(v, "mss")?),
            ["wscale", v] => o.wscale = Some(num(v, "wscale")?),
            ["sackOK"] => o.sack_ok = true,
            ["TS", "val", v, "ecr", e] => {
                let val = if *v == "*" {
                    None
                } else {
                    Some(num(v, "TS val")?)
                };
                let ecr = if *e == "*" {
                    None
                } else {
                    Some(num(e, "TS ecr")?)
                };
                o.ts = Some((val, ecr));
            }
            _ => return Err(format!("unknown TCP option `{}`", item.trim())),
        }
    }
    Ok(o)
}

fn parse_packet(c: &mut Cursor, flow: Option<Flow>, sending: bool) -> Result<PacketSpec, String> {
    let need_flow = || {
        flow.ok_or_else(|| {
            "no flow declared: add `flow GUEST:PORT > REMOTE:PORT` above".to_string()
        })
    };
    let first = c.word("a packet (TCP flags, udp, icmp, arp, hex)")?;
    let spec = match first.as_str() {
        "udp" => PacketSpec::Udp {
            flow: need_flow()?,
            payload: c.payload(None)?,
        },
        "icmp" => {
            let kind = c.word("`echo` or `echo-reply`")?;
            let reply = match kind.as_str() {
                "echo" => false,
                "echo-reply" => true,
                other => return Err(format!("unknown ICMP type `{other}`")),
            };
            c.keyword("id")?;
            let id = num(&c.word("identifier")?, "identifier")?;
            c.keyword("seq")?;
            let seq = num(&c.word("sequence number")?, "sequence number")?;
            PacketSpec::Icmp {
                flow: need_flow()?,
                reply,
                id,
                seq,
                payload: c.payload(Some(Payload::Len(56)))?,
            }
        }
        "arp" => match c.word("`who-has` or `reply`")?.as_str() {
            "who-has" => {
                let target = num(&c.word("address")?, "IPv4 address")?;
                c.keyword("tell")?;
                let sender = num(&c.word("address")?, "IPv4 address")?;
                PacketSpec::ArpRequest { target, sender }
            }
            "reply" => {
                let sender = num(&c.word("address")?, "IPv4 address")?;
                c.keyword("is-at")?;
                let mac = num(&c.word("MAC")?, "MAC address")?;
                PacketSpec::ArpReply { sender, mac }
            }
            other => return Err(format!("unknown ARP operation `{other}`")),
        },
        "hex" => {
            let mut digits = String::new();
            while let Some(w) = c.peek_word() {
                digits.push_str(w);
                c.pos += 1;
            }
            if digits.len() % 2 != 0 || digits.is_empty() {
                return Err("hex: an even, non-zero number of hex digits is needed".into());
            }
            let bytes = (0..digits.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&digits[i..i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| "hex: bad digit".to_string())?;
            PacketSpec::Raw(bytes)
        }
        flags => {
            let flags = parse_flags(flags)?;
            let (seq, len) = parse_seq(&c.word("sequence START:END(LEN)")?)?;
            let mut ack = None;
            let mut win = None;
            let mut options = None;
            let mut payload = Payload::Len(len);
            loop {
                match c.toks.get(c.pos).cloned() {
                    Some(Tok::Word(w)) if w == "ack" => {
                        c.pos += 1;
                        ack = Some(num(&c.word("ack number")?, "ack number")?);
                    }
                    Some(Tok::Word(w)) if w == "win" => {
                        c.pos += 1;
                        win = Some(num(&c.word("window")?, "window")?);
                    }
                    Some(Tok::Opts(o)) => {
                        c.pos += 1;
                        options = Some(parse_options(&o)?);
                    }
                    Some(Tok::Str(b)) => {
                        c.pos += 1;
                        if b.len() != len {
                            return Err(format!(
                                "payload is {} bytes but the sequence says {len}",
                                b.len()
                            ));
                        }
                        payload = Payload::Bytes(b);
                    }
                    _ => break,
                }
            }
            if sending && ack.is_some() && !flags.contains(TcpFlags::ACK) {
                return Err("`ack` given without the `.` (ACK) flag".into());
            }
            PacketSpec::Tcp {
                flow: need_flow()?,
                flags,
                seq,
                payload,
                ack,
                win,
                options,
            }
        }
    };
    c.done()?;
    Ok(spec)
}

fn parse_flow(c: &mut Cursor) -> Result<Flow, String> {
    let guest: SocketAddr = num(&c.word("guest ADDR:PORT")?, "guest ADDR:PORT")?;
    c.keyword(">")?;
    let remote: SocketAddr = num(&c.word("remote ADDR:PORT")?, "remote ADDR:PORT")?;
    c.done()?;
    if guest.is_ipv4() != remote.is_ipv4() {
        return Err("flow: both ends must be of the same address family".into());
    }
    Ok(Flow { guest, remote })
}

fn parse_option(c: &mut Cursor, o: &mut ScriptOptions) -> Result<(), String> {
    let name = c.word("option name")?;
    let value = c.word("option value")?;
    match name.as_str() {
        "guest_mac" => o.guest_mac = num(&value, "MAC address")?,
        "tolerance" => o.tolerance = seconds(&value)?,
        "timeout" => o.timeout = seconds(&value)?,
        "isn" => o.guest_isn = num(&value, "ISN")?,
        "ignore" => match value.as_str() {
            "ra" => o.ignore_ra = true,
            "none" => o.ignore_ra = false,
            other => return Err(format!("option ignore: `{other}` (use ra or none)")),
        },
        other => return Err(format!("unknown option `{other}`")),
    }
    c.done()
}

impl Script {
    /// Parses a script; the error names the first bad line.
    pub fn parse(text: &str) -> Result<Script, ScriptError> {
        let mut options = ScriptOptions::default();
        let mut lines = Vec::new();
        let mut flow: Option<Flow> = None;
        for (i, raw) in text.lines().enumerate() {
            let number = i + 1;
            let err = |message: String| ScriptError {
                line: number,
                message,
            };
            let toks = tokenize(raw).map_err(err)?;
            if toks.is_empty() {
                continue;
            }
            let text = raw.split('#').next().unwrap_or(raw).trim().to_string();
            let mut c = Cursor { toks, pos: 0 };
            let first = c.word("a time, `flow` or `option`").map_err(err)?;
            match first.as_str() {
                "flow" => {
                    flow = Some(parse_flow(&mut c).map_err(err)?);
                    continue;
                }
                "option" => {
                    parse_option(&mut c, &mut options).map_err(err)?;
                    continue;
                }
                _ => {}
            }
            let time = if first == "*" {
                TimeSpec::Any
            } else if let Some(rel) = first.strip_prefix('+') {
                TimeSpec::Relative(seconds(rel).map_err(err)?)
            } else {
                TimeSpec::Absolute(seconds(&first).map_err(|_| {
                    err(format!(
                        "expected a time (`+0.1`, `1.5` or `*`), `flow` or `option`, found `{first}`"
                    ))
                })?)
            };
            let dir = c.word("direction `>` or `<`").map_err(err)?;
            let action = match dir.as_str() {
                ">" => {
                    if time == TimeSpec::Any {
                        return Err(err("`*` is only allowed on `<` lines".into()));
                    }
                    Action::Send(parse_packet(&mut c, flow, true).map_err(err)?)
                }
                "<" if c.peek_word() == Some("nothing") => {
                    c.pos += 1;
                    c.done().map_err(err)?;
                    if time == TimeSpec::Any {
                        return Err(err("`< nothing` needs a time, not `*`".into()));
                    }
                    Action::Nothing
                }
                "<" => Action::Expect(parse_packet(&mut c, flow, false).map_err(err)?),
                other => return Err(err(format!("expected `>` or `<`, found `{other}`"))),
            };
            lines.push(Line {
                number,
                text,
                time,
                action,
            });
        }
        Ok(Script { options, lines })
    }
}

// ---------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------

/// The first difference between the script and what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptMismatch {
    /// Line number of the script line that failed.
    pub line: usize,
    /// Its text.
    pub text: String,
    /// Virtual time of the failure.
    pub at: Instant,
    /// What went wrong.
    pub reason: String,
    /// The frame that came instead, described, if any.
    pub got: Option<String>,
}

impl fmt::Display for ScriptMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "script line {} `{}` failed at {}: {}",
            self.line, self.text, self.at, self.reason
        )?;
        if let Some(g) = &self.got {
            write!(f, "\n  got: {g}")?;
        }
        Ok(())
    }
}

/// Where a script run stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptStatus {
    /// Lines remain.
    Running,
    /// Every line passed.
    Passed,
    /// A line failed.
    Failed(ScriptMismatch),
}

#[derive(Clone, Copy, Debug, Default)]
struct IsnPair {
    engine: Option<u32>,
}

/// Runs a [`Script`] as the guest (see the [module docs](self)).
#[derive(Debug)]
pub struct ScriptGuest {
    script: Script,
    engine_mac: MacAddr,
    start: Instant,
    pos: usize,
    last: Instant,
    status: ScriptStatus,
    isns: BTreeMap<Flow, IsnPair>,
    ignored: u64,
    transcript: Vec<String>,
}

impl ScriptGuest {
    /// A run of `script` starting at `start`, talking to the engine whose
    /// MAC is `engine_mac`.
    pub fn new(script: Script, engine_mac: MacAddr, start: Instant) -> Self {
        let status = if script.lines.is_empty() {
            ScriptStatus::Passed
        } else {
            ScriptStatus::Running
        };
        ScriptGuest {
            script,
            engine_mac,
            start,
            pos: 0,
            last: start,
            status,
            isns: BTreeMap::new(),
            ignored: 0,
            transcript: Vec::new(),
        }
    }

    /// Where the run stands.
    pub fn status(&self) -> &ScriptStatus {
        &self.status
    }

    /// The mismatch, if the run failed.
    pub fn mismatch(&self) -> Option<&ScriptMismatch> {
        match &self.status {
            ScriptStatus::Failed(m) => Some(m),
            _ => None,
        }
    }

    /// Lines that passed so far.
    pub fn lines_passed(&self) -> usize {
        self.pos
    }

    /// Frames skipped under `option ignore` (router advertisements).
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// One line per frame sent or received, with times.
    pub fn transcript(&self) -> &[String] {
        &self.transcript
    }

    /// Whether the run is over (passed or failed).
    pub fn finished(&self) -> bool {
        self.status != ScriptStatus::Running
    }

    /// The run's outcome: `Ok` if every line passed.
    pub fn outcome(&self) -> Result<(), ScriptMismatch> {
        match &self.status {
            ScriptStatus::Passed => Ok(()),
            ScriptStatus::Failed(m) => Err(m.clone()),
            ScriptStatus::Running => {
                let line = self.script.lines.get(self.pos);
                Err(ScriptMismatch {
                    line: line.map_or(0, |l| l.number),
                    text: line.map_or(String::new(), |l| l.text.clone()),
                    at: self.last,
                    reason: "the simulation ended before this line ran".into(),
                    got: None,
                })
            }
        }
    }

    fn due(&self, line: &Line) -> Instant {
        match line.time {
            TimeSpec::Relative(d) => self.last + d,
            TimeSpec::Absolute(d) => (self.start + d).max(self.last),
            TimeSpec::Any => self.last + self.script.options.timeout,
        }
    }

    fn deadline(&self, line: &Line) -> Instant {
        match line.time {
            TimeSpec::Any => self.due(line),
            _ => self.due(line) + self.script.options.tolerance,
        }
    }

    /// When the runner next needs to run.
    pub fn poll_at(&self) -> Option<Instant> {
        if self.finished() {
            return None;
        }
        let line = self.script.lines.get(self.pos)?;
        Some(match line.action {
            Action::Send(_) | Action::Nothing => self.due(line),
            Action::Expect(_) => self.deadline(line),
        })
    }

    fn fail(&mut self, now: Instant, reason: String, got: Option<String>) {
        let line = &self.script.lines[self.pos.min(self.script.lines.len() - 1)];
        self.status = ScriptStatus::Failed(ScriptMismatch {
            line: line.number,
            text: line.text.clone(),
            at: now,
            reason,
            got,
        });
    }

    fn advance(&mut self, at: Instant) {
        self.last = at;
        self.pos += 1;
        if self.pos >= self.script.lines.len() {
            self.status = ScriptStatus::Passed;
        }
    }

    /// Sends the lines that are due; fails lines whose time ran out.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        while !self.finished() {
            let line = self.script.lines[self.pos].clone();
            let due = self.due(&line);
            match &line.action {
                Action::Send(spec) => {
                    if now < due {
                        return;
                    }
                    match self.build(spec) {
                        Ok(frame) => {
                            self.transcript
                                .push(format!("{now} > {}", describe(&frame)));
                            out.push(frame);
                            self.advance(now);
                        }
                        Err(e) => self.fail(now, e, None),
                    }
                }
                Action::Nothing => {
                    if now < due {
                        return;
                    }
                    self.advance(due);
                }
                Action::Expect(_) => {
                    // Frames due at this instant were delivered before
                    // this poll: reaching the deadline empty-handed fails.
                    if now >= self.deadline(&line) {
                        let window = match line.time {
                            TimeSpec::Any => format!("by {}", self.deadline(&line)),
                            _ => format!("at {} ± {:?}", due, self.script.options.tolerance),
                        };
                        self.fail(now, format!("expected a frame {window}, none came"), None);
                    }
                    return;
                }
            }
        }
    }

    fn is_ignored(&self, frame: &[u8]) -> bool {
        if !self.script.options.ignore_ra {
            return false;
        }
        matches!(
            wire::parse_frame(frame),
            Ok(wire::Frame {
                l3: L3::Ipv6 {
                    l4: L4::Icmpv6(Icmpv6Repr::Ndp(wire::icmpv6::NdpRepr::RouterAdvert { .. })),
                    ..
                },
                ..
            })
        )
    }

    /// Checks a frame from the engine against the current line.
    pub fn on_frame(&mut self, now: Instant, frame: &[u8]) {
        if self.finished() {
            return;
        }
        if self.is_ignored(frame) {
            self.ignored += 1;
            return;
        }
        self.transcript.push(format!("{now} < {}", describe(frame)));
        let line = self.script.lines[self.pos].clone();
        let got = Some(describe(frame));
        match &line.action {
            Action::Send(_) => {
                self.fail(
                    now,
                    "an unexpected frame came while this line waited to send".into(),
                    got,
                );
            }
            Action::Nothing => {
                self.fail(now, "expected nothing, a frame came".into(), got);
            }
            Action::Expect(spec) => {
                let due = self.due(&line);
                if line.time != TimeSpec::Any && now + self.script.options.tolerance < due {
                    self.fail(
                        now,
                        format!(
                            "frame came too early: expected at {due} ± {:?}",
                            self.script.options.tolerance
                        ),
                        got,
                    );
                    return;
                }
                match self.check(spec, frame) {
                    Ok(()) => self.advance(now),
                    Err(reason) => self.fail(now, reason, got),
                }
            }
        }
    }

    fn build(&mut self, spec: &PacketSpec) -> Result<Vec<u8>, String> {
        let src_mac = self.script.options.guest_mac;
        let dst_mac = self.engine_mac;
        let mut buf = vec![0u8; 70_000];
        let n = match spec {
            PacketSpec::Raw(bytes) => return Ok(bytes.clone()),
            PacketSpec::ArpRequest { target, sender } => wire::build_arp(
                &mut buf,
                src_mac,
                MacAddr::BROADCAST,
                &ArpRepr {
                    operation: ArpOperation::Request,
                    sender_hw: src_mac,
                    sender_ip: *sender,
                    target_hw: MacAddr::ZERO,
                    target_ip: *target,
                },
            ),
            PacketSpec::ArpReply { sender, mac } => wire::build_arp(
                &mut buf,
                *mac,
                dst_mac,
                &ArpRepr {
                    operation: ArpOperation::Reply,
                    sender_hw: *mac,
                    sender_ip: *sender,
                    target_hw: dst_mac,
                    target_ip: Ipv4Addr::UNSPECIFIED,
                },
            ),
            PacketSpec::Udp { flow, payload } => {
                let data = payload.bytes(0);
                wire::build_udp(
                    &mut buf,
                    src_mac,
                    dst_mac,
                    ip_repr(flow.guest.ip(), flow.remote.ip()),
                    &UdpRepr {
                        src_port: flow.guest.port(),
                        dst_port: flow.remote.port(),
                    },
                    &data,
                )
            }
            PacketSpec::Icmp {
                flow,
                reply,
                id,
                seq,
                payload,
            } => {
                let data = payload.bytes(0);
                match (flow.guest.ip(), flow.remote.ip()) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => {
                        let msg = if *reply {
                            Icmpv4Repr::EchoReply {
                                ident: *id,
                                seq_no: *seq,
                                data: &data,
                            }
                        } else {
                            Icmpv4Repr::EchoRequest {
                                ident: *id,
                                seq_no: *seq,
                                data: &data,
                            }
                        };
                        wire::build_icmpv4(&mut buf, src_mac, dst_mac, &v4(s, d), &msg)
                    }
                    (IpAddr::V6(s), IpAddr::V6(d)) => {
                        let msg = if *reply {
                            Icmpv6Repr::EchoReply {
                                ident: *id,
                                seq_no: *seq,
                                data: &data,
                            }
                        } else {
                            Icmpv6Repr::EchoRequest {
                                ident: *id,
                                seq_no: *seq,
                                data: &data,
                            }
                        };
                        wire::build_icmpv6(&mut buf, src_mac, dst_mac, &v6(s, d), &msg)
                    }
                    _ => return Err("mixed address families".into()),
                }
            }
            PacketSpec::Tcp {
                flow,
                flags,
                seq,
                payload,
                ack,
                win,
                options,
            } => {
                let isn = self.script.options.guest_isn;
                let ack = match ack {
                    None => 0,
                    Some(a) => match self.isns.get(flow).and_then(|p| p.engine) {
                        Some(e) => e.wrapping_add(*a),
                        None => {
                            return Err("`ack` is relative to the engine's ISN, but no SYN \
                                        from the engine has been seen on this flow"
                                .into());
                        }
                    },
                };
                let mut opts = TcpOptions::default();
                if let Some(o) = options {
                    opts.mss = o.mss;
                    opts.window_scale = o.wscale;
                    opts.sack_permitted = o.sack_ok;
                    opts.timestamps = o.ts.map(|(v, e)| (v.unwrap_or(0), e.unwrap_or(0)));
                }
                let repr = TcpRepr {
                    src_port: flow.guest.port(),
                    dst_port: flow.remote.port(),
                    seq: isn.wrapping_add(*seq),
                    ack,
                    flags: *flags,
                    window: win.unwrap_or(65535),
                    urgent: 0,
                    options: opts,
                };
                // Pattern payloads follow the stream offset (seq 1 is byte 0).
                let data = payload.bytes(u64::from(seq.saturating_sub(1)));
                wire::build_tcp(
                    &mut buf,
                    src_mac,
                    dst_mac,
                    ip_repr(flow.guest.ip(), flow.remote.ip()),
                    &repr,
                    &data,
                )
            }
        }
        .map_err(|e| format!("cannot build the frame: {e}"))?;
        // A copy of the frame's size: the scratch is sized for the largest
        // frame, and a burst of frames keeps each one in flight.
        Ok(buf[..n].to_vec())
    }

    fn check(&mut self, spec: &PacketSpec, frame: &[u8]) -> Result<(), String> {
        if let PacketSpec::Raw(bytes) = spec {
            if frame == bytes.as_slice() {
                return Ok(());
            }
            let i = bytes
                .iter()
                .zip(frame)
                .position(|(a, b)| a != b)
                .unwrap_or(bytes.len().min(frame.len()));
            return Err(format!(
                "frame differs at byte {i} (expected {} bytes, got {})",
                bytes.len(),
                frame.len()
            ));
        }
        let parsed =
            wire::parse_frame(frame).map_err(|e| format!("the frame does not parse: {e}"))?;
        let guest_mac = self.script.options.guest_mac;
        match (spec, parsed.l3) {
            (PacketSpec::ArpReply { sender, mac }, L3::Arp(a)) => {
                expect_eq("ARP operation", "reply", op_name(a.operation))?;
                expect_eq("ARP sender address", sender, &a.sender_ip)?;
                expect_eq("ARP sender MAC", mac, &a.sender_hw)?;
                expect_eq("ARP target MAC", &guest_mac, &a.target_hw)
            }
            (PacketSpec::ArpRequest { target, sender }, L3::Arp(a)) => {
                expect_eq("ARP operation", "request", op_name(a.operation))?;
                expect_eq("ARP target address", target, &a.target_ip)?;
                expect_eq("ARP sender address", sender, &a.sender_ip)
            }
            (PacketSpec::Udp { flow, payload }, L3::Ipv4 { ip, l4 }) => {
                check_ips(flow, IpAddr::V4(ip.src_addr), IpAddr::V4(ip.dst_addr))?;
                check_udp(flow, payload, l4)
            }
            (PacketSpec::Udp { flow, payload }, L3::Ipv6 { ip, l4 }) => {
                check_ips(flow, IpAddr::V6(ip.src_addr), IpAddr::V6(ip.dst_addr))?;
                check_udp(flow, payload, l4)
            }
            (
                PacketSpec::Icmp {
                    flow,
                    reply,
                    id,
                    seq,
                    payload,
                },
                L3::Ipv4 { ip, l4 },
            ) => {
                check_ips(flow, IpAddr::V4(ip.src_addr), IpAddr::V4(ip.dst_addr))?;
                let (r, i, s, d) = match l4 {
                    L4::Icmpv4(Icmpv4Repr::EchoReply {
                        ident,
                        seq_no,
                        data,
                    }) => (true, ident, seq_no, data),
                    L4::Icmpv4(Icmpv4Repr::EchoRequest {
                        ident,
                        seq_no,
                        data,
                    }) => (false, ident, seq_no, data),
                    _ => return Err("expected an ICMP echo message".into()),
                };
                check_echo((*reply, *id, *seq, payload), (r, i, s, d))
            }
            (
                PacketSpec::Icmp {
                    flow,
                    reply,
                    id,
                    seq,
                    payload,
                },
                L3::Ipv6 { ip, l4 },
            ) => {
                check_ips(flow, IpAddr::V6(ip.src_addr), IpAddr::V6(ip.dst_addr))?;
                let (r, i, s, d) = match l4 {
                    L4::Icmpv6(Icmpv6Repr::EchoReply {
                        ident,
                        seq_no,
                        data,
                    }) => (true, ident, seq_no, data),
                    L4::Icmpv6(Icmpv6Repr::EchoRequest {
                        ident,
                        seq_no,
                        data,
                    }) => (false, ident, seq_no, data),
                    _ => return Err("expected an ICMPv6 echo message".into()),
                };
                check_echo((*reply, *id, *seq, payload), (r, i, s, d))
            }
            (PacketSpec::Tcp { flow, .. }, L3::Ipv4 { ip, l4 }) => {
                check_ips(flow, IpAddr::V4(ip.src_addr), IpAddr::V4(ip.dst_addr))?;
                self.check_tcp(spec, l4)
            }
            (PacketSpec::Tcp { flow, .. }, L3::Ipv6 { ip, l4 }) => {
                check_ips(flow, IpAddr::V6(ip.src_addr), IpAddr::V6(ip.dst_addr))?;
                self.check_tcp(spec, l4)
            }
            (spec, _) => Err(format!("expected {}", kind_name(spec))),
        }
    }

    fn check_tcp(&mut self, spec: &PacketSpec, l4: L4<'_>) -> Result<(), String> {
        let PacketSpec::Tcp {
            flow,
            flags,
            seq,
            payload,
            ack,
            win,
            options,
        } = spec
        else {
            return Err("internal: not a TCP line".into());
        };
        let L4::Tcp { tcp, payload: data } = l4 else {
            return Err("expected a TCP segment".into());
        };
        expect_eq("source port", &flow.remote.port(), &tcp.src_port)?;
        expect_eq("destination port", &flow.guest.port(), &tcp.dst_port)?;
        if tcp.flags != *flags {
            return Err(format!(
                "flags: expected {}, got {}",
                flag_text(*flags),
                flag_text(tcp.flags)
            ));
        }
        let entry = self.isns.entry(*flow).or_default();
        let engine_isn = match entry.engine {
            Some(isn) => isn,
            None if flags.contains(TcpFlags::SYN) => {
                let isn = tcp.seq.wrapping_sub(*seq);
                entry.engine = Some(isn);
                isn
            }
            None => {
                return Err("a non-SYN segment before any SYN from the engine: \
                            its sequence numbers cannot be made relative"
                    .into());
            }
        };
        let rel_seq = tcp.seq.wrapping_sub(engine_isn);
        expect_eq("relative seq", seq, &rel_seq)?;
        if let Some(a) = ack {
            let rel_ack = tcp.ack.wrapping_sub(self.script.options.guest_isn);
            expect_eq("relative ack", a, &rel_ack)?;
        }
        if let Some(w) = win {
            expect_eq("window", w, &tcp.window)?;
        }
        if let Some(o) = options {
            let got = tcp.options;
            expect_eq("mss option", &o.mss, &got.mss)?;
            expect_eq("wscale option", &o.wscale, &got.window_scale)?;
            expect_eq("sackOK option", &o.sack_ok, &got.sack_permitted)?;
            match (o.ts, got.timestamps) {
                (None, None) => {}
                (Some((v, e)), Some((gv, ge))) => {
                    if let Some(v) = v {
                        expect_eq("TS val", &v, &gv)?;
                    }
                    if let Some(e) = e {
                        expect_eq("TS ecr", &e, &ge)?;
                    }
                }
                (want, got) => {
                    return Err(format!(
                        "timestamps option: expected {}, got {}",
                        if want.is_some() { "present" } else { "absent" },
                        if got.is_some() { "present" } else { "absent" }
                    ));
                }
            }
        }
        payload.check(data)
    }
}

fn check_ips(flow: &Flow, src: IpAddr, dst: IpAddr) -> Result<(), String> {
    expect_eq("source address", &flow.remote.ip(), &src)?;
    expect_eq("destination address", &flow.guest.ip(), &dst)
}

fn check_udp(flow: &Flow, payload: &Payload, l4: L4<'_>) -> Result<(), String> {
    let L4::Udp { udp, payload: data } = l4 else {
        return Err("expected a UDP datagram".into());
    };
    expect_eq("source port", &flow.remote.port(), &udp.src_port)?;
    expect_eq("destination port", &flow.guest.port(), &udp.dst_port)?;
    payload.check(data)
}

fn check_echo(
    want: (bool, u16, u16, &Payload),
    got: (bool, u16, u16, &[u8]),
) -> Result<(), String> {
    let name = |r: bool| if r { "echo-reply" } else { "echo" };
    expect_eq("ICMP type", name(want.0), name(got.0))?;
    expect_eq("ICMP id", &want.1, &got.1)?;
    expect_eq("ICMP seq", &want.2, &got.2)?;
    want.3.check(got.3)
}

fn expect_eq<T: PartialEq + fmt::Debug + ?Sized>(
    what: &str,
    want: &T,
    got: &T,
) -> Result<(), String> {
    if want == got {
        Ok(())
    } else {
        Err(format!("{what}: expected {want:?}, got {got:?}"))
    }
}

fn op_name(op: ArpOperation) -> &'static str {
    match op {
        ArpOperation::Request => "request",
        ArpOperation::Reply => "reply",
    }
}

fn kind_name(spec: &PacketSpec) -> &'static str {
    match spec {
        PacketSpec::Tcp { .. } => "a TCP segment",
        PacketSpec::Udp { .. } => "a UDP datagram",
        PacketSpec::Icmp { .. } => "an ICMP echo message",
        PacketSpec::ArpRequest { .. } => "an ARP request",
        PacketSpec::ArpReply { .. } => "an ARP reply",
        PacketSpec::Raw(_) => "exact bytes",
    }
}

/// Flags in the script's notation (`S.`, `P.`, `F.`, `R`).
pub fn flag_text(f: TcpFlags) -> String {
    let mut s = String::new();
    for (flag, c) in [
        (TcpFlags::SYN, 'S'),
        (TcpFlags::FIN, 'F'),
        (TcpFlags::RST, 'R'),
        (TcpFlags::PSH, 'P'),
        (TcpFlags::URG, 'U'),
        (TcpFlags::ECE, 'E'),
        (TcpFlags::CWR, 'W'),
        (TcpFlags::ACK, '.'),
    ] {
        if f.contains(flag) {
            s.push(c);
        }
    }
    if s.is_empty() {
        s.push_str("(none)");
    }
    s
}

fn describe(frame: &[u8]) -> String {
    match wire::parse_frame(frame) {
        Ok(p) => p.to_string(),
        Err(e) => format!("unparsable frame ({e}), {} bytes", frame.len()),
    }
}

fn v4(src: Ipv4Addr, dst: Ipv4Addr) -> Ipv4Repr {
    Ipv4Repr::new(src, dst, 0, 64)
}

fn v6(src: Ipv6Addr, dst: Ipv6Addr) -> Ipv6Repr {
    Ipv6Repr::new(src, dst, 0, 64)
}

fn ip_repr(src: IpAddr, dst: IpAddr) -> IpRepr {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => IpRepr::V4(v4(s, d)),
        (IpAddr::V6(s), IpAddr::V6(d)) => IpRepr::V6(v6(s, d)),
        // Flows are checked to be of one family at parse time.
        (IpAddr::V4(s), IpAddr::V6(_)) | (IpAddr::V6(_), IpAddr::V4(s)) => {
            IpRepr::V4(v4(s, Ipv4Addr::UNSPECIFIED))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_tcp_handshake() {
        let s = Script::parse(
            "# handshake\n\
             option tolerance 0.01\n\
             flow 192.0.2.15:40000 > 203.0.113.7:7\n\
             0 > S 0:0(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>\n\
             +0.02 < S. 0:0(0) ack 1 <mss 1460,wscale 7>\n\
             +0 > P. 1:6(5) ack 1 \"hello\"\n\
             * < . 1:1(0) ack 6\n\
             +1 < nothing\n",
        )
        .unwrap();
        assert_eq!(s.options.tolerance, Duration::from_millis(10));
        assert_eq!(s.lines.len(), 5);
        assert_eq!(s.lines[0].number, 4);
        let Action::Send(PacketSpec::Tcp {
            flags,
            options: Some(o),
            win,
            ..
        }) = &s.lines[0].action
        else {
            panic!("{:?}", s.lines[0]);
        };
        assert_eq!(*flags, TcpFlags::SYN);
        assert_eq!(*win, Some(65535));
        assert_eq!(o.mss, Some(1460));
        assert_eq!(o.wscale, Some(7));
        assert!(o.sack_ok);
        assert_eq!(o.ts, Some((Some(100), Some(0))));
        assert_eq!(
            s.lines[1].time,
            TimeSpec::Relative(Duration::from_millis(20))
        );
        let Action::Send(PacketSpec::Tcp { payload, .. }) = &s.lines[2].action else {
            panic!();
        };
        assert_eq!(*payload, Payload::Bytes(b"hello".to_vec()));
        assert_eq!(s.lines[3].time, TimeSpec::Any);
        assert_eq!(s.lines[4].action, Action::Nothing);
    }

    #[test]
    fn bad_scripts_name_their_line() {
        let cases = [
            ("0 > udp (3)", 1, "no flow declared"),
            (
                "flow 192.0.2.15:1 > 203.0.113.7:7\n\n0 > X 0:0(0)",
                3,
                "bad TCP flags",
            ),
            (
                "flow 192.0.2.15:1 > 203.0.113.7:7\n0 > S 0:5(3)",
                2,
                "END - START",
            ),
            ("+0.1 ! udp (3)", 1, "expected `>` or `<`"),
            ("option colour blue", 1, "unknown option"),
            (
                "flow 192.0.2.15:1 > [2001:db8::1]:7",
                1,
                "same address family",
            ),
            ("soon > udp (3)", 1, "expected a time"),
            ("* > udp (3)", 1, "only allowed on `<` lines"),
            (
                "flow 192.0.2.15:1 > 203.0.113.7:7\n0 > S 0:0(0) <mss 1460",
                2,
                "unterminated",
            ),
            (
                "flow 192.0.2.15:1 > 203.0.113.7:7\n0 > udp \"abc",
                2,
                "unterminated string",
            ),
            (
                "flow 192.0.2.15:1 > 203.0.113.7:7\n0 > S 0:0(0) <colour red>",
                2,
                "unknown TCP option",
            ),
            ("0 > arp who-has 192.0.2.1 tell", 1, "missing address"),
            ("0 > hex 0g", 1, "hex"),
        ];
        for (text, line, needle) in cases {
            let e = Script::parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.to_string().contains(needle), "{text}: {e}");
            assert!(
                e.to_string().starts_with(&format!("script line {line}: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn arp_round_trip_without_an_engine() {
        // The runner checks an ARP reply built by hand.
        let script = Script::parse(
            "0 > arp who-has 192.0.2.1 tell 192.0.2.15\n\
             +0 < arp reply 192.0.2.1 is-at 9a:55:9a:55:9a:55\n",
        )
        .unwrap();
        let mut g = ScriptGuest::new(script, MacAddr::PASST_DEFAULT, Instant::ZERO);
        let mut out = Vec::new();
        g.poll(Instant::ZERO, &mut out);
        assert_eq!(out.len(), 1);
        let mut buf = vec![0; 64];
        let n = wire::build_arp(
            &mut buf,
            MacAddr::PASST_DEFAULT,
            crate::demo::GUEST_MAC,
            &ArpRepr {
                operation: ArpOperation::Reply,
                sender_hw: MacAddr::PASST_DEFAULT,
                sender_ip: Ipv4Addr::new(192, 0, 2, 1),
                target_hw: crate::demo::GUEST_MAC,
                target_ip: Ipv4Addr::new(192, 0, 2, 15),
            },
        )
        .unwrap();
        g.on_frame(Instant::from_millis(1), &buf[..n]);
        assert_eq!(g.status(), &ScriptStatus::Passed);

        // A wrong MAC is reported precisely.
        let script = Script::parse("0 < arp reply 192.0.2.1 is-at 02:00:00:00:00:01\n").unwrap();
        let mut g = ScriptGuest::new(script, MacAddr::PASST_DEFAULT, Instant::ZERO);
        g.on_frame(Instant::from_millis(1), &buf[..n]);
        let m = g.mismatch().expect("mismatch");
        assert_eq!(m.line, 1);
        assert!(m.reason.contains("ARP sender MAC"), "{m}");
        assert!(m.got.as_deref().unwrap_or("").contains("ARP reply"), "{m}");
    }

    #[test]
    fn silence_fails_an_expectation_at_its_deadline() {
        let script = Script::parse("0.5 < arp reply 192.0.2.1 is-at 9a:55:9a:55:9a:55\n").unwrap();
        let mut g = ScriptGuest::new(script, MacAddr::PASST_DEFAULT, Instant::ZERO);
        assert_eq!(g.poll_at(), Some(Instant::from_millis(550)));
        let mut out = Vec::new();
        g.poll(Instant::from_millis(549), &mut out);
        assert!(!g.finished());
        g.poll(Instant::from_millis(550), &mut out);
        let m = g.mismatch().expect("mismatch");
        assert!(m.reason.contains("none came"), "{m}");
    }
}
