//! Starts one confined process and hands back its private channel.
//!
//! This crate knows nothing of functions, runtimes or HTTP: it takes a
//! program, its arguments, its environment and its limits, and returns a
//! running [`Process`] with
//!
//! - fd 3 in the child: a connected Unix stream socket (the channel), whose
//!   other end is [`Process::channel`];
//! - fd 1 and fd 2 in the child: pipes whose read ends are
//!   [`Process::stdout`] and [`Process::stderr`];
//! - fd 0: `/dev/null`.
//!
//! Confinement today: a cleared environment, a new session and process
//! group (no controlling terminal), rlimits on descriptors, file size and
//! core dumps, every other descriptor closed at exec. Stopping a process
//! kills its whole process group. The namespace, filesystem, cgroup and
//! seccomp layers slot in behind the same [`spawn`] call.
//!
//! This is the only crate of Kumo allowed to use `unsafe`.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The descriptor number of the channel inside the child.
pub const CHANNEL_FD: i32 = 3;

/// What to start and under which limits.
#[derive(Debug, Clone)]
pub struct Spec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The complete environment; nothing of the caller's is inherited.
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    pub limits: Limits,
}

/// Per-process resource limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `RLIMIT_NOFILE`.
    pub open_files: u64,
    /// `RLIMIT_FSIZE`: the largest file the process may write.
    pub file_size_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("socketpair for the channel failed: {0}")]
    Socketpair(#[source] io::Error),
    #[error("pipe2 for the output pipes failed: {0}")]
    Pipe(#[source] nix::Error),
    #[error("spawning {program} failed: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("registering the channel with the runtime failed: {0}")]
    Register(#[source] io::Error),
}

/// A running confined process: its handle and its three host-side ends.
#[derive(Debug)]
pub struct Process {
    /// Kills the process (and everything it started) when dropped.
    pub handle: Handle,
    /// The host end of the channel (non-blocking).
    pub channel: tokio::net::UnixStream,
    /// Read end of the child's stdout.
    pub stdout: tokio::net::unix::pipe::Receiver,
    /// Read end of the child's stderr.
    pub stderr: tokio::net::unix::pipe::Receiver,
}

/// Owns the process: killing it, waiting for it; kills on drop.
#[derive(Debug)]
pub struct Handle {
    pid: u32,
    child: tokio::process::Child,
    killed: bool,
}

/// Starts `spec` and returns the running process.
pub fn spawn(spec: &Spec) -> Result<Process, SandboxError> {
    let (host_end, child_end) = StdUnixStream::pair().map_err(SandboxError::Socketpair)?;
    let (stdout_read, stdout_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(SandboxError::Pipe)?;
    let (stderr_read, stderr_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(SandboxError::Pipe)?;

    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout_write))
        .stderr(Stdio::from(stderr_write))
        .kill_on_drop(true);

    let channel_fd = child_end.as_raw_fd();
    let limits = spec.limits;
    // SAFETY: the closure runs in the forked child before exec and calls
    // only async-signal-safe system calls (setsid, dup2, fcntl, setrlimit,
    // close_range); it allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(move || child_setup(channel_fd, limits));
    }

    let child = command.spawn().map_err(|source| SandboxError::Spawn {
        program: spec.program.display().to_string(),
        source,
    })?;
    drop(child_end);
    let pid = child.id().unwrap_or_default();

    host_end
        .set_nonblocking(true)
        .map_err(SandboxError::Register)?;
    let channel = tokio::net::UnixStream::from_std(host_end).map_err(SandboxError::Register)?;
    Ok(Process {
        handle: Handle {
            pid,
            child,
            killed: false,
        },
        channel,
        stdout: tokio::net::unix::pipe::Receiver::from_owned_fd(stdout_read)
            .map_err(SandboxError::Register)?,
        stderr: tokio::net::unix::pipe::Receiver::from_owned_fd(stderr_read)
            .map_err(SandboxError::Register)?,
    })
}

/// Runs in the child between fork and exec.
fn child_setup(channel_fd: i32, limits: Limits) -> io::Result<()> {
    // SAFETY: setsid has no memory-safety preconditions.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    if channel_fd == CHANNEL_FD {
        // dup2 onto itself keeps FD_CLOEXEC; clear it by hand.
        // SAFETY: fcntl on a descriptor we own, with integer arguments.
        if unsafe { libc::fcntl(CHANNEL_FD, libc::F_SETFD, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
    } else {
        // SAFETY: dup2 between two valid descriptor numbers; the new fd 3
        // has FD_CLOEXEC cleared, which is what we want.
        if unsafe { libc::dup2(channel_fd, CHANNEL_FD) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    set_rlimit(libc::RLIMIT_NOFILE, limits.open_files)?;
    set_rlimit(libc::RLIMIT_FSIZE, limits.file_size_bytes)?;
    set_rlimit(libc::RLIMIT_CORE, 0)?;
    // Every descriptor above the channel closes at exec, whoever opened it.
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes descriptor flags in this process.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            (CHANNEL_FD + 1) as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_rlimit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: `limit` is a valid, initialised rlimit that outlives the call.
    if unsafe { libc::setrlimit(resource, &limit) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Handle {
    /// The process id of the process, as the host sees it.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Kills every process of the instance at once. Idempotent.
    pub fn kill(&mut self) {
        if self.killed {
            return;
        }
        self.killed = true;
        if let Ok(pid) = i32::try_from(self.pid)
            && pid > 0
        {
            // The process is its own group leader (setsid), so this reaches
            // whatever it forked, too.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.start_kill();
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.kill();
    }
}
