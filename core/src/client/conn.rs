//! One client connection's state machine.
//!
//! Inputs, each carrying `now`:
//! - `handle_op(now, op, out, grants)`: one parsed op; returns the [`Action`] the driver must
//!   carry out (route a message, change the subscription index, close);
//! - `handle_parse_error(err, out)`: the parser gave up; the connection must close;
//! - `on_timeout(now, out)`: called at or after `poll_timeout()`; keepalive and auth timeout.
//!
//! Outputs: bytes for this client (`+OK`, `PONG`, `PING`, `-ERR`) are appended to the caller's
//! `out` buffer, in protocol order, before the action is returned, so that `+OK` for a PUB
//! precedes the echo of that PUB as nats-server orders them. Borrowed ops flow straight into
//! actions: the hot path copies no message bytes.

use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

use super::auth::AuthConfig;
use super::connect::{ConnectError, ConnectOptions};
use super::permissions::{Permissions, ResponseGrants};
use crate::config::CoreConfig;
use crate::proto::encode;
use crate::proto::{ClientOp, ParseError};
use crate::subject;
use crate::time::Instant;

/// Why a connection ends. The text for the log comes from `Display`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    ClientClosed,
    ProtocolViolation(String),
    AuthorizationViolation,
    AuthenticationTimeout,
    StaleConnection,
    SlowConsumer,
    MaxConnectionsExceeded,
    ServerShutdown,
    WriteError,
    ReadError,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::ClientClosed => f.write_str("Client Closed"),
            CloseReason::ProtocolViolation(why) => write!(f, "Protocol Violation: {why}"),
            CloseReason::AuthorizationViolation => f.write_str("Authorization Violation"),
            CloseReason::AuthenticationTimeout => f.write_str("Authentication Timeout"),
            CloseReason::StaleConnection => f.write_str("Stale Connection"),
            CloseReason::SlowConsumer => f.write_str("Slow Consumer (Pending Bytes)"),
            CloseReason::MaxConnectionsExceeded => f.write_str("Maximum Connections Exceeded"),
            CloseReason::ServerShutdown => f.write_str("Server Shutdown"),
            CloseReason::WriteError => f.write_str("Write Error"),
            CloseReason::ReadError => f.write_str("Read Error"),
        }
    }
}

/// What the driver must do after an op.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'a> {
    None,
    /// Route a message to every matching subscription.
    Publish(Message<'a>),
    /// Add to the subscription index (the connection has recorded the sid).
    Subscribe {
        sid: &'a [u8],
        subject: &'a [u8],
        queue: Option<&'a [u8]>,
    },
    /// Remove from the index now (`max: None`), or after `max` more deliveries in total.
    Unsubscribe {
        sid: &'a [u8],
        subject: Vec<u8>,
        queue: Option<Vec<u8>>,
        max: Option<u64>,
    },
    /// Flush what `out` holds, then close.
    Close(CloseReason),
}

/// A message to route, borrowing the publisher's read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub subject: &'a [u8],
    pub reply: Option<&'a [u8]>,
    pub headers: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No CONNECT yet. Without auth, ops are served with CONNECT's defaults (nats-server does).
    AwaitingConnect,
    Open,
    Closed,
}

#[derive(Debug)]
struct SubRecord {
    subject: Vec<u8>,
    queue: Option<Vec<u8>>,
}

/// The per-connection rules. See the module documentation for the driving contract.
#[derive(Debug)]
pub struct ClientConn {
    id: u64,
    phase: Phase,
    opts: ConnectOptions,
    auth_required: bool,
    /// Shared by every connection; a reload hands new connections a new one.
    auth: Arc<AuthConfig>,
    permissions: Option<Permissions>,
    user: Option<String>,
    subs: FxHashMap<Vec<u8>, SubRecord>,
    pings_out: u32,
    /// Whether the client sent anything since the last keepalive check: an active client is
    /// not pinged (nats-server skips the PING likewise).
    active_since_ping: bool,
    next_ping: Instant,
    auth_deadline: Option<Instant>,
    ping_interval: Duration,
    ping_max: u32,
    max_subscriptions: usize,
    headers_enabled: bool,
    /// Per-subject publish permission verdicts; bounded.
    pub_cache: FxHashMap<Vec<u8>, bool>,
}

const PUB_CACHE_MAX: usize = 1024;

impl ClientConn {
    pub fn new(id: u64, now: Instant, config: &CoreConfig, auth: Arc<AuthConfig>) -> Self {
        let auth_required = auth.required();
        ClientConn {
            id,
            phase: Phase::AwaitingConnect,
            opts: ConnectOptions::default(),
            auth_required,
            permissions: None,
            user: None,
            subs: FxHashMap::default(),
            pings_out: 0,
            active_since_ping: false,
            next_ping: now + config.ping_interval,
            auth_deadline: auth_required.then(|| now + auth.timeout),
            auth,
            ping_interval: config.ping_interval,
            ping_max: config.ping_max,
            max_subscriptions: config.max_subscriptions,
            headers_enabled: config.headers,
            pub_cache: FxHashMap::default(),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn permissions(&self) -> Option<&Permissions> {
        self.permissions.as_ref()
    }

    /// Whether messages this client publishes may come back to its own subscriptions.
    pub fn echo(&self) -> bool {
        self.opts.echo
    }

    /// Whether deliveries to this client may carry headers (else they are stripped).
    pub fn takes_headers(&self) -> bool {
        self.opts.headers && self.headers_enabled
    }

    /// Whether a request that reaches nobody gets a 503 status back.
    pub fn wants_no_responders(&self) -> bool {
        self.opts.no_responders && self.takes_headers()
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    pub fn subscription_count(&self) -> usize {
        self.subs.len()
    }

    /// The subscriptions still held, for the driver to remove from the index on close.
    pub fn subscriptions(&self) -> impl Iterator<Item = (&[u8], &[u8], Option<&[u8]>)> {
        self.subs.iter().map(|(sid, r)| (sid.as_slice(), r.subject.as_slice(), r.queue.as_deref()))
    }

    /// The driver saw a delivery with `max` reached: forget the sid.
    pub fn forget_subscription(&mut self, sid: &[u8]) {
        self.subs.remove(sid);
    }

    /// When the driver must next call `on_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Closed {
            return None;
        }
        Some(match self.auth_deadline {
            Some(deadline) => deadline.min(self.next_ping),
            None => self.next_ping,
        })
    }

    /// Keepalive and authentication deadline.
    pub fn on_timeout(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<CloseReason> {
        if self.phase == Phase::Closed {
            return None;
        }
        if let Some(deadline) = self.auth_deadline {
            if now >= deadline {
                return Some(self.close_with_err(
                    out,
                    "Authentication Timeout",
                    CloseReason::AuthenticationTimeout,
                ));
            }
        }
        if now >= self.next_ping {
            self.next_ping = now + self.ping_interval;
            if self.active_since_ping && self.phase == Phase::Open {
                self.active_since_ping = false;
                return None;
            }
            if self.pings_out + 1 > self.ping_max {
                return Some(self.close_with_err(
                    out,
                    "Stale Connection",
                    CloseReason::StaleConnection,
                ));
            }
            self.pings_out += 1;
            out.extend_from_slice(encode::PING);
        }
        None
    }

    /// The parser gave up on this connection's bytes.
    pub fn handle_parse_error(&mut self, err: &ParseError, out: &mut Vec<u8>) -> CloseReason {
        if let Some(text) = err.err_text() {
            encode::err(out, text);
        }
        self.phase = Phase::Closed;
        CloseReason::ProtocolViolation(format!("{err:?}"))
    }

    /// One op from the client.
    pub fn handle_op<'a>(
        &mut self,
        now: Instant,
        op: ClientOp<'a>,
        out: &mut Vec<u8>,
        grants: Option<&mut ResponseGrants>,
    ) -> Action<'a> {
        if self.phase == Phase::Closed {
            return Action::None;
        }
        self.active_since_ping = true;
        if self.phase == Phase::AwaitingConnect && self.auth_required {
            if let ClientOp::Connect(json) = op {
                return self.connect(json, out);
            }
            return Action::Close(self.close_with_err(
                out,
                "Authorization Violation",
                CloseReason::AuthorizationViolation,
            ));
        }
        match op {
            ClientOp::Connect(json) => self.connect(json, out),
            ClientOp::Ping => {
                out.extend_from_slice(encode::PONG);
                Action::None
            }
            ClientOp::Pong => {
                self.pings_out = 0;
                Action::None
            }
            ClientOp::Pub { subject, reply, headers, payload } => {
                self.publish(now, Message { subject, reply, headers, payload }, out, grants)
            }
            ClientOp::Sub { subject, queue, sid } => self.subscribe(subject, queue, sid, out),
            ClientOp::Unsub { sid, max } => self.unsubscribe(sid, max, out),
            ClientOp::Ok => Action::None,
            ClientOp::Info(json) => {
                // nats-server ignores a client's INFO, but closes silently on undecodable JSON.
                if serde_json::from_slice::<serde::de::IgnoredAny>(json).is_ok() {
                    Action::None
                } else {
                    self.phase = Phase::Closed;
                    Action::Close(CloseReason::ProtocolViolation("malformed INFO".into()))
                }
            }
        }
    }

    fn connect<'a>(&mut self, json: &[u8], out: &mut Vec<u8>) -> Action<'a> {
        let opts = match ConnectOptions::parse(json) {
            Ok(opts) => opts,
            Err(ConnectError::Malformed) => {
                // nats-server closes without a word on undecodable CONNECT JSON.
                self.phase = Phase::Closed;
                return Action::Close(CloseReason::ProtocolViolation("malformed CONNECT".into()));
            }
            Err(ConnectError::InvalidProtocol) => {
                let reason = CloseReason::ProtocolViolation("invalid client protocol".into());
                return Action::Close(self.close_with_err(out, "invalid client protocol", reason));
            }
            Err(ConnectError::NoRespondersWithoutHeaders) => {
                let text = "no responders requires headers support";
                let reason = CloseReason::ProtocolViolation(text.into());
                return Action::Close(self.close_with_err(out, text, reason));
            }
        };
        if self.phase == Phase::AwaitingConnect
            && self.auth_required
            && self.authenticate(&opts).is_err()
        {
            return Action::Close(self.close_with_err(
                out,
                "Authorization Violation",
                CloseReason::AuthorizationViolation,
            ));
        }
        self.auth_deadline = None;
        self.opts = opts;
        self.phase = Phase::Open;
        self.ok(out);
        Action::None
    }

    fn authenticate(&mut self, opts: &ConnectOptions) -> Result<(), ()> {
        let identity = self
            .auth
            .authenticate(opts.auth_token.as_deref(), opts.user.as_deref(), opts.pass.as_deref())
            .map_err(|_| ())?;
        self.user = identity.user;
        self.permissions = identity.permissions;
        Ok(())
    }

    fn publish<'a>(
        &mut self,
        now: Instant,
        msg: Message<'a>,
        out: &mut Vec<u8>,
        grants: Option<&mut ResponseGrants>,
    ) -> Action<'a> {
        if msg.headers.is_some() && !self.takes_headers() {
            // nats-server logs "message headers not supported" and closes without an -ERR.
            self.phase = Phase::Closed;
            return Action::Close(CloseReason::ProtocolViolation(
                "message headers not supported".into(),
            ));
        }
        if self.opts.pedantic && subject::validate_literal(msg.subject).is_err() {
            // nats-server only warns: the message is still acknowledged and routed.
            encode::err(out, "Invalid Publish Subject");
        }
        if !self.may_publish(msg.subject, now, grants) {
            encode::fmt(
                out,
                format_args!(
                    "-ERR 'Permissions Violation for Publish to {}'\r\n",
                    go_quote(msg.subject)
                ),
            );
            return Action::None;
        }
        self.ok(out);
        // An empty header block (HPUB with header size 0) is delivered as a plain MSG.
        let headers = msg.headers.filter(|h| !h.is_empty());
        Action::Publish(Message { headers, ..msg })
    }

    fn may_publish(
        &mut self,
        subject: &[u8],
        now: Instant,
        grants: Option<&mut ResponseGrants>,
    ) -> bool {
        let Some(perms) = &self.permissions else { return true };
        let allowed = match self.pub_cache.get(subject) {
            Some(&verdict) => verdict,
            None => {
                let verdict = perms.may_publish(subject);
                if self.pub_cache.len() >= PUB_CACHE_MAX {
                    self.pub_cache.clear();
                }
                self.pub_cache.insert(subject.to_vec(), verdict);
                verdict
            }
        };
        if allowed {
            return true;
        }
        perms.allow_responses.is_some() && grants.is_some_and(|g| g.consume(subject, now))
    }

    fn subscribe<'a>(
        &mut self,
        subject: &'a [u8],
        queue: Option<&'a [u8]>,
        sid: &'a [u8],
        out: &mut Vec<u8>,
    ) -> Action<'a> {
        if subject::validate_subscription(subject).is_err() {
            encode::err(out, "Invalid Subject");
            return Action::None;
        }
        if let Some(perms) = &self.permissions {
            if !perms.may_subscribe(subject) {
                let mut text =
                    format!("Permissions Violation for Subscription to {}", go_quote(subject));
                if let Some(q) = queue {
                    text.push_str(&format!(" using queue {}", go_quote(q)));
                }
                encode::err(out, &text);
                return Action::None;
            }
        }
        if self.subs.contains_key(sid) {
            // Re-SUB with a sid already in use is a no-op, as in nats-server.
            self.ok(out);
            return Action::None;
        }
        if self.max_subscriptions > 0 && self.subs.len() >= self.max_subscriptions {
            encode::err(out, "maximum subscriptions exceeded");
            return Action::None;
        }
        self.subs.insert(
            sid.to_vec(),
            SubRecord { subject: subject.to_vec(), queue: queue.map(<[u8]>::to_vec) },
        );
        self.ok(out);
        Action::Subscribe { sid, subject, queue }
    }

    fn unsubscribe<'a>(
        &mut self,
        sid: &'a [u8],
        max: Option<u64>,
        out: &mut Vec<u8>,
    ) -> Action<'a> {
        self.ok(out);
        let max = max.filter(|&m| m > 0);
        let record = if max.is_some() {
            // Stays in the table until the driver reports the last delivery.
            match self.subs.get(sid) {
                Some(r) => SubRecord { subject: r.subject.clone(), queue: r.queue.clone() },
                None => return Action::None,
            }
        } else {
            match self.subs.remove(sid) {
                Some(r) => r,
                None => return Action::None,
            }
        };
        Action::Unsubscribe { sid, subject: record.subject, queue: record.queue, max }
    }

    fn ok(&self, out: &mut Vec<u8>) {
        if self.opts.verbose {
            out.extend_from_slice(encode::OK);
        }
    }

    fn close_with_err(
        &mut self,
        out: &mut Vec<u8>,
        text: &str,
        reason: CloseReason,
    ) -> CloseReason {
        encode::err(out, text);
        self.phase = Phase::Closed;
        reason
    }
}

/// Go's `%q` for the subjects nats-server quotes in permission errors.
fn go_quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\x{:02x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::auth::User;
    use crate::client::permissions::{ResponsePermission, SubjectPermission};

    fn open_conn() -> ClientConn {
        ClientConn::new(1, Instant(0), &CoreConfig::default(), Arc::new(AuthConfig::default()))
    }

    fn auth_conn(auth: AuthConfig) -> ClientConn {
        ClientConn::new(1, Instant(0), &CoreConfig::default(), Arc::new(auth))
    }

    fn op<'a>(c: &mut ClientConn, op: ClientOp<'a>, out: &mut Vec<u8>) -> Action<'a> {
        c.handle_op(Instant(0), op, out, None)
    }

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    #[test]
    fn without_auth_ops_before_connect_are_served_verbosely() {
        let mut c = open_conn();
        let mut out = Vec::new();
        let a = op(&mut c, ClientOp::Sub { subject: b"foo", queue: None, sid: b"1" }, &mut out);
        assert_eq!(a, Action::Subscribe { sid: b"1", subject: b"foo", queue: None });
        assert_eq!(text(&out), "+OK\r\n");
    }

    #[test]
    fn with_auth_any_op_before_connect_is_an_authorization_violation() {
        let auth = AuthConfig { token: Some("t".into()), ..AuthConfig::default() };
        for first in [ClientOp::Ping, ClientOp::Sub { subject: b"x", queue: None, sid: b"1" }] {
            let mut c = auth_conn(auth.clone());
            let mut out = Vec::new();
            assert_eq!(
                op(&mut c, first, &mut out),
                Action::Close(CloseReason::AuthorizationViolation)
            );
            assert_eq!(text(&out), "-ERR 'Authorization Violation'\r\n");
            assert!(c.is_closed());
        }
    }

    #[test]
    fn bad_credentials_close_and_good_ones_open() {
        let auth = AuthConfig { token: Some("t".into()), ..AuthConfig::default() };
        let mut c = auth_conn(auth.clone());
        let mut out = Vec::new();
        let a = op(&mut c, ClientOp::Connect(br#"{"auth_token":"x"}"#), &mut out);
        assert_eq!(a, Action::Close(CloseReason::AuthorizationViolation));
        let mut c = auth_conn(auth);
        out.clear();
        let a = op(&mut c, ClientOp::Connect(br#"{"auth_token":"t","verbose":false}"#), &mut out);
        assert_eq!(a, Action::None);
        assert!(out.is_empty());
        assert_eq!(c.poll_timeout(), Some(Instant(0) + Duration::from_secs(120)));
    }

    #[test]
    fn auth_timeout_fires_without_connect() {
        let auth = AuthConfig { token: Some("t".into()), ..AuthConfig::default() };
        let mut c = auth_conn(auth);
        let deadline = c.poll_timeout().unwrap();
        assert_eq!(deadline, Instant(0) + Duration::from_secs(2));
        let mut out = Vec::new();
        assert_eq!(c.on_timeout(deadline, &mut out), Some(CloseReason::AuthenticationTimeout));
        assert_eq!(text(&out), "-ERR 'Authentication Timeout'\r\n");
    }

    #[test]
    fn idle_client_is_pinged_then_stale() {
        let mut c = open_conn();
        let mut out = Vec::new();
        op(&mut c, ClientOp::Connect(br#"{"verbose":false}"#), &mut out);
        // Activity since the last check skips one PING, as nats-server does.
        let t1 = c.poll_timeout().unwrap();
        assert_eq!(c.on_timeout(t1, &mut out), None);
        assert!(out.is_empty());
        let t2 = c.poll_timeout().unwrap();
        assert_eq!(c.on_timeout(t2, &mut out), None);
        let t3 = c.poll_timeout().unwrap();
        assert_eq!(c.on_timeout(t3, &mut out), None);
        assert_eq!(text(&out), "PING\r\nPING\r\n");
        out.clear();
        let t4 = c.poll_timeout().unwrap();
        assert_eq!(c.on_timeout(t4, &mut out), Some(CloseReason::StaleConnection));
        assert_eq!(text(&out), "-ERR 'Stale Connection'\r\n");
    }

    #[test]
    fn pong_resets_outstanding_pings() {
        let mut c = open_conn();
        let mut out = Vec::new();
        op(&mut c, ClientOp::Connect(br#"{"verbose":false}"#), &mut out);
        for _ in 0..10 {
            let t = c.poll_timeout().unwrap();
            assert_eq!(c.on_timeout(t, &mut out), None);
            c.handle_op(t, ClientOp::Pong, &mut out, None);
        }
    }

    #[test]
    fn pedantic_publish_subject_and_verbose_ok_order() {
        let mut c = open_conn();
        let mut out = Vec::new();
        op(&mut c, ClientOp::Connect(b"{}"), &mut out);
        let pubop = |s| ClientOp::Pub { subject: s, reply: None, headers: None, payload: b"" };
        assert!(matches!(op(&mut c, pubop(b"foo.*"), &mut out), Action::Publish(_)));
        assert!(matches!(op(&mut c, pubop(b"foo"), &mut out), Action::Publish(_)));
        assert_eq!(text(&out), "+OK\r\n-ERR 'Invalid Publish Subject'\r\n+OK\r\n+OK\r\n");
    }

    #[test]
    fn headers_need_connect_headers_true() {
        let mut c = open_conn();
        let mut out = Vec::new();
        op(&mut c, ClientOp::Connect(br#"{"verbose":false}"#), &mut out);
        let hpub = ClientOp::Pub {
            subject: b"foo",
            reply: None,
            headers: Some(b"NATS/1.0\r\n\r\n"),
            payload: b"",
        };
        assert!(matches!(op(&mut c, hpub, &mut out), Action::Close(_)));
        assert!(out.is_empty(), "nats-server closes without a word");
    }

    fn restricted() -> AuthConfig {
        AuthConfig {
            users: vec![User {
                name: "a".into(),
                password: Some("b".into()),
                permissions: Some(Permissions {
                    publish: Some(SubjectPermission { allow: vec!["foo.>".into()], deny: vec![] }),
                    subscribe: Some(SubjectPermission {
                        allow: vec![],
                        deny: vec!["bar.*".into()],
                    }),
                    allow_responses: Some(ResponsePermission::default()),
                }),
            }],
            ..AuthConfig::default()
        }
    }

    #[test]
    fn permission_violations_keep_the_connection_open() {
        let mut c = auth_conn(restricted());
        let mut out = Vec::new();
        op(&mut c, ClientOp::Connect(br#"{"verbose":false,"user":"a","pass":"b"}"#), &mut out);
        let pubop = ClientOp::Pub { subject: b"baz", reply: None, headers: None, payload: b"" };
        assert_eq!(op(&mut c, pubop, &mut out), Action::None);
        let sub = ClientOp::Sub { subject: b"bar.x", queue: Some(b"q"), sid: b"1" };
        assert_eq!(op(&mut c, sub, &mut out), Action::None);
        assert_eq!(
            text(&out),
            "-ERR 'Permissions Violation for Publish to \"baz\"'\r\n\
             -ERR 'Permissions Violation for Subscription to \"bar.x\" using queue \"q\"'\r\n"
        );
        assert!(!c.is_closed());
    }

    #[test]
    fn allow_responses_lets_a_reply_through_once() {
        let mut c = auth_conn(restricted());
        let mut out = Vec::new();
        op(&mut c, ClientOp::Connect(br#"{"verbose":false,"user":"a","pass":"b"}"#), &mut out);
        let mut grants = ResponseGrants::default();
        grants.grant(b"_INBOX.r", &ResponsePermission::default(), Instant(0));
        let reply =
            ClientOp::Pub { subject: b"_INBOX.r", reply: None, headers: None, payload: b"" };
        let a = c.handle_op(Instant(1), reply.clone(), &mut out, Some(&mut grants));
        assert!(matches!(a, Action::Publish(_)));
        let a = c.handle_op(Instant(2), reply, &mut out, Some(&mut grants));
        assert_eq!(a, Action::None, "the grant is used up");
    }

    #[test]
    fn max_subscriptions_and_duplicate_sids() {
        let config = CoreConfig { max_subscriptions: 1, ..CoreConfig::default() };
        let mut c = ClientConn::new(1, Instant(0), &config, Arc::new(AuthConfig::default()));
        let mut out = Vec::new();
        op(&mut c, ClientOp::Connect(br#"{"verbose":false}"#), &mut out);
        let sub = |sid| ClientOp::Sub { subject: b"foo", queue: None, sid };
        assert!(matches!(op(&mut c, sub(b"1"), &mut out), Action::Subscribe { .. }));
        assert_eq!(op(&mut c, sub(b"1"), &mut out), Action::None, "re-SUB of a sid is a no-op");
        assert_eq!(op(&mut c, sub(b"2"), &mut out), Action::None);
        assert_eq!(text(&out), "-ERR 'maximum subscriptions exceeded'\r\n");
    }

    #[test]
    fn unsubscribe_now_and_after_max() {
        let mut c = open_conn();
        let mut out = Vec::new();
        op(&mut c, ClientOp::Connect(br#"{"verbose":false}"#), &mut out);
        op(&mut c, ClientOp::Sub { subject: b"foo", queue: Some(b"q"), sid: b"1" }, &mut out);
        let a = op(&mut c, ClientOp::Unsub { sid: b"1", max: Some(3) }, &mut out);
        assert_eq!(
            a,
            Action::Unsubscribe {
                sid: b"1",
                subject: b"foo".to_vec(),
                queue: Some(b"q".to_vec()),
                max: Some(3)
            }
        );
        assert_eq!(c.subscription_count(), 1, "kept until the driver reports the last delivery");
        let a = op(&mut c, ClientOp::Unsub { sid: b"1", max: None }, &mut out);
        assert!(matches!(a, Action::Unsubscribe { max: None, .. }));
        assert_eq!(c.subscription_count(), 0);
        assert_eq!(op(&mut c, ClientOp::Unsub { sid: b"9", max: None }, &mut out), Action::None);
    }

    #[test]
    fn connect_refusals_match_nats_server() {
        let mut out = Vec::new();
        let mut c = open_conn();
        assert!(matches!(op(&mut c, ClientOp::Connect(b"{bad"), &mut out), Action::Close(_)));
        assert!(out.is_empty());
        let mut c = open_conn();
        op(&mut c, ClientOp::Connect(br#"{"protocol":2}"#), &mut out);
        assert_eq!(text(&out), "-ERR 'invalid client protocol'\r\n");
    }

    #[test]
    fn go_quote_escapes() {
        assert_eq!(go_quote(b"a\"b"), "\"a\\\"b\"");
        assert_eq!(go_quote(b"foo.bar"), "\"foo.bar\"");
    }
}
