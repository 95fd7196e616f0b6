//! `RealHost` against the Linux kernel, beyond the conformance scenarios
//! (those run in `conformance/tests/real_kernel`): peek-offset detection,
//! foreign descriptors in the epoll set, and bad socket ids.
#![cfg(target_os = "linux")]

use passt_engine::runtime::{PeekMode, RealHost};

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
