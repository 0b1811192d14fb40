//! Persistence: accounts, projects, functions, deployments and runs in SQL,
//! and function files in a content-addressed store on disk.
//!
//! SQLite (WAL) in the data dir is the default; the SQL is kept portable so
//! that PostgreSQL can serve the same schema. Migrations are embedded and
//! run at open. This crate knows nothing of HTTP or of running code; it
//! hands out rows and paths.
//!
//! Each group of tables has its module, with its rows and the methods it
//! adds to [`Store`]; this file holds the store itself (opening,
//! migrations), its error type and what the modules share.

mod accounts;
mod deployments;
mod env;
mod files;
mod functions;
mod logs;
mod projects;
mod retention;
mod routes;
mod runs;
#[cfg(test)]
mod testing;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{
    SqliteArguments, SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions,
    SqliteSynchronous,
};

pub use accounts::{TokenRow, UserRow};
pub use deployments::{DeploymentRow, LocatedDeployment, NewDeployment};
pub use env::EnvVarRow;
pub use files::{FileEntry, FileStore, Manifest};
pub use functions::{FunctionConfig, FunctionRow};
pub use logs::{LogLineRow, LogQuery};
pub use projects::ProjectRow;
pub use routes::RouteRow;
pub use runs::InvocationRow;

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

/// A statement with its values bound, ready to run.
type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, SqliteArguments>;

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

/// The write-ahead log is cut back to this size after a checkpoint (a
/// large batch may grow it for a moment; it does not stay that large).
const WAL_SIZE_LIMIT: i64 = 4 * 1024 * 1024;

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
        // The schema is brought up to date on a connection of its own,
        // closed before the pool opens any: a connection that had read the
        // old schema would go on expanding `SELECT *` to the old columns.
        let setup = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        // A database made before incremental vacuum was asked for keeps
        // its old mode until rewritten once.
        let (mode,): (i64,) = sqlx::query_as("PRAGMA auto_vacuum")
            .fetch_one(&setup)
            .await?;
        if mode != 2 {
            tracing::info!("rewriting the database once, so that freed space is given back");
            sqlx::query("VACUUM").execute(&setup).await?;
        }
        sqlx::migrate!("./migrations").run(&setup).await?;
        setup.close().await;
        let db = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
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

    /// Runs one statement on its own; how many rows it changed.
    async fn execute(&self, query: Query<'_>) -> Result<u64> {
        Ok(query.execute(&self.db).await?.rows_affected())
    }

    /// Runs an `INSERT` of a row that must be unique; a row already there
    /// is a [`StoreError::Conflict`] saying `message`.
    async fn insert_unique(
        &self,
        query: Query<'_>,
        message: impl FnOnce() -> String,
    ) -> Result<()> {
        match query.execute(&self.db).await {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Conflict(message()))
            }
            Err(e) => Err(StoreError::Db(e)),
        }
    }

    /// Runs `statements` in order, in one write transaction, each with `id`
    /// as its `$1`.
    async fn execute_in_one_tx(&self, statements: &[&'static str], id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for statement in statements {
            sqlx::query(*statement).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{auto_vacuum, temp_store};

    /// Transactions that read before they write, run side by side with
    /// other writers, all succeed: none fails with "database is locked"
    /// because another connection wrote between its read and its write.
    #[tokio::test]
    async fn concurrent_writers_wait_their_turn() {
        let (_dir, store) = temp_store().await;
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

    /// A database made before incremental vacuum is rewritten once at
    /// open, so that it too gives freed space back.
    #[tokio::test]
    async fn an_older_database_is_switched_to_incremental_vacuum() {
        let dir = tempfile::tempdir().expect("temp dir");
        let old = crate::testing::older_database(dir.path(), false).await;
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
        assert_eq!(auto_vacuum(&store).await, 2, "incremental");
        let (v,): (String,) = sqlx::query_as("SELECT v FROM kept")
            .fetch_one(&store.db)
            .await
            .expect("row");
        assert_eq!(v, "still here");
    }
}
