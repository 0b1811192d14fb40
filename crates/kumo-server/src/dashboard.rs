//! The dashboard: a single-page app built from `dashboard/` (TypeScript)
//! and embedded in the binary. `index.html` is revalidated on every load
//! (it names the current assets); files under `/assets/` carry a hash of
//! their content in their names and are cached for a year. Every answer
//! has an ETag, and `If-None-Match` gets a 304.
//!
//! The app talks only to the public API. Its pages are addressed by the
//! URL fragment (`/#/f/demo/hello`), so no path of the gateway or the API
//! is ever taken by it.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;

#[derive(Embed)]
#[folder = "$CARGO_MANIFEST_DIR/../../dashboard/dist/"]
#[allow_missing = true]
#[exclude = "*.map"]
struct Assets;

/// What the browser may load and run for the dashboard: only its own
/// scripts; styles inline too (the editor sets them); no frames.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; connect-src 'self'; font-src 'self' data:; object-src 'none'; \
base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Served when the binary was built without the dashboard.
const MISSING: &str = include_str!("dashboard-missing.html");

/// `GET /`.
pub(crate) async fn index(headers: HeaderMap) -> Response {
    match Assets::get("index.html") {
        Some(file) => respond(&headers, file, "no-cache"),
        None => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            MISSING,
        )
            .into_response(),
    }
}

/// `GET /assets/{*path}`.
pub(crate) async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match Assets::get(&format!("assets/{path}")) {
        Some(file) => respond(&headers, file, "public, max-age=31536000, immutable"),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// `GET /favicon.svg` and other files at the top of the build.
pub(crate) async fn top_level(name: &'static str, headers: HeaderMap) -> Response {
    match Assets::get(name) {
        Some(file) => respond(&headers, file, "public, max-age=86400"),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn respond(headers: &HeaderMap, file: rust_embed::EmbeddedFile, cache: &'static str) -> Response {
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mime = file.metadata.mimetype();
        // The build writes UTF-8; saying so spares the browser a guess.
        let mime = if mime.starts_with("text/") || mime.ends_with("javascript") {
            format!("{mime}; charset=utf-8")
        } else {
            mime.to_string()
        };
        ([(header::CONTENT_TYPE, mime)], file.data.into_owned()).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
