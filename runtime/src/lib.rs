//! fjord: the production driver of fjord-core, on tokio.

pub mod cli;
pub mod config;
pub mod connection;
pub mod disk;
pub mod index;
pub mod jetstream;
pub mod lameduck;
pub mod logging;
pub mod monitor;
pub mod net;
pub mod options;
pub mod outbound;
pub mod reload;
pub mod server;
pub mod signals;
pub mod tls;
