//! Admission limits of a server endpoint's accept loop: the address key that
//! per-IP caps and rate limits count by, and token buckets on the arrival
//! rate of new connections (per address key and global).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

/// The key per-IP caps and rate limits count a peer address under.
///
/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a dual-stack listener
/// reports IPv4 peers) counts as the IPv4 address `a.b.c.d`. Any other IPv6
/// address counts by its first `ipv6_prefix_len` bits (a /64 by default: one
/// subscriber usually holds a whole /64, so counting single addresses would let
/// one host open a connection per address). `ipv6_prefix_len` is clamped to
/// 128; 0 puts every IPv6 peer under one key.
pub fn ip_key(ip: IpAddr, ipv6_prefix_len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let bits = u32::from(ipv6_prefix_len.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// Arrival-rate limits on new connections, checked in the accept loop before
/// any TLS or WebSocket work. A refused connection is counted in
/// `connections_refused_rate` and answered with HTTP 503 when possible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AcceptRate {
    /// New connections per second one address key ([`ip_key`]) may open,
    /// sustained. Default 20.
    pub per_ip_per_sec: f64,
    /// Burst of new connections per address key. Default 40.
    pub per_ip_burst: f64,
    /// New connections per second for the whole endpoint, sustained. Default 500.
    pub global_per_sec: f64,
    /// Burst of new connections for the whole endpoint. Default 1000.
    pub global_burst: f64,
}

impl Default for AcceptRate {
    fn default() -> Self {
        AcceptRate {
            per_ip_per_sec: 20.0,
            per_ip_burst: 40.0,
            global_per_sec: 500.0,
            global_burst: 1000.0,
        }
    }
}

impl AcceptRate {
    /// No limit on the arrival rate (tests and trusted networks).
    pub const fn unlimited() -> Self {
        AcceptRate {
            per_ip_per_sec: f64::INFINITY,
            per_ip_burst: f64::INFINITY,
            global_per_sec: f64::INFINITY,
            global_burst: f64::INFINITY,
        }
    }
}

/// A token bucket: `burst` tokens, refilled at `per_sec`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Bucket {
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, per_sec: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(burst);
        self.last = now;
    }
}

/// Most address keys tracked at once; beyond it, keys whose bucket refilled
/// are forgotten, and if none has, new keys share the global bucket only.
const MAX_TRACKED_KEYS: usize = 64 * 1024;

/// One place among the connections that have not authenticated yet;
/// released on drop.
#[derive(Debug)]
pub(crate) struct Unauthenticated(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Unauthenticated {
    /// Takes a place unless `max` are taken.
    pub(crate) fn acquire(
        count: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
        max: usize,
    ) -> Option<Self> {
        use std::sync::atomic::Ordering;
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Unauthenticated(std::sync::Arc::clone(count)))
    }
}

impl Drop for Unauthenticated {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateRefusal {
    PerIp,
    Global,
}

/// The accept loop's token buckets.
#[derive(Debug)]
pub(crate) struct AcceptLimiter {
    rate: AcceptRate,
    global: Bucket,
    per_key: HashMap<IpAddr, Bucket>,
}

impl AcceptLimiter {
    pub(crate) fn new(rate: AcceptRate, now: Instant) -> Self {
        AcceptLimiter {
            rate,
            global: Bucket::full(rate.global_burst, now),
            per_key: HashMap::new(),
        }
    }

    /// Takes one token from `key`'s bucket and the global one, or says which
    /// limit refused (taking nothing).
    pub(crate) fn admit(&mut self, key: IpAddr, now: Instant) -> Result<(), RateRefusal> {
        let rate = self.rate;
        self.global
            .refill(rate.global_per_sec, rate.global_burst, now);
        if self.per_key.len() >= MAX_TRACKED_KEYS && !self.per_key.contains_key(&key) {
            self.per_key.retain(|_, bucket| {
                bucket.refill(rate.per_ip_per_sec, rate.per_ip_burst, now);
                bucket.tokens < rate.per_ip_burst
            });
        }
        let tracked = self.per_key.len() < MAX_TRACKED_KEYS || self.per_key.contains_key(&key);
        if tracked {
            let bucket = self
                .per_key
                .entry(key)
                .or_insert_with(|| Bucket::full(rate.per_ip_burst, now));
            bucket.refill(rate.per_ip_per_sec, rate.per_ip_burst, now);
            if bucket.tokens < 1.0 {
                return Err(RateRefusal::PerIp);
            }
        }
        if self.global.tokens < 1.0 {
            return Err(RateRefusal::Global);
        }
        self.global.tokens -= 1.0;
        if let Some(bucket) = self.per_key.get_mut(&key) {
            bucket.tokens -= 1.0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_addresses_of_one_slash_64_share_a_key() {
        let a = ip_key(ip("2001:db8:1:2:aaaa::1"), 64);
        let b = ip_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), 64);
        let other = ip_key(ip("2001:db8:1:3::1"), 64);
        assert_eq!(a, b);
        assert_eq!(a, ip("2001:db8:1:2::"));
        assert_ne!(a, other);
    }

    #[test]
    fn the_ipv6_prefix_is_configurable_and_clamped() {
        assert_eq!(ip_key(ip("2001:db8:1:2::1"), 48), ip("2001:db8:1::"));
        assert_eq!(ip_key(ip("2001:db8:1:2::1"), 128), ip("2001:db8:1:2::1"));
        assert_eq!(ip_key(ip("2001:db8:1:2::1"), 200), ip("2001:db8:1:2::1"));
        assert_eq!(ip_key(ip("2001:db8:1:2::1"), 0), ip("::"));
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        assert_eq!(
            ip_key(ip("::ffff:192.0.2.7"), 64),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))
        );
        assert_eq!(ip_key(ip("192.0.2.7"), 64), ip("192.0.2.7"));
        // IPv4 addresses are never grouped.
        assert_ne!(ip_key(ip("192.0.2.7"), 64), ip_key(ip("192.0.2.8"), 64));
    }

    #[test]
    fn per_ip_bucket_refuses_a_burst_and_refills() {
        let start = Instant::now();
        let rate = AcceptRate {
            per_ip_per_sec: 2.0,
            per_ip_burst: 3.0,
            ..AcceptRate::unlimited()
        };
        let mut limiter = AcceptLimiter::new(rate, start);
        let storm = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(limiter.admit(storm, start), Ok(()));
        }
        assert_eq!(limiter.admit(storm, start), Err(RateRefusal::PerIp));
        // Another address is not affected.
        assert_eq!(limiter.admit(ip("192.0.2.2"), start), Ok(()));
        // Half a second later one token is back.
        let later = start + Duration::from_millis(500);
        assert_eq!(limiter.admit(storm, later), Ok(()));
        assert_eq!(limiter.admit(storm, later), Err(RateRefusal::PerIp));
    }

    #[test]
    fn the_global_bucket_limits_every_address_together() {
        let start = Instant::now();
        let rate = AcceptRate {
            global_per_sec: 1.0,
            global_burst: 2.0,
            ..AcceptRate::unlimited()
        };
        let mut limiter = AcceptLimiter::new(rate, start);
        assert_eq!(limiter.admit(ip("192.0.2.1"), start), Ok(()));
        assert_eq!(limiter.admit(ip("192.0.2.2"), start), Ok(()));
        assert_eq!(
            limiter.admit(ip("192.0.2.3"), start),
            Err(RateRefusal::Global)
        );
        let later = start + Duration::from_secs(1);
        assert_eq!(limiter.admit(ip("192.0.2.3"), later), Ok(()));
    }
}
