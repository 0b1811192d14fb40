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

use crate::error::ApiError;
use crate::registry::Resolved;
use crate::routes::Lookup;
use crate::{INVOCATION_HEADER, State, cors, dispatch};

pub(crate) fn router() -> Router<State> {
    Router::new()
        .route("/fn/{project}/{function}", any(call))
        .route("/fn/{project}/{function}/", any(call))
        .route("/fn/{project}/{function}/{*rest}", any(call))
        .route("/p/{project}", any(call_route))
        .route("/p/{project}/", any(call_route))
        .route("/p/{project}/{*rest}", any(call_route))
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
    crate::api::Body(body): crate::api::Body,
) -> Response {
    let resolved = match state.registry().resolve(&state, &project, &function).await {
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
    crate::api::Body(body): crate::api::Body,
) -> Response {
    let surface = match state.registry().surface(&state, &project).await {
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
            match state.registry().resolve(&state, &project, &function).await {
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
    if resolved.visibility == Visibility::Private {
        let allowed = match bearer_from(&request.headers) {
            Some(token) => match state.auth().check_token(token).await {
                Ok(Some(user)) => user.can_access(&resolved.owner_id),
                Ok(None) => false,
                Err(e) => return e.into_response(),
            },
            None => false,
        };
        if !allowed {
            return ApiError::unauthorized(
                "this function is private; send 'Authorization: Bearer <token>'",
            )
            .into_response();
        }
    }
    let event = match encode_event(&EventParts {
        method: &request.method,
        base_path,
        path,
        params,
        uri: &request.uri,
        headers: &request.headers,
        body: &request.body,
        source_ip: request.source.map(|a| a.ip()),
    }) {
        Ok(event) => event,
        Err(e) => return e.into_response(),
    };
    let id = kumo_store::new_id();
    match dispatch::run(state, resolved, Trigger::Http, id, event).await {
        Ok(run) => to_response(&run.id, run.outcome),
        Err(e) => e.into_response(),
    }
}

fn bearer_from(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
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
        let value = String::from_utf8_lossy(value.as_bytes());
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
