//! The runner's confinement, from the init's `fork` to `execve`.
//!
//! Runs in the runner process, a fork of the single-threaded init, so it
//! may run ordinary code before the exec. In this order: the parent-death
//! signal and the rlimits; the capability bounding set emptied while it
//! still may be; uid and gid 1000, the other capability sets cleared,
//! `no_new_privs`; then, right before the exec, Landlock and the seccomp
//! filter (built by the helper before the clone, so it is only installed
//! here). It never returns into the init's code: on failure the message
//! goes back to the init's fork branch, which prints it and `_exit`s with
//! 127 without running destructors.

use std::ffi::CString;
use std::fs;
use std::path::Path;

use nix::unistd::{Gid, Uid};

use super::sys::set_parent_death_signal;
use super::{HelperSpec, SANDBOX_UID};

/// Drops every privilege and execs the program. Returns only on failure.
pub(super) fn exec_runner(spec: &HelperSpec, filters: &[seccompiler::BpfProgram]) -> String {
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
