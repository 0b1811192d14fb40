//! Per-function metrics: one-minute points over a window through the API,
//! and the Prometheus `/metrics` families, matching the calls made.

use reqwest::Method;
use serde_json::json;

use crate::support::{TestServer, py};

/// Counts, statuses, cold starts and durations over a window match the
/// calls made; `/metrics` parses as Prometheus text and says the same,
/// with project, function and status as its only labels.
#[tokio::test]
async fn metrics_match_the_calls_made() {
    let server = TestServer::start().await;
    let code = py(r#"
        import time

        def handler(event):
            if event.get("fail"):
                raise ValueError("asked to fail")
            time.sleep(event.get("sleep", 0))
            return "ok"
    "#);
    server
        .deploy(
            "stats",
            "calc",
            &[("main.py", &code)],
            json!({"timeout_ms": 400}),
        )
        .await;
    for _ in 0..5 {
        let run = server.invoke("stats", "calc", json!({})).await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    for _ in 0..2 {
        let run = server.invoke("stats", "calc", json!({"fail": true})).await;
        assert_eq!(run["status"], "failed", "{run}");
    }
    let run = server.invoke("stats", "calc", json!({"sleep": 2})).await;
    assert_eq!(run["status"], "timed_out", "{run}");

    let m = server
        .get("/api/v1/projects/stats/functions/calc/metrics?window=1h")
        .await
        .expect_status(200);
    let totals = &m["totals"];
    assert_eq!(totals["calls"], 8, "{m}");
    assert_eq!(totals["errors"], 3, "{totals}");
    assert_eq!(
        totals["by_status"],
        json!({"succeeded": 5, "failed": 2, "timed_out": 1}),
        "{totals}"
    );
    assert_eq!(totals["cold_starts"], 1, "the first call only: {totals}");
    let p99 = totals["duration_ms"]["p99"].as_f64().expect("a p99");
    assert!(p99 >= 400.0, "the timed-out call took its 400 ms: {p99}");
    let p50 = totals["duration_ms"]["p50"].as_f64().expect("a p50");
    assert!(p50 < 100.0, "most calls are quick: {p50}");
    assert!(
        totals["peak_memory_bytes"]
            .as_u64()
            .is_some_and(|b| b > 1_000_000),
        "{totals}"
    );
    let series = m["series"].as_array().expect("series");
    assert_eq!(series.len(), 60);
    assert_eq!(m["bucket_secs"], 60);
    let summed: u64 = series.iter().filter_map(|p| p["calls"].as_u64()).sum();
    assert_eq!(summed, 8);

    let day = server
        .get("/api/v1/projects/stats/functions/calc/metrics?window=24h")
        .await
        .expect_status(200);
    assert_eq!(day["series"].as_array().map(Vec::len), Some(1440));
    for bad in ["?window=2d", "?window=soon", "?span=1h"] {
        let resp = server
            .get(&format!(
                "/api/v1/projects/stats/functions/calc/metrics{bad}"
            ))
            .await;
        assert_eq!(resp.status, 400, "{bad}: {}", resp.text());
    }

    let text = server
        .send(server.authed(Method::GET, "/metrics"))
        .await
        .expect_ok_text();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("/metrics is Prometheus text");
    let value = |metric: &str, status: Option<&str>| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == metric
                    && s.labels.get("function") == Some("calc")
                    && s.labels.get("project") == Some("stats")
                    && status.is_none_or(|st| s.labels.get("status") == Some(st))
            })
            .map(|s| s.value.clone())
    };
    for (status, n) in [("succeeded", 5.0), ("failed", 2.0), ("timed_out", 1.0)] {
        assert!(
            matches!(value("kumo_function_invocations_total", Some(status)), Some(prometheus_parse::Value::Counter(v)) if v == n),
            "{status}: {text}"
        );
    }
    assert!(
        matches!(value("kumo_function_cold_starts_total", None), Some(prometheus_parse::Value::Counter(v)) if v == 1.0),
        "{text}"
    );
    match value("kumo_function_duration_seconds", None) {
        Some(prometheus_parse::Value::Histogram(buckets)) => {
            let inf = buckets
                .iter()
                .find(|b| b.less_than == f64::INFINITY)
                .expect("an +Inf bucket");
            assert_eq!(inf.count, 8.0);
            let fast = buckets
                .iter()
                .find(|b| (b.less_than - 0.25).abs() < 1e-9)
                .expect("a 250 ms bucket");
            assert_eq!(fast.count, 7.0, "all but the timed-out call: {buckets:?}");
        }
        other => panic!("no duration histogram: {other:?}\n{text}"),
    }
    // Bounded labels: project, function, status and le, nothing else.
    for sample in &scrape.samples {
        for (name, _) in sample.labels.iter() {
            assert!(
                ["project", "function", "status", "le"].contains(&name.as_str()),
                "label {name} on {}",
                sample.metric
            );
        }
    }
}
