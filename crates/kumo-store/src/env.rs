//! Environment variables: a project's variables and sealed secrets.

use sqlx::FromRow;

use crate::{Result, Store, now_ms};

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

impl Store {
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
        let query = sqlx::query("DELETE FROM env_vars WHERE project_id = $1 AND name = $2")
            .bind(project_id)
            .bind(name);
        Ok(self.execute(query).await? > 0)
    }
}
