//! Routes: a project's table of `METHOD /path` to function.

use sqlx::FromRow;

use crate::{Result, Store, new_id, now_ms};

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

impl Store {
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
        let query = sqlx::query("INSERT INTO routes (id, project_id, method, path, function, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&row.id)
            .bind(&row.project_id)
            .bind(&row.method)
            .bind(&row.path)
            .bind(&row.function)
            .bind(row.created_at);
        self.insert_unique(query, || format!("a route {method} {path} already exists"))
            .await?;
        Ok(row)
    }

    /// Removes a route; `false` when the project has no such route.
    pub async fn delete_route(&self, project_id: &str, id: &str) -> Result<bool> {
        let query = sqlx::query("DELETE FROM routes WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id);
        Ok(self.execute(query).await? > 0)
    }
}
