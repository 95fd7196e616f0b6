//! A network namespace of the test thread's own, with `lo` up: the one
//! helper every real-socket test uses so that only its private loopback is
//! ever touched.

use std::io;

/// Moves the calling thread into a fresh network namespace and brings its
/// `lo` up. Fails when namespaces are not permitted (not root).
pub fn enter_private_netns() -> io::Result<()> {
    // SAFETY: plain syscalls on values we own; every result is checked.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNET) != 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &mut req);
        }
        let err = io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// [`enter_private_netns`] for a test that needs it: false (and a loud
/// SKIPPED line) when it is not possible.
#[allow(dead_code)]
pub fn enter_or_skip() -> bool {
    match enter_private_netns() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("SKIPPED: cannot create a network namespace ({e}); run as root");
            false
        }
    }
}
