//! `RealHost` against the Linux kernel, beyond the conformance scenarios
//! (those run in `conformance/tests/real_kernel`): peek-offset detection,
//! foreign descriptors in the epoll set, and bad socket ids.
#![cfg(target_os = "linux")]

mod netns;

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

/// `Place::device` binds with `SO_BINDTODEVICE`: `lo` exists, a made-up
/// name is `ENODEV`, and a guest-namespace socket before any namespace
/// was set is unsupported.
#[test]
fn sockets_are_made_where_their_place_says() {
    use passt_engine::{HostError, HostIo, IfName, Place};
    use std::net::SocketAddr;

    let mut host = RealHost::new().expect("RealHost");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let on_lo = Place {
        device: IfName::new("lo"),
        ..Place::HOST
    };
    let l = host.tcp_listen_at(on_lo, any, 8).expect("listen on lo");
    host.close(l);
    let nowhere = Place {
        device: IfName::new("nosuchdev9"),
        ..Place::HOST
    };
    assert_eq!(
        host.udp_bind_at(nowhere, any),
        Err(HostError::Other(libc::ENODEV))
    );
    assert_eq!(
        host.tcp_listen_at(Place::GUEST, any, 8),
        Err(HostError::Unsupported)
    );
    assert!(IfName::new("").is_none() && IfName::new("sixteen-bytes-xx").is_none());
}

/// A listener made in the guest's namespace is reachable from there and
/// not from the host's: the socket was made on a thread inside it.
#[test]
fn guest_namespace_sockets_live_in_that_namespace() {
    use passt_engine::runtime::NetNs;
    use passt_engine::{HostError, HostIo, Place};
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    // A namespace of this test's own, entered by a helper thread that
    // stays alive (holding it open) while the test uses it.
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let keeper = std::thread::spawn(move || {
        let ns = netns::enter_private_netns().and_then(|()| NetNs::current());
        tx.send(ns).unwrap();
        let _ = done_rx.recv();
    });
    let ns = match rx.recv().unwrap() {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("SKIPPED: cannot create a network namespace ({e}); run as root");
            let _ = done_tx.send(());
            keeper.join().unwrap();
            return;
        }
    };
    let mut host = RealHost::new().expect("RealHost");
    host.set_guest_netns(ns);
    let l = host
        .tcp_listen_at(Place::GUEST, "127.0.0.1:0".parse().unwrap(), 8)
        .expect("listen in the namespace");
    let addr: SocketAddr = host.local_addr(l).expect("bound");
    // From the host's namespace the port is not there (or is someone
    // else's): connecting to it must not reach our listener.
    if let Ok((c, _)) = host.tcp_connect(None, addr) {
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(host.tcp_accept(l).map(|_| ()), Err(HostError::WouldBlock));
        host.close(c);
    }
    let (c, _) = host
        .tcp_connect_at(Place::GUEST, None, addr)
        .expect("connect inside the namespace");
    let deadline = Instant::now() + Duration::from_secs(5);
    let accepted = loop {
        match host.tcp_accept(l) {
            Ok(a) => break a,
            Err(HostError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    assert_eq!(accepted.2, addr);
    host.close(accepted.0);
    host.close(c);
    host.close(l);
    let _ = done_tx.send(());
    keeper.join().unwrap();
}
