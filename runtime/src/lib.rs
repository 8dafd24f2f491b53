//! fjord: the production driver of fjord-core, on tokio.

pub mod cli;
pub mod config;
pub mod connection;
pub mod index;
pub mod logging;
pub mod options;
pub mod outbound;
pub mod server;
