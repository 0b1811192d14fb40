//! Runs: invocation records, the bytes they hold, and the unfinished ones
//! left to recover.

use kumo_types::{RunStatus, Trigger};
use sqlx::FromRow;

use crate::{Result, Scope, Store};

#[derive(Debug, Clone, FromRow)]
pub struct InvocationRow {
    pub id: String,
    pub owner_id: String,
    pub project_id: String,
    pub function_id: String,
    pub project: String,
    pub function: String,
    pub version: Option<i64>,
    #[sqlx(try_from = "String")]
    pub trigger_kind: Trigger,
    #[sqlx(try_from = "String")]
    pub status: RunStatus,
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

impl Store {
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
                    .push_bind(r.trigger_kind.as_str())
                    .push_bind(r.status.as_str())
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

    /// The bytes each project's runs hold (see
    /// [`InvocationRow::stored_bytes`]), the largest first.
    pub async fn run_usage(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT project_id, bytes FROM run_usage WHERE bytes > 0 ORDER BY bytes DESC, project_id",
        )
        .fetch_all(&self.db)
        .await?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{run, temp_store};

    /// Batches larger than one statement's chunk, with a run recorded twice
    /// in one batch, keep every run once, in its last state.
    #[tokio::test]
    async fn batched_run_records_keep_the_last_state_of_each_run() {
        let (_dir, store) = temp_store().await;
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
                .as_str()
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

    /// Asserts that the usage the triggers keep is what the rows hold.
    async fn assert_usage_counted(store: &Store) {
        assert_eq!(
            store.run_usage().await.expect("usage"),
            counted(store).await
        );
    }

    /// The usage kept by the triggers matches the rows through inserts,
    /// a queued run finishing bigger, and every kind of removal.
    #[tokio::test]
    async fn run_usage_follows_every_write() {
        let (_dir, store) = temp_store().await;
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
        assert_usage_counted(&store).await;
        let before = counted(&store).await;

        // The queued run finishes with a capped input and some logs.
        queued.status = RunStatus::Succeeded;
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
        assert_usage_counted(&store).await;
        store.prune_invocations(0, 5).await.expect("prune by count");
        assert_usage_counted(&store).await;
        for (project, _) in store.run_usage().await.expect("usage") {
            store
                .prune_project_bytes(&project, i64::MAX)
                .await
                .expect("prune all");
        }
        assert_eq!(store.run_usage().await.expect("usage"), Vec::new());
    }
}
