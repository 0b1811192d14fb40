//! The harness: one real `kumo serve` per test, and small HTTP helpers.
//!
//! [`TestServer::start`] runs the `kumo` binary on `127.0.0.1:0` with a fresh
//! temporary data directory and a known bootstrap token, and waits for the
//! `kumo listening on …` line. The server's log (stderr) goes to a file in
//! the temporary directory; when a test fails, its tail is printed with the
//! failure. Dropping the server stops it with SIGTERM (SIGKILL after 5 s).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The admin token every test server is bootstrapped with.
pub(crate) const TOKEN: &str = "kumo_e2e_0123456789abcdef0123456789abcdef0123456789";

/// How long a server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a dropped server may take to stop before it is killed.
const DROP_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Calls in flight at shutdown get this long (`--drain-timeout-ms`) unless
/// a test says otherwise; the default of 30 s would outlast any test.
const DRAIN_TIMEOUT_MS: &str = "1000";
/// Any single HTTP request of a test.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Removes every `KUMO_*` variable of the caller's environment from
/// `command`, so that no setting of the shell running the tests (a
/// `KUMO_PREWARM`, a `KUMO_URL`, a `KUMO_LOG`…) slips into a test server or
/// a command-line invocation. Whatever a test needs it sets again.
pub(crate) fn clear_kumo_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("KUMO_") {
            command.env_remove(key);
        }
    }
}

/// A running `kumo serve` with its own data directory.
pub(crate) struct TestServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    args: Vec<String>,
    base: String,
    /// The admin password printed on first start.
    pub(crate) admin_password: String,
    /// What the server printed on stdout before its listening line.
    pub(crate) banner: Vec<String>,
    client: reqwest::Client,
}

/// What a started process told us.
struct Started {
    child: Child,
    base: String,
    banner: Vec<String>,
}

impl TestServer {
    /// A server with default settings.
    pub(crate) async fn start() -> TestServer {
        TestServer::start_with(&[]).await
    }

    /// A server with extra `kumo serve` arguments, e.g. `["--keep-alive-ms", "300"]`.
    pub(crate) async fn start_with(args: &[&str]) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("kumo-e2e-")
            .tempdir()
            .expect("creating a temporary directory");
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        if !args.iter().any(|a| a.starts_with("--drain-timeout-ms")) {
            args.extend(["--drain-timeout-ms".into(), DRAIN_TIMEOUT_MS.into()]);
        }
        let started = spawn(dir.path(), &args, true).await;
        let admin_password = started
            .banner
            .iter()
            .find_map(|line| line.trim().strip_prefix("password:"))
            .map(|p| p.trim().to_string())
            .unwrap_or_else(|| {
                panic!(
                    "first start did not print the admin password; stdout was {:?}",
                    started.banner
                )
            });
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("building the HTTP client");
        TestServer {
            child: Some(started.child),
            dir,
            args,
            base: started.base,
            admin_password,
            banner: started.banner,
            client,
        }
    }

    /// Stops the server with SIGTERM, checks that it exits with status 0,
    /// and starts it again on the same data directory, this time without
    /// `KUMO_BOOTSTRAP_TOKEN` (the stored admin and token must be reused).
    pub(crate) async fn restart(&mut self) {
        let mut child = self.child.take().expect("the server is running");
        let pid = child.id().expect("the server has a pid");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits in i32"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
            .expect("sending SIGTERM to the server");
        let status = tokio::time::timeout(STOP_TIMEOUT, child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the server did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.log_tail()
                )
            })
            .expect("waiting for the server to exit");
        assert!(
            status.success(),
            "the server exited with {status} after SIGTERM, not 0\n{}",
            self.log_tail()
        );
        let started = spawn(self.dir.path(), &self.args, false).await;
        self.child = Some(started.child);
        self.base = started.base;
        self.banner = started.banner;
    }

    /// Kills the server with SIGKILL (no shutdown at all) and starts it
    /// again on the same data directory.
    pub(crate) async fn crash_and_restart(&mut self) {
        let mut child = self.child.take().expect("the server is running");
        child.start_kill().expect("sending SIGKILL to the server");
        let _ = tokio::time::timeout(STOP_TIMEOUT, child.wait())
            .await
            .expect("the killed server exits");
        let started = spawn(self.dir.path(), &self.args, false).await;
        self.child = Some(started.child);
        self.base = started.base;
        self.banner = started.banner;
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request without credentials.
    pub(crate) fn public(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// A request with the admin token.
    pub(crate) fn authed(&self, method: Method, path: &str) -> RequestBuilder {
        self.public(method, path)
            .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
    }

    /// Sends a request and reads the whole response.
    pub(crate) async fn send(&self, request: RequestBuilder) -> Resp {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed: {e:?}\n{}", self.log_tail()));
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .expect("reading the response body")
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// An authenticated API call with an optional JSON body.
    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut request = self.authed(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    /// An authenticated `GET`.
    pub(crate) async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }

    /// Deploys `files` with `settings` (a JSON object merged into the body)
    /// and expects a new active version.
    pub(crate) async fn deploy(
        &self,
        project: &str,
        function: &str,
        files: &[(&str, &str)],
        settings: Value,
    ) -> Value {
        let resp = self.try_deploy(project, function, files, settings).await;
        let body = resp.expect_status(201);
        assert_eq!(body["status"], "active", "deploy answer: {body}");
        assert_eq!(body["function"], function, "deploy answer: {body}");
        assert!(
            body["url"]
                .as_str()
                .is_some_and(|u| u.ends_with(&format!("/fn/{project}/{function}"))),
            "deploy answer has no function URL: {body}"
        );
        body
    }

    /// Deploys and returns whatever the server answered.
    pub(crate) async fn try_deploy(
        &self,
        project: &str,
        function: &str,
        files: &[(&str, &str)],
        settings: Value,
    ) -> Resp {
        let mut body = json!({
            "files": files.iter().map(|(p, s)| (p.to_string(), Value::from(*s))).collect::<serde_json::Map<_, _>>(),
        });
        let Value::Object(settings) = settings else {
            panic!("settings must be a JSON object, got {settings}");
        };
        body.as_object_mut()
            .expect("the body is an object")
            .extend(settings);
        self.call(
            Method::POST,
            &deployments_path(project, function),
            Some(body),
        )
        .await
    }

    /// Deploys a `.tar.gz` with settings in `query` (`entrypoint=main.py&…`).
    pub(crate) async fn deploy_tar_gz(
        &self,
        project: &str,
        function: &str,
        archive: Vec<u8>,
        query: &str,
    ) -> Resp {
        let path = format!("{}?{query}", deployments_path(project, function));
        self.send(
            self.authed(Method::POST, &path)
                .header(CONTENT_TYPE, "application/gzip")
                .body(archive),
        )
        .await
    }

    /// Invokes through the API; returns the answer, whatever its status.
    pub(crate) async fn try_invoke(&self, project: &str, function: &str, event: Value) -> Resp {
        self.call(
            Method::POST,
            &format!("/api/v1/projects/{project}/functions/{function}/invoke"),
            Some(event),
        )
        .await
    }

    /// Invokes through the API and expects `200` with a run in the body.
    pub(crate) async fn invoke(&self, project: &str, function: &str, event: Value) -> Value {
        let run = self
            .try_invoke(project, function, event)
            .await
            .expect_status(200);
        assert!(
            run["id"].as_str().is_some_and(|id| !id.is_empty()),
            "invoke answer has no run id: {run}"
        );
        run
    }

    /// Waits until the run `id` can be read back, and returns it.
    pub(crate) async fn run_record(&self, id: &str, timeout: Duration) -> Value {
        let path = format!("/api/v1/invocations/{id}");
        wait_for(&format!("run {id} to be recorded"), timeout, async || {
            let resp = self.get(&path).await;
            match resp.status.as_u16() {
                200 => Some(resp.json()),
                404 => None,
                other => panic!("GET {path}: unexpected {other}: {}", resp.text()),
            }
        })
        .await
    }

    /// The value of a sample without labels in `/metrics`.
    pub(crate) async fn metric(&self, name: &str) -> f64 {
        let resp = self.send(self.authed(Method::GET, "/metrics")).await;
        let text = resp.expect_ok_text();
        text.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(' ')?;
                (key == name).then(|| value.trim().parse::<f64>().ok())?
            })
            .unwrap_or_else(|| panic!("/metrics has no sample '{name}':\n{text}"))
    }

    /// The server's data directory.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Everything the server has logged (its stderr) so far, over restarts.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(log_path(self.dir.path())).unwrap_or_default()
    }

    /// The last lines of the server's log, for failure messages.
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(log_path(self.dir.path())).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("--- server log (last 40 lines) ---\n{tail}\n--- end of server log ---")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            stop(child);
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}

/// Stops a server as an operator would, with SIGTERM, so that it stops
/// its instances and removes their cgroups; SIGKILL if that takes too long.
/// (A killed server leaves its idle, frozen instances behind.)
fn stop(child: &mut Child) {
    let Some(pid) = child.id() else {
        return; // already gone
    };
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits in i32"));
    if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_ok() {
        let deadline = Instant::now() + DROP_STOP_TIMEOUT;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Ok(Some(_)) | Err(_) => return,
            }
        }
    }
    let _ = child.start_kill();
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("server.log")
}

fn deployments_path(project: &str, function: &str) -> String {
    format!("/api/v1/projects/{project}/functions/{function}/deployments")
}

/// Starts `kumo serve` on `dir/data` and waits for its listening line.
async fn spawn(dir: &Path, args: &[String], bootstrap: bool) -> Started {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(dir))
        .expect("opening the server log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_kumo"));
    command
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true);
    clear_kumo_env(&mut command);
    if bootstrap {
        command.env("KUMO_BOOTSTRAP_TOKEN", TOKEN);
    }
    let mut child = command.spawn().expect("spawning kumo serve");
    let stdout = child.stdout.take().expect("the server's stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = Vec::new();
    let read_banner = async {
        while let Some(line) = lines
            .next_line()
            .await
            .expect("reading the server's stdout")
        {
            if let Some(url) = line.strip_prefix("kumo listening on ") {
                return Some(url.trim().to_string());
            }
            banner.push(line);
        }
        None
    };
    let base = match tokio::time::timeout(START_TIMEOUT, read_banner).await {
        Ok(Some(base)) => base,
        outcome => {
            let _ = child.start_kill();
            let log = std::fs::read_to_string(log_path(dir)).unwrap_or_default();
            let why = if outcome.is_err() {
                format!("no listening line within {START_TIMEOUT:?}")
            } else {
                "stdout closed before the listening line".to_string()
            };
            panic!("kumo serve did not start: {why}\nstdout: {banner:?}\nlog:\n{log}");
        }
    };
    // Keep reading stdout so the server never blocks on (or dies of) a full
    // or closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Started {
        child,
        base,
        banner,
    }
}

/// A whole HTTP response.
pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "expected a JSON body ({e}); got {} {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// The only value of header `name`; fails if it is repeated.
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        let mut values = self.headers.get_all(name).iter();
        let first = values.next()?;
        let rest: Vec<_> = values.collect();
        assert!(
            rest.is_empty(),
            "header '{name}' is sent more than once: {first:?} and {rest:?}"
        );
        Some(
            first
                .to_str()
                .unwrap_or_else(|_| panic!("header '{name}' is not ASCII: {first:?}"))
                .to_string(),
        )
    }

    /// Checks the status and returns the JSON body.
    pub(crate) fn expect_status(&self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self.json()
    }

    /// Checks for `200` and returns the body as text.
    pub(crate) fn expect_ok_text(&self) -> String {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.text());
        self.text()
    }

    /// Checks the status and the `{"error": {"code", "message"}}` shape
    /// with `code`, and returns the message.
    pub(crate) fn expect_error(&self, status: u16, code: &str) -> String {
        let body = self.expect_status(status);
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/json"),
            "errors are JSON: {body}"
        );
        assert_eq!(body["error"]["code"], code, "error body: {body}");
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("error without a message: {body}"));
        assert!(!message.is_empty(), "empty error message: {body}");
        message.to_string()
    }
}

/// Polls `check` until it returns `Some`, failing after `timeout`.
pub(crate) async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Strips the common indentation of an indented source text, so Python
/// can be written in line with the test.
pub(crate) fn py(source: &str) -> String {
    let lines: Vec<&str> = source
        .lines()
        .skip_while(|line| line.trim().is_empty())
        .collect();
    let indent = lines
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    for line in lines {
        out.push_str(line.get(indent..).unwrap_or_else(|| line.trim_start()));
        out.push('\n');
    }
    out.trim_end().to_string() + "\n"
}

/// A gzip-compressed tar archive built by `build`.
pub(crate) fn tar_gz(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    build(&mut builder);
    gzip(&builder.into_inner().expect("finishing the tar archive"))
}

/// Adds a regular text file to an archive.
pub(crate) fn tar_file(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &str) {
    tar_entry(builder, path, data.as_bytes(), 0o644);
}

/// Adds a regular file with any contents and mode to an archive.
pub(crate) fn tar_entry<W: std::io::Write>(
    builder: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
    mode: u32,
) {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, path, data)
        .expect("adding a file to the archive");
}

/// A `.tar.gz` holding one regular file under a name the `tar` crate would
/// refuse to write (such as `../x.py`): the header is forged by hand.
pub(crate) fn tar_gz_with_raw_name(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    let raw = name.as_bytes();
    header.as_old_mut().name[..raw.len()].copy_from_slice(raw);
    header.set_cksum();
    let mut tar = header.as_bytes().to_vec();
    tar.extend_from_slice(data);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    tar.extend_from_slice(&[0u8; 1024]);
    gzip(&tar)
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(raw).expect("compressing");
    encoder.finish().expect("compressing")
}
