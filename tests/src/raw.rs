//! Raw TCP connections: exact bytes in, exact bytes out.
//!
//! `read_until_pong_or_close` makes raw tests deterministic without sleeps: it sends one more
//! `PING` as a barrier and reads until the server has answered every `PING` this connection sent
//! (the server handles a connection's input in order, so everything caused by earlier input is
//! then in the buffer) or until the server closed the connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a raw read may wait for the server before the test gives up.
pub const RAW_TIMEOUT: Duration = Duration::from_secs(10);

pub struct RawConn {
    stream: TcpStream,
    /// The INFO line the server sent on accept, with its `\r\n`.
    pub info: String,
    /// Bytes read but not yet returned (after INFO).
    pending: Vec<u8>,
    /// PINGs sent so far (barriers and PING lines found in sent data).
    pings_sent: usize,
    /// PONGs already consumed by earlier reads.
    pongs_returned: usize,
    /// Tracks client protocol framing in sent data so that PINGs can be counted.
    client_parser: ClientScanner,
}

impl RawConn {
    /// Connects and reads the server's INFO line.
    pub fn connect(addr: SocketAddr) -> RawConn {
        Self::try_connect(addr).unwrap_or_else(|e| panic!("raw connect to {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr) -> Result<RawConn, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).ok();
        let mut conn = RawConn {
            stream,
            info: String::new(),
            pending: Vec::new(),
            pings_sent: 0,
            pongs_returned: 0,
            client_parser: ClientScanner::default(),
        };
        let deadline = Instant::now() + RAW_TIMEOUT;
        loop {
            if let Some(pos) = find(&conn.pending, b"\r\n") {
                let line: Vec<u8> = conn.pending.drain(..pos + 2).collect();
                conn.info = String::from_utf8_lossy(&line).into_owned();
                if !conn.info.starts_with("INFO ") {
                    return Err(format!("first line is not INFO: {}", escape_bytes(&line)));
                }
                return Ok(conn);
            }
            match conn.read_some(deadline)? {
                0 => {
                    return Err(format!("closed before INFO; got {}", escape_bytes(&conn.pending)))
                }
                _ => continue,
            }
        }
    }

    /// The INFO JSON.
    pub fn info_json(&self) -> serde_json::Value {
        let body = self.info.trim_end().strip_prefix("INFO ").unwrap_or("").trim();
        serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("INFO is not JSON ({e}): {}", self.info))
    }

    /// Sends bytes. A write error (the server already closed) is ignored: the next read
    /// reports the close.
    pub fn send(&mut self, bytes: &[u8]) {
        self.pings_sent += self.client_parser.count_pings(bytes);
        let _ = self.stream.write_all(bytes);
    }

    /// Sends a `CONNECT` with the given JSON.
    pub fn send_connect(&mut self, json: &str) {
        self.send(format!("CONNECT {json}\r\n").as_bytes());
    }

    /// Sends `PING\r\n` and reads until the server answered all PINGs sent so far, or closed.
    /// Returns the bytes received since the previous read (server-initiated `PING`s removed:
    /// their timing is not deterministic) and whether the connection was closed.
    pub fn read_until_pong_or_close(&mut self) -> (Vec<u8>, bool) {
        self.try_read_until_pong_or_close().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_read_until_pong_or_close(&mut self) -> Result<(Vec<u8>, bool), String> {
        // The barrier always counts, whatever the scanner makes of it (after malformed input
        // the scanner may think it is inside a payload; the server will then have closed).
        self.client_parser.count_pings(b"PING\r\n");
        self.pings_sent += 1;
        let _ = self.stream.write_all(b"PING\r\n");
        let deadline = Instant::now() + RAW_TIMEOUT;
        loop {
            let scan = scan_server(&self.pending);
            if let Some(end) = scan.end_of_nth_pong(self.pings_sent - self.pongs_returned) {
                let out: Vec<u8> = self.pending.drain(..end).collect();
                self.pongs_returned = self.pings_sent;
                return Ok((strip_server_pings(&out), false));
            }
            match self.read_some(deadline) {
                Ok(0) | Err(ReadErr::Closed) => {
                    let out = std::mem::take(&mut self.pending);
                    return Ok((strip_server_pings(&out), true));
                }
                Ok(_) => continue,
                Err(ReadErr::Timeout) => {
                    return Err(format!(
                        "no PONG and no close within {RAW_TIMEOUT:?}; received so far: {}",
                        escape_bytes(&self.pending)
                    ))
                }
                Err(ReadErr::Other(e)) => return Err(e),
            }
        }
    }

    /// Reads until at least `n` bytes are buffered (or close/timeout) and returns them all.
    pub fn read_at_least(&mut self, n: usize) -> Vec<u8> {
        let deadline = Instant::now() + RAW_TIMEOUT;
        while self.pending.len() < n {
            match self.read_some(deadline) {
                Ok(0) | Err(ReadErr::Closed) => break,
                Ok(_) => {}
                Err(ReadErr::Timeout) => break,
                Err(ReadErr::Other(e)) => panic!("{e}"),
            }
        }
        std::mem::take(&mut self.pending)
    }

    /// Waits until the server closes the connection, discarding what it sends; true if it
    /// closed within `timeout`.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_some(deadline) {
                Ok(0) | Err(ReadErr::Closed) => return true,
                Ok(_) => self.pending.clear(),
                Err(ReadErr::Timeout) => return false,
                Err(ReadErr::Other(e)) => panic!("{e}"),
            }
        }
    }

    /// Reads everything the server sends until it closes the connection; None if it did not
    /// close within `timeout`. For server-initiated endings (timeouts, stale connections).
    pub fn read_until_close(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_some(deadline) {
                Ok(0) | Err(ReadErr::Closed) => return Some(std::mem::take(&mut self.pending)),
                Ok(_) => {}
                Err(ReadErr::Timeout) => return None,
                Err(ReadErr::Other(e)) => panic!("{e}"),
            }
        }
    }

    /// The socket, for tests that need it directly.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    fn read_some(&mut self, deadline: Instant) -> Result<usize, ReadErr> {
        let now = Instant::now();
        if now >= deadline {
            return Err(ReadErr::Timeout);
        }
        self.stream
            .set_read_timeout(Some(deadline - now))
            .map_err(|e| ReadErr::Other(e.to_string()))?;
        let mut buf = [0u8; 65536];
        match self.stream.read(&mut buf) {
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            Err(e) => match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => Err(ReadErr::Timeout),
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof => Err(ReadErr::Closed),
                ErrorKind::Interrupted => Ok(self.read_some(deadline)?),
                _ => Err(ReadErr::Other(format!("raw read: {e}"))),
            },
        }
    }
}

impl From<ReadErr> for String {
    fn from(e: ReadErr) -> String {
        match e {
            ReadErr::Timeout => "timed out".into(),
            ReadErr::Closed => "closed".into(),
            ReadErr::Other(s) => s,
        }
    }
}

enum ReadErr {
    Timeout,
    Closed,
    Other(String),
}

/// Tracks client->server framing across `send` calls, to count the PINGs the server will
/// answer. Best effort: `PUB`/`HPUB` payloads are skipped by their declared size.
#[derive(Default)]
struct ClientScanner {
    line: Vec<u8>,
    skip: usize,
}

impl ClientScanner {
    fn count_pings(&mut self, bytes: &[u8]) -> usize {
        let mut pings = 0;
        for &b in bytes {
            if self.skip > 0 {
                self.skip -= 1;
                continue;
            }
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let line = std::mem::take(&mut self.line);
            let text = String::from_utf8_lossy(&line);
            let mut parts = text.split_ascii_whitespace();
            let op = parts.next().unwrap_or("").to_ascii_uppercase();
            let last = text.split_ascii_whitespace().last().unwrap_or("");
            match op.as_str() {
                "PING" => pings += 1,
                "PUB" | "HPUB" => {
                    if let Ok(n) = last.parse::<usize>() {
                        self.skip = n + 2;
                    }
                }
                _ => {}
            }
        }
        pings
    }
}

struct ServerScan {
    /// Offsets just after each PONG op.
    pong_ends: Vec<usize>,
}

impl ServerScan {
    fn end_of_nth_pong(&self, n: usize) -> Option<usize> {
        if n == 0 {
            return Some(0);
        }
        self.pong_ends.get(n - 1).copied()
    }
}

/// Splits server->client bytes into ops (skipping MSG/HMSG payloads) and finds the PONGs.
fn scan_server(buf: &[u8]) -> ServerScan {
    let mut pong_ends = Vec::new();
    let mut pos = 0;
    while let Some(rel) = find(&buf[pos..], b"\n") {
        let line_end = pos + rel + 1;
        let line = String::from_utf8_lossy(&buf[pos..line_end]);
        let mut parts = line.split_ascii_whitespace();
        let op = parts.next().unwrap_or("").to_ascii_uppercase();
        let mut next = line_end;
        match op.as_str() {
            "PONG" => pong_ends.push(line_end),
            "MSG" | "HMSG" => {
                let size =
                    line.split_ascii_whitespace().last().and_then(|s| s.parse::<usize>().ok());
                match size {
                    Some(n) if line_end + n + 2 <= buf.len() => next = line_end + n + 2,
                    // Payload not complete yet (or garbage): stop here.
                    _ => break,
                }
            }
            _ => {}
        }
        pos = next;
    }
    ServerScan { pong_ends }
}

/// Removes whole `PING\r\n` ops sent by the server (keepalive / RTT probes).
fn strip_server_pings(buf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(buf.len());
    let mut pos = 0;
    while pos < buf.len() {
        let Some(rel) = find(&buf[pos..], b"\n") else {
            out.extend_from_slice(&buf[pos..]);
            break;
        };
        let line_end = pos + rel + 1;
        let line = &buf[pos..line_end];
        let text = String::from_utf8_lossy(line);
        let op = text.split_ascii_whitespace().next().unwrap_or("").to_ascii_uppercase();
        match op.as_str() {
            "PING" if line == b"PING\r\n" => {}
            "MSG" | "HMSG" => {
                let size =
                    text.split_ascii_whitespace().last().and_then(|s| s.parse::<usize>().ok());
                let end = size.map(|n| (line_end + n + 2).min(buf.len())).unwrap_or(line_end);
                out.extend_from_slice(&buf[pos..end]);
                pos = end;
                continue;
            }
            _ => out.extend_from_slice(line),
        }
        pos = line_end;
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Bytes as a readable string: printable ASCII as is, `\r`, `\n`, `\t`, `\\` escaped, others
/// as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_counts_pings_outside_payloads() {
        let mut c = ClientScanner::default();
        assert_eq!(c.count_pings(b"PING\r\nPUB a 6\r\nPING\r\n\r\nping\r\n"), 2);
        assert_eq!(c.count_pings(b"HPUB a 2 6\r\nPI"), 0);
        assert_eq!(c.count_pings(b"NG\r\n\r\nPING\r\n"), 1);
    }

    #[test]
    fn server_scan_skips_payloads() {
        let s = scan_server(b"MSG a 1 6\r\nPONG\r\n\r\nPONG\r\n");
        assert_eq!(s.pong_ends, vec![25]);
        assert_eq!(
            strip_server_pings(b"PING\r\nMSG a 1 6\r\nPING\r\n\r\nPONG\r\n"),
            b"MSG a 1 6\r\nPING\r\n\r\nPONG\r\n"
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(escape_bytes(b"a\r\n\x00\\"), "a\\r\\n\\x00\\\\");
    }
}
