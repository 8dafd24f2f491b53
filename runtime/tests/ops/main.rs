//! The `fjord` binary driven as operators drive nats-server: monitoring endpoints, pid and
//! ports files, signals, configuration reload, lame duck mode and TLS.

mod harness;
mod lame_duck;
mod monitoring;
mod process;
mod reload;
mod tls;
