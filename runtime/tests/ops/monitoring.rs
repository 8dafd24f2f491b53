//! `/varz`, `/connz`, `/subsz`, `/healthz`, `/routez` after known traffic.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;

use crate::harness::Fjord;

fn names(connz: &Value) -> Vec<String> {
    connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect()
}

fn is_rfc3339(s: &str) -> bool {
    s.len() >= 20 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T' && s.ends_with('Z')
}

#[tokio::test]
async fn counters_and_connections_after_known_traffic() {
    let srv = Fjord::start(&["-p", "-1", "-m", "-1", "-a", "127.0.0.1"]);
    let subscriber =
        async_nats::ConnectOptions::new().name("subscriber").connect(srv.url()).await.unwrap();
    let mut sub = subscriber.subscribe("foo").await.unwrap();
    subscriber.flush().await.unwrap();
    let publisher =
        async_nats::ConnectOptions::new().name("publisher").connect(srv.url()).await.unwrap();
    for _ in 0..3 {
        publisher.publish("foo", Bytes::from_static(b"0123456789")).await.unwrap();
    }
    publisher.flush().await.unwrap();
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap();
    }

    let varz = srv.json("/varz");
    assert_eq!(varz["connections"], 2);
    assert_eq!(varz["total_connections"], 2);
    assert_eq!(varz["in_msgs"], 3);
    assert_eq!(varz["in_bytes"], 30);
    assert_eq!(varz["out_msgs"], 3);
    assert_eq!(varz["out_bytes"], 30);
    assert_eq!(varz["in_client_msgs"], 3);
    assert_eq!(varz["subscriptions"], 1);
    assert_eq!(varz["slow_consumers"], 0);
    assert_eq!(varz["port"], srv.port);
    assert_eq!(varz["http_port"], srv.http_port.unwrap());
    assert_eq!(varz["max_payload"], 1048576);
    assert_eq!(varz["ping_interval"], 120_000_000_000u64);
    assert_eq!(varz["version"], "2.15.1");
    assert!(varz["mem"].as_i64().unwrap() > 0);
    assert!(varz["cpu"].as_f64().unwrap() >= 0.0);
    assert!(varz["uptime"].as_str().unwrap().ends_with('s'));
    assert!(is_rfc3339(varz["start"].as_str().unwrap()), "{}", varz["start"]);
    assert!(is_rfc3339(varz["now"].as_str().unwrap()));
    // Each /varz request counts itself, as in nats-server 2.15.1 (its first /varz shows 1).
    assert_eq!(srv.json("/varz")["http_req_stats"]["/varz"], 2);

    let connz = srv.json("/connz");
    assert_eq!(connz["num_connections"], 2);
    assert_eq!(connz["total"], 2);
    assert_eq!(connz["limit"], 1024);
    assert_eq!(names(&connz), vec!["subscriber", "publisher"], "default sort is by cid");
    let first = &connz["connections"][0];
    for field in ["cid", "kind", "type", "ip", "port", "start", "last_activity", "uptime", "idle"] {
        assert!(!first[field].is_null(), "missing {field}: {first}");
    }
    assert_eq!(first["kind"], "Client");
    assert_eq!(first["lang"], "rust");
    assert_eq!(first["out_msgs"], 3);
    assert_eq!(first["out_bytes"], 30);
    assert_eq!(first["subscriptions"], 1);
    assert!(first.get("subscriptions_list").is_none());
    assert_eq!(names(&srv.json("/connz?sort=msgs_from")), vec!["publisher", "subscriber"]);
    assert_eq!(names(&srv.json("/connz?sort=msgs_to")), vec!["subscriber", "publisher"]);
    assert_eq!(names(&srv.json("/connz?sort=bytes_from")), vec!["publisher", "subscriber"]);
    let page = srv.json("/connz?offset=1&limit=1");
    assert_eq!((page["num_connections"].clone(), page["total"].clone()), (1.into(), 2.into()));
    assert_eq!(names(&page), vec!["publisher"]);
    let cid = first["cid"].as_u64().unwrap();
    let one = srv.json(&format!("/connz?cid={cid}"));
    assert_eq!(names(&one), vec!["subscriber"]);
    let subs = srv.json("/connz?subs=1");
    assert_eq!(subs["connections"][0]["subscriptions_list"], serde_json::json!(["foo"]));
    let detail = srv.json("/connz?subs=detail");
    let d = &detail["connections"][0]["subscriptions_list_detail"][0];
    assert_eq!(
        (d["subject"].as_str(), d["msgs"].as_u64(), d["cid"].as_u64()),
        (Some("foo"), Some(3), Some(cid))
    );

    let (status, body) = srv.http_get("/connz?sort=nope");
    assert_eq!((status, body.as_str()), (400, "invalid sorting option: nope"));
    let (status, body) = srv.http_get("/connz?sort=stop");
    assert_eq!((status, body.as_str()), (400, "sort by stop only valid on closed connections"));
    let (status, _) = srv.http_get("/connz?state=sideways");
    assert_eq!(status, 400);

    // Closed connections are kept with their reason.
    drop(publisher);
    let deadline = Instant::now() + Duration::from_secs(10);
    let closed = loop {
        let closed = srv.json("/connz?state=closed");
        if closed["num_connections"] == 1 {
            break closed;
        }
        assert!(Instant::now() < deadline, "publisher never listed as closed: {closed}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let c = &closed["connections"][0];
    assert_eq!(c["name"], "publisher");
    assert_eq!(c["in_msgs"], 3);
    assert_eq!(c["reason"], "Client Closed");
    assert!(is_rfc3339(c["stop"].as_str().unwrap()));
    assert_eq!(srv.json("/connz?state=all")["total"], 2);
    assert_eq!(names(&srv.json("/connz?state=closed&sort=reason")), vec!["publisher"]);
    assert_eq!(srv.json("/connz")["num_connections"], 1);
    let varz = srv.json("/varz");
    assert_eq!((varz["connections"].clone(), varz["in_msgs"].clone()), (1.into(), 3.into()));

    let subsz = srv.json("/subsz");
    assert_eq!(subsz["num_subscriptions"], 1);
    assert!(subsz.get("subscriptions_list").is_none());
    let matched = srv.json("/subsz?test=foo");
    assert_eq!(matched["total"], 1);
    assert_eq!(matched["subscriptions_list"][0]["subject"], "foo");
    assert_eq!(matched["subscriptions_list"][0]["account"], "$G");
    assert_eq!(srv.json("/subsz?test=bar")["total"], 0);
    let (status, _) = srv.http_get("/subsz?test=foo.*");
    assert_eq!(status, 400, "a test subject must be literal");

    let (status, body) = srv.http_get("/healthz");
    assert_eq!((status, body.as_str()), (200, "{\"status\":\"ok\"}"));
    let routez = srv.json("/routez");
    assert_eq!(routez["num_routes"], 0);
    assert_eq!(routez["routes"], serde_json::json!([]));
    assert_eq!(srv.http_get("/nothing").0, 404);
}

#[test]
fn monitor_host_and_port_from_the_config_file() {
    let dir = crate::harness::temp_dir("http");
    let conf = dir.join("fjord.conf");
    crate::harness::write(&conf, "port: -1\nhttp: \"127.0.0.1:-1\"\nmax_closed_clients: 1\n");
    let srv = Fjord::start(&["-c", conf.to_str().unwrap()]);
    srv.wait_for_log("Starting http monitor on 127.0.0.1:");
    assert_eq!(srv.json("/varz")["http_host"], "127.0.0.1");
    // max_closed_clients bounds the closed-connection ring.
    for _ in 0..3 {
        let mut raw = crate::harness::Raw::connect(srv.port);
        raw.send("CONNECT {}\r\nPING\r\n");
        raw.read_until("PONG\r\n");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while srv.json("/varz")["connections"] != 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(srv.json("/connz?state=closed")["num_connections"], 1);
}

#[test]
fn connz_auth_shows_the_authorized_user() {
    let srv =
        Fjord::start(&["-p", "-1", "-m", "-1", "-a", "127.0.0.1", "--user", "u", "--pass", "p"]);
    let mut raw = crate::harness::Raw::connect(srv.port);
    raw.send("CONNECT {\"verbose\":false,\"user\":\"u\",\"pass\":\"p\"}\r\nSUB foo 1\r\nPING\r\n");
    raw.read_until("PONG\r\n");
    assert_eq!(srv.json("/varz")["auth_required"], true);
    let plain = srv.json("/connz?subs=detail");
    assert!(plain["connections"][0].get("authorized_user").is_none());
    assert!(plain["connections"][0]["subscriptions_list_detail"][0].get("account").is_none());
    let auth = srv.json("/connz?auth=1&subs=detail");
    let conn = &auth["connections"][0];
    assert_eq!(conn["authorized_user"], "u");
    assert_eq!(conn["subscriptions_list_detail"][0]["account"], "$G");
}

#[test]
fn jsz_without_jetstream_says_disabled_and_refuses_bad_flags() {
    let srv = Fjord::start(&["-p", "-1", "-a", "127.0.0.1", "-m", "-1"]);
    let jsz = srv.json("/jsz");
    assert_eq!(jsz["disabled"], true, "{jsz}");
    assert_eq!(jsz["config"], serde_json::json!({"max_memory": 0, "max_storage": 0}));
    assert_eq!((jsz["streams"].as_u64(), jsz["total"].as_u64()), (Some(0), Some(0)));
    assert!(jsz.get("account_details").is_none());
    let (status, body) = srv.http_get("/jsz?streams=nope");
    assert_eq!(status, 400);
    assert!(body.contains("Error decoding boolean for 'streams'"), "{body}");
    let (status, _) = srv.http_get("/jsz?leader-only=true");
    assert_eq!(status, 400, "a server without JetStream leads nothing");
}

#[test]
fn jsz_with_jetstream_reports_streams_on_request() {
    let dir = crate::harness::temp_dir("jsz");
    let srv = Fjord::start(&[
        "-p",
        "-1",
        "-a",
        "127.0.0.1",
        "-m",
        "-1",
        "-js",
        "-sd",
        dir.to_str().unwrap(),
    ]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(srv.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "S".into(),
            subjects: vec!["s.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        js.publish("s.1", Bytes::from_static(b"abc")).await.unwrap().await.unwrap();
    });
    let jsz = srv.json("/jsz");
    assert_eq!((jsz["streams"].as_u64(), jsz["messages"].as_u64()), (Some(1), Some(1)));
    assert_eq!(jsz["api"]["total"], 1, "the stream create; /jsz itself is no API call");
    assert_eq!(jsz["config"]["store_dir"], dir.join("jetstream").display().to_string());
    assert!(jsz.get("account_details").is_none());
    let detail = srv.json("/jsz?streams=true");
    let stream = &detail["account_details"][0]["stream_detail"][0];
    assert_eq!(stream["name"], "S");
    assert_eq!(stream["state"]["last_seq"], 1);
    assert_eq!(srv.json("/varz")["http_req_stats"]["/jsz"], 2);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn http_base_path_moves_every_endpoint() {
    let dir = crate::harness::temp_dir("base-path");
    let conf = dir.join("fjord.conf");
    crate::harness::write(
        &conf,
        "port: -1\nhost: 127.0.0.1\nhttp_port: -1\nhttp_base_path: /ops/nats\n",
    );
    let srv = Fjord::start(&["-c", conf.to_str().unwrap()]);
    for endpoint in ["varz", "connz", "subsz", "routez", "jsz", "healthz"] {
        let (status, body) = srv.http_get(&format!("/ops/nats/{endpoint}"));
        assert_eq!(status, 200, "/ops/nats/{endpoint}: {body}");
        assert_eq!(srv.http_get(&format!("/{endpoint}")).0, 404, "/{endpoint} is not served");
    }
    let varz = srv.json("/ops/nats/varz");
    assert_eq!(varz["http_base_path"], "/ops/nats");
}
