//! Log lines: every line functions print, stored and read back.

use sqlx::FromRow;

use crate::{Result, Store};

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

impl Store {
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
}
