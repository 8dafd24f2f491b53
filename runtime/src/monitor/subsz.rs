//! `/subsz`: the subscription index's size and, with `subs=1` or `test=<subject>`, the
//! subscriptions themselves (those whose subject matches the test subject), as nats-server's
//! `Subsz` prints them.

use std::time::SystemTime;

use fjord_core::subject;
use serde::Serialize;

use super::connz::{ConnRecord, SubRecord, GLOBAL_ACCOUNT};
use super::format::rfc3339_nanos;
use super::query::{BadRequest, Query};
use super::varz::go_float;
use crate::server::Shared;

const DEFAULT_LIMIT: i64 = 1024;

#[derive(Serialize)]
pub struct Subsz {
    pub server_id: String,
    pub now: String,
    pub num_subscriptions: usize,
    /// Fjord keeps match caches per connection, not one in the index: reported as nats-server
    /// reports an index without a cache.
    pub num_cache: u64,
    pub num_inserts: u64,
    pub num_removes: u64,
    pub num_matches: u64,
    pub cache_hit_rate: serde_json::Value,
    pub max_fanout: u64,
    pub avg_fanout: serde_json::Value,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions_list: Option<Vec<SubRecord>>,
}

pub fn subsz(shared: &Shared, query: &Query) -> Result<Subsz, BadRequest> {
    let list = query.flag("subs")?;
    let offset = query.int("offset", 0)?.max(0) as usize;
    let mut limit = query.int("limit", DEFAULT_LIMIT)?;
    if limit <= 0 {
        limit = DEFAULT_LIMIT;
    }
    let test = match query.get("test").filter(|t| !t.is_empty()) {
        Some(t) if subject::validate_literal(t.as_bytes()).is_err() => {
            return Err(BadRequest(format!(
                "invalid test subject, must be valid publish subject: {t}"
            )))
        }
        other => other,
    };
    let mut subscriptions_list = None;
    let mut total = 0;
    if list || test.is_some() {
        let handles: Vec<_> = shared.clients.lock().values().cloned().collect();
        let mut subs: Vec<SubRecord> = handles
            .iter()
            .flat_map(|h| ConnRecord::open(h, shared).subs)
            .filter(|s| test.is_none_or(|t| subject::matches(s.subject.as_bytes(), t.as_bytes())))
            .collect();
        subs.sort_by(|a, b| (a.cid, a.sid.len(), &a.sid).cmp(&(b.cid, b.sid.len(), &b.sid)));
        total = subs.len();
        subscriptions_list = Some(
            subs.into_iter()
                .skip(offset)
                .take(limit as usize)
                .map(|sub| SubRecord {
                    account: Some(GLOBAL_ACCOUNT),
                    account_tag: Some(GLOBAL_ACCOUNT),
                    ..sub
                })
                .collect(),
        );
    }
    Ok(Subsz {
        server_id: shared.config.load().server_id.clone(),
        now: rfc3339_nanos(SystemTime::now()),
        num_subscriptions: shared.index.len(),
        num_cache: 0,
        num_inserts: 0,
        num_removes: 0,
        num_matches: 0,
        cache_hit_rate: go_float(0.0),
        max_fanout: 0,
        avg_fanout: go_float(0.0),
        total,
        offset,
        limit: limit as usize,
        subscriptions_list,
    })
}
