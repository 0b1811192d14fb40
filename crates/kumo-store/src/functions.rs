//! Functions: a project's functions and their settings.

use sqlx::FromRow;

use crate::{Result, Store, conflict, new_id, now_ms};

#[derive(Debug, Clone, FromRow)]
pub struct FunctionRow {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub runtime: String,
    pub timeout_ms: i64,
    pub memory_mb: i64,
    pub concurrency: i64,
    pub cpu_millicores: i64,
    pub pids: i64,
    pub tmp_mb: i64,
    pub visibility: String,
    pub record_credentials: bool,
    pub active_version: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Settings of a function as stored.
#[derive(Debug, Clone)]
pub struct FunctionSettingsRow {
    pub runtime: String,
    pub timeout_ms: i64,
    pub memory_mb: i64,
    pub concurrency: i64,
    pub cpu_millicores: i64,
    pub pids: i64,
    pub tmp_mb: i64,
    pub visibility: String,
    pub record_credentials: bool,
}

impl Store {
    pub async fn function(&self, project_id: &str, name: &str) -> Result<Option<FunctionRow>> {
        Ok(sqlx::query_as(
            "SELECT id, project_id, name, runtime, timeout_ms, memory_mb, concurrency, cpu_millicores, pids, tmp_mb, visibility, record_credentials, active_version, created_at, updated_at \
             FROM functions WHERE project_id = $1 AND name = $2",
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
            "SELECT id, project_id, name, runtime, timeout_ms, memory_mb, concurrency, cpu_millicores, pids, tmp_mb, visibility, record_credentials, active_version, created_at, updated_at \
             FROM functions WHERE project_id = $1 AND ($2 IS NULL OR name > $2) ORDER BY name LIMIT $3",
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
        settings: &FunctionSettingsRow,
    ) -> Result<FunctionRow> {
        let now = now_ms();
        let row = FunctionRow {
            id: new_id(),
            project_id: project_id.to_string(),
            name: name.to_string(),
            runtime: settings.runtime.clone(),
            timeout_ms: settings.timeout_ms,
            memory_mb: settings.memory_mb,
            concurrency: settings.concurrency,
            cpu_millicores: settings.cpu_millicores,
            pids: settings.pids,
            tmp_mb: settings.tmp_mb,
            visibility: settings.visibility.clone(),
            record_credentials: settings.record_credentials,
            active_version: None,
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO functions (id, project_id, name, runtime, timeout_ms, memory_mb, concurrency, visibility, created_at, updated_at, cpu_millicores, pids, tmp_mb, record_credentials) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&row.id)
        .bind(&row.project_id)
        .bind(&row.name)
        .bind(&row.runtime)
        .bind(row.timeout_ms)
        .bind(row.memory_mb)
        .bind(row.concurrency)
        .bind(&row.visibility)
        .bind(row.created_at)
        .bind(row.updated_at)
        .bind(row.cpu_millicores)
        .bind(row.pids)
        .bind(row.tmp_mb)
        .bind(row.record_credentials)
        .execute(&self.db)
        .await
        .map_err(|e| conflict(e, || format!("a function named '{name}' already exists in this project")))?;
        Ok(row)
    }

    pub async fn update_function(
        &self,
        function_id: &str,
        settings: &FunctionSettingsRow,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE functions SET runtime = $1, timeout_ms = $2, memory_mb = $3, concurrency = $4, visibility = $5, updated_at = $6, cpu_millicores = $8, pids = $9, tmp_mb = $10, record_credentials = $11 WHERE id = $7",
        )
        .bind(&settings.runtime)
        .bind(settings.timeout_ms)
        .bind(settings.memory_mb)
        .bind(settings.concurrency)
        .bind(&settings.visibility)
        .bind(now_ms())
        .bind(function_id)
        .bind(settings.cpu_millicores)
        .bind(settings.pids)
        .bind(settings.tmp_mb)
        .bind(settings.record_credentials)
        .execute(&self.db)
        .await?;
        Ok(())
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
}
