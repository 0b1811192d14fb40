//! What the dashboard stands on besides the browser: its page and assets
//! served with caching and security headers, the templates of its
//! gallery, and the activity on its function cards. The pages themselves
//! are tested in Chromium (`dashboard/tests`).

use reqwest::Method;
use serde_json::json;

use crate::support::{TestServer, py};

#[tokio::test]
async fn the_page_is_revalidated_and_answers_not_modified() {
    let server = TestServer::start().await;
    let page = server.send(server.public(Method::GET, "/")).await;
    assert_eq!(page.status.as_u16(), 200);
    assert_eq!(
        page.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert!(page.text().contains("Kumo"), "{}", page.text());
    // The built page carries its caching and security headers (a binary
    // built without the dashboard serves a page saying how to build it).
    if let Some(etag) = page.header("etag") {
        assert_eq!(page.header("cache-control").as_deref(), Some("no-cache"));
        let csp = page.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(page.header("x-frame-options").as_deref(), Some("DENY"));
        assert_eq!(
            page.header("x-content-type-options").as_deref(),
            Some("nosniff")
        );
        let again = server
            .send(
                server
                    .public(Method::GET, "/")
                    .header("if-none-match", etag.as_str()),
            )
            .await;
        assert_eq!(again.status.as_u16(), 304);
        assert!(again.body.is_empty());
        let changed = server
            .send(
                server
                    .public(Method::GET, "/")
                    .header("if-none-match", "\"something-else\""),
            )
            .await;
        assert_eq!(changed.status.as_u16(), 200);
    }
    let missing = server
        .send(server.public(Method::GET, "/assets/no-such-file.js"))
        .await;
    assert_eq!(missing.status.as_u16(), 404);
    // The dashboard never takes an API path: an unknown one is the API's 404.
    let api = server.get("/api/v1/no-such-thing").await;
    assert_eq!(api.status.as_u16(), 404);
}

#[tokio::test]
async fn templates_are_listed_for_the_gallery() {
    let server = TestServer::start().await;
    let anonymous = server
        .send(server.public(Method::GET, "/api/v1/templates"))
        .await;
    assert_eq!(anonymous.status.as_u16(), 401);
    let list = server.get("/api/v1/templates").await.expect_status(200);
    let items = list.as_array().expect("a list");
    let names: Vec<&str> = items.iter().filter_map(|t| t["name"].as_str()).collect();
    for name in ["python", "node", "fastapi"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let python = items
        .iter()
        .find(|t| t["name"] == "python")
        .expect("python");
    assert_eq!(python["runtime"], "python");
    assert_eq!(python["entrypoint"], "main.py");
    let files = python["files"].as_object().expect("files by path");
    let main = files["main.py"].as_str().expect("main.py");
    assert!(main.contains("def handler"), "{python}");
    assert!(
        !files.contains_key(".kumoignore"),
        "only what is deployed: {python}"
    );

    // A template's files deploy as they are and answer.
    server
        .deploy("gallery", "hello", &[("main.py", main)], json!({}))
        .await;
    let run = server.invoke("gallery", "hello", json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
}

#[tokio::test]
async fn functions_show_their_recent_activity() {
    let server = TestServer::start().await;
    let code = py(r#"
        def handler(event):
            if event["query"].get("fail"):
                raise RuntimeError("nope")
            return "ok"
    "#);
    server
        .deploy("cards", "busy", &[("main.py", &code)], json!({}))
        .await;
    server
        .deploy("cards", "idle", &[("main.py", &code)], json!({}))
        .await;

    let f = server
        .get("/api/v1/projects/cards/functions/idle")
        .await
        .expect_status(200);
    assert_eq!(f["activity"]["calls_last_hour"], 0, "{f}");
    assert_eq!(f["activity"]["errors_last_hour"], 0, "{f}");
    assert!(f["activity"]["last_call_at"].is_null(), "{f}");

    for query in ["", "", "?fail=1"] {
        server
            .send(server.public(Method::GET, &format!("/fn/cards/busy{query}")))
            .await;
    }
    // Read right after the calls, the function shows all three.
    let f = server
        .get("/api/v1/projects/cards/functions/busy")
        .await
        .expect_status(200);
    let activity = &f["activity"];
    assert_eq!(activity["calls_last_hour"], 3, "{f}");
    assert_eq!(activity["errors_last_hour"], 1, "{f}");
    assert_eq!(activity["last_status"], "failed", "{f}");
    assert!(activity["last_call_at"].as_i64().is_some(), "{f}");
    assert!(f["instances"]["idle"].as_u64().unwrap_or(0) >= 1, "{f}");

    let list = server
        .get("/api/v1/projects/cards/functions")
        .await
        .expect_status(200);
    let busy = list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["name"] == "busy"))
        .expect("busy listed");
    assert_eq!(busy["activity"]["calls_last_hour"], 3, "{list}");
}
