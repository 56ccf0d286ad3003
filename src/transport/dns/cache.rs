//! The per-shard DNS cache: a plain struct owned by one shard's resolver, never shared.
//!
//! Owns RRsets keyed by (canonical owner name, [`QueryType`]) and negative answers
//! (RFC 2308): NXDOMAIN keyed by name alone (it covers every type, §5), NODATA keyed by
//! (name, type). Sans-io: every call takes `now`. Lookups do not allocate.
//!
//! Invariants: `names` and `by_expiry` hold exactly the same entries; `len <=
//! capacity`; a TTL is clamped to `max_ttl` (positive) or `max_negative_ttl` (negative,
//! RFC 2308 §5 suggests 1–3 hours) and a zero TTL is never stored (RFC 1035 §3.2.1:
//! use for the transaction in progress only). When full, the entry closest to
//! expiry (an expired one first) is evicted.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::message::{QueryType, Rdata};

/// Longest time any positive RRset is kept (one day).
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(86_400);
/// Longest time a negative answer is kept (RFC 2308 §5: three hours).
pub const DEFAULT_MAX_NEGATIVE_TTL: Duration = Duration::from_secs(10_800);

/// Which slot of a name an entry fills: NXDOMAIN covers the whole name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Rrset(QueryType),
    NxDomain,
}

#[derive(Debug)]
enum Value {
    Records(Vec<Rdata>),
    NoData,
    NxDomain,
}

#[derive(Debug)]
struct Entry {
    slot: Slot,
    value: Value,
    expires: Instant,
    seq: u64,
}

/// What the cache knows about a (name, type).
#[derive(Debug, PartialEq, Eq)]
pub enum Cached<'a> {
    /// The RRset (for CNAME: one record, the alias target).
    Records(&'a [Rdata]),
    /// RFC 2308 NXDOMAIN: the name does not exist.
    NxDomain,
    /// RFC 2308 NODATA: the name exists with no record of this type.
    NoData,
}

/// Counters of cache use (read by the management endpoint).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub inserts: u64,
    /// Entries dropped to make room while still unexpired.
    pub evictions: u64,
}

/// A bounded TTL cache of DNS answers. See the module documentation.
#[derive(Debug)]
pub struct Cache {
    /// Per name, its few slots (at most one per [`Slot`]); looked up by `&str`.
    names: HashMap<String, Vec<Entry>>,
    /// Number of entries over all names.
    len: usize,
    by_expiry: BTreeMap<(Instant, u64), (String, Slot)>,
    capacity: usize,
    max_ttl: Duration,
    max_negative_ttl: Duration,
    next_seq: u64,
    stats: CacheStats,
}

impl Cache {
    /// A cache holding at most `capacity` entries (RRsets plus negative answers),
    /// with the default TTL caps.
    pub fn new(capacity: usize) -> Self {
        Self::with_limits(capacity, DEFAULT_MAX_TTL, DEFAULT_MAX_NEGATIVE_TTL)
    }

    /// A cache with explicit TTL caps.
    pub fn with_limits(capacity: usize, max_ttl: Duration, max_negative_ttl: Duration) -> Self {
        Self {
            names: HashMap::with_capacity(capacity.min(4096)),
            len: 0,
            by_expiry: BTreeMap::new(),
            capacity,
            max_ttl,
            max_negative_ttl,
            next_seq: 0,
            stats: CacheStats::default(),
        }
    }

    /// Number of live-or-not-yet-purged entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` if nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The configured bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Use counters.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Removes the entry of `name`/`slot` from both indexes.
    fn remove(&mut self, name: &str, slot: Slot) {
        let Some(entries) = self.names.get_mut(name) else {
            return;
        };
        if let Some(at) = entries.iter().position(|e| e.slot == slot) {
            let entry = entries.swap_remove(at);
            self.by_expiry.remove(&(entry.expires, entry.seq));
            self.len -= 1;
        }
        if entries.is_empty() {
            self.names.remove(name);
        }
    }

    /// Removes `name`/`slot` if it has expired at `now`; returns whether it is live.
    fn live(&mut self, name: &str, slot: Slot, now: Instant) -> bool {
        let expires = self
            .names
            .get(name)
            .and_then(|entries| entries.iter().find(|e| e.slot == slot))
            .map(|e| e.expires);
        match expires {
            Some(when) if when > now => true,
            Some(_) => {
                self.remove(name, slot);
                false
            }
            None => false,
        }
    }

    /// What is known about `name` (canonical) / `qtype` at `now`. NXDOMAIN for the name
    /// answers every type. Does not allocate.
    pub fn get(&mut self, name: &str, qtype: QueryType, now: Instant) -> Option<Cached<'_>> {
        if self.live(name, Slot::NxDomain, now) {
            self.stats.hits += 1;
            return Some(Cached::NxDomain);
        }
        let slot = Slot::Rrset(qtype);
        if !self.live(name, slot, now) {
            self.stats.misses += 1;
            return None;
        }
        self.stats.hits += 1;
        let entry = self.names.get(name)?.iter().find(|e| e.slot == slot)?;
        Some(match &entry.value {
            Value::Records(records) => Cached::Records(records),
            Value::NoData => Cached::NoData,
            Value::NxDomain => Cached::NxDomain,
        })
    }

    fn insert(&mut self, name: &str, slot: Slot, value: Value, ttl: Duration, now: Instant) {
        if ttl.is_zero() || self.capacity == 0 {
            return;
        }
        let Some(expires) = now.checked_add(ttl) else {
            return;
        };
        self.remove(name, slot);
        while self.len >= self.capacity {
            let Some((&(when, _), (victim, victim_slot))) = self.by_expiry.iter().next() else {
                break;
            };
            let (victim, victim_slot) = (victim.clone(), *victim_slot);
            self.remove(&victim, victim_slot);
            if when > now {
                self.stats.evictions += 1;
            }
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.by_expiry
            .insert((expires, seq), (name.to_owned(), slot));
        self.names.entry(name.to_owned()).or_default().push(Entry {
            slot,
            value,
            expires,
            seq,
        });
        self.len += 1;
        self.stats.inserts += 1;
        debug_assert_eq!(self.len, self.by_expiry.len());
    }

    /// Stores the RRset `records` of `name`/`qtype`, valid `ttl` seconds from `now`
    /// (clamped to the positive cap). An empty set is ignored.
    pub fn insert_records(
        &mut self,
        name: &str,
        qtype: QueryType,
        records: Vec<Rdata>,
        ttl: u32,
        now: Instant,
    ) {
        if records.is_empty() {
            return;
        }
        let ttl = Duration::from_secs(u64::from(ttl)).min(self.max_ttl);
        // A positive answer supersedes an earlier NXDOMAIN for the name.
        self.remove(name, Slot::NxDomain);
        self.insert(name, Slot::Rrset(qtype), Value::Records(records), ttl, now);
    }

    /// Records that `name` does not exist (RFC 2308 §2.1), for `ttl` seconds.
    pub fn insert_nxdomain(&mut self, name: &str, ttl: u32, now: Instant) {
        let ttl = Duration::from_secs(u64::from(ttl)).min(self.max_negative_ttl);
        self.insert(name, Slot::NxDomain, Value::NxDomain, ttl, now);
    }

    /// Records that `name` has no `qtype` records (RFC 2308 §2.2), for `ttl` seconds.
    pub fn insert_nodata(&mut self, name: &str, qtype: QueryType, ttl: u32, now: Instant) {
        let ttl = Duration::from_secs(u64::from(ttl)).min(self.max_negative_ttl);
        self.insert(name, Slot::Rrset(qtype), Value::NoData, ttl, now);
    }

    /// Drops every entry expired at `now`; returns how many were dropped.
    pub fn purge_expired(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        while let Some((&(when, _), (name, slot))) = self.by_expiry.iter().next() {
            if when > now {
                break;
            }
            let (name, slot) = (name.clone(), *slot);
            self.remove(&name, slot);
            dropped += 1;
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn a(last: u8) -> Rdata {
        Rdata::A(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn ttl_expiry_and_negative_entries() {
        let t0 = Instant::now();
        let mut cache = Cache::new(16);
        cache.insert_records("a.example", QueryType::A, vec![a(1)], 10, t0);
        assert_eq!(
            cache.get("a.example", QueryType::A, t0 + Duration::from_secs(9)),
            Some(Cached::Records(&[a(1)]))
        );
        assert_eq!(
            cache.get("a.example", QueryType::A, t0 + Duration::from_secs(10)),
            None
        );
        assert!(cache.is_empty(), "expired entry is dropped on lookup");

        cache.insert_nxdomain("gone.example", 30, t0);
        assert_eq!(
            cache.get("gone.example", QueryType::Srv, t0),
            Some(Cached::NxDomain)
        );
        assert_eq!(
            cache.get("gone.example", QueryType::A, t0),
            Some(Cached::NxDomain)
        );
        cache.insert_nodata("v4only.example", QueryType::Aaaa, 30, t0);
        assert_eq!(
            cache.get("v4only.example", QueryType::Aaaa, t0),
            Some(Cached::NoData)
        );
        assert_eq!(cache.get("v4only.example", QueryType::A, t0), None);

        cache.insert_records("z.example", QueryType::A, vec![a(2)], 0, t0);
        assert_eq!(
            cache.get("z.example", QueryType::A, t0),
            None,
            "TTL 0 is not cached"
        );
    }

    #[test]
    fn ttl_caps_apply() {
        let t0 = Instant::now();
        let mut cache = Cache::with_limits(4, Duration::from_secs(100), Duration::from_secs(5));
        cache.insert_records("a.example", QueryType::A, vec![a(1)], u32::MAX, t0);
        cache.insert_nxdomain("nx.example", 3600, t0);
        assert!(cache
            .get("a.example", QueryType::A, t0 + Duration::from_secs(99))
            .is_some());
        assert!(cache
            .get("a.example", QueryType::A, t0 + Duration::from_secs(100))
            .is_none());
        assert!(cache
            .get("nx.example", QueryType::A, t0 + Duration::from_secs(5))
            .is_none());
    }

    #[test]
    fn bounded_with_eviction_of_soonest_expiry() {
        let t0 = Instant::now();
        let mut cache = Cache::new(3);
        cache.insert_records("a", QueryType::A, vec![a(1)], 300, t0);
        cache.insert_records("b", QueryType::A, vec![a(2)], 100, t0);
        cache.insert_records("c", QueryType::A, vec![a(3)], 200, t0);
        cache.insert_records("d", QueryType::A, vec![a(4)], 400, t0);
        assert_eq!(cache.len(), 3);
        assert_eq!(
            cache.get("b", QueryType::A, t0),
            None,
            "soonest expiry evicted"
        );
        assert!(cache.get("a", QueryType::A, t0).is_some());
        assert!(cache.get("d", QueryType::A, t0).is_some());
        assert_eq!(cache.stats().evictions, 1);
        // Re-inserting a key replaces it without growing.
        cache.insert_records("a", QueryType::A, vec![a(9)], 300, t0);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.purge_expired(t0 + Duration::from_secs(250)), 1);
        assert_eq!(cache.len(), 2);
    }
}
