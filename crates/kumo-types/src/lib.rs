//! The types that cross the wire: API requests, responses and error codes.
//!
//! One definition shared by the server, the client and the CLI. This crate
//! holds plain data and validation rules only; it does no I/O and knows
//! nothing of HTTP frameworks or storage.

mod error;
mod limits;
mod names;
mod queries;
mod settings;
pub mod templates;

pub use error::{ErrorBody, ErrorCode, ErrorDetail, SourceLocation};
pub use limits::{Limits, MAX_JSON_DEPTH, SettingRange, json_nested_deeper_than};
pub use names::{
    ENV_KEY_MAX_LEN, ENV_KEY_PATTERN, EnvKey, NAME_MAX_LEN, NAME_PATTERN, Name,
    validate_entrypoint, validate_env_key, validate_handler, validate_name, validate_relative_path,
};
pub use queries::{InvokeQuery, LogsQuery, MetricsQuery, PageQuery, RunsQuery};
pub use settings::{DeployQuery, FunctionSettings, Settings, Visibility};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A page of a list endpoint: the items and the cursor of the next page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `?cursor=` to get the next page; `null` on the last page.
    pub next: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(max_length = 128, examples("admin"))]
    pub username: String,
    #[schema(max_length = 1024)]
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// The secret token; shown once, never again.
    pub token: String,
    pub id: String,
}

/// A browser's sign-in: the answer sets the session cookie instead of
/// handing a token to scripts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    pub username: String,
    pub password: String,
    /// Keep the session for 30 days rather than until the browser closes.
    #[serde(default)]
    pub remember: bool,
}

/// A signed-in browser session (its secret lives only in an `HttpOnly`
/// cookie).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Session {
    pub username: String,
    pub is_admin: bool,
    /// Sent back as `X-Kumo-CSRF` on every request that changes something.
    pub csrf: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub id: String,
    pub username: String,
    pub is_admin: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// A label to recognise the token by (default `api`).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, examples("ci"))]
    pub name: Option<String>,
}

/// An API token as listed; the secret itself is never shown again.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    /// The first characters of the token, to tell tokens apart.
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    #[schema(value_type = Name)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    /// CORS settings for the project's public endpoints; `null` removes
    /// them, absent leaves them as they are.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Cors>)]
    pub cors: Option<Option<Cors>>,
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Cross-origin settings of a project, answered by the gateway for its
/// routes (`/p/…`) and functions (`/fn/…`), preflight requests included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    /// Origins allowed, like `https://app.example.com`, or `*` for any.
    #[schema(min_items = 1, examples("https://app.example.com"))]
    pub allowed_origins: Vec<String>,
    /// Methods a cross-origin request may use (default: GET, HEAD, POST).
    #[serde(default)]
    pub allowed_methods: Vec<String>,
    /// Request headers it may send beyond the simple ones; `*` for any.
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// Response headers the page may read.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Whether cookies and credentials may be sent (not with origin `*`).
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long a browser may keep a preflight answer (default 600).
    #[serde(default)]
    pub max_age_secs: Option<u64>,
}

/// Duration percentiles, in milliseconds (`null` without calls).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// A function's figures over one span of time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct MetricsPoint {
    /// Start of the span, in Unix milliseconds.
    pub time: i64,
    pub calls: u64,
    /// Calls that did not succeed.
    pub errors: u64,
    /// Calls by final status (statuses with none are left out).
    pub by_status: std::collections::BTreeMap<String, u64>,
    pub cold_starts: u64,
    pub duration_ms: Percentiles,
    /// CPU time of the calls, in milliseconds.
    pub cpu_ms: f64,
    /// The highest peak memory of an instance during a call.
    pub peak_memory_bytes: u64,
}

/// `GET /api/v1/projects/{project}/functions/{function}/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FunctionMetrics {
    pub project: String,
    pub function: String,
    pub window_secs: u64,
    pub bucket_secs: u64,
    /// The whole window.
    pub totals: MetricsPoint,
    /// One point per minute of the window, oldest first.
    pub series: Vec<MetricsPoint>,
}

/// A route of a project: `METHOD /path/:param/*rest` → a function.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Route {
    pub id: String,
    /// An HTTP method, or `ANY`.
    pub method: String,
    pub path: String,
    pub function: String,
    /// Where it answers: `/p/{project}` + the path.
    pub url: String,
    pub created_at: i64,
}

/// The body of `POST /api/v1/projects/{project}/routes`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoute {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD`, `OPTIONS` or `ANY`
    /// (in any case; `*` is `ANY`).
    #[schema(examples("GET"))]
    pub method: String,
    /// Like `/users/:id` or `/files/*rest`.
    #[schema(examples("/users/:id"))]
    pub path: String,
    /// A function of the project.
    #[schema(value_type = Name)]
    pub function: String,
}

/// A project's environment variable, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnvVar {
    pub key: String,
    /// The value; `***` for a secret (secrets are never read back).
    pub value: String,
    pub secret: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The body of `PUT /api/v1/projects/{project}/env/{KEY}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutEnvVar {
    #[schema(examples("https://api.example.com"))]
    pub value: String,
    /// Encrypt it at rest and never show it again (default `false`).
    #[serde(default)]
    pub secret: bool,
}

/// What a secret reads back as.
pub const SECRET_MASK: &str = "***";

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Project {
    pub name: String,
    pub description: String,
    pub created_at: i64,
    /// Cross-origin settings, if any.
    pub cors: Option<Cors>,
}

/// `POST …/functions`: create a function without code.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFunction {
    #[schema(value_type = Name)]
    pub name: String,
    /// `python` (default), `node` or `custom`.
    #[serde(default)]
    #[schema(examples("python"))]
    pub runtime: Option<String>,
    #[serde(flatten)]
    pub settings: FunctionSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Function {
    pub name: String,
    pub project: String,
    pub runtime: String,
    #[serde(flatten)]
    pub settings: Settings,
    /// The version that serves calls; `null` before the first deployment.
    pub active_version: Option<i64>,
    /// The public URL path of the function.
    pub url: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Instances of the active version now (only when one function is
    /// read): `busy` serving calls, `idle` warm and waiting; none is zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Instances>,
    /// What it did lately (in lists and when one function is read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<Activity>,
}

/// A function's recent calls, in brief.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Activity {
    /// When its last call was made (Unix milliseconds), if ever.
    pub last_call_at: Option<i64>,
    /// How its last call ended, or `running`.
    pub last_status: Option<RunStatus>,
    /// Calls in the last hour (counted since the server started).
    pub calls_last_hour: u64,
    /// Calls in the last hour that did not succeed.
    pub errors_last_hour: u64,
}

/// How many instances a function has.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct Instances {
    pub busy: usize,
    pub idle: usize,
}

/// `POST …/deployments` with a JSON body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// `python` (default), `node` or `custom`.
    #[serde(default)]
    #[schema(examples("python"))]
    pub runtime: Option<String>,
    /// The file that holds the handler; default `main.py` (`index.js` for
    /// node).
    #[serde(default)]
    #[schema(examples("main.py"))]
    pub entrypoint: Option<String>,
    /// The handler's name in the entrypoint; default `handler`.
    #[serde(default)]
    #[schema(examples("handler"))]
    pub handler: Option<String>,
    /// Path → file contents (UTF-8 text).
    #[schema(schema_with = files_schema)]
    pub files: std::collections::BTreeMap<String, String>,
    #[serde(flatten)]
    pub settings: FunctionSettings,
}

/// The schema of [`DeployRequest::files`], with an example that deploys.
fn files_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "Path → file contents (UTF-8 text). Paths are relative and `/`-separated, \
             without empty, `.` or `..` segments, at most 255 bytes.",
        ))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1)),
        ))
        .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
        .examples([serde_json::json!({"main.py": "def handler(event):\n    return event\n"})])
        .build()
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Deployment {
    pub version: i64,
    pub runtime: String,
    pub entrypoint: String,
    pub handler: String,
    /// SHA-256 over the files and the code settings.
    pub content_hash: String,
    pub file_count: i64,
    pub size_bytes: i64,
    pub active: bool,
    pub created_at: i64,
    /// `building` (its dependencies are being installed; it becomes
    /// active when they are), `ready`, or `failed`.
    pub status: DeploymentStatus,
    /// Why the build or the load of the code failed: for a failed
    /// install, the package manager's own error lines.
    pub error: Option<String>,
    /// The dependency layer it runs with (shared by every deployment with
    /// the same dependencies), if it has dependencies.
    pub layer: Option<String>,
    /// What the package manager printed (only when one version is read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_log: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeployResponse {
    pub function: String,
    pub version: i64,
    pub content_hash: String,
    /// `active` once the version serves calls; `unchanged` when the code
    /// is that of the active version (no new version); `building` while
    /// its dependencies are installed (answered `202`; the version becomes
    /// active when the build succeeds, see its deployment).
    pub status: DeployStatus,
    pub url: String,
}

/// `TryFrom<String>` for enums stored as their names (`parse`), so that
/// a store row can hold them typed.
macro_rules! stored_as_name {
    ($($t:ty),*) => {$(
        impl TryFrom<String> for $t {
            type Error = String;

            fn try_from(name: String) -> Result<Self, String> {
                <$t>::parse(&name).ok_or_else(|| format!("unknown {} '{name}'", stringify!($t)))
            }
        }
    )*};
}

stored_as_name!(DeploymentStatus, RunStatus, Trigger, Visibility);

/// Where a version is: `building` while its dependencies are installed
/// (it becomes active when they are), `ready` to serve, or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    Building,
    Ready,
    Failed,
}

impl DeploymentStatus {
    pub const ALL: [DeploymentStatus; 3] = [
        DeploymentStatus::Building,
        DeploymentStatus::Ready,
        DeploymentStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Building => "building",
            DeploymentStatus::Ready => "ready",
            DeploymentStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// What a deploy did: made the new version `active`, found the code
/// `unchanged` (no new version), or is `building` its dependencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeployStatus {
    Active,
    Unchanged,
    Building,
}

impl DeployStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployStatus::Active => "active",
            DeployStatus::Unchanged => "unchanged",
            DeployStatus::Building => "building",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    OutOfMemory,
    Crashed,
}

impl RunStatus {
    /// Every status, in the order of the `/metrics` counters.
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::TimedOut,
        RunStatus::OutOfMemory,
        RunStatus::Crashed,
    ];

    /// Its place in [`RunStatus::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::OutOfMemory => "out_of_memory",
            RunStatus::Crashed => "crashed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "timed_out" => RunStatus::TimedOut,
            "out_of_memory" => RunStatus::OutOfMemory,
            "crashed" => RunStatus::Crashed,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Http,
    Api,
    Async,
    Cron,
    Replay,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Http => "http",
            Trigger::Api => "api",
            Trigger::Async => "async",
            Trigger::Cron => "cron",
            Trigger::Replay => "replay",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "http" => Trigger::Http,
            "api" => Trigger::Api,
            "async" => Trigger::Async,
            "cron" => Trigger::Cron,
            "replay" => Trigger::Replay,
            _ => return None,
        })
    }
}

/// Why a run failed, as the owner sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RunError {
    /// The exception's type, or a Kumo condition such as `Timeout`.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub traceback: String,
}

/// An HTTP request to send to a function through the API, as the caller
/// (the dashboard's test panel): private functions answer too, and the
/// answer comes back as data, never rendered on Kumo's origin.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpCall {
    /// `GET`, `POST`, … (default `GET`).
    #[serde(default = "default_method")]
    pub method: String,
    /// The path after the function's URL (default `/`).
    #[serde(default)]
    pub path: String,
    /// The query string, without `?`.
    #[serde(default)]
    pub query: String,
    /// Header names and values.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: String,
    /// `body` is base64 of binary content.
    #[serde(default, rename = "isBase64Encoded")]
    pub is_base64_encoded: bool,
}

fn default_method() -> String {
    "GET".into()
}

/// The function's HTTP answer to an [`HttpCall`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body as text, or base64 when it is not UTF-8.
    pub body: String,
    #[serde(rename = "isBase64Encoded")]
    pub is_base64_encoded: bool,
    /// The run, when the function ran.
    pub invocation_id: Option<String>,
}

/// The answer of a synchronous invoke.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvokeResponse {
    pub id: String,
    pub status: RunStatus,
    /// The handler's return value.
    pub output: Option<Value>,
    pub error: Option<RunError>,
    pub logs: String,
    pub duration_ms: f64,
    pub cold_start: bool,
    pub version: Option<i64>,
    /// CPU time the call used, where measured.
    pub cpu_ms: Option<f64>,
    /// Peak memory of the instance during the call, where measured.
    pub peak_memory_bytes: Option<u64>,
}

/// `202` answer of `?async=true`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AsyncAccepted {
    pub id: String,
    pub status: RunStatus,
}

/// One run, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Invocation {
    pub id: String,
    pub project: String,
    pub function: String,
    pub version: Option<i64>,
    pub trigger: Trigger,
    pub status: RunStatus,
    /// The event. History keeps a capped copy: when the event was larger
    /// (`input_truncated`), this is `{"truncated": true, "size_bytes":
    /// <full size>, "preview": "<its first bytes, as text>"}`.
    pub input: Option<Value>,
    /// The answer, capped in the same way (`output_truncated`).
    pub output: Option<Value>,
    /// The stored input was cut (see `input`); such a run cannot be
    /// replayed.
    #[serde(default)]
    pub input_truncated: bool,
    /// The stored output was cut (see `output`).
    #[serde(default)]
    pub output_truncated: bool,
    pub error: Option<RunError>,
    pub logs: String,
    pub logs_truncated: bool,
    pub duration_ms: f64,
    pub cold_start: bool,
    pub cpu_ms: Option<f64>,
    pub peak_memory_bytes: Option<u64>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// One line of a function's logs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// Increasing over all lines: where a reader resumes (`after`, or
    /// `Last-Event-ID` when following).
    pub id: i64,
    /// The run that wrote the line.
    pub run_id: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When it was printed (Unix milliseconds).
    pub time: i64,
    pub line: String,
}
