//! The starting points `kumo init` writes and the dashboard's gallery
//! offers: one definition for both. `{project}` in a file or the manifest
//! stands for the project's name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{FunctionSettings, Visibility};

/// A template: what it is, its function, its files, and the `kumo.toml`
/// the command line writes (whose contents must agree with the fields;
/// a test of `kumo-cli` checks that).
pub struct Template {
    pub name: &'static str,
    pub about: &'static str,
    /// The function's name.
    pub function: &'static str,
    pub runtime: &'static str,
    pub entrypoint: &'static str,
    pub settings: FunctionSettings,
    /// Routes to the function: (method, path).
    pub routes: &'static [(&'static str, &'static str)],
    /// Secrets it needs (names only).
    pub secrets: &'static [&'static str],
    /// Path → contents; `.kumoignore` is for the command line only.
    pub files: &'static [(&'static str, &'static str)],
    pub manifest: &'static str,
}

const KUMOIGNORE: &str = "# Files left out of deployments (gitignore syntax).\n# .git, __pycache__, .venv, .env and kumo.toml are always left out.\nnode_modules/\n*.log\n";

pub const TEMPLATES: &[Template] = &[
    Template {
        name: "python",
        about: "a Python function that says hello",
        function: "hello",
        runtime: "python",
        entrypoint: "main.py",
        settings: FunctionSettings::NONE,
        routes: &[],
        secrets: &[],
        files: &[
            (
                "main.py",
                r#"def handler(event, context):
    """Called for every request: event has method, path, query, headers, body."""
    name = event.get("query", {}).get("name", "world")
    print(f"greeting {name}")  # goes to the run's logs
    return {"hello": name}
"#,
            ),
            (".kumoignore", KUMOIGNORE),
        ],
        manifest: r#"name = "{project}"

[functions.hello]
runtime = "python"
entrypoint = "main.py"
"#,
    },
    Template {
        name: "python-api",
        about: "a small REST API in Python, with routes and path parameters",
        function: "items",
        runtime: "python",
        entrypoint: "api.py",
        settings: FunctionSettings::NONE,
        routes: &[("GET", "/items"), ("POST", "/items"), ("ANY", "/items/:id")],
        secrets: &[],
        files: &[
            (
                "api.py",
                r#"import json

# Kept while the instance is warm; use the project's database for real data.
ITEMS = {"1": {"id": "1", "name": "first"}}


def handler(event, context):
    method, item_id = event["method"], event.get("params", {}).get("id")
    if method == "GET" and item_id is None:
        return list(ITEMS.values())
    if method == "GET":
        item = ITEMS.get(item_id)
        return item if item else {"statusCode": 404, "body": "no such item"}
    if method == "POST":
        item = json.loads(event.get("body") or "{}")
        item["id"] = str(len(ITEMS) + 1)
        ITEMS[item["id"]] = item
        return {"statusCode": 201, "headers": {"content-type": "application/json"}, "body": json.dumps(item)}
    if method == "DELETE" and item_id in ITEMS:
        del ITEMS[item_id]
        return None
    return {"statusCode": 405, "body": "method not allowed"}
"#,
            ),
            (".kumoignore", KUMOIGNORE),
        ],
        manifest: r#"name = "{project}"

[functions.items]
runtime = "python"
entrypoint = "api.py"

[[routes]]
method = "GET"
path = "/items"
function = "items"

[[routes]]
method = "POST"
path = "/items"
function = "items"

[[routes]]
method = "ANY"
path = "/items/:id"
function = "items"
"#,
    },
    Template {
        name: "node",
        about: "a JavaScript function that says hello",
        function: "hello",
        runtime: "node",
        entrypoint: "index.mjs",
        settings: FunctionSettings::NONE,
        routes: &[],
        secrets: &[],
        files: &[
            (
                "index.mjs",
                r#"export default async (event, context) => {
  const name = event.query?.name ?? 'world';
  console.log(`greeting ${name}`); // goes to the run's logs
  return { hello: name };
};
"#,
            ),
            (".kumoignore", KUMOIGNORE),
        ],
        manifest: r#"name = "{project}"

[functions.hello]
runtime = "node"
entrypoint = "index.mjs"
"#,
    },
    Template {
        name: "fastapi",
        about: "a FastAPI app, deployed unchanged (dependencies from requirements.txt)",
        function: "api",
        runtime: "python",
        entrypoint: "main.py",
        settings: FunctionSettings::NONE,
        routes: &[],
        secrets: &[],
        files: &[
            (
                "main.py",
                r#"from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI(title="{project}")


class Item(BaseModel):
    name: str
    price: float


@app.get("/")
def index():
    return {"service": "{project}"}


@app.get("/items/{item_id}")
def read_item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q}


@app.post("/items")
def create_item(item: Item):
    return {"created": item.name}
"#,
            ),
            ("requirements.txt", "fastapi\n"),
            (".kumoignore", KUMOIGNORE),
        ],
        manifest: r#"name = "{project}"

# FastAPI's docs are at /fn/{project}/api/docs once deployed.
[functions.api]
runtime = "python"
entrypoint = "main.py"
"#,
    },
    Template {
        name: "webhook",
        about: "a webhook receiver that checks an HMAC-SHA256 signature with a secret",
        function: "webhook",
        runtime: "python",
        entrypoint: "webhook.py",
        settings: FunctionSettings::NONE,
        routes: &[],
        secrets: &["WEBHOOK_SECRET"],
        files: &[
            (
                "webhook.py",
                r#"import hashlib
import hmac
import json
import os


def handler(event, context):
    if event.get("method") != "POST":
        return {"statusCode": 405, "body": "POST only"}
    secret = os.environ["WEBHOOK_SECRET"].encode()
    body = event.get("body") or ""
    expected = hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()
    given = event.get("headers", {}).get("x-signature-256", "").removeprefix("sha256=")
    if not hmac.compare_digest(expected, given):
        return {"statusCode": 401, "body": "bad signature"}
    payload = json.loads(body or "{}")
    print("received", payload.get("action", "an event"))
    return {"statusCode": 202, "body": "accepted"}
"#,
            ),
            (".kumoignore", KUMOIGNORE),
        ],
        manifest: r#"name = "{project}"
# Asked for at the first `kumo deploy` (never written here).
secrets = ["WEBHOOK_SECRET"]

[functions.webhook]
runtime = "python"
entrypoint = "webhook.py"
"#,
    },
    Template {
        name: "scheduled",
        about: "a job to run on a schedule (run it with `kumo invoke job --async`)",
        function: "job",
        runtime: "python",
        entrypoint: "job.py",
        settings: FunctionSettings {
            timeout_ms: Some(300_000),
            visibility: Some(Visibility::Private),
            ..FunctionSettings::NONE
        },
        routes: &[],
        secrets: &[],
        files: &[
            (
                "job.py",
                r#"import time


def handler(event, context):
    started = time.time()
    print("job started with", event)
    # ... the work: fetch, clean up, report ...
    print(f"job done in {time.time() - started:.3f}s, {context.remaining_time_ms()} ms to spare")
    return {"ok": True}
"#,
            ),
            (".kumoignore", KUMOIGNORE),
        ],
        manifest: r#"name = "{project}"

[functions.job]
runtime = "python"
entrypoint = "job.py"
timeout_ms = 300000
visibility = "private"
"#,
    },
];

/// The template named `name`.
pub fn find(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// `GET /api/v1/templates`: one template as data (`{project}` left in).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TemplateInfo {
    pub name: String,
    pub about: String,
    pub function: String,
    pub runtime: String,
    pub entrypoint: String,
    pub settings: FunctionSettings,
    pub routes: Vec<TemplateRoute>,
    pub secrets: Vec<String>,
    /// Path → contents.
    pub files: BTreeMap<String, String>,
}

/// A route of a template, to its function.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TemplateRoute {
    pub method: String,
    pub path: String,
}

impl Template {
    /// As the API shows it (without the command line's `.kumoignore`).
    pub fn info(&self) -> TemplateInfo {
        TemplateInfo {
            name: self.name.into(),
            about: self.about.into(),
            function: self.function.into(),
            runtime: self.runtime.into(),
            entrypoint: self.entrypoint.into(),
            settings: self.settings.clone(),
            routes: self
                .routes
                .iter()
                .map(|(method, path)| TemplateRoute {
                    method: (*method).into(),
                    path: (*path).into(),
                })
                .collect(),
            secrets: self.secrets.iter().map(|s| (*s).into()).collect(),
            files: self
                .files
                .iter()
                .filter(|(path, _)| *path != ".kumoignore")
                .map(|(path, text)| ((*path).into(), (*text).into()))
                .collect(),
        }
    }
}
