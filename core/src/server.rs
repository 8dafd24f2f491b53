//! One node's core pub/sub on one thread, sans-IO: clients, subscriptions, delivery.
//!
//! The runtime (`runtime/src/connection.rs`) composes the same pieces (parser, [`ClientConn`],
//! [`Sublist`], [`route`], [`encode`]) concurrently; this composes them sequentially, for the
//! simulator and for tests, and must deliver by exactly the same rules:
//!
//! - a PUB goes to every plain subscription that matches, unless the publisher asked for no
//!   echo and owns it ([`route::echo_allowed`]), then to one member of each matching queue
//!   group ([`route::pick_queue_member`] with a draw from the server's RNG, one draw per
//!   group, skipping members that are closing or would be echoes);
//! - the publisher's own `+OK` (verbose) goes out before the echo of that PUB;
//! - `UNSUB sid max` counts every delivery the subscription ever had: the delivery that reaches
//!   `max` removes it from the index, later matches are not delivered;
//! - a request (PUB with a reply) that reached nobody gets a 503 no-responders status,
//!   delivered to the requester's own subscriptions that match the reply subject, if the
//!   requester asked for it (`headers` and `no_responders` in CONNECT);
//! - headers are stripped for recipients that did not ask for them;
//! - a recipient whose unwritten bytes exceed `max_pending` is a slow consumer: its pending
//!   bytes are dropped and it is closed.
//!
//! # Driving contract
//!
//! Inputs, each carrying `now` (the node's monotonic clock):
//! - [`Server::accept`]: a new connection; its INFO line is queued;
//! - [`Server::handle_bytes`]: bytes read from a client, split anywhere; complete ops are
//!   applied at once, a partial op waits in the server's buffer for the rest;
//! - [`Server::handle_written`]: the driver wrote `n` bytes of a client's `Send` outputs to the
//!   transport. Slow-consumer detection lives here, in the server: a client's pending bytes are
//!   those handed out in `Send` and not yet reported written. A driver that writes at once
//!   reports at once;
//! - [`Server::client_closed`]: the transport ended (the client hung up or the write failed);
//! - [`Server::handle_timeout`]: at or after [`Server::poll_timeout`]; keepalive PINGs, stale
//!   connections, authentication timeouts.
//!
//! Outputs, drained with [`Server::poll_output`] after each input until it returns `None`:
//! - `Send { client, bytes }`: bytes for one client, in protocol order for that client;
//! - `Close { client, reason }`: after the client's last `Send`. For a slow consumer the driver
//!   drops what it has not written yet; for any other reason it writes what it has, then closes.
//!
//! One input yields at most one `Send` per client (bytes for a client are gathered while the
//! input is applied), so many frames share one write, as in the runtime. After a `Close` no
//! output mentions that client again, and inputs for it are ignored.

use std::collections::VecDeque;
use std::sync::Arc;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

use crate::client::auth::AuthConfig;
use crate::client::conn::{Action, ClientConn, CloseReason, Message};
use crate::client::permissions::{Permissions, ResponseGrants, ResponsePermission};
use crate::config::CoreConfig;
use crate::proto::encode;
use crate::proto::info::ServerInfo;
use crate::proto::{ClientOp, Parser, ParserConfig};
use crate::route::{self, Delivery};
use crate::sublist::Sublist;
use crate::time::Instant;

/// What the driver must do; see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerOutput {
    Send { client: u64, bytes: Vec<u8> },
    Close { client: u64, reason: CloseReason },
}

/// A subscription as this server's index holds it: a key into `Server::subs`, so matching
/// clones integers, not sids.
type SubKey = u64;

#[derive(Debug)]
struct Sub {
    client: u64,
    sid: Vec<u8>,
    subject: Vec<u8>,
    queue: Option<Vec<u8>>,
    /// `UNSUB sid max`: deliveries allowed in total; 0 = unlimited.
    max: u64,
    /// The owner's permissions, for a wildcard subscription overlapping its subscribe deny
    /// list: each delivery is checked (see `Permissions::needs_delivery_check`).
    deny_filter: Option<Permissions>,
    delivered: u64,
}

#[derive(Debug)]
struct Client {
    conn: ClientConn,
    parser: Parser,
    /// Bytes read but not yet parsed (a partial op).
    inbuf: Vec<u8>,
    /// Bytes for this client gathered during the current input.
    pending: Vec<u8>,
    /// Bytes handed out in `Send` and not yet reported written.
    unwritten: usize,
    sids: FxHashMap<Vec<u8>, SubKey>,
    response_rule: Option<ResponsePermission>,
    grants: ResponseGrants,
}

/// A snapshot of one subscription, for drivers that inspect the index (tests, the simulator's
/// fault injection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionInfo {
    pub client: u64,
    pub sid: Vec<u8>,
    pub subject: Vec<u8>,
    pub queue: Option<Vec<u8>>,
}

/// One node's core pub/sub. See the module documentation for the driving contract.
pub struct Server {
    config: CoreConfig,
    auth: Arc<AuthConfig>,
    parser_config: ParserConfig,
    rng: ChaCha8Rng,
    clients: FxHashMap<u64, Client>,
    index: Sublist<SubKey>,
    subs: FxHashMap<SubKey, Sub>,
    next_sub: SubKey,
    outputs: VecDeque<ServerOutput>,
    /// Clients with bytes gathered during the current input, in the order first touched.
    touched: Vec<u64>,
    /// Reused per op for the bytes the connection state machine writes for its own client.
    scratch: Vec<u8>,
    slow_consumers: u64,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("clients", &self.clients.len())
            .field("subscriptions", &self.subs.len())
            .finish_non_exhaustive()
    }
}

impl Server {
    pub fn new(config: CoreConfig, rng: ChaCha8Rng) -> Self {
        Server {
            auth: Arc::new(config.auth.clone()),
            parser_config: ParserConfig {
                max_control_line: config.max_control_line,
                max_payload: config.max_payload,
            },
            config,
            rng,
            clients: FxHashMap::default(),
            index: Sublist::new(),
            subs: FxHashMap::default(),
            next_sub: 0,
            outputs: VecDeque::new(),
            touched: Vec::new(),
            scratch: Vec::new(),
            slow_consumers: 0,
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    pub fn subscription_count(&self) -> usize {
        self.subs.len()
    }

    pub fn slow_consumers(&self) -> u64 {
        self.slow_consumers
    }

    /// Every subscription in the index, ordered by (client, sid).
    pub fn subscriptions(&self) -> Vec<SubscriptionInfo> {
        let mut all: Vec<SubscriptionInfo> = self
            .subs
            .values()
            .map(|s| SubscriptionInfo {
                client: s.client,
                sid: s.sid.clone(),
                subject: s.subject.clone(),
                queue: s.queue.clone(),
            })
            .collect();
        all.sort_by(|a, b| (a.client, &a.sid).cmp(&(b.client, &b.sid)));
        all
    }

    /// A new connection with an id the driver never used before. Queues its INFO line.
    pub fn accept(&mut self, now: Instant, client: u64, peer_ip: &str) {
        if self.clients.contains_key(&client) {
            return;
        }
        let info = self.info_line(client, peer_ip);
        let conn = ClientConn::new(client, now, &self.config, self.auth.clone());
        self.clients.insert(
            client,
            Client {
                conn,
                parser: Parser::new(self.parser_config),
                inbuf: Vec::new(),
                pending: Vec::new(),
                unwritten: 0,
                sids: FxHashMap::default(),
                response_rule: None,
                grants: ResponseGrants::default(),
            },
        );
        self.push(client, &info);
        // The runtime counts the new connection itself against the limit.
        if self.clients.len() > self.config.max_connections {
            let mut out = Vec::new();
            encode::err(&mut out, "maximum connections exceeded");
            self.push(client, &out);
            self.close(client, CloseReason::MaxConnectionsExceeded);
        }
        self.finish_input();
    }

    /// Bytes read from `client`. Complete ops are applied; a partial op is kept for later.
    pub fn handle_bytes(&mut self, now: Instant, client: u64, bytes: &[u8]) {
        let Some(c) = self.clients.get_mut(&client) else { return };
        // The buffer leaves the client while its ops (which borrow it) are applied.
        let mut buf = std::mem::take(&mut c.inbuf);
        buf.extend_from_slice(bytes);
        let mut pos = 0;
        let mut closing = None;
        while pos < buf.len() {
            let Some(c) = self.clients.get_mut(&client) else { break };
            match c.parser.parse(&buf[pos..]) {
                Ok(Some((op, used))) => {
                    pos += used;
                    let is_connect = matches!(op, ClientOp::Connect(_));
                    let mut out = std::mem::take(&mut self.scratch);
                    let grants = c.response_rule.is_some().then_some(&mut c.grants);
                    let action = c.conn.handle_op(now, op, &mut out, grants);
                    if is_connect {
                        c.response_rule =
                            c.conn.permissions().and_then(|p| p.allow_responses.clone());
                    }
                    // The client's own bytes (+OK, PONG, -ERR) precede any delivery this op
                    // causes, the echo of a PUB included.
                    self.push(client, &out);
                    out.clear();
                    self.scratch = out;
                    if let Some(reason) = self.act(now, client, action) {
                        closing = Some(reason);
                        break;
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    let mut out = Vec::new();
                    let reason = c.conn.handle_parse_error(&err, &mut out);
                    self.push(client, &out);
                    closing = Some(reason);
                    break;
                }
            }
        }
        if let Some(reason) = closing {
            self.close(client, reason);
        } else if let Some(c) = self.clients.get_mut(&client) {
            buf.drain(..pos);
            c.inbuf = buf;
        }
        self.finish_input();
    }

    /// The driver wrote `n` bytes of `client`'s `Send` outputs.
    pub fn handle_written(&mut self, _now: Instant, client: u64, n: usize) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.unwritten = c.unwritten.saturating_sub(n);
        }
    }

    /// The transport ended. Forgets the client and its subscriptions; no output follows.
    pub fn client_closed(&mut self, _now: Instant, client: u64) {
        self.remove_client(client);
        self.touched.retain(|&c| c != client);
    }

    /// When the driver must next call [`Server::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.clients.values().filter_map(|c| c.conn.poll_timeout()).min()
    }

    /// Keepalive and authentication deadlines that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| c.conn.poll_timeout().is_some_and(|t| t <= now))
            .map(|(&id, _)| id)
            .collect();
        // Map order is deterministic but arbitrary; a sorted order reads better in traces.
        due.sort_unstable();
        for id in due {
            let Some(c) = self.clients.get_mut(&id) else { continue };
            let mut out = Vec::new();
            let closed = c.conn.on_timeout(now, &mut out);
            self.push(id, &out);
            if let Some(reason) = closed {
                self.close(id, reason);
            }
        }
        self.finish_input();
    }

    pub fn poll_output(&mut self) -> Option<ServerOutput> {
        self.outputs.pop_front()
    }

    fn info_line(&self, client: u64, peer_ip: &str) -> Vec<u8> {
        let mut info = ServerInfo::for_client(&self.config, client, peer_ip.to_string());
        info.auth_required = self.auth.required();
        info.to_line()
    }

    fn act(&mut self, now: Instant, client: u64, action: Action<'_>) -> Option<CloseReason> {
        match action {
            Action::None => None,
            Action::Publish(msg) => {
                self.route(now, client, msg);
                None
            }
            Action::Subscribe { sid, subject, queue } => {
                let key = self.next_sub;
                let deny_filter = self
                    .clients
                    .get(&client)
                    .and_then(|c| c.conn.permissions())
                    .filter(|p| p.needs_delivery_check(subject))
                    .cloned();
                if self.index.insert(subject, queue, key).is_ok() {
                    self.next_sub += 1;
                    self.subs.insert(
                        key,
                        Sub {
                            client,
                            sid: sid.to_vec(),
                            subject: subject.to_vec(),
                            queue: queue.map(<[u8]>::to_vec),
                            max: 0,
                            deny_filter,
                            delivered: 0,
                        },
                    );
                    if let Some(c) = self.clients.get_mut(&client) {
                        c.sids.insert(sid.to_vec(), key);
                    }
                }
                None
            }
            Action::Unsubscribe { sid, max, .. } => {
                let key = self.clients.get(&client).and_then(|c| c.sids.get(sid)).copied();
                if let Some(key) = key {
                    match max {
                        Some(max) => {
                            let reached = match self.subs.get_mut(&key) {
                                Some(sub) => {
                                    sub.max = max;
                                    sub.delivered >= max
                                }
                                None => false,
                            };
                            if reached {
                                self.remove_sub(key);
                            }
                        }
                        None => self.remove_sub(key),
                    }
                }
                None
            }
            Action::Close(reason) => Some(reason),
        }
    }

    fn route(&mut self, now: Instant, publisher: u64, msg: Message<'_>) {
        let Some(p) = self.clients.get(&publisher) else { return };
        let echo = p.conn.echo();
        let wants_no_responders = p.conn.wants_no_responders();
        let matches = self.index.matches(msg.subject);
        // Choose first, deliver after: delivering needs the whole server mutably.
        let mut targets = Vec::new();
        let (subs, clients, rng) = (&self.subs, &self.clients, &mut self.rng);
        route::fan_out(
            &matches,
            || rng.random(),
            |key| {
                subs.get(key).is_some_and(|s| {
                    route::echo_allowed(publisher, echo, s.client)
                        && clients.contains_key(&s.client)
                })
            },
            |&key| {
                targets.push(key);
                true
            },
        );
        let delivered = targets.into_iter().filter(|&key| self.deliver(now, key, &msg)).count();
        if delivered == 0 && wants_no_responders {
            if let Some(reply) = msg.reply {
                self.no_responders(publisher, msg.subject, reply);
            }
        }
    }

    /// Appends the MSG to the subscriber's bytes. False if it was not delivered.
    fn deliver(&mut self, now: Instant, key: SubKey, msg: &Message<'_>) -> bool {
        let Some(sub) = self.subs.get_mut(&key) else { return false };
        if sub.deny_filter.as_ref().is_some_and(|p| p.delivery_denied(msg.subject)) {
            return false;
        }
        sub.delivered += 1;
        match route::count_delivery(sub.delivered, sub.max) {
            Delivery::Skip => false,
            Delivery::Deliver => {
                self.deliver_frame(now, key, msg);
                true
            }
            Delivery::DeliverAndExpire => {
                self.deliver_frame(now, key, msg);
                self.remove_sub(key);
                true
            }
        }
    }

    fn deliver_frame(&mut self, now: Instant, key: SubKey, msg: &Message<'_>) {
        let Some(sub) = self.subs.get(&key) else { return };
        let client = sub.client;
        let Some(c) = self.clients.get_mut(&client) else { return };
        if c.pending.is_empty() {
            self.touched.push(client);
        }
        encode::msg(
            &mut c.pending,
            msg.subject,
            &sub.sid,
            msg.reply,
            msg.headers,
            msg.payload,
            c.conn.takes_headers(),
        );
        if let (Some(reply), Some(rule)) = (msg.reply, c.response_rule.as_ref()) {
            c.grants.grant(reply, rule, now);
        }
        self.check_slow(client);
    }

    /// The 503 status for a request that reached nobody, to the requester's own subscriptions
    /// that match the reply subject.
    fn no_responders(&mut self, requester: u64, subject: &[u8], reply: &[u8]) {
        let matches = self.index.matches(reply);
        let headers = encode::no_responders_headers(subject);
        let subs = &self.subs;
        let owner = |key: &SubKey| subs.get(key).map_or(u64::MAX, |s| s.client);
        let mut frames = Vec::new();
        for key in route::no_responders_targets(&matches, requester, owner) {
            if let Some(sub) = subs.get(key) {
                encode::msg(&mut frames, reply, &sub.sid, None, Some(&headers), b"", true);
            }
        }
        self.push(requester, &frames);
    }

    /// Gathers bytes for a client during the current input.
    fn push(&mut self, client: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let Some(c) = self.clients.get_mut(&client) else { return };
        if c.pending.is_empty() {
            self.touched.push(client);
        }
        c.pending.extend_from_slice(bytes);
        self.check_slow(client);
    }

    fn check_slow(&mut self, client: u64) {
        let Some(c) = self.clients.get_mut(&client) else { return };
        if c.unwritten + c.pending.len() > self.config.max_pending {
            c.pending.clear();
            self.slow_consumers += 1;
            self.close(client, CloseReason::SlowConsumer);
        }
    }

    /// Ends a connection: flushes what it has (unless it is a slow consumer, whose bytes were
    /// dropped), queues the Close and forgets the client.
    fn close(&mut self, client: u64, reason: CloseReason) {
        let Some(mut c) = self.remove_client(client) else { return };
        self.touched.retain(|&t| t != client);
        if reason != CloseReason::SlowConsumer && !c.pending.is_empty() {
            let bytes = std::mem::take(&mut c.pending);
            self.outputs.push_back(ServerOutput::Send { client, bytes });
        }
        self.outputs.push_back(ServerOutput::Close { client, reason });
    }

    fn remove_client(&mut self, client: u64) -> Option<Client> {
        let c = self.clients.remove(&client)?;
        let mut keys: Vec<SubKey> = c.sids.values().copied().collect();
        keys.sort_unstable();
        for key in keys {
            if let Some(sub) = self.subs.remove(&key) {
                self.index.remove(&sub.subject, sub.queue.as_deref(), &key);
            }
        }
        Some(c)
    }

    fn remove_sub(&mut self, key: SubKey) {
        let Some(sub) = self.subs.remove(&key) else { return };
        self.index.remove(&sub.subject, sub.queue.as_deref(), &key);
        if let Some(c) = self.clients.get_mut(&sub.client) {
            c.sids.remove(&sub.sid);
            c.conn.forget_subscription(&sub.sid);
        }
    }

    /// Hands out what the input gathered: one `Send` per touched client.
    fn finish_input(&mut self) {
        for client in std::mem::take(&mut self.touched) {
            let Some(c) = self.clients.get_mut(&client) else { continue };
            if c.pending.is_empty() {
                continue;
            }
            let bytes = std::mem::take(&mut c.pending);
            c.unwritten += bytes.len();
            self.outputs.push_back(ServerOutput::Send { client, bytes });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::time::Duration;

    fn server() -> Server {
        Server::new(CoreConfig::default(), ChaCha8Rng::seed_from_u64(7))
    }

    fn t(ms: u64) -> Instant {
        Instant(ms * 1_000_000)
    }

    /// Drains outputs, writing everything at once; returns (bytes per client, closes).
    type Drained = (Vec<(u64, String)>, Vec<(u64, CloseReason)>);

    fn drain(s: &mut Server) -> Drained {
        let mut sends = Vec::new();
        let mut closes = Vec::new();
        while let Some(out) = s.poll_output() {
            match out {
                ServerOutput::Send { client, bytes } => {
                    s.handle_written(t(0), client, bytes.len());
                    sends.push((client, String::from_utf8_lossy(&bytes).into_owned()));
                }
                ServerOutput::Close { client, reason } => closes.push((client, reason)),
            }
        }
        (sends, closes)
    }

    fn connect(s: &mut Server, id: u64, connect_json: &str) {
        s.accept(t(0), id, "127.0.0.1");
        let (sends, _) = drain(s);
        assert!(sends[0].1.starts_with("INFO {"));
        // CONNECT's defaults are nats-server's (verbose on); the tests want it off unless asked.
        let json = if connect_json.contains("verbose") {
            connect_json.to_string()
        } else {
            connect_json.replacen('{', r#"{"verbose":false,"#, 1).replace(",}", "}")
        };
        s.handle_bytes(t(0), id, format!("CONNECT {json}\r\n").as_bytes());
        drain(s);
    }

    fn text_for(sends: &[(u64, String)], id: u64) -> String {
        sends.iter().filter(|(c, _)| *c == id).map(|(_, b)| b.as_str()).collect()
    }

    #[test]
    fn publish_reaches_matching_subscribers_and_split_ops_wait() {
        let mut s = server();
        connect(&mut s, 1, "{}");
        connect(&mut s, 2, "{}");
        s.handle_bytes(t(1), 1, b"SUB foo.* 1\r\nSUB bar 2\r\n");
        s.handle_bytes(t(1), 2, b"PUB foo.x 2\r\nh");
        assert_eq!(drain(&mut s).0, vec![]);
        s.handle_bytes(t(1), 2, b"i\r\nPUB baz 0\r\n\r\n");
        let (sends, _) = drain(&mut s);
        assert_eq!(sends, vec![(1, "MSG foo.x 1 2\r\nhi\r\n".to_string())]);
    }

    #[test]
    fn verbose_ok_precedes_echo_and_no_echo_is_honoured() {
        let mut s = server();
        connect(&mut s, 1, r#"{"verbose":true}"#);
        s.handle_bytes(t(1), 1, b"SUB a 1\r\nPUB a 1\r\nx\r\n");
        let (sends, _) = drain(&mut s);
        assert_eq!(text_for(&sends, 1), "+OK\r\n+OK\r\nMSG a 1 1\r\nx\r\n");
        connect(&mut s, 2, r#"{"echo":false}"#);
        s.handle_bytes(t(1), 2, b"SUB a 1\r\nPUB a 1\r\ny\r\n");
        let (sends, _) = drain(&mut s);
        assert_eq!(text_for(&sends, 2), "");
        assert_eq!(text_for(&sends, 1), "MSG a 1 1\r\ny\r\n");
    }

    #[test]
    fn queue_group_gets_each_message_once() {
        let mut s = server();
        for id in 1..=3 {
            connect(&mut s, id, "{}");
            s.handle_bytes(t(1), id, b"SUB q.> g 1\r\n");
        }
        connect(&mut s, 9, "{}");
        drain(&mut s);
        let mut got = [0usize; 4];
        for _ in 0..60 {
            s.handle_bytes(t(2), 9, b"PUB q.1 0\r\n\r\n");
            let (sends, _) = drain(&mut s);
            assert_eq!(sends.len(), 1);
            got[sends[0].0 as usize] += 1;
        }
        assert!(got[1..].iter().all(|&n| n > 0), "every member is picked sometimes: {got:?}");
    }

    #[test]
    fn unsub_max_counts_past_deliveries_and_expires() {
        let mut s = server();
        connect(&mut s, 1, "{}");
        connect(&mut s, 2, "{}");
        s.handle_bytes(t(1), 1, b"SUB a 5\r\n");
        s.handle_bytes(t(1), 2, b"PUB a 0\r\n\r\n");
        s.handle_bytes(t(1), 1, b"UNSUB 5 3\r\n");
        s.handle_bytes(t(1), 2, b"PUB a 0\r\n\r\nPUB a 0\r\n\r\nPUB a 0\r\n\r\n");
        let (sends, _) = drain(&mut s);
        assert_eq!(text_for(&sends, 1).matches("MSG").count(), 3);
        assert_eq!(s.subscription_count(), 0);
        // An UNSUB max already reached removes at once.
        s.handle_bytes(t(1), 1, b"SUB a 6\r\n");
        s.handle_bytes(t(1), 2, b"PUB a 0\r\n\r\n");
        s.handle_bytes(t(1), 1, b"UNSUB 6 1\r\n");
        assert_eq!(s.subscription_count(), 0);
    }

    #[test]
    fn no_responders_goes_to_requesters_own_reply_subscription() {
        let mut s = server();
        connect(&mut s, 1, r#"{"headers":true,"no_responders":true}"#);
        connect(&mut s, 2, "{}");
        s.handle_bytes(t(1), 2, b"SUB inbox.* 1\r\n");
        s.handle_bytes(t(1), 1, b"SUB inbox.* 7\r\nPUB nobody inbox.1 0\r\n\r\n");
        let (sends, _) = drain(&mut s);
        assert_eq!(
            text_for(&sends, 1),
            "HMSG inbox.1 7 38 38\r\nNATS/1.0 503\r\nNats-Subject: nobody\r\n\r\n\r\n"
        );
        assert_eq!(text_for(&sends, 2), "");
    }

    #[test]
    fn wildcard_subscription_overlapping_a_deny_withholds_the_denied_subject() {
        use crate::client::auth::User;
        use crate::client::permissions::SubjectPermission;
        let auth = AuthConfig {
            users: vec![User {
                name: "c".into(),
                password: Some("p".into()),
                permissions: Some(Permissions {
                    subscribe: Some(SubjectPermission {
                        allow: vec![">".into()],
                        deny: vec!["x.y".into()],
                    }),
                    ..Permissions::default()
                }),
            }],
            ..AuthConfig::default()
        };
        let config = CoreConfig { auth, ..CoreConfig::default() };
        let mut s = Server::new(config, ChaCha8Rng::seed_from_u64(1));
        connect(&mut s, 1, r#"{"user":"c","pass":"p"}"#);
        s.handle_bytes(t(1), 1, b"SUB x.* 1\r\nPUB x.y 1\r\na\r\nPUB x.z 1\r\nb\r\n");
        let (sends, _) = drain(&mut s);
        assert_eq!(text_for(&sends, 1), "MSG x.z 1 1\r\nb\r\n");
    }

    #[test]
    fn headers_stripped_for_clients_without_them() {
        let mut s = server();
        connect(&mut s, 1, r#"{"headers":true}"#);
        connect(&mut s, 2, "{}");
        s.handle_bytes(t(1), 1, b"SUB h 1\r\n");
        s.handle_bytes(t(1), 2, b"SUB h 2\r\n");
        s.handle_bytes(t(1), 1, b"HPUB h 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
        let (sends, _) = drain(&mut s);
        assert_eq!(text_for(&sends, 1), "HMSG h 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
        assert_eq!(text_for(&sends, 2), "MSG h 2 2\r\nhi\r\n");
    }

    #[test]
    fn slow_consumer_is_closed_and_its_bytes_dropped() {
        let config = CoreConfig { max_pending: 1000, ..CoreConfig::default() };
        let mut s = Server::new(config, ChaCha8Rng::seed_from_u64(1));
        connect(&mut s, 1, "{}");
        connect(&mut s, 2, "{}");
        let payload = "x".repeat(400);
        let publish = format!("PUB a 400\r\n{payload}\r\n");
        s.handle_bytes(t(1), 1, b"SUB a 1\r\n");
        s.handle_bytes(t(1), 2, publish.as_bytes());
        let first = s.poll_output();
        assert!(matches!(first, Some(ServerOutput::Send { client: 1, .. })));
        // Not reported written: two more messages overflow the budget.
        s.handle_bytes(t(1), 2, publish.repeat(2).as_bytes());
        let (sends, closes) = drain(&mut s);
        assert_eq!(text_for(&sends, 1), "");
        assert_eq!(closes, vec![(1, CloseReason::SlowConsumer)]);
        assert_eq!(s.subscription_count(), 0);
        assert_eq!(s.slow_consumers(), 1);
    }

    #[test]
    fn parse_error_flushes_err_then_closes_and_forgets_subscriptions() {
        let mut s = server();
        connect(&mut s, 1, "{}");
        s.handle_bytes(t(1), 1, b"SUB a 1\r\nXYZ\r\nSUB b 2\r\n");
        let (sends, closes) = drain(&mut s);
        assert_eq!(text_for(&sends, 1), "-ERR 'Unknown Protocol Operation'\r\n");
        assert_eq!(closes.len(), 1);
        assert_eq!(s.subscription_count(), 0);
        s.handle_bytes(t(1), 1, b"SUB c 3\r\n");
        assert_eq!(drain(&mut s), (vec![], vec![]));
    }

    #[test]
    fn keepalive_pings_then_stale() {
        let config = CoreConfig { ping_interval: Duration::from_secs(1), ..CoreConfig::default() };
        let mut s = Server::new(config, ChaCha8Rng::seed_from_u64(1));
        s.accept(t(0), 1, "ip");
        drain(&mut s);
        let mut pings = 0;
        let mut closed = None;
        while closed.is_none() {
            let Some(at) = s.poll_timeout() else { break };
            s.handle_timeout(at);
            let (sends, closes) = drain(&mut s);
            pings += text_for(&sends, 1).matches("PING").count();
            closed = closes.into_iter().next();
        }
        assert_eq!(pings, 2);
        assert_eq!(closed, Some((1, CloseReason::StaleConnection)));
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn client_closed_removes_subscriptions() {
        let mut s = server();
        connect(&mut s, 1, "{}");
        s.handle_bytes(t(1), 1, b"SUB a 1\r\nSUB b q 2\r\n");
        assert_eq!(s.subscription_count(), 2);
        s.client_closed(t(2), 1);
        assert_eq!(s.subscription_count(), 0);
        assert_eq!(s.client_count(), 0);
    }
}
