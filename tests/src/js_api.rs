//! Raw JetStream API requests through async-nats core: for the parts of the API async-nats
//! does not wrap (snapshot and restore) and for exact JSON, errors included.

use std::time::Duration;

use async_nats::{Client, Message};
use bytes::Bytes;
use serde_json::Value;
use tokio::time::timeout;

use crate::TestServer;

/// How long any one answer may take.
pub const WAIT: Duration = Duration::from_secs(15);

pub async fn connect(server: &TestServer) -> Client {
    timeout(WAIT, async_nats::connect(server.url()))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// A request and its answer, whatever it is.
pub async fn request(client: &Client, subject: &str, body: impl Into<Bytes>) -> Message {
    timeout(WAIT, client.request(subject.to_string(), body.into()))
        .await
        .unwrap_or_else(|_| panic!("request to {subject} timed out"))
        .unwrap_or_else(|e| panic!("request to {subject}: {e}"))
}

/// A JSON request and its JSON answer.
pub async fn api(client: &Client, subject: &str, body: &Value) -> Value {
    let m = request(client, subject, body.to_string()).await;
    serde_json::from_slice(&m.payload).expect("API answer is JSON")
}
