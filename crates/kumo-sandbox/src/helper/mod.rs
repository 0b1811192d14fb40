//! The sandbox helper: `kumo __sandbox`, a small single-threaded process
//! that builds one sandbox and execs the runner inside it.
//!
//! Three processes, each with one job, and the modules whose code each runs:
//!
//! - **helper** (host namespaces, root; this module, [`root`] and
//!   [`attach`]): reads the spec as the first frame on the channel (fd 0),
//!   builds the read-only root in a private mount namespace, clones the
//!   init into fresh user, pid, mount, net, ipc, uts and cgroup namespaces,
//!   writes its uid/gid maps (host root is never mapped), lets it go, and
//!   waits for it, serving late mounts on its control socket meanwhile.
//!   Its exit status is the runner's.
//! - **init** (pid 1 of the new namespace; [`init`]): mounts `/proc`,
//!   `pivot_root`s into the root the helper built, forks the runner, and
//!   reaps orphans. When the runner exits, init exits, and the kernel kills
//!   whatever was left in the namespace — no background process outlives
//!   the instance.
//! - **runner** ([`runner`], from the init's `fork` to `execve`): sets
//!   rlimits, drops to uid 1000 with no capabilities, sets `no_new_privs`,
//!   Landlock and the seccomp filter, and execs the program.
//!
//! [`fdio`] (the helper's descriptor and frame I/O) and [`sys`] (system
//! calls the helper and the init both make, or the init and the runner)
//! hold what more than one module uses.
//!
//! Lifetimes are tied by `PR_SET_PDEATHSIG` to the single-threaded parent of
//! each process (helper → init → runner), and by the cgroup the helper was
//! placed in before it started.
//!
//! This module is the helper itself. It is started by exec (never forked
//! from the server) and stays single-threaded, with no async runtime:
//! user namespaces cannot be created from a multi-threaded process, and
//! the `clone` of the init counts on no other thread existing. It reads
//! fd 0 unbuffered and no further than the spec's frame (what follows
//! belongs to the runner), joins the instance's cgroup before it creates
//! anything, keeps its own descriptors (the server's pidfd, the control
//! socket, the sandbox's mount namespace) at 10 or above and close-on-exec
//! (the init closes those it inherits), and once the init is released it
//! holds neither the channel nor the log pipes, whose closing tells the
//! host that the runner died.

mod attach;
mod fdio;
mod init;
mod root;
mod runner;
mod sys;

use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use attach::{LateMount, open_mount_namespace, serve_control};
use fdio::{move_high, read_exact, recv_with_fd};
use root::build_root;

/// Inside the sandbox, code runs as this uid and gid.
pub(crate) const SANDBOX_UID: u32 = 1000;

/// What the host tells the helper; sent as JSON, the first frame on the
/// channel (fd 0).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HelperSpec {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    /// Working directory inside the sandbox.
    pub(crate) cwd: PathBuf,
    /// An empty host directory the new root is mounted on (in the
    /// sandbox's own mount namespace).
    pub(crate) root_dir: PathBuf,
    /// Read-only bind mounts: host source → path inside.
    pub(crate) mounts: Vec<(PathBuf, PathBuf)>,
    /// Read-write bind mounts of host directories: source → path inside.
    pub(crate) writable_mounts: Vec<(PathBuf, PathBuf)>,
    pub(crate) network: crate::Network,
    /// What Landlock enforced on this kernel when the server started: a
    /// sandbox that gets less refuses to run.
    pub(crate) landlock: crate::Enforcement,
    /// Symbolic links to create inside: path → target.
    pub(crate) symlinks: Vec<(PathBuf, PathBuf)>,
    /// The `cgroup.procs` files of the instance's cgroup, to join first.
    pub(crate) cgroup_procs: Vec<PathBuf>,
    /// The freezer's `cgroup.procs` where the freezer is a hierarchy of its
    /// own (cgroup v1): the init joins it, the helper does not, so the
    /// helper is never frozen and can always stop the sandbox.
    pub(crate) freezer_procs: Option<PathBuf>,
    /// The server's pid: when it dies, the helper kills the sandbox.
    pub(crate) server_pid: u32,
    pub(crate) tmp_bytes: u64,
    /// Host uid/gid that inside 0 maps to; inside 1000 maps to the next.
    pub(crate) id_base: u32,
    pub(crate) open_files: u64,
    pub(crate) file_size_bytes: u64,
    pub(crate) pids: u64,
    /// Empty directories made inside at these paths, for [`Attach`] to
    /// mount onto later. When there are any, the host passed a control
    /// socket with the spec.
    pub(crate) pending_mounts: Vec<PathBuf>,
}

/// A request on the control socket: bind host directories read-only at
/// pending mount points (source → path inside) and resize `/tmp`. Sent
/// once, while the program waits.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Attach {
    pub(crate) mounts: Vec<(PathBuf, PathBuf)>,
    pub(crate) tmp_bytes: u64,
}

/// The helper's answer to [`Attach`].
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct AttachReply {
    pub(crate) error: Option<String>,
}

/// Entry point of `kumo __sandbox`. Never returns.
pub fn run_helper() -> ! {
    let code = match helper() {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "kumo sandbox: {e}");
            126
        }
    };
    std::process::exit(code)
}

fn helper() -> Result<i32, String> {
    // fd 0 is the channel; the host wrote the spec on it as the first
    // frame, with the control socket attached when there is one.
    let (spec, control) = read_spec()?;
    if spec.pending_mounts.is_empty() == control.is_some() {
        return Err("pending mounts need a control socket, and only they".into());
    }

    // Join the instance's cgroup before anything else is created, so every
    // process of the sandbox is counted and killed with it.
    for path in &spec.cgroup_procs {
        fs::write(path, "0").map_err(|e| format!("joining cgroup {}: {e}", path.display()))?;
    }
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    // The channel moves to fd 3, fd 0 becomes /dev/null, and nothing else
    // crosses the coming exec.
    // SAFETY: dup2 between the standard descriptors of this single-threaded
    // process; no Rust object owns fd 0 or fd 3.
    unsafe {
        if libc::dup2(0, crate::CHANNEL_FD) < 0 {
            return Err(format!(
                "dup2 of the channel: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    let null = fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    // SAFETY: as above.
    unsafe {
        libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0);
    }
    drop(null);
    crate::close_above(crate::CHANNEL_FD).map_err(|e| format!("close_range: {e}"))?;
    // Watch the server from here on (above fd 3, which the channel and
    // the standard descriptors own); if it is already gone, stop.
    let server = pidfd_open(spec.server_pid)?;
    if nix::unistd::getppid().as_raw() != spec.server_pid as i32 {
        return Err("the server went away before the sandbox started".into());
    }
    // Built before the clone so the runner only has to install it.
    let filters = crate::seccomp::build()?;
    // The root is built here, as host root in a private mount namespace,
    // so no path on the host has to be reachable by the sandbox's ids;
    // the sandbox's own mount namespace starts as a copy of this one.
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    build_root(&spec)?;

    let (go_read, go_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))?;
    let mut flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWCGROUP;
    // Egress keeps the host's network (Landlock narrows it in the runner).
    if spec.network == crate::Network::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    let mut stack = vec![0u8; 1024 * 1024];
    // The init must not hold the helper's own descriptors.
    let helper_fds: Vec<i32> = [Some(&server), control.as_ref()]
        .into_iter()
        .flatten()
        .map(std::os::fd::AsRawFd::as_raw_fd)
        .collect();
    let init_cb = Box::new(|| init::init(&spec, &filters, &go_read, &helper_fds));
    // SAFETY: this process is single-threaded (it is the helper, started
    // by exec), so the child gets a consistent copy of memory; the
    // callback runs on its own stack and only returns an exit code.
    let child = unsafe { nix::sched::clone(init_cb, &mut stack, flags, Some(libc::SIGCHLD)) }
        .map_err(|e| format!("clone into new namespaces: {e} (are user namespaces enabled?)"))?;

    let maps = format!(
        "0 {} 1\n{SANDBOX_UID} {} 1\n",
        spec.id_base,
        spec.id_base + 1
    );
    let proc_dir = PathBuf::from(format!("/proc/{child}"));
    let write_map = |file: &str| {
        fs::write(proc_dir.join(file), &maps)
            .map_err(|e| format!("writing {file} of the sandbox: {e}"))
    };
    let join_freezer = || match &spec.freezer_procs {
        Some(path) => fs::write(path, child.to_string())
            .map_err(|e| format!("joining cgroup {}: {e}", path.display())),
        None => Ok(()),
    };
    if let Err(e) = write_map("uid_map")
        .and_then(|()| write_map("gid_map"))
        .and_then(|()| join_freezer())
    {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        return Err(e);
    }
    nix::unistd::write(&go_write, b"1").map_err(|e| format!("releasing the sandbox: {e}"))?;
    drop(go_write);
    drop(go_read);
    // The helper must not hold the channel or the log pipes: the host
    // learns that the runner died from their closing.
    release_stdio();
    let late = match control {
        Some(control) => Some(LateMount {
            control,
            targets: spec.pending_mounts.clone(),
            namespace: open_mount_namespace(child)?,
        }),
        None => None,
    };
    watch(child, &server, spec.freezer_procs.as_deref(), late)
}

/// Waits for the sandbox to end; if the server dies first, kills it (an
/// idle sandbox is frozen and would otherwise wait forever). Serves the
/// control socket meanwhile.
fn watch(
    child: Pid,
    server: &OwnedFd,
    freezer_procs: Option<&Path>,
    mut late: Option<LateMount>,
) -> Result<i32, String> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let sandbox = pidfd_open(child.as_raw() as u32)?;
    // Opened now: after an attach this process sees the sandbox's
    // filesystem, not the host's.
    let freezer_state = freezer_procs.and_then(|procs| {
        fs::OpenOptions::new()
            .write(true)
            .open(procs.with_file_name("freezer.state"))
            .ok()
    });
    loop {
        let mut fds = vec![
            PollFd::new(sandbox.as_fd(), PollFlags::POLLIN),
            PollFd::new(server.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(late) = &late {
            fds.push(PollFd::new(late.control.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        let server_gone = fds[1].revents().is_some_and(|r| !r.is_empty());
        let sandbox_done = fds[0].revents().is_some_and(|r| !r.is_empty());
        let control_ready = fds
            .get(2)
            .is_some_and(|fd| fd.revents().is_some_and(|r| !r.is_empty()));
        drop(fds);
        if control_ready && !server_gone && !sandbox_done {
            let keep = late.as_ref().is_some_and(serve_control);
            if !keep {
                late = None;
            }
        }
        if server_gone && !sandbox_done {
            if let Some(mut state) = freezer_state.as_ref() {
                let _ = state.write_all(b"THAWED");
            }
            // Pid 1 of the namespace: its death takes everything with it.
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        }
        if server_gone || sandbox_done {
            return match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => Ok(code),
                Ok(WaitStatus::Signaled(_, signal, _)) => Ok(128 + signal as i32),
                Ok(_) => continue,
                Err(e) => Err(format!("waiting for the sandbox: {e}")),
            };
        }
    }
}

/// A pidfd for `pid`: readable once the process has exited.
fn pidfd_open(pid: u32) -> Result<OwnedFd, String> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(format!(
            "pidfd_open({pid}): {}",
            std::io::Error::last_os_error()
        ));
    }
    let fd = i32::try_from(fd).map_err(|_| "pidfd out of range".to_string())?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // Keep it clear of the low descriptors the helper rearranges.
    move_high(&fd)
}

/// Reads the spec frame from fd 0, unbuffered: nothing past the frame
/// may be consumed, it belongs to the runner. A descriptor sent with the
/// frame is the control socket.
fn read_spec() -> Result<(HelperSpec, Option<OwnedFd>), String> {
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    let mut len = [0u8; 4];
    let (got, control) = recv_with_fd(fd, &mut len)?;
    if got == 0 {
        return Err("the host closed the channel before sending the spec".into());
    }
    read_exact(fd, &mut len[got..])?;
    let len = u32::from_be_bytes(len) as usize;
    if len > 4 * 1024 * 1024 {
        return Err(format!("sandbox spec of {len} bytes is too large"));
    }
    let mut body = vec![0u8; len];
    read_exact(fd, &mut body)?;
    let spec =
        serde_json::from_slice(&body).map_err(|e| format!("parsing the sandbox spec: {e}"))?;
    // Keep it clear of the low descriptors the helper rearranges.
    let control = control.map(|c| move_high(&c)).transpose()?;
    Ok((spec, control))
}

/// Points fds 0–2 at /dev/null and closes fd 3.
fn release_stdio() {
    if let Ok(null) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for target in 0..=2 {
            // SAFETY: dup2 onto the standard descriptors of this process,
            // which nothing else in this single-threaded helper uses now.
            unsafe {
                libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), target);
            }
        }
    }
    // SAFETY: fd 3 is the channel, owned by no Rust object here.
    unsafe {
        libc::close(crate::CHANNEL_FD);
    }
}
