//! pasta's `auto` forwarding: the other side's socket tables, read once a
//! second, turned into the ports the forwarding table should follow.
//!
//! The tables (`/proc/net/{tcp,tcp6,udp,udp6}`) are opened once, at
//! start-up: a file of the namespace's is opened by a thread inside it
//! ([`NetNs::run_in`]), and a `/proc/net` file keeps showing the namespace
//! it was opened in. Each scan reads them again from the start (the kernel
//! regenerates them). Opening them before isolation is what lets the scan
//! go on after the process has lost sight of `/proc`.
//!
//! This module owns the open tables and the choice of ports per option;
//! the parsing is [`crate::sockscan`]'s, the listeners the
//! [`ForwardTable`]'s. It never binds a socket.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::forward::{Chan, Direction, ForwardTable, Proto};
use super::netns::NetNs;
use crate::host_io::Netns;
use crate::sockscan;

/// Bytes read from one table at most (a namespace with a million sockets
/// is not scanned whole; the scan stays bounded).
const MAX_TABLE_BYTES: u64 = 64 << 20;

/// The socket tables of one network namespace, open.
#[derive(Debug)]
pub struct SocketTables {
    dir: PathBuf,
    tcp: Vec<File>,
    udp: Vec<File>,
}

impl SocketTables {
    /// The tables under `dir` (`/proc/net`, `/proc/PID/net`, or
    /// `/proc/thread-self/net`); a table that does not exist (no IPv6) is
    /// left out, but at least one of `tcp` and `udp` must open.
    pub fn open_dir(dir: &Path) -> io::Result<SocketTables> {
        let open = |name: &str| File::open(dir.join(name)).ok();
        let tcp: Vec<File> = ["tcp", "tcp6"].into_iter().filter_map(open).collect();
        let udp: Vec<File> = ["udp", "udp6"].into_iter().filter_map(open).collect();
        if tcp.is_empty() && udp.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no socket tables under {}", dir.display()),
            ));
        }
        Ok(SocketTables {
            dir: dir.to_path_buf(),
            tcp,
            udp,
        })
    }

    /// The tables of the calling thread's own namespace.
    pub fn own() -> io::Result<SocketTables> {
        SocketTables::open_dir(Path::new("/proc/thread-self/net"))
    }

    /// The tables of namespace `ns`, opened by a thread inside it.
    pub fn of_namespace(ns: &NetNs) -> io::Result<SocketTables> {
        ns.run_in(SocketTables::own)?
    }

    /// Where they were opened (for messages).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn read_all(files: &[File], pick: fn(&str) -> BTreeSet<u16>) -> BTreeSet<u16> {
        let mut ports = BTreeSet::new();
        let mut text = String::new();
        for mut f in files {
            text.clear();
            if f.seek(SeekFrom::Start(0)).is_err() {
                continue;
            }
            if Read::by_ref(&mut f)
                .take(MAX_TABLE_BYTES)
                .read_to_string(&mut text)
                .is_err()
            {
                continue;
            }
            ports.extend(pick(&text));
        }
        ports
    }

    /// Ports of listening TCP sockets, both families.
    pub fn tcp_listening(&self) -> BTreeSet<u16> {
        Self::read_all(&self.tcp, sockscan::tcp_listening)
    }

    /// Ports of bound, unconnected UDP sockets, both families.
    pub fn udp_bound(&self) -> BTreeSet<u16> {
        Self::read_all(&self.udp, sockscan::udp_bound)
    }
}

/// The tables `auto` reads: the namespace's (for `-t`/`-u`) and the
/// host's (for `-T`/`-U`).
#[derive(Debug, Default)]
pub struct AutoScan {
    /// pasta's namespace.
    pub guest: Option<SocketTables>,
    /// The host's namespace (the process's own).
    pub host: Option<SocketTables>,
}

impl AutoScan {
    /// The host's tables (the calling thread's namespace) and, for pasta,
    /// the namespace's. Call it before isolation.
    pub fn open(guest: Option<&NetNs>) -> io::Result<AutoScan> {
        Ok(AutoScan {
            guest: guest.map(SocketTables::of_namespace).transpose()?,
            host: Some(SocketTables::own()?),
        })
    }

    /// The ports `auto` asks `chan` to forward: what listens (TCP) or is
    /// bound (UDP) on the other side, minus the ports this table bound
    /// there itself. UDP also follows the TCP ports found, as upstream's
    /// scan does (see `docs/decisions.md`). `None` when the other side's
    /// tables are not open.
    pub fn ports_for(&self, table: &ForwardTable, chan: Chan) -> Option<BTreeSet<u16>> {
        let (tables, side) = match chan.dir {
            Direction::Inbound => (self.guest.as_ref()?, Netns::Guest),
            Direction::Outbound => (self.host.as_ref()?, Netns::Host),
        };
        let tcp: BTreeSet<u16> = tables
            .tcp_listening()
            .difference(&table.own_ports(Proto::Tcp, side))
            .copied()
            .collect();
        Some(match chan.proto {
            Proto::Tcp => tcp,
            Proto::Udp => {
                let mut udp: BTreeSet<u16> = tables
                    .udp_bound()
                    .difference(&table.own_ports(Proto::Udp, side))
                    .copied()
                    .collect();
                udp.extend(tcp);
                udp
            }
        })
    }

    /// Scans for every `auto` option of `table`; returns whether any
    /// option's ports changed (the caller then resyncs the table).
    pub fn scan(&self, table: &mut ForwardTable) -> bool {
        let mut changed = false;
        for chan in table.auto_chans() {
            if let Some(ports) = self.ports_for(table, chan) {
                changed |= table.set_auto_ports(chan, ports);
            }
        }
        changed
    }
}
