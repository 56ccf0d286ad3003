//! exec() on a real shard, under both backends: real `/bin/sh` children, pipes on the
//! ring, time-out with kill and reaping (checked through /proc), bounded output, and
//! the shard's timers running while a child runs.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cores::ExitStatus;
use ringsip::modules::exec::{
    exec, osips_exec_env, run, ExecCall, ExecError, ExecParams, EXEC_OK, EXEC_OUTPUT_TOO_LARGE,
    EXEC_TIMEOUT,
};

mod shard_runner;

use shard_runner::{on_shard, BACKENDS};

fn call(cmd: &str) -> ExecCall {
    ExecCall::new(cmd, None, Vec::new())
}

#[test]
fn echo_cat_exit_code_and_env() {
    for backend in BACKENDS {
        let got = on_shard(
            backend,
            Box::new(|| {
                Box::pin(async {
                    let p = ExecParams::default();
                    let echo = exec(call("echo hello"), &p).await;
                    let cat = exec(
                        ExecCall::new("cat", Some(b"line one\nline two\n"), Vec::new()),
                        &p,
                    )
                    .await;
                    let three = exec(call("echo out; echo err >&2; exit 3"), &p).await;
                    let env = exec(
                        ExecCall::new(
                            "printf '%s,%s' \"$OSIPS_EXEC_0\" \"$OSIPS_EXEC_1\"",
                            None,
                            osips_exec_env(&["b".to_string(), "a".to_string()]),
                        ),
                        &p,
                    )
                    .await;
                    // Input larger than a pipe buffer, echoed back while it is written.
                    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
                    let echoed = exec(ExecCall::new("cat", Some(&big), Vec::new()), &p).await;
                    let big_ok = echoed.stdout.as_deref() == Some(big.as_slice());
                    (echo, cat, three, env, big_ok)
                })
            }),
        );
        let (echo, cat, three, env, big_ok) = got;
        assert_eq!(echo.rc, EXEC_OK, "{backend:?}");
        assert_eq!(echo.stdout.as_deref(), Some(b"hello\n".as_slice()));
        assert_eq!(echo.stderr.as_deref(), Some(b"".as_slice()));
        assert_eq!(echo.status, Some(ExitStatus::Exited(0)));
        assert_eq!(
            cat.stdout.as_deref(),
            Some(b"line one\nline two\n".as_slice())
        );
        // OpenSIPS: $rc is 1 whatever the exit status; the status is kept apart.
        assert_eq!(three.rc, EXEC_OK);
        assert_eq!(three.status, Some(ExitStatus::Exited(3)));
        assert_eq!(three.stdout.as_deref(), Some(b"out\n".as_slice()));
        assert_eq!(three.stderr.as_deref(), Some(b"err\n".as_slice()));
        assert_eq!(env.stdout.as_deref(), Some(b"b,a".as_slice()));
        assert!(big_ok, "{backend:?}: large input not echoed back intact");
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn temp_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "ringsip-exec-{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    ))
}

/// `true` if `pid` no longer runs: gone from /proc, or a zombie of someone else's.
fn not_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

#[test]
fn time_out_kills_the_group_and_reaps() {
    for backend in BACKENDS {
        let pids_file = temp_path("pids");
        // Run 1: the shell waits for its background sleep. Run 2: the shell exits at
        // once, leaving the sleep holding stdout open.
        let cmds = [
            format!(
                "echo $$ >> {f}; sleep 5 & echo $! >> {f}; wait",
                f = pids_file.display()
            ),
            format!(
                "echo $$ >> {f}; sleep 5 & echo $! >> {f}; exit 0",
                f = pids_file.display()
            ),
        ];
        let got = on_shard(
            backend,
            Box::new(move || {
                let cmds = cmds.clone();
                Box::pin(async move {
                    let params = ExecParams {
                        kill_grace: Duration::from_millis(200),
                        ..ExecParams::default()
                    };
                    let mut c = call(&cmds[0]);
                    c.timeout = Some(Duration::from_millis(200));
                    let r = run(&c, &params).await;
                    let mut c = call(&cmds[1]);
                    c.timeout = Some(Duration::from_millis(200));
                    let rc = exec(c, &params).await.rc;
                    (r.map(|_| ()).map_err(|e| e.to_string()), rc)
                })
            }),
        );
        let (r, rc) = got;
        assert!(
            matches!(&r, Err(e) if e.contains("time_to_kill")),
            "{backend:?}: {r:?}"
        );
        assert_eq!(rc, EXEC_TIMEOUT);
        let pids = std::fs::read_to_string(&pids_file).unwrap();
        let _ = std::fs::remove_file(&pids_file);
        let pids: Vec<u32> = pids.lines().map(|l| l.trim().parse().unwrap()).collect();
        // Two runs appended: shell, sleep, shell, sleep.
        assert_eq!(pids.len(), 4, "{pids:?}");
        // The shells were our children: reaped, so gone from /proc entirely.
        for shell in [pids[0], pids[2]] {
            assert!(
                !std::path::Path::new(&format!("/proc/{shell}")).exists(),
                "{backend:?}: shell {shell} left behind (zombie?)"
            );
        }
        // The background sleeps got the group's signal (reaped by init, maybe later).
        for sleeper in [pids[1], pids[3]] {
            let mut gone = false;
            for _ in 0..100 {
                if not_running(sleeper) {
                    gone = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(gone, "{backend:?}: background sleep {sleeper} still runs");
        }
    }
}

#[test]
fn output_is_bounded_and_large_output_read_fully() {
    const TEN_MB: usize = 10 * 1024 * 1024;
    for backend in BACKENDS {
        let got = on_shard(
            backend,
            Box::new(|| {
                Box::pin(async {
                    let cmd = format!("head -c {TEN_MB} /dev/zero");
                    let p = ExecParams::default();
                    let bounded = run(&call(&cmd), &p).await;
                    let bounded = match bounded {
                        Err(ExecError::OutputTooLarge { stream, limit }) => Ok((stream, limit)),
                        other => Err(format!("{other:?}").chars().take(200).collect::<String>()),
                    };
                    let rc = exec(call(&cmd), &p).await.rc;
                    let mut big = call(&cmd);
                    big.max_output = Some(16 * 1024 * 1024);
                    let full = exec(big, &p).await;
                    let err_side = exec(call(&format!("{cmd} >&2")), &p).await.rc;
                    (bounded, rc, full.rc, full.stdout.map(|o| o.len()), err_side)
                })
            }),
        );
        assert_eq!(got.0, Ok(("stdout", 1024 * 1024)), "{backend:?}");
        assert_eq!(got.1, EXEC_OUTPUT_TOO_LARGE);
        assert_eq!((got.2, got.3), (EXEC_OK, Some(TEN_MB)));
        assert_eq!(got.4, EXEC_OUTPUT_TOO_LARGE);
    }
}

#[test]
fn shard_keeps_ticking_while_a_child_runs() {
    for backend in BACKENDS {
        let got = on_shard(
            backend,
            Box::new(|| {
                Box::pin(async {
                    let ticks = Rc::new(Cell::new(0u32));
                    let stop = Rc::new(Cell::new(false));
                    let ticker = {
                        let (ticks, stop) = (ticks.clone(), stop.clone());
                        cores::spawn_local(async move {
                            for _ in 0..10_000 {
                                if stop.get() {
                                    break;
                                }
                                cores::sleep(Duration::from_millis(10)).await;
                                ticks.set(ticks.get() + 1);
                            }
                        })
                    };
                    let before = ticks.get();
                    let out = exec(call("sleep 0.3; echo done"), &ExecParams::default()).await;
                    let during = ticks.get() - before;
                    stop.set(true);
                    let _ = ticker.await;
                    (out.rc, out.stdout, during)
                })
            }),
        );
        assert_eq!(got.0, EXEC_OK, "{backend:?}");
        assert_eq!(got.1.as_deref(), Some(b"done\n".as_slice()));
        assert!(got.2 > 0, "{backend:?}: no tick while the child ran");
    }
}

#[test]
fn spawn_failure_and_bad_env_are_errors() {
    for backend in BACKENDS {
        let got = on_shard(
            backend,
            Box::new(|| {
                Box::pin(async {
                    let p = ExecParams::default();
                    let nul = exec(call("echo a\0b"), &p).await.rc;
                    let env = exec(
                        ExecCall::new("true", None, vec![("A=B".into(), "x".into())]),
                        &p,
                    )
                    .await
                    .rc;
                    // A missing program is the shell's business: exit status 127, $rc 1.
                    let missing = exec(call("/nonexistent/prog"), &p).await;
                    (nul, env, missing.rc, missing.status)
                })
            }),
        );
        assert_eq!(
            got,
            (-1, -1, EXEC_OK, Some(ExitStatus::Exited(127))),
            "{backend:?}"
        );
    }
}

/// cfgutils' async sleeps run on the same shard's timer wheel: they complete in
/// deadline order, concurrently, and a bad argument fails at once.
#[test]
fn cfgutils_sleeps_on_the_timer_wheel() {
    use ringsip::modules::cfgutils::{sleep, usleep, SLEEP_INVALID, SLEEP_OK};
    for backend in BACKENDS {
        let got = on_shard(
            backend,
            Box::new(|| {
                Box::pin(async {
                    let order = Rc::new(std::cell::RefCell::new(Vec::new()));
                    let long = {
                        let order = order.clone();
                        cores::spawn_local(async move {
                            let rc = usleep(200_000).await;
                            order.borrow_mut().push("long");
                            rc
                        })
                    };
                    let short = {
                        let order = order.clone();
                        cores::spawn_local(async move {
                            let rc = usleep(20_000).await;
                            order.borrow_mut().push("short");
                            rc
                        })
                    };
                    let zero = sleep(0).await;
                    let bad = sleep(-1).await;
                    let too_long = usleep(i64::MAX).await;
                    let (l, s) = (long.await, short.await);
                    let order = order.borrow().clone();
                    (order, l, s, zero, bad, too_long)
                })
            }),
        );
        assert_eq!(
            got,
            (
                vec!["short", "long"],
                SLEEP_OK,
                SLEEP_OK,
                SLEEP_OK,
                SLEEP_INVALID,
                SLEEP_INVALID
            ),
            "{backend:?}"
        );
    }
}
