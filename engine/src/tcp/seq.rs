//! Sequence-number arithmetic modulo 2^32 (RFC 9293 §3.4): comparisons
//! are only meaningful between numbers less than 2^31 apart.

/// `a < b` in sequence space.
pub(crate) fn lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a <= b` in sequence space.
pub(crate) fn le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

/// `a > b` in sequence space.
pub(crate) fn gt(a: u32, b: u32) -> bool {
    lt(b, a)
}

/// `a >= b` in sequence space.
pub(crate) fn ge(a: u32, b: u32) -> bool {
    le(b, a)
}

/// `later - earlier`, as a byte count (0 if `later` is not after `earlier`).
pub(crate) fn dist(earlier: u32, later: u32) -> u32 {
    if le(earlier, later) {
        later.wrapping_sub(earlier)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_comparisons() {
        assert!(lt(u32::MAX - 5, 3));
        assert!(gt(3, u32::MAX - 5));
        assert!(le(7, 7) && ge(7, 7));
        assert!(!lt(7, 7));
        assert_eq!(dist(u32::MAX - 1, 2), 4);
        assert_eq!(dist(10, 5), 0);
    }
}
