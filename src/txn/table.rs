//! The shard's transaction table: owns every live [`ProxyTxn`] of one shard, matches
//! requests to server transactions (RFC 3261 §17.2.3, CANCEL per §9.2) and responses to
//! client branches (§17.1.3), and writes the branch ids this proxy puts in its Via.
//!
//! Our branch ids encode where the transaction lives, so a response is matched without a
//! map look-up and a shard that receives a response for another shard can tell which
//! (DESIGN.md §2):
//!
//! ```text
//! z9hG4bK rs SSSS IIIIIIII GGGGGGGG BB CCCCCCCC     (no spaces, lower-case hex)
//!         |  |    |        |        |  check: SipHash-2-4 of the rest, 128-bit key (per process)
//!         |  |    |        |        branch index in the transaction
//!         |  |    |        slot generation (a "counter": bumped each time a slot is reused)
//!         |  |    slot index in this shard's table
//!         |  shard index
//!         marker of ringsip's branches
//! ```
//!
//! Invariants: at most `capacity` live transactions (`TableError::Full` past it); one
//! server key per live transaction; a `TxnId` names one transaction for its lifetime and
//! never a later one (slot generation); a branch id whose check does not verify with this
//! table's secret matches nothing (stale ids from before a restart, other proxies' ids).
//! The RFC 2543 matching fallback (no magic cookie) is not implemented: such requests get
//! `TableError::NoMagicCookie`, and the glue handles them statelessly.

use std::hash::BuildHasher as _;

/// Most transactions a table reserves room for at creation (see [`TxnTable::new`]).
const MAX_RESERVED: usize = 1 << 20;
use std::fmt;
use std::time::Instant;

use super::action::{Action, BranchIdx, Event};
use super::config::{ConfigError, TmConfig};
use super::proxy::{Branch, ProxyTxn, TxnKind};

/// RFC 3261 §8.1.1.7: branch ids of RFC 3261 elements start with this.
pub const MAGIC_COOKIE: &str = "z9hG4bK";
const MARKER: &str = "rs";
/// Length of every branch id this proxy writes.
pub const BRANCH_ID_LEN: usize = 7 + 2 + 4 + 8 + 8 + 2 + 8;

/// Handle of a live transaction in its shard's table (slot index + generation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxnId {
    pub index: u32,
    pub generation: u32,
}

/// A branch id written by this proxy, kept inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BranchId {
    bytes: [u8; BRANCH_ID_LEN],
}

impl BranchId {
    pub fn as_str(&self) -> &str {
        // Built only from ASCII in `encode_branch`.
        std::str::from_utf8(&self.bytes).unwrap_or("")
    }
}

impl fmt::Display for BranchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for BranchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BranchId({})", self.as_str())
    }
}

/// The fields of one of our branch ids, once decoded and verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BranchParts {
    pub shard: u16,
    pub txn: TxnId,
    pub branch: BranchIdx,
}

/// The check of a branch id: the low 32 bits of SipHash-2-4 over the other fields, keyed
/// with the process's 128-bit branch secret. Every branch id we send shows a (fields,
/// check) pair, so the check must be a PRF whose key cannot be recovered from such
/// pairs; SipHash-2-4 is designed as one. (An earlier invertible 64-bit mixer let the
/// secret be recovered with about 2^32 work from two branch ids, after which anyone
/// could write branch ids that match our transactions.) Forging one check without the
/// key succeeds with probability 2^-32 per guess.
fn check(secret: u128, p: &BranchParts) -> u32 {
    use std::hash::Hasher as _;
    let a = (u64::from(p.shard) << 48) | (u64::from(p.branch.0) << 40);
    let b = (u64::from(p.txn.index) << 32) | u64::from(p.txn.generation);
    // Truncations intended: the key's two halves, and 32 bits of check.
    let mut h = siphasher::sip::SipHasher24::new_with_keys((secret >> 64) as u64, secret as u64);
    h.write_u64(a);
    h.write_u64(b);
    (h.finish() & 0xffff_ffff) as u32
}

fn put_hex(dst: &mut [u8], mut v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for d in dst.iter_mut().rev() {
        *d = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

fn hex(s: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u64::from(d);
    }
    Some(v)
}

/// Write the branch id for `branch` of `txn` in `shard`.
pub fn encode_branch(secret: u128, parts: &BranchParts) -> BranchId {
    let mut bytes = [0u8; BRANCH_ID_LEN];
    bytes[..7].copy_from_slice(MAGIC_COOKIE.as_bytes());
    bytes[7..9].copy_from_slice(MARKER.as_bytes());
    put_hex(&mut bytes[9..13], u64::from(parts.shard));
    put_hex(&mut bytes[13..21], u64::from(parts.txn.index));
    put_hex(&mut bytes[21..29], u64::from(parts.txn.generation));
    put_hex(&mut bytes[29..31], u64::from(parts.branch.0));
    put_hex(&mut bytes[31..39], u64::from(check(secret, parts)));
    BranchId { bytes }
}

fn split(branch: &str) -> Option<(u16, &[u8])> {
    let b = branch.as_bytes();
    if b.len() != BRANCH_ID_LEN || !b.starts_with(MAGIC_COOKIE.as_bytes()) {
        return None;
    }
    if b.get(7..9)? != MARKER.as_bytes() {
        return None;
    }
    let shard = u16::try_from(hex(b.get(9..13)?)?).ok()?;
    Some((shard, b))
}

/// The shard a branch id of ours names, without verifying its check (the owning shard
/// does that). `None` for a branch id this proxy did not write.
pub fn shard_of_branch(branch: &str) -> Option<u16> {
    split(branch).map(|(s, _)| s)
}

/// Decode and verify one of our branch ids.
pub fn decode_branch(secret: u128, branch: &str) -> Option<BranchParts> {
    let (shard, b) = split(branch)?;
    let parts = BranchParts {
        shard,
        txn: TxnId {
            index: u32::try_from(hex(b.get(13..21)?)?).ok()?,
            generation: u32::try_from(hex(b.get(21..29)?)?).ok()?,
        },
        branch: BranchIdx(u8::try_from(hex(b.get(29..31)?)?).ok()?),
    };
    let sum = u32::try_from(hex(b.get(31..39)?)?).ok()?;
    (sum == check(secret, &parts)).then_some(parts)
}

/// True if `branch` carries the RFC 3261 magic cookie.
pub fn has_magic_cookie(branch: &str) -> bool {
    branch.starts_with(MAGIC_COOKIE)
}

/// Why the table refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    #[error("transaction table full ({capacity} transactions)")]
    Full { capacity: u32 },
    #[error("Via branch {branch:?} has no RFC 3261 magic cookie (RFC 2543 matching unsupported)")]
    NoMagicCookie { branch: String },
    #[error("a transaction with branch {branch:?} and sent-by {sent_by:?} already exists")]
    Duplicate { branch: String, sent_by: String },
    #[error("method {method:?} never creates a transaction (ACK, CANCEL are matched)")]
    NotTransactional { method: String },
    #[error("transaction {0:?} no longer exists")]
    Stale(TxnId),
}

/// A response matched to a branch of ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseMatch {
    pub txn: TxnId,
    pub branch: BranchIdx,
    /// The response is for the CANCEL we sent on that branch (CSeq method CANCEL).
    pub cancel: bool,
}

impl ResponseMatch {
    /// The event to feed to the matched transaction.
    pub fn into_event<M>(self, status: u16, msg: M) -> Event<M> {
        if self.cancel {
            Event::CancelResponse {
                branch: self.branch,
                status,
            }
        } else {
            Event::Response {
                branch: self.branch,
                status,
                msg,
            }
        }
    }
}

struct Slot<M> {
    generation: u32,
    live: Option<ProxyTxn<M>>,
    /// The live transaction's §17.2.3 key ([`build_key`]); its buffer is reused by the
    /// slot's next transaction.
    key: Vec<u8>,
    /// Branch storage of the slot's previous transaction, reused by the next one.
    spare: Vec<Branch<M>>,
}

/// One shard's transactions. See the module doc for matching and branch ids.
pub struct TxnTable<M> {
    shard: u16,
    secret: u128,
    cfg: TmConfig,
    capacity: u32,
    slots: Vec<Slot<M>>,
    free: Vec<u32>,
    live: usize,
    /// Slot index of each live transaction, by its key. The keys live in the slots (no
    /// allocation per transaction); entries are hashed with `hasher`.
    by_key: hashbrown::HashTable<u32>,
    /// Keyed hash of the index: the key bytes come from the network.
    hasher: IndexHasher,
    scratch: Vec<u8>,
}

/// §17.2.3 key: branch, sent-by (host lower-cased), method with ACK and CANCEL mapped to
/// INVITE (CANCEL finds the INVITE it cancels, §9.2).
fn build_key(
    scratch: &mut Vec<u8>,
    branch: &str,
    sent_by: &str,
    method: &str,
) -> Result<(), TableError> {
    if !has_magic_cookie(branch) {
        return Err(TableError::NoMagicCookie {
            branch: branch.to_owned(),
        });
    }
    let method = match method {
        "ACK" | "CANCEL" => "INVITE",
        m => m,
    };
    scratch.clear();
    scratch.extend_from_slice(branch.as_bytes());
    scratch.push(0);
    scratch.extend(sent_by.bytes().map(|c| c.to_ascii_lowercase()));
    scratch.push(0);
    scratch.extend_from_slice(method.as_bytes());
    Ok(())
}

/// The hash of the request index: a folded-multiply hash (the construction of
/// foldhash / wyhash) keyed with 128 random bits.
///
/// The key bytes (branch, sent-by, method) are chosen by whoever sends the request, so
/// an unkeyed or weakly keyed hash would let a sender pick keys that all land in one
/// probe sequence (hash flooding). Here every 8-byte word is mixed with the running
/// state, which starts from a secret, before a 64x64->128-bit multiply by a secret
/// whose halves are folded: which words collide depends on both secrets, so a sender
/// who does not know them cannot aim collisions. The secrets come from the OS (through
/// std's `RandomState`, as SipHash's keys do), drawn per table, and are never derived
/// from the branch-id secret, whose 32-bit checks appear in every Via we send. The
/// hash is never shown: no output leaves the process. It is not a cryptographic PRF;
/// what it protects is bounded anyway (the table holds at most `capacity`
/// transactions). Cost: about a tenth of SipHash-1-3 on a 60-byte key.
#[derive(Clone, Copy)]
struct IndexHasher {
    seed: u64,
    mul: u64,
}

impl IndexHasher {
    fn new() -> IndexHasher {
        let random = std::collections::hash_map::RandomState::new();
        IndexHasher {
            seed: random.hash_one(0x5851_f42d_4c95_7f2d_u64),
            // Odd: multiplying by it never loses the low bit of the state.
            mul: random.hash_one(0x1405_7b7e_f767_814f_u64) | 1,
        }
    }

    fn fold(a: u64, b: u64) -> u64 {
        let p = u128::from(a) * u128::from(b);
        // Truncations intended: the two halves of the product.
        (p as u64) ^ ((p >> 64) as u64)
    }

    fn hash(&self, key: &[u8]) -> u64 {
        let mut h = self.seed ^ (key.len() as u64);
        let mut words = key.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            h = Self::fold(h ^ u64::from_le_bytes(b), self.mul);
        }
        let rest = words.remainder();
        let mut b = [0u8; 8];
        if let Some(dst) = b.get_mut(..rest.len()) {
            dst.copy_from_slice(rest);
        }
        h = Self::fold(h ^ u64::from_le_bytes(b), self.mul);
        Self::fold(h ^ self.seed, self.mul ^ 0x9e37_79b9_7f4a_7c15)
    }
}

impl<M: Clone> TxnTable<M> {
    /// An empty table for `shard` holding at most `capacity` transactions. `secret` keys
    /// the branch-id check: pick it at random at process start.
    pub fn new(
        shard: u16,
        capacity: u32,
        secret: u128,
        cfg: TmConfig,
    ) -> Result<Self, ConfigError> {
        cfg.validate()?;
        // Reserved up front: growing a full slab by doubling copies every live transaction
        // at once (tens of MB at 32 K transactions), a multi-millisecond stall of the shard
        // that showed as its p99 latency. The Vec reservation is address space; pages
        // become resident as slots are used. The index is allocated (a few MB at 64 K).
        let reserve = (capacity as usize).min(MAX_RESERVED);
        Ok(TxnTable {
            shard,
            secret,
            cfg,
            capacity,
            slots: Vec::with_capacity(reserve),
            free: Vec::with_capacity(reserve),
            live: 0,
            by_key: hashbrown::HashTable::with_capacity(reserve),
            hasher: IndexHasher::new(),
            scratch: Vec::with_capacity(128),
        })
    }

    pub fn shard(&self) -> u16 {
        self.shard
    }

    pub fn config(&self) -> &TmConfig {
        &self.cfg
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Find the server transaction a request belongs to (§17.2.3; ACK and CANCEL find
    /// their INVITE). `sent_by` is the top Via's host:port, port defaulted by the caller.
    /// The caller turns a match into `Event::RequestRetransmit`, `Ack` or `Cancel`.
    pub fn match_request(
        &mut self,
        branch: &str,
        sent_by: &str,
        method: &str,
    ) -> Result<Option<TxnId>, TableError> {
        build_key(&mut self.scratch, branch, sent_by, method)?;
        Ok(self.find_key().map(|index| TxnId {
            index,
            generation: self.slots.get(index as usize).map_or(0, |s| s.generation),
        }))
    }

    /// Create the proxy transaction for a new request (not ACK, not CANCEL). Emits what
    /// `ProxyTxn::new` emits (100 Trying for INVITE).
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        branch: &str,
        sent_by: &str,
        method: &str,
        request: M,
        upstream_reliable: bool,
        now: Instant,
        out: &mut Vec<Action<M>>,
    ) -> Result<TxnId, TableError> {
        if method == "ACK" || method == "CANCEL" {
            return Err(TableError::NotTransactional {
                method: method.to_owned(),
            });
        }
        build_key(&mut self.scratch, branch, sent_by, method)?;
        let hash = self.hasher.hash(self.scratch.as_slice());
        let slots = &self.slots;
        let key = self.scratch.as_slice();
        let same = |i: &u32| slots.get(*i as usize).is_some_and(|s| s.key == key);
        if self.by_key.find(hash, same).is_some() {
            return Err(TableError::Duplicate {
                branch: branch.to_owned(),
                sent_by: sent_by.to_owned(),
            });
        }
        if self.live >= self.capacity as usize {
            return Err(TableError::Full {
                capacity: self.capacity,
            });
        }
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(self.slots.len()).map_err(|_| TableError::Full {
                    capacity: self.capacity,
                })?;
                self.slots.push(Slot {
                    generation: 0,
                    live: None,
                    key: Vec::new(),
                    spare: Vec::new(),
                });
                i
            }
        };
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return Err(TableError::Full {
                capacity: self.capacity,
            });
        };
        let id = TxnId {
            index,
            generation: slot.generation,
        };
        let kind = if method == "INVITE" {
            TxnKind::Invite
        } else {
            TxnKind::NonInvite
        };
        let storage = std::mem::take(&mut slot.spare);
        let txn = ProxyTxn::new_in(
            storage,
            kind,
            request,
            upstream_reliable,
            &self.cfg,
            now,
            out,
        );
        slot.key.clear();
        slot.key.extend_from_slice(&self.scratch);
        slot.live = Some(txn);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_key.insert_unique(hash, index, |i| {
            hasher.hash(slots.get(*i as usize).map_or(&[][..], |s| s.key.as_slice()))
        });
        self.live += 1;
        Ok(id)
    }

    /// The slot holding the live transaction whose key is in `scratch`.
    fn find_key(&self) -> Option<u32> {
        let key = self.scratch.as_slice();
        let hash = self.hasher.hash(key);
        let slots = &self.slots;
        self.by_key
            .find(hash, |i| {
                slots
                    .get(*i as usize)
                    .is_some_and(|s| s.live.is_some() && s.key == key)
            })
            .copied()
    }

    pub fn get(&self, id: TxnId) -> Option<&ProxyTxn<M>> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.live.as_ref()
    }

    /// For the core's calls: `add_branch`, `reply`, `set_on_failure`,
    /// `failure_route_done`. On `Action::Terminated` call [`TxnTable::remove`].
    pub fn get_mut(&mut self, id: TxnId) -> Option<&mut ProxyTxn<M>> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.live.as_mut()
    }

    /// Feed `event` to transaction `id`.
    pub fn handle(
        &mut self,
        id: TxnId,
        event: Event<M>,
        now: Instant,
        out: &mut Vec<Action<M>>,
    ) -> Result<(), TableError> {
        let txn = self.get_mut(id).ok_or(TableError::Stale(id))?;
        txn.handle(event, now, out);
        Ok(())
    }

    /// Drop transaction `id` (after its `Action::Terminated`, or at shutdown); its slot
    /// and branch storage are reused. False if `id` was not live.
    pub fn remove(&mut self, id: TxnId) -> bool {
        let Some(slot) = self.slots.get_mut(id.index as usize) else {
            return false;
        };
        if slot.generation != id.generation {
            return false;
        }
        let Some(txn) = slot.live.take() else {
            return false;
        };
        slot.spare = txn.into_storage();
        slot.generation = slot.generation.wrapping_add(1);
        let hash = self.hasher.hash(slot.key.as_slice());
        if let Ok(entry) = self.by_key.find_entry(hash, |i| *i == id.index) {
            entry.remove();
        }
        self.free.push(id.index);
        self.live -= 1;
        true
    }

    /// The branch id to put in our Via for `branch` of `id`.
    pub fn branch_id(&self, id: TxnId, branch: BranchIdx) -> BranchId {
        encode_branch(
            self.secret,
            &BranchParts {
                shard: self.shard,
                txn: id,
                branch,
            },
        )
    }

    /// Match a response by its top Via branch and CSeq method (§17.1.3).
    pub fn match_response(&self, branch: &str, cseq_method: &str) -> Option<ResponseMatch> {
        let parts = decode_branch(self.secret, branch)?;
        if parts.shard != self.shard {
            return None;
        }
        let txn = self.get(parts.txn)?;
        if usize::from(parts.branch.0) >= txn.branch_count() {
            return None;
        }
        let invite = txn.kind() == TxnKind::Invite;
        let cancel = match cseq_method {
            "CANCEL" if invite => true,
            "INVITE" if invite => false,
            "INVITE" | "CANCEL" | "ACK" => return None,
            _ if invite => return None,
            _ => false,
        };
        Some(ResponseMatch {
            txn: parts.txn,
            branch: parts.branch,
            cancel,
        })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn index_hash_is_keyed_and_spreads_keys() {
        let (a, b) = (IndexHasher::new(), IndexHasher::new());
        let key = b"z9hG4bK776asdhds\x0010.0.0.1:5060\x00INVITE";
        assert_eq!(a.hash(key), a.hash(key));
        assert_ne!(a.hash(key), b.hash(key), "two tables, two keys");
        // Keys that differ in one byte, in length only, or by a trailing zero differ.
        let mut seen = std::collections::HashSet::new();
        for n in 0..2000u32 {
            let k = format!("z9hG4bK{n}\x0010.0.0.1:5060\x00INVITE");
            assert!(seen.insert(a.hash(k.as_bytes())), "collision at {n}");
        }
        assert_ne!(a.hash(b"abc"), a.hash(b"abc\0"));
        assert_ne!(a.hash(b""), a.hash(b"\0"));
        // The low bits (hashbrown's bucket index) take every value of a small table.
        let buckets: std::collections::HashSet<u64> = (0..4096u32)
            .map(|n| a.hash(&n.to_le_bytes()) & 63)
            .collect();
        assert_eq!(buckets.len(), 64);
    }

    use super::*;

    #[test]
    fn branch_round_trip_and_shard() {
        let p = BranchParts {
            shard: 0x1f,
            txn: TxnId {
                index: 77,
                generation: 3,
            },
            branch: BranchIdx(11),
        };
        let id = encode_branch(42, &p);
        assert!(id.as_str().starts_with("z9hG4bKrs001f"));
        assert_eq!(id.as_str().len(), BRANCH_ID_LEN);
        assert_eq!(shard_of_branch(id.as_str()), Some(0x1f));
        assert_eq!(decode_branch(42, id.as_str()), Some(p));
        assert_eq!(decode_branch(43, id.as_str()), None, "other secret");
        assert_eq!(
            decode_branch(42 | (1 << 64), id.as_str()),
            None,
            "the key's high half counts too"
        );
        let mut bad = id.as_str().to_owned();
        bad.replace_range(20..21, if &bad[20..21] == "0" { "1" } else { "0" });
        assert_eq!(decode_branch(42, &bad), None, "tampered");
        assert_eq!(shard_of_branch("z9hG4bK776asdhds"), None);
        assert_eq!(shard_of_branch(""), None);
        assert_eq!(shard_of_branch("z9hG4bKrsZZZZ0000004d00000003"), None);
    }

    fn table(capacity: u32) -> TxnTable<u32> {
        TxnTable::new(3, capacity, 99, TmConfig::default()).unwrap()
    }

    #[test]
    fn server_matching_maps_ack_and_cancel_to_invite() {
        let mut t = table(4);
        let now = Instant::now();
        let mut out = Vec::new();
        let id = t
            .insert(
                "z9hG4bKa1",
                "Host.example:5060",
                "INVITE",
                1,
                false,
                now,
                &mut out,
            )
            .unwrap();
        assert!(matches!(out[0], Action::SendResponse { .. }), "100 Trying");
        for m in ["INVITE", "ACK", "CANCEL"] {
            assert_eq!(
                t.match_request("z9hG4bKa1", "host.example:5060", m),
                Ok(Some(id))
            );
        }
        assert_eq!(t.match_request("z9hG4bKa1", "other:5060", "ACK"), Ok(None));
        assert_eq!(
            t.match_request("z9hG4bKa2", "host.example:5060", "ACK"),
            Ok(None)
        );
        assert_eq!(
            t.match_request("z9hG4bKa1", "host.example:5060", "BYE"),
            Ok(None)
        );
        assert!(matches!(
            t.match_request("abc", "h:5060", "INVITE"),
            Err(TableError::NoMagicCookie { .. })
        ));
        assert!(matches!(
            t.insert(
                "z9hG4bKa1",
                "host.example:5060",
                "INVITE",
                1,
                false,
                now,
                &mut out
            ),
            Err(TableError::Duplicate { .. })
        ));
        assert!(matches!(
            t.insert("z9hG4bKa9", "h:5060", "ACK", 1, false, now, &mut out),
            Err(TableError::NotTransactional { .. })
        ));
    }

    #[test]
    fn capacity_is_bounded_and_slots_are_reused_with_new_generation() {
        let mut t = table(2);
        let now = Instant::now();
        let mut out = Vec::new();
        let a = t
            .insert("z9hG4bK1", "h:1", "OPTIONS", 1, false, now, &mut out)
            .unwrap();
        let _b = t
            .insert("z9hG4bK2", "h:1", "OPTIONS", 2, false, now, &mut out)
            .unwrap();
        assert_eq!(
            t.insert("z9hG4bK3", "h:1", "OPTIONS", 3, false, now, &mut out),
            Err(TableError::Full { capacity: 2 })
        );
        assert!(t.remove(a));
        assert!(!t.remove(a));
        assert_eq!(t.match_request("z9hG4bK1", "h:1", "OPTIONS"), Ok(None));
        let c = t
            .insert("z9hG4bK3", "h:1", "OPTIONS", 3, false, now, &mut out)
            .unwrap();
        assert_eq!(c.index, a.index);
        assert_ne!(c.generation, a.generation);
        assert!(t.get(a).is_none());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn response_matching_uses_branch_and_cseq_method() {
        let mut t = table(4);
        let now = Instant::now();
        let mut out = Vec::new();
        let id = t
            .insert("z9hG4bKx", "h:1", "INVITE", 1, false, now, &mut out)
            .unwrap();
        let b = t
            .get_mut(id)
            .unwrap()
            .add_branch(5, false, now, &mut out)
            .unwrap();
        let bid = t.branch_id(id, b);
        assert_eq!(
            t.match_response(bid.as_str(), "INVITE"),
            Some(ResponseMatch {
                txn: id,
                branch: b,
                cancel: false
            })
        );
        assert_eq!(
            t.match_response(bid.as_str(), "CANCEL"),
            Some(ResponseMatch {
                txn: id,
                branch: b,
                cancel: true
            })
        );
        assert_eq!(t.match_response(bid.as_str(), "BYE"), None);
        assert_eq!(
            t.match_response(t.branch_id(id, BranchIdx(1)).as_str(), "INVITE"),
            None
        );
        let other = TxnTable::<u32>::new(4, 4, 99, TmConfig::default()).unwrap();
        assert_eq!(
            other.match_response(bid.as_str(), "INVITE"),
            None,
            "other shard"
        );
        t.remove(id);
        assert_eq!(t.match_response(bid.as_str(), "INVITE"), None, "stale");
    }
}
