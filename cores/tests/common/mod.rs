//! Test helpers: run a body on a real shard under each backend.

#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cores::{Backend, Config};

pub const BACKENDS: [Backend; 2] = [Backend::IoUring, Backend::Epoll];

/// How long a test waits for a shard's answer before declaring it hung.
pub const HANG: Duration = Duration::from_secs(30);

pub fn config(backend: Backend, shards: usize) -> Config {
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    Config {
        cpus: Some((0..shards).map(|i| i % ncpu).collect()),
        backend,
        ..Config::default()
    }
}

type BoxedBody<T> = Box<dyn Fn() -> Pin<Box<dyn Future<Output = T>>> + Send + Sync>;

/// Runs `body` as a task on a one-shard runtime with `config`, returns its output.
pub fn run_with<T: Send + 'static>(config: Config, body: BoxedBody<T>) -> T {
    let (tx, rx) = mpsc::channel::<T>();
    let tx = Arc::new(Mutex::new(tx));
    let body = Arc::new(body);
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

/// Runs `body` on one shard under `backend` with the default configuration.
pub fn run<T: Send + 'static, F>(backend: Backend, body: F) -> T
where
    F: Fn() -> Pin<Box<dyn Future<Output = T>>> + Send + Sync + 'static,
{
    run_with(config(backend, 1), Box::new(body))
}
