//! Functions: a project's functions and their settings.

use sqlx::FromRow;

use crate::{Query, Result, Store, new_id, now_ms};

/// The columns of a [`FunctionRow`] (the table has more). A macro, not a
/// constant, so that `concat!` makes whole statements of it: sqlx takes
/// static strings as SQL.
macro_rules! function_columns {
    () => {
        "id, project_id, name, runtime, timeout_ms, memory_mb, concurrency, cpu_millicores, pids, tmp_mb, visibility, record_credentials, active_version, created_at, updated_at"
    };
}

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
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            function_columns!(),
            " FROM functions WHERE project_id = $1 AND name = $2"
        ))
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
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            function_columns!(),
            " FROM functions WHERE project_id = $1 AND ($2 IS NULL OR name > $2) ORDER BY name LIMIT $3"
        ))
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
        let query = sqlx::query(
            "INSERT INTO functions (runtime, timeout_ms, memory_mb, concurrency, visibility, cpu_millicores, pids, tmp_mb, record_credentials, \
             id, project_id, name, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        );
        let query = bind_settings(query, settings)
            .bind(&row.id)
            .bind(&row.project_id)
            .bind(&row.name)
            .bind(row.created_at)
            .bind(row.updated_at);
        self.insert_unique(query, || {
            format!("a function named '{name}' already exists in this project")
        })
        .await?;
        Ok(row)
    }

    pub async fn update_function(
        &self,
        function_id: &str,
        settings: &FunctionSettingsRow,
    ) -> Result<()> {
        let query = sqlx::query(
            "UPDATE functions SET runtime = $1, timeout_ms = $2, memory_mb = $3, concurrency = $4, visibility = $5, \
             cpu_millicores = $6, pids = $7, tmp_mb = $8, record_credentials = $9, updated_at = $11 WHERE id = $10",
        );
        let query = bind_settings(query, settings)
            .bind(function_id)
            .bind(now_ms());
        self.execute(query).await?;
        Ok(())
    }

    pub async fn delete_function(&self, function_id: &str) -> Result<()> {
        let statements = [
            "DELETE FROM invocations WHERE function_id = $1",
            "DELETE FROM functions WHERE id = $1",
        ];
        self.execute_in_one_tx(&statements, function_id).await
    }
}

/// Binds a function's settings to `$1`…`$9`, in the order `runtime,
/// timeout_ms, memory_mb, concurrency, visibility, cpu_millicores, pids,
/// tmp_mb, record_credentials`.
pub(crate) fn bind_settings<'q>(query: Query<'q>, settings: &FunctionSettingsRow) -> Query<'q> {
    query
        .bind(&settings.runtime)
        .bind(settings.timeout_ms)
        .bind(settings.memory_mb)
        .bind(settings.concurrency)
        .bind(&settings.visibility)
        .bind(settings.cpu_millicores)
        .bind(settings.pids)
        .bind(settings.tmp_mb)
        .bind(settings.record_credentials)
}
