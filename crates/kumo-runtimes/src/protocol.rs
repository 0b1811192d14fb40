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

/// Reads one frame into `buf` (cleared first).
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(ProtocolError::Closed);
        }
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(ProtocolError::TooLarge(len));
    }
    buf.clear();
    buf.resize(len, 0);
    match reader.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ProtocolError::Closed),
        Err(e) => Err(e.into()),
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

    #[test]
    fn decode_rejects_garbage() {
        assert!(decode(b"nope").is_err());
        assert!(decode(br#"{"type":"what"}"#).is_err());
        assert!(decode(br#"{"type":"result","ok":true}"#).is_err());
    }

    #[tokio::test]
    async fn frames_round_trip_and_limit() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_frame(&mut a, &encode(&Load::new("/c", "m.py", "h")))
            .await
            .expect("write");
        let mut buf = Vec::new();
        read_frame(&mut b, &mut buf).await.expect("read");
        assert!(buf.starts_with(b"{\"type\":\"load\""));
        a.write_all(&(MAX_FRAME as u32 + 1).to_be_bytes())
            .await
            .expect("write");
        assert!(matches!(
            read_frame(&mut b, &mut buf).await,
            Err(ProtocolError::TooLarge(_))
        ));
        drop(a);
        assert!(matches!(
            read_frame(&mut b, &mut buf).await,
            Err(ProtocolError::Closed)
        ));
    }
}
