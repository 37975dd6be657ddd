//! When a failed delivery is tried again: exponential backoff with jitter, for a bounded time.

use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The wait after the first failure; each further failure doubles it...
    pub first: Duration,
    /// ... up to this.
    pub max: Duration,
    /// A message still failing this long after its first attempt has failed for good.
    pub give_up_after: Duration,
}

impl Backoff {
    /// Webhooks and email: 5 s, 10 s, 20 s, ... up to an hour between attempts, for three days.
    pub const DELIVERIES: Backoff = Backoff {
        first: Duration::from_secs(5),
        max: Duration::from_secs(3600),
        give_up_after: Duration::from_secs(3 * 24 * 3600),
    };

    /// The wait after the `failures`-th failure in a row (1 for the first): between half and
    /// all of the doubled delay, at random, so that receivers coming back are not hit by every
    /// retry at once.
    pub fn delay(&self, failures: u32) -> Duration {
        let doubled = self
            .first
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(30)))
            .min(self.max);
        let half = doubled / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// When to try again after the `failures`-th failure, or `None` when the message has been
    /// failing for too long (counted from its first attempt) and should be given up.
    pub fn next_attempt(
        &self,
        failures: u32,
        first_attempt_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let next = now + chrono::Duration::from_std(self.delay(failures)).ok()?;
        let deadline = first_attempt_at + chrono::Duration::from_std(self.give_up_after).ok()?;
        (now < deadline).then(|| next.min(deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_their_jitter_up_to_the_maximum() {
        let backoff = Backoff::DELIVERIES;
        for (failures, full) in [(1, 5), (2, 10), (3, 20), (11, 3600), (40, 3600)] {
            for _ in 0..50 {
                let delay = backoff.delay(failures).as_secs_f64();
                assert!(
                    delay >= full as f64 / 2.0 && delay <= full as f64,
                    "failure {failures}: {delay}"
                );
            }
        }
    }

    #[test]
    fn a_message_is_given_up_three_days_after_its_first_attempt() {
        let backoff = Backoff::DELIVERIES;
        let first = Utc::now();
        let soon = backoff.next_attempt(1, first, first).unwrap();
        assert!(soon > first && soon <= first + chrono::Duration::seconds(5));
        let late = first + chrono::Duration::hours(71);
        let last = backoff.next_attempt(60, first, late).unwrap();
        assert!(
            last <= first + chrono::Duration::days(3),
            "never beyond the deadline"
        );
        let after = first + chrono::Duration::days(3);
        assert_eq!(backoff.next_attempt(61, first, after), None);
    }
}
