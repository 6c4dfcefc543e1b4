//! One backoff for every retry: the pipeline's transport and outbox
//! writes, the SFTP transport's reconnects, the Altinn 3 client's calls.
//!
//! Exponential with a cap and "equal jitter": the n-th wait after failures
//! is `first * 2^n`, at most `cap`, then drawn between half and all of it.
//! The cap is a real bound (no jitter on top of it), and senders that
//! failed together do not retry in step. A server's `Retry-After` is a
//! floor: it is waited for in full ([`Backoff::at_least`]).

use std::time::{Duration, Instant};

/// The wait after `failures` earlier failures (0: the first retry).
pub fn delay(first: Duration, cap: Duration, failures: u32) -> Duration {
    let full = first
        .saturating_mul(1u32 << failures.min(20))
        .min(cap.max(first));
    full.mul_f64(0.5 + 0.5 * fastrand::f64())
}

/// A backoff with memory: when the next try may be, for a loop that asks
/// [`Backoff::ready`] on every tick.
#[derive(Debug, Default)]
pub struct Backoff {
    until: Option<Instant>,
    failures: u32,
}

impl Backoff {
    /// The first wait after a failure.
    pub const FIRST: Duration = Duration::from_millis(500);
    /// The longest wait ([`Backoff::failed`]).
    pub const MAX: Duration = Duration::from_secs(300);

    /// May the next try go now?
    pub fn ready(&self) -> bool {
        self.until.is_none_or(|t| Instant::now() >= t)
    }

    /// A try failed: wait longer before the next. Returns the wait.
    pub fn failed(&mut self) -> Duration {
        self.failed_upto(Self::MAX)
    }

    /// Like [`Backoff::failed`], with waits growing to at most `max`.
    pub fn failed_upto(&mut self, max: Duration) -> Duration {
        let wait = delay(Self::FIRST, max, self.failures);
        self.failures = self.failures.saturating_add(1);
        self.until = Some(Instant::now() + wait);
        wait
    }

    /// Wait at least `min` (a server's Retry-After) before the next try.
    pub fn at_least(&mut self, min: Option<Duration>) {
        if let Some(min) = min {
            let until = Instant::now() + min;
            if self.until.is_none_or(|t| t < until) {
                self.until = Some(until);
            }
        }
    }

    /// A try got through: the next failure starts from the first wait.
    pub fn succeeded(&mut self) {
        self.until = None;
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_first_to_the_cap_with_equal_jitter() {
        let ms = Duration::from_millis;
        for n in 0..30 {
            let full = (100u64 << n.min(20)).min(1000);
            let d = delay(ms(100), ms(1000), n).as_millis() as u64;
            assert!(d >= full / 2 && d <= full, "after {n}: {d} ms");
        }
        // A cap below the first wait does not shorten the first wait.
        assert!(delay(ms(100), ms(10), 0) >= ms(50));
    }

    #[test]
    fn retry_after_is_a_floor_and_success_starts_over() {
        let mut b = Backoff::default();
        assert!(b.ready());
        let first = b.failed();
        assert!(first >= Backoff::FIRST / 2 && first <= Backoff::FIRST);
        assert!(!b.ready());
        for _ in 0..20 {
            assert!(b.failed() <= Backoff::MAX);
        }
        assert!(b.failed_upto(Duration::from_secs(10)) <= Duration::from_secs(10));
        b.succeeded();
        assert!(b.ready());
        b.at_least(Some(Duration::from_secs(60)));
        assert!(!b.ready());
        b.succeeded();
        assert!(b.failed() <= Backoff::FIRST);
    }
}
