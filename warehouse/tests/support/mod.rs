//! A raw MySQL client for connection-phase tests (it can send anything, valid or not, and
//! switch to TLS), and test certificates made with the `openssl` command line tool.

#![allow(dead_code, unreachable_pub)] // each test binary uses part of it
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use automq_warehouse::mysql::auth;
use automq_warehouse::mysql::packet::PacketStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

pub const CLIENT_LONG_PASSWORD: u32 = 1;
pub const CLIENT_CONNECT_WITH_DB: u32 = 1 << 3;
pub const CLIENT_PROTOCOL_41: u32 = 1 << 9;
pub const CLIENT_SSL: u32 = 1 << 11;
pub const CLIENT_SECURE_CONNECTION: u32 = 1 << 15;
pub const CLIENT_PLUGIN_AUTH: u32 = 1 << 19;
pub const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
pub const CLIENT_DEPRECATE_EOF: u32 = 1 << 24;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl tool");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

const EC: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/// A self-signed CA: `<name>.pem`, `<name>.key` in `dir`.
pub fn make_ca(dir: &Path, name: &str) {
    let (pem, key, subject) = (format!("{name}.pem"), format!("{name}.key"), format!("/CN={name}"));
    openssl(
        dir,
        &[&["req", "-x509"][..], &EC, &["-keyout", &key, "-out", &pem, "-days", "1", "-subj", &subject]].concat(),
    );
}

/// A server certificate for 127.0.0.1 signed by CA `ca`: `<name>.pem`, `<name>.key` in `dir`.
pub fn issue(dir: &Path, ca: &str, name: &str) {
    let (pem, key, csr) = (format!("{name}.pem"), format!("{name}.key"), format!("{name}.csr"));
    openssl(dir, &[&["req"][..], &EC, &["-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"]].concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    );
}

/// A TLS client trusting only the CA in `ca_pem`.
pub fn connector(ca_pem: &Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(ca_pem).unwrap();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(client))
}

pub fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    out.push(seq);
    out.extend_from_slice(payload);
    out
}

/// Reads the greeting (one packet, sequence 0) straight off the stream; returns its payload.
pub async fn greeting<S: AsyncRead + Unpin>(client: &mut S) -> Vec<u8> {
    let mut header = [0u8; 4];
    client.read_exact(&mut header).await.unwrap();
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    let mut payload = vec![0u8; len];
    client.read_exact(&mut payload).await.unwrap();
    payload
}

/// The 20-byte nonce of a greeting.
pub fn nonce(greeting: &[u8]) -> Vec<u8> {
    let mut i = 1 + greeting[1..].iter().position(|b| *b == 0).unwrap() + 1 + 4;
    let mut nonce = greeting[i..i + 8].to_vec();
    i += 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10;
    nonce.extend_from_slice(&greeting[i..i + 12]);
    nonce
}

pub fn capabilities(greeting: &[u8]) -> u32 {
    let i = 1 + greeting[1..].iter().position(|b| *b == 0).unwrap() + 1 + 4 + 8 + 1;
    let low = u16::from_le_bytes([greeting[i], greeting[i + 1]]) as u32;
    let high = u16::from_le_bytes([greeting[i + 5], greeting[i + 6]]) as u32;
    low | high << 16
}

/// A handshake response payload.
pub fn response(user: &str, auth_response: &[u8], plugin: &str, db: Option<&str>, lenenc: bool) -> Vec<u8> {
    let mut caps = CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH;
    caps |= CLIENT_DEPRECATE_EOF;
    if db.is_some() {
        caps |= CLIENT_CONNECT_WITH_DB;
    }
    if lenenc {
        caps |= CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;
    }
    let mut b = caps.to_le_bytes().to_vec();
    b.extend_from_slice(&(1u32 << 24).to_le_bytes());
    b.push(45);
    b.extend_from_slice(&[0; 23]);
    b.extend_from_slice(user.as_bytes());
    b.push(0);
    b.push(auth_response.len() as u8);
    b.extend_from_slice(auth_response);
    if let Some(db) = db {
        b.extend_from_slice(db.as_bytes());
        b.push(0);
    }
    b.extend_from_slice(plugin.as_bytes());
    b.push(0);
    b
}

/// The SSL request: a handshake response's fixed part with CLIENT_SSL.
pub fn ssl_request() -> Vec<u8> {
    let mut b = (CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_SSL).to_le_bytes().to_vec();
    b.extend_from_slice(&(1u32 << 24).to_le_bytes());
    b.push(45);
    b.extend_from_slice(&[0; 23]);
    b
}

/// How a login attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Logged in and answered a ping; the server's certificate (DER) when over TLS.
    LoggedIn(Option<Vec<u8>>),
    /// The server's error code.
    Refused(u16),
    /// The TLS handshake failed (the client did not trust the server, say).
    TlsFailed(String),
}

/// Logs in with `caching_sha2_password` over `stream` (switching to TLS first when a
/// connector is given), pings and quits.
pub async fn login<S>(
    mut stream: S,
    tls: Option<&tokio_rustls::TlsConnector>,
    user: &str,
    password: &str,
    db: Option<&str>,
) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hello = greeting(&mut stream).await;
    let scramble = auth::scramble(auth::CACHING_SHA2, password, &nonce(&hello));
    let payload = response(user, &scramble, auth::CACHING_SHA2, db, true);
    // The greeting was sequence 0.
    let mut packets = PacketStream::resume(stream, 1 << 20, 1);
    let Some(connector) = tls else { return finish(packets, &payload, None).await };
    packets.send(&ssl_request()).await.unwrap();
    let sequence = packets.sequence();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let stream =
        match tokio::time::timeout(Duration::from_secs(10), connector.connect(name, packets.into_inner())).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Outcome::TlsFailed(e.to_string()),
            Err(_) => return Outcome::TlsFailed("timed out".into()),
        };
    let certificate = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
    finish(PacketStream::resume(stream, 1 << 20, sequence), &payload, certificate).await
}

async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
    mut packets: PacketStream<S>,
    payload: &[u8],
    certificate: Option<Vec<u8>>,
) -> Outcome {
    packets.send(payload).await.unwrap();
    let mut reply = packets.read().await.unwrap().unwrap();
    if reply[..] == [0x01, 0x03] {
        reply = packets.read().await.unwrap().unwrap(); // fast authentication succeeded
    }
    if reply[0] == 0xff {
        return Outcome::Refused(u16::from_le_bytes([reply[1], reply[2]]));
    }
    assert_eq!(reply[0], 0x00, "OK after authentication");
    packets.reset_sequence();
    packets.send(&[0x0e]).await.unwrap(); // COM_PING
    assert_eq!(packets.read().await.unwrap().unwrap()[0], 0x00, "ping answered");
    packets.reset_sequence();
    packets.send(&[0x01]).await.unwrap(); // COM_QUIT
    Outcome::LoggedIn(certificate)
}
