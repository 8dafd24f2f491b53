//! Maps a parsed configuration onto [`Options`], checking each supported key's type and range
//! the way nats-server 2.15.1 does where Fjord can represent its choice.
//!
//! Keys are matched case-insensitively (nats-server lower-cases them). A key nats-server knows
//! but Fjord does not implement yet is recorded in `unsupported_keys` with a warning; a key
//! nats-server itself would reject is an error, unless it was only used as a `$variable`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fjord_core::client::auth::{AuthConfig, User};
use fjord_core::client::permissions::{Permissions, ResponsePermission, SubjectPermission};
use fjord_core::config::CoreConfig;

use super::lexer::{classify_bare, Scalar};
use super::parser::{parse_file, Sources};
use super::{ConfigError, Entry, ErrorKind, Map, Pos, Value};
use crate::options::Options;

/// nats-server refuses a `max_control_line` that does not fit its 32-bit field.
const MAX_CONTROL_LINE_LIMIT: i64 = i32::MAX as i64;

/// Above this nats-server warns about `max_payload`.
const LARGE_PAYLOAD: usize = 8 * 1024 * 1024;

/// Top-level keys nats-server accepts that Fjord does not implement (checked against the
/// 2.15.1 binary: each is "known" to `nats-server -t`).
const UNSUPPORTED_TOP: &[&str] = &[
    "client_advertise",
    "trace_verbose",
    "trace_headers",
    "log_size_limit",
    "logfile_size_limit",
    "log_max_num",
    "logfile_max_num",
    "default_sentinel",
    "resolver_pinned_accounts",
    "no_fast_producer_stall",
    "syslog",
    "remote_syslog",
    "max_sub_tokens",
    "max_subscription_tokens",
    "write_deadline",
    "write_timeout",
    "system_account",
    "system",
    "no_system_account",
    "no_system",
    "no_sys_acc",
    "disable_sublist_cache",
    "no_sublist_cache",
    "mappings",
    "maps",
    "accounts",
    "operator",
    "operators",
    "root",
    "roots",
    "root_operator",
    "root_operators",
    "resolver",
    "account_resolver",
    "accounts_resolver",
    "resolver_preload",
    "resolver_tls",
    "trusted",
    "trusted_keys",
    "server_tags",
    "server_metadata",
    "feature_flags",
    "default_js_domain",
    "connect_error_reports",
    "reconnect_error_reports",
    "proxy_protocol",
    "proxies",
    "cluster",
    "gateway",
    "leafnodes",
    "leaf",
    "websocket",
    "ws",
    "mqtt",
    "prof_port",
    "prof_block_rate",
    "max_traced_msg_len",
    "ocsp",
    "ocsp_cache",
    "allow_non_tls",
];

const UNSUPPORTED_JETSTREAM: &[&str] = &[
    "sync_interval",
    "sync",
    "domain",
    // key / ek / encryption_key and cipher are supported (encryption at rest); rotating to a
    // new key is not yet.
    "prev_key",
    "prev_ek",
    "prev_encryption_key",
    "limits",
    "unique_tag",
    "max_outstanding_catchup",
    "max_buffered_size",
    "max_buffered_msgs",
    "request_queue_limit",
    "info_queue_limit",
    "max_concurrent_io",
    "strict",
    "tpm",
    "extension_hint",
    "meta_compact",
    "meta_compact_size",
    "meta_compact_sync",
];

/// `tls { }` keys nats-server knows that Fjord does not implement yet.
const UNSUPPORTED_TLS: &[&str] = &[
    "verify_and_map",
    "verify_cert_and_check_known_urls",
    "insecure",
    "allow_insecure_cipher_suites",
    "cipher_suites",
    "curve_preferences",
    "pinned_certs",
    "min_version",
    "cert_store",
    "cert_match",
    "cert_match_by",
    "cert_match_skip_invalid",
    "ca_certs_match",
    "ocsp_peer",
    "certs",
    "certificates",
    "connection_rate_limit",
];

const UNSUPPORTED_USER: &[&str] =
    &["allowed_connection_types", "connection_types", "clients", "proxy_required"];

/// Reads `path` (and its includes) from disk, resolves variables from the process environment,
/// and applies it to `opts`. An empty document is an error, as in nats-server.
pub fn load_file(path: &Path, opts: &mut Options) -> Result<Vec<String>, ConfigError> {
    let load = |p: &Path| std::fs::read(p);
    let env = |name: &str| std::env::var(name).ok();
    let map = parse_file(path, &Sources { load: &load, env: &env })?;
    if map.is_empty() {
        let file = path.display().to_string().into();
        return Err(ConfigError::new(
            ErrorKind::Invalid,
            Pos { file, line: 0, column: 0 },
            "config has no values or is empty",
        ));
    }
    let warnings = apply(&map, opts)?;
    opts.config_file = Some(path.to_path_buf());
    Ok(warnings)
}

/// Applies a parsed document to `opts` and returns warnings to log. On error `opts` is left
/// unchanged.
pub fn apply(value: &Map, opts: &mut Options) -> Result<Vec<String>, ConfigError> {
    let mut applier = Applier {
        opts: opts.clone(),
        warnings: Vec::new(),
        max_payload_at: None,
        no_auth_user_at: None,
    };
    applier.top(value)?;
    applier.check()?;
    *opts = applier.opts;
    Ok(applier.warnings)
}

/// Go-style durations (`1h30m`, `1.5s`, `500ms`): the parser lives in core, where JetStream's
/// `-NAK` delays and `Nats-TTL` headers use it too.
pub use fjord_core::time::parse_go_duration as parse_duration;

struct Applier {
    opts: Options,
    warnings: Vec<String>,
    /// Where `max_payload` was set, to blame it if it exceeds `max_pending`.
    max_payload_at: Option<Pos>,
    no_auth_user_at: Option<Pos>,
}

fn invalid(entry: &Entry, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::new(
        ErrorKind::Invalid,
        entry.pos.clone(),
        format!("invalid value for \"{}\": {message}", entry.key),
    )
}

fn wrong_type(entry: &Entry, expected: &str) -> ConfigError {
    invalid(entry, format!("expected {expected}, got {}", entry.value.type_name()))
}

fn unknown(entry: &Entry, context: &str) -> ConfigError {
    ConfigError::new(
        ErrorKind::Invalid,
        entry.pos.clone(),
        format!("unknown field \"{}\"{context}", entry.key),
    )
}

fn int(entry: &Entry) -> Result<i64, ConfigError> {
    match entry.value {
        Value::Integer(i) => Ok(i),
        _ => Err(wrong_type(entry, "an integer")),
    }
}

fn boolean(entry: &Entry) -> Result<bool, ConfigError> {
    match entry.value {
        Value::Bool(b) => Ok(b),
        _ => Err(wrong_type(entry, "a boolean")),
    }
}

fn string(entry: &Entry) -> Result<&str, ConfigError> {
    match &entry.value {
        Value::String(s) => Ok(s),
        _ => Err(wrong_type(entry, "a string")),
    }
}

fn map(entry: &Entry) -> Result<&Map, ConfigError> {
    match &entry.value {
        Value::Map(m) => Ok(m),
        _ => Err(wrong_type(entry, "a map")),
    }
}

/// A count or size for a `usize` setting. nats-server turns 0 into the default, so 0 gives
/// `default`; Fjord's settings are unsigned, so a negative value is refused.
fn size(entry: &Entry, default: usize, max: i64) -> Result<usize, ConfigError> {
    let v = int(entry)?;
    if v < 0 {
        return Err(invalid(entry, format!("{v} must not be negative")));
    }
    if v > max {
        return Err(invalid(entry, format!("{v} is too big (at most {max})")));
    }
    if v == 0 {
        return Ok(default);
    }
    usize::try_from(v).map_err(|_| invalid(entry, format!("{v} is too big")))
}

/// A port number; -1 asks for a random free port, 0 the default.
fn port(entry: &Entry, text: Option<&str>, value: i64) -> Result<i32, ConfigError> {
    if !(-1..=65535).contains(&value) {
        let shown = text.map(str::to_string).unwrap_or_else(|| value.to_string());
        return Err(invalid(entry, format!("port {shown} is out of range (-1 to 65535)")));
    }
    Ok(value as i32)
}

/// `host:port`, `[v6]:port`, `:port` or a bare port number; None host = not given.
fn host_port(entry: &Entry) -> Result<(Option<String>, i32), ConfigError> {
    match &entry.value {
        Value::Integer(p) => Ok((None, port(entry, None, *p)?)),
        Value::String(s) => {
            let Some((host, p)) = s.rsplit_once(':') else {
                return Err(invalid(
                    entry,
                    format!("could not parse address string \"{s}\" (expected host:port)"),
                ));
            };
            let number: i64 =
                p.parse().map_err(|_| invalid(entry, format!("could not parse port \"{p}\"")))?;
            let port = port(entry, Some(p), number)?;
            let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
            Ok(((!host.is_empty()).then(|| host.to_string()), port))
        }
        _ => Err(wrong_type(entry, "host:port or a port number")),
    }
}

/// Durations are strings (`"2m"`); a bare number counts seconds, which nats-server accepts with
/// a warning. An unquoted `2m` is a number with a size suffix (2000000), so it means 2000000
/// seconds there too: the warning says so.
fn duration(entry: &Entry, warnings: &mut Vec<String>) -> Result<Duration, ConfigError> {
    match &entry.value {
        Value::String(s) => parse_duration(s).map_err(|m| invalid(entry, m)),
        Value::Integer(secs) => {
            let secs = u64::try_from(*secs)
                .map_err(|_| invalid(entry, format!("{secs} must not be negative")))?;
            let mut warning = format!(
                "{}: \"{}\" given as a number is read as {secs} seconds; write a duration string such as \"{secs}s\"",
                position(&entry.pos),
                entry.key
            );
            if let Some(raw) = entry.raw.as_deref().filter(|r| *r != secs.to_string()) {
                warning.push_str(&format!(
                    " (unquoted {raw} is the number {secs}; for a duration write \"{raw}\" in quotes)"
                ));
            }
            warnings.push(warning);
            Ok(Duration::from_secs(secs))
        }
        _ => Err(wrong_type(entry, "a duration string such as \"2m\"")),
    }
}

/// A JetStream store limit: a number or a size string such as `"1G"`. Negative means "let the
/// server choose", as nats-server's -1 does.
fn store_limit(entry: &Entry) -> Result<Option<i64>, ConfigError> {
    let v = match &entry.value {
        Value::Integer(i) => *i,
        Value::String(s) => match classify_bare(s) {
            Ok(Scalar::Integer(i)) => i,
            _ => return Err(invalid(entry, format!("\"{s}\" is not a size"))),
        },
        _ => return Err(wrong_type(entry, "a size")),
    };
    Ok((v >= 0).then_some(v))
}

fn position(pos: &Pos) -> String {
    format!("{}:{}:{}", pos.file, pos.line, pos.column)
}

impl Applier {
    fn unsupported(&mut self, entry: &Entry, path: &str) {
        let name =
            if path.is_empty() { entry.key.clone() } else { format!("{path}.{}", entry.key) };
        self.warnings.push(format!(
            "{}: \"{name}\" is not supported by Fjord yet and is ignored",
            position(&entry.pos)
        ));
        self.opts.unsupported_keys.push(name);
    }

    fn core(&mut self) -> &mut CoreConfig {
        &mut self.opts.core
    }

    fn top(&mut self, doc: &Map) -> Result<(), ConfigError> {
        for entry in doc.entries() {
            let key = entry.key.to_ascii_lowercase();
            match key.as_str() {
                "listen" => {
                    let (host, port) = host_port(entry)?;
                    if let Some(host) = host {
                        self.opts.listen_host = host;
                    }
                    self.opts.port = port;
                }
                "port" => self.opts.port = port(entry, entry.raw.as_deref(), int(entry)?)?,
                "host" | "net" => self.opts.listen_host = string(entry)?.to_string(),
                "server_name" => {
                    let name = string(entry)?;
                    if name.contains(char::is_whitespace) {
                        return Err(invalid(entry, "server name cannot contain spaces"));
                    }
                    self.core().server_name = name.to_string();
                }
                "debug" => self.opts.debug = boolean(entry)?,
                "trace" => self.opts.trace = boolean(entry)?,
                "logtime" => self.opts.logtime = boolean(entry)?,
                "logtime_utc" => self.opts.logtime_utc = boolean(entry)?,
                "log_file" | "logfile" => self.opts.log_file = Some(PathBuf::from(string(entry)?)),
                "pid_file" | "pidfile" => self.opts.pid_file = Some(PathBuf::from(string(entry)?)),
                "ports_file_dir" => self.opts.ports_file_dir = Some(PathBuf::from(string(entry)?)),
                "http" | "http_port" | "monitor_port" => {
                    let (host, port) = host_port(entry)?;
                    if host.is_some() {
                        self.opts.http_host = host;
                    }
                    self.opts.http_port = Some(port);
                }
                "https" | "https_port" => {
                    let (host, port) = host_port(entry)?;
                    if host.is_some() {
                        self.opts.http_host = host;
                    }
                    self.opts.https_port = Some(port);
                }
                "http_base_path" => self.opts.http_base_path = string(entry)?.to_string(),
                "max_control_line" => {
                    let default = CoreConfig::default().max_control_line;
                    self.core().max_control_line = size(entry, default, MAX_CONTROL_LINE_LIMIT)?;
                }
                "max_payload" => {
                    let default = CoreConfig::default().max_payload;
                    self.core().max_payload = size(entry, default, i64::MAX)?;
                    self.max_payload_at = Some(entry.pos.clone());
                }
                "max_pending" => {
                    let default = CoreConfig::default().max_pending;
                    self.core().max_pending = size(entry, default, i64::MAX)?;
                }
                "max_connections" | "max_conn" => {
                    let default = CoreConfig::default().max_connections;
                    self.core().max_connections = size(entry, default, i64::MAX)?;
                }
                "max_subscriptions" | "max_subs" => {
                    // 0 already means unlimited.
                    self.core().max_subscriptions = size(entry, 0, i64::MAX)?;
                }
                "ping_interval" => {
                    let d = duration(entry, &mut self.warnings)?;
                    self.core().ping_interval =
                        if d.is_zero() { CoreConfig::default().ping_interval } else { d };
                }
                "ping_max" => {
                    let default = CoreConfig::default().ping_max as usize;
                    self.core().ping_max = size(entry, default, u32::MAX as i64)? as u32;
                }
                "no_header_support" => self.core().headers = !boolean(entry)?,
                "jetstream" => self.jetstream(entry)?,
                "authorization" => self.authorization(entry)?,
                "lame_duck_duration" => {
                    self.opts.lame_duck_duration = duration(entry, &mut self.warnings)?;
                }
                "lame_duck_grace_period" => {
                    self.opts.lame_duck_grace_period = duration(entry, &mut self.warnings)?;
                }
                "max_closed_clients" => {
                    let v = int(entry)?;
                    // Negative keeps none, like 0 (nats-server stores no closed clients then).
                    self.opts.max_closed_clients = usize::try_from(v.max(0)).unwrap_or(0);
                }
                "tls" => self.tls(entry)?,
                "no_auth_user" => {
                    self.core().auth.no_auth_user = Some(string(entry)?.to_string());
                    self.no_auth_user_at = Some(entry.pos.clone());
                }
                k if UNSUPPORTED_TOP.contains(&k) => self.unsupported(entry, ""),
                // A key that only defines a variable for later `$references`.
                _ if entry.used_as_variable => {}
                _ => return Err(unknown(entry, "")),
            }
        }
        Ok(())
    }

    /// `tls { cert_file, key_file, ca_file, verify, timeout, handshake_first }`.
    fn tls(&mut self, entry: &Entry) -> Result<(), ConfigError> {
        let block = map(entry)?;
        let mut tls = crate::tls::TlsOptions::default();
        let (mut cert, mut key) = (None, None);
        for e in block.entries() {
            match e.key.to_ascii_lowercase().as_str() {
                "cert_file" => cert = Some(PathBuf::from(string(e)?)),
                "key_file" => key = Some(PathBuf::from(string(e)?)),
                "ca_file" => tls.ca_file = Some(PathBuf::from(string(e)?)),
                "verify" => tls.verify = boolean(e)?,
                // Seconds, integer or fractional (nats-server reads a float).
                "timeout" => {
                    let secs = match e.value {
                        Value::Integer(i) => i as f64,
                        Value::Float(f) => f,
                        Value::String(_) => duration(e, &mut self.warnings)?.as_secs_f64(),
                        _ => return Err(wrong_type(e, "a number of seconds")),
                    };
                    if !(secs.is_finite() && secs > 0.0) {
                        return Err(invalid(e, format!("{secs} must be positive")));
                    }
                    tls.timeout = Duration::from_secs_f64(secs);
                }
                "handshake_first" | "first" | "immediate" => {
                    tls.handshake_first = match &e.value {
                        Value::Bool(b) => *b,
                        // "auto"/a duration: nats-server waits for the client to speak first
                        // and falls back; Fjord takes it as handshake first.
                        Value::String(_) => {
                            self.warnings.push(format!(
                                "{}: tls.{} other than true/false is taken as true by Fjord",
                                position(&e.pos),
                                e.key
                            ));
                            true
                        }
                        _ => return Err(wrong_type(e, "a boolean")),
                    };
                }
                k if UNSUPPORTED_TLS.contains(&k) => self.unsupported(e, "tls"),
                _ => return Err(unknown(e, " in tls")),
            }
        }
        match (cert, key) {
            (Some(cert), Some(key)) => {
                tls.cert_file = cert;
                tls.key_file = key;
            }
            _ => return Err(invalid(entry, "missing 'cert_file' and/or 'key_file' in tls config")),
        }
        if tls.verify && tls.ca_file.is_none() {
            return Err(invalid(entry, "'verify' requires a 'ca_file' in tls config"));
        }
        self.opts.tls = Some(tls);
        Ok(())
    }

    fn set_jetstream(&mut self, on: bool) {
        self.opts.jetstream = on;
        self.core().jetstream = on;
    }

    fn jetstream(&mut self, entry: &Entry) -> Result<(), ConfigError> {
        match &entry.value {
            Value::Bool(b) => self.set_jetstream(*b),
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "enabled" | "enable" => self.set_jetstream(true),
                "disabled" | "disable" => self.set_jetstream(false),
                _ => {
                    return Err(invalid(
                        entry,
                        format!("expected 'enabled' or 'disabled', got '{s}'"),
                    ))
                }
            },
            Value::Map(block) => {
                // A jetstream block turns JetStream on unless it says otherwise.
                let mut enabled = true;
                let (mut secret, mut cipher) = (None, fjord_core::store::Cipher::default());
                for e in block.entries() {
                    let key = e.key.to_ascii_lowercase();
                    match key.as_str() {
                        "enabled" | "enable" => enabled = boolean(e)?,
                        "store_dir" | "store" | "storedir" => {
                            self.opts.store_dir = Some(PathBuf::from(string(e)?))
                        }
                        "max_memory_store" | "max_mem" | "max_mem_store" => {
                            self.opts.jetstream_max_memory = store_limit(e)?
                        }
                        "max_file_store" | "max_file" => {
                            self.opts.jetstream_max_file = store_limit(e)?
                        }
                        "key" | "ek" | "encryption_key" => {
                            let k = string(e)?;
                            if k.is_empty() {
                                return Err(invalid(e, "the encryption key must not be empty"));
                            }
                            secret = Some(k.to_string());
                        }
                        "cipher" => {
                            let name = string(e)?;
                            cipher = fjord_core::store::Cipher::parse(name).ok_or_else(|| {
                                invalid(
                                    e,
                                    format!("cipher '{name}' is not supported (use chachapoly)"),
                                )
                            })?;
                        }
                        k if UNSUPPORTED_JETSTREAM.contains(&k) => self.unsupported(e, "jetstream"),
                        _ if e.used_as_variable => {}
                        _ => return Err(unknown(e, " in jetstream")),
                    }
                }
                self.opts.jetstream_encryption =
                    secret.map(|key| crate::options::JetStreamEncryption { key, cipher });
                self.set_jetstream(enabled);
            }
            _ => return Err(wrong_type(entry, "'enabled', 'disabled', a boolean or a map")),
        }
        Ok(())
    }

    fn authorization(&mut self, entry: &Entry) -> Result<(), ConfigError> {
        let block = map(entry)?;
        let mut auth = AuthConfig {
            no_auth_user: self.opts.core.auth.no_auth_user.clone(),
            ..AuthConfig::default()
        };
        let mut single_user_permissions: Option<(Permissions, &Entry)> = None;
        let mut users_at: Option<&Entry> = None;
        let mut token_at: Option<&Entry> = None;
        for e in block.entries() {
            let key = e.key.to_ascii_lowercase();
            match key.as_str() {
                "user" | "username" => auth.user = Some(string(e)?.to_string()),
                "password" | "pass" => auth.password = Some(string(e)?.to_string()),
                "token" => {
                    auth.token = Some(string(e)?.to_string());
                    token_at = Some(e);
                }
                "timeout" => {
                    auth.timeout = match &e.value {
                        Value::Integer(_) | Value::Float(_) => {
                            let secs = match e.value {
                                Value::Integer(i) => i as f64,
                                Value::Float(f) => f,
                                _ => 0.0,
                            };
                            Duration::try_from_secs_f64(secs).map_err(|_| {
                                invalid(e, format!("{secs} is not a valid number of seconds"))
                            })?
                        }
                        Value::String(s) => parse_duration(s).map_err(|m| invalid(e, m))?,
                        _ => return Err(wrong_type(e, "seconds or a duration string")),
                    }
                }
                "users" => {
                    auth.users = self.users(e)?;
                    users_at = Some(e);
                }
                "default_permissions" | "default_permission" => {
                    auth.default_permissions = Some(permissions(e)?)
                }
                "permissions" => single_user_permissions = Some((permissions(e)?, e)),
                "auth_callout" | "auth_hook" | "proxy_required" => {
                    self.unsupported(e, "authorization")
                }
                _ if e.used_as_variable => {}
                _ => return Err(unknown(e, " in authorization")),
            }
        }
        if let Some(t) = token_at {
            if auth.user.is_some() || auth.password.is_some() {
                return Err(invalid(t, "cannot have a user/password and a token"));
            }
        }
        if let Some(u) = users_at {
            if auth.user.is_some() || auth.password.is_some() {
                return Err(invalid(u, "cannot have a single user/password and a users array"));
            }
        }
        if let Some((perms, e)) = single_user_permissions {
            match auth.user.take() {
                // Core keeps permissions per listed user, so a single user with permissions
                // becomes a one-element users list.
                Some(name) => {
                    auth.users = vec![User {
                        name,
                        password: auth.password.take(),
                        permissions: Some(perms),
                    }];
                }
                None => self.unsupported(e, "authorization"),
            }
        }
        self.core().auth = auth;
        Ok(())
    }

    fn users(&mut self, entry: &Entry) -> Result<Vec<User>, ConfigError> {
        let Value::Array(items) = &entry.value else {
            return Err(wrong_type(entry, "an array of users"));
        };
        let mut users: Vec<User> = Vec::new();
        for item in items {
            let Value::Map(fields) = item else {
                return Err(invalid(
                    entry,
                    format!("expected each user to be a map, got {}", item.type_name()),
                ));
            };
            let mut name = None;
            let mut password = None;
            let mut perms = None;
            let mut nkey = None;
            for e in fields.entries() {
                let key = e.key.to_ascii_lowercase();
                match key.as_str() {
                    "user" | "username" => name = Some((string(e)?.to_string(), e)),
                    "password" | "pass" => password = Some(string(e)?.to_string()),
                    "permissions" | "permission" => perms = Some(permissions(e)?),
                    "nkey" => nkey = Some(e),
                    k if UNSUPPORTED_USER.contains(&k) => {
                        self.unsupported(e, "authorization.users")
                    }
                    _ => return Err(unknown(e, " in a user entry")),
                }
            }
            let Some((name, at)) = name else {
                if let Some(e) = nkey {
                    // nkey users need the nkey challenge, which Fjord does not do yet.
                    self.unsupported(e, "authorization.users");
                    continue;
                }
                return Err(invalid(entry, "user entry requires a user"));
            };
            if let Some(e) = nkey {
                self.unsupported(e, "authorization.users");
            }
            if users.iter().any(|u| u.name == name) {
                return Err(invalid(at, format!("duplicate user \"{name}\"")));
            }
            users.push(User { name, password, permissions: perms });
        }
        Ok(users)
    }

    fn check(&mut self) -> Result<(), ConfigError> {
        let core = &self.opts.core;
        if core.max_payload > core.max_pending {
            let pos = self.max_payload_at.clone().unwrap_or_else(|| Pos {
                file: "".into(),
                line: 0,
                column: 0,
            });
            return Err(ConfigError::new(
                ErrorKind::Invalid,
                pos,
                format!(
                    "max_payload ({}) cannot be higher than max_pending ({})",
                    core.max_payload, core.max_pending
                ),
            ));
        }
        if core.max_payload > LARGE_PAYLOAD {
            // nats-server starts but warns likewise.
            let at = self.max_payload_at.as_ref().map(position).unwrap_or_default();
            let warning = format!(
                "{at}: max_payload {} is over 8MB; payloads that large are discouraged and could hurt performance",
                core.max_payload
            );
            self.warnings.push(warning);
        }
        let core = &self.opts.core;
        if let (Some(name), Some(pos)) = (&core.auth.no_auth_user, &self.no_auth_user_at) {
            if !core.auth.users.iter().any(|u| &u.name == name) {
                return Err(ConfigError::new(
                    ErrorKind::Invalid,
                    pos.clone(),
                    format!("no_auth_user: \"{name}\" is not present as a user in the authorization block"),
                ));
            }
        }
        Ok(())
    }
}

fn permissions(entry: &Entry) -> Result<Permissions, ConfigError> {
    let block = map(entry)?;
    let mut perms = Permissions::default();
    for e in block.entries() {
        let key = e.key.to_ascii_lowercase();
        match key.as_str() {
            "publish" | "pub" | "import" => perms.publish = Some(subject_permission(e)?),
            "subscribe" | "sub" | "export" => perms.subscribe = Some(subject_permission(e)?),
            "allow_responses" => perms.allow_responses = allow_responses(e)?,
            _ => return Err(unknown(e, " in permissions")),
        }
    }
    Ok(perms)
}

/// A subject, a list of subjects (both meaning `allow`), or `{allow, deny}`.
fn subject_permission(entry: &Entry) -> Result<SubjectPermission, ConfigError> {
    match &entry.value {
        Value::String(_) | Value::Array(_) => {
            Ok(SubjectPermission { allow: subjects(entry)?, deny: Vec::new() })
        }
        Value::Map(block) => {
            let mut perm = SubjectPermission::default();
            for e in block.entries() {
                match e.key.to_ascii_lowercase().as_str() {
                    "allow" => perm.allow = subjects(e)?,
                    "deny" => perm.deny = subjects(e)?,
                    _ => {
                        return Err(unknown(e, " in subject permissions (only 'allow' and 'deny')"))
                    }
                }
            }
            Ok(perm)
        }
        _ => Err(wrong_type(entry, "a subject, an array of subjects or {allow, deny}")),
    }
}

fn subjects(entry: &Entry) -> Result<Vec<String>, ConfigError> {
    match &entry.value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(invalid(
                    entry,
                    format!("expected subjects to be strings, got {}", other.type_name()),
                )),
            })
            .collect(),
        _ => Err(wrong_type(entry, "a subject or an array of subjects")),
    }
}

/// `true` (one response, the defaults), `false`, or `{max, expires}`. nats-server treats a
/// `max` of 0 as the default (1) and a negative one as unlimited.
fn allow_responses(entry: &Entry) -> Result<Option<ResponsePermission>, ConfigError> {
    match &entry.value {
        Value::Bool(false) => Ok(None),
        Value::Bool(true) => Ok(Some(ResponsePermission::default())),
        Value::Map(block) => {
            let mut rp = ResponsePermission::default();
            for e in block.entries() {
                match e.key.to_ascii_lowercase().as_str() {
                    "max" => {
                        let max = int(e)?;
                        rp.max = match max {
                            0 => ResponsePermission::default().max,
                            m if m < 0 => usize::MAX,
                            m => usize::try_from(m).unwrap_or(usize::MAX),
                        };
                    }
                    "expires" => {
                        // nats-server refuses a bare number here ("not a duration string").
                        let text = string(e)?;
                        rp.expires = parse_duration(text).map_err(|m| invalid(e, m))?;
                    }
                    _ => return Err(unknown(e, " in allow_responses")),
                }
            }
            Ok(Some(rp))
        }
        _ => Err(wrong_type(entry, "a boolean or {max, expires}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn run(text: &str) -> Result<(Options, Vec<String>), ConfigError> {
        let load =
            |_: &Path| Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no files in tests"));
        let env = |_: &str| None;
        let map = parse_str(text, Path::new("t.conf"), &Sources { load: &load, env: &env })?;
        let mut opts = Options::default();
        let warnings = apply(&map, &mut opts)?;
        Ok((opts, warnings))
    }

    fn ok(text: &str) -> Options {
        match run(text) {
            Ok((opts, _)) => opts,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    /// Asserts the error's position and that its text mentions `fragment`.
    fn fails(text: &str, line: u32, column: u32, fragment: &str) {
        match run(text) {
            Ok(_) => panic!("{text:?} was accepted"),
            Err(e) => {
                assert_eq!((e.pos.line, e.pos.column), (line, column), "{text:?}: {e}");
                assert!(e.to_string().contains(fragment), "{text:?}: {e}");
            }
        }
    }

    #[test]
    fn listen_port_and_host() {
        let o = ok("listen: \"127.0.0.1:4333\"");
        assert_eq!((o.listen_host.as_str(), o.port), ("127.0.0.1", 4333));
        let o = ok("listen: 127.0.0.1:4333\nport: 5555");
        assert_eq!((o.listen_host.as_str(), o.port), ("127.0.0.1", 5555));
        let o = ok("listen: \"[::1]:4333\"");
        assert_eq!((o.listen_host.as_str(), o.port), ("::1", 4333));
        let o = ok("listen: \":4333\"");
        assert_eq!((o.listen_host.as_str(), o.port), ("0.0.0.0", 4333));
        assert_eq!(ok("listen: 4333").port, 4333);
        assert_eq!(ok("port: -1").port, -1);
        assert_eq!(ok("PORT: 4333").port, 4333);
        assert_eq!(ok("host: 10.0.0.1").listen_host, "10.0.0.1");
        assert_eq!(ok("net: 10.0.0.2").listen_host, "10.0.0.2");
        fails("listen: localhost", 1, 1, "could not parse address");
        fails("listen: \"1.2.3.4:abc\"", 1, 1, "could not parse port");
        fails("debug: true\nport: 70000", 2, 1, "out of range");
        fails("port: \"abc\"", 1, 1, "expected an integer, got a string");
        fails("port: 1.5", 1, 1, "got a float");
    }

    #[test]
    fn names_and_logging() {
        let o = ok("server_name: n1\ndebug: true\ntrace: yes\nlogtime: off\nlogtime_utc: on\n\
                    log_file: /var/log/f.log\npid_file: \"/run/f.pid\"\nports_file_dir: /run");
        assert_eq!(o.core.server_name, "n1");
        assert!(o.debug && o.trace && !o.logtime && o.logtime_utc);
        assert_eq!(o.log_file, Some(PathBuf::from("/var/log/f.log")));
        assert_eq!(o.pid_file, Some(PathBuf::from("/run/f.pid")));
        assert_eq!(o.ports_file_dir, Some(PathBuf::from("/run")));
        assert_eq!(ok("logfile: a.log\npidfile: a.pid").log_file, Some(PathBuf::from("a.log")));
        fails("server_name: \"a b\"", 1, 1, "cannot contain spaces");
        fails("debug: 1", 1, 1, "expected a boolean");
        fails("log_file: 5", 1, 1, "expected a string");
    }

    #[test]
    fn monitoring_port() {
        assert_eq!(ok("http_port: 8222").http_port, Some(8222));
        assert_eq!(ok("monitor_port: 8223").http_port, Some(8223));
        let o = ok("http: \"127.0.0.1:8224\"");
        assert_eq!((o.http_host.as_deref(), o.http_port), (Some("127.0.0.1"), Some(8224)));
        assert_eq!(ok("http: 8225").http_port, Some(8225));
        let o = ok("https: \"127.0.0.1:8226\"\nhttp_base_path: /nats");
        assert_eq!((o.http_host.as_deref(), o.https_port), (Some("127.0.0.1"), Some(8226)));
        assert_eq!((o.http_port, o.http_base_path.as_str()), (None, "/nats"));
        assert_eq!(ok("https_port: 8227").https_port, Some(8227));
        fails("http: \"1.2.3.4\"", 1, 1, "could not parse address");
    }

    #[test]
    fn limits() {
        let o = ok("max_control_line: 2KB\nmax_payload: 2MB\nmax_pending: 100MB\n\
                    max_connections: 100\nmax_subscriptions: 1000\nping_max: 5");
        assert_eq!(o.core.max_control_line, 2048);
        assert_eq!(o.core.max_payload, 2 * 1024 * 1024);
        assert_eq!(o.core.max_pending, 100 * 1024 * 1024);
        assert_eq!(o.core.max_connections, 100);
        assert_eq!(o.core.max_subscriptions, 1000);
        assert_eq!(o.core.ping_max, 5);
        let o = ok("max_conn: 7\nmax_subs: 8");
        assert_eq!((o.core.max_connections, o.core.max_subscriptions), (7, 8));
        // Zero means "the default" in nats-server.
        let d = CoreConfig::default();
        let o = ok("max_payload: 0\nmax_control_line: 0\nmax_connections: 0\nping_max: 0");
        assert_eq!(
            (o.core.max_payload, o.core.max_control_line, o.core.max_connections, o.core.ping_max),
            (d.max_payload, d.max_control_line, d.max_connections, d.ping_max)
        );
        fails("max_payload: -1", 1, 1, "must not be negative");
        fails("max_payload: 65MB", 1, 1, "cannot be higher than max_pending");
        fails(
            "debug: true\nmax_payload: 70000000",
            2,
            1,
            "max_payload (70000000) cannot be higher than max_pending (67108864)",
        );
        fails("max_control_line: 5GB", 1, 1, "too big");
        fails("max_connections: -5", 1, 1, "must not be negative");
        fails("ping_max: 5000000000", 1, 1, "too big");
        fails("max_pending: \"64MB\"", 1, 1, "expected an integer");
        let (o, warnings) = run("max_pending: 200MB\nmax_payload: 100MB").unwrap();
        assert_eq!(o.core.max_payload, 100 * 1024 * 1024);
        assert!(warnings.iter().any(|w| w.contains("over 8MB")), "{warnings:?}");
    }

    #[test]
    fn ping_interval() {
        assert_eq!(ok("ping_interval: \"2m\"").core.ping_interval, Duration::from_secs(120));
        assert_eq!(ok("ping_interval: \"1h30m\"").core.ping_interval, Duration::from_secs(5400));
        assert_eq!(ok("ping_interval: \"500ms\"").core.ping_interval, Duration::from_millis(500));
        let (o, warnings) = run("ping_interval: 30").unwrap();
        assert_eq!(o.core.ping_interval, Duration::from_secs(30));
        assert!(
            warnings[0].contains("t.conf:1:1") && warnings[0].contains("30 seconds"),
            "{warnings:?}"
        );
        // nats-server reads an unquoted 2m as the number 2000000, i.e. 2000000 seconds.
        let (o, warnings) = run("ping_interval: 2m").unwrap();
        assert_eq!(o.core.ping_interval, Duration::from_secs(2_000_000));
        assert!(warnings[0].contains("unquoted 2m"), "{warnings:?}");
        fails("ping_interval: \"abc\"", 1, 1, "invalid duration");
        fails("ping_interval: \"-5s\"", 1, 1, "must not be negative");
        fails("ping_interval: true", 1, 1, "expected a duration");
    }

    #[test]
    fn durations() {
        let cases: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("1s", Duration::from_secs(1)),
            ("1.5s", Duration::from_millis(1500)),
            ("2h45m30s", Duration::from_secs(2 * 3600 + 45 * 60 + 30)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("+3m", Duration::from_secs(180)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(*want), "{text}");
        }
        for bad in ["", "5", "s", "1x", "1.2.3s", ".s", "-1s", "9999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_and_jetstream() {
        assert!(!ok("no_header_support: true").core.headers);
        assert!(ok("no_header_support: false").core.headers);
        for on in
            ["jetstream: enabled", "jetstream: true", "jetstream {}", "jetstream: {store_dir: /x}"]
        {
            let o = ok(on);
            assert!(o.jetstream && o.core.jetstream, "{on}");
        }
        for off in [
            "jetstream: disabled",
            "jetstream: false",
            "jetstream { enabled: false, store_dir: /x }",
        ] {
            let o = ok(off);
            assert!(!o.jetstream && !o.core.jetstream, "{off}");
        }
        let o =
            ok("jetstream { store_dir: \"/data/js\", max_memory_store: 1GB, max_file_store: 10G }");
        assert_eq!(o.store_dir, Some(PathBuf::from("/data/js")));
        assert_eq!(o.jetstream_max_memory, Some(1 << 30));
        assert_eq!(o.jetstream_max_file, Some(10_000_000_000));
        let o = ok("jetstream { store: /y, max_mem: \"1G\", max_file: -1 }");
        assert_eq!(
            (o.store_dir, o.jetstream_max_memory, o.jetstream_max_file),
            (Some(PathBuf::from("/y")), Some(1_000_000_000), None)
        );
        let (o, warnings) = run("jetstream { domain: hub, sync_interval: \"1s\" }").unwrap();
        assert_eq!(o.unsupported_keys, vec!["jetstream.domain", "jetstream.sync_interval"]);
        assert_eq!(warnings.len(), 2);
        fails("jetstream: foo", 1, 1, "'enabled' or 'disabled'");
        // Keys (and aliases) nats-server 2.15.1 accepts (checked with its `-t`): warnings.
        let (o, _) = run("trace_headers: true\nno_fast_producer_stall: true\n\
                          jetstream { prev_ek: \"k\", prev_encryption_key: \"p\" }\n\
                          authorization { proxy_required: true, default_permission: {} }")
        .unwrap();
        assert_eq!(
            o.unsupported_keys,
            vec![
                "trace_headers",
                "no_fast_producer_stall",
                "jetstream.prev_ek",
                "jetstream.prev_encryption_key",
                "authorization.proxy_required"
            ]
        );
        assert!(o.core.auth.default_permissions.is_some(), "default_permission is an alias");
        fails("jetstream {\n  foo: 1\n}", 2, 3, "unknown field \"foo\"");
        fails("jetstream { max_memory_store: \"lots\" }", 1, 13, "not a size");
        let o = ok("jetstream { store_dir: /x, key: \"s3cr3t\", cipher: chachapoly }");
        let enc = o.jetstream_encryption.expect("a key turns encryption on");
        assert_eq!(
            (enc.key.as_str(), enc.cipher),
            ("s3cr3t", fjord_core::store::Cipher::ChaChaPoly)
        );
        assert!(!format!("{enc:?}").contains("s3cr3t"), "Debug shows the key");
        assert!(ok("jetstream { store_dir: /x }").jetstream_encryption.is_none());
        fails("jetstream { key: \"k\", cipher: aes }", 1, 23, "cipher 'aes' is not supported");
        fails("jetstream { key: \"\" }", 1, 13, "must not be empty");
    }

    #[test]
    fn single_user_and_token() {
        let o = ok("authorization { user: derek, password: s3cr3t, timeout: 3 }");
        let a = &o.core.auth;
        assert_eq!((a.user.as_deref(), a.password.as_deref()), (Some("derek"), Some("s3cr3t")));
        assert_eq!(a.timeout, Duration::from_secs(3));
        assert!(a.required());
        let o = ok("authorization { username: u, pass: p, timeout: 2.5 }");
        assert_eq!(o.core.auth.user.as_deref(), Some("u"));
        assert_eq!(o.core.auth.password.as_deref(), Some("p"));
        assert_eq!(o.core.auth.timeout, Duration::from_millis(2500));
        assert_eq!(
            ok("authorization { user: a, timeout: \"3s\" }").core.auth.timeout,
            Duration::from_secs(3)
        );
        let o = ok("authorization { token: $2a$11$abcdefghijklmnopqrstuv }");
        assert_eq!(o.core.auth.token.as_deref(), Some("$2a$11$abcdefghijklmnopqrstuv"));
        fails(
            "authorization { token: abc, user: x, password: y }",
            1,
            17,
            "user/password and a token",
        );
        fails("authorization { user: a, timeout: \"abc\" }", 1, 26, "invalid duration");
        fails("authorization { user: a, password: b, foo: 1 }", 1, 39, "unknown field \"foo\"");
        fails("authorization: 5", 1, 1, "expected a map");
    }

    #[test]
    fn single_user_with_permissions_becomes_a_users_entry() {
        let o = ok("authorization { user: a, password: b, permissions { publish: x } }");
        let a = &o.core.auth;
        assert_eq!(a.user, None);
        assert_eq!(a.users.len(), 1);
        assert_eq!(a.users[0].name, "a");
        assert_eq!(a.users[0].password.as_deref(), Some("b"));
        let publish = a.users[0].permissions.as_ref().unwrap().publish.as_ref().unwrap();
        assert_eq!(publish.allow, vec!["x"]);
    }

    #[test]
    fn users_with_permissions() {
        let text = r#"
            authorization {
              default_permissions { subscribe: "_INBOX.>" }
              users = [
                {user: alice, password: a1, permissions: {publish: "orders.*", subscribe: ["a", "b"]}}
                {user: bob, password: b1, permissions {
                    publish: {allow: ["x.>"], deny: "x.secret"}
                    Subscribe: {DENY: [y]}
                    allow_responses: true
                }}
                {username: carol, pass: c1, permission: {pub: p, sub: s, allow_responses: {max: 5, expires: "1m"}}}
                {user: dave, permissions: {import: i, export: e, allow_responses: false}}
                {user: erin, permissions: {allow_responses: {MAX: -1}}}
                {user: frank, permissions: {allow_responses: {max: 0}}}
              ]
            }
            no_auth_user: alice
        "#;
        let o = ok(text);
        let a = &o.core.auth;
        assert_eq!(a.no_auth_user.as_deref(), Some("alice"));
        let default = a.default_permissions.as_ref().unwrap();
        assert_eq!(
            default.subscribe,
            Some(SubjectPermission { allow: vec!["_INBOX.>".into()], deny: vec![] })
        );
        let names: Vec<_> = a.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "carol", "dave", "erin", "frank"]);
        let perms = |i: usize| a.users[i].permissions.clone().unwrap();
        let sp = |allow: &[&str], deny: &[&str]| SubjectPermission {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            perms(0),
            Permissions {
                publish: Some(sp(&["orders.*"], &[])),
                subscribe: Some(sp(&["a", "b"], &[])),
                allow_responses: None
            }
        );
        assert_eq!(
            perms(1),
            Permissions {
                publish: Some(sp(&["x.>"], &["x.secret"])),
                subscribe: Some(sp(&[], &["y"])),
                allow_responses: Some(ResponsePermission::default()),
            }
        );
        assert_eq!(a.users[1].password.as_deref(), Some("b1"));
        assert_eq!(
            perms(2),
            Permissions {
                publish: Some(sp(&["p"], &[])),
                subscribe: Some(sp(&["s"], &[])),
                allow_responses: Some(ResponsePermission {
                    max: 5,
                    expires: Duration::from_secs(60)
                }),
            }
        );
        assert_eq!(a.users[3].password, None);
        assert_eq!(perms(3).publish, Some(sp(&["i"], &[])));
        assert_eq!(perms(3).subscribe, Some(sp(&["e"], &[])));
        assert_eq!(perms(3).allow_responses, None);
        assert_eq!(perms(4).allow_responses.unwrap().max, usize::MAX);
        assert_eq!(perms(5).allow_responses.unwrap().max, 1);
    }

    #[test]
    fn invalid_users() {
        fails("authorization { users = [ {password: b} ] }", 1, 17, "requires a user");
        fails("authorization { users = [ {user: a}, {user: a} ] }", 1, 39, "duplicate user \"a\"");
        fails("authorization { users = [ \"x\" ] }", 1, 17, "each user to be a map");
        fails("authorization { users { user: a } }", 1, 17, "expected an array");
        fails(
            "authorization { users [ {user: a} ], user: x, password: y }",
            1,
            17,
            "single user/password and a users array",
        );
        fails("authorization { users [ {user: a, foo: 1} ] }", 1, 35, "unknown field \"foo\"");
        fails(
            "authorization { users [ {user: a, permissions: {publish: 5}} ] }",
            1,
            49,
            "a subject",
        );
        fails(
            "authorization { users [ {user: a, permissions: {publish: [x, 5]}} ] }",
            1,
            49,
            "strings",
        );
        fails(
            "authorization { users [ {user: a, permissions: {publish: {allow: x, foo: y}}} ] }",
            1,
            69,
            "only 'allow' and 'deny'",
        );
        fails(
            "authorization { users [ {user: a, permissions: {responses: true}} ] }",
            1,
            49,
            "unknown field \"responses\"",
        );
        fails("authorization { users [ {user: a, permissions: {allow_responses: {max: 5, expires: 60}}} ] }", 1, 75, "expected a string");
        fails(
            "authorization { users [ {user: a, permissions: {allow_responses: {foo: 1}}} ] }",
            1,
            67,
            "unknown field \"foo\"",
        );
        fails(
            "no_auth_user: zz\nauthorization { users = [ {user: a} ] }",
            1,
            1,
            "\"zz\" is not present",
        );
        fails("no_auth_user: a\nauthorization { user: a, password: b }", 1, 1, "not present");
    }

    #[test]
    fn unsupported_users_features_warn() {
        let text = "authorization { users [ {nkey: UABC}, {user: a, allowed_connection_types: [STANDARD]} ], auth_callout { issuer: x } }";
        let (o, warnings) = run(text).unwrap();
        assert_eq!(o.core.auth.users.len(), 1);
        assert_eq!(
            o.unsupported_keys,
            vec![
                "authorization.users.nkey",
                "authorization.users.allowed_connection_types",
                "authorization.auth_callout"
            ]
        );
        assert_eq!(warnings.len(), 3);
    }

    #[test]
    fn unsupported_and_unknown_keys() {
        let text = "port: 4222\ncluster { port: 6222 }\nGateway { name: x }\nleafnodes {}\naccounts {}\nwebsocket {}\nmqtt {}";
        let (o, warnings) = run(text).unwrap();
        assert_eq!(
            o.unsupported_keys,
            vec!["cluster", "Gateway", "leafnodes", "accounts", "websocket", "mqtt"]
        );
        assert_eq!(warnings.len(), 6);
        assert!(warnings[0].starts_with("t.conf:2:1: \"cluster\""), "{}", warnings[0]);
        fails("port: 1\nfoo: 1", 2, 1, "unknown field \"foo\"");
        fails("user: a", 1, 1, "unknown field \"user\"");
        // A key that only feeds a variable is not unknown.
        assert_eq!(ok("MY_PORT: 4333\nport: $MY_PORT").port, 4333);
    }

    #[test]
    fn tls_lame_duck_and_closed_clients() {
        let o = ok("tls { cert_file: \"c.pem\", key_file: \"k.pem\", ca_file: \"ca.pem\", verify: true, timeout: 0.5, handshake_first: true }\nlame_duck_duration: \"30s\"\nlame_duck_grace_period: \"1s\"\nmax_closed_clients: 5");
        let tls = o.tls.unwrap();
        assert_eq!(tls.cert_file, PathBuf::from("c.pem"));
        assert_eq!(tls.ca_file, Some(PathBuf::from("ca.pem")));
        assert!(tls.verify && tls.handshake_first);
        assert_eq!(tls.timeout, Duration::from_millis(500));
        assert_eq!(o.lame_duck_duration, Duration::from_secs(30));
        assert_eq!(o.lame_duck_grace_period, Duration::from_secs(1));
        assert_eq!(o.max_closed_clients, 5);
        fails("tls { cert_file: c }", 1, 1, "missing 'cert_file'");
        fails("tls { cert_file: c, key_file: k, verify: true }", 1, 1, "requires a 'ca_file'");
        fails(
            "tls {\n cert_file: c, key_file: k, bogus: 1 }",
            2,
            29,
            "unknown field \"bogus\" in tls",
        );
        let (o, _) = run("tls { cert_file: c, key_file: k, cipher_suites: [] }").unwrap();
        assert_eq!(o.unsupported_keys, vec!["tls.cipher_suites"]);
    }

    #[test]
    fn failed_apply_leaves_options_untouched() {
        let load = |_: &Path| Err(std::io::Error::new(std::io::ErrorKind::NotFound, "none"));
        let env = |_: &str| None;
        let map = parse_str(
            "port: 1\ndebug: 5",
            Path::new("t.conf"),
            &Sources { load: &load, env: &env },
        )
        .unwrap();
        let mut opts = Options::default();
        assert!(apply(&map, &mut opts).is_err());
        assert_eq!(opts.port, 4222);
    }

    #[test]
    fn load_file_reads_disk_and_environment() {
        let dir = std::env::temp_dir().join(format!("fjord-config-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("inc")).unwrap();
        std::fs::write(
            dir.join("inc/auth.conf"),
            "authorization { token: $FJORD_CONFIG_TEST_TOKEN }\n",
        )
        .unwrap();
        std::fs::write(dir.join("main.conf"), "port: 4333\ninclude inc/auth.conf\n").unwrap();
        std::fs::write(dir.join("empty.conf"), "# nothing\n").unwrap();
        std::env::set_var("FJORD_CONFIG_TEST_TOKEN", "\"s3cr3t\"");
        let mut opts = Options::default();
        load_file(&dir.join("main.conf"), &mut opts).unwrap();
        assert_eq!(opts.port, 4333);
        assert_eq!(opts.core.auth.token.as_deref(), Some("s3cr3t"));
        assert_eq!(opts.config_file, Some(dir.join("main.conf")));
        let err = load_file(&dir.join("empty.conf"), &mut Options::default()).unwrap_err();
        assert!(err.to_string().contains("no values"), "{err}");
        let err = load_file(&dir.join("missing.conf"), &mut Options::default()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Io);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
