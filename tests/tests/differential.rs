//! Differential test: every case in `tests/differential/*.txt` (format in the README there) runs
//! against the reference nats-server and against fjord, and what each server answers must be
//! byte-for-byte equal, as must whether it closes the connection.
//!
//! Normalizations, and why:
//! * INFO: only a stable subset of fields is compared (`INFO_FIELDS`, a missing boolean counts as
//!   false) plus "`port` is the server's own port"; `server_id`, `server_name`, `version`,
//!   `git_commit`, `go`, `client_id`, `nonce`, `xkey`, `api_lvl` and the like differ by design.
//! * Server-initiated `PING\r\n` ops are removed from what is compared: the server sends them on
//!   its own timer (the first one ~2 s after CONNECT), so whether one falls inside a case depends
//!   on timing only (`RawConn` does this).
//! * Fan-out order: when one published message matches several subscriptions of the same
//!   connection, the order of the copies is unspecified (nats-server keeps subscriptions of one
//!   subject in a Go map, and its order really varies from run to run). So a run of consecutive
//!   MSG/HMSG ops that differ only in their sid is sorted by sid (`normalize_fanout`). Order
//!   between different messages is still compared.
//!
//! Consecutive sends on one connection are written with one `write` (before a barrier or a step
//! on another connection): nats-server 2.15.1 repeats `-ERR 'Invalid Publish Subject'` when a
//! PUB's payload arrives in a later read than its control line, so the reference's own answer
//! depends on how the kernel splits the input unless the input goes in one piece.
//!
//! Nothing else is normalized: `-ERR` texts, `+OK`s, MSG/HMSG framing, and closes must match.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fjord_tests::{escape_bytes, ConfigFile, RawConn, ServerBinary, TestServer};

/// INFO fields compared between the servers.
const INFO_FIELDS: &[&str] =
    &["proto", "headers", "max_payload", "auth_required", "tls_required", "host"];
/// INFO fields that are booleans: absent means false.
const INFO_BOOLS: &[&str] = &["headers", "auth_required", "tls_required"];

#[derive(Debug)]
enum Step {
    /// Send bytes on connection N (1-based), opening it (and reading INFO) if needed.
    Send(usize, Vec<u8>),
    /// PING barrier on connection N: record what arrived and whether it closed.
    Barrier(usize),
}

#[derive(Debug)]
struct Case {
    name: String,
    origin: String,
    args: Vec<String>,
    config: String,
    steps: Vec<Step>,
}

/// What one server did in one case: per event, a readable line.
type Transcript = Vec<String>;

fn differential_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("differential")
}

fn unescape(s: &str, origin: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let esc = bytes.get(i + 1).copied();
        match esc {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = s.get(i + 2..i + 4).unwrap_or_else(|| panic!("{origin}: bad \\x escape"));
                out.push(
                    u8::from_str_radix(hex, 16)
                        .unwrap_or_else(|_| panic!("{origin}: bad \\x{hex}")),
                );
                i += 2;
            }
            _ => panic!("{origin}: unknown escape in {s:?}"),
        }
        i += 2;
    }
    out
}

/// Expands `{repeat N:text}` to `text` repeated N times (for long lines and payloads).
fn expand_repeats(s: &str, origin: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("{repeat ") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 8..];
        let colon = after.find(':').unwrap_or_else(|| panic!("{origin}: bad {{repeat}}"));
        let n: usize =
            after[..colon].trim().parse().unwrap_or_else(|_| panic!("{origin}: bad count"));
        let close = after.find('}').unwrap_or_else(|| panic!("{origin}: unclosed {{repeat}}"));
        out.push_str(&after[colon + 1..close].repeat(n));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

fn parse_file(path: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut cases: Vec<Case> = Vec::new();
    for (n, raw_line) in text.lines().enumerate() {
        let origin = format!("{file}:{}", n + 1);
        let line = raw_line.trim_end();
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix("=== ") {
            cases.push(Case {
                name: name.trim().to_string(),
                origin,
                args: Vec::new(),
                config: String::new(),
                steps: Vec::new(),
            });
            continue;
        }
        let case = cases
            .last_mut()
            .unwrap_or_else(|| panic!("{origin}: line before the first `=== name`"));
        if let Some(args) = line.strip_prefix("args:") {
            case.args.extend(args.split_whitespace().map(str::to_string));
        } else if let Some(conf) = line.strip_prefix("config:") {
            case.config.push_str(conf.trim());
            case.config.push('\n');
        } else {
            // [N]>> raw, [N]> line + CRLF, [N]? barrier
            let digits: String = line.chars().take_while(|c| c.is_ascii_digit()).collect();
            let conn = if digits.is_empty() { 1 } else { digits.parse().unwrap() };
            assert!(conn >= 1, "{origin}: connections are numbered from 1");
            let rest = &line[digits.len()..];
            if let Some(data) = rest.strip_prefix(">>") {
                let data = data.strip_prefix(' ').unwrap_or(data);
                case.steps
                    .push(Step::Send(conn, unescape(&expand_repeats(data, &origin), &origin)));
            } else if let Some(data) = rest.strip_prefix('>') {
                let data = data.strip_prefix(' ').unwrap_or(data);
                let mut bytes = unescape(&expand_repeats(data, &origin), &origin);
                bytes.extend_from_slice(b"\r\n");
                case.steps.push(Step::Send(conn, bytes));
            } else if rest.trim() == "?" {
                case.steps.push(Step::Barrier(conn));
            } else {
                panic!("{origin}: cannot parse line {line:?}");
            }
        }
    }
    cases
}

fn load_cases() -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(differential_dir())
        .expect("tests/differential exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    let cases: Vec<Case> = files.iter().flat_map(|f| parse_file(f)).collect();
    let mut names = std::collections::HashSet::new();
    for c in &cases {
        assert!(names.insert(c.name.clone()), "duplicate case name {}", c.name);
        assert!(!c.steps.is_empty(), "{} ({}) has no steps", c.name, c.origin);
    }
    cases
}

/// The INFO line reduced to the compared fields.
fn info_summary(conn: &RawConn, server: &TestServer) -> String {
    let info = conn.info_json();
    let mut parts = Vec::new();
    for field in INFO_FIELDS {
        let v = match info.get(*field) {
            Some(v) => v.clone(),
            None if INFO_BOOLS.contains(field) => serde_json::Value::Bool(false),
            None => serde_json::Value::Null,
        };
        parts.push(format!("{field}={v}"));
    }
    let own_port = info.get("port").and_then(|p| p.as_u64()) == Some(u64::from(server.port()));
    parts.push(format!("port_is_own={own_port}"));
    format!("INFO {}", parts.join(" "))
}

fn run_case(server: &TestServer, case: &Case) -> Transcript {
    let mut conns: BTreeMap<usize, RawConn> = BTreeMap::new();
    let mut transcript = Vec::new();
    // Connections that have had a send since their last barrier.
    let mut dirty: BTreeMap<usize, bool> = BTreeMap::new();
    let open = |n: usize, conns: &mut BTreeMap<usize, RawConn>, transcript: &mut Transcript| {
        if let std::collections::btree_map::Entry::Vacant(slot) = conns.entry(n) {
            match RawConn::try_connect(server.addr()) {
                Ok(c) => {
                    transcript.push(format!("[{n}] {}", info_summary(&c, server)));
                    slot.insert(c);
                }
                Err(e) => panic!("{}: connection {n} failed: {e}", case.name),
            }
        }
    };
    let barrier = |n: usize, conns: &mut BTreeMap<usize, RawConn>, transcript: &mut Transcript| {
        let conn = conns.get_mut(&n).expect("open connection");
        match conn.try_read_until_pong_or_close() {
            Ok((bytes, closed)) => transcript
                .push(format!("[{n}] {} closed={closed}", escape_bytes(&normalize_fanout(&bytes)))),
            Err(e) => transcript.push(format!("[{n}] ERROR {e}")),
        }
    };
    // Bytes not yet written, and for which connection.
    let mut unsent: Option<(usize, Vec<u8>)> = None;
    let flush = |unsent: &mut Option<(usize, Vec<u8>)>, conns: &mut BTreeMap<usize, RawConn>| {
        if let Some((n, bytes)) = unsent.take() {
            conns.get_mut(&n).expect("open connection").send(&bytes);
        }
    };
    for step in &case.steps {
        match step {
            Step::Send(n, bytes) => {
                if unsent.as_ref().is_some_and(|(m, _)| m != n) {
                    flush(&mut unsent, &mut conns);
                }
                open(*n, &mut conns, &mut transcript);
                unsent.get_or_insert_with(|| (*n, Vec::new())).1.extend_from_slice(bytes);
                dirty.insert(*n, true);
            }
            Step::Barrier(n) => {
                flush(&mut unsent, &mut conns);
                open(*n, &mut conns, &mut transcript);
                barrier(*n, &mut conns, &mut transcript);
                dirty.insert(*n, false);
            }
        }
    }
    flush(&mut unsent, &mut conns);
    // Implicit final barrier on every connection with unobserved sends, in number order.
    let pending: Vec<usize> = dirty.iter().filter(|(_, d)| **d).map(|(n, _)| *n).collect();
    for n in pending {
        barrier(n, &mut conns, &mut transcript);
    }
    transcript
}

/// One server->client op: its bytes, and for MSG/HMSG the sid and everything else.
struct ServerOp<'a> {
    bytes: &'a [u8],
    fanout: Option<(Vec<u8>, String)>,
}

/// Splits server output into ops (MSG/HMSG with their payloads).
fn split_ops(buf: &[u8]) -> Vec<ServerOp<'_>> {
    let mut ops = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let Some(rel) = buf[pos..].iter().position(|b| *b == b'\n') else {
            ops.push(ServerOp { bytes: &buf[pos..], fanout: None });
            break;
        };
        let line_end = pos + rel + 1;
        let line = String::from_utf8_lossy(&buf[pos..line_end]).into_owned();
        let args: Vec<&str> = line.split_ascii_whitespace().collect();
        let is_msg = matches!(args.first(), Some(&"MSG") | Some(&"HMSG")) && args.len() >= 4;
        let size = if is_msg { args.last().and_then(|s| s.parse::<usize>().ok()) } else { None };
        match size {
            Some(size) if line_end + size + 2 <= buf.len() => {
                let end = line_end + size + 2;
                // Key: the op without its sid (args[2]), plus the payload.
                let mut key: Vec<u8> = Vec::new();
                for (i, a) in args.iter().enumerate() {
                    if i != 2 {
                        key.extend_from_slice(a.as_bytes());
                        key.push(b' ');
                    }
                }
                key.extend_from_slice(&buf[line_end..end]);
                ops.push(ServerOp {
                    bytes: &buf[pos..end],
                    fanout: Some((key, args[2].to_string())),
                });
                pos = end;
            }
            _ => {
                ops.push(ServerOp { bytes: &buf[pos..line_end], fanout: None });
                pos = line_end;
            }
        }
    }
    ops
}

/// Sorts by sid each run of consecutive MSG/HMSG ops that differ only in their sid.
fn normalize_fanout(buf: &[u8]) -> Vec<u8> {
    let mut ops = split_ops(buf);
    let mut i = 0;
    while i < ops.len() {
        let Some((key, _)) = &ops[i].fanout else {
            i += 1;
            continue;
        };
        let key = key.clone();
        let mut j = i + 1;
        while j < ops.len() && ops[j].fanout.as_ref().is_some_and(|(k, _)| *k == key) {
            j += 1;
        }
        ops[i..j].sort_by(|a, b| a.fanout.as_ref().unwrap().1.cmp(&b.fanout.as_ref().unwrap().1));
        i = j;
    }
    ops.iter().flat_map(|op| op.bytes.iter().copied()).collect()
}

#[test]
fn fanout_normalization_sorts_copies_only() {
    let input = b"MSG a 2 1\r\nx\r\nMSG a 1 1\r\nx\r\nMSG a 1 1\r\ny\r\nMSG a 0 1\r\ny\r\nPONG\r\n";
    let want = b"MSG a 1 1\r\nx\r\nMSG a 2 1\r\nx\r\nMSG a 0 1\r\ny\r\nMSG a 1 1\r\ny\r\nPONG\r\n";
    assert_eq!(escape_bytes(&normalize_fanout(input)), escape_bytes(want));
    // Different messages keep their order.
    let ordered = b"MSG a 2 1\r\ny\r\nMSG a 1 1\r\nx\r\n";
    assert_eq!(normalize_fanout(ordered), ordered.to_vec());
}

/// Servers keyed by their arguments and configuration, reused across cases.
struct Servers {
    binary: ServerBinary,
    running: BTreeMap<(Vec<String>, String), (TestServer, Option<ConfigFile>)>,
}

impl Servers {
    fn get(&mut self, case: &Case) -> &TestServer {
        let key = (case.args.clone(), case.config.clone());
        let binary = &self.binary;
        &self
            .running
            .entry(key)
            .or_insert_with(|| {
                let conf = (!case.config.is_empty()).then(|| ConfigFile::new(&case.config));
                let mut args: Vec<&str> = case.args.iter().map(String::as_str).collect();
                if let Some(c) = &conf {
                    args.push("-c");
                    args.push(c.arg());
                }
                (TestServer::start(binary, &args), conf)
            })
            .0
    }
}

#[test]
fn differential_against_reference() {
    let cases = load_cases();
    let sent_lines: usize = cases.iter().map(|c| c.steps.len()).sum();
    assert!(cases.len() >= 50, "expected at least 50 cases, found {}", cases.len());
    assert!(sent_lines >= 100, "expected at least 100 script lines, found {sent_lines}");

    let mut reference = Servers { binary: ServerBinary::reference(), running: BTreeMap::new() };
    let mut fjord = Servers { binary: ServerBinary::fjord(), running: BTreeMap::new() };
    let mut failures = Vec::new();
    for case in &cases {
        let want = run_case(reference.get(case), case);
        let got = run_case(fjord.get(case), case);
        if std::env::var_os("FJORD_DIFF_SHOW").is_some() {
            eprintln!("=== {} ({})\n  {}", case.name, case.origin, want.join("\n  "));
        }
        if want != got {
            let mut msg = format!("case `{}` ({}):\n", case.name, case.origin);
            for i in 0..want.len().max(got.len()) {
                let w = want.get(i).map(String::as_str).unwrap_or("<nothing>");
                let g = got.get(i).map(String::as_str).unwrap_or("<nothing>");
                let mark = if w == g { " " } else { "!" };
                msg.push_str(&format!("  {mark} reference: {w}\n  {mark} fjord:     {g}\n"));
            }
            failures.push(msg);
        }
        // A case whose barrier timed out against the reference is a broken case.
        assert!(
            !want.iter().any(|l| l.contains("ERROR")),
            "case `{}` ({}) misbehaves against the reference itself: {want:#?}",
            case.name,
            case.origin
        );
    }
    eprintln!(
        "differential: {} cases, {} script lines, {} mismatches",
        cases.len(),
        sent_lines,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
