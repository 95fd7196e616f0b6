//! Initial sequence numbers per RFC 6528 §3:
//! `ISN = M + F(localip, localport, remoteip, remoteport, secretkey)`, with
//! `M` a timer ticking every 4 µs and `F` a keyed pseudo-random function.
//!
//! `F` is SipHash-2-4 (Aumasson and Bernstein, 2012), written here from the
//! paper; the 128-bit key is drawn once from the engine's seeded generator,
//! so a simulated run is reproducible while an attacker who cannot see the
//! seed cannot predict ISNs. This module never reads a clock: `M` comes
//! from the `now` the caller passes in.

use std::net::{IpAddr, SocketAddr};

use crate::rng::Rng;
use crate::time::Instant;

/// The RFC 6528 ISN generator.
#[derive(Clone, Debug)]
pub(crate) struct IsnGenerator {
    key: (u64, u64),
}

impl IsnGenerator {
    /// A generator with a key drawn from `rng`.
    pub(crate) fn new(rng: &mut Rng) -> Self {
        IsnGenerator {
            key: (rng.next_u64(), rng.next_u64()),
        }
    }

    /// The ISN for a connection between `local` and `remote` at `now`.
    pub(crate) fn isn(&self, local: SocketAddr, remote: SocketAddr, now: Instant) -> u32 {
        let mut msg = [0u8; 36];
        put_addr(&mut msg[0..18], local);
        put_addr(&mut msg[18..36], remote);
        let f = siphash24(self.key, &msg) as u32;
        // RFC 6528 §3: M is a 4-microsecond timer.
        let m = (now.as_nanos() / 4_000) as u32;
        m.wrapping_add(f)
    }
}

fn put_addr(out: &mut [u8], addr: SocketAddr) {
    let ip = match addr.ip() {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    };
    out[..16].copy_from_slice(&ip);
    out[16..18].copy_from_slice(&addr.port().to_be_bytes());
}

/// SipHash-2-4 of `msg` under `key` (the paper's §2: two compression
/// rounds per word, four finalization rounds).
pub(crate) fn siphash24(key: (u64, u64), msg: &[u8]) -> u64 {
    let (k0, k1) = key;
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut words = msg.chunks_exact(8);
    for w in &mut words {
        let m = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        v[3] ^= m;
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^= m;
    }
    let rest = words.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    last[7] = msg.len() as u8;
    let m = u64::from_le_bytes(last);
    v[3] ^= m;
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_paper_vector() {
        // Appendix A of the SipHash paper: key 00..0f, message 00..0e.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(siphash24((k0, k1), &msg), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn isn_depends_on_tuple_key_and_time() {
        let mut rng = Rng::from_seed(1);
        let g = IsnGenerator::new(&mut rng);
        let a: SocketAddr = "192.0.2.15:40000".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:80".parse().unwrap();
        let c: SocketAddr = "192.0.2.1:81".parse().unwrap();
        let t = Instant::from_secs(1);
        assert_eq!(g.isn(a, b, t), g.isn(a, b, t));
        assert_ne!(g.isn(a, b, t), g.isn(a, c, t));
        // 4 µs later: one tick more.
        let t2 = Instant::from_nanos(t.as_nanos() + 4_000);
        assert_eq!(g.isn(a, b, t2), g.isn(a, b, t).wrapping_add(1));
        let g2 = IsnGenerator::new(&mut Rng::from_seed(2));
        assert_ne!(g.isn(a, b, t), g2.isn(a, b, t));
    }
}
