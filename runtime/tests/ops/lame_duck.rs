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
