//! Projects: their names, owners, descriptions and CORS settings.

use sqlx::FromRow;

use crate::{Result, Scope, Store, new_id, now_ms};

#[derive(Debug, Clone, FromRow)]
pub struct ProjectRow {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    pub description: String,
    pub created_at: i64,
    /// CORS settings as JSON, if the project has any.
    pub cors: Option<String>,
}

impl Store {
    pub async fn create_project(
        &self,
        owner_id: &str,
        name: &str,
        description: &str,
    ) -> Result<ProjectRow> {
        let row = ProjectRow {
            id: new_id(),
            owner_id: owner_id.to_string(),
            name: name.to_string(),
            description: description.to_string(),
            created_at: now_ms(),
            cors: None,
        };
        let query = sqlx::query("INSERT INTO projects (id, owner_id, name, description, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&row.id)
            .bind(&row.owner_id)
            .bind(&row.name)
            .bind(&row.description)
            .bind(row.created_at);
        self.insert_unique(query, || format!("a project named '{name}' already exists"))
            .await?;
        Ok(row)
    }

    /// A project by name, if `scope` may see it.
    pub async fn project(&self, scope: Scope<'_>, name: &str) -> Result<Option<ProjectRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM projects WHERE name = $1 AND ($2 IS NULL OR owner_id = $2)",
        )
        .bind(name)
        .bind(scope.owner())
        .fetch_optional(&self.db)
        .await?)
    }

    /// Projects ordered by name, after `cursor`.
    pub async fn list_projects(
        &self,
        scope: Scope<'_>,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ProjectRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM projects WHERE ($1 IS NULL OR owner_id = $1) AND ($2 IS NULL OR name > $2) ORDER BY name LIMIT $3",
        )
        .bind(scope.owner())
        .bind(cursor)
        .bind(limit)
        .fetch_all(&self.db)
        .await?)
    }

    pub async fn update_project(&self, project_id: &str, description: &str) -> Result<()> {
        let query = sqlx::query("UPDATE projects SET description = $1 WHERE id = $2")
            .bind(description)
            .bind(project_id);
        self.execute(query).await?;
        Ok(())
    }

    /// Sets (or with `None` removes) a project's CORS settings.
    pub async fn set_project_cors(&self, project_id: &str, cors: Option<&str>) -> Result<()> {
        let query = sqlx::query("UPDATE projects SET cors = $1 WHERE id = $2")
            .bind(cors)
            .bind(project_id);
        self.execute(query).await?;
        Ok(())
    }

    /// Deletes a project with its functions, deployments and runs.
    pub async fn delete_project(&self, project_id: &str) -> Result<()> {
        let statements = [
            "DELETE FROM invocations WHERE project_id = $1",
            "DELETE FROM projects WHERE id = $1",
        ];
        self.execute_in_one_tx(&statements, project_id).await
    }
}
