//! Server-wide JetStream limits (`jetstream { max_memory_store, max_file_store }`): streams
//! reserve their `max_bytes` from them, publishes are refused once the stored bytes are above
//! them, and `$JS.API.INFO` and `/varz` report them. Runs against fjord, or nats-server 2.15.1
//! with `FJORD_TEST_TARGET=reference`: the same assertions hold for both.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use async_nats::Client;
use fjord_tests::js_api::{api, connect, request};
use fjord_tests::{ConfigFile, ServerBinary, StoreDir, TestServer};
use serde_json::{json, Value};

/// A server with these limits and a monitoring port; the config file must outlive it.
fn start(dir: &StoreDir, limits: &str) -> (TestServer, ConfigFile, u16) {
    let http_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let conf = ConfigFile::new(&format!(
        "jetstream {{ store_dir: \"{}\", {limits} }}\nhttp: \"127.0.0.1:{http_port}\"\n",
        dir.arg()
    ));
    let server = TestServer::start(&ServerBinary::target(), &["-c", conf.arg()]);
    (server, conf, http_port)
}

/// `GET path` on the monitoring port, as JSON (HTTP/1.0: the body ends at close).
fn monitor_json(port: u16, path: &str) -> Value {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to monitor");
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (_, body) = response.split_once("\r\n\r\n").expect("HTTP header end");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

async fn create(client: &Client, op: &str, config: Value) -> Value {
    let name = config["name"].as_str().expect("stream name").to_string();
    api(client, &format!("$JS.API.STREAM.{op}.{name}"), &config).await
}

fn assert_error(answer: &Value, code: u64, err_code: u64, description: &str) {
    assert_eq!(
        answer["error"],
        json!({"code": code, "err_code": err_code, "description": description}),
        "{answer}"
    );
}

const MEMORY_FULL: (u64, u64, &str) = (500, 10028, "insufficient memory resources available");
const STORAGE_FULL: (u64, u64, &str) = (500, 10047, "insufficient storage resources available");

#[tokio::test]
async fn streams_reserve_their_max_bytes_from_the_server_limits() {
    let dir = StoreDir::new("jslimits");
    // 1MB is 2^20 bytes, 2M is 2,000,000 (nats-server's size suffixes).
    let (server, _conf, http) = start(&dir, "max_memory_store: 1MB, max_file_store: 2M");
    let client = connect(&server).await;
    let memory = |name: &str, max_bytes: i64| {
        json!({"name": name, "subjects": [name.to_lowercase()], "storage": "memory",
               "max_bytes": max_bytes})
    };

    let m = create(&client, "CREATE", memory("M", 600_000)).await;
    assert!(m.get("error").is_none(), "{m}");
    let (code, err, text) = MEMORY_FULL;
    assert_error(&create(&client, "CREATE", memory("M2", 600_000)).await, code, err, text);
    // No max_bytes: one byte is enough.
    let m3 = create(&client, "CREATE", memory("M3", -1)).await;
    assert!(m3.get("error").is_none(), "{m3}");
    let (code, err, text) = STORAGE_FULL;
    let file = json!({"name": "F", "subjects": ["f"], "max_bytes": 3_000_000});
    assert_error(&create(&client, "CREATE", file).await, code, err, text);

    // An update reserves only its increase: up to the limit exactly, and not a byte more.
    let up = create(&client, "UPDATE", memory("M", 1 << 20)).await;
    assert!(up.get("error").is_none(), "{up}");
    assert_eq!(up["config"]["max_bytes"], 1 << 20);
    let (code, err, text) = MEMORY_FULL;
    assert_error(&create(&client, "UPDATE", memory("M", (1 << 20) + 1)).await, code, err, text);
    // Everything is reserved now: not even a stream without max_bytes fits.
    assert_error(&create(&client, "CREATE", memory("M4", -1)).await, code, err, text);

    let info = api(&client, "$JS.API.INFO", &json!({})).await;
    assert_eq!(info["reserved_memory"], 1 << 20, "{info}");
    assert_eq!(info["reserved_storage"], 0, "{info}");
    assert_eq!(info["streams"], 2, "{info}");
    // A deleted stream gives its reservation back.
    let deleted = api(&client, "$JS.API.STREAM.DELETE.M", &json!({})).await;
    assert_eq!(deleted["success"], true, "{deleted}");
    let m4 = create(&client, "CREATE", memory("M4", 1 << 20)).await;
    assert!(m4.get("error").is_none(), "{m4}");

    let varz = monitor_json(http, "/varz");
    let js = &varz["jetstream"];
    assert_eq!(js["config"]["max_memory"], 1 << 20, "{js}");
    assert_eq!(js["config"]["max_storage"], 2_000_000, "{js}");
    let info = api(&client, "$JS.API.INFO", &json!({})).await;
    assert_eq!(js["stats"]["reserved_memory"], 1 << 20, "{js}");
    assert_eq!(js["stats"]["reserved_storage"], 0, "{js}");
    assert_eq!(js["stats"]["memory"], info["memory"], "{js}");
    assert_eq!(js["stats"]["accounts"], 1, "{js}");
    // Each server reports its own level (see docs/compatibility.md), the same in both places.
    assert_eq!(js["stats"]["api"]["level"], info["api"]["level"], "{js} {info}");
    assert!(info["api"]["level"].as_u64().is_some_and(|l| l >= 1), "{info}");
}

#[tokio::test]
async fn publishes_are_refused_once_the_stored_bytes_are_above_the_limit() {
    const LIMIT: u64 = 100_000;
    let dir = StoreDir::new("jsfull");
    let (server, _conf, http) = start(&dir, &format!("max_memory_store: {LIMIT}"));
    let client = connect(&server).await;
    let config = json!({"name": "M", "subjects": ["m"], "storage": "memory"});
    let created = create(&client, "CREATE", config).await;
    assert!(created.get("error").is_none(), "{created}");

    let body = "x".repeat(1000);
    let mut stored = 0u64;
    let refusal = loop {
        assert!(stored < 1000, "{stored} messages stored, none refused");
        let ack = request(&client, "m", body.clone()).await;
        let ack: Value = serde_json::from_slice(&ack.payload).expect("PubAck is JSON");
        if ack.get("error").is_some() {
            break ack;
        }
        stored += 1;
        assert_eq!(ack["seq"], stored, "{ack}");
    };
    let expected = json!({"error": {"code": 503, "err_code": 10023,
                                    "description": "insufficient resources"},
                          "stream": "M", "seq": 0});
    assert_eq!(refusal, expected);
    // The last message stored is the one that crossed the limit (the use is checked before a
    // store, not the message's size).
    let info = api(&client, "$JS.API.INFO", &json!({})).await;
    let used = info["memory"].as_u64().expect("memory");
    assert!(used > LIMIT && used - used / stored <= LIMIT, "{stored} stored, {info}");
    let varz = monitor_json(http, "/varz");
    assert_eq!(varz["jetstream"]["stats"]["memory"], used, "{varz}");
    // Still refused, until room is made.
    let again = request(&client, "m", body.clone()).await;
    assert_eq!(serde_json::from_slice::<Value>(&again.payload).unwrap(), expected);
    let purged = api(&client, "$JS.API.STREAM.PURGE.M", &json!({})).await;
    assert_eq!(purged["success"], true, "{purged}");
    let ack = request(&client, "m", body).await;
    let ack: Value = serde_json::from_slice(&ack.payload).expect("PubAck is JSON");
    assert_eq!(ack, json!({"stream": "M", "seq": stored + 1}));
}
