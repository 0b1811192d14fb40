//! The sandbox's root filesystem, built by the helper before it clones
//! the init.
//!
//! Runs in the helper process, as host root, in the private mount
//! namespace it `unshare`d for this: no host path has to be reachable by
//! the sandbox's ids, and the sandbox's own mount namespace starts as a
//! copy of this one. The first mount makes `/` private, recursively, so
//! nothing done here leaks back to the host. Read-only binds are not
//! recursive (see `bind_ro`), writable binds are only the spec's writable
//! mounts, `/tmp` is a size-capped tmpfs, and the root itself (a small
//! tmpfs holding the binds, `/etc` and the mount points) is remounted
//! read-only last. The init pivots into it (`init::enter_root`).

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::HelperSpec;
use super::sys::{bind_ro, mnt};

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
pub(super) fn build_root(spec: &HelperSpec) -> Result<(), String> {
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
