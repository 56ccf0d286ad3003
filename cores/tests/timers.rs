//! Timers on the shard's wheel: callback and token timers fire in deadline order, never
//! before their deadline, cancelled ones never; `sleep` and `timeout` under load.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::BACKENDS;

/// A deterministic pseudo-random sequence (xorshift), so failures replay.
fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn timers_fire_in_order_under_load() {
    for backend in BACKENDS {
        let (fired, cancelled_fired, in_order, expected) = common::run(backend, || {
            Box::pin(async {
                let start = cores::now();
                let log: Rc<RefCell<Vec<(Instant, usize)>>> = Rc::default();
                let mut seed = 0x9e37_79b9_7f4a_7c15u64;
                let mut deadlines = Vec::new();
                let mut ids = Vec::new();
                for i in 0..3000usize {
                    let d = start + Duration::from_micros(xorshift(&mut seed) % 400_000);
                    deadlines.push(d);
                    let l = log.clone();
                    if i % 2 == 0 {
                        ids.push(cores::arm_timer(d, move || l.borrow_mut().push((d, i))));
                    } else {
                        ids.push(cores::arm_timer_token(d, i as u64));
                    }
                }
                let l = log.clone();
                let dl = deadlines.clone();
                cores::set_timer_handler(move |_, tok| {
                    let i = tok as usize;
                    l.borrow_mut().push((dl[i], i));
                });
                // Cancel every third timer.
                let mut cancelled = std::collections::HashSet::new();
                for (i, id) in ids.iter().enumerate() {
                    if i % 3 == 0 {
                        assert!(cores::cancel_timer(*id));
                        cancelled.insert(i);
                    }
                }
                // Load: tasks that yield through the loop while the timers run.
                for _ in 0..8 {
                    cores::spawn_local(async {
                        for _ in 0..200 {
                            cores::sleep(Duration::from_millis(1)).await;
                            std::hint::black_box((0..1000).sum::<u64>());
                        }
                    });
                }
                cores::sleep(Duration::from_millis(600)).await;
                let log = log.borrow();
                // Order at the wheel's 1 ms resolution: a timer may fire after one due
                // up to 1 ms earlier (same tick), never after one due later than that.
                let us = |t: Instant| t.duration_since(start).as_micros() as i64;
                let worst = log
                    .windows(2)
                    .map(|w| us(w[0].0) - us(w[1].0))
                    .max()
                    .unwrap_or(0);
                let in_order = worst < 1000;
                let cancelled_fired = log.iter().filter(|(_, i)| cancelled.contains(i)).count();
                (log.len(), cancelled_fired, in_order, 3000 - cancelled.len())
            })
        });
        assert_eq!(fired, expected, "{backend:?}");
        assert_eq!(cancelled_fired, 0, "{backend:?}");
        assert!(in_order, "{backend:?}: timers out of order");
    }
}

#[test]
fn timers_never_fire_before_their_deadline() {
    for backend in BACKENDS {
        let early = common::run(backend, || {
            Box::pin(async {
                let early = Rc::new(RefCell::new(0u32));
                for i in 0..200u64 {
                    let d = Instant::now() + Duration::from_micros(i * 997 % 50_000);
                    let e = early.clone();
                    cores::arm_timer(d, move || {
                        if Instant::now() < d {
                            *e.borrow_mut() += 1;
                        }
                    });
                }
                let before = Instant::now();
                cores::sleep(Duration::from_millis(20)).await;
                let slept_enough = Instant::now() >= before + Duration::from_millis(20);
                cores::sleep(Duration::from_millis(60)).await;
                let e = *early.borrow();
                (e, slept_enough)
            })
        });
        assert_eq!(early, (0, true), "{backend:?}");
    }
}

#[test]
fn timeout_and_join_handles() {
    for backend in BACKENDS {
        let got = common::run(backend, || {
            Box::pin(async {
                let slow = cores::timeout(
                    Duration::from_millis(20),
                    cores::sleep(Duration::from_secs(10)),
                )
                .await;
                let fast = cores::timeout(Duration::from_secs(10), async { 7 }).await;
                let h = cores::spawn_local(async {
                    cores::sleep(Duration::from_millis(5)).await;
                    cores::shard_id() + 40
                });
                (slow.is_err(), fast, h.await)
            })
        });
        assert_eq!(got, (true, Ok(7), 40), "{backend:?}");
    }
}
