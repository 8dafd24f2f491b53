//! The JetStream actor: drives `fjord_core::jetstream::Manager` on its own thread.
//!
//! Wiring, chosen so that connection.rs and index.rs need no change: the actor is an internal
//! client. It has a `ClientHandle` (id 0, which no connection gets) whose subscriptions sit in
//! the shared index like anyone's, on `$JS.API.>`, `$JS.ACK.>` and every stream's subjects. A
//! publisher's reader routes to it exactly as to a socket client, appending MSG/HMSG frames to
//! its `Outbound`; instead of a writer task flushing that buffer to a socket, the actor drains it
//! and parses the frames back (`frames.rs`). Answers and deliveries go the other way through
//! the same index lookup and `Outbound::push_with` a publisher's reader uses.
//!
//! Batching is group commit: one drain is one batch; every frame in it is handled, then
//! `Manager::flush` syncs each touched store once and only then releases the PubAcks, API
//! answers and deliveries. The actor runs on a dedicated thread (with a current-thread tokio
//! runtime for its timers) because the stores call `fsync` synchronously through `FsDisk`;
//! blocking there stalls no connection task.
//!
//! The internal outbound is unbounded (`usize::MAX` max_pending): a slow-consumer cut would
//! silently drop publishes. Backpressure for JetStream publishers is future work.

mod frames;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fjord_core::disk::DiskError;
use fjord_core::jetstream::manager::Manager;
use fjord_core::jetstream::{Now, Outgoing};
use fjord_core::proto::encode;
use fjord_core::route::{self, Delivery};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tracing::{error, info, warn};

use crate::disk::FsDisk;
use crate::index::{ClientHandle, Subscription};
use crate::outbound::Drain;
use crate::server::Shared;

/// The client id of the JetStream internal client; connections are numbered from 1.
const SYSTEM_CLIENT_ID: u64 = 0;
/// Max age and inactive ephemerals are checked at least this often.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// How many times in one commit JetStream's own output may be fed back to it (a RePublish
/// chain through this many streams is delivered; a loop stops here).
const INTERNAL_ROUNDS: usize = 16;

/// Opens the JetStream state under `store_dir` (recovering streams and consumers) and starts
/// the actor. Returns once recovery is done, so the server is ready only with JetStream up.
///
/// With `encryption`, file stores are encrypted at rest; the store randomness is drawn from the
/// OS here (core has none of its own).
pub fn start(
    shared: Arc<Shared>,
    store_dir: PathBuf,
    encryption: Option<crate::options::JetStreamEncryption>,
) -> Result<(), String> {
    let meta = FsDisk::new(&store_dir).map_err(|e| format!("{}: {e}", store_dir.display()))?;
    let root = store_dir.clone();
    let factory = Box::new(move || {
        FsDisk::new(&root).map_err(|e| DiskError::Io {
            op: "open",
            path: root.display().to_string(),
            detail: e.to_string(),
        })
    });
    let encrypted = encryption.is_some();
    let encryption = encryption.map(|e| {
        fjord_core::store::EncryptionConfig::new(e.key.as_bytes(), e.cipher, rand::random())
    });
    let mut manager = Manager::open_with(meta, factory, now(&shared), shared.seed, encryption)
        .map_err(|e| format!("JetStream recovery failed: {e}"))?;
    let config = shared.config();
    // As nats-server: the name defaults to the server id.
    let name = if config.server_name.is_empty() { &config.server_id } else { &config.server_name };
    manager.set_server_name(name);
    let options = shared.options.load();
    manager.set_limits(fjord_core::jetstream::resources::ServerLimits {
        max_memory: options.jetstream_max_memory.unwrap_or(-1),
        max_store: options.jetstream_max_file.unwrap_or(-1),
    });
    for (stream, report) in manager.take_recoveries() {
        log_recovery(&stream, &report);
    }
    let handle = Arc::new(ClientHandle::new(
        SYSTEM_CLIENT_ID,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        usize::MAX,
        shared.shutdown.child_token(),
    ));
    handle.takes_headers.store(true, Ordering::Relaxed);
    let (view_tx, views) = tokio::sync::mpsc::unbounded_channel();
    // Set once: JetStream starts once per process.
    let _ = shared.jetstream_views.set(view_tx);
    let mut actor = Actor {
        views,
        shared: shared.clone(),
        handle,
        manager,
        subs: Vec::new(),
        rng: ChaCha8Rng::seed_from_u64(shared.seed ^ 0x6a73),
        woken: Vec::new(),
        flushed_gen: 0,
    };
    actor.resubscribe();
    info!("Starting JetStream");
    info!("  Storage Directory: {}", store_dir.display());
    for (what, limit) in
        [("Max Memory", options.jetstream_max_memory), ("Max Storage", options.jetstream_max_file)]
    {
        if let Some(bytes) = limit.filter(|b| *b >= 0) {
            info!("  {what}: {bytes} bytes");
        }
    }
    info!("  API Level: {}", fjord_core::jetstream::manager::JS_API_LEVEL);
    if encrypted {
        info!("  Encryption: ChaCha20-Poly1305");
    }
    std::thread::Builder::new()
        .name("jetstream".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
                Ok(rt) => rt,
                Err(e) => {
                    error!("JetStream actor runtime: {e}");
                    return;
                }
            };
            rt.block_on(actor.run());
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn now(shared: &Shared) -> Now {
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
    Now { mono: shared.now(), wall }
}

/// A monitoring request for the manager's view (`Manager::monitor_view`), answered by the
/// actor between batches: the manager lives on the actor's thread only.
pub type ViewRequest = tokio::sync::oneshot::Sender<serde_json::Value>;

struct Actor {
    /// `/jsz` requests.
    views: tokio::sync::mpsc::UnboundedReceiver<ViewRequest>,
    shared: Arc<Shared>,
    handle: Arc<ClientHandle>,
    manager: Manager<FsDisk>,
    subs: Vec<Arc<Subscription>>,
    rng: ChaCha8Rng,
    woken: Vec<Arc<ClientHandle>>,
    /// Index generation at the last flush's interest checks.
    flushed_gen: u64,
}

impl Actor {
    async fn run(&mut self) {
        let mut spare = Vec::new();
        let shutdown = self.shared.shutdown.clone();
        loop {
            match self.handle.outbound.drain(std::mem::take(&mut spare)) {
                Drain::Write(mut bytes) => {
                    let now = now(&self.shared);
                    for f in frames::Frames::new(&bytes) {
                        self.manager.handle(now, f.subject, f.reply, f.headers, f.payload);
                    }
                    bytes.clear();
                    spare = bytes;
                    self.commit(now);
                    // Under constant load the loop never idles; answer monitoring here too.
                    while let Ok(reply) = self.views.try_recv() {
                        let _ = reply.send(self.manager.monitor_view(now));
                    }
                }
                Drain::Idle => {
                    let wake = self
                        .manager
                        .poll_timeout()
                        .map_or(self.shared.deadline(None), |t| self.shared.deadline(Some(t)));
                    let idle = tokio::time::Instant::now() + IDLE_TICK;
                    // A push consumer without a subscriber delivers as soon as one subscribes:
                    // the index wakes us on the next SUB (registered before the generation
                    // check, so one racing it is not missed).
                    let awaiting = self.manager.awaiting_interest();
                    let shared = self.shared.clone();
                    let index = &shared.index;
                    index.watch_subscriptions(awaiting);
                    let subscribed = index.subscribed();
                    tokio::pin!(subscribed);
                    subscribed.as_mut().enable();
                    let missed = awaiting && index.generation() != self.flushed_gen;
                    tokio::select! {
                        _ = self.handle.outbound.wait() => {}
                        Some(reply) = self.views.recv() => {
                            let _ = reply.send(self.manager.monitor_view(now(&self.shared)));
                        }
                        _ = subscribed, if awaiting && !missed => {
                            let now = now(&self.shared);
                            self.commit(now);
                        }
                        _ = std::future::ready(()), if missed => {
                            let now = now(&self.shared);
                            self.commit(now);
                        }
                        _ = tokio::time::sleep_until(wake.min(idle)) => {
                            let now = now(&self.shared);
                            self.manager.tick(now);
                            self.commit(now);
                        }
                        _ = shutdown.cancelled() => break,
                    }
                }
                Drain::WriteThenClose(..) | Drain::Abort(_) => break,
            }
        }
        for sub in self.subs.drain(..) {
            self.shared.index.remove(&sub.subject, None, &sub);
        }
    }

    /// Group commit, then everything it released.
    fn commit(&mut self, now: Now) {
        self.flush(now);
        // What JetStream publishes itself (RePublish, advisories, answers, deliveries) is
        // routed like a client's publish, JetStream's own subscriptions included: a stream
        // capturing `$JS.EVENT.ADVISORY.>` or a RePublish destination stores it, as in
        // nats-server. Those stored in turn may publish again, so the rounds continue until
        // nothing comes back, up to a bound: nats-server refuses RePublish cycles on a
        // stream's own subjects at config time, but two streams republishing into each other
        // would feed each other forever.
        let mut rounds = 0;
        loop {
            let mut to_self = Vec::new();
            while let Some(out) = self.manager.poll_output() {
                if self.send(&out) {
                    to_self.push(out);
                }
            }
            for h in self.woken.drain(..) {
                h.outbound.wake();
            }
            if to_self.is_empty() {
                break;
            }
            if rounds == INTERNAL_ROUNDS {
                warn!(
                    "JetStream: {} internal messages dropped: its own publishes kept feeding its streams for {INTERNAL_ROUNDS} rounds (streams republishing into each other?)",
                    to_self.len()
                );
                break;
            }
            rounds += 1;
            for o in &to_self {
                let (headers, reply) = (o.headers.as_deref(), o.reply.as_deref());
                self.manager.handle_own(now, &o.to, &o.subject, reply, headers, &o.payload);
            }
            self.flush(now);
        }
    }

    /// Syncs what the handled messages touched (`Manager::flush`), which releases their
    /// answers and deliveries.
    fn flush(&mut self, now: Now) {
        let index = &self.shared.index;
        // Read before the interest checks, so a SUB racing them is seen by the next poll.
        self.flushed_gen = index.generation();
        // A push consumer is active only with a subscriber other than JetStream itself (as in
        // nats-server, where a stream on the deliver subject alone leaves it inactive).
        self.manager.flush(now, &|subject| {
            let m = index.lookup(subject.as_bytes());
            m.plain.iter().any(|s| s.client.id != SYSTEM_CLIENT_ID) || !m.queues.is_empty()
        });
        // Subscribe before answering: a client that got its stream-create answer may publish
        // at once, and must find the stream's subjects already routed here.
        if self.manager.take_interest_changed() {
            self.resubscribe();
        }
    }

    fn resubscribe(&mut self) {
        for sub in self.subs.drain(..) {
            self.shared.index.remove(&sub.subject, None, &sub);
        }
        for (i, subject) in self.manager.subjects().into_iter().enumerate() {
            let sub = Arc::new(Subscription {
                client: self.handle.clone(),
                sid: format!("js{i}").into_bytes(),
                subject: subject.into_bytes(),
                queue: None,
                max: Default::default(),
                deny_filter: None,
                delivered: Default::default(),
            });
            if self.shared.index.insert(sub.clone()).is_ok() {
                self.subs.push(sub);
            }
        }
    }

    /// Routes one output like a publish to `out.to`, carried with subject `out.subject`, to
    /// every subscriber but JetStream itself; says whether JetStream's own subscriptions want
    /// it too (the caller hands it back to the manager once, however many of them match).
    fn send(&mut self, out: &Outgoing) -> bool {
        let matches = self.shared.index.lookup(out.to.as_bytes());
        let to_self = matches.plain.iter().any(|s| s.client.id == SYSTEM_CLIENT_ID);
        let (rng, woken, index) = (&mut self.rng, &mut self.woken, &self.shared.index);
        route::fan_out(
            &matches,
            || rng.random(),
            // Not through its own outbound: the caller feeds it back in bounded rounds.
            |s: &Arc<Subscription>| {
                s.client.id != SYSTEM_CLIENT_ID && !s.client.outbound.is_closing()
            },
            |s| {
                if s.deny_filter.as_ref().is_some_and(|p| p.delivery_denied(out.subject.as_bytes()))
                {
                    return false;
                }
                let n = s.delivered.fetch_add(1, Ordering::AcqRel) + 1;
                match route::count_delivery(n, s.max.load(Ordering::Acquire)) {
                    Delivery::Skip => return false,
                    Delivery::DeliverAndExpire => {
                        // As connection.rs does for `UNSUB max`: out of the index now, and
                        // the owner forgets the sid before its next SUB/UNSUB.
                        index.remove(&s.subject, s.queue.as_deref(), s);
                        s.client.expired_sids.lock().push(s.sid.clone());
                        s.client.has_expired_sids.store(true, Ordering::Release);
                    }
                    Delivery::Deliver => {}
                }
                let takes_headers = s.client.takes_headers.load(Ordering::Relaxed);
                let size = out.headers.as_ref().map_or(0, Vec::len) + out.payload.len();
                s.client.stats.record_out(size);
                let wake = s.client.outbound.push_with(|buf| {
                    encode::msg(
                        buf,
                        out.subject.as_bytes(),
                        &s.sid,
                        out.reply.as_deref().map(str::as_bytes),
                        out.headers.as_deref(),
                        &out.payload,
                        takes_headers,
                    )
                });
                if wake {
                    woken.push(s.client.clone());
                }
                true
            },
        );
        to_self
    }
}

/// Says what a stream's store recovery found that an operator must know: damage (sequences
/// lost, or kept though a lost record may have removed them), a torn tail cut (a write that was
/// never acknowledged), a checkpoint that could not be used.
fn log_recovery(stream: &str, report: &fjord_core::store::RecoveryReport) {
    if let Some(why) = &report.checkpoint_rejected {
        warn!("JetStream stream '{stream}': index checkpoint not used ({why}); rebuilt from the message blocks");
    }
    if report.torn_bytes > 0 {
        warn!(
            "JetStream stream '{stream}': cut a torn tail of {} bytes (a write never acknowledged)",
            report.torn_bytes
        );
    }
    if !report.corrupt.is_empty() {
        let ranges: Vec<String> = report
            .corrupt
            .iter()
            .map(|(from, to)| match to {
                Some(to) if to == from => format!("{from}"),
                Some(to) => format!("{from}-{to}"),
                None => format!("{from}-"),
            })
            .collect();
        error!(
            "JetStream stream '{stream}': damaged records found at recovery; sequences {} may be lost or stale",
            ranges.join(", ")
        );
    }
}
