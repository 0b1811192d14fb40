//! Server settings. Every default is defined once: the server's own
//! here, the executor's in `kumo_executor::Settings`, the limits of
//! functions in `kumo_types::Limits`.

use std::path::PathBuf;
use std::time::Duration;

pub use kumo_builder::{NpmSource, PipSource};
pub use kumo_executor::{
    DEFAULT_FREEZE_AFTER, DEFAULT_KEEP_ALIVE, DEFAULT_PREWARM, DEFAULT_QUEUE_TIMEOUT,
    Settings as ExecutorSettings,
};
pub use kumo_sandbox::Isolation;
use kumo_types::Limits;

/// Where `kumo serve` listens when not told.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Where `kumo serve` keeps its data when not told.
pub const DEFAULT_DATA_DIR: &str = ".kumo";
/// How long shutdown waits for calls in flight.
pub const DEFAULT_DRAIN_TIMEOUT_MS: u64 = 30_000;
/// How long a connection may take to send a request's headers, from when
/// it opened or from the end of its previous response: long enough for a
/// slow client, short enough that idle and half-sent connections go.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
/// How long log lines are kept (a week).
pub const DEFAULT_LOG_RETENTION_SECS: u64 = 7 * 24 * 3600;
/// How many log lines are kept at most, over all functions.
pub const DEFAULT_LOG_MAX_LINES: u64 = 1_000_000;
/// How long run records are kept (a week).
pub const DEFAULT_RUN_RETENTION_SECS: u64 = 7 * 24 * 3600;
/// How many run records are kept at most, over all functions.
pub const DEFAULT_RUN_MAX_RECORDS: u64 = 1_000_000;
/// How much of a run's input and of its output its record keeps (the
/// rest is cut, and the record says so and gives the full size): enough
/// for any ordinary event or answer to be kept whole and replayed, a
/// hundredth of the 6 MiB a body may be.
pub const DEFAULT_RUN_PAYLOAD_BYTES: usize = 64 * 1024;
/// The bytes run history (records and log lines) may hold over all
/// projects; the oldest finished runs go first beyond it.
pub const DEFAULT_RUN_HISTORY_BYTES: u64 = 1024 * 1024 * 1024;
/// The bytes one project's run history may hold, so that one project's
/// flood does not push out the others' history.
pub const DEFAULT_PROJECT_HISTORY_BYTES: u64 = 256 * 1024 * 1024;

/// What is kept of logs and runs.
#[derive(Debug, Clone)]
pub struct Retention {
    pub log_age: Duration,
    pub log_lines: u64,
    pub run_age: Duration,
    pub runs: u64,
    /// How much of a run's input and of its output its record keeps.
    pub run_payload_bytes: usize,
    /// The bytes run history may hold over all projects.
    pub history_bytes: u64,
    /// The bytes one project's run history may hold.
    pub project_history_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            log_age: Duration::from_secs(DEFAULT_LOG_RETENTION_SECS),
            log_lines: DEFAULT_LOG_MAX_LINES,
            run_age: Duration::from_secs(DEFAULT_RUN_RETENTION_SECS),
            runs: DEFAULT_RUN_MAX_RECORDS,
            run_payload_bytes: DEFAULT_RUN_PAYLOAD_BYTES,
            history_bytes: DEFAULT_RUN_HISTORY_BYTES,
            project_history_bytes: DEFAULT_PROJECT_HISTORY_BYTES,
        }
    }
}
/// How long an unused dependency layer is kept (a week).
pub const DEFAULT_LAYER_TTL_SECS: u64 = 7 * 24 * 3600;
/// How long one dependency build may take.
pub const DEFAULT_BUILD_TIMEOUT_SECS: u64 = 600;
/// Memory of a dependency build's sandbox.
pub const DEFAULT_BUILD_MEMORY_MB: u64 = 2048;

/// Where dependencies come from and how builds run.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// A pip wheel to install Python dependencies with; found when unset.
    pub pip: Option<PathBuf>,
    pub pip_source: PipSource,
    /// npm's package directory; found when unset.
    pub npm: Option<PathBuf>,
    pub npm_source: NpmSource,
    pub timeout: Duration,
    pub memory_mb: u64,
    /// Layers no active deployment uses are removed after this long.
    pub layer_ttl: Duration,
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            pip: None,
            pip_source: PipSource::default(),
            npm: None,
            npm_source: NpmSource::default(),
            timeout: Duration::from_secs(DEFAULT_BUILD_TIMEOUT_SECS),
            memory_mb: DEFAULT_BUILD_MEMORY_MB,
            layer_ttl: Duration::from_secs(DEFAULT_LAYER_TTL_SECS),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The data directory: database, files, runners.
    pub data_dir: PathBuf,
    /// A database URL; default SQLite in the data dir.
    pub database_url: Option<String>,
    /// The Python interpreter; default the fastest one found.
    pub python: Option<PathBuf>,
    /// The `node` binary; default the first found (Node.js is optional).
    pub node: Option<PathBuf>,
    /// The base URL of the server (dashboard, API); default from the
    /// listen address.
    pub public_url: Option<String>,
    /// A second listener that serves only functions (`/fn/…`, `/p/…`), so
    /// that their pages have an origin of their own.
    pub functions_listen: Option<std::net::SocketAddr>,
    /// The base URL of the functions' origin, named in every function's
    /// `url`; default from `functions_listen` when that is set.
    pub functions_url: Option<String>,
    /// Serve `/metrics` to anyone; by default it needs an admin's token
    /// (it names every project and function).
    pub public_metrics: bool,
    /// Sandbox function answers on the main listener
    /// (`Content-Security-Policy: sandbox`), which also serves the
    /// dashboard and the API. Only `kumo dev` turns it off: there the
    /// functions are the developer's own code on a local server.
    pub sandbox_function_pages: bool,
    /// The admin's API token on first start (`KUMO_BOOTSTRAP_TOKEN`).
    pub bootstrap_token: Option<String>,
    /// The key that encrypts secrets, base64 of 32 bytes
    /// (`KUMO_SECRET_KEY`); default: `secret.key` in the data dir.
    pub secret_key: Option<String>,
    /// How instances are kept and calls queued (the executor's defaults).
    pub executor: kumo_executor::Settings,
    pub drain_timeout: Duration,
    /// How instances are confined; `Process` is for development only.
    pub isolation: Isolation,
    /// Dependency builds.
    pub builds: BuildConfig,
    /// What is kept of log lines and run records.
    pub retention: Retention,
    /// Idle and half-sent connections are closed after this long without
    /// a request's headers.
    pub header_timeout: Duration,
    /// The most open connections; default (`None`): three quarters of the
    /// descriptor limit, less a reserve. Never more than that.
    pub max_connections: Option<usize>,
    /// Print nothing on standard output (no first-start banner, no
    /// listening line): for a server embedded in another command.
    pub quiet: bool,
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            database_url: None,
            python: None,
            node: None,
            public_url: None,
            functions_listen: None,
            functions_url: None,
            public_metrics: false,
            sandbox_function_pages: true,
            bootstrap_token: None,
            secret_key: None,
            executor: kumo_executor::Settings::default(),
            drain_timeout: Duration::from_millis(DEFAULT_DRAIN_TIMEOUT_MS),
            isolation: Isolation::Namespaces,
            builds: BuildConfig::default(),
            retention: Retention::default(),
            header_timeout: Duration::from_millis(DEFAULT_HEADER_TIMEOUT_MS),
            max_connections: None,
            quiet: false,
            limits: Limits::default(),
        }
    }
}
