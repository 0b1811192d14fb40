//! A typed client of Kumo's HTTP API (`/api/v1`), over the request and
//! response types of `kumo-types`: what the `kumo` command line (and
//! anything else in Rust) uses to talk to a server.
//!
//! Every method is one request. Errors say what went wrong in words a
//! person can act on: a server that cannot be reached, a token it refused,
//! or the server's own `{"error": {"code", "message"}}`.

use std::time::Duration;

use futures::StreamExt;
use kumo_types::{
    ApiToken, AsyncAccepted, CreateRoute, DeployQuery, DeployResponse, Deployment, EnvVar,
    ErrorBody, Function, FunctionMetrics, FunctionSettings, Invocation, InvokeQuery,
    InvokeResponse, LogLine, LoginRequest, LogsQuery, Me, MetricsQuery, Page, PageQuery, Project,
    PutEnvVar, Route, RunsQuery, TokenResponse,
};
use reqwest::{Method, StatusCode, header};
use serde::de::DeserializeOwned;

/// What can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached at all.
    #[error(
        "cannot reach the Kumo server at {url}: {reason}; is it running (kumo serve), and is the URL right?"
    )]
    Unreachable { url: String, reason: String },
    /// The server refused the token (or there is none).
    #[error("the server refused the credentials ({message}); run `kumo login` again")]
    Unauthorized { message: String },
    /// The server answered with an error.
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer from the server ({status}): {detail}")]
    Unexpected { status: u16, detail: String },
}

impl ClientError {
    /// The API's error code, when the server gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            ClientError::Unauthorized { .. } => Some("unauthorized"),
            _ => None,
        }
    }

    /// The HTTP status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Unexpected { status, .. } => {
                Some(*status)
            }
            ClientError::Unauthorized { .. } => Some(401),
            ClientError::Unreachable { .. } => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// The answer to a deploy: a new version (`active`), the active one's
/// very code (`unchanged`), or one installing its dependencies
/// (`building`).
pub type Deployed = DeployResponse;

/// One server, one token.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client of the server at `base` (like `http://127.0.0.1:8080`).
    pub fn new(base: &str, token: Option<String>) -> Client {
        Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, self.url(path));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let response = builder.send().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            reason: reason(&e),
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(error_of(response).await)
    }

    async fn json<T: DeserializeOwned>(&self, builder: reqwest::RequestBuilder) -> Result<T> {
        let response = self.send(builder).await?;
        decode(response).await
    }

    /// `POST /api/v1/auth/login`: a token for a user name and password.
    pub async fn login(&self, username: &str, password: &str) -> Result<String> {
        let answer: TokenResponse = self
            .json(
                self.request(Method::POST, "/api/v1/auth/login")
                    .json(&LoginRequest {
                        username: username.to_string(),
                        password: password.to_string(),
                    }),
            )
            .await?;
        Ok(answer.token)
    }

    pub async fn me(&self) -> Result<Me> {
        self.json(self.request(Method::GET, "/api/v1/me")).await
    }

    pub async fn tokens(&self) -> Result<Page<ApiToken>> {
        self.json(self.request(Method::GET, "/api/v1/tokens")).await
    }

    pub async fn projects(&self) -> Result<Vec<Project>> {
        self.all("/api/v1/projects").await
    }

    pub async fn project(&self, project: &str) -> Result<Project> {
        self.json(self.request(Method::GET, &format!("/api/v1/projects/{project}")))
            .await
    }

    pub async fn create_project(&self, project: &str) -> Result<Project> {
        self.json(
            self.request(Method::POST, "/api/v1/projects")
                .json(&serde_json::json!({"name": project})),
        )
        .await
    }

    pub async fn update_project(&self, project: &str, body: &serde_json::Value) -> Result<Project> {
        self.json(
            self.request(Method::PATCH, &format!("/api/v1/projects/{project}"))
                .json(body),
        )
        .await
    }

    pub async fn functions(&self, project: &str) -> Result<Vec<Function>> {
        self.all(&format!("/api/v1/projects/{project}/functions"))
            .await
    }

    pub async fn function(&self, project: &str, function: &str) -> Result<Function> {
        self.json(self.request(
            Method::GET,
            &format!("/api/v1/projects/{project}/functions/{function}"),
        ))
        .await
    }

    pub async fn update_function(
        &self,
        project: &str,
        function: &str,
        settings: &FunctionSettings,
    ) -> Result<Function> {
        self.json(
            self.request(
                Method::PATCH,
                &format!("/api/v1/projects/{project}/functions/{function}"),
            )
            .json(settings),
        )
        .await
    }

    pub async fn delete_function(&self, project: &str, function: &str) -> Result<()> {
        self.send(self.request(
            Method::DELETE,
            &format!("/api/v1/projects/{project}/functions/{function}"),
        ))
        .await
        .map(drop)
    }

    /// Uploads a `.tar.gz` as a new version; `query` carries the
    /// settings (`runtime`, `entrypoint`, `handler`, limits, `visibility`).
    pub async fn deploy_archive(
        &self,
        project: &str,
        function: &str,
        archive: Vec<u8>,
        query: &DeployQuery,
    ) -> Result<Deployed> {
        self.json(
            self.request(
                Method::POST,
                &format!("/api/v1/projects/{project}/functions/{function}/deployments"),
            )
            .query(query)
            .header(header::CONTENT_TYPE, "application/gzip")
            .body(archive),
        )
        .await
    }

    pub async fn deployments(&self, project: &str, function: &str) -> Result<Vec<Deployment>> {
        self.all(&format!(
            "/api/v1/projects/{project}/functions/{function}/deployments"
        ))
        .await
    }

    pub async fn deployment(
        &self,
        project: &str,
        function: &str,
        version: i64,
    ) -> Result<Deployment> {
        self.json(self.request(
            Method::GET,
            &format!("/api/v1/projects/{project}/functions/{function}/deployments/{version}"),
        ))
        .await
    }

    /// A version's files, as a `.tar.gz`.
    pub async fn deployment_files(
        &self,
        project: &str,
        function: &str,
        version: i64,
    ) -> Result<Vec<u8>> {
        let response = self
            .send(self.request(
                Method::GET,
                &format!(
                    "/api/v1/projects/{project}/functions/{function}/deployments/{version}/files"
                ),
            ))
            .await?;
        let status = response.status().as_u16();
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| ClientError::Unexpected {
                status,
                detail: e.to_string(),
            })
    }

    /// Makes `version` active; `true` when it is, `false` when its
    /// dependencies are being installed again first.
    pub async fn activate(&self, project: &str, function: &str, version: i64) -> Result<bool> {
        let response = self
            .send(self.request(
                Method::POST,
                &format!(
                    "/api/v1/projects/{project}/functions/{function}/deployments/{version}/activate"
                ),
            ))
            .await?;
        Ok(response.status() == StatusCode::OK)
    }

    pub async fn invoke(
        &self,
        project: &str,
        function: &str,
        event: &serde_json::Value,
    ) -> Result<InvokeResponse> {
        self.json(
            self.request(
                Method::POST,
                &format!("/api/v1/projects/{project}/functions/{function}/invoke"),
            )
            .json(event),
        )
        .await
    }

    pub async fn invoke_async(
        &self,
        project: &str,
        function: &str,
        event: &serde_json::Value,
    ) -> Result<AsyncAccepted> {
        self.json(
            self.request(
                Method::POST,
                &format!("/api/v1/projects/{project}/functions/{function}/invoke"),
            )
            .query(&InvokeQuery {
                is_async: Some(true),
            })
            .json(event),
        )
        .await
    }

    /// The newest runs of a function.
    pub async fn invocations(
        &self,
        project: &str,
        function: &str,
        limit: usize,
    ) -> Result<Vec<Invocation>> {
        let page: Page<Invocation> = self
            .json(
                self.request(
                    Method::GET,
                    &format!("/api/v1/projects/{project}/functions/{function}/invocations"),
                )
                .query(&RunsQuery {
                    limit: Some(i64::try_from(limit).unwrap_or(i64::MAX)),
                    ..RunsQuery::default()
                }),
            )
            .await?;
        Ok(page.items)
    }

    pub async fn logs(
        &self,
        project: &str,
        function: &str,
        filter: &LogsQuery,
    ) -> Result<Page<LogLine>> {
        self.json(
            self.request(
                Method::GET,
                &format!("/api/v1/projects/{project}/functions/{function}/logs"),
            )
            .query(filter),
        )
        .await
    }

    /// Follows a function's logs: calls `each` with every line as it is
    /// printed, reconnecting (from the last line seen) when the stream
    /// breaks, until `each` returns `false`.
    pub async fn follow_logs(
        &self,
        project: &str,
        function: &str,
        filter: &LogsQuery,
        mut each: impl FnMut(LogLine) -> bool,
    ) -> Result<()> {
        let mut last: Option<i64> = filter.after;
        let mut failures = 0u32;
        loop {
            let mut request = self
                .request(
                    Method::GET,
                    &format!("/api/v1/projects/{project}/functions/{function}/logs"),
                )
                .query(&LogsQuery {
                    since: filter.since.clone(),
                    run: filter.run.clone(),
                    follow: true,
                    ..LogsQuery::default()
                });
            if let Some(id) = last {
                request = request.header("last-event-id", id.to_string());
            }
            let response = match self.send(request).await {
                Ok(response) => response,
                Err(ClientError::Unreachable { .. }) if failures < 5 && last.is_some() => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(failures))).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            failures = 0;
            let mut stream = response.bytes_stream();
            let mut buffer = String::new();
            while let Some(chunk) = stream.next().await {
                let Ok(chunk) = chunk else { break };
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let Some(data) = block
                        .lines()
                        .find_map(|l| l.strip_prefix("data:"))
                        .map(str::trim)
                    else {
                        continue;
                    };
                    let Ok(line) = serde_json::from_str::<LogLine>(data) else {
                        continue;
                    };
                    last = Some(line.id);
                    if !each(line) {
                        return Ok(());
                    }
                }
            }
            // The server closed the stream (restart?): follow again.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn metrics(
        &self,
        project: &str,
        function: &str,
        window: &str,
    ) -> Result<FunctionMetrics> {
        self.json(
            self.request(
                Method::GET,
                &format!("/api/v1/projects/{project}/functions/{function}/metrics"),
            )
            .query(&MetricsQuery {
                window: Some(window.to_string()),
            }),
        )
        .await
    }

    pub async fn env(&self, project: &str) -> Result<Vec<EnvVar>> {
        self.all(&format!("/api/v1/projects/{project}/env")).await
    }

    pub async fn set_env(
        &self,
        project: &str,
        key: &str,
        value: &str,
        secret: bool,
    ) -> Result<EnvVar> {
        self.json(
            self.request(
                Method::PUT,
                &format!("/api/v1/projects/{project}/env/{key}"),
            )
            .json(&PutEnvVar {
                value: value.to_string(),
                secret,
            }),
        )
        .await
    }

    pub async fn delete_env(&self, project: &str, key: &str) -> Result<()> {
        self.send(self.request(
            Method::DELETE,
            &format!("/api/v1/projects/{project}/env/{key}"),
        ))
        .await
        .map(drop)
    }

    pub async fn routes(&self, project: &str) -> Result<Vec<Route>> {
        self.all(&format!("/api/v1/projects/{project}/routes"))
            .await
    }

    pub async fn add_route(&self, project: &str, route: &CreateRoute) -> Result<Route> {
        self.json(
            self.request(Method::POST, &format!("/api/v1/projects/{project}/routes"))
                .json(route),
        )
        .await
    }

    pub async fn delete_route(&self, project: &str, id: &str) -> Result<()> {
        self.send(self.request(
            Method::DELETE,
            &format!("/api/v1/projects/{project}/routes/{id}"),
        ))
        .await
        .map(drop)
    }

    /// Every item of a paginated listing.
    async fn all<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let request = self.request(Method::GET, path).query(&PageQuery {
                cursor: cursor.clone(),
                limit: None,
            });
            let page: Page<T> = self.json(request).await?;
            items.extend(page.items);
            match page.next {
                Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
                _ => return Ok(items),
            }
        }
    }
}

fn reason(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> Result<T> {
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ClientError::Unexpected {
            status,
            detail: e.to_string(),
        })?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Unexpected {
        status,
        detail: format!(
            "{e}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ),
    })
}

async fn error_of(response: reqwest::Response) -> ClientError {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap_or_default();
    let body: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
    match body {
        Some(body) if status == 401 => ClientError::Unauthorized {
            message: body.error.message,
        },
        Some(body) => ClientError::Api {
            status,
            code: body.error.code,
            message: body.error.message,
        },
        None => ClientError::Unexpected {
            status,
            detail: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
        },
    }
}
