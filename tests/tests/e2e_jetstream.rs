//! End-to-end tests of JetStream with async-nats against `fjord -js -sd <dir>` (or the reference
//! nats-server with `FJORD_TEST_TARGET=reference`): streams, PubAcks, dedup, expected-sequence
//! errors, pull consumers with acks and redelivery, and recovery after `kill -9`.
//!
//! No sleeps: every wait is an awaited reply or a pull request's `expires`, bounded by a timeout.
//! `TestServer`'s drop is SIGKILL, so every restart here is a crash.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, context::Publish, stream};
use fjord_tests::{ServerBinary, TestServer};
use futures::StreamExt;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(15);

/// A fresh store directory, removed on drop.
struct StoreDir(PathBuf);

impl StoreDir {
    fn new(tag: &str) -> StoreDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fjord-js-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create store dir");
        StoreDir(dir)
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for StoreDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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
