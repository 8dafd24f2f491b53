//! What a user may publish and subscribe to.

use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Permissions {
    pub publish: Option<SubjectPermission>,
    pub subscribe: Option<SubjectPermission>,
    /// `allow_responses`: may publish to reply subjects of requests it received.
    pub allow_responses: Option<ResponsePermission>,
}

/// `allow` empty means everything not denied is allowed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubjectPermission {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

/// nats-server's defaults: one response (`max: 1`) within no expiry (`expires: 0`).
#[derive(Clone, Debug, PartialEq)]
pub struct ResponsePermission {
    pub max: usize,
    pub expires: Duration,
}

impl Default for ResponsePermission {
    fn default() -> Self {
        ResponsePermission { max: 1, expires: Duration::ZERO }
    }
}
