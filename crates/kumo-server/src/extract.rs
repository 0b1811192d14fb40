//! Extractors shared by the API and the gateway: request bodies within
//! the limits, JSON and query strings with errors in the API's shape, and
//! paging.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use kumo_types::ErrorCode;
use serde::de::DeserializeOwned;

use crate::auth::{Authed, bearer, check_csrf, session_cookie};
use crate::error::ApiError;
use crate::state::State;

/// Items per page unless `?limit=` says otherwise.
pub(crate) const DEFAULT_PAGE: i64 = 50;
pub(crate) const MAX_PAGE: i64 = 500;

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

/// The caller, from a bearer token or the dashboard's session cookie
/// (with its CSRF header on unsafe methods).
impl FromRequestParts<State> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        if let Some(token) = bearer(parts) {
            return state
                .auth()
                .check_token(token)
                .await?
                .ok_or_else(|| ApiError::unauthorized("invalid or revoked API token"));
        }
        let cookie = session_cookie(&parts.headers)?.ok_or_else(|| {
            ApiError::unauthorized("missing API token; send 'Authorization: Bearer <token>'")
        })?;
        let user = state
            .auth()
            .check_token(&cookie)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the session has ended; sign in again"))?;
        if !parts.method.is_safe() {
            check_csrf(&parts.headers, &cookie)?;
        }
        Ok(user)
    }
}
