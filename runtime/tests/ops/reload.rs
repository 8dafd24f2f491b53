//! SIGHUP and `--signal reload`: new users, removed users disconnected, changed permissions,
//! and settings that cannot change refused with the old configuration kept.

use std::process::Command;

use crate::harness::{temp_dir, write, Fjord, Raw};

fn connect_as(port: u16, user: &str) -> Raw {
    let mut raw = Raw::connect(port);
    raw.send(&format!(
        "CONNECT {{\"verbose\":false,\"user\":\"{user}\",\"pass\":\"{user}\",\"protocol\":1}}\r\nPING\r\n"
    ));
    raw
}

fn users(list: &str) -> String {
    format!("port: -1\nhost: 127.0.0.1\nauthorization {{ users: [ {list} ] }}\n")
}

#[test]
fn reload_changes_who_may_connect() {
    let dir = temp_dir("reload");
    let conf = dir.join("fjord.conf");
    write(&conf, &users("{user: a, password: a}, {user: b, password: b}"));
    let srv = Fjord::start(&["-c", conf.to_str().unwrap()]);

    let mut a = connect_as(srv.port, "a");
    a.read_until("PONG\r\n");
    let mut b = connect_as(srv.port, "b");
    b.read_until("PONG\r\n");
    let mut c = connect_as(srv.port, "c");
    assert!(c.read_to_close().contains("-ERR 'Authorization Violation'"));

    // b removed, c added, a may no longer publish to "secret".
    write(
        &conf,
        &users(
            "{user: a, password: a, permissions: {publish: {deny: [\"secret\"]}}}, \
             {user: c, password: c}",
        ),
    );
    srv.signal(libc::SIGHUP);
    srv.wait_for_log("Trapped \"hangup\" signal");
    srv.wait_for_log("Reloaded: authorization");
    srv.wait_for_log("Reloaded server configuration");

    let gone = b.read_to_close();
    assert!(gone.contains("-ERR 'Authorization Violation'"), "{gone:?}");
    a.send("PING\r\n");
    a.read_until("PONG\r\n");
    let mut c = connect_as(srv.port, "c");
    c.read_until("PONG\r\n");
    let mut b = connect_as(srv.port, "b");
    assert!(b.read_to_close().contains("-ERR 'Authorization Violation'"));
    // New connections get the new permissions.
    let mut a2 = connect_as(srv.port, "a");
    a2.read_until("PONG\r\n");
    a2.send("PUB secret 2\r\nhi\r\nPING\r\n");
    let reply = a2.read_until("PONG\r\n");
    assert!(reply.contains("Permissions Violation for Publish to \"secret\""), "{reply:?}");

    // A port change cannot be applied: refused, logged, and the old configuration kept.
    write(&conf, &users("{user: d, password: d}").replace("port: -1", "port: 4999"));
    let status = Command::new(env!("CARGO_BIN_EXE_fjord"))
        .args(["--signal", &format!("reload={}", srv.pid())])
        .status()
        .unwrap();
    assert!(status.success());
    let refused = srv.wait_for_log("Failed to reload server configuration");
    assert!(refused.contains("config reload not supported for port"), "{refused}");
    let mut c2 = connect_as(srv.port, "c");
    c2.read_until("PONG\r\n");
    c.send("PING\r\n");
    c.read_until("PONG\r\n");
}

#[test]
fn reload_without_a_config_file_is_refused() {
    let srv = Fjord::start(&["-p", "-1", "-a", "127.0.0.1"]);
    srv.signal(libc::SIGHUP);
    let line = srv.wait_for_log("Failed to reload server configuration");
    assert!(line.contains("Can only reload config when a file is provided"), "{line}");
    let mut raw = Raw::connect(srv.port);
    raw.send("CONNECT {}\r\nPING\r\n");
    raw.read_until("PONG\r\n");
}

#[test]
fn reload_lowers_max_payload_for_new_connections() {
    let dir = temp_dir("reload-limits");
    let conf = dir.join("fjord.conf");
    write(&conf, "port: -1\nhost: 127.0.0.1\nmax_payload: 1000\n");
    let srv = Fjord::start(&["-c", conf.to_str().unwrap()]);
    let mut old = Raw::connect(srv.port);
    assert_eq!(info_max_payload(&old), 1000);
    old.send("CONNECT {\"verbose\":false}\r\nPING\r\n");
    old.read_until("PONG\r\n");

    write(&conf, "port: -1\nhost: 127.0.0.1\nmax_payload: 100\n");
    srv.signal(libc::SIGHUP);
    srv.wait_for_log("Reloaded: max_payload");
    srv.wait_for_log("Reloaded server configuration");

    // A new connection is told the new limit and held to it.
    let mut new = Raw::connect(srv.port);
    assert_eq!(info_max_payload(&new), 100);
    let at_limit = "x".repeat(100);
    new.send(&format!("CONNECT {{\"verbose\":false}}\r\nPUB foo 100\r\n{at_limit}\r\nPING\r\n"));
    assert_eq!(new.read_until("PONG\r\n"), "PONG\r\n", "a payload at the limit passes");
    let over = "x".repeat(101);
    new.send(&format!("PUB foo 101\r\n{over}\r\n"));
    let closed = new.read_to_close();
    assert!(closed.contains("-ERR 'Maximum Payload Violation'"), "{closed:?}");

    // The open connection keeps the limit it started with (fjord's choice, see reload.rs).
    old.send(&format!("PUB foo 101\r\n{over}\r\nPING\r\n"));
    assert_eq!(old.read_until("PONG\r\n"), "PONG\r\n");
}

fn info_max_payload(raw: &Raw) -> u64 {
    let body = raw.info.trim().trim_start_matches("INFO ");
    let info: serde_json::Value = serde_json::from_str(body).unwrap();
    info["max_payload"].as_u64().unwrap()
}

/// The lines of `path` once it holds `n` lines containing `needle`. The log file is written
/// by another process, with no event to await, so this polls.
fn wait_for_file_lines(path: &std::path::Path, needle: &str, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + crate::harness::WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().filter(|l| l.contains(needle)).count() >= n {
            return text.lines().map(str::to_string).collect();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never held {n} lines with {needle:?}:\n{text}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn reload_turns_protocol_tracing_and_the_log_file_on_and_off() {
    let dir = temp_dir("reload-log");
    let conf = dir.join("fjord.conf");
    let log = dir.join("fjord.log");
    let base = "port: -1\nhost: 127.0.0.1\n";
    write(&conf, base);
    let srv = Fjord::start(&["-c", conf.to_str().unwrap()]);
    // Opened before any reload: tracing applies to connections already open.
    let mut client = Raw::connect(srv.port);
    client.send("CONNECT {\"verbose\":false}\r\nPUB before.reload 2\r\nhi\r\nPING\r\n");
    client.read_until("PONG\r\n");
    assert!(!srv.log_text().contains("[TRC]"), "{}", srv.log_text());

    // On: debug and trace, into a file, without time stamps.
    let log_name = log.to_str().unwrap();
    write(
        &conf,
        &format!("{base}trace: true\ndebug: true\nlogtime: false\nlog_file: \"{log_name}\"\n"),
    );
    srv.signal(libc::SIGHUP);
    // Announced in the old log (stderr), as nats-server does, then logging moves to the file.
    srv.wait_for_log("Reloaded: debug = true");
    srv.wait_for_log("Reloaded: trace = true");
    srv.wait_for_log("Reloaded: logtime = false");
    srv.wait_for_log(&format!("Reloaded: log_file = {log_name}"));
    wait_for_file_lines(&log, "Reloaded server configuration", 1);
    client.send("PUB traced.subject 2\r\nhi\r\nPING\r\n");
    // The trace line is written before the op is handled, so it is in the file by PONG.
    client.read_until("PONG\r\n");
    let lines = wait_for_file_lines(&log, "traced.subject", 1);
    let traced = lines.iter().find(|l| l.contains("traced.subject")).unwrap();
    let prefix = format!("[{}] [TRC] ", srv.pid());
    assert!(traced.starts_with(&prefix), "no time stamp, trace level: {traced}");
    assert!(traced.contains("<<- [PUB traced.subject 2]"), "{traced}");
    // Debug is on too: a new connection is logged at debug level.
    let mut second = Raw::connect(srv.port);
    second.send("CONNECT {\"verbose\":false}\r\nPING\r\n");
    second.read_until("PONG\r\n");
    wait_for_file_lines(&log, "[DBG]", 1);
    assert!(!srv.log_text().contains("traced.subject"), "stderr no longer gets the log");

    // Off again: the file stays, the protocol is no longer traced.
    write(
        &conf,
        &format!("{base}trace: false\ndebug: true\nlogtime: false\nlog_file: \"{log_name}\"\n"),
    );
    srv.signal(libc::SIGHUP);
    wait_for_file_lines(&log, "Reloaded: trace = false", 1);
    wait_for_file_lines(&log, "Reloaded server configuration", 2);
    client.send("PUB untraced.subject 2\r\nhi\r\nPING\r\n");
    client.read_until("PONG\r\n");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("untraced.subject"), "still tracing after reload:\n{text}");
    assert!(!text.contains("Reloaded: debug"), "debug did not change:\n{text}");

    // SIGUSR1 (log rotation): the file, moved away, is reopened under its name.
    let rotated = dir.join("fjord.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    srv.signal(libc::SIGUSR1);
    wait_for_file_lines(&log, "File log re-opened", 1);
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("Trapped \"user defined signal 1\" signal"), "{old}");
}

#[test]
fn reload_to_a_log_file_that_cannot_be_opened_keeps_the_old_configuration() {
    let dir = temp_dir("reload-badlog");
    let conf = dir.join("fjord.conf");
    write(&conf, "port: -1\nhost: 127.0.0.1\nmax_payload: 1000\n");
    let srv = Fjord::start(&["-c", conf.to_str().unwrap()]);
    let missing = dir.join("no-such-dir").join("fjord.log");
    write(
        &conf,
        &format!(
            "port: -1\nhost: 127.0.0.1\nmax_payload: 100\ntrace: true\nlog_file: \"{}\"\n",
            missing.display()
        ),
    );
    srv.signal(libc::SIGHUP);
    let failed = srv.wait_for_log("Failed to reload server configuration");
    assert!(failed.contains("cannot open log file"), "{failed}");
    // Nothing else changed either: new clients still get the old limit.
    let raw = Raw::connect(srv.port);
    assert_eq!(info_max_payload(&raw), 1000);
    assert!(!srv.log_text().contains("Reloaded:"), "{}", srv.log_text());
}
