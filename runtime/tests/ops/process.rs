//! Pid file, ports file, random ports, `--signal`, and graceful stop, with nats-server's log
//! lines.

use std::process::Command;

use crate::harness::{http_get, temp_dir, Fjord};

#[test]
fn pid_and_ports_files_then_signal_term() {
    let dir = temp_dir("ports");
    let pid_file = dir.join("fjord.pid");
    let mut srv = Fjord::start(&[
        "-p",
        "-1",
        "-m",
        "-1",
        "-a",
        "127.0.0.1",
        "-P",
        pid_file.to_str().unwrap(),
        "--ports_file_dir",
        dir.to_str().unwrap(),
    ]);
    assert_ne!(srv.port, 0, "the log shows the port actually bound");
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), srv.pid().to_string());
    let ports_file = dir.join(format!("fjord_{}.ports", srv.pid()));
    let ports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ports_file).unwrap()).unwrap();
    assert_eq!(ports["nats"], serde_json::json!([format!("nats://127.0.0.1:{}", srv.port)]));
    let http = srv.http_port.unwrap();
    assert_eq!(ports["monitoring"], serde_json::json!([format!("http://127.0.0.1:{http}")]));
    assert_eq!(http_get(http, "/healthz").0, 200);

    let status = Command::new(env!("CARGO_BIN_EXE_fjord"))
        .arg(format!("--signal=term={}", pid_file.display()))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(srv.wait_exit().success());
    srv.wait_for_log("Trapped \"terminated\" signal");
    srv.wait_for_log("Initiating Shutdown...");
    srv.wait_for_log("Server Exiting..");
    assert!(!pid_file.exists(), "the pid file is removed at exit");
    assert!(!ports_file.exists(), "the ports file is removed at exit");
}

#[test]
fn sigint_stops_and_signal_errors_are_reported() {
    let mut srv = Fjord::start(&["-p", "-1", "-a", "127.0.0.1"]);
    srv.signal(libc::SIGINT);
    assert!(srv.wait_exit().success());
    srv.wait_for_log("Trapped \"interrupt\" signal");

    let out =
        Command::new(env!("CARGO_BIN_EXE_fjord")).args(["--signal", "bogus=1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown signal \"bogus\""));
    let out = Command::new(env!("CARGO_BIN_EXE_fjord"))
        .args(["--signal", "reload=/nonexistent/fjord.pid"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not read pid file"));
}

/// The hour of a `[pid] YYYY/MM/DD hh:mm:ss.micros [INF] ...` line.
fn log_hour(line: &str) -> u32 {
    let time = line.split_whitespace().nth(2).expect("a timestamp");
    time[..2].parse().expect("an hour")
}

#[test]
fn log_times_are_local_unless_logtime_utc() {
    // A POSIX TZ string needs no zone database: UTC+9, nine hours ahead.
    let run = |extra: &[&str]| {
        let mut args = vec!["-p", "-1", "-a", "127.0.0.1"];
        args.extend_from_slice(extra);
        let srv = Fjord::start_with_env(&args, &[("TZ", "XYZ-9")]);
        log_hour(&srv.wait_for_log("Server is ready"))
    };
    let utc = run(&["--logtime_utc"]);
    let local = run(&[]);
    // Both runs start within the same few seconds; allow an hour boundary between them.
    let ahead = (local + 24 - utc) % 24;
    assert!(ahead == 9 || ahead == 10, "local {local}, utc {utc}");
    let now_utc_hour =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
            / 3600
            % 24) as u32;
    assert!(utc == now_utc_hour || (utc + 1) % 24 == now_utc_hour, "utc {utc} vs {now_utc_hour}");
}
