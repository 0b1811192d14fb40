//! The Python runtime: embedded runner and checker, and a fast interpreter.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::ToolchainError;

/// The runner, started once per instance.
pub const RUNNER_SOURCE: &str = include_str!("../../../runners/python/kumo_runner.py");
/// Serves ASGI and WSGI apps; imported by the runner when it loads one.
pub const APPS_SOURCE: &str = include_str!("../../../runners/python/kumo_apps.py");
/// The deploy-time syntax checker; compiles, never executes.
pub const CHECK_SOURCE: &str = include_str!("../../../runners/python/kumo_check.py");

pub const RUNNER_FILE: &str = "kumo_runner.py";
pub const RUNNER_PYC: &str = "kumo_runner.pyc";
pub const CHECK_FILE: &str = "kumo_check.py";
pub const APPS_FILE: &str = "kumo_apps.py";
/// Where a sandbox mounts a Python deployment's dependency layer: an
/// empty directory of the runner directory (so nothing new appears at the
/// sandbox's root), on `sys.path` after the code.
pub const LAYER_DIR: &str = "/kumo/layer";
pub const APPS_PYC: &str = "kumo_apps.pyc";

/// Interpreters tried in order when none is configured. Versioned system
/// binaries first: a bare `python3` on PATH is often a slow shim.
const CANDIDATES: &[&str] = &[
    "/usr/bin/python3.13",
    "/usr/bin/python3.12",
    "/usr/bin/python3.11",
    "/usr/local/bin/python3.13",
    "/usr/local/bin/python3.12",
    "/usr/local/bin/python3.11",
    "/usr/bin/python3",
];

pub(crate) fn write_sources(dir: &Path) -> std::io::Result<()> {
    // The mount point of dependency layers (see LAYER_DIR).
    std::fs::create_dir_all(dir.join("layer"))?;
    crate::write_files(
        dir,
        &[
            (RUNNER_FILE, RUNNER_SOURCE),
            (CHECK_FILE, CHECK_SOURCE),
            (APPS_FILE, APPS_SOURCE),
        ],
    )
}

/// Compiles the runner and its app adapter to bytecode once, so no
/// instance has to.
pub(crate) fn precompile(interpreter: &Path, dir: &Path) {
    let pairs = [(RUNNER_FILE, RUNNER_PYC), (APPS_FILE, APPS_PYC)];
    let mut command = std::process::Command::new(interpreter);
    command.args([
        "-I",
        "-S",
        "-c",
        "import py_compile, sys\na = sys.argv[1:]\nfor i in range(0, len(a), 2): py_compile.compile(a[i], cfile=a[i + 1], doraise=True)",
    ]);
    for (source, target) in pairs {
        let _ = std::fs::remove_file(dir.join(target));
        command.arg(dir.join(source)).arg(dir.join(target));
    }
    let status = command
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        tracing::warn!(
            "could not precompile the Python runner; instances will compile it at start"
        );
        for (_, target) in pairs {
            let _ = std::fs::remove_file(dir.join(target));
        }
    }
}

/// The host paths the interpreter needs: itself, its standard library and
/// every directory its shared libraries (and those of its extension
/// modules) load from, as the dynamic loader sees them.
pub(crate) fn runtime_paths(interpreter: &Path) -> Vec<PathBuf> {
    let mut paths: std::collections::BTreeSet<PathBuf> = std::collections::BTreeSet::new();
    paths.insert(interpreter.to_path_buf());
    let out = std::process::Command::new(interpreter)
        .args([
            "-I",
            "-S",
            "-c",
            "import sys, sysconfig, os\nfor k in ('stdlib', 'platstdlib'): print(sysconfig.get_path(k))\nprint(os.path.join(sysconfig.get_path('platstdlib'), 'lib-dynload'))",
        ])
        .env_clear()
        .stdin(Stdio::null())
        .output();
    let mut binaries = vec![interpreter.to_path_buf()];
    if let Ok(out) = out {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let path = PathBuf::from(line.trim());
            let Ok(real) = std::fs::canonicalize(&path) else {
                continue;
            };
            if real.ends_with("lib-dynload")
                && let Ok(entries) = std::fs::read_dir(&real)
            {
                binaries.extend(
                    entries
                        .flatten()
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "so")),
                );
            }
            paths.insert(real);
        }
    }
    let files = crate::loader_files(&binaries);
    // Time zone data, for zoneinfo.
    for extra in ["/usr/share/zoneinfo"] {
        if Path::new(extra).is_dir() {
            paths.insert(PathBuf::from(extra));
        }
    }
    paths.extend(files);
    crate::outermost(paths)
}

pub(crate) fn find_interpreter() -> Result<PathBuf, ToolchainError> {
    for candidate in CANDIDATES {
        if let Ok(path) = check_interpreter(Path::new(candidate)) {
            return Ok(path);
        }
    }
    Err(ToolchainError::NoPython {
        tried: CANDIDATES.join(", "),
    })
}

/// Accepts a real ELF interpreter of Python ≥ 3.9; refuses scripts (shims).
pub(crate) fn check_interpreter(path: &Path) -> Result<PathBuf, ToolchainError> {
    let bad = |why: String| ToolchainError::BadPython {
        path: path.display().to_string(),
        why,
    };
    let real = std::fs::canonicalize(path).map_err(|e| bad(e.to_string()))?;
    if !crate::is_elf(&real).map_err(|e| bad(e.to_string()))? {
        return Err(bad(
            "not a binary (a shell shim such as pyenv's starts slowly); name the real interpreter"
                .into(),
        ));
    }
    let out = std::process::Command::new(&real)
        .args([
            "-I",
            "-S",
            "-c",
            "import sys; print(sys.version_info[0], sys.version_info[1])",
        ])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .map_err(|e| bad(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text
        .split_whitespace()
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if !out.status.success() || major != 3 || minor < 9 {
        return Err(bad(format!(
            "needs Python 3.9 or newer, found '{}'",
            text.trim()
        )));
    }
    Ok(real)
}
