//! JetStream advisories end to end: `$JS.EVENT.ADVISORY.STREAM.*`, `CONSUMER.*` and the `API`
//! audit, with nats-server's subjects and JSON. Runs against fjord, or nats-server 2.15.1 with
//! `FJORD_TEST_TARGET=reference`: the same assertions hold for both.

use std::collections::BTreeMap;

use async_nats::Subscriber;
use fjord_tests::js_api::{api, connect, WAIT};
use fjord_tests::{ServerBinary, StoreDir, TestServer};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::time::timeout;

/// Reads advisories until one arrived on `subject`; returns it (others are kept in `seen`).
async fn wait_for(
    sub: &mut Subscriber,
    seen: &mut BTreeMap<String, Vec<Value>>,
    subject: &str,
) -> Value {
    loop {
        if let Some(v) = seen.get_mut(subject).and_then(|v| (!v.is_empty()).then(|| v.remove(0))) {
            return v;
        }
        let m = timeout(WAIT, sub.next())
            .await
            .unwrap_or_else(|_| panic!("no advisory on {subject}; seen {seen:?}"))
            .expect("sub open");
        let v: Value = serde_json::from_slice(&m.payload).expect("advisory is JSON");
        seen.entry(m.subject.to_string()).or_default().push(v);
    }
}

/// The answer recorded by the next audit of a request on `subject` (other audits are skipped).
async fn audit_of(
    sub: &mut Subscriber,
    seen: &mut BTreeMap<String, Vec<Value>>,
    subject: &str,
) -> Value {
    loop {
        let audit = wait_for(sub, seen, "$JS.EVENT.ADVISORY.API").await;
        if audit["subject"] == subject {
            return serde_json::from_str(audit["response"].as_str().unwrap()).unwrap();
        }
    }
}

fn check_event(v: &Value, kind: &str) {
    assert_eq!(v["type"], kind, "{v}");
    assert_eq!(v["id"].as_str().map(str::len), Some(22), "{v}");
    let ts = v["timestamp"].as_str().unwrap_or_default();
    assert!(ts.ends_with('Z') && ts.contains('T'), "{v}");
}

#[tokio::test]
async fn stream_and_consumer_actions_and_the_api_audit_are_advised() {
    let dir = StoreDir::new("advisories");
    let server = TestServer::start(
        &ServerBinary::target(),
        &["-js", "-sd", dir.arg(), "--name", "adv-node"],
    );
    let client = connect(&server).await;
    let mut sub = client.subscribe("$JS.EVENT.ADVISORY.>").await.unwrap();
    client.flush().await.unwrap();
    let mut seen = BTreeMap::new();
    let stream_action = "io.nats.jetstream.advisory.v1.stream_action";
    let consumer_action = "io.nats.jetstream.advisory.v1.consumer_action";

    let create = json!({"name": "ADV", "subjects": ["adv.>"]});
    let created = api(&client, "$JS.API.STREAM.CREATE.ADV", &create).await;
    let v = wait_for(&mut sub, &mut seen, "$JS.EVENT.ADVISORY.STREAM.CREATED.ADV").await;
    check_event(&v, stream_action);
    assert_eq!((&v["stream"], &v["action"]), (&json!("ADV"), &json!("create")));
    let audit = wait_for(&mut sub, &mut seen, "$JS.EVENT.ADVISORY.API").await;
    check_event(&audit, "io.nats.jetstream.advisory.v1.api_audit");
    assert_eq!(audit["server"], "adv-node");
    assert_eq!(audit["subject"], "$JS.API.STREAM.CREATE.ADV");
    let request: Value = serde_json::from_str(audit["request"].as_str().unwrap()).unwrap();
    assert_eq!(request, create);
    let response: Value = serde_json::from_str(audit["response"].as_str().unwrap()).unwrap();
    assert_eq!(response, created, "the audit carries the answer as sent");
    assert!(audit["client"].is_object(), "{audit}");

    let update = json!({"name": "ADV", "subjects": ["adv.>"], "max_msgs": 10});
    api(&client, "$JS.API.STREAM.UPDATE.ADV", &update).await;
    let v = wait_for(&mut sub, &mut seen, "$JS.EVENT.ADVISORY.STREAM.UPDATED.ADV").await;
    check_event(&v, stream_action);
    assert_eq!(v["action"], "modify");

    let consumer =
        json!({"stream_name": "ADV", "config": {"durable_name": "D", "ack_policy": "explicit"}});
    api(&client, "$JS.API.CONSUMER.DURABLE.CREATE.ADV.D", &consumer).await;
    let v = wait_for(&mut sub, &mut seen, "$JS.EVENT.ADVISORY.CONSUMER.CREATED.ADV.D").await;
    check_event(&v, consumer_action);
    assert_eq!(
        (&v["stream"], &v["consumer"], &v["action"]),
        (&json!("ADV"), &json!("D"), &json!("create"))
    );

    api(&client, "$JS.API.CONSUMER.DELETE.ADV.D", &json!({})).await;
    let v = wait_for(&mut sub, &mut seen, "$JS.EVENT.ADVISORY.CONSUMER.DELETED.ADV.D").await;
    check_event(&v, consumer_action);
    assert_eq!(v["action"], "delete");

    // A snapshot request is audited with its answer (which goes out with the first chunks).
    let snap_req = json!({"deliver_subject": client.new_inbox()});
    let snap = api(&client, "$JS.API.STREAM.SNAPSHOT.ADV", &snap_req).await;
    let audit = audit_of(&mut sub, &mut seen, "$JS.API.STREAM.SNAPSHOT.ADV").await;
    assert_eq!(audit, snap);

    // Deleting the stream deletes (and advises) its consumers too.
    let consumer = json!({"stream_name": "ADV", "config": {"durable_name": "E"}});
    api(&client, "$JS.API.CONSUMER.DURABLE.CREATE.ADV.E", &consumer).await;
    wait_for(&mut sub, &mut seen, "$JS.EVENT.ADVISORY.CONSUMER.CREATED.ADV.E").await;
    api(&client, "$JS.API.STREAM.DELETE.ADV", &json!({})).await;
    let v = wait_for(&mut sub, &mut seen, "$JS.EVENT.ADVISORY.CONSUMER.DELETED.ADV.E").await;
    check_event(&v, consumer_action);
    let v = wait_for(&mut sub, &mut seen, "$JS.EVENT.ADVISORY.STREAM.DELETED.ADV").await;
    check_event(&v, stream_action);
    assert_eq!(v["action"], "delete");

    // An error answer is audited too, and advises no action.
    let missing = api(&client, "$JS.API.STREAM.INFO.NOPE", &json!({})).await;
    assert_eq!(missing["error"]["err_code"], 10059);
    assert_eq!(audit_of(&mut sub, &mut seen, "$JS.API.STREAM.INFO.NOPE").await, missing);
    let actions: Vec<&String> = seen
        .keys()
        .filter(|k| ["CREATED", "UPDATED", "DELETED"].iter().any(|a| k.contains(&format!(".{a}."))))
        .collect();
    assert!(actions.iter().all(|k| seen[*k].is_empty()), "unexpected advisories: {seen:?}");
}
