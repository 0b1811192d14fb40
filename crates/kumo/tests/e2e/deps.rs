//! Dependencies and web apps: `requirements.txt` and `package.json`
//! installed into shared layers by sandboxed builds, FastAPI and Flask
//! apps served unchanged, and what happens when a build fails or a layer
//! is evicted.
//!
//! Packages come from the fixtures `scripts/fixtures` prepares under
//! `target/test-fixtures` (pinned wheels, one wheel built there, and an
//! npm cache); the servers install from them offline, so no test reaches
//! a package index.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestServer, py, wait_for};

/// How long a dependency build may take here.
const BUILD_TIMEOUT: Duration = Duration::from_secs(90);

fn fixtures() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-fixtures");
    assert!(
        dir.join(".stamp").exists(),
        "the package fixtures are missing: run scripts/fixtures (scripts/test does)"
    );
    dir
}

/// A server that installs packages from the fixtures only.
async fn server_with(extra: &[&str]) -> TestServer {
    let dir = fixtures();
    let wheels = dir.join("wheels");
    let cache = dir.join("npm-cache");
    let mut args = vec![
        "--pip-find-links",
        wheels.to_str().expect("utf-8 path"),
        "--pip-offline",
        "--npm-offline-cache",
        cache.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    TestServer::start_with(&args).await
}

async fn deploy(
    server: &TestServer,
    project: &str,
    function: &str,
    files: &[(&str, &str)],
    settings: Value,
) -> (u16, Value) {
    let resp = server.try_deploy(project, function, files, settings).await;
    (resp.status.as_u16(), resp.json())
}

/// Waits until version `version` of a function has finished building.
async fn built(server: &TestServer, project: &str, function: &str, version: i64) -> Value {
    let path = format!("/api/v1/projects/{project}/functions/{function}/deployments/{version}");
    wait_for(
        &format!("{path} to finish building"),
        BUILD_TIMEOUT,
        async || {
            let deployment = server.get(&path).await.expect_status(200);
            (deployment["status"] != "building").then_some(deployment)
        },
    )
    .await
}

async fn get_text(server: &TestServer, path: &str) -> String {
    server
        .send(server.public(Method::GET, path))
        .await
        .expect_ok_text()
}

const GREETING: &str =
    "import kumo_greeting\n\ndef handler(event):\n    return kumo_greeting.greet('Ada')\n";

/// A Python dependency is installed once, in the background: the deploy
/// answers `202 building` at once, the version becomes active when the
/// layer is built, and a second deployment with the same requirements (in
/// another function) reuses the layer with no build at all.
#[tokio::test]
async fn a_python_dependency_is_built_once_and_shared() {
    let server = server_with(&[]).await;
    let files = [
        ("main.py", GREETING),
        (
            "requirements.txt",
            "# the one wheel built by the fixtures\nkumo-greeting==1.0.0\n",
        ),
    ];
    let (status, body) = deploy(&server, "deps", "greet", &files, json!({})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "building", "{body}");
    let deployment = built(&server, "deps", "greet", 1).await;
    assert_eq!(deployment["status"], "ready", "{deployment}");
    assert_eq!(deployment["active"], true, "{deployment}");
    let layer = deployment["layer"].as_str().expect("a layer").to_string();
    assert!(
        deployment["build_log"]
            .as_str()
            .is_some_and(|l| l.contains("Successfully installed kumo-greeting-1.0.0")),
        "pip's own log: {deployment}"
    );
    assert_eq!(get_text(&server, "/fn/deps/greet").await, "greetings, Ada");

    // Same requirements (written differently), another function: the
    // layer is there, so the deploy is active at once.
    let files = [
        ("main.py", GREETING),
        ("requirements.txt", "kumo-greeting==1.0.0"),
    ];
    let (status, body) = deploy(&server, "deps", "again", &files, json!({})).await;
    assert_eq!(status, 201, "no second build: {body}");
    assert_eq!(body["status"], "active", "{body}");
    let second = server
        .get("/api/v1/projects/deps/functions/again/deployments/1")
        .await
        .expect_status(200);
    assert_eq!(second["layer"], layer.as_str(), "{second}");
    assert_eq!(
        second["build_log"],
        Value::Null,
        "nothing was built: {second}"
    );
    assert_eq!(get_text(&server, "/fn/deps/again").await, "greetings, Ada");
    let layers: Vec<_> = std::fs::read_dir(server.data_dir().join("layers"))
        .expect("the layers directory")
        .flatten()
        .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(layers.len(), 1, "one layer on disk: {layers:?}");
}

/// A requirement pip cannot satisfy: the deployment fails with pip's own
/// words, the previous version keeps serving, and the failed version
/// cannot be activated.
#[tokio::test]
async fn a_bad_requirement_shows_pips_message_and_the_old_version_serves() {
    let server = server_with(&[]).await;
    let v1 = py(r#"
        def handler(event):
            return "version one"
    "#);
    let (status, body) = deploy(&server, "deps", "svc", &[("main.py", &v1)], json!({})).await;
    assert_eq!(status, 201, "{body}");
    let files = [
        ("main.py", GREETING),
        ("requirements.txt", "no-such-package-kumo==9.9\n"),
    ];
    let (status, body) = deploy(&server, "deps", "svc", &files, json!({})).await;
    assert_eq!(status, 202, "{body}");
    let deployment = built(&server, "deps", "svc", 2).await;
    assert_eq!(deployment["status"], "failed", "{deployment}");
    let error = deployment["error"].as_str().expect("an error");
    assert!(
        error.contains(
            "ERROR: Could not find a version that satisfies the requirement no-such-package-kumo==9.9"
        ),
        "pip's own message, not a bare 'build failed': {error}"
    );
    assert!(
        deployment["build_log"]
            .as_str()
            .is_some_and(|l| l.contains("No matching distribution found")),
        "{deployment}"
    );
    assert_eq!(get_text(&server, "/fn/deps/svc").await, "version one");
    let resp = server
        .call(
            Method::POST,
            "/api/v1/projects/deps/functions/svc/deployments/2/activate",
            None,
        )
        .await;
    let message = resp.expect_error(409, "conflict");
    assert!(message.contains("failed to build"), "{message}");
}

/// Requirements that would make pip fetch from elsewhere, and npm specs
/// that are not registry versions, are refused at deploy with the line.
#[tokio::test]
async fn dependency_manifests_that_leave_the_index_are_refused() {
    let server = server_with(&[]).await;
    let (status, body) = deploy(
        &server,
        "deps",
        "evil",
        &[
            ("main.py", GREETING),
            (
                "requirements.txt",
                "kumo-greeting\n--index-url http://127.0.0.1:1/simple\n",
            ),
        ],
        json!({}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("requirements.txt line 2:"), "{message}");
    let (status, body) = deploy(
        &server,
        "deps",
        "evil-node",
        &[
            ("index.js", "exports.handler = () => 1;\n"),
            (
                "package.json",
                r#"{"dependencies": {"x": "git+https://127.0.0.1/x.git"}}"#,
            ),
        ],
        json!({"runtime": "node", "entrypoint": "index.js"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("not a version range from the registry"),
        "{message}"
    );
}

const FASTAPI_APP: &str = r#"
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

app = FastAPI(title="items")
items = {}
started = []


@app.on_event("startup")
def startup():
    started.append(True)


class Item(BaseModel):
    name: str
    price: float


@app.get("/")
def index():
    return {"service": "items", "started": len(started)}


@app.get("/items/{item_id}")
def read_item(item_id: int, q: str | None = None):
    if item_id not in items:
        raise HTTPException(status_code=404, detail="no such item")
    return {"id": item_id, "q": q, **items[item_id]}


@app.post("/items/{item_id}", status_code=201)
def create_item(item_id: int, item: Item):
    items[item_id] = item.model_dump()
    return {"created": item_id}
"#;

/// A FastAPI app deploys unchanged (no handler), and every route answers
/// under /fn/…: path and query parameters, a JSON body, validation errors,
/// status codes, lifespan startup, and the docs that point back through
/// Kumo's prefix.
#[tokio::test]
async fn a_fastapi_app_serves_its_routes() {
    let server = server_with(&[]).await;
    let files = [
        ("main.py", FASTAPI_APP),
        ("requirements.txt", "fastapi==0.115.14\n"),
    ];
    let (status, body) = deploy(&server, "web", "items", &files, json!({})).await;
    assert_eq!(status, 202, "{body}");
    let deployment = built(&server, "web", "items", 1).await;
    assert_eq!(deployment["status"], "ready", "{deployment}");

    let index = server
        .send(server.public(Method::GET, "/fn/web/items"))
        .await
        .expect_status(200);
    assert_eq!(index, json!({"service": "items", "started": 1}));
    let created = server
        .send(
            server
                .public(Method::POST, "/fn/web/items/items/7")
                .json(&json!({"name": "lamp", "price": 12.5})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json(), json!({"created": 7}));
    let read = server
        .send(server.public(Method::GET, "/fn/web/items/items/7?q=look"))
        .await
        .expect_status(200);
    assert_eq!(
        read,
        json!({"id": 7, "q": "look", "name": "lamp", "price": 12.5})
    );
    let missing = server
        .send(server.public(Method::GET, "/fn/web/items/items/8"))
        .await;
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert_eq!(missing.json()["detail"], "no such item");
    let invalid = server
        .send(
            server
                .public(Method::POST, "/fn/web/items/items/9")
                .json(&json!({"name": "no price"})),
        )
        .await;
    assert_eq!(invalid.status, 422, "{}", invalid.text());
    assert_eq!(invalid.json()["detail"][0]["loc"], json!(["body", "price"]));
    let docs = get_text(&server, "/fn/web/items/docs").await;
    assert!(docs.contains("'/fn/web/items/openapi.json'"), "{docs}");
    let schema = server
        .send(server.public(Method::GET, "/fn/web/items/openapi.json"))
        .await
        .expect_status(200);
    assert_eq!(schema["info"]["title"], "items");
    assert!(schema["paths"]["/items/{item_id}"].is_object(), "{schema}");
}

const FLASK_APP: &str = r#"
from flask import Flask, jsonify, redirect, request, url_for

app = Flask(__name__)


@app.get("/")
def home():
    return redirect(url_for("hello", name="world"))


@app.get("/hello/<name>")
def hello(name):
    return f"hello, {name}{request.args.get('punct', '')}"


@app.post("/echo")
def echo():
    return jsonify(json=request.get_json(), agent=request.headers.get("user-agent")), 201
"#;

/// A Flask app: routes with parameters, query strings, JSON bodies and
/// status codes, and redirects built with url_for that go back through
/// Kumo's prefix.
#[tokio::test]
async fn a_flask_app_serves_its_routes() {
    let server = server_with(&[]).await;
    let files = [
        ("app.py", FLASK_APP),
        ("requirements.txt", "flask==3.1.3\n"),
    ];
    let (status, body) = deploy(
        &server,
        "web",
        "flask",
        &files,
        json!({"entrypoint": "app.py"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let deployment = built(&server, "web", "flask", 1).await;
    assert_eq!(deployment["status"], "ready", "{deployment}");

    assert_eq!(
        get_text(&server, "/fn/web/flask/hello/Ada?punct=!").await,
        "hello, Ada!"
    );
    let echoed = server
        .send(
            server
                .public(Method::POST, "/fn/web/flask/echo")
                .header("user-agent", "kumo-test")
                .json(&json!({"a": [1, 2]})),
        )
        .await;
    assert_eq!(echoed.status, 201, "{}", echoed.text());
    assert_eq!(
        echoed.json(),
        json!({"json": {"a": [1, 2]}, "agent": "kumo-test"})
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let home = client
        .get(server.url("/fn/web/flask/"))
        .send()
        .await
        .expect("GET /");
    assert_eq!(home.status(), 302);
    let location = home
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        location.ends_with("/fn/web/flask/hello/world"),
        "url_for goes through Kumo's prefix: {location}"
    );
}

/// A Node.js dependency from package.json, for `require` (CommonJS) and
/// `import` (ES modules) alike.
#[tokio::test]
async fn a_node_dependency_is_installed_for_require_and_import() {
    let server = server_with(&[]).await;
    let package = r#"{"name": "checker", "dependencies": {"is-number": "^7.0.0"}, "devDependencies": {"never-installed": "1.0.0"}}"#;
    let cjs = "const isNumber = require('is-number');\nexports.handler = (event) => ({ cjs: isNumber(event.value) });\n";
    let (status, body) = deploy(
        &server,
        "node",
        "cjs",
        &[("index.js", cjs), ("package.json", package)],
        json!({"runtime": "node", "entrypoint": "index.js"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let deployment = built(&server, "node", "cjs", 1).await;
    assert_eq!(deployment["status"], "ready", "{deployment}");
    let run = server.invoke("node", "cjs", json!({"value": "42"})).await;
    assert_eq!(run["output"], json!({"cjs": true}), "{run}");

    let esm = "import isNumber from 'is-number';\nexport default async (event) => ({ esm: isNumber(event.value) });\n";
    let (status, body) = deploy(
        &server,
        "node",
        "esm",
        &[("index.mjs", esm), ("package.json", package)],
        json!({"runtime": "node", "entrypoint": "index.mjs"}),
    )
    .await;
    assert_eq!(status, 201, "the layer is shared: {body}");
    let run = server.invoke("node", "esm", json!({"value": "x"})).await;
    assert_eq!(run["output"], json!({"esm": false}), "{run}");
}

/// A layer that no active version uses is evicted after the TTL; rolling
/// back to a version that needs it builds it again (`202`), and the
/// version becomes active when it is back.
#[tokio::test]
async fn an_evicted_layer_is_rebuilt_for_a_rollback() {
    let server = server_with(&["--layer-ttl-secs", "1"]).await;
    let files = [
        ("main.py", GREETING),
        ("requirements.txt", "kumo-greeting==1.0.0\n"),
    ];
    let (status, _) = deploy(&server, "deps", "roll", &files, json!({})).await;
    assert_eq!(status, 202);
    let v1 = built(&server, "deps", "roll", 1).await;
    let layer = server
        .data_dir()
        .join("layers")
        .join(v1["layer"].as_str().expect("a layer"));
    assert!(layer.is_dir());
    let v2 = py(r#"
        def handler(event):
            return "no dependencies"
    "#);
    let (status, _) = deploy(&server, "deps", "roll", &[("main.py", &v2)], json!({})).await;
    assert_eq!(status, 201);
    wait_for(
        "the unused layer to be evicted",
        Duration::from_secs(20),
        async || (!layer.exists()).then_some(()),
    )
    .await;

    let resp = server
        .call(
            Method::POST,
            "/api/v1/projects/deps/functions/roll/deployments/1/activate",
            None,
        )
        .await;
    assert_eq!(resp.status, 202, "{}", resp.text());
    assert_eq!(get_text(&server, "/fn/deps/roll").await, "no dependencies");
    let again = built(&server, "deps", "roll", 1).await;
    assert_eq!(again["status"], "ready", "{again}");
    assert_eq!(again["active"], true, "{again}");
    assert_eq!(get_text(&server, "/fn/deps/roll").await, "greetings, Ada");
}

/// A package index on loopback, served by a small Python HTTP server: its
/// port, its request log, and the process (killed on drop).
struct LocalIndex {
    port: u16,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _child: tokio::process::Child,
}

impl LocalIndex {
    async fn serve(dir: &std::path::Path) -> LocalIndex {
        use tokio::io::AsyncBufReadExt;
        let script = "import functools, http.server, sys\n\
            class H(http.server.SimpleHTTPRequestHandler):\n\
            \x20   def log_message(self, fmt, *args):\n\
            \x20       print('REQUEST', self.path, flush=True)\n\
            s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(H, directory=sys.argv[1]))\n\
            print('PORT', s.server_address[1], flush=True)\n\
            s.serve_forever()\n";
        let mut child = tokio::process::Command::new("/usr/bin/python3.11")
            .args(["-c", script])
            .arg(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting a local index");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        let port = loop {
            let line = lines
                .next_line()
                .await
                .expect("reading the index's output")
                .expect("the index printed its port");
            if let Some(port) = line.strip_prefix("PORT ") {
                break port.trim().parse().expect("a port");
            }
        };
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = requests.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(path) = line.strip_prefix("REQUEST ") {
                    log.lock().expect("log").push(path.to_string());
                }
            }
        });
        LocalIndex {
            port,
            requests,
            _child: child,
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("log").clone()
    }
}

/// With a package index instead of local wheels, the build has the
/// network it needs and no more: pip reaches the index's port on the
/// host, while a file the index points at on another port is out of
/// reach (Landlock allows TCP connections to the index's and the web's
/// ports only), so that build fails with pip's error and that server
/// never hears from it.
#[tokio::test]
async fn builds_reach_the_index_and_nothing_else() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let index_dir = root.path().join("index");
    let other_dir = root.path().join("other");
    std::fs::create_dir_all(index_dir.join("files")).expect("mkdir");
    std::fs::create_dir_all(&other_dir).expect("mkdir");
    let wheel = "kumo_greeting-1.0.0-py3-none-any.whl";
    std::fs::copy(
        fixtures().join("wheels").join(wheel),
        index_dir.join("files").join(wheel),
    )
    .expect("copying the wheel");
    let other = LocalIndex::serve(&other_dir).await;
    let page = |href: String| format!("<html><body><a href=\"{href}\">{wheel}</a></body></html>\n");
    std::fs::create_dir_all(index_dir.join("simple/kumo-greeting")).expect("mkdir");
    std::fs::write(
        index_dir.join("simple/kumo-greeting/index.html"),
        page(format!("../../files/{wheel}")),
    )
    .expect("writing the index");
    std::fs::create_dir_all(index_dir.join("simple/kumo-elsewhere")).expect("mkdir");
    std::fs::write(
        index_dir.join("simple/kumo-elsewhere/index.html"),
        page(format!("http://127.0.0.1:{}/{wheel}", other.port))
            .replace("kumo_greeting", "kumo_elsewhere"),
    )
    .expect("writing the index");
    let index = LocalIndex::serve(&index_dir).await;
    let url = format!("http://127.0.0.1:{}/simple/", index.port);
    let server = TestServer::start_with(&["--pip-index-url", &url]).await;

    let files = [
        ("main.py", GREETING),
        ("requirements.txt", "kumo-greeting==1.0.0\n"),
    ];
    let (status, body) = deploy(&server, "net", "ok", &files, json!({})).await;
    assert_eq!(status, 202, "{body}");
    let deployment = built(&server, "net", "ok", 1).await;
    assert_eq!(deployment["status"], "ready", "{deployment}");
    assert_eq!(get_text(&server, "/fn/net/ok").await, "greetings, Ada");
    assert!(
        index.requests().iter().any(|p| p.ends_with(wheel)),
        "the wheel came from the index: {:?}",
        index.requests()
    );

    let files = [
        ("main.py", GREETING),
        ("requirements.txt", "kumo-elsewhere==1.0.0\n"),
    ];
    let (status, body) = deploy(&server, "net", "elsewhere", &files, json!({})).await;
    assert_eq!(status, 202, "{body}");
    let deployment = built(&server, "net", "elsewhere", 1).await;
    assert_eq!(deployment["status"], "failed", "{deployment}");
    println!(
        "the build that reached for another port: {}",
        deployment["error"]
    );
    assert!(
        deployment["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("ERROR:")),
        "pip's own error: {deployment}"
    );
    assert!(
        other.requests().is_empty(),
        "the build reached a port beyond the index's: {:?}",
        other.requests()
    );
}

/// A server killed (SIGKILL) while a deployment installs its
/// dependencies builds it again when it starts: the accepted deployment
/// is not left `building`, and it goes live.
#[tokio::test]
async fn a_build_cut_off_by_a_crash_resumes_at_restart() {
    let mut server = server_with(&[]).await;
    let files = [
        ("main.py", FASTAPI_APP),
        ("requirements.txt", "fastapi==0.115.14\n"),
    ];
    let (status, body) = deploy(&server, "web", "crashy", &files, json!({})).await;
    assert_eq!(status, 202, "{body}");
    server.crash_and_restart().await;
    let deployment = built(&server, "web", "crashy", 1).await;
    assert_eq!(deployment["status"], "ready", "{deployment}");
    assert_eq!(deployment["active"], true, "{deployment}");
    let index = server
        .send(server.public(Method::GET, "/fn/web/crashy"))
        .await
        .expect_status(200);
    assert_eq!(index["service"], "items", "{index}");
    let leftovers: Vec<_> = std::fs::read_dir(server.data_dir().join("layers"))
        .expect("the layers directory")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".build-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "half-built layers were cleared: {leftovers:?}"
    );
}
