//! CONNECT options.
