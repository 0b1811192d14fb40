//! A project's own parts, changed on behalf of the API: its environment
//! variables and secrets. Setting one checks the limits and seals a
//! secret before it is stored. A change drops the project's functions
//! from the registry, so new calls start instances with the new values
//! while calls in flight finish on the old ones; no instance sees a mix.

use kumo_store::{EnvVarRow, ProjectRow};
use kumo_types::{ErrorCode, PutEnvVar, validate_env_key};

use crate::error::{ApiError, ApiResult};
use crate::state::State;

/// Sets `key` in `row`'s project; `true` when it is new.
pub(crate) async fn set_env(
    state: &State,
    row: &ProjectRow,
    key: &str,
    req: PutEnvVar,
) -> ApiResult<(EnvVarRow, bool)> {
    let project = &row.name;
    validate_env_key(key).map_err(ApiError::bad_request)?;
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
            .seal(&row.id, key, &req.value)
            .map_err(|e| ApiError::internal("encrypting a secret", e))?
    } else {
        req.value
    };
    let (var, created) = state
        .store()
        .put_env_var(&row.id, key, &stored, req.secret)
        .await?;
    state.registry().invalidate_project(&row.name);
    tracing::info!(project = %project, key = %key, secret = req.secret, "variable set");
    Ok((var, created))
}

/// Removes `key` from `row`'s project; 404 when it has none.
pub(crate) async fn remove_env(state: &State, row: &ProjectRow, key: &str) -> ApiResult<()> {
    if !state.store().delete_env_var(&row.id, key).await? {
        return Err(ApiError::not_found(format_args!(
            "variable '{key}' of project '{}'",
            row.name
        )));
    }
    state.registry().invalidate_project(&row.name);
    Ok(())
}
