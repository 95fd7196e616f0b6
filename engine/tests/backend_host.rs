//! The real arm of the `HostIo` conformance scenarios: `RealHost` against
//! the Linux kernel over loopback (127.0.0.1 and ::1 only), in both peek
//! modes. See `passt_engine::runtime::conformance`.
#![cfg(target_os = "linux")]

use passt_engine::host_io::Family;
use passt_engine::runtime::conformance::{self, RealWorld};
use passt_engine::runtime::{PeekMode, RealHost};

fn world(mode: Option<PeekMode>) -> RealWorld {
    let host = match mode {
        None => RealHost::new(),
        Some(m) => RealHost::with_peek_mode(m),
    }
    .expect("RealHost");
    RealWorld::new(host)
}

fn ipv6_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

fn run(name: &str, mode: Option<PeekMode>) {
    let mut ran = 0;
    for (n, scenario) in conformance::all::<RealWorld>() {
        if n != name {
            continue;
        }
        for family in [Family::V4, Family::V6] {
            if family == Family::V6 && !ipv6_available() {
                eprintln!("skipping {n} over IPv6: ::1 not available");
                continue;
            }
            let mut w = world(mode);
            if let Err(f) = scenario(&mut w, family) {
                panic!("{family:?} ({mode:?}): {f}");
            }
            ran += 1;
        }
    }
    assert!(ran > 0, "no scenario named {name}");
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(stringify!($name), None);
            }
        )*
    };
}

scenarios!(
    connect_then_writable,
    connect_refused,
    listen_accept,
    listen_addr_in_use,
    partial_writes,
    peek_offset_discard,
    fin_after_data,
    close_with_unread_data_resets,
    abort_resets,
    shutdown_write,
    peer_reset_is_reported,
    tcp_info_counts,
    splice_moves_bytes,
    splice_into_full_destination,
    udp_batches,
    udp_port_unreachable,
);

/// The peek scenarios again with the fallback that copies from the head.
#[test]
fn peek_fallback_mode() {
    run("peek_offset_discard", Some(PeekMode::CopyFromHead));
    run("fin_after_data", Some(PeekMode::CopyFromHead));
    run("shutdown_write", Some(PeekMode::CopyFromHead));
}

#[test]
fn every_scenario_is_listed_here() {
    // Keeps this file and `conformance::all` in step.
    assert_eq!(conformance::all::<RealWorld>().len(), 16);
}

#[test]
fn so_peek_off_detection_matches_kernel() {
    let host = RealHost::new().expect("RealHost");
    let supported = RealHost::kernel_supports_tcp_peek_off();
    assert_eq!(
        host.peek_mode() == PeekMode::PeekOffset,
        supported,
        "mode follows detection"
    );
    eprintln!("SO_PEEK_OFF on TCP: {supported}");
}

/// Restores `ping_group_range` when dropped.
struct PingRangeGuard(Option<String>);

impl Drop for PingRangeGuard {
    fn drop(&mut self) {
        if let Some(orig) = self.0.take() {
            let _ = std::fs::write("/proc/sys/net/ipv4/ping_group_range", orig);
        }
    }
}

#[test]
fn ping_sockets_echo_on_loopback() {
    const PATH: &str = "/proc/sys/net/ipv4/ping_group_range";
    let mut guard = PingRangeGuard(None);
    let mut w = world(None);
    let mut ok = conformance::ping_echo(&mut w, Family::V4, 0x4242).expect("v4");
    if !ok {
        // Root may widen the range for the test; put it back afterwards.
        let orig = std::fs::read_to_string(PATH).expect("read ping_group_range");
        if std::fs::write(PATH, "0 2147483647").is_ok() {
            eprintln!("widened {PATH} from {:?} for the test", orig.trim());
            guard.0 = Some(orig);
            ok = conformance::ping_echo(&mut w, Family::V4, 0x4242).expect("v4 after widening");
        }
    }
    if !ok {
        eprintln!("skipping: ping sockets not permitted and {PATH} not writable");
        return;
    }
    if ipv6_available() {
        assert!(conformance::ping_echo(&mut w, Family::V6, 0x4343).expect("v6"));
    }
    drop(guard);
}

/// `add_fd`/`modify_fd`/`remove_fd` put foreign descriptors (the tap, the
/// QEMU socket) in the same epoll set; readiness comes back with their
/// token, level-triggered, and `read_closed`/`hangup` when the peer goes.
#[test]
fn external_fds_share_the_epoll_set() {
    use passt_engine::{Interest, Token};
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::time::Duration;

    let mut host = RealHost::new().expect("RealHost");
    let (a, mut b) = std::os::unix::net::UnixStream::pair().expect("pair");
    let mut out = Vec::new();
    host.add_fd(a.as_fd(), Token(7), Interest::READ)
        .expect("add");
    assert_eq!(host.wait(Some(Duration::from_millis(20)), &mut out), Ok(0));
    b.write_all(b"x").expect("write");
    assert_eq!(host.wait(Some(Duration::from_secs(1)), &mut out), Ok(1));
    assert_eq!(out[0].0, Token(7));
    assert!(out[0].1.readable && !out[0].1.writable && !out[0].1.read_closed);
    // Level-triggered: still readable.
    out.clear();
    assert_eq!(host.wait(Some(Duration::from_millis(20)), &mut out), Ok(1));
    host.modify_fd(a.as_fd(), Token(8), Interest::BOTH)
        .expect("modify");
    out.clear();
    host.wait(Some(Duration::from_secs(1)), &mut out)
        .expect("wait");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, Token(8));
    assert!(out[0].1.readable && out[0].1.writable);
    drop(b);
    out.clear();
    host.wait(Some(Duration::from_secs(1)), &mut out)
        .expect("wait");
    assert!(out[0].1.read_closed && out[0].1.hangup, "{:?}", out[0].1);
    host.remove_fd(a.as_fd()).expect("remove");
    out.clear();
    assert_eq!(host.wait(Some(Duration::from_millis(20)), &mut out), Ok(0));
}

/// Unknown ids and wrong socket kinds are `BadSocket`, not a syscall on a
/// stranger's descriptor.
#[test]
fn bad_ids_are_rejected() {
    use passt_engine::host_io::{HostError, HostIo, SockId};
    let mut host = RealHost::new().expect("RealHost");
    assert_eq!(host.tcp_send(SockId(999), b"x"), Err(HostError::BadSocket));
    let udp = host.udp_bind("127.0.0.1:0".parse().unwrap()).expect("udp");
    assert_eq!(host.tcp_send(udp, b"x"), Err(HostError::BadSocket));
    assert_eq!(host.tcp_accept(udp).map(|_| ()), Err(HostError::BadSocket));
    host.close(udp);
    assert_eq!(host.local_addr(udp), Err(HostError::BadSocket));
}
