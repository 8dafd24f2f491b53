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
