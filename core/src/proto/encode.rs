//! Encoders for what the server sends. The caller owns the buffer: frames are appended to it,
//! so many frames share one allocation and one write.

use std::io::Write;

pub const PONG: &[u8] = b"PONG\r\n";
pub const PING: &[u8] = b"PING\r\n";
pub const OK: &[u8] = b"+OK\r\n";

/// `-ERR '<text>'\r\n`.
pub fn err(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"-ERR '");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"'\r\n");
}

/// A delivered message: `MSG` when there are no headers (or the recipient cannot take them,
/// in which case they are stripped), `HMSG` otherwise.
pub fn msg(
    out: &mut Vec<u8>,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
    recipient_takes_headers: bool,
) {
    let headers = if recipient_takes_headers { headers } else { None };
    out.reserve(subject.len() + sid.len() + payload.len() + 48);
    match headers {
        Some(_) => out.extend_from_slice(b"HMSG "),
        None => out.extend_from_slice(b"MSG "),
    }
    out.extend_from_slice(subject);
    out.push(b' ');
    out.extend_from_slice(sid);
    out.push(b' ');
    if let Some(reply) = reply {
        out.extend_from_slice(reply);
        out.push(b' ');
    }
    match headers {
        Some(hdr) => {
            push_usize(out, hdr.len());
            out.push(b' ');
            push_usize(out, hdr.len() + payload.len());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(hdr);
        }
        None => {
            push_usize(out, payload.len());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// The header block of a no-responders status, as nats-server writes it.
pub fn no_responders_headers(subject: &[u8]) -> Vec<u8> {
    let mut hdr = Vec::with_capacity(40 + subject.len());
    hdr.extend_from_slice(b"NATS/1.0 503\r\nNats-Subject: ");
    hdr.extend_from_slice(subject);
    hdr.extend_from_slice(b"\r\n\r\n");
    hdr
}

fn push_usize(out: &mut Vec<u8>, n: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Writes into a Vec cannot fail; keep `write!` usable for rare formatted frames.
pub fn fmt(out: &mut Vec<u8>, args: std::fmt::Arguments<'_>) {
    let _ = out.write_fmt(args);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_without_headers() {
        let mut out = Vec::new();
        msg(&mut out, b"foo", b"1", None, None, b"hi", true);
        assert_eq!(out, b"MSG foo 1 2\r\nhi\r\n");
    }

    #[test]
    fn msg_with_reply_and_headers() {
        let mut out = Vec::new();
        msg(&mut out, b"foo", b"7", Some(b"r"), Some(b"NATS/1.0\r\n\r\n"), b"hi", true);
        assert_eq!(out, b"HMSG foo 7 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
    }

    #[test]
    fn headers_stripped_for_recipient_without_header_support() {
        let mut out = Vec::new();
        msg(&mut out, b"foo", b"7", None, Some(b"NATS/1.0\r\n\r\n"), b"hi", false);
        assert_eq!(out, b"MSG foo 7 2\r\nhi\r\n");
    }

    #[test]
    fn no_responders_matches_reference_bytes() {
        let hdr = no_responders_headers(b"nothing");
        let mut out = Vec::new();
        msg(&mut out, b"r", b"9", None, Some(&hdr), b"", true);
        assert_eq!(out, b"HMSG r 9 39 39\r\nNATS/1.0 503\r\nNats-Subject: nothing\r\n\r\n\r\n");
    }

    #[test]
    fn err_line() {
        let mut out = Vec::new();
        err(&mut out, "Unknown Protocol Operation");
        assert_eq!(out, b"-ERR 'Unknown Protocol Operation'\r\n");
    }
}
