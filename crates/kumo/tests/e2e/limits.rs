//! Limits and failure paths: concurrency and back-pressure, timeouts,
//! crashing and misbehaving handlers, the log cap, the body cap. After
//! each failure the function must keep serving.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestServer, py};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_the_concurrency_limit_get_429_with_retry_after() {
    let server = TestServer::start_with(&["--queue-timeout-ms", "200"]).await;
    let code = py(r#"
        import time

        def handler(event):
            time.sleep(1.5)
            return "done"
    "#);
    server
        .deploy(
            "lim",
            "slow",
            &[("main.py", &code)],
            json!({"concurrency": 2}),
        )
        .await;

    let calls = (0..4).map(|_| async {
        let started = Instant::now();
        let resp = server
            .send(server.public(Method::POST, "/fn/lim/slow").body("{}"))
            .await;
        (resp, started.elapsed())
    });
    let results = futures::future::join_all(calls).await;

    let mut ok = 0;
    let mut throttled = 0;
    for (resp, elapsed) in &results {
        match resp.status.as_u16() {
            200 => {
                assert_eq!(resp.text(), "done");
                assert!(
                    *elapsed >= Duration::from_millis(1500),
                    "a call that ran took {elapsed:?}"
                );
                ok += 1;
            }
            429 => {
                let message = resp.expect_error(429, "too_many_requests");
                assert!(message.contains("concurrency limit of 2"), "{message}");
                let retry_after: u64 = resp
                    .header("retry-after")
                    .expect("429 carries Retry-After")
                    .parse()
                    .expect("Retry-After is a number of seconds");
                assert!(retry_after >= 1, "Retry-After: {retry_after}");
                assert!(
                    *elapsed < Duration::from_millis(1500),
                    "a refused call waits for the queue timeout, not for a slot: {elapsed:?}"
                );
                throttled += 1;
            }
            other => panic!("unexpected {other}: {}", resp.text()),
        }
    }
    assert_eq!((ok, throttled), (2, 2), "exactly the limit runs at once");
    assert_eq!(server.metric("kumo_throttled_total").await, 2.0);

    // Once the slots are free again, calls go through.
    let resp = server
        .send(server.public(Method::POST, "/fn/lim/slow").body("{}"))
        .await;
    assert_eq!(resp.expect_ok_text(), "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_ends_the_run_and_the_next_call_gets_a_fresh_instance() {
    let server = TestServer::start().await;
    let code = py(r#"
        import time

        def handler(event):
            query = event.get("query") or {}
            if event.get("sleep") or query.get("sleep"):
                time.sleep(5)
            return "awake"
    "#);
    server
        .deploy(
            "lim",
            "sleepy",
            &[("main.py", &code)],
            json!({"timeout_ms": 500}),
        )
        .await;

    let warm = server.invoke("lim", "sleepy", json!({})).await;
    assert_eq!(warm["output"], "awake", "{warm}");

    let started = Instant::now();
    let run = server.invoke("lim", "sleepy", json!({"sleep": true})).await;
    let elapsed = started.elapsed();
    assert_eq!(run["status"], "timed_out", "{run}");
    assert_eq!(run["error"]["type"], "Timeout", "{run}");
    assert!(
        run["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("500 ms")),
        "{run}"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "the call was cut at its timeout, not after 5 s: {elapsed:?}"
    );
    let duration = run["duration_ms"].as_f64().expect("duration_ms");
    assert!(
        (500.0..4000.0).contains(&duration),
        "duration_ms {duration}"
    );

    let next = server.invoke("lim", "sleepy", json!({})).await;
    assert_eq!(next["status"], "succeeded", "{next}");
    assert_eq!(next["output"], "awake");
    assert_eq!(
        next["cold_start"], true,
        "the timed-out instance was replaced: {next}"
    );

    let resp = server
        .send(server.public(Method::GET, "/fn/lim/sleepy?sleep=1"))
        .await;
    let message = resp.expect_error(504, "function_timeout");
    assert!(message.contains("timeout"), "{message}");
    let id = resp
        .header("x-kumo-invocation-id")
        .expect("a timeout names its run");
    let record = server.run_record(&id, Duration::from_secs(2)).await;
    assert_eq!(record["status"], "timed_out", "{record}");

    let resp = server
        .send(server.public(Method::GET, "/fn/lim/sleepy"))
        .await;
    assert_eq!(resp.expect_ok_text(), "awake");
}

#[tokio::test]
async fn exiting_handler_is_a_crashed_run_and_the_function_recovers() {
    let server = TestServer::start().await;
    let code = py(r#"
        import os

        count = 0

        def handler(event):
            global count
            count += 1
            if event.get("exit"):
                print("about to exit", flush=True)
                os._exit(3)
            return {"count": count}
    "#);
    server
        .deploy("lim", "quitter", &[("main.py", &code)], json!({}))
        .await;

    let first = server.invoke("lim", "quitter", json!({})).await;
    assert_eq!(
        (&first["output"]["count"], &first["cold_start"]),
        (&json!(1), &json!(true))
    );

    let run = server.invoke("lim", "quitter", json!({"exit": true})).await;
    assert_eq!(run["status"], "crashed", "{run}");
    assert_eq!(run["output"], Value::Null);
    let message = run["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("exited") && message.contains("code 3"),
        "a clear message: {message}"
    );
    assert!(
        run["logs"]
            .as_str()
            .is_some_and(|l| l.contains("about to exit")),
        "output before the exit is kept: {run}"
    );
    let record = server
        .run_record(run["id"].as_str().expect("id"), Duration::from_secs(2))
        .await;
    assert_eq!(record["status"], "crashed", "{record}");

    let next = server.invoke("lim", "quitter", json!({})).await;
    assert_eq!(next["status"], "succeeded", "{next}");
    assert_eq!(next["cold_start"], true, "{next}");
    assert_eq!(next["output"]["count"], 1, "{next}");

    let resp = server
        .send(server.public(Method::POST, "/fn/lim/quitter").body("x"))
        .await;
    assert_eq!(resp.expect_status(200)["count"], 2);
}

#[tokio::test]
async fn unserializable_return_value_fails_the_run() {
    let server = TestServer::start().await;
    let code = py(r#"
        def handler(event):
            if event.get("ok"):
                return "fine"
            return {1, 2, 3}
    "#);
    server
        .deploy("lim", "setter", &[("main.py", &code)], json!({}))
        .await;

    let run = server.invoke("lim", "setter", json!({})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["type"], "SerializationError", "{run}");
    assert!(
        run["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("set")),
        "the message says what could not be sent: {run}"
    );

    let resp = server
        .send(server.public(Method::GET, "/fn/lim/setter"))
        .await;
    let text = resp.text();
    resp.expect_error(500, "function_error");
    assert!(!text.contains("SerializationError"), "{text}");

    let run = server.invoke("lim", "setter", json!({"ok": true})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["cold_start"], false,
        "a failed call keeps the instance: {run}"
    );
    assert_eq!(run["output"], "fine");
}

#[tokio::test]
async fn huge_output_is_truncated_and_the_call_still_returns() {
    let server = TestServer::start().await;
    let code = py(r#"
        import sys

        def handler(event):
            if event.get("quiet"):
                print("a quiet call")
                return "quiet"
            print("first line")
            sys.stdout.write("x" * (1024 * 1024) + "\n")
            print("last line")
            return {"printed": 1024 * 1024}
    "#);
    server
        .deploy("lim", "chatty", &[("main.py", &code)], json!({}))
        .await;

    let started = Instant::now();
    let run = server.invoke("lim", "chatty", json!({})).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(run["status"], "succeeded", "{}", run["error"]);
    assert_eq!(run["output"], json!({"printed": 1024 * 1024}));
    let logs = run["logs"].as_str().expect("logs");
    assert!(logs.starts_with("first line\nxxxx"), "{}", &logs[..40]);
    assert!(
        logs.contains("[kumo: logs truncated"),
        "the marker is there: ...{}",
        &logs[logs.len().saturating_sub(200)..]
    );
    assert!(
        logs.len() <= 256 * 1024 + 100,
        "logs are capped at 256 KiB, got {} bytes",
        logs.len()
    );
    assert!(!logs.contains("last line"));

    let record = server
        .run_record(run["id"].as_str().expect("id"), Duration::from_secs(2))
        .await;
    assert_eq!(record["logs_truncated"], true, "{}", record["id"]);
    assert_eq!(record["logs"].as_str().map(str::len), Some(logs.len()));

    // The next call's logs are its own: nothing of the flood spills over.
    let quiet = server.invoke("lim", "chatty", json!({"quiet": true})).await;
    assert_eq!(quiet["output"], "quiet");
    assert_eq!(quiet["cold_start"], false);
    assert_eq!(quiet["logs"], "a quiet call\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_6_mib_get_413() {
    let server = TestServer::start().await;
    let code = py(r#"
        def handler(event):
            mib = event.get("respond_mib") or int((event.get("query") or {}).get("respond_mib", 0))
            if mib:
                return "r" * (mib * 1024 * 1024)
            body = event.get("body", event.get("data", ""))
            return len(body)
    "#);
    server
        .deploy("lim", "sized", &[("main.py", &code)], json!({}))
        .await;

    let seven_mib = "a".repeat(7 * 1024 * 1024);
    let resp = server
        .send(
            server
                .public(Method::POST, "/fn/lim/sized")
                .body(seven_mib.clone()),
        )
        .await;
    let message = resp.expect_error(413, "payload_too_large");
    assert!(message.contains("6 MiB"), "{message}");

    let resp = server
        .try_invoke("lim", "sized", json!({"data": seven_mib}))
        .await;
    resp.expect_error(413, "payload_too_large");

    // Just under the limit is fine, both ways.
    let five_mib = "b".repeat(5 * 1024 * 1024);
    let resp = server
        .send(
            server
                .public(Method::POST, "/fn/lim/sized")
                .body(five_mib.clone()),
        )
        .await;
    assert_eq!(resp.expect_status(200), json!(5 * 1024 * 1024));
    let run = server
        .invoke("lim", "sized", json!({"data": five_mib}))
        .await;
    assert_eq!(run["output"], json!(5 * 1024 * 1024), "{}", run["error"]);

    // A response over the limit fails the run instead of being sent.
    let run = server
        .invoke("lim", "sized", json!({"respond_mib": 7}))
        .await;
    assert_eq!(run["status"], "failed", "{}", run["error"]);
    assert_eq!(run["error"]["type"], "ResponseTooLarge", "{}", run["error"]);
    assert_eq!(run["output"], Value::Null);
    let resp = server
        .send(server.public(Method::GET, "/fn/lim/sized?respond_mib=7"))
        .await;
    resp.expect_error(500, "function_error");
    assert!(resp.body.len() < 1024, "the oversized body is not sent");
}

/// Per-function sandbox limits: processes and threads, /tmp size and CPU
/// are the function's own, within the server's caps, and enforced.
#[tokio::test]
async fn per_function_pids_and_tmp_limits_are_enforced() {
    let server = TestServer::start().await;
    let code = py(r#"
        import errno, threading, time

        def handler(event):
            started = 0
            try:
                for _ in range(64):
                    threading.Thread(target=time.sleep, args=(1,), daemon=True).start()
                    started += 1
            except RuntimeError:
                pass
            written = 0
            err = None
            try:
                with open("/tmp/fill", "wb") as f:
                    for _ in range(8):
                        f.write(b"x" * (1024 * 1024))
                        f.flush()
                        written += 1
            except OSError as e:
                err = errno.errorcode.get(e.errno, str(e.errno))
            return {"threads": started, "written_mib": written, "error": err}
    "#);
    server
        .deploy(
            "lim",
            "small",
            &[("main.py", &code)],
            json!({"pids": 16, "tmp_mb": 2, "cpu_millicores": 500}),
        )
        .await;
    let function = server
        .get("/api/v1/projects/lim/functions/small")
        .await
        .expect_status(200);
    assert_eq!(function["pids"], 16, "{function}");
    assert_eq!(function["tmp_mb"], 2, "{function}");
    assert_eq!(function["cpu_millicores"], 500, "{function}");

    let run = server.invoke("lim", "small", json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let threads = run["output"]["threads"].as_u64().expect("threads");
    assert!(threads < 16, "the pids limit stopped the threads: {run}");
    let written = run["output"]["written_mib"].as_u64().expect("written");
    assert!(written <= 2, "the /tmp limit stopped the writes: {run}");
    assert!(
        matches!(run["output"]["error"].as_str(), Some("ENOSPC" | "EFBIG")),
        "{run}"
    );

    // Out of the server's caps: refused, saying which setting.
    let resp = server
        .try_deploy("lim", "big", &[("main.py", &code)], json!({"pids": 100000}))
        .await;
    let message = resp.expect_error(400, "bad_request");
    assert!(message.contains("pids"), "{message}");
}
