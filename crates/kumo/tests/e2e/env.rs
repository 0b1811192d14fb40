//! A project's environment variables and secrets: set, read back (secrets
//! masked), injected into instances, rotated, removed; a secret's clear
//! value never stored, logged or shown.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestServer, py};

const SECRET: &str = "sk-live-7f3a9c2e5b1d4a60";
const ROTATED: &str = "sk-live-rotated-0c9d8e7f";

async fn put_env(server: &TestServer, project: &str, key: &str, body: Value) -> (u16, Value) {
    let resp = server
        .call(
            Method::PUT,
            &format!("/api/v1/projects/{project}/env/{key}"),
            Some(body),
        )
        .await;
    (resp.status.as_u16(), resp.json())
}

/// Variables and secrets reach every new instance of the project's
/// functions; the API shows secrets as `***`; a rotation reaches the next
/// call; a removed variable is gone from it.
#[tokio::test]
async fn variables_and_secrets_reach_instances() {
    let server = TestServer::start().await;
    let reader = py(r#"
        import os

        def handler(event):
            return {
                "greeting": os.environ.get("GREETING"),
                "key_is": {"first": os.environ.get("API_KEY") == "FIRST", "rotated": os.environ.get("API_KEY") == "ROTATED"},
            }
    "#)
    .replace("FIRST", SECRET)
    .replace("ROTATED", ROTATED);
    server
        .deploy("app", "reader", &[("main.py", &reader)], json!({}))
        .await;

    let (status, var) = put_env(&server, "app", "GREETING", json!({"value": "hello"})).await;
    assert_eq!(status, 201, "{var}");
    assert_eq!(var["value"], "hello");
    let (status, var) = put_env(
        &server,
        "app",
        "API_KEY",
        json!({"value": SECRET, "secret": true}),
    )
    .await;
    assert_eq!(status, 201, "{var}");
    assert_eq!(var["value"], "***", "a secret is never read back: {var}");
    assert_eq!(var["secret"], true);

    let list = server
        .get("/api/v1/projects/app/env")
        .await
        .expect_status(200);
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{list}");
    assert_eq!(items[0]["key"], "API_KEY");
    assert_eq!(items[0]["value"], "***");
    assert_eq!(items[1]["key"], "GREETING");
    assert_eq!(items[1]["value"], "hello");
    let one = server
        .get("/api/v1/projects/app/env/API_KEY")
        .await
        .expect_status(200);
    assert_eq!(one["value"], "***");
    assert!(!list.to_string().contains(SECRET));

    let run = server.invoke("app", "reader", json!({})).await;
    assert_eq!(
        run["output"],
        json!({"greeting": "hello", "key_is": {"first": true, "rotated": false}}),
        "{run}"
    );

    // Rotation: the next call sees the new value, on a new instance.
    let (status, _) = put_env(
        &server,
        "app",
        "API_KEY",
        json!({"value": ROTATED, "secret": true}),
    )
    .await;
    assert_eq!(status, 200, "a change, not a creation");
    let run = server.invoke("app", "reader", json!({})).await;
    assert_eq!(run["output"]["key_is"]["rotated"], true, "{run}");
    assert_eq!(run["cold_start"], true, "a new instance: {run}");

    let resp = server
        .call(Method::DELETE, "/api/v1/projects/app/env/GREETING", None)
        .await;
    assert_eq!(resp.status, 204, "{}", resp.text());
    let run = server.invoke("app", "reader", json!({})).await;
    assert_eq!(run["output"]["greeting"], Value::Null, "{run}");
    let resp = server
        .call(Method::DELETE, "/api/v1/projects/app/env/GREETING", None)
        .await;
    resp.expect_error(404, "not_found");
}

/// The deploy-time load check runs with the project's environment: code
/// that needs a variable at import is refused until it is set.
#[tokio::test]
async fn the_load_check_sees_the_projects_variables() {
    let server = TestServer::start().await;
    server
        .deploy(
            "needs",
            "first",
            &[("main.py", "def handler(e):\n    return 1\n")],
            json!({}),
        )
        .await;
    let strict = py(r#"
        import os

        DATABASE = os.environ["DATABASE_NAME"]

        def handler(event):
            return DATABASE
    "#);
    let resp = server
        .try_deploy("needs", "strict", &[("main.py", &strict)], json!({}))
        .await;
    let message = resp.expect_error(400, "load_error");
    assert!(message.contains("DATABASE_NAME"), "{message}");
    let (status, _) = put_env(
        &server,
        "needs",
        "DATABASE_NAME",
        json!({"value": "orders"}),
    )
    .await;
    assert_eq!(status, 201);
    let resp = server
        .try_deploy("needs", "strict", &[("main.py", &strict)], json!({}))
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let run = server.invoke("needs", "strict", json!({})).await;
    assert_eq!(run["output"], "orders", "{run}");
}

/// SECURITY.md item 25: a secret's clear value is in no API answer about
/// the run (logs, error, stored output), in no file of the database, in the
/// server's log, or in `/metrics`. (The function's own HTTP answer is the
/// function's to make.)
#[tokio::test]
async fn a_secret_never_comes_back_in_clear() {
    let server = TestServer::start().await;
    let leaky = py(r#"
        import os

        def handler(event):
            key = os.environ["API_KEY"]
            print("using key", key)
            if event.get("fail"):
                raise ValueError("the key " + key + " was refused")
            return {"echo": key}
    "#);
    server
        .deploy("vault", "leaky", &[("main.py", &leaky)], json!({}))
        .await;
    let (status, _) = put_env(
        &server,
        "vault",
        "API_KEY",
        json!({"value": SECRET, "secret": true}),
    )
    .await;
    assert_eq!(status, 201);

    let run = server.invoke("vault", "leaky", json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let logs = run["logs"].as_str().expect("logs");
    assert!(
        logs.contains("using key ***"),
        "the log line is masked: {logs}"
    );
    let stored = server
        .run_record(
            run["id"].as_str().expect("id"),
            std::time::Duration::from_secs(10),
        )
        .await;
    assert_eq!(stored["output"], json!({"echo": "***"}), "{stored}");
    let failed = server.invoke("vault", "leaky", json!({"fail": true})).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("the key *** was refused")),
        "{failed}"
    );
    let logs_api = server
        .get("/api/v1/projects/vault/functions/leaky/logs")
        .await
        .expect_status(200);
    let metrics = server
        .send(server.authed(Method::GET, "/metrics"))
        .await
        .expect_ok_text();
    for (what, text) in [
        ("the invoke answer", run.to_string()),
        ("the failed run", failed.to_string()),
        ("the stored run", stored.to_string()),
        ("the logs API", logs_api.to_string()),
        ("/metrics", metrics),
        ("the server's log", server.log_tail()),
    ] {
        assert!(!text.contains(SECRET), "{what} holds the secret in clear");
    }
    let key_file = server.data_dir().join("secret.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file)
            .expect("the key file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the key file is private");
    // Whatever the database wrote so far, nothing holds the clear value.
    for entry in std::fs::read_dir(server.data_dir()).expect("the data dir") {
        let path = entry.expect("an entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !name.starts_with("kumo.db") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("reading the database");
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "{name} holds the secret in clear"
        );
    }
}

/// Bad names, values and bodies are refused, saying what is wrong.
#[tokio::test]
async fn variables_are_validated() {
    let server = TestServer::start().await;
    server
        .deploy(
            "checks",
            "f",
            &[("main.py", "def handler(e):\n    return 1\n")],
            json!({}),
        )
        .await;
    for (key, says) in [
        ("1ABC", "must not start with a digit"),
        ("A-B", "only letters, digits"),
        ("KUMO_FUNCTION", "Kumo sets this variable"),
        ("PATH", "Kumo sets this variable"),
    ] {
        let (status, body) = put_env(&server, "checks", key, json!({"value": "x"})).await;
        assert_eq!(status, 400, "{key}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{key}: {body}"
        );
    }
    let (status, body) = put_env(
        &server,
        "checks",
        "BIG",
        json!({"value": "x".repeat(17 * 1024)}),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    let (status, body) =
        put_env(&server, "checks", "X", json!({"value": "x", "secrt": true})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = put_env(&server, "checks", "X", json!({"value": 5})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = put_env(&server, "nowhere", "X", json!({"value": "x"})).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = put_env(&server, "checks", "lower_case_ok", json!({"value": ""})).await;
    assert_eq!(status, 201, "{body}");
}
