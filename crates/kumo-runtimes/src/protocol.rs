//! The host side of the runner protocol (see `docs/runner-protocol.md`).
//!
//! Every message is a frame: a 4-byte big-endian length, then that many
//! bytes of one UTF-8 JSON object. Events and outputs travel as raw JSON
//! and are never decoded and re-encoded on the way through.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol version this host speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// The largest frame either side may send.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("the runner closed its channel")]
    Closed,
    #[error("channel i/o failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the runner sent a frame of {0} bytes, over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("the runner sent a malformed message: {0}")]
    Malformed(String),
}

/// Reads frames from a stream with as few reads as it can: each read takes
/// whatever has arrived (usually a whole frame), and bytes past the frame
/// are kept for the next one.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Where the unread bytes start and end in `buf`.
    start: usize,
    end: usize,
    /// The bytes of the last frame returned.
    frame: std::ops::Range<usize>,
}

/// What a [`FrameReader`] reads at least, per read.
const READ_CHUNK: usize = 16 * 1024;

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader {
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            frame: 0..0,
        }
    }
}

impl FrameReader {
    /// Reads the next frame; [`FrameReader::frame`] then holds its payload.
    pub async fn read<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<(), ProtocolError> {
        self.fill(reader, 4).await?;
        let head: [u8; 4] = self.buf[self.start..self.start + 4]
            .try_into()
            .expect("four bytes are buffered");
        let len = u32::from_be_bytes(head) as usize;
        if len > MAX_FRAME {
            return Err(ProtocolError::TooLarge(len));
        }
        self.fill(reader, 4 + len).await?;
        self.frame = self.start + 4..self.start + 4 + len;
        self.start += 4 + len;
        Ok(())
    }

    /// The payload of the last frame read.
    pub fn frame(&self) -> &[u8] {
        &self.buf[self.frame.clone()]
    }

    /// Gives back the memory of a large frame once it has been handled.
    pub fn shrink(&mut self) {
        if self.buf.len() > 1024 * 1024 && self.end - self.start <= READ_CHUNK {
            let mut small = vec![0; READ_CHUNK];
            small[..self.end - self.start].copy_from_slice(&self.buf[self.start..self.end]);
            self.buf = small;
            self.end -= self.start;
            self.start = 0;
            self.frame = 0..0;
        }
    }

    /// Reads until at least `want` unread bytes are buffered.
    async fn fill<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        want: usize,
    ) -> Result<(), ProtocolError> {
        while self.end - self.start < want {
            if self.start + want > self.buf.len() {
                // Move what is left to the front, and grow for a big frame.
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if want > self.buf.len() {
                    self.buf.resize(want.max(READ_CHUNK), 0);
                }
            }
            let n = reader.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return Err(ProtocolError::Closed);
            }
            self.end += n;
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(())
    }
}

/// Writes one already-encoded frame (see [`encode`]).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &[u8],
) -> Result<(), ProtocolError> {
    writer.write_all(frame).await?;
    Ok(())
}

/// Encodes `message` as a frame: length prefix and JSON in one buffer.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    // Serialising plain structs of strings, numbers and raw JSON cannot fail.
    serde_json::to_writer(&mut out, message).expect("protocol messages always serialise");
    let len = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// `load`: import the deployment's code.
#[derive(Debug, Serialize)]
pub struct Load<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub code_dir: &'a str,
    pub entrypoint: &'a str,
    pub handler: &'a str,
    /// Variables to add to the process environment before the code loads
    /// (a pre-started runner learns its function's environment this way).
    #[serde(skip_serializing_if = "<[_]>::is_empty", serialize_with = "env_map")]
    pub env: &'a [(String, String)],
    /// Directories of installed dependencies, searched after the code
    /// (Python's `sys.path`; other runners may ignore it).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub paths: &'a [String],
}

fn env_map<S: serde::Serializer>(env: &&[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(env.iter().map(|(k, v)| (k, v)))
}

impl<'a> Load<'a> {
    pub fn new(code_dir: &'a str, entrypoint: &'a str, handler: &'a str) -> Self {
        Load {
            kind: "load",
            code_dir,
            entrypoint,
            handler,
            env: &[],
            paths: &[],
        }
    }
}

/// `invoke`: run the handler once.
#[derive(Debug, Serialize)]
pub struct Invoke<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: &'a str,
    pub event: &'a RawValue,
    pub context: InvokeContext<'a>,
}

#[derive(Debug, Serialize)]
pub struct InvokeContext<'a> {
    pub function_name: &'a str,
    pub version: i64,
    pub memory_limit_mb: u64,
    /// Unix epoch milliseconds after which the call is killed.
    pub deadline_ms: u64,
}

impl<'a> Invoke<'a> {
    pub fn new(id: &'a str, event: &'a RawValue, context: InvokeContext<'a>) -> Self {
        Invoke {
            kind: "invoke",
            id,
            event,
            context,
        }
    }
}

/// An error reported by a runner.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct RunnerError {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub traceback: String,
}

/// Any message a runner sends, decoded.
#[derive(Debug)]
pub enum RunnerMessage {
    Hello {
        protocol: u32,
        runtime: String,
        runtime_version: String,
    },
    Loaded,
    LoadError(RunnerError),
    Result {
        id: String,
        outcome: Result<Option<Box<RawValue>>, RunnerError>,
    },
}

/// The flat shape every runner message fits; decoded in one pass so that
/// `output` stays raw JSON.
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    protocol: Option<u32>,
    #[serde(default)]
    runtime: Option<String>,
    #[serde(default)]
    runtime_version: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default)]
    output: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<RunnerError>,
}

/// Decodes one frame's payload.
pub fn decode(payload: &[u8]) -> Result<RunnerMessage, ProtocolError> {
    let frame: Frame =
        serde_json::from_slice(payload).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    let missing =
        |field: &str| ProtocolError::Malformed(format!("'{}' without '{field}'", frame.kind));
    Ok(match frame.kind.as_str() {
        "hello" => RunnerMessage::Hello {
            protocol: frame.protocol.ok_or_else(|| missing("protocol"))?,
            runtime: frame.runtime.clone().unwrap_or_default(),
            runtime_version: frame.runtime_version.clone().unwrap_or_default(),
        },
        "loaded" => RunnerMessage::Loaded,
        "load_error" => {
            RunnerMessage::LoadError(frame.error.clone().ok_or_else(|| missing("error"))?)
        }
        "result" => {
            let id = frame.id.clone().ok_or_else(|| missing("id"))?;
            let outcome = match frame.ok {
                Some(true) => Ok(frame.output.filter(|raw| raw.get() != "null")),
                Some(false) => Err(frame.error.ok_or_else(|| missing("error"))?),
                None => return Err(missing("ok")),
            };
            RunnerMessage::Result { id, outcome }
        }
        other => {
            return Err(ProtocolError::Malformed(format!(
                "unknown message type '{other}'"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_prefixes_length() {
        let frame = encode(&Load::new("/code", "main.py", "handler"));
        let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(len, frame.len() - 4);
        let text = std::str::from_utf8(&frame[4..]).expect("utf-8");
        assert!(
            text.starts_with(r#"{"type":"load","code_dir":"/code""#),
            "{text}"
        );
    }

    #[test]
    fn invoke_embeds_raw_event() {
        let event = RawValue::from_string(r#"{"a": [1, 2]}"#.into()).expect("json");
        let context = InvokeContext {
            function_name: "f",
            version: 2,
            memory_limit_mb: 128,
            deadline_ms: 5,
        };
        let frame = encode(&Invoke::new("r1", &event, context));
        let text = std::str::from_utf8(&frame[4..]).expect("utf-8");
        assert!(text.contains(r#""event":{"a": [1, 2]}"#), "{text}");
    }

    #[test]
    fn decode_result_keeps_raw_output() {
        let msg =
            decode(br#"{"type":"result","id":"r1","ok":true,"output":{"x": 1}}"#).expect("decodes");
        match msg {
            RunnerMessage::Result {
                id,
                outcome: Ok(Some(raw)),
            } => {
                assert_eq!(id, "r1");
                assert_eq!(raw.get(), r#"{"x": 1}"#);
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg =
            decode(br#"{"type":"result","id":"r2","ok":true,"output":null}"#).expect("decodes");
        assert!(matches!(
            msg,
            RunnerMessage::Result {
                outcome: Ok(None),
                ..
            }
        ));
        let msg = decode(br#"{"type":"result","id":"r3","ok":false,"error":{"type":"E","message":"m","traceback":"t"}}"#).expect("decodes");
        assert!(matches!(
            msg,
            RunnerMessage::Result {
                outcome: Err(RunnerError { .. }),
                ..
            }
        ));
    }

    /// Frames arriving together, split at odd places, or larger than the
    /// buffer all come out whole and in order.
    #[tokio::test]
    async fn the_frame_reader_keeps_what_follows_a_frame() {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        let big = "x".repeat(100_000);
        let frames: Vec<Vec<u8>> = vec![
            encode(&Load::new("/c", "m.py", "h")),
            encode(&Load::new("/d", "n.py", &big)),
            encode(&Load::new("/e", "o.py", "k")),
        ];
        let all: Vec<u8> = frames.concat();
        let writer = tokio::spawn(async move {
            for piece in all.chunks(7_777) {
                a.write_all(piece).await.expect("write");
            }
            a
        });
        let mut reader = FrameReader::default();
        for frame in &frames {
            reader.read(&mut b).await.expect("read");
            assert_eq!(reader.frame(), &frame[4..]);
            reader.shrink();
        }
        drop(writer.await.expect("writer"));
        assert!(matches!(
            reader.read(&mut b).await,
            Err(ProtocolError::Closed)
        ));
    }

    #[tokio::test]
    async fn the_frame_reader_refuses_oversized_frames() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&(MAX_FRAME as u32 + 1).to_be_bytes())
            .await
            .expect("write");
        let mut reader = FrameReader::default();
        assert!(matches!(
            reader.read(&mut b).await,
            Err(ProtocolError::TooLarge(_))
        ));
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(decode(b"nope").is_err());
        assert!(decode(br#"{"type":"what"}"#).is_err());
        assert!(decode(br#"{"type":"result","ok":true}"#).is_err());
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_frame(&mut a, &encode(&Load::new("/c", "m.py", "h")))
            .await
            .expect("write");
        let mut reader = FrameReader::default();
        reader.read(&mut b).await.expect("read");
        assert!(reader.frame().starts_with(b"{\"type\":\"load\""));
    }
}
