//! The INFO the server sends.
