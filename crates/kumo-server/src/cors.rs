//! A project's CORS settings: checked when set, and answered by the
//! gateway, so that a function needs no CORS code of its own. A preflight
//! (`OPTIONS` with `Access-Control-Request-Method`) is answered without
//! calling the function; other requests from an allowed origin get the
//! `Access-Control-Allow-*` headers added to the function's response.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kumo_types::Cors;

/// The most entries a list of the settings may hold.
const MAX_ENTRIES: usize = 50;
/// How long browsers may keep a preflight answer when not told.
const DEFAULT_MAX_AGE_SECS: u64 = 600;

/// Checks settings as a user gives them; the message says what is wrong.
/// Methods and header names come back normalized.
pub(crate) fn validate(cors: &Cors) -> Result<Cors, String> {
    let mut out = cors.clone();
    if cors.allowed_origins.is_empty() {
        return Err("cors.allowed_origins must list at least one origin (or \"*\")".into());
    }
    for (name, list) in [
        ("allowed_origins", &cors.allowed_origins),
        ("allowed_methods", &cors.allowed_methods),
        ("allowed_headers", &cors.allowed_headers),
        ("expose_headers", &cors.expose_headers),
    ] {
        if list.len() > MAX_ENTRIES {
            return Err(format!(
                "cors.{name} may hold at most {MAX_ENTRIES} entries"
            ));
        }
    }
    for origin in &cors.allowed_origins {
        if origin != "*" && !valid_origin(origin) {
            return Err(format!(
                "cors.allowed_origins: '{origin}' is not an origin such as https://app.example.com (scheme, host and port only) or \"*\""
            ));
        }
    }
    if cors.allow_credentials && cors.allowed_origins.iter().any(|o| o == "*") {
        return Err(
            "cors.allow_credentials cannot be used with the origin \"*\"; list the origins".into(),
        );
    }
    out.allowed_methods = Vec::new();
    for method in &cors.allowed_methods {
        let upper = method.to_ascii_uppercase();
        if Method::from_bytes(upper.as_bytes()).is_err() || upper.is_empty() {
            return Err(format!(
                "cors.allowed_methods: '{method}' is not an HTTP method"
            ));
        }
        out.allowed_methods.push(upper);
    }
    for (name, list, target) in [
        (
            "allowed_headers",
            &cors.allowed_headers,
            &mut out.allowed_headers,
        ),
        (
            "expose_headers",
            &cors.expose_headers,
            &mut out.expose_headers,
        ),
    ] {
        target.clear();
        for h in list {
            if h != "*" && header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(format!("cors.{name}: '{h}' is not a header name"));
            }
            target.push(h.to_ascii_lowercase());
        }
    }
    if cors.max_age_secs.is_some_and(|s| s > 86_400) {
        return Err("cors.max_age_secs may be at most 86400 (one day)".into());
    }
    Ok(out)
}

fn valid_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
        && rest.len() <= 253
}

/// Settings ready to answer with.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    any_origin: bool,
    origins: Vec<String>,
    methods: String,
    allowed_methods: Vec<Method>,
    any_header: bool,
    headers: Vec<String>,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: HeaderValue,
}

impl Policy {
    /// The policy of checked settings.
    pub(crate) fn new(cors: &Cors) -> Policy {
        let methods: Vec<String> = if cors.allowed_methods.is_empty() {
            vec!["GET".into(), "HEAD".into(), "POST".into()]
        } else {
            cors.allowed_methods.clone()
        };
        Policy {
            any_origin: cors.allowed_origins.iter().any(|o| o == "*"),
            origins: cors.allowed_origins.clone(),
            allowed_methods: methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            methods: methods.join(", "),
            any_header: cors.allowed_headers.iter().any(|h| h == "*"),
            headers: cors.allowed_headers.clone(),
            expose: (!cors.expose_headers.is_empty())
                .then(|| HeaderValue::from_str(&cors.expose_headers.join(", ")).ok())
                .flatten(),
            credentials: cors.allow_credentials,
            max_age: HeaderValue::from(cors.max_age_secs.unwrap_or(DEFAULT_MAX_AGE_SECS)),
        }
    }

    fn allows(&self, origin: &str) -> bool {
        self.any_origin || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// The `Access-Control-Allow-Origin` value for `origin`.
    fn allow_origin(&self, origin: &str) -> Option<HeaderValue> {
        if !self.allows(origin) {
            return None;
        }
        if self.any_origin && !self.credentials {
            return Some(HeaderValue::from_static("*"));
        }
        HeaderValue::from_str(origin).ok()
    }

    /// The answer to a preflight request.
    pub(crate) fn preflight(&self, headers: &HeaderMap) -> Response {
        let origin = header_str(headers, header::ORIGIN).unwrap_or_default();
        let requested = header_str(headers, header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
        let Some(allow_origin) = self.allow_origin(origin) else {
            return refused(format!("the origin '{origin}' may not call this project"));
        };
        if !requested.is_some_and(|m| self.allowed_methods.contains(&m)) {
            return refused(format!(
                "cross-origin requests may use {} only",
                self.methods
            ));
        }
        let asked: Vec<String> = header_str(headers, header::ACCESS_CONTROL_REQUEST_HEADERS)
            .unwrap_or_default()
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if !self.any_header
            && let Some(bad) = asked.iter().find(|h| !self.headers.contains(h))
        {
            return refused(format!(
                "the header '{bad}' may not be sent cross-origin to this project"
            ));
        }
        let mut response = StatusCode::NO_CONTENT.into_response();
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        if let Ok(methods) = HeaderValue::from_str(&self.methods) {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
        }
        if !asked.is_empty()
            && let Ok(value) = HeaderValue::from_str(&asked.join(", "))
        {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        h.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        response
    }

    /// Adds the CORS headers to a response for a request from `origin`.
    pub(crate) fn decorate(&self, request: &HeaderMap, response: &mut Response) {
        let Some(origin) = header_str(request, header::ORIGIN) else {
            return;
        };
        let h = response.headers_mut();
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        let Some(allow_origin) = self.allow_origin(origin) else {
            return;
        };
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = &self.expose {
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }
}

/// Whether a request is a CORS preflight.
pub(crate) fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn refused(message: String) -> Response {
    crate::error::ApiError::new(kumo_types::ErrorCode::Forbidden, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str]) -> Cors {
        Cors {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_methods: vec!["get".into(), "PUT".into()],
            allowed_headers: vec!["X-Token".into()],
            expose_headers: vec!["x-request-id".into()],
            allow_credentials: false,
            max_age_secs: None,
        }
    }

    #[test]
    fn settings_are_checked() {
        let ok =
            validate(&cors(&["https://app.example.com", "http://localhost:3000"])).expect("valid");
        assert_eq!(ok.allowed_methods, ["GET", "PUT"]);
        assert_eq!(ok.allowed_headers, ["x-token"]);
        for (bad, says) in [
            (cors(&[]), "at least one origin"),
            (cors(&["https://app.example.com/path"]), "not an origin"),
            (cors(&["ftp://x"]), "not an origin"),
            (
                Cors {
                    allow_credentials: true,
                    ..cors(&["*"])
                },
                "cannot be used with the origin",
            ),
            (
                Cors {
                    allowed_methods: vec!["GE T".into()],
                    ..cors(&["*"])
                },
                "not an HTTP method",
            ),
        ] {
            let err = validate(&bad).expect_err(says);
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn preflight_and_decoration() {
        let policy = Policy::new(&validate(&cors(&["https://app.example.com"])).expect("valid"));
        let mut request = HeaderMap::new();
        request.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example.com"),
        );
        request.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PUT"),
        );
        request.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("X-Token"),
        );
        assert!(is_preflight(&Method::OPTIONS, &request));
        let answer = policy.preflight(&request);
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            answer.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(
            answer.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "x-token"
        );
        request.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("DELETE"),
        );
        assert_eq!(policy.preflight(&request).status(), StatusCode::FORBIDDEN);
        request.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert_eq!(policy.preflight(&request).status(), StatusCode::FORBIDDEN);
        let mut response = StatusCode::OK.into_response();
        policy.decorate(&request, &mut response);
        assert!(
            response
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none()
        );
        request.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example.com"),
        );
        let mut response = StatusCode::OK.into_response();
        policy.decorate(&request, &mut response);
        assert_eq!(
            response.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS],
            "x-request-id"
        );
    }
}
