//! A tiny process-wide logger for the binaries: five levels, one sink
//! (standard error, a size-capped file, or nowhere).
//!
//! It owns the log sink and nothing else; it is not on any per-packet path
//! unless `--trace` asks for it ([`enabled`] is one relaxed atomic load).

use std::fmt;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
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
    /// would take it past `max_size` bytes, the file is emptied first
    /// (upstream instead drops the oldest lines; see docs/cli.md).
    File {
        /// The open file.
        file: File,
        /// `--log-size`.
        max_size: u64,
    },
    /// Nowhere (a daemon without `-l`).
    Discard,
}

struct Logger {
    sink: Sink,
    written: u64,
    start: StdInstant,
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
        });
    }
}

/// Standard error went away (the daemon's is `/dev/null`): its sink
/// becomes [`Sink::Discard`]; a file sink stays as it is (reopening it
/// could fail once the process is isolated).
pub fn stderr_closed() {
    if let Ok(mut g) = LOGGER.lock()
        && let Some(logger) = g.as_mut()
        && matches!(logger.sink, Sink::Stderr)
    {
        logger.sink = Sink::Discard;
    }
}

/// Opens `path` for appending as a file sink.
pub fn file_sink(path: &Path, max_size: u64) -> std::io::Result<Sink> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    Ok(Sink::File { file, max_size })
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
        Sink::File { file, max_size } => {
            let line = format!("{:.4}: {}\n", logger.start.elapsed().as_secs_f64(), args);
            let len = line.len() as u64;
            if logger.written + len > *max_size {
                let _ = file.set_len(0);
                let _ = file.seek(SeekFrom::Start(0));
                logger.written = 0;
            }
            if file.write_all(line.as_bytes()).is_ok() {
                logger.written += len;
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
}
