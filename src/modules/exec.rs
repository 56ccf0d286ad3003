//! exec: OpenSIPS' `exec(command[, input[, out_pv[, err_pv[, env_avp]]]])`, run on the
//! shard's ring: `/bin/sh -c command` as a child process, `input` written to its stdin
//! (then closed), stdout and stderr read concurrently through pipes on the ring, exit
//! observed through a pidfd. Nothing blocks the shard.
//!
//! Owns: the module parameters ([`ExecParams`]), the child's whole life (spawn, I/O,
//! time-out, kill, reaping) and the mapping to what the script sees ([`ExecOutcome`]).
//!
//! `$rc` follows OpenSIPS 3.x: [`EXEC_OK`] (1) once the command was started and its
//! output collected, **whatever its exit status** (OpenSIPS sets `$rc = 1` for a
//! command that exits non-zero too — opensips issue #2670); the exit status is kept in
//! [`ExecOutcome::status`] for whoever wants it. Failures are negative: [`EXEC_ERR`]
//! (-1, as OpenSIPS: spawn or pipe failure), and two cases OpenSIPS does not have:
//! [`EXEC_TIMEOUT`] (-2, `time_to_kill` passed) and [`EXEC_OUTPUT_TOO_LARGE`] (-3).
//!
//! Differences from OpenSIPS, on purpose:
//! - Every call is bounded: `time_to_kill` (seconds, OpenSIPS' name and meaning:
//!   SIGTERM when it passes) cannot be 0 ("disabled" in OpenSIPS); after SIGTERM,
//!   `kill_grace_ms` later, SIGKILL. The signals go to the child's whole process group
//!   (the child runs in its own group), so a command the shell forked is stopped too —
//!   OpenSIPS' "known issue" with `/bin/dash` does not exist here.
//! - Output is bounded by `max_output_size` bytes per stream (OpenSIPS silently
//!   truncates at 32 KiB); past it the child is killed and the call fails.
//! - The call completes when the child has exited and both streams reached EOF (OpenSIPS
//!   resumes at stdout EOF); the child is always reaped, never left a zombie.
//! - `env_avp` values become `OSIPS_EXEC_0`, `OSIPS_EXEC_1`... ([`osips_exec_env`]), added
//!   to the proxy's environment. `setvars=1` (SIP_* variables) is not supported yet and
//!   is refused at start-up.
//!
//! Invariants: a spawned child is reaped before [`exec`] returns, or — if it survives
//! SIGKILL for two grace periods (uninterruptible sleep) — by the background reaper of
//! [`cores::Child`]'s `Drop`. The process group is signalled only while its leader is
//! not yet reaped, so the group id cannot have been reused.

use std::future::{poll_fn, Future};
use std::io;
use std::os::unix::process::CommandExt;
use std::pin::pin;
use std::process::Command;
use std::task::Poll;
use std::time::Duration;

use cores::{AsyncStream, Child, ExitStatus, Pipe};
use rustix::process::{Pid, Signal};
use thiserror::Error;

use super::rest_client::ModparamValue;

/// `$rc` when the command ran and its output was collected (any exit status).
pub const EXEC_OK: i32 = 1;
/// `$rc` when the command could not be started or its pipes failed.
pub const EXEC_ERR: i32 = -1;
/// `$rc` when `time_to_kill` passed (the child was killed and reaped).
pub const EXEC_TIMEOUT: i32 = -2;
/// `$rc` when stdout or stderr exceeded `max_output_size` (the child was killed).
pub const EXEC_OUTPUT_TOO_LARGE: i32 = -3;

/// The shell commands run under.
pub const SHELL: &str = "/bin/sh";

/// Size of one read from a child's pipe.
const READ_CHUNK: usize = 64 * 1024;

/// The module parameters (`modparam("exec", name, value)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecParams {
    /// `time_to_kill` (seconds; OpenSIPS' name): the longest a command may run before
    /// SIGTERM. Default 60 s (OpenSIPS' default 0, "unbounded", is not accepted).
    pub time_to_kill: Duration,
    /// `kill_grace_ms` (ours): from SIGTERM to SIGKILL. Default 1 s.
    pub kill_grace: Duration,
    /// `max_output_size` (ours, bytes): per stream. Default 1 MiB.
    pub max_output_size: usize,
}

impl Default for ExecParams {
    fn default() -> Self {
        ExecParams {
            time_to_kill: Duration::from_secs(60),
            kill_grace: Duration::from_secs(1),
            max_output_size: 1024 * 1024,
        }
    }
}

/// Why a `modparam("exec", ...)` was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExecModparamError {
    #[error("exec has no parameter {0:?}")]
    Unknown(String),
    #[error("exec parameter {name:?} expects an integer")]
    WrongType { name: &'static str },
    #[error("exec parameter {name:?}: value {value} out of range ({range})")]
    OutOfRange {
        name: &'static str,
        value: i64,
        range: &'static str,
    },
    #[error("exec parameter \"setvars\"=1 (SIP_* environment variables) is not supported")]
    SetvarsUnsupported,
}

impl ExecParams {
    /// Every parameter name this module declares.
    pub const NAMES: &'static [&'static str] = &[
        "time_to_kill",
        "kill_grace_ms",
        "max_output_size",
        "setvars",
    ];

    /// Applies one `modparam`.
    pub fn set(&mut self, name: &str, value: ModparamValue<'_>) -> Result<(), ExecModparamError> {
        fn ranged(
            name: &'static str,
            value: ModparamValue<'_>,
            min: i64,
            max: i64,
            range: &'static str,
        ) -> Result<u64, ExecModparamError> {
            let ModparamValue::Int(v) = value else {
                return Err(ExecModparamError::WrongType { name });
            };
            if v < min || v > max {
                return Err(ExecModparamError::OutOfRange {
                    name,
                    value: v,
                    range,
                });
            }
            Ok(v.unsigned_abs())
        }
        match name {
            "time_to_kill" => {
                let s = ranged(
                    "time_to_kill",
                    value,
                    1,
                    86_400,
                    "1..=86400 s; 0 (unbounded) is not accepted",
                )?;
                self.time_to_kill = Duration::from_secs(s);
            }
            "kill_grace_ms" => {
                let ms = ranged("kill_grace_ms", value, 1, 60_000, "1..=60000 ms")?;
                self.kill_grace = Duration::from_millis(ms);
            }
            "max_output_size" => {
                let n = ranged("max_output_size", value, 0, 1 << 30, "0..=1073741824 bytes")?;
                self.max_output_size = usize::try_from(n).unwrap_or(usize::MAX);
            }
            "setvars" => {
                if ranged("setvars", value, 0, 1, "0 or 1")? == 1 {
                    return Err(ExecModparamError::SetvarsUnsupported);
                }
            }
            other => return Err(ExecModparamError::Unknown(other.to_owned())),
        }
        Ok(())
    }
}

/// One prepared `exec()` call: owned, so it survives an `async()` suspension.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecCall {
    /// The shell command line.
    pub command: String,
    /// Written to the child's stdin, which is then closed; `None`: stdin closed at once.
    pub input: Option<Vec<u8>>,
    /// Added to the inherited environment (e.g. [`osips_exec_env`]).
    pub env: Vec<(String, String)>,
    /// Overrides `time_to_kill` for this call.
    pub timeout: Option<Duration>,
    /// Overrides `max_output_size` for this call.
    pub max_output: Option<usize>,
}

impl ExecCall {
    /// `exec(command[, input[, ...[, env_avp]]])` with the module's bounds.
    pub fn new(command: &str, input: Option<&[u8]>, env: Vec<(String, String)>) -> ExecCall {
        ExecCall {
            command: command.to_owned(),
            input: input.map(<[u8]>::to_vec),
            env,
            timeout: None,
            max_output: None,
        }
    }
}

/// The environment OpenSIPS builds from `env_avp`: `OSIPS_EXEC_<i>=<value i>`, in the
/// order given (the caller lists the AVP's values as OpenSIPS would, newest first).
pub fn osips_exec_env(values: &[String]) -> Vec<(String, String)> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("OSIPS_EXEC_{i}"), v.clone()))
        .collect()
}

/// Why an `exec()` failed.
#[derive(Debug, Error)]
pub enum ExecError {
    #[error("exec {command:?}: could not start {SHELL}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("exec: environment variable {name:?} is not a valid name/value")]
    InvalidEnv { name: String },
    #[error("exec: {stream} pipe failed: {source}")]
    Pipe {
        stream: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("exec: waiting for the child failed: {0}")]
    Wait(#[source] io::Error),
    #[error("exec: time_to_kill ({limit:?}) passed; the child was killed")]
    Timeout { limit: Duration },
    #[error("exec: {stream} exceeded {limit} bytes; the child was killed")]
    OutputTooLarge { stream: &'static str, limit: usize },
}

impl ExecError {
    /// The `$rc` of this failure.
    pub fn rc(&self) -> i32 {
        match self {
            ExecError::Timeout { .. } => EXEC_TIMEOUT,
            ExecError::OutputTooLarge { .. } => EXEC_OUTPUT_TOO_LARGE,
            ExecError::Spawn { .. }
            | ExecError::InvalidEnv { .. }
            | ExecError::Pipe { .. }
            | ExecError::Wait(_) => EXEC_ERR,
        }
    }
}

/// What a finished command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// What the script sees after `exec()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    /// `$rc`: [`EXEC_OK`] or a negative failure code.
    pub rc: i32,
    /// For `out_pv`; `None` on failure. OpenSIPS leaves the variable untouched when the
    /// stream was empty: the caller applies that rule to `Some(empty)`.
    pub stdout: Option<Vec<u8>>,
    /// For `err_pv`, as `stdout`.
    pub stderr: Option<Vec<u8>>,
    /// How the command ended, when it ended by itself.
    pub status: Option<ExitStatus>,
}

/// Maps a run's result to [`ExecOutcome`].
pub fn exec_outcome(result: Result<ExecOutput, ExecError>) -> ExecOutcome {
    match result {
        Ok(out) => ExecOutcome {
            rc: EXEC_OK,
            stdout: Some(out.stdout),
            stderr: Some(out.stderr),
            status: Some(out.status),
        },
        Err(e) => {
            tracing::warn!(error = %e, "exec failed");
            ExecOutcome {
                rc: e.rc(),
                stdout: None,
                stderr: None,
                status: None,
            }
        }
    }
}

/// `exec(...)` on the current shard: the `'static` future the proxy spawns.
pub fn exec(call: ExecCall, params: &ExecParams) -> impl Future<Output = ExecOutcome> + 'static {
    let params = params.clone();
    async move { exec_outcome(run(&call, &params).await) }
}

/// Runs `call` to completion on the current shard. See the module documentation.
pub async fn run(call: &ExecCall, params: &ExecParams) -> Result<ExecOutput, ExecError> {
    for (name, value) in &call.env {
        if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
            return Err(ExecError::InvalidEnv { name: name.clone() });
        }
    }
    let mut cmd = Command::new(SHELL);
    cmd.arg("-c").arg(&call.command);
    cmd.envs(call.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    // Own process group: time-out signals reach whatever the shell started.
    cmd.process_group(0);
    let mut child = Child::spawn(cmd).map_err(|source| ExecError::Spawn {
        command: call.command.clone(),
        source,
    })?;
    let limit = call.timeout.unwrap_or(params.time_to_kill);
    let max = call.max_output.unwrap_or(params.max_output_size);
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let input = call.input.as_deref().unwrap_or(&[]);

    let attempt = {
        let child = &mut child;
        cores::timeout(limit, async move {
            let ((), out, err) = try_join3(
                write_input(stdin, input),
                read_bounded(stdout, max, "stdout"),
                read_bounded(stderr, max, "stderr"),
            )
            .await?;
            let status = child.wait().await.map_err(ExecError::Wait)?;
            Ok::<_, ExecError>(ExecOutput {
                status,
                stdout: out,
                stderr: err,
            })
        })
        .await
    };
    match attempt {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(e)) => {
            stop(&mut child, params.kill_grace).await;
            Err(e)
        }
        Err(_elapsed) => {
            stop(&mut child, params.kill_grace).await;
            Err(ExecError::Timeout { limit })
        }
    }
}

/// Writes `input` and closes stdin. A child that exits (or closes stdin) without
/// reading is not an error, as with OpenSIPS' buffered write.
async fn write_input(stdin: Option<Pipe>, input: &[u8]) -> Result<(), ExecError> {
    let Some(mut pipe) = stdin else {
        return Ok(());
    };
    if input.is_empty() {
        return Ok(());
    }
    match pipe.write_all(input).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            tracing::debug!("exec: the command did not read all of its input");
            Ok(())
        }
        Err(source) => Err(ExecError::Pipe {
            stream: "stdin",
            source,
        }),
    }
    // `pipe` is dropped here: the child reads end-of-file.
}

/// Reads a stream to EOF, failing once it holds more than `max` bytes.
async fn read_bounded(
    pipe: Option<Pipe>,
    max: usize,
    stream: &'static str,
) -> Result<Vec<u8>, ExecError> {
    let Some(mut pipe) = pipe else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = pipe
            .read(&mut buf)
            .await
            .map_err(|source| ExecError::Pipe { stream, source })?;
        if n == 0 {
            return Ok(out);
        }
        if out.len().saturating_add(n) > max {
            return Err(ExecError::OutputTooLarge { stream, limit: max });
        }
        out.extend_from_slice(buf.get(..n).unwrap_or(&[]));
    }
}

/// Signals the child's process group while its leader is unreaped (so the group id is
/// still reserved); `ESRCH` (group already gone) is fine.
fn signal_group(child: &Child, sig: Signal) {
    let Some(pgid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) else {
        return;
    };
    match rustix::process::kill_process_group(pgid, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(e) => {
            tracing::warn!(pid = child.id(), error = %e, "exec: cannot signal the child's group")
        }
    }
}

/// SIGTERM to the group, SIGKILL after `grace`, and reap. If the child still has not
/// exited after a second grace period, [`Child`]'s `Drop` reaps it in the background.
///
/// Called only before the leader was reaped ([`run`] reaps it on success alone), so the
/// group id is still reserved when it is signalled — also when the leader has already
/// exited and only a background member keeps the pipes open.
async fn stop(child: &mut Child, grace: Duration) {
    signal_group(child, Signal::TERM);
    if cores::timeout(grace, child.wait()).await.is_ok() {
        return;
    }
    signal_group(child, Signal::KILL);
    if cores::timeout(grace, child.wait()).await.is_err() {
        tracing::warn!(
            pid = child.id(),
            "exec: child survived SIGKILL for {grace:?}; reaping it in the background"
        );
    }
}

/// Polls three fallible futures together; the first error wins and drops the others.
async fn try_join3<A, B, C, E>(
    a: impl Future<Output = Result<A, E>>,
    b: impl Future<Output = Result<B, E>>,
    c: impl Future<Output = Result<C, E>>,
) -> Result<(A, B, C), E> {
    let (mut a, mut b, mut c) = (pin!(a), pin!(b), pin!(c));
    let (mut ra, mut rb, mut rc) = (None, None, None);
    poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(r) = a.as_mut().poll(cx) {
                ra = Some(r?);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(r) = b.as_mut().poll(cx) {
                rb = Some(r?);
            }
        }
        if rc.is_none() {
            if let Poll::Ready(r) = c.as_mut().poll(cx) {
                rc = Some(r?);
            }
        }
        match (ra.take(), rb.take(), rc.take()) {
            (Some(x), Some(y), Some(z)) => Poll::Ready(Ok((x, y, z))),
            (x, y, z) => {
                (ra, rb, rc) = (x, y, z);
                Poll::Pending
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_defaults_and_set() {
        let mut p = ExecParams::default();
        assert_eq!(p.time_to_kill, Duration::from_secs(60));
        assert_eq!(p.max_output_size, 1024 * 1024);
        p.set("time_to_kill", ModparamValue::Int(5)).unwrap();
        p.set("kill_grace_ms", ModparamValue::Int(250)).unwrap();
        p.set("max_output_size", ModparamValue::Int(10)).unwrap();
        p.set("setvars", ModparamValue::Int(0)).unwrap();
        assert_eq!(
            p,
            ExecParams {
                time_to_kill: Duration::from_secs(5),
                kill_grace: Duration::from_millis(250),
                max_output_size: 10
            }
        );
        assert!(matches!(
            p.set("time_to_kill", ModparamValue::Int(0)),
            Err(ExecModparamError::OutOfRange { .. })
        ));
        assert_eq!(
            p.set("setvars", ModparamValue::Int(1)),
            Err(ExecModparamError::SetvarsUnsupported)
        );
        assert!(matches!(
            p.set("time_to_kill", ModparamValue::Str("5")),
            Err(ExecModparamError::WrongType { .. })
        ));
        assert!(matches!(
            p.set("nope", ModparamValue::Int(1)),
            Err(ExecModparamError::Unknown(_))
        ));
    }

    #[test]
    fn osips_env_names() {
        let env = osips_exec_env(&["b".to_string(), "a".to_string()]);
        assert_eq!(
            env,
            vec![
                ("OSIPS_EXEC_0".to_string(), "b".to_string()),
                ("OSIPS_EXEC_1".to_string(), "a".to_string())
            ]
        );
    }

    #[test]
    fn rc_mapping() {
        assert_eq!(
            ExecError::Timeout {
                limit: Duration::from_secs(1)
            }
            .rc(),
            EXEC_TIMEOUT
        );
        assert_eq!(
            ExecError::OutputTooLarge {
                stream: "stdout",
                limit: 1
            }
            .rc(),
            EXEC_OUTPUT_TOO_LARGE
        );
        assert_eq!(ExecError::Wait(io::ErrorKind::Other.into()).rc(), EXEC_ERR);
        let ok = exec_outcome(Ok(ExecOutput {
            status: ExitStatus::Exited(3),
            stdout: b"x".to_vec(),
            stderr: vec![],
        }));
        assert_eq!(ok.rc, EXEC_OK);
        assert_eq!(ok.status, Some(ExitStatus::Exited(3)));
        let bad = exec_outcome(Err(ExecError::Timeout {
            limit: Duration::from_secs(1),
        }));
        assert_eq!((bad.rc, bad.stdout, bad.status), (EXEC_TIMEOUT, None, None));
    }
}
