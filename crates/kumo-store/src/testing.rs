//! Fixtures shared by the unit tests.

use crate::{InvocationRow, Store};

/// An empty store in a temporary directory, which goes when the
/// directory's handle is dropped.
pub(crate) async fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), None).await.expect("store");
    (dir, store)
}

/// A database as an older server left it in `dir`, opened without the
/// store (no migrations), with incremental vacuum or not.
pub(crate) async fn older_database(dir: &std::path::Path, incremental: bool) -> sqlx::SqlitePool {
    use sqlx::sqlite::{SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode};
    let mode = if incremental {
        SqliteAutoVacuum::Incremental
    } else {
        SqliteAutoVacuum::None
    };
    sqlx::sqlite::SqlitePoolOptions::new()
        .connect_with(
            SqliteConnectOptions::new()
                .filename(dir.join("kumo.db"))
                .create_if_missing(true)
                .auto_vacuum(mode)
                .journal_mode(SqliteJournalMode::Wal),
        )
        .await
        .expect("older database")
}

/// The database's `auto_vacuum` mode (2: incremental).
pub(crate) async fn auto_vacuum(store: &Store) -> i64 {
    let (mode,): (i64,) = sqlx::query_as("PRAGMA auto_vacuum")
        .fetch_one(&store.db)
        .await
        .expect("pragma");
    mode
}

/// A run of project `p` with this id and status.
pub(crate) fn run(id: &str, status: &str) -> InvocationRow {
    InvocationRow {
        id: id.into(),
        owner_id: "u".into(),
        project_id: "p".into(),
        function_id: "f".into(),
        project: "proj".into(),
        function: "fun".into(),
        version: Some(1),
        trigger_kind: kumo_types::Trigger::Api,
        status: kumo_types::RunStatus::parse(status).expect("a run status"),
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
