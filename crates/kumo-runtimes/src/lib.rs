//! The runtimes Kumo can run, and the host side of the runner protocol.
//!
//! - [`protocol`]: frames and messages between the host and a runner
//!   (documented for other languages in `docs/runner-protocol.md`);
//! - [`python`]: the embedded Python runner, the syntax checker, and the
//!   choice of a fast interpreter.
//!
//! This crate does not start instances (the executor does, through the
//! sandbox) and knows nothing of HTTP or storage.

pub mod protocol;
pub mod python;

use std::path::{Path, PathBuf};

/// A runtime a function can be deployed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    Python,
}

impl Runtime {
    pub const ALL: &'static [Runtime] = &[Runtime::Python];

    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Python => "python",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "python" | "python3" => Some(Runtime::Python),
            _ => None,
        }
    }

    /// The entrypoint used when a deployment names none.
    pub fn default_entrypoint(self) -> &'static str {
        match self {
            Runtime::Python => "main.py",
        }
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
}

#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    #[error(
        "no usable Python interpreter found (tried {tried}); install python3 or pass --python PATH"
    )]
    NoPython { tried: String },
    #[error("the Python interpreter {path} is not usable: {why}")]
    BadPython { path: String, why: String },
    #[error("writing the runner sources to {path} failed: {source}")]
    Install {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Toolchain {
    /// Finds the interpreters and writes the embedded runners under `dir`.
    pub fn install(dir: &Path, python: Option<&Path>) -> Result<Self, ToolchainError> {
        let python = match python {
            Some(p) => python::check_interpreter(p)?,
            None => python::find_interpreter()?,
        };
        let runner_dir = dir.join("runners");
        python::write_sources(&runner_dir).map_err(|source| ToolchainError::Install {
            path: runner_dir.display().to_string(),
            source,
        })?;
        python::precompile(&python, &runner_dir);
        let python_paths = python::runtime_paths(&python);
        Ok(Toolchain {
            python,
            runner_dir,
            python_paths,
        })
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
                    self.python.clone(),
                    vec![
                        "-I".into(),
                        "-S".into(),
                        "-B".into(),
                        "-u".into(),
                        runner_dir.join(file).into_os_string(),
                    ],
                )
            }
        }
    }

    /// The program and arguments of the deploy-time checker of `runtime`
    /// over the files in `code_dir` (paths as the process sees them).
    pub fn checker_command(
        &self,
        runtime: Runtime,
        runner_dir: &Path,
        code_dir: &Path,
    ) -> (PathBuf, Vec<std::ffi::OsString>) {
        match runtime {
            Runtime::Python => (
                self.python.clone(),
                vec![
                    "-I".into(),
                    "-S".into(),
                    "-B".into(),
                    runner_dir.join(python::CHECK_FILE).into_os_string(),
                    code_dir.as_os_str().to_owned(),
                ],
            ),
        }
    }

    /// Host paths a runtime needs inside a sandbox.
    pub fn runtime_paths(&self, runtime: Runtime) -> &[PathBuf] {
        match runtime {
            Runtime::Python => &self.python_paths,
        }
    }
}
