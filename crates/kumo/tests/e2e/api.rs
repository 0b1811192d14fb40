//! The API's contract around the functions: auth, error shapes, input
//! validation, tokens, login throttling, docs, health and metrics.

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::json;

use crate::support::{TOKEN, TestServer, py};

const HELLO: &str = "def handler(event):\n    return 'hello'\n";

#[tokio::test]
async fn api_needs_a_valid_token() {
    let server = TestServer::start().await;
    server
        .deploy("auth", "hello", &[("main.py", HELLO)], json!({}))
        .await;
    let endpoints = [
        (Method::GET, "/api/v1/me"),
        (Method::GET, "/api/v1/projects"),
        (Method::GET, "/api/v1/projects/auth/functions/hello"),
        (
            Method::POST,
            "/api/v1/projects/auth/functions/hello/deployments",
        ),
        (Method::POST, "/api/v1/projects/auth/functions/hello/invoke"),
        (
            Method::GET,
            "/api/v1/projects/auth/functions/hello/invocations",
        ),
        (Method::GET, "/api/v1/invocations/01abc"),
        (Method::GET, "/api/v1/tokens"),
    ];
    for (method, path) in endpoints {
        let resp = server
            .send(server.public(method.clone(), path).json(&json!({})))
            .await;
        let message = resp.expect_error(401, "unauthorized");
        assert!(message.contains("token"), "{method} {path}: {message}");

        for credentials in [
            "Bearer kumo_not_a_real_token".to_string(),
            format!("Bearer {TOKEN}x"),
            format!("Basic {TOKEN}"),
            "Bearer ".to_string(),
        ] {
            let resp = server
                .send(
                    server
                        .public(method.clone(), path)
                        .header(AUTHORIZATION, &credentials)
                        .json(&json!({})),
                )
                .await;
            resp.expect_error(401, "unauthorized");
        }
    }
    // The right token passes the same door.
    let me = server.get("/api/v1/me").await.expect_status(200);
    assert_eq!(me["username"], "admin", "{me}");
    assert_eq!(me["is_admin"], true, "{me}");
    // A public function needs no token.
    let resp = server
        .send(server.public(Method::GET, "/fn/auth/hello"))
        .await;
    assert_eq!(resp.expect_ok_text(), "hello");
}

#[tokio::test]
async fn private_function_needs_a_token_at_the_gateway() {
    let server = TestServer::start().await;
    server
        .deploy(
            "auth",
            "secret",
            &[("main.py", HELLO)],
            json!({"visibility": "private"}),
        )
        .await;
    let function = server
        .get("/api/v1/projects/auth/functions/secret")
        .await
        .expect_status(200);
    assert_eq!(function["visibility"], "private", "{function}");

    let resp = server
        .send(server.public(Method::GET, "/fn/auth/secret"))
        .await;
    resp.expect_error(401, "unauthorized");
    let resp = server
        .send(
            server
                .public(Method::GET, "/fn/auth/secret")
                .header(AUTHORIZATION, "Bearer kumo_wrong"),
        )
        .await;
    resp.expect_error(401, "unauthorized");
    let resp = server
        .send(server.authed(Method::GET, "/fn/auth/secret"))
        .await;
    assert_eq!(resp.expect_ok_text(), "hello");
}

#[tokio::test]
async fn unknown_projects_and_functions_are_404() {
    let server = TestServer::start().await;
    server
        .deploy("there", "hello", &[("main.py", HELLO)], json!({}))
        .await;

    for path in [
        "/api/v1/projects/nowhere",
        "/api/v1/projects/nowhere/functions",
        "/api/v1/projects/nowhere/functions/hello",
        "/api/v1/projects/there/functions/missing",
        "/api/v1/projects/there/functions/missing/deployments",
        "/api/v1/projects/there/functions/missing/invocations",
        "/api/v1/invocations/01jzzzzzzzzzzzzzzzzzzzzzzz",
        "/api/v1/no-such-endpoint",
    ] {
        let message = server.get(path).await.expect_error(404, "not_found");
        assert!(
            message.contains("not found") || message.contains("no such"),
            "{path}: {message}"
        );
    }
    let message = server
        .try_invoke("there", "missing", json!({}))
        .await
        .expect_error(404, "not_found");
    assert!(message.contains("there/missing"), "{message}");
    server
        .try_invoke("nowhere", "hello", json!({}))
        .await
        .expect_error(404, "not_found");

    for (method, path) in [
        (Method::GET, "/fn/nowhere/hello"),
        (Method::POST, "/fn/there/missing"),
        (Method::GET, "/fn/there/missing/deep/path?x=1"),
    ] {
        let resp = server.send(server.public(method.clone(), path)).await;
        let message = resp.expect_error(404, "not_found");
        assert!(message.contains("not found"), "{method} {path}: {message}");
    }
    // A function created without code is there, but cannot be called yet.
    server
        .call(
            Method::POST,
            "/api/v1/projects/there/functions",
            Some(json!({"name": "empty"})),
        )
        .await
        .expect_status(201);
    let resp = server
        .send(server.public(Method::GET, "/fn/there/empty"))
        .await;
    let message = resp.expect_error(404, "not_found");
    assert!(message.contains("no active deployment"), "{message}");
}

#[tokio::test]
async fn invalid_names_are_400() {
    let server = TestServer::start().await;
    for name in [
        "Bad_Name",
        "UPPER",
        "1starts-with-digit",
        "ends-",
        "dots.in.it",
    ] {
        let resp = server
            .call(
                Method::POST,
                "/api/v1/projects",
                Some(json!({"name": name})),
            )
            .await;
        let message = resp.expect_error(400, "invalid_name");
        assert!(message.contains(name), "{message}");

        let resp = server
            .try_deploy(name, "fine", &[("main.py", HELLO)], json!({}))
            .await;
        let message = resp.expect_error(400, "invalid_name");
        assert!(message.contains("project"), "{message}");
        let resp = server
            .try_deploy("fine", name, &[("main.py", HELLO)], json!({}))
            .await;
        let message = resp.expect_error(400, "invalid_name");
        assert!(message.contains("function"), "{message}");
    }
    let long = "a".repeat(64);
    server
        .try_deploy("fine", &long, &[("main.py", HELLO)], json!({}))
        .await
        .expect_error(400, "invalid_name");
    // Nothing was created on the way.
    let projects = server.get("/api/v1/projects").await.expect_status(200);
    assert_eq!(projects["items"], json!([]), "{projects}");
}

#[tokio::test]
async fn malformed_json_is_400_with_a_message() {
    let server = TestServer::start().await;
    server
        .deploy("json", "hello", &[("main.py", HELLO)], json!({}))
        .await;
    let raw = async |method: Method, path: &str, body: &'static str| {
        server
            .send(
                server
                    .authed(method, path)
                    .header(CONTENT_TYPE, "application/json")
                    .body(body),
            )
            .await
    };

    let resp = raw(
        Method::POST,
        "/api/v1/projects/json/functions/hello/deployments",
        r#"{"files": {"main.py": "#,
    )
    .await;
    let message = resp.expect_error(400, "bad_request");
    assert!(message.contains("invalid JSON"), "{message}");
    assert!(message.contains("line 1"), "says where: {message}");

    let resp = raw(Method::POST, "/api/v1/projects", "not json at all").await;
    let message = resp.expect_error(400, "bad_request");
    assert!(message.contains("invalid JSON"), "{message}");

    let resp = raw(Method::POST, "/api/v1/projects", "").await;
    let message = resp.expect_error(400, "bad_request");
    assert!(message.contains("empty"), "{message}");

    let resp = raw(Method::POST, "/api/v1/projects", r#"{"name": 5}"#).await;
    let message = resp.expect_error(400, "bad_request");
    assert!(message.contains("invalid type"), "{message}");

    let resp = raw(
        Method::POST,
        "/api/v1/projects/json/functions/hello/invoke",
        "{bad",
    )
    .await;
    let message = resp.expect_error(400, "bad_request");
    assert!(message.contains("JSON"), "{message}");

    // An empty invoke body is an empty event, not an error.
    let resp = raw(
        Method::POST,
        "/api/v1/projects/json/functions/hello/invoke",
        "",
    )
    .await;
    assert_eq!(resp.expect_status(200)["output"], "hello");
}

#[tokio::test]
async fn unknown_fields_and_bad_settings_are_400() {
    let server = TestServer::start().await;
    let resp = server
        .try_deploy(
            "strict",
            "fn",
            &[("main.py", HELLO)],
            json!({"bogus_field": 1}),
        )
        .await;
    let message = resp.expect_error(400, "bad_request");
    assert!(message.contains("bogus_field"), "{message}");

    let resp = server
        .try_deploy("strict", "fn", &[("main.py", HELLO)], json!({"timeout": 5}))
        .await;
    let message = resp.expect_error(400, "bad_request");
    assert!(message.contains("timeout"), "{message}");

    let resp = server
        .try_deploy(
            "strict",
            "fn",
            &[("main.py", HELLO)],
            json!({"timeout_ms": 5}),
        )
        .await;
    let message = resp.expect_error(400, "bad_request");
    assert!(message.contains("timeout_ms must be from"), "{message}");

    let resp = server
        .try_deploy(
            "strict",
            "fn",
            &[("main.py", HELLO)],
            json!({"concurrency": 0}),
        )
        .await;
    resp.expect_error(400, "bad_request");

    let resp = server
        .try_deploy(
            "strict",
            "fn",
            &[("main.py", HELLO)],
            json!({"visibility": "secret"}),
        )
        .await;
    resp.expect_error(400, "bad_request");

    let resp = server
        .try_deploy("strict", "fn", &[("app.py", HELLO)], json!({}))
        .await;
    let message = resp.expect_error(400, "invalid_files");
    assert!(
        message.contains("main.py"),
        "names the entrypoint: {message}"
    );

    let resp = server
        .try_deploy("strict", "fn", &[("../main.py", HELLO)], json!({}))
        .await;
    resp.expect_error(400, "invalid_files");

    let resp = server
        .deploy_tar_gz("strict", "fn", Vec::new(), "entrypoint=main.py&colour=blue")
        .await;
    let message = resp.expect_error(400, "bad_request");
    assert!(message.contains("colour"), "{message}");

    let resp = server
        .send(
            server
                .authed(
                    Method::POST,
                    "/api/v1/projects/strict/functions/fn/deployments",
                )
                .header(CONTENT_TYPE, "text/plain")
                .body("main.py"),
        )
        .await;
    resp.expect_error(415, "unsupported_media_type");

    server
        .get("/api/v1/projects/strict")
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn second_token_works_and_can_be_revoked() {
    let server = TestServer::start().await;
    server
        .deploy("tokens", "hello", &[("main.py", HELLO)], json!({}))
        .await;

    let created = server
        .call(Method::POST, "/api/v1/tokens", Some(json!({"name": "ci"})))
        .await
        .expect_status(201);
    let token = created["token"].as_str().expect("token").to_string();
    let token_id = created["id"].as_str().expect("id").to_string();
    assert!(token.starts_with("kumo_"), "{created}");
    assert_ne!(token, TOKEN);

    let with_new = |method: Method, path: &str| {
        server
            .public(method, path)
            .header(AUTHORIZATION, format!("Bearer {token}"))
    };
    let me = server
        .send(with_new(Method::GET, "/api/v1/me"))
        .await
        .expect_status(200);
    assert_eq!(me["username"], "admin", "same user: {me}");
    let projects = server
        .send(with_new(Method::GET, "/api/v1/projects"))
        .await
        .expect_status(200);
    assert_eq!(projects["items"][0]["name"], "tokens", "{projects}");
    let run = server
        .send(
            with_new(
                Method::POST,
                "/api/v1/projects/tokens/functions/hello/invoke",
            )
            .json(&json!({})),
        )
        .await
        .expect_status(200);
    assert_eq!(run["output"], "hello", "{run}");

    let list = server.get("/api/v1/tokens").await;
    let text = list.text();
    let list = list.expect_status(200);
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert!(
        names.contains(&"ci") && names.contains(&"bootstrap"),
        "{list}"
    );
    assert!(
        !text.contains(&token) && !text.contains(TOKEN),
        "token secrets are never listed: {text}"
    );

    let revoked = server
        .call(Method::DELETE, &format!("/api/v1/tokens/{token_id}"), None)
        .await;
    assert_eq!(revoked.status.as_u16(), 204, "{}", revoked.text());
    let resp = server.send(with_new(Method::GET, "/api/v1/me")).await;
    resp.expect_error(401, "unauthorized");
    // The bootstrap token is untouched.
    server.get("/api/v1/me").await.expect_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_works_and_repeated_failures_are_throttled() {
    let server = TestServer::start().await;
    let login = async |password: &str| {
        server
            .send(
                server
                    .public(Method::POST, "/api/v1/auth/login")
                    .json(&json!({"username": "admin", "password": password})),
            )
            .await
    };

    let ok = login(&server.admin_password).await.expect_status(200);
    let token = ok["token"].as_str().expect("token");
    let me = server
        .send(
            server
                .public(Method::GET, "/api/v1/me")
                .header(AUTHORIZATION, format!("Bearer {token}")),
        )
        .await
        .expect_status(200);
    assert_eq!(me["username"], "admin");

    let mut refused_after = None;
    for attempt in 1..=8 {
        let resp = login("wrong password").await;
        match resp.status.as_u16() {
            401 => {
                resp.expect_error(401, "unauthorized");
            }
            429 => {
                resp.expect_error(429, "too_many_requests");
                let retry: u64 = resp
                    .header("retry-after")
                    .expect("Retry-After")
                    .parse()
                    .expect("seconds");
                assert!(retry >= 1);
                refused_after = Some(attempt);
                break;
            }
            other => panic!("attempt {attempt}: unexpected {other}: {}", resp.text()),
        }
    }
    let refused_after = refused_after.expect("failed logins are throttled within 8 attempts");
    assert!(
        refused_after > 5,
        "5 failures are allowed, got 429 at {refused_after}"
    );
    // While throttled, even the right password waits.
    login(&server.admin_password)
        .await
        .expect_error(429, "too_many_requests");
    // Tokens are not affected.
    server.get("/api/v1/me").await.expect_status(200);
    // The owner, from another address, is not locked out by a stranger's
    // failures.
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("a client bound to 127.0.0.2");
    let resp = elsewhere
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": server.admin_password}))
        .send()
        .await
        .expect("login from 127.0.0.2");
    assert_eq!(resp.status().as_u16(), 200, "login from another address");
}

#[tokio::test]
async fn openapi_docs_health_and_metrics() {
    let server = TestServer::start().await;

    let health = server.send(server.public(Method::GET, "/healthz")).await;
    assert_eq!(health.expect_status(200), json!({"status": "ok"}));

    let spec = server
        .send(server.public(Method::GET, "/api/v1/openapi.json"))
        .await
        .expect_status(200);
    assert!(
        spec["openapi"].as_str().is_some_and(|v| v.starts_with('3')),
        "openapi version"
    );
    let paths = spec["paths"].as_object().expect("paths");
    for (path, methods) in [
        (
            "/api/v1/projects/{project}/functions/{function}/deployments",
            &["get", "post"][..],
        ),
        (
            "/api/v1/projects/{project}/functions/{function}/deployments/{version}",
            &["get"],
        ),
        (
            "/api/v1/projects/{project}/functions/{function}/invoke",
            &["post"],
        ),
        (
            "/api/v1/projects/{project}/functions/{function}/logs",
            &["get"],
        ),
        (
            "/api/v1/projects/{project}/functions/{function}/metrics",
            &["get"],
        ),
        ("/api/v1/projects/{project}/env", &["get"]),
        (
            "/api/v1/projects/{project}/env/{key}",
            &["get", "put", "delete"],
        ),
        ("/api/v1/projects/{project}/routes", &["get", "post"]),
        ("/api/v1/projects/{project}/routes/{id}", &["delete"]),
        ("/api/v1/invocations/{id}", &["get"]),
    ] {
        assert!(paths.contains_key(path), "the spec documents {path}");
        for method in methods {
            assert!(
                paths[path][method].is_object(),
                "the spec documents {method} {path}"
            );
        }
    }
    assert!(
        paths["/api/v1/projects/{project}/functions/{function}/deployments"]["post"].is_object()
    );

    let docs = server.send(server.public(Method::GET, "/docs")).await;
    let html = docs.expect_ok_text();
    assert!(
        docs.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        docs.header("content-type")
    );
    assert!(html.to_lowercase().contains("<html"), "{html}");

    server
        .deploy("obs", "hello", &[("main.py", &py(HELLO))], json!({}))
        .await;
    let run = server.invoke("obs", "hello", json!({})).await;
    assert_eq!(run["status"], "succeeded");
    let metrics = server.send(server.authed(Method::GET, "/metrics")).await;
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "Prometheus text format"
    );
    let text = metrics.expect_ok_text();
    assert!(
        text.contains("# TYPE kumo_invocations_total counter"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "kumo_invocations_total{status=\"succeeded\"} 1"),
        "{text}"
    );
    assert_eq!(server.metric("kumo_instances").await, 1.0);
}
