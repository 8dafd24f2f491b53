//! Differential JetStream tests: each scenario runs against `fjord -js` and against the
//! reference nats-server 2.15.1, and what the two answer must be equal (and, so that two equal
//! wrong answers do not pass, each test also checks figures read off nats-server by hand).
//!
//! Covered: stream byte accounting (`state.bytes` of file and memory streams with and without
//! headers, purge answers, KV status), `max_bytes` with discard old and new, `first_seq`, and
//! which consumer filters are accepted.
//!
//! No sleeps: every step is a request whose answer is awaited, bounded by a timeout.

use std::time::Duration;

use async_nats::HeaderMap;
use fjord_tests::{ServerBinary, StoreDir, TestServer};
use serde_json::{json, Value};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(15);

/// One server with JetStream, and a client on it.
struct Side {
    _server: TestServer,
    _dir: StoreDir,
    client: async_nats::Client,
}

async fn side(binary: ServerBinary, tag: &str) -> Side {
    let dir = StoreDir::new(&format!("jsdiff-{tag}-{}", binary.name));
    let server = TestServer::start(&binary, &["-js", "-sd", dir.arg()]);
    let client = timeout(WAIT, async_nats::connect(server.url()))
        .await
        .expect("connect timed out")
        .expect("connect");
    Side { _server: server, _dir: dir, client }
}

/// The same scenario on fjord and on nats-server; both transcripts, fjord's first.
async fn both<F, Fut>(tag: &str, scenario: F) -> (Vec<Value>, Vec<Value>)
where
    F: Fn(async_nats::Client) -> Fut,
    Fut: std::future::Future<Output = Vec<Value>>,
{
    let fjord = side(ServerBinary::fjord(), tag).await;
    let fjord_said = scenario(fjord.client.clone()).await;
    let reference = side(ServerBinary::reference(), tag).await;
    let reference_said = scenario(reference.client.clone()).await;
    (fjord_said, reference_said)
}

/// Line by line, so a difference names its step.
fn assert_same(fjord: &[Value], reference: &[Value]) {
    for (i, (f, r)) in fjord.iter().zip(reference).enumerate() {
        assert_eq!(f, r, "step {i}: fjord (left) and nats-server (right) differ");
    }
    assert_eq!(fjord.len(), reference.len());
}

/// A request; the answer as JSON.
async fn request(
    c: &async_nats::Client,
    subject: &str,
    headers: Option<HeaderMap>,
    body: &str,
) -> Value {
    let subject = subject.to_string();
    let body = body.to_string().into();
    let msg = match headers {
        Some(h) => timeout(WAIT, c.request_with_headers(subject, h, body)).await,
        None => timeout(WAIT, c.request(subject, body)).await,
    }
    .expect("request timed out")
    .expect("request");
    serde_json::from_slice(&msg.payload).unwrap_or_else(|_| panic!("not JSON: {msg:?}"))
}

async fn api(c: &async_nats::Client, subject: &str, body: Value) -> Value {
    let body = if body.is_null() { String::new() } else { body.to_string() };
    request(c, &format!("$JS.API.{subject}"), None, &body).await
}

/// The parts of a stream's state that do not depend on the clock.
fn state(info: &Value) -> Value {
    let s = &info["state"];
    json!({
        "messages": s["messages"], "bytes": s["bytes"], "first_seq": s["first_seq"],
        "last_seq": s["last_seq"], "num_deleted": s["num_deleted"],
    })
}

async fn stream_state(c: &async_nats::Client, name: &str) -> Value {
    state(&api(c, &format!("STREAM.INFO.{name}"), Value::Null).await)
}

/// A PubAck or a publish error, without what may differ by design.
fn ack(v: Value) -> Value {
    json!({"seq": v["seq"], "error": v["error"], "duplicate": v["duplicate"]})
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, *v);
    }
    h
}

async fn bytes_scenario(c: async_nats::Client) -> Vec<Value> {
    let mut said = Vec::new();
    for storage in ["file", "memory"] {
        let name = format!("B{storage}");
        let config =
            json!({"name": name, "subjects": [format!("{storage}.>")], "storage": storage});
        let created = api(&c, &format!("STREAM.CREATE.{name}"), config).await;
        assert!(created.get("error").is_none(), "{created}");
        for _ in 0..3 {
            said.push(ack(request(&c, &format!("{storage}.a"), None, "hello").await));
        }
        said.push(stream_state(&c, &name).await);
        let h = headers(&[("Foo", "bar")]);
        said.push(ack(request(&c, &format!("{storage}.h"), Some(h), "hello").await));
        said.push(stream_state(&c, &name).await);
        let h = headers(&[("Foo", "bar"), ("Nats-Msg-Id", "one")]);
        said.push(ack(request(&c, &format!("{storage}.h"), Some(h), "").await));
        said.push(stream_state(&c, &name).await);
        let purge = json!({"filter": format!("{storage}.h")});
        said.push(api(&c, &format!("STREAM.PURGE.{name}"), purge).await);
        said.push(stream_state(&c, &name).await);
    }
    said
}

#[tokio::test]
async fn stream_bytes_count_as_nats_server_counts_them() {
    let (fjord, reference) = both("bytes", bytes_scenario).await;
    assert_same(&fjord, &reference);
    // nats-server's figures: a file message is 30 + subject + payload (+ 4 + headers), a
    // memory message 16 + subject + headers + payload. "file.a"/"hello": 41 each.
    // Header blocks: "NATS/1.0\r\nFoo: bar\r\n\r\n" is 22 bytes, with "Nats-Msg-Id: one\r\n" 40.
    let bytes: Vec<u64> = reference.iter().filter_map(|v| v["bytes"].as_u64()).collect();
    let (file_one, file_two) = (30 + 6 + 4 + 22 + 5, 30 + 6 + 4 + 40);
    let (mem_one, mem_two) = (16 + 8 + 22 + 5, 16 + 8 + 40);
    let want = [
        123,
        123 + file_one,
        123 + file_one + file_two,
        123,
        87,
        87 + mem_one,
        87 + mem_one + mem_two,
        87,
    ];
    assert_eq!(bytes, want, "{reference:?}");
}

async fn max_bytes_scenario(c: async_nats::Client) -> Vec<Value> {
    let mut said = Vec::new();
    for storage in ["file", "memory"] {
        for discard in ["old", "new"] {
            let name = format!("M{storage}{discard}");
            let config = json!({"name": name, "subjects": [name], "storage": storage,
                                "discard": discard, "max_bytes": 200});
            let created = api(&c, &format!("STREAM.CREATE.{name}"), config).await;
            assert!(created.get("error").is_none(), "{created}");
            for i in 0..6 {
                said.push(
                    ack(request(&c, &name, None, &format!("payload-{i}-xxxxxxxxxxxx")).await),
                );
            }
            said.push(stream_state(&c, &name).await);
            // One message bigger than max_bytes on its own.
            said.push(ack(request(&c, &name, None, &"z".repeat(250)).await));
            said.push(stream_state(&c, &name).await);
            said.push(api(&c, &format!("STREAM.PURGE.{name}"), Value::Null).await);
        }
    }
    said
}

#[tokio::test]
async fn max_bytes_keeps_and_refuses_what_nats_server_does() {
    let (fjord, reference) = both("maxbytes", max_bytes_scenario).await;
    assert_same(&fjord, &reference);
    // File, discard old: 30 + 8 + 22 = 60 bytes a message, so 3 fit in 200 (seqs 4..6).
    assert_eq!(
        reference[6],
        json!({"messages": 3, "bytes": 180, "first_seq": 4, "last_seq": 6, "num_deleted": null})
    );
    // Discard old takes even a message over max_bytes, then has to drop everything.
    assert_eq!(reference[7]["seq"], 7);
    assert_eq!(reference[8]["messages"], 0);
    // File, discard new: the fourth message is refused with 10077.
    assert_eq!(reference[13]["error"]["err_code"], 10077, "{:?}", &reference[10..20]);
}

async fn first_seq_scenario(c: async_nats::Client) -> Vec<Value> {
    let mut said = Vec::new();
    for storage in ["file", "memory"] {
        let name = format!("F{storage}");
        let config =
            json!({"name": name, "subjects": [name], "storage": storage, "first_seq": 100});
        let created = api(&c, &format!("STREAM.CREATE.{name}"), config.clone()).await;
        said.push(json!({"error": created["error"], "first_seq": created["config"]["first_seq"]}));
        said.push(state(&created));
        said.push(ack(request(&c, &name, None, "a").await));
        said.push(ack(request(&c, &name, None, "b").await));
        said.push(stream_state(&c, &name).await);
        // Creating it again with the same config is idempotent.
        let again = api(&c, &format!("STREAM.CREATE.{name}"), config).await;
        said.push(json!({"error": again["error"]}));
        // Updating first_seq is accepted and changes the config only.
        let mut update =
            json!({"name": name, "subjects": [name], "storage": storage, "first_seq": 500});
        let updated = api(&c, &format!("STREAM.UPDATE.{name}"), update.clone()).await;
        said.push(json!({"error": updated["error"], "first_seq": updated["config"]["first_seq"]}));
        said.push(ack(request(&c, &name, None, "c").await));
        update.as_object_mut().expect("object").remove("first_seq");
        let updated = api(&c, &format!("STREAM.UPDATE.{name}"), update).await;
        said.push(json!({"error": updated["error"], "first_seq": updated["config"]["first_seq"]}));
        said.push(api(&c, &format!("STREAM.PURGE.{name}"), Value::Null).await);
        said.push(ack(request(&c, &name, None, "d").await));
    }
    let mirror = json!({"name": "MIR", "mirror": {"name": "Ffile"}, "first_seq": 5});
    said.push(api(&c, "STREAM.CREATE.MIR", mirror).await["error"].clone());
    let negative = json!({"name": "NEG", "subjects": ["neg"], "first_seq": -5});
    said.push(api(&c, "STREAM.CREATE.NEG", negative).await["error"]["err_code"].clone());
    said
}

#[tokio::test]
async fn first_seq_starts_the_stream_there() {
    let (fjord, reference) = both("firstseq", first_seq_scenario).await;
    assert_same(&fjord, &reference);
    assert_eq!(
        reference[1],
        json!({"messages": 0, "bytes": 0, "first_seq": 100, "last_seq": 99, "num_deleted": null})
    );
    assert_eq!(
        (reference[2]["seq"].clone(), reference[3]["seq"].clone()),
        (json!(100), json!(101))
    );
    assert_eq!(reference[7]["seq"], 102, "an update of first_seq moves nothing");
    assert_eq!(reference[10]["seq"], 103);
    assert_eq!(reference[22]["err_code"], 10143, "a mirror can not have a first sequence");
    assert_eq!(reference[23], 10025, "first_seq is unsigned");
}

async fn kv_scenario(c: async_nats::Client) -> Vec<Value> {
    let js = async_nats::jetstream::new(c.clone());
    let mut said = Vec::new();
    for storage in [
        async_nats::jetstream::stream::StorageType::File,
        async_nats::jetstream::stream::StorageType::Memory,
    ] {
        let bucket = format!("b{}", said.len());
        let kv = js
            .create_key_value(async_nats::jetstream::kv::Config {
                bucket: bucket.clone(),
                history: 2,
                storage,
                ..Default::default()
            })
            .await
            .expect("create bucket");
        for (k, v) in [("a", "1"), ("b", "22"), ("a", "333"), ("a", "4444")] {
            timeout(WAIT, kv.put(k, v.to_string().into())).await.unwrap().expect("put");
        }
        // What a KV client's status reads: the bucket stream's info.
        let info = api(&c, &format!("STREAM.INFO.KV_{bucket}"), Value::Null).await;
        said.push(json!({"bytes": info["state"]["bytes"], "values": info["state"]["messages"]}));
    }
    said
}

#[tokio::test]
async fn kv_status_bytes_match() {
    let (fjord, reference) = both("kv", kv_scenario).await;
    assert_same(&fjord, &reference);
    // "$KV.b0.a" is 8 bytes: history 2 keeps 333 and 4444 of a, and 22 of b.
    let file = 3 * (30 + 8) + 3 + 4 + 2;
    let mem = 3 * (16 + 8) + 3 + 4 + 2;
    assert_eq!(reference[0]["bytes"], file);
    assert_eq!(reference[1]["bytes"], mem);
}

async fn filters_scenario(c: async_nats::Client) -> Vec<Value> {
    let mut said = Vec::new();
    let created = api(&c, "STREAM.CREATE.S", json!({"name": "S", "subjects": ["s.*"]})).await;
    assert!(created.get("error").is_none(), "{created}");
    said.push(ack(request(&c, "s.a", None, "x").await));
    let configs = [
        json!({"filter_subject": "s.a"}),
        // Not within the stream's subjects: nats-server accepts these since 2.10.
        json!({"filter_subject": "x.y"}),
        json!({"filter_subject": "s.a.b"}),
        json!({"filter_subjects": ["x.y", "z"]}),
        json!({"filter_subject": "a..b"}),
        json!({"filter_subject": "s.a", "filter_subjects": ["s.b"]}),
        json!({"filter_subjects": ["s.a", ""]}),
        json!({"filter_subjects": ["s.*", "s.a"]}),
        json!({"filter_subjects": ["s..a"]}),
    ];
    for (i, mut config) in configs.into_iter().enumerate() {
        config["durable_name"] = json!(format!("C{i}"));
        config["ack_policy"] = json!("explicit");
        let body = json!({"stream_name": "S", "config": config});
        let answer = api(&c, &format!("CONSUMER.CREATE.S.C{i}"), body).await;
        said.push(json!({"error": answer["error"], "filter": answer["config"]["filter_subject"],
                         "filters": answer["config"]["filter_subjects"]}));
    }
    // A consumer whose filter matches nothing in the stream has nothing pending.
    for name in ["C0", "C1"] {
        let info = api(&c, &format!("CONSUMER.INFO.S.{name}"), Value::Null).await;
        said.push(json!({"num_pending": info["num_pending"]}));
    }
    said
}

#[tokio::test]
async fn consumer_filters_accepted_and_refused_as_nats_server() {
    let (fjord, reference) = both("filters", filters_scenario).await;
    assert_same(&fjord, &reference);
    let codes: Vec<Value> = reference.iter().map(|v| v["error"]["err_code"].clone()).collect();
    assert_eq!(
        codes,
        [
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            json!(10052),
            json!(10136),
            json!(10139),
            json!(10138),
            json!(10052),
            Value::Null,
            Value::Null
        ]
    );
    assert_eq!(
        (&reference[10]["num_pending"], &reference[11]["num_pending"]),
        (&json!(1), &json!(0))
    );
}

async fn replace_scenario(c: async_nats::Client) -> Vec<Value> {
    let mut said = Vec::new();
    for storage in ["file", "memory"] {
        let name = format!("K{storage}");
        let config = json!({"name": name, "subjects": [format!("{name}.>")], "storage": storage,
                            "discard": "new", "max_msgs_per_subject": 1, "max_bytes": 300,
                            "max_msgs": 3});
        let created = api(&c, &format!("STREAM.CREATE.{name}"), config).await;
        assert!(created.get("error").is_none(), "{created}");
        let steps = [
            ("a", "1".repeat(10)),
            ("b", "2".repeat(10)),
            // Over max_bytes and bigger than the value it would replace: refused, a kept.
            ("a", "3".repeat(250)),
            // No bigger than what it replaces: taken.
            ("a", "4".repeat(5)),
            ("c", "5".repeat(5)),
            // A new subject at max_msgs: refused; an existing one replaces.
            ("d", "6".repeat(5)),
            ("c", "7".repeat(5)),
            ("c", "8".repeat(100)),
        ];
        for (key, value) in steps {
            said.push(ack(request(&c, &format!("{name}.{key}"), None, &value).await));
            said.push(stream_state(&c, &name).await);
        }
        let last_a = json!({"last_by_subj": format!("{name}.a")});
        let got = api(&c, &format!("STREAM.MSG.GET.{name}"), last_a).await;
        said.push(json!({"seq": got["message"]["seq"]}));
    }
    said
}

#[tokio::test]
async fn discard_new_replaces_per_subject_and_never_loses_a_refused_replacement() {
    let (fjord, reference) = both("replace", replace_scenario).await;
    assert_same(&fjord, &reference);
    assert_eq!(reference[4]["error"]["err_code"], 10077, "{:?}", &reference[..6]);
    assert_eq!(reference[5]["messages"], 2, "the refused value replaced nothing");
    assert_eq!(reference[10]["error"]["err_code"], 10077, "max_msgs");
    assert_eq!(reference[16]["seq"], 3, "a's last value is the small one, seq 3");
}

async fn info_fields_scenario(c: async_nats::Client) -> Vec<Value> {
    let mut said = Vec::new();
    let created = api(&c, "STREAM.CREATE.I", json!({"name": "I", "subjects": ["i.*"]})).await;
    assert!(created.get("error").is_none(), "{created}");
    for subject in ["i.c", "i.a", "i.b", "i.a"] {
        said.push(ack(request(&c, subject, None, "x").await));
    }
    let paging = |v: &Value| {
        json!({"total": v["total"], "offset": v["offset"], "limit": v["limit"],
               "subjects": v["state"]["subjects"]})
    };
    for req in [
        Value::Null,
        json!({"subjects_filter": ">"}),
        json!({"subjects_filter": "i.*", "offset": 2}),
        json!({"subjects_filter": "i.*", "offset": 7}),
        json!({"subjects_filter": "nothing"}),
    ] {
        said.push(paging(&api(&c, "STREAM.INFO.I", req).await));
    }
    let consumer = json!({"stream_name": "I", "config": {"durable_name": "D"}});
    api(&c, "CONSUMER.CREATE.I.D", consumer).await;
    // Which top-level keys a client finds (values like times differ by design).
    let keys = |v: &Value| {
        let mut k: Vec<String> =
            v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        k.sort();
        json!(k)
    };
    let list = api(&c, "STREAM.LIST", Value::Null).await;
    said.push(keys(&list["streams"][0]));
    said.push(json!({"total": list["total"], "offset": list["offset"], "limit": list["limit"]}));
    said.push(keys(&api(&c, "CONSUMER.INFO.I.D", Value::Null).await));
    said.push(keys(&api(&c, "CONSUMER.LIST.I", Value::Null).await["consumers"][0]));
    said
}

#[tokio::test]
async fn stream_info_paging_and_info_keys_match() {
    let (fjord, reference) = both("infofields", info_fields_scenario).await;
    assert_same(&fjord, &reference);
    assert_eq!(reference[4], json!({"total": 0, "offset": 0, "limit": 0, "subjects": null}));
    assert_eq!(
        reference[5],
        json!({"total": 3, "offset": 0, "limit": 100000,
               "subjects": {"i.a": 2, "i.b": 1, "i.c": 1}})
    );
    assert_eq!(reference[6]["subjects"], json!({"i.c": 1}), "sorted, from the offset");
}

async fn rollup_scenario(c: async_nats::Client) -> Vec<Value> {
    let mut said = Vec::new();
    for storage in ["file", "memory"] {
        let name = format!("R{storage}");
        let config = json!({"name": name, "subjects": [format!("{name}.>")], "storage": storage,
                            "discard": "new", "max_msgs_per_subject": 1,
                            "discard_new_per_subject": true, "allow_rollup_hdrs": true});
        let created = api(&c, &format!("STREAM.CREATE.{name}"), config).await;
        assert!(created.get("error").is_none(), "{created}");
        let subject = format!("{name}.a");
        said.push(ack(request(&c, &subject, None, "1").await));
        said.push(ack(request(&c, &subject, None, "2").await));
        for how in ["sub", "all"] {
            let h = headers(&[("Nats-Rollup", how)]);
            said.push(ack(request(&c, &subject, Some(h), how).await));
        }
        said.push(stream_state(&c, &name).await);
    }
    said
}

#[tokio::test]
async fn a_rollup_passes_a_subject_at_its_discard_new_limit() {
    let (fjord, reference) = both("rollup", rollup_scenario).await;
    assert_same(&fjord, &reference);
    assert_eq!(reference[1]["error"]["err_code"], 10077, "the plain second message is refused");
    assert_eq!((&reference[2]["seq"], &reference[3]["seq"]), (&json!(2), &json!(3)));
    assert_eq!(reference[4]["messages"], 1);
}
