//! Removes what is past its time, in the background: log lines and run
//! records older than their retention, beyond their most kept count, and
//! beyond their byte budgets (the oldest first). Unfinished runs are never
//! removed.
//!
//! Budgets: each project's runs (records, with their log lines) may hold
//! so many bytes, and all projects together so many; over the server's
//! budget, runs go from the largest project first, so one project's flood
//! takes the others' history only once it is no larger than theirs. The
//! pruner runs on a timer, and also as soon as the recorder has written a
//! quarter of the smaller budget since it last ran, so that a flood cannot
//! outrun it by much. Freed pages are given back to the file system.

use std::collections::HashSet;
use std::time::Duration;

use kumo_store::Store;

use crate::config::Retention;
use crate::state::State;

/// Prunes every so often (every minute, or sooner for a short retention),
/// and after a burst of writes.
pub(crate) async fn prune(state: State) {
    let retention = state.config().retention.clone();
    let shortest = retention.log_age.min(retention.run_age);
    let period = (shortest / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let burst = (retention.history_bytes.min(retention.project_history_bytes) / 4).max(1);
    let recorder = state.recorder().clone();
    let mut pruned_at = recorder.written_bytes();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = recorder.batch_written() => {
                if recorder.written_bytes().saturating_sub(pruned_at) < burst {
                    continue;
                }
            }
        }
        pruned_at = recorder.written_bytes();
        once(&state, &retention).await;
    }
}

async fn once(state: &State, retention: &Retention) {
    let now = kumo_store::now_ms();
    let before = |age: Duration| now - i64::try_from(age.as_millis()).unwrap_or(i64::MAX / 2);
    let store = state.store();
    let mut removed = 0;
    match store
        .prune_log_lines(
            before(retention.log_age),
            i64::try_from(retention.log_lines).unwrap_or(i64::MAX),
        )
        .await
    {
        Ok(0) => {}
        Ok(n) => {
            removed += n;
            tracing::debug!(removed = n, "old log lines removed");
        }
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
        Ok(n) => {
            removed += n;
            tracing::debug!(removed = n, "old run records removed");
        }
        Err(e) => tracing::warn!(error = %e, "removing old run records failed"),
    }
    match within_budgets(store, retention).await {
        Ok(0) => {}
        Ok(n) => {
            removed += n;
            tracing::debug!(removed = n, "run records over the byte budget removed");
        }
        Err(e) => tracing::warn!(error = %e, "keeping run history within its byte budget failed"),
    }
    if removed > 0
        && let Err(e) = store.reclaim_space().await
    {
        tracing::warn!(error = %e, "giving freed space back failed");
    }
}

/// Removes the oldest finished runs until each project is within its
/// budget and all of them within the server's; returns how many went.
async fn within_budgets(store: &Store, retention: &Retention) -> kumo_store::Result<u64> {
    let budget = |bytes: u64| i64::try_from(bytes).unwrap_or(i64::MAX);
    let (project_budget, server_budget) = (
        budget(retention.project_history_bytes),
        budget(retention.history_bytes),
    );
    let mut removed = 0;
    for (project, bytes) in store.run_usage().await? {
        if bytes > project_budget {
            removed += store
                .prune_project_bytes(&project, bytes - project_budget)
                .await?
                .0;
        }
    }
    // Over the server's budget: from the largest project, down towards
    // the next largest, again and again. Projects with nothing left to
    // remove (only unfinished runs) are passed over.
    let mut stuck = HashSet::new();
    for _ in 0..10_000 {
        let usage = store.run_usage().await?;
        let excess = usage.iter().map(|(_, bytes)| bytes).sum::<i64>() - server_budget;
        if excess <= 0 {
            break;
        }
        let mut candidates = usage.iter().filter(|(p, _)| !stuck.contains(p));
        let Some((largest, bytes)) = candidates.next() else {
            break;
        };
        let next = candidates.next().map_or(0, |(_, bytes)| *bytes);
        let free = excess.min((bytes - next).max(excess / 4).max(1));
        let (n, _) = store.prune_project_bytes(largest, free).await?;
        if n == 0 {
            stuck.insert(largest.clone());
        }
        removed += n;
    }
    Ok(removed)
}
