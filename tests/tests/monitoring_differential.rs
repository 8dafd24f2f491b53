//! Differential monitoring test: the same traffic on fjord and on the reference nats-server, then
//! `/varz`, `/connz?subs=1`, `/connz?state=closed`, `/subsz?subs=1&test=foo.bar`, `/healthz` and
//! `/routez` from both, compared field by field; and the same JetStream traffic (two streams, a
//! consumer, a failed API call), then four views of `/jsz` compared the same way.
//!
//! Two things are compared:
//! * the set of JSON keys (recursively, array elements merged), except the differences listed in
//!   `MISSING_IN_FJORD` and `EXTRA_IN_FJORD`, each with the reason it is allowed; any other key
//!   nats-server has and fjord lacks (or the reverse) fails the test, so a renamed or dropped
//!   field is caught;
//! * the values that must agree for the same scenario: connection counts, message and byte
//!   counters, per-connection name/lang/version/subscriptions and the closed connection's reason.
//!   Subscription totals are not comparable as a whole: nats-server also counts the internal
//!   subscriptions of its system account (`$SYS`), so `/varz` `subscriptions` and `/subsz`
//!   `num_subscriptions` are checked as "fjord = client subscriptions, reference >= that"; the
//!   per-connection counts and the `/subsz?test=` matches are compared exactly.
//!
//! No sleeps: PING/PONG barriers on the raw connections make the servers' state settle before
//! a read. The one event without a barrier is the server noticing a client's close; the test
//! polls `/connz?state=closed` for it (bounded by a deadline).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use fjord_tests::{RawConn, ServerBinary, TestServer};
use serde_json::Value;

/// Key paths nats-server reports and fjord does not (yet), with the reason each is allowed.
/// A path is `endpoint:key.key[].key`.
const MISSING_IN_FJORD: &[(&str, &str)] = &[
    ("/varz:system_account", "fjord has no system account ($SYS) yet"),
    ("/varz:feature_flags", "nats-server's JetStream/Raft protocol switches; fjord has none"),
    ("/varz:disk_io_wait_stats", "fjord does not sample disk I/O waits"),
    ("/connz:connections[].rtt", "fjord does not measure client RTT (no RTT PING) yet"),
    ("/connz?state=closed:connections[].rtt", "as above, for closed connections"),
    // /jsz (every view is labelled `/jsz`).
    ("/jsz:config.sync_interval", "fjord syncs every write before acknowledging it (see sync_always) and has no background sync interval"),
    ("/jsz:config.strict", "fjord's JetStream API ignores unknown JSON fields instead of refusing them"),
    ("/jsz:config.compress_ok", "fjord's stores do not compress (stream compression is not implemented)"),
    ("/jsz:limits.default_max_consumers", "fjord applies no server-wide default consumer limit"),
    (
        "/jsz:account_details[].stream_detail[].config.metadata",
        "nats-server stamps `_nats.req.level` (the API level that created the asset); fjord's API does not",
    ),
    (
        "/jsz:account_details[].stream_detail[].consumer_detail[].config.metadata",
        "as the stream's metadata",
    ),
    (
        "/jsz:account_details[].stream_detail[].consumer_detail[].delivered.last_active",
        "fjord's consumer info does not track when a sequence was last delivered or acked",
    ),
    (
        "/jsz:account_details[].stream_detail[].consumer_detail[].ack_floor.last_active",
        "as delivered.last_active",
    ),
];

/// Key paths fjord reports and nats-server does not, with the reason.
const EXTRA_IN_FJORD: &[(&str, &str)] = &[
    ("/varz:fjord_version", "fjord's own version, next to `version` (the release it matches)"),
    ("/varz:lame_duck_duration", "fjord shows its lame duck settings; extra keys break no reader"),
    ("/varz:lame_duck_grace_period", "as lame_duck_duration"),
    (
        "/jsz:config.sync_always",
        "fjord always syncs before acknowledging; nats-server prints this field itself when run with `sync_interval: always`",
    ),
];

/// Subscriptions the scenario makes on client connections (alpha 3, beta 1).
const CLIENT_SUBS: u64 = 4;

/// A running server with its monitoring port.
struct Monitored {
    server: TestServer,
    http_port: u16,
}

impl Monitored {
    fn start(binary: &ServerBinary) -> Monitored {
        Monitored::start_with(binary, &[])
    }

    fn start_with(binary: &ServerBinary, extra_args: &[&str]) -> Monitored {
        let http_port = free_port();
        let port = http_port.to_string();
        let mut args = vec!["-m", port.as_str()];
        args.extend_from_slice(extra_args);
        let server = TestServer::start(binary, &args);
        Monitored { server, http_port }
    }

    /// GET over a plain TcpStream with HTTP/1.0 (the body then ends at close: no chunking).
    fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.http_port))
            .unwrap_or_else(|e| panic!("{}: connect to monitor: {e}", self.server.binary().name));
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("send HTTP request");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).expect("read HTTP response");
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{}: no header end in {text:?}", self.server.binary().name));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_string()
        };
        (status, body)
    }

    fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{} GET {path}: {body}", self.server.binary().name);
        serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!("{} GET {path} is not JSON ({e}): {body}", self.server.binary().name)
        })
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

fn connect(server: &TestServer, name: &str) -> RawConn {
    let mut conn = RawConn::connect(server.addr());
    conn.send_connect(&format!(
        r#"{{"verbose":false,"pedantic":false,"name":"{name}","lang":"raw","version":"1.2.3","protocol":1,"echo":true}}"#
    ));
    conn
}

fn pub_frame(subject: &str, size: usize) -> Vec<u8> {
    let mut frame = format!("PUB {subject} {size}\r\n").into_bytes();
    frame.extend(std::iter::repeat_n(b'x', size));
    frame.extend_from_slice(b"\r\n");
    frame
}

/// What the scenario must produce, for asserting on each server separately.
const PUB_SIZES: [usize; 3] = [0, 5, 10];
/// gamma's one message before it closes.
const GAMMA_SIZE: usize = 4;
/// beta's message to its own subscription `other` (delivered back to beta: echo is on).
const OTHER_SIZE: usize = 7;

/// Drives the scenario and returns the open connections (closing one of three on the way).
fn drive(server: &TestServer) -> (RawConn, RawConn) {
    let mut alpha = connect(server, "alpha");
    alpha.send(b"SUB foo.bar 1\r\nSUB foo.* 2\r\nSUB foo.bar workers 3\r\n");
    let (got, closed) = alpha.read_until_pong_or_close();
    assert!(!closed && got == b"PONG\r\n", "alpha setup: {:?}", String::from_utf8_lossy(&got));

    let mut beta = connect(server, "beta");
    beta.send(b"SUB other 9\r\n");
    let mut pubs = Vec::new();
    for size in PUB_SIZES {
        pubs.extend(pub_frame("foo.bar", size));
    }
    pubs.extend(pub_frame("other", OTHER_SIZE));
    beta.send(&pubs);
    let (got, closed) = beta.read_until_pong_or_close();
    assert!(!closed, "beta closed");
    assert!(got.starts_with(b"MSG other 9 7\r\n"), "beta: {:?}", String::from_utf8_lossy(&got));

    let mut gamma = connect(server, "gamma");
    gamma.send(&pub_frame("foo.bar", GAMMA_SIZE));
    let (_, closed) = gamma.read_until_pong_or_close();
    assert!(!closed, "gamma closed early");
    drop(gamma);

    // Every message routed to alpha was queued before alpha's PONG (beta's and gamma's barriers
    // completed first), so after this barrier alpha has read them all.
    let (got, closed) = alpha.read_until_pong_or_close();
    assert!(!closed, "alpha closed");
    let msgs = got.windows(4).filter(|w| w == b"MSG ").count();
    assert_eq!(msgs, 3 * (PUB_SIZES.len() + 1), "alpha got: {}", String::from_utf8_lossy(&got));
    (alpha, beta)
}

/// Polls until the server lists gamma as closed (its close has no barrier we can wait on).
fn wait_closed(m: &Monitored) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let closed = m.json("/connz?state=closed");
        if closed["num_connections"] == 1 && m.json("/varz")["connections"] == 2 {
            return closed;
        }
        assert!(
            Instant::now() < deadline,
            "{}: gamma never listed as closed: {closed}",
            m.server.binary().name
        );
        std::thread::yield_now();
    }
}

/// Every key path in `v`, array elements merged under `[]`.
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                out.insert(path.clone());
                key_paths(child, &path, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                key_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

/// Compares key sets; returns the unexplained differences.
fn key_differences(endpoint: &str, fjord: &Value, reference: &Value) -> Vec<String> {
    let (mut f, mut r) = (BTreeSet::new(), BTreeSet::new());
    key_paths(fjord, "", &mut f);
    key_paths(reference, "", &mut r);
    let allowed = |list: &[(&str, &str)], path: &str| {
        let full = format!("{endpoint}:{path}");
        // A listed key also allows everything under it.
        list.iter().any(|(p, _)| full == *p || full.starts_with(&format!("{p}.")))
    };
    let mut problems = Vec::new();
    // A listed difference that is gone makes the list stale (fjord gained the key, or the
    // reference did): drop the entry.
    for (list, keys) in [(MISSING_IN_FJORD, &f), (EXTRA_IN_FJORD, &r)] {
        for (p, _) in list {
            if let Some(path) = p.strip_prefix(&format!("{endpoint}:")) {
                if keys.contains(path) {
                    problems.push(format!("{endpoint}: listed `{path}` no longer differs"));
                }
            }
        }
    }
    for path in r.difference(&f) {
        if !allowed(MISSING_IN_FJORD, path) {
            problems.push(format!("{endpoint}: reference has `{path}`, fjord does not"));
        }
    }
    for path in f.difference(&r) {
        if !allowed(EXTRA_IN_FJORD, path) {
            problems.push(format!("{endpoint}: fjord has `{path}`, reference does not"));
        }
    }
    problems
}

fn by_name<'a>(connz: &'a Value, name: &str) -> &'a Value {
    connz["connections"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no connection named {name} in {connz}"))
}

fn sorted_strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// (subject, queue, sid) of each /subsz match, sorted.
fn sub_matches(subsz: &Value) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = subsz["subscriptions_list"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    let field = |k: &str| s[k].as_str().unwrap_or("").to_string();
                    (field("subject"), field("qgroup"), field("sid"))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn monitoring_json_matches_the_reference_for_the_same_traffic() {
    let fjord = Monitored::start(&ServerBinary::fjord());
    let reference = Monitored::start(&ServerBinary::reference());
    let endpoints =
        ["/varz", "/connz?subs=1", "/connz?state=closed", "/subsz?subs=1&test=foo.bar", "/routez"];

    let mut snapshots = Vec::new();
    for m in [&fjord, &reference] {
        let name = m.server.binary().name;
        let (_alpha, _beta) = drive(&m.server);
        wait_closed(m);
        let jsons: Vec<Value> = endpoints.iter().map(|e| m.json(e)).collect();
        let health = m.get("/healthz");
        snapshots.push((name, jsons, health));
    }
    let (_, fj, fj_health) = &snapshots[0];
    let (_, rf, rf_health) = &snapshots[1];

    // Key sets.
    let mut problems = Vec::new();
    for (i, endpoint) in endpoints.iter().enumerate() {
        let key = endpoint.split('?').next().unwrap_or(endpoint);
        let label = if endpoint.contains("state=closed") { *endpoint } else { key };
        problems.extend(key_differences(label, &fj[i], &rf[i]));
    }
    assert!(problems.is_empty(), "unexplained key differences:\n{}", problems.join("\n"));

    // /varz counters. in: 3 + 1 (beta) + 1 (gamma); out: alpha gets every foo.bar message on
    // each of its three subscriptions, beta gets its own `other`.
    let in_msgs = (PUB_SIZES.len() + 2) as u64;
    let in_bytes = (PUB_SIZES.iter().sum::<usize>() + OTHER_SIZE + GAMMA_SIZE) as u64;
    let out_msgs = 3 * (PUB_SIZES.len() + 1) as u64 + 1;
    let out_bytes = 3 * (PUB_SIZES.iter().sum::<usize>() + GAMMA_SIZE) as u64 + OTHER_SIZE as u64;
    for (name, jsons, _) in &snapshots {
        let varz = &jsons[0];
        let got =
            ["connections", "total_connections", "in_msgs", "in_bytes", "out_msgs", "out_bytes"]
                .map(|k| varz[k].as_u64());
        let want = [2, 3, in_msgs, in_bytes, out_msgs, out_bytes].map(Some);
        assert_eq!(got, want, "{name} /varz counters: {varz}");
    }
    assert_eq!(fj[0]["subscriptions"].as_u64(), Some(CLIENT_SUBS), "fjord counts client subs");
    assert!(
        rf[0]["subscriptions"].as_u64().is_some_and(|n| n >= CLIENT_SUBS),
        "reference counts client subs plus its $SYS subs: {}",
        rf[0]["subscriptions"]
    );
    for k in ["max_payload", "max_control_line", "max_connections", "ping_max", "ping_interval"] {
        assert_eq!(fj[0][k], rf[0][k], "/varz {k}");
    }

    // /connz?subs=1: the two open connections, per connection.
    for i in [1, 2] {
        assert_eq!(fj[i]["num_connections"], rf[i]["num_connections"], "{}", endpoints[i]);
        assert_eq!(fj[i]["total"], rf[i]["total"], "{}", endpoints[i]);
    }
    assert_eq!(fj[1]["num_connections"], 2);
    for name in ["alpha", "beta"] {
        let (f, r) = (by_name(&fj[1], name), by_name(&rf[1], name));
        for k in [
            "name",
            "lang",
            "version",
            "kind",
            "type",
            "in_msgs",
            "out_msgs",
            "in_bytes",
            "out_bytes",
            "subscriptions",
        ] {
            assert_eq!(f[k], r[k], "/connz {name}.{k}");
        }
        assert_eq!(
            sorted_strings(&f["subscriptions_list"]),
            sorted_strings(&r["subscriptions_list"]),
            "/connz {name}.subscriptions_list"
        );
    }
    assert_eq!(by_name(&fj[1], "alpha")["subscriptions"], 3);

    // /connz?state=closed: gamma with its counters and reason.
    assert_eq!(fj[2]["num_connections"], 1);
    let (f, r) = (by_name(&fj[2], "gamma"), by_name(&rf[2], "gamma"));
    for k in ["name", "lang", "version", "in_msgs", "in_bytes", "out_msgs", "reason"] {
        assert_eq!(f[k], r[k], "closed gamma.{k}");
    }
    assert_eq!(f["reason"], "Client Closed");

    // /subsz?subs=1&test=foo.bar: the same matches; totals differ only by $SYS subs.
    assert_eq!(sub_matches(&fj[3]), sub_matches(&rf[3]), "/subsz matches");
    assert_eq!(sub_matches(&fj[3]).len(), 3, "foo.bar matches alpha's three subs");
    assert_eq!(fj[3]["total"], rf[3]["total"]);
    assert_eq!(fj[3]["num_subscriptions"].as_u64(), Some(CLIENT_SUBS));
    assert!(rf[3]["num_subscriptions"].as_u64().is_some_and(|n| n >= CLIENT_SUBS));

    // /routez: no routes on either.
    assert_eq!(fj[4]["num_routes"], rf[4]["num_routes"]);
    assert_eq!(fj[4]["num_routes"], 0);

    // /healthz: same status line and body.
    assert_eq!(fj_health.0, rf_health.0, "/healthz status");
    assert_eq!(fj_health.0, 200);
    let fb: Value = serde_json::from_str(&fj_health.1).unwrap_or(Value::Null);
    let rb: Value = serde_json::from_str(&rf_health.1).unwrap_or(Value::Null);
    assert_eq!(fb, rb, "/healthz body");
    assert_eq!(fb["status"], "ok");
}

/// The `/jsz` views compared, each labelled by its path and query in the allowed-difference
/// lists.
const JSZ_VIEWS: [&str; 4] =
    ["/jsz", "/jsz?accounts=true", "/jsz?streams=true", "/jsz?consumers=true&config=true"];
/// The JetStream scenario's messages: three on the file stream, one on the memory stream.
const ORDERS: [&str; 3] = ["orders.1", "orders.2", "orders.3"];
const MEM_PAYLOAD: &str = "0123456789";

/// A JetStream server with fixed store limits (so `config.max_memory`/`max_storage` do not
/// depend on the machine) and its own store directory, removed on drop.
struct JetStreamServer {
    monitored: Monitored,
    store_dir: std::path::PathBuf,
    _config: fjord_tests::ConfigFile,
}

impl JetStreamServer {
    fn start(binary: &ServerBinary) -> JetStreamServer {
        let store_dir = std::env::temp_dir().join(format!(
            "fjord-jsz-{}-{}-{}",
            binary.name,
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&store_dir);
        std::fs::create_dir_all(&store_dir).expect("store dir");
        let config = fjord_tests::ConfigFile::new(&format!(
            "jetstream {{ store_dir: \"{}\", max_memory_store: 1GB, max_file_store: 10GB }}\n",
            store_dir.display()
        ));
        let monitored = Monitored::start_with(binary, &["-c", config.arg()]);
        JetStreamServer { monitored, store_dir, _config: config }
    }
}

impl Drop for JetStreamServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.store_dir);
    }
}

/// Two streams (file and memory), four messages, a durable consumer that has delivered and
/// acknowledged one message, and one failed API request.
async fn drive_jetstream(server: &TestServer) {
    use async_nats::jetstream::{self, consumer::pull, stream};
    use futures::StreamExt;
    let wait = Duration::from_secs(15);
    let client = tokio::time::timeout(wait, async_nats::connect(server.url()))
        .await
        .expect("connect in time")
        .expect("connect");
    let js = jetstream::new(client);
    let create = |name: &str, subject: &str, storage| stream::Config {
        name: name.into(),
        subjects: vec![subject.into()],
        storage,
        ..Default::default()
    };
    js.create_stream(create("ORDERS", "orders.>", stream::StorageType::File))
        .await
        .expect("create ORDERS");
    js.create_stream(create("MEM", "mem.>", stream::StorageType::Memory)).await.expect("MEM");
    for subject in ORDERS {
        js.publish(subject, "hello".into()).await.expect("publish").await.expect("puback");
    }
    js.publish("mem.1", MEM_PAYLOAD.into()).await.expect("publish").await.expect("puback");
    let orders = js.get_stream("ORDERS").await.expect("ORDERS info");
    let consumer = orders
        .create_consumer(pull::Config { durable_name: Some("C1".into()), ..Default::default() })
        .await
        .expect("create C1");
    let mut batch = consumer.fetch().max_messages(1).messages().await.expect("fetch");
    let msg = tokio::time::timeout(wait, batch.next())
        .await
        .expect("a message in time")
        .expect("one message")
        .expect("message");
    // Waits for the server's confirmation, so the ack floor has moved before /jsz is read.
    msg.double_ack().await.expect("ack confirmed");
    assert!(js.get_stream("NOPE").await.is_err(), "no stream NOPE");
}

/// The value at a `/`-separated path (`account_details/0/stream_detail`).
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    v.pointer(&format!("/{path}")).unwrap_or(&Value::Null)
}

fn stream_named<'a>(jsz: &'a Value, name: &str) -> &'a Value {
    at(jsz, "account_details/0/stream_detail")
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no stream {name} in {jsz}"))
}

#[tokio::test]
async fn jsz_matches_the_reference_for_the_same_jetstream_traffic() {
    let fjord = JetStreamServer::start(&ServerBinary::fjord());
    let reference = JetStreamServer::start(&ServerBinary::reference());
    let mut views = Vec::new();
    for s in [&fjord, &reference] {
        drive_jetstream(&s.monitored.server).await;
        let jsons: Vec<Value> = JSZ_VIEWS.iter().map(|v| s.monitored.json(v)).collect();
        views.push(jsons);
    }
    let (fj, rf) = (&views[0], &views[1]);

    let mut problems = Vec::new();
    for (i, view) in JSZ_VIEWS.iter().enumerate() {
        // Every view shares the `/jsz` entries of the allowed-difference lists.
        let _ = view;
        problems.extend(key_differences("/jsz", &fj[i], &rf[i]));
    }
    assert!(problems.is_empty(), "unexplained key differences:\n{}", problems.join("\n"));

    for (i, view) in JSZ_VIEWS.iter().enumerate() {
        for key in ["streams", "consumers", "messages", "accounts", "total", "ha_assets"] {
            assert_eq!(fj[i][key], rf[i][key], "{view} {key}");
        }
        for key in ["api/total", "api/errors", "config/max_memory", "config/max_storage"] {
            assert_eq!(at(&fj[i], key), at(&rf[i], key), "{view} {key}");
        }
        for (name, s, json) in [("fjord", &fjord, &fj[i]), ("reference", &reference, &rf[i])] {
            // Each reports its own store directory (the two servers must not share one).
            let dir = s.store_dir.join("jetstream");
            assert_eq!(json["config"]["store_dir"], dir.display().to_string(), "{name} {view}");
            assert_eq!(json["server_id"].as_str().map(str::len), Some(56), "{name} server_id");
        }
    }
    // Sizes count messages as nats-server does: 30 bytes + subject + payload in a file stream,
    // 16 + subject + payload in a memory one (no headers here). Equal to the reference's.
    let orders_bytes = ORDERS.iter().map(|s| 30 + s.len() + "hello".len()).sum::<usize>() as u64;
    let mem_bytes = (16 + "mem.1".len() + MEM_PAYLOAD.len()) as u64;
    for (i, view) in JSZ_VIEWS.iter().enumerate() {
        let got = ["memory", "storage", "bytes"].map(|k| fj[i][k].as_u64());
        let want = [mem_bytes, orders_bytes, mem_bytes + orders_bytes].map(Some);
        assert_eq!(got, want, "fjord {view} sizes");
        for key in ["memory", "storage", "bytes"] {
            assert_eq!(rf[i][key], fj[i][key], "{view} reference {key}");
        }
    }
    assert_eq!(fj[0]["streams"], 2);
    assert_eq!(fj[0]["consumers"], 1);
    assert_eq!(fj[0]["messages"], 4);
    assert_eq!(at(&fj[0], "api/errors"), 1);

    // The account detail: one global account with the same API counters.
    for i in 1..JSZ_VIEWS.len() {
        let (f, r) = (at(&fj[i], "account_details/0"), at(&rf[i], "account_details/0"));
        for key in ["name", "id", "reserved_memory", "reserved_storage", "api"] {
            assert_eq!(f[key], r[key], "{} account_details[0].{key}", JSZ_VIEWS[i]);
        }
    }
    assert_eq!(at(&fj[1], "account_details/0/name"), "$G");

    // Per stream and per consumer, with and without config.
    for i in [2, 3] {
        for name in ["ORDERS", "MEM"] {
            let (f, r) = (stream_named(&fj[i], name), stream_named(&rf[i], name));
            for key in ["messages", "first_seq", "last_seq", "num_subjects", "consumer_count"] {
                assert_eq!(f["state"][key], r["state"][key], "{} {name}.state.{key}", JSZ_VIEWS[i]);
            }
            assert_eq!(f["state"]["bytes"], r["state"]["bytes"], "{name} bytes");
            let want = if name == "MEM" { mem_bytes } else { orders_bytes };
            assert_eq!(f["state"]["bytes"].as_u64(), Some(want), "fjord {name} bytes");
            assert_eq!(f.get("config").is_some(), i == 3, "config only on request");
            if i == 3 {
                for key in ["name", "subjects", "retention", "storage", "max_msgs", "discard"] {
                    assert_eq!(f["config"][key], r["config"][key], "{name}.config.{key}");
                }
            }
        }
    }
    assert!(stream_named(&fj[2], "ORDERS").get("consumer_detail").is_none());
    let (f, r) = (
        &stream_named(&fj[3], "ORDERS")["consumer_detail"][0],
        &stream_named(&rf[3], "ORDERS")["consumer_detail"][0],
    );
    for key in [
        "stream_name",
        "name",
        "delivered/consumer_seq",
        "delivered/stream_seq",
        "ack_floor/consumer_seq",
        "ack_floor/stream_seq",
        "num_ack_pending",
        "num_redelivered",
        "num_waiting",
        "num_pending",
    ] {
        assert_eq!(at(f, key), at(r, key), "consumer C1.{key}");
    }
    for key in ["durable_name", "ack_policy", "deliver_policy", "ack_wait", "max_deliver"] {
        assert_eq!(f["config"][key], r["config"][key], "consumer C1.config.{key}");
    }
    assert_eq!(f["delivered"]["stream_seq"], 1);
    assert_eq!(f["ack_floor"]["stream_seq"], 1);
    assert_eq!(f["num_pending"], 2);
}
