//! The custom runtime: any program that speaks the runner protocol.
//!
//! A custom function's entrypoint is a command line. Its first word is
//! either a file of the deployment (a compiled binary, or a script with a
//! `#!` line naming one of the interpreters below) or the name of an
//! interpreter Kumo already runs (`python3`, `node`); the other words are
//! its arguments. The program gets the same descriptors, environment,
//! sandbox and limits as the embedded runners (`docs/runner-protocol.md`).
//!
//! A compiled program finds, inside the sandbox, the shared libraries
//! most programs link against (the C library and its loader, libm,
//! libgcc_s, libstdc++, zlib…), as on a minimal distroless image; one
//! that needs more should link statically.

use std::path::{Path, PathBuf};

/// The entrypoint when a custom deployment names none, as on Lambda.
pub const DEFAULT_ENTRYPOINT: &str = "bootstrap";

/// The most words an entrypoint command line may have.
const MAX_WORDS: usize = 64;
/// The longest entrypoint command line.
const MAX_LEN: usize = 4096;

/// Shared libraries mounted for compiled programs, when the host has them.
const BASE_LIBRARIES: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "librt.so.1",
    "libresolv.so.2",
    "libutil.so.1",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "libz.so.1",
];

/// What a custom entrypoint runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A file of the deployment, by its relative path.
    File(String),
    /// The Python interpreter Kumo uses.
    Python,
    /// The `node` binary Kumo uses.
    Node,
}

/// A parsed custom entrypoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub program: Program,
    pub args: Vec<String>,
}

/// Parses an entrypoint command line: words split on spaces, no quoting.
pub fn parse_command(entrypoint: &str) -> Result<Command, String> {
    if entrypoint.len() > MAX_LEN {
        return Err(format!(
            "the entrypoint command is longer than {MAX_LEN} bytes"
        ));
    }
    if entrypoint.chars().any(|c| c.is_control() && c != '\t') {
        return Err("the entrypoint command must not contain control characters".into());
    }
    let mut words = entrypoint.split_whitespace().map(str::to_string);
    let Some(first) = words.next() else {
        return Err("the entrypoint command is empty; name an executable of the deployment".into());
    };
    let args: Vec<String> = words.collect();
    if args.len() + 1 > MAX_WORDS {
        return Err(format!(
            "the entrypoint command has more than {MAX_WORDS} words"
        ));
    }
    let program = match first.as_str() {
        "python" | "python3" => Program::Python,
        "node" | "nodejs" => Program::Node,
        path => {
            let path = path.strip_prefix("./").unwrap_or(path);
            kumo_types::validate_relative_path(path).map_err(|e| {
                format!("the entrypoint's program must be a file of the deployment or python3 or node: {e}")
            })?;
            Program::File(path.to_string())
        }
    };
    Ok(Command { program, args })
}

/// The host paths a compiled program needs: the dynamic loader and the
/// base libraries, found where the C library of `reference` (a binary
/// the host runs, such as the Python interpreter) lives.
pub(crate) fn base_paths(reference: &Path) -> Vec<PathBuf> {
    let mut paths = crate::loader_files(&[reference.to_path_buf()]);
    let dirs: std::collections::BTreeSet<PathBuf> = paths
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "libc.so.6"))
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    for dir in dirs {
        for name in BASE_LIBRARIES {
            let candidate = dir.join(name);
            if candidate.exists() {
                paths.insert(candidate);
            }
        }
    }
    // The loader and libc are what every dynamically linked program
    // needs; anything else the reference loads is not wanted here.
    paths.retain(|p| {
        p.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            n.starts_with("ld-linux") || BASE_LIBRARIES.contains(&n.as_ref())
        })
    });
    for extra in ["/usr/share/zoneinfo", "/etc/ssl/certs"] {
        if Path::new(extra).is_dir() {
            paths.insert(PathBuf::from(extra));
        }
    }
    crate::outermost(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(
            parse_command("bootstrap").expect("ok"),
            Command {
                program: Program::File("bootstrap".into()),
                args: vec![]
            }
        );
        assert_eq!(
            parse_command("./bin/server --port  9").expect("ok"),
            Command {
                program: Program::File("bin/server".into()),
                args: vec!["--port".into(), "9".into()]
            }
        );
        assert_eq!(
            parse_command("node main.mjs").expect("ok").program,
            Program::Node
        );
        assert_eq!(
            parse_command("python3 -u main.py").expect("ok").program,
            Program::Python
        );
        assert!(parse_command("").is_err());
        assert!(parse_command("/bin/sh -c x").is_err());
        assert!(parse_command("../escape").is_err());
        assert!(parse_command("a\nb").is_err());
    }

    #[test]
    fn base_paths_hold_the_loader_and_libc() {
        let python = Path::new("/usr/bin/python3.11");
        if !python.exists() {
            return;
        }
        let paths = base_paths(python);
        let names: Vec<String> = paths
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n == "libc.so.6"), "{paths:?}");
        assert!(names.iter().any(|n| n.starts_with("ld-linux")), "{paths:?}");
        assert!(
            !names.iter().any(|n| n.starts_with("libpython")),
            "{paths:?}"
        );
    }
}
