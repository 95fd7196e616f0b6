//! Retransmission timeout computation (RFC 6298).
//!
//! Samples are taken with Karn's algorithm by the caller (never from a
//! retransmitted segment); this module only keeps SRTT, RTTVAR and RTO.

use core::time::Duration;

/// Initial RTO before any sample (RFC 6298 §2.1).
pub(crate) const INITIAL_RTO: Duration = Duration::from_secs(1);
/// Lower bound. RFC 6298 §2.4 says 1 s; like Linux we allow 200 ms, which
/// §2.4 permits as a deliberate choice ("MAY").
pub(crate) const MIN_RTO: Duration = Duration::from_millis(200);
/// Upper bound (RFC 6298 §2.5 allows a maximum of at least 60 s).
pub(crate) const MAX_RTO: Duration = Duration::from_secs(60);
/// Clock granularity G (RFC 6298 §2).
const GRANULARITY: Duration = Duration::from_millis(1);

/// SRTT, RTTVAR and the current RTO.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    /// RTO from the samples, before backoff.
    rto: Duration,
    /// Timeouts in a row: the RTO in force is `rto` doubled this often.
    backoff: u8,
}

impl Default for RttEstimator {
    fn default() -> Self {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: INITIAL_RTO,
            backoff: 0,
        }
    }
}

impl RttEstimator {
    /// The current RTO, backoff included.
    pub(crate) fn rto(&self) -> Duration {
        let factor = 1u32 << self.backoff.min(16);
        self.rto.saturating_mul(factor).min(MAX_RTO)
    }

    /// The smoothed round-trip time, once there is a sample.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// A new RTT measurement (RFC 6298 §2.2, §2.3).
    pub(crate) fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(r);
                self.rttvar = self.rttvar * 3 / 4 + diff / 4;
                self.srtt = Some(srtt * 7 / 8 + r / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        self.rto = (srtt + GRANULARITY.max(self.rttvar * 4)).clamp(MIN_RTO, MAX_RTO);
        self.backoff = 0;
    }

    /// Exponential backoff after a timeout (RFC 6298 §5.5).
    pub(crate) fn back_off(&mut self) {
        if self.rto() < MAX_RTO {
            self.backoff = self.backoff.saturating_add(1);
        }
    }

    /// New data was acknowledged: the path works again, so the backoff
    /// goes, as Linux does (`icsk_backoff` cleared on such an ACK), without
    /// waiting for a sample as Karn's algorithm would (RFC 6298 §5.7). In a
    /// recovery where every segment is a retransmission no sample ever
    /// comes, and a timer left doubling reaches its 60 s ceiling.
    pub(crate) fn clear_backoff(&mut self) {
        self.backoff = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_and_backoff() {
        let mut e = RttEstimator::default();
        assert_eq!(e.rto(), INITIAL_RTO);
        e.sample(Duration::from_millis(100));
        // SRTT 100, RTTVAR 50: RTO = 100 + 200 = 300 ms.
        assert_eq!(e.rto(), Duration::from_millis(300));
        e.sample(Duration::from_millis(100));
        // RTTVAR 37.5, SRTT 100: 250 ms.
        assert_eq!(e.rto(), Duration::from_millis(250));
        for _ in 0..20 {
            e.back_off();
        }
        assert_eq!(e.rto(), MAX_RTO);
        e.clear_backoff();
        assert_eq!(e.rto(), Duration::from_millis(250));
        e.back_off();
        assert_eq!(e.rto(), Duration::from_millis(500));
        e.sample(Duration::from_millis(100));
        assert!(
            e.rto() < Duration::from_millis(500),
            "a sample ends the backoff"
        );
        let mut f = RttEstimator::default();
        f.sample(Duration::from_micros(10));
        assert_eq!(f.rto(), MIN_RTO);
    }
}
