//! The `fjord` binary: nats-server's flags and configuration file, a tokio server.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use fjord::cli::{Command, Flags, USAGE};
use fjord::options::Options;
use fjord::server::{new_server_id, Server, Shared};
use fjord::signals::{self, Exit};
use fjord::tls::TlsServer;
use fjord::{config, lameduck, logging, monitor, reload};
use fjord_core::config::{COMPATIBLE_NATS_VERSION, FJORD_VERSION};
use tracing::{error, info, warn};

fn main() -> ExitCode {
    let flags = match Flags::parse(std::env::args().skip(1)) {
        Ok(flags) => flags,
        Err(e) => {
            eprintln!("{e}\n\n{USAGE}");
            return ExitCode::from(1);
        }
    };
    match flags.command() {
        Command::Help => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("fjord: v{FJORD_VERSION} (nats-server v{COMPATIBLE_NATS_VERSION} compatible)");
            return ExitCode::SUCCESS;
        }
        Command::Signal(arg) => {
            return match signals::send(&arg, &exe_name()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("nats-server: {e}");
                    ExitCode::from(1)
                }
            };
        }
        Command::Run | Command::TestConfig => {}
    }
    let mut opts = Options::default();
    let mut warnings = Vec::new();
    if let Some(path) = &flags.config {
        match config::load_file(path, &mut opts) {
            Ok(w) => warnings = w,
            Err(e) => {
                eprintln!("nats-server: {e}");
                return ExitCode::from(1);
            }
        }
        opts.config_file = Some(path.clone());
    }
    if let Err(e) = flags.apply(&mut opts) {
        eprintln!("nats-server: {e}");
        return ExitCode::from(1);
    }
    if flags.command() == Command::TestConfig {
        if !opts.unsupported_keys.is_empty() {
            for w in &warnings {
                eprintln!("{w}");
            }
            eprintln!("nats-server: configuration has settings fjord does not support");
            return ExitCode::from(1);
        }
        println!(
            "nats-server: configuration file {} is valid",
            flags.config.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    if let Err(e) = logging::init(&opts.log_settings()) {
        logging::early_error(&format!("cannot open log file: {e}"));
        return ExitCode::from(1);
    }
    for w in &warnings {
        warn!("{w}");
    }
    for flag in &flags.ignored {
        warn!("flag -{flag} is accepted but not supported by fjord yet; ignored");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            logging::early_error(&format!("cannot start the runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(opts, flags))
}

/// The executable's file name (`fjord`), which names the ports file and which `--signal`
/// looks for among running processes.
fn exe_name() -> String {
    std::env::args()
        .next()
        .as_deref()
        .and_then(|a| Path::new(a).file_name())
        .map_or_else(|| "fjord".to_string(), |n| n.to_string_lossy().into_owned())
}

async fn run(mut opts: Options, flags: Flags) -> ExitCode {
    let id = new_server_id();
    opts.core.server_id = id.clone();
    if opts.core.server_name.is_empty() {
        opts.core.server_name = id.clone();
    }
    opts.core.jetstream = opts.jetstream;
    info!("Starting fjord (nats-server compatible)");
    info!("  Version:  {FJORD_VERSION} (compatible with nats-server {COMPATIBLE_NATS_VERSION})");
    info!("  Name:     {}", opts.core.server_name);
    info!("  ID:       {id}");
    if let Some(file) = &opts.config_file {
        info!("  Using configuration file: {}", file.display());
    }
    let tls = match opts.tls.as_ref().map(TlsServer::new).transpose() {
        Ok(tls) => tls.map(Arc::new),
        Err(e) => {
            error!("{e}");
            return ExitCode::from(1);
        }
    };
    let server = match Server::bind(opts.core.clone(), &opts.listen_host, opts.port, opts.trace)
        .await
    {
        Ok(server) => server,
        Err(e) => {
            tracing::error!("Error listening on port: {}:{}, \"{e}\"", opts.listen_host, opts.port);
            return ExitCode::from(1);
        }
    };
    let addr = match server.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            tracing::error!("cannot read the listening address: {e}");
            return ExitCode::from(1);
        }
    };
    let shared = server.shared();
    let tls_on = tls.is_some();
    shared.tls.store(tls);
    shared.closed.lock().set_capacity(opts.max_closed_clients);
    // The options as configured (a random port stays -1), so a reload compares like with like.
    shared.options.store(Arc::new(opts.clone()));
    let monitor_port = match start_monitoring(&opts, &shared).await {
        Ok(port) => port,
        Err(e) => {
            error!("Can't start monitoring: {e}");
            return ExitCode::from(1);
        }
    };
    info!("Listening for client connections on {}:{}", opts.listen_host, addr.port());
    if tls_on {
        info!("TLS required for client connections");
    }
    if let Some(pid_file) = &opts.pid_file {
        if let Err(e) = std::fs::write(pid_file, std::process::id().to_string()) {
            error!("Could not write pidfile: {e}");
            return ExitCode::from(1);
        }
    }
    let ports_file = match &opts.ports_file_dir {
        Some(dir) => {
            let client = (opts.listen_host.clone(), addr.port());
            match write_ports_file(dir, client, tls_on, monitor_port) {
                Ok(path) => Some(path),
                Err(e) => {
                    error!("Error writing ports file: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        None => None,
    };
    if opts.jetstream {
        if let Err(e) = fjord::jetstream::start(
            shared.clone(),
            opts.jetstream_store_dir(),
            opts.jetstream_encryption.clone(),
        ) {
            error!("Can't start JetStream: {e}");
            return ExitCode::from(1);
        }
    }
    let signals = signals::Signals::install();
    info!("Server is ready");
    let serving = tokio::spawn(server.run());
    let handlers = MainHandlers { shared: shared.clone(), flags };
    let exit = signals.wait(shared.clone(), &handlers).await;
    info!("Initiating Shutdown...");
    if exit == Exit::Stop {
        shared.shutdown.cancel();
    }
    let _ = serving.await;
    if let Some(pid_file) = &opts.pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    if let Some(path) = ports_file {
        let _ = std::fs::remove_file(path);
    }
    ExitCode::SUCCESS
}

/// Starts the monitoring port, plain (`http_port`) or over TLS (`https_port`, with the
/// `tls {}` certificate); returns its host, bound port and scheme for the ports file.
async fn start_monitoring(
    opts: &Options,
    shared: &Arc<Shared>,
) -> Result<Option<(String, u16, &'static str)>, String> {
    let (port, https) = match (opts.http_port, opts.https_port) {
        (Some(http), Some(https)) => {
            return Err(format!("can't specify both HTTP ({http}) and HTTPs ({https}) ports"))
        }
        (Some(port), None) => (port, None),
        (None, Some(port)) => {
            let tls = opts.tls.as_ref().ok_or("TLS cert and key required for HTTPS")?;
            let acceptor = fjord::tls::monitoring_acceptor(tls).map_err(|e| e.to_string())?;
            (port, Some(monitor::server::Https { acceptor, timeout: tls.timeout }))
        }
        (None, None) => return Ok(None),
    };
    // nats-server monitors on the client host unless `http: host:port` names one.
    let host = opts.http_host.clone().unwrap_or_else(|| opts.listen_host.clone());
    let scheme = if https.is_some() { "https" } else { "http" };
    let listener = monitor::server::bind(&host, port, https.is_some())
        .await
        .map_err(|e| format!("can't listen to the monitor port: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?.port();
    let base_path = opts.http_base_path.clone();
    let shared = shared.clone();
    let task_host = host.clone();
    tokio::spawn(async move {
        monitor::server::run(listener, task_host, shared, https, &base_path).await
    });
    Ok(Some((host, bound, scheme)))
}

/// What SIGHUP and SIGUSR2 do.
struct MainHandlers {
    shared: Arc<Shared>,
    /// Re-applied over the reloaded file: flags keep winning.
    flags: Flags,
}

impl signals::Handlers for MainHandlers {
    fn reload(&self) {
        if let Err(e) = reload::reload(&self.shared, &self.flags) {
            error!("Failed to reload server configuration: {e}");
        }
    }

    fn lame_duck(&self) {
        let opts = self.shared.options.load();
        tokio::spawn(lameduck::run(
            self.shared.clone(),
            opts.lame_duck_duration,
            opts.lame_duck_grace_period,
        ));
    }
}

/// nats-server's ports file, `<dir>/<exe>_<pid>.ports`, which test harnesses read to find a
/// server started with `-p -1`.
fn write_ports_file(
    dir: &Path,
    client: (String, u16),
    tls: bool,
    monitor: Option<(String, u16, &str)>,
) -> std::io::Result<PathBuf> {
    // A wildcard host is reached through loopback.
    let reachable = |host: &str| match host {
        "" | "0.0.0.0" | "::" | "[::]" => "127.0.0.1".to_string(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_string(),
    };
    let scheme = if tls { "tls" } else { "nats" };
    let mut ports = serde_json::Map::new();
    ports.insert(
        "nats".into(),
        serde_json::json!([format!("{scheme}://{}:{}", reachable(&client.0), client.1)]),
    );
    if let Some((host, port, scheme)) = monitor {
        ports.insert(
            "monitoring".into(),
            serde_json::json!([format!("{scheme}://{}:{port}", reachable(&host))]),
        );
    }
    let path = dir.join(format!("{}_{}.ports", exe_name(), std::process::id()));
    std::fs::write(&path, serde_json::Value::Object(ports).to_string())?;
    Ok(path)
}
