//! Run history on disk (security item 40): a run's record keeps a capped
//! copy of its input and output, and retention holds run history to a
//! byte budget per project and over the server, so that anonymous calls
//! with large bodies cannot grow the data directory without bound.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestServer, py, wait_for};

const MIB: u64 = 1024 * 1024;
/// The stored cap of a run's input and output, by default.
const STORED_CAP: usize = 64 * 1024;
/// The size of each large body in these tests.
const BIG: usize = 1024 * 1024;

/// Echoes the body (a gateway call) or the event's `data` (an API call),
/// after printing a few lines.
const ECHO: &str = r#"
    def handler(event):
        for i in range(20):
            print(f"line {i} " + "l" * 500)
        if "data" in event:
            return {"data": event["data"]}
        return {"statusCode": 200, "body": event.get("body") or ""}
"#;

/// The bytes the database holds on disk: the files directly in the data
/// directory (`kumo.db`, its write-ahead log and shared memory, the
/// secret key); not function code (`files/`), runner sandboxes
/// (`runtime/`) or dependency layers (`layers/`).
fn history_on_disk(data_dir: &Path) -> u64 {
    std::fs::read_dir(data_dir)
        .expect("reading the data directory")
        .filter_map(Result::ok)
        .filter_map(|entry| entry.metadata().ok())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
        .sum()
}

/// Item 40: a run with a 1 MiB input and a 1 MiB output answers with the
/// whole output; its record keeps the first 64 KiB of each, says it was
/// cut and how large it was; replaying it is refused, clearly.
#[tokio::test]
async fn item_40_a_large_run_is_stored_capped_and_not_replayed() {
    let server = TestServer::start().await;
    server
        .deploy("hist", "echo", &[("main.py", &py(ECHO))], json!({}))
        .await;
    let data = "d".repeat(BIG);
    let run = server.invoke("hist", "echo", json!({"data": data})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["output"]["data"].as_str().map(str::len),
        Some(BIG),
        "the caller gets the whole output"
    );
    let id = run["id"].as_str().expect("run id");

    let stored = server.run_record(id, Duration::from_secs(10)).await;
    for (field, flag) in [("input", "input_truncated"), ("output", "output_truncated")] {
        assert_eq!(stored[flag], true, "{field} is marked cut");
        let marker = &stored[field];
        assert_eq!(marker["truncated"], true, "{field}: {marker:.200}");
        let size = marker["size_bytes"].as_u64().expect("size_bytes");
        assert!(
            size > BIG as u64 && size < BIG as u64 + 64,
            "{field}'s full size is given: {size}"
        );
        let preview = marker["preview"].as_str().expect("preview");
        assert_eq!(preview.len(), STORED_CAP, "{field} keeps its first 64 KiB");
        assert!(
            preview.starts_with(r#"{"data":"ddd"#),
            "{field} keeps the first bytes as text: {:.40}",
            preview
        );
    }
    assert!(
        stored.to_string().len() < 4 * STORED_CAP,
        "the record as the API shows it is small"
    );

    let message = server
        .call(
            Method::POST,
            &format!("/api/v1/invocations/{id}/replay"),
            None,
        )
        .await
        .expect_error(409, "conflict");
    assert!(
        message.contains("cut") && message.contains("64 KiB") && message.contains("not kept"),
        "the refusal says why: {message}"
    );

    // An async run is stored whole until it has run (it runs from its
    // record), then capped like any other: its output's full size shows
    // that the function had the whole input.
    let accepted = server
        .call(
            Method::POST,
            "/api/v1/projects/hist/functions/echo/invoke?async=true",
            Some(json!({"data": data})),
        )
        .await
        .expect_status(202);
    let id = accepted["id"].as_str().expect("run id");
    let stored = wait_for(
        "the async run to finish",
        Duration::from_secs(30),
        async || {
            let run = server.run_record(id, Duration::from_secs(10)).await;
            (run["status"] != "queued" && run["status"] != "running").then_some(run)
        },
    )
    .await;
    assert_eq!(stored["status"], "succeeded", "{:.300}", stored.to_string());
    assert_eq!(stored["input_truncated"], true);
    assert!(
        stored["output"]["size_bytes"]
            .as_u64()
            .is_some_and(|size| size > BIG as u64),
        "{:.300}",
        stored.to_string()
    );

    // A small run is stored whole and replays as before.
    let small = server.invoke("hist", "echo", json!({"data": "x"})).await;
    let id = small["id"].as_str().expect("run id");
    let stored = server.run_record(id, Duration::from_secs(10)).await;
    assert_eq!(stored["input"], json!({"data": "x"}));
    assert_eq!(stored["output"], json!({"data": "x"}));
    assert_eq!(
        (&stored["input_truncated"], &stored["output_truncated"]),
        (&json!(false), &json!(false))
    );
    let replayed = server
        .call(
            Method::POST,
            &format!("/api/v1/invocations/{id}/replay"),
            None,
        )
        .await
        .expect_status(200);
    assert_eq!(replayed["output"], json!({"data": "x"}), "{replayed}");
}

/// Calls `project/function` anonymously `count` times with a 1 MiB body,
/// `wave` at a time; checks each answer is whole; returns the run ids in
/// order, and the most the data directory held after any wave.
async fn flood(server: &TestServer, path: &str, count: usize, wave: usize) -> (Vec<String>, u64) {
    let body = "b".repeat(BIG);
    let mut ids = Vec::new();
    let mut most = 0;
    for _ in 0..count / wave {
        let calls = (0..wave).map(|_| async {
            let resp = server
                .send(server.public(Method::POST, path).body(body.clone()))
                .await;
            assert_eq!(resp.status.as_u16(), 200, "{:.200}", resp.text());
            assert_eq!(resp.body.len(), BIG, "the caller gets the whole answer");
            resp.header("x-kumo-invocation-id")
                .expect("the answer names its run")
        });
        ids.extend(futures::future::join_all(calls).await);
        most = most.max(history_on_disk(&server.data_dir()));
    }
    (ids, most)
}

async fn status_of(server: &TestServer, id: &str) -> u16 {
    server
        .get(&format!("/api/v1/invocations/{id}"))
        .await
        .status
        .as_u16()
}

/// Item 40: 60 anonymous calls with 1 MiB bodies (120 MiB of input and
/// output) against a project budget of 2 MiB and a server budget of
/// 4 MiB. Once retention has caught up, the database files hold less
/// than the server budget, plus the write-ahead log's cap (4 MiB), plus
/// 1 MiB for everything else (schema, accounts, deployments, partly
/// filled pages); the newest runs are all there and the oldest gone; the
/// few runs of another project are untouched.
/// A server with these budgets and two projects with an echo function:
/// `flood`, and `calm` with three runs (their ids).
async fn flood_and_calm(project_budget: u64, server_budget: u64) -> (TestServer, Vec<String>) {
    let server = TestServer::start_with(&[
        "--project-history-bytes",
        &project_budget.to_string(),
        "--run-history-bytes",
        &server_budget.to_string(),
    ])
    .await;
    server
        .deploy("flood", "echo", &[("main.py", &py(ECHO))], json!({}))
        .await;
    server
        .deploy("calm", "echo", &[("main.py", &py(ECHO))], json!({}))
        .await;
    let mut calm = Vec::new();
    for i in 0..3 {
        let run = server.invoke("calm", "echo", json!({"data": i})).await;
        calm.push(run["id"].as_str().expect("run id").to_string());
    }
    (server, calm)
}

#[tokio::test]
async fn item_40_a_flood_of_large_calls_stays_within_the_budget() {
    let (project_budget, server_budget) = (2 * MIB, 4 * MIB);
    let (server, calm) = flood_and_calm(project_budget, server_budget).await;

    let (ids, most) = flood(&server, "/fn/flood/echo", 60, 4).await;
    let bound = server_budget + 4 * MIB + MIB;
    let settled = wait_for(
        "retention to bring the data directory under its bound",
        Duration::from_secs(90),
        async || {
            let size = history_on_disk(&server.data_dir());
            (size <= bound).then_some(size)
        },
    )
    .await;
    println!(
        "flood of {} calls: data directory at most {} KiB during, {} KiB after (bound {} KiB)",
        ids.len(),
        most / 1024,
        settled / 1024,
        bound / 1024
    );
    assert!(
        most < 4 * bound,
        "the pruner kept up during the flood: {most} bytes (unpruned, 120 MiB)"
    );

    for id in &ids[ids.len() - 4..] {
        assert_eq!(status_of(&server, id).await, 200, "newest run {id} kept");
    }
    assert_eq!(status_of(&server, &ids[0]).await, 404, "oldest run removed");
    let kept = futures::future::join_all(ids.iter().map(|id| status_of(&server, id)))
        .await
        .into_iter()
        .filter(|status| *status == 200)
        .count();
    assert!(
        (4..ids.len() / 2).contains(&kept),
        "the project's budget holds a few of its runs: {kept}"
    );
    for id in &calm {
        assert_eq!(
            status_of(&server, id).await,
            200,
            "the other project's run {id} kept"
        );
    }
    let listed: Value = server
        .get("/api/v1/projects/calm/functions/echo/invocations")
        .await
        .expect_status(200);
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(3),
        "{listed:.300}"
    );
}

/// Item 40, tenants: when the server's budget is the one that binds (a
/// project may hold more than the server), the flooding project's runs go
/// first, being the largest: a quiet project's few runs stay.
#[tokio::test]
async fn item_40_over_the_server_budget_the_largest_project_goes_first() {
    let server_budget = 2 * MIB;
    let (server, calm) = flood_and_calm(64 * MIB, server_budget).await;
    let (ids, _) = flood(&server, "/fn/flood/echo", 32, 4).await;
    let bound = server_budget + 4 * MIB + MIB;
    wait_for(
        "retention to bring the data directory under its bound",
        Duration::from_secs(90),
        async || (history_on_disk(&server.data_dir()) <= bound).then_some(()),
    )
    .await;
    wait_for(
        "the flood's oldest run to be removed",
        Duration::from_secs(90),
        async || (status_of(&server, &ids[0]).await == 404).then_some(()),
    )
    .await;
    let last = ids.last().expect("a run");
    assert_eq!(status_of(&server, last).await, 200, "newest run kept");
    for id in &calm {
        assert_eq!(
            status_of(&server, id).await,
            200,
            "the quiet project's run {id} kept"
        );
    }
}
