//! The API under `/api/v1`: one module per resource, shared extractors.

pub(crate) mod accounts;
pub(crate) mod env;
pub(crate) mod functions;
pub(crate) mod logs;
pub(crate) mod projects;
pub(crate) mod routing;
pub(crate) mod runs;
pub(crate) mod templates;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::routing::{delete, get, post};
use kumo_types::ErrorCode;
use serde::de::DeserializeOwned;

use crate::State;
use crate::error::ApiError;

/// Items per page unless `?limit=` says otherwise.
pub(crate) const DEFAULT_PAGE: i64 = 50;
pub(crate) const MAX_PAGE: i64 = 500;

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

/// A request body, with size errors in Kumo's JSON error shape.
///
/// A body over the limit is still read (and thrown away) up to
/// [`DRAIN_LIMIT`] before the 413 goes out, so that a client still sending
/// it reads the answer instead of a broken pipe. Bodies declared larger
/// than that are refused at once.
pub(crate) struct Body(pub(crate) Bytes);

/// The most of an oversized body the server reads before answering 413.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

impl FromRequest<State> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &State) -> Result<Self, Self::Rejection> {
        use futures::StreamExt;
        let limits = &state.config().limits;
        // Uploads of deployments may be as large as a deployment.
        let limit = if req.uri().path().ends_with("/deployments") {
            limits.deployment_bytes + 1024 * 1024
        } else {
            limits.body_bytes
        };
        let too_large = || {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the request body is larger than this endpoint's limit of {}",
                    crate::error::human_bytes(limit)
                ),
            )
        };
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > DRAIN_LIMIT) {
            return Err(too_large());
        }
        let mut stream = req.into_body().into_data_stream();
        let mut body = Vec::with_capacity(declared.unwrap_or(0).min(limit));
        let mut total = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request(format!("could not read the request body: {e}"))
            })?;
            total += chunk.len();
            if total > limit {
                body = Vec::new();
                if total > DRAIN_LIMIT {
                    break;
                }
                continue;
            }
            body.extend_from_slice(&chunk);
        }
        if total > limit {
            return Err(too_large());
        }
        Ok(Body(Bytes::from(body)))
    }
}

/// A JSON body with errors that say what is wrong and where.
pub(crate) struct Json<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<State> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &State) -> Result<Self, Self::Rejection> {
        let Body(bytes) = Body::from_request(req, state).await?;
        parse_json(&bytes).map(Json)
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty; send a JSON object",
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// `?limit=` clamped to the allowed range.
pub(crate) fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "limit must be from 1 to {MAX_PAGE}, got {n}"
        ))),
    }
}

/// Query of list endpoints.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    /// The `next` value of the previous page.
    pub(crate) cursor: Option<String>,
    /// Items per page, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub(crate) limit: Option<i64>,
}

/// `?…` parsed with errors in the API's shape.
pub(crate) struct Query<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(Query)
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
    }
}
