//! The `fjord` binary: nats-server's flags and configuration file, a tokio server.

use std::process::ExitCode;

use fjord::cli::{Command, Flags, USAGE};
use fjord::options::Options;
use fjord::server::{new_server_id, Server};
use fjord::{config, logging};
use fjord_core::config::{COMPATIBLE_NATS_VERSION, FJORD_VERSION};
use tracing::{info, warn};

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
    if let Err(e) = logging::init(opts.debug, opts.trace, opts.logtime, opts.log_file.as_deref()) {
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
    runtime.block_on(run(opts))
}

async fn run(mut opts: Options) -> ExitCode {
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
    if opts.jetstream {
        warn!("JetStream is not available in this build of fjord yet; serving core NATS only");
    }
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
    info!("Listening for client connections on {}:{}", opts.listen_host, addr.port());
    if let Some(pid_file) = &opts.pid_file {
        if let Err(e) = std::fs::write(pid_file, std::process::id().to_string()) {
            tracing::error!("Could not write pidfile: {e}");
            return ExitCode::from(1);
        }
    }
    info!("Server is ready");
    let shared = server.shared();
    let serving = tokio::spawn(server.run());
    wait_for_signal().await;
    info!("Initiating Shutdown...");
    shared.shutdown.cancel();
    let _ = serving.await;
    if let Some(pid_file) = &opts.pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        // Without signal handlers the server still runs; it just cannot stop gracefully.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("Trapped \"terminated\" signal"),
        _ = int.recv() => info!("Trapped \"interrupt\" signal"),
    }
}
