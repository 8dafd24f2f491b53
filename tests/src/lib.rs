//! Helpers for the end-to-end tests: start a server binary on a free port, find the
//! reference nats-server.
