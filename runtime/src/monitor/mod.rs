//! The HTTP monitoring port (`-m`, `http_port`, `http: host:port`): nats-server's endpoints
//! with its JSON field names, so dashboards and exporters written for nats-server read Fjord.

pub mod closed;
pub mod connz;
pub mod format;
pub mod healthz;
pub mod jsz;
pub mod process;
pub mod query;
pub mod routez;
pub mod server;
pub mod subsz;
pub mod varz;

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::server::Shared;

/// What the handlers read: the server's shared state plus the monitor's own bookkeeping.
pub struct Monitor {
    pub shared: Arc<Shared>,
    /// The address actually bound (after `-m -1` picked a port), as `/varz` reports it.
    pub http_host: String,
    pub http_port: u16,
    /// The bound port when monitoring is served over TLS (`https_port`); then `http_port` is 0.
    pub https_port: u16,
    /// `http_base_path`, normalized: every endpoint lives under it.
    pub base_path: String,
    pub cpu: process::CpuSampler,
    /// Requests served per path (`/varz`'s `http_req_stats`).
    pub requests: Mutex<BTreeMap<String, u64>>,
}
