//! Persistence: accounts, projects, functions, deployments and runs in SQL,
//! and function files in a content-addressed store on disk.
//!
//! SQLite (WAL) in the data dir is the default; the SQL is kept portable so
//! that PostgreSQL can serve the same schema. Migrations are embedded and
//! run at open. This crate knows nothing of HTTP or of running code; it
//! hands out rows and paths.

mod files;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use kumo_types::Settings;
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{FromRow, SqlitePool};

pub use files::{FileEntry, FileStore, Manifest};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("file store error at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which rows a caller may see: an owner's, or (admin) everyone's.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Owner(&'a str),
    All,
}

impl Scope<'_> {
    fn owner(&self) -> Option<&str> {
        match self {
            Scope::Owner(id) => Some(id),
            Scope::All => None,
        }
    }
}

/// A new sortable id (ULID, lower-case).
pub fn new_id() -> String {
    ulid::Ulid::generate().to_string().to_ascii_lowercase()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub is_admin: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct TokenRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

#[derive(Debug, Clone, FromRow)]
pub struct ProjectRow {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    pub description: String,
    pub created_at: i64,
    /// CORS settings as JSON, if the project has any.
    pub cors: Option<String>,
}

/// A project's route.
#[derive(Debug, Clone, FromRow)]
pub struct RouteRow {
    pub id: String,
    pub project_id: String,
    /// An HTTP method, or `ANY`.
    pub method: String,
    pub path: String,
    pub function: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct FunctionRow {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub runtime: String,
    /// Its settings, kept as one JSON object.
    #[sqlx(json)]
    pub settings: Settings,
    pub active_version: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a function runs with: its runtime and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionConfig {
    pub runtime: String,
    pub settings: Settings,
}

#[derive(Debug, Clone, FromRow)]
pub struct DeploymentRow {
    pub id: String,
    pub function_id: String,
    pub version: i64,
    pub runtime: String,
    pub entrypoint: String,
    pub handler: String,
    pub content_hash: String,
    pub manifest: String,
    pub file_count: i64,
    pub size_bytes: i64,
    pub created_at: i64,
    /// `building`, `ready` or `failed`.
    pub status: String,
    /// Normalized dependencies, when it has any.
    pub deps: Option<String>,
    /// Key of its dependency layer.
    pub layer: Option<String>,
    /// Why its build or load failed.
    pub error: Option<String>,
    pub build_log: Option<String>,
}

/// One environment variable of a project; a secret's `value` is sealed.
#[derive(Debug, Clone, FromRow)]
pub struct EnvVarRow {
    pub project_id: String,
    pub name: String,
    pub value: String,
    pub secret: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One line a function printed.
#[derive(Debug, Clone, FromRow)]
pub struct LogLineRow {
    pub id: i64,
    pub function_id: String,
    pub run_id: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When it was read, in Unix milliseconds.
    pub time: i64,
    pub line: String,
}

/// Which lines to read.
#[derive(Debug, Clone, Default)]
pub struct LogQuery<'a> {
    /// Lines with a greater id only.
    pub after: Option<i64>,
    /// Lines read at this time (Unix ms) or later only.
    pub since_ms: Option<i64>,
    /// The lines of this run only.
    pub run_id: Option<&'a str>,
}

/// A deployment and the names that locate it.
#[derive(Debug, Clone)]
pub struct LocatedDeployment {
    pub deployment: DeploymentRow,
    pub function: FunctionRow,
    pub project: String,
    pub owner_id: String,
}

impl DeploymentRow {
    pub fn manifest(&self) -> Result<Manifest> {
        serde_json::from_str(&self.manifest)
            .map_err(|e| StoreError::Corrupt(format!("manifest of deployment {}: {e}", self.id)))
    }
}

/// What a new deployment stores.
#[derive(Debug, Clone)]
pub struct NewDeployment<'a> {
    pub runtime: &'a str,
    pub entrypoint: &'a str,
    pub handler: &'a str,
    pub content_hash: &'a str,
    pub manifest: &'a Manifest,
    /// `ready` (active at once) or `building` (active once built).
    pub status: &'a str,
    pub deps: Option<&'a str>,
    pub layer: Option<&'a str>,
}

#[derive(Debug, Clone, FromRow)]
pub struct InvocationRow {
    pub id: String,
    pub owner_id: String,
    pub project_id: String,
    pub function_id: String,
    pub project: String,
    pub function: String,
    pub version: Option<i64>,
    pub trigger_kind: String,
    pub status: String,
    pub input: Option<String>,
    pub output: Option<String>,
    pub error: Option<String>,
    pub logs: String,
    pub logs_truncated: i64,
    /// The input's full size in bytes when the stored `input` was cut at
    /// the cap (then it holds the input's first bytes); `None`: whole.
    pub input_size: Option<i64>,
    /// The same for `output`.
    pub output_size: Option<i64>,
    pub duration_us: i64,
    pub cold_start: i64,
    pub cpu_us: Option<i64>,
    pub peak_memory: Option<i64>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// What a run record costs beyond its texts, roughly: its other columns
/// and its entries in the indexes.
const RUN_OVERHEAD: i64 = 256;
/// What a log line costs beyond its text, roughly: its other columns and
/// its entries in three indexes.
const LINE_OVERHEAD: i64 = 160;
/// The write-ahead log is cut back to this size after a checkpoint (a
/// large batch may grow it for a moment; it does not stay that large).
const WAL_SIZE_LIMIT: i64 = 4 * 1024 * 1024;

impl InvocationRow {
    /// The bytes this run holds on disk, roughly: its record, and its log
    /// lines (its logs again, a line at a time). Retention's byte budget
    /// counts this.
    pub fn stored_bytes(&self) -> i64 {
        let len = |s: &str| i64::try_from(s.len()).unwrap_or(i64::MAX / 8);
        let text = |s: &Option<String>| s.as_deref().map_or(0, len);
        let lines = if self.logs.is_empty() {
            0
        } else {
            len(&self.logs) + LINE_OVERHEAD * (self.logs.matches('\n').count() as i64 + 1)
        };
        RUN_OVERHEAD
            + 3 * len(&self.id)
            + len(&self.project)
            + len(&self.function)
            + text(&self.input)
            + text(&self.output)
            + text(&self.error)
            + len(&self.logs)
            + lines
    }
}

/// The store: a SQL pool and the file store.
#[derive(Clone)]
pub struct Store {
    db: SqlitePool,
    files: FileStore,
}

impl Store {
    /// Opens (creating if needed) the store and runs the migrations.
    pub async fn open(data_dir: &Path, database_url: Option<&str>) -> Result<Store> {
        let files = FileStore::open(data_dir)?;
        let options = match database_url {
            Some(url) => SqliteConnectOptions::from_str(url)?,
            None => SqliteConnectOptions::new().filename(data_dir.join("kumo.db")),
        }
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        // Pages freed by retention go back to the file system (retention
        // asks for it after removing), so the file shrinks, not only
        // stops growing.
        .auto_vacuum(SqliteAutoVacuum::Incremental)
        .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string())
        .busy_timeout(Duration::from_secs(10));
        let db = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        // A database made before incremental vacuum was asked for keeps
        // its old mode until rewritten once.
        let (mode,): (i64,) = sqlx::query_as("PRAGMA auto_vacuum").fetch_one(&db).await?;
        if mode != 2 {
            tracing::info!("rewriting the database once, so that freed space is given back");
            sqlx::query("VACUUM").execute(&db).await?;
        }
        sqlx::migrate!("./migrations").run(&db).await?;
        Ok(Store { db, files })
    }

    /// A transaction that takes the write lock when it begins. A deferred
    /// one that reads first and writes later fails at once ("database is
    /// locked", no waiting) when another connection wrote in between;
    /// taking the lock first makes it wait its turn instead.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.db.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub fn files(&self) -> &FileStore {
        &self.files
    }

    pub async fn close(&self) {
        self.db.close().await;
    }

    /// `PRAGMA integrity_check` result ("ok" when sound).
    pub async fn integrity_check(&self) -> Result<String> {
        let (result,): (String,) = sqlx::query_as("PRAGMA integrity_check")
            .fetch_one(&self.db)
            .await?;
        Ok(result)
    }

    // ----- users and tokens -----

    pub async fn user_count(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(&self.db)
            .await?;
        Ok(n)
    }

    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        is_admin: bool,
    ) -> Result<UserRow> {
        let row = UserRow {
            id: new_id(),
            username: username.to_string(),
            password_hash: password_hash.to_string(),
            is_admin: i64::from(is_admin),
            created_at: now_ms(),
        };
        sqlx::query("INSERT INTO users (id, username, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&row.id)
            .bind(&row.username)
            .bind(&row.password_hash)
            .bind(row.is_admin)
            .bind(row.created_at)
            .execute(&self.db)
            .await
            .map_err(|e| conflict(e, || format!("user '{username}' already exists")))?;
        Ok(row)
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRow>> {
        Ok(sqlx::query_as("SELECT * FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.db)
            .await?)
    }

    pub async fn create_token(
        &self,
        user_id: &str,
        name: &str,
        token_hash: &str,
        prefix: &str,
    ) -> Result<TokenRow> {
        let row = TokenRow {
            id: new_id(),
            user_id: user_id.to_string(),
            name: name.to_string(),
            prefix: prefix.to_string(),
            created_at: now_ms(),
            last_used_at: None,
        };
        sqlx::query("INSERT INTO api_tokens (id, user_id, name, token_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&row.id)
            .bind(&row.user_id)
            .bind(&row.name)
            .bind(token_hash)
            .bind(&row.prefix)
            .bind(row.created_at)
            .execute(&self.db)
            .await?;
        Ok(row)
    }

    /// The user a token hash belongs to.
    pub async fn user_by_token(&self, token_hash: &str) -> Result<Option<(UserRow, String)>> {
        let row: Option<(String, String, String, i64, i64, String)> = sqlx::query_as(
            "SELECT u.id, u.username, u.password_hash, u.is_admin, u.created_at, t.id \
             FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.db)
        .await?;
        Ok(row.map(
            |(id, username, password_hash, is_admin, created_at, token_id)| {
                (
                    UserRow {
                        id,
                        username,
                        password_hash,
                        is_admin,
                        created_at,
                    },
                    token_id,
                )
            },
        ))
    }

    pub async fn touch_token(&self, token_id: &str) -> Result<()> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(token_id)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    pub async fn list_tokens(&self, user_id: &str) -> Result<Vec<TokenRow>> {
        Ok(sqlx::query_as(
            "SELECT id, user_id, name, prefix, created_at, last_used_at FROM api_tokens WHERE user_id = $1 ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(&self.db)
        .await?)
    }

    /// Deletes a token of `user_id`; false when there was none.
    pub async fn delete_token(&self, user_id: &str, token_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2")
            .bind(token_id)
            .bind(user_id)
            .execute(&self.db)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Revokes the token with this hash, if it is the user's.
    pub async fn delete_token_by_hash(&self, user_id: &str, hash: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE token_hash = $1 AND user_id = $2")
            .bind(hash)
            .bind(user_id)
            .execute(&self.db)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    // ----- projects -----

    pub async fn create_project(
        &self,
        owner_id: &str,
        name: &str,
        description: &str,
    ) -> Result<ProjectRow> {
        let row = ProjectRow {
            id: new_id(),
            owner_id: owner_id.to_string(),
            name: name.to_string(),
            description: description.to_string(),
            created_at: now_ms(),
            cors: None,
        };
        sqlx::query("INSERT INTO projects (id, owner_id, name, description, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&row.id)
            .bind(&row.owner_id)
            .bind(&row.name)
            .bind(&row.description)
            .bind(row.created_at)
            .execute(&self.db)
            .await
            .map_err(|e| conflict(e, || format!("a project named '{name}' already exists")))?;
        Ok(row)
    }

    /// A project by name, if `scope` may see it.
    pub async fn project(&self, scope: Scope<'_>, name: &str) -> Result<Option<ProjectRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM projects WHERE name = $1 AND ($2 IS NULL OR owner_id = $2)",
        )
        .bind(name)
        .bind(scope.owner())
        .fetch_optional(&self.db)
        .await?)
    }

    /// Projects ordered by name, after `cursor`.
    pub async fn list_projects(
        &self,
        scope: Scope<'_>,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ProjectRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM projects WHERE ($1 IS NULL OR owner_id = $1) AND ($2 IS NULL OR name > $2) ORDER BY name LIMIT $3",
        )
        .bind(scope.owner())
        .bind(cursor)
        .bind(limit)
        .fetch_all(&self.db)
        .await?)
    }

    pub async fn update_project(&self, project_id: &str, description: &str) -> Result<()> {
        sqlx::query("UPDATE projects SET description = $1 WHERE id = $2")
            .bind(description)
            .bind(project_id)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Sets (or with `None` removes) a project's CORS settings.
    pub async fn set_project_cors(&self, project_id: &str, cors: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE projects SET cors = $1 WHERE id = $2")
            .bind(cors)
            .bind(project_id)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    // ----- routes -----

    /// A project's routes, oldest first.
    pub async fn routes(&self, project_id: &str) -> Result<Vec<RouteRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM routes WHERE project_id = $1 ORDER BY created_at, id")
                .bind(project_id)
                .fetch_all(&self.db)
                .await?,
        )
    }

    /// Adds a route; a route with the same method and path is a conflict.
    pub async fn create_route(
        &self,
        project_id: &str,
        method: &str,
        path: &str,
        function: &str,
    ) -> Result<RouteRow> {
        let row = RouteRow {
            id: new_id(),
            project_id: project_id.to_string(),
            method: method.to_string(),
            path: path.to_string(),
            function: function.to_string(),
            created_at: now_ms(),
        };
        sqlx::query("INSERT INTO routes (id, project_id, method, path, function, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&row.id)
            .bind(&row.project_id)
            .bind(&row.method)
            .bind(&row.path)
            .bind(&row.function)
            .bind(row.created_at)
            .execute(&self.db)
            .await
            .map_err(|e| conflict(e, || format!("a route {method} {path} already exists")))?;
        Ok(row)
    }

    /// Removes a route; `false` when the project has no such route.
    pub async fn delete_route(&self, project_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM routes WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .execute(&self.db)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a project with its functions, deployments and runs.
    pub async fn delete_project(&self, project_id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM invocations WHERE project_id = $1")
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM projects WHERE id = $1")
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    // ----- functions -----

    pub async fn function(&self, project_id: &str, name: &str) -> Result<Option<FunctionRow>> {
        Ok(sqlx::query_as(
            "SELECT id, project_id, name, runtime, settings, active_version, created_at, updated_at FROM functions WHERE project_id = $1 AND name = $2",
        )
        .bind(project_id)
        .bind(name)
        .fetch_optional(&self.db)
        .await?)
    }

    pub async fn list_functions(
        &self,
        project_id: &str,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Vec<FunctionRow>> {
        Ok(sqlx::query_as(
            "SELECT id, project_id, name, runtime, settings, active_version, created_at, updated_at FROM functions WHERE project_id = $1 AND ($2 IS NULL OR name > $2) ORDER BY name LIMIT $3",
        )
        .bind(project_id)
        .bind(cursor)
        .bind(limit)
        .fetch_all(&self.db)
        .await?)
    }

    pub async fn create_function(
        &self,
        project_id: &str,
        name: &str,
        config: &FunctionConfig,
    ) -> Result<FunctionRow> {
        let now = now_ms();
        let row = FunctionRow {
            id: new_id(),
            project_id: project_id.to_string(),
            name: name.to_string(),
            runtime: config.runtime.clone(),
            settings: config.settings.clone(),
            active_version: None,
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO functions (id, project_id, name, runtime, settings, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.id)
        .bind(&row.project_id)
        .bind(&row.name)
        .bind(&row.runtime)
        .bind(Json(&row.settings))
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&self.db)
        .await
        .map_err(|e| conflict(e, || format!("a function named '{name}' already exists in this project")))?;
        Ok(row)
    }

    pub async fn update_function(&self, function_id: &str, config: &FunctionConfig) -> Result<()> {
        set_function_config(&self.db, function_id, config).await
    }

    pub async fn delete_function(&self, function_id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM invocations WHERE function_id = $1")
            .bind(function_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM functions WHERE id = $1")
            .bind(function_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    // ----- deployments -----

    /// Stores a new version of a function and, if it is `ready`, makes it
    /// active, atomically; settings (if given) are updated in the same
    /// transaction.
    pub async fn create_deployment(
        &self,
        function_id: &str,
        new: &NewDeployment<'_>,
        config: Option<&FunctionConfig>,
    ) -> Result<DeploymentRow> {
        let manifest =
            serde_json::to_string(new.manifest).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.write_tx().await?;
        // Taking the version number and bumping it in one statement keeps
        // two concurrent deploys from sharing a number.
        let (version,): (i64,) = sqlx::query_as(
            "UPDATE functions SET next_version = next_version + 1, updated_at = $1 WHERE id = $2 RETURNING next_version - 1",
        )
        .bind(now_ms())
        .bind(function_id)
        .fetch_one(&mut *tx)
        .await?;
        let row = DeploymentRow {
            id: new_id(),
            function_id: function_id.to_string(),
            version,
            runtime: new.runtime.to_string(),
            entrypoint: new.entrypoint.to_string(),
            handler: new.handler.to_string(),
            content_hash: new.content_hash.to_string(),
            manifest,
            file_count: new.manifest.files.len() as i64,
            size_bytes: new.manifest.files.iter().map(|f| f.size as i64).sum(),
            created_at: now_ms(),
            status: new.status.to_string(),
            deps: new.deps.map(str::to_string),
            layer: new.layer.map(str::to_string),
            error: None,
            build_log: None,
        };
        sqlx::query(
            "INSERT INTO deployments (id, function_id, version, runtime, entrypoint, handler, content_hash, manifest, file_count, size_bytes, created_at, status, deps, layer) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&row.id)
        .bind(&row.function_id)
        .bind(row.version)
        .bind(&row.runtime)
        .bind(&row.entrypoint)
        .bind(&row.handler)
        .bind(&row.content_hash)
        .bind(&row.manifest)
        .bind(row.file_count)
        .bind(row.size_bytes)
        .bind(row.created_at)
        .bind(&row.status)
        .bind(&row.deps)
        .bind(&row.layer)
        .execute(&mut *tx)
        .await?;
        if let Some(config) = config {
            set_function_config(&mut *tx, function_id, config).await?;
        }
        if new.status == "ready" {
            sqlx::query("UPDATE functions SET active_version = $1 WHERE id = $2")
                .bind(version)
                .bind(function_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    /// Records how a deployment's build ended (`status` `ready` or
    /// `failed`), or that it is `building` again.
    pub async fn set_build(
        &self,
        deployment_id: &str,
        status: &str,
        error: Option<&str>,
        log: Option<&str>,
    ) -> Result<()> {
        sqlx::query("UPDATE deployments SET status = $1, error = $2, build_log = $3 WHERE id = $4")
            .bind(status)
            .bind(error)
            .bind(log)
            .bind(deployment_id)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Makes `version` active unless a newer one is active already (a
    /// build that ends after a later deploy does not take its place).
    pub async fn activate_if_newer(&self, function_id: &str, version: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE functions SET active_version = $1, updated_at = $2 WHERE id = $3 AND (active_version IS NULL OR active_version < $1)",
        )
        .bind(version)
        .bind(now_ms())
        .bind(function_id)
        .execute(&self.db)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Makes `version` active if the active version is still `expected`
    /// (nothing changed it meanwhile); `true` when it did.
    pub async fn activate_if_active(
        &self,
        function_id: &str,
        version: i64,
        expected: Option<i64>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE functions SET active_version = $1, updated_at = $2 WHERE id = $3 \
             AND (active_version = $4 OR (active_version IS NULL AND $4 IS NULL))",
        )
        .bind(version)
        .bind(now_ms())
        .bind(function_id)
        .bind(expected)
        .execute(&self.db)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every deployment still `building` (to resume after a restart),
    /// with its function and project.
    pub async fn building_deployments(&self) -> Result<Vec<LocatedDeployment>> {
        let rows: Vec<DeploymentRow> =
            sqlx::query_as("SELECT * FROM deployments WHERE status = 'building'")
                .fetch_all(&self.db)
                .await?;
        let mut out = Vec::with_capacity(rows.len());
        for deployment in rows {
            let function: Option<FunctionRow> =
                sqlx::query_as("SELECT * FROM functions WHERE id = $1")
                    .bind(&deployment.function_id)
                    .fetch_optional(&self.db)
                    .await?;
            let Some(function) = function else { continue };
            let project: Option<(String, String)> =
                sqlx::query_as("SELECT name, owner_id FROM projects WHERE id = $1")
                    .bind(&function.project_id)
                    .fetch_optional(&self.db)
                    .await?;
            let Some((project, owner_id)) = project else {
                continue;
            };
            out.push(LocatedDeployment {
                deployment,
                function,
                project,
                owner_id,
            });
        }
        Ok(out)
    }

    /// The layers of active and building deployments: the ones to keep.
    pub async fn layers_in_use(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT d.layer FROM deployments d JOIN functions f ON f.id = d.function_id \
             WHERE d.layer IS NOT NULL AND (d.status = 'building' OR f.active_version = d.version)",
        )
        .fetch_all(&self.db)
        .await?;
        Ok(rows.into_iter().map(|(l,)| l).collect())
    }

    pub async fn deployment(
        &self,
        function_id: &str,
        version: i64,
    ) -> Result<Option<DeploymentRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM deployments WHERE function_id = $1 AND version = $2")
                .bind(function_id)
                .bind(version)
                .fetch_optional(&self.db)
                .await?,
        )
    }

    /// Versions newest first, before `cursor` (a version number).
    pub async fn list_deployments(
        &self,
        function_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeploymentRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM deployments WHERE function_id = $1 AND ($2 IS NULL OR version < $2) ORDER BY version DESC LIMIT $3",
        )
        .bind(function_id)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.db)
        .await?)
    }

    pub async fn set_active_version(&self, function_id: &str, version: i64) -> Result<()> {
        sqlx::query("UPDATE functions SET active_version = $1, updated_at = $2 WHERE id = $3")
            .bind(version)
            .bind(now_ms())
            .bind(function_id)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    // ----- environment variables -----

    /// A project's variables, by name.
    pub async fn env_vars(&self, project_id: &str) -> Result<Vec<EnvVarRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM env_vars WHERE project_id = $1 ORDER BY name")
                .bind(project_id)
                .fetch_all(&self.db)
                .await?,
        )
    }

    /// Sets a variable; `true` when it did not exist before.
    pub async fn put_env_var(
        &self,
        project_id: &str,
        name: &str,
        value: &str,
        secret: bool,
    ) -> Result<(EnvVarRow, bool)> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let existed: Option<(i64,)> =
            sqlx::query_as("SELECT created_at FROM env_vars WHERE project_id = $1 AND name = $2")
                .bind(project_id)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO env_vars (project_id, name, value, secret, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (project_id, name) DO UPDATE SET value = excluded.value, secret = excluded.secret, updated_at = excluded.updated_at",
        )
        .bind(project_id)
        .bind(name)
        .bind(value)
        .bind(i64::from(secret))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let row = EnvVarRow {
            project_id: project_id.to_string(),
            name: name.to_string(),
            value: value.to_string(),
            secret: i64::from(secret),
            created_at: existed.map_or(now, |(c,)| c),
            updated_at: now,
        };
        Ok((row, existed.is_none()))
    }

    /// Removes a variable; `false` when there was none.
    pub async fn delete_env_var(&self, project_id: &str, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM env_vars WHERE project_id = $1 AND name = $2")
            .bind(project_id)
            .bind(name)
            .execute(&self.db)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    // ----- log lines -----

    /// Stores lines (ids given by the caller, increasing).
    pub async fn insert_log_lines(&self, rows: &[LogLineRow]) -> Result<()> {
        const CHUNK: usize = 400;
        let mut tx = self.write_tx().await?;
        for chunk in rows.chunks(CHUNK) {
            let mut query = sqlx::QueryBuilder::new(
                "INSERT INTO log_lines (id, function_id, run_id, stream, time, line) ",
            );
            query.push_values(chunk, |mut b, r| {
                b.push_bind(r.id)
                    .push_bind(&r.function_id)
                    .push_bind(&r.run_id)
                    .push_bind(&r.stream)
                    .push_bind(r.time)
                    .push_bind(&r.line);
            });
            query.push(" ON CONFLICT (id) DO NOTHING");
            query.build().persistent(false).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A function's lines that `query` selects, oldest first: the first
    /// `limit` after `query.after`, or without it the last `limit`.
    pub async fn log_lines(
        &self,
        function_id: &str,
        query: &LogQuery<'_>,
        limit: i64,
    ) -> Result<Vec<LogLineRow>> {
        let mut rows: Vec<LogLineRow> = if query.after.is_some() {
            sqlx::query_as(
                "SELECT * FROM log_lines WHERE function_id = $1 AND id > $2 AND ($3 IS NULL OR time >= $3) \
                 AND ($4 IS NULL OR run_id = $4) ORDER BY id LIMIT $5",
            )
            .bind(function_id)
            .bind(query.after)
            .bind(query.since_ms)
            .bind(query.run_id)
            .bind(limit)
            .fetch_all(&self.db)
            .await?
        } else {
            sqlx::query_as(
                "SELECT * FROM log_lines WHERE function_id = $1 AND ($2 IS NULL OR time >= $2) \
                 AND ($3 IS NULL OR run_id = $3) ORDER BY id DESC LIMIT $4",
            )
            .bind(function_id)
            .bind(query.since_ms)
            .bind(query.run_id)
            .bind(limit)
            .fetch_all(&self.db)
            .await?
        };
        if query.after.is_none() {
            rows.reverse();
        }
        Ok(rows)
    }

    /// The greatest line id stored (0 when there is none).
    pub async fn max_log_line_id(&self) -> Result<i64> {
        let (max,): (Option<i64>,) = sqlx::query_as("SELECT MAX(id) FROM log_lines")
            .fetch_one(&self.db)
            .await?;
        Ok(max.unwrap_or(0))
    }

    /// Removes lines read before `older_than_ms`, and all but the newest
    /// `keep` lines; returns how many went.
    pub async fn prune_log_lines(&self, older_than_ms: i64, keep: i64) -> Result<u64> {
        let by_age = sqlx::query("DELETE FROM log_lines WHERE time < $1")
            .bind(older_than_ms)
            .execute(&self.db)
            .await?
            .rows_affected();
        let max = self.max_log_line_id().await?;
        let by_size = sqlx::query("DELETE FROM log_lines WHERE id <= $1")
            .bind(max - keep)
            .execute(&self.db)
            .await?
            .rows_affected();
        Ok(by_age + by_size)
    }

    // ----- invocations -----

    /// Writes runs (new or updated) in one transaction.
    pub async fn upsert_invocations(&self, rows: &[InvocationRow]) -> Result<()> {
        // One statement per chunk of rows, not per row: each statement is a
        // round trip to the database's worker.
        const CHUNK: usize = 200;
        // A run recorded twice in one batch (queued, then finished) keeps
        // its last record: one statement may not upsert a row twice.
        let mut last = std::collections::HashMap::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            last.insert(r.id.as_str(), i);
        }
        let rows: Vec<&InvocationRow> = rows
            .iter()
            .enumerate()
            .filter(|(i, r)| last.get(r.id.as_str()) == Some(i))
            .map(|(_, r)| r)
            .collect();
        let mut tx = self.write_tx().await?;
        for chunk in rows.chunks(CHUNK) {
            let mut query = sqlx::QueryBuilder::new(
                "INSERT INTO invocations (id, owner_id, project_id, function_id, project, function, version, trigger_kind, status, input, output, error, logs, logs_truncated, duration_us, cold_start, created_at, finished_at, cpu_us, peak_memory, input_size, output_size, bytes) ",
            );
            query.push_values(chunk, |mut b, r| {
                b.push_bind(&r.id)
                    .push_bind(&r.owner_id)
                    .push_bind(&r.project_id)
                    .push_bind(&r.function_id)
                    .push_bind(&r.project)
                    .push_bind(&r.function)
                    .push_bind(r.version)
                    .push_bind(&r.trigger_kind)
                    .push_bind(&r.status)
                    .push_bind(&r.input)
                    .push_bind(&r.output)
                    .push_bind(&r.error)
                    .push_bind(&r.logs)
                    .push_bind(r.logs_truncated)
                    .push_bind(r.duration_us)
                    .push_bind(r.cold_start)
                    .push_bind(r.created_at)
                    .push_bind(r.finished_at)
                    .push_bind(r.cpu_us)
                    .push_bind(r.peak_memory)
                    .push_bind(r.input_size)
                    .push_bind(r.output_size)
                    .push_bind(r.stored_bytes());
            });
            // A finished run replaces its queued record whole: an async
            // run's input is kept in full until it has run, then capped.
            query.push(
                " ON CONFLICT (id) DO UPDATE SET version = excluded.version, status = excluded.status, output = excluded.output, error = excluded.error, \
                 logs = excluded.logs, logs_truncated = excluded.logs_truncated, duration_us = excluded.duration_us, cold_start = excluded.cold_start, finished_at = excluded.finished_at, \
                 cpu_us = excluded.cpu_us, peak_memory = excluded.peak_memory, \
                 input = excluded.input, input_size = excluded.input_size, output_size = excluded.output_size, bytes = excluded.bytes",
            );
            query.build().persistent(false).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn invocation(&self, scope: Scope<'_>, id: &str) -> Result<Option<InvocationRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM invocations WHERE id = $1 AND ($2 IS NULL OR owner_id = $2)",
        )
        .bind(id)
        .bind(scope.owner())
        .fetch_optional(&self.db)
        .await?)
    }

    /// Runs of a function, newest first, older than `before` (a run id).
    pub async fn list_invocations(
        &self,
        function_id: &str,
        before: Option<&str>,
        since_ms: Option<i64>,
        limit: i64,
    ) -> Result<Vec<InvocationRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM invocations WHERE function_id = $1 AND ($2 IS NULL OR id < $2) AND ($3 IS NULL OR created_at >= $3) \
             ORDER BY id DESC LIMIT $4",
        )
        .bind(function_id)
        .bind(before)
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&self.db)
        .await?)
    }

    /// Removes finished runs recorded before `older_than_ms`, and all but
    /// the newest `keep` finished runs, a batch at a time (a long delete
    /// would hold the writer); returns how many went. Unfinished runs stay.
    pub async fn prune_invocations(&self, older_than_ms: i64, keep: i64) -> Result<u64> {
        // Run ids are ULIDs: their order is their time's.
        let ms = u64::try_from(older_than_ms.max(0)).unwrap_or(0);
        let by_age = ulid::Ulid::from_parts(ms, 0)
            .to_string()
            .to_ascii_lowercase();
        let by_count: Option<(String,)> =
            sqlx::query_as("SELECT id FROM invocations ORDER BY id DESC LIMIT 1 OFFSET $1")
                .bind(keep)
                .fetch_optional(&self.db)
                .await?;
        // Below the age bound, and up to the (keep+1)-th newest run.
        let mut removed = self.delete_runs_before(&by_age, false).await?;
        if let Some((id,)) = by_count {
            removed += self.delete_runs_before(&id, true).await?;
        }
        Ok(removed)
    }

    /// Deletes finished runs with ids below `bound` (or equal to it,
    /// when `inclusive`), with their log lines, a batch at a time.
    async fn delete_runs_before(&self, bound: &str, inclusive: bool) -> Result<u64> {
        const BATCH: i64 = 5000;
        let (lines, runs) = if inclusive {
            (
                "DELETE FROM log_lines WHERE run_id IN (SELECT id FROM invocations WHERE id <= $1 \
                 AND status NOT IN ('queued', 'running') ORDER BY id LIMIT $2)",
                "DELETE FROM invocations WHERE id IN (SELECT id FROM invocations WHERE id <= $1 \
                 AND status NOT IN ('queued', 'running') ORDER BY id LIMIT $2)",
            )
        } else {
            (
                "DELETE FROM log_lines WHERE run_id IN (SELECT id FROM invocations WHERE id < $1 \
                 AND status NOT IN ('queued', 'running') ORDER BY id LIMIT $2)",
                "DELETE FROM invocations WHERE id IN (SELECT id FROM invocations WHERE id < $1 \
                 AND status NOT IN ('queued', 'running') ORDER BY id LIMIT $2)",
            )
        };
        let mut removed = 0;
        loop {
            // A run's lines go with it: nothing of a removed run is left
            // that its budget no longer counts.
            let mut tx = self.write_tx().await?;
            sqlx::query(lines)
                .bind(bound)
                .bind(BATCH)
                .execute(&mut *tx)
                .await?;
            let done = sqlx::query(runs)
                .bind(bound)
                .bind(BATCH)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            removed += done;
            if done < u64::try_from(BATCH).unwrap_or(0) {
                return Ok(removed);
            }
        }
    }

    /// The bytes each project's runs hold (see
    /// [`InvocationRow::stored_bytes`]), the largest first.
    pub async fn run_usage(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT project_id, bytes FROM run_usage WHERE bytes > 0 ORDER BY bytes DESC, project_id",
        )
        .fetch_all(&self.db)
        .await?)
    }

    /// Removes a project's oldest finished runs, with their log lines,
    /// until at least `free` bytes are freed or none is left to remove;
    /// returns the runs removed and the bytes freed. Unfinished runs stay.
    pub async fn prune_project_bytes(&self, project_id: &str, free: i64) -> Result<(u64, i64)> {
        const BATCH: i64 = 128;
        let mut removed = 0;
        let mut freed = 0;
        let mut after = String::new();
        while freed < free {
            let oldest: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT id, status, bytes FROM invocations WHERE project_id = $1 AND id > $2 \
                 ORDER BY id LIMIT $3",
            )
            .bind(project_id)
            .bind(&after)
            .bind(BATCH)
            .fetch_all(&self.db)
            .await?;
            let Some((last, _, _)) = oldest.last() else {
                break;
            };
            after = last.clone();
            let mut ids = Vec::new();
            for (id, status, bytes) in oldest {
                if freed >= free {
                    break;
                }
                if status == "queued" || status == "running" {
                    continue;
                }
                freed += bytes;
                ids.push(id);
            }
            if ids.is_empty() {
                continue;
            }
            let mut tx = self.write_tx().await?;
            let in_ids = |sql: &str| {
                let mut query = sqlx::QueryBuilder::new(sql);
                query.push(" IN (");
                let mut list = query.separated(", ");
                for id in &ids {
                    list.push_bind(id.as_str());
                }
                query.push(")");
                query
            };
            in_ids("DELETE FROM log_lines WHERE run_id")
                .build()
                .persistent(false)
                .execute(&mut *tx)
                .await?;
            // Only if still finished: a run is never removed unfinished.
            let mut runs = in_ids("DELETE FROM invocations WHERE id");
            runs.push(" AND status NOT IN ('queued', 'running')");
            removed += runs
                .build()
                .persistent(false)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
        }
        Ok((removed, freed))
    }

    /// Gives the pages that removed rows left free back to the file
    /// system, and cuts the write-ahead log back.
    pub async fn reclaim_space(&self) -> Result<()> {
        sqlx::query("PRAGMA incremental_vacuum")
            .execute(&self.db)
            .await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Runs left `queued` or `running` (e.g. by a crash), oldest first.
    pub async fn unfinished_invocations(&self) -> Result<Vec<InvocationRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM invocations WHERE status IN ('queued', 'running') ORDER BY id",
        )
        .fetch_all(&self.db)
        .await?)
    }
}

/// Turns a unique-constraint violation into [`StoreError::Conflict`].
fn conflict(e: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(message()),
        _ => StoreError::Db(e),
    }
}

/// Sets a function's runtime and settings.
async fn set_function_config<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Sqlite>,
    function_id: &str,
    config: &FunctionConfig,
) -> Result<()> {
    sqlx::query("UPDATE functions SET runtime = $1, settings = $2, updated_at = $3 WHERE id = $4")
        .bind(&config.runtime)
        .bind(Json(&config.settings))
        .bind(now_ms())
        .bind(function_id)
        .execute(db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, status: &str) -> InvocationRow {
        InvocationRow {
            id: id.into(),
            owner_id: "u".into(),
            project_id: "p".into(),
            function_id: "f".into(),
            project: "proj".into(),
            function: "fun".into(),
            version: Some(1),
            trigger_kind: "api".into(),
            status: status.into(),
            input: Some("{}".into()),
            output: None,
            error: None,
            logs: String::new(),
            logs_truncated: 0,
            input_size: None,
            output_size: None,
            duration_us: 0,
            cold_start: 0,
            cpu_us: None,
            peak_memory: None,
            created_at: 1,
            finished_at: None,
        }
    }

    /// Batches larger than one statement's chunk, with a run recorded twice
    /// in one batch, keep every run once, in its last state.
    #[tokio::test]
    async fn batched_run_records_keep_the_last_state_of_each_run() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), None).await.expect("store");
        let mut rows: Vec<InvocationRow> = (0..450)
            .map(|i| run(&format!("r{i:04}"), "succeeded"))
            .collect();
        rows.insert(10, run("r0300", "queued"));
        rows.push(run("r0001", "failed"));
        store.upsert_invocations(&rows).await.expect("write");
        store
            .upsert_invocations(&[run("r0002", "running"), run("r0002", "timed_out")])
            .await
            .expect("write again");
        let get = async |id: &str| {
            store
                .invocation(Scope::All, id)
                .await
                .expect("read")
                .expect("present")
                .status
        };
        assert_eq!(get("r0300").await, "succeeded");
        assert_eq!(get("r0001").await, "failed");
        assert_eq!(get("r0002").await, "timed_out");
        assert_eq!(get("r0449").await, "succeeded");
        assert!(
            store
                .unfinished_invocations()
                .await
                .expect("unfinished")
                .is_empty()
        );
    }

    /// Transactions that read before they write, run side by side with
    /// other writers, all succeed: none fails with "database is locked"
    /// because another connection wrote between its read and its write.
    #[tokio::test]
    async fn concurrent_writers_wait_their_turn() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), None).await.expect("store");
        let user = store.create_user("u", "x", true).await.expect("user");
        let project = store
            .create_project(&user.id, "app", "")
            .await
            .expect("project");
        let mut tasks = tokio::task::JoinSet::new();
        for writer in 0..8 {
            let (store, project) = (store.clone(), project.id.clone());
            tasks.spawn(async move {
                for i in 0..25 {
                    let key = format!("K{}", i % 3);
                    store
                        .put_env_var(&project, &key, &format!("{writer}-{i}"), false)
                        .await
                        .map_err(|e| format!("writer {writer}, write {i}: {e}"))?;
                }
                Ok::<_, String>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("task").expect("every write succeeds");
        }
        assert_eq!(store.env_vars(&project.id).await.expect("vars").len(), 3);
    }

    fn line(id: i64, run_id: &str) -> LogLineRow {
        LogLineRow {
            id,
            function_id: "f".into(),
            run_id: run_id.into(),
            stream: "stdout".into(),
            time: 1,
            line: "x".repeat(100),
        }
    }

    /// What each project's runs hold, counted from the rows themselves.
    async fn counted(store: &Store) -> Vec<(String, i64)> {
        sqlx::query_as(
            "SELECT project_id, SUM(bytes) FROM invocations GROUP BY project_id \
             HAVING SUM(bytes) > 0 ORDER BY SUM(bytes) DESC, project_id",
        )
        .fetch_all(&store.db)
        .await
        .expect("sum")
    }

    /// The usage kept by the triggers matches the rows through inserts,
    /// a queued run finishing bigger, and every kind of removal.
    #[tokio::test]
    async fn run_usage_follows_every_write() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), None).await.expect("store");
        let mut rows = Vec::new();
        for i in 0..30 {
            let mut row = run(&format!("r{i:04}"), "succeeded");
            row.project_id = if i % 3 == 0 { "b" } else { "a" }.into();
            row.output = Some("y".repeat(1000 * i));
            rows.push(row);
        }
        let mut queued = run("r0100", "queued");
        queued.input = Some("z".repeat(5000));
        rows.push(queued.clone());
        store.upsert_invocations(&rows).await.expect("write");
        assert_eq!(
            store.run_usage().await.expect("usage"),
            counted(&store).await
        );
        let before = counted(&store).await;

        // The queued run finishes with a capped input and some logs.
        queued.status = "succeeded".into();
        queued.input = Some("z".repeat(100));
        queued.input_size = Some(5000);
        queued.logs = "one\ntwo\n".into();
        store.upsert_invocations(&[queued]).await.expect("finish");
        let usage = store.run_usage().await.expect("usage");
        assert_eq!(usage, counted(&store).await);
        assert_ne!(usage, before);
        let stored = store
            .invocation(Scope::All, "r0100")
            .await
            .expect("read")
            .expect("present");
        assert_eq!(
            (stored.input_size, stored.input.map(|i| i.len())),
            (Some(5000), Some(100))
        );

        store
            .prune_project_bytes("a", 10_000)
            .await
            .expect("prune a");
        assert_eq!(
            store.run_usage().await.expect("usage"),
            counted(&store).await
        );
        store.prune_invocations(0, 5).await.expect("prune by count");
        assert_eq!(
            store.run_usage().await.expect("usage"),
            counted(&store).await
        );
        for (project, _) in store.run_usage().await.expect("usage") {
            store
                .prune_project_bytes(&project, i64::MAX)
                .await
                .expect("prune all");
        }
        assert_eq!(store.run_usage().await.expect("usage"), Vec::new());
    }

    /// A byte budget removes a project's oldest finished runs and their
    /// log lines, as many as needed and no more; unfinished runs and
    /// other projects stay.
    #[tokio::test]
    async fn pruning_by_bytes_removes_the_oldest_finished_runs_of_the_project() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), None).await.expect("store");
        let mut rows = Vec::new();
        for i in 0..10 {
            let status = if i == 0 { "running" } else { "succeeded" };
            let mut row = run(&format!("r{i:04}"), status);
            row.output = Some("o".repeat(10_000));
            rows.push(row);
        }
        let mut other = run("r0050", "succeeded");
        other.project_id = "other".into();
        rows.push(other);
        store.upsert_invocations(&rows).await.expect("write");
        let lines: Vec<LogLineRow> = (0..10).map(|i| line(i + 1, &format!("r{i:04}"))).collect();
        store.insert_log_lines(&lines).await.expect("lines");
        let each = rows[1].stored_bytes();

        // Just over two runs' worth: three go, the oldest finished ones.
        let (removed, freed) = store
            .prune_project_bytes("p", 2 * each + 1)
            .await
            .expect("prune");
        assert_eq!((removed, freed), (3, 3 * each));
        let left: Vec<(String,)> = sqlx::query_as("SELECT id FROM invocations ORDER BY id")
            .fetch_all(&store.db)
            .await
            .expect("ids");
        let left: Vec<&str> = left.iter().map(|(id,)| id.as_str()).collect();
        assert_eq!(
            left,
            [
                "r0000", "r0004", "r0005", "r0006", "r0007", "r0008", "r0009", "r0050"
            ]
        );
        let lines: Vec<(String,)> = sqlx::query_as("SELECT run_id FROM log_lines ORDER BY id")
            .fetch_all(&store.db)
            .await
            .expect("lines");
        assert_eq!(lines.len(), 7, "the removed runs' lines went with them");
        assert!(
            lines
                .iter()
                .all(|(run,)| !["r0001", "r0002", "r0003"].contains(&run.as_str()))
        );

        // Asked for everything: only the running run is left of the project.
        store
            .prune_project_bytes("p", i64::MAX)
            .await
            .expect("prune all");
        let usage = store.run_usage().await.expect("usage");
        assert_eq!(usage.len(), 2, "{usage:?}");
        assert!(
            store
                .invocation(Scope::All, "r0000")
                .await
                .expect("read")
                .is_some()
        );
        assert!(
            store
                .invocation(Scope::All, "r0050")
                .await
                .expect("read")
                .is_some()
        );
    }

    /// New databases give freed pages back: the file shrinks after a
    /// large removal.
    #[tokio::test]
    async fn freed_space_goes_back_to_the_file_system() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), None).await.expect("store");
        let (mode,): (i64,) = sqlx::query_as("PRAGMA auto_vacuum")
            .fetch_one(&store.db)
            .await
            .expect("pragma");
        assert_eq!(mode, 2, "incremental");
        let rows: Vec<InvocationRow> = (0..200)
            .map(|i| {
                let mut row = run(&format!("r{i:04}"), "succeeded");
                row.output = Some("o".repeat(50_000));
                row
            })
            .collect();
        store.upsert_invocations(&rows).await.expect("write");
        store.reclaim_space().await.expect("checkpoint");
        let db = dir.path().join("kumo.db");
        let full = std::fs::metadata(&db).expect("db").len();
        assert!(full > 10_000_000, "{full}");
        store
            .prune_project_bytes("p", i64::MAX)
            .await
            .expect("prune");
        store.reclaim_space().await.expect("reclaim");
        let after = std::fs::metadata(&db).expect("db").len();
        assert!(after < 1_000_000, "the file shrank from {full} to {after}");
    }

    /// A database made before incremental vacuum is rewritten once at
    /// open, so that it too gives freed space back.
    #[tokio::test]
    async fn an_older_database_is_switched_to_incremental_vacuum() {
        let dir = tempfile::tempdir().expect("temp dir");
        let old = SqlitePoolOptions::new()
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(dir.path().join("kumo.db"))
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal),
            )
            .await
            .expect("old database");
        sqlx::query("CREATE TABLE kept (v TEXT)")
            .execute(&old)
            .await
            .expect("table");
        sqlx::query("INSERT INTO kept VALUES ('still here')")
            .execute(&old)
            .await
            .expect("row");
        old.close().await;
        let store = Store::open(dir.path(), None).await.expect("store");
        let (mode,): (i64,) = sqlx::query_as("PRAGMA auto_vacuum")
            .fetch_one(&store.db)
            .await
            .expect("pragma");
        assert_eq!(mode, 2, "incremental");
        let (v,): (String,) = sqlx::query_as("SELECT v FROM kept")
            .fetch_one(&store.db)
            .await
            .expect("row");
        assert_eq!(v, "still here");
    }

    /// Functions stored with a column per setting keep their settings when
    /// the columns become one JSON object.
    #[tokio::test]
    async fn settings_columns_become_one_object_with_their_values() {
        let dir = tempfile::tempdir().expect("temp dir");
        let old = SqlitePoolOptions::new()
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(dir.path().join("kumo.db"))
                    .create_if_missing(true)
                    .auto_vacuum(SqliteAutoVacuum::Incremental)
                    .journal_mode(SqliteJournalMode::Wal),
            )
            .await
            .expect("old database");
        let mut before = sqlx::migrate!("./migrations");
        let upto = before
            .migrations
            .iter()
            .position(|m| m.description == "function settings")
            .expect("the settings migration");
        before.migrations = before.migrations[..upto].to_vec().into();
        before.run(&old).await.expect("older migrations");
        for statement in [
            "INSERT INTO users (id, username, password_hash, created_at) VALUES ('u', 'ann', 'x', 1)",
            "INSERT INTO projects (id, owner_id, name, created_at) VALUES ('p', 'u', 'shop', 1)",
            "INSERT INTO functions (id, project_id, name, runtime, timeout_ms, memory_mb, concurrency, cpu_millicores, pids, tmp_mb, visibility, record_credentials, created_at, updated_at) \
             VALUES ('f1', 'p', 'api', 'node', 5000, 256, 3, 500, 64, 16, 'private', TRUE, 1, 2)",
            "INSERT INTO functions (id, project_id, name, runtime, timeout_ms, memory_mb, concurrency, cpu_millicores, pids, tmp_mb, visibility, created_at, updated_at) \
             VALUES ('f2', 'p', 'web', 'python', 30000, 128, 10, 1000, 128, 64, 'public', 1, 2)",
        ] {
            sqlx::query(statement).execute(&old).await.expect(statement);
        }
        old.close().await;
        let store = Store::open(dir.path(), None).await.expect("store");
        let api = store
            .function("p", "api")
            .await
            .expect("read")
            .expect("api");
        assert_eq!(api.runtime, "node");
        assert_eq!(
            api.settings,
            Settings {
                timeout_ms: 5000,
                memory_mb: 256,
                concurrency: 3,
                cpu_millicores: 500,
                pids: 64,
                tmp_mb: 16,
                visibility: kumo_types::Visibility::Private,
                record_credentials: true,
            }
        );
        let web = store
            .function("p", "web")
            .await
            .expect("read")
            .expect("web");
        assert_eq!(web.settings.visibility, kumo_types::Visibility::Public);
        assert!(!web.settings.record_credentials);
        assert_eq!(web.settings.memory_mb, 128);
    }
}
