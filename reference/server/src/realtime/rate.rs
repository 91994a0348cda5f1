//! A token bucket: `per_s` tokens a second, at most `burst` saved up; a message spends one.
//! Time comes from the caller (the socket's injected clock), so a simulated run stays exact.

use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_s: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(per_s: u32, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            per_s: f64::from(per_s),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: now,
        }
    }

    /// Spends a token at `now` if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let earned = now.saturating_duration_since(self.last).as_secs_f64() * self.per_s;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fsync_store::{Clock, SystemClock};
    use std::time::Duration;

    #[test]
    fn a_burst_is_spent_then_tokens_come_back_at_the_rate() {
        let start = SystemClock.now();
        let mut bucket = TokenBucket::new(10, 3, start);
        assert!((0..3).all(|_| bucket.take(start)), "the burst");
        assert!(!bucket.take(start), "then nothing");
        assert!(!bucket.take(start + Duration::from_millis(50)), "half a token is not one");
        assert!(bucket.take(start + Duration::from_millis(100)));
        // A long quiet spell saves up at most the burst.
        let later = start + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| bucket.take(later)).count(), 3);
    }
}
