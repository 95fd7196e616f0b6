//! Seeded pseudo-random numbers for the engine.
//!
//! The engine never draws OS randomness: whoever builds an [`crate::Engine`]
//! hands it a 64-bit seed (the real binaries read `getrandom` once at start;
//! the simulator derives it from its master seed). Everything random in the
//! engine (TCP initial sequence numbers per RFC 6528, DHCP/DHCPv6 server
//! choices, hash keys) is drawn from this generator, so a simulated run is
//! reproducible from its seed.
//!
//! The generator is xoshiro256** (Blackman and Vigna, 2018), seeded through
//! SplitMix64 as its authors recommend. It is fast and statistically sound; it
//! is not a cryptographic generator, which is why ISNs additionally mix in a
//! secret key per RFC 6528 §3 (see the TCP module).

/// xoshiro256** generator. `Clone` so a caller can fork a stream deliberately;
/// there is no `Default`, so every generator has a visible seed.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

/// One step of SplitMix64: advances `state` and returns a well-mixed output.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator whose whole output is determined by `seed`.
    pub fn from_seed(seed: u64) -> Self {
        let mut sm = seed;
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Rng { s }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Next 32 random bits (the high half, the better-mixed one).
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform value in `0..bound` (Lemire's multiply-shift; `bound` must be > 0,
    /// 0 yields 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }

    /// Uniform float in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// A child generator for a named subsystem: independent of the parent's
    /// later draws, and the same for the same (seed, label).
    pub fn child(&self, label: &str) -> Rng {
        let mut h = self.s[0] ^ self.s[2].rotate_left(17);
        for b in label.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
        Rng::from_seed(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::from_seed(42);
        let mut b = Rng::from_seed(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut c = Rng::from_seed(43);
        assert_ne!(Rng::from_seed(42).next_u64(), c.next_u64());
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = Rng::from_seed(7);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let v = r.below(10);
            assert!(v < 10);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn floats_in_unit_interval_with_sane_mean() {
        let mut r = Rng::from_seed(1);
        let n = 10_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let f = r.next_f64();
            assert!((0.0..1.0).contains(&f));
            sum += f;
        }
        let mean = sum / n as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
    }

    #[test]
    fn children_are_distinct_and_reproducible() {
        let root = Rng::from_seed(99);
        let mut a1 = root.child("link-a");
        let mut a2 = root.child("link-a");
        let mut b = root.child("link-b");
        let x = a1.next_u64();
        assert_eq!(x, a2.next_u64());
        assert_ne!(x, b.next_u64());
    }
}
