//! Live logs: every line a call prints, numbered, stored, and fanned out
//! to whoever follows its function.
//!
//! The executor hands each line to [`LogHub::line`] as it is read from the
//! instance. The hub gives it the next id, queues it for the recorder
//! (which writes lines in batches, like runs), and sends it to the
//! function's followers over a broadcast channel. A follower that falls
//! behind loses its place in the channel, never slows the function, and
//! catches up from the store: ids are given in order, so "everything after
//! the last id I saw" is a gap-free resume, also after a reconnect
//! (`Last-Event-ID`). Old lines are removed by `retention`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kumo_executor::{LogLine, LogSink};
use kumo_store::LogLineRow;
use tokio::sync::broadcast;

use crate::recorder::Recorder;

/// Lines a follower may fall behind by before it reads from the store.
const FOLLOWER_BUFFER: usize = 1024;

#[derive(Debug)]
pub(crate) struct LogHub {
    next_id: AtomicI64,
    recorder: Recorder,
    followers: Mutex<HashMap<String, broadcast::Sender<Arc<LogLineRow>>>>,
    /// Lines not stored because the recorder's queue was full.
    dropped: AtomicU64,
}

impl LogHub {
    /// A hub whose ids continue after `last_id`, and after the current
    /// time in microseconds: ids never go back, even when retention has
    /// emptied the store and the server restarts (a reader resuming from
    /// an old id would otherwise wait for new ids to catch up).
    pub(crate) fn new(recorder: Recorder, last_id: i64) -> LogHub {
        let now_us = kumo_store::now_ms().saturating_mul(1000);
        LogHub {
            next_id: AtomicI64::new((last_id + 1).max(now_us)),
            recorder,
            followers: Mutex::new(HashMap::new()),
            dropped: AtomicU64::new(0),
        }
    }

    /// Lines from now on of `function_id`.
    pub(crate) fn follow(&self, function_id: &str) -> broadcast::Receiver<Arc<LogLineRow>> {
        let mut followers = self.followers.lock().expect("followers lock poisoned");
        followers
            .entry(function_id.to_string())
            .or_insert_with(|| broadcast::channel(FOLLOWER_BUFFER).0)
            .subscribe()
    }

    /// How many lines were not stored (the database was far behind).
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl LogSink for LogHub {
    fn line(&self, line: LogLine<'_>) {
        // Ids are given, queued and sent under one lock, so the store and
        // every follower see lines in id order (a follower skips what is
        // not newer than the last line it sent).
        let mut followers = self.followers.lock().expect("followers lock poisoned");
        let row = Arc::new(LogLineRow {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            function_id: line.function_id.to_string(),
            run_id: line.run_id.to_string(),
            stream: line.stream.as_str().to_string(),
            time: line.time_ms,
            line: line.text,
        });
        if !self.recorder.try_log((*row).clone()) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(sender) = followers.get(&row.function_id) {
            if sender.receiver_count() == 0 {
                followers.remove(&row.function_id);
            } else {
                let _ = sender.send(row);
            }
        }
    }
}
