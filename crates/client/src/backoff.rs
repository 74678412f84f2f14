//! Kafka's `ExponentialBackoff`, as its NetworkClient uses it between connection
//! attempts.
//!
//! The wait after the n-th consecutive failure (n from 0) is
//! `initial * base^min(n, exp_max)`, scaled by a random factor in
//! `[1 - jitter, 1 + jitter)` and capped at `max`, where `exp_max` is the exponent at
//! which the unjittered wait reaches `max`. With Kafka's defaults (50 ms, base 2,
//! 1000 ms, jitter 0.2) that is roughly 50, 100, 200, 400, 800, then 800..1000 ms.
//! Growth keeps a dead node from being hammered; the cap keeps a recovered node from
//! being ignored for long; the jitter spreads the reconnects of many brokers that lost
//! the same peer at the same moment.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::config::{ClientConfig, RECONNECT_BACKOFF_EXP_BASE, RECONNECT_BACKOFF_JITTER};

/// An exponential backoff schedule with jitter (Kafka's
/// `org.apache.kafka.common.utils.ExponentialBackoff`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExponentialBackoff {
    initial: Duration,
    max: Duration,
    base: f64,
    jitter: f64,
    /// The exponent at which `initial * base^exp` reaches `max` (0 when it never grows).
    exp_max: f64,
}

impl ExponentialBackoff {
    /// A schedule from `initial` growing by `base` per failure up to `max`, each wait
    /// scaled by a random factor in `[1 - jitter, 1 + jitter)`. Out-of-range arguments
    /// are clamped (base below 1 to 1, jitter to `0..=1`) rather than rejected: a
    /// backoff must always be computable.
    pub fn new(initial: Duration, max: Duration, base: f64, jitter: f64) -> Self {
        let base = if base.is_finite() && base > 1.0 {
            base
        } else {
            1.0
        };
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let initial_ms = initial.as_secs_f64() * 1000.0;
        let max_ms = max.as_secs_f64() * 1000.0;
        let exp_max = if max > initial && base > 1.0 {
            (max_ms / initial_ms.max(1.0)).ln() / base.ln()
        } else {
            0.0
        };
        ExponentialBackoff {
            initial,
            max,
            base,
            jitter,
            exp_max,
        }
    }

    /// The reconnect schedule of `config` (`reconnect.backoff.ms` growing to
    /// `reconnect.backoff.max.ms`), with Kafka's base and jitter.
    pub fn reconnect(config: &ClientConfig) -> Self {
        ExponentialBackoff::new(
            config.reconnect_backoff,
            config.reconnect_backoff_max,
            RECONNECT_BACKOFF_EXP_BASE,
            RECONNECT_BACKOFF_JITTER,
        )
    }

    /// The wait after `failures` consecutive failed attempts (0 = the first failure),
    /// with a fresh random jitter.
    pub fn backoff(&self, failures: u32) -> Duration {
        self.backoff_with(failures, random_unit())
    }

    /// [`Self::backoff`] with the random draw given: `unit` in `[0, 1)` picks the
    /// jitter factor `1 - jitter + 2 * jitter * unit` (0.5 gives the unjittered wait).
    pub fn backoff_with(&self, failures: u32, unit: f64) -> Duration {
        if self.exp_max <= 0.0 {
            return self.initial;
        }
        // Past `exp_max` the unjittered wait is the cap itself; computing it as
        // `initial * base^exp_max` would land a rounding error below it.
        let term = if f64::from(failures) >= self.exp_max {
            self.max.as_secs_f64()
        } else {
            self.initial.as_secs_f64() * self.base.powf(f64::from(failures))
        };
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let factor = 1.0 - self.jitter + 2.0 * self.jitter * unit;
        let secs = term * factor;
        // `secs` is finite and non-negative here, but stay total anyway.
        let wait = Duration::try_from_secs_f64(secs).unwrap_or(self.max);
        wait.min(self.max)
    }

    /// The first wait, before any jitter.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The cap.
    pub fn max(&self) -> Duration {
        self.max
    }
}

thread_local! {
    /// xorshift64* state, seeded once per thread from std's per-process random keys.
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x9e37_79b9_7f4a_7c15);
    hasher.finish() | 1 // xorshift must not start at 0
}

/// A uniform draw from `[0, 1)`. Jitter needs spread, not cryptographic quality, so a
/// thread-local xorshift seeded from std's `RandomState` does (no extra dependency).
fn random_unit() -> f64 {
    RNG.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        // 53 random bits → a double in [0, 1).
        (r >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn kafka_defaults() -> ExponentialBackoff {
        ExponentialBackoff::reconnect(&ClientConfig::default())
    }

    #[test]
    fn grows_exponentially_to_the_cap() {
        let b = kafka_defaults();
        let waits: Vec<u128> = (0..8).map(|n| b.backoff_with(n, 0.5).as_millis()).collect();
        assert_eq!(waits, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
        // Huge failure counts neither overflow nor exceed the cap.
        assert_eq!(b.backoff_with(u32::MAX, 0.5), ms(1000));
        assert_eq!(b.backoff_with(u32::MAX, 0.999_999), ms(1000));
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_under_the_cap() {
        let b = kafka_defaults();
        for failures in 0..10u32 {
            let term = (50.0 * 2f64.powf(f64::from(failures).min(20f64.log2()))).min(1000.0);
            let low = ms((term * 0.8).floor() as u64);
            let high = ms((term * 1.2).ceil() as u64).min(ms(1000));
            // the extremes of the draw
            assert!(b.backoff_with(failures, 0.0) >= low);
            assert!(b.backoff_with(failures, 0.999_999) <= high);
            // and real random draws
            for _ in 0..500 {
                let wait = b.backoff(failures);
                assert!(
                    low <= wait && wait <= high,
                    "failure {failures}: {wait:?} not in {low:?}..={high:?}"
                );
            }
        }
    }

    #[test]
    fn jitter_actually_varies() {
        let b = kafka_defaults();
        let draws: std::collections::BTreeSet<Duration> = (0..100).map(|_| b.backoff(0)).collect();
        assert!(draws.len() > 10, "only {} distinct waits", draws.len());
        let below = (0..1000).filter(|_| b.backoff(1) < ms(100)).count();
        assert!(
            (300..700).contains(&below),
            "{below} of 1000 below the midpoint"
        );
    }

    #[test]
    fn degenerate_schedules() {
        // max <= initial: constant, no jitter (as Kafka does)
        let flat = ExponentialBackoff::new(ms(100), ms(100), 2.0, 0.2);
        assert_eq!(flat.backoff(0), ms(100));
        assert_eq!(flat.backoff(7), ms(100));
        let inverted = ExponentialBackoff::new(ms(500), ms(10), 2.0, 0.2);
        assert_eq!(inverted.backoff(3), ms(500));
        // no jitter: exact powers
        let exact = ExponentialBackoff::new(ms(10), ms(10_000), 2.0, 0.0);
        assert_eq!(exact.backoff(3), ms(80));
        // nonsense arguments are clamped, not panics
        let odd = ExponentialBackoff::new(ms(0), ms(1000), f64::NAN, f64::INFINITY);
        assert_eq!(odd.backoff(5), ms(0));
        let zero_start = ExponentialBackoff::new(ms(0), ms(1000), 2.0, 0.2);
        assert_eq!(zero_start.backoff_with(3, f64::NAN), ms(0));
    }
}
