//! The sandbox helper: `kumo __sandbox`, a small single-threaded process
//! that builds one sandbox and execs the runner inside it.
//!
//! Three processes, each with one job:
//!
//! - **helper** (host namespaces, root): reads the spec as the first frame
//!   on the channel (fd 0), builds the read-only root in a private mount
//!   namespace, clones the init into fresh user, pid, mount, net, ipc, uts
//!   and cgroup namespaces, writes its uid/gid maps (host root is never
//!   mapped), lets it go, and waits for it, serving late mounts on its
//!   control socket meanwhile. Its exit status is the runner's.
//! - **init** (pid 1 of the new namespace): mounts `/proc`, `pivot_root`s
//!   into the root the helper built, forks the runner, and reaps orphans.
//!   When the runner exits, init exits, and the kernel kills whatever was
//!   left in the namespace — no background process outlives the instance.
//! - **runner**: sets rlimits, drops to uid 1000 with no capabilities, sets
//!   `no_new_privs`, Landlock and the seccomp filter, and execs the program.
//!
//! Lifetimes are tied by `PR_SET_PDEATHSIG` to the single-threaded parent of
//! each process (helper → init → runner), and by the cgroup the helper was
//! placed in before it started.

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::CloneFlags;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork};
use serde::{Deserialize, Serialize};

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
    let init_cb = Box::new(|| init(&spec, &filters, &go_read, &helper_fds));
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

/// What the helper needs to serve an [`Attach`] request.
struct LateMount {
    control: OwnedFd,
    /// The pending mount points, as seen inside.
    targets: Vec<PathBuf>,
    /// The sandbox's mount namespace, entered for the attach.
    namespace: OwnedFd,
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

/// One `recvmsg` into `buf`, taking at most one descriptor sent with it.
fn recv_with_fd(
    fd: std::os::fd::BorrowedFd<'_>,
    buf: &mut [u8],
) -> Result<(usize, Option<OwnedFd>), String> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::{AsRawFd, FromRawFd, RawFd};
    loop {
        let mut iov = [std::io::IoSliceMut::new(buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = match recvmsg::<()>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => msg,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("reading the sandbox spec: {e}")),
        };
        let mut control = None;
        for cmsg in msg
            .cmsgs()
            .map_err(|e| format!("reading the sandbox spec: {e}"))?
        {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for raw in fds {
                    // SAFETY: the kernel just installed this descriptor in
                    // this process; nothing else owns it.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    if control.is_none() {
                        control = Some(owned);
                    }
                }
            }
        }
        return Ok((msg.bytes, control));
    }
}

fn read_exact(fd: std::os::fd::BorrowedFd<'_>, buf: &mut [u8]) -> Result<(), String> {
    let mut done = 0;
    while done < buf.len() {
        match nix::unistd::read(fd, &mut buf[done..]) {
            Ok(0) => return Err("the host closed the channel in the middle of a frame".into()),
            Ok(n) => done += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("reading a frame: {e}")),
        }
    }
    Ok(())
}

fn write_all(fd: std::os::fd::BorrowedFd<'_>, mut buf: &[u8]) -> Result<(), String> {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("writing a frame: {e}")),
        }
    }
    Ok(())
}

/// A close-on-exec duplicate numbered 10 or more.
fn move_high(fd: &OwnedFd) -> Result<OwnedFd, String> {
    let high = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))
        .map_err(|e| format!("dup: {e}"))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that we now own.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(high) })
}

/// Serves one request on the control socket. Returns whether to keep
/// listening: an attach happens once, and a closed socket is done.
fn serve_control(late: &LateMount) -> bool {
    let fd = late.control.as_fd();
    let mut len = [0u8; 4];
    match nix::unistd::read(fd, &mut len[..1]) {
        Ok(1) => {}
        Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => return true,
        _ => return false,
    }
    let request = read_exact(fd, &mut len[1..]).and_then(|()| {
        let len = u32::from_be_bytes(len) as usize;
        if len > 64 * 1024 {
            return Err(format!("a control request of {len} bytes is too large"));
        }
        let mut body = vec![0u8; len];
        read_exact(fd, &mut body)?;
        serde_json::from_slice::<Attach>(&body)
            .map_err(|e| format!("parsing a control request: {e}"))
    });
    let reply = AttachReply {
        error: request.and_then(|attach| attach_mount(late, &attach)).err(),
    };
    let body = serde_json::to_vec(&reply).unwrap_or_default();
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let _ = write_all(fd, &frame);
    false
}

/// Opens the mount namespace of `child`, to enter it later.
fn open_mount_namespace(child: Pid) -> Result<OwnedFd, String> {
    let file = fs::File::open(format!("/proc/{child}/ns/mnt"))
        .map_err(|e| format!("opening the sandbox's mount namespace: {e}"))?;
    move_high(&OwnedFd::from(file))
}

/// Binds each `attach.mounts` source read-only at its pending mount
/// point inside the running sandbox, and resizes its `/tmp`.
///
/// The binds are cloned here, where host paths are visible, as detached
/// mounts (`open_tree`); this process then enters the sandbox's mount
/// namespace (it is privileged over the sandbox's user namespace) and
/// attaches them there (`move_mount`). The sandbox's processes have no
/// capabilities and no mount system calls, so they can neither undo nor
/// change them.
fn attach_mount(late: &LateMount, attach: &Attach) -> Result<(), String> {
    let mut trees = Vec::new();
    for (source, target) in &attach.mounts {
        // A pending mount point, or a directory inside one attached first.
        let pending = late.targets.contains(target)
            || attach.mounts.iter().any(|(_, earlier)| {
                earlier != target && late.targets.contains(earlier) && target.starts_with(earlier)
            });
        if !pending {
            return Err(format!("{} is not a pending mount point", target.display()));
        }
        let target = CString::new(target.as_os_str().as_encoded_bytes())
            .map_err(|_| "a pending mount point holds NUL".to_string())?;
        trees.push((detached_read_only_tree(source)?, target));
    }
    nix::sched::setns(&late.namespace, CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("entering the sandbox's mount namespace: {e}"))?;
    for (tree, target) in &trees {
        move_tree(tree, target)?;
    }
    // The tmpfs is shared with the helper's view; its size is the
    // superblock's, so a remount here resizes the sandbox's /tmp.
    mnt(
        None,
        Path::new("/tmp"),
        None,
        MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&format!("size={}", attach.tmp_bytes.max(4096))),
    )
}

/// A detached, read-only, nosuid, nodev clone of the mount at `source`.
fn detached_read_only_tree(source: &Path) -> Result<OwnedFd, String> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let path = CString::new(source.as_os_str().as_encoded_bytes())
        .map_err(|_| "the attach source holds NUL".to_string())?;
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    // SAFETY: open_tree reads a NUL-terminated path and returns a new fd.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(format!(
            "open_tree({}): {}",
            source.display(),
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `attr`, which lives across the call, and
    // an empty NUL-terminated path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc < 0 {
        return Err(format!(
            "mount_setattr: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(tree)
}

/// Attaches a detached mount at `target` in this process's namespace.
fn move_tree(tree: &OwnedFd, target: &CString) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    // SAFETY: move_mount reads two NUL-terminated paths; `tree` is a
    // detached mount this process owns.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(format!(
            "move_mount onto {}: {}",
            target.to_string_lossy(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
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

/// Pid 1 of the sandbox. Returns its exit code.
fn init(
    spec: &HelperSpec,
    filters: &[seccompiler::BpfProgram],
    go: &OwnedFd,
    helper_fds: &[i32],
) -> isize {
    for fd in helper_fds {
        // SAFETY: these descriptors are the helper's; this process (a
        // copy) owns no Rust object for them and never uses them.
        unsafe {
            libc::close(*fd);
        }
    }
    match init_inner(spec, filters, go) {
        Ok(code) => code as isize,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "kumo sandbox: {e}");
            125
        }
    }
}

fn init_inner(
    spec: &HelperSpec,
    filters: &[seccompiler::BpfProgram],
    go: &OwnedFd,
) -> Result<i32, String> {
    set_parent_death_signal()?;
    // Wait until the helper has written our id maps.
    let mut byte = [0u8; 1];
    match nix::unistd::read(go.as_fd(), &mut byte) {
        Ok(1) => {}
        _ => return Err("the helper went away before the sandbox was ready".into()),
    }
    enter_root(spec)?;
    // From here on this process is the sandbox's root, which maps to an
    // unprivileged host id; it keeps capabilities only in its namespace.
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(|e| format!("setresgid(0): {e}"))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(|e| format!("setresuid(0): {e}"))?;
    nix::unistd::sethostname("kumo").map_err(|e| format!("sethostname: {e}"))?;
    std::env::set_current_dir(&spec.cwd)
        .map_err(|e| format!("chdir {}: {e}", spec.cwd.display()))?;
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    // Nothing inside may open this process's memory or descriptors.
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }

    // SAFETY: init is single-threaded, so the child may run arbitrary code
    // before exec.
    let runner = match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            let e = exec_runner(spec, filters);
            let _ = writeln!(std::io::stderr(), "kumo sandbox: {e}");
            // SAFETY: _exit in a forked child without running destructors.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => child,
    };
    Ok(reap_until(runner))
}

/// Reaps every child (orphans land on pid 1) until the runner exits.
fn reap_until(runner: Pid) -> i32 {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == runner => return code,
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == runner => {
                return 128 + signal as i32;
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 125,
        }
    }
}

fn set_parent_death_signal() -> Result<(), String> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } < 0 {
        return Err(format!(
            "prctl(PR_SET_PDEATHSIG): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn mnt(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    mount(source, target, fstype, flags, data).map_err(|e| {
        format!(
            "mount {} on {} ({}): {e}",
            source.map_or_else(
                || fstype.unwrap_or("none").to_string(),
                |s| s.display().to_string()
            ),
            target.display(),
            fstype.unwrap_or("bind")
        )
    })
}

/// Read-only bind mount, keeping the source's locked flags. Not
/// recursive: a mount nested under the source is not carried in (the
/// read-only remount below would not reach it).
fn bind_ro(source: &Path, target: &Path) -> Result<(), String> {
    mnt(Some(source), target, None, MsFlags::MS_BIND, None)?;
    let mut flags = MsFlags::MS_REMOUNT
        | MsFlags::MS_BIND
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV;
    if let Ok(st) = nix::sys::statvfs::statvfs(source) {
        use nix::sys::statvfs::FsFlags;
        let f = st.flags();
        if f.contains(FsFlags::ST_NOEXEC) {
            flags |= MsFlags::MS_NOEXEC;
        }
        if f.contains(FsFlags::ST_NOATIME) {
            flags |= MsFlags::MS_NOATIME;
        }
        if f.contains(FsFlags::ST_NODIRATIME) {
            flags |= MsFlags::MS_NODIRATIME;
        }
        if f.contains(FsFlags::ST_RELATIME) {
            flags |= MsFlags::MS_RELATIME;
        }
    }
    mnt(None, target, None, flags, None)
}

fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn make_target(target: &Path, is_dir: bool) -> Result<(), String> {
    if is_dir {
        fs::create_dir_all(target).map_err(|e| format!("mkdir {}: {e}", target.display()))
    } else {
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
        }
        fs::File::create(target)
            .map(drop)
            .map_err(|e| format!("create {}: {e}", target.display()))
    }
}

/// Builds the new root, which the init then pivots into (`enter_root`).
fn build_root(spec: &HelperSpec) -> Result<(), String> {
    let root = spec.root_dir.as_path();
    // Nothing done here may leak back to the host.
    mnt(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    mnt(
        Some(Path::new("tmpfs")),
        root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("size=4m,nr_inodes=4096,mode=0755"),
    )?;

    for (source, target) in &spec.mounts {
        let dest = inside(root, target);
        let is_dir = source.is_dir();
        make_target(&dest, is_dir)?;
        bind_ro(source, &dest)?;
    }
    for (path, target) in &spec.symlinks {
        let dest = inside(root, path);
        if dest.symlink_metadata().is_err() {
            symlink(target, &dest).map_err(|e| format!("symlink {}: {e}", dest.display()))?;
        }
    }

    for (source, target) in &spec.writable_mounts {
        // The directory itself goes to the sandbox's uid 1000 (its host
        // uid is the second of the pair); what it holds stays as it is.
        let owner = spec.id_base + 1;
        std::os::unix::fs::lchown(source, Some(owner), Some(owner))
            .map_err(|e| format!("chown {}: {e}", source.display()))?;
        let dest = inside(root, target);
        make_target(&dest, true)?;
        mnt(Some(source), &dest, None, MsFlags::MS_BIND, None)?;
        mnt(
            None,
            &dest,
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None,
        )?;
    }
    for pending in &spec.pending_mounts {
        make_target(&inside(root, pending), true)?;
    }

    // /etc: just enough for name lookups of the sandbox itself.
    let resolv_conf = match spec.network {
        crate::Network::None => String::new(),
        crate::Network::Egress { .. } => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    let etc = root.join("etc");
    make_target(&etc, true)?;
    for (name, content) in [
        (
            "passwd",
            "root:x:0:0:root:/root:/sbin/nologin\nkumo:x:1000:1000:kumo:/tmp:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n",
        ),
        ("group", "root:x:0:\nkumo:x:1000:\nnogroup:x:65534:\n"),
        ("hosts", "127.0.0.1 localhost kumo\n::1 localhost\n"),
        ("hostname", "kumo\n"),
        // Name lookups only where there is a network to look up on.
        ("resolv.conf", resolv_conf.as_str()),
        (
            "nsswitch.conf",
            "passwd: files\ngroup: files\nhosts: files dns\n",
        ),
    ] {
        fs::write(etc.join(name), content).map_err(|e| format!("writing /etc/{name}: {e}"))?;
    }

    // /tmp: the only writable place, size-capped.
    let tmp = root.join("tmp");
    make_target(&tmp, true)?;
    mnt(
        Some(Path::new("tmpfs")),
        &tmp,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&format!("size={},mode=1777", spec.tmp_bytes.max(4096))),
    )?;

    // /dev: null, zero, random, urandom only.
    let dev = root.join("dev");
    make_target(&dev, true)?;
    mnt(
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("size=64k,nr_inodes=64,mode=0755"),
    )?;
    for name in ["null", "zero", "random", "urandom"] {
        let target = dev.join(name);
        make_target(&target, false)?;
        let source = PathBuf::from("/dev").join(name);
        mnt(Some(&source), &target, None, MsFlags::MS_BIND, None)?;
        mnt(
            None,
            &target,
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            None,
        )?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(name)).map_err(|e| format!("symlink /dev/{name}: {e}"))?;
    }

    make_target(&root.join("proc"), true)?;
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod /: {e}"))?;
    mnt(
        None,
        root,
        None,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        None,
    )?;
    Ok(())
}

/// In the new namespaces: mounts this pid namespace's /proc and pivots
/// into the root the helper built.
fn enter_root(spec: &HelperSpec) -> Result<(), String> {
    let root = spec.root_dir.as_path();
    let dev = root.join("dev");
    // The mounts the helper made are locked in this namespace, and
    // pivot_root refuses a locked root; a recursive bind onto itself
    // gives this namespace its own, unlocked, top mount.
    mnt(
        Some(root),
        root,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    // /proc of the new pid namespace, with the revealing parts masked.
    let proc_dir = root.join("proc");
    mnt(
        Some(Path::new("proc")),
        &proc_dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    let null = dev.join("null");
    for name in [
        "kcore",
        "keys",
        "sched_debug",
        "timer_list",
        "sysrq-trigger",
        "latency_stats",
        "kallsyms",
        "kpagecount",
        "kpageflags",
        "config.gz",
        // The host's boot arguments and boot configuration.
        "cmdline",
        "bootconfig",
        "timer_stats",
        "interrupts",
    ] {
        let path = proc_dir.join(name);
        if path.exists() {
            mnt(Some(&null), &path, None, MsFlags::MS_BIND, None)?;
        }
    }
    for name in ["acpi", "scsi", "asound", "firmware", "driver"] {
        let path = proc_dir.join(name);
        if path.is_dir() {
            mnt(
                Some(Path::new("tmpfs")),
                &path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                Some("size=0"),
            )?;
        }
    }
    for name in ["sys", "bus", "fs", "irq"] {
        let path = proc_dir.join(name);
        if path.is_dir() {
            bind_ro(&path, &path)?;
        }
    }

    // Switch roots; the old root is detached and gone.
    std::env::set_current_dir(root).map_err(|e| format!("chdir to new root: {e}"))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detaching the old root: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

/// Drops every privilege and execs the program. Returns only on failure.
fn exec_runner(spec: &HelperSpec, filters: &[seccompiler::BpfProgram]) -> String {
    match exec_runner_inner(spec, filters) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn exec_runner_inner(
    spec: &HelperSpec,
    filters: &[seccompiler::BpfProgram],
) -> Result<std::convert::Infallible, String> {
    set_parent_death_signal()?;
    crate::set_rlimit(libc::RLIMIT_NOFILE, spec.open_files)
        .map_err(|e| format!("setrlimit(NOFILE): {e}"))?;
    crate::set_rlimit(libc::RLIMIT_FSIZE, spec.file_size_bytes)
        .map_err(|e| format!("setrlimit(FSIZE): {e}"))?;
    crate::set_rlimit(libc::RLIMIT_CORE, 0).map_err(|e| format!("setrlimit(CORE): {e}"))?;
    crate::set_rlimit(libc::RLIMIT_NPROC, spec.pids)
        .map_err(|e| format!("setrlimit(NPROC): {e}"))?;

    // Empty the bounding set while we still may, then become uid 1000,
    // which clears the permitted and effective sets.
    let last_cap: i32 = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63);
    for cap in 0..=last_cap {
        // SAFETY: prctl with integer arguments only.
        unsafe {
            libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
        }
    }
    let gid = Gid::from_raw(SANDBOX_UID);
    let uid = Uid::from_raw(SANDBOX_UID);
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| format!("setresgid: {e}"))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| format!("setresuid: {e}"))?;
    clear_capabilities()?;
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
            return Err(format!(
                "prctl(NO_NEW_PRIVS): {}",
                std::io::Error::last_os_error()
            ));
        }
    }

    let program = CString::new(spec.program.as_os_str().as_encoded_bytes())
        .map_err(|_| "program path holds NUL".to_string())?;
    let mut argv = vec![program.clone()];
    for a in &spec.args {
        argv.push(CString::new(a.as_str()).map_err(|_| "argument holds NUL".to_string())?);
    }
    let envp: Vec<CString> = spec
        .env
        .iter()
        .filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok())
        .collect();
    restrict(spec)?;
    for filter in filters {
        seccompiler::apply_filter(filter)
            .map_err(|e| format!("installing the seccomp filter: {e}"))?;
    }
    nix::unistd::execve(&program, &argv, &envp)
        .map_err(|e| format!("exec {}: {e}", spec.program.display()))
}

/// Landlock, a second filesystem layer behind the read-only mounts: read
/// and execute everywhere, write only in /tmp, the writable mounts and to
/// the /dev nodes. With egress, also the network: TCP connections to the
/// allowed ports only, no TCP listening, and no abstract unix sockets or
/// signals beyond the sandbox. Best effort: on kernels without Landlock
/// (or without its network rules) the mounts and namespaces alone hold,
/// and the server said so at start. What the kernel enforced here must be
/// what the server measured then ([`HelperSpec::landlock`]), or the
/// sandbox refuses to run.
fn restrict(spec: &HelperSpec) -> Result<(), String> {
    use landlock::{
        ABI, Access, AccessFs, AccessNet, NetPort, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope,
        path_beneath_rules,
    };
    let abi = ABI::V5;
    let writable: Vec<&Path> = std::iter::once(Path::new("/tmp"))
        .chain(
            spec.writable_mounts
                .iter()
                .map(|(_, inside)| inside.as_path()),
        )
        .collect();
    let mut ruleset = Ruleset::default().handle_access(AccessFs::from_all(abi));
    let egress_ports = match &spec.network {
        crate::Network::None => None,
        crate::Network::Egress { tcp_ports } => Some(tcp_ports.clone()),
    };
    if egress_ports.is_some() {
        ruleset = ruleset
            .and_then(|r| r.handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp))
            .and_then(|r| r.scope(Scope::AbstractUnixSocket | Scope::Signal));
    }
    let mut created = ruleset
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi))))
        .and_then(|r| r.add_rules(path_beneath_rules(&writable, AccessFs::from_all(abi))))
        .and_then(|r| {
            r.add_rules(path_beneath_rules(
                ["/dev"],
                AccessFs::from_read(abi) | AccessFs::WriteFile,
            ))
        })
        .map_err(|e| format!("landlock: {e}"))?;
    for port in egress_ports.unwrap_or_default() {
        created = created
            .add_rule(NetPort::new(port, AccessNet::ConnectTcp))
            .map_err(|e| format!("landlock: {e}"))?;
    }
    let status = created
        .restrict_self()
        .map_err(|e| format!("landlock: {e}"))?;
    let enforced = match status.ruleset {
        landlock::RulesetStatus::FullyEnforced => crate::Enforcement::FullyEnforced,
        landlock::RulesetStatus::PartiallyEnforced => crate::Enforcement::PartiallyEnforced,
        landlock::RulesetStatus::NotEnforced => crate::Enforcement::NotEnforced,
    };
    if enforced < spec.landlock {
        return Err(format!(
            "landlock: the kernel enforced the sandbox's rules {enforced}, less than the {} \
             measured when the server started; refusing to run",
            spec.landlock
        ));
    }
    Ok(())
}

/// Clears the inheritable set too (setuid leaves it).
fn clear_capabilities() -> Result<(), String> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads a valid header and two data structs that live
    // for the duration of the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    if rc < 0 {
        return Err(format!("capset: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}
