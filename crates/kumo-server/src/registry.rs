//! The in-memory maps from `(project, function)` to what serves it, and
//! from a project to its public surface (routes and CORS), so a warm call
//! touches no database. Entries are loaded on first use and dropped on
//! every change (deploy, activate, settings, variables, routes, delete);
//! dropping a function's entry retires the instances of its old spec. A
//! new route table is built aside and swapped in: requests never wait
//! for a rebuild.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kumo_executor::{DeploymentSpec, Executor};
use kumo_runtimes::Runtime;
use kumo_store::{FunctionRow, ProjectRow, Store};
use kumo_types::Visibility;

use crate::error::ApiError;
use crate::metrics::{FunctionMetrics, Metrics};
use crate::routes::{RoutePattern, RouteTable};
use crate::secrets::Secrets;
use crate::{cors, environment};

/// A function as the hot path needs it.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) project_id: String,
    pub(crate) project: String,
    pub(crate) owner_id: String,
    pub(crate) function_id: String,
    pub(crate) function: String,
    pub(crate) visibility: Visibility,
    /// Keep credential headers in stored HTTP runs.
    pub(crate) record_credentials: bool,
    /// `None` until the function has an active deployment.
    pub(crate) spec: Option<Arc<DeploymentSpec>>,
    /// The project's CORS answers, if it has settings.
    pub(crate) cors: Option<Arc<cors::Policy>>,
    /// Where its calls are counted.
    pub(crate) metrics: Arc<FunctionMetrics>,
}

/// A project's public surface: its routes and CORS settings.
pub(crate) struct Surface {
    /// Route table: the value is the function's name.
    pub(crate) routes: RouteTable<String>,
    pub(crate) cors: Option<Arc<cors::Policy>>,
}

/// What the registry loads entries from.
pub(crate) struct Sources {
    pub(crate) store: Store,
    pub(crate) executor: Executor,
    pub(crate) builder: kumo_builder::Builder,
    pub(crate) secrets: Arc<Secrets>,
    pub(crate) metrics: Arc<Metrics>,
}

pub(crate) struct Registry {
    sources: Sources,
    entries: RwLock<HashMap<(String, String), Arc<Resolved>>>,
    surfaces: RwLock<HashMap<String, Arc<Surface>>>,
    /// Bumped on every invalidation, so a load that raced with a change
    /// does not put stale data back.
    generation: AtomicU64,
}

impl Registry {
    pub(crate) fn new(sources: Sources) -> Self {
        Registry {
            sources,
            entries: RwLock::new(HashMap::new()),
            surfaces: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// The function `project/function`, from memory or the store.
    pub(crate) async fn resolve(
        &self,
        project: &str,
        function: &str,
    ) -> Result<Option<Arc<Resolved>>, ApiError> {
        let store = &self.sources.store;
        let key = (project.to_string(), function.to_string());
        if let Some(found) = self.entries.read().expect("registry poisoned").get(&key) {
            return Ok(Some(found.clone()));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let Some(project_row) = store.project(kumo_store::Scope::All, project).await? else {
            return Ok(None);
        };
        let Some(function_row) = store.function(&project_row.id, function).await? else {
            return Ok(None);
        };
        let resolved = Arc::new(self.load(project_row, function_row).await?);
        let mut entries = self.entries.write().expect("registry poisoned");
        if self.generation.load(Ordering::Acquire) == generation {
            entries.insert(key, resolved.clone());
        }
        Ok(Some(resolved))
    }

    /// The routes and CORS settings of `project`, from memory or the store.
    pub(crate) async fn surface(&self, project: &str) -> Result<Option<Arc<Surface>>, ApiError> {
        if let Some(found) = self
            .surfaces
            .read()
            .expect("registry poisoned")
            .get(project)
        {
            return Ok(Some(found.clone()));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let store = &self.sources.store;
        let Some(project_row) = store.project(kumo_store::Scope::All, project).await? else {
            return Ok(None);
        };
        let mut routes = RouteTable::new();
        for route in store.routes(&project_row.id).await? {
            // Stored routes were checked when they were made.
            let method = match route.method.as_str() {
                "ANY" => None,
                m => axum::http::Method::from_bytes(m.as_bytes()).ok(),
            };
            let inserted = RoutePattern::parse(&route.path)
                .map_err(|e| e.to_string())
                .and_then(|pattern| {
                    routes
                        .insert(method, pattern, route.function.clone())
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = inserted {
                tracing::warn!(project, route = %route.path, error = %e, "a stored route no longer fits; it is skipped");
            }
        }
        let surface = Arc::new(Surface {
            routes,
            cors: cors_policy(&project_row),
        });
        let mut surfaces = self.surfaces.write().expect("registry poisoned");
        if self.generation.load(Ordering::Acquire) == generation {
            surfaces.insert(project.to_string(), surface.clone());
        }
        Ok(Some(surface))
    }

    /// Forgets one function; its old instances drain and stop.
    pub(crate) fn invalidate(&self, project: &str, function: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let removed = self
            .entries
            .write()
            .expect("registry poisoned")
            .remove(&(project.to_string(), function.to_string()));
        self.retire(removed.into_iter());
    }

    /// Forgets a project's routes (they are loaded again on next use);
    /// its functions' instances stay.
    pub(crate) fn invalidate_surface(&self, project: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.surfaces
            .write()
            .expect("registry poisoned")
            .remove(project);
    }

    /// Forgets every function of a project, and its routes.
    pub(crate) fn invalidate_project(&self, project: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.surfaces
            .write()
            .expect("registry poisoned")
            .remove(project);
        let mut removed = Vec::new();
        self.entries
            .write()
            .expect("registry poisoned")
            .retain(|(p, _), v| {
                if p == project {
                    removed.push(v.clone());
                    false
                } else {
                    true
                }
            });
        self.retire(removed.into_iter());
    }

    /// Builds the entry of `function`: its active version laid out, with
    /// the project's environment.
    async fn load(&self, project: ProjectRow, function: FunctionRow) -> Result<Resolved, ApiError> {
        let store = &self.sources.store;
        let mut spec = None;
        if let Some(version) = function.active_version
            && let Some(deployment) = store.deployment(&function.id, version).await?
        {
            let runtime = Runtime::parse(&deployment.runtime).ok_or_else(|| {
                ApiError::internal(
                    "loading a deployment",
                    format!("unknown runtime {}", deployment.runtime),
                )
            })?;
            let manifest = deployment.manifest()?;
            let files = store.files().clone();
            let key = deployment.content_hash.clone();
            let code_dir = tokio::task::spawn_blocking(move || files.materialize(&key, &manifest))
                .await
                .map_err(|e| ApiError::internal("laying out a deployment", e))??;
            let s = &function.settings;
            let concurrency = usize::try_from(s.concurrency).unwrap_or(usize::MAX).max(1);
            let env = environment::open(store, &self.sources.secrets, &project.id).await?;
            let layer = match deployment.layer.as_deref() {
                Some(key) => {
                    let dir = self.sources.builder.ready(key);
                    if dir.is_none() {
                        tracing::warn!(layer = key, function = %function.name, "the active version's dependency layer is missing");
                    }
                    dir
                }
                None => None,
            };
            spec = Some(Arc::new(DeploymentSpec {
                // New settings or values mean new instances.
                key: format!(
                    "{}:{}:{}",
                    deployment.id,
                    env.fingerprint,
                    serde_json::to_string(s).unwrap_or_default()
                ),
                function_id: function.id.clone(),
                tenant: project.owner_id.clone(),
                function_name: function.name.clone(),
                version: deployment.version,
                runtime,
                code_dir,
                layer,
                entrypoint: deployment.entrypoint,
                handler: deployment.handler,
                timeout: Duration::from_millis(s.timeout_ms),
                memory_mb: s.memory_mb,
                cpu_millicores: s.cpu_millicores,
                pids: s.pids,
                tmp_bytes: s.tmp_mb * 1024 * 1024,
                concurrency,
                env: env.vars,
                redact: env.secrets,
            }));
        }
        let cors = cors_policy(&project);
        let metrics = self
            .sources
            .metrics
            .function(&function.id, &project.name, &function.name);
        Ok(Resolved {
            cors,
            metrics,
            project_id: project.id,
            project: project.name,
            owner_id: project.owner_id,
            function_id: function.id,
            function: function.name,
            visibility: function.settings.visibility,
            record_credentials: function.settings.record_credentials,
            spec,
        })
    }

    fn retire(&self, removed: impl Iterator<Item = Arc<Resolved>>) {
        for resolved in removed {
            if let Some(spec) = &resolved.spec {
                self.sources.executor.retire(&spec.key);
            }
        }
    }
}

/// The CORS policy of a project's stored settings.
fn cors_policy(project: &ProjectRow) -> Option<Arc<cors::Policy>> {
    let text = project.cors.as_deref()?;
    match serde_json::from_str::<kumo_types::Cors>(text) {
        Ok(settings) => Some(Arc::new(cors::Policy::new(&settings))),
        Err(e) => {
            tracing::warn!(project = %project.name, error = %e, "stored CORS settings do not parse; ignored");
            None
        }
    }
}
