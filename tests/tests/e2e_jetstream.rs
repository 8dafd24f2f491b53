//! End-to-end tests of JetStream with async-nats against `fjord -js -sd <dir>` (or the reference
//! nats-server with `FJORD_TEST_TARGET=reference`): streams, PubAcks, dedup, expected-sequence
//! errors, pull consumers with acks and redelivery, and recovery after `kill -9`.
//!
//! No sleeps: every wait is an awaited reply or a pull request's `expires`, bounded by a timeout.
//! `TestServer`'s drop is SIGKILL, so every restart here is a crash.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, context::Publish, stream};
use fjord_tests::{ServerBinary, StoreDir, TestServer};
use futures::StreamExt;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(15);

fn start(dir: &StoreDir) -> TestServer {
    TestServer::start(&ServerBinary::target(), &["-js", "-sd", dir.arg()])
}

async fn connect_js(server: &TestServer) -> jetstream::Context {
    let client = timeout(WAIT, async_nats::connect(server.url()))
        .await
        .expect("connect timed out")
        .expect("connect");
    jetstream::new(client)
}

async fn create(js: &jetstream::Context, name: &str, subjects: &[&str]) -> stream::Stream {
    timeout(
        WAIT,
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }),
    )
    .await
    .expect("create timed out")
    .expect("create stream")
}

async fn publish(
    js: &jetstream::Context,
    subject: &str,
    payload: &str,
) -> jetstream::publish::PublishAck {
    let ack = timeout(WAIT, js.publish(subject.to_string(), payload.to_string().into()))
        .await
        .expect("publish timed out")
        .expect("publish");
    timeout(WAIT, ack).await.expect("puback timed out").expect("puback")
}

#[tokio::test]
async fn create_stream_publish_and_info() {
    let dir = StoreDir::new("basic");
    let server = start(&dir);
    let js = connect_js(&server).await;
    let mut s = create(&js, "ORDERS", &["orders.>"]).await;
    for i in 1..=3u64 {
        let ack = publish(&js, &format!("orders.{i}"), "x").await;
        assert_eq!((ack.stream.as_str(), ack.sequence, ack.duplicate), ("ORDERS", i, false));
    }
    let info = timeout(WAIT, s.info()).await.unwrap().expect("stream info");
    assert_eq!(info.state.messages, 3);
    assert_eq!((info.state.first_sequence, info.state.last_sequence), (1, 3));
    assert_eq!(info.config.max_messages, -1, "limits default to -1 as in nats-server");
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));
    // Creating the same stream again is idempotent; a different config is refused with 10058.
    create(&js, "ORDERS", &["orders.>"]).await;
    let err = js
        .create_stream(stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["other.>".into()],
            ..Default::default()
        })
        .await
        .expect_err("different config");
    assert!(err.to_string().contains("10058"), "{err}");
    let raw = s.get_raw_message(2).await.expect("get message 2");
    assert_eq!(raw.subject.as_str(), "orders.2");
    let missing = js.get_stream("NOPE").await.expect_err("no such stream");
    assert!(
        missing.to_string().contains("10059") || missing.to_string().contains("not found"),
        "{missing}"
    );
}

#[tokio::test]
async fn dedup_with_msg_id() {
    let dir = StoreDir::new("dedup");
    let server = start(&dir);
    let js = connect_js(&server).await;
    let mut s = create(&js, "D", &["d"]).await;
    let mut acks = Vec::new();
    for _ in 0..2 {
        let ack = js
            .send_publish("d", Publish::build().message_id("one").payload("x".into()))
            .await
            .expect("publish");
        acks.push(timeout(WAIT, ack).await.unwrap().expect("puback"));
    }
    assert_eq!((acks[0].sequence, acks[0].duplicate), (1, false));
    assert_eq!((acks[1].sequence, acks[1].duplicate), (1, true));
    let info = s.info().await.expect("info");
    assert_eq!(info.state.messages, 1);
}

#[tokio::test]
async fn expected_last_sequence_error_code() {
    let dir = StoreDir::new("expect");
    let server = start(&dir);
    let js = connect_js(&server).await;
    create(&js, "E", &["e"]).await;
    publish(&js, "e", "1").await;
    let wrong = js
        .send_publish("e", Publish::build().expected_last_sequence(7).payload("x".into()))
        .await
        .expect("publish");
    let err = timeout(WAIT, wrong).await.unwrap().expect_err("wrong last sequence");
    assert_eq!(err.kind(), PublishErrorKind::WrongLastSequence);
    let right = js
        .send_publish("e", Publish::build().expected_last_sequence(1).payload("x".into()))
        .await
        .expect("publish");
    assert_eq!(timeout(WAIT, right).await.unwrap().expect("puback").sequence, 2);
}

#[tokio::test]
async fn pull_fetch_ack_and_redelivery_after_ack_wait() {
    let dir = StoreDir::new("pull");
    let server = start(&dir);
    let js = connect_js(&server).await;
    let s = create(&js, "P", &["p.*"]).await;
    for i in 0..3 {
        publish(&js, &format!("p.{i}"), &format!("m{i}")).await;
    }
    let mut c: jetstream::consumer::Consumer<pull::Config> = s
        .create_consumer(pull::Config {
            durable_name: Some("worker".into()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_millis(500),
            ..Default::default()
        })
        .await
        .expect("create consumer");
    let mut batch = c.fetch().max_messages(3).messages().await.expect("fetch");
    let mut got = Vec::new();
    while let Some(m) = timeout(WAIT, batch.next()).await.expect("fetch timed out") {
        got.push(m.expect("message"));
    }
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].subject.as_str(), "p.0");
    assert_eq!(&got[2].payload[..], b"m2");
    let info0 = got[0].info().expect("ack subject parses");
    assert_eq!((info0.stream_sequence, info0.consumer_sequence, info0.delivered), (1, 1, 1));
    // Ack two; the third is redelivered once its ack wait passes (awaited via `expires`).
    got[0].double_ack().await.expect("ack 1");
    got[1].double_ack().await.expect("ack 2");
    let info = c.info().await.expect("consumer info").clone();
    assert_eq!(info.num_ack_pending, 1);
    assert_eq!(info.ack_floor.stream_sequence, 2);
    let mut again =
        c.batch().max_messages(1).expires(Duration::from_secs(5)).messages().await.expect("pull");
    let m = timeout(WAIT, again.next())
        .await
        .expect("redelivery timed out")
        .expect("a message")
        .expect("ok");
    let mi = m.info().expect("info");
    assert_eq!((mi.stream_sequence, mi.delivered), (3, 2), "redelivered after ack_wait");
    m.double_ack().await.expect("ack 3");
    let info = c.info().await.expect("consumer info").clone();
    assert_eq!((info.num_ack_pending, info.num_pending), (0, 0));
    assert_eq!(info.num_redelivered, 0);
    assert_eq!(info.ack_floor.stream_sequence, 3);
    // Redeliveries take a new consumer sequence too (nats-server's `dseq`).
    assert_eq!((info.delivered.consumer_sequence, info.delivered.stream_sequence), (4, 3));
    // Nothing left: a no-wait fetch ends empty.
    let mut none = c.fetch().max_messages(1).messages().await.expect("fetch");
    assert!(timeout(WAIT, none.next()).await.expect("fetch timed out").is_none());
}

#[tokio::test]
async fn durable_consumer_survives_restart() {
    let dir = StoreDir::new("durable");
    let server = start(&dir);
    let js = connect_js(&server).await;
    let s = create(&js, "R", &["r"]).await;
    for i in 0..3 {
        publish(&js, "r", &format!("{i}")).await;
    }
    let c: jetstream::consumer::Consumer<pull::Config> = s
        .create_consumer(pull::Config {
            durable_name: Some("keep".into()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("create consumer");
    let mut batch = c.fetch().max_messages(2).messages().await.expect("fetch");
    while let Some(m) = timeout(WAIT, batch.next()).await.expect("fetch timed out") {
        m.expect("message").double_ack().await.expect("double ack");
    }
    drop(js);
    drop(server);

    let server = start(&dir);
    let js = connect_js(&server).await;
    let s = js.get_stream("R").await.expect("stream recovered");
    let mut c: jetstream::consumer::Consumer<pull::Config> =
        s.get_consumer("keep").await.expect("consumer recovered");
    let info = c.info().await.expect("info").clone();
    if ServerBinary::target().name == "fjord" {
        // fjord wrote the consumer's state before confirming the double acks.
        assert_eq!(info.ack_floor.stream_sequence, 2);
        assert_eq!(info.num_pending, 1);
        let mut batch = c.fetch().max_messages(5).messages().await.expect("fetch");
        let m = timeout(WAIT, batch.next()).await.expect("timed out").expect("one").expect("ok");
        assert_eq!(&m.payload[..], b"2", "delivery resumes after the acknowledged messages");
        assert!(timeout(WAIT, batch.next()).await.expect("timed out").is_none());
    } else {
        // nats-server writes consumer state lazily, so a SIGKILL right after a double ack may
        // take the acks back: the consumer survives, its floor may not.
        assert!(info.ack_floor.stream_sequence <= 2);
    }
}

#[tokio::test]
async fn kill_9_keeps_every_acknowledged_message() {
    let dir = StoreDir::new("kill9");
    let server = start(&dir);
    let js = connect_js(&server).await;
    create(&js, "K", &["k.>"]).await;
    // Many publishes in flight at once, so group commit batches them.
    let mut pending = Vec::new();
    for i in 0..500 {
        pending.push(
            js.publish(format!("k.{}", i % 7), format!("{i}").into()).await.expect("publish"),
        );
    }
    let mut last = 0;
    for ack in pending {
        let ack = timeout(WAIT, ack).await.expect("puback timed out").expect("puback");
        assert_eq!(ack.sequence, last + 1);
        last = ack.sequence;
    }
    drop(js);
    drop(server); // SIGKILL

    let server = start(&dir);
    let js = connect_js(&server).await;
    let mut s = js.get_stream("K").await.expect("stream recovered");
    let info = s.info().await.expect("info");
    assert_eq!(info.state.messages, 500);
    assert_eq!(info.state.last_sequence, 500);
    for seq in [1, 250, 500] {
        let m = s.get_raw_message(seq).await.expect("message survives");
        assert_eq!(m.sequence, seq);
    }
    // The stream still takes publishes after recovery, continuing the sequence.
    assert_eq!(publish(&js, "k.x", "after").await.sequence, 501);
}

#[tokio::test]
async fn key_value_put_get_create_update_delete_purge() {
    use async_nats::jetstream::kv;
    let dir = StoreDir::new("kv");
    let server = start(&dir);
    let js = connect_js(&server).await;
    let bucket = timeout(
        WAIT,
        js.create_key_value(kv::Config { bucket: "cfg".into(), history: 5, ..Default::default() }),
    )
    .await
    .expect("create bucket timed out")
    .expect("create bucket");
    assert_eq!(bucket.put("k", "1".into()).await.expect("put"), 1);
    assert_eq!(bucket.put("k", "2".into()).await.expect("put"), 2);
    assert_eq!(bucket.get("k").await.expect("get").as_deref(), Some(&b"2"[..]));
    assert!(bucket.create("k", "x".into()).await.is_err(), "create of an existing key fails");
    assert!(bucket.update("k", "x".into(), 1).await.is_err(), "update at a stale revision fails");
    assert_eq!(bucket.update("k", "3".into(), 2).await.expect("update"), 3);
    let entry = bucket.entry("k").await.expect("entry").expect("some");
    assert_eq!((entry.revision, &entry.value[..]), (3, &b"3"[..]));
    bucket.delete("k").await.expect("delete");
    assert_eq!(bucket.get("k").await.expect("get"), None);
    assert_eq!(bucket.create("k", "again".into()).await.expect("create after delete"), 5);
    bucket.purge("k").await.expect("purge");
    assert_eq!(bucket.get("k").await.expect("get"), None);
    assert_eq!(bucket.get("missing").await.expect("get"), None);
    let mut stream = js.get_stream("KV_cfg").await.expect("stream");
    let info = stream.info().await.expect("info");
    assert_eq!(info.state.messages, 1, "the purge rolled the key up to its marker");

    // History 1 with discard new: a second put to the same key replaces the first.
    let one = js
        .create_key_value(kv::Config { bucket: "one".into(), ..Default::default() })
        .await
        .expect("create bucket");
    one.put("a", "1".into()).await.expect("put");
    one.put("a", "2".into()).await.expect("second put");
    assert_eq!(one.get("a").await.expect("get").as_deref(), Some(&b"2"[..]));
}

#[tokio::test]
async fn key_value_history_keys_and_watch_use_push_consumers() {
    use async_nats::jetstream::kv;
    let dir = StoreDir::new("kvwatch");
    let server = start(&dir);
    let js = connect_js(&server).await;
    let bucket = js
        .create_key_value(kv::Config { bucket: "w".into(), history: 10, ..Default::default() })
        .await
        .expect("create bucket");
    bucket.put("a", "1".into()).await.expect("put");
    bucket.put("a", "2".into()).await.expect("put");
    bucket.put("b", "1".into()).await.expect("put");

    let history: Vec<kv::Entry> = timeout(WAIT, async {
        bucket.history("a").await.expect("history").map(|e| e.expect("entry")).collect().await
    })
    .await
    .expect("history timed out");
    let values: Vec<&[u8]> = history.iter().map(|e| &e.value[..]).collect();
    assert_eq!(values, vec![&b"1"[..], &b"2"[..]]);

    let mut keys: Vec<String> = timeout(WAIT, async {
        bucket.keys().await.expect("keys").map(|k| k.expect("key")).collect().await
    })
    .await
    .expect("keys timed out");
    keys.sort();
    assert_eq!(keys, vec!["a".to_string(), "b".to_string()]);

    let mut watch = bucket.watch_all().await.expect("watch");
    bucket.put("c", "new".into()).await.expect("put");
    let entry =
        timeout(WAIT, watch.next()).await.expect("watch timed out").expect("entry").expect("ok");
    assert_eq!((entry.key.as_str(), &entry.value[..], entry.revision), ("c", &b"new"[..], 4));
}

#[tokio::test]
async fn object_store_put_and_get_a_multi_megabyte_object() {
    use async_nats::jetstream::object_store;
    use tokio::io::AsyncReadExt;
    let dir = StoreDir::new("obj");
    let server = start(&dir);
    let js = connect_js(&server).await;
    let bucket = timeout(
        WAIT,
        js.create_object_store(object_store::Config {
            bucket: "files".into(),
            ..Default::default()
        }),
    )
    .await
    .expect("create timed out")
    .expect("create object store");
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i: u32| (i % 251) as u8).collect();
    let mut reader: &[u8] = &data;
    let info = timeout(WAIT, bucket.put("big.bin", &mut reader))
        .await
        .expect("put timed out")
        .expect("put");
    assert_eq!(info.size, data.len());
    let mut object =
        timeout(WAIT, bucket.get("big.bin")).await.expect("get timed out").expect("get");
    let mut back = Vec::new();
    timeout(WAIT, object.read_to_end(&mut back)).await.expect("read timed out").expect("read");
    assert!(back == data, "the object reads back byte for byte");
}

#[tokio::test]
async fn workqueue_removes_acknowledged_messages() {
    let dir = StoreDir::new("wq");
    let server = start(&dir);
    let js = connect_js(&server).await;
    let mut s = js
        .create_stream(stream::Config {
            name: "WQ".into(),
            subjects: vec!["jobs.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .expect("create stream");
    for i in 0..3 {
        publish(&js, &format!("jobs.{i}"), "job").await;
    }
    let not_explicit = s
        .create_consumer(pull::Config {
            durable_name: Some("lazy".into()),
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect_err("workqueue needs explicit ack");
    assert!(not_explicit.to_string().contains("10084"), "{not_explicit}");
    let c: jetstream::consumer::Consumer<pull::Config> = s
        .create_consumer(pull::Config {
            durable_name: Some("w".into()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("create consumer");
    let second = s
        .create_consumer(pull::Config {
            durable_name: Some("w2".into()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect_err("one unfiltered consumer per workqueue");
    assert!(second.to_string().contains("10099"), "{second}");
    let mut batch = c.fetch().max_messages(2).messages().await.expect("fetch");
    while let Some(m) = timeout(WAIT, batch.next()).await.expect("fetch timed out") {
        m.expect("message").double_ack().await.expect("ack");
    }
    let info = s.info().await.expect("info");
    assert_eq!((info.state.messages, info.state.first_sequence), (1, 3));
}

#[tokio::test]
async fn update_purge_delete_list_and_continuous_pull() {
    let dir = StoreDir::new("crud");
    let server = start(&dir);
    let js = connect_js(&server).await;
    let mut s = create(&js, "C", &["c.*"]).await;
    for i in 0..6 {
        publish(&js, &format!("c.{}", i % 2), &format!("{i}")).await;
    }
    // Update: a per-subject limit applies to what is stored from now on and to the next store.
    let info = js
        .update_stream(stream::Config {
            name: "C".into(),
            subjects: vec!["c.*".into(), "d".into()],
            max_messages_per_subject: 10,
            ..Default::default()
        })
        .await
        .expect("update");
    assert_eq!(info.config.subjects.len(), 2);
    assert_eq!(publish(&js, "d", "x").await.sequence, 7);
    // Purge one subject keeping its newest message, then delete one message.
    let purged = s.purge().filter("c.0").keep(1).await.expect("purge");
    assert_eq!(purged.purged, 2);
    assert!(s.delete_message(2).await.expect("delete"));
    let info = s.info().await.expect("info");
    assert_eq!(info.state.messages, 4);
    let last = s.get_last_raw_message_by_subject("c.1").await.expect("last by subject");
    assert_eq!(last.sequence, 6);
    let names: Vec<String> = js.stream_names().map(|n| n.expect("name")).collect().await;
    assert_eq!(names, vec!["C".to_string()]);

    // A consumer's endless `messages()` stream keeps pulling as it is acked.
    let c: jetstream::consumer::Consumer<pull::Config> = s
        .create_consumer(pull::Config {
            name: Some("all".into()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("create consumer");
    let mut msgs = c.messages().await.expect("messages");
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let m = timeout(WAIT, msgs.next()).await.expect("timed out").expect("some").expect("ok");
        seen.push(m.info().expect("info").stream_sequence);
        m.ack().await.expect("ack");
    }
    assert_eq!(seen, vec![4, 5, 6, 7], "purged and deleted messages are skipped");
    drop(msgs);
    assert!(js.delete_stream("C").await.expect("delete stream").success);
    assert!(js.get_stream("C").await.is_err());
    // The name is free again, and the new stream starts empty.
    let mut again = create(&js, "C", &["c.*"]).await;
    assert_eq!(again.info().await.expect("info").state.messages, 0);
}

/// Not a timed test: prints publish and consume rates (run with `--ignored --nocapture`, on a
/// release build for meaningful numbers). 256 PubAcks outstanding, file storage, fsync before
/// every acknowledgement on fjord.
#[tokio::test]
#[ignore]
async fn throughput_report() {
    const N: usize = 20_000;
    let dir = StoreDir::new("bench");
    let server = start(&dir);
    let js = connect_js(&server).await;
    let s = create(&js, "B", &["b"]).await;
    let started = std::time::Instant::now();
    let mut inflight = std::collections::VecDeque::new();
    for _ in 0..N {
        inflight.push_back(js.publish("b", vec![0u8; 128].into()).await.expect("publish"));
        if inflight.len() >= 256 {
            inflight.pop_front().unwrap().await.expect("puback");
        }
    }
    for ack in inflight {
        ack.await.expect("puback");
    }
    let publish = started.elapsed();
    let c: jetstream::consumer::Consumer<pull::Config> = s
        .create_consumer(pull::Config {
            durable_name: Some("b".into()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let started = std::time::Instant::now();
    let mut msgs = c.messages().await.expect("messages");
    for _ in 0..N {
        let m = timeout(WAIT, msgs.next()).await.expect("timed out").expect("some").expect("ok");
        m.ack().await.expect("ack");
    }
    let consume = started.elapsed();
    eprintln!(
        "{}: publish {:.0} msg/s, consume+ack {:.0} msg/s",
        ServerBinary::target().name,
        N as f64 / publish.as_secs_f64(),
        N as f64 / consume.as_secs_f64()
    );
}

// ---- Retention, ack protocol and consumer API details, checked field by field ----
//
// These speak the raw `$JS.API` (JSON in, JSON out) so that the same assertions hold against
// nats-server: run them with `FJORD_TEST_TARGET=reference` for the differential check.

async fn connect_raw(server: &TestServer) -> async_nats::Client {
    timeout(WAIT, async_nats::connect(server.url()))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// One `$JS.API` request; the answer as JSON.
async fn api(
    client: &async_nats::Client,
    subject: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let payload = if body.is_null() { String::new() } else { body.to_string() };
    let msg = timeout(WAIT, client.request(subject.to_string(), payload.into()))
        .await
        .expect("API request timed out")
        .expect("API request");
    serde_json::from_slice(&msg.payload).expect("API answer is JSON")
}

async fn stream_state(client: &async_nats::Client, stream: &str) -> serde_json::Value {
    api(client, &format!("$JS.API.STREAM.INFO.{stream}"), serde_json::Value::Null).await["state"]
        .clone()
}

async fn consumer_info(
    client: &async_nats::Client,
    stream: &str,
    consumer: &str,
) -> serde_json::Value {
    api(client, &format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}"), serde_json::Value::Null)
        .await
}

async fn create_consumer(
    client: &async_nats::Client,
    stream: &str,
    config: serde_json::Value,
) -> serde_json::Value {
    let name = config["durable_name"].as_str().or(config["name"].as_str()).expect("named");
    let body = serde_json::json!({"stream_name": stream, "config": config});
    api(client, &format!("$JS.API.CONSUMER.CREATE.{stream}.{name}"), body).await
}

/// Sends a raw `CONSUMER.MSG.NEXT`; messages and status messages arrive on the returned
/// subscription.
async fn pull_raw(
    client: &async_nats::Client,
    stream: &str,
    consumer: &str,
    request: serde_json::Value,
) -> async_nats::Subscriber {
    let inbox = client.new_inbox();
    let sub = client.subscribe(inbox.clone()).await.expect("subscribe");
    client
        .publish_with_reply(
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            inbox,
            request.to_string().into(),
        )
        .await
        .expect("pull");
    sub
}

async fn next_msg(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    timeout(WAIT, sub.next()).await.expect("no message in time").expect("subscription open")
}

/// The stream sequence in a `$JS.ACK` reply subject.
fn ack_seq(msg: &async_nats::Message) -> u64 {
    let reply = msg.reply.as_ref().expect("a delivery has an ack subject");
    reply.split('.').nth(5).expect("ack subject tokens").parse().expect("sequence")
}

/// Acks with a reply and waits for the confirmation (the "double ack").
async fn ack_confirmed(client: &async_nats::Client, msg: &async_nats::Message, body: &str) {
    let reply = msg.reply.clone().expect("ack subject");
    let confirm = timeout(WAIT, client.request(reply, body.to_string().into()))
        .await
        .expect("ack confirmation timed out")
        .expect("ack confirmation");
    assert!(confirm.payload.is_empty());
}

/// Pulls everything available (no_wait) and double-acks it; returns the stream sequences.
async fn drain_and_ack(client: &async_nats::Client, stream: &str, consumer: &str) -> Vec<u64> {
    let mut sub =
        pull_raw(client, stream, consumer, serde_json::json!({"batch": 100, "no_wait": true}))
            .await;
    let mut seqs = Vec::new();
    loop {
        let msg = next_msg(&mut sub).await;
        if msg.status.is_some() {
            assert_eq!(msg.status.map(u16::from), Some(404), "no_wait ends with 404");
            return seqs;
        }
        seqs.push(ack_seq(&msg));
        ack_confirmed(client, &msg, "+ACK").await;
    }
}

#[tokio::test]
async fn interest_retention_keeps_a_message_until_every_interested_consumer_acked_it() {
    use serde_json::json;
    let dir = StoreDir::new("interest");
    let server = start(&dir);
    let client = connect_raw(&server).await;
    let js = jetstream::new(client.clone());
    let body = json!({"name": "I", "subjects": ["i.>"], "retention": "interest"});
    let created = api(&client, "$JS.API.STREAM.CREATE.I", body).await;
    assert_eq!(created["config"]["retention"], "interest", "{created}");
    // An empty new stream: first_seq 0 and no num_subjects, as nats-server reports it.
    assert_eq!(created["state"]["first_seq"], 0, "{created}");
    assert!(created["state"].get("num_subjects").is_none(), "{created}");
    // No consumer: the sequence is taken and acknowledged, the message is not kept.
    assert_eq!(publish(&js, "i.a", "0").await.sequence, 1);
    let st = stream_state(&client, "I").await;
    assert_eq!(
        (&st["messages"], &st["first_seq"], &st["last_seq"]),
        (&json!(0), &json!(2), &json!(1))
    );
    let a = create_consumer(
        &client,
        "I",
        json!({"durable_name": "A", "ack_policy": "explicit", "filter_subject": "i.a"}),
    )
    .await;
    assert_eq!(a["delivered"]["stream_seq"], 1, "{a}");
    create_consumer(&client, "I", json!({"durable_name": "B", "ack_policy": "explicit"})).await;
    assert_eq!(publish(&js, "i.a", "1").await.sequence, 2);
    assert_eq!(publish(&js, "i.b", "2").await.sequence, 3);
    assert_eq!(stream_state(&client, "I").await["messages"], 2);
    assert_eq!(drain_and_ack(&client, "I", "A").await, vec![2]);
    assert_eq!(stream_state(&client, "I").await["messages"], 2, "B still needs both");
    assert_eq!(drain_and_ack(&client, "I", "B").await, vec![2, 3]);
    let st = stream_state(&client, "I").await;
    assert_eq!((&st["messages"], &st["first_seq"]), (&json!(0), &json!(4)), "{st}");
    // A message only B wants goes when B goes.
    publish(&js, "i.b", "3").await;
    assert_eq!(stream_state(&client, "I").await["messages"], 1);
    let deleted = api(&client, "$JS.API.CONSUMER.DELETE.I.B", serde_json::Value::Null).await;
    assert_eq!(deleted["success"], true);
    let st = stream_state(&client, "I").await;
    assert_eq!((&st["messages"], &st["first_seq"]), (&json!(0), &json!(5)), "{st}");
}

#[tokio::test]
async fn workqueue_consumer_rules_answer_nats_server_error_codes() {
    use serde_json::json;
    let dir = StoreDir::new("wqrules");
    let server = start(&dir);
    let client = connect_raw(&server).await;
    let body = json!({"name": "W", "subjects": ["w.>"], "retention": "workqueue"});
    api(&client, "$JS.API.STREAM.CREATE.W", body).await;
    let code = |v: serde_json::Value| v["error"]["err_code"].clone();
    let pull_none = json!({"durable_name": "X", "ack_policy": "none"});
    assert_eq!(code(create_consumer(&client, "W", pull_none).await), 10084);
    let push_none = json!({"durable_name": "X", "ack_policy": "none", "deliver_subject": "dx"});
    assert_eq!(code(create_consumer(&client, "W", push_none).await), 10098);
    let not_all = json!({"durable_name": "X", "ack_policy": "explicit", "deliver_policy": "new"});
    assert_eq!(code(create_consumer(&client, "W", not_all).await), 10101);
    let a = json!({"durable_name": "A", "ack_policy": "explicit", "filter_subject": "w.a"});
    assert_eq!(create_consumer(&client, "W", a).await["name"], "A");
    let overlap = json!({"durable_name": "B", "ack_policy": "explicit", "filter_subject": "w.*"});
    assert_eq!(code(create_consumer(&client, "W", overlap).await), 10100);
    let unfiltered = json!({"durable_name": "C", "ack_policy": "explicit"});
    assert_eq!(code(create_consumer(&client, "W", unfiltered).await), 10099);
    let disjoint = json!({"durable_name": "D", "ack_policy": "explicit", "filter_subject": "w.b"});
    assert_eq!(create_consumer(&client, "W", disjoint).await["name"], "D");
    // max_consumers is checked before the work-queue rules.
    let body = json!({"name": "M", "subjects": ["m"], "max_consumers": 1});
    api(&client, "$JS.API.STREAM.CREATE.M", body).await;
    create_consumer(&client, "M", json!({"durable_name": "one", "ack_policy": "explicit"})).await;
    let two = create_consumer(&client, "M", json!({"durable_name": "two"})).await;
    assert_eq!(
        two["error"],
        json!({"code": 400, "err_code": 10026, "description": "maximum consumers limit reached"})
    );
}

#[tokio::test]
async fn ack_protocol_next_nak_delay_progress_term_and_double_ack() {
    use serde_json::json;
    let dir = StoreDir::new("acks");
    let server = start(&dir);
    let client = connect_raw(&server).await;
    let js = jetstream::new(client.clone());
    create(&js, "S", &["s.>"]).await;
    for i in 0..4 {
        publish(&js, "s.a", &format!("{i}")).await;
    }
    let config =
        json!({"durable_name": "C", "ack_policy": "explicit", "ack_wait": 30_000_000_000u64});
    create_consumer(&client, "S", config).await;
    let mut sub = pull_raw(&client, "S", "C", json!({"batch": 1})).await;
    let first = next_msg(&mut sub).await;
    assert_eq!(ack_seq(&first), 1);
    // +NXT acks and pulls: the next two arrive on the ack's reply subject.
    let inbox = client.new_inbox();
    let mut next = client.subscribe(inbox.clone()).await.expect("subscribe");
    let ack = first.reply.clone().expect("ack subject");
    client.publish_with_reply(ack, inbox, "+NXT {\"batch\":2}".into()).await.expect("+NXT");
    let (two, three) = (next_msg(&mut next).await, next_msg(&mut next).await);
    assert_eq!((ack_seq(&two), ack_seq(&three)), (2, 3));
    let info = consumer_info(&client, "S", "C").await;
    assert_eq!(info["ack_floor"]["stream_seq"], 1, "+NXT acked 1: {info}");
    assert_eq!(info["num_ack_pending"], 2);
    // -NAK with a delay: redelivered, but not before the delay (the next new message is not
    // held back by it).
    let nak_at = std::time::Instant::now();
    ack_confirmed(&client, &two, "-NAK {\"delay\": 400000000}").await;
    let mut again =
        pull_raw(&client, "S", "C", json!({"batch": 2, "expires": 5_000_000_000u64})).await;
    let four = next_msg(&mut again).await;
    assert_eq!(ack_seq(&four), 4);
    let redelivered = next_msg(&mut again).await;
    assert_eq!(ack_seq(&redelivered), 2);
    assert!(nak_at.elapsed() >= Duration::from_millis(350), "{:?}", nak_at.elapsed());
    let reply = redelivered.reply.as_ref().expect("ack subject").to_string();
    assert!(reply.starts_with("$JS.ACK.S.C.2.2.5."), "second delivery, consumer seq 5: {reply}");
    ack_confirmed(&client, &four, "+ACK").await;
    // +WPI, +TERM with a reason and +ACK: each confirmed once the consumer state is written.
    ack_confirmed(&client, &redelivered, "+WPI").await;
    ack_confirmed(&client, &redelivered, "+TERM no longer wanted").await;
    ack_confirmed(&client, &three, "+ACK").await;
    let info = consumer_info(&client, "S", "C").await;
    assert_eq!(
        (&info["num_ack_pending"], &info["num_redelivered"]),
        (&json!(0), &json!(0)),
        "{info}"
    );
    assert_eq!(info["ack_floor"]["consumer_seq"], 5, "{info}");
    assert_eq!(info["ack_floor"]["stream_seq"], 4, "{info}");
    assert_eq!(info["num_pending"], 0);
}

#[tokio::test]
async fn backoff_paces_redeliveries_and_max_deliver_ends_them() {
    use serde_json::json;
    let dir = StoreDir::new("backoff");
    let server = start(&dir);
    let client = connect_raw(&server).await;
    let js = jetstream::new(client.clone());
    create(&js, "S", &["s.>"]).await;
    publish(&js, "s.a", "x").await;
    let too_short = json!({"durable_name": "X", "ack_policy": "explicit", "max_deliver": 2,
        "backoff": [100_000_000u64, 200_000_000u64, 300_000_000u64]});
    let err = create_consumer(&client, "S", too_short).await;
    assert_eq!(err["error"]["err_code"], 10116, "{err}");
    let config = json!({"durable_name": "C", "ack_policy": "explicit", "max_deliver": 3,
        "ack_wait": 30_000_000_000u64, "backoff": [300_000_000u64, 600_000_000u64]});
    let created = create_consumer(&client, "S", config).await;
    assert_eq!(created["config"]["ack_wait"], 300_000_000u64, "backoff[0] is the ack wait");
    let mut sub =
        pull_raw(&client, "S", "C", json!({"batch": 3, "expires": 10_000_000_000u64})).await;
    let mut arrivals = Vec::new();
    for _ in 0..3 {
        let m = next_msg(&mut sub).await;
        assert_eq!(ack_seq(&m), 1);
        arrivals.push(std::time::Instant::now());
    }
    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= Duration::from_millis(250), "first wait is backoff[0]: {gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(550), "second wait is backoff[1]: {gaps:?}");
    // After the third delivery's wait, nothing comes back: this request ends empty.
    let mut last =
        pull_raw(&client, "S", "C", json!({"batch": 1, "expires": 1_500_000_000u64})).await;
    let end = next_msg(&mut last).await;
    assert_eq!(end.status.map(u16::from), Some(408), "{end:?}");
    let info = consumer_info(&client, "S", "C").await;
    assert_eq!(info["num_ack_pending"], 0, "out of deliveries is not pending: {info}");
    assert_eq!(info["num_redelivered"], 1, "{info}");
    assert_eq!(info["ack_floor"]["stream_seq"], 0, "{info}");
}

#[tokio::test]
async fn paused_consumer_delivers_nothing_until_the_pause_ends() {
    use serde_json::json;
    let dir = StoreDir::new("pause");
    let server = start(&dir);
    let client = connect_raw(&server).await;
    let js = jetstream::new(client.clone());
    create(&js, "S", &["s.>"]).await;
    publish(&js, "s.a", "x").await;
    create_consumer(&client, "S", json!({"durable_name": "C", "ack_policy": "explicit"})).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    // Whole microseconds, as a client would write a deadline; formatted the way Go marshals it.
    let until = Duration::from_micros((now + Duration::from_millis(1500)).as_micros() as u64);
    let until_text = fjord_core::jetstream::api::rfc3339(until.as_nanos() as i64);
    let paused =
        api(&client, "$JS.API.CONSUMER.PAUSE.S.C", json!({"pause_until": until_text})).await;
    assert_eq!(paused["type"], "io.nats.jetstream.api.v1.consumer_pause_response");
    assert_eq!(
        (&paused["paused"], &paused["pause_until"]),
        (&json!(true), &json!(until_text)),
        "{paused}"
    );
    assert!(paused["pause_remaining"].as_u64().is_some_and(|r| r > 0 && r <= 1_500_000_000));
    let info = consumer_info(&client, "S", "C").await;
    assert_eq!(
        (&info["paused"], &info["config"]["pause_until"]),
        (&json!(true), &json!(until_text))
    );
    let mut empty = pull_raw(&client, "S", "C", json!({"batch": 1, "no_wait": true})).await;
    assert_eq!(next_msg(&mut empty).await.status.map(u16::from), Some(404));
    let mut waiting =
        pull_raw(&client, "S", "C", json!({"batch": 1, "expires": 5_000_000_000u64})).await;
    let m = next_msg(&mut waiting).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    assert_eq!(ack_seq(&m), 1);
    assert!(
        now + Duration::from_millis(50) >= until,
        "delivered {:?} before the pause ended",
        until - now
    );
    let info = consumer_info(&client, "S", "C").await;
    assert!(info.get("paused").is_none_or(|p| p == false), "{info}");
    // Resuming: no time is Go's zero time.
    let resumed = api(&client, "$JS.API.CONSUMER.PAUSE.S.C", serde_json::Value::Null).await;
    assert_eq!(
        resumed,
        json!({"type": "io.nats.jetstream.api.v1.consumer_pause_response",
        "paused": false, "pause_until": "0001-01-01T00:00:00Z"})
    );
    let missing = api(&client, "$JS.API.CONSUMER.PAUSE.S.nope", serde_json::Value::Null).await;
    assert_eq!(missing["error"]["err_code"], 10014);
    // deleted_details lists the gaps.
    publish(&js, "s.a", "y").await;
    publish(&js, "s.a", "z").await;
    let del = api(&client, "$JS.API.STREAM.MSG.DELETE.S", json!({"seq": 2})).await;
    assert_eq!(del["success"], true);
    let info = api(
        &client,
        "$JS.API.STREAM.INFO.S",
        json!({"deleted_details": true, "subjects_filter": ">"}),
    )
    .await;
    assert_eq!(info["state"]["deleted"], json!([2]), "{info}");
    assert_eq!(
        (&info["state"]["num_deleted"], &info["state"]["subjects"]),
        (&json!(1), &json!({"s.a": 2}))
    );
}

#[tokio::test]
async fn push_flow_control_stalls_until_answered_and_heartbeats_name_the_request() {
    use serde_json::json;
    let dir = StoreDir::new("flow");
    let server = start(&dir);
    let client = connect_raw(&server).await;
    let js = jetstream::new(client.clone());
    create(&js, "S", &["s"]).await;
    let big = "x".repeat(300 * 1024);
    for _ in 0..10 {
        publish(&js, "s", &big).await;
    }
    let deliver = client.new_inbox();
    let mut sub = client.subscribe(deliver.clone()).await.expect("subscribe");
    let config = json!({"durable_name": "C", "ack_policy": "explicit", "deliver_subject": deliver,
        "flow_control": true, "idle_heartbeat": 300_000_000u64});
    create_consumer(&client, "S", config).await;
    let mut delivered = 0;
    let mut request = None;
    // 300 KiB messages: past half the 2 MiB window (after the 4th) a request goes out, past all
    // of it (after the 7th) delivery stalls; the next thing to arrive is an idle heartbeat.
    let heartbeat = loop {
        let m = next_msg(&mut sub).await;
        match m.status.map(u16::from) {
            None => delivered += 1,
            Some(100) if m.reply.is_some() => {
                assert_eq!(m.description.as_deref(), Some("FlowControl Request"));
                assert_eq!(delivered, 4, "requested once past half the window");
                request = m.reply.clone();
            }
            Some(100) => break m,
            other => panic!("unexpected status {other:?}"),
        }
    };
    let request = request.expect("a flow-control request").to_string();
    assert!(request.starts_with("$JS.FC.S.C."), "{request}");
    assert_eq!(delivered, 7, "stalled past the window");
    assert_eq!(heartbeat.description.as_deref(), Some("Idle Heartbeat"));
    assert_eq!(header_value(&heartbeat, "Nats-Consumer-Stalled"), Some(request.clone()));
    assert_eq!(header_value(&heartbeat, "Nats-Last-Consumer").as_deref(), Some("7"));
    assert_eq!(header_value(&heartbeat, "Nats-Last-Stream").as_deref(), Some("7"));
    // Answering releases the rest.
    client.publish(request, "".into()).await.expect("answer flow control");
    while delivered < 10 {
        let m = next_msg(&mut sub).await;
        if m.status.is_none() {
            delivered += 1;
        }
    }
}

/// A header of `msg` by name (async-nats files well-known names under its own constants, which a
/// plain `get(&str)` does not find).
fn header_value(msg: &async_nats::Message, name: &str) -> Option<String> {
    let headers = msg.headers.as_ref()?;
    let (_, values) = headers.iter().find(|(k, _)| AsRef::<str>::as_ref(*k) == name)?;
    values.first().map(|v| v.as_str().to_string())
}

/// Arrival times of the next `n` deliveries (status messages skipped).
async fn arrivals(sub: &mut async_nats::Subscriber, n: usize) -> Vec<std::time::Instant> {
    let mut at = Vec::new();
    while at.len() < n {
        if next_msg(sub).await.status.is_none() {
            at.push(std::time::Instant::now());
        }
    }
    at
}

#[tokio::test]
async fn push_replay_original_and_rate_limit_pace_deliveries() {
    use serde_json::json;
    let dir = StoreDir::new("pace");
    let server = start(&dir);
    let client = connect_raw(&server).await;
    let js = jetstream::new(client.clone());
    create(&js, "R", &["r"]).await;
    // Stored 400 ms apart: the gaps are the scenario, not a wait for an event.
    for i in 0..3 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        publish(&js, "r", "x").await;
    }
    let deliver = client.new_inbox();
    let mut sub = client.subscribe(deliver.clone()).await.expect("subscribe");
    let config =
        json!({"durable_name": "C", "deliver_subject": deliver, "replay_policy": "original"});
    create_consumer(&client, "R", config).await;
    let at = arrivals(&mut sub, 3).await;
    for gap in at.windows(2).map(|w| w[1] - w[0]) {
        // 400 ms stored apart; the slack is for a loaded machine's delivery jitter.
        assert!(gap >= Duration::from_millis(300), "replayed {gap:?} apart");
    }

    // 1 MiB/s after a 1 MiB burst: three 600 KiB messages need ~0.76 s more than the burst
    // (without a limit they arrive within milliseconds).
    create(&js, "L", &["l"]).await;
    let body = "x".repeat(600 * 1024);
    for _ in 0..3 {
        publish(&js, "l", &body).await;
    }
    let deliver = client.new_inbox();
    let mut sub = client.subscribe(deliver.clone()).await.expect("subscribe");
    let config =
        json!({"durable_name": "C", "deliver_subject": deliver, "rate_limit_bps": 8 * 1024 * 1024});
    let created = create_consumer(&client, "L", config).await;
    assert_eq!(created["config"]["rate_limit_bps"], 8 * 1024 * 1024, "{created}");
    let at = arrivals(&mut sub, 3).await;
    let spread = at[2] - at[0];
    assert!(spread >= Duration::from_millis(600), "three rate-limited deliveries in {spread:?}");

    let pull_rate = json!({"durable_name": "P", "rate_limit_bps": 1000});
    assert_eq!(create_consumer(&client, "L", pull_rate).await["error"]["err_code"], 10086);
    let pull_hb = json!({"durable_name": "P", "idle_heartbeat": 1_000_000_000u64});
    assert_eq!(create_consumer(&client, "L", pull_hb).await["error"]["err_code"], 10088);
    let fast_hb =
        json!({"durable_name": "P", "deliver_subject": "d", "idle_heartbeat": 50_000_000});
    assert_eq!(create_consumer(&client, "L", fast_hb).await["error"]["err_code"], 10083);
}

#[tokio::test]
async fn message_ttl_expires_and_leaves_a_subject_delete_marker() {
    use serde_json::json;
    let dir = StoreDir::new("ttl");
    let server = start(&dir);
    let client = connect_raw(&server).await;
    let publish_ttl = |subject: &'static str, ttl: &'static str| {
        let client = client.clone();
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-TTL", ttl);
            let answer = timeout(WAIT, client.request_with_headers(subject, headers, "x".into()))
                .await
                .expect("publish timed out")
                .expect("publish");
            serde_json::from_slice::<serde_json::Value>(&answer.payload).expect("PubAck JSON")
        }
    };
    api(&client, "$JS.API.STREAM.CREATE.N", json!({"name": "N", "subjects": ["n.>"]})).await;
    let refused = publish_ttl("n.a", "2s").await;
    assert_eq!(refused["error"]["err_code"], 10166, "{refused}");
    let body =
        json!({"name": "T", "subjects": ["t.>"], "subject_delete_marker_ttl": 1_000_000_000u64});
    let created = api(&client, "$JS.API.STREAM.CREATE.T", body).await;
    assert_eq!(
        (&created["config"]["allow_msg_ttl"], &created["config"]["allow_rollup_hdrs"]),
        (&json!(true), &json!(true)),
        "{created}"
    );
    let too_short =
        json!({"name": "T2", "subjects": ["t2"], "subject_delete_marker_ttl": 500_000_000});
    assert_eq!(
        api(&client, "$JS.API.STREAM.CREATE.T2", too_short).await["error"]["err_code"],
        10052
    );
    assert_eq!(publish_ttl("t.a", "500ms").await["error"]["err_code"], 10165);
    let disable = json!({"name": "T", "subjects": ["t.>"], "allow_rollup_hdrs": true});
    let refused = api(&client, "$JS.API.STREAM.UPDATE.T", disable).await;
    assert_eq!(refused["error"]["err_code"], 10052, "TTLs cannot be turned off: {refused}");
    // Watch t.a for what comes after the message: the marker that replaces it.
    let deliver = client.new_inbox();
    let mut sub = client.subscribe(deliver.clone()).await.expect("subscribe");
    let config = json!({"name": "W", "deliver_subject": deliver, "filter_subject": "t.a",
        "deliver_policy": "new"});
    create_consumer(&client, "T", config).await;
    assert_eq!(publish_ttl("t.a", "1").await["seq"], 1);
    let ttl_msg = next_msg(&mut sub).await;
    assert_eq!(header_value(&ttl_msg, "Nats-TTL").as_deref(), Some("1"));
    let marker = next_msg(&mut sub).await;
    assert_eq!(header_value(&marker, "Nats-Marker-Reason").as_deref(), Some("MaxAge"));
    assert_eq!(header_value(&marker, "Nats-TTL").as_deref(), Some("1s"));
    assert_eq!(header_value(&marker, "Nats-Rollup").as_deref(), Some("sub"));
    assert!(marker.payload.is_empty());
    let gone = api(&client, "$JS.API.STREAM.MSG.GET.T", json!({"seq": 1})).await;
    assert_eq!(gone["error"]["err_code"], 10037, "the rollup removed the expired message");
}

#[tokio::test]
async fn headers_only_pull_and_the_max_bytes_409() {
    use serde_json::json;
    let dir = StoreDir::new("hdronly");
    let server = start(&dir);
    let client = connect_raw(&server).await;
    let js = jetstream::new(client.clone());
    create(&js, "H", &["h"]).await;
    publish(&js, "h", "twelve bytes").await;
    let config = json!({"durable_name": "C", "ack_policy": "explicit", "headers_only": true});
    create_consumer(&client, "H", config).await;
    let mut sub = pull_raw(&client, "H", "C", json!({"batch": 1})).await;
    let m = next_msg(&mut sub).await;
    assert_eq!(ack_seq(&m), 1);
    assert!(m.payload.is_empty());
    assert_eq!(header_value(&m, "Nats-Msg-Size").as_deref(), Some("12"));
    // A request whose byte budget cannot take the next message ends with a 409 saying what it
    // still wanted (the message stays for the next request).
    publish(&js, "h", "more").await;
    let mut small = pull_raw(&client, "H", "C", json!({"batch": 2, "max_bytes": 10})).await;
    let refused = next_msg(&mut small).await;
    assert_eq!(refused.status.map(u16::from), Some(409));
    assert_eq!(refused.description.as_deref(), Some("Message Size Exceeds MaxBytes"));
    assert_eq!(header_value(&refused, "Nats-Pending-Messages").as_deref(), Some("2"));
    assert_eq!(header_value(&refused, "Nats-Pending-Bytes").as_deref(), Some("10"));
    let mut next = pull_raw(&client, "H", "C", json!({"batch": 1})).await;
    assert_eq!(ack_seq(&next_msg(&mut next).await), 2);
}

#[tokio::test]
async fn pause_and_interest_retention_survive_kill_9() {
    use serde_json::json;
    let dir = StoreDir::new("pause-restart");
    let server = start(&dir);
    let client = connect_raw(&server).await;
    let js = jetstream::new(client.clone());
    let body = json!({"name": "I", "subjects": ["i.>"], "retention": "interest"});
    api(&client, "$JS.API.STREAM.CREATE.I", body).await;
    create_consumer(&client, "I", json!({"durable_name": "C", "ack_policy": "explicit"})).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let until = fjord_core::jetstream::api::rfc3339((now.as_secs() as i64 + 3600) * 1_000_000_000);
    let paused = api(&client, "$JS.API.CONSUMER.PAUSE.I.C", json!({"pause_until": until})).await;
    assert_eq!(paused["paused"], true, "{paused}");
    assert_eq!(publish(&js, "i.a", "kept").await.sequence, 1);
    drop(js);
    drop(client);
    drop(server);

    let server = start(&dir);
    let client = connect_raw(&server).await;
    let info = consumer_info(&client, "I", "C").await;
    assert_eq!(
        (&info["paused"], &info["config"]["pause_until"]),
        (&json!(true), &json!(until)),
        "{info}"
    );
    let mut empty = pull_raw(&client, "I", "C", json!({"batch": 1, "no_wait": true})).await;
    assert_eq!(next_msg(&mut empty).await.status.map(u16::from), Some(404), "still paused");
    if ServerBinary::target().name == "fjord" {
        // fjord synced the message before its PubAck (nats-server syncs lazily, so a SIGKILL
        // may take it back there).
        assert_eq!(stream_state(&client, "I").await["messages"], 1, "the consumer needs it");
        api(&client, "$JS.API.CONSUMER.PAUSE.I.C", serde_json::Value::Null).await;
        assert_eq!(drain_and_ack(&client, "I", "C").await, vec![1]);
        assert_eq!(stream_state(&client, "I").await["messages"], 0);
    }
}

#[tokio::test]
async fn pull_request_heartbeats_carry_the_last_sequences() {
    use serde_json::json;
    let dir = StoreDir::new("pullhb");
    let server = start(&dir);
    let client = connect_raw(&server).await;
    let js = jetstream::new(client.clone());
    create(&js, "P", &["p.>"]).await;
    publish(&js, "p.a", "x").await;
    // Messages the filter skips still move the stream pointer the heartbeat reports.
    publish(&js, "p.b", "y").await;
    publish(&js, "p.b", "z").await;
    let config = json!({"durable_name": "C", "ack_policy": "none", "filter_subject": "p.a"});
    create_consumer(&client, "P", config).await;
    let request = json!({"batch": 2, "expires": 5_000_000_000u64, "idle_heartbeat": 200_000_000});
    let mut sub = pull_raw(&client, "P", "C", request).await;
    assert_eq!(ack_seq(&next_msg(&mut sub).await), 1);
    let hb = next_msg(&mut sub).await;
    assert_eq!(hb.status.map(u16::from), Some(100));
    assert_eq!(hb.description.as_deref(), Some("Idle Heartbeat"));
    assert_eq!(header_value(&hb, "Nats-Last-Consumer").as_deref(), Some("1"));
    assert_eq!(header_value(&hb, "Nats-Last-Stream").as_deref(), Some("3"));
    let info = consumer_info(&client, "P", "C").await;
    assert_eq!(info["delivered"]["stream_seq"], 1, "delivered is still the last delivery: {info}");
}

#[tokio::test]
async fn push_consumer_delivers_as_soon_as_its_subscriber_arrives() {
    use serde_json::json;
    let dir = StoreDir::new("pushwake");
    let server = start(&dir);
    let client = connect_raw(&server).await;
    let js = jetstream::new(client.clone());
    create(&js, "W", &["w"]).await;
    publish(&js, "w", "x").await;
    // Created first, subscribed after, as clients do: delivery waits for the subscriber and
    // starts when it comes (woken by the SUB, well before the server's once-a-second tick;
    // three rounds, so a server that only noticed on its tick would be caught).
    for round in 0..3 {
        let deliver = client.new_inbox();
        let config = json!({"durable_name": format!("C{round}"), "deliver_subject": deliver});
        create_consumer(&client, "W", config).await;
        let subscribed_at = std::time::Instant::now();
        let mut sub = client.subscribe(deliver).await.expect("subscribe");
        let m = next_msg(&mut sub).await;
        assert_eq!(ack_seq(&m), 1);
        let waited = subscribed_at.elapsed();
        assert!(waited < Duration::from_millis(300), "round {round}: {waited:?} after the SUB");
    }
}

#[tokio::test]
async fn consumer_create_forms_names_and_stream_consumer_limits() {
    use serde_json::json;
    let dir = StoreDir::new("ccforms");
    let server = start(&dir);
    let client = connect_raw(&server).await;
    let body = json!({"name": "S", "subjects": ["s.>"],
        "consumer_limits": {"max_ack_pending": 10, "inactive_threshold": 2_000_000_000u64}});
    let created = api(&client, "$JS.API.STREAM.CREATE.S", body).await;
    assert_eq!(created["config"]["consumer_limits"]["max_ack_pending"], 10, "{created}");
    let create = |subject: &str, config: serde_json::Value| {
        let (client, subject) = (client.clone(), format!("$JS.API.CONSUMER.{subject}"));
        async move { api(&client, &subject, json!({"stream_name": "S", "config": config})).await }
    };
    let code = |v: &serde_json::Value| v["error"]["err_code"].clone();
    // The stream's consumer limits fill in what a consumer leaves unset, and cap max_ack_pending.
    let c = create("CREATE.S.C", json!({"durable_name": "C", "ack_policy": "explicit"})).await;
    assert_eq!(
        (&c["config"]["max_ack_pending"], &c["config"]["inactive_threshold"]),
        (&json!(10), &json!(2_000_000_000u64)),
        "{c}"
    );
    let over = json!({"durable_name": "D", "ack_policy": "explicit", "max_ack_pending": 20});
    let over = create("CREATE.S.D", over).await;
    assert_eq!(over["error"]["description"], "consumer max ack pending exceeds system limit of 10");
    assert_eq!(code(&over), 10121);
    // Subject forms.
    let renamed = create("CREATE.S.X", json!({"name": "Y", "ack_policy": "explicit"})).await;
    assert_eq!(renamed["name"], "X", "the subject's name wins: {renamed}");
    assert_eq!(code(&create("CREATE.S.E", json!({"durable_name": "F"})).await), 10017);
    assert_eq!(code(&create("CREATE.S", json!({"durable_name": "G"})).await), 10020);
    assert_eq!(code(&create("DURABLE.CREATE.S.H", json!({"ack_policy": "explicit"})).await), 10018);
    assert_eq!(code(&create("CREATE.S.I.s.x", json!({"filter_subject": "s.y"})).await), 10131);
    assert_eq!(code(&create("CREATE.S", json!({"name": "a*b"})).await), 10052);
    // The old ephemeral form refuses a durable name before comparing it with the name.
    assert_eq!(code(&create("CREATE.S", json!({"name": "a", "durable_name": "b"})).await), 10020);
}

fn start_with_key(dir: &StoreDir, key: &str) -> (TestServer, fjord_tests::ConfigFile) {
    let config = fjord_tests::ConfigFile::new(&format!(
        "jetstream {{ store_dir: \"{}\", key: \"{key}\" }}\n",
        dir.arg()
    ));
    let server = TestServer::start(&ServerBinary::target(), &["-c", config.arg()]);
    (server, config)
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read store dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn encrypted_store_reopens_with_its_key_and_refuses_another() {
    let dir = StoreDir::new("encrypted");
    let (server, _config) = start_with_key(&dir, "the-first-key");
    let js = connect_js(&server).await;
    create(&js, "SECRET", &["secret.>"]).await;
    for i in 0..50 {
        publish(&js, "secret.orders", &format!("confidential-payload-{i}")).await;
    }
    drop(js);
    drop(server); // SIGKILL

    if ServerBinary::target().name == "fjord" {
        // Nothing of the messages is readable at rest.
        for path in files_under(&dir.0) {
            let bytes = std::fs::read(&path).expect("read store file");
            for needle in [&b"confidential-payload"[..], b"secret.orders"] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} holds {:?} in the clear",
                    path.display(),
                    String::from_utf8_lossy(needle)
                );
            }
        }
    }

    // The same key: every acknowledged message comes back.
    let (server, _config) = start_with_key(&dir, "the-first-key");
    let js = connect_js(&server).await;
    let mut s = js.get_stream("SECRET").await.expect("stream recovered");
    let info = s.info().await.expect("info");
    assert_eq!((info.state.messages, info.state.last_sequence), (50, 50));
    for seq in [1, 25, 50] {
        let m = s.get_raw_message(seq).await.expect("message survives");
        assert_eq!(&m.payload[..], format!("confidential-payload-{}", seq - 1).as_bytes());
    }
    assert_eq!(publish(&js, "secret.orders", "after").await.sequence, 51);
    drop(js);
    drop(server);

    if ServerBinary::target().name != "fjord" {
        // nats-server starts and skips a stream it cannot decrypt; fjord refuses to start
        // (below), like on any stream it cannot recover.
        return;
    }
    // Another key: the server refuses the stream, saying why, instead of serving garbage or an
    // empty stream (which would hand acknowledged sequences out again).
    let config = fjord_tests::ConfigFile::new(&format!(
        "jetstream {{ store_dir: \"{}\", key: \"another-key\" }}\n",
        dir.arg()
    ));
    let binary = ServerBinary::target();
    let child = std::process::Command::new(&binary.path)
        .args(["-a", "127.0.0.1", "-p", "-1", "-c", config.arg()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start fjord");
    let pid = child.id();
    let output =
        match timeout(WAIT, tokio::task::spawn_blocking(move || child.wait_with_output())).await {
            Ok(done) => done.expect("join").expect("wait for fjord"),
            Err(_) => {
                let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
                panic!("fjord kept running with the wrong key");
            }
        };
    let (status, stderr) = (output.status, String::from_utf8_lossy(&output.stderr).into_owned());
    assert!(!status.success(), "fjord started with the wrong key:\n{stderr}");
    assert!(
        stderr.contains("stream SECRET: encryption key does not match"),
        "no clear reason in the log:\n{stderr}"
    );
    // And the refusal changed nothing: the right key still opens it all.
    let (server, _config) = start_with_key(&dir, "the-first-key");
    let js = connect_js(&server).await;
    let info = js.get_stream("SECRET").await.expect("stream").info().await.expect("info").clone();
    assert_eq!((info.state.messages, info.state.last_sequence), (51, 51));
}

/// A record damaged on disk while the server was down is found at recovery, said in the log
/// with its sequence, and never served; its neighbours are. (fjord's store format: the test
/// flips a byte inside one message's payload in the block file.)
#[tokio::test]
async fn a_damaged_record_is_logged_at_recovery_and_never_served() {
    if ServerBinary::target().name != "fjord" {
        return;
    }
    let dir = StoreDir::new("damaged");
    let server = start(&dir);
    let js = connect_js(&server).await;
    create(&js, "DMG", &["dmg.>"]).await;
    for i in 1..=10 {
        publish(&js, "dmg.x", &format!("payload-number-{i:02}")).await;
    }
    drop(js);
    drop(server); // SIGKILL
    let needle = b"payload-number-05";
    let mut hit = 0;
    for path in
        files_under(&dir.0).into_iter().filter(|p| p.extension().is_some_and(|e| e == "blk"))
    {
        let mut bytes = std::fs::read(&path).expect("read block");
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            bytes[at + 3] ^= 0x10;
            std::fs::write(&path, &bytes).expect("write block");
            hit += 1;
        }
    }
    assert_eq!(hit, 1, "the payload of seq 5 is in exactly one block file");

    let server = start(&dir);
    assert!(
        server.wait_for_stderr("damaged records found at recovery; sequences 5 ", WAIT),
        "no recovery report in the log:\n{}",
        server.stderr()
    );
    let js = connect_js(&server).await;
    let stream = js.get_stream("DMG").await.expect("stream recovered");
    assert!(stream.get_raw_message(5).await.is_err(), "the damaged message was served");
    for seq in [4, 6] {
        let m = stream.get_raw_message(seq).await.expect("a neighbour is served");
        assert_eq!(&m.payload[..], format!("payload-number-{seq:02}").as_bytes());
    }
}
