//! The web surface as an attacker sees it: a function's answer on the
//! dashboard's origin, Kumo's credentials on their way to a function, the
//! dashboard's session cookie, the functions' own origin, and `/metrics`.
//! (The same attacks in a real browser: `dashboard/tests/origin.test.mjs`.)

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use crate::support::{TOKEN, TestServer, py};

/// A function that answers with the event it was given.
fn echo() -> String {
    py(r#"
        def handler(event, context):
            return {"statusCode": 200, "headers": {"content-type": "application/json"},
                    "body": __import__("json").dumps(event)}
    "#)
}

/// SECURITY 39: a caller's Kumo token opens a private function but never
/// reaches it (the function gets the verified identity instead), and no
/// credential header is kept in the stored run; an app's own bearer
/// token still reaches a public function, but is not stored either.
#[tokio::test]
async fn kumo_credentials_never_reach_a_function_or_a_run_record() {
    let server = TestServer::start().await;
    server
        .deploy(
            "creds",
            "private",
            &[("main.py", &echo())],
            json!({"visibility": "private"}),
        )
        .await;
    server
        .deploy("creds", "public", &[("main.py", &echo())], json!({}))
        .await;

    let resp = server
        .send(
            server
                .authed(Method::POST, "/fn/creds/private/x")
                .header(COOKIE, "theme=dark; kumo_session=stolen")
                .header("x-api-key", "app-key-1")
                .body("hi"),
        )
        .await;
    let event: Value = serde_json::from_str(&resp.expect_ok_text()).expect("the event");
    assert!(
        event["headers"].get("authorization").is_none(),
        "the caller's Kumo token reached the function: {event}"
    );
    assert_eq!(event["headers"]["cookie"], "theme=dark", "{event}");
    assert_eq!(event["headers"]["x-api-key"], "app-key-1");
    assert_eq!(event["requestContext"]["identity"]["username"], "admin");
    assert!(event["requestContext"]["identity"]["userId"].is_string());
    let id = resp.header("x-kumo-invocation-id").expect("a run id");
    let stored = server
        .run_record(&id, std::time::Duration::from_secs(10))
        .await;
    // What the function chose to answer is its own; the stored input
    // holds no credential.
    let text = stored["input"].to_string();
    for secret in [TOKEN, "stolen", "app-key-1", "theme=dark"] {
        assert!(
            !text.contains(secret),
            "the stored input keeps '{secret}': {text}"
        );
    }
    assert!(!stored.to_string().contains(TOKEN));
    assert_eq!(stored["input"]["headers"]["cookie"], "***");
    assert_eq!(stored["input"]["headers"]["x-api-key"], "***");

    // Without a token, the private function is closed; a revoked-looking
    // Kumo token is still Kumo's and is not passed on to a public one.
    server
        .send(server.public(Method::GET, "/fn/creds/private"))
        .await
        .expect_error(401, "unauthorized");
    let resp = server
        .send(
            server
                .public(Method::GET, "/fn/creds/public")
                .header(AUTHORIZATION, "Bearer kumo_revoked_or_made_up"),
        )
        .await;
    let event: Value = serde_json::from_str(&resp.expect_ok_text()).expect("the event");
    assert!(event["headers"].get("authorization").is_none(), "{event}");
    assert!(event["requestContext"]["identity"].is_null(), "{event}");

    // An app's own scheme passes through to the function, and is blotted
    // out of the stored run.
    let resp = server
        .send(
            server
                .public(Method::GET, "/fn/creds/public")
                .header(AUTHORIZATION, "Bearer app-jwt-123"),
        )
        .await;
    let event: Value = serde_json::from_str(&resp.expect_ok_text()).expect("the event");
    assert_eq!(event["headers"]["authorization"], "Bearer app-jwt-123");
    assert!(event["requestContext"]["identity"].is_null());
    let id = resp.header("x-kumo-invocation-id").expect("a run id");
    let stored = server
        .run_record(&id, std::time::Duration::from_secs(10))
        .await;
    assert_eq!(stored["input"]["headers"]["authorization"], "***");
    assert!(!stored["input"].to_string().contains("app-jwt-123"));

    // A function may keep its callers' credentials in its stored runs
    // (to debug an app's own auth), never Kumo's.
    let function = server
        .call(
            Method::PATCH,
            "/api/v1/projects/creds/functions/private",
            Some(json!({"record_credentials": true})),
        )
        .await
        .expect_status(200);
    assert_eq!(function["record_credentials"], true);
    let resp = server
        .send(
            server
                .authed(Method::GET, "/fn/creds/private")
                .header(COOKIE, "theme=dark; kumo_session=stolen")
                .header("x-api-key", "app-key-1"),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let id = resp.header("x-kumo-invocation-id").expect("a run id");
    let stored = server
        .run_record(&id, std::time::Duration::from_secs(10))
        .await;
    assert_eq!(stored["input"]["headers"]["cookie"], "theme=dark");
    assert_eq!(stored["input"]["headers"]["x-api-key"], "app-key-1");
    let text = stored["input"].to_string();
    assert!(!text.contains(TOKEN) && !text.contains("stolen"), "{text}");
}

/// SECURITY 38: on the dashboard's origin, a function's answer is
/// sandboxed into an opaque origin, cannot set or clear Kumo's cookies,
/// widen a service worker's scope or clear the site's data, and no
/// function serves a service worker script.
#[tokio::test]
async fn function_answers_are_confined_on_the_dashboards_origin() {
    let server = TestServer::start().await;
    let source = py(r#"
        def handler(event):
            return {"statusCode": 200, "body": "<script>evil()</script>", "headers": {
                "content-type": "text/html",
                "content-security-policy": "default-src 'self'",
                "service-worker-allowed": "/",
                "clear-site-data": "\"*\"",
                "set-cookie": ["kumo_session=planted; Path=/api", "__Host-KUMO_x=1; Path=/", "theme=dark; Path=/"],
            }}
    "#);
    server
        .deploy("evil", "page", &[("main.py", &source)], json!({}))
        .await;
    server
        .call(
            Method::POST,
            "/api/v1/projects/evil/routes",
            Some(json!({"method": "ANY", "path": "/*rest", "function": "page"})),
        )
        .await
        .expect_status(201);
    for path in ["/fn/evil/page", "/p/evil/anything"] {
        let resp = server.send(server.public(Method::GET, path)).await;
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
        let policies: Vec<&str> = resp
            .headers
            .get_all("content-security-policy")
            .iter()
            .map(|v| v.to_str().expect("ascii"))
            .collect();
        assert!(
            policies.contains(&"default-src 'self'")
                && policies.iter().any(|p| p.starts_with("sandbox ")
                    && p.contains("allow-scripts")
                    && !p.contains("allow-same-origin")),
            "{path}: the answer is not sandboxed: {policies:?}"
        );
        assert!(resp.header("service-worker-allowed").is_none(), "{path}");
        assert!(resp.header("clear-site-data").is_none(), "{path}");
        let cookies: Vec<&str> = resp
            .headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ascii"))
            .collect();
        assert_eq!(cookies, ["theme=dark; Path=/"], "{path}");
        // A service worker script is refused before the function runs.
        server
            .send(
                server
                    .public(Method::GET, path)
                    .header("service-worker", "script"),
            )
            .await
            .expect_error(403, "forbidden");
    }
    // An error answer of the gateway is sandboxed too.
    let resp = server
        .send(server.public(Method::GET, "/fn/evil/missing"))
        .await;
    assert_eq!(resp.status, 404);
    assert!(resp.header("content-security-policy").is_some());
}

/// A free loopback port for a second listener.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// With `--functions-listen`, functions have an origin of their own: the
/// API names it, it serves functions unconfined (their cookies and
/// storage are their own) and nothing of the API or the dashboard; the
/// main listener keeps answering `/fn/…` (sandboxed) for every client.
#[tokio::test]
async fn functions_have_an_origin_of_their_own() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let server = TestServer::start_with(&["--functions-listen", &listen]).await;
    let deployed = server
        .deploy("site", "home", &[("main.py", &echo())], json!({}))
        .await;
    let origin = format!("http://{listen}");
    assert_eq!(deployed["url"], format!("{origin}/fn/site/home"));
    let function = server
        .get("/api/v1/projects/site/functions/home")
        .await
        .expect_status(200);
    assert_eq!(function["url"], format!("{origin}/fn/site/home"));

    let client = reqwest::Client::new();
    let own = client
        .get(format!("{origin}/fn/site/home/a?b=1"))
        .send()
        .await
        .expect("the functions' listener answers");
    assert_eq!(own.status(), 200);
    assert!(own.headers().get("content-security-policy").is_none());
    let event: Value = own.json().await.expect("the event");
    assert_eq!(event["path"], "/a");
    assert_eq!(event["query"]["b"], "1");
    for path in ["/api/v1/me", "/", "/metrics", "/docs"] {
        let resp = client
            .get(format!("{origin}{path}"))
            .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
            .send()
            .await
            .expect("an answer");
        assert_eq!(resp.status(), 404, "{path} on the functions' origin");
    }
    let health = client
        .get(format!("{origin}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let shared = server
        .send(server.public(Method::GET, "/fn/site/home"))
        .await;
    assert_eq!(shared.status, 200);
    assert!(shared.header("content-security-policy").is_some());
    // A service worker is refused there too: it would control every
    // function of the origin.
    let sw = client
        .get(format!("{origin}/fn/site/home"))
        .header("service-worker", "script")
        .send()
        .await
        .expect("an answer");
    assert_eq!(sw.status(), 403);
}

/// The cookie of a dashboard sign-in from a `Set-Cookie` header.
fn session_cookie(resp: &crate::support::Resp) -> String {
    let set = resp.header("set-cookie").expect("a session cookie");
    set.split(';').next().expect("name=value").to_string()
}

/// The dashboard's session: an `HttpOnly`, `SameSite=Strict` cookie scoped
/// to `/api`, never a token handed to scripts; a request that changes
/// something on the cookie alone needs the session's CSRF token; signing
/// out revokes it; two session cookies are refused.
#[tokio::test]
async fn the_dashboard_session_is_a_cookie_scripts_cannot_use() {
    let server = TestServer::start().await;
    let wrong = server
        .send(
            server
                .public(Method::POST, "/api/v1/auth/session")
                .json(&json!({"username": "admin", "password": "nope"})),
        )
        .await;
    wrong.expect_error(401, "unauthorized");
    let resp = server
        .send(server.public(Method::POST, "/api/v1/auth/session").json(
            &json!({"username": "admin", "password": server.admin_password, "remember": true}),
        ))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let set = resp.header("set-cookie").expect("a cookie");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/api", "Max-Age="] {
        assert!(set.contains(part), "the cookie lacks {part}: {set}");
    }
    let body = resp.json();
    assert!(
        body.get("token").is_none(),
        "a token reached the page: {body}"
    );
    let csrf = body["csrf"].as_str().expect("a CSRF token").to_string();
    assert!(!set.contains(&csrf), "the CSRF token is not the secret");
    let cookie = session_cookie(&resp);

    let me = server
        .send(
            server
                .public(Method::GET, "/api/v1/me")
                .header(COOKIE, &cookie),
        )
        .await
        .expect_status(200);
    assert_eq!(me["username"], "admin");
    let again = server
        .send(
            server
                .public(Method::GET, "/api/v1/auth/session")
                .header(COOKIE, &cookie),
        )
        .await
        .expect_status(200);
    assert_eq!(again["csrf"], csrf.as_str());

    // Cross-site forgery: the cookie alone changes nothing.
    let forged = server
        .send(
            server
                .public(Method::POST, "/api/v1/projects")
                .header(COOKIE, &cookie)
                .json(&json!({"name": "forged"})),
        )
        .await;
    forged.expect_error(403, "forbidden");
    let wrong_csrf = server
        .send(
            server
                .public(Method::POST, "/api/v1/projects")
                .header(COOKIE, &cookie)
                .header("x-kumo-csrf", "0".repeat(32))
                .json(&json!({"name": "forged"})),
        )
        .await;
    wrong_csrf.expect_error(403, "forbidden");
    server
        .send(
            server
                .public(Method::POST, "/api/v1/projects")
                .header(COOKIE, &cookie)
                .header("x-kumo-csrf", &csrf)
                .json(&json!({"name": "made"})),
        )
        .await
        .expect_status(201);
    // A cookie planted beside the real one is refused, not guessed at.
    server
        .send(
            server
                .public(Method::GET, "/api/v1/me")
                .header(COOKIE, format!("kumo_session=planted; {cookie}")),
        )
        .await
        .expect_error(401, "unauthorized");
    // The session never opens a function: browsers do not send it there,
    // and the gateway does not take it.
    server
        .deploy(
            "made",
            "private",
            &[("main.py", &echo())],
            json!({"visibility": "private"}),
        )
        .await;
    server
        .send(
            server
                .public(Method::GET, "/fn/made/private")
                .header(COOKIE, &cookie),
        )
        .await
        .expect_error(401, "unauthorized");

    let out = server
        .send(
            server
                .public(Method::DELETE, "/api/v1/auth/session")
                .header(COOKIE, &cookie)
                .header("x-kumo-csrf", &csrf),
        )
        .await;
    assert_eq!(out.status, 204, "{}", out.text());
    assert!(
        out.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    server
        .send(
            server
                .public(Method::GET, "/api/v1/me")
                .header(COOKIE, &cookie),
        )
        .await
        .expect_error(401, "unauthorized");
}

/// The dashboard's test panel calls a function through the API as the
/// signed-in user: private functions answer, the answer comes back as
/// data, and the caller's token reaches neither the function nor the run.
#[tokio::test]
async fn functions_are_tested_through_the_api_as_the_caller() {
    let server = TestServer::start().await;
    server
        .deploy(
            "panel",
            "private",
            &[("main.py", &echo())],
            json!({"visibility": "private"}),
        )
        .await;
    let answer = server
        .call(
            Method::POST,
            "/api/v1/projects/panel/functions/private/http",
            Some(json!({
                "method": "post", "path": "items/7", "query": "?q=1",
                "headers": [["x-thing", "a"], ["authorization", format!("Bearer {TOKEN}")]],
                "body": "hello",
            })),
        )
        .await
        .expect_status(200);
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["isBase64Encoded"], false);
    let event: Value =
        serde_json::from_str(answer["body"].as_str().expect("a body")).expect("the event as JSON");
    assert_eq!(event["method"], "POST");
    assert_eq!(event["path"], "/items/7");
    assert_eq!(event["query"]["q"], "1");
    assert_eq!(event["body"], "hello");
    assert_eq!(event["headers"]["x-thing"], "a");
    assert!(event["headers"].get("authorization").is_none(), "{event}");
    assert_eq!(event["requestContext"]["identity"]["username"], "admin");
    let id = answer["invocation_id"].as_str().expect("a run id");
    let run = server
        .run_record(id, std::time::Duration::from_secs(10))
        .await;
    assert!(!run.to_string().contains(TOKEN));
    assert!(
        answer["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .any(|h| h[0] == "x-kumo-invocation-id"),
        "the answer shows the function's headers: {answer}"
    );

    for (body, what) in [
        (json!({"method": "NOT A METHOD"}), "not an HTTP method"),
        (json!({"headers": [["bad name", "x"]]}), "not a header name"),
        (
            json!({"body": "%%%", "isBase64Encoded": true}),
            "not base64",
        ),
        (json!({"unknown": 1}), "unknown"),
    ] {
        let message = server
            .call(
                Method::POST,
                "/api/v1/projects/panel/functions/private/http",
                Some(body),
            )
            .await
            .expect_error(400, "bad_request");
        assert!(message.contains(what), "{message}");
    }
    server
        .send(server.public(
            Method::POST,
            "/api/v1/projects/panel/functions/private/http",
        ))
        .await
        .expect_error(401, "unauthorized");
    server
        .call(
            Method::POST,
            "/api/v1/projects/panel/functions/nope/http",
            Some(json!({})),
        )
        .await
        .expect_error(404, "not_found");
}

/// `/metrics` names every project and function: it needs an admin's
/// token unless the operator opens it with `--public-metrics`.
#[tokio::test]
async fn metrics_need_a_token_unless_made_public() {
    let server = TestServer::start().await;
    server
        .send(server.public(Method::GET, "/metrics"))
        .await
        .expect_error(401, "unauthorized");
    server
        .send(
            server
                .public(Method::GET, "/metrics")
                .header(AUTHORIZATION, "Bearer kumo_not_a_token"),
        )
        .await
        .expect_error(401, "unauthorized");
    let text = server
        .send(server.authed(Method::GET, "/metrics"))
        .await
        .expect_ok_text();
    assert!(text.contains("kumo_instances"));
    drop(server);
    let open = TestServer::start_with(&["--public-metrics"]).await;
    let text = open
        .send(open.public(Method::GET, "/metrics"))
        .await
        .expect_ok_text();
    assert!(text.contains("kumo_instances"));
}
