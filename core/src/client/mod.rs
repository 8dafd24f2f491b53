//! One client connection: CONNECT options, authentication, permissions, keepalive.

pub mod auth;
pub mod conn;
pub mod connect;
pub mod permissions;
