//! One error type for every handler, sent as `{"error": {"code", "message"}}`.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kumo_types::{ErrorBody, ErrorCode, ErrorDetail};

/// The header every gateway response carries.
pub const INVOCATION_HEADER: HeaderName = HeaderName::from_static("x-kumo-invocation-id");

/// An API error: a stable code, a message for people, and optional
/// headers. Internal causes are logged, never sent.
///
/// `pub` rather than `pub(crate)` only because the public [`encode_event`]
/// returns it (for the benchmarks); the module is private, so other crates
/// cannot name it.
///
/// [`encode_event`]: crate::encode_event
#[derive(Debug)]
pub struct ApiError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    pub(crate) invocation_id: Option<String>,
    pub(crate) retry_after_secs: Option<u64>,
    pub(crate) location: Option<kumo_types::SourceLocation>,
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            invocation_id: None,
            retry_after_secs: None,
            location: None,
        }
    }

    /// The error, at a place in the uploaded files.
    pub(crate) fn at(mut self, location: Option<kumo_types::SourceLocation>) -> Self {
        self.location = location;
        self
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub(crate) fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub(crate) fn too_large(what: &str, limit: usize) -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            format!("{what} is larger than the {} limit", human_bytes(limit)),
        )
    }

    /// Logs `cause` with context and returns a generic 500.
    pub(crate) fn internal(context: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "{context}");
        Self::new(
            ErrorCode::Internal,
            format!("internal error while {context}; see the server log"),
        )
    }

    pub(crate) fn with_invocation(mut self, id: &str) -> Self {
        self.invocation_id = Some(id.to_string());
        self
    }
}

impl From<kumo_store::StoreError> for ApiError {
    fn from(e: kumo_store::StoreError) -> Self {
        match e {
            kumo_store::StoreError::Conflict(message) => {
                ApiError::new(ErrorCode::Conflict, message)
            }
            other => ApiError::internal("accessing the store", other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str().to_string(),
                message: self.message,
                invocation_id: self.invocation_id.clone(),
                location: self.location.clone(),
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        // The body of a refused upload is not read; the connection cannot
        // carry another request after it.
        if self.code == ErrorCode::PayloadTooLarge {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(id) = self.invocation_id
            && let Ok(value) = HeaderValue::from_str(&id)
        {
            response.headers_mut().insert(INVOCATION_HEADER, value);
        }
        response
    }
}

/// `6 MiB`, `256 KiB`, `100 B`.
pub(crate) fn human_bytes(n: usize) -> String {
    if n >= 1024 * 1024 && n.is_multiple_of(1024 * 1024) {
        format!("{} MiB", n / (1024 * 1024))
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}
