//! The runtimes Kumo can run, and the host side of the runner protocol.
//!
//! - [`protocol`]: frames and messages between the host and a runner
//!   (documented for other languages in `docs/runner-protocol.md`);
//! - [`python`]: the embedded Python runner, the syntax checker, and the
//!   choice of a fast interpreter;
//! - [`node`]: the embedded Node.js runner and syntax checker;
//! - [`custom`]: programs of the deployment that speak the protocol;
//! - [`check`]: the answer of a deploy-time checker.
//!
//! This crate does not start instances (the executor does, through the
//! sandbox) and knows nothing of HTTP or storage.

pub mod check;
pub mod custom;
pub mod node;
pub mod protocol;
pub mod python;

use std::path::{Path, PathBuf};

/// A runtime a function can be deployed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    Python,
    Node,
    /// A program of the deployment that speaks the runner protocol.
    Custom,
}

impl Runtime {
    pub const ALL: &'static [Runtime] = &[Runtime::Python, Runtime::Node, Runtime::Custom];

    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Python => "python",
            Runtime::Node => "node",
            Runtime::Custom => "custom",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "python" | "python3" => Some(Runtime::Python),
            "node" | "nodejs" | "javascript" => Some(Runtime::Node),
            "custom" | "provided" => Some(Runtime::Custom),
            _ => None,
        }
    }

    /// The entrypoint used when a deployment names none.
    pub fn default_entrypoint(self) -> &'static str {
        match self {
            Runtime::Python => "main.py",
            Runtime::Node => "index.js",
            Runtime::Custom => custom::DEFAULT_ENTRYPOINT,
        }
    }

    /// Whether Kumo embeds this runtime's runner, so that its sandboxes
    /// can be started before any code is known (pre-warming).
    pub fn has_embedded_runner(self) -> bool {
        !matches!(self, Runtime::Custom)
    }
}

/// How to start each runtime's runner on this host.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// The Python interpreter (a real binary, never a shell shim).
    pub python: PathBuf,
    /// Where the runner sources were written.
    pub runner_dir: PathBuf,
    /// Host paths the Python runtime needs to run (interpreter, standard
    /// library, shared libraries), to be mounted read-only in sandboxes.
    pub python_paths: Vec<PathBuf>,
    /// The `node` binary, when the host has one (Node.js is optional).
    pub node: Option<PathBuf>,
    /// Host paths the Node.js runtime needs (the binary, its libraries).
    pub node_paths: Vec<PathBuf>,
    /// Host paths a compiled custom program needs (the C library, its
    /// loader and a few common libraries).
    pub base_paths: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    #[error(
        "no usable Python interpreter found (tried {tried}); install python3 or pass --python PATH"
    )]
    NoPython { tried: String },
    #[error("the Python interpreter {path} is not usable: {why}")]
    BadPython { path: String, why: String },
    #[error("the node binary is not usable: {0}")]
    BadNode(String),
    #[error("writing the runner sources to {path} failed: {source}")]
    Install {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Toolchain {
    /// Finds the interpreters and writes the embedded runners under `dir`.
    /// Python is required; Node.js is used when found (or named).
    pub fn install(
        dir: &Path,
        python: Option<&Path>,
        node: Option<&Path>,
    ) -> Result<Self, ToolchainError> {
        let python = match python {
            Some(p) => python::check_interpreter(p)?,
            None => python::find_interpreter()?,
        };
        let node = match node {
            Some(n) => Some(node::check(n).map_err(ToolchainError::BadNode)?),
            None => node::find(),
        };
        let runner_dir = dir.join("runners");
        python::write_sources(&runner_dir)
            .and_then(|()| node::write_sources(&runner_dir))
            .map_err(|source| ToolchainError::Install {
                path: runner_dir.display().to_string(),
                source,
            })?;
        python::precompile(&python, &runner_dir);
        // Compiled packages (manylinux wheels, native npm modules) may
        // link the base libraries (libgcc_s, libstdc++…) that the
        // interpreters themselves do not: every runtime gets them.
        let base_paths = custom::base_paths(&python);
        let with_base = |paths: Vec<PathBuf>| {
            outermost(
                paths
                    .into_iter()
                    .chain(base_paths.iter().cloned())
                    .collect(),
            )
        };
        let python_paths = with_base(python::runtime_paths(&python));
        let node_paths = match node.as_deref() {
            Some(node) => with_base(node::runtime_paths(node)),
            None => Vec::new(),
        };
        Ok(Toolchain {
            python,
            runner_dir,
            python_paths,
            node,
            node_paths,
            base_paths,
        })
    }

    /// Whether this host can run `runtime`.
    pub fn has(&self, runtime: Runtime) -> bool {
        match runtime {
            Runtime::Python | Runtime::Custom => true,
            Runtime::Node => self.node.is_some(),
        }
    }

    /// The binary that runs `runtime`'s runner and checker (for custom:
    /// nothing of Kumo's; see [`Toolchain::custom_command`]).
    fn binary(&self, runtime: Runtime) -> PathBuf {
        match runtime {
            Runtime::Python | Runtime::Custom => self.python.clone(),
            // Callers check `has` first; a missing node fails at exec.
            Runtime::Node => self
                .node
                .clone()
                .unwrap_or_else(|| PathBuf::from("/usr/bin/node")),
        }
    }

    /// The program, arguments and host paths of a custom entrypoint, with
    /// the deployment at `code_dir` (as the process sees it).
    pub fn custom_command(
        &self,
        command: &custom::Command,
        code_dir: &Path,
    ) -> Result<(PathBuf, Vec<std::ffi::OsString>, &[PathBuf]), String> {
        let args = command.args.iter().map(Into::into).collect();
        match &command.program {
            custom::Program::File(path) => Ok((code_dir.join(path), args, &self.base_paths)),
            custom::Program::Python => Ok((self.python.clone(), args, &self.python_paths)),
            custom::Program::Node => match &self.node {
                Some(node) => Ok((node.clone(), args, &self.node_paths)),
                None => Err("this server has no node binary (see --node)".into()),
            },
        }
    }

    /// The program and arguments that start the runner of `runtime`,
    /// with the runner sources found under `runner_dir` (the host path,
    /// or where a sandbox mounts it).
    pub fn runner_command(
        &self,
        runtime: Runtime,
        runner_dir: &Path,
    ) -> (PathBuf, Vec<std::ffi::OsString>) {
        match runtime {
            Runtime::Python => {
                // The precompiled runner saves a few milliseconds per start.
                let file = if self.runner_dir.join(python::RUNNER_PYC).exists() {
                    python::RUNNER_PYC
                } else {
                    python::RUNNER_FILE
                };
                (
                    self.binary(runtime),
                    vec![
                        "-I".into(),
                        "-S".into(),
                        "-B".into(),
                        "-u".into(),
                        runner_dir.join(file).into_os_string(),
                    ],
                )
            }
            Runtime::Node => (
                self.binary(runtime),
                vec![runner_dir.join(node::RUNNER_FILE).into_os_string()],
            ),
            // Never started this way: the executor builds a custom
            // program's command from its entrypoint.
            Runtime::Custom => (PathBuf::from("/nonexistent"), Vec::new()),
        }
    }

    /// The program and arguments of the deploy-time checker of `runtime`
    /// over the files in `code_dir` (paths as the process sees them);
    /// `None` for a runtime with no checker (custom programs).
    pub fn checker_command(
        &self,
        runtime: Runtime,
        runner_dir: &Path,
        code_dir: &Path,
    ) -> Option<(PathBuf, Vec<std::ffi::OsString>)> {
        Some(match runtime {
            Runtime::Custom => return None,
            Runtime::Python => (
                self.binary(runtime),
                vec![
                    "-I".into(),
                    "-S".into(),
                    "-B".into(),
                    runner_dir.join(python::CHECK_FILE).into_os_string(),
                    code_dir.as_os_str().to_owned(),
                ],
            ),
            // ES modules are parsed with vm.SourceTextModule, still behind
            // a flag in Node 20; the flag's warning is not wanted.
            Runtime::Node => (
                self.binary(runtime),
                vec![
                    "--experimental-vm-modules".into(),
                    "--no-warnings".into(),
                    runner_dir.join(node::CHECK_FILE).into_os_string(),
                    code_dir.as_os_str().to_owned(),
                ],
            ),
        })
    }

    /// Host paths a runtime needs inside a sandbox.
    pub fn runtime_paths(&self, runtime: Runtime) -> &[PathBuf] {
        match runtime {
            Runtime::Python => &self.python_paths,
            Runtime::Node => &self.node_paths,
            Runtime::Custom => &self.base_paths,
        }
    }
}

/// Writes embedded sources into `dir`, each atomically.
pub(crate) fn write_files(dir: &Path, files: &[(&str, &str)]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    for (name, source) in files {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(source.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(())
}

/// Every shared library the dynamic loader resolves for `binaries`, as a
/// file at the path the loader looks for it (the directory's real path
/// plus the name it asks for).
pub(crate) fn loader_files(binaries: &[PathBuf]) -> std::collections::BTreeSet<PathBuf> {
    let ldd = std::process::Command::new("ldd")
        .args(binaries)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output();
    let mut files = std::collections::BTreeSet::new();
    if let Ok(ldd) = ldd {
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            // `ldd a b` prints a `a:` header per file; those are not libraries.
            if line.trim_end().ends_with(':') {
                continue;
            }
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            let Some(path) = path.filter(|p| p.starts_with('/')).map(Path::new) else {
                continue;
            };
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            if let Ok(dir) = std::fs::canonicalize(dir) {
                files.insert(dir.join(name));
            }
        }
    }
    files
}

/// `paths` without those already under another one.
pub(crate) fn outermost(paths: std::collections::BTreeSet<PathBuf>) -> Vec<PathBuf> {
    let all: Vec<PathBuf> = paths.into_iter().collect();
    all.iter()
        .filter(|p| !all.iter().any(|q| q != *p && p.starts_with(q)))
        .cloned()
        .collect()
}

/// Whether `path` is a binary (ELF) rather than a script or shim.
pub(crate) fn is_elf(path: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut head = [0u8; 4];
    std::fs::File::open(path)?.read_exact(&mut head)?;
    Ok(head == *b"\x7fELF")
}
