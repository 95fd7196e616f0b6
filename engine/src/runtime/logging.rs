//! A tiny process-wide logger for the binaries: five levels, one sink
//! (standard error, a size-capped file, the system logger, or nowhere).
//!
//! It owns the log sink and nothing else; it is not on any per-packet path
//! unless `--trace` asks for it ([`enabled`] is one relaxed atomic load).
//!
//! A log file (`-l`) never grows past `--log-size`: when a line would not
//! fit, the oldest whole lines are dropped from the start of the file
//! (down to three quarters of the size, so that this happens once in a
//! while rather than at every line), as passt(1) describes. The system
//! logger gets RFC 3164 datagrams on `/dev/log` (facility daemon).

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant as StdInstant;

/// Severity, most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Something failed.
    Error = 0,
    /// Something odd but survivable (a refused client, a bad frame length).
    Warn = 1,
    /// Start-up information (`-q` hides it).
    Info = 2,
    /// `-d`.
    Debug = 3,
    /// `--trace`: per-frame messages.
    Trace = 4,
}

/// Where log lines go.
#[derive(Debug)]
pub enum Sink {
    /// Standard error, as lines without decoration (what upstream prints in
    /// the foreground).
    Stderr,
    /// A file (`-l`), each line stamped with seconds since start. When a line
    /// would take it past `max_size` bytes, the oldest lines are dropped.
    File {
        /// The open file.
        file: File,
        /// `--log-size`.
        max_size: u64,
    },
    /// The system logger (`/dev/log`): a daemon without `-l`.
    Syslog(UnixDatagram),
    /// Nowhere (a daemon without `-l`).
    Discard,
}

struct Logger {
    sink: Sink,
    written: u64,
    start: StdInstant,
    /// Our PID for syslog lines, read when the sink is set (after the
    /// seccomp filter `getpid` is not allowed). A sandboxed daemon is
    /// PID 1 of its own PID namespace: that is what its lines say; the
    /// logger learns the real one from the socket's credentials.
    pid: u32,
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Warn as u8);
static LOGGER: Mutex<Option<Logger>> = Mutex::new(None);

/// Sets the level and the sink. Before this is called, warnings and errors
/// go to standard error.
pub fn init(level: Level, sink: Sink) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
    let written = match &sink {
        Sink::File { file, .. } => file.metadata().map(|m| m.len()).unwrap_or(0),
        _ => 0,
    };
    if let Ok(mut g) = LOGGER.lock() {
        *g = Some(Logger {
            sink,
            written,
            start: StdInstant::now(),
            pid: std::process::id(),
        });
    }
}

/// Standard error went away (the daemon's is `/dev/null`): its sink
/// becomes `instead` (the system logger, or [`Sink::Discard`]); a file
/// sink stays as it is (reopening it could fail once the process is
/// isolated).
pub fn stderr_closed(instead: Sink) {
    if let Ok(mut g) = LOGGER.lock()
        && let Some(logger) = g.as_mut()
        && matches!(logger.sink, Sink::Stderr)
    {
        logger.sink = instead;
        logger.pid = std::process::id();
    }
}

/// Opens `path` as a file sink: lines are added at its end.
pub fn file_sink(path: &Path, max_size: u64) -> std::io::Result<Sink> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(path)?;
    file.seek(SeekFrom::End(0))?;
    Ok(Sink::File { file, max_size })
}

/// The system logger's socket, connected (`/dev/log`), or the error when
/// there is none (containers often have none).
pub fn syslog_sink() -> std::io::Result<Sink> {
    let sock = UnixDatagram::unbound()?;
    sock.connect("/dev/log")?;
    Ok(Sink::Syslog(sock))
}

/// One RFC 3164 message: `<PRI>TAG[PID]: MSG`, facility daemon (3).
pub fn syslog_line(level: Level, pid: u32, msg: &str) -> String {
    let severity = match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    };
    format!("<{}>passt[{pid}]: {msg}", 3 * 8 + severity)
}

/// Makes room for `incoming` bytes in a log file holding `written` bytes
/// and capped at `max_size`: drops whole lines from the start until the
/// rest plus `incoming` fits in three quarters of `max_size` (or the file
/// is empty). Returns the bytes kept.
fn rotate(file: &mut File, written: u64, incoming: u64, max_size: u64) -> std::io::Result<u64> {
    let mut content = Vec::with_capacity(written.min(max_size) as usize);
    // The newest `max_size` bytes at most (the file may have been larger
    // before this run).
    file.seek(SeekFrom::Start(written.saturating_sub(max_size)))?;
    (&mut *file).take(max_size).read_to_end(&mut content)?;
    let target = (max_size / 4 * 3).saturating_sub(incoming) as usize;
    let kept = drop_oldest_lines(&content, target);
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(kept)?;
    Ok(kept.len() as u64)
}

/// The newest whole lines of `content` that fit in `target` bytes.
fn drop_oldest_lines(content: &[u8], target: usize) -> &[u8] {
    if content.len() <= target {
        return content;
    }
    // Keep from the first line start at or after `from` (a line starts
    // after a newline); `from >= 1` here.
    let from = content.len() - target;
    match content[from - 1..].iter().position(|&b| b == b'\n') {
        Some(i) => &content[from + i..],
        None => &[],
    }
}

/// Whether messages at `level` are kept.
pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Logs one message (one line) at `level`.
pub fn log(level: Level, args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let Ok(mut g) = LOGGER.lock() else { return };
    let Some(logger) = g.as_mut() else {
        eprintln!("{args}");
        return;
    };
    match &mut logger.sink {
        Sink::Stderr => {
            eprintln!("{args}");
        }
        Sink::Discard => {}
        Sink::Syslog(sock) => {
            let line = syslog_line(level, logger.pid, &args.to_string());
            let _ = sock.send(line.as_bytes());
        }
        Sink::File { file, max_size } => {
            let line = format!("{:.4}: {}\n", logger.start.elapsed().as_secs_f64(), args);
            let len = line.len() as u64;
            if logger.written + len > *max_size {
                match rotate(file, logger.written, len, *max_size) {
                    Ok(kept) => logger.written = kept,
                    Err(_) => return,
                }
            }
            // A single line longer than the whole file is cut.
            let bytes = &line.as_bytes()[..line.len().min(*max_size as usize)];
            if file.write_all(bytes).is_ok() {
                logger.written += bytes.len() as u64;
            }
        }
    }
}

/// `error!`-style shorthands, usable anywhere in the crate's backend.
#[allow(unused_macros)]
macro_rules! log_error { ($($a:tt)*) => { $crate::runtime::logging::log($crate::runtime::logging::Level::Error, format_args!($($a)*)) } }
macro_rules! log_warn { ($($a:tt)*) => { $crate::runtime::logging::log($crate::runtime::logging::Level::Warn, format_args!($($a)*)) } }
macro_rules! log_info { ($($a:tt)*) => { $crate::runtime::logging::log($crate::runtime::logging::Level::Info, format_args!($($a)*)) } }
macro_rules! log_debug { ($($a:tt)*) => { $crate::runtime::logging::log($crate::runtime::logging::Level::Debug, format_args!($($a)*)) } }
macro_rules! log_trace { ($($a:tt)*) => { if $crate::runtime::logging::enabled($crate::runtime::logging::Level::Trace) { $crate::runtime::logging::log($crate::runtime::logging::Level::Trace, format_args!($($a)*)) } } }
#[allow(unused_imports)]
pub(crate) use {log_debug, log_error, log_info, log_trace, log_warn};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered() {
        assert!(Level::Error < Level::Warn && Level::Info < Level::Trace);
    }

    #[test]
    fn the_oldest_whole_lines_are_dropped() {
        let c = b"one\ntwo\nthree\n";
        assert_eq!(drop_oldest_lines(c, 100), c);
        // A cut right at a line start keeps that line.
        assert_eq!(drop_oldest_lines(c, 10), b"two\nthree\n");
        assert_eq!(drop_oldest_lines(c, 9), b"three\n");
        assert_eq!(drop_oldest_lines(c, 8), b"three\n");
        assert_eq!(drop_oldest_lines(c, 5), b"");
        assert_eq!(drop_oldest_lines(c, 0), b"");
    }

    #[test]
    fn a_full_log_file_keeps_its_newest_lines() {
        let dir = std::env::temp_dir().join(format!("passt-log-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let Sink::File { mut file, max_size } = file_sink(&dir, 100).unwrap() else {
            unreachable!()
        };
        let mut written = 0u64;
        for i in 0..40 {
            let line = format!("line {i:02}\n");
            if written + line.len() as u64 > max_size {
                written = rotate(&mut file, written, line.len() as u64, max_size).unwrap();
            }
            file.write_all(line.as_bytes()).unwrap();
            written += line.len() as u64;
        }
        let text = std::fs::read_to_string(&dir).unwrap();
        let _ = std::fs::remove_file(&dir);
        assert!(text.len() as u64 <= max_size, "{}", text.len());
        assert!(text.ends_with("line 39\n"), "{text}");
        assert!(!text.contains("line 00"), "{text}");
        assert!(text.starts_with("line "), "whole lines only: {text}");
        assert_eq!(text.len() as u64, written);
    }

    #[test]
    fn syslog_lines_follow_rfc_3164() {
        assert_eq!(syslog_line(Level::Error, 7, "x"), "<27>passt[7]: x");
        assert_eq!(syslog_line(Level::Info, 7, "y"), "<30>passt[7]: y");
        assert_eq!(syslog_line(Level::Debug, 1, "z"), "<31>passt[1]: z");
    }
}
