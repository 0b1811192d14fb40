//! The core loop: deploy, call through the API and the gateway, the
//! handler contract both ways, warm reuse and scale to zero, versions,
//! archives, records and restarts.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestServer, py, tar_file, tar_gz, tar_gz_with_raw_name, wait_for};

const COUNTER: &str = r#"
    count = 0

    def handler(event):
        global count
        count += 1
        return {"count": count}
"#;

#[tokio::test]
async fn two_argument_handler_gets_event_and_context() {
    let server = TestServer::start().await;
    let code = py(r#"
        def handler(event, context):
            return {
                "event": event,
                "request_id": context.request_id,
                "function_name": context.function_name,
                "version": context.version,
                "memory_limit_mb": context.memory_limit_mb,
                "remaining_ms": context.remaining_time_ms(),
                "env_has_get": hasattr(context.env, "get"),
            }
    "#);
    server
        .deploy(
            "core",
            "ctx",
            &[("main.py", &code)],
            json!({"timeout_ms": 5000}),
        )
        .await;

    let run = server
        .invoke("core", "ctx", json!({"name": "kumo", "n": [1, 2]}))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["version"], 1, "{run}");
    let out = &run["output"];
    assert_eq!(out["event"], json!({"name": "kumo", "n": [1, 2]}), "{run}");
    assert_eq!(
        out["request_id"], run["id"],
        "context.request_id is the run id"
    );
    assert_eq!(out["function_name"], "ctx");
    assert_eq!(out["version"], 1);
    assert_eq!(out["memory_limit_mb"], 128);
    assert_eq!(out["env_has_get"], true);
    let remaining = out["remaining_ms"].as_i64().expect("remaining_ms");
    assert!(
        remaining > 0 && remaining <= 5000,
        "remaining_time_ms() = {remaining}"
    );

    let resp = server
        .send(server.public(Method::GET, "/fn/core/ctx?q=1"))
        .await;
    let body = resp.expect_status(200);
    assert_eq!(
        resp.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(body["event"]["method"], "GET", "{body}");
    assert_eq!(body["event"]["query"]["q"], "1", "{body}");
    assert_eq!(
        Some(body["request_id"].as_str().expect("request_id")),
        resp.header("x-kumo-invocation-id").as_deref(),
        "the invocation header names the run the handler saw"
    );
}

#[tokio::test]
async fn one_argument_handler_gets_the_event() {
    let server = TestServer::start().await;
    let code = py(r#"
        def handler(event):
            return {"got": event}
    "#);
    server
        .deploy("core", "single", &[("main.py", &code)], json!({}))
        .await;

    let run = server.invoke("core", "single", json!([1, "two"])).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["output"], json!({"got": [1, "two"]}));

    let resp = server
        .send(server.public(Method::DELETE, "/fn/core/single/x"))
        .await;
    let body = resp.expect_status(200);
    assert_eq!(body["got"]["method"], "DELETE", "{body}");
    assert_eq!(body["got"]["path"], "/x", "{body}");
}

#[tokio::test]
async fn async_handler_is_awaited() {
    let server = TestServer::start().await;
    let code = py(r#"
        import asyncio

        async def handler(event, context):
            await asyncio.sleep(0.01)
            results = await asyncio.gather(double(1), double(2))
            return {"async": True, "results": results, "n": event.get("n")}

        async def double(x):
            await asyncio.sleep(0)
            return 2 * x
    "#);
    server
        .deploy("core", "aio", &[("main.py", &code)], json!({}))
        .await;

    for n in [1, 2] {
        let run = server.invoke("core", "aio", json!({"n": n})).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(
            run["output"],
            json!({"async": true, "results": [2, 4], "n": n})
        );
    }
    let resp = server
        .send(server.public(Method::GET, "/fn/core/aio"))
        .await;
    assert_eq!(
        resp.expect_status(200),
        json!({"async": true, "results": [2, 4], "n": null})
    );
}

/// The handler behind the return-mapping tests: `?kind=` picks the value.
const RETURNS: &str = r#"
    def handler(event):
        kind = event["query"].get("kind")
        if kind == "http":
            return {
                "statusCode": 201,
                "headers": {"x-kumo-test": "yes", "content-type": "text/html; charset=utf-8"},
                "body": "<p>made</p>",
            }
        if kind == "teapot":
            return {"statusCode": 418, "headers": {"x-multi": ["a", "b"]}, "body": "short and stout"}
        if kind == "empty":
            return {"statusCode": 202}
        if kind == "dict":
            return {"a": 1, "b": [True, None]}
        if kind == "list":
            return [1, "two", None]
        if kind == "number":
            return 42
        if kind == "str":
            return "hello text"
        if kind == "none":
            return None
        raise ValueError("unknown kind %r" % kind)
"#;

#[tokio::test]
async fn status_code_dict_is_the_http_response() {
    let server = TestServer::start().await;
    server
        .deploy("core", "returns", &[("main.py", &py(RETURNS))], json!({}))
        .await;
    let get = async |kind: &str| {
        server
            .send(server.public(Method::GET, &format!("/fn/core/returns?kind={kind}")))
            .await
    };

    let resp = get("http").await;
    assert_eq!(resp.status.as_u16(), 201, "{}", resp.text());
    assert_eq!(resp.header("x-kumo-test").as_deref(), Some("yes"));
    // The function's content type replaces the default; it is not added to it.
    assert_eq!(
        resp.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(resp.text(), "<p>made</p>");

    let resp = get("teapot").await;
    assert_eq!(resp.status.as_u16(), 418, "{}", resp.text());
    assert_eq!(
        resp.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8"),
        "a string body without a content type is text"
    );
    let multi: Vec<_> = resp
        .headers
        .get_all("x-multi")
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert_eq!(multi, ["a", "b"], "a list of header values sends each");
    assert_eq!(resp.text(), "short and stout");

    let resp = get("empty").await;
    assert_eq!(resp.status.as_u16(), 202);
    assert!(resp.body.is_empty(), "{}", resp.text());
    assert!(resp.header("x-kumo-invocation-id").is_some());
}

#[tokio::test]
async fn plain_values_map_to_json_text_and_204() {
    let server = TestServer::start().await;
    server
        .deploy("core", "returns", &[("main.py", &py(RETURNS))], json!({}))
        .await;
    let get = async |kind: &str| {
        server
            .send(server.public(Method::GET, &format!("/fn/core/returns?kind={kind}")))
            .await
    };

    for (kind, expected) in [
        ("dict", json!({"a": 1, "b": [true, null]})),
        ("list", json!([1, "two", null])),
        ("number", json!(42)),
    ] {
        let resp = get(kind).await;
        assert_eq!(resp.expect_status(200), expected, "kind {kind}");
        assert_eq!(
            resp.header("content-type").as_deref(),
            Some("application/json"),
            "kind {kind}"
        );
    }

    let resp = get("str").await;
    assert_eq!(resp.status.as_u16(), 200);
    assert_eq!(
        resp.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        resp.text(),
        "hello text",
        "a string is sent as is, not as JSON"
    );

    let resp = get("none").await;
    assert_eq!(resp.status.as_u16(), 204);
    assert!(resp.body.is_empty());
    assert!(resp.header("x-kumo-invocation-id").is_some());

    // Through the API the same values come back as the run's output.
    let run = server
        .invoke("core", "returns", json!({"query": {"kind": "none"}}))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["output"], Value::Null);
    let run = server
        .invoke("core", "returns", json!({"query": {"kind": "str"}}))
        .await;
    assert_eq!(run["output"], "hello text");
}

#[tokio::test]
async fn http_event_has_method_path_query_headers_and_body() {
    let server = TestServer::start().await;
    let code = py(r#"
        def handler(event):
            return {"event": event}
    "#);
    server
        .deploy("core", "echo", &[("main.py", &code)], json!({}))
        .await;

    let resp = server
        .send(
            server
                .public(Method::POST, "/fn/core/echo/a/b?x=1&y=two%20words&x=3")
                .header("X-Custom-Header", "Some Value")
                .header("content-type", "text/plain")
                .body("hello body"),
        )
        .await;
    let event = resp.expect_status(200)["event"].clone();
    assert_eq!(event["method"], "POST", "{event}");
    assert_eq!(event["path"], "/a/b", "{event}");
    assert_eq!(
        event["query"],
        json!({"x": "1,3", "y": "two words"}),
        "{event}"
    );
    assert_eq!(event["headers"]["x-custom-header"], "Some Value", "{event}");
    assert_eq!(event["headers"]["content-type"], "text/plain", "{event}");
    let headers = event["headers"].as_object().expect("headers object");
    assert!(
        headers.keys().all(|k| *k == k.to_lowercase()),
        "header names are lower-cased: {headers:?}"
    );
    assert_eq!(event["body"], "hello body", "{event}");
    assert_eq!(event["isBase64Encoded"], false, "{event}");
    assert!(event["params"].is_object(), "{event}");

    for (path, expected) in [("/fn/core/echo", "/"), ("/fn/core/echo/", "/")] {
        let resp = server.send(server.public(Method::GET, path)).await;
        let event = resp.expect_status(200)["event"].clone();
        assert_eq!(event["path"], expected, "GET {path}: {event}");
        assert_eq!(event["method"], "GET");
        assert_eq!(event["body"], "");
        assert_eq!(event["query"], json!({}));
    }

    let resp = server
        .send(
            server
                .public(Method::PUT, "/fn/core/echo/bin")
                .header("content-type", "application/octet-stream")
                .body(vec![0xff_u8, 0xfe, 0x00, 0x80]),
        )
        .await;
    let event = resp.expect_status(200)["event"].clone();
    assert_eq!(event["method"], "PUT");
    assert_eq!(event["isBase64Encoded"], true, "{event}");
    assert_eq!(event["body"], "//4AgA==", "{event}");
}

#[tokio::test]
async fn gateway_responses_name_their_run() {
    let server = TestServer::start().await;
    let code = py(r#"
        def handler(event):
            if event["query"].get("fail"):
                raise RuntimeError("nope")
            return "ok"
    "#);
    server
        .deploy("core", "named", &[("main.py", &code)], json!({}))
        .await;

    let ok = server
        .send(server.public(Method::GET, "/fn/core/named"))
        .await;
    assert_eq!(ok.expect_ok_text(), "ok");
    let ok_id = ok
        .header("x-kumo-invocation-id")
        .expect("x-kumo-invocation-id on a success");
    let failed = server
        .send(server.public(Method::GET, "/fn/core/named?fail=1"))
        .await;
    assert_eq!(failed.status.as_u16(), 500);
    let failed_id = failed
        .header("x-kumo-invocation-id")
        .expect("x-kumo-invocation-id on a failure");
    assert_ne!(ok_id, failed_id);

    // Asked for the moment the answer is in, the run is found: no polling.
    for (id, status) in [(ok_id, "succeeded"), (failed_id, "failed")] {
        let resp = server.get(&format!("/api/v1/invocations/{id}")).await;
        assert_eq!(resp.status.as_u16(), 200, "{}", resp.text());
        let record = resp.json();
        assert_eq!(record["id"], id.as_str());
        assert_eq!(record["trigger"], "http", "{record}");
        assert_eq!(record["status"], status, "{record}");
        assert_eq!(record["function"], "named");
        assert_eq!(record["input"]["method"], "GET", "{record}");
    }
}

#[tokio::test]
async fn exception_fails_the_run_and_hides_the_traceback_from_callers() {
    let server = TestServer::start().await;
    let code = py(r#"
        def explode(n):
            raise ValueError("secret detail %d" % n)

        def handler(event):
            print("before the failure")
            return explode(41 + 1)
    "#);
    server
        .deploy("core", "boom", &[("main.py", &code)], json!({}))
        .await;

    let run = server.invoke("core", "boom", json!({})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["output"], Value::Null, "{run}");
    assert_eq!(run["error"]["type"], "ValueError", "{run}");
    assert_eq!(run["error"]["message"], "secret detail 42", "{run}");
    let traceback = run["error"]["traceback"].as_str().expect("traceback");
    for needle in [
        "Traceback",
        "main.py\", line 2, in explode",
        "raise ValueError(\"secret detail %d\" % n)",
        "main.py\", line 6, in handler",
        "ValueError: secret detail 42",
    ] {
        assert!(
            traceback.contains(needle),
            "traceback lacks {needle:?}:\n{traceback}"
        );
    }
    assert!(
        !traceback.contains("kumo_runner"),
        "the runner's own frames are not shown:\n{traceback}"
    );
    assert!(
        run["logs"]
            .as_str()
            .is_some_and(|l| l.contains("before the failure")),
        "{run}"
    );

    let id = run["id"].as_str().expect("id");
    let record = server.run_record(id, Duration::from_secs(2)).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error"], run["error"], "the record keeps the error");

    let resp = server
        .send(server.public(Method::POST, "/fn/core/boom").body("{}"))
        .await;
    let message = resp.expect_error(500, "function_error");
    let body = resp.json();
    let header_id = resp
        .header("x-kumo-invocation-id")
        .expect("invocation header");
    assert_eq!(body["error"]["invocation_id"], header_id.as_str(), "{body}");
    assert!(message.contains(&header_id), "{message}");
    let text = resp.text();
    for secret in [
        "Traceback",
        "secret detail",
        "ValueError",
        "main.py",
        "explode",
    ] {
        assert!(
            !text.contains(secret),
            "a public caller must not see {secret:?}: {text}"
        );
    }
    // The owner still sees everything.
    let record = server.run_record(&header_id, Duration::from_secs(2)).await;
    assert_eq!(record["error"]["type"], "ValueError", "{record}");
}

#[tokio::test]
async fn warm_instance_keeps_module_state() {
    let server = TestServer::start().await;
    server
        .deploy("core", "counter", &[("main.py", &py(COUNTER))], json!({}))
        .await;

    let mut seen = Vec::new();
    for _ in 0..3 {
        let run = server.invoke("core", "counter", json!({})).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        seen.push((run["output"]["count"].clone(), run["cold_start"].clone()));
    }
    assert_eq!(
        seen,
        [
            (json!(1), json!(true)),
            (json!(2), json!(false)),
            (json!(3), json!(false))
        ]
    );
    // The gateway uses the same warm instance.
    let resp = server
        .send(server.public(Method::GET, "/fn/core/counter"))
        .await;
    assert_eq!(resp.expect_status(200), json!({"count": 4}));
    assert_eq!(server.metric("kumo_cold_starts_total").await, 1.0);
    assert_eq!(server.metric("kumo_instances").await, 1.0);
}

#[tokio::test]
async fn idle_instance_scales_to_zero_and_wakes_cold() {
    let server = TestServer::start_with(&["--keep-alive-ms", "300"]).await;
    server
        .deploy("core", "counter", &[("main.py", &py(COUNTER))], json!({}))
        .await;

    let first = server.invoke("core", "counter", json!({})).await;
    assert_eq!(first["cold_start"], true, "{first}");
    assert_eq!(first["output"]["count"], 1, "{first}");

    wait_for(
        "the idle instance to be stopped",
        Duration::from_secs(5),
        async || (server.metric("kumo_instances").await == 0.0).then_some(()),
    )
    .await;

    let woken = server.invoke("core", "counter", json!({})).await;
    assert_eq!(woken["cold_start"], true, "{woken}");
    assert_eq!(
        woken["output"]["count"], 1,
        "a new instance starts with fresh module state: {woken}"
    );
    assert_eq!(server.metric("kumo_cold_starts_total").await, 2.0);
}

#[tokio::test]
async fn syntax_error_is_refused_and_the_old_version_keeps_serving() {
    let server = TestServer::start().await;
    let good = py(r#"
        def handler(event):
            return "v1"
    "#);
    server
        .deploy("core", "stable", &[("main.py", &good)], json!({}))
        .await;

    let broken = py(r#"
        def handler(event):
            return "v2"

        def oops(:
            pass
    "#);
    let resp = server
        .try_deploy("core", "stable", &[("main.py", &broken)], json!({}))
        .await;
    let message = resp.expect_error(400, "syntax_error");
    assert!(
        message.contains("main.py") && message.contains("line 4"),
        "the message names the file and line: {message}"
    );
    // The place is given as data too, for editors to mark.
    let body = resp.json();
    assert_eq!(body["error"]["location"]["file"], "main.py", "{body}");
    assert_eq!(body["error"]["location"]["line"], 4, "{body}");

    // A broken helper module is named too.
    let resp = server
        .try_deploy(
            "core",
            "stable",
            &[("main.py", &good), ("lib/helper.py", "x = 1\ny = (\n")],
            json!({}),
        )
        .await;
    let message = resp.expect_error(400, "syntax_error");
    assert!(message.contains("lib/helper.py"), "{message}");
    assert_eq!(
        resp.json()["error"]["location"]["file"],
        "lib/helper.py",
        "{message}"
    );

    let run = server.invoke("core", "stable", json!({})).await;
    assert_eq!(run["output"], "v1", "{run}");
    assert_eq!(run["version"], 1, "{run}");
    let resp = server
        .send(server.public(Method::GET, "/fn/core/stable"))
        .await;
    assert_eq!(resp.expect_ok_text(), "v1");
    let versions = server
        .get("/api/v1/projects/core/functions/stable/deployments")
        .await
        .expect_status(200);
    assert_eq!(
        versions["items"].as_array().map(Vec::len),
        Some(1),
        "a refused deploy makes no version: {versions}"
    );
}

#[tokio::test]
async fn rollback_and_roll_forward_move_the_active_version() {
    let server = TestServer::start().await;
    let source = |v: &str| py(&format!("def handler(event):\n    return \"{v}\"\n"));
    let v1 = server
        .deploy(
            "core",
            "versions",
            &[("main.py", &source("one"))],
            json!({}),
        )
        .await;
    assert_eq!(v1["version"], 1, "{v1}");
    let v2 = server
        .deploy(
            "core",
            "versions",
            &[("main.py", &source("two"))],
            json!({}),
        )
        .await;
    assert_eq!(v2["version"], 2, "{v2}");
    assert_ne!(v1["content_hash"], v2["content_hash"]);

    // The same code again makes no new version.
    let same = server
        .try_deploy(
            "core",
            "versions",
            &[("main.py", &source("two"))],
            json!({}),
        )
        .await
        .expect_status(200);
    assert_eq!(same["status"], "unchanged", "{same}");
    assert_eq!(same["version"], 2, "{same}");

    let call = async || {
        server
            .send(server.public(Method::GET, "/fn/core/versions"))
            .await
            .expect_ok_text()
    };
    assert_eq!(call().await, "two");

    let function = server
        .call(
            Method::POST,
            "/api/v1/projects/core/functions/versions/deployments/1/activate",
            None,
        )
        .await
        .expect_status(200);
    assert_eq!(function["active_version"], 1, "{function}");
    assert_eq!(call().await, "one");
    let run = server.invoke("core", "versions", json!({})).await;
    assert_eq!(
        (&run["output"], &run["version"]),
        (&json!("one"), &json!(1))
    );

    let list = server
        .get("/api/v1/projects/core/functions/versions/deployments")
        .await
        .expect_status(200);
    let items = list["items"].as_array().expect("items");
    let flags: Vec<(i64, bool)> = items
        .iter()
        .map(|d| {
            (
                d["version"].as_i64().expect("version"),
                d["active"].as_bool().expect("active"),
            )
        })
        .collect();
    assert_eq!(flags, [(2, false), (1, true)], "{list}");
    assert_eq!(list["next"], Value::Null);

    let function = server
        .get("/api/v1/projects/core/functions/versions")
        .await
        .expect_status(200);
    assert_eq!(function["active_version"], 1, "{function}");

    server
        .call(
            Method::POST,
            "/api/v1/projects/core/functions/versions/deployments/2/activate",
            None,
        )
        .await
        .expect_status(200);
    assert_eq!(call().await, "two");

    let resp = server
        .call(
            Method::POST,
            "/api/v1/projects/core/functions/versions/deployments/9/activate",
            None,
        )
        .await;
    resp.expect_error(404, "not_found");
    assert_eq!(call().await, "two", "a failed activation changes nothing");
}

#[tokio::test]
async fn tar_gz_deploy_imports_local_modules() {
    let server = TestServer::start().await;
    let archive = tar_gz(|b| {
        tar_file(
            b,
            "main.py",
            &py(r#"
                from helpers import greet
                from pkg.util import shout

                def handler(event):
                    return shout(greet(event.get("name", "world")))
            "#),
        );
        tar_file(
            b,
            "helpers.py",
            "def greet(name):\n    return 'hello, ' + name\n",
        );
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o755);
        dir.set_size(0);
        b.append_data(&mut dir, "pkg/", std::io::empty())
            .expect("adding a directory");
        tar_file(b, "pkg/__init__.py", "");
        tar_file(
            b,
            "pkg/util.py",
            "def shout(s):\n    return s.upper() + '!'\n",
        );
        tar_file(b, "data/readme.txt", "not python\n");
    });
    let resp = server
        .deploy_tar_gz(
            "core",
            "bundle",
            archive,
            "entrypoint=main.py&handler=handler&timeout_ms=3000",
        )
        .await;
    let deployed = resp.expect_status(201);
    assert_eq!(deployed["version"], 1, "{deployed}");

    let run = server
        .invoke("core", "bundle", json!({"name": "kumo"}))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["output"], "HELLO, KUMO!");

    let list = server
        .get("/api/v1/projects/core/functions/bundle/deployments")
        .await
        .expect_status(200);
    assert_eq!(list["items"][0]["file_count"], 5, "{list}");
    let function = server
        .get("/api/v1/projects/core/functions/bundle")
        .await
        .expect_status(200);
    assert_eq!(
        function["timeout_ms"], 3000,
        "query settings apply: {function}"
    );
}

#[tokio::test]
async fn tar_gz_with_a_link_or_an_escaping_path_is_refused() {
    let server = TestServer::start().await;
    let with_link = tar_gz(|b| {
        tar_file(b, "main.py", "def handler(event):\n    return 1\n");
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        b.append_link(&mut header, "passwd.py", "/etc/passwd")
            .expect("adding a link");
    });
    let resp = server
        .deploy_tar_gz("core", "evil", with_link, "entrypoint=main.py")
        .await;
    let message = resp.expect_error(400, "invalid_files");
    assert!(message.contains("symbolic link"), "{message}");

    let escaping = tar_gz_with_raw_name("../escape.py", b"def handler(event):\n    return 1\n");
    let resp = server
        .deploy_tar_gz("core", "evil", escaping, "entrypoint=main.py")
        .await;
    let message = resp.expect_error(400, "invalid_files");
    assert!(message.contains(".."), "{message}");

    let resp = server
        .deploy_tar_gz("core", "evil", b"not an archive".to_vec(), "")
        .await;
    resp.expect_error(400, "invalid_files");

    // Nothing was created by the refused uploads.
    server
        .get("/api/v1/projects/core")
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn runs_are_recorded_quickly_and_paginate() {
    let server = TestServer::start().await;
    server
        .deploy("core", "counter", &[("main.py", &py(COUNTER))], json!({}))
        .await;

    let mut ids = BTreeSet::new();
    for i in 0..5 {
        let event = json!({"i": i});
        let run = server.invoke("core", "counter", event.clone()).await;
        let id = run["id"].as_str().expect("id").to_string();
        let record = server.run_record(&id, Duration::from_secs(1)).await;
        assert_eq!(record["status"], "succeeded", "{record}");
        assert_eq!(record["trigger"], "api", "{record}");
        assert_eq!(record["input"], event, "{record}");
        assert_eq!(record["output"], run["output"], "{record}");
        assert_eq!(record["version"], 1, "{record}");
        assert_eq!(record["project"], "core");
        assert_eq!(record["cold_start"], i == 0, "{record}");
        assert!(record["finished_at"].is_i64(), "{record}");
        ids.insert(id);
    }

    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let mut path = "/api/v1/projects/core/functions/counter/invocations?limit=2".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = server.get(&path).await.expect_status(200);
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2, "limit=2 honoured: {page}");
        pages.push(items.len());
        listed.extend(
            items
                .iter()
                .map(|r| r["id"].as_str().expect("id").to_string()),
        );
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        assert!(pages.len() < 10, "pagination does not end: {pages:?}");
    }
    assert_eq!(pages, [2, 2, 1]);
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "no run twice: {listed:?}");
    assert_eq!(unique, ids);
    let mut newest_first = listed.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(listed, newest_first, "newest first");
}

#[tokio::test]
async fn async_invoke_is_queued_then_recorded_and_runs_replay() {
    let server = TestServer::start().await;
    let code = py(r#"
        def handler(event, context):
            return {"doubled": event["n"] * 2, "run": context.request_id}
    "#);
    server
        .deploy("core", "twice", &[("main.py", &code)], json!({}))
        .await;

    let accepted = server
        .call(
            Method::POST,
            "/api/v1/projects/core/functions/twice/invoke?async=true",
            Some(json!({"n": 21})),
        )
        .await
        .expect_status(202);
    assert_eq!(accepted["status"], "queued", "{accepted}");
    let id = accepted["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/invocations/{id}");
    let record = wait_for(
        "the async run to finish",
        Duration::from_secs(5),
        async || {
            let record = server.get(&path).await.expect_status(200);
            (record["status"] != "queued" && record["status"] != "running").then_some(record)
        },
    )
    .await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["trigger"], "async", "{record}");
    assert_eq!(
        record["output"],
        json!({"doubled": 42, "run": id}),
        "{record}"
    );

    let replayed = server
        .call(
            Method::POST,
            &format!("/api/v1/invocations/{id}/replay"),
            None,
        )
        .await
        .expect_status(200);
    assert_eq!(replayed["status"], "succeeded", "{replayed}");
    assert_ne!(replayed["id"], id.as_str(), "a replay is a new run");
    assert_eq!(replayed["output"]["doubled"], 42, "same input: {replayed}");
    let record = server
        .run_record(replayed["id"].as_str().expect("id"), Duration::from_secs(2))
        .await;
    assert_eq!(record["trigger"], "replay", "{record}");
    assert_eq!(record["input"], json!({"n": 21}), "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_projects_functions_versions_and_runs() {
    let mut server = TestServer::start().await;
    assert!(
        server
            .banner
            .iter()
            .any(|l| l.contains("created the admin account")),
        "{:?}",
        server.banner
    );
    server
        .deploy(
            "keep",
            "counter",
            &[("main.py", &py(COUNTER))],
            json!({"timeout_ms": 7000, "concurrency": 3}),
        )
        .await;
    let v2 = format!("{}\n# version two\n", py(COUNTER));
    server
        .deploy("keep", "counter", &[("main.py", &v2)], json!({}))
        .await;
    let mut ids = BTreeSet::new();
    for _ in 0..3 {
        let run = server.invoke("keep", "counter", json!({})).await;
        ids.insert(run["id"].as_str().expect("id").to_string());
    }
    let resp = server
        .send(server.public(Method::GET, "/fn/keep/counter"))
        .await;
    assert_eq!(resp.expect_status(200), json!({"count": 4}));
    ids.insert(resp.header("x-kumo-invocation-id").expect("id header"));
    for id in &ids {
        server.run_record(id, Duration::from_secs(2)).await;
    }

    server.restart().await;
    assert!(
        !server
            .banner
            .iter()
            .any(|l| l.contains("admin") || l.contains("password")),
        "a restart must not create the admin again: {:?}",
        server.banner
    );

    let me = server.get("/api/v1/me").await.expect_status(200);
    assert_eq!(
        me["username"], "admin",
        "the bootstrap token survives: {me}"
    );
    let projects = server.get("/api/v1/projects").await.expect_status(200);
    assert!(
        projects["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|p| p["name"] == "keep"),
        "{projects}"
    );
    let functions = server
        .get("/api/v1/projects/keep/functions")
        .await
        .expect_status(200);
    let function = &functions["items"][0];
    assert_eq!(function["name"], "counter", "{functions}");
    assert_eq!(function["active_version"], 2, "{functions}");
    assert_eq!(function["timeout_ms"], 7000, "{functions}");
    assert_eq!(function["concurrency"], 3, "{functions}");
    let versions = server
        .get("/api/v1/projects/keep/functions/counter/deployments")
        .await
        .expect_status(200);
    assert_eq!(
        versions["items"].as_array().map(Vec::len),
        Some(2),
        "{versions}"
    );
    let runs = server
        .get("/api/v1/projects/keep/functions/counter/invocations")
        .await
        .expect_status(200);
    let listed: BTreeSet<String> = runs["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(listed, ids, "every run survives the restart");
    for id in &ids {
        let record = server.get(&format!("/api/v1/invocations/{id}")).await;
        assert_eq!(record.expect_status(200)["status"], "succeeded");
    }

    let run = server.invoke("keep", "counter", json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["version"], 2, "{run}");
    assert_eq!(run["cold_start"], true, "instances do not survive: {run}");
    assert_eq!(run["output"]["count"], 1, "{run}");
    let resp = server
        .send(server.public(Method::GET, "/fn/keep/counter"))
        .await;
    assert_eq!(resp.expect_status(200), json!({"count": 2}));
}

/// Regression: a SIGTERM that comes right after the listening line killed
/// the server by the signal's default action (status "signal 15", not 0):
/// the handler was only installed once the server first polled its
/// shutdown future, after it had announced that it was listening.
#[tokio::test]
async fn sigterm_right_after_start_is_a_clean_shutdown() {
    let mut server = TestServer::start().await;
    for _ in 0..3 {
        // `restart` sends SIGTERM as soon as it has read the listening line,
        // and fails unless the exit status is 0.
        server.restart().await;
    }
    let me = server.get("/api/v1/me").await.expect_status(200);
    assert_eq!(me["username"], "admin");
}

/// Each run's logs hold what that call printed, whole, and nothing of
/// another call: from Python's own streams, from a raw write to the
/// descriptor, and from a subprocess, over many warm calls in a row.
#[tokio::test]
async fn every_warm_call_gets_exactly_its_own_output() {
    let server = TestServer::start().await;
    let code = r#"
import os, subprocess, sys

def handler(event):
    n = event["n"]
    if n % 3 == 0:
        print("call %d via print" % n)
    elif n % 3 == 1:
        os.write(1, b"call %d via fd 1\n" % n)
        sys.stderr.write("call %d via stderr\n" % n)
    elif n % 30 == 2:
        subprocess.run(["/usr/bin/python3.11", "-c", "print('call %d via a child')" % n])
    return n
"#;
    server
        .deploy("core", "echo", &[("main.py", code)], json!({}))
        .await;
    for n in 0..150u64 {
        let run = server.invoke("core", "echo", json!({"n": n})).await;
        assert_eq!(run["output"], n, "{run}");
        let expected = match n % 3 {
            0 => format!("call {n} via print\n"),
            1 => format!("call {n} via fd 1\ncall {n} via stderr\n"),
            _ if n % 30 == 2 => format!("call {n} via a child\n"),
            _ => String::new(),
        };
        let logs = run["logs"].as_str().expect("logs");
        if n % 3 == 1 {
            // Two pipes: the order across them is not defined.
            let mut got: Vec<&str> = logs.lines().collect();
            got.sort_unstable();
            let mut want: Vec<&str> = expected.lines().collect();
            want.sort_unstable();
            assert_eq!(got, want, "call {n}: {run}");
        } else {
            assert_eq!(logs, expected, "call {n}: {run}");
        }
    }
}

/// The code is loaded once, in a sandbox, when it is deployed: an import
/// that fails, a missing handler, or an exit at import is refused with the
/// error and where it happened, and the active version keeps serving.
#[tokio::test]
async fn code_that_fails_to_load_is_refused_at_deploy() {
    let server = TestServer::start().await;
    server
        .deploy(
            "core",
            "loads",
            &[("main.py", "def handler(event):\n    return 'v1'\n")],
            json!({}),
        )
        .await;
    /// Files, the error type, and what the message must name.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a [&'a str]);
    let cases: &[Case] = &[
        (
            &[("main.py", "def handle(event):\n    return 1\n")],
            "HandlerNotFound",
            &["has no attribute 'handler'"],
        ),
        (
            &[
                (
                    "main.py",
                    "import helper\n\ndef handler(event):\n    return 1\n",
                ),
                ("helper.py", "SETTINGS = {}\nTOKEN = SETTINGS['token']\n"),
            ],
            "KeyError",
            &["'token'", "helper.py, line 2"],
        ),
        (
            &[("main.py", "import requests_that_are_not_here\n")],
            "ModuleNotFoundError",
            &["requests_that_are_not_here", "main.py, line 1"],
        ),
        (
            &[("main.py", "import sys\nsys.exit(3)\n")],
            "SystemExit",
            &["main.py, line 2"],
        ),
        (
            &[("main.py", "handler = 42\n")],
            "HandlerNotCallable",
            &["not callable"],
        ),
    ];
    for (files, kind, needles) in cases {
        let resp = server.try_deploy("core", "loads", files, json!({})).await;
        let message = resp.expect_error(400, "load_error");
        assert!(message.contains(kind), "{kind}: {message}");
        for needle in *needles {
            assert!(message.contains(needle), "{needle}: {message}");
        }
    }
    let run = server.invoke("core", "loads", json!({})).await;
    assert_eq!(run["output"], "v1", "the first version still serves: {run}");
    assert_eq!(run["version"], 1, "{run}");
}
