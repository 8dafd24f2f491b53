//! The server: the listener, the state every connection shares, and shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use fjord_core::client::auth::AuthConfig;
use fjord_core::config::{CoreConfig, COMPATIBLE_NATS_VERSION, FJORD_VERSION};
use fjord_core::proto::info::ServerInfo;
use fjord_core::proto::ParserConfig;
use fjord_core::time::Instant;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::connection;
use crate::index::{ClientHandle, ClientStats, Index};

/// What every connection task shares. Nothing in here is touched per message except the
/// read-mostly index generation (see `index.rs`).
pub struct Shared {
    pub config: CoreConfig,
    pub auth: Arc<AuthConfig>,
    pub index: Index,
    pub clients_open: AtomicUsize,
    /// Every open connection, for monitoring and lame-duck mode; touched on connect/close only.
    pub clients: Mutex<BTreeMap<u64, Arc<ClientHandle>>>,
    pub total_connections: AtomicU64,
    /// Counters of connections already closed, so server totals do not go back.
    pub closed_stats: ClientStats,
    pub started: SystemTime,
    pub slow_consumers: AtomicU64,
    pub shutdown: CancellationToken,
    pub write_deadline: Duration,
    pub trace: bool,
    /// Seeds each connection's queue-group choices.
    pub seed: u64,
    start: tokio::time::Instant,
}

impl Shared {
    pub fn new(config: CoreConfig, trace: bool) -> Self {
        Shared {
            auth: Arc::new(config.auth.clone()),
            config,
            index: Index::default(),
            clients_open: AtomicUsize::new(0),
            clients: Mutex::new(BTreeMap::new()),
            total_connections: AtomicU64::new(0),
            closed_stats: ClientStats::default(),
            started: SystemTime::now(),
            slow_consumers: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
            write_deadline: Duration::from_secs(10),
            trace,
            seed: rand::random(),
            start: tokio::time::Instant::now(),
        }
    }

    /// Core's notion of now: nanoseconds since the server started.
    pub fn now(&self) -> Instant {
        Instant(self.start.elapsed().as_nanos() as u64)
    }

    /// The tokio deadline for a core instant (far away when core wants no wake-up).
    pub fn deadline(&self, at: Option<Instant>) -> tokio::time::Instant {
        match at {
            Some(at) => self.start + Duration::from_nanos(at.0),
            None => tokio::time::Instant::now() + Duration::from_secs(86400),
        }
    }

    pub fn register(&self, handle: &Arc<ClientHandle>) {
        self.total_connections.fetch_add(1, Ordering::Relaxed);
        self.clients.lock().insert(handle.id, handle.clone());
    }

    pub fn unregister(&self, handle: &ClientHandle) {
        self.clients.lock().remove(&handle.id);
        let (from, to) = (&handle.stats, &self.closed_stats);
        to.in_msgs.fetch_add(from.in_msgs.load(Ordering::Relaxed), Ordering::Relaxed);
        to.in_bytes.fetch_add(from.in_bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        to.out_msgs.fetch_add(from.out_msgs.load(Ordering::Relaxed), Ordering::Relaxed);
        to.out_bytes.fetch_add(from.out_bytes.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    pub fn parser_config(&self) -> ParserConfig {
        ParserConfig {
            max_control_line: self.config.max_control_line,
            max_payload: self.config.max_payload,
        }
    }

    pub fn info_line(&self, client_id: u64, peer: SocketAddr) -> Vec<u8> {
        ServerInfo {
            server_id: self.config.server_id.clone(),
            server_name: self.config.server_name.clone(),
            version: COMPATIBLE_NATS_VERSION.to_string(),
            proto: 1,
            go: "fjord".to_string(),
            host: self.config.host.clone(),
            port: self.config.port,
            headers: self.config.headers,
            auth_required: self.auth.required(),
            tls_required: false,
            max_payload: self.config.max_payload,
            jetstream: self.config.jetstream,
            client_id,
            client_ip: peer.ip().to_string(),
            nonce: None,
            ldm: false,
            fjord_version: FJORD_VERSION.to_string(),
        }
        .to_line()
    }
}

/// A bound server, ready to accept.
pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
}

impl Server {
    pub async fn bind(
        mut config: CoreConfig,
        host: &str,
        port: i32,
        trace: bool,
    ) -> std::io::Result<Server> {
        let port = if port < 0 { 0 } else { port as u16 };
        let listener = TcpListener::bind((host, port)).await?;
        let local = listener.local_addr()?;
        config.host = host.to_string();
        config.port = local.port();
        Ok(Server { shared: Arc::new(Shared::new(config, trace)), listener })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Accepts until `shutdown` is cancelled, then closes every connection.
    pub async fn run(self) {
        let shared = self.shared;
        let next_id = AtomicU64::new(1);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(connection::serve(shared.clone(), stream, peer, id));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        error!("Error accepting client connection: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                _ = shared.shutdown.cancelled() => break,
            }
        }
        info!("Server Exiting..");
    }
}

/// A server id in nats-server's shape: 56 characters of base32, starting with `N`.
pub fn new_server_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut id = String::from("N");
    for _ in 0..55 {
        id.push(ALPHABET[rand::random_range(0..ALPHABET.len())] as char);
    }
    id
}
