//! The logs of one call: capped, with a marker where they were cut, and
//! handed line by line, as they are written, to a [`LogSink`] (live logs).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One line a call printed.
#[derive(Debug, Clone)]
pub struct LogLine<'a> {
    pub function_id: &'a str,
    pub run_id: &'a str,
    pub stream: Stream,
    /// When it was read, in Unix milliseconds.
    pub time_ms: i64,
    /// The line without its newline; invalid UTF-8 replaced, secrets
    /// blotted out.
    pub text: String,
}

/// Takes lines as calls print them. Called on the call's own path: it
/// must not block.
pub trait LogSink: Send + Sync + std::fmt::Debug {
    fn line(&self, line: LogLine<'_>);
}

/// Where a capture sends its lines.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub(crate) sink: Arc<dyn LogSink>,
    pub(crate) function_id: Arc<str>,
    pub(crate) run_id: Arc<str>,
    /// Secrets, and each line of a secret that spans lines (a line of
    /// output can hold only one of its lines), longest first.
    redact: Arc<[String]>,
    /// The longest of them, in bytes.
    longest: usize,
}

impl Live {
    pub(crate) fn new(
        sink: Arc<dyn LogSink>,
        function_id: &str,
        run_id: &str,
        secrets: &[String],
    ) -> Live {
        let mut redact: Vec<String> = Vec::new();
        for secret in secrets {
            redact.push(secret.clone());
            if secret.contains('\n') {
                redact.extend(secret.lines().map(str::to_string));
            }
        }
        redact.retain(|s| s.len() >= REDACT_MIN_LEN);
        redact.sort_by_key(|s| std::cmp::Reverse(s.len()));
        redact.dedup();
        Live {
            sink,
            function_id: function_id.into(),
            run_id: run_id.into(),
            longest: redact.first().map_or(0, String::len),
            redact: redact.into(),
        }
    }
}

/// A line longer than this is handed on in pieces.
const MAX_LINE_BYTES: usize = 16 * 1024;
/// Lines one call hands on, at most (its run's logs keep everything up
/// to the byte cap; beyond this, live logs show a marker instead).
const MAX_LINES_PER_CALL: usize = 10_000;

/// Collects a call's output up to a byte cap.
#[derive(Debug)]
pub(crate) struct LogCapture {
    buf: Vec<u8>,
    cap: usize,
    truncated: bool,
    live: Option<Live>,
    /// The unfinished last line of each stream.
    partial: [Vec<u8>; 2],
    /// Lines handed on so far.
    lines: usize,
}

impl LogCapture {
    pub(crate) fn new(cap: usize) -> Self {
        LogCapture {
            buf: Vec::new(),
            cap,
            truncated: false,
            live: None,
            partial: [Vec::new(), Vec::new()],
            lines: 0,
        }
    }

    /// A capture that also hands its lines to `live`.
    pub(crate) fn live(cap: usize, live: Option<Live>) -> Self {
        LogCapture {
            live,
            ..LogCapture::new(cap)
        }
    }

    pub(crate) fn push(&mut self, stream: Stream, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.buf.len());
        let kept = if bytes.len() > room {
            self.truncated = true;
            &bytes[..room]
        } else {
            bytes
        };
        self.buf.extend_from_slice(kept);
        if self.live.is_some() && !kept.is_empty() {
            self.hand_on(stream, kept);
        }
    }

    /// Hands the complete lines of `bytes` to the sink; keeps the rest.
    fn hand_on(&mut self, stream: Stream, bytes: &[u8]) {
        let index = stream as usize;
        let mut rest = bytes;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut self.partial[index]);
            line.extend_from_slice(&rest[..at]);
            self.emit(stream, &line);
            rest = &rest[at + 1..];
        }
        self.partial[index].extend_from_slice(rest);
        // A very long line goes on in pieces; the cut leaves at least the
        // longest secret's length behind, so a secret is never split.
        let keep = self.live.as_ref().map_or(0, |l| l.longest);
        while self.partial[index].len() > MAX_LINE_BYTES + keep {
            let cut = self.partial[index].len() - keep;
            let whole = std::mem::take(&mut self.partial[index]);
            let mut text = String::from_utf8_lossy(&whole[..cut]).into_owned();
            self.partial[index] = whole[cut..].to_vec();
            if let Some(live) = &self.live {
                redact_sorted(&mut text, &live.redact);
            }
            self.emit_text(stream, text);
        }
    }

    fn emit(&mut self, stream: Stream, bytes: &[u8]) {
        let Some(live) = &self.live else { return };
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        if text.ends_with('\r') {
            text.pop();
        }
        redact_sorted(&mut text, &live.redact);
        self.emit_text(stream, text);
    }

    fn emit_text(&mut self, stream: Stream, text: String) {
        let Some(live) = &self.live else { return };
        self.lines += 1;
        let text = match self.lines.cmp(&(MAX_LINES_PER_CALL + 1)) {
            std::cmp::Ordering::Less => text,
            std::cmp::Ordering::Equal => format!(
                "[kumo: more than {MAX_LINES_PER_CALL} lines in this call; the rest is in its run's logs]"
            ),
            std::cmp::Ordering::Greater => return,
        };
        live.sink.line(LogLine {
            function_id: &live.function_id,
            run_id: &live.run_id,
            stream,
            time_ms: now_ms(),
            text,
        });
    }

    /// The text (invalid UTF-8 replaced) and whether it was cut; the
    /// unfinished lines (and the marker) go to the sink.
    pub(crate) fn finish(mut self) -> (String, bool) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let line = std::mem::take(&mut self.partial[stream as usize]);
            if !line.is_empty() {
                self.emit(stream, &line);
            }
        }
        let mut text = String::from_utf8_lossy(&self.buf).into_owned();
        if self.truncated {
            if !text.ends_with('\n') && !text.is_empty() {
                text.push('\n');
            }
            let marker = format!("[kumo: logs truncated at {} KiB]", self.cap / 1024);
            self.emit(Stream::Stderr, marker.as_bytes());
            text.push_str(&marker);
            text.push('\n');
        }
        (text, self.truncated)
    }
}

/// Secrets shorter than this are not blotted out of logs: they would hit
/// ordinary text.
pub(crate) const REDACT_MIN_LEN: usize = 4;

/// Blots `secrets` out of `text`, the longest first (so a secret that
/// holds a shorter one goes whole).
pub(crate) fn redact(text: &mut String, secrets: &[String]) {
    let mut sorted: Vec<&String> = secrets
        .iter()
        .filter(|s| s.len() >= REDACT_MIN_LEN)
        .collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in sorted {
        if text.contains(secret.as_str()) {
            *text = text.replace(secret.as_str(), kumo_types::SECRET_MASK);
        }
    }
}

/// [`redact`] with `secrets` already sorted longest first.
fn redact_sorted(text: &mut String, secrets: &[String]) {
    for secret in secrets {
        if text.contains(secret.as_str()) {
            *text = text.replace(secret.as_str(), kumo_types::SECRET_MASK);
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn caps_and_marks() {
        let mut logs = LogCapture::new(1024);
        logs.push(Stream::Stdout, b"hello\n");
        let (text, cut) = LogCapture::new(1024).finish();
        assert_eq!((text.as_str(), cut), ("", false));
        for _ in 0..100 {
            logs.push(Stream::Stdout, &[b'x'; 100]);
        }
        let (text, cut) = logs.finish();
        assert!(cut);
        assert!(text.starts_with("hello\nxxx"));
        assert!(
            text.ends_with("[kumo: logs truncated at 1 KiB]\n"),
            "{text}"
        );
        assert_eq!(text.lines().next().map(str::len), Some(5));
    }

    #[derive(Debug, Default)]
    struct Lines(Mutex<Vec<(Stream, String)>>);

    impl LogSink for Lines {
        fn line(&self, line: LogLine<'_>) {
            assert_eq!((line.function_id, line.run_id), ("f", "r"));
            self.0.lock().expect("lines").push((line.stream, line.text));
        }
    }

    #[test]
    fn lines_are_handed_on_as_they_complete() {
        let sink = Arc::new(Lines::default());
        let live = Live::new(sink.clone(), "f", "r", &["hunter2".to_string()]);
        let mut logs = LogCapture::live(64, Some(live));
        logs.push(Stream::Stdout, b"one\ntw");
        logs.push(Stream::Stderr, b"err: hunter2\r\n");
        assert_eq!(
            sink.0.lock().expect("lines").len(),
            2,
            "tw is not a line yet"
        );
        logs.push(Stream::Stdout, b"o\nthree");
        logs.push(Stream::Stdout, &[b'z'; 100]);
        let (text, cut) = logs.finish();
        assert!(cut, "{text}");
        let lines = sink.0.lock().expect("lines").clone();
        let texts: Vec<&str> = lines.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts[..3], ["one", "err: ***", "two"]);
        assert_eq!(lines[1].0, Stream::Stderr);
        assert!(texts[3].starts_with("threezz"), "{texts:?}");
        assert_eq!(texts.last(), Some(&"[kumo: logs truncated at 0 KiB]"));
    }

    #[test]
    fn secrets_are_blotted_out_of_lines_whatever_their_shape() {
        let sink = Arc::new(Lines::default());
        let pem = "-----BEGIN KEY-----\nAAAABBBBCCCC\n-----END KEY-----".to_string();
        let secrets = vec!["abcd".to_string(), "abcdefgh".to_string(), pem];
        let live = Live::new(sink.clone(), "f", "r", &secrets);
        let mut logs = LogCapture::live(1 << 22, Some(live));
        logs.push(Stream::Stdout, b"key abcdefgh and abcd\n");
        logs.push(
            Stream::Stdout,
            b"-----BEGIN KEY-----\nAAAABBBBCCCC\n-----END KEY-----\n",
        );
        // A long line whose cut would fall inside a secret.
        let mut long = vec![b'x'; MAX_LINE_BYTES - 3];
        long.extend_from_slice(b"abcdefgh");
        long.extend_from_slice(&[b'y'; MAX_LINE_BYTES]);
        logs.push(Stream::Stdout, &long);
        logs.finish();
        let lines = sink.0.lock().expect("lines").clone();
        let all: String = lines
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(lines[0].1 == "key *** and ***", "{:?}", lines[0]);
        for leaked in ["abcd", "AAAABBBBCCCC", "efgh"] {
            assert!(!all.contains(leaked), "{leaked} leaked");
        }
    }

    #[test]
    fn lines_per_call_are_capped() {
        let sink = Arc::new(Lines::default());
        let live = Live::new(sink.clone(), "f", "r", &[]);
        let mut logs = LogCapture::live(1 << 22, Some(live));
        logs.push(Stream::Stdout, &b"\n".repeat(MAX_LINES_PER_CALL + 50));
        logs.finish();
        let lines = sink.0.lock().expect("lines").clone();
        assert_eq!(lines.len(), MAX_LINES_PER_CALL + 1);
        assert!(
            lines
                .last()
                .is_some_and(|(_, t)| t.starts_with("[kumo: more than"))
        );
    }
}
