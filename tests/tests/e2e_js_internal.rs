//! What JetStream publishes itself reaches JetStream's own streams, as in nats-server: an
//! advisory captured by a stream on `$JS.EVENT.ADVISORY.>` is stored, and so is a RePublish
//! landing on another stream's subjects. Runs against fjord, or nats-server 2.15.1 with
//! `FJORD_TEST_TARGET=reference`: the same assertions hold for both.

use async_nats::{Client, Message};
use fjord_tests::js_api::{api, connect, request, WAIT};
use fjord_tests::{ServerBinary, StoreDir, TestServer};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::time::timeout;

fn start(dir: &StoreDir) -> TestServer {
    TestServer::start(&ServerBinary::target(), &["-js", "-sd", dir.arg()])
}

async fn create(client: &Client, config: Value) {
    let name = config["name"].as_str().expect("stream name").to_string();
    let created = api(client, &format!("$JS.API.STREAM.CREATE.{name}"), &config).await;
    assert!(created.get("error").is_none(), "{created}");
}

/// The stream's first `n` stored messages, awaited through a pull request (which the server
/// holds until they are there), from an ack-none consumer created here.
async fn stored(client: &Client, stream: &str, n: usize) -> Vec<Message> {
    let consumer = api(
        client,
        &format!("$JS.API.CONSUMER.CREATE.{stream}"),
        &json!({"stream_name": stream, "config": {"ack_policy": "none"}}),
    )
    .await;
    assert!(consumer.get("error").is_none(), "{consumer}");
    let name = consumer["name"].as_str().expect("consumer name");
    let body = json!({"batch": n, "expires": 5_000_000_000u64}).to_string();
    // A request of its own inbox (async-nats' `request` does not take pull answers).
    let inbox = client.new_inbox();
    let mut answers = client.subscribe(inbox.clone()).await.expect("subscribe");
    let next = format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}");
    client.publish_with_reply(next, inbox, body.into()).await.expect("pull");
    let mut got = Vec::new();
    while got.len() < n {
        let m = timeout(WAIT, answers.next()).await.expect("pull answer timed out").expect("open");
        if m.status.is_some() {
            let info = api(client, &format!("$JS.API.STREAM.INFO.{stream}"), &json!({})).await;
            panic!(
                "{} of {n} stored in {stream}: {:?} {:?}; {info}",
                got.len(),
                m.status,
                m.headers
            );
        }
        got.push(m);
    }
    got
}

fn header<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
    let (_, values) = m.headers.as_ref()?.iter().find(|(k, _)| AsRef::<str>::as_ref(*k) == name)?;
    values.first().map(|v| v.as_str())
}

#[tokio::test]
async fn a_stream_on_the_advisory_subjects_stores_the_stream_created_advisory() {
    let dir = StoreDir::new("advstore");
    let server = start(&dir);
    let client = connect(&server).await;
    create(&client, json!({"name": "ADV", "subjects": ["$JS.EVENT.ADVISORY.STREAM.CREATED.>"]}))
        .await;
    create(&client, json!({"name": "C", "subjects": ["c.>"]})).await;

    // The stream's own creation comes first: its subjects are routed before the advisory.
    let got = stored(&client, "ADV", 2).await;
    for (m, stream) in got.iter().zip(["ADV", "C"]) {
        assert_eq!(m.subject.as_str(), format!("$JS.EVENT.ADVISORY.STREAM.CREATED.{stream}"));
        let advisory: Value = serde_json::from_slice(&m.payload).expect("advisory is JSON");
        assert_eq!(advisory["type"], "io.nats.jetstream.advisory.v1.stream_action");
        assert_eq!(advisory["stream"], stream);
        assert_eq!(advisory["action"], "create");
    }
    let info = api(&client, "$JS.API.STREAM.INFO.ADV", &json!({})).await;
    assert_eq!(info["state"]["messages"], 2, "{info}");
}

#[tokio::test]
async fn a_republished_message_is_stored_by_the_stream_on_its_destination() {
    let dir = StoreDir::new("repubstore");
    let server = start(&dir);
    let client = connect(&server).await;
    create(
        &client,
        json!({"name": "A", "subjects": ["orders.>"],
               "republish": {"src": "orders.>", "dest": "copies.>"}}),
    )
    .await;
    create(&client, json!({"name": "B", "subjects": ["copies.>"]})).await;

    let ack = request(&client, "orders.eu", "first").await;
    let ack: Value = serde_json::from_slice(&ack.payload).expect("PubAck is JSON");
    assert_eq!(ack, json!({"stream": "A", "seq": 1}));

    let got = stored(&client, "B", 1).await;
    let m = &got[0];
    assert_eq!(m.subject.as_str(), "copies.eu");
    assert_eq!(&m.payload[..], b"first");
    // The RePublish headers are stored with it.
    assert_eq!(header(m, "Nats-Stream"), Some("A"));
    assert_eq!(header(m, "Nats-Subject"), Some("orders.eu"));
    assert_eq!(header(m, "Nats-Sequence"), Some("1"));
    let info = api(&client, "$JS.API.STREAM.INFO.B", &json!({})).await;
    assert_eq!(info["state"]["messages"], 1, "{info}");
    assert_eq!(info["state"]["last_seq"], 1, "{info}");
}

/// Two streams republishing into each other's subjects feed each other forever in nats-server
/// (it refuses a RePublish only onto the stream's own subjects); fjord cuts the chain after a
/// bounded number of rounds with a warning and keeps serving. fjord only: on nats-server this
/// test would never settle.
#[tokio::test]
async fn a_republish_loop_between_two_streams_is_cut_and_the_server_keeps_serving() {
    let dir = StoreDir::new("jsloop");
    let server = TestServer::start(&ServerBinary::fjord(), &["-js", "-sd", dir.arg()]);
    let client = connect(&server).await;
    let a = json!({"name": "A", "subjects": ["a.>"], "republish": {"src": "a.>", "dest": "b.>"}});
    create(&client, a).await;
    let b = json!({"name": "B", "subjects": ["b.>"], "republish": {"src": "b.>", "dest": "a.>"}});
    create(&client, b).await;
    let ack = request(&client, "a.start", "ping").await;
    let ack: Value = serde_json::from_slice(&ack.payload).expect("PubAck is JSON");
    assert_eq!(ack, json!({"stream": "A", "seq": 1}));
    assert!(
        server.wait_for_stderr("internal messages dropped", WAIT),
        "no loop warning: {}",
        server.stderr()
    );
    let count = |info: &Value| info["state"]["messages"].as_u64().expect("messages");
    let a = api(&client, "$JS.API.STREAM.INFO.A", &json!({})).await;
    let b = api(&client, "$JS.API.STREAM.INFO.B", &json!({})).await;
    // 16 rounds after the first: the message went back and forth 8 times each way.
    assert_eq!((count(&a), count(&b)), (9, 8), "{a} {b}");
}

/// A push consumer's deliveries (once a client subscribes: a stream alone does not make the
/// consumer active) are stored by the stream on the deliver subject under the subject they
/// carry, the stored one, as nats-server stores them.
#[tokio::test]
async fn a_stream_on_a_push_consumers_deliver_subject_stores_its_deliveries() {
    let dir = StoreDir::new("jsdeliver");
    let server = start(&dir);
    let client = connect(&server).await;
    create(&client, json!({"name": "A", "subjects": ["a.>"]})).await;
    create(&client, json!({"name": "B", "subjects": ["b.>"]})).await;
    let mut deliveries = client.subscribe("b.copy").await.expect("subscribe");
    let config = json!({"deliver_subject": "b.copy", "ack_policy": "none"});
    let body = json!({"stream_name": "A", "config": config});
    let c = api(&client, "$JS.API.CONSUMER.CREATE.A", &body).await;
    assert!(c.get("error").is_none(), "{c}");
    let ack = request(&client, "a.one", "first").await;
    let ack: Value = serde_json::from_slice(&ack.payload).expect("PubAck is JSON");
    assert_eq!(ack, json!({"stream": "A", "seq": 1}));

    let m = timeout(WAIT, deliveries.next()).await.expect("delivery timed out").expect("open");
    assert_eq!(m.subject.as_str(), "a.one");
    let got = stored(&client, "B", 1).await;
    assert_eq!(got[0].subject.as_str(), "a.one");
    assert_eq!(&got[0].payload[..], b"first");
    let info = api(&client, "$JS.API.STREAM.INFO.B", &json!({})).await;
    assert_eq!(info["state"]["messages"], 1, "{info}");
    let info = api(&client, "$JS.API.STREAM.INFO.A", &json!({})).await;
    assert_eq!(info["state"]["messages"], 1, "{info}");
}
