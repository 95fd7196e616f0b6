//! Reading the kernel's socket tables, `/proc/net/{tcp,tcp6,udp,udp6}`
//! (proc(5)), as text: which TCP ports listen and which UDP ports are
//! bound. pasta's `auto` forwarding follows them.
//!
//! Format (one header line, then one line per socket):
//! `sl local_address rem_address st ...`, where an address is
//! `HEXADDR:HEXPORT`. The address is the kernel's 32-bit words printed in
//! the host's byte order (8 hex digits for IPv4, 32 for IPv6), the port
//! big-endian hex. `st` is the TCP state in hex: `0A` is `TCP_LISTEN`;
//! a UDP socket that is bound but not connected shows `07` (`TCP_CLOSE`).
//!
//! This module is pure parsing of text: it never opens a file. Lines it
//! cannot read are skipped and counted, never a panic.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `TCP_LISTEN` in the `st` column.
pub const STATE_LISTEN: u8 = 0x0a;
/// `TCP_CLOSE`: an unconnected UDP socket.
pub const STATE_CLOSE: u8 = 0x07;

/// One socket line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SockEntry {
    /// Local address.
    pub addr: IpAddr,
    /// Local port.
    pub port: u16,
    /// The `st` column.
    pub state: u8,
}

/// The socket lines of a table, and how many lines could not be read.
pub fn parse(text: &str) -> (Vec<SockEntry>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    // The first line is the header.
    for line in text.lines().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Some(e) => out.push(e),
            None => bad += 1,
        }
    }
    (out, bad)
}

fn parse_line(line: &str) -> Option<SockEntry> {
    let mut fields = line.split_whitespace();
    let slot = fields.next()?;
    if !slot.ends_with(':') {
        return None;
    }
    let local = fields.next()?;
    let _remote = fields.next()?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    let (addr, port) = local.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SockEntry {
        addr: parse_addr(addr)?,
        port,
        state,
    })
}

/// `0100007F` (127.0.0.1 on a little-endian host) or 32 hex digits for
/// IPv6: 32-bit words in the host's byte order.
fn parse_addr(hex: &str) -> Option<IpAddr> {
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes);
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(hex)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(&hex[i * 8..i * 8 + 8])?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// Ports of the listening TCP sockets of a `tcp`/`tcp6` table.
pub fn tcp_listening(text: &str) -> BTreeSet<u16> {
    ports_in_state(text, STATE_LISTEN)
}

/// Ports of the bound, unconnected UDP sockets of a `udp`/`udp6` table.
pub fn udp_bound(text: &str) -> BTreeSet<u16> {
    ports_in_state(text, STATE_CLOSE)
}

fn ports_in_state(text: &str, state: u8) -> BTreeSet<u16> {
    parse(text)
        .0
        .into_iter()
        .filter(|e| e.state == state && e.port != 0)
        .map(|e| e.port)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21370 1 0000000000000000 100 0 0 10 0
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 31337 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:A2C4 01 00000000:00000000 00:00000000 00000000  1000        0 31338 1 0000000000000000 20 4 30 10 -1
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 18243 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 18244 1 0000000000000000 100 0 0 10 0
";

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 19921 2 0000000000000000 0
  456: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000   105        0 20000 2 0000000000000000 0
  789: 0100007F:D431 0100007F:0035 01 00000000:00000000 00:00000000 00000000  1000        0 40000 2 0000000000000000 0
";

    #[test]
    fn listening_tcp_ports_are_found_and_connections_are_not() {
        assert_eq!(tcp_listening(TCP), BTreeSet::from([631, 8080]));
    }

    #[test]
    fn addresses_are_read_in_the_hosts_byte_order() {
        let (entries, bad) = parse(TCP);
        assert_eq!(bad, 0);
        if cfg!(target_endian = "little") {
            assert_eq!(entries[0].addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
            let (v6, _) = parse(TCP6);
            assert_eq!(v6[0].addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
            assert_eq!(v6[1].addr, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        }
        assert_eq!(entries[2].state, 0x01);
    }

    #[test]
    fn ipv6_listening_ports_are_found() {
        assert_eq!(tcp_listening(TCP6), BTreeSet::from([22, 443]));
    }

    #[test]
    fn bound_udp_ports_are_found_and_connected_ones_are_not() {
        assert_eq!(udp_bound(UDP), BTreeSet::from([53, 5353]));
    }

    #[test]
    fn garbage_lines_are_counted_not_fatal() {
        let text = "header\n 0: zz:0016 0:0 0A\n1: 0100007F:0016 00000000:0000 0A\nnot a line\n 2: 0100007F:FFFFF 0:0 0A\n 3: 0100007F:0016\n\n";
        let (entries, bad) = parse(text);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].port, 22);
        assert_eq!(bad, 4);
        assert!(tcp_listening("").is_empty());
        assert!(tcp_listening("only a header").is_empty());
    }
}
