//! Configuration reload (SIGHUP, `--signal reload`): re-reads the file, applies the flags
//! over it again (flags still win), and changes what can change at run time. A setting that
//! cannot change (ports, hosts, names, JetStream) fails the whole reload with a log line, and
//! the server keeps its old configuration, as nats-server does.
//!
//! What changes: logging (`debug`, `trace`, `logtime`, `logtime_utc`, `log_file`) at once, for
//! every connection; authorization (users, passwords, tokens, permissions) for new connections,
//! and open connections whose credentials no longer pass are closed with
//! `Authorization Violation`; TLS certificates for new connections; lame duck timings;
//! `max_closed_clients`; the client limits (`max_payload`, `max_control_line`, `max_pending`,
//! `max_connections`, `max_subscriptions`, `ping_interval`, `ping_max`) for new connections:
//! an open connection keeps the limits it started with (nats-server also applies some of them,
//! such as max_payload, to open clients; fjord does not, so the message path reads no shared
//! configuration); `max_connections` counts open connections at each new accept, so lowering
//! it refuses new clients until enough have left, without closing any.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use fjord_core::client::conn::CloseReason;
use fjord_core::proto::encode;
use tracing::{info, warn};

use crate::cli::Flags;
use crate::config;
use crate::options::Options;
use crate::server::Shared;
use crate::tls::TlsServer;

/// Reloads from the configuration file `shared.options` names. Returns the error text to log.
pub fn reload(shared: &Shared, flags: &Flags) -> Result<(), String> {
    let old = shared.options.load_full();
    let Some(path) = old.config_file.clone() else {
        return Err("Can only reload config when a file is provided using -c or --config".into());
    };
    let mut new = Options::default();
    let warnings = config::load_file(&path, &mut new).map_err(|e| e.to_string())?;
    flags.apply(&mut new)?;
    for w in &warnings {
        warn!("{w}");
    }
    refuse_fixed(&old, &new)?;
    // Build everything fallible before changing anything, so a failure keeps the old config.
    let tls = match &new.tls {
        Some(t) => Some(Arc::new(TlsServer::new(t).map_err(|e| e.to_string())?)),
        None => None,
    };
    // A new log file that cannot be opened fails the reload before anything has changed.
    let logging = crate::logging::prepare(&new.log_settings())?;
    // Announced in the old log, then switched, as nats-server does: an operator watching the
    // old file sees where logging went.
    for what in &logging.changed {
        info!("Reloaded: {what}");
    }
    logging.commit();
    shared.trace.store(new.trace, Ordering::Relaxed);
    let mut changed = Vec::new();
    if new.core.auth != old.core.auth {
        shared.auth.store(Arc::new(new.core.auth.clone()));
        changed.push("authorization");
        disconnect_unauthorized(shared);
    }
    if new.tls.is_some() != old.tls.is_some() {
        warn!("Reload: turning TLS on or off is applied to new connections only");
    }
    if new.tls != old.tls || new.tls.is_some() {
        // Certificate files may have new contents under the same names.
        shared.tls.store(tls);
        if new.tls.is_some() || old.tls.is_some() {
            changed.push("tls");
        }
    }
    if new.max_closed_clients != old.max_closed_clients {
        shared.closed.lock().set_capacity(new.max_closed_clients);
        changed.push("max_closed_clients");
    }
    if new.lame_duck_duration != old.lame_duck_duration {
        changed.push("lame_duck_duration");
    }
    if new.lame_duck_grace_period != old.lame_duck_grace_period {
        changed.push("lame_duck_grace_period");
    }
    // The running config keeps its identity (id, name, bound host and port: fixed above) and
    // takes the new limits; connections load it once as they start.
    let mut limits = (**shared.config.load()).clone();
    let mut limits_changed = false;
    for (name, differs) in client_limits(&old, &new) {
        if differs {
            changed.push(name);
            limits_changed = true;
        }
    }
    if limits_changed {
        let n = &new.core;
        limits.max_payload = n.max_payload;
        limits.max_control_line = n.max_control_line;
        limits.max_pending = n.max_pending;
        limits.max_connections = n.max_connections;
        limits.max_subscriptions = n.max_subscriptions;
        limits.ping_interval = n.ping_interval;
        limits.ping_max = n.ping_max;
    }
    limits.auth = new.core.auth.clone();
    shared.config.store(Arc::new(limits));
    for name in &changed {
        info!("Reloaded: {name}");
    }
    let mut kept = new;
    // What the server decided at start stays (its identity); authorization and limits are new.
    let mut core = old.core.clone();
    core.auth = kept.core.auth.clone();
    let n = &kept.core;
    core.max_payload = n.max_payload;
    core.max_control_line = n.max_control_line;
    core.max_pending = n.max_pending;
    core.max_connections = n.max_connections;
    core.max_subscriptions = n.max_subscriptions;
    core.ping_interval = n.ping_interval;
    core.ping_max = n.ping_max;
    kept.core = core;
    // The JetStream actor took its store limits at start and keeps them: `/varz` and `/jsz`
    // must show the limits in force, not a reloaded value nothing enforces.
    kept.jetstream_max_memory = old.jetstream_max_memory;
    kept.jetstream_max_file = old.jetstream_max_file;
    shared.options.store(Arc::new(kept));
    *shared.config_load_time.lock() = SystemTime::now();
    info!("Reloaded server configuration");
    Ok(())
}

/// Settings that cannot change while the server runs (nats-server refuses them too).
fn refuse_fixed(old: &Options, new: &Options) -> Result<(), String> {
    let fixed: [(&str, String, String); 8] = [
        ("port", old.port.to_string(), new.port.to_string()),
        ("host", old.listen_host.clone(), new.listen_host.clone()),
        ("http_port", format!("{:?}", old.http_port), format!("{:?}", new.http_port)),
        ("http_host", format!("{:?}", old.http_host), format!("{:?}", new.http_host)),
        ("https_port", format!("{:?}", old.https_port), format!("{:?}", new.https_port)),
        ("http_base_path", old.http_base_path.clone(), new.http_base_path.clone()),
        ("jetstream", old.jetstream.to_string(), new.jetstream.to_string()),
        ("store_dir", format!("{:?}", old.store_dir), format!("{:?}", new.store_dir)),
    ];
    for (name, was, now) in fixed {
        if was != now {
            return Err(format!("config reload not supported for {name}: old={was}, new={now}"));
        }
    }
    // The name is fixed unless it was left to default to the server id.
    if !new.core.server_name.is_empty() && new.core.server_name != old.core.server_name {
        return Err(format!(
            "config reload not supported for server_name: old={}, new={}",
            old.core.server_name, new.core.server_name
        ));
    }
    Ok(())
}

/// The client limits a reload changes for new connections.
fn client_limits(old: &Options, new: &Options) -> Vec<(&'static str, bool)> {
    let (o, n) = (&old.core, &new.core);
    vec![
        ("max_payload", o.max_payload != n.max_payload),
        ("max_control_line", o.max_control_line != n.max_control_line),
        ("max_pending", o.max_pending != n.max_pending),
        ("max_connections", o.max_connections != n.max_connections),
        ("max_subscriptions", o.max_subscriptions != n.max_subscriptions),
        ("ping_interval", o.ping_interval != n.ping_interval),
        ("ping_max", o.ping_max != n.ping_max),
    ]
}

/// Closes open connections whose CONNECT credentials the new rules refuse.
fn disconnect_unauthorized(shared: &Shared) {
    let auth = shared.auth();
    let clients: Vec<_> = shared.clients.lock().values().cloned().collect();
    for client in clients {
        let Some(connect) = client.connect.lock().clone() else {
            // No CONNECT yet: it will be checked when it comes.
            continue;
        };
        let passes = auth
            .authenticate(
                connect.auth_token.as_deref(),
                connect.user.as_deref(),
                connect.pass.as_deref(),
            )
            .is_ok();
        if passes {
            continue;
        }
        info!("{} - cid:{} - Authorization Violation", client.peer, client.id);
        let mut out = Vec::new();
        encode::err(&mut out, "Authorization Violation");
        client.outbound.push(&out);
        client.outbound.close(CloseReason::AuthorizationViolation);
    }
}
