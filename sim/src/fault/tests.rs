//! The fault-rule unit suite: statistics of every stock rule over 10,000
//! frames, determinism per seed, and the chain's combination semantics.

use super::*;
use crate::seed::for_each_seed;
use std::sync::atomic::AtomicUsize;

const N: usize = 10_000;

/// `assert!` for seed-loop bodies: returns the failure as an error, so
/// [`for_each_seed`] can print the seed and the reproduce line.
macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        // A NaN comparison is false, so it fails the check too.
        let holds: bool = $cond;
        if !holds {
            return Err(format!($($fmt)+));
        }
    };
}

/// Applies `rule` to `n` frames of `len` bytes, 1 ms apart.
fn decisions(rule: &mut dyn FaultRule, seed: u64, n: usize, len: usize) -> Vec<Decision> {
    let mut rng = SimRng::from_seed(seed);
    let frame = vec![0xa5u8; len];
    (0..n)
        .map(|i| rule.apply(Instant::from_millis(i as u64), &frame, &mut rng))
        .collect()
}

fn drops(v: &[Decision]) -> usize {
    v.iter().filter(|v| matches!(v, Decision::Drop(_))).count()
}

#[test]
fn bernoulli_loss_rate_within_tolerance() {
    for_each_seed("bernoulli_loss_rate_within_tolerance", 1, |seed| {
        let v = decisions(&mut BernoulliLoss::new(0.05), seed, N, 100);
        let rate = drops(&v) as f64 / N as f64;
        check!((rate - 0.05).abs() <= 0.01, "loss {rate}, want 5% ± 1%");
        check!(
            v.iter()
                .all(|v| matches!(v, Decision::Pass | Decision::Drop(DropCause::Loss))),
            "unexpected decision kind"
        );
        Ok(())
    });
    assert_eq!(drops(&decisions(&mut BernoulliLoss::new(0.0), 1, N, 10)), 0);
    assert_eq!(drops(&decisions(&mut BernoulliLoss::new(1.0), 1, N, 10)), N);
}

/// Lengths of runs of consecutive drops.
fn loss_bursts(v: &[Decision]) -> Vec<usize> {
    let mut bursts = Vec::new();
    let mut run = 0;
    for decision in v {
        if matches!(decision, Decision::Drop(_)) {
            run += 1;
        } else if run > 0 {
            bursts.push(run);
            run = 0;
        }
    }
    if run > 0 {
        bursts.push(run);
    }
    bursts
}

#[test]
fn gilbert_elliott_burst_length_and_loss_match_theory() {
    // Loss only in Bad, always in Bad: bursts are Bad sojourns, geometric
    // with mean 1 / p_bad_to_good = 4; long-run loss 0.05 / 0.30 = 1/6.
    for_each_seed(
        "gilbert_elliott_burst_length_and_loss_match_theory",
        10,
        |seed| {
            let mut ge = GilbertElliott::new(0.05, 0.25, 0.0, 1.0);
            check!((ge.stationary_loss() - 1.0 / 6.0).abs() < 1e-12, "theory");
            // 40,000 frames: the statistics of correlated loss converge
            // slower than independent loss.
            let n = 4 * N;
            let v = decisions(&mut ge, seed, n, 100);
            let bursts = loss_bursts(&v);
            let mean = bursts.iter().sum::<usize>() as f64 / bursts.len() as f64;
            // ~1670 bursts; a geometric(0.25) has sd sqrt(12) ≈ 3.46, so the
            // standard error of the mean is ≈ 0.085 (right-skewed): ±0.5 is
            // about 6 sigma. Bernoulli loss at the same rate gives ~1.2.
            check!((mean - 4.0).abs() < 0.5, "mean burst {mean}, want 4 ± 0.5");
            let loss = drops(&v) as f64 / n as f64;
            // Losses are correlated, so the loss rate varies more than a
            // Bernoulli one: its asymptotic variance is
            // π_bad·π_good·(1+λ)/(1−λ)/n with λ = 1 − p − r = 0.7, i.e.
            // sd ≈ 0.0044; ±2.5% is about 5.6 sigma.
            check!(
                (loss - 1.0 / 6.0).abs() < 0.025,
                "loss {loss}, want 1/6 ± 2.5%"
            );
            check!(
                v.iter()
                    .all(|v| matches!(v, Decision::Pass | Decision::Drop(DropCause::BurstLoss))),
                "unexpected decision kind"
            );
            Ok(())
        },
    );
    // Independent loss has much shorter bursts at the same loss rate.
    let v = decisions(&mut BernoulliLoss::new(1.0 / 6.0), 10, N, 100);
    let bursts = loss_bursts(&v);
    let mean = bursts.iter().sum::<usize>() as f64 / bursts.len() as f64;
    assert!(mean < 1.5, "bernoulli mean burst {mean}");
}

#[test]
fn gilbert_elliott_partial_loss_in_states() {
    // Long-run loss with loss in both states: π_bad·h + π_good·k.
    let mut ge = GilbertElliott::new(0.02, 0.2, 0.01, 0.5);
    let expected = ge.stationary_loss();
    assert!((expected - (0.02 / 0.22 * 0.5 + 0.2 / 0.22 * 0.01)).abs() < 1e-12);
    let v = decisions(&mut ge, 5, 4 * N, 100);
    let loss = drops(&v) as f64 / (4 * N) as f64;
    assert!((loss - expected).abs() < 0.015, "loss {loss} vs {expected}");
}

#[test]
fn duplication_rate_and_copy_delay_bounds() {
    for_each_seed("duplication_rate_and_copy_delay_bounds", 7, |seed| {
        let max = Duration::from_millis(3);
        let v = decisions(&mut Duplication::new(0.10, max), seed, N, 100);
        let mut dups = 0;
        for decision in &v {
            match decision {
                Decision::Pass => {}
                Decision::Duplicate(extra) => {
                    dups += 1;
                    check!(extra.len() == 1 && extra[0] <= max, "bad copies {extra:?}");
                }
                other => return Err(format!("unexpected decision {other:?}")),
            }
        }
        let rate = dups as f64 / N as f64;
        check!(
            (rate - 0.10).abs() <= 0.015,
            "dup rate {rate}, want 10% ± 1.5%"
        );
        Ok(())
    });
}

#[test]
fn corruption_flips_exactly_one_bit_at_the_rate() {
    let mut chain = FaultChain::new(SimRng::from_seed(8)).with(Corruption::new(0.02));
    let original: Vec<u8> = (0..200u32).map(|i| (i * 7) as u8).collect();
    let mut corrupted = 0;
    let mut out = Vec::new();
    let mut fx = ChainEffects::default();
    for i in 0..N {
        out.clear();
        chain.run(
            Instant::from_millis(i as u64),
            original.clone(),
            &mut out,
            &mut fx,
        );
        let [Fate::Deliver { frame, delay }] = out.as_slice() else {
            panic!("one delivered frame expected: {out:?}");
        };
        assert_eq!(*delay, Duration::ZERO);
        assert_eq!(frame.len(), original.len());
        let flipped: u32 = frame
            .iter()
            .zip(&original)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum();
        assert!(flipped <= 1);
        corrupted += flipped as usize;
    }
    assert_eq!(fx.corrupted as usize, corrupted);
    let rate = corrupted as f64 / N as f64;
    assert!((rate - 0.02).abs() <= 0.006, "corruption rate {rate}");
    // An empty frame cannot be corrupted.
    assert_eq!(
        decisions(&mut Corruption::new(1.0), 1, 10, 0),
        vec![Decision::Pass; 10]
    );
}

/// Scenario corruption spares the Ethernet header (a real NIC's frame check
/// would drop such a frame): every flipped bit lies past byte 14, spread
/// over the rest of the frame; a bare header cannot be corrupted.
#[test]
fn corruption_past_ethernet_spares_the_header() {
    let v = decisions(&mut Corruption::past_ethernet(1.0), 3, 10_000, 60);
    let bits: Vec<usize> = v
        .iter()
        .map(|v| match v {
            Decision::Corrupt { bit } => *bit,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(
        bits.iter().all(|&b| (14 * 8..60 * 8).contains(&b)),
        "{bits:?}"
    );
    assert!(bits.iter().any(|&b| b < 20 * 8) && bits.iter().any(|&b| b >= 55 * 8));
    assert_eq!(
        decisions(&mut Corruption::past_ethernet(1.0), 1, 10, 14),
        vec![Decision::Pass; 10]
    );
}

/// Sends frames 100 µs apart through a latency rule; returns (delays,
/// number of adjacent pairs that arrive out of order).
fn latency_run(rule: Latency, seed: u64) -> (Vec<Duration>, usize) {
    let mut chain = FaultChain::new(SimRng::from_seed(seed)).with(rule);
    let mut out = Vec::new();
    let mut fx = ChainEffects::default();
    let mut delays = Vec::new();
    let mut arrivals = Vec::new();
    for i in 0..N {
        let sent = Instant::from_nanos(i as u64 * 100_000);
        out.clear();
        chain.run(sent, vec![0; 60], &mut out, &mut fx);
        let [Fate::Deliver { delay, .. }] = out.as_slice() else {
            panic!("latency never drops: {out:?}");
        };
        delays.push(*delay);
        arrivals.push(sent + *delay);
    }
    let reordered = arrivals.windows(2).filter(|w| w[1] < w[0]).count();
    (delays, reordered)
}

#[test]
fn uniform_jitter_reorders_and_stays_in_bounds() {
    let base = Duration::from_millis(10);
    let max = Duration::from_millis(2);
    let (delays, reordered) = latency_run(Latency::uniform(base, max), 21);
    assert!(delays.iter().all(|d| *d >= base && *d <= base + max));
    let mean_ns = delays.iter().map(|d| d.as_nanos()).sum::<u128>() as f64 / N as f64;
    assert!(
        (mean_ns - 11_000_000.0).abs() < 50_000.0,
        "mean delay {mean_ns} ns"
    );
    // Frames 0.1 ms apart with 2 ms of jitter overtake each other often.
    assert!(reordered > N / 10, "only {reordered} reorderings");

    let (fixed, none) = latency_run(Latency::fixed(base), 21);
    assert!(fixed.iter().all(|d| *d == base));
    assert_eq!(none, 0, "no jitter, no reordering");
}

#[test]
fn normal_jitter_stays_in_bounds_with_right_moments() {
    let base = Duration::from_millis(5);
    let mean = Duration::from_millis(3);
    let sigma = Duration::from_millis(1);
    let (delays, reordered) = latency_run(Latency::normal(base, mean, sigma), 22);
    let lo = base + Duration::from_millis(3).saturating_sub(sigma * 4);
    let hi = base + mean + sigma * 4;
    assert!(delays.iter().all(|d| *d >= lo && *d <= hi));
    let xs: Vec<f64> = delays.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    let m = xs.iter().sum::<f64>() / N as f64;
    let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / N as f64;
    assert!((m - 8.0).abs() < 0.05, "mean {m} ms");
    assert!((var.sqrt() - 1.0).abs() < 0.05, "sd {} ms", var.sqrt());
    assert!(reordered > N / 10);
}

/// Checks the token-bucket bound over every window between departures:
/// bytes(i..=j) <= burst + rate·(d_j − d_i), in O(n) with a running max.
fn assert_never_exceeds(departures: &[(Instant, u64)], rate: u64, burst: u64) {
    let mut sorted = departures.to_vec();
    sorted.sort_by_key(|(t, _)| *t);
    // For each j: max over i <= j of (rate·d_i − prefix_i), prefix_i = bytes before i.
    let mut best = f64::NEG_INFINITY;
    let mut prefix = 0u64;
    for (t, len) in sorted {
        let d = t.as_nanos() as f64 / 1e9;
        best = best.max(rate as f64 * d - prefix as f64);
        prefix += len;
        let worst_window = prefix as f64 - rate as f64 * d + best;
        assert!(
            worst_window <= burst as f64 + 1.0,
            "window ending at {t} carries {worst_window} bytes > burst {burst} + rate·w"
        );
    }
}

#[test]
fn token_bucket_never_exceeds_rate_over_any_window() {
    for_each_seed(
        "token_bucket_never_exceeds_rate_over_any_window",
        31,
        |seed| {
            token_bucket_run(seed);
            Ok(())
        },
    );
}

fn token_bucket_run(seed: u64) {
    let rate = 1_000_000; // 1 MB/s
    let burst = 3_000;
    let mut tb = TokenBucket::new(rate, burst);
    let mut rng = SimRng::from_seed(seed);
    let mut t = Instant::ZERO;
    let mut departures = Vec::with_capacity(N);
    let mut last_depart = Instant::ZERO;
    for _ in 0..N {
        // Bursty arrivals: mostly back-to-back, sometimes a pause. Offered
        // load (~780 B per ~0.2 ms) is well above the rate.
        let gap = if rng.chance(0.1) {
            rng.below(5_000_000)
        } else {
            rng.below(50_000)
        };
        t += Duration::from_nanos(gap);
        let len = rng.range_inclusive(60, 1500);
        let frame = vec![0u8; len as usize];
        let depart = match tb.apply(t, &frame, &mut rng) {
            Decision::Pass => t,
            Decision::Delay(d) => t + d,
            other => panic!("no queue limit, so no {other:?}"),
        };
        assert!(depart >= last_depart, "FIFO: departures never go back");
        last_depart = depart;
        departures.push((depart, len));
    }
    assert_never_exceeds(&departures, rate, burst);
    // Saturated for the whole run, so throughput is close to the rate.
    let bytes: u64 = departures.iter().map(|(_, l)| l).sum();
    let secs = last_depart.as_nanos() as f64 / 1e9;
    let throughput = bytes as f64 / secs;
    assert!(
        throughput > 0.95 * rate as f64 && throughput <= rate as f64 * 1.01,
        "throughput {throughput}"
    );
}

#[test]
fn token_bucket_passes_idle_traffic_and_limits_queue() {
    // Below the rate, with a full bucket, nothing is delayed.
    let mut tb = TokenBucket::new(1_000_000, 1_500);
    let mut rng = SimRng::from_seed(0);
    for i in 0..100 {
        let t = Instant::from_millis(10 * i);
        assert_eq!(tb.apply(t, &[0; 1000], &mut rng), Decision::Pass);
    }
    // A burst of 10 x 1000 B at once: the first passes on credit (1500 B),
    // the next ones wait 0.5 ms, then 1 ms each.
    let t = Instant::from_secs(10);
    let mut tb = TokenBucket::new(1_000_000, 1_500);
    assert_eq!(tb.apply(t, &[0; 1000], &mut rng), Decision::Pass);
    assert_eq!(
        tb.apply(t, &[0; 1000], &mut rng),
        Decision::Delay(Duration::from_micros(500))
    );
    assert_eq!(
        tb.apply(t, &[0; 1000], &mut rng),
        Decision::Delay(Duration::from_micros(1500))
    );
    assert_eq!(tb.backlog(t), 2000);

    // With a queue limit of 3000 bytes, a saturating burst is cut.
    let mut tb = TokenBucket::new(1_000_000, 1_000).with_queue_limit(3_000);
    let v: Vec<Decision> = (0..10).map(|_| tb.apply(t, &[0; 1000], &mut rng)).collect();
    let dropped = v
        .iter()
        .filter(|v| **v == Decision::Drop(DropCause::QueueFull))
        .count();
    // 1 leaves at once, 3 wait (3000 B), 6 are dropped.
    assert_eq!(dropped, 6, "{v:?}");
    assert_eq!(tb.backlog(t), 3000);
    // Once the queue drained, frames are admitted again.
    let later = t + Duration::from_millis(4);
    assert_eq!(tb.backlog(later), 0);
    assert_eq!(tb.apply(later, &[0; 1000], &mut rng), Decision::Pass);
}

#[test]
fn mtu_clamp_is_exact() {
    let mut rng = SimRng::from_seed(0);
    let mut drop = MtuClamp::drop_above(1500);
    let mut cut = MtuClamp::truncate_above(1500);
    for len in [0usize, 1, 1499, 1500] {
        assert_eq!(
            drop.apply(Instant::ZERO, &vec![0; len], &mut rng),
            Decision::Pass
        );
        assert_eq!(
            cut.apply(Instant::ZERO, &vec![0; len], &mut rng),
            Decision::Pass
        );
    }
    for len in [1501usize, 9000] {
        assert_eq!(
            drop.apply(Instant::ZERO, &vec![0; len], &mut rng),
            Decision::Drop(DropCause::Mtu)
        );
        assert_eq!(
            cut.apply(Instant::ZERO, &vec![0; len], &mut rng),
            Decision::Truncate(1500)
        );
    }
    // Through a chain: the frame really is cut, prefix intact.
    let mut chain = FaultChain::new(SimRng::from_seed(0)).with(MtuClamp::truncate_above(4));
    let mut out = Vec::new();
    let mut fx = ChainEffects::default();
    chain.run(Instant::ZERO, vec![1, 2, 3, 4, 5, 6], &mut out, &mut fx);
    chain.run(Instant::ZERO, vec![1, 2, 3], &mut out, &mut fx);
    assert_eq!(
        out,
        vec![
            Fate::Deliver {
                delay: Duration::ZERO,
                frame: vec![1, 2, 3, 4]
            },
            Fate::Deliver {
                delay: Duration::ZERO,
                frame: vec![1, 2, 3]
            },
        ]
    );
    assert_eq!(fx.truncated, 1);
}

#[test]
fn partition_windows_are_half_open() {
    let mut p = Partition::between(Instant::from_secs(1), Instant::from_secs(2))
        .and(Instant::from_secs(5), Instant::from_secs(6));
    let mut rng = SimRng::from_seed(0);
    let cases = [
        (Instant::from_nanos(999_999_999), false),
        (Instant::from_secs(1), true),
        (Instant::from_nanos(1_999_999_999), true),
        (Instant::from_secs(2), false),
        (Instant::from_millis(5500), true),
        (Instant::from_secs(6), false),
    ];
    for (t, dropped) in cases {
        let v = p.apply(t, &[0; 10], &mut rng);
        assert_eq!(
            v == Decision::Drop(DropCause::Partition),
            dropped,
            "at {t}: {v:?}"
        );
    }
}

fn stock_rules() -> Vec<Box<dyn FaultRule>> {
    vec![
        Box::new(BernoulliLoss::new(0.3)),
        Box::new(GilbertElliott::new(0.1, 0.3, 0.05, 0.8)),
        Box::new(Latency::uniform(Duration::ZERO, Duration::from_millis(5))),
        Box::new(Latency::normal(
            Duration::ZERO,
            Duration::from_millis(5),
            Duration::from_millis(1),
        )),
        Box::new(Duplication::new(0.3, Duration::from_millis(1))),
        Box::new(Corruption::new(0.3)),
    ]
}

#[test]
fn same_seed_same_decisions_different_seed_different_decisions() {
    for (a, b) in stock_rules().into_iter().zip(stock_rules()) {
        let mut a = a;
        let mut b = b;
        let name = a.name();
        let first = decisions(a.as_mut(), 1234, 1000, 100);
        let again = decisions(b.as_mut(), 1234, 1000, 100);
        assert_eq!(first, again, "{name}: same seed must give same decisions");
    }
    for (a, b) in stock_rules().into_iter().zip(stock_rules()) {
        let mut a = a;
        let mut b = b;
        let name = a.name();
        let first = decisions(a.as_mut(), 1234, 1000, 100);
        let other = decisions(b.as_mut(), 1235, 1000, 100);
        assert_ne!(first, other, "{name}: different seeds should differ");
    }
}

#[test]
fn rules_in_a_chain_draw_from_independent_streams() {
    // Adding a rule in front must not change what a later rule decides.
    fn loss_pattern(chain: &mut FaultChain) -> Vec<bool> {
        let mut out = Vec::new();
        let mut fx = ChainEffects::default();
        (0..500)
            .map(|i| {
                out.clear();
                chain.run(Instant::from_millis(i), vec![0; 10], &mut out, &mut fx);
                matches!(out[0], Fate::Dropped { .. })
            })
            .collect()
    }
    let root = SimRng::from_seed(77);
    let mut alone = FaultChain::new(root.clone());
    alone.push(BernoulliLoss::new(0.5));
    let mut padded = FaultChain::new(root.clone());
    padded.push(BernoulliLoss::new(0.5));
    padded.push(Corruption::new(0.5)); // after: never sees dropped frames
    assert_eq!(loss_pattern(&mut alone), loss_pattern(&mut padded));
}

#[test]
fn chain_first_drop_wins_and_delays_add() {
    let later_calls = Arc::new(AtomicUsize::new(0));
    let counter = later_calls.clone();
    let mut chain = FaultChain::new(SimRng::from_seed(0))
        .with(Latency::fixed(Duration::from_millis(3)))
        .with(FnRule::new("delay2", |_, _, _| {
            Decision::Delay(Duration::from_millis(2))
        }))
        .with(FnRule::new("drop-odd-len", |_, f: &[u8], _| {
            if f.len() % 2 == 1 {
                Decision::Drop(DropCause::Scripted)
            } else {
                Decision::Pass
            }
        }))
        .with(FnRule::new("after", move |now, _, _| {
            counter.fetch_add(1, Ordering::SeqCst);
            // Sees the time the frame reaches it: entry + 5 ms.
            assert_eq!(now, Instant::from_millis(105));
            Decision::Drop(DropCause::Loss)
        }));
    assert_eq!(
        chain.rule_names(),
        vec!["latency", "delay2", "drop-odd-len", "after"]
    );
    let mut out = Vec::new();
    let mut fx = ChainEffects::default();
    chain.run(Instant::from_millis(100), vec![0; 3], &mut out, &mut fx);
    assert_eq!(
        out,
        vec![Fate::Dropped {
            cause: DropCause::Scripted,
            rule: "drop-odd-len"
        }]
    );
    assert_eq!(later_calls.load(Ordering::SeqCst), 0, "first drop wins");
    out.clear();
    chain.run(Instant::from_millis(100), vec![0; 4], &mut out, &mut fx);
    assert_eq!(
        out,
        vec![Fate::Dropped {
            cause: DropCause::Loss,
            rule: "after"
        }]
    );
    assert_eq!(later_calls.load(Ordering::SeqCst), 1);

    // Without the dropping rules, the delays add up.
    let mut chain = FaultChain::new(SimRng::from_seed(0))
        .with(Latency::fixed(Duration::from_millis(3)))
        .with(FnRule::new("delay2", |_, _, _| {
            Decision::Delay(Duration::from_millis(2))
        }));
    out.clear();
    chain.run(Instant::ZERO, vec![9], &mut out, &mut fx);
    assert_eq!(
        out,
        vec![Fate::Deliver {
            delay: Duration::from_millis(5),
            frame: vec![9]
        }]
    );
}

#[test]
fn duplicates_continue_through_the_rest_of_the_chain() {
    // dup (2 copies, +1 ms and +2 ms) -> corrupt bit 0 of every 2nd frame
    // seen -> +10 ms.
    let seen = Arc::new(AtomicUsize::new(0));
    let seen2 = seen.clone();
    let mut chain = FaultChain::new(SimRng::from_seed(0))
        .with(FnRule::new("dup", |_, _, _| {
            Decision::Duplicate(vec![Duration::from_millis(1), Duration::from_millis(2)])
        }))
        .with(FnRule::new("corrupt-every-2nd", move |_, _, _| {
            if seen2.fetch_add(1, Ordering::SeqCst) % 2 == 1 {
                Decision::Corrupt { bit: 0 }
            } else {
                Decision::Pass
            }
        }))
        .with(Latency::fixed(Duration::from_millis(10)));
    let mut out = Vec::new();
    let mut fx = ChainEffects::default();
    chain.run(Instant::ZERO, vec![0b1000], &mut out, &mut fx);
    assert_eq!(seen.load(Ordering::SeqCst), 3, "each copy runs the rest");
    assert_eq!(
        out,
        vec![
            Fate::Deliver {
                delay: Duration::from_millis(10),
                frame: vec![0b1000]
            },
            Fate::Deliver {
                delay: Duration::from_millis(11),
                frame: vec![0b1001]
            },
            Fate::Deliver {
                delay: Duration::from_millis(12),
                frame: vec![0b1000]
            },
        ]
    );
    assert_eq!(
        fx,
        ChainEffects {
            duplicated: 2,
            corrupted: 1,
            truncated: 0
        }
    );
}

#[test]
fn runaway_duplication_is_capped() {
    let mut chain = FaultChain::new(SimRng::from_seed(0)).with(FnRule::new("dup", |_, _, _| {
        Decision::Duplicate(vec![Duration::ZERO; 1000])
    }));
    let mut out = Vec::new();
    let mut fx = ChainEffects::default();
    chain.run(Instant::ZERO, vec![1], &mut out, &mut fx);
    assert_eq!(out.len(), 1 + MAX_COPIES_PER_FRAME);
    assert_eq!(fx.duplicated as usize, MAX_COPIES_PER_FRAME);
}

#[test]
fn hold_gate_holds_and_resumes_after_the_gate() {
    let handle = HoldHandle::new();
    let after = Arc::new(AtomicUsize::new(0));
    let after2 = after.clone();
    let mut chain = FaultChain::new(SimRng::from_seed(0))
        .with(Latency::fixed(Duration::from_millis(1)))
        .with(handle.gate())
        .with(FnRule::new("count", move |_, _, _| {
            after2.fetch_add(1, Ordering::SeqCst);
            Decision::Delay(Duration::from_millis(4))
        }));
    let mut out = Vec::new();
    let mut fx = ChainEffects::default();
    handle.close();
    chain.run(Instant::from_millis(10), vec![7], &mut out, &mut fx);
    let Some(Fate::Held(held)) = out.pop() else {
        panic!("closed gate must hold");
    };
    assert!(out.is_empty());
    assert_eq!(held.handle, handle);
    assert_eq!(held.held_at, Instant::from_millis(11));
    assert_eq!(after.load(Ordering::SeqCst), 0);

    handle.open();
    chain.resume(held, Instant::from_millis(50), &mut out, &mut fx);
    assert_eq!(
        out,
        vec![Fate::Deliver {
            delay: Duration::from_millis(4),
            frame: vec![7]
        }],
        "resumes after the gate: the 1 ms latency is not applied again"
    );
    assert_eq!(after.load(Ordering::SeqCst), 1);
    assert_ne!(handle, HoldHandle::new());
}

#[test]
fn swarm_is_deterministic_bounded_and_varied() {
    let mut distinct = BTreeSet::new();
    let mut with_loss = 0;
    for seed in 0..1000u64 {
        let p = SwarmParams::from_seed(seed);
        assert_eq!(p, SwarmParams::from_seed(seed));
        assert!(p.expected_random_loss() < 0.10, "seed {seed}: {p:?}");
        if let Some(l) = p.loss {
            assert!((0.0..=0.04).contains(&l));
            with_loss += 1;
        }
        if let Some((d, max)) = p.duplication {
            assert!(d <= 0.05 && max <= Duration::from_millis(10));
        }
        if let Some(c) = p.corruption {
            assert!(c <= 0.01);
        }
        assert!(p.latency <= Duration::from_millis(50));
        assert!(p.jitter.is_none_or(|j| j <= Duration::from_millis(20)));
        if let Some((rate, burst, queue)) = p.rate_limit {
            assert!((125_000..=12_500_000).contains(&rate));
            assert!(burst >= 16 * 1024 && queue >= burst);
        }
        if let Some((s, e)) = p.partition {
            assert!(s <= e && e - s <= Duration::from_secs(2));
        }
        distinct.insert(format!("{p:?}"));
    }
    // Parameters are continuous, so only seeds with every fault off (chance
    // 1/256 each) can coincide.
    let all_off = (0..1000u64)
        .filter(|s| {
            SwarmParams::from_seed(*s)
                .build(SimRng::from_seed(0))
                .is_empty()
        })
        .count();
    assert!(all_off < 15, "{all_off} seeds without faults");
    assert_eq!(distinct.len(), 1000 - all_off.saturating_sub(1));
    assert!(
        (350..650).contains(&with_loss),
        "loss on in {with_loss}/1000"
    );

    // The chain itself: same seed, same fates.
    let run = |seed: u64| {
        let mut chain = FaultChain::swarm(seed);
        let mut out = Vec::new();
        let mut fx = ChainEffects::default();
        for i in 0..2000u64 {
            chain.run(
                Instant::from_nanos(i * 50 * 1_000),
                vec![i as u8; 1000],
                &mut out,
                &mut fx,
            );
        }
        (out, fx)
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}

#[test]
fn host_fault_descriptors() {
    let none = HostFaults::none();
    let mut rng = SimRng::from_seed(1);
    assert!(!none.refuses(80, &mut rng));
    assert!(!none.eagain(&mut rng));
    assert_eq!(none.clamp_read(65536), 65536);
    assert_eq!(none.clamp_write(65536), 65536);

    let faults = HostFaults {
        refuse: RefuseConnections {
            probability: 0.0,
            ports: BTreeSet::from([22, 8080]),
        },
        reset_after: Some(ResetAfter { bytes: 4096 }),
        eagain: EagainStorm { probability: 0.25 },
        short_io: ShortIo {
            max_read: NonZeroUsize::new(100),
            max_write: NonZeroUsize::new(7),
        },
    };
    assert!(faults.refuses(22, &mut rng));
    assert!(faults.refuses(8080, &mut rng));
    assert!(!faults.refuses(80, &mut rng));
    assert_eq!(faults.clamp_read(1000), 100);
    assert_eq!(faults.clamp_read(10), 10);
    assert_eq!(faults.clamp_write(1000), 7);
    let storms = (0..N).filter(|_| faults.eagain(&mut rng)).count();
    assert!((storms as f64 / N as f64 - 0.25).abs() < 0.02, "{storms}");

    let refusing = HostFaults {
        refuse: RefuseConnections {
            probability: 0.1,
            ports: BTreeSet::new(),
        },
        ..HostFaults::none()
    };
    let refused = (0..N).filter(|_| refusing.refuses(443, &mut rng)).count();
    assert!((refused as f64 / N as f64 - 0.1).abs() < 0.015, "{refused}");

    assert_eq!(HostFaults::swarm(9), HostFaults::swarm(9));
    let swarms: BTreeSet<String> = (0..100)
        .map(|s| format!("{:?}", HostFaults::swarm(s)))
        .collect();
    // Each of the five faults is on with probability 1/2, so a few seeds draw
    // "no host faults at all" and compare equal; the rest differ.
    let all_off = (0..100)
        .filter(|s| HostFaults::swarm(*s) == HostFaults::none())
        .count();
    assert!(all_off < 10, "{all_off} seeds without host faults");
    assert_eq!(swarms.len(), 100 - all_off.saturating_sub(1));
    for s in 0..100 {
        let h = HostFaults::swarm(s);
        assert!(h.refuse.probability <= 0.05 && h.eagain.probability <= 0.2);
    }
}
