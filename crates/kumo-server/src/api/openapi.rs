//! The OpenAPI document, generated from the handlers, and `/docs`.
//!
//! Most of the document comes from the `#[utoipa::path]` annotations and
//! the `ToSchema` types of kumo-types. A few facts are stated here, once
//! for every operation, because the generator cannot see them:
//!
//! - every operation that takes a token answers `401` without a valid one;
//! - a body that flattens [`FunctionSettings`](kumo_types::FunctionSettings)
//!   is one object with the settings' properties and no others (serde
//!   refuses unknown fields of the whole body; the generator would say
//!   `allOf` with a closed `FunctionSettings`, which no body satisfies);
//! - the settings' ranges are those of this server's caps;
//! - a query string has no `null`;
//! - a `.tar.gz` upload or download is bytes (`contentMediaType`).
//!
//! `docs/openapi.json` is this document for a server with the default
//! limits, checked in as the API's public contract; the dashboard's
//! TypeScript types are generated from it. A test fails when the two
//! differ; `KUMO_UPDATE_OPENAPI=1 cargo test -p kumo-server --lib openapi`
//! rewrites the file.

use axum::Router;
use axum::extract::State as AxState;
use axum::routing::get;
use kumo_types::Limits;
use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::api::{accounts, env, functions, logs, projects, routing, runs, templates};
use crate::state::State;

/// Where the document is served.
const DOCUMENT_PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(title = "Kumo API", description = "Deploy and run functions. Errors are `{\"error\": {\"code\", \"message\"}}`."),
    paths(
        accounts::login, accounts::start_session, accounts::get_session, accounts::end_session, accounts::me, accounts::list_tokens, accounts::create_token, accounts::delete_token,
        projects::list, projects::create, projects::get, projects::update, projects::remove,
        functions::list, functions::create, functions::get, functions::update, functions::remove,
        functions::deploy, functions::list_deployments, functions::get_deployment, functions::activate,
        functions::metrics, functions::files,
        runs::invoke, runs::http, runs::list, runs::get, runs::replay, logs::logs,
        env::list, env::get, env::put, env::remove,
        routing::list, routing::create, routing::remove,
        templates::list,
    ),
    components(schemas(kumo_types::Name, kumo_types::EnvKey)),
    modifiers(&TokenAuth),
    tags(
        (name = "accounts", description = "Login and API tokens"),
        (name = "projects", description = "Projects own functions"),
        (name = "functions", description = "Functions and their versions"),
        (name = "runs", description = "Invocations and logs"),
        (name = "env", description = "A project's environment variables and secrets"),
        (name = "routes", description = "A project's routes: METHOD /path/:param/*rest to a function, served at /p/{project}/…"),
    )
)]
pub(crate) struct ApiDoc;

struct TokenAuth;

impl Modify for TokenAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Request bodies that flatten the function settings into themselves.
const WITH_SETTINGS: [&str; 2] = ["DeployRequest", "CreateFunction"];

/// The document of a server with these limits.
pub(crate) fn document(limits: &Limits) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|e| {
        tracing::error!(error = %e, "encoding the OpenAPI document");
        Value::Null
    });
    for name in WITH_SETTINGS {
        flatten_settings(&mut doc, name, "FunctionSettings", true);
    }
    // A function's answer carries its settings as its own fields.
    flatten_settings(&mut doc, "Function", "Settings", false);
    setting_ranges(&mut doc, limits);
    for (_, _, operation) in operations_mut(&mut doc) {
        unauthorized(operation);
        non_null_query(operation);
        optional_body(operation);
        bytes_content(operation);
    }
    doc
}

/// Every operation of `doc`: path, method and the operation object.
fn operations_mut(doc: &mut Value) -> Vec<(String, String, &mut Value)> {
    let mut out = Vec::new();
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return out;
    };
    for (path, item) in paths {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item {
            if operation.get("responses").is_some() {
                out.push((path.clone(), method.clone(), operation));
            }
        }
    }
    out
}

/// `allOf: [settings, {own properties}]` → one object (closed, for a
/// request body that refuses unknown fields).
fn flatten_settings(doc: &mut Value, name: &str, settings: &str, closed: bool) {
    let schemas = &mut doc["components"]["schemas"];
    let reference = format!("#/components/schemas/{settings}");
    let settings = schemas[settings].clone();
    let Some(Value::Array(parts)) = schemas[name].get("allOf").cloned() else {
        return;
    };
    let description = schemas[name]["description"].clone();
    let mut merged = json!({"type": "object", "properties": {}});
    if closed {
        merged["additionalProperties"] = Value::Bool(false);
    }
    for part in parts {
        let part = match part.get("$ref").and_then(Value::as_str) {
            Some(r) if r == reference => settings.clone(),
            _ => part,
        };
        if let (Some(into), Some(from)) = (
            merged["properties"].as_object_mut(),
            part.get("properties").and_then(Value::as_object),
        ) {
            into.extend(from.clone());
        }
        if let Some(required) = part.get("required").and_then(Value::as_array) {
            let list = merged["required"].as_array_mut();
            match list {
                Some(list) => list.extend(required.iter().cloned()),
                None => merged["required"] = Value::Array(required.clone()),
            }
        }
    }
    if !description.is_null() {
        merged["description"] = description;
    }
    schemas[name] = merged;
}

/// Each numeric setting's range and default, wherever a setting is taken:
/// the settings body, the bodies that flatten it, the `.tar.gz` query.
fn setting_ranges(doc: &mut Value, limits: &Limits) {
    let ranges = limits.setting_ranges();
    let constrain = |schema: &mut Value, name: &str| {
        if let Some(range) = ranges.iter().find(|r| r.name == name) {
            schema["minimum"] = json!(range.min);
            schema["maximum"] = json!(range.max);
            schema["examples"] = json!([range.default]);
            let what = schema["description"].as_str().unwrap_or_default();
            let default = format!("From {} to {} on this server.", range.min, range.max);
            schema["description"] = json!(if what.is_empty() {
                default
            } else {
                format!("{what} {default}")
            });
        }
    };
    for name in ["FunctionSettings"].into_iter().chain(WITH_SETTINGS) {
        let pointer = format!("/components/schemas/{name}/properties");
        if let Some(properties) = doc.pointer_mut(&pointer).and_then(Value::as_object_mut) {
            for (property, schema) in properties {
                constrain(schema, property);
            }
        }
    }
    for (path, method, operation) in operations_mut(doc) {
        if method != "post" || !path.ends_with("/deployments") {
            continue;
        }
        if let Some(parameters) = operation
            .get_mut("parameters")
            .and_then(Value::as_array_mut)
        {
            for parameter in parameters {
                if parameter["in"] == "query" {
                    let name = parameter["name"].as_str().unwrap_or_default().to_string();
                    constrain(&mut parameter["schema"], &name);
                }
            }
        }
    }
}

/// `401` on every operation that takes a token.
fn unauthorized(operation: &mut Value) {
    let secured = operation
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    if !secured {
        return;
    }
    operation["responses"]["401"] = json!({
        "description": "missing, invalid or revoked API token",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    });
}

/// An optional body is one that may be left out, not `null` (which the
/// server refuses where it expects an object).
fn optional_body(operation: &mut Value) {
    let Some(body) = operation.get_mut("requestBody") else {
        return;
    };
    if body["required"] == true {
        return;
    }
    body["required"] = json!(false);
    let Some(content) = body.get_mut("content").and_then(Value::as_object_mut) else {
        return;
    };
    for entry in content.values_mut() {
        let schema = &mut entry["schema"];
        let Some(options) = schema.get("oneOf").and_then(Value::as_array) else {
            continue;
        };
        let left: Vec<Value> = options
            .iter()
            .filter(|o| o.get("type").is_none_or(|t| t != "null"))
            .cloned()
            .collect();
        if let [only] = left.as_slice() {
            *schema = only.clone();
        }
    }
}

/// Bodies other than JSON are strings of bytes of their media type.
fn bytes_content(operation: &mut Value) {
    let Some(operation) = operation.as_object_mut() else {
        return;
    };
    let mut contents: Vec<&mut Value> = Vec::new();
    for (key, value) in operation.iter_mut() {
        match key.as_str() {
            "requestBody" => contents.extend(value.get_mut("content")),
            "responses" => contents.extend(
                value
                    .as_object_mut()
                    .into_iter()
                    .flat_map(|r| r.values_mut())
                    .filter_map(|r| r.get_mut("content")),
            ),
            _ => {}
        }
    }
    for content in contents {
        let Some(content) = content.as_object_mut() else {
            continue;
        };
        for (media_type, entry) in content {
            if media_type != "application/json" {
                entry["schema"] = json!({"type": "string", "contentMediaType": media_type});
            }
        }
    }
}

/// A query string has no `null`: optional parameters are left out
/// instead, so their schemas do not offer it.
fn non_null_query(operation: &mut Value) {
    let Some(parameters) = operation
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for parameter in parameters {
        if parameter["in"] != "query" {
            continue;
        }
        let schema = &mut parameter["schema"];
        if let Some(types) = schema.get_mut("type").and_then(Value::as_array_mut) {
            types.retain(|t| t != "null");
            if types.len() == 1 {
                schema["type"] = types[0].clone();
            }
        }
        if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
            let left: Vec<Value> = options
                .iter()
                .filter(|o| o.get("type").is_none_or(|t| t != "null"))
                .cloned()
                .collect();
            if left.len() == 1 {
                let mut only = left[0].clone();
                if let (Some(only), Some(description)) =
                    (only.as_object_mut(), schema.get("description").cloned())
                {
                    only.insert("description".into(), description);
                }
                *schema = only;
            }
        }
    }
}

/// `/api/v1/openapi.json` (this server's document, its limits included)
/// and the interactive docs at `/docs` (assets embedded in the binary;
/// works offline).
pub(crate) fn router() -> Router<State> {
    Router::from(SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from(DOCUMENT_PATH)))
        .route(DOCUMENT_PATH, get(serve))
}

async fn serve(AxState(state): AxState<State>) -> axum::Json<Value> {
    axum::Json(document(&state.config().limits))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked-in copy of the document: the API's public contract,
    /// from which the dashboard's TypeScript types are generated.
    const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

    /// How to bring the checked-in copy up to date.
    const REFRESH: &str = "KUMO_UPDATE_OPENAPI=1 cargo test -p kumo-server --lib openapi";

    /// `value` with every object's keys in order, whatever map serde_json
    /// was built with.
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&map[k])))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }

    /// `docs/openapi.json` is this server's document with the default
    /// limits, byte for byte (pretty-printed, keys sorted, a trailing
    /// newline). With `KUMO_UPDATE_OPENAPI=1` the test writes it instead.
    #[test]
    fn checked_in_document_is_the_servers() {
        let doc = sorted(&document(&Limits::default()));
        let want = serde_json::to_string_pretty(&doc).expect("a JSON value encodes") + "\n";
        if std::env::var_os("KUMO_UPDATE_OPENAPI").is_some_and(|v| v == "1") {
            std::fs::write(CHECKED_IN, &want).expect("docs/openapi.json is writable");
            return;
        }
        let have = std::fs::read_to_string(CHECKED_IN).unwrap_or_else(|e| {
            panic!("cannot read docs/openapi.json ({e}); write it with `{REFRESH}`")
        });
        if have == want {
            return;
        }
        let had: Vec<&str> = have.split('\n').collect();
        let wanted: Vec<&str> = want.split('\n').collect();
        let line = (0..had.len().max(wanted.len()))
            .find(|&i| had.get(i) != wanted.get(i))
            .unwrap_or(0);
        let at = |lines: &[&str]| {
            lines
                .get(line)
                .map_or("nothing (the end)".to_string(), |l| format!("{l:?}"))
        };
        panic!(
            "docs/openapi.json is not the server's OpenAPI document (first difference at line {}: \
             the file has {}, the server {}); refresh it with `{REFRESH}`, \
             then run scripts/dashboard to check the dashboard against it, and commit both",
            line + 1,
            at(&had),
            at(&wanted),
        );
    }

    /// An `allOf` with a closed part can only be satisfied by objects that
    /// have no other part's properties: no composed body may have one.
    #[test]
    fn no_composed_schema_has_a_closed_part() {
        let doc = document(&Limits::default());
        let schemas = doc["components"]["schemas"]
            .as_object()
            .expect("the document has schemas");
        let closed = |part: &Value| -> bool {
            let target = match part.get("$ref").and_then(Value::as_str) {
                Some(r) => &schemas[r.trim_start_matches("#/components/schemas/")],
                None => part,
            };
            target["additionalProperties"] == false
        };
        for (name, schema) in schemas {
            if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
                assert!(
                    !parts.iter().any(closed),
                    "{name} is an allOf with a closed part: {schema}"
                );
            }
        }
        for name in WITH_SETTINGS {
            let schema = &schemas[name];
            assert_eq!(schema["additionalProperties"], false, "{name}: {schema}");
            for setting in ["timeout_ms", "memory_mb", "visibility"] {
                assert!(
                    schema["properties"].get(setting).is_some(),
                    "{name} lacks {setting}: {schema}"
                );
            }
        }
    }

    /// OpenAPI wants every `operationId` unique, and generated clients
    /// name things by it (two `list` operations do not compile as
    /// TypeScript). utoipa takes the handler's name, so handlers with
    /// common names (`list`, `get`) set `operation_id`.
    #[test]
    fn operation_ids_are_unique() {
        let mut doc = document(&Limits::default());
        let mut seen = std::collections::BTreeMap::new();
        for (path, method, operation) in operations_mut(&mut doc) {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"))
                .to_string();
            let here = format!("{} {path}", method.to_uppercase());
            if let Some(first) = seen.insert(id.clone(), here.clone()) {
                panic!("{first} and {here} are both `{id}`: give one an `operation_id`");
            }
        }
    }

    #[test]
    fn settings_have_the_servers_ranges() {
        let limits = Limits {
            max_timeout_ms: 5000,
            ..Limits::default()
        };
        let doc = document(&limits);
        let timeout = &doc["components"]["schemas"]["DeployRequest"]["properties"]["timeout_ms"];
        assert_eq!(timeout["minimum"], 100, "{timeout}");
        assert_eq!(timeout["maximum"], 5000, "{timeout}");
    }
}
