//! The INFO the server sends on accept, with nats-server's field names.

use serde::Serialize;

use crate::config::{CoreConfig, COMPATIBLE_NATS_VERSION, FJORD_VERSION};

/// INFO as nats-server 2.15.1 sends it to a client. Fields that are false or empty are left out,
/// as nats-server does, so clients that test for a key's presence behave the same.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerInfo {
    pub server_id: String,
    pub server_name: String,
    /// The nats-server version whose behaviour Fjord matches (clients key features on it).
    pub version: String,
    pub proto: u32,
    pub go: String,
    pub host: String,
    pub port: u16,
    pub headers: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub auth_required: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_required: bool,
    pub max_payload: usize,
    #[serde(skip_serializing_if = "is_false")]
    pub jetstream: bool,
    pub client_id: u64,
    pub client_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub ldm: bool,
    /// Fjord's own version, beside the compatible nats-server version.
    pub fjord_version: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ServerInfo {
    /// The INFO for one client of a server configured by `config`. Auth and TLS are the
    /// driver's to fill in: they can change at run time (reload).
    pub fn for_client(config: &CoreConfig, client_id: u64, client_ip: String) -> ServerInfo {
        ServerInfo {
            server_id: config.server_id.clone(),
            server_name: config.server_name.clone(),
            version: COMPATIBLE_NATS_VERSION.to_string(),
            proto: 1,
            go: "fjord".to_string(),
            host: config.host.clone(),
            port: config.port,
            headers: config.headers,
            auth_required: false,
            tls_required: false,
            max_payload: config.max_payload,
            jetstream: config.jetstream,
            client_id,
            client_ip,
            nonce: None,
            ldm: false,
            fjord_version: FJORD_VERSION.to_string(),
        }
    }

    /// The full `INFO {...}\r\n` line.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = b"INFO ".to_vec();
        // Serializing a struct of strings and numbers cannot fail.
        serde_json::to_writer(&mut line, self).expect("INFO serializes");
        line.extend_from_slice(b" \r\n");
        line
    }
}
