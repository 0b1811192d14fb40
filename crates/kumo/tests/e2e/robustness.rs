//! The server against hostile or careless input: idle and half-sent
//! connections, more connections than descriptors, route patterns,
//! events and outputs the libraries underneath would choke on, and
//! variables that would change how the runtime itself starts.

use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::support::{TOKEN, TestServer, py, wait_for};

/// How long the server may take to close a connection it should close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads from `stream` until the server closes it; what it sent, if any.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(CLOSE_TIMEOUT, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open for {CLOSE_TIMEOUT:?}"
    );
    String::from_utf8_lossy(&got).into_owned()
}

fn host_port(server: &TestServer) -> String {
    server
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// A connection that sends nothing, one that sends half a request's
/// headers, and one left open after a full request are all closed by the
/// server after the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed_after_the_header_timeout() {
    let server = TestServer::start_with(&["--header-timeout-ms", "300"]).await;
    let addr = host_port(&server);

    let mut silent = TcpStream::connect(&addr).await.expect("connecting");
    let mut half = TcpStream::connect(&addr).await.expect("connecting");
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
        .await
        .expect("writing half a request");
    let mut kept = TcpStream::connect(&addr).await.expect("connecting");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("writing a request");

    until_closed(&mut silent).await;
    let half_answer = until_closed(&mut half).await;
    assert!(
        !half_answer.contains("200 OK"),
        "a half-sent request was answered: {half_answer}"
    );
    let kept_answer = until_closed(&mut kept).await;
    assert!(
        kept_answer.starts_with("HTTP/1.1 200"),
        "the full request was not answered before the close: {kept_answer}"
    );

    // The server is none the worse for it.
    let resp = server.send(server.public(Method::GET, "/healthz")).await;
    assert_eq!(resp.status.as_u16(), 200);
}

/// A `kumo serve` limited to 1024 open descriptors (soft and hard), as a
/// host with a low limit would run it.
struct LowFdServer {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl LowFdServer {
    async fn start(args: &[&str]) -> LowFdServer {
        let dir = tempfile::Builder::new()
            .prefix("kumo-e2e-fd-")
            .tempdir()
            .expect("creating a temporary directory");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("creating the log");
        let mut child = Command::new("prlimit")
            .arg("--nofile=1024:1024")
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_kumo"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--drain-timeout-ms",
                "1000",
            ])
            .args(["--prewarm", "0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(args)
            .env("KUMO_BOOTSTRAP_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawning prlimit kumo serve");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let base = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("kumo listening on ") {
                    return Some(url.trim().to_string());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            panic!("kumo serve under prlimit did not start:\n{log}")
        });
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        LowFdServer {
            child,
            base,
            _dir: dir,
        }
    }
}

impl Drop for LowFdServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// More idle and half-sent connections than the server has descriptors
/// (1,200 against a limit of 1,024): the server closes the ones idle the
/// longest to stay under its cap, so `/healthz` and calls still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_do_not_keep_healthz_out() {
    const HELD: usize = 1200;
    // The test itself holds the connections: make room for them.
    if let Ok((soft, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
    // A long header timeout: it is the cap that must make room here.
    let server = LowFdServer::start(&["--header-timeout-ms", "600000"]).await;
    let addr = server.base.trim_start_matches("http://").to_string();

    let mut held = Vec::with_capacity(HELD);
    for i in 0..HELD {
        let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&addr)).await;
        let Ok(Ok(mut stream)) = connect else {
            // A server out of descriptors stops accepting; the backlog
            // fills and connecting stalls. Enough are held either way.
            break;
        };
        if i % 2 == 1 {
            let _ = stream
                .write_all(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n")
                .await;
        }
        held.push(stream);
    }
    assert!(
        held.len() > 1024,
        "only {} connections were made",
        held.len()
    );

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("building a client");
    let health = client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("/healthz answers with 1,200 connections held");
    assert_eq!(health.status().as_u16(), 200);
    let docs = client
        .get(format!("{}/api/v1/projects", server.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("the API answers too");
    assert_eq!(docs.status().as_u16(), 200);

    // The first connections, idle the longest, were the ones closed.
    let mut first = held.swap_remove(0);
    until_closed(&mut first).await;
}

/// matchit panics on the 26th parameter of a route; the API refuses the
/// route with a 400 that names the limit, and the most it takes works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_with_too_many_parameters_is_a_400_naming_the_limit() {
    let server = TestServer::start().await;
    server
        .deploy(
            "many",
            "echo",
            &[(
                "main.py",
                &py(r#"
                    def handler(event):
                        return event["params"]
                "#),
            )],
            json!({}),
        )
        .await;
    let path = |n: usize| -> String { (0..n).map(|i| format!("/:p{i}")).collect() };
    let resp = server
        .call(
            Method::POST,
            "/api/v1/projects/many/routes",
            Some(json!({"method": "GET", "path": path(26), "function": "echo"})),
        )
        .await;
    let message = resp.expect_error(400, "bad_request");
    assert!(message.contains("the limit is 25"), "{message}");

    // The server is still there, and 25 parameters route.
    let resp = server
        .call(
            Method::POST,
            "/api/v1/projects/many/routes",
            Some(json!({"method": "GET", "path": path(25), "function": "echo"})),
        )
        .await;
    resp.expect_status(201);
    let request: String = (0..25).map(|i| format!("/v{i}")).collect();
    let params = wait_for("the route to serve", Duration::from_secs(10), async || {
        let resp = server
            .send(server.public(Method::GET, &format!("/p/many{request}")))
            .await;
        (resp.status.as_u16() == 200).then(|| resp.json())
    })
    .await;
    assert_eq!(params["p0"], "v0", "{params}");
    assert_eq!(params["p24"], "v24", "{params}");
}

/// A handler that returns `[[…[1]…]]` nested `n` levels deep (`n` from the event).
const DEEP_PY: &str = r#"
def handler(event):
    v = 1
    for _ in range(event.get("n", 130) if isinstance(event, dict) else 130):
        v = [v]
    return v
"#;

const DEEP_NODE: &str = r#"
export default function (event) {
  let v = 1;
  const n = event && typeof event.n === "number" ? event.n : 130;
  for (let i = 0; i < n; i++) v = [v];
  return v;
}
"#;

fn nested(n: usize) -> String {
    format!("{}1{}", "[".repeat(n), "]".repeat(n))
}

/// Returns the run's output, checking it is `[[…[1]…]]` `n` levels deep.
fn depth_of(mut value: &Value) -> usize {
    let mut depth = 0;
    while let Value::Array(items) = value {
        depth += 1;
        value = &items[0];
    }
    assert_eq!(value, &json!(1));
    depth
}

async fn check_deep_outputs(server: &TestServer, project: &str, function: &str) {
    // At the limit: kept whole, in the answer and in the stored run.
    let run = server.invoke(project, function, json!({"n": 100})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(depth_of(&run["output"]), 100);
    let id = run["id"].as_str().expect("a run id");
    let stored = server.run_record(id, Duration::from_secs(10)).await;
    assert_eq!(depth_of(&stored["output"]), 100);

    // Past it: a failed run that says why, never a success without output.
    for n in [101, 130, 500] {
        let run = server.invoke(project, function, json!({"n": n})).await;
        assert_eq!(run["status"], "failed", "depth {n}: {run}");
        assert_eq!(run["error"]["type"], "OutputTooDeep", "{run}");
        let message = run["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("more than 100 levels"), "{message}");
        let id = run["id"].as_str().expect("a run id");
        let stored = server.run_record(id, Duration::from_secs(10)).await;
        assert_eq!(stored["status"], "failed", "{stored}");
        assert_eq!(stored["error"]["type"], "OutputTooDeep", "{stored}");
    }

    // Through the gateway: not a 200.
    let resp = server
        .send(
            server
                .public(Method::POST, &format!("/fn/{project}/{function}"))
                .body(r#"{"n": 130}"#),
        )
        .await;
    assert!(
        resp.status.is_server_error(),
        "{}: {}",
        resp.status,
        resp.text()
    );
    let id = resp.header("x-kumo-invocation-id").expect("a run id");
    let stored = server.run_record(&id, Duration::from_secs(10)).await;
    assert_eq!(stored["error"]["type"], "OutputTooDeep", "{stored}");
}

/// Output nested 128 levels or more used to be `succeeded` with
/// `output: null`: the host's JSON reader gave up on it silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_output_nested_too_deep_fails_the_run_and_is_never_lost() {
    let server = TestServer::start().await;
    server
        .deploy("deep", "py", &[("main.py", &py(DEEP_PY))], json!({}))
        .await;
    check_deep_outputs(&server, "deep", "py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_output_nested_too_deep_fails_the_run_and_is_never_lost() {
    let server = TestServer::start().await;
    let resp = server
        .send(
            server
                .authed(
                    Method::POST,
                    "/api/v1/projects/deep/functions/js/deployments",
                )
                .json(&json!({
                    "runtime": "node",
                    "entrypoint": "index.mjs",
                    "files": {"index.mjs": DEEP_NODE},
                })),
        )
        .await;
    resp.expect_status(201);
    check_deep_outputs(&server, "deep", "js").await;
}

/// An event nested 100,000 levels deep used to crash the runner; it is a
/// 400 before any sandbox work, sync or async, and 100 levels still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_nested_too_deep_is_a_400() {
    let server = TestServer::start().await;
    server
        .deploy(
            "ev",
            "echo",
            &[(
                "main.py",
                &py(r#"
                    def handler(event):
                        return event
                "#),
            )],
            json!({}),
        )
        .await;
    for query in ["", "?async=true"] {
        for depth in [101, 100_000] {
            let resp = server
                .send(
                    server
                        .authed(
                            Method::POST,
                            &format!("/api/v1/projects/ev/functions/echo/invoke{query}"),
                        )
                        .header("content-type", "application/json")
                        .body(nested(depth)),
                )
                .await;
            let message = resp.expect_error(400, "bad_request");
            assert!(message.contains("the limit is 100"), "{message}");
        }
    }
    let resp = server
        .send(
            server
                .authed(Method::POST, "/api/v1/projects/ev/functions/echo/invoke")
                .header("content-type", "application/json")
                .body(nested(100)),
        )
        .await;
    let run = resp.expect_status(200);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(depth_of(&run["output"]), 100);

    // Nothing ran for the refused ones: once the one that ran is listed,
    // it is the only run.
    let runs = wait_for(
        "the run to be listed",
        Duration::from_secs(10),
        async || {
            let runs = server
                .get("/api/v1/projects/ev/functions/echo/invocations")
                .await
                .expect_status(200);
            let count = runs["items"].as_array().map_or(0, Vec::len);
            (count > 0).then_some(runs)
        },
    )
    .await;
    let count = runs["items"].as_array().map_or(0, Vec::len);
    assert_eq!(count, 1, "{runs}");
}

/// Variables that change how the runner process itself starts are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_that_change_how_the_runtime_starts_are_refused() {
    let server = TestServer::start().await;
    server
        .call(
            Method::POST,
            "/api/v1/projects",
            Some(json!({"name": "envs"})),
        )
        .await;
    for key in [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "NODE_OPTIONS",
        "GCONV_PATH",
        "GLIBC_TUNABLES",
        "MALLOC_CHECK_",
    ] {
        let resp = server
            .call(
                Method::PUT,
                &format!("/api/v1/projects/envs/env/{key}"),
                Some(json!({"value": "/tmp/x"})),
            )
            .await;
        let message = resp.expect_error(400, "bad_request");
        assert!(message.contains(key), "{message}");
        assert!(
            message.contains("how the runtime itself starts"),
            "{message}"
        );
    }
    let resp = server
        .call(
            Method::PUT,
            "/api/v1/projects/envs/env/NODE_ENV",
            Some(json!({"value": "production"})),
        )
        .await;
    assert!(resp.status.is_success(), "{}: {}", resp.status, resp.text());
}
