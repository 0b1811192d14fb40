//! Retention: pruning old runs and log lines, and giving the space back.

use crate::{Result, Store};

impl Store {
    /// Removes lines read before `older_than_ms`, and all but the newest
    /// `keep` lines; returns how many went.
    pub async fn prune_log_lines(&self, older_than_ms: i64, keep: i64) -> Result<u64> {
        let by_age = self
            .execute(sqlx::query("DELETE FROM log_lines WHERE time < $1").bind(older_than_ms))
            .await?;
        let max = self.max_log_line_id().await?;
        let by_size = self
            .execute(sqlx::query("DELETE FROM log_lines WHERE id <= $1").bind(max - keep))
            .await?;
        Ok(by_age + by_size)
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
        self.execute(sqlx::query("PRAGMA incremental_vacuum"))
            .await?;
        self.execute(sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)"))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{auto_vacuum, run, temp_store};
    use crate::{InvocationRow, LogLineRow, Scope};

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

    /// A byte budget removes a project's oldest finished runs and their
    /// log lines, as many as needed and no more; unfinished runs and
    /// other projects stay.
    #[tokio::test]
    async fn pruning_by_bytes_removes_the_oldest_finished_runs_of_the_project() {
        let (_dir, store) = temp_store().await;
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
        let (dir, store) = temp_store().await;
        assert_eq!(auto_vacuum(&store).await, 2, "incremental");
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
}
