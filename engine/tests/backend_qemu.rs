//! QEMU stream framing over a real socket pair: a tiny send buffer forces
//! short writes, and the other side must still get every frame byte-exact.
#![cfg(target_os = "linux")]

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use passt_engine::runtime::transport::framing::{FrameReader, FrameWriter, MIN_PADDED};
use passt_engine::{HostError, TxQueue};

fn frame(i: usize) -> Vec<u8> {
    let len = match i % 11 {
        0 => 14,
        1 => 59,
        2 => 60,
        3 => 1514,
        4 => 65535,
        5 => 9000,
        6 => 61,
        _ => 200 + (i * 37) % 3000,
    };
    (0..len)
        .map(|k| (k as u8) ^ (i as u8).wrapping_mul(13))
        .collect()
}

fn set_buf(fd: i32, opt: i32, size: i32) {
    // SAFETY: pointer and length describe `size`.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &size as *const i32 as *const libc::c_void,
            4,
        )
    };
    assert_eq!(r, 0);
}

#[test]
fn socketpair_with_tiny_send_buffer_delivers_every_frame_exactly() {
    const FRAMES: usize = 1500;
    let (tx, mut rx) = UnixStream::pair().expect("socketpair");
    set_buf(tx.as_raw_fd(), libc::SO_SNDBUF, 4096);
    set_buf(rx.as_raw_fd(), libc::SO_RCVBUF, 4096);
    tx.set_nonblocking(true).expect("nonblocking");
    rx.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");

    let reader = std::thread::spawn(move || {
        let mut r = FrameReader::new();
        let mut got: Vec<Vec<u8>> = Vec::new();
        loop {
            let spare = r.spare();
            let n = rx.read(spare).expect("read");
            if n == 0 {
                assert_eq!(r.buffered(), 0, "stream ended inside a frame");
                return got;
            }
            r.commit(n);
            while let Some(f) = r.next_frame().expect("valid framing") {
                got.push(f.to_vec());
            }
        }
    });

    let mut q = TxQueue::new(64, 512 * 1024);
    let mut w = FrameWriter::new();
    let mut next = 0;
    let mut written = 0;
    let mut short = 0;
    let mut torn = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while written < FRAMES || w.has_pending() {
        assert!(Instant::now() < deadline, "stalled at {written}/{FRAMES}");
        while next < FRAMES && q.push(&frame(next)).is_ok() {
            next += 1;
        }
        let queued = q.len();
        match w.send_queue(tx.as_fd(), &mut q) {
            Ok(n) => {
                written += n;
                short += usize::from(n < queued);
                torn += usize::from(w.has_pending());
            }
            Err(HostError::WouldBlock) => {
                let mut pfd = libc::pollfd {
                    fd: tx.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, 1000) };
            }
            Err(e) => panic!("send_queue: {e:?}"),
        }
    }
    assert!(q.is_empty());
    drop(tx);
    let got = reader.join().expect("reader thread");
    assert_eq!(got.len(), FRAMES);
    for (i, f) in got.iter().enumerate() {
        let mut want = frame(i);
        want.resize(want.len().max(MIN_PADDED), 0);
        assert_eq!(*f, want, "frame {i}");
    }
    assert!(
        short > 0,
        "no short write happened: the test proves nothing"
    );
    assert!(torn > 0, "no frame was ever cut by a short write");
    eprintln!("short writes: {short}, cut frames: {torn}");
}
