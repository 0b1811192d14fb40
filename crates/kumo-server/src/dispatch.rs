//! One call of a function, whatever triggered it: run it on the executor,
//! enforce the response limit, count it, and queue its record.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kumo_executor::{ExecError, Outcome};
use kumo_store::InvocationRow;
use kumo_types::{ErrorCode, RunError, RunStatus, Trigger};
use serde_json::value::RawValue;

use crate::error::{ApiError, human_bytes};
use crate::registry::Resolved;
use crate::state::State;

/// A finished call.
pub(crate) struct Run {
    pub(crate) id: String,
    pub(crate) version: i64,
    pub(crate) outcome: Outcome,
    /// The output as the API shows it: the project's secrets blotted out
    /// (the gateway sends the function's answer as it is).
    pub(crate) shown_output: Option<String>,
}

/// `output` (JSON text) with `secrets` blotted out, as each is written
/// inside a JSON string.
pub(crate) fn redact_json(output: &str, secrets: &[String]) -> String {
    let mut text = output.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        let quoted = serde_json::to_string(secret).unwrap_or_default();
        let escaped = quoted.trim_matches('"');
        if !escaped.is_empty() && text.contains(escaped) {
            text = text.replace(escaped, kumo_types::SECRET_MASK);
        }
    }
    text
}

/// Runs `event` on `resolved` now and records the run.
pub(crate) async fn run(
    state: &State,
    resolved: &Resolved,
    trigger: Trigger,
    id: String,
    event: Box<RawValue>,
) -> Result<Run, ApiError> {
    run_stored(state, resolved, trigger, id, event, None).await
}

/// [`run`], recording `stored` as the run's input instead of `event`
/// (the event with its credentials blotted out).
pub(crate) async fn run_stored(
    state: &State,
    resolved: &Resolved,
    trigger: Trigger,
    id: String,
    event: Box<RawValue>,
    stored: Option<Box<RawValue>>,
) -> Result<Run, ApiError> {
    let Some(spec) = resolved.spec.clone() else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "function '{}/{}' has no active deployment; deploy it first",
                resolved.project, resolved.function
            ),
        ));
    };
    let created_at = kumo_store::now_ms();
    let counters = state.counters();
    let mut outcome = match state.executor().invoke(&spec, &id, &event).await {
        Ok(outcome) => outcome,
        Err(ExecError::Overloaded { retry_after }) => {
            counters.overloaded.fetch_add(1, Ordering::Relaxed);
            let mut err = ApiError::new(
                ErrorCode::TooManyRequests,
                format!(
                    "function '{}/{}' is at its concurrency limit of {}; retry later",
                    resolved.project, resolved.function, spec.concurrency
                ),
            );
            err.retry_after_secs = Some(retry_after.as_secs().max(1));
            return Err(err);
        }
        Err(ExecError::ShuttingDown) => {
            let mut err = ApiError::new(
                ErrorCode::Unavailable,
                "the server is shutting down; retry shortly",
            );
            err.retry_after_secs = Some(1);
            return Err(err);
        }
        Err(e @ ExecError::Start(_)) => return Err(ApiError::internal("starting an instance", e)),
    };
    enforce_response_limit(&mut outcome, state.config().limits.body_bytes);
    enforce_depth_limit(&mut outcome);

    counters.runs_by_status[outcome.status.index()].fetch_add(1, Ordering::Relaxed);
    resolved.metrics.record(&crate::metrics::Sample {
        status: outcome.status,
        cold_start: outcome.cold_start,
        duration: outcome.duration,
        cpu: outcome.cpu_time,
        peak_memory_bytes: outcome.peak_memory_bytes,
        at_ms: kumo_store::now_ms(),
    });
    if outcome.cold_start {
        counters.cold_starts.fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!(run_id = %id, function = %resolved.function, status = outcome.status.as_str(), "run finished");
    let mut row = record(
        resolved,
        &id,
        spec.version,
        trigger,
        stored.as_deref().unwrap_or(&event),
        &outcome,
        created_at,
    );
    // The caller gets the function's answer as it is; the stored copy,
    // which the API shows later, has the project's secrets blotted out
    // (the logs and the error already are).
    if let Some(output) = &mut row.output
        && !spec.redact.is_empty()
    {
        *output = redact_json(output, &spec.redact);
    }
    let shown_output = row.output.clone();
    record_capped(state, row).await;
    Ok(Run {
        id,
        version: spec.version,
        outcome,
        shown_output,
    })
}

/// Queues `row` for writing with its input, output and error cut at the
/// stored cap: the caller already has the whole answer; history keeps a capped
/// copy, so that no caller can fill the disk with it.
async fn record_capped(state: &State, mut row: InvocationRow) {
    let cap = state.config().retention.run_payload_bytes;
    if row.input_size.is_none() {
        row.input_size = cut(&mut row.input, cap);
    }
    if row.output_size.is_none() {
        row.output_size = cut(&mut row.output, cap);
    }
    if let Some(error) = &row.error
        && error.len() > cap
        && let Ok(error) = serde_json::from_str::<RunError>(error)
    {
        row.error = serde_json::to_string(&capped_error(&error, cap)).ok();
    }
    state.recorder().record(row).await;
}

/// Cuts `text` to at most `cap` bytes, at a character boundary; the full
/// size when it was longer.
fn cut(text: &mut Option<String>, cap: usize) -> Option<i64> {
    let text = text.as_mut()?;
    if text.len() <= cap {
        return None;
    }
    let size = i64::try_from(text.len()).unwrap_or(i64::MAX);
    let mut end = cap;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    Some(size)
}

/// An error's message and traceback as stored: cut at `cap` bytes each,
/// with a marker.
fn capped_error(error: &RunError, cap: usize) -> RunError {
    let keep = |text: &str| {
        let mut kept = Some(text.to_string());
        match cut(&mut kept, cap) {
            None => text.to_string(),
            Some(size) => format!(
                "{}\n[kumo: cut at {} of {size} bytes]",
                kept.unwrap_or_default(),
                human_bytes(cap)
            ),
        }
    };
    RunError {
        kind: keep(&error.kind),
        message: keep(&error.message),
        traceback: keep(&error.traceback),
    }
}

/// A response over the body limit fails the run, clearly.
fn enforce_response_limit(outcome: &mut Outcome, limit: usize) {
    let size = outcome.output.as_ref().map_or(0, |raw| raw.get().len());
    if size > limit {
        outcome.output = None;
        outcome.status = RunStatus::Failed;
        outcome.error = Some(RunError {
            kind: "ResponseTooLarge".into(),
            message: format!(
                "the function returned {} bytes, over the {} response limit",
                size,
                human_bytes(limit)
            ),
            traceback: String::new(),
        });
    }
}

/// An output nested deeper than [`kumo_types::MAX_JSON_DEPTH`] fails the
/// run, clearly: the API could not show it, and it must not look like a
/// success without an output.
fn enforce_depth_limit(outcome: &mut Outcome) {
    let max = kumo_types::MAX_JSON_DEPTH;
    let too_deep = outcome
        .output
        .as_ref()
        .is_some_and(|raw| kumo_types::json_nested_deeper_than(raw.get().as_bytes(), max));
    if too_deep {
        outcome.output = None;
        outcome.status = RunStatus::Failed;
        outcome.error = Some(RunError {
            kind: "OutputTooDeep".into(),
            message: format!(
                "the function returned JSON nested more than {max} levels deep; the limit is {max}"
            ),
            traceback: String::new(),
        });
    }
}

fn record(
    resolved: &Resolved,
    id: &str,
    version: i64,
    trigger: Trigger,
    event: &RawValue,
    outcome: &Outcome,
    created_at: i64,
) -> InvocationRow {
    InvocationRow {
        id: id.to_string(),
        owner_id: resolved.owner_id.clone(),
        project_id: resolved.project_id.clone(),
        function_id: resolved.function_id.clone(),
        project: resolved.project.clone(),
        function: resolved.function.clone(),
        version: Some(version),
        trigger_kind: trigger,
        status: outcome.status,
        input: Some(event.get().to_string()),
        output: outcome.output.as_ref().map(|raw| raw.get().to_string()),
        error: outcome
            .error
            .as_ref()
            .and_then(|e| serde_json::to_string(e).ok()),
        logs: outcome.logs.clone(),
        logs_truncated: i64::from(outcome.logs_truncated),
        input_size: None,
        output_size: None,
        duration_us: i64::try_from(outcome.duration.as_micros()).unwrap_or(i64::MAX),
        cold_start: i64::from(outcome.cold_start),
        cpu_us: outcome
            .cpu_time
            .and_then(|t| i64::try_from(t.as_micros()).ok()),
        peak_memory: outcome
            .peak_memory_bytes
            .and_then(|b| i64::try_from(b).ok()),
        created_at,
        finished_at: Some(kumo_store::now_ms()),
    }
}

/// Accepts an async run: stored as `queued` before the caller hears 202,
/// then run in the background until it ends in a terminal state.
pub(crate) async fn accept_async(
    state: &State,
    resolved: Arc<Resolved>,
    event: Box<RawValue>,
) -> Result<String, ApiError> {
    if resolved.spec.is_none() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "function '{}/{}' has no active deployment; deploy it first",
                resolved.project, resolved.function
            ),
        ));
    }
    let id = kumo_store::new_id();
    let row = InvocationRow {
        id: id.clone(),
        owner_id: resolved.owner_id.clone(),
        project_id: resolved.project_id.clone(),
        function_id: resolved.function_id.clone(),
        project: resolved.project.clone(),
        function: resolved.function.clone(),
        version: resolved.spec.as_ref().map(|s| s.version),
        trigger_kind: Trigger::Async,
        status: RunStatus::Queued,
        input: Some(event.get().to_string()),
        output: None,
        error: None,
        logs: String::new(),
        logs_truncated: 0,
        // Kept whole until it has run: the run needs it, also after a
        // restart. Only an authenticated caller can queue one.
        input_size: None,
        output_size: None,
        duration_us: 0,
        cold_start: 0,
        cpu_us: None,
        peak_memory: None,
        created_at: kumo_store::now_ms(),
        finished_at: None,
    };
    state
        .store()
        .upsert_invocations(std::slice::from_ref(&row))
        .await?;
    tokio::spawn(run_async(state.clone(), row));
    Ok(id)
}

/// Runs a queued async run, waiting out overload, and records the end.
async fn run_async(state: State, row: InvocationRow) {
    let event = row
        .input
        .as_deref()
        .and_then(|s| RawValue::from_string(s.to_string()).ok())
        .unwrap_or_else(|| RawValue::from_string("null".into()).expect("null is JSON"));
    let mut delay = Duration::from_millis(200);
    for _ in 0..600 {
        let resolved = match state.registry().resolve(&row.project, &row.function).await {
            Ok(Some(resolved)) => resolved,
            Ok(None) => {
                return finish_unrunnable(
                    &state,
                    row,
                    "the function was deleted before the run started",
                )
                .await;
            }
            Err(e) => {
                tracing::warn!(run_id = %row.id, error = %e.message, "async run could not resolve its function");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        match run(
            &state,
            &resolved,
            Trigger::Async,
            row.id.clone(),
            event.clone(),
        )
        .await
        {
            Ok(_) => return,
            Err(e) if e.code == ErrorCode::TooManyRequests || e.code == ErrorCode::Unavailable => {
                if e.code == ErrorCode::Unavailable {
                    // Shutting down: the run stays queued and resumes at start.
                    return;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return finish_unrunnable(&state, row, &e.message).await,
        }
    }
    finish_unrunnable(
        &state,
        row,
        "the function stayed at its concurrency limit for too long",
    )
    .await;
}

async fn finish_unrunnable(state: &State, mut row: InvocationRow, why: &str) {
    row.status = RunStatus::Failed;
    row.error = serde_json::to_string(&RunError {
        kind: "NotRun".into(),
        message: why.to_string(),
        traceback: String::new(),
    })
    .ok();
    row.finished_at = Some(kumo_store::now_ms());
    record_capped(state, row).await;
}

/// At start: resumes async runs a stopped server had accepted, and closes
/// runs that were in flight when it died.
pub(crate) async fn recover_unfinished(state: &State) -> anyhow::Result<()> {
    let rows = state.store().unfinished_invocations().await?;
    let mut resumed = 0;
    for mut row in rows {
        if row.trigger_kind == Trigger::Async {
            row.status = RunStatus::Queued;
            tokio::spawn(run_async(state.clone(), row));
            resumed += 1;
        } else {
            row.status = RunStatus::Crashed;
            row.error = serde_json::to_string(&RunError {
                kind: "ServerStopped".into(),
                message: "the server stopped before the run finished".into(),
                traceback: String::new(),
            })
            .ok();
            row.finished_at = Some(kumo_store::now_ms());
            record_capped(state, row).await;
        }
    }
    if resumed > 0 {
        tracing::info!(resumed, "resumed queued async runs");
    }
    Ok(())
}
