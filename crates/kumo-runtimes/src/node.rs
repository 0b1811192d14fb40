//! The Node.js runtime: embedded runner and checker, and the `node` binary.

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The runner, started once per instance.
pub const RUNNER_SOURCE: &str = include_str!("../../../runners/node/kumo_runner.mjs");
/// The deploy-time syntax checker; parses, never executes.
pub const CHECK_SOURCE: &str = include_str!("../../../runners/node/kumo_check.mjs");

pub const RUNNER_FILE: &str = "kumo_runner.mjs";
pub const CHECK_FILE: &str = "kumo_check.mjs";

/// The oldest Node.js the runner supports.
const MIN_MAJOR: u32 = 18;

/// Binaries tried in order when none is configured.
const CANDIDATES: &[&str] = &["/usr/bin/node", "/usr/local/bin/node", "/usr/bin/nodejs"];

pub(crate) fn write_sources(dir: &Path) -> std::io::Result<()> {
    crate::write_files(
        dir,
        &[(RUNNER_FILE, RUNNER_SOURCE), (CHECK_FILE, CHECK_SOURCE)],
    )
}

/// The first usable `node`, if any: Node.js is optional on a host.
pub(crate) fn find() -> Option<PathBuf> {
    CANDIDATES.iter().find_map(|c| check(Path::new(c)).ok())
}

/// Accepts a real `node` binary of version 18 or newer.
pub(crate) fn check(path: &Path) -> Result<PathBuf, String> {
    let real = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !crate::is_elf(&real).map_err(|e| format!("{}: {e}", real.display()))? {
        return Err(format!(
            "{} is not a binary (a version manager's shim starts slowly); name the real node",
            real.display()
        ));
    }
    let out = std::process::Command::new(&real)
        .args(["-e", "process.stdout.write(process.versions.node)"])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", real.display()))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if !out.status.success() || major < MIN_MAJOR {
        return Err(format!(
            "{} is Node.js '{version}'; Kumo needs {MIN_MAJOR} or newer",
            real.display()
        ));
    }
    Ok(real)
}

/// The host paths `node` needs: itself and the libraries it loads.
pub(crate) fn runtime_paths(node: &Path) -> Vec<PathBuf> {
    let binaries = vec![node.to_path_buf()];
    let mut paths = crate::loader_files(&binaries);
    paths.insert(node.to_path_buf());
    for extra in ["/usr/share/zoneinfo"] {
        if Path::new(extra).is_dir() {
            paths.insert(PathBuf::from(extra));
        }
    }
    crate::outermost(paths)
}
