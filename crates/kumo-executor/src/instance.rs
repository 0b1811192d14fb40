//! One running runner: start it, load the code, call it, capture its output.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kumo_runtimes::protocol::{
    self, Invoke, InvokeContext, Load, ProtocolError, RunnerError, RunnerMessage,
};
use serde_json::value::RawValue;
use tokio::net::unix::pipe::Receiver;

use crate::logs::{LogCapture, Stream};
use crate::{DeploymentSpec, ExecutorConfig};

/// Where a sandbox mounts the deployment's files.
pub(crate) const CODE_DIR: &str = "/code";
/// Where a sandbox mounts the runner sources.
pub(crate) const RUNNER_DIR: &str = "/kumo";

/// Where a sandbox mounts a deployment's dependency layer: for Python the
/// layer itself (a `pip install --target` tree, put on `sys.path`) at
/// `/kumo/layer`, beside the runner; for Node.js its `node_modules` at
/// `/code/node_modules`, where `require` and `import` look first. Neither
/// adds anything to the sandbox's root.
pub(crate) fn layer_target(runtime: kumo_runtimes::Runtime) -> Option<&'static str> {
    match runtime {
        kumo_runtimes::Runtime::Python => Some(kumo_runtimes::python::LAYER_DIR),
        kumo_runtimes::Runtime::Node => Some("/code/node_modules"),
        kumo_runtimes::Runtime::Custom => None,
    }
}

/// The directory of a layer that is mounted for `runtime`.
fn layer_source(runtime: kumo_runtimes::Runtime, layer: &Path) -> PathBuf {
    match runtime {
        kumo_runtimes::Runtime::Node => layer.join("node_modules"),
        kumo_runtimes::Runtime::Python | kumo_runtimes::Runtime::Custom => layer.to_path_buf(),
    }
}

/// Where the code, the runner and the dependencies are, as the started
/// process sees them.
pub(crate) struct Layout {
    host_code_dir: PathBuf,
    pub(crate) code_dir: PathBuf,
    pub(crate) runner_dir: PathBuf,
    /// The dependency layer's mount: host directory → path inside.
    layer: Option<(PathBuf, PathBuf)>,
    /// What the runner adds to its module search path.
    pub(crate) search_paths: Vec<String>,
    /// Variables the layout needs set (process mode only).
    pub(crate) env: Vec<(String, String)>,
}

impl Layout {
    /// The layout of `code_dir` alone, without dependencies.
    pub(crate) fn new(config: &ExecutorConfig, host_code_dir: &Path) -> Layout {
        let isolated = config.sandbox.isolation() == kumo_sandbox::Isolation::Namespaces;
        // Inside a sandbox the code and the runner sit at fixed paths.
        let (code_dir, runner_dir) = if isolated {
            (PathBuf::from(CODE_DIR), PathBuf::from(RUNNER_DIR))
        } else {
            (
                host_code_dir.to_path_buf(),
                config.toolchain.runner_dir.clone(),
            )
        };
        Layout {
            host_code_dir: host_code_dir.to_path_buf(),
            code_dir,
            runner_dir,
            layer: None,
            search_paths: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The layout of a deployment: its code and its dependency layer.
    pub(crate) fn of(config: &ExecutorConfig, spec: &DeploymentSpec) -> Layout {
        let mut layout = Layout::new(config, &spec.code_dir);
        let Some(layer) = &spec.layer else {
            return layout;
        };
        let source = layer_source(spec.runtime, layer);
        let isolated = config.sandbox.isolation() == kumo_sandbox::Isolation::Namespaces;
        let seen = match layer_target(spec.runtime) {
            Some(target) if isolated => {
                if let Ok(inside_code) = Path::new(target).strip_prefix(CODE_DIR) {
                    // The mount point must exist in the (read-only) code.
                    let _ = std::fs::create_dir_all(spec.code_dir.join(inside_code));
                }
                layout.layer = Some((source, PathBuf::from(target)));
                PathBuf::from(target)
            }
            _ => source,
        };
        match spec.runtime {
            kumo_runtimes::Runtime::Python => {
                layout
                    .search_paths
                    .push(seen.to_string_lossy().into_owned());
            }
            // Without a sandbox nothing is mounted: `require` finds the
            // layer through NODE_PATH (`import` of a package does not).
            kumo_runtimes::Runtime::Node if !isolated => {
                layout
                    .env
                    .push(("NODE_PATH".into(), seen.to_string_lossy().into_owned()));
            }
            kumo_runtimes::Runtime::Node | kumo_runtimes::Runtime::Custom => {}
        }
        layout
    }

    /// What a pre-started sandbox is given: the code, and the layer.
    pub(crate) fn attach_mounts(&self) -> Vec<(PathBuf, PathBuf)> {
        let mut mounts = vec![(self.host_code_dir.clone(), PathBuf::from(CODE_DIR))];
        mounts.extend(self.layer.clone());
        mounts
    }

    /// `spec` (see [`runtime_spec`]) with the code (and layer) mounted and
    /// the code made the working directory.
    pub(crate) fn with_code(&self, mut spec: kumo_sandbox::Spec) -> kumo_sandbox::Spec {
        spec.mounts.extend(self.attach_mounts());
        spec.cwd = self.code_dir.clone();
        spec
    }
}

/// What a sandbox runs: the program, its arguments, and the host paths
/// it needs mounted (the runtime's files, at the same paths inside).
pub(crate) struct Command {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<std::ffi::OsString>,
    pub(crate) paths: Vec<PathBuf>,
    /// Whether the embedded runners' directory is mounted too.
    pub(crate) runner: bool,
}

impl Command {
    /// The embedded runner of `runtime`.
    pub(crate) fn runner(
        config: &ExecutorConfig,
        runtime: kumo_runtimes::Runtime,
        runner_dir: &Path,
    ) -> Command {
        let (program, args) = config.toolchain.runner_command(runtime, runner_dir);
        Command {
            program,
            args,
            paths: config.toolchain.runtime_paths(runtime).to_vec(),
            runner: true,
        }
    }

    /// What serves `spec`: its runtime's runner, or for a custom function
    /// its own program.
    fn of(
        config: &ExecutorConfig,
        spec: &DeploymentSpec,
        layout: &Layout,
    ) -> Result<Command, String> {
        if spec.runtime != kumo_runtimes::Runtime::Custom {
            return Ok(Command::runner(config, spec.runtime, &layout.runner_dir));
        }
        let parsed = kumo_runtimes::custom::parse_command(&spec.entrypoint)?;
        let (program, args, paths) = config.toolchain.custom_command(&parsed, &layout.code_dir)?;
        Ok(Command {
            program,
            args,
            paths: paths.to_vec(),
            runner: false,
        })
    }
}

/// A sandbox spec with a command's files (and the runners, if it is one)
/// mounted, and no code yet.
pub(crate) fn runtime_spec(
    config: &ExecutorConfig,
    command: Command,
    env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    limits: kumo_sandbox::Limits,
) -> kumo_sandbox::Spec {
    let Command {
        program,
        args,
        paths,
        runner,
    } = command;
    let mut mounts: Vec<(PathBuf, PathBuf)> =
        paths.iter().map(|p| (p.clone(), p.clone())).collect();
    if runner {
        mounts.push((
            config.toolchain.runner_dir.clone(),
            PathBuf::from(RUNNER_DIR),
        ));
    }
    kumo_sandbox::Spec {
        program,
        args,
        env,
        cwd: PathBuf::from("/"),
        mounts,
        writable_mounts: Vec::new(),
        pending_mounts: Vec::new(),
        network: kumo_sandbox::Network::None,
        limits,
    }
}

/// The environment every sandboxed process starts with.
pub(crate) fn base_env() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("HOME".into(), "/tmp".into()),
        ("TMPDIR".into(), "/tmp".into()),
    ]
}

/// The variables Kumo sets for a function, then the function's own.
fn function_env(spec: &DeploymentSpec) -> Vec<(String, String)> {
    let mut env = vec![
        ("KUMO_FUNCTION".to_string(), spec.function_name.clone()),
        ("KUMO_VERSION".to_string(), spec.version.to_string()),
        ("KUMO_MEMORY_MB".to_string(), spec.memory_mb.to_string()),
    ];
    env.extend(spec.env.iter().cloned());
    env
}

/// The sandbox limits of an instance of `spec`.
fn instance_limits(spec: &DeploymentSpec, config: &ExecutorConfig) -> kumo_sandbox::Limits {
    kumo_sandbox::Limits {
        open_files: config.limits.open_files,
        file_size_bytes: spec.tmp_bytes,
        memory_bytes: spec.memory_mb * 1024 * 1024,
        cpu_millicores: spec.cpu_millicores,
        pids: spec.pids,
        tmp_bytes: spec.tmp_bytes,
    }
}

/// How a call on an instance ended, before it becomes a run record.
pub(crate) enum CallEnd {
    /// The runner answered; the instance may be reused.
    Answered(Result<Option<Box<RawValue>>, RunnerError>),
    /// The deadline passed; the instance must be killed.
    TimedOut,
    /// The runner died or broke the protocol; the instance is gone.
    Crashed(String),
    /// The instance hit its memory limit (MiB) and was killed.
    OutOfMemory(u64),
}

pub(crate) struct Instance {
    handle: kumo_sandbox::Handle,
    channel: tokio::net::UnixStream,
    stdout: Option<Receiver>,
    stderr: Option<Receiver>,
    frames: protocol::FrameReader,
    pub(crate) last_used: Instant,
    /// When the reaper stops it if it is still idle.
    pub(crate) expires_at: Instant,
    /// Stopped by the cgroup freezer while idle.
    pub(crate) frozen: bool,
    /// Resource counters at the end of the last call.
    pub(crate) last_usage: Option<kumo_sandbox::Usage>,
    /// The memory limit in force, in MiB, to name in an out-of-memory end.
    memory_mb: u64,
}

/// Why an instance could not be made ready.
pub(crate) enum StartError {
    /// The sandbox could not start the process (a platform problem).
    Spawn(String),
    /// The user's code failed to load, or the runner misbehaved.
    Load(CallEnd),
}

impl Instance {
    /// Starts a runner for `spec` and loads the code. Output written while
    /// loading goes to `logs` (it belongs to the first call).
    pub(crate) async fn start(
        spec: &DeploymentSpec,
        config: &ExecutorConfig,
        logs: &mut LogCapture,
    ) -> Result<Instance, StartError> {
        let layout = Layout::of(config, spec);
        let command = Command::of(config, spec, &layout)
            .map_err(|why| StartError::Load(CallEnd::Crashed(why)))?;
        let mut env = base_env();
        env.extend(
            function_env(spec)
                .into_iter()
                .chain(layout.env.iter().cloned())
                .map(|(k, v)| (k.into(), v.into())),
        );
        let sandbox_spec = layout.with_code(runtime_spec(
            config,
            command,
            env,
            instance_limits(spec, config),
        ));
        let deadline = Instant::now() + config.settings.start_timeout.max(spec.timeout);
        let mut instance = Instance::launch(config, &sandbox_spec, logs, deadline).await?;
        let code_dir = layout.code_dir.to_string_lossy();
        let mut load = Load::new(&code_dir, &spec.entrypoint, &spec.handler);
        load.paths = &layout.search_paths;
        instance.load(load, logs, deadline).await?;
        tracing::debug!(function = %spec.function_name, "instance ready");
        Ok(instance)
    }

    /// Starts a runner of `runtime` that knows no code yet: it waits, its
    /// interpreter started, for [`Instance::specialize`].
    pub(crate) async fn start_generic(
        runtime: kumo_runtimes::Runtime,
        config: &ExecutorConfig,
    ) -> Result<Instance, StartError> {
        let runner_dir = if config.sandbox.isolation() == kumo_sandbox::Isolation::Namespaces {
            PathBuf::from(RUNNER_DIR)
        } else {
            config.toolchain.runner_dir.clone()
        };
        let command = Command::runner(config, runtime, &runner_dir);
        // Generous limits while it waits; the function's own are applied
        // when it is specialized.
        let limits = config.process_limits(true);
        let mut sandbox_spec = runtime_spec(config, command, base_env(), limits);
        // A layer under /code is mounted once /code is there.
        sandbox_spec.pending_mounts = std::iter::once(CODE_DIR)
            .chain(layer_target(runtime).filter(|t| !t.starts_with(CODE_DIR)))
            .map(PathBuf::from)
            .collect();
        let mut logs = LogCapture::new(4096);
        let deadline = Instant::now() + config.settings.start_timeout;
        Instance::launch(config, &sandbox_spec, &mut logs, deadline).await
    }

    /// Gives a generic instance its deployment: mounts the code, applies
    /// the function's limits, and loads the code with the function's
    /// environment. The instance serves this deployment only, from now on.
    pub(crate) async fn specialize(
        &mut self,
        spec: &DeploymentSpec,
        config: &ExecutorConfig,
        logs: &mut LogCapture,
    ) -> Result<(), StartError> {
        let started = Instant::now();
        let layout = Layout::of(config, spec);
        self.handle
            .attach(&layout.attach_mounts(), &instance_limits(spec, config))
            .await
            .map_err(|e| {
                self.handle.kill();
                StartError::Spawn(e.to_string())
            })?;
        let attached = started.elapsed();
        self.memory_mb = spec.memory_mb;
        // Meter the function from here, not the generic start.
        self.reset_peak_memory();
        self.last_usage = self.usage();
        let code_dir = layout.code_dir.to_string_lossy();
        let mut env = function_env(spec);
        env.extend(layout.env.iter().cloned());
        let mut load = Load::new(&code_dir, &spec.entrypoint, &spec.handler);
        load.env = &env;
        load.paths = &layout.search_paths;
        let deadline = Instant::now() + config.settings.start_timeout.max(spec.timeout);
        self.load(load, logs, deadline).await?;
        tracing::debug!(
            function = %spec.function_name,
            attach_ms = attached.as_secs_f64() * 1000.0,
            ready_ms = started.elapsed().as_secs_f64() * 1000.0,
            "pre-warmed instance specialized"
        );
        Ok(())
    }

    /// Spawns a runner and waits for its `hello`.
    async fn launch(
        config: &ExecutorConfig,
        sandbox_spec: &kumo_sandbox::Spec,
        logs: &mut LogCapture,
        deadline: Instant,
    ) -> Result<Instance, StartError> {
        let spawn_started = Instant::now();
        let process = config
            .sandbox
            .spawn(sandbox_spec)
            .map_err(|e| StartError::Spawn(e.to_string()))?;
        let mut instance = Instance {
            handle: process.handle,
            channel: process.channel,
            stdout: Some(process.stdout),
            stderr: Some(process.stderr),
            frames: protocol::FrameReader::default(),
            last_used: Instant::now(),
            expires_at: Instant::now(),
            frozen: false,
            last_usage: None,
            memory_mb: sandbox_spec.limits.memory_bytes / (1024 * 1024),
        };
        match instance.exchange(None, logs, deadline).await {
            Ok(RunnerMessage::Hello { protocol, .. }) if protocol == protocol::PROTOCOL_VERSION => {
                tracing::debug!(
                    hello_ms = spawn_started.elapsed().as_secs_f64() * 1000.0,
                    "runner said hello"
                );
                Ok(instance)
            }
            Ok(RunnerMessage::Hello { protocol, .. }) => Err(instance.fail(format!(
                "the runner speaks protocol {protocol}, this host speaks {}",
                protocol::PROTOCOL_VERSION
            ))),
            Ok(_) => Err(instance.fail("the runner did not start with 'hello'".into())),
            Err(end) => Err(StartError::Load(instance.finish_failed(end, logs).await)),
        }
    }

    /// Sends `load` and waits for the code to be loaded.
    async fn load(
        &mut self,
        load: Load<'_>,
        logs: &mut LogCapture,
        deadline: Instant,
    ) -> Result<(), StartError> {
        let frame = protocol::encode(&load);
        match self.exchange(Some(&frame), logs, deadline).await {
            Ok(RunnerMessage::Loaded) => Ok(()),
            Ok(RunnerMessage::LoadError(error)) => {
                self.drain(logs);
                self.handle.kill();
                Err(StartError::Load(CallEnd::Answered(Err(error))))
            }
            Ok(_) => Err(self.fail("the runner answered 'load' with something else".into())),
            Err(end) => Err(StartError::Load(self.finish_failed(end, logs).await)),
        }
    }

    fn fail(&mut self, why: String) -> StartError {
        self.handle.kill();
        StartError::Load(CallEnd::Crashed(why))
    }

    /// Calls the handler once. After anything but an answer the instance
    /// has been killed and must be dropped.
    pub(crate) async fn call(
        &mut self,
        spec: &DeploymentSpec,
        run_id: &str,
        event: &RawValue,
        deadline: Instant,
        logs: &mut LogCapture,
    ) -> CallEnd {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let deadline_ms = (SystemTime::now() + remaining)
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let context = InvokeContext {
            function_name: &spec.function_name,
            version: spec.version,
            memory_limit_mb: spec.memory_mb,
            deadline_ms,
        };
        let frame = protocol::encode(&Invoke::new(run_id, event, context));
        let end = match self.exchange(Some(&frame), logs, deadline).await {
            Ok(RunnerMessage::Result { id, outcome }) if id == run_id => {
                self.drain_ready(logs);
                // Do not keep a large frame's buffer for the instance's life.
                self.frames.shrink();
                self.last_used = Instant::now();
                return CallEnd::Answered(outcome);
            }
            Ok(_) => Exchange::Protocol(ProtocolError::Malformed(
                "the runner answered 'invoke' with something else".into(),
            )),
            Err(end) => end,
        };
        self.finish_failed(end, logs).await
    }

    /// Kills the instance after a failed exchange and says what happened.
    async fn finish_failed(&mut self, end: Exchange, logs: &mut LogCapture) -> CallEnd {
        match end {
            Exchange::Timeout => {
                self.handle.kill();
                self.drain(logs);
                CallEnd::TimedOut
            }
            Exchange::Protocol(ProtocolError::Closed) => {
                // Give the runner a moment to be reaped, to report how it died.
                let status = tokio::time::timeout(Duration::from_millis(500), self.handle.wait())
                    .await
                    .ok()
                    .and_then(Result::ok);
                self.drain(logs);
                self.handle.kill();
                // A runner that died while its cgroup's OOM killer struck
                // ran out of memory; say so instead of "crashed".
                let before = self.last_usage.map_or(0, |u| u.oom_kills);
                if self.usage().is_some_and(|u| u.oom_kills > before) {
                    return CallEnd::OutOfMemory(self.memory_mb);
                }
                CallEnd::Crashed(match status {
                    Some(status) => describe_exit(status),
                    None => "the runner closed its channel".into(),
                })
            }
            Exchange::Protocol(e) => {
                self.handle.kill();
                self.drain(logs);
                CallEnd::Crashed(e.to_string())
            }
        }
    }

    /// Sends `send` (if any) and waits for the runner's next message,
    /// copying whatever it prints into `logs` meanwhile.
    async fn exchange(
        &mut self,
        send: Option<&[u8]>,
        logs: &mut LogCapture,
        deadline: Instant,
    ) -> Result<RunnerMessage, Exchange> {
        let Instance {
            channel,
            stdout,
            stderr,
            frames,
            ..
        } = self;
        let work = async {
            if let Some(bytes) = send {
                // Keep reading output while writing: a runner that prints
                // before it reads must not deadlock a large frame.
                let write = protocol::write_frame(channel, bytes);
                tokio::pin!(write);
                loop {
                    tokio::select! {
                        biased;
                        r = &mut write => { r?; break; }
                        r = read_some(stdout), if stdout.is_some() => on_output(r, Stream::Stdout, stdout, logs),
                        r = read_some(stderr), if stderr.is_some() => on_output(r, Stream::Stderr, stderr, logs),
                    }
                }
            }
            let read = frames.read(channel);
            tokio::pin!(read);
            // In order (not at random): lines a call printed to stdout and
            // to stderr at once are logged stdout first, as drains do.
            loop {
                tokio::select! {
                    biased;
                    r = &mut read => { r?; break; }
                    r = read_some(stdout), if stdout.is_some() => on_output(r, Stream::Stdout, stdout, logs),
                    r = read_some(stderr), if stderr.is_some() => on_output(r, Stream::Stderr, stderr, logs),
                }
            }
            Ok::<(), ProtocolError>(())
        };
        match tokio::time::timeout_at(deadline.into(), work).await {
            Err(_) => Err(Exchange::Timeout),
            Ok(Err(e)) => Err(Exchange::Protocol(e)),
            Ok(Ok(())) => protocol::decode(self.frames.frame()).map_err(Exchange::Protocol),
        }
    }

    /// Reads what is already in the output pipes without waiting: the
    /// runner flushes before it answers, so this completes the call's logs.
    fn drain(&mut self, logs: &mut LogCapture) {
        self.drain_with(logs, |pipe, buf| {
            nix::unistd::read(pipe, buf).map_err(io::Error::from)
        });
    }

    /// [`Instance::drain`] after an answer, without a system call for a
    /// pipe the reactor has not seen become readable: the runner writes
    /// its output before its answer, so the readiness of anything printed
    /// during the call is in by the time the answer has been read. Most
    /// calls print nothing, and this saves two reads per call.
    fn drain_ready(&mut self, logs: &mut LogCapture) {
        self.drain_with(logs, |pipe, buf| pipe.try_read(buf));
    }

    fn drain_with(
        &mut self,
        logs: &mut LogCapture,
        read: impl Fn(&Receiver, &mut [u8]) -> io::Result<usize>,
    ) {
        for (stream, fd) in [
            (Stream::Stdout, &mut self.stdout),
            (Stream::Stderr, &mut self.stderr),
        ] {
            let mut rounds = 0;
            while let Some(pipe) = fd.as_ref() {
                rounds += 1;
                let mut buf = [0u8; 16 * 1024];
                match read(pipe, &mut buf) {
                    Ok(0) => *fd = None,
                    Ok(n) => logs.push(stream, &buf[..n]),
                    Err(_) => break,
                }
                // A runner's background thread may print without end; stop
                // once the call's share is well past the cap.
                if rounds > 64 {
                    break;
                }
            }
        }
    }

    pub(crate) fn kill(&mut self) {
        self.handle.kill();
    }

    /// Resource use so far (sandboxed instances only).
    pub(crate) fn usage(&self) -> Option<kumo_sandbox::Usage> {
        self.handle.usage()
    }

    /// Stops everything in the instance while it waits for a call.
    pub(crate) fn freeze(&mut self) {
        if !self.frozen {
            self.handle.freeze();
            self.frozen = true;
        }
    }

    pub(crate) fn thaw(&mut self) {
        if self.frozen {
            self.handle.thaw();
            self.frozen = false;
        }
    }

    pub(crate) fn reset_peak_memory(&self) {
        self.handle.reset_peak_memory();
    }
}

enum Exchange {
    Timeout,
    Protocol(ProtocolError),
}

thread_local! {
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 16 * 1024]);
}

/// Waits until a pipe is readable and reads what is there.
async fn read_some(fd: &Option<Receiver>) -> io::Result<Vec<u8>> {
    let Some(fd) = fd else {
        return std::future::pending().await;
    };
    loop {
        fd.readable().await?;
        let result = READ_BUF.with_borrow_mut(|buf| fd.try_read(buf).map(|n| buf[..n].to_vec()));
        match result {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

fn on_output(
    read: io::Result<Vec<u8>>,
    stream: Stream,
    fd: &mut Option<Receiver>,
    logs: &mut LogCapture,
) {
    match read {
        Ok(bytes) if bytes.is_empty() => *fd = None,
        Ok(bytes) => logs.push(stream, &bytes),
        Err(_) => *fd = None,
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    // A sandbox helper reports a runner killed by signal N as 128 + N.
    let signal = status.signal().or_else(|| {
        status
            .code()
            .filter(|c| (129..=128 + 64).contains(c))
            .map(|c| c - 128)
    });
    match signal {
        Some(signal) => {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| signal.to_string());
            format!("the runner was killed by signal {name}")
        }
        None => format!(
            "the runner exited unexpectedly with code {}",
            status.code().unwrap_or(-1)
        ),
    }
}
