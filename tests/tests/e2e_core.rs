//! End-to-end tests of core NATS with a real client (async-nats) against the server chosen by
//! `FJORD_TEST_TARGET=fjord|reference` (default fjord).
//!
//! No sleeps: messages are awaited with timeouts, and `sync()` is the barrier. async-nats's
//! `flush()` only writes the client's buffer out (it is not a server round trip), so `sync()`
//! publishes to a fresh inbox the client subscribed to and waits for that message: the server
//! handles one connection's input in order, and writes to one connection in order, so after a
//! publisher's `sync` the server has routed everything it published, and after a subscriber's
//! `sync` everything routed to that subscriber is in its client-side channel ("nothing more
//! arrived" can then be checked with `now_or_never`).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event, Subscriber};
use bytes::Bytes;
use fjord_tests::{ConfigFile, RawConn, ServerBinary, TestServer};
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn start(args: &[&str]) -> TestServer {
    TestServer::start(&ServerBinary::target(), args)
}

async fn connect(server: &TestServer) -> Client {
    timeout(WAIT, async_nats::connect(server.url()))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// Connects with `opts` plus an event callback; returns the client and its event stream.
async fn connect_with_events(
    server: &TestServer,
    opts: ConnectOptions,
) -> (Client, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let opts = opts.event_callback(move |event| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(event);
        }
    });
    let client = timeout(WAIT, opts.connect(server.url()))
        .await
        .expect("connect timed out")
        .expect("connect");
    (client, rx)
}

/// A round trip through the server on `client`'s connection (see the module doc).
async fn sync(client: &Client) {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.expect("barrier subscribe");
    client.publish(inbox, Bytes::new()).await.expect("barrier publish");
    timeout(WAIT, sub.next()).await.expect("barrier round trip timed out").expect("barrier sub");
}

/// `sync` for a client with echo off: a request nobody answers comes back as a no-responders
/// status from the server.
async fn sync_no_echo(client: &Client) {
    let result = timeout(WAIT, client.request("fjord.test.barrier", Bytes::new()))
        .await
        .expect("no-responders barrier timed out");
    match result {
        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {}
        other => panic!("expected no responders, got {other:?}"),
    }
}

/// `sync` for a client that may neither subscribe to inboxes nor publish: a publish to a
/// denied subject comes back as a permissions `-ERR`. Consumes that error event.
async fn sync_by_denied_publish(client: &Client, events: &mut mpsc::UnboundedReceiver<Event>) {
    client.publish("fjord.denied.barrier", Bytes::new()).await.unwrap();
    client.flush().await.unwrap();
    let err = next_server_error(events).await;
    assert!(err.contains("fjord.denied.barrier"), "unexpected error before the barrier: {err}");
}

async fn next_msg(sub: &mut Subscriber) -> async_nats::Message {
    timeout(WAIT, sub.next())
        .await
        .expect("timed out waiting for a message")
        .expect("subscription ended")
}

/// Messages already delivered to `sub` (call after a flush on its client).
fn drain_ready(sub: &mut Subscriber) -> Vec<async_nats::Message> {
    let mut out = Vec::new();
    // `unconstrained`: tokio's cooperative budget would otherwise report Pending after ~128
    // items even though more are buffered.
    while let Some(Some(m)) = tokio::task::unconstrained(sub.next()).now_or_never() {
        out.push(m);
    }
    out
}

/// Waits for the first server error event (`-ERR`), skipping other events.
async fn next_server_error(events: &mut mpsc::UnboundedReceiver<Event>) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("timed out waiting for a server error event")
            .expect("event channel closed");
        if let Event::ServerError(e) = event {
            return e.to_string();
        }
    }
}

fn no_server_error(events: &mut mpsc::UnboundedReceiver<Event>) {
    while let Ok(event) = events.try_recv() {
        if let Event::ServerError(e) = event {
            panic!("unexpected server error: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_sub_delivers_in_order() {
    let server = start(&[]);
    let sub_client = connect(&server).await;
    let pub_client = connect(&server).await;
    let mut sub = sub_client.subscribe("greet.world").await.unwrap();
    sync(&sub_client).await;
    for i in 0..100 {
        pub_client.publish("greet.world", Bytes::from(format!("hello {i}"))).await.unwrap();
    }
    sync(&pub_client).await;
    for i in 0..100 {
        let m = next_msg(&mut sub).await;
        assert_eq!(m.subject.as_str(), "greet.world");
        assert_eq!(m.payload, Bytes::from(format!("hello {i}")));
        assert!(m.reply.is_none());
    }
    // Other subjects are not delivered.
    pub_client.publish("greet.other", Bytes::from_static(b"x")).await.unwrap();
    sync(&pub_client).await;
    sync(&sub_client).await;
    assert!(drain_ready(&mut sub).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_star_and_full() {
    let server = start(&[]);
    let client = connect(&server).await;
    let mut star = client.subscribe("a.*").await.unwrap();
    let mut full = client.subscribe("a.>").await.unwrap();
    let mut mid = client.subscribe("*.b.*").await.unwrap();
    sync(&client).await;
    for subject in ["a", "a.b", "a.b.c", "b.c", "x.b.y", "a.b.c.d"] {
        client.publish(subject, Bytes::from(subject)).await.unwrap();
    }
    sync(&client).await;
    let subjects = |v: Vec<async_nats::Message>| -> Vec<String> {
        v.into_iter().map(|m| m.subject.to_string()).collect()
    };
    assert_eq!(subjects(drain_ready(&mut star)), vec!["a.b"]);
    assert_eq!(subjects(drain_ready(&mut full)), vec!["a.b", "a.b.c", "a.b.c.d"]);
    assert_eq!(subjects(drain_ready(&mut mid)), vec!["a.b.c", "x.b.y"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_group_delivers_each_message_to_exactly_one_member() {
    let server = start(&[]);
    let mut members = Vec::new();
    for _ in 0..4 {
        let c = connect(&server).await;
        let s = c.queue_subscribe("work", "workers".to_string()).await.unwrap();
        sync(&c).await;
        members.push((c, s));
    }
    // A plain subscriber on the same subject gets every message too.
    let watcher = connect(&server).await;
    let mut all = watcher.subscribe("work").await.unwrap();
    sync(&watcher).await;

    let publisher = connect(&server).await;
    for i in 0..1000 {
        publisher.publish("work", Bytes::from(i.to_string())).await.unwrap();
    }
    sync(&publisher).await;

    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, (c, s)) in members.iter_mut().enumerate() {
        sync(c).await;
        let got = drain_ready(s);
        assert!(!got.is_empty(), "queue member {i} got no messages out of 1000");
        for m in got {
            *seen.entry(String::from_utf8(m.payload.to_vec()).unwrap()).or_default() += 1;
        }
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "messages delivered to more than one member: {dups:?}");
    assert_eq!(seen.len(), 1000, "the group as a whole must get all 1000 messages");
    sync(&watcher).await;
    assert_eq!(drain_ready(&mut all).len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply() {
    let server = start(&[]);
    let responder = connect(&server).await;
    let mut requests = responder.subscribe("svc.upper").await.unwrap();
    sync(&responder).await;
    let r = responder.clone();
    let task = tokio::spawn(async move {
        for _ in 0..10 {
            let m = requests.next().await.expect("request");
            let reply = m.reply.expect("request has a reply subject");
            let upper = String::from_utf8(m.payload.to_vec()).unwrap().to_uppercase();
            r.publish(reply, Bytes::from(upper)).await.unwrap();
        }
        sync(&r).await;
    });
    let requester = connect(&server).await;
    for i in 0..10 {
        let resp = timeout(WAIT, requester.request("svc.upper", Bytes::from(format!("ping {i}"))))
            .await
            .expect("request timed out")
            .expect("request failed");
        assert_eq!(resp.payload, Bytes::from(format!("PING {i}")));
    }
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_without_responders_gets_no_responders() {
    let server = start(&[]);
    let client = connect(&server).await;
    let err = timeout(WAIT, client.request("nobody.home", Bytes::from_static(b"hi")))
        .await
        .expect("request should fail fast with no responders, not time out")
        .expect_err("request to a subject without subscribers must fail");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders, "got {err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_round_trip() {
    let server = start(&[]);
    let client = connect(&server).await;
    let mut sub = client.subscribe("h").await.unwrap();
    sync(&client).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Single", "one");
    headers.append("Multi", "first");
    headers.append("Multi", "second");
    headers.insert("Spaced-Value", "a b  c");
    client.publish_with_headers("h", headers, Bytes::from_static(b"body")).await.unwrap();
    // A header-only message (empty payload).
    let mut only = async_nats::HeaderMap::new();
    only.insert("K", "v");
    client.publish_with_headers("h", only, Bytes::new()).await.unwrap();
    sync(&client).await;

    let m = next_msg(&mut sub).await;
    assert_eq!(m.payload, Bytes::from_static(b"body"));
    let h = m.headers.expect("message has headers");
    assert_eq!(h.get("Single").map(|v| v.as_str()), Some("one"));
    let multi: Vec<&str> = h.get_all("Multi").map(|v| v.as_str()).collect();
    assert_eq!(multi, vec!["first", "second"]);
    assert_eq!(h.get("Spaced-Value").map(|v| v.as_str()), Some("a b  c"));

    let m = next_msg(&mut sub).await;
    assert!(m.payload.is_empty());
    assert_eq!(m.headers.expect("headers").get("K").map(|v| v.as_str()), Some("v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_after_max_messages() {
    let server = start(&[]);
    let client = connect(&server).await;
    let mut sub = client.subscribe("limited").await.unwrap();
    sub.unsubscribe_after(3).await.unwrap();
    sync(&client).await;
    let publisher = connect(&server).await;
    for i in 0..6 {
        publisher.publish("limited", Bytes::from(i.to_string())).await.unwrap();
    }
    sync(&publisher).await;
    sync(&client).await;
    let got: Vec<Bytes> = drain_ready(&mut sub).into_iter().map(|m| m.payload).collect();
    assert_eq!(got, vec![Bytes::from("0"), Bytes::from("1"), Bytes::from("2")]);

    // Server side: a raw subscriber with UNSUB 1 2 gets exactly two messages.
    let mut raw = RawConn::connect(server.addr());
    raw.send(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB limited 7\r\nUNSUB 7 2\r\n");
    let (out, closed) = raw.read_until_pong_or_close();
    assert_eq!(out, b"PONG\r\n");
    assert!(!closed);
    for i in 0..4 {
        publisher.publish("limited", Bytes::from(i.to_string())).await.unwrap();
    }
    sync(&publisher).await;
    let (out, closed) = raw.read_until_pong_or_close();
    assert_eq!(out, b"MSG limited 7 1\r\n0\r\nMSG limited 7 1\r\n1\r\nPONG\r\n".to_vec());
    assert!(!closed);
}

async fn expect_auth_failure(server: &TestServer, opts: ConnectOptions, what: &str) {
    let result = timeout(WAIT, opts.connect(server.url())).await.expect("connect timed out");
    match result {
        Ok(_) => panic!("{what}: connecting must fail"),
        Err(e) => assert_eq!(
            e.kind(),
            async_nats::ConnectErrorKind::AuthorizationViolation,
            "{what}: expected an authorization violation, got {e:?}"
        ),
    }
}

async fn round_trip(client: &Client) {
    let mut sub = client.subscribe("rt").await.unwrap();
    client.publish("rt", Bytes::from_static(b"ok")).await.unwrap();
    assert_eq!(next_msg(&mut sub).await.payload, Bytes::from_static(b"ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_user_password() {
    let server = start(&["--user", "ann", "--pass", "s3cret"]);
    let ok = timeout(
        WAIT,
        ConnectOptions::with_user_and_password("ann".into(), "s3cret".into()).connect(server.url()),
    )
    .await
    .unwrap()
    .expect("right credentials connect");
    assert!(ok.server_info().auth_required, "INFO must say auth_required");
    round_trip(&ok).await;
    expect_auth_failure(
        &server,
        ConnectOptions::with_user_and_password("ann".into(), "wrong".into()),
        "wrong password",
    )
    .await;
    expect_auth_failure(
        &server,
        ConnectOptions::with_user_and_password("bob".into(), "s3cret".into()),
        "unknown user",
    )
    .await;
    expect_auth_failure(&server, ConnectOptions::new(), "no credentials").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_token() {
    let server = start(&["--auth", "t0ken"]);
    let ok = timeout(WAIT, ConnectOptions::with_token("t0ken".into()).connect(server.url()))
        .await
        .unwrap()
        .expect("right token connects");
    round_trip(&ok).await;
    expect_auth_failure(&server, ConnectOptions::with_token("nope".into()), "wrong token").await;
    expect_auth_failure(&server, ConnectOptions::new(), "no token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_users_list_from_config() {
    let conf = ConfigFile::new(
        "authorization {\n  users = [\n    {user: alice, password: pa}\n    {user: bob, password: \"pb\"}\n  ]\n}\n",
    );
    let server = start(&["-c", conf.arg()]);
    for (u, p) in [("alice", "pa"), ("bob", "pb")] {
        let c = timeout(
            WAIT,
            ConnectOptions::with_user_and_password(u.into(), p.into()).connect(server.url()),
        )
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{u} must connect: {e}"));
        round_trip(&c).await;
    }
    expect_auth_failure(
        &server,
        ConnectOptions::with_user_and_password("alice".into(), "pb".into()),
        "alice with bob's password",
    )
    .await;
    expect_auth_failure(
        &server,
        ConnectOptions::with_user_and_password("carol".into(), "pa".into()),
        "unknown user",
    )
    .await;
}

const PERMS_CONF: &str = r#"
authorization {
  users = [
    {user: admin, password: pa}
    {user: limited, password: pl, permissions: {
      publish: {deny: ["secret.>"]}
      subscribe: {deny: ["hidden", "hidden.>"]}
    }}
    {user: svc, password: ps, permissions: {
      subscribe: ["svc.>"]
      publish: {deny: [">"]}
      allow_responses: true
    }}
  ]
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_permission_violation() {
    let conf = ConfigFile::new(PERMS_CONF);
    let server = start(&["-c", conf.arg()]);
    let admin = ConnectOptions::with_user_and_password("admin".into(), "pa".into())
        .connect(server.url())
        .await
        .unwrap();
    let mut secret = admin.subscribe("secret.plans").await.unwrap();
    let mut open = admin.subscribe("open").await.unwrap();
    sync(&admin).await;

    let (limited, mut events) = connect_with_events(
        &server,
        ConnectOptions::with_user_and_password("limited".into(), "pl".into()),
    )
    .await;
    limited.publish("secret.plans", Bytes::from_static(b"leak")).await.unwrap();
    sync(&limited).await;
    let err = next_server_error(&mut events).await;
    assert!(
        err.contains(r#"Permissions Violation for Publish to "secret.plans""#),
        "unexpected error text: {err}"
    );
    // The connection survives and allowed subjects still work.
    limited.publish("open", Bytes::from_static(b"fine")).await.unwrap();
    sync(&limited).await;
    assert_eq!(next_msg(&mut open).await.payload, Bytes::from_static(b"fine"));
    sync(&admin).await;
    assert!(drain_ready(&mut secret).is_empty(), "a denied publish must not be delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_permission_violation() {
    let conf = ConfigFile::new(PERMS_CONF);
    let server = start(&["-c", conf.arg()]);
    let admin = ConnectOptions::with_user_and_password("admin".into(), "pa".into())
        .connect(server.url())
        .await
        .unwrap();
    let (limited, mut events) = connect_with_events(
        &server,
        ConnectOptions::with_user_and_password("limited".into(), "pl".into()),
    )
    .await;
    let mut hidden = limited.subscribe("hidden").await.unwrap();
    sync(&limited).await;
    let err = next_server_error(&mut events).await;
    assert!(
        err.contains(r#"Permissions Violation for Subscription to "hidden""#),
        "unexpected error text: {err}"
    );
    admin.publish("hidden", Bytes::from_static(b"x")).await.unwrap();
    sync(&admin).await;
    sync(&limited).await;
    assert!(drain_ready(&mut hidden).is_empty(), "a denied subscription must not receive messages");
    // Allowed subscriptions still work on the same connection.
    round_trip(&limited).await;
    no_server_error(&mut events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_responses_lets_a_service_reply_only_to_requests() {
    let conf = ConfigFile::new(PERMS_CONF);
    let server = start(&["-c", conf.arg()]);
    let (svc, mut events) = connect_with_events(
        &server,
        ConnectOptions::with_user_and_password("svc".into(), "ps".into()),
    )
    .await;
    let mut requests = svc.subscribe("svc.echo").await.unwrap();
    sync_by_denied_publish(&svc, &mut events).await;
    let s = svc.clone();
    let task = tokio::spawn(async move {
        let m = requests.next().await.expect("request");
        s.publish(m.reply.expect("reply subject"), m.payload).await.unwrap();
        s.flush().await.unwrap();
    });
    let admin = ConnectOptions::with_user_and_password("admin".into(), "pa".into())
        .connect(server.url())
        .await
        .unwrap();
    let resp = timeout(WAIT, admin.request("svc.echo", Bytes::from_static(b"hello")))
        .await
        .expect("request timed out")
        .expect("the service may answer the request");
    assert_eq!(resp.payload, Bytes::from_static(b"hello"));
    task.await.unwrap();
    no_server_error(&mut events);

    // Publishing anywhere else is denied.
    let mut elsewhere = admin.subscribe("elsewhere").await.unwrap();
    sync(&admin).await;
    svc.publish("elsewhere", Bytes::from_static(b"x")).await.unwrap();
    svc.flush().await.unwrap();
    let err = next_server_error(&mut events).await;
    assert!(
        err.contains(r#"Permissions Violation for Publish to "elsewhere""#),
        "unexpected error text: {err}"
    );
    sync(&admin).await;
    assert!(drain_ready(&mut elsewhere).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_payload_is_announced_and_enforced() {
    let conf = ConfigFile::new("max_payload: 100\n");
    let server = start(&["-c", conf.arg()]);
    let client = connect(&server).await;
    assert_eq!(client.server_info().max_payload, 100, "INFO must announce max_payload");
    let mut sub = client.subscribe("p").await.unwrap();
    client.publish("p", Bytes::from(vec![b'x'; 100])).await.expect("100 bytes is allowed");
    sync(&client).await;
    assert_eq!(next_msg(&mut sub).await.payload.len(), 100);
    // async-nats refuses client-side; the raw-protocol tests check the server's own answer.
    let err = client.publish("p", Bytes::from(vec![b'x'; 101])).await.expect_err("101 > 100");
    assert_eq!(err.kind(), async_nats::client::PublishErrorKind::MaxPayloadExceeded);
    let mut raw = RawConn::connect(server.addr());
    raw.send(b"CONNECT {\"verbose\":false}\r\nPUB p 101\r\n");
    raw.send(&[b'y'; 101]);
    raw.send(b"\r\n");
    let (out, closed) = raw.read_until_pong_or_close();
    assert_eq!(out, b"-ERR 'Maximum Payload Violation'\r\n".to_vec());
    assert!(closed);
    sync(&client).await;
    assert!(drain_ready(&mut sub).is_empty(), "the oversize message must not be delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_off_suppresses_own_messages() {
    let server = start(&[]);
    let quiet = timeout(WAIT, ConnectOptions::new().no_echo().connect(server.url()))
        .await
        .unwrap()
        .unwrap();
    let loud = connect(&server).await;
    let mut quiet_sub = quiet.subscribe("echo").await.unwrap();
    let mut loud_sub = loud.subscribe("echo").await.unwrap();
    sync_no_echo(&quiet).await;
    sync(&loud).await;
    quiet.publish("echo", Bytes::from_static(b"from quiet")).await.unwrap();
    loud.publish("echo", Bytes::from_static(b"from loud")).await.unwrap();
    sync_no_echo(&quiet).await;
    sync(&loud).await;
    sync_no_echo(&quiet).await;
    let q: Vec<Bytes> = drain_ready(&mut quiet_sub).into_iter().map(|m| m.payload).collect();
    assert_eq!(q, vec![Bytes::from_static(b"from loud")], "no_echo client must not see its own");
    let l: BTreeSet<Bytes> = drain_ready(&mut loud_sub).into_iter().map(|m| m.payload).collect();
    let want: BTreeSet<Bytes> =
        [Bytes::from_static(b"from quiet"), Bytes::from_static(b"from loud")].into();
    assert_eq!(l, want, "an echo client sees its own messages and others'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_cut_off_and_others_carry_on() {
    let conf = ConfigFile::new("max_pending: 1MB\n");
    let server = start(&["-c", conf.arg()]);
    // A raw subscriber that never reads.
    let mut slow = RawConn::connect(server.addr());
    slow.send(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB big 1\r\n");
    let (out, closed) = slow.read_until_pong_or_close();
    assert_eq!(out, b"PONG\r\n");
    assert!(!closed);

    let healthy =
        timeout(WAIT, ConnectOptions::new().connect(server.url())).await.unwrap().unwrap();
    let mut sub = healthy.subscribe("big").await.unwrap();
    sync(&healthy).await;
    let publisher = connect(&server).await;
    const MSGS: usize = 1024;
    const SIZE: usize = 64 * 1024; // 64 MB in all: far beyond socket buffers plus 1 MB pending.
    const BATCH: usize = 8; // The publisher waits for the healthy subscriber every 512 KB, so
                            // the healthy subscriber is never near max_pending itself.
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0usize);
    let receiver = tokio::spawn(async move {
        let mut n = 0;
        while n < MSGS {
            let m = timeout(WAIT, sub.next()).await.expect("healthy subscriber starved").unwrap();
            assert_eq!(m.payload.len(), SIZE);
            assert_eq!(&m.payload[..8], format!("{n:08}").as_bytes(), "message {n} out of order");
            n += 1;
            let _ = progress_tx.send(n);
        }
        n
    });
    for batch in 0..MSGS / BATCH {
        for j in 0..BATCH {
            let i = batch * BATCH + j;
            let mut body = vec![b'.'; SIZE];
            body[..8].copy_from_slice(format!("{i:08}").as_bytes());
            publisher.publish("big", Bytes::from(body)).await.unwrap();
        }
        let want = (batch + 1) * BATCH;
        timeout(WAIT, progress.wait_for(|n| *n >= want))
            .await
            .unwrap_or_else(|_| panic!("healthy subscriber stuck before message {want}"))
            .expect("receiver alive");
    }
    timeout(WAIT, publisher.flush()).await.expect("publisher stalled").unwrap();
    assert_eq!(receiver.await.unwrap(), MSGS, "the healthy subscriber gets every message");
    assert!(slow.wait_closed(WAIT), "the server must close the slow consumer");
    // The publisher is still connected and working.
    round_trip(&publisher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_connections() {
    let server = start(&[]);
    let observer = connect(&server).await;
    let mut sub = observer.subscribe("conn.>").await.unwrap();
    sync(&observer).await;
    let url = server.url();
    let clients = futures::future::join_all((0..1000).map(|_| {
        let url = url.clone();
        async move { timeout(Duration::from_secs(30), async_nats::connect(url)).await }
    }))
    .await;
    let clients: Vec<Client> = clients
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|_| panic!("client {i} timed out")).expect("connect"))
        .collect();
    // All 1000 are open at once; each publishes and does a round trip.
    let results = futures::future::join_all(clients.iter().enumerate().map(|(i, c)| async move {
        c.publish(format!("conn.{i}"), Bytes::new()).await.map_err(|e| e.to_string())?;
        timeout(Duration::from_secs(30), c.flush())
            .await
            .map_err(|_| "flush timed out".to_string())?
            .map_err(|e| e.to_string())?;
        timeout(Duration::from_secs(30), sync(c))
            .await
            .map_err(|_| "round trip timed out".to_string())
    }))
    .await;
    for (i, r) in results.into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("client {i}: {e}"));
    }
    sync(&observer).await;
    let got: BTreeSet<String> =
        drain_ready(&mut sub).into_iter().map(|m| m.subject.to_string()).collect();
    assert_eq!(got.len(), 1000, "one message from each of 1000 connections");
}
