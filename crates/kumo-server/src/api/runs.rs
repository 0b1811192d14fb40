//! Invoking functions and reading their runs and logs.

use std::time::Duration;

use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kumo_store::InvocationRow;
use kumo_types::{
    AsyncAccepted, ErrorBody, ErrorCode, HttpAnswer, HttpCall, Invocation, InvokeQuery,
    InvokeResponse, Page, RunError, RunStatus, RunsQuery, Trigger,
};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{Body, Json, Query, page_limit};
use crate::access;
use crate::auth::Authed;
use crate::dispatch;
use crate::error::{ApiError, ApiResult, human_bytes};
use crate::state::State;

fn parse_json_value(text: Option<&str>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(t).ok())
}

/// A stored input or output as the API shows it: the value, or, when its
/// stored copy was cut (`size` is then the full size), a marker with the
/// full size and the kept text.
fn stored_value(text: Option<String>, size: Option<i64>) -> Option<Value> {
    match size {
        None => parse_json_value(text.as_deref()),
        Some(size) => Some(serde_json::json!({
            "truncated": true,
            "size_bytes": size,
            "preview": text.unwrap_or_default(),
        })),
    }
}

pub(crate) fn to_api(row: InvocationRow) -> Invocation {
    Invocation {
        trigger: row.trigger_kind,
        status: row.status,
        input_truncated: row.input_size.is_some(),
        output_truncated: row.output_size.is_some(),
        input: stored_value(row.input, row.input_size),
        output: stored_value(row.output, row.output_size),
        error: row
            .error
            .as_deref()
            .and_then(|e| serde_json::from_str::<RunError>(e).ok()),
        id: row.id,
        project: row.project,
        function: row.function,
        version: row.version,
        logs: row.logs,
        logs_truncated: row.logs_truncated != 0,
        duration_ms: row.duration_us as f64 / 1000.0,
        cold_start: row.cold_start != 0,
        cpu_ms: row.cpu_us.map(|us| us as f64 / 1000.0),
        peak_memory_bytes: row.peak_memory.and_then(|b| u64::try_from(b).ok()),
        created_at: row.created_at,
        finished_at: row.finished_at,
    }
}

fn invoke_response(run: dispatch::Run) -> InvokeResponse {
    let dispatch::Run {
        id,
        version,
        outcome,
        shown_output,
    } = run;
    InvokeResponse {
        id,
        status: outcome.status,
        output: shown_output
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok()),
        error: outcome.error,
        logs: outcome.logs,
        duration_ms: outcome.duration.as_secs_f64() * 1000.0,
        cold_start: outcome.cold_start,
        version: Some(version),
        cpu_ms: outcome.cpu_time.map(|t| t.as_secs_f64() * 1000.0),
        peak_memory_bytes: outcome.peak_memory_bytes,
    }
}

/// Calls a function with a JSON event (an empty body is the event `{}`,
/// with or without `async`). The answer has the run's status, output and
/// logs; a failing handler is still a `200` with `status: "failed"`.
#[utoipa::path(post, path = "/api/v1/projects/{project}/functions/{function}/invoke", tag = "runs",
    security(("token" = [])), params(("project" = kumo_types::Name, Path), ("function" = kumo_types::Name, Path), InvokeQuery),
    request_body(content = Option<serde_json::Value>, description = "the event: any JSON value; optional, an empty body is `{}`"),
    responses(
        (status = 200, body = InvokeResponse, description = "the run ended (whether or not it succeeded)"),
        (status = 202, body = AsyncAccepted, description = "with `async=true`: the run is queued"),
        (status = 400, body = ErrorBody, description = "the body is not JSON, or an unknown query parameter"),
        (status = 404, body = ErrorBody, description = "no such function, or it has no active version"),
        (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "the function is at its concurrency limit; see Retry-After"),
        (status = 503, body = ErrorBody, description = "the server is shutting down; see Retry-After")))]
pub(crate) async fn invoke(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, function)): Path<(String, String)>,
    Query(query): Query<InvokeQuery>,
    Body(body): Body,
) -> ApiResult<Response> {
    let (_, _) = access::function(&state, &user, &project, &function).await?;
    let event: Box<RawValue> = if body.iter().all(u8::is_ascii_whitespace) {
        RawValue::from_string("{}".into())
            .map_err(|e| ApiError::internal("building an empty event", e))?
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the event must be JSON: {e}")))?
    };
    // Before any sandbox work: a runner would fail on it deep inside.
    if kumo_types::json_nested_deeper_than(event.get().as_bytes(), kumo_types::MAX_JSON_DEPTH) {
        return Err(ApiError::bad_request(format!(
            "the event nests arrays and objects more than {} levels deep; the limit is {}",
            kumo_types::MAX_JSON_DEPTH,
            kumo_types::MAX_JSON_DEPTH
        )));
    }
    let resolved = state
        .registry()
        .resolve(&project, &function)
        .await?
        .ok_or_else(|| ApiError::not_found(format_args!("function '{project}/{function}'")))?;
    if query.is_async.unwrap_or(false) {
        let id = dispatch::accept_async(&state, resolved, event).await?;
        return Ok((
            StatusCode::ACCEPTED,
            axum::Json(AsyncAccepted {
                id,
                status: RunStatus::Queued,
            }),
        )
            .into_response());
    }
    let run = dispatch::run(&state, &resolved, Trigger::Api, kumo_store::new_id(), event).await?;
    Ok(axum::Json(invoke_response(run)).into_response())
}

/// Sends an HTTP request to a function as the caller and answers with
/// the function's response as data (status, headers, body, run id): how
/// the dashboard tests a function, private ones included, without its
/// token reaching the function or the function's page running on the
/// dashboard's origin.
#[utoipa::path(post, path = "/api/v1/projects/{project}/functions/{function}/http", tag = "runs",
    security(("token" = [])), params(("project" = String, Path), ("function" = String, Path)),
    request_body = HttpCall,
    responses((status = 200, body = HttpAnswer, description = "the function's answer, whatever its status (a 429 of a busy function included)"),
        (status = 400, body = ErrorBody, description = "not a JSON body of this shape, or a method, header or base64 body that is not valid"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn http(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, function)): Path<(String, String)>,
    Json(call): Json<HttpCall>,
) -> ApiResult<axum::Json<HttpAnswer>> {
    let (_, _) = access::function(&state, &user, &project, &function).await?;
    let resolved = state
        .registry()
        .resolve(&project, &function)
        .await?
        .ok_or_else(|| ApiError::not_found(format_args!("function '{project}/{function}'")))?;
    Ok(axum::Json(
        crate::gateway::call_as(&state, &resolved, user, call).await?,
    ))
}

/// A function's runs, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project}/functions/{function}/invocations", operation_id = "list_invocations", tag = "runs",
    security(("token" = [])), params(("project" = kumo_types::Name, Path), ("function" = kumo_types::Name, Path), RunsQuery),
    responses((status = 200, body = Page<Invocation>),
        (status = 400, body = ErrorBody, description = "an unknown query parameter, or a value out of range"),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn list(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, function)): Path<(String, String)>,
    Query(q): Query<RunsQuery>,
) -> ApiResult<axum::Json<Page<Invocation>>> {
    let (_, row) = access::function(&state, &user, &project, &function).await?;
    let limit = page_limit(q.limit)?;
    let mut items = Vec::new();
    let mut cursor = q.cursor.clone();
    let mut next = None;
    // A status filter may need several pages of the index to fill one.
    for _ in 0..20 {
        let rows = state
            .store()
            .list_invocations(&row.id, cursor.as_deref(), None, limit)
            .await?;
        let full = rows.len() as i64 == limit;
        cursor = rows.last().map(|r| r.id.clone());
        for r in rows {
            if q.status.is_none_or(|s| s == r.status) {
                items.push(to_api(r));
            }
        }
        if items.len() as i64 >= limit || !full {
            next = if full { cursor.clone() } else { None };
            break;
        }
        next = cursor.clone();
    }
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    if let (Some(last), true) = (items.last(), items.len() as i64 == limit) {
        next = Some(last.id.clone());
    }
    Ok(axum::Json(Page { items, next }))
}

/// A run the caller may see, else 404.
/// A run by id. Records are written in batches a few milliseconds after
/// the answer; a run asked for before its batch landed (a client reading
/// `x-kumo-invocation-id` right away) is written out first, so a run that
/// answered is always found.
async fn find_run(state: &State, user: &Authed, id: &str) -> ApiResult<InvocationRow> {
    if let Some(row) = state.store().invocation(user.scope(), id).await? {
        return Ok(row);
    }
    state.recorder().flush().await;
    state
        .store()
        .invocation(user.scope(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format_args!("invocation '{id}'")))
}

/// One run, with input, output, error and logs.
#[utoipa::path(get, path = "/api/v1/invocations/{id}", operation_id = "get_invocation", tag = "runs", security(("token" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Invocation), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    AxState(state): AxState<State>,
    user: Authed,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Invocation>> {
    let row = find_run(&state, &user, &id).await?;
    Ok(axum::Json(to_api(row)))
}

/// Runs a past run's input again on the active version. A run whose
/// stored input was cut (over the server's stored cap) cannot be: `409`.
#[utoipa::path(post, path = "/api/v1/invocations/{id}/replay", tag = "runs", security(("token" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = InvokeResponse), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the stored input was cut; the run cannot be replayed"),
        (status = 429, body = ErrorBody, description = "the function is at its concurrency limit; see Retry-After"),
        (status = 503, body = ErrorBody, description = "the server is shutting down; see Retry-After")))]
pub(crate) async fn replay(
    AxState(state): AxState<State>,
    user: Authed,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<InvokeResponse>> {
    let row = find_run(&state, &user, &id).await?;
    if let Some(size) = row.input_size {
        let kept = row.input.as_deref().map_or(0, str::len);
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "run '{id}' cannot be replayed: its input was {size} bytes and the stored copy was cut at {kept} bytes (the server keeps {} of a run's input); the full input was not kept, so send it again with invoke",
                human_bytes(state.config().retention.run_payload_bytes)
            ),
        ));
    }
    let resolved = state
        .registry()
        .resolve(&row.project, &row.function)
        .await?
        .filter(|r| user.can_access(&r.owner_id))
        .ok_or_else(|| {
            ApiError::not_found(format_args!("function '{}/{}'", row.project, row.function))
        })?;
    let event = RawValue::from_string(row.input.unwrap_or_else(|| "null".into()))
        .map_err(|e| ApiError::internal("reading a stored input", e))?;
    let run = dispatch::run(
        &state,
        &resolved,
        Trigger::Replay,
        kumo_store::new_id(),
        event,
    )
    .await?;
    Ok(axum::Json(invoke_response(run)))
}

/// Parses `30s`, `15m`, `1h`, `2d` or plain milliseconds.
pub(crate) fn parse_since(text: &str) -> Result<Duration, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "invalid duration '{text}'; use e.g. 30s, 15m, 1h or 2d"
        ))
    };
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_parses() {
        assert_eq!(parse_since("30s").expect("ok"), Duration::from_secs(30));
        assert_eq!(parse_since("1h").expect("ok"), Duration::from_secs(3600));
        assert_eq!(parse_since("250").expect("ok"), Duration::from_millis(250));
        assert!(parse_since("1y").is_err());
        assert!(parse_since("h").is_err());
    }
}
