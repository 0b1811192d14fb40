//! The Kumo server: the API under `/api/v1`, the public gateway under
//! `/fn/…`, auth, and the off-path recording of runs.
//!
//! [`serve`] is the whole server: it opens the store, installs the runners,
//! starts the executor, binds, and runs until the shutdown future resolves.
//! [`app`] builds the router from a [`State`] so tests can drive it.
//!
//! This crate does not spawn processes (the executor does) and does not
//! touch SQL (the store does).

mod access;
mod api;
mod auth;
mod builds;
mod checks;
pub mod config;
mod conns;
mod cors;
mod dashboard;
mod deploy;
mod dispatch;
mod environment;
mod error;
mod extract;
mod gateway;
mod livelogs;
mod metrics;
mod projects;
mod prometheus;
mod recorder;
mod registry;
mod retention;
pub mod routes;
mod secrets;
mod state;
mod upload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::get;
use kumo_executor::{Executor, ExecutorConfig};
use kumo_runtimes::Toolchain;
use kumo_sandbox::{Isolation, Sandbox, SandboxConfig};
use kumo_store::Store;

pub use config::Config;
pub use error::INVOCATION_HEADER;
pub use state::State;
// Public for the benchmarks; not an interface for other crates.
pub use gateway::{EventParts, Identity, encode_event};

/// Runs the sandbox helper (`kumo __sandbox`); never returns.
pub fn run_sandbox_helper() -> ! {
    kumo_sandbox::run_helper()
}

/// The router: API, gateway, docs, health and metrics.
pub fn app(state: State) -> Router {
    let body_limit = state.config().limits.body_bytes;
    let deploy_limit = state.config().limits.deployment_bytes + 1024 * 1024;
    Router::new()
        .merge(api::router(deploy_limit, body_limit))
        .merge(gateway::router(state.config().sandbox_function_pages))
        .merge(api::openapi::router())
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus::metrics))
        .route("/", get(dashboard::index))
        .route("/assets/{*path}", get(dashboard::asset))
        .route(
            "/favicon.svg",
            get(|headers| dashboard::top_level("favicon.svg", headers)),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The router of the functions' own origin: the gateway and `/healthz`,
/// nothing of the API or the dashboard.
pub fn functions_app(state: State) -> Router {
    let body_limit = state.config().limits.body_bytes;
    Router::new()
        .merge(gateway::router(false))
        .route("/healthz", get(healthz))
        .fallback(not_found_on_functions)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn not_found_on_functions() -> error::ApiError {
    error::ApiError::new(
        kumo_types::ErrorCode::NotFound,
        "this address serves functions only: /fn/{project}/{function} and /p/{project}/…",
    )
}

/// Runs the server on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr: SocketAddr = listener
        .local_addr()
        .context("reading the listening address")?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data dir {}", config.data_dir.display()))?;
    restrict_permissions(&config.data_dir);
    let store = Store::open(&config.data_dir, config.database_url.as_deref())
        .await
        .context("opening the store")?;
    store.files().clean_partial();
    auth::bootstrap(&store, &config, addr).await?;
    let secrets = secrets::Secrets::load(&config.data_dir, config.secret_key.as_deref())
        .context("loading the key that encrypts secrets")?;

    let toolchain = Toolchain::install(
        &config.data_dir.join("runtime"),
        config.python.as_deref(),
        config.node.as_deref(),
    )
    .context("preparing the runtimes")?;
    tracing::info!(python = %toolchain.python.display(), "python runtime ready");
    match &toolchain.node {
        Some(node) => tracing::info!(node = %node.display(), "node runtime ready"),
        None => tracing::info!("no node binary found: the node runtime is off (see --node)"),
    }
    let sandbox = Arc::new(start_sandbox(&config)?);
    let builder = kumo_builder::Builder::new(kumo_builder::BuilderConfig {
        sandbox: sandbox.clone(),
        toolchain: toolchain.clone(),
        layers_dir: config.data_dir.join("layers"),
        pip: config.builds.pip.clone(),
        pip_source: config.builds.pip_source.clone(),
        npm: config.builds.npm.clone(),
        npm_source: config.builds.npm_source.clone(),
        timeout: config.builds.timeout,
        memory_bytes: config.builds.memory_mb * 1024 * 1024,
    })
    .context("preparing dependency builds")?;
    let (recorder, recorder_task) = recorder::Recorder::start(store.clone());
    let logs = Arc::new(livelogs::LogHub::new(
        recorder.clone(),
        store
            .max_log_line_id()
            .await
            .context("reading the last log line")?,
    ));
    let executor = Executor::start(ExecutorConfig {
        log_sink: Some(logs.clone() as Arc<dyn kumo_executor::LogSink>),
        toolchain,
        sandbox: sandbox.clone(),
        settings: config.executor.clone(),
        limits: config.limits.clone(),
    });
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let functions_listener = match config.functions_listen {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("binding the functions' listener on {at}"))?,
        ),
        None => None,
    };
    let functions_addr = functions_listener
        .as_ref()
        .map(|l| l.local_addr().context("reading the functions' address"))
        .transpose()?;
    let functions_url = config
        .functions_url
        .clone()
        .or_else(|| functions_addr.map(|at| format!("http://{at}")))
        .unwrap_or_else(|| public_url.clone());
    let secrets = Arc::new(secrets);
    let metrics = Arc::new(metrics::Metrics::default());
    let state = State::new(state::Parts {
        registry: registry::Registry::new(registry::Sources {
            store: store.clone(),
            executor: executor.clone(),
            builder: builder.clone(),
            secrets: secrets.clone(),
            metrics: metrics.clone(),
        }),
        builder,
        secrets,
        logs,
        metrics,
        auth: auth::Auth::new(store.clone()),
        config,
        store: store.clone(),
        executor: executor.clone(),
        recorder: recorder.clone(),
        public_url,
        functions_url,
        counters: state::Counters::default(),
    });
    dispatch::recover_unfinished(&state).await?;
    builds::resume(&state).await?;
    let evictor = tokio::spawn(builds::evict_unused(state.clone()));
    let pruner = tokio::spawn(retention::prune(state.clone()));

    if !state.config().quiet {
        println!("kumo listening on http://{addr}");
        if let Some(at) = functions_addr {
            println!("functions listening on http://{at}");
        }
    }
    tracing::info!(%addr, functions = ?functions_addr, "listening");
    let grace = state.config().drain_timeout;
    let limits = conns::ConnLimits {
        // Within a day: deadlines are instants, which must not overflow.
        header_timeout: state
            .config()
            .header_timeout
            .clamp(Duration::from_millis(1), Duration::from_secs(24 * 3600)),
        max_connections: conns::connection_cap(state.config().max_connections),
    };
    tracing::info!(
        max_connections = limits.max_connections,
        header_timeout_ms = limits.header_timeout.as_millis() as u64,
        "accepting connections"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    // With a functions' listener, the two share the connection cap.
    let (limits, functions_limits) = match &functions_listener {
        Some(_) => {
            let half = (limits.max_connections / 2).max(1);
            (
                conns::ConnLimits {
                    max_connections: limits.max_connections - half,
                    ..limits
                },
                conns::ConnLimits {
                    max_connections: half,
                    ..limits
                },
            )
        }
        None => (limits, limits),
    };
    let server = tokio::spawn(conns::serve(
        listener,
        app(state.clone()),
        limits,
        stop_rx.clone(),
    ));
    let functions_server = functions_listener.map(|listener| {
        tokio::spawn(conns::serve(
            listener,
            functions_app(state.clone()),
            functions_limits,
            stop_rx.clone(),
        ))
    });

    // Wait for the signal, then give in-flight requests the grace period.
    let mut stop_rx = stop_rx;
    let _ = stop_rx.wait_for(|stopped| *stopped).await;
    tracing::info!("shutting down: draining calls in flight");
    let executor_drain = executor.shutdown(grace);
    let (served, ()) = tokio::join!(
        tokio::time::timeout(grace + Duration::from_secs(1), server),
        executor_drain
    );
    match served {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
        Err(_) => tracing::warn!("requests still open after the grace period; closing them"),
    }
    if let Some(functions_server) = functions_server {
        functions_server.abort();
    }
    evictor.abort();
    pruner.abort();
    drop(state);
    // Everything recorded so far is written; nothing records any more
    // (the executor holds a sender for log lines, so the writer is
    // stopped rather than waited for).
    recorder.flush().await;
    recorder_task.abort();
    let _ = recorder_task.await;
    store.close().await;
    sandbox.shutdown();
    tracing::info!("stopped");
    Ok(())
}

/// The sandbox, or a clear refusal to start when the host cannot isolate.
fn start_sandbox(config: &Config) -> anyhow::Result<Sandbox> {
    use sha2::Digest;
    let data_dir =
        std::fs::canonicalize(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    let scope = hex::encode(&sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes())[..6]);
    let helper_exe =
        std::env::current_exe().context("finding the kumo binary to run the sandbox helper")?;
    if config.isolation == Isolation::Process {
        deploy::warn_unsafe_mode();
    }
    Sandbox::new(SandboxConfig {
        isolation: config.isolation,
        helper_exe,
        work_dir: config.data_dir.join("runtime").join("sandbox"),
        scope,
    })
    .context("starting the sandbox")
}

fn restrict_permissions(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn not_found() -> error::ApiError {
    error::ApiError::new(
        kumo_types::ErrorCode::NotFound,
        "no such endpoint; the API lives under /api/v1 (see /docs)",
    )
}
