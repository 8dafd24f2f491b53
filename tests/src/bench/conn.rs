//! A minimal blocking NATS client connection speaking the raw text protocol, made for
//! benchmarking: large writes of pre-encoded frames, and an incremental scanner that
//! recognises server frames (MSG/HMSG payloads are skipped, never copied).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub type Res<T> = Result<T, String>;

/// How long a blocking socket call waits before re-checking the abort flag and deadline.
const POLL: Duration = Duration::from_millis(200);
const BUF_SIZE: usize = 1 << 20;

pub const CONNECT: &[u8] =
    b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}\r\n";

/// State shared by every thread of one benchmark run: a deadline and an abort flag,
/// so that any failing thread (or the deadline) stops all the others promptly.
pub struct Ctx {
    deadline: Instant,
    abort: AtomicBool,
    first_error: Mutex<Option<String>>,
}

impl Ctx {
    pub fn new(timeout: Duration) -> Arc<Ctx> {
        Arc::new(Ctx {
            deadline: Instant::now() + timeout,
            abort: AtomicBool::new(false),
            first_error: Mutex::new(None),
        })
    }

    /// Fails if the run was aborted by another thread or exceeded its deadline.
    pub fn check(&self, what: &str) -> Res<()> {
        if self.abort.load(Ordering::Relaxed) {
            return Err(format!("aborted ({what})"));
        }
        if Instant::now() > self.deadline {
            return Err(format!("run exceeded its timeout while {what}"));
        }
        Ok(())
    }

    /// Records an error (the first one wins) and tells every thread to stop.
    pub fn fail(&self, err: String) {
        let mut first = self.first_error.lock().unwrap();
        if first.is_none() {
            *first = Some(err);
        }
        self.abort.store(true, Ordering::Relaxed);
    }

    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().unwrap().clone()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A MSG or HMSG frame whose payload (headers included) has been fully received and
    /// skipped. If it carried a reply subject, it is available from [`Conn::reply`].
    Msg {
        has_reply: bool,
        len: usize,
    },
    Ping,
    Pong,
    Info,
    Ok,
}

pub struct Conn {
    stream: TcpStream,
    ctx: Arc<Ctx>,
    name: String,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    reply: Vec<u8>,
    /// When the most recent successful read returned.
    pub last_read: Instant,
}

/// Parses `nats://host:port` (or `host:port`) into something connectable.
pub fn parse_url(url: &str) -> Res<String> {
    let rest = url.strip_prefix("nats://").or_else(|| url.strip_prefix("tcp://")).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest).trim_end_matches('/');
    if rest.is_empty() {
        return Err(format!("bad url {url:?}"));
    }
    Ok(if rest.contains(':') { rest.to_string() } else { format!("{rest}:4222") })
}

impl Conn {
    /// Connects, reads INFO, sends CONNECT and waits for the PONG of a PING.
    pub fn connect(addr: &str, name: &str, ctx: &Arc<Ctx>) -> Res<Conn> {
        let sock = addr
            .to_socket_addrs()
            .map_err(|e| format!("{name}: cannot resolve {addr}: {e}"))?
            .next()
            .ok_or_else(|| format!("{name}: no address for {addr}"))?;
        let stream = TcpStream::connect_timeout(&sock, Duration::from_secs(5))
            .map_err(|e| format!("{name}: cannot connect to {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(POLL)).map_err(|e| e.to_string())?;
        stream.set_write_timeout(Some(POLL)).map_err(|e| e.to_string())?;
        let mut conn = Conn {
            stream,
            ctx: ctx.clone(),
            name: name.to_string(),
            buf: vec![0; BUF_SIZE],
            start: 0,
            end: 0,
            reply: Vec::new(),
            last_read: Instant::now(),
        };
        match conn.next_event()? {
            Event::Info => {}
            other => return Err(format!("{name}: expected INFO first, got {other:?}")),
        }
        conn.write_all(CONNECT)?;
        conn.flush()?;
        Ok(conn)
    }

    /// A second handle on the same socket (for PINGs or shutdown from another thread).
    pub fn try_clone_stream(&self) -> Res<TcpStream> {
        self.stream.try_clone().map_err(|e| format!("{}: clone: {e}", self.name))
    }

    /// The reply subject of the last MSG event (empty if it had none).
    pub fn reply(&self) -> &[u8] {
        &self.reply
    }

    /// Bytes received but not scanned yet.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Sends SUB (optionally in a queue group) without waiting for confirmation.
    pub fn sub(&mut self, subject: &str, queue: Option<&str>, sid: u64) -> Res<()> {
        let line = match queue {
            Some(q) => format!("SUB {subject} {q} {sid}\r\n"),
            None => format!("SUB {subject} {sid}\r\n"),
        };
        self.write_all(line.as_bytes())
    }

    /// PING, then wait for the PONG. Answers server PINGs; any MSG is an error here.
    pub fn flush(&mut self) -> Res<()> {
        self.write_all(b"PING\r\n")?;
        self.wait_pong()
    }

    /// Waits for one PONG (answering server PINGs). Any MSG is an error here.
    pub fn wait_pong(&mut self) -> Res<()> {
        loop {
            match self.next_event()? {
                Event::Pong => return Ok(()),
                Event::Ping => self.write_all(b"PONG\r\n")?,
                Event::Info | Event::Ok => {}
                Event::Msg { .. } => {
                    return Err(format!("{}: unexpected MSG while waiting for PONG", self.name))
                }
            }
        }
    }

    /// Writes everything, re-checking the abort flag and deadline while the socket is full.
    pub fn write_all(&mut self, mut data: &[u8]) -> Res<()> {
        write_all_ctx(&mut self.stream, &mut data, &self.ctx, &self.name)
    }

    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn fill(&mut self) -> Res<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                // A single control line longer than the buffer (a huge INFO, say).
                let len = self.buf.len();
                self.buf.resize(len * 2, 0);
            }
        }
        loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    return Err(format!("{}: server closed the connection", self.name));
                }
                Ok(n) => {
                    self.end += n;
                    self.last_read = Instant::now();
                    return Ok(());
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    self.ctx.check(&format!("{} was waiting for data", self.name))?;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("{}: read error: {e}", self.name)),
            }
        }
    }

    /// Blocks until the next complete server frame has been received.
    pub fn next_event(&mut self) -> Res<Event> {
        loop {
            let Some(nl) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) else {
                self.fill()?;
                continue;
            };
            let line_start = self.start;
            let mut line_end = line_start + nl;
            self.start = line_end + 1;
            if line_end > line_start && self.buf[line_end - 1] == b'\r' {
                line_end -= 1;
            }
            let line = &self.buf[line_start..line_end];
            let op_end = line.iter().position(|&b| b == b' ' || b == b'\t').unwrap_or(line.len());
            let op = &line[..op_end];
            if op.eq_ignore_ascii_case(b"MSG") || op.eq_ignore_ascii_case(b"HMSG") {
                let headers = op.len() == 4;
                // MSG <subject> <sid> [reply] <#bytes>
                // HMSG <subject> <sid> [reply] <#header bytes> <#total bytes>
                let mut toks: [&[u8]; 6] = [&[]; 6];
                let mut n = 0;
                for t in line[op_end..].split(|&b| b == b' ' || b == b'\t') {
                    if t.is_empty() {
                        continue;
                    }
                    if n == toks.len() {
                        n += 1;
                        break;
                    }
                    toks[n] = t;
                    n += 1;
                }
                let fixed = if headers { 4 } else { 3 };
                if n != fixed && n != fixed + 1 {
                    return Err(self.bad_line(line_start, line_end));
                }
                let Some(len) = parse_usize(toks[n - 1]) else {
                    return Err(self.bad_line(line_start, line_end));
                };
                let has_reply = n == fixed + 1;
                self.reply.clear();
                if has_reply {
                    self.reply.extend_from_slice(toks[2]);
                }
                // Skip payload and its trailing CRLF.
                let mut skip = len + 2;
                loop {
                    let avail = self.end - self.start;
                    if avail >= skip {
                        self.start += skip;
                        break;
                    }
                    skip -= avail;
                    self.start = self.end;
                    self.fill()?;
                }
                return Ok(Event::Msg { has_reply, len });
            }
            if op.eq_ignore_ascii_case(b"PING") {
                return Ok(Event::Ping);
            }
            if op.eq_ignore_ascii_case(b"PONG") {
                return Ok(Event::Pong);
            }
            if op.eq_ignore_ascii_case(b"INFO") {
                return Ok(Event::Info);
            }
            if op.eq_ignore_ascii_case(b"+OK") {
                return Ok(Event::Ok);
            }
            if op.eq_ignore_ascii_case(b"-ERR") {
                let text = String::from_utf8_lossy(&self.buf[line_start..line_end]).into_owned();
                return Err(format!("{}: server sent {text}", self.name));
            }
            if line.is_empty() {
                continue;
            }
            return Err(self.bad_line(line_start, line_end));
        }
    }

    fn bad_line(&self, from: usize, to: usize) -> String {
        let to = to.min(from + 200);
        format!(
            "{}: unparseable frame from server: {:?}",
            self.name,
            String::from_utf8_lossy(&self.buf[from..to])
        )
    }
}

/// `write_all` on a socket with a write timeout, checking the run's abort flag and
/// deadline whenever the socket stays full.
pub fn write_all_ctx(stream: &mut TcpStream, data: &mut &[u8], ctx: &Ctx, name: &str) -> Res<()> {
    while !data.is_empty() {
        match stream.write(data) {
            Ok(0) => return Err(format!("{name}: connection closed while writing")),
            Ok(n) => *data = &data[n..],
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                ctx.check(&format!("{name} was blocked writing"))?;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{name}: write error: {e}")),
        }
    }
    Ok(())
}

fn parse_usize(b: &[u8]) -> Option<usize> {
    if b.is_empty() || b.len() > 12 {
        return None;
    }
    let mut v = 0usize;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as usize;
    }
    Some(v)
}
