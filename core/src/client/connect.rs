//! CONNECT options, with nats-server's defaults for omitted fields.

use serde::Deserialize;

/// What a client says about itself in CONNECT. nats-server fills `verbose`, `pedantic` and
/// `echo` with true before decoding, so a bare `CONNECT {}` gets +OK after every op; every
/// official client sends `verbose:false` explicitly.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ConnectOptions {
    pub verbose: bool,
    pub pedantic: bool,
    pub tls_required: bool,
    pub auth_token: Option<String>,
    pub user: Option<String>,
    pub pass: Option<String>,
    pub name: Option<String>,
    pub lang: Option<String>,
    pub version: Option<String>,
    pub protocol: i64,
    pub echo: bool,
    pub headers: bool,
    pub no_responders: bool,
    pub sig: Option<String>,
    pub jwt: Option<String>,
    pub nkey: Option<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            verbose: true,
            pedantic: true,
            tls_required: false,
            auth_token: None,
            user: None,
            pass: None,
            name: None,
            lang: None,
            version: None,
            protocol: 0,
            echo: true,
            headers: false,
            no_responders: false,
            sig: None,
            jwt: None,
            nkey: None,
        }
    }
}

/// Why a CONNECT was refused before authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// The JSON did not decode.
    Malformed,
    InvalidProtocol,
    NoRespondersWithoutHeaders,
}

impl ConnectOptions {
    pub fn parse(json: &[u8]) -> Result<ConnectOptions, ConnectError> {
        let opts: ConnectOptions =
            serde_json::from_slice(json).map_err(|_| ConnectError::Malformed)?;
        if !(0..=1).contains(&opts.protocol) {
            return Err(ConnectError::InvalidProtocol);
        }
        if opts.no_responders && !opts.headers {
            return Err(ConnectError::NoRespondersWithoutHeaders);
        }
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omitted_fields_take_nats_server_defaults() {
        let opts = ConnectOptions::parse(b"{}").unwrap();
        assert!(opts.verbose && opts.pedantic && opts.echo);
        assert!(!opts.headers && !opts.no_responders);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let opts = ConnectOptions::parse(br#"{"verbose":false,"whatever":[1,2]}"#).unwrap();
        assert!(!opts.verbose);
    }

    #[test]
    fn refusals() {
        assert_eq!(ConnectOptions::parse(b"{"), Err(ConnectError::Malformed));
        assert_eq!(ConnectOptions::parse(br#"{"protocol":2}"#), Err(ConnectError::InvalidProtocol));
        assert_eq!(
            ConnectOptions::parse(br#"{"no_responders":true}"#),
            Err(ConnectError::NoRespondersWithoutHeaders)
        );
    }
}
