//! Store tests: the model check, crash and corruption tests, mutation canaries.

mod crash;
mod model;
