//! Functions and their deployments (versions).

use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use kumo_runtimes::Runtime;
use kumo_store::{
    DeploymentRow, FileEntry, FunctionRow, FunctionSettingsRow, Manifest, NewDeployment, ProjectRow,
};
use kumo_types::{
    CreateFunction, DeployQuery, DeployRequest, DeployResponse, Deployment, ErrorBody, ErrorCode,
    Function, FunctionSettings, Limits, Page, Visibility, validate_entrypoint, validate_handler,
    validate_name,
};
use serde::Deserialize;

use super::{Body, Json, PageQuery, Query, page_limit, parse_json, projects};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::upload::{self, UploadFile};
use crate::{State, builds};

pub(crate) fn to_api(state: &State, project: &str, row: FunctionRow) -> Function {
    Function {
        url: state.function_url(project, &row.name),
        name: row.name,
        project: project.to_string(),
        runtime: row.runtime,
        timeout_ms: u64::try_from(row.timeout_ms).unwrap_or_default(),
        memory_mb: u64::try_from(row.memory_mb).unwrap_or_default(),
        concurrency: u64::try_from(row.concurrency).unwrap_or_default(),
        cpu_millicores: u64::try_from(row.cpu_millicores).unwrap_or_default(),
        pids: u64::try_from(row.pids).unwrap_or_default(),
        tmp_mb: u64::try_from(row.tmp_mb).unwrap_or_default(),
        visibility: Visibility::parse(&row.visibility).unwrap_or(Visibility::Public),
        record_credentials: row.record_credentials,
        active_version: row.active_version,
        created_at: row.created_at,
        updated_at: row.updated_at,
        instances: None,
        activity: None,
    }
}

/// [`to_api`] with the function's instances now and its recent activity.
/// Callers flush the run recorder first, so the last call is the last one
/// answered.
pub(crate) async fn describe(
    state: &State,
    project: &str,
    row: FunctionRow,
) -> ApiResult<Function> {
    let last = state
        .store()
        .list_invocations(&row.id, None, None, 1)
        .await?
        .into_iter()
        .next();
    let hour = state
        .metrics()
        .get(&row.id)
        .map(|m| m.window(60, kumo_store::now_ms()).totals);
    let function = row.name.clone();
    let activity = kumo_types::Activity {
        last_call_at: last.as_ref().map(|r| r.created_at),
        last_status: last
            .as_ref()
            .and_then(|r| kumo_types::RunStatus::parse(&r.status)),
        calls_last_hour: hour.as_ref().map_or(0, |t| t.calls),
        errors_last_hour: hour.as_ref().map_or(0, |t| t.errors),
    };
    let mut api = to_api(state, project, row);
    api.activity = Some(activity);
    let resolved = state.registry().resolve(state, project, &function).await?;
    if let Some(spec) = resolved.as_ref().and_then(|r| r.spec.as_ref()) {
        let stats = state.executor().stats(&spec.key);
        api.instances = Some(kumo_types::Instances {
            busy: stats.busy,
            idle: stats.idle,
        });
    }
    Ok(api)
}

fn deployment_to_api(row: DeploymentRow, active: Option<i64>) -> Deployment {
    Deployment {
        active: active == Some(row.version),
        status: row.status,
        error: row.error,
        layer: row.layer,
        build_log: None,
        version: row.version,
        runtime: row.runtime,
        entrypoint: row.entrypoint,
        handler: row.handler,
        content_hash: row.content_hash,
        file_count: row.file_count,
        size_bytes: row.size_bytes,
        created_at: row.created_at,
    }
}

/// The project and function if the caller may see them, else 404.
pub(crate) async fn find(
    state: &State,
    user: &Authed,
    project: &str,
    function: &str,
) -> ApiResult<(ProjectRow, FunctionRow)> {
    let project_row = projects::find(state, user, project).await?;
    let function_row = state
        .store()
        .function(&project_row.id, function)
        .await?
        .ok_or_else(|| ApiError::not_found(format_args!("function '{project}/{function}'")))?;
    Ok((project_row, function_row))
}

fn invalid(message: String) -> ApiError {
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

/// Applies `given` over `current` (or the defaults) within the caps.
fn merge_settings(
    current: Option<&FunctionRow>,
    runtime: Option<Runtime>,
    given: &FunctionSettings,
    limits: &Limits,
) -> ApiResult<FunctionSettingsRow> {
    // The ranges are those the API document states (`Limits::setting_ranges`).
    let within = |name: &str, value: Option<u64>| -> ApiResult<Option<i64>> {
        let Some(value) = value else { return Ok(None) };
        let range = limits.setting_range(name).ok_or_else(|| {
            ApiError::internal("checking settings", format!("no range for {name}"))
        })?;
        if value < range.min || value > range.max {
            return Err(invalid(format!(
                "{name} must be from {} to {}, got {value}",
                range.min, range.max
            )));
        }
        Ok(Some(i64::try_from(value).unwrap_or(i64::MAX)))
    };
    let timeout = within("timeout_ms", given.timeout_ms)?;
    let memory = within("memory_mb", given.memory_mb)?;
    let concurrency = within("concurrency", given.concurrency)?;
    let cpu = within("cpu_millicores", given.cpu_millicores)?;
    let pids = within("pids", given.pids)?;
    let tmp_mb = within("tmp_mb", given.tmp_mb)?;
    let default = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    Ok(FunctionSettingsRow {
        runtime: runtime
            .map(|r| r.as_str().to_string())
            .or_else(|| current.map(|c| c.runtime.clone()))
            .unwrap_or_else(|| Runtime::Python.as_str().to_string()),
        timeout_ms: timeout
            .or(current.map(|c| c.timeout_ms))
            .unwrap_or(default(limits.timeout_ms)),
        memory_mb: memory
            .or(current.map(|c| c.memory_mb))
            .unwrap_or(default(limits.memory_mb)),
        concurrency: concurrency
            .or(current.map(|c| c.concurrency))
            .unwrap_or(default(limits.concurrency)),
        cpu_millicores: cpu
            .or(current.map(|c| c.cpu_millicores))
            .unwrap_or(default(limits.cpu_millicores)),
        pids: pids
            .or(current.map(|c| c.pids))
            .unwrap_or(default(limits.pids)),
        tmp_mb: tmp_mb
            .or(current.map(|c| c.tmp_mb))
            .unwrap_or(default(limits.tmp_bytes / (1024 * 1024))),
        visibility: given
            .visibility
            .map(|v| v.as_str().to_string())
            .or_else(|| current.map(|c| c.visibility.clone()))
            .unwrap_or_else(|| Visibility::Public.as_str().to_string()),
        record_credentials: given
            .record_credentials
            .or(current.map(|c| c.record_credentials))
            .unwrap_or(false),
    })
}

/// Lists a project's functions.
#[utoipa::path(get, path = "/api/v1/projects/{project}/functions", tag = "functions", security(("token" = [])),
    params(("project" = kumo_types::Name, Path), PageQuery),
    responses((status = 200, body = Page<Function>), (status = 400, body = ErrorBody, description = "an unknown query parameter, or a value out of range"), (status = 404, body = ErrorBody)))]
pub(crate) async fn list(
    AxState(state): AxState<State>,
    user: Authed,
    Path(project): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<Function>>> {
    let project_row = projects::find(&state, &user, &project).await?;
    let limit = page_limit(q.limit)?;
    let rows = state
        .store()
        .list_functions(&project_row.id, q.cursor.as_deref(), limit)
        .await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.name.clone()))
        .flatten();
    let mut items = Vec::with_capacity(rows.len());
    state.recorder().flush().await;
    for row in rows {
        items.push(describe(&state, &project, row).await?);
    }
    Ok(axum::Json(Page { items, next }))
}

/// Creates a function without code (deploying creates it too).
#[utoipa::path(post, path = "/api/v1/projects/{project}/functions", tag = "functions", security(("token" = [])),
    params(("project" = kumo_types::Name, Path)), request_body = CreateFunction,
    responses((status = 201, body = Function),
        (status = 400, body = ErrorBody, description = "not a JSON body of this shape, an invalid name, an unknown runtime, or a setting out of range"),
        (status = 404, body = ErrorBody, description = "no such project"),
        (status = 409, body = ErrorBody, description = "the project has a function of this name"),
        (status = 413, body = ErrorBody)))]
pub(crate) async fn create(
    AxState(state): AxState<State>,
    user: Authed,
    Path(project): Path<String>,
    Json(req): Json<CreateFunction>,
) -> ApiResult<(StatusCode, axum::Json<Function>)> {
    let project_row = projects::find(&state, &user, &project).await?;
    validate_name("function", &req.name).map_err(|m| ApiError::new(ErrorCode::InvalidName, m))?;
    let runtime = req.runtime.as_deref().map(parse_runtime).transpose()?;
    let settings = merge_settings(None, runtime, &req.settings, &state.config().limits)?;
    let row = state
        .store()
        .create_function(&project_row.id, &req.name, &settings)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(to_api(&state, &project, row)),
    ))
}

/// One function, with its active version and URL.
#[utoipa::path(get, path = "/api/v1/projects/{project}/functions/{function}", tag = "functions", security(("token" = [])),
    params(("project" = kumo_types::Name, Path), ("function" = kumo_types::Name, Path)),
    responses((status = 200, body = Function), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, function)): Path<(String, String)>,
) -> ApiResult<axum::Json<Function>> {
    let (_, row) = find(&state, &user, &project, &function).await?;
    state.recorder().flush().await;
    Ok(axum::Json(describe(&state, &project, row).await?))
}

/// Changes a function's settings; new calls get instances with them.
#[utoipa::path(patch, path = "/api/v1/projects/{project}/functions/{function}", tag = "functions", security(("token" = [])),
    params(("project" = kumo_types::Name, Path), ("function" = kumo_types::Name, Path)), request_body = FunctionSettings,
    responses((status = 200, body = Function),
        (status = 400, body = ErrorBody, description = "not a JSON body of this shape, or a setting out of range"),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn update(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, function)): Path<(String, String)>,
    Json(req): Json<FunctionSettings>,
) -> ApiResult<axum::Json<Function>> {
    let (project_row, row) = find(&state, &user, &project, &function).await?;
    let settings = merge_settings(Some(&row), None, &req, &state.config().limits)?;
    state.store().update_function(&row.id, &settings).await?;
    state.registry().invalidate(&project, &function);
    let row = state
        .store()
        .function(&project_row.id, &function)
        .await?
        .ok_or_else(|| ApiError::not_found(format_args!("function '{project}/{function}'")))?;
    Ok(axum::Json(to_api(&state, &project, row)))
}

/// Deletes a function with its versions and runs.
#[utoipa::path(delete, path = "/api/v1/projects/{project}/functions/{function}", tag = "functions", security(("token" = [])),
    params(("project" = kumo_types::Name, Path), ("function" = kumo_types::Name, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub(crate) async fn remove(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, function)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (_, row) = find(&state, &user, &project, &function).await?;
    state.store().delete_function(&row.id).await?;
    state.metrics().remove(&row.id);
    state.registry().invalidate(&project, &function);
    Ok(StatusCode::NO_CONTENT)
}

/// Deploys a new version: JSON `{"files": {...}}` or a `.tar.gz` upload
/// (settings then in the query string). Creates the project and the
/// function if absent; the new version is active when this returns, or,
/// when it has dependencies not installed yet, once they are.
#[utoipa::path(post, path = "/api/v1/projects/{project}/functions/{function}/deployments", tag = "functions",
    security(("token" = [])), params(("project" = kumo_types::Name, Path), ("function" = kumo_types::Name, Path), DeployQuery),
    request_body(content(
        (DeployRequest = "application/json"),
        (String = "application/gzip"),
        (String = "application/x-gzip"),
        (String = "application/x-tar+gzip"),
        (String = "application/x-compressed-tar"),
        (String = "application/octet-stream")
    ), description = "JSON (also without a Content-Type), or a `.tar.gz` of the files with the settings in the query string"),
    responses(
        (status = 201, body = DeployResponse, description = "a new version is active"),
        (status = 202, body = DeployResponse, description = "a new version is installing its dependencies; it becomes active when they are installed and the code loads (see the deployment's status)"),
        (status = 200, body = DeployResponse, description = "the code is unchanged; no new version"),
        (status = 400, body = ErrorBody, description = "not a body of this shape, an unknown query parameter, invalid names, files or settings, or code that does not compile or load"),
        (status = 404, body = ErrorBody, description = "the project belongs to someone else"),
        (status = 413, body = ErrorBody, description = "the body or the unpacked files are larger than a deployment may be"),
        (status = 415, body = ErrorBody, description = "neither JSON nor a .tar.gz")))]
pub(crate) async fn deploy(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, function)): Path<(String, String)>,
    Query(query): Query<DeployQuery>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<(StatusCode, axum::Json<DeployResponse>)> {
    validate_name("project", &project).map_err(|m| ApiError::new(ErrorCode::InvalidName, m))?;
    validate_name("function", &function).map_err(|m| ApiError::new(ErrorCode::InvalidName, m))?;
    let limits = state.config().limits.clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (files, runtime, entrypoint, handler, settings) = match content_type.as_str() {
        "application/json" | "" => {
            let req: DeployRequest = parse_json(&body)?;
            let files = upload::from_json(req.files, &limits)?;
            (
                files,
                req.runtime.or(query.runtime),
                req.entrypoint.or(query.entrypoint),
                req.handler.or(query.handler),
                req.settings,
            )
        }
        "application/gzip"
        | "application/x-gzip"
        | "application/x-tar+gzip"
        | "application/octet-stream"
        | "application/x-compressed-tar" => {
            let files = upload::from_tar_gz(&body, &limits)?;
            let settings = query.settings();
            (
                files,
                query.runtime,
                query.entrypoint,
                query.handler,
                settings,
            )
        }
        other => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "unsupported content type '{other}'; send application/json or application/gzip (.tar.gz)"
                ),
            ));
        }
    };

    // Everything about the code is checked before anything is stored.
    let project_row = state.store().project(user.scope(), &project).await?;
    let existing = match &project_row {
        Some(p) => state.store().function(&p.id, &function).await?,
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
    let settings = merge_settings(existing.as_ref(), Some(runtime), &settings, &limits)?;
    let deps = dependencies(&state, runtime, &files)?;
    // Files are stored by hash and laid out read-only (keyed by content,
    // so an identical deployment shares the tree), then checked in a
    // sandbox before anything refers to them.
    let manifest = store_files(&state, files).await?;
    let content_hash = manifest.content_hash(&[runtime.as_str(), &entrypoint, &handler]);
    let url = state.function_url(&project, &function);

    // The active version's very code: nothing to check or build again.
    if let Some(f) = &existing
        && let Some(active) = f.active_version
        && let Some(current) = state.store().deployment(&f.id, active).await?
        && current.content_hash == content_hash
    {
        state.store().update_function(&f.id, &settings).await?;
        state.registry().invalidate(&project, &function);
        return Ok((
            StatusCode::OK,
            axum::Json(DeployResponse {
                function,
                version: active,
                content_hash,
                status: "unchanged".into(),
                url,
            }),
        ));
    }

    let files_store = state.store().files().clone();
    let key = content_hash.clone();
    let laid_out = manifest.clone();
    let code_dir = tokio::task::spawn_blocking(move || files_store.materialize(&key, &laid_out))
        .await
        .map_err(|e| ApiError::internal("laying out a deployment", e))??;
    check_sources(&state, runtime, &code_dir).await?;
    // With dependencies not built yet, the code is loaded after the build.
    let layer_key = deps.as_ref().map(|d| state.builder().key(d));
    let layer_dir = layer_key.as_deref().and_then(|k| state.builder().ready(k));
    let building = layer_key.is_some() && layer_dir.is_none();
    let env = match &project_row {
        Some(p) => super::env::project_env(&state, &p.id).await?,
        None => super::env::ProjectEnv::default(),
    };
    if !building {
        check_load(
            &state,
            LoadTarget {
                owner: &user.user_id,
                function: &function,
                runtime,
                code_dir: &code_dir,
                layer: layer_dir.as_deref(),
                entrypoint: &entrypoint,
                handler: &handler,
                settings: &settings,
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
            .create_project(&user.user_id, &project, "")
            .await
        {
            Ok(p) => p,
            // Taken meanwhile, or owned by someone else: look again with the
            // caller's scope so a foreign project stays a 404.
            Err(kumo_store::StoreError::Conflict(_)) => {
                projects::find(&state, &user, &project).await?
            }
            Err(e) => return Err(e.into()),
        },
    };
    let function_row = match existing {
        Some(f) => f,
        None => match state
            .store()
            .create_function(&project_row.id, &function, &settings)
            .await
        {
            Ok(f) => f,
            Err(kumo_store::StoreError::Conflict(_)) => {
                find(&state, &user, &project, &function).await?.1
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
        status: if building { "building" } else { "ready" },
        deps: deps.as_ref().map(|d| d.normalized.as_str()),
        layer: layer_key.as_deref(),
    };
    let deployment = state
        .store()
        .create_deployment(&function_row.id, &new, Some(&settings))
        .await?;
    let version = deployment.version;
    if state.config().isolation == kumo_sandbox::Isolation::Process {
        crate::warn_unsafe_mode();
    }
    if building {
        tracing::info!(project = %project, function = %function, version, "deployed; installing its dependencies");
        let owner_id = project_row.owner_id.clone();
        builds::spawn(
            &state,
            builds::Job {
                deployment,
                function: function_row,
                project: project.clone(),
                owner_id,
                activation: builds::Activation::IfNewest,
            },
        );
        return Ok((
            StatusCode::ACCEPTED,
            axum::Json(DeployResponse {
                function,
                version,
                content_hash,
                status: "building".into(),
                url,
            }),
        ));
    }
    state.registry().invalidate(&project, &function);
    tracing::info!(project = %project, function = %function, version, "deployed");
    Ok((
        StatusCode::CREATED,
        axum::Json(DeployResponse {
            function,
            version,
            content_hash,
            status: "active".into(),
            url,
        }),
    ))
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

/// Syntax-checks the sources (in a sandbox); a failure names the file and
/// line.
async fn check_sources(
    state: &State,
    runtime: Runtime,
    code_dir: &std::path::Path,
) -> ApiResult<()> {
    match state.executor().check_syntax(runtime, code_dir).await {
        Ok(()) => Ok(()),
        Err(kumo_executor::CheckError::Syntax(issue)) => {
            let location = issue.line.map(|line| kumo_types::SourceLocation {
                file: issue.file.clone(),
                line,
                column: issue.column,
            });
            Err(
                ApiError::new(ErrorCode::SyntaxError, format!("syntax error in {issue}"))
                    .at(location),
            )
        }
        Err(kumo_executor::CheckError::Refused(why)) => {
            Err(ApiError::new(ErrorCode::InvalidFiles, why))
        }
        Err(e @ kumo_executor::CheckError::Failed(_)) => {
            Err(ApiError::internal("checking the syntax", e))
        }
    }
}

/// What [`check_load`] loads.
pub(crate) struct LoadTarget<'a> {
    pub(crate) owner: &'a str,
    pub(crate) function: &'a str,
    pub(crate) runtime: Runtime,
    pub(crate) code_dir: &'a std::path::Path,
    /// The built dependency layer, if the code has dependencies.
    pub(crate) layer: Option<&'a std::path::Path>,
    pub(crate) entrypoint: &'a str,
    pub(crate) handler: &'a str,
    pub(crate) settings: &'a FunctionSettingsRow,
    pub(crate) content_hash: &'a str,
    /// The project's environment, as calls will see it.
    pub(crate) env: &'a super::env::ProjectEnv,
}

/// Loads the code once in a sandbox, as its first call would: an import
/// that fails, a missing handler or entrypoint is refused now, with the
/// error and where it happened, and the active version keeps serving.
pub(crate) async fn check_load(state: &State, target: LoadTarget<'_>) -> ApiResult<()> {
    let s = target.settings;
    let spec = std::sync::Arc::new(kumo_executor::DeploymentSpec {
        // Its own pool and no history: nothing of it outlives the check.
        key: format!("check:{}", target.content_hash),
        function_id: format!("check:{}", target.content_hash),
        tenant: target.owner.to_string(),
        function_name: target.function.to_string(),
        version: 0,
        runtime: target.runtime,
        code_dir: target.code_dir.to_path_buf(),
        layer: target.layer.map(std::path::Path::to_path_buf),
        entrypoint: target.entrypoint.to_string(),
        handler: target.handler.to_string(),
        timeout: std::time::Duration::from_millis(u64::try_from(s.timeout_ms).unwrap_or(1000)),
        memory_mb: u64::try_from(s.memory_mb).unwrap_or(128),
        cpu_millicores: u64::try_from(s.cpu_millicores).unwrap_or(1000),
        pids: u64::try_from(s.pids).unwrap_or(128),
        tmp_bytes: u64::try_from(s.tmp_mb).unwrap_or(64) * 1024 * 1024,
        concurrency: 1,
        env: target.env.vars.clone(),
        redact: target.env.secrets.clone(),
    });
    match state.executor().check_load(&spec).await {
        Ok(()) => Ok(()),
        Err(kumo_executor::LoadCheckError::Failed { status, error, .. }) => {
            let location = error_place(&error.traceback);
            let place = location
                .as_ref()
                .map(|l| format!(" (at {}, line {})", l.file, l.line))
                .unwrap_or_default();
            let what = match status {
                kumo_types::RunStatus::TimedOut => {
                    "the code did not finish loading in time".to_string()
                }
                kumo_types::RunStatus::OutOfMemory => {
                    "the code ran out of memory while loading".to_string()
                }
                _ => "the code failed to load".to_string(),
            };
            Err(ApiError::new(
                ErrorCode::LoadError,
                format!("{what}: {}: {}{place}", error.kind, error.message),
            )
            .at(location))
        }
        Err(e @ kumo_executor::LoadCheckError::Platform(_)) => {
            Err(ApiError::internal("loading the code to check it", e))
        }
    }
}

/// The last place in the deployment's files that a traceback or stack
/// names.
fn error_place(traceback: &str) -> Option<kumo_types::SourceLocation> {
    traceback.lines().rev().find_map(|line| {
        let at = line.find("/code/")?;
        let rest = &line[at + "/code/".len()..];
        let number = |text: &str| -> Option<u64> {
            let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        // Python: `File "/code/main.py", line 3, in <module>`.
        if let Some((file, tail)) = rest.split_once("\", line ") {
            return Some(kumo_types::SourceLocation {
                file: file.to_string(),
                line: number(tail)?,
                column: None,
            });
        }
        // Node: `at f (/code/index.js:3:9)` or `/code/index.js:3`.
        let end = rest.find([')', ' ']).unwrap_or(rest.len());
        let mut parts = rest[..end].split(':');
        let file = parts.next()?;
        let line = parts
            .next()
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))?;
        Some(kumo_types::SourceLocation {
            file: file.to_string(),
            line: number(line)?,
            column: parts.next().and_then(number),
        })
    })
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

/// Lists a function's versions, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project}/functions/{function}/deployments", tag = "functions",
    security(("token" = [])), params(("project" = kumo_types::Name, Path), ("function" = kumo_types::Name, Path), PageQuery),
    responses((status = 200, body = Page<Deployment>),
        (status = 400, body = ErrorBody, description = "an unknown query parameter, a limit out of range, or a cursor that is not a version"),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn list_deployments(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, function)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<Deployment>>> {
    let (_, row) = find(&state, &user, &project, &function).await?;
    let limit = page_limit(q.limit)?;
    let before = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid cursor '{c}'")))
        })
        .transpose()?;
    let rows = state
        .store()
        .list_deployments(&row.id, before, limit)
        .await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.version.to_string()))
        .flatten();
    Ok(axum::Json(Page {
        items: rows
            .into_iter()
            .map(|d| deployment_to_api(d, row.active_version))
            .collect(),
        next,
    }))
}

/// One version, with its build log.
#[utoipa::path(get, path = "/api/v1/projects/{project}/functions/{function}/deployments/{version}",
    tag = "functions", security(("token" = [])),
    params(("project" = kumo_types::Name, Path), ("function" = kumo_types::Name, Path), ("version" = i64, Path, minimum = 1)),
    responses((status = 200, body = Deployment),
        (status = 400, body = ErrorBody, description = "the version is not a number"),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn get_deployment(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, function, version)): Path<(String, String, String)>,
) -> ApiResult<axum::Json<Deployment>> {
    let (_, row) = find(&state, &user, &project, &function).await?;
    let deployment = version_of(&state, &row, &project, &function, &version).await?;
    let log = deployment.build_log.clone();
    let mut api = deployment_to_api(deployment, row.active_version);
    api.build_log = log;
    Ok(axum::Json(api))
}

async fn version_of(
    state: &State,
    row: &FunctionRow,
    project: &str,
    function: &str,
    version: &str,
) -> ApiResult<DeploymentRow> {
    let number: i64 = version
        .parse()
        .map_err(|_| ApiError::bad_request(format!("version must be a number, got '{version}'")))?;
    state
        .store()
        .deployment(&row.id, number)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format_args!("version {number} of '{project}/{function}'"))
        })
}

/// Makes an existing version the active one (rollback or forward). A
/// version whose dependency layer was evicted is built again first
/// (`202`; it becomes active when the build succeeds).
#[utoipa::path(post, path = "/api/v1/projects/{project}/functions/{function}/deployments/{version}/activate",
    tag = "functions", security(("token" = [])),
    params(("project" = kumo_types::Name, Path), ("function" = kumo_types::Name, Path), ("version" = i64, Path, minimum = 1)),
    responses((status = 200, body = Function, description = "the version is active"),
        (status = 202, body = Function, description = "its dependencies are being installed again; it becomes active when they are"),
        (status = 400, body = ErrorBody, description = "the version is not a number"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the version is still building, or failed")))]
pub(crate) async fn activate(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, function, version)): Path<(String, String, String)>,
) -> ApiResult<(StatusCode, axum::Json<Function>)> {
    let (project_row, mut row) = find(&state, &user, &project, &function).await?;
    let deployment = version_of(&state, &row, &project, &function, &version).await?;
    let number = deployment.version;
    match deployment.status.as_str() {
        "building" => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "version {number} is still installing its dependencies; it becomes active when they are installed"
                ),
            ));
        }
        "failed" => {
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
    if deployment.layer.is_some() && builds::layer_dir(&state, &deployment).is_none() {
        state
            .store()
            .set_build(&deployment.id, "building", None, None)
            .await?;
        tracing::info!(project = %project, function = %function, version = number, "activating: its dependency layer was evicted; building it again");
        builds::spawn(
            &state,
            builds::Job {
                deployment,
                function: row.clone(),
                project: project.clone(),
                owner_id: project_row.owner_id.clone(),
                activation: builds::Activation::Rollback {
                    active_when_asked: row.active_version,
                },
            },
        );
        return Ok((
            StatusCode::ACCEPTED,
            axum::Json(to_api(&state, &project, row)),
        ));
    }
    state.store().set_active_version(&row.id, number).await?;
    state.registry().invalidate(&project, &function);
    row.active_version = Some(number);
    Ok((StatusCode::OK, axum::Json(to_api(&state, &project, row))))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsQuery {
    /// How far back: `15m`, `1h` (default), `6h`, `24h`… from 1 minute
    /// to 24 hours (a plain number is milliseconds).
    #[param(pattern = "^[0-9]+(?:ms|s|m|h|d)?$")]
    pub(crate) window: Option<String>,
}

/// A function's calls, errors by status, cold starts, duration
/// percentiles, CPU time and peak memory over a window, in one-minute
/// points (since the server started; the last 24 hours at most).
#[utoipa::path(get, path = "/api/v1/projects/{project}/functions/{function}/metrics", tag = "functions",
    security(("token" = [])), params(("project" = kumo_types::Name, Path), ("function" = kumo_types::Name, Path), MetricsQuery),
    responses((status = 200, body = kumo_types::FunctionMetrics),
        (status = 400, body = ErrorBody, description = "an unknown query parameter, or a window that is not from 1m to 24h"),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn metrics(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, function)): Path<(String, String)>,
    Query(q): Query<MetricsQuery>,
) -> ApiResult<axum::Json<kumo_types::FunctionMetrics>> {
    let (_, row) = find(&state, &user, &project, &function).await?;
    let window = match q.window.as_deref() {
        None => std::time::Duration::from_secs(3600),
        Some(text) => super::runs::parse_since(text)?,
    };
    let minutes = i64::try_from(window.as_secs().div_ceil(60)).unwrap_or(i64::MAX);
    if !(1..=24 * 60).contains(&minutes) {
        return Err(ApiError::bad_request(format!(
            "window must be from 1m to 24h, got '{}'",
            q.window.unwrap_or_default()
        )));
    }
    let metrics = state
        .metrics()
        .get(&row.id)
        .unwrap_or_else(|| state.metrics().function(&row.id, &project, &function));
    Ok(axum::Json(metrics.window(minutes, kumo_store::now_ms())))
}

/// A version's files as a `.tar.gz` (executables keep their mode), as
/// `kumo pull` writes them back.
#[utoipa::path(get, path = "/api/v1/projects/{project}/functions/{function}/deployments/{version}/files",
    tag = "functions", security(("token" = [])),
    params(("project" = kumo_types::Name, Path), ("function" = kumo_types::Name, Path), ("version" = i64, Path, minimum = 1)),
    responses((status = 200, body = String, content_type = "application/gzip", description = "the files"),
        (status = 400, body = ErrorBody, description = "the version is not a number"),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn files(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, function, version)): Path<(String, String, String)>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let (_, row) = find(&state, &user, &project, &function).await?;
    let deployment = version_of(&state, &row, &project, &function, &version).await?;
    let manifest = deployment.manifest()?;
    let store = state.store().files().clone();
    let archive = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        for file in &manifest.files {
            let bytes = store.get(&file.hash).map_err(|e| e.to_string())?;
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(if file.executable { 0o755 } else { 0o644 });
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, &file.path, bytes.as_slice())
                .map_err(|e| e.to_string())?;
        }
        tar.into_inner()
            .and_then(|gz| gz.finish())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| ApiError::internal("packing a deployment", e))?
    .map_err(|e| ApiError::internal("packing a deployment", e))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{function}-v{}.tar.gz\"",
                    deployment.version
                ),
            ),
        ],
        archive,
    )
        .into_response())
}
