//! Retries with jittered exponential backoff ("full jitter"): attempt n waits a uniformly random
//! time in `[0, min(max_delay, base_delay * 2^n)]`.
//!
//! Retried: network errors, 429 and 5xx. Never retried: 409 and every other 4xx, which would
//! only fail again. Retrying a write is safe because the SQL API makes a repeated write a no-op
//! that succeeds (DESIGN §5.4).

use std::time::Duration;

/// How a client retries.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Seed of the jitter; `None` seeds from the OS. The simulator passes one.
    pub seed: Option<u64>,
}

impl Default for RetryPolicy {
    /// 5 attempts, 50 ms base, 2 s cap, OS-seeded jitter.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            seed: None,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }

    /// The cap of the wait before retry number `retry` (0 for the first retry).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The wait before retry number `retry`, drawn from `rng`.
    pub fn delay(&self, retry: u32, rng: &mut fastrand::Rng) -> Duration {
        let ceiling = self.ceiling(retry).as_micros().min(u64::MAX as u128) as u64;
        Duration::from_micros(rng.u64(0..=ceiling))
    }
}

/// What one attempt's outcome asks of [`crate::FsyncClient::retrying`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Done: a success, or a failure that would only fail again.
    Done,
    /// Try again, after the server's hint when it gave one.
    Retry(Option<Duration>),
}

/// Whether a response status is worth retrying.
pub fn retryable_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// When a throttled caller may try again, as the answer says: the PostgREST body's `details`
/// (`{"retry_after_ms": n}`, to the millisecond), else the `Retry-After` header (whole seconds).
pub fn retry_hint(headers: &http::HeaderMap, body: &str) -> Option<Duration> {
    let from_body = serde_json::from_str::<fsync_protocol::api::ErrorBody>(body).ok().and_then(|b| b.retry_after());
    from_body.or_else(|| {
        let seconds = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok()?;
        Some(Duration::from_secs(seconds))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_jittered_under_a_growing_capped_ceiling() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            seed: Some(7),
        };
        assert_eq!(policy.ceiling(0), Duration::from_millis(10));
        assert_eq!(policy.ceiling(2), Duration::from_millis(40));
        assert_eq!(policy.ceiling(5), Duration::from_millis(100), "capped");
        assert_eq!(policy.ceiling(40), Duration::from_millis(100), "no overflow");
        let mut rng = fastrand::Rng::with_seed(7);
        let delays: Vec<Duration> = (0..200).map(|_| policy.delay(3, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(80)));
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 100, "jittered, not fixed");
        // The same seed gives the same delays: the simulator depends on it.
        let mut again = fastrand::Rng::with_seed(7);
        assert_eq!(delays, (0..200).map(|_| policy.delay(3, &mut again)).collect::<Vec<_>>());
    }

    #[test]
    fn the_hint_comes_from_the_body_to_the_millisecond_else_from_the_header() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("2"));
        let body = r#"{"code":"PT429","message":"too many","details":"{\"retry_after_ms\": 130}","hint":null}"#;
        assert_eq!(retry_hint(&headers, body), Some(Duration::from_millis(130)));
        assert_eq!(retry_hint(&headers, "not json"), Some(Duration::from_secs(2)));
        assert_eq!(retry_hint(&http::HeaderMap::new(), "{}"), None);
    }

    #[test]
    fn only_429_and_5xx_are_retryable() {
        for s in [429, 500, 502, 503, 504] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 409, 413, 422] {
            assert!(!retryable_status(s), "{s}");
        }
    }
}
