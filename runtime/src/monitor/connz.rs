//! `/connz`: open and recently closed client connections, with nats-server's field names,
//! sort orders, paging and errors (server/monitor.go `Connz`, `ConnInfo`; sort.go).

use std::cmp::Ordering as CmpOrdering;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::format::{rfc3339_nanos, uptime};
use super::query::{BadRequest, Query};
use crate::index::ClientHandle;
use crate::server::Shared;

/// Fjord has a single account; nats-server names it `$G`.
pub const GLOBAL_ACCOUNT: &str = "$G";

/// nats-server's default and maximum page.
const DEFAULT_LIMIT: i64 = 1024;

/// What monitoring needs of one connection, captured while it is open or as it closes.
#[derive(Clone, Debug)]
pub struct ConnRecord {
    pub cid: u64,
    pub ip: String,
    pub port: u16,
    pub start: SystemTime,
    pub last_activity: SystemTime,
    pub stop: Option<SystemTime>,
    pub reason: Option<String>,
    pub pending_bytes: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subs: Vec<SubRecord>,
    pub name: Option<String>,
    pub lang: Option<String>,
    pub version: Option<String>,
    pub user: Option<String>,
}

impl Default for ConnRecord {
    fn default() -> Self {
        ConnRecord {
            cid: 0,
            ip: String::new(),
            port: 0,
            start: SystemTime::UNIX_EPOCH,
            last_activity: SystemTime::UNIX_EPOCH,
            stop: None,
            reason: None,
            pending_bytes: 0,
            in_msgs: 0,
            out_msgs: 0,
            in_bytes: 0,
            out_bytes: 0,
            subs: Vec::new(),
            name: None,
            lang: None,
            version: None,
            user: None,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SubRecord {
    /// Shown by `/subsz`, and by `/connz` with `auth=1`, as nats-server does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_tag: Option<&'static str>,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(rename = "qgroup")]
    pub queue: Option<String>,
    pub sid: String,
    pub msgs: u64,
    pub cid: u64,
}

impl ConnRecord {
    /// A snapshot of an open connection.
    pub fn open(handle: &ClientHandle, shared: &Shared) -> ConnRecord {
        let last_nanos = handle.last_activity.load(Ordering::Relaxed);
        // `last_activity` is core time (nanoseconds since the server started); 0 = nothing
        // received yet, when nats-server reports the connection's start.
        let last_activity = if last_nanos == 0 {
            handle.started
        } else {
            shared.started + Duration::from_nanos(last_nanos)
        };
        let connect = handle.connect.lock().clone().unwrap_or_default();
        // nats-server reports the user it authorized; without auth there is none, whatever
        // CONNECT carried.
        let authorized = shared.auth.load().required();
        let mut subs: Vec<SubRecord> = handle
            .subs
            .lock()
            .values()
            .map(|sub| SubRecord {
                account: None,
                account_tag: None,
                subject: String::from_utf8_lossy(&sub.subject).into_owned(),
                queue: sub.queue.as_ref().map(|q| String::from_utf8_lossy(q).into_owned()),
                sid: String::from_utf8_lossy(&sub.sid).into_owned(),
                msgs: sub.delivered.load(Ordering::Relaxed),
                cid: handle.id,
            })
            .collect();
        // The subs map is unordered; numeric sids in order read like nats-server's list.
        subs.sort_by(|a, b| (a.sid.len(), &a.sid).cmp(&(b.sid.len(), &b.sid)));
        ConnRecord {
            cid: handle.id,
            ip: handle.peer.ip().to_string(),
            port: handle.peer.port(),
            start: handle.started,
            last_activity,
            stop: None,
            reason: None,
            pending_bytes: handle.outbound.pending_bytes(),
            in_msgs: handle.stats.in_msgs.load(Ordering::Relaxed),
            out_msgs: handle.stats.out_msgs.load(Ordering::Relaxed),
            in_bytes: handle.stats.in_bytes.load(Ordering::Relaxed),
            out_bytes: handle.stats.out_bytes.load(Ordering::Relaxed),
            subs,
            name: connect.name.filter(|n| !n.is_empty()),
            lang: connect.lang.filter(|l| !l.is_empty()),
            version: connect.version.filter(|v| !v.is_empty()),
            user: connect.user.filter(|u| authorized && !u.is_empty()),
        }
    }

    fn uptime(&self, now: SystemTime) -> Duration {
        let end = self.stop.unwrap_or(now);
        end.duration_since(self.start).unwrap_or_default()
    }

    fn idle(&self, now: SystemTime) -> Duration {
        let end = self.stop.unwrap_or(now);
        end.duration_since(self.last_activity).unwrap_or_default()
    }

    fn render(&self, now: SystemTime, subs: SubsDetail, auth: bool) -> ConnInfo {
        ConnInfo {
            cid: self.cid,
            kind: "Client",
            kind_type: "nats",
            ip: self.ip.clone(),
            port: self.port,
            start: rfc3339_nanos(self.start),
            last_activity: rfc3339_nanos(self.last_activity),
            stop: self.stop.map(rfc3339_nanos),
            reason: self.reason.clone(),
            uptime: uptime(self.uptime(now)),
            idle: uptime(self.idle(now)),
            pending_bytes: self.pending_bytes,
            in_msgs: self.in_msgs,
            out_msgs: self.out_msgs,
            in_bytes: self.in_bytes,
            out_bytes: self.out_bytes,
            subscriptions: self.subs.len(),
            name: self.name.clone(),
            lang: self.lang.clone(),
            version: self.version.clone(),
            authorized_user: if auth { self.user.clone() } else { None },
            // nats-server leaves out the global account's name; Fjord has only that one.
            account: None,
            subscriptions_list: (subs == SubsDetail::List && !self.subs.is_empty())
                .then(|| self.subs.iter().map(|s| s.subject.clone()).collect()),
            subscriptions_list_detail: (subs == SubsDetail::Detail && !self.subs.is_empty()).then(
                || {
                    let account = auth.then_some(GLOBAL_ACCOUNT);
                    let with_account =
                        |s: &SubRecord| SubRecord { account, account_tag: account, ..s.clone() };
                    self.subs.iter().map(with_account).collect()
                },
            ),
        }
    }
}

/// One connection as nats-server's `ConnInfo` prints it (fields in its order).
#[derive(Serialize)]
pub struct ConnInfo {
    pub cid: u64,
    pub kind: &'static str,
    #[serde(rename = "type")]
    pub kind_type: &'static str,
    pub ip: String,
    pub port: u16,
    pub start: String,
    pub last_activity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub uptime: String,
    pub idle: String,
    pub pending_bytes: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subscriptions: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorized_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions_list: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions_list_detail: Option<Vec<SubRecord>>,
}

#[derive(Serialize)]
pub struct Connz {
    pub server_id: String,
    pub now: String,
    pub num_connections: usize,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub connections: Vec<ConnInfo>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubsDetail {
    None,
    List,
    Detail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    Closed,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SortBy {
    Cid,
    Start,
    Subs,
    Pending,
    MsgsTo,
    MsgsFrom,
    BytesTo,
    BytesFrom,
    Last,
    Idle,
    Uptime,
    Stop,
    Reason,
    Rtt,
}

impl SortBy {
    fn parse(text: &str) -> Result<SortBy, BadRequest> {
        Ok(match text {
            "" | "cid" => SortBy::Cid,
            "start" => SortBy::Start,
            "subs" => SortBy::Subs,
            "pending" => SortBy::Pending,
            "msgs_to" => SortBy::MsgsTo,
            "msgs_from" => SortBy::MsgsFrom,
            "bytes_to" => SortBy::BytesTo,
            "bytes_from" => SortBy::BytesFrom,
            "last" => SortBy::Last,
            "idle" => SortBy::Idle,
            "uptime" => SortBy::Uptime,
            "stop" => SortBy::Stop,
            "reason" => SortBy::Reason,
            "rtt" => SortBy::Rtt,
            other => return Err(BadRequest(format!("invalid sorting option: {other}"))),
        })
    }

    /// nats-server's orders: cid and start ascending, reason alphabetical, the rest largest
    /// first. Ties fall back to cid so pages are stable.
    fn compare(self, a: &ConnRecord, b: &ConnRecord, now: SystemTime) -> CmpOrdering {
        let primary = match self {
            SortBy::Cid => a.cid.cmp(&b.cid),
            SortBy::Start => a.start.cmp(&b.start),
            SortBy::Subs => b.subs.len().cmp(&a.subs.len()),
            SortBy::Pending => b.pending_bytes.cmp(&a.pending_bytes),
            SortBy::MsgsTo => b.out_msgs.cmp(&a.out_msgs),
            SortBy::MsgsFrom => b.in_msgs.cmp(&a.in_msgs),
            SortBy::BytesTo => b.out_bytes.cmp(&a.out_bytes),
            SortBy::BytesFrom => b.in_bytes.cmp(&a.in_bytes),
            SortBy::Last => b.last_activity.cmp(&a.last_activity),
            SortBy::Idle => b.idle(now).cmp(&a.idle(now)),
            SortBy::Uptime => b.uptime(now).cmp(&a.uptime(now)),
            SortBy::Stop => b.stop.cmp(&a.stop),
            SortBy::Reason => a.reason.cmp(&b.reason),
            // Fjord does not measure RTT yet: every connection ties.
            SortBy::Rtt => CmpOrdering::Equal,
        };
        primary.then(a.cid.cmp(&b.cid))
    }
}

pub fn connz(shared: &Shared, query: &Query) -> Result<Connz, BadRequest> {
    let sort = SortBy::parse(query.get("sort").unwrap_or(""))?;
    let subs = match query.get("subs") {
        Some("detail") => SubsDetail::Detail,
        _ if query.flag("subs")? => SubsDetail::List,
        _ => SubsDetail::None,
    };
    let auth = query.flag("auth")?;
    let offset = query.int("offset", 0)?.max(0) as usize;
    let mut limit = query.int("limit", DEFAULT_LIMIT)?;
    if limit <= 0 {
        limit = DEFAULT_LIMIT;
    }
    let cid = query.int("cid", 0)?;
    let state = match query.get("state").unwrap_or("") {
        "" | "open" => State::Open,
        "closed" => State::Closed,
        "any" | "all" => State::All,
        other => return Err(BadRequest(format!("Error decoding state for {other}"))),
    };
    if state != State::Closed && matches!(sort, SortBy::Stop | SortBy::Reason) {
        let name = if sort == SortBy::Stop { "stop" } else { "reason" };
        return Err(BadRequest(format!("sort by {name} only valid on closed connections")));
    }
    let now = SystemTime::now();
    let mut records = Vec::new();
    if cid > 0 {
        // A single connection, open or closed (nats-server looks in both, and pages by 1).
        let cid = cid as u64;
        limit = 1;
        let open = shared.clients.lock().get(&cid).cloned();
        match open {
            Some(handle) => records.push(ConnRecord::open(&handle, shared)),
            None => {
                records.extend(shared.closed.lock().iter().filter(|r| r.cid == cid).cloned());
            }
        }
    } else {
        if state != State::Closed {
            let handles: Vec<_> = shared.clients.lock().values().cloned().collect();
            records.extend(handles.iter().map(|h| ConnRecord::open(h, shared)));
        }
        if state != State::Open {
            records.extend(shared.closed.lock().iter().cloned());
        }
    }
    records.sort_by(|a, b| sort.compare(a, b, now));
    let total = records.len();
    let limit = limit as usize;
    let connections: Vec<ConnInfo> =
        records.iter().skip(offset).take(limit).map(|r| r.render(now, subs, auth)).collect();
    Ok(Connz {
        server_id: shared.config.load().server_id.clone(),
        now: rfc3339_nanos(now),
        num_connections: connections.len(),
        total,
        offset,
        limit,
        connections,
    })
}
