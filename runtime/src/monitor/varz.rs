//! `/varz`: the server's settings and counters, with nats-server's field names and units
//! (durations in nanoseconds where nats-server prints Go `time.Duration` values, timeouts in
//! seconds, times as RFC 3339, `uptime` as `1m2s`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use fjord_core::config::COMPATIBLE_NATS_VERSION;
use serde::Serialize;
use serde_json::{json, Value};

use super::format::{rfc3339_nanos, uptime};
use super::process;
use super::Monitor;

#[derive(Serialize)]
pub struct Varz {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: u32,
    pub git_commit: String,
    pub go: String,
    pub host: String,
    pub port: u16,
    #[serde(skip_serializing_if = "is_false")]
    pub auth_required: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_verify: bool,
    pub max_connections: usize,
    /// Nanoseconds, as Go marshals a `time.Duration`.
    pub ping_interval: u128,
    pub ping_max: u32,
    pub http_host: String,
    pub http_port: u16,
    pub http_base_path: String,
    pub https_port: u16,
    /// Seconds (a float in nats-server).
    pub auth_timeout: Value,
    pub max_control_line: usize,
    pub max_payload: usize,
    pub max_pending: usize,
    pub cluster: Value,
    pub gateway: Value,
    pub leaf: Value,
    pub mqtt: Value,
    pub websocket: Value,
    pub jetstream: Value,
    pub tls_timeout: Value,
    pub write_deadline: u128,
    pub lame_duck_duration: u128,
    pub lame_duck_grace_period: u128,
    pub start: String,
    pub now: String,
    pub uptime: String,
    pub mem: i64,
    pub cores: usize,
    pub gomaxprocs: usize,
    pub cpu: Value,
    pub connections: usize,
    pub total_connections: u64,
    pub routes: u64,
    pub remotes: u64,
    pub leafnodes: u64,
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub in_client_msgs: u64,
    pub in_client_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
    pub out_client_msgs: u64,
    pub out_client_bytes: u64,
    pub slow_consumers: u64,
    pub stale_connections: u64,
    pub stalled_clients: u64,
    pub subscriptions: usize,
    pub http_req_stats: BTreeMap<String, u64>,
    pub config_load_time: String,
    pub config_digest: String,
    pub slow_consumer_stats: KindCounts,
    pub stale_connection_stats: KindCounts,
    /// Fjord's own version, beside `version` (the nats-server release it matches).
    pub fjord_version: String,
}

/// Per connection kind, in nats-server's field order; Fjord has only clients so far.
#[derive(Serialize)]
pub struct KindCounts {
    pub clients: u64,
    pub routes: u64,
    pub gateways: u64,
    pub leafs: u64,
}

impl KindCounts {
    fn clients(clients: u64) -> Self {
        KindCounts { clients, routes: 0, gateways: 0, leafs: 0 }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A float printed as Go prints it: `2`, not `2.0`.
pub fn go_float(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

pub fn varz(monitor: &Monitor) -> Varz {
    let shared = &monitor.shared;
    let opts = shared.options.load();
    let now = SystemTime::now();
    let (mut in_msgs, mut in_bytes, mut out_msgs, mut out_bytes) = {
        let s = &shared.closed_stats;
        (
            s.in_msgs.load(Ordering::Relaxed),
            s.in_bytes.load(Ordering::Relaxed),
            s.out_msgs.load(Ordering::Relaxed),
            s.out_bytes.load(Ordering::Relaxed),
        )
    };
    let handles: Vec<_> = shared.clients.lock().values().cloned().collect();
    for h in &handles {
        in_msgs += h.stats.in_msgs.load(Ordering::Relaxed);
        in_bytes += h.stats.in_bytes.load(Ordering::Relaxed);
        out_msgs += h.stats.out_msgs.load(Ordering::Relaxed);
        out_bytes += h.stats.out_bytes.load(Ordering::Relaxed);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let auth = shared.auth();
    let tls = shared.tls.load();
    let slow = shared.slow_consumers.load(Ordering::Relaxed);
    let stale = shared.stale_connections.load(Ordering::Relaxed);
    let config = shared.config();
    Varz {
        server_id: config.server_id.clone(),
        server_name: config.server_name.clone(),
        version: COMPATIBLE_NATS_VERSION.to_string(),
        proto: 1,
        git_commit: String::new(),
        go: "fjord".to_string(),
        host: config.host.clone(),
        port: config.port,
        auth_required: auth.required(),
        tls_required: tls.is_some(),
        tls_verify: tls.as_ref().is_some_and(|t| t.verify),
        max_connections: config.max_connections,
        ping_interval: config.ping_interval.as_nanos(),
        ping_max: config.ping_max,
        http_host: monitor.http_host.clone(),
        http_port: monitor.http_port,
        http_base_path: opts.http_base_path.clone(),
        https_port: monitor.https_port,
        auth_timeout: go_float(auth.timeout.as_secs_f64()),
        max_control_line: config.max_control_line,
        max_payload: config.max_payload,
        max_pending: config.max_pending,
        cluster: json!({}),
        gateway: json!({}),
        leaf: json!({}),
        mqtt: json!({}),
        websocket: json!({}),
        // Filled in by the caller: it asks the JetStream actor (`jsz::varz_jetstream`).
        jetstream: json!({}),
        tls_timeout: go_float(opts.tls.as_ref().map_or(2.0, |t| t.timeout.as_secs_f64())),
        write_deadline: shared.write_deadline.as_nanos(),
        lame_duck_duration: opts.lame_duck_duration.as_nanos(),
        lame_duck_grace_period: opts.lame_duck_grace_period.as_nanos(),
        start: rfc3339_nanos(shared.started),
        now: rfc3339_nanos(now),
        uptime: uptime(now.duration_since(shared.started).unwrap_or_default()),
        mem: process::rss_bytes(),
        cores,
        gomaxprocs: cores,
        cpu: go_float(monitor.cpu.percent()),
        connections: handles.len(),
        total_connections: shared.total_connections.load(Ordering::Relaxed),
        routes: 0,
        remotes: 0,
        leafnodes: 0,
        in_msgs,
        in_bytes,
        in_client_msgs: in_msgs,
        in_client_bytes: in_bytes,
        out_msgs,
        out_bytes,
        out_client_msgs: out_msgs,
        out_client_bytes: out_bytes,
        slow_consumers: slow,
        stale_connections: stale,
        stalled_clients: 0,
        subscriptions: shared.index.len(),
        http_req_stats: monitor.requests.lock().clone(),
        config_load_time: rfc3339_nanos(*shared.config_load_time.lock()),
        config_digest: String::new(),
        slow_consumer_stats: KindCounts::clients(slow),
        stale_connection_stats: KindCounts::clients(stale),
        fjord_version: fjord_core::config::FJORD_VERSION.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_go() {
        assert_eq!(go_float(2.0).to_string(), "2");
        assert_eq!(go_float(0.5).to_string(), "0.5");
    }
}
