//! Deployments: a function's versions, their builds, and which one is active.

use kumo_types::DeploymentStatus;
use sqlx::FromRow;

use crate::functions::update_config;
use crate::{FunctionConfig, FunctionRow, Manifest, Result, Store, StoreError, new_id, now_ms};

#[derive(Debug, Clone, FromRow)]
pub struct DeploymentRow {
    pub id: String,
    pub function_id: String,
    pub version: i64,
    pub runtime: String,
    pub entrypoint: String,
    pub handler: String,
    pub content_hash: String,
    pub manifest: String,
    pub file_count: i64,
    pub size_bytes: i64,
    pub created_at: i64,
    #[sqlx(try_from = "String")]
    pub status: DeploymentStatus,
    /// Normalized dependencies, when it has any.
    pub deps: Option<String>,
    /// Key of its dependency layer.
    pub layer: Option<String>,
    /// Why its build or load failed.
    pub error: Option<String>,
    pub build_log: Option<String>,
}

/// A deployment and the names that locate it.
#[derive(Debug, Clone)]
pub struct LocatedDeployment {
    pub deployment: DeploymentRow,
    pub function: FunctionRow,
    pub project: String,
    pub owner_id: String,
}

impl DeploymentRow {
    pub fn manifest(&self) -> Result<Manifest> {
        serde_json::from_str(&self.manifest)
            .map_err(|e| StoreError::Corrupt(format!("manifest of deployment {}: {e}", self.id)))
    }
}

/// What a new deployment stores.
#[derive(Debug, Clone)]
pub struct NewDeployment<'a> {
    pub runtime: &'a str,
    pub entrypoint: &'a str,
    pub handler: &'a str,
    pub content_hash: &'a str,
    pub manifest: &'a Manifest,
    /// `Ready` (active at once) or `Building` (active once built).
    pub status: DeploymentStatus,
    pub deps: Option<&'a str>,
    pub layer: Option<&'a str>,
}

impl Store {
    /// Stores a new version of a function and, if it is `ready`, makes it
    /// active, atomically; settings (if given) are updated in the same
    /// transaction.
    pub async fn create_deployment(
        &self,
        function_id: &str,
        new: &NewDeployment<'_>,
        config: Option<&FunctionConfig>,
    ) -> Result<DeploymentRow> {
        let manifest =
            serde_json::to_string(new.manifest).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.write_tx().await?;
        // Taking the version number and bumping it in one statement keeps
        // two concurrent deploys from sharing a number.
        let (version,): (i64,) = sqlx::query_as(
            "UPDATE functions SET next_version = next_version + 1, updated_at = $1 WHERE id = $2 RETURNING next_version - 1",
        )
        .bind(now_ms())
        .bind(function_id)
        .fetch_one(&mut *tx)
        .await?;
        let row = DeploymentRow {
            id: new_id(),
            function_id: function_id.to_string(),
            version,
            runtime: new.runtime.to_string(),
            entrypoint: new.entrypoint.to_string(),
            handler: new.handler.to_string(),
            content_hash: new.content_hash.to_string(),
            manifest,
            file_count: new.manifest.files.len() as i64,
            size_bytes: new.manifest.files.iter().map(|f| f.size as i64).sum(),
            created_at: now_ms(),
            status: new.status,
            deps: new.deps.map(str::to_string),
            layer: new.layer.map(str::to_string),
            error: None,
            build_log: None,
        };
        sqlx::query(
            "INSERT INTO deployments (id, function_id, version, runtime, entrypoint, handler, content_hash, manifest, file_count, size_bytes, created_at, status, deps, layer) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&row.id)
        .bind(&row.function_id)
        .bind(row.version)
        .bind(&row.runtime)
        .bind(&row.entrypoint)
        .bind(&row.handler)
        .bind(&row.content_hash)
        .bind(&row.manifest)
        .bind(row.file_count)
        .bind(row.size_bytes)
        .bind(row.created_at)
        .bind(row.status.as_str())
        .bind(&row.deps)
        .bind(&row.layer)
        .execute(&mut *tx)
        .await?;
        if let Some(config) = config {
            update_config(function_id, config).execute(&mut *tx).await?;
        }
        if new.status == DeploymentStatus::Ready {
            sqlx::query("UPDATE functions SET active_version = $1 WHERE id = $2")
                .bind(version)
                .bind(function_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    /// Records how a deployment's build ended (`ready` or `failed`), or
    /// that it is `building` again.
    pub async fn set_build(
        &self,
        deployment_id: &str,
        status: DeploymentStatus,
        error: Option<&str>,
        log: Option<&str>,
    ) -> Result<()> {
        let query = sqlx::query(
            "UPDATE deployments SET status = $1, error = $2, build_log = $3 WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(log)
        .bind(deployment_id);
        self.execute(query).await?;
        Ok(())
    }

    /// Makes `version` active unless a newer one is active already (a
    /// build that ends after a later deploy does not take its place).
    pub async fn activate_if_newer(&self, function_id: &str, version: i64) -> Result<bool> {
        let query = sqlx::query(
            "UPDATE functions SET active_version = $1, updated_at = $2 WHERE id = $3 AND (active_version IS NULL OR active_version < $1)",
        )
        .bind(version)
        .bind(now_ms())
        .bind(function_id);
        Ok(self.execute(query).await? > 0)
    }

    /// Makes `version` active if the active version is still `expected`
    /// (nothing changed it meanwhile); `true` when it did.
    pub async fn activate_if_active(
        &self,
        function_id: &str,
        version: i64,
        expected: Option<i64>,
    ) -> Result<bool> {
        let query = sqlx::query(
            "UPDATE functions SET active_version = $1, updated_at = $2 WHERE id = $3 \
             AND (active_version = $4 OR (active_version IS NULL AND $4 IS NULL))",
        )
        .bind(version)
        .bind(now_ms())
        .bind(function_id)
        .bind(expected);
        Ok(self.execute(query).await? > 0)
    }

    /// Every deployment still `building` (to resume after a restart),
    /// with its function and project.
    pub async fn building_deployments(&self) -> Result<Vec<LocatedDeployment>> {
        let rows: Vec<DeploymentRow> =
            sqlx::query_as("SELECT * FROM deployments WHERE status = 'building'")
                .fetch_all(&self.db)
                .await?;
        let mut out = Vec::with_capacity(rows.len());
        for deployment in rows {
            let function: Option<FunctionRow> =
                sqlx::query_as("SELECT * FROM functions WHERE id = $1")
                    .bind(&deployment.function_id)
                    .fetch_optional(&self.db)
                    .await?;
            let Some(function) = function else { continue };
            let project: Option<(String, String)> =
                sqlx::query_as("SELECT name, owner_id FROM projects WHERE id = $1")
                    .bind(&function.project_id)
                    .fetch_optional(&self.db)
                    .await?;
            let Some((project, owner_id)) = project else {
                continue;
            };
            out.push(LocatedDeployment {
                deployment,
                function,
                project,
                owner_id,
            });
        }
        Ok(out)
    }

    /// The layers of active and building deployments: the ones to keep.
    pub async fn layers_in_use(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT d.layer FROM deployments d JOIN functions f ON f.id = d.function_id \
             WHERE d.layer IS NOT NULL AND (d.status = 'building' OR f.active_version = d.version)",
        )
        .fetch_all(&self.db)
        .await?;
        Ok(rows.into_iter().map(|(l,)| l).collect())
    }

    pub async fn deployment(
        &self,
        function_id: &str,
        version: i64,
    ) -> Result<Option<DeploymentRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM deployments WHERE function_id = $1 AND version = $2")
                .bind(function_id)
                .bind(version)
                .fetch_optional(&self.db)
                .await?,
        )
    }

    /// Versions newest first, before `cursor` (a version number).
    pub async fn list_deployments(
        &self,
        function_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeploymentRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM deployments WHERE function_id = $1 AND ($2 IS NULL OR version < $2) ORDER BY version DESC LIMIT $3",
        )
        .bind(function_id)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.db)
        .await?)
    }

    pub async fn set_active_version(&self, function_id: &str, version: i64) -> Result<()> {
        let query =
            sqlx::query("UPDATE functions SET active_version = $1, updated_at = $2 WHERE id = $3")
                .bind(version)
                .bind(now_ms())
                .bind(function_id);
        self.execute(query).await?;
        Ok(())
    }
}
