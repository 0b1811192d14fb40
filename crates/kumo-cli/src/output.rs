//! Output for people (tables, colour on a terminal) and for scripts
//! (`--json`).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::IsTerminal;

use anstyle::{AnsiColor, Style};

/// Bold, for headings.
pub const HEADING: Style = Style::new().bold();
/// Green, for what went well.
pub const GOOD: Style = AnsiColor::Green.on_default();
/// Red, for failures.
pub const BAD: Style = AnsiColor::Red.on_default().bold();
/// Yellow, for what deserves a look.
pub const NOTE: Style = AnsiColor::Yellow.on_default();
/// Dim, for the less important.
pub const DIM: Style = Style::new().dimmed();

/// `text` in `style` (the terminal decides whether colour shows: output
/// goes through `anstream`, which drops it when not a terminal).
pub fn paint(style: Style, text: impl std::fmt::Display) -> String {
    format!("{style}{text}{style:#}")
}

/// Text a function controls (what it prints, returns or fails with, and
/// its build's log) made safe to show on a terminal: every control
/// character but newline and tab is written as a visible escape (`\x1b`,
/// `\r`, `\u{9b}`), so that printing cannot move the cursor, rewrite
/// earlier lines, retitle the window, make links (OSC 8) or write the
/// clipboard (OSC 52) of whoever reads the logs.
pub fn untrusted(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            c if !is_unsafe(c) => out.push(c),
            c if u32::from(c) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

/// C0 and C1 control characters and DEL, but newline and tab.
fn is_unsafe(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// Whether people (rather than a program) read standard input.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// Prints rows as columns, the first row as the heading.
pub fn table(rows: &[Vec<String>]) {
    let Some(first) = rows.first() else { return };
    let mut widths = vec![0usize; first.len()];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    for (n, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let last = i + 1 == row.len();
            let pad = if last {
                0
            } else {
                widths[i] - cell.chars().count() + 2
            };
            line.push_str(cell);
            line.push_str(&" ".repeat(pad));
        }
        if n == 0 {
            anstream::println!("{}", paint(HEADING, line.trim_end()));
        } else {
            anstream::println!("{}", line.trim_end());
        }
    }
}

/// Prints a value as pretty JSON.
pub fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A Unix-milliseconds time as `2026-12-02 03:14:16 UTC`.
pub fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// How long ago a Unix-milliseconds time was, as `3m ago`.
pub fn ago(ms: i64) -> String {
    let secs = (kumo_now_ms() - ms).max(0) / 1000;
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86_399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

fn kumo_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_text_cannot_reach_the_terminal_as_control_sequences() {
        // OSC 52 (write the clipboard), OSC 8 (a link), a cursor move, a
        // carriage return over the line, DEL and a C1 CSI.
        let hostile =
            "a\x1b]52;c;aGVsbG8=\x07b \x1b]8;;http://x\x1b\\l\x1b]8;;\x1b\\ \x1b[2J\r\x7f\u{9b}31m";
        let shown = untrusted(hostile);
        assert!(
            !shown.chars().any(|c| c.is_control()),
            "no control character is left: {shown:?}"
        );
        assert_eq!(
            shown,
            "a\\x1b]52;c;aGVsbG8=\\x07b \\x1b]8;;http://x\\x1b\\l\\x1b]8;;\\x1b\\ \\x1b[2J\\r\\x7f\\u{9b}31m"
        );
        // Newlines and tabs stay; plain text is not copied.
        assert_eq!(untrusted("a\tb\nc"), "a\tb\nc");
        assert!(matches!(untrusted("plain, ünïcode ✓"), Cow::Borrowed(_)));
    }

    #[test]
    fn times() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_796_180_271_949), "2026-12-02 02:57:51 UTC");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }
}
