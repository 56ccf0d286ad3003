//! Backend selection: `RINGSIP_BACKEND=epoll` forces epoll under `Backend::Auto`.
//! One test in its own binary, since it edits the process environment.

mod common;

use std::sync::mpsc;

use cores::Backend;

#[test]
fn env_var_forces_epoll_and_auto_prefers_io_uring() {
    std::env::remove_var("RINGSIP_BACKEND");
    let rt = cores::start(common::config(Backend::Auto, 1), |_| Ok(())).unwrap();
    let auto = rt.backend();
    rt.shutdown();
    // This machine runs io_uring (kernel 6.18); elsewhere Auto may pick epoll.
    let uring_ok = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim() == "0")
        .unwrap_or(true);
    if uring_ok {
        assert_eq!(auto, "io_uring");
    }

    std::env::set_var("RINGSIP_BACKEND", "epoll");
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let rt = cores::start(common::config(Backend::Auto, 1), move |_| {
        let _ = tx.lock().unwrap().send(cores::backend_name());
        Ok(())
    })
    .unwrap();
    assert_eq!(rt.backend(), "epoll");
    assert_eq!(rx.recv_timeout(common::HANG).unwrap(), "epoll");
    rt.shutdown();
    std::env::remove_var("RINGSIP_BACKEND");
}
