//! A function's life: creating it, changing its settings, deploying a
//! version (validate, store the files, lay them out, check them in a
//! sandbox, activate, or hand them to a dependency build), activating an
//! older version, and removing it. The API's handlers and nothing else
//! call this; it calls the store, the checks, the builds and the registry.

use kumo_runtimes::Runtime;
use kumo_store::{
    DeploymentRow, FileEntry, FunctionConfig, FunctionRow, Manifest, NewDeployment, ProjectRow,
};
use kumo_types::{
    DeployStatus, DeploymentStatus, ErrorCode, FunctionSettings, Limits, validate_entrypoint,
    validate_handler,
};

use crate::auth::Authed;
use crate::checks::{LoadTarget, check_load, check_sources};
use crate::error::{ApiError, ApiResult};
use crate::state::State;
use crate::upload::{self, UploadFile};
use crate::{access, builds, environment};

/// What a deployment brings: its files and what the request said of them.
pub(crate) struct Upload {
    pub(crate) files: Vec<UploadFile>,
    pub(crate) runtime: Option<String>,
    pub(crate) entrypoint: Option<String>,
    pub(crate) handler: Option<String>,
    pub(crate) settings: FunctionSettings,
}

/// The version a deployment made (or found).
pub(crate) struct Deployment {
    pub(crate) version: i64,
    pub(crate) content_hash: String,
    pub(crate) status: DeployStatus,
}

/// Where an activation ended.
pub(crate) enum Activated {
    Active,
    /// Its dependency layer was evicted; it is built again and becomes
    /// active after.
    Rebuilding,
}

/// Creates a function without code.
pub(crate) async fn create(
    state: &State,
    project: &ProjectRow,
    name: &str,
    runtime: Option<&str>,
    given: &FunctionSettings,
) -> ApiResult<FunctionRow> {
    kumo_types::validate_name("function", name)
        .map_err(|m| ApiError::new(ErrorCode::InvalidName, m))?;
    let runtime = runtime.map(parse_runtime).transpose()?;
    let config = merge_settings(None, runtime, given, &state.config().limits)?;
    Ok(state
        .store()
        .create_function(&project.id, name, &config)
        .await?)
}

/// Applies `given` over `row`'s settings; new calls get instances with
/// them.
pub(crate) async fn update_settings(
    state: &State,
    project: &ProjectRow,
    row: &FunctionRow,
    given: &FunctionSettings,
) -> ApiResult<FunctionRow> {
    let config = merge_settings(Some(row), None, given, &state.config().limits)?;
    state.store().update_function(&row.id, &config).await?;
    state.registry().invalidate(&project.name, &row.name);
    state
        .store()
        .function(&project.id, &row.name)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format_args!("function '{}/{}'", project.name, row.name))
        })
}

/// Deletes a function with its versions and runs.
pub(crate) async fn remove(
    state: &State,
    project: &ProjectRow,
    row: &FunctionRow,
) -> ApiResult<()> {
    state.store().delete_function(&row.id).await?;
    state.metrics().remove(&row.id);
    state.registry().invalidate(&project.name, &row.name);
    Ok(())
}

/// Deploys a new version of `project/function`, creating both if absent.
pub(crate) async fn deploy(
    state: &State,
    user: &Authed,
    project: &str,
    function: &str,
    upload: Upload,
) -> ApiResult<Deployment> {
    let Upload {
        files,
        runtime,
        entrypoint,
        handler,
        settings,
    } = upload;
    let limits = state.config().limits.clone();
    // Everything about the code is checked before anything is stored.
    let project_row = state.store().project(user.scope(), project).await?;
    let existing = match &project_row {
        Some(p) => state.store().function(&p.id, function).await?,
        None => None,
    };
    let runtime = match runtime.as_deref() {
        Some(name) => parse_runtime(name)?,
        None => match &existing {
            Some(f) => parse_runtime(&f.runtime)?,
            None => Runtime::Python,
        },
    };
    if !state.executor().config().toolchain.has(runtime) {
        return Err(invalid(format!(
            "the '{}' runtime is not available on this server: it has no usable binary for it \
             (for node: install Node.js 18 or newer, or start the server with --node PATH)",
            runtime.as_str()
        )));
    }
    let entrypoint = entrypoint.unwrap_or_else(|| runtime.default_entrypoint().to_string());
    validate_entrypoint(runtime.as_str(), &entrypoint).map_err(invalid)?;
    let mut files = files;
    check_entrypoint_file(runtime, &entrypoint, &mut files)?;
    let handler = handler.unwrap_or_else(|| "handler".into());
    validate_handler(&handler).map_err(invalid)?;
    let config = merge_settings(existing.as_ref(), Some(runtime), &settings, &limits)?;
    let deps = dependencies(state, runtime, &files)?;
    // Files are stored by hash and laid out read-only (keyed by content,
    // so an identical deployment shares the tree), then checked in a
    // sandbox before anything refers to them.
    let manifest = store_files(state, files).await?;
    let content_hash = manifest.content_hash(&[runtime.as_str(), &entrypoint, &handler]);

    // The active version's very code: nothing to check or build again.
    if let Some(f) = &existing
        && let Some(active) = f.active_version
        && let Some(current) = state.store().deployment(&f.id, active).await?
        && current.content_hash == content_hash
    {
        state.store().update_function(&f.id, &config).await?;
        state.registry().invalidate(project, function);
        return Ok(Deployment {
            version: active,
            content_hash,
            status: DeployStatus::Unchanged,
        });
    }

    let files_store = state.store().files().clone();
    let key = content_hash.clone();
    let laid_out = manifest.clone();
    let code_dir = tokio::task::spawn_blocking(move || files_store.materialize(&key, &laid_out))
        .await
        .map_err(|e| ApiError::internal("laying out a deployment", e))??;
    check_sources(state, runtime, &code_dir).await?;
    // With dependencies not built yet, the code is loaded after the build.
    let layer_key = deps.as_ref().map(|d| state.builder().key(d));
    let layer_dir = layer_key.as_deref().and_then(|k| state.builder().ready(k));
    let building = layer_key.is_some() && layer_dir.is_none();
    let env = match &project_row {
        Some(p) => environment::open(state.store(), state.secrets(), &p.id).await?,
        None => environment::ProjectEnv::default(),
    };
    if !building {
        check_load(
            state,
            LoadTarget {
                owner: &user.user_id,
                function,
                runtime,
                code_dir: &code_dir,
                layer: layer_dir.as_deref(),
                entrypoint: &entrypoint,
                handler: &handler,
                settings: &config.settings,
                content_hash: &content_hash,
                env: &env,
            },
        )
        .await?;
    }

    // Project and function, created on first deploy.
    let project_row = match project_row {
        Some(p) => p,
        None => match state
            .store()
            .create_project(&user.user_id, project, "")
            .await
        {
            Ok(p) => p,
            // Taken meanwhile, or owned by someone else: look again with the
            // caller's scope so a foreign project stays a 404.
            Err(kumo_store::StoreError::Conflict(_)) => {
                access::project(state, user, project).await?
            }
            Err(e) => return Err(e.into()),
        },
    };
    let function_row = match existing {
        Some(f) => f,
        None => match state
            .store()
            .create_function(&project_row.id, function, &config)
            .await
        {
            Ok(f) => f,
            Err(kumo_store::StoreError::Conflict(_)) => {
                access::function(state, user, project, function).await?.1
            }
            Err(e) => return Err(e.into()),
        },
    };

    let new = NewDeployment {
        runtime: runtime.as_str(),
        entrypoint: &entrypoint,
        handler: &handler,
        content_hash: &content_hash,
        manifest: &manifest,
        status: if building {
            DeploymentStatus::Building
        } else {
            DeploymentStatus::Ready
        },
        deps: deps.as_ref().map(|d| d.normalized.as_str()),
        layer: layer_key.as_deref(),
    };
    let deployment = state
        .store()
        .create_deployment(&function_row.id, &new, Some(&config))
        .await?;
    let version = deployment.version;
    if state.config().isolation == kumo_sandbox::Isolation::Process {
        warn_unsafe_mode();
    }
    if building {
        tracing::info!(project = %project, function = %function, version, "deployed; installing its dependencies");
        let owner_id = project_row.owner_id.clone();
        builds::spawn(
            state,
            builds::Job {
                deployment,
                function: function_row,
                project: project.to_string(),
                owner_id,
                activation: builds::Activation::IfNewest,
            },
        );
        return Ok(Deployment {
            version,
            content_hash,
            status: DeployStatus::Building,
        });
    }
    state.registry().invalidate(project, function);
    tracing::info!(project = %project, function = %function, version, "deployed");
    Ok(Deployment {
        version,
        content_hash,
        status: DeployStatus::Active,
    })
}

/// Makes `deployment` the active version of `row` (rollback or forward).
pub(crate) async fn activate(
    state: &State,
    project_row: &ProjectRow,
    mut row: FunctionRow,
    deployment: DeploymentRow,
) -> ApiResult<(Activated, FunctionRow)> {
    let (project, function) = (project_row.name.as_str(), row.name.clone());
    let function = function.as_str();
    let number = deployment.version;
    match deployment.status {
        DeploymentStatus::Building => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "version {number} is still installing its dependencies; it becomes active when they are installed"
                ),
            ));
        }
        DeploymentStatus::Failed => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "version {number} failed to build and cannot be activated: {}",
                    deployment.error.as_deref().unwrap_or("no reason recorded")
                ),
            ));
        }
        _ => {}
    }
    if deployment.layer.is_some() && builds::layer_dir(state, &deployment).is_none() {
        state
            .store()
            .set_build(&deployment.id, DeploymentStatus::Building, None, None)
            .await?;
        tracing::info!(project = %project, function = %function, version = number, "activating: its dependency layer was evicted; building it again");
        builds::spawn(
            state,
            builds::Job {
                deployment,
                function: row.clone(),
                project: project.to_string(),
                owner_id: project_row.owner_id.clone(),
                activation: builds::Activation::Rollback {
                    active_when_asked: row.active_version,
                },
            },
        );
        return Ok((Activated::Rebuilding, row));
    }
    state.store().set_active_version(&row.id, number).await?;
    state.registry().invalidate(project, function);
    row.active_version = Some(number);
    Ok((Activated::Active, row))
}

pub(crate) fn invalid(message: String) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, message)
}

fn parse_runtime(name: &str) -> ApiResult<Runtime> {
    Runtime::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Runtime::ALL.iter().map(|r| r.as_str()).collect();
        invalid(format!(
            "unknown runtime '{name}'; supported: {}",
            known.join(", ")
        ))
    })
}

/// The runtime and settings a function gets: `given` laid over
/// `current` (or the defaults), within the caps.
fn merge_settings(
    current: Option<&FunctionRow>,
    runtime: Option<Runtime>,
    given: &FunctionSettings,
    limits: &Limits,
) -> ApiResult<FunctionConfig> {
    limits.check_settings(given).map_err(invalid)?;
    let runtime = runtime
        .map(|r| r.as_str().to_string())
        .or_else(|| current.map(|c| c.runtime.clone()))
        .unwrap_or_else(|| Runtime::Python.as_str().to_string());
    let base = current.map_or_else(|| limits.default_settings(), |c| c.settings.clone());
    Ok(FunctionConfig {
        runtime,
        settings: base.with(given),
    })
}

/// The deployment's dependencies, checked; refused when this server
/// cannot install them.
fn dependencies(
    state: &State,
    runtime: Runtime,
    files: &[UploadFile],
) -> ApiResult<Option<kumo_builder::Deps>> {
    let view: Vec<(&str, &[u8])> = files
        .iter()
        .map(|f| (f.path.as_str(), f.bytes.as_slice()))
        .collect();
    let deps = kumo_builder::Deps::of(runtime, &view)
        .map_err(|e| ApiError::new(ErrorCode::InvalidFiles, e.to_string()))?;
    if deps.is_some() {
        state.builder().can_build(runtime).map_err(invalid)?;
    }
    Ok(deps)
}

/// The entrypoint's file must be among the files; a custom program's is
/// made executable (JSON uploads carry no file modes).
fn check_entrypoint_file(
    runtime: Runtime,
    entrypoint: &str,
    files: &mut [upload::UploadFile],
) -> ApiResult<()> {
    let file = if runtime == Runtime::Custom {
        match kumo_runtimes::custom::parse_command(entrypoint).map_err(invalid)? {
            kumo_runtimes::custom::Command {
                program: kumo_runtimes::custom::Program::File(path),
                ..
            } => Some(path),
            _ => None,
        }
    } else {
        Some(entrypoint.to_string())
    };
    let Some(path) = file else { return Ok(()) };
    match files.iter_mut().find(|f| f.path == path) {
        Some(f) => {
            if runtime == Runtime::Custom {
                f.executable = true;
            }
            Ok(())
        }
        None => Err(ApiError::new(
            ErrorCode::InvalidFiles,
            format!("the entrypoint '{path}' is not among the uploaded files"),
        )),
    }
}

async fn store_files(state: &State, files: Vec<UploadFile>) -> ApiResult<Manifest> {
    let files_store = state.store().files().clone();
    tokio::task::spawn_blocking(move || {
        let mut entries = Vec::with_capacity(files.len());
        for file in files {
            let hash = files_store.put(&file.bytes)?;
            entries.push(FileEntry {
                path: file.path,
                hash,
                size: file.bytes.len() as u64,
                executable: file.executable,
            });
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok::<_, kumo_store::StoreError>(Manifest { files: entries })
    })
    .await
    .map_err(|e| ApiError::internal("storing files", e))?
    .map_err(ApiError::from)
}

/// Said at start and on every deploy when functions run unconfined.
pub(crate) fn warn_unsafe_mode() {
    tracing::warn!(
        "UNSAFE: --isolation process runs functions as plain processes with the server's privileges; use it only on a development machine"
    );
}
