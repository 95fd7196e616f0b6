//! The real clock and the real entropy source, for whoever builds an engine.
//!
//! [`now`] reads `CLOCK_MONOTONIC` (never goes back, not affected by
//! settimeofday) as an engine [`Instant`]; [`random_seed`] draws the one
//! 64-bit seed the engine's [`crate::Rng`] starts from.

use crate::time::Instant;

/// Monotonic time since boot (`clock_gettime(CLOCK_MONOTONIC)`).
pub fn now() -> Instant {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec. CLOCK_MONOTONIC cannot
    // fail on Linux; if it somehow did, `ts` stays zero.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let nanos = (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64);
    Instant::from_nanos(nanos)
}

/// 64 bits from the kernel's random pool (`getrandom(2)`). Should the
/// syscall be unavailable, falls back to mixing the monotonic and realtime
/// clocks with the pid: weak, but the engine's secrets (RFC 6528 ISN keys)
/// then still differ per run.
pub fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    let mut filled = 0;
    let mut attempts = 0;
    while filled < bytes.len() && attempts < 16 {
        attempts += 1;
        // SAFETY: the pointer and length describe the unfilled tail of `bytes`.
        let r = unsafe {
            libc::getrandom(
                bytes[filled..].as_mut_ptr() as *mut libc::c_void,
                bytes.len() - filled,
                0,
            )
        };
        if r > 0 {
            filled += r as usize;
        } else if super::sys::errno() != libc::EINTR {
            break;
        }
    }
    if filled == bytes.len() {
        return u64::from_ne_bytes(bytes);
    }
    let mut rt = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut rt) };
    let mut state = now().as_nanos() ^ ((rt.tv_nsec as u64) << 20) ^ std::process::id() as u64;
    crate::rng::splitmix64(&mut state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_monotonic_and_moves() {
        let a = now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = now();
        assert!(b > a);
        assert!(b - a >= std::time::Duration::from_millis(2));
    }

    #[test]
    fn seeds_differ() {
        let seeds: Vec<u64> = (0..4).map(|_| random_seed()).collect();
        assert!(seeds.windows(2).all(|w| w[0] != w[1]), "{seeds:?}");
    }
}
