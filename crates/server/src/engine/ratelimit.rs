//! Request rate limits per caller, in memory on each node (§14: request rate limits are per
//! node). A fixed window per key; the table is bounded, so a flood of addresses cannot grow
//! memory without limit.

use std::collections::HashMap;
use std::sync::Mutex;

use creddy_core::Timestamp;
use creddy_core::policy::Rate;

/// The most callers tracked at once; beyond it, finished windows are dropped first and a new
/// caller is refused until room frees up.
const MAX_KEYS: usize = 10_000;

/// At most `rate.count` requests per key and window.
#[derive(Debug)]
pub struct RateLimiter {
    rate: Rate,
    windows: Mutex<HashMap<String, (i64, u64)>>,
}

impl RateLimiter {
    /// A limiter allowing `rate`.
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Like [`RateLimiter::check`], refusing with 429 `rate_limited` and `Retry-After`;
    /// `what` names the requests counted ("enrollment requests from this address").
    pub(crate) fn admit(
        &self,
        key: &str,
        now: Timestamp,
        what: &str,
    ) -> Result<(), crate::engine::error::EngineError> {
        self.check(key, now).map_err(|retry_after| {
            crate::engine::error::EngineError::rate_limited(format!("too many {what}"), retry_after)
        })
    }

    /// Counts one request of `key` at `now`; `Err(seconds)` when over the limit, with the
    /// seconds until the window ends (for `Retry-After`).
    pub fn check(&self, key: &str, now: Timestamp) -> Result<(), u64> {
        let window_ms =
            i64::try_from(self.rate.window_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        let start = now.as_millis() - now.as_millis().rem_euclid(window_ms);
        let retry_after =
            u64::try_from((start + window_ms - now.as_millis()).div_euclid(1000) + 1).unwrap_or(1);
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() >= MAX_KEYS && !windows.contains_key(key) {
            windows.retain(|_, (s, _)| *s == start);
            if windows.len() >= MAX_KEYS {
                return Err(retry_after);
            }
        }
        let entry = windows.entry(key.to_owned()).or_insert((start, 0));
        if entry.0 != start {
            *entry = (start, 0);
        }
        if entry.1 >= self.rate.count {
            return Err(retry_after);
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_gets_its_count_per_window() {
        let limiter = RateLimiter::new(Rate {
            count: 2,
            window_seconds: 60,
        });
        let t0 = Timestamp::from_millis(1_800_000_000_000);
        assert_eq!(limiter.check("a", t0), Ok(()));
        assert_eq!(limiter.check("a", t0.plus_seconds(1)), Ok(()));
        let refused = limiter.check("a", t0.plus_seconds(2));
        assert!(
            matches!(refused, Err(s) if (1..=60).contains(&s)),
            "{refused:?}"
        );
        assert_eq!(limiter.check("b", t0.plus_seconds(2)), Ok(()), "per key");
        assert_eq!(
            limiter.check("a", t0.plus_seconds(60)),
            Ok(()),
            "a new window"
        );
    }
}
