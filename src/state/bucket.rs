//! Token bucket rate limiting.
//!
//! Invariants: the bucket never holds more than its capacity; time running
//! backwards (a clock step between isolates) never adds tokens; a refused
//! request consumes nothing and says when to retry.

/// A rate: `capacity` requests in a burst, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rate {
    pub capacity: u32,
    pub per_second: f64,
}

/// The stored state of one bucket (a few bytes per session or tool).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bucket {
    tokens: f64,
    updated_ms: u64,
}

/// The outcome of taking one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    Allowed {
        remaining: u32,
    },
    /// Refused; `retry_after_s` is what `Retry-After` should say.
    Limited {
        retry_after_s: u64,
    },
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: Rate, now_ms: u64) -> Bucket {
        Bucket { tokens: f64::from(rate.capacity), updated_ms: now_ms }
    }

    fn refill(&mut self, rate: Rate, now_ms: u64) {
        // A clock that went backwards refills nothing and does not move the mark.
        if now_ms > self.updated_ms {
            let elapsed = (now_ms - self.updated_ms) as f64 / 1000.0;
            self.tokens = (self.tokens + elapsed * rate.per_second).min(f64::from(rate.capacity));
            self.updated_ms = now_ms;
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, rate: Rate, now_ms: u64) -> Take {
        self.refill(rate, now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Take::Allowed { remaining: self.tokens.floor() as u32 }
        } else {
            let missing = 1.0 - self.tokens;
            let wait = if rate.per_second > 0.0 { (missing / rate.per_second).ceil() as u64 } else { u64::MAX };
            Take::Limited { retry_after_s: wait.max(1) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate { capacity: 5, per_second: 1.0 };

    #[test]
    fn a_burst_over_the_limit_is_refused_exactly_past_capacity() {
        let mut b = Bucket::new(RATE, 0);
        let outcomes: Vec<Take> = (0..8).map(|_| b.take(RATE, 0)).collect();
        let allowed = outcomes.iter().filter(|t| matches!(t, Take::Allowed { .. })).count();
        assert_eq!(allowed, 5);
        assert_eq!(outcomes[5], Take::Limited { retry_after_s: 1 });
        assert_eq!(outcomes[4], Take::Allowed { remaining: 0 });
    }

    #[test]
    fn refills_with_time_but_never_past_capacity() {
        let mut b = Bucket::new(RATE, 0);
        for _ in 0..5 {
            b.take(RATE, 0);
        }
        assert!(matches!(b.take(RATE, 500), Take::Limited { .. }), "half a token is not a token");
        assert!(matches!(b.take(RATE, 1_000), Take::Allowed { .. }));
        // A long pause refills to capacity, no more.
        let allowed = (0..10).filter(|_| matches!(b.take(RATE, 1_000_000), Take::Allowed { .. })).count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn a_clock_going_backwards_adds_nothing() {
        let mut b = Bucket::new(RATE, 10_000);
        for _ in 0..5 {
            b.take(RATE, 10_000);
        }
        assert!(matches!(b.take(RATE, 1_000), Take::Limited { .. }));
        assert!(matches!(b.take(RATE, 10_500), Take::Limited { .. }), "the mark did not move back");
        assert!(matches!(b.take(RATE, 11_000), Take::Allowed { .. }));
    }

    #[test]
    fn retry_after_reflects_the_rate() {
        let slow = Rate { capacity: 1, per_second: 0.1 };
        let mut b = Bucket::new(slow, 0);
        b.take(slow, 0);
        assert_eq!(b.take(slow, 0), Take::Limited { retry_after_s: 10 });
        let stopped = Rate { capacity: 1, per_second: 0.0 };
        let mut b = Bucket::new(stopped, 0);
        b.take(stopped, 0);
        assert_eq!(b.take(stopped, 5_000), Take::Limited { retry_after_s: u64::MAX });
    }
}
