//! One client connection: a reader task that parses and routes, a writer task that flushes.
//!
//! The reader runs the core's parser and [`ClientConn`] state machine over each read, and for
//! each PUB matches the subject (through its own match cache) and appends the encoded MSG
//! straight into every recipient's [`Outbound`]. It wakes the writers it touched once, after
//! the whole read is handled. No lock or thread is shared by every message.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use fjord_core::client::conn::{Action, ClientConn, CloseReason, Message};
use fjord_core::proto::encode;
use fjord_core::proto::{ClientOp, Parser};
use fjord_core::route::{self, Delivery};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, error, info, trace};

use crate::index::{ClientHandle, Index, MatchCache, Subscription};
use crate::outbound::Drain;
use crate::server::Shared;

/// Reads below this much spare capacity grow the buffer first.
const READ_CHUNK: usize = 64 * 1024;

pub async fn serve<S>(shared: Arc<Shared>, stream: S, peer: SocketAddr, id: u64)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    serve_inner(shared, stream, peer, id, true).await
}

/// For a TLS connection upgraded after a plain-text INFO (nats-server's default TLS flow):
/// INFO already went out, and a second one would confuse clients awaiting PONG.
pub async fn serve_info_sent<S>(shared: Arc<Shared>, stream: S, peer: SocketAddr, id: u64)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    serve_inner(shared, stream, peer, id, false).await
}

async fn serve_inner<S>(shared: Arc<Shared>, stream: S, peer: SocketAddr, id: u64, info: bool)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    // Loaded once: this connection keeps these limits even if a reload changes them later.
    let config = shared.config();
    let handle =
        Arc::new(ClientHandle::new(id, peer, config.max_pending, shared.shutdown.child_token()));
    shared.register(&handle);
    let now = shared.now();
    let conn = ClientConn::new(id, now, &config, shared.auth());

    // INFO goes out first, through the same buffer as everything else.
    if info {
        handle.outbound.push(&shared.info_line(id, peer));
    }
    let writer_task = tokio::spawn(write_loop(handle.clone(), writer, shared.clone(), peer, id));

    if shared.clients_open.fetch_add(1, Ordering::AcqRel) >= config.max_connections {
        let mut out = Vec::new();
        encode::err(&mut out, "maximum connections exceeded");
        handle.outbound.push(&out);
        handle.outbound.close(CloseReason::MaxConnectionsExceeded);
    } else {
        debug!("{peer} - cid:{id} - Client connection created");
        let mut reader_state = Reader {
            shared: shared.clone(),
            handle: handle.clone(),
            conn,
            parser: Parser::new(Shared::parser_config(&config)),
            cache: MatchCache::default(),
            rng: ChaCha8Rng::seed_from_u64(shared.seed ^ id),
            woken: Vec::new(),
            out: Vec::new(),
            uses_grants: false,
            peer,
        };
        let reason = reader_state.run(reader).await;
        shared.closing(&handle);
        reader_state.cleanup();
        handle.outbound.close(reason);
    }
    let _ = writer_task.await;
    shared.unregister(&handle);
    shared.clients_open.fetch_sub(1, Ordering::AcqRel);
}

async fn write_loop<W>(
    handle: Arc<ClientHandle>,
    mut writer: W,
    shared: Arc<Shared>,
    peer: SocketAddr,
    id: u64,
) where
    W: AsyncWrite + Unpin,
{
    let mut spare = Vec::with_capacity(4096);
    loop {
        match handle.outbound.drain(std::mem::take(&mut spare)) {
            Drain::Idle => handle.outbound.wait().await,
            Drain::Write(mut bytes) => {
                if !write_with_deadline(&mut writer, &bytes, &shared).await {
                    handle.outbound.close(CloseReason::SlowConsumer);
                    debug!("{peer} - cid:{id} - write failed or deadline exceeded");
                    break;
                }
                bytes.clear();
                spare = bytes;
            }
            Drain::WriteThenClose(bytes, reason) => {
                let _ = write_with_deadline(&mut writer, &bytes, &shared).await;
                let _ = writer.shutdown().await;
                debug!("{peer} - cid:{id} - Client connection closed: {reason}");
                break;
            }
            Drain::Abort(reason) => {
                if reason == CloseReason::SlowConsumer {
                    shared.slow_consumers.fetch_add(1, Ordering::Relaxed);
                    info!(
                        "{peer} - cid:{id} - Slow Consumer Detected: MaxPending of {} Exceeded",
                        handle.outbound.max_pending()
                    );
                }
                break;
            }
        }
    }
    // Tell the reader to stop, whoever ended the connection.
    handle.outbound.close(CloseReason::WriteError);
    handle.cancel.cancel();
}

async fn write_with_deadline<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    shared: &Shared,
) -> bool {
    matches!(tokio::time::timeout(shared.write_deadline, writer.write_all(bytes)).await, Ok(Ok(())))
}

struct Reader {
    shared: Arc<Shared>,
    handle: Arc<ClientHandle>,
    conn: ClientConn,
    parser: Parser,
    cache: MatchCache,
    rng: ChaCha8Rng,
    /// Writers to wake once the current read is handled.
    woken: Vec<Arc<ClientHandle>>,
    /// Bytes for this client produced by its own ops (+OK, PONG, -ERR).
    out: Vec<u8>,
    /// Whether this client has `allow_responses`, so its grants must be consulted.
    uses_grants: bool,
    peer: SocketAddr,
}

impl Reader {
    async fn run<R: AsyncRead + Unpin>(&mut self, mut reader: R) -> CloseReason {
        let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
        // Made once and kept registered, not re-made (and re-registered) on every read.
        let token = self.handle.cancel.clone();
        let kicked = token.cancelled();
        let timer = tokio::time::sleep_until(self.shared.deadline(self.conn.poll_timeout()));
        tokio::pin!(kicked, timer);
        loop {
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            // Biased, rarest first: a kick or a due timer is seen even while the client keeps
            // the socket readable, and no random branch order is drawn per read (a simulated
            // run replays exactly).
            tokio::select! {
                biased;
                _ = &mut kicked => return CloseReason::ServerShutdown,
                _ = &mut timer => {
                    let now = self.shared.now();
                    let closed = self.conn.on_timeout(now, &mut self.out);
                    self.flush_own();
                    // A PING to a silent client must wake its writer here: no read will come
                    // to do it (the PONG waits on this PING), and later deliveries do not wake
                    // a writer whose buffer is not empty.
                    self.wake_touched();
                    if let Some(reason) = closed {
                        return reason;
                    }
                }
                read = reader.read_buf(&mut buf) => match read {
                    Ok(0) => return CloseReason::ClientClosed,
                    Ok(_) => {
                        if let Some(reason) = self.handle_bytes(&mut buf) {
                            return reason;
                        }
                    }
                    Err(_) => return CloseReason::ReadError,
                },
            }
            if self.handle.outbound.is_closing() {
                return CloseReason::SlowConsumer;
            }
            timer.as_mut().reset(self.shared.deadline(self.conn.poll_timeout()));
        }
    }

    /// Handles every complete op in `buf`, then drops the consumed bytes.
    fn handle_bytes(&mut self, buf: &mut Vec<u8>) -> Option<CloseReason> {
        let now = self.shared.now();
        self.handle.last_activity.store(now.as_nanos(), Ordering::Relaxed);
        let mut pos = 0;
        let mut closing = None;
        while pos < buf.len() {
            match self.parser.parse(&buf[pos..]) {
                Ok(Some((op, used))) => {
                    if self.shared.trace.load(Ordering::Relaxed) {
                        let op = crate::logging::TracedOp(&op);
                        trace!("{} - cid:{} - <<- {op}", self.peer, self.conn.id());
                    }
                    pos += used;
                    if self.handle.has_expired_sids.load(Ordering::Acquire) {
                        self.forget_expired();
                    }
                    let is_connect = matches!(op, ClientOp::Connect(_));
                    let action = if self.uses_grants {
                        let mut grants = self.handle.grants.lock();
                        self.conn.handle_op(now, op, &mut self.out, Some(&mut grants))
                    } else {
                        self.conn.handle_op(now, op, &mut self.out, None)
                    };
                    if is_connect {
                        self.after_connect();
                    }
                    if let Some(reason) = self.act(now, action) {
                        closing = Some(reason);
                        break;
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    let reason = self.conn.handle_parse_error(&err, &mut self.out);
                    error!("{} - cid:{} - {reason}", self.peer, self.conn.id());
                    closing = Some(reason);
                    break;
                }
            }
        }
        buf.drain(..pos);
        self.flush_own();
        self.wake_touched();
        closing
    }

    /// Wakes, once each, the writers whose buffers this task filled since the last wake.
    fn wake_touched(&mut self) {
        for handle in self.woken.drain(..) {
            handle.outbound.wake();
        }
    }

    fn act(&mut self, now: fjord_core::time::Instant, action: Action<'_>) -> Option<CloseReason> {
        match action {
            Action::None => None,
            Action::Publish(msg) => {
                // +OK (verbose) precedes the echo of this very message, as in nats-server.
                self.flush_own();
                self.route(now, msg);
                None
            }
            Action::Subscribe { sid, subject, queue } => {
                self.handle.takes_headers.store(self.conn.takes_headers(), Ordering::Relaxed);
                let sub = Arc::new(Subscription {
                    client: self.handle.clone(),
                    sid: sid.to_vec(),
                    subject: subject.to_vec(),
                    queue: queue.map(<[u8]>::to_vec),
                    max: Default::default(),
                    deny_filter: self
                        .conn
                        .permissions()
                        .filter(|p| p.needs_delivery_check(subject))
                        .cloned(),
                    delivered: Default::default(),
                });
                if self.shared.index.insert(sub.clone()).is_ok() {
                    self.handle.subs.lock().insert(sid.to_vec(), sub);
                }
                None
            }
            Action::Unsubscribe { sid, subject, queue, max } => {
                match max {
                    Some(max) => {
                        let sub = self.handle.subs.lock().get(sid).cloned();
                        if let Some(sub) = sub {
                            sub.max.store(max, Ordering::Release);
                            if sub.delivered.load(Ordering::Acquire) >= max {
                                self.remove_sub(&sub);
                            }
                        }
                    }
                    None => {
                        let sub = self.handle.subs.lock().remove(sid);
                        if let Some(sub) = sub {
                            self.shared.index.remove(&subject, queue.as_deref(), &sub);
                        }
                    }
                }
                None
            }
            Action::Close(reason) => Some(reason),
        }
    }

    fn route(&mut self, now: fjord_core::time::Instant, msg: Message<'_>) {
        let matches = self.cache.lookup(&self.shared.index, msg.subject);
        let (me, echo) = (self.conn.id(), self.conn.echo());
        let (rng, woken, index) = (&mut self.rng, &mut self.woken, &self.shared.index);
        let delivered = route::fan_out(
            &matches,
            || rng.random(),
            |s| route::echo_allowed(me, echo, s.client.id) && !s.client.outbound.is_closing(),
            |s| deliver(index, woken, now, s, &msg),
        );
        self.handle.stats.record_in(msg.headers.map_or(0, <[u8]>::len) + msg.payload.len());
        if delivered == 0 {
            if let Some(reply) = msg.reply {
                if self.conn.wants_no_responders() {
                    self.no_responders(msg.subject, reply);
                }
            }
        }
    }

    /// The 503 status nats-server sends a requester whose request reached nobody: delivered to
    /// the requester's own subscriptions that match the reply subject.
    fn no_responders(&mut self, subject: &[u8], reply: &[u8]) {
        let matches = self.shared.index.lookup(reply);
        let headers = encode::no_responders_headers(subject);
        for sub in route::no_responders_targets(&matches, self.conn.id(), |s| s.client.id) {
            let wake = sub.client.outbound.push_with(|out| {
                encode::msg(out, reply, &sub.sid, None, Some(&headers), b"", true)
            });
            if wake {
                self.woken.push(sub.client.clone());
            }
        }
    }

    fn remove_sub(&mut self, sub: &Arc<Subscription>) {
        self.shared.index.remove(&sub.subject, sub.queue.as_deref(), sub);
        self.handle.subs.lock().remove(&sub.sid);
        self.conn.forget_subscription(&sub.sid);
    }

    fn forget_expired(&mut self) {
        self.handle.has_expired_sids.store(false, Ordering::Release);
        let sids = std::mem::take(&mut *self.handle.expired_sids.lock());
        for sid in sids {
            self.handle.subs.lock().remove(&sid);
            self.conn.forget_subscription(&sid);
        }
    }

    fn flush_own(&mut self) {
        if self.out.is_empty() {
            return;
        }
        if self.handle.outbound.push(&self.out) {
            self.woken.push(self.handle.clone());
        }
        self.out.clear();
    }

    /// CONNECT decides what this client takes; publish that to the senders' view of it.
    fn after_connect(&mut self) {
        *self.handle.connect.lock() = Some(self.conn.options().clone());
        self.handle.takes_headers.store(self.conn.takes_headers(), Ordering::Relaxed);
        let rule = self.conn.permissions().and_then(|p| p.allow_responses.clone());
        self.uses_grants = rule.is_some();
        self.handle.has_response_rule.store(rule.is_some(), Ordering::Relaxed);
        *self.handle.response_rule.lock() = rule;
    }

    fn cleanup(&mut self) {
        let subs = std::mem::take(&mut *self.handle.subs.lock());
        for (_, sub) in subs {
            self.shared.index.remove(&sub.subject, sub.queue.as_deref(), &sub);
        }
        self.wake_touched();
    }
}

/// Appends the MSG to the subscriber's buffer, if the subscription still takes it. Returns
/// whether it was delivered. Free-standing so `route` can lend the rest of the reader to the
/// random source at the same time.
fn deliver(
    index: &Index,
    woken: &mut Vec<Arc<ClientHandle>>,
    now: fjord_core::time::Instant,
    sub: &Arc<Subscription>,
    msg: &Message<'_>,
) -> bool {
    if sub.deny_filter.as_ref().is_some_and(|p| p.delivery_denied(msg.subject)) {
        return false;
    }
    let n = sub.delivered.fetch_add(1, Ordering::AcqRel) + 1;
    match route::count_delivery(n, sub.max.load(Ordering::Acquire)) {
        Delivery::Skip => return false,
        Delivery::DeliverAndExpire => expire(index, sub),
        Delivery::Deliver => {}
    }
    let takes_headers = sub.client.takes_headers.load(Ordering::Relaxed);
    let size = msg.headers.map_or(0, <[u8]>::len) + msg.payload.len();
    sub.client.stats.record_out(size);
    let wake = sub.client.outbound.push_with(|out| {
        encode::msg(out, msg.subject, &sub.sid, msg.reply, msg.headers, msg.payload, takes_headers)
    });
    if let Some(reply) = msg.reply {
        if sub.client.has_response_rule.load(Ordering::Relaxed) {
            if let Some(rule) = sub.client.response_rule.lock().as_ref() {
                sub.client.grants.lock().grant(reply, rule, now);
            }
        }
    }
    if wake {
        woken.push(sub.client.clone());
    }
    true
}

/// `UNSUB max` reached by a delivery: drop the subscription from the index now, and tell its
/// owner (maybe another connection) to forget the sid.
fn expire(index: &Index, sub: &Arc<Subscription>) {
    index.remove(&sub.subject, sub.queue.as_deref(), sub);
    sub.client.expired_sids.lock().push(sub.sid.clone());
    sub.client.has_expired_sids.store(true, Ordering::Release);
}
