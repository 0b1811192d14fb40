//! Functions and their deployments (versions).

use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use kumo_store::{DeploymentRow, FunctionRow};
use kumo_types::{
    CreateFunction, DeployQuery, DeployRequest, DeployResponse, DeployStatus, Deployment,
    ErrorBody, ErrorCode, Function, FunctionSettings, MetricsQuery, Page, validate_name,
};

use super::{Body, Json, PageQuery, Query, page_limit, parse_json};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::state::State;
use crate::{access, deploy, upload};

pub(crate) fn to_api(state: &State, project: &str, row: FunctionRow) -> Function {
    Function {
        url: state.function_url(project, &row.name),
        name: row.name,
        project: project.to_string(),
        runtime: row.runtime,
        settings: row.settings,
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
        last_status: last.as_ref().map(|r| r.status),
        calls_last_hour: hour.as_ref().map_or(0, |t| t.calls),
        errors_last_hour: hour.as_ref().map_or(0, |t| t.errors),
    };
    let mut api = to_api(state, project, row);
    api.activity = Some(activity);
    let resolved = state.registry().resolve(project, &function).await?;
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

/// Lists a project's functions.
#[utoipa::path(get, path = "/api/v1/projects/{project}/functions", operation_id = "list_functions", tag = "functions", security(("token" = [])),
    params(("project" = kumo_types::Name, Path), PageQuery),
    responses((status = 200, body = Page<Function>), (status = 400, body = ErrorBody, description = "an unknown query parameter, or a value out of range"), (status = 404, body = ErrorBody)))]
pub(crate) async fn list(
    AxState(state): AxState<State>,
    user: Authed,
    Path(project): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<Function>>> {
    let project_row = access::project(&state, &user, &project).await?;
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
#[utoipa::path(post, path = "/api/v1/projects/{project}/functions", operation_id = "create_function", tag = "functions", security(("token" = [])),
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
    let project_row = access::project(&state, &user, &project).await?;
    let row = deploy::create(
        &state,
        &project_row,
        &req.name,
        req.runtime.as_deref(),
        &req.settings,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(to_api(&state, &project, row)),
    ))
}

/// One function, with its active version and URL.
#[utoipa::path(get, path = "/api/v1/projects/{project}/functions/{function}", operation_id = "get_function", tag = "functions", security(("token" = [])),
    params(("project" = kumo_types::Name, Path), ("function" = kumo_types::Name, Path)),
    responses((status = 200, body = Function), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, function)): Path<(String, String)>,
) -> ApiResult<axum::Json<Function>> {
    let (_, row) = access::function(&state, &user, &project, &function).await?;
    state.recorder().flush().await;
    Ok(axum::Json(describe(&state, &project, row).await?))
}

/// Changes a function's settings; new calls get instances with them.
#[utoipa::path(patch, path = "/api/v1/projects/{project}/functions/{function}", operation_id = "update_function", tag = "functions", security(("token" = [])),
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
    let (project_row, row) = access::function(&state, &user, &project, &function).await?;
    let row = deploy::update_settings(&state, &project_row, &row, &req).await?;
    Ok(axum::Json(to_api(&state, &project, row)))
}

/// Deletes a function with its versions and runs.
#[utoipa::path(delete, path = "/api/v1/projects/{project}/functions/{function}", operation_id = "remove_function", tag = "functions", security(("token" = [])),
    params(("project" = kumo_types::Name, Path), ("function" = kumo_types::Name, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub(crate) async fn remove(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, function)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (project_row, row) = access::function(&state, &user, &project, &function).await?;
    deploy::remove(&state, &project_row, &row).await?;
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

    let deployed = deploy::deploy(
        &state,
        &user,
        &project,
        &function,
        deploy::Upload {
            files,
            runtime,
            entrypoint,
            handler,
            settings,
        },
    )
    .await?;
    let status = match deployed.status {
        DeployStatus::Unchanged => StatusCode::OK,
        DeployStatus::Building => StatusCode::ACCEPTED,
        DeployStatus::Active => StatusCode::CREATED,
    };
    Ok((
        status,
        axum::Json(DeployResponse {
            url: state.function_url(&project, &function),
            function,
            version: deployed.version,
            content_hash: deployed.content_hash,
            status: deployed.status,
        }),
    ))
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
    let (_, row) = access::function(&state, &user, &project, &function).await?;
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
    let (_, row) = access::function(&state, &user, &project, &function).await?;
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
    let (project_row, row) = access::function(&state, &user, &project, &function).await?;
    let deployment = version_of(&state, &row, &project, &function, &version).await?;
    let (status, row) = deploy::activate(&state, &project_row, row, deployment).await?;
    let status = match status {
        deploy::Activated::Active => StatusCode::OK,
        deploy::Activated::Rebuilding => StatusCode::ACCEPTED,
    };
    Ok((status, axum::Json(to_api(&state, &project, row))))
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
    let (_, row) = access::function(&state, &user, &project, &function).await?;
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
    let (_, row) = access::function(&state, &user, &project, &function).await?;
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
