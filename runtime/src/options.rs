//! Everything the `fjord` binary can be told, from flags and the configuration file.
//! Flags are applied over the file (nats-server's precedence).

use std::path::PathBuf;
use std::time::Duration;

use fjord_core::config::CoreConfig;

/// `jetstream { key: "...", cipher: chachapoly }`. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct JetStreamEncryption {
    pub key: String,
    pub cipher: fjord_core::store::Cipher,
}

impl std::fmt::Debug for JetStreamEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamEncryption")
            .field("key", &"[redacted]")
            .field("cipher", &self.cipher)
            .finish()
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    /// The rules core obeys: limits, auth, keepalive, names.
    pub core: CoreConfig,
    /// Address to listen on for clients (`-a`, `listen`, `host`/`net`).
    pub listen_host: String,
    /// Client port (`-p`, `port`, `listen`); -1 picks a random free port.
    pub port: i32,
    /// Monitoring port (`-m`, `http_port`, `http`); None = off.
    pub http_port: Option<i32>,
    pub http_host: Option<String>,
    /// Monitoring over TLS, with the `tls {}` certificate (`-ms`, `https_port`, `https`);
    /// exclusive with `http_port`, as in nats-server.
    pub https_port: Option<i32>,
    /// Prefix of every monitoring path (`http_base_path`), as configured.
    pub http_base_path: String,
    pub debug: bool,
    pub trace: bool,
    pub logtime: bool,
    pub logtime_utc: bool,
    pub log_file: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub ports_file_dir: Option<PathBuf>,
    pub jetstream: bool,
    pub store_dir: Option<PathBuf>,
    /// JetStream memory-store limit in bytes (`jetstream { max_memory_store }`); None = the
    /// server's default.
    pub jetstream_max_memory: Option<i64>,
    /// JetStream file-store limit in bytes (`jetstream { max_file_store }`); None = default.
    pub jetstream_max_file: Option<i64>,
    /// Encryption at rest of file stores (`jetstream { key, cipher }`); None = plain.
    pub jetstream_encryption: Option<JetStreamEncryption>,
    /// Lame duck mode: clients are closed spread over this long (`lame_duck_duration`)...
    pub lame_duck_duration: Duration,
    /// ...after waiting this long first (`lame_duck_grace_period`).
    pub lame_duck_grace_period: Duration,
    /// Closed connections kept for `/connz?state=closed` (`max_closed_clients`).
    pub max_closed_clients: usize,
    /// `tls { ... }` or `--tls*`: clients must use TLS.
    pub tls: Option<crate::tls::TlsOptions>,
    /// Where the configuration file came from, if any.
    pub config_file: Option<PathBuf>,
    /// Keys of the configuration file Fjord does not support yet (warned about at start).
    pub unsupported_keys: Vec<String>,
}

impl Options {
    /// Where JetStream keeps its data: `store_dir`, or, as in nats-server, `nats` under the
    /// system temp directory.
    pub fn jetstream_store_dir(&self) -> PathBuf {
        self.store_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("nats"))
    }

    /// The logging part, which a reload hands to `logging::apply`.
    pub fn log_settings(&self) -> crate::logging::LogSettings {
        crate::logging::LogSettings {
            debug: self.debug,
            trace: self.trace,
            logtime: self.logtime,
            logtime_utc: self.logtime_utc,
            file: self.log_file.clone(),
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            core: CoreConfig::default(),
            listen_host: "0.0.0.0".to_string(),
            port: 4222,
            http_port: None,
            http_host: None,
            https_port: None,
            http_base_path: String::new(),
            debug: false,
            trace: false,
            logtime: true,
            logtime_utc: false,
            log_file: None,
            pid_file: None,
            ports_file_dir: None,
            jetstream: false,
            store_dir: None,
            jetstream_max_memory: None,
            jetstream_max_file: None,
            jetstream_encryption: None,
            lame_duck_duration: Duration::from_secs(120),
            lame_duck_grace_period: Duration::from_secs(10),
            max_closed_clients: crate::monitor::closed::DEFAULT_MAX_CLOSED_CLIENTS,
            tls: None,
            config_file: None,
            unsupported_keys: Vec::new(),
        }
    }
}
