//! A project's routes: `METHOD /path/:param/*rest` → one of its
//! functions, served at `/p/{project}/…`. A route is checked (its pattern,
//! its method, its function, its clashes with the others) before it is
//! stored; the project's route table is then rebuilt aside and swapped in.

use axum::extract::{Path, State as AxState};
use axum::http::{Method, StatusCode};
use kumo_store::RouteRow;
use kumo_types::{CreateRoute, ErrorBody, ErrorCode, Page, Route};

use super::Json;
use crate::access;
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::routes::{RouteError, RoutePattern, RouteTable};
use crate::state::State;

/// The most routes a project may have.
const MAX_ROUTES: usize = 500;

fn to_api(state: &State, project: &str, row: RouteRow) -> Route {
    Route {
        url: format!("{}/p/{project}{}", state.functions_url(), row.path),
        id: row.id,
        method: row.method,
        path: row.path,
        function: row.function,
        created_at: row.created_at,
    }
}

/// The method of a route as stored: upper case, or `ANY`.
fn parse_method(method: &str) -> ApiResult<(String, Option<Method>)> {
    let upper = method.to_ascii_uppercase();
    match upper.as_str() {
        "ANY" | "*" => Ok(("ANY".into(), None)),
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => {
            let parsed = Method::from_bytes(upper.as_bytes())
                .map_err(|_| ApiError::bad_request("invalid method"))?;
            Ok((upper, Some(parsed)))
        }
        _ => Err(ApiError::bad_request(format!(
            "invalid route method '{method}'; use GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or ANY"
        ))),
    }
}

/// Lists a project's routes.
#[utoipa::path(get, path = "/api/v1/projects/{project}/routes", operation_id = "list_routes", tag = "routes", security(("token" = [])),
    params(("project" = kumo_types::Name, Path)),
    responses((status = 200, body = Page<Route>), (status = 404, body = ErrorBody)))]
pub(crate) async fn list(
    AxState(state): AxState<State>,
    user: Authed,
    Path(project): Path<String>,
) -> ApiResult<axum::Json<Page<Route>>> {
    let row = access::project(&state, &user, &project).await?;
    let routes = state.store().routes(&row.id).await?;
    Ok(axum::Json(Page {
        items: routes
            .into_iter()
            .map(|r| to_api(&state, &project, r))
            .collect(),
        next: None,
    }))
}

/// Adds a route. A pattern that clashes with an existing route is a 409
/// naming that route; an invalid pattern or method, or a function the
/// project does not have, is a 400.
#[utoipa::path(post, path = "/api/v1/projects/{project}/routes", operation_id = "create_route", tag = "routes", security(("token" = [])),
    params(("project" = kumo_types::Name, Path)), request_body = CreateRoute,
    responses((status = 201, body = Route),
        (status = 400, body = ErrorBody, description = "not a JSON body of this shape, an invalid method or pattern, or no such function"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the route clashes with another"),
        (status = 413, body = ErrorBody, description = "the body is too large, or the project has as many routes as it may")))]
pub(crate) async fn create(
    AxState(state): AxState<State>,
    user: Authed,
    Path(project): Path<String>,
    Json(req): Json<CreateRoute>,
) -> ApiResult<(StatusCode, axum::Json<Route>)> {
    let row = access::project(&state, &user, &project).await?;
    let (method_name, method) = parse_method(&req.method)?;
    let pattern =
        RoutePattern::parse(&req.path).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if state
        .store()
        .function(&row.id, &req.function)
        .await?
        .is_none()
    {
        return Err(ApiError::bad_request(format!(
            "project '{project}' has no function '{}'; deploy it first",
            req.function
        )));
    }
    let existing = state.store().routes(&row.id).await?;
    if existing.len() >= MAX_ROUTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("project '{project}' has {MAX_ROUTES} routes, the most a project may have"),
        ));
    }
    // The new route must fit with the others in one table.
    let mut table = RouteTable::new();
    for route in &existing {
        let m = parse_method(&route.method).map(|(_, m)| m).unwrap_or(None);
        if let Ok(p) = RoutePattern::parse(&route.path) {
            let _ = table.insert(m, p, route.id.clone());
        }
    }
    if let Err(e) = table.insert(method.clone(), pattern, String::new()) {
        let (clash, what) = match e {
            RouteError::Conflict {
                existing: clash, ..
            } => (clash, "clashes with"),
            RouteError::Duplicate { route } => (route, "is already defined as"),
            other => return Err(ApiError::bad_request(other.to_string())),
        };
        let id = existing
            .iter()
            .find(|r| format!("{} {}", r.method, r.path) == clash)
            .map(|r| format!(" (route {})", r.id))
            .unwrap_or_default();
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "the route {method_name} {} {what} {clash}{id}; change one of them, or delete the other",
                req.path
            ),
        ));
    }
    let route = state
        .store()
        .create_route(&row.id, &method_name, &req.path, &req.function)
        .await?;
    state.registry().invalidate_surface(&row.name);
    Ok((
        StatusCode::CREATED,
        axum::Json(to_api(&state, &project, route)),
    ))
}

/// Removes a route.
#[utoipa::path(delete, path = "/api/v1/projects/{project}/routes/{id}", operation_id = "remove_route", tag = "routes", security(("token" = [])),
    params(("project" = kumo_types::Name, Path), ("id" = String, Path)),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody)))]
pub(crate) async fn remove(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let row = access::project(&state, &user, &project).await?;
    if !state.store().delete_route(&row.id, &id).await? {
        return Err(ApiError::not_found(format_args!(
            "route '{id}' of project '{project}'"
        )));
    }
    state.registry().invalidate_surface(&row.name);
    Ok(StatusCode::NO_CONTENT)
}
