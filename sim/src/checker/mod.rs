//! Checkers: they watch what clients sent and received (never the server's internals) and fail
//! the run with a clear message. Each runs online, after every event it is told of, and once at
//! the end. Stores, Raft and JetStream bring their own checkers beside `pubsub`.

pub mod jetstream;
pub mod linearizability;
pub mod pubsub;
pub mod raft;
pub mod store;

/// A violated property: the message says which and on what evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
