//! Lame duck mode (SIGUSR2, `--signal ldm`), as nats-server runs it: stop accepting, tell
//! clients with an INFO carrying `ldm: true` (so they reconnect elsewhere), wait the grace
//! period, then close the clients spread over the rest of `lame_duck_duration` (at most one a
//! second apart; in batches when there are more clients than nanoseconds), then shut down.

use std::sync::Arc;
use std::time::Duration;

use fjord_core::client::conn::CloseReason;
use rand::Rng;
use tracing::info;

use crate::server::Shared;

pub async fn run(shared: Arc<Shared>, duration: Duration, grace: Duration) {
    if shared.lame_duck.is_cancelled() {
        return;
    }
    info!("Entering lame duck mode, stop accepting new clients");
    shared.lame_duck.cancel();
    notify_clients(&shared);
    tokio::select! {
        _ = tokio::time::sleep(grace) => {}
        _ = shared.shutdown.cancelled() => return,
    }
    info!("Closing existing clients");
    let clients: Vec<_> = shared.clients.lock().values().cloned().collect();
    // The time left after the grace period; nats-server uses 1s when nothing is left.
    let spread =
        duration.checked_sub(grace).filter(|d| !d.is_zero()).unwrap_or(Duration::from_secs(1));
    let n = clients.len().max(1) as u128;
    let mut interval = spread.as_nanos() / n;
    let mut batch = 1usize;
    if interval < 1 {
        interval = 1;
        batch = (n / spread.as_nanos().max(1)) as usize;
    } else if interval > 1_000_000_000 {
        // No need to wait long between a few clients.
        interval = 1_000_000_000;
    }
    let interval = interval as u64;
    for (i, client) in clients.iter().enumerate() {
        client.outbound.close(CloseReason::ServerShutdown);
        if (i + 1) % batch.max(1) != 0 || i + 1 == clients.len() {
            continue;
        }
        // A random pause of at least half the interval, so reconnects do not come in lockstep.
        let pause = rand::rng().random_range(interval / 2..=interval);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_nanos(pause)) => {}
            _ = shared.shutdown.cancelled() => return,
        }
    }
    shared.shutdown.cancel();
}

/// Sends INFO with `ldm: true` to every client that takes asynchronous INFO (protocol 1).
fn notify_clients(shared: &Shared) {
    let clients: Vec<_> = shared.clients.lock().values().cloned().collect();
    for client in clients {
        let protocol = client.connect.lock().as_ref().map_or(0, |c| c.protocol);
        if protocol < 1 {
            continue;
        }
        let mut info = shared.info(client.id, client.peer);
        info.ldm = true;
        if client.outbound.push(&info.to_line()) {
            client.outbound.wake();
        }
    }
}
