//! The settings core's state machines obey, filled by the driver from flags and the
//! configuration file. Defaults are nats-server 2.15.1's.

use std::time::Duration;

use crate::client::auth::AuthConfig;

/// The nats-server release whose client-facing behaviour Fjord matches. Clients switch features
/// on by the `version` in INFO, so this is what INFO reports; Fjord's own version travels beside it.
pub const COMPATIBLE_NATS_VERSION: &str = "2.15.1";

/// Fjord's own version.
pub const FJORD_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub server_id: String,
    pub server_name: String,
    /// Host and port as advertised in INFO.
    pub host: String,
    pub port: u16,
    pub max_payload: usize,
    pub max_control_line: usize,
    /// Outbound bytes a client may have pending before it is cut off as a slow consumer.
    pub max_pending: usize,
    pub max_connections: usize,
    /// 0 means unlimited.
    pub max_subscriptions: usize,
    pub ping_interval: Duration,
    pub ping_max: u32,
    /// Header support (`no_header_support` turns it off).
    pub headers: bool,
    pub auth: AuthConfig,
    /// Whether JetStream is on (reported in INFO).
    pub jetstream: bool,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            server_id: String::new(),
            server_name: String::new(),
            host: "0.0.0.0".to_string(),
            port: 4222,
            max_payload: 1024 * 1024,
            max_control_line: 4096,
            max_pending: 64 * 1024 * 1024,
            max_connections: 65536,
            max_subscriptions: 0,
            ping_interval: Duration::from_secs(120),
            ping_max: 2,
            headers: true,
            auth: AuthConfig::default(),
            jetstream: false,
        }
    }
}
