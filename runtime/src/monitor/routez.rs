//! `/routez`: cluster routes. Fjord has no clustering yet, so the list is always empty, in the
//! shape nats-server gives for a server without routes.

use std::time::SystemTime;

use serde::Serialize;

use super::format::rfc3339_nanos;
use crate::server::Shared;

#[derive(Serialize)]
pub struct Routez {
    pub server_id: String,
    pub server_name: String,
    pub now: String,
    pub num_routes: usize,
    pub routes: Vec<serde_json::Value>,
}

pub fn routez(shared: &Shared) -> Routez {
    Routez {
        server_id: shared.config.load().server_id.clone(),
        server_name: shared.config.load().server_name.clone(),
        now: rfc3339_nanos(SystemTime::now()),
        num_routes: 0,
        routes: Vec::new(),
    }
}
