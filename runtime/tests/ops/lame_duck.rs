//! SIGUSR2: lame duck mode as nats-server runs it.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{temp_dir, write, Fjord, Raw};

#[test]
fn lame_duck_tells_clients_stops_accepting_closes_and_exits() {
    let dir = temp_dir("ldm");
    let conf = dir.join("fjord.conf");
    write(
        &conf,
        "port: -1\nhost: 127.0.0.1\nhttp_port: -1\nlame_duck_duration: \"1s\"\nlame_duck_grace_period: \"200ms\"\n",
    );
    let mut srv = Fjord::start(&["-c", conf.to_str().unwrap()]);
    let mut clients: Vec<Raw> = (0..3)
        .map(|_| {
            let mut raw = Raw::connect(srv.port);
            raw.send("CONNECT {\"verbose\":false,\"protocol\":1}\r\nPING\r\n");
            raw.read_until("PONG\r\n");
            raw
        })
        .collect();
    // A protocol-0 client cannot take asynchronous INFO and is not sent one.
    let mut old = Raw::connect(srv.port);
    old.send("CONNECT {\"verbose\":false,\"protocol\":0}\r\nPING\r\n");
    old.read_until("PONG\r\n");

    srv.signal(libc::SIGUSR2);
    for raw in &mut clients {
        let info = raw.read_until("\r\n");
        assert!(info.starts_with("INFO ") && info.contains("\"ldm\":true"), "{info}");
    }
    srv.wait_for_log("Trapped \"user defined signal 2\" signal");
    srv.wait_for_log("Entering lame duck mode, stop accepting new clients");
    let (status, body) = srv.http_get("/healthz");
    assert_eq!(status, 503, "{body}");
    // The listener closes: new clients are refused, so they go to another server.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", srv.port)).is_ok() {
        assert!(Instant::now() < deadline, "still accepting in lame duck mode");
        std::thread::sleep(Duration::from_millis(10));
    }
    for raw in &mut clients {
        let rest = raw.read_to_close();
        assert!(!rest.contains("ERR"), "{rest:?}");
    }
    let rest = old.read_to_close();
    assert!(!rest.contains("ldm"), "{rest:?}");
    srv.wait_for_log("Closing existing clients");
    assert!(srv.wait_exit().success());
    srv.wait_for_log("Server Exiting..");
}

/// The operator's reason for lame duck mode: clients that also know another server move to it
/// while the first one drains, and keep their subscriptions; the first server then exits.
#[test]
fn clients_move_to_the_other_server_and_the_lame_duck_exits() {
    use async_nats::Event;
    use futures::StreamExt;
    use tokio::sync::mpsc;

    const CLIENTS: usize = 3;
    let dir = temp_dir("ldm-move");
    let conf = dir.join("a.conf");
    write(
        &conf,
        "port: -1\nhost: 127.0.0.1\nlame_duck_duration: \"2s\"\nlame_duck_grace_period: \"300ms\"\n",
    );
    let mut a = Fjord::start(&["-c", conf.to_str().unwrap()]);
    let b = Fjord::start(&["-p", "-1", "-a", "127.0.0.1"]);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // async-nats clients need the runtime when they are dropped, at the end of the test.
    let _in_runtime = rt.enter();
    let wait = Duration::from_secs(10);

    // Each client lists A first, then B, and keeps that order (async-nats shuffles otherwise).
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (events_tx, events) = mpsc::unbounded_channel();
        let client = rt.block_on(async {
            let options = async_nats::ConnectOptions::new()
                .retain_servers_order()
                .name(format!("client-{i}"))
                .event_callback(move |event| {
                    let events_tx = events_tx.clone();
                    async move {
                        let _ = events_tx.send(event);
                    }
                });
            options.connect(vec![a.url(), b.url()]).await.expect("connects")
        });
        assert_eq!(client.server_info().port, a.port, "client-{i} starts on A");
        let sub = rt.block_on(client.subscribe("after.move")).unwrap();
        rt.block_on(client.flush()).unwrap();
        clients.push((client, sub, events));
    }

    let started = Instant::now();
    a.signal(libc::SIGUSR2);
    a.wait_for_log("Entering lame duck mode, stop accepting new clients");
    // Every client is told, then disconnected, then connected again: to B, the only server
    // still accepting.
    for (i, (client, _, events)) in clients.iter_mut().enumerate() {
        rt.block_on(async {
            let mut seen = Vec::new();
            loop {
                let event = tokio::time::timeout(wait, events.recv())
                    .await
                    .unwrap_or_else(|_| panic!("client-{i}: events so far {seen:?}"))
                    .expect("event channel open");
                let reconnected = matches!(event, Event::Connected)
                    && seen.iter().any(|e| matches!(e, Event::Disconnected));
                seen.push(event);
                if reconnected {
                    break;
                }
            }
            let ldm = seen.iter().position(|e| matches!(e, Event::LameDuckMode));
            let gone = seen.iter().position(|e| matches!(e, Event::Disconnected));
            assert!(ldm < gone && ldm.is_some(), "client-{i} is told first: {seen:?}");
        });
        assert_eq!(client.server_info().port, b.port, "client-{i} is now on B");
    }
    // Not before the grace period: clients are closed only after it.
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());

    // Their subscriptions came along: a message published on B reaches every one of them.
    rt.block_on(async {
        let publisher = async_nats::connect(b.url()).await.unwrap();
        for (client, _, _) in &clients {
            // The resubscription has reached B once a round trip after it has.
            client.flush().await.unwrap();
        }
        publisher.publish("after.move", "hello".into()).await.unwrap();
        publisher.flush().await.unwrap();
        for (i, (_, sub, _)) in clients.iter_mut().enumerate() {
            let msg = tokio::time::timeout(wait, sub.next())
                .await
                .unwrap_or_else(|_| panic!("client-{i} got nothing on B"))
                .expect("subscription open");
            assert_eq!(&msg.payload[..], b"hello");
        }
    });

    // A closed its clients over the lame duck duration, then exited cleanly.
    assert!(a.wait_exit().success());
    a.wait_for_log("Server Exiting..");
    assert!(started.elapsed() < Duration::from_secs(10));
}
