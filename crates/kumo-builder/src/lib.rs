//! Dependency layers: a deployment's `requirements.txt` installed with
//! pip, or its `package.json` with npm, into a directory that every
//! deployment with the same dependencies shares, read-only.
//!
//! A layer is keyed by a hash of the normalized dependencies, the
//! runtime's and the package manager's versions, and where packages come
//! from; it is built once (concurrent requests for one key share the
//! build), kept under `layers/<key>/`, and evicted when nothing has used
//! it for long. Builds run in the sandbox like functions do, with the
//! network only when packages come from an index over it (TCP to the
//! index's ports, nothing else Landlock can refuse), and run no package
//! code: pip installs wheels only (`--only-binary :all:`) and npm skips
//! install scripts (`--ignore-scripts`).
//!
//! This crate knows nothing of HTTP, accounts or storage rows: it turns
//! dependencies into a directory, or into the package manager's own
//! error.

pub mod deps;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use kumo_runtimes::{Runtime, Toolchain};
use sha2::{Digest, Sha256};
use tokio::sync::{OnceCell, Semaphore};

pub use deps::{Deps, DepsError};

/// Output of a build kept for its log (the end, where errors are).
const LOG_BYTES: usize = 256 * 1024;
/// Builds running at once.
const PARALLEL_BUILDS: usize = 2;

/// Where Python packages come from.
#[derive(Debug, Clone, Default)]
pub struct PipSource {
    /// `--index-url`; pip's default (PyPI) when unset.
    pub index_url: Option<String>,
    /// A local directory of wheels (`--find-links`), mounted read-only.
    pub find_links: Option<PathBuf>,
    /// Only `find_links`, never an index (`--no-index`): no network.
    pub offline: bool,
}

/// Where npm packages come from.
#[derive(Debug, Clone, Default)]
pub struct NpmSource {
    /// `--registry`; npm's default when unset.
    pub registry: Option<String>,
    /// An npm cache directory filled beforehand (`npm cache add`),
    /// mounted read-only and installed from with `--offline`: no network.
    pub offline_cache: Option<PathBuf>,
}

/// Builder settings.
#[derive(Debug, Clone)]
pub struct BuilderConfig {
    pub sandbox: Arc<kumo_sandbox::Sandbox>,
    pub toolchain: Toolchain,
    /// Where layers live (`<data dir>/layers`).
    pub layers_dir: PathBuf,
    /// pip as a wheel file (`pip-*.whl`, which runs as it is); found on
    /// the host when unset.
    pub pip: Option<PathBuf>,
    pub pip_source: PipSource,
    /// npm's package directory (holding `bin/npm-cli.js`); found on the
    /// host when unset.
    pub npm: Option<PathBuf>,
    pub npm_source: NpmSource,
    /// How long one build may take.
    pub timeout: Duration,
    /// Memory of a build's sandbox (its /tmp counts against it too).
    pub memory_bytes: u64,
}

/// A built layer.
#[derive(Debug, Clone)]
pub struct Built {
    pub dir: PathBuf,
    /// What the package manager printed (its end, if long).
    pub log: String,
}

/// A build that did not produce a layer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{summary}")]
pub struct BuildError {
    /// The package manager's own error lines (or what went wrong).
    pub summary: String,
    pub log: String,
}

/// Builds and keeps layers. Cheap to clone.
#[derive(Clone)]
pub struct Builder {
    inner: Arc<Inner>,
}

struct Inner {
    config: BuilderConfig,
    pip: Option<Tool>,
    npm: Option<Tool>,
    python_version: String,
    node_version: String,
    /// Builds under way, by key: callers of one key share one build.
    building: Mutex<HashMap<String, Arc<BuildCell>>>,
    slots: Semaphore,
}

type BuildCell = OnceCell<Result<Built, BuildError>>;

/// A package manager found on the host: where it is, and its version.
#[derive(Debug, Clone)]
struct Tool {
    path: PathBuf,
    version: String,
}

impl Builder {
    /// Finds pip and npm, and the runtimes' versions (which key layers).
    pub fn new(config: BuilderConfig) -> std::io::Result<Builder> {
        std::fs::create_dir_all(&config.layers_dir)?;
        // Builds a stopped server left half done start again from scratch.
        for entry in std::fs::read_dir(&config.layers_dir)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".build-") {
                let _ = remove_tree(&entry.path());
            }
        }
        let pip = find_pip(config.pip.as_deref(), &config.toolchain.python);
        let npm = config
            .toolchain
            .node
            .as_ref()
            .and_then(|node| find_npm(config.npm.as_deref(), node));
        let python_version = version_of(&config.toolchain.python, &["-I", "-S", "-V"]);
        let node_version = config
            .toolchain
            .node
            .as_ref()
            .map(|node| version_of(node, &["--version"]))
            .unwrap_or_default();
        match &pip {
            Some(t) => {
                tracing::info!(pip = %t.path.display(), version = %t.version, "python dependencies: pip")
            }
            None => tracing::info!("no pip found: python dependencies are off (see --pip)"),
        }
        if let Some(t) = &npm {
            tracing::info!(npm = %t.path.display(), version = %t.version, "node dependencies: npm");
        }
        Ok(Builder {
            inner: Arc::new(Inner {
                config,
                pip,
                npm,
                python_version,
                node_version,
                building: Mutex::new(HashMap::new()),
                slots: Semaphore::new(PARALLEL_BUILDS),
            }),
        })
    }

    /// Whether this host can install dependencies of `runtime`; if not,
    /// what to do about it.
    pub fn can_build(&self, runtime: Runtime) -> Result<(), String> {
        match runtime {
            Runtime::Python if self.inner.pip.is_none() => Err(
                "this server cannot install Python dependencies: it found no pip (install Debian's python3-pip-whl, or start the server with --pip PATH)".into(),
            ),
            Runtime::Node if self.inner.npm.is_none() => Err(
                "this server cannot install Node.js dependencies: it found no npm (install npm, or start the server with --npm PATH)".into(),
            ),
            Runtime::Custom => Err("custom runtimes bring their own dependencies".into()),
            _ => Ok(()),
        }
    }

    /// The key of the layer for `deps`.
    pub fn key(&self, deps: &Deps) -> String {
        let inner = &self.inner;
        let mut hasher = Sha256::new();
        let (runtime_version, tool, source) = match deps.runtime {
            Runtime::Node => (
                inner.node_version.clone(),
                inner.npm.as_ref().map(|t| t.version.clone()),
                format!(
                    "{:?}|{:?}",
                    inner.config.npm_source.registry, inner.config.npm_source.offline_cache
                ),
            ),
            Runtime::Python | Runtime::Custom => (
                inner.python_version.clone(),
                inner.pip.as_ref().map(|t| t.version.clone()),
                format!(
                    "{:?}|{:?}|{}",
                    inner.config.pip_source.index_url,
                    inner.config.pip_source.find_links,
                    inner.config.pip_source.offline
                ),
            ),
        };
        for part in [
            "kumo-layer-1",
            deps.runtime.as_str(),
            &runtime_version,
            tool.as_deref().unwrap_or(""),
            &source,
            &deps.normalized,
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        hex::encode(&hasher.finalize()[..16])
    }

    /// The layer's directory, if it has been built (and marks it used).
    pub fn ready(&self, key: &str) -> Option<PathBuf> {
        let dir = self.layer_dir(key)?;
        if !dir.is_dir() {
            return None;
        }
        self.touch(key);
        Some(dir)
    }

    fn layer_dir(&self, key: &str) -> Option<PathBuf> {
        // Keys are ours (hex), but they come back from storage.
        (!key.is_empty() && key.len() <= 64 && key.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| self.inner.config.layers_dir.join(key))
    }

    /// Notes that a layer is in use (its eviction clock restarts).
    pub fn touch(&self, key: &str) {
        if let Some(dir) = self.layer_dir(key) {
            let mark = dir.with_extension("used");
            let _ = std::fs::write(&mark, b"");
        }
    }

    /// Builds the layer `key` for `deps`, or waits for the build already
    /// under way; a layer already built is returned at once.
    pub async fn build(&self, key: &str, deps: &Deps) -> Result<Built, BuildError> {
        if let Some(dir) = self.ready(key) {
            return Ok(Built {
                dir,
                log: format!("layer {key} was already built; reused\n"),
            });
        }
        let cell = {
            let mut building = self.inner.building.lock().expect("builds lock poisoned");
            building.entry(key.to_string()).or_default().clone()
        };
        let result = cell
            .clone()
            .get_or_init(|| async {
                let _slot = self.inner.slots.acquire().await;
                // Finished while this call waited for its turn?
                if let Some(dir) = self.ready(key) {
                    return Ok(Built {
                        dir,
                        log: format!("layer {key} was already built; reused\n"),
                    });
                }
                self.run_build(key, deps).await
            })
            .await
            .clone();
        // Only the entry this call shared: a later build of the key (after
        // a failure) may have one of its own by now.
        let mut building = self.inner.building.lock().expect("builds lock poisoned");
        if building.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            building.remove(key);
        }
        result
    }

    async fn run_build(&self, key: &str, deps: &Deps) -> Result<Built, BuildError> {
        let Some(final_dir) = self.layer_dir(key) else {
            return Err(plain_error(format!("invalid layer key '{key}'")));
        };
        let config = &self.inner.config;
        static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let work = config
            .layers_dir
            .join(format!(".build-{key}-{}-{n}", std::process::id()));
        let _ = remove_tree(&work);
        let out = work.join("out");
        let input = work.join("in");
        let prepared = std::fs::create_dir_all(&out)
            .and_then(|()| std::fs::create_dir_all(&input))
            .and_then(|()| {
                let name = match deps.runtime {
                    Runtime::Node => out.join("package.json"),
                    Runtime::Python | Runtime::Custom => input.join("requirements.txt"),
                };
                std::fs::write(name, deps.manifest())
            });
        if let Err(e) = prepared {
            let _ = remove_tree(&work);
            return Err(plain_error(format!("preparing the build: {e}")));
        }
        let started = std::time::Instant::now();
        let result = match self.spec(deps, &work, &input, &out) {
            Ok(spec) => run(&config.sandbox, &spec, config.timeout).await,
            Err(e) => Err(plain_error(e)),
        };
        let result = result.and_then(|log| {
            kumo_sandbox::reclaim(&out)
                .and_then(|()| {
                    if deps.runtime == Runtime::Node {
                        // The package files npm wrote are not the layer.
                        let _ = std::fs::remove_file(out.join("package.json"));
                        let _ = std::fs::remove_file(out.join("package-lock.json"));
                    }
                    std::fs::rename(&out, &final_dir)
                })
                .map(|()| log)
                .map_err(|e| plain_error(format!("keeping the built layer: {e}")))
        });
        let _ = remove_tree(&work);
        match result {
            Ok(log) => {
                self.touch(key);
                tracing::info!(
                    key,
                    runtime = deps.runtime.as_str(),
                    secs = started.elapsed().as_secs_f64(),
                    "layer built"
                );
                Ok(Built {
                    dir: final_dir,
                    log,
                })
            }
            Err(e) => {
                tracing::info!(key, runtime = deps.runtime.as_str(), error = %e.summary, "layer build failed");
                Err(e)
            }
        }
    }

    /// The sandbox that runs the package manager. Paths are the sandbox's
    /// own (`/out`, `/in`…) in namespace mode, the host's in process mode
    /// (development machines), where nothing is mounted.
    fn spec(
        &self,
        deps: &Deps,
        work: &Path,
        input: &Path,
        out: &Path,
    ) -> Result<kumo_sandbox::Spec, String> {
        let inner = &self.inner;
        let config = &inner.config;
        let isolated = config.sandbox.isolation() == kumo_sandbox::Isolation::Namespaces;
        // Where a host path is seen by the package manager.
        let at = |inside: &str, host: &Path| -> PathBuf {
            if isolated {
                PathBuf::from(inside)
            } else {
                host.to_path_buf()
            }
        };
        let tmp = if isolated {
            PathBuf::from("/tmp")
        } else {
            work.join("tmp")
        };
        if !isolated {
            std::fs::create_dir_all(&tmp)
                .map_err(|e| format!("creating {}: {e}", tmp.display()))?;
        }
        let tmp_str = tmp.to_string_lossy().into_owned();
        let mut env: Vec<(std::ffi::OsString, std::ffi::OsString)> = vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("HOME".into(), tmp_str.clone().into()),
            ("TMPDIR".into(), tmp_str.clone().into()),
        ];
        let out_at = at("/out", out);
        let mut mounts: Vec<(PathBuf, PathBuf)> = Vec::new();
        let mut writable_mounts = vec![(out.to_path_buf(), PathBuf::from("/out"))];
        let mut tcp_ports = vec![443, 80];
        let online;
        let (program, args, runtime) = match deps.runtime {
            Runtime::Python | Runtime::Custom => {
                let pip = inner.pip.as_ref().ok_or("no pip")?;
                let name = pip.path.file_name().ok_or("no pip file name")?;
                let inside = Path::new("/pip").join(name);
                mounts.push((pip.path.clone(), inside.clone()));
                mounts.push((input.to_path_buf(), PathBuf::from("/in")));
                let wheel = if isolated { inside } else { pip.path.clone() };
                // A wheel runs as it is: `python pip.whl/pip`.
                let mut args: Vec<std::ffi::OsString> =
                    vec!["-I".into(), "-S".into(), wheel.join("pip").into()];
                args.extend(
                    [
                        "install",
                        "--no-input",
                        "--disable-pip-version-check",
                        "--no-cache-dir",
                        "--no-warn-script-location",
                        "--progress-bar",
                        "off",
                        "--only-binary",
                        ":all:",
                        "--target",
                    ]
                    .map(std::ffi::OsString::from),
                );
                args.push(out_at.clone().into());
                args.push("--requirement".into());
                args.push(at("/in", input).join("requirements.txt").into());
                let source = &config.pip_source;
                if let Some(links) = &source.find_links {
                    mounts.push((links.clone(), PathBuf::from("/wheels")));
                    args.extend(["--find-links".into(), at("/wheels", links).into()]);
                }
                if source.offline {
                    args.push("--no-index".into());
                } else if let Some(url) = &source.index_url {
                    tcp_ports.extend(port_of(url));
                    args.extend(["--index-url".into(), url.into()]);
                }
                online = !source.offline;
                (config.toolchain.python.clone(), args, Runtime::Python)
            }
            Runtime::Node => {
                let npm = inner.npm.as_ref().ok_or("no npm")?;
                let node = config.toolchain.node.clone().ok_or("no node")?;
                mounts.push((npm.path.clone(), PathBuf::from("/npm")));
                let mut args: Vec<std::ffi::OsString> =
                    vec![at("/npm", &npm.path).join("bin/npm-cli.js").into()];
                args.extend(
                    [
                        "install",
                        "--omit=dev",
                        "--ignore-scripts",
                        "--no-audit",
                        "--no-fund",
                        "--no-update-notifier",
                        "--no-package-lock",
                        "--loglevel=warn",
                    ]
                    .map(std::ffi::OsString::from),
                );
                args.push(format!("--logs-dir={tmp_str}/npm-logs").into());
                let source = &config.npm_source;
                match &source.offline_cache {
                    Some(cache) => {
                        // npm writes to its cache even offline: each build
                        // gets a copy.
                        let copy = work.join("npm-cache");
                        copy_tree(cache, &copy).map_err(|e| {
                            format!("copying the npm cache {}: {e}", cache.display())
                        })?;
                        args.push(format!("--cache={}", at("/npm-cache", &copy).display()).into());
                        writable_mounts.push((copy, PathBuf::from("/npm-cache")));
                        args.push("--offline".into());
                        online = false;
                    }
                    None => {
                        args.push(format!("--cache={tmp_str}/npm-cache").into());
                        online = true;
                    }
                }
                if let Some(url) = &source.registry {
                    tcp_ports.extend(port_of(url));
                    args.push(format!("--registry={url}").into());
                }
                env.push(("npm_config_update_notifier".into(), "false".into()));
                (node, args, Runtime::Node)
            }
        };
        mounts.extend(
            config
                .toolchain
                .runtime_paths(runtime)
                .iter()
                .map(|p| (p.clone(), p.clone())),
        );
        tcp_ports.sort_unstable();
        tcp_ports.dedup();
        Ok(kumo_sandbox::Spec {
            program,
            args,
            env,
            cwd: out_at,
            mounts,
            writable_mounts,
            pending_mounts: Vec::new(),
            network: if online {
                kumo_sandbox::Network::Egress { tcp_ports }
            } else {
                kumo_sandbox::Network::None
            },
            limits: kumo_sandbox::Limits {
                open_files: 4096,
                file_size_bytes: 2 * 1024 * 1024 * 1024,
                memory_bytes: config.memory_bytes,
                cpu_millicores: 2000,
                pids: 256,
                tmp_bytes: config.memory_bytes / 2,
            },
        })
    }

    /// Removes layers that no key in `keep` names and that have not been
    /// used for `unused_for`; returns the keys removed.
    pub fn evict(
        &self,
        keep: &std::collections::HashSet<String>,
        unused_for: Duration,
    ) -> Vec<String> {
        let dir = &self.inner.config.layers_dir;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let now = SystemTime::now();
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(key) = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if key.starts_with('.') || key.contains('.') || !path.is_dir() || keep.contains(&key) {
                continue;
            }
            if self
                .inner
                .building
                .lock()
                .expect("builds lock poisoned")
                .contains_key(&key)
            {
                continue;
            }
            let used = std::fs::metadata(path.with_extension("used"))
                .and_then(|m| m.modified())
                .or_else(|_| entry.metadata().and_then(|m| m.modified()))
                .unwrap_or(now);
            if now.duration_since(used).unwrap_or_default() < unused_for {
                continue;
            }
            if remove_tree(&path).is_ok() {
                let _ = std::fs::remove_file(path.with_extension("used"));
                removed.push(key);
            }
        }
        removed
    }
}

fn plain_error(summary: String) -> BuildError {
    BuildError {
        log: format!("{summary}\n"),
        summary,
    }
}

/// Runs a build's sandbox to its end: its log, or its error lines.
async fn run(
    sandbox: &kumo_sandbox::Sandbox,
    spec: &kumo_sandbox::Spec,
    timeout: Duration,
) -> Result<String, BuildError> {
    let mut process = sandbox
        .spawn(spec)
        .map_err(|e| plain_error(format!("could not start the build: {e}")))?;
    drop(process.channel);
    let mut out = Vec::new();
    let mut err = Vec::new();
    let read = async {
        let (a, b) = tokio::join!(
            read_tail(&mut process.stdout, &mut out),
            read_tail(&mut process.stderr, &mut err)
        );
        a.and(b)
    };
    let finished = tokio::time::timeout(timeout, async {
        read.await?;
        process.handle.wait().await
    })
    .await;
    let oom = process.handle.usage().is_some_and(|u| u.oom_kills > 0);
    let mut log = String::from_utf8_lossy(&out).into_owned();
    log.push_str(&String::from_utf8_lossy(&err));
    let status = match finished {
        Err(_) => {
            process.handle.kill();
            return Err(BuildError {
                summary: format!("the build did not finish within {} s", timeout.as_secs()),
                log,
            });
        }
        Ok(Err(e)) => return Err(plain_error(format!("reading the build's output: {e}"))),
        Ok(Ok(status)) => status,
    };
    if status.success() {
        return Ok(log);
    }
    let summary = if oom {
        "the build ran out of memory".to_string()
    } else {
        error_lines(&log).unwrap_or_else(|| {
            format!(
                "the package manager failed (exit code {})",
                status.code().unwrap_or(-1)
            )
        })
    };
    Err(BuildError { summary, log })
}

/// Reads a pipe to its end, keeping the last [`LOG_BYTES`].
async fn read_tail(
    pipe: &mut tokio::net::unix::pipe::Receiver,
    into: &mut Vec<u8>,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = pipe.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        into.extend_from_slice(&buf[..n]);
        if into.len() > 2 * LOG_BYTES {
            let cut = into.len() - LOG_BYTES;
            into.drain(..cut);
        }
    }
}

/// The package manager's own error lines: pip's `ERROR: …`, npm's
/// `npm error …` (`npm ERR! …` before npm 10).
fn error_lines(log: &str) -> Option<String> {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim_end)
        .filter(|l| {
            ["ERROR:", "npm error", "npm ERR!"].iter().any(|p| {
                l.strip_prefix(p)
                    .is_some_and(|rest| !rest.trim().is_empty())
            })
        })
        .take(20)
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

fn port_of(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let host = rest.split('/').next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    match host.rsplit_once(':') {
        Some((_, port)) if !port.contains(']') => port.parse().ok(),
        _ if url.starts_with("http://") => Some(80),
        _ => Some(443),
    }
}

/// Copies a directory tree (regular files and directories only), open to
/// writes by anyone: the copy is a build's own, inside the data
/// directory (which only its owner can enter), and the sandbox's uid
/// must be able to change it.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o777))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o666))?;
        }
    }
    Ok(())
}

fn remove_tree(path: &Path) -> std::io::Result<()> {
    // A reclaimed tree has no write bits; give them back to remove it.
    fn writable(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::symlink_metadata(path)
            && meta.is_dir()
        {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
            if let Ok(entries) = std::fs::read_dir(path) {
                for entry in entries.flatten() {
                    writable(&entry.path());
                }
            }
        }
    }
    if !path.exists() {
        return Ok(());
    }
    writable(path);
    std::fs::remove_dir_all(path)
}

/// pip: the path given, else a pip wheel on the host: Debian's
/// `/usr/share/python-wheels`, or the interpreter's own `ensurepip`.
fn find_pip(given: Option<&Path>, python: &Path) -> Option<Tool> {
    let tool = |path: PathBuf| {
        let name = path.file_name()?.to_string_lossy().into_owned();
        let version = name
            .strip_prefix("pip-")
            .and_then(|v| v.split('-').next())
            .unwrap_or(&name)
            .to_string();
        Some(Tool { path, version })
    };
    if let Some(path) = given {
        return tool(std::fs::canonicalize(path).ok().filter(|p| p.is_file())?);
    }
    let mut dirs = vec![PathBuf::from("/usr/share/python-wheels")];
    let stdlib = std::process::Command::new(python)
        .args([
            "-I",
            "-S",
            "-c",
            "import sysconfig; print(sysconfig.get_path('stdlib'))",
        ])
        .env_clear()
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(stdlib) = stdlib.filter(|s| !s.is_empty()) {
        dirs.push(Path::new(&stdlib).join("ensurepip/_bundled"));
    }
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut wheels: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("pip-") && n.ends_with(".whl"))
            })
            .collect();
        wheels.sort();
        if let Some(wheel) = wheels.pop() {
            return tool(wheel);
        }
    }
    None
}

/// npm: the path given, else the npm package next to `node`.
fn find_npm(given: Option<&Path>, node: &Path) -> Option<Tool> {
    let mut candidates: Vec<PathBuf> = given.map(Path::to_path_buf).into_iter().collect();
    if given.is_none() {
        if let Some(prefix) = node.parent().and_then(Path::parent) {
            candidates.push(prefix.join("lib/node_modules/npm"));
        }
        candidates.push(PathBuf::from("/usr/lib/node_modules/npm"));
        candidates.push(PathBuf::from("/usr/local/lib/node_modules/npm"));
        candidates.push(PathBuf::from("/usr/share/nodejs/npm"));
    }
    candidates.into_iter().find_map(|dir| {
        let dir = std::fs::canonicalize(dir).ok()?;
        if !dir.join("bin/npm-cli.js").is_file() {
            return None;
        }
        let version = std::fs::read_to_string(dir.join("package.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|v| v["version"].as_str().map(str::to_string))
            .unwrap_or_default();
        Some(Tool { path: dir, version })
    })
}

fn version_of(binary: &Path, args: &[&str]) -> String {
    std::process::Command::new(binary)
        .args(args)
        .env_clear()
        .output()
        .map(|o| {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            text.trim().to_string()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_are_the_package_managers() {
        let pip = "Looking in links: /wheels\nERROR: Could not find a version that satisfies the requirement nope==1 (from versions: none)\nERROR: No matching distribution found for nope==1\n";
        assert_eq!(
            error_lines(pip).as_deref(),
            Some(
                "ERROR: Could not find a version that satisfies the requirement nope==1 (from versions: none)\nERROR: No matching distribution found for nope==1"
            )
        );
        let npm =
            "npm error code ENOTCACHED\nnpm error request to https://registry.npmjs.org/x failed\n";
        assert!(error_lines(npm).is_some_and(|l| l.contains("ENOTCACHED")));
        assert_eq!(error_lines("nothing useful\n"), None);
    }

    #[test]
    fn ports_of_index_urls() {
        assert_eq!(port_of("https://pypi.org/simple"), Some(443));
        assert_eq!(port_of("http://mirror.local/simple"), Some(80));
        assert_eq!(
            port_of("http://user:pw@mirror.local:3141/root/pypi"),
            Some(3141)
        );
        assert_eq!(port_of("not a url"), None);
    }
}
