//! fjord-core: every rule of Fjord, sans-IO.
//!
//! Nothing in this crate reads a clock, opens a socket or a file, spawns a thread or draws
//! ambient randomness: time and randomness are inputs given by the driver (`runtime/` in
//! production, `sim/` in tests). `clippy.toml` beside this crate enforces it.

pub mod client;
pub mod config;
pub mod disk;
pub mod jetstream;
pub mod proto;
pub mod raft;
pub mod route;
pub mod server;
pub mod store;
pub mod subject;
pub mod sublist;
pub mod time;
