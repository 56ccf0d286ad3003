//! Child processes on a shard: `/bin/sh -c cmd` with stdin/stdout/stderr pipes read and
//! written on the ring, exit observed through a pidfd (readable once the child exits)
//! plus `waitid(P_PIDFD, WNOHANG)`. Nothing here ever blocks the shard waiting.
//!
//! Owns the child's pidfd and pipe fds. Invariant: a child is reaped exactly once; if a
//! [`Child`] is dropped before its exit was collected, a task on the shard reaps it.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::rc::Rc;

use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

use crate::io::{read_fd, readable, write_all_fd};
use crate::shard;
use crate::stream::AsyncStream;
use crate::sys;

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl ExitStatus {
    /// The exit code, if the child exited normally.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Exited(c) => Some(*c),
            ExitStatus::Signaled(_) => None,
        }
    }

    pub fn success(&self) -> bool {
        *self == ExitStatus::Exited(0)
    }
}

/// One end of a pipe to a child, read or written on the shard's ring.
pub struct Pipe {
    fd: OwnedFd,
    _shard: PhantomData<Rc<()>>,
}

impl Pipe {
    fn new(fd: OwnedFd) -> io::Result<Pipe> {
        sys::set_nonblocking(&fd)?;
        Ok(Pipe {
            fd,
            _shard: PhantomData,
        })
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        shard::try_with(|s| s.forget_fd(self.fd.as_raw_fd()));
    }
}

impl AsyncStream for Pipe {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_fd(self.fd.as_raw_fd(), false, buf).await
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        write_all_fd(self.fd.as_raw_fd(), false, buf).await
    }
}

/// A running child process.
pub struct Child {
    pid: u32,
    pidfd: Option<OwnedFd>,
    status: Option<ExitStatus>,
    /// The child's standard input (drop it to send end-of-file).
    pub stdin: Option<Pipe>,
    pub stdout: Option<Pipe>,
    pub stderr: Option<Pipe>,
    _shard: PhantomData<Rc<()>>,
}

impl Child {
    /// Runs `/bin/sh -c cmd` with all three standard streams piped.
    pub fn spawn_shell(cmd: &str) -> io::Result<Child> {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(cmd);
        Child::spawn(c)
    }

    /// Spawns `cmd` with all three standard streams piped (overriding its Stdio settings).
    pub fn spawn(mut cmd: Command) -> io::Result<Child> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let stdin = child
            .stdin
            .take()
            .map(|p| Pipe::new(OwnedFd::from(p)))
            .transpose()?;
        let stdout = child
            .stdout
            .take()
            .map(|p| Pipe::new(OwnedFd::from(p)))
            .transpose()?;
        let stderr = child
            .stderr
            .take()
            .map(|p| Pipe::new(OwnedFd::from(p)))
            .transpose()?;
        // std's Child never waits or kills on drop; we reap through the pidfd.
        drop(child);
        let raw = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| io::Error::other("child pid out of range"))?;
        let pidfd = rustix::process::pidfd_open(raw, PidfdFlags::empty())?;
        Ok(Child {
            pid,
            pidfd: Some(pidfd),
            status: None,
            stdin,
            stdout,
            stderr,
            _shard: PhantomData,
        })
    }

    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Collects the exit status if the child has exited; never blocks.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let Some(pidfd) = &self.pidfd else {
            return Err(io::Error::other("child has no pidfd"));
        };
        let st = try_reap(pidfd)?;
        if st.is_some() {
            self.status = st;
            if let Some(fd) = self.pidfd.take() {
                shard::try_with(|s| s.forget_fd(fd.as_raw_fd()));
            }
        }
        Ok(st)
    }

    /// Waits (on the ring) for the child to exit and reaps it.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(s);
            }
            let Some(pidfd) = &self.pidfd else {
                return Err(io::Error::other("child has no pidfd"));
            };
            readable(pidfd.as_raw_fd()).await?;
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) -> io::Result<()> {
        self.signal(Signal::TERM)
    }

    /// Sends SIGKILL.
    pub fn kill(&self) -> io::Result<()> {
        self.signal(Signal::KILL)
    }

    fn signal(&self, sig: Signal) -> io::Result<()> {
        match &self.pidfd {
            Some(fd) => Ok(rustix::process::pidfd_send_signal(fd, sig)?),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "child already reaped",
            )),
        }
    }
}

fn try_reap(pidfd: &OwnedFd) -> io::Result<Option<ExitStatus>> {
    let st = rustix::process::waitid(
        WaitId::PidFd(pidfd.as_fd()),
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
    )?;
    Ok(st.and_then(|st| {
        if let Some(c) = st.exit_status() {
            Some(ExitStatus::Exited(c))
        } else {
            st.terminating_signal().map(ExitStatus::Signaled)
        }
    }))
}

impl Drop for Child {
    fn drop(&mut self) {
        let Some(pidfd) = self.pidfd.take() else {
            return;
        };
        if let Ok(Some(_)) = try_reap(&pidfd) {
            shard::try_with(|s| s.forget_fd(pidfd.as_raw_fd()));
            return;
        }
        // Still running: reap it in the background so it does not stay a zombie.
        let spawned = shard::try_with(|_| {
            crate::spawn_local(async move {
                loop {
                    match try_reap(&pidfd) {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) => {
                            if readable(pidfd.as_raw_fd()).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                shard::try_with(|s| s.forget_fd(pidfd.as_raw_fd()));
            });
        });
        if spawned.is_none() {
            tracing::warn!(
                pid = self.pid,
                "cores: child dropped off a shard; it may stay a zombie"
            );
        }
    }
}
