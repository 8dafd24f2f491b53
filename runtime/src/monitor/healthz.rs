//! `/healthz`: 200 `{"status":"ok"}` while the server serves clients; 503 with the reason
//! once it is shutting down or in lame duck mode, so load balancers take it out of rotation.

use serde::Serialize;

use crate::server::Shared;

#[derive(Serialize)]
pub struct Health {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

/// The body and whether it is healthy (the HTTP status follows from it).
pub fn healthz(shared: &Shared) -> Health {
    if shared.shutdown.is_cancelled() {
        Health { status: "unavailable", error: Some("server is shutting down") }
    } else if shared.lame_duck.is_cancelled() {
        Health { status: "unavailable", error: Some("server is in lame duck mode") }
    } else {
        Health { status: "ok", error: None }
    }
}
