//! Accepting resumes after the process ran out of file descriptors (EMFILE): the
//! multishot accept backs off instead of spinning, then picks the waiting connections
//! up. In its own binary because it lowers the process's RLIMIT_NOFILE.

mod common;

use std::net::{SocketAddr, TcpStream as StdTcp};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::{config, BACKENDS, HANG};

fn set_nofile(soft: u64) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a live rlimit the call writes into.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
    let old = r.rlim_cur;
    r.rlim_cur = soft;
    // SAFETY: r is a live, initialised rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) }, 0);
    old
}

#[test]
fn accept_recovers_from_emfile() {
    for backend in BACKENDS {
        let accepted = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel::<SocketAddr>();
        let tx = Mutex::new(tx);
        let acc = accepted.clone();
        let rt = cores::start(config(backend, 1), move |_| {
            let l = cores::TcpListener::bind("127.0.0.1:0".parse().unwrap(), false, 64)?;
            let _ = tx.lock().unwrap().send(l.local_addr());
            let held = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let acc = acc.clone();
            cores::spawn_local(async move {
                // Start accepting only after the test lowered the limit.
                cores::sleep(Duration::from_millis(300)).await;
                l.accept_with(move |r| {
                    if let Ok((s, _)) = r {
                        held.borrow_mut().push(s);
                        acc.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .unwrap();
                // Keep the listener alive.
                cores::sleep(Duration::from_secs(3600)).await;
            });
            Ok(())
        })
        .unwrap();
        let addr = rx.recv_timeout(HANG).unwrap();
        let clients: Vec<StdTcp> = (0..10).map(|_| StdTcp::connect(addr).unwrap()).collect();
        // Leave room for about two more descriptors.
        let probe = std::fs::File::open("/dev/null").unwrap();
        let lowest_free = std::os::fd::AsRawFd::as_raw_fd(&probe) as u64;
        drop(probe);
        let old = set_nofile(lowest_free + 2);
        std::thread::sleep(Duration::from_millis(600));
        let during = accepted.load(Ordering::SeqCst);
        let errors = rt.shards()[0].stats().tcp_accept_errors;
        set_nofile(old);
        let deadline = Instant::now() + HANG;
        while accepted.load(Ordering::SeqCst) < 10 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let after = accepted.load(Ordering::SeqCst);
        rt.shutdown();
        drop(clients);
        assert!(
            during < 10,
            "{backend:?}: the limit did not bite ({during})"
        );
        assert!(errors >= 1, "{backend:?}: no accept error counted");
        assert_eq!(after, 10, "{backend:?}: accepting did not resume");
    }
}
