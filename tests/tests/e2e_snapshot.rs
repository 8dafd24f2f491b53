//! `$JS.API.STREAM.SNAPSHOT` / `STREAM.RESTORE` end to end, driven the way the nats CLI's
//! `nats stream backup` / `nats stream restore` drive them (async-nats has no snapshot API, so
//! the protocol is spoken with core requests and subscriptions): the chunk stream with its ack
//! subjects and window, the closing status message, the upload to the restore subject and its
//! final `stream_create_response`.
//!
//! Every test runs against fjord, or the reference nats-server with
//! `FJORD_TEST_TARGET=reference`: a backup restores on the server that made it (the archive
//! formats differ between the two, the protocol does not). The restart check runs on fjord only.

use async_nats::jetstream::{self, stream};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use fjord_tests::js_api::{api, connect, request, WAIT};
use fjord_tests::{ServerBinary, StoreDir, TestServer};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::time::timeout;

fn start(dir: &StoreDir) -> TestServer {
    TestServer::start(&ServerBinary::target(), &["-js", "-sd", dir.arg()])
}

fn is_reference() -> bool {
    std::env::var("FJORD_TEST_TARGET").as_deref() == Ok("reference")
}

/// A file stream `name` on `<name_lower>.>` with `n` messages of varied sizes (some with
/// headers), one of them deleted, and a durable consumer `C` that acked the first 10.
async fn populated_stream(client: &Client, name: &str, n: u64) -> Value {
    let js = jetstream::new(client.clone());
    let subject = name.to_lowercase();
    timeout(
        WAIT,
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![format!("{subject}.>")],
            ..Default::default()
        }),
    )
    .await
    .unwrap()
    .expect("create stream");
    for i in 0..n {
        // Incompressible payloads (xorshift), so the archive spans many 1 KiB chunks.
        let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let payload: Vec<u8> = (0..(200 + (i * 37) % 700))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut headers = HeaderMap::new();
        headers.insert("X-Index", i.to_string().as_str());
        let ack = if i % 3 == 0 {
            js.publish_with_headers(format!("{subject}.{}", i % 5), headers, payload.into()).await
        } else {
            js.publish(format!("{subject}.{}", i % 5), payload.into()).await
        };
        timeout(WAIT, ack.expect("publish")).await.unwrap().expect("puback");
    }
    let del = api(
        client,
        &format!("$JS.API.STREAM.MSG.DELETE.{name}"),
        &json!({"seq": 7, "no_erase": true}),
    )
    .await;
    assert_eq!(del["success"], true, "{del}");
    let c = api(
        client,
        &format!("$JS.API.CONSUMER.DURABLE.CREATE.{name}.C"),
        &json!({"stream_name": name, "config": {"durable_name": "C", "ack_policy": "all"}}),
    )
    .await;
    assert!(c.get("error").is_none(), "{c}");
    // With ack_policy all, acking the 10th delivery acks the first 10.
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(format!("$JS.API.CONSUMER.MSG.NEXT.{name}.C"), inbox, "10".into())
        .await
        .unwrap();
    let mut last = None;
    for _ in 0..10 {
        last = Some(timeout(WAIT, sub.next()).await.expect("delivery").expect("open"));
    }
    let last = last.expect("a delivery");
    let ack_subject = last.reply.expect("ack subject").to_string();
    request(client, &ack_subject, "+ACK").await;
    api(client, &format!("$JS.API.STREAM.INFO.{name}"), &json!({})).await
}

/// What a backup brought back.
struct Backup {
    answer: Value,
    data: Vec<u8>,
    /// Reply subjects of the data chunks, in order (None for a chunk without one).
    replies: Vec<Option<String>>,
    /// The closing message's status and description (None: no headers at all).
    end: Option<(u16, String)>,
}

async fn backup(client: &Client, stream: &str, req: Value) -> Backup {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    let mut req = req;
    req["deliver_subject"] = json!(inbox);
    let answer = api(client, &format!("$JS.API.STREAM.SNAPSHOT.{stream}"), &req).await;
    assert_eq!(answer["type"], "io.nats.jetstream.api.v1.stream_snapshot_response", "{answer}");
    assert!(answer.get("error").is_none(), "{answer}");
    receive(client, &mut sub, answer).await
}

/// Takes chunks (acking each that asks) until the closing empty message.
async fn receive(client: &Client, sub: &mut async_nats::Subscriber, answer: Value) -> Backup {
    let (mut data, mut replies) = (Vec::new(), Vec::new());
    loop {
        let m = timeout(WAIT, sub.next()).await.expect("chunk timed out").expect("sub open");
        if m.payload.is_empty() {
            let end = m.status.map(|s| (s.as_u16(), m.description.clone().unwrap_or_default()));
            return Backup { answer, data, replies, end };
        }
        data.extend_from_slice(&m.payload);
        replies.push(m.reply.as_ref().map(|r| r.to_string()));
        if let Some(reply) = m.reply {
            client.publish(reply, Bytes::new()).await.unwrap();
        }
    }
}

/// Uploads `data` in chunks of `chunk` bytes as `nats stream restore` does; the final answer.
async fn restore(client: &Client, stream: &str, meta: &Value, data: &[u8], chunk: usize) -> Value {
    let answer = api(client, &format!("$JS.API.STREAM.RESTORE.{stream}"), meta).await;
    assert_eq!(answer["type"], "io.nats.jetstream.api.v1.stream_restore_response", "{answer}");
    let to = answer["deliver_subject"].as_str().unwrap_or_else(|| panic!("{answer}")).to_string();
    assert!(to.starts_with(&format!("$JS.SNAPSHOT.RESTORE.{stream}.")), "{to}");
    for part in data.chunks(chunk) {
        let ack = request(client, &to, Bytes::copy_from_slice(part)).await;
        assert!(ack.payload.is_empty(), "chunk answer: {:?}", ack.payload);
    }
    let end = request(client, &to, Bytes::new()).await;
    serde_json::from_slice(&end.payload).expect("final answer is JSON")
}

/// The next advisory `$JS.EVENT.ADVISORY.STREAM.<kind>.<stream>` (others are skipped).
async fn advisory(sub: &mut async_nats::Subscriber, kind: &str) -> Value {
    loop {
        let m = timeout(WAIT, sub.next()).await.unwrap_or_else(|_| panic!("no {kind}")).unwrap();
        if m.subject.split('.').nth(4) == Some(kind) {
            return serde_json::from_slice(&m.payload).unwrap();
        }
    }
}

fn backup_meta(b: &Backup) -> Value {
    json!({"config": b.answer["config"], "state": b.answer["state"]})
}

fn strip_times(state: &Value) -> Value {
    let mut s = state.clone();
    if let Value::Object(m) = &mut s {
        for k in ["first_ts", "last_ts", "consumer_count"] {
            m.remove(k);
        }
    }
    s
}

#[tokio::test]
async fn backup_then_restore_brings_back_messages_consumers_and_state() {
    let dir = StoreDir::new("roundtrip");
    let mut server = start(&dir);
    let client = connect(&server).await;
    let before = populated_stream(&client, "ORDERS", 120).await;
    assert_eq!(before["state"]["messages"], 119, "{before}");

    let mut advisories = client.subscribe("$JS.EVENT.ADVISORY.STREAM.*.ORDERS").await.unwrap();
    client.flush().await.unwrap();
    let b = backup(&client, "ORDERS", json!({"chunk_size": 1024, "window_size": 4096})).await;
    let created = advisory(&mut advisories, "SNAPSHOT_CREATE").await;
    assert_eq!(created["type"], "io.nats.jetstream.advisory.v1.snapshot_create");
    assert_eq!(created["state"]["messages"], 119, "{created}");
    let complete = advisory(&mut advisories, "SNAPSHOT_COMPLETE").await;
    assert_eq!(complete["type"], "io.nats.jetstream.advisory.v1.snapshot_complete");
    assert!(complete.get("error").is_none(), "{complete}");
    assert_eq!(b.answer["config"]["name"], "ORDERS");
    assert_eq!(b.answer["state"]["messages"], 119);
    assert!(b.replies.len() > 8, "{} chunks", b.replies.len());
    let (last, full) = b.replies.split_last().unwrap();
    for (i, r) in full.iter().enumerate() {
        let r = r.as_deref().expect("a full chunk asks for an ack");
        let prefix = "$JS.SNAPSHOT.ACK.ORDERS.";
        assert!(r.starts_with(prefix), "{r}");
        // <id>.<len>.<index>
        let tail: Vec<&str> = r[prefix.len()..].split('.').collect();
        assert_eq!(tail[1..], [&*1024.to_string(), &*(i + 1).to_string()], "{r}");
    }
    if b.data.len() % 1024 != 0 {
        assert!(last.is_none(), "the short last chunk has no reply");
    }
    assert_eq!(b.end, Some((204, String::new())), "closing status");

    let deleted = api(&client, "$JS.API.STREAM.DELETE.ORDERS", &json!({})).await;
    assert_eq!(deleted["success"], true);
    let restored = restore(&client, "ORDERS", &backup_meta(&b), &b.data, 4000).await;
    let started = advisory(&mut advisories, "RESTORE_CREATE").await;
    assert_eq!(started["type"], "io.nats.jetstream.advisory.v1.restore_create");
    let created = advisory(&mut advisories, "CREATED").await;
    assert_eq!(created["action"], "create", "a restore advises a created stream: {created}");
    let complete = advisory(&mut advisories, "RESTORE_COMPLETE").await;
    assert_eq!(complete["type"], "io.nats.jetstream.advisory.v1.restore_complete");
    assert_eq!(complete["bytes"], b.data.len(), "{complete}");
    assert_eq!(restored["type"], "io.nats.jetstream.api.v1.stream_create_response", "{restored}");
    assert!(restored.get("error").is_none(), "{restored}");
    assert_eq!(strip_times(&restored["state"]), strip_times(&before["state"]));
    assert_eq!(restored["config"]["subjects"], json!(["orders.>"]));

    let check = |client: Client| {
        let before = before.clone();
        async move {
            let info = api(&client, "$JS.API.STREAM.INFO.ORDERS", &json!({})).await;
            assert_eq!(strip_times(&info["state"]), strip_times(&before["state"]), "{info}");
            assert_eq!(info["state"]["consumer_count"], 1, "{info}");
            let got = api(&client, "$JS.API.STREAM.MSG.GET.ORDERS", &json!({"seq": 4})).await
                ["message"]
                .clone();
            assert_eq!(got["subject"], "orders.3");
            let gone = api(&client, "$JS.API.STREAM.MSG.GET.ORDERS", &json!({"seq": 7})).await;
            assert_eq!(gone["error"]["err_code"], 10037, "{gone}");
            let c = api(&client, "$JS.API.CONSUMER.INFO.ORDERS.C", &json!({})).await;
            // Ten deliveries are sequences 1..=11 without the deleted 7.
            assert_eq!(c["ack_floor"]["stream_seq"], 11, "{c}");
            assert_eq!(c["num_pending"], 120 - 11, "{c}");
        }
    };
    check(client).await;
    if !is_reference() {
        // The restore was answered only once durable: a kill -9 right after loses nothing.
        drop(server);
        server = start(&dir);
        check(connect(&server).await).await;
    }
}

#[tokio::test]
async fn no_consumers_leaves_consumers_out() {
    let dir = StoreDir::new("nocons");
    let server = start(&dir);
    let client = connect(&server).await;
    populated_stream(&client, "NC", 12).await;
    let b = backup(&client, "NC", json!({"no_consumers": true})).await;
    api(&client, "$JS.API.STREAM.DELETE.NC", &json!({})).await;
    let restored = restore(&client, "NC", &backup_meta(&b), &b.data, 64 * 1024).await;
    assert!(restored.get("error").is_none(), "{restored}");
    let c = api(&client, "$JS.API.CONSUMER.INFO.NC.C", &json!({})).await;
    assert_eq!(c["error"]["err_code"], 10014, "{c}");
    let info = api(&client, "$JS.API.STREAM.INFO.NC", &json!({})).await;
    assert_eq!(info["state"]["messages"], 11, "{info}");
}

#[tokio::test]
async fn a_snapshot_smaller_than_a_chunk_ends_without_a_status() {
    // nats-server only sets the 204 status once a full chunk went out.
    let dir = StoreDir::new("small");
    let server = start(&dir);
    let client = connect(&server).await;
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config { name: "TINY".into(), ..Default::default() }).await.unwrap();
    let b = backup(&client, "TINY", json!({})).await;
    assert_eq!(b.replies, vec![None], "one short chunk, without a reply");
    assert_eq!(b.end, None);
}

#[tokio::test]
async fn the_window_holds_chunks_until_acked_then_no_flow_response_ends_it() {
    let dir = StoreDir::new("window");
    let server = start(&dir);
    let client = connect(&server).await;
    populated_stream(&client, "WIN", 40).await;
    let mut advisories = client.subscribe("$JS.EVENT.ADVISORY.STREAM.*.WIN").await.unwrap();
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    let req = json!({"deliver_subject": inbox, "chunk_size": 1024, "window_size": 2048});
    let answer = api(&client, "$JS.API.STREAM.SNAPSHOT.WIN", &req).await;
    assert!(answer.get("error").is_none(), "{answer}");
    // Two chunks fit the window; nothing more comes until one is acked.
    let first = timeout(WAIT, sub.next()).await.unwrap().unwrap();
    let second = timeout(WAIT, sub.next()).await.unwrap().unwrap();
    assert_eq!((first.payload.len(), second.payload.len()), (1024, 1024));
    client.publish(first.reply.unwrap(), Bytes::new()).await.unwrap();
    let third = timeout(WAIT, sub.next()).await.unwrap().unwrap();
    assert_eq!(third.payload.len(), 1024);
    assert!(third.reply.unwrap().ends_with(".1024.3"));
    // No further acks: after the ack timeout (5 s) the sender gives up with a 408.
    let end = timeout(WAIT, sub.next()).await.unwrap().unwrap();
    assert!(end.payload.is_empty(), "no chunk beyond the window, got {} bytes", end.payload.len());
    assert_eq!(end.status.map(|s| s.as_u16()), Some(408));
    assert_eq!(end.description.as_deref(), Some("No Flow Response"));
    let complete = advisory(&mut advisories, "SNAPSHOT_COMPLETE").await;
    assert_eq!(complete["error"], "no flow response", "{complete}");
}

#[tokio::test]
async fn api_errors_match_nats_server() {
    let dir = StoreDir::new("errors");
    let server = start(&dir);
    let client = connect(&server).await;
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "E".into(),
        subjects: vec!["e.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let err = |v: Value| {
        (v["type"].clone(), v["error"]["err_code"].clone(), v["error"]["description"].clone())
    };
    let snap = "io.nats.jetstream.api.v1.stream_snapshot_response";
    let rest = "io.nats.jetstream.api.v1.stream_restore_response";
    let raw = |subject: &'static str, body: &'static str| {
        let client = client.clone();
        async move {
            let m = request(&client, subject, body).await;
            serde_json::from_slice::<Value>(&m.payload).unwrap()
        }
    };
    assert_eq!(
        err(raw("$JS.API.STREAM.SNAPSHOT.E", "").await),
        (json!(snap), json!(10003), json!("bad request"))
    );
    assert_eq!(
        err(raw("$JS.API.STREAM.SNAPSHOT.NOPE", r#"{"deliver_subject":"x"}"#).await),
        (json!(snap), json!(10059), json!("stream not found"))
    );
    assert_eq!(err(raw("$JS.API.STREAM.SNAPSHOT.E", "{nope").await).1, json!(10025));
    // `{}` counts as an empty request in nats-server.
    assert_eq!(err(raw("$JS.API.STREAM.SNAPSHOT.E", "{}").await).1, json!(10003));
    for bad in
        [r#"{"deliver_subject":"a.*"}"#, r#"{"deliver_subject":""}"#, r#"{"no_consumers":true}"#]
    {
        let m = request(&client, "$JS.API.STREAM.SNAPSHOT.E", bad).await;
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(
            err(v),
            (json!(snap), json!(10015), json!("deliver subject not valid")),
            "{bad}"
        );
    }
    assert_eq!(
        err(raw("$JS.API.STREAM.RESTORE.E", "").await),
        (json!(rest), json!(10003), json!("bad request"))
    );
    assert_eq!(err(raw("$JS.API.STREAM.RESTORE.E", "{nope").await).1, json!(10025));
    assert_eq!(
        err(raw("$JS.API.STREAM.RESTORE.E", r#"{"config":{"name":"OTHER"}}"#).await),
        (json!(rest), json!(10056), json!("stream name in subject does not match request"))
    );
    assert_eq!(
        err(raw("$JS.API.STREAM.RESTORE.E", r#"{"config":{"name":"E","subjects":["e.>"]}}"#).await),
        (json!(rest), json!(10130), json!("stream name already in use, cannot restore"))
    );
}

#[tokio::test]
async fn a_damaged_or_truncated_upload_is_refused_and_creates_nothing() {
    let dir = StoreDir::new("damaged");
    let server = start(&dir);
    let client = connect(&server).await;
    populated_stream(&client, "DMG", 60).await;
    let b = backup(&client, "DMG", json!({})).await;
    api(&client, "$JS.API.STREAM.DELETE.DMG", &json!({})).await;
    let mut flipped = b.data.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    let truncated = &b.data[..b.data.len() * 2 / 3];
    for (what, data) in [
        ("flipped", &flipped[..]),
        ("truncated", truncated),
        ("garbage", &b"not a snapshot at all"[..]),
    ] {
        let end = restore(&client, "DMG", &backup_meta(&b), data, 8192).await;
        assert_eq!(end["type"], "io.nats.jetstream.api.v1.stream_create_response", "{what}: {end}");
        assert_eq!(end["error"]["err_code"], 10062, "{what}: {end}");
        assert_eq!(end["error"]["code"], 500, "{what}: {end}");
        let desc = end["error"]["description"].as_str().unwrap_or_default();
        assert!(desc.starts_with("restore failed: "), "{what}: {desc}");
        let info = api(&client, "$JS.API.STREAM.INFO.DMG", &json!({})).await;
        assert_eq!(info["error"]["err_code"], 10059, "{what}: the stream must not exist: {info}");
    }
    // The intact archive still restores afterwards: the failures left nothing behind.
    let end = restore(&client, "DMG", &backup_meta(&b), &b.data, 8192).await;
    assert!(end.get("error").is_none(), "{end}");
    assert_eq!(end["state"]["messages"], 59, "{end}");
}

#[tokio::test]
async fn chunks_wait_for_the_receiver_to_subscribe() {
    // The client may subscribe to the deliver subject only after the answer: nats-server waits
    // (up to 2 s) for interest before the first chunk, so nothing is sent into the void.
    let dir = StoreDir::new("late-sub");
    let server = start(&dir);
    let client = connect(&server).await;
    populated_stream(&client, "LATE", 30).await;
    let inbox = client.new_inbox();
    let req = json!({"deliver_subject": inbox, "chunk_size": 1024});
    let answer = api(&client, "$JS.API.STREAM.SNAPSHOT.LATE", &req).await;
    assert!(answer.get("error").is_none(), "{answer}");
    let mut sub = client.subscribe(inbox).await.unwrap();
    let b = receive(&client, &mut sub, answer).await;
    assert_eq!(b.end, Some((204, String::new())));
    // Whole: it restores.
    api(&client, "$JS.API.STREAM.DELETE.LATE", &json!({})).await;
    let end = restore(&client, "LATE", &backup_meta(&b), &b.data, 16 * 1024).await;
    assert!(end.get("error").is_none(), "{end}");
    assert_eq!(end["state"]["messages"], 29, "{end}");
}

#[tokio::test]
async fn a_backup_restores_on_another_server_and_survives_its_restart() {
    let (dir_a, dir_b) = (StoreDir::new("from"), StoreDir::new("to"));
    let a = start(&dir_a);
    let client_a = connect(&a).await;
    let before = populated_stream(&client_a, "MOVE", 50).await;
    let b = backup(&client_a, "MOVE", json!({"chunk_size": 4096})).await;
    drop(client_a);
    drop(a);

    let mut server = start(&dir_b);
    let client = connect(&server).await;
    let end = restore(&client, "MOVE", &backup_meta(&b), &b.data, 10_000).await;
    assert!(end.get("error").is_none(), "{end}");
    assert_eq!(strip_times(&end["state"]), strip_times(&before["state"]));
    if !is_reference() {
        drop(client);
        drop(server);
        server = start(&dir_b);
    }
    let client = connect(&server).await;
    let info = api(&client, "$JS.API.STREAM.INFO.MOVE", &json!({})).await;
    assert_eq!(strip_times(&info["state"]), strip_times(&before["state"]), "{info}");
    let c = api(&client, "$JS.API.CONSUMER.INFO.MOVE.C", &json!({})).await;
    assert_eq!(c["ack_floor"]["stream_seq"], 11, "{c}");
    let got = api(&client, "$JS.API.STREAM.MSG.GET.MOVE", &json!({"seq": 50})).await;
    assert_eq!(got["message"]["subject"], "move.4", "{got}");
}
