//! Projects: the unit that owns functions.

use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use kumo_store::ProjectRow;
use kumo_types::{
    CreateProject, ErrorBody, ErrorCode, Page, Project, UpdateProject, validate_name,
};

use super::{Json, PageQuery, Query, page_limit};
use crate::access;
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::state::State;

pub(crate) fn to_api(row: ProjectRow) -> Project {
    Project {
        cors: row
            .cors
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok()),
        name: row.name,
        description: row.description,
        created_at: row.created_at,
    }
}

fn check_description(description: &str) -> ApiResult<()> {
    // Characters, as the document's `maxLength` counts them.
    if description.chars().count() > 1024 {
        return Err(ApiError::bad_request(
            "description must be at most 1024 characters",
        ));
    }
    Ok(())
}

/// Lists the caller's projects.
#[utoipa::path(get, path = "/api/v1/projects", operation_id = "list_projects", tag = "projects", security(("token" = [])), params(PageQuery),
    responses((status = 200, body = Page<Project>),
        (status = 400, body = ErrorBody, description = "an unknown query parameter, or a limit out of range")))]
pub(crate) async fn list(
    AxState(state): AxState<State>,
    user: Authed,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<Project>>> {
    let limit = page_limit(q.limit)?;
    let rows = state
        .store()
        .list_projects(user.scope(), q.cursor.as_deref(), limit)
        .await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.name.clone()))
        .flatten();
    Ok(axum::Json(Page {
        items: rows.into_iter().map(to_api).collect(),
        next,
    }))
}

/// Creates a project.
#[utoipa::path(post, path = "/api/v1/projects", operation_id = "create_project", tag = "projects", security(("token" = [])), request_body = CreateProject,
    responses((status = 201, body = Project),
        (status = 400, body = ErrorBody, description = "not a JSON body of this shape, an invalid name, or a description too long"),
        (status = 409, body = ErrorBody, description = "the name is taken"),
        (status = 413, body = ErrorBody)))]
pub(crate) async fn create(
    AxState(state): AxState<State>,
    user: Authed,
    Json(req): Json<CreateProject>,
) -> ApiResult<(StatusCode, axum::Json<Project>)> {
    validate_name("project", &req.name).map_err(|m| ApiError::new(ErrorCode::InvalidName, m))?;
    let description = req.description.unwrap_or_default();
    check_description(&description)?;
    let row = state
        .store()
        .create_project(&user.user_id, &req.name, &description)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(to_api(row))))
}

/// One project.
#[utoipa::path(get, path = "/api/v1/projects/{project}", operation_id = "get_project", tag = "projects", security(("token" = [])),
    params(("project" = kumo_types::Name, Path)),
    responses((status = 200, body = Project), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    AxState(state): AxState<State>,
    user: Authed,
    Path(project): Path<String>,
) -> ApiResult<axum::Json<Project>> {
    Ok(axum::Json(to_api(
        access::project(&state, &user, &project).await?,
    )))
}

/// Changes a project's description or CORS settings.
#[utoipa::path(patch, path = "/api/v1/projects/{project}", operation_id = "update_project", tag = "projects", security(("token" = [])),
    params(("project" = kumo_types::Name, Path)), request_body = UpdateProject,
    responses((status = 200, body = Project),
        (status = 400, body = ErrorBody, description = "not a JSON body of this shape, a description too long, or invalid CORS settings"),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn update(
    AxState(state): AxState<State>,
    user: Authed,
    Path(project): Path<String>,
    Json(req): Json<UpdateProject>,
) -> ApiResult<axum::Json<Project>> {
    let mut row = access::project(&state, &user, &project).await?;
    // Everything is checked before anything changes.
    if let Some(description) = &req.description {
        check_description(description)?;
    }
    let cors = match &req.cors {
        Some(Some(settings)) => Some(Some(
            crate::cors::validate(settings).map_err(ApiError::bad_request)?,
        )),
        other => other.clone(),
    };
    if let Some(description) = req.description {
        state.store().update_project(&row.id, &description).await?;
        row.description = description;
    }
    if let Some(cors) = cors {
        let text = cors
            .map(|c| serde_json::to_string(&c))
            .transpose()
            .map_err(|e| ApiError::internal("encoding CORS settings", e))?;
        state
            .store()
            .set_project_cors(&row.id, text.as_deref())
            .await?;
        state.registry().invalidate_project(&row.name);
        row.cors = text;
    }
    Ok(axum::Json(to_api(row)))
}

/// Deletes a project with all its functions, versions and runs.
#[utoipa::path(delete, path = "/api/v1/projects/{project}", operation_id = "remove_project", tag = "projects", security(("token" = [])),
    params(("project" = kumo_types::Name, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub(crate) async fn remove(
    AxState(state): AxState<State>,
    user: Authed,
    Path(project): Path<String>,
) -> ApiResult<StatusCode> {
    let row = access::project(&state, &user, &project).await?;
    state.store().delete_project(&row.id).await?;
    state.metrics().remove_project(&row.name);
    state.registry().invalidate_project(&row.name);
    Ok(StatusCode::NO_CONTENT)
}
