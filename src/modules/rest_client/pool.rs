//! The per-shard keep-alive pool of idle HTTP connections, keyed by (host, port, tls).
//!
//! Sans-io: it holds connections of any type `C` with their last-used time and never
//! touches a socket. One shard owns one pool (no locking). Connections the pool gives
//! up — on [`KeepAlivePool::evict_idle`] or when a bound is hit in
//! [`KeepAlivePool::put_back`] — are handed back to the caller, which closes them.
//!
//! Invariants: at most `max_idle_per_key` connections per key and `max_idle_total` in
//! all; within a key, connections are ordered by last use (oldest first), so when the
//! most recent one has outlived `idle_timeout` every other one has too; no key maps to
//! an empty list. `take` hands out the most recently used connection (LIFO), the one
//! least likely to have been closed by the server (RFC 9112 §9.3/§9.8: either side may
//! close an idle connection at any time).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::url::{Host, Url};

/// Which server an idle connection talks to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub host: Host,
    pub port: u16,
    pub tls: bool,
}

impl PoolKey {
    pub fn for_url(url: &Url) -> PoolKey {
        PoolKey {
            host: url.host.clone(),
            port: url.port,
            tls: url.is_tls(),
        }
    }
}

/// Bounds of a pool, fixed at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    pub max_idle_per_key: usize,
    pub max_idle_total: usize,
    /// An idle connection older than this is not handed out and is evicted.
    pub idle_timeout: Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            max_idle_per_key: 8,
            max_idle_total: 64,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Use counters of a pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// `take` found a live idle connection.
    pub hits: u64,
    /// `take` found none.
    pub misses: u64,
    /// Connections accepted by `put_back`.
    pub returned: u64,
    /// Connections given up because a bound was reached.
    pub evicted_full: u64,
    /// Connections given up because they were idle too long.
    pub evicted_idle: u64,
}

#[derive(Debug)]
struct IdleConn<C> {
    conn: C,
    last_used: Instant,
}

/// Idle keep-alive connections of one shard.
#[derive(Debug)]
pub struct KeepAlivePool<C> {
    limits: PoolLimits,
    idle: HashMap<PoolKey, VecDeque<IdleConn<C>>>,
    total: usize,
    stats: PoolStats,
}

impl<C> KeepAlivePool<C> {
    pub fn new(limits: PoolLimits) -> Self {
        KeepAlivePool {
            limits,
            idle: HashMap::new(),
            total: 0,
            stats: PoolStats::default(),
        }
    }

    pub fn limits(&self) -> PoolLimits {
        self.limits
    }

    pub fn stats(&self) -> PoolStats {
        self.stats
    }

    /// Number of idle connections held.
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Number of idle connections held for `key`.
    pub fn idle_for(&self, key: &PoolKey) -> usize {
        self.idle.get(key).map_or(0, VecDeque::len)
    }

    fn expired(&self, last_used: Instant, now: Instant) -> bool {
        now.saturating_duration_since(last_used) >= self.limits.idle_timeout
    }

    /// The most recently used live connection for `key`, if any. Expired ones are left
    /// for [`Self::evict_idle`] to hand back.
    pub fn take(&mut self, key: &PoolKey, now: Instant) -> Option<C> {
        let newest_live = self
            .idle
            .get(key)
            .and_then(VecDeque::back)
            .is_some_and(|c| !self.expired(c.last_used, now));
        if !newest_live {
            self.stats.misses += 1;
            return None;
        }
        let list = self.idle.get_mut(key)?;
        let conn = list.pop_back()?;
        if list.is_empty() {
            self.idle.remove(key);
        }
        self.total -= 1;
        self.stats.hits += 1;
        self.check();
        Some(conn.conn)
    }

    /// Returns a connection after a successful exchange whose response was reusable.
    /// If a bound is reached the oldest idle connection (of this key, else of the
    /// whole pool) is pushed out and returned for the caller to close; with a zero
    /// bound the given connection itself comes back.
    pub fn put_back(&mut self, key: PoolKey, conn: C, now: Instant) -> Option<C> {
        if self.limits.max_idle_per_key == 0 || self.limits.max_idle_total == 0 {
            self.stats.evicted_full += 1;
            return Some(conn);
        }
        let mut pushed_out = None;
        if self.idle_for(&key) >= self.limits.max_idle_per_key {
            pushed_out = self.pop_oldest_of(&key);
        } else if self.total >= self.limits.max_idle_total {
            pushed_out = self.pop_oldest_overall();
        }
        if pushed_out.is_some() {
            self.stats.evicted_full += 1;
        }
        let list = self.idle.entry(key).or_default();
        // Keep the per-key order even if the caller's clock steps back.
        let last_used = list.back().map_or(now, |c| c.last_used.max(now));
        list.push_back(IdleConn { conn, last_used });
        self.total += 1;
        self.stats.returned += 1;
        self.check();
        pushed_out
    }

    /// Removes and returns every connection idle for `idle_timeout` or longer.
    pub fn evict_idle(&mut self, now: Instant) -> Vec<C> {
        let timeout = self.limits.idle_timeout;
        let mut out = Vec::new();
        self.idle.retain(|_, list| {
            while list
                .front()
                .is_some_and(|c| now.saturating_duration_since(c.last_used) >= timeout)
            {
                if let Some(c) = list.pop_front() {
                    out.push(c.conn);
                }
            }
            !list.is_empty()
        });
        self.total -= out.len();
        self.stats.evicted_idle += out.len() as u64;
        self.check();
        out
    }

    /// When the next idle connection expires (for arming the shard's timer).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.idle
            .values()
            .filter_map(VecDeque::front)
            .filter_map(|c| c.last_used.checked_add(self.limits.idle_timeout))
            .min()
    }

    fn pop_oldest_of(&mut self, key: &PoolKey) -> Option<C> {
        let list = self.idle.get_mut(key)?;
        let c = list.pop_front()?;
        if list.is_empty() {
            self.idle.remove(key);
        }
        self.total -= 1;
        Some(c.conn)
    }

    fn pop_oldest_overall(&mut self) -> Option<C> {
        let key = self
            .idle
            .iter()
            .filter_map(|(k, l)| l.front().map(|c| (c.last_used, k)))
            .min_by_key(|(t, _)| *t)
            .map(|(_, k)| k.clone())?;
        self.pop_oldest_of(&key)
    }

    fn check(&self) {
        debug_assert_eq!(
            self.total,
            self.idle.values().map(VecDeque::len).sum::<usize>()
        );
        debug_assert!(self.total <= self.limits.max_idle_total);
        debug_assert!(self.idle.values().all(|l| !l.is_empty()
            && l.len() <= self.limits.max_idle_per_key
            && l.iter()
                .zip(l.iter().skip(1))
                .all(|(a, b)| a.last_used <= b.last_used)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(host: &str, port: u16, tls: bool) -> PoolKey {
        PoolKey {
            host: Host::Domain(host.into()),
            port,
            tls,
        }
    }

    fn limits(per_key: usize, total: usize, secs: u64) -> PoolLimits {
        PoolLimits {
            max_idle_per_key: per_key,
            max_idle_total: total,
            idle_timeout: Duration::from_secs(secs),
        }
    }

    #[test]
    fn take_is_lifo_and_keyed() {
        let t0 = Instant::now();
        let mut p = KeepAlivePool::new(limits(4, 10, 30));
        assert_eq!(p.take(&key("a", 80, false), t0), None);
        assert_eq!(p.put_back(key("a", 80, false), 1, t0), None);
        assert_eq!(
            p.put_back(key("a", 80, false), 2, t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(p.put_back(key("a", 443, true), 3, t0), None);
        assert_eq!(p.len(), 3);
        // Same host, other port/tls: a different key.
        assert_eq!(p.take(&key("a", 80, true), t0), None);
        let now = t0 + Duration::from_secs(2);
        assert_eq!(p.take(&key("a", 80, false), now), Some(2));
        assert_eq!(p.take(&key("a", 80, false), now), Some(1));
        assert_eq!(p.take(&key("a", 80, false), now), None);
        assert_eq!(p.take(&key("a", 443, true), now), Some(3));
        assert!(p.is_empty());
        let s = p.stats();
        assert_eq!((s.hits, s.misses, s.returned), (3, 3, 3));
    }

    #[test]
    fn expired_not_taken_and_evicted() {
        let t0 = Instant::now();
        let mut p = KeepAlivePool::new(limits(4, 10, 30));
        p.put_back(key("a", 80, false), 1, t0);
        p.put_back(key("b", 80, false), 2, t0 + Duration::from_secs(20));
        assert_eq!(p.next_expiry(), Some(t0 + Duration::from_secs(30)));
        let now = t0 + Duration::from_secs(31);
        assert_eq!(p.take(&key("a", 80, false), now), None);
        assert_eq!(p.evict_idle(now), vec![1]);
        assert_eq!(p.len(), 1);
        assert_eq!(p.idle_for(&key("a", 80, false)), 0);
        assert_eq!(p.next_expiry(), Some(t0 + Duration::from_secs(50)));
        assert_eq!(p.evict_idle(t0 + Duration::from_secs(50)), vec![2]);
        assert!(p.is_empty());
        assert_eq!(p.next_expiry(), None);
        assert_eq!(p.stats().evicted_idle, 2);
    }

    #[test]
    fn per_key_bound_pushes_out_oldest_of_key() {
        let t0 = Instant::now();
        let mut p = KeepAlivePool::new(limits(2, 10, 30));
        let k = key("a", 80, false);
        p.put_back(k.clone(), 1, t0);
        p.put_back(k.clone(), 2, t0);
        assert_eq!(p.put_back(k.clone(), 3, t0), Some(1));
        assert_eq!(p.idle_for(&k), 2);
        assert_eq!(p.stats().evicted_full, 1);
    }

    #[test]
    fn total_bound_pushes_out_oldest_overall() {
        let t0 = Instant::now();
        let mut p = KeepAlivePool::new(limits(5, 2, 30));
        p.put_back(key("b", 80, false), 10, t0 + Duration::from_secs(1));
        p.put_back(key("a", 80, false), 20, t0);
        assert_eq!(
            p.put_back(key("c", 80, false), 30, t0 + Duration::from_secs(2)),
            Some(20)
        );
        assert_eq!(p.len(), 2);
        assert_eq!(p.idle_for(&key("a", 80, false)), 0);
    }

    #[test]
    fn zero_bound_returns_connection() {
        let mut p = KeepAlivePool::new(limits(0, 10, 30));
        assert_eq!(p.put_back(key("a", 80, false), 7, Instant::now()), Some(7));
        assert!(p.is_empty());
    }
}
