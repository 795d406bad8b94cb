//! The agent's one retry and backoff policy, on the `backon` crate: exponential delays
//! (doubling from a minimum up to a maximum, no jitter).
//!
//! * An operation retried in place (a spooled part's upload) uses [`backon::Retryable`] with
//!   a builder from here ([`attempts`]).
//! * A loop that keeps going and only waits longer after each failure (spool draining,
//!   credential rotation, the link's reconnects, the polling tier worker) holds a [`Backoff`]: [`Backoff::failed`] gives the next delay,
//!   [`Backoff::reset`] starts again from the minimum after a success.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};

/// Delays from `min`, doubling, capped at `max`, without end.
pub fn exponential(min: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_factor(2.0)
        .with_min_delay(min)
        .with_max_delay(max.max(min))
        .without_max_times()
}

/// `tries` attempts in all: delays from `min`, doubling, between them.
pub fn attempts(min: Duration, tries: usize) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_factor(2.0)
        .with_min_delay(min)
        .without_max_delay()
        .with_max_times(tries.saturating_sub(1))
}

/// The backoff of a loop that retries until it succeeds, restarted by each success.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    /// Delays from `min`, doubling, capped at `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let builder = exponential(min, max);
        Backoff { builder, delays: builder.build(), max: max.max(min) }
    }

    /// Another failure: how long to wait before the next attempt.
    pub fn failed(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.max)
    }

    /// A success: the next failure waits the minimum again.
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_loop_backoff_doubles_to_its_cap_and_restarts_after_a_success() {
        let mut b = Backoff::new(S(1), S(300));
        let got: Vec<_> = (0..11).map(|_| b.failed()).collect();
        assert_eq!(
            got,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300].map(S).to_vec(),
            "1 s doubling, at most 5 min"
        );
        b.reset();
        assert_eq!(b.failed(), S(1));
    }

    #[test]
    fn attempts_count_the_first_try() {
        let got: Vec<_> = attempts(Duration::from_millis(1000), 3).build().collect();
        assert_eq!(got, vec![S(1), S(2)], "three attempts: two waits of 1 s and 2 s");
    }
}
