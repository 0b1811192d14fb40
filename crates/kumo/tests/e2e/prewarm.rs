//! Pre-warmed sandboxes and the keep-alive: a cold start is served by a
//! sandbox that was started before the code existed, and it then holds
//! exactly that function's code, limits and environment.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::support::{TestServer, wait_for};

/// Reports when its runner process started (wall clock), and what the
/// instance sees of its limits and environment.
const PROBE: &str = r#"
import os, time

def _started():
    ticks = os.sysconf("SC_CLK_TCK")
    start = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]) / ticks
    uptime = float(open("/proc/uptime").read().split()[0])
    return time.time() - (uptime - start)

STARTED = _started()

def handler(event):
    if event.get("allocate_mb"):
        block = bytearray(event["allocate_mb"] * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1
        return {"allocated": len(block) // (1024 * 1024)}
    st = os.statvfs("/tmp")
    return {
        "started": STARTED,
        "function": os.environ.get("KUMO_FUNCTION"),
        "memory_mb": os.environ.get("KUMO_MEMORY_MB"),
        "tmp_bytes": st.f_blocks * st.f_frsize,
        "cwd": os.getcwd(),
        "code": sorted(os.listdir("/code")),
    }
"#;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

async fn wait_for_pool(server: &TestServer, at_least: f64) {
    wait_for(
        "the pre-warmed pool to fill",
        Duration::from_secs(20),
        async || (server.metric("kumo_prewarmed_instances").await >= at_least).then_some(()),
    )
    .await;
}

/// A cold start takes a sandbox started before the deployment existed,
/// and gives it the function's code, limits and environment; the pool
/// refills behind it.
#[tokio::test]
async fn a_cold_start_is_served_by_a_sandbox_started_before_the_code_existed() {
    let server = TestServer::start_with(&["--prewarm", "2"]).await;
    wait_for_pool(&server, 2.0).await;
    let before_deploy = now();
    server
        .deploy(
            "warm",
            "probe",
            &[("main.py", PROBE), ("data.txt", "x")],
            json!({"memory_mb": 96, "tmp_mb": 8}),
        )
        .await;
    let run = server.invoke("warm", "probe", json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["cold_start"], true, "{run}");
    let out = &run["output"];
    let started = out["started"].as_f64().expect("a start time");
    assert!(
        started < before_deploy,
        "the runner started {:.3} s before the deploy began: it was pre-warmed: {run}",
        before_deploy - started
    );
    assert_eq!(out["function"], "probe", "{run}");
    assert_eq!(out["memory_mb"], "96", "{run}");
    assert_eq!(
        out["tmp_bytes"],
        8 * 1024 * 1024,
        "the function's /tmp size: {run}"
    );
    assert_eq!(out["cwd"], "/code", "{run}");
    assert_eq!(out["code"], json!(["data.txt", "main.py"]), "{run}");
    // The pool refills in the background.
    wait_for_pool(&server, 2.0).await;
}

/// The function's memory limit replaces the generic sandbox's, both down
/// (a small limit is enforced) and up (a large one is usable).
#[tokio::test]
async fn a_prewarmed_sandbox_takes_the_functions_memory_limit() {
    let server = TestServer::start_with(&["--prewarm", "2"]).await;
    for (name, memory_mb) in [("small", 48), ("large", 320)] {
        server
            .deploy(
                "mem",
                name,
                &[("main.py", PROBE)],
                json!({"memory_mb": memory_mb}),
            )
            .await;
    }
    wait_for_pool(&server, 2.0).await;
    let small = server
        .invoke("mem", "small", json!({"allocate_mb": 96}))
        .await;
    assert_eq!(small["cold_start"], true, "{small}");
    assert_eq!(
        small["status"], "out_of_memory",
        "48 MiB is enforced: {small}"
    );
    wait_for_pool(&server, 2.0).await;
    let large = server
        .invoke("mem", "large", json!({"allocate_mb": 200}))
        .await;
    assert_eq!(large["cold_start"], true, "{large}");
    assert_eq!(large["status"], "succeeded", "320 MiB is usable: {large}");
    assert_eq!(large["output"]["allocated"], 200, "{large}");
}

/// With pre-warming off, every cold start builds its sandbox from nothing:
/// the runner starts after the deploy.
#[tokio::test]
async fn without_prewarming_the_sandbox_is_built_on_the_first_call() {
    let server = TestServer::start_with(&["--prewarm", "0"]).await;
    assert_eq!(server.metric("kumo_prewarmed_instances").await, 0.0);
    let before_deploy = now();
    server
        .deploy("cold", "probe", &[("main.py", PROBE)], json!({}))
        .await;
    let run = server.invoke("cold", "probe", json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["cold_start"], true, "{run}");
    let started = run["output"]["started"].as_f64().expect("a start time");
    assert!(started > before_deploy, "built after the deploy: {run}");
    assert_eq!(server.metric("kumo_prewarmed_instances").await, 0.0);
}

/// A busy function's keep-alive, learned from its history, never exceeds
/// the server's: it still scales to zero on time.
#[tokio::test]
async fn the_adaptive_keep_alive_never_outlasts_the_servers() {
    let server = TestServer::start_with(&["--keep-alive-ms", "400"]).await;
    server
        .deploy("ka", "busy", &[("main.py", PROBE)], json!({}))
        .await;
    // Enough calls for a history: every idle time is in the first bin.
    for _ in 0..15 {
        let run: Value = server.invoke("ka", "busy", json!({})).await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    wait_for(
        "the busy function to scale to zero",
        Duration::from_secs(10),
        async || (server.metric("kumo_instances").await == 0.0).then_some(()),
    )
    .await;
    let next = server.invoke("ka", "busy", json!({})).await;
    assert_eq!(next["cold_start"], true, "{next}");
}

/// A function called at a steady pace is stopped after each call once its
/// history shows the pace, and started again just before the next call
/// (the pre-warm window of the keep-alive policy): its calls stay warm
/// while it holds no instance between them. (Histogram bins of 100 ms
/// instead of a minute, so the pattern shows in seconds.)
///
/// The calls keep a steady pace (that rhythm is what the policy learns);
/// everything else is awaited: after each call the instance goes, then one
/// comes back before the next call, which is warm.
#[tokio::test]
async fn a_periodic_function_is_started_again_just_before_its_next_call() {
    let server =
        TestServer::start_with(&["--keep-alive-bin-ms", "100", "--keep-alive-ms", "60000"]).await;
    server
        .deploy("ka", "tick", &[("main.py", PROBE)], json!({}))
        .await;
    let pace = Duration::from_millis(1500);
    // Enough calls at the pace for a history (ten idle times and more);
    // the pace runs from the end of a call, as idle times do.
    let mut next = tokio::time::Instant::now();
    for _ in 0..14 {
        tokio::time::sleep_until(next).await;
        let run = server.invoke("ka", "tick", json!({})).await;
        next = tokio::time::Instant::now() + pace;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    for call in 1..=4 {
        wait_for(
            "the instance to be stopped after the call, the pace being known",
            Duration::from_secs(30),
            async || (server.metric("kumo_instances").await == 0.0).then_some(()),
        )
        .await;
        wait_for(
            "an instance to be started again before the next call",
            Duration::from_secs(30),
            async || (server.metric("kumo_instances").await >= 1.0).then_some(()),
        )
        .await;
        tokio::time::sleep_until(next).await;
        let run = server.invoke("ka", "tick", json!({})).await;
        next = tokio::time::Instant::now() + pace;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(
            run["cold_start"], false,
            "call {call} after the pattern is known finds the instance started for it: {run}"
        );
    }
}
