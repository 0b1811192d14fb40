//! Late mounts: the helper's side of [`Handle::attach`](crate::Handle::attach).
//!
//! Runs in the helper process, after it has released the init, on its
//! control socket (held only by the host and the helper; the init closes
//! its copy first). One [`Attach`] request is served, then the socket is
//! dropped: each named pending mount point (or a directory inside one
//! attached first) gets a read-only bind of a host directory, and `/tmp`
//! is resized. The binds are cloned where host paths are visible; then
//! the helper enters the sandbox's mount namespace, and from there on it
//! sees the sandbox's filesystem, not the host's: what the helper needs
//! from the host afterwards must be opened before an attach.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

use super::fdio::{move_high, read_exact, write_all};
use super::sys::mnt;
use super::{Attach, AttachReply};

/// What the helper needs to serve an [`Attach`] request.
pub(super) struct LateMount {
    pub(super) control: OwnedFd,
    /// The pending mount points, as seen inside.
    pub(super) targets: Vec<PathBuf>,
    /// The sandbox's mount namespace, entered for the attach.
    pub(super) namespace: OwnedFd,
}

/// Serves one request on the control socket. Returns whether to keep
/// listening: an attach happens once, and a closed socket is done.
pub(super) fn serve_control(late: &LateMount) -> bool {
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
pub(super) fn open_mount_namespace(child: Pid) -> Result<OwnedFd, String> {
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
