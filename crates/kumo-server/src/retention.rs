//! Removes what is past its time, in the background: log lines and run
//! records older than their retention, and beyond their most kept count
//! (the oldest first). Unfinished runs are never removed.

use std::time::Duration;

use crate::State;
use crate::config::Retention;

/// Prunes every so often (every minute, or sooner for a short retention).
pub(crate) async fn prune(state: State) {
    let retention = state.config().retention.clone();
    let shortest = retention.log_age.min(retention.run_age);
    let period = (shortest / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        once(&state, &retention).await;
    }
}

async fn once(state: &State, retention: &Retention) {
    let now = kumo_store::now_ms();
    let before = |age: Duration| now - i64::try_from(age.as_millis()).unwrap_or(i64::MAX / 2);
    let store = state.store();
    match store
        .prune_log_lines(
            before(retention.log_age),
            i64::try_from(retention.log_lines).unwrap_or(i64::MAX),
        )
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::debug!(removed = n, "old log lines removed"),
        Err(e) => tracing::warn!(error = %e, "removing old log lines failed"),
    }
    match store
        .prune_invocations(
            before(retention.run_age),
            i64::try_from(retention.runs).unwrap_or(i64::MAX),
        )
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::debug!(removed = n, "old run records removed"),
        Err(e) => tracing::warn!(error = %e, "removing old run records failed"),
    }
}
