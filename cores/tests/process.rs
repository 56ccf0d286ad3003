//! Child processes on the shard: output through pipes, exit code through the pidfd,
//! kill, and timers progressing while a child runs.

mod common;

use std::time::Duration;

use common::BACKENDS;
use cores::{AsyncStream, Child, ExitStatus};

async fn read_all(p: &mut cores::Pipe) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match p.read(&mut buf).await {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("pipe read: {e}"),
        }
    }
}

#[test]
fn child_output_input_and_exit_code() {
    for backend in BACKENDS {
        let got = common::run(backend, || {
            Box::pin(async {
                let mut c =
                    Child::spawn_shell("read x; echo \"got $x\"; echo oops >&2; exit 3").unwrap();
                let mut stdin = c.stdin.take().unwrap();
                stdin.write_all(b"hello\n").await.unwrap();
                drop(stdin);
                let mut out = c.stdout.take().unwrap();
                let mut err = c.stderr.take().unwrap();
                let o = read_all(&mut out).await;
                let e = read_all(&mut err).await;
                let st = c.wait().await.unwrap();
                (
                    String::from_utf8(o).unwrap(),
                    String::from_utf8(e).unwrap(),
                    st,
                )
            })
        });
        assert_eq!(
            got,
            (
                "got hello\n".to_string(),
                "oops\n".to_string(),
                ExitStatus::Exited(3)
            ),
            "{backend:?}"
        );
    }
}

#[test]
fn child_kill_and_progress_while_waiting() {
    for backend in BACKENDS {
        let got = common::run(backend, || {
            Box::pin(async {
                let mut c = Child::spawn_shell("exec sleep 30").unwrap();
                // The shard keeps running timers while the child lives.
                let mut ticks = 0;
                for _ in 0..5 {
                    cores::sleep(Duration::from_millis(5)).await;
                    ticks += 1;
                }
                assert_eq!(c.try_wait().unwrap(), None);
                c.kill().unwrap();
                let st = c.wait().await.unwrap();
                let mut d = Child::spawn_shell("exec sleep 30").unwrap();
                d.terminate().unwrap();
                let st2 = d.wait().await.unwrap();
                (ticks, st, st2, st.code())
            })
        });
        assert_eq!(
            got,
            (
                5,
                ExitStatus::Signaled(libc::SIGKILL),
                ExitStatus::Signaled(libc::SIGTERM),
                None
            ),
            "{backend:?}"
        );
    }
}
