//! Who may connect: a token, one user and password, or a list of users with permissions.

use std::time::Duration;

use super::permissions::Permissions;

#[derive(Clone, Debug, PartialEq)]
pub struct AuthConfig {
    /// `authorization { token }` or `--auth`.
    pub token: Option<String>,
    /// `authorization { user, password }` or `--user`/`--pass`.
    pub user: Option<String>,
    pub password: Option<String>,
    /// `authorization { users: [...] }`.
    pub users: Vec<User>,
    /// Permissions for users that have none of their own (`default_permissions`).
    pub default_permissions: Option<Permissions>,
    /// How long a new connection has to send a valid CONNECT (`authorization { timeout }`).
    pub timeout: Duration,
    /// A user assumed when a client sends no credentials (`no_auth_user`).
    pub no_auth_user: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token: None,
            user: None,
            password: None,
            users: Vec::new(),
            default_permissions: None,
            timeout: Duration::from_secs(2),
            no_auth_user: None,
        }
    }
}

impl AuthConfig {
    /// Whether clients must authenticate (INFO's `auth_required`).
    pub fn required(&self) -> bool {
        self.token.is_some() || self.user.is_some() || !self.users.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub name: String,
    pub password: Option<String>,
    pub permissions: Option<Permissions>,
}

/// Why CONNECT's credentials were refused (the client gets `Authorization Violation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthFailure;

/// Who a client turned out to be.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Identity {
    /// The user's name, when users are configured.
    pub user: Option<String>,
    /// What the user may do; None = everything.
    pub permissions: Option<Permissions>,
}

impl AuthConfig {
    /// Checks CONNECT's credentials against the configuration.
    ///
    /// A token, a single user and a users list may be configured together; a client passes if
    /// any of them accepts it, as with nats-server.
    pub fn authenticate(
        &self,
        token: Option<&str>,
        user: Option<&str>,
        pass: Option<&str>,
    ) -> Result<Identity, AuthFailure> {
        if !self.required() {
            return Ok(Identity::default());
        }
        if let (Some(expected), Some(given)) = (&self.token, token) {
            if secret_matches(expected, given) {
                return Ok(Identity::default());
            }
        }
        let user = match user {
            Some(u) => Some(u),
            // A client that presents nothing may be mapped to `no_auth_user`.
            None if token.is_none() && pass.is_none() => self.no_auth_user.as_deref(),
            None => None,
        };
        let Some(user) = user else { return Err(AuthFailure) };
        let assumed = self.no_auth_user.as_deref() == Some(user) && pass.is_none();
        if let (Some(expected_user), Some(expected_pass)) = (&self.user, &self.password) {
            if expected_user == user && pass.is_some_and(|p| secret_matches(expected_pass, p)) {
                return Ok(Identity {
                    user: Some(user.to_string()),
                    permissions: self.default_permissions.clone(),
                });
            }
        }
        for candidate in &self.users {
            if candidate.name != user {
                continue;
            }
            let password_ok = match (&candidate.password, pass) {
                (Some(expected), Some(given)) => secret_matches(expected, given),
                (None, None) => true,
                _ => assumed,
            };
            if password_ok {
                return Ok(Identity {
                    user: Some(user.to_string()),
                    permissions: candidate
                        .permissions
                        .clone()
                        .or_else(|| self.default_permissions.clone()),
                });
            }
        }
        Err(AuthFailure)
    }
}

/// A configured password or token may be a bcrypt hash (`$2a$...`, as `nats-server passwd`
/// writes them): then the given secret is checked against the hash; otherwise the two are
/// compared as they are.
fn secret_matches(expected: &str, given: &str) -> bool {
    if is_bcrypt(expected) {
        return bcrypt::verify(given, expected).unwrap_or(false);
    }
    constant_time_eq(expected.as_bytes(), given.as_bytes())
}

fn is_bcrypt(secret: &str) -> bool {
    ["$2a$", "$2b$", "$2x$", "$2y$"].iter().any(|p| secret.starts_with(p))
}

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> AuthConfig {
        AuthConfig {
            users: vec![
                User { name: "a".into(), password: Some("b".into()), permissions: None },
                User { name: "guest".into(), password: None, permissions: None },
            ],
            no_auth_user: Some("guest".into()),
            ..AuthConfig::default()
        }
    }

    #[test]
    fn open_server_accepts_anyone() {
        assert!(AuthConfig::default().authenticate(None, None, None).is_ok());
    }

    #[test]
    fn token() {
        let auth = AuthConfig { token: Some("s3cr3t".into()), ..AuthConfig::default() };
        assert!(auth.authenticate(Some("s3cr3t"), None, None).is_ok());
        assert_eq!(auth.authenticate(Some("nope"), None, None), Err(AuthFailure));
        assert_eq!(auth.authenticate(None, None, None), Err(AuthFailure));
    }

    #[test]
    fn single_user() {
        let auth = AuthConfig {
            user: Some("u".into()),
            password: Some("p".into()),
            ..AuthConfig::default()
        };
        assert!(auth.authenticate(None, Some("u"), Some("p")).is_ok());
        assert_eq!(auth.authenticate(None, Some("u"), Some("x")), Err(AuthFailure));
        assert_eq!(auth.authenticate(None, Some("x"), Some("p")), Err(AuthFailure));
        assert_eq!(auth.authenticate(None, None, None), Err(AuthFailure));
    }

    #[test]
    fn bcrypt_hashed_passwords() {
        // A cost-4 hash of "s3cret", as `nats-server passwd` would store it (at cost 11).
        let hash = bcrypt::hash_with_salt("s3cret", 4, [7; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoA);
        let auth =
            AuthConfig { user: Some("u".into()), password: Some(hash), ..AuthConfig::default() };
        assert!(auth.authenticate(None, Some("u"), Some("s3cret")).is_ok());
        assert_eq!(auth.authenticate(None, Some("u"), Some("wrong")), Err(AuthFailure));
    }

    #[test]
    fn users_list_and_no_auth_user() {
        let auth = users();
        assert_eq!(
            auth.authenticate(None, Some("a"), Some("b")).unwrap().user.as_deref(),
            Some("a")
        );
        assert_eq!(auth.authenticate(None, Some("a"), Some("c")), Err(AuthFailure));
        assert_eq!(auth.authenticate(None, None, None).unwrap().user.as_deref(), Some("guest"));
    }
}
