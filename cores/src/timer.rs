//! The shard's hierarchical timer wheel (1 ms ticks, 6 levels of 64 slots, about 2 years
//! of range; later deadlines are clamped to the last slot and re-filed as time passes).
//!
//! Owns the timer entries (a slab keyed by index + generation, the public [`TimerId`]).
//! Invariants: an entry of level `L` has a deadline in the current level-`L+1` block but
//! not in the current level-`L` block, so it is re-filed ("cascaded") exactly when its
//! level-`L` block begins. Cancelled entries are removed from the slab at once and skipped
//! (by generation) when their slot is processed. The wheel never sleeps on its own: the
//! shard's loop asks [`Wheel::next_expiry`] and passes it as the ring's wait time-out.

use std::task::Waker;

const BITS: u32 = 6;
const SLOTS: usize = 1 << BITS;
const LEVELS: usize = 6;
const MAX_TICK_SPAN: u64 = 1 << (BITS as u64 * LEVELS as u64);

/// Identifies an armed timer; cancel with [`crate::cancel_timer`]. Stale ids are harmless.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    gen: u32,
}

pub(crate) enum TimerAction {
    /// A future (`sleep`) waits on it; `fired` is set when it expires.
    Waker {
        waker: Option<Waker>,
        fired: bool,
    },
    Callback(Box<dyn FnOnce()>),
    /// Delivered to the shard's token handler.
    Token(u64),
}

struct Entry {
    gen: u32,
    deadline: u64,
    action: Option<TimerAction>,
}

pub(crate) struct Wheel {
    now: u64,
    entries: Vec<Entry>,
    free: Vec<u32>,
    slots: Vec<Vec<(u32, u32)>>,
    armed: usize,
}

/// What an expiry asks the loop to do (run outside the wheel's borrow).
pub(crate) enum Fired {
    Wake(Waker),
    Callback(Box<dyn FnOnce()>),
    Token(TimerId, u64),
}

impl Wheel {
    pub(crate) fn new() -> Wheel {
        Wheel {
            now: 0,
            entries: Vec::new(),
            free: Vec::new(),
            slots: (0..SLOTS * LEVELS).map(|_| Vec::new()).collect(),
            armed: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn armed(&self) -> usize {
        self.armed
    }

    pub(crate) fn arm(&mut self, deadline: u64, action: TimerAction) -> TimerId {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push(Entry {
                    gen: 0,
                    deadline: 0,
                    action: None,
                });
                (self.entries.len() - 1) as u32
            }
        };
        let e = &mut self.entries[index as usize];
        e.gen = e.gen.wrapping_add(1);
        e.deadline = deadline.max(self.now + 1);
        e.action = Some(action);
        let gen = e.gen;
        let deadline = e.deadline;
        self.armed += 1;
        self.file(index, gen, deadline);
        TimerId { index, gen }
    }

    fn file(&mut self, index: u32, gen: u32, deadline: u64) {
        let deadline = deadline.min(self.now + MAX_TICK_SPAN - 1);
        let mut level = 0;
        while level < LEVELS - 1 {
            let shift = BITS * (level as u32 + 1);
            if deadline >> shift == self.now >> shift {
                break;
            }
            level += 1;
        }
        let slot = ((deadline >> (BITS * level as u32)) as usize) & (SLOTS - 1);
        self.slots[level * SLOTS + slot].push((index, gen));
    }

    /// Removes a timer. Returns its action if it was still armed (or fired but unclaimed).
    pub(crate) fn cancel(&mut self, id: TimerId) -> Option<TimerAction> {
        let e = self.entries.get_mut(id.index as usize)?;
        if e.gen != id.gen {
            return None;
        }
        let action = e.action.take()?;
        e.gen = e.gen.wrapping_add(1);
        self.free.push(id.index);
        if !matches!(action, TimerAction::Waker { fired: true, .. }) {
            self.armed -= 1;
        }
        Some(action)
    }

    /// For `sleep`: whether the timer fired; otherwise stores the waker.
    pub(crate) fn poll_fired(&mut self, id: TimerId, waker: &Waker) -> bool {
        let Some(e) = self.entries.get_mut(id.index as usize) else {
            return true;
        };
        if e.gen != id.gen {
            return true;
        }
        match &mut e.action {
            Some(TimerAction::Waker { fired: true, .. }) | None => true,
            Some(TimerAction::Waker { waker: w, .. }) => {
                if !w.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    *w = Some(waker.clone());
                }
                false
            }
            Some(_) => true,
        }
    }

    /// Advances to tick `to`, pushing what expired to `out` in deadline order per tick.
    pub(crate) fn advance(&mut self, to: u64, out: &mut Vec<Fired>) {
        if to <= self.now {
            return;
        }
        while self.now < to {
            // Skip ticks with nothing to fire or cascade.
            match self.next_expiry() {
                None => {
                    // Nothing armed: slots hold only stale (cancelled) entries.
                    for s in &mut self.slots {
                        s.clear();
                    }
                    self.now = to;
                    return;
                }
                Some(next) if next > self.now + 1 => {
                    self.now = next.min(to) - 1;
                    if self.now + 1 > to {
                        return;
                    }
                }
                Some(_) => {}
            }
            if self.now >= to {
                return;
            }
            self.now += 1;
            let t = self.now;
            for level in (1..LEVELS).rev() {
                let shift = BITS * level as u32;
                if t & ((1u64 << shift) - 1) == 0 {
                    let slot = ((t >> shift) as usize) & (SLOTS - 1);
                    let list = std::mem::take(&mut self.slots[level * SLOTS + slot]);
                    for &(index, gen) in &list {
                        if let Some(e) = self.entries.get(index as usize) {
                            if e.gen == gen && e.action.is_some() {
                                let d = e.deadline;
                                self.file(index, gen, d);
                            }
                        }
                    }
                    let mut list = list;
                    list.clear();
                    if self.slots[level * SLOTS + slot].is_empty() {
                        self.slots[level * SLOTS + slot] = list;
                    }
                }
            }
            let slot = (t as usize) & (SLOTS - 1);
            if self.slots[slot].is_empty() {
                continue;
            }
            let mut list = std::mem::take(&mut self.slots[slot]);
            for &(index, gen) in &list {
                let Some(e) = self.entries.get_mut(index as usize) else {
                    continue;
                };
                if e.gen != gen || e.action.is_none() {
                    continue;
                }
                if e.deadline > t {
                    // Clamped far deadline: re-file.
                    let d = e.deadline;
                    self.file(index, gen, d);
                    continue;
                }
                self.armed -= 1;
                match e.action.take() {
                    Some(TimerAction::Waker { waker, .. }) => {
                        e.action = Some(TimerAction::Waker {
                            waker: None,
                            fired: true,
                        });
                        if let Some(w) = waker {
                            out.push(Fired::Wake(w));
                        }
                    }
                    Some(TimerAction::Callback(f)) => {
                        e.gen = e.gen.wrapping_add(1);
                        self.free.push(index);
                        out.push(Fired::Callback(f));
                    }
                    Some(TimerAction::Token(tok)) => {
                        e.gen = e.gen.wrapping_add(1);
                        self.free.push(index);
                        out.push(Fired::Token(TimerId { index, gen }, tok));
                    }
                    None => {}
                }
            }
            list.clear();
            if self.slots[slot].is_empty() {
                self.slots[slot] = list;
            }
        }
    }

    /// The earliest tick at which `advance` may have work (an expiry or a cascade).
    pub(crate) fn next_expiry(&self) -> Option<u64> {
        if self.armed == 0 {
            return None;
        }
        for level in 0..LEVELS {
            let shift = BITS * level as u32;
            let block = self.now >> shift;
            let pos = (block as usize) & (SLOTS - 1);
            for s in pos + 1..SLOTS {
                if !self.slots[level * SLOTS + s].is_empty() {
                    let base = block & !((SLOTS as u64) - 1);
                    return Some((base + s as u64) << shift);
                }
            }
        }
        // Only clamped entries remain (or stale ones): wake at the next top-level block.
        let shift = BITS * (LEVELS as u32 - 1);
        Some(((self.now >> shift) + 1) << shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fire_ticks(w: &mut Wheel, to: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut got = Vec::new();
        while w.now < to {
            let next = w.next_expiry().unwrap_or(to).min(to);
            w.advance(next, &mut out);
            for f in out.drain(..) {
                if let Fired::Token(_, tok) = f {
                    got.push((tok, w.now));
                }
            }
        }
        got.into_iter()
            .map(|(tok, at)| {
                assert_eq!(tok, at, "timer {tok} fired at {at}");
                tok
            })
            .collect()
    }

    #[test]
    fn fires_each_deadline_exactly_in_order() {
        let mut w = Wheel::new();
        let deadlines = [
            1u64, 5, 63, 64, 65, 100, 4095, 4096, 4097, 70_000, 300_000, 17_000_000,
        ];
        for &d in deadlines.iter().rev() {
            w.arm(d, TimerAction::Token(d));
        }
        let got = fire_ticks(&mut w, 20_000_000);
        assert_eq!(got, deadlines.to_vec());
        assert_eq!(w.armed(), 0);
    }

    #[test]
    fn cancelled_timers_do_not_fire() {
        let mut w = Wheel::new();
        let a = w.arm(10, TimerAction::Token(10));
        w.arm(20, TimerAction::Token(20));
        let c = w.arm(5000, TimerAction::Token(5000));
        assert!(w.cancel(a).is_some());
        assert!(w.cancel(c).is_some());
        assert!(w.cancel(c).is_none());
        assert_eq!(fire_ticks(&mut w, 10_000), vec![20]);
    }

    #[test]
    fn arming_mid_way_files_relative_to_now() {
        let mut w = Wheel::new();
        let mut out = Vec::new();
        w.advance(4000, &mut out);
        for d in [4001u64, 4095, 4096, 4160, 8191, 8192, 9000] {
            w.arm(d, TimerAction::Token(d));
        }
        assert_eq!(
            fire_ticks(&mut w, 10_000),
            vec![4001, 4095, 4096, 4160, 8191, 8192, 9000]
        );
    }
}

#[cfg(test)]
mod random {
    use super::*;

    /// Random deadlines, random cancels, random advance steps: every live timer fires
    /// exactly once, at its own tick, and cancelled ones never (seed printed on failure).
    #[test]
    fn random_schedules_fire_exactly_on_time() {
        for seed in 1..40u64 {
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut rnd = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let mut w = Wheel::new();
            let mut live = std::collections::HashMap::new();
            let mut out = Vec::new();
            for _ in 0..400 {
                let spans = [70u64, 5000, 300_000, 20_000_000];
                let d = w.now + 1 + rnd() % spans[(rnd() % 4) as usize];
                let id = w.arm(d, TimerAction::Token(d));
                live.insert(id, d);
                if rnd() % 4 == 0 {
                    let victim = *live.keys().next().unwrap();
                    assert!(w.cancel(victim).is_some(), "seed {seed}");
                    live.remove(&victim);
                }
                let step = rnd() % 3000;
                let to = w.now + step;
                w.advance(to, &mut out);
                for f in out.drain(..) {
                    let Fired::Token(id, tok) = f else {
                        panic!("seed {seed}")
                    };
                    assert!(tok <= w.now, "seed {seed}: fired early");
                    assert_eq!(live.remove(&id), Some(tok), "seed {seed}: unknown or twice");
                }
                for (_, &d) in live.iter() {
                    assert!(d > w.now, "seed {seed}: {d} missed at {}", w.now);
                }
            }
        }
    }
}
