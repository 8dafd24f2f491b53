//! Store tests: the model check, crash and corruption tests, mutation canaries.

mod cache;
mod compress;
mod crash;
mod crypt;
mod model;
mod snapshot;
mod truncate;
