//! Exact bytes of the client protocol over raw TCP, against the server chosen by
//! `FJORD_TEST_TARGET=fjord|reference` (default fjord). Every expected byte string here was
//! taken from nats-server 2.15.1.
//!
//! Each exchange ends with a `PING` barrier (see `RawConn::read_until_pong_or_close`): a
//! trailing `PONG\r\n` means the connection stayed open, none means the server closed it.

use fjord_tests::{escape_bytes, ConfigFile, RawConn, ServerBinary, TestServer};

fn start(args: &[&str]) -> TestServer {
    TestServer::start(&ServerBinary::target(), args)
}

const C: &str = "CONNECT {\"verbose\":false,\"pedantic\":false}\r\n";
const CH: &str = "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n";

/// Connects, sends `input`, and returns what came back (after INFO) and whether it closed.
fn exchange(server: &TestServer, input: &[u8]) -> (Vec<u8>, bool) {
    let mut conn = RawConn::connect(server.addr());
    conn.send(input);
    conn.read_until_pong_or_close()
}

#[track_caller]
fn check(server: &TestServer, input: &str, want: &str, want_closed: bool) {
    let (got, closed) = exchange(server, input.as_bytes());
    assert!(
        got == want.as_bytes() && closed == want_closed,
        "input:    {}\nexpected: {} (closed: {want_closed})\ngot:      {} (closed: {closed})",
        escape_bytes(input.as_bytes()),
        escape_bytes(want.as_bytes()),
        escape_bytes(&got)
    );
}

const UNKNOWN: &str = "-ERR 'Unknown Protocol Operation'\r\n";

#[test]
fn info_is_sent_first_with_the_core_fields() {
    let server = start(&[]);
    let conn = RawConn::connect(server.addr());
    assert!(
        conn.info.starts_with("INFO {") && conn.info.ends_with("}\r\n")
            || conn.info.ends_with("} \r\n")
    );
    let info = conn.info_json();
    assert_eq!(info["proto"], 1);
    assert_eq!(info["headers"], true);
    assert_eq!(info["max_payload"], 1048576);
    assert_eq!(info["port"], server.port());
    assert!(info["server_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(info["version"].is_string());
    assert!(info.get("auth_required").is_none_or(|v| v == false));
}

#[test]
fn ping_pong_any_case_and_before_connect() {
    let server = start(&[]);
    // (Every expectation ends with the PONG for the barrier PING.)
    check(&server, "", "PONG\r\n", false);
    check(&server, "PING\r\n", "PONG\r\nPONG\r\n", false);
    check(&server, "ping\r\n", "PONG\r\nPONG\r\n", false);
    check(&server, &format!("{C}PiNg\r\nPING\r\n"), "PONG\r\nPONG\r\nPONG\r\n", false);
    // A PONG from the client is accepted silently.
    check(&server, &format!("{C}PONG\r\n"), "PONG\r\n", false);
    // Bare LF ends a control line too.
    check(&server, &format!("{C}PING\n"), "PONG\r\nPONG\r\n", false);
}

#[test]
fn unknown_operation_closes() {
    let server = start(&[]);
    check(&server, "FOO\r\n", UNKNOWN, true);
    check(&server, &format!("{C}FOO bar\r\n"), UNKNOWN, true);
    // Server-to-client and route ops are not accepted from clients.
    check(&server, &format!("{C}MSG foo 1 1\r\na\r\n"), UNKNOWN, true);
    check(&server, &format!("{C}RS+ foo\r\n"), UNKNOWN, true);
    check(&server, &format!("{C}-ERR\r\n"), UNKNOWN, true);
    check(&server, &format!("{C}PUB\r\n"), UNKNOWN, true);
    check(&server, &format!("{C}UNSUB\r\n"), UNKNOWN, true);
}

#[test]
fn bad_pub_arguments_close_without_error() {
    let server = start(&[]);
    for bad in ["PUB foo\r\n", "PUB foo x\r\n", "PUB foo bar baz 2\r\nhi\r\n", "PUB foo -1\r\n"] {
        check(&server, &format!("{C}{bad}"), "", true);
    }
    check(&server, &format!("{C}SUB foo\r\n"), "", true);
    check(&server, &format!("{C}SUB a b c d\r\n"), "", true);
    check(&server, &format!("{C}UNSUB 1 2 3\r\n"), "", true);
    check(&server, "CONNECT bad\r\n", "", true);
}

#[test]
fn payload_must_be_followed_by_crlf() {
    let server = start(&[]);
    check(&server, &format!("{C}PUB foo 1\r\nab\r\n"), UNKNOWN, true);
    check(&server, &format!("{C}PUB foo 2\r\nhiX\r\n"), UNKNOWN, true);
    check(&server, &format!("{C}PUB foo 2\r\nhi\n"), UNKNOWN, true);
}

#[test]
fn pub_sub_exact_bytes() {
    let server = start(&[]);
    check(
        &server,
        &format!("{C}SUB foo 1\r\nPUB foo 5\r\nhello\r\nPUB foo reply 0\r\n\r\n"),
        "MSG foo 1 5\r\nhello\r\nMSG foo 1 reply 0\r\n\r\nPONG\r\n",
        false,
    );
    // Extra whitespace between arguments; payload may contain CRLF and NUL.
    check(
        &server,
        &format!("{C}SUB foo 1\r\nPUB  foo\t  5 \r\nhe\r\nl\r\nPUB foo 3\r\na\x00b\r\n"),
        "MSG foo 1 5\r\nhe\r\nl\r\nMSG foo 1 3\r\na\x00b\r\nPONG\r\n",
        false,
    );
    // Wildcards: one copy per matching subscription. The order of the copies is unspecified
    // (nats-server's own order depends on its sublist layout), so compare them sorted.
    let (got, closed) = exchange(
        &server,
        format!("{C}SUB > 1\r\nSUB *.* 2\r\nSUB a.> 3\r\nPUB a.b 1\r\nx\r\n").as_bytes(),
    );
    assert!(!closed);
    let text = String::from_utf8(got).unwrap();
    assert!(text.ends_with("PONG\r\n"), "got {text:?}");
    let mut copies: Vec<&str> = text.split("\r\n").filter(|l| l.starts_with("MSG")).collect();
    copies.sort();
    assert_eq!(copies, vec!["MSG a.b 1 1", "MSG a.b 2 1", "MSG a.b 3 1"], "got {text:?}");
    assert_eq!(text.matches("\r\nx\r\n").count(), 3, "got {text:?}");
    // Re-SUB with the same sid is a no-op: one delivery.
    check(
        &server,
        &format!("{C}SUB foo 1\r\nSUB foo 1\r\nPUB foo 1\r\na\r\n"),
        "MSG foo 1 1\r\na\r\nPONG\r\n",
        false,
    );
    // The sid is an opaque token.
    check(
        &server,
        &format!("{C}SUB foo abc\r\nPUB foo 1\r\na\r\n"),
        "MSG foo abc 1\r\na\r\nPONG\r\n",
        false,
    );
}

#[test]
fn unsub_and_unsub_max() {
    let server = start(&[]);
    check(
        &server,
        &format!(
            "{C}SUB foo 1\r\nUNSUB 1 2\r\nPUB foo 1\r\na\r\nPUB foo 1\r\nb\r\nPUB foo 1\r\nc\r\n"
        ),
        "MSG foo 1 1\r\na\r\nMSG foo 1 1\r\nb\r\nPONG\r\n",
        false,
    );
    // max <= delivered: removed at once.
    check(
        &server,
        &format!("{C}SUB foo 1\r\nPUB foo 1\r\na\r\nUNSUB 1 1\r\nPUB foo 1\r\nb\r\n"),
        "MSG foo 1 1\r\na\r\nPONG\r\n",
        false,
    );
    check(&server, &format!("{C}SUB foo 1\r\nUNSUB 1\r\nPUB foo 1\r\na\r\n"), "PONG\r\n", false);
    check(&server, &format!("{C}SUB foo 1\r\nUNSUB 1 0\r\nPUB foo 1\r\na\r\n"), "PONG\r\n", false);
    // Unknown sid: silently ignored.
    check(&server, &format!("{C}UNSUB 99\r\n"), "PONG\r\n", false);
}

#[test]
fn invalid_subscribe_subjects() {
    let server = start(&[]);
    let inv = "-ERR 'Invalid Subject'\r\n";
    for subject in ["foo..bar", ".a", "a.", "a.>.b", ">.a"] {
        check(&server, &format!("{C}SUB {subject} 1\r\n"), &format!("{inv}PONG\r\n"), false);
    }
    // Wildcards inside tokens are literal characters, and valid.
    check(
        &server,
        &format!("{C}SUB foo* 1\r\nSUB a.b> 2\r\nPUB a.b> 1\r\nx\r\n"),
        "MSG a.b> 2 1\r\nx\r\nPONG\r\n",
        false,
    );
}

#[test]
fn queue_subscriptions() {
    let server = start(&[]);
    // Two groups and a plain sub: one delivery per group plus the plain one.
    let (got, closed) = exchange(
        &server,
        format!(
            "{C}SUB foo q1 1\r\nSUB foo q1 2\r\nSUB foo q2 3\r\nSUB foo 4\r\nPUB foo 1\r\nx\r\n"
        )
        .as_bytes(),
    );
    assert!(!closed);
    let text = String::from_utf8(got).unwrap();
    let msgs: Vec<&str> = text.split("\r\n").filter(|l| l.starts_with("MSG")).collect();
    assert_eq!(msgs.len(), 3, "got {text:?}");
    assert_eq!(msgs.iter().filter(|m| **m == "MSG foo 1 1" || **m == "MSG foo 2 1").count(), 1);
    assert!(msgs.contains(&"MSG foo 3 1") && msgs.contains(&"MSG foo 4 1"), "got {text:?}");
}

#[test]
fn verbose_acknowledges_each_op() {
    let server = start(&[]);
    check(
        &server,
        "CONNECT {\"verbose\":true}\r\nSUB foo 1\r\nPUB foo 1\r\na\r\nUNSUB 1\r\n",
        "+OK\r\n+OK\r\n+OK\r\nMSG foo 1 1\r\na\r\n+OK\r\nPONG\r\n",
        false,
    );
    // CONNECT fields default to verbose=true when omitted.
    check(&server, "CONNECT {}\r\n", "+OK\r\nPONG\r\n", false);
    check(
        &server,
        "CONNECT {\"verbose\":true}\r\nPUB foo.* 1\r\na\r\nSUB a..b 1\r\n",
        "+OK\r\n-ERR 'Invalid Publish Subject'\r\n+OK\r\n-ERR 'Invalid Subject'\r\nPONG\r\n",
        false,
    );
}

#[test]
fn pedantic_rejects_wildcard_publish_subjects() {
    let server = start(&[]);
    let err = "-ERR 'Invalid Publish Subject'\r\n";
    // The error is reported, yet nats-server 2.15.1 still routes the message.
    check(
        &server,
        "CONNECT {\"verbose\":false,\"pedantic\":true}\r\nSUB foo.* 1\r\nPUB foo.* 2\r\nhi\r\n",
        &format!("{err}MSG foo.* 1 2\r\nhi\r\nPONG\r\n"),
        false,
    );
    check(
        &server,
        "CONNECT {\"verbose\":false,\"pedantic\":true}\r\nPUB foo.. 1\r\na\r\n",
        &format!("{err}PONG\r\n"),
        false,
    );
    // pedantic defaults to true when omitted.
    check(
        &server,
        "CONNECT {\"verbose\":false}\r\nPUB a.> 1\r\na\r\n",
        &format!("{err}PONG\r\n"),
        false,
    );
    // Without pedantic the message is routed as is.
    check(
        &server,
        &format!("{C}SUB foo.* 1\r\nPUB foo.* 2\r\nhi\r\n"),
        "MSG foo.* 1 2\r\nhi\r\nPONG\r\n",
        false,
    );
}

#[test]
fn oversize_payload_is_rejected() {
    let conf = ConfigFile::new("max_payload: 16\n");
    let server = start(&["-c", conf.arg()]);
    let conn = RawConn::connect(server.addr());
    assert_eq!(conn.info_json()["max_payload"], 16);
    check(
        &server,
        &format!("{C}SUB foo 1\r\nPUB foo 16\r\n0123456789abcdef\r\n"),
        "MSG foo 1 16\r\n0123456789abcdef\r\nPONG\r\n",
        false,
    );
    // Rejected on the control line, before the payload is read.
    check(&server, &format!("{C}PUB foo 17\r\n"), "-ERR 'Maximum Payload Violation'\r\n", true);
    check(
        &server,
        &format!("{CH}HPUB foo 12 17\r\nNATS/1.0\r\n\r\n01234\r\n"),
        "-ERR 'Maximum Payload Violation'\r\n",
        true,
    );
}

#[test]
fn default_max_payload_is_one_mib() {
    let server = start(&[]);
    check(
        &server,
        &format!("{C}PUB foo 1048577\r\n"),
        "-ERR 'Maximum Payload Violation'\r\n",
        true,
    );
}

#[test]
fn control_line_limit() {
    let conf = ConfigFile::new("max_control_line: 64\n");
    let server = start(&["-c", conf.arg()]);
    let long = "x".repeat(80);
    check(
        &server,
        &format!("{C}SUB {long} 1\r\n"),
        "-ERR 'maximum control line exceeded'\r\n",
        true,
    );
    check(&server, &format!("{C}SUB {} 1\r\n", "y".repeat(40)), "PONG\r\n", false);
}

#[test]
fn connect_checks() {
    let server = start(&[]);
    check(
        &server,
        "CONNECT {\"verbose\":false,\"protocol\":2}\r\n",
        "-ERR 'invalid client protocol'\r\n",
        true,
    );
    check(
        &server,
        "CONNECT {\"verbose\":false,\"no_responders\":true}\r\n",
        "-ERR 'no responders requires headers support'\r\n",
        true,
    );
    // A second CONNECT is allowed (and can switch verbose on).
    check(&server, &format!("{C}CONNECT {{\"verbose\":true}}\r\n"), "+OK\r\nPONG\r\n", false);
}

#[test]
fn auth_required_before_any_op() {
    let server = start(&["--user", "u", "--pass", "p"]);
    let conn = RawConn::connect(server.addr());
    assert_eq!(conn.info_json()["auth_required"], true);
    let viol = "-ERR 'Authorization Violation'\r\n";
    check(&server, "PING\r\n", viol, true);
    check(&server, "SUB foo 1\r\n", viol, true);
    check(&server, "PUB foo 1\r\na\r\n", viol, true);
    check(&server, "CONNECT {\"verbose\":false}\r\n", viol, true);
    check(&server, "CONNECT {\"verbose\":false,\"user\":\"u\",\"pass\":\"x\"}\r\n", viol, true);
    check(
        &server,
        "CONNECT {\"verbose\":false,\"user\":\"u\",\"pass\":\"p\"}\r\n",
        "PONG\r\n",
        false,
    );
    check(
        &server,
        "CONNECT {\"verbose\":true,\"user\":\"u\",\"pass\":\"p\"}\r\n",
        "+OK\r\nPONG\r\n",
        false,
    );
}

#[test]
fn token_auth() {
    let server = start(&["--auth", "tok"]);
    check(&server, "CONNECT {\"verbose\":false,\"auth_token\":\"tok\"}\r\n", "PONG\r\n", false);
    check(
        &server,
        "CONNECT {\"verbose\":false,\"auth_token\":\"bad\"}\r\n",
        "-ERR 'Authorization Violation'\r\n",
        true,
    );
}

#[test]
fn permission_violations_exact_text() {
    let conf = ConfigFile::new(
        r#"authorization { users = [
  {user: a, password: p, permissions: {publish: {deny: ["secret.>"]}, subscribe: {deny: ["hidden"]}}}
  {user: b, password: p, permissions: {publish: ["b.>"], subscribe: ["b.>"]}}
] }
"#,
    );
    let server = start(&["-c", conf.arg()]);
    check(
        &server,
        "CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"a\",\"pass\":\"p\"}\r\nSUB secret.x 1\r\nPUB secret.x 1\r\na\r\nSUB hidden 2\r\nSUB hidden q 3\r\nPUB open 1\r\nb\r\n",
        "-ERR 'Permissions Violation for Publish to \"secret.x\"'\r\n\
         -ERR 'Permissions Violation for Subscription to \"hidden\"'\r\n\
         -ERR 'Permissions Violation for Subscription to \"hidden\" using queue \"q\"'\r\n\
         PONG\r\n",
        false,
    );
    check(
        &server,
        "CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"b\",\"pass\":\"p\"}\r\nPUB foo 1\r\na\r\nSUB foo 1\r\nSUB b.x 2\r\nPUB b.x 1\r\nc\r\n",
        "-ERR 'Permissions Violation for Publish to \"foo\"'\r\n\
         -ERR 'Permissions Violation for Subscription to \"foo\"'\r\n\
         MSG b.x 2 1\r\nc\r\nPONG\r\n",
        false,
    );
}

#[test]
fn headers_exact_bytes() {
    let server = start(&[]);
    check(
        &server,
        &format!("{CH}SUB foo 1\r\nHPUB foo 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\nHPUB foo r 12 12\r\nNATS/1.0\r\n\r\n\r\n"),
        "HMSG foo 1 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\nHMSG foo 1 r 12 12\r\nNATS/1.0\r\n\r\n\r\nPONG\r\n",
        false,
    );
    // The header block is not validated; a zero-length one yields a plain MSG.
    check(
        &server,
        &format!("{CH}SUB foo 1\r\nHPUB foo 4 6\r\nabcdhi\r\nHPUB foo 0 2\r\nhi\r\n"),
        "HMSG foo 1 4 6\r\nabcdhi\r\nMSG foo 1 2\r\nhi\r\nPONG\r\n",
        false,
    );
    // Header size larger than total, or missing arguments: closed without -ERR.
    check(&server, &format!("{CH}HPUB foo 20 18\r\n"), "", true);
    check(&server, &format!("{CH}HPUB foo 18\r\n"), "", true);
    // HPUB without headers:true in CONNECT: closed without -ERR.
    check(&server, &format!("{C}HPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\n"), "", true);
}

#[test]
fn hpub_to_a_subscriber_without_headers_strips_them() {
    let server = start(&[]);
    let mut sub = RawConn::connect(server.addr());
    sub.send(b"CONNECT {\"verbose\":false,\"headers\":false}\r\nSUB foo 1\r\n");
    assert_eq!(sub.read_until_pong_or_close(), (b"PONG\r\n".to_vec(), false));
    let (out, closed) = exchange(
        &server,
        format!("{CH}HPUB foo 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\nHPUB foo reply 12 12\r\nNATS/1.0\r\n\r\n\r\n").as_bytes(),
    );
    assert_eq!((out, closed), (b"PONG\r\n".to_vec(), false));
    let (out, closed) = sub.read_until_pong_or_close();
    assert!(!closed);
    assert_eq!(
        escape_bytes(&out),
        escape_bytes(b"MSG foo 1 2\r\nhi\r\nMSG foo 1 reply 0\r\n\r\nPONG\r\n")
    );
}

#[test]
fn no_responders_status_message() {
    let server = start(&[]);
    check(
        &server,
        "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true}\r\nSUB inbox 1\r\nPUB nobody inbox 2\r\nhi\r\n",
        "HMSG inbox 1 38 38\r\nNATS/1.0 503\r\nNats-Subject: nobody\r\n\r\n\r\nPONG\r\n",
        false,
    );
    // Without no_responders nothing comes back.
    check(&server, &format!("{CH}SUB inbox 1\r\nPUB nobody inbox 2\r\nhi\r\n"), "PONG\r\n", false);
    // With a responder there is no 503.
    check(
        &server,
        "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true}\r\nSUB inbox 1\r\nSUB svc 2\r\nPUB svc inbox 2\r\nhi\r\n",
        "MSG svc 2 inbox 2\r\nhi\r\nPONG\r\n",
        false,
    );
}

#[test]
fn echo_false_suppresses_own_messages() {
    let server = start(&[]);
    check(
        &server,
        "CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false}\r\nSUB foo 1\r\nPUB foo 1\r\na\r\n",
        "PONG\r\n",
        false,
    );
    check(
        &server,
        &format!("{C}SUB foo 1\r\nPUB foo 1\r\na\r\n"),
        "MSG foo 1 1\r\na\r\nPONG\r\n",
        false,
    );
}

#[test]
fn messages_cross_connections() {
    let server = start(&[]);
    let mut sub = RawConn::connect(server.addr());
    sub.send(format!("{C}SUB a.* 5\r\n").as_bytes());
    assert_eq!(sub.read_until_pong_or_close(), (b"PONG\r\n".to_vec(), false));
    let mut publ = RawConn::connect(server.addr());
    publ.send(format!("{C}PUB a.b r.1 3\r\nabc\r\nPUB a.b.c 1\r\nx\r\n").as_bytes());
    assert_eq!(publ.read_until_pong_or_close(), (b"PONG\r\n".to_vec(), false));
    assert_eq!(
        sub.read_until_pong_or_close(),
        (b"MSG a.b 5 r.1 3\r\nabc\r\nPONG\r\n".to_vec(), false)
    );
}

#[test]
fn authentication_timeout_closes_a_silent_client() {
    let conf = ConfigFile::new("authorization { token: t, timeout: 0.5 }");
    let server = start(&["-c", conf.arg()]);
    let mut conn = RawConn::connect(server.addr());
    let got = conn.read_until_close(std::time::Duration::from_secs(10)).expect("closed");
    assert_eq!(escape_bytes(&got), escape_bytes(b"-ERR 'Authentication Timeout'\r\n"));
}

#[test]
fn unanswered_pings_end_in_stale_connection() {
    let conf = ConfigFile::new("ping_interval: \"100ms\"\nping_max: 1");
    let server = start(&["-c", conf.arg()]);
    let mut conn = RawConn::connect(server.addr());
    conn.send_connect(r#"{"verbose":false}"#);
    let got = conn.read_until_close(std::time::Duration::from_secs(10)).expect("closed");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("PING\r\n"), "the server pings first: {text:?}");
    assert!(text.ends_with("-ERR 'Stale Connection'\r\n"), "then gives up: {text:?}");
}
