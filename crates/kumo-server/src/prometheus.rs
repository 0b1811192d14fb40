//! `/metrics`: process-wide counters and per-function families in the
//! Prometheus text format.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use kumo_types::RunStatus;

use crate::state::State;
use crate::{auth, error, metrics};

/// `/metrics`: an admin's token, unless the operator made it public.
pub(crate) async fn metrics(
    axum::extract::State(state): axum::extract::State<State>,
    request: axum::extract::Request,
) -> axum::response::Response {
    if !state.config().public_metrics {
        let (mut parts, _) = request.into_parts();
        match <auth::Authed as axum::extract::FromRequestParts<State>>::from_request_parts(
            &mut parts, &state,
        )
        .await
        {
            Ok(user) if user.is_admin => {}
            Ok(_) => {
                return error::ApiError::new(
                    kumo_types::ErrorCode::Forbidden,
                    "/metrics names every project and function: it needs an admin's token (or the server's --public-metrics)",
                )
                .into_response();
            }
            Err(e) => return e.into_response(),
        }
    }
    prometheus_text(&state).into_response()
}

fn prometheus_text(state: &State) -> impl IntoResponse + use<> {
    use std::fmt::Write;
    let c = state.counters();
    let mut out = String::new();
    out.push_str("# HELP kumo_invocations_total Function runs by final status.\n# TYPE kumo_invocations_total counter\n");
    for status in RunStatus::ALL {
        let n = c.runs_by_status[status.index()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "kumo_invocations_total{{status=\"{}\"}} {n}",
            status.as_str()
        );
    }
    out.push_str("# HELP kumo_cold_starts_total Runs that started a new instance.\n# TYPE kumo_cold_starts_total counter\n");
    let _ = writeln!(
        out,
        "kumo_cold_starts_total {}",
        c.cold_starts.load(Ordering::Relaxed)
    );
    out.push_str("# HELP kumo_throttled_total Calls refused with 429.\n# TYPE kumo_throttled_total counter\n");
    let _ = writeln!(
        out,
        "kumo_throttled_total {}",
        c.overloaded.load(Ordering::Relaxed)
    );
    function_metrics(&mut out, &state.metrics().all());
    out.push_str("# HELP kumo_log_lines_dropped_total Log lines not stored because the database was far behind (the runs' own logs are complete).\n# TYPE kumo_log_lines_dropped_total counter\n");
    let _ = writeln!(
        out,
        "kumo_log_lines_dropped_total {}",
        state.logs().dropped()
    );
    out.push_str("# HELP kumo_instances Running instances.\n# TYPE kumo_instances gauge\n");
    let _ = writeln!(out, "kumo_instances {}", state.executor().total_instances());
    out.push_str("# HELP kumo_prewarmed_instances Sandboxes started ahead of need, waiting for a function.\n# TYPE kumo_prewarmed_instances gauge\n");
    let _ = writeln!(
        out,
        "kumo_prewarmed_instances {}",
        state.executor().prewarmed()
    );
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

/// The per-function families of `/metrics`. Labels are the project, the
/// function and the status only (never ids or paths), so there are as
/// many series as functions times statuses.
fn function_metrics(out: &mut String, functions: &[Arc<metrics::FunctionMetrics>]) {
    use std::fmt::Write;
    let all: Vec<(&metrics::FunctionMetrics, metrics::Totals)> =
        functions.iter().map(|f| (f.as_ref(), f.totals())).collect();
    out.push_str("# HELP kumo_function_invocations_total Runs of a function by final status.\n# TYPE kumo_function_invocations_total counter\n");
    for (f, t) in &all {
        for (status, n) in RunStatus::ALL.iter().zip(t.by_status) {
            if n > 0 {
                let _ = writeln!(
                    out,
                    "kumo_function_invocations_total{{project=\"{}\",function=\"{}\",status=\"{}\"}} {n}",
                    f.project,
                    f.function,
                    status.as_str()
                );
            }
        }
    }
    out.push_str("# HELP kumo_function_cold_starts_total Runs of a function that started an instance.\n# TYPE kumo_function_cold_starts_total counter\n");
    for (f, t) in &all {
        let _ = writeln!(
            out,
            "kumo_function_cold_starts_total{{project=\"{}\",function=\"{}\"}} {}",
            f.project, f.function, t.cold_starts
        );
    }
    out.push_str("# HELP kumo_function_cpu_seconds_total CPU time of a function's runs.\n# TYPE kumo_function_cpu_seconds_total counter\n");
    for (f, t) in &all {
        let _ = writeln!(
            out,
            "kumo_function_cpu_seconds_total{{project=\"{}\",function=\"{}\"}} {}",
            f.project, f.function, t.cpu_secs
        );
    }
    out.push_str("# HELP kumo_function_duration_seconds How long a function's runs took.\n# TYPE kumo_function_duration_seconds histogram\n");
    for (f, t) in &all {
        let labels = format!("project=\"{}\",function=\"{}\"", f.project, f.function);
        let mut cumulative = 0u64;
        for (bound, n) in metrics::PROMETHEUS_BOUNDS.iter().zip(t.duration_buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "kumo_function_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
            );
        }
        let count: u64 = t.duration_buckets.iter().sum();
        let _ = writeln!(
            out,
            "kumo_function_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "kumo_function_duration_seconds_sum{{{labels}}} {}",
            t.duration_sum_secs
        );
        let _ = writeln!(
            out,
            "kumo_function_duration_seconds_count{{{labels}}} {count}"
        );
    }
}
