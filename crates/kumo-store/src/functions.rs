//! Functions: a project's functions, their runtime and their settings.

use kumo_types::Settings;
use sqlx::FromRow;
use sqlx::types::Json;

use crate::{Query, Result, Store, new_id, now_ms};

#[derive(Debug, Clone, FromRow)]
pub struct FunctionRow {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub runtime: String,
    /// Its settings, kept as one JSON object: a new setting needs no
    /// column.
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

impl Store {
    pub async fn function(&self, project_id: &str, name: &str) -> Result<Option<FunctionRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM functions WHERE project_id = $1 AND name = $2")
                .bind(project_id)
                .bind(name)
                .fetch_optional(&self.db)
                .await?,
        )
    }

    pub async fn list_functions(
        &self,
        project_id: &str,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Vec<FunctionRow>> {
        Ok(sqlx::query_as("SELECT * FROM functions WHERE project_id = $1 AND ($2 IS NULL OR name > $2) ORDER BY name LIMIT $3")
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
        let query = sqlx::query(
            "INSERT INTO functions (runtime, settings, updated_at, id, project_id, name, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        );
        let query = bind_config(query, config, now)
            .bind(&row.id)
            .bind(&row.project_id)
            .bind(&row.name)
            .bind(row.created_at);
        self.insert_unique(query, || {
            format!("a function named '{name}' already exists in this project")
        })
        .await?;
        Ok(row)
    }

    pub async fn update_function(&self, function_id: &str, config: &FunctionConfig) -> Result<()> {
        self.execute(update_config(function_id, config)).await?;
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

/// Binds a function's runtime, settings and the time of the change to
/// `$1`, `$2` and `$3`.
fn bind_config<'q>(query: Query<'q>, config: &'q FunctionConfig, now: i64) -> Query<'q> {
    query
        .bind(&config.runtime)
        .bind(Json(&config.settings))
        .bind(now)
}

/// The statement that sets a function's runtime and settings.
pub(crate) fn update_config<'q>(function_id: &'q str, config: &'q FunctionConfig) -> Query<'q> {
    let query = sqlx::query(
        "UPDATE functions SET runtime = $1, settings = $2, updated_at = $3 WHERE id = $4",
    );
    bind_config(query, config, now_ms()).bind(function_id)
}

#[cfg(test)]
mod tests {

    use super::*;

    /// Functions stored with a column per setting keep their settings when
    /// the columns become one JSON object.
    #[tokio::test]
    async fn settings_columns_become_one_object_with_their_values() {
        let dir = tempfile::tempdir().expect("temp dir");
        let old = crate::testing::older_database(dir.path(), true).await;
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
