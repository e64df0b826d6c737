//! MySQL over TLS on a real socket: the SSL request and switch, `require_secure_transport`
//! refusing plaintext logins (3159), a client that does not trust the certificate failing, and a
//! renewed certificate served to the next connection without a restart (a broken renewal
//! leaves the previous one in service).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use automq_warehouse::engine::Engine;
use automq_warehouse::mysql::login::{LoginOutcome, Logins};
use automq_warehouse::mysql::server::{serve, ServerConfig, Session};
use automq_warehouse::mysql::tls::TlsFiles;
use support::{connector, Outcome};
use tokio::net::{TcpListener, TcpStream};

async fn listen(config: ServerConfig) -> SocketAddr {
    let engine = Engine::in_memory("rootpw").await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            let session = Session { client_host: peer.ip().to_string(), ..Session::default() };
            let (engine, config) = (engine.clone(), config.clone());
            tokio::spawn(async move {
                let _ = serve(stream, engine, session, &config).await;
            });
        }
    });
    addr
}

async fn login(addr: SocketAddr, tls: Option<&tokio_rustls::TlsConnector>, password: &str) -> Outcome {
    support::login(TcpStream::connect(addr).await.unwrap(), tls, "root", password, None).await
}

/// Installs a pair the way a renewal does: written aside, then renamed over the old files.
fn install(dir: &Path, name: &str) {
    for ext in ["key", "pem"] {
        std::fs::copy(dir.join(format!("{name}.{ext}")), dir.join(format!("next.{ext}"))).unwrap();
        std::fs::rename(dir.join(format!("next.{ext}")), dir.join(format!("server.{ext}"))).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_required_checked_by_clients_and_renewed_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::make_ca(d, "ca-one");
    support::make_ca(d, "ca-two");
    support::issue(d, "ca-one", "first");
    support::issue(d, "ca-one", "second");
    install(d, "first");
    let logins = Arc::new(Logins::with_delays(Duration::ZERO, Duration::ZERO));
    let config = ServerConfig {
        tls: Some(Arc::new(TlsFiles::load(d.join("server.pem"), d.join("server.key")).unwrap())),
        require_secure_transport: true,
        logins: logins.clone(),
        ..ServerConfig::default()
    };
    let addr = listen(config).await;
    let trusting = connector(&d.join("ca-one.pem"));

    assert_eq!(login(addr, None, "rootpw").await, Outcome::Refused(3159), "plaintext is refused");
    assert_eq!(logins.counted(LoginOutcome::InsecureTransport), 1);
    let Outcome::LoggedIn(Some(first)) = login(addr, Some(&trusting), "rootpw").await else {
        panic!("a trusting client logs in over TLS")
    };
    assert_eq!(login(addr, Some(&trusting), "wrong").await, Outcome::Refused(1045));
    let untrusting = connector(&d.join("ca-two.pem"));
    assert!(matches!(login(addr, Some(&untrusting), "rootpw").await, Outcome::TlsFailed(_)));
    // The server learns of the refusal from the client's alert, a moment later.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while logins.tls_handshakes_failed() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(logins.tls_handshakes_failed(), 1, "the server counts the refused handshake");

    install(d, "second");
    let Outcome::LoggedIn(Some(second)) = login(addr, Some(&trusting), "rootpw").await else {
        panic!("logins go on after the renewal")
    };
    assert_ne!(first, second, "the renewed certificate is served without a restart");

    // A broken renewal is logged and the current pair stays in service.
    std::fs::write(d.join("server.key"), "not a key").unwrap();
    let Outcome::LoggedIn(Some(still)) = login(addr, Some(&trusting), "rootpw").await else {
        panic!("a broken renewal does not take the listener down")
    };
    assert_eq!(still, second);
    assert_eq!(logins.counted(LoginOutcome::Accepted), 3);
}

#[test]
fn a_pair_that_does_not_load_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::make_ca(d, "ca");
    support::issue(d, "ca", "server");
    assert!(TlsFiles::load(d.join("server.pem"), d.join("server.key")).is_ok());
    let e = TlsFiles::load(d.join("server.pem"), d.join("missing.key")).unwrap_err().to_string();
    assert!(e.contains("missing.key"), "{e}");
    let e = TlsFiles::load(d.join("server.pem"), d.join("ca.key")).unwrap_err().to_string();
    assert!(e.contains("do not make a usable pair"), "a key of another certificate: {e}");
    std::fs::write(d.join("empty.pem"), "").unwrap();
    let e = TlsFiles::load(d.join("empty.pem"), d.join("server.key")).unwrap_err().to_string();
    assert!(e.contains("no PEM certificate"), "{e}");
}
