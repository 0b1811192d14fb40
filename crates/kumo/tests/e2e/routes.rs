//! A project's routes at `/p/{project}/…` (parameters, catch-alls, ANY,
//! conflicts, 404 and 405), CORS answered by the gateway, and private
//! functions behind routes.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TOKEN, TestServer, py};

const ECHO: &str = r#"
def handler(event):
    return {
        "fn": "NAME",
        "method": event["method"],
        "path": event["path"],
        "params": event["params"],
        "query": event["query"],
        "basePath": event["basePath"],
    }
"#;

async fn deploy_echo(server: &TestServer, project: &str, name: &str, settings: Value) {
    server
        .deploy(
            project,
            name,
            &[("main.py", &py(&ECHO.replace("NAME", name)))],
            settings,
        )
        .await;
}

async fn add_route(server: &TestServer, project: &str, route: Value) -> (u16, Value) {
    let resp = server
        .call(
            Method::POST,
            &format!("/api/v1/projects/{project}/routes"),
            Some(route),
        )
        .await;
    (resp.status.as_u16(), resp.json())
}

async fn send(
    server: &TestServer,
    method: Method,
    path: &str,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let resp = server.send(server.public(method, path)).await;
    let json = if resp.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&resp.body).unwrap_or_else(|_| json!(resp.text()))
    };
    (resp.status.as_u16(), json, resp.headers.clone())
}

/// Routes with parameters and catch-alls reach their functions with the
/// parameters in the event; the exact method wins over ANY; a HEAD takes a
/// GET route; a path no route takes is a 404, a method none takes a 405
/// with `Allow`; deleting a route takes effect at once.
#[tokio::test]
async fn routes_reach_functions_with_their_parameters() {
    let server = TestServer::start().await;
    deploy_echo(&server, "shop", "users", json!({})).await;
    deploy_echo(&server, "shop", "fallback", json!({})).await;
    deploy_echo(&server, "shop", "files", json!({})).await;

    let (status, get_user) = add_route(
        &server,
        "shop",
        json!({"method": "get", "path": "/users/:id", "function": "users"}),
    )
    .await;
    assert_eq!(status, 201, "{get_user}");
    assert_eq!(get_user["method"], "GET");
    assert!(
        get_user["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/p/shop/users/:id")),
        "{get_user}"
    );
    for route in [
        json!({"method": "ANY", "path": "/users/:id", "function": "fallback"}),
        json!({"method": "POST", "path": "/files/*rest", "function": "files"}),
        json!({"method": "GET", "path": "/", "function": "fallback"}),
    ] {
        let (status, body) = add_route(&server, "shop", route).await;
        assert_eq!(status, 201, "{body}");
    }

    let (status, out, _) = send(&server, Method::GET, "/p/shop/users/42?full=1").await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["fn"], "users");
    assert_eq!(out["params"], json!({"id": "42"}));
    assert_eq!(out["path"], "/users/42");
    assert_eq!(out["query"], json!({"full": "1"}));
    assert_eq!(out["basePath"], "/p/shop");
    let (status, out, _) = send(&server, Method::PUT, "/p/shop/users/42").await;
    assert_eq!(
        (status, out["fn"].clone()),
        (200, json!("fallback")),
        "ANY takes other methods"
    );
    let (status, out, _) = send(&server, Method::POST, "/p/shop/files/a/b%20c.txt").await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        out["params"],
        json!({"rest": "a/b c.txt"}),
        "decoded: {out}"
    );
    let (status, out, _) = send(&server, Method::GET, "/p/shop").await;
    assert_eq!(
        (status, out["fn"].clone()),
        (200, json!("fallback")),
        "{out}"
    );
    let resp = server
        .send(server.public(Method::HEAD, "/p/shop/users/7"))
        .await;
    assert_eq!(resp.status, 200, "HEAD takes the GET route");

    let (status, out, _) = send(&server, Method::GET, "/p/shop/nothing/here").await;
    assert_eq!(status, 404, "{out}");
    assert_eq!(out["error"]["code"], "not_found");
    let (status, out, headers) = send(&server, Method::GET, "/p/shop/files/x").await;
    assert_eq!(status, 405, "{out}");
    assert_eq!(headers["allow"], "POST");
    let (status, out, _) = send(&server, Method::GET, "/p/nosuchproject/x").await;
    assert_eq!(status, 404, "{out}");

    let list = server
        .get("/api/v1/projects/shop/routes")
        .await
        .expect_status(200);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(4), "{list}");
    let id = get_user["id"].as_str().expect("an id");
    let resp = server
        .call(
            Method::DELETE,
            &format!("/api/v1/projects/shop/routes/{id}"),
            None,
        )
        .await;
    assert_eq!(resp.status, 204, "{}", resp.text());
    let (_, out, _) = send(&server, Method::GET, "/p/shop/users/42").await;
    assert_eq!(out["fn"], "fallback", "the GET route is gone: {out}");
    let resp = server
        .call(
            Method::DELETE,
            &format!("/api/v1/projects/shop/routes/{id}"),
            None,
        )
        .await;
    resp.expect_error(404, "not_found");
}

/// Conflicting and invalid routes are refused, saying why.
#[tokio::test]
async fn bad_and_clashing_routes_are_refused() {
    let server = TestServer::start().await;
    deploy_echo(&server, "api", "users", json!({})).await;
    let (status, first) = add_route(
        &server,
        "api",
        json!({"method": "GET", "path": "/users/:id", "function": "users"}),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    let (status, body) = add_route(
        &server,
        "api",
        json!({"method": "GET", "path": "/users/:name", "function": "users"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("clashes with GET /users/:id"), "{message}");
    assert!(
        message.contains(first["id"].as_str().expect("id")),
        "names the route: {message}"
    );
    let (status, body) = add_route(
        &server,
        "api",
        json!({"method": "GET", "path": "/users/:id", "function": "users"}),
    )
    .await;
    assert_eq!(status, 409, "the same route twice: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("is already defined as GET /users/:id"),
        "{message}"
    );
    for (route, says) in [
        (
            json!({"method": "GET", "path": "users", "function": "users"}),
            "must start with '/'",
        ),
        (
            json!({"method": "GET", "path": "/a//b", "function": "users"}),
            "empty segments",
        ),
        (
            json!({"method": "GET", "path": "/a/:", "function": "users"}),
            "invalid route path",
        ),
        (
            json!({"method": "FETCH", "path": "/a", "function": "users"}),
            "invalid route method",
        ),
        (
            json!({"method": "GET", "path": "/a", "function": "nobody"}),
            "has no function 'nobody'",
        ),
    ] {
        let (status, body) = add_route(&server, "api", route.clone()).await;
        assert_eq!(status, 400, "{route}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{route}: {message}");
    }
    let (status, body) = add_route(
        &server,
        "api",
        json!({"method": "GET", "path": "/a", "function": "users", "extra": 1}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

/// A project's CORS settings are answered by the gateway: preflights
/// without calling the function, the allow headers on responses to an
/// allowed origin, nothing for others; settings are checked when set and
/// can be removed.
#[tokio::test]
async fn cors_is_answered_by_the_gateway() {
    let server = TestServer::start().await;
    deploy_echo(&server, "web", "api", json!({})).await;
    let (status, _) = add_route(
        &server,
        "web",
        json!({"method": "ANY", "path": "/items/:id", "function": "api"}),
    )
    .await;
    assert_eq!(status, 201);
    let resp = server
        .call(
            Method::PATCH,
            "/api/v1/projects/web",
            Some(json!({"cors": {"allowed_origins": ["https://app.example.com/x"]}})),
        )
        .await;
    resp.expect_error(400, "bad_request");
    let project = server
        .call(
            Method::PATCH,
            "/api/v1/projects/web",
            Some(json!({"cors": {
                "allowed_origins": ["https://app.example.com"],
                "allowed_methods": ["GET", "PUT"],
                "allowed_headers": ["X-Token"],
                "expose_headers": ["x-kumo-invocation-id"],
                "max_age_secs": 120
            }})),
        )
        .await
        .expect_status(200);
    assert_eq!(
        project["cors"]["allowed_headers"],
        json!(["x-token"]),
        "{project}"
    );

    let preflight = |origin: &'static str, method: &'static str| {
        server
            .public(Method::OPTIONS, "/p/web/items/1")
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "x-token")
    };
    let resp = server
        .send(preflight("https://app.example.com", "PUT"))
        .await;
    assert_eq!(resp.status, 204, "{}", resp.text());
    assert_eq!(
        resp.header("access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );
    assert_eq!(
        resp.header("access-control-allow-methods").as_deref(),
        Some("GET, PUT")
    );
    assert_eq!(
        resp.header("access-control-allow-headers").as_deref(),
        Some("x-token")
    );
    assert_eq!(
        resp.header("access-control-max-age").as_deref(),
        Some("120")
    );
    let resp = server.send(preflight("https://evil.example", "PUT")).await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    let resp = server
        .send(preflight("https://app.example.com", "DELETE"))
        .await;
    assert_eq!(resp.status, 403, "{}", resp.text());

    for path in ["/p/web/items/1", "/fn/web/api"] {
        let resp = server
            .send(
                server
                    .public(Method::GET, path)
                    .header("origin", "https://app.example.com"),
            )
            .await;
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
        assert_eq!(
            resp.header("access-control-allow-origin").as_deref(),
            Some("https://app.example.com"),
            "{path}"
        );
        assert_eq!(
            resp.header("access-control-expose-headers").as_deref(),
            Some("x-kumo-invocation-id")
        );
        let resp = server
            .send(
                server
                    .public(Method::GET, path)
                    .header("origin", "https://evil.example"),
            )
            .await;
        assert_eq!(resp.status, 200, "the call itself is the function's");
        assert_eq!(resp.header("access-control-allow-origin"), None, "{path}");
    }

    // Without settings, an OPTIONS request is the function's to answer.
    let project = server
        .call(
            Method::PATCH,
            "/api/v1/projects/web",
            Some(json!({"cors": null})),
        )
        .await
        .expect_status(200);
    assert_eq!(project["cors"], Value::Null);
    let resp = server
        .send(preflight("https://app.example.com", "PUT"))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["method"], "OPTIONS");
}

/// A private function is private behind a route too.
#[tokio::test]
async fn private_functions_behind_routes_need_a_token() {
    let server = TestServer::start().await;
    deploy_echo(
        &server,
        "internal",
        "admin",
        json!({"visibility": "private"}),
    )
    .await;
    let (status, _) = add_route(
        &server,
        "internal",
        json!({"method": "GET", "path": "/admin", "function": "admin"}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, out, _) = send(&server, Method::GET, "/p/internal/admin").await;
    assert_eq!(status, 401, "{out}");
    let resp = server
        .send(
            server
                .public(Method::GET, "/p/internal/admin")
                .header("authorization", format!("Bearer {TOKEN}")),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
}
