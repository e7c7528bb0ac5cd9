//! Per-client-address rate limit of password and token guesses: a token
//! bucket per address (IPv6 by /64, so one host cannot rotate through its
//! addresses), in a table of bounded size.
//!
//! Design note. The table holds at most [`TABLE_SIZE`] addresses. When it is
//! full, buckets that have refilled are forgotten first (a full bucket is the
//! same as no entry); addresses that still find no room share one overflow
//! bucket. So memory is bounded whatever the number of attacking
//! addresses, an attacker with many addresses gets no more guesses than the
//! overflow bucket allows, and the cost is that during such an attack
//! clients new to the table may be limited too. State is in memory: a
//! restart starts with full buckets (one extra burst at worst).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Addresses tracked at most.
pub const TABLE_SIZE: usize = 4096;
/// Guesses an address may make at once.
pub const BURST: u32 = 5;
/// Guesses an address regains per minute.
pub const PER_MINUTE: u32 = 5;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
struct State {
    buckets: HashMap<IpAddr, Bucket>,
    overflow: Bucket,
}

/// The limiter (one per controller).
#[derive(Debug)]
pub struct Limiter {
    state: Mutex<State>,
    burst: f64,
    per_second: f64,
    capacity: usize,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(BURST, PER_MINUTE, TABLE_SIZE)
    }
}

/// The key an address is counted under: IPv4 as is, IPv6 by its /64, an
/// IPv4-mapped IPv6 address as its IPv4 address.
pub fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl Limiter {
    /// `burst` guesses at once, `per_minute` regained per minute, `capacity` addresses.
    pub fn new(burst: u32, per_minute: u32, capacity: usize) -> Self {
        let now = Instant::now();
        Limiter {
            state: Mutex::new(State {
                buckets: HashMap::new(),
                overflow: Bucket {
                    tokens: f64::from(burst),
                    at: now,
                },
            }),
            burst: f64::from(burst),
            per_second: f64::from(per_minute) / 60.0,
            capacity,
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + dt * self.per_second).min(self.burst);
        b.at = now;
    }

    fn take(&self, b: &mut Bucket, now: Instant) -> Result<(), Duration> {
        self.refill(b, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                ((1.0 - b.tokens) / self.per_second).max(1.0),
            ))
        }
    }

    /// Takes one guess for `ip`; `Err(retry_after)` when it has none left.
    pub fn try_take(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let ip = key(ip);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !st.buckets.contains_key(&ip) && st.buckets.len() >= self.capacity {
            let full = self.burst;
            let per_second = self.per_second;
            st.buckets.retain(|_, b| {
                let dt = now.saturating_duration_since(b.at).as_secs_f64();
                b.tokens + dt * per_second < full
            });
        }
        if st.buckets.len() < self.capacity || st.buckets.contains_key(&ip) {
            let fresh = Bucket {
                tokens: self.burst,
                at: now,
            };
            let mut b = *st.buckets.get(&ip).unwrap_or(&fresh);
            let r = self.take(&mut b, now);
            st.buckets.insert(ip, b);
            r
        } else {
            let mut b = st.overflow;
            let r = self.take(&mut b, now);
            st.overflow = b;
            r
        }
    }

    /// Addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .buckets
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_gets_its_burst_then_waits_and_others_are_unaffected() {
        let l = Limiter::new(3, 6, 16);
        let t0 = Instant::now();
        for _ in 0..3 {
            l.try_take(ip("192.0.2.1"), t0).unwrap();
        }
        let wait = l.try_take(ip("192.0.2.1"), t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
        l.try_take(ip("192.0.2.2"), t0).unwrap();
        l.try_take(ip("192.0.2.1"), t0 + Duration::from_secs(10))
            .unwrap();
    }

    #[test]
    fn ipv6_addresses_of_one_slash_64_share_a_bucket() {
        let l = Limiter::new(1, 1, 16);
        let t0 = Instant::now();
        l.try_take(ip("2001:db8::1"), t0).unwrap();
        assert!(l.try_take(ip("2001:db8::ffff:2"), t0).is_err());
        l.try_take(ip("2001:db8:0:1::1"), t0).unwrap();
    }

    #[test]
    fn the_table_stays_bounded_and_overflowing_addresses_share_one_bucket() {
        let l = Limiter::new(2, 1, 8);
        let t0 = Instant::now();
        for i in 0..8 {
            l.try_take(ip(&format!("198.51.100.{i}")), t0).unwrap();
        }
        assert_eq!(l.tracked(), 8);
        // Table full of partly spent buckets: new addresses share the overflow bucket.
        l.try_take(ip("203.0.113.1"), t0).unwrap();
        l.try_take(ip("203.0.113.2"), t0).unwrap();
        assert!(l.try_take(ip("203.0.113.3"), t0).is_err());
        assert_eq!(l.tracked(), 8);
        // Once the old buckets have refilled they are forgotten and make room.
        l.try_take(ip("203.0.113.4"), t0 + Duration::from_secs(120))
            .unwrap();
        assert_eq!(l.tracked(), 1);
    }
}
