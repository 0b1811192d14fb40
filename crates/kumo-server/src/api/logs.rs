//! A function's log lines: listed, or followed live as server-sent events.
//!
//! `GET …/logs` lists stored lines (the newest `limit`, oldest first, or
//! those after `after`). With `?follow=true` the answer is an event stream:
//! the lines stored so far that the filters select (after `Last-Event-ID`
//! when the client reconnects), then every new line as its call prints it.
//! Each event's id is the line's id, so a reconnect resumes with no gap and
//! no line twice.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State as AxState};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use kumo_store::{LogLineRow, LogQuery};
use kumo_types::{ErrorBody, LogLine, LogsQuery, Page};
use tokio::sync::{broadcast, mpsc};

use super::{Query, runs::parse_since};
use crate::access;
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::state::State;

/// Lines read from the store per query while catching up.
const CATCH_UP_BATCH: i64 = 1000;
/// Lines shown first when following without `since` or `Last-Event-ID`.
const FOLLOW_TAIL: i64 = 100;

fn to_api(row: LogLineRow) -> LogLine {
    LogLine {
        id: row.id,
        run_id: row.run_id,
        stream: row.stream,
        time: row.time,
        line: row.line,
    }
}

/// A function's log lines, oldest first; or, with `follow=true`, a
/// server-sent event stream of them (`event: log`, `id:` the line's id,
/// `data:` the line as JSON), resumable with `Last-Event-ID`.
#[utoipa::path(get, path = "/api/v1/projects/{project}/functions/{function}/logs", tag = "runs",
    security(("token" = [])), params(("project" = kumo_types::Name, Path), ("function" = kumo_types::Name, Path), LogsQuery),
    responses((status = 200, description = "the lines; with follow=true, a text/event-stream of them",
            content((Page<LogLine> = "application/json"), (String = "text/event-stream"))),
        (status = 400, body = ErrorBody, description = "an unknown query parameter, a value out of range, limit with follow, or a bad Last-Event-ID"),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn logs(
    AxState(state): AxState<State>,
    user: Authed,
    Path((project, function)): Path<(String, String)>,
    Query(q): Query<LogsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (_, row) = access::function(&state, &user, &project, &function).await?;
    let since_ms = q
        .since
        .as_deref()
        .map(parse_since)
        .transpose()?
        .map(|d| kumo_store::now_ms() - i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2));
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!("Last-Event-ID must be a line id, got '{v}'"))
            })
        })
        .transpose()?;
    let after = resume.or(q.after);
    if q.follow {
        if q.limit.is_some() {
            return Err(ApiError::bad_request("limit does not go with follow=true"));
        }
        let filter = Filter {
            function_id: row.id,
            run_id: q.run,
            since_ms,
            after,
        };
        return Ok(follow(state, filter).into_response());
    }
    let limit = match q.limit {
        None => 500,
        Some(n) if (1..=5000).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "limit must be from 1 to 5000, got {n}"
            )));
        }
    };
    // Lines printed a moment ago may still be on their way to the store.
    state.recorder().flush().await;
    let query = LogQuery {
        after,
        since_ms,
        run_id: q.run.as_deref(),
    };
    let rows = state
        .store()
        .log_lines(&row.id, &query, i64::try_from(limit).unwrap_or(500))
        .await?;
    let next = rows.last().map(|r| r.id.to_string());
    Ok(axum::Json(Page {
        items: rows.into_iter().map(to_api).collect(),
        next,
    })
    .into_response())
}

/// What a follower wants.
struct Filter {
    function_id: String,
    run_id: Option<String>,
    since_ms: Option<i64>,
    after: Option<i64>,
}

/// The event stream of a follower: a task catches up from the store and
/// then forwards live lines until the client goes away.
fn follow(
    state: State,
    filter: Filter,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = mpsc::channel::<Event>(256);
    tokio::spawn(async move {
        if let Err(e) = forward(&state, filter, &tx).await {
            tracing::debug!(error = %e, "a log follower stopped");
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn forward(state: &State, filter: Filter, tx: &mpsc::Sender<Event>) -> anyhow::Result<()> {
    // Follow first, then read the store: a line printed in between is
    // in both, and the ids tell which were sent.
    let mut live = state.logs().follow(&filter.function_id);
    // With `since` and no id, the window is read from its start, in order.
    let mut last = filter.after.or(filter.since_ms.map(|_| 0));
    let mut first = last.is_none();
    last = catch_up(state, &filter, last, &mut first, tx).await?;
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(line) => {
                    if last.is_some_and(|l| line.id <= l) || !wanted(&filter, &line) {
                        continue;
                    }
                    last = Some(line.id);
                    send(tx, &line).await?;
                }
                // Fell behind: the store has every line in order.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    last = catch_up(state, &filter, last, &mut first, tx).await?;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            () = tx.closed() => return Ok(()),
        }
    }
}

fn wanted(filter: &Filter, line: &LogLineRow) -> bool {
    filter.run_id.as_deref().is_none_or(|r| r == line.run_id)
        && filter.since_ms.is_none_or(|s| line.time >= s)
}

/// Sends the stored lines after `last`; returns the new last id.
async fn catch_up(
    state: &State,
    filter: &Filter,
    mut last: Option<i64>,
    first: &mut bool,
    tx: &mpsc::Sender<Event>,
) -> anyhow::Result<Option<i64>> {
    state.recorder().flush().await;
    loop {
        let query = LogQuery {
            after: last,
            since_ms: filter.since_ms,
            run_id: filter.run_id.as_deref(),
        };
        // The very first read without a starting point shows the tail.
        let limit = if *first { FOLLOW_TAIL } else { CATCH_UP_BATCH };
        let rows = state
            .store()
            .log_lines(&filter.function_id, &query, limit)
            .await?;
        let full = !*first && rows.len() as i64 == CATCH_UP_BATCH;
        *first = false;
        for row in &rows {
            send(tx, row).await?;
            last = Some(row.id);
        }
        if !full {
            return Ok(last.or(Some(0)));
        }
    }
}

async fn send(tx: &mpsc::Sender<Event>, line: &LogLineRow) -> anyhow::Result<()> {
    let data = serde_json::to_string(&to_api(line.clone()))?;
    let event = Event::default()
        .event("log")
        .id(line.id.to_string())
        .data(data);
    tx.send(event)
        .await
        .map_err(|_| anyhow::anyhow!("the follower went away"))
}
