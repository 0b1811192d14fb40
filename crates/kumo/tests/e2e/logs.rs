//! Logs: every line a call prints, with its stream and run, listed with
//! filters, followed live as server-sent events, resumed after a
//! reconnect with no gap and no repeat, and removed after their time.

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TOKEN, TestServer, py, wait_for};

const PRINTER: &str = r#"
import sys, time

def handler(event):
    for i in range(event.get("n", 3)):
        print("tick", i, flush=True)
        time.sleep(event.get("pause", 0))
    print("done", file=sys.stderr, flush=True)
    return "ok"
"#;

async fn lines(server: &TestServer, query: &str) -> Value {
    server
        .get(&format!(
            "/api/v1/projects/logs/functions/printer/logs{query}"
        ))
        .await
        .expect_status(200)
}

fn texts(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|l| l["line"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Lines come back in order with their stream and run; `run`, `limit`,
/// `after` and `since` select; bad parameters are a 400.
#[tokio::test]
async fn lines_are_listed_with_their_stream_and_run() {
    let server = TestServer::start().await;
    server
        .deploy("logs", "printer", &[("main.py", &py(PRINTER))], json!({}))
        .await;
    let first = server.invoke("logs", "printer", json!({"n": 3})).await;
    let second = server.invoke("logs", "printer", json!({"n": 2})).await;
    let all = lines(&server, "").await;
    assert_eq!(
        texts(&all),
        [
            "tick 0", "tick 1", "tick 2", "done", "tick 0", "tick 1", "done"
        ],
        "{all}"
    );
    let items = all["items"].as_array().expect("items");
    assert_eq!(items[0]["stream"], "stdout");
    assert_eq!(items[3]["stream"], "stderr");
    assert_eq!(items[0]["run_id"], first["id"]);
    assert_eq!(items[4]["run_id"], second["id"]);
    let ids: Vec<i64> = items.iter().filter_map(|l| l["id"].as_i64()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    let run = lines(
        &server,
        &format!("?run={}", second["id"].as_str().expect("id")),
    )
    .await;
    assert_eq!(texts(&run), ["tick 0", "tick 1", "done"]);
    let tail = lines(&server, "?limit=2").await;
    assert_eq!(texts(&tail), ["tick 1", "done"]);
    let after = lines(&server, &format!("?after={}", ids[4])).await;
    assert_eq!(texts(&after), ["tick 1", "done"]);
    assert_eq!(texts(&lines(&server, "?since=1h").await).len(), 7);
    for bad in [
        "?since=soon",
        "?limit=0",
        "?limit=9999",
        "?follow=true&limit=5",
        "?nope=1",
    ] {
        let resp = server
            .get(&format!(
                "/api/v1/projects/logs/functions/printer/logs{bad}"
            ))
            .await;
        assert_eq!(resp.status, 400, "{bad}: {}", resp.text());
    }
}

/// One server-sent event: its id and its line.
#[derive(Debug, Clone)]
struct LogEvent {
    id: i64,
    line: String,
}

/// Reads events from a follow stream until `until` says stop.
async fn read_events(
    response: reqwest::Response,
    mut until: impl FnMut(&[LogEvent]) -> bool,
) -> Vec<LogEvent> {
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !until(&events) {
        let chunk = tokio::time::timeout_at(deadline.into(), stream.next())
            .await
            .expect("events in time")
            .expect("the stream goes on")
            .expect("reading the stream");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut id = None;
            let mut data = None;
            for field in block.lines() {
                if let Some(v) = field.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = field.strip_prefix("data:") {
                    data = Some(v.trim().to_string());
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                let value: Value = serde_json::from_str(&data).expect("an event's data is JSON");
                assert_eq!(value["id"].as_i64(), Some(id), "{value}");
                events.push(LogEvent {
                    id,
                    line: value["line"].as_str().unwrap_or_default().to_string(),
                });
            }
        }
    }
    events
}

/// Following: lines of a call still running arrive as it prints them;
/// after a reconnect with `Last-Event-ID` the rest arrives, none twice and
/// none missing.
#[tokio::test]
async fn following_streams_a_running_call_and_resumes_without_gaps() {
    let server = TestServer::start().await;
    server
        .deploy(
            "logs",
            "printer",
            &[("main.py", &py(PRINTER))],
            json!({"timeout_ms": 20000}),
        )
        .await;
    server.invoke("logs", "printer", json!({"n": 1})).await;
    let client = reqwest::Client::new();
    let url = server.url("/api/v1/projects/logs/functions/printer/logs?follow=true");
    let follow = client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("following");
    assert_eq!(follow.status(), 200);
    assert!(
        follow
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream")),
        "{:?}",
        follow.headers()
    );

    let call = {
        let url = server.url("/api/v1/projects/logs/functions/printer/invoke");
        let client = client.clone();
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(TOKEN)
                .json(&json!({"n": 10, "pause": 0.15}))
                .send()
                .await
                .expect("the call")
                .json::<Value>()
                .await
                .expect("its answer")
        })
    };
    // The tail of what was there (the first call), then the live lines.
    let seen = read_events(follow, |events| events.iter().any(|e| e.line == "tick 4")).await;
    assert!(
        !call.is_finished(),
        "tick 4 arrived while the call was still running"
    );
    let before: Vec<&str> = seen.iter().map(|e| e.line.as_str()).collect();
    assert_eq!(
        before[..2],
        ["tick 0", "done"],
        "the tail first: {before:?}"
    );
    assert_eq!(
        before[2..],
        ["tick 0", "tick 1", "tick 2", "tick 3", "tick 4"],
        "{before:?}"
    );
    let last = seen.last().expect("events").id;

    // Reconnect from the last id seen.
    let resumed = client
        .get(&url)
        .bearer_auth(TOKEN)
        .header("last-event-id", last.to_string())
        .send()
        .await
        .expect("following again");
    let rest = read_events(resumed, |events| events.iter().any(|e| e.line == "done")).await;
    let after: Vec<&str> = rest.iter().map(|e| e.line.as_str()).collect();
    assert_eq!(
        after,
        ["tick 5", "tick 6", "tick 7", "tick 8", "tick 9", "done"],
        "no gap, no repeat"
    );
    assert!(rest.iter().all(|e| e.id > last));
    let answer = call.await.expect("the call task");
    assert_eq!(answer["status"], "succeeded", "{answer}");
}

/// Lines and run records older than their retention are removed in the
/// background.
#[tokio::test]
async fn old_lines_and_runs_are_removed() {
    let server =
        TestServer::start_with(&["--log-retention-secs", "2", "--run-retention-secs", "3"]).await;
    server
        .deploy("logs", "printer", &[("main.py", &py(PRINTER))], json!({}))
        .await;
    let run = server.invoke("logs", "printer", json!({"n": 2})).await;
    let id = run["id"].as_str().expect("a run id").to_string();
    server.run_record(&id, Duration::from_secs(10)).await;
    assert_eq!(texts(&lines(&server, "").await).len(), 3);
    wait_for(
        "old lines to be removed",
        Duration::from_secs(15),
        async || texts(&lines(&server, "").await).is_empty().then_some(()),
    )
    .await;
    wait_for(
        "old runs to be removed",
        Duration::from_secs(15),
        async || {
            (server
                .get(&format!("/api/v1/invocations/{id}"))
                .await
                .status
                == 404)
                .then_some(())
        },
    )
    .await;
    let runs = server
        .get("/api/v1/projects/logs/functions/printer/invocations")
        .await
        .expect_status(200);
    assert_eq!(runs["items"], json!([]), "{runs}");
    let resp = server
        .send(server.authed(Method::GET, "/metrics"))
        .await
        .expect_ok_text();
    assert!(resp.contains("kumo_log_lines_dropped_total 0"), "{resp}");
}
