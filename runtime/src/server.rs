//! The server: the listener, the state every connection shares, and shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use fjord_core::client::auth::AuthConfig;
use fjord_core::config::CoreConfig;
use fjord_core::proto::info::ServerInfo;
use fjord_core::proto::ParserConfig;
use fjord_core::time::Instant;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::connection;
use crate::index::{ClientHandle, ClientStats, Index};
use crate::monitor::closed::ClosedRing;
use crate::monitor::connz::ConnRecord;
use crate::net::Listener;
use crate::options::Options;
use crate::tls::TlsServer;

/// What every connection task shares. Nothing in here is touched per message except the
/// read-mostly index generation (see `index.rs`).
pub struct Shared {
    /// Limits and identity. Read once per new connection ([`Shared::config`]); a reload swaps
    /// it, so new connections get the new limits and open ones keep the ones they started with
    /// (no per-message load).
    pub config: ArcSwap<CoreConfig>,
    /// Read once per new connection ([`Shared::auth`]); a configuration reload swaps it.
    pub auth: ArcSwap<AuthConfig>,
    /// The options the server runs with (for `/varz` and reload comparisons); swapped by reload.
    pub options: ArcSwap<Options>,
    pub config_load_time: Mutex<SystemTime>,
    /// Set when clients must speak TLS; read once per accepted connection.
    pub tls: ArcSwapOption<TlsServer>,
    /// Recently closed connections for `/connz?state=closed`.
    pub closed: Mutex<ClosedRing>,
    /// Snapshots taken as a connection starts closing, while its subscriptions still exist;
    /// completed and moved to `closed` when it is unregistered.
    closing: Mutex<FxHashMap<u64, ConnRecord>>,
    pub stale_connections: AtomicU64,
    /// Cancelled when lame duck mode begins: the listener stops accepting.
    pub lame_duck: CancellationToken,
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
    /// Protocol tracing (`-V`, `trace`); a reload flips it, and connections read it per op.
    pub trace: AtomicBool,
    /// Seeds each connection's queue-group choices (random in production, fixed in a
    /// simulation so a run replays).
    pub seed: u64,
    /// Set when JetStream runs: where `/jsz` asks the JetStream actor for its view.
    pub jetstream_views:
        OnceLock<tokio::sync::mpsc::UnboundedSender<crate::jetstream::ViewRequest>>,
    start: tokio::time::Instant,
}

impl Shared {
    pub fn new(config: CoreConfig, trace: bool, seed: u64) -> Self {
        Shared {
            auth: ArcSwap::from_pointee(config.auth.clone()),
            options: ArcSwap::from_pointee(Options::default()),
            config_load_time: Mutex::new(SystemTime::now()),
            tls: ArcSwapOption::empty(),
            closed: Mutex::new(ClosedRing::default()),
            closing: Mutex::new(FxHashMap::default()),
            stale_connections: AtomicU64::new(0),
            lame_duck: CancellationToken::new(),
            config: ArcSwap::from_pointee(config),
            index: Index::default(),
            clients_open: AtomicUsize::new(0),
            clients: Mutex::new(BTreeMap::new()),
            total_connections: AtomicU64::new(0),
            closed_stats: ClientStats::default(),
            started: SystemTime::now(),
            slow_consumers: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
            write_deadline: Duration::from_secs(10),
            trace: AtomicBool::new(trace),
            seed,
            jetstream_views: OnceLock::new(),
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
        // Listed as closed before it leaves the open list, so monitoring never misses it.
        self.record_closed(handle);
        self.clients.lock().remove(&handle.id);
        let (from, to) = (&handle.stats, &self.closed_stats);
        to.in_msgs.fetch_add(from.in_msgs.load(Ordering::Relaxed), Ordering::Relaxed);
        to.in_bytes.fetch_add(from.in_bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        to.out_msgs.fetch_add(from.out_msgs.load(Ordering::Relaxed), Ordering::Relaxed);
        to.out_bytes.fetch_add(from.out_bytes.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The authorization rules a new connection starts with.
    pub fn auth(&self) -> Arc<AuthConfig> {
        self.auth.load_full()
    }

    /// Called as a connection starts closing, before its subscriptions are dropped, so that
    /// `/connz?state=closed` can still list them.
    pub fn closing(&self, handle: &ClientHandle) {
        let record = ConnRecord::open(handle, self);
        self.closing.lock().insert(handle.id, record);
    }

    fn record_closed(&self, handle: &ClientHandle) {
        let reason = handle.outbound.close_reason();
        if reason == Some(fjord_core::client::conn::CloseReason::StaleConnection) {
            self.stale_connections.fetch_add(1, Ordering::Relaxed);
        }
        let fresh = ConnRecord::open(handle, self);
        let mut record = match self.closing.lock().remove(&handle.id) {
            Some(early) => ConnRecord { subs: early.subs, ..fresh },
            None => fresh,
        };
        record.pending_bytes = 0;
        record.stop = Some(SystemTime::now());
        record.reason = Some(reason.map_or_else(|| "Client Closed".to_string(), |r| r.to_string()));
        self.closed.lock().push(record);
    }

    /// The configuration a new connection starts with; it keeps this one across reloads.
    pub fn config(&self) -> Arc<CoreConfig> {
        self.config.load_full()
    }

    pub fn parser_config(config: &CoreConfig) -> ParserConfig {
        ParserConfig { max_control_line: config.max_control_line, max_payload: config.max_payload }
    }

    pub fn info_line(&self, client_id: u64, peer: SocketAddr) -> Vec<u8> {
        self.info(client_id, peer).to_line()
    }

    /// The INFO a client is sent on accept (and, changed, in lame duck mode), with the limits
    /// new connections get now.
    pub fn info(&self, client_id: u64, peer: SocketAddr) -> ServerInfo {
        let config = self.config.load();
        let mut info = ServerInfo::for_client(&config, client_id, peer.ip().to_string());
        info.auth_required = self.auth.load().required();
        info.tls_required = self.tls.load().is_some();
        info
    }
}

/// A bound server, ready to accept. Generic over the network so a simulation can run the
/// real accept loop and connection tasks on its own sockets; production uses tokio's.
pub struct Server<L: Listener = TcpListener> {
    shared: Arc<Shared>,
    listener: L,
}

impl Server<TcpListener> {
    pub async fn bind(
        mut config: CoreConfig,
        host: &str,
        port: i32,
        trace: bool,
    ) -> std::io::Result<Server> {
        let port = if port < 0 { 0 } else { port as u16 };
        let listener = listen(host, port).await?;
        config.host = host.to_string();
        Server::on(config, listener, trace, rand::random())
    }
}

impl<L: Listener> Server<L> {
    /// A server on an already bound listener; `seed` drives its queue-group choices.
    pub fn on(
        mut config: CoreConfig,
        listener: L,
        trace: bool,
        seed: u64,
    ) -> std::io::Result<Self> {
        config.port = listener.local_addr()?.port();
        Ok(Server { shared: Arc::new(Shared::new(config, trace, seed)), listener })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Accepts until `shutdown` is cancelled, then closes every connection.
    pub async fn run(self) {
        let (shared, listener) = (self.shared, self.listener);
        let next_id = AtomicU64::new(1);
        loop {
            // Biased: shutdown and lame duck win over a ready accept (no random branch
            // order, which also keeps a simulated run replayable).
            tokio::select! {
                biased;
                _ = shared.shutdown.cancelled() => break,
                // Lame duck mode: stop accepting; the lame-duck task closes the clients and
                // then shuts the server down.
                _ = shared.lame_duck.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                        match shared.tls.load_full() {
                            Some(tls) => {
                                tokio::spawn(crate::tls::serve(shared.clone(), tls, stream, peer, id));
                            }
                            None => {
                                tokio::spawn(connection::serve(shared.clone(), stream, peer, id));
                            }
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        error!("Error accepting client connection: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
            }
        }
        // Closing the listener refuses new clients at once, so they reconnect elsewhere.
        drop(listener);
        shared.shutdown.cancelled().await;
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

/// Binds the client listener with a deep accept queue. tokio's default backlog (128 here) drops
/// SYNs when many clients connect at once (a thousand reconnecting after a restart), and each
/// drop costs the client a one-second retransmit; nats-server, like Go, asks for the kernel's
/// maximum (`somaxconn`, to which larger requests are capped).
async fn listen(host: &str, port: u16) -> std::io::Result<TcpListener> {
    const BACKLOG: u32 = 65535;
    let mut last_err = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, format!("no address for {host}"))
    }))
}
