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

use rustc_hash::FxHashMap;

use crate::subject;
use crate::time::Instant;

impl SubjectPermission {
    /// nats-server's rule: allowed when the allow list is empty or one of its patterns matches,
    /// and no deny pattern matches. Wildcard tokens in `subject` (a subscription's) are compared
    /// as tokens, so `bar.>` is refused by a deny of `bar.*`, as nats-server refuses it.
    pub fn permits(&self, subject: &[u8]) -> bool {
        let allowed = self.allow.is_empty()
            || self.allow.iter().any(|p| subject::matches(p.as_bytes(), subject));
        allowed && !self.deny.iter().any(|p| subject::matches(p.as_bytes(), subject))
    }
}

impl Permissions {
    pub fn may_publish(&self, subject: &[u8]) -> bool {
        self.publish.as_ref().is_none_or(|p| p.permits(subject))
    }

    pub fn may_subscribe(&self, subject: &[u8]) -> bool {
        self.subscribe.as_ref().is_none_or(|p| p.permits(subject))
    }

    /// Whether deliveries on a subscription to `sub_subject` must be checked one by one
    /// against the subscribe deny list: a wildcard subscription may overlap a denied subject
    /// without matching it as a pattern (`x.*` against deny `x.y`), and nats-server then
    /// withholds just the denied messages.
    pub fn needs_delivery_check(&self, sub_subject: &[u8]) -> bool {
        self.subscribe.as_ref().is_some_and(|p| !p.deny.is_empty())
            && subject::tokens(sub_subject).any(|t| t == b"*" || t == b">")
    }

    /// Whether a message on `subject` is withheld from this client by its subscribe deny list.
    pub fn delivery_denied(&self, subject: &[u8]) -> bool {
        self.subscribe
            .as_ref()
            .is_some_and(|p| p.deny.iter().any(|d| subject::matches(d.as_bytes(), subject)))
    }
}

/// Reply subjects a client with `allow_responses` may publish to: the replies of requests it
/// received, each good for `max` responses until `expires` (0 = never).
#[derive(Debug, Default)]
pub struct ResponseGrants {
    grants: FxHashMap<Vec<u8>, Grant>,
}

#[derive(Debug)]
struct Grant {
    left: usize,
    expires_at: Option<Instant>,
}

/// Bounds the table: a client that receives many requests and never answers them must not
/// grow it without end (nats-server prunes likewise).
const MAX_GRANTS: usize = 64 * 1024;

impl ResponseGrants {
    /// Called when a request with `reply` is delivered to the client.
    pub fn grant(&mut self, reply: &[u8], rule: &ResponsePermission, now: Instant) {
        if self.grants.len() >= MAX_GRANTS {
            self.grants.retain(|_, g| g.expires_at.is_none_or(|t| t > now));
            if self.grants.len() >= MAX_GRANTS {
                self.grants.clear();
            }
        }
        let expires_at = (!rule.expires.is_zero()).then(|| now + rule.expires);
        self.grants.insert(reply.to_vec(), Grant { left: rule.max.max(1), expires_at });
    }

    /// Uses up one response to `subject`, if one was granted and has not expired.
    pub fn consume(&mut self, subject: &[u8], now: Instant) -> bool {
        let Some(grant) = self.grants.get_mut(subject) else { return false };
        if grant.expires_at.is_some_and(|t| t <= now) {
            self.grants.remove(subject);
            return false;
        }
        grant.left -= 1;
        if grant.left == 0 {
            self.grants.remove(subject);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn perm(allow: &[&str], deny: &[&str]) -> SubjectPermission {
        SubjectPermission {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn allow_and_deny() {
        let p = perm(&["foo.>", "_INBOX.>"], &["foo.secret"]);
        assert!(p.permits(b"foo.x"));
        assert!(!p.permits(b"foo.secret"));
        assert!(!p.permits(b"bar"));
        let deny_only = perm(&[], &["bar.*"]);
        assert!(deny_only.permits(b"baz"));
        assert!(!deny_only.permits(b"bar.x"));
        assert!(!deny_only.permits(b"bar.>"), "nats-server refuses bar.> under deny bar.*");
    }

    #[test]
    fn wildcard_subscriptions_overlapping_a_deny_are_checked_per_delivery() {
        let perms =
            Permissions { subscribe: Some(perm(&[">"], &["x.y"])), ..Permissions::default() };
        assert!(perms.may_subscribe(b"x.*"));
        assert!(perms.needs_delivery_check(b"x.*"));
        assert!(!perms.needs_delivery_check(b"x.z"));
        assert!(perms.delivery_denied(b"x.y"));
        assert!(!perms.delivery_denied(b"x.z"));
    }

    #[test]
    fn response_grants_are_used_up_and_expire() {
        let mut grants = ResponseGrants::default();
        let rule = ResponsePermission { max: 2, expires: Duration::from_secs(1) };
        grants.grant(b"_INBOX.1", &rule, Instant(0));
        assert!(grants.consume(b"_INBOX.1", Instant(1)));
        assert!(grants.consume(b"_INBOX.1", Instant(2)));
        assert!(!grants.consume(b"_INBOX.1", Instant(3)));
        grants.grant(b"_INBOX.2", &rule, Instant(0));
        assert!(!grants.consume(b"_INBOX.2", Instant(2_000_000_000)));
        assert!(!grants.consume(b"_INBOX.unknown", Instant(0)));
    }
}
