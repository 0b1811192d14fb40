//! `kumo`: the server and the command-line client in one binary.
//!
//! This crate is the CLI definition and glue only; the server lives in
//! `kumo-server`, the client commands in `kumo-cli`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kumo_server::config::{self, Config};

#[derive(Parser)]
#[command(
    name = "kumo",
    version,
    about = "Self-hosted serverless functions: from code to a live, sandboxed endpoint"
)]
struct Cli {
    /// The project (default: the `name` of the nearest kumo.toml).
    #[arg(long, global = true, env = "KUMO_PROJECT")]
    project: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Kumo server.
    Serve(Box<ServeArgs>),
    /// Log in to a server (a token, or a user name and password); saves
    /// the credentials for the other commands (KUMO_URL and KUMO_TOKEN
    /// override them).
    Login {
        /// The server (default: KUMO_URL, the last one, or http://127.0.0.1:8080).
        #[arg(long)]
        url: Option<String>,
        /// An API token (else asked for, or read from standard input).
        #[arg(long)]
        token: Option<String>,
        /// Log in as this user, with a password.
        #[arg(long)]
        username: Option<String>,
        /// Read the password (or the token) from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Forget the saved credentials.
    Logout,
    /// Who the saved credentials log in as.
    Whoami {
        #[arg(long)]
        json: bool,
    },
    /// Start a project from a template: kumo.toml, code, .kumoignore.
    Init {
        /// Where (default: here).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// python, python-api, node, fastapi, webhook, scheduled.
        #[arg(long, short, default_value = "python")]
        template: String,
        /// The project's name (default: the directory's).
        #[arg(long)]
        name: Option<String>,
        /// Overwrite an existing kumo.toml and files.
        #[arg(long)]
        force: bool,
        /// List the templates.
        #[arg(long)]
        list: bool,
    },
    /// Serve the project on this machine and redeploy on every change.
    Dev {
        /// Port on 127.0.0.1 (0: any free one).
        #[arg(long, default_value_t = 8787)]
        port: u16,
        /// Run functions in the full sandbox (needs namespaces and cgroups, as root).
        #[arg(long)]
        sandbox: bool,
        /// Do not watch for changes.
        #[arg(long)]
        no_watch: bool,
    },
    /// Deploy the project: variables, secrets, functions, routes.
    Deploy {
        /// Only this function.
        function: Option<String>,
        /// Read secret values as NAME=value lines from standard input.
        #[arg(long)]
        secrets_from_stdin: bool,
        /// Ask again for secrets the server already has.
        #[arg(long)]
        update_secrets: bool,
    },
    /// Call a function (the event from --data or standard input).
    Invoke {
        function: String,
        /// The event, as JSON.
        #[arg(long, short)]
        data: Option<String>,
        /// Queue the call and return its run id.
        #[arg(long = "async")]
        is_async: bool,
        /// Show the logs, status and timing too.
        #[arg(long, short)]
        verbose: bool,
        #[arg(long)]
        json: bool,
    },
    /// A function's log lines.
    Logs {
        function: String,
        /// Keep printing new lines as they come.
        #[arg(long, short)]
        follow: bool,
        /// Only this recent: 30s, 15m, 1h, 2d.
        #[arg(long)]
        since: Option<String>,
        /// Only this run's lines.
        #[arg(long)]
        run: Option<String>,
        /// Most lines (not with --follow).
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// The project's functions (or every project's).
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// A function's versions, instances, last call and error rate.
    Status {
        function: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a function with its versions and runs.
    Rm {
        function: String,
        /// Do not ask.
        #[arg(long, short)]
        yes: bool,
    },
    /// Write a function's live code and a kumo.toml into a directory.
    Pull {
        function: String,
        /// Where (default: ./FUNCTION; new or empty).
        dir: Option<PathBuf>,
    },
    /// Go back to the previous version (or to VERSION).
    Rollback {
        function: String,
        version: Option<i64>,
    },
    /// A function's versions.
    Versions {
        function: String,
        #[arg(long)]
        json: bool,
    },
    /// The project's environment variables and secrets.
    #[command(subcommand)]
    Env(EnvCommand),
    /// The project's routes (METHOD /path/:param → function).
    #[command(subcommand)]
    Routes(RoutesCommand),
    /// Open a function's URL in a browser.
    Open {
        function: String,
        /// Only print it.
        #[arg(long)]
        print: bool,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum EnvCommand {
    /// Set a variable (the value asked for, or from standard input, when not given).
    Set {
        key: String,
        value: Option<String>,
        /// Keep it encrypted and never show it again.
        #[arg(long)]
        secret: bool,
    },
    /// List the variables (secrets as ***).
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Remove a variable.
    Rm { key: String },
}

#[derive(Subcommand)]
enum RoutesCommand {
    /// List the routes.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Add a route: METHOD PATH FUNCTION (METHOD may be ANY).
    Add {
        method: String,
        path: String,
        function: String,
    },
    /// Remove a route by its id.
    Rm { id: String },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, default_value = config::DEFAULT_LISTEN, env = "KUMO_LISTEN")]
    listen: SocketAddr,
    /// Directory for the database, function files and runners.
    #[arg(long, default_value = config::DEFAULT_DATA_DIR, env = "KUMO_DATA_DIR")]
    data_dir: PathBuf,
    /// Database URL (default: SQLite in the data dir).
    #[arg(long, env = "KUMO_DATABASE_URL")]
    database_url: Option<String>,
    /// The Python interpreter for Python functions (default: the fastest found).
    #[arg(long, env = "KUMO_PYTHON")]
    python: Option<PathBuf>,
    /// The node binary for Node.js functions (default: /usr/bin/node or
    /// /usr/local/bin/node when present; without one, Node.js is off).
    #[arg(long, env = "KUMO_NODE")]
    node: Option<PathBuf>,
    /// The server's base URL as clients reach it: the dashboard, the API
    /// and, without --functions-url, functions (default: from the listen
    /// address).
    #[arg(long, env = "KUMO_PUBLIC_URL")]
    public_url: Option<String>,
    /// Also serve functions (`/fn/…`, `/p/…`, and nothing else) on this
    /// address: an origin apart from the dashboard's, where their pages may
    /// use cookies and storage of their own.
    #[arg(long, env = "KUMO_FUNCTIONS_LISTEN")]
    functions_listen: Option<SocketAddr>,
    /// The base URL of the functions' origin as clients reach it (e.g.
    /// `https://fn.example.com`), named in every function's `url`
    /// (default: from --functions-listen when that is set).
    #[arg(long, env = "KUMO_FUNCTIONS_URL")]
    functions_url: Option<String>,
    /// Serve /metrics without a token (by default an admin's token is
    /// needed: it names every project and function).
    #[arg(long, env = "KUMO_PUBLIC_METRICS")]
    public_metrics: bool,
    /// How long an idle instance stays warm, in milliseconds.
    #[arg(long, default_value_t = config::DEFAULT_KEEP_ALIVE.as_millis() as u64, env = "KUMO_KEEP_ALIVE_MS")]
    keep_alive_ms: u64,
    /// Learn each function's keep-alive from its idle times (never longer
    /// than --keep-alive-ms): `true` or `false`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "KUMO_ADAPTIVE_KEEP_ALIVE")]
    adaptive_keep_alive: bool,
    /// Bin width of the keep-alive's idle-time histograms, in milliseconds
    /// (for tests; the policy is meant for one-minute bins).
    #[arg(long, hide = true, env = "KUMO_KEEP_ALIVE_BIN_MS")]
    keep_alive_bin_ms: Option<u64>,
    /// How long a call waits for a free slot before 429, in milliseconds.
    #[arg(long, default_value_t = config::DEFAULT_QUEUE_TIMEOUT.as_millis() as u64, env = "KUMO_QUEUE_TIMEOUT_MS")]
    queue_timeout_ms: u64,
    /// How long shutdown waits for calls in flight, in milliseconds.
    #[arg(long, default_value_t = config::DEFAULT_DRAIN_TIMEOUT_MS, env = "KUMO_DRAIN_TIMEOUT_MS")]
    drain_timeout_ms: u64,
    /// How long a connection may take to send a request's headers, from
    /// when it opened or from its previous response, in milliseconds
    /// (idle and half-sent connections are closed after this long).
    #[arg(long, default_value_t = config::DEFAULT_HEADER_TIMEOUT_MS, env = "KUMO_HEADER_TIMEOUT_MS")]
    header_timeout_ms: u64,
    /// The most open connections (default: three quarters of the
    /// descriptor limit, less a reserve); at the cap, the connections idle
    /// the longest are closed to make room.
    #[arg(long, env = "KUMO_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// How functions are isolated: `namespaces` (Linux sandbox) or
    /// `process` (UNSAFE: plain processes, for development machines only).
    #[arg(long, default_value = "namespaces", env = "KUMO_ISOLATION", value_parser = parse_isolation)]
    isolation: config::Isolation,
    /// Default CPU per instance, in thousandths of a core (functions may
    /// set their own, up to 4000).
    #[arg(long, env = "KUMO_CPU_MILLICORES")]
    cpu_millicores: Option<u64>,
    /// Default processes and threads per instance (functions may set their
    /// own, up to 1024).
    #[arg(long, env = "KUMO_PIDS")]
    pids: Option<u64>,
    /// Default size of each instance's /tmp, in MiB (functions may set
    /// their own, up to 1024).
    #[arg(long, env = "KUMO_TMP_MB")]
    tmp_mb: Option<u64>,
    /// Sandboxes kept started and waiting per runtime, so a cold start
    /// only has to load the function's code (0: start each from nothing).
    #[arg(long, default_value_t = config::DEFAULT_PREWARM, env = "KUMO_PREWARM")]
    prewarm: usize,
    /// How long an idle instance may run on after its call before it is
    /// frozen, in milliseconds (0: at once; at most 1000).
    #[arg(long, default_value_t = config::DEFAULT_FREEZE_AFTER.as_millis() as u64, env = "KUMO_FREEZE_AFTER_MS")]
    freeze_after_ms: u64,
    /// The pip wheel that installs Python dependencies (default: Debian's
    /// /usr/share/python-wheels, or the interpreter's ensurepip).
    #[arg(long, env = "KUMO_PIP")]
    pip: Option<PathBuf>,
    /// The package index for Python dependencies (default: PyPI).
    #[arg(long, env = "KUMO_PIP_INDEX_URL")]
    pip_index_url: Option<String>,
    /// A local directory of wheels to install Python dependencies from.
    #[arg(long, env = "KUMO_PIP_FIND_LINKS")]
    pip_find_links: Option<PathBuf>,
    /// Install Python dependencies from --pip-find-links only, never from
    /// an index (builds then have no network).
    #[arg(long, env = "KUMO_PIP_OFFLINE")]
    pip_offline: bool,
    /// npm's package directory (default: the npm next to node).
    #[arg(long, env = "KUMO_NPM")]
    npm: Option<PathBuf>,
    /// The registry for Node.js dependencies (default: npm's).
    #[arg(long, env = "KUMO_NPM_REGISTRY")]
    npm_registry: Option<String>,
    /// An npm cache filled beforehand (`npm cache add`) to install Node.js
    /// dependencies from, offline (builds then have no network).
    #[arg(long, env = "KUMO_NPM_OFFLINE_CACHE")]
    npm_offline_cache: Option<PathBuf>,
    /// How long log lines are kept, in seconds.
    #[arg(long, default_value_t = config::DEFAULT_LOG_RETENTION_SECS, env = "KUMO_LOG_RETENTION_SECS")]
    log_retention_secs: u64,
    /// How many log lines are kept at most, over all functions.
    #[arg(long, default_value_t = config::DEFAULT_LOG_MAX_LINES, env = "KUMO_LOG_MAX_LINES")]
    log_max_lines: u64,
    /// How long run records (input, output, logs) are kept, in seconds.
    #[arg(long, default_value_t = config::DEFAULT_RUN_RETENTION_SECS, env = "KUMO_RUN_RETENTION_SECS")]
    run_retention_secs: u64,
    /// How many run records are kept at most, over all functions.
    #[arg(long, default_value_t = config::DEFAULT_RUN_MAX_RECORDS, env = "KUMO_RUN_MAX_RECORDS")]
    run_max_records: u64,
    /// How much of a run's input and of its output its record keeps, in
    /// bytes (beyond it the stored copy is cut and marked; callers still
    /// get the whole output).
    #[arg(long, default_value_t = config::DEFAULT_RUN_PAYLOAD_BYTES, env = "KUMO_RUN_PAYLOAD_BYTES")]
    run_payload_bytes: usize,
    /// How many bytes run history (run records and log lines) may hold
    /// over all projects; beyond it the oldest finished runs are removed,
    /// from the largest project first.
    #[arg(long, default_value_t = config::DEFAULT_RUN_HISTORY_BYTES, env = "KUMO_RUN_HISTORY_BYTES")]
    run_history_bytes: u64,
    /// How many bytes one project's run history may hold; beyond it the
    /// project's oldest finished runs are removed.
    #[arg(long, default_value_t = config::DEFAULT_PROJECT_HISTORY_BYTES, env = "KUMO_PROJECT_HISTORY_BYTES")]
    project_history_bytes: u64,
    /// How long one dependency build may take, in seconds.
    #[arg(long, default_value_t = config::DEFAULT_BUILD_TIMEOUT_SECS, env = "KUMO_BUILD_TIMEOUT_SECS")]
    build_timeout_secs: u64,
    /// How long a dependency layer no active deployment uses is kept, in
    /// seconds (then it is removed, and rebuilt if a rollback needs it).
    #[arg(long, default_value_t = config::DEFAULT_LAYER_TTL_SECS, env = "KUMO_LAYER_TTL_SECS")]
    layer_ttl_secs: u64,
}

fn parse_isolation(s: &str) -> Result<config::Isolation, String> {
    match s {
        "namespaces" => Ok(config::Isolation::Namespaces),
        "process" => Ok(config::Isolation::Process),
        other => Err(format!(
            "unknown isolation '{other}'; use 'namespaces' or 'process'"
        )),
    }
}

fn main() -> anyhow::Result<()> {
    // The sandbox helper is this binary re-executed; it must start before
    // anything else (single-threaded, no runtime, no argument parsing).
    if std::env::args_os().nth(1).is_some_and(|a| a == "__sandbox") {
        kumo_server::run_sandbox_helper();
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        command => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let result = runtime.block_on(client_command(cli.project, command));
            match result {
                Ok(true) => Ok(()),
                Ok(false) => std::process::exit(1),
                Err(e) => {
                    // An error may quote a function's code or output.
                    let why = format!("{e:#}");
                    anstream::eprintln!(
                        "{} {}",
                        kumo_cli::output::paint(kumo_cli::output::BAD, "error:"),
                        kumo_cli::output::untrusted(&why)
                    );
                    std::process::exit(1)
                }
            }
        }
    }
}

/// Runs a client command; `Ok(false)` when it ran but failed (a failed
/// call, a deploy that did not go live).
async fn client_command(project: Option<String>, command: Command) -> anyhow::Result<bool> {
    use kumo_cli::commands;
    let project = || kumo_cli::project(project.as_deref());
    match command {
        Command::Serve(_) => unreachable!("served above"),
        Command::Login {
            url,
            token,
            username,
            password_stdin,
        } => {
            commands::login(commands::Login {
                url,
                token,
                username,
                password_stdin,
            })
            .await?;
        }
        Command::Logout => commands::logout()?,
        Command::Whoami { json } => commands::whoami(json).await?,
        Command::Init {
            dir,
            template,
            name,
            force,
            list,
        } => {
            if list {
                commands::list_templates();
            } else {
                commands::init(&dir, &template, name.as_deref(), force)?;
            }
        }
        Command::Dev {
            port,
            sandbox,
            no_watch,
        } => {
            let manifest = kumo_cli::manifest_here()?.ok_or_else(|| {
                anyhow::anyhow!("no kumo.toml here or above; start one with `kumo init`")
            })?;
            let path = manifest.root.join(kumo_cli::manifest::FILE);
            kumo_cli::dev::run(
                &path,
                &kumo_cli::dev::Options {
                    port,
                    sandbox,
                    watch: !no_watch,
                },
            )
            .await?;
        }
        Command::Deploy {
            function,
            secrets_from_stdin,
            update_secrets,
        } => {
            let manifest = kumo_cli::manifest_here()?.ok_or_else(|| {
                anyhow::anyhow!("no kumo.toml here or above; start one with `kumo init`")
            })?;
            let session = kumo_cli::Session::open()?;
            let summary = kumo_cli::deploy::run(
                &session.client,
                &manifest,
                &kumo_cli::deploy::Options {
                    only: function,
                    secrets_from_stdin,
                    update_secrets,
                },
            )
            .await?;
            return Ok(summary.failed.is_empty());
        }
        Command::Invoke {
            function,
            data,
            is_async,
            verbose,
            json,
        } => {
            return commands::invoke(
                &project()?,
                &function,
                data.as_deref(),
                is_async,
                verbose,
                json,
            )
            .await;
        }
        Command::Logs {
            function,
            follow,
            since,
            run,
            limit,
            json,
        } => {
            let filter = kumo_types::LogsQuery {
                since,
                run,
                limit,
                ..kumo_types::LogsQuery::default()
            };
            commands::logs(&project()?, &function, filter, follow, json).await?;
        }
        Command::Ls { json } => {
            let given = project().ok();
            commands::ls(given.as_deref(), json).await?;
        }
        Command::Status { function, json } => {
            commands::status(&project()?, &function, json).await?
        }
        Command::Rm { function, yes } => commands::rm(&project()?, &function, yes).await?,
        Command::Pull { function, dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&function));
            commands::pull(&project()?, &function, &dir).await?;
        }
        Command::Rollback { function, version } => {
            commands::rollback(&project()?, &function, version).await?
        }
        Command::Versions { function, json } => {
            commands::versions(&project()?, &function, json).await?
        }
        Command::Env(EnvCommand::Set { key, value, secret }) => {
            commands::env_set(&project()?, &key, value.as_deref(), secret).await?
        }
        Command::Env(EnvCommand::Ls { json }) => commands::env_ls(&project()?, json).await?,
        Command::Env(EnvCommand::Rm { key }) => commands::env_rm(&project()?, &key).await?,
        Command::Routes(RoutesCommand::Ls { json }) => {
            commands::routes_ls(&project()?, json).await?
        }
        Command::Routes(RoutesCommand::Add {
            method,
            path,
            function,
        }) => commands::routes_add(&project()?, &method, &path, &function).await?,
        Command::Routes(RoutesCommand::Rm { id }) => commands::routes_rm(&project()?, &id).await?,
        Command::Open { function, print } => commands::open(&project()?, &function, print).await?,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "kumo", &mut std::io::stdout());
        }
    }
    Ok(true)
}

/// Colours in the server's log only on a terminal, and never when
/// `NO_COLOR` is set (<https://no-color.org>): a log written to a file or
/// a pipe stays plain text.
fn log_colours() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KUMO_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(log_colours())
        .init();
    let defaults = Config::default();
    let mut limits = defaults.limits.clone();
    if let Some(pids) = args.pids {
        limits.pids = pids.max(8);
    }
    if let Some(mb) = args.tmp_mb {
        limits.tmp_bytes = mb.max(1) * 1024 * 1024;
    }
    if let Some(cpu) = args.cpu_millicores {
        limits.cpu_millicores = cpu.max(10);
    }
    let config = Config {
        data_dir: args.data_dir,
        database_url: args.database_url,
        python: args.python,
        node: args.node,
        public_url: args.public_url,
        functions_listen: args.functions_listen,
        functions_url: args.functions_url,
        public_metrics: args.public_metrics,
        bootstrap_token: std::env::var("KUMO_BOOTSTRAP_TOKEN").ok(),
        secret_key: std::env::var("KUMO_SECRET_KEY").ok(),
        executor: config::ExecutorSettings {
            keep_alive: Duration::from_millis(args.keep_alive_ms),
            adaptive_keep_alive: args.adaptive_keep_alive,
            keep_alive_bin: args
                .keep_alive_bin_ms
                .map_or(defaults.executor.keep_alive_bin, Duration::from_millis),
            queue_timeout: Duration::from_millis(args.queue_timeout_ms),
            prewarm: args.prewarm.min(64),
            freeze_after: Some(Duration::from_millis(args.freeze_after_ms.min(1000))),
            ..defaults.executor.clone()
        },
        drain_timeout: Duration::from_millis(args.drain_timeout_ms),
        header_timeout: Duration::from_millis(args.header_timeout_ms.max(1)),
        max_connections: args.max_connections,
        isolation: args.isolation,
        retention: config::Retention {
            log_age: Duration::from_secs(args.log_retention_secs),
            log_lines: args.log_max_lines.max(1000),
            run_age: Duration::from_secs(args.run_retention_secs),
            runs: args.run_max_records.max(1000),
            run_payload_bytes: args.run_payload_bytes.max(1024),
            history_bytes: args.run_history_bytes.max(1024 * 1024),
            project_history_bytes: args.project_history_bytes.max(1024 * 1024),
        },
        builds: config::BuildConfig {
            pip: args.pip,
            pip_source: config::PipSource {
                index_url: args.pip_index_url,
                find_links: args.pip_find_links,
                offline: args.pip_offline,
            },
            npm: args.npm,
            npm_source: config::NpmSource {
                registry: args.npm_registry,
                offline_cache: args.npm_offline_cache,
            },
            timeout: Duration::from_secs(args.build_timeout_secs.max(1)),
            layer_ttl: Duration::from_secs(args.layer_ttl_secs),
            ..defaults.builds.clone()
        },
        limits,
        ..defaults
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let shutdown = shutdown_signal()?;
        kumo_server::serve(config, listener, shutdown).await
    })
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed here, at
/// once, so a signal that arrives before the server first polls the
/// returned future still ends in a clean shutdown.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
