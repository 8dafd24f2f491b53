//! TLS for client connections (rustls through tokio-rustls), in nats-server's two flows:
//!
//! - default: INFO (with `tls_required`) goes out in plain text, then the client starts the
//!   handshake; a client that sends plain protocol instead is closed, as nats-server does
//!   ("TLS handshake error: ... Client connection closed: TLS Handshake Failure");
//! - `handshake_first`: the handshake comes first and INFO is sent over TLS.
//!
//! The handshake has `tls { timeout }` to finish. With `verify`, clients must present a
//! certificate signed by `ca_file`.

use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::connection;
use crate::server::Shared;

/// `tls { ... }` and the `--tls*` flags.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsOptions {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: Option<PathBuf>,
    pub verify: bool,
    pub timeout: Duration,
    pub handshake_first: bool,
}

/// nats-server's default `tls { timeout }`.
pub const DEFAULT_TLS_TIMEOUT: Duration = Duration::from_secs(2);

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            ca_file: None,
            verify: false,
            timeout: DEFAULT_TLS_TIMEOUT,
            handshake_first: false,
        }
    }
}

#[derive(Debug)]
pub enum TlsError {
    Read(PathBuf, std::io::Error),
    NoCertificate(PathBuf),
    NoKey(PathBuf),
    /// `verify` without a `ca_file` to verify against.
    VerifyWithoutCa,
    Rustls(String),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Read(p, e) => write!(f, "error reading {}: {e}", p.display()),
            TlsError::NoCertificate(p) => write!(f, "no certificate found in {}", p.display()),
            TlsError::NoKey(p) => write!(f, "no private key found in {}", p.display()),
            TlsError::VerifyWithoutCa => {
                write!(f, "tls verify requires a ca_file to verify client certificates with")
            }
            TlsError::Rustls(e) => write!(f, "error setting up TLS: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// A ready acceptor plus the flow settings. Built anew (and swapped in) by a reload, so new
/// connections get new certificates while open ones keep theirs.
pub struct TlsServer {
    acceptor: TlsAcceptor,
    pub verify: bool,
    pub timeout: Duration,
    pub handshake_first: bool,
}

impl TlsServer {
    pub fn new(opts: &TlsOptions) -> Result<TlsServer, TlsError> {
        Ok(TlsServer {
            acceptor: TlsAcceptor::from(Arc::new(server_config(opts, opts.verify)?)),
            verify: opts.verify,
            timeout: opts.timeout,
            handshake_first: opts.handshake_first,
        })
    }
}

/// The HTTPS monitoring port's acceptor: the `tls {}` certificate, but no client certificate
/// asked for even with `verify` (nats-server's monitoring does not ask either, so browsers and
/// scrapers can read it).
pub fn monitoring_acceptor(opts: &TlsOptions) -> Result<TlsAcceptor, TlsError> {
    Ok(TlsAcceptor::from(Arc::new(server_config(opts, false)?)))
}

/// rustls' server configuration for the certificate in `opts`; with `verify_clients`, clients
/// must present a certificate signed by `ca_file`.
fn server_config(opts: &TlsOptions, verify_clients: bool) -> Result<ServerConfig, TlsError> {
    let certs = load_certs(&opts.cert_file)?;
    let key = load_key(&opts.key_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = if verify_clients {
        let ca = opts.ca_file.as_ref().ok_or(TlsError::VerifyWithoutCa)?;
        let mut roots = RootCertStore::empty();
        for cert in load_certs(ca)? {
            roots.add(cert).map_err(|e| TlsError::Rustls(e.to_string()))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    builder.with_single_cert(certs, key).map_err(|e| TlsError::Rustls(e.to_string()))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = std::fs::File::open(path).map_err(|e| TlsError::Read(path.into(), e))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read(path.into(), e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.into()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let file = std::fs::File::open(path).map_err(|e| TlsError::Read(path.into(), e))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| TlsError::Read(path.into(), e))?
        .ok_or_else(|| TlsError::NoKey(path.into()))
}

/// Serves one accepted connection on a TLS-only port.
pub async fn serve<S>(
    shared: Arc<Shared>,
    tls: Arc<TlsServer>,
    mut stream: S,
    peer: SocketAddr,
    id: u64,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    debug!("{peer} - cid:{id} - Client connection created");
    if !tls.handshake_first {
        // INFO in the clear tells the client to upgrade (`tls_required`).
        if stream.write_all(&shared.info_line(id, peer)).await.is_err() {
            return;
        }
    }
    debug!("{peer} - cid:{id} - Starting TLS client connection handshake");
    let handshake = tokio::time::timeout(tls.timeout, tls.acceptor.accept(stream)).await;
    let tls_stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!("{peer} - cid:{id} - TLS handshake error: {e}");
            debug!("{peer} - cid:{id} - Client connection closed: TLS Handshake Failure");
            return;
        }
        Err(_) => {
            debug!("{peer} - cid:{id} - TLS handshake timeout");
            debug!("{peer} - cid:{id} - Client connection closed: TLS Handshake Failure");
            return;
        }
    };
    if tls.handshake_first {
        connection::serve(shared, tls_stream, peer, id).await;
    } else {
        connection::serve_info_sent(shared, tls_stream, peer, id).await;
    }
}
