//! RePublish end to end: a stream with `republish {src, dest, headers_only}` publishes each
//! stored message again on the mapped subject with nats-server's headers, and refuses the
//! configurations nats-server refuses. Runs against fjord, or nats-server 2.15.1 with
//! `FJORD_TEST_TARGET=reference`: the same assertions hold for both.

use async_nats::jetstream;
use async_nats::{HeaderMap, Message, Subscriber};
use bytes::Bytes;
use fjord_tests::js_api::{api, connect, WAIT};
use fjord_tests::{ServerBinary, StoreDir, TestServer};
use futures::StreamExt;
use serde_json::json;
use tokio::time::timeout;

fn start(dir: &StoreDir) -> TestServer {
    TestServer::start(&ServerBinary::target(), &["-js", "-sd", dir.arg()])
}

async fn next(sub: &mut Subscriber) -> Message {
    timeout(WAIT, sub.next()).await.expect("republished message timed out").expect("sub open")
}

/// A header by its exact name (async-nats' `get` with a `&str` misses its standard names).
fn find<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
    let (_, values) = m.headers.as_ref()?.iter().find(|(k, _)| AsRef::<str>::as_ref(*k) == name)?;
    values.first().map(|v| v.as_str())
}

fn header<'a>(m: &'a Message, name: &str) -> &'a str {
    find(m, name).unwrap_or_else(|| panic!("no {name} header on {} ({:?})", m.subject, m.headers))
}

async fn publish(js: &jetstream::Context, subject: &str, headers: Option<HeaderMap>, body: &str) {
    let body = Bytes::from(body.to_string());
    let ack = match headers {
        Some(h) => js.publish_with_headers(subject.to_string(), h, body).await,
        None => js.publish(subject.to_string(), body).await,
    };
    timeout(WAIT, ack.expect("publish")).await.expect("puback timed out").expect("puback");
}

#[tokio::test]
async fn stored_messages_are_republished_with_nats_servers_headers() {
    let dir = StoreDir::new("repub");
    let server = start(&dir);
    let client = connect(&server).await;
    let created = api(
        &client,
        "$JS.API.STREAM.CREATE.RP",
        &json!({"name": "RP", "subjects": ["orders.>"],
                "republish": {"src": "orders.*", "dest": "repub.{{wildcard(1)}}"}}),
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");
    assert_eq!(
        created["config"]["republish"],
        json!({"src": "orders.*", "dest": "repub.{{wildcard(1)}}"})
    );
    let mut sub = client.subscribe("repub.>").await.unwrap();
    client.flush().await.unwrap();
    let js = jetstream::new(client.clone());
    let mut with_header = HeaderMap::new();
    with_header.insert("X-Test", "1");
    publish(&js, "orders.a", None, "one").await;
    publish(&js, "orders.b", Some(with_header), "two").await;
    publish(&js, "orders.a", None, "three").await;
    // Not under the source `orders.*`: stored, not republished.
    publish(&js, "orders.a.deep", None, "nope").await;
    publish(&js, "orders.z", None, "four").await;

    let expect = [
        ("repub.a", "orders.a", "1", "0", "one"),
        ("repub.b", "orders.b", "2", "0", "two"),
        ("repub.a", "orders.a", "3", "1", "three"),
        ("repub.z", "orders.z", "5", "0", "four"),
    ];
    for (to, subject, seq, last, body) in expect {
        let m = next(&mut sub).await;
        assert_eq!(m.subject.as_str(), to);
        assert_eq!(header(&m, "Nats-Stream"), "RP");
        assert_eq!(header(&m, "Nats-Subject"), subject);
        assert_eq!(header(&m, "Nats-Sequence"), seq);
        assert_eq!(header(&m, "Nats-Last-Sequence"), last, "{to} seq {seq}");
        let ts = header(&m, "Nats-Time-Stamp");
        assert!(ts.len() >= 20 && ts.ends_with('Z') && ts.contains('T'), "{ts}");
        assert_eq!(m.payload, body.as_bytes());
        assert_eq!(find(&m, "Nats-Msg-Size"), None);
        if to == "repub.b" {
            assert_eq!(header(&m, "X-Test"), "1", "the client's headers are kept");
        }
    }
}

#[tokio::test]
async fn headers_only_sends_the_size_instead_of_the_payload() {
    let dir = StoreDir::new("repub-ho");
    let server = start(&dir);
    let client = connect(&server).await;
    let created = api(
        &client,
        "$JS.API.STREAM.CREATE.HO",
        &json!({"name": "HO", "subjects": ["h.>"],
                "republish": {"dest": "ho.>", "headers_only": true}}),
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");
    // An empty source is `>`.
    assert_eq!(
        created["config"]["republish"],
        json!({"src": ">", "dest": "ho.>", "headers_only": true})
    );
    let mut sub = client.subscribe("ho.>").await.unwrap();
    client.flush().await.unwrap();
    let js = jetstream::new(client.clone());
    publish(&js, "h.x.y", None, "hello").await;
    let m = next(&mut sub).await;
    assert_eq!(m.subject.as_str(), "ho.h.x.y");
    assert!(m.payload.is_empty());
    assert_eq!(header(&m, "Nats-Msg-Size"), "5");
    assert_eq!(header(&m, "Nats-Subject"), "h.x.y");
}

#[tokio::test]
async fn invalid_republish_configs_are_refused_as_nats_server_refuses_them() {
    let dir = StoreDir::new("repub-err");
    let server = start(&dir);
    let client = connect(&server).await;
    let cases = [
        (json!({"src": ">", "dest": "c.x"}), "stream configuration for republish destination forms a cycle"),
        (json!({"dest": ">"}), "stream configuration for republish destination forms a cycle"),
        (
            json!({"src": "c.*", "dest": "d.*"}),
            "stream configuration for republish with transform from 'c.*' to 'd.*' not valid",
        ),
        (
            json!({"src": "c.*", "dest": "d.{{wildcard(2)}}"}),
            "stream configuration for republish with transform from 'c.*' to 'd.{{wildcard(2)}}' not valid",
        ),
        (
            json!({"src": "c.>", "dest": "d"}),
            "stream configuration for republish with transform from 'c.>' to 'd' not valid",
        ),
    ];
    for (rp, description) in cases {
        let body = json!({"name": "C", "subjects": ["c.>"], "republish": rp});
        let v = api(&client, "$JS.API.STREAM.CREATE.C", &body).await;
        assert_eq!(v["error"]["err_code"], 10052, "{rp}: {v}");
        assert_eq!(v["error"]["description"], description, "{rp}: {v}");
    }
    // The same check on update.
    let ok =
        api(&client, "$JS.API.STREAM.CREATE.C", &json!({"name": "C", "subjects": ["c.>"]})).await;
    assert!(ok.get("error").is_none(), "{ok}");
    let v = api(
        &client,
        "$JS.API.STREAM.UPDATE.C",
        &json!({"name": "C", "subjects": ["c.>"], "republish": {"dest": "c.loop"}}),
    )
    .await;
    assert_eq!(v["error"]["err_code"], 10052, "{v}");
}

#[tokio::test]
async fn the_stored_subject_after_the_streams_transform_is_what_is_republished() {
    let dir = StoreDir::new("repub-tr");
    let server = start(&dir);
    let client = connect(&server).await;
    let created = api(
        &client,
        "$JS.API.STREAM.CREATE.TR",
        &json!({"name": "TR", "subjects": ["in.>"],
                "subject_transform": {"src": "in.>", "dest": "stored.>"},
                "republish": {"src": "stored.*", "dest": "rp.{{wildcard(1)}}"}}),
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");
    let mut sub = client.subscribe("rp.>").await.unwrap();
    client.flush().await.unwrap();
    let js = jetstream::new(client.clone());
    publish(&js, "in.a", None, "one").await;
    publish(&js, "in.a", None, "two").await;
    for (seq, last) in [("1", "0"), ("2", "1")] {
        let m = next(&mut sub).await;
        assert_eq!(m.subject.as_str(), "rp.a");
        assert_eq!(header(&m, "Nats-Subject"), "stored.a");
        assert_eq!(header(&m, "Nats-Sequence"), seq);
        assert_eq!(header(&m, "Nats-Last-Sequence"), last);
    }
}
