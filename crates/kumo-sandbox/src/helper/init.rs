//! Pid 1 of the sandbox.
//!
//! Runs in the init process: the helper's `clone` into the new user, pid,
//! mount, ipc, uts and cgroup namespaces (and net, unless the spec asks
//! for egress), on a stack of its own and with a copy of the helper's
//! memory (the spec, the seccomp filter ready-built), not an exec. It
//! closes the helper's own descriptors first and never uses them, and
//! waits for the helper to have written its id maps before it does
//! anything in the sandbox. It mounts `/proc` for the new pid namespace
//! with the revealing parts masked, pivots into the root the helper built,
//! is not dumpable, forks the runner and reaps until the runner exits;
//! its own exit takes everything left in the namespace with it. It stays
//! single-threaded: the fork of the runner counts on it, and so does the
//! runner's parent-death signal. Its result is an exit code, which the
//! helper passes on: a failure of its own is printed on stderr and
//! becomes 125.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, umount2};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork};

use super::HelperSpec;
use super::runner::exec_runner;
use super::sys::{bind_ro, mnt, set_parent_death_signal};

/// Pid 1 of the sandbox. Returns its exit code.
pub(super) fn init(
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
