//! Starts one confined process and hands back its private channel.
//!
//! This crate knows nothing of functions, runtimes or HTTP: it takes a
//! program, its arguments, its environment, the host paths it may read,
//! and its limits, and returns a running [`Process`] with
//!
//! - fd 3 in the child: a connected Unix stream socket (the channel), whose
//!   other end is [`Process::channel`];
//! - fd 1 and fd 2 in the child: pipes whose read ends are
//!   [`Process::stdout`] and [`Process::stderr`];
//! - fd 0: `/dev/null`.
//!
//! Two isolation modes:
//!
//! - [`Isolation::Namespaces`] (the default): a helper process (`kumo
//!   __sandbox`, see [`run_helper`]) builds fresh user, pid, mount, net,
//!   ipc, uts and cgroup namespaces, a read-only root of only the given
//!   paths, a size-capped `/tmp`, a minimal `/dev` and a masked `/proc`;
//!   the program runs as an unmapped-to-host uid with no capabilities,
//!   `no_new_privs`, a seccomp filter, rlimits, and a cgroup with memory,
//!   CPU and pids limits. See `docs/sandbox.md`.
//! - [`Isolation::Process`]: a plain child process with a cleared
//!   environment, its own session and rlimits. For development hosts
//!   without namespaces only; never a silent fallback.
//!
//! This is the only crate of Kumo allowed to use `unsafe`.
#![allow(unsafe_code)]

mod cgroup;
mod helper;
pub mod seccomp;

pub use helper::run_helper;

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The largest spec the host hands a helper (program, arguments,
/// environment, mounts).
const MAX_SPEC_BYTES: usize = 64 * 1024;

/// The descriptor number of the channel inside the child.
pub const CHANNEL_FD: i32 = 3;

/// How instances are confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Linux namespaces, cgroups, seccomp: the production mode.
    Namespaces,
    /// A plain child process: development hosts only.
    Process,
}

/// Host-wide sandbox settings.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub isolation: Isolation,
    /// The `kumo` binary, re-executed as `kumo __sandbox`.
    pub helper_exe: PathBuf,
    /// A private directory for the sandbox's mount points.
    pub work_dir: PathBuf,
    /// Tells this server's cgroups apart from other servers' on the host.
    pub scope: String,
}

/// What to start and under which limits.
#[derive(Debug, Clone)]
pub struct Spec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The complete environment; nothing of the caller's is inherited.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory (inside the sandbox in namespace mode).
    pub cwd: PathBuf,
    /// Host paths visible read-only inside: source → path inside.
    pub mounts: Vec<(PathBuf, PathBuf)>,
    /// Host directories the program may write, bound read-write: source →
    /// path inside. The helper gives each source directory (not what is
    /// in it) to the sandbox's host uid; [`reclaim`] takes what was
    /// written back afterwards.
    pub writable_mounts: Vec<(PathBuf, PathBuf)>,
    /// Paths inside left as empty directories, for [`Handle::attach`] to
    /// bind host directories onto once the program is running (how a
    /// pre-started process is given its files).
    pub pending_mounts: Vec<PathBuf>,
    /// What the program may reach over the network.
    pub network: Network,
    pub limits: Limits,
}

/// The network a sandbox sees.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Network {
    /// A network namespace of its own with only `lo`, down: nothing is
    /// reachable, not even the host's loopback (every function instance).
    #[default]
    None,
    /// The host's network, for work that must fetch from outside
    /// (dependency builds), narrowed by Landlock where the kernel has it
    /// (6.7+ for ports, 6.12+ for scopes): TCP connections only to these
    /// ports, no TCP listening, no abstract unix sockets or signals
    /// outside the sandbox.
    Egress { tcp_ports: Vec<u16> },
}

/// Per-instance resource limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `RLIMIT_NOFILE`.
    pub open_files: u64,
    /// `RLIMIT_FSIZE`: the largest file the process may write.
    pub file_size_bytes: u64,
    /// Memory, without swap.
    pub memory_bytes: u64,
    /// CPU, in thousandths of a core.
    pub cpu_millicores: u64,
    /// Processes and threads.
    pub pids: u64,
    /// Size of `/tmp`.
    pub tmp_bytes: u64,
}

/// Resource use of an instance so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_ns: u64,
    pub peak_memory_bytes: u64,
    pub oom_kills: u64,
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
    #[error("creating the instance's cgroup failed: {0}")]
    Cgroup(#[source] io::Error),
    #[error("passing the sandbox spec failed: {0}")]
    Spec(String),
    #[error("attaching files to a running sandbox failed: {0}")]
    Attach(String),
    #[error(
        "this host cannot run sandboxes: {0}; fix it, or start with --isolation process on a development machine"
    )]
    Unsupported(String),
}

/// Starts confined processes. One per server.
#[derive(Debug)]
pub struct Sandbox {
    config: SandboxConfig,
    cgroups: Option<cgroup::Manager>,
    symlinks: Vec<(PathBuf, PathBuf)>,
    counter: AtomicU64,
    landlock: LandlockSupport,
}

/// How much of what the sandbox asks of Landlock a kernel enforces.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Enforcement {
    /// Nothing: the kernel has no Landlock, or it is disabled.
    NotEnforced,
    /// Some of the rules: an older Landlock ABI.
    PartiallyEnforced,
    /// Every rule.
    FullyEnforced,
}

impl std::fmt::Display for Enforcement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Enforcement::NotEnforced => "not enforced",
            Enforcement::PartiallyEnforced => "partially enforced",
            Enforcement::FullyEnforced => "fully enforced",
        })
    }
}

/// What Landlock enforces on this kernel, measured once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LandlockSupport {
    /// The kernel's Landlock ABI version; 0 without Landlock.
    pub abi: i32,
    /// For [`Network::None`] sandboxes (functions): filesystem rules,
    /// device ioctls included, need ABI 5 (Linux 6.10).
    pub isolated: Enforcement,
    /// For [`Network::Egress`] sandboxes (dependency builds): also the
    /// TCP port rules (ABI 4) and the abstract-socket and signal scopes
    /// (ABI 6, Linux 6.12).
    pub egress: Enforcement,
}

/// The Landlock ABI the sandbox's rules are written for, for isolated
/// sandboxes and for sandboxes with egress.
const LANDLOCK_ABI_ISOLATED: i32 = 5;
const LANDLOCK_ABI_EGRESS: i32 = 6;

impl LandlockSupport {
    /// Asks the kernel for its Landlock ABI version.
    pub fn probe() -> LandlockSupport {
        const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
        // SAFETY: with a null attribute pointer, size 0 and the VERSION
        // flag, landlock_create_ruleset only returns the ABI version (or
        // fails); it reads no memory and creates no descriptor.
        let abi = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<libc::c_void>(),
                0usize,
                LANDLOCK_CREATE_RULESET_VERSION,
            )
        };
        let abi = i32::try_from(abi).unwrap_or(0).max(0);
        let level = |needed: i32| match abi {
            0 => Enforcement::NotEnforced,
            abi if abi < needed => Enforcement::PartiallyEnforced,
            _ => Enforcement::FullyEnforced,
        };
        LandlockSupport {
            abi,
            isolated: level(LANDLOCK_ABI_ISOLATED),
            egress: level(LANDLOCK_ABI_EGRESS),
        }
    }

    /// What a sandbox with `network` gets.
    pub fn for_network(&self, network: &Network) -> Enforcement {
        match network {
            Network::None => self.isolated,
            Network::Egress { .. } => self.egress,
        }
    }
}

impl Sandbox {
    /// Checks that the host can do what `config.isolation` needs, prepares
    /// the cgroups, and removes sandboxes a crashed server left behind.
    pub fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        if config.isolation == Isolation::Process {
            return Ok(Sandbox {
                config,
                cgroups: None,
                symlinks: Vec::new(),
                counter: AtomicU64::new(0),
                landlock: LandlockSupport {
                    abi: 0,
                    isolated: Enforcement::NotEnforced,
                    egress: Enforcement::NotEnforced,
                },
            });
        }
        check_kernel()?;
        std::fs::create_dir_all(config.work_dir.join("root")).map_err(|e| {
            SandboxError::Unsupported(format!("creating {}: {e}", config.work_dir.display()))
        })?;
        let cgroups = cgroup::Manager::detect(&config.scope)
            .map_err(|e| SandboxError::Unsupported(format!("cgroups: {e}")))?;
        // Merged-/usr hosts link /bin, /lib… into /usr; the sandbox
        // recreates those links so paths resolve the same inside.
        let symlinks = ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]
            .iter()
            .filter_map(|p| {
                let path = Path::new(p);
                let target = std::fs::read_link(path).ok()?;
                Some((path.to_path_buf(), target))
            })
            .collect();
        let landlock = LandlockSupport::probe();
        tracing::info!(
            cgroup_version = cgroups.version(),
            landlock_abi = landlock.abi,
            landlock_functions = %landlock.isolated,
            landlock_builds = %landlock.egress,
            "sandbox ready: namespaces, cgroups, seccomp"
        );
        if landlock.isolated != Enforcement::FullyEnforced {
            tracing::warn!(
                landlock_abi = landlock.abi,
                "LANDLOCK {}: this kernel (Landlock ABI {}) gives function sandboxes less than the \
                 ABI {LANDLOCK_ABI_ISOLATED} (Linux 6.10) they are written for; the read-only mounts \
                 still hold, but the second filesystem layer is weaker or absent",
                landlock.isolated.to_string().to_uppercase(),
                landlock.abi
            );
        }
        if landlock.egress != Enforcement::FullyEnforced {
            tracing::warn!(
                landlock_abi = landlock.abi,
                "LANDLOCK {} for dependency builds: this kernel (Landlock ABI {}) cannot limit their \
                 network to the index's ports (ABI 4, Linux 6.7) or keep them from abstract sockets \
                 and signals (ABI {LANDLOCK_ABI_EGRESS}, Linux 6.12); builds share the host's network",
                landlock.egress.to_string().to_uppercase(),
                landlock.abi
            );
        }
        Ok(Sandbox {
            config,
            cgroups: Some(cgroups),
            symlinks,
            counter: AtomicU64::new(0),
            landlock,
        })
    }

    pub fn isolation(&self) -> Isolation {
        self.config.isolation
    }

    /// What Landlock enforces in this server's sandboxes (measured at
    /// start; every sandbox checks that it got at least that).
    pub fn landlock(&self) -> LandlockSupport {
        self.landlock
    }

    /// Kills every instance still running and removes this server's
    /// cgroups. Called once, at the end of shutdown.
    pub fn shutdown(&self) {
        if let Some(cgroups) = &self.cgroups {
            cgroups.remove_all();
        }
    }

    /// Starts `spec` and returns the running process.
    pub fn spawn(&self, spec: &Spec) -> Result<Process, SandboxError> {
        let (host_end, child_end) = StdUnixStream::pair().map_err(SandboxError::Socketpair)?;
        let (stdout_read, stdout_write) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(SandboxError::Pipe)?;
        let (stderr_read, stderr_write) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(SandboxError::Pipe)?;

        let mut control = None;
        let (mut command, group, _channel_copy) = match (&self.cgroups, self.config.isolation) {
            (Some(cgroups), Isolation::Namespaces) => {
                let n = self.counter.fetch_add(1, Ordering::Relaxed);
                let id = format!("i{}-{n}", std::process::id());
                let group = cgroups
                    .create(&id, group_limits(&spec.limits))
                    .map_err(SandboxError::Cgroup)?;
                // The spec goes ahead of everything else on the channel; the
                // helper reads it from fd 0 before the runner exists. With
                // no code to run between fork and exec, the helper starts
                // through posix_spawn (vfork): no copy of the server's
                // page tables on the way to every cold start.
                // A pending mount is attached later by the helper, which
                // listens for it on a socket of its own, passed with the spec.
                let control_child = if spec.pending_mounts.is_empty() {
                    None
                } else {
                    let (host, child) = StdUnixStream::pair().map_err(SandboxError::Socketpair)?;
                    control = Some(host);
                    Some(child)
                };
                if let Err(e) = self.send_spec(&host_end, spec, n, &group, control_child) {
                    group.remove();
                    return Err(e);
                }
                let mut command = tokio::process::Command::new(&self.config.helper_exe);
                command
                    .arg("__sandbox")
                    .env_clear()
                    .stdin(Stdio::from(OwnedFd::from(child_end)));
                (command, Some(Arc::new(group)), None)
            }
            _ => {
                let channel_fd = high_fd(child_end.as_raw_fd())?;
                drop(child_end);
                let mut command = tokio::process::Command::new(&spec.program);
                command
                    .args(&spec.args)
                    .env_clear()
                    .envs(spec.env.iter().map(|(k, v)| (k, v)))
                    .current_dir(&spec.cwd)
                    .stdin(Stdio::null());
                let channel_raw = channel_fd.as_raw_fd();
                let limits = spec.limits;
                // SAFETY: the closure runs in the forked child before exec
                // and calls only async-signal-safe system calls (setsid,
                // dup2, setrlimit, close_range); it allocates nothing and
                // takes no lock. `channel_fd` outlives the spawn below.
                unsafe {
                    command.pre_exec(move || child_setup(channel_raw, limits));
                }
                // Kept open until the child has been spawned.
                (command, None, Some(channel_fd))
            }
        };
        command
            .stdout(Stdio::from(stdout_write))
            .stderr(Stdio::from(stderr_write))
            .kill_on_drop(true);
        let child = match command.spawn() {
            Ok(child) => child,
            Err(source) => {
                if let Some(group) = &group {
                    group.remove();
                }
                return Err(SandboxError::Spawn {
                    program: spec.program.display().to_string(),
                    source,
                });
            }
        };
        drop(command);
        // From here on, dropping the handle (on any error below) kills the
        // process and removes its cgroup.
        let control = match control {
            Some(stream) => {
                stream
                    .set_nonblocking(true)
                    .map_err(SandboxError::Register)?;
                Some(tokio::net::UnixStream::from_std(stream).map_err(SandboxError::Register)?)
            }
            None => None,
        };
        let handle = Handle {
            pid: child.id().unwrap_or_default(),
            child: Some(child),
            killed: false,
            group,
            control,
        };
        host_end
            .set_nonblocking(true)
            .map_err(SandboxError::Register)?;
        let channel = tokio::net::UnixStream::from_std(host_end).map_err(SandboxError::Register)?;
        Ok(Process {
            handle,
            channel,
            stdout: tokio::net::unix::pipe::Receiver::from_owned_fd(stdout_read)
                .map_err(SandboxError::Register)?,
            stderr: tokio::net::unix::pipe::Receiver::from_owned_fd(stderr_read)
                .map_err(SandboxError::Register)?,
        })
    }

    /// Writes the helper's spec as one frame (4-byte big-endian length,
    /// then JSON) on the channel; secrets never touch a command line.
    fn send_spec(
        &self,
        channel: &StdUnixStream,
        spec: &Spec,
        n: u64,
        group: &cgroup::Group,
        control: Option<StdUnixStream>,
    ) -> Result<(), SandboxError> {
        let helper_spec = helper::HelperSpec {
            program: spec.program.clone(),
            args: spec
                .args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            env: spec
                .env
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string_lossy().into_owned(),
                        v.to_string_lossy().into_owned(),
                    )
                })
                .collect(),
            cwd: spec.cwd.clone(),
            root_dir: self.config.work_dir.join("root"),
            mounts: spec.mounts.clone(),
            writable_mounts: spec.writable_mounts.clone(),
            network: spec.network.clone(),
            landlock: self.landlock.for_network(&spec.network),
            symlinks: self.symlinks.clone(),
            cgroup_procs: group.procs_paths(false),
            freezer_procs: group.freezer_procs(),
            server_pid: std::process::id(),
            tmp_bytes: spec.limits.tmp_bytes,
            // Host ids differ per instance, and per server on one host.
            id_base: 1_000_000
                + u32::try_from(((u64::from(std::process::id()) * 4096 + n) % 400_000) * 2)
                    .unwrap_or(0),
            open_files: spec.limits.open_files,
            file_size_bytes: spec.limits.file_size_bytes,
            pids: spec.limits.pids,
            pending_mounts: spec.pending_mounts.clone(),
        };
        let mut frame = vec![0u8; 4];
        serde_json::to_writer(&mut frame, &helper_spec)
            .map_err(|e| SandboxError::Spec(e.to_string()))?;
        let len = u32::try_from(frame.len() - 4)
            .map_err(|_| SandboxError::Spec("spec too large".into()))?;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        // Written before the helper runs, so it must fit the socket's
        // buffer (far above this) or the write would block.
        if frame.len() > MAX_SPEC_BYTES {
            return Err(SandboxError::Spec(format!(
                "the sandbox spec is {} bytes, over the {MAX_SPEC_BYTES}-byte limit (too large an environment?)",
                frame.len()
            )));
        }
        // The socket is still blocking and its buffer far larger than a
        // spec, so this completes at once. The control socket rides on the
        // first bytes.
        let mut sent = 0;
        if let Some(control) = &control {
            use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
            let fds = [control.as_raw_fd()];
            sent = sendmsg::<()>(
                channel.as_raw_fd(),
                &[io::IoSlice::new(&frame)],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::empty(),
                None,
            )
            .map_err(|e| SandboxError::Spec(e.to_string()))?;
        }
        (&*channel)
            .write_all(&frame[sent..])
            .map_err(|e| SandboxError::Spec(e.to_string()))
    }
}

/// Takes back what a sandbox wrote through a writable mount: every file
/// and directory under `dir` (and `dir` itself) becomes owned by this
/// process's user and loses its write bits, so that nothing of it can be
/// changed by whichever sandbox later gets the same host uid. Symbolic
/// links are changed themselves, never followed. Blocking.
pub fn reclaim(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.mode() & 0o7555 & !0o6000;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(())
}

/// The cgroup limits of an instance.
fn group_limits(limits: &Limits) -> cgroup::GroupLimits {
    cgroup::GroupLimits {
        memory_bytes: limits.memory_bytes,
        cpu_quota_us: (limits.cpu_millicores * 100).max(1000),
        // The helper and init count too.
        pids: limits.pids + 2,
    }
}

/// Checks for the kernel features namespace mode needs.
fn check_kernel() -> Result<(), SandboxError> {
    for ns in ["user", "pid", "mnt", "net", "ipc", "uts", "cgroup"] {
        if !Path::new("/proc/self/ns").join(ns).exists() {
            return Err(SandboxError::Unsupported(format!(
                "the kernel has no {ns} namespaces"
            )));
        }
    }
    let max_userns =
        std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max_userns.trim() == "0" {
        return Err(SandboxError::Unsupported(
            "user namespaces are disabled (user.max_user_namespaces = 0)".into(),
        ));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status.contains("Seccomp:") {
        return Err(SandboxError::Unsupported(
            "the kernel has no seccomp".into(),
        ));
    }
    Ok(())
}

/// A close-on-exec duplicate of `fd` numbered 10 or more, so that moving
/// it to 3 or 4 in the child never clobbers another.
fn high_fd(fd: i32) -> Result<OwnedFd, SandboxError> {
    use std::os::fd::BorrowedFd;
    // SAFETY: `fd` is open for the duration of this call (its owner is
    // alive in the caller).
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let dup = nix::fcntl::fcntl(borrowed, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))
        .map_err(|e| SandboxError::Spec(format!("dup: {e}")))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that we now own.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dup) })
}

/// Runs in the child between fork and exec (process mode only).
fn child_setup(channel_fd: i32, limits: Limits) -> io::Result<()> {
    // SAFETY: setsid has no memory-safety preconditions.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: dup2 between valid descriptor numbers; the copy at 3 has
    // FD_CLOEXEC cleared, which is what we want.
    if unsafe { libc::dup2(channel_fd, CHANNEL_FD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    set_rlimit(libc::RLIMIT_NOFILE, limits.open_files)?;
    set_rlimit(libc::RLIMIT_FSIZE, limits.file_size_bytes)?;
    set_rlimit(libc::RLIMIT_CORE, 0)?;
    close_above(CHANNEL_FD)
}

/// Marks every descriptor above `fd` close-on-exec, whoever opened it.
pub(crate) fn close_above(fd: i32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes descriptor flags in this process.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            (fd + 1) as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn set_rlimit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
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

/// Owns the process: killing it, waiting for it, reading its resource
/// use; kills it and removes its cgroup on drop.
#[derive(Debug)]
pub struct Handle {
    pid: u32,
    child: Option<tokio::process::Child>,
    killed: bool,
    group: Option<Arc<cgroup::Group>>,
    /// The helper's control socket, while a pending mount waits.
    control: Option<tokio::net::UnixStream>,
}

impl Handle {
    /// Binds host directories read-only at pending mount points of the
    /// spec (`source` → path inside; pending points not named stay empty)
    /// and applies `limits` (memory, CPU, pids, /tmp size; descriptor and
    /// file-size rlimits stay as started). Once per process; in process
    /// mode there is nothing to mount and the limits stay as started.
    pub async fn attach(
        &mut self,
        mounts: &[(PathBuf, PathBuf)],
        limits: &Limits,
    ) -> Result<(), SandboxError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if self.config_is_process() {
            return Ok(());
        }
        let mut control = self
            .control
            .take()
            .ok_or_else(|| SandboxError::Attach("no pending mount, or attached already".into()))?;
        let request = helper::Attach {
            mounts: mounts.to_vec(),
            tmp_bytes: limits.tmp_bytes,
        };
        let body = serde_json::to_vec(&request).map_err(|e| SandboxError::Attach(e.to_string()))?;
        let mut frame = u32::try_from(body.len())
            .map_err(|_| SandboxError::Attach("request too large".into()))?
            .to_be_bytes()
            .to_vec();
        frame.extend_from_slice(&body);
        let group = self.group.clone();
        let exchange = async {
            control.write_all(&frame).await?;
            // The limits go on while the helper mounts.
            if let Some(group) = &group {
                group
                    .apply(group_limits(limits))
                    .map_err(|e| io::Error::new(e.kind(), format!("applying the limits: {e}")))?;
            }
            let mut len = [0u8; 4];
            control.read_exact(&mut len).await?;
            let len = u32::from_be_bytes(len) as usize;
            if len > 64 * 1024 {
                return Err(io::Error::other("oversized reply"));
            }
            let mut body = vec![0u8; len];
            control.read_exact(&mut body).await?;
            serde_json::from_slice::<helper::AttachReply>(&body).map_err(io::Error::other)
        };
        let reply = exchange
            .await
            .map_err(|e| SandboxError::Attach(format!("attaching: {e}")))?;
        if let Some(error) = reply.error {
            return Err(SandboxError::Attach(error));
        }
        Ok(())
    }

    fn config_is_process(&self) -> bool {
        self.group.is_none()
    }

    /// The process id of the process (the helper, in namespace mode).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Kills every process of the instance at once. Idempotent.
    pub fn kill(&mut self) {
        if self.killed {
            return;
        }
        self.killed = true;
        if let Some(group) = &self.group {
            group.kill_all();
        }
        // Only while the process has not been reaped: afterwards its pid
        // (and process group id) may belong to someone else.
        let running = self
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if let Ok(pid) = i32::try_from(self.pid)
            && pid > 0
            && running
        {
            // The process leads its own group (setsid): this reaches what
            // it forked, too, in process mode.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        match &mut self.child {
            Some(child) => child.wait().await,
            None => Err(io::Error::other("process already released")),
        }
    }

    /// CPU time, peak memory and OOM kills so far (namespace mode only).
    pub fn usage(&self) -> Option<Usage> {
        let group = self.group.as_ref()?;
        Some(Usage {
            cpu_ns: group.cpu_ns(),
            peak_memory_bytes: group.peak_memory(),
            oom_kills: group.oom_kills(),
        })
    }

    /// Stops every process of the instance until [`Handle::thaw`]: an idle
    /// instance runs nothing (namespace mode only).
    pub fn freeze(&self) {
        if let Some(group) = &self.group
            && let Err(e) = group.set_frozen(true)
        {
            tracing::warn!(error = %e, "freezing an idle instance failed");
        }
    }

    /// Resumes a frozen instance.
    pub fn thaw(&self) {
        if let Some(group) = &self.group
            && let Err(e) = group.set_frozen(false)
        {
            tracing::warn!(error = %e, "thawing an instance failed");
        }
    }

    /// Starts a new peak-memory measurement.
    pub fn reset_peak_memory(&self) {
        if let Some(group) = &self.group {
            group.reset_peak();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.kill();
        let (Some(mut child), Some(group)) = (self.child.take(), self.group.take()) else {
            return;
        };
        // Remove the cgroup once its processes are gone.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = child.wait().await;
                for _ in 0..200 {
                    if group.is_empty() && group.remove() {
                        return;
                    }
                    group.kill_all();
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                tracing::warn!("an instance's cgroup could not be removed");
            });
        }
    }
}
