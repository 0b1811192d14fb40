//! The API under `/api/v1`: one module per resource. Handlers are thin:
//! they check who may do what, call the platform's modules below (`deploy`,
//! `environment`, `dispatch`, the store) and shape the answer. Nothing
//! outside `api` imports from it.

pub(crate) mod accounts;
pub(crate) mod env;
pub(crate) mod functions;
pub(crate) mod logs;
pub(crate) mod openapi;
pub(crate) mod projects;
pub(crate) mod routing;
pub(crate) mod runs;
pub(crate) mod templates;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};

pub(crate) use crate::extract::{Body, Json, Query, page_limit, parse_json};
use crate::state::State;
pub(crate) use kumo_types::PageQuery;

pub(crate) fn router(deploy_limit: usize, body_limit: usize) -> Router<State> {
    let deployments = Router::new()
        .route(
            "/api/v1/projects/{project}/functions/{function}/deployments",
            get(functions::list_deployments).post(functions::deploy),
        )
        .layer(DefaultBodyLimit::max(deploy_limit));
    Router::new()
        .route("/api/v1/auth/login", post(accounts::login))
        .route(
            "/api/v1/auth/session",
            get(accounts::get_session)
                .post(accounts::start_session)
                .delete(accounts::end_session),
        )
        .route("/api/v1/me", get(accounts::me))
        .route("/api/v1/templates", get(templates::list))
        .route(
            "/api/v1/tokens",
            get(accounts::list_tokens).post(accounts::create_token),
        )
        .route("/api/v1/tokens/{id}", delete(accounts::delete_token))
        .route(
            "/api/v1/projects",
            get(projects::list).post(projects::create),
        )
        .route(
            "/api/v1/projects/{project}",
            get(projects::get)
                .patch(projects::update)
                .delete(projects::remove),
        )
        .route(
            "/api/v1/projects/{project}/functions",
            get(functions::list).post(functions::create),
        )
        .route(
            "/api/v1/projects/{project}/functions/{function}",
            get(functions::get)
                .patch(functions::update)
                .delete(functions::remove),
        )
        .route(
            "/api/v1/projects/{project}/functions/{function}/deployments/{version}",
            get(functions::get_deployment),
        )
        .route(
            "/api/v1/projects/{project}/functions/{function}/deployments/{version}/files",
            get(functions::files),
        )
        .route(
            "/api/v1/projects/{project}/functions/{function}/deployments/{version}/activate",
            post(functions::activate),
        )
        .route(
            "/api/v1/projects/{project}/functions/{function}/invoke",
            post(runs::invoke),
        )
        .route(
            "/api/v1/projects/{project}/functions/{function}/http",
            post(runs::http),
        )
        .route(
            "/api/v1/projects/{project}/functions/{function}/invocations",
            get(runs::list),
        )
        .route(
            "/api/v1/projects/{project}/functions/{function}/logs",
            get(logs::logs),
        )
        .route(
            "/api/v1/projects/{project}/functions/{function}/metrics",
            get(functions::metrics),
        )
        .route(
            "/api/v1/projects/{project}/routes",
            get(routing::list).post(routing::create),
        )
        .route(
            "/api/v1/projects/{project}/routes/{id}",
            delete(routing::remove),
        )
        .route("/api/v1/projects/{project}/env", get(env::list))
        .route(
            "/api/v1/projects/{project}/env/{key}",
            get(env::get).put(env::put).delete(env::remove),
        )
        .route("/api/v1/invocations/{id}", get(runs::get))
        .route("/api/v1/invocations/{id}/replay", post(runs::replay))
        .layer(DefaultBodyLimit::max(body_limit))
        .merge(deployments)
}
