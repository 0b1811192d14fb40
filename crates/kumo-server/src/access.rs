//! What a caller may see: a project or function of theirs (or any, for
//! an admin), else a 404 that does not tell a foreign name from a missing
//! one.

use kumo_store::{FunctionRow, ProjectRow};

use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::state::State;

/// The project `name` if the caller may see it, else 404.
pub(crate) async fn project(state: &State, user: &Authed, name: &str) -> ApiResult<ProjectRow> {
    state
        .store()
        .project(user.scope(), name)
        .await?
        .ok_or_else(|| ApiError::not_found(format_args!("project '{name}'")))
}

/// The project and function if the caller may see them, else 404.
pub(crate) async fn function(
    state: &State,
    user: &Authed,
    project: &str,
    function: &str,
) -> ApiResult<(ProjectRow, FunctionRow)> {
    let project_row = self::project(state, user, project).await?;
    let function_row = state
        .store()
        .function(&project_row.id, function)
        .await?
        .ok_or_else(|| ApiError::not_found(format_args!("function '{project}/{function}'")))?;
    Ok((project_row, function_row))
}
