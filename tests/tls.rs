//! TLS on the public listener, on the real binary against the emulator: a self-signed
//! certificate made here, TLS 1.3 and 1.2 accepted, older versions and plain HTTP refused,
//! new certificate files taken on SIGHUP, broken ones refused with the old certificate kept.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use support::{Process, TestOrg, config, eventually, provision, unique};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A fresh self-signed certificate for `localhost`, written to `dir`; returns its DER.
fn write_certificate(dir: &Path) -> CertificateDer<'static> {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), generated.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), generated.signing_key.serialize_pem()).unwrap();
    generated.cert.der().clone()
}

fn tls_section(dir: &Path) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    )
}

/// A client trusting only `trusted`, speaking only `versions`.
fn connector(
    trusted: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

struct Answer {
    version: rustls::ProtocolVersion,
    status: u16,
    body: Value,
}

/// One invoke over TLS, `Connection: close`, read to the end.
async fn invoke(
    addr: &str,
    connector: &TlsConnector,
    org: &TestOrg,
    body: &str,
) -> Result<Answer, std::io::Error> {
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let version = tls.get_ref().1.protocol_version().unwrap();
    let request = format!(
        "POST /v1/functions/hello/invoke HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        org.auth(),
        body.len()
    );
    tls.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    // A peer that closes without close_notify is an error to rustls; the bytes are what count.
    let _ = tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    Ok(Answer {
        version,
        status: head.split_whitespace().nth(1).unwrap().parse().unwrap(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    })
}

/// Bytes the server sends back to `request` (a raw, non-TLS or old-TLS opening).
async fn raw_reply(addr: &str, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply)).await;
    reply
}

/// A TLS 1.1 ClientHello: record and handshake version 3.2, no supported_versions extension,
/// offering cipher suites the server has (ECDHE-ECDSA/RSA-AES128-GCM), so only the version can
/// be what it refuses.
fn tls11_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02];
    hello.extend_from_slice(&[0x42; 32]); // random
    hello.push(0); // session id
    hello.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f]); // cipher suites
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    // Extensions: only signature_algorithms (ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256).
    hello.extend_from_slice(&[
        0x00, 0x0a, 0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08, 0x04,
    ]);
    let mut handshake = vec![0x01, 0x00, 0x00, hello.len() as u8];
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x02, 0x00, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    record
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("glg-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_1_3_and_1_2_refuses_older_and_plain_http_and_reloads_on_sighup() {
    let org = provision("191919191919", &[("hello", "us-west-2")]).await;
    let dir = temp_dir();
    let first = write_certificate(&dir);
    let gw = Process::start(&config(&tls_section(&dir), &[&org])).await;
    let addr = gw.url.trim_start_matches("http://").to_owned();

    let tls13 = connector(&first, &[&rustls::version::TLS13]);
    let answer = invoke(&addr, &tls13, &org, r#"{"over":"tls13"}"#)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.version, rustls::ProtocolVersion::TLSv1_3);
    assert_eq!(answer.body["event"]["over"], "tls13", "{}", answer.body);

    let tls12 = connector(&first, &[&rustls::version::TLS12]);
    let answer = invoke(&addr, &tls12, &org, r#"{"over":"tls12"}"#)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.version, rustls::ProtocolVersion::TLSv1_2);

    // TLS 1.1: a fatal alert (21 = alert record), protocol_version (70), and no HTTP.
    let reply = raw_reply(&addr, &tls11_client_hello()).await;
    assert!(
        reply.len() >= 7 && reply[0] == 21 && reply[5] == 2 && reply[6] == 70,
        "{reply:?}"
    );

    // Plain HTTP on the TLS port is never served.
    let reply = raw_reply(
        &addr,
        b"GET /v1/functions/hello/invoke HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(!reply.starts_with(b"HTTP/"), "{reply:?}");

    // New files, SIGHUP: new handshakes present the new certificate.
    let second = write_certificate(&dir);
    gw.signal("HUP");
    let trusting_second = connector(&second, &[&rustls::version::TLS13]);
    eventually(Duration::from_secs(10), "the new certificate", || {
        let (addr, connector, org) = (addr.clone(), trusting_second.clone(), &org);
        async move { invoke(&addr, &connector, org, "{}").await.is_ok() }
    })
    .await;
    let old = invoke(&addr, &tls13, &org, "{}").await;
    assert!(old.is_err(), "the old certificate is still presented");

    // Broken files: the reload is refused as a whole and the certificate in force stays.
    std::fs::write(dir.join("cert.pem"), "not a certificate").unwrap();
    gw.signal("HUP");
    eventually(Duration::from_secs(10), "the refused reload", || async {
        gw.metric("glg_config_reload_total{result=\"error\"}").await == 1.0
    })
    .await;
    eventually(Duration::from_secs(5), "the problem logged", || async {
        gw.logged("no PEM certificate")
    })
    .await;
    let answer = invoke(&addr, &trusting_second, &org, r#"{"still":"served"}"#)
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert!(
        !gw.logs_text().contains("PRIVATE KEY"),
        "key material in the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_tls_files_are_a_configuration_error() {
    let org = provision("202020202020", &[("hello", "us-east-1")]).await;
    let dir = temp_dir();
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config(&tls_section(&dir), &[&org])).unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_genesys-lambda-gateway"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("server.tls: cert_file") && stderr.contains("cert.pem"),
        "{stderr}"
    );
}
