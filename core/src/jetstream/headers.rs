//! Reading and writing NATS header blocks (`NATS/1.0[ code desc]\r\nKey: Value\r\n...\r\n`)
//! for the JetStream publish path and the status messages of pull requests.

/// The header names the publish path reads (server/stream.go constants).
pub const MSG_ID: &str = "Nats-Msg-Id";
pub const EXPECTED_STREAM: &str = "Nats-Expected-Stream";
pub const EXPECTED_LAST_SEQ: &str = "Nats-Expected-Last-Sequence";
pub const EXPECTED_LAST_SUBJ_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";
pub const EXPECTED_LAST_MSG_ID: &str = "Nats-Expected-Last-Msg-Id";
pub const ROLLUP: &str = "Nats-Rollup";
pub const TTL: &str = "Nats-TTL";
pub const MARKER_REASON: &str = "Nats-Marker-Reason";
/// Set on sourced messages only: `<stream> <seq> <filter> <dest> <subject> <identity>`.
pub const STREAM_SOURCE: &str = "Nats-Stream-Source";

/// The value of the first header named `name` (compared ASCII-case-insensitively, as Go's
/// canonical MIME keys make lookups in nats-server), trimmed.
pub fn get<'a>(block: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(block).ok()?;
    let mut lines = text.split("\r\n");
    // The status line carries no header.
    lines.next()?;
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some((key, value)) = line.split_once(':') else { continue };
        if key.trim().eq_ignore_ascii_case(name) {
            return Some(value.trim());
        }
    }
    None
}

/// The header block of a DIRECT.GET answer: the stored headers (if any) followed by
/// `Nats-Stream`, `Nats-Subject`, `Nats-Sequence` and `Nats-Time-Stamp`, as nats-server adds.
pub fn with_direct_get(
    stored: &[u8],
    stream: &str,
    subject: &str,
    seq: u64,
    time: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored.len() + 128);
    match stored.strip_suffix(b"\r\n\r\n") {
        Some(head) if !stored.is_empty() => {
            out.extend_from_slice(head);
            out.extend_from_slice(b"\r\n");
        }
        _ => out.extend_from_slice(b"NATS/1.0\r\n"),
    }
    for (k, v) in [
        ("Nats-Stream", stream.to_string()),
        ("Nats-Subject", subject.to_string()),
        ("Nats-Sequence", seq.to_string()),
        ("Nats-Time-Stamp", time.to_string()),
    ] {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// `stored` (or an empty block) with `extra` headers appended.
pub fn with_extra(stored: &[u8], extra: &[(&str, String)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored.len() + 64);
    match stored.strip_suffix(b"\r\n\r\n") {
        Some(head) if !stored.is_empty() => {
            out.extend_from_slice(head);
            out.extend_from_slice(b"\r\n");
        }
        _ => out.extend_from_slice(b"NATS/1.0\r\n"),
    }
    for (k, v) in extra {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// `block` without the headers named `name` (ASCII-case-insensitively); a block left with no
/// header at all comes back empty.
pub fn without(block: &[u8], name: &str) -> Vec<u8> {
    without_matching(block, |k| k.eq_ignore_ascii_case(name))
}

/// `block` without the headers whose name `drop` picks (an empty block if nothing else is
/// left and the status line is the plain one).
pub fn without_matching(block: &[u8], drop: impl Fn(&str) -> bool) -> Vec<u8> {
    if block.is_empty() {
        return Vec::new();
    }
    let Ok(text) = std::str::from_utf8(block) else { return block.to_vec() };
    let mut lines = text.split("\r\n");
    let Some(status) = lines.next() else { return Vec::new() };
    let kept: Vec<&str> = lines
        .take_while(|l| !l.is_empty())
        .filter(|l| l.split_once(':').is_none_or(|(k, _)| !drop(k.trim())))
        .collect();
    if kept.is_empty() && status == "NATS/1.0" {
        return Vec::new();
    }
    let mut out = String::from(status);
    out.push_str("\r\n");
    for line in kept {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// A status-only header block, e.g. `NATS/1.0 404 No Messages`, with extra headers.
pub fn status(code: u16, description: &str, extra: &[(&str, String)]) -> Vec<u8> {
    let mut out = format!("NATS/1.0 {code} {description}\r\n");
    for (k, v) in extra {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_case_insensitively() {
        let block = b"NATS/1.0\r\nNats-Msg-Id: abc \r\nnats-expected-stream: S\r\n\r\n";
        assert_eq!(get(block, MSG_ID), Some("abc"));
        assert_eq!(get(block, EXPECTED_STREAM), Some("S"));
        assert_eq!(get(block, EXPECTED_LAST_SEQ), None);
        assert_eq!(get(b"\xff\xfe", MSG_ID), None);
    }

    #[test]
    fn status_block() {
        assert_eq!(status(404, "No Messages", &[]), b"NATS/1.0 404 No Messages\r\n\r\n");
    }
}
