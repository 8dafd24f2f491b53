//! Process signals, both ways: the running server's handlers (SIGTERM/SIGINT stop, SIGHUP
//! reloads the configuration, SIGUSR2 enters lame duck mode), and `--signal` sending one of
//! nats-server's commands to a running server, found by pid, pid file, or its process name.

use std::path::Path;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tracing::info;

use crate::server::Shared;

/// What ended the wait for signals.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM or SIGINT: stop now.
    Stop,
    /// The server shut itself down (lame duck mode finished).
    ShutDown,
}

/// What a signal asks of the server besides stopping; `main` supplies the actions.
pub trait Handlers: Send + Sync {
    fn reload(&self);
    fn lame_duck(&self);
}

/// The installed handlers. Installed before the server says it is ready, so a signal sent by
/// a script that waited for `Server is ready` is never met by the default action (SIGHUP
/// would otherwise kill the process).
pub struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
    usr1: Option<tokio::signal::unix::Signal>,
    usr2: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Handlers that cannot be installed leave the server running without them (it just
    /// cannot be driven by that signal).
    pub fn install() -> Signals {
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
            usr1: signal(SignalKind::user_defined1()).ok(),
            usr2: signal(SignalKind::user_defined2()).ok(),
        }
    }

    /// Serves signals until the server must stop.
    pub async fn wait(mut self, shared: Arc<Shared>, handlers: &dyn Handlers) -> Exit {
        loop {
            tokio::select! {
                Some(()) = recv(&mut self.term) => {
                    info!("Trapped \"terminated\" signal");
                    return Exit::Stop;
                }
                Some(()) = recv(&mut self.int) => {
                    info!("Trapped \"interrupt\" signal");
                    return Exit::Stop;
                }
                Some(()) = recv(&mut self.hup) => {
                    info!("Trapped \"hangup\" signal");
                    handlers.reload();
                }
                Some(()) = recv(&mut self.usr2) => {
                    info!("Trapped \"user defined signal 2\" signal");
                    handlers.lame_duck();
                }
                Some(()) = recv(&mut self.usr1) => {
                    // Log rotation: the file is reopened under its name, as nats-server does.
                    info!("Trapped \"user defined signal 1\" signal");
                    match crate::logging::reopen() {
                        Ok(true) => info!("File log re-opened"),
                        Ok(false) => info!("File log re-open ignored, not a file logger"),
                        Err(e) => tracing::error!("Could not re-open the log file: {e}"),
                    }
                }
                _ = shared.shutdown.cancelled() => return Exit::ShutDown,
            }
        }
    }
}

async fn recv(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// `--signal <command>[=<pid or pid file>]`, as nats-server's `ProcessSignal`.
pub fn send(arg: &str, exe_name: &str) -> Result<(), String> {
    let (command, target) = match arg.split_once('=') {
        Some((c, t)) => (c, Some(t)),
        None => (arg, None),
    };
    let sig = match command {
        "stop" => libc::SIGKILL,
        "quit" => libc::SIGINT,
        "term" => libc::SIGTERM,
        "reopen" => libc::SIGUSR1,
        "reload" => libc::SIGHUP,
        "ldm" => libc::SIGUSR2,
        other => return Err(format!("unknown signal \"{other}\"")),
    };
    let pid = match target {
        Some(t) => match t.parse::<i32>() {
            Ok(pid) => pid,
            // Not a number: a pid file (nats-server accepts either).
            Err(_) => read_pid_file(Path::new(t))?,
        },
        None => find_single_process(exe_name)?,
    };
    // SAFETY: kill(2) with a pid and a valid signal number has no memory effects.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(format!("{}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn read_pid_file(path: &Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("could not read pid file {}: {e}", path.display()))?;
    text.trim().parse().map_err(|_| format!("invalid pid in {}: {:?}", path.display(), text.trim()))
}

/// The one other process running this executable (by `/proc/<pid>/comm`), as nats-server
/// uses `pgrep`; more than one is an error naming them.
fn find_single_process(exe_name: &str) -> Result<i32, String> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let entries = std::fs::read_dir("/proc").map_err(|e| format!("cannot list processes: {e}"))?;
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        // comm is truncated to 15 bytes by the kernel.
        let name: String = exe_name.chars().take(15).collect();
        if comm.trim_end() == name {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [] => Err(format!("no {exe_name} process running")),
        [pid] => Ok(*pid),
        many => {
            let list: Vec<String> = many.iter().map(i32::to_string).collect();
            Err(format!("multiple {exe_name} processes running:\n{}\n", list.join("\n")))
        }
    }
}
