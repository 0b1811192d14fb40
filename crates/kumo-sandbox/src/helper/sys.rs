//! System calls that more than one of the sandbox's processes makes, each
//! with an error message that names it: `mnt` in the helper (building the
//! root, resizing `/tmp` on an attach) and in the init (`/proc` and its
//! masks), `bind_ro` in both as well, `set_parent_death_signal` in the
//! init and the runner. They keep no state.

use std::path::Path;

use nix::mount::{MsFlags, mount};

pub(super) fn set_parent_death_signal() -> Result<(), String> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } < 0 {
        return Err(format!(
            "prctl(PR_SET_PDEATHSIG): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

pub(super) fn mnt(
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
pub(super) fn bind_ro(source: &Path, target: &Path) -> Result<(), String> {
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
