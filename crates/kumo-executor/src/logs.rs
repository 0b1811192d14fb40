//! The logs of one call: capped, with a marker where they were cut.

/// Collects a call's output up to a byte cap.
#[derive(Debug)]
pub(crate) struct LogCapture {
    buf: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl LogCapture {
    pub(crate) fn new(cap: usize) -> Self {
        LogCapture {
            buf: Vec::new(),
            cap,
            truncated: false,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.buf.len());
        if bytes.len() > room {
            self.buf.extend_from_slice(&bytes[..room]);
            self.truncated = true;
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The text (invalid UTF-8 replaced) and whether it was cut.
    pub(crate) fn finish(self) -> (String, bool) {
        let mut text = String::from_utf8_lossy(&self.buf).into_owned();
        if self.truncated {
            if !text.ends_with('\n') && !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!(
                "[kumo: logs truncated at {} KiB]\n",
                self.cap / 1024
            ));
        }
        (text, self.truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_marks() {
        let mut logs = LogCapture::new(1024);
        logs.push(b"hello\n");
        let (text, cut) = LogCapture::new(1024).finish();
        assert_eq!((text.as_str(), cut), ("", false));
        for _ in 0..100 {
            logs.push(&[b'x'; 100]);
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
}
