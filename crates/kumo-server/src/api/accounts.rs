//! Login, the current user, and API tokens.

use axum::extract::{ConnectInfo, Path, State as AxState};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kumo_types::{
    ApiToken, CreateToken, ErrorBody, LoginRequest, Me, Page, Session, SessionRequest,
    TokenResponse,
};

use super::{Body, Json, parse_json};
use crate::auth::{
    Authed, csrf_token, hash_token, new_token, session_cookie, session_set_cookie, token_prefix,
};
use crate::error::{ApiError, ApiResult};
use crate::state::State;

/// Exchanges a user name and password for a new API token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "accounts", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse),
        (status = 400, body = ErrorBody, description = "not a JSON body of this shape, or a name or password too long"),
        (status = 401, body = ErrorBody, description = "wrong user name or password"),
        (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "too many failed logins for this user from this address; see Retry-After")))]
pub(crate) async fn login(
    AxState(state): AxState<State>,
    ConnectInfo(client): ConnectInfo<std::net::SocketAddr>,
    Json(req): Json<LoginRequest>,
) -> ApiResult<axum::Json<TokenResponse>> {
    let (_, token, row) =
        sign_in(&state, client.ip(), &req.username, &req.password, "login").await?;
    Ok(axum::Json(TokenResponse { token, id: row.id }))
}

/// Checks a password (throttled) and makes a new token for the user,
/// labelled `label`.
async fn sign_in(
    state: &State,
    client: std::net::IpAddr,
    username: &str,
    password: &str,
    label: &str,
) -> ApiResult<(kumo_store::UserRow, String, kumo_store::TokenRow)> {
    // Characters, as the document's `maxLength` counts them.
    if username.chars().count() > 128 || password.chars().count() > 1024 {
        return Err(ApiError::bad_request("user name or password too long"));
    }
    let user = state.auth().login(username, client, password).await?;
    let token = new_token();
    let row = state
        .store()
        .create_token(&user.id, label, &hash_token(&token), &token_prefix(&token))
        .await?;
    Ok((user, token, row))
}

/// How long a remembered browser session lasts.
const REMEMBERED_SESSION: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// Signs a browser in: the session's token goes only into an `HttpOnly`,
/// `SameSite=Strict` cookie scoped to `/api`; the answer carries the CSRF
/// token that requests changing something must send back.
#[utoipa::path(post, path = "/api/v1/auth/session", tag = "accounts", request_body = SessionRequest,
    responses((status = 200, body = Session, headers(("set-cookie" = String, description = "the session cookie"))),
        (status = 400, body = ErrorBody, description = "not a JSON body of this shape, or a name or password too long"),
        (status = 401, body = ErrorBody, description = "wrong user name or password"),
        (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "too many failed logins for this user from this address; see Retry-After")))]
pub(crate) async fn start_session(
    AxState(state): AxState<State>,
    ConnectInfo(client): ConnectInfo<std::net::SocketAddr>,
    Json(req): Json<SessionRequest>,
) -> ApiResult<Response> {
    let (user, token, _) = sign_in(
        &state,
        client.ip(),
        &req.username,
        &req.password,
        "dashboard",
    )
    .await?;
    let cookie = session_set_cookie(
        Some(&token),
        req.remember.then_some(REMEMBERED_SESSION),
        state.public_url().starts_with("https:"),
    );
    let body = Session {
        username: user.username,
        is_admin: user.is_admin != 0,
        csrf: csrf_token(&token),
    };
    Ok(([(SET_COOKIE, cookie)], axum::Json(body)).into_response())
}

/// The browser session the cookie names, with its CSRF token (for a page
/// that was reloaded).
#[utoipa::path(get, path = "/api/v1/auth/session", tag = "accounts",
    responses((status = 200, body = Session),
        (status = 401, body = ErrorBody, description = "no session cookie, or the session has ended")))]
pub(crate) async fn get_session(
    AxState(state): AxState<State>,
    headers: HeaderMap,
) -> ApiResult<axum::Json<Session>> {
    let token = session_cookie(&headers)?.ok_or_else(|| ApiError::unauthorized("not signed in"))?;
    let user = state
        .auth()
        .check_token(&token)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the session has ended; sign in again"))?;
    Ok(axum::Json(Session {
        username: user.username,
        is_admin: user.is_admin,
        csrf: csrf_token(&token),
    }))
}

/// Signs the browser out: the session's token is revoked and the cookie
/// cleared.
#[utoipa::path(delete, path = "/api/v1/auth/session", tag = "accounts", security(("token" = [])),
    responses((status = 204, headers(("set-cookie" = String, description = "the cleared cookie"))),
        (status = 403, body = ErrorBody, description = "the session cookie came without its CSRF token")))]
pub(crate) async fn end_session(
    AxState(state): AxState<State>,
    user: Authed,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(token) = session_cookie(&headers)? {
        state
            .store()
            .delete_token_by_hash(&user.user_id, &hash_token(&token))
            .await?;
        state.auth().forget_tokens();
    }
    let cookie = session_set_cookie(None, None, state.public_url().starts_with("https:"));
    Ok((StatusCode::NO_CONTENT, [(SET_COOKIE, cookie)]).into_response())
}

/// The caller.
#[utoipa::path(get, path = "/api/v1/me", tag = "accounts", security(("token" = [])),
    responses((status = 200, body = Me)))]
pub(crate) async fn me(user: Authed) -> axum::Json<Me> {
    axum::Json(Me {
        id: user.user_id,
        username: user.username,
        is_admin: user.is_admin,
    })
}

/// The caller's API tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "accounts", security(("token" = [])),
    responses((status = 200, body = Page<ApiToken>)))]
pub(crate) async fn list_tokens(
    AxState(state): AxState<State>,
    user: Authed,
) -> ApiResult<axum::Json<Page<ApiToken>>> {
    let rows = state.store().list_tokens(&user.user_id).await?;
    let items = rows
        .into_iter()
        .map(|r| ApiToken {
            id: r.id,
            name: r.name,
            prefix: r.prefix,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
        })
        .collect();
    Ok(axum::Json(Page { items, next: None }))
}

/// Creates an API token; the response is the only time it is shown. The
/// body is optional: without one the token is named `api`.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "accounts", security(("token" = [])),
    request_body(content = Option<CreateToken>, description = "optional; an empty body is `{}`"),
    responses((status = 201, body = TokenResponse),
        (status = 400, body = ErrorBody, description = "not a JSON body of this shape, or a bad name"),
        (status = 413, body = ErrorBody)))]
pub(crate) async fn create_token(
    AxState(state): AxState<State>,
    user: Authed,
    Body(body): Body,
) -> ApiResult<(StatusCode, axum::Json<TokenResponse>)> {
    let req: CreateToken = if body.iter().all(u8::is_ascii_whitespace) {
        CreateToken::default()
    } else {
        parse_json(&body)?
    };
    let name = req.name.unwrap_or_else(|| "api".into());
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::bad_request(
            "token name must be 1 to 64 characters",
        ));
    }
    let token = new_token();
    let row = state
        .store()
        .create_token(
            &user.user_id,
            &name,
            &hash_token(&token),
            &token_prefix(&token),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(TokenResponse { token, id: row.id }),
    ))
}

/// Revokes one of the caller's tokens.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "accounts", security(("token" = [])),
    params(("id" = String, Path, description = "token id")),
    responses((status = 204, description = "revoked"), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_token(
    AxState(state): AxState<State>,
    user: Authed,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if !state.store().delete_token(&user.user_id, &id).await? {
        return Err(ApiError::not_found(format_args!("token '{id}'")));
    }
    state.auth().forget_tokens();
    Ok(StatusCode::NO_CONTENT)
}
