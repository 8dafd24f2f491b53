//! The monitoring listener: hyper's HTTP/1 server on its own port (plain, or TLS with
//! `https_port`), routing GETs under `http_base_path` to the endpoint handlers. It stops with
//! the server's shutdown token.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::query::{BadRequest, Query};
use super::{connz, healthz, jsz, process, routez, subsz, varz, Monitor};
use crate::server::Shared;

/// Binds the monitoring port (`-1` picks a free one) and logs nats-server's line for it.
pub async fn bind(host: &str, port: i32, secure: bool) -> std::io::Result<TcpListener> {
    let port = if port < 0 { 0 } else { port as u16 };
    let listener = TcpListener::bind((host, port)).await?;
    let bound = listener.local_addr()?.port();
    let scheme = if secure { "https" } else { "http" };
    info!("Starting {scheme} monitor on {host}:{bound}");
    Ok(listener)
}

/// TLS for the monitoring port (`https_port`): the acceptor and the handshake's time limit.
pub struct Https {
    pub acceptor: TlsAcceptor,
    pub timeout: Duration,
}

/// Serves until the server shuts down; over TLS when `https` is given.
pub async fn run(
    listener: TcpListener,
    host: String,
    shared: Arc<Shared>,
    https: Option<Https>,
    base_path: &str,
) {
    let port = listener.local_addr().map_or(0, |a| a.port());
    let (http_port, https_port) = if https.is_some() { (0, port) } else { (port, 0) };
    let monitor = Arc::new(Monitor {
        shared: shared.clone(),
        http_host: host,
        http_port,
        https_port,
        base_path: normalize_base_path(base_path),
        cpu: process::CpuSampler::default(),
        requests: Mutex::new(Default::default()),
    });
    let https = https.map(Arc::new);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    debug!("monitoring accept failed: {e}");
                    // Out of descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shared.shutdown.cancelled() => return,
        };
        let monitor = monitor.clone();
        let shutdown = shared.shutdown.clone();
        let https = https.clone();
        tokio::spawn(async move {
            match https {
                None => serve_connection(monitor, stream, shutdown).await,
                Some(https) => {
                    let handshake = https.acceptor.accept(stream);
                    match tokio::time::timeout(https.timeout, handshake).await {
                        Ok(Ok(tls)) => serve_connection(monitor, tls, shutdown).await,
                        Ok(Err(e)) => debug!("monitoring TLS handshake error: {e}"),
                        Err(_) => debug!("monitoring TLS handshake timeout"),
                    }
                }
            }
        });
    }
}

/// Serves HTTP/1 requests on one accepted connection (plain or TLS) until it ends.
async fn serve_connection<S>(monitor: Arc<Monitor>, stream: S, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let monitor = monitor.clone();
        async move { Ok::<_, Infallible>(route(&monitor, &req).await) }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        served = conn => if let Err(e) = served {
            debug!("monitoring connection ended: {e}");
        },
        _ = shutdown.cancelled() => {}
    }
}

/// nats-server's form of `http_base_path`: `/` when empty, a leading `/`, cleaned (no trailing
/// `/`, no `.`/`..` segments, no doubled `/`).
pub fn normalize_base_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The endpoint a request path names under the base path (`/nats/varz` under `/nats` is
/// `/varz`; `/nats` itself is the index `/`), or None when it lies outside it.
fn endpoint<'a>(base: &str, path: &'a str) -> Option<&'a str> {
    if base == "/" {
        return Some(path);
    }
    if path == base {
        return Some("/");
    }
    match path.strip_prefix(base) {
        // `/nats/` is not the index: nats-server registers `/nats` only.
        Some(rest) if rest.starts_with('/') && rest != "/" => Some(rest),
        _ => None,
    }
}

/// Paths nats-server serves, so `/varz`'s `http_req_stats` counts only real endpoints.
async fn route(monitor: &Monitor, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(path) = endpoint(&monitor.base_path, req.uri().path()) else {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    };
    // Counted before the answer is built, as nats-server does (so `/varz` counts itself), and
    // under the endpoint's own name (`/subscriptionsz` is `/subsz`).
    let counted = match path {
        "/subscriptionsz" => "/subsz",
        "/" | "/varz" | "/connz" | "/subsz" | "/routez" | "/jsz" | "/healthz" => path,
        _ => return text(StatusCode::NOT_FOUND, "404 page not found\n"),
    };
    *monitor.requests.lock().entry(counted.to_string()).or_insert(0) += 1;
    let query = Query::parse(req.uri().query());
    let shared = &monitor.shared;
    let response = match counted {
        "/" => Ok(html(INDEX)),
        "/varz" => {
            let mut v = varz::varz(monitor);
            v.jetstream = jsz::varz_jetstream(shared).await;
            Ok(json(&v))
        }
        "/connz" => connz::connz(shared, &query).map(|c| json(&c)),
        "/subsz" => subsz::subsz(shared, &query).map(|s| json(&s)),
        "/routez" => Ok(json(&routez::routez(shared))),
        "/jsz" => jsz::jsz(shared, &query).await.map(|j| json(&j)),
        "/healthz" => {
            let health = healthz::healthz(shared);
            let status = if health.error.is_none() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            // nats-server prints this one compactly.
            let body = serde_json::to_vec(&health).unwrap_or_default();
            Ok(with_json_headers(Response::new(Full::new(Bytes::from(body))), status))
        }
        _ => return text(StatusCode::NOT_FOUND, "404 page not found\n"),
    };
    match response {
        Ok(r) => r,
        Err(BadRequest(why)) => text(StatusCode::BAD_REQUEST, &why),
    }
}

/// Pretty-printed with two spaces, as nats-server's `json.MarshalIndent` does.
fn json<T: Serialize>(value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => with_json_headers(Response::new(Full::new(Bytes::from(body))), StatusCode::OK),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn with_json_headers(mut r: Response<Full<Bytes>>, status: StatusCode) -> Response<Full<Bytes>> {
    *r.status_mut() = status;
    let headers = r.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Browser dashboards fetch from other origins; nats-server allows it.
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn html(body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

const INDEX: &str = "<html><body><h1>fjord (nats-server compatible) monitoring</h1><ul>\
<li><a href=\"varz\">General</a></li><li><a href=\"connz\">Connections</a></li>\
<li><a href=\"routez\">Routes</a></li><li><a href=\"subsz\">Subscriptions</a></li>\
<li><a href=\"jsz\">JetStream</a></li><li><a href=\"healthz\">Health</a></li></ul></body></html>\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths_normalize_like_nats_server() {
        assert_eq!(normalize_base_path(""), "/");
        assert_eq!(normalize_base_path("nats"), "/nats");
        assert_eq!(normalize_base_path("/nats/"), "/nats");
        assert_eq!(normalize_base_path("//a/./b/../c"), "/a/c");
    }

    #[test]
    fn endpoints_live_under_the_base_path() {
        assert_eq!(endpoint("/", "/varz"), Some("/varz"));
        assert_eq!(endpoint("/nats", "/nats/varz"), Some("/varz"));
        assert_eq!(endpoint("/nats", "/nats"), Some("/"));
        assert_eq!(endpoint("/nats", "/nats/"), None);
        assert_eq!(endpoint("/nats", "/varz"), None);
        assert_eq!(endpoint("/nats", "/natsvarz"), None);
    }
}
