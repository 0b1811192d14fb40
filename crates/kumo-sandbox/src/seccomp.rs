//! The system-call filter every sandboxed process runs under.
//!
//! An allow-by-default filter with a deny list, kept as data ([`DENIED`],
//! one reason per entry) so that tests can hold the running sandbox to it
//! ([`policy`]). Refused calls fail with `EPERM`, except `clone3`, which
//! fails with `ENOSYS` so that the C library falls back to `clone`, whose
//! namespace flags the filter can inspect. `socket` and `socketpair` are
//! filtered by their first argument: only the families a function has a
//! use for are allowed ([`SOCKET_FAMILIES`]), anything else (`AF_VSOCK`,
//! `AF_PACKET`, `AF_BLUETOOTH`, …) fails with `EAFNOSUPPORT`, as if the
//! kernel had no such family. The filter checks the architecture; a call
//! from another ABI (32-bit `int 0x80`) kills the process, and every call
//! through the x32 ABI (bit 30 of the call number) fails with `EPERM`.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, sock_filter,
};

/// A system call the filter refuses whatever its arguments, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    /// The kernel's name for the call.
    pub name: &'static str,
    /// Its number for this architecture.
    pub nr: i64,
    /// Why no function needs it, or what it would give an attacker.
    pub why: &'static str,
}

const DEBUG: &str = "debugging or reading other processes' memory and descriptors";
const MOUNTS: &str = "changing the filesystem view or escaping it";
const HANDLES: &str = "opening files by handle bypasses path checks (the \"shocker\" escape)";
const NAMESPACES: &str = "new namespaces widen the kernel surface reachable from inside";
const KEYRING: &str = "the kernel keyring is shared host state";
const SURFACE: &str = "a large kernel attack surface no function needs";
const WATCH: &str = "watching shared read-only files (the runner, dependency layers) tells when other tenants' instances start; no runtime needs it";
const NUMA: &str =
    "memory placement is the host's business (Docker allows it only with CAP_SYS_NICE)";
const ADMIN: &str = "host administration";

/// Refused outright (`EPERM`), with the reason. Numbers the `libc` crate
/// has no constant for are the x86_64 ones (the only architecture Kumo
/// builds sandboxes on so far).
pub const DENIED: &[Denied] = &[
    d("ptrace", libc::SYS_ptrace, DEBUG),
    d("process_vm_readv", libc::SYS_process_vm_readv, DEBUG),
    d("process_vm_writev", libc::SYS_process_vm_writev, DEBUG),
    d("kcmp", libc::SYS_kcmp, DEBUG),
    d("pidfd_getfd", libc::SYS_pidfd_getfd, DEBUG),
    d("process_madvise", libc::SYS_process_madvise, DEBUG),
    d("mount", libc::SYS_mount, MOUNTS),
    d("umount2", libc::SYS_umount2, MOUNTS),
    d("pivot_root", libc::SYS_pivot_root, MOUNTS),
    d("chroot", libc::SYS_chroot, MOUNTS),
    d("open_tree", libc::SYS_open_tree, MOUNTS),
    d("open_tree_attr", 467, MOUNTS),
    d("move_mount", libc::SYS_move_mount, MOUNTS),
    d("fsopen", libc::SYS_fsopen, MOUNTS),
    d("fsconfig", libc::SYS_fsconfig, MOUNTS),
    d("fsmount", libc::SYS_fsmount, MOUNTS),
    d("fspick", libc::SYS_fspick, MOUNTS),
    d("mount_setattr", libc::SYS_mount_setattr, MOUNTS),
    d(
        "statmount",
        457,
        "lists mounts and their host paths beyond /proc's view",
    ),
    d(
        "listmount",
        458,
        "lists mounts and their host paths beyond /proc's view",
    ),
    d("open_by_handle_at", libc::SYS_open_by_handle_at, HANDLES),
    d("name_to_handle_at", libc::SYS_name_to_handle_at, HANDLES),
    d("unshare", libc::SYS_unshare, NAMESPACES),
    d("setns", libc::SYS_setns, NAMESPACES),
    d("keyctl", libc::SYS_keyctl, KEYRING),
    d("add_key", libc::SYS_add_key, KEYRING),
    d("request_key", libc::SYS_request_key, KEYRING),
    d("bpf", libc::SYS_bpf, SURFACE),
    d("perf_event_open", libc::SYS_perf_event_open, SURFACE),
    d("userfaultfd", libc::SYS_userfaultfd, SURFACE),
    d("io_uring_setup", libc::SYS_io_uring_setup, SURFACE),
    d("io_uring_enter", libc::SYS_io_uring_enter, SURFACE),
    d("io_uring_register", libc::SYS_io_uring_register, SURFACE),
    d("fanotify_init", libc::SYS_fanotify_init, WATCH),
    d("inotify_init", libc::SYS_inotify_init, WATCH),
    d("inotify_init1", libc::SYS_inotify_init1, WATCH),
    d("mbind", libc::SYS_mbind, NUMA),
    d("set_mempolicy", libc::SYS_set_mempolicy, NUMA),
    d("set_mempolicy_home_node", 450, NUMA),
    d("migrate_pages", libc::SYS_migrate_pages, NUMA),
    d("move_pages", libc::SYS_move_pages, NUMA),
    d("kexec_load", libc::SYS_kexec_load, ADMIN),
    d("kexec_file_load", libc::SYS_kexec_file_load, ADMIN),
    d("init_module", libc::SYS_init_module, ADMIN),
    d("finit_module", libc::SYS_finit_module, ADMIN),
    d("delete_module", libc::SYS_delete_module, ADMIN),
    d("reboot", libc::SYS_reboot, ADMIN),
    d("swapon", libc::SYS_swapon, ADMIN),
    d("swapoff", libc::SYS_swapoff, ADMIN),
    d("acct", libc::SYS_acct, ADMIN),
    d("quotactl", libc::SYS_quotactl, ADMIN),
    d("quotactl_fd", libc::SYS_quotactl_fd, ADMIN),
    d("syslog", libc::SYS_syslog, ADMIN),
    d("settimeofday", libc::SYS_settimeofday, ADMIN),
    d("clock_settime", libc::SYS_clock_settime, ADMIN),
    d("clock_adjtime", libc::SYS_clock_adjtime, ADMIN),
    d("adjtimex", libc::SYS_adjtimex, ADMIN),
    d("vhangup", libc::SYS_vhangup, ADMIN),
    d(
        "personality",
        libc::SYS_personality,
        "execution domains change how the kernel treats the process (READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE)",
    ),
    #[cfg(target_arch = "x86_64")]
    d("iopl", libc::SYS_iopl, ADMIN),
    #[cfg(target_arch = "x86_64")]
    d("ioperm", libc::SYS_ioperm, ADMIN),
    #[cfg(target_arch = "x86_64")]
    d("uselib", libc::SYS_uselib, SURFACE),
    #[cfg(target_arch = "x86_64")]
    d(
        "modify_ldt",
        libc::SYS_modify_ldt,
        "16-bit segments, a history of kernel bugs; no runtime uses them",
    ),
    d("lookup_dcookie", libc::SYS_lookup_dcookie, SURFACE),
];

const fn d(name: &'static str, nr: i64, why: &'static str) -> Denied {
    Denied { name, nr, why }
}

/// Fail with `ENOSYS` instead of `EPERM`: `clone3` passes its flags in
/// memory the filter cannot read, so the C library must fall back to
/// `clone`, whose flags it can.
pub const ENOSYS: &[Denied] = &[d(
    "clone3",
    libc::SYS_clone3,
    "its flags are in memory the filter cannot read; the C library falls back to clone",
)];

/// The socket families `socket` may create; `socketpair` takes only
/// `AF_UNIX`. `AF_NETLINK` is there because the C library's
/// `getaddrinfo` (`AI_ADDRCONFIG`), `if_nameindex` and `getifaddrs` ask
/// the kernel's routing tables through `NETLINK_ROUTE` (in the sandbox's
/// own network namespace: only `lo`), and only that netlink protocol is
/// allowed. Docker's default profile allows every family but `AF_VSOCK`;
/// this list is narrower.
pub const SOCKET_FAMILIES: &[(&str, i32)] = &[
    ("AF_UNIX", libc::AF_UNIX),
    ("AF_INET", libc::AF_INET),
    ("AF_INET6", libc::AF_INET6),
    ("AF_NETLINK", libc::AF_NETLINK),
];

/// The one netlink protocol `socket(AF_NETLINK, …)` may ask for.
pub const NETLINK_PROTOCOLS: &[(&str, i32)] = &[("NETLINK_ROUTE", libc::NETLINK_ROUTE)];

/// Calls the filter looks into: allowed or refused by their arguments.
pub const FILTERED_BY_ARGUMENTS: &[Denied] = &[
    d(
        "clone",
        libc::SYS_clone,
        "refused (EPERM) with any namespace flag",
    ),
    d(
        "socket",
        libc::SYS_socket,
        "refused (EAFNOSUPPORT) outside SOCKET_FAMILIES, and for netlink protocols other than NETLINK_ROUTE",
    ),
    d(
        "socketpair",
        libc::SYS_socketpair,
        "refused (EAFNOSUPPORT) for any family but AF_UNIX",
    ),
];

/// The whole policy, for tests and documentation: every call refused
/// outright, those refused with `ENOSYS`, and those filtered by their
/// arguments. Every call not named here is allowed.
pub fn policy() -> (&'static [Denied], &'static [Denied], &'static [Denied]) {
    (DENIED, ENOSYS, FILTERED_BY_ARGUMENTS)
}

/// Marks x32 system call numbers on x86_64.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Namespace flags `clone` may not carry.
const CLONE_NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
];

fn arch() -> Result<seccompiler::TargetArch, String> {
    std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("seccomp does not support this architecture: {e:?}"))
}

fn condition(
    arg: u8,
    len: SeccompCmpArgLen,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, len, op, value).map_err(|e| e.to_string())
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, String> {
    SeccompRule::new(conditions).map_err(|e| e.to_string())
}

fn compile(filter: SeccompFilter) -> Result<BpfProgram, String> {
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

/// The filters to install, in order: the deny list with `clone`'s flags
/// (EPERM), `clone3` (ENOSYS), the socket families (EAFNOSUPPORT) and,
/// on x86_64, the x32 ABI (EPERM).
pub(crate) fn build() -> Result<Vec<BpfProgram>, String> {
    let arch = arch()?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|d| (d.nr, Vec::new())).collect();
    let clone_rules = CLONE_NAMESPACE_FLAGS
        .iter()
        .map(|flag| {
            rule(vec![condition(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(*flag),
                *flag,
            )?])
        })
        .collect::<Result<Vec<_>, String>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    let clone3 = SeccompFilter::new(
        ENOSYS.iter().map(|d| (d.nr, Vec::new())).collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    Ok(vec![
        compile(deny)?,
        compile(clone3)?,
        compile(socket_filter(arch)?)?,
        #[cfg(target_arch = "x86_64")]
        x32_filter(),
    ])
}

/// `socket` outside [`SOCKET_FAMILIES`] (or netlink other than
/// [`NETLINK_PROTOCOLS`]) and `socketpair` outside `AF_UNIX` fail with
/// `EAFNOSUPPORT`. The family is an `int`: only its low 32 bits count,
/// as for the kernel.
fn socket_filter(arch: seccompiler::TargetArch) -> Result<SeccompFilter, String> {
    use SeccompCmpArgLen::Dword;
    let other_family = SOCKET_FAMILIES
        .iter()
        .map(|(_, family)| condition(0, Dword, SeccompCmpOp::Ne, *family as u64))
        .collect::<Result<Vec<_>, String>>()?;
    let mut other_netlink = vec![condition(
        0,
        Dword,
        SeccompCmpOp::Eq,
        libc::AF_NETLINK as u64,
    )?];
    for (_, protocol) in NETLINK_PROTOCOLS {
        other_netlink.push(condition(2, Dword, SeccompCmpOp::Ne, *protocol as u64)?);
    }
    let not_unix = vec![condition(0, Dword, SeccompCmpOp::Ne, libc::AF_UNIX as u64)?];
    SeccompFilter::new(
        BTreeMap::from([
            (
                libc::SYS_socket,
                vec![rule(other_family)?, rule(other_netlink)?],
            ),
            (libc::SYS_socketpair, vec![rule(not_unix)?]),
        ]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EAFNOSUPPORT as u32),
        arch,
    )
    .map_err(|e| e.to_string())
}

/// Every x32 call (bit 30 of the number set) fails with `EPERM`. The x32
/// ABI shares x86_64's architecture value and has calls of its own
/// (`ptrace` is 521 there), so a deny list by x86_64 number would miss
/// them on kernels built with x32 support; no runtime uses the ABI.
/// Calls from other architectures are left to the other filters, which
/// kill the process.
#[cfg(target_arch = "x86_64")]
fn x32_filter() -> BpfProgram {
    // BPF_LD | BPF_W | BPF_ABS, BPF_JMP | BPF_JSET | BPF_K, BPF_RET | BPF_K.
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JMP_JSET_K: u16 = 0x45;
    const BPF_RET_K: u16 = 0x06;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    let op = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        // The call number is the first field of struct seccomp_data.
        op(BPF_LD_W_ABS, 0, 0, 0),
        op(BPF_JMP_JSET_K, 0, 1, X32_SYSCALL_BIT),
        op(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | libc::EPERM as u32),
        op(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile() {
        let filters = build().expect("filters build");
        assert_eq!(
            filters.len(),
            if cfg!(target_arch = "x86_64") { 4 } else { 3 }
        );
        assert!(filters.iter().all(|f| !f.is_empty()));
    }

    #[test]
    fn the_policy_names_each_call_once() {
        let mut seen = std::collections::BTreeSet::new();
        for entry in DENIED.iter().chain(ENOSYS).chain(FILTERED_BY_ARGUMENTS) {
            assert!(seen.insert(entry.nr), "{} is listed twice", entry.name);
            assert!(!entry.why.is_empty(), "{} says why", entry.name);
        }
    }

    /// Forks a child that installs the filters and reports what each call
    /// returned: `(return value, errno)`.
    fn under_filter(calls: &[(i64, [u64; 3])]) -> Vec<(i64, i32)> {
        let filters = build().expect("filters build");
        let (read, write) = nix::unistd::pipe().expect("pipe");
        // SAFETY: the child only makes system calls and writes to a pipe
        // before _exit; it allocates nothing (the filters and calls were
        // built before the fork).
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                drop(read);
                // SAFETY: prctl with integer arguments only.
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                for filter in &filters {
                    if seccompiler::apply_filter(filter).is_err() {
                        // SAFETY: _exit in a forked child.
                        unsafe { libc::_exit(2) };
                    }
                }
                for (nr, args) in calls {
                    // SAFETY: the calls under test take integers only, or
                    // fail before reading memory.
                    let rc = unsafe { libc::syscall(*nr, args[0], args[1], args[2], 0, 0, 0) };
                    let errno = if rc < 0 {
                        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
                    } else {
                        0
                    };
                    if rc >= 0 && (*nr == libc::SYS_socket || *nr == libc::SYS_socketpair) {
                        // SAFETY: closing a descriptor this child just got.
                        unsafe { libc::close(rc as i32) };
                    }
                    let mut record = [0u8; 12];
                    record[..8].copy_from_slice(&rc.to_ne_bytes());
                    record[8..].copy_from_slice(&errno.to_ne_bytes());
                    let _ = nix::unistd::write(&write, &record);
                }
                // SAFETY: _exit in a forked child.
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(write);
                let mut out = Vec::new();
                let mut file = std::fs::File::from(read);
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut file, &mut bytes).expect("reading the results");
                for record in bytes.chunks_exact(12) {
                    let rc = i64::from_ne_bytes(record[..8].try_into().expect("8 bytes"));
                    let errno = i32::from_ne_bytes(record[8..].try_into().expect("4 bytes"));
                    out.push((rc, errno));
                }
                let status = nix::sys::wait::waitpid(child, None).expect("waitpid");
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
                out
            }
        }
    }

    #[test]
    fn socket_families_are_filtered() {
        let stream = libc::SOCK_STREAM as u64;
        let dgram = libc::SOCK_DGRAM as u64;
        let calls = [
            (libc::SYS_socket, [libc::AF_VSOCK as u64, stream, 0]),
            (libc::SYS_socket, [libc::AF_PACKET as u64, dgram, 0]),
            (libc::SYS_socket, [libc::AF_BLUETOOTH as u64, stream, 0]),
            // Only the low 32 bits of the family count.
            (
                libc::SYS_socket,
                [(1 << 32) | libc::AF_VSOCK as u64, stream, 0],
            ),
            (libc::SYS_socket, [libc::AF_NETLINK as u64, dgram, 9]),
            (libc::SYS_socketpair, [libc::AF_INET as u64, stream, 0]),
            (libc::SYS_socket, [libc::AF_UNIX as u64, stream, 0]),
            (libc::SYS_socket, [libc::AF_INET as u64, stream, 0]),
            (libc::SYS_socket, [libc::AF_INET6 as u64, dgram, 0]),
            (libc::SYS_socket, [libc::AF_NETLINK as u64, dgram, 0]),
            (
                libc::SYS_socket,
                [(1 << 32) | libc::AF_UNIX as u64, stream, 0],
            ),
        ];
        let results = under_filter(&calls);
        assert_eq!(results.len(), calls.len());
        for (i, (rc, errno)) in results.iter().enumerate() {
            if i < 6 {
                assert_eq!(
                    (*rc, *errno),
                    (-1, libc::EAFNOSUPPORT),
                    "call {i} {:?} is refused",
                    calls[i]
                );
            } else {
                assert!(
                    *rc >= 0,
                    "call {i} {:?} is allowed: errno {errno}",
                    calls[i]
                );
            }
        }
    }

    #[test]
    fn denied_calls_fail_with_eperm() {
        // Arguments that would make each call fail harmlessly if the
        // filter let it through (a bad descriptor or pointer).
        let mut calls: Vec<(i64, [u64; 3])> = DENIED
            .iter()
            .filter(|d| d.nr != libc::SYS_reboot && d.nr != libc::SYS_vhangup)
            .map(|d| (d.nr, [u64::MAX, 0, 0]))
            .collect();
        calls.push((libc::SYS_clone3, [0, 0, 0]));
        #[cfg(target_arch = "x86_64")]
        {
            // x32 getpid and x32 ptrace.
            calls.push((libc::SYS_getpid | X32_SYSCALL_BIT as i64, [0, 0, 0]));
            calls.push((521 | X32_SYSCALL_BIT as i64, [0, 0, 0]));
        }
        let results = under_filter(&calls);
        for ((nr, _), (rc, errno)) in calls.iter().zip(&results) {
            let expected = if *nr == libc::SYS_clone3 {
                libc::ENOSYS
            } else {
                libc::EPERM
            };
            assert_eq!((*rc, *errno), (-1, expected), "system call {nr}");
        }
    }
}
