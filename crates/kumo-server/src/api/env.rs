//! A project's environment variables and secrets.
//!
//! Values reach every instance of the project's functions as process
//! environment. A change rolls the instances: the project's functions are
//! resolved again, so new calls start instances with the new values while
//! calls in flight finish on the old ones; no instance sees a mix.
//! Secrets are sealed before they are stored (`secrets.rs`), read back as
//! `***`, and blotted out of run logs and errors.

use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use kumo_store::EnvVarRow;
use kumo_types::{EnvVar, ErrorBody, Page, PutEnvVar, SECRET_MASK};

use super::Json;
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::state::State;
use crate::{access, projects};

fn to_api(row: EnvVarRow) -> EnvVar {
    EnvVar {
        value: if row.secret != 0 {
            SECRET_MASK.to_string()
        } else {
            row.value
        },
        key: row.name,
        secret: row.secret != 0,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// Lists a project's variables (secrets masked).
#[utoipa::path(get, path = "/api/v1/projects/{project}/env", operation_id = "list_env_vars", tag = "env", security(("token" = [])),
    params(("project" = kumo_types::Name, Path)),
    responses((status = 200, body = Page<EnvVar>), (status = 404, body = ErrorBody)))]
pub(crate) async fn list(
    AxState(state): AxState<State>,
    user: Authed,
    Path(project): Path<String>,
) -> ApiResult<axum::Json<Page<EnvVar>>> {
    let row = access::project(&state, &user, &project).await?;
    let vars = state.store().env_vars(&row.id).await?;
    Ok(axum::Json(Page {
        items: vars.into_iter().map(to_api).collect(),
        next: None,
    }))
}

/// One variable (a secret reads back as `***`).
#[utoipa::path(get, path = "/api/v1/projects/{project}/env/{key}", operation_id = "get_env_var", tag = "env", security(("token" = [])),
    params(("project" = kumo_types::Name, Path), ("key" = kumo_types::EnvKey, Path)),
    responses((status = 200, body = EnvVar), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, key)): Path<(String, String)>,
) -> ApiResult<axum::Json<EnvVar>> {
    let row = access::project(&state, &user, &project).await?;
    let var = state
        .store()
        .env_vars(&row.id)
        .await?
        .into_iter()
        .find(|v| v.name == key)
        .ok_or_else(|| {
            ApiError::not_found(format_args!("variable '{key}' of project '{project}'"))
        })?;
    Ok(axum::Json(to_api(var)))
}

/// Sets a variable (`{"value", "secret"}`); new calls see it.
#[utoipa::path(put, path = "/api/v1/projects/{project}/env/{key}", operation_id = "put_env_var", tag = "env", security(("token" = [])),
    params(("project" = kumo_types::Name, Path), ("key" = kumo_types::EnvKey, Path)), request_body = PutEnvVar,
    responses((status = 200, body = EnvVar, description = "changed"), (status = 201, body = EnvVar, description = "created"),
        (status = 400, body = ErrorBody, description = "not a JSON body of this shape, an invalid name, or a value with NUL"),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody, description = "the value, or the project's variables together, or their number, over the limit")))]
pub(crate) async fn put(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, key)): Path<(String, String)>,
    Json(req): Json<PutEnvVar>,
) -> ApiResult<(StatusCode, axum::Json<EnvVar>)> {
    let row = access::project(&state, &user, &project).await?;
    let (var, created) = projects::set_env(&state, &row, &key, req).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(to_api(var))))
}

/// Removes a variable; new calls no longer see it.
#[utoipa::path(delete, path = "/api/v1/projects/{project}/env/{key}", operation_id = "remove_env_var", tag = "env", security(("token" = [])),
    params(("project" = kumo_types::Name, Path), ("key" = kumo_types::EnvKey, Path)),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody)))]
pub(crate) async fn remove(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, key)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let row = access::project(&state, &user, &project).await?;
    projects::remove_env(&state, &row, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}
