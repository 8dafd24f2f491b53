//! `/jsz`: JetStream's settings, totals and (on request) per-stream and per-consumer detail,
//! with nats-server's field names and meanings (`server/monitor.go`'s `JSInfo`).
//!
//! The numbers come from the JetStream actor, which owns the manager: the handler asks it for
//! a view through `Shared::jetstream_views` and waits for the answer (between two batches).
//!
//! Fjord has one account, nats-server's global `$G`, so `account_details` has at most one
//! entry, and no clustering, so `raft`, `leader-only` and `stream-leader-only` filter nothing
//! (every stream is led here) and add no raft groups, as on a single nats-server.

use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

use super::format::rfc3339_nanos;
use super::query::{BadRequest, Query};
use crate::server::Shared;

/// The global account's name (and id), as nats-server names it.
const GLOBAL_ACCOUNT: &str = "$G";
/// nats-server's default page size for `account_details`.
const DEFAULT_LIMIT: i64 = 1024;
/// How long a request waits for the actor before giving up (it answers between batches, so
/// this is only reached if it is stuck or gone).
const VIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// The query parameters nats-server's `HandleJsz` reads.
struct JszOptions {
    account: String,
    accounts: bool,
    streams: bool,
    consumers: bool,
    config: bool,
    leader_only: bool,
    offset: i64,
    limit: i64,
}

impl JszOptions {
    fn parse(query: &Query) -> Result<JszOptions, BadRequest> {
        let accounts = query.flag("accounts")?;
        let mut streams = query.flag("streams")?;
        let consumers = query.flag("consumers")?;
        // Fjord has no direct consumers (sourcing/mirroring internals); parsed for its errors.
        query.flag("direct-consumers")?;
        let config = query.flag("config")?;
        let offset = query.int("offset", 0)?;
        let limit = query.int("limit", 0)?;
        let leader_only = query.flag("leader-only")?;
        query.flag("raft")?;
        query.flag("stream-leader-only")?;
        let account = query.get("acc").unwrap_or("").to_string();
        // nats-server's defaulting: consumers imply streams; streams for no named account
        // imply the account list.
        if consumers {
            streams = true;
        }
        let accounts = accounts || (streams && account.is_empty());
        Ok(JszOptions {
            account,
            accounts,
            streams,
            consumers,
            config,
            leader_only,
            offset: offset.max(0),
            limit: if limit == 0 { DEFAULT_LIMIT } else { limit },
        })
    }
}

pub async fn jsz(shared: &Shared, query: &Query) -> Result<Value, BadRequest> {
    let opts = JszOptions::parse(query)?;
    let config = shared.config();
    let now = rfc3339_nanos(SystemTime::now());
    let Some(views) = shared.jetstream_views.get() else {
        if opts.leader_only {
            // A server without JetStream leads nothing.
            return Err(BadRequest("filtered response: not leader".into()));
        }
        return Ok(disabled(&config.server_id, &now));
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if views.send(tx).is_err() {
        return Err(BadRequest("JetStream is not running".into()));
    }
    let view = match tokio::time::timeout(VIEW_TIMEOUT, rx).await {
        Ok(Ok(view)) => view,
        _ => return Err(BadRequest("JetStream did not answer".into())),
    };
    let options = shared.options.load();
    Ok(enabled(&view, &opts, &options, &config.server_id, &config.server_name, &now))
}

/// `/varz`'s `jetstream`: `{}` without JetStream (as nats-server); otherwise the active
/// `config` (as `/jsz` shows it) and the server's `stats`. nats-server 2.15.1 also shows
/// `limits: {"default_max_consumers": 1000}`; fjord has no such default, so it shows none.
pub async fn varz_jetstream(shared: &Shared) -> Value {
    let Some(views) = shared.jetstream_views.get() else {
        return json!({});
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if views.send(tx).is_err() {
        return json!({});
    }
    let Ok(Ok(view)) = tokio::time::timeout(VIEW_TIMEOUT, rx).await else {
        return json!({});
    };
    let account = &view["account"];
    let options = shared.options.load();
    json!({
        "config": jetstream_config(&options),
        "stats": {
            "memory": account["memory"], "storage": account["storage"],
            "reserved_memory": account["reserved_memory"],
            "reserved_storage": account["reserved_storage"],
            "accounts": 1, "ha_assets": 0, "api": account["api"],
        },
    })
}

/// nats-server's answer when JetStream is off: zeros, `disabled`, and a zero config.
fn disabled(server_id: &str, now: &str) -> Value {
    json!({
        "memory": 0, "storage": 0, "reserved_memory": 0, "reserved_storage": 0,
        "accounts": 0, "ha_assets": 0,
        "api": {"level": 0, "total": 0, "errors": 0},
        "server_id": server_id,
        "now": now,
        "disabled": true,
        "config": {"max_memory": 0, "max_storage": 0},
        "streams": 0, "consumers": 0, "messages": 0, "bytes": 0,
        "total": 0,
    })
}

fn enabled(
    view: &Value,
    opts: &JszOptions,
    options: &crate::options::Options,
    server_id: &str,
    server_name: &str,
    now: &str,
) -> Value {
    let account = &view["account"];
    let empty = Vec::new();
    let streams = view["streams"].as_array().unwrap_or(&empty);
    let (mut messages, mut bytes, mut consumers) = (0u64, 0u64, 0u64);
    for s in streams {
        let state = &s["info"]["state"];
        messages += state["messages"].as_u64().unwrap_or(0);
        bytes += state["bytes"].as_u64().unwrap_or(0);
        consumers += state["consumer_count"].as_u64().unwrap_or(0);
    }
    let api = &account["api"];
    let mut out = Map::new();
    out.insert("memory".into(), account["memory"].clone());
    out.insert("storage".into(), account["storage"].clone());
    out.insert("reserved_memory".into(), json!(0));
    out.insert("reserved_storage".into(), json!(0));
    out.insert("accounts".into(), json!(1));
    out.insert("ha_assets".into(), json!(0));
    out.insert(
        "api".into(),
        json!({"level": api["level"], "total": api["total"], "errors": api["errors"]}),
    );
    out.insert("server_id".into(), json!(server_id));
    out.insert("now".into(), json!(now));
    out.insert("config".into(), jetstream_config(options));
    // nats-server's server-wide JetStream limits (`jetstream { limits {...} }`); Fjord has none
    // of them, and every field of the object is omitted when unset.
    out.insert("limits".into(), json!({}));
    out.insert("streams".into(), json!(streams.len()));
    out.insert("consumers".into(), json!(consumers));
    out.insert("messages".into(), json!(messages));
    out.insert("bytes".into(), json!(bytes));
    let listed = if opts.account == GLOBAL_ACCOUNT {
        true
    } else {
        // Another named account does not exist (nats-server lists nothing, with a 200); the
        // account list is one long, paged by offset.
        opts.account.is_empty() && opts.accounts && (opts.limit < 0 || opts.offset < 1)
    };
    if listed {
        let detail = account_detail(account, streams, opts, server_name, now);
        out.insert("account_details".into(), json!([detail]));
    }
    out.insert("total".into(), json!(1));
    Value::Object(out)
}

/// `config`: nats-server's `JetStreamConfig`. Fjord syncs every write before acknowledging
/// it, which is nats-server's `sync_interval: always` (`sync_always`), so it has no background
/// `sync_interval` to report. The limits are the configured ones (`max_memory_store`,
/// `max_file_store`), -1 when unset (Fjord sizes no default from the machine's memory and disk).
fn jetstream_config(options: &crate::options::Options) -> Value {
    let store_dir = options.jetstream_store_dir().join("jetstream");
    json!({
        "max_memory": options.jetstream_max_memory.unwrap_or(-1),
        "max_storage": options.jetstream_max_file.unwrap_or(-1),
        "store_dir": store_dir.display().to_string(),
        "sync_always": true,
    })
}

/// One `account_details` entry: the account's totals, and with `streams` its streams.
fn account_detail(
    account: &Value,
    streams: &[Value],
    opts: &JszOptions,
    server_name: &str,
    now: &str,
) -> Value {
    let mut detail = Map::new();
    detail.insert("name".into(), json!(GLOBAL_ACCOUNT));
    detail.insert("id".into(), json!(GLOBAL_ACCOUNT));
    detail.insert("memory".into(), account["memory"].clone());
    detail.insert("storage".into(), account["storage"].clone());
    // No reservation: nats-server prints its "unlimited" (-1) as an unsigned number here.
    detail.insert("reserved_memory".into(), json!(u64::MAX));
    detail.insert("reserved_storage".into(), json!(u64::MAX));
    detail.insert("accounts".into(), json!(0));
    detail.insert("ha_assets".into(), json!(0));
    // Per account, nats-server leaves the API level unset (0).
    let api = &account["api"];
    detail
        .insert("api".into(), json!({"level": 0, "total": api["total"], "errors": api["errors"]}));
    if opts.streams && !streams.is_empty() {
        let list: Vec<Value> =
            streams.iter().map(|s| stream_detail(s, opts, server_name, now)).collect();
        detail.insert("stream_detail".into(), json!(list));
    }
    Value::Object(detail)
}

fn stream_detail(stream: &Value, opts: &JszOptions, server_name: &str, now: &str) -> Value {
    let info = &stream["info"];
    let mut out = Map::new();
    out.insert("name".into(), info["config"]["name"].clone());
    out.insert("created".into(), info["created"].clone());
    // The one server leads every stream; nats-server names the leader by server name.
    out.insert("cluster".into(), json!({"leader": server_name}));
    if opts.config {
        out.insert("config".into(), info["config"].clone());
    }
    out.insert("state".into(), info["state"].clone());
    let consumers = stream["consumers"].as_array().filter(|c| !c.is_empty());
    if let (true, Some(consumers)) = (opts.consumers, consumers) {
        let list: Vec<Value> = consumers
            .iter()
            .map(|c| {
                let mut c = c.clone();
                if let Value::Object(map) = &mut c {
                    if !opts.config {
                        map.remove("config");
                    }
                    // A single nats-server reports no cluster for a consumer.
                    map.remove("cluster");
                    // `ts` is when the information was gathered.
                    map.insert("ts".into(), json!(now));
                }
                c
            })
            .collect();
        out.insert("consumer_detail".into(), json!(list));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(q: &str) -> JszOptions {
        JszOptions::parse(&Query::parse(Some(q))).unwrap()
    }

    fn view() -> Value {
        json!({
            "account": {"memory": 31, "storage": 129, "api": {"level": 1, "total": 4, "errors": 1}},
            "streams": [{
                "info": {
                    "config": {"name": "ORDERS", "subjects": ["orders.>"]},
                    "created": "2026-11-27T20:27:18.170354758Z",
                    "state": {"messages": 3, "bytes": 129, "consumer_count": 1},
                    "cluster": {"leader": "fjord"},
                },
                "consumers": [{"stream_name": "ORDERS", "name": "C1", "config": {"durable_name": "C1"}}],
            }],
        })
    }

    #[test]
    fn totals_without_details_by_default() {
        let v = enabled(&view(), &opts(""), &Default::default(), "NID", "n1", "now");
        assert_eq!((v["streams"].as_u64(), v["consumers"].as_u64()), (Some(1), Some(1)));
        assert_eq!((v["messages"].as_u64(), v["bytes"].as_u64()), (Some(3), Some(129)));
        assert_eq!(v["api"]["total"], 4);
        assert!(v.get("account_details").is_none());
        assert_eq!(v["config"]["sync_always"], true);
    }

    #[test]
    fn consumers_imply_streams_and_config_is_opt_in() {
        let v = enabled(&view(), &opts("consumers=1"), &Default::default(), "NID", "n1", "now");
        let stream = &v["account_details"][0]["stream_detail"][0];
        assert_eq!(stream["name"], "ORDERS");
        assert_eq!(stream["cluster"]["leader"], "n1");
        assert!(stream.get("config").is_none());
        let consumer = &stream["consumer_detail"][0];
        assert!(consumer.get("config").is_none());
        assert_eq!(consumer["ts"], "now");
        let v = enabled(&view(), &opts("consumers=1&config=1"), &Default::default(), "N", "n", "t");
        let stream = &v["account_details"][0]["stream_detail"][0];
        assert_eq!(stream["config"]["subjects"][0], "orders.>");
        assert_eq!(stream["consumer_detail"][0]["config"]["durable_name"], "C1");
    }

    #[test]
    fn accounts_are_paged_and_filtered_by_name() {
        let d = Default::default();
        assert!(enabled(&view(), &opts("accounts=1"), &d, "N", "n", "t")["account_details"][0]
            .get("stream_detail")
            .is_none());
        assert!(enabled(&view(), &opts("accounts=1&offset=1"), &d, "N", "n", "t")
            .get("account_details")
            .is_none());
        assert!(enabled(&view(), &opts("acc=FOO&streams=1"), &d, "N", "n", "t")
            .get("account_details")
            .is_none());
        let named = enabled(&view(), &opts("acc=$G&streams=1"), &d, "N", "n", "t");
        assert_eq!(named["account_details"][0]["stream_detail"][0]["name"], "ORDERS");
        assert!(JszOptions::parse(&Query::parse(Some("streams=nope"))).is_err());
    }
}
