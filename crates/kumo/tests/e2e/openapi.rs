//! The OpenAPI document at `/api/v1/openapi.json` is the API's contract,
//! and a generated client believes it. These tests call every operation
//! the document lists on a real server and hold each answer to it: its
//! status must be one the operation documents, and its JSON body must
//! validate against the documented schema (JSON Schema 2020-12, the
//! dialect of OpenAPI 3.1). The bodies the tests send are checked against
//! the document too, and bodies made from the document alone (required
//! properties, examples, minimums) must be accepted. An operation added to
//! the document without a call here fails
//! `every_operation_answers_as_the_document_says`.

use std::collections::{BTreeSet, HashMap};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder};
use serde_json::{Map, Value, json};

use crate::support::{Resp, TOKEN, TestServer, tar_file, tar_gz};

const HELLO: &str = "def handler(event):\n    print('hello')\n    return event\n";

/// `(METHOD, path template)` of an operation, as the document names it.
type Operation = (String, String);

/// The document of a running server, and what the test did with it.
struct Contract {
    doc: Value,
    validators: HashMap<String, jsonschema::Validator>,
    /// Operations that answered with success at least once.
    exercised: BTreeSet<Operation>,
}

impl Contract {
    async fn fetch(server: &TestServer) -> Contract {
        let doc = server
            .send(server.public(Method::GET, "/api/v1/openapi.json"))
            .await
            .expect_status(200);
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1")),
            "the document is OpenAPI 3.1, whose schemas are JSON Schema 2020-12: {}",
            doc["openapi"]
        );
        Contract {
            doc,
            validators: HashMap::new(),
            exercised: BTreeSet::new(),
        }
    }

    /// Every operation of the document.
    fn operations(&self) -> BTreeSet<Operation> {
        let paths = self.doc["paths"]
            .as_object()
            .expect("the document has paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .expect("a path item is an object")
                    .iter()
                    .filter(|(_, op)| op.get("responses").is_some())
                    .map(|(method, _)| (method.to_ascii_uppercase(), path.clone()))
            })
            .collect()
    }

    fn operation(&self, method: &Method, template: &str) -> &Value {
        let op = &self.doc["paths"][template][method.as_str().to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {template} is not in the document");
        op
    }

    /// The JSON pointer of `parts` inside the document.
    fn pointer(parts: &[&str]) -> String {
        parts
            .iter()
            .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
            .collect()
    }

    /// The schema at `pointer` as a document of its own that carries the
    /// components its `$ref`s point to.
    fn standalone(&self, pointer: &str) -> Value {
        let schema = self
            .doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("the document has no schema at {pointer}"));
        match schema {
            Value::Object(map) => {
                let mut root = map.clone();
                root.insert("components".into(), self.doc["components"].clone());
                root.insert(
                    "$schema".into(),
                    json!("https://json-schema.org/draft/2020-12/schema"),
                );
                Value::Object(root)
            }
            other => other.clone(),
        }
    }

    /// Checks `value` against the schema at `pointer` in the document.
    fn validate(&mut self, pointer: &str, value: &Value) -> Result<(), String> {
        if !self.validators.contains_key(pointer) {
            let root = self.standalone(pointer);
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .build(&root)
                .unwrap_or_else(|e| panic!("the schema at {pointer} does not compile: {e}"));
            self.validators.insert(pointer.to_string(), validator);
        }
        let errors: Vec<String> = self.validators[pointer]
            .iter_errors(value)
            .map(|e| format!("{e} (at '{}')", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Whether `value` is valid for the schema at `pointer`.
    fn is_valid(&mut self, pointer: &str, value: &Value) -> bool {
        self.validate(pointer, value).is_ok()
    }

    /// Fails unless `body` is a valid JSON request body of the operation.
    fn check_request(&mut self, method: &Method, template: &str, body: &Value) {
        let m = method.as_str().to_ascii_lowercase();
        let op = self.operation(method, template);
        assert!(
            op["requestBody"]["content"]["application/json"].is_object(),
            "{method} {template} documents no JSON body, yet the test sends one"
        );
        let pointer = Self::pointer(&[
            "paths",
            template,
            &m,
            "requestBody",
            "content",
            "application/json",
            "schema",
        ]);
        if let Err(e) = self.validate(&pointer, body) {
            panic!(
                "{method} {template}: the body sent is not valid by the document: {e}\nbody: {body}"
            );
        }
    }

    /// Fails unless `resp` is an answer the operation documents: its
    /// status, its media type, and a JSON body valid for its schema.
    fn check_response(&mut self, method: &Method, template: &str, resp: &Resp) {
        let m = method.as_str().to_ascii_lowercase();
        let status = resp.status.as_u16().to_string();
        let op = self.operation(method, template);
        let Some(documented) = op["responses"].get(&status) else {
            let known: Vec<&String> = op["responses"]
                .as_object()
                .map(|r| r.keys().collect())
                .unwrap_or_default();
            panic!(
                "{method} {template} answered {status}, which the document does not list (it lists {known:?}); body: {}",
                resp.text()
            );
        };
        let content = documented.get("content").and_then(Value::as_object);
        let media_type = resp
            .header("content-type")
            .map(|c| c.split(';').next().unwrap_or_default().trim().to_string());
        match content {
            None => assert!(
                resp.body.is_empty(),
                "{method} {template} answered {status} with a body, but the document lists none: {}",
                resp.text()
            ),
            Some(content) => {
                let media_type = media_type.unwrap_or_else(|| {
                    panic!("{method} {template} answered {status} without a Content-Type")
                });
                assert!(
                    content.contains_key(&media_type),
                    "{method} {template} answered {status} as {media_type}; the document lists {:?}",
                    content.keys().collect::<Vec<_>>()
                );
                if media_type == "application/json" {
                    let body = resp.json();
                    let pointer = Self::pointer(&[
                        "paths",
                        template,
                        &m,
                        "responses",
                        &status,
                        "content",
                        "application/json",
                        "schema",
                    ]);
                    if let Err(e) = self.validate(&pointer, &body) {
                        panic!(
                            "{method} {template} answered {status} with a body the document does not allow: {e}\nbody: {body}"
                        );
                    }
                }
            }
        }
        if resp.status.is_success() {
            self.exercised
                .insert((method.as_str().to_string(), template.to_string()));
        }
    }

    /// Sends `request` (for the operation `method template`) and checks
    /// the answer.
    async fn send(
        &mut self,
        server: &TestServer,
        method: Method,
        template: &str,
        request: RequestBuilder,
    ) -> Resp {
        let resp = server.send(request).await;
        self.check_response(&method, template, &resp);
        resp
    }

    /// An authenticated call with an optional JSON body; the body is
    /// checked against the document before it is sent.
    async fn call(
        &mut self,
        server: &TestServer,
        method: Method,
        template: &str,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        let mut request = server.authed(method.clone(), path);
        if let Some(body) = body {
            self.check_request(&method, template, &body);
            request = request.json(&body);
        }
        self.send(server, method, template, request).await
    }

    /// Like [`Contract::call`], and expects `status`.
    async fn expect(
        &mut self,
        server: &TestServer,
        (method, template, path): (Method, &str, &str),
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let resp = self
            .call(server, method.clone(), template, path, body)
            .await;
        assert_eq!(
            resp.status.as_u16(),
            status,
            "{method} {path}: {}",
            resp.text()
        );
        if resp.body.is_empty() {
            Value::Null
        } else {
            resp.json()
        }
    }
}

/// `template` with its `{name}`s replaced.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut path = template.to_string();
    for (name, value) in values {
        path = path.replace(&format!("{{{name}}}"), value);
    }
    assert!(
        !path.contains('{'),
        "no value for a parameter of {template}"
    );
    path
}

const PROJECTS: &str = "/api/v1/projects";
const PROJECT: &str = "/api/v1/projects/{project}";
const FUNCTIONS: &str = "/api/v1/projects/{project}/functions";
const FUNCTION: &str = "/api/v1/projects/{project}/functions/{function}";
const DEPLOYMENTS: &str = "/api/v1/projects/{project}/functions/{function}/deployments";
const DEPLOYMENT: &str = "/api/v1/projects/{project}/functions/{function}/deployments/{version}";
const FILES: &str = "/api/v1/projects/{project}/functions/{function}/deployments/{version}/files";
const ACTIVATE: &str =
    "/api/v1/projects/{project}/functions/{function}/deployments/{version}/activate";
const INVOKE: &str = "/api/v1/projects/{project}/functions/{function}/invoke";
const INVOCATIONS: &str = "/api/v1/projects/{project}/functions/{function}/invocations";
const LOGS: &str = "/api/v1/projects/{project}/functions/{function}/logs";
const METRICS: &str = "/api/v1/projects/{project}/functions/{function}/metrics";
const ENV: &str = "/api/v1/projects/{project}/env";
const ENV_KEY: &str = "/api/v1/projects/{project}/env/{key}";
const ROUTES: &str = "/api/v1/projects/{project}/routes";
const ROUTE: &str = "/api/v1/projects/{project}/routes/{id}";
const INVOCATION: &str = "/api/v1/invocations/{id}";
const REPLAY: &str = "/api/v1/invocations/{id}/replay";
const TOKENS: &str = "/api/v1/tokens";
const TOKEN_ID: &str = "/api/v1/tokens/{id}";
const SESSION: &str = "/api/v1/auth/session";
const HTTP: &str = "/api/v1/projects/{project}/functions/{function}/http";

/// The fixtures' path parameters.
const SHOP: &[(&str, &str)] = &[
    ("project", "shop"),
    ("function", "hello"),
    ("version", "1"),
    ("key", "API_URL"),
];

#[tokio::test]
async fn every_operation_answers_as_the_document_says() {
    let server = TestServer::start().await;
    let mut c = Contract::fetch(&server).await;
    let s = &server;
    let at = |template: &str| fill(template, SHOP);

    // Accounts.
    c.expect(s, (Method::GET, "/api/v1/me", "/api/v1/me"), None, 200)
        .await;
    c.expect(
        s,
        (Method::GET, "/api/v1/templates", "/api/v1/templates"),
        None,
        200,
    )
    .await;
    let login = "/api/v1/auth/login";
    let password = server.admin_password.clone();
    c.expect(
        s,
        (Method::POST, login, login),
        Some(json!({"username": "admin", "password": password})),
        200,
    )
    .await;
    c.expect(
        s,
        (Method::POST, login, login),
        Some(json!({"username": "admin", "password": "wrong"})),
        401,
    )
    .await;
    let resp = c
        .send(
            s,
            Method::POST,
            login,
            s.public(Method::POST, login).body("{not json"),
        )
        .await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    // The dashboard's session: started, read back by its cookie, ended.
    let started = c
        .send(
            s,
            Method::POST,
            SESSION,
            s.public(Method::POST, SESSION)
                .json(&json!({"username": "admin", "password": password})),
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.text());
    let cookie = started
        .header("set-cookie")
        .and_then(|c| c.split(';').next().map(str::to_string))
        .expect("a session cookie");
    let read = c
        .send(
            s,
            Method::GET,
            SESSION,
            s.public(Method::GET, SESSION)
                .header(reqwest::header::COOKIE, &cookie),
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.text());
    c.expect(s, (Method::GET, SESSION, SESSION), None, 401)
        .await;
    c.expect(
        s,
        (Method::POST, SESSION, SESSION),
        Some(json!({"username": "admin", "password": "wrong"})),
        401,
    )
    .await;
    c.expect(s, (Method::DELETE, SESSION, SESSION), None, 204)
        .await;
    // Failed logins are throttled (per user name and address).
    let mut throttled = false;
    for _ in 0..20 {
        let resp = c
            .call(
                s,
                Method::POST,
                login,
                login,
                Some(json!({"username": "nobody", "password": "wrong"})),
            )
            .await;
        if resp.status == 429 {
            throttled = true;
            break;
        }
    }
    assert!(throttled, "failed logins are answered 429 at some point");
    // A token without a body, with `{}`, with a name.
    for body in [None, Some(json!({})), Some(json!({"name": "ci"}))] {
        c.expect(s, (Method::POST, TOKENS, TOKENS), body, 201).await;
    }
    let resp = c
        .send(
            s,
            Method::POST,
            TOKENS,
            s.authed(Method::POST, TOKENS).body("null"),
        )
        .await;
    assert_eq!(resp.status, 400, "a null body is not an absent one");
    let token = c
        .expect(
            s,
            (Method::POST, TOKENS, TOKENS),
            Some(json!({"name": "gone"})),
            201,
        )
        .await;
    let tokens = c.expect(s, (Method::GET, TOKENS, TOKENS), None, 200).await;
    assert!(
        tokens["items"].as_array().is_some_and(|t| t.len() >= 5),
        "{tokens}"
    );
    let token_path = fill(TOKEN_ID, &[("id", token["id"].as_str().expect("id"))]);
    c.expect(s, (Method::DELETE, TOKEN_ID, &token_path), None, 204)
        .await;
    c.expect(s, (Method::DELETE, TOKEN_ID, &token_path), None, 404)
        .await;

    // Projects.
    c.expect(
        s,
        (Method::POST, PROJECTS, PROJECTS),
        Some(json!({"name": "shop", "description": "a shop"})),
        201,
    )
    .await;
    c.expect(
        s,
        (Method::POST, PROJECTS, PROJECTS),
        Some(json!({"name": "shop"})),
        409,
    )
    .await;
    let resp = c
        .send(
            s,
            Method::POST,
            PROJECTS,
            s.authed(Method::POST, PROJECTS)
                .json(&json!({"name": "Shop"})),
        )
        .await;
    resp.expect_error(400, "invalid_name");
    let huge = json!({"name": "big", "description": "x".repeat(7 * 1024 * 1024)});
    let resp = c
        .send(
            s,
            Method::POST,
            PROJECTS,
            s.authed(Method::POST, PROJECTS).json(&huge),
        )
        .await;
    resp.expect_error(413, "payload_too_large");
    c.expect(s, (Method::GET, PROJECTS, PROJECTS), None, 200)
        .await;
    c.expect(
        s,
        (Method::GET, PROJECTS, "/api/v1/projects?limit=1"),
        None,
        200,
    )
    .await;
    c.expect(s, (Method::GET, PROJECT, &at(PROJECT)), None, 200)
        .await;
    c.expect(
        s,
        (Method::GET, PROJECT, "/api/v1/projects/nope"),
        None,
        404,
    )
    .await;
    c.expect(
        s,
        (Method::PATCH, PROJECT, &at(PROJECT)),
        Some(json!({"description": "a small shop", "cors": {"allowed_origins": ["https://shop.example.com"]}})),
        200,
    )
    .await;
    c.expect(
        s,
        (Method::POST, PROJECTS, PROJECTS),
        Some(json!({"name": "gone"})),
        201,
    )
    .await;
    c.expect(
        s,
        (Method::DELETE, PROJECT, "/api/v1/projects/gone"),
        None,
        204,
    )
    .await;
    c.expect(
        s,
        (Method::DELETE, PROJECT, "/api/v1/projects/gone"),
        None,
        404,
    )
    .await;

    // Functions and deployments: a function made empty, then deployed
    // as JSON and as a .tar.gz.
    c.expect(
        s,
        (Method::POST, FUNCTIONS, &at(FUNCTIONS)),
        Some(json!({"name": "hello", "timeout_ms": 10000, "visibility": "private"})),
        201,
    )
    .await;
    c.expect(
        s,
        (Method::POST, FUNCTIONS, &at(FUNCTIONS)),
        Some(json!({"name": "hello"})),
        409,
    )
    .await;
    c.expect(
        s,
        (Method::POST, FUNCTIONS, "/api/v1/projects/nope/functions"),
        Some(json!({"name": "hello"})),
        404,
    )
    .await;
    c.expect(s, (Method::GET, FUNCTION, &at(FUNCTION)), None, 200)
        .await;
    c.expect(
        s,
        (Method::PATCH, FUNCTION, &at(FUNCTION)),
        Some(json!({"timeout_ms": 5000, "visibility": "public"})),
        200,
    )
    .await;
    let deployed = c
        .expect(
            s,
            (Method::POST, DEPLOYMENTS, &at(DEPLOYMENTS)),
            Some(json!({"files": {"main.py": HELLO}, "memory_mb": 128})),
            201,
        )
        .await;
    assert_eq!(deployed["version"], 1, "{deployed}");
    c.expect(
        s,
        (Method::POST, DEPLOYMENTS, &at(DEPLOYMENTS)),
        Some(json!({"files": {"main.py": HELLO}})),
        200,
    )
    .await;
    let resp = c
        .send(
            s,
            Method::POST,
            DEPLOYMENTS,
            s.authed(Method::POST, &at(DEPLOYMENTS))
                .json(&json!({"files": {"main.py": HELLO}, "colour": "blue"})),
        )
        .await;
    assert_eq!(
        resp.status,
        400,
        "an unknown property is refused: {}",
        resp.text()
    );
    let resp = c
        .send(
            s,
            Method::POST,
            DEPLOYMENTS,
            s.authed(Method::POST, &at(DEPLOYMENTS))
                .header(CONTENT_TYPE, "text/plain")
                .body("print('hi')"),
        )
        .await;
    assert_eq!(resp.status, 415, "{}", resp.text());
    let archive = tar_gz(|b| tar_file(b, "main.py", &HELLO.replace("hello", "hello v2")));
    let resp = c
        .send(
            s,
            Method::POST,
            DEPLOYMENTS,
            s.authed(
                Method::POST,
                &format!("{}?timeout_ms=2000", at(DEPLOYMENTS)),
            )
            .header(CONTENT_TYPE, "application/gzip")
            .body(archive),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    c.expect(s, (Method::GET, FUNCTIONS, &at(FUNCTIONS)), None, 200)
        .await;
    c.expect(s, (Method::GET, DEPLOYMENTS, &at(DEPLOYMENTS)), None, 200)
        .await;
    c.expect(s, (Method::GET, DEPLOYMENT, &at(DEPLOYMENT)), None, 200)
        .await;
    let bad_version = DEPLOYMENT
        .replace("{project}", "shop")
        .replace("{function}", "hello")
        .replace("{version}", "one");
    c.expect(s, (Method::GET, DEPLOYMENT, &bad_version), None, 400)
        .await;
    let latest = DEPLOYMENT
        .replace("{project}", "shop")
        .replace("{function}", "hello")
        .replace("{version}", "9");
    c.expect(s, (Method::GET, DEPLOYMENT, &latest), None, 404)
        .await;
    let files = c
        .send(s, Method::GET, FILES, s.authed(Method::GET, &at(FILES)))
        .await;
    assert_eq!(files.status, 200);
    assert_eq!(
        files.header("content-type").as_deref(),
        Some("application/gzip")
    );
    c.expect(s, (Method::POST, ACTIVATE, &at(ACTIVATE)), None, 200)
        .await;

    // Runs: sync and async, with and without a body.
    let run = c
        .expect(
            s,
            (Method::POST, INVOKE, &at(INVOKE)),
            Some(json!({"a": 1})),
            200,
        )
        .await;
    assert_eq!(run["output"], json!({"a": 1}), "{run}");
    let run_id = run["id"].as_str().expect("a run id").to_string();
    let empty = c
        .expect(s, (Method::POST, INVOKE, &at(INVOKE)), None, 200)
        .await;
    assert_eq!(
        empty["output"],
        json!({}),
        "an empty body is the event {{}}: {empty}"
    );
    let async_path = format!("{}?async=true", at(INVOKE));
    let queued = c
        .expect(s, (Method::POST, INVOKE, &async_path), None, 202)
        .await;
    let queued = server
        .run_record(
            queued["id"].as_str().expect("a run id"),
            std::time::Duration::from_secs(30),
        )
        .await;
    assert_eq!(queued["trigger"], "async", "{queued}");
    c.expect(
        s,
        (Method::POST, INVOKE, &async_path),
        Some(json!([1, 2])),
        202,
    )
    .await;
    let resp = c
        .send(
            s,
            Method::POST,
            INVOKE,
            s.authed(Method::POST, &at(INVOKE)).body("{oops"),
        )
        .await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    c.expect(
        s,
        (
            Method::POST,
            INVOKE,
            "/api/v1/projects/shop/functions/nope/invoke",
        ),
        None,
        404,
    )
    .await;
    c.expect(
        s,
        (Method::POST, HTTP, &at(HTTP)),
        Some(json!({"method": "POST", "path": "/a", "query": "b=1", "headers": [["x-a", "1"]], "body": "hi"})),
        200,
    )
    .await;
    c.expect(s, (Method::POST, HTTP, &at(HTTP)), Some(json!({})), 200)
        .await;
    c.expect(
        s,
        (
            Method::POST,
            HTTP,
            "/api/v1/projects/shop/functions/nope/http",
        ),
        Some(json!({})),
        404,
    )
    .await;
    server
        .run_record(&run_id, std::time::Duration::from_secs(30))
        .await;
    let invocation = fill(INVOCATION, &[("id", &run_id)]);
    c.expect(s, (Method::GET, INVOCATION, &invocation), None, 200)
        .await;
    c.expect(
        s,
        (Method::GET, INVOCATION, "/api/v1/invocations/nope"),
        None,
        404,
    )
    .await;
    c.expect(
        s,
        (Method::POST, REPLAY, &fill(REPLAY, &[("id", &run_id)])),
        None,
        200,
    )
    .await;
    c.expect(
        s,
        (Method::POST, REPLAY, "/api/v1/invocations/nope/replay"),
        None,
        404,
    )
    .await;
    c.expect(s, (Method::GET, INVOCATIONS, &at(INVOCATIONS)), None, 200)
        .await;
    c.expect(
        s,
        (
            Method::GET,
            INVOCATIONS,
            &format!("{}?status=succeeded&limit=2", at(INVOCATIONS)),
        ),
        None,
        200,
    )
    .await;
    let lines = c.expect(s, (Method::GET, LOGS, &at(LOGS)), None, 200).await;
    assert!(
        lines["items"].as_array().is_some_and(|l| !l.is_empty()),
        "{lines}"
    );
    c.expect(
        s,
        (Method::GET, LOGS, &format!("{}?since=1h", at(LOGS))),
        None,
        200,
    )
    .await;
    // Following: the status and media type (the stream goes on).
    let follow = s
        .authed(Method::GET, &format!("{}?follow=true", at(LOGS)))
        .send()
        .await
        .expect("following the logs");
    assert_eq!(follow.status(), 200);
    let media = follow
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(media.starts_with("text/event-stream"), "{media}");
    assert!(
        c.operation(&Method::GET, LOGS)["responses"]["200"]["content"]["text/event-stream"]
            .is_object(),
        "the document lists the event stream"
    );
    drop(follow);
    c.expect(s, (Method::GET, METRICS, &at(METRICS)), None, 200)
        .await;
    c.expect(
        s,
        (Method::GET, METRICS, &format!("{}?window=15m", at(METRICS))),
        None,
        200,
    )
    .await;
    c.expect(
        s,
        (Method::GET, METRICS, &format!("{}?window=2d", at(METRICS))),
        None,
        400,
    )
    .await;

    // A project's variables.
    c.expect(
        s,
        (Method::PUT, ENV_KEY, &at(ENV_KEY)),
        Some(json!({"value": "https://api.example.com"})),
        201,
    )
    .await;
    c.expect(
        s,
        (Method::PUT, ENV_KEY, &at(ENV_KEY)),
        Some(json!({"value": "https://api2.example.com", "secret": false})),
        200,
    )
    .await;
    c.expect(
        s,
        (Method::PUT, ENV_KEY, "/api/v1/projects/shop/env/TOKEN"),
        Some(json!({"value": "s3cret", "secret": true})),
        201,
    )
    .await;
    c.expect(s, (Method::GET, ENV, &at(ENV)), None, 200).await;
    let secret = c
        .expect(
            s,
            (Method::GET, ENV_KEY, "/api/v1/projects/shop/env/TOKEN"),
            None,
            200,
        )
        .await;
    assert_eq!(secret["value"], "***", "{secret}");
    c.expect(s, (Method::DELETE, ENV_KEY, &at(ENV_KEY)), None, 204)
        .await;
    c.expect(s, (Method::GET, ENV_KEY, &at(ENV_KEY)), None, 404)
        .await;
    c.expect(s, (Method::DELETE, ENV_KEY, &at(ENV_KEY)), None, 404)
        .await;

    // Routes.
    let route = json!({"method": "GET", "path": "/hello/:name", "function": "hello"});
    let created = c
        .expect(
            s,
            (Method::POST, ROUTES, &at(ROUTES)),
            Some(route.clone()),
            201,
        )
        .await;
    c.expect(s, (Method::POST, ROUTES, &at(ROUTES)), Some(route), 409)
        .await;
    c.expect(s, (Method::GET, ROUTES, &at(ROUTES)), None, 200)
        .await;
    let route_path = fill(
        ROUTE,
        &[
            ("project", "shop"),
            ("id", created["id"].as_str().expect("id")),
        ],
    );
    c.expect(s, (Method::DELETE, ROUTE, &route_path), None, 204)
        .await;
    c.expect(s, (Method::DELETE, ROUTE, &route_path), None, 404)
        .await;

    // Last, a function goes.
    c.expect(
        s,
        (Method::POST, FUNCTIONS, &at(FUNCTIONS)),
        Some(json!({"name": "gone"})),
        201,
    )
    .await;
    let gone = "/api/v1/projects/shop/functions/gone";
    c.expect(s, (Method::DELETE, FUNCTION, gone), None, 204)
        .await;
    c.expect(s, (Method::DELETE, FUNCTION, gone), None, 404)
        .await;

    // Every operation that takes a token refuses a request without one,
    // or with a wrong one, with a documented 401.
    let mut secured = 0;
    for (method, template) in c.operations() {
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        if c.operation(&method, &template)["security"].is_null() {
            continue;
        }
        secured += 1;
        let path = fill(
            &template,
            &[
                ("project", "shop"),
                ("function", "hello"),
                ("version", "1"),
                ("key", "API_URL"),
                ("id", "x"),
            ],
        );
        for credentials in [
            None,
            Some("Bearer kumo_not_a_token".to_string()),
            Some(format!("Bearer {TOKEN}x")),
        ] {
            let mut request = s.public(method.clone(), &path);
            if let Some(credentials) = credentials {
                request = request.header(AUTHORIZATION, credentials);
            }
            let resp = c.send(s, method.clone(), &template, request).await;
            resp.expect_error(401, "unauthorized");
        }
    }
    assert!(secured >= 30, "only {secured} operations take a token?");

    // Operations with query parameters refuse unknown ones with a
    // documented 400 (a misspelt `limt` is not silently ignored).
    for (method, template) in c.operations() {
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        let has_query = c.operation(&method, &template)["parameters"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["in"] == "query"));
        if !has_query {
            continue;
        }
        let path = format!("{}?limt=5", at(&template));
        let resp = c
            .send(
                s,
                method.clone(),
                &template,
                s.authed(method.clone(), &path),
            )
            .await;
        let message = resp.expect_error(400, "bad_request");
        assert!(message.contains("limt"), "{method} {path}: {message}");
    }

    let missing: Vec<Operation> = c.operations().difference(&c.exercised).cloned().collect();
    assert!(
        missing.is_empty(),
        "operations in the document that this test never called with success; call them: {missing:?}"
    );
}

/// The schema `schema` points to, if it is a `$ref`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(target) => {
            let pointer = target.trim_start_matches('#');
            resolve(
                doc,
                doc.pointer(pointer)
                    .unwrap_or_else(|| panic!("a $ref to nowhere: {target}")),
            )
        }
        None => schema,
    }
}

/// A value for `schema` made from the document alone: its first example,
/// else its first enum value or non-null alternative, else the least its
/// type allows. Objects get their required properties, or with `full`
/// every property.
fn sample(doc: &Value, schema: &Value, full: bool) -> Value {
    let schema = resolve(doc, schema);
    if let Some(example) = schema["examples"].get(0) {
        return example.clone();
    }
    if let Some(value) = schema["enum"].get(0) {
        return value.clone();
    }
    for composition in ["oneOf", "anyOf"] {
        if let Some(options) = schema[composition].as_array() {
            let option = options
                .iter()
                .find(|o| o["type"] != "null")
                .expect("an alternative that is not null");
            return sample(doc, option, full);
        }
    }
    let kind = match &schema["type"] {
        Value::String(t) => t.as_str(),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ => "any",
    };
    match kind {
        "object" => {
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut object = Map::new();
            if let Some(properties) = schema["properties"].as_object() {
                for (name, property) in properties {
                    if full || required.contains(&name.as_str()) {
                        object.insert(name.clone(), sample(doc, property, full));
                    }
                }
            }
            Value::Object(object)
        }
        "array" => {
            let least = schema["minItems"].as_u64().unwrap_or(0);
            Value::Array(
                (0..least)
                    .map(|_| sample(doc, &schema["items"], full))
                    .collect(),
            )
        }
        "string" => {
            let least = schema["minLength"].as_u64().unwrap_or(1);
            json!("x".repeat(usize::try_from(least.max(1)).expect("a small length")))
        }
        "integer" | "number" => match &schema["minimum"] {
            Value::Null => json!(0),
            least => least.clone(),
        },
        "boolean" => json!(false),
        "null" => Value::Null,
        _ => json!({}),
    }
}

/// A request body's JSON schema in the document, if it has one.
fn json_body_schema<'a>(c: &'a Contract, method: &Method, template: &str) -> Option<&'a Value> {
    c.operation(method, template)["requestBody"]["content"]
        .get("application/json")
        .map(|content| &content["schema"])
}

/// Bodies made from the document alone are accepted: for every operation
/// with a JSON body, its required properties only, and every property;
/// where the document closes the object (`additionalProperties: false`),
/// an unknown property is refused, and where it does not, it is not; an
/// optional body may be left out. (An `allOf` with a closed part, which
/// no body satisfies, fails here.)
#[tokio::test]
async fn bodies_made_from_the_document_are_accepted() {
    let server = TestServer::start().await;
    let s = &server;
    let mut c = Contract::fetch(s).await;
    s.deploy("shop", "hello", &[("main.py", HELLO)], json!({}))
        .await;
    let password = server.admin_password.clone();
    let mut covered = 0;
    for (method, template) in c.operations() {
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        let Some(schema) = json_body_schema(&c, &method, &template).cloned() else {
            continue;
        };
        covered += 1;
        let path = fill(&template, SHOP);
        // What the document cannot know: real credentials, names not yet
        // taken, a route path not yet routed.
        let fresh = |kind: &str| -> Map<String, Value> {
            let mut values = Map::new();
            match (method.as_str(), template.as_str()) {
                ("POST", "/api/v1/auth/login") | ("POST", SESSION) => {
                    values.insert("username".into(), json!("admin"));
                    values.insert("password".into(), json!(password));
                }
                ("POST", PROJECTS) | ("POST", FUNCTIONS) => {
                    values.insert("name".into(), json!(format!("made-{kind}")));
                }
                ("POST", ROUTES) => {
                    values.insert("path".into(), json!(format!("/{kind}/:id")));
                }
                _ => {}
            }
            values
        };
        let closed = resolve(&c.doc, &schema)["additionalProperties"] == false;
        for (kind, full) in [("required", false), ("full", true), ("unknown", false)] {
            let mut body = sample(&c.doc, &schema, full);
            if let Value::Object(map) = &mut body {
                map.extend(fresh(kind));
            }
            if kind == "unknown" {
                let Value::Object(map) = &mut body else {
                    continue;
                };
                map.insert("unknown_property".into(), json!(1));
                let resp = c
                    .send(
                        s,
                        method.clone(),
                        &template,
                        s.authed(method.clone(), &path).json(&body),
                    )
                    .await;
                let refused = resp.status == 400;
                assert_eq!(
                    refused,
                    closed,
                    "{method} {template}: the document says additionalProperties {}, the server answered {} to {body}: {}",
                    !closed,
                    resp.status,
                    resp.text()
                );
                continue;
            }
            let resp = c
                .call(s, method.clone(), &template, &path, Some(body.clone()))
                .await;
            assert!(
                resp.status.is_success(),
                "{method} {template}: a body made from the document ({kind} properties) was refused: {body}\n{} {}",
                resp.status,
                resp.text()
            );
        }
        let optional = c.operation(&method, &template)["requestBody"]["required"] != true;
        let resp = c
            .send(
                s,
                method.clone(),
                &template,
                s.authed(method.clone(), &path),
            )
            .await;
        assert_eq!(
            resp.status.is_success(),
            optional,
            "{method} {template}: the document says the body is {}, the server answered {} without one: {}",
            if optional { "optional" } else { "required" },
            resp.status,
            resp.text()
        );
    }
    assert!(covered >= 10, "only {covered} operations have JSON bodies?");
}

/// Names, settings and query parameters: what the document's `pattern`,
/// `maxLength`, `minimum` and `maximum` allow is what the server accepts.
#[tokio::test]
async fn limits_and_names_are_what_the_document_says() {
    let server = TestServer::start().await;
    let s = &server;
    let mut c = Contract::fetch(s).await;
    s.deploy("shop", "hello", &[("main.py", HELLO)], json!({}))
        .await;

    // Project and function names, and variable names.
    let long = "a".repeat(63);
    let too_long = "a".repeat(64);
    let names = [
        "a", "a1", "a-b", "abc-9-x", &long, &too_long, "", "A", "1a", "-a", "a-", "a_b", "a.b",
        "é", "aé",
    ];
    let name_schema = "/components/schemas/Name";
    for (i, name) in names.iter().enumerate() {
        let allowed = c.is_valid(name_schema, &json!(name));
        let project = c
            .send(
                s,
                Method::POST,
                PROJECTS,
                s.authed(Method::POST, PROJECTS)
                    .json(&json!({"name": name})),
            )
            .await;
        assert_eq!(
            project.status.is_success(),
            allowed,
            "project name {name:?}: the document {} it, the server answered {}: {}",
            if allowed { "allows" } else { "refuses" },
            project.status,
            project.text()
        );
        let function = c
            .send(
                s,
                Method::POST,
                FUNCTIONS,
                s.authed(Method::POST, &fill(FUNCTIONS, SHOP))
                    .json(&json!({"name": name})),
            )
            .await;
        assert_eq!(
            function.status.is_success(),
            allowed,
            "function name {name:?} (#{i}): the document {} it, the server answered {}: {}",
            if allowed { "allows" } else { "refuses" },
            function.status,
            function.text()
        );
    }
    let x128 = "X".repeat(128);
    let x129 = "X".repeat(129);
    let keys = [
        "A", "_", "_a", "a1", "API_URL", &x128, &x129, "1A", "A-B", "A.B", "KUMO_X", "KUMO_",
        "KUMO", "PATH", "PATHS", "HOME", "TMPDIR", "TMPDIR2", "é",
    ];
    for key in keys {
        let allowed = c.is_valid("/components/schemas/EnvKey", &json!(key));
        let path = fill(ENV_KEY, &[("project", "shop"), ("key", key)]);
        let resp = c
            .call(s, Method::PUT, ENV_KEY, &path, Some(json!({"value": "v"})))
            .await;
        assert_eq!(
            resp.status.is_success(),
            allowed,
            "variable name {key:?}: the document {} it, the server answered {}: {}",
            if allowed { "allows" } else { "refuses" },
            resp.status,
            resp.text()
        );
        if allowed {
            c.call(s, Method::DELETE, ENV_KEY, &path, None).await;
        }
    }

    // Each setting's range, at its ends and just past them.
    let settings = resolve(&c.doc, &c.doc["components"]["schemas"]["FunctionSettings"]).clone();
    let mut ranged = 0;
    for (name, property) in settings["properties"].as_object().expect("properties") {
        let (Some(min), Some(max)) = (property["minimum"].as_u64(), property["maximum"].as_u64())
        else {
            continue;
        };
        ranged += 1;
        let path = fill(FUNCTION, SHOP);
        for (value, ok) in [(min, true), (max, true), (min - 1, false), (max + 1, false)] {
            let body = json!({ name.as_str(): value });
            let resp = c
                .send(
                    s,
                    Method::PATCH,
                    FUNCTION,
                    s.authed(Method::PATCH, &path).json(&body),
                )
                .await;
            assert_eq!(
                resp.status.is_success(),
                ok,
                "{name} = {value}: the document says {min} to {max}, the server answered {}: {}",
                resp.status,
                resp.text()
            );
        }
        // The same ranges hold for a .tar.gz's settings in the query.
        let archive = tar_gz(|b| tar_file(b, "main.py", HELLO));
        for value in [min - 1, max + 1] {
            let resp = c
                .send(
                    s,
                    Method::POST,
                    DEPLOYMENTS,
                    s.authed(
                        Method::POST,
                        &format!("{}?{name}={value}", fill(DEPLOYMENTS, SHOP)),
                    )
                    .header(CONTENT_TYPE, "application/gzip")
                    .body(archive.clone()),
                )
                .await;
            assert_eq!(resp.status, 400, "?{name}={value}: {}", resp.text());
        }
    }
    assert_eq!(ranged, 6, "every numeric setting has a documented range");

    // Query parameters with a range: `limit` of the lists and the logs.
    let mut checked = 0;
    for (method, template) in c.operations() {
        if method != "GET" {
            continue;
        }
        let parameters = c.operation(&Method::GET, &template)["parameters"].clone();
        for parameter in parameters.as_array().into_iter().flatten() {
            let schema = &parameter["schema"];
            if parameter["in"] != "query" {
                continue;
            }
            let (Some(min), Some(max)) = (schema["minimum"].as_i64(), schema["maximum"].as_i64())
            else {
                continue;
            };
            checked += 1;
            let name = parameter["name"].as_str().expect("a name");
            for (value, ok) in [(min, true), (max, true), (min - 1, false), (max + 1, false)] {
                let path = format!("{}?{name}={value}", fill(&template, SHOP));
                let resp = c
                    .send(s, Method::GET, &template, s.authed(Method::GET, &path))
                    .await;
                assert_eq!(
                    resp.status.is_success(),
                    ok,
                    "GET {path}: the document says {min} to {max}, the server answered {}: {}",
                    resp.status,
                    resp.text()
                );
            }
        }
    }
    assert!(checked >= 5, "only {checked} ranged query parameters?");
}
