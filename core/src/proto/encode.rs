//! Encoders for what the server sends.
