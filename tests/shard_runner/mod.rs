//! Runs a test body as a task on a one-shard `cores` runtime, under each I/O backend —
//! shared by the `ring_*` tests (the bodies are protocol code that must run on a shard).

#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use cores::{Backend, Config};

/// Both backends: every ring test runs under each.
pub const BACKENDS: [Backend; 2] = [Backend::IoUring, Backend::Epoll];

/// How long a body may take before the test fails as hung.
pub const HANG: Duration = Duration::from_secs(60);

/// A test body: builds the future to run on the shard.
pub type Body<T> = Box<dyn Fn() -> Pin<Box<dyn Future<Output = T>>> + Send + Sync>;

/// Runs `body` as a task on a one-shard runtime under `backend`; returns its output.
pub fn on_shard<T: Send + 'static>(backend: Backend, body: Body<T>) -> T {
    let (tx, rx) = mpsc::channel::<T>();
    let tx = Arc::new(Mutex::new(tx));
    let config = Config {
        cpus: Some(vec![0]),
        pin: false,
        backend,
        ..Config::default()
    };
    let rt = cores::start(config, move |_| {
        let tx = tx.clone();
        let fut = body();
        cores::spawn_local(async move {
            let v = fut.await;
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(v);
            }
        });
        Ok(())
    })
    .expect("start runtime");
    let out = rx.recv_timeout(HANG).expect("shard task finished");
    rt.shutdown();
    out
}
