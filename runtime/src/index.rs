//! The server-wide subscription index, shared by every connection's reader task.
//!
//! Read-mostly: a publisher looks subjects up in its own connection's match cache and only
//! takes the index's read lock on a miss; the generation counter, readable without any lock,
//! says when cached results went stale. Writers (SUB/UNSUB) take the write lock briefly.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use fjord_core::client::connect::ConnectOptions;

use fjord_core::client::permissions::{Permissions, ResponseGrants, ResponsePermission};
use fjord_core::subject::SubjectError;
use fjord_core::sublist::{MatchResult, Sublist};
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;
use tokio_util::sync::CancellationToken;

use crate::outbound::Outbound;

/// What other connections need to know of a client to deliver to it.
pub struct ClientHandle {
    pub id: u64,
    pub peer: SocketAddr,
    /// Wall-clock time the connection was accepted (for monitoring).
    pub started: SystemTime,
    /// Core time of the last bytes received, in nanoseconds (for monitoring's `idle`).
    pub last_activity: AtomicU64,
    /// What the client said in CONNECT (name, lang, version), for monitoring.
    pub connect: Mutex<Option<ConnectOptions>>,
    /// This connection's subscriptions by sid. Touched on SUB/UNSUB/close and by monitoring,
    /// never per message.
    pub subs: Mutex<FxHashMap<Vec<u8>, Arc<Subscription>>>,
    pub outbound: Outbound,
    /// Set at CONNECT: deliveries keep their headers only for clients that asked for them.
    pub takes_headers: AtomicBool,
    /// `allow_responses`: replies of requests delivered to this client become publishable.
    pub response_rule: Mutex<Option<ResponsePermission>>,
    /// Lets senders skip the lock above for the common client without `allow_responses`.
    pub has_response_rule: AtomicBool,
    pub grants: Mutex<ResponseGrants>,
    /// Sids whose `UNSUB max` was reached by deliveries on other threads; the owner forgets
    /// them before its next SUB or UNSUB.
    pub expired_sids: Mutex<Vec<Vec<u8>>>,
    pub has_expired_sids: AtomicBool,
    /// Cancelled when the connection must end (closed by either side, or server shutdown).
    pub cancel: CancellationToken,
    pub stats: ClientStats,
}

/// Message and byte counters of one client. `in_*` are written only by its own reader;
/// `out_*` by the senders that deliver to it, so no counter is shared by every message.
#[derive(Default)]
pub struct ClientStats {
    pub in_msgs: AtomicU64,
    pub in_bytes: AtomicU64,
    pub out_msgs: AtomicU64,
    pub out_bytes: AtomicU64,
}

impl ClientStats {
    pub fn record_in(&self, bytes: usize) {
        self.in_msgs.fetch_add(1, Ordering::Relaxed);
        self.in_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn record_out(&self, bytes: usize) {
        self.out_msgs.fetch_add(1, Ordering::Relaxed);
        self.out_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

impl ClientHandle {
    pub fn new(id: u64, peer: SocketAddr, max_pending: usize, cancel: CancellationToken) -> Self {
        ClientHandle {
            id,
            peer,
            started: SystemTime::now(),
            last_activity: AtomicU64::new(0),
            connect: Mutex::new(None),
            subs: Mutex::new(FxHashMap::default()),
            outbound: Outbound::new(max_pending),
            takes_headers: AtomicBool::new(false),
            response_rule: Mutex::new(None),
            grants: Mutex::new(ResponseGrants::default()),
            expired_sids: Mutex::new(Vec::new()),
            has_expired_sids: AtomicBool::new(false),
            has_response_rule: AtomicBool::new(false),
            cancel,
            stats: ClientStats::default(),
        }
    }
}

/// One subscription as the index holds it.
pub struct Subscription {
    pub client: Arc<ClientHandle>,
    pub sid: Vec<u8>,
    pub subject: Vec<u8>,
    pub queue: Option<Vec<u8>>,
    /// `UNSUB sid max`: deliveries allowed in total; 0 = unlimited.
    pub max: AtomicU64,
    /// Set for a wildcard subscription that overlaps the owner's subscribe deny list: each
    /// delivery is checked against it.
    pub deny_filter: Option<Permissions>,
    pub delivered: AtomicU64,
}

impl PartialEq for Subscription {
    fn eq(&self, other: &Self) -> bool {
        self.client.id == other.client.id && self.sid == other.sid
    }
}

pub type Matches = Arc<MatchResult<Arc<Subscription>>>;

#[derive(Default)]
pub struct Index {
    list: RwLock<Sublist<Arc<Subscription>>>,
    generation: AtomicU64,
    /// Wakes whoever waits for a new subscription (the JetStream actor, while a push consumer
    /// has no subscriber yet). Only signalled while `watched` is set, so a SUB costs one
    /// relaxed load when nobody waits.
    subscribed: tokio::sync::Notify,
    watched: AtomicBool,
}

impl Index {
    pub fn insert(&self, sub: Arc<Subscription>) -> Result<(), SubjectError> {
        let mut list = self.list.write();
        let subject = sub.subject.clone();
        let queue = sub.queue.clone();
        list.insert(&subject, queue.as_deref(), sub)?;
        self.generation.fetch_add(1, Ordering::Release);
        drop(list);
        if self.watched.load(Ordering::Acquire) {
            self.subscribed.notify_waiters();
        }
        Ok(())
    }

    /// Resolves after the next subscription is inserted. Create it, then check `generation`
    /// (a SUB in between is not missed: the future is registered first via `enable`).
    pub fn watch_subscriptions(&self, on: bool) {
        self.watched.store(on, Ordering::Release);
    }

    pub fn subscribed(&self) -> tokio::sync::futures::Notified<'_> {
        self.subscribed.notified()
    }

    pub fn remove(&self, subject: &[u8], queue: Option<&[u8]>, sub: &Arc<Subscription>) -> bool {
        let removed = self.list.write().remove(subject, queue, sub);
        if removed {
            self.generation.fetch_add(1, Ordering::Release);
        }
        removed
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn lookup(&self, subject: &[u8]) -> Matches {
        Arc::new(self.list.read().matches(subject))
    }

    pub fn len(&self) -> usize {
        self.list.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A connection's private cache of match results, so the hot path touches no shared lock.
pub struct MatchCache {
    generation: u64,
    entries: FxHashMap<Vec<u8>, Matches>,
}

/// Bounded so a client publishing to endlessly new subjects cannot grow it without end.
const MATCH_CACHE_MAX: usize = 4096;

impl Default for MatchCache {
    fn default() -> Self {
        MatchCache { generation: u64::MAX, entries: FxHashMap::default() }
    }
}

impl MatchCache {
    pub fn lookup(&mut self, index: &Index, subject: &[u8]) -> Matches {
        let generation = index.generation();
        if generation != self.generation {
            self.entries.clear();
            self.generation = generation;
        }
        if let Some(found) = self.entries.get(subject) {
            return found.clone();
        }
        let found = index.lookup(subject);
        if self.entries.len() >= MATCH_CACHE_MAX {
            self.entries.clear();
        }
        self.entries.insert(subject.to_vec(), found.clone());
        found
    }
}
