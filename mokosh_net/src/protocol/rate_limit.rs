//! Token-bucket rate limiting with time as an input.
//!
//! A [`RateLimiter`] combines a message bucket (default 100 messages/s with a
//! burst of 150, as the original Mokosh specification says) with a byte bucket
//! (default 256 KiB/s, burst 512 KiB). Every packet a peer sends after the
//! handshake — control messages included — costs one message token and its size
//! in byte tokens; a packet is admitted only if both buckets can pay, and then
//! both pay (all or nothing). The session charges a packet's wire bytes plus,
//! for a compressed packet, its declared decompressed size, so a small frame
//! that expands to a large body pays for the large body.
//!
//! Each side limits what its *peer* sends, with its own policy; nothing is
//! negotiated. These defaults are the server's budget for one client. A client
//! limits the server, which also relays other players' traffic, far more
//! loosely (the client plugin uses 2,000 messages/s and 8 MiB/s); see
//! `docs/PROTOCOL.md` section 9.
//!
//! Arithmetic is integer-only (tokens are kept in billionths) so results are
//! exact and reproducible: the same sequence of `(now, size)` inputs always gives
//! the same decisions.

use std::time::{Duration, Instant};

use thiserror::Error;

const SCALE: u128 = 1_000_000_000;

/// A token bucket: `rate` tokens per second, holding at most `burst` tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    rate_per_sec: u64,
    burst: u64,
    /// Tokens × 1e9.
    tokens: u128,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_sec: u64, burst: u64) -> Self {
        TokenBucket {
            rate_per_sec,
            burst,
            tokens: u128::from(burst) * SCALE,
            last: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            // A clock that goes backwards (it should not: Instant is monotonic)
            // simply refills nothing.
            let elapsed = now.saturating_duration_since(last).as_nanos();
            let added = elapsed.saturating_mul(u128::from(self.rate_per_sec));
            self.tokens = self
                .tokens
                .saturating_add(added)
                .min(u128::from(self.burst) * SCALE);
        }
        if self.last.is_none_or(|last| now > last) {
            self.last = Some(now);
        }
    }

    /// Whether `cost` tokens are available at `now` (refilling first).
    pub fn can_take(&mut self, now: Instant, cost: u64) -> bool {
        self.refill(now);
        self.tokens >= u128::from(cost) * SCALE
    }

    /// Takes `cost` tokens if available; returns whether it did.
    pub fn try_take(&mut self, now: Instant, cost: u64) -> bool {
        if self.can_take(now, cost) {
            self.tokens -= u128::from(cost) * SCALE;
            true
        } else {
            false
        }
    }

    /// Whole tokens available as of the last refill.
    pub fn available(&self) -> u64 {
        (self.tokens / SCALE) as u64
    }
}

/// Limits applied to one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Sustained messages per second.
    pub messages_per_sec: u64,
    /// Message burst.
    pub message_burst: u64,
    /// Sustained bytes per second (wire bytes, headers included).
    pub bytes_per_sec: u64,
    /// Byte burst.
    pub byte_burst: u64,
    /// How many over-limit packets are tolerated (refilling at one per second)
    /// before the peer is disconnected. Over-limit packets are always dropped.
    pub violation_burst: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            messages_per_sec: 100,
            message_burst: 150,
            bytes_per_sec: 256 * 1024,
            byte_burst: 512 * 1024,
            violation_burst: 50,
        }
    }
}

impl RateLimitConfig {
    /// No effective limit (for tests and trusted links).
    pub const fn unlimited() -> Self {
        RateLimitConfig {
            messages_per_sec: u64::MAX / 4,
            message_burst: u64::MAX / 4,
            bytes_per_sec: u64::MAX / 4,
            byte_burst: u64::MAX / 4,
            violation_burst: u64::MAX / 4,
        }
    }
}

/// What the limiter decided about one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// Over the limit: drop this packet, keep the session.
    #[error("rate limited: packet dropped")]
    Dropped,
    /// Over the limit for too long: end the session.
    #[error("rate limit exceeded persistently: disconnect")]
    Disconnect,
}

/// Per-peer message and byte budgets plus a tolerance for violations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimiter {
    messages: TokenBucket,
    bytes: TokenBucket,
    violations: TokenBucket,
    dropped: u64,
}

impl RateLimiter {
    /// A limiter with full buckets.
    pub fn new(config: RateLimitConfig) -> Self {
        RateLimiter {
            messages: TokenBucket::new(config.messages_per_sec, config.message_burst),
            bytes: TokenBucket::new(config.bytes_per_sec, config.byte_burst),
            violations: TokenBucket::new(1, config.violation_burst),
            dropped: 0,
        }
    }

    /// Charges one packet costing `size` byte tokens at `now`.
    pub fn check(&mut self, now: Instant, size: usize) -> Result<(), RateLimitError> {
        let size = size as u64;
        if self.messages.can_take(now, 1) && self.bytes.can_take(now, size) {
            self.messages.try_take(now, 1);
            self.bytes.try_take(now, size);
            return Ok(());
        }
        self.dropped += 1;
        if self.violations.try_take(now, 1) {
            Err(RateLimitError::Dropped)
        } else {
            Err(RateLimitError::Disconnect)
        }
    }

    /// Packets dropped so far.
    pub const fn dropped(&self) -> u64 {
        self.dropped
    }

    /// How long until one more message token is available (zero if one is).
    pub fn time_until_next_message(&self) -> Duration {
        if self.messages.tokens >= SCALE || self.messages.rate_per_sec == 0 {
            return Duration::ZERO;
        }
        let missing = SCALE - self.messages.tokens;
        let nanos = missing.div_ceil(u128::from(self.messages.rate_per_sec));
        Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(RateLimitConfig::default());
        let admitted = (0..200)
            .filter(|_| limiter.check(start, 10).is_ok())
            .count();
        assert_eq!(admitted, 150, "burst");
        // One second later exactly 100 more tokens exist.
        let later = start + Duration::from_secs(1);
        let admitted = (0..200)
            .filter(|_| limiter.check(later, 10).is_ok())
            .count();
        assert_eq!(admitted, 100, "sustained");
        // 10 ms later: one token.
        let a_bit = later + Duration::from_millis(10);
        assert!(limiter.check(a_bit, 10).is_ok());
        assert!(limiter.check(a_bit, 10).is_err());
    }

    #[test]
    fn byte_budget_is_enforced_all_or_nothing() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(RateLimitConfig {
            bytes_per_sec: 1000,
            byte_burst: 1000,
            ..RateLimitConfig::default()
        });
        assert!(limiter.check(start, 900).is_ok());
        assert!(limiter.check(start, 200).is_err());
        // The refused packet did not consume a message token or bytes.
        assert!(limiter.check(start, 100).is_ok());
        assert_eq!(limiter.dropped(), 1);
    }

    #[test]
    fn persistent_violation_disconnects() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(RateLimitConfig {
            message_burst: 1,
            messages_per_sec: 1,
            violation_burst: 3,
            ..RateLimitConfig::default()
        });
        assert!(limiter.check(start, 1).is_ok());
        for _ in 0..3 {
            assert_eq!(limiter.check(start, 1), Err(RateLimitError::Dropped));
        }
        assert_eq!(limiter.check(start, 1), Err(RateLimitError::Disconnect));
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let start = Instant::now() + Duration::from_secs(10);
        let mut bucket = TokenBucket::new(10, 1);
        assert!(bucket.try_take(start, 1));
        assert!(!bucket.try_take(start - Duration::from_secs(5), 1));
        assert!(!bucket.try_take(start, 1));
        assert!(bucket.try_take(start + Duration::from_millis(100), 1));
    }

    #[test]
    fn time_until_next_message() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(RateLimitConfig {
            message_burst: 1,
            messages_per_sec: 4,
            ..RateLimitConfig::default()
        });
        assert_eq!(limiter.time_until_next_message(), Duration::ZERO);
        assert!(limiter.check(start, 1).is_ok());
        assert_eq!(
            limiter.time_until_next_message(),
            Duration::from_millis(250)
        );
    }
}
