//! Starting and stopping: shard ids and CPU pinning, a failing setup stops everything,
//! a shard may stop the runtime from inside.

mod common;

use std::sync::{mpsc, Mutex};

use common::{config, BACKENDS, HANG};
use cores::StartError;

#[test]
fn shards_are_pinned_and_numbered() {
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    for backend in BACKENDS {
        let (tx, rx) = mpsc::channel::<(usize, usize, usize)>();
        let tx = Mutex::new(tx);
        let shards = 2;
        let rt = cores::start(config(backend, shards), move |id| {
            // SAFETY: sched_getcpu has no preconditions.
            let cpu = unsafe { libc::sched_getcpu() } as usize;
            let _ = tx.lock().unwrap().send((id, cores::shard_id(), cpu));
            Ok(())
        })
        .unwrap();
        let mut seen: Vec<_> = (0..shards)
            .map(|_| rx.recv_timeout(HANG).unwrap())
            .collect();
        seen.sort();
        for (i, (id, current, cpu)) in seen.into_iter().enumerate() {
            assert_eq!((id, current), (i, i), "{backend:?}");
            assert_eq!(cpu, i % ncpu, "{backend:?}: shard {i} not on its CPU");
        }
        assert_eq!(rt.shards().len(), shards);
        rt.shutdown();
    }
}

#[test]
fn a_failing_setup_fails_start() {
    for backend in BACKENDS {
        let r = cores::start(config(backend, 2), |id| {
            if id == 1 {
                Err(std::io::Error::other("no socket for you"))
            } else {
                Ok(())
            }
        });
        match r {
            Err(StartError::Setup { shard: 1, .. }) => {}
            Err(e) => panic!("{backend:?}: wrong error {e}"),
            Ok(_) => panic!("{backend:?}: start succeeded"),
        }
    }
}

#[test]
fn a_shard_can_stop_the_runtime() {
    for backend in BACKENDS {
        let rt = cores::start(config(backend, 2), |id| {
            if id == 0 {
                cores::spawn_local(async {
                    cores::sleep(std::time::Duration::from_millis(10)).await;
                    cores::request_stop();
                });
            }
            Ok(())
        })
        .unwrap();
        // Returns only because shard 0 stopped every shard.
        rt.join();
    }
}

/// A task that works 3 ms without yielding makes one turn over 1 ms; the busy time and
/// the longest turn include it.
#[test]
fn long_turns_are_counted() {
    for backend in BACKENDS {
        let (tx, rx) = mpsc::channel::<cores::ShardStats>();
        let tx = Mutex::new(tx);
        let rt = cores::start(config(backend, 1), move |_| {
            let tx = tx.lock().unwrap().clone();
            cores::spawn_local(async move {
                // Some short turns first.
                for _ in 0..5 {
                    cores::sleep(std::time::Duration::from_millis(1)).await;
                }
                let before = cores::stats();
                let t = std::time::Instant::now();
                while t.elapsed() < std::time::Duration::from_millis(3) {
                    std::hint::spin_loop();
                }
                // The busy turn ends at the next wait: sleep, then read the counters.
                cores::sleep(std::time::Duration::from_millis(1)).await;
                let after = cores::stats();
                let _ = tx.send(before);
                let _ = tx.send(after);
            });
            Ok(())
        })
        .unwrap();
        let before = rx.recv_timeout(HANG).unwrap();
        let after = rx.recv_timeout(HANG).unwrap();
        // Exactly one turn ended between the two reads: the busy one (a preempted short
        // turn before it could also be long on a loaded machine, hence the difference).
        assert_eq!(
            after.turns_over_1ms,
            before.turns_over_1ms + 1,
            "{backend:?}: {before:?} -> {after:?}"
        );
        assert!(after.longest_turn_us >= 3_000, "{backend:?}: {after:?}");
        assert!(
            after.busy_us >= before.busy_us + 3_000,
            "{backend:?}: {before:?} -> {after:?}"
        );
        rt.shutdown();
    }
}
