//! TLS with certificates made by rcgen: nats-server's INFO-then-upgrade flow, handshake
//! first, client certificate verification, and a plain-text client on a TLS-only port.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};

use crate::harness::{temp_dir, write, Fjord, Raw};

struct Certs {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files.
fn make_certs(dir: &Path) -> Certs {
    make_certs_named(dir, "")
}

fn make_certs_named(dir: &Path, prefix: &str) -> Certs {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["client".to_string()]).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
    let certs = Certs {
        ca: dir.join(format!("{prefix}ca.pem")),
        server_cert: dir.join(format!("{prefix}server-cert.pem")),
        server_key: dir.join(format!("{prefix}server-key.pem")),
        client_cert: dir.join(format!("{prefix}client-cert.pem")),
        client_key: dir.join(format!("{prefix}client-key.pem")),
    };
    write(&certs.ca, &ca.pem());
    write(&certs.server_cert, &server.pem());
    write(&certs.server_key, &server_key.serialize_pem());
    write(&certs.client_cert, &client.pem());
    write(&certs.client_key, &client_key.serialize_pem());
    certs
}

async fn round_trip(client: &async_nats::Client) {
    let mut sub = client.subscribe("secure").await.unwrap();
    client.publish("secure", Bytes::from_static(b"hello")).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap();
    assert_eq!(msg.payload, Bytes::from_static(b"hello"));
}

#[tokio::test]
async fn info_first_then_upgrade_and_plain_clients_are_closed() {
    let dir = temp_dir("tls");
    let certs = make_certs(&dir);
    let conf = dir.join("fjord.conf");
    write(
        &conf,
        &format!(
            "port: -1\nhost: 127.0.0.1\nhttp_port: -1\ntls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 2\n}}\n",
            certs.server_cert.display(),
            certs.server_key.display()
        ),
    );
    let srv = Fjord::start(&["-c", conf.to_str().unwrap()]);
    srv.wait_for_log("TLS required for client connections");

    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(certs.ca.clone())
        .require_tls(true)
        .connect(srv.url())
        .await
        .unwrap();
    round_trip(&client).await;
    assert_eq!(srv.json("/varz")["tls_required"], true);

    // A plain-text client sees INFO with tls_required, and is closed when it does not
    // upgrade, without an -ERR (nats-server 2.15.1 does the same).
    let mut plain = Raw::connect(srv.port);
    assert!(plain.info.contains("\"tls_required\":true"), "{}", plain.info);
    plain.send("CONNECT {\"verbose\":false}\r\nPING\r\n");
    let rest = plain.read_to_close();
    assert!(!rest.contains("PONG"), "{rest:?}");
}

#[tokio::test]
async fn flags_and_handshake_first() {
    let dir = temp_dir("tlsflags");
    let certs = make_certs(&dir);
    let srv = Fjord::start(&[
        "-p",
        "-1",
        "-a",
        "127.0.0.1",
        "--tls",
        "--tlscert",
        certs.server_cert.to_str().unwrap(),
        "--tlskey",
        certs.server_key.to_str().unwrap(),
    ]);
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(certs.ca.clone())
        .require_tls(true)
        .connect(srv.url())
        .await
        .unwrap();
    round_trip(&client).await;

    let conf = dir.join("first.conf");
    write(
        &conf,
        &format!(
            "port: -1\nhost: 127.0.0.1\ntls {{ cert_file: \"{}\", key_file: \"{}\", handshake_first: true }}\n",
            certs.server_cert.display(),
            certs.server_key.display()
        ),
    );
    let first = Fjord::start(&["-c", conf.to_str().unwrap()]);
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(certs.ca.clone())
        .tls_first()
        .connect(first.url())
        .await
        .unwrap();
    round_trip(&client).await;
}

#[tokio::test]
async fn verify_requires_a_client_certificate() {
    let dir = temp_dir("tlsverify");
    let certs = make_certs(&dir);
    let srv = Fjord::start(&[
        "-p",
        "-1",
        "-a",
        "127.0.0.1",
        "--tlsverify",
        "--tlscert",
        certs.server_cert.to_str().unwrap(),
        "--tlskey",
        certs.server_key.to_str().unwrap(),
        "--tlscacert",
        certs.ca.to_str().unwrap(),
    ]);
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(certs.ca.clone())
        .add_client_certificate(certs.client_cert.clone(), certs.client_key.clone())
        .require_tls(true)
        .connect(srv.url())
        .await
        .unwrap();
    round_trip(&client).await;

    let refused = async_nats::ConnectOptions::new()
        .add_root_certificates(certs.ca.clone())
        .require_tls(true)
        .connection_timeout(Duration::from_secs(3))
        .connect(srv.url())
        .await;
    assert!(refused.is_err(), "a client without a certificate must be refused");
}

#[tokio::test]
async fn reload_swaps_certificates_without_dropping_connections() {
    let dir = temp_dir("tlsreload");
    let old = make_certs_named(&dir, "old-");
    let new = make_certs_named(&dir, "new-");
    let (cert, key) = (dir.join("server-cert.pem"), dir.join("server-key.pem"));
    std::fs::copy(&old.server_cert, &cert).unwrap();
    std::fs::copy(&old.server_key, &key).unwrap();
    let conf = dir.join("fjord.conf");
    write(
        &conf,
        &format!(
            "port: -1\nhost: 127.0.0.1\ntls {{ cert_file: \"{}\", key_file: \"{}\" }}\n",
            cert.display(),
            key.display()
        ),
    );
    let srv = Fjord::start(&["-c", conf.to_str().unwrap()]);
    let connect = |ca: PathBuf| {
        async_nats::ConnectOptions::new()
            .add_root_certificates(ca)
            .require_tls(true)
            .connection_timeout(Duration::from_secs(3))
            .connect(srv.url())
    };
    let before = connect(old.ca.clone()).await.unwrap();
    round_trip(&before).await;

    std::fs::copy(&new.server_cert, &cert).unwrap();
    std::fs::copy(&new.server_key, &key).unwrap();
    srv.signal(libc::SIGHUP);
    srv.wait_for_log("Reloaded: tls");
    srv.wait_for_log("Reloaded server configuration");

    let after = connect(new.ca.clone()).await.unwrap();
    round_trip(&after).await;
    round_trip(&before).await;
    assert!(connect(old.ca.clone()).await.is_err(), "the old certificate is no longer served");
}

/// GET over HTTPS with hyper's HTTP/1 client, trusting `ca` and presenting no client
/// certificate: (status, body).
async fn https_get(port: u16, ca: &Path, path: &str) -> Result<(u16, String), String> {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;
    use tokio_rustls::rustls::pki_types::ServerName;
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

    let pem = std::fs::read(ca).map_err(|e| e.to_string())?;
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp =
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let tls = connector.connect(name, tcp).await.map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn https_monitoring_under_a_base_path_with_the_tls_certificate() {
    let dir = temp_dir("https-monitor");
    let certs = make_certs(&dir);
    let conf = dir.join("fjord.conf");
    // `verify` asks clients of the NATS port for certificates; the monitoring port does not.
    write(
        &conf,
        &format!(
            "port: -1\nhost: 127.0.0.1\nhttps_port: -1\nhttp_base_path: \"nats/\"\n\
             tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n}}\n",
            certs.server_cert.display(),
            certs.server_key.display(),
            certs.ca.display()
        ),
    );
    let srv = Fjord::start(&["-c", conf.to_str().unwrap()]);
    let line = srv.wait_for_log("Starting https monitor on 127.0.0.1:");
    let port: u16 = line.rsplit(':').next().unwrap().trim().parse().unwrap();

    let (status, body) = https_get(port, &certs.ca, "/nats/varz").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let varz: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(varz["https_port"], port, "{varz}");
    assert_eq!(varz["http_port"], 0);
    assert_eq!(varz["http_base_path"], "nats/", "as configured, like nats-server");
    assert_eq!(https_get(port, &certs.ca, "/nats/healthz").await.unwrap().0, 200);
    let (status, index) = https_get(port, &certs.ca, "/nats").await.unwrap();
    assert!(status == 200 && index.contains("varz"), "{status} {index}");
    // Outside the base path there is nothing.
    assert_eq!(https_get(port, &certs.ca, "/varz").await.unwrap().0, 404);
    assert_eq!(https_get(port, &certs.ca, "/nats/").await.unwrap().0, 404);
    // Only the base path's endpoints count in http_req_stats, under their own names.
    let (_, body) = https_get(port, &certs.ca, "/nats/varz").await.unwrap();
    let varz: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(varz["http_req_stats"]["/varz"], 2, "counts itself: {}", varz["http_req_stats"]);
    assert_eq!(varz["http_req_stats"]["/"], 1, "{}", varz["http_req_stats"]);

    // Plain HTTP on the HTTPS port gets no monitoring answer.
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plain.write_all(b"GET /nats/varz HTTP/1.0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("server_id"), "plain text answered");
}

#[test]
fn https_monitoring_needs_a_certificate_and_excludes_http() {
    let dir = temp_dir("https-refused");
    let run = |args: &[&str]| {
        let out =
            std::process::Command::new(env!("CARGO_BIN_EXE_fjord")).args(args).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, stderr) = run(&["-p", "-1", "-a", "127.0.0.1", "-ms", "-1"]);
    assert!(!ok && stderr.contains("TLS cert and key required for HTTPS"), "{stderr}");
    let certs = make_certs(&dir);
    let (ok, stderr) = run(&[
        "-p",
        "-1",
        "-a",
        "127.0.0.1",
        "--tls",
        "--tlscert",
        certs.server_cert.to_str().unwrap(),
        "--tlskey",
        certs.server_key.to_str().unwrap(),
        "-m",
        "-1",
        "--https_port=-1",
    ]);
    assert!(
        !ok && stderr.contains("can't specify both HTTP (-1) and HTTPs (-1) ports"),
        "{stderr}"
    );
}
