//! The projects `kumo init` writes.

/// A template: its name, what it is, and its files (besides `kumo.toml`,
/// which `manifest` gives), where `{project}` stands for the project's
/// name.
pub struct Template {
    pub name: &'static str,
    pub about: &'static str,
    pub files: &'static [(&'static str, &'static str)],
    pub manifest: &'static str,
}

const KUMOIGNORE: &str = "# Files left out of deployments (gitignore syntax).\n# .git, __pycache__, .venv, .env and kumo.toml are always left out.\nnode_modules/\n*.log\n";

pub const TEMPLATES: &[Template] = &[
    Template {
        name: "python",
        about: "a Python function that says hello",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_manifest_reads() {
        for t in TEMPLATES {
            let text = t.manifest.replace("{project}", "demo");
            let m = crate::manifest::Manifest::parse(std::path::Path::new("kumo.toml"), &text)
                .unwrap_or_else(|e| panic!("template {}: {e}", t.name));
            for (fname, f) in &m.functions {
                let entry = f.entrypoint.as_deref().unwrap_or("main.py");
                assert!(
                    t.files.iter().any(|(p, _)| *p == entry),
                    "template {}: function {fname} has no {entry}",
                    t.name
                );
            }
        }
    }
}
