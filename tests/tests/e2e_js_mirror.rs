//! End-to-end tests of JetStream mirrors, sources and stream subject transforms, against
//! `fjord -js -sd <dir>` or (with `FJORD_TEST_TARGET=reference`) the reference nats-server, so
//! that the same assertions prove the tests right on nats-server before they judge fjord.
//!
//! No sleeps: a mirror or source catching up is awaited through a pull consumer on it (the
//! pull request waits on the server until the messages are there), bounded by a timeout.
//! `TestServer`'s drop is SIGKILL, so the restart here is a crash.

use std::time::Duration;

use fjord_tests::{ServerBinary, StoreDir, TestServer};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

fn start(dir: &StoreDir) -> TestServer {
    TestServer::start(&ServerBinary::target(), &["-js", "-sd", dir.arg()])
}

async fn connect(server: &TestServer) -> async_nats::Client {
    timeout(WAIT, async_nats::connect(server.url()))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// One `$JS.API` request; the answer as JSON.
async fn api(client: &async_nats::Client, subject: &str, body: Value) -> Value {
    let payload = if body.is_null() { String::new() } else { body.to_string() };
    let msg = timeout(WAIT, client.request(format!("$JS.API.{subject}"), payload.into()))
        .await
        .expect("API request timed out")
        .expect("API request");
    serde_json::from_slice(&msg.payload).expect("API answer is JSON")
}

/// Creates a stream; panics with the answer if it was refused.
async fn create(client: &async_nats::Client, config: Value) -> Value {
    let name = config["name"].as_str().expect("named").to_string();
    let answer = api(client, &format!("STREAM.CREATE.{name}"), config).await;
    assert!(answer.get("error").is_none(), "create {name}: {answer}");
    answer
}

async fn info(client: &async_nats::Client, stream: &str) -> Value {
    api(client, &format!("STREAM.INFO.{stream}"), Value::Null).await
}

/// The error code a request was answered with (0 for none).
async fn err_code(client: &async_nats::Client, subject: &str, body: Value) -> u64 {
    api(client, subject, body).await["error"]["err_code"].as_u64().unwrap_or(0)
}

/// Publishes and waits for the PubAck; its sequence.
async fn publish(client: &async_nats::Client, subject: &str, payload: &str) -> u64 {
    let msg = timeout(WAIT, client.request(subject.to_string(), payload.to_string().into()))
        .await
        .expect("publish timed out")
        .expect("publish");
    let ack: Value = serde_json::from_slice(&msg.payload).expect("PubAck JSON");
    ack["seq"].as_u64().unwrap_or_else(|| panic!("not stored: {ack}"))
}

/// One stored message as a consumer delivers it.
#[derive(Debug)]
struct Got {
    seq: u64,
    subject: String,
    payload: String,
    source: Option<String>,
}

/// A durable pull consumer on `stream` (explicit acks, never acked here: nothing is
/// redelivered within a test).
async fn consumer(client: &async_nats::Client, stream: &str, name: &str) {
    let body = json!({"stream_name": stream,
                      "config": {"durable_name": name, "ack_policy": "explicit"}});
    let answer = api(client, &format!("CONSUMER.CREATE.{stream}.{name}"), body).await;
    assert!(answer.get("error").is_none(), "consumer on {stream}: {answer}");
}

/// The next `n` messages of the consumer: pull requests wait on the server until they are
/// stored (which is what a mirror or source catching up looks like from outside).
async fn take(client: &async_nats::Client, stream: &str, name: &str, n: usize) -> Vec<Got> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.len() < n {
        assert!(tokio::time::Instant::now() < deadline, "only {got:?} of {n} from {stream}");
        let inbox = client.new_inbox();
        let mut sub = client.subscribe(inbox.clone()).await.expect("subscribe");
        let want = n - got.len();
        let req = json!({"batch": want, "expires": 2_000_000_000u64});
        client
            .publish_with_reply(
                format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}"),
                inbox,
                req.to_string().into(),
            )
            .await
            .expect("pull");
        while got.len() < n {
            let msg = timeout(WAIT, sub.next()).await.expect("pull answer").expect("open");
            if msg.status.is_some() {
                // 408: the request expired before everything came; ask again.
                break;
            }
            let reply = msg.reply.as_ref().expect("ack subject").to_string();
            let seq = reply
                .split('.')
                .nth(5)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("sequence in {reply} {msg:?}"));
            let source = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Stream-Source"))
                .map(|v| v.as_str().to_string());
            got.push(Got {
                seq,
                subject: msg.subject.to_string(),
                payload: String::from_utf8_lossy(&msg.payload).into_owned(),
                source,
            });
        }
    }
    got
}

/// The first five fields of a `Nats-Stream-Source` value (the sixth is the origin's
/// identity, a hash that differs between servers).
fn source_fields(value: &str) -> String {
    value.split(' ').take(5).collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn mirror_catches_up_with_origin_sequences_and_gaps_then_follows_live() {
    let dir = StoreDir::new("mirror");
    let server = start(&dir);
    let c = connect(&server).await;
    create(&c, json!({"name": "O", "subjects": ["o.>"]})).await;
    for (i, subject) in ["o.a", "o.b", "o.a", "o.c", "o.a"].iter().enumerate() {
        assert_eq!(publish(&c, subject, &format!("m{}", i + 1)).await, i as u64 + 1);
    }
    let deleted = api(&c, "STREAM.MSG.DELETE.O", json!({"seq": 2})).await;
    assert_eq!(deleted["success"], true, "{deleted}");

    let created = create(&c, json!({"name": "M", "mirror": {"name": "O"}})).await;
    assert_eq!(created["config"]["mirror"], json!({"name": "O"}));
    assert!(created["config"].get("subjects").is_none(), "a mirror has no subjects: {created}");
    assert!(created["config"].get("duplicate_window").is_none(), "nor a dedup window");
    assert_eq!(created["mirror"]["name"], "O");

    consumer(&c, "M", "C").await;
    let got = take(&c, "M", "C", 4).await;
    let seqs: Vec<u64> = got.iter().map(|g| g.seq).collect();
    assert_eq!(seqs, vec![1, 3, 4, 5], "the origin's sequences, its gap kept");
    assert_eq!((got[2].subject.as_str(), got[2].payload.as_str()), ("o.c", "m4"));
    assert!(got.iter().all(|g| g.source.is_none()), "mirrored messages are not stamped");
    let i = info(&c, "M").await;
    assert_eq!(i["state"]["messages"], 4, "{i}");
    assert_eq!(
        (i["state"]["first_seq"].clone(), i["state"]["last_seq"].clone()),
        (json!(1), json!(5))
    );
    assert_eq!(i["state"]["num_deleted"], 1);
    assert_eq!(i["mirror"]["name"], "O");
    assert_eq!(i["mirror"]["lag"], 0);
    assert!(i["mirror"]["active"].as_i64().expect("active") >= 0, "it has heard from O: {i}");

    // Live: a new message at the origin arrives at the same sequence.
    assert_eq!(publish(&c, "o.z", "live").await, 6);
    let got = take(&c, "M", "C", 1).await;
    assert_eq!((got[0].seq, got[0].subject.as_str(), got[0].payload.as_str()), (6, "o.z", "live"));

    // Nobody listens on a mirror's name: a publish there finds no responders.
    let err = timeout(WAIT, c.request("M".to_string(), "x".into()))
        .await
        .expect("request timed out")
        .expect_err("no responders");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders, "{err}");
}

#[tokio::test]
async fn mirror_made_before_its_origin_starts_when_the_origin_appears() {
    let dir = StoreDir::new("early");
    let server = start(&dir);
    let c = connect(&server).await;
    let created =
        create(&c, json!({"name": "M", "mirror": {"name": "O", "opt_start_seq": 2}})).await;
    assert_eq!(created["mirror"], json!({"name": "O", "lag": 0, "active": -1}));
    consumer(&c, "M", "C").await;
    create(&c, json!({"name": "O", "subjects": ["o.>"]})).await;
    for i in 1..=4 {
        publish(&c, "o.x", &format!("{i}")).await;
    }
    let got = take(&c, "M", "C", 3).await;
    let seqs: Vec<u64> = got.iter().map(|g| g.seq).collect();
    assert_eq!(seqs, vec![2, 3, 4], "from opt_start_seq on");
    let i = info(&c, "M").await;
    assert_eq!(
        (i["state"]["first_seq"].clone(), i["state"]["messages"].clone()),
        (json!(2), json!(3))
    );
}

#[tokio::test]
async fn sources_with_filters_and_transforms_stamp_where_each_message_came_from() {
    let dir = StoreDir::new("sources");
    let server = start(&dir);
    let c = connect(&server).await;
    create(&c, json!({"name": "A", "subjects": ["a.>"]})).await;
    create(&c, json!({"name": "B", "subjects": ["b.>"]})).await;
    publish(&c, "a.x", "a1").await;
    publish(&c, "a.y", "a2").await;
    publish(&c, "b.one", "b1").await;
    let config = json!({
        "name": "S",
        "subjects": ["s.>"],
        "sources": [
            {"name": "A", "filter_subject": "a.x"},
            {"name": "B", "subject_transforms": [{"src": "b.*", "dest": "c.$1"}]},
        ],
    });
    let created = create(&c, config).await;
    let sources = created["config"]["sources"].clone();
    assert_eq!(sources[0], json!({"name": "A", "filter_subject": "a.x"}));
    assert_eq!(sources[1]["subject_transforms"], json!([{"src": "b.*", "dest": "c.$1"}]));
    consumer(&c, "S", "C").await;
    let mut got = take(&c, "S", "C", 2).await;
    // Live messages: from both origins and from the stream's own subjects.
    publish(&c, "a.x", "a3").await;
    publish(&c, "a.y", "not taken").await;
    publish(&c, "b.two", "b2").await;
    publish(&c, "s.own", "mine").await;
    got.extend(take(&c, "S", "C", 3).await);
    let mut seen: Vec<(String, String, Option<String>)> = got
        .iter()
        .map(|g| (g.subject.clone(), g.payload.clone(), g.source.as_deref().map(source_fields)))
        .collect();
    seen.sort();
    let stamp = |s: &str| Some(s.to_string());
    assert_eq!(
        seen,
        vec![
            ("a.x".into(), "a1".into(), stamp("A 1 a.x > a.x")),
            ("a.x".into(), "a3".into(), stamp("A 3 a.x > a.x")),
            ("c.one".into(), "b1".into(), stamp("B 1 b.* c.$1 b.one")),
            ("c.two".into(), "b2".into(), stamp("B 2 b.* c.$1 b.two")),
            ("s.own".into(), "mine".into(), None),
        ]
    );
    let i = info(&c, "S").await;
    assert_eq!(i["state"]["messages"], 5, "{i}");
    let infos = i["sources"].as_array().expect("sources info");
    let a = infos.iter().find(|s| s["name"] == "A").expect("A");
    let b = infos.iter().find(|s| s["name"] == "B").expect("B");
    assert_eq!((a["filter_subject"].clone(), a["lag"].clone()), (json!("a.x"), json!(0)));
    assert_eq!(b["subject_transforms"], json!([{"src": "b.*", "dest": "c.$1"}]));
    assert!(a["active"].as_i64().expect("active") >= 0);

    // A client may not forge the stamp.
    let forged = async_nats::HeaderMap::from_iter([(
        "Nats-Stream-Source".parse::<async_nats::HeaderName>().expect("name"),
        "A 1 > > a.x".parse::<async_nats::HeaderValue>().expect("value"),
    )]);
    let answer = timeout(WAIT, c.request_with_headers("s.forged".to_string(), forged, "x".into()))
        .await
        .expect("publish timed out")
        .expect("answer");
    let answer: Value = serde_json::from_slice(&answer.payload).expect("json");
    assert_eq!(answer["error"]["err_code"], 10227, "{answer}");
}

#[tokio::test]
async fn config_errors_answer_nats_server_codes() {
    let dir = StoreDir::new("errors");
    let server = start(&dir);
    let c = connect(&server).await;
    create(&c, json!({"name": "O", "subjects": ["o.>"]})).await;
    let cases = [
        (json!({"name": "E", "mirror": {"name": "O"}, "subjects": ["e"]}), 10034),
        (json!({"name": "E", "mirror": {"name": "O"}, "sources": [{"name": "O"}]}), 10031),
        (json!({"name": "E", "mirror": {"name": "O"}, "first_seq": 5}), 10143),
        (json!({"name": "E", "mirror": {"name": "O.x"}}), 10142),
        (json!({"name": "E", "sources": [{"name": "O"}, {"name": "O"}]}), 10140),
        (json!({"name": "E", "sources": [{"name": "a b"}]}), 10141),
        (
            json!({"name": "E", "sources": [{"name": "O", "filter_subject": "o.a",
                   "subject_transforms": [{"src": "o.a", "dest": "x"}]}]}),
            10144,
        ),
        (
            json!({"name": "E", "mirror": {"name": "O", "filter_subject": "o.a",
                   "subject_transforms": [{"src": "o.a", "dest": "x"}]}}),
            10150,
        ),
        (
            json!({"name": "E", "sources": [{"name": "O",
                   "subject_transforms": [{"src": "o.*", "dest": "x.$2"}]}]}),
            10146,
        ),
        (
            json!({"name": "E", "sources": [{"name": "O",
                   "subject_transforms": [{"src": "o.>", "dest": "x.>"}, {"src": "o.a", "dest": "y"}]}]}),
            10147,
        ),
        (json!({"name": "E", "subjects": ["e.>"], "sources": [{"name": "E"}]}), 10052),
        (
            json!({"name": "E", "subjects": ["e.*"],
                   "subject_transform": {"src": "e.*", "dest": "f.$3"}}),
            10156,
        ),
    ];
    for (config, code) in cases {
        assert_eq!(err_code(&c, "STREAM.CREATE.E", config.clone()).await, code, "{config}");
    }
    create(&c, json!({"name": "M", "mirror": {"name": "O"}})).await;
    let changed = json!({"name": "M", "mirror": {"name": "O", "filter_subject": "o.a"}});
    assert_eq!(err_code(&c, "STREAM.UPDATE.M", changed).await, 10055);
    let limits = json!({"name": "M", "mirror": {"name": "O"}, "max_msgs": 10});
    assert_eq!(err_code(&c, "STREAM.UPDATE.M", limits).await, 0, "other fields may change");
    // Without its mirror the stream is promoted to a plain one, on its name.
    let promoted = api(&c, "STREAM.UPDATE.M", json!({"name": "M"})).await;
    assert!(promoted.get("mirror").is_none(), "{promoted}");
    assert_eq!(promoted["config"]["subjects"], json!(["M"]));
    assert_eq!(publish(&c, "M", "now mine").await, 1);
}

#[tokio::test]
async fn stream_subject_transform_rewrites_subjects_before_storing() {
    let dir = StoreDir::new("transform");
    let server = start(&dir);
    let c = connect(&server).await;
    let config = json!({"name": "T", "subjects": ["in.>"],
                        "subject_transform": {"src": "in.>", "dest": "out.>"}});
    let created = create(&c, config).await;
    assert_eq!(created["config"]["subject_transform"], json!({"src": "in.>", "dest": "out.>"}));
    publish(&c, "in.a.b", "x").await;
    let got = api(&c, "STREAM.MSG.GET.T", json!({"seq": 1})).await;
    assert_eq!(got["message"]["subject"], "out.a.b", "{got}");
}

#[tokio::test]
async fn restart_keeps_mirror_and_source_positions_without_duplicates_or_loss() {
    let dir = StoreDir::new("restart");
    let server = start(&dir);
    let c = connect(&server).await;
    create(&c, json!({"name": "O", "subjects": ["o.>"]})).await;
    create(&c, json!({"name": "M", "mirror": {"name": "O"}})).await;
    create(&c, json!({"name": "S", "sources": [{"name": "O", "filter_subject": "o.a"}]})).await;
    consumer(&c, "M", "C").await;
    consumer(&c, "S", "C").await;
    for i in 1..=3 {
        publish(&c, "o.a", &format!("{i}")).await;
        publish(&c, "o.b", &format!("{i}")).await;
    }
    assert_eq!(take(&c, "M", "C", 6).await.len(), 6);
    assert_eq!(take(&c, "S", "C", 3).await.len(), 3);
    drop(c);
    drop(server);

    let server = start(&dir);
    let c = connect(&server).await;
    for i in 4..=5 {
        publish(&c, "o.a", &format!("{i}")).await;
    }
    // The consumers resume after what they handed out before the crash: exactly the two new
    // messages arrive, at the origin's sequences in the mirror.
    consumer(&c, "M", "D").await;
    let m: Vec<u64> = take(&c, "M", "D", 8).await.iter().map(|g| g.seq).collect();
    assert_eq!(m, (1..=8).collect::<Vec<_>>());
    consumer(&c, "S", "D").await;
    let s: Vec<String> = take(&c, "S", "D", 5).await.into_iter().map(|g| g.payload).collect();
    assert_eq!(s, vec!["1", "2", "3", "4", "5"], "nothing sourced twice, nothing lost");
    let i = info(&c, "S").await;
    assert_eq!(
        (i["state"]["messages"].clone(), i["sources"][0]["lag"].clone()),
        (json!(5), json!(0))
    );
    let i = info(&c, "M").await;
    assert_eq!((i["state"]["last_seq"].clone(), i["mirror"]["lag"].clone()), (json!(8), json!(0)));
}

#[tokio::test]
async fn a_purged_source_stream_does_not_take_its_origin_again_after_a_restart() {
    let dir = StoreDir::new("purged");
    let server = start(&dir);
    let c = connect(&server).await;
    create(&c, json!({"name": "O", "subjects": ["o.>"]})).await;
    create(&c, json!({"name": "S", "sources": [{"name": "O"}]})).await;
    consumer(&c, "S", "C").await;
    for i in 1..=3 {
        publish(&c, "o.a", &format!("{i}")).await;
    }
    assert_eq!(take(&c, "S", "C", 3).await.len(), 3);
    let purged = api(&c, "STREAM.PURGE.S", Value::Null).await;
    assert_eq!(purged["purged"], 3, "{purged}");
    drop(c);
    drop(server);

    // No message of S names where its source got to any more: the position must have been
    // kept elsewhere, or the three would come again.
    let server = start(&dir);
    let c = connect(&server).await;
    publish(&c, "o.a", "4").await;
    consumer(&c, "S", "D").await;
    let got = take(&c, "S", "D", 1).await;
    assert_eq!((got[0].seq, got[0].payload.as_str()), (4, "4"));
    let i = info(&c, "S").await;
    assert_eq!(
        (i["state"]["messages"].clone(), i["state"]["last_seq"].clone()),
        (json!(1), json!(4))
    );
}

#[tokio::test]
async fn filtered_mirror_and_a_source_starting_at_a_time() {
    let dir = StoreDir::new("start");
    let server = start(&dir);
    let c = connect(&server).await;
    create(&c, json!({"name": "O", "subjects": ["o.>"]})).await;
    for (i, subject) in ["o.a", "o.b", "o.a", "o.b", "o.a"].iter().enumerate() {
        publish(&c, subject, &format!("{}", i + 1)).await;
    }
    // A filtered mirror keeps the origin's sequences: what it does not take is a gap.
    create(&c, json!({"name": "M", "mirror": {"name": "O", "filter_subject": "o.a"}})).await;
    consumer(&c, "M", "C").await;
    let seqs: Vec<u64> = take(&c, "M", "C", 3).await.iter().map(|g| g.seq).collect();
    assert_eq!(seqs, vec![1, 3, 5]);
    let i = info(&c, "M").await;
    assert_eq!(
        (i["state"]["last_seq"].clone(), i["state"]["num_deleted"].clone()),
        (json!(5), json!(2))
    );
    assert_eq!(i["mirror"]["filter_subject"], "o.a");

    // A source from the time of the origin's third message on.
    let third = api(&c, "STREAM.MSG.GET.O", json!({"seq": 3})).await;
    let time = third["message"]["time"].as_str().expect("time").to_string();
    create(&c, json!({"name": "S", "sources": [{"name": "O", "opt_start_time": time}]})).await;
    consumer(&c, "S", "C").await;
    let got: Vec<String> = take(&c, "S", "C", 3).await.into_iter().map(|g| g.payload).collect();
    assert_eq!(got, vec!["3", "4", "5"]);
}
