//! What the server writes to its log: plain text when the log is a file,
//! and messages that say what happened.

use serde_json::json;

use crate::support::TestServer;

/// A log written to a file has no colour codes (they are for terminals),
/// and a clean shutdown does not report its own instances' cgroups as
/// "left by an earlier run" (neither at shutdown nor on the next start).
#[tokio::test]
async fn the_log_in_a_file_is_plain_text_and_shutdown_says_what_it_removed() {
    let mut server = TestServer::start().await;
    server
        .deploy(
            "log",
            "hello",
            &[("main.py", "def handler(event):\n    return 1\n")],
            json!({}),
        )
        .await;
    let run = server.invoke("log", "hello", json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    // SIGTERM with an idle instance and pre-warmed sandboxes, then a start
    // on the same data directory.
    server.restart().await;
    let log = server.log();
    assert!(
        log.contains("kumo") && log.lines().count() > 2,
        "the server logged something: {log}"
    );
    assert!(
        !log.contains('\x1b'),
        "no ANSI escape in a log written to a file:\n{log}"
    );
    assert!(
        !log.contains("left by an earlier run"),
        "a clean run leaves nothing behind, and says so:\n{log}"
    );
}
