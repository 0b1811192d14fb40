//! Writes run records and log lines off the hot path, in batches.
//!
//! Calls hand their record to a channel and go on; one task drains it and
//! writes whatever has gathered in one transaction, after waiting a few
//! milliseconds for more to gather (at thousands of calls a second, one
//! transaction per call would cost more than the calls). A record lands
//! within milliseconds; someone waiting on [`Recorder::flush`] cuts the
//! wait short. The records' channel is bounded, so a stalled database
//! slows calls down rather than growing memory without end; no accepted
//! record is dropped. Log lines have a channel of their own, so a flood
//! of output never holds up the records of other calls: when it is full,
//! lines are not stored (and counted); the runs' own logs stay complete.
//! The bytes written are counted, so that retention can run after a burst
//! rather than wait for its timer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kumo_store::{InvocationRow, LogLineRow, Store};
use tokio::sync::{Notify, mpsc, oneshot};

const QUEUE: usize = 16 * 1024;
/// Log lines waiting to be stored, at most.
const LINE_QUEUE: usize = 64 * 1024;
const BATCH: usize = 512;
/// Log lines stored per transaction, at most.
const LINE_BATCH: usize = 4096;
/// How long a batch waits for more records before it is written.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

enum Message {
    Record(Box<InvocationRow>),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone, Debug)]
pub(crate) struct Recorder {
    tx: mpsc::Sender<Message>,
    lines: mpsc::Sender<LogLineRow>,
    written: Arc<Written>,
}

/// What the recorder has written so far.
#[derive(Debug, Default)]
struct Written {
    /// The bytes of the run records written (as their budget counts them).
    bytes: AtomicU64,
    /// Woken after each batch of records.
    batch: Notify,
}

impl Recorder {
    pub(crate) fn start(store: Store) -> (Recorder, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (lines, lines_rx) = mpsc::channel(LINE_QUEUE);
        let written = Arc::new(Written::default());
        (
            Recorder {
                tx,
                lines,
                written: written.clone(),
            },
            tokio::spawn(write_loop(store, rx, lines_rx, written)),
        )
    }

    /// The bytes of run records written since the start (as retention's
    /// byte budget counts them).
    pub(crate) fn written_bytes(&self) -> u64 {
        self.written.bytes.load(Ordering::Relaxed)
    }

    /// Waits until a batch of records has been written.
    pub(crate) async fn batch_written(&self) {
        self.written.batch.notified().await;
    }

    /// Queues a record for writing.
    pub(crate) async fn record(&self, row: InvocationRow) {
        if self.tx.send(Message::Record(Box::new(row))).await.is_err() {
            tracing::error!("run recorder is gone; a record was not written");
        }
    }

    /// Queues a log line without waiting; `false` when the queue is full
    /// (the database is far behind) and the line was not taken.
    pub(crate) fn try_log(&self, line: LogLineRow) -> bool {
        self.lines.try_send(line).is_ok()
    }

    /// Waits until everything queued so far (records and lines) is written.
    pub(crate) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Message::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn write_loop(
    store: Store,
    mut rx: mpsc::Receiver<Message>,
    mut lines_rx: mpsc::Receiver<LogLineRow>,
    written: Arc<Written>,
) {
    let mut messages = Vec::with_capacity(BATCH);
    let mut rows = Vec::with_capacity(BATCH);
    let mut lines: Vec<LogLineRow> = Vec::new();
    loop {
        // Wait for anything: a record, a flush, or a line.
        tokio::select! {
            n = rx.recv_many(&mut messages, BATCH) => {
                if n == 0 {
                    return;
                }
            }
            n = lines_rx.recv_many(&mut lines, LINE_BATCH) => {
                if n == 0 && lines.is_empty() {
                    // No line can come any more; records still may.
                    if rx.recv_many(&mut messages, BATCH).await == 0 {
                        return;
                    }
                }
            }
        }
        let deadline = tokio::time::Instant::now() + LINGER;
        let mut closed = false;
        while messages.len() < BATCH && !messages.iter().any(Message::is_flush) {
            let room = BATCH - messages.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut messages, room)).await {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let flushing = messages.iter().any(Message::is_flush);
        // Lines queued before a flush was asked for are written with it.
        loop {
            let room = LINE_BATCH.saturating_sub(lines.len());
            if room == 0 {
                write_lines_with_retry(&store, &lines).await;
                lines.clear();
                if !flushing {
                    break;
                }
                continue;
            }
            let before = lines.len();
            while lines.len() < LINE_BATCH {
                match lines_rx.try_recv() {
                    Ok(line) => lines.push(line),
                    Err(_) => break,
                }
            }
            if lines.len() == before {
                break;
            }
        }
        let mut flushes = Vec::new();
        for message in messages.drain(..) {
            match message {
                Message::Record(row) => rows.push(*row),
                Message::Flush(done) => flushes.push(done),
            }
        }
        if !rows.is_empty() {
            write_with_retry(&store, &rows).await;
            let bytes: i64 = rows.iter().map(InvocationRow::stored_bytes).sum();
            written
                .bytes
                .fetch_add(u64::try_from(bytes).unwrap_or(0), Ordering::Relaxed);
            written.batch.notify_one();
            rows.clear();
        }
        if !lines.is_empty() {
            write_lines_with_retry(&store, &lines).await;
            lines.clear();
        }
        for done in flushes {
            let _ = done.send(());
        }
        if closed {
            return;
        }
    }
}

impl Message {
    fn is_flush(&self) -> bool {
        matches!(self, Message::Flush(_))
    }
}

async fn write_lines_with_retry(store: &Store, lines: &[LogLineRow]) {
    let mut delay = std::time::Duration::from_millis(50);
    for attempt in 1..=8 {
        match store.insert_log_lines(lines).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, attempt, lines = lines.len(), "writing log lines failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(2));
            }
        }
    }
    tracing::error!(lines = lines.len(), "giving up on writing log lines");
}

async fn write_with_retry(store: &Store, rows: &[InvocationRow]) {
    let mut delay = std::time::Duration::from_millis(50);
    for attempt in 1..=8 {
        match store.upsert_invocations(rows).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, attempt, rows = rows.len(), "writing run records failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(2));
            }
        }
    }
    tracing::error!(rows = rows.len(), "giving up on writing run records");
}
