//! The query strings of the API, as the server parses them and clients
//! write them.

use serde::{Deserialize, Serialize};

use crate::RunStatus;

/// `?cursor=&limit=` of list endpoints.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// The `next` value of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Items per page, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

/// `?async=` of `POST …/invoke`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InvokeQuery {
    /// Queue the run and answer 202 at once.
    #[serde(rename = "async", default, skip_serializing_if = "Option::is_none")]
    pub is_async: Option<bool>,
}

/// The query of `GET …/invocations`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// The `next` value of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Items per page, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// Only runs with this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
}

/// The query of `GET …/logs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Only lines printed this long ago or later: `30s`, `15m`, `1h`, `2d`
    /// (a plain number is milliseconds).
    #[param(pattern = "^[0-9]+(?:ms|s|m|h|d)?$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only this run's lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Most lines to return, 1–5000 (default 500; not with `follow`).
    #[param(minimum = 1, maximum = 5000)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Only lines after this id (a previous answer's `next`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    /// Stream lines as server-sent events as they are printed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub follow: bool,
}

/// The query of `GET …/metrics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MetricsQuery {
    /// How far back: `15m`, `1h` (default), `6h`, `24h`… from 1 minute
    /// to 24 hours (a plain number is milliseconds).
    #[param(pattern = "^[0-9]+(?:ms|s|m|h|d)?$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}
