//! The error output (stderr) of a client's containers, for its `error.log`.
//!
//! The engine keeps each container's output with a timestamp per line (the json-file driver
//! agency's overrides set, 10 MB × 5), across restarts of the container, until the container
//! is removed. Collection asks it for one container's stderr since the last line taken
//! (`docker logs --timestamps --since`, see `drivers::container_logs`); the cursor is that
//! line's timestamp and how many lines with exactly that timestamp were taken, since the
//! engine's `--since` is inclusive. A container removed by stop-client or re-created by
//! deploy-client is collected by those tasks just before; a new container starts a cursor
//! of its own (keyed by its id).
//!
//! Each line written is `time service message`: the engine's timestamp (UTC, nanoseconds), the
//! Compose service, and the line as the service wrote it, where a control character other than
//! a tab is written `\xNN`, so no line can split into two.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerCursor {
    pub client: String,
    /// Timestamp of the last line taken; empty before the first.
    pub since: String,
    /// How many lines stamped exactly `since` were taken.
    pub skip: u64,
}

/// One line for the client's error.log, with the timestamp it sorts by.
pub struct ErrorLine {
    pub time: String,
    pub text: Vec<u8>,
}

fn push_message(out: &mut Vec<u8>, message: &str) {
    for &byte in message.as_bytes() {
        if byte == b'\t' || !(byte.is_ascii_control()) {
            out.push(byte);
        } else {
            out.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
        }
    }
}

/// The lines of `stderr` (`docker logs --timestamps` output) the cursor has not taken yet,
/// formatted for `service`, and the cursor after them.
pub fn take_new(stderr: &str, service: &str, cursor: &ContainerCursor) -> (Vec<ErrorLine>, ContainerCursor) {
    let mut next = cursor.clone();
    let mut at_cursor = 0;
    let mut lines = Vec::new();
    for line in stderr.lines() {
        let (time, message) = line.split_once(' ').unwrap_or((line, ""));
        if !crate::drivers::container_logs::is_timestamp(time) {
            continue;
        }
        if !cursor.since.is_empty() {
            if time < cursor.since.as_str() {
                continue;
            }
            if time == cursor.since {
                at_cursor += 1;
                if at_cursor <= cursor.skip {
                    continue;
                }
            }
        }
        if time == next.since {
            next.skip += 1;
        } else {
            next.since = time.to_string();
            next.skip = 1;
        }
        let mut text = Vec::with_capacity(time.len() + service.len() + message.len() + 3);
        text.extend_from_slice(time.as_bytes());
        text.push(b' ');
        text.extend_from_slice(service.as_bytes());
        text.push(b' ');
        push_message(&mut text, message.trim_end_matches('\r'));
        text.push(b'\n');
        lines.push(ErrorLine { time: time.to_string(), text });
    }
    (lines, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[ErrorLine]) -> Vec<String> {
        lines.iter().map(|l| String::from_utf8(l.text.clone()).unwrap()).collect()
    }

    #[test]
    fn takes_each_line_once_also_lines_sharing_a_timestamp() {
        let first = "2026-12-02T07:00:00.000000001Z a\n2026-12-02T07:00:00.000000002Z b\n";
        let (lines, cursor) = take_new(first, "web", &ContainerCursor::default());
        assert_eq!(texts(&lines), ["2026-12-02T07:00:00.000000001Z web a\n", "2026-12-02T07:00:00.000000002Z web b\n"]);
        assert_eq!((cursor.since.as_str(), cursor.skip), ("2026-12-02T07:00:00.000000002Z", 1));
        // The engine answers --since inclusively: b again, then c with the same stamp, then d.
        let second = "2026-12-02T07:00:00.000000002Z b\n2026-12-02T07:00:00.000000002Z c\n2026-12-02T07:00:01.000000000Z d\x1b[0m\n";
        let (lines, cursor) = take_new(second, "web", &cursor);
        assert_eq!(
            texts(&lines),
            ["2026-12-02T07:00:00.000000002Z web c\n", "2026-12-02T07:00:01.000000000Z web d\\x1b[0m\n"]
        );
        let (lines, _) = take_new(second, "web", &cursor);
        assert!(lines.is_empty());
    }
}
