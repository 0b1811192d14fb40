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
use kumo_types::{EnvVar, ErrorBody, ErrorCode, Page, PutEnvVar, SECRET_MASK, validate_env_key};

use super::{Json, projects};
use crate::State;
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};

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
#[utoipa::path(get, path = "/api/v1/projects/{project}/env", tag = "env", security(("token" = [])),
    params(("project" = kumo_types::Name, Path)),
    responses((status = 200, body = Page<EnvVar>), (status = 404, body = ErrorBody)))]
pub(crate) async fn list(
    AxState(state): AxState<State>,
    user: Authed,
    Path(project): Path<String>,
) -> ApiResult<axum::Json<Page<EnvVar>>> {
    let row = projects::find(&state, &user, &project).await?;
    let vars = state.store().env_vars(&row.id).await?;
    Ok(axum::Json(Page {
        items: vars.into_iter().map(to_api).collect(),
        next: None,
    }))
}

/// One variable (a secret reads back as `***`).
#[utoipa::path(get, path = "/api/v1/projects/{project}/env/{key}", tag = "env", security(("token" = [])),
    params(("project" = kumo_types::Name, Path), ("key" = kumo_types::EnvKey, Path)),
    responses((status = 200, body = EnvVar), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, key)): Path<(String, String)>,
) -> ApiResult<axum::Json<EnvVar>> {
    let row = projects::find(&state, &user, &project).await?;
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
#[utoipa::path(put, path = "/api/v1/projects/{project}/env/{key}", tag = "env", security(("token" = [])),
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
    let row = projects::find(&state, &user, &project).await?;
    validate_env_key(&key).map_err(ApiError::bad_request)?;
    let limits = &state.config().limits;
    if req.value.len() > limits.env_value_bytes {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the value of {key} is {} bytes; a variable may hold at most {}",
                req.value.len(),
                limits.env_value_bytes
            ),
        ));
    }
    if req.value.contains('\0') {
        return Err(ApiError::bad_request(format!(
            "the value of {key} must not contain NUL characters"
        )));
    }
    let existing = state.store().env_vars(&row.id).await?;
    let others: Vec<&EnvVarRow> = existing.iter().filter(|v| v.name != key).collect();
    if others.len() + 1 > limits.env_vars {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "project '{project}' has {} variables, the most a project may have",
                limits.env_vars
            ),
        ));
    }
    // Sealed values are longer than their clear text; count the clear.
    let total: usize = others
        .iter()
        .map(|v| {
            v.name.len()
                + if v.secret != 0 {
                    v.value.len() * 3 / 4
                } else {
                    v.value.len()
                }
        })
        .sum::<usize>()
        + key.len()
        + req.value.len();
    if total > limits.env_total_bytes {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "project '{project}''s variables would hold {total} bytes; the limit is {}",
                limits.env_total_bytes
            ),
        ));
    }
    let stored = if req.secret {
        state
            .secrets()
            .seal(&row.id, &key, &req.value)
            .map_err(|e| ApiError::internal("encrypting a secret", e))?
    } else {
        req.value
    };
    let (var, created) = state
        .store()
        .put_env_var(&row.id, &key, &stored, req.secret)
        .await?;
    state.registry().invalidate_project(&row.name);
    tracing::info!(project = %project, key = %key, secret = req.secret, "variable set");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(to_api(var))))
}

/// Removes a variable; new calls no longer see it.
#[utoipa::path(delete, path = "/api/v1/projects/{project}/env/{key}", tag = "env", security(("token" = [])),
    params(("project" = kumo_types::Name, Path), ("key" = kumo_types::EnvKey, Path)),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody)))]
pub(crate) async fn remove(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, key)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let row = projects::find(&state, &user, &project).await?;
    if !state.store().delete_env_var(&row.id, &key).await? {
        return Err(ApiError::not_found(format_args!(
            "variable '{key}' of project '{project}'"
        )));
    }
    state.registry().invalidate_project(&row.name);
    Ok(StatusCode::NO_CONTENT)
}

/// What a project's functions run with.
#[derive(Debug, Default, Clone)]
pub(crate) struct ProjectEnv {
    /// Every variable, secrets in clear.
    pub(crate) vars: Vec<(String, String)>,
    /// The clear values of secrets, to blot out of logs and errors.
    pub(crate) secrets: Vec<String>,
    /// Tells one set of values from another (instance pools differ).
    pub(crate) fingerprint: String,
}

/// The environment of `project_id`'s functions, secrets opened.
pub(crate) async fn project_env(state: &State, project_id: &str) -> ApiResult<ProjectEnv> {
    use sha2::Digest;
    let rows = state.store().env_vars(project_id).await?;
    let mut env = ProjectEnv::default();
    let mut hasher = sha2::Sha256::new();
    for row in rows {
        let value = if row.secret != 0 {
            let clear = state
                .secrets()
                .open(project_id, &row.name, &row.value)
                .map_err(|e| ApiError::internal("opening a secret", e))?;
            env.secrets.push(clear.clone());
            clear
        } else {
            row.value
        };
        hasher.update(row.name.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
        env.vars.push((row.name, value));
    }
    if !env.vars.is_empty() {
        env.fingerprint = hex::encode(&hasher.finalize()[..8]);
    }
    Ok(env)
}
