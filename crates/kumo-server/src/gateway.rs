//! The public gateway: `ANY /fn/{project}/{function}[/{*rest}]` calls a
//! function directly; `ANY /p/{project}/{*path}` goes through the
//! project's routes.
//!
//! Turns an HTTP request into the event of the handler contract, runs it,
//! and turns the handler's return value into the HTTP response; answers
//! CORS for projects that have settings. A warm call here queries no
//! database and starts no process.

use std::borrow::Cow;
use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine;
use kumo_types::{ErrorCode, RunStatus, Trigger, Visibility};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::auth::Authed;
use crate::error::ApiError;
use crate::error::INVOCATION_HEADER;
use crate::registry::Resolved;
use crate::routes::Lookup;
use crate::state::State;
use crate::{cors, dispatch};

/// The gateway's routes. On the main listener (`shared_origin`), which
/// also serves the dashboard and the API, what functions answer is
/// confined: see [`confine`].
pub(crate) fn router(shared_origin: bool) -> Router<State> {
    Router::new()
        .route("/fn/{project}/{function}", any(call))
        .route("/fn/{project}/{function}/", any(call))
        .route("/fn/{project}/{function}/{*rest}", any(call))
        .route("/p/{project}", any(call_route))
        .route("/p/{project}/", any(call_route))
        .route("/p/{project}/{*rest}", any(call_route))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| async move {
                if request
                    .headers()
                    .get("service-worker")
                    .is_some_and(|v| v.as_bytes() == b"script")
                {
                    return ApiError::new(
                        ErrorCode::Forbidden,
                        "functions cannot serve service worker scripts",
                    )
                    .into_response();
                }
                let mut response = next.run(request).await;
                confine(response.headers_mut(), shared_origin);
                response
            },
        ))
}

/// The sandbox a function's answer is served in on the dashboard's
/// origin: scripts run, but in an opaque origin of their own (no
/// `allow-same-origin`), so they read no storage or cookie of the
/// dashboard and their requests to the API are cross-origin.
pub(crate) const FUNCTION_CSP: &str =
    "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";

/// What no function answer may do to Kumo's own origin, whichever
/// listener serves it: set or clear the dashboard's session cookie (cookies
/// ignore ports), widen a service worker's scope, or clear the site's data.
/// On the shared origin, the answer is also sandboxed ([`FUNCTION_CSP`];
/// added to any policy the function sets, since every policy applies).
fn confine(headers: &mut HeaderMap, shared_origin: bool) {
    headers.remove("service-worker-allowed");
    headers.remove("clear-site-data");
    if headers.contains_key(header::SET_COOKIE) {
        let kept: Vec<HeaderValue> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter(|v| !sets_kumo_cookie(v.as_bytes()))
            .cloned()
            .collect();
        headers.remove(header::SET_COOKIE);
        for value in kept {
            headers.append(header::SET_COOKIE, value);
        }
    }
    if shared_origin {
        headers.append(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(FUNCTION_CSP),
        );
    }
}

/// Whether a `Set-Cookie` value names a cookie of Kumo's (any prefix and
/// case, `__Host-`/`__Secure-` forms included).
fn sets_kumo_cookie(value: &[u8]) -> bool {
    let text = String::from_utf8_lossy(value);
    let name = text.split(['=', ';']).next().unwrap_or("").trim();
    let name = name.to_ascii_lowercase();
    let name = name
        .strip_prefix("__host-")
        .or_else(|| name.strip_prefix("__secure-"))
        .unwrap_or(&name);
    name.starts_with("kumo")
}

/// The path parameters of the gateway routes.
#[derive(serde::Deserialize)]
struct Target {
    project: String,
    function: String,
    #[serde(default)]
    rest: String,
}

/// The path parameters of a project's routes.
#[derive(serde::Deserialize)]
struct ProjectTarget {
    project: String,
}

/// An HTTP request on its way to a function.
struct Request {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: bytes::Bytes,
    /// The peer, when the server runs with connection info.
    source: Option<std::net::SocketAddr>,
}

async fn call(
    AxState(state): AxState<State>,
    Path(Target {
        project,
        function,
        rest,
    }): Path<Target>,
    extensions: axum::http::Extensions,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    crate::extract::Body(body): crate::extract::Body,
) -> Response {
    let resolved = match state.registry().resolve(&project, &function).await {
        Ok(Some(resolved)) => resolved,
        Ok(None) => {
            return ApiError::not_found(format_args!("function '{project}/{function}'"))
                .into_response();
        }
        Err(e) => return e.into_response(),
    };
    let request = Request {
        method,
        uri,
        headers,
        body,
        source: extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0),
    };
    if let Some(policy) = &resolved.cors
        && cors::is_preflight(&request.method, &request.headers)
    {
        return policy.preflight(&request.headers);
    }
    let base_path = format!("/fn/{project}/{function}");
    let mut response = serve(
        &state,
        &resolved,
        &request,
        &base_path,
        &format!("/{rest}"),
        &[],
    )
    .await;
    if let Some(policy) = &resolved.cors {
        policy.decorate(&request.headers, &mut response);
    }
    response
}

async fn call_route(
    AxState(state): AxState<State>,
    Path(ProjectTarget { project }): Path<ProjectTarget>,
    extensions: axum::http::Extensions,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    crate::extract::Body(body): crate::extract::Body,
) -> Response {
    let surface = match state.registry().surface(&project).await {
        Ok(Some(surface)) => surface,
        Ok(None) => {
            return ApiError::not_found(format_args!("project '{project}'")).into_response();
        }
        Err(e) => return e.into_response(),
    };
    let request = Request {
        method,
        uri,
        headers,
        body,
        source: extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0),
    };
    if let Some(policy) = &surface.cors
        && cors::is_preflight(&request.method, &request.headers)
    {
        return policy.preflight(&request.headers);
    }
    let base_path = format!("/p/{project}");
    // Routes match the path as sent (percent-encoded), after the prefix:
    // `/p/{project}`, whichever way the project's name was written.
    let raw = request.uri.path();
    let raw = match raw.match_indices('/').nth(2) {
        Some((at, _)) => &raw[at..],
        None => "/",
    };
    let mut found = surface.routes.lookup(&request.method, raw);
    if request.method == Method::HEAD && matches!(found, Lookup::NotFound) {
        found = surface.routes.lookup(&Method::GET, raw);
    }
    let mut response = match found {
        Lookup::Found(m) => {
            let params: Vec<(String, String)> = m
                .params
                .iter()
                .map(|(k, v)| (k.to_string(), decode(v)))
                .collect();
            let function = m.value.clone();
            match state.registry().resolve(&project, &function).await {
                Ok(Some(resolved)) => {
                    serve(&state, &resolved, &request, &base_path, &decode(raw), &params).await
                }
                Ok(None) => ApiError::not_found(format_args!(
                    "the route {} {} of project '{project}' leads to function '{function}', which does not exist",
                    m.method.map_or("ANY", |m| m.as_str()),
                    m.pattern
                ))
                .into_response(),
                Err(e) => e.into_response(),
            }
        }
        Lookup::MethodNotAllowed { allowed } => {
            let allow: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
            let mut response = ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!(
                    "no route of project '{project}' takes {} {raw}; it takes {}",
                    request.method,
                    allow.join(", ")
                ),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&allow.join(", ")) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            response
        }
        Lookup::NotFound => ApiError::not_found(format_args!(
            "a route of project '{project}' for {} {raw}",
            request.method
        ))
        .into_response(),
    };
    if let Some(policy) = &surface.cors {
        policy.decorate(&request.headers, &mut response);
    }
    response
}

/// A percent-decoded path or parameter (invalid UTF-8 kept as escapes).
fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map_or_else(|_| text.to_string(), Cow::into_owned)
}

/// Runs `request` on `resolved` and answers with its response.
async fn serve(
    state: &State,
    resolved: &Resolved,
    request: &Request,
    base_path: &str,
    path: &str,
    params: &[(String, String)],
) -> Response {
    let caller = match caller(state, &request.headers).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    serve_as(state, resolved, request, base_path, path, params, caller).await
}

/// [`serve`] for a caller already known.
async fn serve_as(
    state: &State,
    resolved: &Resolved,
    request: &Request,
    base_path: &str,
    path: &str,
    params: &[(String, String)],
    caller: Caller,
) -> Response {
    if resolved.visibility == Visibility::Private
        && !caller
            .user
            .as_ref()
            .is_some_and(|user| user.can_access(&resolved.owner_id))
    {
        return ApiError::unauthorized(
            "this function is private; send 'Authorization: Bearer <token>'",
        )
        .into_response();
    }
    let parts = EventParts {
        method: &request.method,
        base_path,
        path,
        params,
        uri: &request.uri,
        headers: &request.headers,
        body: &request.body,
        source_ip: request.source.map(|a| a.ip()),
        identity: caller.user.as_ref().map(Identity::of),
        strip_authorization: caller.kumo_credential,
        redact_credentials: false,
    };
    let event = match encode_event(&parts) {
        Ok(event) => event,
        Err(e) => return e.into_response(),
    };
    // The stored copy never keeps a credential (replays get it blotted out).
    let stored = if !resolved.record_credentials
        && has_credentials(&request.headers, caller.kumo_credential)
    {
        match encode_event(&EventParts {
            redact_credentials: true,
            ..parts
        }) {
            Ok(stored) => Some(stored),
            Err(e) => return e.into_response(),
        }
    } else {
        None
    };
    let id = kumo_store::new_id();
    match dispatch::run_stored(state, resolved, Trigger::Http, id, event, stored).await {
        Ok(run) => to_response(&run.id, run.outcome),
        Err(e) => e.into_response(),
    }
}

/// Sends `call` to a function as `user` (who may use it) and hands back
/// its answer as data: the API's way to test a function, private ones
/// included, from a page that must not render what the function returns.
pub(crate) async fn call_as(
    state: &State,
    resolved: &Resolved,
    user: Authed,
    call: kumo_types::HttpCall,
) -> Result<kumo_types::HttpAnswer, ApiError> {
    let method = Method::from_bytes(call.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| ApiError::bad_request(format!("'{}' is not an HTTP method", call.method)))?;
    let base_path = format!("/fn/{}/{}", resolved.project, resolved.function);
    let path = match call.path.as_str() {
        "" => "/".to_string(),
        p if p.starts_with('/') => p.to_string(),
        p => format!("/{p}"),
    };
    let query = call.query.trim_start_matches('?');
    let target = if query.is_empty() {
        format!("{base_path}{path}")
    } else {
        format!("{base_path}{path}?{query}")
    };
    let uri: Uri = target
        .parse()
        .map_err(|_| ApiError::bad_request("the path or query is not a valid URL part"))?;
    let mut headers = HeaderMap::new();
    for (name, value) in &call.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ApiError::bad_request(format!("'{name}' is not a header name")))?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            ApiError::bad_request(format!("the value of header '{name}' is not valid"))
        })?;
        headers.append(name, value);
    }
    let body = if call.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(&call.body)
            .map_err(|e| ApiError::bad_request(format!("body is not base64: {e}")))?
    } else {
        call.body.into_bytes()
    };
    let request = Request {
        method,
        uri,
        headers,
        body: body.into(),
        source: None,
    };
    // A Kumo token among the given headers is still not passed on.
    let mut caller = caller(state, &request.headers).await?;
    caller.user = Some(user);
    let decoded = decode(&path);
    let response = serve_as(state, resolved, &request, &base_path, &decoded, &[], caller).await;
    let (parts, body) = response.into_parts();
    let limit = state.config().limits.body_bytes;
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| ApiError::internal("reading a function's answer", e))?;
    let (body, is_base64_encoded) = match String::from_utf8(bytes.to_vec()) {
        Ok(text) => (text, false),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&bytes),
            true,
        ),
    };
    Ok(kumo_types::HttpAnswer {
        status: parts.status.as_u16(),
        invocation_id: parts
            .headers
            .get(INVOCATION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        is_base64_encoded,
    })
}

/// Who called, as far as Kumo can tell.
struct Caller {
    /// The Kumo user whose token came with the request.
    user: Option<Authed>,
    /// Whether `Authorization` holds a Kumo token (valid or not): it is
    /// Kumo's, so the function never sees it.
    kumo_credential: bool,
}

/// Tells a Kumo token in `Authorization` from an app's own: every token
/// Kumo issues starts with `kumo_`; another value (a bootstrap token set
/// by the operator) is looked up, with misses remembered for a while.
async fn caller(state: &State, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(token) = crate::auth::bearer_in(headers) else {
        return Ok(Caller {
            user: None,
            kumo_credential: false,
        });
    };
    let user = state.auth().check_token(token).await?;
    Ok(Caller {
        kumo_credential: user.is_some() || token.starts_with("kumo_"),
        user,
    })
}

/// Header names whose values are credentials: never stored with a run.
const CREDENTIAL_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::COOKIE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
];

fn has_credentials(headers: &HeaderMap, kumo_credential: bool) -> bool {
    CREDENTIAL_HEADERS
        .iter()
        .filter(|name| !(kumo_credential && **name == header::AUTHORIZATION))
        .any(|name| headers.contains_key(name))
}

/// The caller Kumo authenticated, as a function sees it in
/// `event.requestContext.identity`.
#[derive(Serialize, Debug, Clone, Copy)]
pub struct Identity<'a> {
    #[serde(rename = "userId")]
    pub user_id: &'a str,
    pub username: &'a str,
}

impl<'a> Identity<'a> {
    fn of(user: &'a Authed) -> Self {
        Identity {
            user_id: &user.user_id,
            username: &user.username,
        }
    }
}

/// What Kumo knows of the request beyond its headers.
#[derive(Serialize)]
struct RequestContext<'a> {
    identity: Option<Identity<'a>>,
}

/// `cookie` without the dashboard's session cookie (which a browser never
/// sends to a function's path; a client might).
fn without_session_cookie(value: &str) -> Option<String> {
    let kept: Vec<&str> = value
        .split(';')
        .filter(|pair| {
            pair.split_once('=')
                .is_none_or(|(name, _)| name.trim() != crate::auth::SESSION_COOKIE)
        })
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// The HTTP event of the handler contract.
#[derive(Serialize)]
struct HttpEvent<'a> {
    method: &'a str,
    path: &'a str,
    params: BTreeMap<&'a str, &'a str>,
    query: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
    /// The query string as sent (without `?`), for apps that parse it.
    #[serde(rename = "rawQuery")]
    raw_query: &'a str,
    headers: BTreeMap<&'a str, Cow<'a, str>>,
    body: Cow<'a, str>,
    #[serde(rename = "isBase64Encoded")]
    is_base64_encoded: bool,
    /// The URL prefix the function is served under: `path` is what
    /// follows it.
    #[serde(rename = "basePath")]
    base_path: &'a str,
    /// The client's address as the server saw it (not a header a client
    /// can write).
    #[serde(rename = "sourceIp", skip_serializing_if = "Option::is_none")]
    source_ip: Option<String>,
    #[serde(rename = "requestContext")]
    request_context: RequestContext<'a>,
}

/// What an HTTP event is made of.
#[derive(Debug, Clone, Copy)]
pub struct EventParts<'a> {
    pub method: &'a Method,
    /// The prefix the function is served under (`/fn/p/f`, `/p/p`).
    pub base_path: &'a str,
    /// The path after the prefix, decoded.
    pub path: &'a str,
    /// Route parameters, decoded.
    pub params: &'a [(String, String)],
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// The address the request came from, as the server saw it.
    pub source_ip: Option<std::net::IpAddr>,
    /// The Kumo user who called, if a Kumo token came with the request.
    pub identity: Option<Identity<'a>>,
    /// Leave `Authorization` out: it holds Kumo's own credential.
    pub strip_authorization: bool,
    /// Blot out credential headers (for the stored copy of the event).
    pub redact_credentials: bool,
}

/// Encodes the event once, straight to the JSON the runner receives.
///
/// Public only so the benchmarks (`benches/hot_path.rs`) can reach it.
pub fn encode_event(parts: &EventParts<'_>) -> Result<Box<RawValue>, ApiError> {
    let EventParts {
        method,
        base_path,
        path,
        params,
        uri,
        headers,
        body,
        source_ip,
        identity,
        strip_authorization,
        redact_credentials,
    } = *parts;
    let mut query: BTreeMap<Cow<str>, Cow<str>> = BTreeMap::new();
    if let Some(q) = uri.query() {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            // Repeated keys are joined with commas, as most gateways do.
            match query.get_mut(&k) {
                Some(existing) => {
                    let joined = format!("{existing},{v}");
                    *existing = Cow::Owned(joined);
                }
                None => {
                    query.insert(k, v);
                }
            }
        }
    }
    let mut header_map: BTreeMap<&str, Cow<str>> = BTreeMap::new();
    for (name, value) in headers {
        if strip_authorization && name == header::AUTHORIZATION {
            continue;
        }
        let mut value = String::from_utf8_lossy(value.as_bytes());
        if name == header::COOKIE && value.contains(crate::auth::SESSION_COOKIE) {
            match without_session_cookie(&value) {
                Some(kept) => value = Cow::Owned(kept),
                None => continue,
            }
        }
        if redact_credentials && CREDENTIAL_HEADERS.contains(name) {
            value = Cow::Borrowed(kumo_types::SECRET_MASK);
        }
        match header_map.get_mut(name.as_str()) {
            Some(existing) => {
                let joined = format!("{existing}, {value}");
                *existing = Cow::Owned(joined);
            }
            None => {
                header_map.insert(name.as_str(), value);
            }
        }
    }
    let (body, is_base64_encoded) = match std::str::from_utf8(body) {
        Ok(text) => (Cow::Borrowed(text), false),
        Err(_) => (
            Cow::Owned(base64::engine::general_purpose::STANDARD.encode(body)),
            true,
        ),
    };
    let event = HttpEvent {
        method: method.as_str(),
        path,
        params: params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        query,
        raw_query: uri.query().unwrap_or(""),
        headers: header_map,
        body,
        is_base64_encoded,
        base_path,
        source_ip: source_ip.map(|ip| ip.to_canonical().to_string()),
        request_context: RequestContext { identity },
    };
    // The serializer's output is valid JSON by construction; wrapping it
    // this way does not parse it again.
    serde_json::value::to_raw_value(&event).map_err(|e| ApiError::internal("encoding an event", e))
}

/// Maps a finished run to the HTTP response of the handler contract.
pub(crate) fn to_response(run_id: &str, outcome: kumo_executor::Outcome) -> Response {
    let mut response = match outcome.status {
        RunStatus::Succeeded => map_output(outcome.output.as_deref()),
        RunStatus::TimedOut => ApiError::new(
            ErrorCode::FunctionTimeout,
            "the function did not answer within its timeout",
        )
        .with_invocation(run_id)
        .into_response(),
        _ => ApiError::new(
            ErrorCode::FunctionError,
            format!("the function failed; the owner can see the details of run {run_id}"),
        )
        .with_invocation(run_id)
        .into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(run_id) {
        response.headers_mut().insert(INVOCATION_HEADER, value);
    }
    response
}

fn map_output(output: Option<&RawValue>) -> Response {
    let Some(raw) = output else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let text = raw.get().trim_start();
    // Only objects and strings need a look inside; other JSON goes out as is.
    if text.starts_with('"') {
        return match serde_json::from_str::<String>(text) {
            Ok(s) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], s).into_response(),
            Err(e) => bad_response(format!("unreadable string: {e}")),
        };
    }
    if text.starts_with('{') {
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return bad_response(format!("unreadable object: {e}")),
        };
        if let Value::Object(map) = &value
            && let Some(status) = map.get("statusCode")
        {
            return match http_response(map, status) {
                Ok(response) => response,
                Err(why) => bad_response(why),
            };
        }
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        raw.get().to_string(),
    )
        .into_response()
}

fn http_response(map: &serde_json::Map<String, Value>, status: &Value) -> Result<Response, String> {
    let status = status
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .filter(|s| (100..=599).contains(&s.as_u16()) && s.as_u16() >= 200)
        .ok_or_else(|| format!("statusCode must be an integer from 200 to 599, got {status}"))?;
    let mut headers = HeaderMap::new();
    match map.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(given)) => {
            for (name, value) in given {
                let header_name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("invalid header name '{name}'"))?;
                let values: Vec<String> = match value {
                    Value::String(s) => vec![s.clone()],
                    Value::Number(n) => vec![n.to_string()],
                    Value::Bool(b) => vec![b.to_string()],
                    Value::Array(items) => items
                        .iter()
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                        .collect(),
                    _ => return Err(format!("header '{name}' must be a string")),
                };
                for v in values {
                    let header_value = HeaderValue::from_str(&v)
                        .map_err(|_| format!("invalid value for header '{name}'"))?;
                    headers.append(header_name.clone(), header_value);
                }
            }
        }
        Some(_) => return Err("headers must be an object of strings".into()),
    }
    let base64 = map
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let (body, default_type): (Vec<u8>, &str) = match map.get("body") {
        None | Some(Value::Null) => (Vec::new(), "text/plain; charset=utf-8"),
        Some(Value::String(s)) if base64 => (
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("body is marked isBase64Encoded but is not base64: {e}"))?,
            "application/octet-stream",
        ),
        Some(Value::String(s)) => (s.clone().into_bytes(), "text/plain; charset=utf-8"),
        Some(other) => (other.to_string().into_bytes(), "application/json"),
    };
    if !headers.contains_key(header::CONTENT_TYPE) && !body.is_empty() {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(default_type));
    }
    let mut response = (status, body).into_response();
    // `Vec<u8>` brings a default content type; the function's (or ours) replaces it.
    response.headers_mut().remove(header::CONTENT_TYPE);
    for (name, value) in headers.iter() {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        response.headers_mut().append(name.clone(), value.clone());
    }
    Ok(response)
}

fn bad_response(why: String) -> Response {
    ApiError::new(
        ErrorCode::BadFunctionResponse,
        format!("the function returned an invalid response: {why}"),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).expect("json")
    }

    #[test]
    fn event_shape() {
        let mut headers = HeaderMap::new();
        headers.insert("X-Thing", HeaderValue::from_static("a"));
        headers.append("x-thing", HeaderValue::from_static("b"));
        let uri: Uri = "/fn/p/f/a/b?x=1&y=2&x=3".parse().expect("uri");
        let parts = EventParts {
            method: &Method::POST,
            base_path: "/fn/p/f",
            path: "/a/b",
            params: &[],
            uri: &uri,
            headers: &headers,
            body: b"hi",
            source_ip: Some("10.1.2.3".parse().expect("an address")),
            identity: None,
            strip_authorization: false,
            redact_credentials: false,
        };
        let event = encode_event(&parts).expect("event");
        let v: Value = serde_json::from_str(event.get()).expect("json");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/a/b");
        assert_eq!(v["query"]["x"], "1,3");
        assert_eq!(v["rawQuery"], "x=1&y=2&x=3");
        assert_eq!(v["basePath"], "/fn/p/f");
        assert_eq!(v["headers"]["x-thing"], "a, b");
        assert_eq!(v["body"], "hi");
        assert_eq!(v["isBase64Encoded"], false);
        assert_eq!(v["sourceIp"], "10.1.2.3");
        let event = encode_event(&EventParts {
            method: &Method::GET,
            path: "/",
            body: &[0xff, 0x00],
            ..parts
        })
        .expect("event");
        let v: Value = serde_json::from_str(event.get()).expect("json");
        assert_eq!(v["isBase64Encoded"], true);
        assert_eq!(v["body"], "/wA=");
    }

    #[test]
    fn confined_answers() {
        let mut headers = HeaderMap::new();
        headers.insert("service-worker-allowed", HeaderValue::from_static("/"));
        headers.insert("clear-site-data", HeaderValue::from_static("\"*\""));
        for cookie in [
            "kumo_session=x; Path=/api",
            "__Host-Kumo_session=y; Path=/",
            "theme=dark; Path=/",
        ] {
            headers.append(header::SET_COOKIE, HeaderValue::from_static(cookie));
        }
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'self'"),
        );
        confine(&mut headers, true);
        assert!(!headers.contains_key("service-worker-allowed"));
        assert!(!headers.contains_key("clear-site-data"));
        let cookies: Vec<_> = headers.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["theme=dark; Path=/"]);
        let policies: Vec<_> = headers
            .get_all(header::CONTENT_SECURITY_POLICY)
            .iter()
            .collect();
        assert_eq!(policies, ["default-src 'self'", FUNCTION_CSP]);
        let mut own = HeaderMap::new();
        confine(&mut own, false);
        assert!(!own.contains_key(header::CONTENT_SECURITY_POLICY));
    }

    #[test]
    fn session_cookie_is_not_passed_on() {
        assert_eq!(
            without_session_cookie("a=1; kumo_session=secret; b=2").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(without_session_cookie("kumo_session=secret"), None);
    }

    #[test]
    fn output_mapping() {
        assert_eq!(map_output(None).status(), StatusCode::NO_CONTENT);
        let r = map_output(Some(&raw(r#""hello""#)));
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let r = map_output(Some(&raw(r#"[1,2]"#)));
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let r = map_output(Some(&raw(
            r#"{"statusCode":201,"headers":{"x-a":"b"},"body":"made"}"#,
        )));
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()["x-a"], "b");
        let r = map_output(Some(&raw(r#"{"statusCode":99}"#)));
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        let r = map_output(Some(&raw(
            r#"{"statusCode":200,"body":"aGk=","isBase64Encoded":true}"#,
        )));
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/octet-stream"
        );
        let r = map_output(Some(&raw(
            r#"{"statusCode":200,"headers":{"bad name":"x"}}"#,
        )));
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    }
}
