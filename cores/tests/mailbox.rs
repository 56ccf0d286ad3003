//! The cross-shard mailbox: posting between shards, a bounded queue that refuses (and
//! counts) when full, and waking a task from another shard.

mod common;

use std::future::poll_fn;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use common::{config, BACKENDS, HANG};
use cores::PostError;

#[test]
fn post_between_two_shards() {
    for backend in BACKENDS {
        let rt = cores::start(config(backend, 2), |_| Ok(())).unwrap();
        let (tx, rx) = mpsc::channel::<(usize, usize)>();
        // Shard 0 posts to shard 1, which answers back to shard 0.
        let tx0 = tx.clone();
        rt.shards()[0]
            .post(Box::new(move || {
                let from = cores::shard_id();
                let back = cores::shard_handle(from).unwrap();
                let to = cores::shard_handle(1).unwrap();
                let r = to.post(Box::new(move || {
                    let on = cores::shard_id();
                    let tx1 = tx0.clone();
                    let _ = back.post(Box::new(move || {
                        let _ = tx1.send((on, cores::shard_id()));
                    }));
                }));
                assert!(r.is_ok());
            }))
            .unwrap();
        assert_eq!(rx.recv_timeout(HANG).unwrap(), (1, 0), "{backend:?}");
        assert!(rt.shards()[1].stats().mailbox_run >= 1);
        for h in rt.shards() {
            assert_eq!(h.stats().msg_ring_errors, 0, "{backend:?}");
        }
        rt.shutdown();
    }
}

#[test]
fn full_mailbox_refuses_and_counts() {
    for backend in BACKENDS {
        let mut cfg = config(backend, 2);
        cfg.mailbox_capacity = 4;
        let rt = cores::start(cfg, |_| Ok(())).unwrap();
        let shard1 = rt.shards()[1].clone();
        let (blocked_tx, blocked_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        shard1
            .post(Box::new(move || {
                let _ = blocked_tx.send(());
                // Deliberately hold the shard so its mailbox fills up.
                let _ = release_rx.recv_timeout(HANG);
            }))
            .unwrap();
        blocked_rx.recv_timeout(HANG).unwrap();
        let (tx, rx) = mpsc::channel::<usize>();
        for _ in 0..4 {
            let tx = tx.clone();
            shard1
                .post(Box::new(move || {
                    let _ = tx.send(cores::shard_id());
                }))
                .unwrap();
        }
        let refused = shard1.post(Box::new(|| {}));
        assert_eq!(refused, Err(PostError::Full(1)), "{backend:?}");
        assert_eq!(shard1.stats().mailbox_full, 1, "{backend:?}");
        release_tx.send(()).unwrap();
        for _ in 0..4 {
            assert_eq!(rx.recv_timeout(HANG).unwrap(), 1, "{backend:?}");
        }
        rt.shutdown();
        assert_eq!(shard1.post(Box::new(|| {})), Err(PostError::Stopped(1)));
    }
}

type Slot = Arc<Mutex<(Option<u32>, Option<Waker>)>>;

#[test]
fn a_task_is_woken_from_another_shard() {
    for backend in BACKENDS {
        let (tx, rx) = mpsc::channel::<(u32, usize)>();
        let tx = Mutex::new(tx);
        let rt = cores::start(config(backend, 2), move |id| {
            if id == 0 {
                let tx = tx.lock().unwrap().clone();
                cores::spawn_local(async move {
                    let slot: Slot = Arc::default();
                    let s2 = slot.clone();
                    let other = cores::shard_handle(1).unwrap();
                    let mut posted = false;
                    let v = poll_fn(|cx| {
                        let mut g = slot.lock().unwrap();
                        if let Some(v) = g.0.take() {
                            return Poll::Ready(v);
                        }
                        g.1 = Some(cx.waker().clone());
                        drop(g);
                        if !posted {
                            posted = true;
                            let s = s2.clone();
                            // Shard 1 completes the value and wakes our task: the wake
                            // travels back through shard 0's mailbox.
                            other
                                .post(Box::new(move || {
                                    let w = {
                                        let mut g = s.lock().unwrap();
                                        g.0 = Some(99);
                                        g.1.take()
                                    };
                                    if let Some(w) = w {
                                        w.wake();
                                    }
                                }))
                                .unwrap();
                        }
                        Poll::Pending
                    })
                    .await;
                    let _ = tx.send((v, cores::shard_id()));
                });
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(rx.recv_timeout(HANG).unwrap(), (99, 0), "{backend:?}");
        rt.shutdown();
    }
}
