//! Instance pools: start runners, reuse them while warm, cap concurrency,
//! enforce timeouts, and stop idle ones (scale to zero).
//!
//! The executor is handed a [`DeploymentSpec`] and an event and returns an
//! [`Outcome`]. It knows nothing of HTTP, accounts or storage; instances are
//! started through `kumo-sandbox`. Each spec (one deployment with one set of
//! settings) has its own pool; an instance is never shared across specs.
//!
//! Rules kept here: no lock is held across an `.await`; a warm call spawns
//! nothing; callers beyond the concurrency limit wait in a bounded queue for
//! a bounded time, then get [`ExecError::Overloaded`].

mod instance;
mod keepalive;
mod logs;
mod prewarm;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use kumo_runtimes::{Runtime, Toolchain};
use kumo_types::{Limits, RunError, RunStatus};
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use instance::{CallEnd, Instance, StartError};
use logs::LogCapture;

pub use keepalive::BIN as KEEP_ALIVE_BIN;
pub use kumo_runtimes::check::{CheckError, SyntaxIssue};
pub use logs::{LogLine, LogSink, Stream};

/// Memory for the deploy-time syntax check.
const CHECK_MEMORY_BYTES: u64 = 512 * 1024 * 1024;
/// Time for the deploy-time syntax check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// How long an idle instance stays warm.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(5 * 60);
/// How long a call waits for a free instance slot before `Overloaded`.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(1);
/// How many calls may wait per function.
pub const DEFAULT_MAX_QUEUE: usize = 100;
/// Concurrent calls per user, over all their functions.
pub const DEFAULT_TENANT_CONCURRENCY: usize = 100;
/// Generic instances kept ready per runtime, for cold starts.
pub const DEFAULT_PREWARM: usize = 2;
/// How long an idle instance may run on after its call before it is
/// frozen: short enough that nothing left behind gets real work done
/// between calls, long enough that a busy function is not frozen and
/// thawed around every call.
pub const DEFAULT_FREEZE_AFTER: Duration = Duration::from_millis(5);
/// The least time a runner gets to start and load its code.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);

/// How the executor keeps instances and queues calls: the settings of a
/// server (`kumo serve`'s flags) that belong to the executor, with their
/// defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long an idle instance is kept before it is stopped, where a
    /// function's own history does not say better (see `keepalive`).
    pub keep_alive: Duration,
    /// Learn each function's keep-alive from its idle times.
    pub adaptive_keep_alive: bool,
    /// Width of a bin of those idle-time histograms ([`KEEP_ALIVE_BIN`]).
    pub keep_alive_bin: Duration,
    /// How long a call waits for a free slot before `Overloaded`.
    pub queue_timeout: Duration,
    /// How many calls may wait per function.
    pub max_queue: usize,
    /// Concurrent calls per tenant, over all its functions.
    pub tenant_concurrency: usize,
    /// Freeze instances idle for this long: nothing a call left behind
    /// (a thread, a child process) runs between calls for longer. `None`
    /// never freezes; zero freezes at the end of every call. A short
    /// grace spares a busy function a freeze and a thaw per call (two
    /// writes, and two wake-ups of every task of the instance).
    pub freeze_after: Option<Duration>,
    /// Least time allowed for a runner to start and load its code.
    pub start_timeout: Duration,
    /// Generic instances kept ready per runtime; 0 turns pre-warming off.
    pub prewarm: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            keep_alive: DEFAULT_KEEP_ALIVE,
            adaptive_keep_alive: true,
            keep_alive_bin: KEEP_ALIVE_BIN,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            max_queue: DEFAULT_MAX_QUEUE,
            tenant_concurrency: DEFAULT_TENANT_CONCURRENCY,
            freeze_after: Some(DEFAULT_FREEZE_AFTER),
            start_timeout: DEFAULT_START_TIMEOUT,
            prewarm: DEFAULT_PREWARM,
        }
    }
}

/// What the executor is started with.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    pub toolchain: Toolchain,
    /// Starts instances, isolated or not.
    pub sandbox: Arc<kumo_sandbox::Sandbox>,
    pub settings: Settings,
    /// The platform's limits: logs kept per call, descriptors per
    /// instance, and the defaults and caps that processes not yet
    /// instances of a function (the syntax check, pre-warmed generic
    /// instances) run with.
    pub limits: Limits,
    /// Takes every line calls print, as they print it (live logs).
    pub log_sink: Option<Arc<dyn LogSink>>,
}

impl ExecutorConfig {
    /// Limits of a process that is not an instance of a function yet:
    /// the defaults, with the largest /tmp and pids a function may ask
    /// for when `generous` (a generic instance, which becomes one).
    fn process_limits(&self, generous: bool) -> kumo_sandbox::Limits {
        const MIB: u64 = 1024 * 1024;
        let l = &self.limits;
        kumo_sandbox::Limits {
            open_files: l.open_files,
            file_size_bytes: if generous {
                l.max_tmp_bytes
            } else {
                l.tmp_bytes
            },
            memory_bytes: l.memory_mb * MIB,
            cpu_millicores: l.cpu_millicores,
            pids: if generous { l.max_pids } else { l.pids },
            tmp_bytes: l.tmp_bytes,
        }
    }
}

/// Everything needed to run one deployment with one set of settings.
#[derive(Debug, Clone)]
pub struct DeploymentSpec {
    /// Identifies this spec's pool; a different key means new instances.
    pub key: String,
    /// Identifies the function across its versions and settings: its
    /// idle-time history, which sets its keep-alive, is kept under it.
    pub function_id: String,
    /// The owner; its calls share one concurrency budget.
    pub tenant: String,
    pub function_name: String,
    pub version: i64,
    pub runtime: Runtime,
    /// The deployment's files, read-only.
    pub code_dir: PathBuf,
    /// Its installed dependencies (a built layer), read-only.
    pub layer: Option<PathBuf>,
    pub entrypoint: String,
    pub handler: String,
    pub timeout: Duration,
    pub memory_mb: u64,
    /// CPU per instance, in thousandths of a core.
    pub cpu_millicores: u64,
    /// Processes and threads per instance.
    pub pids: u64,
    /// Size of the instance's /tmp (also its largest file).
    pub tmp_bytes: u64,
    pub concurrency: usize,
    /// The function's environment variables.
    pub env: Vec<(String, String)>,
    /// Values (secrets) blotted out of the run's logs and error.
    pub redact: Vec<String>,
}

/// How a call ended.
#[derive(Debug)]
pub struct Outcome {
    pub status: RunStatus,
    /// The handler's return value as raw JSON; `None` for `null`.
    pub output: Option<Box<RawValue>>,
    pub error: Option<RunError>,
    pub logs: String,
    pub logs_truncated: bool,
    pub duration: Duration,
    pub cold_start: bool,
    /// CPU time of the call, where the sandbox measures it.
    pub cpu_time: Option<Duration>,
    /// Peak memory of the instance during the call, where measured.
    pub peak_memory_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("too many concurrent calls to this function; retry after {retry_after:?}")]
    Overloaded { retry_after: Duration },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("could not start an instance: {0}")]
    Start(String),
}

/// Why a deployment's code did not load (see [`Executor::check_load`]).
#[derive(Debug, thiserror::Error)]
pub enum LoadCheckError {
    /// The code failed: its error, as its first call would have shown it.
    #[error("{}: {}", error.kind, error.message)]
    Failed {
        status: RunStatus,
        error: RunError,
        /// What the code printed while loading.
        logs: String,
    },
    /// No instance could be started (a platform problem).
    #[error("could not start an instance: {0}")]
    Platform(String),
}

/// Live counts of a pool, for status pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub idle: usize,
    pub busy: usize,
}

/// The instance pools of every function. Cheap to clone.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

struct Inner {
    config: ExecutorConfig,
    pools: Mutex<HashMap<String, Arc<Pool>>>,
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
    shutting_down: AtomicBool,
    in_flight: AtomicUsize,
    idle_changed: tokio::sync::Notify,
    /// Generic instances per runtime, started ahead of need.
    prewarmed: Vec<Arc<prewarm::Pool>>,
    /// Per function: idle-time history and any instance scheduled ahead.
    functions: Mutex<HashMap<String, FunctionState>>,
    /// Pools holding idle instances not frozen yet (see `freeze_idle`).
    to_freeze: Mutex<Vec<Arc<Pool>>>,
    to_freeze_added: Arc<tokio::sync::Notify>,
}

struct FunctionState {
    history: keepalive::History,
    /// The spec of the latest call, for a scheduled start.
    spec: Arc<DeploymentSpec>,
    /// When to start an instance ahead of the next call, and until when
    /// to keep it.
    scheduled: Option<(Instant, Instant)>,
}

/// Ends a call in its function's history, even if the caller goes away.
struct CallRecord<'a> {
    inner: &'a Inner,
    function_id: &'a str,
}

impl Drop for CallRecord<'_> {
    fn drop(&mut self) {
        let mut functions = self
            .inner
            .functions
            .lock()
            .expect("functions lock poisoned");
        if let Some(state) = functions.get_mut(self.function_id) {
            state.history.call_ended(Instant::now());
        }
    }
}

struct Pool {
    spec: Arc<DeploymentSpec>,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Instance>>,
    busy: AtomicUsize,
    waiting: AtomicUsize,
    retired: AtomicBool,
    /// In `Inner::to_freeze`; read and written under the `idle` lock.
    freeze_queued: AtomicBool,
}

impl Executor {
    /// Creates the executor and starts its reaper of idle instances.
    pub fn start(config: ExecutorConfig) -> Executor {
        let inner = Arc::new(Inner {
            config,
            pools: Mutex::new(HashMap::new()),
            tenants: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle_changed: tokio::sync::Notify::new(),
            functions: Mutex::new(HashMap::new()),
            to_freeze: Mutex::new(Vec::new()),
            to_freeze_added: Arc::new(tokio::sync::Notify::new()),
            prewarmed: Runtime::ALL
                .iter()
                .filter(|r| r.has_embedded_runner())
                .map(|r| Arc::new(prewarm::Pool::new(*r)))
                .collect(),
        });
        tokio::spawn(reap(Arc::downgrade(&inner)));
        if let Some(after) = inner.config.settings.freeze_after.filter(|a| !a.is_zero()) {
            tokio::spawn(freeze_idle(
                Arc::downgrade(&inner),
                inner.to_freeze_added.clone(),
                after,
            ));
        }
        if inner.config.settings.prewarm > 0 {
            for pool in &inner.prewarmed {
                if !inner.config.toolchain.has(pool.runtime()) {
                    continue;
                }
                tokio::spawn(prewarm::fill(
                    Arc::downgrade(&inner),
                    pool.clone(),
                    inner.config.settings.prewarm,
                ));
            }
        }
        Executor { inner }
    }

    pub fn config(&self) -> &ExecutorConfig {
        &self.inner.config
    }

    /// Runs `event` on an instance of `spec`.
    pub async fn invoke(
        &self,
        spec: &Arc<DeploymentSpec>,
        run_id: &str,
        event: &RawValue,
    ) -> Result<Outcome, ExecError> {
        let inner = &self.inner;
        if inner.shutting_down.load(Ordering::Acquire) {
            return Err(ExecError::ShuttingDown);
        }
        let pool = inner.pool(spec);
        let _tenant_permit = inner.acquire_tenant(&spec.tenant).await?;
        let _permit = pool.acquire(&inner.config).await?;
        inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let _in_flight = InFlight(inner);
        let started = Instant::now();
        let call_record = inner.call_started(spec, started);
        let live = inner
            .config
            .log_sink
            .clone()
            .map(|sink| logs::Live::new(sink, &spec.function_id, run_id, &spec.redact));
        let mut logs = LogCapture::live(inner.config.limits.log_bytes, live);

        let warm = pool.idle.lock().expect("pool lock poisoned").pop();
        let cold_start = warm.is_none();
        let mut instance = match warm {
            Some(mut instance) => {
                instance.thaw();
                instance
            }
            None => match inner.start_instance(spec, &mut logs).await {
                Ok(instance) => instance,
                Err(StartError::Spawn(why)) => return Err(ExecError::Start(why)),
                Err(StartError::Load(end)) => {
                    let mut result = outcome(end, logs, started, true, spec.timeout);
                    redact(&mut result, &spec.redact);
                    return Ok(result);
                }
            },
        };

        let busy = Busy::enter(&pool);
        // The counters as the previous call left them (a new instance's
        // cgroup starts at zero): no cgroup reads before the call.
        let before = instance.last_usage.unwrap_or_default();
        if !cold_start {
            instance.reset_peak_memory();
        }
        let deadline = Instant::now() + spec.timeout;
        let end = instance
            .call(spec, run_id, event, deadline, &mut logs)
            .await;
        drop(busy);
        let after = instance.usage();
        instance.last_usage = after;
        drop(call_record);
        let policy = inner.after_call(spec);
        if matches!(end, CallEnd::Answered(_)) && policy.prewarm.is_zero() {
            instance.expires_at = instance.last_used + policy.keep_alive;
            inner.park(&pool, instance);
        } else {
            // Either the instance is spent, or the function's next call is
            // far enough away that an instance is better started just
            // before it (see `keepalive`).
            instance.kill();
        }
        let mut result = outcome(end, logs, started, cold_start, spec.timeout);
        redact(&mut result, &spec.redact);
        if let Some(a) = after {
            result.cpu_time = Some(Duration::from_nanos(a.cpu_ns.saturating_sub(before.cpu_ns)));
            result.peak_memory_bytes = Some(a.peak_memory_bytes);
        }
        Ok(result)
    }

    /// Stops the instances of a spec that no longer serves (a new version
    /// or new settings). Busy instances finish their call first.
    pub fn retire(&self, key: &str) {
        let pool = self
            .inner
            .pools
            .lock()
            .expect("pools lock poisoned")
            .remove(key);
        if let Some(pool) = pool {
            pool.retire();
        }
        let mut functions = self
            .inner
            .functions
            .lock()
            .expect("functions lock poisoned");
        for state in functions.values_mut() {
            if state.spec.key == key {
                state.scheduled = None;
            }
        }
    }

    /// Idle and busy instances of a spec.
    pub fn stats(&self, key: &str) -> PoolStats {
        let pools = self.inner.pools.lock().expect("pools lock poisoned");
        pools.get(key).map(|pool| pool.stats()).unwrap_or_default()
    }

    /// Total instances running, over every pool.
    pub fn total_instances(&self) -> usize {
        let pools = self.inner.pools.lock().expect("pools lock poisoned");
        pools
            .values()
            .map(|p| {
                let s = p.stats();
                s.idle + s.busy
            })
            .sum()
    }

    /// Generic instances ready, over every runtime.
    pub fn prewarmed(&self) -> usize {
        self.inner.prewarmed.iter().map(|p| p.len()).sum()
    }

    /// Checks a deployment's files before it is accepted: the runtime's
    /// checker compiles them (never runs them) inside a sandbox, with the
    /// files read-only, a memory cap and a time limit, as untrusted input.
    pub async fn check_syntax(&self, runtime: Runtime, code_dir: &Path) -> Result<(), CheckError> {
        let config = &self.inner.config;
        let layout = instance::Layout::new(config, code_dir);
        let Some((program, args)) =
            config
                .toolchain
                .checker_command(runtime, &layout.runner_dir, &layout.code_dir)
        else {
            // No checker for this runtime: loading the code is the check.
            return Ok(());
        };
        let command = instance::Command {
            program,
            args,
            paths: config.toolchain.runtime_paths(runtime).to_vec(),
            runner: true,
        };
        let limits = kumo_sandbox::Limits {
            memory_bytes: CHECK_MEMORY_BYTES,
            ..config.process_limits(false)
        };
        let spec = layout.with_code(instance::runtime_spec(
            config,
            command,
            instance::base_env(),
            limits,
        ));
        let mut process = config
            .sandbox
            .spawn(&spec)
            .map_err(|e| CheckError::Failed(e.to_string()))?;
        drop(process.channel);
        let read = async {
            use tokio::io::AsyncReadExt;
            let mut out = Vec::new();
            let mut err = Vec::new();
            let mut stdout = (&mut process.stdout).take(1024 * 1024);
            let mut stderr = (&mut process.stderr).take(64 * 1024);
            let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
            a.and(b).map(|_| (out, err))
        };
        let (out, err) = match tokio::time::timeout(CHECK_TIMEOUT, read).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => return Err(CheckError::Failed(e.to_string())),
            Err(_) => {
                return Err(CheckError::Refused(format!(
                    "the syntax check did not finish within {} s; the files are too large to compile",
                    CHECK_TIMEOUT.as_secs()
                )));
            }
        };
        let usage = process.handle.usage();
        let _ = tokio::time::timeout(Duration::from_secs(2), process.handle.wait()).await;
        if usage.is_some_and(|u| u.oom_kills > 0) {
            return Err(CheckError::Refused(format!(
                "the syntax check ran out of memory ({} MiB); the files are too large to compile",
                CHECK_MEMORY_BYTES / (1024 * 1024)
            )));
        }
        if out.is_empty() {
            return Err(CheckError::Failed(format!(
                "the syntax check produced no answer: {}",
                String::from_utf8_lossy(&err).trim()
            )));
        }
        kumo_runtimes::check::parse_check_output(&out)
    }

    /// Loads a deployment's code once in an instance of `spec`, as its
    /// first call would, and stops that instance: a module that fails to
    /// import, a missing handler or an entrypoint that is not there is
    /// refused at deploy instead of failing every call. Runs the module's
    /// top-level code, in the sandbox, with the function's limits and a
    /// cold start's time limit.
    pub async fn check_load(&self, spec: &Arc<DeploymentSpec>) -> Result<(), LoadCheckError> {
        let mut logs = LogCapture::new(self.inner.config.limits.log_bytes);
        match self.inner.start_instance(spec, &mut logs).await {
            Ok(mut instance) => {
                instance.kill();
                Ok(())
            }
            Err(StartError::Spawn(why)) => Err(LoadCheckError::Platform(why)),
            Err(StartError::Load(end)) => {
                let mut failed = outcome(end, logs, Instant::now(), true, spec.timeout);
                redact(&mut failed, &spec.redact);
                let logs = std::mem::take(&mut failed.logs);
                Err(LoadCheckError::Failed {
                    status: failed.status,
                    error: failed.error.unwrap_or_else(|| RunError {
                        kind: "LoadError".into(),
                        message: "the code did not load".into(),
                        traceback: String::new(),
                    }),
                    logs,
                })
            }
        }
    }

    /// Refuses new calls, waits up to `grace` for calls in flight, then
    /// stops every instance.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        inner.shutting_down.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + grace;
        while inner.in_flight.load(Ordering::Acquire) > 0 {
            let wait = inner.idle_changed.notified();
            if inner.in_flight.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, wait).await.is_err() {
                tracing::warn!(
                    in_flight = inner.in_flight.load(Ordering::Acquire),
                    "calls still running at the end of the grace period; stopping them"
                );
                break;
            }
        }
        let pools: Vec<_> = inner
            .pools
            .lock()
            .expect("pools lock poisoned")
            .drain()
            .map(|(_, p)| p)
            .collect();
        for pool in pools {
            pool.retire();
        }
        for pool in &inner.prewarmed {
            pool.clear();
        }
    }
}

/// Counts a call as busy on its pool for as long as it lives, even if the
/// caller goes away mid-call.
struct Busy<'a>(&'a Pool);

impl<'a> Busy<'a> {
    fn enter(pool: &'a Pool) -> Self {
        pool.busy.fetch_add(1, Ordering::AcqRel);
        Busy(pool)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

struct InFlight<'a>(&'a Inner);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.idle_changed.notify_waiters();
    }
}

impl Inner {
    /// Notes a call's start in its function's history.
    fn call_started<'a>(&'a self, spec: &'a Arc<DeploymentSpec>, now: Instant) -> CallRecord<'a> {
        let mut functions = self.functions.lock().expect("functions lock poisoned");
        let state = functions
            .entry(spec.function_id.clone())
            .or_insert_with(|| FunctionState {
                history: keepalive::History::new(self.config.settings.keep_alive_bin),
                spec: spec.clone(),
                scheduled: None,
            });
        if !Arc::ptr_eq(&state.spec, spec) {
            state.spec = spec.clone();
        }
        state.scheduled = None;
        state.history.call_started(now);
        CallRecord {
            inner: self,
            function_id: &spec.function_id,
        }
    }

    /// The keep-alive after a call of `spec`, scheduling an instance ahead
    /// of the next call where the policy says so.
    fn after_call(self: &Arc<Self>, spec: &DeploymentSpec) -> keepalive::Policy {
        let fixed = keepalive::Policy::fixed(self.config.settings.keep_alive);
        if !self.config.settings.adaptive_keep_alive {
            return fixed;
        }
        let mut functions = self.functions.lock().expect("functions lock poisoned");
        let Some(state) = functions.get_mut(&spec.function_id) else {
            return fixed;
        };
        let policy = state.history.policy(self.config.settings.keep_alive);
        if !policy.prewarm.is_zero()
            && let Some(end) = state.history.last_end()
        {
            let start = end + policy.prewarm;
            let slot = (start, start + policy.keep_alive);
            state.scheduled = Some(slot);
            let inner = Arc::downgrade(self);
            let function_id = spec.function_id.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(start.into()).await;
                if let Some(inner) = inner.upgrade() {
                    inner.start_scheduled(&function_id, slot).await;
                }
            });
        }
        policy
    }

    /// Puts an idle instance in its pool, unless the pool or the executor
    /// has been stopped meanwhile, and sees that it is frozen.
    fn park(&self, pool: &Arc<Pool>, mut instance: Instance) {
        let freeze_after = self.config.settings.freeze_after;
        if freeze_after.is_some_and(|a| a.is_zero()) {
            instance.freeze();
        }
        // Checked under the idle lock, which `retire` also takes, so an
        // instance never lands in a pool that has been retired.
        let mut idle = pool.idle.lock().expect("pool lock poisoned");
        if pool.retired.load(Ordering::Acquire) || self.is_shutting_down() {
            drop(idle);
            instance.kill();
            return;
        }
        let frozen = instance.frozen;
        idle.push(instance);
        if freeze_after.is_some() && !frozen && !pool.freeze_queued.swap(true, Ordering::AcqRel) {
            drop(idle);
            self.to_freeze
                .lock()
                .expect("freeze lock poisoned")
                .push(pool.clone());
            self.to_freeze_added.notify_one();
        }
    }

    /// Starts the instance scheduled in `slot` for a function, unless a
    /// call came first (which clears the schedule) or it has an instance.
    async fn start_scheduled(self: &Arc<Self>, function_id: &str, slot: (Instant, Instant)) {
        if self.is_shutting_down() {
            return;
        }
        let spec = {
            let mut functions = self.functions.lock().expect("functions lock poisoned");
            match functions.get_mut(function_id) {
                Some(state) if state.scheduled == Some(slot) => {
                    state.scheduled = None;
                    state.spec.clone()
                }
                _ => return,
            }
        };
        let pool = self.pool(&spec);
        let stats = pool.stats();
        if stats.idle + stats.busy > 0 {
            return;
        }
        let mut logs = LogCapture::new(self.config.limits.log_bytes);
        match self.start_instance(&spec, &mut logs).await {
            Ok(mut instance) => {
                tracing::debug!(function = %spec.function_name, "instance started ahead of the next call");
                instance.expires_at = slot.1;
                self.park(&pool, instance);
            }
            Err(_) => {
                tracing::debug!(function = %spec.function_name, "starting an instance ahead of need failed");
            }
        }
    }

    fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// A new instance of `spec`: a pre-warmed one specialized to it when
    /// one is ready, else one started from nothing.
    async fn start_instance(
        &self,
        spec: &DeploymentSpec,
        logs: &mut LogCapture,
    ) -> Result<Instance, StartError> {
        let generic = self
            .prewarmed
            .iter()
            .find(|p| p.runtime() == spec.runtime)
            .and_then(|p| p.take());
        if let Some(mut instance) = generic {
            match instance.specialize(spec, &self.config, logs).await {
                Ok(()) => return Ok(instance),
                // The code's own failure to load is the call's answer.
                Err(StartError::Load(end)) => return Err(StartError::Load(end)),
                Err(StartError::Spawn(why)) => {
                    tracing::warn!(error = %why, "specializing a pre-warmed instance failed; starting a new one");
                }
            }
        }
        Instance::start(spec, &self.config, logs).await
    }

    async fn acquire_tenant(
        &self,
        tenant: &str,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ExecError> {
        let semaphore = {
            let mut tenants = self.tenants.lock().expect("tenants lock poisoned");
            tenants
                .entry(tenant.to_string())
                .or_insert_with(|| {
                    Arc::new(Semaphore::new(
                        self.config.settings.tenant_concurrency.max(1),
                    ))
                })
                .clone()
        };
        if let Ok(permit) = semaphore.clone().try_acquire_owned() {
            return Ok(permit);
        }
        match tokio::time::timeout(
            self.config.settings.queue_timeout,
            semaphore.acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ExecError::Overloaded {
                retry_after: Duration::from_secs(1),
            }),
        }
    }

    fn pool(&self, spec: &Arc<DeploymentSpec>) -> Arc<Pool> {
        let mut pools = self.pools.lock().expect("pools lock poisoned");
        pools
            .entry(spec.key.clone())
            .or_insert_with(|| {
                Arc::new(Pool {
                    spec: spec.clone(),
                    permits: Arc::new(Semaphore::new(spec.concurrency.max(1))),
                    idle: Mutex::new(Vec::new()),
                    busy: AtomicUsize::new(0),
                    waiting: AtomicUsize::new(0),
                    retired: AtomicBool::new(false),
                    freeze_queued: AtomicBool::new(false),
                })
            })
            .clone()
    }
}

impl Pool {
    async fn acquire(
        &self,
        config: &ExecutorConfig,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ExecError> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let overloaded = ExecError::Overloaded {
            retry_after: Duration::from_secs(1),
        };
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= config.settings.max_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(overloaded);
        }
        let waited = tokio::time::timeout(
            config.settings.queue_timeout,
            self.permits.clone().acquire_owned(),
        )
        .await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(overloaded),
        }
    }

    fn retire(&self) {
        let idle = {
            let mut idle = self.idle.lock().expect("pool lock poisoned");
            self.retired.store(true, Ordering::Release);
            std::mem::take(&mut *idle)
        };
        for mut instance in idle {
            instance.kill();
        }
        tracing::debug!(key = %self.spec.key, "pool retired");
    }

    fn stats(&self) -> PoolStats {
        PoolStats {
            idle: self.idle.lock().expect("pool lock poisoned").len(),
            busy: self.busy.load(Ordering::Acquire),
        }
    }
}

/// Freezes instances idle for `after` or longer. Sleeps while no unfrozen
/// instance is idle; otherwise looks every `after`, so an idle instance
/// runs on for less than twice `after` after its call.
async fn freeze_idle(inner: Weak<Inner>, added: Arc<tokio::sync::Notify>, after: Duration) {
    loop {
        added.notified().await;
        loop {
            tokio::time::sleep(after).await;
            let Some(inner) = inner.upgrade() else { return };
            let pools = std::mem::take(&mut *inner.to_freeze.lock().expect("freeze lock poisoned"));
            let mut pending = Vec::new();
            for pool in pools {
                let mut idle = pool.idle.lock().expect("pool lock poisoned");
                let now = Instant::now();
                let mut waiting = false;
                for instance in idle.iter_mut().filter(|i| !i.frozen) {
                    if now.saturating_duration_since(instance.last_used) >= after {
                        instance.freeze();
                    } else {
                        waiting = true;
                    }
                }
                if waiting {
                    drop(idle);
                    pending.push(pool);
                } else {
                    // Under the idle lock, as `park` reads it.
                    pool.freeze_queued.store(false, Ordering::Release);
                }
            }
            let mut to_freeze = inner.to_freeze.lock().expect("freeze lock poisoned");
            to_freeze.extend(pending);
            if to_freeze.is_empty() {
                break;
            }
        }
    }
}

/// Stops instances idle for longer than the keep-alive, and forgets pools
/// that have nothing left.
async fn reap(inner: Weak<Inner>) {
    let period = match inner.upgrade() {
        Some(inner) => (inner.config.settings.keep_alive / 4)
            .clamp(Duration::from_millis(20), Duration::from_secs(1)),
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let pools: Vec<Arc<Pool>> = inner
            .pools
            .lock()
            .expect("pools lock poisoned")
            .values()
            .cloned()
            .collect();
        let mut expired = Vec::new();
        for pool in &pools {
            let mut idle = pool.idle.lock().expect("pool lock poisoned");
            let now = Instant::now();
            let mut i = 0;
            while i < idle.len() {
                if now >= idle[i].expires_at {
                    expired.push(idle.swap_remove(i));
                } else {
                    i += 1;
                }
            }
        }
        if !expired.is_empty() {
            tracing::debug!(stopped = expired.len(), "idle instances stopped");
        }
        for mut instance in expired {
            instance.kill();
        }
        // Forget pools with no instances and no callers; they are cheap to
        // make again. (Our own clones must go first, or every pool looks
        // held.)
        drop(pools);
        let mut map = inner.pools.lock().expect("pools lock poisoned");
        map.retain(|_, pool| {
            Arc::strong_count(pool) > 1
                || pool.busy.load(Ordering::Acquire) > 0
                || !pool.idle.lock().expect("pool lock poisoned").is_empty()
        });
    }
}

/// Blots `secrets` out of a run's logs and error, which the function's
/// owner reads and which are stored; the output is the function's answer
/// and goes out as it is.
fn redact(outcome: &mut Outcome, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    logs::redact(&mut outcome.logs, secrets);
    if let Some(error) = &mut outcome.error {
        logs::redact(&mut error.message, secrets);
        logs::redact(&mut error.traceback, secrets);
    }
}

fn outcome(
    end: CallEnd,
    logs: LogCapture,
    started: Instant,
    cold_start: bool,
    timeout: Duration,
) -> Outcome {
    let (logs, logs_truncated) = logs.finish();
    let (status, output, error) = match end {
        CallEnd::Answered(Ok(output)) => (RunStatus::Succeeded, output, None),
        CallEnd::Answered(Err(e)) => (
            RunStatus::Failed,
            None,
            Some(RunError {
                kind: e.kind,
                message: e.message,
                traceback: e.traceback,
            }),
        ),
        CallEnd::TimedOut => (
            RunStatus::TimedOut,
            None,
            Some(RunError {
                kind: "Timeout".into(),
                message: format!(
                    "the call did not finish within its timeout of {} ms",
                    timeout.as_millis()
                ),
                traceback: String::new(),
            }),
        ),
        CallEnd::OutOfMemory(mb) => (
            RunStatus::OutOfMemory,
            None,
            Some(RunError {
                kind: "OutOfMemory".into(),
                message: format!("the instance ran out of memory (limit {mb} MiB) and was killed"),
                traceback: String::new(),
            }),
        ),
        CallEnd::Crashed(why) => (
            RunStatus::Crashed,
            None,
            Some(RunError {
                kind: "RunnerCrashed".into(),
                message: why,
                traceback: String::new(),
            }),
        ),
    };
    Outcome {
        status,
        output,
        error,
        logs,
        logs_truncated,
        duration: started.elapsed(),
        cold_start,
        cpu_time: None,
        peak_memory_bytes: None,
    }
}
