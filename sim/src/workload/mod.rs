//! Workloads: simulated clients that drive the nodes through the network with real protocol
//! bytes. Core pub/sub comes first; JetStream, KV and cluster workloads join it later.

pub mod jetstream;
pub mod kv_history;
pub mod proto;
pub mod pubsub;
pub mod raft;
pub mod store;
