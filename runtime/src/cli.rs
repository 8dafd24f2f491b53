//! nats-server's command line, parsed the way Go's `flag` package parses it: `-name` and
//! `--name` are the same flag, values come as `-p 4222` or `-p=4222`, boolean flags take no
//! value but accept `-D=false`, and parsing stops at the first non-flag argument.
//!
//! clap cannot express multi-letter single-dash flags such as `-js`, `-sd` or `-DV`, which
//! scripts written for nats-server use, so this is a small table-driven parser of our own.

use std::path::PathBuf;

use crate::options::Options;

/// What the command line asks for besides running a server.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run,
    Help,
    Version,
    /// `-t`: check the configuration and exit.
    TestConfig,
    /// `--signal <command>[=<pid>]`: signal a running server and exit.
    Signal(String),
}

/// Flags as given, applied over the configuration file by [`Flags::apply`].
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub test_config: bool,
    pub help: bool,
    pub version: bool,
    pub port: Option<i32>,
    pub host: Option<String>,
    pub name: Option<String>,
    pub pid_file: Option<PathBuf>,
    pub http_port: Option<i32>,
    pub https_port: Option<i32>,
    pub ports_file_dir: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    pub logtime: Option<bool>,
    pub logtime_utc: Option<bool>,
    pub debug: Option<bool>,
    pub trace: Option<bool>,
    pub jetstream: Option<bool>,
    pub store_dir: Option<PathBuf>,
    pub user: Option<String>,
    pub pass: Option<String>,
    pub auth: Option<String>,
    pub tls: Option<bool>,
    pub tls_verify: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca_cert: Option<PathBuf>,
    pub signal: Option<String>,
    /// Flags nats-server has that Fjord accepts but does not act on yet.
    pub ignored: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CliError {
    Unknown(String),
    MissingValue(String),
    BadValue { flag: String, value: String },
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Unknown(flag) => write!(f, "flag provided but not defined: -{flag}"),
            CliError::MissingValue(flag) => write!(f, "flag needs an argument: -{flag}"),
            CliError::BadValue { flag, value } => {
                write!(f, "invalid value \"{value}\" for flag -{flag}: parse error")
            }
        }
    }
}

/// Flags that take no value.
const BOOL_FLAGS: &[&str] = &[
    "t",
    "h",
    "help",
    "v",
    "version",
    "D",
    "debug",
    "V",
    "trace",
    "VV",
    "DV",
    "DVV",
    "T",
    "logtime",
    "logtime_utc",
    "js",
    "jetstream",
    "s",
    "syslog",
    "tls",
    "tlsverify",
    "help_tls",
];

/// Flags that take a value and that Fjord acts on.
const VALUE_FLAGS: &[&str] = &[
    "c",
    "config",
    "p",
    "port",
    "a",
    "addr",
    "net",
    "n",
    "name",
    "server_name",
    "P",
    "pid",
    "m",
    "http_port",
    "ms",
    "https_port",
    "ports_file_dir",
    "l",
    "log",
    "sd",
    "store_dir",
    "user",
    "pass",
    "auth",
    "tlscert",
    "tlskey",
    "tlscacert",
    "sl",
    "signal",
];

/// Flags nats-server has whose features Fjord does not have yet: accepted with a warning so
/// that scripts keep working, never silently.
const IGNORED_VALUE_FLAGS: &[&str] = &[
    "client_advertise",
    "r",
    "remote_syslog",
    "log_size_limit",
    "max_traced_msg_len",
    "routes",
    "cluster",
    "cluster_name",
    "no_advertise",
    "cluster_advertise",
    "connect_retries",
    "cluster_listen",
    "profile",
];

impl Flags {
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Flags, CliError> {
        let mut flags = Flags::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                break; // Go's flag package stops at the first non-flag argument.
            };
            if stripped.is_empty() {
                break;
            }
            let (name, inline) = match stripped.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (stripped.to_string(), None),
            };
            if BOOL_FLAGS.contains(&name.as_str()) {
                let on = match inline.as_deref() {
                    None => true,
                    Some(v) => parse_go_bool(v).ok_or_else(|| CliError::BadValue {
                        flag: name.clone(),
                        value: v.into(),
                    })?,
                };
                flags.set_bool(&name, on);
                continue;
            }
            if !VALUE_FLAGS.contains(&name.as_str())
                && !IGNORED_VALUE_FLAGS.contains(&name.as_str())
            {
                return Err(CliError::Unknown(name));
            }
            let value = match inline {
                Some(v) => v,
                None => args.next().ok_or_else(|| CliError::MissingValue(name.clone()))?,
            };
            flags.set_value(&name, value)?;
        }
        Ok(flags)
    }

    fn set_bool(&mut self, name: &str, on: bool) {
        match name {
            "t" => self.test_config = on,
            "h" | "help" => self.help = on,
            "v" | "version" => self.version = on,
            "D" | "debug" => self.debug = Some(on),
            "V" | "trace" | "VV" => self.trace = Some(on),
            "DV" | "DVV" => {
                self.debug = Some(on);
                self.trace = Some(on);
            }
            "T" | "logtime" => self.logtime = Some(on),
            "logtime_utc" => self.logtime_utc = Some(on),
            "js" | "jetstream" => self.jetstream = Some(on),
            "tls" => self.tls = Some(on),
            "tlsverify" => self.tls_verify = Some(on),
            other => self.ignored.push(other.to_string()),
        }
    }

    fn set_value(&mut self, name: &str, value: String) -> Result<(), CliError> {
        let bad = || CliError::BadValue { flag: name.to_string(), value: value.clone() };
        match name {
            "c" | "config" => self.config = Some(value.into()),
            "p" | "port" => self.port = Some(value.parse().map_err(|_| bad())?),
            "a" | "addr" | "net" => self.host = Some(value),
            "n" | "name" | "server_name" => self.name = Some(value),
            "P" | "pid" => self.pid_file = Some(value.into()),
            "m" | "http_port" => self.http_port = Some(value.parse().map_err(|_| bad())?),
            "ms" | "https_port" => self.https_port = Some(value.parse().map_err(|_| bad())?),
            "ports_file_dir" => self.ports_file_dir = Some(value.into()),
            "l" | "log" => self.log_file = Some(value.into()),
            "sd" | "store_dir" => self.store_dir = Some(value.into()),
            "user" => self.user = Some(value),
            "pass" => self.pass = Some(value),
            "auth" => self.auth = Some(value),
            "tlscert" => self.tls_cert = Some(value.into()),
            "tlskey" => self.tls_key = Some(value.into()),
            "tlscacert" => self.tls_ca_cert = Some(value.into()),
            "sl" | "signal" => self.signal = Some(value),
            other if IGNORED_VALUE_FLAGS.contains(&other) => {
                self.ignored.push(format!("{other}={value}"))
            }
            other => return Err(CliError::Unknown(other.to_string())),
        }
        Ok(())
    }

    pub fn command(&self) -> Command {
        if self.help {
            Command::Help
        } else if self.version {
            Command::Version
        } else if let Some(signal) = &self.signal {
            Command::Signal(signal.clone())
        } else if self.test_config {
            Command::TestConfig
        } else {
            Command::Run
        }
    }

    /// Applies the flags over `opts` (which may already hold the configuration file's values).
    pub fn apply(&self, opts: &mut Options) -> Result<(), String> {
        if let Some(port) = self.port {
            opts.port = port;
        }
        if let Some(host) = &self.host {
            opts.listen_host = host.clone();
        }
        if let Some(name) = &self.name {
            if name.contains(' ') {
                return Err(format!("server name \"{name}\" can not contain spaces"));
            }
            opts.core.server_name = name.clone();
        }
        if let Some(p) = &self.pid_file {
            opts.pid_file = Some(p.clone());
        }
        if let Some(port) = self.http_port {
            opts.http_port = Some(port);
        }
        if let Some(port) = self.https_port {
            opts.https_port = Some(port);
        }
        if let Some(dir) = &self.ports_file_dir {
            opts.ports_file_dir = Some(dir.clone());
        }
        if let Some(log) = &self.log_file {
            opts.log_file = Some(log.clone());
        }
        if let Some(v) = self.logtime {
            opts.logtime = v;
        }
        if let Some(v) = self.logtime_utc {
            opts.logtime_utc = v;
        }
        if let Some(v) = self.debug {
            opts.debug = v;
        }
        if let Some(v) = self.trace {
            opts.trace = v;
        }
        if let Some(v) = self.jetstream {
            opts.jetstream = v;
        }
        if let Some(dir) = &self.store_dir {
            opts.store_dir = Some(dir.clone());
        }
        if self.user.is_some() != self.pass.is_some() && self.auth.is_none() {
            // nats-server refuses a user without a password and the reverse.
            return Err("both --user and --pass are required for user authentication".into());
        }
        if let (Some(user), Some(pass)) = (&self.user, &self.pass) {
            opts.core.auth.user = Some(user.clone());
            opts.core.auth.password = Some(pass.clone());
        }
        if let Some(token) = &self.auth {
            opts.core.auth.token = Some(token.clone());
        }
        self.apply_tls(opts)
    }

    /// `--tls`, `--tlsverify` (implies `--tls`), `--tlscert`, `--tlskey`, `--tlscacert`, over
    /// the file's `tls { }` block.
    fn apply_tls(&self, opts: &mut Options) -> Result<(), String> {
        let verify = self.tls_verify == Some(true);
        let enabled = self.tls == Some(true) || verify;
        let files_given =
            self.tls_cert.is_some() || self.tls_key.is_some() || self.tls_ca_cert.is_some();
        if !(enabled || files_given && opts.tls.is_some()) {
            if self.tls == Some(false) {
                opts.tls = None;
            }
            return Ok(());
        }
        let mut tls = opts.tls.clone().unwrap_or_default();
        if let Some(cert) = &self.tls_cert {
            tls.cert_file = cert.clone();
        }
        if let Some(key) = &self.tls_key {
            tls.key_file = key.clone();
        }
        if let Some(ca) = &self.tls_ca_cert {
            tls.ca_file = Some(ca.clone());
        }
        if verify {
            tls.verify = true;
        }
        if tls.cert_file.as_os_str().is_empty() || tls.key_file.as_os_str().is_empty() {
            return Err("TLS Server certificate must be present and valid".into());
        }
        if tls.verify && tls.ca_file.is_none() {
            return Err("TLS verification requires a CA certificate (--tlscacert)".into());
        }
        opts.tls = Some(tls);
        Ok(())
    }
}

fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

pub const USAGE: &str = "\
Usage: fjord [options]

Server Options:
    -a, --addr, --net <host>         Bind to host address (default: 0.0.0.0)
    -p, --port <port>                Use port for clients (default: 4222)
    -n, --name
        --server_name <server_name>  Server name (default: auto)
    -P, --pid <file>                 File to store PID
    -m, --http_port <port>           Use port for http monitoring
    -ms,--https_port <port>          Use port for https monitoring (the tls {} certificate)
    -c, --config <file>              Configuration file
    -t                               Test configuration and exit
        --ports_file_dir <dir>       Creates a ports file in the specified directory

Logging Options:
    -l, --log <file>                 File to redirect log output
    -T, --logtime                    Timestamp log entries (default: true)
        --logtime_utc                Timestamps in UTC instead of local timezone
    -D, --debug                      Enable debugging output
    -V, --trace                      Trace the raw protocol
    -DV                              Debug and trace

JetStream Options:
    -js, --jetstream                 Enable JetStream functionality
    -sd, --store_dir <dir>           Set the storage directory

TLS Options:
        --tls                        Enable TLS, do not verify clients (default: false)
        --tlscert <file>             Server certificate file
        --tlskey <file>              Private key for server certificate
        --tlsverify                  Enable TLS, verify client certificates
        --tlscacert <file>           Client certificate CA for verification

Authorization Options:
        --user <user>                User required for connections
        --pass <password>            Password required for connections
        --auth <token>               Authorization token required for connections

Signal Options:
    -sl, --signal <signal>[=<pid>]   Send signal to fjord process (ldm, stop, quit, term, reopen, reload)
                                     <pid> can be either a PID (e.g. 1) or the path to a PID file

Common Options:
    -h, --help                       Show this message
    -v, --version                    Show version
";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Flags, CliError> {
        Flags::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn go_style_forms() {
        let f = parse(&["-p", "4333", "--addr=127.0.0.1", "-js", "-sd=/tmp/x", "-DV"]).unwrap();
        assert_eq!(f.port, Some(4333));
        assert_eq!(f.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(f.jetstream, Some(true));
        assert_eq!(f.store_dir, Some(PathBuf::from("/tmp/x")));
        assert_eq!((f.debug, f.trace), (Some(true), Some(true)));
        let f = parse(&["--port", "-1", "-T=false"]).unwrap();
        assert_eq!(f.port, Some(-1));
        assert_eq!(f.logtime, Some(false));
    }

    #[test]
    fn errors_name_the_flag() {
        assert_eq!(
            parse(&["--bogus"]).unwrap_err().to_string(),
            "flag provided but not defined: -bogus"
        );
        assert_eq!(
            parse(&["-p", "abc"]).unwrap_err().to_string(),
            "invalid value \"abc\" for flag -p: parse error"
        );
        assert_eq!(parse(&["-c"]).unwrap_err(), CliError::MissingValue("c".into()));
    }

    #[test]
    fn tls_and_signal_flags() {
        let f =
            parse(&["--tlsverify", "--tlscert", "c", "--tlskey=k", "--tlscacert", "ca"]).unwrap();
        let mut opts = Options::default();
        f.apply(&mut opts).unwrap();
        let tls = opts.tls.unwrap();
        assert!(tls.verify);
        assert_eq!(tls.ca_file, Some(PathBuf::from("ca")));
        assert!(parse(&["--tls"]).unwrap().apply(&mut Options::default()).is_err());
        let f = parse(&["--signal", "reload=123"]).unwrap();
        assert_eq!(f.command(), Command::Signal("reload=123".into()));
        assert_eq!(parse(&["-sl=ldm"]).unwrap().command(), Command::Signal("ldm".into()));
    }

    #[test]
    fn flags_override_options() {
        let f = parse(&["--user", "u", "--pass", "p", "-n", "srv"]).unwrap();
        let mut opts = Options::default();
        f.apply(&mut opts).unwrap();
        assert_eq!(opts.core.auth.user.as_deref(), Some("u"));
        assert_eq!(opts.core.server_name, "srv");
        let f = parse(&["--user", "u"]).unwrap();
        assert!(f.apply(&mut Options::default()).is_err());
    }
}
