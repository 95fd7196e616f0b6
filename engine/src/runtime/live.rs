//! Forwarding that changes while the engine runs: the live table, the
//! `auto` rescan (a timer of the event loop, once a second) and the
//! control socket, held together for the loop.
//!
//! It owns the schedule of the rescans and the translation of control
//! requests into table operations; the diff of listeners is the
//! [`ForwardTable`]'s, the socket tables are [`AutoScan`]'s, the protocol
//! is [`ControlServer`]'s. It never blocks and never spawns a thread.

use std::time::Duration;

use super::autoscan::AutoScan;
use super::control::{ControlServer, ControlStats, Outcome};
use super::forward::{Chan, ForwardTable, Op, Pif};
use super::host::RealHost;
use super::logging::{log_debug, log_info, log_warn};
use crate::control::RequestOp;
use crate::engine::Engine;
use crate::host_io::{HostError, Readiness, Token};
use crate::time::Instant;

/// Time between two `auto` scans (pasta(1): "every second").
pub const SCAN_INTERVAL: Duration = Duration::from_secs(1);

/// The live forwarding of one instance. See the module docs.
#[derive(Debug)]
pub struct LiveForwarding {
    table: ForwardTable,
    scan: Option<AutoScan>,
    next_scan: Option<Instant>,
    control: Option<ControlServer>,
    scans: u64,
}

impl LiveForwarding {
    /// The table bound at start-up, with neither scan nor control socket.
    pub fn new(table: ForwardTable) -> Self {
        LiveForwarding {
            table,
            scan: None,
            next_scan: None,
            control: None,
            scans: 0,
        }
    }

    /// Scans with `scan` for the table's `auto` options: the first scan
    /// runs at the loop's first round, then every [`SCAN_INTERVAL`].
    pub fn with_auto_scan(mut self, scan: AutoScan) -> Self {
        self.scan = Some(scan);
        self.next_scan = Some(Instant::ZERO);
        self
    }

    /// Serves `pesto` on `control`.
    pub fn with_control(mut self, control: ControlServer) -> Self {
        self.control = Some(control);
        self
    }

    /// The table.
    pub fn table(&self) -> &ForwardTable {
        &self.table
    }

    /// Scans done so far.
    pub fn scans(&self) -> u64 {
        self.scans
    }

    /// The control socket's counts, if there is one.
    pub fn control_stats(&self) -> Option<ControlStats> {
        self.control.as_ref().map(ControlServer::stats)
    }

    /// Registers the control socket in the loop's epoll set.
    pub fn register(&self, host: &mut RealHost) -> Result<(), HostError> {
        match &self.control {
            Some(c) => c.register(host),
            None => Ok(()),
        }
    }

    /// Whether `token` is one of this object's descriptors.
    pub fn owns(&self, token: Token) -> bool {
        self.control.is_some() && ControlServer::owns(token)
    }

    /// The next rescan or client deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        let c = self.control.as_ref().and_then(ControlServer::next_deadline);
        match (self.next_scan, c) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs what is due at `now`: a rescan (and the listeners it changes),
    /// dropping clients past their deadline.
    pub fn on_timer(&mut self, engine: &mut Engine<RealHost>, now: Instant) {
        if let Some(c) = &mut self.control {
            c.on_timer(engine.host_mut(), now);
        }
        let Some(due) = self.next_scan else { return };
        if now < due {
            return;
        }
        self.next_scan = Some(now.saturating_add(SCAN_INTERVAL));
        let Some(scan) = &self.scan else { return };
        self.scans += 1;
        if !scan.scan(&mut self.table) {
            return;
        }
        match self.table.resync(engine) {
            Ok(r) => {
                for run in &r.bound {
                    log_debug!("auto: forwarding {run}");
                }
                if r.closed > 0 {
                    log_debug!("auto: {} listener(s) closed", r.closed);
                }
            }
            Err(e) => log_warn!("auto: {e}"),
        }
    }

    /// Readiness for one of this object's tokens.
    pub fn on_event(
        &mut self,
        engine: &mut Engine<RealHost>,
        now: Instant,
        token: Token,
        readiness: Readiness,
    ) {
        let Some(control) = &mut self.control else {
            return;
        };
        if let Some((slot, ops)) = control.on_event(engine.host_mut(), now, token, readiness) {
            let outcome = apply_request(&mut self.table, engine, ops);
            control.reply(engine.host_mut(), slot, outcome);
        }
    }
}

/// Applies one `pesto` request to `table` (all of it or nothing).
pub fn apply_request(
    table: &mut ForwardTable,
    engine: &mut Engine<RealHost>,
    ops: Vec<RequestOp>,
) -> Outcome {
    let mut edits = Vec::with_capacity(ops.len());
    for op in &ops {
        let chan = |option: char| {
            Chan::from_option(option).ok_or_else(|| format!("Unknown option -{option}"))
        };
        edits.push(match op {
            RequestOp::Add { option, spec } => Op::Add(chan(*option)?, spec.clone()),
            RequestOp::Delete { option, spec } => Op::Delete(chan(*option)?, spec.clone()),
            RequestOp::Clear { pif } => {
                Op::Clear(Pif::parse(pif).ok_or_else(|| format!("Unknown pif '{pif}'"))?)
            }
            RequestOp::Show => continue,
        });
    }
    if !edits.is_empty() {
        let rules = table.edit(&edits).map_err(|e| e.to_string())?;
        let report = table.apply(engine, rules).map_err(|e| e.to_string())?;
        log_info!(
            "pesto: {} change(s) applied: {} listener(s) opened, {} closed",
            edits.len(),
            report.sockets,
            report.closed
        );
    }
    Ok(table.show())
}
