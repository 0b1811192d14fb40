//! Node.js functions: the handler forms, the contract, deploy-time checks,
//! and the sandbox around a Node.js instance.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestServer, wait_for};

fn deploy_body(files: &[(&str, &str)], entrypoint: &str, extra: Value) -> Value {
    let files: serde_json::Map<String, Value> = files
        .iter()
        .map(|(p, c)| (p.to_string(), json!(c)))
        .collect();
    let mut body = json!({"runtime": "node", "entrypoint": entrypoint, "files": files});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

async fn deploy_node(
    server: &TestServer,
    project: &str,
    function: &str,
    files: &[(&str, &str)],
    entrypoint: &str,
) -> Value {
    let resp = server
        .send(
            server
                .authed(
                    Method::POST,
                    &format!("/api/v1/projects/{project}/functions/{function}/deployments"),
                )
                .json(&deploy_body(files, entrypoint, json!({}))),
        )
        .await;
    let body = resp.expect_status(201);
    assert_eq!(body["status"], "active", "{body}");
    body
}

/// A CommonJS `exports.handler`: event, context, environment, logs, and
/// the HTTP mapping of a `statusCode` object.
#[tokio::test]
async fn a_commonjs_handler_gets_the_event_and_context() {
    let server = TestServer::start().await;
    let code = r#"
const os = require('node:os');
exports.handler = (event, context) => {
  console.log('hello from', context.function_name);
  console.error('to stderr');
  if (event && event.method) {
    return {
      statusCode: 201,
      headers: { 'x-from': 'node' },
      body: `${event.method} ${event.path} q=${event.query.q} body=${event.body}`,
    };
  }
  return {
    event,
    fn: context.function_name,
    version: context.version,
    memory: context.memory_limit_mb,
    remaining: context.getRemainingTimeInMillis() > 0,
    env_function: process.env.KUMO_FUNCTION,
    hostname: os.hostname(),
  };
};
"#;
    deploy_node(&server, "js", "cjs", &[("index.js", code)], "index.js").await;
    let run = server.invoke("js", "cjs", json!({"a": [1, 2]})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let out = &run["output"];
    assert_eq!(out["event"], json!({"a": [1, 2]}), "{run}");
    assert_eq!(out["fn"], "cjs");
    assert_eq!(out["version"], 1);
    assert_eq!(out["memory"], 128);
    assert_eq!(out["remaining"], true);
    assert_eq!(out["env_function"], "cjs");
    assert_eq!(out["hostname"], "kumo");
    let logs = run["logs"].as_str().expect("logs");
    assert!(logs.contains("hello from cjs\n"), "{run}");
    assert!(logs.contains("to stderr\n"), "{run}");

    let resp = server
        .send(
            server
                .public(Method::POST, "/fn/js/cjs/some/path?q=42")
                .body("payload"),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert_eq!(resp.header("x-from").as_deref(), Some("node"));
    assert_eq!(resp.text(), "POST /some/path q=42 body=payload");
}

/// An ES module's async default export; `module.exports.handler` in a
/// .cjs file; return values mapped like Python's.
#[tokio::test]
async fn esm_default_exports_and_return_values() {
    let server = TestServer::start().await;
    let esm = r#"
import { setTimeout as sleep } from 'node:timers/promises';
let calls = 0;
export default async function (event) {
  await sleep(5);
  calls += 1;
  if (event.kind === 'string') return 'plain text';
  if (event.kind === 'nothing') return undefined;
  return { calls, doubled: event.n * 2 };
}
"#;
    deploy_node(
        &server,
        "js",
        "esm",
        &[("app/main.mjs", esm)],
        "app/main.mjs",
    )
    .await;
    let first = server.invoke("js", "esm", json!({"n": 21})).await;
    assert_eq!(
        first["output"],
        json!({"calls": 1, "doubled": 42}),
        "{first}"
    );
    let second = server.invoke("js", "esm", json!({"n": 1})).await;
    assert_eq!(
        second["output"]["calls"], 2,
        "state lives on in a warm instance: {second}"
    );
    assert_eq!(second["cold_start"], false, "{second}");

    let text = server.send(server.public(Method::GET, "/fn/js/esm")).await;
    // The HTTP event has no `kind`: the object is JSON.
    assert_eq!(text.status, 200, "{}", text.text());
    let none = server.invoke("js", "esm", json!({"kind": "nothing"})).await;
    assert_eq!(none["output"], Value::Null, "{none}");
    let s = server.invoke("js", "esm", json!({"kind": "string"})).await;
    assert_eq!(s["output"], "plain text", "{s}");

    let cjs = "module.exports.handler = async (e) => ({ ok: true, got: e.x });\n";
    deploy_node(
        &server,
        "js",
        "cjs2",
        &[("handler.cjs", cjs)],
        "handler.cjs",
    )
    .await;
    let run = server.invoke("js", "cjs2", json!({"x": "y"})).await;
    assert_eq!(run["output"], json!({"ok": true, "got": "y"}), "{run}");
}

/// A thrown error fails the run with its type, message and a stack that
/// starts in user code; the instance keeps serving.
#[tokio::test]
async fn a_thrown_error_fails_the_run_with_its_stack() {
    let server = TestServer::start().await;
    let code = r#"
function inner(n) {
  if (n > 0) throw new RangeError(`too big: ${n}`);
  return 'fine';
}
exports.handler = (event) => inner(event.body !== undefined ? JSON.parse(event.body).n : event.n);
"#;
    deploy_node(&server, "js", "boom", &[("index.js", code)], "index.js").await;
    let run = server.invoke("js", "boom", json!({"n": 7})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["type"], "RangeError", "{run}");
    assert_eq!(run["error"]["message"], "too big: 7", "{run}");
    let stack = run["error"]["traceback"].as_str().expect("stack");
    assert!(stack.contains("at inner (/code/index.js:3:"), "{stack}");
    assert!(
        !stack.contains("kumo_runner"),
        "the runner's frames are hidden: {stack}"
    );
    let ok = server.invoke("js", "boom", json!({"n": 0})).await;
    assert_eq!(ok["output"], "fine", "{ok}");
    assert_eq!(ok["cold_start"], false, "{ok}");

    let resp = server
        .send(
            server
                .public(Method::POST, "/fn/js/boom")
                .body(r#"{"n": 1}"#),
        )
        .await;
    assert_eq!(resp.status, 500);
    assert!(
        !resp.text().contains("RangeError"),
        "no details to the public: {}",
        resp.text()
    );
}

/// Deploy-time checks: a syntax error names the file and line; a missing
/// handler and an entrypoint of the wrong kind are refused clearly.
#[tokio::test]
async fn node_deploys_are_checked() {
    let server = TestServer::start().await;
    let deploy = async |files: &[(&str, &str)], entrypoint: &str| {
        server
            .send(
                server
                    .authed(
                        Method::POST,
                        "/api/v1/projects/js/functions/bad/deployments",
                    )
                    .json(&deploy_body(files, entrypoint, json!({}))),
            )
            .await
    };
    let resp = deploy(
        &[
            ("index.js", "exports.handler = () => 1;\n"),
            ("lib/util.mjs", "export const f = () => {\n  return )\n};\n"),
        ],
        "index.js",
    )
    .await;
    let message = resp.expect_error(400, "syntax_error");
    assert!(message.contains("lib/util.mjs, line 2"), "{message}");
    let body = resp.json();
    assert_eq!(body["error"]["location"]["file"], "lib/util.mjs", "{body}");
    assert_eq!(body["error"]["location"]["line"], 2, "{body}");

    let resp = deploy(&[("index.py", "x = 1\n")], "index.py").await;
    let message = resp.expect_error(400, "bad_request");
    assert!(message.contains(".js, .mjs or .cjs"), "{message}");

    // The code is loaded once at deploy: a missing handler, or an import
    // that throws, is refused with where it happened.
    let resp = deploy(&[("index.js", "exports.other = () => 1;\n")], "index.js").await;
    let message = resp.expect_error(400, "load_error");
    assert!(message.contains("HandlerNotFound"), "{message}");
    let resp = deploy(
        &[("index.js", "const x = 1;\nthrow new Error('no config');\n")],
        "index.js",
    )
    .await;
    let message = resp.expect_error(400, "load_error");
    assert!(message.contains("Error: no config"), "{message}");
    assert!(message.contains("index.js, line 2"), "{message}");
    let body = resp.json();
    assert_eq!(body["error"]["location"]["file"], "index.js", "{body}");
    assert_eq!(body["error"]["location"]["line"], 2, "{body}");
}

/// The sandbox around a Node.js instance: every thread confined, no
/// network, a read-only root with only the runtime, the code and /tmp; and
/// a cold start served by a sandbox started before the code existed.
#[tokio::test]
async fn a_node_instance_is_sandboxed_like_a_python_one() {
    let server = TestServer::start().await;
    let code = r#"
const fs = require('node:fs');
const net = require('node:net');
const attempt = (f) => { try { f(); return 'allowed'; } catch (e) { return e.code || e.message; } };
const started = () => {
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  const uptime = Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  return Date.now() / 1000 - (uptime - ticks / 100);
};
const STARTED = started();
exports.handler = async (event) => {
  const threads = fs.readdirSync('/proc/self/task').map((t) => {
    const status = fs.readFileSync(`/proc/self/task/${t}/status`, 'utf8');
    const field = (name) => status.split('\n').find((l) => l.startsWith(name + ':')).split(/\s+/)[1];
    return { seccomp: field('Seccomp'), nnp: field('NoNewPrivs'), capeff: field('CapEff'), uid: field('Uid') };
  });
  const connect = await new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: event.port });
    s.on('connect', () => { s.destroy(); resolve('connected'); });
    s.on('error', (e) => resolve(e.code));
  });
  return {
    started: STARTED,
    threads,
    root: fs.readdirSync('/').sort(),
    interfaces: fs.readFileSync('/proc/net/dev', 'utf8').split('\n').slice(2).filter(Boolean).map((l) => l.trim().split(':')[0]),
    write_code: attempt(() => fs.writeFileSync('/code/x', 'x')),
    write_usr: attempt(() => fs.writeFileSync('/usr/x', 'x')),
    write_tmp: attempt(() => fs.writeFileSync('/tmp/x', 'x')),
    connect,
    pid: process.pid,
  };
};
"#;
    wait_for(
        "the pre-warmed pools (python and node) to fill",
        Duration::from_secs(30),
        async || (server.metric("kumo_prewarmed_instances").await >= 4.0).then_some(()),
    )
    .await;
    let before_deploy = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    deploy_node(&server, "js", "probe", &[("index.js", code)], "index.js").await;
    // A listener on the host's loopback: the sandbox must not reach it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let run = server.invoke("js", "probe", json!({"port": port})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["cold_start"], true, "{run}");
    let out = &run["output"];
    let threads = out["threads"].as_array().expect("threads");
    assert!(threads.len() >= 2, "node runs several threads: {out}");
    for thread in threads {
        assert_eq!(thread["seccomp"], "2", "every thread: {out}");
        assert_eq!(thread["nnp"], "1", "every thread: {out}");
        assert_eq!(thread["capeff"], "0000000000000000", "every thread: {out}");
        assert_eq!(thread["uid"], "1000", "every thread: {out}");
    }
    assert_eq!(out["interfaces"], json!(["lo"]), "{out}");
    assert!(
        out["connect"].as_str().is_some_and(|c| c != "connected"),
        "a host listener is out of reach: {out}"
    );
    assert_eq!(out["write_code"], "EROFS", "{out}");
    assert_eq!(out["write_usr"], "EROFS", "{out}");
    assert_eq!(out["write_tmp"], "allowed", "{out}");
    assert!(out["pid"].as_u64().is_some_and(|p| p < 10), "{out}");
    let root: Vec<&str> = out["root"]
        .as_array()
        .expect("root")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for unexpected in ["home", "root", "var", "srv", "opt", "sys", "boot", "work"] {
        assert!(
            !root.contains(&unexpected),
            "/{unexpected} is visible: {root:?}"
        );
    }
    for expected in ["code", "tmp", "proc", "dev", "usr", "kumo"] {
        assert!(root.contains(&expected), "/{expected} is missing: {root:?}");
    }
    let started = out["started"].as_f64().expect("start time");
    assert!(
        started < before_deploy,
        "the node runner was pre-warmed (started {:.3} s before the deploy): {run}",
        before_deploy - started
    );
}
