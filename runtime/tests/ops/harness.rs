//! Runs the real `fjord` binary as an operator would and watches its log: a test waits for the
//! log line that announces an event (never a fixed sleep), then checks the outcome.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(10);

pub struct Fjord {
    child: Child,
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
    pub port: u16,
    pub http_port: Option<u16>,
}

impl Fjord {
    /// Starts `fjord` with `args` and waits for `Server is ready`; the client and monitoring
    /// ports come from the log lines (so `-p -1` and `-m -1` work).
    pub fn start(args: &[&str]) -> Fjord {
        Fjord::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Fjord {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fjord"))
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fjord starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let (lines, cond) = &*sink;
                lines.lock().unwrap().push(line);
                cond.notify_all();
            }
        });
        let mut fjord = Fjord { child, log, port: 0, http_port: None };
        fjord.wait_for_log("Server is ready");
        let listening = fjord.wait_for_log("Listening for client connections on ");
        fjord.port = port_at_end(&listening);
        fjord.http_port = fjord.find_log("Starting http monitor on ").map(|l| port_at_end(&l));
        fjord
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn find_log(&self, needle: &str) -> Option<String> {
        self.log.0.lock().unwrap().iter().find(|l| l.contains(needle)).cloned()
    }

    pub fn log_text(&self) -> String {
        self.log.0.lock().unwrap().join("\n")
    }

    /// Waits for a log line containing `needle` (already printed or still to come).
    pub fn wait_for_log(&self, needle: &str) -> String {
        let (lines, cond) = &*self.log;
        let deadline = Instant::now() + WAIT;
        let mut guard = lines.lock().unwrap();
        loop {
            if let Some(line) = guard.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no log line with {needle:?}; log:\n{}", guard.join("\n"));
            guard = cond.wait_timeout(guard, left).unwrap().0;
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child with a valid signal number.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0, "kill failed");
    }

    /// Waits for the process to exit (polling its status: a child has no exit event to await).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "fjord did not exit; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// GET on the monitoring port: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let port = self.http_port.expect("monitoring is on");
        http_get(port, path)
    }

    /// GET that must answer 200 with JSON.
    pub fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.http_get(path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }
}

impl Drop for Fjord {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port_at_end(line: &str) -> u16 {
    line.rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"))
}

/// A minimal HTTP/1.0 GET: the monitor answers and closes, so the body is what follows the
/// headers up to EOF.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("monitor connects");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
    (status, body.to_string())
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "fjord-ops-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// A blocking protocol-level client, for checks a library client hides (INFO contents,
/// `-ERR` texts, the server closing).
pub struct Raw {
    stream: TcpStream,
    pub seen: String,
    /// The INFO line the server greeted with.
    pub info: String,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut raw = Raw { stream, seen: String::new(), info: String::new() };
        raw.info = raw.read_until("\r\n");
        assert!(raw.info.starts_with("INFO "), "{}", raw.info);
        raw
    }

    pub fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).unwrap();
    }

    /// Reads until `needle` has been seen (since the last call that found one).
    pub fn read_until(&mut self, needle: &str) -> String {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(at) = self.seen.find(needle) {
                let upto = at + needle.len();
                let taken: String = self.seen.drain(..upto).collect();
                return taken;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => panic!("connection closed before {needle:?}; got {:?}", self.seen),
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) => panic!("reading for {needle:?}: {e}; got {:?}", self.seen),
            }
        }
    }

    /// Reads until the server closes; returns what came before.
    pub fn read_to_close(&mut self) -> String {
        let mut rest = Vec::new();
        match self.stream.read_to_end(&mut rest) {
            Ok(_) => {}
            // A reset after the server's last bytes is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("waiting for close: {e}; got {:?}", self.seen),
        }
        self.seen.push_str(&String::from_utf8_lossy(&rest));
        std::mem::take(&mut self.seen)
    }
}
