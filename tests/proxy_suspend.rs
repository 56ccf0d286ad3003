//! 10 000 transactions suspended at once on one shard (issue #6): every one resumes, the
//! in-flight counter returns to zero, and the memory per suspended transaction is
//! reported (resident set growth / count; printed, and recorded in docs/PERFORMANCE.md).

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Proxy, Req, Ua};

const SCRIPT: &str = r#"
socket=udp:127.0.0.1:{{PORT}}
log_level=2
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "cfgutils.so"
route {
    async(usleep(3000000), done);
}
route [done] {
    t_reply(200, "resumed");
}
"#;

const CALLS: usize = 10_000;

#[test]
fn ten_thousand_suspended_transactions_on_one_shard() {
    let proxy = Proxy::start(SCRIPT, 1, &[]);
    let uac = Arc::new(Ua::new());
    let rss_before = proxy
        .wait_metric("ringsip_resident_bytes", Duration::from_secs(3), |v| v > 0)
        .expect("rss");

    // A reader collects the final responses while the sender sends.
    let done: Arc<Mutex<HashSet<String>>> = Arc::new(Mutex::new(HashSet::new()));
    let reader = {
        let (uac, done) = (Arc::clone(&uac), Arc::clone(&done));
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Some((m, _)) = uac.recv(Duration::from_millis(200)) {
                    if m.status() == 200 {
                        let mut d = done.lock().expect("lock");
                        d.insert(m.call_id().to_string());
                        if d.len() == CALLS {
                            return;
                        }
                    }
                }
            }
        })
    };

    let started = Instant::now();
    for i in 0..CALLS {
        let r = Req::new("INVITE", "sip:x@127.0.0.1:9");
        uac.send(&r.render(uac.addr), proxy.addr);
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let sent_in = started.elapsed();
    assert!(
        sent_in < Duration::from_millis(2800),
        "sending took {sent_in:?}"
    );
    let peak = proxy.wait_metric(
        "ringsip_suspended_transactions",
        Duration::from_secs(3),
        |v| v == CALLS as u64,
    );
    assert_eq!(peak, Some(CALLS as u64), "all calls suspended at once");
    let rss_peak = proxy.metric("ringsip_resident_bytes").expect("rss");
    let per_txn = rss_peak.saturating_sub(rss_before) / CALLS as u64;
    eprintln!(
        "memory per suspended transaction: {per_txn} bytes (RSS {rss_before} -> {rss_peak} for {CALLS})"
    );

    // The proxy's own counters are the record: every operation completed and every
    // transaction sent its final reply. (The test UAC's socket may drop some of 10 000
    // replies arriving in one burst; it only has to see that they come.)
    let completed = proxy.wait_metric("ringsip_async_completed", Duration::from_secs(20), |v| {
        v == CALLS as u64
    });
    assert_eq!(
        completed,
        Some(CALLS as u64),
        "every suspended call resumed"
    );
    let replied = proxy.wait_metric("ringsip_responses_relayed", Duration::from_secs(3), |v| {
        v == CALLS as u64
    });
    assert_eq!(replied, Some(CALLS as u64), "every resumed call replied");
    assert_eq!(proxy.metric("ringsip_async_in_flight"), Some(0));
    assert_eq!(proxy.metric("ringsip_async_started"), Some(CALLS as u64));
    reader.join().expect("reader");
    let seen = done.lock().expect("lock").len();
    assert!(seen > CALLS / 2, "the UAC saw {seen} final replies");
}
